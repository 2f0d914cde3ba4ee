#include "server/pruner.h"

#include "crypto/sealer.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"

namespace sessiond {
namespace {

// Waits (bounded) until `done` holds; the pruner runs on its own thread.
template <typename Predicate>
bool Eventually(Predicate done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

TEST(BackgroundPrunerTest, RemovesExpiredSessionsAtItsInterval) {
  ManualClock clock;
  std::unique_ptr<storage::SessionStore> store =
      *storage::OpenMemoryStore(&clock, storage::StoreOptions{});
  std::unique_ptr<crypto::Sealer> sealer = crypto::NewPlaintextSealer();
  SessionHandler handler(store.get(), sealer.get(), HandlerOptions{});
  v1::SaveRequest short_lived;
  short_lived.mutable_idle_timeout()->set_seconds(120);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(
        handler
            .Save(DefaultScope(storage::kDefaultTenant, HandlerOptions{}),
                  short_lived)
            .ok());
  ASSERT_TRUE(handler
                  .Save(DefaultScope(storage::kDefaultTenant, HandlerOptions{}),
                        v1::SaveRequest())
                  .ok());  // default 30m
  clock.Advance(absl::Minutes(5));

  BackgroundPruner pruner(&handler, absl::Milliseconds(10), absl::Seconds(5));
  EXPECT_TRUE(Eventually(
      [&] { return handler.counters().sessions_pruned.load() == 3; }));
  // Nothing live is pruned, however many rounds run.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(handler.counters().sessions_pruned.load(), 3);
}

TEST(BackgroundPrunerTest, StopsPromptlyWhenDestroyed) {
  ManualClock clock;
  std::unique_ptr<storage::SessionStore> store =
      *storage::OpenMemoryStore(&clock, storage::StoreOptions{});
  std::unique_ptr<crypto::Sealer> sealer = crypto::NewPlaintextSealer();
  SessionHandler handler(store.get(), sealer.get(), HandlerOptions{});
  const absl::Time start = absl::Now();
  { BackgroundPruner pruner(&handler, absl::Hours(1), absl::Seconds(5)); }
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace sessiond
