/* quant.c — tensor types: block layouts (identical to ggml's, so GGUF files load as written),
 * fp16/bf16 conversion, and the scalar reference dequantize / dot routines that every SIMD
 * kernel is tested against. Quantization is in quantizer.c. */
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
