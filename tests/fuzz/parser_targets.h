// The fuzz targets for what a deployment reads from outside: each takes arbitrary bytes, must
// never crash, hang or read out of bounds, and checks the invariants of what it accepts
// (aborting with a message when one fails). Built two ways: by scripts/fuzz.sh with libFuzzer
// and the sanitizers (one program per target), and into the normal test suite, where
// fuzz_regression_test replays the committed corpus and every input that ever failed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dsv2::fuzz {

// A safetensors file (header length, JSON header, data section).
void Safetensors(const uint8_t* data, size_t size);
// A GGUF file (header, metadata, tensor directory, data).
void Gguf(const uint8_t* data, size_t size);
// A config.json.
void ConfigJson(const uint8_t* data, size_t size);
// A tokenizer.json (then a fixed text through Encode and Decode when it loads).
void TokenizerJson(const uint8_t* data, size_t size);
// A TCP data-plane frame header (and a Hello payload behind it).
void TcpFrame(const uint8_t* data, size_t size);
// A serialized dsv2.v1.GenerateRequest through the gRPC service's conversion to the engine's
// request (the demo model's tokenizer): request_targets.cc.
void GenerateRequest(const uint8_t* data, size_t size);
// An HTTP request as the HTTP server parses it (Beast, bounded header and body), its body through
// the OpenAI API's request parser; bytes that are no HTTP request go to that parser directly.
void HttpRequest(const uint8_t* data, size_t size);

// By name ("safetensors", "gguf", "config_json", "tokenizer_json", "tcp_frame", "generate_request",
// "http_request"); null when unknown.
using Target = void (*)(const uint8_t*, size_t);
Target FindTarget(std::string_view name);

}  // namespace dsv2::fuzz
