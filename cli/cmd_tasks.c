/* cmd_tasks.c — the helper tasks on the command line (`nbl title`, `nbl replies`, `nbl memory`,
 * `nbl route`), constrained output for `nbl run` (--json, --json-schema, --choice), and
 * `nbl task_eval`: quality and latency of the tasks on a labelled JSONL set. */
#include "cli.h"
#include "../src/nbl_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char COMMON[] =
    "common options: [-t THREADS] [-c CTX] [--template NAME] [--max-tokens N] [--temp T] [--top-k K]\n"
    "                [--seed S] [--time] (tasks are greedy unless --temp is given)";

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- shared option parsing ------------------------------------------------------------------- */

typedef struct topts {
    const char *model, *template_name;
    int64_t n_threads, n_ctx;
    nbl_task_params p;
    int timing;
} topts;

/* Consumes a common option at argv[*i]; 1 when it was one, -1 on a bad value. */
static int common_opt(topts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *next = *i + 1 < argc ? argv[*i + 1] : NULL;
    int64_t v;
    double f;
    if (!strcmp(a, "-m") && next) o->model = argv[++*i];
    else if (!strcmp(a, "--template") && next) o->template_name = argv[++*i];
    else if (!strcmp(a, "-t") && next) return cli_int(next, 1, 1024, &o->n_threads) ? -1 : (++*i, 1);
    else if (!strcmp(a, "-c") && next) return cli_int(next, 64, 1 << 20, &o->n_ctx) ? -1 : (++*i, 1);
    else if (!strcmp(a, "--max-tokens") && next) {
        if (cli_int(next, 0, 4096, &v)) return -1;
        o->p.max_tokens = (int32_t)v, ++*i;
    } else if (!strcmp(a, "--temp") && next) {
        if (cli_float(next, &f) || f < 0) return -1;
        o->p.sampler.temperature = (float)f, ++*i;
    } else if (!strcmp(a, "--top-k") && next) {
        if (cli_int(next, 0, 1 << 24, &v)) return -1;
        o->p.sampler.top_k = (int32_t)v, ++*i;
    } else if (!strcmp(a, "--seed") && next) {
        if (cli_int(next, 0, INT64_MAX, &v)) return -1;
        o->p.sampler.seed = (uint64_t)v, ++*i;
    } else if (!strcmp(a, "--time")) o->timing = 1;
    else return 0;
    return 1;
}

static void topts_init(topts *o) {
    memset(o, 0, sizeof *o);
    nbl_task_params_init(&o->p);
}

static int open_tasks(const char *cmd, const topts *o, nbl_model **m, nbl_tasks **t) {
    nbl_error err = {0};
    nbl_model_options mo;
    nbl_model_options_init(&mo);
    mo.n_threads = (int32_t)o->n_threads;
    if (nbl_model_open_file(o->model, &mo, m, &err)) {
        fprintf(stderr, "nbl %s: %s\n", cmd, err.msg);
        return 2;
    }
    nbl_tasks_options to;
    nbl_tasks_options_init(&to);
    to.n_ctx = (int32_t)o->n_ctx;
    to.n_threads = (int32_t)o->n_threads;
    to.template_name = o->template_name;
    if (nbl_tasks_new(*m, &to, t, &err)) {
        fprintf(stderr, "nbl %s: %s\n", cmd, err.msg);
        nbl_model_free(*m);
        *m = NULL;
        return 2;
    }
    return 0;
}

/* ---- messages from JSON ------------------------------------------------------------------------ */

typedef struct jmsgs {
    nbl_chat_message *m;
    int32_t n;
} jmsgs;

/* [{role, content}] (contents must be strings); pointers into arr. */
static int msgs_from_json(const nbl_json *arr, jmsgs *out, char *why, size_t cap) {
    out->m = NULL;
    out->n = 0;
    if (!arr || arr->type != NBL_JSON_ARRAY || !arr->len) return snprintf(why, cap, "messages must be a non-empty array"), -1;
    out->m = calloc(arr->len, sizeof *out->m);
    if (!out->m) return snprintf(why, cap, "out of memory"), -1;
    for (size_t i = 0; i < arr->len; i++) {
        const nbl_json *r = nbl_json_get(&arr->items[i], "role"), *c = nbl_json_get(&arr->items[i], "content");
        if (!r || r->type != NBL_JSON_STRING || !c || c->type != NBL_JSON_STRING) {
            free(out->m);
            out->m = NULL;
            return snprintf(why, cap, "messages[%zu] needs string role and content", i), -1;
        }
        out->m[i] = (nbl_chat_message){r->str, c->str};
    }
    out->n = (int32_t)arr->len;
    return 0;
}

