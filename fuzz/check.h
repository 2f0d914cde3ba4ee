// FUZZ_CHECK: a property a harness asserts on every input; a violation
// aborts, which libFuzzer reports as a crash with the input saved.
#ifndef SESSIOND_FUZZ_CHECK_H_
#define SESSIOND_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition)                                          \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #condition);                              \
      std::abort();                                                    \
    }                                                                  \
  } while (false)

#endif  // SESSIOND_FUZZ_CHECK_H_
