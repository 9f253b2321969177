/* matmul.c — the CPU compute entry points: quantized matrix products (activation conversion,
 * blocking into tiles, work split across the thread pool), the fused elementwise helpers and
 * grouped-query attention, each dispatched to the fastest ISA table available at run time. */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- ISA selection -------------------------------------------------------------------------- */

static const nbl_kernels *g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void pick_best(void) {
    const char *want = getenv("NBL_ISA");
    const nbl_kernels *cands[] = {nbl_kernels_amx(), nbl_kernels_avx512(), nbl_kernels_avx2(), nbl_kernels_neon(),
                                  nbl_kernels_wasm(), nbl_kernels_ref()};
    g_best = NULL;
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (!cands[i]) continue;
        if (want && *want && strcasecmp(want, cands[i]->name) != 0) continue;
        g_best = cands[i];
        break;
    }
    if (!g_best) g_best = nbl_kernels_ref();
}

const nbl_kernels *nbl_kernels_best(void) {
    pthread_once(&g_once, pick_best);
    return g_best;
}

int32_t nbl_vec_dot_type(uint32_t wtype) {
    switch (wtype) {
    case NBL_TYPE_F32: return NBL_TYPE_F32;
    case NBL_TYPE_F16: return NBL_TYPE_F16;
    case NBL_TYPE_BF16: return NBL_TYPE_BF16;
    case NBL_TYPE_Q4_0:
    case NBL_TYPE_Q5_0:
    case NBL_TYPE_Q8_0:
    case NBL_TYPE_IQ4_NL:
    case NBL_TYPE_Q4_0_R16:
    case NBL_TYPE_Q8_0_R16: return NBL_TYPE_Q8_0;
    case NBL_TYPE_Q4_1:
    case NBL_TYPE_Q5_1: return NBL_TYPE_Q8_1;
    case NBL_TYPE_Q2_K:
    case NBL_TYPE_Q3_K:
    case NBL_TYPE_Q4_K:
    case NBL_TYPE_Q5_K:
    case NBL_TYPE_Q6_K: return NBL_TYPE_Q8_K;
    default: return -1;
    }
}

/* ---- matrix products ------------------------------------------------------------------------ */

typedef struct mm_job {
    const nbl_kernels *kt;
    uint32_t wtype, xtype;
    const uint8_t *W;
    size_t bw;       /* bytes per weight row */
    int64_t M, K, T;
    const float *X;
    int64_t ldx;
    uint8_t *xq;     /* T converted activation rows */
    size_t bx;       /* bytes per converted row */
    float *Y;
    int64_t ldy;
    const float *bias;
    int64_t rows_per_chunk, n_chunks, cols_per_block;
    uint8_t *panels;  /* packed path: one panel per thread */
    size_t panel_bytes;
    atomic_long next;
} mm_job;

/* Minimum columns for the packed path: below it, decoding each weight block on the fly (tiles)
 * costs less than packing it once. */
#define PACK_MIN_T 4

static void mm_convert(void *ctx, int32_t ith, int32_t nth) {
    mm_job *j = ctx;
    nbl_from_f32_fn f = j->kt->from_f32[j->xtype];
    for (int64_t t = ith; t < j->T; t += nth) f(j->X + t * j->ldx, j->xq + (size_t)t * j->bx, j->K);
}

