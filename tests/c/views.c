/*
 * views.c: nested live views (nnx_state_get_state), keys lent by
 * nnx_state_key_at, views whose nested state is replaced or removed,
 * nnx_state_update, nnx_state_from_flat with nnx_flat_push_*, and the two
 * copies: nnx_state_clone (structure copied, leaves shared) and
 * nnx_state_deep_copy (everything copied).
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnx_state.h"

#include "check.h"

/* A new float32 scalar array, owned by the caller. */
static nnx_array *scalar(float x) {
    nnx_array *array = NULL;
    CHECK(nnx_array_new(NNX_DTYPE_F32, NULL, 0, &x, sizeof x, &array));
    return array;
}

/* A new variable of `type` holding the scalar x, owned by the caller. */
static nnx_variable *variable(nnx_type_id type, float x) {
    nnx_array *array = scalar(x);
    nnx_variable *v = NULL;
    CHECK(nnx_variable_new(type, array, &v));
    nnx_array_release(array);
    return v;
}

static void put(nnx_state *state, const char *path, nnx_type_id type, float x) {
    nnx_variable *v = variable(type, x);
    CHECK(nnx_state_set_variable_str(state, path, v));
    nnx_variable_release(v);
}

/* The scalar held at `path`: a variable's value or a bare array. */
static float read_scalar(const nnx_state *state, const char *path) {
    nnx_kind kind = 0;
    nnx_array *array = NULL;
    const void *data = NULL;
    float x;
    CHECK(nnx_state_get_kind_str(state, path, &kind));
    if (kind == NNX_KIND_VARIABLE) {
        nnx_variable *v = NULL;
        CHECK(nnx_state_get_variable_str(state, path, &v));
        CHECK(nnx_variable_get_value(v, &array));
        nnx_variable_release(v);
    } else {
        EXPECT(kind == NNX_KIND_ARRAY);
        CHECK(nnx_state_get_array_str(state, path, &array));
    }
    EXPECT(array != NULL);
    CHECK(nnx_array_data(array, &data));
    memcpy(&x, data, sizeof x);
    nnx_array_release(array);
    return x;
}

/* The data pointer of the value at `path` (arrays live on in `state`). */
static const void *data_at(const nnx_state *state, const char *path) {
    nnx_variable *v = NULL;
    nnx_array *array = NULL;
    const void *data = NULL;
    CHECK(nnx_state_get_variable_str(state, path, &v));
    CHECK(nnx_variable_get_value(v, &array));
    CHECK(nnx_array_data(array, &data));
    nnx_array_release(array);
    nnx_variable_release(v);
    return data;
}

static bool contains(const nnx_state *state, const char *path) {
    bool yes = false;
    CHECK(nnx_state_contains_str(state, path, &yes));
    return yes;
}

/* Checks the top-level keys of a state (string keys as text, ints as "#n"). */
static void expect_keys(const nnx_state *state, const char *const *keys, size_t count) {
    size_t len = 0;
    CHECK(nnx_state_len(state, &len));
    EXPECT(len == count);
    for (size_t i = 0; i < count; i++) {
        nnx_key key;
        char buf[64];
        CHECK(nnx_state_key_at(state, i, &key));
        if (key.kind == NNX_KEY_INT) {
            snprintf(buf, sizeof buf, "#%lld", (long long)key.int_value);
        } else {
            EXPECT(key.kind == NNX_KEY_STR);
            EXPECT(key.str[key.str_len] == '\0'); /* NUL-terminated */
            EXPECT(strlen(key.str) == key.str_len);
            snprintf(buf, sizeof buf, "%s", key.str);
        }
        if (strcmp(buf, keys[i]) != 0) {
            fprintf(stderr, "key %zu is %s, expected %s\n", i, buf, keys[i]);
            exit(1);
        }
    }
    nnx_key key;
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_state_key_at(state, count, &key));
}

/* s = {a: {b: {c: Param 1, d: Param 2}, e: 3 (bare)}, f: BatchStat 4,
 *      layers: {0: {w: Param 5}, 1: {w: Param 6}}} */
static nnx_state *sample(void) {
    nnx_state *s = NULL;
    nnx_array *e = scalar(3);
    CHECK(nnx_state_new(&s));
    put(s, "a/b/c", NNX_TYPE_PARAM, 1);
    put(s, "a/b/d", NNX_TYPE_PARAM, 2);
    CHECK(nnx_state_set_array_str(s, "a/e", e));
    nnx_array_release(e);
    put(s, "f", NNX_TYPE_BATCH_STAT, 4);
    put(s, "layers/0/w", NNX_TYPE_PARAM, 5);
    put(s, "layers/1/w", NNX_TYPE_PARAM, 6);
    return s;
}

