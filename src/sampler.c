/* sampler.c — turns logits into a token: repetition penalty, temperature, top-k, top-p, min-p,
 * then a draw from a seeded generator (xoroshiro128+), so a seed reproduces a generation. */
#include "nbl_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nbl_sampler_params_init(nbl_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.0f;
    p->top_p = 1.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void nbl_rng_seed(nbl_rng *r, uint64_t seed) {
    r->s[0] = splitmix64(&seed);
    r->s[1] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double rng_uniform(nbl_rng *r) {
    const uint64_t s0 = r->s[0];
    uint64_t s1 = r->s[1];
    const uint64_t res = s0 + s1;
    s1 ^= s0;
    r->s[0] = rotl(s0, 24) ^ s1 ^ (s1 << 16);
    r->s[1] = rotl(s1, 37);
    return (double)(res >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct cand {
    int32_t id;
    float logit;
} cand;

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* ties broken by id so results do not depend on qsort */
}

/* Moves the k best candidates (by cand_desc order) to c[0..k), in any order: quickselect. */
static void select_top(cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_desc(&c[i], &pivot) < 0) i++;
            while (cand_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int32_t argmax(const float *l, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

int32_t nbl_sample(const float *logits, int32_t n_vocab, const nbl_sampler_params *p,
                   const int32_t *history, int32_t n_history, nbl_rng *rng) {
    nbl_sampler_params d;
    if (!p) {
        nbl_sampler_params_init(&d);
        p = &d;
    }
    if (!logits || n_vocab <= 0) return -1;
    const bool penalise = p->repeat_penalty != 1.0f && history && n_history > 0;
    if (p->temperature <= 0.0f && !penalise) return argmax(logits, n_vocab);

    cand *c = malloc((size_t)n_vocab * sizeof *c);
    if (!c) return argmax(logits, n_vocab); /* degrade, never fail a generation for memory */
    for (int32_t i = 0; i < n_vocab; i++) c[i] = (cand){i, logits[i]};
    if (penalise) {
        int32_t from = p->repeat_last_n > 0 && n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int32_t i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= n_vocab || c[t].id < 0) continue;
            float *l = &c[t].logit;
            *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
            c[t].id = -1 - t; /* mark: penalise each token once */
        }
        for (int32_t i = 0; i < n_vocab; i++)
            if (c[i].id < 0) c[i].id = -1 - c[i].id;
    }
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; i++)
            if (c[i].logit > c[best].logit) best = i;
        free(c);
        return best;
    }
    /* Only tokens within 25 nats (scaled by temperature) of the best can carry probability
     * mass above ~1e-11; dropping the rest first turns a sort of the whole vocabulary (150k
     * entries, ~10 ms per token) into a sort of a few hundred. */
    int32_t n = 0;
    {
        float mx = c[0].logit;
        for (int32_t i = 1; i < n_vocab; i++)
            if (c[i].logit > mx) mx = c[i].logit;
        const float floor_logit = mx - 25.0f * p->temperature;
        for (int32_t i = 0; i < n_vocab; i++)
            if (c[i].logit >= floor_logit) c[n++] = c[i];
    }
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    qsort(c, (size_t)n, sizeof *c, cand_desc);
    const float inv_t = 1.0f / p->temperature;
    const float mx = c[0].logit;
    double sum = 0;
    float *pr = malloc((size_t)n * sizeof *pr);
    if (!pr) {
        int32_t id = c[0].id;
        free(c);
        return id;
    }
    for (int32_t i = 0; i < n; i++) sum += pr[i] = expf((c[i].logit - mx) * inv_t);
    if (p->min_p > 0.0f) {
        const float thr = p->min_p * pr[0];
        int32_t k = 1;
        while (k < n && pr[k] >= thr) k++;
        n = k;
        sum = 0;
        for (int32_t i = 0; i < n; i++) sum += pr[i];
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double acc = 0;
        int32_t k = 0;
        while (k < n) {
            acc += pr[k++] / sum;
            if (acc >= p->top_p) break;
        }
        n = k;
        sum = 0;
        for (int32_t i = 0; i < n; i++) sum += pr[i];
    }
    double u = rng_uniform(rng) * sum, acc = 0;
    int32_t pick = c[n - 1].id;
    for (int32_t i = 0; i < n; i++) {
        acc += pr[i];
        if (u < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(pr);
    free(c);
    return pick;
}
