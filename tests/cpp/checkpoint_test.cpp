// checkpoint_test.cpp: safetensors checkpoints, filter parsing, DLPack and
// array devices through include/nnx_state.hpp; the C++ side of
// tests/c/checkpoint.c. Built with the strict flags of tests/cpp.rs and run
// by it (also under valgrind); exits non-zero on the first failed check.
// Files go to a directory of its own under the system's temporary
// directory, removed at the end.

#include "nnx_state.hpp"

#include "check.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

// What a program gets from <dlpack/dlpack.h> (version 1.1), shared with the
// C tests: nnx_state.h names these structs only as incomplete types, so that
// the real header can be included beside it.
#include "../c/dlpack_types.h"

namespace fs = std::filesystem;

namespace {

nnx::Variable param(std::vector<float> values) {
    nnx::Shape shape{static_cast<int64_t>(values.size())};
    return nnx::Variable(NNX_TYPE_PARAM, nnx::Array::from(shape, values));
}

std::vector<std::string> leaf_paths(const nnx::State &state) {
    std::vector<std::string> out;
    for (const nnx::Path &path : state.flatten().paths()) {
        out.push_back(nnx::path_to_string(path));
    }
    return out;
}

// The listing of a state with its keys sorted, as a loaded one has them.
std::string sorted_listing(const nnx::State &state) {
    return nnx::State::from_flat(state.flatten()).to_string();
}

std::vector<float> floats(const nnx::State &state, std::string_view path) {
    nnx::Leaf leaf = state.get_leaf(path);
    if (const auto *v = std::get_if<nnx::Variable>(&leaf)) {
        return v->value()->to_vector<float>();
    }
    return std::get<nnx::Array>(leaf).to_vector<float>();
}

void write_file(const fs::path &path, const std::string &bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    CHECK(out.good());
}

// A safetensors file as another writer makes it: no nnx metadata.
std::string foreign_safetensors() {
    std::string header =
        R"({"encoder.layer.0.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("encoder.layer.007.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    while (header.size() % 8 != 0) {
        header += ' ';
    }
    std::string bytes;
    uint64_t n = header.size();
    for (int i = 0; i < 8; i++) {
        bytes += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    bytes += header;
    const float data[3] = {1.5f, -2.0f, 0.25f};
    bytes.append(reinterpret_cast<const char *>(data), sizeof data);
    return bytes;
}

// The state the checkpoints hold: every kind of thing a file records.
nnx::State checkpoint_state(nnx_type_id custom) {
    nnx::State state;
    nnx::Variable kernel(NNX_TYPE_PARAM, nnx::Array::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
    kernel.set_metadata("sharding", "x").set_metadata("rank", 2).set_metadata("frozen", true);
    kernel.set_tag("encoder");
    state.set("layers/0/kernel", kernel)
        .set("layers/0/mean",
             nnx::Variable(NNX_TYPE_BATCH_STAT, nnx::Array::from<double>({2}, {0.5, 1.5})))
        .set("layers/1/lora", nnx::Variable(custom, nnx::Array::from<int32_t>({3}, {7, 8, 9})))
        .set("tied", kernel)  // the same variable at a second path
        .set("embedding", nnx::Array::from<int64_t>({2}, {-1, 1}))
        .set("empty", nnx::Variable(NNX_TYPE_CACHE))  // no value
        .set({"0"}, param({42}));                     // a str key that looks like an int
    return state;
}

void test_safetensors(const fs::path &dir) {
    const nnx_type_id custom = nnx::register_type("HppCkptLoRA", NNX_TYPE_PARAM);
    nnx::State state = checkpoint_state(custom);

    // One file: save, load, the same state back.
    const std::string file = (dir / "model.safetensors").string();
    state.save_safetensors(file);
    CHECK(fs::is_regular_file(file));
    nnx::State loaded = nnx::load_safetensors(file);
    CHECK(leaf_paths(loaded) == leaf_paths(state));
    CHECK(sorted_listing(loaded) == sorted_listing(state));
    CHECK(loaded.kind({"0"}) == NNX_KIND_VARIABLE && !loaded.contains({0}));
    CHECK(loaded.kind({"layers", 1, "lora"}) == NNX_KIND_VARIABLE);
    nnx::Variable kernel = loaded.get("layers/0/kernel");
    CHECK(kernel.type() == NNX_TYPE_PARAM && kernel.tag() == std::optional<std::string>("encoder"));
    CHECK(kernel.metadata_as<std::string>("sharding") == "x");
    CHECK(kernel.metadata_as<int>("rank") == 2 && kernel.metadata_as<bool>("frozen"));
    CHECK((kernel.value()->to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6}));
    CHECK((kernel.value()->shape() == nnx::Shape{2, 3}));
    CHECK(loaded.get("tied").same(kernel));  // still one variable
    CHECK(loaded.get("layers/1/lora").type() == custom);
    CHECK((loaded.get("layers/1/lora").value()->to_vector<int32_t>() == std::vector<int32_t>{7, 8, 9}));
    CHECK(loaded.get("layers/0/mean").type() == NNX_TYPE_BATCH_STAT);
    CHECK((loaded.get_array("embedding").to_vector<int64_t>() == std::vector<int64_t>{-1, 1}));
    CHECK(!loaded.get("empty").value().has_value());
    CHECK(loaded.get("empty").type() == NNX_TYPE_CACHE);

    // Loaded arrays are mapped and writable; writes never reach the file.
    nnx::Array mapped = *kernel.value();
    CHECK(mapped.writable());
    mapped.mutable_data_as<float>()[0] = 100;
    CHECK(floats(loaded, "tied")[0] == 100);
    CHECK(floats(nnx::load_safetensors(file), "layers/0/kernel")[0] == 1);
    // A copied load, the static form and the free save function.
    nnx::State copied = nnx::State::load_safetensors(file, NNX_TYPE_PARAM, NNX_LOAD_COPY);
    CHECK(sorted_listing(copied) == sorted_listing(state));
    const std::string second = (dir / "second.safetensors").string();
    nnx::save_safetensors(copied, second);
    CHECK(sorted_listing(nnx::load_safetensors(second)) == sorted_listing(state));
    // Saving over the file a state was loaded from keeps that state intact.
    loaded.save_safetensors(file);
    CHECK(floats(nnx::load_safetensors(file), "layers/0/kernel")[0] == 100);
    CHECK(floats(loaded, "layers/0/kernel")[0] == 100);

    // Sharded: several files and an index, loaded by the index or the
    // directory.
    const fs::path shards = dir / "shards";
    fs::create_directory(shards);
    state.save_safetensors_sharded(shards.string(), "model", 16);
    CHECK(fs::is_regular_file(shards / "model.safetensors.index.json"));
    std::size_t shard_files = 0;
    for (const fs::directory_entry &entry : fs::directory_iterator(shards)) {
        if (entry.path().extension() == ".safetensors") {
            shard_files++;
        }
    }
    CHECK(shard_files > 1);
    CHECK(sorted_listing(nnx::load_safetensors((shards / "model.safetensors.index.json").string())) ==
          sorted_listing(state));
    nnx::State from_dir = nnx::load_safetensors(shards.string());
    CHECK(sorted_listing(from_dir) == sorted_listing(state));
    CHECK(from_dir.get("tied").same(from_dir.get("layers/0/kernel")));
    // One shard: a single file and no index.
    const fs::path single = dir / "single";
    fs::create_directory(single);
    nnx::save_safetensors_sharded(state, single.string(), "ckpt", uint64_t{1} << 30);
    CHECK(fs::is_regular_file(single / "ckpt.safetensors"));
    CHECK(!fs::exists(single / "ckpt.safetensors.index.json"));
    CHECK(nnx::load_safetensors((single / "ckpt.safetensors").string()).num_leaves() ==
          state.num_leaves());

    // Another writer's file: dotted names split, canonical decimals as ints.
    const fs::path foreign = dir / "foreign.safetensors";
    write_file(foreign, foreign_safetensors());
    nnx::State params = nnx::load_safetensors(foreign.string());
    CHECK(params.get({"encoder", "layer", 0, "weight"}).type() == NNX_TYPE_PARAM);
    CHECK(params.kind({"encoder", "layer", "007", "bias"}) == NNX_KIND_VARIABLE);
    CHECK((floats(params, "encoder/layer/0/weight") == std::vector<float>{1.5f, -2.0f}));
    nnx::State bare = nnx::load_safetensors(foreign.string(), NNX_TYPE_NONE);
    CHECK(bare.kind("encoder/layer/0/weight") == NNX_KIND_ARRAY);
    nnx::State str_keys =
        nnx::load_safetensors(foreign.string(), NNX_TYPE_BATCH_STAT, NNX_LOAD_STR_KEYS | NNX_LOAD_COPY);
    CHECK(str_keys.get({"encoder", "layer", "0", "weight"}).type() == NNX_TYPE_BATCH_STAT);
    CHECK(!str_keys.contains({"encoder", "layer", 0}));
    CHECK(floats(str_keys, "encoder/layer/007/bias")[0] == 0.25f);

    // The file's own __metadata__ goes through load and save.
    std::string hf = foreign_safetensors();
    const std::string hf_header = R"({"__metadata__":{"format":"pt"},)";
    std::string old_header = hf.substr(8, hf.size() - 8 - 12);
    std::string new_header = hf_header + old_header.substr(1);
    std::string hf_bytes;
    for (int i = 0; i < 8; i++) {
        hf_bytes += static_cast<char>((uint64_t{new_header.size()} >> (8 * i)) & 0xff);
    }
    hf_bytes += new_header + hf.substr(hf.size() - 12);
    write_file(dir / "hf.safetensors", hf_bytes);
    nnx::State hf_state = nnx::load_safetensors((dir / "hf.safetensors").string());
    const std::map<std::string, std::string> pt{{"format", "pt"}};
    CHECK(hf_state.file_metadata() == pt);
    CHECK(hf_state.file_metadata("format") == std::optional<std::string>("pt"));
    CHECK(!hf_state.file_metadata("nnx_state.v1").has_value());
    const std::string hf_out = (dir / "hf-out.safetensors").string();
    hf_state.save_safetensors(hf_out);
    nnx::State hf_again = nnx::load_safetensors(hf_out);
    CHECK(hf_again.file_metadata() == pt);
    hf_again.set_file_metadata("source", "flax");
    nnx::State hf_clone = hf_again.clone();
    CHECK(hf_clone.file_metadata().size() == 2 && *hf_clone.file_metadata("source") == "flax");
    CHECK(hf_clone.remove_file_metadata("source") && !hf_clone.remove_file_metadata("source"));
    CHECK(hf_again.file_metadata().size() == 2);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, hf_clone.set_file_metadata("nnx_state.v1", "x"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 hf_clone.set_file_metadata({{"a", "b"}, {"nnx_state.v2", "x"}}));
    CHECK(hf_clone.file_metadata() == pt);  // nothing changed
    hf_clone.set_file_metadata({{"a", "b"}});
    hf_clone.save_safetensors_sharded(dir.string(), "hf-sharded", uint64_t{1} << 30);
    CHECK((nnx::load_safetensors((dir / "hf-sharded.safetensors").string()).file_metadata() ==
           std::map<std::string, std::string>{{"a", "b"}}));
    CHECK(nnx::State().file_metadata().empty());

    // Errors.
    const std::string missing = (dir / "missing.safetensors").string();
    std::string message = EXPECT_ERROR(NNX_ERR_IO, nnx::load_safetensors(missing));
    CHECK(message.find("missing.safetensors") != std::string::npos);
    write_file(dir / "garbage.safetensors", "not a safetensors file at all");
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::load_safetensors((dir / "garbage.safetensors").string()));
    std::string truncated = foreign_safetensors();
    truncated.resize(truncated.size() - 4);
    write_file(dir / "truncated.safetensors", truncated);
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::load_safetensors((dir / "truncated.safetensors").string()));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::load_safetensors(file, NNX_TYPE_PARAM, 1u << 20));
    EXPECT_ERROR(NNX_ERR_UNKNOWN_TYPE, nnx::load_safetensors(foreign.string(), 999999));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::load_safetensors(std::string_view("a\0b", 3)));
    EXPECT_ERROR(NNX_ERR_IO, state.save_safetensors((dir / "no" / "such" / "x.safetensors").string()));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.save_safetensors_sharded(shards.string(), "a/b", 16));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.save_safetensors_sharded(shards.string(), "m", 0));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 state.save_safetensors_sharded(shards.string(), std::string_view("m\0", 2), 16));
    nnx::State moved = std::move(state);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, state.save_safetensors(second));
    // A failed save leaves the file that was there.
    CHECK(nnx::load_safetensors(second).num_leaves() == moved.num_leaves());
}

