/* cpu_arm.c — AArch64 NEON kernels: integer block dot products for every weight type on ggml's
 * activation blocks (SDOT where the compiler targets the dot-product extension, widening
 * multiply-accumulate otherwise), native f16 conversion, and the elementwise helpers. On other
 * targets this file only says the table is absent. */
#include "kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* acc + the 16 int8 products of a and b summed into 4 int32 lanes. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

static inline uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t ld32u(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float h2f(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

/* 16 bits -> 16 bytes, 0xFF where the bit is set (bit j -> byte j). */
static inline uint8x16_t bits16(uint32_t b) {
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)(b & 0xFF)), vdup_n_u8((uint8_t)(b >> 8)));
    static const uint8_t M[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vtstq_u8(v, vld1q_u8(M));
}

/* ---- 32-element block types: 32 signed bytes (lo = elements 0..15, hi = 16..31) ------------ */

enum { W_Q4_0, W_Q4_1, W_Q5_0, W_Q5_1, W_Q8_0, W_IQ4 };

static const int8_t IQ4_TAB[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static inline int w_bytes(int D) {
    return D == W_Q4_0 || D == W_IQ4 ? 18 : D == W_Q4_1 ? 20 : D == W_Q5_0 ? 22 : D == W_Q5_1 ? 24 : 34;
}

static inline void dec32(const int D, const uint8_t *blk, int8x16_t *lo, int8x16_t *hi) {
    if (D == W_Q8_0) {
        *lo = vld1q_s8((const int8_t *)blk + 2);
        *hi = vld1q_s8((const int8_t *)blk + 18);
        return;
    }
    const int off = D == W_Q4_0 || D == W_IQ4 ? 2 : D == W_Q4_1 ? 4 : D == W_Q5_0 ? 6 : 8;
    const uint8x16_t q = vld1q_u8(blk + off);
    uint8x16_t l = vandq_u8(q, vdupq_n_u8(0x0F)), h = vshrq_n_u8(q, 4);
    if (D == W_IQ4) {
        const int8x16_t tab = vld1q_s8(IQ4_TAB);
        *lo = vqtbl1q_s8(tab, l);
        *hi = vqtbl1q_s8(tab, h);
        return;
    }
    if (D == W_Q5_0 || D == W_Q5_1) {
        const uint32_t qh = ld32u(blk + (D == W_Q5_0 ? 2 : 4));
        const uint8x16_t b16 = vdupq_n_u8(0x10);
        l = vorrq_u8(l, vandq_u8(bits16(qh & 0xFFFF), b16));
        h = vorrq_u8(h, vandq_u8(bits16(qh >> 16), b16));
    }
    int8x16_t sl = vreinterpretq_s8_u8(l), sh = vreinterpretq_s8_u8(h);
    if (D == W_Q4_0 || D == W_Q5_0) {
        const int8x16_t o = vdupq_n_s8(D == W_Q4_0 ? 8 : 16);
        sl = vsubq_s8(sl, o);
        sh = vsubq_s8(sh, o);
    }
    *lo = sl;
    *hi = sh;
}

/* Each weight row against up to 4 activation rows at a time (ggml Q8_0 / Q8_1 blocks). */
static inline void tile32(const int D, int64_t K, const uint8_t *w, size_t bw, int32_t nr, const uint8_t *x,
                          size_t bx, int32_t nc, float *y, int64_t ldy) {
    const int64_t nb = K / 32;
    const int BS = w_bytes(D), MIN = D == W_Q4_1 || D == W_Q5_1, XB = MIN ? 36 : 34, XQ = MIN ? 4 : 2;
    for (int32_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * bw;
        for (int32_t c0 = 0; c0 < nc; c0 += 4) {
            const int32_t n = nc - c0 < 4 ? nc - c0 : 4;
            float32x4_t acc[4];
            float accm[4] = {0, 0, 0, 0};
            for (int c = 0; c < 4; c++) acc[c] = vdupq_n_f32(0.0f);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * BS;
                int8x16_t lo, hi;
                dec32(D, blk, &lo, &hi);
                const float dw = h2f(ld16(blk));
                for (int c = 0; c < n; c++) {
                    const uint8_t *xb = x + (size_t)(c0 + c) * bx + (size_t)b * XB;
                    int32x4_t s = dot16(vdupq_n_s32(0), lo, vld1q_s8((const int8_t *)xb + XQ));
                    s = dot16(s, hi, vld1q_s8((const int8_t *)xb + XQ + 16));
                    acc[c] = vmlaq_n_f32(acc[c], vcvtq_f32_s32(s), dw * h2f(ld16(xb)));
                    if (MIN) accm[c] += h2f(ld16(blk + 2)) * h2f(ld16(xb + 2));
                }
            }
            for (int c = 0; c < n; c++) y[(c0 + c) * ldy + r] = vaddvq_f32(acc[c]) + accm[c];
        }
    }
}

