// FakeBackend: a StorageBackend for tests of what lies above it (the
// SessionStore front, the request handler). It passes each call on to a
// real backend, records what reached it, and can be told to answer a call
// with a given error, or CountLive with a given count, instead, as a broken
// or misbehaving backend would.
#ifndef SESSIOND_TESTS_STORAGE_FAKE_BACKEND_H_
#define SESSIOND_TESTS_STORAGE_FAKE_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/backend.h"

namespace sessiond::storage {

class FakeBackend final : public StorageBackend {
 public:
  // The calls, by the names FailCall and calls() use.
  static constexpr const char* kCalls[] = {
      "create",         "load",
      "load_and_touch", "update",
      "cycle",          "delete_by_token_hash",
      "delete_by_id",   "delete_for_user",
      "list_for_user",  "count_live",
      "prune_expired",  "ping"};

  explicit FakeBackend(std::unique_ptr<StorageBackend> real)
      : real_(std::move(real)) {}

  // From now on, `call` (one of kCalls) fails with `status` without
  // reaching the real backend; OK restores it.
  void FailCall(const std::string& call, absl::Status status) {
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      failures_.erase(call);
    } else {
      failures_[call] = std::move(status);
    }
  }
  // Every call fails with `status` (OK: none does).
  void FailAll(const absl::Status& status) {
    for (const char* call : kCalls) FailCall(call, status);
  }

  // From now on, CountLive answers `count` (nullopt: the real backend's)
  // without reaching the real backend. A configured failure comes first.
  void SetCountLive(std::optional<int64_t> count) {
    absl::MutexLock lock(&mu_);
    count_live_ = count;
  }

  // The calls that reached this backend, in order.
  std::vector<std::string> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // How many times `call` reached this backend.
  int count(absl::string_view call) const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& c : calls_) n += c == call ? 1 : 0;
    return n;
  }
  void ClearCalls() {
    absl::MutexLock lock(&mu_);
    calls_.clear();
  }
  // The arguments of the last call of each kind that reached it.
  SessionRecord last_create() const {
    absl::MutexLock lock(&mu_);
    return last_create_;
  }
  SessionUpdate last_update() const {
    absl::MutexLock lock(&mu_);
    return last_update_;
  }
  SessionCycle last_cycle() const {
    absl::MutexLock lock(&mu_);
    return last_cycle_;
  }
  // Of the last Create or Cycle.
  TenantLimits last_limits() const {
    absl::MutexLock lock(&mu_);
    return last_limits_;
  }
  // Of the last call that names a tenant (PruneExpired of all: nullopt).
  std::optional<std::string> last_tenant() const {
    absl::MutexLock lock(&mu_);
    return last_tenant_;
  }
  int last_list_count() const {
    absl::MutexLock lock(&mu_);
    return last_list_count_;
  }
  int64_t last_list_max_bytes() const {
    absl::MutexLock lock(&mu_);
    return last_list_max_bytes_;
  }

  absl::string_view name() const override { return "fake"; }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh,
                                       const TenantLimits& limits) override {
    {
      absl::MutexLock lock(&mu_);
      last_create_ = fresh;
      last_limits_ = limits;
      last_tenant_ = fresh.tenant;
    }
    if (absl::Status s = Enter("create"); !s.ok()) return s;
    return real_->Create(fresh, limits);
  }
  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash) override {
    if (absl::Status s = Enter("load", tenant); !s.ok()) return s;
    return real_->Load(tenant, token_hash);
  }
  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view tenant, absl::string_view token_hash,
      absl::Duration min_interval) override {
    if (absl::Status s = Enter("load_and_touch", tenant); !s.ok()) return s;
    return real_->LoadAndTouch(tenant, token_hash, min_interval);
  }
  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    {
      absl::MutexLock lock(&mu_);
      last_update_ = update;
    }
    if (absl::Status s = Enter("update", tenant); !s.ok()) return s;
    return real_->Update(tenant, token_hash, update);
  }
  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits) override {
    {
      absl::MutexLock lock(&mu_);
      last_cycle_ = cycle;
      last_limits_ = limits;
    }
    if (absl::Status s = Enter("cycle", tenant); !s.ok()) return s;
    return real_->Cycle(tenant, old_token_hash, cycle, limits);
  }
  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view tenant, absl::string_view token_hash) override {
    if (absl::Status s = Enter("delete_by_token_hash", tenant); !s.ok()) {
      return s;
    }
    return real_->DeleteByTokenHash(tenant, token_hash);
  }
  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id) override {
    if (absl::Status s = Enter("delete_by_id", tenant); !s.ok()) return s;
    return real_->DeleteById(tenant, id);
  }
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id) override {
    if (absl::Status s = Enter("delete_for_user", tenant); !s.ok()) return s;
    return real_->DeleteForUser(tenant, user_id, except_id);
  }
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) override {
    {
      absl::MutexLock lock(&mu_);
      last_list_count_ = count;
      last_list_max_bytes_ = max_bytes;
    }
    if (absl::Status s = Enter("list_for_user", tenant); !s.ok()) return s;
    return real_->ListForUser(tenant, user_id, count, max_bytes, after);
  }
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant) override {
    if (absl::Status s = Enter("count_live", tenant); !s.ok()) return s;
    {
      absl::MutexLock lock(&mu_);
      if (count_live_.has_value()) return *count_live_;
    }
    return real_->CountLive(tenant);
  }
  absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) override {
    {
      absl::MutexLock lock(&mu_);
      last_tenant_ = tenant.has_value()
                         ? std::optional<std::string>(std::string(*tenant))
                         : std::nullopt;
    }
    if (absl::Status s = Enter("prune_expired"); !s.ok()) return s;
    return real_->PruneExpired(tenant);
  }
  absl::Status Ping() override {
    if (absl::Status s = Enter("ping"); !s.ok()) return s;
    return real_->Ping();
  }

 private:
  // Records `call` (and its tenant, if it names one); its configured
  // failure, if any.
  absl::Status Enter(const std::string& call,
                     std::optional<absl::string_view> tenant = std::nullopt) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    if (tenant.has_value()) last_tenant_ = std::string(*tenant);
    auto it = failures_.find(call);
    return it == failures_.end() ? absl::OkStatus() : it->second;
  }

  const std::unique_ptr<StorageBackend> real_;
  mutable absl::Mutex mu_;
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> count_live_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  SessionRecord last_create_ ABSL_GUARDED_BY(mu_);
  SessionUpdate last_update_ ABSL_GUARDED_BY(mu_);
  SessionCycle last_cycle_ ABSL_GUARDED_BY(mu_);
  TenantLimits last_limits_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> last_tenant_ ABSL_GUARDED_BY(mu_);
  int last_list_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_list_max_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_FAKE_BACKEND_H_
