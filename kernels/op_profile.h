// OpProfile: where a forward pass spends its time. Each named part of the model (attn.q_proj,
// moe.routed_experts, lm_head, ...) adds its wall time and the bytes of weights it read, summed
// over layers and calls. Off unless the ExecContext carries one (model_bench --profile): a
// ProfileScope on a context without a profile reads no clock. CPU only: a GPU op returns before
// its kernel ends, so its wall time would say nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/exec_context.h"

namespace dsv2 {

class OpProfile {
 public:
  struct Entry {
    std::string name;
    double seconds = 0;
    int64_t bytes = 0;  // weights read (0: the part reads activations or the cache only)
    int64_t calls = 0;
  };

  void Add(std::string_view name, double seconds, int64_t bytes);
  // In the order each part was first seen (the order of the forward pass).
  const std::vector<Entry>& entries() const { return entries_; }
  double total_seconds() const;
  void Clear() { entries_.clear(); }

 private:
  std::vector<Entry> entries_;
};

// Times its own lifetime into ctx's profile under `name`, if ctx carries one.
class ProfileScope {
 public:
  ProfileScope(const ExecContext& ctx, const char* name, int64_t bytes = 0)
      : profile_(ctx.profile()), name_(name), bytes_(bytes) {
    if (profile_ != nullptr) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() { Stop(); }
  // Ends the scope early (the destructor then adds nothing).
  void Stop() {
    if (profile_ == nullptr) return;
    const std::chrono::duration<double> d = std::chrono::steady_clock::now() - start_;
    profile_->Add(name_, d.count(), bytes_);
    profile_ = nullptr;
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;
  bool active() const { return profile_ != nullptr; }
  void set_bytes(int64_t bytes) { bytes_ = bytes; }

 private:
  OpProfile* profile_;
  const char* name_;
  int64_t bytes_;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace dsv2
