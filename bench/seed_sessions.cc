// seed_sessions: the setup phase of the ghz load tests. Creates sessions in
// a running sessiond through the client library and writes ghz data files
// (JSON arrays, used round-robin by ghz) so that every request hits a live
// session:
//   load.json        {"token"}                       for Load (touch or not)
//   save_cas.json    {"token", data, metadata, "expected_version": 1}
//                    one per session: each CAS update succeeds exactly once
//   cycle.json       {"token"}, one per session: each token cycles once
//   list.json        {"user_id", "page_size"}
//   create.json      {"user_id", data, metadata}
// Usage: seed_sessions --addr=HOST:PORT --out=DIR [--load=N] [--once=N]
//                      [--users=N] [--payload_bytes=N]
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/client.h"

namespace sessiond::bench {
namespace {

const Client::Metadata& Metadata() {
  static const auto* const metadata = new Client::Metadata{
      {"ip", "203.0.113.7"},
      {"user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"},
      {"device", "laptop"}};
  return *metadata;
}

std::string MetadataJson() {
  std::string json = "{";
  for (const auto& [key, value] : Metadata()) {
    if (json.size() > 1) json += ", ";
    absl::StrAppend(&json, "\"", key, "\": \"", value, "\"");
  }
  return json + "}";
}

std::string UserId(int i, int users) {
  return absl::StrCat("user-", 100000 + i % users);
}

bool WriteJsonArray(const std::string& path,
                    const std::vector<std::string>& items) {
  std::ofstream out(path);
  out << "[\n";
  for (size_t i = 0; i < items.size(); ++i) {
    out << "  " << items[i] << (i + 1 < items.size() ? ",\n" : "\n");
  }
  out << "]\n";
  return out.good();
}

int Run(int argc, char** argv) {
  std::string addr = "127.0.0.1:50051";
  std::string out_dir = ".";
  int load_sessions = 10000;
  int once_sessions = 20000;
  int users = 1000;
  int payload_bytes = 1024;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    bool ok = true;
    if (absl::ConsumePrefix(&arg, "--addr=")) {
      addr = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--out=")) {
      out_dir = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--load=")) {
      ok = absl::SimpleAtoi(arg, &load_sessions) && load_sessions > 0;
    } else if (absl::ConsumePrefix(&arg, "--once=")) {
      ok = absl::SimpleAtoi(arg, &once_sessions) && once_sessions > 0;
    } else if (absl::ConsumePrefix(&arg, "--users=")) {
      ok = absl::SimpleAtoi(arg, &users) && users > 0;
    } else if (absl::ConsumePrefix(&arg, "--payload_bytes=")) {
      ok = absl::SimpleAtoi(arg, &payload_bytes) && payload_bytes >= 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "bad argument: " << argv[i] << "\n";
      return 2;
    }
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
      addr, ClientOptions{absl::Seconds(10), 3, absl::Milliseconds(50), ""});
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  const std::string data(payload_bytes, 'x');
  const std::string data_b64 = absl::Base64Escape(data);
  auto create = [&](int i) -> std::string {
    absl::StatusOr<v1::SaveResponse> created =
        (*client)->Create(UserId(i, users), data, Metadata());
    if (!created.ok()) {
      std::cerr << "create failed: " << created.status() << "\n";
      std::exit(1);
    }
    return created->token();
  };

  std::vector<std::string> load, save_cas, cycle, list, create_items;
  for (int i = 0; i < load_sessions; ++i) {
    load.push_back(absl::StrCat("{\"token\": \"", create(i), "\"}"));
  }
  for (int i = 0; i < once_sessions; ++i) {
    save_cas.push_back(absl::StrCat(
        "{\"token\": \"", create(i), "\", \"user_id\": \"", UserId(i, users),
        "\", \"data\": \"", data_b64, "\", \"metadata\": ", MetadataJson(),
        ", \"expected_version\": 1}"));
    cycle.push_back(absl::StrCat("{\"token\": \"", create(i), "\"}"));
  }
  for (int i = 0; i < users; ++i) {
    list.push_back(absl::StrCat("{\"user_id\": \"", UserId(i, users),
                                "\", \"page_size\": 10}"));
  }
  for (int i = 0; i < 100; ++i) {
    create_items.push_back(
        absl::StrCat("{\"user_id\": \"", UserId(i, users), "\", \"data\": \"",
                     data_b64, "\", \"metadata\": ", MetadataJson(), "}"));
  }
  if (!WriteJsonArray(out_dir + "/load.json", load) ||
      !WriteJsonArray(out_dir + "/save_cas.json", save_cas) ||
      !WriteJsonArray(out_dir + "/cycle.json", cycle) ||
      !WriteJsonArray(out_dir + "/list.json", list) ||
      !WriteJsonArray(out_dir + "/create.json", create_items)) {
    std::cerr << "could not write the data files in " << out_dir << "\n";
    return 1;
  }
  std::cerr << "seeded " << load_sessions + 2 * once_sessions
            << " sessions for " << users << " users\n";
  return 0;
}

}  // namespace
}  // namespace sessiond::bench

int main(int argc, char** argv) { return sessiond::bench::Run(argc, argv); }
