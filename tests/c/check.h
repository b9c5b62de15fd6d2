/*
 * check.h: the assertions the C test programs share. A failed check prints
 * where and why (the status name and the library's message) and exits 1.
 */

#ifndef NNX_TEST_CHECK_H
#define NNX_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nnx_state.h"

/* `call` must return NNX_OK. */
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

/* `call` must fail with status `want`. */
#define CHECK_FAILS(want, call)                                             \
    do {                                                                    \
        nnx_status check_status_ = (call);                                  \
        if (check_status_ != (want)) {                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n",    \
                    __FILE__, __LINE__, #call,                              \
                    nnx_status_name((int32_t)check_status_),                \
                    nnx_status_name((int32_t)(want)),                       \
                    nnx_last_error_message());                              \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* `cond` must hold. */
#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__,    \
                    __LINE__, #cond);                                       \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* Path keys from a string literal or an integer. */
#define KEY(s) ((nnx_key){.kind = NNX_KEY_STR, .str = (s), .str_len = sizeof(s) - 1, .int_value = 0})
#define IKEY(i) ((nnx_key){.kind = NNX_KEY_INT, .str = NULL, .str_len = 0, .int_value = (i)})

#endif
