// sessionctl, the operator CLI, as a function so that tests run it in-process
// (sessionctl.cc is only main()). Run `sessionctl --help` for usage.
#ifndef SESSIOND_CLIENT_CLI_H_
#define SESSIOND_CLIENT_CLI_H_

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace sessiond {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRpcError = 1;  // Also: health says not serving.
inline constexpr int kExitUsage = 2;

inline constexpr char kDefaultAddr[] = "127.0.0.1:50051";

// Runs sessionctl. `args` excludes the program name; `env_addr` is the value
// of $SESSIOND_ADDR, if set. A TOKEN given as "-" is read from `in` (one
// line), so that it need not appear in argv. Prints results to `out` and
// errors to `err`; never prints a token except the one `create` returns.
// Returns kExitOk, kExitRpcError or kExitUsage.
int RunSessionctl(const std::vector<std::string>& args,
                  const std::optional<std::string>& env_addr, std::istream& in,
                  std::ostream& out, std::ostream& err);

}  // namespace sessiond

#endif  // SESSIOND_CLIENT_CLI_H_
