/* test_kernels.c — the CPU kernel layer against independent references: every weight type on
 * every ISA table this machine can run, compared with quant.c's float reference dot (weights
 * dequantized exactly, activations unquantized) within the activation-quantization error bound
 * derived below, and with brute-force double-precision versions of norm, softmax, rope and
 * attention. Also the thread pool (sleep/wake, many short jobs) and nbl_matmul's blocking. */
#include "kernels.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd_unif(void) { return (float)(rnd_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }
/* Roughly normal, with occasional outliers as real activations have. */
static float rnd_act(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += rnd_unif();
    return (rnd_u32() % 97 == 0) ? s * 8.0f : s;
}

static const uint32_t WTYPES[] = {NBL_TYPE_F32,  NBL_TYPE_F16,    NBL_TYPE_BF16, NBL_TYPE_Q4_0,
                                  NBL_TYPE_Q4_1, NBL_TYPE_Q5_0,   NBL_TYPE_Q5_1, NBL_TYPE_Q8_0,
                                  NBL_TYPE_IQ4_NL, NBL_TYPE_Q2_K, NBL_TYPE_Q3_K, NBL_TYPE_Q4_K,
                                  NBL_TYPE_Q5_K, NBL_TYPE_Q6_K};
#define N_WTYPES (sizeof WTYPES / sizeof WTYPES[0])

/* Bound on |dot(w, xq) - dot(w, x)| from converting x to the vec-dot type: per element the
 * rounding error e_i of that format (half a quantum plus the fp16 rounding of the scale), summed
 * with |w_i| weights, plus float accumulation slack of 1e-5 * sum|w_i x_i|. For Q8_1 the
 * stored s = d*sum(q) is fp16 too, which adds |m_block| * |s| * 2^-11 per block. */
static double act_err_bound(uint32_t xtype, const float *wf, const float *x, int64_t K, const void *wq, uint32_t wtype) {
    double bound = 0.0, mag = 0.0;
    const int64_t blk = xtype == NBL_TYPE_Q8_K ? 256 : xtype == NBL_TYPE_Q8_0 || xtype == NBL_TYPE_Q8_1 ? 32 : 1;
    for (int64_t b = 0; b < K / blk; b++) {
        float amax = 0;
        for (int64_t i = b * blk; i < (b + 1) * blk; i++) amax = fmaxf(amax, fabsf(x[i]));
        const double d = amax / 127.0;
        double bsum = 0;
        for (int64_t i = b * blk; i < (b + 1) * blk; i++) {
            double e = 0;
            switch (xtype) {
            case NBL_TYPE_Q8_0:
            case NBL_TYPE_Q8_1: e = 0.5 * d * (1 + 1.0 / 1024) + fabs(x[i]) / 2048.0; break;
            case NBL_TYPE_Q8_K: e = 0.5 * d * (1 + 1e-6); break;
            case NBL_TYPE_F16: e = fabs(x[i]) / 2048.0 + 6e-8; break;
            case NBL_TYPE_BF16: e = fabs(x[i]) / 256.0; break;
            default: e = 0;
            }
            bound += fabs(wf[i]) * e;
            mag += fabs((double)wf[i] * x[i]);
            bsum += x[i];
        }
        if (xtype == NBL_TYPE_Q8_1) {
            const uint8_t *blkp = (const uint8_t *)wq + (size_t)b * nbl_type_traits_get(wtype)->type_size;
            uint16_t mh;
            memcpy(&mh, blkp + 2, 2); /* m follows d in Q4_1 and Q5_1 */
            bound += fabs(nbl_fp16_to_f32(mh)) * (fabs(bsum) + 32 * 0.5 * d) / 2048.0 * 1.01;
        }
    }
    return bound + 1e-5 * mag + 1e-30;
}

static const nbl_kernels *tables[6];
static int n_tables;

