/* kernels.h — the CPU compute layer: persistent thread pool, quantized matrix products and the
 * fused helpers the forward pass needs (norm, activation, softmax, rope, attention). Each kernel
 * has a portable scalar reference (cpu_ref.c); ISA files (cpu_x86.c, cpu_arm.c, cpu_wasm.c) fill a
 * table of faster versions that tests/test_kernels.c checks against the reference. */
#ifndef NBL_KERNELS_H
#define NBL_KERNELS_H

#include "nbl_impl.h"

#include <stddef.h>
#include <stdint.h>

/* ---- threadpool.c ------------------------------------------------------------------------ */

typedef struct nbl_threadpool nbl_threadpool;
/* n_threads total including the caller (0 or less: number of online CPUs); NULL on failure. */
nbl_threadpool *nbl_threadpool_new(int32_t n_threads);
void nbl_threadpool_free(nbl_threadpool *tp);
int32_t nbl_threadpool_size(const nbl_threadpool *tp); /* 1 when tp is NULL */
/* Runs fn(ctx, ith, nth) on every thread (the caller is thread 0) and returns when all are done.
 * tp may be NULL (runs fn(ctx, 0, 1)). Not reentrant: fn must not call run on the same pool.
 * Idle workers spin briefly before sleeping, so back-to-back calls wake them in well under a
 * microsecond. */
void nbl_threadpool_run(nbl_threadpool *tp, void (*fn)(void *ctx, int32_t ith, int32_t nth),
                        void *ctx);
/* Scratch memory owned by the pool for the duration of one top-level call (grown on demand,
 * 64-byte aligned). NULL on allocation failure. Only the calling thread may call this, between
 * runs. */
void *nbl_threadpool_scratch(nbl_threadpool *tp, size_t bytes);

/* ---- matmul.c ---------------------------------------------------------------------------- */

/* Y[t*ldy + r] = dot(row r of W, X[t*ldx .. +K]) for r < M, t < T.
 * W: M rows of K elements of type wtype, rows contiguous (nbl_row_bytes(wtype, K) bytes each).
 * Follows llama.cpp's numerics: activations are quantized per block to the weight type's
 * vec-dot type (Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for K-quants; F16/BF16
 * weights: activations rounded to f16/bf16; F32: plain) and the block products are integer.
 * T == 1 is the decode mat-vec (weights streamed once, rows split across threads); T > 1 is a
 * blocked matrix-matrix product (each weight block decoded once per tile of columns). */
nbl_status nbl_matmul(nbl_threadpool *tp, uint32_t wtype, const void *W, int64_t M, int64_t K,
                      const float *X, int64_t ldx, int64_t T, float *Y, int64_t ldy,
                      nbl_error *err);
/* Same, then Y[t*ldy + r] += bias[r] when bias is not NULL. */
nbl_status nbl_matmul_bias(nbl_threadpool *tp, uint32_t wtype, const void *W, const float *bias,
                           int64_t M, int64_t K, const float *X, int64_t ldx, int64_t T,
                           float *Y, int64_t ldy, nbl_error *err);
/* Activation type a weight type's dot products take (NBL_TYPE_Q8_0, _Q8_1, _Q8_K, _F16, _BF16,
 * _F32); -1 when the weight type cannot be multiplied. */
int32_t nbl_vec_dot_type(uint32_t wtype);

/* ---- fused helpers (matmul.c dispatches them to the best ISA) ------------------------------ */

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * (w ? w[i] : 1), for each of n_rows rows of n floats.
 * x and y rows are stride floats apart; y may equal x. */
void nbl_rmsnorm_f32(float *y, const float *x, const float *w, int64_t n, int64_t n_rows,
                     int64_t stride, float eps);
/* y[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i]; y may equal g or u. */
void nbl_silu_mul_f32(float *y, const float *g, const float *u, int64_t n);
/* In-place softmax of x[0..n): exp(x - max) / sum. */
void nbl_softmax_f32(float *x, int64_t n);
/* y[i] += x[i] (residual add). */
void nbl_add_f32(float *y, const float *x, int64_t n);

/* mode: NBL_ROPE_NORM or NBL_ROPE_NEOX (enum nbl_rope_mode in nbl_impl.h, ggml's values). */
/* Rotary embedding in place on x: [T][n_head][head_dim], row t starting at x + t*stride_t.
 * pos[t] is the absolute position of row t; mode is enum nbl_rope_mode. The first n_rot dims of each head are rotated:
 * NEOX pairs (i, i + n_rot/2), NORM pairs (2i, 2i + 1); theta_i = pos * freq_scale * base^(-2i/n_rot)
 * / (freq_factors ? freq_factors[i] : 1), computed in float as ggml does. */
void nbl_rope_f32(float *x, int64_t T, int32_t n_head, int32_t head_dim, int64_t stride_t,
                  const int32_t *pos, int32_t n_rot, int32_t mode, float freq_base,
                  float freq_scale, const float *freq_factors);