/* Reads FILE ("-": stdin) as JSON. */
static nbl_json *read_json(const char *cmd, const char *path) {
    nbl_error err = {0};
    size_t len = 0;
    char *text = nbl_read_file(!strcmp(path, "-") ? "/dev/stdin" : path, &len, &err);
    if (!text) {
        fprintf(stderr, "nbl %s: %s\n", cmd, err.msg);
        return NULL;
    }
    nbl_json *j = nbl_json_parse(text, len, &err);
    free(text);
    if (!j) fprintf(stderr, "nbl %s: %s: %s\n", cmd, path, err.msg);
    return j;
}

/* ---- title, replies, memory -------------------------------------------------------------------- */

enum { T_TITLE, T_REPLIES, T_MEMORY };

static int gen_task(int kind, int argc, char **argv) {
    static const char *names[] = {"title", "replies", "memory"};
    static const char *usage[] = {
        "usage: nbl title -m MODEL --messages FILE.json [--words N]\n",
        "usage: nbl replies -m MODEL --messages FILE.json [-n N]\n",
        "usage: nbl memory -m MODEL --messages FILE.json [--existing FILE.json] [--max N]\n",
    };
    const char *cmd = names[kind], *msgs_path = NULL, *existing_path = NULL;
    int64_t count = 0;
    topts o;
    topts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int c = common_opt(&o, argc, argv, &i);
        if (c < 0) return cli_fail(cmd, "bad value for %s\n%s%s", a, usage[kind], COMMON);
        if (c) continue;
        if (!strcmp(a, "--messages") && next) msgs_path = argv[++i];
        else if (kind == T_MEMORY && !strcmp(a, "--existing") && next) existing_path = argv[++i];
        else if (((kind == T_TITLE && !strcmp(a, "--words")) || (kind == T_REPLIES && !strcmp(a, "-n")) ||
                  (kind == T_MEMORY && !strcmp(a, "--max"))) &&
                 next && !cli_int(next, 1, 16, &count))
            i++;
        else return cli_fail(cmd, "bad argument '%s'\n%s%s", a, usage[kind], COMMON);
    }
    if (!o.model || !msgs_path) return cli_fail(cmd, "%s%s", usage[kind], COMMON);
    nbl_json *mj = read_json(cmd, msgs_path), *ej = NULL;
    if (!mj) return 2;
    const nbl_json *arr = mj->type == NBL_JSON_OBJECT ? nbl_json_get(mj, "messages") : mj;
    jmsgs msgs;
    char why[200];
    if (msgs_from_json(arr, &msgs, why, sizeof why)) {
        nbl_json_free(mj);
        return cli_fail(cmd, "%s: %s", msgs_path, why);
    }
    char *existing = NULL;
    if (existing_path) {
        size_t len = 0;
        nbl_error e = {0};
        if (!(existing = nbl_read_file(existing_path, &len, &e))) {
            fprintf(stderr, "nbl %s: %s\n", cmd, e.msg);
            free(msgs.m);
            nbl_json_free(mj);
            return 2;
        }
    }
    nbl_model *m = NULL;
    nbl_tasks *t = NULL;
    int rc = open_tasks(cmd, &o, &m, &t);
    if (!rc) {
        nbl_error err = {0};
        char *out = NULL;
        double t0 = now_s();
        nbl_status st;
        if (kind == T_TITLE) st = nbl_task_title(t, msgs.m, msgs.n, (int32_t)count, &o.p, &out, &err);
        else if (kind == T_REPLIES) st = nbl_task_quick_replies(t, msgs.m, msgs.n, (int32_t)count, &o.p, &out, &err);
        else {
            o.p.max_items = (int32_t)count;
            st = nbl_task_memory(t, msgs.m, msgs.n, existing, &o.p, &out, &err);
        }
        if (st) {
            fprintf(stderr, "nbl %s: %s\n", cmd, err.msg);
            rc = 2;
        } else {
            printf("%s\n", out);
            if (o.timing) {
                nbl_usage u;
                nbl_tasks_last_usage(t, &u);
                fprintf(stderr, "%s: %.1f ms, prompt %d tokens (%d cached), %d generated\n", cmd, 1e3 * (now_s() - t0),
                        u.prompt_tokens, u.cached_tokens, u.completion_tokens);
            }
        }
        free(out);
    }
    nbl_tasks_free(t);
    nbl_model_free(m);
    free(existing);
    free(msgs.m);
    nbl_json_free(ej);
    nbl_json_free(mj);
    return rc;
}

