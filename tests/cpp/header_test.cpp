// header_test.cpp: exercises every part of include/nnx_state.hpp but
// checkpoints, parsed filters, DLPack and devices (checkpoint_test.cpp has
// those). Built with -std=c++17 -Wall -Wextra -Wpedantic -Werror and run by
// tests/cpp.rs (also under valgrind); exits non-zero on the first failed
// check.

#include "nnx_state.hpp"

#include "check.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

// Ownership models, checked at compile time.
static_assert(!std::is_copy_constructible_v<nnx::State>, "State is move-only");
static_assert(std::is_nothrow_move_constructible_v<nnx::State>, "State moves");
static_assert(!std::is_copy_constructible_v<nnx::Filter>, "Filter is move-only");
static_assert(!std::is_copy_constructible_v<nnx::Flat>, "Flat is move-only");
static_assert(std::is_copy_constructible_v<nnx::Variable>, "Variable copies by retain");
static_assert(std::is_copy_constructible_v<nnx::Array>, "Array copies by retain");
static_assert(std::is_copy_constructible_v<nnx::Meta>, "Meta copies by clone");
static_assert(std::is_nothrow_move_constructible_v<nnx::Meta>, "Meta moves");
static_assert(std::is_convertible_v<const nnx::Meta &, nnx::MetaRef>, "a Meta is a view too");
static_assert(std::is_base_of_v<std::runtime_error, nnx::Error>, "Error is a runtime_error");
static_assert(std::is_convertible_v<const char *, nnx::Key>, "keys from literals");
static_assert(std::is_convertible_v<std::string_view, nnx::Key>, "keys from string_view");
static_assert(std::is_convertible_v<std::string, nnx::Key>, "keys from std::string");
static_assert(std::is_convertible_v<int, nnx::Key>, "keys from int");
static_assert(std::is_convertible_v<int64_t, nnx::Key>, "keys from int64_t");
static_assert(std::is_convertible_v<std::size_t, nnx::Key>, "keys from size_t");
static_assert(!std::is_convertible_v<bool, nnx::Key>, "no keys from bool");
static_assert(!std::is_convertible_v<char, nnx::Key>, "no keys from char");
static_assert(nnx::dtype_of<float>() == NNX_DTYPE_F32, "float is f32");
static_assert(nnx::dtype_of<double>() == NNX_DTYPE_F64, "double is f64");
static_assert(nnx::dtype_of<int8_t>() == NNX_DTYPE_I8, "int8_t");
static_assert(nnx::dtype_of<uint16_t>() == NNX_DTYPE_U16, "uint16_t");
static_assert(nnx::dtype_of<int32_t>() == NNX_DTYPE_I32, "int32_t");
static_assert(nnx::dtype_of<long long>() == NNX_DTYPE_I64, "long long");
static_assert(nnx::dtype_of<uint64_t>() == NNX_DTYPE_U64, "uint64_t");
static_assert(nnx::dtype_of<bool>() == NNX_DTYPE_BOOL, "bool");

nnx::Variable param(std::vector<float> values) {
    nnx::Shape shape{static_cast<int64_t>(values.size())};
    return nnx::Variable(NNX_TYPE_PARAM, nnx::Array::from(shape, values));
}

std::vector<std::string> leaf_paths(const nnx::State &state) {
    std::vector<std::string> out;
    for (const auto &[path, leaf] : state.flatten()) {
        out.push_back(nnx::path_to_string(path));
    }
    return out;
}

void test_version_and_errors() {
    CHECK(nnx::version() == NNX_STATE_VERSION);
    nnx::State state;
    try {
        state.get({"missing"});
        CHECK(false);
    } catch (const nnx::Error &e) {
        CHECK(e.status() == NNX_ERR_KEY_NOT_FOUND);
        CHECK(std::string(e.status_name()) == "NNX_ERR_KEY_NOT_FOUND");
        CHECK(std::string(e.what()).rfind("NNX_ERR_KEY_NOT_FOUND: ", 0) == 0);
        CHECK(std::string(e.what()) == std::string("NNX_ERR_KEY_NOT_FOUND: ") + e.message());
        CHECK(std::string(e.message()).find("missing") != std::string::npos);
    }
    // Caught as the standard base too.
    try {
        state.remove({"missing"});
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()).find("KEY_NOT_FOUND") != std::string::npos);
    }
    // A moved-from owner holds no handle: calls fail cleanly.
    nnx::State moved = std::move(state);
    CHECK(!state);
    CHECK(static_cast<bool>(moved));
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, state.size());
    // NUL bytes inside string arguments are refused on the C++ side.
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::with_tag(std::string_view("a\0b", 3)));
}

void test_keys_and_paths() {
    nnx::Key s = "layers";
    nnx::Key i = 0;
    nnx::Key z = std::string("0");
    nnx::Key big = static_cast<uint64_t>(7);
    CHECK(s.is_str() && s.str() == "layers");
    CHECK(i.is_int() && i.integer() == 0);
    CHECK(big.integer() == 7);
    CHECK(z.is_str() && !(z == i) && z != i);  // "0" and 0 are different keys
    CHECK(i < z);                              // ints sort before strings
    CHECK(nnx::Key(-3) < nnx::Key(2));
    CHECK(nnx::Key("a") < nnx::Key("b") && nnx::Key("a") < nnx::Key("ab"));
    CHECK(nnx::Key(std::string_view("x")).to_string() == "x");
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::Key(static_cast<uint64_t>(-1)));
    const char *null_text = nullptr;
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, nnx::Key k(null_text));

    nnx::Path p = nnx::parse_path("layers/0/kernel");
    CHECK(p.size() == 3 && p[0] == "layers" && p[1] == 0 && p[2] == "kernel");
    CHECK(nnx::path_to_string(p) == "layers/0/kernel");
    nnx::Path q = nnx::parse_path("007/-3/-0/x-1/-9223372036854775808/9223372036854775808");
    CHECK(q[0] == "007" && q[1] == -3 && q[2] == "-0" && q[3] == "x-1");
    CHECK(q[4] == nnx::Key(INT64_MIN) && q[5] == "9223372036854775808");
    CHECK(nnx::parse_path("").empty());
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_path("a//b"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::parse_path("/a"));
    EXPECT_ERROR(NNX_ERR_INVALID_UTF8, nnx::parse_path("a/\xff"));
    nnx::Path twelve = nnx::parse_path("a/1/b/2/c/3/d/4/e/5/f/6");  // past the 8 on the stack
    CHECK(twelve.size() == 12 && twelve[11] == 6 && twelve[10] == "f");

    // parse_path agrees with the library's own "/" parsing.
    nnx::State state;
    nnx::Variable v = param({1});
    const char *texts[] = {"a/0/b", "007/x", "-5", "-0/1", "a/-12/c"};
    for (const char *text : texts) {
        nnx::State one;
        nnx_status status = nnx_state_set_variable_str(one.handle(), text, v.handle());
        CHECK(status == NNX_OK);
        CHECK(one.contains(nnx::parse_path(text)));
        CHECK(one.get(nnx::parse_path(text)).same(v));
    }
    // Paths of every form: brace lists, Path values, std::string keys.
    std::string name = "kernel";
    state.set({"layers", 0, name}, v);
    state.set(nnx::Path{"layers", 1, std::string_view("kernel")}, v);
    CHECK(state.get({"layers", 0, "kernel"}).same(v));
    CHECK(state.kind({"layers"}) == NNX_KIND_STATE);
    CHECK(state.kind({}) == NNX_KIND_STATE);
    CHECK(state.kind({"layers", 1, "kernel"}) == NNX_KIND_VARIABLE);
    CHECK(state.contains({"layers", 0}));
    CHECK(!state.contains({"layers", "0"}));
    CHECK(!state.contains({"layers", 0, "kernel", "deeper"}));
    std::vector<nnx::Key> keys = state.get_state({"layers"}).keys();
    CHECK(keys.size() == 2 && keys[0] == 0 && keys[1] == 1);
    // A long path (more keys than the small buffer).
    nnx::Path deep;
    for (int d = 0; d < 20; d++) {
        deep.emplace_back(d);
    }
    state.set(deep, v);
    CHECK(state.get(deep).same(v));
}

