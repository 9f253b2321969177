/* grammar.c — constrained decoding, part 1: the grammar object (limits, any JSON object, fixed
 * choices) and the JSON Schema subset compiler, which turns a schema into a graph of nodes that
 * grammar_match.c runs as a deterministic byte-level automaton. */
#include "grammar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nbl_grammar_limits_init(nbl_grammar_limits *lim) {
    lim->max_depth = 12;
    lim->max_items = 128;
    lim->max_string = 1024;
    lim->max_int_digits = 15;
    lim->max_frac_digits = 8;
    lim->max_exp_digits = 2;
    lim->space = 1;
}

static int grow(void **p, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return 1;
    int64_t nc = *cap ? (int64_t)*cap * 2 : 16;
    while (nc < need) nc *= 2;
    if (nc > INT32_MAX / 2) return 0;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return 0;
    *p = q;
    *cap = (int32_t)nc;
    return 1;
}

static int32_t add_node(nbl_grammar *g, uint8_t type) {
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(gnode)) ||
        g->n_nodes >= 65535)
        return -1;
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->a = n->b = n->c = n->d = n->e = -1;
    return g->n_nodes++;
}

typedef struct lit_src {
    const char *p;
    uint32_t len;
    int32_t tag;
} lit_src;

static int lit_cmp(const void *x, const void *y) {
    const lit_src *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* Adds a literal set; *dup receives 1 when two entries were equal (they are merged). */
static int32_t add_lits(nbl_grammar *g, lit_src *src, int32_t n, uint8_t flags, int *dup) {
    qsort(src, (size_t)n, sizeof *src, lit_cmp);
    int32_t node = add_node(g, G_LITS);
    if (node < 0 || !grow((void **)&g->lits, &g->cap_lits, g->n_lits + n, sizeof(glit)))
        return -1;
    g->nodes[node].flags = flags;
    g->nodes[node].b = g->n_lits;
    int32_t k = 0;
    if (dup) *dup = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i > 0 && lit_cmp(&src[i], &src[i - 1]) == 0) {
            if (dup) *dup = 1;
            continue;
        }
        if (src[i].len > (uint32_t)(INT32_MAX / 2 - g->n_pool) ||
            !grow((void **)&g->pool, &g->cap_pool, g->n_pool + (int32_t)src[i].len + 1, 1))
            return -1;
        glit *l = &g->lits[g->n_lits + k++];
        l->off = (uint32_t)g->n_pool;
        l->len = src[i].len;
        l->tag = src[i].tag;
        if (src[i].len) memcpy(g->pool + g->n_pool, src[i].p, src[i].len);
        g->n_pool += (int32_t)src[i].len;
    }
    g->n_lits += k;
    g->nodes[node].a = k;
    return node;
}

static nbl_grammar *grammar_alloc(nbl_error *err) {
    nbl_grammar *g = calloc(1, sizeof *g);
    if (!g) goto oom;
    nbl_grammar_limits_init(&g->lim);
    if (add_node(g, G_ANY) != N_ANY || add_node(g, G_STRING) != N_STR ||
        add_node(g, G_NUMBER) != N_NUM)
        goto oom;
    g->nodes[N_ANY].flags = K_ALL;
    g->nodes[N_STR].b = 0;
    lit_src tfn[3] = {{"true", 4, 0}, {"false", 5, 1}, {"null", 4, 2}};
    if (add_lits(g, tfn, 3, 0, NULL) != N_TFN) goto oom;
    return g;
oom:
    nbl_grammar_free(g);
    nbl_set_err(err, NBL_E_NOMEM, "out of memory creating a grammar");
    return NULL;
}

void nbl_grammar_free(nbl_grammar *g) {
    if (!g) return;
    free(g->nodes);
    free(g->lits);
    free(g->pool);
    free(g->props);
    free(g->ints);
    free(g);
}

