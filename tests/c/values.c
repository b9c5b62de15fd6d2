/*
 * values.c: what a variable holds besides an array, from C.
 *
 * Typed PRNG keys (key data plus the implementation's name, as
 * jax.random.key makes them): made, read, refused when jax would refuse
 * them, listed as jax prints them, deep-copied, saved and loaded back bit
 * for bit. Opaque values (a caller's object the library never looks into):
 * carried through clone, split, merge, filter, diff, flatten and deep copy
 * as any variable, released exactly once by whichever of four threads lets
 * go last, never saved (the save fails, names the path and writes nothing).
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnx_state.h"

#include "check.h"

static char dir[256];

static void path_in_dir(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static bool contains(const nnx_state *state, const char *needle) {
    char *text = NULL;
    CHECK(nnx_state_to_string(state, &text));
    bool found = strstr(text, needle) != NULL;
    if (!found) {
        fprintf(stderr, "not in the listing: %s\n%s\n", needle, text);
    }
    nnx_string_free(text);
    return found;
}

static nnx_array *u32_array(const int64_t *shape, size_t ndim, const uint32_t *words, size_t n) {
    nnx_array *array = NULL;
    CHECK(nnx_array_new(NNX_DTYPE_U32, shape, ndim, words, n * sizeof *words, &array));
    return array;
}

/* The variable at `path` of `state`, a new reference. */
static nnx_variable *get(const nnx_state *state, const char *path) {
    nnx_variable *v = NULL;
    CHECK(nnx_state_get_variable_str(state, path, &v));
    return v;
}

/* The key's data words (up to `n`) and its implementation name. */
static const char *read_key(const nnx_variable *v, uint32_t *words, size_t n) {
    nnx_array *data = NULL;
    const char *impl = NULL;
    const void *bytes = NULL;
    size_t nbytes = 0;
    CHECK(nnx_variable_get_key(v, &data, &impl));
    CHECK(nnx_array_data(data, &bytes));
    CHECK(nnx_array_nbytes(data, &nbytes));
    EXPECT(nbytes == n * sizeof *words);
    memcpy(words, bytes, nbytes);
    nnx_array_release(data);
    return impl;
}

