/* graph.c — the transformer forward pass, described once as a flat list of ops over named
 * activation buffers. The CPU executor (cpu.c) runs this list; the WebGPU exporter turns the same
 * list into a GPU plan. Nothing else in the library knows the layer structure. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

static const char *const BUF_NAMES[NBL_BUF_COUNT] = {
    [NBL_BUF_X] = "x",     [NBL_BUF_XN] = "xn",   [NBL_BUF_Q] = "q",     [NBL_BUF_K] = "k",
    [NBL_BUF_V] = "v",     [NBL_BUF_ATT] = "att", [NBL_BUF_G] = "gate",  [NBL_BUF_U] = "up",
    [NBL_BUF_OUT] = "out", [NBL_BUF_LOGITS] = "logits",
};

static const char *const OP_NAMES[NBL_OP_COUNT] = {
    [NBL_OP_EMBED] = "embed",     [NBL_OP_RMSNORM] = "rmsnorm", [NBL_OP_MATMUL] = "matmul",
    [NBL_OP_ROPE] = "rope",       [NBL_OP_KV_STORE] = "kv_store", [NBL_OP_ATTENTION] = "attention",
    [NBL_OP_SWIGLU] = "swiglu",   [NBL_OP_ADD] = "add",         [NBL_OP_SELECT_ROWS] = "select_rows",
};

const char *nbl_buf_name(int32_t b) { return b >= 0 && b < NBL_BUF_COUNT ? BUF_NAMES[b] : "?"; }
const char *nbl_op_name(int32_t op) { return op >= 0 && op < NBL_OP_COUNT ? OP_NAMES[op] : "?"; }

typedef struct builder {
    nbl_op *ops;
    int32_t n, cap;
} builder;

static nbl_op *push(builder *b, int32_t code, int32_t dst, int32_t a, int32_t layer) {
    NBL_ASSERT(b->n < b->cap); /* capacity is computed exactly in nbl_graph_build */
    nbl_op *op = &b->ops[b->n++];
    memset(op, 0, sizeof *op);
    op->code = code;
    op->dst = dst;
    op->a = a;
    op->b = -1;
    op->layer = layer;
    return op;
}

static void matmul(builder *b, int32_t dst, int32_t src, const nbl_weight *w, const float *bias,
                   int32_t layer) {
    nbl_op *op = push(b, NBL_OP_MATMUL, dst, src, layer);
    op->w = w;
    op->vec = bias;
    op->n = (int32_t)w->ne1;
}

static void rmsnorm(builder *b, int32_t dst, int32_t src, const float *weight, int32_t n,
                    int32_t layer) {
    nbl_op *op = push(b, NBL_OP_RMSNORM, dst, src, layer);
    op->vec = weight;
    op->n = n;
}

#define OPS_PER_LAYER 16

nbl_status nbl_graph_build(const nbl_model *m, nbl_graph *g, nbl_error *err) {
    const nbl_hparams *hp = &m->hp;
    memset(g, 0, sizeof *g);
    builder b = {0};
    b.cap = OPS_PER_LAYER * hp->n_layer + 8;
    b.ops = calloc((size_t)b.cap, sizeof(nbl_op));
    if (!b.ops) return nbl_set_err(err, NBL_E_NOMEM, "graph: out of memory");
    const int32_t E = hp->n_embd, QD = hp->n_head * hp->head_dim, KD = hp->n_head_kv * hp->head_dim;

    nbl_op *op = push(&b, NBL_OP_EMBED, NBL_BUF_X, -1, -1);
    op->w = &m->tok_embd;
    op->n = E;
    for (int32_t l = 0; l < hp->n_layer; l++) {
        const nbl_layer *L = &m->layers[l];
        rmsnorm(&b, NBL_BUF_XN, NBL_BUF_X, L->attn_norm, E, l);
        matmul(&b, NBL_BUF_Q, NBL_BUF_XN, &L->wq, L->bq, l);
        matmul(&b, NBL_BUF_K, NBL_BUF_XN, &L->wk, L->bk, l);
        matmul(&b, NBL_BUF_V, NBL_BUF_XN, &L->wv, L->bv, l);
        op = push(&b, NBL_OP_ROPE, NBL_BUF_Q, NBL_BUF_Q, l);
        op->n = hp->n_head;
        op = push(&b, NBL_OP_ROPE, NBL_BUF_K, NBL_BUF_K, l);
        op->n = hp->n_head_kv;
        op = push(&b, NBL_OP_KV_STORE, -1, NBL_BUF_K, l);
        op->b = NBL_BUF_V;
        op = push(&b, NBL_OP_ATTENTION, NBL_BUF_ATT, NBL_BUF_Q, l);
        op->n = QD;
        matmul(&b, NBL_BUF_XN, NBL_BUF_ATT, &L->wo, L->bo, l);
        op = push(&b, NBL_OP_ADD, NBL_BUF_X, NBL_BUF_X, l);
        op->b = NBL_BUF_XN;
        op->n = E;
        rmsnorm(&b, NBL_BUF_XN, NBL_BUF_X, L->ffn_norm, E, l);
        matmul(&b, NBL_BUF_G, NBL_BUF_XN, &L->w_gate, NULL, l);
        matmul(&b, NBL_BUF_U, NBL_BUF_XN, &L->w_up, NULL, l);
        op = push(&b, NBL_OP_SWIGLU, NBL_BUF_G, NBL_BUF_G, l);
        op->b = NBL_BUF_U;
        op->n = hp->n_ff;
        matmul(&b, NBL_BUF_XN, NBL_BUF_G, &L->w_down, NULL, l);
        op = push(&b, NBL_OP_ADD, NBL_BUF_X, NBL_BUF_X, l);
        op->b = NBL_BUF_XN;
        op->n = E;
    }
    /* Only the rows whose logits are wanted go through the output head. */
    op = push(&b, NBL_OP_SELECT_ROWS, NBL_BUF_OUT, NBL_BUF_X, -1);
    op->n = E;
    rmsnorm(&b, NBL_BUF_OUT, NBL_BUF_OUT, m->output_norm, E, -1);
    matmul(&b, NBL_BUF_LOGITS, NBL_BUF_OUT, &m->output, NULL, -1);

    g->ops = b.ops;
    g->n_ops = b.n;
    g->width[NBL_BUF_X] = E;
    g->width[NBL_BUF_XN] = E > QD ? E : QD;
    g->width[NBL_BUF_Q] = QD;
    g->width[NBL_BUF_K] = KD;
    g->width[NBL_BUF_V] = KD;
    g->width[NBL_BUF_ATT] = QD;
    g->width[NBL_BUF_G] = hp->n_ff;
    g->width[NBL_BUF_U] = hp->n_ff;
    g->width[NBL_BUF_OUT] = E;
    g->width[NBL_BUF_LOGITS] = hp->n_vocab;
    return NBL_OK;
}

void nbl_graph_free(nbl_graph *g) {
    free(g->ops);
    memset(g, 0, sizeof *g);
}
