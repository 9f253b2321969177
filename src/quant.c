/* quant.c — tensor types: block layouts (identical to ggml's, so GGUF files load as written),
 * fp16/bf16 conversion, and the scalar reference dequantize / dot / quantize routines that every
 * SIMD kernel is tested against. */
#include "nbl_impl.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* Every ggml type id, so a file with a type we cannot run still parses and the error can name
 * the type. supported = 0 marks types the engine does not execute. */
static const nbl_type_traits TYPES[NBL_TYPE_COUNT] = {
    [0] = {"f32", 1, 4, 1},        [1] = {"f16", 1, 2, 1},
    [2] = {"q4_0", 32, 18, 1},     [3] = {"q4_1", 32, 20, 1},
    [6] = {"q5_0", 32, 22, 1},     [7] = {"q5_1", 32, 24, 1},
    [8] = {"q8_0", 32, 34, 1},     [9] = {"q8_1", 32, 36, 0},
    [10] = {"q2_k", 256, 84, 1},   [11] = {"q3_k", 256, 110, 1},
    [12] = {"q4_k", 256, 144, 1},  [13] = {"q5_k", 256, 176, 1},
    [14] = {"q6_k", 256, 210, 1},  [15] = {"q8_k", 256, 292, 0},
    [16] = {"iq2_xxs", 256, 66, 0}, [17] = {"iq2_xs", 256, 74, 0},
    [18] = {"iq3_xxs", 256, 98, 0}, [19] = {"iq1_s", 256, 50, 0},
    [20] = {"iq4_nl", 32, 18, 1},  [21] = {"iq3_s", 256, 110, 0},
    [22] = {"iq2_s", 256, 82, 0},  [23] = {"iq4_xs", 256, 136, 0},
    [24] = {"i8", 1, 1, 0},        [25] = {"i16", 1, 2, 0},
    [26] = {"i32", 1, 4, 0},       [27] = {"i64", 1, 8, 0},
    [28] = {"f64", 1, 8, 0},       [29] = {"iq1_m", 256, 56, 0},
    [30] = {"bf16", 1, 2, 1},      [34] = {"tq1_0", 256, 54, 0},
    [35] = {"tq2_0", 256, 66, 0},  [39] = {"mxfp4", 32, 17, 0},
};

