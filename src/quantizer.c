/* quantizer.c — float rows into every block format nbl_quant_row supports, byte for byte in
 * ggml's layouts. Scales (and mins) are searched for the least squared error, weighted by an
 * importance matrix when one is given; see "unbiased scales" below for the one deliberate
 * departure from least squares. */
#include "nbl_impl.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define H2F(x) nbl_fp16_to_f32(x)
#define F2H(x) nbl_f32_to_fp16(x)

#define GROUP_EPS 1e-15f

/* Search windows, in units of |inverse scale| * max|x| (i.e. levels given to the largest
 * element), and effort of the two-level K-quant searches. Each was measured on the fixtures'
 * tensors against its cost; formats with many levels gain from wide windows (more distinct
 * roundings to choose from), those with few hardly at all. */
#define WIN_Q8 123.0f, 128.0f /* Q8_0 */
#define WIN_SYM_LO 2.0f        /* Q4_0, Q5_0, Q3_K sub-blocks: nneg - 2 .. nneg + 1.5 */
#define WIN_SYM_HI 1.5f
#define WIN_Q6_LO 4.0f         /* Q6_K sub-blocks: 28 .. 33.5 */
#define WIN_IQ4 95.0f, 145.0f  /* IQ4_NL (table values -127..113) */
#define WIN_AFF_LO 2.0f        /* Q4_1, Q5_1 and K-quant sub-blocks: nmax - 2 .. nmax + 1 */
#define WIN_AFF_HI 1.0f
#define AFF_ITERS 2            /* affine: level / (d, m) refits after the sweep */
#define KS_ITERS 3             /* two-level: super-scale refits */
#define KA_ITERS 3

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves no fraction bits.
 * lrintf is a library call on baseline x86-64 and dominated the searches. (Needs float
 * arithmetic done in float and no -ffast-math, which would fold the two additions.) */
#if FLT_EVAL_METHOD == 0
static inline float rnd(float v) { return (v + 12582912.0f) - 12582912.0f; }
#else
static inline float rnd(float v) { return nearbyintf(v); }
#endif

/* rnd() to int, for any input: clamped to +-4e6, NaN taken as 0. */
static inline int nint(float v) {
    if (!(v == v)) return 0;
    v = v > 4e6f ? 4e6f : v < -4e6f ? -4e6f : v;
    return (int)rnd(v);
}
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- crossing sweeps ------------------------------------------------------------------------
 * For x ~ d * v[L] with sorted level values v, the error-minimising (d, L) has L = nearest
 * level of x / d, so it is among the assignments nearest(s * x) as the inverse scale s varies.
 * Those change only where some s * x[i] crosses a midpoint between levels: visiting the
 * crossings in order of s while updating sum(w x v) and sum(w v^2) scores every assignment in
 * a window of s exactly (least squares leaves sum(w x^2) - sum(w x v)^2 / sum(w v^2)).
 * Crossings are ordered by a counting sort into 32 buckets of s; within a bucket they come in
 * any order, and every intermediate state is still a real assignment to score, so only
 * assignments that exist strictly inside one bucket can be skipped (finer buckets, or a full
 * sort, measured no different on the fixtures). */

#define SWEEP_MAXN 32
#define SWEEP_MAXEV (SWEEP_MAXN * 24)
#define SWEEP_BUCKETS 32

typedef struct evbuf {
    int n, cnt[SWEEP_BUCKETS + 1];
    float s0, scale;
    uint8_t bk[SWEEP_MAXEV];
    uint16_t p[SWEEP_MAXEV]; /* element << 8 | new level */
} evbuf;

static void ev_init(evbuf *e, float s0, float s1) {
    e->n = 0;
    memset(e->cnt, 0, sizeof e->cnt);
    e->s0 = s0;
    e->scale = (float)SWEEP_BUCKETS / (s1 - s0);
}

/* 0 when full (the window is then cut short, never overrun). */
static inline int ev_add(evbuf *e, float s, int i, int level) {
    if (e->n >= SWEEP_MAXEV) return 0;
    float fb = (s - e->s0) * e->scale;
    int b = fb < 1.0f ? 0 : fb < (float)SWEEP_BUCKETS ? (int)fb : SWEEP_BUCKETS - 1;
    e->bk[e->n] = (uint8_t)b;
    e->p[e->n++] = (uint16_t)(i << 8 | level);
    e->cnt[b + 1]++;
    return 1;
}

/* Stable, so one element's crossings stay in their order inside a bucket. */
static int ev_order(evbuf *e, uint16_t *out) {
    for (int b = 0; b < SWEEP_BUCKETS; b++) e->cnt[b + 1] += e->cnt[b];
    for (int k = 0; k < e->n; k++) out[e->cnt[e->bk[k]]++] = e->p[k];
    return e->n;
}

static inline double wt(const float *w, int i) { return w ? (double)w[i] : 1.0; }

/* Signed levels -nneg..npos (nneg = npos or npos + 1), x ~ d * l; L gets l + nneg. Both signs
 * of d are searched in one sweep: with a = |x| they share every level magnitude and differ only
 * in which elements (those whose sign matches d's, or the others) may reach nneg. */
