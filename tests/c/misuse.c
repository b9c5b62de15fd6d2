/*
 * misuse.c: a C program that misuses the API in every way the library can
 * detect, and checks that each call returns its status, writes no
 * out-pointer and leaves its inputs as they were; and that a split failing
 * midway (a callback that answers 7 after a few leaves) loses nothing.
 *
 * Misuse the library cannot detect is left out: use after free, double
 * free, an out-array shorter than its count, a buffer shorter than its
 * length.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnx_state.h"

#include "check.h"

/* A value no call may write over a failure. */
#define SENTINEL ((void *)(uintptr_t)0x5eed0000u)

static int checks = 0;

/* ---- caller memory lent to the library, with a count of its releases ---- */

static const float DATA[4] = {1.0f, 2.0f, 3.0f, 4.0f};
static int released = 0;

static void on_release(void *user_data) {
    (void)user_data;
    released++;
}

static nnx_array *lent_array(void) {
    const int64_t shape[1] = {4};
    nnx_array *array = NULL;
    CHECK(nnx_array_wrap(NNX_DTYPE_F32, shape, 1, (void *)DATA, sizeof DATA, false,
                         on_release, NULL, &array));
    return array;
}

static nnx_variable *lent_variable(nnx_type_id type) {
    nnx_array *value = lent_array();
    nnx_variable *var = NULL;
    CHECK(nnx_variable_new(type, value, &var));
    nnx_array_release(value);
    return var;
}

static nnx_key str_key(const char *text, size_t len) {
    nnx_key key;
    key.kind = NNX_KEY_STR;
    key.str = text;
    key.str_len = len;
    key.int_value = 0;
    return key;
}

static char *listing(const nnx_state *state) {
    char *text = NULL;
    CHECK(nnx_state_to_string(state, &text));
    return text;
}

/* Asserts that `state` lists as `before` did; frees `before`. */
static void same_listing(const nnx_state *state, char *before) {
    char *now = listing(state);
    if (strcmp(now, before) != 0) {
        fprintf(stderr, "the state changed:\n--- before\n%s\n--- after\n%s\n", before, now);
        exit(1);
    }
    nnx_string_free(now);
    nnx_string_free(before);
    checks++;
}

/* layers/{0,1,2}/{kernel,bias} Params, bn/{mean,var} BatchStats, embed. */
static nnx_state *model(void) {
    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    static const char *const paths[] = {
        "layers/0/kernel", "layers/0/bias", "layers/1/kernel",
        "layers/1/bias",   "layers/2/kernel", "layers/2/bias",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        nnx_variable *var = lent_variable(NNX_TYPE_PARAM);
        CHECK(nnx_state_set_variable_str(state, paths[i], var));
        nnx_variable_release(var);
    }
    nnx_variable *mean = lent_variable(NNX_TYPE_BATCH_STAT);
    nnx_variable *var = lent_variable(NNX_TYPE_BATCH_STAT);
    CHECK(nnx_state_set_variable_str(state, "bn/mean", mean));
    CHECK(nnx_state_set_variable_str(state, "bn/var", var));
    nnx_variable_release(mean);
    nnx_variable_release(var);
    nnx_array *embed = lent_array();
    CHECK(nnx_state_set_array_str(state, "embed", embed));
    nnx_array_release(embed);
    return state;
}

#define MODEL_ARRAYS 9

/* ---- the tests ---- */

static void out_of_range_indexes(nnx_state *state) {
    size_t len = 0;
    CHECK(nnx_state_len(state, &len));
    nnx_key key = str_key("untouched", 9);
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_state_key_at(state, len, &key));
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_state_key_at(state, SIZE_MAX, &key));
    EXPECT(key.str_len == 9);

    nnx_flat *flat = NULL;
    CHECK(nnx_state_flatten(state, &flat));
    CHECK(nnx_flat_len(flat, &len));
    EXPECT(len == 9);
    const nnx_key *path = SENTINEL;
    size_t path_len = 77;
    nnx_kind kind = 77;
    nnx_variable *var = SENTINEL;
    nnx_array *array = SENTINEL;
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_flat_path(flat, len, &path, &path_len));
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_flat_kind(flat, SIZE_MAX, &kind));
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_flat_variable(flat, len, &var));
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_flat_array(flat, len + 100, &array));
    EXPECT(path == SENTINEL && path_len == 77 && kind == 77);
    EXPECT(var == SENTINEL && array == SENTINEL);
    nnx_flat_free(flat);
    checks++;
}

