/* cpu_x86_amx.c — prefill products on Intel AMX (Sapphire Rapids and later) for the symmetric
 * 32-element types Q4_0 and Q8_0. One tile instruction multiplies 16 weight rows by 16 tokens over
 * a 32-element block (8,192 int8 products), where AVX-512 VNNI does 64 per instruction; what is
 * left is scaling each block's integer sums by the weight and activation scales in float, which
 * AVX-512 does on the tile stores. The "amx" table is the AVX-512 table plus these products, so
 * NBL_ISA=avx512 measures the difference.
 *
 * Layout: A = 16 weight rows of a 32-row chunk, unpacked once per chunk to int8 (value - 8 for
 * Q4_0; Q8_0 is read in place) with their scales in float; B = the activations of 16 tokens per
 * tile, re-laid once per product in the tiles' VNNI order (row k/4 holds 4 consecutive k of each
 * token). A C tile holds 16 rows x 16 tokens; their float sums stay in 16 registers. */
#include "kernels.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TA __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

enum { RB = 32 }; /* weight rows per chunk (unpacked once, then used by every token) */

typedef struct tilecfg {
    uint8_t palette, start_row, rsv[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* Tiles 0-3: C (16 rows x 16 tokens, int32), a ring; 4: A (16 weight rows x 32); 5: B (32 x 16
 * tokens, VNNI order). */
TA static void tiles_config(void) {
    _Alignas(64) tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 4; i++) c.rows[i] = 16, c.colsb[i] = 64;
    c.rows[4] = 16, c.colsb[4] = 32;
    c.rows[5] = 8, c.colsb[5] = 64;
    /* Not _tile_loadconfig: GCC's macro tells the compiler it reads 8 bytes, so the stores of the
     * rows and column widths above may be dropped as dead. This operand is the whole struct. */
    __asm__ volatile("ldtilecfg %0" : : "m"(c));
}

typedef struct amx_job {
    uint32_t wtype;
    const nbl_kernels *tail; /* regrouped types: the tile for the rows after the last group */
    const uint8_t *W;
    size_t bw;
    int64_t M, K, T, nb, G; /* G: token groups of 16 */
    const uint8_t *xq;
    size_t bx;
    float *Y;
    int64_t ldy;
    const float *bias;
    uint8_t *xv;  /* [G][nb][512] activations in VNNI order */
    float *dx;    /* [G][nb][16] their scales (0 past T) */
    uint8_t *stage; /* per thread: [RB][K] int8 weights, then [nb][RB] float scales */
    size_t stage_bytes;
} amx_job;

static uint32_t ld32u(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Activations of token group g into the B tiles' order; the xrow layout of the Q8_0 activation
 * rows is K int8 values, then nb float scales. */
static void amx_relayout(void *ctx, int32_t ith, int32_t nth) {
    amx_job *j = ctx;
    for (int64_t g = ith; g < j->G; g += nth)
        for (int64_t b = 0; b < j->nb; b++) {
            uint8_t *o = j->xv + ((size_t)g * j->nb + b) * 512;
            float *d = j->dx + ((size_t)g * j->nb + b) * 16;
            for (int m = 0; m < 16; m++) {
                const int64_t t = g * 16 + m;
                const uint8_t *x = t < j->T ? j->xq + (size_t)t * j->bx : NULL;
                for (int kk = 0; kk < 8; kk++) {
                    const uint32_t v = x ? ld32u(x + b * 32 + 4 * kk) : 0;
                    memcpy(o + kk * 64 + m * 4, &v, 4);
                }
                float s = 0.0f;
                if (x) memcpy(&s, x + j->K + 4 * b, 4);
                d[m] = s;
            }
        }
}

/* r[i][k] -> r[k][i] for 16 x 16 floats: pairs, then quads within 128-bit lanes, then lanes. */
TA static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + c], lane L: column 4L + c of rows 4i..4i+3 */
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* Rows [r0, r0 + RB) of W as int8 (zero past M) and their block scales. Whole chunks of Q8_0
 * need no copy (direct = 1: the tiles load the quants in place), only their scales. */
TA static void amx_unpack(const amx_job *j, int64_t r0, int direct, int8_t *a, float *s) {
    const int64_t K = j->K, nb = j->nb;
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int r = 0; r < RB; r++) {
        int8_t *ar = a + (size_t)r * K;
        if (r0 + r >= j->M) {
            memset(ar, 0, (size_t)K);
            for (int64_t b = 0; b < nb; b++) s[b * RB + r] = 0.0f;
            continue;
        }
        const uint8_t *row = j->W + (size_t)(r0 + r) * j->bw;
        for (int64_t b = 0; b < nb; b++) {
            uint16_t h;
            if (direct) {
                memcpy(&h, row + (size_t)b * 34, 2);
            } else if (j->wtype == NBL_TYPE_Q4_0) {
                const uint8_t *blk = row + (size_t)b * 18;
                const __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
                _mm_storeu_si128((__m128i *)(ar + 32 * b), _mm_sub_epi8(_mm_and_si128(q, m4), eight));
                _mm_storeu_si128((__m128i *)(ar + 32 * b + 16),
                                 _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight));
                memcpy(&h, blk, 2);
            } else {
                const uint8_t *blk = row + (size_t)b * 34;
                _mm256_storeu_si256((__m256i *)(ar + 32 * b), _mm256_loadu_si256((const __m256i *)(blk + 2)));
                memcpy(&h, blk, 2);
            }
            s[b * RB + r] = _cvtsh_ss(h);
        }
    }
}