int cmd_title(int argc, char **argv) { return gen_task(T_TITLE, argc, argv); }
int cmd_replies(int argc, char **argv) { return gen_task(T_REPLIES, argc, argv); }
int cmd_memory(int argc, char **argv) { return gen_task(T_MEMORY, argc, argv); }

/* ---- route ------------------------------------------------------------------------------------- */

typedef struct jroutes {
    nbl_route *r;
    const char **ex;
    int32_t n;
} jroutes;

static void routes_free(jroutes *r) {
    free(r->r);
    free(r->ex);
    memset(r, 0, sizeof *r);
}

/* [{id, description?, examples?}] or {"routes": [...]}; pointers into j. */
static int routes_from_json(const nbl_json *j, jroutes *out, char *why, size_t cap) {
    memset(out, 0, sizeof *out);
    if (j && j->type == NBL_JSON_OBJECT) j = nbl_json_get(j, "routes");
    if (!j || j->type != NBL_JSON_ARRAY || !j->len) return snprintf(why, cap, "routes must be a non-empty array"), -1;
    size_t n_ex = 0;
    for (size_t i = 0; i < j->len; i++) {
        const nbl_json *e = nbl_json_get(&j->items[i], "examples");
        if (e && e->type == NBL_JSON_ARRAY) n_ex += e->len;
    }
    out->r = calloc(j->len, sizeof *out->r);
    out->ex = calloc(n_ex + 1, sizeof *out->ex);
    if (!out->r || !out->ex) {
        routes_free(out);
        return snprintf(why, cap, "out of memory"), -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < j->len; i++) {
        const nbl_json *id = nbl_json_get(&j->items[i], "id"), *d = nbl_json_get(&j->items[i], "description"),
                       *e = nbl_json_get(&j->items[i], "examples");
        if (!id || id->type != NBL_JSON_STRING) {
            routes_free(out);
            return snprintf(why, cap, "routes[%zu] needs a string id", i), -1;
        }
        out->r[i].id = id->str;
        out->r[i].description = d && d->type == NBL_JSON_STRING ? d->str : NULL;
        out->r[i].examples = out->ex + k;
        for (size_t x = 0; e && e->type == NBL_JSON_ARRAY && x < e->len; x++)
            if (e->items[x].type == NBL_JSON_STRING) out->ex[k++] = e->items[x].str, out->r[i].n_examples++;
    }
    out->n = (int32_t)j->len;
    return 0;
}

