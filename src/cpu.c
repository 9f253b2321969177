/* cpu.c — executes the graph's op list on the CPU: matrix products through the kernel layer
 * (matmul.c: quantized activations, SIMD, threads), the rest (norms, rope, attention) here with
 * work split over the same thread pool. */
#include "cpu.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

nbl_status nbl_kv_init(nbl_kv *kv, const nbl_hparams *hp, int32_t n_ctx, nbl_error *err) {
    memset(kv, 0, sizeof *kv);
    uint64_t n, bytes;
    if (nbl_mul_ovf((uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv, (uint64_t)n_ctx * (uint64_t)hp->head_dim, &n) ||
        nbl_mul_ovf(n, sizeof(uint16_t), &bytes) || bytes > SIZE_MAX / 2)
        return nbl_set_err(err, NBL_E_NOMEM, "session: KV cache for %d tokens is too large", n_ctx);
    /* calloc: pages are only touched as the cache fills, so RSS grows with use. */
    kv->k = calloc((size_t)n, sizeof(uint16_t));
    kv->v = calloc((size_t)n, sizeof(uint16_t));
    if (!kv->k || !kv->v) {
        nbl_kv_free(kv);
        return nbl_set_err(err, NBL_E_NOMEM, "session: cannot allocate the KV cache (%llu MiB)",
                           (unsigned long long)(2 * bytes >> 20));
    }
    kv->n_ctx = n_ctx;
    kv->n_layer = hp->n_layer;
    kv->n_head_kv = hp->n_head_kv;
    kv->head_dim = hp->head_dim;
    return NBL_OK;
}

void nbl_kv_free(nbl_kv *kv) {
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

static inline uint16_t *kv_row(const nbl_kv *kv, uint16_t *base, int32_t layer, int32_t h, int32_t pos) {
    size_t per_head = (size_t)kv->n_ctx * kv->head_dim;
    return base + ((size_t)layer * kv->n_head_kv + h) * per_head + (size_t)pos * kv->head_dim;
}

nbl_status nbl_cpu_scratch_init(nbl_cpu_scratch *s, const nbl_graph *g, int32_t max_rows,
                                int32_t n_ctx, int32_t n_threads, nbl_error *err) {
    memset(s, 0, sizeof *s);
    for (int b = 0; b < NBL_BUF_COUNT; b++) {
        if (b == NBL_BUF_LOGITS) continue; /* logits go straight to the caller's array */
        s->buf[b] = malloc((size_t)max_rows * (size_t)g->width[b] * sizeof(float));
        if (!s->buf[b]) goto oom;
    }
    s->pos = malloc((size_t)max_rows * sizeof(int32_t));
    if (!s->pos) goto oom;
    s->max_rows = max_rows;
    s->n_ctx = n_ctx;
    s->n_threads = n_threads;
    return NBL_OK;
oom:
    nbl_cpu_scratch_free(s);
    return nbl_set_err(err, NBL_E_NOMEM, "session: cannot allocate activation buffers");
}

void nbl_cpu_scratch_free(nbl_cpu_scratch *s) {
    for (int b = 0; b < NBL_BUF_COUNT; b++) free(s->buf[b]);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

/* ---- per-op work ----------------------------------------------------------------------- */

typedef struct step {
    const nbl_model *m;
    const nbl_op *op;
    nbl_kv *kv;
    nbl_cpu_scratch *s;
    const int32_t *tokens;
    int32_t T, pos0;
} step;

static void kv_store(const step *st) {
    const nbl_op *op = st->op;
    nbl_kv *kv = st->kv;
    const int32_t d = kv->head_dim, KD = kv->n_head_kv * d;
    for (int32_t t = 0; t < st->T; t++) {
        const float *k = st->s->buf[op->a] + (size_t)t * KD;
        const float *v = st->s->buf[op->b] + (size_t)t * KD;
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            uint16_t *kd = kv_row(kv, kv->k, op->layer, h, st->pos0 + t);
            uint16_t *vd = kv_row(kv, kv->v, op->layer, h, st->pos0 + t);
            for (int32_t i = 0; i < d; i++) {
                kd[i] = nbl_f32_to_fp16(k[h * d + i]);
                vd[i] = nbl_f32_to_fp16(v[h * d + i]);
            }
        }
    }
}

/* The layout the CPU computes with: a regrouped copy when the model made one. */
static uint32_t cpu_type(const nbl_weight *w) { return w->cpu_data ? w->cpu_type : w->type; }
static const void *cpu_data(const nbl_weight *w) { return w->cpu_data ? w->cpu_data : w->data; }

/* Rows in the CPU's layout: the file's, or the regrouped one of the output head it is tied to. */
static nbl_status embed(const step *st, nbl_error *err) {
    const nbl_weight *w = st->op->w;
    const uint32_t type = cpu_type(w);
    const uint8_t *data = cpu_data(w);
    const uint64_t row = nbl_row_bytes(w->type, w->ne0);
    for (int32_t t = 0; t < st->T; t++) {
        const int32_t id = st->tokens[t];
        if (id < 0 || id >= w->ne1)
            return nbl_set_err(err, NBL_E_ARG, "eval: token id %d is outside the vocabulary [0, %lld)",
                               id, (long long)w->ne1);
        float *dst = st->s->buf[st->op->dst] + (size_t)t * w->ne0;
        if (type != w->type) nbl_r16_dequant_row(type, data, w->ne1, w->ne0, id, dst);
        else nbl_dequant_row(w->type, data + (uint64_t)id * row, dst, w->ne0);
    }
    return NBL_OK;
}

nbl_status nbl_cpu_forward(const nbl_model *m, const nbl_graph *g, nbl_threadpool *tp, nbl_kv *kv,
                           nbl_cpu_scratch *s, const int32_t *tokens, int32_t T, int32_t pos0,
                           int32_t logits_all, float *logits, nbl_error *err) {
    NBL_ASSERT(T >= 1 && T <= s->max_rows && pos0 + T <= kv->n_ctx);
    step st = {m, NULL, kv, s, tokens, T, pos0};
    const nbl_hparams *hp = &m->hp;
    const int32_t E = hp->n_embd, d = hp->head_dim;
    for (int32_t t = 0; t < T; t++) s->pos[t] = pos0 + t;
    int32_t rows = T; /* rows in flight; 1 after SELECT_ROWS when only the last logits are kept */
    nbl_status rc = NBL_OK;
    for (int32_t i = 0; i < g->n_ops && !rc; i++) {
        const nbl_op *op = &g->ops[i];
        float *dst = op->dst >= 0 ? s->buf[op->dst] : NULL, *a = op->a >= 0 ? s->buf[op->a] : NULL;
        st.op = op;
        switch (op->code) {
        case NBL_OP_EMBED: rc = embed(&st, err); break;
        case NBL_OP_RMSNORM: nbl_rmsnorm_f32(dst, a, op->vec, op->n, rows, op->n, hp->rms_eps); break;
        case NBL_OP_MATMUL: {
            const int64_t in_w = op->w->ne0;
            float *y = op->dst == NBL_BUF_LOGITS ? logits : dst;
            if (s->observe) s->observe(s->observe_ctx, op->w, a, rows);
            rc = nbl_matmul_bias(tp, cpu_type(op->w), cpu_data(op->w), op->vec, op->w->ne1, in_w, a, in_w,
                                 rows, y, op->n, err);
            break;
        }
        case NBL_OP_ROPE:
            nbl_rope_f32(a, rows, op->n, d, (int64_t)op->n * d, s->pos, d, hp->rope_mode,
                         hp->rope_theta, 1.0f, m->rope_freqs);
            break;
        case NBL_OP_KV_STORE: kv_store(&st); break;
        case NBL_OP_ATTENTION: {
            nbl_attn_args at = {
                .T = rows, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = d,
                .pos0 = pos0, .scale = 1.0f / sqrtf((float)d), .q = a, .q_stride_t = op->n,
                .k = kv_row(kv, kv->k, op->layer, 0, 0), .v = kv_row(kv, kv->v, op->layer, 0, 0),
                .kv_type = NBL_TYPE_F16, .kv_stride_pos = d, .kv_stride_head = (int64_t)kv->n_ctx * d,
                .out = dst, .out_stride_t = op->n};
            rc = nbl_attention(tp, &at, err);
            break;
        }
        case NBL_OP_SWIGLU: nbl_silu_mul_f32(dst, a, s->buf[op->b], (int64_t)rows * op->n); break;
        case NBL_OP_ADD:
            NBL_ASSERT(op->dst == op->a);
            nbl_add_f32(dst, s->buf[op->b], (int64_t)rows * op->n);
            break;
        case NBL_OP_SELECT_ROWS:
            if (!logits) return NBL_OK; /* a prefill chunk whose logits nobody reads */
            if (!logits_all) {
                memcpy(dst, a + (size_t)(T - 1) * E, (size_t)E * sizeof(float));
                rows = 1;
            } else {
                memcpy(dst, a, (size_t)T * E * sizeof(float));
            }
            break;
        default: NBL_ASSERT(0);
        }
    }
    return rc;
}
