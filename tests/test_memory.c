/* test_memory.c — loading a real-size model must not copy its weights: peak RSS after opening a
 * synthetic Qwen2.5-0.5B Q4_0 (real shapes) and running a few tokens stays within
 * file size + 64 MiB + KV cache. The model is written by a child process so the writer's own
 * buffers never count against this process's peak. */
#include "nbl.h"
#include "nbl_impl.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

int main(void) {
#if defined(__SANITIZE_ADDRESS__)
    /* ASan's shadow memory and quarantine make RSS meaningless; the plain build measures it. */
    printf("memory budget is measured in the build without sanitizers\n");
    return test_done();
#endif
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/nbl-test-memory-%d.gguf", tmp, (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        nbl_synth_opts o = {.model = "qwen2.5-0.5b-instruct", .mix = "q4_0", .seed = 7};
        nbl_error err = {0};
        if (nbl_synth_write(&o, path, &err)) {
            fprintf(stderr, "synth: %s\n", err.msg);
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "synth child failed");
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "synth wrote no file");
    if (t_fail) return test_done();

    long base = peak_rss_kib();
    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *s = NULL;
    CHECK(nbl_model_open_file(path, NULL, &m, &err) == NBL_OK, "open: %s", err.msg);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 512;
    so.n_threads = 2;
    if (m) CHECK(nbl_session_new(m, &so, &s, &err) == NBL_OK, "session: %s", err.msg);
    if (s) {
        int32_t toks[16];
        for (int i = 0; i < 16; i++) toks[i] = 1000 + 37 * i;
        CHECK(nbl_session_eval(s, toks, 16, 0, &err) == NBL_OK, "prefill: %s", err.msg);
        for (int i = 0; i < 4; i++) CHECK(nbl_session_eval(s, &toks[i], 1, 0, &err) == NBL_OK, "decode: %s", err.msg);
    }
    long peak = peak_rss_kib();
    nbl_model_info info;
    if (m) {
        nbl_model_get_info(m, &info);
        /* f16 K and V for every layer, KV head and position */
        double kv = 2.0 * info.n_layer * info.n_head_kv * so.n_ctx * info.head_dim * 2;
        double grown = (double)(peak - base) * 1024, budget = (double)sb.st_size + 64.0 * 1048576 + kv;
        printf("file %.1f MiB, KV cache %.1f MiB, peak RSS growth %.1f MiB, budget %.1f MiB\n",
               sb.st_size / 1048576.0, kv / 1048576.0, grown / 1048576.0, budget / 1048576.0);
        CHECK(grown <= budget, "peak RSS grew %.1f MiB, over the %.1f MiB budget", grown / 1048576.0,
              budget / 1048576.0);
    }
    nbl_session_free(s);
    nbl_model_free(m);
    unlink(path);
    return test_done();
}
