/* model.c — turns a parsed GGUF into a runnable model: reads the architecture's hyperparameters,
 * binds and shape-checks every tensor, and rejects missing or inconsistent metadata with a message
 * that names the key or tensor at fault. The arch table is the one place to add architectures. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct arch_def {
    const char *name;
    int32_t rope_mode;
    int32_t qkv_bias; /* 1: q/k/v biases expected (loaded when present either way) */
} arch_def;

static const arch_def ARCHS[] = {
    {"qwen2", NBL_ROPE_NEOX, 1},
    {"llama", NBL_ROPE_NORM, 0},
};

void nbl_model_options_init(nbl_model_options *opt) {
    memset(opt, 0, sizeof *opt);
}

const nbl_vocab *nbl_model_vocab(const nbl_model *m) { return m ? m->vocab : NULL; }
const nbl_gguf *nbl_model_gguf(const nbl_model *m) { return m ? m->gguf : NULL; }
const char *nbl_model_chat_template(const nbl_model *m) { return m ? m->chat_template : NULL; }

static char *dup_str(nbl_str s) {
    char *r = malloc(s.len + 1);
    if (!r) return NULL;
    memcpy(r, s.ptr, s.len);
    r[s.len] = 0;
    return r;
}

/* Reads an integer hyperparameter "<arch>.<suffix>"; required ones fail when absent. */
static nbl_status get_hp_int(const nbl_model *m, const char *suffix, int required, int64_t lo,
                             int64_t hi, int32_t *out, nbl_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    int64_t v;
    int r = nbl_gguf_get_int(m->gguf, key, &v, err);
    if (r < 0) return NBL_E_FORMAT;
    if (r == 0) {
        if (required) return nbl_set_err(err, NBL_E_FORMAT, "model: missing metadata key '%s'", key);
        return NBL_OK;
    }
    if (v < lo || v > hi)
        return nbl_set_err(err, NBL_E_FORMAT, "model: '%s' = %lld is out of range [%lld, %lld]", key,
                           (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return NBL_OK;
}

static nbl_status get_hp_float(const nbl_model *m, const char *suffix, float dflt, double lo,
                               double hi, float *out, nbl_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    double v;
    int r = nbl_gguf_get_float(m->gguf, key, &v, err);
    if (r < 0) return NBL_E_FORMAT;
    if (r == 0) v = dflt;
    if (!(v >= lo && v <= hi))
        return nbl_set_err(err, NBL_E_FORMAT, "model: '%s' = %g is out of range [%g, %g]", key, v,
                           lo, hi);
    *out = (float)v;
    return NBL_OK;
}

static nbl_status read_hparams(nbl_model *m, nbl_error *err) {
    nbl_hparams *hp = &m->hp;
    nbl_status st;
    const int64_t BIG = 1 << 24;
    if ((st = get_hp_int(m, "embedding_length", 1, 1, BIG, &hp->n_embd, err))) return st;
    if ((st = get_hp_int(m, "block_count", 1, 1, 4096, &hp->n_layer, err))) return st;
    if ((st = get_hp_int(m, "feed_forward_length", 1, 1, BIG, &hp->n_ff, err))) return st;
    if ((st = get_hp_int(m, "attention.head_count", 1, 1, 4096, &hp->n_head, err))) return st;
    hp->n_head_kv = hp->n_head;
    if ((st = get_hp_int(m, "attention.head_count_kv", 0, 1, 4096, &hp->n_head_kv, err))) return st;
    hp->n_ctx_train = 2048;
    if ((st = get_hp_int(m, "context_length", 0, 1, 1 << 30, &hp->n_ctx_train, err))) return st;
    if (hp->n_head % hp->n_head_kv)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "model: %s.attention.head_count (%d) is not a multiple of head_count_kv (%d)",
                           m->arch, hp->n_head, hp->n_head_kv);
    /* key_length overrides this; without it the heads must split the embedding evenly. */
    hp->head_dim = hp->n_embd % hp->n_head ? 0 : hp->n_embd / hp->n_head;
    if ((st = get_hp_int(m, "attention.key_length", 0, 1, 65536, &hp->head_dim, err))) return st;
    if (hp->head_dim <= 0)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "model: %s.embedding_length (%d) is not a multiple of head_count (%d) and "
                           "%s.attention.key_length is absent",
                           m->arch, hp->n_embd, hp->n_head, m->arch);
    int32_t vlen = hp->head_dim;
    if ((st = get_hp_int(m, "attention.value_length", 0, 1, 65536, &vlen, err))) return st;
    if (vlen != hp->head_dim)
        return nbl_set_err(err, NBL_E_UNSUPPORTED,
                           "model: %s.attention.value_length (%d) differs from key_length (%d)", m->arch,
                           vlen, hp->head_dim);
    if (hp->head_dim % 2)
        return nbl_set_err(err, NBL_E_FORMAT, "model: head dimension %d is odd, rope needs pairs",
                           hp->head_dim);
    int32_t rope_dims = hp->head_dim;
    if ((st = get_hp_int(m, "rope.dimension_count", 0, 1, 65536, &rope_dims, err))) return st;
    if (rope_dims != hp->head_dim)
        return nbl_set_err(err, NBL_E_UNSUPPORTED,
                           "model: %s.rope.dimension_count (%d) != head dimension (%d): partial rope is "
                           "not supported",
                           m->arch, rope_dims, hp->head_dim);
    if ((st = get_hp_float(m, "rope.freq_base", 10000.0f, 1.0, 1e12, &hp->rope_theta, err))) return st;
    if ((st = get_hp_float(m, "attention.layer_norm_rms_epsilon", 1e-5f, 1e-12, 1.0, &hp->rms_eps, err)))
        return st;
    return NBL_OK;
}

