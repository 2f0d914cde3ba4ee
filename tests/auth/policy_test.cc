// Policy::Parse and Policy::Load: the example of the format, each class of
// error with its exact line, and the values read.
#include "auth/policy.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/auth/sha256_hex.h"
#include "tests/testing/status_macros.h"

namespace sessiond::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kExample[] = R"(version: 1
tenants:
  shop:                         # name: 1..64 of [A-Za-z0-9._-]
    default_idle_timeout: 30m   # Go-style durations; all optional
    max_idle_timeout: 24h
    default_absolute_lifetime: 12h
    max_absolute_lifetime: 720h
    max_sessions_per_user: 10   # 0 = no cap
    max_payload_bytes: 65536
    max_live_sessions: 1000000  # 0 = no cap
callers:
  - name: shop-web
    tenant: shop
    uri_san: spiffe://example.org/ns/shop/sa/web
    allow: [Load, Save, Cycle, DeleteByToken]
  - name: shop-account
    tenant: shop
    dns_san: account.shop.svc.cluster.local
    allow: [ListForUser, DeleteById, DeleteForUser]
  - name: ops
    tenant: shop
    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    allow: [Prune, Health]
)";

// The message of the error Parse returns for `yaml` (source "policy.yaml");
// "OK" if it parses.
std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy =
      Policy::Parse(yaml, "policy.yaml");
  if (policy.ok()) return "OK";
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument)
      << policy.status();
  return std::string(policy.status().message());
}

// A policy with one tenant "t" and one caller "c" (uri_san spiffe://x/c,
// allowed Load), with `tenant_body` under "t:" (from line 4) and
// `caller_extra` after the caller. With an empty `tenant_body`, "c" is lines
// 5 to 8 and `caller_extra` starts on line 9.
std::string OneCaller(const std::string& tenant_body,
                      const std::string& caller_extra = "") {
  return absl::StrCat("version: 1\ntenants:\n  t:\n", tenant_body,
                      "callers:\n  - name: c\n    tenant: t\n",
                      "    uri_san: spiffe://x/c\n    allow: [Load]\n",
                      caller_extra);
}

TEST(PolicyTest, ParsesTheExample) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Parse(kExample, "policy.yaml"));
  EXPECT_FALSE(policy->allows_everyone());
  const TenantSettings* shop = policy->FindTenant("shop");
  ASSERT_NE(shop, nullptr);
  EXPECT_EQ(shop->default_idle_timeout, absl::Minutes(30));
  EXPECT_EQ(shop->max_idle_timeout, absl::Hours(24));
  EXPECT_EQ(shop->default_absolute_lifetime, absl::Hours(12));
  EXPECT_EQ(shop->max_absolute_lifetime, absl::Hours(720));
  EXPECT_EQ(shop->max_sessions_per_user, 10);
  EXPECT_EQ(shop->max_payload_bytes, 65536);
  EXPECT_EQ(shop->max_live_sessions, 1000000);
  EXPECT_EQ(policy->FindTenant("other"), nullptr);

  ASSERT_EQ(policy->callers().size(), 3u);
  const Caller& web = policy->callers()[0];
  EXPECT_EQ(web.name, "shop-web");
  EXPECT_EQ(web.tenant, "shop");
  EXPECT_TRUE(web.Allows(Permission::kLoad));
  EXPECT_TRUE(web.Allows(Permission::kSave));
  EXPECT_TRUE(web.Allows(Permission::kCycle));
  EXPECT_TRUE(web.Allows(Permission::kDeleteByToken));
  EXPECT_FALSE(web.Allows(Permission::kDeleteById));
  EXPECT_FALSE(web.Allows(Permission::kListForUser));
  EXPECT_EQ(web.permissions.count(), 4u);

  EXPECT_EQ(policy->FindCaller(IdentityKind::kUriSan,
                               "spiffe://example.org/ns/shop/sa/web"),
            &web);
  EXPECT_EQ(policy->FindCaller(IdentityKind::kDnsSan,
                               "Account.Shop.svc.cluster.local"),
            &policy->callers()[1]);
  EXPECT_EQ(policy->FindCaller(IdentityKind::kApiKeySha256,
                               absl::HexStringToBytes(Sha256Hex("test"))),
            &policy->callers()[2]);
  // An identity of one kind is not one of another.
  EXPECT_EQ(policy->FindCaller(IdentityKind::kDnsSan,
                               "spiffe://example.org/ns/shop/sa/web"),
            nullptr);
  EXPECT_TRUE(policy->HasCallers(IdentityKind::kApiKeySha256));
  EXPECT_FALSE(policy->HasCallers(IdentityKind::kCommonName));
  const Caller& ops = policy->callers()[2];
  EXPECT_TRUE(ops.Allows(Permission::kPrune));
  EXPECT_TRUE(ops.Allows(Permission::kHealth));
  EXPECT_EQ(ops.permissions.count(), 2u);
}

