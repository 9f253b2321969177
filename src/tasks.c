/* tasks.c — helper tasks for a small local model: conversation titles, quick replies, memory
 * facts and request routing. Every output is constrained (a title automaton, JSON Schema
 * grammars, or log-likelihood scoring of fixed labels), and tasks run in sessions of their own,
 * so a chat's KV cache is never touched. Few-shot prompts are written for 0.5B-class models. */
#include "nbl_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TK_TITLE, TK_REPLIES, TK_MEMORY, TK_ROUTE, TK_COUNT };

#define TITLE_MAX_BYTES 80
#define TITLE_MAX_WORD 32
#define REPLY_MAX_CHARS 60
#define FACT_MAX_CHARS 120
#define MAX_ROUTES 256

/* What the title automaton needs to know of a token that is complete UTF-8 on its own, so a
 * mask step costs O(1) per token instead of a walk over its bytes (see title_apply). */
typedef struct tprof {
    uint8_t simple;       /* 1: the summary below is exact; 0: walk the bytes */
    uint8_t lead_space, trail_space;
    uint8_t first_cls;    /* class of the first non-space character (C_*) */
    uint8_t last_cls;     /* L_* of the last non-space character */
    uint8_t runs;         /* runs of non-space characters (words or word parts) */
    uint8_t first_run, last_run, max_rest; /* bytes: first run, last run, longest after the first */
    uint8_t len;
} tprof;

/* Token texts, read once per context: the title automaton walks them, and the JSON tasks'
 * closing pressure needs the tokens made only of closing characters. */
typedef struct tok_table {
    int32_t n;
    uint32_t *off;      /* [n + 1] into bytes */
    char *bytes;
    uint8_t *bad;       /* [n]: 1 when the token can never be in a title */
    struct tprof *prof; /* [n]: the title automaton's summary of each token */
    uint32_t *closers;  /* bitsets: [0] tokens of only ']' and '}'; [1] '"' then only those */
    int32_t *eog;
    int32_t n_eog;
} tok_table;

struct nbl_tasks {
    nbl_model *m;
    nbl_tasks_options o;
    char *template_name;
    nbl_session *s[TK_COUNT];
    tok_table tt;
    int32_t n_words;   /* (n + 31) / 32 */
    uint32_t *bits;
    uint32_t *bits2;
    nbl_sample_buf buf;
    float *row;        /* [n_vocab]: saved prompt logits for routing */
    nbl_grammar *g_replies, *g_memory;
    int32_t g_replies_n, g_memory_n;
    nbl_usage usage; /* of the last call */
};

void nbl_tasks_last_usage(const nbl_tasks *t, nbl_usage *u) {
    if (t) *u = t->usage;
    else memset(u, 0, sizeof *u);
}