void test_arrays() {
    nnx::Array a = nnx::Array::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
    CHECK(a.dtype() == NNX_DTYPE_F32);
    CHECK(a.ndim() == 2);
    CHECK((a.shape() == nnx::Shape{2, 3}));
    CHECK(a.size() == 6 && a.nbytes() == 24);
    CHECK(a.writable());
    CHECK(a.data_as<float>()[5] == 6.0f);
    CHECK((a.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6}));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, a.data_as<double>());
    EXPECT_ERROR(NNX_ERR_SHAPE_MISMATCH, nnx::Array::from<float>({4}, {1, 2, 3}));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::Array::zeros<float>({-1}));

    // Copies share the array (retain); writes are seen through every copy.
    nnx::Array b = a;
    CHECK(b.same(a));
    b.mutable_data_as<float>()[0] = 10;
    CHECK(a.data_as<float>()[0] == 10);
    nnx::Array c = std::move(b);
    CHECK(!b && c.same(a));
    b = c;
    CHECK(b.same(a));

    nnx::Array s = nnx::Array::scalar<int64_t>(42);
    CHECK(s.ndim() == 0 && s.shape().empty() && s.size() == 1 && s.data_as<int64_t>()[0] == 42);
    nnx::Array z = nnx::Array::zeros<int32_t>({3});
    CHECK((z.to_vector<int32_t>() == std::vector<int32_t>{0, 0, 0}));
    nnx::Array flags = nnx::Array::from({3}, std::vector<bool>{true, false, true});
    CHECK(flags.dtype() == NNX_DTYPE_BOOL && flags.data_as<bool>()[2]);
    double raw[2] = {0.5, 1.5};
    nnx::Array from_pointer = nnx::Array::from<double>({2}, raw);
    CHECK(from_pointer.to_vector<double>()[1] == 1.5);
    nnx::Array bytes = nnx::Array::copy(NNX_DTYPE_U8, {2}, "ab", 2);
    CHECK(bytes.data_as<uint8_t>()[1] == 'b');

    // Borrowed memory: released exactly once, when the last reference goes.
    int released = 0;
    std::vector<float> buffer = {1, 2, 3};
    {
        nnx::Array wrapped = nnx::Array::wrap<float>({3}, buffer.data(), [&] { released++; });
        CHECK(wrapped.data() == buffer.data());
        nnx::State holder;
        holder.set({"w"}, wrapped);
        nnx::Array copy = wrapped;
        buffer[1] = 20;
        CHECK(holder.get_array({"w"}).data_as<float>()[1] == 20);
        CHECK(released == 0);
    }
    CHECK(released == 1);
    // Read-only memory refuses mutable access.
    const std::vector<float> constant = {1, 2};
    {
        nnx::Array ro = nnx::Array::wrap<const float>({2}, constant.data(), [&] { released++; });
        CHECK(!ro.writable());
        EXPECT_ERROR(NNX_ERR_READ_ONLY, ro.mutable_data());
    }
    CHECK(released == 2);
    // A failed wrap never runs the release action.
    EXPECT_ERROR(NNX_ERR_SHAPE_MISMATCH,
                 nnx::Array::wrap(NNX_DTYPE_F32, {5}, buffer.data(), 12, true, [&] { released++; }));
    CHECK(released == 2);

    // adopt / borrow / release round trips with the C API.
    nnx_array *raw_handle = a.handle();
    nnx::Array borrowed = nnx::Array::borrow(raw_handle);
    CHECK(borrowed.same(a));
    nnx_array *given = borrowed.release();
    CHECK(!borrowed);
    nnx::Array adopted = nnx::Array::adopt(given);
    CHECK(adopted.same(a));
}