#define MAKE_TILE32(name, D)                                                                    \
    static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx,  \
                     int32_t nc, float *y, int64_t ldy) {                                       \
        tile32(D, K, w, bw, nr, x, bx, nc, y, ldy);                                             \
    }
MAKE_TILE32(nt_q4_0, W_Q4_0)
MAKE_TILE32(nt_q4_1, W_Q4_1)
MAKE_TILE32(nt_q5_0, W_Q5_0)
MAKE_TILE32(nt_q5_1, W_Q5_1)
MAKE_TILE32(nt_q8_0, W_Q8_0)
MAKE_TILE32(nt_iq4_nl, W_IQ4)

/* ---- K-quants against ggml Q8_K blocks: int32 sub-block dots times integer scales ---------- */

enum { K_Q2, K_Q3, K_Q4, K_Q5, K_Q6 };

static inline int q3k_scale(const uint8_t *sc, int j) {
    const int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    const int hi = (sc[8 + (j % 4)] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Variable right shift of bytes (NEON shifts left by a signed count). */
static inline uint8x16_t shr_u8(uint8x16_t v, int n) { return vshlq_u8(v, vdupq_n_s8((int8_t)-n)); }

static float dotk(const int Q, int64_t K, const uint8_t *row, const nbl_block_q8_K *xb) {
    const int64_t nsb = K / 256;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    float sum = 0.0f;
    for (int64_t sb = 0; sb < nsb; sb++) {
        const nbl_block_q8_K *xk = xb + sb;
        const int8_t *q8 = xk->qs;
        int32x4_t isum = vdupq_n_s32(0);
        int32_t msum = 0;
        float d, dmin = 0.0f;
        if (Q == K_Q4 || Q == K_Q5) {
            const nbl_block_q4_K *b4 = (const nbl_block_q4_K *)row + sb;
            const nbl_block_q5_K *b5 = (const nbl_block_q5_K *)row + sb;
            const uint8_t *qs = Q == K_Q4 ? b4->qs : b5->qs;
            d = h2f(Q == K_Q4 ? b4->d : b5->d);
            dmin = h2f(Q == K_Q4 ? b4->dmin : b5->dmin);
            uint8_t sc[8], mn[8];
            for (int j = 0; j < 8; j++) nbl_get_scale_min_k4(j, Q == K_Q4 ? b4->scales : b5->scales, &sc[j], &mn[j]);
            for (int j = 0; j < 8; j++) msum += mn[j] * (xk->bsums[2 * j] + xk->bsums[2 * j + 1]);
            const uint8x16_t qh0 = Q == K_Q5 ? vld1q_u8(b5->qh) : vdupq_n_u8(0);
            const uint8x16_t qh1 = Q == K_Q5 ? vld1q_u8(b5->qh + 16) : vdupq_n_u8(0);
            for (int j = 0; j < 8; j++) {
                const uint8x16_t a = vld1q_u8(qs + (j / 2) * 32), b = vld1q_u8(qs + (j / 2) * 32 + 16);
                uint8x16_t ua = (j & 1) ? vshrq_n_u8(a, 4) : vandq_u8(a, m4);
                uint8x16_t ub = (j & 1) ? vshrq_n_u8(b, 4) : vandq_u8(b, m4);
                if (Q == K_Q5) {
                    ua = vorrq_u8(ua, vshlq_n_u8(vandq_u8(shr_u8(qh0, j), one), 4));
                    ub = vorrq_u8(ub, vshlq_n_u8(vandq_u8(shr_u8(qh1, j), one), 4));
                }
                int32x4_t s = dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(ua), vld1q_s8(q8 + 32 * j));
                s = dot16(s, vreinterpretq_s8_u8(ub), vld1q_s8(q8 + 32 * j + 16));
                isum = vmlaq_n_s32(isum, s, sc[j]);
            }
        } else if (Q == K_Q6) {
            const nbl_block_q6_K *b = (const nbl_block_q6_K *)row + sb;
            d = h2f(b->d);
            const int8x16_t o32 = vdupq_n_s8(32);
            for (int h = 0; h < 2; h++)
                for (int l16 = 0; l16 < 2; l16++) {
                    const uint8x16_t qa = vld1q_u8(b->ql + 64 * h + 16 * l16);
                    const uint8x16_t qb = vld1q_u8(b->ql + 64 * h + 32 + 16 * l16);
                    const uint8x16_t qh = vld1q_u8(b->qh + 32 * h + 16 * l16);
                    for (int g = 0; g < 4; g++) {
                        const uint8x16_t src = (g & 1) ? qb : qa;
                        const uint8x16_t lo = g < 2 ? vandq_u8(src, m4) : vshrq_n_u8(src, 4);
                        const uint8x16_t hb = vshlq_n_u8(vandq_u8(shr_u8(qh, 2 * g), m3), 4);
                        const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hb)), o32);
                        const int e = 128 * h + 32 * g + 16 * l16;
                        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), v, vld1q_s8(q8 + e)), b->scales[e / 16]);
                    }
                }
        } else {
            const nbl_block_q2_K *b2 = (const nbl_block_q2_K *)row + sb;
            const nbl_block_q3_K *b3 = (const nbl_block_q3_K *)row + sb;
            const uint8_t *qs = Q == K_Q2 ? b2->qs : b3->qs;
            if (Q == K_Q2) {
                d = h2f(b2->d);
                dmin = h2f(b2->dmin);
                for (int j = 0; j < 16; j++) msum += (b2->scales[j] >> 4) * xk->bsums[j];
            } else {
                d = h2f(b3->d);
            }
            const int8x16_t o4 = vdupq_n_s8(4);
            for (int h = 0; h < 2; h++)
                for (int l16 = 0; l16 < 2; l16++) {
                    const uint8x16_t q = vld1q_u8(qs + 32 * h + 16 * l16);
                    const uint8x16_t hm = Q == K_Q3 ? vld1q_u8(b3->hmask + 16 * l16) : vdupq_n_u8(0);
                    for (int g = 0; g < 4; g++) {
                        uint8x16_t u = vandq_u8(shr_u8(q, 2 * g), m3);
                        int8x16_t v = vreinterpretq_s8_u8(u);
                        if (Q == K_Q3) {
                            const uint8x16_t hb = vandq_u8(shr_u8(hm, 4 * h + g), one);
                            v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(u, vshlq_n_u8(hb, 2))), o4);
                        }
                        const int e = 128 * h + 32 * g + 16 * l16;
                        const int sc = Q == K_Q2 ? (b2->scales[e / 16] & 0xF) : q3k_scale(b3->scales, e / 16);
                        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), v, vld1q_s8(q8 + e)), sc);
                    }
                }
        }
        sum += xk->d * (d * (float)vaddvq_s32(isum) - dmin * (float)msum);
    }
    return sum;
}