/* Binds a matrix and checks its shape: ne0 = input width, ne1 = output rows. */
static nbl_status bind_matrix(nbl_model *m, const char *name, int64_t ne0, int64_t ne1, int required,
                              nbl_weight *w, nbl_error *err) {
    const nbl_gguf_tensor *t = nbl_gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (required) return nbl_set_err(err, NBL_E_FORMAT, "model: missing tensor '%s'", name);
        return NBL_OK;
    }
    const nbl_type_traits *tr = nbl_type_traits_get(t->type);
    if (!tr || !tr->supported)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "model: tensor '%s' has unsupported type %s (%u)",
                           name, tr ? tr->name : "unknown", t->type);
    if (t->n_dims > 2 || t->ne[0] != ne0 || (ne1 >= 0 && t->ne[1] != ne1))
        return nbl_set_err(err, NBL_E_FORMAT,
                           "model: tensor '%s' has shape [%lld, %lld, %lld] but [%lld, %lld] was expected",
                           name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)ne0, (long long)ne1);
    w->data = t->data;
    w->offset = m->gguf->data_offset + t->offset;
    w->type = t->type;
    w->ne0 = t->ne[0];
    w->ne1 = t->ne[1];
    w->name = t->name.ptr; /* names in the reader are NUL-free slices; kept for messages only */
    return NBL_OK;
}

/* Small 1-D tensors (norms, biases, rope factors) are converted to f32 copies at load: they are a
 * few KiB, and the kernels then never branch on their type. */
