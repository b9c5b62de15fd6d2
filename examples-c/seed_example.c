/*
 * seed_example.c: the three documented examples of flax.nnx.State (filter,
 * split, merge) on the state of
 *
 *     class Model(nnx.Module):
 *         def __init__(self, rngs):
 *             self.batchnorm = nnx.BatchNorm(2, rngs=rngs)
 *             self.linear = nnx.Linear(2, 3, rngs=rngs)
 *
 * built by hand through the C API. Every result is checked; the program
 * exits non-zero on any mismatch and frees everything it made.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnx_state.h"

/* Exits with the library's status name and message when a call fails. */
#define CHECK(call)                                                         \
    do {                                                                    \
        nnx_status check_status_ = (call);                                  \
        if (check_status_ != NNX_OK) {                                      \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__,         \
                    __LINE__, #call, nnx_status_name((int32_t)check_status_), \
                    nnx_last_error_message());                              \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* Exits when a condition that the example relies on does not hold. */
#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__,    \
                    __LINE__, #cond);                                       \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* A string key from a string literal. */
#define KEY(s) ((nnx_key){.kind = NNX_KEY_STR, .str = (s), .str_len = sizeof(s) - 1, .int_value = 0})

/* A float32 variable of type `type` with `ndim` dims and the given values. */
static nnx_variable *f32_variable(nnx_type_id type, const int64_t *shape, size_t ndim,
                                  const float *values, size_t count) {
    nnx_array *array = NULL;
    nnx_variable *variable = NULL;
    CHECK(nnx_array_new(NNX_DTYPE_F32, shape, ndim, values, count * sizeof(float), &array));
    CHECK(nnx_variable_new(type, array, &variable));
    nnx_array_release(array); /* the variable holds its own reference */
    return variable;
}

/* Puts a float32 variable at a '/'-separated path; the state keeps it. */
static void put(nnx_state *state, const char *path, nnx_type_id type, const int64_t *shape,
                size_t ndim, const float *values, size_t count) {
    nnx_variable *variable = f32_variable(type, shape, ndim, values, count);
    CHECK(nnx_state_set_variable_str(state, path, variable));
    nnx_variable_release(variable);
}

/* Prints a heading and the NNX-like listing of a state. */
static void print_state(const char *heading, const nnx_state *state) {
    char *text = NULL;
    CHECK(nnx_state_to_string(state, &text));
    printf("== %s ==\n%s\n\n", heading, text);
    nnx_string_free(text);
}

/* Writes a flat path as "a/0/b" into buf. */
static void path_to_string(const nnx_key *path, size_t len, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        int n;
        const char *sep = i ? "/" : "";
        if (path[i].kind == NNX_KEY_INT) {
            n = snprintf(buf + used, size - used, "%s%lld", sep, (long long)path[i].int_value);
        } else {
            n = snprintf(buf + used, size - used, "%s%.*s", sep, (int)path[i].str_len,
                         path[i].str);
        }
        EXPECT(n >= 0 && (size_t)n < size - used);
        used += (size_t)n;
    }
}

/* Checks that a state's leaves, in flat (sorted) order, are exactly `expected`. */
static void expect_leaves(const char *what, const nnx_state *state, const char *const *expected,
                          size_t count) {
    nnx_flat *flat = NULL;
    size_t len = 0, leaves = 0;
    CHECK(nnx_state_flatten(state, &flat));
    CHECK(nnx_flat_len(flat, &len));
    CHECK(nnx_state_num_leaves(state, &leaves));
    if (len != count || leaves != count) {
        fprintf(stderr, "%s: %zu flat entries, %zu leaves, expected %zu\n", what, len, leaves,
                count);
        exit(1);
    }
    for (size_t i = 0; i < len; i++) {
        const nnx_key *path = NULL;
        size_t path_len = 0;
        char buf[256];
        CHECK(nnx_flat_path(flat, i, &path, &path_len));
        path_to_string(path, path_len, buf, sizeof buf);
        if (strcmp(buf, expected[i]) != 0) {
            fprintf(stderr, "%s: leaf %zu is %s, expected %s\n", what, i, buf, expected[i]);
            exit(1);
        }
    }
    nnx_flat_free(flat);
    printf("%s: %zu leaves, paths as expected\n", what, count);
}

