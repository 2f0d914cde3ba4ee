#!/usr/bin/env bash
# Starts and stops the database servers the load tests run sessiond against:
# a PostgreSQL 15 (as the postgres user, which it requires) and a
# redis-server 7 (Valkey-compatible), each on a free loopback port with its
# data in a temporary directory.
#
#   bench/external_servers.sh start WORK postgres|valkey  prints sessiond flags
#   bench/external_servers.sh stop WORK [postgres|valkey]
set -euo pipefail

cmd=$1
work=$2
which=${3:-all}
pg_bin=/usr/lib/postgresql/15/bin

source "$(dirname "$0")/lib.sh"

start_postgres() {
  local dir port
  # Not under $work: the postgres user must be able to reach it.
  dir=$(mktemp -d /tmp/sessiond-bench-pg.XXXXXX)
  chmod 755 "$dir"
  chown postgres: "$dir"
  echo "$dir" >"$work/postgres.dir"
  port=$(free_port)
  runuser -u postgres -- "$pg_bin/initdb" -D "$dir/data" --auth=trust \
    -U postgres >"$work/postgres-initdb.log" 2>&1
  runuser -u postgres -- "$pg_bin/postgres" -D "$dir/data" -p "$port" \
    -k "$dir" -c listen_addresses=127.0.0.1 -c max_connections=200 \
    >"$work/postgres.log" 2>&1 &
  echo $! >"$work/postgres.pid"
  for _ in $(seq 1 100); do
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  runuser -u postgres -- "$pg_bin/createdb" -h 127.0.0.1 -p "$port" sessiond
  echo "--postgres_dsn=host=127.0.0.1 port=$port dbname=sessiond user=postgres"
}

start_valkey() {
  local dir port
  dir="$work/valkey"
  mkdir -p "$dir"
  port=$(free_port)
  # appendfsync everysec: the usual production setting (at most one second of
  # acknowledged writes lost if the server host crashes).
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" \
    --appendonly yes --appendfsync everysec >"$work/valkey.log" 2>&1 &
  echo $! >"$work/valkey.pid"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "--valkey_address=127.0.0.1:$port"
}

stop_one() {
  local name=$1
  if [[ -f "$work/$name.pid" ]]; then
    kill -INT "$(cat "$work/$name.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$(cat "$work/$name.pid")" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$work/$name.pid"
  fi
  if [[ -f "$work/$name.dir" ]]; then
    rm -rf "$(cat "$work/$name.dir")"
    rm -f "$work/$name.dir"
  fi
}

case "$cmd" in
  start)
    case "$which" in
      postgres) start_postgres ;;
      valkey) start_valkey ;;
      *) echo "start: postgres or valkey" >&2; exit 2 ;;
    esac ;;
  stop)
    if [[ "$which" == all ]]; then
      stop_one postgres
      stop_one valkey
    else
      stop_one "$which"
    fi ;;
  *) echo "usage: $0 start|stop WORK [postgres|valkey]" >&2; exit 2 ;;
esac