static nbl_status bind_vector(nbl_model *m, const char *name, int64_t n, int required, float **slot,
                              float **pool, nbl_error *err) {
    const nbl_gguf_tensor *t = nbl_gguf_find_tensor(m->gguf, name);
    *slot = NULL;
    if (!t) {
        if (required) return nbl_set_err(err, NBL_E_FORMAT, "model: missing tensor '%s'", name);
        return NBL_OK;
    }
    const nbl_type_traits *tr = nbl_type_traits_get(t->type);
    if (!tr || !tr->supported)
        return nbl_set_err(err, NBL_E_UNSUPPORTED, "model: tensor '%s' has unsupported type %s (%u)",
                           name, tr ? tr->name : "unknown", t->type);
    if (t->n_dims != 1 || t->ne[0] != n)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "model: tensor '%s' has shape [%lld, %lld] but [%lld] was expected", name,
                           (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    if (t->data) {
        nbl_dequant_row(t->type, t->data, *pool, n);
    } else {
        /* A metadata-only open: the bytes come later (nbl_model_put_tensor, _attach_data). */
        struct nbl_missing_vec *mv = &m->missing[m->n_missing++];
        mv->t = t;
        mv->dst = *pool;
        mv->n = n;
    }
    *slot = *pool;
    *pool += n;
    return NBL_OK;
}

static nbl_status bind_tensors(nbl_model *m, nbl_error *err) {
    nbl_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, HD = hp->head_dim;
    const int64_t QD = (int64_t)hp->n_head * HD, KD = (int64_t)hp->n_head_kv * HD;
    nbl_status st;
    const nbl_gguf_tensor *te = nbl_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return nbl_set_err(err, NBL_E_FORMAT, "model: missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return nbl_set_err(err, NBL_E_FORMAT, "model: tensor 'token_embd.weight' has %lld rows",
                           (long long)te->ne[1]);
    hp->n_vocab = (int32_t)te->ne[1];
    if ((st = bind_matrix(m, "token_embd.weight", E, hp->n_vocab, 1, &m->tok_embd, err))) return st;
    if ((st = bind_matrix(m, "output.weight", E, hp->n_vocab, 0, &m->output, err))) return st;
    if (!m->output.name) m->output = m->tok_embd; /* tied embeddings */

    /* Every small vector in one allocation: per layer 2 norms + 4 biases, plus output norm and
     * rope factors. */
    uint64_t per_layer = (uint64_t)3 * E + QD + 2 * KD;
    uint64_t total = per_layer * (uint64_t)hp->n_layer + (uint64_t)E + (uint64_t)HD;
    m->owned = calloc(total, sizeof(float));
    m->layers = calloc((size_t)hp->n_layer, sizeof(nbl_layer));
    /* At most 6 vectors per layer plus 2 can be missing. */
    if (!m->gguf->has_data) m->missing = calloc((size_t)hp->n_layer * 6 + 2, sizeof *m->missing);
    if (!m->owned || !m->layers || (!m->gguf->has_data && !m->missing))
        return nbl_set_err(err, NBL_E_NOMEM, "model: out of memory");
    float *pool = m->owned;
    if ((st = bind_vector(m, "output_norm.weight", E, 1, &m->output_norm, &pool, err))) return st;
    if ((st = bind_vector(m, "rope_freqs.weight", HD / 2, 0, &m->rope_freqs, &pool, err))) return st;
    for (int32_t i = 0; i < hp->n_layer; i++) {
        nbl_layer *L = &m->layers[i];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, (int)i), n)
        if ((st = bind_vector(m, NAME("attn_norm.weight"), E, 1, &L->attn_norm, &pool, err))) return st;
        if ((st = bind_matrix(m, NAME("attn_q.weight"), E, QD, 1, &L->wq, err))) return st;
        if ((st = bind_matrix(m, NAME("attn_k.weight"), E, KD, 1, &L->wk, err))) return st;
        if ((st = bind_matrix(m, NAME("attn_v.weight"), E, KD, 1, &L->wv, err))) return st;
        if ((st = bind_matrix(m, NAME("attn_output.weight"), QD, E, 1, &L->wo, err))) return st;
        if ((st = bind_vector(m, NAME("attn_q.bias"), QD, 0, &L->bq, &pool, err))) return st;
        if ((st = bind_vector(m, NAME("attn_k.bias"), KD, 0, &L->bk, &pool, err))) return st;
        if ((st = bind_vector(m, NAME("attn_v.bias"), KD, 0, &L->bv, &pool, err))) return st;
        if ((st = bind_vector(m, NAME("attn_output.bias"), E, 0, &L->bo, &pool, err))) return st;
        if ((st = bind_vector(m, NAME("ffn_norm.weight"), E, 1, &L->ffn_norm, &pool, err))) return st;
        if ((st = bind_matrix(m, NAME("ffn_gate.weight"), E, hp->n_ff, 1, &L->w_gate, err))) return st;
        if ((st = bind_matrix(m, NAME("ffn_up.weight"), E, hp->n_ff, 1, &L->w_up, err))) return st;
        if ((st = bind_matrix(m, NAME("ffn_down.weight"), hp->n_ff, E, 1, &L->w_down, err))) return st;
#undef NAME
    }
    return NBL_OK;
}

