/* nbl.h — the public C API of Nano Browser LLM, the only header users include.
 * Opaque handles: nbl_model (weights + vocabulary, read-only, shareable) and nbl_session
 * (KV cache, position, logits). Every call that can fail returns an nbl_status and fills an
 * optional nbl_error with a message naming what was wrong; the library never exits or aborts. */
#ifndef NBL_H
#define NBL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NBL_VERSION "0.1.0"

typedef enum nbl_status {
    NBL_OK = 0,
    NBL_E_ARG,         /* bad argument from the caller */
    NBL_E_IO,          /* file could not be opened / read / written */
    NBL_E_FORMAT,      /* malformed or inconsistent input (GGUF, JSON, metadata) */
    NBL_E_UNSUPPORTED, /* well-formed but not supported (tensor type, architecture) */
    NBL_E_NOMEM,       /* allocation failed or a size does not fit in memory */
    NBL_E_CONTEXT,     /* the KV cache (context window) is full */
    NBL_E_STATE        /* call not valid in the object's current state */
} nbl_status;

typedef struct nbl_error {
    nbl_status code;
    char msg[512];
} nbl_error;

/* A static string for a status code ("ok", "format error", ...). */
const char *nbl_status_str(nbl_status s);

typedef struct nbl_model nbl_model;
typedef struct nbl_session nbl_session;

/* ---- models ---------------------------------------------------------------------------- */

typedef struct nbl_model_options {
    int32_t vocab_only; /* 1: load only metadata + vocabulary (tokenizer use), no weights */
    int32_t n_threads;  /* default worker threads for sessions; 0 = automatic */
} nbl_model_options;

/* Fills defaults. Always call before setting fields, so new fields get sane values. */
void nbl_model_options_init(nbl_model_options *opt);

/* Opens a GGUF file, memory-mapped: weights are never copied. opt may be NULL. */
nbl_status nbl_model_open_file(const char *path, const nbl_model_options *opt, nbl_model **out,
                               nbl_error *err);

/* Opens a GGUF held in the caller's memory (the browser path). The buffer is not copied and
 * must stay valid and unchanged until nbl_model_free. */
nbl_status nbl_model_open_buffer(const void *data, size_t size, const nbl_model_options *opt,
                                 nbl_model **out, nbl_error *err);

void nbl_model_free(nbl_model *model);

typedef struct nbl_model_info {
    const char *arch;  /* "qwen2", "llama" */
    const char *name;  /* general.name or "" */
    int32_t n_vocab;   /* rows of the output / embedding matrix */
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t bos;       /* -1 when absent */
    int32_t eos;       /* -1 when absent */
    int32_t eot;       /* end-of-turn token used by chat (e.g. <|im_end|>), -1 when unknown */
    int32_t add_bos;   /* 1 when the tokenizer prepends BOS */
    uint64_t n_params;
    uint64_t weight_bytes;
} nbl_model_info;

void nbl_model_get_info(const nbl_model *model, nbl_model_info *info);

/* ---- sessions ---------------------------------------------------------------------------- */

typedef struct nbl_session_options {
    int32_t n_ctx;     /* KV cache length in tokens; 0 = min(n_ctx_train, 4096) */
    int32_t n_batch;   /* max tokens per internal prefill chunk; 0 = 256 */
    int32_t n_threads; /* 0 = model default */
} nbl_session_options;

void nbl_session_options_init(nbl_session_options *opt);

nbl_status nbl_session_new(nbl_model *model, const nbl_session_options *opt, nbl_session **out,
                           nbl_error *err);
void nbl_session_free(nbl_session *s);

/* Evaluates n tokens appended at the current position (prefill when n > 1, decode when 1).
 * logits_all = 1 keeps logits for each of the n positions, else only for the last.
 * Fails with NBL_E_CONTEXT (and changes nothing) if the tokens do not fit. */
nbl_status nbl_session_eval(nbl_session *s, const int32_t *tokens, int32_t n, int32_t logits_all,
                            nbl_error *err);

/* Logits (n_vocab floats) of the i-th position of the last eval; i = -1 means the last one.
 * NULL when that row was not kept. Valid until the next eval. */