static void test_views(void) {
    nnx_state *s = sample(), *va = NULL, *vab = NULL, *whole = NULL, *layers = NULL;
    nnx_variable *x = variable(NNX_TYPE_PARAM, 7), *c = NULL;
    nnx_array *ten = scalar(10);
    nnx_kind kind = 0;

    CHECK(nnx_state_get_state_str(s, "a", &va));
    CHECK(nnx_state_get_state_str(va, "b", &vab)); /* a view of a view */
    {
        static const char *const keys[] = {"a", "f", "layers"};
        static const char *const a_keys[] = {"b", "e"};
        static const char *const b_keys[] = {"c", "d"};
        expect_keys(s, keys, 3);
        expect_keys(va, a_keys, 2);
        expect_keys(vab, b_keys, 2);
    }

    /* Writing through the views writes the parent. */
    CHECK(nnx_state_set_variable_str(vab, "x", x));
    EXPECT(contains(s, "a/b/x"));
    CHECK(nnx_state_get_kind_str(s, "a/b/x", &kind));
    EXPECT(kind == NNX_KIND_VARIABLE);
    EXPECT(read_scalar(s, "a/b/x") == 7);
    CHECK(nnx_state_get_variable_str(vab, "c", &c));
    CHECK(nnx_variable_set_value(c, ten));
    EXPECT(read_scalar(s, "a/b/c") == 10);
    CHECK(nnx_state_remove_str(vab, "d"));
    EXPECT(!contains(s, "a/b/d"));
    {
        static const char *const b_keys[] = {"c", "x"};
        expect_keys(vab, b_keys, 2);
    }
    /* The empty path gives a view of the whole state. */
    CHECK(nnx_state_get_state(s, NULL, 0, &whole));
    put(whole, "g", NNX_TYPE_CACHE, 8);
    EXPECT(read_scalar(s, "g") == 8);
    /* The parent's writes show in the views. */
    put(s, "a/b/y", NNX_TYPE_PARAM, 9);
    EXPECT(read_scalar(vab, "y") == 9);
    EXPECT(contains(va, "b/y"));
    /* A path through a leaf is not a nested state. */
    {
        nnx_state *bad = NULL;
        CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_state_get_state_str(s, "f", &bad));
        CHECK_FAILS(NNX_ERR_PATH_THROUGH_LEAF, nnx_state_get_state_str(s, "f/x", &bad));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_get_state_str(s, "nope", &bad));
        EXPECT(bad == NULL);
    }
    /* Int keys, and a view by an nnx_key path. */
    {
        const nnx_key path[2] = {KEY("layers"), IKEY(1)};
        nnx_state *one = NULL;
        static const char *const keys[] = {"#0", "#1"};
        static const char *const w[] = {"w"};
        CHECK(nnx_state_get_state_str(s, "layers", &layers));
        expect_keys(layers, keys, 2);
        CHECK(nnx_state_get_state(s, path, 2, &one));
        expect_keys(one, w, 1);
        EXPECT(read_scalar(one, "w") == 6);
        nnx_state_free(one);
    }

    /* A lent key outlives changes to the tree, until its handle is freed. */
    nnx_key lent;
    CHECK(nnx_state_key_at(vab, 0, &lent));
    EXPECT(lent.kind == NNX_KEY_STR && strcmp(lent.str, "c") == 0);

    /* Replacing the nested state: the view follows the path. */
    {
        nnx_state *fresh = NULL;
        static const char *const z[] = {"z"};
        CHECK(nnx_state_new(&fresh));
        put(fresh, "z", NNX_TYPE_PARAM, 11);
        CHECK(nnx_state_set_state_str(s, "a/b", fresh));
        /* set_state copies the structure: later changes to `fresh` are not seen. */
        put(fresh, "late", NNX_TYPE_PARAM, 12);
        nnx_state_free(fresh);
        expect_keys(vab, z, 1);
        EXPECT(read_scalar(vab, "z") == 11);
        EXPECT(!contains(s, "a/b/late"));
    }
    EXPECT(strcmp(lent.str, "c") == 0 && lent.str[1] == '\0');

    /* Removing it: every call on the view fails with KEY_NOT_FOUND. */
    CHECK(nnx_state_remove_str(s, "a/b"));
    {
        size_t n = 0;
        nnx_key key;
        nnx_flat *flat = NULL;
        nnx_state *copy = NULL;
        char *text = NULL;
        bool yes = false;
        nnx_filter *everything = NULL;
        nnx_filter *filters[1];
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_len(vab, &n));
        printf("a view whose nested state was removed: %s (%s)\n",
               nnx_status_name(NNX_ERR_KEY_NOT_FOUND), nnx_last_error_message());
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_key_at(vab, 0, &key));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_num_leaves(vab, &n));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_flatten(vab, &flat));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_clone(vab, &copy));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_deep_copy(vab, &copy));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_to_string(vab, &text));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_contains_str(vab, "z", &yes));
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_set_variable_str(vab, "q", x));
        CHECK(nnx_filter_everything(&everything));
        filters[0] = everything;
        CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_filter(vab, filters, 1, &copy));
        nnx_filter_free(everything);
        EXPECT(flat == NULL && copy == NULL && text == NULL);
        EXPECT(!contains(s, "a/b")); /* the failed set did not re-create it */
    }
    EXPECT(strcmp(lent.str, "c") == 0); /* still valid: vab is not freed */
    {
        static const char *const a_keys[] = {"e"};
        expect_keys(va, a_keys, 1); /* the outer view is fine */
    }
    /* Re-created at the same path, the nested state is seen again. */
    put(s, "a/b/r", NNX_TYPE_PARAM, 14);
    EXPECT(read_scalar(vab, "r") == 14);
    {
        static const char *const a_keys[] = {"e", "b"};
        static const char *const b_keys[] = {"r"};
        expect_keys(va, a_keys, 2);
        expect_keys(vab, b_keys, 1);
    }
    EXPECT(strcmp(lent.str, "c") == 0);

    /* Freeing the parent leaves the views working. */
    nnx_state_free(s);
    nnx_state_free(whole);
    EXPECT(read_scalar(va, "e") == 3);
    put(va, "n", NNX_TYPE_PARAM, 13);
    EXPECT(read_scalar(va, "n") == 13);
    EXPECT(read_scalar(layers, "0/w") == 5);

    nnx_state_free(vab);
    nnx_state_free(va);
    nnx_state_free(layers);
    nnx_variable_release(x);
    nnx_variable_release(c);
    nnx_array_release(ten);
    printf("views: live, follow replacement, fail after removal, outlive the parent\n");
}