/* ---- small text buffer ----------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_cat(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal; UTF-8 passes through. */
static void sb_jstr(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c == '\n') {
            sb_put(b, "\\n", 2);
        } else if (c == '\t') {
            sb_put(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            sb_fmt(b, "\\u%04x", c);
        } else {
            sb_put(b, s + i, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Numbers as JSON: integers exactly, others with up to 6 fraction digits when that is exact
 * (confidences), else round-trip precision. */
static void sb_jnum(sbuf *b, double x) {
    if (!isfinite(x)) {
        sb_cat(b, "0");
        return;
    }
    if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        sb_fmt(b, "%.0f", x);
        return;
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.6f", x);
    if (strtod(tmp, NULL) != x) snprintf(tmp, sizeof tmp, "%.17g", x);
    else {
        size_t n = strlen(tmp);
        while (n > 0 && tmp[n - 1] == '0') tmp[--n] = 0;
        if (n > 0 && tmp[n - 1] == '.') tmp[--n] = 0;
    }
    sb_cat(b, tmp);
}

/* Compact JSON text of a parsed value. */
static void sb_json(sbuf *b, const nbl_json *j) {
    switch (j->type) {
    case NBL_JSON_NULL: sb_cat(b, "null"); break;
    case NBL_JSON_BOOL: sb_cat(b, j->b ? "true" : "false"); break;
    case NBL_JSON_NUMBER: sb_jnum(b, j->num); break;
    case NBL_JSON_STRING: sb_jstr(b, j->str, j->len); break;
    case NBL_JSON_ARRAY:
        sb_put(b, "[", 1);
        for (size_t i = 0; i < j->len; i++) {
            if (i) sb_put(b, ",", 1);
            sb_json(b, &j->items[i]);
        }
        sb_put(b, "]", 1);
        break;
    default:
        sb_put(b, "{", 1);
        for (size_t i = 0; i < j->len; i++) {
            if (i) sb_put(b, ",", 1);
            sb_jstr(b, j->keys[i], strlen(j->keys[i]));
            sb_put(b, ":", 1);
            sb_json(b, &j->items[i]);
        }
        sb_put(b, "}", 1);
    }
}

/* Length of the longest UTF-8-complete prefix of s[0..n) no longer than max bytes. */
static size_t utf8_cut(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* Appends text clipped to about head + tail bytes (the middle elided), with \r dropped, so a
 * long message cannot crowd the prompt. */
static void sb_clip(sbuf *b, const char *s, size_t head, size_t tail) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t')) n--;
    while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++, n--;
    size_t a = n, z = n;
    if (n > head + tail + 8) {
        a = utf8_cut(s, n, head);
        z = n - tail;
        while (z < n && ((unsigned char)s[z] & 0xC0) == 0x80) z++;
    }
    for (size_t i = 0; i < n; i++) {
        if (i == a && a < z) {
            sb_cat(b, " \xE2\x80\xA6 ");
            i = z - 1;
            continue;
        }
        if (s[i] != '\r') sb_put(b, s + i, 1);
    }
}

/* ---- context --------------------------------------------------------------------------------- */

void nbl_tasks_options_init(nbl_tasks_options *o) { memset(o, 0, sizeof *o); }

void nbl_task_params_init(nbl_task_params *p) {
    memset(p, 0, sizeof *p);
    nbl_sampler_params_init(&p->sampler);
}

void nbl_route_opts_init(nbl_route_opts *o) { memset(o, 0, sizeof *o); }

static int is_closer_text(const char *s, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (s[i] != ']' && s[i] != '}') return 0;
    return n > 0;
}

/* Bytes no title may contain: controls, quotes, markdown and bracket characters. */
static int title_bad_ascii(unsigned char c) {
    switch (c) {
    case '"': case '`': case '*': case '#': case '\\': case '|': case '<': case '>':
    case '{': case '}': case '[': case ']': case '~': case '^': case 0x7f: return 1;
    default: return c < 0x20;
    }
}

/* Characters a word may end with but a title may not. */
static int ascii_noend(unsigned char c) {
    switch (c) {
    case '.': case ',': case ';': case ':': case '-': case '/': case '(': case '&': case '+': case '@': return 1;
    default: return 0;
    }
}

static void title_profile(const char *s, int32_t n, tprof *p);

static nbl_status table_build(nbl_tasks *t, nbl_error *err) {
    tok_table *tt = &t->tt;
    nbl_model_info info;
    nbl_model_get_info(t->m, &info);
    const int32_t n = info.n_vocab, nt = nbl_vocab_size(t->m);
    char tmp[1100];
    size_t total = 0;
    tt->n = n;
    tt->off = malloc(((size_t)n + 1) * sizeof *tt->off);
    tt->bad = calloc((size_t)n, 1);
    tt->prof = calloc((size_t)n, sizeof *tt->prof);
    tt->eog = malloc((size_t)n * sizeof *tt->eog);
    t->n_words = (n + 31) / 32;
    tt->closers = calloc((size_t)t->n_words * 2, sizeof *tt->closers);
    t->bits = malloc((size_t)t->n_words * sizeof *t->bits);
    t->bits2 = malloc((size_t)t->n_words * sizeof *t->bits2);
    t->row = malloc((size_t)n * sizeof *t->row);
    if (!tt->off || !tt->bad || !tt->prof || !tt->eog || !tt->closers || !t->bits || !t->bits2 || !t->row)
        return nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory");
    for (int pass = 0; pass < 2; pass++) {
        total = 0;
        tt->n_eog = 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t l = 0;
            if (i < nt) {
                if (nbl_token_is_eog(t->m, i)) {
                    if (pass) tt->eog[tt->n_eog++] = i;
                } else {
                    l = nbl_token_to_bytes(t->m, i, 0, tmp, (int32_t)sizeof tmp);
                    if (l < 0 || l > (int32_t)sizeof tmp) l = 0;
                }
            }
            if (pass) {
                tt->off[i] = (uint32_t)total;
                memcpy(tt->bytes + total, tmp, (size_t)l);
                int bad = l == 0;
                for (int32_t k = 0; k < l && !bad; k++) bad = title_bad_ascii((unsigned char)tmp[k]);
                tt->bad[i] = (uint8_t)bad;
                if (!bad) title_profile(tmp, l, &tt->prof[i]);
                if (is_closer_text(tmp, (uint32_t)l)) tt->closers[i / 32] |= 1u << (i % 32);
                if (l > 0 && tmp[0] == '"' && (l == 1 || is_closer_text(tmp + 1, (uint32_t)l - 1)))
                    tt->closers[t->n_words + i / 32] |= 1u << (i % 32);
            }
            total += (size_t)l;
        }
        if (!pass) {
            tt->bytes = malloc(total + 1);
            if (!tt->bytes) return nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory");
        }
    }
    tt->off[n] = (uint32_t)total;
    return NBL_OK;
}

nbl_status nbl_tasks_new(nbl_model *model, const nbl_tasks_options *o, nbl_tasks **out,
                         nbl_error *err) {
    if (!model || !out) return nbl_set_err(err, NBL_E_ARG, "tasks: model and out are required");
    *out = NULL;
    nbl_tasks *t = calloc(1, sizeof *t);
    if (!t) return nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory");
    t->m = model;
    if (o) t->o = *o;
    if (t->o.n_ctx < 0 || t->o.n_threads < 0) {
        free(t);
        return nbl_set_err(err, NBL_E_ARG, "tasks: negative n_ctx or n_threads");
    }
    if (!t->o.n_ctx) t->o.n_ctx = 2048;
    nbl_status st = NBL_OK;
    if (t->o.template_name && !(t->template_name = strdup(t->o.template_name)))
        st = nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory");
    t->o.template_name = t->template_name;
    if (!st) st = table_build(t, err);
    if (st) {
        nbl_tasks_free(t);
        return st;
    }
    *out = t;
    return NBL_OK;
}

void nbl_tasks_free(nbl_tasks *t) {
    if (!t) return;
    for (int i = 0; i < TK_COUNT; i++) nbl_session_free(t->s[i]);
    free(t->tt.off);
    free(t->tt.bytes);
    free(t->tt.bad);
    free(t->tt.prof);
    free(t->tt.closers);
    free(t->tt.eog);
    free(t->bits);
    free(t->bits2);
    free(t->row);
    nbl_sample_buf_free(&t->buf);
    nbl_grammar_free(t->g_replies);
    nbl_grammar_free(t->g_memory);
    free(t->template_name);
    free(t);
}

static nbl_status task_session(nbl_tasks *t, int kind, nbl_session **out, nbl_error *err) {
    int slot = t->o.shared_session ? 0 : kind;
    if (!t->s[slot]) {
        nbl_session_options so;
        nbl_session_options_init(&so);
        so.n_ctx = t->o.n_ctx;
        so.n_threads = t->o.n_threads;
        so.forward = t->o.forward;
        so.forward_ctx = t->o.forward_ctx;
        nbl_status st = nbl_session_new(t->m, &so, &t->s[slot], err);
        if (st) return st;
    }
    *out = t->s[slot];
    return NBL_OK;
}

/* Evaluates prompt in s, reusing the longest cached prefix (at least one token is evaluated, so
 * the last row's logits are fresh). */
static nbl_status prefill(nbl_tasks *t, nbl_session *s, const int32_t *toks, int32_t n, nbl_error *err) {
    const int32_t *cached = nbl_session_tokens(s);
    int32_t keep = 0, pos = nbl_session_pos(s);
    while (keep < pos && keep < n - 1 && cached[keep] == toks[keep]) keep++;
    nbl_session_truncate(s, keep);
    memset(&t->usage, 0, sizeof t->usage);
    t->usage.prompt_tokens = n;
    t->usage.cached_tokens = keep;
    return nbl_session_eval(s, toks + keep, n - keep, 0, err);
}

/* ---- the title automaton ---------------------------------------------------------------------
 * A byte-level automaton for "1..max_words words separated by single spaces": valid UTF-8, no
 * controls, quotes, markdown or invisible/space characters, no apostrophe at a word's edge, and
 * no ending in . , ; : - (or the ideographic full stop). Caps per word and in total keep it
 * finite. Every reachable state can still be completed by one more letter, so forcing the end
 * at the budget always has a way out. */

enum { L_NONE, L_WORD, L_NOEND, L_APOS, L_SPACE };

typedef struct title_state {
    uint8_t words, wlen, total, need, lo, hi, last, clen;
    uint32_t cp;
} title_state;

static int cp_forbidden(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0xA0) || cp == 0xAB || cp == 0xBB || cp == 0xAD ||
           (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2018 && cp <= 0x201F) ||
           (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x2039 && cp <= 0x203A) ||
           (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || (cp >= 0x300C && cp <= 0x300F) ||
           cp == 0x301D || cp == 0x301E || cp == 0x301F || cp == 0xFEFF || cp == 0xFF02 ||
           cp == 0xFF07 || (cp >= 0xFFF9 && cp <= 0xFFFF) || (cp >= 0xE000 && cp <= 0xF8FF) ||
           cp >= 0xF0000;
}

static int cp_noend(uint32_t cp) { return cp == 0x3002 || cp == 0xFF0E || cp == 0x3001 || cp == 0xFF0C; }

/* Starts a character of clen bytes: checks the caps and counts a new word. */
static int title_start_char(title_state *s, int clen, int max_words) {
    if (s->wlen == 0) {
        if (s->words >= max_words) return 0;
    }
    if (s->wlen + clen > TITLE_MAX_WORD || s->total + clen > TITLE_MAX_BYTES) return 0;
    if (s->wlen == 0) s->words++;
    s->wlen = (uint8_t)(s->wlen + clen);
    s->total = (uint8_t)(s->total + clen);
    return 1;
}

static int title_step(title_state *s, unsigned char b, int max_words) {
    if (s->need) {
        if (b < s->lo || b > s->hi) return 0;
        s->cp = s->cp << 6 | (b & 0x3F);
        s->lo = 0x80, s->hi = 0xBF;
        if (--s->need) return 1;
        if (cp_forbidden(s->cp)) return 0;
        s->last = cp_noend(s->cp) ? L_NOEND : L_WORD;
        return 1;
    }
    if (b < 0x80) {
        if (title_bad_ascii(b)) return 0;
        if (b == ' ') {
            if (s->wlen == 0 || s->last == L_APOS || s->words >= max_words || s->total + 2 > TITLE_MAX_BYTES)
                return 0;
            s->wlen = 0;
            s->total++;
            s->last = L_SPACE;
            return 1;
        }
        if (b == '\'') {
            if (s->wlen == 0 || s->last != L_WORD) return 0;
        } else if (s->last == L_APOS && !((b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z'))) {
            return 0;
        }
        if (!title_start_char(s, 1, max_words)) return 0;
        s->last = b == '\'' ? L_APOS : ascii_noend(b) ? L_NOEND : L_WORD;
        return 1;
    }
    if (s->last == L_APOS) return 0; /* only an ASCII letter or digit follows an apostrophe */
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) len = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) len = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (!title_start_char(s, len, max_words)) return 0;
    s->need = (uint8_t)(len - 1);
    s->lo = lo, s->hi = hi;
    s->cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    return 1;
}

static int title_can_end(const title_state *s) {
    return s->words > 0 && s->wlen > 0 && !s->need && s->last == L_WORD;
}

/* 1 when no byte can follow (only the end is left). */
static int title_full(const title_state *s, int max_words) {
    for (int b = 1; b < 256; b++) {
        title_state c = *s;
        if (title_step(&c, (unsigned char)b, max_words)) return 0;
    }
    return 1;
}

static int title_run(const tok_table *tt, title_state *s, int32_t tok, int max_words) {
    if (tok < 0 || tok >= tt->n || tt->bad[tok]) return 0;
    for (uint32_t i = tt->off[tok]; i < tt->off[tok + 1]; i++)
        if (!title_step(s, (unsigned char)tt->bytes[i], max_words)) return 0;
    return 1;
}

enum { C_ALNUM, C_APOS, C_OTHER };

static int is_alnum_ascii(unsigned char b) {
    return (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z');
}

/* Summarises a token for title_apply; leaves simple = 0 for tokens that are partial UTF-8,
 * break a rule inside themselves, or are spaces only (the byte walk handles those). */
static void title_profile(const char *s, int32_t n, tprof *p) {
    memset(p, 0, sizeof *p);
    if (n <= 0 || n > 64) return;
    int prev = -1, in_run = 0, run_len = 0, runs = 0;
    tprof q = {0};
    q.lead_space = s[0] == ' ';
    for (int32_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        if (b == ' ') {
            if (prev == L_SPACE || prev == L_APOS) return;
            if (in_run) {
                if (runs == 1) q.first_run = (uint8_t)run_len;
                else if (run_len > q.max_rest) q.max_rest = (uint8_t)run_len;
                q.last_run = (uint8_t)run_len;
                in_run = 0;
            }
            prev = L_SPACE;
            i++;
            continue;
        }
        int clen = 1;
        uint32_t cp = b;
        if (b >= 0x80) {
            uint8_t lo = 0x80, hi = 0xBF;
            if (b >= 0xC2 && b <= 0xDF) clen = 2, cp = b & 0x1F;
            else if (b >= 0xE0 && b <= 0xEF) clen = 3, cp = b & 0x0F, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
            else if (b >= 0xF0 && b <= 0xF4) clen = 4, cp = b & 0x07, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
            else return;
            if (i + clen > n) return;
            for (int k = 1; k < clen; k++) {
                unsigned char c = (unsigned char)s[i + k];
                if (c < lo || c > hi) return;
                lo = 0x80, hi = 0xBF;
                cp = cp << 6 | (c & 0x3F);
            }
            if (cp_forbidden(cp)) return;
        } else if (title_bad_ascii(b)) {
            return;
        }
        int cls = b == '\'' ? C_APOS : b < 0x80 && is_alnum_ascii(b) ? C_ALNUM : C_OTHER;
        if (!in_run) {
            if (cls == C_APOS && (runs > 0 || q.lead_space)) return;
            if (++runs == 1) q.first_cls = (uint8_t)cls;
            in_run = 1;
            run_len = 0;
        }
        if (prev == L_APOS && cls != C_ALNUM) return;
        if (cls == C_APOS && prev != -1 && prev != L_WORD) return;
        run_len += clen;
        if (run_len > TITLE_MAX_WORD) return;
        prev = cls == C_APOS ? L_APOS : (b < 0x80 ? ascii_noend(b) : cp_noend(cp)) ? L_NOEND : L_WORD;
        i += clen;
    }
    if (in_run) {
        if (runs == 1) q.first_run = (uint8_t)run_len;
        else if (run_len > q.max_rest) q.max_rest = (uint8_t)run_len;
        q.last_run = (uint8_t)run_len;
    }
    if (runs == 0) return;
    q.runs = (uint8_t)runs;
    q.trail_space = s[n - 1] == ' ';
    q.last_cls = (uint8_t)(q.trail_space ? L_WORD : prev);
    q.len = (uint8_t)n;
    q.simple = 1;
    *p = q;
}

/* title_run for a simple token from a state between characters, in O(1). */
static int title_apply(title_state *s, const tprof *p, int max_words) {
    int words = s->words, wlen = s->wlen, last = s->last;
    if (p->lead_space) {
        if (wlen == 0 || last == L_APOS || words >= max_words) return 0;
        wlen = 0;
        last = L_SPACE;
    }
    if (wlen == 0) {
        if (p->first_cls == C_APOS || words >= max_words) return 0;
        words++;
    } else {
        if (last == L_APOS && p->first_cls != C_ALNUM) return 0;
        if (p->first_cls == C_APOS && last != L_WORD) return 0;
    }
    if (wlen + p->first_run > TITLE_MAX_WORD) return 0;
    if (p->runs == 1) {
        wlen += p->first_run;
    } else {
        words += p->runs - 1;
        if (words > max_words || p->max_rest > TITLE_MAX_WORD) return 0;
        wlen = p->last_run;
    }
    int total = s->total + p->len;
    if (total > TITLE_MAX_BYTES) return 0;
    if (p->trail_space) {
        if (words >= max_words || total + 1 > TITLE_MAX_BYTES) return 0;
        wlen = 0;
        last = L_SPACE;
    } else {
        last = p->last_cls;
    }
    s->words = (uint8_t)words;
    s->wlen = (uint8_t)wlen;
    s->total = (uint8_t)total;
    s->last = (uint8_t)last;
    return 1;
}

/* The allowed tokens; with must_end only those after which the title can end. */
static int32_t title_mask(const tok_table *tt, const title_state *s, int max_words, int must_end,
                          uint32_t *bits, int32_t words) {
    memset(bits, 0, (size_t)words * sizeof *bits);
    int32_t count = 0;
    if (title_can_end(s))
        for (int32_t i = 0; i < tt->n_eog; i++) {
            bits[tt->eog[i] / 32] |= 1u << (tt->eog[i] % 32);
            count++;
        }
    const int fast = s->need == 0;
    for (int32_t t = 0; t < tt->n; t++) {
        if (tt->bad[t]) continue;
        title_state c = *s;
        if (fast && tt->prof[t].simple ? !title_apply(&c, &tt->prof[t], max_words) : !title_run(tt, &c, t, max_words))
            continue;
        if (must_end && !title_can_end(&c)) continue;
        bits[t / 32] |= 1u << (t % 32);
        count++;
    }
    return count;
}

/* ---- the constrained generation loop --------------------------------------------------------- */

typedef struct constraint {
    nbl_grammar_matcher *gm; /* JSON tasks */
    title_state ts;          /* title (when gm is NULL) */
    int max_words;
} constraint;

static int is_eog(const tok_table *tt, int32_t tok) {
    for (int32_t i = 0; i < tt->n_eog; i++)
        if (tt->eog[i] == tok) return 1;
    return 0;
}

/* Generates under c after prompt; *out receives the text (malloc'd). budget: the title's hard
 * limit, or the JSON tasks' soft one. */
static nbl_status generate(nbl_tasks *t, nbl_session *s, const int32_t *prompt, int32_t n_prompt,
                           constraint *c, const nbl_task_params *p, int32_t budget, char **out,
                           nbl_error *err) {
    const tok_table *tt = &t->tt;
    const int32_t V = tt->n, n_ctx = nbl_session_n_ctx(s);
    *out = NULL;
    if (n_prompt + (c->gm ? 16 : budget) > n_ctx)
        return nbl_set_err(err, NBL_E_CONTEXT,
                           "tasks: the prompt (%d tokens) leaves too little of the %d-token context",
                           n_prompt, n_ctx);
    nbl_status st = prefill(t, s, prompt, n_prompt, err);
    if (st) return st;
    nbl_rng rng;
    nbl_rng_seed(&rng, p->sampler.seed);
    sbuf text = {0};
    sb_put(&text, "", 0);
    int in_str = 0, esc = 0; /* JSON lexical state of the text so far */
    for (int32_t i = 0;; i++) {
        const float *logits = nbl_session_logits(s, -1);
        int32_t count;
        if (c->gm) {
            count = nbl_grammar_matcher_mask(c->gm, t->bits);
            if (i >= budget && !esc) {
                /* Closing pressure: take a token that ends the open string, or closes arrays and
                 * objects, whenever the grammar allows one (a quote outside a string would open a
                 * new one, and ']' or '}' inside one is only text). */
                const uint32_t *cl = t->tt.closers + (in_str ? t->n_words : 0);
                int any = 0;
                for (int32_t w = 0; w < t->n_words; w++) {
                    t->bits2[w] = t->bits[w] & cl[w];
                    any |= t->bits2[w] != 0;
                }
                if (nbl_grammar_matcher_can_end(c->gm))
                    for (int32_t k = 0; k < tt->n_eog; k++) t->bits2[tt->eog[k] / 32] |= 1u << (tt->eog[k] % 32), any = 1;
                if (any) memcpy(t->bits, t->bits2, (size_t)t->n_words * sizeof *t->bits);
            }
        } else {
            count = title_mask(tt, &c->ts, c->max_words, i + 1 >= budget, t->bits, t->n_words);
        }
        if (count <= 0) {
            free(text.p);
            return nbl_set_err(err, NBL_E_STATE, "tasks: the constraint allows no token (internal error)");
        }
        int32_t tok = nbl_sample_allowed(&t->buf, logits, V, t->bits, &p->sampler, nbl_session_tokens(s),
                                         nbl_session_pos(s), &rng);
        if (tok < 0) {
            free(text.p);
            return nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory while sampling");
        }
        if (is_eog(tt, tok)) break;
        if (c->gm) {
            if ((st = nbl_grammar_matcher_accept(c->gm, tok, err))) {
                free(text.p);
                return st;
            }
        } else if (!title_run(tt, &c->ts, tok, c->max_words)) {
            free(text.p);
            return nbl_set_err(err, NBL_E_STATE, "tasks: title automaton refused its own token");
        }
        sb_put(&text, tt->bytes + tt->off[tok], tt->off[tok + 1] - tt->off[tok]);
        t->usage.completion_tokens++;
        for (uint32_t k = tt->off[tok]; k < tt->off[tok + 1]; k++) {
            char b = tt->bytes[k];
            if (esc) esc = 0;
            else if (in_str && b == '\\') esc = 1;
            else if (b == '"') in_str = !in_str;
        }
        int finished = c->gm ? nbl_grammar_matcher_done(c->gm) : title_full(&c->ts, c->max_words) || i + 1 >= budget;
        if (finished) break;
        if (nbl_session_pos(s) >= n_ctx) {
            free(text.p);
            return nbl_set_err(err, NBL_E_CONTEXT, "tasks: the %d-token context filled before the output was complete",
                               n_ctx);
        }
        if ((st = nbl_session_eval(s, &tok, 1, 0, err))) {
            free(text.p);
            return st;
        }
    }
    int ok = c->gm ? nbl_grammar_matcher_can_end(c->gm) || nbl_grammar_matcher_done(c->gm) : title_can_end(&c->ts);
    if (text.oom || !ok) {
        free(text.p);
        return text.oom ? nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory")
                        : nbl_set_err(err, NBL_E_STATE, "tasks: output incomplete (internal error)");
    }
    *out = text.p;
    return NBL_OK;
}

/* ---- prompts ----------------------------------------------------------------------------------- */

/* One few-shot example: the user turn and the answer. */
typedef struct shot {
    const char *in, *out;
} shot;

static const char *role_name(const char *role) {
    return !strcmp(role, "assistant") ? "Assistant" : !strcmp(role, "user") ? "User" : NULL;
}

/* "User: ...\nAssistant: ..." for messages [from, to); system and tool messages are skipped. */
static void transcript(sbuf *b, const nbl_chat_message *msgs, int32_t from, int32_t to, size_t user_head,
                       size_t asst_head, size_t tail) {
    int first = 1;
    for (int32_t i = from; i < to; i++) {
        const char *who = msgs[i].role ? role_name(msgs[i].role) : NULL;
        if (!who || !msgs[i].content) continue;
        if (!first) sb_cat(b, "\n");
        first = 0;
        sb_cat(b, who);
        sb_cat(b, ": ");
        sb_clip(b, msgs[i].content, who[0] == 'U' ? user_head : asst_head, tail);
    }
}

static nbl_status check_msgs(const nbl_chat_message *msgs, int32_t n, nbl_error *err) {
    if (!msgs || n <= 0) return nbl_set_err(err, NBL_E_ARG, "tasks: no messages");
    int any = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return nbl_set_err(err, NBL_E_ARG, "tasks: message %d has no role or content", (int)i);
        any |= role_name(msgs[i].role) != NULL;
    }
    if (!any) return nbl_set_err(err, NBL_E_ARG, "tasks: no user or assistant message");
    return NBL_OK;
}

/* Index of the first of the last k user/assistant messages. */
static int32_t last_k(const nbl_chat_message *msgs, int32_t n, int32_t k) {
    int32_t i = n;
    while (i > 0 && k > 0) {
        i--;
        if (role_name(msgs[i].role)) k--;
    }
    return i;
}

/* Renders system + shots + the final user turn with the chat template. */
static nbl_status render(nbl_tasks *t, const char *system, const shot *shots, int32_t n_shots,
                         const char *final_user, int32_t **toks, int32_t *n_toks, nbl_error *err) {
    nbl_chat_message *m = malloc(sizeof *m * (size_t)(2 * n_shots + 2));
    if (!m) return nbl_set_err(err, NBL_E_NOMEM, "tasks: out of memory");
    int32_t k = 0;
    m[k++] = (nbl_chat_message){"system", system};
    for (int32_t i = 0; i < n_shots; i++) {
        m[k++] = (nbl_chat_message){"user", shots[i].in};
        m[k++] = (nbl_chat_message){"assistant", shots[i].out};
    }
    m[k++] = (nbl_chat_message){"user", final_user};
    nbl_status st = nbl_chat_tokenize(t->m, t->template_name, m, k, 1, toks, n_toks, err);
    free(m);
    return st;
}

/* ---- title ---------------------------------------------------------------------------------- */

static const shot TITLE_SHOTS[] = {
    {"Conversation:\nUser: how do I fix ModuleNotFoundError: No module named 'requests'\nAssistant: The package "
     "is not installed in the Python environment you are running. Install it with pip install requests, then run "
     "the script again.",
     "Fixing a Missing Python Module"},
    {"Conversation:\nUser: plan a 3 day trip to Lisbon for me, I like food and old neighborhoods\nAssistant: Day 1: "
     "Alfama, the castle and a fado dinner. Day 2: Belém and its pastries. Day 3: a day trip to Sintra.",
     "Three Days in Lisbon"},
    {"Conversation:\nUser: can you help me write a polite email turning down a job offer?\nAssistant: Of course. "
     "Here is a short draft that thanks them and keeps the door open.",
     "Declining a Job Offer Politely"},
    {"Conversation:\nUser: Wie viele Kalorien hat eine Banane?\nAssistant: Eine mittelgroße Banane hat etwa 105 "
     "Kalorien.",
     "Kalorien einer Banane"},
};

nbl_status nbl_task_title(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                          int32_t max_words, const nbl_task_params *p, char **out_title,
                          nbl_error *err) {
    if (!t || !out_title) return nbl_set_err(err, NBL_E_ARG, "title: tasks and out_title are required");
    *out_title = NULL;
    nbl_status st = check_msgs(msgs, n_msgs, err);
    if (st) return st;
    if (max_words == 0) max_words = 6;
    if (max_words < 1 || max_words > 12) return nbl_set_err(err, NBL_E_ARG, "title: max_words %d is outside 1..12", max_words);
    nbl_task_params dp;
    if (!p) {
        nbl_task_params_init(&dp);
        p = &dp;
    }
    int32_t budget = p->max_tokens > 0 ? p->max_tokens : 24;
    /* The system prompt and examples stay fixed, so their tokens stay cached between calls;
     * a word limit other than the usual six is asked for after the conversation. */
    const char *system = "You write a title for a conversation. Reply with the title only: at most 6 words, in "
                         "the language of the conversation, no quotes, no final period.";
    sbuf u = {0};
    sb_cat(&u, "Conversation:\n");
    /* The title is about how the conversation started. */
    int32_t to = n_msgs, seen = 0;
    for (int32_t i = 0; i < n_msgs; i++)
        if (role_name(msgs[i].role) && ++seen == 4) {
            to = i + 1;
            break;
        }
    transcript(&u, msgs, 0, to, 400, 300, 0);
    if (max_words != 6) sb_fmt(&u, "\n\nUse at most %d word%s.", (int)max_words, max_words > 1 ? "s" : "");
    int32_t *toks = NULL, n_toks = 0;
    nbl_session *s = NULL;
    if (u.oom) st = nbl_set_err(err, NBL_E_NOMEM, "title: out of memory");
    if (!st) st = render(t, system, TITLE_SHOTS, 4, u.p, &toks, &n_toks, err);
    if (!st) st = task_session(t, TK_TITLE, &s, err);
    if (!st) {
        constraint c = {.max_words = max_words};
        st = generate(t, s, toks, n_toks, &c, p, budget, out_title, err);
    }
    free(toks);
    free(u.p);
    return st;
}

/* ---- quick replies ----------------------------------------------------------------------------- */

static const char *const REPLY_SHOTS[3][6] = {
    {"Conversation:\nUser: What's the capital of Australia?\nAssistant: It's Canberra, not Sydney. It was chosen as "
     "a compromise between Sydney and Melbourne.",
     "Why not Sydney?", "How big is Canberra?", "What is there to see?", "Tell me about Melbourne", "Thanks!"},
    {"Conversation:\nUser: my sourdough came out really dense\nAssistant: Dense sourdough usually means a weak "
     "starter or an underproofed dough. How active was your starter when you mixed?",
     "It doubled in about 6 hours", "How do I test my starter?", "How long should it proof?",
     "Could the flour be the problem?", "Thanks, I'll try again"},
    {"Conversation:\nUser: Can you recommend a sci-fi book?\nAssistant: Try The Left Hand of Darkness by Ursula K. Le "
     "Guin, a thoughtful classic about a world without fixed gender.",
     "What is it about?", "Something more action-packed?", "Is it part of a series?", "Any other Le Guin books?",
     "Thanks, adding it to my list"},
};

/* Lowercased ASCII letters and digits and non-ASCII bytes only: the key duplicates share. */
static char *norm_key(const char *s, size_t n) {
    char *k = malloc(n + 1);
    if (!k) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c >= '0' && c <= '9')) k[j++] = (char)c;
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') k[j++] = (char)(c | 0x20);
    }
    k[j] = 0;
    return k;
}