nbl_status nbl_grammar_set_limits(nbl_grammar *g, const nbl_grammar_limits *lim,
                                  nbl_error *err) {
    if (!g || !lim) return nbl_set_err(err, NBL_E_ARG, "grammar limits: NULL argument");
    if (lim->max_depth < 0 || lim->max_depth > 32)
        return nbl_set_err(err, NBL_E_ARG, "grammar limits: max_depth %d not in 0..32",
                           (int)lim->max_depth);
    if (lim->max_items < 0 || lim->max_string < 0)
        return nbl_set_err(err, NBL_E_ARG, "grammar limits: max_items / max_string negative");
    if (lim->max_int_digits < 1 || lim->max_int_digits > 18 || lim->max_frac_digits < 0 ||
        lim->max_frac_digits > 18 || lim->max_exp_digits < 0 || lim->max_exp_digits > 2)
        return nbl_set_err(err, NBL_E_ARG,
                           "grammar limits: digits must be int 1..18, frac 0..18, exp 0..2");
    g->lim = *lim;
    g->lim.space = lim->space ? 1 : 0;
    return NBL_OK;
}

nbl_grammar *nbl_grammar_new_json(nbl_error *err) {
    nbl_grammar *g = grammar_alloc(err);
    if (!g) return NULL;
    int32_t r = add_node(g, G_ANY);
    if (r < 0) {
        nbl_grammar_free(g);
        nbl_set_err(err, NBL_E_NOMEM, "out of memory creating a grammar");
        return NULL;
    }
    g->nodes[r].flags = K_OBJ;
    g->root = r;
    return g;
}

nbl_grammar *nbl_grammar_new_choice(const char *const *choices, int32_t n, nbl_error *err) {
    if (!choices || n <= 0) {
        nbl_set_err(err, NBL_E_ARG, "choice grammar: no choices given");
        return NULL;
    }
    for (int32_t i = 0; i < n; i++)
        if (!choices[i]) {
            nbl_set_err(err, NBL_E_ARG, "choice grammar: choice %d is NULL", (int)i);
            return NULL;
        }
    nbl_grammar *g = grammar_alloc(err);
    if (!g) return NULL;
    lit_src *src = malloc((size_t)n * sizeof *src);
    int32_t r = -1;
    if (src) {
        for (int32_t i = 0; i < n; i++) {
            size_t l = strlen(choices[i]);
            src[i] = (lit_src){choices[i], l > UINT32_MAX / 4 ? UINT32_MAX / 4 : (uint32_t)l, i};
        }
        r = add_lits(g, src, n, 0, NULL);
        free(src);
    }
    if (r < 0) {
        nbl_grammar_free(g);
        nbl_set_err(err, NBL_E_NOMEM, "out of memory creating a grammar");
        return NULL;
    }
    g->root = r;
    return g;
}

/* ---- JSON Schema compiler ------------------------------------------------------------------ */


typedef struct cctx {
    nbl_grammar *g;
    nbl_error *err;
} cctx;

static int32_t c_oom(cctx *c) {
    nbl_set_err(c->err, NBL_E_NOMEM, "out of memory compiling a JSON schema");
    return -1;
}

static const char *const SUPPORTED[] = {
    "type",    "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "minLength", "maxLength", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", NULL};
static const char *const IGNORED[] = {"title", "description", "$schema", "$id", "$comment",
                                      "default", "examples", "deprecated", "readOnly",
                                      "writeOnly", NULL};

static int in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (!strcmp(*l, s)) return 1;
    return 0;
}

static const char *const TYPE_NAMES[] = {"object", "array", "string", "number",
                                         "integer", "boolean", "null", NULL};
enum { T_OBJ = 1, T_ARR = 2, T_STR = 4, T_NUM = 8, T_INT = 16, T_BOOL = 32, T_NULL = 64 };

