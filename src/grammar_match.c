/* grammar_match.c — runs compiled grammars: a deterministic byte-level pushdown automaton
 * (one frame per open JSON value), the vocabulary's byte tries, and the per-step token mask,
 * which walks a trie together with the automaton so shared prefixes are checked once. */
#include "grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the automaton ------------------------------------------------------------------------- */

/* A frame is one open value. Fields by kind:
 *   F_OBJ / F_GOBJ: n = next property (schema) or members so far (generic), k = property being
 *                   written (schema) or nesting depth (generic), ws = space used
 *   F_ARR:          n = items so far, k = nesting depth (generic arrays), ws = space used
 *   F_STR:          n = code points so far; need / ulo / uhi = UTF-8 continuation bytes still
 *                   due and the range of the next one; x = \u escape with a leading 'd'
 *   F_NUM:          n = integer | fraction << 8 | exponent << 16 digit counts, x = negative;
 *                   v = |value| * 10^F (integer part only before the point), ranges only
 *   F_LIT:          n = bytes matched, k..v = range of candidates in the sorted set
 *   F_DISPATCH:     an any/union value before its first byte, k = nesting depth */
enum { F_DISPATCH, F_OBJ, F_GOBJ, F_ARR, F_STR, F_NUM, F_LIT };
enum { O_START, O_OPEN, O_KEY, O_COLON, O_AFTER_COLON, O_VAL, O_AFTER_VAL, O_AFTER_COMMA, O_DONE };
enum { A_START, A_OPEN, A_VAL, A_AFTER_VAL, A_AFTER_COMMA, A_DONE };
enum { S_START, S_BODY, S_ESC, S_U1, S_U2, S_U3, S_U4, S_DONE };
enum { NS_START, NS_MINUS, NS_ZERO, NS_INT, NS_DOT, NS_FRAC, NS_E, NS_ESIGN, NS_EXP };
enum { R_OK, R_REJECT, R_AGAIN, R_POP };

typedef struct gframe {
    uint16_t node;
    uint8_t kind, st;
    uint8_t ws, need, ulo, uhi;
    uint8_t x, pad[3];
    uint32_t n, k;
    int64_t v;
} gframe;

typedef struct mstate {
    int32_t h;
    int32_t pad;
    gframe f[MAXF];
} mstate;

typedef struct gctx {
    const nbl_grammar *g;
    const nbl_grammar_limits *lim;
} gctx;

static void init_frame(const nbl_grammar *g, gframe *f, int32_t node, uint32_t depth) {
    memset(f, 0, sizeof *f);
    f->node = (uint16_t)node;
    f->k = depth;
    switch (g->nodes[node].type) {
    case G_OBJECT: f->kind = F_OBJ; f->k = 0; break;
    case G_ARRAY: f->kind = F_ARR; f->k = 0; break;
    case G_STRING: f->kind = F_STR; break;
    case G_NUMBER: f->kind = F_NUM; break;
    case G_LITS:
        f->kind = F_LIT;
        f->k = 0;
        f->v = g->nodes[node].a - 1;
        break;
    default: f->kind = F_DISPATCH;
    }
}

static int push(const gctx *c, mstate *s, int32_t node, uint32_t depth) {
    if (s->h >= MAXF) return 0;
    init_frame(c->g, &s->f[s->h++], node, depth);
    return 1;
}

static int is_digit(uint8_t ch) { return ch >= '0' && ch <= '9'; }

