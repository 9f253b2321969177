/* cpu_x86.c — x86-64 kernels: AVX2/FMA/F16C everywhere, AVX-512 VNNI where present. Each function
 * carries its own target attribute and the tables are chosen at run time, so one binary runs on
 * any x86-64 CPU. Shared templates are always_inline with compile-time flags; VNNI instructions
 * inside them are written as inline assembly so the same template also compiles for plain AVX2. */
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define T2 __attribute__((target("avx2,fma,f16c")))
#define T5 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define AI static inline __attribute__((always_inline))

/* ---- small helpers ------------------------------------------------------------------------- */

T2 AI float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T2 AI int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

T2 AI float h2f(uint16_t h) { return _cvtsh_ss(h); }
T2 AI float f16_round(float f) { return _cvtsh_ss(_cvtss_sh(f, 0)); }

T2 AI uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
T2 AI int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* acc += sum of 4 adjacent u8*s8 products per 32-bit lane. The VNNI form is assembled directly
 * (EVEX encoding) so this template stays valid in functions compiled for AVX2 only. */
T2 AI __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s, const int vnni) {
    if (vnni) {
        __asm__("%{evex%} vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
        return acc;
    }
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* acc += pairwise int16 products (p * scale). */
T2 AI __m256i dot_s16(__m256i acc, __m256i p, __m256i sc, const int vnni) {
    if (vnni) {
        __asm__("%{evex%} vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(p), "v"(sc));
        return acc;
    }
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
}

/* 16 bytes of packed nibbles -> 32 bytes 0..15: low nibbles first, as ggml's 32-element blocks. */
T2 AI __m256i nibbles32(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set. */
T2 AI __m256i bits32(const uint8_t *qh) {
    const uint32_t x = (uint32_t)ld32(qh);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeull));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* ---- activation layouts --------------------------------------------------------------------
 * Q8_0 / Q8_1 rows: qs[K] int8 | d[nb] f32 | s[nb] f32 | nsum[nb] i32, nb = K/32, where
 *   d is the fp16-rounded block scale (as ggml stores it), s = d*sum(qs) (fp16-rounded for Q8_1,
 *   exactly as ggml), nsum = -128*sum(qs) (the correction for weights stored as u8 = v + 128).
 * Q8_K rows: qs[K] | d[K/256] f32 | bsums[K/16] i16 | nsum16[K/16] i32 | s16[K/16] f32 |
 *   nsum32[K/32] i32 | s32[K/32] f32 (per-16 and per-32 sums for the K-quants' sub-blocks).
 * F16 / BF16 rows: f32 values already rounded to f16 / bf16 (the tiles need no conversion). */

#define X8_BYTES 44   /* per 32 elements */
#define XK_BYTES 484  /* per 256 elements */

typedef struct {
    const int8_t *qs;
    const float *d, *s;
    const int32_t *nsum;
    const int16_t *bsums;
    const int32_t *nsum16, *nsum32;
    const float *s16, *s32;
} xrow;

/* Two floats into the low half: a row's scales are 4-byte aligned only (the rows' bytes need not
 * be a multiple of 8), so not through a double. */
AI __m128 load2f(const float *p) { return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p)); }

AI xrow xrow_q8(const uint8_t *x, int64_t K) {
    const int64_t nb = K / 32;
    xrow r;
    memset(&r, 0, sizeof r);
    r.qs = (const int8_t *)x;
    r.d = (const float *)(x + K);
    r.s = r.d + nb;
    r.nsum = (const int32_t *)(r.s + nb);
    return r;
}

AI xrow xrow_qk(const uint8_t *x, int64_t K) {
    xrow r;
    memset(&r, 0, sizeof r);
    r.qs = (const int8_t *)x;
    r.d = (const float *)(x + K);
    r.bsums = (const int16_t *)(r.d + K / 256);
    r.nsum16 = (const int32_t *)(r.bsums + K / 16);
    r.s16 = (const float *)(r.nsum16 + K / 16);
    r.nsum32 = (const int32_t *)(r.s16 + K / 16);
    r.s32 = (const float *)(r.nsum32 + K / 32);
    return r;
}

#define RND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* One 32-element block: ggml's AVX2 rounding (nearest even, id = 127/amax). */
T2 AI int32_t quant_block32(const float *x, int8_t *q, float *d_out, float *d_raw) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
           v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    *d_raw = d;
    *d_out = f16_round(d);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), RND_NEAREST));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), RND_NEAREST));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), RND_NEAREST));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), RND_NEAREST));
    const int32_t sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, i0);
    return sum;
}

T2 static void x86_from_f32_q8(const float *x, void *vy, int64_t K, int q8_1) {
    uint8_t *y = vy;
    const int64_t nb = K / 32;
    int8_t *qs = (int8_t *)y;
    float *d = (float *)(y + K), *s = d + nb;
    int32_t *nsum = (int32_t *)(s + nb);
    for (int64_t b = 0; b < nb; b++) {
        float draw;
        const int32_t sum = quant_block32(x + 32 * b, qs + 32 * b, &d[b], &draw);
        s[b] = q8_1 ? f16_round(draw * (float)sum) : d[b] * (float)sum;
        nsum[b] = -128 * sum;
    }
}
T2 static void x86_from_f32_q8_0(const float *x, void *y, int64_t K) { x86_from_f32_q8(x, y, K, 0); }
T2 static void x86_from_f32_q8_1(const float *x, void *y, int64_t K) { x86_from_f32_q8(x, y, K, 1); }

/* Q8_K: the value of largest magnitude (first one on ties, as ggml) maps to -127. */
T2 static void x86_from_f32_q8_K(const float *x, void *vy, int64_t K) {
    uint8_t *y = vy;
    int8_t *qs = (int8_t *)y;
    float *dd = (float *)(y + K);
    int16_t *bsums = (int16_t *)(dd + K / 256);
    int32_t *nsum16 = (int32_t *)(bsums + K / 16);
    float *s16 = (float *)(nsum16 + K / 16);
    int32_t *nsum32 = (int32_t *)(s16 + K / 16);
    float *s32 = (float *)(nsum32 + K / 32);
    for (int64_t sb = 0; sb < K / 256; sb++) {
        const float *xb = x + 256 * sb;
        __m256 vmax = _mm256_set1_ps(-INFINITY), vmin = _mm256_set1_ps(INFINITY);
        for (int j = 0; j < 256; j += 8) {
            const __m256 v = _mm256_loadu_ps(xb + j);
            vmax = _mm256_max_ps(vmax, v);
            vmin = _mm256_min_ps(vmin, v);
        }
        float hi = -INFINITY, lo = INFINITY, tmp[8];
        _mm256_storeu_ps(tmp, vmax);
        for (int j = 0; j < 8; j++) hi = fmaxf(hi, tmp[j]);
        _mm256_storeu_ps(tmp, vmin);
        for (int j = 0; j < 8; j++) lo = fminf(lo, tmp[j]);
        float max = hi >= -lo ? hi : lo;
        if (hi == -lo) /* a tie: the first element of that magnitude decides the sign */
            for (int j = 0; j < 256; j++)
                if (fabsf(xb[j]) == hi) {
                    max = xb[j];
                    break;
                }
        int8_t *q = qs + 256 * sb;
        if (fabsf(max) == 0.0f) {
            memset(q, 0, 256);
            dd[sb] = 0.0f;
        } else {
            const float iscale = -127.0f / max;
            const __m256 is = _mm256_set1_ps(iscale);
            for (int j = 0; j < 256; j += 32) {
                __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + j)));
                __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + j + 8)));
                __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + j + 16)));
                __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + j + 24)));
                const __m256i c127 = _mm256_set1_epi32(127);
                i0 = _mm256_min_epi32(i0, c127);
                i1 = _mm256_min_epi32(i1, c127);
                i2 = _mm256_min_epi32(i2, c127);
                i3 = _mm256_min_epi32(i3, c127);
                i0 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
                i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256((__m256i *)(q + j), i0);
            }
            dd[sb] = 1.0f / iscale;
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l];
            bsums[16 * sb + j] = (int16_t)s;
            nsum16[16 * sb + j] = -128 * s;
            s16[16 * sb + j] = dd[sb] * (float)s;
        }
        for (int j = 0; j < 8; j++) {
            const int s = bsums[16 * sb + 2 * j] + bsums[16 * sb + 2 * j + 1];
            nsum32[8 * sb + j] = -128 * s;
            s32[8 * sb + j] = dd[sb] * (float)s;
        }
    }
}

T2 static void x86_from_f32_f16(const float *x, void *vy, int64_t K) {
    float *y = vy;
    int64_t i = 0;
    for (; i + 8 <= K; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0)));
    for (; i < K; i++) y[i] = f16_round(x[i]);
}

static void x86_from_f32_bf16(const float *x, void *vy, int64_t K) {
    float *y = vy;
    for (int64_t i = 0; i < K; i++) y[i] = nbl_bf16_to_f32(nbl_f32_to_bf16(x[i]));
}

static void x86_from_f32_f32(const float *x, void *y, int64_t K) { memcpy(y, x, (size_t)K * 4); }

/* ---- direct tiles for the 32-element block types (decode and the AVX2 prefill) ---------------
 * Each weight block decodes to 32 bytes u with a compile-time offset O: the value is u - O.
 * O = 128 types (Q8_0, IQ4_NL) hold v = u ^ 0x80 signed; without VNNI they use the sign trick so
 * maddubs cannot saturate. The offset's correction -O*sum(x) starts the accumulator. */

enum { D_Q4_0, D_Q4_1, D_Q5_0, D_Q5_1, D_Q8_0, D_IQ4 };

