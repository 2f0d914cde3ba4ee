// GrpcServer: serves sessiond.v1.SessionService over gRPC's completion-queue
// (async) API, plus the standard grpc.health.v1 service and server
// reflection.
//
// Requests are parsed by ParseRequest (request_parser.h), so a string field
// that is not UTF-8 is INVALID_ARGUMENT naming it. Every sessiond.v1 call is
// admitted by Access first (access.h): its caller
// identified and its permission checked (UNAUTHENTICATED, PERMISSION_DENIED)
// before the handler runs in the caller's tenant. grpc.health.v1 and
// reflection answer every peer that reaches the port: they reveal only
// whether the server serves, and the API's shape.
//
// Every call must be done by its caller's deadline and by `call_timeout`
// after it arrived, whichever is earlier: the handler runs under that
// deadline (storage/call_deadline.h), and a call that cannot start before it
// is answered at it, without being started (DEADLINE_EXCEEDED if the
// caller's deadline was the earlier, UNAVAILABLE otherwise).
//
// There is one completion queue per core, and `threads` threads share them
// evenly. With `workers`, those threads only hand each call to a
// CallExecutor (call_executor.h), whose workers run the handlers, so a hung
// backend can hold the workers but never the threads that answer; with no
// workers, the threads run the handlers inline (for a backend that never
// waits on a peer). Shutdown stops accepting calls, lets in-flight calls
// finish until the grace period ends, cancels the rest, and joins every
// thread.
#ifndef SESSIOND_SERVER_GRPC_SERVER_H_
#define SESSIOND_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/access.h"
#include "server/call_executor.h"
#include "server/session_handler.h"
#include "sessiond/v1/session.grpc.pb.h"

namespace sessiond {

// SessionService with every method raw (bytes in, bytes out), so that the
// server parses requests itself (request_parser.h).
using RawSessionService = v1::SessionService::WithRawMethod_Load<
    v1::SessionService::WithRawMethod_Save<
        v1::SessionService::WithRawMethod_Cycle<
            v1::SessionService::WithRawMethod_Delete<
                v1::SessionService::WithRawMethod_ListForUser<
                    v1::SessionService::WithRawMethod_Prune<
                        v1::SessionService::WithRawMethod_Health<
                            v1::SessionService::Service>>>>>>>;

struct GrpcServerOptions {
  // host:port; port 0 picks a free port (see GrpcServer::port()).
  std::string listen_address = "0.0.0.0:50051";
  // Threads that poll the completion queues (and run handlers, without
  // workers). 0: twice the number of cores, at least 2.
  int threads = 0;
  // Threads that run the handlers; 0: none, the polling threads do.
  int workers = 32;
  // The longest a call may take from its arrival; > 0.
  absl::Duration call_timeout = absl::Seconds(5);
  // Each client connection is closed gracefully (HTTP/2 GOAWAY, its calls
  // finishing) after about this long (+-10%), so that clients reconnect:
  // after a scale-out, and before a shutdown, which would otherwise fail the
  // calls arriving as it begins. Zero: connections last.
  absl::Duration max_connection_age = absl::Seconds(30);
  // Largest request accepted, in bytes.
  int max_receive_message_bytes = 4 * 1024 * 1024;
  // Calls one client connection may have open at once (HTTP/2
  // SETTINGS_MAX_CONCURRENT_STREAMS); a client holds its further calls
  // until one ends. > 0.
  int max_concurrent_streams = 1000;
  // The memory gRPC's transport may take for connections and calls (its
  // resource quota), in bytes. > 0.
  int64_t transport_memory_bytes = int64_t{256} << 20;
  // TLS: with a certificate chain and its private key (PEM), the server
  // speaks only TLS. With a client CA too, it also requires every client to
  // present a certificate signed by that CA (mutual TLS). All empty: no TLS.
  std::string tls_cert_chain_pem;
  std::string tls_private_key_pem;
  std::string tls_client_ca_pem;
  // If set (host:port), a second, plaintext listener that serves only
  // grpc.health.v1 with the same status, for probes that cannot speak TLS
  // (Kubernetes gRPC probes). Port 0 picks a free port (health_port()).
  std::string health_listen_address;
  // Serve gRPC server reflection on the main listener (never on the health
  // listener), so that tools such as grpcurl learn the API.
  bool reflection = true;
};

class GrpcServer {
 public:
  // Binds, starts serving and returns. `handler` and `access` must outlive
  // the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      SessionHandler* handler, const Access* access,
      const GrpcServerOptions& options);

  ~GrpcServer();  // Shuts down with no grace period if still running.
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The bound ports (health_port() is 0 without a health listener).
  int port() const { return port_; }
  int health_port() const { return health_port_; }

  // Marks the standard health service NOT_SERVING (so that load balancers
  // drain this replica), or SERVING again.
  void SetServing(bool serving);

  // Stops accepting calls; waits for in-flight calls up to `grace`, cancels
  // what is left, and joins the threads. Idempotent. Returns false if
  // handlers were still running a second after both the grace period and
  // their call timeout ended (a backend that ignored its deadline): then
  // what the handlers use must stay alive (the server leaves its own parts
  // to the process's end); end the process.
  bool Shutdown(absl::Duration grace);

  // Arms a call slot on `cq` unless shutdown has begun (the caller's
  // re-arming must not race with the queues being shut down).
  template <typename Arm>
  void ArmUnlessShuttingDown(Arm arm) {
    absl::ReaderMutexLock lock(&shutdown_mu_);
    if (!shutting_down_) arm();
  }

 private:
  GrpcServer() = default;
  void ArmAll(grpc::ServerCompletionQueue* cq);
  static void Poll(grpc::ServerCompletionQueue* cq);

  SessionHandler* handler_ = nullptr;
  const Access* access_ = nullptr;
  RawSessionService service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::unique_ptr<grpc::Server> server_;
  // The health listener's queue: nothing is requested on it, but gRPC
  // refuses to build a server without a polled queue or a sync service.
  // Declared before health_server_, which must go first.
  std::unique_ptr<grpc::ServerCompletionQueue> health_queue_;
  std::thread health_thread_;
  std::unique_ptr<grpc::Server> health_server_;
  std::vector<std::thread> threads_;
  absl::Duration call_timeout_;
  // Declared after the queues: its calls answer on them.
  std::unique_ptr<CallExecutor> executor_;
  int port_ = 0;
  int health_port_ = 0;

  absl::Mutex shutdown_mu_;
  bool shutting_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  bool shut_down_ = false;  // Touched only by Shutdown's caller.
  bool stuck_ = false;      // Shutdown found calls still running.
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_GRPC_SERVER_H_