void test_variables_and_metadata() {
    nnx::Variable v(NNX_TYPE_PARAM);
    CHECK(v.type() == NNX_TYPE_PARAM);
    CHECK(v.type_name() == "Param");
    CHECK(!v.value().has_value());
    nnx::Array value = nnx::Array::from<float>({2}, {1, 2});
    v.set_value(value);
    CHECK(v.value().has_value() && v.value()->same(value));
    v.clear_value();
    CHECK(!v.value());
    uint32_t before = v.revision();
    v.set_value(value);
    CHECK(v.revision() > before);

    nnx::Variable twin = v.shallow_copy();
    CHECK(!twin.same(v) && twin.type() == NNX_TYPE_PARAM);
    CHECK(twin.value()->same(value));

    v.set_metadata("tag", "encoder")
        .set_metadata("name", std::string("w"))
        .set_metadata("sharding", std::string_view("x"))
        .set_metadata("rank", 3)
        .set_metadata("big", int64_t{1} << 40)
        .set_metadata("scale", 0.5)
        .set_metadata("scale_f", 0.25f)
        .set_metadata("frozen", true)
        .set_metadata("zero", 0);
    CHECK(v.tag() == std::optional<std::string>("encoder"));
    CHECK(v.metadata_as<std::string>("name") == "w");
    CHECK(v.metadata_as<int>("rank") == 3);
    CHECK(v.metadata_as<int64_t>("big") == (int64_t{1} << 40));
    CHECK(v.metadata_as<double>("scale") == 0.5);
    CHECK(v.metadata_as<double>("scale_f") == 0.25);
    CHECK(v.metadata_as<bool>("frozen"));
    CHECK(std::get<int64_t>(v.metadata("zero")) == 0);
    CHECK(std::get<std::string>(v.metadata("sharding")) == "x");
    CHECK(std::get<bool>(v.metadata("frozen")));
    CHECK(std::get<double>(v.metadata("scale")) == 0.5);
    CHECK(v.has_metadata("rank") && !v.has_metadata("nope"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, v.metadata_as<int>("name"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, v.metadata("nope"));
    auto all = v.metadata();
    CHECK(all.size() == 9 && all[0].first == "tag" && all[3].first == "rank");
    CHECK(std::get<int64_t>(all[3].second) == 3);
    v.set_metadata("copy", all[1].second);
    CHECK(v.metadata_as<std::string>("copy") == "w");
    v.remove_metadata("copy");
    CHECK(!v.has_metadata("copy"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, v.remove_metadata("copy"));
    nnx::Variable untagged(NNX_TYPE_CACHE);
    CHECK(!untagged.tag());
    untagged.set_tag("t");
    CHECK(untagged.tag() == std::optional<std::string>("t"));

    // Copies refer to the same variable: a value set through one is seen
    // through every copy and every state holding it.
    nnx::Variable copy = v;
    CHECK(copy.same(v));
    nnx::State state;
    state.set({"v"}, v);
    copy.set_value(nnx::Array::from<float>({1}, {9}));
    CHECK(state.get({"v"}).value()->data_as<float>()[0] == 9);
    EXPECT_ERROR(NNX_ERR_UNKNOWN_TYPE, nnx::Variable(999999));
}

void test_keys_and_opaque_values() {
    // A typed key as jax.random.key(42) makes it: threefry2x32 data [0, 42].
    nnx::Array data = nnx::Array::from<uint32_t>({2}, {0, 42});
    nnx::Variable k(NNX_TYPE_RNG_KEY, nnx::PrngKey{data, "threefry2x32"});
    CHECK(k.value_kind() == nnx::ValueKind::Key);
    std::optional<nnx::PrngKey> key = k.key();
    CHECK(key && key->impl == "threefry2x32" && key->data.same(data));
    CHECK(!k.opaque());
    // A key is not an array: value() refuses it rather than lose its impl.
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, k.value());
    nnx::Array four = nnx::Array::from<uint32_t>({4}, {1, 2, 3, 4});
    std::string message = EXPECT_ERROR(
        NNX_ERR_INVALID_ARGUMENT, nnx::Variable(NNX_TYPE_RNG_KEY, nnx::PrngKey{four, "threefry2x32"}));
    CHECK(message.find("[..., 2]") != std::string::npos);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 k.set_key(nnx::PrngKey{nnx::Array::from<float>({2}, {0, 1}), "threefry2x32"}));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, k.set_key(nnx::PrngKey{data, std::string("a\0b", 3)}));
    CHECK(k.key()->impl == "threefry2x32");  // unchanged by the failures
    nnx::Array batch = nnx::Array::from<uint32_t>({3, 4}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    k.set_key({batch, "rbg"});
    CHECK(k.key()->impl == "rbg" && (k.key()->data.shape() == nnx::Shape{3, 4}));
    k.set_value(data);
    CHECK(k.value_kind() == nnx::ValueKind::Array && !k.key() && k.value()->same(data));
    k.set_key({data, "threefry2x32"});

    nnx::State state;
    state.set({"rngs", "key"}, k);
    std::string text = state.to_string();
    CHECK(text.find("RngKey( # 1 (8 B)") != std::string::npos);
    CHECK(text.find("value=key<fry>[] overlaying uint32[2] [0, 42]") != std::string::npos);
    // A deep copy copies the key data.
    nnx::State copied = state.deep_copy();
    std::optional<nnx::PrngKey> copied_key = copied.get({"rngs", "key"}).key();
    CHECK(copied_key && !copied_key->data.same(data) && copied_key->impl == "threefry2x32");
    CHECK((copied_key->data.to_vector<uint32_t>() == std::vector<uint32_t>{0, 42}));

    // An opaque value holding a shared_ptr: the library keeps the object
    // alive until its last holder goes, deep copies included.
    struct Thing {
        int n;
    };
    auto thing = std::make_shared<Thing>(Thing{7});
    int released = 0;
    {
        nnx::Variable o(NNX_TYPE_PARAM, nnx::Opaque::shared("test:Thing", thing));
        CHECK(thing.use_count() == 2);
        CHECK(o.value_kind() == nnx::ValueKind::Opaque && !o.key());
        std::optional<nnx::OpaqueRef> ref = o.opaque();
        CHECK(ref && ref->type_name == "test:Thing" && ref->as<Thing>()->n == 7);
        EXPECT_ERROR(NNX_ERR_WRONG_KIND, o.value());
        nnx::State s;
        s.set({"w"}, o);
        CHECK(s.to_string().find("value=<opaque test:Thing>") != std::string::npos);
        auto [params, rest] = s.split(nnx::of_type(NNX_TYPE_PARAM), nnx::everything());
        CHECK(params.get({"w"}).same(o) && rest.num_leaves() == 0);
        nnx::State copy = s.deep_copy();
        nnx::Variable w = copy.get({"w"});
        CHECK(!w.same(o) && w.opaque()->object == thing.get());
        // Replacing the original's value leaves the copy's alone.
        o.set_opaque({"test:counter", &released, [&released] { released++; }});
        CHECK(o.opaque()->type_name == "test:counter" && o.opaque()->as<int>() == &released);
        CHECK(thing.use_count() == 2 && w.opaque()->type_name == "test:Thing");
        CHECK(released == 0);
    }
    CHECK(thing.use_count() == 1);
    CHECK(released == 1);
    // A failed opaque value never runs its release action.
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 nnx::Variable(NNX_TYPE_PARAM, nnx::Opaque{"", &released, [&released] { released++; }}));
    nnx::Variable plain(NNX_TYPE_PARAM);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT,
                 plain.set_opaque({std::string("a\0b", 3), &released, [&released] { released++; }}));
    CHECK(released == 1 && plain.value_kind() == nnx::ValueKind::None);
}