#define MAKE_TILEK(name, Q)                                                                     \
    static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx,  \
                     int32_t nc, float *y, int64_t ldy) {                                       \
        for (int32_t c = 0; c < nc; c++)                                                        \
            for (int32_t r = 0; r < nr; r++)                                                    \
                y[c * ldy + r] = dotk(Q, K, (const uint8_t *)w + (size_t)r * bw,                \
                                      (const nbl_block_q8_K *)((const uint8_t *)x + (size_t)c * bx)); \
    }
MAKE_TILEK(nt_q2_K, K_Q2)
MAKE_TILEK(nt_q3_K, K_Q3)
MAKE_TILEK(nt_q4_K, K_Q4)
MAKE_TILEK(nt_q5_K, K_Q5)
MAKE_TILEK(nt_q6_K, K_Q6)

/* ---- float weights ------------------------------------------------------------------------ */

static float dot_f32v(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float32x4_t f16lo(uint16x8_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))); }
static inline float32x4_t f16hi(uint16x8_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))); }

static float dot_f16_f16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t va = vld1q_u16(a + i), vb = vld1q_u16(b + i);
        s0 = vfmaq_f32(s0, f16lo(va), f16lo(vb));
        s1 = vfmaq_f32(s1, f16hi(va), f16hi(vb));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += h2f(a[i]) * h2f(b[i]);
    return s;
}

