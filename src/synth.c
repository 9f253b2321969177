/* synth.c — writes random-weight GGUF files with the exact tensor shapes, types and metadata of
 * real models, so benchmarks and memory tests cost exactly what the real model costs, without the
 * real weights (which cannot be downloaded everywhere). */
#include "nbl_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct synth_spec {
    const char *id, *arch, *name;
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float rope_theta, rms_eps;
    int32_t tied, qkv_bias, llama3_rope;
} synth_spec;

/* Shapes and hyperparameters as published in each model's config.json. */
static const synth_spec SPECS[] = {
    {"qwen2.5-0.5b-instruct", "qwen2", "Qwen2.5-0.5B-Instruct", 151936, 896, 24, 14, 2, 4864, 32768, 1e6f, 1e-6f, 1, 1, 0},
    {"qwen2.5-1.5b-instruct", "qwen2", "Qwen2.5-1.5B-Instruct", 151936, 1536, 28, 12, 2, 8960, 32768, 1e6f, 1e-6f, 1, 1, 0},
    {"smollm2-360m-instruct", "llama", "SmolLM2-360M-Instruct", 49152, 960, 32, 15, 5, 2560, 8192, 1e5f, 1e-5f, 1, 0, 0},
    {"llama-3.2-1b-instruct", "llama", "Llama-3.2-1B-Instruct", 128256, 2048, 16, 32, 8, 8192, 131072, 5e5f, 1e-5f, 1, 0, 1},
};

const char *nbl_synth_names(void) {
    return "qwen2.5-0.5b-instruct, qwen2.5-1.5b-instruct, smollm2-360m-instruct, llama-3.2-1b-instruct";
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Approximately normal: a sum of uniforms is plenty for weights nobody reads as language. */
static float rng_normal(uint64_t *s) {
    float acc = 0;
    for (int i = 0; i < 4; i++) acc += (float)(rng_next(s) >> 40) * (1.0f / 16777216.0f);
    return (acc - 2.0f) * 1.732f;
}

typedef struct synth_buf {
    void **blocks;
    int n, cap;
} synth_buf;

static void *keep(synth_buf *b, void *p) {
    if (!p) return NULL;
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        void **nb = realloc(b->blocks, (size_t)cap * sizeof *nb);
        if (!nb) {
            free(p);
            return NULL;
        }
        b->blocks = nb;
        b->cap = cap;
    }
    return b->blocks[b->n++] = p;
}

/* A tensor of rows: up to 64 distinct random rows, repeated. Distinct rows keep caches honest;
 * repetition keeps synthesis of a billion-parameter model to seconds. */
static nbl_status add_tensor(nbl_gguf_writer *w, synth_buf *keepalive, const char *name, uint32_t type,
                             int64_t ne0, int64_t ne1, float scale, float offset, uint64_t *rng,
                             nbl_error *err) {
    const uint64_t row = nbl_row_bytes(type, ne0);
    uint8_t *data = keep(keepalive, malloc(row * (uint64_t)ne1));
    float *tmp = malloc((size_t)ne0 * sizeof(float));
    if (!data || !tmp) {
        free(tmp);
        return nbl_set_err(err, NBL_E_NOMEM, "synth: out of memory for '%s'", name);
    }
    const int64_t distinct = ne1 < 64 ? ne1 : 64;
    for (int64_t r = 0; r < distinct; r++) {
        for (int64_t i = 0; i < ne0; i++) tmp[i] = offset + scale * rng_normal(rng);
        nbl_quant_row(type, tmp, data + r * row, ne0, NULL);
    }
    for (int64_t r = distinct; r < ne1; r++) memcpy(data + r * row, data + (r % distinct) * row, row);
    free(tmp);
    int64_t ne[2] = {ne0, ne1};
    return nbl_gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, data);
}