static void print_jstr(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int cmd_route(int argc, char **argv) {
    static const char USAGE[] = "usage: nbl route -m MODEL --routes FILE.json [--threshold X] [--fallback ID] [--per-token]\n"
                                "                 [--examples N] MESSAGE\n";
    const char *routes_path = NULL, *message = NULL;
    topts o;
    topts_init(&o);
    nbl_route_opts ro;
    nbl_route_opts_init(&ro);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t v;
        double f;
        int c = common_opt(&o, argc, argv, &i);
        if (c < 0) return cli_fail("route", "bad value for %s\n%s%s", a, USAGE, COMMON);
        if (c) continue;
        if (!strcmp(a, "--routes") && next) routes_path = argv[++i];
        else if (!strcmp(a, "--threshold") && next && !cli_float(next, &f) && f >= 0 && f <= 1) ro.threshold = (float)f, i++;
        else if (!strcmp(a, "--fallback") && next) ro.fallback = argv[++i];
        else if (!strcmp(a, "--per-token")) ro.per_token = 1;
        else if (!strcmp(a, "--examples") && next && !cli_int(next, -1, 256, &v)) ro.max_examples = (int32_t)v, i++;
        else if (a[0] != '-' && !message) message = a;
        else return cli_fail("route", "bad argument '%s'\n%s%s", a, USAGE, COMMON);
    }
    if (!o.model || !routes_path || !message) return cli_fail("route", "%s%s", USAGE, COMMON);
    nbl_json *rj = read_json("route", routes_path);
    if (!rj) return 2;
    jroutes routes;
    char why[200];
    if (routes_from_json(rj, &routes, why, sizeof why)) {
        nbl_json_free(rj);
        return cli_fail("route", "%s: %s", routes_path, why);
    }
    nbl_model *m = NULL;
    nbl_tasks *t = NULL;
    int rc = open_tasks("route", &o, &m, &t);
    float *sc = malloc(sizeof *sc * (size_t)routes.n);
    double *ll = malloc(sizeof *ll * (size_t)routes.n);
    if (!rc && (!sc || !ll)) rc = cli_fail("route", "out of memory");
    if (!rc) {
        nbl_error err = {0};
        nbl_route_result r;
        double t0 = now_s();
        if (nbl_task_route(t, message, routes.r, routes.n, &ro, &r, sc, ll, &err)) {
            fprintf(stderr, "nbl route: %s\n", err.msg);
            rc = 2;
        } else {
            printf("{\"route\": ");
            if (r.route) print_jstr(stdout, r.route);
            else printf("null");
            printf(", \"fallback\": %s, \"confidence\": %.6f, \"scores\": {", r.chosen < 0 ? "true" : "false", r.confidence);
            for (int32_t i = 0; i < routes.n; i++) {
                printf("%s", i ? ", " : "");
                print_jstr(stdout, routes.r[i].id);
                printf(": %.6f", sc[i]);
            }
            printf("}, \"loglik\": [");
            for (int32_t i = 0; i < routes.n; i++) printf("%s%.4f", i ? ", " : "", ll[i]);
            printf("]}\n");
            if (o.timing) {
                nbl_usage u;
                nbl_tasks_last_usage(t, &u);
                fprintf(stderr, "route: %.1f ms, prompt %d tokens (%d cached), %d label tokens evaluated\n",
                        1e3 * (now_s() - t0), u.prompt_tokens, u.cached_tokens, u.completion_tokens);
            }
        }
    }
    free(sc);
    free(ll);
    nbl_tasks_free(t);
    nbl_model_free(m);
    routes_free(&routes);
    nbl_json_free(rj);
    return rc;
}

/* ---- nbl run --json / --json-schema / --choice ---------------------------------------------------- */

nbl_grammar *cli_run_grammar(int json_object, const char *schema_path, const char *choices) {
    nbl_error err = {0};
    nbl_grammar *g = NULL;
    if (json_object) {
        g = nbl_grammar_new_json(&err);
    } else if (schema_path) {
        size_t len = 0;
        char *text = nbl_read_file(schema_path, &len, &err);
        if (text) g = nbl_grammar_new_json_schema(text, len, &err);
        free(text);
    } else if (choices) {
        /* Comma-separated; no escaping, so a choice cannot contain a comma. */
        char *copy = strdup(choices);
        const char *list[256];
        int32_t n = 0;
        for (char *tok = copy ? strtok(copy, ",") : NULL; tok && n < 256; tok = strtok(NULL, ",")) list[n++] = tok;
        if (n > 0) g = nbl_grammar_new_choice(list, n, &err);
        else nbl_set_err(&err, NBL_E_ARG, "--choice needs at least one choice");
        free(copy);
    }
    if (!g) fprintf(stderr, "nbl run: %s\n", err.msg[0] ? err.msg : "out of memory");
    return g;
}

int cli_run_constrained(nbl_session *s, const int32_t *toks, int32_t n_toks, const nbl_grammar *g,
                        const nbl_sampler_params *sp, int64_t n_gen, int ids) {
    nbl_error err = {0};
    nbl_gen_params p;
    nbl_gen_params_init(&p);
    p.sampler = *sp;
    p.max_tokens = (int32_t)(n_gen > 0 && n_gen < INT32_MAX ? n_gen : 0);
    p.grammar = g;
    if (nbl_gen_start_tokens(s, toks, n_toks, &p, &err)) {
        fprintf(stderr, "nbl run: %s\n", err.msg);
        return 2;
    }
    char buf[512];
    int32_t finish = 0, tok, k = 0;
    if (ids) printf("[");
    while (!finish) {
        int32_t n = nbl_gen_next(s, buf, (int32_t)sizeof buf, &finish, &tok, &err);
        if (n < 0) {
            fprintf(stderr, "\nnbl run: %s\n", err.msg);
            return 2;
        }
        if (ids && tok >= 0) printf("%s%d", k++ ? ", " : "", tok);
        else if (!ids) fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
    }
    printf(ids ? "]\n" : "\n");
    if (finish == NBL_FINISH_LENGTH) fprintf(stderr, "nbl run: stopped at the token limit: the output is incomplete\n");
    return finish == NBL_FINISH_LENGTH ? 1 : 0;
}

