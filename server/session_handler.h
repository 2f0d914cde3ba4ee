// SessionHandler: the rules of the sessiond.v1 API, independent of gRPC.
//
// It validates requests, makes tokens and ids, hashes tokens, seals and
// opens payloads, and calls the SessionStore. Every call is scoped to one
// tenant (TenantScope), which the gRPC layer (grpc_server.h) finds from the
// caller's identity. Every method is thread-safe and returns a status whose
// code is the one the RPC must return; the gRPC layer only translates.
// Tokens, keys and session data never reach a log line or an error message.
//
// A payload is sealed bound to its session's tenant, id and user
// (PayloadBinding), so that a row copied to another tenant or session, or
// whose user was rewritten in the database, does not open: such a session
// reads as absent. Payloads sealed before tenants existed are bound to the
// id alone; they open in the default tenant only, and are sealed anew with
// the next write of their data.
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
  // Defaults of the tenant limits (storage::TenantLimits); 0 is no cap.
  int max_sessions_per_user = 0;
  int64_t max_live_sessions = 0;
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

// The tenant a call is scoped to and the settings that bound it: the
// server's HandlerOptions with the tenant's own settings applied.
struct TenantScope {
  // Not owned: the policy (or constant) that names the tenant outlives the
  // calls scoped by it.
  absl::string_view name;
  absl::Duration default_idle_timeout;
  absl::Duration max_idle_timeout;
  absl::Duration default_absolute_lifetime;
  absl::Duration max_absolute_lifetime;
  int64_t max_payload_bytes = 0;
  storage::TenantLimits limits;
};

// The scope of tenant `name` (which must outlive it) with nothing but the
// server's options.
TenantScope DefaultScope(absl::string_view name, const HandlerOptions& options);

// How ValidateScope's messages name the settings: as a policy file's tenant
// settings (kTenantSettingNames, after "tenant \"NAME\": "), or as the
// server's flags (kFlagSettingNames).
struct SettingNames {
  bool name_the_tenant;
  const char* default_idle_timeout;
  const char* max_idle_timeout;
  const char* default_absolute_lifetime;
  const char* max_absolute_lifetime;
  const char* touch_interval;
  const char* max_payload_bytes;
};
inline constexpr SettingNames kTenantSettingNames = {
    true,
    "default_idle_timeout",
    "max_idle_timeout",
    "default_absolute_lifetime",
    "max_absolute_lifetime",
    "the server's --touch_interval",
    "max_payload_bytes"};
inline constexpr SettingNames kFlagSettingNames = {false,
                                                   "--idle_timeout",
                                                   "--max_idle_timeout",
                                                   "--absolute_lifetime",
                                                   "--max_absolute_lifetime",
                                                   "--touch_interval",
                                                   "--max_payload_bytes"};

// INVALID_ARGUMENT, naming the setting, unless `scope` is consistent: a
// valid tenant name; defaults within their maximums; maximums at most
// kLongestTimeout; an idle timeout that a touching Load keeps alive (at
// least twice options.touch_interval); a positive payload limit; limits not
// negative. The one rule for the server's flags and for each tenant.
absl::Status ValidateScope(const TenantScope& scope,
                           const HandlerOptions& options,
                           const SettingNames& names = kTenantSettingNames);

