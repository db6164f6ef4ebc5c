// Stand-in for <cuda_pipeline.h> under the CPU emulation: cp.async copies that land at the
// wait (tests/emu/cuda_emu.h).
#pragma once

#include <cstddef>

#include "tests/emu/cuda_emu.h"

inline void __pipeline_memcpy_async(void* dst, const void* src, size_t bytes, size_t zfill = 0) {
  (void)zfill;
  ::dsv2::emu::PipelineCopy(dst, src, bytes);
}
inline void __pipeline_commit() { ::dsv2::emu::PipelineCommit(); }
inline void __pipeline_wait_prior(size_t pending) { ::dsv2::emu::PipelineWaitPrior(pending); }
