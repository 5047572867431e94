#!/usr/bin/env bash
# Fetches the Kamailio sources that match the installed kamailio binary (Debian source package) into
# kamailio-headers/src/. Nothing of Kamailio's own code is committed: build.rs reads the headers and the
# build flags from this tree. Needs a deb-src entry for bookworm (scripts/setup.sh adds one) and dpkg-dev.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/src"

version="$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null || true)"
if [ -z "$version" ]; then
  echo "fetch-sources: the kamailio package is not installed (apt-get install kamailio)" >&2
  exit 1
fi
upstream="${version%%-*}"
tree="$dest/kamailio-$upstream"
stamp="$dest/.fetched-$version"
if [ -f "$stamp" ] && [ -f "$tree/src/core/sr_module.h" ]; then
  echo "fetch-sources: kamailio $version sources already in $tree"
  exit 0
fi
rm -rf "$dest"
mkdir -p "$dest"
cd "$dest"
if ! apt-get source -qq "kamailio=$version" >/dev/null 2>apt-source.log; then
  cat apt-source.log >&2
  echo "fetch-sources: 'apt-get source kamailio=$version' failed: is there a deb-src entry (scripts/setup.sh adds one) and has 'apt-get update' run since?" >&2
  exit 1
fi
[ -f "$tree/src/core/sr_module.h" ] || { echo "fetch-sources: unexpected layout, no $tree/src/core/sr_module.h" >&2; exit 1; }
touch "$stamp"
echo "fetch-sources: kamailio $version sources in $tree"
