#!/usr/bin/env bash
# Installs what building, running and testing sessiond needs on Debian 12,
# skipping what is already there. Run as root (or with sudo available).
#   tools/install_deps.sh          build and run
#   tools/install_deps.sh --test   also what the test suite needs
#   tools/install_deps.sh --bench  also what the ghz load tests need
set -euo pipefail

want_test=false
want_bench=false
for arg in "$@"; do
  case "$arg" in
    --test) want_test=true ;;
    --bench) want_test=true; want_bench=true ;;
    *) echo "usage: $0 [--test|--bench]" >&2; exit 2 ;;
  esac
done

packages=(
  bazel-bootstrap bazel-rules-java pkg-config g++ git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev libssl-dev libsqlite3-dev libpqxx-dev libpq-dev libhiredis-dev
  libgtest-dev libgmock-dev libbenchmark-dev libyaml-dev
)
if $want_test; then
  # Real database servers for the backend tests (stunnel4: the TLS tunnel to
  # Valkey), and tools the tests call.
  packages+=(postgresql-15 redis-server stunnel4 sqlite3 jq procps openssl)
  # The sanitizer runtimes of gcc (--config=asan, --config=tsan) and clang
  # with libFuzzer (--config=fuzz).
  packages+=(libasan8 libubsan1 libtsan2 clang-14 libfuzzer-14-dev)
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

# A Go command at least as new as $1 (e.g. 1.23). Debian 12 ships Go 1.19;
# a newer toolchain comes from the Go module proxy as the module
# golang.org/toolchain, which is how Go itself distributes toolchains.
go_at_least() {
  local want=$1 go_cmd have
  go_cmd=$(command -v go)
  have=$("$go_cmd" env GOVERSION | sed 's/^go//')
  if [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" == "$want" ]]; then
    echo "$go_cmd"
    return
  fi
  local toolchain="golang.org/toolchain@v0.0.1-go1.23.4.linux-amd64"
  local root=/usr/local/lib/sessiond-go1.23.4
  if [[ ! -x "$root/bin/go" ]]; then
    local dir
    dir=$(cd / && GOFLAGS=-mod=mod "$go_cmd" mod download -json "$toolchain" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n "$dir" ]] || { echo "install_deps: cannot fetch $toolchain" >&2; return 1; }
    # Module files are extracted read-only and not executable; the Go
    # command does the same as this when it switches toolchains itself.
    rm -rf "$root.tmp"
    cp -r "$dir" "$root.tmp"
    chmod -R u+w "$root.tmp"
    chmod +x "$root.tmp"/bin/* "$root.tmp"/pkg/tool/*/*
    mv "$root.tmp" "$root"
  fi
  echo "$root/bin/go"
}

# go_install BINARY MODULE@VERSION MIN_GO: installs into /usr/local/bin.
go_install() {
  local binary=$1 module=$2 min_go=$3
  if command -v "$binary" >/dev/null 2>&1 || [[ -x "/usr/local/bin/$binary" ]]; then
    return
  fi
  echo "install_deps: installing $binary (go install $module)" >&2
  local go_cmd
  go_cmd=$(go_at_least "$min_go")
  GOBIN=/usr/local/bin GOTOOLCHAIN=local "$go_cmd" install "$module"
}

if $want_test; then
  # grpcurl: an independent gRPC client that drives the server through
  # reflection in tests/e2e.
  go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.8.9 1.19
fi
if $want_bench; then
  go_install ghz github.com/bojand/ghz/cmd/ghz@v0.121.0 1.23
fi