/* Control characters to spaces, runs of spaces to one, ends trimmed; in place, returns length. */
static size_t tidy(char *s, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f) c = ' ';
        if (c == ' ' && (j == 0 || s[j - 1] == ' ')) continue;
        s[j++] = c;
    }
    while (j > 0 && s[j - 1] == ' ') j--;
    s[j] = 0;
    return j;
}

typedef struct keyset {
    char **k;
    int32_t n, cap;
} keyset;

static void keys_free(keyset *ks) {
    for (int32_t i = 0; i < ks->n; i++) free(ks->k[i]);
    free(ks->k);
}

/* Adds the key of s unless present. 1 added, 0 duplicate, -1 out of memory. */
static int keys_add(keyset *ks, const char *s, size_t n) {
    char *k = norm_key(s, n);
    if (!k) return -1;
    for (int32_t i = 0; i < ks->n; i++)
        if (!strcmp(ks->k[i], k)) {
            free(k);
            return 0;
        }
    if (ks->n == ks->cap) {
        int32_t cap = ks->cap ? ks->cap * 2 : 8;
        char **p = realloc(ks->k, sizeof *p * (size_t)cap);
        if (!p) {
            free(k);
            return -1;
        }
        ks->k = p;
        ks->cap = cap;
    }
    ks->k[ks->n++] = k;
    return 1;
}

