/* test_grammar.c — constrained decoding: seeded random generation under every grammar must end
 * within a bound and parse and validate (with a validator written here, independent of the
 * grammar code); masks must equal per-token brute force (independently for choices); bad
 * schemas name keyword and path; and the mask cost on the real Qwen2.5 vocabulary is printed. */
#include "nbl_impl.h"
#include "test.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* ---- rng ------------------------------------------------------------------------------------ */

static uint64_t rs;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rs += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double rndf(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* ---- a synthetic vocabulary --------------------------------------------------------------- */

#define MAXV 2048
static char *vb[MAXV];
static int32_t vl[MAXV];
static int32_t nvocab, eog_id, empty_id;

static void vadd(const char *s, int32_t len) {
    vb[nvocab] = malloc(len ? (size_t)len : 1);
    memcpy(vb[nvocab], s, (size_t)len);
    vl[nvocab++] = len;
}
static void vadds(const char *s) { vadd(s, (int32_t)strlen(s)); }

static void build_vocab(void) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        vadd(&c, 1);
    }
    static const char *const words[] = {
        "{\"", "\":", "\": ", "\", \"", "\",\"", "\"}", "\"]", "\"],", "\"},", "true", "false",
        "null", "tr", "ue", "fal", "se", "nu", "ll", "}}", "]}", "},", "],", "[{", "[\"", "[[",
        ", ", ",\"", ", \"", "12", "000", "3.14", "-1", "e+", "E-5", ".5", "0.", "  ", "\n",
        "\n  ", " \"", "name", "age", "ok", "title", "tags", "meta", "score", "kind", "red",
        "green", "blue", "hello", " world", "\xC3\xA9", "\xE4\xB8\xAD\xE6\x96\x87", "\xE4\xB8",
        "\xAD", "\xF0\x9F\x98\x80", "\xF0\x9F", "\x98\x80", "\\n", "\\u00", "\\u0041", "\\\"",
        "\\\\", "\\ud83d", "\\uDFFF", "abc\"", "yes", "no", "maybe", "n/a", "yes please",
        " please", "ye", "s", "may", "be", "\"name\"", "\"age\":", "\"tags\": [", "99", "1e5",
        "-0", "0", "1", "2", "7", "255", "123456789", "0.000001", "\xED\xA0\x80", "\xC0\xAF",
        "\xE0\x80", "\x01", "a\tb", "\x7F", "\"title\": \"", "\"a\":[1,2],\"b\":\"x\"}", NULL};
    for (int i = 0; words[i]; i++) vadds(words[i]);
    vadds("yes"); /* a duplicate: both ids must be allowed together */
    /* Random short strings over the bytes that matter to JSON, plus a few arbitrary ones. */
    static const char alpha[] = "{}[]\":, -0123456789.eE+truefalsn abcxyz\\/";
    rs = 12345;
    for (int i = 0; i < 320; i++) {
        char s[8];
        int len = 2 + (int)(rnd() % 5);
        for (int k = 0; k < len; k++)
            s[k] = (i % 8 == 7) ? (char)(rnd() & 0xFF) : alpha[rnd() % (sizeof alpha - 1)];
        vadd(s, len);
    }
    empty_id = nvocab;
    vadd("", 0); /* a control token: no text, never allowed */
    eog_id = nvocab;
    vadd("", 0);
}

/* ---- an independent validator --------------------------------------------------------------- */

static size_t cp_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
    return c;
}

static int jeq(const nbl_json *a, const nbl_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case NBL_JSON_NULL: return 1;
    case NBL_JSON_BOOL: return a->b == b->b;
    case NBL_JSON_NUMBER: return a->num == b->num;
    case NBL_JSON_STRING: return a->len == b->len && !memcmp(a->str, b->str, a->len);
    case NBL_JSON_ARRAY:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!jeq(&a->items[i], &b->items[i])) return 0;
        return 1;
    default:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++) {
            const nbl_json *o = nbl_json_get(b, a->keys[i]);
            if (!o || !jeq(&a->items[i], o)) return 0;
        }
        return 1;
    }
}

static int type_ok(const nbl_json *v, const char *t) {
    if (!strcmp(t, "object")) return v->type == NBL_JSON_OBJECT;
    if (!strcmp(t, "array")) return v->type == NBL_JSON_ARRAY;
    if (!strcmp(t, "string")) return v->type == NBL_JSON_STRING;
    if (!strcmp(t, "number")) return v->type == NBL_JSON_NUMBER;
    if (!strcmp(t, "integer")) return v->type == NBL_JSON_NUMBER && v->num == floor(v->num);
    if (!strcmp(t, "boolean")) return v->type == NBL_JSON_BOOL;
    if (!strcmp(t, "null")) return v->type == NBL_JSON_NULL;
    return 0;
}

static char why[1024];
#define BAD(...) (snprintf(why, sizeof why, __VA_ARGS__), 0)

/* Limits applied to values the schema leaves free ({} or object without properties). */
static int lim_depth = 3, lim_items = 4, lim_string = 8;

static int validate_free(const nbl_json *v, int depth) {
    if (v->type == NBL_JSON_STRING && cp_count(v->str, v->len) > (size_t)lim_string)
        return BAD("free string longer than %d", lim_string);
    if (v->type == NBL_JSON_OBJECT || v->type == NBL_JSON_ARRAY) {
        if (depth >= lim_depth) return BAD("free container deeper than %d", lim_depth);
        if (v->len > (size_t)lim_items) return BAD("free container with %zu items", v->len);
        for (size_t i = 0; i < v->len; i++) {
            if (v->type == NBL_JSON_OBJECT && cp_count(v->keys[i], strlen(v->keys[i])) > (size_t)lim_string)
                return BAD("free key too long");
            if (!validate_free(&v->items[i], depth + 1)) return 0;
        }
    }
    return 1;
}

