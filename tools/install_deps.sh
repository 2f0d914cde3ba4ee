#!/usr/bin/env bash
# Installs what building, running and testing sessiond needs on Debian 12,
# skipping what is already there. Run as root (or with sudo available).
#   tools/install_deps.sh          build and run
#   tools/install_deps.sh --test   also what the test suite needs
set -euo pipefail

want_test=false
[[ "${1:-}" == "--test" ]] && want_test=true

packages=(
  bazel-bootstrap bazel-rules-java pkg-config g++ git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev libssl-dev libsqlite3-dev libpqxx-dev libpq-dev libhiredis-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
if $want_test; then
  packages+=(sqlite3 procps)
  # Go builds grpcurl below; any Go >= 1.18 will do.
  command -v go >/dev/null 2>&1 || packages+=(golang-go)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)

if ((${#missing[@]} > 0)); then
  echo "install_deps: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

if $want_test; then
  # grpcurl: an independent gRPC client that drives the server through
  # reflection in tests/e2e. Built from the Go module proxy.
  if ! command -v grpcurl >/dev/null 2>&1 && [[ ! -x /usr/local/bin/grpcurl ]]; then
    echo "install_deps: installing grpcurl (go install)" >&2
    GOBIN=/usr/local/bin GOFLAGS=-mod=mod \
      go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.8.9
  fi
fi
