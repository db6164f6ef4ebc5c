// <immintrin.h> for the kernels' per-function target attributes. GCC 12's AVX-512 headers trip
// -Wuninitialized on their own "undefined" vectors (GCC PR105593), so they are included with
// those warnings off.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>  // IWYU pragma: export
#pragma GCC diagnostic pop