static float sweep_sym(int n, const float *x, const float *w, int nneg, int npos, float lo, float hi,
                       uint8_t *L) {
    float a[SWEEP_MAXN], amax = 0;
    for (int i = 0; i < n; i++) {
        a[i] = fabsf(x[i]);
        amax = a[i] > amax ? a[i] : amax;
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nneg;
    if (!(amax >= GROUP_EPS)) return 0.0f;
    const float s0 = lo / amax, s1 = hi / amax;
    const int nst = nneg == npos ? 1 : 2;
    evbuf eb;
    ev_init(&eb, s0, s1);
    uint8_t m[SWEEP_MAXN], cap[2][SWEEP_MAXN];
    double sxl[2] = {0, 0}, sl2[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        const int pos = x[i] >= 0;
        cap[0][i] = (uint8_t)(pos ? npos : nneg); /* state 0: d > 0 */
        cap[1][i] = (uint8_t)(pos ? nneg : npos); /* state 1: d < 0 */
        int k = clampi(nint(s0 * a[i]), 0, nneg);
        m[i] = (uint8_t)k;
        for (int st = 0; st < 2; st++) {
            double mm = k < cap[st][i] ? k : cap[st][i];
            sxl[st] += wt(w, i) * a[i] * mm;
            sl2[st] += wt(w, i) * mm * mm;
        }
        const float ia = 1.0f / a[i];
        for (; k < nneg; k++) {
            float s = ((float)k + 0.5f) * ia;
            if (!(s <= s1) || !ev_add(&eb, s, i, k + 1)) break;
        }
    }
    uint16_t ev[SWEEP_MAXEV] = {0}; /* ev_order fills it; zeroed for gcc 12 on aarch64, which cannot see that */
    const int ne = ev_order(&eb, ev);
    double best = -1, best_d = 0;
    int best_st = 0, best_j = -1;
    for (int j = -1; j < ne; j++) {
        int i = 0, k = 0;
        if (j >= 0) i = ev[j] >> 8, k = ev[j] & 0xFF;
        for (int st = 0; st < nst; st++) {
            if (j >= 0) {
                if (k > cap[st][i]) continue;
                sxl[st] += wt(w, i) * a[i];
                sl2[st] += wt(w, i) * (2 * k - 1); /* k^2 - (k-1)^2 */
            }
            if (sl2[st] > 0 && sxl[st] * sxl[st] > best * sl2[st]) {
                best = sxl[st] * sxl[st] / sl2[st];
                best_d = (st ? -sxl[st] : sxl[st]) / sl2[st];
                best_st = st, best_j = j;
            }
        }
    }
    if (best < 0) return 0.0f;
    for (int j = 0; j <= best_j; j++) m[ev[j] >> 8] = (uint8_t)(ev[j] & 0xFF);
    for (int i = 0; i < n; i++) {
        int mag = m[i] < cap[best_st][i] ? m[i] : cap[best_st][i];
        L[i] = (uint8_t)(nneg + ((x[i] >= 0) == (best_st == 0) ? mag : -mag));
    }
    return (float)best_d;
}

/* Any sorted table of level values v[0..K-1] (IQ4_NL's), both signs of d as two sweeps. */
static int tab_near(const float *v, int K, float t) {
    if (!(t > v[0])) return 0;
    if (t >= v[K - 1]) return K - 1;
    int lo = 0, hi = K - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (t < v[mid]) hi = mid; else lo = mid;
    }
    return t - v[lo] < v[hi] - t ? lo : hi;
}

static float sweep_tab(int n, const float *x, const float *w, const float *v, int K, float lo, float hi, uint8_t *L) {
    float amax = 0;
    for (int i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)tab_near(v, K, 0.0f);
    if (!(amax >= GROUP_EPS)) return 0.0f;
    const float s0 = lo / amax, s1 = hi / amax;
    uint16_t ev[2][SWEEP_MAXEV];
    uint8_t L0[2][SWEEP_MAXN], Lt[SWEEP_MAXN];
    double best = -1, best_d = 0;
    int best_sg = 0, best_j = -1;
    for (int sg = 0; sg < 2; sg++) {
        evbuf eb;
        ev_init(&eb, s0, s1);
        double sxl = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            const float y = sg ? -x[i] : x[i];
            int k = tab_near(v, K, s0 * y);
            L0[sg][i] = (uint8_t)k;
            sxl += wt(w, i) * y * v[k];
            sl2 += wt(w, i) * v[k] * v[k];
            const float iy = 1.0f / y;
            if (y > 0) {
                for (; k < K - 1; k++) {
                    float s = 0.5f * (v[k] + v[k + 1]) * iy;
                    if (!(s <= s1) || !ev_add(&eb, s, i, k + 1)) break;
                }
            } else if (y < 0) {
                for (; k > 0; k--) {
                    float s = 0.5f * (v[k - 1] + v[k]) * iy;
                    if (!(s <= s1) || !ev_add(&eb, s, i, k - 1)) break;
                }
            }
        }
        const int ne = ev_order(&eb, ev[sg]);
        memcpy(Lt, L0[sg], (size_t)n);
        for (int j = -1; j < ne; j++) {
            if (j >= 0) {
                int i = ev[sg][j] >> 8, k = ev[sg][j] & 0xFF;
                const double v0 = v[Lt[i]], v1 = v[k];
                sxl += wt(w, i) * (sg ? -x[i] : x[i]) * (v1 - v0);
                sl2 += wt(w, i) * (v1 * v1 - v0 * v0);
                Lt[i] = (uint8_t)k;
            }
            if (sl2 > 0 && sxl * sxl > best * sl2) {
                best = sxl * sxl / sl2;
                best_d = (sg ? -sxl : sxl) / sl2;
                best_sg = sg, best_j = j;
            }
        }
    }
    if (best < 0) return 0.0f;
    memcpy(L, L0[best_sg], (size_t)n);
    for (int j = 0; j <= best_j; j++) L[ev[best_sg][j] >> 8] = (uint8_t)(ev[best_sg][j] & 0xFF);
    return (float)best_d;
}

