// The dsv2.v1.Inference gRPC service over an InferenceEngine.
#pragma once

#include <atomic>
#include <string>

#include "coordinator/expert_parallel/expert_parallel_backend.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/serving/inference_engine.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "dsv2/v1/inference.grpc.pb.h"

namespace dsv2 {

struct ServedModel {
  const DeepseekV2Model* model = nullptr;
  const Tokenizer* tokenizer = nullptr;  // may be null
  InferenceEngine* engine = nullptr;
  std::string path;
  std::string device;
  bool demo = false;
  const ExpertParallelBackend* expert_group = nullptr;  // expert-parallel mode only
};

class InferenceService final : public v1::Inference::Service {
 public:
  explicit InferenceService(const ServedModel& served) : served_(served) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  ServedModel served_;
  std::atomic<uint64_t> next_request_number_{1};
};

}  // namespace dsv2
