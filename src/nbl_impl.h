/* nbl_impl.h — internal interfaces shared by the library's files (never installed).
 * Each section names the file that implements it. */
#ifndef NBL_IMPL_H
#define NBL_IMPL_H

#include "nbl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>

/* ---- util.c: errors, checked arithmetic, small helpers ----------------------------------- */

/* Fills err (may be NULL) with code and a printf-style message; returns code. */
nbl_status nbl_set_err(nbl_error *err, nbl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool nbl_add_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool nbl_mul_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* Only for broken internal invariants (never for bad input). */
#define NBL_ASSERT(x)                                                                        \
    do {                                                                                     \
        if (!(x)) nbl_assert_fail(__FILE__, __LINE__, #x);                                   \
    } while (0)
void nbl_assert_fail(const char *file, int line, const char *expr);

/* ---- strbuf.c: a growing string ---------------------------------------------------------- */

typedef struct nbl_sb {
    char *p;      /* NUL-terminated once anything was appended */
    size_t n, cap;
    int oom;      /* an append failed; the contents are incomplete */
} nbl_sb;

void nbl_sb_put(nbl_sb *b, const char *s, size_t n);
void nbl_sb_puts(nbl_sb *b, const char *s);
void nbl_sb_printf(nbl_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nbl_sb_json_str(nbl_sb *b, const char *s, size_t n); /* quoted and escaped */
void nbl_sb_json_num(nbl_sb *b, double x);                /* shortest round-trip form; null for inf/nan */
struct nbl_json;
void nbl_sb_json(nbl_sb *b, const struct nbl_json *j);    /* compact serialisation */
/* The string (caller frees), "" when empty, NULL after an allocation failure; b is reset. */
char *nbl_sb_take(nbl_sb *b);
void nbl_sb_free(nbl_sb *b);

/* ---- quant.c: tensor types (ggml ids), block layouts, scalar reference kernels ----------- */

enum nbl_type {
    NBL_TYPE_F32 = 0,
    NBL_TYPE_F16 = 1,
    NBL_TYPE_Q4_0 = 2,
    NBL_TYPE_Q4_1 = 3,
    NBL_TYPE_Q5_0 = 6,
    NBL_TYPE_Q5_1 = 7,
    NBL_TYPE_Q8_0 = 8,
    NBL_TYPE_Q8_1 = 9,
    NBL_TYPE_Q2_K = 10,
    NBL_TYPE_Q3_K = 11,
    NBL_TYPE_Q4_K = 12,
    NBL_TYPE_Q5_K = 13,
    NBL_TYPE_Q6_K = 14,
    NBL_TYPE_Q8_K = 15,
    NBL_TYPE_IQ4_NL = 20,
    NBL_TYPE_BF16 = 30,
    /* Internal layouts, never in a file (no type traits, so a GGUF naming them is refused): rows
     * regrouped 16 at a time for the CPU's decode kernels (repack.c). */
    NBL_TYPE_Q4_0_R16 = 40,
    NBL_TYPE_Q8_0_R16 = 41,
    NBL_TYPE_COUNT = 42
};

typedef struct nbl_type_traits {
    const char *name;  /* "q4_0", "f16", ... as llama.cpp names them */
    int32_t blck;      /* elements per block (1 for float types) */
    int32_t type_size; /* bytes per block */
    int32_t supported; /* 1: this engine can run weights of this type */
} nbl_type_traits;

/* NULL when type is not a known ggml type id (including removed ids). */
const nbl_type_traits *nbl_type_traits_get(uint32_t type);
/* Type id from a name ("q4_0", "Q4_K", "bf16"), case-insensitive; -1 if unknown. */
int32_t nbl_type_from_name(const char *name);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
uint64_t nbl_row_bytes(uint32_t type, int64_t n);

float nbl_fp16_to_f32(uint16_t h);
uint16_t nbl_f32_to_fp16(float f);
float nbl_bf16_to_f32(uint16_t h);
uint16_t nbl_f32_to_bf16(float f); /* round to nearest even, as ggml */

/* Scalar references. n is a multiple of the type's block size; supported types only. */
void nbl_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);
/* dot(dequant(w), x) accumulated in double, rounded to float: the reference for kernels. */
float nbl_vec_dot_ref(uint32_t type, const void *w, const float *x, int64_t n);
/* 1 when nbl_quant_row supports type. */
int nbl_type_can_quantize(uint32_t type);
/* Quantizer (quantizer.c): scales searched for the least squared error, stored unbiased.
 * imatrix (may be NULL): per-column importance weights, n of them, used to weight the error. */
void nbl_quant_row(uint32_t type, const float *src, void *dst, int64_t n, const float *imatrix);

/* Block layouts, byte for byte ggml's (fp16 fields hold raw IEEE half bits). Rows in GGUF data
 * are 32-byte aligned and every block size is even, so the uint16_t fields are aligned. */
#define NBL_QK 32   /* elements per block of the 32-element formats */
#define NBL_QK_K 256 /* elements per K-quant super-block */
typedef struct { uint16_t d; uint8_t qs[16]; } nbl_block_q4_0;              /* (q-8)*d; qs[j]: lo=j, hi=j+16 */
typedef struct { uint16_t d, m; uint8_t qs[16]; } nbl_block_q4_1;           /* q*d + m */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } nbl_block_q5_0; /* qh bit j: 5th bit of elem j */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } nbl_block_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } nbl_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[32]; } nbl_block_q8_1;            /* s = d * sum(qs) */
typedef struct { uint16_t d; uint8_t qs[16]; } nbl_block_iq4_nl;            /* d*kvalues[nibble] */
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } nbl_block_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } nbl_block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } nbl_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } nbl_block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } nbl_block_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } nbl_block_q8_K; /* bsums: per 16 */
/* IQ4_NL's non-linear 16-entry codebook. */
extern const int8_t nbl_iq4nl_values[16];
/* The 6-bit scale j (0..7) and min of a Q4_K / Q5_K block's 12-byte scales field. */
static inline void nbl_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ---- gguf.c: GGUF v2/v3 reader and writer ------------------------------------------------- */

