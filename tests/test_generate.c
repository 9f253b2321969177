/* test_generate.c — the shared decode loop (generate.c). Outside reference: stories260K is a real
 * model whose greedy text llama.cpp recorded (fixtures/golden/stories260K.expected.txt), so stop
 * strings and the sentence budget must cut exactly that text at the documented places. */
#include "nbl.h"
#include "nbl_impl.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static char *expected_text(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/golden/stories260K.expected.txt", fixtures_dir());
    size_t n;
    nbl_error err;
    return nbl_read_file(path, &n, &err);
}

/* Runs a generation to the end and returns its text (malloc'd). */
static char *run_gen(nbl_session *s, int32_t *finish, int32_t *n_tokens) {
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    nbl_error err = {0};
    *finish = 0;
    *n_tokens = 0;
    for (int i = 0; i < 4096 && !*finish; i++) {
        int32_t k = nbl_gen_next(s, out + n, 256, finish, NULL, &err);
        CHECK(k >= 0, "gen_next: %s", err.msg);
        if (k < 0) break;
        n += (size_t)k;
        (*n_tokens)++;
    }
    out[n] = 0;
    return out;
}

static void stories(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", fixtures_dir());
    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *s = NULL;
    char *exp = expected_text();
    CHECK(exp != NULL, "expected text missing");
    CHECK(nbl_model_open_file(path, NULL, &m, &err) == NBL_OK, "open: %s", err.msg);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 256;
    if (m) CHECK(nbl_session_new(m, &so, &s, &err) == NBL_OK, "session: %s", err.msg);
    if (!s || !exp) goto out;
    const int32_t bos = 1;
    int32_t fin, nt;

    /* A stop string ends the text right before it. */
    nbl_gen_params p;
    nbl_gen_params_init(&p);
    const char *stops[] = {"zzz-never", "girl"};
    p.stop = stops;
    p.n_stop = 2;
    CHECK(nbl_gen_start_tokens(s, &bos, 1, &p, &err) == NBL_OK, "start: %s", err.msg);
    char *t = run_gen(s, &fin, &nt);
    const char *cut = strstr(exp, "girl");
    CHECK(cut && strlen(t) == (size_t)(cut - exp) && !strncmp(t, exp, strlen(t)), "stop string: got '%s'", t);
    CHECK(fin == NBL_FINISH_STOP, "stop string finish %d", fin);
    free(t);

    /* A sentence budget of 2 ends after the second sentence's terminator. */
    nbl_gen_params_init(&p);
    p.max_sentences = 2;
    CHECK(nbl_gen_start_tokens(s, &bos, 1, &p, &err) == NBL_OK, "start: %s", err.msg);
    t = run_gen(s, &fin, &nt);
    const char *second = strstr(exp, "park.");
    CHECK(second && strlen(t) == (size_t)(second + 5 - exp) && !strncmp(t, exp, strlen(t)),
          "sentence budget: got '%s'", t);
    CHECK(fin == NBL_FINISH_STOP, "sentence budget finish %d", fin);
    free(t);

    /* max_tokens: LENGTH after exactly that many tokens, and the text is the greedy text's start. */
    nbl_gen_params_init(&p);
    p.max_tokens = 30;
    CHECK(nbl_gen_start_tokens(s, &bos, 1, &p, &err) == NBL_OK, "start: %s", err.msg);
    t = run_gen(s, &fin, &nt);
    nbl_usage u;
    nbl_gen_usage(s, &u);
    CHECK(fin == NBL_FINISH_LENGTH && u.completion_tokens == 30, "max_tokens: finish %d, %d tokens", fin,
          u.completion_tokens);
    CHECK(!strncmp(t, exp, strlen(t)) && strlen(t) > 50, "max_tokens text: '%s'", t);
    free(t);

    /* The same prompt again reuses the cache: everything but the last prompt token. */
    int32_t prompt[3] = {1, 403, 407};
    nbl_gen_params_init(&p);
    p.max_tokens = 5;
    CHECK(nbl_gen_start_tokens(s, prompt, 3, &p, &err) == NBL_OK, "start: %s", err.msg);
    nbl_gen_usage(s, &u);
    CHECK(u.prompt_tokens == 3 && u.cached_tokens == 2, "cache reuse: %d of %d cached", u.cached_tokens,
          u.prompt_tokens);
    free(run_gen(s, &fin, &nt));

    /* Bad parameters are refused with a message. */
    p.max_tokens = -1;
    CHECK(nbl_gen_start_tokens(s, &bos, 1, &p, &err) == NBL_E_ARG, "negative max_tokens accepted");
    int32_t finish;
    char buf[256];
    nbl_session_free(s);
    s = NULL;
    CHECK(nbl_gen_next(NULL, buf, sizeof buf, &finish, NULL, &err) == -1, "gen_next without session");
out:
    free(exp);
    nbl_session_free(s);
    nbl_model_free(m);
}

