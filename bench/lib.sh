# Helpers shared by the bench scripts (run_ghz.sh, valkey_profile.sh,
# external_servers.sh); meant to be sourced, not run.

# Prints a TCP port on loopback that nothing listens on.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 20000))
    if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Prints the port a server wrote to its log as "(port N)", waiting for it;
# fails, showing the log, if the server exits first.
wait_for_log_port() {  # log_file pid
  local port
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$1" | head -n1)
    [[ -n "$port" ]] && { echo "$port"; return 0; }
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; return 1; }
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

# Fails, naming the run, if ghz's JSON output counts any status but OK.
require_all_ok() {  # name ghz_json
  local bad
  bad=$(jq '[.statusCodeDistribution | to_entries[] | select(.key != "OK") | .value] | add // 0' "$2")
  if [[ "$bad" != "0" ]]; then
    echo "FAILED: $1 had $bad requests that did not return OK:" >&2
    jq -c '.statusCodeDistribution, .errorDistribution' "$2" >&2
    return 1
  fi
}

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Sets bin (a tree holding server/sessiond, bench/baseline_server and
# bench/seed_sessions) and ghz: the ones given, or else installs ghz if
# missing and builds with -c opt.
find_binaries() {  # bin_dir_or_empty ghz_or_empty
  bin=$1
  ghz=$2
  if [[ -z "$bin" ]]; then
    tools/install_deps.sh --bench
    bazel build -c opt //server:sessiond //bench:baseline_server \
      //bench:seed_sessions
    bin=$(bazel info -c opt bazel-bin)
  fi
  [[ -n "$ghz" ]] || ghz=$(command -v ghz || echo /usr/local/bin/ghz)
  [[ -x "$ghz" ]] || { echo "ghz not found: run tools/install_deps.sh --bench" >&2; exit 1; }
}

# Makes a scratch directory, $work. On exit: kills the processes listed in
# $children, stops the database servers started in $work, removes it.
make_work_dir() {
  work=$(mktemp -d)
  children=()
  trap remove_work_dir EXIT
}
remove_work_dir() {
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bench/external_servers.sh stop "$work" 2>/dev/null || true
  rm -rf "$work"
}