enum nbl_gguf_type {
    NBL_GGUF_UINT8 = 0,
    NBL_GGUF_INT8 = 1,
    NBL_GGUF_UINT16 = 2,
    NBL_GGUF_INT16 = 3,
    NBL_GGUF_UINT32 = 4,
    NBL_GGUF_INT32 = 5,
    NBL_GGUF_FLOAT32 = 6,
    NBL_GGUF_BOOL = 7,
    NBL_GGUF_STRING = 8,
    NBL_GGUF_ARRAY = 9,
    NBL_GGUF_UINT64 = 10,
    NBL_GGUF_INT64 = 11,
    NBL_GGUF_FLOAT64 = 12,
    NBL_GGUF_TYPE_COUNT = 13
};

/* A length-delimited string, not NUL-terminated, pointing into the file or writer memory. */
typedef struct nbl_str {
    const char *ptr;
    uint64_t len;
} nbl_str;

int nbl_str_eq(nbl_str s, const char *cstr);

typedef struct nbl_gguf_value nbl_gguf_value;
struct nbl_gguf_value {
    uint32_t type; /* enum nbl_gguf_type */
    union {
        uint64_t u64; /* unsigned integers and BOOL (0/1) */
        int64_t i64;  /* signed integers */
        double f64;   /* FLOAT32 and FLOAT64 */
        nbl_str str;  /* STRING */
        struct {
            uint32_t type;         /* element type */
            uint64_t n;            /* element count */
            const uint8_t *raw;    /* fixed-size elements: little-endian bytes (unaligned) */
            nbl_str *strs;         /* STRING elements (n entries) */
            nbl_gguf_value *items; /* ARRAY elements (n entries, nested) */
        } arr;
    };
};

typedef struct nbl_gguf_kv {
    nbl_str key;
    nbl_gguf_value val;
} nbl_gguf_kv;

typedef struct nbl_gguf_tensor {
    nbl_str name;
    uint32_t type;   /* enum nbl_type */
    uint32_t n_dims; /* 1..4 */
    int64_t ne[4];   /* ne[0] is the contiguous row length; unused dims are 1 */
    uint64_t offset; /* from the start of the data section */
    uint64_t nbytes;
    const uint8_t *data;
} nbl_gguf_tensor;