const nbl_type_traits *nbl_type_traits_get(uint32_t type) {
    if (type >= NBL_TYPE_COUNT || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

int32_t nbl_type_from_name(const char *name) {
    if (!name) return -1;
    for (uint32_t t = 0; t < NBL_TYPE_COUNT; t++) {
        if (!TYPES[t].name) continue;
        const char *a = TYPES[t].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return (int32_t)t;
    }
    return -1;
}

uint64_t nbl_row_bytes(uint32_t type, int64_t n) {
    const nbl_type_traits *t = nbl_type_traits_get(type);
    NBL_ASSERT(t && n % t->blck == 0);
    return (uint64_t)(n / t->blck) * (uint64_t)t->type_size;
}

/* ---- fp16 / bf16 ------------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float nbl_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | (man << 13)); /* inf, NaN (payload kept) */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 is exact in float */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t nbl_f32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF)); /* quiet NaN */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); /* rounds past 65504 (or inf) */
    if (a < 0x38800000u) {
        /* result is subnormal or zero: add the implicit bit, shift right with RNE */
        if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
        uint32_t e = a >> 23, m = (a & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits (a carry into the exponent is right) */
    uint32_t r = a - (112u << 23);
    r += 0xFFF + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

float nbl_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t nbl_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); /* keep NaN quiet */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

#define H2F(x) nbl_fp16_to_f32(x)
#define F2H(x) nbl_f32_to_fp16(x)

/* ---- dequantization ---------------------------------------------------------------------- */

const int8_t nbl_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

_Static_assert(sizeof(nbl_block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(nbl_block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(nbl_block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(nbl_block_q5_1) == 24, "q5_1");
_Static_assert(sizeof(nbl_block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(nbl_block_q8_1) == 36, "q8_1");
_Static_assert(sizeof(nbl_block_iq4_nl) == 18, "iq4_nl");
_Static_assert(sizeof(nbl_block_q2_K) == 84, "q2_K");
_Static_assert(sizeof(nbl_block_q3_K) == 110, "q3_K");
_Static_assert(sizeof(nbl_block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(nbl_block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(nbl_block_q6_K) == 210, "q6_K");
_Static_assert(sizeof(nbl_block_q8_K) == 292, "q8_K");

static void dq_q4_0(const nbl_block_q4_0 *b, float *y) {
    float d = H2F(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b->qs[j] & 0xF) - 8);
        y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
    }
}

static void dq_q4_1(const nbl_block_q4_1 *b, float *y) {
    float d = H2F(b->d), m = H2F(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b->qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
    }
}

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dq_q5_0(const nbl_block_q5_0 *b, float *y) {
    float d = H2F(b->d);
    uint32_t qh = le32(b->qh);
    for (int j = 0; j < 16; j++) {
        int lo = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

static void dq_q5_1(const nbl_block_q5_1 *b, float *y) {
    float d = H2F(b->d), m = H2F(b->m);
    uint32_t qh = le32(b->qh);
    for (int j = 0; j < 16; j++) {
        int lo = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

static void dq_q8_0(const nbl_block_q8_0 *b, float *y) {
    float d = H2F(b->d);
    for (int j = 0; j < 32; j++) y[j] = d * (float)b->qs[j];
}

static void dq_q8_1(const nbl_block_q8_1 *b, float *y) {
    float d = H2F(b->d);
    for (int j = 0; j < 32; j++) y[j] = d * (float)b->qs[j];
}

static void dq_iq4_nl(const nbl_block_iq4_nl *b, float *y) {
    float d = H2F(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)nbl_iq4nl_values[b->qs[j] & 0xF];
        y[j + 16] = d * (float)nbl_iq4nl_values[b->qs[j] >> 4];
    }
}

/* K-quants store 2-bit fields of four 32-element groups in one byte: element 128*h + 32*g + l
 * (h: half, g: group 0..3, l: 0..31) is bits 2g..2g+1 of qs[32*h + l]. */
static void dq_q2_K(const nbl_block_q2_K *b, float *y) {
    float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int i = 0; i < 256; i++) {
        int h = i / 128, g = (i / 32) % 4, l = i % 32, s = i / 16;
        int q = (b->qs[32 * h + l] >> (2 * g)) & 3;
        y[i] = d * (float)(b->scales[s] & 0xF) * (float)q - dmin * (float)(b->scales[s] >> 4);
    }
}

/* Q3_K's 16 six-bit scales: low 4 bits in nibbles of scales[0..7] (j<8: low nibble of
 * scales[j], else high nibble of scales[j-8]), high 2 bits in scales[8 + j%4] at bit 2*(j/4). */
static int q3k_scale(const uint8_t *sc, int j) {
    int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
    int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static void dq_q3_K(const nbl_block_q3_K *b, float *y) {
    float d = H2F(b->d);
    for (int i = 0; i < 256; i++) {
        int h = i / 128, g = (i / 32) % 4, l = i % 32;
        int q = (b->qs[32 * h + l] >> (2 * g)) & 3;
        if (!((b->hmask[l] >> (i / 32)) & 1)) q -= 4; /* clear hmask bit: value is q-4 */
        y[i] = d * (float)q3k_scale(b->scales, i / 16) * (float)q;
    }
}

static void dq_q4_K(const nbl_block_q4_K *b, float *y) {
    float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int c = 0; c < 4; c++) { /* 64-element chunk: low nibbles, then high nibbles */
        uint8_t s1, m1, s2, m2;
        nbl_get_scale_min_k4(2 * c, b->scales, &s1, &m1);
        nbl_get_scale_min_k4(2 * c + 1, b->scales, &s2, &m2);
        float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d1 * (float)(q[l] & 0xF) - n1;
            y[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - n2;
        }
    }
}

static void dq_q5_K(const nbl_block_q5_K *b, float *y) {
    float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t s1, m1, s2, m2;
        nbl_get_scale_min_k4(2 * c, b->scales, &s1, &m1);
        nbl_get_scale_min_k4(2 * c + 1, b->scales, &s2, &m2);
        float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) { /* qh bit 2c: 5th bit of the low half, 2c+1: high half */
            int lo = (q[l] & 0xF) | (((b->qh[l] >> (2 * c)) & 1) << 4);
            int hi = (q[l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4);
            y[64 * c + l] = d1 * (float)lo - n1;
            y[64 * c + 32 + l] = d2 * (float)hi - n2;
        }
    }
}

/* Q6_K, per 128-element half h: element 128h + 32g + l takes its low 4 bits from ql[64h + l]
 * (g = 0: low nibble, g = 2: high nibble) or ql[64h + 32 + l] (g = 1, 3), its top 2 bits from
 * qh[32h + l] at bit 2g, and its signed 8-bit scale from scales[i / 16]. */
static void dq_q6_K(const nbl_block_q6_K *b, float *y) {
    float d = H2F(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        float *yy = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yy[l] = d * (float)sc[is] * (float)q1;
            yy[l + 32] = d * (float)sc[is + 2] * (float)q2;
            yy[l + 64] = d * (float)sc[is + 4] * (float)q3;
            yy[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static void dq_q8_K(const nbl_block_q8_K *b, float *y) {
    for (int j = 0; j < 256; j++) y[j] = b->d * (float)b->qs[j];
}

/* Dequantizes one block (or one element of a float type) of type t at block index i. */
static void dq_block(uint32_t t, const uint8_t *src, int64_t i, float *y) {
    switch (t) {
    case NBL_TYPE_F32: memcpy(y, src + 4 * i, 4); break;
    case NBL_TYPE_F16: {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        *y = nbl_fp16_to_f32(h);
        break;
    }
    case NBL_TYPE_BF16: {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        *y = nbl_bf16_to_f32(h);
        break;
    }
    case NBL_TYPE_Q4_0: dq_q4_0((const nbl_block_q4_0 *)src + i, y); break;
    case NBL_TYPE_Q4_1: dq_q4_1((const nbl_block_q4_1 *)src + i, y); break;
    case NBL_TYPE_Q5_0: dq_q5_0((const nbl_block_q5_0 *)src + i, y); break;
    case NBL_TYPE_Q5_1: dq_q5_1((const nbl_block_q5_1 *)src + i, y); break;
    case NBL_TYPE_Q8_0: dq_q8_0((const nbl_block_q8_0 *)src + i, y); break;
    case NBL_TYPE_Q8_1: dq_q8_1((const nbl_block_q8_1 *)src + i, y); break;
    case NBL_TYPE_IQ4_NL: dq_iq4_nl((const nbl_block_iq4_nl *)src + i, y); break;
    case NBL_TYPE_Q2_K: dq_q2_K((const nbl_block_q2_K *)src + i, y); break;
    case NBL_TYPE_Q3_K: dq_q3_K((const nbl_block_q3_K *)src + i, y); break;
    case NBL_TYPE_Q4_K: dq_q4_K((const nbl_block_q4_K *)src + i, y); break;
    case NBL_TYPE_Q5_K: dq_q5_K((const nbl_block_q5_K *)src + i, y); break;
    case NBL_TYPE_Q6_K: dq_q6_K((const nbl_block_q6_K *)src + i, y); break;
    case NBL_TYPE_Q8_K: dq_q8_K((const nbl_block_q8_K *)src + i, y); break;
    default: NBL_ASSERT(!"dequant: unsupported type");
    }
}

static int dq_has(uint32_t t) {
    switch (t) {
    case NBL_TYPE_F32: case NBL_TYPE_F16: case NBL_TYPE_BF16: case NBL_TYPE_Q4_0:
    case NBL_TYPE_Q4_1: case NBL_TYPE_Q5_0: case NBL_TYPE_Q5_1: case NBL_TYPE_Q8_0:
    case NBL_TYPE_Q8_1: case NBL_TYPE_IQ4_NL: case NBL_TYPE_Q2_K: case NBL_TYPE_Q3_K:
    case NBL_TYPE_Q4_K: case NBL_TYPE_Q5_K: case NBL_TYPE_Q6_K: case NBL_TYPE_Q8_K: return 1;
    default: return 0;
    }
}

void nbl_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    NBL_ASSERT(dq_has(type));
    const int64_t bs = TYPES[type].blck;
    NBL_ASSERT(n >= 0 && n % bs == 0);
    for (int64_t i = 0; i < n / bs; i++) dq_block(type, (const uint8_t *)src, i, dst + i * bs);
}

float nbl_vec_dot_ref(uint32_t type, const void *w, const float *x, int64_t n) {
    NBL_ASSERT(dq_has(type));
    const int64_t bs = TYPES[type].blck;
    NBL_ASSERT(n >= 0 && n % bs == 0);
    float y[NBL_QK_K];
    double acc = 0.0;
    for (int64_t i = 0; i < n / bs; i++) {
        dq_block(type, (const uint8_t *)w, i, y);
        for (int64_t j = 0; j < bs; j++) acc += (double)y[j] * (double)x[i * bs + j];
    }
    return (float)acc;
}

/* ---- quantization: search helpers ---------------------------------------------------------
 * The searches follow the standard ggml approaches (facts of the format ecosystem): a symmetric
 * scale refined over a few trial inverse scales by weighted least squares, and a scale+min
 * search for the affine formats. Weights w[i] >= 0 weight the squared error of element i. */

#define GROUP_EPS 1e-15f

/* Round to nearest (ties to even) with inputs made safe for the int conversion. */
static inline int nint(float v) {
    if (!(v == v)) return 0;
    if (v > 1e9f) v = 1e9f;
    if (v < -1e9f) v = -1e9f;
    return (int)lrintf(v);
}
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Signed levels -nmax..nmax-1 (stored as l + nmax in L). The largest-magnitude element maps to
 * -nmax (the side with one more level); then inverse scales near that are tried and each
 * candidate's least-squares scale kept if it lowers the weighted error. w == NULL: w = x^2. */
static float qx_search(int n, int nmax, const float *x, const float *w, uint8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float best_scale = 0, best = 0;
    for (int is = 0; is <= 18; is++) {
        /* is = 0 is the plain max mapping; then -0.9..+0.9 levels around it */
        int t = is == 0 ? 0 : (is <= 9 ? is - 10 : is - 9);
        float iscale = -((float)nmax + 0.1f * (float)t) / max;
        double sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
            double wi = w ? w[i] : (double)x[i] * x[i];
            sumlx += wi * x[i] * l;
            suml2 += wi * (double)l * l;
        }
        /* weighted error of the LS scale is sum w x^2 - sumlx^2/suml2: maximise the last term */
        if (suml2 > 0 && (is == 0 || sumlx * sumlx > best * suml2)) {
            best_scale = (float)(sumlx / suml2);
            best = (float)(best_scale * sumlx);
            for (int i = 0; i < n; i++) L[i] = (uint8_t)(clampi(nint(iscale * x[i]), -nmax, nmax - 1) + nmax);
        } else if (is == 0) {
            best_scale = 1.0f / iscale;
            for (int i = 0; i < n; i++) L[i] = (uint8_t)(clampi(nint(iscale * x[i]), -nmax, nmax - 1) + nmax);
        }
    }
    /* Coordinate descent on single levels: moving element i to the level nearest x[i] under the
     * LS scale of the others is kept when it raises sumlx^2/suml2. Matters at few levels (Q3_K). */
    double sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        double wi = w ? w[i] : (double)x[i] * x[i], l = (double)L[i] - nmax;
        sumlx += wi * x[i] * l;
        suml2 += wi * l * l;
    }
    for (int it = 0; it < 5 && suml2 > 0; it++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            double wi = w ? w[i] : (double)x[i] * x[i], l = (double)L[i] - nmax;
            double slx = sumlx - wi * x[i] * l, sl2 = suml2 - wi * l * l;
            if (slx == 0 || sl2 <= 0) continue;
            int nl = clampi(nint((float)(x[i] * sl2 / slx)), -nmax, nmax - 1);
            if (nl == (int)l) continue;
            slx += wi * x[i] * nl;
            sl2 += wi * (double)nl * nl;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)(nl + nmax);
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return suml2 > 0 ? (float)(sumlx / suml2) : best_scale;
}

/* Affine levels 0..nmax: x ~ scale*L - mn with mn >= 0 (the format stores a min that is
 * subtracted). Tries inverse scales (nmax + rmin + rdelta*k)/(max - min), k = 0..nstep, fitting
 * scale and min jointly by weighted least squares; mad selects absolute instead of squared error
 * for the comparison (ggml's Q2_K choice). Returns scale; *mn gets the min to subtract. */
static float qkx_search(int n, int nmax, const float *x, const float *w, uint8_t *L, uint8_t *Laux,
                        float *mn, float rmin, float rdelta, int nstep, int mad) {
    float min = x[0], max = x[0];
    double sum_w = w[0], sum_x = (double)w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += (double)w[i] * x[i];
    }
    if (min > 0) min = 0; /* the min is only ever subtracted */
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *mn = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1.0f / iscale;
    double best = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nint(iscale * (x[i] - min)), 0, nmax);
        L[i] = (uint8_t)l;
        float diff = scale * (float)l + min - x[i];
        best += w[i] * (mad ? fabsf(diff) : diff * diff);
    }
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
        double sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += (double)w[i] * l * l;
            sxl += (double)w[i] * l * x[i];
        }
        double D = sum_w * sl2 - sl * sl;
        if (D <= 0) continue;
        float this_scale = (float)((sum_w * sxl - sum_x * sl) / D);
        float this_min = (float)((sl2 * sum_x - sl * sxl) / D);
        if (this_min > 0) { /* min clipped at 0: refit the scale alone */
            this_min = 0;
            this_scale = (float)(sxl / sl2);
        }
        double err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)Laux[i] + this_min - x[i];
            err += w[i] * (mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *mn = -min;
    return scale;
}

/* Non-negative levels 0..nmax for non-negative x (the sub-block scales and mins of K-quants
 * under an importance matrix): trial inverse scales, then coordinate descent on the levels
 * while it raises sumlx^2/suml2 (i.e. lowers the weighted error). */
static float qp_search(int n, int nmax, const float *x, const float *w, uint8_t *L) {
    float max = 0;
    for (int i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    if (max < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max, best_is = iscale;
    double best = INFINITY;
    for (int t = -4; t <= 4; t++) {
        float is = ((float)nmax + 0.1f * (float)t) / max, sc = 1.0f / is;
        double err = 0;
        for (int i = 0; i < n; i++) {
            float d = x[i] - sc * (float)clampi(nint(is * x[i]), 0, nmax);
            err += w[i] * d * d;
        }
        if (err < best) best = err, best_is = is;
    }
    double sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nint(best_is * x[i]), 0, nmax);
        sumlx += (double)w[i] * x[i] * L[i];
        suml2 += (double)w[i] * L[i] * L[i];
    }
    for (int it = 0; it < 5; it++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            double slx = sumlx - (double)w[i] * x[i] * L[i], sl2 = suml2 - (double)w[i] * L[i] * L[i];
            if (slx <= 0 || sl2 <= 0) continue;
            int nl = clampi(nint((float)(x[i] * sl2 / slx)), 0, nmax);
            if (nl == L[i]) continue;
            slx += (double)w[i] * x[i] * nl;
            sl2 += (double)w[i] * nl * nl;
            if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return suml2 > 0 ? (float)(sumlx / suml2) : 0.0f;
}

/* Importance weights of ggml's imatrix quantizers: im[i] * sqrt(sigma2 + x[i]^2), so large
 * elements still count where the imatrix is flat, and columns the imatrix marks matter more. */
static void im_weights(int n, const float *x, const float *im, float sigma2, float *w) {
    for (int i = 0; i < n; i++) w[i] = im[i] * sqrtf(sigma2 + x[i] * x[i]);
}

static float mean_sq(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? (float)(s / (double)n) : 0.0f;
}

/* ---- quantization: 32-element formats ---------------------------------------------------- */

static void pack_nibbles16(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

/* Q8_0: d = amax/127 and plain rounding are already within half a level everywhere. */
static void q_q8_0(const float *x, nbl_block_q8_0 *b) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    b->d = F2H(d);
    for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)clampi(nint(x[j] * id), -127, 127);
}

static void q_q8_1(const float *x, nbl_block_q8_1 *b) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        b->qs[j] = (int8_t)clampi(nint(x[j] * id), -127, 127);
        sum += b->qs[j];
    }
    b->d = F2H(d);
    b->s = F2H(d * (float)sum);
}

