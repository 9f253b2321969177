/* grammar.h — what grammar.c (the grammar object and the JSON Schema compiler) shares with
 * grammar_match.c (the byte-level automaton, vocabulary tries and masks). Private to the two. */
#ifndef NBL_GRAMMAR_H
#define NBL_GRAMMAR_H

#include "nbl_impl.h"

enum { G_ANY, G_OBJECT, G_ARRAY, G_STRING, G_NUMBER, G_LITS, G_UNION };
/* Value kinds, as G_ANY masks. */
enum { K_OBJ = 1, K_ARR = 2, K_STR = 4, K_NUM = 8, K_BOOL = 16, K_NULL = 32, K_ALL = 63 };
enum { GF_INTEGER = 1, GF_RANGE = 2, GF_KEYS = 4 };

/* Node fields by type:
 *   G_ANY:    flags = kind mask
 *   G_OBJECT: a = properties, b = first in props[], c = key G_LITS node, d = rq[] in ints[]
 *             (rq[p], p = 0..a: first required property >= p, or a)
 *   G_ARRAY:  a = items node, b = minItems, c = maxItems (-1: limits)
 *   G_STRING: b = minLength, c = maxLength (-1: limits)
 *   G_NUMBER: flags GF_INTEGER / GF_RANGE; lo..hi = range of value * 10^F (F = 0 for integers,
 *             6 for numbers), so range checks are exact integer arithmetic
 *   G_LITS:   a = count, b = first in lits[] (sorted by bytes); GF_KEYS: tags are property
 *             indices of the parent object, filtered by what may still come
 *   G_UNION:  a..e = object / array / string / number / literal alternative (-1: none); the
 *             first byte decides, so unions stay deterministic */
typedef struct gnode {
    uint8_t type, flags;
    int32_t a, b, c, d, e;
    int64_t lo, hi;
} gnode;

typedef struct glit {
    uint32_t off, len;
    int32_t tag;
} glit;

typedef struct gprop {
    int32_t node, required;
} gprop;

/* Fixed nodes present in every grammar. */
enum { N_ANY = 0, N_STR = 1, N_NUM = 2, N_TFN = 3, N_FIXED = 4 };

struct nbl_grammar {
    gnode *nodes;
    int32_t n_nodes, cap_nodes;
    glit *lits;
    int32_t n_lits, cap_lits;
    char *pool;
    int32_t n_pool, cap_pool;
    gprop *props;
    int32_t n_props, cap_props;
    int32_t *ints;
    int32_t n_ints, cap_ints;
    int32_t root;
    nbl_grammar_limits lim;
};

#define MAXF 64           /* frames per state: schema nesting <= 24, generic depth <= 32 */
#define MAX_SCHEMA_DEPTH 24
#define MAX_TOKEN_LEN 1024
#define RANGE_FRAC 6      /* fraction digits of numbers with a range */

static const int64_t P10[19] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL,
                                10000000LL, 100000000LL, 1000000000LL, 10000000000LL,
                                100000000000LL, 1000000000000LL, 10000000000000LL,
                                100000000000000LL, 1000000000000000LL, 10000000000000000LL,
                                100000000000000000LL, 1000000000000000000LL};

#endif