static void test_types(void) {
    const int64_t M = 7, T = 5;
    /* Weights of two sizes: typical ones, and tiny ones whose block scales are subnormal halves
     * (K-quant super-block scales often are), which conversions must get exactly too. */
    static const float WMAG[2] = {0.05f, 5e-5f};
    for (size_t ti = 0; ti < 2 * N_WTYPES; ti++) {
        const uint32_t wt = WTYPES[ti % N_WTYPES];
        const float wmag = WMAG[ti / N_WTYPES];
        const uint32_t xt = (uint32_t)nbl_vec_dot_type(wt);
        const int64_t K = nbl_type_traits_get(wt)->blck == 256 ? 768 : 896;
        const size_t bw = nbl_row_bytes(wt, K), bx = nbl_row_bytes(xt, K);
        float *wf = malloc(sizeof(float) * M * K), *x = malloc(sizeof(float) * T * K);
        uint8_t *w = malloc(bw * M), *xq_ref = malloc(bx * T);
        float *yref = malloc(sizeof(float) * M * T), *y = malloc(sizeof(float) * M * T);
        float *wd = malloc(sizeof(float) * K);
        for (int64_t i = 0; i < M * K; i++) wf[i] = rnd_act() * wmag;
        for (int64_t i = 0; i < T * K; i++) x[i] = rnd_act();
        for (int64_t r = 0; r < M; r++) nbl_quant_row(wt, wf + r * K, w + r * bw, K, NULL);
        const nbl_kernels *ref = nbl_kernels_ref();
        for (int64_t t = 0; t < T; t++) ref->from_f32[xt](x + t * K, xq_ref + t * bx, K);
        ref->tile[wt](K, w, bw, (int32_t)M, xq_ref, bx, (int32_t)T, yref, M);

        /* 1. Reference integer path vs quant.c's float dot within the conversion bound. */
        double worst = 0;
        for (int64_t r = 0; r < M; r++) {
            nbl_dequant_row(wt, w + r * bw, wd, K);
            for (int64_t t = 0; t < T; t++) {
                const double exact = nbl_vec_dot_ref(wt, w + r * bw, x + t * K, K);
                const double bound = act_err_bound(xt, wd, x + t * K, K, w + r * bw, wt);
                const double ratio = fabs(yref[t * M + r] - exact) / bound;
                if (ratio > worst) worst = ratio;
            }
        }
        CHECK(worst <= 1.0, "%s ref (weights ~%g): error %.3f x the activation-quantization bound",
              nbl_type_traits_get(wt)->name, wmag, worst);

        for (int k = 0; k < n_tables; k++) {
            const nbl_kernels *kt = tables[k];
            /* 2. This table's conversion (its own layout) and tiles: only rounding ties of the
             *    activation quantization and float summation order may differ from the reference.
             *    Every tile shape up to the table's is tried, so remainder paths are covered. */
            const int32_t xb = kt->x_bytes[xt];
            const size_t kbx = xb ? (size_t)(K / nbl_type_traits_get(xt)->blck) * (size_t)xb : bx;
            uint8_t *kx = malloc(kbx * T);
            for (int64_t t = 0; t < T; t++) kt->from_f32[xt](x + t * K, kx + t * kbx, K);
            double mag[7][5];
            for (int64_t r = 0; r < M; r++) {
                nbl_dequant_row(wt, w + r * bw, wd, K);
                for (int64_t c = 0; c < T; c++) {
                    mag[r][c] = 1e-30;
                    for (int64_t i = 0; i < K; i++) mag[r][c] += fabs((double)wd[i] * x[c * K + i]);
                }
            }
            double tworst = 0;
            for (int32_t nr = 1; nr <= kt->tile_m[wt] && nr <= M; nr++)
                for (int32_t nc = 1; nc <= kt->tile_n[wt] && nc <= T; nc++) {
                    for (int64_t i = 0; i < M * T; i++) y[i] = NAN;
                    kt->tile[wt](K, w, bw, nr, kx, kbx, nc, y, M);
                    for (int32_t c = 0; c < nc; c++)
                        for (int32_t r = 0; r < nr; r++) {
                            const double e = fabs((double)y[c * M + r] - yref[c * M + r]) / mag[r][c];
                            if (!(e <= tworst)) tworst = isnan(e) ? INFINITY : e;
                        }
                }
            CHECK(tworst <= 2e-5, "%s %s tile (weights ~%g): relative error %.3g vs the reference (bound 2e-5)",
                  kt->name, nbl_type_traits_get(wt)->name, wmag, tworst);
            /* 3. The packed prefill path, when the table has one: a panel of M < 8 rows. */
            if (kt->pack[wt]) {
                const int32_t blk = kt->pack_blk[wt], hm = kt->pack_min[wt];
                uint8_t *panel = malloc(nbl_panel_bytes(K, blk, hm));
                kt->pack[wt](K, w, bw, (int32_t)M, panel);
                for (int64_t i = 0; i < M * T; i++) y[i] = NAN;
                kt->gemm(panel, K, blk, hm, kt->pack_off[wt], xt, kx, kbx, (int32_t)T, y, M, (int32_t)M);
                double pworst = 0;
                for (int64_t c = 0; c < T; c++)
                    for (int64_t r = 0; r < M; r++) {
                        const double e = fabs((double)y[c * M + r] - yref[c * M + r]) / mag[r][c];
                        if (!(e <= pworst)) pworst = isnan(e) ? INFINITY : e;
                    }
                CHECK(pworst <= 2e-5, "%s %s packed: relative error %.3g vs the reference (bound 2e-5)",
                      kt->name, nbl_type_traits_get(wt)->name, pworst);
                free(panel);
            }
            free(kx);
        }
        free(wf), free(x), free(w), free(xq_ref), free(yref), free(y), free(wd);
    }
}

/* The largest integer sums each 32-block type can make: every weight at its extreme, every
 * activation at -127 so that all products share a sign. Tables that add products in narrow
 * integers before widening (SIMD128) must still agree with the reference. */
static void test_extremes(void) {
    static const struct { uint32_t t; int qs_off, qs_len, qh_off; uint8_t qs, qh; } X[] = {
        {NBL_TYPE_Q4_0, 2, 16, -1, 0x00, 0},    /* all -8 */
        {NBL_TYPE_Q4_1, 4, 16, -1, 0xFF, 0},    /* all 15 */
        {NBL_TYPE_Q5_0, 6, 16, 2, 0x00, 0x00},  /* all -16 */
        {NBL_TYPE_Q5_1, 8, 16, 4, 0xFF, 0xFF},  /* all 31 */
        {NBL_TYPE_Q8_0, 2, 32, -1, 0x80, 0},    /* all -128 */
        {NBL_TYPE_IQ4_NL, 2, 16, -1, 0x00, 0},  /* all -127 */
    };
    const int64_t K = 1024, M = 4;
    for (size_t i = 0; i < sizeof X / sizeof X[0]; i++) {
        const uint32_t wt = X[i].t, xt = (uint32_t)nbl_vec_dot_type(wt);
        const size_t bs = nbl_type_traits_get(wt)->type_size, bw = nbl_row_bytes(wt, K), bx = nbl_row_bytes(xt, K);
        uint8_t *w = calloc(M, bw), *xq = malloc(bx);
        float *x = malloc(sizeof(float) * K), yref[4], y[4];
        for (int64_t b = 0; b < M * K / 32; b++) {
            uint8_t *blk = w + (size_t)b * bs;
            blk[0] = 0x00, blk[1] = 0x3C; /* d = 1 (and m = 0 where there is one) */
            memset(blk + X[i].qs_off, X[i].qs, (size_t)X[i].qs_len);
            if (X[i].qh_off >= 0) memset(blk + X[i].qh_off, X[i].qh, 4);
        }
        for (int64_t k = 0; k < K; k++) x[k] = -1.0f;
        nbl_kernels_ref()->from_f32[xt](x, xq, K);
        nbl_kernels_ref()->tile[wt](K, w, bw, (int32_t)M, xq, bx, 1, yref, M);
        for (int k = 0; k < n_tables; k++) {
            const nbl_kernels *kt = tables[k];
            const int32_t xb = kt->x_bytes[xt];
            const size_t kbx = xb ? (size_t)(K / nbl_type_traits_get(xt)->blck) * (size_t)xb : bx;
            uint8_t *kx = malloc(kbx);
            kt->from_f32[xt](x, kx, K);
            const int32_t nr = kt->tile_m[wt] < M ? kt->tile_m[wt] : (int32_t)M;
            kt->tile[wt](K, w, bw, nr, kx, kbx, 1, y, M);
            double e = 0;
            for (int32_t r = 0; r < nr; r++) e = fmax(e, fabs(y[r] - yref[r]) / fabs(yref[r]));
            CHECK(e <= 1e-5 && fabs(yref[0]) > 1000, "%s %s extremes: %g vs %g (relative %g)", kt->name,
                  nbl_type_traits_get(wt)->name, y[0], yref[0], e);
            free(kx);
        }
        free(w), free(xq), free(x);
    }
}