/* Symmetric 4/5-bit: without weights the signed max-magnitude element maps to the extreme
 * level -nmax (d = max/-nmax, ggml's reference rounding); with weights, qx_search. */
static void q_sym(const float *x, int nmax, const float *w, uint8_t *L, uint16_t *dh) {
    if (w) {
        *dh = F2H(qx_search(32, nmax, x, w, L));
        return;
    }
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    float d = max / (float)-nmax, id = d != 0 ? 1.0f / d : 0.0f;
    *dh = F2H(d);
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)clampi((int)floorf(x[j] * id + (float)nmax + 0.5f), 0, 2 * nmax - 1);
}

/* Affine 4/5-bit: min/max without weights, the weighted scale+min search with them. */
static void q_aff(const float *x, int nmax, const float *w, uint8_t *L, uint16_t *dh, uint16_t *mh) {
    if (w) {
        uint8_t Laux[32];
        float mn, d = qkx_search(32, nmax, x, w, L, Laux, &mn, -0.9f, 0.05f, 36, 0);
        *dh = F2H(d);
        *mh = F2H(-mn);
        return;
    }
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) min = fminf(min, x[j]), max = fmaxf(max, x[j]);
    float d = (max - min) / (float)nmax, id = d > 0 ? 1.0f / d : 0.0f;
    *dh = F2H(d);
    *mh = F2H(min);
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)clampi((int)floorf((x[j] - min) * id + 0.5f), 0, nmax);
}

