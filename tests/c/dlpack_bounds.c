/*
 * dlpack_bounds.c: DLPack imports refuse, from C, every tensor whose
 * address arithmetic overflows or wraps (a byte_offset that wraps the
 * address space, memory that runs past its end, byte sizes that overflow,
 * shape or strides arrays past its end), and the tensors they cannot hold
 * (negative ndim or dimensions, strides that are not compact, NULL data
 * with bytes, several lanes, bits that name no dtype), through both
 * nnx_array_from_dlpack and nnx_array_from_dlpack_legacy. Every refusal
 * has its status and message, leaves the out-pointer alone and has called
 * the tensor's deleter exactly once when it returns; the edge cases that
 * fit (empty tensors, an offset exactly at the end, 0-d scalars, device
 * memory ending at the last address) are imported and printed in a state.
 * nnx_array_wrap and nnx_array_new refuse memory that runs past the end of
 * the address space, and a refused wrap does not call its release.
 *
 * Addresses that are not memory are only numbers here, made from integers:
 * the library refuses them before it could read them, or holds device
 * memory without reading it. Assumes 64-bit pointers, as the library does.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnx_state.h"

#include "check.h"
#include "dlpack_types.h"

#define CPU 1
#define CUDA 2

static const DLDataType f32 = {2, 32, 1};
static const DLDataType u8 = {1, 8, 1};

/* An address from which exactly `room` bytes fit. */
static uintptr_t top(uintptr_t room) { return UINTPTR_MAX - room; }

/* A tensor's fields, as a producer fills them in. */
typedef struct {
    uintptr_t data;
    int32_t device_type;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides;
    uint64_t byte_offset;
} spec;

static spec tensor(uintptr_t data, DLDataType dtype, int32_t ndim, int64_t *shape) {
    spec s = {data, CPU, ndim, dtype, shape, NULL, 0};
    return s;
}

static DLTensor dl_tensor(spec s) {
    DLTensor t = {(void *)s.data, {s.device_type, 0}, s.ndim, s.dtype,
                  s.shape,        s.strides,          s.byte_offset};
    return t;
}

/* The deleters count their calls in the int at manager_ctx. */
static void delete_versioned(DLManagedTensorVersioned *self) { (*(int *)self->manager_ctx)++; }
static void delete_legacy(DLManagedTensor *self) { (*(int *)self->manager_ctx)++; }

static nnx_array *const untouched = (nnx_array *)(uintptr_t)0x5E571E11u;

/* Fails the program, naming the case. */
static void fail(const char *what, const char *why) {
    fprintf(stderr, "dlpack_bounds: %s: %s (last error: %s)\n", what, why,
            nnx_last_error_message());
    exit(1);
}

static void check_refusal(const char *what, nnx_status got, nnx_status want,
                          const char *needle, const nnx_array *out, int deleted) {
    if (got != want) {
        fprintf(stderr, "dlpack_bounds: %s: %s, expected %s\n", what,
                nnx_status_name((int32_t)got), nnx_status_name((int32_t)want));
        exit(1);
    }
    if (strstr(nnx_last_error_message(), needle) == NULL) fail(what, needle);
    if (out != untouched) fail(what, "the out-pointer was written");
    if (deleted != 1) fail(what, "the deleter did not run exactly once");
}

/* `s` is refused with `want` by both imports, with `needle` in the message. */
static void refused(const char *what, spec s, nnx_status want, const char *needle) {
    int deleted = 0;
    DLManagedTensorVersioned v = {{1, 1}, &deleted, delete_versioned, 0, dl_tensor(s)};
    nnx_array *out = untouched;
    nnx_status got = nnx_array_from_dlpack(&v, &out);
    check_refusal(what, got, want, needle, out, deleted);
    deleted = 0;
    DLManagedTensor l = {dl_tensor(s), &deleted, delete_legacy};
    got = nnx_array_from_dlpack_legacy(&l, &out);
    check_refusal(what, got, want, needle, out, deleted);
}

/* Puts `array` in a state and checks that its listing says `needle`. */
static void prints(const char *what, nnx_array *array, const char *needle) {
    nnx_state *state;
    CHECK(nnx_state_new(&state));
    CHECK(nnx_state_set_array_str(state, "x", array));
    char *text = NULL;
    CHECK(nnx_state_to_string(state, &text));
    if (strstr(text, needle) == NULL) {
        fprintf(stderr, "dlpack_bounds: %s: listing %s lacks %s\n", what, text, needle);
        exit(1);
    }
    nnx_string_free(text);
    nnx_state_free(state);
}

