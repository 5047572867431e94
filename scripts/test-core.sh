#!/usr/bin/env bash
# Runs the core crate's tests (crates/core, package push-core) the way a contributor without
# Kamailio would: inside a private mount namespace where Kamailio's binary, modules and config,
# the fetched Kamailio sources (kamailio-headers/src) and libclang are hidden. Proves that the
# plain-Rust core builds and tests without any of them. Needs root (unshare) and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  exec unshare --mount --propagation private "$0" --inside
fi

hide_dir() { [ -d "$1" ] && mount -t tmpfs -o ro,size=4k none "$1"; return 0; }
hide_file() { [ -e "$1" ] && mount --bind /dev/null "$1"; return 0; }

hide_dir kamailio-headers/src
hide_dir /usr/lib/x86_64-linux-gnu/kamailio
hide_dir /etc/kamailio
for d in /usr/lib/llvm-*; do hide_dir "$d"; done
for f in /usr/sbin/kamailio /usr/sbin/kamcmd /usr/sbin/kamctl; do hide_file "$f"; done

if command -v kamailio >/dev/null && kamailio -v >/dev/null 2>&1; then
  echo "test-core: kamailio still runs inside the namespace" >&2
  exit 1
fi
echo "test-core: Kamailio, its sources and libclang hidden; cargo test in crates/core"
cd crates/core
cargo test --release --locked -- --test-threads="${TEST_THREADS:-2}"
