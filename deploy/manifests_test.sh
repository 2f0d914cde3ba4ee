#!/usr/bin/env bash
# Checks the deployment files against the binary they deploy: every
# SESSIOND_* variable the Kubernetes manifest sets is one that sessiond
# reads, the manifest's policy is the example policy, and the ghz
# configurations name RPCs that the API has.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
root="$TEST_SRCDIR/sessiond"
usage=$("$root/server/sessiond" --help)

vars=$(sed -n 's/^ *- name: \(SESSIOND_[A-Z_]*\)$/\1/p' "$root/deploy/k8s/sessiond.yaml" | sort -u)
[[ -n "$vars" ]] || fail "no SESSIOND_ variables found in the manifest"
for var in $vars; do
  grep -q "($var," <<<"$usage" || fail "manifest sets $var, which sessiond does not read"
done

# The policy in the manifest's ConfigMap is the example policy, which
# //tests/auth:policy_test parses.
configmap=$(awk '/^  policy.yaml: \|$/ {on=1; next} on && /^---$/ {exit}
  on {sub(/^    /, ""); print}' "$root/deploy/k8s/sessiond.yaml")
[[ -n "$configmap" ]] || fail "no policy.yaml in the manifest's ConfigMap"
diff <(printf '%s\n' "$configmap") "$root/deploy/policy.example.yaml" >&2 ||
  fail "the manifest's policy differs from deploy/policy.example.yaml"

for config in "$root"/deploy/ghz/*.json; do
  method=$(sed -n 's/.*"call": "sessiond.v1.SessionService\/\([A-Za-z]*\)".*/\1/p' "$config")
  [[ -n "$method" ]] || fail "$config names no sessiond.v1.SessionService method"
  grep -q "rpc $method(" "$root/proto/sessiond/v1/session.proto" ||
    fail "$config calls $method, which the API does not have"
done
echo "PASS: $(wc -w <<<"$vars") variables and $(ls "$root"/deploy/ghz/*.json | wc -l) ghz configurations check out"