/* Infinite and NaN block scales (a damaged file): every table's row results must be what the
 * reference makes of them: not finite numbers. Tables with a fast scale conversion that is exact
 * only for finite halves must notice such a scale and take their exact path. Rows 0 and 3 stay
 * finite and must still match. */
static void test_special_scales(void) {
    static const uint32_t T32[] = {NBL_TYPE_Q4_0, NBL_TYPE_Q4_1, NBL_TYPE_Q5_0, NBL_TYPE_Q5_1, NBL_TYPE_Q8_0, NBL_TYPE_IQ4_NL};
    static const uint16_t SPECIAL[] = {0x7C00, 0xFC00, 0x7E00, 0xFE01}; /* +inf, -inf, NaN, -NaN */
    const int64_t K = 512, M = 4;
    for (size_t i = 0; i < sizeof T32 / sizeof T32[0]; i++)
        for (size_t si = 0; si < sizeof SPECIAL / sizeof SPECIAL[0]; si++)
            for (int field = 0; field < 2; field++) { /* the scale d, or the minimum m where there is one */
                const uint32_t wt = T32[i], xt = (uint32_t)nbl_vec_dot_type(wt);
                if (field == 1 && wt != NBL_TYPE_Q4_1 && wt != NBL_TYPE_Q5_1) continue;
                const size_t bs = nbl_type_traits_get(wt)->type_size, bw = nbl_row_bytes(wt, K), bx = nbl_row_bytes(xt, K);
                float *wf = malloc(sizeof(float) * M * K), *x = malloc(sizeof(float) * K), yref[4], y[4];
                uint8_t *w = malloc(bw * M), *xq = malloc(bx);
                for (int64_t k = 0; k < M * K; k++) wf[k] = rnd_act() * 0.05f;
                for (int64_t k = 0; k < K; k++) x[k] = rnd_act();
                for (int64_t r = 0; r < M; r++) nbl_quant_row(wt, wf + r * K, w + r * bw, K, NULL);
                /* row 1: one block's field; row 2: the last block's */
                memcpy(w + 1 * bw + 5 * bs + 2 * (size_t)field, &SPECIAL[si], 2);
                memcpy(w + 2 * bw + (size_t)(K / 32 - 1) * bs + 2 * (size_t)field, &SPECIAL[si], 2);
                nbl_kernels_ref()->from_f32[xt](x, xq, K);
                nbl_kernels_ref()->tile[wt](K, w, bw, (int32_t)M, xq, bx, 1, yref, M);
                CHECK(!isfinite(yref[1]) && !isfinite(yref[2]) && isfinite(yref[0]) && isfinite(yref[3]),
                      "%s ref with scale 0x%04x: %g %g %g %g", nbl_type_traits_get(wt)->name, SPECIAL[si], yref[0], yref[1], yref[2], yref[3]);
                for (int k = 0; k < n_tables; k++) {
                    const nbl_kernels *kt = tables[k];
                    const int32_t xb = kt->x_bytes[xt];
                    const size_t kbx = xb ? (size_t)(K / 32) * (size_t)xb : bx;
                    uint8_t *kx = malloc(kbx);
                    kt->from_f32[xt](x, kx, K);
                    const int32_t nr = kt->tile_m[wt] < M ? kt->tile_m[wt] : (int32_t)M;
                    int ok = 1;
                    for (int32_t r0 = 0; r0 < M; r0 += nr) {
                        const int32_t n = M - r0 < nr ? (int32_t)(M - r0) : nr;
                        kt->tile[wt](K, w + (size_t)r0 * bw, bw, n, kx, kbx, 1, y + r0, M);
                    }
                    for (int r = 0; r < M; r++) {
                        /* inf or NaN: an infinite scale times a zero lane sum is NaN, and
                         * tables sum lanes in different orders */
                        if (isfinite(yref[r])) ok &= fabs(y[r] - yref[r]) <= 1e-4 * (fabs(yref[r]) + 1);
                        else ok &= !isfinite(y[r]);
                    }
                    CHECK(ok, "%s %s with %s 0x%04x: %g %g %g %g vs %g %g %g %g", kt->name, nbl_type_traits_get(wt)->name,
                          field ? "minimum" : "scale", SPECIAL[si], y[0], y[1], y[2], y[3], yref[0], yref[1], yref[2], yref[3]);
                    free(kx);
                }
                free(wf), free(x), free(w), free(xq);
            }
}

/* Regrouped layouts (repack.c): the rows come back byte for byte; the reference's regrouped
 * tile equals its base tile bit for bit; every table's regrouped tile (whole groups, the rows
 * after the last group, 1 to tile_n columns) matches the base reference like any tile, also
 * with infinite or NaN scales in a group. */