void test_structured_metadata() {
    // Built from C++ values, shown as Python shows them.
    nnx::Meta sharding = nnx::Meta::tuple({nullptr, "model"});
    CHECK(sharding.to_string() == "(None, 'model')");
    CHECK(sharding.kind() == NNX_META_TUPLE && sharding.size() == 2);
    CHECK(sharding[0].is_none() && sharding[1].as_str() == "model");
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, sharding[2]);
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, sharding[1].as_int());
    nnx::Meta adam = nnx::Meta::map({{"lr", 1e-3},
                                     {"betas", nnx::Meta::tuple({0.9, 0.999})},
                                     {"steps", nnx::Meta::list({1, int64_t{10}, 100u})},
                                     {"nesterov", false},
                                     {"name", std::string("adam")}});
    CHECK(adam.to_string() ==
          "{'lr': 0.001, 'betas': (0.9, 0.999), 'steps': [1, 10, 100], 'nesterov': False, "
          "'name': 'adam'}");
    CHECK(adam.at("betas")[1].as_float() == 0.999);
    CHECK(adam.at("steps")[2].as_int() == 100);
    CHECK(!adam.at("nesterov").as_bool());
    CHECK(adam.entry(4).first == "name" && adam.entry(4).second.as_str() == "adam");
    CHECK(!adam.find("eps") && adam.find("lr"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, adam.at("eps"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, sharding.at("lr"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, adam.append(1));
    CHECK(nnx::Meta::tuple({1}).to_string() == "(1,)");
    CHECK(nnx::Meta().to_string() == "None");
    std::ostringstream shown;
    shown << nnx::Meta::list({true, 2.5, "x"});
    CHECK(shown.str() == "[True, 2.5, 'x']");

    // Kinds stay apart; copies are deep; the JSON form reads back equal.
    CHECK(nnx::Meta(1) != nnx::Meta(1.0));
    CHECK(nnx::Meta::list({nullptr, "model"}) != sharding);
    nnx::Meta copy = adam;
    copy.set("lr", 0.1).set("extra", nnx::Meta::map());
    CHECK(copy != adam && copy.size() == 6 && adam.size() == 5);
    CHECK(copy.entry(0).second.as_float() == 0.1);
    nnx::Meta view_copy = adam.at("betas").copy();
    view_copy.append(view_copy);
    CHECK(view_copy.to_string() == "(0.9, 0.999, (0.9, 0.999))");
    CHECK(nnx::Meta::from_json(adam.to_json()) == adam);
    CHECK(adam.to_json().rfind("[\"map\",\"lr\",0.001,", 0) == 0);
    EXPECT_ERROR(NNX_ERR_FORMAT, nnx::Meta::from_json("{\"a\": 1}"));
    nnx::Meta moved = std::move(copy);
    CHECK(!copy && moved.size() == 6);  // NOLINT(bugprone-use-after-move)
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, copy.kind());  // NOLINT(bugprone-use-after-move)
    nnx_meta *raw = moved.release();
    nnx::Meta adopted = nnx::Meta::adopt(raw);
    CHECK(adopted.size() == 6);

    // NNX_MAX_DEPTH levels, and no more.
    nnx::Meta deep;
    for (int level = 0; level < NNX_MAX_DEPTH; level++) {
        deep = nnx::Meta::list({deep});
    }
    EXPECT_ERROR(NNX_ERR_TOO_DEEP, nnx::Meta::tuple({deep}));
    EXPECT_ERROR(NNX_ERR_TOO_DEEP, nnx::Meta::map().set("k", deep));

    // On a variable: copies in, copies out, scalars as before.
    nnx::Variable v(NNX_TYPE_PARAM);
    v.set_metadata("out_sharding", sharding).set_metadata("mesh", nullptr).set_metadata("opt", adam);
    sharding.append("changed");
    CHECK(v.metadata_as<nnx::Meta>("out_sharding").to_string() == "(None, 'model')");
    CHECK(std::get<nnx::Meta>(v.metadata("mesh")).is_none());
    CHECK(std::get<nnx::Meta>(v.metadata("opt")) == adam);
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, v.metadata_as<std::string>("out_sharding"));
    v.set_metadata("tag", "t");
    CHECK(v.metadata_as<nnx::Meta>("tag").as_str() == "t");
    auto all = v.metadata();
    CHECK(all.size() == 4 && all[0].first == "out_sharding" && all[3].first == "tag");
    CHECK(std::get<nnx::Meta>(all[2].second).at("lr").as_float() == 1e-3);
    nnx::Variable other(NNX_TYPE_PARAM);
    for (const auto &[name, value] : all) {
        other.set_metadata(name, value);
    }
    CHECK(other.metadata_as<nnx::Meta>("opt") == adam && other.tag() == std::optional<std::string>("t"));
}

void test_types() {
    CHECK(nnx::type_name(NNX_TYPE_BATCH_STAT) == "BatchStat");
    CHECK(nnx::type_parent(NNX_TYPE_PARAM) == NNX_TYPE_VARIABLE);
    CHECK(nnx::type_parent(NNX_TYPE_VARIABLE) == NNX_TYPE_NONE);
    CHECK(nnx::is_subtype(NNX_TYPE_RNG_KEY, NNX_TYPE_RNG_STATE));
    CHECK(!nnx::is_subtype(NNX_TYPE_PARAM, NNX_TYPE_BATCH_STAT));
    std::size_t before = nnx::type_count();
    nnx_type_id lora = nnx::register_type("HppLoRAParam", NNX_TYPE_PARAM);
    CHECK(nnx::register_type("HppLoRAParam", NNX_TYPE_PARAM) == lora);
    CHECK(nnx::lookup_type("HppLoRAParam") == lora);
    CHECK(nnx::type_name(lora) == "HppLoRAParam");
    CHECK(nnx::is_subtype(lora, NNX_TYPE_PARAM));
    CHECK(nnx::type_count() == before + 1);
    nnx_type_id plain = nnx::register_type(std::string("HppPlain"));
    CHECK(nnx::type_parent(plain) == NNX_TYPE_VARIABLE);
    EXPECT_ERROR(NNX_ERR_TYPE_CONFLICT, nnx::register_type("HppLoRAParam", NNX_TYPE_CACHE));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, nnx::lookup_type("HppNoSuchType"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::register_type(""));

    // A Param filter selects the registered subtype too.
    nnx::State state;
    state.set({"lora"}, nnx::Variable(lora, nnx::Array::zeros<float>({1})));
    state.set({"stat"}, nnx::Variable(NNX_TYPE_BATCH_STAT));
    CHECK(state.filter(nnx::of_type(NNX_TYPE_PARAM)).num_leaves() == 1);
}