/* A non-negative integer keyword (-1 when absent, -2 on error). */
static int64_t kw_count(cctx *c, const nbl_json *s, const char *kw, const char *path) {
    const nbl_json *v = nbl_json_get(s, kw);
    if (!v) return -1;
    if (v->type != NBL_JSON_NUMBER || v->num < 0 || v->num != floor(v->num) || v->num > 1e9) {
        nbl_set_err(c->err, NBL_E_FORMAT, "\"%s\" at %s must be a non-negative integer", kw,
                    path);
        return -2;
    }
    return (int64_t)v->num;
}

static int value_has_type(const nbl_json *v, int tmask) {
    switch (v->type) {
    case NBL_JSON_NULL: return (tmask & T_NULL) != 0;
    case NBL_JSON_BOOL: return (tmask & T_BOOL) != 0;
    case NBL_JSON_STRING: return (tmask & T_STR) != 0;
    case NBL_JSON_ARRAY: return (tmask & T_ARR) != 0;
    case NBL_JSON_OBJECT: return (tmask & T_OBJ) != 0;
    default:
        return (tmask & T_NUM) || ((tmask & T_INT) && v->num == floor(v->num));
    }
}

/* value(X) = X * 10^-f, read back as a double exactly as a JSON parser would ("Xe-f" needs no
 * locale-dependent decimal point). */
static double scaled_value(int64_t x, int f) {
    char t[48];
    snprintf(t, sizeof t, "%llde-%d", (long long)x, f);
    return strtod(t, NULL);
}

/* Turns minimum/maximum (and the exclusive forms) into the exact range lo..hi of value*10^F:
 * every X in it reads back inside the schema's bounds, because reading decimals is monotonic. */
static int num_range(cctx *c, gnode *nd, const nbl_json *s, int integer, const char *path) {
    double mn = -INFINITY, mx = INFINITY;
    int exmn = 0, exmx = 0, any = 0;
    const char *kws[4] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (int i = 0; i < 4; i++) {
        const nbl_json *v = nbl_json_get(s, kws[i]);
        if (!v) continue;
        if (v->type == NBL_JSON_BOOL && i >= 2) { /* draft 4: a flag on minimum / maximum */
            if (i == 2) exmn |= v->b;
            else exmx |= v->b;
            continue;
        }
        if (v->type != NBL_JSON_NUMBER) {
            nbl_set_err(c->err, NBL_E_FORMAT, "\"%s\" at %s must be a number", kws[i], path);
            return 0;
        }
        any = 1;
        double x = v->num;
        if (i == 0 && x > mn) mn = x;
        if (i == 1 && x < mx) mx = x;
        if (i == 2 && x >= mn) mn = x, exmn = 1;
        if (i == 3 && x <= mx) mx = x, exmx = 1;
    }
    if (!any) return 1;
    int f = integer ? 0 : RANGE_FRAC;
    int64_t lim = P10[18] - 1;
    if (!integer) lim = P10[12 + RANGE_FRAC] - 1;
    int64_t lo = -lim, hi = lim;
    if (mn > -INFINITY) {
        double d = ceil(mn * (double)P10[f]);
        lo = d > (double)lim ? lim + 1 : d < (double)-lim ? -lim : (int64_t)d;
        for (int it = 0; it < 4096 && lo <= lim; it++) { /* up past rounding */
            double v = scaled_value(lo, f);
            if (exmn ? v > mn : v >= mn) break;
            lo++;
        }
        for (int it = 0; it < 4096 && lo - 1 >= -lim; it++) { /* down to the first one in */
            double v = scaled_value(lo - 1, f);
            if (!(exmn ? v > mn : v >= mn)) break;
            lo--;
        }
    }
    if (mx < INFINITY) {
        double d = floor(mx * (double)P10[f]);
        hi = d < (double)-lim ? -lim - 1 : d > (double)lim ? lim : (int64_t)d;
        for (int it = 0; it < 4096 && hi >= -lim; it++) {
            double v = scaled_value(hi, f);
            if (exmx ? v < mx : v <= mx) break;
            hi--;
        }
        for (int it = 0; it < 4096 && hi + 1 <= lim; it++) {
            double v = scaled_value(hi + 1, f);
            if (!(exmx ? v < mx : v <= mx)) break;
            hi++;
        }
    }
    if (lo > hi) {
        nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                    "the bounds at %s admit no %s with at most %d digits (and %d decimals)",
                    path, integer ? "integer" : "number", integer ? 18 : 12, f);
        return 0;
    }
    nd->flags |= GF_RANGE;
    nd->lo = lo;
    nd->hi = hi;
    return 1;
}

