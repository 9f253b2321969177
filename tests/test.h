/* test.h — a minimal test harness: CHECK counts passes and failures, test_done() prints the
 * closing "N passed, N failed" line the runner sums. */
#ifndef NBL_TEST_H
#define NBL_TEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Calls fn on every fixture model (the .gguf files in models); returns how many there were. */
static inline int for_each_fixture_model(void (*fn)(const char *path, const char *name)) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models", fixtures_dir());
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s", dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static inline int test_done(void) {
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
