// The BPE model of tokenizer.json: vocab, merges (as "a b" strings or [a, b] pairs), unk_token,
// fuse_unk, byte_fallback, ignore_merges. In byte-level mode (a ByteLevel pre-tokenizer) the
// vocabulary is converted from the byte alphabet to raw bytes at load, so a pre-token's bytes
// are its initial symbols. Merging follows HF's order exactly (lowest rank first, then leftmost).
// Results per pre-token are kept in a bounded cache shared by all threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_document.h"

namespace dsv2::tokenizer {

class BpeModel {
 public:
  static absl::StatusOr<std::unique_ptr<BpeModel>> Load(const Json& model, bool byte_level);

  // Appends the ids of one pre-token (raw bytes, valid UTF-8 unless byte-level).
  void Tokenize(std::string_view piece, std::vector<int32_t>& out) const;

  // Vocabulary access in tokenizer.json's spelling (byte alphabet in byte-level mode).
  int32_t TokenToId(std::string_view token) const;  // -1 when absent
  const std::string* IdToToken(int32_t id) const;   // nullptr when absent
  // One past the largest id of the vocabulary.
  int32_t size() const { return static_cast<int32_t>(id_to_index_.size()); }
  bool byte_level() const { return byte_level_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  void InitialSymbols(std::string_view piece, std::vector<int32_t>& ids,
                      std::vector<uint32_t>& lens) const;
  void MergeAll(std::vector<int32_t>& ids, std::vector<uint32_t>& lens,
                std::vector<int32_t>& out) const;
  bool CacheGet(std::string_view piece, std::vector<int32_t>& out) const;
  void CachePut(std::string_view piece, const int32_t* ids, size_t n) const;

  bool byte_level_ = false;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  // Every vocab entry's tokenizer.json spelling, held once; never resized after Load, so the
  // views below stay valid.
  std::vector<std::string> tokens_;
  std::vector<int32_t> id_to_index_;  // id -> index into tokens_; -1 for a gap
  absl::flat_hash_map<absl::string_view, int32_t> token_to_id_;  // views into tokens_
  absl::flat_hash_map<std::string, int32_t> raw_to_id_;  // raw bytes (== spelling if not BL)
  std::array<int32_t, 256> byte_ids_{};                  // byte-level: id of each byte
  std::array<int32_t, 256> fallback_ids_{};              // byte_fallback: <0xXX>
  absl::flat_hash_map<uint64_t, Merge> merges_;

  static constexpr int kShards = 16;
  static constexpr size_t kMaxCachedPiece = 256;
  static constexpr size_t kShardCapacity = 8192;
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  mutable std::array<CacheShard, kShards> cache_;
};

}  // namespace dsv2::tokenizer