/* acc[r] += C[r] (int32, 16 tokens) * dx (the tokens' scales) * w[r] (the row's scale). */
#define AI_TA __attribute__((always_inline, target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
AI_TA static inline void amx_post(__m512 acc[16], const int32_t (*c)[16], const float *dx, const float *w) {
    const __m512 d = _mm512_loadu_ps(dx);
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[r])), d), _mm512_set1_ps(w[r]), acc[r]);
}

/* Block bb's product into tile C, stored to cb[C]; nothing past the last block. A (tile 4) from
 * ta + bb * ta_step, rows ta_stride apart; B (tile 5) from tb + bb * tb_step, 64 bytes a row.
 * Tile numbers must be constants. */
#define AMX_BLOCK(C, bb)                                                         \
    do {                                                                         \
        if ((bb) < nb) {                                                         \
            _tile_loadd(4, ta + ta_step * (size_t)(bb), ta_stride);              \
            _tile_loadd(5, tb + tb_step * (size_t)(bb), 64);                     \
            _tile_zero(C);                                                       \
            _tile_dpbssd(C, 4, 5);                                               \
            _tile_stored(C, cb[C], 64);                                          \
        }                                                                        \
    } while (0)
/* acc[r] += block bb's sums (cb[C]) * pv[bb * 16 + lane] * ps[bb * ps_step + r] */
#define AMX_POST(C, bb)                                                          \
    do {                                                                         \
        if ((bb) < nb) amx_post(acc, cb[C], pv + (size_t)(bb) * 16, ps + (size_t)(bb) * ps_step); \
    } while (0)
/* Every block through the ring of C tiles 0-3: block b is scaled three blocks after its
 * product was issued. With pf set, pf_bytes at pf are prefetched a slice per 4 blocks. */
#define AMX_RING(pf, pf_step, pf_bytes)                                          \
    do {                                                                         \
        AMX_BLOCK(0, 0);                                                         \
        AMX_BLOCK(1, 1);                                                         \
        AMX_BLOCK(2, 2);                                                         \
        for (int64_t b = 0; b < nb; b += 4) {                                    \
            if (pf)                                                              \
                for (size_t o = (size_t)b * (pf_step); o < (size_t)(b + 4) * (pf_step) && o < (pf_bytes); o += 64) \
                    _mm_prefetch((const char *)(pf) + o, _MM_HINT_T1);           \
            AMX_BLOCK(3, b + 3);                                                 \
            AMX_POST(0, b);                                                      \
            AMX_BLOCK(0, b + 4);                                                 \
            AMX_POST(1, b + 1);                                                  \
            AMX_BLOCK(1, b + 5);                                                 \
            AMX_POST(2, b + 2);                                                  \
            AMX_BLOCK(2, b + 6);                                                 \
            AMX_POST(3, b + 3);                                                  \
        }                                                                        \
    } while (0)

