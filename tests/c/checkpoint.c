/*
 * checkpoint.c: safetensors checkpoints, filter parsing and DLPack from C.
 *
 * Saves a state and loads it back (one file and sharded), refuses a
 * truncated file with NNX_ERR_FORMAT and a missing one with NNX_ERR_IO,
 * splits by parsed filters, and passes arrays both ways through DLPack
 * without copies. The DLPack structs come from dlpack_types.h, as
 * dlpack.h 1.1 defines them: the library's header only names them, so the
 * two go together without conflicting definitions.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnx_state.h"

#include "check.h"
#include "dlpack_types.h"

static char dir[256];

static void path_in_dir(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static char *listing(const nnx_state *state) {
    char *text = NULL;
    CHECK(nnx_state_to_string(state, &text));
    return text;
}

/* The state with its keys sorted, as loads give them. */
static nnx_state *sorted(const nnx_state *state) {
    nnx_filter *all;
    CHECK(nnx_filter_everything(&all));
    nnx_state *out;
    CHECK(nnx_state_filter(state, &all, 1, &out));
    nnx_filter_free(all);
    return out;
}

static void expect_same(const nnx_state *a, const nnx_state *b) {
    char *ta = listing(a);
    char *tb = listing(b);
    if (strcmp(ta, tb) != 0) {
        fprintf(stderr, "states differ:\n%s\n---\n%s\n", ta, tb);
        exit(1);
    }
    nnx_string_free(ta);
    nnx_string_free(tb);
}

static nnx_state *build_state(void) {
    nnx_state *state;
    CHECK(nnx_state_new(&state));
    static const float kernel[6] = {1, 2, 3, 4, 5, 6};
    static const int64_t shape[2] = {2, 3};
    nnx_array *array;
    CHECK(nnx_array_new(NNX_DTYPE_F32, shape, 2, kernel, sizeof kernel, &array));
    nnx_variable *var;
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, array, &var));
    CHECK(nnx_state_set_variable_str(state, "layers/0/kernel", var));
    nnx_variable_release(var);
    nnx_array_release(array);

    /* The str key "0" stays apart from the int key 0. */
    const nnx_key str_path[3] = {
        {NNX_KEY_STR, "layers", 6, 0}, {NNX_KEY_STR, "0", 1, 0}, {NNX_KEY_STR, "bias", 4, 0}};
    static const double bias[3] = {0.5, -0.5, 0.25};
    static const int64_t shape3[1] = {3};
    CHECK(nnx_array_new(NNX_DTYPE_F64, shape3, 1, bias, sizeof bias, &array));
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, array, &var));
    CHECK(nnx_state_set_variable(state, str_path, 3, var));
    nnx_variable_release(var);
    nnx_array_release(array);

    static const float mean[3] = {0, 0, 0};
    CHECK(nnx_array_new(NNX_DTYPE_F32, shape3, 1, mean, sizeof mean, &array));
    CHECK(nnx_variable_new(NNX_TYPE_BATCH_STAT, array, &var));
    CHECK(nnx_variable_set_metadata_str(var, "tag", "stats"));
    CHECK(nnx_variable_set_metadata_float(var, "momentum", 0.9));
    CHECK(nnx_state_set_variable_str(state, "bn/mean", var));
    nnx_variable_release(var);
    nnx_array_release(array);
    return state;
}

static void round_trips(const nnx_state *state) {
    char file[512];
    path_in_dir(file, sizeof file, "model.safetensors");
    CHECK(nnx_safetensors_save(state, file, 0));
    nnx_state *expected = sorted(state);

    nnx_state *loaded;
    CHECK(nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &loaded));
    expect_same(loaded, expected);

    /* Mapped arrays are writable; writes stay in memory. */
    nnx_array *kernel;
    nnx_variable *var;
    CHECK(nnx_state_get_variable_str(loaded, "layers/0/kernel", &var));
    CHECK(nnx_variable_get_value(var, &kernel));
    void *data;
    CHECK(nnx_array_data_mut(kernel, &data));
    ((float *)data)[0] = 100.0f;
    nnx_array_release(kernel);
    nnx_variable_release(var);
    nnx_state *again;
    CHECK(nnx_safetensors_load(file, NNX_TYPE_PARAM, NNX_LOAD_COPY, &again));
    expect_same(again, expected);
    nnx_state_free(again);
    nnx_state_free(loaded);

    /* Sharded: every tensor in its own shard. */
    CHECK(nnx_safetensors_save_sharded(state, dir, "model", 16, 0));
    char index[512];
    path_in_dir(index, sizeof index, "model.safetensors.index.json");
    struct stat st;
    EXPECT(stat(index, &st) == 0);
    EXPECT(stat(file, &st) != 0); /* the single file of before is gone */
    CHECK(nnx_safetensors_load(index, NNX_TYPE_PARAM, 0, &loaded));
    expect_same(loaded, expected);
    nnx_state_free(loaded);
    CHECK(nnx_safetensors_load(dir, NNX_TYPE_PARAM, 0, &loaded));
    expect_same(loaded, expected);
    nnx_state_free(loaded);
    nnx_state_free(expected);

    char shard[512];
    for (int i = 1; i <= 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", i);
        path_in_dir(shard, sizeof shard, name);
        EXPECT(remove(shard) == 0);
    }
    EXPECT(remove(index) == 0);
}

