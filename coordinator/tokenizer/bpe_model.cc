#include "coordinator/tokenizer/bpe_model.h"

#include <algorithm>
#include <functional>
#include <thread>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/json_fields.h"

namespace dsv2::tokenizer {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status ModelError(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("model: ", std::string(what)));
}

// One merge candidate: lowest rank first, then leftmost position (HF's order).
struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Load(const Json& model, bool byte_level) {
  DSV2_ASSIGN_OR_RETURN(std::string type, TypeOf(model, "model"));
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("unsupported model type '", type, "'"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = JsonMember(model, key);
    if (v && !v->is_null() && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
      return ModelError(absl::StrCat("BPE option '", key, "' is not supported"));
    }
  }
  if (const Json* d = JsonMember(model, "dropout"); d && d->is_number() && d->get<double>() > 0) {
    return ModelError("BPE dropout is not supported");
  }
  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  m->byte_level_ = byte_level;
  DSV2_ASSIGN_OR_RETURN(m->fuse_unk_, BoolField(model, "fuse_unk", false));
  DSV2_ASSIGN_OR_RETURN(m->byte_fallback_, BoolField(model, "byte_fallback", false));
  DSV2_ASSIGN_OR_RETURN(m->ignore_merges_, BoolField(model, "ignore_merges", false));

  const Json* vocab = JsonMember(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return ModelError("'vocab' must be an object");
  // One walk of the (tree-shaped) vocab object into flat lists; the maps are filled from them.
  std::vector<int32_t> ids;  // ids[i]: the id of tokens_[i]
  ids.reserve(vocab->size());
  m->tokens_.reserve(vocab->size());
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!IsJsonInteger(id) || JsonInt(id) < 0 || JsonInt(id) > INT32_MAX) {
      return ModelError(absl::StrCat("vocab entry '", token, "' has no valid id"));
    }
    m->tokens_.push_back(token);
    ids.push_back(static_cast<int32_t>(JsonInt(id)));
    max_id = std::max(max_id, ids.back());
  }
  m->id_to_index_.assign(static_cast<size_t>(max_id) + 1, -1);
  for (size_t i = 0; i < ids.size(); ++i) {
    m->id_to_index_[ids[i]] = static_cast<int32_t>(i);  // a repeated id keeps its last token
  }
  // The raw-bytes map; for a large vocabulary on a second thread while this one builds the
  // spelling map and the merges (about a fifth of the V3 tokenizer's load). Both read tokens_ and
  // write different members.
  auto build_raw_map = [m = m.get(), &ids, byte_level] {
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
    m->raw_to_id_.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!byte_level) {
        m->raw_to_id_.insert_or_assign(m->tokens_[i], ids[i]);
      } else if (std::optional<std::string> raw = alphabet.Decode(m->tokens_[i])) {
        m->raw_to_id_.insert_or_assign(std::move(*raw), ids[i]);
      }
    }
    for (int b = 0; b < 256; ++b) {
      auto it = m->raw_to_id_.find(std::string(1, static_cast<char>(b)));
      m->byte_ids_[b] = it == m->raw_to_id_.end() ? -1 : it->second;
    }
  };
  constexpr size_t kThreadedVocab = 32768;  // below it a thread costs more than it saves
  std::jthread raw_map_builder;             // joined before any return (destroyed before `m`)
  if (ids.size() >= kThreadedVocab) {
    raw_map_builder = std::jthread(build_raw_map);
  } else {
    build_raw_map();
  }
  m->token_to_id_.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    m->token_to_id_.insert_or_assign(AbslView(m->tokens_[i]), ids[i]);
  }
  for (int b = 0; b < 256; ++b) {
    auto fb = m->token_to_id_.find(absl::StrFormat("<0x%02X>", b));
    m->fallback_ids_[b] = fb == m->token_to_id_.end() ? -1 : fb->second;
  }
  if (const Json* unk = JsonMember(model, "unk_token"); unk && unk->is_string()) {
    auto it = m->token_to_id_.find(unk->get_ref<const std::string&>());
    if (it == m->token_to_id_.end()) {
      return ModelError(
          absl::StrCat("unk_token '", unk->get_ref<const std::string&>(), "' is not in the vocab"));
    }
    m->unk_id_ = it->second;
  }

  DSV2_ASSIGN_OR_RETURN(const Json* merges, ArrayField(model, "merges"));
  m->merges_.reserve(merges->size());
  std::string joined;  // a + b, reused across merges
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const Json& mv = (*merges)[rank];
    std::string_view a, b;
    if (mv.is_string()) {
      const std::string_view s = mv.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos) {
        return ModelError(
            absl::StrCat("merge ", rank, " '", std::string(s), "' is not two tokens"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mv.is_array() && mv.size() == 2 && mv[0].is_string() && mv[1].is_string()) {
      a = mv[0].get_ref<const std::string&>();
      b = mv[1].get_ref<const std::string&>();
    } else {
      return ModelError(absl::StrCat("merge ", rank, " is neither \"a b\" nor [a, b]"));
    }
    joined.assign(a).append(b);
    const int32_t ia = m->TokenToId(a), ib = m->TokenToId(b), inew = m->TokenToId(joined);
    if (ia < 0 || ib < 0 || inew < 0) {
      return ModelError(absl::StrCat("merge ", rank, " ('", std::string(a), "', '", std::string(b),
                                     "') uses a token that is not in the vocab"));
    }
    // A repeated pair keeps its last rank, as HF's map construction does.
    m->merges_.insert_or_assign(PairKey(ia, ib), Merge{static_cast<int32_t>(rank), inew});
  }
  if (raw_map_builder.joinable()) raw_map_builder.join();
  return m;
}

