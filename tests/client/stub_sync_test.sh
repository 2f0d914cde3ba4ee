#!/bin/bash
# Fails when a committed file in client/generated/ differs from what
# //proto:session_codegen generates now. Arguments: pairs of
# GENERATED COMMITTED paths, relative to the runfiles root.
set -u

if [ $# -eq 0 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "stub_sync_test: expected pairs of GENERATED COMMITTED paths" >&2
  exit 2
fi

stale=0
checked=0
while [ $# -gt 0 ]; do
  generated=$1
  committed=$2
  shift 2
  if [ "$(basename "$generated")" != "$(basename "$committed")" ]; then
    echo "stub_sync_test: mismatched pair $generated / $committed" >&2
    exit 2
  fi
  if [ ! -f "$generated" ] || [ ! -f "$committed" ]; then
    echo "STALE: $committed or $generated is missing"
    stale=1
  elif ! cmp -s "$generated" "$committed"; then
    echo "STALE: $committed differs from the output of //proto:session_codegen:"
    diff -u "$committed" "$generated" | head -n 20
    stale=1
  fi
  checked=$((checked + 1))
done

if [ "$stale" -ne 0 ]; then
  echo
  echo "The committed stub in client/generated/ is out of date. Refresh it with"
  echo "  client/update_generated.sh"
  echo "(run from the repository root) and commit the result."
  exit 1
fi
echo "OK: $checked committed files match //proto:session_codegen"
