#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"

namespace sessiond::crypto {
namespace {

constexpr uint8_t kAesGcmFormat = 0x01;
constexpr size_t kHeaderSize = 1 + SecretKey::kIdSize;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
static_assert(kAesGcmOverhead == kHeaderSize + kNonceSize + kTagSize);

// OpenSSL's EVP lengths are ints.
constexpr size_t kMaxPlaintextSize = INT_MAX - kAesGcmOverhead;

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  // An empty string_view may have a null data(); never hand that on.
  return reinterpret_cast<const unsigned char*>(s.empty() ? "" : s.data());
}

unsigned char* Bytes(std::string& s, size_t offset) {
  return reinterpret_cast<unsigned char*>(&s[0]) + offset;
}

// Feeds additional data to a GCM context set up for encryption or decryption
// (EVP_CipherUpdate with a null output buffer).
bool AddAad(EVP_CIPHER_CTX* ctx, absl::string_view aad) {
  if (aad.empty()) return true;
  if (aad.size() > static_cast<size_t>(INT_MAX)) return false;
  int unused = 0;
  return EVP_CipherUpdate(ctx, nullptr, &unused, Bytes(aad),
                          static_cast<int>(aad.size())) == 1;
}

class AesGcmSealer : public Sealer {
 public:
  explicit AesGcmSealer(KeyRing ring) : ring_(std::move(ring)) {}

  absl::StatusOr<std::string> Seal(
      absl::string_view plaintext,
      absl::string_view associated_data) const override {
    if (plaintext.size() > kMaxPlaintextSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "plaintext of ", plaintext.size(),
          " bytes is too large to seal (max ", kMaxPlaintextSize, ")"));
    }
    if (associated_data.size() > static_cast<size_t>(INT_MAX)) {
      return absl::InvalidArgumentError("associated data is too large");
    }
    const SecretKey& key = ring_.current();

    std::string sealed(kAesGcmOverhead + plaintext.size(), '\0');
    sealed[0] = static_cast<char>(kAesGcmFormat);
    std::memcpy(&sealed[1], key.id().data(), SecretKey::kIdSize);
    unsigned char* nonce = Bytes(sealed, kHeaderSize);
    unsigned char* ciphertext = nonce + kNonceSize;
    unsigned char* tag = ciphertext + plaintext.size();
    if (RAND_bytes(nonce, static_cast<int>(kNonceSize)) != 1) {
      return absl::InternalError("RAND_bytes failed while drawing a nonce");
    }
    const absl::string_view header(sealed.data(), kHeaderSize);

    CipherCtx ctx(EVP_CIPHER_CTX_new());
    int out_size = 0;
    if (ctx == nullptr ||
        EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                           nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN,
                            static_cast<int>(kNonceSize), nullptr) != 1 ||
        EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce) !=
            1 ||
        !AddAad(ctx.get(), header) || !AddAad(ctx.get(), associated_data) ||
        (!plaintext.empty() &&
         (EVP_EncryptUpdate(ctx.get(), ciphertext, &out_size, Bytes(plaintext),
                            static_cast<int>(plaintext.size())) != 1 ||
          static_cast<size_t>(out_size) != plaintext.size())) ||
        EVP_EncryptFinal_ex(ctx.get(), tag, &out_size) != 1 || out_size != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG,
                            static_cast<int>(kTagSize), tag) != 1) {
      // `sealed` may hold part of a keystream or plaintext; wipe it.
      OPENSSL_cleanse(&sealed[0], sealed.size());
      return absl::InternalError("AES-256-GCM encryption failed");
    }
    return sealed;
  }

  absl::StatusOr<std::string> Open(
      absl::string_view sealed,
      absl::string_view associated_data) const override {
    if (sealed.empty()) {
      return absl::DataLossError("sealed blob is empty");
    }
    if (static_cast<uint8_t>(sealed[0]) != kAesGcmFormat) {
      return absl::DataLossError(absl::StrCat(
          "sealed blob has format byte ",
          static_cast<int>(static_cast<uint8_t>(sealed[0])),
          ", not 1 (AES-256-GCM)",
          sealed[0] == 0 ? "; it was sealed without encryption" : ""));
    }
    if (sealed.size() < kAesGcmOverhead) {
      return absl::DataLossError(
          absl::StrCat("sealed blob of ", sealed.size(),
                       " bytes is shorter than the AES-256-GCM minimum of ",
                       kAesGcmOverhead));
    }
    if (sealed.size() - kAesGcmOverhead > kMaxPlaintextSize ||
        associated_data.size() > static_cast<size_t>(INT_MAX)) {
      return absl::DataLossError("sealed blob or associated data too large");
    }
    const absl::string_view header = sealed.substr(0, kHeaderSize);
    const absl::string_view key_id = sealed.substr(1, SecretKey::kIdSize);
    const SecretKey* key = ring_.Find(key_id);
    if (key == nullptr) {
      return absl::DataLossError(absl::StrCat(
          "sealed blob names key id ", absl::BytesToHexString(key_id),
          ", which is not in the key ring"));
    }
    const unsigned char* nonce = Bytes(sealed) + kHeaderSize;
    const absl::string_view ciphertext = sealed.substr(
        kHeaderSize + kNonceSize, sealed.size() - kAesGcmOverhead);
    // EVP_CTRL_GCM_SET_TAG takes a non-const pointer.
    unsigned char tag[kTagSize];
    std::memcpy(tag, sealed.data() + sealed.size() - kTagSize, kTagSize);

    std::string plaintext(ciphertext.size(), '\0');
    CipherCtx ctx(EVP_CIPHER_CTX_new());
    int out_size = 0;
    if (ctx == nullptr ||
        EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                           nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN,
                            static_cast<int>(kNonceSize), nullptr) != 1 ||
        EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key->data(), nonce) !=
            1 ||
        !AddAad(ctx.get(), header) || !AddAad(ctx.get(), associated_data) ||
        (!ciphertext.empty() &&
         (EVP_DecryptUpdate(ctx.get(), Bytes(plaintext, 0), &out_size,
                            Bytes(ciphertext),
                            static_cast<int>(ciphertext.size())) != 1 ||
          static_cast<size_t>(out_size) != ciphertext.size())) ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG,
                            static_cast<int>(kTagSize), tag) != 1) {
      OPENSSL_cleanse(&plaintext[0], plaintext.size());
      return absl::DataLossError("AES-256-GCM decryption failed");
    }
    unsigned char final_block[16];
    int final_size = 0;
    if (EVP_DecryptFinal_ex(ctx.get(), final_block, &final_size) != 1 ||
        final_size != 0) {
      // Authentication failed: the decrypted bytes must never escape.
      OPENSSL_cleanse(&plaintext[0], plaintext.size());
      return absl::DataLossError(
          "sealed blob failed authentication: it was tampered with, "
          "truncated, or sealed for other associated data");
    }
    return plaintext;
  }

  bool encrypts() const override { return true; }

 private:
  const KeyRing ring_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Sealer>> NewAesGcmSealer(KeyRing ring) {
  if (ring.size() == 0) {
    return absl::InvalidArgumentError("key ring is empty (moved from?)");
  }
  return std::make_unique<AesGcmSealer>(std::move(ring));
}

}  // namespace sessiond::crypto
