/*
 * deep.c: nesting at NNX_MAX_DEPTH works through every way in, and one
 * level past it fails with NNX_ERR_TOO_DEEP and writes nothing: setting at
 * a path (key arrays and "/" strings), nesting a state into another or into
 * a live view, update, flat lists (push, push_many, from_flat), safetensors
 * files (ours and a foreign one with a 30,000-component name), filters
 * built from C (not/any/all chains, and a shared filter whose written-out
 * form would be huge) and from text. Every operation then runs on a state
 * at the limit. The whole program runs twice: on the main thread and on a
 * thread with a 256 KiB stack, as an engine's worker thread may have.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define LIMIT NNX_MAX_DEPTH

/* A path of `len` keys: "k", then ints 0, 1, ... */
static nnx_key *deep_path(size_t len) {
    nnx_key *path = calloc(len, sizeof *path);
    EXPECT(path != NULL);
    for (size_t i = 0; i < len; i++) {
        path[i] = i == 0 ? KEY("k") : IKEY((int64_t)i);
    }
    return path;
}

/* "a/a/.../a" with `len` components. */
static char *deep_text(size_t len, char sep) {
    char *text = malloc(2 * len);
    EXPECT(text != NULL);
    for (size_t i = 0; i < len; i++) {
        text[2 * i] = 'a';
        text[2 * i + 1] = i + 1 == len ? '\0' : sep;
    }
    return text;
}

static nnx_variable *new_param(void) {
    float value = 1.0f;
    int64_t shape[1] = {1};
    nnx_array *array;
    CHECK(nnx_array_new(NNX_DTYPE_F32, shape, 1, &value, sizeof value, &array));
    nnx_variable *var;
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, array, &var));
    nnx_array_release(array);
    return var;
}

static size_t leaves(const nnx_state *state) {
    size_t n;
    CHECK(nnx_state_num_leaves(state, &n));
    return n;
}

/* A state with one Param at a path of `depth` keys. */
static nnx_state *state_of_depth(size_t depth, nnx_variable *var) {
    nnx_state *state;
    CHECK(nnx_state_new(&state));
    nnx_key *path = deep_path(depth);
    CHECK(nnx_state_set_variable(state, path, depth, var));
    free(path);
    return state;
}

static void setting_at_a_path(nnx_variable *var) {
    nnx_state *state;
    CHECK(nnx_state_new(&state));
    nnx_key *path = deep_path(LIMIT + 1);
    CHECK(nnx_state_set_variable(state, path, LIMIT, var));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_variable(state, path, LIMIT + 1, var));
    EXPECT(strstr(nnx_last_error_message(), "nesting limit") != NULL);
    EXPECT(leaves(state) == 1);
    /* The leaf at the limit is still where it was, nothing below it. */
    nnx_kind kind;
    CHECK(nnx_state_get_kind(state, path, LIMIT, &kind));
    EXPECT(kind == NNX_KIND_VARIABLE);

    /* The same through "/" paths. */
    char *at_limit = deep_text(LIMIT, '/');
    char *past = deep_text(LIMIT + 1, '/');
    CHECK(nnx_state_set_variable_str(state, at_limit, var));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_variable_str(state, past, var));
    EXPECT(leaves(state) == 2);
    free(at_limit);
    free(past);

    /* A path of 30,000 keys fails as quickly and cleanly. */
    nnx_key *very_deep = deep_path(30000);
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_variable(state, very_deep, 30000, var));
    EXPECT(strlen(nnx_last_error_message()) < 400);
    free(very_deep);
    free(path);
    nnx_state_free(state);
}

