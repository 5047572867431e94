#!/usr/bin/env bash
# Builds the Debian packages of kamailio-push for the Kamailio installed on this machine:
#   kamailio-push_<version>_<arch>.deb         push.so (stripped), reference (also as
#                                              /usr/share/doc/kamailio/modules/README.push.gz),
#                                              examples, changelog
#   kamailio-push-dbgsym_<version>_<arch>.deb  push.so's debug information, by build id
# <version> is <kamailio-push version>+kam<Kamailio version> (see CHANGELOG.md). The package
# depends on exactly the Debian version of kamailio it was built against.
#
# Usage: ./scripts/package.sh [--module PATH] [--out DIR]
#   --module PATH  package this already built module instead of running cargo build --release
#   --out DIR      where the .deb files go (default target/debian)
# Needs: dpkg-deb, binutils (objcopy, readelf), an installed kamailio, cargo (the text README is
# rendered from doc/push.md by crates/docgen, also with --module), and (without --module) what
# scripts/setup.sh sets up for a build.
set -euo pipefail
cd "$(dirname "$0")/.."

module=""
out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --module) module=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "package: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done

kamailio_deb=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) || {
  echo "package: the kamailio package is not installed: the module is built for the installed Kamailio" >&2
  exit 1
}
kamailio_upstream=$(kamailio -v | sed -n 's/^version: kamailio \([0-9][0-9.]*\).*/\1/p')
push_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
version="${push_version}+kam${kamailio_upstream}"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
moddir="usr/lib/$multiarch/kamailio/modules"

if [ -z "$module" ]; then
  echo "package: cargo build --release --locked"
  cargo build --release --locked
  module=target/release/libkamailio_push.so
fi
[ -f "$module" ] || { echo "package: no module at $module" >&2; exit 1; }

build_id=$(readelf -n "$module" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
[ -n "$build_id" ] || { echo "package: $module has no build id" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
main="$work/kamailio-push"
dbg="$work/kamailio-push-dbgsym"

# The module, stripped, with a link to its debug file; the debug file under its build id.
install -d "$main/$moddir" "$dbg/usr/lib/debug/.build-id/${build_id:0:2}"
debug_file="$dbg/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug"
objcopy --only-keep-debug --compress-debug-sections "$module" "$debug_file"
objcopy --strip-debug --strip-unneeded --remove-section=.comment \
  --add-gnu-debuglink="$debug_file" "$module" "$main/$moddir/push.so"
chmod 0644 "$main/$moddir/push.so" "$debug_file"

# Documentation: the reference, the examples, the changelogs, the copyright file.
doc="$main/usr/share/doc/kamailio-push"
install -d "$doc/examples" "$dbg/usr/share/doc/kamailio-push-dbgsym"
install -m 0644 doc/push.md README.md CHANGELOG.md "$doc/"
# The reference as operators find Kamailio's own: plain text in Kamailio's README layout, rendered
# from doc/push.md (push-docgen), next to README.tsilo.gz and the others, as Debian's
# kamailio-*-modules packages install theirs; kamailio-push's own doc directory links to it.
kamdoc="$main/usr/share/doc/kamailio/modules"
install -d "$kamdoc"
echo "package: rendering doc/push.md as README.push (cargo run -p push-docgen)"
cargo run --quiet --locked -p push-docgen -- doc/push.md -o "$work/README.push"
grep -q "^3\. Parameters$" "$work/README.push" || { echo "package: README.push has no parameter section" >&2; exit 1; }
gzip -9n < "$work/README.push" > "$kamdoc/README.push.gz"
chmod 0644 "$kamdoc/README.push.gz"
ln -s ../kamailio/modules/README.push.gz "$doc/README.push.gz"
install -m 0644 cfg-examples/* "$doc/examples/"
install -m 0644 packaging/debian/copyright "$doc/copyright"
install -m 0644 packaging/debian/copyright "$dbg/usr/share/doc/kamailio-push-dbgsym/copyright"
date=$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
for d in "$doc" "$dbg/usr/share/doc/kamailio-push-dbgsym"; do
  {
    echo "kamailio-push ($version) unstable; urgency=medium"
    echo
    echo "  * kamailio-push $push_version built for Kamailio $kamailio_deb (see CHANGELOG.md)."
    echo
    echo " -- kamailio-push developers <kamailio-push@localhost>  $date"
  } | gzip -9n > "$d/changelog.Debian.gz"
done

# The device store's directory for the kamailio user (postinst makes it without systemd too).
install -d "$main/usr/lib/tmpfiles.d"
install -m 0644 packaging/debian/tmpfiles.conf "$main/usr/lib/tmpfiles.d/kamailio-push.conf"

install -d "$main/DEBIAN" "$dbg/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/postrm "$main/DEBIAN/"
control() { # template package-dir
  local size
  size=$(du -sk --exclude=DEBIAN "$2" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@KAMAILIO_VERSION@/$kamailio_deb/" \
    -e "s/@SIZE@/$size/" -e "s/@BUILD_ID@/$build_id/" "$1" > "$2/DEBIAN/control"
}
control packaging/debian/control.in "$main"
control packaging/debian/control-dbgsym.in "$dbg"
(cd "$main" && find usr -type f -printf '%P\n' | sort | while read -r f; do md5sum "usr/$f"; done) > "$main/DEBIAN/md5sums"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$main" "$out/kamailio-push_${version}_${arch}.deb" >/dev/null
dpkg-deb --root-owner-group -Zgzip --build "$dbg" "$out/kamailio-push-dbgsym_${version}_${arch}.deb" >/dev/null
echo "package: $out/kamailio-push_${version}_${arch}.deb (Depends: kamailio (= $kamailio_deb))"
echo "package: $out/kamailio-push-dbgsym_${version}_${arch}.deb"
