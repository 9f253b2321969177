/* wasm_tasks.c — the helper tasks (tasks.c) for JavaScript (web/tasks.js): titles, quick replies,
 * memory facts and routing, with messages, options and results as JSON strings. Compiled only by
 * Emscripten; native builds see an empty file. */
#ifdef __EMSCRIPTEN__
#include "nbl_impl.h"

#include <emscripten.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API EMSCRIPTEN_KEEPALIVE

/* The last error and result of a task call (the engine is driven from one thread). */
static nbl_error t_err;
static char *t_out;
static size_t t_len;

API const char *nblw_tasks_error(void) { return t_err.msg; }
API int32_t nblw_tasks_error_code(void) { return (int32_t)t_err.code; }
API const char *nblw_tasks_out(void) { return t_out ? t_out : ""; }
API int32_t nblw_tasks_out_len(void) { return (int32_t)t_len; }

static int32_t fail(nbl_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int32_t fail(nbl_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    t_err.code = code;
    vsnprintf(t_err.msg, sizeof t_err.msg, fmt, ap);
    va_end(ap);
    return (int32_t)code;
}

/* Takes ownership of a malloc'd result. */
static void set_out(char *s) {
    free(t_out);
    t_out = s;
    t_len = s ? strlen(s) : 0;
}

/* wasm_api.c's model handle starts with the nbl_model pointer (struct nblw_model { nbl_model *m;
 * ... }); only that first member is read here. */
typedef struct nblw_model_head {
    nbl_model *m;
} nblw_model_head;

#ifdef NBL_WASM_GPU
nbl_status nblw_gpu_forward(void *ctx, const int32_t *cached, int32_t pos, const int32_t *tokens, int32_t n,
                            int32_t logits_all, float *out, nbl_error *err);
#endif

/* external = 1 (the GPU build only): the task sessions run on the GPU, like the chat's. */
API nbl_tasks *nblw_tasks_new(const nblw_model_head *model, int32_t n_ctx, int32_t n_threads, int32_t shared,
                              int32_t external) {
    if (!model || !model->m) {
        fail(NBL_E_ARG, "tasks: no model");
        return NULL;
    }
    nbl_tasks_options o;
    nbl_tasks_options_init(&o);
    o.n_ctx = n_ctx > 0 ? n_ctx : 0;
    /* Sessions share their model's compute pool, made by the first session (the chat's, at
     * load): n_threads only sizes it when a task session comes first. */
#ifdef __EMSCRIPTEN_PTHREADS__
    o.n_threads = n_threads > 0 ? n_threads : 1;
#else
    (void)n_threads;
    o.n_threads = 1; /* the caller is the only thread */
#endif
    o.shared_session = shared ? 1 : 0;
    if (external) {
#ifdef NBL_WASM_GPU
        o.forward = nblw_gpu_forward;
#else
        fail(NBL_E_UNSUPPORTED, "tasks: this build has no external (GPU) executor");
        return NULL;
#endif
    }
    nbl_tasks *t = NULL;
    if (nbl_tasks_new(model->m, &o, &t, &t_err)) return NULL;
    return t;
}

API void nblw_tasks_free(nbl_tasks *t) { nbl_tasks_free(t); }

/* ---- arguments ----------------------------------------------------------------------------- */

typedef struct msgs {
    nbl_json *root;
    nbl_chat_message *m;
    char **owned;
    int32_t n;
} msgs;

static void msgs_free(msgs *p) {
    for (int32_t i = 0; p->owned && i < p->n; i++) free(p->owned[i]);
    free(p->owned);
    free(p->m);
    nbl_json_free(p->root);
    memset(p, 0, sizeof *p);
}

/* [{role, content}] where content is a string, null, or OpenAI text parts (joined). */
static nbl_status msgs_parse(const char *json, msgs *p) {
    memset(p, 0, sizeof *p);
    if (!json || !(p->root = nbl_json_parse(json, strlen(json), &t_err))) return json ? t_err.code : fail(NBL_E_ARG, "messages: missing");
    if (p->root->type != NBL_JSON_ARRAY || !p->root->len || p->root->len > 100000) {
        msgs_free(p);
        return fail(NBL_E_ARG, "messages must be a non-empty array");
    }
    p->n = (int32_t)p->root->len;
    p->m = calloc((size_t)p->n, sizeof *p->m);
    p->owned = calloc((size_t)p->n, sizeof *p->owned);
    if (!p->m || !p->owned) {
        msgs_free(p);
        return fail(NBL_E_NOMEM, "messages: out of memory");
    }
    for (int32_t i = 0; i < p->n; i++) {
        const nbl_json *o = &p->root->items[i], *role = nbl_json_get(o, "role"), *c = nbl_json_get(o, "content");
        if (!role || role->type != NBL_JSON_STRING || strlen(role->str) != role->len) {
            msgs_free(p);
            return fail(NBL_E_ARG, "messages[%d] needs a string \"role\"", (int)i);
        }
        p->m[i].role = role->str;
        if (!c || c->type == NBL_JSON_NULL) {
            p->m[i].content = "";
        } else if (c->type == NBL_JSON_STRING) {
            p->m[i].content = c->str;
        } else if (c->type == NBL_JSON_ARRAY) {
            size_t total = 0;
            for (size_t k = 0; k < c->len; k++) {
                const nbl_json *t = nbl_json_get(&c->items[k], "text");
                if (t && t->type == NBL_JSON_STRING) total += t->len;
            }
            char *s = malloc(total + 1);
            if (!s) {
                msgs_free(p);
                return fail(NBL_E_NOMEM, "messages: out of memory");
            }
            size_t n = 0;
            for (size_t k = 0; k < c->len; k++) {
                const nbl_json *t = nbl_json_get(&c->items[k], "text");
                if (t && t->type == NBL_JSON_STRING) memcpy(s + n, t->str, t->len), n += t->len;
            }
            s[n] = 0;
            p->owned[i] = s;
            p->m[i].content = s;
        } else {
            msgs_free(p);
            return fail(NBL_E_ARG, "messages[%d].content must be a string or an array of parts", (int)i);
        }
    }
    return NBL_OK;
}

static nbl_status num(const nbl_json *o, const char *key, double lo, double hi, double *dst) {
    const nbl_json *v = nbl_json_get(o, key);
    if (!v || v->type == NBL_JSON_NULL) return NBL_OK;
    if (v->type != NBL_JSON_NUMBER || !(v->num >= lo && v->num <= hi))
        return fail(NBL_E_ARG, "%s must be a number in [%g, %g]", key, lo, hi);
    *dst = v->num;
    return NBL_OK;
}

/* Options shared by the generating tasks: max_tokens, temperature, top_k, top_p, min_p, seed,
 * and max_words / n / max_items. *extra receives the task's own count (0 when absent). */
static nbl_status params_parse(const char *json, const char *extra_key, nbl_task_params *p, int32_t *extra) {
    nbl_task_params_init(p);
    *extra = 0;
    if (!json || !json[0]) return NBL_OK;
    nbl_json *o = nbl_json_parse(json, strlen(json), &t_err);
    if (!o) return t_err.code;
    double mt = 0, temp = 0, tk = 0, tp = 1, mp = 0, seed = 0, ex = 0;
    nbl_status st = o->type == NBL_JSON_OBJECT ? NBL_OK : fail(NBL_E_ARG, "options must be an object");
    if (!st && !(st = num(o, "max_tokens", 0, 4096, &mt)) && !(st = num(o, "temperature", 0, 100, &temp)) &&
        !(st = num(o, "top_k", 0, 1 << 20, &tk)) && !(st = num(o, "top_p", 0, 1, &tp)) &&
        !(st = num(o, "min_p", 0, 1, &mp)) && !(st = num(o, "seed", 0, 9007199254740991.0, &seed)) && extra_key)
        st = num(o, extra_key, 0, 64, &ex);
    p->max_tokens = (int32_t)mt;
    p->sampler.temperature = (float)temp;
    p->sampler.top_k = (int32_t)tk;
    p->sampler.top_p = (float)tp;
    p->sampler.min_p = (float)mp;
    p->sampler.seed = (uint64_t)seed;
    *extra = (int32_t)ex;
    nbl_json_free(o);
    return st;
}

/* ---- tasks --------------------------------------------------------------------------------- */

/* The title as plain text in nblw_tasks_out. opts: max_words, max_tokens, sampling. */
API int32_t nblw_task_title(nbl_tasks *t, const char *messages_json, const char *opts_json) {
    set_out(NULL);
    if (!t) return fail(NBL_E_ARG, "title: no tasks context");
    msgs m;
    nbl_task_params p;
    int32_t words;
    nbl_status st = msgs_parse(messages_json, &m);
    if (st) return st;
    if (!(st = params_parse(opts_json, "max_words", &p, &words))) {
        char *out = NULL;
        st = nbl_task_title(t, m.m, m.n, words, &p, &out, &t_err);
        set_out(out);
    }
    msgs_free(&m);
    return (int32_t)st;
}

/* A JSON array of strings. opts: n, max_tokens, sampling. */
API int32_t nblw_task_replies(nbl_tasks *t, const char *messages_json, const char *opts_json) {
    set_out(NULL);
    if (!t) return fail(NBL_E_ARG, "quick replies: no tasks context");
    msgs m;
    nbl_task_params p;
    int32_t n;
    nbl_status st = msgs_parse(messages_json, &m);
    if (st) return st;
    if (!(st = params_parse(opts_json, "n", &p, &n))) {
        char *out = NULL;
        st = nbl_task_quick_replies(t, m.m, m.n, n, &p, &out, &t_err);
        set_out(out);
    }
    msgs_free(&m);
    return (int32_t)st;
}

/* A JSON array of {fact, category, confidence}. existing_json: a JSON array (strings or
 * {fact}) or empty. opts: max_items, max_tokens, sampling. */
API int32_t nblw_task_memory(nbl_tasks *t, const char *messages_json, const char *existing_json,
                             const char *opts_json) {
    set_out(NULL);
    if (!t) return fail(NBL_E_ARG, "memory: no tasks context");
    msgs m;
    nbl_task_params p;
    nbl_status st = msgs_parse(messages_json, &m);
    if (st) return st;
    if (!(st = params_parse(opts_json, "max_items", &p, &p.max_items))) {
        char *out = NULL;
        st = nbl_task_memory(t, m.m, m.n, existing_json && existing_json[0] ? existing_json : NULL, &p, &out, &t_err);
        set_out(out);
    }
    msgs_free(&m);
    return (int32_t)st;
}

/* {"route", "best", "chosen", "confidence", "scores": [...], "loglik": [...]} in
 * nblw_tasks_out. routes_json: [{id, description?, examples?}]; opts_json: threshold, fallback,
 * max_examples, per_token. */
API int32_t nblw_task_route(nbl_tasks *t, const char *message, const char *routes_json, const char *opts_json) {
    set_out(NULL);
    if (!t || !message) return fail(NBL_E_ARG, "route: no tasks context or message");
    nbl_json *rj = routes_json ? nbl_json_parse(routes_json, strlen(routes_json), &t_err) : NULL;
    if (!rj) return routes_json ? t_err.code : fail(NBL_E_ARG, "route: no routes");
    nbl_json *oj = opts_json && opts_json[0] ? nbl_json_parse(opts_json, strlen(opts_json), &t_err) : NULL;
    nbl_status st = opts_json && opts_json[0] && !oj ? t_err.code : NBL_OK;
    nbl_route *routes = NULL;
    const char **ex = NULL;
    int32_t n = 0;
    if (!st && (rj->type != NBL_JSON_ARRAY || rj->len == 0 || rj->len > 256))
        st = fail(NBL_E_ARG, "routes must be an array of 1 to 256 routes");
    size_t n_ex = 0;
    for (size_t i = 0; !st && i < rj->len; i++) {
        const nbl_json *e = nbl_json_get(&rj->items[i], "examples");
        if (e && e->type == NBL_JSON_ARRAY) n_ex += e->len;
    }
    if (!st) {
        n = (int32_t)rj->len;
        routes = calloc((size_t)n, sizeof *routes);
        ex = calloc(n_ex + 1, sizeof *ex);
        if (!routes || !ex) st = fail(NBL_E_NOMEM, "route: out of memory");
    }
    for (int32_t i = 0, k = 0; !st && i < n; i++) {
        const nbl_json *r = &rj->items[i], *id = nbl_json_get(r, "id"), *d = nbl_json_get(r, "description"),
                       *e = nbl_json_get(r, "examples");
        if (!id || id->type != NBL_JSON_STRING) {
            st = fail(NBL_E_ARG, "routes[%d] needs a string \"id\"", (int)i);
            break;
        }
        routes[i].id = id->str;
        routes[i].description = d && d->type == NBL_JSON_STRING ? d->str : NULL;
        routes[i].examples = ex + k;
        for (size_t j = 0; e && e->type == NBL_JSON_ARRAY && j < e->len; j++)
            if (e->items[j].type == NBL_JSON_STRING) ex[k++] = e->items[j].str, routes[i].n_examples++;
    }
    nbl_route_opts o;
    nbl_route_opts_init(&o);
    double thr = 0, mx = 0;
    if (!st && oj && oj->type != NBL_JSON_OBJECT) st = fail(NBL_E_ARG, "route options must be an object");
    if (!st && oj && !(st = num(oj, "threshold", 0, 1, &thr)) && !(st = num(oj, "max_examples", -1, 256, &mx))) {
        const nbl_json *fb = nbl_json_get(oj, "fallback"), *pt = nbl_json_get(oj, "per_token");
        o.fallback = fb && fb->type == NBL_JSON_STRING ? fb->str : NULL;
        o.per_token = pt && pt->type == NBL_JSON_BOOL && pt->b;
    }
    o.threshold = (float)thr;
    o.max_examples = (int32_t)mx;
    float *sc = NULL;
    double *ll = NULL;
    nbl_route_result r;
    if (!st && (!(sc = malloc(sizeof *sc * (size_t)n)) || !(ll = malloc(sizeof *ll * (size_t)n))))
        st = fail(NBL_E_NOMEM, "route: out of memory");
    if (!st) st = nbl_task_route(t, message, routes, n, &o, &r, sc, ll, &t_err);
    if (!st) {
        /* Route ids are JSON-escaped by round-tripping through the parser's strings. */
        size_t cap = 256 + (size_t)n * 64 + (r.route ? strlen(r.route) * 6 : 0);
        char *out = malloc(cap);
        if (!out) {
            st = fail(NBL_E_NOMEM, "route: out of memory");
        } else {
            size_t k = 0;
            k += (size_t)snprintf(out + k, cap - k, "{\"route\":");
            if (!r.route) {
                k += (size_t)snprintf(out + k, cap - k, "null");
            } else {
                out[k++] = '"';
                for (const unsigned char *c = (const unsigned char *)r.route; *c; c++) {
                    if (*c == '"' || *c == '\\') k += (size_t)snprintf(out + k, cap - k, "\\%c", *c);
                    else if (*c < 0x20) k += (size_t)snprintf(out + k, cap - k, "\\u%04x", *c);
                    else out[k++] = (char)*c;
                }
                out[k++] = '"';
            }
            k += (size_t)snprintf(out + k, cap - k, ",\"best\":%d,\"chosen\":%d,\"confidence\":%.9g,\"scores\":[",
                                  (int)r.best, (int)r.chosen, (double)r.confidence);
            for (int32_t i = 0; i < n; i++) k += (size_t)snprintf(out + k, cap - k, "%s%.9g", i ? "," : "", (double)sc[i]);
            k += (size_t)snprintf(out + k, cap - k, "],\"loglik\":[");
            for (int32_t i = 0; i < n; i++)
                k += (size_t)snprintf(out + k, cap - k, "%s%.17g", i ? "," : "", isfinite(ll[i]) ? ll[i] : -1e300);
            snprintf(out + k, cap - k, "]}");
            set_out(out);
        }
    }
    free(sc);
    free(ll);
    free(routes);
    free(ex);
    nbl_json_free(oj);
    nbl_json_free(rj);
    return (int32_t)st;
}
#else
/* Native builds compile nothing here; ISO C wants at least one declaration. */
typedef int nbl_wasm_tasks_unused;
#endif