/* 16 weight rows x 16 tokens at a time, the float sums in registers. A vector load right after a
 * tile store waits for the store to finish, so block b is scaled three blocks after its product
 * was issued: the C tiles 0-3 form a ring and the tile unit stays ahead of AVX-512. */
TA static void amx_rows(void *ctx, int32_t ith, int32_t nth) {
    amx_job *j = ctx;
    const int64_t K = j->K, nb = j->nb;
    int8_t *a = (int8_t *)(j->stage + (size_t)ith * j->stage_bytes);
    float *sw = (float *)(a + (size_t)RB * K);
    _Alignas(64) int32_t cb[4][16][16];
    tiles_config();
    const int64_t n_chunks = (j->M + RB - 1) / RB;
    /* Chunks ith, ith + nth, ...: each thread knows its next chunk and prefetches it while it
     * computes this one (the weights stream from memory once; the compute runs from cache). */
    for (int64_t ch = ith; ch < n_chunks; ch += nth) {
        const int64_t r0 = ch * RB;
        const int direct = j->wtype == NBL_TYPE_Q8_0 && r0 + RB <= j->M;
        amx_unpack(j, r0, direct, a, sw);
        const int8_t *a0 = direct ? (const int8_t *)(j->W + (size_t)r0 * j->bw + 2) : a;
        const size_t as = direct ? j->bw : (size_t)K, ab = direct ? 34 : 32;
        const int64_t nx = ch + nth < n_chunks ? ch + nth : -1;
        const uint8_t *pf = nx >= 0 ? j->W + (size_t)nx * RB * j->bw : NULL;
        const size_t pf_bytes = nx >= 0 ? (size_t)((j->M - nx * RB < RB ? j->M - nx * RB : RB)) * j->bw : 0;
        const size_t pf_step = (pf_bytes / (size_t)nb + 63) & ~(size_t)63;
        for (int64_t g = 0; g < j->G; g++) {
            const uint8_t *xg = j->xv + (size_t)g * nb * 512;
            const float *dxg = j->dx + (size_t)g * nb * 16;
            for (int rh = 0; rh < 2; rh++) {
                const int64_t rb = r0 + 16 * rh;
                if (rb >= j->M) break;
                /* A: the weight rows; B: the tokens; scaled by the tokens' and rows' scales */
                const int8_t *ta = a0 + (size_t)16 * rh * as;
                const size_t ta_stride = as, ta_step = ab, tb_step = 512, ps_step = RB;
                const uint8_t *tb = xg;
                const float *pv = dxg, *ps = sw + 16 * rh;
                __m512 acc[16];
                for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
                /* the next chunk's weights, during the first pass */
                AMX_RING(g == 0 && rh == 0 ? pf : NULL, pf_step, pf_bytes);
                /* acc[row][token] -> Y[token][row], inside M and T only. */
                const int nr = (int)(j->M - rb < 16 ? j->M - rb : 16);
                const __mmask16 mk = (__mmask16)((1u << nr) - 1);
                const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + rb) : _mm512_setzero_ps();
                transpose16(acc);
                for (int m = 0; m < 16; m++) {
                    const int64_t t = g * 16 + m;
                    if (t >= j->T) break;
                    _mm512_mask_storeu_ps(j->Y + (size_t)t * j->ldy + rb, mk, _mm512_add_ps(acc[m], bias));
                }
            }
        }
    }
    _tile_release();
}

/* ---- regrouped weights (repack.c) ----------------------------------------------------------
 * A regrouped group-block is already a B tile: row k/4 holds 4 consecutive k of each of the 16
 * weight rows, 64 bytes. So the roles swap: A is 16 tokens x 32 activations, read row-major, B
 * the weights (Q8_0 in place; Q4_0 nibbles widened once per group into the same order), and a C
 * tile is 16 tokens x 16 rows: the weight scales are one vector per block and each token's sums
 * are stored as they are, without a transpose. */

/* Activations of token group g row-major for A tiles: xv [G][16][K] int8 (zero rows past T),
 * dx [G][nb][16] their scales. */