// The seed state: Model(BatchNorm(2), Linear(2, 3)).
nnx::State seed_state() {
    nnx::State state;
    state.set({"batchnorm", "bias"}, param({0, 0}))
        .set({"batchnorm", "scale"}, param({1, 1}))
        .set({"batchnorm", "mean"},
             nnx::Variable(NNX_TYPE_BATCH_STAT, nnx::Array::zeros<float>({2})))
        .set({"batchnorm", "var"},
             nnx::Variable(NNX_TYPE_BATCH_STAT, nnx::Array::from<float>({2}, {1, 1})))
        .set({"linear", "bias"}, param({0, 0, 0}))
        .set({"linear", "kernel"}, nnx::Variable(NNX_TYPE_PARAM, nnx::Array::zeros<float>({2, 3})));
    return state;
}

void test_filters() {
    nnx::State state = seed_state();
    state.get({"linear", "kernel"}).set_tag("weights");
    state.set({"embedding"}, nnx::Array::zeros<float>({4}));  // a bare array
    const nnx::Filter p = nnx::of_type(NNX_TYPE_PARAM);
    const nnx::Filter b = nnx::of_type(NNX_TYPE_BATCH_STAT);

    CHECK(state.filter(p).num_leaves() == 4);
    CHECK(state.filter(p | b).num_leaves() == 6);
    CHECK(state.filter(nnx::any(p, b)).num_leaves() == 6);
    CHECK(state.filter(p & nnx::path_contains("linear")).num_leaves() == 2);
    CHECK(state.filter(nnx::all(p, nnx::path_contains("linear"))).num_leaves() == 2);
    CHECK(state.filter(~p).num_leaves() == 3);  // the stats and the bare array
    CHECK(state.filter(nnx::not_(p | b)).num_leaves() == 1);
    CHECK(state.filter(nnx::with_tag("weights")).num_leaves() == 1);
    CHECK(state.filter(nnx::path_contains("batch", false)).num_leaves() == 4);
    CHECK(state.filter(nnx::path_contains("batch")).num_leaves() == 0);
    CHECK(state.filter(nnx::path_in({{"linear", "bias"}, {"embedding"}})).num_leaves() == 2);
    std::vector<nnx::Path> paths = {nnx::parse_path("batchnorm/mean")};
    CHECK(state.filter(nnx::path_in(paths)).num_leaves() == 1);
    CHECK(state.filter(nnx::everything()).num_leaves() == 7);
    CHECK(state.filter(nnx::nothing()).num_leaves() == 0);
    CHECK(state.filter(nnx::any()).num_leaves() == 0);
    CHECK(state.filter(nnx::all()).num_leaves() == 7);
    CHECK(state.filter(p.clone()).num_leaves() == 4);

    // One leaf asked directly, as filter() decides it in a state.
    nnx::Variable kernel = state.get({"linear", "kernel"});
    nnx::Array embedding = state.get_array({"embedding"});
    CHECK(p.matches({"linear", "kernel"}, kernel) && !b.matches({"linear", "kernel"}, kernel));
    CHECK(nnx::with_tag("weights").matches({"x"}, kernel));
    CHECK(!p.matches({"embedding"}, embedding) && (~p).matches({"embedding"}, embedding));
    CHECK(nnx::path_contains("linear").matches({"linear", "kernel"}, kernel));
    CHECK(!nnx::path_contains("linear").matches({"other"}, kernel));

    // Composite filters keep copies: the parts may go first.
    nnx::Filter composite = [] {
        nnx::Filter a = nnx::of_type(NNX_TYPE_PARAM);
        nnx::Filter c = nnx::path_contains("linear");
        return a & c;
    }();
    CHECK(state.filter(composite).num_leaves() == 2);

    // The Everything rule and its escape.
    EXPECT_ERROR(NNX_ERR_FILTER_ORDER, state.filter(nnx::everything(), p));
    auto [anything, params] = state.filter(nnx::any(nnx::everything()), p);
    CHECK(anything.num_leaves() == 7 && params.num_leaves() == 0);

    // Filters taken over from and handed to the C API.
    nnx_filter *raw = nullptr;
    CHECK(nnx_filter_of_type(NNX_TYPE_BATCH_STAT, &raw) == NNX_OK);
    nnx::Filter adopted = nnx::Filter::adopt(raw);
    CHECK(state.filter(adopted).num_leaves() == 2);
    nnx::Filter moved = std::move(adopted);
    CHECK(!adopted && moved);
    nnx_filter_free(moved.release());
}

void test_callbacks() {
    nnx::State state = seed_state();
    state.set({"embedding"}, nnx::Array::zeros<float>({4}));
    int calls = 0;
    nnx::Filter kernels = nnx::callback([&calls](const nnx::Path &path, const nnx::Leaf &leaf) {
        calls++;
        if (const auto *v = std::get_if<nnx::Variable>(&leaf)) {
            return path.back() == "kernel" && v->type() == NNX_TYPE_PARAM;
        }
        return false;
    });
    CHECK(state.filter(kernels).num_leaves() == 1);
    CHECK(calls == 7);
    nnx::Filter arrays = nnx::callback(
        [](const nnx::Path &, const nnx::Leaf &leaf) { return std::holds_alternative<nnx::Array>(leaf); });
    CHECK(state.filter(arrays).num_leaves() == 1);
    nnx::Filter path_only = nnx::callback([](const nnx::Path &path) { return path[0] == "linear"; });
    CHECK(state.filter(path_only).num_leaves() == 2);
    // Callbacks compose, and the callable lives as long as any copy.
    nnx::Filter composed = [] {
        nnx::Filter cb = nnx::callback([](const nnx::Path &path) { return path.size() == 2; });
        return cb & nnx::of_type(NNX_TYPE_BATCH_STAT);
    }();
    CHECK(state.filter(composed).num_leaves() == 2);

    // An exception in the callable comes back out of filter() and split().
    struct Boom : std::exception {
        const char *what() const noexcept override { return "boom"; }
    };
    nnx::Filter throwing = nnx::callback([](const nnx::Path &) -> bool { throw Boom(); });
    bool caught = false;
    try {
        state.filter(throwing);
    } catch (const Boom &) {
        caught = true;
    }
    CHECK(caught);
    caught = false;
    try {
        state.split(throwing, nnx::everything());
    } catch (const Boom &) {
        caught = true;
    }
    CHECK(caught);
    caught = false;
    try {
        throwing.matches({"x"}, state.get({"linear", "kernel"}));
    } catch (const Boom &) {
        caught = true;
    }
    CHECK(caught);
    // The next failing call reports its own error, not a stale exception.
    EXPECT_ERROR(NNX_ERR_NON_EXHAUSTIVE, state.split(nnx::nothing()));
    // Callbacks may call the library.
    nnx::Filter reentrant = nnx::callback([](const nnx::Path &, const nnx::Leaf &leaf) {
        nnx::State inner;
        inner.set({"x"}, leaf);
        return inner.filter(nnx::of_type(NNX_TYPE_BATCH_STAT)).num_leaves() == 1;
    });
    CHECK(state.filter(reentrant).num_leaves() == 2);
}