static const int8_t IQ4_TAB[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

AI int d_bytes(int D) { return D == D_Q4_0 || D == D_IQ4 ? 18 : D == D_Q4_1 ? 20 : D == D_Q5_0 ? 22 : D == D_Q5_1 ? 24 : 34; }
AI int d_off(int D) { return D == D_Q4_0 ? 8 : D == D_Q5_0 ? 16 : D == D_Q8_0 || D == D_IQ4 ? 128 : 0; }
AI int d_min(int D) { return D == D_Q4_1 || D == D_Q5_1; }

/* Returns u for VNNI (unsigned, value u - O) or, for O == 128 without VNNI, the signed value. */
T2 AI __m256i dec32(const int D, const uint8_t *blk, const int vnni) {
    switch (D) {
    case D_Q4_0: return nibbles32(blk + 2);
    case D_Q4_1: return nibbles32(blk + 4);
    case D_Q5_0: return _mm256_or_si256(nibbles32(blk + 6), _mm256_and_si256(bits32(blk + 2), _mm256_set1_epi8(0x10)));
    case D_Q5_1: return _mm256_or_si256(nibbles32(blk + 8), _mm256_and_si256(bits32(blk + 4), _mm256_set1_epi8(0x10)));
    case D_Q8_0: {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 2));
        return vnni ? _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)) : v;
    }
    default: {
        const __m128i t = _mm_loadu_si128((const __m128i *)IQ4_TAB);
        __m256i tab = _mm256_broadcastsi128_si256(t);
        if (vnni) tab = _mm256_xor_si256(tab, _mm256_set1_epi8((char)0x80));
        return _mm256_shuffle_epi8(tab, nibbles32(blk + 2));
    }
    }
}

/* Decode streams each weight row once. A tile reads NR adjacent rows in step, so the hardware
 * prefetcher sees several short streams that end before it has trained on them: prefetch a fixed
 * distance ahead. On an AVX-512 EPYC streaming Qwen2.5-0.5B Q4_0 from DRAM, one core went from
 * 25 to 42 tokens/s when the distance grew from one tile (NR rows) to 8-16 KiB; beyond that the
 * gain flattens, and lines fetched past a matrix's end belong to the tensor read next. */
#define PREFETCH_DIST ((size_t)16384)
/* A regrouped matrix is one sequential stream per thread, which the hardware prefetcher follows
 * on its own; software prefetch still helps but from closer: 8 KiB measured 1-3 % faster than
 * 16 KiB and 30-50 % faster than none (Q4_0 / Q8_0 decode of Qwen2.5-0.5B, 2 threads). */
#define R16_PREFETCH_DIST ((size_t)8192)

T2 AI void tile32_t(const int D, const int VN, const int NR, const int NC, int64_t K, const uint8_t *w,
                    size_t bw, const uint8_t *x, size_t bx, float *y, int64_t ldy) {
    const int64_t nb = K / 32;
    const int BS = d_bytes(D), O = d_off(D), MIN = d_min(D);
    const int SIGNTRICK = !VN && O == 128;
    const int SH = O == 8 ? 4 : O == 16 ? 3 : 0;
    __m256 acc[4][4];
    float accm[4][4];
    xrow xr[4];
    for (int c = 0; c < NC; c++) xr[c] = xrow_q8(x + (size_t)c * bx, K);
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps(), accm[r][c] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        __m256i xv[4], init[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            xv[c] = _mm256_loadu_si256((const __m256i *)(xr[c].qs + 32 * b));
            init[c] = (O && !SIGNTRICK) ? _mm256_castsi128_si256(_mm_cvtsi32_si128(xr[c].nsum[b] >> SH))
                                        : _mm256_setzero_si256();
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *blk = w + (size_t)r * bw + (size_t)b * BS;
            if (NC == 1) _mm_prefetch((const char *)blk + PREFETCH_DIST, _MM_HINT_T0);
            const float dw = h2f(ld16(blk));
            const __m256i u = dec32(D, blk, VN);
            const __m256i au = SIGNTRICK ? _mm256_sign_epi8(u, u) : u;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m256i s = SIGNTRICK ? _mm256_sign_epi8(xv[c], u) : xv[c];
                const __m256i p = dot_u8s8(init[c], au, s, VN);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xr[c].d[b]), acc[r][c]);
                if (MIN) accm[r][c] += h2f(ld16(blk + 2)) * xr[c].s[b];
            }
        }
    }
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < NR; r++) y[c * ldy + r] = hsum_ps(acc[r][c]) + accm[r][c];
}

/* Tile entry points: nr <= 4 rows and nc <= 4 columns, split into fixed-size instances of a
 * kernel name##_k(NR, NC, ...) (NR in {4, 1}; NC in {4, 1}, or only 1 when MAXC is 1). */
#define TILE_WRAP(name, T, MAXC)                                                                \
    T static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx, \
                       int32_t nc, float *y, int64_t ldy) {                                     \
        const uint8_t *W = w, *X = x;                                                           \
        int32_t c = 0;                                                                          \
        for (; MAXC == 4 && c + 4 <= nc; c += 4) {                                              \
            int32_t r = 0;                                                                      \
            for (; r + 4 <= nr; r += 4) name##_k(4, 4, K, W + r * bw, bw, X + c * bx, bx, y + c * ldy + r, ldy); \
            for (; r < nr; r++) name##_k(1, 4, K, W + r * bw, bw, X + c * bx, bx, y + c * ldy + r, ldy); \
        }                                                                                       \
        for (; c < nc; c++) {                                                                   \
            int32_t r = 0;                                                                      \
            for (; r + 4 <= nr; r += 4) name##_k(4, 1, K, W + r * bw, bw, X + c * bx, bx, y + c * ldy + r, ldy); \
            for (; r < nr; r++) name##_k(1, 1, K, W + r * bw, bw, X + c * bx, bx, y + c * ldy + r, ldy); \
        }                                                                                       \
    }

#define MAKE_TILE32(name, D, T, VN)                                                             \
    T static void name##_k(const int NR, const int NC, int64_t K, const uint8_t *w, size_t bw,   \
                           const uint8_t *x, size_t bx, float *y, int64_t ldy) {                \
        if (NR == 4 && NC == 4) tile32_t(D, VN, 4, 4, K, w, bw, x, bx, y, ldy);                  \
        else if (NR == 4) tile32_t(D, VN, 4, 1, K, w, bw, x, bx, y, ldy);                        \
        else if (NC == 4) tile32_t(D, VN, 1, 4, K, w, bw, x, bx, y, ldy);                        \
        else tile32_t(D, VN, 1, 1, K, w, bw, x, bx, y, ldy);                                     \
    }                                                                                           \
    TILE_WRAP(name, T, 4)

MAKE_TILE32(t2_q4_0, D_Q4_0, T2, 0)
MAKE_TILE32(t2_q4_1, D_Q4_1, T2, 0)
MAKE_TILE32(t2_q5_0, D_Q5_0, T2, 0)
MAKE_TILE32(t2_q5_1, D_Q5_1, T2, 0)
MAKE_TILE32(t2_q8_0, D_Q8_0, T2, 0)
MAKE_TILE32(t2_iq4_nl, D_IQ4, T2, 0)

/* ---- AVX-512 decode: two 32-element blocks per 512-bit vector ----------------------------------
 * Decode is bound by memory and by the per-block work, so the 512-bit form halves the per-block
 * instruction count: one dpbusd, convert and FMA cover two blocks, with the pair's scales spread
 * over the two 256-bit halves. Activations are read in their natural order (64 bytes per pair). */

/* Two blocks -> 64 bytes u (value u - O), block 0 in the low half. */
T5 AI __m512i dec64(const int D, const uint8_t *b0, const uint8_t *b1) {
    if (D == D_Q8_0) {
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                             _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
    }
    const int off = D == D_Q4_0 || D == D_IQ4 ? 2 : D == D_Q4_1 ? 4 : D == D_Q5_0 ? 6 : 8;
    const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + off))),
                                              _mm_loadu_si128((const __m128i *)(b1 + off)), 1);
    __m512i z = _mm512_castsi256_si512(t);
    z = _mm512_shuffle_i64x2(z, z, 0x50); /* 128-bit lanes [q0, q0, q1, q1] */
    z = _mm512_mask_blend_epi64(0xCC, z, _mm512_srli_epi16(z, 4));
    z = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    if (D == D_IQ4) {
        const __m512i tab = _mm512_broadcast_i32x4(_mm_xor_si128(_mm_loadu_si128((const __m128i *)IQ4_TAB), _mm_set1_epi8((char)0x80)));
        return _mm512_shuffle_epi8(tab, z);
    }
    if (D == D_Q5_0 || D == D_Q5_1) {
        const int qo = D == D_Q5_0 ? 2 : 4;
        const __mmask64 hb = (uint64_t)(uint32_t)ld32(b0 + qo) | ((uint64_t)(uint32_t)ld32(b1 + qo) << 32);
        z = _mm512_or_si512(z, _mm512_maskz_mov_epi8(hb, _mm512_set1_epi8(0x10)));
    }
    return z;
}

/* The dpbusd starting value for the block pair at b: the offset correction -O*sum(x) of each
 * block (shifted as the panel offset requires) in lane 0 of its half, so lane sums carry it. */
T5 AI __m512i pair_init(const xrow *xr, int64_t b, const int O, const int SH) {
    if (!O) return _mm512_setzero_si512();
    __m128i ns = _mm_loadl_epi64((const __m128i *)(xr->nsum + b));
    if (SH) ns = _mm_srai_epi32(ns, SH);
    return _mm512_maskz_expand_epi32(0x0101, _mm512_castsi128_si512(ns));
}

