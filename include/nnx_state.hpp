/*
 * nnx_state.hpp: C++17 classes over the C API of nnx_state.h.
 *
 * Header-only: include it and link libnnx_state as for C. Everything is in
 * namespace nnx.
 *
 *   nnx::State state;
 *   state.set({"linear", "bias"}, nnx::Variable(NNX_TYPE_PARAM,
 *                                              nnx::Array::zeros<float>({3})));
 *   auto [params, rest] = state.split(nnx::of_type(NNX_TYPE_PARAM),
 *                                     nnx::everything());
 *   nnx::State merged = nnx::merge(params, rest);
 *
 * Ownership, as in the C API:
 *   - State, Filter and Flat own their handle: move-only, freed by the
 *     destructor. A moved-from object holds no handle; using it throws
 *     nnx::Error (NNX_ERR_NULL_ARGUMENT). clone() makes a copy.
 *   - Meta (a metadata value: None, bool, int, float, string, list, tuple,
 *     map) owns its nnx_meta; copies are deep. MetaRef is a borrowed view
 *     of one, as items and map values are handed out.
 *   - Variable and Array are references to shared, reference-counted
 *     objects: copying one takes another reference (retain), destroying it
 *     gives one back (release). Copies refer to the same variable or array,
 *     so a value set through one is seen through all of them and through
 *     every state that holds it; const on the C++ object does not protect
 *     the shared object.
 *   - DLPackTensor and LegacyDLPackTensor (Array::to_dlpack()) own a
 *     DLPack tensor: move-only; the destructor gives a tensor nobody took
 *     back to its producer. Array::from_dlpack() takes one over.
 *   - A variable's value is an Array, a PrngKey (key data and the name of
 *     its implementation) or an Opaque object the library holds for the
 *     caller and never looks into; value_kind() tells which, and value(),
 *     key() and opaque() read each.
 *   - adopt(handle) takes over a handle (and its reference) the caller owns;
 *     handle() lends the raw handle, release() gives it up.
 *
 * Errors: every failing call throws nnx::Error, a std::runtime_error that
 * carries the nnx_status and the library's message. An exception thrown by
 * a callback filter's callable is carried across the library and rethrown
 * from the filter() or split() call that ran it.
 *
 * Paths are brace lists of keys, each a string or an integer:
 * state.get({"layers", 0, "kernel"}) ({} is the empty path); an nnx::Path
 * (a std::vector of nnx::Key), as nnx::parse_path("layers/0/kernel")
 * gives; or, for State, a "/"-separated string, state.get("layers/0/kernel"),
 * which the library parses (canonical decimal components are int keys).
 *
 * Checkpoints: nnx::load_safetensors(path) and state.save_safetensors(path)
 * (or save_safetensors_sharded) read and write safetensors files;
 * nnx::parse_filter("Param & ~path:bias") builds a filter from text.
 *
 * Threads: as the C API. Every object may be used from several threads at
 * once, except that assigning to, moving from or destroying an object while
 * another thread uses that same C++ object is a data race, as for any C++
 * value.
 */

#ifndef NNX_STATE_HPP
#define NNX_STATE_HPP

#include "nnx_state.h"