void test_keys_and_opaque_values(const fs::path &dir) {
    // Typed keys round-trip bit for bit, one file and sharded.
    nnx::State state;
    const std::vector<uint32_t> words = {0xFFFFFFFFu, 0, 0x80000001u, 42};
    state.set("rngs/default/key",
              nnx::Variable(NNX_TYPE_RNG_KEY,
                            nnx::PrngKey{nnx::Array::from<uint32_t>({2, 2}, words), "threefry2x32"}));
    state.set("rngs/rbg/key",
              nnx::Variable(NNX_TYPE_RNG_KEY,
                            nnx::PrngKey{nnx::Array::from<uint32_t>({4}, {1, 2, 3, 4}), "unsafe_rbg"}));
    const std::string file = (dir / "keys.safetensors").string();
    state.save_safetensors(file);
    const fs::path shards = dir / "keys";
    fs::create_directories(shards);
    state.save_safetensors_sharded(shards.string(), "model", 8);
    for (const std::string &source :
         {file, (shards / "model.safetensors.index.json").string()}) {
        nnx::State loaded = nnx::load_safetensors(source);
        std::optional<nnx::PrngKey> key = loaded.get("rngs/default/key").key();
        CHECK(key && key->impl == "threefry2x32");
        CHECK((key->data.shape() == nnx::Shape{2, 2}) && key->data.to_vector<uint32_t>() == words);
        CHECK(loaded.get("rngs/rbg/key").key()->impl == "unsafe_rbg");
        CHECK(sorted_listing(loaded) == sorted_listing(state));
    }

    // An opaque value is never saved: the save names it and writes nothing.
    int released = 0;
    state.set("device/kernel",
              nnx::Variable(NNX_TYPE_PARAM, nnx::Opaque{"demo:DeviceArray", &released,
                                                        [&released] { released++; }}));
    const std::string fresh = (dir / "fresh.safetensors").string();
    std::string message = EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.save_safetensors(fresh));
    CHECK(message.find("'device/kernel'") != std::string::npos);
    CHECK(!fs::exists(fresh));
    const auto before = std::distance(fs::directory_iterator(shards), fs::directory_iterator());
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.save_safetensors_sharded(shards.string(), "model", 8));
    CHECK(std::distance(fs::directory_iterator(shards), fs::directory_iterator()) == before);
    CHECK(nnx::load_safetensors(shards.string()).get("rngs/rbg/key").key().has_value());
    CHECK(released == 0);
    state = nnx::State();
    CHECK(released == 1);
    fs::remove_all(shards);
    fs::remove(file);
}

