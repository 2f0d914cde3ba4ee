#include "crypto/token.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace sessiond::crypto {
namespace {

constexpr absl::string_view kUrlSafeAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool AllUrlSafe(absl::string_view s) {
  return s.find_first_not_of(kUrlSafeAlphabet) == absl::string_view::npos;
}

// Independent of the code under test: a string is canonical iff absl decodes
// it to `bytes` bytes and re-encodes it to the same spelling.
bool IsCanonical(absl::string_view s, size_t bytes) {
  std::string decoded;
  if (!absl::WebSafeBase64Unescape(s, &decoded)) return false;
  return decoded.size() == bytes && absl::WebSafeBase64Escape(decoded) == s;
}

TEST(NewTokenTest, HasLengthAndAlphabet) {
  for (int i = 0; i < 1000; ++i) {
    std::string token = NewToken();
    ASSERT_EQ(token.size(), 43u);
    ASSERT_EQ(token.size(), kTokenLength);
    ASSERT_TRUE(AllUrlSafe(token)) << token;
    ASSERT_TRUE(IsCanonical(token, kTokenBytes)) << token;
    ASSERT_TRUE(IsWellFormedToken(token)) << token;
    ASSERT_FALSE(IsWellFormedSessionId(token)) << token;
  }
}

TEST(NewSessionIdTest, HasLengthAndAlphabet) {
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewSessionId();
    ASSERT_EQ(id.size(), 22u);
    ASSERT_EQ(id.size(), kSessionIdLength);
    ASSERT_TRUE(AllUrlSafe(id)) << id;
    ASSERT_TRUE(IsCanonical(id, kSessionIdBytes)) << id;
    ASSERT_TRUE(IsWellFormedSessionId(id)) << id;
    ASSERT_FALSE(IsWellFormedToken(id)) << id;
  }
}

TEST(NewTokenTest, IsUniqueOverManyDraws) {
  absl::flat_hash_set<std::string> seen;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) seen.insert(NewToken());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kDraws));
}

TEST(NewSessionIdTest, IsUniqueOverManyDraws) {
  absl::flat_hash_set<std::string> seen;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) seen.insert(NewSessionId());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kDraws));
}

TEST(NewTokenTest, UsesWholeAlphabet) {
  // 2000 tokens are 86000 characters; every one of the 64 should appear.
  absl::flat_hash_set<char> seen;
  for (int i = 0; i < 2000; ++i) {
    for (char c : NewToken()) seen.insert(c);
  }
  EXPECT_EQ(seen.size(), 64u);
}

TEST(IsWellFormedTest, RejectsEmpty) {
  EXPECT_FALSE(IsWellFormedToken(""));
  EXPECT_FALSE(IsWellFormedSessionId(""));
  EXPECT_FALSE(IsWellFormedToken(absl::string_view()));
  EXPECT_FALSE(IsWellFormedSessionId(absl::string_view()));
}

TEST(IsWellFormedTest, RejectsWrongLength) {
  const std::string token = NewToken();
  EXPECT_FALSE(IsWellFormedToken(token.substr(0, 42)));
  EXPECT_FALSE(IsWellFormedToken(token + "A"));
  EXPECT_FALSE(IsWellFormedToken(token + token));
  const std::string id = NewSessionId();
  EXPECT_FALSE(IsWellFormedSessionId(id.substr(0, 21)));
  EXPECT_FALSE(IsWellFormedSessionId(id + "A"));
  // Padded spellings are not accepted either.
  EXPECT_FALSE(IsWellFormedToken(token + "="));
  EXPECT_FALSE(IsWellFormedSessionId(id + "=="));
}

TEST(IsWellFormedTest, RejectsBadCharacterAnywhere) {
  const std::string token(43, 'A');
  const std::string id(22, 'A');
  ASSERT_TRUE(IsWellFormedToken(token));
  ASSERT_TRUE(IsWellFormedSessionId(id));
  static constexpr char kBad[] = "+/=. \n\t*%\0\x7f\x80\xff";
  for (char bad : std::string(kBad, sizeof(kBad) - 1)) {
    for (size_t i = 0; i < token.size(); ++i) {
      std::string t = token;
      t[i] = bad;
      EXPECT_FALSE(IsWellFormedToken(t))
          << "char " << static_cast<int>(bad) << " at " << i;
    }
    for (size_t i = 0; i < id.size(); ++i) {
      std::string s = id;
      s[i] = bad;
      EXPECT_FALSE(IsWellFormedSessionId(s))
          << "char " << static_cast<int>(bad) << " at " << i;
    }
  }
}