/* ---- unbiased scales --------------------------------------------------------------------------
 * The least-squares scale sum(w x v) / sum(w v^2) leaves the error orthogonal to the quantized
 * values, so every block comes out shrunk toward zero by its relative squared error (4-bit:
 * ~0.7% of its energy, Q2_K: ~7%). Summed over a layer that is a systematic shrink of the
 * layer's output against its bias and the residual stream, and it showed: on the Qwen2
 * fixtures (q/k/v biases) least-squares Q4_0 had 6% lower RMSE than llama.cpp's max-based
 * rounding yet 20% higher KL divergence (7% lower with the scales below). So the levels come from the least-squares search (the
 * best assignment is the same under either rule: both maximise sum(w x v)^2 / sum(w v^2)), but
 * the stored scale is sum(w x^2) / sum(w x v), which makes the error orthogonal to the weights
 * themselves, as plain rounding's is. It costs ~0.3% RMSE at 4 bits. */

/* sum(w x^2) / sum(w x v) for level values v(i) = base + L[i] (tab == NULL) or tab[L[i]]. */
static float unbiased_scale(int n, const float *x, const float *w, const uint8_t *L, int base, const float *tab,
                            float d) {
    double sxx = 0, sxv = 0;
    for (int i = 0; i < n; i++) {
        const double v = tab ? tab[L[i]] : base + L[i];
        sxx += wt(w, i) * x[i] * x[i], sxv += wt(w, i) * x[i] * v;
    }
    return sxv != 0 && sxx > 0 ? (float)(sxx / sxv) : d;
}

/* Final fp16 scale for signed levels -nneg..npos; L (l + nneg) requantized at that scale. */
static uint16_t fin_sym(int n, const float *x, const float *w, int nneg, int npos, float d, uint8_t *L) {
    const uint16_t h = F2H(unbiased_scale(n, x, w, L, -nneg, NULL, d));
    const float dh = H2F(h), id = dh != 0 ? 1.0f / dh : 0.0f;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(clampi(nint(x[i] * id), -nneg, npos) + nneg);
    return h;
}

/* ---- affine search (x ~ d * l + m, levels 0..nmax) -------------------------------------------
 * The same sweep over the inverse scale with the levels anchored at the block's min
 * (l = round(s (x - min))) or at its max (l = nmax - round(s (max - x))), each assignment
 * scored by its joint least-squares (d, m); then levels and (d, m) are refitted in turn.
 * A brute-force search over (s, offset) on the fixtures found nothing better. */

typedef struct aff_sums {
    double W, X, XX, S, SS, XS; /* sums of w, w x, w x^2, w l, w l^2, w x l */
} aff_sums;

/* Least-squares (d, m) for the levels in a; nonpos keeps m <= 0 (K-quants subtract a
 * non-negative min). Returns the weighted squared error. */
static double aff_fit(const aff_sums *a, int nonpos, double *d, double *m) {
    const double det = a->W * a->SS - a->S * a->S;
    if (det > 1e-12 * a->W * a->SS) {
        *d = (a->W * a->XS - a->X * a->S) / det;
        *m = (a->X - *d * a->S) / a->W;
        if (!(nonpos && *m > 0)) return a->XX - *d * a->XS - *m * a->X;
        *m = 0, *d = a->XS / a->SS;
        return a->XX - *d * a->XS;
    }
    *d = 0; /* one level for every element: only the offset matters */
    *m = a->W > 0 ? a->X / a->W : 0;
    if (nonpos && *m > 0) *m = 0;
    return a->XX - 2 * *m * a->X + *m * *m * a->W;
}

static void aff_levels(int n, const float *x, const float *w, const uint8_t *L, aff_sums *a) {
    a->S = a->SS = a->XS = 0;
    for (int i = 0; i < n; i++) {
        const double wi = wt(w, i), l = L[i];
        a->S += wi * l, a->SS += wi * l * l, a->XS += wi * x[i] * l;
    }
}