/* Odd block count: the last block of NR rows at 256 bits, into tail[r]. */
T5 AI void odd_tail(const int D, const int NR, int64_t K, const uint8_t *w, size_t bw, const xrow *xr, float *tail) {
    const int64_t b = K / 32 - 1;
    const int BS = d_bytes(D), O = d_off(D), MIN = d_min(D);
    const int SH = O == 8 ? 4 : O == 16 ? 3 : 0;
    const __m256i xv = _mm256_loadu_si256((const __m256i *)(xr->qs + 32 * b));
    const __m256i init = O ? _mm256_castsi128_si256(_mm_cvtsi32_si128(xr->nsum[b] >> SH)) : _mm256_setzero_si256();
    for (int r = 0; r < NR; r++) {
        const uint8_t *blk = w + (size_t)r * bw + (size_t)b * BS;
        const __m256i P = _mm256_dpbusd_epi32(init, dec32(D, blk, 1), xv);
        tail[r] = (float)hsum_epi32(P) * (h2f(ld16(blk)) * xr->d[b]) + (MIN ? h2f(ld16(blk + 2)) * xr->s[b] : 0.0f);
    }
}

T5 AI void tile64_t(const int D, const int NR, int64_t K, const uint8_t *w, size_t bw, const uint8_t *x, float *y) {
    const int64_t nb = K / 32, np = nb / 2;
    const int BS = d_bytes(D), O = d_off(D), MIN = d_min(D);
    const int SH = O == 8 ? 4 : O == 16 ? 3 : 0;
    const xrow xr = xrow_q8(x, K);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc[4];
    __m128 accm[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps(), accm[r] = _mm_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const int64_t b = 2 * p;
        const __m512i xv = _mm512_loadu_si512((const void *)(xr.qs + 32 * b));
        const __m512i init = pair_init(&xr, b, O, SH);
        const __m128 dxp = load2f(xr.d + b);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *b0 = w + (size_t)r * bw + (size_t)b * BS, *b1 = b0 + BS;
            _mm_prefetch((const char *)b0 + PREFETCH_DIST, _MM_HINT_T0);
            const __m512i u = dec64(D, b0, b1);
            const __m512i P = _mm512_dpbusd_epi32(init, u, xv);
            const uint32_t h2 = (uint32_t)ld16(b0) | ((uint32_t)ld16(b1) << 16);
            const __m128 dw = _mm_cvtph_ps(_mm_cvtsi32_si128((int)h2));
            const __m512 sc = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_mul_ps(dw, dxp)));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P), sc, acc[r]);
            if (MIN) {
                const uint32_t m2 = (uint32_t)ld16(b0 + 2) | ((uint32_t)ld16(b1 + 2) << 16);
                const __m128 sp = load2f(xr.s + b);
                accm[r] = _mm_fmadd_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)m2)), sp, accm[r]);
            }
        }
    }
    float tail[4] = {0, 0, 0, 0};
    if (nb & 1) odd_tail(D, NR, K, w, bw, &xr, tail);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m128 m = accm[r];
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        y[r] = _mm512_reduce_add_ps(acc[r]) + _mm_cvtss_f32(m) + tail[r];
    }
}

/* Four rows of a symmetric type (no minimums) at 512 bits, reducing before scaling: the integer
 * dots of the 4 rows x 2 blocks are summed across lanes into one vector [r0b0 .. r3b0, r0b1 ..
 * r3b1] (integer adds and in-lane unpacks), scaled by its 8 weight scales at once. Scaling
 * each row's 16 lanes separately costs four times the conversions and cross-lane moves. */
T5 AI void tile64_4s_t(const int D, int64_t K, const uint8_t *w, size_t bw, const uint8_t *x, float *y) {
    const int64_t nb = K / 32, np = nb / 2;
    const int BS = d_bytes(D), O = d_off(D);
    const int SH = O == 8 ? 4 : O == 16 ? 3 : 0;
    const xrow xr = xrow_q8(x, K);
    const __m256i dsel = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const int64_t b = 2 * p;
        const __m512i xv = _mm512_loadu_si512((const void *)(xr.qs + 32 * b));
        const __m512i init = pair_init(&xr, b, O, SH);
        const uint8_t *b0 = w + (size_t)b * BS;
        __m512i P[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *rb = b0 + (size_t)r * bw;
            _mm_prefetch((const char *)rb + PREFETCH_DIST, _MM_HINT_T0);
            P[r] = _mm512_dpbusd_epi32(init, dec64(D, rb, rb + BS), xv);
        }
        /* per 128-bit chunk: [S0 S1 S2 S3], Sr = that chunk's 4-lane sum for row r */
        const __m512i q01 = _mm512_add_epi32(_mm512_unpacklo_epi32(P[0], P[1]), _mm512_unpackhi_epi32(P[0], P[1]));
        const __m512i q23 = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2], P[3]), _mm512_unpackhi_epi32(P[2], P[3]));
        const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(q01, q23), _mm512_unpackhi_epi64(q01, q23));
        /* chunks 0+1 are block 0, 2+3 block 1 */
        const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, 0xB1));
        const __m256i S = _mm512_castsi512_si256(_mm512_shuffle_i32x4(v, v, 0x08));
        const uint8_t *b1 = b0 + bw, *b2 = b1 + bw, *b3 = b2 + bw;
        const __m128i h = _mm_setr_epi16((short)ld16(b0), (short)ld16(b1), (short)ld16(b2), (short)ld16(b3),
                                         (short)ld16(b0 + BS), (short)ld16(b1 + BS), (short)ld16(b2 + BS), (short)ld16(b3 + BS));
        const __m256 dw = _mm256_cvtph_ps(h);
        const __m256 dx = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(load2f(xr.d + b)), dsel);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_mul_ps(dw, dx), acc);
    }
    float t[8], tail[4] = {0, 0, 0, 0};
    _mm256_storeu_ps(t, acc);
    if (nb & 1) odd_tail(D, 4, K, w, bw, &xr, tail);
    for (int r = 0; r < 4; r++) y[r] = t[r] + t[r + 4] + tail[r];
}

/* Decode (one column) at 512 bits; several columns reuse the 256-bit tile with its 4x4 blocking. */
#define MAKE_TILE64(name, D)                                                                    \
    T5 static void name##_k(const int NR, const int NC, int64_t K, const uint8_t *w, size_t bw,  \
                            const uint8_t *x, size_t bx, float *y, int64_t ldy) {               \
        if (NC == 1 && NR == 4 && !d_min(D)) tile64_4s_t(D, K, w, bw, x, y);                   \
        else if (NC == 1 && NR == 4) tile64_t(D, 4, K, w, bw, x, y);                            \
        else if (NC == 1) tile64_t(D, 1, K, w, bw, x, y);                                       \
        else if (NR == 4) tile32_t(D, 1, 4, 4, K, w, bw, x, bx, y, ldy);                         \
        else tile32_t(D, 1, 1, 4, K, w, bw, x, bx, y, ldy);                                      \
    }                                                                                           \
    TILE_WRAP(name, T5, 4)

MAKE_TILE64(t5_q4_0, D_Q4_0)
MAKE_TILE64(t5_q4_1, D_Q4_1)
MAKE_TILE64(t5_q5_0, D_Q5_0)
MAKE_TILE64(t5_q5_1, D_Q5_1)
MAKE_TILE64(t5_q8_0, D_Q8_0)
MAKE_TILE64(t5_iq4_nl, D_IQ4)

/* ---- regrouped Q4_0 / Q8_0 (repack.c): one row per 32-bit lane ---------------------------------
 * A group-block is 16 rows' scales, then chunks of 64 bytes holding 4 quant bytes of each row, so
 * a chunk's dpbusd with 4 activation bytes broadcast to every lane advances all 16 rows: no
 * cross-lane sums, one scale load per 16 blocks. Q8_0 quants are signed; xor 0x80 makes them the
 * unsigned operand, corrected by nsum = -128*sum(x) as in the other tiles (Q4_0: -8*sum). */
T5 AI void tile_r16_t(const int Q8, const int NC, int64_t K, const uint8_t *w, const uint8_t *x, size_t bx,
                      float *y, int64_t ldy) {
    const int64_t nb = K / 32;
    const size_t GB = Q8 ? 544 : 288;
    xrow xr[4];
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) xr[c] = xrow_q8(x + (size_t)c * bx, K), acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *g = w + (size_t)b * GB;
#pragma GCC unroll 9
        for (size_t o = 0; o < GB; o += 64) _mm_prefetch((const char *)g + R16_PREFETCH_DIST + o, _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i v[8];
        if (Q8) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) v[i] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(g + 32 + 64 * i)), flip);
        } else {
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const __m512i t = _mm512_loadu_si512((const void *)(g + 32 + 64 * i));
                v[i] = _mm512_and_si512(t, m4);
                v[i + 4] = _mm512_and_si512(_mm512_srli_epi16(t, 4), m4);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int32_t *xq = (const int32_t *)(const void *)(xr[c].qs + 32 * b);
            /* two chains of four: a block's eight products need not wait on each other */
            __m512i a0 = _mm512_set1_epi32(Q8 ? xr[c].nsum[b] : xr[c].nsum[b] >> 4), a1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int i = 0; i < 8; i += 2) {
                a0 = _mm512_dpbusd_epi32(a0, v[i], _mm512_set1_epi32(xq[i]));
                a1 = _mm512_dpbusd_epi32(a1, v[i + 1], _mm512_set1_epi32(xq[i + 1]));
            }
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(xr[c].d[b]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), sc, acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(y + (size_t)c * (size_t)ldy, acc[c]);
}

/* The same at 256 bits without VNNI: each half of a group (8 rows, 32 bytes of every chunk) on
 * its own across the blocks, its decoded quants used by every column; the second half reads the
 * group from cache. maddubs multiplies unsigned by signed bytes: Q4_0's nibbles are unsigned and
 * their pair sums over the 4 chunks (at most 4 * 2 * 2 * 15 * 127) still fit int16; Q8_0 goes
 * through the sign trick (|w| times x with w's sign), one madd per chunk. */
