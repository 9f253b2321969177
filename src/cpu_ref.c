/* cpu_ref.c — portable scalar kernels: activation quantization (Q8_0, Q8_1, Q8_K, f16, bf16) and
 * integer block dot products for every weight type, with the same arithmetic as llama.cpp's
 * reference code. The ISA files are tested against these, and fall back to them. */
#include "kernels.h"

#include <math.h>
#include <string.h>

#define H2F(x) nbl_fp16_to_f32(x)
#define F2H(x) nbl_f32_to_fp16(x)

/* ---- activation conversion ---------------------------------------------------------------- */

static void ref_from_f32_f32(const float *x, void *y, int64_t K) { memcpy(y, x, (size_t)K * sizeof(float)); }

static void ref_from_f32_f16(const float *x, void *vy, int64_t K) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < K; i++) y[i] = F2H(x[i]);
}

static void ref_from_f32_bf16(const float *x, void *vy, int64_t K) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < K; i++) y[i] = nbl_f32_to_bf16(x[i]);
}

/* Scale so that the largest magnitude maps to 127; round half away from zero (roundf). */
static void ref_from_f32_q8_0(const float *x, void *vy, int64_t K) {
    nbl_block_q8_0 *y = vy;
    for (int64_t i = 0; i < K / NBL_QK; i++, x += NBL_QK) {
        float amax = 0.0f;
        for (int j = 0; j < NBL_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = F2H(d);
        for (int j = 0; j < NBL_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_0 plus s = d * sum(q), which lets Q4_1/Q5_1 fold their per-block minimum into one product. */
static void ref_from_f32_q8_1(const float *x, void *vy, int64_t K) {
    nbl_block_q8_1 *y = vy;
    for (int64_t i = 0; i < K / NBL_QK; i++, x += NBL_QK) {
        float amax = 0.0f;
        for (int j = 0; j < NBL_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < NBL_QK; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = F2H(d);
        y[i].s = F2H(d * (float)sum);
    }
}

/* Round to nearest, ties to even (what ggml's nearest_int does through the 1.5*2^23 trick). */
static inline int nearest_int(float f) { return (int)lrintf(f); }

/* Q8_K: float scale from the signed value of largest magnitude (mapped to -127), plus per-16
 * sums that K-quant dots use for their block minimums. */
static void ref_from_f32_q8_K(const float *x, void *vy, int64_t K) {
    nbl_block_q8_K *y = vy;
    for (int64_t i = 0; i < K / NBL_QK_K; i++, x += NBL_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < NBL_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < NBL_QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < NBL_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- one-row dot products (weight row · converted activation row) -------------------------- */

static float dot_f32(int64_t K, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < K; i++) s += (double)w[i] * (double)x[i];
    return (float)s;
}

static float dot_f16(int64_t K, const void *vw, const void *vx) {
    const uint16_t *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < K; i++) s += (double)H2F(w[i]) * (double)H2F(x[i]);
    return (float)s;
}

static float dot_bf16(int64_t K, const void *vw, const void *vx) {
    const uint16_t *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < K; i++) s += (double)nbl_bf16_to_f32(w[i]) * (double)nbl_bf16_to_f32(x[i]);
    return (float)s;
}

static float dot_q4_0(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q4_0 *w = vw;
    const nbl_block_q8_0 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d));
    }
    return s;
}

static float dot_q4_1(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q4_1 *w = vw;
    const nbl_block_q8_1 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + 16];
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d)) + H2F(w[i].m) * H2F(x[i].s);
    }
    return s;
}

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static float dot_q5_0(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q5_0 *w = vw;
    const nbl_block_q8_0 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        const uint32_t qh = rd32(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int x0 = (int)((w[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
            const int x1 = (int)((w[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += x0 * x[i].qs[j] + x1 * x[i].qs[j + 16];
        }
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d));
    }
    return s;
}

static float dot_q5_1(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q5_1 *w = vw;
    const nbl_block_q8_1 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        const uint32_t qh = rd32(w[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int x0 = (int)((w[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4));
            const int x1 = (int)((w[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
            sumi += x0 * x[i].qs[j] + x1 * x[i].qs[j + 16];
        }
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d)) + H2F(w[i].m) * H2F(x[i].s);
    }
    return s;
}

static float dot_q8_0(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q8_0 *w = vw;
    const nbl_block_q8_0 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < NBL_QK; j++) sumi += w[i].qs[j] * x[i].qs[j];
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d));
    }
    return s;
}

static float dot_iq4_nl(int64_t K, const void *vw, const void *vx) {
    const nbl_block_iq4_nl *w = vw;
    const nbl_block_q8_0 *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += nbl_iq4nl_values[w[i].qs[j] & 0xF] * x[i].qs[j] + nbl_iq4nl_values[w[i].qs[j] >> 4] * x[i].qs[j + 16];
        s += (float)sumi * (H2F(w[i].d) * H2F(x[i].d));
    }
    return s;
}