static int32_t compile(cctx *c, const nbl_json *s, const char *path, int depth);

static int32_t compile_object(cctx *c, const nbl_json *s, const char *path, int depth) {
    nbl_grammar *g = c->g;
    const nbl_json *props = nbl_json_get(s, "properties");
    const nbl_json *req = nbl_json_get(s, "required");
    const nbl_json *addl = nbl_json_get(s, "additionalProperties");
    if (props && props->type != NBL_JSON_OBJECT) {
        nbl_set_err(c->err, NBL_E_FORMAT, "\"properties\" at %s must be an object", path);
        return -1;
    }
    if (req && req->type != NBL_JSON_ARRAY) {
        nbl_set_err(c->err, NBL_E_FORMAT, "\"required\" at %s must be an array", path);
        return -1;
    }
    if (addl && addl->type != NBL_JSON_BOOL && addl->type != NBL_JSON_OBJECT) {
        nbl_set_err(c->err, NBL_E_FORMAT,
                    "\"additionalProperties\" at %s must be a boolean or a schema", path);
        return -1;
    }
    int addl_false = addl && addl->type == NBL_JSON_BOOL && !addl->b;
    if (!props && !addl_false) {
        if (req && req->len) {
            nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                        "\"required\" without \"properties\" at %s is not supported", path);
            return -1;
        }
        if (addl && addl->type == NBL_JSON_OBJECT && addl->len) {
            nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                        "unsupported JSON Schema keyword \"additionalProperties\" (a schema) at %s",
                        path);
            return -1;
        }
        int32_t n = add_node(g, G_ANY); /* any object */
        if (n < 0) return c_oom(c);
        g->nodes[n].flags = K_OBJ;
        return n;
    }
    if (addl && !addl_false) {
        nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                    "unsupported JSON Schema keyword \"additionalProperties\" (other than false) "
                    "with \"properties\" at %s",
                    path);
        return -1;
    }
    int32_t np = props ? (int32_t)props->len : 0;
    if (np > 4096) {
        nbl_set_err(c->err, NBL_E_UNSUPPORTED, "more than 4096 properties at %s", path);
        return -1;
    }
    int32_t *req_flags = calloc((size_t)np + 1, sizeof *req_flags);
    int32_t *child = malloc(((size_t)np + 1) * sizeof *child);
    nbl_sb keys = {0};
    size_t *koff = malloc(((size_t)np + 1) * sizeof *koff);
    lit_src *src = malloc(((size_t)np + 1) * sizeof *src);
    int32_t node = -1;
    if (!req_flags || !child || !koff || !src) {
        c_oom(c);
        goto done;
    }
    for (size_t i = 0; req && i < req->len; i++) {
        const nbl_json *r = &req->items[i];
        if (r->type != NBL_JSON_STRING) {
            nbl_set_err(c->err, NBL_E_FORMAT, "\"required\" at %s must hold strings", path);
            goto done;
        }
        int32_t k = 0;
        while (k < np && !(strlen(props->keys[k]) == r->len && !memcmp(props->keys[k], r->str, r->len)))
            k++;
        if (k == np) {
            nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                        "required property \"%s\" at %s is not in \"properties\"", r->str, path);
            goto done;
        }
        req_flags[k] = 1;
    }
    for (int32_t i = 0; i < np; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.properties.%s", path, props->keys[i]);
        child[i] = compile(c, &props->items[i], sub, depth + 1);
        if (child[i] < 0) goto done;
        koff[i] = keys.n;
        nbl_sb_json_str(&keys, props->keys[i], strlen(props->keys[i]));
    }
    koff[np] = keys.n;
    if (keys.oom) {
        c_oom(c);
        goto done;
    }
    for (int32_t i = 0; i < np; i++)
        src[i] = (lit_src){keys.p + koff[i], (uint32_t)(koff[i + 1] - koff[i]), i};
    int dup = 0;
    int32_t kn = np ? add_lits(g, src, np, GF_KEYS, &dup) : -1;
    if (np && kn < 0) {
        c_oom(c);
        goto done;
    }
    if (dup) {
        nbl_set_err(c->err, NBL_E_FORMAT, "duplicate property name in \"properties\" at %s",
                    path);
        goto done;
    }
    if (!grow((void **)&g->props, &g->cap_props, g->n_props + np, sizeof(gprop)) ||
        !grow((void **)&g->ints, &g->cap_ints, g->n_ints + np + 1, sizeof(int32_t))) {
        c_oom(c);
        goto done;
    }
    node = add_node(g, G_OBJECT);
    if (node < 0) {
        c_oom(c);
        goto done;
    }
    gnode *nd = &g->nodes[node];
    nd->a = np;
    nd->b = g->n_props;
    nd->c = kn;
    nd->d = g->n_ints;
    for (int32_t i = 0; i < np; i++) g->props[g->n_props + i] = (gprop){child[i], req_flags[i]};
    int32_t next = np;
    for (int32_t p = np; p >= 0; p--) {
        if (p < np && req_flags[p]) next = p;
        g->ints[g->n_ints + p] = next;
    }
    g->n_props += np;
    g->n_ints += np + 1;