static void sweep_affine(int n, const float *x, const float *w, int nmax, float lo, float hi, int nonpos,
                         uint8_t *L, float *dp, float *mp) {
    float xmin = x[0], xmax = x[0];
    aff_sums a = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        xmin = x[i] < xmin ? x[i] : xmin;
        xmax = x[i] > xmax ? x[i] : xmax;
        a.W += wt(w, i), a.X += wt(w, i) * x[i], a.XX += wt(w, i) * x[i] * x[i];
    }
    if (nonpos && xmin > 0) xmin = 0;
    double d, m;
    memset(L, 0, (size_t)n);
    if (!(xmax - xmin >= GROUP_EPS)) { /* constant block */
        aff_levels(n, x, w, L, &a);
        aff_fit(&a, nonpos, &d, &m);
        *dp = 0, *mp = (float)m;
        return;
    }
    const float s0 = lo / (xmax - xmin), s1 = hi / (xmax - xmin);
    uint16_t ev[2][SWEEP_MAXEV];
    uint8_t U0[2][SWEEP_MAXN], Lt[SWEEP_MAXN];
    double best = INFINITY;
    int best_an = 0, best_j = -1;
    for (int an = 0; an < 2; an++) {
        evbuf eb;
        ev_init(&eb, s0, s1);
        for (int i = 0; i < n; i++) {
            const float y = an ? xmax - x[i] : x[i] - xmin, iy = 1.0f / y;
            int u = clampi(nint(s0 * y), 0, nmax);
            U0[an][i] = (uint8_t)u;
            Lt[i] = (uint8_t)(an ? nmax - u : u);
            for (; u < nmax && y > 0; u++) {
                float s = ((float)u + 0.5f) * iy;
                if (!(s <= s1) || !ev_add(&eb, s, i, u + 1)) break;
            }
        }
        const int ne = ev_order(&eb, ev[an]);
        aff_levels(n, x, w, Lt, &a);
        for (int j = -1; j < ne; j++) {
            if (j >= 0) {
                const int i = ev[an][j] >> 8, dl = an ? -1 : 1, l1 = Lt[i] + dl;
                a.S += wt(w, i) * dl, a.SS += wt(w, i) * dl * (2 * l1 - dl), a.XS += wt(w, i) * x[i] * dl;
                Lt[i] = (uint8_t)l1;
            }
            double e = aff_fit(&a, nonpos, &d, &m);
            if (e < best) best = e, best_an = an, best_j = j;
        }
    }
    memcpy(L, U0[best_an], (size_t)n);
    for (int j = 0; j <= best_j; j++) L[ev[best_an][j] >> 8] = (uint8_t)(ev[best_an][j] & 0xFF);
    if (best_an)
        for (int i = 0; i < n; i++) L[i] = (uint8_t)(nmax - L[i]);
    aff_levels(n, x, w, L, &a);
    best = aff_fit(&a, nonpos, &d, &m);
    for (int it = 0; it < AFF_ITERS && d > 0; it++) {
        const float id = (float)(1.0 / d), fm = (float)m;
        for (int i = 0; i < n; i++) Lt[i] = (uint8_t)clampi(nint((x[i] - fm) * id), 0, nmax);
        aff_levels(n, x, w, Lt, &a);
        double d2, m2, e = aff_fit(&a, nonpos, &d2, &m2);
        if (!(e < best * (1 - 1e-9))) break;
        best = e, d = d2, m = m2;
        memcpy(L, Lt, (size_t)n);
    }
    *dp = (float)d, *mp = (float)m;
}

/* ---- 32-element formats ------------------------------------------------------------------ */

static void pack_nibbles16(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

static void set_qh(const uint8_t *L, uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}

/* Q8_0: levels -127..127 (-128 is left out: SIMD kernels take absolute values of int8). */
static void q_q8_0(const float *x, const float *w, nbl_block_q8_0 *b) {
    uint8_t L[32];
    float d = sweep_sym(32, x, w, 127, 127, WIN_Q8, L);
    b->d = fin_sym(32, x, w, 127, 127, d, L);
    for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)(L[j] - 127);
}

/* Q8_1 only ever holds activations (never weights in a file): plain max-scaled rounding. */
static void q_q8_1(const float *x, nbl_block_q8_1 *b) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        b->qs[j] = (int8_t)clampi(nint(x[j] * id), -127, 127);
        sum += b->qs[j];
    }
    b->d = F2H(d);
    b->s = F2H(d * (float)sum);
}

/* Q4_0 / Q5_0: levels -nmax..nmax-1, stored as l + nmax. */
static uint16_t q_sym(const float *x, int nmax, const float *w, uint8_t *L) {
    float d = sweep_sym(32, x, w, nmax, nmax - 1, (float)nmax - WIN_SYM_LO, (float)nmax + WIN_SYM_HI, L);
    return fin_sym(32, x, w, nmax, nmax - 1, d, L);
}

