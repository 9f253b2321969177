/* grammar_gen.c — binds a grammar to a model's vocabulary for generate.c: masks the logits to
 * the tokens the grammar allows, samples among them and advances the grammar state. */
#include "cpu.h"

nbl_status nbl_grammar_gen_new(const nbl_model *m, const nbl_grammar *g, nbl_grammar_gen **out,
                               nbl_error *err) {
    (void)m;
    (void)g;
    *out = NULL;
    return nbl_set_err(err, NBL_E_UNSUPPORTED, "generate: constrained decoding is not built in");
}

void nbl_grammar_gen_free(nbl_grammar_gen *gg) { (void)gg; }

int32_t nbl_grammar_gen_sample(nbl_grammar_gen *gg, const float *logits, int32_t n_vocab,
                               const nbl_sampler_params *sp, nbl_rng *rng, nbl_error *err) {
    (void)gg, (void)logits, (void)n_vocab, (void)sp, (void)rng;
    nbl_set_err(err, NBL_E_UNSUPPORTED, "generate: constrained decoding is not built in");
    return -1;
}

int nbl_grammar_gen_done(const nbl_grammar_gen *gg) {
    (void)gg;
    return 0;
}
