// Authenticate's precedence and ambiguity rules, API keys, and what its
// messages may say; Authorize.
#include "auth/authenticator.h"

#include <openssl/evp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/auth/sha256_hex.h"
#include "tests/testing/status_macros.h"

namespace sessiond::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kApiKey[] = "k3y-0f-the-0perator-aaaaaaaaaaaaaaaaaaaaaaaaa";

// One caller per identity kind, plus a second URI and DNS caller.
std::string PolicyText(bool with_common_name) {
  std::string text = absl::StrCat(R"(version: 1
tenants:
  shop:
  blog:
callers:
  - name: web
    tenant: shop
    uri_san: spiffe://example.org/web
    allow: [Load, Save]
  - name: worker
    tenant: shop
    uri_san: spiffe://example.org/worker
    allow: [Prune]
  - name: account
    tenant: blog
    dns_san: Account.Example.org
    allow: [ListForUser]
  - name: mailer
    tenant: blog
    dns_san: mailer.example.org
    allow: [Health]
  - name: ops
    tenant: shop
    api_key_sha256: )",
                                  Sha256Hex(kApiKey), R"(
    allow: [Prune, Health]
)");
  if (with_common_name) {
    absl::StrAppend(&text, R"(  - name: legacy
    tenant: blog
    common_name: legacy-app
    allow: [Load]
)");
  }
  return text;
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(policy_, Policy::Parse(PolicyText(false), "p"));
    ASSERT_OK_AND_ASSIGN(policy_with_cn_, Policy::Parse(PolicyText(true), "p"));
  }

  // The caller's name, or the status text.
  std::string Who(const PeerIdentity& peer, bool with_cn = false) {
    absl::StatusOr<const Caller*> caller =
        Authenticate(with_cn ? *policy_with_cn_ : *policy_, peer);
    if (!caller.ok()) {
      EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated);
      return std::string(caller.status().message());
    }
    return (*caller)->name;
  }

  std::shared_ptr<const Policy> policy_;
  std::shared_ptr<const Policy> policy_with_cn_;
};

TEST_F(AuthenticatorTest, EachIdentityKind) {
  EXPECT_EQ(Who({{"spiffe://example.org/web"}, {}, {}, {}}), "web");
  EXPECT_EQ(Who({{}, {"account.example.org"}, {}, {}}), "account");
  EXPECT_EQ(Who({{}, {}, {}, kApiKey}), "ops");
  EXPECT_EQ(Who({{}, {}, "legacy-app", {}}, true), "legacy");
}

TEST_F(AuthenticatorTest, ReturnsThePolicysOwnCaller) {
  ASSERT_OK_AND_ASSIGN(const Caller* caller,
                       Authenticate(*policy_, {{}, {}, {}, kApiKey}));
  EXPECT_EQ(caller, &policy_->callers()[4]);
  EXPECT_EQ(caller->tenant, "shop");
  EXPECT_TRUE(caller->Allows(Permission::kPrune));
}

TEST_F(AuthenticatorTest, DnsSansAreCaseInsensitiveUrisAreNot) {
  EXPECT_EQ(Who({{}, {"ACCOUNT.example.ORG"}, {}, {}}), "account");
  EXPECT_THAT(Who({{"SPIFFE://example.org/WEB"}, {}, {}, {}}),
              HasSubstr("unknown caller"));
}

TEST_F(AuthenticatorTest, UriBeatsDnsBeatsCnBeatsApiKey) {
  EXPECT_EQ(Who({{"spiffe://example.org/web"},
                 {"account.example.org"},
                 "legacy-app",
                 kApiKey},
                true),
            "web");
  EXPECT_EQ(Who({{"spiffe://other/x"},
                 {"account.example.org"},
                 "legacy-app",
                 kApiKey},
                true),
            "account");
  EXPECT_EQ(
      Who({{"spiffe://other/x"}, {"other.example"}, "legacy-app", kApiKey},
          true),
      "legacy");
  EXPECT_EQ(
      Who({{"spiffe://other/x"}, {"other.example"}, "other-cn", kApiKey}, true),
      "ops");
  // SANs that name no caller do not stand in the way of one that does.
  EXPECT_EQ(
      Who({{"spiffe://other/x", "spiffe://example.org/worker"}, {}, {}, {}}),
      "worker");
}

TEST_F(AuthenticatorTest, CommonNameOnlyIfSomeCallerHasOne) {
  // "legacy-app" is no caller's CN in policy_, and without common_name
  // callers the CN is not even looked at or mentioned.
  const std::string message = Who({{}, {}, "legacy-app", {}});
  EXPECT_EQ(message,
            "no client identity: present a client certificate or an API key "
            "(authorization: Bearer KEY)");
  // A CN that happens to equal a caller's name or URI is not an identity.
  EXPECT_THAT(Who({{}, {}, "web", {}}), HasSubstr("no client identity"));
  EXPECT_THAT(Who({{}, {}, "spiffe://example.org/web", {}}),
              HasSubstr("no client identity"));
  EXPECT_EQ(Who({{}, {}, "other", {}}, true),
            "unknown caller: no caller matches CN \"other\"");
}

