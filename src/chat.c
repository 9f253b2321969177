/* chat.c — chat templates → prompt text. Rather than interpreting Jinja, each template family
 * (Qwen2.5, ChatML, Llama 3.x, Phi-3.x, Gemma 2) is written out in C and reproduces what Hugging
 * Face's Jinja rendering gives byte for byte. The renderer also reports which byte ranges are
 * template text, so the tokenizer can allow control tokens there and only there. */
#include "nbl_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum chat_family { FAM_CHATML, FAM_QWEN25, FAM_LLAMA3, FAM_LLAMA30, FAM_PHI3, FAM_GEMMA2 };

static const char *const family_names[] = {"chatml", "qwen2.5", "llama3", "llama3.0", "phi3",
                                           "gemma2"};

static const struct {
    const char *name;
    int fam;
} forced_names[] = {
    {"qwen2.5", FAM_QWEN25}, {"qwen2", FAM_QWEN25},   {"chatml", FAM_CHATML},
    {"llama3", FAM_LLAMA3},  {"llama3.1", FAM_LLAMA3}, {"llama3.2", FAM_LLAMA3},
    {"llama3.0", FAM_LLAMA30}, {"phi3", FAM_PHI3},    {"phi3.5", FAM_PHI3},
    {"gemma2", FAM_GEMMA2},  {"gemma", FAM_GEMMA2},
};

#define QWEN25_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

/* ---- recognition -------------------------------------------------------------------------- */

/* Template text with every whitespace run collapsed to one space, so markers are found however
 * the Jinja source was re-indented or re-wrapped (CRLF included). */
static char *normalise_ws(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    int in_ws = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            in_ws = 1;
            continue;
        }
        if (in_ws && k) o[k++] = ' ';
        in_ws = 0;
        o[k++] = (char)c;
    }
    o[k] = 0;
    return o;
}

/* Family of a template source: -1 when none is recognised (or on OOM). */
static int detect_family(const char *text) {
    if (!text) return -1;
    char *t = normalise_ws(text);
    if (!t) return -1;
    int fam = -1;
    if (strstr(t, "<|start_header_id|>")) {
        /* Llama 3.0 has no system header with the knowledge / today dates. */
        fam = strstr(t, "Cutting Knowledge Date") ? FAM_LLAMA3 : FAM_LLAMA30;
    } else if (strstr(t, "<start_of_turn>")) {
        fam = FAM_GEMMA2;
    } else if (strstr(t, "<|user|>") && strstr(t, "<|end|>")) {
        fam = FAM_PHI3;
    } else if (strstr(t, "<|im_start|>")) {
        fam = strstr(t, "You are Qwen, created by Alibaba Cloud.") ? FAM_QWEN25 : FAM_CHATML;
    }
    free(t);
    return fam;
}

const char *nbl_chat_detect(const char *template_text, int *recognised) {
    int fam = detect_family(template_text);
    if (recognised) *recognised = fam >= 0;
    return family_names[fam >= 0 ? fam : FAM_CHATML];
}

static int name_eq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

/* ---- output builder ----------------------------------------------------------------------- */

typedef struct out_buf {
    char *d;
    size_t n, cap;
    nbl_range *r; /* template ranges, merged when adjacent */
    size_t nr, rcap;
    int oom;
} out_buf;

static void ob_raw(out_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *d = realloc(b->d, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->n, s, n);
    b->n += n;
    b->d[b->n] = 0;
}

/* Template text: control tokens allowed. */
static void tmpl(out_buf *b, const char *s) {
    size_t n = strlen(s);
    if (!n || b->oom) return;
    if (b->nr && b->r[b->nr - 1].start + b->r[b->nr - 1].len == b->n) {
        b->r[b->nr - 1].len += n;
    } else {
        if (b->nr == b->rcap) {
            size_t rc = b->rcap ? b->rcap * 2 : 16;
            nbl_range *r = realloc(b->r, rc * sizeof *r);
            if (!r) {
                b->oom = 1;
                return;
            }
            b->r = r;
            b->rcap = rc;
        }
        b->r[b->nr].start = b->n;
        b->r[b->nr].len = n;
        b->nr++;
    }
    ob_raw(b, s, n);
}