static void keys(void) {
    /* jax.random.key(42): threefry2x32 over uint32[2] {0, 42}. */
    const int64_t one[1] = {2};
    const uint32_t words[2] = {0, 42};
    nnx_array *data = u32_array(one, 1, words, 2);
    nnx_variable *key = NULL;
    CHECK(nnx_variable_new_key(NNX_TYPE_RNG_KEY, data, "threefry2x32", &key));
    CHECK(nnx_variable_set_metadata_str(key, "tag", "default"));

    nnx_value_kind kind = 99;
    CHECK(nnx_variable_value_kind(key, &kind));
    EXPECT(kind == NNX_VALUE_KEY);
    /* A key is not an array: nnx_variable_get_value refuses it. */
    nnx_array *as_array = (nnx_array *)&kind;
    CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_variable_get_value(key, &as_array));
    EXPECT(as_array == (nnx_array *)&kind);
    EXPECT(strstr(nnx_last_error_message(), "nnx_variable_get_key") != NULL);
    nnx_array *got = NULL;
    const char *impl = NULL;
    CHECK(nnx_variable_get_key(key, &got, &impl));
    EXPECT(got == data && strcmp(impl, "threefry2x32") == 0);
    nnx_array_release(got);

    /* Data jax would refuse: four words for threefry2x32, floats. */
    const int64_t four[1] = {4};
    const uint32_t zeros[4] = {0, 0, 0, 0};
    nnx_array *wrong = u32_array(four, 1, zeros, 4);
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_variable_set_key(key, wrong, "threefry2x32"));
    printf("refused: %s\n", nnx_last_error_message());
    const float floats[2] = {0, 1};
    nnx_array *f32 = NULL;
    CHECK(nnx_array_new(NNX_DTYPE_F32, one, 1, floats, sizeof floats, &f32));
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_variable_set_key(key, f32, "threefry2x32"));
    nnx_array_release(f32);
    /* ...which rbg takes: its keys are four words. */
    nnx_variable *rbg = NULL;
    CHECK(nnx_variable_new_key(NNX_TYPE_RNG_KEY, wrong, "rbg", &rbg));
    nnx_array_release(wrong);

    /* A batch of three threefry keys (jax.random.split(k, 3)). */
    const int64_t batch_shape[2] = {3, 2};
    const uint32_t batch_words[6] = {1797259609u, 2579123966u, 928981903u,
                                     3453687069u, 4146024105u, 2718843009u};
    nnx_array *batch_data = u32_array(batch_shape, 2, batch_words, 6);
    nnx_variable *batch = NULL;
    CHECK(nnx_variable_new_key(NNX_TYPE_RNG_KEY, batch_data, "threefry2x32", &batch));
    nnx_array_release(batch_data);

    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    CHECK(nnx_state_set_variable_str(state, "rngs/default/key", key));
    CHECK(nnx_state_set_variable_str(state, "rngs/rbg/key", rbg));
    CHECK(nnx_state_set_variable_str(state, "rngs/split/key", batch));
    EXPECT(contains(state, "RngKey( # 1 (8 B)"));
    EXPECT(contains(state, "value=key<fry>[] overlaying uint32[2] [0, 42]"));
    EXPECT(contains(state, "value=key<rbg>[] overlaying uint32[4] [0, 0, 0, 0]"));
    EXPECT(contains(state, "RngKey( # 3 (24 B)"));
    EXPECT(contains(state, "value=key<fry>[3] overlaying uint32[3,2]"));

    /* A deep copy copies the key data. */
    nnx_state *copy = NULL;
    CHECK(nnx_state_deep_copy(state, &copy));
    nnx_variable *copied = get(copy, "rngs/default/key");
    CHECK(nnx_variable_get_key(copied, &got, &impl));
    EXPECT(got != data && strcmp(impl, "threefry2x32") == 0);
    nnx_array_release(got);
    nnx_variable_release(copied);
    nnx_state_free(copy);

    /* Saved and loaded, one file and sharded: typed keys again, bit for bit. */
    char file[512];
    path_in_dir(file, sizeof file, "keys.safetensors");
    CHECK(nnx_safetensors_save(state, file, 0));
    CHECK(nnx_safetensors_save_sharded(state, dir, "model", 16, 0));
    char index[512];
    path_in_dir(index, sizeof index, "model.safetensors.index.json");
    const char *sources[2] = {file, index};
    for (int i = 0; i < 2; i++) {
        nnx_state *loaded = NULL;
        CHECK(nnx_safetensors_load(sources[i], NNX_TYPE_PARAM, 0, &loaded));
        nnx_variable *v = get(loaded, "rngs/split/key");
        uint32_t back[6] = {0};
        EXPECT(strcmp(read_key(v, back, 6), "threefry2x32") == 0);
        EXPECT(memcmp(back, batch_words, sizeof back) == 0);
        nnx_variable_release(v);
        v = get(loaded, "rngs/default/key");
        char *tag = NULL;
        CHECK(nnx_variable_tag(v, &tag));
        EXPECT(tag != NULL && strcmp(tag, "default") == 0);
        nnx_string_free(tag);
        nnx_variable_release(v);
        nnx_state_free(loaded);
    }
    EXPECT(remove(file) == 0);
    for (int i = 1; i <= 3; i++) {
        char shard[512], name[64];
        snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", i);
        path_in_dir(shard, sizeof shard, name);
        EXPECT(remove(shard) == 0);
    }
    EXPECT(remove(index) == 0);

    nnx_state_free(state);
    nnx_variable_release(batch);
    nnx_variable_release(rbg);
    nnx_variable_release(key);
    nnx_array_release(data);
    printf("keys: made, read, listed, copied and saved\n");
}

/* A caller's object with a count of the times the library let go of it. */
struct object {
    pthread_mutex_t lock;
    int released;
};

static void on_release(void *user_data) {
    struct object *o = user_data;
    pthread_mutex_lock(&o->lock);
    o->released++;
    pthread_mutex_unlock(&o->lock);
}

static int released(struct object *o) {
    pthread_mutex_lock(&o->lock);
    int n = o->released;
    pthread_mutex_unlock(&o->lock);
    return n;
}

/* A thread's share of the holders: a state it splits, merges and frees. */
static void *drop_holders(void *arg) {
    nnx_state *state = arg;
    nnx_filter *param = NULL, *everything = NULL;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    CHECK(nnx_filter_everything(&everything));
    nnx_filter *filters[2] = {param, everything};
    for (int round = 0; round < 50; round++) {
        nnx_state *parts[2] = {NULL, NULL}, *merged = NULL, *clone = NULL;
        CHECK(nnx_state_split(state, filters, 2, parts));
        CHECK(nnx_state_merge(parts, 2, &merged));
        CHECK(nnx_state_clone(merged, &clone));
        nnx_state_free(parts[0]);
        nnx_state_free(parts[1]);
        nnx_state_free(state);
        nnx_state_free(merged);
        state = clone;
    }
    nnx_state_free(state);
    nnx_filter_free(param);
    nnx_filter_free(everything);
    return NULL;
}