done:
    free(req_flags);
    free(child);
    nbl_sb_free(&keys);
    free(koff);
    free(src);
    return node;
}

static int32_t compile_typed(cctx *c, const nbl_json *s, int t, const char *path, int depth) {
    nbl_grammar *g = c->g;
    if (t == T_OBJ) return compile_object(c, s, path, depth);
    if (t == T_ARR) {
        const nbl_json *items = nbl_json_get(s, "items");
        int64_t mn = kw_count(c, s, "minItems", path), mx = kw_count(c, s, "maxItems", path);
        if (mn == -2 || mx == -2) return -1;
        if (mn < 0) mn = 0;
        if (mx >= 0 && mn > mx) {
            nbl_set_err(c->err, NBL_E_FORMAT, "minItems > maxItems at %s", path);
            return -1;
        }
        int32_t it = N_ANY;
        if (items) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.items", path);
            if (items->type == NBL_JSON_ARRAY) {
                nbl_set_err(c->err, NBL_E_UNSUPPORTED,
                            "unsupported JSON Schema keyword \"items\" (an array: tuple form) at %s",
                            path);
                return -1;
            }
            it = compile(c, items, sub, depth + 1);
            if (it < 0) return -1;
        }
        int32_t n = add_node(g, G_ARRAY);
        if (n < 0) return c_oom(c);
        g->nodes[n].a = it;
        g->nodes[n].b = (int32_t)mn;
        g->nodes[n].c = (int32_t)mx;
        return n;
    }
    if (t == T_STR) {
        int64_t mn = kw_count(c, s, "minLength", path), mx = kw_count(c, s, "maxLength", path);
        if (mn == -2 || mx == -2) return -1;
        if (mn < 0) mn = 0;
        if (mx >= 0 && mn > mx) {
            nbl_set_err(c->err, NBL_E_FORMAT, "minLength > maxLength at %s", path);
            return -1;
        }
        if (mn == 0 && mx < 0) return N_STR;
        int32_t n = add_node(g, G_STRING);
        if (n < 0) return c_oom(c);
        g->nodes[n].b = (int32_t)mn;
        g->nodes[n].c = (int32_t)mx;
        return n;
    }
    if (t == T_NUM || t == T_INT) {
        int32_t n = add_node(g, G_NUMBER);
        if (n < 0) return c_oom(c);
        if (t == T_INT) g->nodes[n].flags |= GF_INTEGER;
        if (!num_range(c, &g->nodes[n], s, t == T_INT, path)) return -1;
        return n;
    }
    lit_src l[2] = {{"true", 4, 0}, {"false", 5, 1}};
    if (t == T_NULL) l[0] = (lit_src){"null", 4, 0};
    int32_t n = add_lits(g, l, t == T_BOOL ? 2 : 1, 0, NULL);
    return n < 0 ? c_oom(c) : n;
}

