#!/usr/bin/env python3
"""The demo's push service and phone: an HTTP endpoint that receives the module's webhook pushes,
checks their HMAC signature, prints them, and wakes the (sipp-simulated) phone, which registers
again and answers the call whose Call-ID the push names."""
import hashlib
import hmac
import http.server
import json
import subprocess
import sys
import threading

port, secret, wake_cmd = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3:]


class Endpoint(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        sig = self.headers.get("X-Push-Signature", "")
        good = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig, good):
            print("push endpoint: bad signature, refused", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        push = json.loads(body)
        if push.get("type") != "call":
            # A message, an end-of-call ("cancel", with its reason), a refresh or a test push:
            # a phone would show it or stop ringing; the demo only answers calls.
            print(f"push endpoint: {push.get('type')} push for {push['callee_aor']} "
                  f"(call {push['call_id']}, reason {push.get('reason', '-')}), signature ok",
                  flush=True)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        print(f"push endpoint: push for {push['callee_aor']} (call {push['call_id']} from "
              f"{push['caller_name']} <{push['caller_uri']}>), token {push['token'][:8]}..., "
              "signature ok: waking the phone", flush=True)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        cmd = [a.replace("{call_id}", push["call_id"]) for a in wake_cmd]
        threading.Thread(target=lambda: print(
            "phone: " + ("woke, registered, answered the call" if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
                         else "FAILED to take the call"), flush=True)).start()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Endpoint).serve_forever()
