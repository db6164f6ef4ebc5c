// Chat formatting of {role, content} messages. The template string of tokenizer_config.json is
// recognised, not interpreted: the DeepSeek-V2(-Lite)-Chat format and the DeepSeek-V3 format are
// implemented here and produce what their Jinja templates produce.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2::tokenizer {

struct ChatMessage {
  std::string role;
  std::string content;
};

enum class ChatFormat { kDeepSeekV2, kDeepSeekV3 };

// The format a chat_template string implements; INVALID_ARGUMENT listing the supported ones
// when it is not recognised.
absl::StatusOr<ChatFormat> RecognizeChatTemplate(const std::string& chat_template);

const char* ChatFormatName(ChatFormat f);

// Renders the conversation like the template (bos/eos are the token strings). Unknown roles are
// INVALID_ARGUMENT naming the role.
absl::StatusOr<std::string> RenderChat(ChatFormat f, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& bos,
                                       const std::string& eos);

}  // namespace dsv2::tokenizer