static void key_kinds_that_do_not_exist(nnx_state *state) {
    nnx_variable *var = lent_variable(NNX_TYPE_PARAM);
    const nnx_key_kind kinds[3] = {2, 7, 0xFFFFFFFFu};
    for (int i = 0; i < 3; i++) {
        nnx_key path[2];
        path[0] = str_key("layers", 6);
        path[1] = str_key("x", 1);
        path[1].kind = kinds[i];
        char *before = listing(state);
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable(state, path, 2, var));
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable(state, path + 1, 1, var));
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_remove(state, path, 2));
        nnx_kind kind = 77;
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_get_kind(state, path, 2, &kind));
        EXPECT(kind == 77);
        same_listing(state, before);
        nnx_filter *filter = SENTINEL;
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_filter_path_contains(&path[1], true, &filter));
        nnx_path paths[1];
        paths[0].keys = path;
        paths[0].len = 2;
        CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_filter_path_in(paths, 1, &filter));
        EXPECT(filter == SENTINEL);
    }
    nnx_variable_release(var);
}

static const char *const BAD_UTF8[4] = {"a\xff" "b", "\xc3", "\xed\xa0\x80", "\xc0\xaf"};

static void invalid_utf8(nnx_state *state) {
    nnx_variable *var = lent_variable(NNX_TYPE_PARAM);
    for (int i = 0; i < 4; i++) {
        const char *bad = BAD_UTF8[i];
        nnx_type_id id = 77;
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_type_register(bad, NNX_TYPE_PARAM, &id));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_type_lookup(bad, &id));
        EXPECT(id == 77);
        nnx_filter *filter = SENTINEL;
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_filter_with_tag(bad, &filter));
        EXPECT(filter == SENTINEL);
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_variable_set_metadata_str(var, bad, "v"));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_variable_set_metadata_str(var, "tag", bad));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_variable_set_metadata_int(var, bad, 1));
        char *text = SENTINEL;
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_variable_get_metadata_str(var, bad, &text));
        EXPECT(text == SENTINEL);
        size_t count = 9;
        CHECK(nnx_variable_metadata_count(var, &count));
        EXPECT(count == 0);

        char *before = listing(state);
        nnx_key key[2];
        key[0] = str_key("layers", 6);
        key[1] = str_key(bad, strlen(bad));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_state_set_variable(state, key, 2, var));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_state_set_variable_str(state, bad, var));
        char prefixed[32];
        snprintf(prefixed, sizeof prefixed, "layers/%s", bad);
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_state_set_variable_str(state, prefixed, var));
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_state_remove_str(state, prefixed));
        nnx_kind kind = 77;
        CHECK_FAILS(NNX_ERR_INVALID_UTF8, nnx_state_get_kind_str(state, prefixed, &kind));
        EXPECT(kind == 77);
        same_listing(state, before);
    }
    nnx_variable_release(var);
}

static void empty_strings(void) {
    nnx_type_id id = 77;
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_type_register("", NNX_TYPE_PARAM, &id));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_type_lookup("", &id));
    EXPECT(id == 77);
    nnx_variable *var = lent_variable(NNX_TYPE_PARAM);
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_variable_set_metadata_str(var, "", "v"));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_variable_set_metadata_bool(var, "", true));
    CHECK(nnx_variable_set_metadata_str(var, "tag", ""));

    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    /* The empty key, with no pointer at all. */
    nnx_key empty = str_key(NULL, 0);
    CHECK(nnx_state_set_variable(state, &empty, 1, var));
    nnx_kind kind = 77;
    CHECK(nnx_state_get_kind_str(state, "", &kind));
    EXPECT(kind == NNX_KIND_STATE);
    char *before = listing(state);
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable_str(state, "", var));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_remove_str(state, ""));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable(state, NULL, 0, var));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable_str(state, "a//b", var));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_set_variable_str(state, "/", var));
    same_listing(state, before);

    /* The empty tag selects the variable tagged "". */
    nnx_filter *tag = NULL;
    CHECK(nnx_filter_with_tag("", &tag));
    nnx_state *out[1] = {NULL};
    CHECK(nnx_state_filter(state, &tag, 1, out));
    size_t leaves = 0;
    CHECK(nnx_state_num_leaves(out[0], &leaves));
    EXPECT(leaves == 1);
    nnx_state_free(out[0]);
    nnx_filter_free(tag);
    nnx_state_free(state);
    nnx_variable_release(var);
    checks++;
}