void test_operations() {
    nnx::State state = seed_state();
    const nnx::Filter p = nnx::of_type(NNX_TYPE_PARAM);
    const nnx::Filter b = nnx::of_type(NNX_TYPE_BATCH_STAT);

    // filter / split: std::array with structured bindings, std::vector at run time.
    auto [params, stats] = state.split(p, b);
    static_assert(std::is_same_v<decltype(state.split(p, b)), std::array<nnx::State, 2>>,
                  "split of two filters gives std::array<State, 2>");
    static_assert(std::is_same_v<decltype(state.filter(p)), nnx::State>,
                  "filter of one filter gives a State");
    CHECK(params.num_leaves() == 4 && stats.num_leaves() == 2);
    std::vector<nnx::Filter> list;
    list.push_back(nnx::of_type(NNX_TYPE_BATCH_STAT));
    list.push_back(nnx::everything());
    std::vector<nnx::State> parts = state.filter(list);
    CHECK(parts.size() == 2 && parts[0].num_leaves() == 2 && parts[1].num_leaves() == 4);
    CHECK(state.split(list).size() == 2);
    EXPECT_ERROR(NNX_ERR_NON_EXHAUSTIVE, state.split(p));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.filter(std::vector<nnx::Filter>{}));
    auto three = state.filter(b, p, nnx::everything());
    CHECK(three.size() == 3 && three[2].num_leaves() == 0);

    // merge: variadic, a std::array, a std::vector.
    nnx::State merged = nnx::merge(params, stats);
    CHECK(leaf_paths(merged) == leaf_paths(state));
    CHECK(nnx::merge(state.split(p, b)).num_leaves() == 6);
    CHECK(nnx::merge(parts).num_leaves() == 6);
    CHECK(nnx::merge(state).num_leaves() == 6);
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, nnx::merge(std::vector<nnx::State>{}));
    CHECK(merged.get({"linear", "bias"}).same(state.get({"linear", "bias"})));

    // diff
    nnx::State d = nnx::diff(state, params);
    CHECK(leaf_paths(d) == leaf_paths(stats));
    CHECK(state.diff(stats).num_leaves() == 4);

    // update, in place
    nnx::State fresh;
    nnx::Variable replacement = param({5, 5, 5});
    fresh.set({"linear", "bias"}, replacement);
    fresh.set({"extra"}, param({7}));
    state.update(fresh);
    CHECK(state.get({"linear", "bias"}).same(replacement));
    CHECK(state.contains({"extra"}) && state.num_leaves() == 7);

    // clone shares leaves, deep_copy does not; both are independent trees.
    nnx::State cloned = state.clone();
    nnx::State deep = state.deep_copy();
    CHECK(cloned.get({"extra"}).same(state.get({"extra"})));
    CHECK(!deep.get({"extra"}).same(state.get({"extra"})));
    CHECK(deep.get({"extra"}).value()->to_vector<float>() == std::vector<float>{7});
    cloned.remove({"extra"});
    CHECK(state.contains({"extra"}) && !cloned.contains({"extra"}));

    // Views are live.
    nnx::State linear = state.get_state({"linear"});
    linear.set({"new"}, param({1}));
    CHECK(state.contains({"linear", "new"}));
    linear.remove({"new"});
    CHECK(!state.contains({"linear", "new"}));
    nnx::State whole = state.get_state({});
    CHECK(whole.num_leaves() == state.num_leaves());
    // A nested state copied in: set(path, State).
    state.set({"copy"}, linear);
    CHECK(state.kind({"copy", "bias"}) == NNX_KIND_VARIABLE);
    // Leaves through the variant.
    nnx::Leaf leaf = state.get_leaf({"linear", "bias"});
    CHECK(std::holds_alternative<nnx::Variable>(leaf));
    state.set({"embedding"}, nnx::Array::zeros<int8_t>({2}));
    CHECK(std::holds_alternative<nnx::Array>(state.get_leaf({"embedding"})));
    CHECK(state.get_array({"embedding"}).dtype() == NNX_DTYPE_I8);
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, state.get({"embedding"}));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, state.get_array({"linear", "bias"}));
    EXPECT_ERROR(NNX_ERR_PATH_THROUGH_LEAF, state.set({"embedding", "x"}, param({1})));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.set({}, param({1})));

    // keys, size, empty, key_at
    nnx::State small;
    CHECK(small.empty() && small.size() == 0);
    small.set({"b"}, param({1})).set({3}, param({2}));
    CHECK(small.size() == 2 && small.key_at(0) == "b" && small.key_at(1) == 3);
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, small.key_at(2));

    // to_string and operator<<
    std::string text = nnx::to_string(small);
    std::ostringstream out;
    out << small;
    CHECK(out.str() == text && text.find("Param") != std::string::npos);

    // adopt / release with the C API
    nnx_state *raw = small.release();
    CHECK(!small);
    nnx::State back = nnx::State::adopt(raw);
    CHECK(back.size() == 2);
    nnx::State assigned;
    assigned = std::move(back);
    CHECK(assigned.size() == 2 && !back);
}