T2 AI void tile_r16_avx2_t(const int Q8, const int NC, int64_t K, const uint8_t *w, const uint8_t *x, size_t bx,
                           float *y, int64_t ldy) {
    const int64_t nb = K / 32;
    const size_t GB = Q8 ? 544 : 288;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    xrow xr[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) xr[c] = xrow_q8(x + (size_t)c * bx, K);
    for (int h = 0; h < 2; h++) {
        __m256 acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *g = w + (size_t)b * GB;
            if (h == 0)
#pragma GCC unroll 9
                for (size_t o = 0; o < GB; o += 64) _mm_prefetch((const char *)g + R16_PREFETCH_DIST + o, _MM_HINT_T0);
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
            __m256i v[8];
            if (Q8) {
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_si256((const __m256i *)(g + 32 + 64 * i + 32 * h));
            } else {
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    const __m256i t = _mm256_loadu_si256((const __m256i *)(g + 32 + 64 * i + 32 * h));
                    v[i] = _mm256_and_si256(t, m4);
                    v[i + 4] = _mm256_and_si256(_mm256_srli_epi16(t, 4), m4);
                }
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int32_t *xq = (const int32_t *)(const void *)(xr[c].qs + 32 * b);
                __m256i a;
                if (Q8) {
                    a = _mm256_setzero_si256();
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++) {
                        const __m256i xs = _mm256_set1_epi32(xq[i]);
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v[i], v[i]),
                                                                                          _mm256_sign_epi8(xs, v[i])), ones));
                    }
                } else {
                    __m256i p = _mm256_setzero_si256();
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(v[i], _mm256_set1_epi32(xq[i])));
                    a = _mm256_add_epi32(_mm256_madd_epi16(p, ones), _mm256_set1_epi32(xr[c].nsum[b] >> 4));
                }
                const __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(xr[c].d[b]));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), sc, acc[c]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + (size_t)c * (size_t)ldy + 8 * h, acc[c]);
    }
}

/* Whole groups through the regrouped kernel; the last M % 16 rows are in the base layout. */
#define MAKE_TILE_R16(name, T, kern, Q8, base)                                                    \
    T static void name(int64_t K, const void *w, size_t bw, int32_t nr, const void *x, size_t bx, \
                       int32_t nc, float *y, int64_t ldy) {                                      \
        if (nr < 16) {                                                                           \
            base(K, w, bw, nr, x, bx, nc, y, ldy);                                               \
            return;                                                                              \
        }                                                                                        \
        const uint8_t *X = x;                                                                    \
        int32_t c = 0;                                                                           \
        for (; c + 4 <= nc; c += 4) kern(Q8, 4, K, w, X + (size_t)c * bx, bx, y + c * ldy, ldy);  \
        for (; c < nc; c++) kern(Q8, 1, K, w, X + (size_t)c * bx, bx, y + c * ldy, ldy);          \
    }

MAKE_TILE_R16(t5_q4_0_r16, T5, tile_r16_t, 0, t5_q4_0)
MAKE_TILE_R16(t5_q8_0_r16, T5, tile_r16_t, 1, t5_q8_0)
MAKE_TILE_R16(t2_q4_0_r16, T2, tile_r16_avx2_t, 0, t2_q4_0)
MAKE_TILE_R16(t2_q8_0_r16, T2, tile_r16_avx2_t, 1, t2_q8_0)

/* ---- direct tiles for the K-quants (one activation column; prefill uses the packed path) ----
 * Each 32 (or 16) element group: maddubs of unsigned quants with the activations, then an int16
 * multiply-add by the sub-block scale; one float product per 256-element super-block. */

/* Q4_K / Q5_K 12-byte scales -> 8 scales then 8 mins (bytes), the standard unpacking. */
AI void unpack_k4(const uint8_t *scales, uint8_t out[16]) {
    uint32_t u[4];
    memcpy(u, scales, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    const uint32_t a = u[1] & k1;
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    u[2] = a;
    u[0] &= k1;
    memcpy(out, u, 16);
}

/* Q3_K 12-byte scales -> 16 signed scales (-32 .. 31). */
AI void unpack_q3k(const uint8_t *sc, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        const int hi = (sc[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* int16 vector [s[a] x8 | s[a+1] x8] from 16 int8 scales (one pair of 16-element groups). */
T2 AI __m256i scale_pair(__m128i sc8, int a) {
    const __m128i m = _mm_add_epi8(_mm_set_epi64x(0x0101010101010101, 0), _mm_set1_epi8((char)a));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, m));
}

/* Shifts by a run-time count (the immediate forms need constants). */
T2 AI __m256i srl16(__m256i v, int n) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n)); }

enum { KQ2, KQ3, KQ4, KQ5, KQ6 };

T2 AI void tilek_t(const int Q, const int VN, const int NR, int64_t K, const uint8_t *w, size_t bw,
                   const uint8_t *x, float *y) {
    const int64_t nsb = K / 256;
    const xrow xr = xrow_qk(x, K);
    __m256 acc[4];
    float accm[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps(), accm[r] = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const int8_t *q8 = xr.qs + 256 * sb;
        const float dx = xr.d[sb];
        const __m256i bs16 = _mm256_loadu_si256((const __m256i *)(xr.bsums + 16 * sb));
        for (int r = 0; r < NR; r++) {
            const uint8_t *rowp = w + (size_t)r * bw;
            {
                const size_t sbb = (size_t)(bw / (size_t)nsb); /* bytes per super-block */
                const char *pf = (const char *)rowp + (size_t)sb * sbb + PREFETCH_DIST;
                for (size_t o = 0; o < sbb; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
            }
            __m256i isum = _mm256_setzero_si256();
            float dall, dmin = 0.0f;
            if (Q == KQ4 || Q == KQ5) {
                const nbl_block_q4_K *b4 = (const nbl_block_q4_K *)rowp + sb;
                const nbl_block_q5_K *b5 = (const nbl_block_q5_K *)rowp + sb;
                const uint8_t *sc_raw = Q == KQ4 ? b4->scales : b5->scales;
                const uint8_t *qs = Q == KQ4 ? b4->qs : b5->qs;
                dall = h2f(Q == KQ4 ? b4->d : b5->d) * dx;
                dmin = h2f(Q == KQ4 ? b4->dmin : b5->dmin) * dx;
                uint8_t smn[16];
                unpack_k4(sc_raw, smn);
                /* mins: sum_j m_j * sum(q8 of sub-block j) */
                const __m256i mins = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(smn + 8)));
                const __m256i qsum = _mm256_loadu_si256((const __m256i *)(xr.nsum32 + 8 * sb));
                accm[r] += dmin * (float)hsum_epi32(_mm256_mullo_epi32(mins, qsum)) * (1.0f / 128.0f);
                const __m256i hb = Q == KQ5 ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
                for (int j = 0; j < 4; j++) {
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
                    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    if (Q == KQ5) {
                        const __m256i one = _mm256_set1_epi8(1);
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(srl16(hb, 2 * j), one), 4));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(srl16(hb, 2 * j + 1), one), 4));
                    }
                    const __m256i s0 = _mm256_set1_epi16(smn[2 * j]), s1 = _mm256_set1_epi16(smn[2 * j + 1]);
                    const __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * j)));
                    const __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32)));
                    isum = dot_s16(isum, p0, s0, VN);
                    isum = dot_s16(isum, p1, s1, VN);
                }
            } else {
                /* Q2_K, Q3_K, Q6_K: 16-element groups, two 128-element halves of 4 groups of 32. */
                int8_t sc[16];
                const uint8_t *qbase;
                int offset = 0; /* value = u - offset */
                if (Q == KQ6) {
                    const nbl_block_q6_K *b = (const nbl_block_q6_K *)rowp + sb;
                    memcpy(sc, b->scales, 16);
                    dall = h2f(b->d) * dx;
                    offset = 32;
                    qbase = b->ql;
                } else if (Q == KQ3) {
                    const nbl_block_q3_K *b = (const nbl_block_q3_K *)rowp + sb;
                    unpack_q3k(b->scales, sc);
                    dall = h2f(b->d) * dx;
                    offset = 4;
                    qbase = b->qs;
                } else {
                    const nbl_block_q2_K *b = (const nbl_block_q2_K *)rowp + sb;
                    for (int j = 0; j < 16; j++) sc[j] = (int8_t)(b->scales[j] & 0xF);
                    dall = h2f(b->d) * dx;
                    dmin = h2f(b->dmin) * dx;
                    const __m256i mn = _mm256_cvtepu8_epi16(_mm_srli_epi16(_mm_and_si128(_mm_loadu_si128((const __m128i *)b->scales), _mm_set1_epi8((char)0xF0)), 4));
                    accm[r] -= dmin * (float)hsum_epi32(_mm256_madd_epi16(mn, bs16));
                    qbase = b->qs;
                }
                const __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
                if (offset) { /* -offset * sum_i sc_i * bsum_i */
                    const __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), bs16);
                    isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(corr, _mm256_set1_epi32(offset)));
                }
                for (int h = 0; h < 2; h++) {
                    __m256i qa, qb2 = _mm256_setzero_si256(), qhv = _mm256_setzero_si256();
                    if (Q == KQ6) {
                        const nbl_block_q6_K *b = (const nbl_block_q6_K *)rowp + sb;
                        qa = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
                        qb2 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
                        qhv = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                    } else {
                        qa = _mm256_loadu_si256((const __m256i *)(qbase + 32 * h));
                        if (Q == KQ3) qhv = _mm256_loadu_si256((const __m256i *)((const nbl_block_q3_K *)rowp + sb)->hmask);
                    }
                    for (int g = 0; g < 4; g++) {
                        __m256i u;
                        const __m256i m2 = _mm256_set1_epi8(3);
                        if (Q == KQ6) {
                            const __m256i lo = g < 2 ? _mm256_and_si256(g == 0 ? qa : qb2, m4)
                                                     : _mm256_and_si256(_mm256_srli_epi16(g == 2 ? qa : qb2, 4), m4);
                            const __m256i hi = _mm256_and_si256(srl16(qhv, 2 * g), m2);
                            u = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                        } else {
                            u = _mm256_and_si256(srl16(qa, 2 * g), m2);
                            if (Q == KQ3) {
                                const __m256i hbit = _mm256_and_si256(srl16(qhv, 4 * h + g), _mm256_set1_epi8(1));
                                u = _mm256_or_si256(u, _mm256_slli_epi16(hbit, 2));
                            }
                        }
                        const __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * g)));
                        isum = dot_s16(isum, p, scale_pair(sc8, 8 * h + 2 * g), VN);
                    }
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dall), acc[r]);
        }
    }
    for (int r = 0; r < NR; r++) y[r] = hsum_ps(acc[r]) + accm[r];
}

