// SessionHandler: the rules of the sessiond.v1 API, independent of gRPC.
//
// It validates requests, makes tokens and ids, hashes tokens, seals and
// opens payloads, and calls the SessionStore. Every method is thread-safe and
// returns a status whose code is the one the RPC must return; the gRPC layer
// (grpc_server.h) only translates. Tokens, keys and session data never reach
// a log line or an error message.
#ifndef SESSIOND_SERVER_SESSION_HANDLER_H_
#define SESSIOND_SERVER_SESSION_HANDLER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crypto/sealer.h"
#include "server/log.h"
#include "sessiond/v1/session.pb.h"
#include "storage/session_store.h"

namespace sessiond {

// The longest any timeout may be configured to.
inline constexpr absl::Duration kLongestTimeout = absl::Hours(24 * 400);

struct HandlerOptions {
  absl::Duration default_idle_timeout = absl::Minutes(30);
  absl::Duration default_absolute_lifetime = absl::Hours(12);
  // The longest idle timeout and absolute lifetime a request may ask for
  // (at least the defaults).
  absl::Duration max_idle_timeout = kLongestTimeout;
  absl::Duration max_absolute_lifetime = kLongestTimeout;
  // A touching Load writes only when last_active_at is at least this old.
  absl::Duration touch_interval = absl::Minutes(1);
  // Limit on the sealed payload (data + metadata after encryption).
  int64_t max_payload_bytes = 64 * 1024;
  int max_metadata_entries = 32;
  int max_metadata_key_bytes = 64;
  int max_metadata_value_bytes = 1024;
  int max_user_id_bytes = 256;
  int default_page_size = 50;
  int max_page_size = 1000;
  // A ListForUser page stops early (with a next_page_token) rather than
  // grow past this many bytes; gRPC clients refuse messages over 4 MiB by
  // default. A page always holds at least one session.
  int64_t max_list_response_bytes = 3 * 1024 * 1024;
  // Storage failures are logged at most once per this interval per kind
  // (unavailable, internal), with a count of those held back.
  absl::Duration storage_error_log_interval = absl::Seconds(1);
};

// Counters of events an operator should see; all monotonic.
struct HandlerCounters {
  // Stored payloads that failed to open (tampered, or sealed under a key no
  // longer in the ring); each was treated as absent.
  std::atomic<int64_t> unopenable_payloads{0};
  std::atomic<int64_t> sessions_created{0};
  std::atomic<int64_t> sessions_pruned{0};
};

class SessionHandler {
 public:
  // `store` and `sealer` must outlive the handler.
  SessionHandler(storage::SessionStore* store, const crypto::Sealer* sealer,
                 HandlerOptions options);

  absl::StatusOr<v1::LoadResponse> Load(const v1::LoadRequest& request);
  absl::StatusOr<v1::SaveResponse> Save(const v1::SaveRequest& request);
  absl::StatusOr<v1::CycleResponse> Cycle(const v1::CycleRequest& request);
  absl::StatusOr<v1::DeleteResponse> Delete(const v1::DeleteRequest& request);
  absl::StatusOr<v1::ListForUserResponse> ListForUser(
      const v1::ListForUserRequest& request);
  absl::StatusOr<v1::PruneResponse> Prune(const v1::PruneRequest& request);
  // Always OK at the RPC level: a failing backend is reported in the body.
  absl::StatusOr<v1::HealthResponse> Health(const v1::HealthRequest& request);

  const HandlerCounters& counters() const { return counters_; }
  const HandlerOptions& options() const { return options_; }

 private:
  absl::StatusOr<v1::SaveResponse> Create(const v1::SaveRequest& request);
  absl::StatusOr<v1::SaveResponse> Update(const v1::SaveRequest& request);

  // Seals data and metadata for the session `id`; RESOURCE_EXHAUSTED past
  // the payload limit.
  absl::StatusOr<std::string> SealPayload(
      const std::string& id, const std::string& data,
      const google::protobuf::Map<std::string, std::string>& metadata) const;
  // Fills `out` from a stored record, opening its payload. DATA_LOSS (and a
  // log line and a counter) when the payload does not open.
  absl::Status ToProto(const storage::SessionRecord& record, v1::Session* out);
  // Maps a storage result for a record to the API's status: an unopenable
  // payload reads as NOT_FOUND, as if the session did not exist; a storage
  // failure keeps its code, with a generic message (the backend's text is
  // logged, naming `rpc`).
  // What a caller learns of a storage failure: its code, with a message
  // that says only which kind it was. The backend's own text (host names,
  // server and script messages) goes to the log, for operators.
  absl::Status ForCaller(absl::string_view rpc, const absl::Status& status);

  absl::Status FillSession(absl::string_view rpc,
                           const absl::StatusOr<storage::SessionRecord>& record,
                           v1::Session* out);

  storage::SessionStore* const store_;
  const crypto::Sealer* const sealer_;
  const HandlerOptions options_;
  HandlerCounters counters_;
  LogRateLimiter unavailable_log_;
  LogRateLimiter internal_log_;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_SESSION_HANDLER_H_