static void check_import(const char *what, nnx_array *array, uintptr_t data, size_t nbytes,
                         const char *needle) {
    const void *got = NULL;
    size_t got_nbytes = 0;
    CHECK(nnx_array_data(array, &got));
    CHECK(nnx_array_nbytes(array, &got_nbytes));
    /* NULL data (an empty tensor) may come back as any pointer. */
    if (data != 0 && (uintptr_t)got != data) fail(what, "the data pointer is not data + byte_offset");
    if (got_nbytes != nbytes) fail(what, "wrong byte count");
    prints(what, array, needle);
}

/* `s` is imported by both imports, at `data` with `nbytes` bytes, prints
 * `needle`, and is handed back once, when the array goes. */
static void accepted(const char *what, spec s, uintptr_t data, size_t nbytes,
                     const char *needle) {
    int deleted = 0;
    DLManagedTensorVersioned v = {{1, 1}, &deleted, delete_versioned, 0, dl_tensor(s)};
    nnx_array *array = NULL;
    CHECK(nnx_array_from_dlpack(&v, &array));
    check_import(what, array, data, nbytes, needle);
    if (deleted != 0) fail(what, "deleted while the array lives");
    nnx_array_release(array);
    if (deleted != 1) fail(what, "not deleted once when the array went");

    deleted = 0;
    DLManagedTensor l = {dl_tensor(s), &deleted, delete_legacy};
    CHECK(nnx_array_from_dlpack_legacy(&l, &array));
    check_import(what, array, data, nbytes, needle);
    nnx_array_release(array);
    if (deleted != 1) fail(what, "legacy: not deleted once when the array went");
}

static float values[4] = {1, 2, 3, 4};

static void offsets_and_ends(void) {
    uintptr_t data = (uintptr_t)values;
    int64_t four[1] = {4};
    spec s = tensor(data, f32, 1, four);

    s.byte_offset = (uint64_t)0 - (uint64_t)data + 16; /* wraps to address 16 */
    refused("offset wrapping to 16", s, NNX_ERR_INVALID_ARGUMENT,
            "run past the end of the address space");
    s.byte_offset = UINT64_MAX;
    refused("offset UINT64_MAX", s, NNX_ERR_INVALID_ARGUMENT, "overflows");

    s = tensor(top(8), f32, 1, four);
    refused("16 bytes 8 below the top", s, NNX_ERR_INVALID_ARGUMENT, "16 bytes from address");
    s.device_type = CUDA;
    refused("device memory past the top", s, NNX_ERR_INVALID_ARGUMENT,
            "run past the end of the address space");
    s = tensor(0x70000000u, f32, 1, four);
    s.device_type = CUDA;
    s.byte_offset = (uint64_t)0 - 0x70000000u;
    refused("device offset wrapping to 0", s, NNX_ERR_INVALID_ARGUMENT,
            "run past the end of the address space");

    int64_t one[1] = {1};
    s = tensor(0x1000, u8, 1, one);
    s.byte_offset = (uint64_t)PTRDIFF_MAX;
    refused("offset of PTRDIFF_MAX", s, NNX_ERR_INVALID_ARGUMENT,
            "more than one allocation can hold");

    /* What fits. */
    int64_t two[1] = {2};
    s = tensor(data, f32, 1, two);
    s.byte_offset = 8;
    accepted("the last two elements", s, data + 8, 8, "float32[2] [3.0, 4.0]");
    s = tensor(data, f32, 0, NULL);
    s.byte_offset = 4;
    accepted("a 0-d scalar", s, data + 4, 4, "float32[] [2.0]");
    int64_t zero[1] = {0};
    s = tensor(data, f32, 1, zero);
    s.byte_offset = sizeof values;
    accepted("an offset at the end", s, data + sizeof values, 0, "float32[0] []");
    int64_t empty[2] = {0, 3};
    int64_t any[2] = {7, -7};
    s = tensor(0, f32, 2, empty);
    s.strides = any;
    accepted("an empty tensor with NULL data", s, 0, 0, "float32[0,3] []");
    s = tensor(top(16), f32, 1, four);
    s.device_type = CUDA;
    accepted("device memory ending at the top", s, top(16), 16, "<device 2:0>");
}

