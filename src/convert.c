/* convert.c — turns a Hugging Face checkpoint directory (Qwen2ForCausalLM, LlamaForCausalLM)
 * into GGUF with the metadata keys, tensor names, layouts and tokenizer encoding that
 * llama.cpp's convert_hf_to_gguf.py writes, so the result runs here and in llama.cpp alike.
 * Every input file is untrusted: errors name the file, and the key or tensor at fault. */
#include "nbl_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sanity bounds on hyperparameters: far above any real model, low enough that products of
 * them cannot overflow before the shape checks run. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_VOCAB (1 << 24)

enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };
enum { ROPE_NONE, ROPE_LLAMA3, ROPE_LINEAR, ROPE_YARN };

/* Special-token kinds in the order llama.cpp's SpecialVocab resolves them, with GGUF keys. */
static const char *const SPECIAL_NAMES[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
static const char *const SPECIAL_KEYS[] = {
    "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",   "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",   "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id"};
#define N_SPECIAL 7

/* Pre-tokenizer regexes as they appear (JSON-decoded) in tokenizer.json, and the names
 * llama.cpp gives them in tokenizer.ggml.pre. */
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct cv {
    const char *dir;
    nbl_convert_options opt;
    nbl_error *err;

    nbl_json *config, *tok_json, *tok_cfg, *gen_cfg, *vocab_json, *added_json;
    char *template_file;

    /* hyperparameters */
    const char *arch;
    int is_llama;
    int64_t n_vocab, n_ctx, n_embd, n_ff, n_head, n_kv, n_layer, head_dim;
    int explicit_head_dim, tied;
    double eps, theta;
    int rope_type;
    double rope_factor, rope_low, rope_high;
    int64_t rope_orig_ctx;

    /* vocabulary */
    const char **tokens;   /* n_vocab entries, borrowed from the JSON trees or owned */
    int32_t *types;
    uint8_t *added, *special;
    const char **merges;
    size_t n_merges;
    char **owned;          /* strings this converter allocated */
    size_t n_owned, cap_owned;
    const char *pre;
    int64_t special_ids[N_SPECIAL];
    int add_bos, add_eos, add_prefix; /* -1 = unknown */

    nbl_st *st;
    void **bufs;           /* converted tensor data, alive until the file is written */
    size_t n_bufs, cap_bufs;
    float *rope_freqs;
    nbl_gguf_writer *w;
} cv;

void nbl_convert_options_init(nbl_convert_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->out_type = NBL_TYPE_F16;
}

static void cv_log(cv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cv_log(cv *c, const char *fmt, ...) {
    if (!c->opt.log) return;
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->opt.log(c->opt.log_user, buf);
}

static nbl_status nomem(cv *c) { return nbl_set_err(c->err, NBL_E_NOMEM, "convert: out of memory"); }

static int keep(cv *c, void *p) {
    if (!p) return 0;
    if (c->n_owned == c->cap_owned) {
        size_t nc = c->cap_owned ? c->cap_owned * 2 : 256;
        char **n = realloc(c->owned, nc * sizeof *n);
        if (!n) {
            free(p);
            return 0;
        }
        c->owned = n;
        c->cap_owned = nc;
    }
    c->owned[c->n_owned++] = p;
    return 1;
}

static char *path_in(const cv *c, const char *name) {
    size_t a = strlen(c->dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, c->dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int file_exists(const cv *c, const char *name) {
    char *p = path_in(c, name);
    int ok = p && access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* Reads DIR/name; absent optional files give NBL_OK with *out NULL. */
static nbl_status read_text(cv *c, const char *name, int required, char **out, size_t *len) {
    *out = NULL;
    char *p = path_in(c, name);
    if (!p) return nomem(c);
    if (access(p, F_OK) != 0) {
        free(p);
        if (!required) return NBL_OK;
        return nbl_set_err(c->err, NBL_E_IO, "%s: %s not found", c->dir, name);
    }
    *out = nbl_read_file(p, len, c->err);
    free(p);
    return *out ? NBL_OK : (c->err ? c->err->code : NBL_E_IO);
}

static nbl_status load_json(cv *c, const char *name, int required, nbl_json **out) {
    *out = NULL;
    char *text;
    size_t len;
    nbl_status s = read_text(c, name, required, &text, &len);
    if (s || !text) return s;
    nbl_error jerr = {0};
    *out = nbl_json_parse(text, len, &jerr);
    free(text);
    if (!*out)
        return nbl_set_err(c->err, jerr.code == NBL_E_NOMEM ? NBL_E_NOMEM : NBL_E_FORMAT,
                           "%s: %s", name, jerr.msg);
    if ((*out)->type != NBL_JSON_OBJECT)
        return nbl_set_err(c->err, NBL_E_FORMAT, "%s: top level is not a JSON object", name);
    return NBL_OK;
}

static const char *json_str(const nbl_json *j, const char *key) {
    const nbl_json *v = nbl_json_get(j, key);
    return v && v->type == NBL_JSON_STRING ? v->str : NULL;
}

static int json_is_int(const nbl_json *v, int64_t *out) {
    if (!v || v->type != NBL_JSON_NUMBER || !(fabs(v->num) <= 9007199254740992.0) ||
        floor(v->num) != v->num)
        return 0;
    *out = (int64_t)v->num;
    return 1;
}

/* ---- config.json -------------------------------------------------------------------------- */

/* First of keys present in config.json, as an integer in [lo, hi]. 1 found, 0 absent. */
static int cfg_int(cv *c, const char *const *keys, int64_t lo, int64_t hi, int64_t *out,
                   nbl_status *s) {
    for (; *keys; keys++) {
        const nbl_json *v = nbl_json_get(c->config, *keys);
        if (!v || v->type == NBL_JSON_NULL) continue;
        if (!json_is_int(v, out) || *out < lo || *out > hi) {
            *s = nbl_set_err(c->err, NBL_E_FORMAT,
                             "config.json: %s must be an integer in [%lld, %lld]", *keys,
                             (long long)lo, (long long)hi);
            return 0;
        }
        return 1;
    }
    return 0;
}

static nbl_status cfg_req(cv *c, const char *const *keys, int64_t lo, int64_t hi, int64_t *out) {
    nbl_status s = NBL_OK;
    if (cfg_int(c, keys, lo, hi, out, &s)) return NBL_OK;
    if (s) return s;
    return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: missing %s", keys[0]);
}

/* A number from object o (config.json or its rope dict); absent or null keeps *out. */
static nbl_status obj_num(cv *c, const nbl_json *o, const char *what, const char *key,
                          double *out) {
    const nbl_json *v = nbl_json_get(o, key);
    if (!v || v->type == NBL_JSON_NULL) return NBL_OK;
    if (v->type != NBL_JSON_NUMBER || !isfinite(v->num))
        return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: %s%s must be a number", what, key);
    *out = v->num;
    return NBL_OK;
}

static nbl_status parse_rope(cv *c) {
    /* transformers >= 5 keeps everything in rope_parameters; older configs have a top-level
     * rope_theta and an optional rope_scaling dict. */
    const nbl_json *rp = nbl_json_get(c->config, "rope_parameters");
    const char *what = "rope_parameters.";
    if (!rp || rp->type == NBL_JSON_NULL) {
        rp = nbl_json_get(c->config, "rope_scaling");
        what = "rope_scaling.";
    }
    if (rp && rp->type == NBL_JSON_NULL) rp = NULL;
    if (rp && rp->type != NBL_JSON_OBJECT)
        return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: %.*s must be an object",
                           (int)strlen(what) - 1, what);
    c->theta = 10000.0;
    nbl_status s = obj_num(c, c->config, "", "rope_theta", &c->theta);
    if (!s && rp) s = obj_num(c, rp, what, "rope_theta", &c->theta);
    if (s) return s;
    if (!(c->theta > 0))
        return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: rope_theta must be positive");
    c->rope_type = ROPE_NONE;
    if (!rp) return NBL_OK;
    const char *type = json_str(rp, "rope_type");
    if (!type) type = json_str(rp, "type");
    if (!type || !strcmp(type, "default")) return NBL_OK;
    c->rope_factor = 8.0;
    c->rope_low = 1.0;
    c->rope_high = 4.0;
    double orig = 8192;
    s = obj_num(c, c->config, "", "original_max_position_embeddings", &orig);
    if (!s) s = obj_num(c, rp, what, "factor", &c->rope_factor);
    if (!s) s = obj_num(c, rp, what, "low_freq_factor", &c->rope_low);
    if (!s) s = obj_num(c, rp, what, "high_freq_factor", &c->rope_high);
    if (!s) s = obj_num(c, rp, what, "original_max_position_embeddings", &orig);
    if (s) return s;
    if (!(c->rope_factor > 0) || !(orig >= 1 && orig <= 1e9) || floor(orig) != orig)
        return nbl_set_err(c->err, NBL_E_FORMAT,
                           "config.json: %sfactor / original_max_position_embeddings out of range",
                           what);
    c->rope_orig_ctx = (int64_t)orig;
    if (!strcmp(type, "llama3")) {
        if (!c->is_llama)
            return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                               "config.json: rope type llama3 is only supported for Llama");
        if (!(c->rope_low > 0) || !(c->rope_high > 0) || c->rope_low == c->rope_high)
            return nbl_set_err(c->err, NBL_E_FORMAT,
                               "config.json: %slow_freq_factor and high_freq_factor must be "
                               "positive and different",
                               what);
        c->rope_type = ROPE_LLAMA3;
    } else if (!strcmp(type, "linear")) {
        c->rope_type = ROPE_LINEAR;
    } else if (!strcmp(type, "yarn")) {
        c->rope_type = ROPE_YARN;
    } else {
        cv_log(c, "warning: rope type '%s' is not carried into the GGUF (as llama.cpp); long "
                  "contexts may degrade",
               type);
    }
    return NBL_OK;
}

static nbl_status parse_config(cv *c) {
    nbl_status s = load_json(c, "config.json", 1, &c->config);
    if (s) return s;
    const nbl_json *archs = nbl_json_get(c->config, "architectures");
    const char *a = NULL;
    if (archs && archs->type == NBL_JSON_ARRAY && archs->len > 0 &&
        archs->items[0].type == NBL_JSON_STRING)
        a = archs->items[0].str;
    const char *mt = json_str(c->config, "model_type");
    if (a ? !strcmp(a, "Qwen2ForCausalLM") : (mt && !strcmp(mt, "qwen2"))) {
        c->arch = "qwen2";
    } else if (a ? (!strcmp(a, "LlamaForCausalLM") || !strcmp(a, "LLaMAForCausalLM"))
                 : (mt && !strcmp(mt, "llama"))) {
        c->arch = "llama";
        c->is_llama = 1;
    } else {
        return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                           "config.json: architecture '%s' is not supported (Qwen2ForCausalLM, "
                           "LlamaForCausalLM)",
                           a ? a : mt ? mt : "(none)");
    }
    static const char *const K_LAYER[] = {"n_layers", "num_hidden_layers", "n_layer",
                                          "num_layers", NULL};
    static const char *const K_CTX[] = {"max_position_embeddings", "n_ctx", NULL};
    static const char *const K_EMBD[] = {"hidden_size", "n_embd", NULL};
    static const char *const K_FF[] = {"intermediate_size", "n_inner", NULL};
    static const char *const K_HEAD[] = {"num_attention_heads", "n_head", NULL};
    static const char *const K_KV[] = {"num_key_value_heads", NULL};
    static const char *const K_HD[] = {"head_dim", NULL};
    static const char *const K_VOCAB[] = {"vocab_size", NULL};
    if ((s = cfg_req(c, K_LAYER, 1, MAX_LAYERS, &c->n_layer)) ||
        (s = cfg_req(c, K_EMBD, 1, MAX_DIM, &c->n_embd)) ||
        (s = cfg_req(c, K_FF, 1, MAX_DIM, &c->n_ff)) ||
        (s = cfg_req(c, K_HEAD, 1, 65536, &c->n_head)))
        return s;
    c->n_ctx = 4096;
    cfg_int(c, K_CTX, 1, UINT32_MAX, &c->n_ctx, &s);
    c->n_kv = c->n_head;
    if (!s) cfg_int(c, K_KV, 1, c->n_head, &c->n_kv, &s);
    c->n_vocab = 0;
    if (!s) cfg_int(c, K_VOCAB, 1, MAX_VOCAB, &c->n_vocab, &s);
    if (!s) c->explicit_head_dim = cfg_int(c, K_HD, 1, 65536, &c->head_dim, &s);
    if (s) return s;
    if (!c->explicit_head_dim) {
        if (c->n_embd % c->n_head)
            return nbl_set_err(c->err, NBL_E_FORMAT,
                               "config.json: hidden_size %lld is not a multiple of "
                               "num_attention_heads %lld",
                               (long long)c->n_embd, (long long)c->n_head);
        c->head_dim = c->n_embd / c->n_head;
    }
    if (c->n_head % c->n_kv)
        return nbl_set_err(c->err, NBL_E_FORMAT,
                           "config.json: num_attention_heads %lld is not a multiple of "
                           "num_key_value_heads %lld",
                           (long long)c->n_head, (long long)c->n_kv);
    if (c->head_dim % 2 || c->n_head * c->head_dim > MAX_DIM)
        return nbl_set_err(c->err, NBL_E_FORMAT,
                           "config.json: head_dim %lld must be even and heads x head_dim at "
                           "most %d",
                           (long long)c->head_dim, MAX_DIM);
    c->eps = 1e-6; /* the default of both LlamaConfig and Qwen2Config */
    if ((s = obj_num(c, c->config, "", "rms_norm_eps", &c->eps))) return s;
    if (!(c->eps > 0 && c->eps < 1))
        return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: rms_norm_eps must be in (0, 1)");
    const nbl_json *tie = nbl_json_get(c->config, "tie_word_embeddings");
    if (tie && tie->type != NBL_JSON_BOOL && tie->type != NBL_JSON_NULL)
        return nbl_set_err(c->err, NBL_E_FORMAT, "config.json: tie_word_embeddings must be a bool");
    c->tied = tie && tie->type == NBL_JSON_BOOL && tie->b;
    return parse_rope(c);
}

/* ---- tokenizer ------------------------------------------------------------------------------ */

/* llama.cpp's converter also makes these CONTROL when a tokenizer forgot to flag them special. */
static int looks_special(const char *t) {
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") ||
        !strcmp(t, "[@BOS@]"))
        return 1;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return 1;
    /* fullwidth bars: "<｜" ... "｜>" */
    if (n >= 8 && !strncmp(t, "<\xEF\xBD\x9C", 4) && !strcmp(t + n - 4, "\xEF\xBD\x9C>")) return 1;
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return 1;
    return 0;
}

static nbl_status set_token(cv *c, const char *file, int64_t id, const nbl_json *str) {
    if (id < 0 || id >= c->n_vocab)
        return nbl_set_err(c->err, NBL_E_FORMAT,
                           "%s: token '%.64s' has id %lld outside the vocabulary of %lld rows",
                           file, str->str, (long long)id, (long long)c->n_vocab);
    if (strlen(str->str) != str->len || str->len == 0)
        return nbl_set_err(c->err, NBL_E_FORMAT, "%s: token %lld is empty or contains NUL", file,
                           (long long)id);
    c->tokens[id] = str->str;
    return NBL_OK;
}

static nbl_status add_token(cv *c, const char *file, int64_t id, const nbl_json *content,
                            int special) {
    nbl_status s = set_token(c, file, id, content);
    if (s) return s;
    c->added[id] = 1;
    c->special[id] = (uint8_t)special;
    return NBL_OK;
}

static nbl_status load_vocab_map(cv *c, const char *file, const nbl_json *vocab, int dup_ok) {
    if (!vocab || vocab->type != NBL_JSON_OBJECT)
        return nbl_set_err(c->err, NBL_E_FORMAT, "%s: vocabulary is not an object", file);
    for (size_t i = 0; i < vocab->len; i++) {
        int64_t id;
        if (!json_is_int(&vocab->items[i], &id))
            return nbl_set_err(c->err, NBL_E_FORMAT, "%s: token '%.64s' has a non-integer id",
                               file, vocab->keys[i]);
        nbl_json key = {.type = NBL_JSON_STRING, .str = vocab->keys[i], .len = strlen(vocab->keys[i])};
        if (id >= 0 && id < c->n_vocab && c->tokens[id] && !dup_ok)
            return nbl_set_err(c->err, NBL_E_FORMAT, "%s: id %lld is given to two tokens", file,
                               (long long)id);
        nbl_status s = set_token(c, file, id, &key);
        if (s) return s;
    }
    return NBL_OK;
}

/* Merges of tokenizer.json: "a b" strings, or [a, b] pairs (transformers >= 4.45), whose parts
 * may hold spaces that llama.cpp stores as U+0120 so the pair still splits at one space. */
static nbl_status load_merges_json(cv *c, const nbl_json *m) {
    if (!m || m->type != NBL_JSON_ARRAY)
        return nbl_set_err(c->err, NBL_E_FORMAT, "tokenizer.json: model.merges is not an array");
    c->merges = calloc(m->len ? m->len : 1, sizeof *c->merges);
    if (!c->merges) return nomem(c);
    for (size_t i = 0; i < m->len; i++) {
        const nbl_json *e = &m->items[i];
        if (e->type == NBL_JSON_STRING && strlen(e->str) == e->len && strchr(e->str, ' ')) {
            c->merges[i] = e->str;
            continue;
        }
        if (e->type != NBL_JSON_ARRAY || e->len != 2 || e->items[0].type != NBL_JSON_STRING ||
            e->items[1].type != NBL_JSON_STRING)
            return nbl_set_err(c->err, NBL_E_FORMAT,
                               "tokenizer.json: model.merges[%zu] is neither \"a b\" nor [a, b]",
                               i);
        size_t need = 2;
        for (int k = 0; k < 2; k++) {
            const nbl_json *p = &e->items[k];
            if (strlen(p->str) != p->len || !p->len)
                return nbl_set_err(c->err, NBL_E_FORMAT,
                                   "tokenizer.json: model.merges[%zu] has an empty part or NUL", i);
            for (size_t j = 0; j < p->len; j++) need += p->str[j] == ' ' ? 2 : 1;
        }
        char *o = malloc(need);
        if (!keep(c, o)) return nomem(c);
        size_t n = 0;
        for (int k = 0; k < 2; k++) {
            const nbl_json *p = &e->items[k];
            if (k) o[n++] = ' ';
            for (size_t j = 0; j < p->len; j++) {
                if (p->str[j] == ' ') {
                    o[n++] = '\xC4';
                    o[n++] = '\xA0';
                } else {
                    o[n++] = p->str[j];
                }
            }
        }
        o[n] = 0;
        c->merges[i] = o;
    }
    c->n_merges = m->len;
    return NBL_OK;
}

/* merges.txt as llama.cpp reads it: a leading "#" line is a version comment, each other line
 * is split on whitespace and kept only when it has exactly two parts. */
static nbl_status load_merges_txt(cv *c) {
    char *text;
    size_t len;
    nbl_status s = read_text(c, "merges.txt", 1, &text, &len);
    if (s) return s;
    if (!keep(c, text)) return nomem(c);
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    c->merges = calloc(n_lines, sizeof *c->merges);
    if (!c->merges) return nomem(c);
    char *p = text, *end = text + len;
    int first = 1;
    size_t line_no = 0, skipped = 0;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line_no++;
        *le = 0;
        char *a = p;
        p = nl ? nl + 1 : end;
        if (memchr(a, 0, (size_t)(le - a)))
            return nbl_set_err(c->err, NBL_E_FORMAT, "merges.txt: line %zu contains NUL", line_no);
        while (*a == ' ' || *a == '\t' || *a == '\r' || *a == '\v' || *a == '\f') a++;
        char *z = le;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t' || z[-1] == '\r' || z[-1] == '\v' ||
                         z[-1] == '\f'))
            *--z = 0;
        if (first) {
            first = 0;
            if (*a == '#') continue;
        }
        if (!*a) continue;
        char *sp = a + strcspn(a, " \t\v\f\r");
        char *b = sp + strspn(sp, " \t\v\f\r");
        if (!*sp || !*b || b[strcspn(b, " \t\v\f\r")]) {
            skipped++;
            continue;
        }
        if (b - sp == 1 && *sp == ' ') { /* already "a b" */
            c->merges[c->n_merges++] = a;
            continue;
        }
        *sp = ' ';
        memmove(sp + 1, b, strlen(b) + 1);
        c->merges[c->n_merges++] = a;
    }
    if (skipped) cv_log(c, "warning: merges.txt: %zu malformed line(s) ignored", skipped);
    return NBL_OK;
}