static void test_regroup(void) {
    static const uint32_t BASES[] = {NBL_TYPE_Q4_0, NBL_TYPE_Q8_0};
    static const int64_t SH[][2] = {{35, 896}, {16, 64}, {48, 800}, {9, 256}, {83, 512}, {64, 96}, {136, 64}, {115, 96}, {100, 32}}; /* M, K */
    for (size_t bi = 0; bi < 2; bi++)
        for (size_t si = 0; si < sizeof SH / sizeof SH[0]; si++) {
            const uint32_t bt = BASES[bi], rt = (uint32_t)nbl_layout_r16(bt), xt = NBL_TYPE_Q8_0;
            const int64_t M = SH[si][0], K = SH[si][1], T = 4, M16 = M / 16 * 16;
            CHECK(nbl_layout_base(rt) == bt && nbl_layout_base(bt) == bt && nbl_vec_dot_type(rt) == (int32_t)xt,
                  "regrouped type %u names its base", rt);
            const size_t bw = nbl_row_bytes(bt, K), bx = nbl_row_bytes(xt, K);
            float *wf = malloc(sizeof(float) * K), *x = malloc(sizeof(float) * T * K);
            float *yref = malloc(sizeof(float) * M * T), *y = malloc(sizeof(float) * M * T);
            uint8_t *w = malloc(bw * M), *wr = malloc(bw * M), *back = malloc(bw * M), *xq = malloc(bx * T);
            for (int64_t r = 0; r < M; r++) {
                for (int64_t i = 0; i < K; i++) wf[i] = rnd_act() * 0.05f;
                nbl_quant_row(bt, wf, w + r * bw, K, NULL);
            }
            if (si == 0 || si == 4) { /* an infinite scale in row 3's block 2, a NaN in row 17's (or 50's) last */
                const size_t bs = nbl_type_traits_get(bt)->type_size;
                const uint16_t inf = 0x7C00, nan = 0x7E00;
                memcpy(w + 3 * bw + 2 * bs, &inf, 2);
                memcpy(w + (si ? 50 : 17) * bw + (size_t)(K / 32 - 1) * bs, &nan, 2);
            }
            for (int64_t i = 0; i < T * K; i++) x[i] = rnd_act();
            nbl_r16_pack(rt, w, M, K, wr);
            /* whole groups block by block, then the rows after them as they were */
            const size_t bs = nbl_type_traits_get(bt)->type_size;
            for (int64_t r = 0; r < M16; r++)
                for (int64_t b = 0; b < K / 32; b++)
                    nbl_r16_block(rt, wr + (size_t)(r / 16 * 16) * bw, b, (int32_t)(r % 16), back + (size_t)r * bw + (size_t)b * bs);
            memcpy(back + (size_t)M16 * bw, wr + (size_t)M16 * bw, (size_t)(M - M16) * bw);
            CHECK(!memcmp(back, w, bw * M), "%s M=%lld K=%lld: regrouped rows come back unchanged",
                  nbl_type_traits_get(bt)->name, (long long)M, (long long)K);
            CHECK(M16 == 0 || memcmp(wr, w, bw * (size_t)M16), "%s: regrouping moves the bytes", nbl_type_traits_get(bt)->name);
            /* in the rows' own memory: the same bytes as into another buffer */
            uint8_t *inpl = malloc(bw * M), *scratch = malloc(16 * bw);
            memcpy(inpl, w, bw * M);
            nbl_r16_pack_inplace(rt, inpl, M, K, scratch);
            CHECK(!memcmp(inpl, wr, bw * M), "%s M=%lld K=%lld: regrouping in place makes nbl_r16_pack's bytes",
                  nbl_type_traits_get(bt)->name, (long long)M, (long long)K);
            /* any row, dequantized from the regrouped bytes, is the base row's values */
            int rows_same = 1;
            float *d0 = malloc(sizeof(float) * K), *d1 = malloc(sizeof(float) * K);
            for (int64_t r = 0; r < M; r++) {
                nbl_dequant_row(bt, w + (size_t)r * bw, d0, K);
                for (int64_t i = 0; i < K; i++) d1[i] = -1234.5f;
                nbl_r16_dequant_row(rt, wr, M, K, r, d1);
                for (int64_t i = 0; i < K; i++) rows_same &= !memcmp(&d0[i], &d1[i], sizeof(float)) || (isnan(d0[i]) && isnan(d1[i]));
            }
            CHECK(rows_same, "%s M=%lld K=%lld: rows dequantized from the regrouped layout are the base rows'",
                  nbl_type_traits_get(bt)->name, (long long)M, (long long)K);
            free(inpl), free(scratch), free(d0), free(d1);
            const nbl_kernels *ref = nbl_kernels_ref();
            for (int64_t t = 0; t < T; t++) ref->from_f32[xt](x + t * K, xq + t * bx, K);
            ref->tile[bt](K, w, bw, (int32_t)M, xq, bx, (int32_t)T, yref, M);
            /* errors relative to sum |w_i x_i|, as in test_types */
            double *mag = malloc(sizeof(double) * M * T);
            for (int64_t r = 0; r < M; r++) {
                nbl_dequant_row(bt, w + r * bw, wf, K);
                for (int64_t c = 0; c < T; c++) {
                    mag[c * M + r] = 1e-30;
                    for (int64_t i = 0; i < K; i++) mag[c * M + r] += fabs((double)wf[i] * x[c * K + i]);
                }
            }
            for (int64_t i = 0; i < M * T; i++) y[i] = NAN;
            for (int64_t r = 0; r < M; r += 16)
                ref->tile[rt](K, wr + (size_t)r * bw, bw, (int32_t)(M - r < 16 ? M - r : 16), xq, bx, (int32_t)T, y + r, M);
            int same = 1;
            for (int64_t i = 0; i < M * T; i++) same &= !memcmp(&y[i], &yref[i], sizeof(float)) || (isnan(y[i]) && isnan(yref[i]));
            CHECK(same, "%s M=%lld: the reference's regrouped tile equals its base tile", nbl_type_traits_get(bt)->name, (long long)M);
            for (int k = 0; k < n_tables; k++) {
                const nbl_kernels *kt = tables[k];
                if (!kt->tile[rt]) { /* only a table that reads the layout may ask for it */
                    CHECK(!kt->regroup[bt], "%s asks for regrouped %s without a tile for it", kt->name, nbl_type_traits_get(bt)->name);
                    continue;
                }
                /* several groups a tile (decode takes them in turn): every count up to tile_m / 16 */
                const int64_t tm = kt->tile_m[rt];
                CHECK(tm >= 16 && tm % 16 == 0, "%s: a regrouped tile takes whole groups (tile_m %d)", kt->name, kt->tile_m[rt]);
                const size_t kbx = kt->x_bytes[xt] ? (size_t)(K / 32) * (size_t)kt->x_bytes[xt] : bx;
                uint8_t *kx = malloc(kbx * T);
                for (int64_t t = 0; t < T; t++) kt->from_f32[xt](x + t * K, kx + t * kbx, K);
                double worst = 0;
                for (int32_t nc = 1; nc <= kt->tile_n[rt] && nc <= T; nc++) {
                    for (int64_t i = 0; i < M * T; i++) y[i] = NAN;
                    for (int64_t r = 0; r < M; r += tm)
                        kt->tile[rt](K, wr + (size_t)r * bw, bw, (int32_t)(M - r < tm ? M - r : tm), kx, kbx, nc, y + r, M);
                    for (int32_t c = 0; c < nc; c++)
                        for (int64_t r = 0; r < M; r++) {
                            const double a = y[c * M + r], b = yref[c * M + r];
                            double e;
                            if (!isfinite(b)) e = isfinite(a) ? INFINITY : 0; /* inf or NaN, as test_special_scales */
                            else e = fabs(a - b) / mag[c * M + r];
                            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
                        }
                }
                CHECK(worst <= 2e-5, "%s %s regrouped M=%lld K=%lld: relative error %.3g vs the reference (bound 2e-5)",
                      kt->name, nbl_type_traits_get(bt)->name, (long long)M, (long long)K, worst);
                /* The packed prefill path: a half group's panel, byte for byte the base rows' */
                if (M16 && kt->pack_r16 && kt->pack[bt] && kt->pack_blk[bt] == 32 && !kt->pack_min[bt]) {
                    const size_t pbytes = nbl_panel_bytes(K, 32, 0);
                    uint8_t *pa = malloc(pbytes), *pr = malloc(pbytes);
                    int same_panel = 1;
                    for (int64_t r = 0; r + 8 <= M16; r += 8) {
                        memset(pa, 0x55, pbytes);
                        memset(pr, 0xAA, pbytes);
                        kt->pack[bt](K, w + (size_t)r * bw, bw, 8, pa);
                        kt->pack_r16(rt, K, wr + (size_t)(r / 16 * 16) * bw, (int32_t)(r % 16 / 8), pr);
                        same_panel &= !memcmp(pa, pr, pbytes);
                    }
                    CHECK(same_panel, "%s %s M=%lld K=%lld: a regrouped half group packs to the base rows' panel", kt->name,
                          nbl_type_traits_get(bt)->name, (long long)M, (long long)K);
                    free(pa), free(pr);
                }
                free(kx);
            }
            free(wf), free(x), free(yref), free(y), free(w), free(wr), free(back), free(xq), free(mag);
        }
}

