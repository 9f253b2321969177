/* test_sampler.c — sampling against the definitions: empirical frequencies match the softmax
 * probabilities (after top-k / top-p / min-p truncation and renormalisation) within a bound of
 * 5 standard errors, greedy is the argmax, penalties and seeds behave as documented. */
#include "nbl.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DRAWS 200000

/* Draws DRAWS tokens and checks each frequency against the expected probability. */
static void check_freq(const char *what, const float *logits, int32_t n, const nbl_sampler_params *p,
                       const double *expect) {
    nbl_rng rng;
    nbl_rng_seed(&rng, 42);
    int32_t *count = calloc((size_t)n, sizeof *count), bad = 0;
    for (int i = 0; i < DRAWS; i++) {
        int32_t t = nbl_sample(logits, n, p, NULL, 0, &rng);
        if (t >= 0 && t < n) count[t]++;
        else bad++;
    }
    CHECK(bad == 0, "%s: %d draws out of range", what, bad);
    for (int32_t i = 0; i < n; i++) {
        double f = (double)count[i] / DRAWS, se = sqrt(expect[i] * (1 - expect[i]) / DRAWS) + 1e-9;
        CHECK(fabs(f - expect[i]) <= 5 * se, "%s: token %d frequency %.4f, expected %.4f", what, i, f, expect[i]);
    }
    free(count);
}

int main(void) {
    const float l3[4] = {logf(0.5f), logf(0.3f), logf(0.2f), -INFINITY};
    nbl_sampler_params p;
    nbl_sampler_params_init(&p);
    CHECK(nbl_sample(l3, 4, &p, NULL, 0, NULL) == 0, "greedy is not the argmax");

    p.temperature = 1.0f;
    check_freq("T=1", l3, 4, &p, (double[]){0.5, 0.3, 0.2, 0});
    p.top_p = 0.6f; /* 0.5 < 0.6 <= 0.8: the first two tokens, renormalised */
    check_freq("top_p 0.6", l3, 4, &p, (double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0});
    p.top_p = 1.0f;
    p.min_p = 0.5f; /* keeps p >= 0.25 */
    check_freq("min_p 0.5", l3, 4, &p, (double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0});
    p.min_p = 0;
    p.top_k = 1;
    check_freq("top_k 1", l3, 4, &p, (double[]){1, 0, 0, 0});
    p.top_k = 0;
    p.temperature = 2.0f; /* p_i ∝ sqrt(p_i) */
    double z = sqrt(0.5) + sqrt(0.3) + sqrt(0.2);
    check_freq("T=2", l3, 4, &p, (double[]){sqrt(0.5) / z, sqrt(0.3) / z, sqrt(0.2) / z, 0});

    /* Repetition penalty divides a positive logit: token 0 (logit 2) with penalty 4 drops to 0.5,
     * below token 1 (logit 1). */
    const float l2[3] = {2.0f, 1.0f, -1.0f};
    nbl_sampler_params_init(&p);
    p.repeat_penalty = 4.0f;
    int32_t hist[2] = {0, 0};
    CHECK(nbl_sample(l2, 3, &p, hist, 2, NULL) == 1, "repeat penalty not applied");
    CHECK(nbl_sample(l2, 3, &p, NULL, 0, NULL) == 0, "penalty applied without history");

    /* A real-size vocabulary: top-k keeps exactly the k best, and a seed reproduces draws. */
    const int32_t V = 151936;
    float *big = malloc(sizeof(float) * V);
    uint64_t x = 7;
    for (int32_t i = 0; i < V; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        big[i] = (float)((x >> 40) % 100000) / 10000.0f;
    }
    nbl_sampler_params_init(&p);
    p.temperature = 1.0f;
    p.top_k = 40;
    /* The 40th largest logit: every draw must be at least that. */
    float kth = -INFINITY;
    {
        float top[40];
        for (int i = 0; i < 40; i++) top[i] = -INFINITY;
        for (int32_t i = 0; i < V; i++) {
            if (big[i] <= top[39]) continue;
            int j = 39;
            while (j > 0 && top[j - 1] < big[i]) top[j] = top[j - 1], j--;
            top[j] = big[i];
        }
        kth = top[39];
    }
    nbl_rng a, b;
    nbl_rng_seed(&a, 99);
    nbl_rng_seed(&b, 99);
    int ok_k = 1, same = 1;
    for (int i = 0; i < 300; i++) {
        int32_t t = nbl_sample(big, V, &p, NULL, 0, &a), u = nbl_sample(big, V, &p, NULL, 0, &b);
        if (big[t] < kth) ok_k = 0;
        if (t != u) same = 0;
    }
    CHECK(ok_k, "top-k 40 drew a token outside the 40 best");
    CHECK(same, "the same seed gave different draws");
    free(big);
    CHECK(nbl_sample(NULL, 4, &p, NULL, 0, &a) == -1, "NULL logits accepted");
    return test_done();
}
