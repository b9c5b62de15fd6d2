/*
 * release_once.c: caller memory lent with nnx_array_wrap is given back
 * exactly once, when the last reference goes, however the references were
 * spread (variables, states, views, flats, split/merge/filter/diff outputs,
 * clones) and in whatever order they are dropped; a failed wrap never
 * calls release. Also the same for callback filters.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnx_state.h"

#include "check.h"

/* Caller memory with a count of the times the library gave it back. */
struct buffer {
    float data[4];
    int released;
};

static void on_release(void *user_data) {
    ((struct buffer *)user_data)->released++;
}

static const int64_t shape4[1] = {4};

/* Lends `b` to the library as a float32[4] array; returns an owned reference. */
static nnx_array *wrap(struct buffer *b, bool writable) {
    nnx_array *array = NULL;
    for (int i = 0; i < 4; i++) b->data[i] = (float)i;
    b->released = 0;
    CHECK(nnx_array_wrap(NNX_DTYPE_F32, shape4, 1, b->data, sizeof b->data, writable,
                         on_release, b, &array));
    return array;
}

static void test_handle_only(void) {
    struct buffer b;
    nnx_array *a = wrap(&b, true);
    const void *data = NULL;
    void *mut = NULL;
    bool writable = false;
    CHECK(nnx_array_data(a, &data));
    EXPECT(data == b.data); /* no copy */
    CHECK(nnx_array_is_writable(a, &writable));
    EXPECT(writable);
    CHECK(nnx_array_data_mut(a, &mut));
    EXPECT(mut == b.data);
    CHECK(nnx_array_retain(a));
    CHECK(nnx_array_retain(a));
    nnx_array_release(a);
    nnx_array_release(a);
    EXPECT(b.released == 0);
    nnx_array_release(a);
    EXPECT(b.released == 1);
    nnx_array_release(NULL); /* a no-op */
    EXPECT(b.released == 1);

    /* Read-only memory: no mutable access, same release. */
    a = wrap(&b, false);
    CHECK(nnx_array_is_writable(a, &writable));
    EXPECT(!writable);
    mut = NULL;
    CHECK_FAILS(NNX_ERR_READ_ONLY, nnx_array_data_mut(a, &mut));
    EXPECT(mut == NULL);
    nnx_array_release(a);
    EXPECT(b.released == 1);

    /* Zero bytes, NULL data: release still runs once. */
    const int64_t empty[1] = {0};
    b.released = 0;
    CHECK(nnx_array_wrap(NNX_DTYPE_F32, empty, 1, NULL, 0, false, on_release, &b, &a));
    EXPECT(b.released == 0);
    nnx_array_release(a);
    EXPECT(b.released == 1);

    /* NULL release: the memory outlives the array by other means. */
    CHECK(nnx_array_wrap(NNX_DTYPE_F32, shape4, 1, b.data, sizeof b.data, true, NULL, NULL, &a));
    nnx_array_release(a);
    printf("handle only: released once, at the last release\n");
}

static void test_failed_wrap(void) {
    struct buffer b = {{0, 0, 0, 0}, 0};
    nnx_array *sentinel = (nnx_array *)&b; /* any non-NULL value to see it untouched */
    nnx_array *a = sentinel;
    const int64_t s22[2] = {2, 2}, neg[1] = {-4};

    /* float32[2,2] needs 16 bytes. */
    CHECK_FAILS(NNX_ERR_SHAPE_MISMATCH,
                nnx_array_wrap(NNX_DTYPE_F32, s22, 2, b.data, 12, true, on_release, &b, &a));
    printf("shape mismatch: %s\n", nnx_last_error_message());
    CHECK_FAILS(NNX_ERR_SHAPE_MISMATCH,
                nnx_array_wrap(NNX_DTYPE_F64, shape4, 1, b.data, 16, true, on_release, &b, &a));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_array_wrap(9999, shape4, 1, b.data, 16, true, on_release, &b, &a));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_array_wrap(NNX_DTYPE_F32, neg, 1, b.data, 16, true, on_release, &b, &a));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT,
                nnx_array_wrap(NNX_DTYPE_F32, shape4, 1, NULL, 16, true, on_release, &b, &a));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT,
                nnx_array_wrap(NNX_DTYPE_F32, NULL, 1, b.data, 16, true, on_release, &b, &a));
    CHECK_FAILS(NNX_ERR_NULL_ARGUMENT,
                nnx_array_wrap(NNX_DTYPE_F32, shape4, 1, b.data, 16, true, on_release, &b, NULL));
    EXPECT(a == sentinel);
    EXPECT(b.released == 0);
    printf("failed wraps: release never called, out-pointer untouched\n");
}

