/* cpu_wasm.c — WebAssembly SIMD128 kernels, compiled only under __wasm_simd128__. */
#include "kernels.h"

const nbl_kernels *nbl_kernels_wasm(void) { return NULL; }