static nbl_status model_init(nbl_model *m, const nbl_model_options *opt, nbl_error *err) {
    nbl_status st;
    nbl_str s;
    int r = nbl_gguf_get_str(m->gguf, "general.architecture", &s, err);
    if (r < 0) return NBL_E_FORMAT;
    if (r == 0 && !opt->vocab_only)
        return nbl_set_err(err, NBL_E_FORMAT, "model: missing metadata key 'general.architecture'");
    m->arch = r > 0 ? dup_str(s) : dup_str((nbl_str){"", 0});
    r = nbl_gguf_get_str(m->gguf, "general.name", &s, NULL);
    m->name = dup_str(r > 0 ? s : (nbl_str){"", 0});
    r = nbl_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, NULL);
    if (r > 0) m->chat_template = dup_str(s);
    if (!m->arch || !m->name || (r > 0 && !m->chat_template))
        return nbl_set_err(err, NBL_E_NOMEM, "model: out of memory");
    m->vocab_only = opt->vocab_only;
    m->n_threads = opt->n_threads;
    if (nbl_gguf_find(m->gguf, "tokenizer.ggml.model")) {
        if ((st = nbl_vocab_load(m->gguf, &m->vocab, err))) return st;
    } else if (opt->vocab_only) {
        return nbl_set_err(err, NBL_E_FORMAT, "model: missing metadata key 'tokenizer.ggml.model'");
    }
    if (opt->vocab_only) return NBL_OK;

    const arch_def *a = NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (!strcmp(ARCHS[i].name, m->arch)) a = &ARCHS[i];
    if (!a)
        return nbl_set_err(err, NBL_E_UNSUPPORTED,
                           "model: architecture '%s' is not supported (supported: qwen2, llama)", m->arch);
    m->hp.rope_mode = a->rope_mode;
    if ((st = read_hparams(m, err))) return st;
    if ((st = bind_tensors(m, err))) return st;
    /* The vocabulary may be smaller than the embedding (real files pad rows), never larger. */
    if (m->vocab && nbl_vocab_size(m) > m->hp.n_vocab)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "model: tokenizer has %d tokens but 'token_embd.weight' only %d rows",
                           nbl_vocab_size(m), m->hp.n_vocab);
    return NBL_OK;
}

static nbl_status open_common(nbl_gguf *g, const nbl_model_options *opt, nbl_model **out,
                              nbl_error *err) {
    nbl_model_options dflt;
    if (!opt) {
        nbl_model_options_init(&dflt);
        opt = &dflt;
    }
    nbl_model *m = calloc(1, sizeof *m);
    if (!m) {
        nbl_gguf_free(g);
        return nbl_set_err(err, NBL_E_NOMEM, "model: out of memory");
    }
    m->gguf = g;
    pthread_mutex_init(&m->pool_mu, NULL);
    nbl_status st = model_init(m, opt, err);
    if (st) {
        nbl_model_free(m);
        return st;
    }
    *out = m;
    return NBL_OK;
}

nbl_status nbl_model_open_file(const char *path, const nbl_model_options *opt, nbl_model **out,
                               nbl_error *err) {
    if (!path || !out) return nbl_set_err(err, NBL_E_ARG, "model: path and out are required");
    *out = NULL;
    nbl_gguf *g;
    nbl_status st = nbl_gguf_open_file(path, &g, err);
    if (st) return st;
    return open_common(g, opt, out, err);
}

nbl_status nbl_model_open_meta(const void *prefix, size_t avail, uint64_t file_size,
                               const nbl_model_options *opt, uint64_t *more, nbl_model **out,
                               nbl_error *err) {
    if (more) *more = 0;
    if ((!prefix && avail) || !more || !out) return nbl_set_err(err, NBL_E_ARG, "model: prefix, more and out are required");
    *out = NULL;
    if (opt && opt->vocab_only) return nbl_set_err(err, NBL_E_ARG, "model: a vocab-only open reads the whole buffer");
    nbl_gguf *g;
    nbl_status st = nbl_gguf_open_meta(prefix, avail, file_size, more, &g, err);
    if (st) return st;
    return open_common(g, opt, out, err);
}

