// checkpoint_example.cpp: a training-loop checkpoint through nnx_state.hpp.
// Builds a model's state with "/" paths, keeps the parameters apart from the
// batch statistics with a filter written as text, saves the parameters as
// a safetensors file (any safetensors reader takes it), loads it back
// memory-mapped, and merges it with the statistics again. It exits non-zero
// on any mismatch; everything is freed by the destructors.
//
//   g++ -std=c++17 checkpoint_example.cpp $(pkg-config --cflags --libs nnx_state)

#include "nnx_state.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

// Exits when a condition the example relies on does not hold.
void expect(bool condition, const std::string &what) {
    if (!condition) {
        std::cerr << "checkpoint_example: expectation failed: " << what << "\n";
        std::exit(1);
    }
}

nnx::Variable f32(nnx_type_id type, const nnx::Shape &shape, const std::vector<float> &values) {
    return nnx::Variable(type, nnx::Array::from(shape, values));
}

}  // namespace

int main() {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("nnx-checkpoint-example-" + std::to_string(getpid()));
    try {
        fs::create_directories(dir);

        // A two-layer model; "layers/0/kernel" has the int key 0.
        nnx::State state;
        state.set("layers/0/kernel", f32(NNX_TYPE_PARAM, {2, 2}, {1, 0, 0, 1}))
            .set("layers/0/bias", f32(NNX_TYPE_PARAM, {2}, {0, 0}))
            .set("layers/1/kernel", f32(NNX_TYPE_PARAM, {2, 1}, {0.5f, -0.5f}))
            .set("batchnorm/mean", f32(NNX_TYPE_BATCH_STAT, {2}, {0.1f, 0.2f}));
        state.get("layers/0/kernel").set_metadata("sharding", "model");

        // Filters as the nnx-state tool writes them.
        auto [params, stats] =
            state.split(nnx::parse_filter("Param"), nnx::parse_filter("..."));
        std::cout << "params:\n" << params << "\n";
        expect(params.num_leaves() == 3 && stats.num_leaves() == 1, "split by Param");
        expect(state.filter(nnx::parse_filter("Param & ~path:bias")).num_leaves() == 2,
               "kernels only");

        // Save the parameters, then load them back (memory-mapped).
        const std::string file = (dir / "params.safetensors").string();
        params.save_safetensors(file);
        nnx::State loaded = nnx::load_safetensors(file);
        std::cout << "loaded from " << file << ": " << loaded.num_leaves() << " leaves\n";
        expect(loaded.get("layers/0/kernel").metadata_as<std::string>("sharding") == "model",
               "metadata survives the file");

        // The paths and leaves in one call each.
        nnx::Flat flat = loaded.flatten();
        std::vector<nnx::Path> paths = flat.paths();
        std::vector<nnx_type_id> types = flat.types();
        for (std::size_t i = 0; i < paths.size(); i++) {
            std::cout << "  " << nnx::path_to_string(paths[i]) << ": "
                      << nnx::type_name(types[i]) << "\n";
            expect(types[i] == NNX_TYPE_PARAM, "every saved leaf is a Param");
        }

        // Restore: the loaded parameters with the live statistics.
        nnx::State restored = nnx::merge(loaded, stats);
        expect(restored.num_leaves() == state.num_leaves(), "everything is back");
        expect(restored.get("layers/1/kernel").value()->to_vector<float>() ==
                   std::vector<float>({0.5f, -0.5f}),
               "layers/1/kernel reads as saved");
        expect(restored.get("batchnorm/mean").same(state.get("batchnorm/mean")),
               "the statistics are the same variable");

        // Errors are exceptions with the library's status.
        try {
            nnx::load_safetensors((dir / "missing.safetensors").string());
            expect(false, "a missing file fails");
        } catch (const nnx::Error &e) {
            expect(e.status() == NNX_ERR_IO, "NNX_ERR_IO");
            std::cout << "missing file: " << e.status_name() << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "checkpoint_example: " << e.what() << "\n";
        fs::remove_all(dir);
        return 1;
    }
    fs::remove_all(dir);
    std::cout << "\ncheckpoint_example: OK\n";
    return 0;
}
