// End-to-end: sessiond serving TLS and mutual TLS, with certificates made by
// the openssl command line tool for this test.
#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/e2e/test_certificates.h"

namespace sessiond::testing {
namespace {

class TlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tls");
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(MakeCertificates(dir_, {{"client", "/CN=web-frontend", ""}}))
        << ReadFileOrEmpty(dir_ + "/openssl.log");
  }

  std::unique_ptr<SessiondProcess> Start(bool require_client_cert) {
    std::vector<std::string> flags = {"--backend=memory",
                                      "--insecure_plaintext",
                                      "--tls_cert_file=" + dir_ + "/server.pem",
                                      "--tls_key_file=" + dir_ + "/server.key"};
    if (require_client_cert) {
      flags.push_back("--tls_client_ca_file=" + dir_ + "/ca.pem");
    }
    absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
        SessiondProcess::Start(flags, dir_ + "/sessiond.log");
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  absl::StatusOr<v1::HealthResponse> Health(
      const SessiondProcess& server, const std::optional<ClientTls>& tls) {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
        server.address(),
        ClientOptions{absl::Seconds(3), 1, absl::Milliseconds(50), ""}, tls);
    if (!client.ok()) return client.status();
    return (*client)->Health();
  }

  ClientTls Tls(bool with_client_cert) {
    ClientTls tls;
    tls.root_ca_pem = ReadFileOrEmpty(dir_ + "/ca.pem");
    if (with_client_cert) {
      tls.cert_chain_pem = ReadFileOrEmpty(dir_ + "/client.pem");
      tls.private_key_pem = ReadFileOrEmpty(dir_ + "/client.key");
    }
    return tls;
  }

  std::string dir_;
};

TEST_F(TlsE2eTest, ServesOnlyTls) {
  std::unique_ptr<SessiondProcess> server = Start(false);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<v1::HealthResponse> over_tls = Health(*server, Tls(false));
  ASSERT_TRUE(over_tls.ok()) << over_tls.status();
  EXPECT_TRUE(over_tls->serving());
  EXPECT_FALSE(Health(*server, std::nullopt).ok()) << "plaintext accepted";
  EXPECT_NE(ReadFileOrEmpty(server->log_path()).find(", TLS"),
            std::string::npos);
}

TEST_F(TlsE2eTest, MutualTlsRequiresAClientCertificate) {
  std::unique_ptr<SessiondProcess> server = Start(true);
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(Health(*server, Tls(false)).ok()) << "no client cert accepted";
  EXPECT_FALSE(Health(*server, std::nullopt).ok()) << "plaintext accepted";
  absl::StatusOr<v1::HealthResponse> with_cert = Health(*server, Tls(true));
  ASSERT_TRUE(with_cert.ok()) << with_cert.status();
  EXPECT_TRUE(with_cert->serving());
}

TEST_F(TlsE2eTest, PlaintextHealthListenerServesHealthOnly) {
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start({"--backend=memory", "--insecure_plaintext",
                              "--tls_cert_file=" + dir_ + "/server.pem",
                              "--tls_key_file=" + dir_ + "/server.key",
                              "--tls_client_ca_file=" + dir_ + "/ca.pem",
                              "--health_listen=127.0.0.1:0"},
                             dir_ + "/health.log");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string log = ReadFileOrEmpty((*server)->log_path());
  const size_t at = log.find("plaintext) on 127.0.0.1:0 (port ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string health_address =
      "127.0.0.1:" + std::to_string(std::atoi(log.c_str() + at + 32));
  // A probe without TLS gets the health status...
  EXPECT_EQ(StandardHealth(health_address, ""), 1);
  EXPECT_EQ(StandardHealth(health_address, "sessiond.v1.SessionService"), 1);
  // ...but not the session API, and the main port still demands mTLS.
  absl::StatusOr<std::unique_ptr<Client>> plain = Client::Connect(
      health_address,
      ClientOptions{absl::Seconds(3), 1, absl::Milliseconds(50), ""});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->Health().status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(StandardHealth((*server)->address(), ""), -1);
  // Nor does the plaintext port describe the API through reflection.
  const char* grpcurl = std::getenv("SESSIOND_GRPCURL");
  ASSERT_NE(grpcurl, nullptr) << "SESSIOND_GRPCURL is not set";
  const std::string command = std::string(grpcurl) +
                              " -plaintext -max-time 5 " + health_address +
                              " list > " + dir_ + "/reflection.out 2>&1";
  EXPECT_NE(std::system(command.c_str()), 0)
      << "reflection answered on the health port: "
      << ReadFileOrEmpty(dir_ + "/reflection.out");
}

TEST_F(TlsE2eTest, HalfConfiguredTlsRefusesToStart) {
  absl::StatusOr<int> code =
      SessiondProcess::RunToExit({"--backend=memory", "--insecure_plaintext",
                                  "--tls_cert_file=" + dir_ + "/server.pem"},
                                 dir_ + "/half.log", absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 2);
  EXPECT_NE(ReadFileOrEmpty(dir_ + "/half.log").find("--tls_key_file"),
            std::string::npos);
}

// The private key is a secret file: sessiond refuses one that group or
// others can read, and says how to fix it.
TEST_F(TlsE2eTest, KeyFileOthersCanReadRefusesToStart) {
  const std::string key = dir_ + "/server.key";
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  absl::StatusOr<int> code = SessiondProcess::RunToExit(
      {"--backend=memory", "--insecure_plaintext",
       "--tls_cert_file=" + dir_ + "/server.pem", "--tls_key_file=" + key},
      dir_ + "/open-key.log", absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_NE(*code, 0);
  const std::string log = ReadFileOrEmpty(dir_ + "/open-key.log");
  EXPECT_NE(log.find("chmod 600"), std::string::npos) << log;
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << log;
}

}  // namespace
}  // namespace sessiond::testing