static void nesting_states(nnx_variable *var) {
    /* A state 10 deep fits under a path of LIMIT - 10 keys, not one more. */
    nnx_state *inner = state_of_depth(10, var);
    nnx_state *outer;
    CHECK(nnx_state_new(&outer));
    nnx_key *path = deep_path(LIMIT);
    CHECK(nnx_state_set_state(outer, path, LIMIT - 10, inner));
    EXPECT(leaves(outer) == 1);
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_state(outer, path, LIMIT - 9, inner));
    EXPECT(leaves(outer) == 1);

    /* A live view counts from its root: at depth LIMIT - 10, a path of 10
     * keys fits and one of 11 does not. */
    nnx_state *view;
    CHECK(nnx_state_get_state(outer, path, LIMIT - 10, &view));
    nnx_key *rest = deep_path(11);
    rest[0] = KEY("r");
    CHECK(nnx_state_set_variable(view, rest, 10, var));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_variable(view, rest, 11, var));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_set_state(view, rest, 1, inner));
    EXPECT(leaves(outer) == 2);

    /* update: the source's leaves land below the view. */
    nnx_state *eleven = state_of_depth(11, var);
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_state_update(view, eleven));
    CHECK(nnx_state_update(view, inner));
    EXPECT(leaves(outer) == 2);
    nnx_state_free(eleven);
    nnx_state_free(view);
    free(rest);
    free(path);
    nnx_state_free(inner);
    nnx_state_free(outer);
}

static void flat_lists(nnx_variable *var) {
    nnx_key *path = deep_path(LIMIT + 1);
    nnx_flat *flat;
    CHECK(nnx_flat_new(&flat));
    CHECK(nnx_flat_push_variable(flat, path, LIMIT, var));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_flat_push_variable(flat, path, LIMIT + 1, var));

    /* push_many: the second entry is too deep, so neither is appended. */
    size_t offsets[3] = {0, 1, 2 + LIMIT};
    nnx_key *keys = deep_path(2 + LIMIT);
    keys[0] = KEY("s"); /* entry 0 is "s", entry 1 starts at the int 1 */
    const nnx_variable *vars[2] = {var, var};
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_flat_push_many(flat, 2, offsets, keys, vars, NULL));
    EXPECT(strstr(nnx_last_error_message(), "entry 1 of 2") != NULL);
    size_t len;
    CHECK(nnx_flat_len(flat, &len));
    EXPECT(len == 1);
    offsets[2] = 1 + LIMIT;
    CHECK(nnx_flat_push_many(flat, 2, offsets, keys, vars, NULL));
    CHECK(nnx_flat_len(flat, &len));
    EXPECT(len == 3);

    nnx_state *state;
    CHECK(nnx_state_from_flat(flat, &state));
    EXPECT(leaves(state) == 3);
    nnx_state_free(state);
    nnx_flat_free(flat);
    free(keys);
    free(path);
}

/* Writes a safetensors file holding one f32 scalar per name. */
static void write_foreign_file(const char *file, const char *name) {
    size_t cap = strlen(name) + 128;
    char *json = malloc(cap);
    EXPECT(json != NULL);
    int n = snprintf(json, cap, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                     name);
    EXPECT(n > 0 && (size_t)n < cap);
    size_t padded = ((size_t)n + 7) / 8 * 8;
    FILE *out = fopen(file, "wb");
    EXPECT(out != NULL);
    uint64_t header_len = padded;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) {
        len_bytes[i] = (unsigned char)(header_len >> (8 * i));
    }
    EXPECT(fwrite(len_bytes, 1, 8, out) == 8);
    EXPECT(fwrite(json, 1, (size_t)n, out) == (size_t)n);
    for (size_t i = (size_t)n; i < padded; i++) {
        EXPECT(fputc(' ', out) != EOF);
    }
    float value = 2.0f;
    EXPECT(fwrite(&value, 1, sizeof value, out) == sizeof value);
    EXPECT(fclose(out) == 0);
    free(json);
}

