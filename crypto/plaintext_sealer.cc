#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "crypto/sealer.h"

namespace sessiond::crypto {
namespace {

constexpr char kPlaintextFormat = '\x00';

class PlaintextSealer : public Sealer {
 public:
  absl::StatusOr<std::string> Seal(
      absl::string_view plaintext,
      absl::string_view /*associated_data*/) const override {
    std::string sealed;
    sealed.reserve(1 + plaintext.size());
    sealed.push_back(kPlaintextFormat);
    sealed.append(plaintext.data(), plaintext.size());
    return sealed;
  }

  absl::StatusOr<std::string> Open(
      absl::string_view sealed,
      absl::string_view /*associated_data*/) const override {
    if (sealed.empty()) {
      return absl::DataLossError("sealed blob is empty");
    }
    if (sealed[0] != kPlaintextFormat) {
      return absl::DataLossError(absl::StrCat(
          "sealed blob has format byte ",
          static_cast<int>(static_cast<unsigned char>(sealed[0])),
          ", not 0 (plaintext); was it sealed with encryption on?"));
    }
    sealed.remove_prefix(1);
    return std::string(sealed);
  }

  bool encrypts() const override { return false; }
};

}  // namespace

std::unique_ptr<Sealer> NewPlaintextSealer() {
  return std::make_unique<PlaintextSealer>();
}

}  // namespace sessiond::crypto
