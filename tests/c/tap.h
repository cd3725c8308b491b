/* tap.h: the Test Anything Protocol for the C unit tests: one "ok N - what" or
 * "not ok N - what" per CHECK, and TAP_END() prints the plan and gives the exit
 * status. Include once per test program. */
#ifndef TH_TAP_H
#define TH_TAP_H

#include <stdio.h>

static int planned, failures;

#define CHECK(cond, ...)                                 \
  do {                                                   \
    planned++;                                           \
    if (cond) {                                          \
      printf("ok %d - ", planned);                       \
    } else {                                             \
      failures++;                                        \
      printf("not ok %d - ", planned);                   \
    }                                                    \
    printf(__VA_ARGS__);                                 \
    printf("\n");                                        \
  } while (0)

#define TAP_END() (printf("1..%d\n", planned), failures ? 1 : 0)

#endif