void test_parse_filter() {
    nnx::State state;
    nnx::Variable kernel = param({1});
    kernel.set_tag("encoder");
    const nnx_type_id lora = nnx::register_type("HppParsedLoRA", NNX_TYPE_PARAM);
    state.set("layers/0/kernel", kernel)
        .set("layers/0/bias", param({2}))
        .set("layers/1/kernel", nnx::Variable(lora, nnx::Array::zeros<float>({1})))
        .set("batchnorm/mean", nnx::Variable(NNX_TYPE_BATCH_STAT, nnx::Array::zeros<float>({1})))
        .set({"layers", "0", "x"}, nnx::Array::zeros<float>({1}));

    auto count = [&](std::string_view expression) {
        return state.filter(nnx::parse_filter(expression)).num_leaves();
    };
    CHECK(count("Param") == 3);  // with the registered subtype
    CHECK(count("type:BatchStat") == 1);
    CHECK(count("HppParsedLoRA") == 1);
    CHECK(count("tag:encoder") == 1);
    CHECK(count("path:kernel") == 2);
    CHECK(count("path:0") == 2);        // the int key 0
    CHECK(count("path:\"0\"") == 1);    // the str key "0"
    CHECK(count("path~:batch") == 1);
    CHECK(count("at:layers/0/bias") == 1);
    CHECK(count("...") == 5 && count("*") == 5 && count("none") == 0);
    CHECK(count("Param & ~path:bias") == 2);
    CHECK(count("~Param") == 2);
    CHECK(count("BatchStat | tag:encoder") == 2);
    CHECK(count("(Param | BatchStat) & path:0") == 2);
    CHECK(count(std::string("  Param  ")) == 3);

    // Split with parsed filters; they compose with built ones.
    auto [params, stats, rest] =
        state.split(nnx::parse_filter("Param"), nnx::parse_filter("BatchStat"), nnx::parse_filter("..."));
    CHECK(params.num_leaves() == 3 && stats.num_leaves() == 1 && rest.num_leaves() == 1);
    CHECK(params.get("layers/0/kernel").same(kernel));
    CHECK(rest.kind({"layers", "0", "x"}) == NNX_KIND_ARRAY);
    CHECK(state.filter(nnx::parse_filter("Param") & nnx::path_contains(1)).num_leaves() == 1);
    EXPECT_ERROR(NNX_ERR_NON_EXHAUSTIVE, state.split(nnx::parse_filter("Param")));
    EXPECT_ERROR(NNX_ERR_FILTER_ORDER,
                 state.split(nnx::parse_filter("..."), nnx::parse_filter("Param")));

    // Errors: syntax (with the column), unknown types, NUL bytes.
    std::string message = EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_filter("Param &"));
    CHECK(message.find("column 8") != std::string::npos);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_filter("(Param"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_filter(""));
    message = EXPECT_ERROR(NNX_ERR_UNKNOWN_TYPE, nnx::parse_filter("Param | HppNoSuchType"));
    CHECK(message.find("column") != std::string::npos);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_filter(std::string_view("Param\0", 6)));
}

