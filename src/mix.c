/* mix.c — which type each tensor gets under a named quantization mix ("q4_0", "q4_k_m",
 * "q4-mixed", ...). Shared by `nbl synth` (random models with real files' type layout) and the
 * quantizer, so both produce the same files. Follows llama.cpp's choices for its named types,
 * including the fallbacks for rows K-quants (256-element super-blocks) cannot take. */
#include "nbl_impl.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct mix_def {
    const char *name;
    uint32_t base;   /* most 2-D weights */
    uint32_t output; /* output head (or tied embedding) */
    uint32_t more;   /* attn_v / ffn_down on "more bits" layers (0: base) */
    int seeds_mix;   /* 1: attention Q8_0, feed-forward 4-bit, embeddings Q8_0 */
} mix_def;

static const mix_def MIXES[] = {
    {"f32", NBL_TYPE_F32, NBL_TYPE_F32, 0, 0},
    {"f16", NBL_TYPE_F16, NBL_TYPE_F16, 0, 0},
    {"bf16", NBL_TYPE_BF16, NBL_TYPE_BF16, 0, 0},
    {"q8_0", NBL_TYPE_Q8_0, NBL_TYPE_Q8_0, 0, 0},
    {"q4_0", NBL_TYPE_Q4_0, NBL_TYPE_Q6_K, 0, 0},
    {"q4_1", NBL_TYPE_Q4_1, NBL_TYPE_Q6_K, 0, 0},
    {"q5_0", NBL_TYPE_Q5_0, NBL_TYPE_Q6_K, 0, 0},
    {"q5_1", NBL_TYPE_Q5_1, NBL_TYPE_Q6_K, 0, 0},
    {"iq4_nl", NBL_TYPE_IQ4_NL, NBL_TYPE_Q6_K, 0, 0},
    {"q2_k", NBL_TYPE_Q2_K, NBL_TYPE_Q6_K, NBL_TYPE_Q3_K, 0},
    {"q3_k", NBL_TYPE_Q3_K, NBL_TYPE_Q6_K, 0, 0},
    {"q3_k_m", NBL_TYPE_Q3_K, NBL_TYPE_Q6_K, NBL_TYPE_Q5_K, 0},
    {"q4_k", NBL_TYPE_Q4_K, NBL_TYPE_Q6_K, 0, 0},
    {"q4_k_m", NBL_TYPE_Q4_K, NBL_TYPE_Q6_K, NBL_TYPE_Q6_K, 0},
    {"q5_k", NBL_TYPE_Q5_K, NBL_TYPE_Q6_K, 0, 0},
    {"q5_k_m", NBL_TYPE_Q5_K, NBL_TYPE_Q6_K, NBL_TYPE_Q6_K, 0},
    {"q6_k", NBL_TYPE_Q6_K, NBL_TYPE_Q6_K, 0, 0},
    {"q4-mixed", NBL_TYPE_Q4_K, NBL_TYPE_Q8_0, 0, 1},
};

static const mix_def *find_mix(const char *name) {
    for (size_t i = 0; i < sizeof MIXES / sizeof MIXES[0]; i++)
        if (!strcasecmp(MIXES[i].name, name)) return &MIXES[i];
    return NULL;
}

const char *nbl_mix_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q3_k_m, q4_k, "
           "q4_k_m, q5_k, q5_k_m, q6_k, q4-mixed";
}

int nbl_mix_valid(const char *name) { return name && find_mix(name) != NULL; }

/* K-quants need rows that are whole 256-element super-blocks; llama.cpp substitutes these. */
uint32_t nbl_type_fallback(uint32_t type, int64_t ne0) {
    const nbl_type_traits *t = nbl_type_traits_get(type);
    if (t && ne0 % t->blck == 0) return type;
    switch (type) {
    case NBL_TYPE_Q2_K:
    case NBL_TYPE_Q3_K: return NBL_TYPE_IQ4_NL;
    case NBL_TYPE_Q4_K: return NBL_TYPE_Q5_0;
    case NBL_TYPE_Q5_K: return NBL_TYPE_Q5_1;
    case NBL_TYPE_Q6_K: return NBL_TYPE_Q8_0;
    default: return ne0 % 32 == 0 ? NBL_TYPE_Q8_0 : NBL_TYPE_F16;
    }
}

/* llama.cpp gives a few layers more bits: the first and last eighth and every third between. */
static int more_bits(int32_t i, int32_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int32_t nbl_mix_tensor_type(const char *mix, const char *name, int32_t n_dims, int64_t ne0,
                            int32_t n_layer, int32_t has_output, int32_t n_gqa) {
    const mix_def *m = find_mix(mix);
    if (!m) return -1;
    if (n_dims < 2) return NBL_TYPE_F32; /* norms, biases, rope factors stay f32 */
    int32_t layer = -1;
    if (!strncmp(name, "blk.", 4)) sscanf(name + 4, "%d", &layer);
    const int is_output = !strcmp(name, "output.weight") ||
                          (!has_output && !strcmp(name, "token_embd.weight"));
    const int attn_v = ends_with(name, "attn_v.weight"), ffn_down = ends_with(name, "ffn_down.weight");
    const int attn_out = ends_with(name, "attn_output.weight");
    uint32_t t = m->base;
    if (m->seeds_mix) {
        /* Attention keeps 8 bits (context coherence suffers first), feed-forward takes 4. */
        if (is_output || !strcmp(name, "token_embd.weight")) t = NBL_TYPE_Q8_0;
        else if (strstr(name, ".attn_")) t = NBL_TYPE_Q8_0;
        else t = ne0 % 256 == 0 ? NBL_TYPE_Q4_K : NBL_TYPE_IQ4_NL;
        return (int32_t)t;
    }
    if (is_output) {
        t = m->output;
    } else if (layer >= 0 && m->base == NBL_TYPE_Q2_K && m->more) {
        /* q2_k: the layers that hurt most get 3 or 4 bits */
        if (attn_v) t = n_gqa >= 4 ? NBL_TYPE_Q4_K : NBL_TYPE_Q3_K;
        else if (ffn_down || attn_out) t = NBL_TYPE_Q3_K;
    } else if (layer >= 0 && m->base == NBL_TYPE_Q3_K && m->more) {
        /* q3_k_m */
        if (attn_v) t = layer < 2 ? NBL_TYPE_Q5_K : NBL_TYPE_Q4_K;
        else if (attn_out) t = NBL_TYPE_Q4_K;
        else if (ffn_down) t = layer < n_layer / 16 ? NBL_TYPE_Q5_K : NBL_TYPE_Q4_K;
    } else if (layer >= 0 && m->base == NBL_TYPE_IQ4_NL && attn_v && n_gqa >= 4) {
        /* iq4_nl: with 4+ query heads per KV head, V is small and shared: it gets 5 bits */
        t = NBL_TYPE_Q5_K;
    } else if (layer >= 0 && m->more && (attn_v || ffn_down)) {
        /* q4_k_m, q5_k_m */
        if (more_bits(layer, n_layer)) t = m->more;
    }
    return (int32_t)nbl_type_fallback(t, ne0);
}