/* The states, flats and handles that end up holding two lent buffers. */
struct holders {
    nnx_state *state, *clone, *parts[2], *merged, *filtered, *diffed, *unflat, *view;
    nnx_flat *flat;
};

/* state = {p: {w: Param(wrapped a), b: wrapped b (bare)}}, plus every
 * derived holder. All caller handles to a, b and the variable are gone. */
static void spread(struct holders *h, struct buffer *a, struct buffer *b) {
    nnx_array *wa = wrap(a, true), *wb = wrap(b, true);
    nnx_variable *v = NULL;
    nnx_filter *param = NULL, *everything = NULL;
    nnx_state *empty = NULL;
    memset(h, 0, sizeof *h);

    CHECK(nnx_variable_new(NNX_TYPE_PARAM, wa, &v));
    nnx_array_release(wa);
    CHECK(nnx_state_new(&h->state));
    CHECK(nnx_state_set_variable_str(h->state, "p/w", v));
    nnx_variable_release(v);
    CHECK(nnx_state_set_array_str(h->state, "p/b", wb));
    nnx_array_release(wb);

    CHECK(nnx_state_flatten(h->state, &h->flat));
    CHECK(nnx_state_clone(h->state, &h->clone));
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    CHECK(nnx_filter_everything(&everything));
    nnx_filter *filters[2] = {param, everything};
    CHECK(nnx_state_split(h->state, filters, 2, h->parts));
    CHECK(nnx_state_filter(h->state, filters, 1, &h->filtered));
    nnx_state *parts[2] = {h->parts[0], h->parts[1]};
    CHECK(nnx_state_merge(parts, 2, &h->merged));
    CHECK(nnx_state_new(&empty));
    CHECK(nnx_state_diff(h->state, empty, &h->diffed));
    CHECK(nnx_state_from_flat(h->flat, &h->unflat));
    CHECK(nnx_state_get_state_str(h->state, "p", &h->view));
    nnx_state_free(empty);
    nnx_filter_free(param);
    nnx_filter_free(everything);

    size_t leaves = 0;
    CHECK(nnx_state_num_leaves(h->merged, &leaves));
    EXPECT(leaves == 2);
    CHECK(nnx_state_num_leaves(h->unflat, &leaves));
    EXPECT(leaves == 2);
    CHECK(nnx_state_num_leaves(h->view, &leaves));
    EXPECT(leaves == 2);
    EXPECT(a->released == 0 && b->released == 0);
}

/* Which buffers each holder (indexed as in drop_in_order) holds: all hold
 * both, but parts[0] and filtered (the Params: a) and parts[1] (the rest: b). */
static const bool holds_a[10] = {true, true, true, false, true, true, true, true, true, true};
static const bool holds_b[10] = {true, true, false, true, true, false, true, true, true, true};

/* Frees the holders in the order given by `order` (a permutation of 0..9:
 * the states of `struct holders` in order, then the flat), checking after
 * each free that a buffer was released exactly once if its last holder has
 * gone and not at all before. */
static void drop_in_order(const char *name, const int *order) {
    struct buffer a, b;
    struct holders h;
    int left_a = 0, left_b = 0;
    spread(&h, &a, &b);
    nnx_state **states[9] = {&h.state,    &h.clone,  &h.parts[0], &h.parts[1], &h.merged,
                             &h.filtered, &h.diffed, &h.unflat,   &h.view};
    for (int i = 0; i < 10; i++) {
        left_a += holds_a[i];
        left_b += holds_b[i];
    }
    for (int i = 0; i < 10; i++) {
        int which = order[i];
        if (which == 9) {
            EXPECT(h.flat != NULL);
            nnx_flat_free(h.flat);
            h.flat = NULL;
        } else {
            EXPECT(*states[which] != NULL);
            nnx_state_free(*states[which]);
            *states[which] = NULL;
        }
        left_a -= holds_a[which];
        left_b -= holds_b[which];
        if (a.released != (left_a == 0) || b.released != (left_b == 0)) {
            fprintf(stderr,
                    "%s: after freeing holder %d, a released %d times (%d holders left), "
                    "b %d times (%d left)\n",
                    name, which, a.released, left_a, b.released, left_b);
            exit(1);
        }
    }
    printf("%s: each buffer released once, when its last holder went\n", name);
}

