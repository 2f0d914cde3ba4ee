// The handler on arbitrary request bytes, over the memory backend, as the
// server runs it: the first byte picks the RPC, the rest are the request's
// wire bytes. Never crashes; a request that parses gets a status a client
// can act on, never INTERNAL; each Save that creates can be loaded back.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "fuzz/check.h"
#include "proto/sessiond/v1/session.pb.h"
#include "server/request_parser.h"
#include "server/session_handler.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"

namespace {

namespace v1 = sessiond::v1;

// A store, a sealer and a handler, renewed every kInputsPerStore inputs so
// that the sessions made meanwhile do not pile up.
struct Service {
  Service() {
    store = *sessiond::storage::OpenMemoryStore(&clock, {});
    auto ring = sessiond::crypto::KeyRing::FromKeys({std::string(32, '\x07')});
    sealer = *sessiond::crypto::NewAesGcmSealer(*std::move(ring));
    handler = std::make_unique<sessiond::SessionHandler>(
        store.get(), sealer.get(), sessiond::HandlerOptions{});
  }
  sessiond::ManualClock clock;
  std::unique_ptr<sessiond::storage::SessionStore> store;
  std::unique_ptr<sessiond::crypto::Sealer> sealer;
  std::unique_ptr<sessiond::SessionHandler> handler;
};

constexpr int kInputsPerStore = 2000;

// Parses `bytes` as a Request and calls `method`; checks the answer.
template <typename Request, typename Method>
void Call(sessiond::SessionHandler& handler, absl::string_view bytes,
          Method method) {
  Request request;
  const absl::Status parsed = sessiond::ParseRequest(bytes, &request);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  const auto response = (handler.*method)(handler.default_scope(), request);
  FUZZ_CHECK(response.status().code() != absl::StatusCode::kInternal &&
             response.status().code() != absl::StatusCode::kUnknown);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int inputs = 0;
  static auto* service = [] {
    sessiond::RouteProtobufLogs();  // as the server does
    return new Service();
  }();
  if (++inputs % kInputsPerStore == 0) {
    delete service;
    service = new Service();
  }
  if (size == 0) return 0;
  sessiond::SessionHandler& handler = *service->handler;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1,
                                size - 1);
  service->clock.Advance(absl::Seconds(data[0] >> 3));
  switch (data[0] % 7) {
    case 0: {
      v1::SaveRequest request;
      if (!sessiond::ParseRequest(bytes, &request).ok()) return 0;
      auto saved = handler.Save(handler.default_scope(), request);
      FUZZ_CHECK(saved.status().code() != absl::StatusCode::kInternal);
      if (saved.ok() && request.token().empty()) {
        v1::LoadRequest load;
        load.set_token(saved->token());
        auto loaded = handler.Load(handler.default_scope(), load);
        FUZZ_CHECK(loaded.ok());
        FUZZ_CHECK(loaded->session().data() == request.data());
      }
      return 0;
    }
    case 1:
      Call<v1::LoadRequest>(handler, bytes, &sessiond::SessionHandler::Load);
      return 0;
    case 2:
      Call<v1::CycleRequest>(handler, bytes, &sessiond::SessionHandler::Cycle);
      return 0;
    case 3:
      Call<v1::DeleteRequest>(handler, bytes,
                              &sessiond::SessionHandler::Delete);
      return 0;
    case 4:
      Call<v1::ListForUserRequest>(handler, bytes,
                                   &sessiond::SessionHandler::ListForUser);
      return 0;
    case 5:
      Call<v1::PruneRequest>(handler, bytes, &sessiond::SessionHandler::Prune);
      return 0;
    default:
      Call<v1::HealthRequest>(handler, bytes,
                              &sessiond::SessionHandler::Health);
      return 0;
  }
}
