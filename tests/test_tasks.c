/* test_tasks.c — helper tasks and constrained generation on a random-weight model with the real
 * Qwen2.5 vocabulary: every constrained output (titles, quick replies, memory facts, json_object,
 * a JSON Schema using every supported keyword) is checked by an independent validator over many
 * seeded runs; routing scores are checked against a brute-force log-likelihood computed with
 * separate sessions; tasks must leave a concurrent chat session untouched. */
#include "nbl_impl.h"
#include "test.h"

#include <math.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static nbl_model *g_model;
static int g_runs;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- an independent UTF-8 decoder and JSON Schema validator (the subset nbl.h documents) ---- */

/* Decodes one code point; returns its length or 0 when invalid (overlong, surrogate, > U+10FFFF). */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned char b = s[0];
    if (b < 0x80) return *cp = b, 1;
    int len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t v = b & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* Code points of a valid UTF-8 string, or -1. */
static long utf8_count(const char *s, size_t n) {
    long c = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!l) return -1;
        i += (size_t)l;
        c++;
    }
    return c;
}

static int json_equal(const nbl_json *a, const nbl_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case NBL_JSON_NULL: return 1;
    case NBL_JSON_BOOL: return a->b == b->b;
    case NBL_JSON_NUMBER: return a->num == b->num;
    case NBL_JSON_STRING: return a->len == b->len && !memcmp(a->str, b->str, a->len);
    case NBL_JSON_ARRAY:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!json_equal(&a->items[i], &b->items[i])) return 0;
        return 1;
    default:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++) {
            const nbl_json *o = nbl_json_get(b, a->keys[i]);
            if (!o || !json_equal(&a->items[i], o)) return 0;
        }
        return 1;
    }
}

static int type_matches(const char *t, const nbl_json *v) {
    if (!strcmp(t, "object")) return v->type == NBL_JSON_OBJECT;
    if (!strcmp(t, "array")) return v->type == NBL_JSON_ARRAY;
    if (!strcmp(t, "string")) return v->type == NBL_JSON_STRING;
    if (!strcmp(t, "number")) return v->type == NBL_JSON_NUMBER;
    if (!strcmp(t, "integer")) return v->type == NBL_JSON_NUMBER && v->num == floor(v->num);
    if (!strcmp(t, "boolean")) return v->type == NBL_JSON_BOOL;
    if (!strcmp(t, "null")) return v->type == NBL_JSON_NULL;
    return 0;
}

static double num_kw(const nbl_json *s, const char *k, double dflt) {
    const nbl_json *v = nbl_json_get(s, k);
    return v && v->type == NBL_JSON_NUMBER ? v->num : dflt;
}

/* 1 when v satisfies schema; why receives the first violation. */
static int validate(const nbl_json *s, const nbl_json *v, char *why, size_t cap) {
    const nbl_json *k;
    if ((k = nbl_json_get(s, "const")) && !json_equal(k, v)) return snprintf(why, cap, "const differs"), 0;
    if ((k = nbl_json_get(s, "enum"))) {
        int any = 0;
        for (size_t i = 0; i < k->len && !any; i++) any = json_equal(&k->items[i], v);
        if (!any) return snprintf(why, cap, "not in enum"), 0;
    }
    if ((k = nbl_json_get(s, "type"))) {
        int ok = 0;
        if (k->type == NBL_JSON_STRING) ok = type_matches(k->str, v);
        for (size_t i = 0; k->type == NBL_JSON_ARRAY && i < k->len && !ok; i++) ok = type_matches(k->items[i].str, v);
        if (!ok) return snprintf(why, cap, "wrong type"), 0;
    }
    if (v->type == NBL_JSON_STRING) {
        long n = utf8_count(v->str, v->len);
        if (n < 0) return snprintf(why, cap, "string is not UTF-8"), 0;
        if (n < num_kw(s, "minLength", 0) || n > num_kw(s, "maxLength", 1e18))
            return snprintf(why, cap, "string length %ld outside bounds", n), 0;
    }
    if (v->type == NBL_JSON_NUMBER) {
        if (v->num < num_kw(s, "minimum", -INFINITY) || v->num > num_kw(s, "maximum", INFINITY) ||
            v->num <= num_kw(s, "exclusiveMinimum", -INFINITY) || v->num >= num_kw(s, "exclusiveMaximum", INFINITY))
            return snprintf(why, cap, "number %g out of range", v->num), 0;
    }
    if (v->type == NBL_JSON_ARRAY) {
        if (v->len < num_kw(s, "minItems", 0) || v->len > num_kw(s, "maxItems", 1e18))
            return snprintf(why, cap, "%zu items outside bounds", v->len), 0;
        const nbl_json *items = nbl_json_get(s, "items");
        for (size_t i = 0; items && i < v->len; i++)
            if (!validate(items, &v->items[i], why, cap)) return 0;
    }
    const nbl_json *props = nbl_json_get(s, "properties");
    if (v->type == NBL_JSON_OBJECT && props) {
        /* Only listed properties, each once, in schema order; required ones present. */
        size_t last = 0;
        for (size_t i = 0; i < v->len; i++) {
            size_t at = props->len;
            for (size_t p = 0; p < props->len; p++)
                if (!strcmp(props->keys[p], v->keys[i])) at = p;
            if (at == props->len) return snprintf(why, cap, "unknown property %s", v->keys[i]), 0;
            if (i && at <= last) return snprintf(why, cap, "property %s out of order or repeated", v->keys[i]), 0;
            last = at;
            if (!validate(&props->items[at], &v->items[i], why, cap)) return 0;
        }
        const nbl_json *req = nbl_json_get(s, "required");
        for (size_t r = 0; req && r < req->len; r++)
            if (!nbl_json_get(v, req->items[r].str)) return snprintf(why, cap, "missing %s", req->items[r].str), 0;
    }
    return 1;
}

