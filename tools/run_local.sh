#!/usr/bin/env bash
# Installs what is missing, builds sessiond and runs it on its embedded
# default backend (SQLite, ./sessiond.db), listening on 127.0.0.1:50051.
# On the first run it creates an encryption key, ./sessiond.key (mode 0600).
# Extra arguments are passed to sessiond (a later flag wins), e.g.
# --policy_file=deploy/policy.example.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh
bazel build -c opt //server:sessiond //client:sessionctl
exec bazel-bin/server/sessiond \
  --backend=sqlite \
  --db_path=./sessiond.db \
  --key_files=./sessiond.key \
  --create_key_if_missing \
  --listen=127.0.0.1:50051 \
  "$@"