/* A conversation longer than the context drops its oldest turns but keeps the system prompt. */
static void context_fit(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/qwen2-tiny-realvocab-q8_0.gguf", fixtures_dir());
    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *s = NULL;
    CHECK(nbl_model_open_file(path, NULL, &m, &err) == NBL_OK, "open: %s", err.msg);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 160;
    if (m) CHECK(nbl_session_new(m, &so, &s, &err) == NBL_OK, "session: %s", err.msg);
    if (!s) goto out;
    nbl_chat_message msgs[9] = {{"system", "You are terse."}};
    const char *lines[] = {"Tell me about the history of bread baking in Europe please.",
                           "Bread was baked in Europe for thousands of years in many styles.",
                           "What about sourdough starters and how to keep them alive?",
                           "Feed it flour and water daily and keep it warm.",
                           "And rye breads from the north, how are they different?",
                           "Rye has less gluten so the loaves are denser and sour.",
                           "Thanks, one more: what temperature should the oven be?",
                           "Around 230 degrees Celsius for most crusty loaves."};
    for (int i = 0; i < 8; i++) msgs[i + 1] = (nbl_chat_message){i % 2 ? "assistant" : "user", lines[i]};
    nbl_gen_params p;
    nbl_gen_params_init(&p);
    p.max_tokens = 40;
    /* 9 messages (system + 4 exchanges) ending with an assistant turn: add the final question. */
    nbl_chat_message conv[10];
    memcpy(conv, msgs, sizeof msgs);
    conv[9] = (nbl_chat_message){"user", "Last question: should I use steam?"};
    CHECK(nbl_gen_start_chat(s, NULL, conv, 10, &p, &err) == NBL_OK, "start: %s", err.msg);
    nbl_usage u;
    nbl_gen_usage(s, &u);
    CHECK(u.dropped_messages > 0 && u.dropped_messages % 2 == 0, "dropped %d messages", u.dropped_messages);
    CHECK(u.prompt_tokens <= so.n_ctx - p.max_tokens, "prompt of %d tokens does not leave room", u.prompt_tokens);
    /* The cache starts with exactly the system turn as the template renders it alone. */
    int32_t *sys = NULL, n_sys = 0;
    CHECK(nbl_chat_tokenize(m, NULL, msgs, 1, 0, &sys, &n_sys, &err) == NBL_OK, "tokenize: %s", err.msg);
    const int32_t *cached = nbl_session_tokens(s);
    CHECK(n_sys > 0 && nbl_session_pos(s) > n_sys && !memcmp(cached, sys, sizeof *sys * (size_t)n_sys),
          "system prompt not kept at the start of the context");
    free(sys);
    int32_t fin, nt;
    free(run_gen(s, &fin, &nt));
    CHECK(fin != NBL_FINISH_NONE, "generation did not finish");
    /* A single message that cannot fit is an error, not a crash. */
    char *huge = malloc(20000);
    for (int i = 0; i < 19999; i++) huge[i] = "abc de"[i % 6];
    huge[19999] = 0;
    nbl_chat_message big[1] = {{"user", huge}};
    CHECK(nbl_gen_start_chat(s, NULL, big, 1, &p, &err) == NBL_E_CONTEXT, "oversized message accepted");
    free(huge);
out:
    nbl_session_free(s);
    nbl_model_free(m);
}

/* An external executor for external(): runs the forward pass on a CPU session of its own, which
 * holds its own cache and rebuilds it from the cached tokens it is handed (as the GPU executor
 * does when several sessions share one device cache). After `lose_after` calls it reports the
 * device lost, or fails with `fail_status` when that is set. */
typedef struct fake_exec {
    nbl_session *inner;
    int32_t calls, lose_after, lost_calls;
    nbl_status fail_status;
    int32_t bad_cached; /* calls whose cached[] disagreed with what was evaluated before */
    int32_t *seen;      /* every token evaluated so far, by position */
    int32_t n_seen;
    int32_t n_vocab;    /* logits per row */
} fake_exec;