static void bad_shapes(void) {
    static const int64_t negative[2] = {2, -3};
    static const int64_t overflow[2] = {INT64_MAX, 2};
    static const int64_t overflow3[3] = {3, (int64_t)1 << 62, 4};
    static const unsigned char bytes[64] = {0};
    nnx_array *array = SENTINEL;
    int before = released;
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
          nnx_array_new(NNX_DTYPE_F32, negative, 2, bytes, 24, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_array_zeros(NNX_DTYPE_F32, negative, 2, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_array_zeros(NNX_DTYPE_F64, overflow, 2, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_array_zeros(NNX_DTYPE_U8, overflow3, 3, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
          nnx_array_wrap(NNX_DTYPE_F32, negative, 2, (void *)bytes, 24, false, on_release,
                         NULL, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
          nnx_array_wrap(NNX_DTYPE_F64, overflow, 2, (void *)bytes, 16, false, on_release,
                         NULL, &array));
    CHECK_FAILS(NNX_ERR_SHAPE_MISMATCH,
          nnx_array_wrap(NNX_DTYPE_F32, negative + 0, 1, (void *)bytes, 7, false, on_release,
                         NULL, &array));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_array_zeros(999, negative, 1, &array));
    EXPECT(array == SENTINEL);
    EXPECT(released == before); /* a failed wrap never releases */
    /* Too big for memory, though the arithmetic fits: a status, no abort. */
    static const int64_t huge[1] = {(int64_t)1 << 62};
    CHECK_FAILS(NNX_ERR_OUT_OF_MEMORY, nnx_array_zeros(NNX_DTYPE_U8, huge, 1, &array));
    EXPECT(array == SENTINEL);
    checks++;
}

static void null_inside_arrays(nnx_state *state) {
    nnx_filter *param = NULL;
    nnx_filter *rest = NULL;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    CHECK(nnx_filter_everything(&rest));
    nnx_filter *with_null[2] = {param, NULL};
    nnx_state *out[2] = {SENTINEL, SENTINEL};
    char *before = listing(state);
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_state_split(state, with_null, 2, out));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_state_filter(state, with_null, 2, out));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_filter(state, with_null, 0, out));
    EXPECT(out[0] == SENTINEL && out[1] == SENTINEL);
    nnx_filter *filter = SENTINEL;
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_filter_any(with_null, 2, &filter));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_filter_all(with_null, 2, &filter));
    EXPECT(filter == SENTINEL);
    nnx_state *states[2] = {state, NULL};
    nnx_state *merged = SENTINEL;
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_state_merge(states, 2, &merged));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_state_merge(states, 0, &merged));
    EXPECT(merged == SENTINEL);
    same_listing(state, before);
    nnx_filter_free(param);
    nnx_filter_free(rest);
}

/* A callback that answers "is it a Param" for `budget` leaves, then 7. */
struct script {
    int calls;
    int budget;
    int released;
};

static int scripted(void *user_data, const nnx_key *path, size_t path_len, nnx_kind kind,
                    const nnx_variable *variable, const nnx_array *array) {
    struct script *s = user_data;
    (void)path;
    (void)path_len;
    (void)array;
    if (s->calls++ >= s->budget) return 7;
    if (kind != NNX_KIND_VARIABLE) return 0;
    nnx_type_id type = NNX_TYPE_NONE;
    if (nnx_variable_type(variable, &type) != NNX_OK) return 9;
    return type == NNX_TYPE_PARAM;
}

static void script_release(void *user_data) {
    ((struct script *)user_data)->released++;
}

