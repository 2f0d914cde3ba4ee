#include "crypto/sealer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crypto/key_ring.h"
#include "gtest/gtest.h"

namespace sessiond::crypto {
namespace {

// The blob layout, restated here so that the test checks it.
constexpr size_t kFormatOffset = 0;
constexpr size_t kKeyIdOffset = 1;
constexpr size_t kNonceOffset = 5;
constexpr size_t kCiphertextOffset = 17;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;

std::string Key(char fill) { return std::string(32, fill); }

std::unique_ptr<Sealer> AesSealer(const std::vector<std::string>& keys) {
  absl::StatusOr<KeyRing> ring = KeyRing::FromKeys(keys);
  EXPECT_TRUE(ring.ok()) << ring.status();
  if (!ring.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Sealer>> sealer =
      NewAesGcmSealer(*std::move(ring));
  EXPECT_TRUE(sealer.ok()) << sealer.status();
  if (!sealer.ok()) return nullptr;
  return *std::move(sealer);
}

std::string KeyIdOf(const std::string& raw) {
  absl::StatusOr<SecretKey> key = SecretKey::FromBytes(raw);
  EXPECT_TRUE(key.ok());
  return std::string(key->id());
}

std::string Payload(size_t size, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// Decrypts `sealed` with raw EVP calls, following the documented layout and
// AAD (header, then associated data), independently of the sealer.
bool ReferenceOpen(const std::string& key, const std::string& sealed,
                   const std::string& associated_data, std::string* out) {
  if (sealed.size() < kCiphertextOffset + kTagSize) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(sealed.data());
  const size_t ct_size = sealed.size() - kCiphertextOffset - kTagSize;
  std::string aad = sealed.substr(0, kNonceOffset) + associated_data;
  std::string tag = sealed.substr(sealed.size() - kTagSize);
  out->assign(ct_size, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  unsigned char final_block[16];
  bool ok =
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         bytes + kNonceOffset) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &n,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) == 1 &&
      (ct_size == 0 ||
       EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(&(*out)[0]), &n,
                         bytes + kCiphertextOffset,
                         static_cast<int>(ct_size)) == 1) &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, &tag[0]) == 1 &&
      EVP_DecryptFinal_ex(ctx, final_block, &n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

// --- Plaintext sealer ---

TEST(PlaintextSealerTest, RoundTripsWithFormatByte) {
  std::unique_ptr<Sealer> sealer = NewPlaintextSealer();
  EXPECT_FALSE(sealer->encrypts());
  for (const std::string& plaintext : {std::string(), std::string("hello"),
                                       std::string("a\0b", 3), Payload(1024)}) {
    absl::StatusOr<std::string> sealed = sealer->Seal(plaintext, "sid");
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(*sealed, std::string(1, '\0') + plaintext);
    absl::StatusOr<std::string> opened = sealer->Open(*sealed, "sid");
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plaintext);
  }
}

TEST(PlaintextSealerTest, RejectsEmptyAndOtherFormats) {
  std::unique_ptr<Sealer> sealer = NewPlaintextSealer();
  EXPECT_EQ(sealer->Open("", "sid").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(sealer->Open("\x01hello", "sid").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(sealer->Open("hello", "sid").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(PlaintextSealerTest, RejectsAesGcmBlob) {
  std::unique_ptr<Sealer> aes = AesSealer({Key('a')});
  ASSERT_NE(aes, nullptr);
  absl::StatusOr<std::string> sealed = aes->Seal("secret", "sid");
  ASSERT_TRUE(sealed.ok());
  absl::StatusOr<std::string> opened =
      NewPlaintextSealer()->Open(*sealed, "sid");
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
}

// --- AES-256-GCM sealer ---

TEST(AesGcmSealerTest, RoundTrips) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a')});
  ASSERT_NE(sealer, nullptr);
  EXPECT_TRUE(sealer->encrypts());
  for (size_t size : {0, 1, 15, 16, 17, 1024, 100000}) {
    const std::string plaintext = Payload(size);
    for (const std::string& ad : {std::string(), std::string("session-id")}) {
      absl::StatusOr<std::string> sealed = sealer->Seal(plaintext, ad);
      ASSERT_TRUE(sealed.ok()) << sealed.status();
      EXPECT_EQ(sealed->size(), plaintext.size() + kAesGcmOverhead);
      EXPECT_EQ(sealed->size(), plaintext.size() + 33);
      absl::StatusOr<std::string> opened = sealer->Open(*sealed, ad);
      ASSERT_TRUE(opened.ok()) << opened.status();
      EXPECT_EQ(*opened, plaintext);
    }
  }
}

TEST(AesGcmSealerTest, MatchesDocumentedLayout) {
  const std::string key = Key('a');
  std::unique_ptr<Sealer> sealer = AesSealer({key});
  ASSERT_NE(sealer, nullptr);
  const std::string plaintext = "the user's data, which must not show";
  absl::StatusOr<std::string> sealed = sealer->Seal(plaintext, "sid-1");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ((*sealed)[kFormatOffset], '\x01');
  EXPECT_EQ(sealed->substr(kKeyIdOffset, 4), KeyIdOf(key));
  EXPECT_EQ(sealed->find(plaintext), std::string::npos);

  std::string opened;
  ASSERT_TRUE(ReferenceOpen(key, *sealed, "sid-1", &opened));
  EXPECT_EQ(opened, plaintext);
  // The AAD includes the caller's associated data...
  EXPECT_FALSE(ReferenceOpen(key, *sealed, "sid-2", &opened));
  EXPECT_FALSE(ReferenceOpen(key, *sealed, "", &opened));
}

TEST(AesGcmSealerTest, SealsOfSamePlaintextDiffer) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a')});
  ASSERT_NE(sealer, nullptr);
  absl::StatusOr<std::string> a = sealer->Seal("same", "sid");
  absl::StatusOr<std::string> b = sealer->Seal("same", "sid");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(a->substr(kNonceOffset, kNonceSize),
            b->substr(kNonceOffset, kNonceSize));
  // Nonces do not repeat over many seals.
  std::vector<std::string> nonces;
  for (int i = 0; i < 10000; ++i) {
    absl::StatusOr<std::string> s = sealer->Seal("", "");
    ASSERT_TRUE(s.ok());
    nonces.push_back(s->substr(kNonceOffset, kNonceSize));
  }
  std::sort(nonces.begin(), nonces.end());
  EXPECT_EQ(std::adjacent_find(nonces.begin(), nonces.end()), nonces.end());
}

TEST(AesGcmSealerTest, WrongAssociatedDataIsDataLoss) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a')});
  ASSERT_NE(sealer, nullptr);
  absl::StatusOr<std::string> sealed = sealer->Seal("payload", "sid-1");
  ASSERT_TRUE(sealed.ok());
  for (absl::string_view ad : {"sid-2", "", "sid-1 ", "sid-"}) {
    EXPECT_EQ(sealer->Open(*sealed, ad).status().code(),
              absl::StatusCode::kDataLoss)
        << ad;
  }
  // Associated data is not just appended to the blob.
  absl::StatusOr<std::string> unbound = sealer->Seal("payload", "");
  ASSERT_TRUE(unbound.ok());
  EXPECT_EQ(sealer->Open(*unbound, "sid-1").status().code(),
            absl::StatusCode::kDataLoss);
}

// Every single-bit flip anywhere in the blob is caught.
TEST(AesGcmSealerTest, AnyFlippedBitIsDataLoss) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a'), Key('b')});
  ASSERT_NE(sealer, nullptr);
  const std::string plaintext = "0123456789abcdef0123";
  absl::StatusOr<std::string> sealed = sealer->Seal(plaintext, "sid");
  ASSERT_TRUE(sealed.ok());
  const size_t tag_offset = sealed->size() - kTagSize;
  for (size_t i = 0; i < sealed->size(); ++i) {
    const char* region = i == kFormatOffset      ? "format"
                         : i < kNonceOffset      ? "key id"
                         : i < kCiphertextOffset ? "nonce"
                         : i < tag_offset        ? "ciphertext"
                                                 : "tag";
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = *sealed;
      tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
      absl::StatusOr<std::string> opened = sealer->Open(tampered, "sid");
      EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss)
          << region << " byte " << i << " bit " << bit;
    }
  }
}

