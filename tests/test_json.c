/* test_json.c — the strict JSON parser: valid documents, every escape, numbers against the C
 * compiler's own conversion of the same literals, the error cases the RFC forbids (with
 * line:column), hostile nesting, and every .json fixture produced by other tools. */
#include "nbl_impl.h"
#include "test.h"

#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static nbl_json *parse(const char *s) {
    nbl_error e = {0};
    return nbl_json_parse(s, strlen(s), &e);
}

/* Expects failure; returns the message for inspection (static buffer). */
static const char *parse_err(const char *s, size_t len) {
    static nbl_error e;
    memset(&e, 0, sizeof e);
    nbl_json *j = nbl_json_parse(s, len, &e);
    if (j) {
        nbl_json_free(j);
        return NULL;
    }
    return e.code == NBL_E_FORMAT ? e.msg : "wrong code";
}

static void check_bad(const char *s, const char *why) {
    const char *m = parse_err(s, strlen(s));
    CHECK(m != NULL, "accepted invalid JSON (%s): %s", why, s);
    if (m) CHECK(strncmp(m, "JSON ", 5) == 0 && strchr(m, ':'), "message lacks line:col: %s", m);
}

static void test_scalars(void) {
    nbl_json *j = parse("  true ");
    CHECK(j && j->type == NBL_JSON_BOOL && j->b, "true");
    nbl_json_free(j);
    j = parse("false");
    CHECK(j && j->type == NBL_JSON_BOOL && !j->b, "false");
    nbl_json_free(j);
    j = parse("\n\tnull\r\n");
    CHECK(j && j->type == NBL_JSON_NULL, "null");
    nbl_json_free(j);

    /* Expected values are the compiler's conversions of the same decimal literals. */
    struct { const char *s; double v; } nums[] = {
        {"0", 0.0}, {"-0", -0.0}, {"1", 1.0}, {"-17", -17.0}, {"0.1", 0.1}, {"3.14159", 3.14159},
        {"1e10", 1e10}, {"1E+2", 1e2}, {"2.5e-3", 2.5e-3}, {"-0.0e0", -0.0},
        {"123456789012345678901234567890", 123456789012345678901234567890.0},
        {"1.7976931348623157e308", 1.7976931348623157e308}, {"4.9e-324", 4.9e-324},
        {"1e-400", 0.0}, {"0.30000000000000004", 0.30000000000000004},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        j = parse(nums[i].s);
        CHECK(j && j->type == NBL_JSON_NUMBER && j->num == nums[i].v &&
                  signbit(j->num) == signbit(nums[i].v),
              "number %s -> %.17g", nums[i].s, j ? j->num : -1.0);
        nbl_json_free(j);
    }
    /* A long number goes through the heap copy. */
    char big[400];
    memset(big, '0', sizeof big);
    big[0] = '1';
    big[1] = '.';
    big[sizeof big - 1] = 0;
    j = parse(big);
    CHECK(j && j->num == 1.0, "long fraction");
    nbl_json_free(j);

    /* A locale whose decimal point is ',' must not change number parsing. */
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8") || setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        j = parse("2.5");
        CHECK(j && j->num == 2.5, "locale with ',' decimal point: %g", j ? j->num : -1.0);
        nbl_json_free(j);
        setlocale(LC_NUMERIC, "C");
    }
}