static nbl_status json_task(nbl_tasks *t, int kind, const char *schema, nbl_grammar **cache, int32_t *cache_n,
                            int32_t n, const char *system, const shot *shots, int32_t n_shots, const char *user,
                            const nbl_task_params *p, int32_t budget, char **text, nbl_error *err) {
    *text = NULL;
    if (!*cache || *cache_n != n) {
        nbl_grammar_free(*cache);
        *cache = nbl_grammar_new_json_schema(schema, strlen(schema), err);
        *cache_n = n;
        if (!*cache) return err ? err->code : NBL_E_NOMEM;
    }
    const nbl_grammar_vocab *gv = nbl_model_grammar_vocab(t->m, err);
    if (!gv) return err ? err->code : NBL_E_NOMEM;
    int32_t *toks = NULL, n_toks = 0;
    nbl_session *s = NULL;
    nbl_status st = render(t, system, shots, n_shots, user, &toks, &n_toks, err);
    if (!st) st = task_session(t, kind, &s, err);
    if (!st) {
        constraint c = {0};
        c.gm = nbl_grammar_matcher_new(*cache, gv, err);
        if (!c.gm) st = err ? err->code : NBL_E_NOMEM;
        else st = generate(t, s, toks, n_toks, &c, p, budget, text, err);
        nbl_grammar_matcher_free(c.gm);
    }
    free(toks);
    return st;
}

