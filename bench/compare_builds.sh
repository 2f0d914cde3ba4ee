#!/usr/bin/env bash
# Runs a Google Benchmark binary of two builds side by side, alternating
# runs so that both see the same machine, and prints each benchmark's median
# real time and CPU time per build and the ratio (new / old; below 1 is
# faster).
#
#   bench/compare_builds.sh OLD_BINARY NEW_BINARY [--runs=N] [--out=DIR]
#                           [-- BENCHMARK_FLAGS...]
#
# e.g. after building //bench:storage_benchmark with -c opt at two commits:
#   bench/compare_builds.sh /tmp/old/storage_benchmark \
#     bazel-bin/bench/storage_benchmark --runs=5
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $# -ge 2 ]] || { sed -n '2,13p' "$0"; exit 2; }
old=$1 new=$2
shift 2
runs=3
out="bench/results/compare-$(date -u +%Y%m%dT%H%M%SZ)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs=*) runs=${1#*=} ;;
    --out=*) out=${1#*=} ;;
    --) shift; break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"

for run in $(seq 1 "$runs"); do
  for build in old new; do
    binary=$old
    [[ $build == new ]] && binary=$new
    echo "run $run/$runs: $build" >&2
    "$binary" --benchmark_format=console --benchmark_out_format=json \
      --benchmark_out="$out/$build-$run.json" "$@" >"$out/$build-$run.txt"
  done
done

# Medians per benchmark name and build, as TSV: name real_ns cpu_ns.
medians() {  # build
  jq -s -r '
    [.[].benchmarks[] | select(.run_type == "iteration")]
    | group_by(.name)[]
    | (map(.real_time * (if .time_unit == "us" then 1000 elif .time_unit == "ms" then 1e6 else 1 end)) | sort) as $r
    | (map(.cpu_time * (if .time_unit == "us" then 1000 elif .time_unit == "ms" then 1e6 else 1 end)) | sort) as $c
    | [.[0].name, $r[($r | length) / 2 | floor], $c[($c | length) / 2 | floor]]
    | @tsv' "$out"/"$1"-*.json
}
medians old | sort >"$out/old.tsv"
medians new | sort >"$out/new.tsv"
echo "| benchmark | old real | new real | new/old real | old CPU | new CPU | new/old CPU |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
join -t $'\t' "$out/old.tsv" "$out/new.tsv" |
  awk -F'\t' '{ printf "| %s | %.1f µs | %.1f µs | %.2f | %.1f µs | %.1f µs | %.2f |\n",
    $1, $2 / 1000, $4 / 1000, $4 / $2, $3 / 1000, $5 / 1000, $5 / $3 }'
echo "(medians of $runs runs each; raw output in $out)" >&2