static void set_qh(const uint8_t *L, uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}

/* Nearest IQ4_NL codebook index (the table is sorted). */
static int iq4_index(float v) {
    int lo = 0, hi = 15;
    if (v <= nbl_iq4nl_values[0]) return 0;
    if (v >= nbl_iq4nl_values[15]) return 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < nbl_iq4nl_values[mid]) hi = mid; else lo = mid;
    }
    return v - nbl_iq4nl_values[lo] < nbl_iq4nl_values[hi] - v ? lo : hi;
}

/* IQ4_NL: the table is asymmetric (-127..113), so the max-magnitude element is tried at both
 * ends over a range of inverse scales; each candidate's weighted LS scale is scored. */
static void q_iq4_nl(const float *x, const float *w, nbl_block_iq4_nl *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (amax < GROUP_EPS) {
        memset(b, 0, sizeof *b);
        return;
    }
    float ww[32];
    for (int j = 0; j < 32; j++) ww[j] = w ? w[j] : x[j] * x[j];
    double best = -1;
    float best_d = max / (float)nbl_iq4nl_values[0];
    for (int end = 0; end < 2; end++) {
        float v0 = end ? nbl_iq4nl_values[15] : nbl_iq4nl_values[0];
        for (int t = -7; t <= 7; t++) {
            float id = (v0 + (end ? -t : t)) / max;
            double sqx = 0, sq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = nbl_iq4nl_values[iq4_index(id * x[j])];
                sqx += (double)ww[j] * q * x[j];
                sq2 += (double)ww[j] * q * q;
            }
            if (sq2 > 0 && sqx * sqx > best * sq2) {
                best = sqx * sqx / sq2;
                best_d = (float)(sqx / sq2);
            }
        }
    }
    b->d = F2H(best_d);
    float d = nbl_fp16_to_f32(b->d), id = d != 0 ? 1.0f / d : 0.0f;
    uint8_t L[32];
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4_index(id * x[j]);
    pack_nibbles16(L, b->qs);
}

