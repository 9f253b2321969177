/* quant.c — tensor types: block layouts (identical to ggml's, so GGUF files load as written),
 * fp16/bf16 conversion, and the scalar reference dequantize / dot / quantize routines that every
 * SIMD kernel is tested against. */
#include "nbl_impl.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* Every ggml type id, so a file with a type we cannot run still parses and the error can name
 * the type. supported = 0 marks types the engine does not execute. */
static const nbl_type_traits TYPES[NBL_TYPE_COUNT] = {
    [0] = {"f32", 1, 4, 1},        [1] = {"f16", 1, 2, 1},
    [2] = {"q4_0", 32, 18, 1},     [3] = {"q4_1", 32, 20, 1},
    [6] = {"q5_0", 32, 22, 1},     [7] = {"q5_1", 32, 24, 1},
    [8] = {"q8_0", 32, 34, 1},     [9] = {"q8_1", 32, 36, 0},
    [10] = {"q2_k", 256, 84, 1},   [11] = {"q3_k", 256, 110, 1},
    [12] = {"q4_k", 256, 144, 1},  [13] = {"q5_k", 256, 176, 1},
    [14] = {"q6_k", 256, 210, 1},  [15] = {"q8_k", 256, 292, 0},
    [16] = {"iq2_xxs", 256, 66, 0}, [17] = {"iq2_xs", 256, 74, 0},
    [18] = {"iq3_xxs", 256, 98, 0}, [19] = {"iq1_s", 256, 50, 0},
    [20] = {"iq4_nl", 32, 18, 1},  [21] = {"iq3_s", 256, 110, 0},
    [22] = {"iq2_s", 256, 82, 0},  [23] = {"iq4_xs", 256, 136, 0},
    [24] = {"i8", 1, 1, 0},        [25] = {"i16", 1, 2, 0},
    [26] = {"i32", 1, 4, 0},       [27] = {"i64", 1, 8, 0},
    [28] = {"f64", 1, 8, 0},       [29] = {"iq1_m", 256, 56, 0},
    [30] = {"bf16", 1, 2, 1},      [34] = {"tq1_0", 256, 54, 0},
    [35] = {"tq2_0", 256, 66, 0},  [39] = {"mxfp4", 32, 17, 0},
};

const nbl_type_traits *nbl_type_traits_get(uint32_t type) {
    if (type >= NBL_TYPE_COUNT || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

int32_t nbl_type_from_name(const char *name) {
    if (!name) return -1;
    for (uint32_t t = 0; t < NBL_TYPE_COUNT; t++) {
        if (!TYPES[t].name) continue;
        const char *a = TYPES[t].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return (int32_t)t;
    }
    return -1;
}

uint64_t nbl_row_bytes(uint32_t type, int64_t n) {
    const nbl_type_traits *t = nbl_type_traits_get(type);
    NBL_ASSERT(t && n % t->blck == 0);
    return (uint64_t)(n / t->blck) * (uint64_t)t->type_size;
}