/* ---- nbl task_eval: quality and latency on a labelled JSONL set ----------------------------------- */

typedef struct lat {
    int n;
    double sum_ms;
    double ms[4096];
} lat;

static void stat_add(lat *s, double ms) {
    if (s->n < 4096) s->ms[s->n] = ms;
    s->n++;
    s->sum_ms += ms;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stat_print(const char *name, lat *s) {
    if (!s->n) return;
    int k = s->n < 4096 ? s->n : 4096;
    qsort(s->ms, (size_t)k, sizeof *s->ms, cmp_d);
    printf("  %-8s latency: mean %.0f ms, p50 %.0f ms, p90 %.0f ms, max %.0f ms (%d calls)\n", name, s->sum_ms / s->n,
           s->ms[k / 2], s->ms[(k * 9) / 10 < k ? (k * 9) / 10 : k - 1], s->ms[k - 1], s->n);
}

/* Lowercased words of ASCII letters/digits (other bytes kept), for overlap scores. */
static int words_of(const char *s, char w[][48], int max) {
    int n = 0, l = 0;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        int word = c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
        if (word && l < 47) w[n][l++] = (char)(c >= 0x80 ? c : (c >= 'A' && c <= 'Z') ? c | 0x20 : c);
        if ((!word || !c) && l) {
            w[n][l] = 0;
            if (++n == max) return n;
            l = 0;
        }
        if (!c) return n;
    }
}

/* Word-set F1 of two texts. */
static double overlap_f1(const char *a, const char *b) {
    static char wa[64][48], wb[64][48];
    int na = words_of(a, wa, 64), nb = words_of(b, wb, 64), hit = 0;
    if (!na || !nb) return 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (!strcmp(wa[i], wb[j])) {
                hit++;
                break;
            }
    double p = (double)hit / na, r = (double)hit / nb;
    return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

/* The documented title rules, checked from the text. */
static int title_compliant(const char *t, int max_words) {
    size_t n = strlen(t);
    if (!n || n > 80 || t[0] == ' ' || t[n - 1] == ' ' || strstr(t, "  ")) return 0;
    int words = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x20 || strchr("\"`*#", c)) return 0;
        if (c == 0xE2 && i + 2 < n && (unsigned char)t[i + 1] == 0x80 && (unsigned char)t[i + 2] >= 0x98 &&
            (unsigned char)t[i + 2] <= 0x9F)
            return 0; /* typographic quotes */
        words += c == ' ';
    }
    return words <= max_words && !strchr(".,;:-", t[n - 1]);
}

