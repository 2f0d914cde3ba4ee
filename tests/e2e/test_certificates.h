// Certificates for end-to-end tests, made by the openssl command line tool:
// a CA, a server certificate for 127.0.0.1, and client certificates.
#ifndef SESSIOND_TESTS_E2E_TEST_CERTIFICATES_H_
#define SESSIOND_TESTS_E2E_TEST_CERTIFICATES_H_

#include <string>
#include <vector>

namespace sessiond::testing {

// A client certificate to make: files `stem`.pem and `stem`.key, with the
// subject (e.g. "/CN=web") and, if not empty, the subjectAltName (e.g.
// "URI:spiffe://example.org/web").
struct ClientCertificate {
  std::string stem;
  std::string subject;
  std::string subject_alt_name;
};

// Writes to `dir` ca.pem and ca.key, server.pem and server.key (for
// 127.0.0.1 and localhost), and each of `clients`, all signed by the CA and
// valid for a day. False if openssl failed; its messages are in
// `dir`/openssl.log.
bool MakeCertificates(const std::string& dir,
                      const std::vector<ClientCertificate>& clients);

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_E2E_TEST_CERTIFICATES_H_
