/* cmd_bench.c — `nbl bench`: prompt-processing and generation speed measured the way llama-bench
 * measures them (ppN: one batch of N random tokens into an empty cache; tgN: N single-token
 * decodes from an empty cache; one warm-up run, then REPS timed runs, mean ± sample stddev), printed
 * as the same markdown table, plus the weight bandwidth that decoding achieves. Public API only. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* One timed run: seconds, or a negative value on failure (message already printed). */
static double run_once(nbl_session *s, int32_t n_vocab, int32_t n_prompt, int32_t n_gen) {
    nbl_error err;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n_prompt > 0 ? n_prompt : 1));
    if (!tok) return -1.0;
    for (int32_t i = 0; i < (n_prompt > 0 ? n_prompt : 1); i++) tok[i] = (int32_t)(rnd() % (uint32_t)n_vocab);
    if (nbl_session_truncate(s, 0) != NBL_OK) {
        fprintf(stderr, "nbl bench: cannot reset the session\n");
        free(tok);
        return -1.0;
    }
    const double t0 = now_s();
    nbl_status st = NBL_OK;
    if (n_prompt > 0) {
        st = nbl_session_eval(s, tok, n_prompt, 0, &err);
    } else {
        for (int32_t i = 0; i < n_gen && st == NBL_OK; i++) {
            int32_t t = (int32_t)(rnd() % (uint32_t)n_vocab);
            st = nbl_session_eval(s, &t, 1, 0, &err);
        }
    }
    const double dt = now_s() - t0;
    free(tok);
    if (st != NBL_OK) {
        fprintf(stderr, "nbl bench: eval failed: %s\n", err.msg);
        return -1.0;
    }
    return dt;
}

static const char *usage =
    "usage: nbl bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS]\n"
    "  -p  prompt tokens for the ppN test (default 128; 0 skips it)\n"
    "  -n  generated tokens for the tgN test (default 64; 0 skips it)\n"
    "  -t  threads (default: the model's default)\n"
    "  -r  timed repetitions after one warm-up run (default 5)";

int cmd_bench(int argc, char **argv) {
    const char *path = NULL;
    int64_t n_prompt = 128, n_gen = 64, threads = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-m")) path = v, i++, bad = !v;
        else if (!strcmp(a, "-p")) bad = cli_int(v, 0, 1 << 20, &n_prompt), i++;
        else if (!strcmp(a, "-n")) bad = cli_int(v, 0, 1 << 20, &n_gen), i++;
        else if (!strcmp(a, "-t")) bad = cli_int(v, 1, 1024, &threads), i++;
        else if (!strcmp(a, "-r")) bad = cli_int(v, 1, 1000, &reps), i++;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts(usage);
            return 0;
        } else
            return cli_fail("bench", "unknown option '%s'\n%s", a, usage);
        if (bad) return cli_fail("bench", "option %s needs a valid value\n%s", a, usage);
    }
    if (!path) return cli_fail("bench", "need -m MODEL\n%s", usage);

    nbl_error err;
    nbl_model_options mo;
    nbl_model_options_init(&mo);
    mo.n_threads = (int32_t)threads;
    nbl_model *m = NULL;
    if (nbl_model_open_file(path, &mo, &m, &err) != NBL_OK) return cli_fail("bench", "%s", err.msg);
    nbl_model_info info;
    nbl_model_get_info(m, &info);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = (int32_t)(n_prompt > n_gen ? n_prompt : n_gen) + 16;
    so.n_batch = (int32_t)(n_prompt > 0 ? n_prompt : 1);
    so.n_threads = (int32_t)threads;
    nbl_session *s = NULL;
    if (nbl_session_new(m, &so, &s, &err) != NBL_OK) {
        nbl_model_free(m);
        return cli_fail("bench", "%s", err.msg);
    }

    char model_name[96];
    const double params_b = (double)info.n_params / 1e9;
    snprintf(model_name, sizeof model_name, "%s %.1fB%s%s", info.arch, params_b, info.name[0] ? " " : "",
             info.name);
    printf("| model | size | params | backend | threads | test | t/s | weights GB/s |\n");
    printf("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    /* The session's thread count is not exposed; report what was asked for (0: automatic). */
    char thr[16];
    if (threads > 0) snprintf(thr, sizeof thr, "%d", (int)threads);
    else if (mo.n_threads > 0) snprintf(thr, sizeof thr, "%d", mo.n_threads);
    else snprintf(thr, sizeof thr, "auto");
    int rc = 0;
    for (int test = 0; test < 2 && !rc; test++) {
        const int32_t np = test == 0 ? (int32_t)n_prompt : 0, ng = test == 0 ? 0 : (int32_t)n_gen;
        const int32_t n_tok = test == 0 ? np : ng;
        if (n_tok == 0) continue;
        if (run_once(s, info.n_vocab, np, ng) < 0) { /* warm-up: page in the weights, spin up threads */
            rc = 2;
            break;
        }
        double sum = 0, sum2 = 0;
        for (int64_t r = 0; r < reps; r++) {
            const double dt = run_once(s, info.n_vocab, np, ng);
            if (dt < 0) {
                rc = 2;
                break;
            }
            const double ts = n_tok / dt;
            sum += ts;
            sum2 += ts * ts;
        }
        if (rc) break;
        const double mean = sum / (double)reps;
        const double sd = reps > 1 ? sqrt(fmax(0.0, (sum2 - sum * mean) / (double)(reps - 1))) : 0.0;
        char bw[32] = "";
        /* Decoding reads every weight matrix once per token (the tied embedding doubles as the
         * output matrix), so the model's weight bytes per token time is the bandwidth achieved. */
        if (test == 1) snprintf(bw, sizeof bw, "%.2f", (double)info.weight_bytes * mean / 1e9);
        printf("| %s | %.2f MiB | %.2f M | CPU | %s | %s%d | %.2f ± %.2f | %s |\n", model_name,
               (double)info.weight_bytes / (1024.0 * 1024.0), (double)info.n_params / 1e6, thr,
               test == 0 ? "pp" : "tg", n_tok, mean, sd, bw);
        fflush(stdout);
    }
    nbl_session_free(s);
    nbl_model_free(m);
    return rc;
}