#if !defined(__cplusplus) || (__cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L))
#error "nnx_state.hpp needs C++17 or later"
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace nnx {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A failing call: the status and the library's message. what() reads
/// "NNX_ERR_KEY_NOT_FOUND: <message>"; message() is the message alone.
class Error : public std::runtime_error {
public:
    Error(nnx_status status, const std::string &message)
        : std::runtime_error(prefix(status) + message),
          status_(status),
          prefix_len_(prefix(status).size()) {}

    /// The status of the failing call.
    nnx_status status() const noexcept { return status_; }

    /// The status as a name, such as "NNX_ERR_KEY_NOT_FOUND".
    const char *status_name() const noexcept {
        return nnx_status_name(static_cast<int32_t>(status_));
    }

    /// The library's message, without the status name.
    const char *message() const noexcept { return what() + prefix_len_; }

private:
    static std::string prefix(nnx_status status) {
        return std::string(nnx_status_name(static_cast<int32_t>(status))) + ": ";
    }

    nnx_status status_;
    std::size_t prefix_len_;
};

/// The library's version, "MAJOR.MINOR.PATCH" (NNX_STATE_VERSION is the
/// header's).
inline std::string_view version() { return nnx_version(); }

namespace detail {

/// Throws the error of a failed C call.
inline void check(nnx_status status) {
    if (status != NNX_OK) {
        throw Error(status, nnx_last_error_message());
    }
}

/// Throws an error raised on the C++ side, in the library's terms.
[[noreturn]] inline void fail(nnx_status status, const std::string &message) {
    throw Error(status, message);
}

/// A NUL-terminated copy of a string argument; a NUL byte inside fails,
/// since the C API would silently stop there.
inline std::string c_string(std::string_view text, const char *what) {
    if (text.find('\0') != std::string_view::npos) {
        fail(NNX_ERR_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return std::string(text);
}

/// Takes over a string the library returned as owned.
inline std::string take_string(char *text) {
    if (text == nullptr) {
        return std::string();
    }
    std::string copy(text);
    nnx_string_free(text);
    return copy;
}

/// The exception a callback threw, on its way back to the C++ caller of
/// the operation that ran it (callbacks run on the calling thread).
inline std::exception_ptr &pending_exception() {
    static thread_local std::exception_ptr pending;
    return pending;
}

/// Rethrows a callback's exception after `status`, or throws for `status`.
inline void check_with_callbacks(nnx_status status) {
    std::exception_ptr pending = std::exchange(pending_exception(), nullptr);
    if (status == NNX_OK) {
        return;
    }
    if (pending) {
        std::rethrow_exception(pending);
    }
    check(status);
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Keys and paths
// ---------------------------------------------------------------------------

/// One element of a path: a UTF-8 string or a signed 64-bit integer. The
/// string "0" and the integer 0 are different keys. Built implicitly from
/// string literals, std::string, std::string_view and integers (not from
/// bool or characters); owns its string.
class Key {
public:
    Key(const char *text) : kind_(NNX_KEY_STR) {  // NOLINT: implicit by design
        if (text == nullptr) {
            detail::fail(NNX_ERR_NULL_ARGUMENT, "a key was built from a NULL string");
        }
        str_ = text;
    }
    Key(std::string_view text) : kind_(NNX_KEY_STR), str_(text) {}  // NOLINT
    Key(const std::string &text) : kind_(NNX_KEY_STR), str_(text) {}  // NOLINT
    Key(std::string &&text) : kind_(NNX_KEY_STR), str_(std::move(text)) {}  // NOLINT

    template <typename Int,
              std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool> &&
                                   !std::is_same_v<Int, char> && !std::is_same_v<Int, wchar_t> &&
                                   !std::is_same_v<Int, char16_t> &&
                                   !std::is_same_v<Int, char32_t>,
                               int> = 0>
    Key(Int value) : kind_(NNX_KEY_INT), int_(static_cast<int64_t>(value)) {  // NOLINT
        if constexpr (std::is_unsigned_v<Int> && sizeof(Int) >= sizeof(int64_t)) {
            if (value > static_cast<Int>(std::numeric_limits<int64_t>::max())) {
                detail::fail(NNX_ERR_INVALID_ARGUMENT, "an integer key does not fit in int64");
            }
        }
    }

    Key(bool) = delete;
    Key(char) = delete;
    Key(std::nullptr_t) = delete;

    /// A copy of a key the C API handed out (or takes).
    static Key from_c(const nnx_key &key) {
        if (key.kind == NNX_KEY_INT) {
            return Key(key.int_value);
        }
        if (key.kind != NNX_KEY_STR) {
            detail::fail(NNX_ERR_INVALID_ARGUMENT, "an nnx_key of unknown kind");
        }
        return Key(std::string_view(key.str == nullptr ? "" : key.str, key.str_len));
    }

    bool is_int() const noexcept { return kind_ == NNX_KEY_INT; }
    bool is_str() const noexcept { return kind_ == NNX_KEY_STR; }
    nnx_key_kind kind() const noexcept { return kind_; }

    /// The string of a string key ("" for an int key).
    std::string_view str() const noexcept { return str_; }

    /// The value of an int key (0 for a string key).
    int64_t integer() const noexcept { return int_; }

    /// The string, or the integer in decimal.
    std::string to_string() const { return is_int() ? std::to_string(int_) : str_; }

    /// A C view of this key, valid while the key lives unchanged.
    nnx_key c_key() const noexcept {
        nnx_key key;
        key.kind = kind_;
        key.str = is_int() ? nullptr : str_.data();
        key.str_len = is_int() ? 0 : str_.size();
        key.int_value = is_int() ? int_ : 0;
        return key;
    }

    friend bool operator==(const Key &a, const Key &b) noexcept {
        return a.kind_ == b.kind_ && (a.is_int() ? a.int_ == b.int_ : a.str_ == b.str_);
    }
    friend bool operator!=(const Key &a, const Key &b) noexcept { return !(a == b); }

    /// Flat order: ints before strings, ints numerically, strings by bytes.
    friend bool operator<(const Key &a, const Key &b) noexcept {
        if (a.kind_ != b.kind_) {
            return a.is_int();
        }
        if (a.is_int()) {
            return a.int_ < b.int_;
        }
        return compare_bytes(a.str_, b.str_) < 0;
    }

    friend std::ostream &operator<<(std::ostream &out, const Key &key) {
        return out << key.to_string();
    }

private:
    static int compare_bytes(const std::string &a, const std::string &b) noexcept {
        std::size_t n = a.size() < b.size() ? a.size() : b.size();
        int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
        if (c != 0) {
            return c;
        }
        return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
    }

    nnx_key_kind kind_;
    std::string str_;
    int64_t int_ = 0;
};

/// A path: keys from the root. Brace lists convert to it:
/// nnx::Path{"layers", 0, "kernel"}.
using Path = std::vector<Key>;

/// Writes a path as "layers/0/kernel".
inline std::string path_to_string(const Path &path) {
    std::string text;
    for (std::size_t i = 0; i < path.size(); i++) {
        if (i > 0) {
            text += '/';
        }
        text += path[i].to_string();
    }
    return text;
}

namespace detail {

/// A path as C keys, pointing into the caller's keys for the call.
class CPath {
public:
    CPath(const Key *keys, std::size_t count) : size_(count) {
        nnx_key *out = small_.data();
        if (size_ > small_.size()) {
            big_.resize(size_);
            out = big_.data();
        }
        for (std::size_t i = 0; i < size_; i++) {
            out[i] = keys[i].c_key();
        }
        data_ = out;
    }
    CPath(const CPath &) = delete;
    CPath &operator=(const CPath &) = delete;

    const nnx_key *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    std::array<nnx_key, 8> small_{};
    std::vector<nnx_key> big_;
    const nnx_key *data_ = nullptr;
    std::size_t size_;
};

/// A path the library handed out, copied.
inline Path path_from_c(const nnx_key *keys, std::size_t len) {
    Path path;
    path.reserve(len);
    for (std::size_t i = 0; i < len; i++) {
        path.push_back(Key::from_c(keys[i]));
    }
    return path;
}

}  // namespace detail

/// Parses "layers/0/kernel" as the C API's `_str` functions do (the
/// library's own parser, nnx_path_parse): components separated by '/', a
/// component that is a canonical decimal integer ("0", "12", "-3"; not
/// "007" or "-0") is an int key. "" is the empty path; an empty component
/// fails with NNX_ERR_INVALID_ARGUMENT.
inline Path parse_path(std::string_view text) {
    std::array<nnx_key, 8> small{};
    std::size_t len = 0;
    if (nnx_path_parse(text.data(), text.size(), small.data(), small.size(), &len) == NNX_OK) {
        return detail::path_from_c(small.data(), len);
    }
    // More keys than `small` holds, or an error: count, then parse.
    detail::check(nnx_path_parse(text.data(), text.size(), nullptr, 0, &len));
    std::vector<nnx_key> keys(len);
    detail::check(nnx_path_parse(text.data(), text.size(), keys.data(), keys.size(), &len));
    return detail::path_from_c(keys.data(), len);
}


// ---------------------------------------------------------------------------
// Arrays
// ---------------------------------------------------------------------------

/// Dimensions, C order.
using Shape = std::vector<int64_t>;

/// The dtype of a C++ element type: bool, the fixed-width integers (and any
/// integer type of their sizes), float and double.
template <typename T>
constexpr nnx_dtype dtype_of() {
    using U = std::remove_cv_t<T>;
    static_assert(std::is_arithmetic_v<U>, "no nnx dtype for this type");
    if constexpr (std::is_same_v<U, bool>) {
        return NNX_DTYPE_BOOL;
    } else if constexpr (std::is_floating_point_v<U>) {
        static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>,
                      "only float and double have an nnx dtype");
        return std::is_same_v<U, float> ? NNX_DTYPE_F32 : NNX_DTYPE_F64;
    } else {
        static_assert(sizeof(U) == 1 || sizeof(U) == 2 || sizeof(U) == 4 || sizeof(U) == 8,
                      "no nnx dtype for this integer size");
        constexpr bool s = std::is_signed_v<U>;
        switch (sizeof(U)) {
        case 1: return s ? NNX_DTYPE_I8 : NNX_DTYPE_U8;
        case 2: return s ? NNX_DTYPE_I16 : NNX_DTYPE_U16;
        case 4: return s ? NNX_DTYPE_I32 : NNX_DTYPE_U32;
        default: return s ? NNX_DTYPE_I64 : NNX_DTYPE_U64;
        }
    }
}

namespace detail {

/// The number of elements of a shape; 0 when a dimension is negative (the
/// library then reports the negative dimension).
inline std::size_t element_count(const Shape &shape) {
    std::size_t count = 1;
    for (int64_t d : shape) {
        if (d < 0) {
            return 0;
        }
        count *= static_cast<std::size_t>(d);
    }
    return count;
}

/// The user data of a wrapped array or an opaque value: the caller's
/// release action.
struct CallerRelease {
    std::function<void()> action;
};

extern "C" inline void nnxpp_caller_release(void *user_data) {
    auto *release = static_cast<CallerRelease *>(user_data);
    try {
        if (release->action) {
            release->action();
        }
    } catch (...) {
        // It may run on any thread, inside the library: nowhere to throw to.
    }
    delete release;
}

}  // namespace detail

/// Where an array's bytes live, as a DLPack device: a type (kDLCPU = 1,
/// kDLCUDA = 2, kDLCUDAHost = 3, ... as dlpack.h numbers them) and an id.
/// Arrays the library makes are on the CPU, {1, 0}.
struct Device {
    /// DLPack's kDLCPU.
    static constexpr int32_t cpu_type = 1;

    int32_t type = cpu_type;
    int32_t id = 0;

    /// The CPU, {1, 0}.
    static constexpr Device cpu() noexcept { return Device{}; }

    /// Whether the bytes are in CPU memory, where the library can read them.
    constexpr bool is_cpu() const noexcept { return type == cpu_type; }

    friend constexpr bool operator==(const Device &a, const Device &b) noexcept {
        return a.type == b.type && a.id == b.id;
    }
    friend constexpr bool operator!=(const Device &a, const Device &b) noexcept {
        return !(a == b);
    }
};

namespace detail {

/// Hands a DLPack tensor to the library, which always takes it: on success
/// as an array, on failure by calling its deleter.
inline nnx_status import_dlpack(DLManagedTensorVersioned *tensor, nnx_array **out) {
    return nnx_array_from_dlpack(tensor, out);
}
inline nnx_status import_dlpack(DLManagedTensor *tensor, nnx_array **out) {
    return nnx_array_from_dlpack_legacy(tensor, out);
}

/// Gives a DLPack tensor back to its producer. The header sees the DLPack
/// structs as incomplete types (as nnx_state.h declares them), so it cannot
/// call the deleter itself: importing the tensor and releasing the array
/// calls it, exactly once, whether the import succeeds or not.
template <typename Managed>
void dispose_dlpack(Managed *tensor) noexcept {
    if (tensor == nullptr) {
        return;
    }
    nnx_array *array = nullptr;
    if (import_dlpack(tensor, &array) == NNX_OK) {
        nnx_array_release(array);
    }
}

}  // namespace detail

/// An owned DLPack tensor: DLManagedTensorVersioned (DLPackTensor) or the
/// legacy DLManagedTensor (LegacyDLPackTensor), as Array::to_dlpack() and
/// Array::to_dlpack_legacy() give. Move-only; the destructor gives a tensor
/// nobody took back to its producer (its deleter runs exactly once, on the
/// destroying thread). get() lends the raw tensor (include <dlpack/dlpack.h>
/// to read its fields); release() gives it up, to hand to a DLPack consumer
/// such as torch::fromDLPack; Array::from_dlpack() takes it back as an array.
template <typename Managed>
class BasicDLPackTensor {
public:
    /// No tensor.
    BasicDLPackTensor() noexcept = default;

    /// Takes over a tensor the caller owns (its deleter will be called).
    static BasicDLPackTensor adopt(Managed *tensor) noexcept { return BasicDLPackTensor(tensor); }

    BasicDLPackTensor(BasicDLPackTensor &&other) noexcept
        : tensor_(std::exchange(other.tensor_, nullptr)) {}
    BasicDLPackTensor &operator=(BasicDLPackTensor &&other) noexcept {
        if (this != &other) {
            reset();
            tensor_ = std::exchange(other.tensor_, nullptr);
        }
        return *this;
    }
    BasicDLPackTensor(const BasicDLPackTensor &) = delete;
    BasicDLPackTensor &operator=(const BasicDLPackTensor &) = delete;
    ~BasicDLPackTensor() { reset(); }

    /// The raw tensor, borrowed: valid while this object owns it.
    Managed *get() const noexcept { return tensor_; }

    /// Gives up the tensor: the caller (or the consumer it is handed to)
    /// must call its deleter exactly once.
    Managed *release() noexcept { return std::exchange(tensor_, nullptr); }

    /// Gives the tensor back to its producer now (no-op when empty).
    void reset() noexcept { detail::dispose_dlpack(std::exchange(tensor_, nullptr)); }

    explicit operator bool() const noexcept { return tensor_ != nullptr; }

private:
    explicit BasicDLPackTensor(Managed *tensor) noexcept : tensor_(tensor) {}

    Managed *tensor_ = nullptr;
};

/// A versioned DLPack tensor (DLPack 1.x), owned.
using DLPackTensor = BasicDLPackTensor<DLManagedTensorVersioned>;

/// A legacy DLPack tensor (before DLPack 1.0), owned.
using LegacyDLPackTensor = BasicDLPackTensor<DLManagedTensor>;

/// A dense, C-ordered tensor: a shared reference to an nnx_array. Copies
/// refer to the same array (retain); the bytes are never copied except by
/// the factories that say so.
class Array {
public:
    /// Takes over one reference the caller owns (NULL gives an empty Array).
    static Array adopt(nnx_array *handle) noexcept { return Array(handle); }

    /// Takes a new reference to an array the caller borrows.
    static Array borrow(const nnx_array *handle) {
        detail::check(nnx_array_retain(handle));
        return Array(const_cast<nnx_array *>(handle));
    }

    /// A copy of `nbytes` bytes at `data` (nnx_array_new).
    static Array copy(nnx_dtype dtype, const Shape &shape, const void *data, std::size_t nbytes) {
        nnx_array *out = nullptr;
        detail::check(nnx_array_new(dtype, shape.data(), shape.size(), data, nbytes, &out));
        return Array(out);
    }

    /// A copy of the elements at `data`, as many as the shape holds.
    template <typename T>
    static Array from(const Shape &shape, const T *data) {
        return copy(dtype_of<T>(), shape, data, detail::element_count(shape) * sizeof(T));
    }

    /// A copy of `values`, which must have as many elements as the shape.
    template <typename T>
    static Array from(const Shape &shape, const std::vector<T> &values) {
        if constexpr (std::is_same_v<T, bool>) {
            std::vector<unsigned char> bytes(values.begin(), values.end());
            static_assert(sizeof(bool) == 1, "bool arrays need a one-byte bool");
            return copy(NNX_DTYPE_BOOL, shape, bytes.data(), bytes.size());
        } else {
            return copy(dtype_of<T>(), shape, values.data(), values.size() * sizeof(T));
        }
    }

    /// A copy of `values`: Array::from<float>({2}, {1, 2}).
    template <typename T>
    static Array from(const Shape &shape, std::initializer_list<T> values) {
        return from(shape, std::vector<T>(values));
    }

    /// A scalar (no dimensions).
    template <typename T>
    static Array scalar(T value) {
        return copy(dtype_of<T>(), Shape{}, &value, sizeof value);
    }

    /// Zeros of `dtype`.
    static Array zeros(nnx_dtype dtype, const Shape &shape) {
        nnx_array *out = nullptr;
        detail::check(nnx_array_zeros(dtype, shape.data(), shape.size(), &out));
        return Array(out);
    }

    /// Zeros of T's dtype.
    template <typename T>
    static Array zeros(const Shape &shape) {
        return zeros(dtype_of<T>(), shape);
    }

    /// An array over the caller's memory, not copied (nnx_array_wrap).
    /// `on_release` runs exactly once, on whichever thread drops the last
    /// reference, when the library lets go of the memory; an exception from
    /// it is swallowed. If wrapping fails, it never runs and the memory stays
    /// the caller's.
    static Array wrap(nnx_dtype dtype, const Shape &shape, void *data, std::size_t nbytes,
                      bool writable, std::function<void()> on_release = {}) {
        auto release = std::make_unique<detail::CallerRelease>();
        release->action = std::move(on_release);
        nnx_array *out = nullptr;
        detail::check(nnx_array_wrap(dtype, shape.data(), shape.size(), data, nbytes, writable,
                                     detail::nnxpp_caller_release, release.get(), &out));
        release.release();  // the library calls nnxpp_caller_release with it
        return Array(out);
    }

    /// Elements of T over the caller's memory, not copied; as wrap().
    template <typename T>
    static Array wrap(const Shape &shape, T *data, std::function<void()> on_release = {}) {
        return wrap(dtype_of<T>(), shape, const_cast<std::remove_cv_t<T> *>(data),
                    detail::element_count(shape) * sizeof(T), !std::is_const_v<T>,
                    std::move(on_release));
    }

    /// An array over memory of any device (a GPU pointer, say), not copied
    /// (nnx_array_wrap_device). The library never reads or writes memory
    /// off the CPU: such an array can be held, filtered, split, merged and
    /// exported through DLPack, but library calls that need the bytes
    /// (State::deep_copy(), saving) fail. data() gives the device pointer
    /// back: not for reading on the CPU (as data_as() and to_vector() do).
    /// `on_release` as for wrap(): it runs exactly once, on whichever thread
    /// drops the last reference, and never if wrapping fails.
    static Array wrap_device(nnx_dtype dtype, const Shape &shape, void *data, std::size_t nbytes,
                             Device device, bool writable,
                             std::function<void()> on_release = {}) {
        auto release = std::make_unique<detail::CallerRelease>();
        release->action = std::move(on_release);
        nnx_array *out = nullptr;
        detail::check(nnx_array_wrap_device(dtype, shape.data(), shape.size(), data, nbytes,
                                            device.type, device.id, writable,
                                            detail::nnxpp_caller_release, release.get(), &out));
        release.release();  // the library calls nnxpp_caller_release with it
        return Array(out);
    }

    /// Elements of T on `device`, not copied; as wrap_device().
    template <typename T>
    static Array wrap_device(const Shape &shape, T *data, Device device,
                             std::function<void()> on_release = {}) {
        return wrap_device(dtype_of<T>(), shape, const_cast<std::remove_cv_t<T> *>(data),
                           detail::element_count(shape) * sizeof(T), device,
                           !std::is_const_v<T>, std::move(on_release));
    }

    /// An array over a versioned DLPack tensor's memory, not copied
    /// (nnx_array_from_dlpack). The tensor is taken in every case: on
    /// failure its deleter has run when this throws (NNX_ERR_FORMAT for a
    /// tensor the library cannot hold: another major version, an unknown
    /// dtype, strides that are not compact row-major, ...). On success its
    /// deleter runs when the last reference to the array goes, on whichever
    /// thread drops it. Writable unless the tensor's flags say read-only.
    /// An empty DLPackTensor throws NNX_ERR_NULL_ARGUMENT.
    static Array from_dlpack(DLPackTensor &&tensor) { return from_dlpack(tensor.release()); }

    /// As from_dlpack(DLPackTensor &&), for a raw tensor the caller owns
    /// (taken in every case; NULL throws NNX_ERR_NULL_ARGUMENT).
    static Array from_dlpack(DLManagedTensorVersioned *tensor) {
        nnx_array *out = nullptr;
        detail::check(nnx_array_from_dlpack(tensor, &out));
        return Array(out);
    }

    /// An array over a legacy DLPack tensor's memory, not copied
    /// (nnx_array_from_dlpack_legacy); as the versioned form, except that
    /// the array is read-only (the legacy struct cannot say it may be
    /// written).
    static Array from_dlpack(LegacyDLPackTensor &&tensor) { return from_dlpack(tensor.release()); }

    /// As from_dlpack(LegacyDLPackTensor &&), for a raw tensor the caller owns.
    static Array from_dlpack(DLManagedTensor *tensor) {
        nnx_array *out = nullptr;
        detail::check(nnx_array_from_dlpack_legacy(tensor, &out));
        return Array(out);
    }

    Array(const Array &other) : handle_(other.handle_) {
        if (handle_ != nullptr) {
            nnx_array_retain(handle_);
        }
    }
    Array(Array &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Array &operator=(const Array &other) {
        Array copy(other);
        swap(copy);
        return *this;
    }
    Array &operator=(Array &&other) noexcept {
        Array taken(std::move(other));
        swap(taken);
        return *this;
    }
    ~Array() { nnx_array_release(handle_); }

    void swap(Array &other) noexcept { std::swap(handle_, other.handle_); }

    /// The raw handle, borrowed (NULL once moved from).
    nnx_array *handle() const noexcept { return handle_; }

    /// Gives up the handle and its reference to the caller.
    nnx_array *release() noexcept { return std::exchange(handle_, nullptr); }

    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// Whether both refer to the same array.
    bool same(const Array &other) const noexcept { return handle_ == other.handle_; }

    nnx_dtype dtype() const {
        nnx_dtype out = 0;
        detail::check(nnx_array_dtype(handle_, &out));
        return out;
    }

    std::size_t ndim() const {
        std::size_t out = 0;
        detail::check(nnx_array_ndim(handle_, &out));
        return out;
    }

    Shape shape() const {
        const int64_t *dims = nullptr;
        std::size_t n = ndim();
        detail::check(nnx_array_shape(handle_, &dims));
        return n == 0 ? Shape{} : Shape(dims, dims + n);
    }

    /// The number of elements.
    std::size_t size() const { return detail::element_count(shape()); }

    std::size_t nbytes() const {
        std::size_t out = 0;
        detail::check(nnx_array_nbytes(handle_, &out));
        return out;
    }

    bool writable() const {
        bool out = false;
        detail::check(nnx_array_is_writable(handle_, &out));
        return out;
    }

    /// Where the bytes live: Device::cpu() for arrays the library makes.
    Device device() const {
        Device out;
        detail::check(nnx_array_device(handle_, &out.type, &out.id));
        return out;
    }

    /// This array as a versioned DLPack tensor (nnx_array_to_dlpack), not
    /// copied: the tensor holds a reference to the array until its deleter
    /// runs, and is flagged read-only when the array is not writable.
    DLPackTensor to_dlpack() const {
        DLManagedTensorVersioned *out = nullptr;
        detail::check(nnx_array_to_dlpack(handle_, &out));
        return DLPackTensor::adopt(out);
    }

    /// This array as a legacy DLPack tensor (nnx_array_to_dlpack_legacy),
    /// for consumers older than DLPack 1.0. The legacy struct cannot say
    /// that memory is read-only: export only arrays that may be written.
    LegacyDLPackTensor to_dlpack_legacy() const {
        DLManagedTensor *out = nullptr;
        detail::check(nnx_array_to_dlpack_legacy(handle_, &out));
        return LegacyDLPackTensor::adopt(out);
    }

    /// The bytes, read-only, valid while this reference lives.
    const void *data() const {
        const void *out = nullptr;
        detail::check(nnx_array_data(handle_, &out));
        return out;
    }

    /// The bytes for writing in place (every holder sees the change);
    /// NNX_ERR_READ_ONLY for memory lent read-only.
    void *mutable_data() {
        void *out = nullptr;
        detail::check(nnx_array_data_mut(handle_, &out));
        return out;
    }

    /// The elements as T; NNX_ERR_WRONG_KIND when T's dtype is not the array's.
    template <typename T>
    const T *data_as() const {
        check_dtype<T>();
        return static_cast<const T *>(data());
    }

    /// The elements as T, for writing in place.
    template <typename T>
    T *mutable_data_as() {
        check_dtype<T>();
        return static_cast<T *>(mutable_data());
    }

    /// A copy of the elements.
    template <typename T>
    std::vector<T> to_vector() const {
        const T *begin = data_as<T>();
        return std::vector<T>(begin, begin + nbytes() / sizeof(T));
    }

private:
    explicit Array(nnx_array *handle) noexcept : handle_(handle) {}

    template <typename T>
    void check_dtype() const {
        if (dtype() != dtype_of<T>()) {
            detail::fail(NNX_ERR_WRONG_KIND, "the array's dtype is " + std::to_string(dtype()) +
                                                 ", not " + std::to_string(dtype_of<T>()));
        }
    }

    nnx_array *handle_ = nullptr;
};

// ---------------------------------------------------------------------------
// Variable types
// ---------------------------------------------------------------------------

/// Registers a variable type (nnx_type_register); the same name under the
/// same parent gives the same id again.
inline nnx_type_id register_type(std::string_view name, nnx_type_id parent = NNX_TYPE_VARIABLE) {
    std::string c_name = detail::c_string(name, "a type name");
    nnx_type_id out = 0;
    detail::check(nnx_type_register(c_name.c_str(), parent, &out));
    return out;
}

/// The id of a registered type name; NNX_ERR_KEY_NOT_FOUND when none.
inline nnx_type_id lookup_type(std::string_view name) {
    std::string c_name = detail::c_string(name, "a type name");
    nnx_type_id out = 0;
    detail::check(nnx_type_lookup(c_name.c_str(), &out));
    return out;
}

/// The name of a type; lives for the whole process.
inline std::string_view type_name(nnx_type_id type) {
    const char *out = nullptr;
    detail::check(nnx_type_name(type, &out));
    return out;
}

/// The parent of a type; NNX_TYPE_NONE for NNX_TYPE_VARIABLE.
inline nnx_type_id type_parent(nnx_type_id type) {
    nnx_type_id out = 0;
    detail::check(nnx_type_parent(type, &out));
    return out;
}

/// Whether `type` is `ancestor` or descends from it.
inline bool is_subtype(nnx_type_id type, nnx_type_id ancestor) {
    bool out = false;
    detail::check(nnx_type_is_subtype(type, ancestor, &out));
    return out;
}

/// The number of registered types (ids run from 0 to the count - 1).
inline std::size_t type_count() {
    std::size_t out = 0;
    detail::check(nnx_type_count(&out));
    return out;
}

// ---------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------

class Meta;

/// A borrowed view of a metadata value (an nnx_meta the view does not own):
/// valid while the value it views lives and is not changed. Every reader of
/// nnx::Meta is here; a Meta is a MetaRef too.
class MetaRef {
public:
    /// Views a value the caller keeps alive (a borrowed const nnx_meta *).
    explicit MetaRef(const nnx_meta *handle) noexcept : ptr_(handle) {}

    const nnx_meta *handle() const noexcept { return ptr_; }

    /// NNX_META_NULL, NNX_META_BOOL, ... NNX_META_MAP.
    nnx_meta_kind kind() const {
        nnx_meta_kind out = 0;
        detail::check(nnx_meta_get_kind(ptr_, &out));
        return out;
    }

    bool is_none() const { return kind() == NNX_META_NULL; }

    /// The scalar; NNX_ERR_WRONG_KIND for another kind.
    bool as_bool() const {
        bool out = false;
        detail::check(nnx_meta_get_bool(ptr_, &out));
        return out;
    }
    int64_t as_int() const {
        int64_t out = 0;
        detail::check(nnx_meta_get_int(ptr_, &out));
        return out;
    }
    double as_float() const {
        double out = 0;
        detail::check(nnx_meta_get_float(ptr_, &out));
        return out;
    }
    /// The string, borrowed from the value (it may hold NUL bytes).
    std::string_view as_str() const {
        const char *text = nullptr;
        std::size_t len = 0;
        detail::check(nnx_meta_get_str(ptr_, &text, &len));
        return std::string_view(text, len);
    }

    /// The number of items of a list or tuple, or entries of a map;
    /// NNX_ERR_WRONG_KIND for a scalar.
    std::size_t size() const {
        std::size_t out = 0;
        detail::check(nnx_meta_len(ptr_, &out));
        return out;
    }

    /// Item `index` of a list or tuple, borrowed.
    MetaRef operator[](std::size_t index) const {
        const nnx_meta *out = nullptr;
        detail::check(nnx_meta_item(ptr_, index, &out));
        return MetaRef(out);
    }

    /// Entry `index` of a map (in insertion order): key and value, borrowed.
    std::pair<std::string_view, MetaRef> entry(std::size_t index) const {
        const char *key = nullptr;
        std::size_t len = 0;
        const nnx_meta *value = nullptr;
        detail::check(nnx_meta_map_at(ptr_, index, &key, &len, &value));
        return {std::string_view(key, len), MetaRef(value)};
    }

    /// The value of map key `key`, borrowed; NNX_ERR_KEY_NOT_FOUND when absent.
    MetaRef at(std::string_view key) const {
        const nnx_meta *out = nullptr;
        detail::check(nnx_meta_map_get(ptr_, key.data(), key.size(), &out));
        return MetaRef(out);
    }

    /// The value of map key `key`, borrowed, or nothing when absent.
    std::optional<MetaRef> find(std::string_view key) const {
        const nnx_meta *out = nullptr;
        nnx_status status = nnx_meta_map_get(ptr_, key.data(), key.size(), &out);
        if (status == NNX_ERR_KEY_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(status);
        return MetaRef(out);
    }

    /// An owned copy.
    Meta copy() const;

    /// Python's repr: "(None, 'model')".
    std::string to_string() const {
        char *out = nullptr;
        detail::check(nnx_meta_to_string(ptr_, &out));
        return detail::take_string(out);
    }

    /// The JSON form (nnx_meta_to_json): ["tuple",null,"model"].
    std::string to_json() const {
        char *out = nullptr;
        detail::check(nnx_meta_to_json(ptr_, &out));
        return detail::take_string(out);
    }

    /// The same kinds all the way down, maps in the same order (1 != 1.0).
    friend bool operator==(const MetaRef &a, const MetaRef &b) {
        bool out = false;
        detail::check(nnx_meta_equal(a.ptr_, b.ptr_, &out));
        return out;
    }
    friend bool operator!=(const MetaRef &a, const MetaRef &b) { return !(a == b); }

    friend std::ostream &operator<<(std::ostream &os, const MetaRef &value) {
        return os << value.to_string();
    }

protected:
    const nnx_meta *ptr_ = nullptr;
};

/// A metadata value: None, bool, int64, float64, string, or a list, tuple
/// or map (string keys, insertion-ordered) of values, nested at most
/// NNX_MAX_DEPTH levels; an owned nnx_meta. Copies are deep (clone); a
/// moved-from Meta holds no value and throws NNX_ERR_NULL_ARGUMENT when
/// used. Built from C++ values:
///
///   nnx::Meta sharding = nnx::Meta::tuple({nullptr, "model"});
///   nnx::Meta adam = nnx::Meta::map({{"lr", 1e-3},
///                                    {"betas", nnx::Meta::tuple({0.9, 0.999})}});
///
/// Building (append, set) is not synchronised: one thread at a time while a
/// value changes; reading from several threads is safe.
class Meta : public MetaRef {
public:
    /// None.
    Meta() : MetaRef(nullptr) { make(nnx_meta_new_null(&owned_)); }
    /// None.
    Meta(std::nullptr_t) : Meta() {}
    Meta(bool value) : MetaRef(nullptr) { make(nnx_meta_new_bool(value, &owned_)); }
    template <typename Int,
              std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
    Meta(Int value) : MetaRef(nullptr) {
        make(nnx_meta_new_int(static_cast<int64_t>(value), &owned_));
    }
    Meta(double value) : MetaRef(nullptr) { make(nnx_meta_new_float(value, &owned_)); }
    Meta(std::string_view text) : MetaRef(nullptr) {
        make(nnx_meta_new_str(text.data(), text.size(), &owned_));
    }
    Meta(const char *text) : Meta(text == nullptr ? Meta::null_text() : std::string_view(text)) {}
    Meta(const std::string &text) : Meta(std::string_view(text)) {}

    /// A list, tuple or map of copies of the given values.
    static Meta list(std::initializer_list<Meta> items = {}) {
        return filled(nnx_meta_new_list, items);
    }
    static Meta tuple(std::initializer_list<Meta> items = {}) {
        return filled(nnx_meta_new_tuple, items);
    }
    static Meta map(std::initializer_list<std::pair<std::string_view, Meta>> entries = {}) {
        Meta out(Adopt{}, nnx_meta_new_map);
        for (const auto &[key, value] : entries) {
            out.set(key, value);
        }
        return out;
    }

    /// Reads the JSON form (nnx_meta_from_json).
    static Meta from_json(std::string_view text) {
        nnx_meta *out = nullptr;
        detail::check(nnx_meta_from_json(text.data(), text.size(), &out));
        return adopt(out);
    }

    /// Takes over a value the caller owns.
    static Meta adopt(nnx_meta *handle) noexcept { return Meta(handle); }

    Meta(const Meta &other) : MetaRef(nullptr) {
        make(nnx_meta_clone(other.ptr_, &owned_));
    }
    Meta(Meta &&other) noexcept : MetaRef(nullptr) { swap(other); }
    Meta &operator=(const Meta &other) {
        Meta copied(other);
        swap(copied);
        return *this;
    }
    Meta &operator=(Meta &&other) noexcept {
        Meta taken(std::move(other));
        swap(taken);
        return *this;
    }
    ~Meta() { nnx_meta_free(owned_); }

    void swap(Meta &other) noexcept {
        std::swap(owned_, other.owned_);
        std::swap(ptr_, other.ptr_);
    }

    nnx_meta *handle() const noexcept { return owned_; }
    /// Gives up the value: the caller owns it (free with nnx_meta_free).
    nnx_meta *release() noexcept {
        ptr_ = nullptr;
        return std::exchange(owned_, nullptr);
    }
    explicit operator bool() const noexcept { return owned_ != nullptr; }

    /// Appends a copy of `item` to this list or tuple (NNX_ERR_WRONG_KIND
    /// otherwise, NNX_ERR_TOO_DEEP past NNX_MAX_DEPTH levels).
    Meta &append(const MetaRef &item) {
        detail::check(nnx_meta_append(owned_, item.handle()));
        return *this;
    }
    /// As above, from a C++ value: list.append(1), tuple.append("model").
    Meta &append(const Meta &item) { return append(static_cast<const MetaRef &>(item)); }

    /// Sets map key `key` to a copy of `value` (an existing key keeps its
    /// place).
    Meta &set(std::string_view key, const MetaRef &value) {
        detail::check(nnx_meta_map_set(owned_, key.data(), key.size(), value.handle()));
        return *this;
    }
    /// As above, from a C++ value: map.set("lr", 0.1).
    Meta &set(std::string_view key, const Meta &value) {
        return set(key, static_cast<const MetaRef &>(value));
    }

private:
    struct Adopt {};
    explicit Meta(nnx_meta *handle) noexcept : MetaRef(handle), owned_(handle) {}
    Meta(Adopt, nnx_status (*make_empty)(nnx_meta **)) : MetaRef(nullptr) {
        make(make_empty(&owned_));
    }

    static std::string_view null_text() {
        detail::fail(NNX_ERR_NULL_ARGUMENT, "a metadata string is NULL");
    }

    static Meta filled(nnx_status (*make_empty)(nnx_meta **), std::initializer_list<Meta> items) {
        Meta out(Adopt{}, make_empty);
        for (const Meta &item : items) {
            out.append(item);
        }
        return out;
    }

    void make(nnx_status status) {
        detail::check(status);
        ptr_ = owned_;
    }

    nnx_meta *owned_ = nullptr;
};

inline Meta MetaRef::copy() const {
    nnx_meta *out = nullptr;
    detail::check(nnx_meta_clone(ptr_, &out));
    return Meta::adopt(out);
}

// ---------------------------------------------------------------------------
// Variables
// ---------------------------------------------------------------------------

/// A metadata entry as Variable::metadata() gives it: a string, int64,
/// float64 or bool (in NNX_META_* order), and an nnx::Meta for None, lists,
/// tuples and maps.
using MetaValue = std::variant<std::string, int64_t, double, bool, Meta>;

/// A typed slot holding an optional array and metadata: a shared reference
/// to an nnx_variable. Copies refer to the same variable (retain).
/// What a variable's value is (nnx_variable_value_kind).
enum class ValueKind : nnx_value_kind {
    None = NNX_VALUE_NONE,
    Array = NNX_VALUE_ARRAY,
    Key = NNX_VALUE_KEY,
    Opaque = NNX_VALUE_OPAQUE,
};

/// A typed PRNG key, as jax.random.key makes and nnx.Rngs keeps in each
/// RngKey: the key data (jax.random.key_data: uint32, the key shape last,
/// such as [2] for one threefry2x32 key) and the implementation's name
/// (str(jax.random.key_impl(k)), such as "threefry2x32").
struct PrngKey {
    Array data;
    std::string impl;
};

/// An object for a variable to hold without looking into it (an opaque
/// value): a jax array on a device, a GPU buffer, anything the caller keeps
/// track of. `type_name` (not empty) says what `object` is, so that readers
/// can tell their own objects from others'; `on_release` runs exactly once,
/// on whichever thread drops the last reference (never if making the
/// variable fails); an exception from it is swallowed. Deep copies share
/// the object; saving it to a checkpoint fails.
struct Opaque {
    std::string type_name;
    void *object = nullptr;
    std::function<void()> on_release;

    /// An opaque value holding a reference to `object` until the library
    /// lets go of it.
    template <typename T>
    static Opaque shared(std::string type_name, std::shared_ptr<T> object) {
        void *raw = const_cast<std::remove_cv_t<T> *>(object.get());
        return Opaque{std::move(type_name), raw, [held = std::move(object)]() mutable {
                          held.reset();
                      }};
    }
};

/// An opaque value as a variable holds it: the caller's pointer, borrowed
/// while the variable holds this value, and its type name (the library
/// keeps it for the life of the process).
struct OpaqueRef {
    void *object;
    std::string_view type_name;

    /// The object as a T*.
    template <typename T>
    T *as() const noexcept {
        return static_cast<T *>(object);
    }
};

namespace detail {

/// Makes or sets an opaque value through the C call `call(type_name,
/// object, release, user_data)`: the release action is the library's once
/// the call succeeds, and stays ours (never run) if it fails.
template <typename Call>
void with_opaque(Opaque value, Call call) {
    std::string name = c_string(value.type_name, "an opaque type name");
    auto release = std::make_unique<CallerRelease>();
    release->action = std::move(value.on_release);
    check(call(name.c_str(), value.object, nnxpp_caller_release, release.get()));
    release.release();  // the library calls nnxpp_caller_release with it
}

}  // namespace detail

/// A typed slot for a value (an Array, a PrngKey, an Opaque object, or
/// none) with metadata: a shared reference to an nnx_variable. Copies refer
/// to the same variable (retain), so a value set through one is seen by
/// every state that holds it, as in NNX.
class Variable {
public:
    /// A new variable of a registered type, without a value.
    explicit Variable(nnx_type_id type) {
        detail::check(nnx_variable_new(type, nullptr, &handle_));
    }

    /// A new variable of a registered type holding `value` (shared, not copied).
    Variable(nnx_type_id type, const Array &value) {
        detail::check(nnx_variable_new(type, value.handle(), &handle_));
    }

    /// A new variable holding a typed PRNG key (the data shared, not copied).
    Variable(nnx_type_id type, const PrngKey &key) {
        std::string impl = detail::c_string(key.impl, "a PRNG implementation name");
        detail::check(nnx_variable_new_key(type, key.data.handle(), impl.c_str(), &handle_));
    }

    /// A new variable holding an opaque value.
    Variable(nnx_type_id type, Opaque value) {
        detail::with_opaque(std::move(value), [&](const char *name, void *object,
                                                  nnx_release_fn on_drop, void *user_data) {
            return nnx_variable_new_opaque(type, name, object, on_drop, user_data, &handle_);
        });
    }

    /// Takes over one reference the caller owns.
    static Variable adopt(nnx_variable *handle) noexcept { return Variable(handle, Adopt{}); }

    /// Takes a new reference to a variable the caller borrows.
    static Variable borrow(const nnx_variable *handle) {
        detail::check(nnx_variable_retain(handle));
        return Variable(const_cast<nnx_variable *>(handle), Adopt{});
    }

    Variable(const Variable &other) : handle_(other.handle_) {
        if (handle_ != nullptr) {
            nnx_variable_retain(handle_);
        }
    }
    Variable(Variable &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Variable &operator=(const Variable &other) {
        Variable copy(other);
        swap(copy);
        return *this;
    }
    Variable &operator=(Variable &&other) noexcept {
        Variable taken(std::move(other));
        swap(taken);
        return *this;
    }
    ~Variable() { nnx_variable_release(handle_); }

    void swap(Variable &other) noexcept { std::swap(handle_, other.handle_); }

    nnx_variable *handle() const noexcept { return handle_; }
    nnx_variable *release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// Whether both refer to the same variable (Python's `is`).
    bool same(const Variable &other) const noexcept { return handle_ == other.handle_; }

    nnx_type_id type() const {
        nnx_type_id out = 0;
        detail::check(nnx_variable_type(handle_, &out));
        return out;
    }

    /// The type's name, such as "Param".
    std::string_view type_name() const { return nnx::type_name(type()); }

    /// A new variable of the same type sharing the value, with a copy of
    /// the metadata (Flax's Variable.copy()): copying the C++ object shares
    /// the variable itself instead.
    Variable shallow_copy() const {
        nnx_variable *out = nullptr;
        detail::check(nnx_variable_copy(handle_, &out));
        return adopt(out);
    }

    /// A count of this variable's changes that wraps at 2^32 (see
    /// nnx_variable_revision): what was read of it at one revision holds
    /// while the revision stays.
    uint32_t revision() const {
        uint32_t out = 0;
        detail::check(nnx_variable_revision(handle_, &out));
        return out;
    }

    /// What the value is.
    ValueKind value_kind() const {
        nnx_value_kind out = 0;
        detail::check(nnx_variable_value_kind(handle_, &out));
        return static_cast<ValueKind>(out);
    }

    /// The array value, or nothing when the variable holds none. Throws
    /// NNX_ERR_WRONG_KIND for a typed key (see key()) or an opaque value
    /// (see opaque()).
    std::optional<Array> value() const {
        nnx_array *out = nullptr;
        detail::check(nnx_variable_get_value(handle_, &out));
        if (out == nullptr) {
            return std::nullopt;
        }
        return Array::adopt(out);
    }

    /// Replaces the value; every holder of the variable sees it.
    Variable &set_value(const Array &value) {
        detail::check(nnx_variable_set_value(handle_, value.handle()));
        return *this;
    }

    /// Removes the value.
    Variable &clear_value() {
        detail::check(nnx_variable_set_value(handle_, nullptr));
        return *this;
    }

    /// The typed PRNG key, or nothing when the value is not one.
    std::optional<PrngKey> key() const {
        if (value_kind() != ValueKind::Key) {
            return std::nullopt;
        }
        nnx_array *data = nullptr;
        const char *impl = nullptr;
        detail::check(nnx_variable_get_key(handle_, &data, &impl));
        return PrngKey{Array::adopt(data), impl};
    }

    /// Replaces the value with a typed PRNG key.
    Variable &set_key(const PrngKey &key) {
        std::string impl = detail::c_string(key.impl, "a PRNG implementation name");
        detail::check(nnx_variable_set_key(handle_, key.data.handle(), impl.c_str()));
        return *this;
    }

    /// The opaque value, or nothing when the value is not one. The object
    /// pointer is borrowed: valid while the variable holds this value.
    std::optional<OpaqueRef> opaque() const {
        if (value_kind() != ValueKind::Opaque) {
            return std::nullopt;
        }
        void *object = nullptr;
        const char *name = nullptr;
        detail::check(nnx_variable_get_opaque(handle_, &object, &name));
        return OpaqueRef{object, name};
    }

    /// Replaces the value with an opaque value; the old value is given back
    /// (which may run its release action).
    Variable &set_opaque(Opaque value) {
        detail::with_opaque(std::move(value), [&](const char *name, void *object,
                                                  nnx_release_fn on_drop, void *user_data) {
            return nnx_variable_set_opaque(handle_, name, object, on_drop, user_data);
        });
        return *this;
    }

    Variable &set_metadata(std::string_view name, std::string_view value) {
        std::string n = detail::c_string(name, "a metadata name");
        std::string v = detail::c_string(value, "a metadata value");
        detail::check(nnx_variable_set_metadata_str(handle_, n.c_str(), v.c_str()));
        return *this;
    }
    Variable &set_metadata(std::string_view name, const char *value) {
        if (value == nullptr) {
            detail::fail(NNX_ERR_NULL_ARGUMENT, "a metadata value is NULL");
        }
        return set_metadata(name, std::string_view(value));
    }
    Variable &set_metadata(std::string_view name, const std::string &value) {
        return set_metadata(name, std::string_view(value));
    }
    template <typename Int,
              std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
    Variable &set_metadata(std::string_view name, Int value) {
        std::string n = detail::c_string(name, "a metadata name");
        detail::check(nnx_variable_set_metadata_int(handle_, n.c_str(), static_cast<int64_t>(value)));
        return *this;
    }
    Variable &set_metadata(std::string_view name, double value) {
        std::string n = detail::c_string(name, "a metadata name");
        detail::check(nnx_variable_set_metadata_float(handle_, n.c_str(), value));
        return *this;
    }
    Variable &set_metadata(std::string_view name, bool value) {
        std::string n = detail::c_string(name, "a metadata name");
        detail::check(nnx_variable_set_metadata_bool(handle_, n.c_str(), value));
        return *this;
    }
    /// Sets metadata `name` to a copy of a value of any kind.
    Variable &set_metadata(std::string_view name, const MetaRef &value) {
        std::string n = detail::c_string(name, "a metadata name");
        detail::check(nnx_variable_set_metadata(handle_, n.c_str(), value.handle()));
        return *this;
    }
    /// Sets metadata `name` to None.
    Variable &set_metadata(std::string_view name, std::nullptr_t) {
        return set_metadata(name, Meta());
    }
    Variable &set_metadata(std::string_view name, const MetaValue &value) {
        return std::visit([&](const auto &v) -> Variable & { return set_metadata(name, v); },
                          value);
    }

    /// Whether metadata `name` is set.
    bool has_metadata(std::string_view name) const {
        std::string n = detail::c_string(name, "a metadata name");
        nnx_meta_kind kind = 0;
        nnx_status status = nnx_variable_metadata_kind(handle_, n.c_str(), &kind);
        if (status == NNX_ERR_KEY_NOT_FOUND) {
            return false;
        }
        detail::check(status);
        return true;
    }

    /// Metadata `name`, whatever its kind (None, lists, tuples and maps as
    /// nnx::Meta); NNX_ERR_KEY_NOT_FOUND when unset.
    MetaValue metadata(std::string_view name) const {
        std::string n = detail::c_string(name, "a metadata name");
        nnx_meta_kind kind = 0;
        detail::check(nnx_variable_metadata_kind(handle_, n.c_str(), &kind));
        switch (kind) {
        case NNX_META_STR: {
            char *out = nullptr;
            detail::check(nnx_variable_get_metadata_str(handle_, n.c_str(), &out));
            return detail::take_string(out);
        }
        case NNX_META_INT: {
            int64_t out = 0;
            detail::check(nnx_variable_get_metadata_int(handle_, n.c_str(), &out));
            return out;
        }
        case NNX_META_FLOAT: {
            double out = 0;
            detail::check(nnx_variable_get_metadata_float(handle_, n.c_str(), &out));
            return out;
        }
        case NNX_META_BOOL: {
            bool out = false;
            detail::check(nnx_variable_get_metadata_bool(handle_, n.c_str(), &out));
            return out;
        }
        default:
            return metadata_as<Meta>(name);
        }
    }

    /// Metadata `name` as T (std::string, an integer type, double or bool;
    /// NNX_ERR_WRONG_KIND when it is of another kind), or as nnx::Meta (a
    /// copy, whatever its kind).
    template <typename T>
    T metadata_as(std::string_view name) const {
        std::string n = detail::c_string(name, "a metadata name");
        if constexpr (std::is_same_v<T, Meta>) {
            nnx_meta *out = nullptr;
            detail::check(nnx_variable_get_metadata(handle_, n.c_str(), &out));
            return Meta::adopt(out);
        } else if constexpr (std::is_same_v<T, std::string>) {
            char *out = nullptr;
            detail::check(nnx_variable_get_metadata_str(handle_, n.c_str(), &out));
            return detail::take_string(out);
        } else if constexpr (std::is_same_v<T, bool>) {
            bool out = false;
            detail::check(nnx_variable_get_metadata_bool(handle_, n.c_str(), &out));
            return out;
        } else if constexpr (std::is_integral_v<T>) {
            int64_t out = 0;
            detail::check(nnx_variable_get_metadata_int(handle_, n.c_str(), &out));
            return static_cast<T>(out);
        } else {
            static_assert(std::is_floating_point_v<T>, "metadata is a string, int, float or bool");
            double out = 0;
            detail::check(nnx_variable_get_metadata_float(handle_, n.c_str(), &out));
            return static_cast<T>(out);
        }
    }

    /// Every metadata entry, in the order entries were first set.
    std::vector<std::pair<std::string, MetaValue>> metadata() const {
        std::size_t count = 0;
        detail::check(nnx_variable_metadata_count(handle_, &count));
        std::vector<std::pair<std::string, MetaValue>> entries;
        entries.reserve(count);
        for (std::size_t i = 0; i < count; i++) {
            char *name = nullptr;
            nnx_meta_kind kind = 0;
            detail::check(nnx_variable_metadata_at(handle_, i, &name, &kind));
            std::string owned = detail::take_string(name);
            MetaValue value = metadata(owned);
            entries.emplace_back(std::move(owned), std::move(value));
        }
        return entries;
    }

    /// Removes metadata `name`; NNX_ERR_KEY_NOT_FOUND when unset.
    Variable &remove_metadata(std::string_view name) {
        std::string n = detail::c_string(name, "a metadata name");
        detail::check(nnx_variable_remove_metadata(handle_, n.c_str()));
        return *this;
    }

    /// The tag (string metadata "tag"), if any: what with_tag() matches.
    std::optional<std::string> tag() const {
        char *out = nullptr;
        detail::check(nnx_variable_tag(handle_, &out));
        if (out == nullptr) {
            return std::nullopt;
        }
        return detail::take_string(out);
    }

    /// Sets the tag.
    Variable &set_tag(std::string_view tag) { return set_metadata("tag", tag); }

private:
    struct Adopt {};
    Variable(nnx_variable *handle, Adopt) noexcept : handle_(handle) {}

    nnx_variable *handle_ = nullptr;
};

/// A leaf of a state: a variable or a bare array.
using Leaf = std::variant<Variable, Array>;

namespace detail {

inline Leaf leaf_from_c(nnx_kind kind, const nnx_variable *variable, const nnx_array *array) {
    if (kind == NNX_KIND_VARIABLE) {
        return Variable::borrow(variable);
    }
    return Array::borrow(array);
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

/// Which leaves State::filter and State::split select: an owned
/// nnx_filter. Move-only; clone() copies. Compose with | (Any), & (All) and
/// ~ (Not); the composite keeps copies of its parts.
class Filter {
public:
    /// Takes over a filter the caller owns.
    static Filter adopt(nnx_filter *handle) noexcept { return Filter(handle); }

    Filter(Filter &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Filter &operator=(Filter &&other) noexcept {
        if (this != &other) {
            Filter old(std::move(*this));  // freed on return
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Filter(const Filter &) = delete;
    Filter &operator=(const Filter &) = delete;
    ~Filter() { nnx_filter_free(handle_); }

    /// A copy (nnx_filter_clone).
    Filter clone() const {
        nnx_filter *out = nullptr;
        detail::check(nnx_filter_clone(handle_, &out));
        return Filter(out);
    }

    /// Whether this filter selects `variable` at `path`, as filter() would
    /// decide for that leaf in a state (nnx_filter_matches_variable). A
    /// callback filter's exception is rethrown.
    bool matches(const Path &path, const Variable &variable) const {
        return ask([&](const nnx_key *keys, std::size_t len, bool *out) {
            return nnx_filter_matches_variable(handle_, keys, len, variable.handle(), out);
        }, path);
    }

    /// Whether this filter selects the bare array `array` at `path`.
    bool matches(const Path &path, const Array &array) const {
        return ask([&](const nnx_key *keys, std::size_t len, bool *out) {
            return nnx_filter_matches_array(handle_, keys, len, array.handle(), out);
        }, path);
    }

    nnx_filter *handle() const noexcept { return handle_; }
    nnx_filter *release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    explicit Filter(nnx_filter *handle) noexcept : handle_(handle) {}

    template <typename F>
    static bool ask(F query, const Path &path) {
        detail::CPath c_path(path.data(), path.size());
        bool out = false;
        detail::pending_exception() = nullptr;
        detail::check_with_callbacks(query(c_path.data(), c_path.size(), &out));
        return out;
    }

    nnx_filter *handle_ = nullptr;
};

namespace detail {

template <typename F>
Filter make_filter(F make) {
    nnx_filter *out = nullptr;
    check(make(&out));
    return Filter::adopt(out);
}

/// The user data of a callback filter: the caller's callable, type-erased.
struct FilterCallback {
    std::function<bool(const Path &, const Leaf &)> predicate;
};

extern "C" inline int nnxpp_filter_call(void *user_data, const nnx_key *path, size_t path_len,
                                        nnx_kind kind, const nnx_variable *variable,
                                        const nnx_array *array) {
    try {
        const auto *callback = static_cast<const FilterCallback *>(user_data);
        return callback->predicate(path_from_c(path, path_len),
                                   leaf_from_c(kind, variable, array))
                   ? 1
                   : 0;
    } catch (...) {
        // Carried to the C++ caller of filter()/split(), on this thread.
        pending_exception() = std::current_exception();
        return -1;
    }
}

extern "C" inline void nnxpp_filter_release(void *user_data) {
    delete static_cast<FilterCallback *>(user_data);
}

}  // namespace detail

/// Variables of `type` or a descendant of it (NNX's OfType, or a class).
inline Filter of_type(nnx_type_id type) {
    return detail::make_filter([&](nnx_filter **out) { return nnx_filter_of_type(type, out); });
}

/// Variables whose tag is `tag` (NNX's WithTag, or a str).
inline Filter with_tag(std::string_view tag) {
    std::string c_tag = detail::c_string(tag, "a tag");
    return detail::make_filter(
        [&](nnx_filter **out) { return nnx_filter_with_tag(c_tag.c_str(), out); });
}

/// Leaves whose path contains `key` (NNX's PathContains): an equal element
/// with `exact`, else an element whose text contains the key's text.
inline Filter path_contains(const Key &key, bool exact = true) {
    nnx_key c_key = key.c_key();
    return detail::make_filter(
        [&](nnx_filter **out) { return nnx_filter_path_contains(&c_key, exact, out); });
}

/// Leaves at one of `paths` (NNX's PathIn): path_in({{"a", 0}, {"b"}}).
inline Filter path_in(const std::vector<Path> &paths) {
    std::vector<nnx_key> keys;
    std::size_t total = 0;
    for (const Path &p : paths) {
        total += p.size();
    }
    keys.reserve(total);
    for (const Path &p : paths) {
        for (const Key &k : p) {
            keys.push_back(k.c_key());
        }
    }
    std::vector<nnx_path> c_paths;
    c_paths.reserve(paths.size());
    std::size_t at = 0;
    for (const Path &p : paths) {
        nnx_path c_path;
        c_path.keys = p.empty() ? nullptr : keys.data() + at;
        c_path.len = p.size();
        c_paths.push_back(c_path);
        at += p.size();
    }
    return detail::make_filter([&](nnx_filter **out) {
        return nnx_filter_path_in(c_paths.empty() ? nullptr : c_paths.data(), c_paths.size(), out);
    });
}

inline Filter path_in(std::initializer_list<Path> paths) {
    return path_in(std::vector<Path>(paths));
}

/// Every leaf (NNX's `...` and True). In a filter list it may only be
/// followed by everything() (else NNX_ERR_FILTER_ORDER); any(everything())
/// escapes that rule, as NNX's Everything() instance does.
inline Filter everything() {
    return detail::make_filter([](nnx_filter **out) { return nnx_filter_everything(out); });
}

/// No leaf (NNX's None, False and Nothing()).
inline Filter nothing() {
    return detail::make_filter([](nnx_filter **out) { return nnx_filter_nothing(out); });
}

/// Leaves that any of `filters` matches (NNX's Any); any({}) matches none.
inline Filter any(const std::vector<const Filter *> &filters) {
    std::vector<nnx_filter *> handles;
    for (const Filter *f : filters) {
        handles.push_back(f == nullptr ? nullptr : f->handle());
    }
    return detail::make_filter([&](nnx_filter **out) {
        return nnx_filter_any(handles.empty() ? nullptr : handles.data(), handles.size(), out);
    });
}

/// Leaves that all of `filters` match (NNX's All); all({}) matches every one.
inline Filter all(const std::vector<const Filter *> &filters) {
    std::vector<nnx_filter *> handles;
    for (const Filter *f : filters) {
        handles.push_back(f == nullptr ? nullptr : f->handle());
    }
    return detail::make_filter([&](nnx_filter **out) {
        return nnx_filter_all(handles.empty() ? nullptr : handles.data(), handles.size(), out);
    });
}

/// any(a, b, ...): Filter arguments.
template <typename... Fs,
          std::enable_if_t<(std::is_convertible_v<const Fs &, const Filter &> && ...), int> = 0>
Filter any(const Fs &...filters) {
    return any(std::vector<const Filter *>{&static_cast<const Filter &>(filters)...});
}

/// all(a, b, ...): Filter arguments.
template <typename... Fs,
          std::enable_if_t<(std::is_convertible_v<const Fs &, const Filter &> && ...), int> = 0>
Filter all(const Fs &...filters) {
    return all(std::vector<const Filter *>{&static_cast<const Filter &>(filters)...});
}

/// Leaves that `filter` does not match (NNX's Not).
inline Filter not_(const Filter &filter) {
    return detail::make_filter(
        [&](nnx_filter **out) { return nnx_filter_not(filter.handle(), out); });
}

inline Filter operator|(const Filter &a, const Filter &b) { return any(a, b); }
inline Filter operator&(const Filter &a, const Filter &b) { return all(a, b); }
inline Filter operator~(const Filter &f) { return not_(f); }

/// A filter asking a callable about each leaf: bool(const Path &, const
/// Leaf &), or bool(const Path &). It runs on the thread that calls
/// filter() or split(), possibly on several threads at once if the filter
/// is shared; an exception it throws fails that call and is rethrown from
/// it. The callable must be copyable (it is kept in a std::function) and is
/// kept until the last copy of the filter is freed.
template <typename F>
Filter callback(F &&fn) {
    using Fn = std::decay_t<F>;
    auto data = std::make_unique<detail::FilterCallback>();
    if constexpr (std::is_invocable_r_v<bool, Fn &, const Path &, const Leaf &>) {
        data->predicate = std::forward<F>(fn);
    } else {
        static_assert(std::is_invocable_r_v<bool, Fn &, const Path &>,
                      "a filter callback takes (const nnx::Path &, const nnx::Leaf &) or "
                      "(const nnx::Path &) and returns bool");
        data->predicate = [f = Fn(std::forward<F>(fn))](const Path &path, const Leaf &) mutable {
            return static_cast<bool>(f(path));
        };
    }
    nnx_filter *out = nullptr;
    detail::check(nnx_filter_callback(detail::nnxpp_filter_call, data.get(),
                                      detail::nnxpp_filter_release, &out));
    data.release();  // the library calls nnxpp_filter_release with it
    return Filter::adopt(out);
}

/// Parses a filter expression, as the nnx-state tool takes them
/// (nnx_filter_parse): "Param", "BatchStat" or any registered type name
/// (or "type:NAME"); "tag:NAME"; "path:KEY" (exact), "path~:TEXT"
/// (substring); "at:a/0/b"; "..." or "*" (everything, last in a filter
/// list); "none"; and ~F, F & G, F | G with parentheses (~ binds tightest,
/// then &, then |). Type names resolve when parsing. Throws
/// NNX_ERR_INVALID_ARGUMENT for a syntax error and NNX_ERR_UNKNOWN_TYPE for
/// a type not registered (the message names the column).
inline Filter parse_filter(std::string_view text) {
    std::string c_text = detail::c_string(text, "a filter expression");
    return detail::make_filter(
        [&](nnx_filter **out) { return nnx_filter_parse(c_text.c_str(), out); });
}

// ---------------------------------------------------------------------------
// Flat lists and states
// ---------------------------------------------------------------------------

class State;

/// One (path, leaf) pair of a Flat.
struct FlatEntry {
    Path path;
    Leaf leaf;
};

/// A list of (path, leaf) pairs: what State::flatten gives and
/// State::from_flat takes. An owned nnx_flat; move-only.
class Flat {
public:
    /// An empty list, to fill with push().
    Flat() { detail::check(nnx_flat_new(&handle_)); }

    static Flat adopt(nnx_flat *handle) noexcept { return Flat(handle, Adopt{}); }

    Flat(Flat &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Flat &operator=(Flat &&other) noexcept {
        if (this != &other) {
            Flat old(std::move(*this));  // freed on return
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Flat(const Flat &) = delete;
    Flat &operator=(const Flat &) = delete;
    ~Flat() { nnx_flat_free(handle_); }

    nnx_flat *handle() const noexcept { return handle_; }
    nnx_flat *release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    std::size_t size() const {
        std::size_t out = 0;
        detail::check(nnx_flat_len(handle_, &out));
        return out;
    }
    bool empty() const { return size() == 0; }

    Path path(std::size_t index) const {
        const nnx_key *keys = nullptr;
        std::size_t len = 0;
        detail::check(nnx_flat_path(handle_, index, &keys, &len));
        return detail::path_from_c(keys, len);
    }

    /// NNX_KIND_VARIABLE or NNX_KIND_ARRAY.
    nnx_kind kind(std::size_t index) const {
        nnx_kind out = 0;
        detail::check(nnx_flat_kind(handle_, index, &out));
        return out;
    }

    Variable variable(std::size_t index) const {
        nnx_variable *out = nullptr;
        detail::check(nnx_flat_variable(handle_, index, &out));
        return Variable::borrow(out);
    }

    Array array(std::size_t index) const {
        nnx_array *out = nullptr;
        detail::check(nnx_flat_array(handle_, index, &out));
        return Array::borrow(out);
    }

    Leaf leaf(std::size_t index) const {
        if (kind(index) == NNX_KIND_VARIABLE) {
            return variable(index);
        }
        return array(index);
    }

    FlatEntry operator[](std::size_t index) const { return FlatEntry{path(index), leaf(index)}; }

    // Bulk reads: one call for a range of entries [start, start + count),
    // read atomically (entries another thread pushes meanwhile are wholly in
    // the range or not in it); NNX_ERR_INDEX_OUT_OF_RANGE past the end. The
    // forms without arguments read every entry.

    /// The kinds of the entries: NNX_KIND_VARIABLE or NNX_KIND_ARRAY.
    std::vector<nnx_kind> kinds(std::size_t start, std::size_t count) const {
        check_range(start, count);
        std::vector<nnx_kind> out(count);
        detail::check(nnx_flat_leaves(handle_, start, count, false, out.data(), nullptr, nullptr,
                                      nullptr));
        return out;
    }
    std::vector<nnx_kind> kinds() const { return kinds(0, size()); }

    /// The variables' type ids; NNX_TYPE_NONE for a bare array.
    std::vector<nnx_type_id> types(std::size_t start, std::size_t count) const {
        check_range(start, count);
        std::vector<nnx_type_id> out(count);
        detail::check(nnx_flat_leaves(handle_, start, count, false, nullptr, out.data(), nullptr,
                                      nullptr));
        return out;
    }
    std::vector<nnx_type_id> types() const { return types(0, size()); }

    /// The leaves, each a new reference (the same variables and arrays the
    /// list holds, not copies).
    std::vector<Leaf> leaves(std::size_t start, std::size_t count) const {
        check_range(start, count);
        std::vector<nnx_variable *> variables(count, nullptr);
        std::vector<nnx_array *> arrays(count, nullptr);
        std::vector<Leaf> out;
        out.reserve(count);  // nothing below throws once the handles are ours
        detail::check(nnx_flat_leaves(handle_, start, count, true, nullptr, nullptr,
                                      variables.data(), arrays.data()));
        for (std::size_t i = 0; i < count; i++) {
            if (variables[i] != nullptr) {
                out.emplace_back(Variable::adopt(variables[i]));
            } else {
                out.emplace_back(Array::adopt(arrays[i]));
            }
        }
        return out;
    }
    std::vector<Leaf> leaves() const { return leaves(0, size()); }

    /// The paths, copied.
    std::vector<Path> paths(std::size_t start, std::size_t count) const {
        check_range(start, count);
        // The offsets first, to size the keys; entries never change, so the
        // second read gives the same number of keys.
        std::vector<std::size_t> offsets(count + 1, 0);
        detail::check(nnx_flat_paths(handle_, start, count, offsets.data(), nullptr, 0));
        std::vector<nnx_key> keys(offsets[count]);
        if (!keys.empty()) {
            detail::check(nnx_flat_paths(handle_, start, count, offsets.data(), keys.data(),
                                         keys.size()));
        }
        std::vector<Path> out;
        out.reserve(count);
        for (std::size_t i = 0; i < count; i++) {
            out.push_back(detail::path_from_c(keys.data() + offsets[i], offsets[i + 1] - offsets[i]));
        }
        return out;
    }
    std::vector<Path> paths() const { return paths(0, size()); }

    /// The (path, leaf) pairs.
    std::vector<FlatEntry> entries(std::size_t start, std::size_t count) const {
        std::vector<Path> p = paths(start, count);
        std::vector<Leaf> l = leaves(start, count);
        std::vector<FlatEntry> out;
        out.reserve(count);
        for (std::size_t i = 0; i < count; i++) {
            out.push_back(FlatEntry{std::move(p[i]), std::move(l[i])});
        }
        return out;
    }
    std::vector<FlatEntry> entries() const { return entries(0, size()); }

    /// Appends (path, variable); the list holds its own reference.
    Flat &push(std::initializer_list<Key> path, const Variable &variable) {
        return push_at(path.begin(), path.size(), variable);
    }
    Flat &push(const Path &path, const Variable &variable) {
        return push_at(path.data(), path.size(), variable);
    }

    /// Appends (path, bare array).
    Flat &push(std::initializer_list<Key> path, const Array &array) {
        return push_at(path.begin(), path.size(), array);
    }
    Flat &push(const Path &path, const Array &array) {
        return push_at(path.data(), path.size(), array);
    }

    /// Appends every entry in one call, all or none (nnx_flat_push_many):
    /// flat.push_many({{{"a", 0}, variable}, {{"b"}, array}}). The list holds
    /// its own references to the leaves. Every path must be non-empty
    /// (NNX_ERR_INVALID_ARGUMENT); a moved-from leaf fails with
    /// NNX_ERR_NULL_ARGUMENT. The message names the first bad entry.
    Flat &push_many(const std::vector<FlatEntry> &entries) {
        const std::size_t n = entries.size();
        std::vector<std::size_t> offsets;
        offsets.reserve(n + 1);
        offsets.push_back(0);
        std::vector<nnx_key> keys;
        std::vector<const nnx_variable *> variables(n, nullptr);
        std::vector<const nnx_array *> arrays(n, nullptr);
        bool any_variable = false;
        bool any_array = false;
        for (std::size_t i = 0; i < n; i++) {
            for (const Key &key : entries[i].path) {
                keys.push_back(key.c_key());
            }
            offsets.push_back(keys.size());
            if (const auto *variable = std::get_if<Variable>(&entries[i].leaf)) {
                variables[i] = variable->handle();
                any_variable = true;
            } else {
                arrays[i] = std::get<Array>(entries[i].leaf).handle();
                any_array = true;
            }
        }
        detail::check(nnx_flat_push_many(handle_, n, offsets.data(),
                                          keys.empty() ? nullptr : keys.data(),
                                          any_variable ? variables.data() : nullptr,
                                          any_array ? arrays.data() : nullptr));
        return *this;
    }

    /// Iterates the entries by value: for (const auto &[path, leaf] : flat).
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = FlatEntry;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = FlatEntry;

        iterator(const Flat *flat, std::size_t index) noexcept : flat_(flat), index_(index) {}
        FlatEntry operator*() const { return (*flat_)[index_]; }
        iterator &operator++() noexcept {
            ++index_;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator old = *this;
            ++index_;
            return old;
        }
        friend bool operator==(const iterator &a, const iterator &b) noexcept {
            return a.flat_ == b.flat_ && a.index_ == b.index_;
        }
        friend bool operator!=(const iterator &a, const iterator &b) noexcept { return !(a == b); }

    private:
        const Flat *flat_;
        std::size_t index_;
    };

    iterator begin() const { return iterator(this, 0); }
    iterator end() const { return iterator(this, size()); }

private:
    struct Adopt {};
    Flat(nnx_flat *handle, Adopt) noexcept : handle_(handle) {}

    /// Fails for a range past the end before anything is allocated for it
    /// (entries are only ever appended, so a range checked stays valid).
    void check_range(std::size_t start, std::size_t count) const {
        std::size_t n = size();
        if (start > n || count > n - start) {
            detail::fail(NNX_ERR_INDEX_OUT_OF_RANGE,
                         "entries " + std::to_string(start) + " + " + std::to_string(count) +
                             " are past the end of a flat list of " + std::to_string(n));
        }
    }

    Flat &push_at(const Key *keys, std::size_t count, const Variable &variable) {
        detail::CPath c(keys, count);
        detail::check(nnx_flat_push_variable(handle_, c.data(), c.size(), variable.handle()));
        return *this;
    }

    Flat &push_at(const Key *keys, std::size_t count, const Array &array) {
        detail::CPath c(keys, count);
        detail::check(nnx_flat_push_array(handle_, c.data(), c.size(), array.handle()));
        return *this;
    }

    nnx_flat *handle_ = nullptr;
};

/// NNX's State: a nested, ordered mapping from keys to variables, bare
/// arrays and nested states. An owned nnx_state; move-only, clone() copies
/// (sharing the leaves). get_state() gives a live view of a nested state.
class State {
public:
    /// An empty state.
    State() { detail::check(nnx_state_new(&handle_)); }

    /// Takes over a state the caller owns.
    static State adopt(nnx_state *handle) noexcept { return State(handle, Adopt{}); }

    State(State &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    State &operator=(State &&other) noexcept {
        if (this != &other) {
            State old(std::move(*this));  // freed on return
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    State(const State &) = delete;
    State &operator=(const State &) = delete;
    ~State() { nnx_state_free(handle_); }

    nnx_state *handle() const noexcept { return handle_; }
    nnx_state *release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// A new tree with the same structure and the same leaves (O(1)).
    State clone() const {
        nnx_state *out = nullptr;
        detail::check(nnx_state_clone(handle_, &out));
        return adopt(out);
    }

    /// A new tree with new variables holding copies of every array.
    State deep_copy() const {
        nnx_state *out = nullptr;
        detail::check(nnx_state_deep_copy(handle_, &out));
        return adopt(out);
    }

    // Every method taking a path comes in three forms: a brace list of keys,
    // state.get({"layers", 0, "kernel"}) ({} is the empty path); a Path; or
    // a "/"-separated string, state.get("layers/0/kernel"), which the
    // library parses as parse_path() does (the C API's _str functions): a
    // canonical decimal component is an int key, "" is the empty path, an
    // empty component fails with NNX_ERR_INVALID_ARGUMENT, and a NUL byte
    // too. A string path cannot name a key holding "/"; use keys for those.

    /// Puts a variable at `path` (shared, not copied), creating nested
    /// states on the way and replacing what was there.
    State &set(std::initializer_list<Key> path, const Variable &variable) {
        return set_at(path.begin(), path.size(), variable);
    }
    State &set(const Path &path, const Variable &variable) {
        return set_at(path.data(), path.size(), variable);
    }
    State &set(std::string_view path, const Variable &variable) {
        std::string c = detail::c_string(path, "a path");
        detail::check(nnx_state_set_variable_str(handle_, c.c_str(), variable.handle()));
        return *this;
    }

    /// Puts a bare array at `path`.
    State &set(std::initializer_list<Key> path, const Array &array) {
        return set_at(path.begin(), path.size(), array);
    }
    State &set(const Path &path, const Array &array) {
        return set_at(path.data(), path.size(), array);
    }
    State &set(std::string_view path, const Array &array) {
        std::string c = detail::c_string(path, "a path");
        detail::check(nnx_state_set_array_str(handle_, c.c_str(), array.handle()));
        return *this;
    }

    /// Puts a copy of `value`'s tree at `path` (its leaves shared).
    State &set(std::initializer_list<Key> path, const State &value) {
        return set_at(path.begin(), path.size(), value);
    }
    State &set(const Path &path, const State &value) {
        return set_at(path.data(), path.size(), value);
    }
    State &set(std::string_view path, const State &value) {
        std::string c = detail::c_string(path, "a path");
        detail::check(nnx_state_set_state_str(handle_, c.c_str(), value.handle()));
        return *this;
    }

    /// Puts a variable or a bare array at `path`.
    State &set(std::initializer_list<Key> path, const Leaf &leaf) {
        return set_at(path.begin(), path.size(), leaf);
    }
    State &set(const Path &path, const Leaf &leaf) {
        return set_at(path.data(), path.size(), leaf);
    }
    State &set(std::string_view path, const Leaf &leaf) {
        return std::visit([&](const auto &l) -> State & { return set(path, l); }, leaf);
    }

    /// What `path` leads to: NNX_KIND_STATE, NNX_KIND_VARIABLE or
    /// NNX_KIND_ARRAY; NNX_ERR_KEY_NOT_FOUND when nothing is there.
    nnx_kind kind(std::initializer_list<Key> path) const { return kind_at(path.begin(), path.size()); }
    nnx_kind kind(const Path &path) const { return kind_at(path.data(), path.size()); }
    nnx_kind kind(std::string_view path) const {
        std::string c = detail::c_string(path, "a path");
        nnx_kind out = 0;
        detail::check(nnx_state_get_kind_str(handle_, c.c_str(), &out));
        return out;
    }

    /// Whether something is at `path` (false when it runs through a leaf).
    bool contains(std::initializer_list<Key> path) const {
        return contains_at(path.begin(), path.size());
    }
    bool contains(const Path &path) const { return contains_at(path.data(), path.size()); }
    bool contains(std::string_view path) const {
        std::string c = detail::c_string(path, "a path");
        bool out = false;
        detail::check(nnx_state_contains_str(handle_, c.c_str(), &out));
        return out;
    }

    /// The variable at `path`: state.get({"layers", 0, "kernel"});
    /// NNX_ERR_WRONG_KIND when something else is there.
    Variable get(std::initializer_list<Key> path) const {
        return variable_at(path.begin(), path.size());
    }
    Variable get(const Path &path) const { return variable_at(path.data(), path.size()); }
    Variable get(std::string_view path) const { return get_variable(path); }

    /// The same as get().
    Variable get_variable(std::initializer_list<Key> path) const {
        return variable_at(path.begin(), path.size());
    }
    Variable get_variable(const Path &path) const { return variable_at(path.data(), path.size()); }
    Variable get_variable(std::string_view path) const {
        std::string c = detail::c_string(path, "a path");
        nnx_variable *out = nullptr;
        detail::check(nnx_state_get_variable_str(handle_, c.c_str(), &out));
        return Variable::adopt(out);
    }

    /// The bare array at `path`.
    Array get_array(std::initializer_list<Key> path) const {
        return array_at(path.begin(), path.size());
    }
    Array get_array(const Path &path) const { return array_at(path.data(), path.size()); }
    Array get_array(std::string_view path) const {
        std::string c = detail::c_string(path, "a path");
        nnx_array *out = nullptr;
        detail::check(nnx_state_get_array_str(handle_, c.c_str(), &out));
        return Array::adopt(out);
    }

    /// The leaf (variable or bare array) at `path`.
    Leaf get_leaf(std::initializer_list<Key> path) const { return leaf_at(path.begin(), path.size()); }
    Leaf get_leaf(const Path &path) const { return leaf_at(path.data(), path.size()); }
    Leaf get_leaf(std::string_view path) const {
        if (kind(path) == NNX_KIND_ARRAY) {
            return get_array(path);
        }
        return get_variable(path);
    }

    /// A live view of the nested state at `path`: it reads and writes this
    /// state's tree (also through a const State). {} views the whole state.
    State get_state(std::initializer_list<Key> path) const {
        return state_at(path.begin(), path.size());
    }
    State get_state(const Path &path) const { return state_at(path.data(), path.size()); }
    State get_state(std::string_view path) const {
        std::string c = detail::c_string(path, "a path");
        nnx_state *out = nullptr;
        detail::check(nnx_state_get_state_str(handle_, c.c_str(), &out));
        return adopt(out);
    }

    /// Removes what is at `path` (a leaf or a whole nested state).
    State &remove(std::initializer_list<Key> path) { return remove_at(path.begin(), path.size()); }
    State &remove(const Path &path) { return remove_at(path.data(), path.size()); }
    State &remove(std::string_view path) {
        std::string c = detail::c_string(path, "a path");
        detail::check(nnx_state_remove_str(handle_, c.c_str()));
        return *this;
    }

    /// The number of top-level keys.
    std::size_t size() const {
        std::size_t out = 0;
        detail::check(nnx_state_len(handle_, &out));
        return out;
    }
    bool empty() const { return size() == 0; }

    /// The top-level key at `index`, in insertion order.
    Key key_at(std::size_t index) const {
        nnx_key out;
        detail::check(nnx_state_key_at(handle_, index, &out));
        return Key::from_c(out);
    }

    /// The top-level keys, in insertion order.
    std::vector<Key> keys() const {
        std::size_t n = size();
        std::vector<Key> out;
        out.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            out.push_back(key_at(i));
        }
        return out;
    }

    /// The number of leaves at any depth.
    std::size_t num_leaves() const {
        std::size_t out = 0;
        detail::check(nnx_state_num_leaves(handle_, &out));
        return out;
    }

    /// (path, leaf) pairs sorted by path (nnx.to_flat_state).
    Flat flatten() const {
        nnx_flat *out = nullptr;
        detail::check(nnx_state_flatten(handle_, &out));
        return Flat::adopt(out);
    }

    /// A state from (path, leaf) pairs (nnx.from_flat_state).
    static State from_flat(const Flat &flat) {
        nnx_state *out = nullptr;
        detail::check(nnx_state_from_flat(flat.handle(), &out));
        return adopt(out);
    }

    /// NNX's filter: one state per filter, each leaf in the first filter
    /// that matches it. With one filter, a State; with several, a
    /// std::array<State, N>: auto [params, rest] = state.filter(a, b);
    template <typename... Fs,
              std::enable_if_t<(sizeof...(Fs) >= 1) &&
                                   (std::is_convertible_v<const Fs &, const Filter &> && ...),
                               int> = 0>
    auto filter(const Fs &...filters) const {
        return run<false>(static_cast<const Filter &>(filters)...);
    }

    /// NNX's filter with a runtime list of filters.
    std::vector<State> filter(const std::vector<Filter> &filters) const {
        return run_list(filters, false);
    }

    /// NNX's split: as filter(), but a leaf that no filter matches fails
    /// with NNX_ERR_NON_EXHAUSTIVE.
    template <typename... Fs,
              std::enable_if_t<(sizeof...(Fs) >= 1) &&
                                   (std::is_convertible_v<const Fs &, const Filter &> && ...),
                               int> = 0>
    auto split(const Fs &...filters) const {
        return run<true>(static_cast<const Filter &>(filters)...);
    }

    /// NNX's split with a runtime list of filters.
    std::vector<State> split(const std::vector<Filter> &filters) const {
        return run_list(filters, true);
    }

    /// In place: `source`'s leaves overwrite this state's at their paths.
    State &update(const State &source) {
        detail::check(nnx_state_update(handle_, source.handle()));
        return *this;
    }

    /// The leaves of this state whose path is not a leaf path of `other`.
    State diff(const State &other) const {
        nnx_state *out = nullptr;
        detail::check(nnx_state_diff(handle_, other.handle(), &out));
        return adopt(out);
    }

    /// Loads a safetensors checkpoint (nnx_safetensors_load): a
    /// ".safetensors" file, a sharded checkpoint's "*.index.json", or a
    /// directory holding "model.safetensors" or its index. Memory-mapped and
    /// zero-copy unless `flags` has NNX_LOAD_COPY: each array maps part of
    /// the file (writes go to private pages, never to the file) and the
    /// mapping lives as long as any of its arrays. A file saved by this
    /// library gives back the state that was saved (types, metadata, key
    /// kinds, shared variables); another writer's file gives a variable of
    /// `leaf_type` per tensor (NNX_TYPE_NONE: bare arrays), its dotted
    /// names split into paths (NNX_LOAD_STR_KEYS: every component a string
    /// key). Throws NNX_ERR_IO (the file cannot be read), NNX_ERR_FORMAT (a
    /// malformed file), NNX_ERR_INVALID_ARGUMENT (unknown flags),
    /// NNX_ERR_UNKNOWN_TYPE (`leaf_type`), NNX_ERR_TYPE_CONFLICT.
    static State load_safetensors(std::string_view path, nnx_type_id leaf_type = NNX_TYPE_PARAM,
                                  nnx_load_flags flags = 0) {
        std::string c_path = detail::c_string(path, "a file path");
        nnx_state *out = nullptr;
        detail::check(nnx_safetensors_load(c_path.c_str(), leaf_type, flags, &out));
        return adopt(out);
    }

    /// Saves this state as one safetensors file, atomically (a temporary
    /// file renamed over `path`: a failed save leaves what was there), that
    /// any safetensors reader takes (nnx_safetensors_save). The state may be
    /// used meanwhile. Throws NNX_ERR_IO (the message names the file and the
    /// cause) and NNX_ERR_INVALID_ARGUMENT (an array not in CPU memory).
    void save_safetensors(std::string_view path) const {
        std::string c_path = detail::c_string(path, "a file path");
        detail::check(nnx_safetensors_save(handle_, c_path.c_str(), 0));
    }

    /// Saves this state as a sharded checkpoint in `directory`, which must
    /// exist (nnx_safetensors_save_sharded): shards of at most
    /// `max_shard_size` bytes of tensor data (unless one tensor alone is
    /// larger), "NAME-00001-of-0000N.safetensors" and so on and the index
    /// "NAME.safetensors.index.json"; a single "NAME.safetensors" when one
    /// shard holds it all. Each file is written atomically, the index last;
    /// files of an earlier checkpoint of the same name that this one does
    /// not use are removed. Throws as save_safetensors(), and
    /// NNX_ERR_INVALID_ARGUMENT for a `name` that is not a plain file name
    /// or a zero `max_shard_size`.
    void save_safetensors_sharded(std::string_view directory, std::string_view name,
                                  uint64_t max_shard_size) const {
        std::string c_directory = detail::c_string(directory, "a directory path");
        std::string c_name = detail::c_string(name, "a checkpoint name");
        detail::check(nnx_safetensors_save_sharded(handle_, c_directory.c_str(), c_name.c_str(),
                                                   max_shard_size, 0));
    }

    /// The safetensors "__metadata__" entries this state carries, by name:
    /// those of the file it was loaded from (a Hugging Face file's
    /// {"format": "pt"}), without nnx-state's own record, as changed since;
    /// save_safetensors() and save_safetensors_sharded() write them back,
    /// and clone() and deep_copy() carry them. Empty for a state
    /// not loaded from a file and for a view (nnx_safetensors_metadata_at).
    std::map<std::string, std::string> file_metadata() const {
        std::size_t len = 0;
        detail::check(nnx_safetensors_metadata_len(handle_, &len));
        std::map<std::string, std::string> entries;
        for (std::size_t i = 0; i < len; ++i) {
            char *name = nullptr;
            char *value = nullptr;
            nnx_status status = nnx_safetensors_metadata_at(handle_, i, &name, &value);
            if (status == NNX_ERR_INDEX_OUT_OF_RANGE) {
                break;  // another thread removed entries meanwhile
            }
            detail::check(status);
            std::string key = detail::take_string(name);
            entries.emplace(std::move(key), detail::take_string(value));
        }
        return entries;
    }

    /// The value of the file metadata entry `name`, or nullopt when there
    /// is none (nnx_safetensors_metadata_get).
    std::optional<std::string> file_metadata(std::string_view name) const {
        std::string c_name = detail::c_string(name, "a metadata name");
        char *value = nullptr;
        nnx_status status = nnx_safetensors_metadata_get(handle_, c_name.c_str(), &value);
        if (status == NNX_ERR_KEY_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(status);
        return detail::take_string(value);
    }

    /// Sets the file metadata entry `name` to `value` for the next save
    /// (nnx_safetensors_metadata_set). Throws NNX_ERR_INVALID_ARGUMENT for
    /// a name starting with "nnx_state.v" (nnx-state's own records) and
    /// NNX_ERR_INVALID_UTF8.
    State &set_file_metadata(std::string_view name, std::string_view value) {
        std::string c_name = detail::c_string(name, "a metadata name");
        std::string c_value = detail::c_string(value, "a metadata value");
        detail::check(nnx_safetensors_metadata_set(handle_, c_name.c_str(), c_value.c_str()));
        return *this;
    }

    /// Replaces all file metadata with `entries` (a reserved name throws
    /// before anything changes).
    State &set_file_metadata(const std::map<std::string, std::string> &entries) {
        for (const auto &entry : entries) {
            if (entry.first.rfind("nnx_state.v", 0) == 0) {
                detail::fail(NNX_ERR_INVALID_ARGUMENT,
                             "metadata name \"" + entry.first +
                                 "\" is reserved for nnx-state's own record");
            }
        }
        detail::check(nnx_safetensors_metadata_clear(handle_));
        for (const auto &entry : entries) {
            set_file_metadata(entry.first, entry.second);
        }
        return *this;
    }

    /// Removes the file metadata entry `name`; returns whether there was one.
    bool remove_file_metadata(std::string_view name) {
        std::string c_name = detail::c_string(name, "a metadata name");
        nnx_status status = nnx_safetensors_metadata_remove(handle_, c_name.c_str());
        if (status == NNX_ERR_KEY_NOT_FOUND) {
            return false;
        }
        detail::check(status);
        return true;
    }

    /// An NNX-like listing of the tree.
    std::string to_string() const {
        char *out = nullptr;
        detail::check(nnx_state_to_string(handle_, &out));
        return detail::take_string(out);
    }

    friend std::ostream &operator<<(std::ostream &out, const State &state) {
        return out << state.to_string();
    }

private:
    struct Adopt {};
    State(nnx_state *handle, Adopt) noexcept : handle_(handle) {}

    State &set_at(const Key *keys, std::size_t count, const Variable &variable) {
        detail::CPath c(keys, count);
        detail::check(nnx_state_set_variable(handle_, c.data(), c.size(), variable.handle()));
        return *this;
    }

    State &set_at(const Key *keys, std::size_t count, const Array &array) {
        detail::CPath c(keys, count);
        detail::check(nnx_state_set_array(handle_, c.data(), c.size(), array.handle()));
        return *this;
    }

    State &set_at(const Key *keys, std::size_t count, const State &value) {
        detail::CPath c(keys, count);
        detail::check(nnx_state_set_state(handle_, c.data(), c.size(), value.handle()));
        return *this;
    }

    State &set_at(const Key *keys, std::size_t count, const Leaf &leaf) {
        return std::visit([&](const auto &l) -> State & { return set_at(keys, count, l); }, leaf);
    }

    nnx_kind kind_at(const Key *keys, std::size_t count) const {
        detail::CPath c(keys, count);
        nnx_kind out = 0;
        detail::check(nnx_state_get_kind(handle_, c.data(), c.size(), &out));
        return out;
    }

    bool contains_at(const Key *keys, std::size_t count) const {
        detail::CPath c(keys, count);
        bool out = false;
        detail::check(nnx_state_contains(handle_, c.data(), c.size(), &out));
        return out;
    }

    Variable variable_at(const Key *keys, std::size_t count) const {
        detail::CPath c(keys, count);
        nnx_variable *out = nullptr;
        detail::check(nnx_state_get_variable(handle_, c.data(), c.size(), &out));
        return Variable::adopt(out);
    }

    Array array_at(const Key *keys, std::size_t count) const {
        detail::CPath c(keys, count);
        nnx_array *out = nullptr;
        detail::check(nnx_state_get_array(handle_, c.data(), c.size(), &out));
        return Array::adopt(out);
    }

    Leaf leaf_at(const Key *keys, std::size_t count) const {
        if (kind_at(keys, count) == NNX_KIND_ARRAY) {
            return array_at(keys, count);
        }
        return variable_at(keys, count);
    }

    State state_at(const Key *keys, std::size_t count) const {
        detail::CPath c(keys, count);
        nnx_state *out = nullptr;
        detail::check(nnx_state_get_state(handle_, c.data(), c.size(), &out));
        return adopt(out);
    }

    State &remove_at(const Key *keys, std::size_t count) {
        detail::CPath c(keys, count);
        detail::check(nnx_state_remove(handle_, c.data(), c.size()));
        return *this;
    }

    template <std::size_t... I>
    static std::array<State, sizeof...(I)> adopt_all(
        const std::array<nnx_state *, sizeof...(I)> &handles, std::index_sequence<I...>) {
        return {adopt(handles[I])...};
    }

    template <bool Split, typename... Fs>
    auto run(const Fs &...filters) const {
        constexpr std::size_t n = sizeof...(Fs);
        std::array<nnx_filter *, n> handles{filters.handle()...};
        std::array<nnx_state *, n> out{};
        detail::pending_exception() = nullptr;
        detail::check_with_callbacks(Split ? nnx_state_split(handle_, handles.data(), n, out.data())
                                           : nnx_state_filter(handle_, handles.data(), n, out.data()));
        if constexpr (n == 1) {
            return adopt(out[0]);
        } else {
            return adopt_all(out, std::make_index_sequence<n>{});
        }
    }

    std::vector<State> run_list(const std::vector<Filter> &filters, bool split) const {
        // One slot at least, so that an empty list is reported as such
        // (NNX_ERR_INVALID_ARGUMENT) rather than as a NULL pointer.
        const std::size_t n = filters.size();
        std::vector<nnx_filter *> handles(n == 0 ? 1 : n, nullptr);
        for (std::size_t i = 0; i < n; i++) {
            handles[i] = filters[i].handle();
        }
        std::vector<nnx_state *> out(handles.size(), nullptr);
        detail::pending_exception() = nullptr;
        detail::check_with_callbacks(
            split ? nnx_state_split(handle_, handles.data(), n, out.data())
                  : nnx_state_filter(handle_, handles.data(), n, out.data()));
        std::vector<State> states;
        states.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            states.push_back(adopt(out[i]));
        }
        return states;
    }

    nnx_state *handle_ = nullptr;
};

/// NNX's merge_state: the union of the states' leaves, the later state
/// winning at the same path.
inline State merge(const std::vector<const State *> &states) {
    // One slot at least, so that an empty list is reported as such.
    std::vector<nnx_state *> handles(states.empty() ? 1 : states.size(), nullptr);
    for (std::size_t i = 0; i < states.size(); i++) {
        handles[i] = states[i] == nullptr ? nullptr : states[i]->handle();
    }
    nnx_state *out = nullptr;
    detail::check(nnx_state_merge(handles.data(), states.size(), &out));
    return State::adopt(out);
}

/// merge over a runtime list of states.
inline State merge(const std::vector<State> &states) {
    std::vector<const State *> pointers;
    pointers.reserve(states.size());
    for (const State &s : states) {
        pointers.push_back(&s);
    }
    return merge(pointers);
}

/// merge(a, b, ...).
template <typename... Ss,
          std::enable_if_t<(sizeof...(Ss) >= 1) &&
                               (std::is_convertible_v<const Ss &, const State &> && ...),
                           int> = 0>
State merge(const Ss &...states) {
    return merge(std::vector<const State *>{&static_cast<const State &>(states)...});
}

/// merge over a std::array of states, as filter() and split() give.
template <std::size_t N>
State merge(const std::array<State, N> &states) {
    std::vector<const State *> pointers;
    for (const State &s : states) {
        pointers.push_back(&s);
    }
    return merge(pointers);
}

/// NNX's diff: the leaves of `a` whose path is not a leaf path of `b`.
inline State diff(const State &a, const State &b) { return a.diff(b); }

/// An NNX-like listing of the tree.
inline std::string to_string(const State &state) { return state.to_string(); }

/// nnx.to_flat_state / nnx.from_flat_state.
inline Flat to_flat_state(const State &state) { return state.flatten(); }
inline State from_flat_state(const Flat &flat) { return State::from_flat(flat); }

/// State::load_safetensors, State::save_safetensors and
/// State::save_safetensors_sharded as free functions. A path is any bytes
/// but NUL on Unix, UTF-8 elsewhere; pass a std::filesystem::path as
/// p.string().
inline State load_safetensors(std::string_view path, nnx_type_id leaf_type = NNX_TYPE_PARAM,
                              nnx_load_flags flags = 0) {
    return State::load_safetensors(path, leaf_type, flags);
}
inline void save_safetensors(const State &state, std::string_view path) {
    state.save_safetensors(path);
}
inline void save_safetensors_sharded(const State &state, std::string_view directory,
                                     std::string_view name, uint64_t max_shard_size) {
    state.save_safetensors_sharded(directory, name, max_shard_size);
}

}  // namespace nnx

#endif /* NNX_STATE_HPP */