/* K-quants: the integer sum per sub-block times its integer scale, then one float product per
 * super-block; the minimums use Q8_K's per-16 sums. */
static float dot_q2_K(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q2_K *w = vw;
    const nbl_block_q8_K *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK_K; i++) {
        const uint8_t *sc = w[i].scales;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += (sc[j] >> 4) * x[i].bsums[j];
        int isum = 0;
        for (int e = 0; e < NBL_QK_K; e++) {
            /* element e: 128-chunk c, shift group g, index l in 32 */
            const int c = e / 128, g = (e % 128) / 32, l = e % 32;
            const int q = (w[i].qs[c * 32 + l] >> (2 * g)) & 3;
            isum += (sc[e / 16] & 0xF) * q * x[i].qs[e];
        }
        s += x[i].d * H2F(w[i].d) * (float)isum - x[i].d * H2F(w[i].dmin) * (float)summs;
    }
    return s;
}

static int q3k_scale(const uint8_t *sc, int j) {
    const int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    const int hi = (sc[8 + (j % 4)] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static float dot_q3_K(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q3_K *w = vw;
    const nbl_block_q8_K *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sub = 0;
            for (int l = 0; l < 16; l++) {
                const int e = j * 16 + l;
                const int c = e / 128, g = (e % 128) / 32, li = e % 32;
                const int lo = (w[i].qs[c * 32 + li] >> (2 * g)) & 3;
                const int hbit = (w[i].hmask[li] >> (c * 4 + g)) & 1;
                sub += (lo - (hbit ? 0 : 4)) * x[i].qs[e];
            }
            isum += q3k_scale(w[i].scales, j) * sub;
        }
        s += x[i].d * H2F(w[i].d) * (float)isum;
    }
    return s;
}

static float dot_q4_K(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q4_K *w = vw;
    const nbl_block_q8_K *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            nbl_get_scale_min_k4(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + (j / 2) * 32;
            int sub = 0;
            for (int l = 0; l < 32; l++) sub += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * x[i].qs[j * 32 + l];
            isum += sc * sub;
            msum += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        s += x[i].d * H2F(w[i].d) * (float)isum - x[i].d * H2F(w[i].dmin) * (float)msum;
    }
    return s;
}

static float dot_q5_K(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q5_K *w = vw;
    const nbl_block_q8_K *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            nbl_get_scale_min_k4(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + (j / 2) * 32;
            int sub = 0;
            for (int l = 0; l < 32; l++) {
                const int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) | (((w[i].qh[l] >> j) & 1) << 4);
                sub += v * x[i].qs[j * 32 + l];
            }
            isum += sc * sub;
            msum += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        s += x[i].d * H2F(w[i].d) * (float)isum - x[i].d * H2F(w[i].dmin) * (float)msum;
    }
    return s;
}

static float dot_q6_K(int64_t K, const void *vw, const void *vx) {
    const nbl_block_q6_K *w = vw;
    const nbl_block_q8_K *x = vx;
    float s = 0.0f;
    for (int64_t i = 0; i < K / NBL_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sub = 0;
            for (int l = 0; l < 16; l++) {
                /* element e: 128-half c, quarter g (0..3), index li in 32 */
                const int e = j * 16 + l, c = e / 128, g = (e % 128) / 32, li = e % 32;
                const uint8_t qlb = w[i].ql[c * 64 + (g & 1) * 32 + li];
                const int lo = (g < 2) ? qlb & 0xF : qlb >> 4;
                const int hi = (w[i].qh[c * 32 + li] >> (2 * g)) & 3;
                sub += ((lo | (hi << 4)) - 32) * x[i].qs[e];
            }
            isum += w[i].scales[j] * sub;
        }
        s += x[i].d * H2F(w[i].d) * (float)isum;
    }
    return s;
}

typedef float (*row_dot_fn)(int64_t K, const void *w, const void *x);

#define REF_TILE(name, fn)                                                                    \
    static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx, \
                     int32_t nc, float *y, int64_t ldy) {                                     \
        for (int32_t c = 0; c < nc; c++)                                                      \
            for (int32_t r = 0; r < nr; r++)                                                  \
                y[c * ldy + r] = fn(K, (const uint8_t *)w + (size_t)r * bw,                   \
                                    (const uint8_t *)x + (size_t)c * bx);                     \
    }