static void test_strings(void) {
    nbl_json *j = parse("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
    CHECK(j && j->type == NBL_JSON_STRING && j->len == 15 &&
              memcmp(j->str, "\" \\ / \b \f \n \r \t", 16) == 0,
          "simple escapes");
    nbl_json_free(j);

    j = parse("\"\"");
    CHECK(j && j->type == NBL_JSON_STRING && j->len == 0 && j->str && j->str[0] == 0, "empty");
    nbl_json_free(j);

    /* \u escapes to UTF-8 at each encoded length; U+1F600 from its surrogate pair. */
    j = parse("\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\\u0000x\"");
    const char want[] = "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0x";
    CHECK(j && j->len == sizeof want - 1 && memcmp(j->str, want, sizeof want) == 0,
          "\\u escapes (len %zu)", j ? j->len : 0);
    nbl_json_free(j);

    j = parse("\"\\uDBFF\\uDFFF\"");
    CHECK(j && j->len == 4 && memcmp(j->str, "\xF4\x8F\xBF\xBF", 4) == 0, "U+10FFFF");
    nbl_json_free(j);

    /* Raw UTF-8 passes through unchanged. */
    j = parse("\"h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x98\x80\"");
    CHECK(j && j->len == 15 && memcmp(j->str, "h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x98\x80", 15) == 0,
          "raw UTF-8");
    nbl_json_free(j);
}

static void test_containers(void) {
    const char *doc = "{\"a\": [1, 2, {\"b\": null}], \"c\": {}, \"d\": [], \"a\": \"dup\","
                      " \"e\\u0301\": \"k\"}";
    nbl_json *j = parse(doc);
    CHECK(j && j->type == NBL_JSON_OBJECT && j->len == 5, "object");
    const nbl_json *a = nbl_json_get(j, "a");
    CHECK(a && a->type == NBL_JSON_ARRAY && a->len == 3, "a (first of duplicate keys)");
    CHECK(nbl_json_at(a, 1) && nbl_json_at(a, 1)->num == 2.0, "a[1]");
    CHECK(nbl_json_at(a, 3) == NULL, "out of range");
    const nbl_json *b = nbl_json_get(nbl_json_at(a, 2), "b");
    CHECK(b && b->type == NBL_JSON_NULL, "a[2].b");
    CHECK(nbl_json_get(j, "c") && nbl_json_get(j, "c")->len == 0, "empty object");
    CHECK(nbl_json_get(j, "d") && nbl_json_get(j, "d")->type == NBL_JSON_ARRAY, "empty array");
    CHECK(nbl_json_get(j, "e\xCC\x81") != NULL, "escaped key");
    CHECK(nbl_json_get(j, "zz") == NULL && nbl_json_get(a, "a") == NULL, "missing / non-object");
    nbl_json_free(j);

    /* 512 levels are allowed, 513 are not. */
    char deep[2 * 513 + 1];
    for (int n = 512; n <= 513; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        deep[2 * n] = 0;
        j = parse(deep);
        CHECK((j != NULL) == (n == 512), "depth %d", n);
        nbl_json_free(j);
    }
    /* Hostile nesting fails cleanly (no stack exhaustion), for arrays and objects. */
    size_t N = 100000;
    char *h = malloc(N * 5 + 1);
    memset(h, '[', N);
    memset(h + N, ']', N);
    const char *m = parse_err(h, 2 * N);
    CHECK(m && strstr(m, "512"), "deep arrays: %s", m ? m : "accepted");
    for (size_t i = 0; i < N; i++) memcpy(h + 5 * i, "{\"a\":", 5);
    m = parse_err(h, 5 * N);
    CHECK(m && strstr(m, "512"), "deep objects: %s", m ? m : "accepted");
    free(h);
}

static void test_errors(void) {
    check_bad("", "empty");
    check_bad("   ", "only whitespace");
    check_bad("{", "truncated object");
    check_bad("{\"a\"", "truncated after key");
    check_bad("{\"a\":", "truncated after colon");
    check_bad("[1,", "truncated array");
    check_bad("\"abc", "unterminated string");
    check_bad("\"abc\\", "truncated escape");
    check_bad("\"\\u12\"", "short \\u");
    check_bad("\"\\u12G4\"", "bad hex");
    check_bad("\"\\x41\"", "bad escape");
    check_bad("\"\\'\"", "single-quote escape");
    check_bad("\"\\uD800\"", "lone high surrogate");
    check_bad("\"\\uD800\\u0041\"", "high surrogate then non-low");
    check_bad("\"\\uDC00\"", "lone low surrogate");
    check_bad("\"a\tb\"", "raw tab in string");
    check_bad("\"a\nb\"", "raw newline in string");
    check_bad("\"\x01\"", "raw control char");
    check_bad("\"\xC3\"", "truncated UTF-8");
    check_bad("\"\xC0\xAF\"", "overlong UTF-8");
    check_bad("\"\xED\xA0\x80\"", "UTF-8 encoded surrogate");
    check_bad("\"\xF4\x90\x80\x80\"", "above U+10FFFF");
    check_bad("\"\xFF\"", "invalid byte");
    check_bad("01", "leading zero");
    check_bad("-01", "leading zero negative");
    check_bad("00", "double zero");
    check_bad("+1", "plus sign");
    check_bad(".5", "no integer part");
    check_bad("1.", "no fraction digits");
    check_bad("1e", "no exponent digits");
    check_bad("1e+", "no exponent digits after sign");
    check_bad("-", "lone minus");
    check_bad("0x10", "hex");
    check_bad("1e999", "overflow");
    check_bad("NaN", "NaN");
    check_bad("Infinity", "Infinity");
    check_bad("[1,]", "trailing comma array");
    check_bad("{\"a\":1,}", "trailing comma object");
    check_bad("[,1]", "leading comma");
    check_bad("[1 2]", "missing comma");
    check_bad("{\"a\" 1}", "missing colon");
    check_bad("{a:1}", "unquoted key");
    check_bad("{1:1}", "number key");
    check_bad("['a']", "single quotes");
    check_bad("tru", "truncated literal");
    check_bad("True", "capitalised literal");
    check_bad("nul", "truncated null");
    check_bad("1 2", "two values");
    check_bad("{} x", "trailing garbage");
    check_bad("[] // c", "comment");
    check_bad("\xEF\xBB\xBF{}", "BOM");
    check_bad("\f1", "form feed is not JSON whitespace");
    check_bad("\xC2\xA0 1", "NBSP is not JSON whitespace");

    /* Embedded NUL is data, not the end of input. */
    CHECK(parse_err("[1]\0", 4) != NULL, "NUL after value");

    /* Position: line and column of the offending byte. */
    const char *m = parse_err("{\n  \"a\": 1,\n  \"b\": [1, 2,]\n}", 28);
    CHECK(m && strstr(m, "3:"), "line of trailing comma: %s", m ? m : "accepted");
    m = parse_err("[1, 2, x]", 9);
    CHECK(m && strncmp(m, "JSON 1:8:", 9) == 0, "column: %s", m ? m : "accepted");
    m = parse_err("{\"k\": 01}", 9);
    CHECK(m && strstr(m, "leading zero"), "names leading zeros: %s", m ? m : "accepted");

    nbl_error e = {0};
    CHECK(nbl_json_parse(NULL, 3, &e) == NULL && e.code == NBL_E_ARG, "NULL text");
    nbl_json_free(NULL);
}

/* Parses every .json below dir; returns how many parsed. */
static int walk(const char *dir, int *n_files) {
    int ok = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            ok += walk(path, n_files);
            continue;
        }
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
        (*n_files)++;
        nbl_error e = {0};
        size_t len;
        char *text = nbl_read_file(path, &len, &e);
        CHECK(text && len == (size_t)st.st_size, "read %s: %s", path, e.msg);
        if (!text) continue;
        nbl_json *j = nbl_json_parse(text, len, &e);
        CHECK(j != NULL, "parse %s: %s", path, e.msg);
        ok += j != NULL;
        nbl_json_free(j);
        free(text);
    }
    closedir(d);
    return ok;
}