static int validate(const nbl_json *v, const nbl_json *s) {
    if (s->type == NBL_JSON_BOOL) return s->b ? validate_free(v, 0) : BAD("false schema");
    const nbl_json *en = nbl_json_get(s, "enum"), *cn = nbl_json_get(s, "const");
    if (cn && !jeq(v, cn)) return BAD("const mismatch");
    if (en) {
        size_t i = 0;
        while (i < en->len && !jeq(v, &en->items[i])) i++;
        if (i == en->len) return BAD("not in enum");
    }
    const nbl_json *ty = nbl_json_get(s, "type");
    if (ty) {
        int ok = 0;
        if (ty->type == NBL_JSON_STRING) ok = type_ok(v, ty->str);
        for (size_t i = 0; ty->type == NBL_JSON_ARRAY && i < ty->len; i++)
            ok |= type_ok(v, ty->items[i].str);
        if (!ok) return BAD("wrong type %d", v->type);
    } else if (!en && !cn && !nbl_json_get(s, "properties") && !nbl_json_get(s, "items")) {
        return validate_free(v, 0);
    }
    const nbl_json *x;
    if (v->type == NBL_JSON_OBJECT) {
        const nbl_json *props = nbl_json_get(s, "properties");
        if (!props && !en && !cn) return validate_free(v, 0);
        size_t last = 0;
        for (size_t i = 0; props && i < v->len; i++) {
            size_t k = 0;
            while (k < props->len && strcmp(props->keys[k], v->keys[i])) k++;
            if (k == props->len) return BAD("extra property %s", v->keys[i]);
            if (i > 0 && k <= last) return BAD("property %s out of schema order", v->keys[i]);
            last = k;
            if (!validate(&v->items[i], &props->items[k])) return 0;
        }
        x = nbl_json_get(s, "required");
        for (size_t i = 0; x && i < x->len; i++)
            if (!nbl_json_get(v, x->items[i].str)) return BAD("missing %s", x->items[i].str);
    }
    if (v->type == NBL_JSON_ARRAY) {
        const nbl_json *it = nbl_json_get(s, "items");
        for (size_t i = 0; i < v->len; i++)
            if (!(it ? validate(&v->items[i], it) : validate_free(&v->items[i], 0))) return 0;
        if ((x = nbl_json_get(s, "minItems")) && v->len < (size_t)x->num) return BAD("minItems");
        if ((x = nbl_json_get(s, "maxItems")) && v->len > (size_t)x->num) return BAD("maxItems");
    }
    if (v->type == NBL_JSON_STRING) {
        size_t n = cp_count(v->str, v->len);
        if ((x = nbl_json_get(s, "minLength")) && n < (size_t)x->num) return BAD("minLength");
        if ((x = nbl_json_get(s, "maxLength")) && n > (size_t)x->num) return BAD("maxLength");
        if (!x && !en && !cn && n > (size_t)lim_string) return BAD("string over the limit");
    }
    if (v->type == NBL_JSON_NUMBER) {
        if ((x = nbl_json_get(s, "minimum")) && v->num < x->num) return BAD("minimum");
        if ((x = nbl_json_get(s, "maximum")) && v->num > x->num) return BAD("maximum");
        if ((x = nbl_json_get(s, "exclusiveMinimum")) && v->num <= x->num) return BAD("exclMin");
        if ((x = nbl_json_get(s, "exclusiveMaximum")) && v->num >= x->num) return BAD("exclMax");
    }
    return 1;
}

/* Whitespace outside strings: only one space, right after ':' or ','. */
static int ws_ok(const char *t, size_t n) {
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (in) {
            if (c == '\\') i++;
            else if (c == '"') in = 0;
            continue;
        }
        if (c == '"') in = 1;
        else if (c == '\n' || c == '\t' || c == '\r') return 0;
        else if (c == ' ' && (i == 0 || (t[i - 1] != ':' && t[i - 1] != ',') ||
                              (i + 1 < n && t[i + 1] == ' ')))
            return 0;
    }
    return 1;
}

/* ---- drivers -------------------------------------------------------------------------------- */

static int has_bit(const uint32_t *b, int32_t t) { return (b[t / 32] >> (t % 32)) & 1; }

/* Picks an allowed token. mode 0: uniform; 1: long tokens first; 2: "stubborn", avoiding
 * closing bytes and the end so the bounds get reached; 3: eager to close. */
static int32_t pick(const uint32_t *bits, int mode) {
    double tot = 0, w[MAXV];
    for (int32_t t = 0; t < nvocab; t++) {
        w[t] = 0;
        if (!has_bit(bits, t)) continue;
        double x = 1;
        int closing = t == eog_id || (vl[t] && strchr("}]\"", vb[t][0]));
        if (mode == 1) x = (double)(vl[t] * vl[t]) + 0.5;
        if (mode == 2) x = closing ? 0.02 : 1;
        if (mode == 3) x = closing ? 50 : 1;
        w[t] = x;
        tot += x;
    }
    double r = rndf() * tot;
    int32_t last = -1;
    for (int32_t t = 0; t < nvocab; t++) {
        if (w[t] <= 0) continue;
        last = t;
        if ((r -= w[t]) < 0) return t;
    }
    return last;
}

