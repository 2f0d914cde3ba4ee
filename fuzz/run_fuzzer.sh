#!/usr/bin/env bash
# run_fuzzer.sh replay|fuzz HARNESS SEED_DIR SECONDS
# replay: runs the harness on every seed once. fuzz: runs libFuzzer for
# SECONDS from the seeds, keeping what it finds in a scratch directory and
# any crashing input in the test's undeclared outputs.
set -euo pipefail
mode=$1 harness=$2 seeds=$3 seconds=$4
[[ -d "$seeds" ]] || { echo "no seed corpus at $seeds" >&2; exit 1; }
if [[ "$mode" == replay ]]; then
  exec "$harness" "$seeds"
fi
scratch="${TEST_TMPDIR:-$(mktemp -d)}/corpus"
mkdir -p "$scratch"
artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-$scratch}/"
exec "$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$artifacts" "$scratch" "$seeds"
