#include "coordinator/server/malformed_request_interceptor.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

// The string fields of each request type, as a client would name them.
std::string StringFieldsOf(const std::string& method) {
  if (absl::EndsWith(method, "/Generate")) {
    return "request_id, text, chat.messages[].role/content, stopping.stop[]";
  }
  if (absl::EndsWith(method, "/Tokenize")) return "text, chat.messages[].role/content";
  return "its string fields";
}

}  // namespace

void MalformedRequestInterceptor::Intercept(grpc::experimental::InterceptorBatchMethods* methods) {
  using grpc::experimental::InterceptionHookPoints;
  if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
    const grpc::Status status = methods->GetSendStatus();
    if (status.error_code() == grpc::StatusCode::INTERNAL && status.error_message().empty()) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("request: ", method_, " could not be parsed; ", StringFieldsOf(method_),
                       " must be valid UTF-8 (proto3 strings)")));
    }
  }
  methods->Proceed();
}

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MalformedRequestInterceptor(info->method());
}

}  // namespace dsv2