/* Mask vs. per-token brute force through a cloned matcher. */
static int brute_same(nbl_grammar_matcher *m, const uint32_t *bits) {
    int can = nbl_grammar_matcher_can_end(m);
    for (int32_t t = 0; t < nvocab; t++) {
        int want;
        if (t == eog_id) want = can;
        else if (!vl[t]) want = 0;
        else {
            nbl_grammar_matcher *c = nbl_grammar_matcher_clone(m, NULL);
            want = nbl_grammar_matcher_accept_bytes(c, vb[t], (size_t)vl[t], NULL) == NBL_OK;
            nbl_grammar_matcher_free(c);
        }
        if (want != has_bit(bits, t)) {
            fprintf(stderr, "  token %d (%.*s): mask %d, brute force %d\n", t, vl[t], vb[t],
                    has_bit(bits, t), want);
            return 0;
        }
    }
    return 1;
}

typedef struct runstat {
    int ok, runs, max_tokens;
    long steps;
} runstat;

/* Generates with seeded random sampling; every output must end and validate (schema may be
 * NULL: generic JSON object; choices: the choice grammar). */
static void drive(const char *name, nbl_grammar *g, const nbl_grammar_vocab *v,
                  const nbl_json *schema, const char *const *choices, int n_choices, int runs,
                  int brute_runs) {
    nbl_error e = {0};
    nbl_grammar_matcher *m = nbl_grammar_matcher_new(g, v, &e);
    CHECK(m, "%s: matcher: %s", name, e.msg);
    if (!m) return;
    uint32_t bits[(MAXV + 31) / 32];
    char text[65536];
    runstat st = {0};
    const int bound = 20000;
    int fails = 0;
    for (int run = 0; run < runs; run++) {
        rs = 1000003ULL * (uint64_t)run + 17;
        int mode = run % 4;
        nbl_grammar_matcher_reset(m);
        size_t n = 0;
        int ended = 0, steps = 0, bad = 0;
        for (; steps < bound && !ended; steps++) {
            int32_t cnt = nbl_grammar_matcher_mask(m, bits);
            if (cnt <= 0) {
                bad = 1;
                snprintf(why, sizeof why, "empty mask after %zu bytes", n);
                break;
            }
            if (nbl_grammar_matcher_done(m) && (cnt != 1 || !has_bit(bits, eog_id))) {
                bad = 1;
                snprintf(why, sizeof why, "done but %d tokens allowed", cnt);
                break;
            }
            if (has_bit(bits, empty_id)) {
                bad = 1;
                snprintf(why, sizeof why, "control token allowed");
                break;
            }
            /* EOG allowed exactly when the text so far is a complete valid output. */
            int complete;
            if (choices) {
                complete = 0;
                for (int i = 0; i < n_choices; i++)
                    complete |= strlen(choices[i]) == n && !memcmp(choices[i], text, n);
            } else {
                nbl_json *j = nbl_json_parse(text, n, NULL);
                complete = j && (schema ? validate(j, schema)
                                        : (j->type == NBL_JSON_OBJECT && validate_free(j, 0)));
                nbl_json_free(j);
            }
            if (complete != has_bit(bits, eog_id)) {
                bad = 1;
                snprintf(why, sizeof why, "end allowed %d but text complete %d: %.*s",
                         has_bit(bits, eog_id), complete, (int)n, text);
                break;
            }
            if (run < brute_runs) {
                if (!brute_same(m, bits)) {
                    bad = 1;
                    snprintf(why, sizeof why, "mask differs from brute force after: %.*s",
                             (int)n, text);
                    break;
                }
                if (choices) { /* independent: some choice extends text + token */
                    for (int32_t t = 0; t < nvocab && !bad; t++) {
                        int want = 0;
                        if (t == eog_id) want = complete;
                        else if (vl[t])
                            for (int i = 0; i < n_choices; i++) {
                                size_t cl = strlen(choices[i]);
                                want |= cl >= n + (size_t)vl[t] && !memcmp(choices[i], text, n) &&
                                        !memcmp(choices[i] + n, vb[t], (size_t)vl[t]);
                            }
                        if (want != has_bit(bits, t)) {
                            bad = 1;
                            snprintf(why, sizeof why, "choice mask wrong for token %d", t);
                        }
                    }
                    if (bad) break;
                }
            }
            int32_t t = pick(bits, mode);
            if (nbl_grammar_matcher_accept(m, t, &e) != NBL_OK) {
                bad = 1;
                snprintf(why, sizeof why, "accept(%d) refused: %s", t, e.msg);
                break;
            }
            if (t == eog_id) {
                ended = 1;
            } else {
                if (n + (size_t)vl[t] >= sizeof text) {
                    bad = 1;
                    snprintf(why, sizeof why, "output too long");
                    break;
                }
                memcpy(text + n, vb[t], (size_t)vl[t]);
                n += (size_t)vl[t];
            }
        }
        st.steps += steps;
        if (steps > st.max_tokens) st.max_tokens = steps;
        if (!bad && !ended) {
            bad = 1;
            snprintf(why, sizeof why, "no end within %d tokens", bound);
        }
        if (!bad && choices) {
            int hit = 0;
            for (int i = 0; i < n_choices; i++)
                hit |= strlen(choices[i]) == n && !memcmp(choices[i], text, n);
            if (!hit) bad = 1, snprintf(why, sizeof why, "not one of the choices");
        } else if (!bad) {
            nbl_error pe = {0};
            nbl_json *j = nbl_json_parse(text, n, &pe);
            if (!j) {
                bad = 1;
                snprintf(why, sizeof why, "does not parse (%s)", pe.msg);
            } else if (!(schema ? validate(j, schema) : (j->type == NBL_JSON_OBJECT && validate_free(j, 0)))) {
                bad = 1;
            } else if (!ws_ok(text, n)) {
                bad = 1;
                snprintf(why, sizeof why, "whitespace policy broken");
            }
            nbl_json_free(j);
        }
        if (bad && fails++ < 3)
            fprintf(stderr, "  %s run %d (mode %d): %s\n  text: %.*s\n", name, run, mode, why,
                    (int)(n > 300 ? 300 : n), text);
        st.ok += !bad;
        st.runs++;
    }
    CHECK(st.ok == st.runs, "%s: %d of %d runs valid", name, st.ok, st.runs);
    printf("  %-28s %3d/%d valid, %.1f tokens/run, longest %d\n", name, st.ok, st.runs,
           (double)st.steps / st.runs, st.max_tokens);
    nbl_grammar_matcher_free(m);
}