/* The documented normalisation: lowercase ASCII letters, ASCII digits and non-ASCII bytes. */
static void norm(const char *s, size_t n, char *out, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c >= '0' && c <= '9')) out[j++] = (char)c;
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') out[j++] = (char)(c | 0x20);
    }
    out[j] = 0;
}

/* ---- the title rules, written from nbl.h ---------------------------------------------------- */

static int title_cp_banned(uint32_t c) {
    if (c < 0x20 || c == 0x7f) return 1;
    if (c < 0x80) return strchr("\"`*#\\|<>{}[]~^", (int)c) != NULL;
    return (c >= 0x80 && c <= 0xA0) || c == 0xAB || c == 0xBB || (c >= 0x2000 && c <= 0x200F) ||
           (c >= 0x2018 && c <= 0x201F) || (c >= 0x2028 && c <= 0x202F) || c == 0x3000 ||
           (c >= 0x300C && c <= 0x300F) || c == 0xFEFF || c == 0xFF02 || c == 0xFF07;
}

static int title_ok(const char *t, int max_words, char *why, size_t cap) {
    size_t n = strlen(t);
    if (n == 0 || n > 80) return snprintf(why, cap, "length %zu", n), 0;
    if (t[0] == ' ' || t[n - 1] == ' ' || strstr(t, "  ")) return snprintf(why, cap, "spacing"), 0;
    int words = 1;
    size_t wl = 0;
    uint32_t last = 0, prev = ' ';
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_next((const unsigned char *)t + i, n - i, &cp);
        if (!l) return snprintf(why, cap, "invalid UTF-8 at %zu", i), 0;
        if (title_cp_banned(cp)) return snprintf(why, cap, "banned U+%04X", cp), 0;
        if (cp == ' ') {
            words++;
            wl = 0;
            if (prev == '\'') return snprintf(why, cap, "apostrophe ends a word"), 0;
        } else {
            if (cp == '\'' && prev == ' ') return snprintf(why, cap, "apostrophe starts a word"), 0;
            wl += (size_t)l;
            if (wl > 32) return snprintf(why, cap, "word longer than 32 bytes"), 0;
        }
        prev = last = cp;
        i += (size_t)l;
    }
    if (t[0] == '\'') return snprintf(why, cap, "leading apostrophe"), 0;
    if (words > max_words) return snprintf(why, cap, "%d words > %d", words, max_words), 0;
    if (strchr(".,;:-'", (int)(last < 0x80 ? last : 1)) || last == 0x3002)
        return snprintf(why, cap, "ends with U+%04X", last), 0;
    return 1;
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static const nbl_chat_message CONV[4][4] = {
    {{"user", "I'm Sam, a teacher in Oslo. How do I bake bread?"},
     {"assistant", "Mix flour, water, salt and yeast, knead, let it rise, then bake at 230 C."},
     {"user", "Can I use whole wheat flour?"},
     {"assistant", "Yes, but add a little more water."}},
    {{"system", "You are helpful."},
     {"user", "what's the fastest way to learn \"touch typing\"?\n\nI have 2 weeks"},
     {"assistant", "Practise 20 minutes a day with a typing tutor and never look at the keys."},
     {"user", "ok thanks"}},
    {{"user", "Wie spät ist es in Tokio, wenn es in Berlin 9 Uhr ist?"},
     {"assistant", "In Tokio ist es dann 17 Uhr (16 Uhr im Sommer)."},
     {"user", "Danke! Ich fliege nächste Woche hin."},
     {"assistant", "Gute Reise!"}},
    {{"user", "我叫李明，住在上海。推荐一本书？"},
     {"assistant", "可以读《三体》。"},
     {"user", "{\"json\": [1, 2]} \\ <tag> `code` *bold* #head"},
     {"assistant", "…"}},
};

static const char *const EXISTING[3] = {NULL, "[\"Lives in Oslo\", \"is a TEACHER.\"]",
                                        "[{\"fact\": \"Name is Sam\"}, {\"fact\": \"Has a dog\"}]"};

/* ---- masked sampling equals nbl_sample on a masked copy --------------------------------------- */