int32_t nbl_model_missing_vectors(const nbl_model *m, uint64_t *ranges, int32_t cap) {
    if (!m) return 0;
    for (int32_t i = 0; i < m->n_missing && i < cap; i++) {
        ranges[2 * i] = m->gguf->data_offset + m->missing[i].t->offset;
        ranges[2 * i + 1] = m->missing[i].t->nbytes;
    }
    return m->n_missing;
}

/* Converts missing vector i from src (its bytes) and drops it from the list. */
static void fill_missing(nbl_model *m, int32_t i, const void *src) {
    struct nbl_missing_vec *mv = &m->missing[i];
    nbl_dequant_row(mv->t->type, src, mv->dst, mv->n);
    m->missing[i] = m->missing[--m->n_missing];
}

nbl_status nbl_model_put_tensor(nbl_model *m, uint64_t offset, const void *bytes, uint64_t size,
                                nbl_error *err) {
    if (!m || (!bytes && size)) return nbl_set_err(err, NBL_E_ARG, "model: model and bytes are required");
    if (offset > m->gguf->size || size > m->gguf->size - offset)
        return nbl_set_err(err, NBL_E_ARG, "model: bytes %llu+%llu lie outside the %llu-byte file",
                           (unsigned long long)offset, (unsigned long long)size, (unsigned long long)m->gguf->size);
    for (int32_t i = m->n_missing - 1; i >= 0; i--) {
        const nbl_gguf_tensor *t = m->missing[i].t;
        const uint64_t at = m->gguf->data_offset + t->offset;
        if (at >= offset && at - offset <= size && t->nbytes <= size - (at - offset))
            fill_missing(m, i, (const uint8_t *)bytes + (at - offset));
    }
    return NBL_OK;
}

static void point_weight(nbl_weight *w, const uint8_t *data, uint64_t data_offset) {
    if (w->name) w->data = data + (w->offset - data_offset);
}

nbl_status nbl_model_attach_data(nbl_model *m, const void *data, uint64_t size, nbl_error *err) {
    if (!m || !data) return nbl_set_err(err, NBL_E_ARG, "model: model and data are required");
    if (m->vocab_only) return nbl_set_err(err, NBL_E_STATE, "model: the model was opened vocab-only");
    nbl_status st = nbl_gguf_attach_data(m->gguf, data, size, err);
    if (st) return st;
    const uint64_t d0 = m->gguf->data_offset;
    while (m->n_missing) fill_missing(m, m->n_missing - 1, m->missing[m->n_missing - 1].t->data);
    point_weight(&m->tok_embd, data, d0);
    point_weight(&m->output, data, d0);
    for (int32_t i = 0; i < m->hp.n_layer; i++) {
        nbl_layer *L = &m->layers[i];
        nbl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) point_weight(ws[k], data, d0);
    }
    return NBL_OK;
}

int32_t nbl_model_has_data(const nbl_model *m) { return m && m->gguf->has_data && !m->vocab_only ? 1 : 0; }

nbl_status nbl_model_open_buffer(const void *data, size_t size, const nbl_model_options *opt,
                                 nbl_model **out, nbl_error *err) {
    if (!data || !out) return nbl_set_err(err, NBL_E_ARG, "model: data and out are required");
    *out = NULL;
    nbl_gguf *g;
    nbl_status st = nbl_gguf_open_buffer(data, size, &g, err);
    if (st) return st;
    return open_common(g, opt, out, err);
}

void nbl_model_free(nbl_model *m) {
    if (!m) return;
    nbl_threadpool_free(m->pool);
    pthread_mutex_destroy(&m->pool_mu);
    nbl_grammar_vocab_free(m->grammar_vocab);
    nbl_vocab_free(m->vocab);
    nbl_gguf_free(m->gguf);
    free(m->arch);
    free(m->name);
    free(m->chat_template);
    free(m->owned);
    free(m->cpu_owned);
    free(m->layers);
    free(m->missing);
    free(m);
}

