#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite
# three times over: as built, under AddressSanitizer + UndefinedBehavior-
# Sanitizer (--config=asan), and each fuzz harness for 10 s under libFuzzer
# (--config=fuzz). Ends with one line "N passed, N failed" counted from
# the test XML of the test targets that exist now, and exits non-zero if
# anything failed. Extra arguments go to the first run.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh --bench || { echo "0 passed, 1 failed"; exit 1; }

tool() { command -v "$1" || echo "/usr/local/bin/$1"; }
tools=(--test_env=SESSIOND_GRPCURL="$(tool grpcurl)"
       --test_env=SESSIOND_GHZ="$(tool ghz)")
rc=0
BEP_DIR=$(mktemp -d)
export BEP_DIR
trap 'rm -rf "$BEP_DIR"' EXIT
bazel test //... "${tools[@]}" --build_event_json_file="$BEP_DIR/default.json" \
  "$@" || rc=1
bazel test --config=asan //... "${tools[@]}" \
  --build_event_json_file="$BEP_DIR/asan.json" || rc=1
bazel test --config=fuzz //fuzz/... \
  --build_event_json_file="$BEP_DIR/fuzz.json" || rc=1

tools/count_tests.sh "default://..." "asan://..." "fuzz://fuzz/..." || rc=1
exit $rc
