// PeerIdentityOf over real gRPC calls: an in-process server with mutual TLS
// (certificates made by the openssl command line tool for this test), with
// server-only TLS, and in plaintext, each recording what its Health call
// saw.
#include "auth/grpc_identity.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sessiond/v1/session.grpc.pb.h"
#include "tests/testing/subprocess.h"

namespace sessiond::auth {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;

// A CA; a server certificate for 127.0.0.1; client certificates signed by
// the CA: "web" (two URI SANs, two DNS SANs, a CN) and "cn-only" (a CN and
// no SAN). Returns false if openssl failed (its log: openssl.log).
bool MakeCertificates(const std::string& dir) {
  {
    std::ofstream(dir + "/server.ext")
        << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::ofstream(dir + "/web.ext")
        << "extendedKeyUsage=clientAuth\n"
           "subjectAltName=URI:spiffe://example.org/ns/shop/sa/web,"
           "URI:https://web.example.org/id,DNS:web.shop.svc.cluster.local,"
           "DNS:Web.Example.org\n";
    std::ofstream(dir + "/cn-only.ext") << "extendedKeyUsage=clientAuth\n";
  }
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
  auto sign = [&](const std::string& name, const std::string& cn) {
    return absl::StrCat("openssl req ", ec, " -nodes -keyout ", name,
                        ".key -out ", name, ".csr -subj /CN=", cn, "; ",
                        "openssl x509 -req -in ", name,
                        ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ",
                        name, ".pem -days 1 -extfile ", name, ".ext; ");
  };
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'; exec 2>openssl.log; openssl req -x509 ", ec,
      " -nodes -keyout ca.key -out ca.pem -subj /CN=auth-test-ca -days 1; ",
      sign("server", "localhost"), sign("web", "web-client"),
      sign("cn-only", "legacy-app"));
  const std::string command = "/bin/bash -c \"" + script + "\"";
  return std::system(command.c_str()) == 0;
}

// Records the PeerIdentity of each Health call.
class RecordingService final : public v1::SessionService::Service {
 public:
  grpc::Status Health(grpc::ServerContext* context, const v1::HealthRequest*,
                      v1::HealthResponse* response) override {
    absl::MutexLock lock(&mu_);
    last_ = PeerIdentityOf(*context);
    response->set_serving(true);
    return grpc::Status::OK;
  }

  PeerIdentity last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  absl::Mutex mu_;
  PeerIdentity last_;
};

class GrpcIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("auth-tls");
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(MakeCertificates(dir_))
        << testing::ReadFileOrEmpty(dir_ + "/openssl.log");
  }

  void TearDown() override {
    for (auto& server : servers_) server->Shutdown();
  }

  std::string File(const std::string& name) {
    return testing::ReadFileOrEmpty(dir_ + "/" + name);
  }

  // Starts a server with `credentials` on a free port; its address.
  std::string Start(std::shared_ptr<grpc::ServerCredentials> credentials) {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port);
    builder.RegisterService(&service_);
    servers_.push_back(builder.BuildAndStart());
    EXPECT_NE(servers_.back(), nullptr);
    EXPECT_NE(port, 0);
    return absl::StrCat("127.0.0.1:", port);
  }

  std::shared_ptr<grpc::ServerCredentials> ServerTls(bool mutual) {
    grpc::SslServerCredentialsOptions options(
        mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (mutual) options.pem_root_certs = File("ca.pem");
    options.pem_key_cert_pairs.push_back(
        {File("server.key"), File("server.pem")});
    return grpc::SslServerCredentials(options);
  }

  // `client`: the certificate to present ("" for none).
  std::shared_ptr<grpc::ChannelCredentials> ClientTls(
      const std::string& client) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = File("ca.pem");
    if (!client.empty()) {
      options.pem_private_key = File(client + ".key");
      options.pem_cert_chain = File(client + ".pem");
    }
    return grpc::SslCredentials(options);
  }

  // Calls Health with the given authorization headers; what the server saw.
  std::optional<PeerIdentity> Call(
      const std::string& address,
      std::shared_ptr<grpc::ChannelCredentials> credentials,
      const std::vector<std::string>& authorization = {}) {
    std::unique_ptr<v1::SessionService::Stub> stub =
        v1::SessionService::NewStub(grpc::CreateChannel(address, credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    for (const std::string& value : authorization) {
      context.AddMetadata("authorization", value);
    }
    v1::HealthResponse response;
    const grpc::Status status =
        stub->Health(&context, v1::HealthRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) return std::nullopt;
    return service_.last();
  }

  std::string dir_;
  RecordingService service_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
};

TEST_F(GrpcIdentityTest, MutualTlsGivesTheCertificatesSansAndCn) {
  const std::string address = Start(ServerTls(true));
  std::optional<PeerIdentity> peer = Call(address, ClientTls("web"));
  ASSERT_TRUE(peer.has_value());
  EXPECT_THAT(peer->uri_sans, ElementsAre("spiffe://example.org/ns/shop/sa/web",
                                          "https://web.example.org/id"));
  EXPECT_THAT(peer->dns_sans,
              ElementsAre("web.shop.svc.cluster.local", "Web.Example.org"));
  EXPECT_THAT(peer->common_name, Optional(std::string("web-client")));
  EXPECT_FALSE(peer->bearer_token.has_value());

  peer = Call(address, ClientTls("cn-only"));
  ASSERT_TRUE(peer.has_value());
  EXPECT_THAT(peer->uri_sans, IsEmpty());
  EXPECT_THAT(peer->dns_sans, IsEmpty());
  EXPECT_THAT(peer->common_name, Optional(std::string("legacy-app")));

  // A certificate and a bearer token together: both are reported.
  peer = Call(address, ClientTls("web"), {"Bearer the-key"});
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->uri_sans.size(), 2u);
  EXPECT_THAT(peer->bearer_token, Optional(std::string("the-key")));
}