/* nbl_matmul: blocking, remainders, threads, bias and ldy against per-element reference dots. */
static void test_matmul(nbl_threadpool *tp) {
    const uint32_t types[] = {NBL_TYPE_Q4_0, NBL_TYPE_Q8_0, NBL_TYPE_Q4_K, NBL_TYPE_Q6_K, NBL_TYPE_F16, NBL_TYPE_Q5_0,
                              NBL_TYPE_Q4_0_R16, NBL_TYPE_Q8_0_R16};
    /* T from 16 takes the whole-product path where the table has one (AMX): ragged rows and
     * tokens on both sides of its 32 x 32 blocks. */
    const int64_t shapes[][3] = {{37, 256, 1}, {64, 512, 1}, {33, 256, 7}, {130, 512, 19}, {21, 800, 1}, {11, 800, 5},
                                 {64, 256, 32}, {70, 800, 33}, {5, 96, 64},
                                 /* decode chunks of many tiles (taken as interleaved streams by
                                  * tables that do), a ragged last chunk and a last partial tile */
                                 {301, 256, 1}, {517, 512, 1}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            /* a regrouped type is checked against its base's reference on the same rows */
            const uint32_t mt = types[ti], wt = nbl_layout_base(mt);
            const int64_t M = shapes[si][0], K = shapes[si][1], T = shapes[si][2];
            if (K % nbl_type_traits_get(wt)->blck) continue; /* 800 = 25 blocks of 32: odd pairs */
            if (!nbl_kernels_best()->tile[mt]) continue; /* this machine's kernels do not read it */
            const int64_t ldx = K + 3, ldy = M + 5;
            const size_t bw = nbl_row_bytes(wt, K);
            uint8_t *w = malloc(bw * M);
            float *wf = malloc(sizeof(float) * K), *x = malloc(sizeof(float) * T * ldx);
            float *y = malloc(sizeof(float) * T * ldy), *bias = malloc(sizeof(float) * M);
            for (int64_t r = 0; r < M; r++) {
                for (int64_t i = 0; i < K; i++) wf[i] = rnd_act();
                nbl_quant_row(wt, wf, w + r * bw, K, NULL);
                bias[r] = rnd_act();
            }
            for (int64_t i = 0; i < T * ldx; i++) x[i] = rnd_act();
            for (int64_t i = 0; i < T * ldy; i++) y[i] = 12345.0f;
            uint8_t *wm = w;
            if (mt != wt) nbl_r16_pack(mt, w, M, K, wm = malloc(bw * M));
            nbl_error err;
            nbl_status st = nbl_matmul_bias(tp, mt, wm, bias, M, K, x, ldx, T, y, ldy, &err);
            if (wm != w) free(wm);
            CHECK(st == NBL_OK, "matmul failed: %s", err.msg);
            double worst = 0;
            int pad_ok = 1;
            for (int64_t t = 0; t < T; t++) {
                for (int64_t r = 0; r < M; r++) {
                    nbl_dequant_row(wt, w + r * bw, wf, K);
                    const double exact = nbl_vec_dot_ref(wt, w + r * bw, x + t * ldx, K) + bias[r];
                    const double bound = act_err_bound((uint32_t)nbl_vec_dot_type(wt), wf, x + t * ldx, K, w + r * bw, wt) + 1e-5 * fabs(bias[r]);
                    const double ratio = fabs(y[t * ldy + r] - exact) / bound;
                    if (!(ratio <= worst)) worst = isnan(ratio) ? INFINITY : ratio;
                }
                for (int64_t r = M; r < ldy && t + 1 < T; r++) pad_ok &= y[t * ldy + r] == 12345.0f;
            }
            CHECK(worst <= 1.0, "matmul %s%s M=%lld K=%lld T=%lld: %.3f x the bound", nbl_type_traits_get(wt)->name,
                  mt != wt ? " regrouped" : "", (long long)M, (long long)K, (long long)T, worst);
            CHECK(pad_ok, "matmul wrote outside its output rows");
            free(w), free(wf), free(x), free(y), free(bias);
        }
    nbl_error err;
    float xx[64] = {0}, yy[4];
    uint8_t ww[4 * 36] = {0};
    CHECK(nbl_matmul(tp, NBL_TYPE_Q4_0, ww, 4, 48, xx, 48, 1, yy, 4, &err) == NBL_E_ARG,
          "K not a multiple of the block is rejected");
    CHECK(nbl_matmul(tp, NBL_TYPE_Q8_1, ww, 4, 32, xx, 32, 1, yy, 4, &err) == NBL_E_UNSUPPORTED,
          "Q8_1 weights are rejected");
}