const float *nbl_session_logits(const nbl_session *s, int32_t i);

int32_t nbl_session_pos(const nbl_session *s);   /* tokens in the cache */
int32_t nbl_session_n_ctx(const nbl_session *s);
const int32_t *nbl_session_tokens(const nbl_session *s); /* the pos tokens in the cache */

/* Drops cached tokens from position n_keep on (0 = reset). */
nbl_status nbl_session_truncate(nbl_session *s, int32_t n_keep);

/* ---- sampling ---------------------------------------------------------------------------- */

typedef struct nbl_sampler_params {
    float temperature;    /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int32_t repeat_last_n;
    uint64_t seed;
} nbl_sampler_params;

void nbl_sampler_params_init(nbl_sampler_params *p);

typedef struct nbl_rng { uint64_t s[2]; } nbl_rng;
void nbl_rng_seed(nbl_rng *r, uint64_t seed);

/* Picks a token from logits (not modified). history may be NULL. */
int32_t nbl_sample(const float *logits, int32_t n_vocab, const nbl_sampler_params *p,
                   const int32_t *history, int32_t n_history, nbl_rng *rng);

/* ---- vocabulary, tokenizer, chat --------------------------------------------------------- */

int32_t nbl_vocab_size(const nbl_model *model);

/* Raw bytes of a token as it appears in text (byte-level BPE decoded, SentencePiece '▁' as
 * space, <0xNN> as that byte). Returns the byte length, or -1 for an invalid id. Writes at most
 * cap bytes (no NUL). Control tokens give their text only when special != 0, else 0 bytes. */
int32_t nbl_token_to_bytes(const nbl_model *model, int32_t token, int32_t special, char *buf,
                           int32_t cap);

/* Token attributes. */
int32_t nbl_token_is_control(const nbl_model *model, int32_t token);
int32_t nbl_token_is_eog(const nbl_model *model, int32_t token); /* end of generation */

enum {
    NBL_TOK_ADD_BOS = 1,       /* prepend BOS when the model's tokenizer says add_bos */
    NBL_TOK_PARSE_SPECIAL = 2  /* recognise control-token text; never set for user text */
};

/* Text → ids. Writes up to cap ids and returns the total count needed (may exceed cap), or -1
 * on error (err filled). */
int32_t nbl_tokenize(const nbl_model *model, const char *text, size_t len, uint32_t flags,
                     int32_t *out, int32_t cap, nbl_error *err);

/* Streaming ids → UTF-8: holds back incomplete multi-byte sequences until complete. */
typedef struct nbl_detok nbl_detok;
nbl_detok *nbl_detok_new(const nbl_model *model, int32_t special);
/* Appends the text for token; returns bytes written to out (<= cap), or -1 if cap too small
 * (cap >= 64 + longest token is always enough). */
int32_t nbl_detok_push(nbl_detok *d, int32_t token, char *out, int32_t cap);
/* Flushes held bytes (invalid sequences become U+FFFD). */
int32_t nbl_detok_flush(nbl_detok *d, char *out, int32_t cap);
void nbl_detok_free(nbl_detok *d);

typedef struct nbl_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} nbl_chat_message;

/* Renders a conversation with the model's chat template (recognised from
 * tokenizer.chat_template; ChatML when absent) or the named one when template_name is not NULL
 * ("qwen2.5", "chatml", "llama3", "phi3", "gemma2"). *out is malloc'd, NUL-terminated. */
nbl_status nbl_chat_render(const nbl_model *model, const char *template_name,
                           const nbl_chat_message *msgs, int32_t n_msgs,
                           int32_t add_generation_prompt, char **out, nbl_error *err);

/* Tokenizes a conversation so that only template text may become control tokens: message
 * contents are always plain text. *out is malloc'd; *n_out its length. */
nbl_status nbl_chat_tokenize(const nbl_model *model, const char *template_name,
                             const nbl_chat_message *msgs, int32_t n_msgs,
                             int32_t add_generation_prompt, int32_t **out, int32_t *n_out,
                             nbl_error *err);

#ifdef __cplusplus
}
#endif
#endif
