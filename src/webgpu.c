/* webgpu.c — the WebGPU backend's half in C: turns the graph's op list (graph.c) into a plan of
 * GPU buffers, pipelines (a WGSL shader from shaders/ plus its defines) and dispatch lists for
 * each step kind, serialized as JSON for web/gpu.js, a generic executor that knows nothing about
 * transformers. Fusions (norm into the next product, q/k/v with rope and the cache store, gate/up
 * with SiLU, the residual add) are pattern matches on the op list; without them every op is one
 * dispatch. Weights are uploaded from file ranges as stored (the shaders read ggml's blocks). */
#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing string ------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* JSON string body (names come from the file: escape everything unusual). */
static void sb_jstr(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) sb_printf(b, "\\u%04x", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static void sb_base64(sbuf *b, const uint8_t *d, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        q[0] = T[v >> 18];
        q[1] = T[(v >> 12) & 63];
        q[2] = i + 1 < n ? T[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? T[v & 63] : '=';
        sb_put(b, q, 4);
    }
}

/* ---- the plan under construction ------------------------------------------------------------ */

enum { U_STORAGE, U_UNIFORM, U_INPUT, U_OUTPUT };

typedef struct upload {
    uint64_t src, len, dst; /* file offset, bytes, offset in the buffer */
    int32_t tensor;         /* index into the GGUF's tensors, for names */
} upload;

typedef struct pbuf {
    char name[64];
    uint64_t size;
    int32_t usage;
    int32_t is_vecs; /* initial contents: the plan's vector table */
    int32_t is_weight;
    upload *up;
    int32_t n_up, cap_up;
} pbuf;

typedef struct pipe {
    char shader[24], entry[16];
    char defs[720]; /* JSON object body of the defines */
} pipe;

typedef struct bind {
    int32_t buf;
    char access;         /* 'u' uniform, 'r' read-only storage, 'w' read-write storage */
    uint64_t off, size;  /* a range of the buffer (size 0: all of it) */
} bind;

typedef struct dgrid {
    int64_t a, b, div; /* a + b * ceil(var / div) workgroups (b = 0: a constant) */
    const char *var;   /* a params field; NULL = n_tokens */
} dgrid;

typedef struct disp {
    int32_t pipe;
    bind b[8];
    int32_t nb;
    dgrid g[3];
    char label[48];
    const char *kind;
} disp;

typedef struct prog {
    const char *name;
    disp *d;
    int32_t n, cap;
} prog;

/* A weight matrix as GPU buffers: rows split into parts that each fit one binding. */
typedef struct wparts {
    uint64_t offset;  /* the first tensor's file offset: with nfused, the key that shares buffers
                       * (tied embeddings, the same weights in decode and prefill programs) */
    int32_t nfused;   /* matrices concatenated in one buffer (then a single part) */
    int32_t n;
    int32_t buf[16];
    int64_t row0[17]; /* part i holds rows [row0[i], row0[i+1]) */
} wparts;

typedef struct defs {
    char s[640];
    size_t n;
} defs;

enum { P_DECODE, P_PREFILL, P_HEAD, P_HEAD_ALL, P_ARGMAX, P_TOPK, P_COUNT };
static const char *const PROG_NAMES[P_COUNT] = {"decode", "prefill", "head", "head_all", "argmax", "topk"};

typedef struct plan {
    const nbl_model *m;
    const nbl_graph *g;
    nbl_gpu_plan_opts o;
    nbl_error *err;
    nbl_status st;
    pbuf *bufs;
    int32_t n_bufs, cap_bufs;
    pipe *pipes;
    int32_t n_pipes, cap_pipes;
    prog progs[P_COUNT];
    wparts *w;
    int32_t n_w, cap_w;
    /* The vector table: one 256-byte-aligned block per layer (index layer + 1; 0 outside layers)
     * bound as a buffer range, so every layer's kernels see the same offsets and share pipelines. */
    float *vecs;
    int64_t n_vecs, cap_vecs;
    int64_t *blk_start, *blk_n, *blk_qkv, *blk_freq; /* per block: floats; q|k|v bias and rope offsets */
    const float **vec_src; /* which model vector each entry copies */
    int64_t *vec_at;       /* its offset within its block */
    int32_t *vec_blk;
    int32_t n_vsrc, cap_vsrc;
    int32_t act[NBL_BUF_COUNT]; /* buffer index of each graph buffer */
    int32_t params, tokens, vecbuf, *kc, *vc, am_part, am_out, tk_cand, tk_out, att_part;
    int64_t att_maxch; /* decode attention chunks per head */
    uint32_t wg_storage; /* workgroup memory the largest kernel needs */
    int32_t am_nparts, tk_nparts, tk_chunk;
    uint32_t max_storage; /* storage bindings of the widest pipeline */
} plan;

static int fail(plan *p, nbl_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(plan *p, nbl_status code, const char *fmt, ...) {
    if (p->st) return -1;
    char msg[sizeof p->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->st = nbl_set_err(p->err, code, "gpu plan: %s", msg);
    return -1;
}

static int grow(plan *p, void **arr, int32_t *cap, int32_t n, size_t elem) {
    if (n < *cap) return 0;
    int32_t nc = *cap ? *cap * 2 : 16;
    void *na = realloc(*arr, (size_t)nc * elem);
    if (!na) return fail(p, NBL_E_NOMEM, "out of memory");
    memset((char *)na + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = na;
    *cap = nc;
    return 0;
}

static int32_t add_buf(plan *p, const char *name, uint64_t size, int32_t usage) {
    if (p->st || grow(p, (void **)&p->bufs, &p->cap_bufs, p->n_bufs, sizeof(pbuf))) return -1;
    pbuf *b = &p->bufs[p->n_bufs];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->size = (size + 15) & ~(uint64_t)15; /* WebGPU wants sizes in multiples of 4; 16 for vec4 */
    if (b->size == 0) b->size = 16;
    b->usage = usage;
    if (usage == U_STORAGE && b->size > p->o.max_binding_size) {
        fail(p, NBL_E_NOMEM, "buffer '%s' needs %llu bytes, more than one binding can hold (%llu)", name,
             (unsigned long long)size, (unsigned long long)p->o.max_binding_size);
        return -1;
    }
    return p->n_bufs++;
}

static void add_upload(plan *p, int32_t buf, uint64_t src, uint64_t len, uint64_t dst, int32_t tensor) {
    if (p->st) return;
    pbuf *b = &p->bufs[buf];
    if (grow(p, (void **)&b->up, &b->cap_up, b->n_up, sizeof(upload))) return;
    b->up[b->n_up++] = (upload){src, len, dst, tensor};
}

/* ---- defines (the shader variant) ------------------------------------------------------------- */

static void def_raw(plan *p, defs *d, const char *key, const char *val) {
    int n = snprintf(d->s + d->n, sizeof d->s - d->n, "%s\"%s\":%s", d->n ? "," : "", key, val);
    if (n < 0 || (size_t)n >= sizeof d->s - d->n) {
        fail(p, NBL_E_NOMEM, "shader defines too long");
        return;
    }
    d->n += (size_t)n;
}
static void def_flag(plan *p, defs *d, const char *key) { def_raw(p, d, key, "true"); }
static void def_u(plan *p, defs *d, const char *key, uint64_t v) {
    char t[32];
    if (v > UINT32_MAX) fail(p, NBL_E_UNSUPPORTED, "constant %s = %llu does not fit in 32 bits", key, (unsigned long long)v);
    snprintf(t, sizeof t, "\"%lluu\"", (unsigned long long)v);
    def_raw(p, d, key, t);
}
/* WGSL float literal: needs a '.' or an exponent before the f suffix. */
static void def_f(plan *p, defs *d, const char *key, double v) {
    char t[48], num[40];
    snprintf(num, sizeof num, "%.9g", v);
    snprintf(t, sizeof t, "\"%s%sf\"", num, strpbrk(num, ".e") ? "" : ".0");
    def_raw(p, d, key, t);
}

static const char *wtype_define(uint32_t type) {
    switch (type) {
    case NBL_TYPE_F32: return "W_F32";
    case NBL_TYPE_F16: return "W_F16";
    case NBL_TYPE_BF16: return "W_BF16";
    case NBL_TYPE_Q4_0: return "W_Q4_0";
    case NBL_TYPE_Q4_1: return "W_Q4_1";
    case NBL_TYPE_Q5_0: return "W_Q5_0";
    case NBL_TYPE_Q5_1: return "W_Q5_1";
    case NBL_TYPE_Q8_0: return "W_Q8_0";
    case NBL_TYPE_IQ4_NL: return "W_IQ4_NL";
    case NBL_TYPE_Q2_K: return "W_Q2_K";
    case NBL_TYPE_Q3_K: return "W_Q3_K";
    case NBL_TYPE_Q4_K: return "W_Q4_K";
    case NBL_TYPE_Q5_K: return "W_Q5_K";
    case NBL_TYPE_Q6_K: return "W_Q6_K";
    default: return NULL;
    }
}

/* Elements per dequantized group in the shaders (dequant.wgsl's GS). */
static int32_t group_size(uint32_t type) {
    return type == NBL_TYPE_F32 || type == NBL_TYPE_F16 || type == NBL_TYPE_BF16 ? 4 : 8;
}

static int32_t add_pipe(plan *p, const char *shader, const char *entry, const defs *d) {
    if (p->st) return -1;
    char body[sizeof d->s + 48];
    snprintf(body, sizeof body, "%s%s%s", p->o.f16 ? "\"F16\":true," : "", d->s, d->n ? "" : "\"_\":true");
    for (int32_t i = 0; i < p->n_pipes; i++)
        if (!strcmp(p->pipes[i].shader, shader) && !strcmp(p->pipes[i].entry, entry) &&
            !strcmp(p->pipes[i].defs, body))
            return i;
    if (grow(p, (void **)&p->pipes, &p->cap_pipes, p->n_pipes, sizeof(pipe))) return -1;
    pipe *q = &p->pipes[p->n_pipes];
    snprintf(q->shader, sizeof q->shader, "%s", shader);
    snprintf(q->entry, sizeof q->entry, "%s", entry);
    snprintf(q->defs, sizeof q->defs, "%s", body);
    return p->n_pipes++;
}

#define B(buf, access) ((bind){(buf), (access), 0, 0})

static dgrid fixed(int64_t n) { return (dgrid){n, 0, 0, NULL}; }
static dgrid per_tokens(int64_t mul, int64_t div) { return (dgrid){0, mul, div, NULL}; }
static dgrid per_var(const char *var, int64_t div) { return (dgrid){0, 1, div, var}; }

/* Appends a dispatch; binds: pairs of (buffer, access) ending with -1. Grids over 65,535
 * workgroups in x are folded into y (the shaders read workgroup_id.y * num_workgroups.x). */
static void add_disp(plan *p, int32_t prog_id, int32_t pip, const char *kind, const char *label,
                     dgrid gx, dgrid gy, dgrid gz, const bind *binds, int32_t nb) {
    if (p->st || pip < 0) return;
    prog *pr = &p->progs[prog_id];
    if (grow(p, (void **)&pr->d, &pr->cap, pr->n, sizeof(disp))) return;
    disp *d = &pr->d[pr->n++];
    memset(d, 0, sizeof *d);
    d->pipe = pip;
    d->kind = kind;
    snprintf(d->label, sizeof d->label, "%s", label);
    if (gx.b == 0 && gx.a > 65535) {
        if (gy.b != 0 || gy.a != 1) {
            fail(p, NBL_E_UNSUPPORTED, "dispatch '%s' needs %lld workgroups", label, (long long)gx.a);
            return;
        }
        gy = fixed((gx.a + 65534) / 65535);
        gx = fixed(65535);
    }
    d->g[0] = gx;
    d->g[1] = gy;
    d->g[2] = gz;
    uint32_t ns = 0;
    for (int32_t i = 0; i < nb; i++) {
        d->b[i] = binds[i];
        if (binds[i].access != 'u') ns++;
    }
    d->nb = nb;
    if (ns > p->max_storage) p->max_storage = ns;
}

/* ---- the vector table: norms, biases, rope frequencies (f32, each 16-byte aligned) ------------ */

/* Appends n floats (src, or zeros) to the table; returns the offset in floats. */
static int64_t vec_append(plan *p, const float *src, int64_t n) {
    if (p->st) return 0;
    const int64_t need = p->n_vecs + ((n + 3) & ~3);
    if (need > p->cap_vecs) {
        int64_t cap = p->cap_vecs ? p->cap_vecs : 4096;
        while (cap < need) cap *= 2;
        float *nv = realloc(p->vecs, (size_t)cap * sizeof(float));
        if (!nv) return fail(p, NBL_E_NOMEM, "out of memory"), 0;
        p->vecs = nv;
        p->cap_vecs = cap;
    }
    const int64_t at = p->n_vecs;
    for (int64_t i = 0; i < need - at; i++) p->vecs[at + i] = src && i < n ? src[i] : 0.0f;
    p->n_vecs = need;
    return at;
}

static void vec_register(plan *p, const float *src, int32_t blk, int64_t at) {
    int32_t c = p->cap_vsrc, c2 = p->cap_vsrc;
    if (grow(p, (void **)&p->vec_src, &c, p->n_vsrc, sizeof(float *)) ||
        grow(p, (void **)&p->vec_blk, &c2, p->n_vsrc, sizeof(int32_t)) ||
        grow(p, (void **)&p->vec_at, &p->cap_vsrc, p->n_vsrc, sizeof(int64_t)))
        return;
    p->vec_src[p->n_vsrc] = src;
    p->vec_blk[p->n_vsrc] = blk;
    p->vec_at[p->n_vsrc++] = at;
}

/* Offset of a model vector within its layer's block. */
static int64_t vec_off(plan *p, int32_t layer, const float *src) {
    for (int32_t i = 0; i < p->n_vsrc; i++)
        if (p->vec_src[i] == src && p->vec_blk[i] == layer + 1) return p->vec_at[i];
    fail(p, NBL_E_STATE, "vector of layer %d missing from the table", layer);
    return 0;
}

/* The vector block of a layer as a binding. */
static bind vec_bind(const plan *p, int32_t layer) {
    return (bind){p->vecbuf, 'r', (uint64_t)p->blk_start[layer + 1] * 4, (uint64_t)p->blk_n[layer + 1] * 4};
}

/* Lays out every vector the op list uses, layer by layer, before any dispatch is emitted: norm
 * weights, biases (a q/k/v triple as one contiguous block, zeros for a missing one) and the rope
 * frequencies (theta_scale^i by repeated multiplication in float, as the CPU path, divided by the
 * model's frequency factors). */
static void build_vectors(plan *p) {
    const nbl_graph *g = p->g;
    const nbl_hparams *hp = &p->m->hp;
    const int32_t nb = hp->n_layer + 1, half = hp->head_dim / 2;
    p->blk_start = calloc((size_t)nb, sizeof(int64_t));
    p->blk_n = calloc((size_t)nb, sizeof(int64_t));
    p->blk_qkv = calloc((size_t)nb, sizeof(int64_t));
    p->blk_freq = calloc((size_t)nb, sizeof(int64_t));
    float *freq = malloc((size_t)(half + 1) * sizeof(float));
    if (!p->blk_start || !p->blk_n || !p->blk_qkv || !p->blk_freq || !freq) {
        free(freq);
        fail(p, NBL_E_NOMEM, "out of memory");
        return;
    }
    const float ts = powf(hp->rope_theta, -2.0f / (float)hp->head_dim);
    float f = 1.0f;
    for (int32_t i = 0; i < half; i++) {
        freq[i] = f / (p->m->rope_freqs ? p->m->rope_freqs[i] : 1.0f);
        f *= ts;
    }
    for (int32_t b = 0; b < nb && !p->st; b++) {
        const int32_t layer = b - 1;
        while (p->n_vecs % 64) vec_append(p, NULL, 4);
        p->blk_start[b] = p->n_vecs;
        p->blk_qkv[b] = -1;
        if (layer >= 0) p->blk_freq[b] = vec_append(p, freq, half) - p->blk_start[b];
        for (int32_t i = 0; i < g->n_ops && !p->st; i++) {
            const nbl_op *op = &g->ops[i];
            if (op->layer != layer || !op->vec) continue;
            int known = 0;
            for (int32_t k = 0; k < p->n_vsrc; k++) known |= p->vec_src[k] == op->vec && p->vec_blk[k] == b;
            if (known) continue;
            const nbl_op *o1 = i + 2 < g->n_ops ? &g->ops[i + 1] : NULL, *o2 = o1 ? &g->ops[i + 2] : NULL;
            if (op->code == NBL_OP_MATMUL && o1 && o1->code == NBL_OP_MATMUL && o2->code == NBL_OP_MATMUL &&
                o1->a == op->a && o2->a == op->a && p->blk_qkv[b] < 0) {
                const nbl_op *t3[3] = {op, o1, o2};
                const int64_t at = vec_append(p, NULL, (int64_t)op->n + o1->n + o2->n);
                p->blk_qkv[b] = at - p->blk_start[b];
                int64_t o = at;
                for (int32_t k = 0; k < 3 && !p->st; k++) {
                    if (t3[k]->vec) {
                        memcpy(p->vecs + o, t3[k]->vec, (size_t)t3[k]->n * sizeof(float));
                        vec_register(p, t3[k]->vec, b, o - p->blk_start[b]);
                    }
                    o += t3[k]->n;
                }
                continue;
            }
            const int64_t at = vec_append(p, op->vec, op->n);
            vec_register(p, op->vec, b, at - p->blk_start[b]);
        }
        p->blk_n[b] = p->n_vecs - p->blk_start[b];
        if (p->blk_n[b] == 0) p->blk_n[b] = 4, vec_append(p, NULL, 4);
    }
    free(freq);
}

/* ---- weights -------------------------------------------------------------------------------- */

/* Weights are known by their file offsets: a model opened from its metadata has no data
 * pointers, and the executor reads the bytes from the file. */
static int32_t tensor_index(const plan *p, const nbl_weight *w) {
    const nbl_gguf *g = p->m->gguf;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->data_offset + g->tensors[i].offset == w->offset && g->tensors[i].nbytes) return (int32_t)i;
    return -1;
}

static int check_type(plan *p, const nbl_weight *w) {
    if (!wtype_define(w->type)) {
        const nbl_type_traits *t = nbl_type_traits_get(w->type);
        return fail(p, NBL_E_UNSUPPORTED, "tensor type %s has no GPU kernel", t ? t->name : "?");
    }
    if (w->ne0 % group_size(w->type))
        return fail(p, NBL_E_UNSUPPORTED, "rows of %lld elements are not a multiple of %d",
                    (long long)w->ne0, group_size(w->type));
    return 0;
}

/* The GPU buffers holding w, split by rows where one binding cannot take it all. */
static const wparts *weight_parts(plan *p, const nbl_weight *w, const char *label) {
    for (int32_t i = 0; i < p->n_w; i++)
        if (p->w[i].offset == w->offset && p->w[i].nfused == 1) return &p->w[i];
    if (p->st || check_type(p, w) || grow(p, (void **)&p->w, &p->cap_w, p->n_w, sizeof(wparts))) return NULL;
    wparts *wp = &p->w[p->n_w];
    memset(wp, 0, sizeof *wp);
    wp->offset = w->offset;
    wp->nfused = 1;
    const uint64_t rb = nbl_row_bytes(w->type, w->ne0);
    const uint64_t limit = p->o.max_binding_size < p->o.max_buffer_size ? p->o.max_binding_size : p->o.max_buffer_size;
    const uint64_t rows_per = limit / rb;
    if (rows_per == 0) {
        fail(p, NBL_E_NOMEM, "one row of '%s' (%llu bytes) is larger than a GPU binding", label, (unsigned long long)rb);
        return NULL;
    }
    const int64_t np = (int64_t)(((uint64_t)w->ne1 + rows_per - 1) / rows_per);
    if (np > 16) {
        fail(p, NBL_E_NOMEM, "'%s' would need %lld GPU buffers", label, (long long)np);
        return NULL;
    }
    /* Equal parts, so no part is a sliver. */
    const int64_t per = (w->ne1 + np - 1) / np;
    const int32_t ti = tensor_index(p, w);
    for (int64_t i = 0; i < np; i++) {
        const int64_t r0 = i * per, r1 = r0 + per < w->ne1 ? r0 + per : w->ne1;
        char name[64];
        snprintf(name, sizeof name, np > 1 ? "w.%s.%lld" : "w.%s", label, (long long)i);
        const int32_t b = add_buf(p, name, (uint64_t)(r1 - r0) * rb, U_STORAGE);
        if (b < 0) return NULL;
        p->bufs[b].is_weight = 1;
        add_upload(p, b, w->offset + (uint64_t)r0 * rb, (uint64_t)(r1 - r0) * rb, 0, ti);
        wp->buf[i] = b;
        wp->row0[i] = r0;
    }
    wp->row0[np] = w->ne1;
    wp->n = (int32_t)np;
    p->n_w++;
    return wp;
}

/* Several matrices with one input and type as one buffer (rows concatenated), so one dispatch
 * computes them all. -1 (not an error) when they do not fit one binding. */
static int32_t fused_weights(plan *p, const nbl_weight *const *ws, int32_t n, const char *label) {
    for (int32_t i = 0; i < p->n_w; i++)
        if (p->w[i].offset == ws[0]->offset && p->w[i].nfused == n) return p->w[i].buf[0];
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (check_type(p, ws[i])) return -1;
        const uint64_t len = nbl_row_bytes(ws[i]->type, ws[i]->ne0) * (uint64_t)ws[i]->ne1;
        if (len % 4) return -1; /* the next matrix would start where writeBuffer cannot write */
        total += len;
    }
    if (total > p->o.max_binding_size || total > p->o.max_buffer_size) return -1;
    if (grow(p, (void **)&p->w, &p->cap_w, p->n_w, sizeof(wparts))) return -1;
    char name[64];
    snprintf(name, sizeof name, "w.%s", label);
    const int32_t b = add_buf(p, name, total, U_STORAGE);
    if (b < 0) return -1;
    p->bufs[b].is_weight = 1;
    uint64_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint64_t len = nbl_row_bytes(ws[i]->type, ws[i]->ne0) * (uint64_t)ws[i]->ne1;
        add_upload(p, b, ws[i]->offset, len, at, tensor_index(p, ws[i]));
        at += len;
    }
    wparts *wp = &p->w[p->n_w++];
    memset(wp, 0, sizeof *wp);
    wp->offset = ws[0]->offset;
    wp->nfused = n;
    wp->n = 1;
    wp->buf[0] = b;
    return b;
}

/* ---- matrix products ------------------------------------------------------------------------ */

enum { EPI_STORE, EPI_ADD, EPI_QKV, EPI_SWIGLU };

typedef struct mm {
    int32_t epi;
    uint32_t type;
    int64_t K;              /* input width */
    int32_t src, dst;       /* graph buffers (dst: q for EPI_QKV) */
    int32_t wbuf;           /* weight buffer */
    int64_t row0, n, wrow0; /* logical rows [row0, row0 + n); first physical row held by wbuf */
    int64_t yrow0;          /* the output buffer's first row (a row range of a bigger product) */
    int64_t ystride;        /* floats per output row */
    int64_t norm_off;       /* decode: RMS-normalise the input with this weight first; -1 none */
    int64_t bias_off;       /* -1: none */
    int32_t layer, x_last;
    const char *label;
} mm;

static int is_decode(int32_t prog_id) { return prog_id != P_PREFILL && prog_id != P_HEAD_ALL; }

static void mm_dispatch(plan *p, int32_t prog_id, const mm *a) {
    if (p->st) return;
    const nbl_hparams *hp = &p->m->hp;
    const int decode = is_decode(prog_id);
    defs d = {{0}, 0};
    def_flag(p, &d, wtype_define(a->type));
    def_u(p, &d, "K", (uint64_t)a->K);
    def_u(p, &d, "N", (uint64_t)a->n);
    def_u(p, &d, "ROWBYTES", nbl_row_bytes(a->type, a->K));
    def_u(p, &d, "ROW0", (uint64_t)a->row0);
    def_u(p, &d, "WROW0", (uint64_t)a->wrow0);
    def_u(p, &d, "XSTRIDE", (uint64_t)p->g->width[a->src]);
    def_u(p, &d, "YSTRIDE", (uint64_t)a->ystride);
    def_u(p, &d, "Y_OFF", 0);
    def_u(p, &d, "YROW0", (uint64_t)a->yrow0);
    int64_t tpr = 4, wg = p->o.matvec_wg ? p->o.matvec_wg : 64;
    if (decode) {
        /* Threads per row: a subgroup-sized row group where subgroups reduce it without barriers;
         * otherwise enough that each thread takes at least eight weight groups, at most 32.
         * Small workgroups (two rows) spread even 896-row products over every SM. */
        const int64_t groups = a->K / group_size(a->type);
        if (p->o.matvec_tpr) tpr = p->o.matvec_tpr;
        else if (p->o.subgroups) tpr = 32;
        else
            while (tpr < 32 && tpr * 16 <= groups) tpr *= 2;
        if (wg < 2 * tpr) wg = 2 * tpr;
        def_u(p, &d, "TPR", (uint64_t)tpr);
        def_u(p, &d, "WG", (uint64_t)wg);
        if (p->o.subgroups) def_flag(p, &d, "SUBGROUPS");
        if (a->x_last) def_flag(p, &d, "X_LAST");
        if (a->norm_off >= 0) {
            def_flag(p, &d, "NORM");
            def_u(p, &d, "NORM_OFF", (uint64_t)a->norm_off);
            def_f(p, &d, "EPS", hp->rms_eps);
        }
    }
    if (a->bias_off >= 0) {
        def_flag(p, &d, "BIAS");
        def_u(p, &d, "BIAS_OFF", (uint64_t)a->bias_off);
    }
    if (a->epi == EPI_QKV) {
        def_flag(p, &d, "EPI_QKV");
        if (hp->rope_mode == NBL_ROPE_NEOX) def_flag(p, &d, "ROPE_NEOX");
        def_u(p, &d, "HD", (uint64_t)hp->head_dim);
        def_u(p, &d, "QD", (uint64_t)hp->n_head * (uint64_t)hp->head_dim);
        def_u(p, &d, "KD", (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim);
        def_u(p, &d, "NCTX", (uint64_t)p->o.n_ctx);
        def_u(p, &d, "FREQ_OFF", (uint64_t)p->blk_freq[a->layer + 1]);
    } else if (a->epi == EPI_SWIGLU) {
        def_flag(p, &d, "EPI_SWIGLU");
        def_u(p, &d, "NFF", (uint64_t)hp->n_ff);
    } else if (a->epi == EPI_ADD) {
        def_flag(p, &d, "EPI_ADD");
    }
    int64_t tm = 4, tn = 4;
    if (!decode) {
        /* Bigger tiles reuse each loaded weight and activation more, but need workgroup memory
         * (32 floats of k per row and per token) and leave small products with few workgroups. */
        const int64_t T = p->o.max_tokens, words = p->o.max_workgroup_storage / 4;
        const int32_t tile = p->o.matmul_tile;
        if (tile == 88 || (!tile && words >= 32 * 256 && ((a->n + 127) / 128) * ((T + 127) / 128) >= 256)) tm = tn = 8;
        else if (tile == 84 || (!tile && words >= 32 * 192 && ((a->n + 127) / 128) * ((T + 63) / 64) >= 128)) tm = 8;
        if (32 * 16 * (tm + tn) > words) tm = tn = 4;
        if (32 * 16 * (tm + tn) * 4 > p->wg_storage) p->wg_storage = (uint32_t)(32 * 16 * (tm + tn) * 4);
        def_u(p, &d, "TM", (uint64_t)tm);
        def_u(p, &d, "TN", (uint64_t)tn);
    }
    const int32_t pip = add_pipe(p, decode ? "matvec" : "matmul", "main", &d);
    bind b[7] = {{p->params, 'u', 0, 0}, {a->wbuf, 'r', 0, 0}, {p->act[a->src], 'r', 0, 0}, vec_bind(p, a->layer),
                 {p->act[a->dst], 'w', 0, 0}};
    int32_t nb = 5;
    if (a->epi == EPI_QKV) {
        b[5] = (bind){p->kc[a->layer], 'w', 0, 0};
        b[6] = (bind){p->vc[a->layer], 'w', 0, 0};
        nb = 7;
    }
    const char *kind = prog_id == P_HEAD || prog_id == P_HEAD_ALL ? "head" : decode ? "matvec" : "matmul";
    if (decode)
        add_disp(p, prog_id, pip, kind, a->label, fixed((a->n + wg / tpr - 1) / (wg / tpr)), fixed(1), fixed(1), b, nb);
    else
        add_disp(p, prog_id, pip, kind, a->label, fixed((a->n + 16 * tm - 1) / (16 * tm)), per_tokens(1, 16 * tn),
                 fixed(1), b, nb);
}

/* One matrix, split into parts where needed: each part is a dispatch over its rows. */
static void mm_single(plan *p, int32_t prog_id, mm a, const nbl_weight *w, const char *label) {
    const wparts *wp = weight_parts(p, w, label);
    if (!wp) return;
    if (wp->n > 1 && a.epi == EPI_QKV)
        fail(p, NBL_E_UNSUPPORTED, "'%s' is too large for one GPU binding", label);
    const int64_t base = a.row0;
    for (int32_t i = 0; i < wp->n && !p->st; i++) {
        a.wbuf = wp->buf[i];
        a.row0 = base + wp->row0[i];
        a.wrow0 = a.epi == EPI_QKV ? base : base + wp->row0[i];
        a.n = wp->row0[i + 1] - wp->row0[i];
        a.type = w->type;
        a.K = w->ne0;
        a.label = label;
        mm_dispatch(p, prog_id, &a);
    }
}

/* ---- the other ops ---------------------------------------------------------------------------- */

static void emit_embed(plan *p, int32_t prog_id, const nbl_op *op) {
    const nbl_weight *w = op->w;
    const wparts *wp = weight_parts(p, w, "token_embd");
    if (!wp) return;
    for (int32_t i = 0; i < wp->n && !p->st; i++) {
        defs d = {{0}, 0};
        def_flag(p, &d, wtype_define(w->type));
        def_u(p, &d, "K", (uint64_t)w->ne0);
        def_u(p, &d, "ROWBYTES", nbl_row_bytes(w->type, w->ne0));
        def_u(p, &d, "ROW0", (uint64_t)wp->row0[i]);
        def_u(p, &d, "NROWS", (uint64_t)(wp->row0[i + 1] - wp->row0[i]));
        def_u(p, &d, "YSTRIDE", (uint64_t)p->g->width[op->dst]);
        const bind b[] = {B(p->params, 'u'), B(wp->buf[i], 'r'), B(p->tokens, 'r'), B(p->act[op->dst], 'w')};
        const int64_t groups = w->ne0 / group_size(w->type);
        add_disp(p, prog_id, add_pipe(p, "embed", "main", &d), "embed", "embed", fixed((groups + 63) / 64),
                 per_tokens(1, 1), fixed(1), b, 4);
    }
}

static void emit_rmsnorm(plan *p, int32_t prog_id, int32_t src, int32_t dst, int32_t layer, int64_t norm_off,
                         int32_t x_last, const char *label) {
    defs d = {{0}, 0};
    def_u(p, &d, "K", (uint64_t)p->m->hp.n_embd);
    def_u(p, &d, "XSTRIDE", (uint64_t)p->g->width[src]);
    def_u(p, &d, "YSTRIDE", (uint64_t)p->g->width[dst]);
    def_u(p, &d, "NORM_OFF", (uint64_t)norm_off);
    def_f(p, &d, "EPS", p->m->hp.rms_eps);
    if (x_last) def_flag(p, &d, "X_LAST");
    bind b[4] = {{p->params, 'u', 0, 0}, {p->act[src], 'r', 0, 0}, vec_bind(p, layer), {p->act[dst], 'w', 0, 0}};
    int32_t nb = 4;
    if (src == dst) { /* one binding cannot be both read-only and writable */
        def_flag(p, &d, "INPLACE");
        b[1] = b[2];
        b[2] = b[3];
        nb = 3;
    }
    add_disp(p, prog_id, add_pipe(p, "rmsnorm", "main", &d), "rmsnorm", label,
             x_last || prog_id == P_HEAD ? fixed(1) : per_tokens(1, 1), fixed(1), fixed(1), b, nb);
}

static void emit_rope(plan *p, int32_t prog_id, const nbl_op *op) {
    const nbl_hparams *hp = &p->m->hp;
    defs d = {{0}, 0};
    def_u(p, &d, "NH", (uint64_t)op->n);
    def_u(p, &d, "HD", (uint64_t)hp->head_dim);
    def_u(p, &d, "STRIDE", (uint64_t)p->g->width[op->a]);
    def_u(p, &d, "FREQ_OFF", (uint64_t)p->blk_freq[op->layer + 1]);
    if (hp->rope_mode == NBL_ROPE_NEOX) def_flag(p, &d, "ROPE_NEOX");
    const bind b[] = {{p->params, 'u', 0, 0}, vec_bind(p, op->layer), {p->act[op->a], 'w', 0, 0}};
    const int64_t pairs = (int64_t)op->n * hp->head_dim / 2;
    add_disp(p, prog_id, add_pipe(p, "rope", "main", &d), "rope", "rope", fixed((pairs + 63) / 64),
             per_tokens(1, 1), fixed(1), b, 3);
}

static void emit_kv_store(plan *p, int32_t prog_id, const nbl_op *op) {
    const nbl_hparams *hp = &p->m->hp;
    const int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim;
    defs d = {{0}, 0};
    def_u(p, &d, "KD", (uint64_t)kd);
    def_u(p, &d, "HD", (uint64_t)hp->head_dim);
    def_u(p, &d, "NCTX", (uint64_t)p->o.n_ctx);
    def_u(p, &d, "STRIDE", (uint64_t)p->g->width[op->a]);
    const bind b[] = {B(p->params, 'u'), B(p->act[op->a], 'r'), B(p->act[op->b], 'r'),
                      B(p->kc[op->layer], 'w'), B(p->vc[op->layer], 'w')};
    add_disp(p, prog_id, add_pipe(p, "kv_store", "main", &d), "kv_store", "kv_store", fixed((kd + 63) / 64),
             per_tokens(1, 1), fixed(1), b, 5);
}

#define ATT_CH 64 /* cache positions per decode attention workgroup */

static void emit_attention(plan *p, int32_t prog_id, const nbl_op *op) {
    const nbl_hparams *hp = &p->m->hp;
    const int64_t hd = hp->head_dim;
    defs d = {{0}, 0};
    def_u(p, &d, "HD", (uint64_t)hd);
    def_u(p, &d, "NH", (uint64_t)hp->n_head);
    def_u(p, &d, "NKVH", (uint64_t)hp->n_head_kv);
    def_u(p, &d, "NCTX", (uint64_t)p->o.n_ctx);
    def_f(p, &d, "SCALE", 1.0 / sqrt((double)hd));
    def_u(p, &d, "QSTRIDE", (uint64_t)p->g->width[op->a]);
    def_u(p, &d, "OSTRIDE", (uint64_t)p->g->width[op->dst]);
    const bind b[] = {B(p->params, 'u'), B(p->act[op->a], 'r'), B(p->kc[op->layer], 'r'), B(p->vc[op->layer], 'r'),
                      B(p->act[op->dst], 'w')};
    if (is_decode(prog_id)) {
        /* Flash-decoding: chunks of ATT_CH positions per workgroup, then one merge per head. */
        def_u(p, &d, "CH", ATT_CH);
        def_u(p, &d, "MAXCH", (uint64_t)p->att_maxch);
        defs d2 = d;
        def_flag(p, &d, "PASS_PART");
        const bind bp[] = {B(p->params, 'u'), B(p->act[op->a], 'r'), B(p->kc[op->layer], 'r'), B(p->vc[op->layer], 'r'),
                           B(p->att_part, 'w')};
        add_disp(p, prog_id, add_pipe(p, "attn_decode", "main", &d), "attention", "attention", fixed(hp->n_head),
                 per_var("n_kv", ATT_CH), fixed(1), bp, 5);
        const bind bc[] = {B(p->params, 'u'), B(p->att_part, 'r'), B(p->act[op->dst], 'w')};
        add_disp(p, prog_id, add_pipe(p, "attn_decode", "main", &d2), "attention", "attention.merge",
                 fixed(hp->n_head), fixed(1), fixed(1), bc, 3);
        return;
    }
    /* Threads per token: the largest power of two <= 16 dividing the head; then the widest key
     * tile the workgroup memory takes (queries, keys padded by one vec4, scores). */
    int64_t tpq = 16;
    while (hd % tpq) tpq /= 2;
    const int64_t bq = 256 / tpq, words = p->o.max_workgroup_storage / 4;
    int64_t bkv = 64;
    while (bkv > 4 && bq * hd + bkv * (hd + 4) + bq * bkv > words) bkv /= 2;
    def_u(p, &d, "TPQ", (uint64_t)tpq);
    def_u(p, &d, "BQ", (uint64_t)bq);
    def_u(p, &d, "BKV", (uint64_t)bkv);
    add_disp(p, prog_id, add_pipe(p, "attn_prefill", "main", &d), "attention", "attention", fixed(hp->n_head),
             per_tokens(1, bq), fixed(1), b, 5);
}

static void emit_swiglu(plan *p, int32_t prog_id, const nbl_op *op) {
    defs d = {{0}, 0};
    def_u(p, &d, "N", (uint64_t)op->n);
    def_u(p, &d, "STRIDE", (uint64_t)p->g->width[op->dst]);
    const bind b[] = {B(p->params, 'u'), B(p->act[op->b], 'r'), B(p->act[op->dst], 'w')};
    add_disp(p, prog_id, add_pipe(p, "swiglu", "main", &d), "swiglu", "swiglu", fixed((op->n + 255) / 256),
             per_tokens(1, 1), fixed(1), b, 3);
}

static void emit_add(plan *p, int32_t prog_id, const nbl_op *op) {
    defs d = {{0}, 0};
    def_u(p, &d, "N", (uint64_t)op->n);
    def_u(p, &d, "YSTRIDE", (uint64_t)p->g->width[op->dst]);
    def_u(p, &d, "ASTRIDE", (uint64_t)p->g->width[op->b]);
    const bind b[] = {B(p->params, 'u'), B(p->act[op->b], 'r'), B(p->act[op->dst], 'w')};
    add_disp(p, prog_id, add_pipe(p, "add", "main", &d), "add", "add", fixed((op->n + 255) / 256),
             per_tokens(1, 1), fixed(1), b, 3);
}

static void emit_select(plan *p, int32_t prog_id, const nbl_op *op, int32_t last) {
    defs d = {{0}, 0};
    def_u(p, &d, "K", (uint64_t)op->n);
    def_u(p, &d, "XSTRIDE", (uint64_t)p->g->width[op->a]);
    def_u(p, &d, "YSTRIDE", (uint64_t)p->g->width[op->dst]);
    if (last) def_flag(p, &d, "X_LAST");
    const bind b[] = {B(p->params, 'u'), B(p->act[op->a], 'r'), B(p->act[op->dst], 'w')};
    add_disp(p, prog_id, add_pipe(p, "select_rows", "main", &d), "select", "select_rows",
             fixed((op->n + 255) / 256), last ? fixed(1) : per_tokens(1, 1), fixed(1), b, 3);
}

/* ---- walking the op list ------------------------------------------------------------------- */

typedef struct walk {
    int32_t prog_id, fuse;
    /* A norm not yet executed (decode folds it into the products that read its output). */
    int32_t norm_pending, norm_src, norm_dst, norm_last, norm_layer;
    int64_t norm_off;
    /* After SELECT_ROWS of the last row with fusion: the head reads X's last row directly. */
    int32_t sel_pending, sel_src, sel_dst;
} walk;

static void flush_norm(plan *p, walk *wk) {
    if (!wk->norm_pending) return;
    wk->norm_pending = 0;
    emit_rmsnorm(p, wk->prog_id, wk->norm_src, wk->norm_dst, wk->norm_layer, wk->norm_off, wk->norm_last, "rmsnorm");
}

static void flush_select(plan *p, walk *wk, const nbl_op *sel) {
    if (!wk->sel_pending) return;
    wk->sel_pending = 0;
    emit_select(p, wk->prog_id, sel, 1);
}

static const nbl_op *at(const nbl_graph *g, int32_t i) { return i < g->n_ops ? &g->ops[i] : NULL; }

static int64_t bias_or_none(plan *p, int32_t layer, const float *v) { return v ? vec_off(p, layer, v) : -1; }

/* The tensor's name without ".weight" (names are length-delimited in the reader). */
static void weight_label(const plan *p, const nbl_weight *w, char *out, size_t cap) {
    const int32_t ti = tensor_index(p, w);
    if (ti < 0) {
        snprintf(out, cap, "matmul");
        return;
    }
    const nbl_str *nm = &p->m->gguf->tensors[ti].name;
    size_t n = nm->len;
    if (n > 7 && !memcmp(nm->ptr + n - 7, ".weight", 7)) n -= 7;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = nm->ptr[i] >= 0x20 && nm->ptr[i] < 0x7f ? nm->ptr[i] : '?';
    out[n] = 0;
}

/* 1 when buf is read at or after op i before anything overwrites it. */
static int needed_later(const nbl_graph *g, int32_t i, int32_t buf) {
    for (; i < g->n_ops; i++) {
        const nbl_op *op = &g->ops[i];
        if (op->a == buf || op->b == buf) return 1;
        if (op->dst == buf) return 0;
    }
    return 0;
}

/* Matrix products from op i on; returns the number of ops consumed. */
static int32_t emit_products(plan *p, walk *wk, int32_t i) {
    const nbl_graph *g = p->g;
    const nbl_hparams *hp = &p->m->hp;
    const nbl_op *op = &g->ops[i];
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    char label[48];
    mm a = {0};
    a.src = op->a;
    a.norm_off = -1;
    a.bias_off = -1;
    a.layer = op->layer;
    /* The input: a folded norm (decode) or the buffer itself. */
    if (wk->norm_pending && op->a == wk->norm_dst && is_decode(wk->prog_id)) {
        a.src = wk->norm_src;
        a.norm_off = wk->norm_off;
        a.x_last = wk->norm_last;
    } else {
        flush_norm(p, wk);
    }
    const nbl_op *o1 = at(g, i + 1), *o2 = at(g, i + 2), *o3 = at(g, i + 3), *o4 = at(g, i + 4), *o5 = at(g, i + 5);
    /* q|k|v with rope and the cache store as the epilogue: decode only. In the prefill tiles that
     * epilogue, unrolled over a thread's outputs, cost more than the product (H200: 0.75 ms of a
     * 1.2 GFLOP product), while separate rope and store dispatches cost nothing there; prefill
     * reads the same q|k|v buffer by row ranges. */
    const int qkv = wk->fuse && o2 && o5 && o1->code == NBL_OP_MATMUL && o2->code == NBL_OP_MATMUL && o1->a == op->a &&
                    o2->a == op->a && o3->code == NBL_OP_ROPE && o3->a == op->dst && o4->code == NBL_OP_ROPE &&
                    o4->a == o1->dst && o5->code == NBL_OP_KV_STORE && o5->a == o1->dst && o5->b == o2->dst &&
                    op->n == QD && o1->n == KD && o2->n == KD;
    if (qkv && !is_decode(wk->prog_id)) {
        const nbl_op *ops3[3] = {op, o1, o2};
        const nbl_weight *ws[3] = {op->w, o1->w, o2->w};
        const int64_t rows[3] = {QD, KD, KD}, start[3] = {0, QD, QD + KD};
        const int any_bias = op->vec || o1->vec || o2->vec;
        for (int32_t k = 0; k < 3 && !p->st;) {
            int32_t e = k + 1;
            while (e < 3 && ws[e]->type == ws[k]->type) e++;
            const int32_t wb = e - k > 1 ? fused_weights(p, ws + k, e - k, "qkv") : -1;
            for (int32_t j = k; j < e && !p->st; j++) {
                mm one = a;
                one.epi = EPI_STORE;
                one.dst = ops3[j]->dst;
                one.ystride = g->width[ops3[j]->dst];
                weight_label(p, ws[j], label, sizeof label);
                if (wb >= 0) {
                    one.wbuf = wb;
                    one.row0 = start[j];
                    one.yrow0 = start[j];
                    one.wrow0 = start[k];
                    one.n = rows[j];
                    one.type = ws[j]->type;
                    one.K = ws[j]->ne0;
                    one.bias_off = any_bias ? p->blk_qkv[op->layer + 1] : -1;
                    one.label = label;
                    mm_dispatch(p, wk->prog_id, &one);
                } else {
                    one.bias_off = bias_or_none(p, op->layer, ops3[j]->vec);
                    mm_single(p, wk->prog_id, one, ws[j], label);
                }
            }
            k = e;
        }
        return 3;
    }
    if (qkv) {
        /* q|k|v: runs of one type share a buffer and a dispatch; rope and the cache store are
         * the epilogue. Biases go in one block indexed by the output row. */
        const nbl_weight *ws[3] = {op->w, o1->w, o2->w};
        const float *bs[3] = {op->vec, o1->vec, o2->vec};
        const int64_t rows[3] = {QD, KD, KD}, start[3] = {0, QD, QD + KD};
        if (bs[0] || bs[1] || bs[2]) a.bias_off = p->blk_qkv[op->layer + 1];
        a.epi = EPI_QKV;
        a.dst = op->dst;
        a.ystride = g->width[op->dst];
        for (int32_t k = 0; k < 3 && !p->st;) {
            int32_t e = k + 1;
            while (e < 3 && ws[e]->type == ws[k]->type) e++;
            snprintf(label, sizeof label, "blk.%d.%s", op->layer, e - k == 3 ? "qkv" : k == 0 ? (e == 2 ? "qk" : "q") : e == 3 ? (k == 1 ? "kv" : "v") : "k");
            a.row0 = start[k];
            a.wrow0 = start[k];
            a.n = start[e - 1] + rows[e - 1] - start[k];
            a.type = ws[k]->type;
            a.K = ws[k]->ne0;
            a.label = label;
            a.wbuf = e - k > 1 ? fused_weights(p, ws + k, e - k, label) : -1;
            if (a.wbuf >= 0) {
                mm_dispatch(p, wk->prog_id, &a);
            } else {
                for (int32_t s = k; s < e && !p->st; s++) {
                    mm one = a;
                    one.row0 = start[s];
                    mm_single(p, wk->prog_id, one, ws[s], label);
                }
            }
            k = e;
        }
        return 6;
    }
    if (wk->fuse && o2 && o1->code == NBL_OP_MATMUL && o1->a == op->a && o2->code == NBL_OP_SWIGLU &&
        o2->dst == op->dst && o2->a == op->dst && o2->b == o1->dst && op->w->type == o1->w->type &&
        !op->vec && !o1->vec && op->n == o1->n) {
        const nbl_weight *ws[2] = {op->w, o1->w};
        snprintf(label, sizeof label, "blk.%d.gate_up", op->layer);
        a.wbuf = fused_weights(p, ws, 2, label);
        if (a.wbuf >= 0) {
            a.epi = EPI_SWIGLU;
            a.dst = op->dst;
            a.ystride = g->width[op->dst];
            a.row0 = 0;
            a.wrow0 = 0;
            a.n = 2 * (int64_t)op->n;
            a.type = op->w->type;
            a.K = op->w->ne0;
            a.label = label;
            mm_dispatch(p, wk->prog_id, &a);
            return 3;
        }
    }
    weight_label(p, op->w, label, sizeof label);
    a.bias_off = bias_or_none(p, op->layer, op->vec);
    if (wk->fuse && o1 && o1->code == NBL_OP_ADD && o1->dst == o1->a && o1->b == op->dst && o1->dst != op->a) {
        a.epi = EPI_ADD;
        a.dst = o1->dst;
        a.ystride = g->width[o1->dst];
        mm_single(p, wk->prog_id, a, op->w, label);
        return 2;
    }
    a.epi = EPI_STORE;
    a.dst = op->dst;
    a.ystride = g->width[op->dst];
    mm_single(p, wk->prog_id, a, op->w, label);
    return 1;
}

/* Emits the ops of one program: the body (up to SELECT_ROWS) or the head (after it). */
static void emit_program(plan *p, int32_t prog_id) {
    const nbl_graph *g = p->g;
    const int head = prog_id == P_HEAD || prog_id == P_HEAD_ALL;
    walk wk = {0};
    wk.prog_id = prog_id;
    wk.fuse = !p->o.unfused;
    int32_t i = 0;
    if (head) {
        while (i < g->n_ops && g->ops[i].code != NBL_OP_SELECT_ROWS) i++;
    }
    const nbl_op *sel = NULL;
    while (i < g->n_ops && !p->st) {
        const nbl_op *op = &g->ops[i];
        /* A pending norm is folded into the products that read its output, materialised for any
         * other reader, and dropped once nothing reads it again. */
        if (wk.norm_pending) {
            if (op->a == wk.norm_dst || op->b == wk.norm_dst) {
                if (op->code != NBL_OP_MATMUL) flush_norm(p, &wk);
            } else if (!needed_later(g, i, wk.norm_dst)) {
                wk.norm_pending = 0;
            } else if (op->dst == wk.norm_src) {
                flush_norm(p, &wk);
            }
        }
        if (wk.sel_pending && op->code != NBL_OP_RMSNORM) flush_select(p, &wk, sel);
        switch (op->code) {
        case NBL_OP_EMBED: emit_embed(p, prog_id, op); i++; break;
        case NBL_OP_RMSNORM: {
            const int64_t off = vec_off(p, op->layer, op->vec);
            int32_t src = op->a, last = 0;
            if (wk.sel_pending && op->a == wk.sel_dst) { /* the head reads X's last row directly */
                wk.sel_pending = 0;
                src = wk.sel_src;
                last = 1;
            }
            if (wk.fuse && is_decode(prog_id) && (src != op->dst || last)) {
                wk.norm_pending = 1;
                wk.norm_src = src;
                wk.norm_dst = op->dst;
                wk.norm_off = off;
                wk.norm_last = last;
                wk.norm_layer = op->layer;
            } else if (wk.fuse && prog_id == P_HEAD_ALL && sel && src == op->dst && sel->dst == op->dst) {
                emit_rmsnorm(p, prog_id, sel->a, op->dst, op->layer, off, 0, "rmsnorm"); /* select(all) folded */
            } else {
                emit_rmsnorm(p, prog_id, src, op->dst, op->layer, off, last, "rmsnorm");
            }
            i++;
            break;
        }
        case NBL_OP_MATMUL: i += emit_products(p, &wk, i); break;
        case NBL_OP_ROPE: emit_rope(p, prog_id, op); i++; break;
        case NBL_OP_KV_STORE: emit_kv_store(p, prog_id, op); i++; break;
        case NBL_OP_ATTENTION: emit_attention(p, prog_id, op); i++; break;
        case NBL_OP_SWIGLU: emit_swiglu(p, prog_id, op); i++; break;
        case NBL_OP_ADD: emit_add(p, prog_id, op); i++; break;
        case NBL_OP_SELECT_ROWS:
            if (!head) return;
            sel = op;
            if (prog_id == P_HEAD && wk.fuse) {
                wk.sel_pending = 1;
                wk.sel_src = op->a;
                wk.sel_dst = op->dst;
            } else if (prog_id == P_HEAD_ALL && wk.fuse) {
                /* every row: the norm reads X itself (see RMSNORM) */
            } else {
                emit_select(p, prog_id, op, prog_id == P_HEAD);
            }
            i++;
            break;
        default: fail(p, NBL_E_UNSUPPORTED, "op %s has no GPU kernel", nbl_op_name(op->code)); return;
        }
    }
    /* A norm still pending here was folded into every reader. */
}

static void emit_samplers(plan *p) {
    const int64_t V = p->m->hp.n_vocab;
    defs d = {{0}, 0};
    int64_t chunk = (V + p->am_nparts - 1) / p->am_nparts;
    def_flag(p, &d, "PASS_PART");
    def_u(p, &d, "NV", (uint64_t)V);
    def_u(p, &d, "CHUNK", (uint64_t)chunk);
    def_u(p, &d, "NPART", (uint64_t)p->am_nparts);
    const bind b1[] = {B(p->params, 'u'), B(p->act[NBL_BUF_LOGITS], 'r'), B(p->am_part, 'w')};
    add_disp(p, P_ARGMAX, add_pipe(p, "argmax", "main", &d), "sample", "argmax.part", fixed(p->am_nparts), fixed(1),
             fixed(1), b1, 3);
    d = (defs){{0}, 0};
    def_u(p, &d, "NV", (uint64_t)V);
    def_u(p, &d, "NPART", (uint64_t)p->am_nparts);
    const bind b2[] = {B(p->params, 'u'), B(p->am_part, 'r'), B(p->am_out, 'w'), B(p->tokens, 'w')};
    add_disp(p, P_ARGMAX, add_pipe(p, "argmax", "main", &d), "sample", "argmax.final", fixed(1), fixed(1), fixed(1),
             b2, 4);

    d = (defs){{0}, 0};
    def_flag(p, &d, "PASS_PART");
    def_u(p, &d, "NV", (uint64_t)V);
    def_u(p, &d, "CHUNK", (uint64_t)p->tk_chunk);
    def_u(p, &d, "NPART", (uint64_t)p->tk_nparts);
    def_u(p, &d, "KK", (uint64_t)p->o.top_k);
    const bind b3[] = {B(p->params, 'u'), B(p->act[NBL_BUF_LOGITS], 'r'), B(p->tk_cand, 'w')};
    add_disp(p, P_TOPK, add_pipe(p, "topk", "main", &d), "sample", "topk.part", fixed(p->tk_nparts), fixed(1),
             fixed(1), b3, 3);
    d = (defs){{0}, 0};
    def_u(p, &d, "NV", (uint64_t)V);
    def_u(p, &d, "NPART", (uint64_t)p->tk_nparts);
    def_u(p, &d, "KK", (uint64_t)p->o.top_k);
    const bind b4[] = {B(p->params, 'u'), B(p->tk_cand, 'r'), B(p->tk_out, 'w')};
    add_disp(p, P_TOPK, add_pipe(p, "topk", "main", &d), "sample", "topk.final", fixed(1), fixed(1), fixed(1), b4, 3);
}

/* ---- buffers ---------------------------------------------------------------------------------- */

static void make_buffers(plan *p) {
    const nbl_hparams *hp = &p->m->hp;
    const nbl_graph *g = p->g;
    p->params = add_buf(p, "params", 16, U_UNIFORM);
    p->tokens = add_buf(p, "tokens", (uint64_t)p->o.max_tokens * 4, U_INPUT);
    for (int32_t b = 0; b < NBL_BUF_COUNT; b++) {
        const int64_t rows = b == NBL_BUF_OUT || b == NBL_BUF_LOGITS ? p->o.max_logit_rows : p->o.max_tokens;
        p->act[b] = add_buf(p, nbl_buf_name(b), (uint64_t)rows * (uint64_t)g->width[b] * 4,
                            b == NBL_BUF_LOGITS ? U_OUTPUT : U_STORAGE);
        if (p->act[b] >= 0 && b == NBL_BUF_LOGITS && p->bufs[p->act[b]].size > p->o.max_binding_size)
            fail(p, NBL_E_NOMEM, "%d rows of logits exceed one GPU binding", p->o.max_logit_rows);
    }
    p->kc = calloc((size_t)hp->n_layer, sizeof(int32_t));
    p->vc = calloc((size_t)hp->n_layer, sizeof(int32_t));
    if (!p->kc || !p->vc) {
        fail(p, NBL_E_NOMEM, "out of memory");
        return;
    }
    const uint64_t kv = (uint64_t)hp->n_head_kv * (uint64_t)p->o.n_ctx * (uint64_t)hp->head_dim * 4;
    for (int32_t l = 0; l < hp->n_layer && !p->st; l++) {
        char name[32];
        snprintf(name, sizeof name, "cache.k.%d", l);
        p->kc[l] = add_buf(p, name, kv, U_STORAGE);
        snprintf(name, sizeof name, "cache.v.%d", l);
        p->vc[l] = add_buf(p, name, kv, U_STORAGE);
    }
    p->att_maxch = (p->o.n_ctx + ATT_CH - 1) / ATT_CH;
    p->att_part = add_buf(p, "attention.part", (uint64_t)hp->n_head * (uint64_t)p->att_maxch *
                                                   ((uint64_t)hp->head_dim + 4) * 4, U_STORAGE);
    const int64_t V = hp->n_vocab;
    p->am_nparts = (int32_t)((V + 1023) / 1024 < 256 ? (V + 1023) / 1024 : 256);
    p->am_part = add_buf(p, "argmax.part", (uint64_t)p->am_nparts * 8, U_STORAGE);
    p->am_out = add_buf(p, "token", 8, U_OUTPUT);
    p->tk_nparts = (int32_t)((V + 2047) / 2048 < 64 ? (V + 2047) / 2048 : 64);
    p->tk_chunk = (int32_t)((V + p->tk_nparts - 1) / p->tk_nparts);
    p->tk_cand = add_buf(p, "topk.cand", (uint64_t)p->tk_nparts * (uint64_t)p->o.top_k * 8, U_STORAGE);
    p->tk_out = add_buf(p, "topk", (uint64_t)p->o.top_k * 8, U_OUTPUT);
    /* The vector table's size is known only at the end; its slot is reserved now. */
    p->vecbuf = add_buf(p, "vecs", 16, U_STORAGE);
    if (p->vecbuf >= 0) p->bufs[p->vecbuf].is_vecs = 1;
    build_vectors(p);
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static const char *usage_name(int32_t u) {
    return u == U_UNIFORM ? "uniform" : u == U_INPUT ? "input" : u == U_OUTPUT ? "output" : "storage";
}

static void write_json(plan *p, sbuf *s) {
    const nbl_hparams *hp = &p->m->hp;
    const nbl_gguf *gg = p->m->gguf;
    uint64_t wbytes = 0, kvbytes = 0, other = 0, maxbuf = 0;
    for (int32_t i = 0; i < p->n_bufs; i++) {
        const pbuf *b = &p->bufs[i];
        if (b->is_weight) wbytes += b->size;
        else if (!strncmp(b->name, "cache.", 6)) kvbytes += b->size;
        else other += b->size;
        if (b->size > maxbuf) maxbuf = b->size;
    }
    sb_printf(s, "{\"format\":\"nbl-gpu-plan\",\"version\":1,\n\"model\":{\"arch\":");
    sb_jstr(s, p->m->arch, strlen(p->m->arch));
    sb_printf(s, ",\"name\":");
    sb_jstr(s, p->m->name, strlen(p->m->name));
    sb_printf(s,
              ",\"n_vocab\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_head_kv\":%d,\"head_dim\":%d,"
              "\"n_ff\":%d,\"file_bytes\":%llu},\n",
              hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
              (unsigned long long)gg->size);
    sb_printf(s,
              "\"precision\":\"%s\",\"n_ctx\":%d,\"max_tokens\":%d,\"max_logit_rows\":%d,\"top_k\":%d,"
              "\"fused\":%s,\n",
              p->o.f16 ? "f16" : "f32", p->o.n_ctx, p->o.max_tokens, p->o.max_logit_rows, p->o.top_k,
              p->o.unfused ? "false" : "true");
    sb_printf(s,
              "\"requires\":{\"features\":[%s],\"limits\":{\"maxStorageBufferBindingSize\":%llu,"
              "\"maxBufferSize\":%llu,\"maxStorageBuffersPerShaderStage\":%u,"
              "\"maxComputeWorkgroupStorageSize\":%u,\"maxComputeInvocationsPerWorkgroup\":256,"
              "\"maxComputeWorkgroupSizeX\":256}},\n",
              p->o.f16 && p->o.subgroups ? "\"shader-f16\",\"subgroups\"" : p->o.f16 ? "\"shader-f16\"" : p->o.subgroups ? "\"subgroups\"" : "",
              (unsigned long long)maxbuf, (unsigned long long)maxbuf,
              p->max_storage, p->wg_storage);
    sb_printf(s, "\"bytes\":{\"weights\":%llu,\"cache\":%llu,\"other\":%llu,\"total\":%llu},\n",
              (unsigned long long)wbytes, (unsigned long long)kvbytes, (unsigned long long)other,
              (unsigned long long)(wbytes + kvbytes + other));
    sb_printf(s, "\"params\":{\"buffer\":%d,\"fields\":[\"n_tokens\",\"pos0\",\"n_kv\",\"pad\"],"
                 "\"derived\":{\"n_kv\":[\"pos0\",\"n_tokens\"]}},\n", p->params);
    sb_printf(s, "\"inputs\":{\"tokens\":{\"buffer\":%d,\"type\":\"u32\",\"max\":%d}},\n", p->tokens, p->o.max_tokens);
    sb_printf(s, "\"max_tokens_per_program\":{\"decode\":1,\"prefill\":%d,\"head\":%d,\"head_all\":%d},\n",
              p->o.max_tokens, p->o.max_tokens, p->o.max_logit_rows);
    sb_printf(s,
              "\"outputs\":{\"logits\":{\"buffer\":%d,\"type\":\"f32\",\"row\":%d},"
              "\"token\":{\"buffer\":%d,\"type\":\"u32\",\"row\":2},"
              "\"topk\":{\"buffer\":%d,\"type\":\"u32\",\"row\":%d}},\n",
              p->act[NBL_BUF_LOGITS], hp->n_vocab, p->am_out, p->tk_out, 2 * p->o.top_k);
    sb_printf(s, "\"buffers\":[\n");
    for (int32_t i = 0; i < p->n_bufs; i++) {
        const pbuf *b = &p->bufs[i];
        sb_printf(s, "%s{\"name\":", i ? ",\n" : "");
        sb_jstr(s, b->name, strlen(b->name));
        sb_printf(s, ",\"size\":%llu,\"usage\":\"%s\"", (unsigned long long)b->size, usage_name(b->usage));
        if (b->is_vecs) {
            sb_printf(s, ",\"data\":\"");
            sb_base64(s, (const uint8_t *)p->vecs, (size_t)p->n_vecs * sizeof(float));
            sb_printf(s, "\"");
        }
        if (b->n_up) {
            sb_printf(s, ",\"upload\":[");
            for (int32_t u = 0; u < b->n_up; u++) {
                const upload *up = &b->up[u];
                const nbl_gguf_tensor *t = up->tensor >= 0 ? &gg->tensors[up->tensor] : NULL;
                const nbl_type_traits *tt = t ? nbl_type_traits_get(t->type) : NULL;
                sb_printf(s, "%s{\"tensor\":", u ? "," : "");
                if (t) sb_jstr(s, t->name.ptr, t->name.len);
                else sb_printf(s, "null");
                sb_printf(s, ",\"type\":\"%s\",\"offset\":%llu,\"size\":%llu,\"at\":%llu}", tt ? tt->name : "?",
                          (unsigned long long)up->src, (unsigned long long)up->len, (unsigned long long)up->dst);
            }
            sb_printf(s, "]");
        }
        sb_printf(s, "}");
    }
    sb_printf(s, "],\n\"pipelines\":[\n");
    for (int32_t i = 0; i < p->n_pipes; i++)
        sb_printf(s, "%s{\"shader\":\"%s\",\"entry\":\"%s\",\"defines\":{%s}}", i ? ",\n" : "", p->pipes[i].shader,
                  p->pipes[i].entry, p->pipes[i].defs);
    sb_printf(s, "],\n\"programs\":{");
    for (int32_t k = 0; k < P_COUNT; k++) {
        const prog *pr = &p->progs[k];
        sb_printf(s, "%s\n\"%s\":[", k ? "," : "", PROG_NAMES[k]);
        for (int32_t j = 0; j < pr->n; j++) {
            const disp *d = &pr->d[j];
            sb_printf(s, "%s\n{\"pipeline\":%d,\"kind\":\"%s\",\"label\":", j ? "," : "", d->pipe, d->kind);
            sb_jstr(s, d->label, strlen(d->label));
            sb_printf(s, ",\"grid\":[");
            for (int32_t g = 0; g < 3; g++) {
                sb_printf(s, "%s[%lld,%lld,%lld", g ? "," : "", (long long)d->g[g].a, (long long)d->g[g].b,
                          (long long)d->g[g].div);
                if (d->g[g].var) sb_printf(s, ",\"%s\"", d->g[g].var);
                sb_printf(s, "]");
            }
            sb_printf(s, "],\"bind\":[");
            for (int32_t b = 0; b < d->nb; b++) {
                sb_printf(s, "%s[%d,\"%c\"", b ? "," : "", d->b[b].buf, d->b[b].access);
                if (d->b[b].size) sb_printf(s, ",%llu,%llu", (unsigned long long)d->b[b].off, (unsigned long long)d->b[b].size);
                sb_printf(s, "]");
            }
            sb_printf(s, "]}");
        }
        sb_printf(s, "]");
    }
    sb_printf(s,
              "},\n\"steps\":{\"decode\":[\"decode\",\"head\"],\"prefill\":[\"prefill\"],"
              "\"prefill_last\":[\"prefill\",\"head\"],\"prefill_all\":[\"prefill\",\"head_all\"],"
              "\"greedy\":[\"argmax\"],\"topk\":[\"topk\"]}}\n");
}

/* ---- public ----------------------------------------------------------------------------------- */

void nbl_gpu_plan_opts_init(nbl_gpu_plan_opts *o) {
    memset(o, 0, sizeof *o);
}

static void plan_free(plan *p) {
    for (int32_t i = 0; i < p->n_bufs; i++) free(p->bufs[i].up);
    free(p->bufs);
    free(p->pipes);
    for (int32_t k = 0; k < P_COUNT; k++) free(p->progs[k].d);
    free(p->w);
    free(p->vecs);
    free(p->vec_src);
    free(p->vec_at);
    free(p->vec_blk);
    free(p->blk_start);
    free(p->blk_n);
    free(p->blk_qkv);
    free(p->blk_freq);
    free(p->kc);
    free(p->vc);
}

nbl_status nbl_gpu_plan_json(const nbl_model *m, const nbl_gpu_plan_opts *opt, char **out, nbl_error *err) {
    if (!m || !out) return nbl_set_err(err, NBL_E_ARG, "gpu plan: model and out are required");
    *out = NULL;
    if (m->vocab_only) return nbl_set_err(err, NBL_E_STATE, "gpu plan: the model was opened vocab-only");
    if (m->n_missing)
        return nbl_set_err(err, NBL_E_STATE, "gpu plan: %d of the model's small tensors have not come in (nbl_model_put_tensor)",
                           (int)m->n_missing);
    const nbl_hparams *hp = &m->hp;
    plan p;
    memset(&p, 0, sizeof p);
    p.m = m;
    p.err = err;
    p.wg_storage = 16384;
    nbl_gpu_plan_opts_init(&p.o);
    if (opt) p.o = *opt;
    nbl_gpu_plan_opts *o = &p.o;
    if (o->n_ctx < 0 || o->max_tokens < 0 || o->max_logit_rows < 0 || o->top_k < 0)
        return nbl_set_err(err, NBL_E_ARG, "gpu plan: negative option");
    if (!o->n_ctx) o->n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (!o->max_tokens) o->max_tokens = 256;
    if (o->max_tokens > o->n_ctx) o->max_tokens = o->n_ctx;
    if (!o->max_logit_rows) o->max_logit_rows = 1;
    if (o->max_logit_rows > o->max_tokens) o->max_logit_rows = o->max_tokens;
    if (!o->top_k) o->top_k = 40;
    if (!o->max_binding_size) o->max_binding_size = (uint64_t)128 << 20;
    if (!o->max_buffer_size) o->max_buffer_size = (uint64_t)256 << 20;
    if (!o->max_workgroup_storage) o->max_workgroup_storage = 16384;
    if (o->top_k > 256) return nbl_set_err(err, NBL_E_ARG, "gpu plan: top_k %d is above 256", o->top_k);
    if (o->matvec_tpr && (o->matvec_tpr < 4 || o->matvec_tpr > 64 || (o->matvec_tpr & (o->matvec_tpr - 1))))
        return nbl_set_err(err, NBL_E_ARG, "gpu plan: matvec_tpr %d (want 4..64, a power of 2)", o->matvec_tpr);
    if (o->matvec_wg && (o->matvec_wg < 64 || o->matvec_wg > 256 || (o->matvec_wg & (o->matvec_wg - 1))))
        return nbl_set_err(err, NBL_E_ARG, "gpu plan: matvec_wg %d (want 64, 128 or 256)", o->matvec_wg);
    if (o->matmul_tile && o->matmul_tile != 44 && o->matmul_tile != 84 && o->matmul_tile != 88)
        return nbl_set_err(err, NBL_E_ARG, "gpu plan: matmul_tile %d (want 44, 84 or 88)", o->matmul_tile);
    if (o->max_tokens > 65535 * 64) return nbl_set_err(err, NBL_E_ARG, "gpu plan: max_tokens too large");
    if (o->max_workgroup_storage < 16384)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "gpu plan: the kernels need 16 KiB of workgroup memory, the "
                                                   "adapter has %u bytes", o->max_workgroup_storage);
    if (hp->head_dim > 256 || hp->head_dim % 4 || hp->n_layer > 1024)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "gpu plan: head dimension %d (want a multiple of 4 up to 256)",
                           hp->head_dim);
    nbl_graph g;
    nbl_status st = nbl_graph_build(m, &g, err);
    if (st) return st;
    p.g = &g;
    for (int32_t b = 0; b < NBL_BUF_COUNT; b++)
        if (g.width[b] % 4) {
            nbl_graph_free(&g);
            return nbl_set_err(err, NBL_E_UNSUPPORTED, "gpu plan: buffer '%s' rows of %d floats are not a multiple of 4",
                               nbl_buf_name(b), g.width[b]);
        }
    make_buffers(&p);
    for (int32_t k = 0; k < P_COUNT; k++) p.progs[k].name = PROG_NAMES[k];
    emit_program(&p, P_DECODE);
    emit_program(&p, P_PREFILL);
    emit_program(&p, P_HEAD);
    emit_program(&p, P_HEAD_ALL);
    emit_samplers(&p);
    if (!p.st) p.bufs[p.vecbuf].size = (uint64_t)p.n_vecs * sizeof(float);
    sbuf s = {0};
    if (!p.st) {
        write_json(&p, &s);
        if (s.oom) p.st = nbl_set_err(err, NBL_E_NOMEM, "gpu plan: out of memory");
    }
    st = p.st;
    plan_free(&p);
    nbl_graph_free(&g);
    if (st) {
        free(s.p);
        return st;
    }
    *out = s.p;
    return NBL_OK;
}