static inline float32x4_t bf16lo(uint16x8_t h) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)); }
static inline float32x4_t bf16hi(uint16x8_t h) { return vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)); }

static float dot_bf16_bf16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t va = vld1q_u16(a + i), vb = vld1q_u16(b + i);
        s0 = vfmaq_f32(s0, bf16lo(va), bf16lo(vb));
        s1 = vfmaq_f32(s1, bf16hi(va), bf16hi(vb));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += nbl_bf16_to_f32(a[i]) * nbl_bf16_to_f32(b[i]);
    return s;
}

#define MAKE_TILEF(name, fn, T)                                                                 \
    static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx,  \
                     int32_t nc, float *y, int64_t ldy) {                                       \
        for (int32_t c = 0; c < nc; c++)                                                        \
            for (int32_t r = 0; r < nr; r++)                                                    \
                y[c * ldy + r] = fn((const T *)((const uint8_t *)w + (size_t)r * bw),           \
                                    (const T *)((const uint8_t *)x + (size_t)c * bx), K);       \
    }
MAKE_TILEF(nt_f32, dot_f32v, float)
MAKE_TILEF(nt_f16, dot_f16_f16, uint16_t)
MAKE_TILEF(nt_bf16, dot_bf16_bf16, uint16_t)

/* ---- elementwise helpers ------------------------------------------------------------------ */

/* exp(x): range reduction by ln2 and a degree-6 polynomial (about 1 ulp); 0 below -87.3, infinity
 * above ln(FLT_MAX) as expf. */
static inline float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33f), hi = vdupq_n_f32(88.72283f);
    const uint32x4_t under = vcltq_f32(x, lo), over = vcgtq_f32(x, hi);
    x = vminq_f32(vmaxq_f32(x, lo), hi);
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t h = vshrq_n_s32(ni, 1);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(h, vdupq_n_s32(127)), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, h), vdupq_n_s32(127)), 23));
    p = vmulq_f32(vmulq_f32(p, s1), s2);
    return vbslq_f32(over, vdupq_n_f32(INFINITY), vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(p), under)));
}

static void n_silu_mul(float *y, const float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t gv = vld1q_f32(g + i);
        const float32x4_t e = exp4(vnegq_f32(gv));
        vst1q_f32(y + i, vmulq_f32(vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), e)), vld1q_f32(u + i)));
    }
    for (; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void n_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, x[i]);
    float32x4_t vs = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(mx)));
        vst1q_f32(x + i, e);
        vs = vaddq_f32(vs, e);
    }
    double sum = vaddvq_f32(vs);
    for (; i < n; i++) sum += (x[i] = expf(x[i] - mx));
    const float inv = (float)(1.0 / sum);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

static void n_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    float32x4_t a = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        a = vfmaq_f32(a, v, v);
    }
    double ss = vaddvq_f32(a);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float sc = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), sc);
        if (w) v = vmulq_f32(v, vld1q_f32(w + i));
        vst1q_f32(y + i, v);
    }
    for (; i < n; i++) y[i] = x[i] * sc * (w ? w[i] : 1.0f);
}

static void n_add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

