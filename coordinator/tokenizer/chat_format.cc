#include "coordinator/tokenizer/chat_format.h"

#include "absl/strings/str_cat.h"

namespace dsv2::tokenizer {
namespace {

bool Contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

absl::Status UnknownRole(const ChatMessage& m, ChatFormat f, std::string_view known) {
  return absl::InvalidArgumentError(absl::StrCat("chat message role '", m.role,
                                                 "' is not supported by the ", ChatFormatName(f),
                                                 " chat format (roles: ", std::string(known), ")"));
}

// DeepSeek-V2-Chat: BOS; user "User: {c}\n\n"; assistant "Assistant: {c}<EOS>";
// system "{c}\n\n"; generation prompt "Assistant:".
absl::StatusOr<std::string> RenderV2(const std::vector<ChatMessage>& messages, bool gen,
                                     const std::string& bos, const std::string& eos) {
  std::string out = bos;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      absl::StrAppend(&out, "User: ", m.content, "\n\n");
    } else if (m.role == "assistant") {
      absl::StrAppend(&out, "Assistant: ", m.content, eos);
    } else if (m.role == "system") {
      absl::StrAppend(&out, m.content, "\n\n");
    } else {
      return UnknownRole(m, ChatFormat::kDeepSeekV2, "system, user, assistant");
    }
  }
  if (gen) out += "Assistant:";
  return out;
}

// DeepSeek-V3: BOS, then all system prompts joined by "\n\n", then per message:
// user "<｜User｜>{c}"; assistant "<｜Assistant｜>{c}<｜end▁of▁sentence｜>" (after tool
// outputs: "<｜tool▁outputs▁end｜>{c}<｜end▁of▁sentence｜>"); tool outputs wrapped in
// <｜tool▁outputs▁begin｜>/<｜tool▁output▁begin｜>...<｜tool▁output▁end｜>.
absl::StatusOr<std::string> RenderV3(const std::vector<ChatMessage>& messages, bool gen,
                                     const std::string& bos) {
  std::string system;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      if (!first_system) system += "\n\n";
      system += m.content;
      first_system = false;
    } else if (m.role != "user" && m.role != "assistant" && m.role != "tool") {
      return UnknownRole(m, ChatFormat::kDeepSeekV3, "system, user, assistant, tool");
    }
  }
  constexpr char kEos[] = "<｜end▁of▁sentence｜>";
  std::string out = bos + system;
  bool is_tool = false, output_first = true;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      absl::StrAppend(&out, "<｜User｜>", m.content);
    } else if (m.role == "assistant") {
      absl::StrAppend(&out, is_tool ? "<｜tool▁outputs▁end｜>" : "<｜Assistant｜>", m.content,
                      kEos);
      is_tool = false;
    } else if (m.role == "tool") {
      is_tool = true;
      if (output_first) {
        absl::StrAppend(&out, "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>", m.content,
                        "<｜tool▁output▁end｜>");
        output_first = false;
      } else {
        absl::StrAppend(&out, "\n<｜tool▁output▁begin｜>", m.content, "<｜tool▁output▁end｜>");
      }
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (gen && !is_tool) out += "<｜Assistant｜>";
  return out;
}

}  // namespace

const char* ChatFormatName(ChatFormat f) {
  return f == ChatFormat::kDeepSeekV2 ? "DeepSeek-V2" : "DeepSeek-V3";
}

absl::StatusOr<ChatFormat> RecognizeChatTemplate(const std::string& t) {
  if (Contains(t, "'User: ' + message['content'] + '\\n\\n'") &&
      Contains(t, "'Assistant: ' + message['content'] + eos_token") &&
      Contains(t, "{{ 'Assistant:' }}") && !Contains(t, "think")) {
    return ChatFormat::kDeepSeekV2;
  }
  if (Contains(t, "'<｜User｜>' + message['content']") && Contains(t, "ns.system_prompt") &&
      Contains(t, "{{'<｜Assistant｜>'}}") && Contains(t, "<｜tool▁output▁begin｜>") &&
      !Contains(t, "think")) {
    return ChatFormat::kDeepSeekV3;
  }
  return absl::InvalidArgumentError(
      "tokenizer_config.json: chat_template is not one this server implements (supported: the "
      "DeepSeek-V2-Chat template 'User: ...\\n\\nAssistant: ...' and the DeepSeek-V3 template "
      "'<｜User｜>...<｜Assistant｜>...'); send a raw prompt instead");
}

absl::StatusOr<std::string> RenderChat(ChatFormat f, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& bos,
                                       const std::string& eos) {
  if (f == ChatFormat::kDeepSeekV2) return RenderV2(messages, add_generation_prompt, bos, eos);
  return RenderV3(messages, add_generation_prompt, bos);
}

}  // namespace dsv2::tokenizer