/* Q4_1 / Q5_1: x ~ d * l + m; the stored pair makes the error sum to zero and orthogonal to x. */
static void q_aff(const float *x, int nmax, const float *w, uint8_t *L, uint16_t *dh, uint16_t *mh) {
    float d, m;
    sweep_affine(32, x, w, nmax, (float)nmax - WIN_AFF_LO, (float)nmax + WIN_AFF_HI, 0, L, &d, &m);
    double W = 0, X = 0, XX = 0, S = 0, XS = 0;
    for (int i = 0; i < 32; i++) {
        const double wi = wt(w, i);
        W += wi, X += wi * x[i], XX += wi * x[i] * x[i], S += wi * L[i], XS += wi * x[i] * L[i];
    }
    /* sum(w e) = 0 and sum(w e x) = 0 for e = x - d l - m */
    const double det = S * X - W * XS;
    if (fabs(det) > 1e-9 * fabs(W * XS)) {
        const double du = (X * X - W * XX) / det, mu = (S * XX - XS * X) / det;
        if (du > 0) d = (float)du, m = (float)mu;
    }
    *dh = F2H(d), *mh = F2H(m);
    const float fd = H2F(*dh), fm = H2F(*mh), id = fd != 0 ? 1.0f / fd : 0.0f;
    for (int i = 0; i < 32; i++) L[i] = (uint8_t)clampi(nint((x[i] - fm) * id), 0, nmax);
}

static const float IQ4NL_F[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* IQ4_NL: the table is asymmetric (-127..113), so both signs of the scale are searched. */
static void q_iq4_nl(const float *x, const float *w, nbl_block_iq4_nl *b) {
    uint8_t L[32];
    float d = sweep_tab(32, x, w, IQ4NL_F, 16, WIN_IQ4, L);
    b->d = F2H(unbiased_scale(32, x, w, L, 0, IQ4NL_F, d));
    const float dh = H2F(b->d), id = dh != 0 ? 1.0f / dh : 0.0f;
    for (int i = 0; i < 32; i++) L[i] = (uint8_t)tab_near(IQ4NL_F, 16, x[i] * id);
    pack_nibbles16(L, b->qs);
}

/* ---- K-quants (256-element super-blocks) ------------------------------------------------------
 * Two levels of scales: each sub-block's scale (and min) is a small integer times the super
 * block's fp16 scale (and min scale). Each sub-block's best continuous scale (and min) comes
 * from the sweeps above; the super scales start from the largest; then, for the fp16-rounded
 * super scales, every sub-block takes the integer scale (and min) among the neighbours of its
 * ideal one that leaves the least error after requantizing its elements (the reference rounds
 * the ideal one and stops), the super scales are refitted by least squares over the whole
 * block for those integers and levels, and that repeats while it changes them. */

static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(p[0] | (p[32] << 2) | (p[64] << 4) | (p[96] << 6));
        }
}

/* Error of n elements at scale D with levels -nneg..npos (float: only compared). */
static float err_sym(int n, const float *x, const float *w, float nneg, float npos, float D) {
    const float iD = D != 0 ? 1.0f / D : 0.0f;
    float err = 0;
    for (int i = 0; i < n; i++) {
        float e = x[i] - D * rnd(clampf(x[i] * iD, -nneg, npos));
        err += (w ? w[i] : 1.0f) * e * e;
    }
    return err;
}

/* Levels l + nneg at scale D into L; *sxl, *sl2 get sum(w x l), sum(w l^2). */
static void lev_sym(int n, const float *x, const float *w, int nneg, int npos, float D, uint8_t *L, double *sxl,
                    double *sl2) {
    const float iD = D != 0 ? 1.0f / D : 0.0f;
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nint(x[i] * iD), -nneg, npos);
        L[i] = (uint8_t)(l + nneg);
        a += wt(w, i) * x[i] * l, b += wt(w, i) * (double)l * l;
    }
    *sxl = a, *sl2 = b;
}

/* Symmetric two-level scales (Q3_K, Q6_K): nsub sub-blocks of n with continuous scales s[];
 * integer scales q[] in qlo..qhi; returns the fp16 super scale, L the levels + nneg. */
static uint16_t two_level_sym(int nsub, int n, const float *x, const float *w, int nneg, int npos, const float *s,
                              int qlo, int qhi, int *q, uint8_t *L) {
    float smax = 0;
    for (int j = 0; j < nsub; j++) smax = fabsf(s[j]) > fabsf(smax) ? s[j] : smax;
    for (int j = 0; j < nsub; j++) q[j] = 0;
    memset(L, nneg, (size_t)(nsub * n));
    if (!(fabsf(smax) >= GROUP_EPS) || isinf(smax)) return 0;
    double best = INFINITY;
    uint16_t best_h = 0;
    int qt[16];
    for (int c = 0; c < 2; c++) {
        /* the largest scale maps to the long end of the integer range, or to the short end */
        float d = smax / (float)(c ? qhi : qlo);
        for (int it = 0; it < KS_ITERS; it++) {
            const uint16_t h = F2H(d);
            const float dh = H2F(h);
            if (!(dh != 0) || isinf(dh)) break;
            double E = 0;
            for (int j = 0; j < nsub; j++) {
                const float *xj = x + n * j, *wj = w ? w + n * j : NULL;
                const int r = clampi(nint(s[j] / dh), qlo, qhi);
                float be = INFINITY;
                qt[j] = r;
                for (int qq = clampi(r - 1, qlo, qhi); qq <= clampi(r + 1, qlo, qhi); qq++) {
                    float e = err_sym(n, xj, wj, (float)nneg, (float)npos, dh * (float)qq);
                    if (e < be) be = e, qt[j] = qq;
                }
                E += be;
            }
            if (E < best) {
                best = E, best_h = h;
                memcpy(q, qt, sizeof(int) * (size_t)nsub);
            }
            /* least-squares super scale for these integers and their levels */
            double num = 0, den = 0;
            for (int j = 0; j < nsub; j++) {
                double sxl, sl2;
                lev_sym(n, x + n * j, w ? w + n * j : NULL, nneg, npos, dh * (float)qt[j], L + n * j, &sxl, &sl2);
                num += qt[j] * sxl, den += (double)qt[j] * qt[j] * sl2;
            }
            if (!(den > 0) || F2H((float)(num / den)) == h) break;
            d = (float)(num / den);
        }
    }
    /* the unbiased super scale for the chosen integers and levels, then the final levels */
    double sxx = 0, sxa = 0, sxl, sl2;
    const float db = H2F(best_h);
    for (int j = 0; j < nsub; j++) {
        lev_sym(n, x + n * j, w ? w + n * j : NULL, nneg, npos, db * (float)q[j], L + n * j, &sxl, &sl2);
        for (int i = 0; i < n; i++) sxx += wt(w, n * j + i) * x[n * j + i] * x[n * j + i];
        sxa += q[j] * sxl;
    }
    if (sxa != 0 && sxx > 0) {
        const uint16_t h = F2H((float)(sxx / sxa));
        const float dh = H2F(h);
        if (dh != 0 && !isinf(dh)) {
            best_h = h;
            for (int j = 0; j < nsub; j++)
                lev_sym(n, x + n * j, w ? w + n * j : NULL, nneg, npos, dh * (float)q[j], L + n * j, &sxl, &sl2);
        }
    }
    return best_h;
}