static void safetensors_files(const char *dir, nnx_variable *var) {
    char file[512];
    nnx_state *loaded = NULL;

    /* A name of 30,000 components: a 60 KB file that once aborted. */
    snprintf(file, sizeof file, "%s/deep-name.safetensors", dir);
    char *name = deep_text(30000, '.');
    write_foreign_file(file, name);
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &loaded));
    EXPECT(loaded == NULL);
    EXPECT(strstr(nnx_last_error_message(), "30000 components") != NULL);
    free(name);

    /* At the limit a foreign name loads. */
    name = deep_text(LIMIT, '.');
    write_foreign_file(file, name);
    CHECK(nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &loaded));
    EXPECT(leaves(loaded) == 1);
    nnx_state_free(loaded);
    loaded = NULL;
    free(name);

    /* An empty component is malformed. */
    write_foreign_file(file, "a..b");
    CHECK_FAILS(NNX_ERR_FORMAT, nnx_safetensors_load(file, NNX_TYPE_PARAM, 0, &loaded));
    EXPECT(strstr(nnx_last_error_message(), "empty component") != NULL);
    remove(file);

    /* A state at the limit round-trips through our own files. */
    nnx_state *state = state_of_depth(LIMIT, var);
    snprintf(file, sizeof file, "%s/at-limit.safetensors", dir);
    CHECK(nnx_safetensors_save(state, file, 0));
    CHECK(nnx_safetensors_load(file, NNX_TYPE_NONE, 0, &loaded));
    EXPECT(leaves(loaded) == 1);
    nnx_key *path = deep_path(LIMIT);
    nnx_kind kind;
    CHECK(nnx_state_get_kind(loaded, path, LIMIT, &kind));
    EXPECT(kind == NNX_KIND_VARIABLE);
    free(path);
    nnx_state_free(loaded);
    nnx_state_free(state);
    remove(file);
}

static void filters_from_c(void) {
    /* A chain of Not: LIMIT levels build (each step costs the same), one
     * more does not. */
    nnx_filter *chain;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &chain));
    for (int level = 2; level <= LIMIT; level++) {
        nnx_filter *next;
        CHECK(nnx_filter_not(chain, &next));
        nnx_filter_free(chain);
        chain = next;
    }
    nnx_filter *too_deep = NULL;
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_filter_not(chain, &too_deep));
    EXPECT(too_deep == NULL);
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_filter_any(&chain, 1, &too_deep));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_filter_all(&chain, 1, &too_deep));

    /* The chain works: LIMIT - 1 Nots of Param is Not(Param) here. */
    nnx_variable *var = new_param();
    nnx_state *state = state_of_depth(3, var);
    nnx_variable_release(var);
    nnx_state *out;
    CHECK(nnx_state_filter(state, &chain, 1, &out));
    EXPECT(leaves(out) == ((LIMIT - 1) % 2 == 0 ? 1u : 0u));
    nnx_state_free(out);
    char *text;
    CHECK(nnx_state_to_string(state, &text));
    nnx_string_free(text);
    nnx_filter_free(chain);

    /* Any(f, f) of Any(f, f) ...: 20 levels share their parts, but written
     * out they would be 2^21 parts, past the size limit. (tests/core_state.rs
     * evaluates one at the limit; here one of 10 levels is used.) */
    nnx_filter *shared;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &shared));
    nnx_filter *tenth = NULL;
    nnx_status status = NNX_OK;
    int level = 0;
    while (status == NNX_OK && level < 40) {
        nnx_filter *pair[2] = {shared, shared};
        nnx_filter *next = NULL;
        status = nnx_filter_any(pair, 2, &next);
        if (status == NNX_OK) {
            if (level == 10) {
                tenth = shared;
            } else {
                nnx_filter_free(shared);
            }
            shared = next;
            level++;
        }
    }
    EXPECT(status == NNX_ERR_INVALID_ARGUMENT);
    EXPECT(level == 19);
    CHECK(nnx_state_filter(state, &tenth, 1, &out));
    EXPECT(leaves(out) == 1);
    nnx_state_free(out);
    nnx_filter_free(tenth);
    nnx_filter_free(shared);
    nnx_state_free(state);
}

static void filters_from_text(void) {
    size_t len = 2 * (size_t)(LIMIT + 1) + 8;
    char *text = malloc(len + 1);
    EXPECT(text != NULL);
    /* LIMIT parentheses around a type parse; one more does not. */
    for (int depth = LIMIT; depth <= LIMIT + 1; depth++) {
        size_t at = 0;
        for (int i = 0; i < depth; i++) text[at++] = '(';
        memcpy(text + at, "Param", 5);
        at += 5;
        for (int i = 0; i < depth; i++) text[at++] = ')';
        text[at] = '\0';
        nnx_filter *filter = NULL;
        if (depth == LIMIT) {
            CHECK(nnx_filter_parse(text, &filter));
            nnx_filter_free(filter);
        } else {
            CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_filter_parse(text, &filter));
            EXPECT(filter == NULL);
        }
    }
    /* ~ nests a filter one level each: LIMIT of them make LIMIT + 1 levels. */
    memset(text, '~', LIMIT);
    memcpy(text + LIMIT, "Param", 6);
    nnx_filter *filter = NULL;
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_filter_parse(text, &filter));
    CHECK(nnx_filter_parse(text + 1, &filter));
    nnx_filter_free(filter);
    free(text);
}