static void test_update(void) {
    nnx_state *dst = NULL, *src = NULL, *view = NULL;
    CHECK(nnx_state_new(&dst));
    CHECK(nnx_state_new(&src));
    put(dst, "a/b/c", NNX_TYPE_PARAM, 1);
    put(dst, "a/b/keep", NNX_TYPE_PARAM, 2);
    put(dst, "k", NNX_TYPE_PARAM, 3);
    put(src, "a/b/c", NNX_TYPE_PARAM, 10);
    put(src, "a/b/new", NNX_TYPE_PARAM, 11);
    put(src, "k/deep", NNX_TYPE_PARAM, 12); /* a subtree where dst has a leaf */
    put(src, "m/n", NNX_TYPE_BATCH_STAT, 13); /* created in dst */
    CHECK(nnx_state_update(dst, src));
    EXPECT(read_scalar(dst, "a/b/c") == 10);
    EXPECT(read_scalar(dst, "a/b/keep") == 2);
    EXPECT(read_scalar(dst, "a/b/new") == 11);
    EXPECT(read_scalar(dst, "k/deep") == 12);
    EXPECT(read_scalar(dst, "m/n") == 13);
    {
        static const char *const b_keys[] = {"c", "keep", "new"};
        nnx_state *b = NULL;
        CHECK(nnx_state_get_state_str(dst, "a/b", &b));
        expect_keys(b, b_keys, 3); /* existing keys keep their place */
        nnx_state_free(b);
    }
    /* The variables are shared with src, not copied. */
    EXPECT(data_at(dst, "a/b/new") == data_at(src, "a/b/new"));

    /* Updating through a view, and from a view of the state itself. */
    CHECK(nnx_state_get_state_str(dst, "a", &view));
    CHECK(nnx_state_update(view, src)); /* writes a/a/b/c, a/k/deep, ... */
    EXPECT(read_scalar(dst, "a/a/b/c") == 10);
    EXPECT(read_scalar(dst, "a/m/n") == 13);
    CHECK(nnx_state_update(dst, view)); /* a's leaves copied to the top */
    EXPECT(read_scalar(dst, "b/keep") == 2);
    EXPECT(read_scalar(dst, "a/b/keep") == 2);
    CHECK(nnx_state_update(dst, dst)); /* a no-op */
    size_t leaves = 0;
    CHECK(nnx_state_num_leaves(dst, &leaves));
    /* a/b/{c,keep,new} k/deep m/n, a/a/b/{c,new} a/k/deep a/m/n, b/{c,keep,new} */
    EXPECT(leaves == 12);
    CHECK(nnx_state_remove_str(dst, "a"));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_update(view, src));
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_update(dst, view));
    nnx_state_free(view);
    nnx_state_free(dst);
    nnx_state_free(src);
    printf("update: overwrites, creates, replaces leaves by subtrees, works on views\n");
}

