/*
 * metadata.c: structured metadata from C.
 *
 * Builds what a Flax model carries, out_sharding=(None, 'model') and a map
 * of optimizer hyper-parameters holding a tuple and a list, sets them on a
 * variable, reads them back through borrowed views, round-trips them
 * through their JSON form and a safetensors file, and checks that a value
 * NNX_MAX_DEPTH + 1 levels deep is refused with NNX_ERR_TOO_DEEP.
 */

#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnx_state.h"

#include "check.h"

static nnx_meta *str_value(const char *text) {
    nnx_meta *out = NULL;
    CHECK(nnx_meta_new_str(text, strlen(text), &out));
    return out;
}

static nnx_meta *float_value(double x) {
    nnx_meta *out = NULL;
    CHECK(nnx_meta_new_float(x, &out));
    return out;
}

/* Appends `item` to `seq` and frees it: the container keeps its own copy. */
static void append_and_free(nnx_meta *seq, nnx_meta *item) {
    CHECK(nnx_meta_append(seq, item));
    nnx_meta_free(item);
}

static void set_and_free(nnx_meta *map, const char *key, nnx_meta *value) {
    CHECK(nnx_meta_map_set(map, key, strlen(key), value));
    nnx_meta_free(value);
}

/* The value's Python repr must be `want`. */
static void expect_repr(const nnx_meta *value, const char *want) {
    char *text = NULL;
    CHECK(nnx_meta_to_string(value, &text));
    if (strcmp(text, want) != 0) {
        fprintf(stderr, "repr is %s, expected %s\n", text, want);
        exit(1);
    }
    nnx_string_free(text);
}

static bool equal(const nnx_meta *a, const nnx_meta *b) {
    bool out = false;
    CHECK(nnx_meta_equal(a, b, &out));
    return out;
}

/* (None, 'model') */
static nnx_meta *out_sharding(void) {
    nnx_meta *tuple = NULL, *none = NULL;
    CHECK(nnx_meta_new_tuple(&tuple));
    CHECK(nnx_meta_new_null(&none));
    append_and_free(tuple, none);
    append_and_free(tuple, str_value("model"));
    return tuple;
}

/* {'lr': 0.001, 'betas': (0.9, 0.999), 'schedule': [1, 10, 100],
 *  'nesterov': False, 'clip': inf} */
static nnx_meta *hyper_parameters(void) {
    nnx_meta *map = NULL, *betas = NULL, *schedule = NULL, *flag = NULL;
    CHECK(nnx_meta_new_map(&map));
    set_and_free(map, "lr", float_value(0.001));
    CHECK(nnx_meta_new_tuple(&betas));
    append_and_free(betas, float_value(0.9));
    append_and_free(betas, float_value(0.999));
    set_and_free(map, "betas", betas);
    CHECK(nnx_meta_new_list(&schedule));
    for (int64_t step = 1; step <= 100; step *= 10) {
        nnx_meta *n = NULL;
        CHECK(nnx_meta_new_int(step, &n));
        append_and_free(schedule, n);
    }
    set_and_free(map, "schedule", schedule);
    CHECK(nnx_meta_new_bool(false, &flag));
    set_and_free(map, "nesterov", flag);
    set_and_free(map, "clip", float_value(INFINITY));
    return map;
}

static void read_back(const nnx_variable *kernel) {
    nnx_meta *sharding = NULL;
    CHECK(nnx_variable_get_metadata(kernel, "out_sharding", &sharding));
    nnx_meta_kind kind = 0;
    CHECK(nnx_meta_get_kind(sharding, &kind));
    EXPECT(kind == NNX_META_TUPLE);
    size_t len = 0;
    CHECK(nnx_meta_len(sharding, &len));
    EXPECT(len == 2);
    const nnx_meta *item = NULL;
    CHECK(nnx_meta_item(sharding, 0, &item));
    CHECK(nnx_meta_get_kind(item, &kind));
    EXPECT(kind == NNX_META_NULL);
    CHECK(nnx_meta_item(sharding, 1, &item));
    const char *text = NULL;
    CHECK(nnx_meta_get_str(item, &text, &len));
    EXPECT(len == 5 && memcmp(text, "model", 5) == 0);
    CHECK_FAILS(NNX_ERR_INDEX_OUT_OF_RANGE, nnx_meta_item(sharding, 2, &item));
    expect_repr(sharding, "(None, 'model')");
    nnx_meta_free(sharding);

    /* A scalar getter refuses a structured entry. */
    char *as_text = NULL;
    CHECK_FAILS(NNX_ERR_WRONG_KIND,
                nnx_variable_get_metadata_str(kernel, "out_sharding", &as_text));
    EXPECT(as_text == NULL);

    nnx_meta *hyper = NULL;
    CHECK(nnx_variable_get_metadata(kernel, "optimizer", &hyper));
    CHECK(nnx_meta_len(hyper, &len));
    EXPECT(len == 5);
    const char *key = NULL;
    size_t key_len = 0;
    const nnx_meta *value = NULL;
    CHECK(nnx_meta_map_at(hyper, 2, &key, &key_len, &value));
    EXPECT(key_len == 8 && memcmp(key, "schedule", 8) == 0);
    CHECK(nnx_meta_item(value, 2, &item));
    int64_t step = 0;
    CHECK(nnx_meta_get_int(item, &step));
    EXPECT(step == 100);
    CHECK(nnx_meta_map_get(hyper, "betas", 5, &value));
    CHECK(nnx_meta_item(value, 1, &item));
    double beta2 = 0;
    CHECK(nnx_meta_get_float(item, &beta2));
    EXPECT(beta2 == 0.999);
    CHECK_FAILS(NNX_ERR_WRONG_KIND, nnx_meta_get_int(item, &step));
    CHECK(nnx_meta_map_get(hyper, "nesterov", 8, &value));
    bool nesterov = true;
    CHECK(nnx_meta_get_bool(value, &nesterov));
    EXPECT(!nesterov);
    CHECK_FAILS(NNX_ERR_KEY_NOT_FOUND, nnx_meta_map_get(hyper, "eps", 3, &value));
    expect_repr(hyper, "{'lr': 0.001, 'betas': (0.9, 0.999), 'schedule': [1, 10, 100], "
                       "'nesterov': False, 'clip': inf}");
    nnx_meta_free(hyper);
}

