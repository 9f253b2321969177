/* bench/tokenize.c — tokenizer throughput: 1 MiB of mixed English prose, C code and Chinese text
 * (generated deterministically, or a file given as argument) tokenized with the Qwen2.5
 * vocabulary; prints load time, MiB/s and tokens/s.
 * Usage: tokenize [-m VOCAB.gguf] [-n REPEATS] [TEXT_FILE] */
#include "nbl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* CPU time of this thread: on a shared machine wall time also counts other processes. */
static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 11) % n);
}

static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "with", "as",
    "they", "be", "at", "one", "have", "this", "from", "by", "hot", "word", "but", "what", "some",
    "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how",
    "said", "each", "she", "which", "their", "time", "will", "way", "about", "many", "then",
    "them", "would", "write", "like", "so", "these", "her", "long", "make", "thing", "see",
    "him", "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound",
    "most", "people", "over", "know", "water", "than", "call", "first", "who", "may", "down",
    "side", "been", "now", "find", "tokenizer", "inference", "browser", "model", "weights",
    "don't", "it's", "we'll", "they're", "I've", "GPU", "WebAssembly", "2025", "3.14", "42%"};

static const char *const CODE[] = {
    "static int32_t %s(const uint8_t *src, size_t n) {\n",
    "    for (size_t i = 0; i < n; i++) {\n",
    "        if (src[i] == '\\n') count += 1; // count lines\n",
    "    return (int32_t)(count * 0x9e3779b9u >> 7);\n",
    "}\n\n",
    "def %s(x, y=None):\n    return [v ** 2 for v in x if v > 0]\n\n",
    "const %s = await fetch(url, { method: 'POST', body: JSON.stringify(data) });\n",
    "#include <stdio.h>\n",
    "    /* TODO: handle the %s case */\n"};

/* Common Chinese characters (UTF-8), picked at random into sentences. */
static const char HAN[] = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会"
                          "可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部"
                          "度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应"
                          "开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正"
                          "心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情";

static size_t put(char *buf, size_t o, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (o + n > cap) n = cap - o;
    memcpy(buf + o, s, n);
    return o + n;
}

static char *generate(size_t cap) {
    char *buf = malloc(cap + 1);
    size_t o = 0, nw = sizeof WORDS / sizeof WORDS[0], nc = sizeof CODE / sizeof CODE[0];
    size_t nh = (sizeof HAN - 1) / 3;
    while (o < cap) {
        uint32_t kind = rnd(10);
        if (kind < 5) { /* English paragraph */
            for (int s = 0, ns = 2 + (int)rnd(4); s < ns && o < cap; s++) {
                for (int w = 0, n = 5 + (int)rnd(12); w < n && o < cap; w++) {
                    char word[64];
                    snprintf(word, sizeof word, "%s%s", w ? " " : "", WORDS[rnd((uint32_t)nw)]);
                    if (!w) word[0] = (char)(word[0] >= 'a' && word[0] <= 'z' ? word[0] - 32 : word[0]);
                    o = put(buf, o, cap, word);
                }
                o = put(buf, o, cap, rnd(4) ? ". " : ", ");
            }
            o = put(buf, o, cap, "\n\n");
        } else if (kind < 8) { /* code */
            for (int l = 0, nl = 3 + (int)rnd(8); l < nl && o < cap; l++) {
                char line[256];
                snprintf(line, sizeof line, CODE[rnd((uint32_t)nc)], WORDS[rnd((uint32_t)nw)]);
                o = put(buf, o, cap, line);
            }
        } else { /* Chinese */
            for (int c = 0, n = 20 + (int)rnd(60); c < n && o + 3 <= cap; c++) {
                memcpy(buf + o, HAN + 3 * rnd((uint32_t)nh), 3);
                o += 3;
                if (rnd(12) == 0 && o + 3 <= cap) {
                    memcpy(buf + o, "\xef\xbc\x8c", 3); /* ， */
                    o += 3;
                }
            }
            if (o + 4 <= cap) o = put(buf, o, cap, "\xe3\x80\x82\n"); /* 。 */
            else break;
        }
    }
    buf[o] = 0;
    return buf;
}

int main(int argc, char **argv) {
    const char *fx = getenv("NBL_FIXTURES");
    char vocab[512];
    snprintf(vocab, sizeof vocab, "%s/tokenizer/qwen2-vocab.gguf", fx ? fx : "../shared/fixtures");
    const char *file = NULL;
    int repeats = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) snprintf(vocab, sizeof vocab, "%s", argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) repeats = atoi(argv[++i]);
        else file = argv[i];
    }
    if (repeats < 1) repeats = 1;
    nbl_model_options opt;
    nbl_model_options_init(&opt);
    opt.vocab_only = 1;
    nbl_model *m;
    nbl_error err;
    double t0 = now_ms(), c0 = cpu_ms();
    if (nbl_model_open_file(vocab, &opt, &m, &err)) {
        fprintf(stderr, "tokenize: %s\n", err.msg);
        return 1;
    }
    double t_load = now_ms() - t0, c_load = cpu_ms() - c0;

    size_t len;
    char *text;
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) {
            perror(file);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc(len + 1);
        if (fread(text, 1, len, f) != len) len = 0;
        fclose(f);
    } else {
        len = 1u << 20;
        text = generate(len);
        len = strlen(text);
    }
    int32_t n = nbl_tokenize(m, text, len, 0, NULL, 0, &err);
    if (n < 0) {
        fprintf(stderr, "tokenize: %s\n", err.msg);
        return 1;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t = now_ms(), c = cpu_ms();
        nbl_tokenize(m, text, len, 0, ids, n, &err);
        t = now_ms() - t;
        c = cpu_ms() - c;
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
    }
    /* sanity: the ids must give back the text */
    size_t o = 0;
    int ok = 1;
    char piece[512];
    for (int32_t i = 0; i < n && ok; i++) {
        int32_t k = nbl_token_to_bytes(m, ids[i], 0, piece, sizeof piece);
        ok = k >= 0 && k <= (int32_t)sizeof piece && o + (size_t)k <= len && !memcmp(text + o, piece, (size_t)k);
        o += (size_t)(k > 0 ? k : 0);
    }
    ok = ok && o == len;
    double mib = len / (1024.0 * 1024.0);
    printf("vocab load: %.1f ms wall, %.1f ms CPU (%d tokens)\n", t_load, c_load, nbl_vocab_size(m));
    printf("text: %.2f MiB -> %d tokens (%.2f bytes/token), round trip %s\n", mib, n,
           n ? (double)len / n : 0.0, ok ? "ok" : "FAILED");
    printf("tokenize (best of %d): %.1f ms wall = %.1f MiB/s; %.1f ms CPU = %.1f MiB/s, %.2f M tokens/s\n",
           repeats, best, mib / (best / 1e3), best_cpu, mib / (best_cpu / 1e3),
           n / (best_cpu / 1e3) / 1e6);
    free(ids);
    free(text);
    nbl_model_free(m);
    return ok ? 0 : 1;
}