static int is_hex(uint8_t ch) {
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static int32_t str_max(const gctx *c, const gnode *nd) {
    if (nd->c >= 0) return nd->c;
    return c->lim->max_string > nd->b ? c->lim->max_string : nd->b;
}

/* Do any of the values reachable from this number prefix fall in the node's range? */
static int num_feasible(const gnode *nd, const gframe *f, int64_t v, int ni, int nf, int dot,
                        int maxint) {
    const int F = (nd->flags & GF_INTEGER) ? 0 : RANGE_FRAC;
    int64_t lo = nd->lo, hi = nd->hi;
    if (f->x) { /* magnitudes of negative values */
        int64_t t = lo;
        lo = -hi;
        hi = -t;
    }
    if (dot) { /* v is scaled already; nf fraction digits are fixed */
        int64_t a = v, b = v + P10[F - nf] - 1;
        return a <= hi && b >= lo;
    }
    int jmax = v == 0 ? 0 : maxint - ni;
    for (int j = 0; j <= jmax; j++) {
        int64_t a = v * P10[j + F], b = (v + 1) * P10[j + F] - 1;
        if (a <= hi && b >= lo) return 1;
        if (a > hi) break;
    }
    return 0;
}

static int num_can_end(const gnode *nd, const gframe *f) {
    if (f->st != NS_ZERO && f->st != NS_INT && f->st != NS_FRAC && f->st != NS_EXP) return 0;
    if (!(nd->flags & GF_RANGE)) return 1;
    int64_t x = f->v;
    if (f->st != NS_FRAC && !(nd->flags & GF_INTEGER)) x *= P10[RANGE_FRAC];
    if (f->x) x = -x;
    return x >= nd->lo && x <= nd->hi;
}

static int feed_num(const gctx *c, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    const int integer = (nd->flags & GF_INTEGER) != 0, range = (nd->flags & GF_RANGE) != 0;
    const int F = integer ? 0 : range ? RANGE_FRAC : c->lim->max_frac_digits;
    const int maxint = range ? (integer ? 18 : 12) : c->lim->max_int_digits;
    const int maxexp = (integer || range) ? 0 : c->lim->max_exp_digits;
    int ni = f->n & 0xff, nf = (f->n >> 8) & 0xff, ne = (f->n >> 16) & 0xff;
    switch (f->st) {
    case NS_START:
        if (ch == '-') {
            if (range && nd->lo >= 0) return R_REJECT;
            f->x = 1;
            f->st = NS_MINUS;
            return R_OK;
        }
        /* fall through */
    case NS_MINUS:
    case NS_INT:
        if (!is_digit(ch)) break;
        if (ni >= maxint) return R_REJECT;
        if (range) {
            int64_t nv = f->v * 10 + (ch - '0');
            if (!num_feasible(nd, f, nv, ni + 1, 0, 0, maxint)) return R_REJECT;
            f->v = nv;
        }
        f->st = (ni == 0 && ch == '0') ? NS_ZERO : NS_INT;
        f->n++;
        return R_OK;
    case NS_DOT:
    case NS_FRAC:
        if (!is_digit(ch)) break;
        if (nf >= F) return R_REJECT;
        if (range) {
            int64_t nv = f->v + (int64_t)(ch - '0') * P10[F - nf - 1];
            if (!num_feasible(nd, f, nv, ni, nf + 1, 1, maxint)) return R_REJECT;
            f->v = nv;
        }
        f->st = NS_FRAC;
        f->n += 1u << 8;
        return R_OK;
    case NS_E:
        if (ch == '+' || ch == '-') {
            f->st = NS_ESIGN;
            return R_OK;
        }
        /* fall through */
    case NS_ESIGN:
    case NS_EXP:
        if (!is_digit(ch)) break;
        if (ne >= maxexp) return R_REJECT;
        f->st = NS_EXP;
        f->n += 1u << 16;
        return R_OK;
    }
    if (ch == '.' && (f->st == NS_ZERO || f->st == NS_INT)) {
        if (F == 0) return R_REJECT;
        if (range) {
            int64_t nv = f->v * P10[F];
            if (!num_feasible(nd, f, nv, ni, 0, 1, maxint)) return R_REJECT;
            f->v = nv;
        }
        f->st = NS_DOT;
        return R_OK;
    }
    if ((ch == 'e' || ch == 'E') && maxexp > 0 &&
        (f->st == NS_ZERO || f->st == NS_INT || f->st == NS_FRAC)) {
        f->st = NS_E;
        return R_OK;
    }
    return num_can_end(nd, f) ? R_POP : R_REJECT;
}

static int feed_str(const gctx *c, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    switch (f->st) {
    case S_START:
        if (ch != '"') return R_REJECT;
        f->st = S_BODY;
        return R_OK;
    case S_BODY:
        if (f->need) {
            if (ch < f->ulo || ch > f->uhi) return R_REJECT;
            f->need--;
            f->ulo = 0x80;
            f->uhi = 0xBF;
            return R_OK;
        }
        if (ch == '"') {
            if ((int32_t)f->n < nd->b) return R_REJECT;
            f->st = S_DONE;
            return R_OK;
        }
        if (ch < 0x20 || (int32_t)f->n >= str_max(c, nd)) return R_REJECT;
        if (ch == '\\') {
            f->st = S_ESC;
        } else if (ch >= 0x80) {
            f->ulo = 0x80;
            f->uhi = 0xBF;
            if (ch >= 0xC2 && ch <= 0xDF) f->need = 1;
            else if (ch >= 0xE0 && ch <= 0xEF) f->need = 2;
            else if (ch >= 0xF0 && ch <= 0xF4) f->need = 3;
            else return R_REJECT;
            if (ch == 0xE0) f->ulo = 0xA0;
            if (ch == 0xED) f->uhi = 0x9F;
            if (ch == 0xF0) f->ulo = 0x90;
            if (ch == 0xF4) f->uhi = 0x8F;
        }
        f->n++;
        return R_OK;
    case S_ESC:
        if (ch == 'u') {
            f->st = S_U1;
            return R_OK;
        }
        if (!strchr("\"\\/bfnrt", ch) || !ch) return R_REJECT;
        f->st = S_BODY;
        return R_OK;
    case S_U1:
    case S_U2:
    case S_U3:
    case S_U4:
        /* No surrogates (\uD800-\uDFFF): a lone one is invalid and pairs are not worth the state. */
        if (!is_hex(ch) || (f->st == S_U2 && f->x && !(ch >= '0' && ch <= '7'))) return R_REJECT;
        f->x = f->st == S_U1 && (ch == 'd' || ch == 'D');
        f->st = f->st == S_U4 ? S_BODY : f->st + 1;
        return R_OK;
    default:
        return R_POP;
    }
}

/* Key filter of a G_OBJECT's key set: properties p..kmax may come next. */
static void key_window(const gctx *c, const mstate *s, int32_t *kmin, int32_t *kmax) {
    const gframe *par = &s->f[s->h - 2];
    const gnode *pn = &c->g->nodes[par->node];
    int32_t p = (int32_t)par->n, r = c->g->ints[pn->d + p];
    *kmin = p;
    *kmax = r < pn->a - 1 ? r : pn->a - 1;
}

static int lits_alive(const glit *l, uint32_t a, uint32_t b, int32_t kmin, int32_t kmax) {
    for (uint32_t i = a; i <= b; i++)
        if (l[i].tag >= kmin && l[i].tag <= kmax) return 1;
    return 0;
}

static int feed_lit(const gctx *c, const mstate *s, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    const glit *l = c->g->lits + nd->b;
    const char *pool = c->g->pool;
    uint32_t pos = f->n, lo = f->k, hi = (uint32_t)f->v;
    int32_t kmin = INT32_MIN, kmax = INT32_MAX;
    if ((nd->flags & GF_KEYS) && s->h >= 2) key_window(c, s, &kmin, &kmax);
    uint32_t i = lo + (l[lo].len == pos); /* a complete candidate sorts first */
    if (i <= hi) {
        /* Candidates i..hi share pos bytes and are sorted by the next one. */
        uint32_t a = i, b = hi + 1;
        while (a < b) {
            uint32_t m = a + (b - a) / 2;
            if ((uint8_t)pool[l[m].off + pos] < ch) a = m + 1;
            else b = m;
        }
        uint32_t first = a;
        b = hi + 1;
        while (a < b) {
            uint32_t m = a + (b - a) / 2;
            if ((uint8_t)pool[l[m].off + pos] <= ch) a = m + 1;
            else b = m;
        }
        if (first < a && lits_alive(l, first, a - 1, kmin, kmax)) {
            f->k = first;
            f->v = a - 1;
            f->n++;
            return R_OK;
        }
    }
    if (l[lo].len == pos && lits_alive(l, lo, lo, kmin, kmax)) return R_POP;
    return R_REJECT;
}

static int lit_complete(const gctx *c, const mstate *s, const gframe *f) {
    const gnode *nd = &c->g->nodes[f->node];
    const glit *l = c->g->lits + nd->b;
    if (nd->a == 0 || l[f->k].len != f->n) return 0;
    int32_t kmin = INT32_MIN, kmax = INT32_MAX;
    if ((nd->flags & GF_KEYS) && s->h >= 2) key_window(c, s, &kmin, &kmax);
    return lits_alive(l, f->k, f->k, kmin, kmax);
}

static int feed_obj(const gctx *c, mstate *s, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    const int generic = f->kind == F_GOBJ;
    const int32_t np = generic ? c->lim->max_items : nd->a;
    const int32_t *rq = generic ? NULL : c->g->ints + nd->d;
    switch (f->st) {
    case O_START:
        if (ch != '{') return R_REJECT;
        f->st = O_OPEN;
        return R_OK;
    case O_OPEN:
    case O_AFTER_COMMA:
        if (ch == ' ' && f->st == O_AFTER_COMMA && c->lim->space && !f->ws) {
            f->ws = 1;
            return R_OK;
        }
        if (ch == '}' && f->st == O_OPEN && (generic || rq[0] == np)) {
            f->st = O_DONE;
            return R_OK;
        }
        if (ch != '"' || (int32_t)f->n >= np) return R_REJECT;
        f->st = O_KEY;
        if (!push(c, s, generic ? N_STR : nd->c, 0)) return R_REJECT;
        return R_AGAIN;
    case O_COLON:
        if (ch != ':') return R_REJECT;
        f->st = O_AFTER_COLON;
        f->ws = 0;
        return R_OK;
    case O_AFTER_COLON:
        if (ch == ' ' && c->lim->space && !f->ws) {
            f->ws = 1;
            return R_OK;
        }
        f->st = O_VAL;
        if (!push(c, s, generic ? N_ANY : c->g->props[nd->b + f->k].node, generic ? f->k : 0))
            return R_REJECT;
        return R_AGAIN;
    case O_AFTER_VAL:
        if (ch == ',' && (int32_t)f->n < np) {
            f->st = O_AFTER_COMMA;
            f->ws = 0;
            return R_OK;
        }
        if (ch == '}' && (generic || rq[f->n] == np)) {
            f->st = O_DONE;
            return R_OK;
        }
        return R_REJECT;
    case O_DONE:
        return R_POP;
    }
    return R_REJECT;
}

static int feed_arr(const gctx *c, mstate *s, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    const int generic = nd->type != G_ARRAY;
    const int32_t mn = generic ? 0 : nd->b;
    int32_t mx = generic ? c->lim->max_items : nd->c;
    if (mx < 0) mx = c->lim->max_items > mn ? c->lim->max_items : mn;
    switch (f->st) {
    case A_START:
        if (ch != '[') return R_REJECT;
        f->st = A_OPEN;
        return R_OK;
    case A_OPEN:
    case A_AFTER_COMMA:
        if (ch == ' ' && f->st == A_AFTER_COMMA && c->lim->space && !f->ws) {
            f->ws = 1;
            return R_OK;
        }
        if (ch == ']' && f->st == A_OPEN) {
            if (mn > 0) return R_REJECT;
            f->st = A_DONE;
            return R_OK;
        }
        if ((int32_t)f->n >= mx) return R_REJECT;
        f->st = A_VAL;
        if (!push(c, s, generic ? N_ANY : nd->a, generic ? f->k : 0)) return R_REJECT;
        return R_AGAIN;
    case A_AFTER_VAL:
        if (ch == ',' && (int32_t)f->n < mx) {
            f->st = A_AFTER_COMMA;
            f->ws = 0;
            return R_OK;
        }
        if (ch == ']' && (int32_t)f->n >= mn) {
            f->st = A_DONE;
            return R_OK;
        }
        return R_REJECT;
    case A_DONE:
        return R_POP;
    }
    return R_REJECT;
}

/* An any/union value meets its first byte, which decides what it is. */
static int feed_dispatch(const gctx *c, mstate *s, gframe *f, uint8_t ch) {
    const gnode *nd = &c->g->nodes[f->node];
    int kind = ch == '{' ? K_OBJ : ch == '[' ? K_ARR : ch == '"' ? K_STR
             : (ch == '-' || is_digit(ch)) ? K_NUM : (ch == 't' || ch == 'f') ? K_BOOL
             : ch == 'n' ? K_NULL : 0;
    if (!kind) return R_REJECT;
    if (nd->type == G_UNION) {
        int32_t alt = kind == K_OBJ ? nd->a : kind == K_ARR ? nd->b : kind == K_STR ? nd->c
                    : kind == K_NUM ? nd->d : nd->e;
        if (alt < 0) return R_REJECT;
        init_frame(c->g, f, alt, 0);
        return R_AGAIN;
    }
    if (!(nd->flags & kind)) return R_REJECT;
    uint32_t depth = f->k;
    if (kind == K_OBJ || kind == K_ARR) {
        /* Past the depth cap only scalars may open; the container's child needs a frame. */
        if ((int32_t)depth >= c->lim->max_depth || s->h >= MAXF) return R_REJECT;
        memset(f, 0, sizeof *f);
        f->node = N_ANY;
        f->kind = kind == K_OBJ ? F_GOBJ : F_ARR;
        f->k = depth + 1;
        return R_AGAIN;
    }
    init_frame(c->g, f, kind == K_STR ? N_STR : kind == K_NUM ? N_NUM : N_TFN, 0);
    return R_AGAIN;
}

static void child_done(const gctx *c, gframe *par, const gframe *ch) {
    if (par->kind == F_ARR) {
        par->st = A_AFTER_VAL;
        par->n++;
        return;
    }
    if (par->st == O_KEY) {
        if (par->kind == F_OBJ) {
            const gnode *kn = &c->g->nodes[ch->node];
            par->k = (uint32_t)c->g->lits[kn->b + ch->k].tag;
            par->n = par->k + 1;
        }
        par->st = O_COLON;
        return;
    }
    par->st = O_AFTER_VAL;
    if (par->kind == F_GOBJ) par->n++;
}

/* Feeds one byte; 0 when the grammar refuses it (s is then garbage: callers work on copies). */
static int step(const gctx *c, mstate *s, uint8_t ch) {
    for (;;) {
        gframe *f = &s->f[s->h - 1];
        int r;
        switch (f->kind) {
        case F_STR: r = feed_str(c, f, ch); break;
        case F_NUM: r = feed_num(c, f, ch); break;
        case F_LIT: r = feed_lit(c, s, f, ch); break;
        case F_OBJ:
        case F_GOBJ: r = feed_obj(c, s, f, ch); break;
        case F_ARR: r = feed_arr(c, s, f, ch); break;
        default: r = feed_dispatch(c, s, f, ch);
        }
        if (r == R_OK) return 1;
        if (r == R_REJECT) return 0;
        if (r == R_POP) {
            if (s->h == 1) return 0;
            child_done(c, &s->f[s->h - 2], f);
            s->h--;
        }
    }
}

static int state_can_end(const gctx *c, const mstate *s) {
    if (s->h != 1) return 0;
    const gframe *f = &s->f[0];
    switch (f->kind) {
    case F_OBJ:
    case F_GOBJ: return f->st == O_DONE;
    case F_ARR: return f->st == A_DONE;
    case F_STR: return f->st == S_DONE;
    case F_NUM: return num_can_end(&c->g->nodes[f->node], f);
    case F_LIT: return lit_complete(c, s, f);
    }
    return 0;
}

static inline void state_copy(mstate *dst, const mstate *src) {
    dst->h = src->h;
    memcpy(dst->f, src->f, (size_t)src->h * sizeof(gframe));
}

/* ---- vocabulary ---------------------------------------------------------------------------- */

/* A byte trie flattened in preorder: node i spells byte[i] at depth[i] (1-based), its subtree
 * ends just before skip[i], and tok[i] is the first token spelled by the path (-1: none), the
 * others with the same bytes chained through dup_next. A refused byte skips the subtree. */
typedef struct gtrie {
    uint32_t n;
    uint8_t *byte;
    uint16_t *depth;
    uint32_t *skip;
    int32_t *tok;
} gtrie;

struct nbl_grammar_vocab {
    int32_t n_vocab, max_len;
    uint32_t *off;    /* [n_vocab + 1] into bytes */
    char *bytes;
    uint8_t *is_eog;  /* [n_vocab] */
    int32_t *eog;
    int32_t n_eog;
    int32_t *dup_next;
    gtrie all;        /* every token with text */
    gtrie impure;     /* the tokens that are neither pure nor continuations (see below) */
    /* "Pure" tokens: well-formed UTF-8 starting on a character boundary (possibly ending inside
     * a character), without '"', '\\' or control bytes. Inside a string at a character boundary
     * such a token is allowed iff its character count fits the remaining length, so the mask
     * needs no walk for them. Sorted by count. */
    int32_t *pure_ids;
    uint16_t *pure_cnt;
    int32_t n_pure, pure_max;
    uint32_t *pure_bits;
    /* "Continuations": 1-3 UTF-8 continuation bytes, then pure text (byte-level BPE splits
     * characters, so these are many). Inside a string in the middle of a character they are
     * decided by their first byte, continuation count and character count. */
    struct gcont {
        int32_t id;
        uint16_t cnt;
        uint8_t lc, b0, all; /* all: nothing after the continuation bytes */
    } *cont;
    int32_t n_cont;
};

int32_t nbl_grammar_vocab_size(const nbl_grammar_vocab *v) { return v ? v->n_vocab : 0; }

static void trie_free(gtrie *t) {
    free(t->byte);
    free(t->depth);
    free(t->skip);
    free(t->tok);
}

void nbl_grammar_vocab_free(nbl_grammar_vocab *v) {
    if (!v) return;
    free(v->off);
    free(v->bytes);
    free(v->is_eog);
    free(v->eog);
    free(v->dup_next);
    trie_free(&v->all);
    trie_free(&v->impure);
    free(v->pure_ids);
    free(v->pure_cnt);
    free(v->pure_bits);
    free(v->cont);
    free(v);
}

typedef struct tok_ref {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} tok_ref;

static int tok_cmp(const void *x, const void *y) {
    const tok_ref *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* refs: sorted, duplicates removed (representatives only). */
static int trie_build(gtrie *t, const tok_ref *refs, int32_t n) {
    uint64_t nodes = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t l = 0;
        if (i > 0)
            while (l < refs[i].len && l < refs[i - 1].len && refs[i].p[l] == refs[i - 1].p[l]) l++;
        nodes += refs[i].len - l;
    }
    if (nodes > UINT32_MAX / 2) return 0;
    t->n = (uint32_t)nodes;
    size_t cnt = nodes ? (size_t)nodes : 1;
    t->byte = malloc(cnt);
    t->depth = malloc(cnt * sizeof *t->depth);
    t->skip = malloc(cnt * sizeof *t->skip);
    t->tok = malloc(cnt * sizeof *t->tok);
    uint32_t *open = malloc((MAX_TOKEN_LEN + 1) * sizeof *open); /* node at each depth */
    if (!t->byte || !t->depth || !t->skip || !t->tok || !open) {
        free(open);
        return 0;
    }
    uint32_t k = 0;
    int32_t top = 0; /* open[0..top) are nodes whose subtree is still growing */
    for (int32_t i = 0; i < n; i++) {
        uint32_t l = 0;
        if (i > 0)
            while (l < refs[i].len && l < refs[i - 1].len && refs[i].p[l] == refs[i - 1].p[l]) l++;
        while (top > (int32_t)l) t->skip[open[--top]] = k;
        for (uint32_t d = l; d < refs[i].len; d++) {
            t->byte[k] = refs[i].p[d];
            t->depth[k] = (uint16_t)(d + 1);
            t->tok[k] = -1;
            open[top++] = k++;
        }
        t->tok[k - 1] = refs[i].id;
    }
    while (top > 0) t->skip[open[--top]] = k;
    free(open);
    return 1;
}

/* Character count of a pure token, or -1. */
static int32_t pure_count(const uint8_t *p, uint32_t len) {
    int32_t cnt = 0;
    uint32_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x20 || c == '"' || c == '\\') return -1;
        cnt++;
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2;
        else if (c >= 0xF0 && c <= 0xF4) need = 3;
        else return -1;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        i++;
        for (uint32_t j = 0; j < need && i < len; j++, i++) {
            if (p[i] < lo || p[i] > hi) return -1;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    return cnt;
}

nbl_grammar_vocab *nbl_grammar_vocab_new(const char *const *tok_bytes, const int32_t *tok_len,
                                         int32_t n_vocab, const int32_t *eog_ids, int32_t n_eog,
                                         nbl_error *err) {
    if (n_vocab <= 0 || !tok_len || !tok_bytes || n_eog < 0 || (n_eog > 0 && !eog_ids)) {
        nbl_set_err(err, NBL_E_ARG, "grammar vocabulary: bad arguments (n_vocab %d, n_eog %d)",
                    (int)n_vocab, (int)n_eog);
        return NULL;
    }
    uint64_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (tok_len[i] < 0 || (tok_len[i] > 0 && !tok_bytes[i])) {
            nbl_set_err(err, NBL_E_ARG, "grammar vocabulary: token %d has no bytes", (int)i);
            return NULL;
        }
        total += (uint64_t)tok_len[i];
    }
    for (int32_t i = 0; i < n_eog; i++)
        if (eog_ids[i] < 0 || eog_ids[i] >= n_vocab) {
            nbl_set_err(err, NBL_E_ARG, "grammar vocabulary: end-of-generation id %d out of range",
                        (int)eog_ids[i]);
            return NULL;
        }
    if (total > UINT32_MAX / 2) {
        nbl_set_err(err, NBL_E_NOMEM, "grammar vocabulary: token bytes too large");
        return NULL;
    }
    nbl_grammar_vocab *v = calloc(1, sizeof *v);
    tok_ref *refs = NULL, *imp = NULL;
    if (!v) goto oom;
    size_t nv = (size_t)n_vocab, words = (nv + 31) / 32;
    v->n_vocab = n_vocab;
    v->off = malloc((nv + 1) * sizeof *v->off);
    v->bytes = malloc(total ? total : 1);
    v->is_eog = calloc(nv, 1);
    v->eog = malloc((size_t)(n_eog ? n_eog : 1) * sizeof *v->eog);
    v->dup_next = malloc(nv * sizeof *v->dup_next);
    v->pure_ids = malloc(nv * sizeof *v->pure_ids);
    v->pure_cnt = malloc(nv * sizeof *v->pure_cnt);
    v->pure_bits = calloc(words, sizeof *v->pure_bits);
    v->cont = malloc(nv * sizeof *v->cont);
    refs = malloc(nv * sizeof *refs);
    imp = malloc(nv * sizeof *imp);
    if (!v->off || !v->bytes || !v->is_eog || !v->eog || !v->dup_next || !v->pure_ids ||
        !v->pure_cnt || !v->pure_bits || !v->cont || !refs || !imp)
        goto oom;
    for (int32_t i = 0; i < n_eog; i++) v->is_eog[eog_ids[i]] = 1;
    for (int32_t i = 0; i < n_vocab; i++)
        if (v->is_eog[i]) v->eog[v->n_eog++] = i;
    uint32_t o = 0;
    int32_t nr = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        v->off[i] = o;
        if (tok_len[i]) memcpy(v->bytes + o, tok_bytes[i], (size_t)tok_len[i]);
        o += (uint32_t)tok_len[i];
        v->dup_next[i] = -1;
        if (tok_len[i] > 0 && tok_len[i] <= MAX_TOKEN_LEN && !v->is_eog[i]) {
            refs[nr++] = (tok_ref){(const uint8_t *)v->bytes + v->off[i], (uint32_t)tok_len[i], i};
            if (tok_len[i] > v->max_len) v->max_len = tok_len[i];
        }
    }
    v->off[n_vocab] = o;
    qsort(refs, (size_t)nr, sizeof *refs, tok_cmp);
    /* Keep one representative per distinct byte string; the rest hang off it. */
    int32_t nu = 0, ni = 0, last = -1;
    for (int32_t i = 0; i < nr; i++) {
        if (nu > 0 && refs[i].len == refs[nu - 1].len &&
            !memcmp(refs[i].p, refs[nu - 1].p, refs[i].len)) {
            v->dup_next[last] = refs[i].id;
            last = refs[i].id;
            continue;
        }
        refs[nu++] = refs[i];
        last = refs[i].id;
    }
    for (int32_t i = 0; i < nu; i++) {
        int32_t cnt = pure_count(refs[i].p, refs[i].len);
        uint32_t lc = 0;
        while (lc < refs[i].len && lc < 4 && (refs[i].p[lc] & 0xC0) == 0x80) lc++;
        if (lc > 0 && lc < 4) {
            int32_t rc = pure_count(refs[i].p + lc, refs[i].len - lc);
            if (rc >= 0 && rc <= 65535) {
                for (int32_t t = refs[i].id; t >= 0; t = v->dup_next[t])
                    v->cont[v->n_cont++] = (struct gcont){t, (uint16_t)rc, (uint8_t)lc,
                                                          refs[i].p[0], lc == refs[i].len};
                continue;
            }
        }
        if (cnt < 0 || cnt > 65535) {
            imp[ni++] = refs[i];
            continue;
        }
        for (int32_t t = refs[i].id; t >= 0; t = v->dup_next[t]) {
            v->pure_ids[v->n_pure] = t;
            v->pure_cnt[v->n_pure++] = (uint16_t)cnt;
            v->pure_bits[t / 32] |= 1u << (t % 32);
        }
        if (cnt > v->pure_max) v->pure_max = cnt;
    }
    /* Counting sort of the pure tokens by character count. */
    {
        int32_t *start = calloc((size_t)v->pure_max + 2, sizeof *start);
        int32_t *ids = malloc((size_t)(v->n_pure ? v->n_pure : 1) * sizeof *ids);
        if (!start || !ids) {
            free(start);
            free(ids);
            goto oom;
        }
        for (int32_t i = 0; i < v->n_pure; i++) start[v->pure_cnt[i] + 1]++;
        for (int32_t c = 0; c <= v->pure_max; c++) start[c + 1] += start[c];
        for (int32_t i = 0; i < v->n_pure; i++) ids[start[v->pure_cnt[i]]++] = v->pure_ids[i];
        free(v->pure_ids);
        v->pure_ids = ids;
        int32_t k = 0;
        for (int32_t c = 0; c <= v->pure_max; c++)
            while (k < (c == 0 ? start[0] : start[c])) v->pure_cnt[k++] = (uint16_t)c;
        free(start);
    }
    if (!trie_build(&v->all, refs, nu) || !trie_build(&v->impure, imp, ni)) goto oom;
    free(refs);
    free(imp);
    return v;