static int32_t compile_enum(cctx *c, const nbl_json *s, int tmask, const char *path) {
    const nbl_json *en = nbl_json_get(s, "enum"), *cn = nbl_json_get(s, "const");
    const nbl_json *vals = cn ? cn : en->items;
    size_t nv = cn ? 1 : en->len;
    if (!cn && en->type != NBL_JSON_ARRAY) {
        nbl_set_err(c->err, NBL_E_FORMAT, "\"enum\" at %s must be an array", path);
        return -1;
    }
    nbl_sb b = {0};
    size_t *off = malloc((nv + 1) * sizeof *off);
    lit_src *src = malloc((nv + 1) * sizeof *src);
    int32_t node = -1, k = 0;
    if (!off || !src) {
        c_oom(c);
        goto done;
    }
    for (size_t i = 0; i < nv; i++) {
        if (!value_has_type(&vals[i], tmask)) continue;
        off[k++] = b.n;
        nbl_sb_json(&b, &vals[i]);
    }
    off[k] = b.n;
    if (b.oom) {
        c_oom(c);
        goto done;
    }
    if (!k) {
        nbl_set_err(c->err, NBL_E_FORMAT, "\"%s\" at %s admits no value%s", cn ? "const" : "enum",
                    path, tmask == 127 ? "" : " of the given type");
        goto done;
    }
    for (int32_t i = 0; i < k; i++) src[i] = (lit_src){b.p + off[i], (uint32_t)(off[i + 1] - off[i]), i};
    node = add_lits(c->g, src, k, 0, NULL);
    if (node < 0) c_oom(c);
done:
    nbl_sb_free(&b);
    free(off);
    free(src);
    return node;
}

