#!/usr/bin/env bash
# Drives every RPC of the running default server (SQLite, encrypted) with
# grpcurl, an independent client that learns the API through reflection.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }

grpcurl=${SESSIOND_GRPCURL:-}
[[ -n "$grpcurl" && -x "$grpcurl" ]] ||
  fail "grpcurl not found (SESSIOND_GRPCURL='$grpcurl'); run tools/install_deps.sh --test"
sessiond="$TEST_SRCDIR/sessiond/server/sessiond"
dir="$TEST_TMPDIR/grpcurl"
mkdir -p "$dir"

"$sessiond" --listen=127.0.0.1:0 --db_path="$dir/sessions.db" \
  --key_files="$dir/sessiond.key" --create_key_if_missing 2>"$dir/log" &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$dir/log" | head -n1)
  [[ -n "$port" ]] && break
  kill -0 $pid 2>/dev/null || fail "sessiond exited: $(cat "$dir/log")"
  sleep 0.1
done
[[ -n "$port" ]] || fail "sessiond did not start: $(cat "$dir/log")"
addr="127.0.0.1:$port"

rpc() { "$grpcurl" -plaintext -max-time 5 -d "$2" "$addr" "sessiond.v1.SessionService/$1"; }
field() { sed -n "s/.*\"$1\": \"\\{0,1\\}\\([^\",]*\\)\"\\{0,1\\}.*/\\1/p" | head -n1; }
expect() { grep -q -- "$2" <<<"$1" || fail "expected '$2' in: $1"; }

services=$("$grpcurl" -plaintext -max-time 5 "$addr" list)
expect "$services" "sessiond.v1.SessionService"
expect "$services" "grpc.health.v1.Health"
expect "$services" "grpc.reflection.v1alpha.ServerReflection"

health=$("$grpcurl" -plaintext -max-time 5 "$addr" grpc.health.v1.Health/Check)
expect "$health" '"status": "SERVING"'

# Save (create): data is base64 in JSON ("hello").
created=$(rpc Save '{"data": "aGVsbG8=", "metadata": {"ip": "192.0.2.1"}}')
expect "$created" '"created": true'
token=$(field token <<<"$created")
id=$(field id <<<"$created")
[[ ${#token} -eq 66 ]] || fail "token of unexpected length: ${#token}"
[[ "${token:0:22}" == "$id" ]] || fail "token does not start with the session id"
[[ ${#id} -eq 22 ]] || fail "id of unexpected length: ${#id}"

loaded=$(rpc Load "{\"token\": \"$token\", \"touch\": true}")
expect "$loaded" '"data": "aGVsbG8="'
expect "$loaded" '"ip": "192.0.2.1"'

# Save (update) with compare-and-set: version 1 matches once, then not.
updated=$(rpc Save "{\"token\": \"$token\", \"data\": \"d29ybGQ=\", \"expected_version\": 1}")
expect "$updated" '"version": "2"'
if stale=$(rpc Save "{\"token\": \"$token\", \"data\": \"eA==\", \"expected_version\": 1}" 2>&1); then
  fail "stale compare-and-set succeeded: $stale"
fi
expect "$stale" "Aborted"

cycled=$(rpc Cycle "{\"token\": \"$token\", \"user_id\": \"alice\"}")
new_token=$(field token <<<"$cycled")
[[ -n "$new_token" && "$new_token" != "$token" ]] || fail "cycle kept the token"
if gone=$(rpc Load "{\"token\": \"$token\"}" 2>&1); then
  fail "old token still loads after Cycle: $gone"
fi
expect "$gone" "NotFound"

listed=$(rpc ListForUser '{"user_id": "alice"}')
expect "$listed" "\"id\": \"$id\""
grep -q "$new_token" <<<"$listed" && fail "ListForUser returned a token"

if bad=$(rpc Load '{"token": "nope"}' 2>&1); then fail "malformed token accepted"; fi
expect "$bad" "InvalidArgument"
expect "$bad" "token"

pruned=$(rpc Prune '{}')
[[ "$pruned" == "{}" || "$pruned" == *'"pruned"'* ]] || fail "prune: $pruned"

health=$(rpc Health '{}')
expect "$health" '"serving": true'
expect "$health" '"backend": "sqlite"'

deleted=$(rpc Delete "{\"id\": \"$id\"}")
expect "$deleted" '"deleted": "1"'
if gone=$(rpc Load "{\"token\": \"$new_token\"}" 2>&1); then
  fail "deleted session still loads: $gone"
fi

kill -TERM $pid
wait $pid || fail "sessiond exited non-zero after SIGTERM"
grep -q -- "$new_token" "$dir/log" && fail "a token reached the log"
echo "PASS: every RPC through grpcurl and reflection"