typedef struct nbl_gguf {
    uint32_t version;
    uint64_t n_kv;
    nbl_gguf_kv *kv;
    uint64_t n_tensors;
    nbl_gguf_tensor *tensors;
    uint64_t alignment;   /* general.alignment or 32 */
    uint64_t data_offset; /* start of the tensor data section in the file */
    const uint8_t *base;  /* the whole file; NULL when opened from a metadata prefix */
    uint64_t size;        /* of the file */
    int32_t has_data;     /* tensors' data pointers are set (else nbl_gguf_attach_data sets them) */
    void *priv;           /* reader-private (mapping, allocations) */
} nbl_gguf;

/* Memory-maps the file; weights are never copied. */
nbl_status nbl_gguf_open_file(const char *path, nbl_gguf **out, nbl_error *err);
/* Parses a caller buffer that must outlive the result. */
nbl_status nbl_gguf_open_buffer(const void *data, size_t size, nbl_gguf **out, nbl_error *err);
/* Parses the metadata (keys and tensor infos) of a file of file_size bytes from its first avail
 * bytes, which must outlive the result; tensors get no data. Where the prefix is too short,
 * fails with *more = the bytes that would get further (read at least that many and retry). */
nbl_status nbl_gguf_open_meta(const void *prefix, size_t avail, uint64_t file_size, uint64_t *more,
                              nbl_gguf **out, nbl_error *err);
/* Points the tensors of a metadata-only open into data, the file's data section (from
 * data_offset to the end), which must outlive g. */
nbl_status nbl_gguf_attach_data(nbl_gguf *g, const void *data, uint64_t size, nbl_error *err);
void nbl_gguf_free(nbl_gguf *g);
/* Hints that the whole pages of [p, p+len) inside g's own file mapping are not needed for now:
 * they leave memory and come back from the file if read again. Anything else is left alone. */
void nbl_gguf_drop_pages(nbl_gguf *g, const void *p, size_t len);
/* 1 when g's bytes are a read-only mapping of its file (nbl_gguf_open_file). */
int nbl_gguf_mapped(const nbl_gguf *g);

const nbl_gguf_kv *nbl_gguf_find(const nbl_gguf *g, const char *key);
const nbl_gguf_tensor *nbl_gguf_find_tensor(const nbl_gguf *g, const char *name);

/* Typed getters: 1 = found and converted, 0 = absent, -1 = present with an unusable type
 * (err names the key). get_int takes any integer type or BOOL; get_float any number. */
int nbl_gguf_get_int(const nbl_gguf *g, const char *key, int64_t *out, nbl_error *err);
int nbl_gguf_get_float(const nbl_gguf *g, const char *key, double *out, nbl_error *err);
int nbl_gguf_get_bool(const nbl_gguf *g, const char *key, bool *out, nbl_error *err);
int nbl_gguf_get_str(const nbl_gguf *g, const char *key, nbl_str *out, nbl_error *err);
/* Array with the given element type (or any when elem_type == UINT32_MAX). */
int nbl_gguf_get_arr(const nbl_gguf *g, const char *key, uint32_t elem_type,
                     const nbl_gguf_value **out, nbl_error *err);
/* Element i of an array of integers (any integer type) / numbers. i < n is the caller's job. */
int64_t nbl_gguf_arr_int(const nbl_gguf_value *arr, uint64_t i);
double nbl_gguf_arr_float(const nbl_gguf_value *arr, uint64_t i);
/* Size in bytes of one fixed-size element type; 0 for STRING/ARRAY/invalid. */
uint32_t nbl_gguf_type_size(uint32_t type);