// Exactly the last characters that a canonical encoding can produce are
// accepted: 16 for a token (2 spare bits), 4 for an id (4 spare bits).
TEST(IsWellFormedTest, AcceptsOnlyCanonicalLastCharacter) {
  const std::string token_prefix = NewToken().substr(0, 42);
  const std::string id_prefix = NewSessionId().substr(0, 21);
  int token_accepted = 0;
  int id_accepted = 0;
  for (char last : kUrlSafeAlphabet) {
    const std::string token = token_prefix + last;
    const std::string id = id_prefix + last;
    EXPECT_EQ(IsWellFormedToken(token), IsCanonical(token, kTokenBytes))
        << token;
    EXPECT_EQ(IsWellFormedSessionId(id), IsCanonical(id, kSessionIdBytes))
        << id;
    token_accepted += IsWellFormedToken(token);
    id_accepted += IsWellFormedSessionId(id);
  }
  EXPECT_EQ(token_accepted, 16);
  EXPECT_EQ(id_accepted, 4);
  // Spot checks: 'B' (value 1) has a non-zero low bit; 'E' (4) is fine for a
  // token but not an id; 'Q' (16) is fine for both.
  EXPECT_FALSE(IsWellFormedToken(token_prefix + "B"));
  EXPECT_TRUE(IsWellFormedToken(token_prefix + "E"));
  EXPECT_FALSE(IsWellFormedSessionId(id_prefix + "E"));
  EXPECT_TRUE(IsWellFormedSessionId(id_prefix + "Q"));
}

// Expected digests from `printf abc | sha256sum` and `printf '' | sha256sum`.
TEST(HashTokenTest, MatchesKnownSha256Vectors) {
  EXPECT_EQ(absl::BytesToHexString(HashToken("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(absl::BytesToHexString(HashToken("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(absl::BytesToHexString(HashToken(absl::string_view())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HashTokenTest, Is32BytesAndDeterministic) {
  const std::string token = NewToken();
  EXPECT_EQ(HashToken(token).size(), 32u);
  EXPECT_EQ(HashToken(token), HashToken(token));
  EXPECT_NE(HashToken(token), HashToken(NewToken()));
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals(absl::string_view(), ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "bbc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(
      ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(
      ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
  const std::string hash = HashToken(NewToken());
  EXPECT_TRUE(ConstantTimeEquals(hash, std::string(hash)));
  for (size_t i = 0; i < hash.size(); ++i) {
    std::string other = hash;
    other[i] ^= 0x01;
    EXPECT_FALSE(ConstantTimeEquals(hash, other)) << i;
  }
}

}  // namespace
}  // namespace sessiond::crypto

namespace sessiond::crypto {
namespace {

TEST(SessionTokenTest, IsTheIdThenASeparatorThenAFreshSecret) {
  const std::string id = NewSessionId();
  const std::string token = NewSessionToken(id);
  ASSERT_EQ(token.size(), kSessionTokenLength);
  EXPECT_EQ(token.size(), 66u);
  EXPECT_EQ(SessionIdOfToken(token), id);
  EXPECT_EQ(token[kSessionIdLength], '.');
  EXPECT_TRUE(IsWellFormedToken(token.substr(kSessionIdLength + 1)));
  EXPECT_TRUE(IsWellFormedSessionToken(token));
  EXPECT_NE(NewSessionToken(id), token);  // The secret is fresh each time.
}

TEST(SessionTokenTest, RejectsEverythingElse) {
  const std::string id = NewSessionId();
  const std::string secret = NewToken();
  const std::string good = id + "." + secret;
  ASSERT_TRUE(IsWellFormedSessionToken(good));
  EXPECT_FALSE(IsWellFormedSessionToken(""));
  EXPECT_FALSE(IsWellFormedSessionToken(secret));             // no id
  EXPECT_FALSE(IsWellFormedSessionToken(id + "_" + secret));  // separator
  EXPECT_FALSE(IsWellFormedSessionToken(id + "." + secret + "A"));
  EXPECT_FALSE(IsWellFormedSessionToken(good.substr(1)));
  std::string bad_id = good;
  bad_id[3] = '!';
  EXPECT_FALSE(IsWellFormedSessionToken(bad_id));
  std::string bad_secret = good;
  bad_secret[40] = '=';
  EXPECT_FALSE(IsWellFormedSessionToken(bad_secret));
  std::string with_nul = good;
  with_nul[30] = '\0';
  EXPECT_FALSE(IsWellFormedSessionToken(with_nul));
}

}  // namespace
}  // namespace sessiond::crypto