// A producer's tensor over a static buffer, with a deleter that counts.
float produced_data[4] = {1, 2, 3, 4};
int64_t produced_shape[1] = {4};
int deleted = 0;

void count_delete(DLManagedTensorVersioned *) { deleted++; }
void count_delete_legacy(DLManagedTensor *) { deleted++; }

DLManagedTensorVersioned produced(uint64_t flags) {
    return DLManagedTensorVersioned{
        {1, 1}, nullptr, count_delete, flags,
        {produced_data, {1, 0}, 1, {2, 32, 1}, produced_shape, nullptr, 0}};
}

void test_dlpack() {
    static_assert(!std::is_copy_constructible_v<nnx::DLPackTensor>, "DLPackTensor is move-only");
    static_assert(std::is_nothrow_move_constructible_v<nnx::DLPackTensor>, "DLPackTensor moves");
    static_assert(!std::is_copy_constructible_v<nnx::LegacyDLPackTensor>, "so is the legacy one");

    // Out: the array's own memory, shape, dtype and device, with a reference.
    int released = 0;
    std::vector<float> buffer = {1, 2, 3, 4, 5, 6};
    nnx::DLPackTensor tensor;
    CHECK(!tensor && tensor.get() == nullptr);
    {
        nnx::Array wrapped = nnx::Array::wrap<float>({2, 3}, buffer.data(), [&] { released++; });
        tensor = wrapped.to_dlpack();
    }
    CHECK(tensor && released == 0);  // the tensor keeps the array alive
    DLManagedTensorVersioned *raw = tensor.get();
    CHECK(raw->version.major == 1 && raw->deleter != nullptr);
    CHECK(raw->dl_tensor.data == buffer.data());
    CHECK(raw->dl_tensor.ndim == 2 && raw->dl_tensor.shape[0] == 2 && raw->dl_tensor.shape[1] == 3);
    CHECK(raw->dl_tensor.dtype.code == 2 && raw->dl_tensor.dtype.bits == 32 &&
          raw->dl_tensor.dtype.lanes == 1);
    CHECK(raw->dl_tensor.device.device_type == 1 && raw->dl_tensor.device.device_id == 0);
    CHECK((raw->flags & DLPACK_FLAG_BITMASK_READ_ONLY) == 0);
    // Back in: the same memory, writable, still one release at the end.
    nnx::DLPackTensor moved = std::move(tensor);
    CHECK(!tensor && moved.get() == raw);
    {
        nnx::Array back = nnx::Array::from_dlpack(std::move(moved));
        CHECK(!moved);
        CHECK(back.data() == buffer.data() && back.writable());
        CHECK((back.shape() == nnx::Shape{2, 3}) && back.dtype() == NNX_DTYPE_F32);
        back.mutable_data_as<float>()[0] = 10;
        CHECK(buffer[0] == 10);
        CHECK(released == 0);
    }
    CHECK(released == 1);
    // A tensor nobody takes goes back to its producer with the owner.
    {
        nnx::Array wrapped = nnx::Array::wrap<float>({6}, buffer.data(), [&] { released++; });
        nnx::DLPackTensor unused = wrapped.to_dlpack();
        nnx::DLPackTensor replaced = wrapped.to_dlpack();
        replaced = std::move(unused);  // the replaced tensor is given back here
        replaced.reset();
        CHECK(!replaced);
        replaced.reset();  // a no-op when empty
    }
    CHECK(released == 2);
    // release() hands the tensor over: here the consumer calls the deleter.
    {
        nnx::Array wrapped = nnx::Array::wrap<float>({6}, buffer.data(), [&] { released++; });
        DLManagedTensorVersioned *given = wrapped.to_dlpack().release();
        given->deleter(given);
    }
    CHECK(released == 3);
    // Read-only arrays export read-only and import back read-only.
    const std::vector<float> constant = {1, 2};
    {
        nnx::Array ro = nnx::Array::wrap<const float>({2}, constant.data());
        nnx::DLPackTensor t = ro.to_dlpack();
        CHECK((t.get()->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0);
        nnx::Array back = nnx::Array::from_dlpack(std::move(t));
        CHECK(!back.writable());
        EXPECT_ERROR(NNX_ERR_READ_ONLY, back.mutable_data());
    }

    // Legacy: the same fields, imported read-only.
    {
        nnx::Array a = nnx::Array::from<int16_t>({3}, {1, -2, 3});
        nnx::LegacyDLPackTensor legacy = a.to_dlpack_legacy();
        CHECK(legacy.get()->dl_tensor.data == a.data());
        CHECK(legacy.get()->dl_tensor.dtype.code == 0 && legacy.get()->dl_tensor.dtype.bits == 16);
        nnx::Array back = nnx::Array::from_dlpack(std::move(legacy));
        CHECK(back.data() == a.data() && !back.writable());
        CHECK((back.to_vector<int16_t>() == std::vector<int16_t>{1, -2, 3}));
        nnx::LegacyDLPackTensor dropped = a.to_dlpack_legacy();  // freed unused
        DLManagedTensor *given = a.to_dlpack_legacy().release();
        nnx::Array again = nnx::Array::from_dlpack(given);
        CHECK(again.data() == a.data() && !again.same(back));
    }

    // Another producer's tensors: the deleter runs when the array goes, or
    // with the owner, exactly once either way.
    deleted = 0;
    DLManagedTensorVersioned versioned = produced(DLPACK_FLAG_BITMASK_READ_ONLY);
    {
        nnx::Array imported = nnx::Array::from_dlpack(&versioned);
        CHECK(!imported.writable() && imported.device() == nnx::Device::cpu());
        CHECK((imported.to_vector<float>() == std::vector<float>{1, 2, 3, 4}));
        CHECK(deleted == 0);
    }
    CHECK(deleted == 1);
    DLManagedTensorVersioned owned = produced(0);
    {
        nnx::DLPackTensor adopted = nnx::DLPackTensor::adopt(&owned);
        CHECK(adopted.get() == &owned && deleted == 1);
    }
    CHECK(deleted == 2);
    DLManagedTensor legacy{{produced_data, {1, 0}, 1, {2, 32, 1}, produced_shape, nullptr, 0},
                           nullptr, count_delete_legacy};
    {
        nnx::Array imported = nnx::Array::from_dlpack(nnx::LegacyDLPackTensor::adopt(&legacy));
        CHECK(!imported.writable() && imported.size() == 4);
    }
    CHECK(deleted == 3);
    // A tensor the library cannot take is handed back at once, and throws.
    DLManagedTensorVersioned future = produced(0);
    future.version.major = 9;
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::Array::from_dlpack(&future));
    CHECK(deleted == 4);
    DLManagedTensorVersioned lanes = produced(0);
    lanes.dl_tensor.dtype.lanes = 4;
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::Array::from_dlpack(nnx::DLPackTensor::adopt(&lanes)));
    CHECK(deleted == 5);
    int64_t strides[1] = {2};
    DLManagedTensorVersioned strided = produced(0);
    strided.dl_tensor.strides = strides;
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::Array::from_dlpack(&strided));
    CHECK(deleted == 6);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT,
                 nnx::Array::from_dlpack(static_cast<DLManagedTensorVersioned *>(nullptr)));
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT,
                 nnx::Array::from_dlpack(static_cast<DLManagedTensor *>(nullptr)));
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, nnx::Array::from_dlpack(nnx::DLPackTensor()));
    nnx::Array gone = nnx::Array::zeros<float>({1});
    nnx::Array taker = std::move(gone);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, gone.to_dlpack());
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, gone.to_dlpack_legacy());
    CHECK(deleted == 6);
}

