// End-to-end: sessiond on a Valkey server that speaks only TLS, through the
// stunnel client tunnel that the README and the Kubernetes manifest set up
// (Debian 12's hiredis 0.14 has no TLS of its own). redis-server stands in
// for Valkey; both take the same TLS settings.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/e2e/test_certificates.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {
namespace {

using ::testing::HasSubstr;

class ValkeyTlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("valkey-tls");
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(MakeCertificates(dir_, {}))
        << ReadFileOrEmpty(dir_ + "/openssl.log");

    tls_port_ = PickFreePort();
    absl::StatusOr<std::unique_ptr<Subprocess>> valkey =
        Subprocess::Spawn({{"/usr/bin/redis-server",
                            "--port",
                            "0",
                            "--tls-port",
                            std::to_string(tls_port_),
                            "--bind",
                            "127.0.0.1",
                            "--tls-cert-file",
                            dir_ + "/server.pem",
                            "--tls-key-file",
                            dir_ + "/server.key",
                            "--tls-ca-cert-file",
                            dir_ + "/ca.pem",
                            "--tls-auth-clients",
                            "no",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            dir_},
                           dir_ + "/valkey.log",
                           std::nullopt});
    ASSERT_TRUE(valkey.ok()) << valkey.status();
    valkey_ = *std::move(valkey);
    ASSERT_TRUE(WaitForPort(tls_port_, absl::Seconds(10), valkey_.get()).ok())
        << ReadFileOrEmpty(dir_ + "/valkey.log");
  }

  // Starts the stunnel client: plaintext on a loopback port of its own, TLS
  // to the server, trusting only `ca_file` and checking the server's
  // certificate is for 127.0.0.1. Returns its port.
  int StartTunnel(const std::string& ca_file) {
    const int port = PickFreePort();
    const std::string config = dir_ + "/stunnel.conf";
    {
      std::ofstream out(config);
      out << "foreground = yes\npid =\n[valkey]\nclient = yes\n"
          << "accept = 127.0.0.1:" << port << "\n"
          << "connect = 127.0.0.1:" << tls_port_ << "\n"
          << "CAfile = " << ca_file << "\n"
          << "verifyChain = yes\ncheckIP = 127.0.0.1\n";
    }
    absl::StatusOr<std::unique_ptr<Subprocess>> tunnel = Subprocess::Spawn(
        {{"/usr/bin/stunnel4", config}, dir_ + "/stunnel.log", std::nullopt});
    EXPECT_TRUE(tunnel.ok()) << tunnel.status();
    if (!tunnel.ok()) return 0;
    tunnel_ = *std::move(tunnel);
    EXPECT_TRUE(WaitForPort(port, absl::Seconds(10), tunnel_.get()).ok())
        << ReadFileOrEmpty(dir_ + "/stunnel.log");
    return port;
  }

  absl::StatusOr<std::unique_ptr<SessiondProcess>> StartSessiond(int port) {
    return SessiondProcess::Start(
        {"--backend=valkey", "--insecure_plaintext",
         "--valkey_address=127.0.0.1:" + std::to_string(port),
         "--valkey_timeout=1s"},
        dir_ + "/sessiond-" + std::to_string(port) + ".log");
  }

  std::string dir_;
  int tls_port_ = 0;
  std::unique_ptr<Subprocess> valkey_;
  std::unique_ptr<Subprocess> tunnel_;
};

TEST_F(ValkeyTlsE2eTest, ServesThroughTheTunnel) {
  const int port = StartTunnel(dir_ + "/ca.pem");
  ASSERT_NE(port, 0);
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server = StartSessiond(port);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect((*server)->address());
  ASSERT_TRUE(client.ok());
  absl::StatusOr<v1::SaveResponse> created =
      (*client)->Create("alice", "over TLS");
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<v1::LoadResponse> loaded = (*client)->Load(created->token());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "over TLS");
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stunnel.log"),
              HasSubstr("Certificate accepted"));
}

// The server takes no plaintext, so nothing can reach it around the tunnel.
TEST_F(ValkeyTlsE2eTest, TheServerRefusesPlaintext) {
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      StartSessiond(tls_port_);
  EXPECT_FALSE(server.ok()) << "sessiond started on a plaintext connection";
}

// A tunnel that does not trust the server's CA carries nothing.
TEST_F(ValkeyTlsE2eTest, ATunnelThatDistrustsTheServerCarriesNothing) {
  const std::string other = dir_ + "/other";
  ASSERT_EQ(::system(("mkdir -p '" + other + "'").c_str()), 0);
  ASSERT_TRUE(MakeCertificates(other, {}));
  const int port = StartTunnel(other + "/ca.pem");
  ASSERT_NE(port, 0);
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server = StartSessiond(port);
  EXPECT_FALSE(server.ok()) << "sessiond started through an untrusted tunnel";
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stunnel.log"),
              HasSubstr("certificate verify failed"));
}

}  // namespace
}  // namespace sessiond::testing
