//! The product's core flow against real Kamailio: a caller calls a user whose only device sleeps;
//! the module holds the call, pushes through the webhook, the device registers again, and the call
//! is delivered after the REGISTER's 200, answered and hung up.

mod common;

use common::push_server::{PushServer, Request};
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::mpsc;
use std::time::Duration;

const APP: &str = "org.example.phone";
const SECRET: &str = "s3cret";

/// A Kamailio running cfg-examples/push-registrar.cfg against a push server.
fn registrar(name: &str, push_url: &str, timeout: u32) -> Kamailio {
    let setup = Setup::new(name);
    let db = format!("\"sqlite://{}/push.sqlite\"", setup.dir.display());
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    let timeout = timeout.to_string();
    Kamailio::start_example(
        setup,
        "push-registrar.cfg",
        &[
            ("PUSH_DB", db.as_str()),
            ("PUSH_APP", app.as_str()),
            ("MIN_EXPIRES", "1"),
            ("PUSH_TIMEOUT", timeout.as_str()),
        ],
    )
}

fn transport_args(transport: &str) -> Vec<&'static str> {
    match transport {
        "tcp" => vec!["-t", "t1"],
        _ => vec!["-t", "u1"],
    }
}

struct Phone {
    user: String,
    token: String,
    instance: String,
    transport: &'static str,
}

impl Phone {
    fn new(user: &str, token: &str, transport: &'static str) -> Phone {
        Phone {
            user: user.into(),
            token: token.into(),
            instance: format!(
                "00000000-0000-4000-8000-{:0>12}",
                token.len() * 7 + user.len()
            ),
            transport,
        }
    }

    fn keys(&self, expires: u32) -> Vec<String> {
        let mut v: Vec<String> = transport_args(self.transport)
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (k, val) in [
            ("user", self.user.clone()),
            ("token", self.token.clone()),
            ("pnparam", format!("ABCDE12345.{APP}.voip")),
            ("provider", "apns".to_string()),
            ("instance", self.instance.clone()),
            ("expires", expires.to_string()),
        ] {
            v.push("-key".into());
            v.push(k.into());
            v.push(val);
        }
        v
    }

    /// Registers with push parameters and a 1 s binding, waits until the module stored the device
    /// and the binding expired: the phone now sleeps.
    fn register_then_sleep(&self, k: &Kamailio) {
        let keys = self.keys(1);
        let args: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (ok, out) = Sipp::spawn("device_register.xml", k.sip_port(), &args, &k.setup.dir)
            .wait(Duration::from_secs(20));
        assert!(ok, "device registration failed:\n{out}");
        let short = &self.token[..6];
        assert!(
            eventually(Duration::from_secs(5), || k
                .kamcmd(&["push.devices", &self.user])
                .map(|o| o.contains(short))
                .unwrap_or(false)),
            "device not stored: {:?}",
            k.kamcmd(&["push.devices", &self.user])
        );
        std::thread::sleep(Duration::from_millis(1500));
    }

    /// Starts the woken phone: REGISTER, then expects the INVITE on `call_id` and answers it.
    fn wake(&self, k: &Kamailio, call_id: &str) -> Sipp {
        let keys = self.keys(3600);
        let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
        args.extend(["-cid_str", call_id]);
        Sipp::spawn("device_wake.xml", k.sip_port(), &args, &k.setup.dir)
    }
}

fn caller(k: &Kamailio, user: &str, transport: &str, call_id: &str) -> Sipp {
    let mut args = transport_args(transport);
    args.extend(["-key", "user", user, "-cid_str", call_id]);
    Sipp::spawn("caller.xml", k.sip_port(), &args, &k.setup.dir)
}

fn verify_signature(req: &Request) {
    let header = req.header("X-Push-Signature").expect("no signature header");
    let hex_sig = header
        .strip_prefix("sha256=")
        .expect("signature without sha256=");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(req.body.as_bytes());
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("bad HMAC signature");
}

fn stat(k: &Kamailio, name: &str) -> u64 {
    field(&k.kamcmd(&["push.stats"]).unwrap(), name)
        .unwrap()
        .parse()
        .unwrap()
}

fn wake_call(transport: &'static str) {
    let (tx, rx) = mpsc::channel::<Request>();
    let tx = std::sync::Mutex::new(tx);
    let server = PushServer::ok(Some(Box::new(move |req| {
        let _ = tx.lock().unwrap().send(req.clone());
    })));
    let k = registrar(&format!("wake-{transport}"), &server.url(), 20);
    let phone = Phone::new(
        "alice",
        "f00dfeed0123456789abcdef0123456789abcdef0123456789abcdef01234567",
        transport,
    );
    phone.register_then_sleep(&k);

    let call_id = format!("wake-{transport}-%u");
    let call = caller(&k, "alice", transport, &call_id);
    let push = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no push arrived");
    // The call is held while the phone sleeps.
    let pending = k.kamcmd(&["push.pending"]).unwrap();
    assert!(
        pending.contains(&format!("wake-{transport}-1")),
        "{pending}"
    );
    let device = phone.wake(&k, &call_id);

    let (ok, out) = device.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the woken device did not get the call after its 200 OK:\n{out}"
    );
    let (ok, out) = call.wait(Duration::from_secs(30));
    assert!(ok, "the caller's call was not answered:\n{out}");

    // What the push endpoint received.
    assert_eq!(push.path, "/push");
    verify_signature(&push);
    let body = push.json();
    assert_eq!(body["call_id"], format!("wake-{transport}-1"));
    assert_eq!(body["callee_aor"], "alice");
    assert_eq!(body["token"], phone.token);
    assert_eq!(body["app_id"], APP);
    assert_eq!(body["provider"], "apns");
    assert_eq!(body["caller_name"], "Bob Caller");
    assert!(body["caller_uri"].as_str().unwrap().starts_with("sip:bob@"));
    assert!(body["expires_at"].as_u64().unwrap() > body["sent_at"].as_u64().unwrap() / 1000);

    assert!(eventually(Duration::from_secs(5), || k
        .kamcmd(&["push.pending"])
        .map(|p| !p.contains("wake-"))
        .unwrap_or(false)));
    assert_eq!(stat(&k, "suspended"), 1);
    assert_eq!(stat(&k, "resumed"), 1);
    assert_eq!(stat(&k, "pushes_sent"), 1);
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn sleeping_phone_gets_the_call_over_udp() {
    wake_call("udp");
}

#[test]
fn sleeping_phone_gets_the_call_over_tcp() {
    wake_call("tcp");
}
