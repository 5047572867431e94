#!/usr/bin/env bash
# Sets up a Debian bookworm machine for building and testing kamailio-push: Debian packages
# (kamailio, sipp, libclang for bindgen), the deb-src entry and Kamailio's sources (for headers and
# build flags), then builds the module (target/release/libkamailio_push.so). It installs nothing
# into Kamailio's module directory: operators install the package (scripts/package.sh). Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(kamailio binutils python3-prometheus-client kamailio-lua-modules kamailio-python3-modules kamailio-utils-modules kamailio-sqlite-modules kamailio-postgres-modules sqlite3 sip-tester libclang-dev dpkg-dev make gcc pkg-config ca-certificates python3 bc openssl iproute2 util-linux postgresql)
MODULE_DIR=/usr/lib/x86_64-linux-gnu/kamailio/modules
# postgresql: the binaries (/usr/lib/postgresql/<version>/bin: initdb, pg_ctl, postgres, psql) the
# shared device store's tests run their own server with (crates/testkit/src/postgres.rs: own data
# directory, port and socket, as user postgres). Debian's stock cluster and its service are not
# used; whether they run or not makes no difference.

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs Debian packages)" >&2
  exit 1
fi

# deb-src for bookworm, so that `apt-get source kamailio` finds the sources of the installed binary.
if ! grep -rqs "^Types:.*deb-src" /etc/apt/sources.list.d/ && ! grep -qs "^deb-src" /etc/apt/sources.list; then
  echo "setup: adding a deb-src entry for bookworm"
  cat > /etc/apt/sources.list.d/kamailio-push-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
echo "setup: apt-get update"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

./kamailio-headers/fetch-sources.sh
echo "setup: building the module (cargo build --release)"
cargo build --release --locked
# Earlier versions of this script copied the module into Kamailio's module directory, which dpkg
# owns; take such a copy away again unless a package installed it.
if [ -f "$MODULE_DIR/push.so" ] && ! dpkg -S "$MODULE_DIR/push.so" >/dev/null 2>&1; then
  echo "setup: removing $MODULE_DIR/push.so left by an earlier setup (install the package instead)"
  rm -f "$MODULE_DIR/push.so"
fi
echo "setup: built target/release/libkamailio_push.so"
