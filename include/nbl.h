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
    NBL_E_STATE,       /* call not valid in the object's current state */
    NBL_E_DEVICE       /* an external executor's device is gone (e.g. GPU device lost) */
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

/* Opens a model from the first avail bytes of its GGUF file (file_size bytes in all): metadata,
 * tokenizer and shapes, but no tensor data, for an executor that reads the weights itself (the
 * browser's GPU path streams them from storage). The prefix is not copied and must outlive the
 * model. Where it is too short to hold the metadata, fails with *more set to the bytes that get
 * further: read at least that many and call again. The small vectors (norms, biases) come in
 * through nbl_model_put_tensor, the matrices through nbl_model_attach_data; sessions on the CPU
 * refuse to start until the latter. */
nbl_status nbl_model_open_meta(const void *prefix, size_t avail, uint64_t file_size,
                               const nbl_model_options *opt, uint64_t *more, nbl_model **out,
                               nbl_error *err);

/* The file ranges of the small tensors a metadata-only model still lacks: fills up to cap pairs
 * (offset, size) into ranges and returns how many there are. */
int32_t nbl_model_missing_vectors(const nbl_model *model, uint64_t *ranges, int32_t cap);

/* Bytes [offset, offset + size) of the model's file: fills every missing small tensor that lies
 * inside them (copied; bytes need not outlive the call). */
nbl_status nbl_model_put_tensor(nbl_model *model, uint64_t offset, const void *bytes, uint64_t size,
                                nbl_error *err);

/* Gives a metadata-only model its tensor data: the file's data section, bytes [data_offset,
 * file_size) (see nbl_model_info), which must outlive the model. Fills missing small tensors too. */
nbl_status nbl_model_attach_data(nbl_model *model, const void *data, uint64_t size, nbl_error *err);

/* 1 when the model holds every tensor's data (the CPU can run it). */
int32_t nbl_model_has_data(const nbl_model *model);

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
    uint64_t file_size;   /* of the GGUF */
    uint64_t data_offset; /* where its tensor data section starts */
} nbl_model_info;

void nbl_model_get_info(const nbl_model *model, nbl_model_info *info);

/* ---- sessions ---------------------------------------------------------------------------- */

/* An external executor of the forward pass (the browser's GPU plan executor, or a test's). It is
 * handed the tokens already in the cache (cached[0..pos), whose keys and values it may or may not
 * still hold: it owns its cache and may rebuild it from them) and evaluates the n new tokens at
 * positions pos..pos+n-1, writing the logits of the last one, or of every one when logits_all,
 * to out ([rows][n_vocab]). Returns NBL_OK; NBL_E_DEVICE when its device is gone for good, upon
 * which the session moves to the CPU (the model's weights must be loaded), rebuilds its cache
 * there from cached[] and goes on as if nothing happened; any other status fails the eval. */
typedef nbl_status (*nbl_forward_fn)(void *ctx, const int32_t *cached, int32_t pos,
                                     const int32_t *tokens, int32_t n, int32_t logits_all,
                                     float *out, nbl_error *err);

