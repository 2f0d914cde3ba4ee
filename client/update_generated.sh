#!/bin/sh
# Refreshes client/generated/ (the committed copy of the generated C++ stub)
# from the //proto:session_codegen genrule. Run it after editing the proto;
# //tests/client:stub_sync_test fails until you do.
#
#   client/update_generated.sh
set -eu

cd "$(dirname "$0")/.."
bazel build //proto:session_codegen
bin="$(bazel info bazel-bin)"
for f in session.pb.h session.pb.cc session.grpc.pb.h session.grpc.pb.cc; do
  # cp, not install: the genrule output is read-only; the copy must be
  # writable and byte-identical.
  cp "$bin/proto/sessiond/v1/$f" "client/generated/sessiond/v1/$f"
  chmod 0644 "client/generated/sessiond/v1/$f"
  echo "updated client/generated/sessiond/v1/$f"
done