void test_devices() {
    constexpr nnx::Device cuda1{2, 1};
    static_assert(nnx::Device::cpu().is_cpu() && !cuda1.is_cpu(), "device kinds");
    static_assert(nnx::Device::cpu() == nnx::Device{1, 0} && cuda1 != nnx::Device::cpu(),
                  "devices compare");
    CHECK(nnx::Array::zeros<float>({2}).device() == nnx::Device::cpu());

    // Memory of another device: held, filtered and exported, never read.
    int released = 0;
    std::vector<float> stand_in(4);  // stands in for device memory
    {
        nnx::Array on_gpu = nnx::Array::wrap_device(NNX_DTYPE_F32, {4}, stand_in.data(),
                                                    4 * sizeof(float), cuda1, true,
                                                    [&] { released++; });
        CHECK(on_gpu.device() == cuda1 && on_gpu.data() == stand_in.data());
        CHECK(on_gpu.writable() && (on_gpu.shape() == nnx::Shape{4}) && on_gpu.nbytes() == 16);
        nnx::State state;
        state.set("gpu/w", nnx::Variable(NNX_TYPE_PARAM, on_gpu)).set("cpu/w", param({1}));
        CHECK(state.to_string().find("<device 2:1>") != std::string::npos);
        auto [params, none] = state.split(nnx::of_type(NNX_TYPE_PARAM), nnx::everything());
        CHECK(params.get("gpu/w").value()->same(on_gpu) && none.num_leaves() == 0);
        EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.deep_copy());
        EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.save_safetensors("never-written.safetensors"));
        CHECK(!std::filesystem::exists("never-written.safetensors"));
        // Through DLPack the device goes along.
        nnx::DLPackTensor t = on_gpu.to_dlpack();
        CHECK(t.get()->dl_tensor.device.device_type == 2 && t.get()->dl_tensor.device.device_id == 1);
        CHECK(t.get()->dl_tensor.data == stand_in.data());
        nnx::Array back = nnx::Array::from_dlpack(std::move(t));
        CHECK(back.device() == cuda1 && back.data() == stand_in.data());
        CHECK(released == 0);
    }
    CHECK(released == 1);
    // The typed form: const memory is read-only.
    const std::vector<int32_t> device_ints(3);
    {
        nnx::Array ro = nnx::Array::wrap_device<const int32_t>({3}, device_ints.data(),
                                                               nnx::Device{2, 0},
                                                               [&] { released++; });
        CHECK(ro.dtype() == NNX_DTYPE_I32 && !ro.writable() && ro.device() == (nnx::Device{2, 0}));
        EXPECT_ERROR(NNX_ERR_READ_ONLY, ro.mutable_data());
    }
    CHECK(released == 2);
    // CPU memory through wrap_device is an ordinary wrapped array.
    std::vector<float> host = {3, 4};
    nnx::Array on_cpu = nnx::Array::wrap_device<float>({2}, host.data(), nnx::Device::cpu());
    CHECK(on_cpu.device().is_cpu() && (on_cpu.to_vector<float>() == host));
    // A failed wrap never runs the release action.
    EXPECT_ERROR(NNX_ERR_SHAPE_MISMATCH,
                 nnx::Array::wrap_device(NNX_DTYPE_F32, {5}, stand_in.data(), 16, cuda1, true,
                                         [&] { released++; }));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 nnx::Array::wrap_device(999, {1}, stand_in.data(), 4, cuda1, true));
    CHECK(released == 2);
    nnx::Array gone = std::move(on_cpu);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, on_cpu.device());
}

}  // namespace

int main() {
    const fs::path dir =
        fs::temp_directory_path() / ("nnx-checkpoint-cpp-" + std::to_string(getpid()));
    try {
        fs::remove_all(dir);
        fs::create_directories(dir);
        test_safetensors(dir);
        test_keys_and_opaque_values(dir);
        test_parse_filter();
        test_dlpack();
        test_devices();
    } catch (const std::exception &e) {
        std::cerr << "checkpoint_test: uncaught exception: " << e.what() << "\n";
        return 1;
    }
    fs::remove_all(dir);
    std::cout << "checkpoint_test: " << nnx_test::checks << " checks OK\n";
    return 0;
}