static void test_sample_allowed(void) {
    const int32_t V = 3000;
    float *logits = malloc(sizeof *logits * V), *masked = malloc(sizeof *masked * V);
    uint32_t *bits = malloc(sizeof *bits * ((V + 31) / 32));
    int32_t hist[64];
    nbl_sample_buf buf = {0};
    uint64_t x = 88172645463325252ull;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    int same = 0, trials = 3000;
    for (int tr = 0; tr < trials; tr++) {
        for (int32_t i = 0; i < V; i++) logits[i] = (float)((int)(RND() % 64) - 32) * 0.25f; /* many ties */
        int density = (int)(RND() % 100) + 1;
        memset(bits, 0, sizeof *bits * ((V + 31) / 32));
        int any = 0;
        for (int32_t i = 0; i < V; i++)
            if ((int)(RND() % 100) < density) bits[i / 32] |= 1u << (i % 32), any = 1;
        if (!any) bits[0] |= 1;
        for (int32_t i = 0; i < V; i++) masked[i] = bits[i / 32] >> (i % 32) & 1 ? logits[i] : -INFINITY;
        nbl_sampler_params p;
        nbl_sampler_params_init(&p);
        static const float temps[] = {0, 0.5f, 1, 2};
        static const int32_t topk[] = {0, 1, 5, 50, 5000};
        static const float topp[] = {1, 0.9f, 0.5f};
        p.temperature = temps[RND() % 4];
        p.top_k = topk[RND() % 5];
        p.top_p = topp[RND() % 3];
        p.min_p = RND() % 2 ? 0.05f : 0;
        p.repeat_penalty = RND() % 2 ? 1.3f : 1;
        p.repeat_last_n = (int32_t)(RND() % 40);
        int32_t nh = (int32_t)(RND() % 64);
        for (int32_t i = 0; i < nh; i++) hist[i] = (int32_t)(RND() % V);
        uint64_t seed = RND();
        nbl_rng r1, r2;
        nbl_rng_seed(&r1, seed);
        nbl_rng_seed(&r2, seed);
        int32_t a = nbl_sample(masked, V, &p, hist, nh, &r1);
        int32_t b = nbl_sample_allowed(&buf, logits, V, bits, &p, hist, nh, &r2);
        int allowed = b >= 0 && (bits[b / 32] >> (b % 32) & 1);
        same += a == b && allowed;
        if (a != b || !allowed) {
            CHECK(0, "masked sample differs: nbl_sample %d, allowed %d (T %.1f k %d p %.1f minp %.2f rp %.1f)", a, b,
                  p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty);
            break;
        }
    }
    CHECK(same == trials, "masked sampling agreed on %d of %d draws", same, trials);
#undef RND
    nbl_sample_buf_free(&buf);
    free(logits);
    free(masked);
    free(bits);
}

/* ---- tasks: many seeded runs, every output validated ---------------------------------------- */

static nbl_json *parse_or_fail(const char *what, const char *text) {
    nbl_error e = {0};
    nbl_json *j = nbl_json_parse(text, strlen(text), &e);
    CHECK(j != NULL, "%s: output is not JSON (%s): %s", what, e.msg, text);
    return j;
}

static void test_task_outputs(nbl_tasks *t) {
    static const char *REPLY_SCHEMA = "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":60}}";
    static const char *MEM_SCHEMA =
        "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"fact\":{\"type\":\"string\","
        "\"minLength\":3,\"maxLength\":120},\"category\":{\"enum\":[\"identity\",\"preference\",\"work\",\"location\","
        "\"relationship\",\"health\",\"goal\",\"other\"]},\"confidence\":{\"type\":\"number\",\"minimum\":0,"
        "\"maximum\":1}},\"required\":[\"fact\",\"category\",\"confidence\"]}}";
    nbl_error e = {0};
    nbl_json *rs = nbl_json_parse(REPLY_SCHEMA, strlen(REPLY_SCHEMA), &e), *ms = nbl_json_parse(MEM_SCHEMA, strlen(MEM_SCHEMA), &e);
    int ok_title = 0, ok_replies = 0, ok_memory = 0, nonempty_mem = 0;
    double t_title = 0, t_replies = 0, t_memory = 0;
    long tok[3] = {0, 0, 0};
    nbl_usage u;
    char why[160];
    for (int run = 0; run < g_runs; run++) {
        /* Inputs change in blocks of runs, as in real use, so cached prompt prefixes are reused. */
        const nbl_chat_message *conv = CONV[(run / 10) % 4];
        nbl_task_params p;
        nbl_task_params_init(&p);
        p.sampler.seed = (uint64_t)run * 7919u + 1;
        p.sampler.temperature = run % 7 == 0 ? 0.0f : 1.0f + 0.5f * (float)(run % 3);
        p.sampler.top_k = 40;
        /* Small budgets keep random-weight runs short and exercise the forced endings; every
         * 25th run uses the task's default budget. */
        int32_t max_words = 1 + run % 6;
        p.max_tokens = run % 25 == 0 ? 0 : 3 + run % 10;
        char *out = NULL;
        double t0 = now_s();
        nbl_status st = nbl_task_title(t, conv, 4, max_words, &p, &out, &e);
        t_title += now_s() - t0;
        nbl_tasks_last_usage(t, &u);
        tok[0] += u.completion_tokens;
        if (st) CHECK(0, "title run %d: %s", run, e.msg);
        else if (!title_ok(out, max_words, why, sizeof why)) CHECK(0, "title run %d [%s]: %s", run, out, why);
        else ok_title++;
        free(out);

        int32_t n = 1 + (run / 5) % 3;
        p.max_tokens = run % 25 == 1 ? 0 : 2 + run % 12;
        t0 = now_s();
        st = nbl_task_quick_replies(t, conv, 4, n, &p, &out, &e);
        t_replies += now_s() - t0;
        nbl_tasks_last_usage(t, &u);
        tok[1] += u.completion_tokens;
        if (st) {
            CHECK(0, "replies run %d: %s", run, e.msg);
        } else {
            nbl_json *j = parse_or_fail("replies", out);
            int good = j && validate(rs, j, why, sizeof why) && j->len <= (size_t)n;
            for (size_t i = 0; good && i < j->len; i++) {
                const char *s = j->items[i].str;
                size_t l = j->items[i].len;
                for (size_t k = 0; k < l; k++) good &= (unsigned char)s[k] >= 0x20 && s[k] != 0x7f;
                good &= s[0] != ' ' && s[l - 1] != ' ' && !strstr(s, "  ");
                char a[400], b[400];
                norm(s, l, a, sizeof a);
                for (size_t k = 0; k < i; k++) {
                    norm(j->items[k].str, j->items[k].len, b, sizeof b);
                    good &= strcmp(a, b) != 0;
                }
            }
            if (!good) CHECK(0, "replies run %d (n %d): %s (%s)", run, n, out, why);
            else ok_replies++;
            nbl_json_free(j);
        }
        free(out);

        const char *existing = EXISTING[(run / 5) % 3];
        p.max_items = 1 + run % 3;
        p.max_tokens = run % 25 == 2 ? 0 : 2 + run % 16;
        t0 = now_s();
        st = nbl_task_memory(t, conv, 4, existing, &p, &out, &e);
        t_memory += now_s() - t0;
        nbl_tasks_last_usage(t, &u);
        tok[2] += u.completion_tokens;
        if (st) {
            CHECK(0, "memory run %d: %s", run, e.msg);
        } else {
            nbl_json *j = parse_or_fail("memory", out);
            int good = j && validate(ms, j, why, sizeof why) && j->len <= (size_t)p.max_items;
            nbl_json *ex = existing ? nbl_json_parse(existing, strlen(existing), &e) : NULL;
            for (size_t i = 0; good && i < j->len; i++) {
                const nbl_json *f = nbl_json_get(&j->items[i], "fact");
                good &= j->items[i].len == 3;
                char a[600], b[600];
                norm(f->str, f->len, a, sizeof a);
                good &= a[0] != 0;
                for (size_t k = 0; k < i; k++) {
                    const nbl_json *g = nbl_json_get(&j->items[k], "fact");
                    norm(g->str, g->len, b, sizeof b);
                    good &= strcmp(a, b) != 0;
                }
                for (size_t k = 0; ex && k < ex->len; k++) {
                    const nbl_json *g = ex->items[k].type == NBL_JSON_OBJECT ? nbl_json_get(&ex->items[k], "fact") : &ex->items[k];
                    norm(g->str, g->len, b, sizeof b);
                    good &= strcmp(a, b) != 0;
                }
            }
            nonempty_mem += j && j->len > 0;
            if (!good) CHECK(0, "memory run %d: %s (%s)", run, out, why);
            else ok_memory++;
            nbl_json_free(ex);
            nbl_json_free(j);
        }
        free(out);
    }
    CHECK(ok_title == g_runs, "titles valid in %d of %d runs", ok_title, g_runs);
    CHECK(ok_replies == g_runs, "quick replies valid in %d of %d runs", ok_replies, g_runs);
    CHECK(ok_memory == g_runs, "memory facts valid in %d of %d runs", ok_memory, g_runs);
    /* Random weights rarely choose "]" at once: facts must actually be generated and checked. */
    CHECK(nonempty_mem > g_runs / 4, "only %d of %d memory runs produced facts", nonempty_mem, g_runs);
    printf("tasks: %d runs each; title %.1f ms (%.1f tokens), replies %.1f ms (%.1f), memory %.1f ms (%.1f) per run\n",
           g_runs, 1e3 * t_title / g_runs, (double)tok[0] / g_runs, 1e3 * t_replies / g_runs, (double)tok[1] / g_runs,
           1e3 * t_memory / g_runs, (double)tok[2] / g_runs);
    nbl_json_free(rs);
    nbl_json_free(ms);
}