static void test_fixtures(void) {
    char path[1024];
    int n_files = 0;
    int ok = walk(fixtures_dir(), &n_files);
    CHECK(n_files >= 30 && ok == n_files, "fixture JSON: %d of %d parsed", ok, n_files);

    /* Content known from the fixture's description: five templates, six cases each. */
    snprintf(path, sizeof path, "%s/chat/templates.json", fixtures_dir());
    nbl_error e = {0};
    size_t len;
    char *text = nbl_read_file(path, &len, &e);
    nbl_json *j = text ? nbl_json_parse(text, len, &e) : NULL;
    CHECK(j && j->type == NBL_JSON_OBJECT && j->len == 5, "templates.json: %s", e.msg);
    const char *names[] = {"qwen2.5", "chatml", "llama3.2", "phi3.5", "gemma2"};
    for (int i = 0; i < 5; i++) {
        const nbl_json *t = nbl_json_get(j, names[i]);
        const nbl_json *cases = nbl_json_get(t, "cases");
        CHECK(cases && cases->type == NBL_JSON_ARRAY && cases->len == 6, "%s cases", names[i]);
        const nbl_json *src = nbl_json_get(t, "template");
        CHECK(src && src->type == NBL_JSON_STRING && strlen(src->str) == src->len,
              "%s template", names[i]);
    }
    const nbl_json *q = nbl_json_get(nbl_json_at(nbl_json_get(nbl_json_get(j, "qwen2.5"), "cases"), 0),
                                     "expected");
    CHECK(q && q->type == NBL_JSON_STRING &&
              strncmp(q->str, "<|im_start|>system\nYou are Qwen", 31) == 0,
          "qwen2.5 case 0 expected text");
    nbl_json_free(j);
    free(text);

    CHECK(nbl_read_file("/nonexistent/x.json", &len, &e) == NULL && e.code == NBL_E_IO &&
              strstr(e.msg, "/nonexistent/x.json"),
          "missing file: %s", e.msg);
}

int main(void) {
    test_scalars();
    test_strings();
    test_containers();
    test_errors();
    test_fixtures();
    return test_done();
}
