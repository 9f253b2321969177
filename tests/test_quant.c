/* test_quant.c — block formats against outside references: exhaustive fp16/bf16 checks against
 * the IEEE definition, hand-built blocks written from the ggml format description, llama.cpp's
 * quantized fixtures against the same tensors in F16, and our quantizers' error against both
 * stated bounds and llama.cpp's own quantization of the fixtures (which ours must beat). */
#include "nbl_impl.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rnd_unit(void) { return ((double)(rnd_u64() >> 11) + 0.5) / 9007199254740992.0; }
static float rnd_gauss(void) { return (float)(sqrt(-2.0 * log(rnd_unit())) * cos(6.283185307179586 * rnd_unit())); }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* sqrt(sum (a-b)^2 / sum b^2), the error measure used throughout. */
static double nrmse(const float *a, const float *b, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        e += d * d;
        s += (double)b[i] * b[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* The IEEE binary16 value of bit pattern h, from the definition (not from the code under test). */
static double fp16_def(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* ---- fp16 / bf16 -------------------------------------------------------------------------- */

static void test_fp16(void) {
    int bad_val = 0, bad_rt = 0, bad_nan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nbl_fp16_to_f32((uint16_t)h);
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) {
            if (m ? !isnan(f) : !(isinf(f) && (f < 0) == (h >> 15))) bad_val++;
            if (m) {
                uint16_t r = nbl_f32_to_fp16(f);
                if (((r >> 10) & 31) != 31 || !(r & 1023)) bad_nan++;
            } else if (nbl_f32_to_fp16(f) != h) bad_rt++;
            continue;
        }
        if ((double)f != fp16_def((uint16_t)h) || !!signbit(f) != (int)(h >> 15)) bad_val++;
        if (nbl_f32_to_fp16(f) != h) bad_rt++;
    }
    CHECK(bad_val == 0, "fp16->f32 differs from the IEEE definition for %d patterns", bad_val);
    CHECK(bad_rt == 0, "fp16->f32->fp16 changed %d patterns", bad_rt);
    CHECK(bad_nan == 0, "%d NaN patterns did not stay NaN", bad_nan);

    CHECK(nbl_f32_to_fp16(1.0f) == 0x3C00, "1.0 -> %04x", nbl_f32_to_fp16(1.0f));
    CHECK(nbl_f32_to_fp16(65504.0f) == 0x7BFF, "65504 -> %04x", nbl_f32_to_fp16(65504.0f));
    CHECK(nbl_f32_to_fp16(ldexpf(1, -24)) == 0x0001, "2^-24 -> %04x", nbl_f32_to_fp16(ldexpf(1, -24)));
    CHECK(nbl_fp16_to_f32(0x0001) == ldexpf(1, -24), "0x0001 -> %g", nbl_fp16_to_f32(0x0001));
    CHECK(nbl_f32_to_fp16(-0.0f) == 0x8000, "-0.0 -> %04x", nbl_f32_to_fp16(-0.0f));
    CHECK(nbl_f32_to_fp16(-2.0f) == 0xC000, "-2 -> %04x", nbl_f32_to_fp16(-2.0f));
    CHECK(nbl_f32_to_fp16(INFINITY) == 0x7C00 && nbl_f32_to_fp16(-INFINITY) == 0xFC00, "inf");
    uint16_t qn = nbl_f32_to_fp16(NAN);
    CHECK((qn & 0x7C00) == 0x7C00 && (qn & 0x3FF), "NaN -> %04x", qn);
    /* round to nearest, ties to even: normal, overflow edge, subnormal */
    CHECK(nbl_f32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3C00, "1+2^-11 tie should round to even 1.0");
    CHECK(nbl_f32_to_fp16(1.0f + 3 * ldexpf(1, -11)) == 0x3C02, "1+3*2^-11 tie should round up to even");
    CHECK(nbl_f32_to_fp16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3C01, "just above a tie rounds up");
    CHECK(nbl_f32_to_fp16(65519.0f) == 0x7BFF, "65519 -> %04x", nbl_f32_to_fp16(65519.0f));
    CHECK(nbl_f32_to_fp16(65520.0f) == 0x7C00, "65520 (tie) -> %04x, want inf", nbl_f32_to_fp16(65520.0f));
    CHECK(nbl_f32_to_fp16(ldexpf(1, -25)) == 0x0000, "2^-25 (tie) -> %04x, want 0", nbl_f32_to_fp16(ldexpf(1, -25)));
    CHECK(nbl_f32_to_fp16(3 * ldexpf(1, -25)) == 0x0002, "3*2^-25 (tie) -> %04x, want 2", nbl_f32_to_fp16(3 * ldexpf(1, -25)));
    CHECK(nbl_f32_to_fp16(ldexpf(1, -25) * 1.01f) == 0x0001, "just above 2^-25 -> 1");
    CHECK(nbl_f32_to_fp16(ldexpf(1023, -24) + ldexpf(1, -25)) == 0x0400, "subnormal max+half rounds to min normal");

    /* Brute force: random floats over the fp16 range go to the nearest fp16 (ties to even
     * mantissa), found by bisection in the ordered positive patterns. */
    int bad_near = 0;
    for (int k = 0; k < 200000; k++) {
        float f = bitsf((uint32_t)(rnd_u64() % (0x477FE000u - 0x32000000u)) + 0x32000000u);
        if (k & 1) f = -f;
        double a = fabs((double)f);
        uint32_t lo = 0, hi = 0x7BFF; /* largest pattern with value <= a */
        while (lo < hi) {
            uint32_t mid = (lo + hi + 1) / 2;
            if (fp16_def((uint16_t)mid) <= a) lo = mid; else hi = mid - 1;
        }
        double d0 = a - fp16_def((uint16_t)lo), d1 = fp16_def((uint16_t)(lo + 1)) - a;
        uint32_t want = d0 < d1 ? lo : d1 < d0 ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
        if (f < 0) want |= 0x8000;
        if (nbl_f32_to_fp16(f) != want) bad_near++;
    }
    CHECK(bad_near == 0, "%d random floats not rounded to the nearest fp16", bad_near);
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nbl_bf16_to_f32((uint16_t)h);
        if (fbits(f) != h << 16) bad++;
        uint16_t r = nbl_f32_to_bf16(f);
        if (isnan(f) ? !((r & 0x7F80) == 0x7F80 && (r & 0x7F)) : r != h) bad++;
    }
    CHECK(bad == 0, "bf16 round trip failed for %d patterns", bad);
    CHECK(nbl_f32_to_bf16(1.0f) == 0x3F80, "bf16(1) = %04x", nbl_f32_to_bf16(1.0f));
    CHECK(nbl_f32_to_bf16(bitsf(0x3F808000)) == 0x3F80, "tie rounds down to even");
    CHECK(nbl_f32_to_bf16(bitsf(0x3F818000)) == 0x3F82, "tie rounds up to even");
    CHECK(nbl_f32_to_bf16(bitsf(0x3F808001)) == 0x3F81, "above a tie rounds up");
    CHECK(nbl_f32_to_bf16(bitsf(0x3F807FFF)) == 0x3F80, "below a tie rounds down");
    CHECK(nbl_f32_to_bf16(bitsf(0x7F7FFFFF)) == 0x7F80, "FLT_MAX rounds to inf");
    uint16_t n1 = nbl_f32_to_bf16(bitsf(0x7F800001)); /* signalling NaN whose payload is in the low bits */
    CHECK((n1 & 0x7F80) == 0x7F80 && (n1 & 0x40), "sNaN -> %04x, want a quiet NaN", n1);
    CHECK(nbl_f32_to_bf16(-INFINITY) == 0xFF80, "-inf");
}