/* The JSON form gives back an equal value; a clone is independent. */
static void json_and_clones(void) {
    nnx_meta *hyper = hyper_parameters();
    char *json = NULL;
    CHECK(nnx_meta_to_json(hyper, &json));
    const char *want = "[\"map\",\"lr\",0.001,\"betas\",[\"tuple\",0.9,0.999],"
                       "\"schedule\",[\"list\",1,10,100],\"nesterov\",false,"
                       "\"clip\",[\"float\",\"0x7ff0000000000000\"]]";
    if (strcmp(json, want) != 0) {
        fprintf(stderr, "JSON is %s\n", json);
        exit(1);
    }
    nnx_meta *back = NULL;
    CHECK(nnx_meta_from_json(json, strlen(json), &back));
    nnx_string_free(json);
    EXPECT(equal(back, hyper));

    nnx_meta *copy = NULL;
    CHECK(nnx_meta_clone(back, &copy));
    set_and_free(copy, "lr", float_value(0.01));
    EXPECT(!equal(copy, back) && equal(back, hyper));
    nnx_meta_free(copy);
    nnx_meta_free(back);
    nnx_meta_free(hyper);

    nnx_meta *bad = NULL;
    const char *object = "{\"a\": 1}";
    CHECK_FAILS(NNX_ERR_FORMAT, nnx_meta_from_json(object, strlen(object), &bad));
    EXPECT(bad == NULL);
}

/* NNX_MAX_DEPTH levels go in; one more is refused and changes nothing. */
static void too_deep(nnx_variable *kernel) {
    nnx_meta *value = NULL;
    CHECK(nnx_meta_new_null(&value));
    for (int level = 1; level <= NNX_MAX_DEPTH; level++) {
        nnx_meta *outer = NULL;
        CHECK(nnx_meta_new_list(&outer));
        append_and_free(outer, value);
        value = outer;
    }
    CHECK(nnx_variable_set_metadata(kernel, "deep", value));
    nnx_meta *outer = NULL;
    CHECK(nnx_meta_new_tuple(&outer));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_meta_append(outer, value));
    size_t len = 1;
    CHECK(nnx_meta_len(outer, &len));
    EXPECT(len == 0);
    nnx_meta_free(outer);

    nnx_meta *map = NULL;
    CHECK(nnx_meta_new_map(&map));
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_meta_map_set(map, "k", 1, value));
    nnx_meta_free(map);

    char *json = NULL;
    CHECK(nnx_meta_to_json(value, &json));
    size_t n = strlen(json);
    char *deeper = malloc(n + 32);
    EXPECT(deeper != NULL);
    snprintf(deeper, n + 32, "[\"tuple\",%s]", json);
    nnx_meta *parsed = NULL;
    CHECK_FAILS(NNX_ERR_TOO_DEEP, nnx_meta_from_json(deeper, strlen(deeper), &parsed));
    EXPECT(parsed == NULL);
    free(deeper);
    nnx_string_free(json);
    nnx_meta_free(value);
    CHECK(nnx_variable_remove_metadata(kernel, "deep"));
}

/* What a variable holds survives a safetensors file. */
static void through_a_file(nnx_state *state) {
    const char *tmp = getenv("TMPDIR");
    char file[256];
    snprintf(file, sizeof file, "%s/nnx-metadata-c-%ld.safetensors",
             tmp && *tmp ? tmp : "/tmp", (long)getpid());
    CHECK(nnx_safetensors_save(state, file, 0));
    nnx_state *loaded = NULL;
    CHECK(nnx_safetensors_load(file, NNX_TYPE_PARAM, NNX_LOAD_COPY, &loaded));
    EXPECT(unlink(file) == 0);
    nnx_variable *kernel = NULL;
    nnx_key path[] = {KEY("linear"), KEY("kernel")};
    CHECK(nnx_state_get_variable(loaded, path, 2, &kernel));
    read_back(kernel);
    nnx_variable_release(kernel);
    nnx_state_free(loaded);
}

int main(void) {
    nnx_variable *kernel = NULL;
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, NULL, &kernel));
    nnx_meta *sharding = out_sharding();
    nnx_meta *hyper = hyper_parameters();
    CHECK(nnx_variable_set_metadata(kernel, "out_sharding", sharding));
    CHECK(nnx_variable_set_metadata(kernel, "optimizer", hyper));
    /* The variable took copies: changing or freeing ours leaves it alone. */
    append_and_free(sharding, str_value("extra"));
    nnx_meta_free(sharding);
    nnx_meta_free(hyper);
    read_back(kernel);

    json_and_clones();
    too_deep(kernel);

    nnx_state *state = NULL;
    CHECK(nnx_state_new(&state));
    nnx_key path[] = {KEY("linear"), KEY("kernel")};
    CHECK(nnx_state_set_variable(state, path, 2, kernel));
    through_a_file(state);
    nnx_state_free(state);
    nnx_variable_release(kernel);
    printf("metadata: ok\n");
    return 0;
}