REF_TILE(tile_f32, dot_f32)
REF_TILE(tile_f16, dot_f16)
REF_TILE(tile_bf16, dot_bf16)
REF_TILE(tile_q4_0, dot_q4_0)
REF_TILE(tile_q4_1, dot_q4_1)
REF_TILE(tile_q5_0, dot_q5_0)
REF_TILE(tile_q5_1, dot_q5_1)
REF_TILE(tile_q8_0, dot_q8_0)
REF_TILE(tile_iq4_nl, dot_iq4_nl)
REF_TILE(tile_q2_K, dot_q2_K)
REF_TILE(tile_q3_K, dot_q3_K)
REF_TILE(tile_q4_K, dot_q4_K)
REF_TILE(tile_q5_K, dot_q5_K)
REF_TILE(tile_q6_K, dot_q6_K)

/* Regrouped rows (repack.c): a whole group block by block through the base type's dot, in the
 * same order as the base row's, so the result is the base tile's bit for bit; the last M % 16
 * rows are in the base layout. */
#define REF_TILE_R16(name, rtype, base, fn)                                                    \
    static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx, \
                     int32_t nc, float *y, int64_t ldy) {                                     \
        if (nr < 16) {                                                                        \
            base(K, w, bw, nr, x, bx, nc, y, ldy);                                            \
            return;                                                                           \
        }                                                                                     \
        uint8_t blk[34];                                                                      \
        for (int32_t c = 0; c < nc; c++)                                                      \
            for (int32_t r = 0; r < 16; r++) {                                                \
                float s = 0.0f;                                                               \
                for (int64_t b = 0; b < K / NBL_QK; b++) {                                    \
                    nbl_r16_block(rtype, w, b, r, blk);                                       \
                    s += fn(NBL_QK, blk, (const uint8_t *)x + (size_t)c * bx + (size_t)b * sizeof(nbl_block_q8_0)); \
                }                                                                             \
                y[c * ldy + r] = s;                                                           \
            }                                                                                 \
    }
REF_TILE_R16(tile_q4_0_r16, NBL_TYPE_Q4_0_R16, tile_q4_0, dot_q4_0)
REF_TILE_R16(tile_q8_0_r16, NBL_TYPE_Q8_0_R16, tile_q8_0, dot_q8_0)

/* ---- elementwise helpers ------------------------------------------------------------------- */

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void ref_silu_mul(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_softmax(float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void ref_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static float ref_dot_f32_f16(const float *q, const uint16_t *k, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += q[i] * H2F(k[i]);
    return s;
}

static float ref_dot_f32(const float *q, const float *k, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += q[i] * k[i];
    return s;
}

static void ref_axpy_f16(float *y, float a, const uint16_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * H2F(v[i]);
}

static void ref_axpy_f32(float *y, float a, const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * v[i];
}

static void ref_attn_qk(const float *q, const float *k, int64_t nk, int64_t D, float scale, float *s) {
    for (int64_t j = 0; j < nk; j++) {
        float d = 0.0f;
        for (int64_t i = 0; i < D; i++) d += q[i] * k[j * D + i];
        s[j] = d * scale;
    }
}

static void ref_attn_pv(float *o, const float *p, const float *v, int64_t nk, int64_t D) {
    for (int64_t j = 0; j < nk; j++)
        for (int64_t i = 0; i < D; i++) o[i] += p[j] * v[j * D + i];
}

static float ref_exp_sum(float *s, int64_t n, float m) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (s[i] = expf(s[i] - m));
    return (float)sum;
}

static void ref_f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = H2F(src[i]);
}