/* A view outlives its parent; a and b go with their own last holders. */
static void drop_and_track(void) {
    struct buffer a, b;
    struct holders h;
    spread(&h, &a, &b);
    /* Holders of a: state, clone, parts[0], merged, filtered, diffed,
     * unflat, view, flat. Holders of b: the same but parts[1], not
     * parts[0] or filtered. */
    nnx_state_free(h.state); /* the view keeps the tree alive */
    nnx_state_free(h.clone);
    nnx_state_free(h.merged);
    nnx_state_free(h.diffed);
    nnx_state_free(h.unflat);
    nnx_flat_free(h.flat);
    EXPECT(a.released == 0 && b.released == 0);
    {
        /* The view still works after its parent was freed. */
        nnx_array *arr = NULL;
        CHECK(nnx_state_get_array_str(h.view, "b", &arr));
        nnx_array_release(arr);
    }
    nnx_state_free(h.view);
    EXPECT(a.released == 0 && b.released == 0);
    nnx_state_free(h.parts[1]); /* b's last holder */
    EXPECT(a.released == 0 && b.released == 1);
    nnx_state_free(h.parts[0]);
    EXPECT(a.released == 0);
    nnx_state_free(h.filtered); /* a's last holder */
    EXPECT(a.released == 1 && b.released == 1);
    printf("per-buffer tracking: each released when its own last holder went\n");
}

/* Replacing, removing and updating give the old leaf back. */
static void test_replace(void) {
    struct buffer a, b, c;
    nnx_array *wa = wrap(&a, true), *wb = wrap(&b, true), *wc = wrap(&c, true);
    nnx_variable *v = NULL;
    nnx_state *s = NULL, *src = NULL;

    /* Variable values. */
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, wa, &v));
    nnx_array_release(wa);
    CHECK(nnx_variable_set_value(v, wb));
    EXPECT(a.released == 1); /* the variable held the last reference to a */
    CHECK(nnx_variable_set_value(v, wb)); /* the same value again: no release */
    EXPECT(b.released == 0);
    CHECK(nnx_variable_set_value(v, NULL));
    EXPECT(b.released == 0); /* the caller still holds wb */
    CHECK(nnx_variable_set_value(v, wb));
    nnx_array_release(wb);
    EXPECT(b.released == 0);
    nnx_variable_release(v);
    EXPECT(b.released == 1);

    /* Bare arrays in a state: set over, remove, update. */
    wa = wrap(&a, true);
    wb = wrap(&b, true);
    CHECK(nnx_state_new(&s));
    CHECK(nnx_state_set_array_str(s, "x", wa));
    CHECK(nnx_state_set_array_str(s, "y", wb));
    nnx_array_release(wa);
    nnx_array_release(wb);
    CHECK(nnx_state_set_array_str(s, "x", wc)); /* replaces a */
    EXPECT(a.released == 1 && c.released == 0);
    CHECK(nnx_state_remove_str(s, "y"));
    EXPECT(b.released == 1);
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_state_remove_str(s, "y"));
    EXPECT(b.released == 1);

    wa = wrap(&a, true);
    CHECK(nnx_state_new(&src));
    CHECK(nnx_state_set_array_str(src, "x", wa));
    nnx_array_release(wa);
    CHECK(nnx_state_update(s, src)); /* s/x: c -> a */
    EXPECT(c.released == 0);        /* the caller still holds wc */
    nnx_array_release(wc);
    EXPECT(c.released == 1);
    nnx_state_free(src);
    EXPECT(a.released == 0); /* s holds it now */
    nnx_state_free(s);
    EXPECT(a.released == 1);
    printf("replace/remove/update: old leaves given back once\n");
}

