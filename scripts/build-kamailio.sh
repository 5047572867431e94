#!/usr/bin/env bash
# Builds a Kamailio from Debian's own source package into a prefix of its own, with the modules the
# tests and examples use, so that the module can be built and tested against a Kamailio other than
# the installed one.
#
#   scripts/build-kamailio.sh 6.0          # the newest 6.0.x Debian has a source package for (trixie)
#   scripts/build-kamailio.sh 6.1          # sid
#   scripts/build-kamailio.sh 6.0.1-1+deb13u1
#
# The result goes to build/kamailio/<debian version>/ (or $KAMAILIO_BUILD_CACHE/<debian version>/):
#   src/kamailio-<upstream>/   the unpacked Debian source (KAMAILIO_SRC for build.rs)
#   prefix/sbin/kamailio       the binary (KAMAILIO_BIN for build.rs and the test kit)
#   prefix/lib/kamailio/modules
#   env                        KAMAILIO_SRC=... and KAMAILIO_BIN=... lines, to source
# A second run with the same version reuses the build. The last line printed is the env file's path.
#
# Adds deb-src entries for bookworm, trixie and sid (apt only, binary packages are not affected) and
# installs the build dependencies of the modules built (bison, flex, Lua, Python, SQLite headers).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

want="${1:?usage: scripts/build-kamailio.sh <5.6|6.0|6.1|debian version>}"
cache="${KAMAILIO_BUILD_CACHE:-$root/build/kamailio}"
jobs="${JOBS:-$(nproc)}"

# The modules built: what the tests, benchmarks and cfg-examples load.
MODULES="tm tmx sl ctl pv kex corex textops siputils rr maxfwd xlog sanity cfgutils auth usrloc
  registrar htable jsonrpcs xhttp xhttp_prom dmq dmq_usrloc msilo db_sqlite app_lua app_python3"
BUILD_DEPS=(bison flex make gcc pkg-config dpkg-dev curl gpgv debian-keyring liblua5.1-0-dev python3-dev libsqlite3-dev libssl-dev)

if [ "$(id -u)" != 0 ]; then
  echo "build-kamailio: run as root (it adds deb-src entries and installs build dependencies)" >&2
  exit 1
fi

sources=/etc/apt/sources.list.d/kamailio-push-src-newer.sources
if [ ! -f "$sources" ]; then
  echo "build-kamailio: adding deb-src entries for trixie and sid ($sources)"
  cat > "$sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi

missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-kamailio: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

versions="$(apt-cache showsrc kamailio | awk '/^Version:/ {print $2}' | sort -Vr -u)"
case "$want" in
  *-*) candidates="$want" ;;
  *)
    newest="$(echo "$versions" | grep -m1 "^${want//./\\.}\." || true)"
    if [ -z "$newest" ]; then
      echo "build-kamailio: no Debian source package of kamailio $want; apt knows: $(echo $versions)" >&2
      exit 1
    fi
    # A suite's index can name a version its mirror no longer (or not yet) serves: sid listed
    # 6.1.5-1 while the pool had 6.1.4-1. Then the earlier point releases of the series are tried.
    up="${newest%%-*}"
    candidates="$newest"
    patch="${up##*.}"
    while [ "$patch" -gt 0 ]; do
      patch=$((patch - 1))
      candidates="$candidates ${up%.*}.$patch-1"
    done
    ;;
esac

pool=http://deb.debian.org/debian/pool/main/k/kamailio
keyring=/usr/share/keyrings/debian-keyring.gpg
workdir="$cache/.fetch"
fetched=""
for version in $candidates; do
  dir="$cache/$version"
  if [ -x "$dir/prefix/sbin/kamailio" ] && [ -f "$dir/.built" ] && [ -f "$dir/env" ]; then
    echo "build-kamailio: kamailio $version already built in $dir/prefix"
    echo "$dir/env"
    exit 0
  fi
  rm -rf "$workdir"
  mkdir -p "$workdir"
  cd "$workdir"
  echo "build-kamailio: fetching the source package kamailio=$version"
  # Through apt when its index names the version (some source packages list an orig.tar.gz.asc the
  # mirror does not carry; apt then reports an error after fetching everything else), else straight
  # from the pool. Either way the .dsc's signature is checked against Debian's developer keyring
  # and every file it names against its SHA-256 sum before anything is unpacked.
  apt-get source --download-only -qq "kamailio=$version" > fetch.log 2>&1 || true
  dsc="kamailio_${version#*:}.dsc"
  if [ ! -f "$dsc" ]; then
    curl -fsS -m 60 -o "$dsc" "$pool/$dsc" >> fetch.log 2>&1 || { rm -f "$dsc"; continue; }
    for f in $(awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && NF==3 {print $3}' "$dsc"); do
      curl -fsS -m 300 -o "$f" "$pool/$f" >> fetch.log 2>&1 || rm -f "$f"
    done
  fi
  fetched="$version"
  break
done
if [ -z "$fetched" ]; then
  echo "build-kamailio: none of $candidates could be fetched (see $workdir/fetch.log)" >&2
  exit 1
fi
version="$fetched"
if [ ! -f "$keyring" ]; then
  echo "build-kamailio: installing debian-keyring (to check the source package's signature)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-keyring >/dev/null
fi
gpgv --keyring "$keyring" "$dsc" > verify.log 2>&1 || { cat verify.log >&2; echo "build-kamailio: bad signature on $dsc" >&2; exit 1; }
awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && NF==3 {print $1 "  " $3}' "$dsc" |
  while read -r sum file; do
    case "$file" in *.asc) [ -f "$file" ] || continue ;; esac
    echo "$sum  $file"
  done > sums
sha256sum --quiet -c sums

upstream="${version%%-*}"
upstream="${upstream#*:}"
dir="$cache/$version"
tree="$dir/src/kamailio-$upstream"
prefix="$dir/prefix"
envfile="$dir/env"
rm -rf "$dir"
mkdir -p "$dir"
mv "$workdir" "$dir/src"
cd "$dir/src"
dpkg-source --no-check -x "$dsc" >unpack.log 2>&1 || { cat unpack.log >&2; exit 1; }
[ -f "$tree/src/core/sr_module.h" ] || { echo "build-kamailio: no $tree/src/core/sr_module.h" >&2; exit 1; }

cd "$tree"
echo "build-kamailio: building kamailio $upstream with: $(echo $MODULES)"
start=$SECONDS
# The legacy Makefile build, as Debian's own rules do for 5.6 and 6.0: `make printcdefs` (build.rs)
# reads the same flags from this tree. An empty group plus include_modules builds only these.
make cfg prefix="$prefix" LIBDIR=lib FLAVOUR=kamailio group_include="knone" \
  include_modules="$(echo $MODULES)" > "$dir/cfg.log" 2>&1 || { tail -20 "$dir/cfg.log" >&2; exit 1; }
make -j"$jobs" all > "$dir/build.log" 2>&1 || { tail -40 "$dir/build.log" >&2; exit 1; }
make install > "$dir/install.log" 2>&1 || { tail -20 "$dir/install.log" >&2; exit 1; }
for m in $MODULES; do
  [ -f "$prefix/lib/kamailio/modules/$m.so" ] || { echo "build-kamailio: module $m was not built" >&2; exit 1; }
done
printf 'KAMAILIO_SRC=%s\nKAMAILIO_BIN=%s\n' "$tree" "$prefix/sbin/kamailio" > "$envfile"
touch "$dir/.built"
echo "build-kamailio: kamailio $version built in $((SECONDS - start)) s: $("$prefix/sbin/kamailio" -v | head -1)"
echo "$envfile"