static void test_from_flat(void) {
    nnx_flat *flat = NULL;
    nnx_state *s = NULL;
    nnx_variable *w1 = variable(NNX_TYPE_PARAM, 1), *w0 = variable(NNX_TYPE_PARAM, 0);
    nnx_variable *later = variable(NNX_TYPE_PARAM, 100), *x = variable(NNX_TYPE_CACHE, 5);
    nnx_array *embed = scalar(42);
    const nnx_key l1w[3] = {KEY("layers"), IKEY(1), KEY("w")};
    const nnx_key l0w[3] = {KEY("layers"), IKEY(0), KEY("w")};
    const nnx_key e[1] = {KEY("embed")};
    const nnx_key ex[2] = {KEY("embed"), KEY("x")};
    const nnx_key str1[2] = {KEY("layers"), KEY("1")};
    size_t len = 0;

    CHECK(nnx_flat_new(&flat));
    CHECK(nnx_flat_push_variable(flat, l1w, 3, w1));
    CHECK(nnx_flat_push_variable(flat, l0w, 3, w0));
    CHECK(nnx_flat_push_array(flat, e, 1, embed));
    CHECK(nnx_flat_push_variable(flat, str1, 2, x)); /* str "1", not int 1 */
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_flat_push_variable(flat, NULL, 0, w1));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT, nnx_flat_push_variable(flat, l1w, 3, NULL));
    CHECK(nnx_flat_len(flat, &len));
    EXPECT(len == 4);
    CHECK(nnx_state_from_flat(flat, &s));
    {
        static const char *const keys[] = {"layers", "embed"}; /* list order */
        static const char *const layer_keys[] = {"#1", "#0", "1"};
        nnx_state *layers = NULL;
        expect_keys(s, keys, 2);
        CHECK(nnx_state_get_state_str(s, "layers", &layers));
        expect_keys(layers, layer_keys, 3);
        nnx_state_free(layers);
        EXPECT(read_scalar(s, "layers/1/w") == 1);
        EXPECT(read_scalar(s, "embed") == 42);
        nnx_state_free(s);
    }
    /* The flat holds its own references: it still works after a round trip. */
    CHECK(nnx_flat_push_variable(flat, l1w, 3, later)); /* a repeated path */
    CHECK(nnx_flat_push_variable(flat, ex, 2, x));      /* through the leaf at embed */
    CHECK(nnx_state_from_flat(flat, &s));
    {
        static const char *const keys[] = {"layers", "embed"};
        static const char *const layer_keys[] = {"#1", "#0", "1"};
        nnx_state *layers = NULL;
        nnx_kind kind = 0;
        expect_keys(s, keys, 2);
        CHECK(nnx_state_get_state_str(s, "layers", &layers));
        expect_keys(layers, layer_keys, 3); /* the later w1 at the first one's place */
        nnx_state_free(layers);
        EXPECT(read_scalar(s, "layers/1/w") == 100);
        CHECK(nnx_state_get_kind_str(s, "embed", &kind));
        EXPECT(kind == NNX_KIND_STATE);
        EXPECT(read_scalar(s, "embed/x") == 5);
    }
    /* A flat of the state lists the leaves sorted: ints before strings. */
    {
        nnx_flat *sorted = NULL;
        const nnx_key *path = NULL;
        size_t path_len = 0;
        CHECK(nnx_state_flatten(s, &sorted));
        CHECK(nnx_flat_len(sorted, &len));
        EXPECT(len == 4);
        CHECK(nnx_flat_path(sorted, 0, &path, &path_len));
        EXPECT(path_len == 2 && strcmp(path[0].str, "embed") == 0);
        CHECK(nnx_flat_path(sorted, 1, &path, &path_len));
        EXPECT(path_len == 3 && path[1].kind == NNX_KEY_INT && path[1].int_value == 0);
        CHECK(nnx_flat_path(sorted, 2, &path, &path_len));
        EXPECT(path_len == 3 && path[1].kind == NNX_KEY_INT && path[1].int_value == 1);
        CHECK(nnx_flat_path(sorted, 3, &path, &path_len));
        EXPECT(path_len == 2 && path[1].kind == NNX_KEY_STR && strcmp(path[1].str, "1") == 0);
        nnx_flat_free(sorted);
    }
    nnx_state_free(s);
    nnx_flat_free(flat);
    nnx_variable_release(w1);
    nnx_variable_release(w0);
    nnx_variable_release(later);
    nnx_variable_release(x);
    nnx_array_release(embed);
    printf("from_flat: list order, later wins in place, replaces a leaf in the way\n");
}