typedef struct nbl_gguf_writer nbl_gguf_writer;
nbl_gguf_writer *nbl_gguf_writer_new(void); /* NULL on OOM */
void nbl_gguf_writer_free(nbl_gguf_writer *w);
/* Setters copy their arguments; setting an existing key replaces its value in place. */
nbl_status nbl_gguf_writer_set_u32(nbl_gguf_writer *w, const char *key, uint32_t v);
nbl_status nbl_gguf_writer_set_i32(nbl_gguf_writer *w, const char *key, int32_t v);
nbl_status nbl_gguf_writer_set_u64(nbl_gguf_writer *w, const char *key, uint64_t v);
nbl_status nbl_gguf_writer_set_f32(nbl_gguf_writer *w, const char *key, float v);
nbl_status nbl_gguf_writer_set_bool(nbl_gguf_writer *w, const char *key, bool v);
nbl_status nbl_gguf_writer_set_str(nbl_gguf_writer *w, const char *key, const char *v);
/* Fixed-size element array (elem_type not STRING/ARRAY); data holds n little-endian elements. */
nbl_status nbl_gguf_writer_set_arr(nbl_gguf_writer *w, const char *key, uint32_t elem_type,
                                   const void *data, uint64_t n);
nbl_status nbl_gguf_writer_set_arr_str(nbl_gguf_writer *w, const char *key,
                                       const char *const *strs, uint64_t n);
/* Any value, deep-copied (e.g. from a reader's kv, including nested arrays). */
nbl_status nbl_gguf_writer_set_value(nbl_gguf_writer *w, const char *key, const nbl_gguf_value *v);
/* data is borrowed (not copied) and must stay valid until the write; its size is
 * nbl_row_bytes(type, ne[0]) * ne[1] * ne[2] * ne[3]. */
nbl_status nbl_gguf_writer_add_tensor(nbl_gguf_writer *w, const char *name, uint32_t type,
                                      uint32_t n_dims, const int64_t *ne, const void *data);
/* Writes GGUF v3 with the alignment in general.alignment (default 32). */
nbl_status nbl_gguf_writer_write_file(nbl_gguf_writer *w, const char *path, nbl_error *err);
nbl_status nbl_gguf_writer_write_mem(nbl_gguf_writer *w, uint8_t **out, size_t *size,
                                     nbl_error *err);

/* ---- tokenizer.c: vocabulary, encoding, decoding ------------------------------------------ */

typedef struct nbl_vocab nbl_vocab;
/* Loads tokenizer.ggml.* from g. Strings are copied, so g may be freed afterwards. */
nbl_status nbl_vocab_load(const nbl_gguf *g, nbl_vocab **out, nbl_error *err);
void nbl_vocab_free(nbl_vocab *v);

typedef struct nbl_range {
    size_t start, len;
} nbl_range;

/* Encodes text; control tokens are recognised only inside the given byte ranges (none when
 * n_special == 0). Same return convention as nbl_tokenize. */
int32_t nbl_vocab_tokenize(const nbl_vocab *v, const char *text, size_t len, int add_bos,
                           const nbl_range *special, size_t n_special, int32_t *out,
                           int32_t cap, nbl_error *err);

/* What the tokenizer read and decided (ids are -1 when absent; strings live as long as v). */
typedef struct nbl_vocab_info {
    const char *model;   /* tokenizer.ggml.model: "gpt2" or "llama" */
    const char *pre;     /* tokenizer.ggml.pre as given ("spm" for SentencePiece) */
    const char *warning; /* NULL, or one message worth showing once (e.g. unknown pre-tokenizer) */
    int32_t n_tokens, bos, eos, eot, pad, unk;
    int32_t add_bos, add_eos, add_space_prefix;
    int32_t max_token_bytes; /* longest token text: bounds nbl_token_to_bytes' output */
} nbl_vocab_info;
void nbl_vocab_get_info(const nbl_vocab *v, nbl_vocab_info *info);
/* Id of the token whose stored text (byte-level spelling for BPE) is text[0..len); -1 if none. */
int32_t nbl_vocab_find(const nbl_vocab *v, const char *text, size_t len);
/* Splits text with a byte-level BPE pre-tokenizer named as in tokenizer.ggml.pre ("qwen2",
 * "llama-bpe", "smollm", "gpt2", "default", ...), calling fn for each piece's byte range in
 * order (tests and diagnostics). Returns 0, or -1 for an unknown name or out of memory. */
int nbl_pretokenize(const char *pre, const char *text, size_t len,
                    void (*fn)(void *ctx, size_t off, size_t len), void *ctx);

/* ---- json.c: strict JSON (RFC 8259) parser for untrusted input ---------------------------- */

enum nbl_json_type { NBL_JSON_NULL, NBL_JSON_BOOL, NBL_JSON_NUMBER, NBL_JSON_STRING, NBL_JSON_ARRAY, NBL_JSON_OBJECT };

