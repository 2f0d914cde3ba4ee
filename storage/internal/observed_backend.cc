#include "storage/internal/observed_backend.h"

#include <type_traits>
#include <utility>

#include "absl/time/clock.h"

namespace sessiond::storage::internal {
namespace {

absl::StatusCode CodeOf(const absl::Status& status) { return status.code(); }
template <typename T>
absl::StatusCode CodeOf(const absl::StatusOr<T>& result) {
  return result.status().code();
}

class ObservedBackend final : public StorageBackend {
 public:
  ObservedBackend(std::unique_ptr<StorageBackend> backend,
                  OperationObserver* observer)
      : backend_(std::move(backend)), observer_(observer) {}

  absl::string_view name() const override { return backend_->name(); }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh,
                                       const TenantLimits& limits) override {
    return Timed(Operation::kCreate,
                 [&] { return backend_->Create(fresh, limits); });
  }
  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash) override {
    return Timed(Operation::kLoad,
                 [&] { return backend_->Load(tenant, token_hash); });
  }
  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view tenant, absl::string_view token_hash,
      absl::Duration min_interval) override {
    return Timed(Operation::kLoadAndTouch, [&] {
      return backend_->LoadAndTouch(tenant, token_hash, min_interval);
    });
  }
  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    return Timed(Operation::kUpdate,
                 [&] { return backend_->Update(tenant, token_hash, update); });
  }
  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits) override {
    return Timed(Operation::kCycle, [&] {
      return backend_->Cycle(tenant, old_token_hash, cycle, limits);
    });
  }
  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view tenant, absl::string_view token_hash) override {
    return Timed(Operation::kDeleteByTokenHash, [&] {
      return backend_->DeleteByTokenHash(tenant, token_hash);
    });
  }
  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id) override {
    return Timed(Operation::kDeleteById,
                 [&] { return backend_->DeleteById(tenant, id); });
  }
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id) override {
    return Timed(Operation::kDeleteForUser, [&] {
      return backend_->DeleteForUser(tenant, user_id, except_id);
    });
  }
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) override {
    return Timed(Operation::kListForUser, [&] {
      return backend_->ListForUser(tenant, user_id, count, max_bytes, after);
    });
  }
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant) override {
    return Timed(Operation::kCountLive,
                 [&] { return backend_->CountLive(tenant); });
  }
  absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) override {
    return Timed(Operation::kPruneExpired,
                 [&] { return backend_->PruneExpired(tenant); });
  }
  absl::Status Ping() override {
    return Timed(Operation::kPing, [&] { return backend_->Ping(); });
  }
  PoolStats pool_stats() const override { return backend_->pool_stats(); }

 private:
  template <typename Call>
  std::invoke_result_t<Call> Timed(Operation operation, Call call) {
    const absl::Time start = absl::Now();
    std::invoke_result_t<Call> result = call();
    observer_->OnOperation(operation, CodeOf(result), absl::Now() - start);
    return result;
  }

  const std::unique_ptr<StorageBackend> backend_;
  OperationObserver* const observer_;
};

}  // namespace

std::unique_ptr<StorageBackend> Observe(std::unique_ptr<StorageBackend> backend,
                                        OperationObserver* observer) {
  return std::make_unique<ObservedBackend>(std::move(backend), observer);
}

}  // namespace sessiond::storage::internal