/* ---- response_format grammars through the generation API ------------------------------------- */

static const char *ALL_SCHEMA =
    "{\"title\":\"all\",\"description\":\"every supported keyword\",\"$comment\":\"x\",\"type\":\"object\","
    "\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":6,\"examples\":[\"ab\"]},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"score\":{\"type\":\"number\",\"exclusiveMinimum\":-1.5,\"exclusiveMaximum\":2.25},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",\"c d\"]},\"minItems\":1,\"maxItems\":2},"
    "\"kind\":{\"const\":\"fixed\"},"
    "\"maybe\":{\"type\":[\"string\",\"null\"],\"maxLength\":3},"
    "\"nested\":{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},\"n\":{\"type\":\"integer\","
    "\"exclusiveMinimum\":-3,\"exclusiveMaximum\":3}},\"required\":[\"ok\"]},"
    "\"any\":{},"
    "\"choice\":{\"enum\":[1,\"two\",null,true,{\"x\":1},[1,2]]},"
    "\"free\":{\"type\":\"object\"}"
    "},\"required\":[\"name\",\"age\",\"tags\",\"kind\"]}";

static char *gen_text(nbl_session *s, const nbl_chat_message *msgs, int32_t n, const nbl_gen_params *p,
                      int32_t *finish, nbl_error *e) {
    if (nbl_gen_start_chat(s, NULL, msgs, n, p, e)) return NULL;
    size_t cap = 1024, len = 0;
    char *out = malloc(cap), buf[512];
    out[0] = 0;
    for (*finish = 0; !*finish;) {
        int32_t k = nbl_gen_next(s, buf, (int32_t)sizeof buf, finish, NULL, e);
        if (k < 0) {
            free(out);
            return NULL;
        }
        if (len + (size_t)k + 1 > cap) out = realloc(out, cap = (len + (size_t)k + 1) * 2);
        memcpy(out + len, buf, (size_t)k);
        len += (size_t)k;
        out[len] = 0;
    }
    return out;
}