static float n_dot_f32_f16(const float *q, const uint16_t *k, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t kv = vld1q_u16(k + i);
        s0 = vfmaq_f32(s0, vld1q_f32(q + i), f16lo(kv));
        s1 = vfmaq_f32(s1, vld1q_f32(q + i + 4), f16hi(kv));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += q[i] * h2f(k[i]);
    return s;
}

static void n_axpy_f16(float *y, float a, const uint16_t *v, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t vv = vld1q_u16(v + i);
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), f16lo(vv), a));
        vst1q_f32(y + i + 4, vfmaq_n_f32(vld1q_f32(y + i + 4), f16hi(vv), a));
    }
    for (; i < n; i++) y[i] += a * h2f(v[i]);
}

static void n_axpy_f32(float *y, float a, const float *v, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(v + i), a));
    for (; i < n; i++) y[i] += a * v[i];
}

static void n_attn_qk(const float *q, const float *k, int64_t nk, int64_t D, float scale, float *s) {
    for (int64_t j = 0; j < nk; j++) s[j] = dot_f32v(q, k + j * D, D) * scale;
}

static void n_attn_pv(float *o, const float *p, const float *v, int64_t nk, int64_t D) {
    for (int64_t j = 0; j < nk; j++) n_axpy_f32(o, p[j], v + j * D, D);
}

static float n_exp_sum(float *s, int64_t n, float m) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(s + i), vdupq_n_f32(m)));
        vst1q_f32(s + i, e);
        acc = vaddq_f32(acc, e);
    }
    float sum = vaddvq_f32(acc);
    for (; i < n; i++) sum += (s[i] = expf(s[i] - m));
    return sum;
}

static void n_f16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(src + i);
        vst1q_f32(dst + i, f16lo(h));
        vst1q_f32(dst + i + 4, f16hi(h));
    }
    for (; i < n; i++) dst[i] = h2f(src[i]);
}

static nbl_kernels T_NEON;
static int neon_ready;

const nbl_kernels *nbl_kernels_neon(void) {
    if (!neon_ready) { /* filled once; a racing second fill writes the same values */
        nbl_kernels *t = &T_NEON;
        t->name = "neon";
        t->tile[NBL_TYPE_Q4_0] = nt_q4_0;
        t->tile[NBL_TYPE_Q4_1] = nt_q4_1;
        t->tile[NBL_TYPE_Q5_0] = nt_q5_0;
        t->tile[NBL_TYPE_Q5_1] = nt_q5_1;
        t->tile[NBL_TYPE_Q8_0] = nt_q8_0;
        t->tile[NBL_TYPE_IQ4_NL] = nt_iq4_nl;
        t->tile[NBL_TYPE_Q2_K] = nt_q2_K;
        t->tile[NBL_TYPE_Q3_K] = nt_q3_K;
        t->tile[NBL_TYPE_Q4_K] = nt_q4_K;
        t->tile[NBL_TYPE_Q5_K] = nt_q5_K;
        t->tile[NBL_TYPE_Q6_K] = nt_q6_K;
        t->tile[NBL_TYPE_F32] = nt_f32;
        t->tile[NBL_TYPE_F16] = nt_f16;
        t->tile[NBL_TYPE_BF16] = nt_bf16;
        for (int i = 0; i < NBL_TYPE_COUNT; i++) t->tile_m[i] = 4, t->tile_n[i] = 4;
        t->rmsnorm = n_rmsnorm;
        t->silu_mul = n_silu_mul;
        t->softmax = n_softmax;
        t->add = n_add;
        t->dot_f32_f16 = n_dot_f32_f16;
        t->dot_f32 = dot_f32v;
        t->axpy_f16 = n_axpy_f16;
        t->axpy_f32 = n_axpy_f32;
        t->attn_qk = n_attn_qk;
        t->attn_pv = n_attn_pv;
        t->exp_sum = n_exp_sum;
        t->f16_to_f32 = n_f16_to_f32;
        nbl_kernels_fill(t);
        neon_ready = 1;
    }
    return &T_NEON;
}

#else

const nbl_kernels *nbl_kernels_neon(void) { return NULL; }

#endif