static const char *detect_pre(cv *c) {
    const nbl_json *pt = nbl_json_get(c->tok_json, "pre_tokenizer");
    if (!pt || pt->type != NBL_JSON_OBJECT) return NULL;
    const nbl_json *list = pt;
    size_t n = 1;
    const char *type = json_str(pt, "type");
    if (type && !strcmp(type, "Sequence")) {
        list = nbl_json_get(pt, "pretokenizers");
        if (!list || list->type != NBL_JSON_ARRAY) return NULL;
        n = list->len;
        list = list->items;
    }
    const char *regex = NULL;
    int n_split = 0, digits = 0, bytelevel_regex = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        const nbl_json *p = &list[i];
        const char *t = json_str(p, "type");
        if (!t) return NULL;
        if (!strcmp(t, "Split")) {
            n_split++;
            regex = json_str(nbl_json_get(p, "pattern"), "Regex");
        } else if (!strcmp(t, "ByteLevel")) {
            const nbl_json *ur = nbl_json_get(p, "use_regex"); /* defaults to true */
            bytelevel_regex = !ur || ur->type != NBL_JSON_BOOL || ur->b;
        } else if (!strcmp(t, "Digits")) {
            const nbl_json *d = nbl_json_get(p, "individual_digits");
            digits = d && d->type == NBL_JSON_BOOL && d->b;
            if (!digits) other = 1;
        } else {
            other = 1;
        }
    }
    if (other) return NULL;
    if (n_split == 1 && regex && !digits && !bytelevel_regex) {
        if (!strcmp(regex, RE_QWEN2)) return "qwen2";
        if (!strcmp(regex, RE_LLAMA3)) return "llama-bpe";
        if (!strcmp(regex, RE_GPT2)) return "gpt-2";
        return NULL;
    }
    if (n_split == 0 && bytelevel_regex) return digits ? "smollm" : "gpt-2";
    (void)c;
    return NULL;
}

