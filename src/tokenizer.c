/* tokenizer.c — the vocabulary from GGUF metadata and text <-> token ids: byte-level BPE with the
 * GPT-2 family of pre-tokenizers (hand-written matchers, no regex engine), SentencePiece BPE with
 * byte fallback, special-token matching limited to caller-given byte ranges, and a streaming
 * detokenizer that never emits broken UTF-8. Behaviour follows llama.cpp's tokenizer. */
#include "nbl_impl.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum { TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5,
       TT_BYTE = 6 };

enum { KIND_BPE = 1, KIND_SPM = 2 };

/* Pre-tokenizers: each is one or more split passes applied in sequence (see pretok_split). */
enum { PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_SMOLLM };

enum { TF_EOG = 1 }; /* per-token flags */

typedef struct text_slot { /* text -> id hash table entry; id < 0 = empty */
    uint32_t hash;     /* high half of the text's hash */
    int32_t id;
    uint32_t off, len; /* the token's text in arena, kept here to save a cache miss */
} text_slot;

typedef struct merge_slot { /* (left id, right id) -> merge rank and resulting id */
    int32_t left, right; /* left < 0 = empty */
    int32_t rank, result;
} merge_slot;

struct nbl_vocab {
    int kind, pre;
    int32_t n_tokens;
    char *arena;        /* every token's text, each followed by a NUL */
    uint32_t *tok_off;  /* [n_tokens] offset of the text in arena */
    uint32_t *tok_len;  /* [n_tokens] */
    float *scores;      /* [n_tokens] SentencePiece merge scores (0 when absent) */
    uint8_t *types;     /* [n_tokens] TT_* */
    uint8_t *flags;     /* [n_tokens] TF_* */
    text_slot *texts;   /* open addressing, texts_mask + 1 slots */
    uint32_t texts_mask;
    merge_slot *merges; /* open addressing, merges_mask + 1 slots; NULL for SentencePiece */
    uint32_t merges_mask;
    int32_t byte_tok[256]; /* BPE: token of the byte's mapped character; SPM: <0xNN> token */
    char byte_str[256][2]; /* BPE: the byte's mapped character as UTF-8 ... */
    uint8_t byte_str_len[256]; /* ... of 1 or 2 bytes */
    int32_t *special;      /* control / user-defined / unknown tokens, longest text first */
    int32_t n_special;
    int32_t *sp_index;     /* indexes into special[], ordered by the texts' first two bytes */
    int32_t sp_start[257]; /* sp_index[sp_start[b] .. sp_start[b + 1]) start with byte b */
    int32_t bos, eos, eot, eom, pad, unk;
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    uint32_t max_len; /* longest token text in bytes */
    char model_name[32], pre_name[64];
    char warning[256];
};

/* ---- hashing -------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* Slot index holding text, or of the empty slot where it would go. */
static uint32_t text_probe(const nbl_vocab *v, const char *s, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32), i = (uint32_t)h & v->texts_mask;
    for (;;) {
        const text_slot *t = &v->texts[i];
        if (t->id < 0) return i;
        if (t->hash == tag && t->len == n && !memcmp(v->arena + t->off, s, n)) return i;
        i = (i + 1) & v->texts_mask;
    }
}

/* Many lookups at once: loading 150k merges is three lookups each, all cache misses, so the
 * slots and then the texts are prefetched for a batch before any is compared. */
#define FIND_BATCH 64
static void text_find_batch(const nbl_vocab *v, const char *const *s, const size_t *n, int32_t *ids,
                            size_t count) {
    uint64_t h[FIND_BATCH];
    for (size_t i = 0; i < count; i++) {
        h[i] = hash_bytes(s[i], n[i]);
        __builtin_prefetch(&v->texts[(uint32_t)h[i] & v->texts_mask]);
    }
    for (size_t i = 0; i < count; i++) {
        const text_slot *t = &v->texts[(uint32_t)h[i] & v->texts_mask];
        if (t->id >= 0) __builtin_prefetch(v->arena + t->off);
    }
    for (size_t i = 0; i < count; i++) ids[i] = v->texts[text_probe(v, s[i], n[i], h[i])].id;
}

/* Token id with this exact text, of any type; -1 if none. */
static int32_t text_find(const nbl_vocab *v, const char *s, size_t n) {
    return v->texts[text_probe(v, s, n, hash_bytes(s, n))].id;
}

static uint32_t merge_hash(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32);
}

static const merge_slot *merge_find(const nbl_vocab *v, int32_t a, int32_t b) {
    uint32_t i = merge_hash(a, b) & v->merges_mask;
    for (;;) {
        const merge_slot *m = &v->merges[i];
        if (m->left < 0) return NULL;
        if (m->left == a && m->right == b) return m;
        i = (i + 1) & v->merges_mask;
    }
}

/* ---- GPT-2 byte <-> character map ----------------------------------------------------------- */

/* Byte-level BPE spells every byte as a printable character: printable Latin-1 bytes stand for
 * themselves; the other 68 (0x00-0x20, 0x7F-0xA0, 0xAD) take U+0100..U+0143 in byte order. */
static uint32_t byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7f && b <= 0xa0) return 0x121u + (b - 0x7fu);
    if (b == 0xad) return 0x143;
    return b;
}

/* Inverse of byte_to_cp; -1 when cp is not one of the 256 byte characters. */
static int cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xff && cp != 0xad)) return (int)cp;
    if (cp >= 0x100 && cp <= 0x120) return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142) return (int)(cp - 0x121 + 0x7f);
    if (cp == 0x143) return 0xad;
    return -1;
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* First occurrence of t[0..tn) in s[0..n), tn >= 1 (memmem is not in C11). */
static const uint8_t *find_bytes(const uint8_t *s, size_t n, const uint8_t *t, size_t tn) {
    while (n >= tn) {
        const uint8_t *p = memchr(s, t[0], n - tn + 1);
        if (!p) return NULL;
        if (!memcmp(p, t, tn)) return p;
        n -= (size_t)(p - s) + 1;
        s = p + 1;
    }
    return NULL;
}

/* ---- loading -------------------------------------------------------------------------------- */

static int32_t tok_type(const nbl_vocab *v, int32_t id) { return v->types[id]; }

/* Whether plain text may encode to this token: control and unknown tokens only come from
 * special-token matching, never from merges, so text cannot forge them. */
static int encodable(const nbl_vocab *v, int32_t id) {
    return id >= 0 && tok_type(v, id) != TT_CONTROL && tok_type(v, id) != TT_UNKNOWN;
}

static int32_t find_cstr(const nbl_vocab *v, const char *s) { return text_find(v, s, strlen(s)); }

static int32_t get_id(const nbl_gguf *g, const char *key, int32_t n_tokens, int32_t dflt,
                      nbl_error *err, int *bad) {
    int64_t x;
    int r = nbl_gguf_get_int(g, key, &x, err);
    if (r < 0) *bad = 1;
    if (r <= 0) return dflt;
    /* Converters write -1 as 0xFFFFFFFF for "none"; any id outside the vocabulary means none. */
    return x >= 0 && x < n_tokens ? (int32_t)x : -1;
}

static int get_flag(const nbl_gguf *g, const char *key, int dflt, nbl_error *err, int *bad) {
    bool b;
    int r = nbl_gguf_get_bool(g, key, &b, err);
    if (r < 0) *bad = 1;
    return r > 0 ? (int)b : dflt;
}

static void copy_name(char *dst, size_t cap, nbl_str s) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