/* ---- quantization: K-quants (256-element super-blocks) ---------------------------------- */

static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(p[0] | (p[32] << 2) | (p[64] << 4) | (p[96] << 6));
        }
}

static void q_q2_K(const float *x, const float *im, float sigma2, nbl_block_q2_K *b) {
    uint8_t L[256], Laux[16], Ls[16], Lm[16];
    float w[16], scales[16], mins[16], sw[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        const float *xs = x + 16 * j;
        if (im) {
            im_weights(16, xs, im + 16 * j, sigma2, w);
            sw[j] = 0;
            for (int l = 0; l < 16; l++) sw[j] += w[l];
            scales[j] = qkx_search(16, 3, xs, w, L + 16 * j, Laux, &mins[j], -0.9f, 0.05f, 36, 0);
        } else {
            for (int l = 0; l < 16; l++) w[l] = fabsf(xs[l]);
            scales[j] = qkx_search(16, 3, xs, w, L + 16 * j, Laux, &mins[j], -0.5f, 0.1f, 15, 1);
        }
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float d, dm;
    if (im) {
        d = qp_search(16, 15, scales, sw, Ls);
        dm = qp_search(16, 15, mins, sw, Lm);
    } else {
        float is = max_scale > 0 ? 15.0f / max_scale : 0.0f, im_ = max_min > 0 ? 15.0f / max_min : 0.0f;
        for (int j = 0; j < 16; j++) {
            Ls[j] = (uint8_t)clampi(nint(is * scales[j]), 0, 15);
            Lm[j] = (uint8_t)clampi(nint(im_ * mins[j]), 0, 15);
        }
        d = max_scale / 15.0f;
        dm = max_min / 15.0f;
    }
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    b->d = F2H(d);
    b->dmin = F2H(dm);
    d = H2F(b->d);
    dm = H2F(b->dmin);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(b->scales[j] & 0xF), ml = dm * (float)(b->scales[j] >> 4);
        if (dl == 0) continue; /* keep the search's levels; they dequantize to -ml anyway */
        for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)clampi(nint((x[16 * j + l] + ml) / dl), 0, 3);
    }
    pack_2bit(L, b->qs);
}