#define MAKE_TILEK(name, Q, T, VN)                                                              \
    T static void name##_k(const int NR, const int NC, int64_t K, const uint8_t *w, size_t bw,   \
                           const uint8_t *x, size_t bx, float *y, int64_t ldy) {                \
        (void)NC, (void)bx, (void)ldy;                                                          \
        if (NR == 4) tilek_t(Q, VN, 4, K, w, bw, x, y);                                         \
        else tilek_t(Q, VN, 1, K, w, bw, x, y);                                                 \
    }                                                                                           \
    TILE_WRAP(name, T, 1)

MAKE_TILEK(t2_q2_K, KQ2, T2, 0)
MAKE_TILEK(t2_q3_K, KQ3, T2, 0)
MAKE_TILEK(t2_q4_K, KQ4, T2, 0)
MAKE_TILEK(t2_q5_K, KQ5, T2, 0)
MAKE_TILEK(t2_q6_K, KQ6, T2, 0)
MAKE_TILEK(t5_q2_K, KQ2, T5, 1)
MAKE_TILEK(t5_q3_K, KQ3, T5, 1)

/* Q4_K, Q5_K, Q6_K decode at 512 bits: 64 quants per vector in the activations' natural order
 * (a pair of 32-element sub-blocks for Q4_K/Q5_K, a 64-element slice of a Q6_K half), with the
 * sub-block scales spread over the vector's 128-bit lanes by one word permute. */
T5 AI void tilek512_t(const int Q, const int NR, int64_t K, const uint8_t *w, size_t bw, const uint8_t *x, float *y) {
    const int64_t nsb = K / 256;
    const xrow xr = xrow_qk(x, K);
    const size_t sbb = (size_t)(bw / (size_t)nsb);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512 acc[4];
    float accm[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps(), accm[r] = 0.0f;
    for (int64_t sb = 0; sb < nsb; sb++) {
        const int8_t *q8 = xr.qs + 256 * sb;
        const float dx = xr.d[sb];
        __m512i xv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) xv[j] = _mm512_loadu_si512((const void *)(q8 + 64 * j));
        const __m256i bs16 = _mm256_loadu_si256((const __m256i *)(xr.bsums + 16 * sb));
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *rowp = w + (size_t)r * bw;
            for (size_t o = 0; o < sbb; o += 64) _mm_prefetch((const char *)rowp + (size_t)sb * sbb + PREFETCH_DIST + o, _MM_HINT_T0);
            __m512i isum = _mm512_setzero_si512();
            float dall;
            if (Q == KQ6) {
                const nbl_block_q6_K *b = (const nbl_block_q6_K *)rowp + sb;
                dall = h2f(b->d) * dx;
                const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
                const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs16), 5); /* 32 * sum sc*bsum */
                isum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), corr));
                const __m512i scz = _mm512_castsi256_si512(sc16);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const __m512i L = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
                    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                    const __m512i Hz = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
                    const __m512i u01 = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_slli_epi16(_mm512_and_si512(Hz, m2), 4));
                    const __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(Hz, 4), m2), 4));
                    const __m512i i01 = _mm512_add_epi16(_mm512_set1_epi16((short)(8 * h)), _mm512_set_epi64(
                        0x0003000300030003, 0x0003000300030003, 0x0002000200020002, 0x0002000200020002,
                        0x0001000100010001, 0x0001000100010001, 0, 0));
                    const __m512i i23 = _mm512_add_epi16(i01, _mm512_set1_epi16(4));
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u01, xv[2 * h]), _mm512_permutexvar_epi16(i01, scz));
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u23, xv[2 * h + 1]), _mm512_permutexvar_epi16(i23, scz));
                }
            } else {
                const nbl_block_q4_K *b4 = (const nbl_block_q4_K *)rowp + sb;
                const nbl_block_q5_K *b5 = (const nbl_block_q5_K *)rowp + sb;
                const uint8_t *qs = Q == KQ4 ? b4->qs : b5->qs;
                dall = h2f(Q == KQ4 ? b4->d : b5->d) * dx;
                const float dmin = h2f(Q == KQ4 ? b4->dmin : b5->dmin) * dx;
                uint8_t smn[16];
                unpack_k4(Q == KQ4 ? b4->scales : b5->scales, smn);
                const __m256i mins = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(smn + 8)));
                const __m256i qsum = _mm256_loadu_si256((const __m256i *)(xr.nsum32 + 8 * sb));
                accm[r] += dmin * (float)hsum_epi32(_mm256_mullo_epi32(mins, qsum)) * (1.0f / 128.0f);
                const __m512i scz = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)smn)));
                const __m512i hb = Q == KQ5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b5->qh)) : _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * j)));
                    z = _mm512_and_si512(_mm512_mask_blend_epi64(0xF0, z, _mm512_srli_epi16(z, 4)), m4);
                    if (Q == KQ5) { /* bit 2j (low half) / 2j+1 (high half) of qh */
                        const __m512i hs = _mm512_mask_blend_epi64(0xF0, _mm512_srli_epi16(hb, 2 * j), _mm512_srli_epi16(hb, 2 * j + 1));
                        z = _mm512_or_si512(z, _mm512_slli_epi16(_mm512_and_si512(hs, _mm512_set1_epi8(1)), 4));
                    }
                    const __m512i idx = _mm512_set_epi64(2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j, 2 * j, 2 * j, 2 * j);
                    /* every word of a qword lane takes the same scale: qword index k -> words 4k.. */
                    const __m512i widx = _mm512_or_si512(_mm512_slli_epi64(idx, 48), _mm512_or_si512(_mm512_slli_epi64(idx, 32),
                                                          _mm512_or_si512(_mm512_slli_epi64(idx, 16), idx)));
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(z, xv[j]), _mm512_permutexvar_epi16(widx, scz));
                }
            }
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(dall), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r] = _mm512_reduce_add_ps(acc[r]) + accm[r];
}

#define MAKE_TILEK512(name, Q)                                                                  \
    T5 static void name##_k(const int NR, const int NC, int64_t K, const uint8_t *w, size_t bw,  \
                            const uint8_t *x, size_t bx, float *y, int64_t ldy) {               \
        (void)NC, (void)bx, (void)ldy;                                                          \
        if (NR == 4) tilek512_t(Q, 4, K, w, bw, x, y);                                          \
        else tilek512_t(Q, 1, K, w, bw, x, y);                                                  \
    }                                                                                           \
    TILE_WRAP(name, T5, 1)
MAKE_TILEK512(t5_q4_K, KQ4)
MAKE_TILEK512(t5_q5_K, KQ5)
MAKE_TILEK512(t5_q6_K, KQ6)

/* ---- float weights (activations already rounded to the weight's precision, stored as f32) --- */

enum { F_F32, F_F16, F_BF16 };