static const struct {
    const char *name;
    int pre;
} PRE_NAMES[] = {
    {"default", PRE_DEFAULT}, {"gpt2", PRE_GPT2},        {"gpt-2", PRE_GPT2},
    {"mpt", PRE_GPT2},        {"olmo", PRE_GPT2},        {"jais", PRE_GPT2},
    {"llama-bpe", PRE_LLAMA3}, {"llama3", PRE_LLAMA3},   {"llama-v3", PRE_LLAMA3},
    {"dbrx", PRE_LLAMA3},     {"smaug-bpe", PRE_LLAMA3}, {"qwen2", PRE_QWEN2},
    {"smollm", PRE_SMOLLM},   {"starcoder", PRE_SMOLLM}, {"refact", PRE_SMOLLM},
    {"command-r", PRE_SMOLLM}, {"codeshell", PRE_SMOLLM}, {"exaone", PRE_SMOLLM},
};

/* Token texts that llama.cpp treats as end-of-generation (and so as control tokens) whatever
 * type the converter gave them; FIM markers are included because they end a turn too. */
static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<EOT>",
                                        "<\xef\xbd\234end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
static const char *const EOG_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|eom_id|>", "<EOT>", "<|fim_pad|>",
                                        "<|repo_name|>", "<|file_sep|>"};
static const char *const FORCE_CONTROL[] = {"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                                            "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
                                            "<|eom_id|>"};

static nbl_status load_texts(nbl_vocab *v, const nbl_gguf_value *toks, nbl_error *err) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < toks->arr.n; i++) {
        total += toks->arr.strs[i].len + 1;
        if (total > UINT32_MAX)
            return nbl_set_err(err, NBL_E_FORMAT, "tokenizer: token texts exceed 4 GiB in total");
    }
    v->arena = malloc(total ? total : 1);
    v->tok_off = malloc(sizeof *v->tok_off * (size_t)v->n_tokens);
    v->tok_len = malloc(sizeof *v->tok_len * (size_t)v->n_tokens);
    v->scores = calloc((size_t)v->n_tokens, sizeof *v->scores);
    v->types = malloc((size_t)v->n_tokens);
    v->flags = calloc((size_t)v->n_tokens, 1);
    v->texts_mask = pow2_at_least((uint64_t)v->n_tokens * 3 / 2) - 1;
    v->texts = malloc(sizeof *v->texts * ((size_t)v->texts_mask + 1));
    if (!v->arena || !v->tok_off || !v->tok_len || !v->scores || !v->types || !v->flags || !v->texts)
        return nbl_set_err(err, NBL_E_NOMEM, "tokenizer: out of memory for %d tokens", v->n_tokens);
    memset(v->texts, 0xff, sizeof *v->texts * ((size_t)v->texts_mask + 1));
    memset(v->types, TT_NORMAL, (size_t)v->n_tokens);
    uint32_t off = 0;
    uint64_t h[FIND_BATCH];
    for (int32_t base = 0; base < v->n_tokens; base += FIND_BATCH) {
        int32_t cnt = v->n_tokens - base < FIND_BATCH ? v->n_tokens - base : FIND_BATCH;
        for (int32_t j = 0; j < cnt; j++) { /* hash and prefetch first: the inserts all miss */
            nbl_str s = toks->arr.strs[base + j];
            h[j] = hash_bytes(s.ptr, s.len);
            __builtin_prefetch(&v->texts[(uint32_t)h[j] & v->texts_mask], 1);
        }
        for (int32_t j = 0; j < cnt; j++) {
            int32_t i = base + j;
            nbl_str s = toks->arr.strs[i];
            memcpy(v->arena + off, s.ptr, s.len);
            v->arena[off + s.len] = 0;
            v->tok_off[i] = off;
            v->tok_len[i] = (uint32_t)s.len;
            if (s.len > v->max_len) v->max_len = (uint32_t)s.len;
            uint32_t slot = text_probe(v, s.ptr, s.len, h[j]);
            /* Duplicate texts: the last id wins, as in llama.cpp's text -> id map. */
            v->texts[slot] = (text_slot){(uint32_t)(h[j] >> 32), i, off, (uint32_t)s.len};
            off += (uint32_t)s.len + 1;
        }
    }
    return NBL_OK;
}

static nbl_status load_merges(nbl_vocab *v, const nbl_gguf_value *arr, nbl_error *err) {
    uint64_t n = arr->arr.n;
    v->merges_mask = pow2_at_least(n * 3 / 2 + 1) - 1;
    v->merges = malloc(sizeof *v->merges * ((size_t)v->merges_mask + 1));
    char *buf = malloc(((size_t)v->max_len * 2 + 1) * FIND_BATCH);
    if (!v->merges || !buf) {
        free(buf);
        return nbl_set_err(err, NBL_E_NOMEM, "tokenizer: out of memory for %llu merges",
                           (unsigned long long)n);
    }
    memset(v->merges, 0xff, sizeof *v->merges * ((size_t)v->merges_mask + 1));
    uint64_t skipped = 0;
    const char *q[3 * FIND_BATCH];
    size_t ql[3 * FIND_BATCH];
    int32_t ids[3 * FIND_BATCH];
    for (uint64_t base = 0; base < n; base += FIND_BATCH / 3) {
        size_t cnt = n - base < FIND_BATCH / 3 ? (size_t)(n - base) : FIND_BATCH / 3, nq = 0;
        char *bp = buf;
        for (size_t j = 0; j < cnt; j++) {
            nbl_str m = arr->arr.strs[base + j];
            /* "left right": the separator is the first space after the first byte. */
            const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
            if (!sp) {
                free(buf);
                return nbl_set_err(err, NBL_E_FORMAT, "tokenizer: merge %llu has no space separator",
                                   (unsigned long long)(base + j));
            }
            size_t la = (size_t)(sp - m.ptr), lb = m.len - la - 1;
            if (la + lb > 2 * (size_t)v->max_len) la = lb = 0; /* cannot be a token: no match */
            memcpy(bp, m.ptr, la);
            memcpy(bp + la, sp + 1, lb);
            q[nq] = m.ptr, ql[nq++] = la;
            q[nq] = sp + 1, ql[nq++] = lb;
            q[nq] = bp, ql[nq++] = la + lb;
            bp += la + lb;
        }
        text_find_batch(v, q, ql, ids, nq);
        for (size_t j = 0; j < cnt; j++)
            __builtin_prefetch(&v->merges[merge_hash(ids[3 * j], ids[3 * j + 1]) & v->merges_mask], 1);
        for (size_t j = 0; j < cnt; j++) {
            int32_t a = ids[3 * j], b = ids[3 * j + 1], c = ids[3 * j + 2];
            /* A merge whose parts or result are not tokens can never fire on byte tokens; one
             * that would build a control token must not (text could forge it). */
            if (a < 0 || b < 0 || !encodable(v, c)) {
                skipped++;
                continue;
            }
            uint32_t i = merge_hash(a, b) & v->merges_mask;
            while (v->merges[i].left >= 0 && !(v->merges[i].left == a && v->merges[i].right == b))
                i = (i + 1) & v->merges_mask;
            if (v->merges[i].left >= 0) continue; /* repeated pair: the first (best) rank stays */
            v->merges[i] = (merge_slot){a, b, (int32_t)(base + j), c};
        }
    }
    free(buf);
    if (skipped && !v->warning[0])
        snprintf(v->warning, sizeof v->warning,
                 "tokenizer: %llu merges name texts that are not tokens; they were ignored",
                 (unsigned long long)skipped);
    return NBL_OK;
}

typedef struct sp_key {
    uint32_t key, idx;
} sp_key;