/* Error of n elements at x ~ D l - M, levels 0..nmax (float: only compared). */
static float err_aff(int n, const float *x, const float *w, float nmax, float D, float M) {
    const float iD = D != 0 ? 1.0f / D : 0.0f;
    float err = 0;
    for (int i = 0; i < n; i++) {
        float e = x[i] - (D * rnd(clampf((x[i] + M) * iD, 0.0f, nmax)) - M);
        err += (w ? w[i] : 1.0f) * e * e;
    }
    return err;
}

/* Levels at x ~ D l - M into L; s[] gets sum(w l^2), sum(w l), sum(w x l). */
static void lev_aff(int n, const float *x, const float *w, int nmax, float D, float M, uint8_t *L, double *s) {
    const float iD = D != 0 ? 1.0f / D : 0.0f;
    s[0] = s[1] = s[2] = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(nint((x[i] + M) * iD), 0, nmax);
        L[i] = (uint8_t)l;
        s[0] += wt(w, i) * l * l, s[1] += wt(w, i) * l, s[2] += wt(w, i) * x[i] * l;
    }
}

/* Affine two-level scales (Q2_K, Q4_K, Q5_K): sub-block j ~ d qs[j] l - dm qm[j], from
 * continuous scales s[j] and mins mn[j] >= 0; integers 0..qmax. */