static void mm_compute(void *ctx, int32_t ith, int32_t nth) {
    (void)ith;
    (void)nth;
    mm_job *j = ctx;
    const nbl_tile_fn tile = j->kt->tile[j->wtype];
    const int64_t tm = j->kt->tile_m[j->wtype], tn = j->kt->tile_n[j->wtype];
    /* Work items are (row chunk, column block); the row chunk's weights stay in L1/L2 while the
     * column block's activations stream through, so every weight block is decoded once per tile
     * of tn columns rather than once per column. */
    const int64_t n_colblk = (j->T + j->cols_per_block - 1) / j->cols_per_block;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_chunks * n_colblk) break;
        const int64_t rc = it % j->n_chunks, cb = it / j->n_chunks;
        const int64_t r0 = rc * j->rows_per_chunk;
        const int64_t r1 = r0 + j->rows_per_chunk < j->M ? r0 + j->rows_per_chunk : j->M;
        const int64_t c0 = cb * j->cols_per_block;
        const int64_t c1 = c0 + j->cols_per_block < j->T ? c0 + j->cols_per_block : j->T;
        /* decode: the chunk's tiles taken from S parts in turn (tile i of each part, then i+1) */
        const int64_t n_tiles = (r1 - r0 + tm - 1) / tm;
        const int64_t S = j->T == 1 && j->kt->dec_streams > 1 && n_tiles >= 2 * j->kt->dec_streams ? j->kt->dec_streams : 1;
        const int64_t part = (n_tiles + S - 1) / S;
        for (int64_t c = c0; c < c1; c += tn) {
            const int32_t nc = (int32_t)(c1 - c < tn ? c1 - c : tn);
            for (int64_t k = 0; k < part * S; k++) {
                const int64_t ti = (k % S) * part + k / S;
                if (ti >= n_tiles) continue;
                const int64_t r = r0 + ti * tm;
                const int32_t nr = (int32_t)(r1 - r < tm ? r1 - r : tm);
                float *y = j->Y + c * j->ldy + r;
                tile(j->K, j->W + (size_t)r * j->bw, j->bw, nr, j->xq + (size_t)c * j->bx, j->bx,
                     nc, y, j->ldy);
                if (j->bias)
                    for (int32_t cc = 0; cc < nc; cc++)
                        for (int32_t rr = 0; rr < nr; rr++) y[cc * j->ldy + rr] += j->bias[r + rr];
            }
        }
    }
}

static void mm_packed(void *ctx, int32_t ith, int32_t nth) {
    (void)nth;
    mm_job *j = ctx;
    const nbl_kernels *kt = j->kt;
    uint8_t *panel = j->panels + (size_t)ith * j->panel_bytes;
    const int64_t n_panels = (j->M + NBL_PANEL_ROWS - 1) / NBL_PANEL_ROWS;
    for (;;) {
        const int64_t p = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (p >= n_panels) break;
        const int64_t r0 = p * NBL_PANEL_ROWS;
        const int32_t nr = (int32_t)(j->M - r0 < NBL_PANEL_ROWS ? j->M - r0 : NBL_PANEL_ROWS);
        const uint32_t base = nbl_layout_base(j->wtype);
        /* a regrouped matrix: half groups, then its last M % 16 rows, which are base rows */
        if (base != j->wtype && r0 < j->M / 16 * 16)
            kt->pack_r16(j->wtype, j->K, j->W + (size_t)(r0 / 16 * 16) * j->bw, (int32_t)(r0 % 16 / 8), panel);
        else
            kt->pack[base](j->K, j->W + (size_t)r0 * j->bw, j->bw, nr, panel);
        float *y = j->Y + r0;
        kt->gemm(panel, j->K, kt->pack_blk[base], kt->pack_min[base], kt->pack_off[base], j->xtype, j->xq, j->bx,
                 (int32_t)j->T, y, j->ldy, nr);
        if (j->bias)
            for (int64_t t = 0; t < j->T; t++)
                for (int32_t r = 0; r < nr; r++) y[t * j->ldy + r] += j->bias[r0 + r];
    }
}