/* Message text (content, and role names, which also come from the caller): never control. */
static void content(out_buf *b, const char *s, size_t n) { ob_raw(b, s, n); }
static void content_z(out_buf *b, const char *s) { ob_raw(b, s, strlen(s)); }

/* ---- Python str.strip(), which Jinja's trim filter is ------------------------------------- */

static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decodes the UTF-8 sequence at s[0..n); returns its length (1 for an invalid byte, with *cp
 * set to a non-space value so invalid bytes are never trimmed). */
static size_t dec_utf8(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

static void py_trim(const char *s, const char **start, size_t *len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), a = 0, e = n;
    while (a < n) {
        uint32_t cp;
        size_t l = dec_utf8(p + a, n - a, &cp);
        if (!py_space(cp)) break;
        a += l;
    }
    /* Walk back to the start of each trailing character. */
    while (e > a) {
        size_t b = e - 1;
        while (b > a && (p[b] & 0xC0) == 0x80 && e - b < 4) b--;
        uint32_t cp;
        size_t l = dec_utf8(p + b, e - b, &cp);
        if (l != e - b) { /* not one well-formed character: take the last byte alone */
            b = e - 1;
            l = dec_utf8(p + b, 1, &cp);
        }
        if (!py_space(cp)) break;
        e = b;
    }
    *start = s + a;
    *len = e - a;
}

static void content_trim(out_buf *b, const char *s) {
    const char *t;
    size_t n;
    py_trim(s, &t, &n);
    content(b, t, n);
}

/* ---- families ----------------------------------------------------------------------------- */

static int is_role(const nbl_chat_message *m, const char *r) { return strcmp(m->role, r) == 0; }

static void render_chatml(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen) {
    for (int32_t i = 0; i < n; i++) {
        tmpl(b, "<|im_start|>");
        content_z(b, m[i].role);
        tmpl(b, "\n");
        content_z(b, m[i].content);
        tmpl(b, "<|im_end|>\n");
    }
    if (gen) tmpl(b, "<|im_start|>assistant\n");
}

/* Qwen2.5-Instruct without tools: a default system prompt, ChatML turns, and consecutive "tool"
 * messages grouped into one user turn of <tool_response> blocks. Other roles render nothing. */
static void render_qwen25(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen) {
    if (is_role(&m[0], "system")) {
        tmpl(b, "<|im_start|>system\n");
        content_z(b, m[0].content);
        tmpl(b, "<|im_end|>\n");
    } else {
        tmpl(b, "<|im_start|>system\n" QWEN25_DEFAULT_SYSTEM "<|im_end|>\n");
    }
    for (int32_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i > 0) ||
            is_role(&m[i], "assistant")) {
            tmpl(b, "<|im_start|>");
            content_z(b, m[i].role);
            tmpl(b, "\n");
            content_z(b, m[i].content);
            tmpl(b, "<|im_end|>\n");
        } else if (is_role(&m[i], "tool")) {
            if (i == 0 || !is_role(&m[i - 1], "tool")) tmpl(b, "<|im_start|>user");
            tmpl(b, "\n<tool_response>\n");
            content_z(b, m[i].content);
            tmpl(b, "\n</tool_response>");
            if (i == n - 1 || !is_role(&m[i + 1], "tool")) tmpl(b, "<|im_end|>\n");
        }
    }
    if (gen) tmpl(b, "<|im_start|>assistant\n");
}

/* Jinja's tojson of a string: Python's json.dumps (ASCII only, \uXXXX otherwise, surrogate
 * pairs above U+FFFF) with <, >, & and ' escaped for HTML. */
static void content_tojson(out_buf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    content(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += dec_utf8(p + i, n - i, &cp);
        char e[16];
        const char *lit = NULL;
        switch (cp) {
        case '"': lit = "\\\""; break;
        case '\\': lit = "\\\\"; break;
        case '\n': lit = "\\n"; break;
        case '\r': lit = "\\r"; break;
        case '\t': lit = "\\t"; break;
        case '\b': lit = "\\b"; break;
        case '\f': lit = "\\f"; break;
        default: break;
        }
        if (lit) {
            content_z(b, lit);
        } else if (cp >= 0x20 && cp < 0x7F && cp != '<' && cp != '>' && cp != '&' && cp != '\'') {
            e[0] = (char)cp;
            content(b, e, 1);
        } else if (cp >= 0x10000) {
            cp -= 0x10000;
            snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            content_z(b, e);
        } else {
            snprintf(e, sizeof e, "\\u%04x", cp);
            content_z(b, e);
        }
    }
    content(b, "\"", 1);
}

