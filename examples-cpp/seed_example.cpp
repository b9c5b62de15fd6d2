// seed_example.cpp: the three documented examples of flax.nnx.State (filter,
// split, merge) on the state of
//
//     class Model(nnx.Module):
//         def __init__(self, rngs):
//             self.batchnorm = nnx.BatchNorm(2, rngs=rngs)
//             self.linear = nnx.Linear(2, 3, rngs=rngs)
//
// built by hand through the C++ header, nnx_state.hpp. The same program as
// examples-c/seed_example.c. It exits non-zero on any mismatch; everything
// is freed by the destructors.
//
//   g++ -std=c++17 seed_example.cpp $(pkg-config --cflags --libs nnx_state)

#include "nnx_state.hpp"

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

// Exits when a condition the example relies on does not hold.
void expect(bool condition, const std::string &what) {
    if (!condition) {
        std::cerr << "seed_example: expectation failed: " << what << "\n";
        std::exit(1);
    }
}

// A float32 variable of `type` with the given shape and values.
nnx::Variable f32(nnx_type_id type, const nnx::Shape &shape, const std::vector<float> &values) {
    return nnx::Variable(type, nnx::Array::from(shape, values));
}

// The leaves' paths, in flat (sorted) order, as "a/b".
std::vector<std::string> leaf_paths(const nnx::State &state) {
    std::vector<std::string> paths;
    for (const auto &[path, leaf] : state.flatten()) {
        paths.push_back(nnx::path_to_string(path));
    }
    return paths;
}

void expect_leaves(const std::string &what, const nnx::State &state,
                   const std::vector<std::string> &expected) {
    std::vector<std::string> got = leaf_paths(state);
    if (got != expected || state.num_leaves() != expected.size()) {
        std::cerr << what << ": leaves are";
        for (const std::string &p : got) {
            std::cerr << " " << p;
        }
        std::cerr << "\n";
        std::exit(1);
    }
    std::cout << what << ": " << expected.size() << " leaves, paths as expected\n";
}

// The float32 values of the variable at `path`.
std::vector<float> values(const nnx::State &state, const nnx::Path &path) {
    std::optional<nnx::Array> value = state.get(path).value();
    expect(value.has_value(), "the variable at " + nnx::path_to_string(path) + " has a value");
    return value->to_vector<float>();
}

void print(const std::string &heading, const nnx::State &state) {
    std::cout << "== " << heading << " ==\n" << state << "\n\n";
}

}  // namespace

