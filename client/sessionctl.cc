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
  return sessiond::RunSessionctl(args, env_addr, std::cin, std::cout,
                                 std::cerr);
}