static void test_helpers(void) {
    enum { N = 1000 };
    float x[N], g[N], u[N], w[N], y[N];
    for (int i = 0; i < N; i++) x[i] = rnd_act(), g[i] = rnd_act() * 3, u[i] = rnd_act(), w[i] = rnd_act();
    for (int k = 0; k < n_tables; k++) {
        const nbl_kernels *kt = tables[k];
        for (int n = 1; n <= N; n += n < 40 ? 1 : 137) {
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            const double sc = 1.0 / sqrt(ss / n + 1e-6);
            kt->rmsnorm(y, x, w, n, 1e-6f);
            double e = 0;
            for (int i = 0; i < n; i++) e = fmax(e, fabs(y[i] - x[i] * sc * w[i]) / (fabs(x[i] * sc * w[i]) + 1e-6));
            CHECK(e < 1e-5, "%s rmsnorm n=%d: relative error %g", kt->name, n, e);

            kt->silu_mul(y, g, u, n);
            e = 0;
            for (int i = 0; i < n; i++) {
                const double r = g[i] / (1 + exp(-(double)g[i])) * u[i];
                e = fmax(e, fabs(y[i] - r) / (fabs(r) + 1e-6));
            }
            CHECK(e < 1e-5, "%s silu_mul n=%d: relative error %g", kt->name, n, e);

            memcpy(y, g, sizeof(float) * n);
            kt->softmax(y, n);
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < n; i++) mx = fmax(mx, g[i]);
            for (int i = 0; i < n; i++) sum += exp(g[i] - mx);
            e = 0;
            for (int i = 0; i < n; i++) {
                const double r = exp(g[i] - mx) / sum;
                e = fmax(e, fabs(y[i] - r) / (r + 1e-12));
            }
            CHECK(e < 1e-5, "%s softmax n=%d: relative error %g", kt->name, n, e);

            uint16_t h[N];
            for (int i = 0; i < n; i++) h[i] = nbl_f32_to_fp16(u[i]);
            double dref = 0, dmag = 0;
            for (int i = 0; i < n; i++) dref += (double)x[i] * nbl_fp16_to_f32(h[i]), dmag += fabs(x[i] * u[i]);
            CHECK(fabs(kt->dot_f32_f16(x, h, n) - dref) <= 1e-5 * dmag + 1e-30, "%s dot_f32_f16 n=%d", kt->name, n);
            dref = 0;
            for (int i = 0; i < n; i++) dref += (double)x[i] * u[i];
            CHECK(fabs(kt->dot_f32(x, u, n) - dref) <= 1e-5 * dmag + 1e-30, "%s dot_f32 n=%d", kt->name, n);
            memcpy(y, w, sizeof(float) * n);
            kt->axpy_f16(y, 0.37f, h, n);
            e = 0;
            for (int i = 0; i < n; i++) e = fmax(e, fabs(y[i] - (w[i] + 0.37 * nbl_fp16_to_f32(h[i]))));
            CHECK(e < 1e-5, "%s axpy_f16 n=%d: error %g", kt->name, n, e);
            memcpy(y, w, sizeof(float) * n);
            kt->axpy_f32(y, -1.5f, u, n);
            e = 0;
            for (int i = 0; i < n; i++) e = fmax(e, fabs(y[i] - (w[i] - 1.5 * u[i])));
            CHECK(e < 1e-5, "%s axpy_f32 n=%d: error %g", kt->name, n, e);
            memcpy(y, w, sizeof(float) * n);
            kt->add(y, u, n);
            e = 0;
            for (int i = 0; i < n; i++) e = fmax(e, fabs(y[i] - (w[i] + u[i])));
            CHECK(e == 0, "%s add n=%d", kt->name, n);
        }
    }
}