static void test_response_formats(void) {
    nbl_error e = {0};
    nbl_grammar *g_obj = NULL, *g_all = NULL, *g_text = (nbl_grammar *)1;
    const char *rf_obj = "{\"type\":\"json_object\"}";
    CHECK(!nbl_grammar_from_response_format(rf_obj, strlen(rf_obj), &g_obj, &e) && g_obj, "json_object: %s", e.msg);
    CHECK(!nbl_grammar_from_response_format("{\"type\":\"text\"}", 15, &g_text, &e) && !g_text, "text gives no grammar");
    size_t n_all = strlen(ALL_SCHEMA);
    char *rf_all = malloc(n_all + 100);
    snprintf(rf_all, n_all + 100, "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"all\",\"strict\":true,\"schema\":%s}}",
             ALL_SCHEMA);
    CHECK(!nbl_grammar_from_response_format(rf_all, strlen(rf_all), &g_all, &e) && g_all, "json_schema: %s", e.msg);
    free(rf_all);
    nbl_grammar *g_bad = NULL;
    const char *bad1 = "{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"a\"}}}";
    CHECK(nbl_grammar_from_response_format(bad1, strlen(bad1), &g_bad, &e) && !g_bad && strstr(e.msg, "pattern"),
          "unsupported keyword named: %s", e.msg);
    const char *bad2 = "{\"type\":\"xml\"}";
    CHECK(nbl_grammar_from_response_format(bad2, strlen(bad2), &g_bad, &e) == NBL_E_UNSUPPORTED && !g_bad, "unknown type refused");
    const char *bad3 = "{\"type\":\"json_schema\"}";
    CHECK(nbl_grammar_from_response_format(bad3, strlen(bad3), &g_bad, &e) == NBL_E_ARG, "missing schema refused");
    CHECK(nbl_grammar_from_response_format("{", 1, &g_bad, &e) == NBL_E_FORMAT, "malformed JSON refused");
    if (!g_obj || !g_all) return;
    /* Tight limits keep random "any JSON" values short. */
    nbl_grammar_limits lim;
    nbl_grammar_limits_init(&lim);
    lim.max_depth = 2;
    lim.max_items = 2;
    lim.max_string = 4;
    lim.max_int_digits = 4;
    lim.max_frac_digits = 2;
    lim.max_exp_digits = 1;
    nbl_grammar_set_limits(g_obj, &lim, &e);
    nbl_grammar_set_limits(g_all, &lim, &e);
    nbl_json *schema = nbl_json_parse(ALL_SCHEMA, strlen(ALL_SCHEMA), &e);
    nbl_session *s = NULL;
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 1024;
    so.n_threads = 1;
    CHECK(!nbl_session_new(g_model, &so, &s, &e), "session: %s", e.msg);
    int ok_obj = 0, ok_all = 0, all_optional = 0;
    long toks[2] = {0, 0};
    double t_obj = 0, t_all = 0;
    char why[160];
    for (int run = 0; s && run < g_runs; run++) {
        nbl_chat_message m[2] = {{"system", "Reply in JSON."}, {"user", run % 2 ? "Describe a cat." : "Give me data."}};
        nbl_gen_params p;
        nbl_gen_params_init(&p);
        p.sampler.seed = (uint64_t)run + 100;
        p.sampler.temperature = run % 5 == 0 ? 0.0f : 1.5f;
        p.sampler.top_k = 40;
        for (int which = 0; which < 2; which++) {
            p.grammar = which ? g_all : g_obj;
            int32_t finish = 0;
            double t0 = now_s();
            char *out = gen_text(s, m, 2, &p, &finish, &e);
            *(which ? &t_all : &t_obj) += now_s() - t0;
            nbl_usage u;
            nbl_gen_usage(s, &u);
            toks[which] += u.completion_tokens;
            if (!out) {
                CHECK(0, "%s run %d: %s", which ? "json_schema" : "json_object", run, e.msg);
                continue;
            }
            nbl_json *j = nbl_json_parse(out, strlen(out), &e);
            int good = j && finish == NBL_FINISH_STOP;
            if (which == 0) good = good && j->type == NBL_JSON_OBJECT;
            else good = good && validate(schema, j, why, sizeof why);
            if (good && which) all_optional += nbl_json_get(j, "nested") || nbl_json_get(j, "choice");
            if (!good) CHECK(0, "%s run %d (finish %d): %s (%s)", which ? "json_schema" : "json_object", run, finish, out,
                             j ? why : e.msg);
            else if (which) ok_all++;
            else ok_obj++;
            nbl_json_free(j);
            free(out);
        }
    }
    CHECK(ok_obj == g_runs, "json_object valid in %d of %d runs", ok_obj, g_runs);
    CHECK(ok_all == g_runs, "json_schema valid in %d of %d runs", ok_all, g_runs);
    CHECK(all_optional > 0, "optional properties never generated");
    printf("response_format: json_object %.1f ms (%.1f tokens), json_schema %.1f ms (%.1f tokens) per run\n",
           1e3 * t_obj / g_runs, (double)toks[0] / g_runs, 1e3 * t_all / g_runs, (double)toks[1] / g_runs);
    nbl_session_free(s);
    nbl_json_free(schema);
    nbl_grammar_free(g_obj);
    nbl_grammar_free(g_all);
}

/* ---- routing against brute force ------------------------------------------------------------ */

/* Log-likelihood of label after prompt, computed from scratch in a fresh session of its own (no
 * shared prefix, no truncation), with the log-softmax summed in double. */