static void llama3_turn(out_buf *b, const nbl_chat_message *m) {
    if (is_role(m, "tool") || is_role(m, "ipython")) {
        /* The template tests "content is iterable", which a string is: so it is JSON-quoted. */
        tmpl(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
        content_tojson(b, m->content);
    } else {
        tmpl(b, "<|start_header_id|>");
        content_z(b, m->role);
        tmpl(b, "<|end_header_id|>\n\n");
        content_trim(b, m->content);
    }
    tmpl(b, "<|eot_id|>");
}

/* Llama 3.1 / 3.2 without tools: a system header that always carries the dates, the first
 * system message (trimmed) inside it, then one header per message. */
static void render_llama3(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen,
                          const char *bos, const char *date) {
    tmpl(b, bos);
    int32_t first = 0;
    tmpl(b, "<|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: ");
    tmpl(b, date);
    tmpl(b, "\n\n");
    if (is_role(&m[0], "system")) {
        content_trim(b, m[0].content);
        first = 1;
    }
    tmpl(b, "<|eot_id|>");
    for (int32_t i = first; i < n; i++) llama3_turn(b, &m[i]);
    if (gen) tmpl(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_llama30(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen,
                           const char *bos) {
    for (int32_t i = 0; i < n; i++) {
        if (i == 0) tmpl(b, bos);
        tmpl(b, "<|start_header_id|>");
        content_z(b, m[i].role);
        tmpl(b, "<|end_header_id|>\n\n");
        content_trim(b, m[i].content);
        tmpl(b, "<|eot_id|>");
    }
    if (gen) tmpl(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Phi-3.x: empty system messages and unknown roles are dropped; without a generation prompt the
 * conversation is closed with the EOS text. */
static void render_phi3(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen,
                        const char *eos) {
    for (int32_t i = 0; i < n; i++) {
        const char *tag = NULL;
        if (is_role(&m[i], "system") && m[i].content[0]) tag = "<|system|>\n";
        else if (is_role(&m[i], "user")) tag = "<|user|>\n";
        else if (is_role(&m[i], "assistant")) tag = "<|assistant|>\n";
        if (!tag) continue;
        tmpl(b, tag);
        content_z(b, m[i].content);
        tmpl(b, "<|end|>\n");
    }
    if (gen) tmpl(b, "<|assistant|>\n");
    else tmpl(b, eos);
}

/* Gemma 2: no system role, strict user/model alternation (the template's own errors). */
static nbl_status render_gemma2(out_buf *b, const nbl_chat_message *m, int32_t n, int32_t gen,
                                const char *bos, nbl_error *err) {
    if (is_role(&m[0], "system"))
        return nbl_set_err(err, NBL_E_ARG, "chat template gemma2: System role not supported");
    tmpl(b, bos);
    for (int32_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user") != (i % 2 == 0))
            return nbl_set_err(err, NBL_E_ARG,
                               "chat template gemma2: Conversation roles must alternate "
                               "user/assistant/user/assistant/... (message %d is '%s')",
                               (int)i, m[i].role);
        tmpl(b, "<start_of_turn>");
        if (is_role(&m[i], "assistant")) tmpl(b, "model");
        else content_z(b, m[i].role);
        tmpl(b, "\n");
        content_trim(b, m[i].content);
        tmpl(b, "<end_of_turn>\n");
    }
    if (gen) tmpl(b, "<start_of_turn>model\n");
    return NBL_OK;
}

/* ---- entry points ------------------------------------------------------------------------- */

/* "26 Jul 2024": strftime's %d %b %Y in the C locale, without depending on the process locale. */
static void today_string(char out[32]) {
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tmv;
    if (t == (time_t)-1 || !localtime_r(&t, &tmv) || tmv.tm_mon < 0 || tmv.tm_mon > 11) {
        strcpy(out, "26 Jul 2024");
        return;
    }
    snprintf(out, 32, "%02d %s %04d", tmv.tm_mday, mon[tmv.tm_mon], tmv.tm_year + 1900);
}

nbl_status nbl_chat_render_ex(const char *template_text, const char *template_name,
                              const nbl_chat_render_opts *opts, const nbl_chat_message *msgs,
                              int32_t n_msgs, int32_t add_generation_prompt, char **out,
                              size_t *out_len, nbl_range **tmpl_ranges, size_t *n_ranges,
                              nbl_error *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (tmpl_ranges) *tmpl_ranges = NULL;
    if (n_ranges) *n_ranges = 0;
    if (!out) return nbl_set_err(err, NBL_E_ARG, "chat render: NULL output");
    if (n_msgs < 0 || (n_msgs > 0 && !msgs))
        return nbl_set_err(err, NBL_E_ARG, "chat render: bad message list (n_msgs %d)", (int)n_msgs);
    for (int32_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return nbl_set_err(err, NBL_E_ARG, "chat render: message %d has a NULL %s", (int)i,
                               msgs[i].role ? "content" : "role");

    int fam;
    int from_text = 0;
    if (template_name) {
        fam = -1;
        for (size_t i = 0; i < sizeof forced_names / sizeof forced_names[0]; i++)
            if (name_eq(template_name, forced_names[i].name)) fam = forced_names[i].fam;
        if (fam < 0)
            return nbl_set_err(err, NBL_E_ARG,
                               "unknown chat template '%s' (valid: qwen2.5, qwen2, chatml, llama3, "
                               "llama3.1, llama3.2, llama3.0, phi3, phi3.5, gemma2, gemma)",
                               template_name);
    } else {
        /* An unrecognised template falls back to ChatML, the most common format among small
         * instruct models; nbl_chat_detect tells callers when that happened. */
        fam = detect_family(template_text);
        from_text = fam >= 0;
        if (fam < 0) fam = FAM_CHATML;
    }

    /* Qwen2.5, Llama 3.x and Gemma 2 read messages[0], which Jinja refuses on an empty list. */
    if (n_msgs == 0 && (fam == FAM_QWEN25 || fam == FAM_LLAMA3 || fam == FAM_GEMMA2))
        return nbl_set_err(err, NBL_E_ARG, "chat template %s needs at least one message",
                           family_names[fam]);

    const char *bos = opts && opts->bos_token ? opts->bos_token
                      : fam == FAM_GEMMA2     ? "<bos>"
                                              : "<|begin_of_text|>";
    const char *eos = opts && opts->eos_token ? opts->eos_token : "<|endoftext|>";
    char today[32];
    const char *date = today;
    if (opts && opts->date_string) {
        date = opts->date_string;
    } else if (from_text && !strstr(template_text, "strftime_now")) {
        /* Llama 3.1's template has no clock and always says this date. */
        date = "26 Jul 2024";
    } else {
        today_string(today);
    }

    out_buf b = {0};
    nbl_status st = NBL_OK;
    switch (fam) {
    case FAM_QWEN25: render_qwen25(&b, msgs, n_msgs, add_generation_prompt); break;
    case FAM_LLAMA3: render_llama3(&b, msgs, n_msgs, add_generation_prompt, bos, date); break;
    case FAM_LLAMA30: render_llama30(&b, msgs, n_msgs, add_generation_prompt, bos); break;
    case FAM_PHI3: render_phi3(&b, msgs, n_msgs, add_generation_prompt, eos); break;
    case FAM_GEMMA2: st = render_gemma2(&b, msgs, n_msgs, add_generation_prompt, bos, err); break;
    default: render_chatml(&b, msgs, n_msgs, add_generation_prompt); break;
    }
    if (st == NBL_OK && !b.oom && !b.d) ob_raw(&b, "", 0);
    if (st == NBL_OK && b.oom) st = nbl_set_err(err, NBL_E_NOMEM, "chat render: out of memory");
    if (st != NBL_OK) {
        free(b.d);
        free(b.r);
        return st;
    }
    *out = b.d;
    if (out_len) *out_len = b.n;
    if (tmpl_ranges) {
        *tmpl_ranges = b.r;
        if (n_ranges) *n_ranges = b.nr;
    } else {
        free(b.r);
    }
    return NBL_OK;
}

/* Text of a model's special token for the template variables; "" when the model has none. */
static char *token_text(const nbl_model *model, int32_t id) {
    if (id < 0) return NULL;
    char buf[256];
    int32_t n = nbl_token_to_bytes(model, id, 1, buf, (int32_t)sizeof buf - 1);
    if (n < 0 || n >= (int32_t)sizeof buf) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    memcpy(s, buf, (size_t)n);
    s[n] = 0;
    return s;
}

static nbl_status render_for_model(const nbl_model *model, const char *template_name,
                                   const nbl_chat_message *msgs, int32_t n_msgs, int32_t gen,
                                   char **out, size_t *out_len, nbl_range **ranges,
                                   size_t *n_ranges, nbl_error *err) {
    nbl_chat_render_opts opts = {0};
    char *bos = NULL, *eos = NULL;
    const char *text = NULL;
    if (model) {
        nbl_model_info info;
        nbl_model_get_info(model, &info);
        bos = token_text(model, info.bos);
        eos = token_text(model, info.eos);
        /* A model without the token gets "" (Jinja renders an undefined bos_token as empty). */
        opts.bos_token = bos ? bos : "";
        opts.eos_token = eos ? eos : "";
        text = nbl_model_chat_template(model);
    }
    nbl_status st = nbl_chat_render_ex(text, template_name, model ? &opts : NULL, msgs, n_msgs,
                                       gen, out, out_len, ranges, n_ranges, err);
    free(bos);
    free(eos);
    return st;
}

nbl_status nbl_chat_render(const nbl_model *model, const char *template_name,
                           const nbl_chat_message *msgs, int32_t n_msgs,
                           int32_t add_generation_prompt, char **out, nbl_error *err) {
    return render_for_model(model, template_name, msgs, n_msgs, add_generation_prompt, out, NULL,
                            NULL, NULL, err);
}

nbl_status nbl_chat_tokenize(const nbl_model *model, const char *template_name,
                             const nbl_chat_message *msgs, int32_t n_msgs,
                             int32_t add_generation_prompt, int32_t **out, int32_t *n_out,
                             nbl_error *err) {
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (!model || !out || !n_out)
        return nbl_set_err(err, NBL_E_ARG, "chat tokenize: NULL model or output");
    const nbl_vocab *vocab = nbl_model_vocab(model);
    if (!vocab) return nbl_set_err(err, NBL_E_STATE, "chat tokenize: model has no vocabulary");
    char *text;
    size_t len, n_ranges;
    nbl_range *ranges;
    nbl_status st = render_for_model(model, template_name, msgs, n_msgs, add_generation_prompt,
                                     &text, &len, &ranges, &n_ranges, err);
    if (st != NBL_OK) return st;
    /* The template writes BOS itself where the model wants it, so add_bos is off. Byte-level
     * tokens cover at least one byte each; the margin covers a SentencePiece dummy prefix. */
    if (len > (size_t)INT32_MAX - 16) {
        st = nbl_set_err(err, NBL_E_ARG, "chat tokenize: conversation too long (%zu bytes)", len);
        goto done;
    }
    int32_t cap = (int32_t)len + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    for (int attempt = 0; attempt < 2 && ids; attempt++) {
        int32_t n = nbl_vocab_tokenize(vocab, text, len, 0, ranges, n_ranges, ids, cap, err);
        if (n < 0) {
            free(ids);
            st = err && err->code != NBL_OK ? err->code : NBL_E_FORMAT;
            goto done;
        }
        if (n <= cap) {
            *out = ids;
            *n_out = n;
            goto done;
        }
        int32_t *nids = realloc(ids, (size_t)n * sizeof *ids);
        if (!nids) free(ids);
        ids = nids;
        cap = n;
    }
    if (!ids) {
        st = nbl_set_err(err, NBL_E_NOMEM, "chat tokenize: out of memory");
    } else {
        free(ids);
        st = nbl_set_err(err, NBL_E_STATE, "chat tokenize: token count changed between calls");
    }
done:
    free(text);
    free(ranges);
    return st;
}