static void split_failing_midway(nnx_state *state) {
    for (int budget = 0; budget < 7; budget += 2) {
        struct script s = {0, budget, 0};
        nnx_filter *filters[3] = {NULL, NULL, NULL};
        CHECK(nnx_filter_of_type(NNX_TYPE_BATCH_STAT, &filters[0]));
        CHECK(nnx_filter_callback(scripted, &s, script_release, &filters[1]));
        CHECK(nnx_filter_everything(&filters[2]));
        nnx_state *out[3] = {SENTINEL, SENTINEL, SENTINEL};
        char *before = listing(state);
        size_t leaves_before = 0;
        CHECK(nnx_state_num_leaves(state, &leaves_before));
        CHECK_FAILS(NNX_ERR_CALLBACK, nnx_state_split(state, filters, 3, out));
        EXPECT(strstr(nnx_last_error_message(), "7") != NULL);
        EXPECT(s.calls == budget + 1);
        EXPECT(out[0] == SENTINEL && out[1] == SENTINEL && out[2] == SENTINEL);
        same_listing(state, before);
        size_t leaves_after = 0;
        CHECK(nnx_state_num_leaves(state, &leaves_after));
        EXPECT(leaves_after == leaves_before);
        EXPECT(released == 0); /* no leaf was dropped on the way */
        for (int i = 0; i < 3; i++) nnx_filter_free(filters[i]);
        EXPECT(s.released == 1);
    }
    /* Not exhaustive: nothing written either. */
    nnx_filter *param = NULL;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    nnx_state *out[1] = {SENTINEL};
    char *before = listing(state);
    CHECK_FAILS(NNX_ERR_NON_EXHAUSTIVE, nnx_state_split(state, &param, 1, out));
    EXPECT(strncmp(nnx_last_error_message(), "Non-exhaustive filters", 22) == 0);
    EXPECT(out[0] == SENTINEL);
    same_listing(state, before);
    nnx_filter_free(param);
}

static void failed_writes_lose_nothing(nnx_state *state) {
    nnx_variable *var = lent_variable(NNX_TYPE_PARAM);
    nnx_state *view = NULL;
    CHECK(nnx_state_get_state_str(state, "layers/1", &view));
    char *before = listing(state);
    CHECK_FAILS(NNX_ERR_PATH_THROUGH_LEAF, nnx_state_set_variable_str(state, "embed/x", var));
    CHECK_FAILS(NNX_ERR_PATH_THROUGH_LEAF, nnx_state_set_state_str(state, "bn/mean/x", view));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_remove_str(state, "layers/9"));
    CHECK_FAILS(NNX_ERR_PATH_THROUGH_LEAF, nnx_state_remove_str(state, "embed/0"));
    same_listing(state, before);

    /* A view whose place is gone, on either side of an update. */
    nnx_state *copy = NULL;
    CHECK(nnx_state_clone(state, &copy));
    nnx_state *gone = NULL;
    CHECK(nnx_state_get_state_str(copy, "bn", &gone));
    CHECK(nnx_state_remove_str(copy, "bn"));
    before = listing(state);
    char *copy_before = listing(copy);
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_update(gone, state));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_update(state, gone));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_set_state_str(state, "x", gone));
    same_listing(state, before);
    same_listing(copy, copy_before);
    nnx_state_free(gone);
    nnx_state_free(copy);
    nnx_state_free(view);
    nnx_variable_release(var);
    EXPECT(released == 1); /* only the variable made here */
    released = 0;
}

int main(void) {
    nnx_state *state = model();
    out_of_range_indexes(state);
    key_kinds_that_do_not_exist(state);
    invalid_utf8(state);
    null_inside_arrays(state);
    EXPECT(released == 2); /* the two variables made by the tests above */
    released = 0;
    split_failing_midway(state);
    failed_writes_lose_nothing(state);
    nnx_state_free(state);
    EXPECT(released == MODEL_ARRAYS); /* every leaf given back once */
    released = 0;
    empty_strings();
    bad_shapes();
    EXPECT(released == 1);
    printf("misuse: %d checks passed; every lent buffer given back once\n", checks);
    return 0;
}