static double brute_loglik(const int32_t *prompt, int32_t np, const int32_t *label, int32_t nl) {
    nbl_error e = {0};
    nbl_session *s = NULL;
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = np + nl + 8;
    so.n_threads = 1;
    if (nbl_session_new(g_model, &so, &s, &e)) return NAN;
    nbl_model_info info;
    nbl_model_get_info(g_model, &info);
    float *row0 = malloc(sizeof *row0 * (size_t)info.n_vocab);
    double ll = NAN;
    if (!nbl_session_eval(s, prompt, np, 0, &e)) {
        memcpy(row0, nbl_session_logits(s, -1), sizeof *row0 * (size_t)info.n_vocab);
        if (nl == 1 || !nbl_session_eval(s, label, nl - 1, 1, &e)) {
            ll = 0;
            for (int32_t j = 0; j < nl; j++) {
                const float *row = j == 0 ? row0 : nbl_session_logits(s, j - 1);
                double mx = row[0], z = 0;
                for (int32_t i = 1; i < info.n_vocab; i++) mx = row[i] > mx ? row[i] : mx;
                for (int32_t i = 0; i < info.n_vocab; i++) z += exp((double)row[i] - mx);
                ll += (double)row[label[j]] - mx - log(z);
            }
        }
    }
    free(row0);
    nbl_session_free(s);
    return ll;
}

static void test_route(nbl_tasks *t) {
    nbl_error e = {0};
    const char *code_ex[] = {"fix this python traceback", "write a SQL query for monthly totals"};
    const char *math_ex[] = {"integrate x^2 from 0 to 3", "is 221 prime?"};
    const char *write_ex[] = {"make this email sound friendlier"};
    nbl_route routes[4] = {
        {"code", "programming, debugging, shell", code_ex, 2},
        {"math", "calculations and proofs", math_ex, 2},
        {"writing", "rewriting, tone, grammar", write_ex, 1},
        {"general-knowledge", NULL, NULL, 0},
    };
    const char *msg = "how do I reverse a linked list in C?";
    nbl_route_opts o;
    nbl_route_opts_init(&o);
    nbl_route_result r;
    float sc[4];
    double ll[4];
    CHECK(!nbl_task_route(t, msg, routes, 4, &o, &r, sc, ll, &e), "route: %s", e.msg);
    int32_t *prompt = NULL, np = 0;
    CHECK(!nbl_task_route_prompt(t, msg, routes, 4, &o, &prompt, &np, &e), "route prompt: %s", e.msg);
    nbl_model_info info;
    nbl_model_get_info(g_model, &info);
    double brute[4], z = 0, mx = -INFINITY;
    int32_t lens[4];
    for (int i = 0; i < 4; i++) {
        int32_t *lab = NULL, nl = 0;
        CHECK(!nbl_task_route_label(t, &routes[i], &lab, &nl, &e), "label: %s", e.msg);
        /* The label is the id's plain tokens followed by the end-of-turn token. */
        int32_t ref[64];
        int32_t nr = nbl_tokenize(g_model, routes[i].id, strlen(routes[i].id), 0, ref, 63, &e);
        ref[nr++] = info.eot >= 0 ? info.eot : info.eos;
        CHECK(nl == nr && !memcmp(lab, ref, sizeof *ref * (size_t)nr), "label tokens of %s", routes[i].id);
        brute[i] = brute_loglik(prompt, np, lab, nl);
        lens[i] = nl;
        double tol = 1e-3 * fabs(brute[i]) + 1e-4;
        CHECK(fabs(ll[i] - brute[i]) <= tol, "route %s: loglik %.6f, brute force %.6f", routes[i].id, ll[i], brute[i]);
        mx = fmax(mx, brute[i]);
        free(lab);
    }
    for (int i = 0; i < 4; i++) z += exp(brute[i] - mx);
    int best = 0;
    float sum = 0;
    for (int i = 0; i < 4; i++) {
        double want = exp(brute[i] - mx) / z;
        CHECK(fabs(sc[i] - want) < 1e-4, "route %s: score %.6f, softmax of brute force %.6f", routes[i].id, sc[i], want);
        if (brute[i] > brute[best]) best = i;
        sum += sc[i];
    }
    CHECK(fabsf(sum - 1) < 1e-5f, "scores sum to %f", sum);
    CHECK(r.best == best && r.chosen == best && r.route == routes[best].id, "route picked %d (%s), brute force %d",
          r.best, r.route ? r.route : "-", best);
    CHECK(fabsf(r.confidence - sc[best]) < 1e-7f, "confidence is the top score");
    printf("route: %s %.3f (code %.3f math %.3f writing %.3f general-knowledge %.3f)\n", r.route, r.confidence, sc[0], sc[1],
           sc[2], sc[3]);

    /* Again with the prompt cached: same answer. */
    double ll2[4];
    CHECK(!nbl_task_route(t, msg, routes, 4, &o, &r, NULL, ll2, &e), "route again: %s", e.msg);
    for (int i = 0; i < 4; i++)
        CHECK(fabs(ll2[i] - ll[i]) <= 1e-3 * fabs(ll[i]) + 1e-4, "cached route %d: %.6f vs %.6f", i, ll2[i], ll[i]);

    /* Mean per token. */
    o.per_token = 1;
    CHECK(!nbl_task_route(t, msg, routes, 4, &o, &r, sc, ll2, &e), "per-token route: %s", e.msg);
    mx = -INFINITY, z = 0;
    for (int i = 0; i < 4; i++) mx = fmax(mx, brute[i] / lens[i]);
    for (int i = 0; i < 4; i++) z += exp(brute[i] / lens[i] - mx);
    for (int i = 0; i < 4; i++)
        CHECK(fabs(sc[i] - exp(brute[i] / lens[i] - mx) / z) < 1e-4, "per-token score %d", i);
    o.per_token = 0;

    /* Ties: identical labels score identically and the earliest wins. */
    int worse = best == 0 ? 1 : 0;
    nbl_route tie[3] = {routes[worse], routes[best], routes[best]};
    float tsc[3];
    double tll[3];
    CHECK(!nbl_task_route(t, msg, tie, 3, &o, &r, tsc, tll, &e), "tie route: %s", e.msg);
    CHECK(tll[1] == tll[2] && tsc[1] == tsc[2], "identical labels: %.9f vs %.9f", tll[1], tll[2]);
    CHECK(r.best == 1, "a tie goes to the earliest route (got %d)", r.best);
    nbl_route same[3] = {routes[2], routes[2], routes[2]};
    CHECK(!nbl_task_route(t, msg, same, 3, &o, &r, tsc, NULL, &e), "all-tie route: %s", e.msg);
    CHECK(r.best == 0 && fabsf(tsc[0] - 1.0f / 3) < 1e-6f && fabsf(r.confidence - 1.0f / 3) < 1e-6f,
          "three equal routes: best %d score %f", r.best, tsc[0]);

    /* The fallback threshold. */
    o.fallback = "default";
    o.threshold = 0.5f; /* above 1/3 */
    CHECK(!nbl_task_route(t, msg, same, 3, &o, &r, NULL, NULL, &e), "threshold route: %s", e.msg);
    CHECK(r.chosen == -1 && r.best == 0 && r.route && !strcmp(r.route, "default"), "under the threshold: fallback");
    o.threshold = 1.0f / 3 - 1e-4f;
    CHECK(!nbl_task_route(t, msg, same, 3, &o, &r, NULL, NULL, &e) && r.chosen == 0 && r.route == same[0].id,
          "at the threshold: the top route");
    o.threshold = 0;
    CHECK(!nbl_task_route(t, msg, same, 3, &o, &r, NULL, NULL, &e) && r.chosen == 0, "threshold 0 never falls back");
    o.fallback = NULL;
    o.threshold = 1.0f;
    CHECK(!nbl_task_route(t, msg, same, 3, &o, &r, NULL, NULL, &e) && r.chosen == -1 && r.route == NULL,
          "no fallback id: route NULL");
    o.threshold = 1.5f;
    CHECK(nbl_task_route(t, msg, same, 3, &o, &r, NULL, NULL, &e) == NBL_E_ARG, "threshold above 1 refused");
    o.threshold = 0;
    nbl_route bad[1] = {{"", NULL, NULL, 0}};
    CHECK(nbl_task_route(t, msg, bad, 1, &o, &r, NULL, NULL, &e) == NBL_E_ARG, "empty id refused: %s", e.msg);
    CHECK(nbl_task_route(t, msg, routes, 0, &o, &r, NULL, NULL, &e) == NBL_E_ARG, "no routes refused");
    free(prompt);
}