T2 AI __m256 ldw8(const int F, const uint8_t *p) {
    if (F == F_F32) return _mm256_loadu_ps((const float *)p);
    if (F == F_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AI float ldw1(const int F, const uint8_t *p) {
    if (F == F_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return F == F_F16 ? nbl_fp16_to_f32(h) : nbl_bf16_to_f32(h);
}

T2 AI void tilef_t(const int F, const int NR, int64_t K, const uint8_t *w, size_t bw, const float *x, float *y) {
    const int es = F == F_F32 ? 4 : 2;
    __m256 acc[4][2];
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= K; i += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        for (int r = 0; r < NR; r++) {
            const uint8_t *p = w + (size_t)r * bw + (size_t)i * es;
            acc[r][0] = _mm256_fmadd_ps(ldw8(F, p), x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ldw8(F, p + 8 * es), x1, acc[r][1]);
        }
    }
    for (int r = 0; r < NR; r++) {
        float s = hsum_ps(_mm256_add_ps(acc[r][0], acc[r][1]));
        for (int64_t k = i; k < K; k++) s += ldw1(F, w + (size_t)r * bw + (size_t)k * es) * x[k];
        y[r] = s;
    }
}

#define MAKE_TILEF(name, F)                                                                     \
    T2 static void name##_k(const int NR, const int NC, int64_t K, const uint8_t *w, size_t bw,  \
                            const uint8_t *x, size_t bx, float *y, int64_t ldy) {               \
        (void)NC, (void)bx, (void)ldy;                                                          \
        if (NR == 4) tilef_t(F, 4, K, w, bw, (const float *)x, y);                              \
        else tilef_t(F, 1, K, w, bw, (const float *)x, y);                                      \
    }                                                                                           \
    TILE_WRAP(name, T2, 1)

MAKE_TILEF(t2_f32, F_F32)
MAKE_TILEF(t2_f16, F_F16)
MAKE_TILEF(t2_bf16, F_BF16)

/* ---- packed prefill path (AVX-512 VNNI) ------------------------------------------------------
 * pack: decode 8 rows chunk by chunk into a scratch of bytes, then transpose 8x8 dwords so each
 * 32-bit lane of a panel vector holds 4 consecutive values of one row. Symmetric types store
 * u = v + 128 (the activation's nsum = -128*sum(q) undoes the offset); types with minimums store
 * the raw quant and carry a float offset per block. */

enum { P_Q4_0, P_Q4_1, P_Q5_0, P_Q5_1, P_Q8_0, P_IQ4, P_Q2K, P_Q3K, P_Q4K, P_Q5K, P_Q6K };

AI int p_blk(int P) { return P == P_Q2K || P == P_Q3K || P == P_Q6K ? 16 : 32; }
AI int p_min(int P) { return P == P_Q4_1 || P == P_Q5_1 || P == P_Q2K || P == P_Q4K || P == P_Q5K; }
AI int p_chunk(int P) { return P >= P_Q2K ? 256 : 32; }

/* Decodes one chunk (32 or 256 elements) of a row: u[chunk] bytes, s/m per block of p_blk. */
T2 AI void p_decode(const int P, const int VN, const uint8_t *row, int64_t ci, uint8_t *u, float *s, float *m) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    if (P <= P_IQ4) {
        static const int D_OF[] = {D_Q4_0, D_Q4_1, D_Q5_0, D_Q5_1, D_Q8_0, D_IQ4};
        const int D = D_OF[P];
        const uint8_t *blk = row + (size_t)ci * d_bytes(D);
        __m256i v = dec32(D, blk, 1);
        if (P == P_Q4_0) v = _mm256_add_epi8(v, _mm256_set1_epi8(120));
        if (P == P_Q5_0) v = _mm256_add_epi8(v, _mm256_set1_epi8(112));
        _mm256_storeu_si256((__m256i *)u, v);
        s[0] = h2f(ld16(blk));
        if (d_min(D)) m[0] = h2f(ld16(blk + 2));
        return;
    }
    if (P == P_Q4K || P == P_Q5K) {
        const nbl_block_q4_K *b4 = (const nbl_block_q4_K *)row + ci;
        const nbl_block_q5_K *b5 = (const nbl_block_q5_K *)row + ci;
        const float d = h2f(P == P_Q4K ? b4->d : b5->d), dmin = h2f(P == P_Q4K ? b4->dmin : b5->dmin);
        uint8_t smn[16];
        unpack_k4(P == P_Q4K ? b4->scales : b5->scales, smn);
        for (int j = 0; j < 8; j++) s[j] = d * smn[j], m[j] = -dmin * smn[8 + j];
        const uint8_t *qs = P == P_Q4K ? b4->qs : b5->qs;
        const __m256i hb = P == P_Q5K ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (P == P_Q5K) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(srl16(hb, 2 * j), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(srl16(hb, 2 * j + 1), one), 4));
            }
            _mm256_storeu_si256((__m256i *)(u + 64 * j), lo);
            _mm256_storeu_si256((__m256i *)(u + 64 * j + 32), hi);
        }
        return;
    }
    /* Q2_K, Q3_K, Q6_K: two halves of 4 groups of 32; scales per 16. */
    __m256i add = _mm256_setzero_si256();
    const uint8_t *qbase;
    if (P == P_Q6K) {
        const nbl_block_q6_K *b = (const nbl_block_q6_K *)row + ci;
        const float d = h2f(b->d);
        for (int j = 0; j < 16; j++) s[j] = d * b->scales[j];
        add = _mm256_set1_epi8(VN ? 96 : 0);
        qbase = b->ql;
    } else if (P == P_Q3K) {
        const nbl_block_q3_K *b = (const nbl_block_q3_K *)row + ci;
        int8_t sc[16];
        unpack_q3k(b->scales, sc);
        const float d = h2f(b->d);
        for (int j = 0; j < 16; j++) s[j] = d * sc[j];
        add = _mm256_set1_epi8(VN ? 124 : 0);
        qbase = b->qs;
    } else {
        const nbl_block_q2_K *b = (const nbl_block_q2_K *)row + ci;
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        for (int j = 0; j < 16; j++) s[j] = d * (b->scales[j] & 0xF), m[j] = -dmin * (b->scales[j] >> 4);
        qbase = b->qs;
    }
    for (int h = 0; h < 2; h++) {
        __m256i qa, qb2 = _mm256_setzero_si256(), qhv = _mm256_setzero_si256();
        if (P == P_Q6K) {
            const nbl_block_q6_K *b = (const nbl_block_q6_K *)row + ci;
            qa = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
            qb2 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
            qhv = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        } else {
            qa = _mm256_loadu_si256((const __m256i *)(qbase + 32 * h));
            if (P == P_Q3K) qhv = _mm256_loadu_si256((const __m256i *)((const nbl_block_q3_K *)row + ci)->hmask);
        }
        for (int g = 0; g < 4; g++) {
            __m256i v;
            if (P == P_Q6K) {
                const __m256i lo = g < 2 ? _mm256_and_si256(g == 0 ? qa : qb2, m4)
                                         : _mm256_and_si256(_mm256_srli_epi16(g == 2 ? qa : qb2, 4), m4);
                v = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(srl16(qhv, 2 * g), m2), 4));
            } else {
                v = _mm256_and_si256(srl16(qa, 2 * g), m2);
                if (P == P_Q3K)
                    v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(srl16(qhv, 4 * h + g), one), 2));
            }
            _mm256_storeu_si256((__m256i *)(u + 128 * h + 32 * g), _mm256_add_epi8(v, add));
        }
    }
}

/* out[k] = dword k of every row r[0..7] (an 8x8 transpose of 32-bit elements). */
T2 AI void transpose8(__m256i r[8]) {
    __m256i t[8], q[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        q[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        q[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        q[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        q[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2x128_si256(q[k], q[4 + k], 0x20);
        r[k + 4] = _mm256_permute2x128_si256(q[k], q[4 + k], 0x31);
    }
}

/* The 32-element types: one block of 8 rows at a time, decoded, transposed and stored without
 * leaving registers. */
T2 AI void pack32_t(const int P, const int VN, int64_t K, const uint8_t *w, size_t bw, int32_t nr, uint8_t *panel) {
    static const int D_OF[] = {D_Q4_0, D_Q4_1, D_Q5_0, D_Q5_1, D_Q8_0, D_IQ4};
    const int D = D_OF[P], BS = d_bytes(D), MIN = p_min(P);
    const size_t bstride = 32 * NBL_PANEL_ROWS + 4 * NBL_PANEL_ROWS * (MIN ? 2 : 1);
    const uint8_t *rows[8];
    for (int r = 0; r < 8; r++) rows[r] = w + (size_t)(r < nr ? r : 0) * bw;
    const __m256i add = _mm256_set1_epi8(VN && P == P_Q4_0 ? 120 : VN && P == P_Q5_0 ? 112 : 0);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256i v[8];
        float sv[8], mv[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = rows[r] + (size_t)b * BS;
            v[r] = _mm256_add_epi8(dec32(D, blk, 1), add);
            sv[r] = r < nr ? h2f(ld16(blk)) : 0.0f;
            mv[r] = MIN && r < nr ? h2f(ld16(blk + 2)) : 0.0f;
        }
        transpose8(v);
        uint8_t *pb = panel + (size_t)b * bstride;
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i *)(pb + 32 * k), v[k]);
        memcpy(pb + 256, sv, 32);
        if (MIN) memcpy(pb + 288, mv, 32);
    }
}

T2 AI void pack_t(const int P, const int VN, int64_t K, const uint8_t *w, size_t bw, int32_t nr, uint8_t *panel) {
    if (P <= P_IQ4) {
        pack32_t(P, VN, K, w, bw, nr, panel);
        return;
    }
    const int B = p_blk(P), MIN = p_min(P), CH = p_chunk(P), NBC = CH / B;
    const size_t bstride = (size_t)B * NBL_PANEL_ROWS + 4 * NBL_PANEL_ROWS * (MIN ? 2 : 1);
    _Alignas(32) uint8_t u[NBL_PANEL_ROWS][256];
    float s[NBL_PANEL_ROWS][16], m[NBL_PANEL_ROWS][16];
    for (int64_t ci = 0; ci < K / CH; ci++) {
        for (int r = 0; r < NBL_PANEL_ROWS; r++) {
            if (r < nr) {
                p_decode(P, VN, w + (size_t)r * bw, ci, u[r], s[r], m[r]);
            } else {
                memset(u[r], 0, (size_t)CH);
                for (int j = 0; j < NBC; j++) s[r][j] = m[r][j] = 0.0f;
            }
        }
        for (int g = 0; g < CH / 32; g++) {
            __m256i v[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) v[r] = _mm256_load_si256((const __m256i *)(u[r] + 32 * g));
            transpose8(v);
            /* 32 bytes of each row = one block of 32, or two blocks of 16 */
            const int64_t b0 = (ci * CH + 32 * g) / B;
            uint8_t *pb = panel + (size_t)b0 * bstride;
            if (B == 32) {
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i *)(pb + 32 * k), v[k]);
            } else {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    _mm256_storeu_si256((__m256i *)(pb + 32 * k), v[k]);
                    _mm256_storeu_si256((__m256i *)(pb + bstride + 32 * k), v[k + 4]);
                }
            }
        }
        for (int j = 0; j < NBC; j++) {
            uint8_t *pb = panel + (size_t)(ci * NBC + j) * bstride + (size_t)B * NBL_PANEL_ROWS;
            float sv[8], mv[8];
            for (int r = 0; r < 8; r++) sv[r] = s[r][j], mv[r] = m[r][j];
            memcpy(pb, sv, 32);
            if (MIN) memcpy(pb + 32, mv, 32);
        }
    }
}

/* A regrouped half group is already the panel's transpose: chunk c's 32 bytes (its 8 rows' bytes
 * 4c .. 4c+3) are the panel's dwords for elements 4c.. (Q4_0: low nibbles) and 16+4c.. (high),
 * or, for Q8_0, chunks c and 4 + c; the 8 scales are contiguous. add: the panel's offset. */
