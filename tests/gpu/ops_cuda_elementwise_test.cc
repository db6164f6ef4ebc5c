// CUDA parity of the row-wise ops: RmsNorm, ApplyRope, SiluMul, EmbeddingLookup, CastRows,
// FillRandom. Each CUDA op runs on device copies of fresh random inputs with poisoned outputs,
// the CPU twin on the same values in host float32, and the results must agree (see
// cuda_test_util.h for tolerances).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cast_rows.h"
#include "kernels/dtype.h"
#include "kernels/embedding.h"
#include "kernels/exec_context.h"
#include "kernels/fill_random.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/silu_mul.h"
#include "kernels/weight_view.h"
#include "tests/gpu/cuda_test_util.h"

namespace dsv2 {
namespace {

using cuda_test::DeviceScratch;
using cuda_test::Encode;
using cuda_test::ExpectAllClose;
using cuda_test::NanVector;
using cuda_test::RandomFloats;
using cuda_test::RoundTo;

class CudaElementwiseTest : public cuda_test::CudaOpTest {};

// Padded strides, with and without the residual add (which writes x back), and in place.
TEST_P(CudaElementwiseTest, RmsNorm) {
  std::mt19937 rng(101);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  for (int64_t dim : {7, 33, 100, 576}) {
    for (int64_t n : {1, 3, 17}) {
      for (int mode = 0; mode < 3; ++mode) {  // 0: plain, 1: with add, 2: in place (y = x)
        const bool with_add = mode == 1, in_place = mode == 2;
        SCOPED_TRACE("dim=" + std::to_string(dim) + " n=" + std::to_string(n) +
                     " mode=" + std::to_string(mode));
        const int64_t xs = dim + 3, ys = in_place ? xs : dim + 5;
        const float eps = 1e-6f;
        const std::vector<float> x0 = Act(RandomFloats(n * xs, rng, -3.0f, 3.0f));
        const std::vector<float> add = Act(RandomFloats(n * xs, rng, -2.0f, 2.0f));
        const std::vector<float> w = RandomFloats(dim, rng, 0.5f, 1.5f);  // float32 always

        DeviceScratch dev(cuda());
        void* d_x = dev.UploadAs(act(), x0);
        void* d_add = with_add ? dev.UploadAs(act(), add) : nullptr;
        const float* d_w = dev.Upload(w);
        void* d_y = in_place ? d_x : dev.Poisoned(n * ys * DTypeSize(act()));
        ASSERT_TRUE(dev.ok()) << dev.status();

        std::vector<float> x = x0;
        std::vector<float> y = in_place ? std::vector<float>() : NanVector(n * ys);
        RmsNormArgs a{x.data(), in_place ? x.data() : y.data(), w.data(), n, dim, xs, ys,
                      eps,      with_add ? add.data() : nullptr};
        RmsNorm(on_cpu, a);
        a.x = d_x;
        a.y = d_y;
        a.weight = d_w;
        a.add = d_add;
        RmsNorm(on_gpu, a);

        const std::vector<float> got_x = dev.DownloadAs(act(), d_x, n * xs);
        const std::vector<float> got_y = in_place ? got_x : dev.DownloadAs(act(), d_y, n * ys);
        ASSERT_TRUE(dev.ok()) << dev.status();
        ExpectAllClose(got_x, x, Tol(), in_place ? "x (normalised in place)" : "x");
        if (!in_place) ExpectAllClose(got_y, y, Tol(), "y");
      }
    }
  }
}

// Interleaved pairs over heads with padded strides, positions up to 16k, attn_factor != 1; in
// place (untouched elements between vectors must survive) and into a separate `out` layout.
TEST_P(CudaElementwiseTest, ApplyRope) {
  std::mt19937 rng(202);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  for (int64_t dim : {2, 64}) {
    std::vector<float> inv_freq(dim / 2);
    for (int64_t i = 0; i < dim / 2; ++i) {
      inv_freq[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(dim));
    }
    for (int64_t n_tokens : {1, 3, 17}) {
      for (int64_t n_vecs : {1, 3, 16}) {
        for (bool separate_out : {false, true}) {
          SCOPED_TRACE("dim=" + std::to_string(dim) + " tokens=" + std::to_string(n_tokens) +
                       " vecs=" + std::to_string(n_vecs) + " out=" + std::to_string(separate_out));
          // A vector is the rope part of a longer head (as q_pe in [q_nope | q_pe]).
          const int64_t vec_stride = dim + 7, token_stride = n_vecs * vec_stride + 2;
          const int64_t out_vec_stride = dim + 1, out_token_stride = n_vecs * out_vec_stride + 3;
          std::vector<int32_t> pos(n_tokens);
          std::uniform_int_distribution<int32_t> pick(0, 16383);
          for (int32_t& p : pos) p = pick(rng);
          pos[0] = 0;  // the identity rotation
          const float factor = 0.8f;
          const std::vector<float> x0 = Act(RandomFloats(n_tokens * token_stride, rng));

          DeviceScratch dev(cuda());
          void* d_x = dev.UploadAs(act(), x0);
          const int32_t* d_pos = dev.Upload(pos);
          const float* d_inv = dev.Upload(inv_freq);
          const int64_t out_elems = n_tokens * out_token_stride;
          void* d_out = separate_out ? dev.Poisoned(out_elems * DTypeSize(act())) : nullptr;
          ASSERT_TRUE(dev.ok()) << dev.status();

          std::vector<float> x = x0;
          std::vector<float> out = separate_out ? NanVector(out_elems) : std::vector<float>();
          RopeArgs a{x.data(), n_tokens,   n_vecs,          token_stride, vec_stride,
                     dim,      pos.data(), inv_freq.data(), factor};
          if (separate_out) {
            a.out = out.data();
            a.out_token_stride = out_token_stride;
            a.out_vec_stride = out_vec_stride;
          }
          ApplyRope(on_cpu, a);
          a.x = d_x;
          a.positions = d_pos;
          a.inv_freq = d_inv;
          a.out = d_out;
          ApplyRope(on_gpu, a);

          const std::vector<float> got_x = dev.DownloadAs(act(), d_x, n_tokens * token_stride);
          ASSERT_TRUE(dev.ok()) << dev.status();
          ExpectAllClose(got_x, x, Tol(), separate_out ? "x (must stay unchanged)" : "x");
          if (separate_out) {
            ExpectAllClose(dev.DownloadAs(act(), d_out, out_elems), out, Tol(), "out");
            ASSERT_TRUE(dev.ok()) << dev.status();
          }
        }
      }
    }
  }
}

// Padded and differing strides, gates far into both tails of the sigmoid, out aliasing gate.
TEST_P(CudaElementwiseTest, SiluMul) {
  std::mt19937 rng(303);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  for (int64_t width : {7, 33, 100, 1408}) {
    for (int64_t rows : {1, 3, 17}) {
      for (bool alias : {false, true}) {
        SCOPED_TRACE("width=" + std::to_string(width) + " rows=" + std::to_string(rows) +
                     " alias=" + std::to_string(alias));
        const int64_t gs = width + 1, us = width + 4, os = alias ? gs : width + 2;
        const std::vector<float> gate = Act(RandomFloats(rows * gs, rng, -30.0f, 30.0f));
        const std::vector<float> up = Act(RandomFloats(rows * us, rng, -2.0f, 2.0f));

        DeviceScratch dev(cuda());
        void* d_gate = dev.UploadAs(act(), gate);
        const void* d_up = dev.UploadAs(act(), up);
        void* d_out = alias ? d_gate : dev.Poisoned(rows * os * DTypeSize(act()));
        ASSERT_TRUE(dev.ok()) << dev.status();

        std::vector<float> g = gate;
        std::vector<float> out = alias ? std::vector<float>() : NanVector(rows * os);
        SiluMulArgs a{g.data(), up.data(), alias ? g.data() : out.data(), rows, width, gs, us, os};
        SiluMul(on_cpu, a);
        a.gate = d_gate;
        a.up = d_up;
        a.out = d_out;
        SiluMul(on_gpu, a);

        const std::vector<float> got = dev.DownloadAs(act(), d_out, rows * os);
        ASSERT_TRUE(dev.ok()) << dev.status();
        ExpectAllClose(got, alias ? g : out, Tol(), alias ? "out (aliasing gate)" : "out");
      }
    }
  }
}

// Row gather from F32 and BF16 tables with padded rows, repeated and boundary ids. A gather is
// exact: the result must be the table value rounded to the activation dtype, bit for bit.
TEST_P(CudaElementwiseTest, EmbeddingLookup) {
  std::mt19937 rng(404);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  const int64_t rows = 50;
  for (DType table_dtype : {DType::kF32, DType::kBF16}) {
    for (int64_t dim : {7, 33, 576}) {
      for (int64_t n : {1, 3, 17}) {
        SCOPED_TRACE(std::string("table=") + std::string(DTypeName(table_dtype)) +
                     " dim=" + std::to_string(dim) + " n=" + std::to_string(n));
        const int64_t stride = dim + 3;
        const std::vector<float> table =
            RoundTo(table_dtype, RandomFloats(rows * stride, rng, -4.0f, 4.0f));
        const std::vector<uint8_t> table_bytes = Encode(table_dtype, table);
        std::vector<int32_t> ids(n);
        std::uniform_int_distribution<int32_t> pick(0, rows - 1);
        for (int32_t& id : ids) id = pick(rng);
        ids[0] = rows - 1;
        if (n > 2) ids[2] = ids[1];  // a repeated id
        if (n > 3) ids[3] = 0;

        DeviceScratch dev(cuda());
        const void* d_table =
            dev.UploadBytes(table_bytes.data(), static_cast<int64_t>(table_bytes.size()));
        const int32_t* d_ids = dev.Upload(ids);
        void* d_out = dev.Poisoned(n * dim * DTypeSize(act()));
        ASSERT_TRUE(dev.ok()) << dev.status();

        std::vector<float> out = NanVector(n * dim);
        EmbeddingArgs a{WeightView{table_bytes.data(), table_dtype, rows, dim, stride}, ids.data(),
                        n, out.data()};
        EmbeddingLookup(on_cpu, a);
        a.table.data = d_table;
        a.ids = d_ids;
        a.out = d_out;
        EmbeddingLookup(on_gpu, a);

        const std::vector<float> got = dev.DownloadAs(act(), d_out, n * dim);
        ASSERT_TRUE(dev.ok()) << dev.status();
        ExpectAllClose(got, Act(out), 0.0, "out");
      }
    }
  }
}

// Every dtype combination, with and without the added term, in place too: the CUDA twin must
// give the CPU twin's bytes exactly (one addition, one round-to-nearest-even).
TEST_P(CudaElementwiseTest, CastRows) {
  std::mt19937 rng(404);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  const int64_t n = 4099;
  for (DType xd : {DType::kF32, DType::kBF16}) {
    for (DType yd : {DType::kF32, DType::kBF16}) {
      for (int add_kind : {0, 1, 2}) {  // none, float32, bfloat16
        SCOPED_TRACE(std::string(DTypeName(xd)) + " -> " + std::string(DTypeName(yd)) +
                     " add=" + std::to_string(add_kind));
        const DType ad = add_kind == 2 ? DType::kBF16 : DType::kF32;
        const std::vector<uint8_t> x = Encode(xd, RandomFloats(n, rng, -50.0f, 50.0f));
        const std::vector<uint8_t> add = Encode(ad, RandomFloats(n, rng, -3.0f, 3.0f));
        std::vector<uint8_t> want(n * DTypeSize(yd));
        CastRowsArgs a{.x = x.data(),
                       .x_dtype = xd,
                       .add = add_kind ? add.data() : nullptr,
                       .add_dtype = ad,
                       .y = want.data(),
                       .y_dtype = yd,
                       .n = n};
        CastRows(on_cpu, a);
        DeviceScratch dev(cuda());
        void* d_x = dev.UploadBytes(x.data(), static_cast<int64_t>(x.size()));
        a.x = d_x;
        a.add = add_kind ? dev.UploadBytes(add.data(), static_cast<int64_t>(add.size())) : nullptr;
        a.y = xd == yd ? d_x : dev.Poisoned(n * DTypeSize(yd));  // in place when sizes agree
        ASSERT_TRUE(dev.ok()) << dev.status();
        CastRows(on_gpu, a);
        const std::vector<uint8_t> got = dev.DownloadBytes(a.y, n * DTypeSize(yd));
        ASSERT_TRUE(dev.ok()) << dev.status();
        EXPECT_TRUE(got == want) << "bytes differ from the CPU twin";
      }
    }
  }
}

// Synthetic weights: the same counter hash on both sides, in the run's element type, at sizes
// that end mid-block and one past the grid's 4096 blocks (the grid-stride loop); the elements
// past n stay unwritten. The GPU may fuse offset + scale · u into one FMA: 1e-6 relative.
TEST_P(CudaElementwiseTest, FillRandom) {
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  const DType dtype = act();
  const int64_t tail = 16;
  for (int64_t n : {int64_t{1}, int64_t{255}, int64_t{4097}, int64_t{4096} * 256 + 3}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)) + " n=" + std::to_string(n));
    std::vector<uint8_t> want(static_cast<size_t>((n + tail) * DTypeSize(dtype)),
                              cuda_test::kPoisonByte);
    FillRandomArgs a{.out = want.data(),
                     .dtype = dtype,
                     .n = n,
                     .scale = 0.02f,
                     .offset = 0.5f,
                     .seed = 77 + static_cast<uint64_t>(n)};
    FillRandom(on_cpu, a);
    DeviceScratch dev(cuda());
    a.out = dev.Poisoned((n + tail) * DTypeSize(dtype));
    ASSERT_TRUE(dev.ok()) << dev.status();
    FillRandom(on_gpu, a);
    const std::vector<float> got = dev.DownloadAs(dtype, a.out, n + tail);
    ASSERT_TRUE(dev.ok()) << dev.status();
    ExpectAllClose(got, cuda_test::Decode(dtype, want), bf16() ? 1e-2 : 1e-6, "values");
  }
}

DSV2_CUDA_DTYPE_SUITE(CudaElementwiseTest);

}  // namespace
}  // namespace dsv2
