/* wasm_api.c — the flat C API the WebAssembly build exports to JavaScript (web/core.js): open a
 * model from bytes already in wasm memory, sessions, chat generation from OpenAI-style JSON, one
 * token per call, tokenizing and raw logits. Only plain numbers and pointers cross the boundary,
 * and all model logic stays in C. Compiled only by Emscripten; native builds see an empty file. */
#ifdef __EMSCRIPTEN__
#include "kernels.h"
#include "nbl_impl.h"

#include <emscripten.h>
#include <emscripten/heap.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define API EMSCRIPTEN_KEEPALIVE

/* Memory kept free beyond a model's bytes, for the KV cache, activations and logits: a
 * 0.5B-class model at a 4,096-token context needs about 60 MiB of it. */
#define NBLW_RESERVE ((uint64_t)128 << 20)
#define NBLW_MAX_STOP 16

/* Everything a call reports back: the last error and a result buffer (text, JSON or ids) that
 * stays valid until the next call that writes it. The engine is driven from one thread. */
static nbl_error g_err;
static char *g_out;
static size_t g_out_n, g_out_cap;

typedef struct nblw_model {
    nbl_model *m;
    void *bytes; /* the GGUF, owned: nbl_model_open_buffer keeps pointers into it; with a
                  * metadata open, the file's first bytes */
    void *data;  /* a metadata open's data section once attached, owned */
} nblw_model;

typedef struct nblw_session {
    nbl_session *s;
    nblw_model *model;
    nbl_grammar *grammar;       /* response_format of the current generation, or NULL */
    int32_t result[4];          /* nblw_gen_next: status, text length, finish, token */
    int32_t usage[4];           /* prompt, cached, completion, dropped messages */
    char text[512];             /* text released by the last nblw_gen_next */
} nblw_session;

API const char *nblw_error(void) { return g_err.msg; }
API int32_t nblw_error_code(void) { return (int32_t)g_err.code; }
API const char *nblw_out(void) { return g_out ? g_out : ""; }
API int32_t nblw_out_len(void) { return (int32_t)g_out_n; }