/* The attention-block primitives of every table against double-precision sums. */
static void test_attn_primitives(void) {
    enum { NK = 77, DMAX = 72 };
    float q[DMAX], k[NK * DMAX], v[NK * DMAX], p[NK], s[NK], o[DMAX], o0[DMAX];
    for (int i = 0; i < DMAX; i++) q[i] = rnd_act(), o0[i] = rnd_act();
    for (int i = 0; i < NK * DMAX; i++) k[i] = rnd_act(), v[i] = rnd_act();
    for (int i = 0; i < NK; i++) p[i] = rnd_unif() * 0.5f + 0.5f;
    const int dims[] = {64, 72, 8, 20};
    for (int ti = 0; ti < n_tables; ti++) {
        const nbl_kernels *kt = tables[ti];
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (int nk = 1; nk <= NK; nk += nk < 20 ? 1 : 19) {
                const int D = dims[di];
                kt->attn_qk(q, k, nk, D, 0.3f, s);
                double e = 0;
                for (int j = 0; j < nk; j++) {
                    double r = 0, m = 0;
                    for (int i = 0; i < D; i++) r += (double)q[i] * k[j * D + i], m += fabs((double)q[i] * k[j * D + i]);
                    e = fmax(e, fabs(s[j] - 0.3 * r) / (0.3 * m + 1e-30));
                }
                CHECK(e < 1e-5, "%s attn_qk D=%d nk=%d: relative error %g", kt->name, D, nk, e);
                memcpy(o, o0, sizeof o);
                kt->attn_pv(o, p, v, nk, D);
                e = 0;
                for (int i = 0; i < D; i++) {
                    double r = o0[i], m = fabs(o0[i]);
                    for (int j = 0; j < nk; j++) r += (double)p[j] * v[j * D + i], m += fabs((double)p[j] * v[j * D + i]);
                    e = fmax(e, fabs(o[i] - r) / (m + 1e-30));
                }
                CHECK(e < 1e-5, "%s attn_pv D=%d nk=%d: relative error %g", kt->name, D, nk, e);
            }
        for (int n = 1; n <= NK; n += 3) {
            for (int i = 0; i < n; i++) s[i] = rnd_act() * 4;
            /* the ends of float's range: x = s - 3 near and past ln(FLT_MAX) and the underflow */
            static const float EDGE[] = {91.5f, 91.72f, 91.7228f, 92.0f, 103.0f, -84.0f, -84.4f, -97.0f};
            if (n == NK - 1 || n == 10)
                for (int i = 0; i < 8; i++) s[(i * 5) % n] = EDGE[i];
            float s0[NK];
            memcpy(s0, s, sizeof(float) * n);
            const float sum = kt->exp_sum(s, n, 3.0f);
            double rs = 0, e = 0;
            for (int i = 0; i < n; i++) {
                const double r = exp((double)s0[i] - 3.0);
                rs += r;
                if (r > FLT_MAX) e = fmax(e, isinf(s[i]) && s[i] > 0 ? 0 : INFINITY); /* overflows as expf */
                else e = fmax(e, fabs(s[i] - r) / (r + 1e-32)); /* below ~1e-38 results may flush to 0 */
            }
            const double se = rs > FLT_MAX ? (isinf(sum) ? 0 : INFINITY) : fabs(sum - rs) / rs;
            CHECK(e < 1e-5 && se < 1e-5, "%s exp_sum n=%d: relative error %g, of the sum %g", kt->name, n, e, se);
            uint16_t h[NK];
            float f[NK];
            for (int i = 0; i < n; i++) h[i] = (uint16_t)rnd_u32();
            h[0] = 0x7c00, h[n > 1] = 0x0001; /* infinity and the smallest subnormal */
            kt->f16_to_f32(f, h, n);
            int same = 1;
            for (int i = 0; i < n; i++) {
                const float r = nbl_fp16_to_f32(h[i]);
                same &= (isnan(r) && isnan(f[i])) || memcmp(&r, &f[i], 4) == 0;
            }
            CHECK(same, "%s f16_to_f32 n=%d is exact", kt->name, n);
        }
    }
}

/* Rope against the textbook rotation computed in double. */
static void test_rope(void) {
    const int32_t T = 3, H = 2, D = 64, pos[3] = {0, 7, 1000};
    float ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1.0f + (float)i / 8;
    for (int mode = 0; mode <= 2; mode += 2)
        for (int use_ff = 0; use_ff < 2; use_ff++) {
            float x[3 * 2 * 64], x0[3 * 2 * 64];
            for (int i = 0; i < T * H * D; i++) x[i] = x0[i] = rnd_act();
            nbl_rope_f32(x, T, H, D, H * D, pos, D, mode, 10000.0f, 1.0f, use_ff ? ff : NULL);
            double e = 0;
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < D / 2; i++) {
                        const double th = pos[t] * pow(10000.0, -2.0 * i / D) / (use_ff ? ff[i] : 1.0);
                        const int a = mode == NBL_ROPE_NEOX ? i : 2 * i, b = mode == NBL_ROPE_NEOX ? i + D / 2 : 2 * i + 1;
                        const float *v0 = x0 + t * H * D + h * D;
                        const float *v = x + t * H * D + h * D;
                        e = fmax(e, fabs(v[a] - (v0[a] * cos(th) - v0[b] * sin(th))));
                        e = fmax(e, fabs(v[b] - (v0[a] * sin(th) + v0[b] * cos(th))));
                    }
            /* theta is advanced in float as ggml does: ~1e-7 relative, times |pos| up to 1000. */
            CHECK(e < 2e-3, "rope mode %d ff %d: error %g", mode, use_ff, e);
        }
}