typedef struct nbl_json nbl_json;
struct nbl_json {
    int type;          /* enum nbl_json_type */
    bool b;            /* BOOL */
    double num;        /* NUMBER */
    char *str;         /* STRING: decoded UTF-8, NUL-terminated (may contain NUL: use len) */
    size_t len;        /* STRING byte length; ARRAY/OBJECT element count */
    nbl_json *items;   /* ARRAY elements / OBJECT values, len of them */
    char **keys;       /* OBJECT keys (decoded, NUL-terminated), len of them */
};

/* Parses text (len bytes). NULL on error with err naming line:column and what was expected.
 * Nesting is limited (depth 512) so hostile input cannot exhaust the stack. */
nbl_json *nbl_json_parse(const char *text, size_t len, nbl_error *err);
void nbl_json_free(nbl_json *j);
/* Member of an object (first match), or NULL (also when j is not an object / NULL). */
const nbl_json *nbl_json_get(const nbl_json *j, const char *key);
/* Element i of an array, or NULL. */
const nbl_json *nbl_json_at(const nbl_json *j, size_t i);
/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL with err on failure. */
char *nbl_read_file(const char *path, size_t *len, nbl_error *err);

/* ---- chat.c: chat templates ---------------------------------------------------------------- */

/* Values of the template variables besides messages; a NULL field takes the family's usual
 * value (bos "<|begin_of_text|>" for Llama 3, "<bos>" for Gemma 2; eos "<|endoftext|>"). */
typedef struct nbl_chat_render_opts {
    const char *bos_token;
    const char *eos_token;
    const char *date_string; /* Llama 3 "Today Date"; NULL: today as "26 Jul 2024" (or that
                              * fixed date for a Llama 3.1 template, which has no clock) */
} nbl_chat_render_opts;

/* Canonical family name ("qwen2.5", "chatml", "llama3", "llama3.0", "phi3", "gemma2") of a
 * tokenizer.chat_template source; "chatml" with *recognised = 0 when none matches (or NULL). */
const char *nbl_chat_detect(const char *template_text, int *recognised);

/* Renders msgs with the family named by template_name (when not NULL) or recognised from
 * template_text (ChatML when NULL or unrecognised). *out is malloc'd, NUL-terminated, *out_len
 * its length (out_len may be NULL). When tmpl_ranges is not NULL it receives a malloc'd, ordered
 * list of the byte ranges written by the template itself (everything but message roles and
 * contents): the only places where control tokens may be recognised. Template-raised errors
 * (Gemma 2's "System role not supported") are NBL_E_ARG with the template's message. */
nbl_status nbl_chat_render_ex(const char *template_text, const char *template_name,
                              const nbl_chat_render_opts *opts, const nbl_chat_message *msgs,
                              int32_t n_msgs, int32_t add_generation_prompt, char **out,
                              size_t *out_len, nbl_range **tmpl_ranges, size_t *n_ranges,
                              nbl_error *err);

/* ---- mix.c: per-tensor types of named quantization mixes ------------------------------------ */

/* Type for a tensor under a mix ("q4_0", "q4_k_m", "q4-mixed", ...); -1 for an unknown mix.
 * has_output: the model has a separate output.weight (else token_embd is the output head);
 * n_gqa: query heads per KV head. */
int32_t nbl_mix_tensor_type(const char *mix, const char *name, int32_t n_dims, int64_t ne0,
                            int32_t n_layer, int32_t has_output, int32_t n_gqa);
int nbl_mix_valid(const char *name);
const char *nbl_mix_names(void);
/* The type used instead of `type` for rows of ne0 elements it cannot hold (K-quants). */
uint32_t nbl_type_fallback(uint32_t type, int64_t ne0);

/* ---- quantize.c, imatrix.c, eval.c: the compression tools ----------------------------------- */

typedef struct nbl_imatrix nbl_imatrix;
nbl_status nbl_imatrix_load(const char *path, nbl_imatrix **out, nbl_error *err);
void nbl_imatrix_free(nbl_imatrix *im);
/* Per-column importance (mean squared input) of a weight with n columns, or NULL. */
const float *nbl_imatrix_find(const nbl_imatrix *im, const char *name, int64_t n);