nbl_status nbl_replies_clean(const char *json, size_t len, char **out, nbl_error *err) {
    *out = NULL;
    nbl_json *j = nbl_json_parse(json, len, err);
    if (!j) return err ? err->code : NBL_E_FORMAT;
    if (j->type != NBL_JSON_ARRAY) {
        nbl_json_free(j);
        return nbl_set_err(err, NBL_E_FORMAT, "quick replies: not a JSON array");
    }
    sbuf o = {0};
    keyset ks = {0};
    sb_cat(&o, "[");
    int32_t kept = 0;
    for (size_t i = 0; i < j->len; i++) {
        nbl_json *it = &j->items[i];
        if (it->type != NBL_JSON_STRING) continue;
        size_t n = tidy(it->str, it->len);
        if (!n) continue;
        int r = keys_add(&ks, it->str, n);
        if (r < 0) o.oom = 1;
        if (r <= 0) continue;
        if (kept++) sb_cat(&o, ", ");
        sb_jstr(&o, it->str, n);
    }
    sb_cat(&o, "]");
    keys_free(&ks);
    nbl_json_free(j);
    if (o.oom) {
        free(o.p);
        return nbl_set_err(err, NBL_E_NOMEM, "quick replies: out of memory");
    }
    *out = o.p;
    return NBL_OK;
}