static void sizes_and_dimensions(void) {
    uintptr_t data = (uintptr_t)values;
    int64_t overflow[2] = {INT64_MAX, 2};
    refused("INT64_MAX x 2", tensor(data, f32, 2, overflow), NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows");
    int64_t squares[2] = {INT64_C(1) << 32, INT64_C(1) << 32};
    refused("2^32 x 2^32", tensor(data, u8, 2, squares), NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows");
    int64_t halves[3] = {INT64_MAX, 0, INT64_MAX};
    refused("INT64_MAX x 0 x INT64_MAX", tensor(0, f32, 3, halves), NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows");
    int64_t many[70];
    for (int i = 0; i < 70; i++) many[i] = 2;
    refused("70 dimensions of 2", tensor(data, f32, 70, many), NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows");
    int64_t huge[2] = {INT64_C(1) << 62, 4};
    int64_t compact[2] = {4, 1};
    spec s = tensor(data, f32, 2, huge);
    s.strides = compact;
    refused("strides of an overflowing shape", s, NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows");

    int64_t negative[2] = {2, -3};
    refused("a negative dimension", tensor(data, f32, 2, negative), NNX_ERR_FORMAT,
            "negative dimension -3");
    int64_t four[1] = {4};
    refused("ndim -1", tensor(data, f32, -1, four), NNX_ERR_FORMAT, "ndim -1");
    refused("ndim INT32_MAX, shape at the top",
            tensor(data, f32, INT32_MAX, (int64_t *)top(64)), NNX_ERR_INVALID_ARGUMENT,
            "argument `dl_tensor.shape`");
    refused("ndim 3, no shape", tensor(data, f32, 3, NULL), NNX_ERR_NULL_ARGUMENT,
            "`dl_tensor.shape` is NULL");

    int64_t shape[2] = {2, 2};
    int64_t transposed[2] = {1, 2};
    s = tensor(data, f32, 2, shape);
    s.strides = transposed;
    refused("transposed strides", s, NNX_ERR_FORMAT, "not compact row-major");
    int64_t wild[2] = {INT64_MAX, 1};
    s.strides = wild;
    refused("a stride of INT64_MAX", s, NNX_ERR_FORMAT, "not compact row-major");
    s.strides = (int64_t *)top(8);
    refused("strides at the top", s, NNX_ERR_INVALID_ARGUMENT, "argument `dl_tensor.strides`");

    refused("NULL data", tensor(0, f32, 1, four), NNX_ERR_FORMAT, "NULL data and 16 bytes");
    DLDataType lanes = {2, 32, 4};
    refused("four lanes", tensor(data, lanes, 1, four), NNX_ERR_FORMAT, "4 lanes");
    DLDataType bits = {2, 12, 1};
    refused("12 bits", tensor(data, bits, 1, four), NNX_ERR_FORMAT, "no nnx-state dtype");
}

static int released;
static void on_release(void *user_data) {
    (void)user_data;
    released++;
}

static void wrapped_memory(void) {
    const int64_t four[1] = {4};
    nnx_array *out = untouched;
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_array_wrap(NNX_DTYPE_F32, four, 1, (void *)top(8), 16, true, on_release,
                               NULL, &out));
    EXPECT(strstr(nnx_last_error_message(), "run past the end of the address space") != NULL);
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_array_wrap_device(NNX_DTYPE_F32, four, 1, (void *)UINTPTR_MAX, 16, CUDA, 0,
                                      true, on_release, NULL, &out));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_array_new(NNX_DTYPE_F32, four, 1, (const void *)top(8), 16, &out));
    EXPECT(strstr(nnx_last_error_message(), "argument `data`") != NULL);
    EXPECT(out == untouched);
    EXPECT(released == 0);
    /* Device memory that ends at the top fits, and is given back once. */
    CHECK(nnx_array_wrap_device(NNX_DTYPE_F32, four, 1, (void *)top(16), 16, CUDA, 0, true,
                                on_release, NULL, &out));
    nnx_array_release(out);
    EXPECT(released == 1);
}

int main(void) {
    offsets_and_ends();
    sizes_and_dimensions();
    wrapped_memory();
    printf("dlpack_bounds: ok\n");
    return 0;
}