/* A deep copy copies the bytes, so it does not hold the caller's memory. */
static void test_deep_copy(void) {
    struct buffer a;
    nnx_array *wa = wrap(&a, true), *copied = NULL;
    nnx_variable *v = NULL, *cv = NULL;
    nnx_state *s = NULL, *deep = NULL;
    const void *data = NULL;
    CHECK(nnx_variable_new(NNX_TYPE_BATCH_STAT, wa, &v));
    nnx_array_release(wa);
    CHECK(nnx_state_new(&s));
    CHECK(nnx_state_set_variable_str(s, "bn/mean", v));
    nnx_variable_release(v);
    CHECK(nnx_state_deep_copy(s, &deep));
    nnx_state_free(s);
    EXPECT(a.released == 1); /* the copy does not hold the lent memory */
    CHECK(nnx_state_get_variable_str(deep, "bn/mean", &cv));
    CHECK(nnx_variable_get_value(cv, &copied));
    CHECK(nnx_array_data(copied, &data));
    EXPECT(data != (const void *)a.data);
    EXPECT(memcmp(data, a.data, sizeof a.data) == 0);
    nnx_array_release(copied);
    nnx_variable_release(cv);
    nnx_state_free(deep);
    EXPECT(a.released == 1);
    printf("deep copy: owns its bytes; the lent buffer went with the original\n");
}

static void *release_on_thread(void *array) {
    nnx_array_release(array);
    return NULL;
}

/* The last reference may go on another thread; release runs there, once. */
static void test_other_thread(void) {
    struct buffer a;
    nnx_array *wa = wrap(&a, true);
    nnx_state *s = NULL;
    pthread_t thread;
    CHECK(nnx_state_new(&s));
    CHECK(nnx_state_set_array_str(s, "a", wa));
    nnx_state_free(s);
    EXPECT(a.released == 0);
    EXPECT(pthread_create(&thread, NULL, release_on_thread, wa) == 0);
    EXPECT(pthread_join(thread, NULL) == 0);
    EXPECT(a.released == 1);
    printf("last release on another thread: released once\n");
}

/* Callback filters: their data is given back once, after the last copy. */
struct filter_data {
    int releases;
};

static int match_all(void *user_data, const nnx_key *path, size_t path_len, nnx_kind kind,
                     const nnx_variable *variable, const nnx_array *array) {
    (void)user_data, (void)path, (void)path_len, (void)kind, (void)variable, (void)array;
    return 1;
}

static void filter_released(void *user_data) {
    ((struct filter_data *)user_data)->releases++;
}

static void test_callback_filter(void) {
    struct filter_data d = {0};
    nnx_filter *cb = NULL, *neg = NULL, *any = NULL, *all = NULL, *copy = NULL;
    CHECK(nnx_filter_callback(match_all, &d, filter_released, &cb));
    CHECK(nnx_filter_not(cb, &neg));
    nnx_filter *parts[2] = {neg, cb};
    CHECK(nnx_filter_any(parts, 2, &any));
    CHECK(nnx_filter_all(parts, 2, &all));
    CHECK(nnx_filter_clone(any, &copy));
    nnx_filter_free(any);
    nnx_filter_free(cb);
    nnx_filter_free(all);
    nnx_filter_free(neg);
    EXPECT(d.releases == 0);
    nnx_filter_free(copy);
    EXPECT(d.releases == 1);

    /* Freed straight away. */
    d.releases = 0;
    CHECK(nnx_filter_callback(match_all, &d, filter_released, &cb));
    nnx_filter_free(cb);
    EXPECT(d.releases == 1);
    nnx_filter_free(NULL); /* a no-op */
    printf("callback filter: released once, after the last copy\n");
}

int main(void) {
    static const int forward[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const int backward[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    static const int shuffled[10] = {8, 0, 9, 3, 6, 1, 4, 7, 2, 5};
    test_handle_only();
    test_failed_wrap();
    drop_in_order("drop forward", forward);
    drop_in_order("drop backward", backward);
    drop_in_order("drop shuffled", shuffled);
    drop_and_track();
    test_replace();
    test_deep_copy();
    test_other_thread();
    test_callback_filter();
    printf("release_once: OK\n");
    return 0;
}