TEST(PolicyTest, PermissionNames) {
  EXPECT_EQ(PermissionName(Permission::kLoad), "Load");
  EXPECT_EQ(PermissionName(Permission::kDeleteByToken), "DeleteByToken");
  EXPECT_EQ(PermissionName(Permission::kDeleteForUser), "DeleteForUser");
  EXPECT_EQ(PermissionName(Permission::kListForUser), "ListForUser");
  EXPECT_EQ(PermissionName(Permission::kHealth), "Health");
}

TEST(PolicyTest, DeleteIsTheThreeDeleteForms) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Parse(R"(version: 1
tenants: {t: }
callers:
  - {name: c, tenant: t, common_name: svc, allow: [Delete, Health]}
)",
                                     "p"));
  const Caller& c = policy->callers()[0];
  EXPECT_TRUE(c.Allows(Permission::kDeleteByToken));
  EXPECT_TRUE(c.Allows(Permission::kDeleteById));
  EXPECT_TRUE(c.Allows(Permission::kDeleteForUser));
  EXPECT_TRUE(c.Allows(Permission::kHealth));
  EXPECT_FALSE(c.Allows(Permission::kLoad));
  EXPECT_EQ(c.permissions.count(), 4u);
  // A tenant without settings leaves every one unset.
  const TenantSettings* t = policy->FindTenant("t");
  ASSERT_NE(t, nullptr);
  EXPECT_FALSE(t->max_idle_timeout.has_value());
  EXPECT_FALSE(t->max_sessions_per_user.has_value());
}

TEST(PolicyTest, AllowAllIsOneDefaultCallerAllowedEverything) {
  std::shared_ptr<const Policy> policy = Policy::AllowAll();
  EXPECT_TRUE(policy->allows_everyone());
  ASSERT_EQ(policy->callers().size(), 1u);
  const Caller& caller = policy->callers()[0];
  EXPECT_EQ(caller.name, "default");
  EXPECT_EQ(caller.tenant, "default");
  EXPECT_EQ(caller.permissions.count(), kPermissionCount);
  ASSERT_NE(policy->FindTenant("default"), nullptr);
  EXPECT_FALSE(policy->FindTenant("default")->max_idle_timeout.has_value());
}

// Found by //fuzz:policy_fuzzer: yaml-cpp 0.7, the parser before libyaml,
// never returned on these (so a mistyped policy hung start-up or a reload).
TEST(PolicyTest, TextThatHungTheOldParserIsAnError) {
  const std::string hung[] = {
      std::string("!\0,\0\0", 5),
      ",",
      "  ,",
      "\"a\",",
      "!90s,t",
      std::string("# sssi,,R\0\0\0\0\0\0\0\" \xff\xff\xff\xff\xff"
                  "d l\"og out\n  - na\xd6\xd0"
                  "es.[,\n,v,[e",
                  53)};
  for (const std::string& text : hung) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ErrorOf(text), HasSubstr("policy.yaml:"));
  }
  EXPECT_EQ(ErrorOf(std::string("a: \0,\0\0", 7)),
            "policy.yaml:1: YAML syntax error: control characters are not "
            "allowed");
  EXPECT_EQ(ErrorOf("version: 1\n\x7f\n"),
            "policy.yaml:2: YAML syntax error: control characters are not "
            "allowed");
}