int cmd_task_eval(int argc, char **argv) {
    static const char USAGE[] =
        "usage: nbl task_eval -m MODEL DATA.jsonl [--verbose] [--repeat N]\n"
        "  DATA.jsonl: one object per line with \"task\": \"title\" (messages, max_words?, reference?),\n"
        "  \"replies\" (messages, n?), \"memory\" (messages, existing?, expected: [facts]), \"route\" (message,\n"
        "  label, routes?), or \"routes\" (routes, threshold?, fallback?: the default for later route lines).\n"
        "  A predicted fact matches an expected one when their word-set F1 is at least 0.5.\n";
    const char *data = NULL;
    int verbose = 0;
    int64_t repeat = 1;
    topts o;
    topts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int c = common_opt(&o, argc, argv, &i);
        if (c < 0) return cli_fail("task_eval", "bad value for %s\n%s%s", a, USAGE, COMMON);
        if (c) continue;
        if (!strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "--repeat") && next && !cli_int(next, 1, 1000, &repeat)) i++;
        else if (a[0] != '-' && !data) data = a;
        else return cli_fail("task_eval", "bad argument '%s'\n%s%s", a, USAGE, COMMON);
    }
    if (!o.model || !data) return cli_fail("task_eval", "%s%s", USAGE, COMMON);
    nbl_error err = {0};
    size_t len = 0;
    char *text = nbl_read_file(data, &len, &err);
    if (!text) {
        fprintf(stderr, "nbl task_eval: %s\n", err.msg);
        return 2;
    }
    nbl_model *m = NULL;
    nbl_tasks *t = NULL;
    if (open_tasks("task_eval", &o, &m, &t)) {
        free(text);
        return 2;
    }
    static lat st_title, st_replies, st_memory, st_route;
    int title_n = 0, title_ok = 0, title_ref = 0, rep_n = 0, rep_valid = 0, rep_full = 0, mem_n = 0, mem_valid = 0,
        mem_pred = 0, mem_hit = 0, mem_exp = 0, mem_found = 0, mem_empty_n = 0, mem_empty_ok = 0, route_n = 0,
        route_ok = 0, route_fb = 0, errors = 0, line_no = 0;
    double title_words = 0, title_f1 = 0;
    long gen_tokens[4] = {0};
    nbl_json *def_routes = NULL;
    float def_thr = 0;
    const char *def_fb = NULL;
    for (int64_t rep = 0; rep < repeat; rep++) {
        line_no = 0;
        for (char *line = text, *end; line && *line; line = end ? end + 1 : NULL) {
            end = strchr(line, '\n');
            size_t ll = end ? (size_t)(end - line) : strlen(line);
            line_no++;
            while (ll && (line[ll - 1] == '\r' || line[ll - 1] == ' ')) ll--;
            if (!ll || line[0] == '#') continue;
            nbl_json *j = nbl_json_parse(line, ll, &err);
            const nbl_json *task = j ? nbl_json_get(j, "task") : NULL;
            if (!task || task->type != NBL_JSON_STRING) {
                fprintf(stderr, "%s:%d: %s\n", data, line_no, j ? "needs a string \"task\"" : err.msg);
                nbl_json_free(j);
                errors++;
                continue;
            }
            const char *kind = task->str;
            if (!strcmp(kind, "routes")) {
                if (rep == 0) {
                    nbl_json_free(def_routes);
                    def_routes = j;
                    const nbl_json *th = nbl_json_get(j, "threshold"), *fb = nbl_json_get(j, "fallback");
                    def_thr = th && th->type == NBL_JSON_NUMBER ? (float)th->num : 0;
                    def_fb = fb && fb->type == NBL_JSON_STRING ? fb->str : NULL;
                } else {
                    nbl_json_free(j);
                }
                continue;
            }
            char why[200];
            jmsgs msgs = {0};
            int is_route = !strcmp(kind, "route");
            if (!is_route && msgs_from_json(nbl_json_get(j, "messages"), &msgs, why, sizeof why)) {
                fprintf(stderr, "%s:%d: %s\n", data, line_no, why);
                nbl_json_free(j);
                errors++;
                continue;
            }
            char *out = NULL;
            nbl_status s = NBL_OK;
            nbl_usage u;
            double t0 = now_s(), ms;
            if (!strcmp(kind, "title")) {
                const nbl_json *mw = nbl_json_get(j, "max_words"), *ref = nbl_json_get(j, "reference");
                int words = mw && mw->type == NBL_JSON_NUMBER ? (int)mw->num : 6;
                s = nbl_task_title(t, msgs.m, msgs.n, words, &o.p, &out, &err);
                ms = 1e3 * (now_s() - t0);
                if (!s) {
                    stat_add(&st_title, ms);
                    nbl_tasks_last_usage(t, &u);
                    gen_tokens[0] += u.completion_tokens;
                    title_n++;
                    int ok = title_compliant(out, words);
                    title_ok += ok;
                    int w = 1;
                    for (const char *c = out; *c; c++) w += *c == ' ';
                    title_words += w;
                    double f1 = -1;
                    if (ref && ref->type == NBL_JSON_STRING) f1 = overlap_f1(out, ref->str), title_f1 += f1, title_ref++;
                    if (verbose) printf("%d title %.0f ms%s: %s%s%s\n", line_no, ms, ok ? "" : " NONCOMPLIANT", out,
                                        f1 >= 0 ? " | reference: " : "", f1 >= 0 ? ref->str : "");
                }
            } else if (!strcmp(kind, "replies")) {
                const nbl_json *nn = nbl_json_get(j, "n");
                int n = nn && nn->type == NBL_JSON_NUMBER ? (int)nn->num : 3;
                s = nbl_task_quick_replies(t, msgs.m, msgs.n, n, &o.p, &out, &err);
                ms = 1e3 * (now_s() - t0);
                if (!s) {
                    stat_add(&st_replies, ms);
                    nbl_tasks_last_usage(t, &u);
                    gen_tokens[1] += u.completion_tokens;
                    rep_n++;
                    nbl_json *r = nbl_json_parse(out, strlen(out), &err);
                    int valid = r && r->type == NBL_JSON_ARRAY && (int)r->len <= n;
                    for (size_t k = 0; valid && k < r->len; k++) {
                        long cps = 0;
                        for (size_t b = 0; r->items[k].type == NBL_JSON_STRING && b < r->items[k].len; b++)
                            cps += ((unsigned char)r->items[k].str[b] & 0xC0) != 0x80;
                        valid = r->items[k].type == NBL_JSON_STRING && cps >= 1 && cps <= 60;
                    }
                    rep_valid += valid;
                    rep_full += valid && (int)r->len == n;
                    if (verbose) printf("%d replies %.0f ms%s: %s\n", line_no, ms, valid ? "" : " INVALID", out);
                    nbl_json_free(r);
                }
            } else if (!strcmp(kind, "memory")) {
                const nbl_json *ex = nbl_json_get(j, "existing"), *exp = nbl_json_get(j, "expected");
                char *exs = NULL;
                if (ex && ex->type == NBL_JSON_ARRAY) {
                    /* Re-serialize the existing facts: only strings are needed here. */
                    size_t cap = 16;
                    for (size_t k = 0; k < ex->len; k++) cap += (ex->items[k].type == NBL_JSON_STRING ? ex->items[k].len * 6 : 0) + 4;
                    exs = malloc(cap);
                    size_t w = 0;
                    exs[w++] = '[';
                    for (size_t k = 0; k < ex->len; k++) {
                        if (ex->items[k].type != NBL_JSON_STRING) continue;
                        if (w > 1) exs[w++] = ',';
                        exs[w++] = '"';
                        for (size_t b = 0; b < ex->items[k].len; b++) {
                            unsigned char c = (unsigned char)ex->items[k].str[b];
                            if (c == '"' || c == '\\') exs[w++] = '\\', exs[w++] = (char)c;
                            else if (c < 0x20) w += (size_t)snprintf(exs + w, 7, "\\u%04x", c);
                            else exs[w++] = (char)c;
                        }
                        exs[w++] = '"';
                    }
                    exs[w++] = ']';
                    exs[w] = 0;
                }
                s = nbl_task_memory(t, msgs.m, msgs.n, exs, &o.p, &out, &err);
                free(exs);
                ms = 1e3 * (now_s() - t0);
                if (!s) {
                    stat_add(&st_memory, ms);
                    nbl_tasks_last_usage(t, &u);
                    gen_tokens[2] += u.completion_tokens;
                    mem_n++;
                    nbl_json *r = nbl_json_parse(out, strlen(out), &err);
                    int valid = r && r->type == NBL_JSON_ARRAY;
                    mem_valid += valid;
                    size_t n_exp = exp && exp->type == NBL_JSON_ARRAY ? exp->len : 0;
                    if (exp && exp->type == NBL_JSON_ARRAY && n_exp == 0) {
                        mem_empty_n++;
                        mem_empty_ok += valid && r->len == 0;
                    }
                    for (size_t k = 0; valid && k < r->len; k++) {
                        const nbl_json *f = nbl_json_get(&r->items[k], "fact");
                        int hit = 0;
                        for (size_t e = 0; f && e < n_exp && !hit; e++)
                            hit = exp->items[e].type == NBL_JSON_STRING && overlap_f1(f->str, exp->items[e].str) >= 0.5;
                        mem_pred++;
                        mem_hit += hit;
                    }
                    for (size_t e = 0; valid && e < n_exp; e++) {
                        int found = 0;
                        for (size_t k = 0; k < r->len && !found; k++) {
                            const nbl_json *f = nbl_json_get(&r->items[k], "fact");
                            found = f && exp->items[e].type == NBL_JSON_STRING && overlap_f1(f->str, exp->items[e].str) >= 0.5;
                        }
                        mem_exp++;
                        mem_found += found;
                    }
                    if (verbose) printf("%d memory %.0f ms%s: %s\n", line_no, ms, valid ? "" : " INVALID", out);
                    nbl_json_free(r);
                }
            } else if (is_route) {
                const nbl_json *msg = nbl_json_get(j, "message"), *label = nbl_json_get(j, "label"),
                               *rs = nbl_json_get(j, "routes");
                jroutes routes;
                if (!msg || msg->type != NBL_JSON_STRING || routes_from_json(rs ? rs : def_routes, &routes, why, sizeof why)) {
                    fprintf(stderr, "%s:%d: route needs a string \"message\" and routes (%s)\n", data, line_no,
                            msg ? why : "no message");
                    nbl_json_free(j);
                    errors++;
                    continue;
                }
                nbl_route_opts ro;
                nbl_route_opts_init(&ro);
                ro.threshold = def_thr;
                ro.fallback = def_fb;
                nbl_route_result r;
                s = nbl_task_route(t, msg->str, routes.r, routes.n, &ro, &r, NULL, NULL, &err);
                ms = 1e3 * (now_s() - t0);
                if (!s) {
                    stat_add(&st_route, ms);
                    nbl_tasks_last_usage(t, &u);
                    gen_tokens[3] += u.completion_tokens;
                    route_n++;
                    int ok = label && label->type == NBL_JSON_STRING && r.route && !strcmp(r.route, label->str);
                    route_ok += ok;
                    route_fb += r.chosen < 0;
                    if (verbose)
                        printf("%d route %.0f ms %s: %s (%.2f)%s%s\n", line_no, ms, ok ? "ok" : "WRONG", r.route ? r.route : "null",
                               r.confidence, label && label->type == NBL_JSON_STRING ? " | label: " : "",
                               label && label->type == NBL_JSON_STRING ? label->str : "");
                }
                routes_free(&routes);
            } else {
                fprintf(stderr, "%s:%d: unknown task \"%s\"\n", data, line_no, kind);
                errors++;
            }
            if (s) {
                fprintf(stderr, "%s:%d: %s: %s\n", data, line_no, kind, err.msg);
                errors++;
            }
            free(out);
            free(msgs.m);
            nbl_json_free(j);
        }
    }
    printf("task_eval %s on %s\n", data, o.model);
    if (title_n)
        printf("  title    %d: compliant %.1f%%, mean %.1f words, %.1f tokens%s", title_n, 100.0 * title_ok / title_n,
               title_words / title_n, (double)gen_tokens[0] / title_n, title_ref ? "" : "\n");
    if (title_ref) printf(", word F1 vs reference %.2f (%d)\n", title_f1 / title_ref, title_ref);
    if (rep_n)
        printf("  replies  %d: valid JSON within limits %.1f%%, all n distinct replies %.1f%%, %.1f tokens\n", rep_n,
               100.0 * rep_valid / rep_n, 100.0 * rep_full / rep_n, (double)gen_tokens[1] / rep_n);
    if (mem_n) {
        printf("  memory   %d: valid JSON %.1f%%, precision %.2f (%d/%d facts), recall %.2f (%d/%d)", mem_n, 100.0 * mem_valid / mem_n,
               mem_pred ? (double)mem_hit / mem_pred : 0, mem_hit, mem_pred, mem_exp ? (double)mem_found / mem_exp : 0, mem_found,
               mem_exp);
        if (mem_empty_n) printf(", nothing-to-remember right %.1f%% (%d)", 100.0 * mem_empty_ok / mem_empty_n, mem_empty_n);
        printf(", %.1f tokens\n", (double)gen_tokens[2] / mem_n);
    }
    if (route_n)
        printf("  route    %d: accuracy %.1f%%, fallbacks %d, %.1f label tokens\n", route_n, 100.0 * route_ok / route_n, route_fb,
               (double)gen_tokens[3] / route_n);
    stat_print("title", &st_title);
    stat_print("replies", &st_replies);
    stat_print("memory", &st_memory);
    stat_print("route", &st_route);
    if (errors) printf("  %d line(s) failed\n", errors);
    nbl_json_free(def_routes);
    nbl_tasks_free(t);
    nbl_model_free(m);
    free(text);
    return errors ? 1 : 0;
}
