#!/usr/bin/env bash
# Runs the ghz harness in its smoke mode (tiny runs, every RPC, every
# backend that needs no outside server here), so that it cannot rot. It does
# not judge speed; it fails if any request fails or the harness breaks.
set -euo pipefail
ghz=${SESSIOND_GHZ:-}
[[ -n "$ghz" && -x "$ghz" ]] ||
  { echo "FAIL: ghz not found (SESSIOND_GHZ='$ghz'); run tools/install_deps.sh --bench" >&2; exit 1; }
cd "$TEST_SRCDIR/sessiond"
bash bench/run_ghz.sh --smoke --backends="${SESSIOND_GHZ_BACKENDS:-memory,sqlite}" \
  --bin-dir="$TEST_SRCDIR/sessiond" --ghz="$ghz" --out="$TEST_TMPDIR/ghz"
grep -q '| memory | load |' "$TEST_TMPDIR/ghz/table.md"
echo "PASS: ghz harness smoke run"