/* Q3_K sub-block search as ggml does it: the max-magnitude element at level -nmax, the
 * x^2-weighted LS scale, then coordinate descent. ggml takes a descent step only while the
 * partial sumlx > 0, which skips most blocks whose max is positive; taking it for either sign
 * gives 0.3% lower RMSE on the fixtures. Trial rescaling (qx_search) scored 1.3% worse here. */
static float q3_search(int n, int nmax, const float *x, uint8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max;
    double sumlx = 0, suml2 = 0;
    int Li[16];
    for (int i = 0; i < n; i++) {
        Li[i] = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
        double w = (double)x[i] * x[i];
        sumlx += w * x[i] * Li[i];
        suml2 += w * Li[i] * Li[i];
    }
    for (int it = 0; it < 5; it++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            double w = (double)x[i] * x[i];
            double slx = sumlx - w * x[i] * Li[i];
            if (slx != 0) {
                double sl2 = suml2 - w * Li[i] * Li[i];
                int nl = clampi(nint((float)(x[i] * sl2 / slx)), -nmax, nmax - 1);
                if (nl != Li[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        Li[i] = nl; sumlx = slx; suml2 = sl2; changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(Li[i] + nmax);
    return (float)(sumlx / suml2);
}

static void q_q3_K(const float *x, const float *im, float sigma2, nbl_block_q3_K *b) {
    uint8_t L[256], Ls[16];
    float w[16], scales[16], sw[16], amax = 0, max_scale = 0;
    for (int j = 0; j < 16; j++) {
        const float *xs = x + 16 * j;
        if (im) {
            im_weights(16, xs, im + 16 * j, sigma2, w);
            sw[j] = 0;
            for (int l = 0; l < 16; l++) sw[j] += w[l];
        }
        scales[j] = im ? qx_search(16, 4, xs, w, L + 16 * j) : q3_search(16, 4, xs, L + 16 * j);
        if (fabsf(scales[j]) > amax) amax = fabsf(scales[j]), max_scale = scales[j];
    }
    memset(b->scales, 0, 12);
    float d = 0;
    if (amax > 0) {
        if (im) {
            d = qx_search(16, 32, scales, sw, Ls);
        } else {
            float is = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) Ls[j] = (uint8_t)(clampi(nint(is * scales[j]), -32, 31) + 32);
            d = 1.0f / is;
        }
        for (int j = 0; j < 16; j++) {
            b->scales[j % 8] |= (uint8_t)((Ls[j] & 0xF) << (4 * (j / 8)));
            b->scales[8 + j % 4] |= (uint8_t)((Ls[j] >> 4) << (2 * (j / 4)));
        }
    }
    b->d = F2H(d);
    d = H2F(b->d);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)q3k_scale(b->scales, j);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)(dl != 0 ? clampi(nint(x[16 * j + l] / dl), -4, 3) + 4 : 4);
    }
    memset(b->hmask, 0, 32);
    for (int i = 0; i < 256; i++)
        if (L[i] > 3) {
            b->hmask[i % 32] |= (uint8_t)(1u << (i / 32));
            L[i] -= 4;
        }
    pack_2bit(L, b->qs);
}