T2 AI void pack_r16_t(const int VN, uint32_t rtype, int64_t K, const uint8_t *group, int32_t half, uint8_t *panel) {
    const int Q8 = rtype == NBL_TYPE_Q8_0_R16;
    const size_t GB = Q8 ? 544 : 288, bstride = 32 * NBL_PANEL_ROWS + 4 * NBL_PANEL_ROWS;
    const __m256i m4 = _mm256_set1_epi8(0x0F), add = _mm256_set1_epi8(Q8 ? (char)0x80 : VN ? 120 : 0);
    for (int64_t b = 0; b < K / 32; b++) {
        const uint8_t *g = group + (size_t)b * GB + 32 + 32 * (size_t)half;
        uint8_t *pb = panel + (size_t)b * bstride;
        for (int c = 0; c < (Q8 ? 8 : 4); c++) {
            const __m256i t = _mm256_loadu_si256((const __m256i *)(g + 64 * c));
            if (Q8) {
                _mm256_storeu_si256((__m256i *)(pb + 32 * c), _mm256_xor_si256(t, add));
                continue;
            }
            _mm256_storeu_si256((__m256i *)(pb + 32 * c), _mm256_add_epi8(_mm256_and_si256(t, m4), add));
            _mm256_storeu_si256((__m256i *)(pb + 32 * (4 + c)), _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(t, 4), m4), add));
        }
        _mm256_storeu_ps((float *)(void *)(pb + 256), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(group + (size_t)b * GB + 16 * (size_t)half))));
    }
}
T2 static void pk_r16(uint32_t rtype, int64_t K, const uint8_t *group, int32_t half, uint8_t *panel) {
    pack_r16_t(1, rtype, K, group, half, panel);
}
T2 static void pk2_r16(uint32_t rtype, int64_t K, const uint8_t *group, int32_t half, uint8_t *panel) {
    pack_r16_t(0, rtype, K, group, half, panel);
}

/* VNNI panels hold value + 128 for the symmetric types (dpbusd takes unsigned weights of any
 * size); AVX2 panels hold value + a small offset so maddubs pairs cannot saturate, which rules out
 * Q8_0 and IQ4_NL (their values span the whole byte: those keep the tiles on AVX2). */
#define MAKE_PACK(name, P, VN)                                                                  \
    T2 static void name(int64_t K, const void *w, size_t bw, int32_t nr, uint8_t *panel) {      \
        pack_t(P, VN, K, w, bw, nr, panel);                                                     \
    }
MAKE_PACK(pk_q4_0, P_Q4_0, 1)
MAKE_PACK(pk_q4_1, P_Q4_1, 1)
MAKE_PACK(pk_q5_0, P_Q5_0, 1)
MAKE_PACK(pk_q5_1, P_Q5_1, 1)
MAKE_PACK(pk_q8_0, P_Q8_0, 1)
MAKE_PACK(pk_iq4_nl, P_IQ4, 1)
MAKE_PACK(pk_q2_K, P_Q2K, 1)
MAKE_PACK(pk_q3_K, P_Q3K, 1)
MAKE_PACK(pk_q4_K, P_Q4K, 1)
MAKE_PACK(pk_q5_K, P_Q5K, 1)
MAKE_PACK(pk_q6_K, P_Q6K, 1)
MAKE_PACK(pk2_q4_0, P_Q4_0, 0)
MAKE_PACK(pk2_q5_0, P_Q5_0, 0)
MAKE_PACK(pk2_q3_K, P_Q3K, 0)
MAKE_PACK(pk2_q6_K, P_Q6K, 0)

/* Panel (8 rows) x NC activation columns. Each lane of P accumulates one row's integer dot for
 * the block, so the float work (convert, scale, accumulate) is one vector op per 8 outputs. The
 * k loop is outermost within a block so each panel vector is loaded once and feeds NC
 * independent dependency chains. */
T5 AI void mk_t(const int B, const int MIN, const int NC, const int XK, const uint8_t *panel, int64_t K,
                const uint8_t *x, size_t bx, float *y, int64_t ldy, int32_t nr) {
    const int64_t nb = K / B;
    const size_t bstride = (size_t)B * 8 + 32 * (MIN ? 2 : 1);
    const int DSH = B == 16 ? 4 : 3;
    const int8_t *qs[8];
    const float *dxp[8], *sxp[8];
    const int32_t *nsp[8];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        const xrow xr = XK ? xrow_qk(x + (size_t)c * bx, K) : xrow_q8(x + (size_t)c * bx, K);
        qs[c] = xr.qs;
        dxp[c] = xr.d;
        sxp[c] = XK ? (B == 16 ? xr.s16 : xr.s32) : xr.s;
        nsp[c] = XK ? (B == 16 ? xr.nsum16 : xr.nsum32) : xr.nsum;
    }
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * bstride;
        __m256i P[8];
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) P[c] = MIN ? _mm256_setzero_si256() : _mm256_set1_epi32(nsp[c][b]);
#pragma GCC unroll 8
        for (int k = 0; k < B / 4; k++) {
            const __m256i Wk = _mm256_loadu_si256((const __m256i *)(pb + 32 * k));
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                P[c] = _mm256_dpbusd_epi32(P[c], Wk, _mm256_set1_epi32(ld32((const uint8_t *)(qs[c] + b * B + 4 * k))));
        }
        const __m256 sv = _mm256_loadu_ps((const float *)(pb + B * 8));
        const int64_t bd = XK ? b >> DSH : b;
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P[c]), _mm256_mul_ps(sv, _mm256_set1_ps(dxp[c][bd])), acc[c]);
        if (MIN) {
            const __m256 mv = _mm256_loadu_ps((const float *)(pb + B * 8 + 32));
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) acc[c] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sxp[c][b]), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        if (nr == 8) {
            _mm256_storeu_ps(y + c * ldy, acc[c]);
        } else {
            float t[8];
            _mm256_storeu_ps(t, acc[c]);
            memcpy(y + c * ldy, t, sizeof(float) * (size_t)nr);
        }
    }
}

/* The same for AVX2 without VNNI: maddubs + madd per dpbusd, panel values + a small offset
 * (the activation's -128*sum shifted down to -off*sum). At most 4 columns: 16 registers. */
T2 AI void mk2_t(const int B, const int MIN, const int NC, const int XK, const int SH, const uint8_t *panel, int64_t K,
                const uint8_t *x, size_t bx, float *y, int64_t ldy, int32_t nr) {
    const int64_t nb = K / B;
    const size_t bstride = (size_t)B * 8 + 32 * (MIN ? 2 : 1);
    const int DSH = B == 16 ? 4 : 3;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *qs[8];
    const float *dxp[8], *sxp[8];
    const int32_t *nsp[8];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        const xrow xr = XK ? xrow_qk(x + (size_t)c * bx, K) : xrow_q8(x + (size_t)c * bx, K);
        qs[c] = xr.qs;
        dxp[c] = xr.d;
        sxp[c] = XK ? (B == 16 ? xr.s16 : xr.s32) : xr.s;
        nsp[c] = XK ? (B == 16 ? xr.nsum16 : xr.nsum32) : xr.nsum;
    }
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * bstride;
        __m256i P[8];
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) P[c] = MIN ? _mm256_setzero_si256() : _mm256_set1_epi32(nsp[c][b] >> SH);
#pragma GCC unroll 8
        for (int k = 0; k < B / 4; k++) {
            const __m256i Wk = _mm256_loadu_si256((const __m256i *)(pb + 32 * k));
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                P[c] = _mm256_add_epi32(P[c], _mm256_madd_epi16(_mm256_maddubs_epi16(Wk, _mm256_set1_epi32(ld32((const uint8_t *)(qs[c] + b * B + 4 * k)))), ones));
        }
        const __m256 sv = _mm256_loadu_ps((const float *)(pb + B * 8));
        const int64_t bd = XK ? b >> DSH : b;
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P[c]), _mm256_mul_ps(sv, _mm256_set1_ps(dxp[c][bd])), acc[c]);
        if (MIN) {
            const __m256 mv = _mm256_loadu_ps((const float *)(pb + B * 8 + 32));
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) acc[c] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sxp[c][b]), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        if (nr == 8) {
            _mm256_storeu_ps(y + c * ldy, acc[c]);
        } else {
            float t[8];
            _mm256_storeu_ps(t, acc[c]);
            memcpy(y + c * ldy, t, sizeof(float) * (size_t)nr);
        }
    }
}

#define MK_NC 8
#define MK_CASE(B, MIN, XK)                                                                     \
    if (blk == B && has_min == MIN && xk == XK) {                                               \
        int32_t c = 0;                                                                          \
        for (; c + MK_NC <= nc; c += MK_NC) mk_t(B, MIN, MK_NC, XK, panel, K, x + (size_t)c * bx, bx, y + c * ldy, ldy, nr); \
        for (; c + 4 <= nc; c += 4) mk_t(B, MIN, 4, XK, panel, K, x + (size_t)c * bx, bx, y + c * ldy, ldy, nr); \
        for (; c < nc; c++) mk_t(B, MIN, 1, XK, panel, K, x + (size_t)c * bx, bx, y + c * ldy, ldy, nr); \
        return;                                                                                 \
    }

T5 static void gemm_vnni(const uint8_t *panel, int64_t K, int32_t blk, int32_t has_min, int32_t off, uint32_t xtype,
                         const uint8_t *x, size_t bx, int32_t nc, float *y, int64_t ldy, int32_t nr) {
    const int xk = xtype == NBL_TYPE_Q8_K;
    NBL_ASSERT(off == (has_min ? 0 : 128));
    MK_CASE(32, 0, 0)
    MK_CASE(32, 1, 0)
    MK_CASE(32, 0, 1)
    MK_CASE(32, 1, 1)
    MK_CASE(16, 0, 1)
    MK_CASE(16, 1, 1)
    NBL_ASSERT(0);
}