/* bos/eos/... from tokenizer_config.json (by content, looked up among added tokens), then
 * config.json ids, then generation_config.json: the first source to name a kind wins. */
static int64_t added_id_by_content(cv *c, const char *content) {
    for (int64_t i = 0; i < c->n_vocab; i++)
        if (c->added[i] && c->tokens[i] && !strcmp(c->tokens[i], content)) return i;
    return -1;
}

static void set_special(cv *c, int k, int64_t id, const char *src) {
    if (c->special_ids[k] >= 0) return;
    if (id < 0 || id >= c->n_vocab) {
        cv_log(c, "warning: %s: %s token id %lld is outside the vocabulary; ignored", src,
               SPECIAL_NAMES[k], (long long)id);
        return;
    }
    c->special_ids[k] = id;
}

static void resolve_special(cv *c) {
    char key[32];
    for (int k = 0; k < N_SPECIAL; k++) {
        snprintf(key, sizeof key, "%s_token", SPECIAL_NAMES[k]);
        const nbl_json *e = nbl_json_get(c->tok_cfg, key);
        const char *content = NULL;
        if (e && e->type == NBL_JSON_STRING) content = e->str;
        if (e && e->type == NBL_JSON_OBJECT) content = json_str(e, "content");
        if (!content) continue;
        int64_t id = added_id_by_content(c, content);
        if (id >= 0) set_special(c, k, id, "tokenizer_config.json");
    }
    const nbl_json *srcs[2] = {c->config, c->gen_cfg};
    const char *names[2] = {"config.json", "generation_config.json"};
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < N_SPECIAL; k++) {
            snprintf(key, sizeof key, "%s_token_id", SPECIAL_NAMES[k]);
            const nbl_json *v = nbl_json_get(srcs[s], key);
            /* generation_config.json may list several eos ids; GGUF holds one. */
            if (s == 1 && v && v->type == NBL_JSON_ARRAY && v->len) v = &v->items[0];
            int64_t id;
            if (json_is_int(v, &id)) set_special(c, k, id, names[s]);
        }
    }
}