static nbl_grammar_limits small_limits(void) {
    nbl_grammar_limits l;
    nbl_grammar_limits_init(&l);
    l.max_depth = lim_depth;
    l.max_items = lim_items;
    l.max_string = lim_string;
    l.max_int_digits = 6;
    l.max_frac_digits = 4;
    return l;
}

static void test_schemas(const nbl_grammar_vocab *v) {
    static const char *const schemas[][2] = {
        {"object+required", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                            "\"maxLength\":8},\"age\":{\"type\":\"integer\",\"minimum\":0,"
                            "\"maximum\":150},\"ok\":{\"type\":\"boolean\"}},\"required\":"
                            "[\"name\",\"age\"]}"},
        {"object, all optional", "{\"properties\":{\"a\":{\"type\":\"null\"},\"ab\":{\"type\":"
                                 "\"integer\"},\"b\":{\"const\":\"x\"}}}"},
        {"object, last required", "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"boolean\"},"
                                  "\"xy\":{\"type\":\"boolean\"},\"y\":{\"type\":\"null\"}},"
                                  "\"required\":[\"y\"]}"},
        {"array min/maxItems", "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                               "\"minItems\":1,\"maxItems\":4}"},
        {"string min/maxLength", "{\"type\":\"string\",\"minLength\":2,\"maxLength\":6}"},
        {"enum", "{\"enum\":[\"red\",\"green\",\"blue\",\"r\",1,12,2.5,-3,true,null,[1,\"a\"],"
                 "{\"k\":\"v\"},\"a\\\"b\\\\c\\n\",\"\\u00e9\"]}"},
        {"const object", "{\"const\":{\"a\":[1,2],\"b\":\"x\"}}"},
        {"number range", "{\"type\":\"number\",\"minimum\":-2.5,\"maximum\":10}"},
        {"number exclusive", "{\"type\":\"number\",\"exclusiveMinimum\":0,"
                             "\"exclusiveMaximum\":0.3}"},
        {"number", "{\"type\":\"number\"}"},
        {"integer range", "{\"type\":\"integer\",\"minimum\":-20,\"maximum\":300}"},
        {"integer narrow", "{\"type\":\"integer\",\"minimum\":97,\"maximum\":103}"},
        {"integer negative", "{\"type\":\"integer\",\"maximum\":-10,\"minimum\":-12}"},
        {"integer", "{\"type\":\"integer\"}"},
        {"boolean", "{\"type\":\"boolean\"}"},
        {"string or null", "{\"type\":[\"string\",\"null\"],\"maxLength\":3}"},
        {"any value", "{}"},
        {"any object", "{\"type\":\"object\"}"},
        {"nested", "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\","
                   "\"maxLength\":20},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
                   "\"maxLength\":5},\"maxItems\":3},\"meta\":{\"type\":\"object\",\"properties\":"
                   "{\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},\"kind\":{\"enum\":"
                   "[\"a\",\"b\"]},\"any\":{}},\"required\":[\"kind\"]},\"list\":{\"type\":\"array\","
                   "\"items\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}},"
                   "\"required\":[\"id\"]},\"minItems\":2,\"maxItems\":2}},\"required\":[\"title\","
                   "\"tags\"],\"description\":\"ignored\"}"},
    };
    nbl_grammar_limits lim = small_limits();
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        nbl_error e = {0};
        const char *src = schemas[i][1];
        nbl_grammar *g = nbl_grammar_new_json_schema(src, strlen(src), &e);
        CHECK(g, "%s: %s", schemas[i][0], e.msg);
        if (!g) continue;
        CHECK(nbl_grammar_set_limits(g, &lim, &e) == NBL_OK, "limits: %s", e.msg);
        nbl_json *s = nbl_json_parse(src, strlen(src), NULL);
        drive(schemas[i][0], g, v, s, NULL, 0, 200, 8);
        nbl_json_free(s);
        nbl_grammar_free(g);
    }
    nbl_error e = {0};
    nbl_grammar *g = nbl_grammar_new_json(&e);
    CHECK(g, "json grammar: %s", e.msg);
    if (g) {
        nbl_grammar_set_limits(g, &lim, &e);
        drive("generic JSON object", g, v, NULL, NULL, 0, 200, 8);
        /* Compact mode: no spaces at all. */
        lim.space = 0;
        nbl_grammar_set_limits(g, &lim, &e);
        nbl_grammar_matcher *m = nbl_grammar_matcher_new(g, v, &e);
        CHECK(m && nbl_grammar_matcher_accept_bytes(m, "{\"a\":", 5, &e) == NBL_OK &&
                  nbl_grammar_matcher_accept_bytes(m, " ", 1, &e) != NBL_OK,
              "compact mode refuses the space after ':'");
        nbl_grammar_matcher_free(m);
        nbl_grammar_free(g);
    }
}

