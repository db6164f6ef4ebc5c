// LogitsSummary on the GPU against its CPU twin: the argmax, the top 20 ids identical, the
// normaliser and top logits equal, on rows with ties, NaN, +inf and all −inf (logits are
// float32 in both runs; the sum order differs and each exp is within 1 ulp of double on both
// devices, hence 1e-9 relative on log_sum: see kernels/cpu/logits_summary.cc).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/logits_summary.h"
#include "tests/gpu/cuda_test_util.h"

namespace dsv2::cuda_test {
namespace {

class CudaLogitsTest : public CudaOpTest {};

TEST_P(CudaLogitsTest, SummaryEqualsCpuTwin) {
  std::mt19937 rng(909);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  for (int64_t vocab : {1, 7, 1000, 102400}) {
    SCOPED_TRACE("vocab=" + std::to_string(vocab));
    std::vector<float> logits;
    const int64_t n_rows = 6;
    for (int64_t r = 0; r < n_rows; ++r) {
      std::vector<float> row = RandomFloats(vocab, rng, -8.0f, 8.0f);
      if (r == 1) {
        for (int64_t i = 0; i < vocab; i += 3) row[i] = 9.0f;  // ties: lowest id first
      }
      if (r == 2) row[vocab / 2] = NAN;
      if (r == 3 && vocab > 5) row[5] = row[vocab - 1] = INFINITY;
      if (r == 4) row.assign(vocab, -INFINITY);
      if (r == 5) row.assign(vocab, NAN);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    const std::vector<int32_t> rows = {5, 0, 3, 1, 4, 2, 0};  // any order, repeats
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<LogitsSummaryRow> want(n);
    LogitsSummary(on_cpu, {logits.data(), vocab, rows.data(), n, kMaxSummaryTop, want.data()});
    DeviceScratch dev(cuda());
    const float* d_logits = dev.Upload(logits);
    const int32_t* d_rows = dev.Upload(rows);
    auto* d_out = static_cast<LogitsSummaryRow*>(dev.Poisoned(n * sizeof(LogitsSummaryRow)));
    ASSERT_TRUE(dev.ok()) << dev.status();
    LogitsSummary(on_gpu, {d_logits, vocab, d_rows, n, kMaxSummaryTop, d_out});
    const std::vector<uint8_t> bytes = dev.DownloadBytes(d_out, n * sizeof(LogitsSummaryRow));
    ASSERT_TRUE(dev.ok()) << dev.status();
    const auto* got = reinterpret_cast<const LogitsSummaryRow*>(bytes.data());
    for (int64_t j = 0; j < n; ++j) {
      SCOPED_TRACE("row " + std::to_string(rows[j]));
      EXPECT_EQ(got[j].argmax, want[j].argmax);
      EXPECT_TRUE(got[j].max == want[j].max || (std::isnan(got[j].max) && std::isnan(want[j].max)));
      if (std::isfinite(want[j].log_sum)) {
        EXPECT_NEAR(got[j].log_sum, want[j].log_sum,
                    1e-9 * std::max(1.0, std::abs(want[j].log_sum)));
      } else {
        EXPECT_EQ(got[j].log_sum, want[j].log_sum);
      }
      ASSERT_EQ(got[j].top_n, want[j].top_n);
      for (int32_t i = 0; i < want[j].top_n; ++i) {
        EXPECT_EQ(got[j].top_id[i], want[j].top_id[i]) << "rank " << i;
        EXPECT_EQ(got[j].top_logit[i], want[j].top_logit[i]) << "rank " << i;
      }
    }
  }
}

DSV2_CUDA_DTYPE_SUITE(CudaLogitsTest);

}  // namespace
}  // namespace dsv2::cuda_test