/* add_bos/add_eos: tokenizer_config.json's flags, else what tokenizer.json's post-processor
 * template adds around a single sequence. */
static void resolve_add_flags(cv *c) {
    const nbl_json *b = nbl_json_get(c->tok_cfg, "add_bos_token");
    const nbl_json *e = nbl_json_get(c->tok_cfg, "add_eos_token");
    if (b && b->type == NBL_JSON_BOOL) c->add_bos = b->b;
    if (e && e->type == NBL_JSON_BOOL) c->add_eos = e->b;
    const nbl_json *pp = nbl_json_get(c->tok_json, "post_processor");
    const nbl_json *tp = NULL;
    const char *t = json_str(pp, "type");
    if (t && !strcmp(t, "TemplateProcessing")) tp = pp;
    if (t && !strcmp(t, "Sequence")) {
        const nbl_json *l = nbl_json_get(pp, "processors");
        for (size_t i = 0; l && l->type == NBL_JSON_ARRAY && i < l->len; i++) {
            const char *ti = json_str(&l->items[i], "type");
            if (ti && !strcmp(ti, "TemplateProcessing")) tp = &l->items[i];
        }
    }
    const nbl_json *single = nbl_json_get(tp, "single");
    if (!single || single->type != NBL_JSON_ARRAY || !single->len) return;
    if (c->add_bos < 0) c->add_bos = nbl_json_get(&single->items[0], "SpecialToken") != NULL;
    if (c->add_eos < 0)
        c->add_eos = single->len > 1 &&
                     nbl_json_get(&single->items[single->len - 1], "SpecialToken") != NULL;
}