static void test_choice(const nbl_grammar_vocab *v) {
    static const char *const ch[] = {"yes", "no", "maybe", "n/a", "yes please", "\xE4\xB8\xAD",
                                     "y", "no"};
    nbl_error e = {0};
    nbl_grammar *g = nbl_grammar_new_choice(ch, 8, &e);
    CHECK(g, "choice: %s", e.msg);
    if (!g) return;
    drive("choice", g, v, NULL, ch, 8, 200, 200);
    nbl_grammar_free(g);
    /* A choice that is itself free text: the output need not be JSON, so check by hand. */
    static const char *const ch2[] = {"A", "B{", "C\"D"};
    g = nbl_grammar_new_choice(ch2, 3, &e);
    nbl_grammar_matcher *m = g ? nbl_grammar_matcher_new(g, v, &e) : NULL;
    CHECK(m && nbl_grammar_matcher_accept_bytes(m, "B", 1, &e) == NBL_OK &&
              !nbl_grammar_matcher_can_end(m) && nbl_grammar_matcher_accept_bytes(m, "{", 1, &e) == NBL_OK &&
              nbl_grammar_matcher_done(m) && nbl_grammar_matcher_accept(m, eog_id, &e) == NBL_OK &&
              nbl_grammar_matcher_mask(m, (uint32_t[(MAXV + 31) / 32]){0}) == 0,
          "non-JSON choice B{");
    nbl_grammar_matcher_free(m);
    nbl_grammar_free(g);
    CHECK(!nbl_grammar_new_choice(NULL, 0, &e) && e.code == NBL_E_ARG, "no choices refused");
}

/* The API contract around accept / apply. */
static void test_api(const nbl_grammar_vocab *v) {
    nbl_error e = {0};
    const char *src = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                      "\"required\":[\"a\"]}";
    nbl_grammar *g = nbl_grammar_new_json_schema(src, strlen(src), &e);
    nbl_grammar_matcher *m = g ? nbl_grammar_matcher_new(g, v, &e) : NULL;
    CHECK(m, "api matcher: %s", e.msg);
    if (!m) return;
    int32_t brace = '{', quote = '"';
    CHECK(nbl_grammar_matcher_accept(m, quote, &e) == NBL_E_ARG, "'\"' refused at start");
    CHECK(nbl_grammar_matcher_accept(m, eog_id, &e) == NBL_E_ARG, "early end refused");
    CHECK(nbl_grammar_matcher_accept(m, empty_id, &e) == NBL_E_ARG, "control token refused");
    CHECK(nbl_grammar_matcher_accept(m, -1, &e) == NBL_E_ARG &&
              nbl_grammar_matcher_accept(m, nvocab, &e) == NBL_E_ARG,
          "ids out of range refused");
    CHECK(nbl_grammar_matcher_accept(m, brace, &e) == NBL_OK, "'{' accepted: %s", e.msg);
    /* A refused token leaves the state unchanged. */
    CHECK(nbl_grammar_matcher_accept_bytes(m, "\"a\":x", 5, &e) == NBL_E_ARG, "bad bytes refused");
    CHECK(nbl_grammar_matcher_accept_bytes(m, "\"a\": 1", 6, &e) == NBL_OK, "state intact");
    uint32_t bits[(MAXV + 31) / 32];
    float logits[MAXV + 10];
    for (int i = 0; i < MAXV + 10; i++) logits[i] = (float)i;
    int32_t c1 = nbl_grammar_matcher_mask(m, bits);
    int32_t c2 = nbl_grammar_matcher_apply(m, logits, nvocab + 10);
    int same = c1 == c2 && c1 > 0;
    for (int32_t t = 0; t < nvocab + 10; t++)
        same &= (t < nvocab && has_bit(bits, t)) ? logits[t] == (float)t : logits[t] == -INFINITY;
    CHECK(same, "apply agrees with mask (%d vs %d)", c1, c2);
    CHECK(!nbl_grammar_matcher_can_end(m) && !nbl_grammar_matcher_done(m), "not complete yet");
    CHECK(nbl_grammar_matcher_accept_bytes(m, "}", 1, &e) == NBL_OK && nbl_grammar_matcher_done(m) &&
              nbl_grammar_matcher_can_end(m),
          "complete after '}'");
    CHECK(nbl_grammar_matcher_accept(m, eog_id, &e) == NBL_OK && nbl_grammar_matcher_done(m) &&
              !nbl_grammar_matcher_can_end(m) && nbl_grammar_matcher_mask(m, bits) == 0 &&
              nbl_grammar_matcher_accept(m, brace, &e) == NBL_E_STATE,
          "finished after end of generation");
    nbl_grammar_matcher_reset(m);
    CHECK(nbl_grammar_matcher_accept(m, brace, &e) == NBL_OK, "reset");
    nbl_grammar_matcher_free(m);
    nbl_grammar_free(g);

    /* Out-of-range numbers in enum are written back exactly. */
    src = "{\"enum\":[0.1,1e300,-1e-7,123456789012345680000]}";
    g = nbl_grammar_new_json_schema(src, strlen(src), &e);
    CHECK(g, "enum of numbers: %s", e.msg);
    const char *ok[] = {"0.1", "1e+300", "-1e-07", "1.2345678901234568e+20"};
    for (int i = 0; g && i < 4; i++) {
        m = nbl_grammar_matcher_new(g, v, &e);
        CHECK(m && nbl_grammar_matcher_accept_bytes(m, ok[i], strlen(ok[i]), &e) == NBL_OK &&
                  nbl_grammar_matcher_can_end(m),
              "enum number %s: %s", ok[i], e.msg);
        nbl_grammar_matcher_free(m);
    }
    nbl_grammar_free(g);

    CHECK(!nbl_grammar_vocab_new(NULL, NULL, 0, NULL, 0, &e) && e.code == NBL_E_ARG,
          "empty vocabulary refused");
    int32_t bad_eog = 5;
    const char *one[1] = {"a"};
    int32_t one_len[1] = {1};
    CHECK(!nbl_grammar_vocab_new(one, one_len, 1, &bad_eog, 1, &e) && e.code == NBL_E_ARG,
          "out-of-range end-of-generation id refused");
}