static void opaque_values(void) {
    struct object device_array = {PTHREAD_MUTEX_INITIALIZER, 0};
    nnx_variable *v = NULL;
    /* A failed call keeps nothing and never releases. */
    nnx_variable *untouched = (nnx_variable *)&device_array;
    v = untouched;
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT,
                nnx_variable_new_opaque(NNX_TYPE_PARAM, "", &device_array, on_release,
                                        &device_array, &v));
    EXPECT(v == untouched && released(&device_array) == 0);
    CHECK(nnx_variable_new_opaque(NNX_TYPE_PARAM, "demo:DeviceArray", &device_array, on_release,
                                  &device_array, &v));
    nnx_value_kind kind = 99;
    CHECK(nnx_variable_value_kind(v, &kind));
    EXPECT(kind == NNX_VALUE_OPAQUE);
    void *object = NULL;
    const char *type_name = NULL;
    CHECK(nnx_variable_get_opaque(v, &object, &type_name));
    EXPECT(object == &device_array && strcmp(type_name, "demo:DeviceArray") == 0);
    nnx_array *as_array = NULL;
    CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_variable_get_value(v, &as_array));

    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    CHECK(nnx_state_set_variable_str(state, "linear/kernel", v));
    const float bias[2] = {0.5f, -1};
    const int64_t two[1] = {2};
    nnx_array *b = NULL;
    nnx_variable *bv = NULL;
    CHECK(nnx_array_new(NNX_DTYPE_F32, two, 1, bias, sizeof bias, &b));
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, b, &bv));
    nnx_array_release(b);
    CHECK(nnx_state_set_variable_str(state, "linear/bias", bv));
    EXPECT(contains(state, "value=<opaque demo:DeviceArray>"));

    /* Never saved: the save names the path and writes nothing. */
    char file[512];
    path_in_dir(file, sizeof file, "opaque.safetensors");
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_safetensors_save(state, file, 0));
    EXPECT(strstr(nnx_last_error_message(), "'linear/kernel'") != NULL);
    printf("refused: %s\n", nnx_last_error_message());
    struct stat st;
    EXPECT(stat(file, &st) != 0);
    CHECK_FAILS(NNX_ERR_INVALID_ARGUMENT, nnx_safetensors_save_sharded(state, dir, "model", 8, 0));
    path_in_dir(file, sizeof file, "model.safetensors");
    EXPECT(stat(file, &st) != 0);
    /* Filtered out, the rest saves. */
    nnx_filter *kernel = NULL, *not_kernel = NULL;
    nnx_key k[2] = {KEY("linear"), KEY("kernel")};
    nnx_path at = {k, 2};
    CHECK(nnx_filter_path_in(&at, 1, &kernel));
    CHECK(nnx_filter_not(kernel, &not_kernel));
    nnx_state *rest = NULL;
    CHECK(nnx_state_filter(state, &not_kernel, 1, &rest));
    path_in_dir(file, sizeof file, "rest.safetensors");
    CHECK(nnx_safetensors_save(rest, file, 0));
    EXPECT(remove(file) == 0);
    nnx_state_free(rest);
    nnx_filter_free(not_kernel);
    nnx_filter_free(kernel);

    /* A deep copy shares the object: new variables, one object. */
    nnx_state *copy = NULL;
    CHECK(nnx_state_deep_copy(state, &copy));
    nnx_variable *cv = get(copy, "linear/kernel");
    EXPECT(cv != v);
    CHECK(nnx_variable_get_opaque(cv, &object, &type_name));
    EXPECT(object == &device_array);
    nnx_variable_release(cv);

    /* Spread over four threads that split, merge, clone and free; the
     * caller's handles go first. Released once, after the last holder. */
    pthread_t threads[4];
    nnx_state *shares[4];
    for (int i = 0; i < 4; i++) {
        CHECK(nnx_state_clone(i % 2 ? state : copy, &shares[i]));
    }
    nnx_state_free(state);
    nnx_state_free(copy);
    nnx_variable_release(v);
    nnx_variable_release(bv);
    EXPECT(released(&device_array) == 0);
    for (int i = 0; i < 4; i++) {
        EXPECT(pthread_create(&threads[i], NULL, drop_holders, shares[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        EXPECT(pthread_join(threads[i], NULL) == 0);
    }
    EXPECT(released(&device_array) == 1);

    /* Replacing an opaque value releases the old one; NULL release is fine. */
    struct object first = {PTHREAD_MUTEX_INITIALIZER, 0};
    CHECK(nnx_variable_new_opaque(NNX_TYPE_CACHE, "demo:first", &first, on_release, &first, &v));
    CHECK(nnx_variable_set_opaque(v, "demo:static", NULL, NULL, NULL));
    EXPECT(released(&first) == 1);
    CHECK(nnx_variable_get_opaque(v, &object, &type_name));
    EXPECT(object == NULL && strcmp(type_name, "demo:static") == 0);
    nnx_variable_release(v);
    printf("opaque values: carried, shared by deep copies, never saved, released once\n");
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/nnx-values-c-%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    EXPECT(mkdir(dir, 0700) == 0);
    keys();
    opaque_values();
    EXPECT(rmdir(dir) == 0);
    printf("values: ok\n");
    return 0;
}