static nbl_status load_tokenizer(cv *c) {
    nbl_status s;
    if ((s = load_json(c, "tokenizer_config.json", 0, &c->tok_cfg)) ||
        (s = load_json(c, "generation_config.json", 0, &c->gen_cfg)) ||
        (s = load_json(c, "tokenizer.json", 0, &c->tok_json)))
        return s;
    size_t nv = (size_t)c->n_vocab;
    c->tokens = calloc(nv, sizeof *c->tokens);
    c->types = calloc(nv, sizeof *c->types);
    c->added = calloc(nv, 1);
    c->special = calloc(nv, 1);
    if (!c->tokens || !c->types || !c->added || !c->special) return nomem(c);

    if (c->tok_json) {
        const nbl_json *m = nbl_json_get(c->tok_json, "model");
        const char *mt = json_str(m, "type");
        if (!m || m->type != NBL_JSON_OBJECT)
            return nbl_set_err(c->err, NBL_E_FORMAT, "tokenizer.json: missing model object");
        if (!mt || strcmp(mt, "BPE") != 0)
            return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                               "tokenizer.json: model type '%s' is not supported (byte-level BPE "
                               "only)",
                               mt ? mt : "(none)");
        const nbl_json *bf = nbl_json_get(m, "byte_fallback");
        if (bf && bf->type == NBL_JSON_BOOL && bf->b)
            return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                               "tokenizer.json: SentencePiece-style BPE (byte_fallback) is not "
                               "supported, only byte-level BPE");
        if ((s = load_vocab_map(c, "tokenizer.json", nbl_json_get(m, "vocab"), 0)) ||
            (s = load_merges_json(c, nbl_json_get(m, "merges"))))
            return s;
        const nbl_json *at = nbl_json_get(c->tok_json, "added_tokens");
        if (at && at->type != NBL_JSON_ARRAY)
            return nbl_set_err(c->err, NBL_E_FORMAT, "tokenizer.json: added_tokens is not an array");
        for (size_t i = 0; at && i < at->len; i++) {
            const nbl_json *e = &at->items[i], *content = nbl_json_get(e, "content"),
                           *sp = nbl_json_get(e, "special");
            int64_t id;
            if (!json_is_int(nbl_json_get(e, "id"), &id) || !content ||
                content->type != NBL_JSON_STRING)
                return nbl_set_err(c->err, NBL_E_FORMAT,
                                   "tokenizer.json: added_tokens[%zu] needs an integer id and a "
                                   "string content",
                                   i);
            if ((s = add_token(c, "tokenizer.json", id, content,
                               sp && sp->type == NBL_JSON_BOOL && sp->b)))
                return s;
        }
        c->pre = detect_pre(c);
    } else {
        if (!file_exists(c, "vocab.json") && file_exists(c, "tokenizer.model"))
            return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                               "%s: only a SentencePiece tokenizer.model is present; this "
                               "converter reads byte-level BPE (tokenizer.json or vocab.json)",
                               c->dir);
        if (!file_exists(c, "vocab.json"))
            return nbl_set_err(c->err, NBL_E_IO, "%s: neither tokenizer.json nor vocab.json found",
                               c->dir);
        if ((s = load_json(c, "vocab.json", 1, &c->vocab_json)) ||
            (s = load_vocab_map(c, "vocab.json", c->vocab_json, 0)) ||
            (s = load_json(c, "added_tokens.json", 0, &c->added_json)) || (s = load_merges_txt(c)))
            return s;
        /* Slow tokenizers keep the special flag in tokenizer_config.json's added_tokens_decoder;
         * without it, the named special tokens and additional_special_tokens are special. */
        const nbl_json *dec = nbl_json_get(c->tok_cfg, "added_tokens_decoder");
        const nbl_json *extra = nbl_json_get(c->tok_cfg, "additional_special_tokens");
        for (size_t i = 0; c->added_json && i < c->added_json->len; i++) {
            int64_t id;
            const char *content = c->added_json->keys[i];
            if (!json_is_int(&c->added_json->items[i], &id))
                return nbl_set_err(c->err, NBL_E_FORMAT,
                                   "added_tokens.json: token '%.64s' has a non-integer id", content);
            char idkey[24];
            snprintf(idkey, sizeof idkey, "%lld", (long long)id);
            const nbl_json *d = nbl_json_get(dec, idkey), *sp = nbl_json_get(d, "special");
            int special = 0;
            if (sp && sp->type == NBL_JSON_BOOL) {
                special = sp->b;
            } else {
                for (size_t k = 0; extra && extra->type == NBL_JSON_ARRAY && k < extra->len; k++) {
                    const nbl_json *x = &extra->items[k];
                    const char *xs = x->type == NBL_JSON_STRING ? x->str : json_str(x, "content");
                    if (xs && !strcmp(xs, content)) special = 1;
                }
                for (int k = 0; k < N_SPECIAL; k++) {
                    char key[32];
                    snprintf(key, sizeof key, "%s_token", SPECIAL_NAMES[k]);
                    const nbl_json *x = nbl_json_get(c->tok_cfg, key);
                    const char *xs = x && x->type == NBL_JSON_STRING ? x->str : json_str(x, "content");
                    if (xs && !strcmp(xs, content)) special = 1;
                }
            }
            nbl_json cj = {.type = NBL_JSON_STRING, .str = (char *)content, .len = strlen(content)};
            if ((s = add_token(c, "added_tokens.json", id, &cj, special))) return s;
        }
        const char *cls = json_str(c->tok_cfg, "tokenizer_class");
        if (cls && (!strcmp(cls, "Qwen2Tokenizer") || !strcmp(cls, "Qwen2TokenizerFast")))
            c->pre = "qwen2";
        else if (cls && (!strcmp(cls, "GPT2Tokenizer") || !strcmp(cls, "GPT2TokenizerFast")))
            c->pre = "gpt-2";
    }
    if (!c->pre) {
        cv_log(c, "warning: pre-tokenizer not recognised; writing tokenizer.ggml.pre = default "
                  "(tokenization may differ from the original)");
        c->pre = "default";
    }

    /* Token list as llama.cpp writes it: gaps become [PADi] (UNUSED), added tokens are CONTROL
     * when special (or shaped like a control token), otherwise USER_DEFINED with SentencePiece
     * spaces pre-normalised. */
    for (int64_t i = 0; i < c->n_vocab; i++) {
        if (!c->tokens[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
            char *p = strdup(buf);
            if (!keep(c, p)) return nomem(c);
            c->tokens[i] = p;
            c->types[i] = TT_UNUSED;
        } else if (!c->added[i]) {
            c->types[i] = TT_NORMAL;
        } else if (c->special[i] || looks_special(c->tokens[i])) {
            c->types[i] = TT_CONTROL;
        } else {
            c->types[i] = TT_USER_DEFINED;
            if (strstr(c->tokens[i], "\xE2\x96\x81")) {
                const char *t = c->tokens[i];
                char *o = malloc(strlen(t) + 1), *q = o;
                if (!keep(c, o)) return nomem(c);
                while (*t) {
                    if (!strncmp(t, "\xE2\x96\x81", 3)) {
                        *q++ = ' ';
                        t += 3;
                    } else {
                        *q++ = *t++;
                    }
                }
                *q = 0;
                c->tokens[i] = o;
            }
        }
    }
    for (int k = 0; k < N_SPECIAL; k++) c->special_ids[k] = -1;
    resolve_special(c);
    c->add_bos = c->add_eos = c->add_prefix = -1;
    resolve_add_flags(c);
    const nbl_json *ap = nbl_json_get(c->tok_cfg, "add_prefix_space");
    if (ap && ap->type == NBL_JSON_BOOL) c->add_prefix = ap->b;

    /* chat_template.jinja (transformers >= 4.47) takes precedence over tokenizer_config.json. */
    char *tmpl;
    size_t tlen;
    if ((s = read_text(c, "chat_template.jinja", 0, &tmpl, &tlen))) return s;
    if (tmpl && strlen(tmpl) != tlen) {
        free(tmpl);
        return nbl_set_err(c->err, NBL_E_FORMAT, "chat_template.jinja contains NUL bytes");
    }
    c->template_file = tmpl;
    return NBL_OK;
}

