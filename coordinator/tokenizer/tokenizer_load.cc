// Tokenizer::Load / FromJson: builds the pipeline from tokenizer.json and tokenizer_config.json.
#include <algorithm>
#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/tokenizer/json_fields.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2 {
namespace {

using tokenizer::TypeOf;

absl::Status Annotate(const absl::Status& s, std::string_view where) {
  return absl::Status(s.code(), absl::StrCat(std::string(where), ": ", s.message()));
}

// BOS/EOS the post_processor adds around a single sequence.
absl::Status AddPostProcessor(const Json& json, std::vector<int32_t>& prefix,
                              std::vector<int32_t>& suffix) {
  if (json.is_null()) return absl::OkStatus();
  DSV2_ASSIGN_OR_RETURN(std::string type, TypeOf(json, "post_processor"));
  if (type == "ByteLevel") return absl::OkStatus();  // offsets only
  if (type == "Sequence") {
    DSV2_ASSIGN_OR_RETURN(const Json* items, tokenizer::ArrayField(json, "processors"));
    for (const Json& item : *items) DSV2_RETURN_IF_ERROR(AddPostProcessor(item, prefix, suffix));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return absl::UnimplementedError(absl::StrCat("unsupported post_processor type '", type, "'"));
  }
  DSV2_ASSIGN_OR_RETURN(const Json* single, tokenizer::ArrayField(json, "single"));
  const Json* specials = JsonMember(json, "special_tokens");
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (const Json& piece : *single) {
    if (JsonMember(piece, "Sequence")) {
      seen_sequence = true;
      continue;
    }
    const Json* st = JsonMember(piece, "SpecialToken");
    const Json* name = st ? JsonMember(*st, "id") : nullptr;
    const Json* entry = (name && name->is_string() && specials)
                            ? JsonMember(*specials, name->get_ref<const std::string&>())
                            : nullptr;
    const Json* ids = entry ? JsonMember(*entry, "ids") : nullptr;
    if (ids == nullptr || !ids->is_array()) {
      return absl::InvalidArgumentError("TemplateProcessing: a SpecialToken has no ids");
    }
    for (const Json& id : *ids) {
      if (!IsJsonInteger(id) || JsonInt(id) < 0 || JsonInt(id) > INT32_MAX) {
        return absl::InvalidArgumentError(
            "TemplateProcessing: a SpecialToken id is not a token id");
      }
      (seen_sequence ? after : before).push_back(static_cast<int32_t>(JsonInt(id)));
    }
  }
  prefix.insert(prefix.begin(), before.begin(), before.end());
  suffix.insert(suffix.end(), after.begin(), after.end());
  return absl::OkStatus();
}

// bos_token / eos_token: a string or an AddedToken object.
std::string SpecialTokenContent(const Json& config, std::string_view key) {
  const Json* v = JsonMember(config, key);
  if (v == nullptr) return "";
  if (v->is_string()) return v->get_ref<const std::string&>();
  if (const Json* c = JsonMember(*v, "content"); c && c->is_string())
    return c->get_ref<const std::string&>();
  return "";
}

// Frees a parsed document on a helper thread: nlohmann's destructor visits every node (a seventh
// of the demo tokenizer's load, ~40 ms of the V3 one's) and nothing waits for the memory. The
// thread owns the document and touches nothing else, so it may outlive the call, even the
// program's last statement. Where no thread can be started, the document is freed here.
void FreeInBackground(Json doc) {
  try {
    std::thread([doc = std::move(doc)]() mutable { doc = Json(); }).detach();
  } catch (const std::system_error&) {
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  DSV2_ASSIGN_OR_RETURN(Json tok, ParseJsonFile(path));
  const std::string config_path =
      (std::filesystem::path(model_dir) / "tokenizer_config.json").string();
  std::optional<Json> config;
  if (std::filesystem::exists(config_path)) {
    DSV2_ASSIGN_OR_RETURN(config, ParseJsonFile(config_path));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = FromJson(tok, config ? &*config : nullptr);
  FreeInBackground(std::move(tok));
  if (!t.ok()) return Annotate(t.status(), model_dir);
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(const Json& json,
                                                               const Json* config) {
  constexpr char kFile[] = "tokenizer.json";
  if (!json.is_object()) return absl::InvalidArgumentError("tokenizer.json: not an object");
  for (const char* key : {"truncation", "padding"}) {
    if (const Json* v = JsonMember(json, key); v && !v->is_null()) {
      return absl::UnimplementedError(absl::StrCat("tokenizer.json: ", key, " is not supported"));
    }
  }
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  static const Json kNull;
  auto member = [&](const char* key) -> const Json& {
    const Json* v = JsonMember(json, key);
    return v ? *v : kNull;
  };
  auto with_context = [&](const absl::Status& s, const char* component) {
    return Annotate(s, absl::StrCat(kFile, ": ", component));
  };
  if (auto n = tokenizer::MakeNormalizer(member("normalizer")); n.ok()) {
    t->normalizer_ = *std::move(n);
  } else {
    return with_context(n.status(), "normalizer");
  }
  if (auto p = tokenizer::MakePreTokenizer(member("pre_tokenizer")); p.ok()) {
    t->pre_tokenizer_ = *std::move(p);
  } else {
    return with_context(p.status(), "pre_tokenizer");
  }
  if (member("model").is_null()) return absl::InvalidArgumentError("tokenizer.json: no model");
  if (auto m = tokenizer::BpeModel::Load(member("model"), t->pre_tokenizer_.byte_level); m.ok()) {
    t->model_ = *std::move(m);
  } else {
    return with_context(m.status(), "model");
  }
  if (auto a = tokenizer::AddedVocabulary::Load(member("added_tokens"), t->normalizer_.get());
      a.ok()) {
    t->added_ = *std::move(a);
  } else {
    return with_context(a.status(), "added_tokens");
  }
  if (auto d = tokenizer::MakeDecoder(member("decoder")); d.ok()) {
    t->decoder_ = *std::move(d);
  } else {
    return with_context(d.status(), "decoder");
  }

  // The id table: model vocabulary, overridden by added tokens.
  int32_t size = t->model_->size();
  for (const auto& a : t->added_.tokens()) size = std::max(size, a.id + 1);
  t->vocab_size_ = size;
  t->token_bytes_.resize(size);
  t->id_flags_.assign(size, 0);
  for (int32_t id = 0; id < t->model_->size(); ++id) {
    if (const std::string* s = t->model_->IdToToken(id)) {
      t->token_bytes_[id] = tokenizer::TokenBytes(t->decoder_, *s);
      t->id_flags_[id] = 1;
    }
  }
  for (const auto& a : t->added_.tokens()) {
    t->token_bytes_[a.id] = tokenizer::TokenBytes(t->decoder_, a.normalized_content);
    t->id_flags_[a.id] = 1 | (a.special ? 2 : 0);
  }

  // Special tokens: tokenizer_config.json, else the post_processor.
  std::vector<int32_t> prefix, suffix;
  if (auto s = AddPostProcessor(member("post_processor"), prefix, suffix); !s.ok()) {
    return with_context(s, "post_processor");
  }
  if (config != nullptr) {
    t->bos_token_ = SpecialTokenContent(*config, "bos_token");
    t->eos_token_ = SpecialTokenContent(*config, "eos_token");
    if (auto id = t->TokenToId(t->bos_token_)) t->bos_id_ = *id;
    if (auto id = t->TokenToId(t->eos_token_)) t->eos_id_ = *id;
    const Json* add_bos = JsonMember(*config, "add_bos_token");
    const Json* add_eos = JsonMember(*config, "add_eos_token");
    const Json* cls = JsonMember(*config, "tokenizer_class");
    const bool llama =
        cls && cls->is_string() && cls->get_ref<const std::string&>() == "LlamaTokenizerFast";
    if (add_bos || add_eos || llama) {
      const bool bos = add_bos ? add_bos->is_boolean() && add_bos->get<bool>() : llama;
      const bool eos = add_eos && add_eos->is_boolean() && add_eos->get<bool>();
      if ((bos && t->bos_id_ < 0) || (eos && t->eos_id_ < 0)) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json: add_bos_token/add_eos_token set but bos_token/eos_token is "
            "not in the vocabulary");
      }
      prefix.assign(bos ? 1 : 0, t->bos_id_);
      suffix.assign(eos ? 1 : 0, t->eos_id_);
    }
    const Json* tmpl = JsonMember(*config, "chat_template");
    if (tmpl && tmpl->is_array()) {  // [{name, template}, ...]: the default one
      const Json* chosen = nullptr;
      for (const Json& e : *tmpl) {
        const Json* name = JsonMember(e, "name");
        if (name && name->is_string() && name->get_ref<const std::string&>() == "default")
          chosen = JsonMember(e, "template");
      }
      tmpl = chosen;
    }
    if (tmpl && tmpl->is_string()) {
      t->chat_format_ = tokenizer::RecognizeChatTemplate(tmpl->get_ref<const std::string&>());
    }
  }
  t->special_prefix_ = std::move(prefix);
  t->special_suffix_ = std::move(suffix);
  for (int32_t id : t->special_prefix_) {
    if (id < 0 || id >= size) return absl::InvalidArgumentError("post_processor: bad token id");
  }
  for (int32_t id : t->special_suffix_) {
    if (id < 0 || id >= size) return absl::InvalidArgumentError("post_processor: bad token id");
  }
  return t;
}

}  // namespace dsv2
