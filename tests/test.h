/* test.h — a minimal test harness: CHECK counts passes and failures, test_done() prints the
 * closing "N passed, N failed" line the runner sums. */
#ifndef NBL_TEST_H
#define NBL_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int t_pass, t_fail;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (cond) {                                                                            \
            t_pass++;                                                                          \
        } else {                                                                               \
            t_fail++;                                                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* Fixtures live beside the project: ../shared/fixtures (override with NBL_FIXTURES). */
static inline const char *fixtures_dir(void) {
    const char *e = getenv("NBL_FIXTURES");
    return e ? e : "../shared/fixtures";
}

static inline int test_done(void) {
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