/* ---- tensors ---------------------------------------------------------------------------------- */

typedef struct plan {
    char gguf[64];
    char hf[128];
    int64_t shape[2]; /* PyTorch order */
    int n_dims;
    int required;
    int64_t permute; /* llama q/k: heads to un-permute over, else 0 */
    int used;
} plan;

static void plan_add(plan *p, size_t *n, const char *gguf, const char *hf, int64_t r, int64_t col,
                     int required, int64_t permute) {
    plan *e = &p[(*n)++];
    memset(e, 0, sizeof *e);
    snprintf(e->gguf, sizeof e->gguf, "%s", gguf);
    snprintf(e->hf, sizeof e->hf, "%s", hf);
    e->shape[0] = r;
    e->shape[1] = col;
    e->n_dims = col ? 2 : 1;
    e->required = required;
    e->permute = permute;
}

static plan *build_plan(cv *c, size_t *np) {
    size_t cap = 4 + (size_t)c->n_layer * 16;
    plan *p = calloc(cap, sizeof *p);
    if (!p) return NULL;
    size_t n = 0;
    int64_t E = c->n_embd, V = c->n_vocab, Q = c->n_head * c->head_dim, KV = c->n_kv * c->head_dim;
    int64_t F = c->n_ff, ph = c->is_llama ? c->n_head : 0, pk = c->is_llama ? c->n_kv : 0;
    int qwen = !c->is_llama;
    plan_add(p, &n, "token_embd.weight", "model.embed_tokens.weight", V, E, 1, 0);
    for (int64_t l = 0; l < c->n_layer; l++) {
        char g[64], h[128];
#define ADD(gs, hs, r, col, req, perm)                                                          \
    do {                                                                                         \
        snprintf(g, sizeof g, "blk.%lld.%s", (long long)l, gs);                                  \
        snprintf(h, sizeof h, "model.layers.%lld.%s", (long long)l, hs);                         \
        plan_add(p, &n, g, h, r, col, req, perm);                                                \
    } while (0)
        ADD("attn_norm.weight", "input_layernorm.weight", E, 0, 1, 0);
        ADD("attn_q.weight", "self_attn.q_proj.weight", Q, E, 1, ph);
        ADD("attn_k.weight", "self_attn.k_proj.weight", KV, E, 1, pk);
        ADD("attn_v.weight", "self_attn.v_proj.weight", KV, E, 1, 0);
        ADD("attn_q.bias", "self_attn.q_proj.bias", Q, 0, qwen, ph);
        ADD("attn_k.bias", "self_attn.k_proj.bias", KV, 0, qwen, pk);
        ADD("attn_v.bias", "self_attn.v_proj.bias", KV, 0, qwen, 0);
        ADD("attn_output.weight", "self_attn.o_proj.weight", E, Q, 1, 0);
        if (c->is_llama) ADD("attn_output.bias", "self_attn.o_proj.bias", E, 0, 0, 0);
        ADD("ffn_norm.weight", "post_attention_layernorm.weight", E, 0, 1, 0);
        ADD("ffn_gate.weight", "mlp.gate_proj.weight", F, E, 1, 0);
        ADD("ffn_up.weight", "mlp.up_proj.weight", F, E, 1, 0);
        ADD("ffn_down.weight", "mlp.down_proj.weight", E, F, 1, 0);
#undef ADD
    }
    plan_add(p, &n, "output_norm.weight", "model.norm.weight", E, 0, 1, 0);
    if (!c->tied) plan_add(p, &n, "output.weight", "lm_head.weight", V, E, 0, 0);
    *np = n;
    return p;
}

static int ignorable(const cv *c, const char *name) {
    size_t n = strlen(name);
    static const char suffix[] = ".rotary_emb.inv_freq";
    if (n >= sizeof suffix - 1 && !strcmp(name + n - (sizeof suffix - 1), suffix)) return 1;
    return c->tied && !strcmp(name, "lm_head.weight"); /* tied: the embedding is the head */
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, uint32_t n) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static void *keep_buf(cv *c, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) return NULL;
    if (c->n_bufs == c->cap_bufs) {
        size_t nc = c->cap_bufs ? c->cap_bufs * 2 : 64;
        void **nb = realloc(c->bufs, nc * sizeof *nb);
        if (!nb) {
            free(p);
            return NULL;
        }
        c->bufs = nb;
        c->cap_bufs = nc;
    }
    c->bufs[c->n_bufs++] = p;
    return p;
}

/* Llama checkpoints order each head's rows as [first halves; second halves] for rotate_half;
 * GGUF pairs them (2i, 2i+1). Row h*hd + 2i + j of the output is row h*hd + j*hd/2 + i of the
 * input: numpy's reshape(n_head, 2, hd/2, ...).swapaxes(1, 2). */