// A policy has no use for aliases (nor their growth) or tags.
TEST(PolicyTest, AliasesAndTagsAreErrors) {
  EXPECT_EQ(ErrorOf("version: &v 1\ntenants:\n  t: {}\ncallers: *v\n"),
            "policy.yaml:1: a node used again through a YAML alias (*); a "
            "policy uses none");
  EXPECT_EQ(ErrorOf("version: !custom 1\n"),
            "policy.yaml:1: a YAML tag (!); a policy uses none");
  std::string deep = "version: 1\ntenants: ";
  for (int i = 0; i < 40; ++i) deep += "[";
  EXPECT_THAT(ErrorOf(deep + std::string(40, ']') + "\n"),
              HasSubstr("nested more than 32 levels deep"));
  // Refused at once, before libyaml (which took 34 s on 100,000).
  EXPECT_EQ(ErrorOf("version: 1\ntenants: " + std::string(1000000, '[')),
            "policy.yaml:2: nested more than 32 levels deep");
}

TEST(PolicyTest, UnknownPermissionNamesItsLineAndCaller) {
  EXPECT_EQ(ErrorOf(R"(version: 1
tenants:
  shop:
callers:
  - name: shop-web
    tenant: shop
    uri_san: spiffe://x/web
    allow:
      - Load
      - Lod
)"),
            "policy.yaml:10: caller \"shop-web\": unknown permission \"Lod\"");
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    dns_san: d.example\n"
                              "    allow: [Load, load]\n")),
            "policy.yaml:12: caller \"d\": unknown permission \"load\"");
  // No wildcards.
  EXPECT_THAT(ErrorOf(OneCaller("",
                                "  - name: d\n    tenant: t\n"
                                "    dns_san: d.example\n"
                                "    allow: ['*']\n")),
              StartsWith("policy.yaml:12: caller \"d\": unknown permission"));
}

TEST(PolicyTest, EmptyOrMissingAllowIsAnError) {
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    dns_san: d.example\n"
                              "    allow: []\n")),
            "policy.yaml:12: caller \"d\": allow is empty: a caller must be "
            "allowed at least one RPC");
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    dns_san: d.example\n")),
            "policy.yaml:9: caller \"d\": missing \"allow\" (the RPCs it may "
            "call, e.g. [Load, Save])");
  EXPECT_THAT(ErrorOf(OneCaller("",
                                "  - name: d\n    tenant: t\n"
                                "    dns_san: d.example\n"
                                "    allow:\n")),
              StartsWith("policy.yaml:12: caller \"d\": allow must be a list"));
  EXPECT_THAT(ErrorOf(OneCaller("",
                                "  - name: d\n    tenant: t\n"
                                "    dns_san: d.example\n"
                                "    allow: Load\n")),
              StartsWith("policy.yaml:12: caller \"d\": allow must be a list"));
}

TEST(PolicyTest, IdentityRules) {
  // None.
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    allow: [Load]\n")),
            "policy.yaml:9: caller \"d\": missing an identity: one of "
            "uri_san, dns_san, common_name, api_key_sha256");
  // Two.
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    dns_san: d.example\n"
                              "    common_name: d\n"
                              "    allow: [Load]\n")),
            "policy.yaml:12: caller \"d\": has both dns_san and common_name; "
            "a caller has exactly one identity");
  // An API key hash that is not 64 hex digits.
  EXPECT_THAT(
      ErrorOf(OneCaller("",
                        "  - name: d\n    tenant: t\n"
                        "    api_key_sha256: 9f86d08188\n"
                        "    allow: [Load]\n")),
      StartsWith("policy.yaml:11: caller \"d\": api_key_sha256 must be 64 "
                 "hexadecimal digits"));
  EXPECT_THAT(
      ErrorOf(OneCaller("", absl::StrCat("  - name: d\n    tenant: t\n"
                                         "    api_key_sha256: ",
                                         std::string(63, 'a'), "g\n",
                                         "    allow: [Load]\n"))),
      StartsWith("policy.yaml:11: caller \"d\": api_key_sha256 must be 64"));
  EXPECT_THAT(ErrorOf(OneCaller("",
                                "  - name: d\n    tenant: t\n"
                                "    uri_san: ''\n"
                                "    allow: [Load]\n")),
              StartsWith("policy.yaml:11: caller \"d\": uri_san must be "
                         "non-empty"));
  EXPECT_THAT(ErrorOf(OneCaller("",
                                "  - name: d\n    tenant: t\n"
                                "    uri_san: [a, b]\n"
                                "    allow: [Load]\n")),
              StartsWith("policy.yaml:11: caller \"d\": uri_san must be text"));
}

