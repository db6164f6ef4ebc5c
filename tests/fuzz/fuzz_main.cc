// The libFuzzer entry point of the targets of tests/fuzz/parser_targets.h: one program for all
// of them, the target named by $DSV2_FUZZ_TARGET (scripts/fuzz.sh sets it).
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/parser_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv2::fuzz::Target target = [] {
    const char* name = std::getenv("DSV2_FUZZ_TARGET");
    dsv2::fuzz::Target t = dsv2::fuzz::FindTarget(name != nullptr ? name : "");
    if (t == nullptr) {
      std::fprintf(stderr,
                   "fuzz: set DSV2_FUZZ_TARGET to safetensors, config_json, "
                   "tokenizer_json, tcp_frame, generate_request or http_request\n");
      std::abort();
    }
    return t;
  }();
  target(data, size);
  return 0;
}