typedef struct regroup_job {
    const uint8_t *src;
    uint8_t *dst;
    uint32_t rtype;
    int64_t M, K, groups;
    size_t bw;
} regroup_job;

static void regroup_part(void *ctx, int32_t ith, int32_t nth) {
    const regroup_job *j = ctx;
    const int64_t g0 = j->groups * ith / nth, g1 = j->groups * (ith + 1) / nth;
    const int64_t r0 = 16 * g0, r1 = g1 == j->groups ? j->M : 16 * g1;
    if (r1 > r0) nbl_r16_pack(j->rtype, j->src + (size_t)r0 * j->bw, r1 - r0, j->K, j->dst + (size_t)r0 * j->bw);
}

typedef struct inplace_job {
    uint8_t *rows, *scratch; /* scratch: 16 rows per thread */
    uint32_t rtype;
    int64_t K, groups;
    size_t bw;
} inplace_job;

static void inplace_part(void *ctx, int32_t ith, int32_t nth) {
    const inplace_job *j = ctx;
    const int64_t g0 = j->groups * ith / nth, g1 = j->groups * (ith + 1) / nth;
    if (g1 > g0)
        nbl_r16_pack_inplace(j->rtype, j->rows + (size_t)(16 * g0) * j->bw, 16 * (g1 - g0), j->K,
                             j->scratch + (size_t)ith * 16 * j->bw);
}

/* The weights ws[0..n) (NULL: skipped) regrouped where they are. */
static void regroup_in_place(struct nbl_threadpool *tp, nbl_weight **ws, int32_t n) {
    size_t max_bw = 0;
    for (int32_t i = 0; i < n; i++)
        if (ws[i]) {
            const size_t bw = (size_t)nbl_row_bytes(ws[i]->type, ws[i]->ne0);
            if (bw > max_bw) max_bw = bw;
        }
    /* all the scratch first: a weight is either regrouped whole or left as it is */
    uint8_t *scratch = max_bw ? malloc((size_t)nbl_threadpool_size(tp) * 16 * max_bw) : NULL;
    if (!scratch) return;
    for (int32_t i = 0; i < n; i++) {
        nbl_weight *w = ws[i];
        if (!w) continue;
        const uint32_t rt = (uint32_t)nbl_layout_r16(w->type);
        inplace_job j = {(uint8_t *)w->data, scratch, rt, w->ne0, w->ne1 / 16, (size_t)nbl_row_bytes(w->type, w->ne0)};
        nbl_threadpool_run(tp, inplace_part, &j);
        w->cpu_data = w->data;
        w->cpu_type = rt;
    }
    free(scratch);
}

/* Weights bound to the same bytes as a regrouped one (the embedding tied to the output head, or
 * a tensor bound twice) read its regrouped layout too: in place their own bytes were changed,
 * and a copy spares the file's released pages. */
static void share_layout(nbl_model *m, nbl_weight **all, int32_t n) {
    for (int32_t i = 0; i <= n; i++) {
        nbl_weight *x = i < n ? all[i] : &m->tok_embd;
        for (int32_t k = 0; k < n && !x->cpu_data; k++) {
            const nbl_weight *y = all[k];
            if (y->cpu_data && y->data == x->data && y->type == x->type && y->ne0 == x->ne0 && y->ne1 == x->ne1) {
                x->cpu_data = y->cpu_data;
                x->cpu_type = y->cpu_type;
            }
        }
    }
}

void nbl_model_set_regroup(nbl_model *m, int32_t mode) {
    if (m) m->regroup = mode;
}