TEST(AesGcmSealerTest, KeyIdIsAuthenticated) {
  // Rewriting the key id to another key in the ring does not help.
  const std::string a = Key('a'), b = Key('b');
  std::unique_ptr<Sealer> sealer = AesSealer({a, b});
  ASSERT_NE(sealer, nullptr);
  absl::StatusOr<std::string> sealed = sealer->Seal("payload", "sid");
  ASSERT_TRUE(sealed.ok());
  std::string rewritten = *sealed;
  rewritten.replace(kKeyIdOffset, 4, KeyIdOf(b));
  EXPECT_EQ(sealer->Open(rewritten, "sid").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(AesGcmSealerTest, TruncationAndExtensionAreDataLoss) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a')});
  ASSERT_NE(sealer, nullptr);
  absl::StatusOr<std::string> sealed = sealer->Seal("some payload", "sid");
  ASSERT_TRUE(sealed.ok());
  for (size_t size = 0; size < sealed->size(); ++size) {
    EXPECT_EQ(sealer->Open(sealed->substr(0, size), "sid").status().code(),
              absl::StatusCode::kDataLoss)
        << size;
    // Dropping bytes from the front is caught too.
    EXPECT_EQ(sealer->Open(sealed->substr(sealed->size() - size), "sid")
                  .status()
                  .code(),
              absl::StatusCode::kDataLoss)
        << size;
  }
  EXPECT_EQ(sealer->Open(*sealed + "x", "sid").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(sealer->Open(*sealed + std::string(1, '\0'), "sid").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(AesGcmSealerTest, UnknownKeyIdIsDataLoss) {
  std::unique_ptr<Sealer> a = AesSealer({Key('a')});
  std::unique_ptr<Sealer> b = AesSealer({Key('b')});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  absl::StatusOr<std::string> sealed = a->Seal("payload", "sid");
  ASSERT_TRUE(sealed.ok());
  absl::StatusOr<std::string> opened = b->Open(*sealed, "sid");
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(opened.status().message(),
                                absl::BytesToHexString(KeyIdOf(Key('a')))))
      << opened.status();
}

TEST(AesGcmSealerTest, PlaintextBlobIsDataLoss) {
  std::unique_ptr<Sealer> aes = AesSealer({Key('a')});
  ASSERT_NE(aes, nullptr);
  std::unique_ptr<Sealer> plain = NewPlaintextSealer();
  for (const std::string& payload :
       {std::string(), std::string("x"), std::string(100, 'p')}) {
    absl::StatusOr<std::string> sealed = plain->Seal(payload, "sid");
    ASSERT_TRUE(sealed.ok());
    EXPECT_EQ(aes->Open(*sealed, "sid").status().code(),
              absl::StatusCode::kDataLoss);
  }
  EXPECT_EQ(aes->Open("", "sid").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(aes->Open(std::string(200, '\x02'), "sid").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(AesGcmSealerTest, RotationKeepsOldBlobsOpen) {
  const std::string a = Key('a'), b = Key('b');
  std::unique_ptr<Sealer> ring_a = AesSealer({a});
  std::unique_ptr<Sealer> ring_ba = AesSealer({b, a});
  std::unique_ptr<Sealer> ring_b = AesSealer({b});
  ASSERT_NE(ring_a, nullptr);
  ASSERT_NE(ring_ba, nullptr);
  ASSERT_NE(ring_b, nullptr);

  absl::StatusOr<std::string> old_blob = ring_a->Seal("old payload", "sid");
  ASSERT_TRUE(old_blob.ok());
  absl::StatusOr<std::string> opened = ring_ba->Open(*old_blob, "sid");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "old payload");

  absl::StatusOr<std::string> new_blob = ring_ba->Seal("new payload", "sid");
  ASSERT_TRUE(new_blob.ok());
  EXPECT_EQ(new_blob->substr(kKeyIdOffset, 4), KeyIdOf(b));
  std::string reference;
  EXPECT_TRUE(ReferenceOpen(b, *new_blob, "sid", &reference));
  EXPECT_EQ(reference, "new payload");
  EXPECT_EQ(ring_a->Open(*new_blob, "sid").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(ring_b->Open(*new_blob, "sid").ok());

  EXPECT_EQ(ring_b->Open(*old_blob, "sid").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(AesGcmSealerTest, RejectsEmptyRing) {
  absl::StatusOr<KeyRing> ring = KeyRing::FromKeys({Key('a')});
  ASSERT_TRUE(ring.ok());
  KeyRing taken(*std::move(ring));
  EXPECT_EQ(NewAesGcmSealer(*std::move(ring)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(NewAesGcmSealer(std::move(taken)).ok());
}

TEST(AesGcmSealerTest, IsSafeToShareAcrossThreads) {
  std::unique_ptr<Sealer> sealer = AesSealer({Key('a'), Key('b')});
  ASSERT_NE(sealer, nullptr);
  std::vector<std::thread> threads;
  std::vector<int> failures(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&sealer, &failures, t] {
      const std::string ad = absl::StrCat("sid-", t);
      for (int i = 0; i < 500; ++i) {
        const std::string plaintext = Payload(64, t * 1000 + i);
        absl::StatusOr<std::string> sealed = sealer->Seal(plaintext, ad);
        if (!sealed.ok()) {
          ++failures[t];
          continue;
        }
        absl::StatusOr<std::string> opened = sealer->Open(*sealed, ad);
        if (!opened.ok() || *opened != plaintext) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace sessiond::crypto