static void test_copies(void) {
    nnx_state *s = NULL, *clone = NULL, *deep = NULL, *view = NULL, *view_clone = NULL;
    nnx_variable *tied = variable(NNX_TYPE_PARAM, 1);
    nnx_array *two = scalar(2);
    CHECK(nnx_variable_set_metadata_str(tied, "tag", "shared"));
    CHECK(nnx_variable_set_metadata_int(tied, "fan_in", 64));
    CHECK(nnx_state_new(&s));
    CHECK(nnx_state_set_variable_str(s, "enc/embed", tied));
    CHECK(nnx_state_set_variable_str(s, "dec/embed", tied)); /* one variable, two paths */
    put(s, "dec/bias", NNX_TYPE_PARAM, 3);

    /* clone: the same variables, an independent structure. */
    CHECK(nnx_state_clone(s, &clone));
    EXPECT(data_at(clone, "enc/embed") == data_at(s, "enc/embed"));
    CHECK(nnx_state_remove_str(clone, "dec/bias"));
    EXPECT(contains(s, "dec/bias"));
    put(s, "enc/new", NNX_TYPE_PARAM, 4);
    EXPECT(!contains(clone, "enc/new"));
    CHECK(nnx_variable_set_value(tied, two)); /* seen by both */
    EXPECT(read_scalar(clone, "dec/embed") == 2);
    EXPECT(read_scalar(s, "enc/embed") == 2);

    /* clone of a view copies the nested state, detached from the parent. */
    CHECK(nnx_state_get_state_str(s, "dec", &view));
    CHECK(nnx_state_clone(view, &view_clone));
    put(view_clone, "only_in_clone", NNX_TYPE_PARAM, 5);
    EXPECT(!contains(s, "dec/only_in_clone"));
    EXPECT(contains(view_clone, "bias") && contains(view_clone, "embed"));

    /* deep copy: new variables and bytes; sharing inside the copy is kept. */
    CHECK(nnx_state_deep_copy(s, &deep));
    EXPECT(data_at(deep, "enc/embed") != data_at(s, "enc/embed"));
    EXPECT(data_at(deep, "enc/embed") == data_at(deep, "dec/embed"));
    EXPECT(read_scalar(deep, "enc/embed") == 2);
    {
        nnx_variable *copy = NULL;
        nnx_array *value = NULL;
        void *data = NULL;
        char *tag = NULL;
        int64_t fan_in = 0;
        nnx_type_id type = 0;
        float x = 99;
        CHECK(nnx_state_get_variable_str(deep, "dec/embed", &copy));
        CHECK(nnx_variable_type(copy, &type));
        EXPECT(type == NNX_TYPE_PARAM);
        CHECK(nnx_variable_tag(copy, &tag));
        EXPECT(tag != NULL && strcmp(tag, "shared") == 0);
        nnx_string_free(tag);
        CHECK(nnx_variable_get_metadata_int(copy, "fan_in", &fan_in));
        EXPECT(fan_in == 64);
        /* Changing the copy leaves the original alone (and vice versa). */
        CHECK(nnx_variable_set_metadata_str(copy, "tag", "copied"));
        CHECK(nnx_variable_get_value(copy, &value));
        CHECK(nnx_array_data_mut(value, &data));
        memcpy(data, &x, sizeof x);
        nnx_array_release(value);
        nnx_variable_release(copy);
        CHECK(nnx_variable_tag(tied, &tag));
        EXPECT(strcmp(tag, "shared") == 0);
        nnx_string_free(tag);
    }
    EXPECT(read_scalar(deep, "enc/embed") == 99);
    EXPECT(read_scalar(s, "enc/embed") == 2);
    {
        char *text = NULL;
        CHECK(nnx_state_to_string(deep, &text));
        printf("deep copy after writes:\n%s\n", text);
        nnx_string_free(text);
    }

    nnx_state_free(view);
    nnx_state_free(view_clone);
    nnx_state_free(deep);
    nnx_state_free(clone);
    nnx_state_free(s);
    nnx_variable_release(tied);
    nnx_array_release(two);
    printf("clone shares leaves; deep_copy copies them, keeping ties\n");
}

int main(void) {
    test_views();
    test_update();
    test_from_flat();
    test_copies();
    printf("views: OK\n");
    return 0;
}
