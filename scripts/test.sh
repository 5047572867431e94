#!/usr/bin/env bash
# The README's test command. First the core crate's unit tests with Kamailio hidden
# (scripts/test-core.sh: the plain-Rust core needs no Kamailio), then the machine is set up
# (scripts/setup.sh) and every other test runs: the test kit's own and the integration tests that
# start real Kamailio instances and drive them with sipp and kamcmd; then each fuzz target for
# 20 s (scripts/fuzz.sh). Then the same integration tests run against Kamailio 6.0 (trixie's, the
# current Debian stable) and the wake-up, RPC, loading and cluster tests against 6.1 (sid's), each
# built from Debian's source package (scripts/test-kamailio.sh). KAMAILIO_SERIES="6.0" (or "")
# narrows the extra runs, FUZZ_SECONDS=0 skips the fuzzing; each part prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
part() { echo "test: $1 took $(( SECONDS - $2 )) s"; }

t=$SECONDS
./scripts/test-core.sh
part "core (Kamailio hidden)" $t

t=$SECONDS
./scripts/setup.sh
part "setup" $t

# The core's tests that need a PostgreSQL server (they skip without one, and setup.sh installs
# it after test-core.sh ran): the refresh claims racing between nodes.
t=$SECONDS
(cd crates/core && cargo test --release --locked --lib devices::postgres -- --test-threads="${TEST_THREADS:-2}")
part "core tests with PostgreSQL" $t

t=$SECONDS
echo "test: cargo test --release --workspace --exclude push-core (installed Kamailio)"
cargo test --release --locked --workspace --exclude push-core -- --test-threads="${TEST_THREADS:-2}"
part "integration tests on the installed Kamailio" $t

# Each libFuzzer target briefly (README "Fuzzing"). Without AddressSanitizer by default: the
# parsers are safe Rust, and an ASan build of push-core's dependencies (SQLite among them) takes
# far longer than CI's budget allows; `FUZZ_SANITIZER=address ./scripts/fuzz.sh 600` for long runs.
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  t=$SECONDS
  FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}" ./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
  part "fuzzing" $t
fi

# The module is built for the installed Kamailio again after the last of these runs only.
series_list=(${KAMAILIO_SERIES-6.0 6.1})
for i in "${!series_list[@]}"; do
  series="${series_list[$i]}"
  restore=0
  [ "$i" = $(( ${#series_list[@]} - 1 )) ] && restore=1
  t=$SECONDS
  case "$series" in
    6.0) RESTORE_MODULE=$restore ./scripts/test-kamailio.sh 6.0 ;;
    *) RESTORE_MODULE=$restore ./scripts/test-kamailio.sh "$series" module_loading wake_call rpc metrics cluster cluster3 ;;
  esac
  part "integration tests on Kamailio $series" $t
done
