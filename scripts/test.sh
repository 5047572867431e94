#!/usr/bin/env bash
# The README's test command. First the core crate's unit tests with Kamailio hidden
# (scripts/test-core.sh: the plain-Rust core needs no Kamailio), then the machine is set up
# (scripts/setup.sh) and every other test runs: the test kit's own and the integration tests that
# start real Kamailio instances and drive them with sipp and kamcmd; last, each fuzz target for
# 20 s (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-core.sh
./scripts/setup.sh
echo "test: cargo test --release --workspace --exclude push-core"
cargo test --release --locked --workspace --exclude push-core -- --test-threads="${TEST_THREADS:-2}"
# Each libFuzzer target briefly (README "Fuzzing"; FUZZ_SECONDS=0 skips them).
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
    ./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
