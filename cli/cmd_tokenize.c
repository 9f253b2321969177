/* cmd_tokenize.c — `nbl tokenize`: shows how a model's tokenizer splits a text, one
 * "id<TAB>'piece'" line per token, or only the ids as a JSON array. The text is used verbatim. */
#include "cli.h"
#include "../src/nbl_impl.h"
#include "../src/unicode.h"

#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: nbl tokenize -m MODEL [--special] [--bos] [--ids] (TEXT | --stdin)\n"
    "  --special  recognise control-token text such as <|im_start|> (never for untrusted text)\n"
    "  --bos      add BOS (and EOS) when the model's tokenizer asks for them\n"
    "  --ids      print only a JSON array of token ids";

/* Pieces may be parts of a character (byte tokens): valid UTF-8 is printed as is, any other
 * byte and control characters as escapes, so the output stays readable text. */
static void print_piece(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = nbl_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (k > 1) {
            fwrite(s + i, 1, (size_t)k, stdout);
            i += (size_t)k;
        } else if (k == 1) {
            cli_print_escaped(stdout, s + i, 1);
            i++;
        } else {
            printf("\\x%02x", (unsigned char)s[i]);
            i++;
        }
    }
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, stdin);
        n += k;
        if (k == 0) break;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    int special = 0, ids_only = 0, use_stdin = 0, bos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--special")) special = 1;
        else if (!strcmp(a, "--ids")) ids_only = 1;
        else if (!strcmp(a, "--bos")) bos = 1;
        else if (!strcmp(a, "--stdin")) use_stdin = 1;
        else if (!strcmp(a, "--") && i + 1 < argc && !text) text = argv[++i];
        else if ((a[0] != '-' || !a[1]) && !text) text = a;
        else return cli_fail("tokenize", "bad argument '%s'\n%s", a, USAGE);
    }
    if (!model || (!text) == !use_stdin) return cli_fail("tokenize", "%s", USAGE);

    nbl_model_options opt;
    nbl_model_options_init(&opt);
    opt.vocab_only = 1;
    nbl_model *m = NULL;
    nbl_error err = {0};
    if (nbl_model_open_file(model, &opt, &m, &err)) return cli_fail("tokenize", "%s", err.msg);
    const nbl_vocab *v = nbl_model_vocab(m);
    if (!v) {
        nbl_model_free(m);
        return cli_fail("tokenize", "'%s' has no tokenizer", model);
    }
    nbl_vocab_info info;
    nbl_vocab_get_info(v, &info);
    if (info.warning) fprintf(stderr, "nbl tokenize: warning: %s\n", info.warning);

    size_t len;
    char *owned = NULL;
    if (use_stdin) {
        owned = read_stdin(&len);
        if (!owned) {
            nbl_model_free(m);
            return cli_fail("tokenize", "out of memory reading stdin");
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    uint32_t flags = (special ? NBL_TOK_PARSE_SPECIAL : 0) | (bos ? NBL_TOK_ADD_BOS : 0);
    int32_t n = nbl_tokenize(m, text, len, flags, NULL, 0, &err);
    int32_t *ids = n >= 0 ? malloc(sizeof *ids * (size_t)(n ? n : 1)) : NULL;
    if (ids) n = nbl_tokenize(m, text, len, flags, ids, n, &err);
    int rc = 0;
    if (!ids || n < 0) {
        fprintf(stderr, "nbl tokenize: %s\n", n < 0 ? err.msg : "out of memory");
        rc = 2;
    } else if (ids_only) {
        printf("[");
        for (int32_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
    } else {
        char *buf = malloc((size_t)info.max_token_bytes + 1);
        for (int32_t i = 0; buf && i < n; i++) {
            int32_t k = nbl_token_to_bytes(m, ids[i], 1, buf, info.max_token_bytes + 1);
            printf("%d\t'", ids[i]);
            print_piece(buf, (size_t)(k > 0 ? k : 0));
            printf("'\n");
        }
        free(buf);
    }
    free(ids);
    free(owned);
    nbl_model_free(m);
    return rc;
}
