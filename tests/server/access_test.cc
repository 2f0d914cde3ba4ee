#include "server/access.h"

#include <stdio.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/server_context.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sessiond {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: 1
tenants:
  shop:
    max_idle_timeout: 2h
    max_sessions_per_user: 3
    max_live_sessions: 1000
    max_payload_bytes: 4096
  blog: {}
callers:
  - name: shop-web
    tenant: shop
    uri_san: spiffe://example.org/web
    allow: [Load, Save]
  - name: blog
    tenant: blog
    dns_san: blog.example.org
    allow: [Health]
)";

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("access");
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/policy.yaml";
  }

  void Write(const std::string& text) {
    std::ofstream out(path_ + ".new");
    out << text;
    out.close();
    ASSERT_EQ(::rename((path_ + ".new").c_str(), path_.c_str()), 0);
  }

  HandlerOptions options_;
  std::string dir_;
  std::string path_;
};

TEST_F(AccessTest, ScopeTakesTheTenantsSettingsOverTheServers) {
  auth::TenantSettings settings;
  settings.max_idle_timeout = absl::Hours(2);
  settings.max_live_sessions = 7;
  const TenantScope scope = ScopeOf("shop", &settings, options_);
  EXPECT_EQ(scope.name, "shop");
  EXPECT_EQ(scope.max_idle_timeout, absl::Hours(2));
  EXPECT_EQ(scope.limits.max_live_sessions, 7);
  // What the tenant leaves out is the server's.
  EXPECT_EQ(scope.default_idle_timeout, options_.default_idle_timeout);
  EXPECT_EQ(scope.max_payload_bytes, options_.max_payload_bytes);
  EXPECT_EQ(scope.limits.max_sessions_per_user, options_.max_sessions_per_user);

  const TenantScope plain = ScopeOf("blog", nullptr, options_);
  EXPECT_EQ(plain.name, "blog");
  EXPECT_EQ(plain.max_idle_timeout, options_.max_idle_timeout);
}

TEST_F(AccessTest, DeleteNeedsThePermissionOfItsTarget) {
  v1::DeleteRequest request;
  EXPECT_EQ(PermissionFor(request), std::nullopt);
  request.set_token("t");
  EXPECT_EQ(PermissionFor(request), auth::Permission::kDeleteByToken);
  request.set_id("i");
  EXPECT_EQ(PermissionFor(request), auth::Permission::kDeleteById);
  request.set_user_id("u");
  EXPECT_EQ(PermissionFor(request), auth::Permission::kDeleteForUser);
  EXPECT_EQ(PermissionFor(v1::PruneRequest()), auth::Permission::kPrune);
  EXPECT_EQ(PermissionFor(v1::HealthRequest()), auth::Permission::kHealth);
}

TEST_F(AccessTest, ABadFileNamesItsLine) {
  Write(std::string(kPolicy) + "  - name: shop-web\n");
  absl::StatusOr<std::unique_ptr<Access>> access =
      Access::FromPolicyFile(path_, options_);
  ASSERT_FALSE(access.ok());
  EXPECT_EQ(access.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(access.status().message(), HasSubstr(path_ + ":"));
}

TEST_F(AccessTest, SettingsTheServerCannotApplyNameTheTenant) {
  // A maximum idle timeout under the server's default of 30 minutes.
  std::string policy = kPolicy;
  policy.replace(policy.find("2h"), 2, "10m");
  Write(policy);
  absl::StatusOr<std::unique_ptr<Access>> access =
      Access::FromPolicyFile(path_, options_);
  ASSERT_FALSE(access.ok());
  EXPECT_EQ(access.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(access.status().message(), HasSubstr("shop"));
  EXPECT_THAT(access.status().message(), HasSubstr("idle_timeout"));
}

TEST_F(AccessTest, AFailedReloadKeepsThePolicyInForce) {
  Write(kPolicy);
  absl::StatusOr<std::unique_ptr<Access>> access =
      Access::FromPolicyFile(path_, options_);
  ASSERT_TRUE(access.ok()) << access.status();
  EXPECT_TRUE((*access)->HasCertificateCallers());
  EXPECT_FALSE((*access)->HasApiKeyCallers());

  Write("version: 1\ncallers: []\nbogus: 1\n");
  EXPECT_FALSE((*access)->Reload().ok());
  EXPECT_EQ((*access)->reload_failures(), 1);
  EXPECT_TRUE((*access)->HasCertificateCallers());

  Write(R"(version: 1
tenants:
  shop: {}
callers:
  - name: ops
    tenant: shop
    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    allow: [Prune]
)");
  ASSERT_TRUE((*access)->Reload().ok());
  EXPECT_EQ((*access)->reloads(), 1);
  EXPECT_FALSE((*access)->HasCertificateCallers());
  EXPECT_TRUE((*access)->HasApiKeyCallers());
}

TEST_F(AccessTest, ACallWithoutAnIdentityIsUnauthenticated) {
  Write(kPolicy);
  absl::StatusOr<std::unique_ptr<Access>> access =
      Access::FromPolicyFile(path_, options_);
  ASSERT_TRUE(access.ok()) << access.status();
  grpc::ServerContext context;  // no certificate, no metadata
  absl::StatusOr<Access::Admission> admitted =
      (*access)->Admit(context, auth::Permission::kLoad);
  EXPECT_EQ(admitted.status().code(), absl::StatusCode::kUnauthenticated);

  // Without a policy, everyone is let in, to the default tenant.
  std::unique_ptr<Access> open = Access::TrustEveryone(options_);
  admitted = open->Admit(context, auth::Permission::kPrune);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_EQ(admitted->scope().name, storage::kDefaultTenant);
}

}  // namespace
}  // namespace sessiond
