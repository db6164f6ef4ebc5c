#include "coordinator/tokenizer/gguf_tokenizer.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/gguf_pre_tokenizers.h"
#include "common/json_document.h"
#include "common/status_macros.h"

namespace dsv2 {

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromGguf(const GgufModel& g) {
  const std::string& path = g.first().path();
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
  };
  DSV2_ASSIGN_OR_RETURN(const std::string model, g.String("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return bad(absl::StrCat("tokenizer.ggml.model '", model,
                            "' is not read (a byte-level BPE, 'gpt2', is); put the model's "
                            "tokenizer.json beside the file"));
  }
  const GgufValue* tokens = g.first().Find("tokenizer.ggml.tokens");
  const GgufValue* merges = g.first().Find("tokenizer.ggml.merges");
  const GgufValue* types = g.first().Find("tokenizer.ggml.token_type");
  if (tokens == nullptr || tokens->strings.empty() || merges == nullptr) {
    return bad("tokenizer.ggml.tokens or tokenizer.ggml.merges is missing");
  }
  Json pre;
  if (const GgufValue* ours = g.first().Find("dsv2.tokenizer.pre_tokenizer")) {
    DSV2_ASSIGN_OR_RETURN(pre, ParseJson(ours->s));
  } else {
    DSV2_ASSIGN_OR_RETURN(const std::string name, g.String("tokenizer.ggml.pre"));
    const std::string_view* known = GgufPreTokenizer(name);
    if (known == nullptr) {
      return bad(absl::StrCat("tokenizer.ggml.pre '", name,
                              "' is not a pre-tokenizer this server knows (deepseek-llm, "
                              "deepseek-v3); put the model's tokenizer.json beside the file"));
    }
    pre = Json::parse(*known);
  }
  Json vocab = Json::object(), added = Json::array();
  const size_t n = tokens->strings.size();
  for (size_t id = 0; id < n; ++id) {
    const int64_t type = types != nullptr && id < types->ints.size() ? types->ints[id] : 1;
    // Control and user-defined tokens are added tokens, and stay in the BPE vocabulary too (a
    // GGUF does not say whether tokenizer.json also listed them there; merges may use them).
    if (type == 1 || type == 3 || type == 4) vocab[tokens->strings[id]] = id;
    if (type == 3 || type == 4) {
      added.push_back({{"id", id},
                       {"content", tokens->strings[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == 3}});
    }
  }
  if (const GgufValue* ours = g.first().Find("dsv2.tokenizer.added_tokens")) {
    DSV2_ASSIGN_OR_RETURN(added, ParseJson(ours->s));  // with their flags, as written
  }
  const Json byte_level = {{"type", "ByteLevel"},
                           {"add_prefix_space", true},
                           {"trim_offsets", true},
                           {"use_regex", true}};
  Json tok = {{"normalizer", {{"type", "Sequence"}, {"normalizers", Json::array()}}},
              {"pre_tokenizer", pre},
              {"post_processor", byte_level},
              {"decoder", byte_level},
              {"added_tokens", added},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", merges->strings}}}};
  Json config = Json::object();
  auto token = [&](const char* key) -> std::string {
    const std::optional<int64_t> id = g.OptionalInt(key);
    return id && *id >= 0 && static_cast<size_t>(*id) < n ? tokens->strings[*id] : "";
  };
  if (const std::string bos = token("tokenizer.ggml.bos_token_id"); !bos.empty()) {
    config["bos_token"] = bos;
    config["add_bos_token"] = g.OptionalInt("tokenizer.ggml.add_bos_token").value_or(1) != 0;
  }
  if (const std::string eos = token("tokenizer.ggml.eos_token_id"); !eos.empty()) {
    config["eos_token"] = eos;
    config["add_eos_token"] = g.OptionalInt("tokenizer.ggml.add_eos_token").value_or(0) != 0;
  }
  if (const GgufValue* t = g.first().Find("tokenizer.chat_template"))
    config["chat_template"] = t->s;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(tok, &config);
  if (!t.ok()) return bad(absl::StrCat("its tokenizer keys: ", t.status().message()));
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const std::string& model) {
  const std::string dir = TokenizerDirOf(model);
  if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    return Tokenizer::Load(dir);
  }
  if (IsGgufPath(model)) {
    DSV2_ASSIGN_OR_RETURN(std::unique_ptr<GgufModel> g, GgufModel::Open(model));
    if (g->first().Find("tokenizer.ggml.tokens") != nullptr) return TokenizerFromGguf(*g);
  }
  return absl::NotFoundError(absl::StrCat(
      dir, " has no tokenizer.json", IsGgufPath(model) ? " and the file no tokenizer keys" : ""));
}

}  // namespace dsv2
