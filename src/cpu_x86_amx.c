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
    _tile_loadconfig(&c);
}

typedef struct amx_job {
    uint32_t wtype, base; /* base: the ggml type of a regrouped wtype (repack.c) */
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
    uint8_t *stage; /* per thread: [RB][K] int8 weights, [nb][RB] float scales, then for a
                     * regrouped type RB rows in the base layout */
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
/* Whole regrouped groups (repack.c) straight to int8 rows: per group-block one scale conversion
 * for 16 rows, and each 4 chunks transposed from [chunk][row] to [row][chunk] dwords. */
TA static void amx_unpack_r16(const amx_job *j, int64_t r0, int8_t *a, float *s) {
    const int64_t K = j->K, nb = j->nb;
    const int q8 = j->base == NBL_TYPE_Q8_0;
    const size_t GB = q8 ? 544 : 288;
    const __m512i m4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    _Alignas(64) uint8_t t[2][4][64];
    for (int h = 0; h < RB / 16; h++) {
        const uint8_t *grp = j->W + (size_t)(r0 + 16 * h) * j->bw;
        int8_t *ah = a + (size_t)16 * h * K;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *g = grp + (size_t)b * GB;
            _mm512_storeu_ps(s + b * RB + 16 * h, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g)));
            for (int q = 0; q < (q8 ? 2 : 1); q++) {
                __m512i c[4];
                for (int i = 0; i < 4; i++) c[i] = _mm512_loadu_si512((const void *)(g + 32 + 64 * (4 * q + i)));
                const __m512i t0 = _mm512_unpacklo_epi32(c[0], c[1]), t1 = _mm512_unpackhi_epi32(c[0], c[1]);
                const __m512i t2 = _mm512_unpacklo_epi32(c[2], c[3]), t3 = _mm512_unpackhi_epi32(c[2], c[3]);
                /* u[k], 128-bit lane L: row 4L + k's dwords from chunks 4q .. 4q+3 */
                __m512i u[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                                _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
                for (int k = 0; k < 4; k++) {
                    if (q8) {
                        _mm512_store_si512((void *)t[0][k], u[k]);
                    } else {
                        _mm512_store_si512((void *)t[0][k], _mm512_sub_epi8(_mm512_and_si512(u[k], m4), eight));
                        _mm512_store_si512((void *)t[1][k], _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(u[k], 4), m4), eight));
                    }
                }
                for (int r = 0; r < 16; r++) {
                    int8_t *o = ah + (size_t)r * K + 32 * b;
                    if (q8) {
                        memcpy(o + 16 * q, t[0][r & 3] + 16 * (r >> 2), 16);
                    } else {
                        memcpy(o, t[0][r & 3] + 16 * (r >> 2), 16);
                        memcpy(o + 16, t[1][r & 3] + 16 * (r >> 2), 16);
                    }
                }
            }
        }
    }
}