oom:
    free(refs);
    free(imp);
    nbl_grammar_vocab_free(v);
    nbl_set_err(err, NBL_E_NOMEM, "out of memory building a grammar vocabulary");
    return NULL;
}

nbl_grammar_vocab *nbl_grammar_vocab_from_model(const nbl_model *model, nbl_error *err) {
    if (!model) {
        nbl_set_err(err, NBL_E_ARG, "grammar vocabulary: NULL model");
        return NULL;
    }
    nbl_model_info info;
    nbl_model_get_info(model, &info);
    int32_t n = info.n_vocab, nt = nbl_vocab_size(model);
    if (nt > n) n = nt;
    if (n <= 0) {
        nbl_set_err(err, NBL_E_FORMAT, "grammar vocabulary: the model has no vocabulary");
        return NULL;
    }
    char **bytes = calloc((size_t)n, sizeof *bytes);
    int32_t *len = calloc((size_t)n, sizeof *len), *eog = malloc((size_t)n * sizeof *eog);
    char *buf = malloc(MAX_TOKEN_LEN + 1);
    nbl_grammar_vocab *v = NULL;
    int32_t n_eog = 0;
    if (!bytes || !len || !eog || !buf) {
        nbl_set_err(err, NBL_E_NOMEM, "out of memory building a grammar vocabulary");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        if (i < nt && nbl_token_is_eog(model, i)) {
            eog[n_eog++] = i;
            continue;
        }
        int32_t l = i < nt ? nbl_token_to_bytes(model, i, 0, buf, MAX_TOKEN_LEN + 1) : -1;
        if (l <= 0 || l > MAX_TOKEN_LEN) continue; /* no text, or too long to ever allow */
        bytes[i] = malloc((size_t)l);
        if (!bytes[i]) {
            nbl_set_err(err, NBL_E_NOMEM, "out of memory building a grammar vocabulary");
            goto done;
        }
        memcpy(bytes[i], buf, (size_t)l);
        len[i] = l;
    }
    v = nbl_grammar_vocab_new((const char *const *)bytes, len, n, eog, n_eog, err);
done:
    for (int32_t i = 0; bytes && i < n; i++) free(bytes[i]);
    free(bytes);
    free(len);
    free(eog);
    free(buf);
    return v;
}