static int cmp_sp_key(const void *pa, const void *pb) {
    const sp_key *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Orders special[] longest first (ties by id), as the partition wants, and builds the
 * first-two-bytes index the occurrence scan uses. Some vocabularies have thousands. */
static nbl_status sort_special(nbl_vocab *v, nbl_error *err) {
    size_t n = (size_t)v->n_special;
    sp_key *k = malloc(sizeof *k * (n ? n : 1));
    v->sp_index = malloc(sizeof *v->sp_index * (n ? n : 1));
    if (!k || !v->sp_index) {
        free(k);
        return nbl_set_err(err, NBL_E_NOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < n; i++) k[i] = (sp_key){UINT32_MAX - v->tok_len[v->special[i]], (uint32_t)v->special[i]};
    qsort(k, n, sizeof *k, cmp_sp_key);
    for (size_t i = 0; i < n; i++) v->special[i] = (int32_t)k[i].idx;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *t = (const uint8_t *)v->arena + v->tok_off[v->special[i]];
        /* one-byte texts sort before any second byte */
        k[i] = (sp_key){(uint32_t)t[0] << 9 | (v->tok_len[v->special[i]] > 1 ? t[1] + 1u : 0u), (uint32_t)i};
    }
    qsort(k, n, sizeof *k, cmp_sp_key);
    memset(v->sp_start, 0, sizeof v->sp_start);
    for (size_t i = 0; i < n; i++) {
        v->sp_index[i] = (int32_t)k[i].idx;
        v->sp_start[(k[i].key >> 9) + 1]++;
    }
    for (int b = 0; b < 256; b++) v->sp_start[b + 1] += v->sp_start[b];
    free(k);
    return NBL_OK;
}

static nbl_status finish_specials(nbl_vocab *v, const nbl_gguf *g, nbl_error *err) {
    int bad = 0;
    int spm = v->kind == KIND_SPM;
    v->bos = get_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, spm ? 1 : -1, err, &bad);
    v->eos = get_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, spm ? 2 : -1, err, &bad);
    v->unk = get_id(g, "tokenizer.ggml.unknown_token_id", v->n_tokens, spm ? 0 : -1, err, &bad);
    v->eot = get_id(g, "tokenizer.ggml.eot_token_id", v->n_tokens, -1, err, &bad);
    v->eom = get_id(g, "tokenizer.ggml.eom_token_id", v->n_tokens, -1, err, &bad);
    v->pad = get_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, -1, err, &bad);
    v->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", spm || v->pre == PRE_LLAMA3, err, &bad);
    v->add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", 0, err, &bad);
    v->add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", spm, err, &bad);
    if (bad) return NBL_E_FORMAT;
    if (v->bos >= v->n_tokens) v->bos = -1;
    if (v->eos >= v->n_tokens) v->eos = -1;
    if (v->unk >= v->n_tokens) v->unk = -1;

    for (size_t i = 0; i < sizeof FORCE_CONTROL / sizeof FORCE_CONTROL[0]; i++) {
        int32_t id = find_cstr(v, FORCE_CONTROL[i]);
        if (id >= 0) v->types[id] = TT_CONTROL;
    }
    if (v->eot < 0) {
        for (size_t i = 0; i < sizeof EOT_TEXTS / sizeof EOT_TEXTS[0] && v->eot < 0; i++)
            v->eot = find_cstr(v, EOT_TEXTS[i]);
    }
    if (v->eom < 0) v->eom = find_cstr(v, "<|eom_id|>");
    for (size_t i = 0; i < sizeof EOG_TEXTS / sizeof EOG_TEXTS[0]; i++) {
        int32_t id = find_cstr(v, EOG_TEXTS[i]);
        if (id >= 0) v->flags[id] |= TF_EOG;
    }
    int32_t ends[3] = {v->eos, v->eot, v->eom};
    for (int i = 0; i < 3; i++) {
        if (ends[i] < 0) continue;
        v->flags[ends[i]] |= TF_EOG;
        /* An end token that is typed NORMAL would otherwise be printed and be forgeable. */
        if (v->types[ends[i]] == TT_NORMAL) v->types[ends[i]] = TT_CONTROL;
    }

    for (int32_t i = 0; i < v->n_tokens; i++) {
        int t = v->types[i];
        if ((t == TT_CONTROL || t == TT_USER || t == TT_UNKNOWN) && v->tok_len[i] > 0) v->n_special++;
    }
    v->special = malloc(sizeof *v->special * (size_t)(v->n_special ? v->n_special : 1));
    if (!v->special) return nbl_set_err(err, NBL_E_NOMEM, "tokenizer: out of memory");
    v->n_special = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int t = v->types[i];
        if ((t == TT_CONTROL || t == TT_USER || t == TT_UNKNOWN) && v->tok_len[i] > 0)
            v->special[v->n_special++] = i;
    }
    nbl_status st = sort_special(v, err);
    if (st) return st;

    for (int b = 0; b < 256; b++) {
        int32_t id = -1;
        if (v->kind == KIND_BPE) {
            v->byte_str_len[b] = (uint8_t)utf8_put(v->byte_str[b], byte_to_cp((uint8_t)b));
            id = text_find(v, v->byte_str[b], v->byte_str_len[b]);
        } else {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            id = find_cstr(v, hex);
            if (id < 0) {
                char c = (char)b;
                id = text_find(v, &c, 1);
            }
            if (id < 0) id = v->unk;
        }
        v->byte_tok[b] = encodable(v, id) || (id >= 0 && id == v->unk) ? id : -1;
    }
    return NBL_OK;
}