typedef struct nbl_quant_stats {
    double weighted_err2, weighted_ref2; /* summed over every requantized tensor */
} nbl_quant_stats;

typedef struct nbl_quantize_opts {
    const char *mix;          /* see nbl_mix_names() */
    const nbl_imatrix *imatrix; /* optional importance weights */
    int32_t n_threads;        /* 0 = all cores */
    FILE *report;             /* per-tensor table, or NULL */
    nbl_quant_stats *stats;   /* optional totals */
} nbl_quantize_opts;
void nbl_quantize_opts_init(nbl_quantize_opts *o);
nbl_status nbl_quantize_file(const char *in, const char *out, const nbl_quantize_opts *o,
                             nbl_error *err);

/* Runs the model over tokens in chunks of n_ctx and writes the importance matrix (GGUF). */
nbl_status nbl_imatrix_compute(nbl_model *m, const int32_t *tokens, int32_t n, int32_t n_ctx,
                               int32_t n_threads, const char *out_path, nbl_error *err);

typedef struct nbl_ppl_result {
    double ppl;        /* exp(mean negative log-likelihood) over scored tokens */
    double kl_mean;    /* mean KL(base || model) per scored token (when a base is given) */
    double kl_max;
    double top1_agree; /* fraction of scored tokens whose argmax equals the base's */
    int64_t n_scored;
    int32_t n_chunks;
} nbl_ppl_result;
/* Scores tokens in chunks of n_ctx, each token predicted from at least n_ctx/2 of context.
 * base may be NULL; with it, KL divergence and top-1 agreement against base are computed. */
nbl_status nbl_perplexity(nbl_model *m, nbl_model *base, const int32_t *tokens, int32_t n,
                          int32_t n_ctx, int32_t n_threads, nbl_ppl_result *r, nbl_error *err);

/* ---- synth.c: random-weight models with real models' shapes ---------------------------------- */

typedef struct nbl_synth_opts {
    const char *model;      /* "qwen2.5-0.5b-instruct", "smollm2-360m-instruct", ... */
    const char *mix;        /* see nbl_mix_names() */
    const char *vocab_path; /* optional GGUF whose tokenizer.* metadata is copied */
    uint64_t seed;
    int32_t n_layer;        /* 0 = the real count (fewer layers make quick test models) */
} nbl_synth_opts;

nbl_status nbl_synth_write(const nbl_synth_opts *o, const char *path, nbl_error *err);
const char *nbl_synth_names(void);

/* ---- model.c: architecture table, hyperparameters, tensor binding --------------------------- */

enum nbl_rope_mode { NBL_ROPE_NORM = 0 /* adjacent pairs (llama) */, NBL_ROPE_NEOX = 2 /* halves (qwen2); ggml's values */ };

typedef struct nbl_hparams {
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    float rope_theta, rms_eps;
    int32_t rope_mode;  /* enum nbl_rope_mode */
} nbl_hparams;

/* A weight matrix: rows of ne0 elements (the input dimension), ne1 rows (the output dimension). */
typedef struct nbl_weight {
    const void *data; /* NULL until a metadata-only model gets its data */
    uint64_t offset;  /* of the data in the file: identifies the tensor for GPU uploads */
    uint32_t type;
    int64_t ne0, ne1;
    const char *name; /* tensor name (points into the model) */
    /* What the CPU computes with: type and data, or a copy regrouped for its kernels
     * (nbl_model_cpu_layout); the fields above stay the file's, for GPU uploads and tools. */
    uint32_t cpu_type;
    const void *cpu_data;
} nbl_weight;

typedef struct nbl_layer {
    float *attn_norm;          /* [n_embd] */
    nbl_weight wq, wk, wv, wo; /* wq: [n_head*head_dim rows][n_embd], wk/wv: [n_head_kv*head_dim][n_embd], wo: [n_embd][n_head*head_dim] */
    float *bq, *bk, *bv;       /* [n_head*head_dim], [n_head_kv*head_dim] x2; NULL when absent */
    float *bo;                 /* [n_embd] attention output bias (Llama with attention_bias); NULL when absent */
    float *ffn_norm;           /* [n_embd] */
    nbl_weight w_gate, w_up;   /* [n_ff][n_embd] */
    nbl_weight w_down;         /* [n_embd][n_ff] */
} nbl_layer;