void test_flat() {
    nnx::State state = seed_state();
    state.set({"layers", 0, "w"}, nnx::Array::zeros<float>({1}));
    nnx::Flat flat = state.flatten();
    CHECK(flat.size() == 7 && !flat.empty());
    // Sorted by path; iteration gives (path, leaf) pairs.
    std::vector<std::string> paths;
    for (const auto &[path, leaf] : flat) {
        paths.push_back(nnx::path_to_string(path));
        CHECK(std::holds_alternative<nnx::Array>(leaf) == (path[0] == "layers"));
    }
    CHECK(paths.front() == "batchnorm/bias" && paths.back() == "linear/kernel");
    std::size_t at = 0;
    while (at < flat.size() && flat.kind(at) != NNX_KIND_ARRAY) {
        at++;
    }
    CHECK(at < flat.size());
    CHECK((flat.path(at) == nnx::Path{"layers", 0, "w"}));
    CHECK(flat.array(at).same(state.get_array({"layers", 0, "w"})));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, flat.variable(at));
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, flat.path(99));
    nnx::FlatEntry entry = flat[0];
    CHECK(std::get<nnx::Variable>(entry.leaf).same(state.get({"batchnorm", "bias"})));

    // Round trip, and a flat built by hand (later pair wins).
    nnx::State again = nnx::from_flat_state(nnx::to_flat_state(state));
    CHECK(leaf_paths(again) == leaf_paths(state));
    nnx::Flat built;
    nnx::Variable first = param({1});
    nnx::Variable second = param({2});
    built.push({"a", 0}, first).push(nnx::Path{"b"}, nnx::Array::zeros<float>({1}));
    built.push({"a", 0}, second);
    nnx::State from_built = nnx::State::from_flat(built);
    CHECK(from_built.num_leaves() == 2 && from_built.get({"a", 0}).same(second));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, built.push({}, first));
}

void test_string_paths() {
    nnx::State state;
    nnx::Variable kernel = param({1, 2});
    nnx::Array table = nnx::Array::zeros<int32_t>({3});
    nnx::Variable bias = param({0});

    // Each setter with a "/" path; decimal components are int keys.
    state.set("layers/0/kernel", kernel)
        .set(std::string("layers/0/table"), table)
        .set(std::string_view("layers/0/bias"), nnx::Leaf(bias))
        .set("layers/007", nnx::Leaf(nnx::Array::zeros<float>({1})));
    CHECK(state.get({"layers", 0, "kernel"}).same(kernel));
    CHECK(state.get_array({"layers", 0, "table"}).same(table));
    CHECK(state.get({"layers", 0, "bias"}).same(bias));
    CHECK(state.kind({"layers", "007"}) == NNX_KIND_ARRAY);  // "007" stays a string key
    CHECK(!state.contains({"layers", 7}));
    nnx::State sub;
    sub.set({"w"}, param({3}));
    state.set("copied/-3", sub);
    CHECK(state.kind({"copied", -3, "w"}) == NNX_KIND_VARIABLE);

    // Each getter.
    CHECK(state.get("layers/0/kernel").same(kernel));
    CHECK(state.get_variable("layers/0/kernel").same(kernel));
    CHECK(state.get_array("layers/0/table").same(table));
    CHECK(std::get<nnx::Variable>(state.get_leaf("layers/0/bias")).same(bias));
    CHECK(std::get<nnx::Array>(state.get_leaf("layers/0/table")).same(table));
    CHECK(state.kind("layers/0") == NNX_KIND_STATE);
    CHECK(state.kind("layers/0/kernel") == NNX_KIND_VARIABLE);
    CHECK(state.kind("layers/0/table") == NNX_KIND_ARRAY);
    CHECK(state.kind("") == NNX_KIND_STATE);  // the empty path is the state itself
    CHECK(state.contains("layers/0/kernel") && state.contains("layers"));
    CHECK(!state.contains("layers/1") && !state.contains("layers/0/kernel/deeper"));
    nnx::State view = state.get_state("layers/0");
    CHECK(view.size() == 3);
    view.set("extra", param({4}));
    CHECK(state.contains("layers/0/extra"));  // a live view, as with keys
    CHECK(state.get_state("").num_leaves() == state.num_leaves());
    std::string text = "layers/0/extra";
    state.remove(text);
    CHECK(!state.contains({"layers", 0, "extra"}));
    state.remove("copied");
    CHECK(!state.contains({"copied"}));

    // Brace lists stay lists of keys: {"a/b"} is one key holding a slash.
    state.set({"a/b"}, bias);
    CHECK(state.contains({"a/b"}) && !state.contains("a/b") && !state.contains({"a"}));
    CHECK(state.get({"a/b"}).same(bias));
    static_assert(std::is_same_v<decltype(state.get({})), nnx::Variable>, "get({}) compiles");

    // The library's parse agrees with parse_path.
    for (const char *p : {"layers/0/kernel", "layers/007", "layers/0/table"}) {
        CHECK(state.kind(p) == state.kind(nnx::parse_path(p)));
    }

    // Errors, with the library's statuses.
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.get("layers//kernel"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.set("/a", bias));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.contains("a/"));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.set("", bias));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.remove(""));
    EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, state.get(std::string_view("layers\0/x", 9)));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, state.get("layers/9/kernel"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, state.kind("nope"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, state.remove("nope"));
    EXPECT_ERROR(NNX_ERR_KEY_NOT_FOUND, state.get_state("nope"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, state.get("layers/0/table"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, state.get_array("layers/0/kernel"));
    EXPECT_ERROR(NNX_ERR_WRONG_KIND, state.get_state("layers/0/kernel"));
    EXPECT_ERROR(NNX_ERR_PATH_THROUGH_LEAF, state.set("layers/0/kernel/x", bias));
    EXPECT_ERROR(NNX_ERR_PATH_THROUGH_LEAF, state.set("layers/0/table/x", table));
    nnx::Variable taken = std::move(bias);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, state.set("moved", bias));
    CHECK(!bias && !state.contains("moved"));
    nnx::State gone = std::move(state);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, state.contains("layers"));
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, state.get_leaf("layers/0/kernel"));
    CHECK(gone.contains("layers/0/kernel"));
}

