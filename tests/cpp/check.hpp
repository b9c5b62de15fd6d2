// check.hpp: the checks of the C++ test programs in tests/cpp/ (header
// only, not a program itself). Each failed check prints where and exits 1.

#ifndef NNX_TESTS_CPP_CHECK_HPP
#define NNX_TESTS_CPP_CHECK_HPP

#include "nnx_state.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace nnx_test {

/// The number of checks run so far, for the closing "N checks OK" line.
inline int checks = 0;

/// Runs `body`, which must throw nnx::Error with `status`; gives the message.
template <typename F>
std::string expect_error(nnx_status status, F body, const char *file, int line) {
    ++checks;
    try {
        body();
    } catch (const nnx::Error &e) {
        if (e.status() != status) {
            std::fprintf(stderr, "%s:%d: expected %s, got %s\n", file, line,
                         nnx_status_name(status), e.what());
            std::exit(1);
        }
        return e.message();
    }
    std::fprintf(stderr, "%s:%d: expected %s, nothing was thrown\n", file, line,
                 nnx_status_name(status));
    std::exit(1);
}

}  // namespace nnx_test

#define CHECK(cond)                                                                 \
    do {                                                                            \
        ++nnx_test::checks;                                                         \
        if (!(cond)) {                                                              \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                                    \
            std::exit(1);                                                           \
        }                                                                           \
    } while (0)

/// EXPECT_ERROR(NNX_ERR_..., statements): the statements must throw
/// nnx::Error with that status. The expression gives the error's message.
#define EXPECT_ERROR(status, ...) \
    nnx_test::expect_error(status, [&] { __VA_ARGS__; }, __FILE__, __LINE__)

#endif /* NNX_TESTS_CPP_CHECK_HPP */