/* ---- matcher ------------------------------------------------------------------------------- */

struct nbl_grammar_matcher {
    const nbl_grammar *g;
    const nbl_grammar_vocab *v;
    nbl_grammar_limits lim;
    gctx c;
    mstate cur;
    int32_t finished; /* an end-of-generation token was accepted */
    int32_t can_end, done;
    mstate *scratch;  /* [max_len + 1]: the state at each trie depth */
    uint32_t *bits;   /* for _apply */
};

static void refresh(nbl_grammar_matcher *m) {
    m->can_end = state_can_end(&m->c, &m->cur);
    m->done = 0;
    if (!m->can_end) return;
    mstate t;
    for (int b = 0; b < 256; b++) {
        state_copy(&t, &m->cur);
        if (step(&m->c, &t, (uint8_t)b)) return;
    }
    m->done = 1;
}

/* The per-depth states of the mask walk and the bitset of _apply, allocated on first use so
 * that clones (e.g. for look-ahead) cost one small allocation. */
static int ensure_scratch(nbl_grammar_matcher *m) {
    if (!m->scratch) m->scratch = malloc(((size_t)m->v->max_len + 1) * sizeof *m->scratch);
    if (!m->bits) m->bits = malloc(((size_t)m->v->n_vocab + 31) / 32 * sizeof *m->bits);
    return m->scratch && m->bits;
}