static void amx_relayout_rows(void *ctx, int32_t ith, int32_t nth) {
    amx_job *j = ctx;
    for (int64_t g = ith; g < j->G; g += nth)
        for (int m = 0; m < 16; m++) {
            const int64_t t = g * 16 + m;
            uint8_t *o = j->xv + ((size_t)g * 16 + (size_t)m) * (size_t)j->K;
            if (t < j->T) memcpy(o, j->xq + (size_t)t * j->bx, (size_t)j->K);
            else memset(o, 0, (size_t)j->K);
            for (int64_t b = 0; b < j->nb; b++) {
                float s = 0.0f;
                if (t < j->T) memcpy(&s, j->xq + (size_t)t * j->bx + j->K + 4 * b, 4);
                j->dx[((size_t)g * j->nb + b) * 16 + m] = s;
            }
        }
}

TA static void amx_rows_r16(void *ctx, int32_t ith, int32_t nth) {
    amx_job *j = ctx;
    const int64_t K = j->K, nb = j->nb, n_groups = j->M / 16;
    const int q8 = j->wtype == NBL_TYPE_Q8_0_R16;
    const size_t GB = q8 ? 544 : 288, gbytes = (size_t)nb * GB;
    uint8_t *stage = j->stage + (size_t)ith * j->stage_bytes; /* Q4_0: [nb][512] int8 */
    float *sw = (float *)(stage + (size_t)nb * 512);           /* [nb][16] weight scales */
    const __m512i m4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    _Alignas(64) int32_t cb[4][16][16];
    tiles_config();
    for (int64_t q = ith; q < n_groups; q += nth) {
        const uint8_t *grp = j->W + (size_t)q * 16 * j->bw;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *g = grp + (size_t)b * GB;
            _mm512_storeu_ps(sw + 16 * b, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g)));
            if (!q8)
                for (int c = 0; c < 4; c++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(g + 32 + 64 * c));
                    _mm512_store_si512((void *)(stage + 512 * b + 64 * c), _mm512_sub_epi8(_mm512_and_si512(v, m4), eight));
                    _mm512_store_si512((void *)(stage + 512 * b + 64 * (4 + c)),
                                       _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), eight));
                }
        }
        const uint8_t *wb = q8 ? grp + 32 : stage;
        const size_t wstep = q8 ? GB : 512;
        /* the next group's weights, a slice per 4 blocks of the first token group */
        const uint8_t *pf = q + nth < n_groups ? grp + (size_t)nth * gbytes : NULL;
        const size_t pf_step = (gbytes / (size_t)nb + 63) & ~(size_t)63;
        for (int64_t g = 0; g < j->G; g++) {
            /* A: the tokens (row-major); B: the weights; scaled by the rows' and tokens' scales */
            const int8_t *ta = (const int8_t *)(j->xv + (size_t)g * 16 * (size_t)K);
            const size_t ta_stride = (size_t)K, ta_step = 32, tb_step = wstep, ps_step = 16;
            const uint8_t *tb = wb;
            const float *pv = sw, *ps = j->dx + (size_t)g * nb * 16;
            __m512 acc[16];
            for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
            AMX_RING(g == 0 ? pf : NULL, pf_step, gbytes);
            const __m512 bias = j->bias ? _mm512_loadu_ps(j->bias + 16 * q) : _mm512_setzero_ps();
            for (int t = 0; t < 16 && g * 16 + t < j->T; t++)
                _mm512_storeu_ps(j->Y + (size_t)(g * 16 + t) * j->ldy + 16 * q, _mm512_add_ps(acc[t], bias));
        }
    }
    _tile_release();
    /* The rows after the last group are in the base layout: a few, through the decode tiles. */
    const int64_t M16 = n_groups * 16;
    if (ith == nth - 1 && M16 < j->M) {
        const uint32_t base = nbl_layout_base(j->wtype);
        const int32_t nr = (int32_t)(j->M - M16);
        for (int64_t t = 0; t < j->T; t += 4) {
            const int32_t nc = (int32_t)(j->T - t < 4 ? j->T - t : 4);
            float *y = j->Y + (size_t)t * j->ldy + M16;
            j->tail->tile[base](K, j->W + (size_t)M16 * j->bw, j->bw, nr, j->xq + (size_t)t * j->bx, j->bx, nc, y, j->ldy);
            if (j->bias)
                for (int32_t c = 0; c < nc; c++)
                    for (int32_t r = 0; r < nr; r++) y[(size_t)c * j->ldy + r] += j->bias[M16 + r];
        }
    }
}

