// sessionctl: operator CLI for sessiond. See client/cli.h.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "client/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<std::string> env_addr;
  if (const char* addr = std::getenv("SESSIOND_ADDR")) env_addr = addr;
  // The environment's key file, as if given first (a flag given wins).
  if (const char* key_file = std::getenv("SESSIOND_API_KEY_FILE")) {
    bool given = false;
    for (const std::string& arg : args) {
      given = given || arg.rfind("--api-key-file", 0) == 0;
    }
    if (*key_file != '\0' && !given) {
      args.insert(args.begin(), std::string("--api-key-file=") + key_file);
    }
  }
  return sessiond::RunSessionctl(args, env_addr, std::cin, std::cout,
                                 std::cerr);
}