void nbl_grammar_matcher_reset(nbl_grammar_matcher *m) {
    if (!m) return;
    m->cur.h = 1;
    init_frame(m->g, &m->cur.f[0], m->g->root, 0);
    m->finished = 0;
    refresh(m);
}

nbl_grammar_matcher *nbl_grammar_matcher_new(const nbl_grammar *g, const nbl_grammar_vocab *v,
                                             nbl_error *err) {
    if (!g || !v) {
        nbl_set_err(err, NBL_E_ARG, "grammar matcher: NULL grammar or vocabulary");
        return NULL;
    }
    nbl_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->g = g;
    m->v = v;
    m->lim = g->lim;
    m->c = (gctx){g, &m->lim};
    if (!ensure_scratch(m)) goto oom;
    nbl_grammar_matcher_reset(m);
    return m;
oom:
    nbl_grammar_matcher_free(m);
    nbl_set_err(err, NBL_E_NOMEM, "out of memory creating a grammar matcher");
    return NULL;
}

nbl_grammar_matcher *nbl_grammar_matcher_clone(const nbl_grammar_matcher *m, nbl_error *err) {
    if (!m) {
        nbl_set_err(err, NBL_E_ARG, "grammar matcher: NULL");
        return NULL;
    }
    nbl_grammar_matcher *c = malloc(sizeof *c);
    if (!c) {
        nbl_set_err(err, NBL_E_NOMEM, "out of memory cloning a grammar matcher");
        return NULL;
    }
    *c = *m;
    c->c.lim = &c->lim;
    c->scratch = NULL;
    c->bits = NULL;
    return c;
}