/* Attention against a naive double-precision softmax(q k^T) v over the dequantized cache. */
static void test_attention(nbl_threadpool *tp) {
    const int32_t cases[][5] = {/* T, n_head, n_head_kv, head_dim, pos0 */
                                {1, 14, 2, 64, 0},  {1, 14, 2, 64, 150}, {5, 4, 2, 32, 70},
                                {37, 8, 8, 64, 3},  {20, 14, 2, 64, 0},  {3, 6, 1, 16, 200}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int f16 = 0; f16 < 2; f16++) {
            const int32_t T = cases[ci][0], H = cases[ci][1], HK = cases[ci][2], D = cases[ci][3], p0 = cases[ci][4];
            const int32_t n_ctx = p0 + T + 5;
            /* head-major cache layout: [HK][n_ctx][D] */
            const size_t n = (size_t)HK * n_ctx * D;
            float *kf = malloc(n * 4), *vf = malloc(n * 4);
            uint16_t *kh = malloc(n * 2), *vh = malloc(n * 2);
            float *q = malloc(sizeof(float) * T * H * D), *out = malloc(sizeof(float) * T * H * D);
            for (size_t i = 0; i < n; i++) {
                kh[i] = nbl_f32_to_fp16(rnd_act());
                vh[i] = nbl_f32_to_fp16(rnd_act());
                kf[i] = nbl_fp16_to_f32(kh[i]);
                vf[i] = nbl_fp16_to_f32(vh[i]);
            }
            for (int i = 0; i < T * H * D; i++) q[i] = rnd_act();
            nbl_attn_args a = {.T = T, .n_head = H, .n_head_kv = HK, .head_dim = D, .pos0 = p0,
                               .scale = 1.0f / sqrtf((float)D), .q = q, .q_stride_t = (int64_t)H * D,
                               .k = f16 ? (const void *)kh : kf, .v = f16 ? (const void *)vh : vf,
                               .kv_type = f16 ? NBL_TYPE_F16 : NBL_TYPE_F32,
                               .kv_stride_pos = D, .kv_stride_head = (int64_t)n_ctx * D,
                               .out = out, .out_stride_t = (int64_t)H * D};
            nbl_error err;
            CHECK(nbl_attention(tp, &a, &err) == NBL_OK, "attention failed: %s", err.msg);
            double e = 0;
            double *s = malloc(sizeof(double) * (p0 + T));
            for (int32_t t = 0; t < T; t++)
                for (int32_t h = 0; h < H; h++) {
                    const int32_t kvh = h / (H / HK), nk = p0 + t + 1;
                    const float *qq = q + (t * H + h) * D;
                    double mx = -INFINITY, sum = 0;
                    for (int32_t p = 0; p < nk; p++) {
                        double d = 0;
                        for (int32_t i = 0; i < D; i++) d += (double)qq[i] * kf[((size_t)kvh * n_ctx + p) * D + i];
                        s[p] = d / sqrt((double)D);
                        mx = fmax(mx, s[p]);
                    }
                    for (int32_t p = 0; p < nk; p++) sum += (s[p] = exp(s[p] - mx));
                    for (int32_t i = 0; i < D; i++) {
                        double o = 0;
                        for (int32_t p = 0; p < nk; p++) o += s[p] / sum * vf[((size_t)kvh * n_ctx + p) * D + i];
                        e = fmax(e, fabs(o - out[(t * H + h) * D + i]));
                    }
                }
            CHECK(e < 1e-4, "attention case %zu f16=%d: max error %g", ci, f16, e);
            free(s), free(kf), free(vf), free(kh), free(vh), free(q), free(out);
        }
}

typedef struct {
    int64_t *hits;
    int64_t n;
} tp_ctx;
static void tp_fn(void *c, int32_t ith, int32_t nth) {
    tp_ctx *x = c;
    for (int64_t i = ith; i < x->n; i += nth) x->hits[i]++;
}

static void test_threadpool(void) {
    for (int32_t nt = 1; nt <= 4; nt++) {
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
        /* The single-threaded wasm build cannot start threads: it must say so, not hang. */
        if (nt > 1) {
            CHECK(!nbl_threadpool_new(nt), "single-threaded wasm: a pool of %d is refused", nt);
            continue;
        }
#endif
        nbl_threadpool *tp = nbl_threadpool_new(nt);
        CHECK(tp && nbl_threadpool_size(tp) == nt, "pool of %d", nt);
        int64_t hits[100] = {0};
        tp_ctx c = {hits, 100};
        for (int r = 0; r < 500; r++) nbl_threadpool_run(tp, tp_fn, &c);
        usleep(30000); /* long enough for workers to go to sleep: the wake path must work too */
        for (int r = 0; r < 3; r++) {
            nbl_threadpool_run(tp, tp_fn, &c);
            usleep(5000);
        }
        int ok = 1;
        for (int i = 0; i < 100; i++) ok &= hits[i] == 503;
        CHECK(ok, "every index run exactly once per job with %d threads", nt);
        nbl_threadpool_free(tp);
    }
    int64_t hits[10] = {0};
    tp_ctx c = {hits, 10};
    nbl_threadpool_run(NULL, tp_fn, &c);
    CHECK(hits[9] == 1, "NULL pool runs on the caller");
}

int main(void) {
    const nbl_kernels *all[] = {nbl_kernels_ref(), nbl_kernels_avx2(), nbl_kernels_avx512(),
                                nbl_kernels_amx(), nbl_kernels_neon(), nbl_kernels_wasm()};
    for (size_t i = 0; i < 6; i++)
        if (all[i]) tables[n_tables++] = all[i];
    printf("ISA tables:");
    for (int i = 0; i < n_tables; i++) printf(" %s", tables[i]->name);
    printf(" (best: %s)\n", nbl_kernels_best()->name);
    test_threadpool();
    test_types();
    test_extremes();
    test_special_scales();
    test_regroup();
    test_helpers();
    test_attn_primitives();
    test_rope();
    nbl_threadpool *tp = nbl_threadpool_new(2);
    test_matmul(NULL);
    test_matmul(tp);
    test_attention(NULL);
    test_attention(tp);
    nbl_threadpool_free(tp);
    return test_done();
}