/* Causal grouped-query attention for T query rows against a KV cache.
 * Query row t sits at absolute position pos0 + t and sees keys 0 .. pos0 + t.
 * K and V hold at least pos0 + T positions; element (p, kv_head h, d) is at
 * k[p*kv_stride_pos + h*kv_stride_head + d] (same for v), in kv_type (NBL_TYPE_F16 or
 * NBL_TYPE_F32). The layout llama.cpp uses is kv_stride_pos = n_head_kv*head_dim,
 * kv_stride_head = head_dim; f16 halves the bytes read per token.
 * Query head h uses KV head h / (n_head / n_head_kv).
 * q: [T][n_head][head_dim] with rows q_stride_t floats apart; out likewise (out_stride_t).
 * out = softmax(q.k^T * scale + mask) v, online (flash) softmax: K and V are each read once per
 * group of query heads sharing a KV head and per block of query rows. */
typedef struct nbl_attn_args {
    int32_t T, n_head, n_head_kv, head_dim;
    int32_t pos0;
    float scale;
    const float *q;
    int64_t q_stride_t;
    const void *k, *v;
    uint32_t kv_type;
    int64_t kv_stride_pos, kv_stride_head;
    float *out;
    int64_t out_stride_t;
} nbl_attn_args;
nbl_status nbl_attention(nbl_threadpool *tp, const nbl_attn_args *a, nbl_error *err);

/* ---- ISA kernel tables (cpu_ref.c, cpu_x86.c, cpu_arm.c, cpu_wasm.c) ----------------------- */

/* Converts one row of K floats to an activation type (a vec-dot type), in the table's layout. */
typedef void (*nbl_from_f32_fn)(const float *x, void *y, int64_t K);
/* A tile of dot products: y[c*ldy + r] = dot(w row r, x row c) for r < nr, c < nc.
 * w rows are bw bytes apart (weight type), x rows bx bytes apart (already converted to the
 * vec-dot type). nr <= tile_m, nc <= tile_n of the table entry; any smaller nr/nc works. */
typedef void (*nbl_tile_fn)(int64_t K, const void *w, size_t bw, int32_t nr, const void *x,
                            size_t bx, int32_t nc, float *y, int64_t ldy);

/* Packed prefill path: pack decodes nr <= 8 weight rows into a panel of unsigned 8-bit values
 * interleaved 4 bytes per row (so one SIMD lane holds one row), with a float scale (and, when
 * the type has minimums, an offset) per row and block of pack_blk elements; gemm multiplies a
 * panel by nc activation rows: y[c*ldy + r] for r < nr. The panel is decoded once and reused for
 * every column, which is what makes prefill compute-bound instead of decode-bound. */
typedef void (*nbl_pack_fn)(int64_t K, const void *w, size_t bw, int32_t nr, uint8_t *panel);
typedef void (*nbl_gemm_fn)(const uint8_t *panel, int64_t K, int32_t blk, int32_t has_min,
                            int32_t off, uint32_t xtype, const uint8_t *x, size_t bx, int32_t nc,
                            float *y, int64_t ldy, int32_t nr);
/* A whole product with the table's own blocking (AMX tiles), for T >= mm_min_t rows of
 * activations already converted by from_f32: Y[t*ldy + r] = dot(W row r, x row t) (+ bias[r]),
 * run on the pool; scratch holds mm_scratch(K, T, threads) bytes. */
typedef void (*nbl_mm_fn)(nbl_threadpool *tp, uint32_t wtype, const void *W, size_t bw, int64_t M, int64_t K,
                          const uint8_t *xq, size_t bx, int64_t T, float *Y, int64_t ldy, const float *bias,
                          uint8_t *scratch);
#define NBL_PANEL_ROWS 8
/* Bytes of a panel for K elements in blocks of blk. */
static inline size_t nbl_panel_bytes(int64_t K, int32_t blk, int32_t has_min) {
    return (size_t)(K / blk) * ((size_t)blk * NBL_PANEL_ROWS + 4 * NBL_PANEL_ROWS * (has_min ? 2 : 1));
}