/* Q4_K and Q5_K share the 8 x 32 sub-block structure and the 6-bit scale packing. */
static void q_k45(const float *x, const float *im, float sigma2, int nmax, uint16_t *dh, uint16_t *dmh,
                  uint8_t *sc12, uint8_t *L) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float w[32], scales[8], mins[8], sw[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        if (im) {
            im_weights(32, xs, im + 32 * j, sigma2, w);
            sw[j] = 0;
            for (int l = 0; l < 32; l++) sw[j] += w[l];
            scales[j] = qkx_search(32, nmax, xs, w, L + 32 * j, Laux, &mins[j], -0.9f, 0.05f, 36, 0);
        } else {
            float s2 = 0;
            for (int l = 0; l < 32; l++) s2 += xs[l] * xs[l];
            float av = sqrtf(s2 / 32);
            for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
            scales[j] = nmax == 15 ? qkx_search(32, 15, xs, w, L + 32 * j, Laux, &mins[j], -1.0f, 0.1f, 20, 0)
                                   : qkx_search(32, 31, xs, w, L + 32 * j, Laux, &mins[j], -0.5f, 0.1f, 15, 0);
        }
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float d, dm;
    if (im) {
        d = qp_search(8, 63, scales, sw, Ls);
        dm = qp_search(8, 63, mins, sw, Lm);
    } else {
        float is = max_scale > 0 ? 63.0f / max_scale : 0.0f, imn = max_min > 0 ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < 8; j++) {
            Ls[j] = (uint8_t)clampi(nint(is * scales[j]), 0, 63);
            Lm[j] = (uint8_t)clampi(nint(imn * mins[j]), 0, 63);
        }
        d = max_scale / 63.0f;
        dm = max_min / 63.0f;
    }
    /* 6-bit packing: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scale) and 4..7 (min);
     * 4..7 split into a nibble of bytes 8..11 plus 2 bits on top of bytes 0..7. */
    memset(sc12, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc12[j] |= Ls[j];
            sc12[j + 4] |= Lm[j];
        } else {
            sc12[j + 4] = (uint8_t)((Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4));
            sc12[j - 4] |= (uint8_t)((Ls[j] >> 4) << 6);
            sc12[j] |= (uint8_t)((Lm[j] >> 4) << 6);
        }
    }
    *dh = F2H(d);
    *dmh = F2H(dm);
    d = H2F(*dh);
    dm = H2F(*dmh);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        nbl_get_scale_min_k4(j, sc12, &s, &m);
        float dl = d * (float)s, ml = dm * (float)m;
        if (dl == 0) continue;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(nint((x[32 * j + l] + ml) / dl), 0, nmax);
    }
}