void nbl_model_cpu_layout(nbl_model *m, struct nbl_threadpool *tp) {
    if (m->cpu_laid || m->vocab_only) return;
    m->cpu_laid = 1;
    const char *env = getenv("NBL_REGROUP");
    if (m->regroup == NBL_REGROUP_NONE || (env && !strcmp(env, "0"))) return;
    const nbl_kernels *kt = nbl_kernels_best();
    const size_t n_max = 1 + 7 * (size_t)m->hp.n_layer;
    nbl_weight **ws = malloc(2 * n_max * sizeof *ws), **all = ws + n_max;
    if (!ws) return;
    /* The matrices products read: the output head (often the embedding's tensor, which then
     * shares its layout: share_layout) and the layers'. */
    int32_t n = 0;
    ws[n++] = &m->output;
    for (int32_t i = 0; i < m->hp.n_layer; i++) {
        nbl_layer *L = &m->layers[i];
        nbl_weight *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++) ws[n++] = lw[k];
    }
    memcpy(all, ws, (size_t)n * sizeof *ws);
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        nbl_weight *w = ws[i];
        int shared = 0; /* the same bytes bound twice: regrouped once */
        for (int32_t k = 0; k < i && !shared; k++) shared = ws[k] && ws[k]->data == w->data;
        if (shared || !(w->name && w->data && w->ne1 >= 16 && nbl_layout_r16(w->type) >= 0 && kt->regroup[w->type])) {
            ws[i] = NULL;
            continue;
        }
        const size_t bw = (size_t)nbl_row_bytes(w->type, w->ne0);
        total += (bw * (size_t)w->ne1 + 63) & ~(size_t)63;
    }
    if (m->regroup == NBL_REGROUP_INPLACE && !nbl_gguf_mapped(m->gguf)) {
        if (total) regroup_in_place(tp, ws, n);
        share_layout(m, all, n);
        free(ws);
        return;
    }
    void *buf = NULL;
    if (!total || posix_memalign(&buf, 2u << 20, total) != 0) {
        free(ws);
        return;
    }
#ifdef MADV_HUGEPAGE
    /* Decode streams all of it every token: 2 MiB pages spare the page walks of 4 KiB ones. */
    madvise(buf, total, MADV_HUGEPAGE);
#endif
    uint8_t *p = buf;
    for (int32_t i = 0; i < n; i++) {
        nbl_weight *w = ws[i];
        if (!w) continue;
        const uint32_t rt = (uint32_t)nbl_layout_r16(w->type);
        const size_t bw = (size_t)nbl_row_bytes(w->type, w->ne0);
        /* In slices of a few MiB, each slice's file pages dropped once copied, so memory holds
         * about one copy of the weights throughout, not two. */
        const int64_t step = (int64_t)((8u << 20) / (16 * bw)) * 16 + 16;
        for (int64_t r0 = 0; r0 < w->ne1; r0 += step) {
            const int64_t rows = w->ne1 - r0 < step ? w->ne1 - r0 : step;
            regroup_job j = {(const uint8_t *)w->data + (size_t)r0 * bw, p + (size_t)r0 * bw, rt, rows, w->ne0, rows / 16, bw};
            nbl_threadpool_run(tp, regroup_part, &j);
            nbl_gguf_drop_pages(m->gguf, j.src, (size_t)rows * bw);
        }
        w->cpu_data = p;
        p += (bw * (size_t)w->ne1 + 63) & ~(size_t)63;
        w->cpu_type = rt;
    }
    share_layout(m, all, n);
    free(ws);
    m->cpu_owned = buf;
}

void nbl_model_get_info(const nbl_model *m, nbl_model_info *info) {
    memset(info, 0, sizeof *info);
    const nbl_hparams *hp = &m->hp;
    info->arch = m->arch;
    info->name = m->name;
    info->n_vocab = m->vocab_only ? nbl_vocab_size(m) : hp->n_vocab;
    info->n_ctx_train = hp->n_ctx_train;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->n_ff = hp->n_ff;
    info->file_size = m->gguf->size;
    info->data_offset = m->gguf->data_offset;
    info->bos = info->eos = info->eot = -1;
    if (m->vocab) {
        /* The tokenizer resolves defaults (SentencePiece adds BOS unless told not to, EOT falls
         * back to the end-of-turn token the vocabulary has). */
        nbl_vocab_info vi;
        nbl_vocab_get_info(m->vocab, &vi);
        info->bos = vi.bos;
        info->eos = vi.eos;
        info->eot = vi.eot >= 0 ? vi.eot : vi.eos;
        info->add_bos = vi.add_bos;
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const nbl_gguf_tensor *t = &m->gguf->tensors[i];
        info->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        info->weight_bytes += t->nbytes;
    }
}
