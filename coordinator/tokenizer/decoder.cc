#include "coordinator/tokenizer/decoder.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/json_fields.h"

namespace dsv2::tokenizer {

absl::StatusOr<DecoderSpec> MakeDecoder(const Json& json) {
  DecoderSpec spec;
  if (json.is_null()) {
    spec.separator = " ";
    return spec;
  }
  DSV2_ASSIGN_OR_RETURN(std::string type, TypeOf(json, "decoder"));
  if (type == "ByteLevel") {
    spec.byte_level = true;
    return spec;
  }
  if (type == "Sequence") {
    DSV2_ASSIGN_OR_RETURN(const Json* items, ArrayField(json, "decoders"));
    for (const Json& item : *items) {
      DSV2_ASSIGN_OR_RETURN(std::string inner, TypeOf(item, "decoder"));
      if (inner != "ByteLevel") {
        return absl::UnimplementedError(absl::StrCat("unsupported decoder type '", inner, "'"));
      }
      if (spec.byte_level) {
        return absl::UnimplementedError("decoder Sequence with two ByteLevel decoders");
      }
      spec.byte_level = true;
    }
    return spec;
  }
  return absl::UnimplementedError(absl::StrCat("unsupported decoder type '", type, "'"));
}

std::string TokenBytes(const DecoderSpec& spec, const std::string& token) {
  if (!spec.byte_level) return token;
  std::optional<std::string> bytes = ByteLevelAlphabet::Get().Decode(token);
  return bytes ? *std::move(bytes) : token;
}

}  // namespace dsv2::tokenizer