/* GPT-2's byte-to-character map, for a minimal byte-level vocabulary when none is given. */
static int byte_char(int b, char out[4]) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static nbl_status minimal_vocab(nbl_gguf_writer *w, const synth_spec *sp, nbl_error *err) {
    const int32_t n = sp->n_vocab;
    char **toks = calloc((size_t)n, sizeof *toks);
    int32_t *types = malloc((size_t)n * sizeof *types);
    nbl_status st = NBL_OK;
    if (!toks || !types) {
        st = nbl_set_err(err, NBL_E_NOMEM, "synth: out of memory");
        goto out;
    }
    const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int32_t i = 0; i < n; i++) {
        char buf[32];
        if (i < 256) {
            buf[byte_char(i, buf)] = 0;
            types[i] = 1;
        } else if (i < 259) {
            snprintf(buf, sizeof buf, "%s", specials[i - 256]);
            types[i] = 3;
        } else {
            snprintf(buf, sizeof buf, "[PAD%d]", (int)i);
            types[i] = 5;
        }
        toks[i] = strdup(buf);
        if (!toks[i]) {
            st = nbl_set_err(err, NBL_E_NOMEM, "synth: out of memory");
            goto out;
        }
    }
    if ((st = nbl_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2")) ||
        (st = nbl_gguf_writer_set_str(w, "tokenizer.ggml.pre", strcmp(sp->arch, "qwen2") ? "default" : "qwen2")) ||
        (st = nbl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n)) ||
        (st = nbl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", NBL_GGUF_INT32, types, (uint64_t)n)) ||
        (st = nbl_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", NULL, 0)) ||
        (st = nbl_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256)) ||
        (st = nbl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 258)) ||
        (st = nbl_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false)))
        nbl_set_err(err, st, "synth: cannot write the vocabulary");
out:
    if (toks)
        for (int32_t i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(types);
    return st;
}

static nbl_status copy_vocab(nbl_gguf_writer *w, const char *path, const synth_spec *sp, nbl_error *err) {
    nbl_gguf *g;
    nbl_status st = nbl_gguf_open_file(path, &g, err);
    if (st) return st;
    const nbl_gguf_value *toks;
    if (nbl_gguf_get_arr(g, "tokenizer.ggml.tokens", NBL_GGUF_STRING, &toks, err) != 1) {
        nbl_gguf_free(g);
        return nbl_set_err(err, NBL_E_FORMAT, "synth: '%s' has no tokenizer.ggml.tokens", path);
    }
    if (toks->arr.n > (uint64_t)sp->n_vocab) {
        nbl_gguf_free(g);
        return nbl_set_err(err, NBL_E_ARG, "synth: vocabulary of '%s' (%llu tokens) exceeds %s's %d rows",
                           path, (unsigned long long)toks->arr.n, sp->id, sp->n_vocab);
    }
    for (uint64_t i = 0; i < g->n_kv && !st; i++) {
        const nbl_gguf_kv *kv = &g->kv[i];
        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10)) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 255 ? kv->key.len : 255), kv->key.ptr);
        st = nbl_gguf_writer_set_value(w, key, &kv->val);
    }
    nbl_gguf_free(g);
    if (st) return nbl_set_err(err, st, "synth: cannot copy the vocabulary of '%s'", path);
    return NBL_OK;
}

nbl_status nbl_synth_write(const nbl_synth_opts *o, const char *path, nbl_error *err) {
    const synth_spec *sp = NULL;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++)
        if (o->model && !strcasecmp(SPECS[i].id, o->model)) sp = &SPECS[i];
    if (!sp)
        return nbl_set_err(err, NBL_E_ARG, "synth: unknown model '%s' (known: %s)", o->model ? o->model : "",
                           nbl_synth_names());
    const char *mix = o->mix ? o->mix : "q4_0";
    if (!nbl_mix_valid(mix))
        return nbl_set_err(err, NBL_E_ARG, "synth: unknown type '%s' (known: %s)", mix, nbl_mix_names());
    const int32_t L = o->n_layer > 0 && o->n_layer < sp->n_layer ? o->n_layer : sp->n_layer;
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    if (!w) return nbl_set_err(err, NBL_E_NOMEM, "synth: out of memory");
    synth_buf kb = {0};
    uint64_t rng = o->seed ? o->seed : 1;
    nbl_status st;
    char key[128], name[128];