static const nbl_kernels REF = {
    .name = "ref",
    .from_f32 = {[NBL_TYPE_F32] = ref_from_f32_f32, [NBL_TYPE_F16] = ref_from_f32_f16,
                 [NBL_TYPE_BF16] = ref_from_f32_bf16, [NBL_TYPE_Q8_0] = ref_from_f32_q8_0,
                 [NBL_TYPE_Q8_1] = ref_from_f32_q8_1, [NBL_TYPE_Q8_K] = ref_from_f32_q8_K},
    .tile = {[NBL_TYPE_F32] = tile_f32, [NBL_TYPE_F16] = tile_f16, [NBL_TYPE_BF16] = tile_bf16,
             [NBL_TYPE_Q4_0] = tile_q4_0, [NBL_TYPE_Q4_1] = tile_q4_1, [NBL_TYPE_Q5_0] = tile_q5_0,
             [NBL_TYPE_Q5_1] = tile_q5_1, [NBL_TYPE_Q8_0] = tile_q8_0,
             [NBL_TYPE_IQ4_NL] = tile_iq4_nl, [NBL_TYPE_Q2_K] = tile_q2_K,
             [NBL_TYPE_Q3_K] = tile_q3_K, [NBL_TYPE_Q4_K] = tile_q4_K, [NBL_TYPE_Q5_K] = tile_q5_K,
             [NBL_TYPE_Q6_K] = tile_q6_K, [NBL_TYPE_Q4_0_R16] = tile_q4_0_r16, [NBL_TYPE_Q8_0_R16] = tile_q8_0_r16},
    .tile_m = {[NBL_TYPE_F32] = 4, [NBL_TYPE_F16] = 4, [NBL_TYPE_BF16] = 4, [NBL_TYPE_Q4_0] = 4,
               [NBL_TYPE_Q4_1] = 4, [NBL_TYPE_Q5_0] = 4, [NBL_TYPE_Q5_1] = 4, [NBL_TYPE_Q8_0] = 4,
               [NBL_TYPE_IQ4_NL] = 4, [NBL_TYPE_Q2_K] = 4, [NBL_TYPE_Q3_K] = 4,
               [NBL_TYPE_Q4_K] = 4, [NBL_TYPE_Q5_K] = 4, [NBL_TYPE_Q6_K] = 4, [NBL_TYPE_Q4_0_R16] = 16,
               [NBL_TYPE_Q8_0_R16] = 16},
    .tile_n = {[NBL_TYPE_F32] = 4, [NBL_TYPE_F16] = 4, [NBL_TYPE_BF16] = 4, [NBL_TYPE_Q4_0] = 4,
               [NBL_TYPE_Q4_1] = 4, [NBL_TYPE_Q5_0] = 4, [NBL_TYPE_Q5_1] = 4, [NBL_TYPE_Q8_0] = 4,
               [NBL_TYPE_IQ4_NL] = 4, [NBL_TYPE_Q2_K] = 4, [NBL_TYPE_Q3_K] = 4,
               [NBL_TYPE_Q4_K] = 4, [NBL_TYPE_Q5_K] = 4, [NBL_TYPE_Q6_K] = 4, [NBL_TYPE_Q4_0_R16] = 4,
               [NBL_TYPE_Q8_0_R16] = 4},
    .rmsnorm = ref_rmsnorm,
    .silu_mul = ref_silu_mul,
    .softmax = ref_softmax,
    .add = ref_add,
    .dot_f32_f16 = ref_dot_f32_f16,
    .dot_f32 = ref_dot_f32,
    .axpy_f16 = ref_axpy_f16,
    .axpy_f32 = ref_axpy_f32,
    .attn_qk = ref_attn_qk,
    .attn_pv = ref_attn_pv,
    .exp_sum = ref_exp_sum,
    .f16_to_f32 = ref_f16_to_f32,
};

const nbl_kernels *nbl_kernels_ref(void) { return &REF; }

void nbl_kernels_fill(nbl_kernels *t) {
    for (int i = 0; i < NBL_TYPE_COUNT; i++) {
        if (!t->from_f32[i]) {
            t->from_f32[i] = REF.from_f32[i];
            t->x_bytes[i] = 0;
        }
        if (!t->tile[i]) {
            /* A regrouped tile reads activations in the reference's layout: a table with its own
             * has none unless it brings it (and then never asks for regrouped weights). */
            if (nbl_layout_base((uint32_t)i) != (uint32_t)i && t->x_bytes[nbl_vec_dot_type((uint32_t)i)]) continue;
            t->tile[i] = REF.tile[i];
            t->tile_m[i] = REF.tile_m[i];
            t->tile_n[i] = REF.tile_n[i];
        }
    }
    if (!t->rmsnorm) t->rmsnorm = REF.rmsnorm;
    if (!t->silu_mul) t->silu_mul = REF.silu_mul;
    if (!t->softmax) t->softmax = REF.softmax;
    if (!t->add) t->add = REF.add;
    if (!t->dot_f32_f16) t->dot_f32_f16 = REF.dot_f32_f16;
    if (!t->dot_f32) t->dot_f32 = REF.dot_f32;
    if (!t->axpy_f16) t->axpy_f16 = REF.axpy_f16;
    if (!t->axpy_f32) t->axpy_f32 = REF.axpy_f32;
    if (!t->attn_qk) t->attn_qk = REF.attn_qk;
    if (!t->attn_pv) t->attn_pv = REF.attn_pv;
    if (!t->exp_sum) t->exp_sum = REF.exp_sum;
    if (!t->f16_to_f32) t->f16_to_f32 = REF.f16_to_f32;
}