int main() {
    try {
        std::cout << "nnx_state " << nnx::version() << " (header " << NNX_STATE_VERSION << ")\n\n";
        expect(nnx::version() == NNX_STATE_VERSION, "library and header versions agree");

        const std::vector<float> kernel = {0.5f, -0.25f, 0.125f, -1.0f, 0.75f, 0.0625f};
        const std::vector<std::string> all_paths = {"batchnorm/bias", "batchnorm/mean",
                                                    "batchnorm/scale", "batchnorm/var",
                                                    "linear/bias", "linear/kernel"};
        const std::vector<std::string> param_paths = {"batchnorm/bias", "batchnorm/scale",
                                                      "linear/bias", "linear/kernel"};
        const std::vector<std::string> stat_paths = {"batchnorm/mean", "batchnorm/var"};

        // state = nnx.state(Model(...)), by hand.
        nnx::State state;
        state.set({"batchnorm", "bias"}, f32(NNX_TYPE_PARAM, {2}, {0, 0}))
            .set({"batchnorm", "scale"}, f32(NNX_TYPE_PARAM, {2}, {1, 1}))
            .set({"batchnorm", "mean"}, f32(NNX_TYPE_BATCH_STAT, {2}, {0, 0}))
            .set({"batchnorm", "var"}, f32(NNX_TYPE_BATCH_STAT, {2}, {1, 1}))
            .set({"linear", "bias"}, f32(NNX_TYPE_PARAM, {3}, {0, 0, 0}))
            .set(nnx::parse_path("linear/kernel"), f32(NNX_TYPE_PARAM, {2, 3}, kernel));
        print("state", state);
        expect_leaves("state", state, all_paths);
        expect(state.get({"batchnorm", "mean"}).type() == NNX_TYPE_BATCH_STAT,
               "batchnorm/mean is a BatchStat");

        const nnx::Filter param = nnx::of_type(NNX_TYPE_PARAM);
        const nnx::Filter batch_stat = nnx::of_type(NNX_TYPE_BATCH_STAT);

        // (a) filter: state.filter(nnx.Param), (nnx.BatchStat), (nnx.Param, nnx.BatchStat)
        {
            nnx::State params = state.filter(param);
            nnx::State stats = state.filter(batch_stat);
            print("state.filter(nnx.Param)", params);
            expect_leaves("filter(Param)", params, param_paths);
            print("state.filter(nnx.BatchStat)", stats);
            expect_leaves("filter(BatchStat)", stats, stat_paths);

            auto [first, second] = state.filter(param, batch_stat);
            print("state.filter(nnx.Param, nnx.BatchStat)[0]", first);
            print("state.filter(nnx.Param, nnx.BatchStat)[1]", second);
            expect_leaves("filter(Param, BatchStat)[0]", first, param_paths);
            expect_leaves("filter(Param, BatchStat)[1]", second, stat_paths);

            // Outputs hold the very same variables: nothing was copied.
            expect(params.get({"linear", "kernel"}).same(state.get({"linear", "kernel"})),
                   "filter shares linear/kernel");
            expect(second.get({"batchnorm", "var"}).same(state.get({"batchnorm", "var"})),
                   "filter shares batchnorm/var");
        }

        // (b) split: params, batch_stats = state.split(nnx.Param, nnx.BatchStat)
        auto [params, batch_stats] = state.split(param, batch_stat);
        print("params (split)", params);
        print("batch_stats (split)", batch_stats);
        expect_leaves("split(Param, BatchStat)[0]", params, param_paths);
        expect_leaves("split(Param, BatchStat)[1]", batch_stats, stat_paths);

        // (c) params['linear']['bias'][...] += 1, in place, then merge.
        {
            nnx::Array bias = *params.get({"linear", "bias"}).value();
            float *data = bias.mutable_data_as<float>();
            for (std::size_t i = 0; i < bias.size(); i++) {
                data[i] += 1.0f;
            }
        }
        nnx::State merged = nnx::merge(params, batch_stats);
        print("nnx.merge_state(params, batch_stats)", merged);
        expect_leaves("merge(params, batch_stats)", merged, all_paths);
        const std::vector<float> ones = {1, 1, 1};
        expect(values(merged, {"linear", "bias"}) == ones, "merged linear/bias is [1, 1, 1]");
        expect(values(params, {"linear", "bias"}) == ones, "params linear/bias is [1, 1, 1]");
        expect(values(state, {"linear", "bias"}) == ones, "state linear/bias is [1, 1, 1]");
        expect(values(merged, {"linear", "kernel"}) == kernel, "linear/kernel is unchanged");
        expect(values(merged, {"batchnorm", "var"}) == std::vector<float>{1, 1},
               "batchnorm/var is unchanged");
        expect(merged.get({"linear", "bias"}).same(state.get({"linear", "bias"})),
               "merge shares linear/bias");
        std::cout << "linear/bias reads [1, 1, 1] in merged, params and the original state\n";

        // Errors are exceptions carrying the status: split must be exhaustive.
        try {
            state.split(param);
            expect(false, "split(Param) alone is not exhaustive");
        } catch (const nnx::Error &e) {
            expect(e.status() == NNX_ERR_NON_EXHAUSTIVE, "NNX_ERR_NON_EXHAUSTIVE");
            std::cout << "split(Param) alone: " << e.what() << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "seed_example: " << e.what() << "\n";
        return 1;
    }
    std::cout << "\nseed_example: OK\n";
    return 0;
}