nbl_status nbl_task_quick_replies(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                                  int32_t n, const nbl_task_params *p, char **out_json,
                                  nbl_error *err) {
    if (!t || !out_json) return nbl_set_err(err, NBL_E_ARG, "quick replies: tasks and out_json are required");
    *out_json = NULL;
    nbl_status st = check_msgs(msgs, n_msgs, err);
    if (st) return st;
    if (n == 0) n = 3;
    if (n < 1 || n > 8) return nbl_set_err(err, NBL_E_ARG, "quick replies: n %d is outside 1..8", n);
    nbl_task_params dp;
    if (!p) {
        nbl_task_params_init(&dp);
        p = &dp;
    }
    char schema[200], system[300];
    snprintf(schema, sizeof schema,
             "{\"type\":\"array\",\"minItems\":%d,\"maxItems\":%d,\"items\":{\"type\":\"string\",\"minLength\":1,"
             "\"maxLength\":%d}}",
             (int)n, (int)n, REPLY_MAX_CHARS);
    snprintf(system, sizeof system,
             "You suggest replies the user could send next in a conversation. Reply with a JSON array of %d short, "
             "distinct messages written as the user, each under %d characters.",
             (int)n, REPLY_MAX_CHARS);
    /* The examples show as many replies as asked for (up to the five they have). */
    sbuf outs[3] = {{0}};
    shot shots[3];
    for (int i = 0; i < 3; i++) {
        sb_cat(&outs[i], "[");
        for (int k = 0; k < n && k < 5; k++) {
            if (k) sb_cat(&outs[i], ", ");
            sb_jstr(&outs[i], REPLY_SHOTS[i][1 + k], strlen(REPLY_SHOTS[i][1 + k]));
        }
        sb_cat(&outs[i], "]");
        shots[i] = (shot){REPLY_SHOTS[i][0], outs[i].p};
    }
    sbuf u = {0};
    sb_cat(&u, "Conversation:\n");
    transcript(&u, msgs, last_k(msgs, n_msgs, 4), n_msgs, 300, 200, 200);
    char *text = NULL;
    if (u.oom || outs[0].oom || outs[1].oom || outs[2].oom) st = nbl_set_err(err, NBL_E_NOMEM, "quick replies: out of memory");
    if (!st)
        st = json_task(t, TK_REPLIES, schema, &t->g_replies, &t->g_replies_n, n, system, shots, 3, u.p, p,
                       p->max_tokens > 0 ? p->max_tokens : 160, &text, err);
    for (int i = 0; i < 3; i++) free(outs[i].p);
    free(u.p);
    if (!st) st = nbl_replies_clean(text, strlen(text), out_json, err);
    free(text);
    return st;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static const char *const MEMORY_CATEGORIES[] = {"identity", "preference", "work",  "location",
                                                "relationship", "health",   "goal", "other"};

static const shot MEMORY_SHOTS[] = {
    {"Known facts: none\n\nConversation:\nUser: I'm a nurse in Leeds and I work nights, so I need quick dinner "
     "ideas.\nAssistant: Here are five dinners you can make in 15 minutes.",
     "[{\"fact\": \"Works as a nurse\", \"category\": \"work\", \"confidence\": 0.95}, {\"fact\": \"Lives in "
     "Leeds\", \"category\": \"location\", \"confidence\": 0.9}, {\"fact\": \"Works night shifts\", \"category\": "
     "\"work\", \"confidence\": 0.85}]"},
    {"Known facts: none\n\nConversation:\nUser: what's 17% of 240?\nAssistant: 17% of 240 is 40.8.", "[]"},
    {"Known facts:\n- Has a dog named Max\n\nConversation:\nUser: Max chewed my shoes again. Also I went vegetarian "
     "last month, any snack ideas?\nAssistant: Roasted chickpeas, hummus with vegetables, or yogurt with nuts.",
     "[{\"fact\": \"Is vegetarian\", \"category\": \"preference\", \"confidence\": 0.9}]"},
    {"Known facts: none\n\nConversation:\nUser: My sister Ana is visiting from Porto next week. I'm Tom, by the "
     "way.\nAssistant: Nice to meet you, Tom! What would you like to plan for her visit?",
     "[{\"fact\": \"Name is Tom\", \"category\": \"identity\", \"confidence\": 0.95}, {\"fact\": \"Has a sister "
     "named Ana who lives in Porto\", \"category\": \"relationship\", \"confidence\": 0.85}]"},
};

/* Adds the facts in existing_json (strings or objects with "fact") to ks and to the prompt. */
static nbl_status existing_facts(const char *existing_json, keyset *ks, sbuf *u, nbl_error *err) {
    nbl_json *e = NULL;
    if (existing_json && existing_json[0]) {
        e = nbl_json_parse(existing_json, strlen(existing_json), err);
        if (!e) return err ? err->code : NBL_E_FORMAT;
        if (e->type != NBL_JSON_ARRAY) {
            nbl_json_free(e);
            return nbl_set_err(err, NBL_E_ARG, "memory: existing facts must be a JSON array");
        }
    }
    int32_t shown = 0;
    for (size_t i = 0; e && i < e->len; i++) {
        const nbl_json *it = &e->items[i];
        if (it->type == NBL_JSON_OBJECT) it = nbl_json_get(it, "fact");
        if (!it || it->type != NBL_JSON_STRING) {
            nbl_json_free(e);
            return nbl_set_err(err, NBL_E_ARG, "memory: existing fact %zu is neither a string nor {\"fact\": string}", i);
        }
        if (keys_add(ks, it->str, it->len) < 0) {
            nbl_json_free(e);
            return nbl_set_err(err, NBL_E_NOMEM, "memory: out of memory");
        }
        /* The newest 30 are shown; all of them filter. */
        if (e->len - i <= 30) {
            sb_cat(u, shown++ ? "\n- " : "Known facts:\n- ");
            sb_clip(u, it->str, 100, 0);
        }
    }
    if (!shown) sb_cat(u, "Known facts: none");
    nbl_json_free(e);
    return NBL_OK;
}

nbl_status nbl_memory_clean(const char *json, size_t len, const char *existing_json, char **out,
                            nbl_error *err) {
    *out = NULL;
    keyset ks = {0};
    sbuf scratch = {0};
    nbl_status st = existing_facts(existing_json, &ks, &scratch, err);
    free(scratch.p);
    nbl_json *j = NULL;
    if (!st && !(j = nbl_json_parse(json, len, err))) st = err ? err->code : NBL_E_FORMAT;
    if (!st && j->type != NBL_JSON_ARRAY) st = nbl_set_err(err, NBL_E_FORMAT, "memory: not a JSON array");
    if (st) {
        keys_free(&ks);
        nbl_json_free(j);
        return st;
    }
    sbuf o = {0};
    sb_cat(&o, "[");
    int32_t kept = 0;
    for (size_t i = 0; i < j->len; i++) {
        nbl_json *it = &j->items[i];
        nbl_json *f = (nbl_json *)nbl_json_get(it, "fact");
        const nbl_json *c = nbl_json_get(it, "category"), *cf = nbl_json_get(it, "confidence");
        if (!f || f->type != NBL_JSON_STRING || !c || c->type != NBL_JSON_STRING || !cf || cf->type != NBL_JSON_NUMBER)
            continue;
        size_t n = tidy(f->str, f->len), chars = 0;
        for (size_t k = 0; k < n; k++) chars += ((unsigned char)f->str[k] & 0xC0) != 0x80;
        char *key = norm_key(f->str, n);
        int empty = !key || !key[0];
        free(key);
        if (empty || chars < 3) continue; /* nothing but punctuation, or too short once tidied */
        int r = keys_add(&ks, f->str, n);
        if (r < 0) o.oom = 1;
        if (r <= 0) continue;
        if (kept++) sb_cat(&o, ", ");
        sb_cat(&o, "{\"fact\": ");
        sb_jstr(&o, f->str, n);
        sb_cat(&o, ", \"category\": ");
        sb_jstr(&o, c->str, c->len);
        sb_cat(&o, ", \"confidence\": ");
        sb_jnum(&o, cf->num);
        sb_cat(&o, "}");
    }
    sb_cat(&o, "]");
    keys_free(&ks);
    nbl_json_free(j);
    if (o.oom) {
        free(o.p);
        return nbl_set_err(err, NBL_E_NOMEM, "memory: out of memory");
    }
    *out = o.p;
    return NBL_OK;
}

nbl_status nbl_task_memory(nbl_tasks *t, const nbl_chat_message *msgs, int32_t n_msgs,
                           const char *existing_json, const nbl_task_params *p, char **out_json,
                           nbl_error *err) {
    if (!t || !out_json) return nbl_set_err(err, NBL_E_ARG, "memory: tasks and out_json are required");
    *out_json = NULL;
    nbl_status st = check_msgs(msgs, n_msgs, err);
    if (st) return st;
    nbl_task_params dp;
    if (!p) {
        nbl_task_params_init(&dp);
        p = &dp;
    }
    int32_t max_items = p->max_items ? p->max_items : 5;
    if (max_items < 1 || max_items > 16) return nbl_set_err(err, NBL_E_ARG, "memory: max_items %d is outside 1..16", max_items);
    sbuf sc = {0};
    sb_fmt(&sc, "{\"type\":\"array\",\"maxItems\":%d,\"items\":{\"type\":\"object\",\"properties\":{", (int)max_items);
    sb_fmt(&sc, "\"fact\":{\"type\":\"string\",\"minLength\":3,\"maxLength\":%d},\"category\":{\"enum\":[", FACT_MAX_CHARS);
    for (size_t i = 0; i < sizeof MEMORY_CATEGORIES / sizeof *MEMORY_CATEGORIES; i++)
        sb_fmt(&sc, "%s\"%s\"", i ? "," : "", MEMORY_CATEGORIES[i]);
    sb_cat(&sc, "]},\"confidence\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
                "\"required\":[\"fact\",\"category\",\"confidence\"]}}");
    const char *system =
        "You pick out facts about the user that are worth remembering in future conversations: lasting details "
        "such as their name, work, home, preferences, relationships, health and goals. Skip questions, passing "
        "moods, one-off tasks and facts already known. Reply with a JSON array of objects with \"fact\" (a short "
        "statement about the user), \"category\" (identity, preference, work, location, relationship, health, goal "
        "or other) and \"confidence\" (0 to 1). Reply [] when there is nothing new worth remembering.";
    keyset ks = {0};
    sbuf u = {0};
    st = existing_facts(existing_json, &ks, &u, err);
    keys_free(&ks);
    char *text = NULL;
    if (!st) {
        sb_cat(&u, "\n\nConversation:\n");
        transcript(&u, msgs, last_k(msgs, n_msgs, 6), n_msgs, 500, 150, 100);
        if (u.oom || sc.oom) st = nbl_set_err(err, NBL_E_NOMEM, "memory: out of memory");
    }
    if (!st)
        st = json_task(t, TK_MEMORY, sc.p, &t->g_memory, &t->g_memory_n, max_items, system, MEMORY_SHOTS, 4, u.p, p,
                       p->max_tokens > 0 ? p->max_tokens : 200, &text, err);
    free(sc.p);
    free(u.p);
    if (!st) st = nbl_memory_clean(text, strlen(text), existing_json, out_json, err);
    free(text);
    return st;
}

/* ---- routing ----------------------------------------------------------------------------------- */

static nbl_status check_routes(const nbl_route *routes, int32_t n, nbl_error *err) {
    if (!routes || n <= 0) return nbl_set_err(err, NBL_E_ARG, "route: no routes");
    if (n > MAX_ROUTES) return nbl_set_err(err, NBL_E_ARG, "route: %d routes, at most %d", (int)n, MAX_ROUTES);
    for (int32_t i = 0; i < n; i++) {
        if (!routes[i].id || !routes[i].id[0]) return nbl_set_err(err, NBL_E_ARG, "route %d has no id", (int)i);
        if (strlen(routes[i].id) > 200) return nbl_set_err(err, NBL_E_ARG, "route %d: id longer than 200 bytes", (int)i);
        for (const char *c = routes[i].id; *c; c++)
            if ((unsigned char)*c < 0x20) return nbl_set_err(err, NBL_E_ARG, "route %d: id has a control character", (int)i);
        if (routes[i].n_examples < 0 || (routes[i].n_examples && !routes[i].examples))
            return nbl_set_err(err, NBL_E_ARG, "route %d: bad examples", (int)i);
    }
    return NBL_OK;
}

nbl_status nbl_task_route_prompt(nbl_tasks *t, const char *message, const nbl_route *routes,
                                 int32_t n_routes, const nbl_route_opts *o, int32_t **out,
                                 int32_t *n_out, nbl_error *err) {
    if (!t || !message || !out || !n_out) return nbl_set_err(err, NBL_E_ARG, "route: tasks, message and out are required");
    *out = NULL;
    *n_out = 0;
    nbl_status st = check_routes(routes, n_routes, err);
    if (st) return st;
    nbl_route_opts d;
    if (!o) {
        nbl_route_opts_init(&d);
        o = &d;
    }
    int32_t max_ex = o->max_examples == 0 ? 8 : o->max_examples < 0 ? 0 : o->max_examples;
    sbuf sys = {0};
    sb_cat(&sys, "Classify the request into one of these routes. Reply with the route name only.\n\nRoutes:");
    for (int32_t i = 0; i < n_routes; i++) {
        sb_cat(&sys, "\n- ");
        sb_cat(&sys, routes[i].id);
        if (routes[i].description && routes[i].description[0]) {
            sb_cat(&sys, ": ");
            sb_clip(&sys, routes[i].description, 200, 0);
        }
    }
    /* Examples round-robin over routes, so no route's examples crowd out the others'. */
    shot *shots = malloc(sizeof *shots * (size_t)(max_ex ? max_ex : 1));
    sbuf *ins = calloc((size_t)(max_ex ? max_ex : 1), sizeof *ins);
    int32_t n_shots = 0;
    for (int32_t round = 0; shots && ins && n_shots < max_ex; round++) {
        int any = 0;
        for (int32_t i = 0; i < n_routes && n_shots < max_ex; i++) {
            if (round >= routes[i].n_examples || !routes[i].examples[round]) continue;
            any = 1;
            sb_clip(&ins[n_shots], routes[i].examples[round], 300, 0);
            sb_put(&ins[n_shots], "", 0);
            shots[n_shots] = (shot){ins[n_shots].p, routes[i].id};
            n_shots++;
        }
        if (!any) break;
    }
    sbuf u = {0};
    sb_clip(&u, message, 600, 300);
    sb_put(&u, "", 0);
    int oom = !shots || !ins || sys.oom || u.oom;
    for (int32_t i = 0; i < n_shots; i++) oom |= ins[i].oom;
    if (oom) st = nbl_set_err(err, NBL_E_NOMEM, "route: out of memory");
    else st = render(t, sys.p, shots, n_shots, u.p, out, n_out, err);
    for (int32_t i = 0; ins && i < n_shots; i++) free(ins[i].p);
    free(ins);
    free(shots);
    free(sys.p);
    free(u.p);
    return st;
}

nbl_status nbl_task_route_label(nbl_tasks *t, const nbl_route *route, int32_t **out,
                                int32_t *n_out, nbl_error *err) {
    if (!t || !route || !route->id || !route->id[0] || !out || !n_out)
        return nbl_set_err(err, NBL_E_ARG, "route: a route with an id is required");
    *out = NULL;
    *n_out = 0;
    size_t len = strlen(route->id);
    int32_t n = nbl_tokenize(t->m, route->id, len, 0, NULL, 0, err);
    if (n <= 0) return n < 0 ? (err ? err->code : NBL_E_ARG) : nbl_set_err(err, NBL_E_ARG, "route: empty label");
    nbl_model_info info;
    nbl_model_get_info(t->m, &info);
    int32_t end = info.eot >= 0 ? info.eot : info.eos;
    int32_t *toks = malloc(sizeof *toks * (size_t)(n + 1));
    if (!toks) return nbl_set_err(err, NBL_E_NOMEM, "route: out of memory");
    nbl_tokenize(t->m, route->id, len, 0, toks, n, err);
    /* The end-of-turn token makes a label that is a prefix of another ("code", "code_review")
     * pay for stopping there. */
    if (end >= 0) toks[n++] = end;
    *out = toks;
    *n_out = n;
    return NBL_OK;
}

/* log(sum(exp(row))) in double. */
static double logsumexp(const float *row, int32_t n) {
    float mx = row[0];
    for (int32_t i = 1; i < n; i++)
        if (row[i] > mx) mx = row[i];
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)row[i] - mx);
    return mx + log(s);
}