TEST(PolicyTest, DuplicateIdentityNamesBothLines) {
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    uri_san: spiffe://x/c\n"
                              "    allow: [Load]\n")),
            "policy.yaml:11: caller \"d\": uri_san \"spiffe://x/c\" is "
            "already the identity of caller \"c\" (line 7)");
  // DNS names are case-insensitive, so these are the same name.
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: t\n"
                              "    dns_san: a.example\n"
                              "    allow: [Load]\n"
                              "  - name: e\n    tenant: t\n"
                              "    dns_san: A.Example\n"
                              "    allow: [Load]\n")),
            "policy.yaml:15: caller \"e\": dns_san \"A.Example\" is already "
            "the identity of caller \"d\" (line 11)");
  // API key hashes in either case of hex.
  const std::string hash = Sha256Hex("k");
  std::string upper = hash;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(ch));
  EXPECT_THAT(
      ErrorOf(OneCaller(
          "", absl::StrCat(
                  "  - name: d\n    tenant: t\n", "    api_key_sha256: ", hash,
                  "\n", "    allow: [Load]\n", "  - name: e\n    tenant: t\n",
                  "    api_key_sha256: ", upper, "\n", "    allow: [Load]\n"))),
      StartsWith("policy.yaml:15: caller \"e\": api_key_sha256"));
  // The same value under different kinds is not a duplicate.
  ASSERT_OK(Policy::Parse(OneCaller("",
                                    "  - name: d\n    tenant: t\n"
                                    "    common_name: spiffe://x/c\n"
                                    "    allow: [Load]\n"),
                          "p")
                .status());
}

TEST(PolicyTest, DuplicateNamesAndKeys) {
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: c\n    tenant: t\n"
                              "    dns_san: d.example\n"
                              "    allow: [Load]\n")),
            "policy.yaml:9: caller #2: duplicate caller name \"c\" (first on "
            "line 5)");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\n  u:\n  t:\n"
                    "callers: []\n"),
            "policy.yaml:5: duplicate tenant \"t\" (first on line 3)");
  EXPECT_EQ(ErrorOf(OneCaller("", "    allow: [Save]\n")),
            "policy.yaml:9: caller #1: duplicate key \"allow\" (first on "
            "line 8)");
  EXPECT_EQ(ErrorOf("version: 1\nversion: 1\n"),
            "policy.yaml:2: duplicate key \"version\" (first on line 1)");
}

TEST(PolicyTest, UnknownKeys) {
  EXPECT_EQ(ErrorOf("version: 1\ntenant:\n  t:\n"),
            "policy.yaml:2: unknown key \"tenant\" (expected version, "
            "tenants, callers)");
  EXPECT_EQ(ErrorOf(OneCaller("    max_idle: 1h\n")),
            "policy.yaml:4: tenant \"t\": unknown key \"max_idle\" (expected "
            "default_idle_timeout, max_idle_timeout, "
            "default_absolute_lifetime, max_absolute_lifetime, "
            "max_sessions_per_user, max_payload_bytes, max_live_sessions)");
  EXPECT_THAT(ErrorOf(OneCaller("", "    role: admin\n")),
              StartsWith("policy.yaml:9: caller #1: unknown key \"role\" "
                         "(expected name, tenant,"));
}