nbl_status nbl_vocab_load(const nbl_gguf *g, nbl_vocab **out, nbl_error *err) {
    if (!g || !out) return nbl_set_err(err, NBL_E_ARG, "tokenizer: gguf and out are required");
    *out = NULL;
    nbl_str model;
    int r = nbl_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (r < 0) return NBL_E_FORMAT;
    if (r == 0) return nbl_set_err(err, NBL_E_FORMAT, "tokenizer: missing 'tokenizer.ggml.model'");
    int kind = nbl_str_eq(model, "gpt2") ? KIND_BPE : nbl_str_eq(model, "llama") ? KIND_SPM : 0;
    if (!kind)
        return nbl_set_err(err, NBL_E_UNSUPPORTED,
                           "tokenizer: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama)",
                           (int)(model.len < 64 ? model.len : 64), model.ptr);
    const nbl_gguf_value *toks;
    r = nbl_gguf_get_arr(g, "tokenizer.ggml.tokens", NBL_GGUF_STRING, &toks, err);
    if (r < 0) return NBL_E_FORMAT;
    if (r == 0) return nbl_set_err(err, NBL_E_FORMAT, "tokenizer: missing 'tokenizer.ggml.tokens'");
    if (toks->arr.n == 0 || toks->arr.n > (1u << 30))
        return nbl_set_err(err, NBL_E_FORMAT, "tokenizer: 'tokenizer.ggml.tokens' has %llu entries",
                           (unsigned long long)toks->arr.n);

    nbl_vocab *v = calloc(1, sizeof *v);
    if (!v) return nbl_set_err(err, NBL_E_NOMEM, "tokenizer: out of memory");
    nbl_status st = NBL_OK;
    v->kind = kind;
    v->n_tokens = (int32_t)toks->arr.n;
    copy_name(v->model_name, sizeof v->model_name, model);
    if ((st = load_texts(v, toks, err))) goto fail;

    const nbl_gguf_value *arr;
    r = nbl_gguf_get_arr(g, "tokenizer.ggml.token_type", UINT32_MAX, &arr, err);
    if (r < 0) goto bad;
    if (r > 0) {
        if (arr->arr.n != toks->arr.n || !nbl_gguf_type_size(arr->arr.type) ||
            arr->arr.type == NBL_GGUF_FLOAT32 || arr->arr.type == NBL_GGUF_FLOAT64) {
            st = nbl_set_err(err, NBL_E_FORMAT,
                             "tokenizer: 'tokenizer.ggml.token_type' must hold %d integers",
                             v->n_tokens);
            goto fail;
        }
        for (int32_t i = 0; i < v->n_tokens; i++) {
            int64_t t = nbl_gguf_arr_int(arr, (uint64_t)i);
            v->types[i] = (uint8_t)(t >= TT_NORMAL && t <= TT_BYTE ? t : TT_NORMAL);
        }
    }
    r = nbl_gguf_get_arr(g, "tokenizer.ggml.scores", UINT32_MAX, &arr, err);
    if (r < 0) goto bad;
    if (r > 0) {
        if (arr->arr.n != toks->arr.n || !nbl_gguf_type_size(arr->arr.type)) {
            st = nbl_set_err(err, NBL_E_FORMAT,
                             "tokenizer: 'tokenizer.ggml.scores' must hold %d numbers", v->n_tokens);
            goto fail;
        }
        for (int32_t i = 0; i < v->n_tokens; i++)
            v->scores[i] = (float)nbl_gguf_arr_float(arr, (uint64_t)i);
    }

    if (kind == KIND_BPE) {
        nbl_str pre = {"default", 7};
        r = nbl_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (r < 0) goto bad;
        copy_name(v->pre_name, sizeof v->pre_name, pre);
        size_t i = 0, n = sizeof PRE_NAMES / sizeof PRE_NAMES[0];
        while (i < n && !nbl_str_eq(pre, PRE_NAMES[i].name)) i++;
        v->pre = i < n ? PRE_NAMES[i].pre : PRE_DEFAULT;
        if (i == n)
            snprintf(v->warning, sizeof v->warning,
                     "tokenizer: unknown pre-tokenizer '%s', using the default one; "
                     "tokenization may differ from the model's",
                     v->pre_name);
        if (v->pre == PRE_LLAMA3) v->ignore_merges = 1;
        r = nbl_gguf_get_arr(g, "tokenizer.ggml.merges", NBL_GGUF_STRING, &arr, err);
        if (r < 0) goto bad;
        if (r == 0) {
            st = nbl_set_err(err, NBL_E_FORMAT, "tokenizer: BPE vocabulary without 'tokenizer.ggml.merges'");
            goto fail;
        }
        if ((st = load_merges(v, arr, err))) goto fail;
    } else {
        copy_name(v->pre_name, sizeof v->pre_name, (nbl_str){"spm", 3});
    }
    if ((st = finish_specials(v, g, err))) goto fail;
    *out = v;
    return NBL_OK;
bad:
    st = NBL_E_FORMAT;
fail:
    nbl_vocab_free(v);
    return st;
}

void nbl_vocab_free(nbl_vocab *v) {
    if (!v) return;
    free(v->arena);
    free(v->tok_off);
    free(v->tok_len);
    free(v->scores);
    free(v->types);
    free(v->flags);
    free(v->texts);
    free(v->merges);
    free(v->special);
    free(v->sp_index);
    free(v);
}

void nbl_vocab_get_info(const nbl_vocab *v, nbl_vocab_info *info) {
    memset(info, 0, sizeof *info);
    info->model = v->model_name;
    info->pre = v->pre_name;
    info->warning = v->warning[0] ? v->warning : NULL;
    info->n_tokens = v->n_tokens;
    info->bos = v->bos;
    info->eos = v->eos;
    info->eot = v->eot;
    info->pad = v->pad;
    info->unk = v->unk;
    info->add_bos = v->add_bos;
    info->add_eos = v->add_eos;
    info->add_space_prefix = v->add_space_prefix;
    info->max_token_bytes = (int32_t)v->max_len;
}

int32_t nbl_vocab_find(const nbl_vocab *v, const char *text, size_t len) {
    return v && (text || !len) ? text_find(v, text ? text : "", len) : -1;
}

/* ---- encoding: shared state ----------------------------------------------------------------- */

#define WC_SLOTS 4096 /* word cache: direct-mapped */
#define WC_WORD 23    /* longest cached word in bytes */
#define WC_IDS 12     /* most ids a cached word may have */
typedef struct wc_entry {
    uint32_t hash;
    uint8_t len, n; /* len 0 = empty */
    char word[WC_WORD];
    int32_t ids[WC_IDS];
} wc_entry;

/* Per-call working memory, grown on demand and freed at the end of the call. */
typedef struct tk_run {
    const nbl_vocab *v;
    int32_t *out;
    int32_t cap;
    int64_t n;      /* ids produced so far (may exceed cap) */
    int oom;
    /* pre-tokenizer: code points of the current fragment */
    uint32_t *cps;
    uint32_t *offs; /* byte offset of code point i; offs[n] = fragment length */
    uint8_t *cats;
    size_t cp_cap;
    /* merge loop */
    int32_t *sid, *sprev, *snext;
    uint32_t *slen;
    size_t sym_cap;
    void *heap;
    size_t heap_n, heap_cap, heap_elem;
    char *buf; /* escaped text (SentencePiece) or mapped word (ignore_merges) */
    size_t buf_cap;
    wc_entry *wc; /* NULL for short inputs */
    /* pre-tokenizer output goes to BPE, or to this callback (nbl_pretokenize) */
    void (*piece_fn)(void *ctx, size_t off, size_t len);
    void *piece_ctx;
    const uint8_t *piece_base;
} tk_run;

