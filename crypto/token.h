// Tokens and session ids: random, URL-safe, one spelling each.
//
// A token is the secret a client presents; storage keeps only HashToken() of
// it. A session id is public. Both are CSPRNG output encoded as URL-safe
// base64 without padding ([A-Za-z0-9_-]), so they can go in headers, cookies
// and URLs unescaped.
#ifndef SESSIOND_CRYPTO_TOKEN_H_
#define SESSIOND_CRYPTO_TOKEN_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace sessiond::crypto {

// A token carries 32 random bytes; a session id 16.
inline constexpr size_t kTokenBytes = 32;
inline constexpr size_t kTokenLength = 43;
inline constexpr size_t kSessionIdBytes = 16;
inline constexpr size_t kSessionIdLength = 22;

// A fresh token: kTokenLength characters. Thread-safe. If the CSPRNG fails
// the process aborts: it never returns a weak token.
std::string NewToken();

// A fresh session id: kSessionIdLength characters. Thread-safe. Aborts like
// NewToken() if the CSPRNG fails.
std::string NewSessionId();

// True iff `s` could have come from NewToken() / NewSessionId(): exact
// length, only [A-Za-z0-9_-], and a last character that a canonical encoding
// produces (no non-zero bits after the payload). So every token and id has
// exactly one spelling. Never fails on any input, including empty or binary.
bool IsWellFormedToken(absl::string_view s);
bool IsWellFormedSessionId(absl::string_view s);

// A session token is what a client holds: the session's public id, a '.',
// and a fresh secret from NewToken(). The id in front tells the server which
// session a token names before any lookup (so that an update can be sealed
// to that session at once); the secret alone makes the token unguessable.
// Storage keeps only HashToken() of the whole token.
inline constexpr char kSessionTokenSeparator = '.';
inline constexpr size_t kSessionTokenLength =
    kSessionIdLength + 1 + kTokenLength;

// `session_id` must be well-formed (IsWellFormedSessionId). Aborts like
// NewToken() if the CSPRNG fails.
std::string NewSessionToken(absl::string_view session_id);

// True iff `s` could have come from NewSessionToken(): a well-formed session
// id, the separator, and a well-formed token. Never fails on any input.
bool IsWellFormedSessionToken(absl::string_view s);

// The session id at the front of a well-formed session token.
absl::string_view SessionIdOfToken(absl::string_view session_token);

// SHA-256 of `token`: 32 raw bytes. This is what storage keeps and looks up.
std::string HashToken(absl::string_view token);

// True iff `a` and `b` are equal. For equal lengths, the time taken does not
// depend on the contents; different lengths return false at once (lengths
// are not secret).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace sessiond::crypto

#endif  // SESSIOND_CRYPTO_TOKEN_H_