nbl_status nbl_matmul_bias(nbl_threadpool *tp, uint32_t wtype, const void *W, const float *bias,
                           int64_t M, int64_t K, const float *X, int64_t ldx, int64_t T,
                           float *Y, int64_t ldy, nbl_error *err) {
    const int32_t xtype = nbl_vec_dot_type(wtype);
    if (xtype < 0)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "matmul: weight type %u has no dot product", wtype);
    const uint32_t base = nbl_layout_base(wtype); /* a regrouped layout has its base's blocks */
    const nbl_type_traits *tw = nbl_type_traits_get(base), *tx = nbl_type_traits_get((uint32_t)xtype);
    if (!W || !X || !Y || M < 0 || K <= 0 || T < 0)
        return nbl_set_err(err, NBL_E_ARG, "matmul: bad arguments (M=%lld K=%lld T=%lld)",
                           (long long)M, (long long)K, (long long)T);
    if (K % tw->blck != 0 || K % tx->blck != 0)
        return nbl_set_err(err, NBL_E_ARG, "matmul: K=%lld is not a multiple of %s's block of %d",
                           (long long)K, K % tw->blck ? tw->name : tx->name,
                           K % tw->blck ? tw->blck : tx->blck);
    if (ldx < K || (T > 1 && ldy < M))
        return nbl_set_err(err, NBL_E_ARG, "matmul: ldx=%lld < K or ldy=%lld < M", (long long)ldx,
                           (long long)ldy);
    if (M == 0 || T == 0) return NBL_OK;
    if (!nbl_kernels_best()->tile[wtype])
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "matmul: this CPU's kernels do not read layout %u", wtype);

    mm_job j;
    memset(&j, 0, sizeof j);
    j.kt = nbl_kernels_best();
    j.wtype = wtype;
    j.xtype = (uint32_t)xtype;
    j.W = W;
    j.bw = (size_t)nbl_row_bytes(base, K);
    j.M = M;
    j.K = K;
    j.T = T;
    j.X = X;
    j.ldx = ldx;
    j.bx = j.kt->x_bytes[xtype] ? (size_t)(K / tx->blck) * (size_t)j.kt->x_bytes[xtype]
                                 : (size_t)nbl_row_bytes((uint32_t)xtype, K);
    j.bx = (j.bx + 63) & ~(size_t)63; /* each converted row cache-line aligned */
    j.Y = Y;
    j.ldy = ldy;
    j.bias = bias;

    const int32_t nth = nbl_threadpool_size(tp);
    /* K is a multiple of the weight block (checked above), which is all a whole product needs. */
    const int whole = T >= j.kt->mm_min_t && j.kt->mm[wtype];
    const int packed = !whole && T >= PACK_MIN_T && j.kt->pack[base] && (base == wtype || j.kt->pack_r16) &&
                       j.kt->gemm && K % j.kt->pack_blk[base] == 0;
    if (packed) j.panel_bytes = (nbl_panel_bytes(K, j.kt->pack_blk[base], j.kt->pack_min[base]) + 63) & ~(size_t)63;
    const size_t xbytes = (j.bx * (size_t)T + 63) & ~(size_t)63;
    const size_t need = xbytes + (whole ? j.kt->mm_scratch(K, T, nth) : j.panel_bytes * (size_t)nth);
    void *heap = NULL;
    j.xq = nbl_threadpool_scratch(tp, need);
    if (!j.xq) {
        if (posix_memalign(&heap, 64, need ? need : 64) != 0)
            return nbl_set_err(err, NBL_E_NOMEM, "matmul: %zu bytes of activation scratch", need);
        j.xq = heap;
    }
    j.panels = j.xq + xbytes;
    if (T * K < 16384 || nth == 1)
        mm_convert(&j, 0, 1);
    else
        nbl_threadpool_run(tp, mm_convert, &j);

    if (whole) {
        j.kt->mm[wtype](tp, wtype, W, j.bw, M, K, j.xq, j.bx, T, Y, ldy, bias, j.panels);
        free(heap);
        return NBL_OK;
    }
    if (packed) {
        atomic_init(&j.next, 0);
        nbl_threadpool_run(tp, mm_packed, &j);
        free(heap);
        return NBL_OK;
    }
    const int64_t tm = j.kt->tile_m[wtype], tn = j.kt->tile_n[wtype];
    /* Enough chunks that a slow thread does not hold up the rest, few enough that the atomic
     * counter is not contended; chunks are whole tiles. */
    /* A regrouped chunk is one sequential stream, which the prefetchers follow better for longer:
     * 4 chunks per thread decode Q4_0 3-4 % faster than 8 (Qwen2.5-0.5B, 2 threads). */
    const int64_t per_thread = base != wtype && T == 1 ? 4 : 8;
    int64_t rpc = (M + (int64_t)nth * per_thread - 1) / ((int64_t)nth * per_thread);
    /* Chunks start on a row a tile may start on: any group of 16 for a regrouped layout, whose
     * tiles may take several groups (a chunk's last tile fewer). So 2 threads share an 896-row
     * matrix as 8 chunks of 7 groups, not 7 chunks of one 128-row tile (4 chunks against 3). */
    const int64_t ra = base != wtype ? 16 : tm;
    if (T > 1 && rpc > 4 * ra) rpc = 4 * ra; /* prefill: the chunk's weights stay in L2 */
    rpc = (rpc + ra - 1) / ra * ra;
    if (rpc < ra) rpc = ra;
    j.rows_per_chunk = rpc;
    j.n_chunks = (M + rpc - 1) / rpc;
    /* Columns per block: the block's converted activations should fit in L2 next to the weights. */
    int64_t cpb = (int64_t)((256 * 1024) / (j.bx ? j.bx : 1));
    cpb = cpb / tn * tn;
    if (cpb < tn) cpb = tn;
    j.cols_per_block = cpb;
    atomic_init(&j.next, 0);
    if (nth == 1)
        mm_compute(&j, 0, 1);
    else
        nbl_threadpool_run(tp, mm_compute, &j);
    free(heap);
    return NBL_OK;
}