TEST_F(AuthenticatorTest, TwoSansNamingDifferentCallersAreAmbiguous) {
  EXPECT_EQ(Who({{"spiffe://example.org/web", "spiffe://example.org/worker"},
                 {},
                 {},
                 {}}),
            "ambiguous client certificate: URI SAN "
            "\"spiffe://example.org/web\" is caller \"web\", URI SAN "
            "\"spiffe://example.org/worker\" is caller \"worker\"");
  EXPECT_THAT(Who({{}, {"account.example.org", "mailer.example.org"}, {}, {}}),
              HasSubstr("ambiguous client certificate: DNS SAN"));
  // Not even a matching API key resolves it.
  EXPECT_THAT(
      Who({{}, {"account.example.org", "mailer.example.org"}, {}, kApiKey}),
      HasSubstr("ambiguous"));
  // Two SANs naming the same caller are fine.
  EXPECT_EQ(Who({{}, {"account.example.org", "ACCOUNT.example.org"}, {}, {}}),
            "account");
}

TEST_F(AuthenticatorTest, ApiKeys) {
  EXPECT_EQ(Who({{}, {}, {}, kApiKey}), "ops");
  // A wrong key of the same length, one differing in its last character.
  std::string wrong = kApiKey;
  wrong.back() = 'b';
  EXPECT_EQ(Who({{}, {}, {}, wrong}),
            "unknown caller: no caller matches an API key");
  EXPECT_THAT(Who({{}, {}, {}, std::string(kApiKey) + "a"}),
              HasSubstr("unknown caller"));
  EXPECT_THAT(Who({{}, {}, {}, std::string("")}), HasSubstr("unknown caller"));
  // The hash is not the key.
  EXPECT_THAT(Who({{}, {}, {}, Sha256Hex(kApiKey)}),
              HasSubstr("unknown caller"));
}

TEST_F(AuthenticatorTest, MessagesNeverContainTheBearerToken) {
  std::string wrong = kApiKey;
  wrong.back() = 'b';
  for (const PeerIdentity& peer :
       {PeerIdentity{{}, {}, {}, wrong},
        PeerIdentity{{"spiffe://other/x"}, {"x.example"}, "cn", wrong},
        PeerIdentity{
            {"spiffe://example.org/web", "spiffe://example.org/worker"},
            {},
            {},
            wrong}}) {
    for (bool with_cn : {false, true}) {
      const std::string message = Who(peer, with_cn);
      EXPECT_THAT(message, Not(HasSubstr(wrong)));
      EXPECT_THAT(message, Not(HasSubstr(wrong.substr(0, 8))));
    }
  }
}

TEST_F(AuthenticatorTest, NothingMatchedSaysWhatWasPresented) {
  EXPECT_EQ(Who({}), Who({{}, {}, {}, {}}));
  EXPECT_THAT(Who({}), HasSubstr("no client identity"));
  EXPECT_EQ(Who({{"spiffe://a", "spiffe://b"}, {"x.example"}, "cn", {}}, true),
            "unknown caller: no caller matches URI SAN \"spiffe://a\" ..., "
            "DNS SAN \"x.example\", CN \"cn\"");
  // Control characters cannot forge a log line; long names are cut.
  EXPECT_EQ(Who({{}, {"evil\nINFO: x"}, {}, {}}),
            "unknown caller: no caller matches DNS SAN \"evil\\nINFO: x\"");
  EXPECT_LT(Who({{std::string(10000, 'u')}, {}, {}, {}}).size(), 200u);
}

TEST_F(AuthenticatorTest, AllowAllIsEveryone) {
  std::shared_ptr<const Policy> all = Policy::AllowAll();
  for (const PeerIdentity& peer :
       {PeerIdentity{}, PeerIdentity{{"spiffe://x"}, {"y"}, "z", "key"}}) {
    ASSERT_OK_AND_ASSIGN(const Caller* caller, Authenticate(*all, peer));
    EXPECT_EQ(caller->name, "default");
    EXPECT_EQ(caller->tenant, "default");
    for (size_t p = 0; p < kPermissionCount; ++p) {
      EXPECT_TRUE(caller->Allows(static_cast<Permission>(p)));
    }
  }
}

TEST_F(AuthenticatorTest, Authorize) {
  const Caller& web = policy_->callers()[0];
  ASSERT_OK(Authorize(web, Permission::kLoad));
  ASSERT_OK(Authorize(web, Permission::kSave));
  const absl::Status denied = Authorize(web, Permission::kListForUser);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(), "caller \"web\" may not call ListForUser");
  EXPECT_EQ(Authorize(web, Permission::kDeleteByToken).message(),
            "caller \"web\" may not call DeleteByToken");
}

}  // namespace
}  // namespace sessiond::auth
