#include "tests/e2e/test_certificates.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace sessiond::testing {

bool MakeCertificates(const std::string& dir,
                      const std::vector<ClientCertificate>& clients) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
  // The commands that make `stem` and sign it with the CA.
  auto sign = [&](const std::string& stem, const std::string& subject,
                  const std::string& san, bool client) {
    {
      std::ofstream ext(dir + "/" + stem + ".ext");
      if (!san.empty()) ext << "subjectAltName=" << san << "\n";
      if (client) ext << "extendedKeyUsage=clientAuth\n";
    }
    return absl::StrCat("openssl req ", ec, " -nodes -keyout ", stem,
                        ".key -out ", stem, ".csr -subj ", subject,
                        "; openssl x509 -req -in ", stem,
                        ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ",
                        stem, ".pem -days 1 -extfile ", stem, ".ext; ");
  };
  std::string script = absl::StrCat(
      "set -e; cd '", dir, "'; exec 2>openssl.log; openssl req -x509 ", ec,
      " -nodes -keyout ca.key -out ca.pem -subj /CN=sessiond-test-ca -days 1; ",
      sign("server", "/CN=localhost", "IP:127.0.0.1,DNS:localhost", false));
  for (const ClientCertificate& c : clients) {
    script += sign(c.stem, c.subject, c.subject_alt_name, true);
  }
  const std::string command = "/bin/bash -c \"" + script + "\"";
  return std::system(command.c_str()) == 0;
}

}  // namespace sessiond::testing