void test_flat_bulk() {
    nnx::State state = seed_state();
    state.set({"layers", 0, "w"}, nnx::Array::zeros<float>({1}));
    state.set({"layers", -1, "w"}, nnx::Array::zeros<int8_t>({2}));
    nnx::Flat flat = state.flatten();
    const std::size_t n = flat.size();
    CHECK(n == 8);

    // Bulk reads agree with the per-entry ones.
    std::vector<nnx::Path> paths = flat.paths();
    std::vector<nnx::Leaf> leaves = flat.leaves();
    std::vector<nnx_kind> kinds = flat.kinds();
    std::vector<nnx_type_id> types = flat.types();
    CHECK(paths.size() == n && leaves.size() == n && kinds.size() == n && types.size() == n);
    for (std::size_t i = 0; i < n; i++) {
        CHECK(paths[i] == flat.path(i));
        CHECK(kinds[i] == flat.kind(i));
        if (kinds[i] == NNX_KIND_VARIABLE) {
            const nnx::Variable &v = std::get<nnx::Variable>(leaves[i]);
            CHECK(v.same(flat.variable(i)));
            CHECK(types[i] == v.type());
        } else {
            CHECK(std::get<nnx::Array>(leaves[i]).same(flat.array(i)));
            CHECK(types[i] == NNX_TYPE_NONE);
        }
    }
    CHECK((paths[0] == nnx::Path{"batchnorm", "bias"}));
    CHECK((paths[4] == nnx::Path{"layers", -1, "w"}));  // ints numerically, before strings
    CHECK(types[1] == NNX_TYPE_BATCH_STAT && types[2] == NNX_TYPE_PARAM && kinds[4] == NNX_KIND_ARRAY);

    // Ranges.
    std::vector<nnx::Path> middle = flat.paths(4, 2);
    CHECK(middle.size() == 2 && middle[0] == paths[4] && middle[1] == paths[5]);
    std::vector<nnx::Leaf> last = flat.leaves(n - 1, 1);
    CHECK(last.size() == 1 && std::get<nnx::Variable>(last[0]).same(state.get({"linear", "kernel"})));
    CHECK((flat.kinds(4, 2) == std::vector<nnx_kind>{NNX_KIND_ARRAY, NNX_KIND_ARRAY}));
    CHECK((flat.types(0, 1) == std::vector<nnx_type_id>{NNX_TYPE_PARAM}));
    CHECK(flat.paths(n, 0).empty() && flat.leaves(3, 0).empty());
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, flat.paths(n - 1, 2));
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, flat.leaves(n + 1, 0));
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, flat.kinds(1, SIZE_MAX));
    EXPECT_ERROR(NNX_ERR_INDEX_OUT_OF_RANGE, flat.types(SIZE_MAX, 1));

    // entries(): (path, leaf) pairs; the leaves are the list's own, retained.
    std::vector<nnx::FlatEntry> entries = flat.entries();
    CHECK(entries.size() == n && entries[5].path == paths[5]);
    std::vector<nnx::FlatEntry> two = flat.entries(6, 2);
    CHECK(two.size() == 2 && two[1].path == paths[7]);
    nnx::Variable kept = std::get<nnx::Variable>(entries[7].leaf);
    {
        nnx::Flat dropped = std::move(flat);
    }
    CHECK(kept.same(state.get({"linear", "kernel"})));  // a reference of our own
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, flat.paths());

    // push_many: everything in one call, then a state from it.
    nnx::Flat built;
    nnx::Variable a = param({1});
    nnx::Variable b = param({2});
    nnx::Array c = nnx::Array::zeros<double>({2});
    nnx::Path deep;
    for (int d = 0; d < 12; d++) {
        deep.emplace_back(d);
    }
    built.push_many({{{"x", 0}, a}, {{"y"}, c}, {deep, b}});
    CHECK(built.size() == 3);
    CHECK((built.path(0) == nnx::Path{"x", 0}) && built.path(2) == deep);
    CHECK(built.variable(0).same(a) && built.array(1).same(c) && built.variable(2).same(b));
    built.push_many({});  // nothing, and no error
    built.push_many(entries);  // a flat's entries into another
    CHECK(built.size() == 3 + n);
    std::vector<nnx::FlatEntry> arrays_only = {{{"z", 1}, c}, {{"z", 2}, c}};
    built.push_many(arrays_only);
    std::vector<nnx::FlatEntry> variables_only = {{{"v"}, a}};
    built.push_many(variables_only);
    nnx::State from_built = nnx::State::from_flat(built);
    CHECK(from_built.get({"x", 0}).same(a) && from_built.get_array({"z", 2}).same(c));
    CHECK(from_built.get(deep).same(b) && from_built.get({"linear", "kernel"}).same(kept));
    CHECK(from_built.num_leaves() == 4 + n + 2);

    // All or none: a bad entry anywhere appends nothing, and is named.
    const std::size_t before = built.size();
    std::string message =
        EXPECT_ERROR(NNX_ERR_INVALID_ARGUMENT, built.push_many({{{"ok"}, a}, {{}, b}}));
    CHECK(message.find('1') != std::string::npos);
    nnx::Variable moved_from = a;
    nnx::Variable taker = std::move(moved_from);
    EXPECT_ERROR(NNX_ERR_NULL_ARGUMENT, built.push_many({{{"ok"}, c}, {{"bad"}, moved_from}}));
    EXPECT_ERROR(NNX_ERR_INVALID_UTF8,
                 built.push_many({{{"ok"}, c}, {{std::string_view("\xff", 1)}, a}}));
    CHECK(built.size() == before);
}

void test_threads() {
    // Handles may be shared across threads; each thread has its own errors.
    nnx::State state = seed_state();
    const nnx::Filter p = nnx::of_type(NNX_TYPE_PARAM);
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&] {
            for (int i = 0; i < 20; i++) {
                if (state.filter(p).num_leaves() == 4) {
                    ok++;
                }
                try {
                    state.get({"missing"});
                } catch (const nnx::Error &e) {
                    if (e.status() == NNX_ERR_KEY_NOT_FOUND) {
                        ok++;
                    }
                }
            }
        });
    }
    for (std::thread &t : threads) {
        t.join();
    }
    CHECK(ok == 160);
}

}  // namespace

int main() {
    try {
        test_version_and_errors();
        test_keys_and_paths();
        test_arrays();
        test_variables_and_metadata();
        test_keys_and_opaque_values();
        test_structured_metadata();
        test_types();
        test_filters();
        test_callbacks();
        test_operations();
        test_flat();
        test_string_paths();
        test_flat_bulk();
        test_threads();
    } catch (const std::exception &e) {
        std::cerr << "header_test: uncaught exception: " << e.what() << "\n";
        return 1;
    }
    std::cout << "header_test: " << nnx_test::checks << " checks OK\n";
    return 0;
}
