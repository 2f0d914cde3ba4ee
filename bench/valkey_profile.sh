#!/usr/bin/env bash
# Where the CPU goes when sessiond serves from Valkey: ghz, sessiond and
# redis-server share this machine's cores, so the server's script work comes
# out of the same budget as gRPC itself. For Load, Save (CAS update) and
# Save (create) it prints one row with:
#   - script instructions: what redis-server executes per script run,
#     counted by callgrind (deterministic, unlike time on a shared machine),
#     with one request at a time;
#   - under load (ghz as in run_ghz.sh, medians of --runs runs): req/s of
#     sessiond and of the baseline server, their ratio, and CPU time per
#     request of ghz, sessiond and redis-server (user + system, from /proc
#     and bash's `time`).
#
#   bench/valkey_profile.sh [--requests=N] [--runs=N] [--bin-dir=DIR]
#                           [--ghz=PATH]
#
# --bin-dir and --ghz as in run_ghz.sh; by default it builds with -c opt.
# Installs valgrind if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

requests=10000
runs=3
counted_requests=500  # per scenario, under callgrind
bin=""
ghz=""
for arg in "$@"; do
  case "$arg" in
    --requests=*) requests=${arg#*=} ;;
    --runs=*) runs=${arg#*=} ;;
    --bin-dir=*) bin=${arg#*=} ;;
    --ghz=*) ghz=${arg#*=} ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
find_binaries "$bin" "$ghz"
command -v callgrind_control >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null

make_work_dir

scenarios=(load save_cas save_create)
data_file() {  # scenario phase
  case "$1" in
    load) echo "$work/$2/load.json" ;;
    save_cas) echo "$work/$2/save_cas.json" ;;
    save_create) echo "$work/$2/create.json" ;;
  esac
}

# Starts sessiond on the Valkey at $1 (host:port) and seeds it into $2;
# sets sessiond_pid and port.
start_sessiond() {  # valkey_address data_dir once_sessions
  mkdir -p "$2"
  "$bin/server/sessiond" --listen=127.0.0.1:0 --backend=valkey \
    --valkey_address="$1" --valkey_timeout=60s --key_files="$work/key" \
    --create_key_if_missing --prune_interval=0 2>"$2/sessiond.log" &
  sessiond_pid=$!
  children+=($sessiond_pid)
  port=$(wait_for_log_port "$2/sessiond.log" $sessiond_pid)
  "$bin/bench/seed_sessions" --addr="127.0.0.1:$port" --out="$2" \
    --load=1000 --once="$3" --users=100 >/dev/null
}

# 1. Instructions per script run: redis-server under callgrind, counting
# only inside the command that runs a script (FCALL, or EVALSHA for builds
# before the function library).
counted_port=$(free_port)
mkdir -p "$work/counted"
valgrind --tool=callgrind --collect-atstart=no \
  --toggle-collect=fcallCommand --toggle-collect=evalShaCommand \
  --callgrind-out-file="$work/counted/callgrind.out" \
  redis-server --bind 127.0.0.1 --port "$counted_port" --dir "$work/counted" \
  --save "" --appendonly yes --appendfsync everysec \
  >"$work/counted/valgrind.log" 2>&1 &
counted_pid=$!
children+=($counted_pid)
for _ in $(seq 1 300); do
  redis-cli -p "$counted_port" ping >/dev/null 2>&1 && break
  sleep 0.2
done
start_sessiond "127.0.0.1:$counted_port" "$work/counted" "$counted_requests"
declare -A instructions
for scenario in "${scenarios[@]}"; do
  callgrind_control --zero "$counted_pid" >/dev/null 2>&1
  redis-cli -p "$counted_port" config resetstat >/dev/null
  "$ghz" --config "deploy/ghz/$scenario.json" -D "$(data_file "$scenario" counted)" \
    -c 1 --connections=1 -n "$counted_requests" -O json \
    "127.0.0.1:$port" >"$work/counted/$scenario.out.json"
  require_all_ok "$scenario (counted)" "$work/counted/$scenario.out.json"
  script_runs=$(redis-cli -p "$counted_port" info commandstats | tr -d '\r' |
    awk -F'[:,=]' '/^cmdstat_(fcall|evalsha):/ { n += $3 } END { print n }')
  callgrind_control --dump="$scenario" "$counted_pid" >/dev/null 2>&1
  dump=$(ls -t "$work/counted"/callgrind.out.* | head -n1)
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  instructions[$scenario]=$((total / script_runs))
done
kill $sessiond_pid
redis-cli -p "$counted_port" shutdown nosave >/dev/null 2>&1 || true

# 2. Under load, on a redis-server of its own (as run_ghz.sh runs it).
valkey_flag=$(bench/external_servers.sh start "$work" valkey)
valkey_pid=$(cat "$work/valkey.pid")
start_sessiond "${valkey_flag#*=}" "$work/loaded" $((requests * runs))
for r in $(seq 1 "$runs"); do
  jq ".[$(( (r - 1) * requests )):$(( r * requests ))]" \
    "$work/loaded/save_cas.json" >"$work/loaded/save_cas.run$r.json"
done
"$bin/bench/baseline_server" --listen=127.0.0.1:0 2>"$work/baseline.log" &
children+=($!)
baseline_port=$(wait_for_log_port "$work/baseline.log" $!)

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
printf '| scenario | req/s | baseline req/s | ratio | script instructions (k) | CPU µs/request: ghz | sessiond | redis-server |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for scenario in "${scenarios[@]}"; do
  config=deploy/ghz/$scenario.json
  : >"$work/rows"
  for r in $(seq 1 "$runs"); do
    data=$(data_file "$scenario" loaded)
    [[ "$scenario" == save_cas ]] && data=$work/loaded/save_cas.run$r.json
    s0=$(cpu_ticks $sessiond_pid); v0=$(cpu_ticks "$valkey_pid")
    TIMEFORMAT='%3U %3S'
    { time "$ghz" --config "$config" -D "$data" -n "$requests" -O json \
        "127.0.0.1:$port" >"$work/run.json"; } 2>"$work/ghz.time"
    s1=$(cpu_ticks $sessiond_pid); v1=$(cpu_ticks "$valkey_pid")
    require_all_ok "$scenario" "$work/run.json"
    "$ghz" --config "$config" -D "$data" -n "$requests" -O json \
      "127.0.0.1:$baseline_port" >"$work/baseline.json"
    require_all_ok "$scenario (baseline)" "$work/baseline.json"
    read -r gu gs <"$work/ghz.time"
    echo "$(jq .rps "$work/run.json") $(jq .rps "$work/baseline.json")" \
      "$(awk -v u="$gu" -v s="$gs" -v n="$requests" 'BEGIN { print (u + s) * 1e6 / n }')" \
      "$(( (s1 - s0) * 1000000 / ticks / requests ))" \
      "$(( (v1 - v0) * 1000000 / ticks / requests ))" >>"$work/rows"
  done
  col() { awk -v c="$1" '{ print $c }' "$work/rows" | median; }
  printf '| %s | %.0f | %.0f | %.2f | %d | %.0f | %.0f | %.0f |\n' \
    "$scenario" "$(col 1)" "$(col 2)" "$(awk -v a="$(col 1)" -v b="$(col 2)" 'BEGIN { print a / b }')" \
    $((instructions[$scenario] / 1000)) "$(col 3)" "$(col 4)" "$(col 5)"
done
