#!/usr/bin/env bash
# Runs the integration tests against a Kamailio built from Debian's source package
# (scripts/build-kamailio.sh) instead of the installed one:
#
#   scripts/test-kamailio.sh 6.0                          # every integration test
#   scripts/test-kamailio.sh 6.0 wake_call apns_fcm rpc   # these test files (tests/<name>.rs)
#
# The module is built against that tree's headers (KAMAILIO_SRC) and checked against its binary
# (KAMAILIO_BIN); the test kit then starts that binary with that build's modules and kamcmd. Only
# the module crate is rebuilt, in the usual target directory, and at the end it is built again for
# the installed Kamailio (skip that with RESTORE_MODULE=0). Run scripts/setup.sh first (sipp,
# libclang, the toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
series="${1:?usage: scripts/test-kamailio.sh <5.6|6.0|6.1|debian version> [test file ...]}"
shift
restore() {
  if [ "${RESTORE_MODULE:-1}" = 1 ]; then
    echo "test-kamailio: building the module for the installed Kamailio again"
    env -u KAMAILIO_SRC -u KAMAILIO_BIN cargo build --release --locked
  fi
}
trap restore EXIT
# The build's lines go to stderr through a pipe: `tee /dev/stderr` would reopen a log file that
# stderr points to with O_TRUNC and wipe everything the run had written before (CI logs full of NULs).
envfile="$(./scripts/build-kamailio.sh "$series" | tee >(cat >&2) | tail -1)"
set -a
# shellcheck disable=SC1090
. "$envfile"
set +a
"$KAMAILIO_BIN" -v | head -1
args=()
for t in "$@"; do args+=(--test "$t"); done
[ ${#args[@]} -gt 0 ] || args=(--workspace --exclude push-core)
# `cargo test` does not rebuild the cdylib itself: build it first.
cargo build --release --locked
echo "test-kamailio: cargo test --release ${args[*]} against $KAMAILIO_BIN"
cargo test --release --locked "${args[@]}" -- --test-threads="${TEST_THREADS:-2}"