/* ---- hand-built blocks -------------------------------------------------------------------
 * Each block's bytes are written here from the ggml format description (offsets, nibble and
 * bit positions), with simple levels and power-of-two scales so the expected values are exact. */

static int check_block(uint32_t type, const uint8_t *blk, const float *want, int n, const char *what) {
    float got[256];
    nbl_dequant_row(type, blk, got, n);
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (bad < 3) fprintf(stderr, "  %s[%d]: got %g want %g\n", what, i, got[i], want[i]);
            bad++;
        }
    CHECK(bad == 0, "%s: %d of %d elements wrong", what, bad, n);
    /* nbl_vec_dot_ref against the expected values times a ramp */
    float x[256];
    double ref = 0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)(i % 7) - 3.0f;
        ref += (double)want[i] * x[i];
    }
    float dot = nbl_vec_dot_ref(type, blk, x, n);
    CHECK(fabs(dot - ref) <= 1e-6 * fabs(ref) + 1e-6, "%s: vec_dot_ref %g want %g", what, dot, ref);
    return bad;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static void test_hand_blocks(void) {
    uint8_t b[292];
    float want[256];
    const uint16_t H_HALF = 0x3800, H_TWO = 0x4000, H_QUARTER = 0x3400, H_ONE = 0x3C00, H_M3 = 0xC200; /* 0.5 2 0.25 1 -3 */

    /* Q4_0: d (fp16) then 16 bytes; element j<16 in the low nibble of byte j, j+16 in the high */
    memset(b, 0, sizeof b);
    put16(b, H_HALF);
    for (int i = 0; i < 32; i++) {
        int q = (i * 7 + 3) % 16;
        b[2 + i % 16] |= (uint8_t)(i < 16 ? q : q << 4);
        want[i] = 0.5f * (float)(q - 8);
    }
    check_block(NBL_TYPE_Q4_0, b, want, 32, "q4_0");

    /* Q4_1: d, m, 16 bytes; x = d*q + m */
    memset(b, 0, sizeof b);
    put16(b, H_TWO);
    put16(b + 2, H_M3);
    for (int i = 0; i < 32; i++) {
        int q = (i * 5 + 1) % 16;
        b[4 + i % 16] |= (uint8_t)(i < 16 ? q : q << 4);
        want[i] = 2.0f * (float)q - 3.0f;
    }
    check_block(NBL_TYPE_Q4_1, b, want, 32, "q4_1");

    /* Q5_0: d, 32-bit little-endian qh (bit i = 5th bit of element i), 16 bytes of nibbles */
    memset(b, 0, sizeof b);
    put16(b, H_QUARTER);
    for (int i = 0; i < 32; i++) {
        int q = (i * 11 + 5) % 32;
        b[2 + i / 8] |= (uint8_t)((q >> 4) << (i % 8));
        b[6 + i % 16] |= (uint8_t)(i < 16 ? (q & 15) : (q & 15) << 4);
        want[i] = 0.25f * (float)(q - 16);
    }
    check_block(NBL_TYPE_Q5_0, b, want, 32, "q5_0");

    /* Q5_1: d, m, qh, nibbles */
    memset(b, 0, sizeof b);
    put16(b, H_HALF);
    put16(b + 2, H_ONE);
    for (int i = 0; i < 32; i++) {
        int q = (i * 13 + 7) % 32;
        b[4 + i / 8] |= (uint8_t)((q >> 4) << (i % 8));
        b[8 + i % 16] |= (uint8_t)(i < 16 ? (q & 15) : (q & 15) << 4);
        want[i] = 0.5f * (float)q + 1.0f;
    }
    check_block(NBL_TYPE_Q5_1, b, want, 32, "q5_1");

    /* Q8_0: d, 32 int8 */
    memset(b, 0, sizeof b);
    put16(b, H_QUARTER);
    for (int i = 0; i < 32; i++) {
        int q = i * 8 - 127;
        b[2 + i] = (uint8_t)(int8_t)q;
        want[i] = 0.25f * (float)q;
    }
    check_block(NBL_TYPE_Q8_0, b, want, 32, "q8_0");

    /* Q8_1: d, s, 32 int8 */
    memset(b, 0, sizeof b);
    put16(b, H_TWO);
    put16(b + 2, 0x7BFF);
    for (int i = 0; i < 32; i++) {
        int q = 100 - i * 6;
        b[4 + i] = (uint8_t)(int8_t)q;
        want[i] = 2.0f * (float)q;
    }
    check_block(NBL_TYPE_Q8_1, b, want, 32, "q8_1");

    /* IQ4_NL: d, nibbles index the published 16-value table */
    static const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    memset(b, 0, sizeof b);
    put16(b, H_HALF);
    for (int i = 0; i < 32; i++) {
        int q = (i * 3 + 2) % 16;
        b[2 + i % 16] |= (uint8_t)(i < 16 ? q : q << 4);
        want[i] = 0.5f * (float)kv[q];
    }
    check_block(NBL_TYPE_IQ4_NL, b, want, 32, "iq4_nl");

    /* Q2_K: scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64], d, dmin.
     * Element i sits in qs[32*(i/128) + i%32] at bits 2*((i/32)%4). */
    memset(b, 0, sizeof b);
    put16(b + 80, H_HALF);
    put16(b + 82, H_QUARTER);
    for (int s = 0; s < 16; s++) b[s] = (uint8_t)(((s * 7 + 1) % 16) | (((s * 5 + 3) % 16) << 4));
    for (int i = 0; i < 256; i++) {
        int q = (i * 3 + i / 64) % 4, s = i / 16;
        b[16 + 32 * (i / 128) + i % 32] |= (uint8_t)(q << (2 * ((i / 32) % 4)));
        want[i] = 0.5f * (float)((s * 7 + 1) % 16) * (float)q - 0.25f * (float)((s * 5 + 3) % 16);
    }
    check_block(NBL_TYPE_Q2_K, b, want, 256, "q2_k");

    /* Q3_K: hmask[32], qs[64], scales[12], d. Scale j (6 bits, stored +32): low nibble in
     * byte j (j<8) or the high nibble of byte j-8, top 2 bits in byte 8+j%4 at 2*(j/4).
     * Low 2 bits as Q2_K; hmask[i%32] bit i/32 set means +0, clear means -4. */
    memset(b, 0, sizeof b);
    put16(b + 108, H_HALF);
    int sc3[16];
    for (int j = 0; j < 16; j++) {
        sc3[j] = j * 4 - 31; /* -31..29 */
        int u = sc3[j] + 32;
        b[96 + (j % 8)] |= (uint8_t)((u & 15) << (j < 8 ? 0 : 4));
        b[96 + 8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
    for (int i = 0; i < 256; i++) {
        int v = (i * 5 + i / 32) % 8 - 4; /* -4..3 */
        int hbit = v >= 0, q = hbit ? v : v + 4;
        b[32 + 32 * (i / 128) + i % 32] |= (uint8_t)(q << (2 * ((i / 32) % 4)));
        if (hbit) b[i % 32] |= (uint8_t)(1 << (i / 32));
        want[i] = 0.5f * (float)sc3[i / 16] * (float)v;
    }
    check_block(NBL_TYPE_Q3_K, b, want, 256, "q3_k");

    /* Q4_K / Q5_K: d, dmin, 12 bytes of 6-bit scale+min for 8 sub-blocks of 32. Sub-block
     * j<4: low 6 bits of byte j (scale) and j+4 (min); j>=4: low/high nibble of byte j+4
     * for scale/min, top 2 bits in bits 6-7 of byte j-4 (scale) and byte j (min). */
    int sc4[8], mn4[8];
    uint8_t scb[12];
    memset(scb, 0, sizeof scb);
    for (int j = 0; j < 8; j++) {
        sc4[j] = (j * 23 + 5) % 64;
        mn4[j] = (j * 37 + 60) % 64;
        if (j < 4) {
            scb[j] |= (uint8_t)sc4[j];
            scb[j + 4] |= (uint8_t)mn4[j];
        } else {
            scb[j + 4] = (uint8_t)((sc4[j] & 15) | ((mn4[j] & 15) << 4));
            scb[j - 4] |= (uint8_t)((sc4[j] >> 4) << 6);
            scb[j] |= (uint8_t)((mn4[j] >> 4) << 6);
        }
    }
    /* Q4_K: qs[128]; element i: byte 32*(i/64) + i%32, low nibble if i%64 < 32 */
    memset(b, 0, sizeof b);
    put16(b, H_QUARTER);
    put16(b + 2, H_HALF);
    memcpy(b + 4, scb, 12);
    for (int i = 0; i < 256; i++) {
        int q = (i * 7 + i / 32) % 16;
        b[16 + 32 * (i / 64) + i % 32] |= (uint8_t)(i % 64 < 32 ? q : q << 4);
        want[i] = 0.25f * (float)sc4[i / 32] * (float)q - 0.5f * (float)mn4[i / 32];
    }
    check_block(NBL_TYPE_Q4_K, b, want, 256, "q4_k");

    /* Q5_K: qh[32] after the scales (element i: bit i/32 of qh[i%32]), then qs[128] as Q4_K */
    memset(b, 0, sizeof b);
    put16(b, H_QUARTER);
    put16(b + 2, H_HALF);
    memcpy(b + 4, scb, 12);
    for (int i = 0; i < 256; i++) {
        int q = (i * 13 + i / 16) % 32;
        b[16 + i % 32] |= (uint8_t)((q >> 4) << (i / 32));
        b[48 + 32 * (i / 64) + i % 32] |= (uint8_t)(i % 64 < 32 ? (q & 15) : (q & 15) << 4);
        want[i] = 0.25f * (float)sc4[i / 32] * (float)q - 0.5f * (float)mn4[i / 32];
    }
    check_block(NBL_TYPE_Q5_K, b, want, 256, "q5_k");

    /* Q6_K: ql[128], qh[64], int8 scales[16], d. Element i = 128h + 32g + l: low 4 bits in
     * ql[64h + l + 32*(g%2)] (low nibble for g<2, high for g>=2), top 2 bits in qh[32h + l]
     * at 2g; value d * scales[i/16] * (q - 32). */
    memset(b, 0, sizeof b);
    put16(b + 208, H_QUARTER);
    for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)(j * 17 - 128);
    for (int i = 0; i < 256; i++) {
        int q = (i * 29 + i / 64) % 64, h = i / 128, g = (i % 128) / 32, l = i % 32;
        b[64 * h + l + 32 * (g % 2)] |= (uint8_t)(g < 2 ? (q & 15) : (q & 15) << 4);
        b[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
        want[i] = 0.25f * (float)(int8_t)(i / 16 * 17 - 128) * (float)(q - 32);
    }
    check_block(NBL_TYPE_Q6_K, b, want, 256, "q6_k");

    /* Q8_K: float d, 256 int8, 16 int16 block sums (not used by dequantization) */
    memset(b, 0, sizeof b);
    float d8 = 0.125f;
    memcpy(b, &d8, 4);
    for (int i = 0; i < 256; i++) {
        int q = (i * 37) % 255 - 127;
        b[4 + i] = (uint8_t)(int8_t)q;
        want[i] = 0.125f * (float)q;
    }
    check_block(NBL_TYPE_Q8_K, b, want, 256, "q8_k");

    /* float types: F32 as is, F16 / BF16 bit patterns */
    uint16_t hv[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF}, bv[4] = {0x3F80, 0xC040, 0x0000, 0x4120};
    float wf16[4] = {1.0f, -2.0f, ldexpf(1, -24), 65504.0f}, wbf[4] = {1.0f, -3.0f, 0.0f, 10.0f};
    check_block(NBL_TYPE_F16, (const uint8_t *)hv, wf16, 4, "f16");
    check_block(NBL_TYPE_BF16, (const uint8_t *)bv, wbf, 4, "bf16");
    check_block(NBL_TYPE_F32, (const uint8_t *)wf16, wf16, 4, "f32");
}

/* ---- traits ------------------------------------------------------------------------------- */

static void test_traits(void) {
    /* block sizes and byte sizes as published in ggml.h / the GGUF spec */
    static const struct { uint32_t t; const char *name; int blck, size; } T[] = {
        {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},   {3, "q4_1", 32, 20},
        {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34},   {9, "q8_1", 32, 36},
        {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
        {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292}, {20, "iq4_nl", 32, 18}, {30, "bf16", 1, 2},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        const nbl_type_traits *tr = nbl_type_traits_get(T[i].t);
        CHECK(tr && tr->blck == T[i].blck && tr->type_size == T[i].size, "traits of %s", T[i].name);
        CHECK(nbl_type_from_name(T[i].name) == (int32_t)T[i].t, "type_from_name(%s)", T[i].name);
        CHECK(nbl_type_can_quantize(T[i].t), "%s should be quantizable", T[i].name);
    }
    CHECK(nbl_type_traits_get(4) == NULL && nbl_type_traits_get(5) == NULL, "removed ids 4, 5");
    CHECK(nbl_type_traits_get(1000) == NULL, "id 1000");
    CHECK(nbl_type_from_name("q9_9") == -1, "unknown name");
    CHECK(!nbl_type_can_quantize(16) && !nbl_type_can_quantize(23), "iq2_xxs / iq4_xs not quantizable");
    CHECK(nbl_row_bytes(NBL_TYPE_Q4_K, 512) == 288, "row bytes");
}

/* ---- quantize -> dequantize error ---------------------------------------------------------- */

/* Bounds on normalised RMSE over every test distribution. For a block whose scale comes from
 * its max, rounding error is uniform over one step, so nRMSE ~ (amax/rms) / (levels * sqrt(12)):
 * with amax/rms ~ 2.2-3 for 32 Gaussian values that is ~0.005 for Q8_0 (127 levels per side),
 * ~0.08 for Q4_0 (8), ~0.04 for Q5_0 (16). llama.cpp's own quantization of the Gaussian fixtures
 * measures 0.0054 (Q8_0), 0.087 (Q4_0), 0.079 (Q4_1), 0.043 (Q5_0), 0.038 (Q5_1), 0.076
 * (IQ4_NL), 0.30 (Q2_K), 0.15 (Q3_K), 0.072 (Q4_K), 0.036 (Q5_K), 0.018 (Q6_K). The worst case
 * here is the outlier row (1% of values at 10 sigma): a block holding an outlier gets a step ~4x
 * coarser, so the bounds sit ~1.5x above the Gaussian figures (Q8_K, one scale per 256 values,
 * nearly always holds an outlier: 4x). F16 keeps 11 significant bits, BF16 8: relative
 * half-steps 2^-11 and 2^-8, uniform over the step, give ~0.0003 and ~0.002. */
static const struct {
    uint32_t type;
    double bound;
} QBOUND[] = {
    {NBL_TYPE_F32, 0.0},     {NBL_TYPE_F16, 0.0005},  {NBL_TYPE_BF16, 0.004},  {NBL_TYPE_Q8_0, 0.011},
    {NBL_TYPE_Q8_1, 0.011},  {NBL_TYPE_Q8_K, 0.025},  {NBL_TYPE_Q4_0, 0.155},  {NBL_TYPE_Q4_1, 0.115},
    {NBL_TYPE_Q5_0, 0.083},  {NBL_TYPE_Q5_1, 0.057},  {NBL_TYPE_IQ4_NL, 0.145}, {NBL_TYPE_Q2_K, 0.44},
    {NBL_TYPE_Q3_K, 0.245},  {NBL_TYPE_Q4_K, 0.10},   {NBL_TYPE_Q5_K, 0.053},  {NBL_TYPE_Q6_K, 0.033},
};
#define NQ (int)(sizeof QBOUND / sizeof QBOUND[0])
#define ROW 2048

enum { D_GAUSS, D_UNIFORM, D_LAPLACE, D_OUTLIERS, D_SCALED, D_SINE, D_COUNT };
static const char *DNAME[D_COUNT] = {"gauss", "uniform", "laplace", "outliers", "scaled-rows", "sine+offset"};

static void fill(int dist, float *x, int n) {
    for (int i = 0; i < n; i++) {
        switch (dist) {
        case D_GAUSS: x[i] = rnd_gauss(); break;
        case D_UNIFORM: x[i] = (float)(2 * rnd_unit() - 1); break;
        case D_LAPLACE: x[i] = (float)(rnd_unit() < 0.5 ? log(rnd_unit()) : -log(rnd_unit())); break;
        case D_OUTLIERS: x[i] = rnd_gauss() * (rnd_unit() < 0.01 ? 10.0f : 1.0f); break;
        case D_SCALED: x[i] = rnd_gauss() * 1e-3f * (float)(1 + (i / 256) % 5); break; /* small weights */
        case D_SINE: x[i] = 0.3f + sinf(0.05f * (float)i) + 0.1f * rnd_gauss(); break;
        }
    }
}

static void test_quant_error(void) {
    float *x = malloc(ROW * sizeof(float)), *y = malloc(ROW * sizeof(float));
    uint8_t *q = malloc(ROW * 4);
    for (int t = 0; t < NQ; t++) {
        uint32_t type = QBOUND[t].type;
        double worst = 0;
        int wd = 0;
        for (int dist = 0; dist < D_COUNT; dist++) {
            fill(dist, x, ROW);
            nbl_quant_row(type, x, q, ROW, NULL);
            nbl_dequant_row(type, q, y, ROW);
            double e = nrmse(y, x, ROW);
            if (e > worst) worst = e, wd = dist;
            CHECK(e <= QBOUND[t].bound, "%s on %s: nRMSE %.5f > bound %.5f", nbl_type_traits_get(type)->name,
                  DNAME[dist], e, QBOUND[t].bound);
        }
        printf("ok quantize %-7s worst nRMSE %.5f (%s), bound %.4f\n", nbl_type_traits_get(type)->name, worst,
               DNAME[wd], QBOUND[t].bound);

        /* structured rows: zeros stay zero, a constant row is reproduced to the format's precision,
         * a single spike does not leak into its neighbours' blocks */
        memset(x, 0, ROW * sizeof(float));
        nbl_quant_row(type, x, q, ROW, NULL);
        nbl_dequant_row(type, q, y, ROW);
        int nz = 0;
        for (int i = 0; i < ROW; i++) nz += y[i] != 0.0f;
        CHECK(nz == 0, "%s: zero row dequantizes to %d non-zeros", nbl_type_traits_get(type)->name, nz);
        for (int i = 0; i < ROW; i++) x[i] = 0.75f;
        nbl_quant_row(type, x, q, ROW, NULL);
        nbl_dequant_row(type, q, y, ROW);
        CHECK(nrmse(y, x, ROW) <= QBOUND[t].bound, "%s: constant row nRMSE %.4f", nbl_type_traits_get(type)->name,
              nrmse(y, x, ROW));
        memset(x, 0, ROW * sizeof(float));
        x[300] = -5.0f;
        nbl_quant_row(type, x, q, ROW, NULL);
        nbl_dequant_row(type, q, y, ROW);
        int leak = 0;
        for (int i = 0; i < ROW; i++) leak += (i < 256 || i >= 512) && y[i] != 0.0f;
        CHECK(leak == 0 && fabsf(y[300] + 5.0f) <= 5.0f * (float)QBOUND[t].bound * 4,
              "%s: spike -> %g, %d leaks", nbl_type_traits_get(type)->name, y[300], leak);

        /* non-finite and huge inputs must not trip the sanitizers (values are unspecified) */
        fill(D_GAUSS, x, ROW);
        x[5] = NAN;
        x[700] = INFINITY;
        x[1500] = 3e38f;
        nbl_quant_row(type, x, q, ROW, NULL);
        nbl_dequant_row(type, q, y, ROW);
    }
    free(x), free(y), free(q);
}

/* With very uneven importance (1 in 8 columns weighted 100x), the weighted error must drop. */
static void test_imatrix(void) {
    static const uint32_t types[] = {NBL_TYPE_Q4_0, NBL_TYPE_Q4_1, NBL_TYPE_Q5_0, NBL_TYPE_Q5_1, NBL_TYPE_IQ4_NL,
                                     NBL_TYPE_Q2_K, NBL_TYPE_Q3_K, NBL_TYPE_Q4_K, NBL_TYPE_Q5_K, NBL_TYPE_Q6_K};
    float *x = malloc(ROW * sizeof(float)), *y = malloc(ROW * sizeof(float)), *im = malloc(ROW * sizeof(float));
    uint8_t *q = malloc(ROW * 4);
    for (int i = 0; i < ROW; i++) im[i] = rnd_unit() < 0.125 ? 100.0f : 1.0f;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        double e0 = 0, e1 = 0;
        for (int dist = 0; dist < D_COUNT; dist++) {
            fill(dist, x, ROW);
            double s = 0;
            for (int i = 0; i < ROW; i++) s += im[i] * (double)x[i] * x[i];
            for (int pass = 0; pass < 2; pass++) {
                nbl_quant_row(types[t], x, q, ROW, pass ? im : NULL);
                nbl_dequant_row(types[t], q, y, ROW);
                double e = 0;
                for (int i = 0; i < ROW; i++) e += im[i] * ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                *(pass ? &e1 : &e0) += e / s;
            }
        }
        const char *nm = nbl_type_traits_get(types[t])->name;
        printf("ok imatrix %-7s weighted error ratio with/without %.3f\n", nm, e1 / e0);
        CHECK(e1 < 0.9 * e0, "%s: imatrix weighted error %.4g not below 0.9x %.4g", nm, e1, e0);
    }
    free(x), free(y), free(im), free(q);
}

/* nbl_vec_dot_ref is the double dot of nbl_dequant_row's output, for every dequantizable type. */
static void test_vec_dot(void) {
    static const uint32_t types[] = {NBL_TYPE_F32,  NBL_TYPE_F16,  NBL_TYPE_BF16, NBL_TYPE_Q4_0, NBL_TYPE_Q4_1,
                                     NBL_TYPE_Q5_0, NBL_TYPE_Q5_1, NBL_TYPE_Q8_0, NBL_TYPE_Q8_1, NBL_TYPE_IQ4_NL,
                                     NBL_TYPE_Q2_K, NBL_TYPE_Q3_K, NBL_TYPE_Q4_K, NBL_TYPE_Q5_K, NBL_TYPE_Q6_K,
                                     NBL_TYPE_Q8_K};
    float *w = malloc(ROW * sizeof(float)), *x = malloc(ROW * sizeof(float)), *y = malloc(ROW * sizeof(float));
    uint8_t *q = malloc(ROW * 4);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        fill(D_LAPLACE, w, ROW);
        fill(D_GAUSS, x, ROW);
        nbl_quant_row(types[t], w, q, ROW, NULL);
        nbl_dequant_row(types[t], q, y, ROW);
        double ref = 0, mag = 0;
        for (int i = 0; i < ROW; i++) ref += (double)y[i] * x[i], mag += fabs((double)y[i] * x[i]);
        float got = nbl_vec_dot_ref(types[t], q, x, ROW);
        /* one float rounding of a double sum: 2^-24 relative, plus slack for summation order */
        CHECK(fabs(got - ref) <= 1e-7 * fabs(ref) + 1e-12 * mag, "%s: vec_dot_ref %.9g vs %.9g",
              nbl_type_traits_get(types[t])->name, got, ref);
    }
    free(w), free(x), free(y), free(q);
}

/* Least squares shrinks: its error is orthogonal to the quantized values, so sum(x e) =
 * sum(e^2) and every layer's output comes out smaller than it should. Our scales make the
 * error orthogonal to the weights instead (sum(x e) ~ 0, as for plain rounding). Measured
 * sum(x e) / sum(e^2) on Gaussian rows: 0.01 to 0.28 by type; least squares gives ~1. Q8_0 is
 * left out: its error is so small that the fp16 rounding of its scales dominates the sum. */
static void test_unbiased(void) {
    static const uint32_t types[] = {NBL_TYPE_Q4_0, NBL_TYPE_Q4_1, NBL_TYPE_Q5_0, NBL_TYPE_Q5_1, NBL_TYPE_IQ4_NL,
                                     NBL_TYPE_Q2_K, NBL_TYPE_Q3_K, NBL_TYPE_Q4_K, NBL_TYPE_Q5_K, NBL_TYPE_Q6_K};
    const int n = 16 * ROW;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc((size_t)n * 2);
    fill(D_GAUSS, x, n);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        nbl_quant_row(types[t], x, q, n, NULL);
        nbl_dequant_row(types[t], q, y, n);
        double xe = 0, ee = 0;
        for (int i = 0; i < n; i++) xe += (double)x[i] * (x[i] - y[i]), ee += ((double)x[i] - y[i]) * (x[i] - y[i]);
        CHECK(fabs(xe) <= 0.4 * ee, "%s: sum(x e) / sum(e^2) = %.3f, the quantized weights are %s",
              nbl_type_traits_get(types[t])->name, xe / ee, xe > 0 ? "shrunk" : "inflated");
    }
    free(x), free(y), free(q);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

/* Per-type bound on nRMSE of llama.cpp's quantized tensor against the F16 file's tensor (both
 * from the same F32 original; Gaussian weights). Measured: bf16 0.0017, q8_0 0.0054, q4_0 0.087,
 * q4_1 0.079, q5_0 0.043, q5_1 0.038, iq4_nl 0.076, q2_k 0.30, q3_k 0.153, q4_k 0.072, q5_k
 * 0.036, q6_k 0.018. Bounds are ~15% above; a wrong layout (nibble order, bit position, scale
 * packing) scrambles values and gives nRMSE near or above 1. */
static double fixture_bound(uint32_t type) {
    switch (type) {
    case NBL_TYPE_F32: return 0.0;
    case NBL_TYPE_F16: return 0.0;
    case NBL_TYPE_BF16: return 0.0022;
    case NBL_TYPE_Q8_0: return 0.0065;
    case NBL_TYPE_Q4_0: return 0.10;
    case NBL_TYPE_Q4_1: return 0.091;
    case NBL_TYPE_Q5_0: return 0.05;
    case NBL_TYPE_Q5_1: return 0.044;
    case NBL_TYPE_IQ4_NL: return 0.088;
    case NBL_TYPE_Q2_K: return 0.345;
    case NBL_TYPE_Q3_K: return 0.176;
    case NBL_TYPE_Q4_K: return 0.083;
    case NBL_TYPE_Q5_K: return 0.042;
    case NBL_TYPE_Q6_K: return 0.021;
    default: return -1;
    }
}

/* Our quantizers search for the least squared error where llama.cpp's reference ones (used by
 * llama-quantize without an importance matrix) round with a max-derived scale, so ours must
 * come out below theirs on the same rows. Measured (qwen2 / llama fixtures): q8_0 0.892 /
 * 0.892, q4_0 0.945 / 0.945, q4_1 0.881 / 0.881, q5_0 0.939 / 0.938, q5_1 0.874 / 0.871,
 * iq4_nl 0.965 / 0.963, q2_k 0.901 / 0.899, q3_k 0.959 / 0.959, q4_k 0.974 / 0.975, q5_k
 * 0.948 / 0.947, q6_k 0.932 / 0.928. Bounds are ~0.01 above (the search is deterministic;
 * the slack is for other compilers' float rounding). */
static double ratio_bound(uint32_t type) {
    switch (type) {
    case NBL_TYPE_Q8_0: return 0.905;
    case NBL_TYPE_Q4_0: return 0.955;
    case NBL_TYPE_Q4_1: return 0.895;
    case NBL_TYPE_Q5_0: return 0.95;
    case NBL_TYPE_Q5_1: return 0.885;
    case NBL_TYPE_IQ4_NL: return 0.975;
    case NBL_TYPE_Q2_K: return 0.915;
    case NBL_TYPE_Q3_K: return 0.97;
    case NBL_TYPE_Q4_K: return 0.985;
    case NBL_TYPE_Q5_K: return 0.96;
    case NBL_TYPE_Q6_K: return 0.945;
    default: return 1.0;
    }
}

static const char *FIX_TYPES[] = {"bf16",   "q8_0", "q4_0",   "q4_1",   "q5_0",   "q5_1",
                                  "iq4_nl", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k"};
#define NFIX (int)(sizeof FIX_TYPES / sizeof FIX_TYPES[0])

static nbl_gguf *open_fixture(const char *arch, const char *type) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s-k256-%s.gguf", fixtures_dir(), arch, type);
    nbl_gguf *g = NULL;
    nbl_error err = {0};
    if (nbl_gguf_open_file(path, &g, &err) != NBL_OK) {
        CHECK(0, "open %s: %s", path, err.msg);
        return NULL;
    }
    return g;
}

static float *dequant_tensor(const nbl_gguf_tensor *t, int64_t *n) {
    *n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *y = malloc((size_t)*n * sizeof(float));
    nbl_dequant_row(t->type, t->data, y, *n);
    return y;
}

/* Every tensor of every quantized fixture against the F16 fixture; then our quantizer on the
 * F16 tensors against llama.cpp's quantization of the same tensors (same type, same rows). */
static void test_fixtures(const char *arch) {
    nbl_gguf *ref = open_fixture(arch, "f16");
    if (!ref) return;
    double mine[NBL_TYPE_COUNT] = {0}, theirs[NBL_TYPE_COUNT] = {0};
    int seen[NBL_TYPE_COUNT] = {0};
    for (int k = 0; k < NFIX; k++) {
        nbl_gguf *g = open_fixture(arch, FIX_TYPES[k]);
        if (!g) continue;
        int nt = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const nbl_gguf_tensor *t = &g->tensors[i];
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            const nbl_gguf_tensor *r = nbl_gguf_find_tensor(ref, name);
            double bound = fixture_bound(t->type);
            if (!r || bound < 0) {
                CHECK(0, "%s-%s: tensor %s (type %u) unexpected", arch, FIX_TYPES[k], name, t->type);
                continue;
            }
            int64_t n, nr;
            float *a = dequant_tensor(t, &n), *b = dequant_tensor(r, &nr);
            CHECK(n == nr, "%s: element count", name);
            double e = nrmse(a, b, n);
            /* F32 tensors (norms, biases) are stored unchanged in both files; F16's are not
             * rounded again either: anything else must be within its type's bound */
            CHECK(e <= bound, "%s-%s %s (%s): nRMSE vs f16 %.5f > %.5f", arch, FIX_TYPES[k], name,
                  nbl_type_traits_get(t->type)->name, e, bound);
            nt++;

            /* our quantizer on the f16 tensor, compared as a sum of squared errors per type */
            if (t->type != NBL_TYPE_F32 && t->type != NBL_TYPE_BF16 && t->ne[0] % 256 == 0) {
                int64_t ncol = t->ne[0], nrow = n / ncol;
                uint8_t *q = malloc(nbl_row_bytes(t->type, ncol));
                float *c = malloc((size_t)ncol * sizeof(float));
                /* every 4th row keeps this fast under the sanitizers */
                for (int64_t row = 0; row < nrow; row += 4) {
                    const float *x = b + row * ncol, *theirs_row = a + row * ncol;
                    nbl_quant_row(t->type, x, q, ncol, NULL);
                    nbl_dequant_row(t->type, q, c, ncol);
                    for (int64_t j = 0; j < ncol; j++) {
                        mine[t->type] += ((double)c[j] - x[j]) * ((double)c[j] - x[j]);
                        theirs[t->type] += ((double)theirs_row[j] - x[j]) * ((double)theirs_row[j] - x[j]);
                    }
                }
                seen[t->type] = 1;
                free(q), free(c);
            }
            free(a), free(b);
        }
        CHECK(nt > 0, "%s-%s: no tensors", arch, FIX_TYPES[k]);
        nbl_gguf_free(g);
    }
    int nseen = 0;
    for (int t = 0; t < NBL_TYPE_COUNT; t++) {
        if (!seen[t]) continue;
        nseen++;
        double ratio = sqrt(mine[t] / theirs[t]);
        printf("ok %s %-7s RMSE ours / llama.cpp's = %.4f (at most %.3f)\n", arch, nbl_type_traits_get((uint32_t)t)->name,
               ratio, ratio_bound((uint32_t)t));
        CHECK(ratio <= ratio_bound((uint32_t)t), "%s %s: our RMSE is %.4fx llama.cpp's, want <= %.3f", arch,
              nbl_type_traits_get((uint32_t)t)->name, ratio, ratio_bound((uint32_t)t));
    }
    CHECK(nseen == 11, "%s: %d quantized types compared, want 11", arch, nseen);
    nbl_gguf_free(ref);
}

int main(void) {
    test_fp16();
    test_bf16();
    test_traits();
    test_hand_blocks();
    test_quant_error();
    test_imatrix();
    test_vec_dot();
    test_unbiased();
    test_fixtures("qwen2");
    test_fixtures("llama");
    return test_done();
}