struct nbl_model {
    nbl_gguf *gguf;
    nbl_vocab *vocab;
    char *arch, *name, *chat_template;
    nbl_hparams hp;
    int32_t vocab_only;
    int32_t n_threads;
    nbl_weight tok_embd;     /* [n_vocab][n_embd] */
    nbl_weight output;       /* [n_vocab][n_embd]; same as tok_embd when tied */
    float *output_norm;      /* [n_embd] */
    float *rope_freqs;       /* [head_dim/2] frequency divisors (Llama 3.x), NULL when absent */
    nbl_layer *layers;       /* [n_layer] */
    float *owned;            /* one allocation holding every small f32 vector above */
    /* A metadata-only open: the small vectors whose bytes have not come in yet. */
    struct nbl_missing_vec { const nbl_gguf_tensor *t; float *dst; int64_t n; } *missing;
    int32_t n_missing;
    /* Built on the first constrained generation (grammar_gen.c), published atomically so
     * sessions on several threads may race to build it; freed with the model. */
    nbl_grammar_vocab *grammar_vocab;
    /* One compute pool per model, shared by its sessions (created by the first session): a
     * browser worker cannot start threads while it computes, and concurrent evaluations would
     * only fight over the same cores. pool_mu guards creation and serialises evaluations. */
    struct nbl_threadpool *pool;
    pthread_mutex_t pool_mu;
    void *cpu_owned; /* the regrouped weight copies (nbl_model_cpu_layout), NULL when none */
    int32_t regroup; /* NBL_REGROUP_* */
    int32_t cpu_laid; /* nbl_model_cpu_layout has run */
};

/* ---- model.c ------------------------------------------------------------------------------- */

/* Gives each weight the layout the CPU kernels read fastest (a regrouped copy where the kernel
 * table asks for one; NBL_REGROUP=0 in the environment keeps the file's), using tp's threads.
 * Once per model, under pool_mu, before its first CPU evaluation. Without the memory for the
 * copies the weights simply stay as they are. */
void nbl_model_cpu_layout(nbl_model *m, struct nbl_threadpool *tp);
/* Whether nbl_model_cpu_layout may regroup: into a copy (the default; a file's pages are
 * released as they are copied), not at all, or in the weights' own memory (a buffer the caller
 * handed over and never reads as a file again: no second copy of the weights; a memory-mapped
 * file is copied instead). Before the first session. */
enum { NBL_REGROUP_COPY = 0, NBL_REGROUP_NONE = 1, NBL_REGROUP_INPLACE = 2 };
void nbl_model_set_regroup(nbl_model *m, int32_t mode);

const nbl_vocab *nbl_model_vocab(const nbl_model *m);
const nbl_gguf *nbl_model_gguf(const nbl_model *m);
/* tokenizer.chat_template as a NUL-terminated string, or NULL. */
const char *nbl_model_chat_template(const nbl_model *m);

/* ---- grammar_gen.c: the model's grammar vocabulary and masked sampling -------------------- */

/* The model's grammar vocabulary, built on first use and cached on the model (safe to call from
 * several threads). NULL with err on failure. */
const nbl_grammar_vocab *nbl_model_grammar_vocab(const nbl_model *m, nbl_error *err);

/* Reusable candidate arrays for nbl_sample_allowed. Zero-initialise; free with _free. */
typedef struct nbl_sample_buf {
    float *val;
    int32_t *id;
    int32_t cap;
} nbl_sample_buf;
void nbl_sample_buf_free(nbl_sample_buf *b);

/* Picks the token nbl_sample would pick (same seed, same draw) from a copy of logits in which
 * every token whose bit is clear in allowed ((n_vocab + 31) / 32 words) is -INFINITY, but looks
 * only at the allowed tokens and selects top_k without sorting the vocabulary, so a narrow mask
 * or a small top_k is cheap. -1 when nothing is allowed or memory runs out. */
