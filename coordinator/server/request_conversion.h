// Between the public proto (dsv2.v1) and the engine's types. Every error is INVALID_ARGUMENT
// naming the request field.
#pragma once

#include "absl/status/statusor.h"
#include "coordinator/serving/generation.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "dsv2/v1/inference.pb.h"
#include "grpcpp/grpcpp.h"

namespace dsv2 {

// Tokenizes text or chat prompts; `tokenizer` may be null (then only token_ids are accepted).
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const Tokenizer* tokenizer);

// The prompt of a request or a Tokenize call as token ids.
absl::StatusOr<std::vector<int32_t>> EncodeText(const Tokenizer* tokenizer, const std::string& text,
                                                bool add_special, const char* field);
absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer* tokenizer,
                                                const v1::ChatMessages& chat, const char* field);

// One streamed response; `tokenizer` (may be null) names the tokens of logprobs.
v1::GenerateResponse ToResponse(const GenerationEvent& event, const std::string& request_id,
                                const Tokenizer* tokenizer);

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace dsv2