static void emit(tk_run *r, int32_t id) {
    if (r->n < r->cap) r->out[r->n] = id;
    r->n++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int grow_syms(tk_run *r, size_t n) {
    if (n <= r->sym_cap) return 1;
    size_t c = r->sym_cap ? r->sym_cap : 64;
    while (c < n) c *= 2;
    int32_t *a = realloc(r->sid, c * sizeof *a);
    if (a) r->sid = a;
    int32_t *b = realloc(r->sprev, c * sizeof *b);
    if (b) r->sprev = b;
    int32_t *d = realloc(r->snext, c * sizeof *d);
    if (d) r->snext = d;
    uint32_t *e = realloc(r->slen, c * sizeof *e);
    if (e) r->slen = e;
    if (!a || !b || !d || !e) return 0;
    r->sym_cap = c;
    return 1;
}

/* ---- byte-level BPE ------------------------------------------------------------------------- */

typedef struct bpe_cand { /* a mergeable adjacent pair; stale once either side changed */
    int32_t rank, left, right, lid, rid, result;
} bpe_cand;

static int bpe_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void bpe_push(tk_run *r, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const merge_slot *m = merge_find(r->v, r->sid[left], r->sid[right]);
    if (!m) return;
    if (!grow(&r->heap, &r->heap_cap, r->heap_n + 1, sizeof(bpe_cand))) {
        r->oom = 1;
        return;
    }
    bpe_cand *h = r->heap, c = {m->rank, left, right, r->sid[left], r->sid[right], m->result};
    size_t i = r->heap_n++;
    while (i > 0 && bpe_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static bpe_cand bpe_pop(tk_run *r) {
    bpe_cand *h = r->heap, top = h[0], last = h[--r->heap_n];
    size_t i = 0, n = r->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_less(&h[c + 1], &h[c])) c++;
        if (!bpe_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static void emit_byte(tk_run *r, uint8_t b) {
    int32_t id = r->v->byte_tok[b];
    if (id >= 0) emit(r, id);
}

/* Emits id and records it in the cache entry being filled (if any). */
static void emit_rec(tk_run *r, int32_t id, wc_entry *e, int *overflow) {
    emit(r, id);
    if (e) {
        if (e->n < WC_IDS) e->ids[e->n++] = id;
        else *overflow = 1;
    }
}

/* One pre-token: bytes s[0..n) become byte tokens, then the lowest-ranked adjacent pair is
 * merged until no pair has a merge rule (ties: leftmost first). */
static void bpe_word_merge(tk_run *r, const uint8_t *s, size_t n, wc_entry *e, int *overflow) {
    const nbl_vocab *v = r->v;
    if (v->ignore_merges) {
        if (!grow((void **)&r->buf, &r->buf_cap, n * 2, 1)) {
            r->oom = 1;
            return;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(r->buf + k, v->byte_str[s[i]], v->byte_str_len[s[i]]);
            k += v->byte_str_len[s[i]];
        }
        int32_t id = text_find(v, r->buf, k);
        if (encodable(v, id)) {
            emit_rec(r, id, e, overflow);
            return;
        }
    }
    if (n > INT32_MAX / 2 || !grow_syms(r, n)) {
        r->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        r->sid[i] = v->byte_tok[s[i]];
        r->sprev[i] = (int32_t)i - 1;
        r->snext[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        r->slen[i] = 1;
    }
    r->heap_n = 0;
    /* The merge table is large and every first lookup misses the cache: prefetch them all. */
    for (size_t i = 0; i + 1 < n; i++)
        __builtin_prefetch(&v->merges[merge_hash(r->sid[i], r->sid[i + 1]) & v->merges_mask]);
    for (size_t i = 0; i + 1 < n; i++)
        if (r->sid[i] >= 0 && r->sid[i + 1] >= 0) bpe_push(r, (int32_t)i, (int32_t)i + 1);
    while (r->heap_n) {
        bpe_cand c = bpe_pop(r);
        if (!r->slen[c.left] || !r->slen[c.right] || r->snext[c.left] != c.right ||
            r->sid[c.left] != c.lid || r->sid[c.right] != c.rid)
            continue;
        r->sid[c.left] = c.result;
        r->slen[c.left] += r->slen[c.right];
        r->slen[c.right] = 0;
        int32_t nx = r->snext[c.right];
        r->snext[c.left] = nx;
        if (nx >= 0) r->sprev[nx] = c.left;
        bpe_push(r, r->sprev[c.left], c.left);
        bpe_push(r, c.left, nx);
    }
    for (int32_t i = 0; i >= 0; i = r->snext[i])
        if (r->sid[i] >= 0) emit_rec(r, r->sid[i], e, overflow);
}

/* Natural text repeats its words, so long inputs keep a cache of word -> ids (BPE of a word
 * does not depend on its context). */
static void bpe_word(tk_run *r, const uint8_t *s, size_t n) {
    if (n == 0) return;
    if (n == 1) {
        emit_byte(r, s[0]);
        return;
    }
    wc_entry *e = NULL;
    int overflow = 0;
    if (r->wc && n <= WC_WORD) {
        uint64_t h = hash_bytes(s, n);
        e = &r->wc[h & (WC_SLOTS - 1)];
        if (e->len == n && e->hash == (uint32_t)h && !memcmp(e->word, s, n)) {
            for (int i = 0; i < e->n; i++) emit(r, e->ids[i]);
            return;
        }
        e->hash = (uint32_t)h;
        e->len = 0; /* invalid until filled */
        e->n = 0;
    }
    bpe_word_merge(r, s, n, e, &overflow);
    if (e && !overflow && !r->oom) {
        memcpy(e->word, s, n);
        e->len = (uint8_t)n;
    }
}

/* ---- pre-tokenizers ------------------------------------------------------------------------- */

/* Per code point classes: the regexes only ask about letters, numbers, punctuation and
 * whitespace. Bytes that are not valid UTF-8 count as "other" (a symbol) one by one, so they
 * stay in the text and byte-level BPE still round-trips them. */
enum { C_L = 1, C_N = 2, C_P = 4, C_WS = 8 };

typedef struct ucache { /* the last class range looked up: text tends to stay in one script */
    uint32_t first, end;
    uint8_t cls;
} ucache;

static uint8_t classify(uint32_t cp, ucache *uc) {
    static const uint8_t cls[4] = {0, C_L, C_N, C_P};
    if (cp < 0x80) { /* the common case, without the table search */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return C_L;
        if (cp >= '0' && cp <= '9') return C_N;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d)) return C_WS;
        return cp > 0x20 && cp < 0x7f && strchr("!\"#%&'()*,-./:;?@[\\]_{}", (int)cp) ? C_P : 0;
    }
    if (nbl_uspace_is(cp)) return C_WS;
    if (cp < uc->first || cp >= uc->end) uc->cls = cls[nbl_ucat_range(cp, &uc->first, &uc->end)];
    return uc->cls;
}

typedef struct pt_span {
    const uint32_t *cp;
    const uint8_t *cat;
    size_t end; /* the chunk being split ends here: lookahead sees the end of text */
} pt_span;

#define CP(i) ((i) < sp->end ? sp->cp[i] : UINT32_MAX)
#define CAT(i) ((i) < sp->end ? sp->cat[i] : 0)
#define IS_SYM(i) ((i) < sp->end && !(sp->cat[i] & (C_L | C_N | C_WS)))

static size_t run_of(const pt_span *sp, size_t i, uint8_t mask) {
    size_t j = i;
    while (j < sp->end && (sp->cat[j] & mask)) j++;
    return j - i;
}

static size_t sym_run(const pt_span *sp, size_t i) {
    size_t j = i;
    while (IS_SYM(j)) j++;
    return j - i;
}

static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive. */
static size_t contraction(const pt_span *sp, size_t i, int icase) {
    if (CP(i) != '\'') return 0;
    uint32_t a = CP(i + 1), b = CP(i + 2);
    if (icase) {
        a = lower_ascii(a);
        b = lower_ascii(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S) then (when allowed) \s+: whitespace up to, not including, the last whitespace
 * before a non-space; all of it at the end of the chunk. */
static size_t trailing_ws(const pt_span *sp, size_t i, int plain_fallback) {
    size_t k = run_of(sp, i, C_WS);
    if (!k) return 0;
    if (i + k == sp->end) return k;
    if (k > 1) return k - 1;
    return plain_fallback ? 1 : 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static size_t m_gpt2(const pt_span *sp, size_t i) {
    size_t k = contraction(sp, i, 0);
    if (k) return k;
    size_t j = i + (CP(i) == ' ');
    if (CAT(j) & C_L) return j - i + run_of(sp, j, C_L);
    if (CAT(j) & C_N) return j - i + run_of(sp, j, C_N);
    if (IS_SYM(j)) return j - i + sym_run(sp, j);
    return trailing_ws(sp, i, 0);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_n}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   (Llama 3: max_n = 3; Qwen2: 1) */
static size_t m_llama3(const pt_span *sp, size_t i, size_t max_n) {
    size_t k = contraction(sp, i, 1);
    if (k) return k;
    uint32_t c = CP(i);
    uint8_t cat = CAT(i);
    if (cat & C_L) return run_of(sp, i, C_L);
    if (c != '\r' && c != '\n' && !(cat & C_N) && (CAT(i + 1) & C_L)) return 1 + run_of(sp, i + 1, C_L);
    if (cat & C_N) {
        k = run_of(sp, i, C_N);
        return k < max_n ? k : max_n;
    }
    size_t j = i + (c == ' ');
    if (IS_SYM(j)) {
        j += sym_run(sp, j);
        while (CP(j) == '\r' || CP(j) == '\n') j++;
        return j - i;
    }
    if (cat & C_WS) {
        /* \s*[\r\n]+ backtracks to end just after the run's last \r or \n */
        size_t n = run_of(sp, i, C_WS), last = 0;
        for (size_t t = i; t < i + n; t++)
            if (sp->cp[t] == '\r' || sp->cp[t] == '\n') last = t + 1;
        if (last) return last - i;
        return trailing_ws(sp, i, 1);
    }
    return 0;
}

static int is_default_punct(const pt_span *sp, size_t i) {
    uint32_t c = CP(i);
    return (CAT(i) & C_P) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|';
}

/* Match length of pass `pass` of pre-tokenizer `pre` at i; 0 = no match here. */
static size_t pretok_match(int pre, int pass, const pt_span *sp, size_t i) {
    switch (pre) {
    case PRE_GPT2: return m_gpt2(sp, i);
    case PRE_LLAMA3: return m_llama3(sp, i, 3);
    case PRE_QWEN2: return m_llama3(sp, i, 1);
    case PRE_SMOLLM: return pass == 0 ? (size_t)((CAT(i) & C_N) != 0) : m_gpt2(sp, i);
    default:
        switch (pass) {
        case 0: { /* [\p{P}\$\+<=>\^~\|]+ */
            size_t j = i;
            while (is_default_punct(sp, j)) j++;
            return j - i;
        }
        case 1: return m_gpt2(sp, i);
        case 2: return run_of(sp, i, C_N); /* \p{N}+ */
        default: { /* [0-9][0-9][0-9] */
            for (size_t j = i; j < i + 3; j++)
                if (CP(j) < '0' || CP(j) > '9') return 0;
            return 3;
        }
        }
    }
}

static int pretok_passes(int pre) {
    return pre == PRE_DEFAULT ? 4 : pre == PRE_SMOLLM ? 2 : 1;
}

/* Splits code points [a, b) with pass `pass` (matches and the gaps between them both become
 * pieces, as llama.cpp's regex splitting keeps unmatched text), then hands each piece to the next
 * pass or, after the last, to BPE as bytes. */
static void pretok_split(tk_run *r, const uint8_t *text, int pass, size_t a, size_t b) {
    const nbl_vocab *v = r->v;
    if (pass == pretok_passes(v->pre)) {
        if (r->piece_fn)
            r->piece_fn(r->piece_ctx, (size_t)(text - r->piece_base) + r->offs[a], r->offs[b] - r->offs[a]);
        else
            bpe_word(r, text + r->offs[a], r->offs[b] - r->offs[a]);
        return;
    }
    pt_span sp = {r->cps, r->cats, b};
    size_t gap = a, i = a;
    while (i < b && !r->oom) {
        size_t k = pretok_match(v->pre, pass, &sp, i);
        if (!k) {
            i++;
            continue;
        }
        if (gap < i) pretok_split(r, text, pass + 1, gap, i);
        pretok_split(r, text, pass + 1, i, i + k);
        i += k;
        gap = i;
    }
    if (gap < b && !r->oom) pretok_split(r, text, pass + 1, gap, b);
}

static void bpe_fragment(tk_run *r, const uint8_t *s, size_t n) {
    if (!grow((void **)&r->cps, &r->cp_cap, n + 1, sizeof *r->cps)) {
        r->oom = 1;
        return;
    }
    size_t cc = r->cp_cap;
    void *o = realloc(r->offs, cc * sizeof *r->offs), *c;
    if (o) r->offs = o;
    c = realloc(r->cats, cc);
    if (c) r->cats = c;
    if (!o || !c) {
        r->oom = 1;
        return;
    }
    size_t m = 0;
    ucache uc = {1, 0, 0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = nbl_utf8_decode(s + i, n - i, &cp);
        r->offs[m] = (uint32_t)i;
        if (k > 0) {
            r->cps[m] = cp;
            r->cats[m] = classify(cp, &uc);
            i += (size_t)k;
        } else {
            r->cps[m] = 0x110000 + s[i]; /* not a code point: matches no class */
            r->cats[m] = 0;
            i++;
        }
        m++;
    }
    r->offs[m] = (uint32_t)n;
    pretok_split(r, s, 0, 0, m);
}

int nbl_pretokenize(const char *pre, const char *text, size_t len,
                    void (*fn)(void *ctx, size_t off, size_t len), void *ctx) {
    size_t i = 0, n = sizeof PRE_NAMES / sizeof PRE_NAMES[0];
    while (i < n && strcmp(pre, PRE_NAMES[i].name)) i++;
    if (i == n || !fn || (!text && len) || len > UINT32_MAX - 8) return -1;
    nbl_vocab v; /* the split passes only read the pre-tokenizer kind */
    memset(&v, 0, sizeof v);
    v.pre = PRE_NAMES[i].pre;
    tk_run r = {0};
    r.v = &v;
    r.piece_fn = fn;
    r.piece_ctx = ctx;
    r.piece_base = (const uint8_t *)text;
    if (len) bpe_fragment(&r, (const uint8_t *)text, len);
    free(r.cps);
    free(r.offs);
    free(r.cats);
    return r.oom ? -1 : 0;
}

/* ---- SentencePiece BPE ---------------------------------------------------------------------- */

typedef struct spm_cand {
    float score;
    int32_t left, right, id;
    uint32_t len;
} spm_cand;

static int spm_less(const spm_cand *a, const spm_cand *b) { /* "less" = pops first */
    return a->score != b->score ? a->score > b->score : a->left < b->left;
}

static void spm_push(tk_run *r, int32_t left, int32_t right, const uint32_t *start) {
    if (left < 0 || right < 0) return;
    uint32_t len = r->slen[left] + r->slen[right];
    int32_t id = text_find(r->v, r->buf + start[left], len);
    if (!encodable(r->v, id)) return;
    if (!grow(&r->heap, &r->heap_cap, r->heap_n + 1, sizeof(spm_cand))) {
        r->oom = 1;
        return;
    }
    spm_cand *h = r->heap, c = {r->v->scores[id], left, right, id, len};
    size_t i = r->heap_n++;
    while (i > 0 && spm_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static spm_cand spm_pop(tk_run *r) {
    spm_cand *h = r->heap, top = h[0], last = h[--r->heap_n];
    size_t i = 0, n = r->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && spm_less(&h[c + 1], &h[c])) c++;
        if (!spm_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

/* Symbols are UTF-8 characters. llama.cpp sizes them by the lead byte alone, so an invalid
 * lead byte swallows the next bytes (even half of an escaped space); here each byte that is not
 * part of a well-formed character is a symbol of its own, which only differs on invalid input. */
static size_t spm_char_len(const uint8_t *s, size_t n) {
    uint32_t cp;
    int k = nbl_utf8_decode(s, n, &cp);
    return k > 0 ? (size_t)k : 1;
}

static void spm_fragment(tk_run *r, const uint8_t *s, size_t n, int prefix) {
    const nbl_vocab *v = r->v;
    size_t cap = (n + 1) * 3;
    if (n > SIZE_MAX / 4 || !grow((void **)&r->buf, &r->buf_cap, cap, 1)) {
        r->oom = 1;
        return;
    }
    size_t m = 0;
    if (prefix) {
        memcpy(r->buf, "\xe2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(r->buf + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            r->buf[m++] = (char)s[i];
        }
    }
    if (m > UINT32_MAX || !grow_syms(r, m)) {
        r->oom = 1;
        return;
    }
    /* sprev/snext link symbols; slen is the byte length; start[] reuses the cps buffer. */
    if (!grow((void **)&r->cps, &r->cp_cap, m, sizeof *r->cps)) {
        r->oom = 1;
        return;
    }
    uint32_t *start = r->cps;
    int32_t ns = 0;
    for (size_t i = 0; i < m;) {
        size_t k = spm_char_len((const uint8_t *)r->buf + i, m - i);
        int32_t id = text_find(v, r->buf + i, k);
        start[ns] = (uint32_t)i;
        r->slen[ns] = (uint32_t)k;
        r->sid[ns] = encodable(v, id) ? id : -1;
        r->sprev[ns] = ns - 1;
        r->snext[ns] = ns + 1;
        ns++;
        i += k;
    }
    if (!ns) return;
    r->snext[ns - 1] = -1;
    r->heap_n = 0;
    for (int32_t i = 1; i < ns; i++) spm_push(r, i - 1, i, start);
    while (r->heap_n && !r->oom) {
        spm_cand c = spm_pop(r);
        if (!r->slen[c.left] || !r->slen[c.right] || r->snext[c.left] != c.right ||
            r->slen[c.left] + r->slen[c.right] != c.len)
            continue;
        r->slen[c.left] = c.len;
        r->slen[c.right] = 0;
        r->sid[c.left] = c.id;
        int32_t nx = r->snext[c.right];
        r->snext[c.left] = nx;
        if (nx >= 0) r->sprev[nx] = c.left;
        spm_push(r, r->sprev[c.left], c.left, start);
        spm_push(r, c.left, nx, start);
    }
    for (int32_t i = 0; i >= 0; i = r->snext[i]) {
        if (r->sid[i] >= 0) {
            emit(r, r->sid[i]);
        } else { /* no piece for this character: byte fallback */
            for (uint32_t j = 0; j < r->slen[i]; j++) emit_byte(r, (uint8_t)r->buf[start[i] + j]);
        }
    }
}

/* ---- special tokens and the top level ------------------------------------------------------- */

typedef struct frag {
    size_t off, len;
    int32_t tok; /* >= 0: a matched special token; else raw text */
} frag;

static int in_ranges(size_t a, size_t n, const nbl_range *rg, size_t nr) {
    for (size_t i = 0; i < nr; i++)
        if (a >= rg[i].start && a - rg[i].start + n <= rg[i].len) return 1;
    return 0;
}

/* llama.cpp's partition: for each special token, longest first, every occurrence in the
 * remaining raw text becomes that token. User-defined tokens always count (as in Hugging Face's
 * added tokens); control and unknown tokens only inside the caller's special ranges. */
static nbl_status partition(const nbl_vocab *v, const uint8_t *text, size_t len, const nbl_range *rg,
                            size_t nr, frag **out, size_t *n_out, nbl_error *err) {
    size_t cap = 16, n = 0;
    frag *f = malloc(cap * sizeof *f), *g = NULL;
    uint8_t *present = calloc((size_t)v->n_special + 1, 1);
    if (!f || !present) goto oom;
    if (len) f[n++] = (frag){0, len, -1};

    /* One pass over the text finds which special tokens occur at all, so the per-token passes
     * below run only for those (usually none or a handful). */
    int any = 0;
    for (size_t p = 0; p < len; p++) {
        int32_t a = v->sp_start[text[p]], b = v->sp_start[text[p] + 1];
        uint32_t c2 = p + 1 < len ? text[p + 1] + 1u : 0;
        for (int32_t j = a; j < b; j++) {
            int32_t k = v->sp_index[j], id = v->special[k];
            const uint8_t *t = (const uint8_t *)v->arena + v->tok_off[id];
            size_t tl = v->tok_len[id];
            uint32_t t2 = tl > 1 ? t[1] + 1u : 0;
            if (t2 > c2) break; /* sorted by second byte: no later entry can match */
            if ((t2 == 0 || t2 == c2) && tl <= len - p && !memcmp(t, text + p, tl)) present[k] = any = 1;
        }
    }
    for (int32_t k = 0; any && k < v->n_special; k++) {
        if (!present[k]) continue;
        int32_t id = v->special[k];
        const uint8_t *t = (const uint8_t *)v->arena + v->tok_off[id];
        size_t tl = v->tok_len[id];
        int always = v->types[id] == TT_USER;
        size_t gcap = n + 16, gn = 0;
        g = malloc(gcap * sizeof *g);
        if (!g) goto oom;
        for (size_t i = 0; i < n; i++) {
            size_t pos = f[i].off, end = f[i].off + f[i].len, cur = pos;
            while (f[i].tok < 0 && pos + tl <= end) {
                const uint8_t *m = find_bytes(text + pos, end - pos, t, tl);
                if (!m) break;
                size_t at = (size_t)(m - text);
                if (!always && !in_ranges(at, tl, rg, nr)) {
                    pos = at + 1;
                    continue;
                }
                if (!grow((void **)&g, &gcap, gn + 2, sizeof *g)) goto oom;
                if (at > cur) g[gn++] = (frag){cur, at - cur, -1};
                g[gn++] = (frag){at, tl, id};
                cur = pos = at + tl;
            }
            if (!grow((void **)&g, &gcap, gn + 1, sizeof *g)) goto oom;
            if (f[i].tok >= 0) g[gn++] = f[i];
            else if (cur < end) g[gn++] = (frag){cur, end - cur, -1};
        }
        free(f);
        f = g;
        g = NULL;
        n = gn;
        cap = gcap;
    }
    free(present);
    *out = f;
    *n_out = n;
    return NBL_OK;
oom:
    free(f);
    free(g);
    free(present);
    return nbl_set_err(err, NBL_E_NOMEM, "tokenize: out of memory");
}

int32_t nbl_vocab_tokenize(const nbl_vocab *v, const char *text, size_t len, int add_bos,
                           const nbl_range *special, size_t n_special, int32_t *out, int32_t cap,
                           nbl_error *err) {
    if (!v) return nbl_set_err(err, NBL_E_ARG, "tokenize: no vocabulary"), -1;
    if (!text && len) return nbl_set_err(err, NBL_E_ARG, "tokenize: text is NULL"), -1;
    if (cap < 0 || (!out && cap > 0))
        return nbl_set_err(err, NBL_E_ARG, "tokenize: bad output buffer (cap %d)", (int)cap), -1;
    if (n_special && !special)
        return nbl_set_err(err, NBL_E_ARG, "tokenize: special ranges are NULL"), -1;
    if (len > UINT32_MAX - 8)
        return nbl_set_err(err, NBL_E_ARG, "tokenize: text of %zu bytes is too long", len), -1;
    for (size_t i = 0; i < n_special; i++)
        if (special[i].start > len || special[i].len > len - special[i].start)
            return nbl_set_err(err, NBL_E_ARG, "tokenize: special range %zu (%zu+%zu) is outside the %zu-byte text",
                               i, special[i].start, special[i].len, len), -1;
    const uint8_t *s = (const uint8_t *)(text ? text : "");
    frag *f = NULL;
    size_t nf = 0;
    if (partition(v, s, len, special, n_special, &f, &nf, err)) return -1;

    tk_run r = {0};
    r.v = v;
    r.out = out;
    r.cap = cap;
    if (v->kind == KIND_BPE && len >= 4096) r.wc = calloc(WC_SLOTS, sizeof *r.wc); /* optional */
    if (add_bos && v->add_bos && v->bos >= 0) emit(&r, v->bos);
    int prev_special = 1; /* SentencePiece prefixes a space at the start and after a special token */
    for (size_t i = 0; i < nf && !r.oom; i++) {
        if (f[i].tok >= 0) {
            emit(&r, f[i].tok);
            prev_special = 1;
        } else if (v->kind == KIND_BPE) {
            bpe_fragment(&r, s + f[i].off, f[i].len);
        } else {
            spm_fragment(&r, s + f[i].off, f[i].len, v->add_space_prefix && prev_special);
            prev_special = 0;
        }
    }
    if (add_bos && v->add_eos && v->eos >= 0) emit(&r, v->eos);
    free(f);
    free(r.cps);
    free(r.offs);
    free(r.cats);
    free(r.sid);
    free(r.sprev);
    free(r.snext);
    free(r.slen);
    free(r.heap);
    free(r.buf);
    free(r.wc);
    if (r.oom) return nbl_set_err(err, NBL_E_NOMEM, "tokenize: out of memory"), -1;
    if (r.n > INT32_MAX) return nbl_set_err(err, NBL_E_ARG, "tokenize: more than 2^31 tokens"), -1;
    return (int32_t)r.n;
}

/* ---- public API: vocabulary queries, tokenizing --------------------------------------------- */

int32_t nbl_vocab_size(const nbl_model *model) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    return v ? v->n_tokens : 0;
}

/* Token bytes into buf (up to cap); returns the full length, -1 for a bad id. */
static int32_t piece(const nbl_vocab *v, int32_t id, int special, char *buf, int32_t cap) {
    if (id < 0 || id >= v->n_tokens) return -1;
    const char *t = v->arena + v->tok_off[id];
    uint32_t n = v->tok_len[id], k = 0;
    int type = v->types[id];
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (k < (uint32_t)cap) buf[k] = (char)(c);                                                 \
        k++;                                                                                       \
    } while (0)
    if (type == TT_CONTROL || type == TT_UNKNOWN) {
        if (!special) return 0;
        for (uint32_t i = 0; i < n; i++) PUT(t[i]);
    } else if (type == TT_USER) {
        for (uint32_t i = 0; i < n; i++) PUT(t[i]);
    } else if (type == TT_BYTE) {
        unsigned x;
        char tail;
        if (n == 6 && sscanf(t, "<0x%2x%c", &x, &tail) == 2 && tail == '>') PUT(x);
        else
            for (uint32_t i = 0; i < n; i++) PUT(t[i]);
    } else if (type == TT_UNUSED) {
        return 0;
    } else if (v->kind == KIND_SPM) {
        for (uint32_t i = 0; i < n; i++) {
            if (i + 2 < n && !memcmp(t + i, "\xe2\x96\x81", 3)) {
                PUT(' ');
                i += 2;
            } else {
                PUT(t[i]);
            }
        }
    } else {
        for (uint32_t i = 0; i < n;) {
            uint32_t cp;
            int l = nbl_utf8_decode((const uint8_t *)t + i, n - i, &cp);
            if (l > 0 && cp_to_byte(cp) >= 0) {
                PUT(cp_to_byte(cp));
                i += (uint32_t)l;
            } else { /* not a byte character: pass the text through */
                uint32_t e = i + (l > 0 ? (uint32_t)l : 1);
                for (; i < e; i++) PUT(t[i]);
            }
        }
    }
#undef PUT
    return (int32_t)k;
}

int32_t nbl_token_to_bytes(const nbl_model *model, int32_t token, int32_t special, char *buf,
                           int32_t cap) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    if (!v || (!buf && cap > 0)) return -1;
    return piece(v, token, special, buf, cap < 0 ? 0 : cap);
}

int32_t nbl_token_is_control(const nbl_model *model, int32_t token) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    return v && token >= 0 && token < v->n_tokens && v->types[token] == TT_CONTROL;
}

int32_t nbl_token_is_eog(const nbl_model *model, int32_t token) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    return v && token >= 0 && token < v->n_tokens && (v->flags[token] & TF_EOG);
}

int32_t nbl_tokenize(const nbl_model *model, const char *text, size_t len, uint32_t flags,
                     int32_t *out, int32_t cap, nbl_error *err) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    if (!v) return nbl_set_err(err, NBL_E_ARG, "tokenize: model has no vocabulary"), -1;
    nbl_range all = {0, len};
    int sp = (flags & NBL_TOK_PARSE_SPECIAL) != 0;
    return nbl_vocab_tokenize(v, text, len, (flags & NBL_TOK_ADD_BOS) != 0, sp ? &all : NULL,
                              sp ? 1 : 0, out, cap, err);
}

/* ---- streaming detokenizer ------------------------------------------------------------------ */

struct nbl_detok {
    const nbl_vocab *v;
    int special;
    uint8_t held[4]; /* a valid but incomplete UTF-8 prefix */
    int n_held;
    char *tmp;       /* held bytes + one token's bytes */
    char *outbuf;    /* their UTF-8 output (at most 3 bytes per input byte) */
};

nbl_detok *nbl_detok_new(const nbl_model *model, int32_t special) {
    const nbl_vocab *v = model ? nbl_model_vocab(model) : NULL;
    if (!v) return NULL;
    nbl_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->v = v;
    d->special = special != 0;
    size_t n = (size_t)v->max_len + 8;
    d->tmp = malloc(n);
    d->outbuf = malloc(n * 3);
    if (!d->tmp || !d->outbuf) {
        nbl_detok_free(d);
        return NULL;
    }
    return d;
}

/* Converts in[0..n) to valid UTF-8 in out; an incomplete tail is left for later (its length in
 * *tail) unless final, when it too becomes U+FFFD. */
static size_t sanitize(const uint8_t *in, size_t n, char *out, int final, size_t *tail) {
    size_t o = 0, i = 0;
    *tail = 0;
    while (i < n) {
        uint32_t cp;
        int k = nbl_utf8_decode(in + i, n - i, &cp);
        if (k > 0) {
            memcpy(out + o, in + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (k == 0 && !final) {
            *tail = n - i;
            break;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += k < 0 ? (size_t)-k : n - i;
        }
    }
    return o;
}

int32_t nbl_detok_push(nbl_detok *d, int32_t token, char *out, int32_t cap) {
    if (!d || (!out && cap > 0)) return -1;
    memcpy(d->tmp, d->held, (size_t)d->n_held);
    int32_t k = piece(d->v, token, d->special, d->tmp + d->n_held, (int32_t)d->v->max_len + 4);
    if (k < 0) return -1;
    size_t n = (size_t)d->n_held + (size_t)k, tail;
    size_t o = sanitize((const uint8_t *)d->tmp, n, d->outbuf, 0, &tail);
    if (o > (size_t)(cap < 0 ? 0 : cap)) return -1; /* nothing consumed: retry with more room */
    if (o) memcpy(out, d->outbuf, o);
    memmove(d->held, d->tmp + n - tail, tail);
    d->n_held = (int)tail;
    return (int32_t)o;
}

int32_t nbl_detok_flush(nbl_detok *d, char *out, int32_t cap) {
    if (!d || (!out && cap > 0)) return -1;
    size_t tail;
    size_t o = sanitize(d->held, (size_t)d->n_held, d->outbuf, 1, &tail);
    if (o > (size_t)(cap < 0 ? 0 : cap)) return -1;
    if (o) memcpy(out, d->outbuf, o);
    d->n_held = 0;
    return (int32_t)o;
}

void nbl_detok_free(nbl_detok *d) {
    if (!d) return;
    free(d->tmp);
    free(d->outbuf);
    free(d);
}