int32_t nbl_sample_allowed(nbl_sample_buf *b, const float *logits, int32_t n_vocab,
                           const uint32_t *allowed, const nbl_sampler_params *p,
                           const int32_t *history, int32_t n_history, nbl_rng *rng);

/* ---- tasks.c: the helper tasks' post-processing (exposed for tests) ------------------------ */

/* Quick replies: a JSON array of strings → the documented cleaned array (controls to spaces,
 * spaces collapsed and trimmed, empty strings and duplicates dropped). *out malloc'd. */
nbl_status nbl_replies_clean(const char *json, size_t len, char **out, nbl_error *err);
/* Memory: a JSON array of {fact, category, confidence} → the same, tidied, without facts equal
 * (ignoring ASCII case, punctuation and spacing) to an existing one or an earlier one. */
nbl_status nbl_memory_clean(const char *json, size_t len, const char *existing_json, char **out,
                            nbl_error *err);

/* ---- safetensors.c: Hugging Face safetensors checkpoints (mmap, untrusted headers) ---------- */

enum nbl_st_dtype {
    NBL_ST_F32 = 1, NBL_ST_F16, NBL_ST_BF16, NBL_ST_F64, NBL_ST_I64, NBL_ST_U64, NBL_ST_I32,
    NBL_ST_U32, NBL_ST_I16, NBL_ST_U16, NBL_ST_I8, NBL_ST_U8, NBL_ST_BOOL, NBL_ST_F8_E4M3,
    NBL_ST_F8_E5M2
};
#define NBL_ST_MAX_DIMS 8

typedef struct nbl_st_tensor {
    const char *name;
    uint32_t dtype;      /* enum nbl_st_dtype */
    uint32_t elem_size;  /* bytes per element */
    uint32_t n_dims;     /* 0..NBL_ST_MAX_DIMS */
    int64_t shape[NBL_ST_MAX_DIMS]; /* PyTorch order: shape[n_dims-1] is contiguous */
    uint64_t numel;
    uint64_t nbytes;     /* numel * elem_size, checked against the file */
    const uint8_t *data; /* inside the mapped file; any alignment */
    const char *file;    /* shard file name, for messages */
} nbl_st_tensor;

typedef struct nbl_st nbl_st;
/* DIR/model.safetensors.index.json (every shard it names, cross-checked) or DIR/model.safetensors. */
nbl_status nbl_st_open_dir(const char *dir, nbl_st **out, nbl_error *err);
nbl_status nbl_st_open_file(const char *path, nbl_st **out, nbl_error *err);
/* Caller buffer, not copied; label names it in messages. */
nbl_status nbl_st_open_buffer(const void *data, size_t size, const char *label, nbl_st **out,
                              nbl_error *err);
void nbl_st_free(nbl_st *st);
uint64_t nbl_st_count(const nbl_st *st);
const nbl_st_tensor *nbl_st_at(const nbl_st *st, uint64_t i); /* sorted by name */
const nbl_st_tensor *nbl_st_find(const nbl_st *st, const char *name);
const char *nbl_st_dtype_name(uint32_t dtype);
int nbl_st_is_float(uint32_t dtype); /* F32, F16 or BF16 */
/* Elements [first, first+n) as floats; float dtypes only. */
void nbl_st_read_f32(const nbl_st_tensor *t, uint64_t first, uint64_t n, float *dst);

/* ---- convert.c: Hugging Face checkpoint directory -> GGUF (llama.cpp's layout and keys) ----- */

typedef struct nbl_convert_options {
    uint32_t out_type; /* 2-D weights: NBL_TYPE_F16 (default), NBL_TYPE_BF16 or NBL_TYPE_F32 */
    const char *name;  /* general.name; NULL = the directory's name */
    /* Warnings and progress lines (no newline); NULL = silent. */
    void (*log)(void *user, const char *msg);
    void *log_user;
} nbl_convert_options;

void nbl_convert_options_init(nbl_convert_options *opt);
/* Converts a Qwen2ForCausalLM / LlamaForCausalLM directory (config.json, safetensors,
 * tokenizer.json or vocab.json+merges.txt, tokenizer_config.json, ...) into out_path. */
nbl_status nbl_convert_hf(const char *hf_dir, const char *out_path,
                          const nbl_convert_options *opt, nbl_error *err);

#endif
