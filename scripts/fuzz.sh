#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ (cargo-fuzz) for SECONDS each (default 60):
#   contact   a Contact header value / URI through both parsers, push parameters, UA profiles
#   frame     bytes from the dispatcher's queue through the frame decoder
#   rpc_args  push.* RPC arguments through their checker
# ./scripts/fuzz.sh 3600   # an hour each
# Installs cargo-fuzz first if missing (`cargo install cargo-fuzz --locked`). cargo-fuzz passes
# nightly-only flags to rustc (-Zsanitizer=address and friends); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets rustc accept them (nothing else changes). A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run: turn it into a unit test next to the code it broke.
# The corpus grows in fuzz/corpus/<target>/ (not committed), seeded from fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Optimised, AddressSanitizer by default (FUZZ_SANITIZER=none builds much faster: the parsers are
# safe Rust, and SQLite, which push-core links, is then compiled without ASan).
flags=(-O --sanitizer "${FUZZ_SANITIZER:-address}")
targets=(contact frame rpc_args)
echo "fuzz: building ${targets[*]} (${flags[*]})"
cargo fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds}s"
    cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 |
        grep -E "^(#[0-9]+.*DONE|==[0-9]+==|stat::number_of_executed_units|SUMMARY|Done|INFO: seed)|panicked|Failing input|artifact" || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "fuzz: $target found a failing input: fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz: no failure"