/* ---- a chat session is untouched by tasks ------------------------------------------------------ */

static void test_isolation(nbl_tasks *t) {
    nbl_error e = {0};
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 512;
    so.n_threads = 1;
    nbl_session *chat = NULL, *ref = NULL;
    CHECK(!nbl_session_new(g_model, &so, &chat, &e) && !nbl_session_new(g_model, &so, &ref, &e), "sessions: %s", e.msg);
    if (!chat || !ref) return;
    nbl_gen_params p;
    nbl_gen_params_init(&p);
    p.max_tokens = 16;
    char buf[512];
    int32_t fin, tok, a[16], b[16], na = 0, nb = 0;
    nbl_gen_start_chat(chat, NULL, CONV[0], 2, &p, &e);
    nbl_gen_start_chat(ref, NULL, CONV[0], 2, &p, &e);
    for (int i = 0; i < 8; i++) {
        nbl_gen_next(chat, buf, sizeof buf, &fin, &tok, &e);
        a[na++] = tok;
    }
    const int32_t pos = nbl_session_pos(chat);
    nbl_model_info info;
    nbl_model_get_info(g_model, &info);
    int32_t *toks = malloc(sizeof *toks * (size_t)pos);
    float *logits = malloc(sizeof *logits * (size_t)info.n_vocab);
    memcpy(toks, nbl_session_tokens(chat), sizeof *toks * (size_t)pos);
    memcpy(logits, nbl_session_logits(chat, -1), sizeof *logits * (size_t)info.n_vocab);

    nbl_task_params tp;
    nbl_task_params_init(&tp);
    char *out = NULL;
    CHECK(!nbl_task_title(t, CONV[0], 4, 0, &tp, &out, &e), "title: %s", e.msg);
    free(out);
    CHECK(!nbl_task_quick_replies(t, CONV[0], 4, 3, &tp, &out, &e), "replies: %s", e.msg);
    free(out);
    CHECK(!nbl_task_memory(t, CONV[0], 4, NULL, &tp, &out, &e), "memory: %s", e.msg);
    free(out);
    nbl_route r1[2] = {{"yes", NULL, NULL, 0}, {"no", NULL, NULL, 0}};
    nbl_route_result rr;
    CHECK(!nbl_task_route(t, "is it raining?", r1, 2, NULL, &rr, NULL, NULL, &e), "route: %s", e.msg);

    CHECK(nbl_session_pos(chat) == pos && !memcmp(nbl_session_tokens(chat), toks, sizeof *toks * (size_t)pos),
          "the chat's cached tokens are unchanged");
    const float *l2 = nbl_session_logits(chat, -1);
    CHECK(l2 && !memcmp(l2, logits, sizeof *logits * (size_t)info.n_vocab), "the chat's logits are unchanged");
    for (int i = 0; i < 8; i++) {
        nbl_gen_next(chat, buf, sizeof buf, &fin, &tok, &e);
        a[na++] = tok;
    }
    for (int i = 0; i < 16; i++) {
        nbl_gen_next(ref, buf, sizeof buf, &fin, &tok, &e);
        b[nb++] = tok;
    }
    CHECK(na == nb && !memcmp(a, b, sizeof a), "the chat continues exactly as without tasks");
    free(toks);
    free(logits);
    nbl_session_free(chat);
    nbl_session_free(ref);
}

