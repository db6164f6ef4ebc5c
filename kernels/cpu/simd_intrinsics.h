// <immintrin.h> for the kernels' per-function target attributes. GCC 12's AVX-512 headers trip
// -Wuninitialized on their own "undefined" vectors (GCC PR105593), so they are included with
// those warnings off.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>  // IWYU pragma: export
#pragma GCC diagnostic pop

// A function compiled for several ISAs; the loader picks the best the processor has (whatever
// DSV2_CPU_ISA says: only for code whose result does not depend on the ISA). Under TSan, one
// version only: the loader calls the ifunc resolver during relocation, before TSan's runtime is
// initialised, and an instrumented resolver crashes there (GCC 12 instruments it).
#if defined(__SANITIZE_THREAD__)
#define DSV2_ISA_CLONES
#else
#define DSV2_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