nbl_status nbl_matmul(nbl_threadpool *tp, uint32_t wtype, const void *W, int64_t M, int64_t K,
                      const float *X, int64_t ldx, int64_t T, float *Y, int64_t ldy,
                      nbl_error *err) {
    return nbl_matmul_bias(tp, wtype, W, NULL, M, K, X, ldx, T, Y, ldy, err);
}

/* ---- elementwise helpers -------------------------------------------------------------------- */

void nbl_rmsnorm_f32(float *y, const float *x, const float *w, int64_t n, int64_t n_rows,
                     int64_t stride, float eps) {
    const nbl_kernels *kt = nbl_kernels_best();
    for (int64_t r = 0; r < n_rows; r++) kt->rmsnorm(y + r * stride, x + r * stride, w, n, eps);
}

void nbl_silu_mul_f32(float *y, const float *g, const float *u, int64_t n) {
    nbl_kernels_best()->silu_mul(y, g, u, n);
}

void nbl_softmax_f32(float *x, int64_t n) { nbl_kernels_best()->softmax(x, n); }

void nbl_add_f32(float *y, const float *x, int64_t n) { nbl_kernels_best()->add(y, x, n); }

void nbl_rope_f32(float *x, int64_t T, int32_t n_head, int32_t head_dim, int64_t stride_t,
                  const int32_t *pos, int32_t n_rot, int32_t mode, float freq_base,
                  float freq_scale, const float *freq_factors) {
    if (n_rot > head_dim) n_rot = head_dim;
    if (n_rot > 1024) n_rot = 1024;
    n_rot &= ~1;
    if (n_rot <= 0) return;
    const int32_t half = n_rot / 2;
    float cs[512], sn[512]; /* head_dim <= 1024 */
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    for (int64_t t = 0; t < T; t++) {
        /* One cos/sin table per position, shared by every head. theta advances by repeated
         * multiplication in float, exactly as ggml computes it. */
        float theta = (float)pos[t];
        for (int32_t i = 0; i < half; i++) {
            const float ff = freq_factors ? freq_factors[i] : 1.0f;
            const float th = theta * freq_scale / ff;
            cs[i] = cosf(th);
            sn[i] = sinf(th);
            theta *= theta_scale;
        }
        float *row = x + t * stride_t;
        for (int32_t h = 0; h < n_head; h++) {
            float *v = row + (int64_t)h * head_dim;
            if (mode == NBL_ROPE_NEOX) {
                for (int32_t i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * sn[i];
                    v[i + half] = a * sn[i] + b * cs[i];
                }
            } else {
                for (int32_t i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cs[i] - b * sn[i];
                    v[2 * i + 1] = a * sn[i] + b * cs[i];
                }
            }
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------ */

#define ATT_KB 64      /* keys per block: K and V blocks stay in L1 across the rows of a unit */
#define ATT_ROWS 64    /* max query rows (positions x heads of a group) per work unit */

typedef struct att_job {
    const nbl_attn_args *a;
    const nbl_kernels *kt;
    int32_t group, heads_per_unit, n_hsplit, t_per_unit, n_tchunks;
    int64_t n_units;
    float *scratch;       /* per thread: see att_unit */
    size_t scratch_per_thread;
    atomic_long next;
} att_job;

static void att_unit(const att_job *j, int64_t u, float *buf) {
    const nbl_attn_args *a = j->a;
    const nbl_kernels *kt = j->kt;
    const int32_t D = a->head_dim;
    const int32_t tc = (int32_t)(u % j->n_tchunks);
    const int32_t hs = (int32_t)((u / j->n_tchunks) % j->n_hsplit);
    const int32_t kvh = (int32_t)(u / ((int64_t)j->n_tchunks * j->n_hsplit));
    const int32_t t0 = tc * j->t_per_unit;
    const int32_t t1 = t0 + j->t_per_unit < a->T ? t0 + j->t_per_unit : a->T;
    const int32_t g0 = hs * j->heads_per_unit;
    const int32_t g1 = g0 + j->heads_per_unit < j->group ? g0 + j->heads_per_unit : j->group;
    const int32_t ng = g1 - g0, nrows = (t1 - t0) * ng;
    if (nrows <= 0) return;
    /* scratch: acc [ATT_ROWS][D] | kf, vf [ATT_KB][D] | s [ATT_KB] | mx, sum [ATT_ROWS] */
    float *acc = buf, *kf = acc + (size_t)ATT_ROWS * D, *vf = kf + (size_t)ATT_KB * D;
    float *s = vf + (size_t)ATT_KB * D, *mx = s + ATT_KB, *sum = mx + ATT_ROWS;
    for (int32_t r = 0; r < nrows; r++) {
        mx[r] = -INFINITY;
        sum[r] = 0.0f;
        memset(acc + (size_t)r * D, 0, (size_t)D * sizeof(float));
    }
    const int f16 = a->kv_type == NBL_TYPE_F16;
    const size_t esz = f16 ? 2 : 4;
    const uint8_t *kb = (const uint8_t *)a->k + (size_t)kvh * a->kv_stride_head * esz;
    const uint8_t *vb = (const uint8_t *)a->v + (size_t)kvh * a->kv_stride_head * esz;
    const int32_t n_keys = a->pos0 + t1; /* the last row of the unit sees this many */
    for (int32_t k0 = 0; k0 < n_keys; k0 += ATT_KB) {
        const int32_t k1 = k0 + ATT_KB < n_keys ? k0 + ATT_KB : n_keys;
        /* The block's keys and values in f32, once for all the unit's rows. */
        const float *K, *V;
        if (!f16 && a->kv_stride_pos == D) {
            K = (const float *)kb + (size_t)k0 * D;
            V = (const float *)vb + (size_t)k0 * D;
        } else {
            for (int32_t p = k0; p < k1; p++) {
                const uint8_t *kp = kb + (size_t)p * a->kv_stride_pos * esz, *vp = vb + (size_t)p * a->kv_stride_pos * esz;
                if (f16) {
                    kt->f16_to_f32(kf + (size_t)(p - k0) * D, (const uint16_t *)kp, D);
                    kt->f16_to_f32(vf + (size_t)(p - k0) * D, (const uint16_t *)vp, D);
                } else {
                    memcpy(kf + (size_t)(p - k0) * D, kp, (size_t)D * 4);
                    memcpy(vf + (size_t)(p - k0) * D, vp, (size_t)D * 4);
                }
            }
            K = kf;
            V = vf;
        }
        for (int32_t r = 0; r < nrows; r++) {
            const int32_t t = t0 + r / ng, h = kvh * j->group + g0 + r % ng;
            const int32_t kend = (a->pos0 + t + 1) < k1 ? (a->pos0 + t + 1) : k1; /* causal */
            if (kend <= k0) continue;
            const int32_t nk = kend - k0;
            kt->attn_qk(a->q + (int64_t)t * a->q_stride_t + (int64_t)h * D, K, nk, D, a->scale, s);
            float bmax = -INFINITY;
            for (int32_t p = 0; p < nk; p++) bmax = s[p] > bmax ? s[p] : bmax;
            float *o = acc + (size_t)r * D;
            if (bmax > mx[r]) { /* online softmax: rescale what was accumulated so far */
                const float c = expf(mx[r] - bmax); /* 0 on the first block */
                sum[r] *= c;
                for (int32_t d = 0; d < D; d++) o[d] *= c;
                mx[r] = bmax;
            }
            sum[r] += kt->exp_sum(s, nk, mx[r]);
            kt->attn_pv(o, s, V, nk, D);
        }
    }
    for (int32_t r = 0; r < nrows; r++) {
        const int32_t t = t0 + r / ng, h = kvh * j->group + g0 + r % ng;
        float *out = a->out + (int64_t)t * a->out_stride_t + (int64_t)h * D;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        for (int32_t d = 0; d < D; d++) out[d] = acc[(size_t)r * D + d] * inv;
    }
}

static void att_worker(void *ctx, int32_t ith, int32_t nth) {
    (void)nth;
    att_job *j = ctx;
    float *buf = j->scratch + (size_t)ith * j->scratch_per_thread;
    for (;;) {
        const int64_t u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (u >= j->n_units) break;
        att_unit(j, u, buf);
    }
}

nbl_status nbl_attention(nbl_threadpool *tp, const nbl_attn_args *a, nbl_error *err) {
    if (!a || !a->q || !a->k || !a->v || !a->out || a->T < 0 || a->n_head <= 0 ||
        a->n_head_kv <= 0 || a->head_dim <= 0 || a->pos0 < 0)
        return nbl_set_err(err, NBL_E_ARG, "attention: bad arguments");
    if (a->n_head % a->n_head_kv != 0)
        return nbl_set_err(err, NBL_E_ARG, "attention: n_head %d not a multiple of n_head_kv %d",
                           a->n_head, a->n_head_kv);
    if (a->kv_type != NBL_TYPE_F16 && a->kv_type != NBL_TYPE_F32)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "attention: KV type %u (want f16 or f32)",
                           a->kv_type);
    if (a->T == 0) return NBL_OK;
    att_job j;
    memset(&j, 0, sizeof j);
    j.a = a;
    j.kt = nbl_kernels_best();
    j.group = a->n_head / a->n_head_kv;
    const int32_t nth = nbl_threadpool_size(tp);
    /* Split a group's heads only when there are too few (KV head, query chunk) units to keep
     * every thread busy; each split re-reads that KV head. */
    j.heads_per_unit = j.group < ATT_ROWS ? j.group : ATT_ROWS;
    j.t_per_unit = ATT_ROWS / j.heads_per_unit;
    if (j.t_per_unit > a->T) j.t_per_unit = a->T;
    j.n_tchunks = (a->T + j.t_per_unit - 1) / j.t_per_unit;
    j.n_hsplit = (j.group + j.heads_per_unit - 1) / j.heads_per_unit;
    while ((int64_t)a->n_head_kv * j.n_tchunks * j.n_hsplit < nth && j.heads_per_unit > 1) {
        j.heads_per_unit = (j.heads_per_unit + 1) / 2;
        j.n_hsplit = (j.group + j.heads_per_unit - 1) / j.heads_per_unit;
    }
    j.n_units = (int64_t)a->n_head_kv * j.n_tchunks * j.n_hsplit;
    j.scratch_per_thread = ((size_t)ATT_ROWS * ((size_t)a->head_dim + 2) + (size_t)ATT_KB * (2 * (size_t)a->head_dim + 1) + 31) & ~(size_t)15;
    const size_t need = j.scratch_per_thread * (size_t)nth * sizeof(float);
    void *heap = NULL;
    j.scratch = nbl_threadpool_scratch(tp, need);
    if (!j.scratch) {
        heap = malloc(need);
        if (!heap) return nbl_set_err(err, NBL_E_NOMEM, "attention: %zu bytes of scratch", need);
        j.scratch = heap;
    }
    atomic_init(&j.next, 0);
    nbl_threadpool_run(tp, att_worker, &j);
    free(heap);
    return NBL_OK;
}