static nbl_status fake_forward(void *ctx, const int32_t *cached, int32_t pos, const int32_t *tokens,
                               int32_t n, int32_t logits_all, float *out, nbl_error *err) {
    fake_exec *f = ctx;
    f->calls++;
    if (f->fail_status) return nbl_set_err(err, f->fail_status, "fake executor: failing on purpose");
    if (f->lose_after && f->calls > f->lose_after) {
        f->lost_calls++;
        return nbl_set_err(err, NBL_E_DEVICE, "fake executor: device lost");
    }
    if (pos > f->n_seen || (pos && memcmp(cached, f->seen, (size_t)pos * sizeof *cached))) f->bad_cached++;
    int32_t keep = 0, have = nbl_session_pos(f->inner);
    const int32_t *held = nbl_session_tokens(f->inner);
    while (keep < have && keep < pos && held[keep] == cached[keep]) keep++;
    nbl_session_truncate(f->inner, keep);
    nbl_status st = keep < pos ? nbl_session_eval(f->inner, cached + keep, pos - keep, 0, err) : NBL_OK;
    if (!st) st = nbl_session_eval(f->inner, tokens, n, logits_all, err);
    if (st) return st;
    const int32_t V = f->n_vocab;
    const int32_t rows = logits_all ? n : 1;
    for (int32_t r = 0; r < rows; r++)
        memcpy(out + (size_t)r * V, nbl_session_logits(f->inner, logits_all ? r : -1), (size_t)V * sizeof(float));
    memcpy(f->seen + pos, tokens, (size_t)n * sizeof *tokens);
    f->n_seen = pos + n;
    return NBL_OK;
}

/* A session run by an external executor generates exactly what a CPU session does; when the
 * executor loses its device mid-generation the session moves to the CPU, rebuilds its cache and
 * the text still comes out byte for byte; other executor failures fail the eval and keep the
 * cache as it was. */
static void external(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", fixtures_dir());
    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *cpu = NULL, *ext = NULL;
    fake_exec f = {0};
    char *exp = expected_text();
    CHECK(nbl_model_open_file(path, NULL, &m, &err) == NBL_OK, "open: %s", err.msg);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 256;
    if (m) CHECK(nbl_session_new(m, &so, &f.inner, &err) == NBL_OK, "session: %s", err.msg);
    so.forward = fake_forward;
    so.forward_ctx = &f;
    if (m) CHECK(nbl_session_new(m, &so, &ext, &err) == NBL_OK, "external session: %s", err.msg);
    f.seen = calloc(256, sizeof *f.seen);
    if (m) {
        nbl_model_info mi;
        nbl_model_get_info(m, &mi);
        f.n_vocab = mi.n_vocab;
    }
    if (!ext || !exp || !f.seen) goto out;
    CHECK(nbl_session_external(ext) == 1, "a session with an executor reports it");
    const int32_t bos = 1;
    int32_t fin, nt;
    nbl_gen_params p;
    nbl_gen_params_init(&p);
    p.max_tokens = 200;

    /* All on the executor: the golden text (the executor computes on the CPU, bit for bit). */
    CHECK(nbl_gen_start_tokens(ext, &bos, 1, &p, &err) == NBL_OK, "start: %s", err.msg);
    char *t = run_gen(ext, &fin, &nt);
    CHECK(!strncmp(t, exp, strlen(t)) && strlen(t) > 100, "external text differs from the golden: %.60s", t);
    CHECK(f.bad_cached == 0 && f.calls == 200, "executor calls %d (want 200), %d with wrong cached tokens",
          f.calls, f.bad_cached);
    char *want = t;

    /* Device lost after 50 steps of a fresh generation: same text, now from the CPU. */
    nbl_session_truncate(ext, 0);
    f.calls = 0;
    f.lose_after = 50;
    CHECK(nbl_gen_start_tokens(ext, &bos, 1, &p, &err) == NBL_OK, "start: %s", err.msg);
    t = run_gen(ext, &fin, &nt);
    CHECK(!strcmp(t, want), "text after a device loss differs:\n%s\nwant\n%s", t, want);
    CHECK(f.lost_calls == 1, "the executor was asked %d times after losing its device (want 1)", f.lost_calls);
    CHECK(nbl_session_external(ext) == 0, "the session runs on the CPU after the loss");
    free(t);
    free(want);

    /* Another failure is the eval's failure, with the cache left as it was. */
    nbl_session_free(ext);
    ext = NULL;
    memset(&f.seen[0], 0, 256 * sizeof *f.seen);
    f.calls = f.lose_after = f.lost_calls = f.n_seen = 0;
    if (nbl_session_new(m, &so, &ext, &err)) goto out;
    const int32_t two[2] = {1, 5};
    CHECK(nbl_session_eval(ext, two, 2, 0, &err) == NBL_OK, "eval: %s", err.msg);
    f.fail_status = NBL_E_IO;
    CHECK(nbl_session_eval(ext, two, 1, 0, &err) == NBL_E_IO && strstr(err.msg, "on purpose"),
          "an executor's own failure is returned: %s", err.msg);
    CHECK(nbl_session_pos(ext) == 2 && nbl_session_external(ext) == 1, "pos %d after a failed eval",
          nbl_session_pos(ext));
out:
    free(exp);
    free(f.seen);
    nbl_session_free(cpu);
    nbl_session_free(ext);
    nbl_session_free(f.inner);
    nbl_model_free(m);
}

int main(void) {
    stories();
    context_fit();
    external();
    return test_done();
}
