/*
 * custom_types.c: a user-registered variable type (QuantParam < Param),
 * tags, int keys and bare arrays, and every kind of filter, including a
 * caller's callback; then the errors of filter and split, a flat walk and
 * diff. Every result is checked; the program exits non-zero on any mismatch
 * and frees everything it made.
 */

#include <stdbool.h>
#include <stdint.h>
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

/* Exits unless a call fails with exactly `want`. */
#define CHECK_FAILS(want, call)                                             \
    do {                                                                    \
        nnx_status check_status_ = (call);                                  \
        if (check_status_ != (want)) {                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n",         \
                    __FILE__, __LINE__, #call,                              \
                    nnx_status_name((int32_t)check_status_),                \
                    nnx_status_name((int32_t)(want)));                      \
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

/* Keys: a string key from a string literal, and an int key. */
#define KEY(s) ((nnx_key){.kind = NNX_KEY_STR, .str = (s), .str_len = sizeof(s) - 1, .int_value = 0})
#define IKEY(i) ((nnx_key){.kind = NNX_KEY_INT, .str = NULL, .str_len = 0, .int_value = (i)})

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Writes a path as "a/0/b" into buf; a string key that looks like an int
 * is quoted ("head/'0'/kernel") so int and str keys can be told apart. */
static void path_to_string(const nnx_key *path, size_t len, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        int n;
        const char *sep = i ? "/" : "";
        if (path[i].kind == NNX_KEY_INT) {
            n = snprintf(buf + used, size - used, "%s%lld", sep, (long long)path[i].int_value);
        } else {
            bool digits = path[i].str_len > 0;
            for (size_t j = 0; j < path[i].str_len; j++) {
                digits = digits && path[i].str[j] >= '0' && path[i].str[j] <= '9';
            }
            n = snprintf(buf + used, size - used, digits ? "%s'%.*s'" : "%s%.*s", sep,
                         (int)path[i].str_len, path[i].str);
        }
        EXPECT(n >= 0 && (size_t)n < size - used);
        used += (size_t)n;
    }
}

/* Checks that a state's leaves, in flat (sorted) order, are exactly `expected`. */
static void expect_leaves(const char *what, const nnx_state *state, const char *const *expected,
                          size_t count) {
    nnx_flat *flat = NULL;
    size_t len = 0;
    CHECK(nnx_state_flatten(state, &flat));
    CHECK(nnx_flat_len(flat, &len));
    printf("%-40s ->", what);
    for (size_t i = 0; i < len; i++) {
        const nnx_key *path = NULL;
        size_t path_len = 0;
        char buf[256];
        CHECK(nnx_flat_path(flat, i, &path, &path_len));
        path_to_string(path, path_len, buf, sizeof buf);
        printf(" %s", buf);
        if (i >= count || strcmp(buf, expected[i]) != 0) {
            fprintf(stderr, "\n%s: leaf %zu is %s, expected %s\n", what, i, buf,
                    i < count ? expected[i] : "(nothing)");
            exit(1);
        }
    }
    printf("%s\n", len ? "" : " (nothing)");
    if (len != count) {
        fprintf(stderr, "%s: %zu leaves, expected %zu\n", what, len, count);
        exit(1);
    }
    nnx_flat_free(flat);
}

/* filter(state, f) with one filter, checked against `expected`; frees f. */
static void expect_filter(const char *what, const nnx_state *state, nnx_filter *filter,
                          const char *const *expected, size_t count) {
    nnx_filter *filters[1] = {filter};
    nnx_state *out = NULL;
    CHECK(nnx_state_filter(state, filters, 1, &out));
    expect_leaves(what, out, expected, count);
    nnx_state_free(out);
    nnx_filter_free(filter);
}

/* Puts a new variable of `type` with an array value at a '/'-separated path;
 * returns a borrowed pointer (the state keeps the variable alive). */
static const nnx_variable *put(nnx_state *state, const char *path, nnx_type_id type,
                               nnx_dtype dtype, const int64_t *shape, size_t ndim,
                               const void *data, size_t nbytes) {
    nnx_array *array = NULL;
    nnx_variable *variable = NULL;
    CHECK(nnx_array_new(dtype, shape, ndim, data, nbytes, &array));
    CHECK(nnx_variable_new(type, array, &variable));
    nnx_array_release(array);
    CHECK(nnx_state_set_variable_str(state, path, variable));
    nnx_variable_release(variable);
    return variable;
}

/* What the callback filter below counts. */
struct callback_data {
    int calls;    /* leaves asked about */
    int releases; /* times the library let go of this struct */
};

/* Matches variables whose value is 2-D (a kernel); bare arrays never. */
static int is_matrix(void *user_data, const nnx_key *path, size_t path_len, nnx_kind kind,
                     const nnx_variable *variable, const nnx_array *array) {
    struct callback_data *data = user_data;
    nnx_array *value = NULL;
    size_t ndim = 0;
    (void)path;
    data->calls++;
    if (path_len == 0) {
        return 2; /* never happens: leaves have non-empty paths */
    }
    if (kind != NNX_KIND_VARIABLE) {
        return array != NULL && variable == NULL ? 0 : 2;
    }
    /* The library may be called from a callback. */
    if (nnx_variable_get_value(variable, &value) != NNX_OK || value == NULL) {
        return 2;
    }
    if (nnx_array_ndim(value, &ndim) != NNX_OK) {
        ndim = 0;
    }
    nnx_array_release(value);
    return ndim == 2;
}

static void count_release(void *user_data) {
    ((struct callback_data *)user_data)->releases++;
}

/* A callback that answers neither 0 nor 1. */
static int broken(void *user_data, const nnx_key *path, size_t path_len, nnx_kind kind,
                  const nnx_variable *variable, const nnx_array *array) {
    (void)user_data, (void)path, (void)path_len, (void)kind, (void)variable, (void)array;
    return 7;
}

int main(void) {
    /* -- the type registry -------------------------------------------- */
    nnx_type_id quant = 0, again = 0, found = 0, parent = 0;
    const char *name = NULL;
    bool is_sub = false;
    CHECK(nnx_type_register("QuantParam", NNX_TYPE_PARAM, &quant));
    CHECK(nnx_type_register("QuantParam", NNX_TYPE_PARAM, &again));
    EXPECT(again == quant);
    printf("registered QuantParam < Param as type %u; registering again gives %u\n",
           (unsigned)quant, (unsigned)again);
    again = 12345;
    CHECK_FAILS(NNX_ERR_TYPE_CONFLICT, nnx_type_register("QuantParam", NNX_TYPE_BATCH_STAT, &again));
    EXPECT(again == 12345); /* out-pointers are written on success only */
    printf("registering QuantParam < BatchStat: %s (%s)\n",
           nnx_status_name(NNX_ERR_TYPE_CONFLICT), nnx_last_error_message());
    CHECK_FAILS(NNX_ERR_UNKNOWN_TYPE, nnx_type_register("Orphan", 999999, &again));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_type_register("", NNX_TYPE_PARAM, &again));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_type_register(NULL, NNX_TYPE_PARAM, &again));
    CHECK(nnx_type_lookup("QuantParam", &found));
    EXPECT(found == quant);
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_type_lookup("NoSuchType", &found));
    CHECK(nnx_type_name(quant, &name));
    EXPECT(strcmp(name, "QuantParam") == 0);
    CHECK(nnx_type_parent(quant, &parent));
    EXPECT(parent == NNX_TYPE_PARAM);
    CHECK(nnx_type_parent(NNX_TYPE_VARIABLE, &parent));
    EXPECT(parent == NNX_TYPE_NONE);
    CHECK(nnx_type_is_subtype(quant, NNX_TYPE_PARAM, &is_sub));
    EXPECT(is_sub);
    CHECK(nnx_type_is_subtype(quant, NNX_TYPE_VARIABLE, &is_sub));
    EXPECT(is_sub);
    CHECK(nnx_type_is_subtype(NNX_TYPE_PARAM, quant, &is_sub));
    EXPECT(!is_sub);

    /* -- a state ----------------------------------------------------- */
    static const int8_t qkernel[4] = {12, -7, 3, 127};
    static const float bias[2] = {0.5f, -0.5f}, mean[2] = {0.0f, 0.25f};
    static const float kernel[4] = {1, 2, 3, 4}, embed[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    static const uint32_t rng_key[2] = {0, 42}, rng_count[1] = {3};
    static const int64_t s2[1] = {2}, s22[2] = {2, 2}, s4[1] = {4};

    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    const nnx_variable *q0 = put(state, "layers/0/kernel", quant, NNX_DTYPE_I8, s22, 2,
                                 qkernel, sizeof qkernel);
    CHECK(nnx_variable_set_metadata_float(q0, "scale", 0.05));
    put(state, "layers/0/bias", NNX_TYPE_PARAM, NNX_DTYPE_F32, s2, 1, bias, sizeof bias);
    put(state, "layers/0/mean", NNX_TYPE_BATCH_STAT, NNX_DTYPE_F32, s2, 1, mean, sizeof mean);
    put(state, "layers/1/kernel", quant, NNX_DTYPE_I8, s22, 2, qkernel, sizeof qkernel);
    put(state, "layers/1/bias", NNX_TYPE_PARAM, NNX_DTYPE_F32, s2, 1, bias, sizeof bias);
    const nnx_variable *key = put(state, "layers/1/rng/key", NNX_TYPE_RNG_KEY, NNX_DTYPE_U32,
                                  s2, 1, rng_key, sizeof rng_key);
    const nnx_variable *count = put(state, "layers/1/rng/count", NNX_TYPE_RNG_COUNT,
                                    NNX_DTYPE_U32, NULL, 0, rng_count, sizeof rng_count);
    CHECK(nnx_variable_set_metadata_str(key, "tag", "dropout"));
    CHECK(nnx_variable_set_metadata_str(count, "tag", "dropout"));
    {
        /* head/"0"/kernel: a string key "0", which a '/'-path would make an int. */
        const nnx_key path[3] = {KEY("head"), KEY("0"), KEY("kernel")};
        nnx_array *array = NULL;
        nnx_variable *variable = NULL;
        CHECK(nnx_array_new(NNX_DTYPE_F32, s22, 2, kernel, sizeof kernel, &array));
        CHECK(nnx_variable_new(NNX_TYPE_PARAM, array, &variable));
        CHECK(nnx_state_set_variable(state, path, 3, variable));
        nnx_variable_release(variable);
        nnx_array_release(array);
        /* embed: a bare array. */
        CHECK(nnx_array_new(NNX_DTYPE_F32, s4, 1, embed, sizeof embed, &array));
        CHECK(nnx_state_set_array_str(state, "embed", array));
        nnx_array_release(array);
    }
    {
        char *tag = NULL;
        double scale = 0;
        CHECK(nnx_variable_tag(key, &tag));
        EXPECT(tag != NULL && strcmp(tag, "dropout") == 0);
        nnx_string_free(tag);
        CHECK(nnx_variable_tag(q0, &tag));
        EXPECT(tag == NULL);
        CHECK(nnx_variable_get_metadata_float(q0, "scale", &scale));
        EXPECT(scale == 0.05);
        CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_variable_get_metadata_str(q0, "scale", &tag));
    }
    {
        char *text = NULL;
        CHECK(nnx_state_to_string(state, &text));
        printf("\n== state ==\n%s\n\n", text);
        nnx_string_free(text);
    }

    static const char *const all[] = {
        "embed",         "head/'0'/kernel", "layers/0/bias",      "layers/0/kernel",
        "layers/0/mean", "layers/1/bias",   "layers/1/kernel",    "layers/1/rng/count",
        "layers/1/rng/key",
    };
    expect_leaves("flatten (sorted: ints < strs)", state, all, COUNT(all));

    /* -- filters ----------------------------------------------------- */
    nnx_filter *f = NULL;
    {
        static const char *const want[] = {"layers/0/kernel", "layers/1/kernel"};
        CHECK(nnx_filter_of_type(quant, &f));
        expect_filter("of_type(QuantParam)", state, f, want, COUNT(want));
    }
    {
        static const char *const want[] = {"head/'0'/kernel", "layers/0/bias", "layers/0/kernel",
                                           "layers/1/bias", "layers/1/kernel"};
        CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &f));
        expect_filter("of_type(Param) (QuantParam is a Param)", state, f, want, COUNT(want));
    }
    {
        /* filter(QuantParam, Param): each leaf goes to the first match. */
        static const char *const want0[] = {"layers/0/kernel", "layers/1/kernel"};
        static const char *const want1[] = {"head/'0'/kernel", "layers/0/bias", "layers/1/bias"};
        nnx_filter *q = NULL, *p = NULL;
        nnx_state *out[2] = {NULL, NULL};
        CHECK(nnx_filter_of_type(quant, &q));
        CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &p));
        nnx_filter *filters[2] = {q, p};
        CHECK(nnx_state_filter(state, filters, 2, out));
        expect_leaves("filter(QuantParam, Param)[0]", out[0], want0, COUNT(want0));
        expect_leaves("filter(QuantParam, Param)[1]", out[1], want1, COUNT(want1));
        nnx_state_free(out[0]);
        nnx_state_free(out[1]);
        nnx_filter_free(q);
        nnx_filter_free(p);
    }
    {
        static const char *const want[] = {"layers/1/rng/count", "layers/1/rng/key"};
        CHECK(nnx_filter_with_tag("dropout", &f));
        expect_filter("with_tag(\"dropout\")", state, f, want, COUNT(want));
        CHECK(nnx_filter_with_tag("params", &f));
        expect_filter("with_tag(\"params\")", state, f, NULL, 0);
    }
    {
        static const char *const want_int[] = {"layers/0/bias", "layers/0/kernel",
                                               "layers/0/mean"};
        static const char *const want_str[] = {"head/'0'/kernel"};
        static const char *const want_sub[] = {"head/'0'/kernel", "layers/0/bias",
                                               "layers/0/kernel", "layers/0/mean"};
        static const char *const want_ern[] = {"head/'0'/kernel", "layers/0/kernel",
                                               "layers/1/kernel"};
        const nnx_key int0 = IKEY(0), str0 = KEY("0"), ern = KEY("ern"), kern = KEY("kernel");
        CHECK(nnx_filter_path_contains(&int0, true, &f));
        expect_filter("path_contains(0, exact)", state, f, want_int, COUNT(want_int));
        CHECK(nnx_filter_path_contains(&str0, true, &f));
        expect_filter("path_contains(\"0\", exact)", state, f, want_str, COUNT(want_str));
        CHECK(nnx_filter_path_contains(&str0, false, &f));
        expect_filter("path_contains(\"0\", substring)", state, f, want_sub, COUNT(want_sub));
        CHECK(nnx_filter_path_contains(&int0, false, &f));
        expect_filter("path_contains(0, substring)", state, f, want_sub, COUNT(want_sub));
        CHECK(nnx_filter_path_contains(&ern, false, &f));
        expect_filter("path_contains(\"ern\", substring)", state, f, want_ern, COUNT(want_ern));
        CHECK(nnx_filter_path_contains(&ern, true, &f));
        expect_filter("path_contains(\"ern\", exact)", state, f, NULL, 0);
        CHECK(nnx_filter_path_contains(&kern, true, &f));
        expect_filter("path_contains(\"kernel\", exact)", state, f, want_ern, COUNT(want_ern));
    }
    {
        static const char *const want[] = {"embed", "layers/0/bias"};
        const nnx_key p0[3] = {KEY("layers"), IKEY(0), KEY("bias")};
        const nnx_key p1[1] = {KEY("embed")};
        const nnx_key p2[3] = {KEY("layers"), KEY("0"), KEY("bias")}; /* str "0": no match */
        const nnx_key p3[2] = {KEY("layers"), IKEY(1)};               /* a subtree: no match */
        const nnx_path paths[4] = {{p0, 3}, {p1, 1}, {p2, 3}, {p3, 2}};
        CHECK(nnx_filter_path_in(paths, 4, &f));
        expect_filter("path_in(layers/0/bias, embed, ...)", state, f, want, COUNT(want));
    }
    {
        nnx_filter *tag = NULL, *stat = NULL, *param = NULL, *one = NULL, *variable = NULL;
        const nnx_key int1 = IKEY(1);
        CHECK(nnx_filter_with_tag("dropout", &tag));
        CHECK(nnx_filter_of_type(NNX_TYPE_BATCH_STAT, &stat));
        CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
        CHECK(nnx_filter_path_contains(&int1, true, &one));
        CHECK(nnx_filter_of_type(NNX_TYPE_VARIABLE, &variable));

        static const char *const want_any[] = {"layers/0/mean", "layers/1/rng/count",
                                               "layers/1/rng/key"};
        nnx_filter *any_parts[2] = {tag, stat};
        CHECK(nnx_filter_any(any_parts, 2, &f));
        expect_filter("any(with_tag(dropout), BatchStat)", state, f, want_any, COUNT(want_any));

        static const char *const want_all[] = {"layers/1/bias", "layers/1/kernel"};
        nnx_filter *all_parts[2] = {param, one};
        CHECK(nnx_filter_all(all_parts, 2, &f));
        /* The parts were copied: freeing them now does not affect f. */
        nnx_filter_free(param);
        nnx_filter_free(one);
        expect_filter("all(Param, path_contains(1))", state, f, want_all, COUNT(want_all));

        static const char *const want_not[] = {"embed"};
        CHECK(nnx_filter_not(variable, &f));
        expect_filter("not(Variable) (bare arrays)", state, f, want_not, COUNT(want_not));

        CHECK(nnx_filter_any(NULL, 0, &f));
        expect_filter("any() matches nothing", state, f, NULL, 0);
        CHECK(nnx_filter_all(NULL, 0, &f));
        expect_filter("all() matches everything", state, f, all, COUNT(all));
        CHECK(nnx_filter_nothing(&f));
        expect_filter("nothing", state, f, NULL, 0);

        nnx_filter_free(tag);
        nnx_filter_free(stat);
        nnx_filter_free(variable);
    }

    /* -- a caller's callback ---------------------------------------- */
    {
        static const char *const want[] = {"head/'0'/kernel", "layers/0/kernel",
                                           "layers/1/kernel"};
        struct callback_data data = {0, 0};
        nnx_filter *callback = NULL, *copy = NULL, *negated = NULL, *composite = NULL;
        nnx_state *out = NULL;
        CHECK(nnx_filter_callback(is_matrix, &data, count_release, &callback));
        CHECK(nnx_filter_clone(callback, &copy));
        CHECK(nnx_filter_not(callback, &negated));
        nnx_filter *parts[2] = {negated, copy};
        CHECK(nnx_filter_all(parts, 2, &composite)); /* not(cb) and cb: never */
        nnx_filter_free(callback);                   /* copies remain */
        EXPECT(data.releases == 0);

        nnx_filter *filters[1] = {copy};
        CHECK(nnx_state_filter(state, filters, 1, &out));
        expect_leaves("callback(value is 2-D)", out, want, COUNT(want));
        nnx_state_free(out);
        EXPECT(data.calls == (int)COUNT(all)); /* asked once per leaf */
        filters[0] = composite;
        CHECK(nnx_state_filter(state, filters, 1, &out));
        expect_leaves("all(not(callback), callback)", out, NULL, 0);
        nnx_state_free(out);

        nnx_filter_free(copy);
        EXPECT(data.releases == 0);
        nnx_filter_free(negated);
        EXPECT(data.releases == 0);
        nnx_filter_free(composite); /* the last copy */
        EXPECT(data.releases == 1);
        printf("callback: asked %d times, released exactly once after the last copy\n",
               data.calls);

        /* A callback answering 7 fails the operation; release is optional. */
        CHECK(nnx_filter_callback(broken, NULL, NULL, &f));
        filters[0] = f;
        out = NULL;
        CHECK_FAILS(NNX_ERR_CALLBACK, nnx_state_filter(state, filters, 1, &out));
        EXPECT(out == NULL);
        printf("a callback answering 7: %s (%s)\n", nnx_status_name(NNX_ERR_CALLBACK),
               nnx_last_error_message());
        nnx_filter_free(f);
        CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_filter_callback(NULL, NULL, count_release, &f));
    }

    /* -- filter order and exhaustiveness ---------------------------- */
    {
        nnx_filter *everything = NULL, *param = NULL, *stat = NULL, *wrapped = NULL;
        nnx_state *out[3] = {NULL, NULL, NULL};
        CHECK(nnx_filter_everything(&everything));
        CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
        CHECK(nnx_filter_of_type(NNX_TYPE_BATCH_STAT, &stat));
        nnx_filter *eparts[1] = {everything};
        CHECK(nnx_filter_any(eparts, 1, &wrapped));

        nnx_filter *misplaced[2] = {everything, param};
        CHECK_FAILS(NNX_ERR_FILTER_ORDER, nnx_state_filter(state, misplaced, 2, out));
        EXPECT(out[0] == NULL && out[1] == NULL);
        printf("\nfilter(..., Param): %s (%s)\n", nnx_status_name(NNX_ERR_FILTER_ORDER),
               nnx_last_error_message());
        CHECK_FAILS(NNX_ERR_FILTER_ORDER, nnx_state_split(state, misplaced, 2, out));

        /* Everything last, or only Everything after it, is fine; so is an
         * Everything wrapped in any() (NNX's Everything() instance). */
        nnx_filter *trailing[3] = {param, everything, everything};
        CHECK(nnx_state_filter(state, trailing, 3, out));
        expect_leaves("filter(Param, ..., ...)[2]", out[2], NULL, 0);
        for (int i = 0; i < 3; i++) nnx_state_free(out[i]);
        nnx_filter *escaped[2] = {wrapped, param};
        CHECK(nnx_state_filter(state, escaped, 2, out));
        expect_leaves("filter(any(...), Param)[0]", out[0], all, COUNT(all));
        expect_leaves("filter(any(...), Param)[1]", out[1], NULL, 0);
        nnx_state_free(out[0]);
        nnx_state_free(out[1]);

        nnx_filter *partial[2] = {param, stat};
        out[0] = out[1] = NULL;
        CHECK_FAILS(NNX_ERR_NON_EXHAUSTIVE, nnx_state_split(state, partial, 2, out));
        EXPECT(out[0] == NULL && out[1] == NULL);
        printf("split(Param, BatchStat): %s (%s)\n", nnx_status_name(NNX_ERR_NON_EXHAUSTIVE),
               nnx_last_error_message());
        /* The message names the first unmatched path in flat order. */
        EXPECT(strstr(nnx_last_error_message(), "embed") != NULL);
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_split(state, partial, 0, out));

        static const char *const want0[] = {"head/'0'/kernel", "layers/0/bias",
                                            "layers/0/kernel", "layers/1/bias",
                                            "layers/1/kernel"};
        static const char *const want1[] = {"layers/0/mean"};
        static const char *const want2[] = {"embed", "layers/1/rng/count", "layers/1/rng/key"};
        nnx_filter *complete[3] = {param, stat, everything};
        CHECK(nnx_state_split(state, complete, 3, out));
        expect_leaves("split(Param, BatchStat, ...)[0]", out[0], want0, COUNT(want0));
        expect_leaves("split(Param, BatchStat, ...)[1]", out[1], want1, COUNT(want1));
        expect_leaves("split(Param, BatchStat, ...)[2]", out[2], want2, COUNT(want2));

        /* diff(state, params): the leaves of state not in params. */
        static const char *const want_diff[] = {"embed", "layers/0/mean", "layers/1/rng/count",
                                                "layers/1/rng/key"};
        nnx_state *rest = NULL, *none = NULL, *empty = NULL, *whole = NULL;
        CHECK(nnx_state_diff(state, out[0], &rest));
        expect_leaves("diff(state, params)", rest, want_diff, COUNT(want_diff));
        CHECK(nnx_state_diff(state, state, &none));
        expect_leaves("diff(state, state)", none, NULL, 0);
        CHECK(nnx_state_new(&empty));
        CHECK(nnx_state_diff(state, empty, &whole));
        expect_leaves("diff(state, {})", whole, all, COUNT(all));
        nnx_state_free(rest);
        nnx_state_free(none);
        nnx_state_free(empty);
        nnx_state_free(whole);

        for (int i = 0; i < 3; i++) nnx_state_free(out[i]);
        nnx_filter_free(everything);
        nnx_filter_free(param);
        nnx_filter_free(stat);
        nnx_filter_free(wrapped);
    }

    /* -- a flat walk -------------------------------------------------- */
    {
        nnx_flat *flat = NULL;
        size_t len = 0, variables = 0, arrays = 0;
        CHECK(nnx_state_flatten(state, &flat));
        CHECK(nnx_flat_len(flat, &len));
        EXPECT(len == COUNT(all));
        printf("\nflat walk:\n");
        for (size_t i = 0; i < len; i++) {
            const nnx_key *path = NULL;
            size_t path_len = 0;
            nnx_kind kind = 0;
            char buf[256];
            CHECK(nnx_flat_path(flat, i, &path, &path_len));
            CHECK(nnx_flat_kind(flat, i, &kind));
            path_to_string(path, path_len, buf, sizeof buf);
            EXPECT(strcmp(buf, all[i]) == 0);
            /* Handed-out string keys are NUL-terminated too. */
            for (size_t k = 0; k < path_len; k++) {
                EXPECT(path[k].kind == NNX_KEY_INT || path[k].str[path[k].str_len] == '\0');
            }
            if (kind == NNX_KIND_VARIABLE) {
                nnx_variable *variable = NULL; /* borrowed from the flat */
                nnx_type_id type = 0;
                const char *type_name = NULL;
                char *tag = NULL;
                CHECK(nnx_flat_variable(flat, i, &variable));
                CHECK(nnx_variable_type(variable, &type));
                CHECK(nnx_type_name(type, &type_name));
                CHECK(nnx_variable_tag(variable, &tag));
                printf("  %-22s %s%s%s\n", buf, type_name, tag ? " tag=" : "", tag ? tag : "");
                nnx_string_free(tag);
                CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_flat_array(flat, i, &(nnx_array *){NULL}));
                variables++;
            } else {
                nnx_array *array = NULL; /* borrowed from the flat */
                size_t nbytes = 0;
                EXPECT(kind == NNX_KIND_ARRAY);
                CHECK(nnx_flat_array(flat, i, &array));
                CHECK(nnx_array_nbytes(array, &nbytes));
                printf("  %-22s bare array, %zu bytes\n", buf, nbytes);
                arrays++;
            }
        }
        EXPECT(variables == 8 && arrays == 1);
        CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_flat_kind(flat, len, &(nnx_kind){0}));
        nnx_flat_free(flat);
    }

    nnx_state_free(state);
    printf("\ncustom_types: OK\n");
    return 0;
}