void nbl_grammar_matcher_free(nbl_grammar_matcher *m) {
    if (!m) return;
    free(m->scratch);
    free(m->bits);
    free(m);
}

int32_t nbl_grammar_matcher_can_end(const nbl_grammar_matcher *m) {
    return m && !m->finished && m->can_end;
}

int32_t nbl_grammar_matcher_done(const nbl_grammar_matcher *m) {
    return m && (m->finished || m->done);
}

static inline void set_tok(const nbl_grammar_vocab *v, uint32_t *bits, int32_t t) {
    for (; t >= 0; t = v->dup_next[t]) bits[t / 32] |= 1u << (t % 32);
}

static void walk(nbl_grammar_matcher *m, const gtrie *t, uint32_t *bits) {
    mstate *S = m->scratch;
    const uint8_t *byte = t->byte;
    const uint16_t *depth = t->depth;
    const uint32_t *skip = t->skip;
    const int32_t *tok = t->tok;
    state_copy(&S[0], &m->cur);
    for (uint32_t i = 0, n = t->n; i < n;) {
        mstate *d = &S[depth[i]];
        state_copy(d, d - 1);
        if (!step(&m->c, d, byte[i])) {
            i = skip[i];
            continue;
        }
        if (tok[i] >= 0) set_tok(m->v, bits, tok[i]);
        i++;
    }
}