static void q_q4_K(const float *x, const float *im, float sigma2, nbl_block_q4_K *b) {
    uint8_t L[256];
    q_k45(x, im, sigma2, 15, &b->d, &b->dmin, b->scales, L);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

static void q_q5_K(const float *x, const float *im, float sigma2, nbl_block_q5_K *b) {
    uint8_t L[256];
    q_k45(x, im, sigma2, 31, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            b->qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            b->qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
}

static void q_q6_K(const float *x, const float *im, float sigma2, nbl_block_q6_K *b) {
    uint8_t L[256];
    float w[16], scales[16], amax = 0, max_scale = 0;
    for (int j = 0; j < 16; j++) {
        if (im) im_weights(16, x + 16 * j, im + 16 * j, sigma2, w);
        scales[j] = qx_search(16, 32, x + 16 * j, im ? w : NULL, L + 16 * j);
        if (fabsf(scales[j]) > amax) amax = fabsf(scales[j]), max_scale = scales[j];
    }
    if (amax < GROUP_EPS) {
        memset(b, 0, sizeof *b);
        return;
    }
    /* the largest scale maps to -128 so every other one fits int8 after clamping at 127 */
    float is = -128.0f / max_scale;
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)clampi(nint(is * scales[j]), -128, 127);
    b->d = F2H(1.0f / is);
    float d = H2F(b->d);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)b->scales[j];
        if (dl == 0) continue;
        for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)(clampi(nint(x[16 * j + l] / dl), -32, 31) + 32);
    }
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const uint8_t *p = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((p[l] & 0xF) | ((p[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((p[l + 32] & 0xF) | ((p[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((p[l] >> 4) | ((p[l + 32] >> 4) << 2) | ((p[l + 64] >> 4) << 4) | ((p[l + 96] >> 4) << 6));
        }
    }
}

static void q_q8_K(const float *x, nbl_block_q8_K *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 256; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    memset(b, 0, sizeof *b);
    if (amax == 0) return;
    float is = -127.0f / max;
    for (int j = 0; j < 256; j++) {
        b->qs[j] = (int8_t)clampi(nint(is * x[j]), -127, 127);
        b->bsums[j / 16] = (int16_t)(b->bsums[j / 16] + b->qs[j]);
    }
    b->d = 1.0f / is;
}

int nbl_type_can_quantize(uint32_t type) {
    switch (type) {
    case NBL_TYPE_F32: case NBL_TYPE_F16: case NBL_TYPE_BF16: case NBL_TYPE_Q4_0:
    case NBL_TYPE_Q4_1: case NBL_TYPE_Q5_0: case NBL_TYPE_Q5_1: case NBL_TYPE_Q8_0:
    case NBL_TYPE_Q8_1: case NBL_TYPE_IQ4_NL: case NBL_TYPE_Q2_K: case NBL_TYPE_Q3_K:
    case NBL_TYPE_Q4_K: case NBL_TYPE_Q5_K: case NBL_TYPE_Q6_K: case NBL_TYPE_Q8_K: return 1;
    default: return 0;
    }
}

void nbl_quant_row(uint32_t type, const float *src, void *dst, int64_t n, const float *imatrix) {
    NBL_ASSERT(nbl_type_can_quantize(type));
    const int64_t bs = TYPES[type].blck;
    NBL_ASSERT(n >= 0 && n % bs == 0);
    uint8_t *out = dst;
    /* ggml's imatrix weighting uses the row's mean square for the 32-element formats and the
     * super-block's (doubled) for K-quants; computed once here. */
    const float row_sigma2 = imatrix ? mean_sq(src, n) : 0.0f;
    for (int64_t i = 0; i < n / bs; i++) {
        const float *x = src + i * bs;
        const float *im = imatrix ? imatrix + i * bs : NULL;
        float w[32];
        if (im && bs == 32) im_weights(32, x, im, row_sigma2, w);
        const float *wp = im && bs == 32 ? w : NULL;
        float ks2 = im && bs == 256 ? 2.0f * mean_sq(x, 256) : 0.0f;
        uint8_t L[32];
        switch (type) {
        case NBL_TYPE_F32: memcpy(out + 4 * i, x, 4); break;
        case NBL_TYPE_F16: {
            uint16_t h = nbl_f32_to_fp16(*x);
            memcpy(out + 2 * i, &h, 2);
            break;
        }
        case NBL_TYPE_BF16: {
            uint16_t h = nbl_f32_to_bf16(*x);
            memcpy(out + 2 * i, &h, 2);
            break;
        }
        case NBL_TYPE_Q8_0: q_q8_0(x, (nbl_block_q8_0 *)out + i); break;
        case NBL_TYPE_Q8_1: q_q8_1(x, (nbl_block_q8_1 *)out + i); break;
        case NBL_TYPE_Q4_0: {
            nbl_block_q4_0 *b = (nbl_block_q4_0 *)out + i;
            q_sym(x, 8, wp, L, &b->d);
            pack_nibbles16(L, b->qs);
            break;
        }
        case NBL_TYPE_Q5_0: {
            nbl_block_q5_0 *b = (nbl_block_q5_0 *)out + i;
            q_sym(x, 16, wp, L, &b->d);
            set_qh(L, b->qh, b->qs);
            break;
        }
        case NBL_TYPE_Q4_1: {
            nbl_block_q4_1 *b = (nbl_block_q4_1 *)out + i;
            q_aff(x, 15, wp, L, &b->d, &b->m);
            pack_nibbles16(L, b->qs);
            break;
        }
        case NBL_TYPE_Q5_1: {
            nbl_block_q5_1 *b = (nbl_block_q5_1 *)out + i;
            q_aff(x, 31, wp, L, &b->d, &b->m);
            set_qh(L, b->qh, b->qs);
            break;
        }
        case NBL_TYPE_IQ4_NL: q_iq4_nl(x, wp, (nbl_block_iq4_nl *)out + i); break;
        case NBL_TYPE_Q2_K: q_q2_K(x, im, ks2, (nbl_block_q2_K *)out + i); break;
        case NBL_TYPE_Q3_K: q_q3_K(x, im, ks2, (nbl_block_q3_K *)out + i); break;
        case NBL_TYPE_Q4_K: q_q4_K(x, im, ks2, (nbl_block_q4_K *)out + i); break;
        case NBL_TYPE_Q5_K: q_q5_K(x, im, ks2, (nbl_block_q5_K *)out + i); break;
        case NBL_TYPE_Q6_K: q_q6_K(x, im, ks2, (nbl_block_q6_K *)out + i); break;
        case NBL_TYPE_Q8_K: q_q8_K(x, (nbl_block_q8_K *)out + i); break;
        default: NBL_ASSERT(!"quant: unsupported type");
        }
    }
}
