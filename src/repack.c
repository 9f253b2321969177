/* repack.c — the CPU's regrouped weight layouts. A decode product reads every weight once, and
 * with ggml's row-major blocks each row's sum must be reduced across vector lanes and each
 * block's scale fetched on its own; the decode kernel spends more time on that than on the
 * products. Regrouped, one 32-bit lane holds one row: 16 rows advance together through a block,
 * the products land in their own lanes, and the 16 scales are one load. Same bytes per row.
 *
 * Layout of NBL_TYPE_Q4_0_R16 / NBL_TYPE_Q8_0_R16 (K elements per row, nb = K/32 blocks, bw the
 * base type's row bytes): rows 16g .. 16g+15 (for every whole group) occupy the same 16*bw bytes
 * as before, as nb group-blocks of 16 base blocks each:
 *   32 bytes    the 16 rows' fp16 scales d, row r at byte 2r;
 *   then chunks of 64 bytes, chunk c holding bytes 4c .. 4c+3 of each row's quants, row r at
 *   byte 4r: Q4_0 has 4 chunks (its 16 quant bytes: low nibble j, high nibble j+16), Q8_0 8.
 * The last M % 16 rows stay as they were. */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

uint32_t nbl_layout_base(uint32_t type) {
    switch (type) {
    case NBL_TYPE_Q4_0_R16: return NBL_TYPE_Q4_0;
    case NBL_TYPE_Q8_0_R16: return NBL_TYPE_Q8_0;
    default: return type;
    }
}

int32_t nbl_layout_r16(uint32_t base) {
    switch (base) {
    case NBL_TYPE_Q4_0: return NBL_TYPE_Q4_0_R16;
    case NBL_TYPE_Q8_0: return NBL_TYPE_Q8_0_R16;
    default: return -1;
    }
}

/* Base block size and quant bytes per block of a regrouped type. */
static void r16_sizes(uint32_t rtype, int *bs, int *qb) {
    *qb = rtype == NBL_TYPE_Q4_0_R16 ? 16 : 32;
    *bs = 2 + *qb;
}

void nbl_r16_block(uint32_t rtype, const uint8_t *group, int64_t b, int32_t r, uint8_t *blk) {
    int bs, qb;
    r16_sizes(rtype, &bs, &qb);
    const uint8_t *g = group + (size_t)b * 16 * (size_t)bs;
    memcpy(blk, g + 2 * r, 2);
    for (int c = 0; c < qb / 4; c++) memcpy(blk + 2 + 4 * c, g + 32 + 64 * c + 4 * r, 4);
}

/* The inverse of nbl_r16_block for a whole group: 16 base rows bw bytes apart -> one group. */
static void r16_group(uint32_t rtype, const uint8_t *rows, size_t bw, int64_t nb, uint8_t *group) {
    int bs, qb;
    r16_sizes(rtype, &bs, &qb);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *g = group + (size_t)b * 16 * (size_t)bs;
        for (int r = 0; r < 16; r++) {
            const uint8_t *blk = rows + (size_t)r * bw + (size_t)b * (size_t)bs;
            memcpy(g + 2 * r, blk, 2);
            for (int c = 0; c < qb / 4; c++) memcpy(g + 32 + 64 * c + 4 * r, blk + 2 + 4 * c, 4);
        }
    }
}

void nbl_r16_pack(uint32_t rtype, const uint8_t *src, int64_t M, int64_t K, uint8_t *dst) {
    int bs, qb;
    r16_sizes(rtype, &bs, &qb);
    const int64_t nb = K / 32, M16 = M / 16 * 16;
    const size_t bw = (size_t)nb * (size_t)bs;
    for (int64_t r = 0; r < M16; r += 16) r16_group(rtype, src + (size_t)r * bw, bw, nb, dst + (size_t)r * bw);
    if (M > M16) memcpy(dst + (size_t)M16 * bw, src + (size_t)M16 * bw, (size_t)(M - M16) * bw);
}

void nbl_r16_pack_inplace(uint32_t rtype, uint8_t *rows, int64_t M, int64_t K, uint8_t *scratch) {
    int bs, qb;
    r16_sizes(rtype, &bs, &qb);
    const int64_t nb = K / 32;
    const size_t bw = (size_t)nb * (size_t)bs;
    for (int64_t r = 0; r + 16 <= M; r += 16) {
        memcpy(scratch, rows + (size_t)r * bw, 16 * bw);
        r16_group(rtype, scratch, bw, nb, rows + (size_t)r * bw);
    }
}

void nbl_r16_dequant_row(uint32_t rtype, const uint8_t *data, int64_t M, int64_t K, int64_t r, float *dst) {
    int bs, qb;
    r16_sizes(rtype, &bs, &qb);
    const uint32_t base = nbl_layout_base(rtype);
    const int64_t nb = K / 32;
    const size_t bw = (size_t)nb * (size_t)bs;
    if (r >= M / 16 * 16) {
        nbl_dequant_row(base, data + (size_t)r * bw, dst, K);
        return;
    }
    const uint8_t *g = data + (size_t)(r / 16 * 16) * bw;
    uint8_t blk[34];
    for (int64_t b = 0; b < nb; b++) {
        nbl_r16_block(rtype, g, b, (int32_t)(r % 16), blk);
        nbl_dequant_row(base, blk, dst + 32 * b, 32);
    }
}