TEST(PolicyTest, MissingRequiredKeys) {
  EXPECT_EQ(ErrorOf("tenants:\n  t:\ncallers: []\n"),
            "policy.yaml:1: missing \"version\" (must be 1)");
  EXPECT_EQ(ErrorOf("version: 1\ncallers: []\n"),
            "policy.yaml:1: missing \"tenants\"");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\n"),
            "policy.yaml:1: missing \"callers\"");
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - tenant: t\n"
                              "    dns_san: d.example\n"
                              "    allow: [Load]\n")),
            "policy.yaml:9: caller #2: missing \"name\"");
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n"
                              "    dns_san: d.example\n"
                              "    allow: [Load]\n")),
            "policy.yaml:9: caller \"d\": missing \"tenant\"");
  EXPECT_EQ(ErrorOf("version: 1\ntenants: {}\ncallers: []\n"),
            "policy.yaml:2: tenants: declare at least one");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\ncallers: []\n"),
            "policy.yaml:4: callers: declare at least one");
}

TEST(PolicyTest, WrongTypes) {
  EXPECT_EQ(ErrorOf("- version\n"),
            "policy.yaml:1: the policy must be a map, not a list");
  EXPECT_EQ(ErrorOf("version: \"1\"\n"), "policy.yaml:1: version must be 1");
  EXPECT_EQ(ErrorOf("version: 1\ntenants: [t]\n"),
            "policy.yaml:2: tenants must be a map, not a list");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t: 5\n"),
            "policy.yaml:3: tenant \"t\": its settings must be a map, not "
            "\"5\"");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\ncallers:\n  name: c\n"),
            "policy.yaml:5: callers must be a list (\"- name: ...\")");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\ncallers:\n  - c\n"),
            "policy.yaml:5: caller #1: a caller must be a map, not \"c\"");
  EXPECT_EQ(ErrorOf(OneCaller("    max_sessions_per_user: \"10\"\n")),
            "policy.yaml:4: tenant \"t\": max_sessions_per_user must be an "
            "integer from 0 to 2147483647, not quoted text");
  EXPECT_EQ(ErrorOf(OneCaller("    max_live_sessions: many\n")),
            "policy.yaml:4: tenant \"t\": max_live_sessions must be an "
            "integer from 0 to 9223372036854775807, not \"many\"");
  EXPECT_EQ(ErrorOf(OneCaller("    max_live_sessions:\n")),
            "policy.yaml:4: tenant \"t\": max_live_sessions must be an "
            "integer from 0 to 9223372036854775807, not empty");
  EXPECT_EQ(ErrorOf(OneCaller("    max_payload_bytes: 1.5\n")),
            "policy.yaml:4: tenant \"t\": max_payload_bytes must be an "
            "integer from 1 to 9223372036854775807, not \"1.5\"");
  EXPECT_EQ(ErrorOf(OneCaller("", "  - name: [d]\n")),
            "policy.yaml:9: caller #2: name must be text, not a list");
}

TEST(PolicyTest, Version) {
  EXPECT_EQ(ErrorOf("version: 2\ntenants:\n  t:\n"),
            "policy.yaml:1: unsupported version 2 (this sessiond reads "
            "version 1)");
}

TEST(PolicyTest, UnknownTenant) {
  EXPECT_EQ(ErrorOf(OneCaller("",
                              "  - name: d\n    tenant: shop\n"
                              "    dns_san: d.example\n"
                              "    allow: [Load]\n")),
            "policy.yaml:10: caller \"d\": unknown tenant \"shop\" (declare "
            "it under tenants)");
}

TEST(PolicyTest, BadNames) {
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  sh op:\n"),
            "policy.yaml:3: tenant name \"sh op\" must be 1 to 64 of A-Z a-z "
            "0-9 . _ -");
  EXPECT_EQ(ErrorOf(absl::StrCat("version: 1\ntenants:\n  ",
                                 std::string(65, 'a'), ":\n")),
            absl::StrCat("policy.yaml:3: tenant name \"", std::string(65, 'a'),
                         "\" must be 1 to 64 of A-Z a-z 0-9 . _ -"));
  EXPECT_EQ(ErrorOf(OneCaller("", "  - name: shop/web\n")),
            "policy.yaml:9: caller #2: name \"shop/web\" must be 1 to 64 of "
            "A-Z a-z 0-9 . _ -");
  EXPECT_EQ(ErrorOf(OneCaller("", "  - name: ''\n")),
            "policy.yaml:9: caller #2: name \"\" must be 1 to 64 of A-Z a-z "
            "0-9 . _ -");
  // Control characters are escaped in messages.
  EXPECT_THAT(ErrorOf(OneCaller("", "  - name: \"a\\nb\"\n")),
              HasSubstr("name \"a\\nb\" must be"));
  // 64 characters of every allowed kind is a name.
  const std::string longest = std::string(59, 'a') + "Z9._-";
  ASSERT_OK(
      Policy::Parse(
          absl::StrCat("version: 1\ntenants:\n  ", longest, ":\ncallers:\n",
                       "  - name: ", longest, "\n", "    tenant: ", longest,
                       "\n", "    common_name: x\n", "    allow: [Load]\n"),
          "p")
          .status());
}