static int32_t compile(cctx *c, const nbl_json *s, const char *path, int depth) {
    nbl_grammar *g = c->g;
    if (s->type == NBL_JSON_BOOL) {
        if (s->b) return N_ANY;
        nbl_set_err(c->err, NBL_E_UNSUPPORTED, "schema false at %s admits nothing", path);
        return -1;
    }
    if (s->type != NBL_JSON_OBJECT) {
        nbl_set_err(c->err, NBL_E_FORMAT, "schema at %s must be an object or a boolean", path);
        return -1;
    }
    if (depth > MAX_SCHEMA_DEPTH) {
        nbl_set_err(c->err, NBL_E_UNSUPPORTED, "schema nesting deeper than %d at %s",
                    MAX_SCHEMA_DEPTH, path);
        return -1;
    }
    for (size_t i = 0; i < s->len; i++) {
        const char *k = s->keys[i];
        if (!in_list(SUPPORTED, k) && !in_list(IGNORED, k)) {
            nbl_set_err(c->err, NBL_E_UNSUPPORTED, "unsupported JSON Schema keyword \"%s\" at %s",
                        k, path);
            return -1;
        }
    }
    int tmask = 0;
    const nbl_json *ty = nbl_json_get(s, "type");
    if (ty) {
        size_t n = ty->type == NBL_JSON_ARRAY ? ty->len : 1;
        for (size_t i = 0; i < n; i++) {
            const nbl_json *t = ty->type == NBL_JSON_ARRAY ? &ty->items[i] : ty;
            int bit = 0;
            for (int k = 0; t->type == NBL_JSON_STRING && TYPE_NAMES[k]; k++)
                if (!strcmp(t->str, TYPE_NAMES[k])) bit = 1 << k;
            if (!bit) {
                nbl_set_err(c->err, NBL_E_FORMAT, "unknown \"type\" %s%s%s at %s",
                            t->type == NBL_JSON_STRING ? "\"" : "",
                            t->type == NBL_JSON_STRING ? t->str : "(not a string)",
                            t->type == NBL_JSON_STRING ? "\"" : "", path);
                return -1;
            }
            tmask |= bit;
        }
        if (!tmask) {
            nbl_set_err(c->err, NBL_E_FORMAT, "empty \"type\" list at %s", path);
            return -1;
        }
    }
    if (nbl_json_get(s, "enum") || nbl_json_get(s, "const"))
        return compile_enum(c, s, tmask ? tmask : 127, path);
    if (!tmask) { /* no type: infer it from the keywords, else any value */
        if (nbl_json_get(s, "properties") || nbl_json_get(s, "required") ||
            nbl_json_get(s, "additionalProperties"))
            tmask = T_OBJ;
        else if (nbl_json_get(s, "items") || nbl_json_get(s, "minItems") ||
                 nbl_json_get(s, "maxItems"))
            tmask = T_ARR;
        else if (nbl_json_get(s, "minLength") || nbl_json_get(s, "maxLength"))
            tmask = T_STR;
        else if (nbl_json_get(s, "minimum") || nbl_json_get(s, "maximum") ||
                 nbl_json_get(s, "exclusiveMinimum") || nbl_json_get(s, "exclusiveMaximum"))
            tmask = T_NUM;
        else
            return N_ANY;
    }
    if (tmask & T_NUM) tmask &= ~T_INT; /* numbers include integers */
    if ((tmask & (tmask - 1)) == 0) return compile_typed(c, s, tmask, path, depth);
    int32_t alt[5] = {-1, -1, -1, -1, -1};
    const int kinds[5] = {T_OBJ, T_ARR, T_STR, T_NUM | T_INT, T_BOOL | T_NULL};
    for (int i = 0; i < 4; i++)
        if (tmask & kinds[i]) {
            alt[i] = compile_typed(c, s, tmask & kinds[i], path, depth);
            if (alt[i] < 0) return -1;
        }
    if (tmask & (T_BOOL | T_NULL)) {
        lit_src l[3];
        int32_t n = 0;
        if (tmask & T_BOOL) l[n++] = (lit_src){"true", 4, 0}, l[n++] = (lit_src){"false", 5, 1};
        if (tmask & T_NULL) l[n++] = (lit_src){"null", 4, 2};
        alt[4] = add_lits(g, l, n, 0, NULL);
        if (alt[4] < 0) return c_oom(c);
    }
    int32_t u = add_node(g, G_UNION);
    if (u < 0) return c_oom(c);
    gnode *nd = &g->nodes[u];
    nd->a = alt[0], nd->b = alt[1], nd->c = alt[2], nd->d = alt[3], nd->e = alt[4];
    return u;
}

nbl_grammar *nbl_grammar_new_json_schema(const char *schema_json, size_t len, nbl_error *err) {
    if (!schema_json) {
        nbl_set_err(err, NBL_E_ARG, "JSON schema: NULL text");
        return NULL;
    }
    nbl_error perr = {0};
    nbl_json *j = nbl_json_parse(schema_json, len, &perr);
    if (!j) {
        nbl_set_err(err, perr.code ? perr.code : NBL_E_FORMAT, "JSON schema is not valid JSON: %s",
                    perr.msg);
        return NULL;
    }
    nbl_grammar *g = grammar_alloc(err);
    if (!g) {
        nbl_json_free(j);
        return NULL;
    }
    cctx c = {g, err};
    int32_t r = compile(&c, j, "$", 0);
    nbl_json_free(j);
    if (r < 0) {
        nbl_grammar_free(g);
        return NULL;
    }
    g->root = r;
    return g;
}