#define KEY(s) (snprintf(key, sizeof key, "%s." s, sp->arch), key)
    const int32_t hd = sp->n_embd / sp->n_head, QD = sp->n_head * hd, KD = sp->n_head_kv * hd;
    if ((st = nbl_gguf_writer_set_str(w, "general.architecture", sp->arch)) ||
        (st = nbl_gguf_writer_set_str(w, "general.name", sp->name)) ||
        (st = nbl_gguf_writer_set_str(w, "general.description", "random weights with real shapes (nbl synth)")) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)sp->n_ctx)) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)sp->n_embd)) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)L)) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)sp->n_ff)) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)sp->n_head)) ||
        (st = nbl_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)sp->n_head_kv)) ||
        (st = nbl_gguf_writer_set_f32(w, KEY("rope.freq_base"), sp->rope_theta)) ||
        (st = nbl_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), sp->rms_eps)) ||
        (st = nbl_gguf_writer_set_u32(w, "general.alignment", 32)))
        goto fail_msg;
    if (o->vocab_path) st = copy_vocab(w, o->vocab_path, sp, err);
    else st = minimal_vocab(w, sp, err);
    if (st) goto fail;

    /* Scales roughly like trained weights, so activations stay in a sane range. */
    const float ws = 0.02f;
#define T2(nm, ne0, ne1)                                                                              \
    do {                                                                                              \
        int32_t ty = nbl_mix_tensor_type(mix, nm, 2, ne0, L, !sp->tied, sp->n_head / sp->n_head_kv);                              \
        if ((st = add_tensor(w, &kb, nm, (uint32_t)ty, ne0, ne1, ws, 0, &rng, err))) goto fail;      \
    } while (0)
#define T1(nm, n, sc, off)                                                                            \
    do {                                                                                              \
        if ((st = add_tensor(w, &kb, nm, NBL_TYPE_F32, n, 1, sc, off, &rng, err))) goto fail;        \
    } while (0)
    T2("token_embd.weight", sp->n_embd, sp->n_vocab);
    T1("output_norm.weight", sp->n_embd, 0.05f, 1.0f);
    if (!sp->tied) T2("output.weight", sp->n_embd, sp->n_vocab);
    if (sp->llama3_rope) {
        /* Llama 3.2's frequency factors (factor 32, low 1, high 4, original context 8192). */
        float *ff = keep(&kb, malloc((size_t)(hd / 2) * sizeof(float)));
        if (!ff) {
            st = nbl_set_err(err, NBL_E_NOMEM, "synth: out of memory");
            goto fail;
        }
        for (int32_t i = 0; i < hd / 2; i++) {
            double freq = pow(sp->rope_theta, -2.0 * i / hd), wavelen = 2 * M_PI / freq;
            double lo_wl = 8192.0 / 1.0, hi_wl = 8192.0 / 4.0;
            if (wavelen < hi_wl) ff[i] = 1.0f;
            else if (wavelen > lo_wl) ff[i] = 32.0f;
            else {
                double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
                ff[i] = (float)(1.0 / ((1 - smooth) / 32.0 + smooth));
            }
        }
        int64_t ne[1] = {hd / 2};
        if ((st = nbl_gguf_writer_add_tensor(w, "rope_freqs.weight", NBL_TYPE_F32, 1, ne, ff))) goto fail_msg;
    }
    for (int32_t l = 0; l < L; l++) {
#define NM(s) (snprintf(name, sizeof name, "blk.%d." s, (int)l), name)
        T1(NM("attn_norm.weight"), sp->n_embd, 0.05f, 1.0f);
        T2(NM("attn_q.weight"), sp->n_embd, QD);
        T2(NM("attn_k.weight"), sp->n_embd, KD);
        T2(NM("attn_v.weight"), sp->n_embd, KD);
        if (sp->qkv_bias) {
            T1(NM("attn_q.bias"), QD, 0.1f, 0);
            T1(NM("attn_k.bias"), KD, 0.1f, 0);
            T1(NM("attn_v.bias"), KD, 0.1f, 0);
        }
        T2(NM("attn_output.weight"), QD, sp->n_embd);
        T1(NM("ffn_norm.weight"), sp->n_embd, 0.05f, 1.0f);
        T2(NM("ffn_gate.weight"), sp->n_embd, sp->n_ff);
        T2(NM("ffn_up.weight"), sp->n_embd, sp->n_ff);
        T2(NM("ffn_down.weight"), sp->n_ff, sp->n_embd);
#undef NM
    }
#undef T1
#undef T2
#undef KEY
    st = nbl_gguf_writer_write_file(w, path, err);
    goto fail;
fail_msg:
    nbl_set_err(err, st, "synth: cannot build the model's metadata");
fail:
    nbl_gguf_writer_free(w);
    for (int i = 0; i < kb.n; i++) free(kb.blocks[i]);
    free(kb.blocks);
    return st;
}