TEST(PolicyTest, Durations) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Parse(OneCaller("    default_idle_timeout: 90s\n"
                                               "    max_idle_timeout: 1h30m\n"
                                               "    max_absolute_lifetime: "
                                               "\"2h\"\n"),
                                     "p"));
  const TenantSettings* t = policy->FindTenant("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->default_idle_timeout, absl::Seconds(90));
  EXPECT_EQ(t->max_idle_timeout, absl::Minutes(90));
  EXPECT_FALSE(t->default_absolute_lifetime.has_value());
  EXPECT_EQ(t->max_absolute_lifetime, absl::Hours(2));

  for (const char* bad : {"0", "0s", "-5m", "30", "inf", "abc", "''"}) {
    const std::string text = std::string(bad) == "''" ? "" : bad;
    EXPECT_EQ(ErrorOf(OneCaller(absl::StrCat("    default_idle_timeout: ", bad,
                                             "\n    max_idle_timeout: 1h\n"))),
              absl::StrCat("policy.yaml:4: tenant \"t\": default_idle_timeout "
                           "must be a positive duration like 90s, 30m or 12h, "
                           "not \"",
                           text, "\""))
        << bad;
  }
  EXPECT_EQ(ErrorOf(OneCaller("    max_idle_timeout: {h: 1}\n")),
            "policy.yaml:4: tenant \"t\": max_idle_timeout must be a positive "
            "duration like 90s, 30m or 12h, not a map");
}

TEST(PolicyTest, DefaultAtMostMax) {
  EXPECT_EQ(ErrorOf(OneCaller("    max_idle_timeout: 1h\n"
                              "    default_idle_timeout: 61m\n")),
            "policy.yaml:5: tenant \"t\": default_idle_timeout is longer than "
            "max_idle_timeout");
  EXPECT_EQ(ErrorOf(OneCaller("    default_absolute_lifetime: 25h\n"
                              "    max_absolute_lifetime: 24h\n")),
            "policy.yaml:4: tenant \"t\": default_absolute_lifetime is longer "
            "than max_absolute_lifetime");
  // Equal is fine; so is a default alone (the max is the server's flag).
  ASSERT_OK(Policy::Parse(OneCaller("    default_idle_timeout: 1h\n"
                                    "    max_idle_timeout: 60m\n"
                                    "    default_absolute_lifetime: 9999h\n"),
                          "p")
                .status());
}

TEST(PolicyTest, Counts) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Parse(OneCaller("    max_sessions_per_user: 0\n"
                                               "    max_live_sessions: 0\n"
                                               "    max_payload_bytes: 1\n"),
                                     "p"));
  EXPECT_EQ(policy->FindTenant("t")->max_sessions_per_user, 0);
  EXPECT_EQ(policy->FindTenant("t")->max_live_sessions, 0);
  EXPECT_EQ(policy->FindTenant("t")->max_payload_bytes, 1);
  EXPECT_EQ(ErrorOf(OneCaller("    max_sessions_per_user: -1\n")),
            "policy.yaml:4: tenant \"t\": max_sessions_per_user must be an "
            "integer from 0 to 2147483647, not \"-1\"");
  EXPECT_EQ(ErrorOf(OneCaller("    max_payload_bytes: 0\n")),
            "policy.yaml:4: tenant \"t\": max_payload_bytes must be an "
            "integer from 1 to 9223372036854775807, not \"0\"");
  EXPECT_EQ(
      ErrorOf(OneCaller("    max_sessions_per_user: 2147483648\n")),
      "policy.yaml:4: tenant \"t\": max_sessions_per_user must be an integer "
      "from 0 to 2147483647, not \"2147483648\"");
  EXPECT_EQ(ErrorOf(OneCaller("    max_live_sessions: 99999999999999999999\n")),
            "policy.yaml:4: tenant \"t\": max_live_sessions must be an integer "
            "from 0 to 9223372036854775807, not \"99999999999999999999\"");
  EXPECT_EQ(ErrorOf(OneCaller("    max_live_sessions: +5\n")),
            "policy.yaml:4: tenant \"t\": max_live_sessions must be an "
            "integer from 0 to 9223372036854775807, not \"+5\"");
}