static void bad_files(void) {
    char file[512];
    path_in_dir(file, sizeof file, "bad.safetensors");
    FILE *f = fopen(file, "wb");
    EXPECT(f != NULL);
    /* A header length of 100 bytes in a file of 12. */
    const unsigned char bytes[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    EXPECT(fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes);
    fclose(f);
    nnx_state *out = NULL;
    CHECK_FAILS(NNX_ERR_FORMAT, nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &out));
    EXPECT(out == NULL);
    EXPECT(strstr(nnx_last_error_message(), "truncated") != NULL);
    EXPECT(strcmp(nnx_status_name(NNX_ERR_FORMAT), "NNX_ERR_FORMAT") == 0);
    EXPECT(remove(file) == 0);
    CHECK_FAILS(NNX_ERR_IO, nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &out));
    EXPECT(strcmp(nnx_status_name(NNX_ERR_IO), "NNX_ERR_IO") == 0);
}

static void parsed_filters(const nnx_state *state) {
    nnx_filter *filters[2];
    CHECK(nnx_filter_parse("BatchStat | tag:stats", &filters[0]));
    CHECK(nnx_filter_parse("...", &filters[1]));
    nnx_state *parts[2];
    CHECK(nnx_state_split(state, filters, 2, parts));
    size_t n0, n1;
    CHECK(nnx_state_num_leaves(parts[0], &n0));
    CHECK(nnx_state_num_leaves(parts[1], &n1));
    EXPECT(n0 == 1 && n1 == 2);
    nnx_state_free(parts[0]);
    nnx_state_free(parts[1]);
    nnx_filter_free(filters[0]);
    nnx_filter_free(filters[1]);
    nnx_filter *bad = NULL;
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_filter_parse("Param &", &bad));
    EXPECT(strstr(nnx_last_error_message(), "column 8") != NULL);
    CHECK_FAILS(NNX_ERR_UNKNOWN_TYPE, nnx_filter_parse("NoSuchType", &bad));
    EXPECT(bad == NULL);
}

/* A producer's tensor over a static buffer, with a deleter that counts. */
static float produced_data[4] = {1, 2, 3, 4};
static int64_t produced_shape[1] = {4};
static int deleted;

static void count_delete(DLManagedTensorVersioned *self) {
    (void)self;
    deleted++;
}

static void dlpack(const nnx_state *state) {
    nnx_variable *var;
    CHECK(nnx_state_get_variable_str(state, "layers/0/kernel", &var));
    nnx_array *kernel;
    CHECK(nnx_variable_get_value(var, &kernel));
    const void *data;
    CHECK(nnx_array_data(kernel, &data));

    DLManagedTensorVersioned *tensor;
    CHECK(nnx_array_to_dlpack(kernel, &tensor));
    EXPECT(tensor->version.major == 1);
    EXPECT(tensor->dl_tensor.data == data);
    EXPECT(tensor->dl_tensor.ndim == 2);
    EXPECT(tensor->dl_tensor.shape[0] == 2 && tensor->dl_tensor.shape[1] == 3);
    EXPECT(tensor->dl_tensor.dtype.code == 2 && tensor->dl_tensor.dtype.bits == 32);
    EXPECT(tensor->dl_tensor.device.device_type == 1);
    EXPECT((tensor->flags & DLPACK_FLAG_BITMASK_READ_ONLY) == 0);
    /* Back in: the same memory. */
    nnx_array *back;
    CHECK(nnx_array_from_dlpack(tensor, &back));
    const void *back_data;
    CHECK(nnx_array_data(back, &back_data));
    EXPECT(back_data == data);
    nnx_array_release(back);
    /* A tensor nobody takes is freed by its deleter. */
    CHECK(nnx_array_to_dlpack(kernel, &tensor));
    tensor->deleter(tensor);
    nnx_array_release(kernel);
    nnx_variable_release(var);

    /* Another producer's tensor: its deleter runs when the array goes. */
    DLManagedTensorVersioned produced = {
        {1, 1}, NULL, count_delete, DLPACK_FLAG_BITMASK_READ_ONLY,
        {produced_data, {1, 0}, 1, {2, 32, 1}, produced_shape, NULL, 0}};
    nnx_array *imported;
    CHECK(nnx_array_from_dlpack(&produced, &imported));
    bool writable = true;
    CHECK(nnx_array_is_writable(imported, &writable));
    EXPECT(!writable);
    int32_t type = 0, id = -1;
    CHECK(nnx_array_device(imported, &type, &id));
    EXPECT(type == 1 && id == 0);
    EXPECT(deleted == 0);
    nnx_array_release(imported);
    EXPECT(deleted == 1);
    /* A tensor of an unknown major version is handed back at once. */
    produced.version.major = 9;
    CHECK_FAILS(NNX_ERR_FORMAT, nnx_array_from_dlpack(&produced, &imported));
    EXPECT(deleted == 2);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/nnx-checkpoint-c-%ld", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    EXPECT(mkdir(dir, 0700) == 0);

    nnx_state *state = build_state();
    round_trips(state);
    bad_files();
    parsed_filters(state);
    dlpack(state);
    nnx_state_free(state);

    EXPECT(rmdir(dir) == 0);
    printf("checkpoint: ok\n");
    return 0;
}