int32_t nbl_grammar_matcher_mask(nbl_grammar_matcher *m, uint32_t *bitset) {
    if (!m || !bitset) return -1;
    if (!ensure_scratch(m)) return -1;
    const nbl_grammar_vocab *v = m->v;
    size_t words = ((size_t)v->n_vocab + 31) / 32;
    memset(bitset, 0, words * sizeof *bitset);
    if (m->finished) return 0;
    if (m->can_end)
        for (int32_t i = 0; i < v->n_eog; i++) bitset[v->eog[i] / 32] |= 1u << (v->eog[i] % 32);
    const gframe *top = &m->cur.f[m->cur.h - 1];
    if (top->kind == F_STR && top->st == S_BODY && top->need) {
        /* In the middle of a character: only continuations can follow. */
        int32_t room = str_max(&m->c, &m->c.g->nodes[top->node]) - (int32_t)top->n;
        for (int32_t i = 0; i < v->n_cont; i++) {
            const struct gcont *q = &v->cont[i];
            if (q->b0 < top->ulo || q->b0 > top->uhi) continue;
            if (q->all ? q->lc <= top->need : (q->lc == top->need && q->cnt <= room))
                bitset[q->id / 32] |= 1u << (q->id % 32);
        }
        walk(m, &v->impure, bitset);
    } else if (top->kind == F_STR && top->st == S_BODY) {
        int32_t room = str_max(&m->c, &m->c.g->nodes[top->node]) - (int32_t)top->n;
        if (room >= v->pure_max) {
            for (size_t w = 0; w < words; w++) bitset[w] |= v->pure_bits[w];
        } else {
            for (int32_t i = 0; i < v->n_pure && v->pure_cnt[i] <= room; i++) {
                int32_t t = v->pure_ids[i];
                bitset[t / 32] |= 1u << (t % 32);
            }
        }
        walk(m, &v->impure, bitset);
    } else {
        walk(m, &v->all, bitset);
    }
    int32_t count = 0;
    for (size_t w = 0; w < words; w++) count += __builtin_popcount(bitset[w]);
    return count;
}

