#include "tests/e2e/sessiond_process.h"

#include <signal.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace sessiond::testing {
namespace {

std::vector<std::string> Argv(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {SessiondBinaryPath()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

// The port from sessiond's "serving on ... (port N)" log line, or 0.
int LoggedPort(const std::string& log) {
  const std::string marker = "(port ";
  const size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  const size_t end = log.find(')', at);
  int port = 0;
  if (end == std::string::npos ||
      !absl::SimpleAtoi(
          log.substr(at + marker.size(), end - at - marker.size()), &port)) {
    return 0;
  }
  return port;
}

}  // namespace

std::string SessiondBinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir == nullptr ? "." : srcdir,
                      "/sessiond/server/sessiond");
}

absl::StatusOr<std::unique_ptr<SessiondProcess>> SessiondProcess::Start(
    const std::vector<std::string>& flags, const std::string& log_path) {
  std::vector<std::string> argv = Argv(flags);
  argv.insert(argv.begin() + 1, "--listen=127.0.0.1:0");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn({argv, log_path, std::nullopt});
  if (!process.ok()) return process.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (int port = LoggedPort(ReadFileOrEmpty(log_path)); port != 0) {
      return std::unique_ptr<SessiondProcess>(
          new SessiondProcess(std::move(*process), port));
    }
    if (!(*process)->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sessiond exited before serving; its log:\n",
                       ReadFileOrEmpty(log_path)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("sessiond did not start serving in 30s; its log:\n",
                   ReadFileOrEmpty(log_path)));
}

absl::StatusOr<int> SessiondProcess::RunToExit(
    const std::vector<std::string>& flags, const std::string& log_path,
    absl::Duration timeout) {
  std::vector<std::string> argv = Argv(flags);
  argv.insert(argv.begin() + 1, "--listen=127.0.0.1:0");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn({argv, log_path, std::nullopt});
  if (!process.ok()) return process.status();
  absl::StatusOr<int> code = (*process)->WaitForExit(timeout);
  if (!code.ok()) (void)(*process)->Stop(SIGKILL, absl::Seconds(5));
  return code;
}

absl::StatusOr<std::string> CallRaw(const std::string& address,
                                    const std::string& method,
                                    const std::string& request,
                                    absl::Duration timeout) {
  grpc::GenericStub stub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, method, request_buffer, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  const bool got = cq.Next(&tag, &ok);
  cq.Shutdown();
  void* ignored_tag = nullptr;
  bool ignored_ok = false;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  if (!got || !ok) return absl::UnknownError("the call did not complete");
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) {
    return absl::UnknownError("unreadable response");
  }
  std::string response;
  for (const grpc::Slice& s : slices) {
    response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return response;
}

// HealthCheckRequest{service} is field 1 (a string); HealthCheckResponse
// {status} is field 1 (an enum), so SERVING is the two bytes 08 01.
int StandardHealth(const std::string& address, const std::string& service) {
  std::string request;
  if (!service.empty()) {
    request =
        std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  }
  absl::StatusOr<std::string> response = CallRaw(
      address, "/grpc.health.v1.Health/Check", request, absl::Seconds(5));
  if (!response.ok() || response->size() != 2 || (*response)[0] != '\x08') {
    return -1;
  }
  return (*response)[1];
}

std::string SessiondProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

}  // namespace sessiond::testing
