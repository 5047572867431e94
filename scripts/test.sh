#!/usr/bin/env bash
# The README's test command: sets the machine up (scripts/setup.sh) and runs every test: unit tests
# and the integration tests that start real Kamailio instances and drive them with sipp and kamcmd.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "test: cargo test --release --workspace"
cargo test --release --locked --workspace -- --test-threads="${TEST_THREADS:-2}"