nbl_status nbl_task_route(nbl_tasks *t, const char *message, const nbl_route *routes,
                          int32_t n_routes, const nbl_route_opts *o, nbl_route_result *r,
                          float *scores, double *loglik, nbl_error *err) {
    if (!r) return nbl_set_err(err, NBL_E_ARG, "route: result is required");
    memset(r, 0, sizeof *r);
    r->best = r->chosen = -1;
    nbl_route_opts d;
    if (!o) {
        nbl_route_opts_init(&d);
        o = &d;
    }
    if (!(o->threshold >= 0 && o->threshold <= 1.0f + 1e-6f))
        return nbl_set_err(err, NBL_E_ARG, "route: threshold must be in [0, 1]");
    int32_t *prompt = NULL, n_prompt = 0;
    nbl_status st = nbl_task_route_prompt(t, message, routes, n_routes, o, &prompt, &n_prompt, err);
    if (st) return st;
    int32_t **labels = calloc((size_t)n_routes, sizeof *labels), *n_label = calloc((size_t)n_routes, sizeof *n_label);
    double *ll = malloc(sizeof *ll * (size_t)n_routes), *meas = malloc(sizeof *meas * (size_t)n_routes);
    nbl_session *s = NULL;
    if (!labels || !n_label || !ll || !meas) st = nbl_set_err(err, NBL_E_NOMEM, "route: out of memory");
    int32_t max_label = 0;
    for (int32_t i = 0; !st && i < n_routes; i++) {
        st = nbl_task_route_label(t, &routes[i], &labels[i], &n_label[i], err);
        if (!st && n_label[i] > max_label) max_label = n_label[i];
    }
    if (!st) st = task_session(t, TK_ROUTE, &s, err);
    if (!st && n_prompt + max_label > nbl_session_n_ctx(s))
        st = nbl_set_err(err, NBL_E_CONTEXT, "route: the prompt (%d tokens) and labels do not fit the %d-token context",
                         n_prompt, nbl_session_n_ctx(s));
    if (!st) st = prefill(t, s, prompt, n_prompt, err);
    const int32_t V = t->tt.n;
    if (!st) {
        memcpy(t->row, nbl_session_logits(s, -1), sizeof *t->row * (size_t)V);
        const double lse0 = logsumexp(t->row, V);
        for (int32_t i = 0; !st && i < n_routes; i++) {
            const int32_t *L = labels[i], n = n_label[i];
            double sum = (double)t->row[L[0]] - lse0;
            if (n > 1) {
                /* Every label token but the last goes in, each row scoring the next one. */
                st = nbl_session_eval(s, L, n - 1, 1, err);
                for (int32_t k = 1; !st && k < n; k++) {
                    const float *row = nbl_session_logits(s, k - 1);
                    sum += (double)row[L[k]] - logsumexp(row, V);
                }
                nbl_session_truncate(s, n_prompt);
            }
            ll[i] = sum;
            meas[i] = o->per_token ? sum / n : sum;
            t->usage.completion_tokens += n - 1;
        }
    }
    if (!st) {
        int32_t best = 0;
        for (int32_t i = 1; i < n_routes; i++)
            if (meas[i] > meas[best]) best = i; /* strict: the earliest wins ties */
        double z = 0;
        for (int32_t i = 0; i < n_routes; i++) z += exp(meas[i] - meas[best]);
        for (int32_t i = 0; i < n_routes; i++) {
            float sc = (float)(exp(meas[i] - meas[best]) / z);
            if (scores) scores[i] = sc;
            if (loglik) loglik[i] = ll[i];
            if (i == best) r->confidence = sc;
        }
        r->best = best;
        r->chosen = r->confidence >= o->threshold ? best : -1;
        r->route = r->chosen >= 0 ? routes[best].id : o->fallback;
    }
    for (int32_t i = 0; labels && i < n_routes; i++) free(labels[i]);
    free(labels);
    free(n_label);
    free(ll);
    free(meas);
    free(prompt);
    return st;
}