static int64_t src_row(int64_t r, int64_t rows, int64_t heads) {
    if (!heads) return r;
    int64_t hd = rows / heads, h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static nbl_status emit_tensor(cv *c, const plan *p, const nbl_st_tensor *t) {
    char want[64], got[96];
    fmt_shape(want, sizeof want, p->shape, (uint32_t)p->n_dims);
    fmt_shape(got, sizeof got, t->shape, t->n_dims);
    if (t->n_dims != (uint32_t)p->n_dims || t->shape[0] != p->shape[0] ||
        (p->n_dims == 2 && t->shape[1] != p->shape[1]))
        return nbl_set_err(c->err, NBL_E_FORMAT,
                           "%s: tensor '%s' has shape %s but config.json implies %s", t->file,
                           t->name, got, want);
    if (!nbl_st_is_float(t->dtype))
        return nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                           "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", t->file,
                           t->name, nbl_st_dtype_name(t->dtype));
    int64_t rows = p->shape[0], cols = p->n_dims == 2 ? p->shape[1] : 1;
    if (p->permute && (rows % p->permute || (rows / p->permute) % 2))
        return nbl_set_err(c->err, NBL_E_FORMAT, "%s: tensor '%s': %lld rows do not split into "
                                                 "%lld heads of even size",
                           t->file, t->name, (long long)rows, (long long)p->permute);
    /* Like llama.cpp: vectors and norms stay F32, matrices take the requested type. */
    uint32_t type = p->n_dims == 1 ? NBL_TYPE_F32 : c->opt.out_type;
    uint32_t src_type = t->dtype == NBL_ST_F32 ? NBL_TYPE_F32
                        : t->dtype == NBL_ST_F16 ? NBL_TYPE_F16 : NBL_TYPE_BF16;
    int64_t ne[2] = {p->n_dims == 2 ? cols : rows, rows};
    const void *data = t->data;
    if (type != src_type || p->permute) {
        size_t esz = type == NBL_TYPE_F32 ? 4 : 2;
        uint8_t *out = keep_buf(c, (size_t)(rows * cols) * esz);
        float *row = malloc((size_t)cols * sizeof *row);
        if (!out || !row) {
            free(row);
            return nomem(c);
        }
        for (int64_t r = 0; r < rows; r++) {
            nbl_st_read_f32(t, (uint64_t)(src_row(r, rows, p->permute) * cols), (uint64_t)cols,
                            row);
            uint8_t *o = out + (size_t)(r * cols) * esz;
            if (type == NBL_TYPE_F32) {
                memcpy(o, row, (size_t)cols * 4);
            } else {
                for (int64_t i = 0; i < cols; i++) {
                    uint16_t h = type == NBL_TYPE_F16 ? nbl_f32_to_fp16(row[i])
                                                      : nbl_f32_to_bf16(row[i]);
                    memcpy(o + 2 * i, &h, 2);
                }
            }
        }
        free(row);
        data = out;
    }
    nbl_status s = nbl_gguf_writer_add_tensor(c->w, p->gguf, type, (uint32_t)p->n_dims, ne, data);
    if (s) return nbl_set_err(c->err, s, "convert: cannot add tensor %s", p->gguf);
    return NBL_OK;
}

/* Llama 3.1/3.2 long-context rope: per-frequency divisors in rope_freqs.weight, computed from
 * rope_scaling exactly as Meta's reference (and llama.cpp's converter) does. */
static nbl_status emit_rope_freqs(cv *c) {
    int64_t n = c->head_dim / 2;
    c->rope_freqs = malloc((size_t)n * sizeof *c->rope_freqs);
    if (!c->rope_freqs) return nomem(c);
    double old_ctx = (double)c->rope_orig_ctx;
    double low_wavelen = old_ctx / c->rope_low, high_wavelen = old_ctx / c->rope_high;
    for (int64_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(c->theta, (double)(2 * i) / (double)c->head_dim);
        double wavelen = 2 * M_PI / freq, f;
        if (wavelen < high_wavelen) {
            f = 1;
        } else if (wavelen > low_wavelen) {
            f = c->rope_factor;
        } else {
            double smooth = (old_ctx / wavelen - c->rope_low) / (c->rope_high - c->rope_low);
            f = 1 / ((1 - smooth) / c->rope_factor + smooth);
        }
        c->rope_freqs[i] = (float)f;
    }
    int64_t ne[1] = {n};
    nbl_status s = nbl_gguf_writer_add_tensor(c->w, "rope_freqs.weight", NBL_TYPE_F32, 1, ne,
                                              c->rope_freqs);
    return s ? nbl_set_err(c->err, s, "convert: cannot add rope_freqs.weight") : NBL_OK;
}