static int32_t fail(nbl_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int32_t fail(nbl_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g_err.code = code;
    vsnprintf(g_err.msg, sizeof g_err.msg, fmt, ap);
    va_end(ap);
    return (int32_t)code;
}

/* ---- result buffer: JSON writing ---------------------------------------------------------- */

static int out_reserve(size_t extra) {
    if (g_out_n + extra + 1 <= g_out_cap) return 0;
    size_t cap = g_out_cap ? g_out_cap : 1024;
    while (cap < g_out_n + extra + 1) cap *= 2;
    char *p = realloc(g_out, cap);
    if (!p) return -1;
    g_out = p;
    g_out_cap = cap;
    return 0;
}

static void out_reset(void) {
    g_out_n = 0;
    if (!out_reserve(0)) g_out[0] = 0;
}

static void out_raw(const char *s, size_t n) {
    if (out_reserve(n)) return;
    memcpy(g_out + g_out_n, s, n);
    g_out_n += n;
    g_out[g_out_n] = 0;
}

static void out_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out_fmt(const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) out_raw(tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string; bytes >= 0x80 pass through (the engine's strings are UTF-8). */
static void out_str(const char *s) {
    out_raw("\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            out_raw(e, 2);
        } else if (c < 0x20) {
            out_fmt("\\u%04x", c);
        } else {
            out_raw(s, 1);
        }
    }
    out_raw("\"", 1);
}

/* ---- memory ------------------------------------------------------------------------------- */

/* Bytes the module may ever address (MAXIMUM_MEMORY) and bytes below the current heap top. */
API double nblw_heap_max(void) { return (double)emscripten_get_heap_max(); }
API double nblw_heap_used(void) { return (double)(uintptr_t)sbrk(0); }

/* malloc (dlmalloc) never asks sbrk for 2 GiB or more at once (its sizes stay below half the
 * address space), so model buffers from 1 GiB up come from sbrk directly, in steps, as one
 * region outside malloc. sbrk cannot shrink, so the region is kept when its model is freed and
 * reused (or extended, when it is still at the top of the heap) for the next big model. */
#define NBLW_BIG ((size_t)1 << 30)
static uint8_t *g_big;
static size_t g_big_cap;
static int g_big_used;

static int sbrk_steps(size_t n) {
    while (n) {
        size_t step = n < NBLW_BIG ? n : NBLW_BIG;
        if (sbrk((intptr_t)step) == (void *)-1) return -1;
        n -= step;
    }
    return 0;
}

static void *model_bytes_alloc(size_t size) {
    if (size < NBLW_BIG) return malloc(size);
    if (g_big_used) return NULL;
    if (g_big && size <= g_big_cap) {
        g_big_used = 1;
        return g_big;
    }
    uint8_t *top = sbrk(0);
    if (g_big && g_big + g_big_cap == top) {
        /* Extend in place; a partial extension still belongs to the region. */
        uint8_t *before = top;
        int rc = sbrk_steps(size - g_big_cap);
        g_big_cap += (size_t)((uintptr_t)sbrk(0) - (uintptr_t)before);
        if (rc) return NULL;
    } else {
        size_t pad = (size_t)((64 - (uintptr_t)top % 64) % 64);
        if (sbrk_steps(pad)) return NULL;
        uint8_t *base = sbrk(0);
        int rc = sbrk_steps(size);
        /* Nothing else allocates between the steps (one thread drives the engine), so they are
         * contiguous; a failed attempt still becomes the region, for a smaller model later. */
        const size_t got = (size_t)((uintptr_t)sbrk(0) - (uintptr_t)base);
        if (got > g_big_cap) {
            g_big = base;
            g_big_cap = got;
        }
        if (rc) return NULL;
    }
    g_big_used = 1;
    return g_big;
}

static void model_bytes_free(void *p) {
    if (p && p == g_big) g_big_used = 0;
    else free(p);
}

/* Allocates the buffer a model's bytes are read into, after checking that they and the room a
 * session needs fit below the memory limit, so an oversized model fails before anything is
 * allocated or downloaded into memory. Returns 0 with nblw_error set when it does not fit. */
API void *nblw_model_alloc(double size) {
    const double max = nblw_heap_max(), used = nblw_heap_used();
    if (!(size > 0) || size != floor(size)) {
        fail(NBL_E_ARG, "model: invalid size %.0f", size);
        return NULL;
    }
    const int reuse = size >= (double)NBLW_BIG && g_big && !g_big_used && size <= (double)g_big_cap;
    if (!reuse && size + (double)NBLW_RESERVE > max - used) {
        fail(NBL_E_NOMEM,
             "model: %.0f MiB does not fit in WebAssembly memory: the limit is %.0f MiB, %.0f MiB are "
             "in use and %.0f MiB are kept for the context; use a smaller or more quantized model",
             size / 1048576.0, max / 1048576.0, used / 1048576.0, (double)NBLW_RESERVE / 1048576.0);
        return NULL;
    }
    void *p = model_bytes_alloc((size_t)size);
    if (!p)
        fail(NBL_E_NOMEM, "model: cannot allocate %.0f MiB of WebAssembly memory (%.0f MiB in use, limit %.0f MiB)",
             size / 1048576.0, used / 1048576.0, max / 1048576.0);
    return p;
}

API void nblw_free(void *p) { free(p); }
/* Frees a buffer from nblw_model_alloc that was never handed to nblw_model_open. */
API void nblw_model_bytes_free(void *p) { model_bytes_free(p); }
API void *nblw_malloc(double size) { return size > 0 && size < 4294967295.0 ? malloc((size_t)size) : NULL; }

/* 1 in the pthreads build. */
API int32_t nblw_threaded(void) {
#ifdef __EMSCRIPTEN_PTHREADS__
    return 1;
#else
    return 0;
#endif
}

/* ---- models ------------------------------------------------------------------------------- */

/* The options every wasm open uses: one thread per model until a session asks for more. */
static nbl_model_options wasm_model_options(int32_t vocab_only) {
    nbl_model_options o;
    nbl_model_options_init(&o);
    o.vocab_only = vocab_only;
    o.n_threads = 1;
    return o;
}

/* Wraps the result of an open over bytes, which it owns from here: kept with the model, or
 * freed now when the open failed (g_err says why) or memory ran out. */
static nblw_model *own_model(nbl_status st, nbl_model *m, void *bytes) {
    nblw_model *w = st ? NULL : calloc(1, sizeof *w);
    if (!w) {
        if (!st) {
            nbl_model_free(m);
            fail(NBL_E_NOMEM, "model: out of memory");
        }
        model_bytes_free(bytes);
        return NULL;
    }
    w->m = m;
    w->bytes = bytes;
    /* The CPU builds regroup the weights in the bytes they own (nothing reads them as a file
     * again), where a copy would halve the largest model that fits in wasm memory. The WebGPU
     * build keeps the file's layout: its plan may still upload weights from these bytes. */
#if defined(NBL_WASM_GPU)
    nbl_model_set_regroup(m, NBL_REGROUP_NONE);
#else
    nbl_model_set_regroup(m, NBL_REGROUP_INPLACE);
#endif
    return w;
}

/* Opens the GGUF in bytes (from nblw_model_alloc), taking ownership of them: they are freed
 * with the model, or now on failure. */
API nblw_model *nblw_model_open(void *bytes, double size, int32_t vocab_only) {
    const nbl_model_options o = wasm_model_options(vocab_only);
    nbl_model *m = NULL;
    return own_model(nbl_model_open_buffer(bytes, (size_t)size, &o, &m, &g_err), m, bytes);
}

/* What the last nblw_model_open_meta that ran short asks for: read that many bytes and retry. */
static double g_more;
API double nblw_model_more(void) { return g_more; }

/* Opens a model from the first avail bytes of its file_size-byte GGUF (in prefix, from
 * nblw_model_alloc; owned as nblw_model_open's bytes): metadata, tokenizer and shapes without
 * the weights (nbl_model_open_meta). Where the prefix is too short, NULL with nblw_model_more()
 * set. */
API nblw_model *nblw_model_open_meta(void *prefix, double avail, double file_size) {
    const nbl_model_options o = wasm_model_options(0);
    nbl_model *m = NULL;
    uint64_t more = 0;
    const nbl_status st = nbl_model_open_meta(prefix, (size_t)avail, (uint64_t)file_size, &o, &more, &m, &g_err);
    g_more = (double)more;
    return own_model(st, m, prefix);
}

/* The file ranges of the small tensors a metadata open still lacks, as JSON [[offset, size], ...]
 * in nblw_out. */
API const char *nblw_model_missing(const nblw_model *w) {
    out_reset();
    uint64_t r[2 * 512];
    const int32_t n = w ? nbl_model_missing_vectors(w->m, r, 512) : 0;
    out_raw("[", 1);
    for (int32_t i = 0; i < n && i < 512; i++) out_fmt("%s[%.0f,%.0f]", i ? "," : "", (double)r[2 * i], (double)r[2 * i + 1]);
    out_raw("]", 1);
    return nblw_out();
}

/* File bytes [offset, offset + size) for the missing small tensors inside them (copied). */
API int32_t nblw_model_put(nblw_model *w, double offset, const void *bytes, double size) {
    if (!w) return fail(NBL_E_ARG, "model: NULL");
    return (int32_t)nbl_model_put_tensor(w->m, (uint64_t)offset, bytes, (uint64_t)size, &g_err);
}

/* Gives a metadata open its data section (from nblw_model_alloc), taking ownership of it: kept
 * with the model, or freed now on failure. */
API int32_t nblw_model_attach(nblw_model *w, void *data, double size) {
    if (!w) {
        model_bytes_free(data);
        return fail(NBL_E_ARG, "model: NULL");
    }
    nbl_status st = nbl_model_attach_data(w->m, data, (uint64_t)size, &g_err);
    if (st) {
        model_bytes_free(data);
        return (int32_t)st;
    }
    w->data = data;
    return 0;
}

API int32_t nblw_model_has_data(const nblw_model *w) { return w ? nbl_model_has_data(w->m) : 0; }

API void nblw_model_free(nblw_model *w) {
    if (!w) return;
    nbl_model_free(w->m);
    model_bytes_free(w->bytes);
    model_bytes_free(w->data);
    free(w);
}

/* The model's shape, vocabulary tokens and chat template family, as JSON in nblw_out. */
API const char *nblw_model_info(const nblw_model *w) {
    out_reset();
    if (!w) return nblw_out();
    nbl_model_info i;
    nbl_model_get_info(w->m, &i);
    int recognised = 0;
    const char *tmpl = nbl_model_chat_template(w->m);
    const char *family = nbl_chat_detect(tmpl, &recognised);
    out_raw("{\"arch\":", 8);
    out_str(i.arch);
    out_raw(",\"name\":", 8);
    out_str(i.name);
    out_fmt(",\"n_vocab\":%d,\"n_ctx_train\":%d,\"n_embd\":%d,\"n_layer\":%d", i.n_vocab,
            i.n_ctx_train, i.n_embd, i.n_layer);
    out_fmt(",\"n_head\":%d,\"n_head_kv\":%d,\"head_dim\":%d,\"n_ff\":%d", i.n_head, i.n_head_kv,
            i.head_dim, i.n_ff);
    out_fmt(",\"bos\":%d,\"eos\":%d,\"eot\":%d,\"add_bos\":%d", i.bos, i.eos, i.eot, i.add_bos);
    out_fmt(",\"n_params\":%.0f,\"weight_bytes\":%.0f", (double)i.n_params, (double)i.weight_bytes);
    out_fmt(",\"file_size\":%.0f,\"data_offset\":%.0f", (double)i.file_size, (double)i.data_offset);
    out_raw(",\"chat_template\":", 17);
    out_str(family);
    out_fmt(",\"chat_template_recognised\":%s,\"threaded\":%s", tmpl && recognised ? "true" : "false",
            nblw_threaded() ? "true" : "false");
    out_raw(",\"kernels\":", 11);
    out_str(nbl_kernels_best()->name);
    out_raw("}", 1);
    return nblw_out();
}

/* ---- sessions ----------------------------------------------------------------------------- */

#ifdef NBL_WASM_GPU
nbl_status nblw_gpu_forward(void *ctx, const int32_t *cached, int32_t pos, const int32_t *tokens, int32_t n,
                            int32_t logits_all, float *out, nbl_error *err);
#endif

/* external = 1 (the GPU build only): the forward pass runs in JavaScript (nblw_gpu_forward), on
 * the CPU only once the GPU reports its device lost. */
API nblw_session *nblw_session_new_ext(nblw_model *model, int32_t n_ctx, int32_t n_batch, int32_t n_threads,
                                       int32_t external) {
    if (!model) {
        fail(NBL_E_ARG, "session: no model");
        return NULL;
    }
    nblw_session *w = calloc(1, sizeof *w);
    if (!w) {
        fail(NBL_E_NOMEM, "session: out of memory");
        return NULL;
    }
    nbl_session_options o;
    nbl_session_options_init(&o);
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    /* Without pthreads a worker thread cannot start: the caller is the only thread. */
    o.n_threads = nblw_threaded() ? (n_threads > 0 ? n_threads : 1) : 1;
    if (external) {
#ifdef NBL_WASM_GPU
        o.forward = nblw_gpu_forward;
#else
        free(w);
        fail(NBL_E_UNSUPPORTED, "session: this build has no external (GPU) executor");
        return NULL;
#endif
    }
    if (nbl_session_new(model->m, &o, &w->s, &g_err)) {
        free(w);
        return NULL;
    }
    w->model = model;
    return w;
}

API nblw_session *nblw_session_new(nblw_model *model, int32_t n_ctx, int32_t n_batch, int32_t n_threads) {
    return nblw_session_new_ext(model, n_ctx, n_batch, n_threads, 0);
}

/* 1 while the session's forward pass runs on the GPU, 0 on the CPU. */
API int32_t nblw_session_external(const nblw_session *w) { return w ? nbl_session_external(w->s) : 0; }

API void nblw_session_free(nblw_session *w) {
    if (!w) return;
    nbl_session_free(w->s);
    nbl_grammar_free(w->grammar);
    free(w);
}

API int32_t nblw_session_n_ctx(const nblw_session *w) { return w ? nbl_session_n_ctx(w->s) : 0; }
API int32_t nblw_session_pos(const nblw_session *w) { return w ? nbl_session_pos(w->s) : 0; }
API int32_t nblw_session_truncate(nblw_session *w, int32_t n_keep) {
    if (!w) return fail(NBL_E_ARG, "session: none");
    nbl_status st = nbl_session_truncate(w->s, n_keep);
    return st ? fail(st, "session: cannot keep %d of %d cached tokens", n_keep, nbl_session_pos(w->s)) : 0;
}

/* Evaluates n tokens at tokens (in wasm memory); logits through nblw_logits. */
API int32_t nblw_eval(nblw_session *w, const int32_t *tokens, int32_t n, int32_t logits_all) {
    if (!w) return fail(NBL_E_ARG, "eval: no session");
    return (int32_t)nbl_session_eval(w->s, tokens, n, logits_all, &g_err);
}

API const float *nblw_logits(const nblw_session *w, int32_t i) { return w ? nbl_session_logits(w->s, i) : NULL; }

/* ---- tokenizer ---------------------------------------------------------------------------- */

/* Tokenizes len bytes of text; the ids go to nblw_out (as int32). Returns the count or -1. */
API int32_t nblw_tokenize(const nblw_model *w, const char *text, int32_t len, uint32_t flags) {
    if (!w || len < 0) {
        fail(NBL_E_ARG, "tokenize: bad arguments");
        return -1;
    }
    int32_t n = nbl_tokenize(w->m, text, (size_t)len, flags, NULL, 0, &g_err);
    if (n < 0) return -1;
    out_reset();
    if (out_reserve((size_t)n * sizeof(int32_t) + 4)) {
        fail(NBL_E_NOMEM, "tokenize: out of memory");
        return -1;
    }
    /* g_out comes from realloc, so it is aligned for int32_t. */
    n = nbl_tokenize(w->m, text, (size_t)len, flags, (int32_t *)(void *)g_out, n, &g_err);
    g_out_n = n > 0 ? (size_t)n * sizeof(int32_t) : 0;
    return n;
}

/* The bytes of one token (special: control tokens give their text) into nblw_out. */
API int32_t nblw_token_bytes(const nblw_model *w, int32_t token, int32_t special) {
    out_reset();
    if (!w) return -1;
    if (out_reserve(4096)) return -1;
    int32_t n = nbl_token_to_bytes(w->m, token, special, g_out, 4096);
    g_out_n = n > 0 ? (size_t)n : 0;
    g_out[g_out_n] = 0;
    return n;
}

/* ---- chat --------------------------------------------------------------------------------- */

/* A message's content: a string, null (an assistant turn that only called tools) or an array of
 * OpenAI content parts whose text parts are joined. *owned receives memory to free. */
static nbl_status content_of(const nbl_json *c, size_t idx, const char **out, char **owned) {
    *owned = NULL;
    if (!c || c->type == NBL_JSON_NULL) {
        *out = "";
        return NBL_OK;
    }
    if (c->type == NBL_JSON_STRING) {
        if (strlen(c->str) != c->len)
            return fail(NBL_E_ARG, "messages[%zu].content contains a NUL character", idx);
        *out = c->str;
        return NBL_OK;
    }
    if (c->type != NBL_JSON_ARRAY)
        return fail(NBL_E_ARG, "messages[%zu].content must be a string or an array of parts", idx);
    size_t total = 0;
    for (size_t k = 0; k < c->len; k++) {
        const nbl_json *p = &c->items[k], *type = nbl_json_get(p, "type"), *t = nbl_json_get(p, "text");
        if (!type || type->type != NBL_JSON_STRING || strcmp(type->str, "text") || !t || t->type != NBL_JSON_STRING)
            return fail(NBL_E_UNSUPPORTED, "messages[%zu].content[%zu]: only text parts are supported", idx, k);
        if (strlen(t->str) != t->len)
            return fail(NBL_E_ARG, "messages[%zu].content[%zu] contains a NUL character", idx, k);
        total += t->len;
    }
    char *s = malloc(total + 1);
    if (!s) return fail(NBL_E_NOMEM, "messages: out of memory");
    size_t n = 0;
    for (size_t k = 0; k < c->len; k++) {
        const nbl_json *t = nbl_json_get(&c->items[k], "text");
        memcpy(s + n, t->str, t->len);
        n += t->len;
    }
    s[n] = 0;
    *owned = s;
    *out = s;
    return NBL_OK;
}

typedef struct parsed_msgs {
    nbl_json *root;
    nbl_chat_message *msgs;
    char **owned;
    int32_t n;
} parsed_msgs;

static void msgs_free(parsed_msgs *p) {
    for (int32_t i = 0; p->owned && i < p->n; i++) free(p->owned[i]);
    free(p->owned);
    free(p->msgs);
    nbl_json_free(p->root);
    memset(p, 0, sizeof *p);
}

static nbl_status msgs_parse(const char *json, parsed_msgs *p) {
    memset(p, 0, sizeof *p);
    if (!json) return fail(NBL_E_ARG, "messages: missing");
    p->root = nbl_json_parse(json, strlen(json), &g_err);
    if (!p->root) return g_err.code;
    if (p->root->type != NBL_JSON_ARRAY || p->root->len == 0) {
        msgs_free(p);
        return fail(NBL_E_ARG, "messages must be a non-empty array");
    }
    if (p->root->len > 1000000) {
        msgs_free(p);
        return fail(NBL_E_ARG, "messages: too many (%zu)", p->root->len);
    }
    p->n = (int32_t)p->root->len;
    p->msgs = calloc((size_t)p->n, sizeof *p->msgs);
    p->owned = calloc((size_t)p->n, sizeof *p->owned);
    if (!p->msgs || !p->owned) {
        msgs_free(p);
        return fail(NBL_E_NOMEM, "messages: out of memory");
    }
    for (int32_t i = 0; i < p->n; i++) {
        const nbl_json *m = &p->root->items[i], *role = nbl_json_get(m, "role");
        if (m->type != NBL_JSON_OBJECT || !role || role->type != NBL_JSON_STRING || !role->len ||
            strlen(role->str) != role->len) {
            msgs_free(p);
            return fail(NBL_E_ARG, "messages[%d] needs a string \"role\"", (int)i);
        }
        p->msgs[i].role = role->str;
        nbl_status st = content_of(nbl_json_get(m, "content"), (size_t)i, &p->msgs[i].content, &p->owned[i]);
        if (st) {
            msgs_free(p);
            return st;
        }
    }
    return NBL_OK;
}

/* Number field: *dst unchanged when absent or null; an error when of another type or outside
 * [lo, hi]. */
static nbl_status num_field(const nbl_json *o, const char *key, double lo, double hi, double *dst) {
    const nbl_json *v = nbl_json_get(o, key);
    if (!v || v->type == NBL_JSON_NULL) return NBL_OK;
    if (v->type != NBL_JSON_NUMBER || !(v->num >= lo && v->num <= hi))
        return fail(NBL_E_ARG, "%s must be a number in [%g, %g]", key, lo, hi);
    *dst = v->num;
    return NBL_OK;
}

/* response_format → grammar (OpenAI's "text", "json_object" and "json_schema" forms). */
static nbl_status params_grammar(const nbl_json *rf, nbl_grammar **out) {
    *out = NULL;
    if (!rf || rf->type == NBL_JSON_NULL) return NBL_OK;
    const nbl_json *type = nbl_json_get(rf, "type");
    if (rf->type != NBL_JSON_OBJECT || !type || type->type != NBL_JSON_STRING)
        return fail(NBL_E_ARG, "response_format needs a string \"type\"");
    if (!strcmp(type->str, "text")) return NBL_OK;
    if (!strcmp(type->str, "json_object")) {
        *out = nbl_grammar_new_json(&g_err);
        return *out ? NBL_OK : g_err.code;
    }
    if (!strcmp(type->str, "json_schema")) {
        /* The schema arrives re-serialized by the caller as a string (schema_text), so the
         * grammar compiler sees exactly the JSON the user gave. */
        const nbl_json *js = nbl_json_get(rf, "schema_text");
        if (!js || js->type != NBL_JSON_STRING)
            return fail(NBL_E_ARG, "response_format json_schema: missing schema");
        *out = nbl_grammar_new_json_schema(js->str, js->len, &g_err);
        return *out ? NBL_OK : g_err.code;
    }
    return fail(NBL_E_UNSUPPORTED, "response_format type \"%s\" is not supported", type->str);
}

/* Generation parameters from JSON: max_tokens, temperature, top_p, top_k, min_p,
 * repeat_penalty, repeat_last_n, seed, stop (string or array), max_sentences, response_format.
 * Stop strings point into root, which must outlive the generation start. */
static nbl_status params_parse(const nbl_json *o, nbl_gen_params *p, const char **stop, nbl_grammar **gram) {
    nbl_gen_params_init(p);
    *gram = NULL;
    if (!o || o->type == NBL_JSON_NULL) return NBL_OK;
    if (o->type != NBL_JSON_OBJECT) return fail(NBL_E_ARG, "params must be an object");
    double max_tokens = 0, temp = p->sampler.temperature, top_p = p->sampler.top_p, top_k = 0,
           min_p = 0, rep = p->sampler.repeat_penalty, rep_n = p->sampler.repeat_last_n, seed = 0,
           sentences = 0;
    nbl_status st;
    if ((st = num_field(o, "max_tokens", 0, 1 << 30, &max_tokens)) ||
        (st = num_field(o, "temperature", 0, 100, &temp)) || (st = num_field(o, "top_p", 0, 1, &top_p)) ||
        (st = num_field(o, "top_k", 0, 1 << 30, &top_k)) || (st = num_field(o, "min_p", 0, 1, &min_p)) ||
        (st = num_field(o, "repeat_penalty", 0, 100, &rep)) ||
        (st = num_field(o, "repeat_last_n", 0, 1 << 30, &rep_n)) ||
        (st = num_field(o, "seed", 0, 9007199254740991.0, &seed)) ||
        (st = num_field(o, "max_sentences", 0, 1 << 30, &sentences)))
        return st;
    p->max_tokens = (int32_t)max_tokens;
    p->max_sentences = (int32_t)sentences;
    p->sampler.temperature = (float)temp;
    p->sampler.top_p = (float)top_p;
    p->sampler.top_k = (int32_t)top_k;
    p->sampler.min_p = (float)min_p;
    p->sampler.repeat_penalty = (float)rep;
    p->sampler.repeat_last_n = (int32_t)rep_n;
    p->sampler.seed = (uint64_t)seed;
    const nbl_json *s = nbl_json_get(o, "stop");
    if (s && s->type == NBL_JSON_STRING) {
        stop[p->n_stop++] = s->str;
    } else if (s && s->type == NBL_JSON_ARRAY) {
        if (s->len > NBLW_MAX_STOP) return fail(NBL_E_ARG, "stop: at most %d strings", NBLW_MAX_STOP);
        for (size_t k = 0; k < s->len; k++) {
            if (s->items[k].type != NBL_JSON_STRING) return fail(NBL_E_ARG, "stop[%zu] must be a string", k);
            stop[p->n_stop++] = s->items[k].str;
        }
    } else if (s && s->type != NBL_JSON_NULL) {
        return fail(NBL_E_ARG, "stop must be a string or an array of strings");
    }
    for (int32_t k = 0; k < p->n_stop; k++)
        if (!stop[k][0]) return fail(NBL_E_ARG, "stop strings must not be empty");
    p->stop = stop;
    if ((st = params_grammar(nbl_json_get(o, "response_format"), gram))) return st;
    p->grammar = *gram;
    return NBL_OK;
}

/* Starts answering messages_json (an array of {role, content}) with params_json (object or
 * empty). The conversation's prefix already in the KV cache is reused; oldest turns are dropped
 * when it does not fit (see nbl_gen_start_chat). Returns 0 or a status (nblw_error). */
API int32_t nblw_chat_start(nblw_session *w, const char *messages_json, const char *params_json) {
    if (!w) return fail(NBL_E_ARG, "chat: no session");
    parsed_msgs pm;
    nbl_status st = msgs_parse(messages_json, &pm);
    if (st) return st;
    nbl_json *po = NULL;
    if (params_json && params_json[0]) {
        po = nbl_json_parse(params_json, strlen(params_json), &g_err);
        if (!po) {
            msgs_free(&pm);
            return g_err.code;
        }
    }
    const char *stop[NBLW_MAX_STOP];
    nbl_gen_params p;
    nbl_grammar *gram = NULL;
    const nbl_json *tn = nbl_json_get(po, "template");
    const char *template_name = tn && tn->type == NBL_JSON_STRING ? tn->str : NULL;
    st = params_parse(po, &p, stop, &gram);
    if (!st) st = nbl_gen_start_chat(w->s, template_name, pm.msgs, pm.n, &p, &g_err);
    /* The generation copied the stop strings; the grammar is borrowed until the next start. */
    nbl_grammar_free(w->grammar);
    w->grammar = gram;
    nbl_json_free(po);
    msgs_free(&pm);
    return (int32_t)st;
}

/* Starts a generation from raw token ids (the prompt as given) with params_json. */
API int32_t nblw_gen_start_tokens(nblw_session *w, const int32_t *tokens, int32_t n, const char *params_json) {
    if (!w) return fail(NBL_E_ARG, "generate: no session");
    nbl_json *po = NULL;
    if (params_json && params_json[0] && !(po = nbl_json_parse(params_json, strlen(params_json), &g_err)))
        return g_err.code;
    const char *stop[NBLW_MAX_STOP];
    nbl_gen_params p;
    nbl_grammar *gram = NULL;
    nbl_status st = params_parse(po, &p, stop, &gram);
    if (!st) st = nbl_gen_start_tokens(w->s, tokens, n, &p, &g_err);
    nbl_grammar_free(w->grammar);
    w->grammar = gram;
    nbl_json_free(po);
    return (int32_t)st;
}

/* One token. Returns a pointer to 4 int32: status (0 or an nbl_status), the length of the text
 * now final (at nblw_gen_text), finish (NBL_FINISH_*), and the sampled token id. */
API const int32_t *nblw_gen_next(nblw_session *w) {
    static int32_t bad[4] = {NBL_E_ARG, 0, 0, -1};
    if (!w) {
        fail(NBL_E_ARG, "generate: no session");
        return bad;
    }
    int32_t finish = 0, token = -1;
    int32_t n = nbl_gen_next(w->s, w->text, (int32_t)sizeof w->text - 1, &finish, &token, &g_err);
    w->result[0] = n < 0 ? (int32_t)(g_err.code ? g_err.code : NBL_E_STATE) : 0;
    w->result[1] = n < 0 ? 0 : n;
    w->result[2] = finish;
    w->result[3] = token;
    w->text[w->result[1]] = 0;
    return w->result;
}

API const char *nblw_gen_text(const nblw_session *w) { return w ? w->text : ""; }

/* prompt_tokens, cached_tokens, completion_tokens, dropped_messages. */
API const int32_t *nblw_gen_usage(nblw_session *w) {
    if (!w) return NULL;
    nbl_usage u;
    nbl_gen_usage(w->s, &u);
    w->usage[0] = u.prompt_tokens;
    w->usage[1] = u.cached_tokens;
    w->usage[2] = u.completion_tokens;
    w->usage[3] = u.dropped_messages;
    return w->usage;
}

/* Renders messages_json with the model's chat template (or template_name) into nblw_out. */
API int32_t nblw_chat_render(const nblw_model *w, const char *messages_json, const char *template_name,
                             int32_t add_generation_prompt) {
    out_reset();
    if (!w) return fail(NBL_E_ARG, "chat: no model");
    parsed_msgs pm;
    nbl_status st = msgs_parse(messages_json, &pm);
    if (st) return st;
    char *text = NULL;
    st = nbl_chat_render(w->m, template_name && template_name[0] ? template_name : NULL, pm.msgs, pm.n,
                         add_generation_prompt, &text, &g_err);
    if (!st) out_raw(text, strlen(text));
    free(text);
    msgs_free(&pm);
    return (int32_t)st;
}

/* ---- WebGPU ------------------------------------------------------------------------------- */

/* The model's GPU plan (webgpu.c) for an adapter with these limits, as JSON in memory the caller
 * frees with nblw_free; NULL with nblw_error set (the message says which tensor or limit) when
 * the model cannot run there. Sizes come as doubles: they may pass 2^32. */
API char *nblw_gpu_plan(const nblw_model *w, int32_t n_ctx, int32_t max_tokens, int32_t max_logit_rows,
                        int32_t top_k, int32_t f16, int32_t subgroups, double max_binding, double max_buffer,
                        int32_t max_workgroup_storage) {
    if (!w) {
        fail(NBL_E_ARG, "gpu plan: no model");
        return NULL;
    }
    if (!(max_binding >= 0 && max_buffer >= 0 && max_binding < 1e18 && max_buffer < 1e18)) {
        fail(NBL_E_ARG, "gpu plan: invalid buffer limits");
        return NULL;
    }
    nbl_gpu_plan_opts o;
    nbl_gpu_plan_opts_init(&o);
    o.n_ctx = n_ctx;
    o.max_tokens = max_tokens;
    o.max_logit_rows = max_logit_rows;
    o.top_k = top_k;
    o.f16 = f16 ? 1 : 0;
    o.subgroups = subgroups ? 1 : 0;
    o.max_binding_size = (uint64_t)max_binding;
    o.max_buffer_size = (uint64_t)max_buffer;
    o.max_workgroup_storage = max_workgroup_storage > 0 ? (uint32_t)max_workgroup_storage : 0;
    char *json = NULL;
    if (nbl_gpu_plan_json(w->m, &o, &json, &g_err)) return NULL;
    return json;
}

/* Where the GGUF's bytes live in wasm memory (the GPU executor uploads its tensors from there). */
API const void *nblw_model_bytes(const nblw_model *w) { return w ? w->bytes : NULL; }

#ifdef NBL_WASM_GPU
/* The forward pass in JavaScript: Module.nblForward (web/gpu-backend.js) runs it on the GPU and
 * resolves to a status, with a message at msg (cap bytes) when it is not 0. The module is built
 * with Asyncify, so C waits here while the GPU works. */
EM_ASYNC_JS(int32_t, nblw_js_forward, (const int32_t *cached, int32_t pos, const int32_t *tokens, int32_t n,
                                       int32_t logits_all, float *out, char *msg, int32_t cap), {
    if (!Module.nblForward) {
        stringToUTF8('no GPU executor is attached', msg, cap);
        return 8;
    }
    return await Module.nblForward(cached >>> 0, pos, tokens >>> 0, n, logits_all, out >>> 0, msg >>> 0, cap);
});

nbl_status nblw_gpu_forward(void *ctx, const int32_t *cached, int32_t pos, const int32_t *tokens, int32_t n,
                            int32_t logits_all, float *out, nbl_error *err) {
    (void)ctx;
    char msg[sizeof err->msg];
    msg[0] = 0;
    const int32_t st = nblw_js_forward(cached, pos, tokens, n, logits_all, out, msg, (int32_t)sizeof msg);
    if (st == NBL_OK) return NBL_OK;
    if (st < 0 || st > NBL_E_DEVICE) return nbl_set_err(err, NBL_E_DEVICE, "GPU: %s", msg[0] ? msg : "failed");
    return nbl_set_err(err, (nbl_status)st, "GPU: %s", msg[0] ? msg : "failed");
}
#endif

#else
/* Native builds compile nothing here; ISO C wants at least one declaration. */
typedef int nbl_wasm_api_unused;
#endif
