#!/usr/bin/env bash
# The README's first command: sets the machine up, then runs Kamailio with the push module on
# 127.0.0.1:5060 (UDP and TCP) in the foreground, logging to the terminal. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
run="$PWD/run/demo"
mkdir -p "$run"
cfg="$PWD/cfg-examples/minimal.cfg"
echo "demo: kamailio -DD -E -f $cfg   (kamcmd -s unix:$run/kamailio_ctl push.stats)"
exec kamailio -DD -E -f "$cfg" -Y "$run" -P "$run/kamailio.pid"
