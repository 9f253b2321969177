/* cmd_convert.c — `nbl convert HF_DIR -o OUT.gguf [--type f16|bf16|f32]`: a Hugging Face
 * checkpoint directory (Qwen2 / Llama, safetensors) to a GGUF file llama.cpp also reads. */
#include "cli.h"
#include "../src/nbl_impl.h"

#include <string.h>

static void log_line(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "nbl convert: %s\n", msg);
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    nbl_convert_options opt;
    nbl_convert_options_init(&opt);
    opt.log = log_line;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) {
            out = argv[++i];
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--type")) && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "f16")) opt.out_type = NBL_TYPE_F16;
            else if (!strcmp(t, "bf16")) opt.out_type = NBL_TYPE_BF16;
            else if (!strcmp(t, "f32")) opt.out_type = NBL_TYPE_F32;
            else return cli_fail("convert", "--type must be f16, bf16 or f32 (not '%s')", t);
        } else if (!strcmp(a, "--name") && i + 1 < argc) {
            opt.name = argv[++i];
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            opt.log = NULL;
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            return cli_fail("convert",
                            "usage: nbl convert HF_DIR -o OUT.gguf [--type f16|bf16|f32] "
                            "[--name NAME] [-q]\n"
                            "  HF_DIR: a Qwen2ForCausalLM or LlamaForCausalLM checkpoint "
                            "(config.json, *.safetensors, tokenizer files)");
        }
    }
    if (!dir || !out) return cli_fail("convert", "need HF_DIR and -o OUT.gguf");
    nbl_error err = {0};
    if (nbl_convert_hf(dir, out, &opt, &err)) return cli_fail("convert", "%s", err.msg);
    if (opt.log) fprintf(stderr, "nbl convert: wrote %s\n", out);
    return 0;
}