int32_t BpeModel::TokenToId(std::string_view token) const {
  auto it = token_to_id_.find(AbslView(token));
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= size() || id_to_index_[id] < 0) return nullptr;
  return &tokens_[id_to_index_[id]];
}

void BpeModel::InitialSymbols(std::string_view piece, std::vector<int32_t>& ids,
                              std::vector<uint32_t>& lens) const {
  int32_t unk_id = -1;
  uint32_t unk_len = 0;
  auto flush_unk = [&] {
    if (unk_id >= 0) {
      ids.push_back(unk_id);
      lens.push_back(unk_len);
      unk_id = -1;
    }
  };
  size_t i = 0;
  while (i < piece.size()) {
    size_t n = 1;
    int32_t id;
    if (byte_level_) {
      id = byte_ids_[static_cast<uint8_t>(piece[i])];
    } else {
      n = std::max<size_t>(1, ValidSequenceLength(piece, i));
      auto it = raw_to_id_.find(AbslView(piece.substr(i, n)));
      id = it == raw_to_id_.end() ? -1 : it->second;
    }
    if (id >= 0) {
      flush_unk();
      ids.push_back(id);
      lens.push_back(static_cast<uint32_t>(n));
    } else {
      bool fell_back = false;
      if (byte_fallback_) {
        fell_back = true;
        for (size_t k = 0; k < n; ++k)
          fell_back &= fallback_ids_[static_cast<uint8_t>(piece[i + k])] >= 0;
        if (fell_back) {
          // HF adds fallback bytes before a pending unk (which waits for a known symbol).
          for (size_t k = 0; k < n; ++k) {
            ids.push_back(fallback_ids_[static_cast<uint8_t>(piece[i + k])]);
            lens.push_back(1);
          }
        }
      }
      if (!fell_back && unk_id_ >= 0) {
        if (unk_id >= 0 && fuse_unk_) {
          unk_len += static_cast<uint32_t>(n);
        } else {
          flush_unk();
          unk_id = unk_id_;
          unk_len = static_cast<uint32_t>(n);
        }
      }
    }
    i += n;
  }
  flush_unk();
}

void BpeModel::MergeAll(std::vector<int32_t>& ids, std::vector<uint32_t>& lens,
                        std::vector<int32_t>& out) const {
  const auto n = static_cast<int32_t>(ids.size());
  thread_local std::vector<int32_t> prev, next;
  thread_local std::vector<Candidate> heap;
  prev.resize(n);
  next.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  heap.clear();
  const std::greater<Candidate> later;  // a min-heap on (rank, pos)
  auto push = [&](Candidate c) {
    heap.push_back(c);
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Merge* m = FindMerge(ids[i], ids[i + 1])) heap.push_back({m->rank, i, m->new_id});
  }
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    if (lens[top.pos] == 0 || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const Merge* current = FindMerge(ids[top.pos], ids[right]);
    if (current == nullptr || current->new_id != top.new_id) continue;  // expired
    ids[top.pos] = top.new_id;
    lens[top.pos] += lens[right];
    lens[right] = 0;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) {
      const int32_t p = prev[top.pos];
      if (const Merge* m = FindMerge(ids[p], ids[top.pos])) push({m->rank, p, m->new_id});
    }
    if (next[top.pos] >= 0) {
      if (const Merge* m = FindMerge(ids[top.pos], ids[next[top.pos]])) {
        push({m->rank, top.pos, m->new_id});
      }
    }
  }
  for (int32_t i = 0; i < n; ++i) {
    if (lens[i] != 0) out.push_back(ids[i]);
  }
}

void BpeModel::Tokenize(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (byte_level_ && piece.size() == 1) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(piece[0])];
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable && CacheGet(piece, out)) return;
  const size_t start = out.size();
  if (ignore_merges_) {
    auto it = raw_to_id_.find(AbslView(piece));
    if (it != raw_to_id_.end()) out.push_back(it->second);
  }
  if (out.size() == start) {
    thread_local std::vector<int32_t> ids;
    thread_local std::vector<uint32_t> lens;
    ids.clear();
    lens.clear();
    InitialSymbols(piece, ids, lens);
    MergeAll(ids, lens, out);
  }
  if (cacheable) CachePut(piece, out.data() + start, out.size() - start);
}

bool BpeModel::CacheGet(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t h = absl::Hash<absl::string_view>()(AbslView(piece));
  CacheShard& shard = cache_[h % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.map.find(AbslView(piece));
  if (it == shard.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void BpeModel::CachePut(std::string_view piece, const int32_t* ids, size_t n) const {
  const size_t h = absl::Hash<absl::string_view>()(AbslView(piece));
  CacheShard& shard = cache_[h % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.map.size() >= kShardCapacity) return;  // bounded: stop adding when full (as HF)
  shard.map.try_emplace(std::string(piece), ids, ids + n);
}

}  // namespace dsv2::tokenizer