static void two_level_aff(int nsub, int n, const float *x, const float *w, int nmax, const float *s, const float *mn,
                          int qmax, uint16_t *dh, uint16_t *dmh, int *qs, int *qm, uint8_t *L) {
    float smax = 0, mmax = 0;
    double sw[16], swx[16], swxx = 0; /* per sub-block sum(w), sum(w x); sum(w x^2) */
    for (int j = 0; j < nsub; j++) {
        smax = s[j] > smax ? s[j] : smax;
        mmax = mn[j] > mmax ? mn[j] : mmax;
        sw[j] = swx[j] = 0;
        for (int i = 0; i < n; i++) {
            const double wi = wt(w, n * j + i), xi = x[n * j + i];
            sw[j] += wi, swx[j] += wi * xi, swxx += wi * xi * xi;
        }
    }
    *dh = *dmh = 0;
    for (int j = 0; j < nsub; j++) qs[j] = qm[j] = 0;
    memset(L, 0, (size_t)(nsub * n));
    if (isinf(smax) || isinf(mmax)) return;
    double best = INFINITY, ls[3];
    int tqs[16], tqm[16];
    float d = smax / (float)qmax, dm = mmax / (float)qmax;
    for (int it = 0; it < KA_ITERS; it++) {
        const uint16_t h = F2H(d), hm = F2H(dm);
        const float fd = H2F(h), fm = H2F(hm);
        double E = 0;
        for (int j = 0; j < nsub; j++) {
            const float *xj = x + n * j, *wj = w ? w + n * j : NULL;
            const int rs = fd > 0 ? clampi(nint(s[j] / fd), 0, qmax) : 0, rm = fm > 0 ? clampi(nint(mn[j] / fm), 0, qmax) : 0;
            const int R = fd > 0, Rm = fm > 0;
            float be = INFINITY;
            tqs[j] = rs, tqm[j] = rm;
            for (int a = clampi(rs - R, 0, qmax); a <= clampi(rs + R, 0, qmax); a++)
                for (int b = clampi(rm - Rm, 0, qmax); b <= clampi(rm + Rm, 0, qmax); b++) {
                    float e = err_aff(n, xj, wj, (float)nmax, fd * (float)a, fm * (float)b);
                    if (e < be) be = e, tqs[j] = a, tqm[j] = b;
                }
            E += be;
        }
        if (E < best) {
            best = E, *dh = h, *dmh = hm;
            memcpy(qs, tqs, sizeof(int) * (size_t)nsub);
            memcpy(qm, tqm, sizeof(int) * (size_t)nsub);
        }
        /* least squares for x ~ d a + e b with a = qs l, b = -qm: 2x2 normal equations */
        double A = 0, B = 0, C = 0, XA = 0, XB = 0;
        for (int j = 0; j < nsub; j++) {
            lev_aff(n, x + n * j, w ? w + n * j : NULL, nmax, fd * (float)tqs[j], fm * (float)tqm[j], L + n * j, ls);
            A += (double)tqs[j] * tqs[j] * ls[0], C -= (double)tqs[j] * tqm[j] * ls[1], B += (double)tqm[j] * tqm[j] * sw[j];
            XA += tqs[j] * ls[2], XB -= tqm[j] * swx[j];
        }
        const double det = A * B - C * C;
        double nd, ne;
        if (det > 1e-12 * A * B) {
            nd = (XA * B - XB * C) / det, ne = (A * XB - C * XA) / det;
            if (ne < 0) ne = 0, nd = XA / A;
        } else {
            nd = A > 0 ? XA / A : 0, ne = dm;
        }
        if (!(nd > 0) || (F2H((float)nd) == h && F2H((float)ne) == hm)) break;
        d = (float)nd, dm = (float)ne;
    }
    /* unbiased super scales for the chosen integers and levels: sum(w e x) = 0 and
     * sum(w e b) = 0 (the second is the min's least-squares condition) */
    double XA = 0, XB = 0, AB = 0, BB = 0;
    const float fd0 = H2F(*dh), fm0 = H2F(*dmh);
    for (int j = 0; j < nsub; j++) {
        lev_aff(n, x + n * j, w ? w + n * j : NULL, nmax, fd0 * (float)qs[j], fm0 * (float)qm[j], L + n * j, ls);
        XA += qs[j] * ls[2], XB += qm[j] * swx[j], AB += (double)qs[j] * qm[j] * ls[1], BB += (double)qm[j] * qm[j] * sw[j];
    }
    double du, mu;
    const double det = XB * AB - XA * BB;
    if (BB > 0 && fabs(det) > 1e-9 * fabs(XA * BB)) {
        du = (XB * XB - swxx * BB) / det, mu = (XA * XB - swxx * AB) / det;
        if (mu < 0) mu = 0, du = swxx / XA;
    } else {
        du = XA != 0 ? swxx / XA : 0, mu = fm0;
    }
    const uint16_t h = F2H((float)du), hm = F2H((float)mu);
    const float fd = H2F(h), fm = H2F(hm);
    if (du > 0 && !isinf(fd) && !isinf(fm)) {
        *dh = h, *dmh = hm;
        for (int j = 0; j < nsub; j++)
            lev_aff(n, x + n * j, w ? w + n * j : NULL, nmax, fd * (float)qs[j], fm * (float)qm[j], L + n * j, ls);
    }
}

static void q_q2_K(const float *x, const float *w, nbl_block_q2_K *b) {
    uint8_t L[256];
    float s[16], mn[16];
    int qs[16], qm[16];
    for (int j = 0; j < 16; j++) {
        float d, m;
        sweep_affine(16, x + 16 * j, w ? w + 16 * j : NULL, 3, 2.0f, 4.0f, 1, L + 16 * j, &d, &m);
        s[j] = d, mn[j] = -m;
    }
    two_level_aff(16, 16, x, w, 3, s, mn, 15, &b->d, &b->dmin, qs, qm, L);
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(qs[j] | (qm[j] << 4));
    pack_2bit(L, b->qs);
}