static void test_bad_schemas(void) {
    static const char *const bad[][3] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "\"pattern\"", " at $"},
        {"{\"type\":\"object\",\"properties\":{\"mail\":{\"type\":\"string\",\"format\":\"email\"}}}",
         "\"format\"", "$.properties.mail"},
        {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "\"anyOf\"", " at $"},
        {"{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/x\"}}", "\"$ref\"", "$.items"},
        {"{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"k\":{\"oneOf\":[]}}}}",
         "\"oneOf\"", "$.items.properties.k"},
        {"{\"type\":\"widget\"}", "\"widget\"", "$"},
        {"{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", "minLength", "$"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "minItems", "$"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "\"b\"", "$"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "bounds", "$"},
        {"{\"type\":\"integer\",\"minimum\":0.2,\"maximum\":0.8}", "bounds", "$"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
         "\"additionalProperties\":true}", "additionalProperties", "$"},
        {"{\"enum\":[]}", "enum", "$"},
        {"{\"type\":\"string\",\"enum\":[1,2]}", "enum", "$"},
        {"{\"properties\":{\"a\":{\"maxLength\":-1}}}", "maxLength", "$.properties.a"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", "\"items\"", "$"},
        {"{\"properties\":{\"a\":{\"not\":{}}}}", "\"not\"", "$.properties.a"},
        {"{", "not valid JSON", "1:2"},
        {"[1]", "must be an object", "$"},
        {"false", "false", "$"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nbl_error e = {0};
        nbl_grammar *g = nbl_grammar_new_json_schema(bad[i][0], strlen(bad[i][0]), &e);
        CHECK(!g && e.code != NBL_OK && strstr(e.msg, bad[i][1]) && strstr(e.msg, bad[i][2]),
              "bad schema %s: got \"%s\" (want %s ... %s)", bad[i][0], e.msg, bad[i][1],
              bad[i][2]);
        nbl_grammar_free(g);
    }
    /* Deep nesting is refused with a message, not a crash. */
    char deep[4096];
    size_t n = 0;
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{}");
    for (int i = 0; i < 40; i++) deep[n++] = '}';
    nbl_error e = {0};
    nbl_grammar *g = nbl_grammar_new_json_schema(deep, n, &e);
    CHECK(!g && strstr(e.msg, "deeper"), "deep schema: %s", e.msg);
    nbl_grammar_free(g);
}

/* ---- the real Qwen2.5 vocabulary ------------------------------------------------------------ */

/* GPT-2 byte-level BPE: printable bytes stand for themselves, the rest map to U+0100 on. */
static int byte_of_cp[512];

static void init_byte_map(void) {
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) byte_of_cp[b] = b;
        else byte_of_cp[256 + n++] = b;
    }
}