/* Checks that the float32 value of the variable at `path` equals `want`. */
static void expect_values(const nnx_state *state, const char *path, const float *want,
                          size_t count) {
    nnx_variable *variable = NULL;
    nnx_array *array = NULL;
    const void *data = NULL;
    size_t nbytes = 0;
    nnx_dtype dtype = 0;
    CHECK(nnx_state_get_variable_str(state, path, &variable));
    CHECK(nnx_variable_get_value(variable, &array));
    EXPECT(array != NULL);
    CHECK(nnx_array_dtype(array, &dtype));
    CHECK(nnx_array_nbytes(array, &nbytes));
    CHECK(nnx_array_data(array, &data));
    EXPECT(dtype == NNX_DTYPE_F32);
    EXPECT(nbytes == count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        float got;
        memcpy(&got, (const char *)data + i * sizeof(float), sizeof got);
        if (got != want[i]) {
            fprintf(stderr, "%s[%zu] = %g, expected %g\n", path, i, (double)got,
                    (double)want[i]);
            exit(1);
        }
    }
    nnx_array_release(array);
    nnx_variable_release(variable);
}

/* The data pointer of the value of the variable at `path` (for identity checks). */
static const void *value_data(const nnx_state *state, const char *path) {
    nnx_variable *variable = NULL;
    nnx_array *array = NULL;
    const void *data = NULL;
    CHECK(nnx_state_get_variable_str(state, path, &variable));
    CHECK(nnx_variable_get_value(variable, &array));
    EXPECT(array != NULL);
    CHECK(nnx_array_data(array, &data));
    nnx_array_release(array); /* the variable still holds the array */
    nnx_variable_release(variable);
    return data;
}