// The associated data a session's payload is sealed with.
std::string PayloadBinding(absl::string_view tenant, absl::string_view id,
                           absl::string_view user_id);

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

  absl::StatusOr<v1::LoadResponse> Load(const TenantScope& tenant,
                                        const v1::LoadRequest& request);
  absl::StatusOr<v1::SaveResponse> Save(const TenantScope& tenant,
                                        const v1::SaveRequest& request);
  absl::StatusOr<v1::CycleResponse> Cycle(const TenantScope& tenant,
                                          const v1::CycleRequest& request);
  absl::StatusOr<v1::DeleteResponse> Delete(const TenantScope& tenant,
                                            const v1::DeleteRequest& request);
  absl::StatusOr<v1::ListForUserResponse> ListForUser(
      const TenantScope& tenant, const v1::ListForUserRequest& request);
  absl::StatusOr<v1::PruneResponse> Prune(const TenantScope& tenant,
                                          const v1::PruneRequest& request);
  // Always OK at the RPC level: a failing backend is reported in the body.
  // The same for every tenant.
  absl::StatusOr<v1::HealthResponse> Health(const TenantScope& tenant,
                                            const v1::HealthRequest& request);

  // Removes every tenant's expired sessions (the background pruner).
  absl::StatusOr<int64_t> PruneAll();

  const HandlerCounters& counters() const { return counters_; }
  const HandlerOptions& options() const { return options_; }
  // The scope of the default tenant with the server's options.
  const TenantScope& default_scope() const { return default_scope_; }

 private:
  // Which fields an update replaces (SaveRequest.update_mask).
  struct UpdateFields {
    bool user_id = false;
    bool data = false;
    bool metadata = false;
    bool idle_timeout = false;
    bool absolute_lifetime = false;
  };

  absl::StatusOr<v1::SaveResponse> Create(const TenantScope& tenant,
                                          const v1::SaveRequest& request);
  absl::StatusOr<v1::SaveResponse> Update(const TenantScope& tenant,
                                          const v1::SaveRequest& request);
  // One read-modify-write of an update that needs the stored session:
  // ABORTED from the store if it changed in between.
  absl::StatusOr<storage::SessionRecord> UpdateOnce(
      const TenantScope& tenant, const v1::SaveRequest& request,
      const std::string& token_hash, const UpdateFields& fields,
      storage::SessionUpdate update);
  // One read-modify-write of a Cycle that sets a user.
  absl::StatusOr<storage::SessionRecord> CycleToUserOnce(
      const TenantScope& tenant, const std::string& old_token_hash,
      storage::SessionCycle cycle);

  // Seals data and metadata for the session `id` of `user_id` in `tenant`;
  // RESOURCE_EXHAUSTED past the tenant's payload limit.
  absl::StatusOr<std::string> SealPayload(
      const TenantScope& tenant, absl::string_view id,
      absl::string_view user_id, const std::string& data,
      const google::protobuf::Map<std::string, std::string>& metadata) const;
  // SealPayload of `opened`'s data and metadata, which it then wipes.
  absl::StatusOr<std::string> Reseal(const TenantScope& tenant,
                                     absl::string_view id,
                                     absl::string_view user_id,
                                     v1::Session& opened) const;
  // The data and metadata of a stored record. DATA_LOSS (and a log line and
  // a counter) when the payload does not open.
  absl::StatusOr<v1::Session> OpenPayload(const storage::SessionRecord& record);
  // Fills `out` from a stored record, opening its payload (DATA_LOSS as
  // OpenPayload).
  absl::Status ToProto(const storage::SessionRecord& record, v1::Session* out);
  // What a caller learns of a storage failure: its code, with a message
  // that says only which kind it was. The backend's own text (host names,
  // server and script messages) goes to the log, for operators, naming
  // `rpc`. Other statuses pass unchanged.
  absl::Status ForCaller(absl::string_view rpc, const absl::Status& status);
  // A stored record as the API's result: an unopenable payload reads as
  // NOT_FOUND, as if the session did not exist; a storage failure as
  // ForCaller says.
  absl::Status FillSession(absl::string_view rpc,
                           const absl::StatusOr<storage::SessionRecord>& record,
                           v1::Session* out);

  storage::SessionStore* const store_;
  const crypto::Sealer* const sealer_;
  const HandlerOptions options_;
  const TenantScope default_scope_;
  HandlerCounters counters_;
  LogRateLimiter unavailable_log_;
  LogRateLimiter internal_log_;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_SESSION_HANDLER_H_