// The whole chain: a policy naming the certificate's SAN authenticates it.
TEST_F(GrpcIdentityTest, AuthenticatesOverMutualTls) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = Policy::Parse(R"(
version: 1
tenants: {shop: }
callers:
  - {name: shop-web, tenant: shop, dns_san: web.example.org, allow: [Load]}
  - {name: legacy, tenant: shop, common_name: legacy-app, allow: [Health]}
)",
                                                                       "p");
  ASSERT_TRUE(policy.ok()) << policy.status();
  const std::string address = Start(ServerTls(true));
  std::optional<PeerIdentity> peer = Call(address, ClientTls("web"));
  ASSERT_TRUE(peer.has_value());
  absl::StatusOr<const Caller*> caller = Authenticate(**policy, *peer);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ((*caller)->name, "shop-web");
  peer = Call(address, ClientTls("cn-only"));
  ASSERT_TRUE(peer.has_value());
  caller = Authenticate(**policy, *peer);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ((*caller)->name, "legacy");
}

TEST_F(GrpcIdentityTest, ServerOnlyTlsHasNoCertificateIdentity) {
  const std::string address = Start(ServerTls(false));
  std::optional<PeerIdentity> peer =
      Call(address, ClientTls(""), {"Bearer abc"});
  ASSERT_TRUE(peer.has_value());
  EXPECT_THAT(peer->uri_sans, IsEmpty());
  EXPECT_THAT(peer->dns_sans, IsEmpty());
  EXPECT_FALSE(peer->common_name.has_value());
  EXPECT_THAT(peer->bearer_token, Optional(std::string("abc")));
}

TEST_F(GrpcIdentityTest, PlaintextBearerHeader) {
  const std::string address = Start(grpc::InsecureServerCredentials());
  const auto plaintext = grpc::InsecureChannelCredentials();
  auto token = [&](const std::vector<std::string>& authorization) {
    std::optional<PeerIdentity> peer = Call(address, plaintext, authorization);
    EXPECT_TRUE(peer.has_value());
    if (peer.has_value()) {
      EXPECT_THAT(peer->uri_sans, IsEmpty());
      EXPECT_THAT(peer->dns_sans, IsEmpty());
      EXPECT_FALSE(peer->common_name.has_value());
    }
    return peer.has_value() ? peer->bearer_token : std::nullopt;
  };
  EXPECT_EQ(token({"Bearer k3y"}), "k3y");
  EXPECT_EQ(token({"bearer k3y"}), "k3y");
  EXPECT_EQ(token({"BEARER   k3y.with_chars-~+/="}), "k3y.with_chars-~+/=");
  EXPECT_EQ(token({}), std::nullopt);
  EXPECT_EQ(token({"Basic dXNlcjpwYXNz"}), std::nullopt);
  EXPECT_EQ(token({"Bearer"}), std::nullopt);
  EXPECT_EQ(token({"Bearer "}), std::nullopt);
  EXPECT_EQ(token({"Bearerk3y"}), std::nullopt);
  EXPECT_EQ(token({"Bearer k3y extra"}), std::nullopt);
  EXPECT_EQ(token({"k3y"}), std::nullopt);
  // Two authorization headers: neither is taken.
  EXPECT_EQ(token({"Bearer one", "Bearer two"}), std::nullopt);
}

}  // namespace
}  // namespace sessiond::auth