/* Where the scratch parts go, 64-byte aligned from base: the re-laid activations (xv), their
 * scales (dx), then one weight stage per thread. Returns the bytes used past base. */
typedef struct amx_layout {
    size_t xv, dx, stage, stage_bytes, total;
} amx_layout;

static amx_layout amx_layout_for(int64_t K, int64_t T, int32_t nth) {
    const size_t nb = (size_t)(K / 32), G = (size_t)((T + 15) / 16);
    amx_layout l;
    l.xv = 0;
    l.dx = G * nb * 512;
    l.stage = (l.dx + G * nb * 16 * sizeof(float) + 63) & ~(size_t)63;
    l.stage_bytes = ((size_t)RB * (size_t)K + nb * RB * sizeof(float) + 63) & ~(size_t)63;
    l.total = l.stage + l.stage_bytes * (size_t)nth;
    return l;
}

/* Bytes of scratch amx_mm needs (the layout, plus room to align its start). */
static size_t amx_scratch(int64_t K, int64_t T, int32_t nth) { return amx_layout_for(K, T, nth).total + 64; }

static void amx_mm(nbl_threadpool *tp, uint32_t wtype, const void *W, size_t bw, int64_t M, int64_t K,
                   const uint8_t *xq, size_t bx, int64_t T, float *Y, int64_t ldy, const float *bias,
                   uint8_t *scratch) {
    amx_job j;
    memset(&j, 0, sizeof j);
    j.wtype = wtype;
    j.W = W;
    j.bw = bw;
    j.M = M;
    j.K = K;
    j.T = T;
    j.nb = K / 32;
    j.G = (T + 15) / 16;
    j.xq = xq;
    j.bx = bx;
    j.Y = Y;
    j.ldy = ldy;
    j.bias = bias;
    const amx_layout l = amx_layout_for(K, T, nbl_threadpool_size(tp));
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    j.xv = p + l.xv;
    j.dx = (float *)(p + l.dx);
    j.stage = p + l.stage;
    j.stage_bytes = l.stage_bytes;
    if (nbl_layout_base(wtype) != wtype) {
        j.tail = nbl_kernels_avx512();
        nbl_threadpool_run(tp, amx_relayout_rows, &j);
        nbl_threadpool_run(tp, amx_rows_r16, &j);
        return;
    }
    nbl_threadpool_run(tp, amx_relayout, &j);
    nbl_threadpool_run(tp, amx_rows, &j);
}

/* AMX-TILE and AMX-INT8 in the CPU, tile state enabled by the OS, and (Linux) this process
 * allowed to use the tile data registers. */
static int amx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1) || !((d >> 25) & 1)) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0; /* OSXSAVE */
#ifdef SYS_arch_prctl
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) return 0;
#else
    return 0;
#endif
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & (3u << 17)) == (3u << 17);
}

static nbl_kernels T_AMX;
static int amx_ok = -1;

const nbl_kernels *nbl_kernels_amx(void) {
    if (amx_ok < 0) {
        const nbl_kernels *base = nbl_kernels_avx512();
        int ok = base && amx_usable();
        if (ok) {
            T_AMX = *base;
            T_AMX.name = "amx";
            T_AMX.mm[NBL_TYPE_Q4_0] = amx_mm;
            T_AMX.mm[NBL_TYPE_Q8_0] = amx_mm;
            T_AMX.mm[NBL_TYPE_Q4_0_R16] = amx_mm;
            T_AMX.mm[NBL_TYPE_Q8_0_R16] = amx_mm;
            T_AMX.mm_min_t = 16;
            T_AMX.mm_scratch = amx_scratch;
        }
        amx_ok = ok;
    }
    return amx_ok ? &T_AMX : NULL;
}

#else

const nbl_kernels *nbl_kernels_amx(void) { return NULL; }

#endif