/* ---- response_format ----------------------------------------------------------------------------- */

nbl_status nbl_grammar_from_response_format(const char *json, size_t len, nbl_grammar **out,
                                            nbl_error *err) {
    if (!out) return nbl_set_err(err, NBL_E_ARG, "response_format: out is required");
    *out = NULL;
    if (!json) return nbl_set_err(err, NBL_E_ARG, "response_format: missing");
    nbl_json *rf = nbl_json_parse(json, len, err);
    if (!rf) return err ? err->code : NBL_E_FORMAT;
    const nbl_json *type = nbl_json_get(rf, "type");
    nbl_status st = NBL_OK;
    if (rf->type != NBL_JSON_OBJECT || !type || type->type != NBL_JSON_STRING) {
        st = nbl_set_err(err, NBL_E_ARG, "response_format needs a string \"type\"");
    } else if (!strcmp(type->str, "text")) {
    } else if (!strcmp(type->str, "json_object")) {
        if (!(*out = nbl_grammar_new_json(err))) st = err ? err->code : NBL_E_NOMEM;
    } else if (!strcmp(type->str, "json_schema")) {
        const nbl_json *js = nbl_json_get(rf, "json_schema");
        const nbl_json *schema = js ? nbl_json_get(js, "schema") : NULL;
        if (!schema || schema->type != NBL_JSON_OBJECT) {
            st = nbl_set_err(err, NBL_E_ARG, "response_format json_schema needs json_schema.schema (an object)");
        } else {
            sbuf b = {0};
            sb_json(&b, schema);
            if (b.oom) st = nbl_set_err(err, NBL_E_NOMEM, "response_format: out of memory");
            else if (!(*out = nbl_grammar_new_json_schema(b.p, b.n, err))) st = err ? err->code : NBL_E_ARG;
            free(b.p);
        }
    } else {
        st = nbl_set_err(err, NBL_E_UNSUPPORTED, "response_format type \"%s\" is not supported", type->str);
    }
    nbl_json_free(rf);
    return st;
}