TEST(PolicyTest, YamlSyntaxErrorNamesItsLine) {
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t:\ncallers: [\n  {name: c\n"),
            "policy.yaml:6: YAML syntax error: did not find expected ',' or "
            "'}' (while parsing a flow mapping)");
  EXPECT_EQ(ErrorOf("version: 1\ntenants:\n  t: 1\n   x: 2\n"),
            "policy.yaml:4: YAML syntax error: mapping values are not allowed "
            "in this context");
  EXPECT_EQ(ErrorOf("version: 1\ntenants: *nowhere\n"),
            "policy.yaml:2: YAML syntax error: found undefined alias");
  EXPECT_EQ(ErrorOf(""), "policy.yaml:1: no YAML document (the file is empty)");
  EXPECT_EQ(ErrorOf("# just a comment\n"),
            "policy.yaml:1: no YAML document (the file is empty)");
  EXPECT_EQ(ErrorOf(std::string(kExample) + "---\nversion: 1\n"),
            "policy.yaml:25: a second YAML document; the file must hold one");
}

// Whatever the bytes, Parse returns a status (no exception escapes).
TEST(PolicyTest, GarbageNeverThrows) {
  const std::string example = kExample;
  for (size_t cut = 0; cut < example.size(); cut += 7) {
    (void)Policy::Parse(example.substr(0, cut), "p");
    std::string mangled = example;
    mangled[cut] = "{[:&*!|>'\"%@`\t\x01"[cut % 16];
    (void)Policy::Parse(mangled, "p");
  }
  EXPECT_FALSE(Policy::Parse(std::string(5000, '['), "p").ok());
  EXPECT_FALSE(Policy::Parse(std::string("a: \xff\xfe\x00", 6), "p").ok());
}

class PolicyFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path =
        absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(PolicyFileTest, LoadReadsTheFileAndErrorsNameIt) {
  const std::string good = Write("good.yaml", kExample);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Load(good));
  EXPECT_EQ(policy->callers().size(), 3u);

  const std::string bad = Write("bad.yaml", "version: 3\n");
  absl::StatusOr<std::shared_ptr<const Policy>> failed = Policy::Load(bad);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(failed.status().message()),
            absl::StrCat(bad,
                         ":1: unsupported version 3 (this sessiond reads "
                         "version 1)"));

  const std::string missing = good + ".missing";
  failed = Policy::Load(missing);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr(missing));

  const std::string huge =
      Write("huge.yaml", "# " + std::string(2 << 20, 'x') + "\n");
  failed = Policy::Load(huge);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("larger than"));
}

TEST_F(PolicyFileTest, TheDeployExampleParses) {
  const std::string path = "deploy/policy.example.yaml";
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const Policy> policy,
                       Policy::Load(path));
  ASSERT_EQ(policy->callers().size(), 3u);
  EXPECT_EQ(policy->callers()[0].name, "shop-web");
  EXPECT_EQ(policy->callers()[1].name, "shop-account");
  EXPECT_EQ(policy->callers()[2].name, "ops");
  EXPECT_TRUE(policy->callers()[2].Allows(Permission::kPrune));
  EXPECT_NE(policy->FindTenant("shop"), nullptr);
  EXPECT_TRUE(policy->HasCallers(IdentityKind::kUriSan));
  EXPECT_TRUE(policy->HasCallers(IdentityKind::kDnsSan));
  EXPECT_TRUE(policy->HasCallers(IdentityKind::kApiKeySha256));
}

}  // namespace
}  // namespace sessiond::auth
