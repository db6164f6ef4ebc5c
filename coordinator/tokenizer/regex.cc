#include "coordinator/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace dsv2::tokenizer {
namespace {

constexpr uint32_t kMatchLimit = 10'000'000;

std::string PcreMessage(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return absl::StrCat("error ", code);
  return std::string(reinterpret_cast<const char*>(buf));
}

// Per-thread match state: match data for one pair, a JIT stack and a match context that bounds
// backtracking. Shared by every Regex used on the thread.
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(context, kMatchLimit);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
  }
};

MatchState& State() {
  thread_local MatchState state;
  return state;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view onig_pattern) {
  absl::StatusOr<std::string> pcre = TranslatePattern(onig_pattern);
  if (!pcre.ok()) return pcre.status();
  absl::StatusOr<std::unique_ptr<Regex>> re = CompilePcre(*pcre);
  if (re.ok()) (*re)->pattern_ = std::string(onig_pattern);
  return re;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::CompilePcre(std::string_view pcre_pattern) {
  pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK, &err, &err_offset, cctx);
  pcre2_compile_context_free(cctx);
  if (code == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex does not compile: ", PcreMessage(err), " at offset ", err_offset));
  }
  std::unique_ptr<Regex> re(new Regex());
  re->pattern_ = std::string(pcre_pattern);
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

int Regex::Find(std::string_view subject, size_t start, size_t* begin, size_t* end) const {
  MatchState& st = State();
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc =
      jit_ ? pcre2_jit_match(code, s, subject.size(), start, 0, st.data, st.context)
           : pcre2_match(code, s, subject.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.context);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  if (rc < 0) return rc;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  *begin = ov[0];
  *end = ov[1];
  return 1;
}

absl::Status Regex::FindError(int code) const {
  return absl::ResourceExhaustedError(
      absl::StrCat("regex '", pattern_, "' failed on the input: ", PcreMessage(code)));
}

}  // namespace dsv2::tokenizer
