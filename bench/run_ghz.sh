#!/usr/bin/env bash
# Load-tests sessiond with ghz, side by side with a bare gRPC baseline server
# (bench/baseline_server.cc) on the same machine, and prints a table of
# req/s, p50, p99 and the ratio to the baseline for each RPC and backend.
#
#   bench/run_ghz.sh [--smoke] [--backends=memory,sqlite,postgres,valkey]
#                    [--runs=N] [--out=DIR] [--bin-dir=DIR --ghz=PATH]
#
# By default it installs ghz if missing and builds optimized binaries;
# --bin-dir names a tree that already holds server/sessiond,
# bench/baseline_server and bench/seed_sessions (the Bazel test
# //bench:ghz_smoke_test passes its runfiles), and --ghz the ghz binary.
#
# Every request must succeed: the script fails, naming the run, if ghz saw
# any status other than OK. --smoke makes every run tiny (CI uses it so the
# harness cannot rot; CI does not judge speed). Each figure is the median of
# --runs runs; baseline and sessiond runs alternate so that both see the same
# machine. ghz's JSON output is kept beside the table in --out.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

smoke=false
backends="memory,sqlite,postgres,valkey"
runs=3
out="bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
bin=""
ghz=""
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=true ;;
    --backends=*) backends=${arg#*=} ;;
    --runs=*) runs=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --bin-dir=*) bin=${arg#*=} ;;
    --ghz=*) ghz=${arg#*=} ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# Load shape. The concurrency and connection counts are the ones that gave
# the baseline its best throughput on the project's 2-core machines (see
# docs/BENCHMARKS.md).
concurrency=${GHZ_CONCURRENCY:-50}
connections=${GHZ_CONNECTIONS:-2}
requests=${GHZ_REQUESTS:-30000}       # per run, for Load/Create/List
once_requests=${GHZ_ONCE_REQUESTS:-10000}  # per run, for CAS Save and Cycle
seed_sessions=10000  # live sessions the Load runs go round
seed_users=1000
if $smoke; then
  concurrency=4; connections=1; requests=200; once_requests=100; runs=1
  seed_sessions=200; seed_users=20
fi

find_binaries "$bin" "$ghz"
mkdir -p "$out"
out=$(cd "$out" && pwd)
make_work_dir

# ghz_run NAME PORT SCENARIO DATA_FILE COUNT (deploy/ghz/SCENARIO.json)
ghz_run() {
  local name=$1 port=$2 scenario=$3 data=$4 count=$5
  "$ghz" --config "deploy/ghz/$scenario.json" -D "$data" \
    -c "$concurrency" --connections="$connections" -n "$count" \
    -O json "127.0.0.1:$port" >"$out/$name.json"
  require_all_ok "$name" "$out/$name.json"
}

# Slices a JSON array file into per-run files of `n` items each.
slice_runs() {  # file n
  for r in $(seq 1 "$runs"); do
    jq ".[$(( (r - 1) * $2 )):$(( r * $2 ))]" "$1" >"${1%.json}.run$r.json"
  done
}

# Scenarios: name (deploy/ghz/NAME.json), data file, and whether each
# request uses up its session ("once": one run's requests each get their own).
scenarios=(
  "load load.json many"
  "load_touch load_touch.json many"
  "save_cas save_cas.json once"
  "save_create create.json many"
  "cycle cycle.json once"
  "list list.json many"
)

baseline_log="$work/baseline.log"
"$bin/bench/baseline_server" --listen=127.0.0.1:0 2>"$baseline_log" &
children+=($!)
baseline_port=$(wait_for_log_port "$baseline_log" $!)

results="$out/results.tsv"
: >"$results"
IFS=, read -ra backend_list <<<"$backends"
for backend in "${backend_list[@]}"; do
  flags=(--backend="$backend" --prune_interval=0)
  case "$backend" in
    # The memory backend never waits on a peer: calls run on the gRPC
    # threads, as the README advises for it.
    memory) flags+=(--workers=0) ;;
    sqlite) flags+=(--db_path="$work/sessions-$backend.db") ;;
    postgres | valkey)
      mapfile -t extra < <(bench/external_servers.sh start "$work" "$backend")
      flags+=("${extra[@]}") ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  key="$work/$backend.key"
  log="$work/sessiond-$backend.log"
  "$bin/server/sessiond" --listen=127.0.0.1:0 --key_files="$key" \
    --create_key_if_missing "${flags[@]}" 2>"$log" &
  sessiond_pid=$!
  children+=($sessiond_pid)
  port=$(wait_for_log_port "$log" $sessiond_pid)

  data="$work/data-$backend"
  mkdir -p "$data"
  "$bin/bench/seed_sessions" --addr="127.0.0.1:$port" --out="$data" \
    --load="$seed_sessions" --once=$((once_requests * runs)) \
    --users="$seed_users"
  jq 'map(. + {"touch": true})' "$data/load.json" >"$data/load_touch.json"
  slice_runs "$data/save_cas.json" "$once_requests"
  slice_runs "$data/cycle.json" "$once_requests"

  for scenario in "${scenarios[@]}"; do
    read -r name file kind <<<"$scenario"
    count=$requests
    [[ "$kind" == once ]] && count=$once_requests
    for r in $(seq 1 "$runs"); do
      run_file="$data/$file"
      [[ "$kind" == once ]] && run_file="$data/${file%.json}.run$r.json"
      ghz_run "baseline-$backend-$name-$r" "$baseline_port" "$name" "$run_file" "$count"
      ghz_run "$backend-$name-$r" "$port" "$name" "$run_file" "$count"
    done
    for who in baseline "$backend"; do
      prefix=$who; [[ $who == baseline ]] && prefix="baseline-$backend"
      rps=$(for r in $(seq 1 "$runs"); do jq '.rps' "$out/$prefix-$name-$r.json"; done | median)
      p50=$(for r in $(seq 1 "$runs"); do jq '[.latencyDistribution[] | select(.percentage == 50) | .latency][0] / 1e6' "$out/$prefix-$name-$r.json"; done | median)
      p99=$(for r in $(seq 1 "$runs"); do jq '[.latencyDistribution[] | select(.percentage == 99) | .latency][0] / 1e6' "$out/$prefix-$name-$r.json"; done | median)
      printf '%s\t%s\t%s\t%s\t%s\n' "$backend" "$name" "$who" "$rps" "$p50 $p99" >>"$results"
    done
  done
  kill -TERM $sessiond_pid
  wait $sessiond_pid || { echo "sessiond ($backend) exited non-zero" >&2; cat "$log" >&2; exit 1; }
  [[ "$backend" == postgres || "$backend" == valkey ]] && bench/external_servers.sh stop "$work" "$backend"
done

# The table: one row per backend and RPC, with the baseline measured beside it.
{
  printf '| backend | rpc | sessiond req/s | baseline req/s | ratio | p50 ms | p99 ms | baseline p99 ms | p99 ratio |\n'
  printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
  awk -F'\t' '
    $3 == "baseline" { brps[$1 FS $2] = $4; split($5, l, " "); bp99[$1 FS $2] = l[2]; next }
    { rps[$1 FS $2] = $4; split($5, l, " "); p50[$1 FS $2] = l[1]; p99[$1 FS $2] = l[2]; order[++n] = $1 FS $2 }
    END {
      for (i = 1; i <= n; i++) {
        k = order[i]; split(k, kb, FS)
        printf "| %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
          kb[1], kb[2], rps[k], brps[k], rps[k] / brps[k], p50[k], p99[k], bp99[k], p99[k] / bp99[k]
      }
    }' "$results"
} | tee "$out/table.md"
echo "ghz JSON and the table are in $out (concurrency $concurrency, connections $connections, runs $runs)"
