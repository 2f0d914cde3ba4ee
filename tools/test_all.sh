#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite.
# Ends with one line "N passed, N failed" counted from the GoogleTest XML of
# the test targets that exist now, and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh --bench || { echo "0 passed, 1 failed"; exit 1; }

tool() { command -v "$1" || echo "/usr/local/bin/$1"; }
bazel test //... \
  --test_env=SESSIOND_GRPCURL="$(tool grpcurl)" \
  --test_env=SESSIOND_GHZ="$(tool ghz)" \
  "$@"
bazel_rc=$?

tools/count_tests.sh
count_rc=$?
if ((bazel_rc != 0 || count_rc != 0)); then
  exit 1
fi