static void q_q3_K(const float *x, const float *w, nbl_block_q3_K *b) {
    uint8_t L[256];
    float s[16];
    int q[16];
    for (int j = 0; j < 16; j++)
        s[j] = sweep_sym(16, x + 16 * j, w ? w + 16 * j : NULL, 4, 3, 4.0f - WIN_SYM_LO, 4.0f + WIN_SYM_HI, L + 16 * j);
    b->d = two_level_sym(16, 16, x, w, 4, 3, s, -32, 31, q, L);
    memset(b->scales, 0, 12);
    for (int j = 0; j < 16; j++) {
        int u = q[j] + 32;
        b->scales[j % 8] |= (uint8_t)((u & 0xF) << (4 * (j / 8)));
        b->scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
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
static void q_k45(const float *x, const float *w, int nmax, uint16_t *dh, uint16_t *dmh, uint8_t *sc12, uint8_t *L) {
    float s[8], mn[8];
    int qs[8], qm[8];
    for (int j = 0; j < 8; j++) {
        float d, m;
        sweep_affine(32, x + 32 * j, w ? w + 32 * j : NULL, nmax, (float)nmax - WIN_AFF_LO, (float)nmax + WIN_AFF_HI, 1,
                     L + 32 * j, &d, &m);
        s[j] = d, mn[j] = -m;
    }
    two_level_aff(8, 32, x, w, nmax, s, mn, 63, dh, dmh, qs, qm, L);
    /* 6-bit packing: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scale) and 4..7 (min);
     * 4..7 split into a nibble of bytes 8..11 plus 2 bits on top of bytes 0..7. */
    memset(sc12, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc12[j] |= (uint8_t)qs[j];
            sc12[j + 4] |= (uint8_t)qm[j];
        } else {
            sc12[j + 4] = (uint8_t)((qs[j] & 0xF) | ((qm[j] & 0xF) << 4));
            sc12[j - 4] |= (uint8_t)((qs[j] >> 4) << 6);
            sc12[j] |= (uint8_t)((qm[j] >> 4) << 6);
        }
    }
}

static void q_q4_K(const float *x, const float *w, nbl_block_q4_K *b) {
    uint8_t L[256];
    q_k45(x, w, 15, &b->d, &b->dmin, b->scales, L);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

static void q_q5_K(const float *x, const float *w, nbl_block_q5_K *b) {
    uint8_t L[256];
    q_k45(x, w, 31, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            b->qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            b->qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
}

static void q_q6_K(const float *x, const float *w, nbl_block_q6_K *b) {
    uint8_t L[256];
    float s[16];
    int q[16];
    for (int j = 0; j < 16; j++)
        s[j] = sweep_sym(16, x + 16 * j, w ? w + 16 * j : NULL, 32, 31, 32.0f - WIN_Q6_LO, 32.0f + WIN_SYM_HI, L + 16 * j);
    b->d = two_level_sym(16, 16, x, w, 32, 31, s, -128, 127, q, L);
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)q[j];
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

/* Q8_K only ever holds activations: plain max-scaled rounding, block sums per 16. */
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
    const int64_t bs = nbl_type_traits_get(type)->blck;
    NBL_ASSERT(n >= 0 && n % bs == 0);
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / bs; i++) {
        const float *x = src + i * bs;
        if (bs == 1) {
            if (type == NBL_TYPE_F32) memcpy(out + 4 * i, x, 4);
            else {
                uint16_t h = type == NBL_TYPE_F16 ? nbl_f32_to_fp16(*x) : nbl_f32_to_bf16(*x);
                memcpy(out + 2 * i, &h, 2);
            }
            continue;
        }
        /* The searches see NaN as 0 and infinities as +-FLT_MAX, so no input can derail them
         * (what such blocks dequantize to is unspecified). The imatrix weights each element's
         * squared error by its column's mean squared activation; a block whose weights are not
         * usable (all zero, negative, NaN) falls back to plain squared error. */
        float xb[256], wb[256];
        const float *w = NULL;
        double wsum = 0;
        int wbad = 0;
        for (int j = 0; j < bs; j++) {
            const float v = x[j];
            xb[j] = v == v ? (v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : v) : 0.0f;
            if (imatrix) {
                const float q = imatrix[i * bs + j];
                wbad |= !(q >= 0 && q <= FLT_MAX);
                wb[j] = q, wsum += q;
            }
        }
        if (imatrix && !wbad && wsum > 0) w = wb;
        uint8_t L[32];
        switch (type) {
        case NBL_TYPE_Q8_0: q_q8_0(xb, w, (nbl_block_q8_0 *)out + i); break;
        case NBL_TYPE_Q8_1: q_q8_1(xb, (nbl_block_q8_1 *)out + i); break;
        case NBL_TYPE_Q4_0: {
            nbl_block_q4_0 *b = (nbl_block_q4_0 *)out + i;
            b->d = q_sym(xb, 8, w, L);
            pack_nibbles16(L, b->qs);
            break;
        }
        case NBL_TYPE_Q5_0: {
            nbl_block_q5_0 *b = (nbl_block_q5_0 *)out + i;
            b->d = q_sym(xb, 16, w, L);
            set_qh(L, b->qh, b->qs);
            break;
        }
        case NBL_TYPE_Q4_1: {
            nbl_block_q4_1 *b = (nbl_block_q4_1 *)out + i;
            q_aff(xb, 15, w, L, &b->d, &b->m);
            pack_nibbles16(L, b->qs);
            break;
        }
        case NBL_TYPE_Q5_1: {
            nbl_block_q5_1 *b = (nbl_block_q5_1 *)out + i;
            q_aff(xb, 31, w, L, &b->d, &b->m);
            set_qh(L, b->qh, b->qs);
            break;
        }
        case NBL_TYPE_IQ4_NL: q_iq4_nl(xb, w, (nbl_block_iq4_nl *)out + i); break;
        case NBL_TYPE_Q2_K: q_q2_K(xb, w, (nbl_block_q2_K *)out + i); break;
        case NBL_TYPE_Q3_K: q_q3_K(xb, w, (nbl_block_q3_K *)out + i); break;
        case NBL_TYPE_Q4_K: q_q4_K(xb, w, (nbl_block_q4_K *)out + i); break;
        case NBL_TYPE_Q5_K: q_q5_K(xb, w, (nbl_block_q5_K *)out + i); break;
        case NBL_TYPE_Q6_K: q_q6_K(xb, w, (nbl_block_q6_K *)out + i); break;
        case NBL_TYPE_Q8_K: q_q8_K(xb, (nbl_block_q8_K *)out + i); break;
        default: NBL_ASSERT(!"quant: unsupported type");
        }
    }
}
