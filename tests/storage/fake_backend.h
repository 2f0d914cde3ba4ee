// FakeBackend: a StorageBackend for tests of what lies above it (the
// SessionStore front, the request handler). It passes each call on to a
// real backend, records what reached it, and can be told to answer a call
// with a given error instead, as a broken or misbehaving backend would.
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
#include "absl/synchronization/mutex.h"
#include "storage/backend.h"

namespace sessiond::storage {

class FakeBackend final : public StorageBackend {
 public:
  // The calls, by the names FailCall and calls() use.
  static constexpr const char* kCalls[] = {"create",
                                           "load",
                                           "load_and_touch",
                                           "update",
                                           "cycle",
                                           "delete_by_token_hash",
                                           "delete_by_id",
                                           "delete_for_user",
                                           "list_for_user",
                                           "prune_expired",
                                           "ping"};

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

  // The calls that reached this backend, in order.
  std::vector<std::string> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // The arguments of the last Create, Update and ListForUser that reached it.
  SessionRecord last_create() const {
    absl::MutexLock lock(&mu_);
    return last_create_;
  }
  SessionUpdate last_update() const {
    absl::MutexLock lock(&mu_);
    return last_update_;
  }
  int last_list_count() const {
    absl::MutexLock lock(&mu_);
    return last_list_count_;
  }

  absl::string_view name() const override { return "fake"; }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh) override {
    {
      absl::MutexLock lock(&mu_);
      last_create_ = fresh;
    }
    if (absl::Status s = Enter("create"); !s.ok()) return s;
    return real_->Create(fresh);
  }
  absl::StatusOr<SessionRecord> Load(absl::string_view token_hash) override {
    if (absl::Status s = Enter("load"); !s.ok()) return s;
    return real_->Load(token_hash);
  }
  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view token_hash, absl::Duration min_interval) override {
    if (absl::Status s = Enter("load_and_touch"); !s.ok()) return s;
    return real_->LoadAndTouch(token_hash, min_interval);
  }
  absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    {
      absl::MutexLock lock(&mu_);
      last_update_ = update;
    }
    if (absl::Status s = Enter("update"); !s.ok()) return s;
    return real_->Update(token_hash, update);
  }
  absl::StatusOr<SessionRecord> Cycle(
      absl::string_view old_token_hash, absl::string_view new_token_hash,
      const std::optional<std::string>& user_id) override {
    if (absl::Status s = Enter("cycle"); !s.ok()) return s;
    return real_->Cycle(old_token_hash, new_token_hash, user_id);
  }
  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view token_hash) override {
    if (absl::Status s = Enter("delete_by_token_hash"); !s.ok()) return s;
    return real_->DeleteByTokenHash(token_hash);
  }
  absl::StatusOr<int64_t> DeleteById(absl::string_view id) override {
    if (absl::Status s = Enter("delete_by_id"); !s.ok()) return s;
    return real_->DeleteById(id);
  }
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view user_id,
                                        absl::string_view except_id) override {
    if (absl::Status s = Enter("delete_for_user"); !s.ok()) return s;
    return real_->DeleteForUser(user_id, except_id);
  }
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view user_id, int count,
      const std::optional<ListCursor>& after) override {
    {
      absl::MutexLock lock(&mu_);
      last_list_count_ = count;
    }
    if (absl::Status s = Enter("list_for_user"); !s.ok()) return s;
    return real_->ListForUser(user_id, count, after);
  }
  absl::StatusOr<int64_t> PruneExpired() override {
    if (absl::Status s = Enter("prune_expired"); !s.ok()) return s;
    return real_->PruneExpired();
  }
  absl::Status Ping() override {
    if (absl::Status s = Enter("ping"); !s.ok()) return s;
    return real_->Ping();
  }

 private:
  // Records `call`; its configured failure, if any.
  absl::Status Enter(const std::string& call) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    auto it = failures_.find(call);
    return it == failures_.end() ? absl::OkStatus() : it->second;
  }

  const std::unique_ptr<StorageBackend> real_;
  mutable absl::Mutex mu_;
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  SessionRecord last_create_ ABSL_GUARDED_BY(mu_);
  SessionUpdate last_update_ ABSL_GUARDED_BY(mu_);
  int last_list_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_FAKE_BACKEND_H_
