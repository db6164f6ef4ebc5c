#include "coordinator/model/decode_graphs.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv2 {
namespace {

// Byte offsets of the table arrays for `rows` rows of `max_pages` pages.
struct TableOffsets {
  int64_t tokens, positions, token_table, out_rows, block_tables, slots, end;
  TableOffsets(int64_t rows, int64_t max_pages) {
    tokens = 0;
    positions = tokens + rows * 4;
    token_table = positions + rows * 4;
    out_rows = token_table + rows * 4;
    block_tables = out_rows + rows * 4;
    slots = (block_tables + rows * max_pages * 4 + 7) / 8 * 8;
    end = slots + rows * 8;
  }
};

int64_t BucketFor(int64_t n) {
  int64_t b = 1;
  while (b < n) b *= 2;
  return b;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecodeGraphs>> DecodeGraphs::Create(
    const DeepseekV2Model& model, const CpuContext& cpu, const DecodeGraphOptions& options) {
  if (options.max_batch < 1 || options.max_context < 1) {
    return absl::InvalidArgumentError("DecodeGraphs: max_batch and max_context must be >= 1");
  }
  std::unique_ptr<DecodeGraphs> g(new DecodeGraphs(model, options));
  g->options_.max_batch = BucketFor(options.max_batch);
  const Device device = model.device();
  g->workspace_ = std::make_unique<Workspace>(device);
  g->fetch_workspace_ = std::make_unique<Workspace>(device);
  if (CudaContext* cuda = model.cuda_context()) {
    g->ctx_ = std::make_unique<ExecContext>(*cuda, *g->workspace_);
  } else {
    g->options_.capture = false;
    g->ctx_ = std::make_unique<ExecContext>(cpu);
  }
  return g;
}

DecodeGraphs::~DecodeGraphs() {
  graphs_.clear();
  if (pinned_ != nullptr) cuda::FreeHost(pinned_);
}

bool DecodeGraphs::Accepts(const ForwardBatch& batch) const {
  if (model_.has_expert_backend() || batch.chunks.empty() ||
      static_cast<int64_t>(batch.chunks.size()) > options_.max_batch) {
    return false;
  }
  for (const SequenceChunk& c : batch.chunks) {
    if (c.num_tokens != 1 || c.all_logits || c.start_pos >= options_.max_context) return false;
  }
  return true;
}

void DecodeGraphs::Stage(const TokenLayout& l, int64_t bucket, int32_t scratch_page,
                         int64_t scratch_slot) {
  const TableOffsets o(options_.max_batch, max_pages_);
  // On a GPU the pinned staging buffer, copied over in one piece; on the CPU the tables
  // themselves.
  uint8_t* base =
      pinned_ != nullptr ? static_cast<uint8_t*>(pinned_) : device_tables_.as<uint8_t>();
  auto i32 = [&](int64_t off) { return reinterpret_cast<int32_t*>(base + off); };
  int64_t* slots = reinterpret_cast<int64_t*>(base + o.slots);
  for (int64_t r = 0; r < bucket; ++r) {
    const bool real = r < l.n_tokens;
    i32(o.tokens)[r] = real ? l.tokens[r] : 0;
    i32(o.positions)[r] = real ? l.positions[r] : 0;
    i32(o.token_table)[r] = static_cast<int32_t>(r);  // decode: each row is its own sequence
    i32(o.out_rows)[r] = static_cast<int32_t>(r);
    slots[r] = real ? l.slots[r] : scratch_slot;
    int32_t* table = i32(o.block_tables) + r * max_pages_;
    std::fill(table, table + max_pages_, scratch_page);
    if (real) {
      const int32_t* src = &l.block_tables[l.token_table[r] * l.max_pages];
      std::copy(src, src + l.max_pages, table);
    }
  }
}

TokenLayout DecodeGraphs::BucketLayout(int64_t bucket) const {
  const TableOffsets o(options_.max_batch, max_pages_);
  const uint8_t* d = device_tables_.as<uint8_t>();
  TokenLayout l;
  l.n_tokens = bucket;
  l.n_out = bucket;
  l.max_pages = max_pages_;
  // The attention split is sized for the longest context a graphed step can have.
  l.max_position = static_cast<int32_t>(options_.max_context - 1);
  l.tables = {reinterpret_cast<const int32_t*>(d + o.tokens),
              reinterpret_cast<const int32_t*>(d + o.positions),
              reinterpret_cast<const int32_t*>(d + o.token_table),
              reinterpret_cast<const int64_t*>(d + o.slots),
              reinterpret_cast<const int32_t*>(d + o.block_tables),
              reinterpret_cast<const int32_t*>(d + o.out_rows)};
  return l;
}

absl::StatusOr<const float*> DecodeGraphs::Run(LatentKvCache& cache, int64_t bucket) {
  const TokenLayout layout = BucketLayout(bucket);
  if (!options_.capture) {
    workspace_->Reset();
    return model_.RunLayers(*ctx_, cache, layout);
  }
  auto it = graphs_.find(bucket);
  if (it == graphs_.end()) {
    // Warm-up: runs the step for real (cuBLAS picks its kernels, the workspace reaches this
    // bucket's size), then the same work is captured and replayed below.
    workspace_->Reset();
    DSV2_RETURN_IF_ERROR(model_.RunLayers(*ctx_, cache, layout).status());
    DSV2_RETURN_IF_ERROR(ctx_->cuda().Synchronize());
    workspace_->Reset();  // merges grown blocks: earlier graphs would point at freed memory
    if (workspace_->overflow_allocations() != overflows_seen_) {
      overflows_seen_ = workspace_->overflow_allocations();
      graphs_.clear();
    }
    Captured c;
    DSV2_ASSIGN_OR_RETURN(c.graph, CudaGraph::Capture(ctx_->cuda(), [&]() -> absl::Status {
                            DSV2_ASSIGN_OR_RETURN(c.logits, model_.RunLayers(*ctx_, cache, layout));
                            return absl::OkStatus();
                          }));
    ++captures_;
    it = graphs_.emplace(bucket, std::move(c)).first;
  }
  DSV2_RETURN_IF_ERROR(it->second.graph->Launch());
  return it->second.logits;
}

absl::Status DecodeGraphs::Forward(LatentKvCache& cache, const ForwardBatch& batch,
                                   std::vector<float>* logits) {
  LogitsResult result;
  DSV2_RETURN_IF_ERROR(Forward(cache, batch, LogitsRequest{}, &result));
  *logits = std::move(result.full);
  return absl::OkStatus();
}

absl::Status DecodeGraphs::Forward(LatentKvCache& cache, const ForwardBatch& batch,
                                   const LogitsRequest& request, LogitsResult* result) {
  if (!Accepts(batch)) {
    return absl::InvalidArgumentError("DecodeGraphs: the batch is not a graphable decode step");
  }
  if (max_pages_ == 0) {  // first call: size the tables for this cache's pages
    max_pages_ = (options_.max_context + cache.page_size() - 1) / cache.page_size();
    table_bytes_ = TableOffsets(options_.max_batch, max_pages_).end;
    DSV2_ASSIGN_OR_RETURN(device_tables_, DeviceBuffer::Allocate(model_.device(), table_bytes_));
    if (model_.device() == Device::kCuda) {
      DSV2_ASSIGN_OR_RETURN(pinned_, cuda::MallocHost(table_bytes_));
    }
  } else if (cache.page_size() * max_pages_ < options_.max_context) {
    return absl::FailedPreconditionError("DecodeGraphs: used with a cache of another page size");
  }
  DSV2_ASSIGN_OR_RETURN(const TokenLayout layout, model_.Prepare(cache, batch));
  if (layout.max_pages > max_pages_) {
    return absl::FailedPreconditionError(
        absl::StrCat("DecodeGraphs: a sequence holds ", layout.max_pages,
                     " pages, more than max_context ", options_.max_context, " allows"));
  }
  const int64_t bucket = BucketFor(layout.n_tokens);
  Stage(layout, bucket, cache.scratch_page(),
        static_cast<int64_t>(cache.scratch_page()) * cache.page_size());
  if (model_.device() == Device::kCuda) {
    DSV2_RETURN_IF_ERROR(ctx_->cuda().CopyToDevice(device_tables_.data(), pinned_, table_bytes_));
  }
  DSV2_ASSIGN_OR_RETURN(const float* y, Run(cache, bucket));
  fetch_workspace_->Reset();
  return model_.FetchLogits(*ctx_, *fetch_workspace_, y, layout.n_tokens, request, result);
}

}  // namespace dsv2
