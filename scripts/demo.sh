#!/usr/bin/env bash
# The README's first command: sets the machine up, then demonstrates the module end to end on
# 127.0.0.1:5060 (UDP): Kamailio with push.so and cfg-examples/push-registrar.cfg; a phone (sipp)
# registers with RFC 8599 push parameters and falls asleep (its binding expires); a caller (sipp)
# calls it; the module holds the INVITE and pushes through the webhook (scripts/demo_push_endpoint.py,
# which checks the signature and wakes the phone); the phone registers again, gets the call after
# its 200 OK, answers; the caller hangs up. Everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

run="$PWD/run/demo"
rm -rf "$run"
mkdir -p "$run"
sip=5060
push_port=8090
secret=change-me
ctl="unix:$run/kamailio_ctl"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

phone_keys=(-key user alice -key token 5a1e0c4fd9b2a7e6c3b8f0e1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f
  -key pnparam ABCDE12345.org.example.phone.voip -key provider apns
  -key instance 6f1c2d3e-0000-4000-8000-00000000a11c)

# push.so is the module just built (an operator installs the package: scripts/package.sh).
mkdir -p "$run/modules"
ln -sf "$PWD/target/release/libkamailio_push.so" "$run/modules/push.so"
echo "demo: starting Kamailio with push.so on 127.0.0.1:$sip (log: $run/kamailio.log)"
kamailio -DD -E -f cfg-examples/push-registrar.cfg -L "$run/modules:/usr/lib/x86_64-linux-gnu/kamailio/modules" \
  -Y "$run" -P "$run/kamailio.pid" \
  -A "PUSH_DB=\"sqlite://$run/push.sqlite\"" -A MIN_EXPIRES=1 -A PUSH_TIMEOUT=20 \
  >"$run/kamailio.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do kamcmd -s "$ctl" core.version >/dev/null 2>&1 && break; sleep 0.1; done
kamcmd -s "$ctl" core.psx | grep -B1 "push dispatcher" | sed 's/^/demo: /'

echo "demo: push endpoint on 127.0.0.1:$push_port"
python3 scripts/demo_push_endpoint.py "$push_port" "$secret" \
  sipp "127.0.0.1:$sip" -sf tests/sipp/device_wake.xml -i 127.0.0.1 -p 5072 -m 1 -nostdin \
  -timeout 30s -timeout_error -cid_str "{call_id}" "${phone_keys[@]}" -key expires 3600 -key contact_port 5072 \
  >"$run/endpoint.log" 2>&1 &
pids+=($!)
sleep 0.5

echo "demo: the phone registers with push parameters (1 s binding), then sleeps"
(cd "$run" && sipp "127.0.0.1:$sip" -sf ../../tests/sipp/device_register.xml -i 127.0.0.1 -p 5071 -m 1 \
  -nostdin -timeout 10s -timeout_error "${phone_keys[@]}" -key expires 1 -key contact_port 5071 >/dev/null 2>&1)
kamcmd -s "$ctl" push.devices alice | sed 's/^/demo:   /'
sleep 2

echo "demo: Bob calls alice, whose phone sleeps"
start=$(date +%s.%N)
if (cd "$run" && sipp "127.0.0.1:$sip" -sf ../../tests/sipp/caller.xml -i 127.0.0.1 -p 5073 -m 1 -nostdin \
    -timeout 30s -timeout_error -key user alice -cid_str "demo-call-%u" >/dev/null 2>&1); then
  result=0
  echo "demo: the call was answered by the woken phone and hung up ($(printf '%.2f' "$(echo "$(date +%s.%N) - $start" | bc)") s)"
else
  result=1
  echo "demo: the call FAILED"
fi
sleep 0.3
sed 's/^/demo: /' "$run/endpoint.log"
echo "demo: what the module logged:"
grep "push: " "$run/kamailio.log" | sed 's/^/demo:   /'
echo "demo: (what each line means, and how to follow a call: doc/push.md, \"Frequently Asked Questions\";"
echo "demo:  installed as /usr/share/doc/kamailio/modules/README.push.gz by the package)"
echo "demo: kamcmd push.stats:"
kamcmd -s "$ctl" push.stats | sed 's/^/demo:   /'
exit $result