typedef struct nbl_session_options {
    int32_t n_ctx;     /* KV cache length in tokens; 0 = min(n_ctx_train, 4096) */
    int32_t n_batch;   /* max tokens per internal prefill chunk; 0 = 256 */
    int32_t n_threads; /* 0 = model default */
    nbl_forward_fn forward; /* NULL: the CPU runs the forward pass */
    void *forward_ctx;
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

/* 1 while an external forward executor runs the session, 0 on the CPU (from the start, or since
 * the executor reported NBL_E_DEVICE). */
int32_t nbl_session_external(const nbl_session *s);

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

/* ---- generation (generate.c) --------------------------------------------------------------
 * One generation at a time per session: start it with a conversation or tokens, then call
 * nbl_gen_next until *finish is set. Text comes out as valid UTF-8 with stop strings withheld. */

typedef struct nbl_grammar nbl_grammar;

typedef struct nbl_gen_params {
    nbl_sampler_params sampler;
    int32_t max_tokens;        /* 0 = until end of turn or the context is full */
    const char *const *stop;   /* stop strings; the output ends before the first one */
    int32_t n_stop;
    int32_t max_sentences;     /* stop after this many sentences; 0 = off */
    const nbl_grammar *grammar; /* constrain output (NULL = free); borrowed for the generation */
} nbl_gen_params;

void nbl_gen_params_init(nbl_gen_params *p);

enum {
    NBL_FINISH_NONE = 0,   /* still generating */
    NBL_FINISH_STOP = 1,   /* end-of-turn token, stop string, sentence budget or grammar complete */
    NBL_FINISH_LENGTH = 2  /* max_tokens reached or the context is full */
};

typedef struct nbl_usage {
    int32_t prompt_tokens;     /* tokens of the rendered conversation */
    int32_t cached_tokens;     /* of those, reused from the KV cache */
    int32_t completion_tokens; /* generated so far */
    int32_t dropped_messages;  /* oldest turns shifted out to fit the context */
} nbl_usage;

/* Starts answering a conversation: renders it with the template (contents are plain text),
 * keeps the longest prefix already in the KV cache, and when the conversation plus the reply
 * budget does not fit the context, drops the oldest turns (never the system prompt) until it
 * does. Fails with NBL_E_CONTEXT when even the last message alone does not fit. */
nbl_status nbl_gen_start_chat(nbl_session *s, const char *template_name,
                              const nbl_chat_message *msgs, int32_t n_msgs,
                              const nbl_gen_params *p, nbl_error *err);
/* Starts from raw tokens (the prompt as given), reusing the cached prefix. */
nbl_status nbl_gen_start_tokens(nbl_session *s, const int32_t *tokens, int32_t n,
                                const nbl_gen_params *p, nbl_error *err);
/* Generates one token. Writes the newly final text (possibly empty) to out and returns its
 * length, or -1 on error. cap >= 256 is always enough. *finish is set when done; *token (may be
 * NULL) receives the sampled id. */
int32_t nbl_gen_next(nbl_session *s, char *out, int32_t cap, int32_t *finish, int32_t *token,
                     nbl_error *err);
void nbl_gen_usage(const nbl_session *s, nbl_usage *u);

/* ---- grammar: constrained decoding ------------------------------------------------------
 * A grammar restricts generation to a language: a JSON Schema subset, any JSON object, or one of
 * a list of fixed strings. A matcher binds a grammar to a vocabulary and tracks the text
 * generated so far; a sampling loop calls, per step:
 *     nbl_grammar_matcher_apply(m, logits, n_logits)   (or _mask, to get the bitset)
 *     token = nbl_sample(...)
 *     nbl_grammar_matcher_accept(m, token, err)
 * and stops after accepting an end-of-generation token (or once nbl_grammar_matcher_done).
 * Every text the matcher lets through is a prefix of a valid output that can still be finished
 * within a bounded number of bytes: lengths, item counts, digits and nesting all have caps (the
 * schema's own or nbl_grammar_limits), and whitespace is limited to one optional space after
 * ':' and ','. End-of-generation tokens are allowed exactly when the text is complete.
 * The guarantee assumes the vocabulary can spell every byte (byte-level BPE and SentencePiece
 * with byte fallback can); otherwise a mask may come back empty.
 *
 * JSON Schema subset: type (a name or a list of names), properties + required (properties
 * appear in schema order, optional ones may be left out, no other properties: additionalProperties
 * false is implied), items, minItems, maxItems, minLength, maxLength (in code points), enum and
 * const (of any JSON values, written compactly), minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum (integers up to 18 digits; numbers with a range up to 12 integer and 6
 * fraction digits, no exponent). Annotations (title, description, default, examples, $schema,
 * $id, $comment, ...) are ignored. Any other keyword is an error naming it and its JSON path,
 * e.g. "unsupported JSON Schema keyword \"pattern\" at $.properties.email". The empty schema
 * {} means any JSON value; {"type":"object"} without properties means any object. */

typedef struct nbl_grammar nbl_grammar;

typedef struct nbl_grammar_limits {
    int32_t max_depth;       /* nesting of objects/arrays inside "any JSON" values (<= 32) */
    int32_t max_items;       /* items per array / members per object without maxItems */
    int32_t max_string;      /* code points per string without maxLength */
    int32_t max_int_digits;  /* integer digits of numbers without a range (<= 18) */
    int32_t max_frac_digits; /* fraction digits of numbers without a range (0: none) */
    int32_t max_exp_digits;  /* exponent digits of numbers without a range (0: no exponent) */
    int32_t space;           /* 1: one optional space after ':' and ','; 0: compact only */
} nbl_grammar_limits;

/* Defaults: depth 12, 128 items, 1024 code points, 15 / 8 / 2 digits, space 1. */
void nbl_grammar_limits_init(nbl_grammar_limits *lim);

/* Compiles a JSON Schema (see the subset above). NULL on error, err naming keyword and path. */
nbl_grammar *nbl_grammar_new_json_schema(const char *schema_json, size_t len, nbl_error *err);
/* Any JSON object (response_format json_object). */
nbl_grammar *nbl_grammar_new_json(nbl_error *err);
/* Exactly one of n strings (raw bytes, not JSON); duplicates are merged. */
nbl_grammar *nbl_grammar_new_choice(const char *const *choices, int32_t n, nbl_error *err);
/* Replaces the limits; affects matchers created afterwards. */
nbl_status nbl_grammar_set_limits(nbl_grammar *g, const nbl_grammar_limits *lim, nbl_error *err);
void nbl_grammar_free(nbl_grammar *g);

/* A vocabulary prepared for masking (token bytes, byte tries): built once per model, read-only
 * afterwards, shareable between threads and matchers. */
typedef struct nbl_grammar_vocab nbl_grammar_vocab;

/* tok_bytes[i] / tok_len[i]: the raw bytes token i stands for (length 0: never allowed, e.g.
 * control tokens); eog_ids: end-of-generation tokens, allowed exactly when the output is
 * complete. Bytes are copied. Tokens longer than 1024 bytes are never allowed. */
nbl_grammar_vocab *nbl_grammar_vocab_new(const char *const *tok_bytes, const int32_t *tok_len,
                                         int32_t n_vocab, const int32_t *eog_ids, int32_t n_eog,
                                         nbl_error *err);
/* From a model: token text via nbl_token_to_bytes (special = 0, so control tokens are never
 * allowed) and nbl_token_is_eog. Covers all rows of the model's logits. */
nbl_grammar_vocab *nbl_grammar_vocab_from_model(const nbl_model *model, nbl_error *err);
int32_t nbl_grammar_vocab_size(const nbl_grammar_vocab *v);
void nbl_grammar_vocab_free(nbl_grammar_vocab *v);

/* The state of one generation: grammar + vocabulary + text so far. Both must outlive it. */
typedef struct nbl_grammar_matcher nbl_grammar_matcher;

nbl_grammar_matcher *nbl_grammar_matcher_new(const nbl_grammar *g, const nbl_grammar_vocab *v,
                                             nbl_error *err);
/* An independent copy of the state (cheap: for look-ahead or speculative decoding). */
nbl_grammar_matcher *nbl_grammar_matcher_clone(const nbl_grammar_matcher *m, nbl_error *err);
void nbl_grammar_matcher_free(nbl_grammar_matcher *m);
/* Back to the empty text. */
void nbl_grammar_matcher_reset(nbl_grammar_matcher *m);

/* The tokens allowed next, as a bitset of (n_vocab + 31) / 32 words: token t is allowed when
 * bit (t % 32) of word t / 32 is set. Returns the number of allowed tokens (0 after an
 * end-of-generation token was accepted), -1 when out of memory. */
int32_t nbl_grammar_matcher_mask(nbl_grammar_matcher *m, uint32_t *bitset);
/* Computes the mask and sets every disallowed logit (and every row >= n_vocab) to -INFINITY.
 * Returns the number of allowed tokens, -1 when out of memory. */
int32_t nbl_grammar_matcher_apply(nbl_grammar_matcher *m, float *logits, int32_t n_logits);

/* Advances by one token. A token the mask would not allow is refused with NBL_E_ARG and
 * leaves the matcher unchanged. */
nbl_status nbl_grammar_matcher_accept(nbl_grammar_matcher *m, int32_t token, nbl_error *err);
/* Advances by raw bytes (e.g. text forced into the output); all or nothing, like accept. */
nbl_status nbl_grammar_matcher_accept_bytes(nbl_grammar_matcher *m, const char *bytes,
                                            size_t len, nbl_error *err);
/* 1 when the text so far is a complete output (end of generation allowed). */
int32_t nbl_grammar_matcher_can_end(const nbl_grammar_matcher *m);
/* 1 when the output is complete and nothing can follow but end of generation (or an
 * end-of-generation token was accepted): the loop may stop without sampling. */
int32_t nbl_grammar_matcher_done(const nbl_grammar_matcher *m);

/* ---- WebGPU plan (webgpu.c) ---------------------------------------------------------------- */

/* What the plan may assume about the GPU; zero fields take the defaults shown. Pass the adapter's
 * real limits so large tensors are split only where the adapter needs it. */
typedef struct nbl_gpu_plan_opts {
    int32_t n_ctx;                  /* KV cache length in tokens; 0 = min(n_ctx_train, 4096) */
    int32_t max_tokens;             /* most tokens per prefill step (chunk); 0 = 256 */
    int32_t max_logit_rows;         /* most logits rows a step returns (prefill_all); 0 = 1 */
    int32_t top_k;                  /* candidates the topk program returns (<= 256); 0 = 40 */
    int32_t f16;                    /* 1: the adapter has shader-f16: f16 arithmetic */
    int32_t unfused;                /* 1: one dispatch per graph op (tests the single kernels) */
    uint64_t max_binding_size;      /* maxStorageBufferBindingSize; 0 = 128 MiB */
    uint64_t max_buffer_size;       /* maxBufferSize; 0 = 256 MiB */
    uint32_t max_workgroup_storage; /* maxComputeWorkgroupStorageSize; 0 = 16 KiB */
    int32_t subgroups;              /* 1: the adapter has the subgroups feature */
    int32_t matvec_tpr;             /* tuning: decode threads per row (4..64, power of 2); 0 = auto */
    int32_t matvec_wg;              /* tuning: decode workgroup size (64..256); 0 = 64 */
    int32_t matmul_tile;            /* tuning: prefill outputs per thread, 44, 84 or 88 (rows x
                                     * tokens); 0 = by shape and workgroup memory */
} nbl_gpu_plan_opts;

void nbl_gpu_plan_opts_init(nbl_gpu_plan_opts *opt);

/* The model's forward pass as a WebGPU plan for web/gpu.js, as JSON (*out malloc'd,
 * NUL-terminated): buffers with the file ranges to upload into them, pipelines (shaders/ file +
 * defines) and dispatch lists for the step kinds decode, prefill, head, head_all, argmax, topk.
 * Fails (NBL_E_UNSUPPORTED / NBL_E_NOMEM) with a message naming the tensor or limit when the
 * model cannot run within opt's limits. opt may be NULL. */
nbl_status nbl_gpu_plan_json(const nbl_model *model, const nbl_gpu_plan_opts *opt, char **out,
                             nbl_error *err);

/* ---- helper tasks (tasks.c) ----------------------------------------------------------------
 * Short, private helper steps a small local model is good enough for: conversation titles,
 * quick replies, memory facts and request routing. Nothing is left to free-form generation:
 * titles pass through a title automaton, replies and facts through JSON Schema grammars, and
 * routing scores fixed labels by log-likelihood, so every result has the documented shape even
 * when the model is weak (or has random weights). Each prompt is a few-shot chat written for
 * small models. Tasks run in sessions owned by an nbl_tasks context (one per task kind, kept
 * between calls so the fixed few-shot prefix stays cached), never in a caller's session, so a
 * chat's KV cache is untouched. An nbl_tasks is used by one thread at a time. */

typedef struct nbl_tasks nbl_tasks;

typedef struct nbl_tasks_options {
    int32_t n_ctx;              /* context of each task session; 0 = 2048 */
    int32_t n_threads;          /* 0 = the model's default */
    int32_t shared_session;     /* 1: all tasks share one session (less memory, less caching) */
    nbl_forward_fn forward;     /* the task sessions' executor (see nbl_session_options) */
    void *forward_ctx;
    const char *template_name;  /* chat template; NULL = the model's own (copied) */
} nbl_tasks_options;

void nbl_tasks_options_init(nbl_tasks_options *o);
nbl_status nbl_tasks_new(nbl_model *model, const nbl_tasks_options *o, nbl_tasks **out,
                         nbl_error *err);
void nbl_tasks_free(nbl_tasks *t);

typedef struct nbl_task_params {
    nbl_sampler_params sampler; /* default: greedy (temperature 0) */
    int32_t max_tokens;  /* token budget; 0 = the task's default (title 24, replies 160,
                          * memory 200). Titles always end within it. For JSON tasks it is soft:
                          * past it only closing tokens (quotes, ] and }) are taken wherever the
                          * grammar allows one, and the schema's bounds cap the output hard. */
    int32_t max_items;   /* memory: most facts (1..16); 0 = 5 */
} nbl_task_params;

void nbl_task_params_init(nbl_task_params *p);

/* A title for the conversation (its first four turns): 1..max_words words (0 = 6, at most 12)
 * separated by single spaces, at most 80 bytes of valid UTF-8, no leading or trailing space, no
 * newline, no quotes (ASCII or typographic), no markdown characters, never ending in . , ; : -
 * These hold by construction. *out_title is malloc'd. */
nbl_status nbl_task_title(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                          int32_t max_words, const nbl_task_params *p, char **out_title,
                          nbl_error *err);

/* n (0 = 3, at most 8) short replies the user might send next, as a JSON array of strings, each
 * 1..60 characters (code points). Generated under a schema with exactly n items; afterwards
 * control characters become spaces, runs of spaces collapse, ends are trimmed, and empty
 * strings and duplicates (ignoring ASCII case and spacing) are dropped, so fewer than n may
 * come back. *out_json is malloc'd. */
nbl_status nbl_task_quick_replies(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                                  int32_t n, const nbl_task_params *p, char **out_json,
                                  nbl_error *err);

/* Facts about the user worth remembering, from the last six turns, as a JSON array (possibly
 * empty) of {"fact": string of 3..120 characters, "category": one of "identity", "preference",
 * "work", "location", "relationship", "health", "goal", "other", "confidence": number in
 * [0, 1]}. existing_json (may be NULL) lists facts already known: an array of strings or of
 * objects with a "fact" string; they are shown to the model, and any generated fact equal to
 * one of them or to an earlier one (ignoring ASCII case, punctuation and spacing) is dropped.
 * *out_json is malloc'd. */
nbl_status nbl_task_memory(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                           const char *existing_json, const nbl_task_params *p, char **out_json,
                           nbl_error *err);

typedef struct nbl_route {
    const char *id;               /* the label the model is scored on, e.g. "code" */
    const char *description;      /* one line shown to the model; may be NULL */
    const char *const *examples;  /* requests that belong to this route; may be NULL */
    int32_t n_examples;
} nbl_route;

typedef struct nbl_route_opts {
    float threshold;       /* the fallback is chosen when the top score is below it; 0 = never */
    const char *fallback;  /* id reported then (need not be a route); NULL: route = NULL */
    int32_t max_examples;  /* few-shot examples, taken round-robin over routes; 0 = 8, -1 = none */
    int32_t per_token;     /* 1: score by mean log-likelihood per label token, not the total */
} nbl_route_opts;

void nbl_route_opts_init(nbl_route_opts *o);

typedef struct nbl_route_result {
    int32_t best;       /* index of the top-scoring route; on equal scores the earliest */
    int32_t chosen;     /* best, or -1 when scores[best] < threshold (the fallback) */
    const char *route;  /* routes[chosen].id, or opts->fallback (borrowed, may be NULL) */
    float confidence;   /* scores[best] */
} nbl_route_result;

/* Classifies message without generating: the routing prompt (routes, examples, message) is
 * evaluated once, then each route's label continuation (the id's tokens followed by the
 * end-of-turn token) is scored by its log-likelihood, one forward pass per label token, with
 * the session cut back to the shared prompt between routes. Deterministic. scores (may be NULL)
 * receives a softmax over routes of the total log-likelihood (or the per-token mean); loglik
 * (may be NULL) the total natural-log likelihood of each label. At most 256 routes. */
nbl_status nbl_task_route(nbl_tasks *t, const char *message, const nbl_route *routes,
                          int32_t n_routes, const nbl_route_opts *o, nbl_route_result *r,
                          float *scores, double *loglik, nbl_error *err);

/* The routing prompt's tokens (as nbl_task_route evaluates them) and the tokens of route i's
 * label continuation, for inspection and checks. *out is malloc'd. */
nbl_status nbl_task_route_prompt(nbl_tasks *t, const char *message, const nbl_route *routes,
                                 int32_t n_routes, const nbl_route_opts *o, int32_t **out,
                                 int32_t *n_out, nbl_error *err);
nbl_status nbl_task_route_label(nbl_tasks *t, const nbl_route *route, int32_t **out,
                                int32_t *n_out, nbl_error *err);

/* Token counts of the last task call: prompt_tokens (the rendered few-shot prompt),
 * cached_tokens (of those, reused from the task session), completion_tokens (generated, or for
 * routing the label tokens evaluated). Zero before the first call. */
void nbl_tasks_last_usage(const nbl_tasks *t, nbl_usage *u);

/* Compiles an OpenAI response_format object ({"type": "text" | "json_object" | "json_schema",
 * "json_schema": {"schema": {...}}}) into a grammar. *out is NULL for "text". */
nbl_status nbl_grammar_from_response_format(const char *json, size_t len, nbl_grammar **out,
                                            nbl_error *err);

#ifdef __cplusplus
}
#endif
#endif