/* ---- post-processing and argument checks ------------------------------------------------------- */

static void test_cleaning(nbl_tasks *t) {
    nbl_error e = {0};
    char *out = NULL;
    const char *r = "[\"  Why not\\nSydney? \", \"why NOT sydney\", \"\\t \", \"Thanks!\", \"thanks\"]";
    CHECK(!nbl_replies_clean(r, strlen(r), &out, &e) && out && !strcmp(out, "[\"Why not Sydney?\", \"Thanks!\"]"),
          "replies cleaned: %s", out ? out : e.msg);
    free(out);
    const char *m = "[{\"fact\": \"Lives in OSLO!\", \"category\": \"location\", \"confidence\": 0.9},"
                    " {\"fact\": \"Is a  teacher\", \"category\": \"work\", \"confidence\": 1},"
                    " {\"fact\": \"Likes tea\", \"category\": \"preference\", \"confidence\": 0.123456},"
                    " {\"fact\": \"likes  TEA.\", \"category\": \"preference\", \"confidence\": 0.5},"
                    " {\"fact\": \" ab \", \"category\": \"other\", \"confidence\": 0}]";
    const char *ex = "[\"lives in oslo\", {\"fact\": \"Is a teacher\"}]";
    CHECK(!nbl_memory_clean(m, strlen(m), ex, &out, &e) && out &&
              !strcmp(out, "[{\"fact\": \"Likes tea\", \"category\": \"preference\", \"confidence\": 0.123456}]"),
          "memory cleaned: %s", out ? out : e.msg);
    free(out);
    CHECK(nbl_memory_clean(m, strlen(m), "{\"a\":1}", &out, &e) == NBL_E_ARG && !out, "existing must be an array");
    CHECK(nbl_memory_clean(m, strlen(m), "[1]", &out, &e) == NBL_E_ARG, "existing items must be facts");

    nbl_chat_message sys_only[1] = {{"system", "hi"}};
    nbl_chat_message no_role[1] = {{NULL, "hi"}};
    CHECK(nbl_task_title(t, CONV[0], 0, 0, NULL, &out, &e) == NBL_E_ARG && !out, "no messages refused");
    CHECK(nbl_task_title(t, sys_only, 1, 0, NULL, &out, &e) == NBL_E_ARG, "system-only refused");
    CHECK(nbl_task_title(t, no_role, 1, 0, NULL, &out, &e) == NBL_E_ARG, "missing role refused");
    CHECK(nbl_task_title(t, CONV[0], 2, 13, NULL, &out, &e) == NBL_E_ARG, "13 words refused");
    CHECK(nbl_task_quick_replies(t, CONV[0], 2, 9, NULL, &out, &e) == NBL_E_ARG, "9 replies refused");
    CHECK(nbl_task_memory(t, CONV[0], 2, "not json", NULL, &out, &e) == NBL_E_FORMAT, "bad existing refused");
    nbl_task_params p;
    nbl_task_params_init(&p);
    p.max_items = 17;
    CHECK(nbl_task_memory(t, CONV[0], 2, NULL, &p, &out, &e) == NBL_E_ARG, "17 facts refused");
}

int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/qwen2-tiny-realvocab-q8_0.gguf", fixtures_dir());
    nbl_error e = {0};
    nbl_model_options mo;
    nbl_model_options_init(&mo);
    mo.n_threads = 1;
    if (nbl_model_open_file(path, &mo, &g_model, &e)) {
        CHECK(0, "open %s: %s", path, e.msg);
        return test_done();
    }
    const char *th = getenv("NBL_THOROUGH");
    g_runs = UNDER_ASAN && !(th && th[0] == '1') ? 8 : 200;
    const char *nr = getenv("NBL_TASK_RUNS"); /* for profiling */
    if (nr && atoi(nr) > 0) g_runs = atoi(nr);
    double t0 = now_s();
    test_sample_allowed();
    nbl_tasks_options to;
    nbl_tasks_options_init(&to);
    to.n_ctx = 2048;
    to.n_threads = 1;
    nbl_tasks *t = NULL;
    CHECK(!nbl_tasks_new(g_model, &to, &t, &e), "tasks: %s", e.msg);
    if (t) {
        test_cleaning(t);
        test_route(t);
        test_isolation(t);
        test_task_outputs(t);
        nbl_tasks_free(t);
    }
    /* One shared session serves every task just as well. */
    to.shared_session = 1;
    to.n_ctx = 1536;
    if (!nbl_tasks_new(g_model, &to, &t, &e)) {
        test_isolation(t);
        nbl_tasks_free(t);
    }
    test_response_formats();
    printf("total %.1f s\n", now_s() - t0);
    nbl_model_free(g_model);
    return test_done();
}
