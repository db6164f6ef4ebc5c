// Turns the status gRPC sends when a request message cannot be parsed — proto3 rejects string
// fields holding invalid UTF-8 before any handler runs, and gRPC reports that as an INTERNAL
// error with no message — into INVALID_ARGUMENT naming the string fields a client must fix.
// Statuses our handlers return are left alone (they always carry a message).
#pragma once

#include <memory>
#include <string>

#include "grpcpp/support/server_interceptor.h"

namespace dsv2 {

class MalformedRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestInterceptor(std::string method) : method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override;

 private:
  std::string method_;
};

class MalformedRequestInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace dsv2