#define MK2_CASE(B, MIN, XK)                                                                    \
    if (blk == B && has_min == MIN && xk == XK) {                                               \
        int32_t c = 0;                                                                          \
        for (; c + 4 <= nc; c += 4) mk2_t(B, MIN, 4, XK, sh, panel, K, x + (size_t)c * bx, bx, y + c * ldy, ldy, nr); \
        for (; c < nc; c++) mk2_t(B, MIN, 1, XK, sh, panel, K, x + (size_t)c * bx, bx, y + c * ldy, ldy, nr); \
        return;                                                                                 \
    }

T2 static void gemm_avx2(const uint8_t *panel, int64_t K, int32_t blk, int32_t has_min, int32_t off, uint32_t xtype,
                         const uint8_t *x, size_t bx, int32_t nc, float *y, int64_t ldy, int32_t nr) {
    const int xk = xtype == NBL_TYPE_Q8_K;
    const int sh = off == 4 ? 5 : off == 8 ? 4 : off == 16 ? 3 : off == 32 ? 2 : 0;
    NBL_ASSERT(has_min ? off == 0 : sh > 0);
    MK2_CASE(32, 0, 0)
    MK2_CASE(32, 1, 0)
    MK2_CASE(32, 0, 1)
    MK2_CASE(32, 1, 1)
    MK2_CASE(16, 0, 1)
    MK2_CASE(16, 1, 1)
    NBL_ASSERT(0);
}

/* ---- tables ------------------------------------------------------------------------------ */

static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
}

static void fill_common(nbl_kernels *t) {
    t->from_f32[NBL_TYPE_Q8_0] = x86_from_f32_q8_0;
    t->from_f32[NBL_TYPE_Q8_1] = x86_from_f32_q8_1;
    t->from_f32[NBL_TYPE_Q8_K] = x86_from_f32_q8_K;
    t->from_f32[NBL_TYPE_F16] = x86_from_f32_f16;
    t->from_f32[NBL_TYPE_BF16] = x86_from_f32_bf16;
    t->from_f32[NBL_TYPE_F32] = x86_from_f32_f32;
    t->x_bytes[NBL_TYPE_Q8_0] = X8_BYTES;
    t->x_bytes[NBL_TYPE_Q8_1] = X8_BYTES;
    t->x_bytes[NBL_TYPE_Q8_K] = XK_BYTES;
    t->x_bytes[NBL_TYPE_F16] = 4;
    t->x_bytes[NBL_TYPE_BF16] = 4;
    t->x_bytes[NBL_TYPE_F32] = 4;
    t->tile[NBL_TYPE_F32] = t2_f32;
    t->tile[NBL_TYPE_F16] = t2_f16;
    t->tile[NBL_TYPE_BF16] = t2_bf16;
    for (int i = 0; i < NBL_TYPE_COUNT; i++) t->tile_m[i] = 4, t->tile_n[i] = 4;
    t->tile_n[NBL_TYPE_F32] = t->tile_n[NBL_TYPE_F16] = t->tile_n[NBL_TYPE_BF16] = 1;
    nbl_x86_fill_ops(t);
}

static nbl_kernels T_AVX2, T_AVX512;
static int avx2_ok = -1, avx512_ok = -1;

const nbl_kernels *nbl_kernels_avx2(void) {
    if (avx2_ok < 0) {
        __builtin_cpu_init();
        int ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
        if (ok) {
            nbl_kernels *t = &T_AVX2;
            memset(t, 0, sizeof *t);
            t->name = "avx2";
            fill_common(t);
            t->tile[NBL_TYPE_Q4_0] = t2_q4_0;
            t->tile[NBL_TYPE_Q4_1] = t2_q4_1;
            t->tile[NBL_TYPE_Q5_0] = t2_q5_0;
            t->tile[NBL_TYPE_Q5_1] = t2_q5_1;
            t->tile[NBL_TYPE_Q8_0] = t2_q8_0;
            t->tile[NBL_TYPE_IQ4_NL] = t2_iq4_nl;
            t->tile[NBL_TYPE_Q4_0_R16] = t2_q4_0_r16;
            t->tile[NBL_TYPE_Q8_0_R16] = t2_q8_0_r16;
            t->tile_m[NBL_TYPE_Q4_0_R16] = t->tile_m[NBL_TYPE_Q8_0_R16] = 16;
            t->regroup[NBL_TYPE_Q4_0] = t->regroup[NBL_TYPE_Q8_0] = 1;
            t->tile[NBL_TYPE_Q2_K] = t2_q2_K;
            t->tile[NBL_TYPE_Q3_K] = t2_q3_K;
            t->tile[NBL_TYPE_Q4_K] = t2_q4_K;
            t->tile[NBL_TYPE_Q5_K] = t2_q5_K;
            t->tile[NBL_TYPE_Q6_K] = t2_q6_K;
            for (int i = NBL_TYPE_Q2_K; i <= NBL_TYPE_Q6_K; i++) t->tile_n[i] = 1;
            const struct { uint32_t ty; nbl_pack_fn fn; int blk, min, off; } packs[] = {
                {NBL_TYPE_Q4_0, pk2_q4_0, 32, 0, 8}, {NBL_TYPE_Q4_1, pk_q4_1, 32, 1, 0}, {NBL_TYPE_Q5_0, pk2_q5_0, 32, 0, 16},
                {NBL_TYPE_Q5_1, pk_q5_1, 32, 1, 0}, {NBL_TYPE_Q2_K, pk_q2_K, 16, 1, 0}, {NBL_TYPE_Q3_K, pk2_q3_K, 16, 0, 4},
                {NBL_TYPE_Q4_K, pk_q4_K, 32, 1, 0}, {NBL_TYPE_Q5_K, pk_q5_K, 32, 1, 0}, {NBL_TYPE_Q6_K, pk2_q6_K, 16, 0, 32}};
            for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++) {
                t->pack[packs[i].ty] = packs[i].fn;
                t->pack_blk[packs[i].ty] = (int8_t)packs[i].blk;
                t->pack_min[packs[i].ty] = (int8_t)packs[i].min;
                t->pack_off[packs[i].ty] = (uint8_t)packs[i].off;
            }
            t->gemm = gemm_avx2;
            t->pack_r16 = pk2_r16;
            nbl_kernels_fill(t);
        }
        avx2_ok = ok;
    }
    return avx2_ok ? &T_AVX2 : NULL;
}

const nbl_kernels *nbl_kernels_avx512(void) {
    if (avx512_ok < 0) {
        __builtin_cpu_init();
        int ok = nbl_kernels_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vnni");
        if (ok) {
            nbl_kernels *t = &T_AVX512;
            memset(t, 0, sizeof *t);
            t->name = "avx512";
            fill_common(t);
            t->tile[NBL_TYPE_Q4_0] = t5_q4_0;
            t->tile[NBL_TYPE_Q4_1] = t5_q4_1;
            t->tile[NBL_TYPE_Q5_0] = t5_q5_0;
            t->tile[NBL_TYPE_Q5_1] = t5_q5_1;
            t->tile[NBL_TYPE_Q8_0] = t5_q8_0;
            t->tile[NBL_TYPE_IQ4_NL] = t5_iq4_nl;
            t->tile[NBL_TYPE_Q4_0_R16] = t5_q4_0_r16;
            t->tile[NBL_TYPE_Q8_0_R16] = t5_q8_0_r16;
            t->tile_m[NBL_TYPE_Q4_0_R16] = t->tile_m[NBL_TYPE_Q8_0_R16] = 16;
            t->regroup[NBL_TYPE_Q4_0] = t->regroup[NBL_TYPE_Q8_0] = 1;
            t->tile[NBL_TYPE_Q2_K] = t5_q2_K;
            t->tile[NBL_TYPE_Q3_K] = t5_q3_K;
            t->tile[NBL_TYPE_Q4_K] = t5_q4_K;
            t->tile[NBL_TYPE_Q5_K] = t5_q5_K;
            t->tile[NBL_TYPE_Q6_K] = t5_q6_K;
            for (int i = NBL_TYPE_Q2_K; i <= NBL_TYPE_Q6_K; i++) t->tile_n[i] = 1;
            const struct { uint32_t ty; nbl_pack_fn fn; int blk, min; } packs[] = {
                {NBL_TYPE_Q4_0, pk_q4_0, 32, 0}, {NBL_TYPE_Q4_1, pk_q4_1, 32, 1}, {NBL_TYPE_Q5_0, pk_q5_0, 32, 0},
                {NBL_TYPE_Q5_1, pk_q5_1, 32, 1}, {NBL_TYPE_Q8_0, pk_q8_0, 32, 0}, {NBL_TYPE_IQ4_NL, pk_iq4_nl, 32, 0},
                {NBL_TYPE_Q2_K, pk_q2_K, 16, 1}, {NBL_TYPE_Q3_K, pk_q3_K, 16, 0}, {NBL_TYPE_Q4_K, pk_q4_K, 32, 1},
                {NBL_TYPE_Q5_K, pk_q5_K, 32, 1}, {NBL_TYPE_Q6_K, pk_q6_K, 16, 0}};
            for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++) {
                t->pack[packs[i].ty] = packs[i].fn;
                t->pack_blk[packs[i].ty] = (int8_t)packs[i].blk;
                t->pack_min[packs[i].ty] = (int8_t)packs[i].min;
                t->pack_off[packs[i].ty] = packs[i].min ? 0 : 128;
            }
            t->gemm = gemm_vnni;
            t->pack_r16 = pk_r16;
            nbl_kernels_fill(t);
        }
        avx512_ok = ok;
    }
    return avx512_ok ? &T_AVX512 : NULL;
}

#else /* not x86-64 with GCC/clang */

const nbl_kernels *nbl_kernels_avx2(void) { return NULL; }
const nbl_kernels *nbl_kernels_avx512(void) { return NULL; }

#endif
