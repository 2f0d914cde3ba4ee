#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite.
# Ends with one line "N passed, N failed" counted from the GoogleTest XML of
# the test targets that exist now, and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }

grpcurl_bin=$(command -v grpcurl || echo /usr/local/bin/grpcurl)
bazel test //... --test_env=SESSIOND_GRPCURL="$grpcurl_bin" "$@"
bazel_rc=$?

tools/count_tests.sh
count_rc=$?
if ((bazel_rc != 0 || count_rc != 0)); then
  exit 1
fi