static nbl_status emit_tensors(cv *c) {
    size_t np;
    plan *p = build_plan(c, &np);
    if (!p) return nomem(c);
    nbl_status s = NBL_OK;
    /* Every checkpoint tensor must have a place: a silently dropped one would mean a model
     * variant this converter does not understand. */
    for (uint64_t i = 0; i < nbl_st_count(c->st) && !s; i++) {
        const nbl_st_tensor *t = nbl_st_at(c->st, i);
        size_t j = 0;
        while (j < np && strcmp(p[j].hf, t->name)) j++;
        if (j < np) {
            p[j].used = 1;
        } else if (!ignorable(c, t->name)) {
            s = nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                            "%s: tensor '%s' is not part of a %s model this converter knows",
                            t->file, t->name, c->arch);
        }
    }
    for (size_t j = 0; j < np && !s; j++)
        if (p[j].required && !p[j].used)
            s = nbl_set_err(c->err, NBL_E_FORMAT, "%s: checkpoint has no tensor '%s'", c->dir,
                            p[j].hf);
    if (!s && !c->tied && !p[np - 1].used)
        cv_log(c, "warning: no lm_head.weight and tie_word_embeddings is false; the embedding "
                  "will serve as the output head");
    if (!s && c->rope_type == ROPE_LLAMA3) s = emit_rope_freqs(c);
    for (size_t j = 0; j < np && !s; j++)
        if (p[j].used) s = emit_tensor(c, &p[j], nbl_st_find(c->st, p[j].hf));
    free(p);
    return s;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static nbl_status write_kvs(cv *c, const char *name) {
    nbl_gguf_writer *w = c->w;
    char key[128];
    nbl_status s = NBL_OK;
#define TRY(x)                                                                                   \
    do {                                                                                         \
        if (!s) s = (x);                                                                         \
    } while (0)
#define AK(suffix) (snprintf(key, sizeof key, "%s.%s", c->arch, suffix), key)
    TRY(nbl_gguf_writer_set_str(w, "general.architecture", c->arch));
    TRY(nbl_gguf_writer_set_str(w, "general.type", "model"));
    TRY(nbl_gguf_writer_set_str(w, "general.name", name));
    TRY(nbl_gguf_writer_set_u32(w, AK("block_count"), (uint32_t)c->n_layer));
    TRY(nbl_gguf_writer_set_u32(w, AK("context_length"), (uint32_t)c->n_ctx));
    TRY(nbl_gguf_writer_set_u32(w, AK("embedding_length"), (uint32_t)c->n_embd));
    TRY(nbl_gguf_writer_set_u32(w, AK("feed_forward_length"), (uint32_t)c->n_ff));
    TRY(nbl_gguf_writer_set_u32(w, AK("attention.head_count"), (uint32_t)c->n_head));
    TRY(nbl_gguf_writer_set_u32(w, AK("attention.head_count_kv"), (uint32_t)c->n_kv));
    TRY(nbl_gguf_writer_set_f32(w, AK("rope.freq_base"), (float)c->theta));
    TRY(nbl_gguf_writer_set_f32(w, AK("attention.layer_norm_rms_epsilon"), (float)c->eps));
    if (c->explicit_head_dim) {
        TRY(nbl_gguf_writer_set_u32(w, AK("attention.key_length"), (uint32_t)c->head_dim));
        TRY(nbl_gguf_writer_set_u32(w, AK("attention.value_length"), (uint32_t)c->head_dim));
    }
    uint32_t ftype = c->opt.out_type == NBL_TYPE_F32 ? 0 : c->opt.out_type == NBL_TYPE_F16 ? 1 : 32;
    TRY(nbl_gguf_writer_set_u32(w, "general.file_type", ftype));
    if (c->is_llama) {
        TRY(nbl_gguf_writer_set_u32(w, AK("vocab_size"), (uint32_t)c->n_vocab));
        TRY(nbl_gguf_writer_set_u32(w, AK("rope.dimension_count"), (uint32_t)c->head_dim));
    }
    if (c->rope_type == ROPE_LINEAR || c->rope_type == ROPE_YARN) {
        TRY(nbl_gguf_writer_set_str(w, AK("rope.scaling.type"),
                                    c->rope_type == ROPE_LINEAR ? "linear" : "yarn"));
        TRY(nbl_gguf_writer_set_f32(w, AK("rope.scaling.factor"), (float)c->rope_factor));
        if (c->rope_type == ROPE_YARN)
            TRY(nbl_gguf_writer_set_u32(w, AK("rope.scaling.original_context_length"),
                                        (uint32_t)c->rope_orig_ctx));
    }
    TRY(nbl_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"));
    TRY(nbl_gguf_writer_set_str(w, "tokenizer.ggml.pre", c->pre));
    TRY(nbl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", c->tokens, (uint64_t)c->n_vocab));
    TRY(nbl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", NBL_GGUF_INT32, c->types,
                                (uint64_t)c->n_vocab));
    if (c->n_merges)
        TRY(nbl_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", c->merges, c->n_merges));
    else
        cv_log(c, "warning: no merges found; the tokenizer will not work");
    for (int k = 0; k < N_SPECIAL; k++)
        if (c->special_ids[k] >= 0)
            TRY(nbl_gguf_writer_set_u32(w, SPECIAL_KEYS[k], (uint32_t)c->special_ids[k]));
    if (c->add_bos >= 0) TRY(nbl_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", c->add_bos));
    if (c->add_eos >= 0) TRY(nbl_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", c->add_eos));
    if (c->is_llama && c->add_prefix >= 0)
        TRY(nbl_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", c->add_prefix));

    const nbl_json *ct = nbl_json_get(c->tok_cfg, "chat_template");
    if (c->template_file) {
        TRY(nbl_gguf_writer_set_str(w, "tokenizer.chat_template", c->template_file));
    } else if (ct && ct->type == NBL_JSON_STRING && strlen(ct->str) == ct->len) {
        TRY(nbl_gguf_writer_set_str(w, "tokenizer.chat_template", ct->str));
    } else if (ct && ct->type == NBL_JSON_ARRAY) {
        /* Named templates: "default" is the chat template, the rest go under their names
         * (non-alphanumerics as '_'), listed in tokenizer.chat_templates. */
        const char **names = calloc(ct->len ? ct->len : 1, sizeof *names);
        size_t nn = 0;
        if (!names) s = s ? s : NBL_E_NOMEM;
        for (size_t i = 0; !s && i < ct->len; i++) {
            const char *nm = json_str(&ct->items[i], "name"), *tx = json_str(&ct->items[i], "template");
            if (!nm || !tx || !*nm) continue;
            if (!strcmp(nm, "default")) {
                TRY(nbl_gguf_writer_set_str(w, "tokenizer.chat_template", tx));
                continue;
            }
            char *clean = strdup(nm);
            if (!keep(c, clean)) {
                s = NBL_E_NOMEM;
                break;
            }
            for (char *q = clean; *q; q++)
                if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
                    *q = '_';
            snprintf(key, sizeof key, "tokenizer.chat_template.%.90s", clean);
            TRY(nbl_gguf_writer_set_str(w, key, tx));
            names[nn++] = clean;
        }
        if (nn) TRY(nbl_gguf_writer_set_arr_str(w, "tokenizer.chat_templates", names, nn));
        free(names);
    } else if (ct && ct->type != NBL_JSON_NULL) {
        cv_log(c, "warning: tokenizer_config.json: chat_template has an unusable type; ignored");
    }
    TRY(nbl_gguf_writer_set_u32(w, "general.quantization_version", 2));
#undef AK
#undef TRY
    return s ? nbl_set_err(c->err, s, "convert: cannot set metadata (%s)", nbl_status_str(s))
             : NBL_OK;
}

static void cv_free(cv *c) {
    nbl_json_free(c->config);
    nbl_json_free(c->tok_json);
    nbl_json_free(c->tok_cfg);
    nbl_json_free(c->gen_cfg);
    nbl_json_free(c->vocab_json);
    nbl_json_free(c->added_json);
    free(c->template_file);
    free(c->tokens);
    free(c->types);
    free(c->added);
    free(c->special);
    free(c->merges);
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    for (size_t i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    free(c->bufs);
    free(c->rope_freqs);
    nbl_gguf_writer_free(c->w);
    nbl_st_free(c->st);
}

nbl_status nbl_convert_hf(const char *hf_dir, const char *out_path,
                          const nbl_convert_options *opt, nbl_error *err) {
    if (!hf_dir || !out_path || !*hf_dir) return nbl_set_err(err, NBL_E_ARG, "convert: NULL path");
    cv c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.dir = hf_dir;
    if (opt)
        c.opt = *opt;
    else
        nbl_convert_options_init(&c.opt);
    if (c.opt.out_type != NBL_TYPE_F32 && c.opt.out_type != NBL_TYPE_F16 &&
        c.opt.out_type != NBL_TYPE_BF16)
        return nbl_set_err(err, NBL_E_ARG, "convert: output type must be f32, f16 or bf16");

    /* general.name defaults to the directory's last component, as llama.cpp's does. */
    char name[256];
    if (c.opt.name) {
        snprintf(name, sizeof name, "%s", c.opt.name);
    } else {
        size_t n = strlen(hf_dir);
        while (n > 1 && hf_dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && hf_dir[b - 1] != '/') b--;
        snprintf(name, sizeof name, "%.*s", (int)(n - b), hf_dir + b);
    }

    nbl_status s = parse_config(&c);
    if (!s) s = nbl_st_open_dir(hf_dir, &c.st, err);
    if (!s && !c.n_vocab) {
        /* No vocab_size in config.json: the embedding's rows are the vocabulary. */
        const nbl_st_tensor *e = nbl_st_find(c.st, "model.embed_tokens.weight");
        if (!e || e->n_dims != 2 || e->shape[0] < 1 || e->shape[0] > MAX_VOCAB)
            s = nbl_set_err(err, NBL_E_FORMAT,
                            "config.json has no vocab_size and model.embed_tokens.weight cannot "
                            "supply it");
        else
            c.n_vocab = e->shape[0];
    }
    if (!s) s = load_tokenizer(&c);
    if (!s && !(c.w = nbl_gguf_writer_new())) s = nomem(&c);
    if (!s) s = write_kvs(&c, name);
    if (!s) s = emit_tensors(&c);
    if (!s) {
        cv_log(&c, "writing %s", out_path);
        s = nbl_gguf_writer_write_file(c.w, out_path, err);
    }
    cv_free(&c);
    return s;
}