int main(void) {
    static const float zeros2[2] = {0, 0}, ones2[2] = {1, 1};
    static const float zeros3[3] = {0, 0, 0}, ones3[3] = {1, 1, 1};
    static const float kernel[6] = {0.5f, -0.25f, 0.125f, -1.0f, 0.75f, 0.0625f};
    static const int64_t shape2[1] = {2}, shape3[1] = {3}, shape23[2] = {2, 3};

    static const char *const all_paths[] = {
        "batchnorm/bias", "batchnorm/mean", "batchnorm/scale",
        "batchnorm/var",  "linear/bias",    "linear/kernel",
    };
    static const char *const param_paths[] = {
        "batchnorm/bias", "batchnorm/scale", "linear/bias", "linear/kernel"};
    static const char *const stat_paths[] = {"batchnorm/mean", "batchnorm/var"};

    printf("nnx_state %s (header %s)\n\n", nnx_version(), NNX_STATE_VERSION);
    EXPECT(strcmp(nnx_version(), NNX_STATE_VERSION) == 0);

    /* state = nnx.state(Model(...)), by hand. */
    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    put(state, "batchnorm/bias", NNX_TYPE_PARAM, shape2, 1, zeros2, 2);
    put(state, "batchnorm/scale", NNX_TYPE_PARAM, shape2, 1, ones2, 2);
    put(state, "batchnorm/mean", NNX_TYPE_BATCH_STAT, shape2, 1, zeros2, 2);
    put(state, "batchnorm/var", NNX_TYPE_BATCH_STAT, shape2, 1, ones2, 2);
    put(state, "linear/bias", NNX_TYPE_PARAM, shape3, 1, zeros3, 3);
    {
        /* The same with an nnx_key path. */
        const nnx_key path[2] = {KEY("linear"), KEY("kernel")};
        nnx_variable *variable = f32_variable(NNX_TYPE_PARAM, shape23, 2, kernel, 6);
        CHECK(nnx_state_set_variable(state, path, 2, variable));
        nnx_variable_release(variable);
    }
    print_state("state", state);
    expect_leaves("state", state, all_paths, 6);
    {
        nnx_variable *variable = NULL;
        nnx_type_id type = 0;
        const nnx_key path[2] = {KEY("batchnorm"), KEY("mean")};
        CHECK(nnx_state_get_variable(state, path, 2, &variable));
        CHECK(nnx_variable_type(variable, &type));
        EXPECT(type == NNX_TYPE_BATCH_STAT);
        nnx_variable_release(variable);
    }

    nnx_filter *param = NULL, *batch_stat = NULL;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    CHECK(nnx_filter_of_type(NNX_TYPE_BATCH_STAT, &batch_stat));
    nnx_filter *both[2] = {param, batch_stat};

    /* (a) filter: state.filter(nnx.Param), (nnx.BatchStat), (nnx.Param, nnx.BatchStat) */
    {
        nnx_state *params = NULL, *stats = NULL, *pair[2] = {NULL, NULL};
        CHECK(nnx_state_filter(state, &both[0], 1, &params));
        CHECK(nnx_state_filter(state, &both[1], 1, &stats));
        print_state("state.filter(nnx.Param)", params);
        expect_leaves("filter(Param)", params, param_paths, 4);
        print_state("state.filter(nnx.BatchStat)", stats);
        expect_leaves("filter(BatchStat)", stats, stat_paths, 2);

        CHECK(nnx_state_filter(state, both, 2, pair));
        print_state("state.filter(nnx.Param, nnx.BatchStat)[0]", pair[0]);
        print_state("state.filter(nnx.Param, nnx.BatchStat)[1]", pair[1]);
        expect_leaves("filter(Param, BatchStat)[0]", pair[0], param_paths, 4);
        expect_leaves("filter(Param, BatchStat)[1]", pair[1], stat_paths, 2);

        /* Outputs hold the very same arrays: no bytes were copied. */
        EXPECT(value_data(params, "linear/kernel") == value_data(state, "linear/kernel"));
        EXPECT(value_data(pair[1], "batchnorm/var") == value_data(state, "batchnorm/var"));

        nnx_state_free(params);
        nnx_state_free(stats);
        nnx_state_free(pair[0]);
        nnx_state_free(pair[1]);
    }

    /* (b) split: params, batch_stats = state.split(nnx.Param, nnx.BatchStat) */
    nnx_state *halves[2] = {NULL, NULL};
    CHECK(nnx_state_split(state, both, 2, halves));
    nnx_state *params = halves[0], *batch_stats = halves[1];
    print_state("params (split)", params);
    print_state("batch_stats (split)", batch_stats);
    expect_leaves("split(Param, BatchStat)[0]", params, param_paths, 4);
    expect_leaves("split(Param, BatchStat)[1]", batch_stats, stat_paths, 2);

    /* (c) params['linear']['bias'][...] += 1, in place, then merge. */
    {
        nnx_variable *bias = NULL;
        nnx_array *value = NULL;
        void *data = NULL;
        CHECK(nnx_state_get_variable_str(params, "linear/bias", &bias));
        CHECK(nnx_variable_get_value(bias, &value));
        EXPECT(value != NULL);
        CHECK(nnx_array_data_mut(value, &data));
        for (size_t i = 0; i < 3; i++) {
            float x;
            memcpy(&x, (char *)data + i * sizeof x, sizeof x);
            x += 1.0f;
            memcpy((char *)data + i * sizeof x, &x, sizeof x);
        }
        nnx_array_release(value);
        nnx_variable_release(bias);
    }
    nnx_state *parts[2] = {params, batch_stats};
    nnx_state *merged = NULL;
    CHECK(nnx_state_merge(parts, 2, &merged));
    print_state("nnx.merge_state(params, batch_stats)", merged);
    expect_leaves("merge(params, batch_stats)", merged, all_paths, 6);
    expect_values(merged, "linear/bias", ones3, 3);
    expect_values(params, "linear/bias", ones3, 3);
    expect_values(state, "linear/bias", ones3, 3); /* variables are shared */
    expect_values(merged, "linear/kernel", kernel, 6);
    expect_values(merged, "batchnorm/var", ones2, 2);
    EXPECT(value_data(merged, "linear/bias") == value_data(state, "linear/bias"));
    printf("linear/bias reads [1, 1, 1] in merged, params and the original state\n");

    nnx_state_free(merged);
    nnx_state_free(params);
    nnx_state_free(batch_stats);
    nnx_filter_free(param);
    nnx_filter_free(batch_stat);
    nnx_state_free(state);
    printf("\nseed_example: OK\n");
    return 0;
}