/* Every operation on a state at the limit, wide at the bottom. */
static void operations_at_the_limit(nnx_variable *var) {
    nnx_state *state = state_of_depth(LIMIT, var);
    nnx_key *path = deep_path(LIMIT);
    for (int64_t i = 0; i < 8; i++) {
        path[LIMIT - 1] = IKEY(1000 + i);
        nnx_variable *stat = new_param();
        CHECK(nnx_state_set_variable(state, path, LIMIT, stat));
        nnx_variable_release(stat);
    }
    nnx_state *copy;
    CHECK(nnx_state_clone(state, &copy));
    nnx_state *deep;
    CHECK(nnx_state_deep_copy(state, &deep));
    EXPECT(leaves(deep) == 9);

    nnx_flat *flat;
    CHECK(nnx_state_flatten(state, &flat));
    size_t len;
    CHECK(nnx_flat_len(flat, &len));
    EXPECT(len == 9);
    nnx_state *rebuilt;
    CHECK(nnx_state_from_flat(flat, &rebuilt));
    nnx_flat_free(flat);

    nnx_filter *filters[2];
    nnx_key picked = IKEY(1003);
    CHECK(nnx_filter_path_contains(&picked, true, &filters[0]));
    CHECK(nnx_filter_everything(&filters[1]));
    nnx_state *parts[2];
    CHECK(nnx_state_split(state, filters, 2, parts));
    EXPECT(leaves(parts[0]) == 1 && leaves(parts[1]) == 8);
    nnx_state *filtered[1];
    CHECK(nnx_state_filter(state, filters, 1, filtered));
    nnx_state *merged;
    CHECK(nnx_state_merge(parts, 2, &merged));
    EXPECT(leaves(merged) == 9);
    nnx_state *diff;
    CHECK(nnx_state_diff(merged, parts[0], &diff));
    EXPECT(leaves(diff) == 8);
    CHECK(nnx_state_update(copy, diff));
    char *text;
    CHECK(nnx_state_to_string(merged, &text));
    nnx_string_free(text);
    CHECK(nnx_state_remove(state, path, LIMIT));
    EXPECT(leaves(state) == 8);

    nnx_filter_free(filters[0]);
    nnx_filter_free(filters[1]);
    nnx_state_free(parts[0]);
    nnx_state_free(parts[1]);
    nnx_state_free(filtered[0]);
    nnx_state_free(merged);
    nnx_state_free(diff);
    nnx_state_free(rebuilt);
    nnx_state_free(deep);
    nnx_state_free(copy);
    free(path);
    nnx_state_free(state);
}

static char temp_dir[400];

static void *run_all(void *unused) {
    (void)unused;
    nnx_variable *var = new_param();
    setting_at_a_path(var);
    nesting_states(var);
    flat_lists(var);
    safetensors_files(temp_dir, var);
    filters_from_c();
    filters_from_text();
    operations_at_the_limit(var);
    nnx_variable_release(var);
    return NULL;
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(temp_dir, sizeof temp_dir, "%s/nnx-deep-c-%ld", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    EXPECT(mkdir(temp_dir, 0700) == 0);
    run_all(NULL);

    pthread_attr_t attr;
    EXPECT(pthread_attr_init(&attr) == 0);
    const char *kib = getenv("NNX_DEEP_STACK_KIB"); /* for measuring */
    size_t stack = (kib ? (size_t)atoi(kib) : 256) * 1024;
    EXPECT(pthread_attr_setstacksize(&attr, stack) == 0);
    pthread_t worker;
    EXPECT(pthread_create(&worker, &attr, run_all, NULL) == 0);
    EXPECT(pthread_join(worker, NULL) == 0);
    EXPECT(pthread_attr_destroy(&attr) == 0);
    EXPECT(rmdir(temp_dir) == 0);
    printf("deep: every way in holds at NNX_MAX_DEPTH = %d, on a 256 KiB stack too\n", LIMIT);
    return 0;
}