int32_t nbl_grammar_matcher_apply(nbl_grammar_matcher *m, float *logits, int32_t n_logits) {
    if (!m || !logits || n_logits < 0 || !ensure_scratch(m)) return -1;
    int32_t count = nbl_grammar_matcher_mask(m, m->bits);
    for (int32_t i = 0; i < n_logits; i++)
        if (i >= m->v->n_vocab || !(m->bits[i / 32] >> (i % 32) & 1)) logits[i] = -INFINITY;
    return count;
}

static nbl_status advance(nbl_grammar_matcher *m, const uint8_t *p, size_t len, nbl_error *err,
                          int32_t token) {
    mstate tmp, *t = &tmp;
    state_copy(t, &m->cur);
    for (size_t i = 0; i < len; i++)
        if (!step(&m->c, t, p[i])) {
            if (token >= 0)
                return nbl_set_err(err, NBL_E_ARG,
                                   "grammar: token %d is not allowed here (byte %zu of it)",
                                   (int)token, i);
            return nbl_set_err(err, NBL_E_ARG, "grammar: byte %zu (0x%02x) is not allowed here",
                               i, p[i]);
        }
    state_copy(&m->cur, t);
    refresh(m);
    return NBL_OK;
}

nbl_status nbl_grammar_matcher_accept(nbl_grammar_matcher *m, int32_t token, nbl_error *err) {
    if (!m) return nbl_set_err(err, NBL_E_ARG, "grammar matcher: NULL");
    const nbl_grammar_vocab *v = m->v;
    if (token < 0 || token >= v->n_vocab)
        return nbl_set_err(err, NBL_E_ARG, "grammar: token %d out of range", (int)token);
    if (m->finished)
        return nbl_set_err(err, NBL_E_STATE, "grammar: the output is already finished");
    if (v->is_eog[token]) {
        if (!m->can_end)
            return nbl_set_err(err, NBL_E_ARG,
                               "grammar: end of generation (token %d) before the output is "
                               "complete",
                               (int)token);
        m->finished = 1;
        return NBL_OK;
    }
    uint32_t len = v->off[token + 1] - v->off[token];
    if (len == 0 || len > MAX_TOKEN_LEN)
        return nbl_set_err(err, NBL_E_ARG, "grammar: token %d has no text the grammar can take",
                           (int)token);
    return advance(m, (const uint8_t *)v->bytes + v->off[token], len, err, token);
}

nbl_status nbl_grammar_matcher_accept_bytes(nbl_grammar_matcher *m, const char *bytes,
                                            size_t len, nbl_error *err) {
    if (!m || (!bytes && len)) return nbl_set_err(err, NBL_E_ARG, "grammar matcher: NULL");
    if (m->finished)
        return nbl_set_err(err, NBL_E_STATE, "grammar: the output is already finished");
    return advance(m, (const uint8_t *)bytes, len, err, -1);
}