TA static void amx_unpack(const amx_job *j, int64_t r0, int direct, int8_t *a, float *s) {
    const int64_t K = j->K, nb = j->nb;
    const uint8_t *W = j->W + (size_t)r0 * j->bw;
    if (j->base != j->wtype && r0 + RB <= j->M / 16 * 16) {
        amx_unpack_r16(j, r0, a, s);
        return;
    }
    if (j->base != j->wtype) { /* regrouped, a chunk with the last rows: back to the base layout */
        uint8_t *rows = (uint8_t *)(s + nb * RB);
        nbl_r16_rows(j->wtype, j->W, j->M, K, r0, (j->M - r0 < RB ? j->M - r0 : RB), rows);
        W = rows;
    }
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int r = 0; r < RB; r++) {
        int8_t *ar = a + (size_t)r * K;
        if (r0 + r >= j->M) {
            memset(ar, 0, (size_t)K);
            for (int64_t b = 0; b < nb; b++) s[b * RB + r] = 0.0f;
            continue;
        }
        const uint8_t *row = W + (size_t)r * j->bw;
        for (int64_t b = 0; b < nb; b++) {
            uint16_t h;
            if (direct) {
                memcpy(&h, row + (size_t)b * 34, 2);
            } else if (j->base == NBL_TYPE_Q4_0) {
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

/* Block bb's product into tile C (from tiles 4 = A and 5 = B), stored to cb[C]; nothing past
 * the last block. Tile numbers must be constants. */
#define AMX_BLOCK(C, bb)                                                         \
    do {                                                                         \
        if ((bb) < nb) {                                                         \
            _tile_loadd(4, ar + ab * (size_t)(bb), as);                          \
            _tile_loadd(5, xg + (size_t)(bb) * 512, 64);                         \
            _tile_zero(C);                                                       \
            _tile_dpbssd(C, 4, 5);                                               \
            _tile_stored(C, cb[C], 64);                                          \
        }                                                                        \
    } while (0)
#define AMX_POST(C, bb)                                                          \
    do {                                                                         \
        if ((bb) < nb) amx_post(acc, cb[C], dxg + (size_t)(bb) * 16, swr + (size_t)(bb) * RB); \
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
                const int8_t *ar = a0 + (size_t)16 * rh * as;
                const float *swr = sw + 16 * rh;
                __m512 acc[16];
                for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
                const int pf_here = g == 0 && rh == 0 && pf;
                AMX_BLOCK(0, 0);
                AMX_BLOCK(1, 1);
                AMX_BLOCK(2, 2);
                for (int64_t b = 0; b < nb; b += 4) {
                    /* the next chunk's weights, a slice per 4 blocks of the first pass */
                    if (pf_here)
                        for (size_t o = (size_t)b * pf_step; o < (size_t)(b + 4) * pf_step && o < pf_bytes; o += 64)
                            _mm_prefetch((const char *)pf + o, _MM_HINT_T1);
                    AMX_BLOCK(3, b + 3);
                    AMX_POST(0, b);
                    AMX_BLOCK(0, b + 4);
                    AMX_POST(1, b + 1);
                    AMX_BLOCK(1, b + 5);
                    AMX_POST(2, b + 2);
                    AMX_BLOCK(2, b + 6);
                    AMX_POST(3, b + 3);
                }
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

/* Where the scratch parts go, 64-byte aligned from base: the re-laid activations (xv), their
 * scales (dx), then one weight stage per thread. Returns the bytes used past base. */
typedef struct amx_layout {
    size_t xv, dx, stage, stage_bytes, total;
} amx_layout;

static amx_layout amx_layout_for(int64_t K, int64_t T, int32_t nth, size_t rows_bytes) {
    const size_t nb = (size_t)(K / 32), G = (size_t)((T + 15) / 16);
    amx_layout l;
    l.xv = 0;
    l.dx = G * nb * 512;
    l.stage = (l.dx + G * nb * 16 * sizeof(float) + 63) & ~(size_t)63;
    l.stage_bytes = ((size_t)RB * (size_t)K + nb * RB * sizeof(float) + rows_bytes + 63) & ~(size_t)63;
    l.total = l.stage + l.stage_bytes * (size_t)nth;
    return l;
}

/* Bytes of scratch amx_mm needs (the layout, plus room to align its start), enough for a
 * regrouped type's rows (RB rows of Q8_0, the larger base). */
static size_t amx_scratch(int64_t K, int64_t T, int32_t nth) {
    return amx_layout_for(K, T, nth, (size_t)RB * (size_t)nbl_row_bytes(NBL_TYPE_Q8_0, K)).total + 64;
}

static void amx_mm(nbl_threadpool *tp, uint32_t wtype, const void *W, size_t bw, int64_t M, int64_t K,
                   const uint8_t *xq, size_t bx, int64_t T, float *Y, int64_t ldy, const float *bias,
                   uint8_t *scratch) {
    amx_job j;
    memset(&j, 0, sizeof j);
    j.wtype = wtype;
    j.base = nbl_layout_base(wtype);
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
    const amx_layout l = amx_layout_for(K, T, nbl_threadpool_size(tp), j.base != wtype ? (size_t)RB * bw : 0);
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    j.xv = p + l.xv;
    j.dx = (float *)(p + l.dx);
    j.stage = p + l.stage;
    j.stage_bytes = l.stage_bytes;
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