/* Decodes a token's UTF-8 text back to raw bytes; -1 when it is not byte-level text. */
static int32_t bpe_decode(const char *s, size_t len, char *out) {
    int32_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned c = (unsigned char)s[i];
        unsigned cp;
        if (c < 0x80) cp = c, i += 1;
        else if ((c & 0xE0) == 0xC0 && i + 1 < len) cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F), i += 2;
        else return -1;
        if (cp >= 512 || byte_of_cp[cp] < 0) return -1;
        out[k++] = (char)byte_of_cp[cp];
    }
    return k;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void test_real_vocab(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/qwen2-vocab.gguf", fixtures_dir());
    nbl_gguf *gg = NULL;
    nbl_error e = {0};
    CHECK(nbl_gguf_open_file(path, &gg, &e) == NBL_OK, "open %s: %s", path, e.msg);
    if (!gg) return;
    const nbl_gguf_value *toks = NULL, *types = NULL;
    nbl_gguf_get_arr(gg, "tokenizer.ggml.tokens", NBL_GGUF_STRING, &toks, &e);
    nbl_gguf_get_arr(gg, "tokenizer.ggml.token_type", UINT32_MAX, &types, &e);
    CHECK(toks && types && toks->arr.n == 151665, "qwen vocabulary has 151665 tokens");
    if (!toks || !types) {
        nbl_gguf_free(gg);
        return;
    }
    init_byte_map();
    lim_depth = 12, lim_items = 128, lim_string = 1024; /* the default limits */
    int32_t n = (int32_t)toks->arr.n, n_eog = 0, eog[8], bad_text = 0;
    char **bytes = calloc((size_t)n, sizeof *bytes);
    int32_t *len = calloc((size_t)n, sizeof *len);
    for (int32_t i = 0; i < n; i++) {
        nbl_str s = toks->arr.strs[i];
        int64_t ty = nbl_gguf_arr_int(types, (uint64_t)i);
        /* End of generation as llama.cpp counts it for this vocabulary: EOS and the
         * end-of-text, FIM-pad, repo-name and file-separator tokens. */
        if (nbl_str_eq(s, "<|im_end|>") || nbl_str_eq(s, "<|endoftext|>") ||
            nbl_str_eq(s, "<|fim_pad|>") || nbl_str_eq(s, "<|repo_name|>") ||
            nbl_str_eq(s, "<|file_sep|>"))
            eog[n_eog++] = i;
        if (ty == 3 || (n_eog && eog[n_eog - 1] == i)) continue; /* control / end: no text */
        bytes[i] = malloc(s.len + 1);
        /* llama.cpp turns control-looking user-defined tokens (the FIM ones) into control
         * tokens; <tool_call> and </tool_call> stay text. */
        if (ty == 4 && s.len > 4 && !memcmp(s.ptr, "<|", 2) && !memcmp(s.ptr + s.len - 2, "|>", 2)) {
            free(bytes[i]);
            bytes[i] = NULL;
            continue;
        }
        if (ty == 4) { /* user-defined: literal text */
            memcpy(bytes[i], s.ptr, s.len);
            len[i] = (int32_t)s.len;
        } else {
            len[i] = bpe_decode(s.ptr, s.len, bytes[i]);
            if (len[i] <= 0) bad_text++, len[i] = 0;
        }
    }
    CHECK(bad_text == 0, "%d tokens are not byte-level BPE text", bad_text);
    CHECK(n_eog == 5, "five end-of-generation tokens");
    double t0 = now_us();
    nbl_grammar_vocab *v = nbl_grammar_vocab_new((const char *const *)bytes, len, n, eog, n_eog, &e);
    double t_build = now_us() - t0;
    CHECK(v, "qwen grammar vocabulary: %s", e.msg);
    const char *src =
        "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\",\"maxLength\":60},"
        "\"sentiment\":{\"enum\":[\"positive\",\"neutral\",\"negative\"]},\"score\":{\"type\":"
        "\"number\",\"minimum\":0,\"maximum\":1},\"tags\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"string\",\"maxLength\":20},\"maxItems\":5},\"reply\":{\"type\":\"string\"},\"n\":{"
        "\"type\":\"integer\"}},\"required\":[\"title\",\"sentiment\",\"score\",\"tags\",\"reply\"]}";
    nbl_grammar *g = v ? nbl_grammar_new_json_schema(src, strlen(src), &e) : NULL;
    CHECK(!v || g, "schema: %s", e.msg);
    nbl_grammar *gj = v ? nbl_grammar_new_json(&e) : NULL;
    nbl_json *schema = nbl_json_parse(src, strlen(src), NULL);
    uint32_t *bits = malloc(((size_t)n + 31) / 32 * sizeof *bits);
    /* The same vocabulary through the model API (tokenizer.c's token text and end-of-generation
     * flags) must give identical masks to the one decoded here. */
    nbl_model_options mo;
    nbl_model_options_init(&mo);
    mo.vocab_only = 1;
    nbl_model *model = NULL;
    nbl_grammar_vocab *vm = NULL;
    if (nbl_model_open_file(path, &mo, &model, &e) == NBL_OK) vm = nbl_grammar_vocab_from_model(model, &e);
    CHECK(vm && nbl_grammar_vocab_size(vm) >= n, "vocabulary from the model: %s", e.msg);
    int32_t nm = vm ? nbl_grammar_vocab_size(vm) : 0, mask_diff = 0, mask_cmp = 0;
    uint32_t *bits2 = malloc(((size_t)(nm > n ? nm : n) + 31) / 32 * sizeof *bits2);
    for (int which = 0; g && gj && which < 2; which++) {
        nbl_grammar_matcher *m = nbl_grammar_matcher_new(which ? gj : g, v, &e);
        nbl_grammar_matcher *m2 = vm ? nbl_grammar_matcher_new(which ? gj : g, vm, &e) : NULL;
        double tot = 0, tmax = 0, tstr = 0, toth = 0;
        int nstr = 0, noth = 0, valid = 0, runs = 0, total_allowed = 0;
        for (int run = 0; run < 6; run++) {
            rs = 777 + (uint64_t)run;
            nbl_grammar_matcher_reset(m);
            if (m2) nbl_grammar_matcher_reset(m2);
            char text[16384];
            size_t tl = 0;
            for (int step = 0; step < 400; step++) {
                /* The best of three: the figure is the mask's cost, not the machine's load. */
                double dt = 1e30;
                int32_t cnt = 0;
                for (int rep = 0; rep < 3; rep++) {
                    double a = now_us();
                    cnt = nbl_grammar_matcher_mask(m, bits);
                    double d = now_us() - a;
                    if (d < dt) dt = d;
                }
                tot += dt;
                if (dt > tmax) tmax = dt;
                /* Free string content: the expensive state (nearly every token allowed). */
                if (cnt > n / 2) tstr += dt, nstr++;
                else toth += dt, noth++;
                total_allowed += cnt;
                if (cnt <= 0) break;
                if (m2 && run < 2) {
                    int32_t c2 = nbl_grammar_matcher_mask(m2, bits2);
                    int same = c2 == cnt;
                    for (int32_t w = 0; same && w < (n + 31) / 32; w++) same = bits[w] == bits2[w];
                    for (int32_t t = n; same && t < nm; t++) same = !has_bit(bits2, t);
                    mask_diff += !same;
                    mask_cmp++;
                }
                /* Check a sample of tokens against byte-level brute force. */
                if (step % 25 == 3) {
                    int agree = 1;
                    for (int k = 0; k < 300; k++) {
                        int32_t t = (int32_t)(rnd() % (uint64_t)n);
                        if (!len[t]) continue;
                        nbl_grammar_matcher *c = nbl_grammar_matcher_clone(m, NULL);
                        int want = nbl_grammar_matcher_accept_bytes(c, bytes[t], (size_t)len[t], NULL) == NBL_OK;
                        nbl_grammar_matcher_free(c);
                        agree &= want == has_bit(bits, t);
                    }
                    CHECK(agree, "qwen mask agrees with brute force on sampled tokens");
                }
                /* Prefer closing the output after a while, so runs are varied yet finish. */
                int32_t pickt = -1;
                double best = -1;
                for (int k = 0; k < 64; k++) {
                    int32_t t = (int32_t)(rnd() % (uint64_t)n);
                    if (!has_bit(bits, t)) continue;
                    double w = rndf() * (len[t] + 1);
                    if (w > best) best = w, pickt = t;
                }
                if (pickt < 0 || step > 120 || rndf() < 0.15) { /* a random allowed token */
                    int32_t r = (int32_t)(rnd() % (uint64_t)cnt);
                    for (int32_t t = 0; t < n; t++)
                        if (has_bit(bits, t) && r-- == 0) {
                            pickt = t;
                            break;
                        }
                    if (step > 120) { /* steer to the end: the shortest closing move */
                        for (int32_t t = 0; t < n; t++)
                            if (has_bit(bits, t) && len[t] == 1 && strchr("\"]}0", bytes[t][0])) {
                                pickt = t;
                                break;
                            }
                        if (nbl_grammar_matcher_can_end(m)) pickt = eog[0];
                    }
                }
                if (pickt < 0) break;
                if (nbl_grammar_matcher_accept(m, pickt, &e) != NBL_OK) {
                    CHECK(0, "qwen accept: %s", e.msg);
                    break;
                }
                if (m2 && nbl_grammar_matcher_accept(m2, pickt, &e) != NBL_OK) {
                    CHECK(0, "accept on the model's vocabulary: %s", e.msg);
                    nbl_grammar_matcher_free(m2);
                    m2 = NULL;
                }
                int ended = 0;
                for (int k = 0; k < n_eog; k++) ended |= pickt == eog[k];
                if (ended) break;
                if (tl + (size_t)len[pickt] < sizeof text) {
                    memcpy(text + tl, bytes[pickt], (size_t)len[pickt]);
                    tl += (size_t)len[pickt];
                }
            }
            runs++;
            if (nbl_grammar_matcher_done(m)) {
                nbl_json *j = nbl_json_parse(text, tl, NULL);
                valid += j && (which ? j->type == NBL_JSON_OBJECT : validate(j, schema));
                nbl_json_free(j);
            }
        }
        CHECK(valid == runs, "qwen %s: %d of %d outputs complete and valid", which ? "json" : "schema",
              valid, runs);
        printf("  qwen2.5 vocab (%d tokens, built in %.0f ms), %s: mask %.0f us/token on average, "
               "max %.0f us; in free strings %.0f us (%d), elsewhere %.0f us (%d); %.0f allowed "
               "on average\n",
               n, t_build / 1000, which ? "any JSON object" : "JSON schema",
               tot / (nstr + noth), tmax, nstr ? tstr / nstr : 0, nstr, noth ? toth / noth : 0,
               noth, (double)total_allowed / (nstr + noth));
        nbl_grammar_matcher_free(m);
        nbl_grammar_matcher_free(m2);
    }
    CHECK(!vm || (mask_cmp > 100 && mask_diff == 0),
          "masks from the model's vocabulary: %d of %d differ", mask_diff, mask_cmp);
    nbl_grammar_vocab_free(vm);
    nbl_model_free(model);
    free(bits2);
    nbl_json_free(schema);
    free(bits);
    nbl_grammar_free(g);
    nbl_grammar_free(gj);
    nbl_grammar_vocab_free(v);
    for (int32_t i = 0; i < n; i++) free(bytes[i]);
    free(bytes);
    free(len);
    nbl_gguf_free(gg);
}

int main(void) {
    build_vocab();
    nbl_error e = {0};
    int32_t eog = eog_id;
    nbl_grammar_vocab *v = nbl_grammar_vocab_new((const char *const *)vb, vl, nvocab, &eog, 1, &e);
    CHECK(v && nbl_grammar_vocab_size(v) == nvocab, "synthetic vocabulary: %s", e.msg);
    double t0 = now_us();
    if (v) {
        test_api(v);
        test_choice(v);
        test_schemas(v);
    }
    test_bad_schemas();
    double t1 = now_us();
    test_real_vocab();
    double t2 = now_us();
    printf("  (synthetic %.1f s, real vocabulary %.1f s)\n", (t1 - t0) / 1e6, (t2 - t1) / 1e6);
    nbl_grammar_vocab_free(v);
    for (int i = 0; i < nvocab; i++) free(vb[i]);
    return test_done();
}