typedef struct nbl_kernels {
    const char *name;                         /* "ref", "avx2", "avx512", "neon", "wasm" */
    /* Activation rows are in the table's own layout (x_bytes[t] bytes per block of vec-dot type
     * t; 0 means ggml's block layout), so a table's from_f32 and tile entries go together. */
    nbl_from_f32_fn from_f32[NBL_TYPE_COUNT]; /* indexed by vec-dot type; NULL: use ref */
    int32_t x_bytes[NBL_TYPE_COUNT];
    nbl_tile_fn tile[NBL_TYPE_COUNT];         /* indexed by weight type; NULL: use ref */
    int16_t tile_m[NBL_TYPE_COUNT], tile_n[NBL_TYPE_COUNT];
    /* Decode (one activation row) walks a chunk of rows as this many interleaved streams, tile by
     * tile from each in turn (0 or 1: in order). For a core that cannot prefetch (wasm), more
     * streams keep more of the hardware prefetcher's lines in flight. */
    int8_t dec_streams;
    nbl_pack_fn pack[NBL_TYPE_COUNT];         /* NULL: prefill uses tiles */
    /* pack_off: the panel holds value + off (a power of two, or 0 for types with minimums). */
    int8_t pack_blk[NBL_TYPE_COUNT], pack_min[NBL_TYPE_COUNT];
    uint8_t pack_off[NBL_TYPE_COUNT];
    nbl_gemm_fn gemm;
    /* The panel pack[base] makes of rows 8*half .. 8*half+7 of a whole regrouped group (the same
     * bytes), or NULL: regrouped weights then take the tiles for prefill too. */
    void (*pack_r16)(uint32_t rtype, int64_t K, const uint8_t *group, int32_t half, uint8_t *panel);
    nbl_mm_fn mm[NBL_TYPE_COUNT];             /* NULL: the packed path or tiles */
    /* 1: weights of this base type run faster regrouped (repack.c), so models loaded for this
     * table are; the regrouped type's tile must then be the table's own. */
    int8_t regroup[NBL_TYPE_COUNT];
    int32_t mm_min_t;
    size_t (*mm_scratch)(int64_t K, int64_t T, int32_t nth);
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*silu_mul)(float *y, const float *g, const float *u, int64_t n);
    void (*softmax)(float *x, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
    /* dot(q, k) for n floats, k in f16 or f32 (attention scores); y += a*v (value mixing). */
    float (*dot_f32_f16)(const float *q, const uint16_t *k, int64_t n);
    float (*dot_f32)(const float *q, const float *k, int64_t n);
    void (*axpy_f16)(float *y, float a, const uint16_t *v, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *v, int64_t n);
    /* Attention on a block of nk keys already in f32, rows D floats apart (D a multiple of 8):
     * attn_qk: s[j] = scale * dot(q, k + j*D); attn_pv: o[0..D) += sum_j p[j] * v[j*D .. +D);
     * exp_sum: s[j] = exp(s[j] - m), returns the sum; f16_to_f32 converts n halves. */
    void (*attn_qk)(const float *q, const float *k, int64_t nk, int64_t D, float scale, float *s);
    void (*attn_pv)(float *o, const float *p, const float *v, int64_t nk, int64_t D);
    float (*exp_sum)(float *s, int64_t n, float m);
    void (*f16_to_f32)(float *dst, const uint16_t *src, int64_t n);
} nbl_kernels;

/* ---- repack.c: regrouped layouts (NBL_TYPE_*_R16; the layout is described there) ---------- */

/* The ggml type a layout regroups (type itself for a ggml type). */
uint32_t nbl_layout_base(uint32_t type);
/* The regrouped type of a ggml type, -1 when it has none. */
int32_t nbl_layout_r16(uint32_t base);
/* M rows of K elements in the base layout (src) -> the regrouped layout (dst, same size). */
void nbl_r16_pack(uint32_t rtype, const uint8_t *src, int64_t M, int64_t K, uint8_t *dst);
/* Block b of row r (0..15) of a whole group, in the base layout. */
void nbl_r16_block(uint32_t rtype, const uint8_t *group, int64_t b, int32_t r, uint8_t *blk);
/* nbl_r16_pack within the rows' own memory, a group at a time through scratch (16 rows' bytes). */
void nbl_r16_pack_inplace(uint32_t rtype, uint8_t *rows, int64_t M, int64_t K, uint8_t *scratch);
/* Row r of a regrouped matrix of M rows, dequantized (K floats). */
void nbl_r16_dequant_row(uint32_t rtype, const uint8_t *data, int64_t M, int64_t K, int64_t r, float *dst);

/* Every table is complete: entries an ISA does not speed up are copied from the reference. */
const nbl_kernels *nbl_kernels_ref(void);
/* NULL when the ISA is not compiled in or not supported by this CPU. */
const nbl_kernels *nbl_kernels_avx2(void);   /* AVX2 + FMA + F16C */
const nbl_kernels *nbl_kernels_avx512(void); /* AVX-512 F/BW/VL + VNNI */
const nbl_kernels *nbl_kernels_amx(void);    /* the AVX-512 table + AMX-INT8 prefill products */
const nbl_kernels *nbl_kernels_neon(void);
const nbl_kernels *nbl_kernels_wasm(void);
/* cpu_x86_ops.c: fills t's elementwise and attention entries with the AVX2 versions (call only
 * when the CPU has AVX2, FMA and F16C). */
void nbl_x86_fill_ops(nbl_kernels *t);
/* The fastest table available (NBL_ISA=ref|avx2|avx512|amx|neon|wasm in the environment forces one
 * when available). Chosen once, thread-safe. */
const nbl_kernels *nbl_kernels_best(void);
/* Fills the NULL entries of t from the reference table (a table with its own activation layout
 * must provide every tile that uses it). */
void nbl_kernels_fill(nbl_kernels *t);

#endif
