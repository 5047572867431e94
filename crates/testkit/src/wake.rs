//! Helpers for the wake-up tests: a registrar running cfg-examples/push-registrar.cfg, phones
//! played by sipp, callers, and checks on what the push endpoint received.

use crate::push_server::Request;
use crate::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const APP: &str = "org.example.phone";
pub const SECRET: &str = "s3cret";

/// A Kamailio running cfg-examples/push-registrar.cfg against a push server.
pub fn registrar(name: &str, push_url: &str, timeout: u32) -> Kamailio {
    registrar_with(name, push_url, timeout, &[])
}

/// The same, with more `-A` defines (e.g. `WITH_AUTH`).
pub fn registrar_with(
    name: &str,
    push_url: &str,
    timeout: u32,
    extra: &[(&str, &str)],
) -> Kamailio {
    let cfg = crate::repo_root().join("cfg-examples/push-registrar.cfg");
    registrar_from(Setup::new(name), &cfg, push_url, timeout, extra)
}

/// A Kamailio running `cfg` (push-registrar.cfg or a config with the same defines, such as the
/// KEMI ones) with the webhook app at `push_url`, its own store and 1 s minimum bindings.
pub fn registrar_from(
    setup: Setup,
    cfg: &Path,
    push_url: &str,
    timeout: u32,
    extra: &[(&str, &str)],
) -> Kamailio {
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    start_with_app(setup, cfg, &app, timeout, extra)
}

/// A Kamailio running `cfg` with the app `app` (the quoted `id=...;provider=...` string), its own
/// store, 1 s minimum bindings, `timeout` s to wait for a woken device, and more `-A` defines.
pub fn start_with_app(
    setup: Setup,
    cfg: &Path,
    app: &str,
    timeout: u32,
    extra: &[(&str, &str)],
) -> Kamailio {
    let db = setup.db_define();
    let timeout = timeout.to_string();
    let mut defines = vec![
        ("PUSH_DB", db.as_str()),
        ("PUSH_APP", app),
        ("MIN_EXPIRES", "1"),
        ("PUSH_TIMEOUT", timeout.as_str()),
    ];
    defines.extend_from_slice(extra);
    Kamailio::start_file(setup, cfg, &defines)
}

/// A Kamailio running cfg-examples/`example` with an APNs token-auth app `APP`, the local APNs
/// server (answering as `script` says) on 127.0.0.1:443 — call from inside a private network
/// namespace (`netns::run_in_private_netns`), where Apple's host names point there — and the
/// test CA trusted.
pub fn apns_registrar(
    name: &str,
    example: &str,
    script: crate::mock_push::ApnsScript,
    timeout: u32,
    extra: &[(&str, &str)],
) -> (
    Kamailio,
    crate::mock_push::ApnsMock,
    crate::mock_push::ApnsKey,
    crate::mock_push::TestPki,
) {
    use crate::mock_push::{apns_signing_key, ApnsAuth, ApnsMock, TestPki};
    let mut setup = Setup::new(name);
    let pki = TestPki::create(&setup.dir.join("pki"));
    let key = apns_signing_key(&setup.dir);
    let mock = ApnsMock::start(
        "127.0.0.1:443".parse().unwrap(),
        &pki,
        ApnsAuth::token(&key),
        script,
    );
    setup
        .env
        .push(("SSL_CERT_FILE".into(), pki.ca_pem.display().to_string()));
    let app = format!(
        "\"id={APP};provider=apns;key_file={};key_id={};team_id={}\"",
        key.p8_path.display(),
        key.key_id,
        key.team_id
    );
    let cfg = crate::repo_root().join("cfg-examples").join(example);
    let k = start_with_app(setup, &cfg, &app, timeout, extra);
    (k, mock, key, pki)
}

/// A channel that gets every request the push server receives, and the hook to give the server.
pub fn notifier() -> (
    std::sync::mpsc::Receiver<Request>,
    Box<crate::push_server::OnPush>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    let tx = std::sync::Mutex::new(tx);
    (
        rx,
        Box::new(move |req: &Request| {
            let _ = tx.lock().unwrap().send(req.clone());
        }),
    )
}

/// The pushes the webhook server got once things settled (waiting for `n`, then a second for
/// more): each signed with `SECRET`, exactly `n` of them, as JSON.
pub fn settled(server: &crate::push_server::PushServer, n: usize) -> Vec<serde_json::Value> {
    server.wait_for(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let requests = server.requests();
    for r in &requests {
        verify_signature(r);
    }
    let pushes: Vec<serde_json::Value> = requests.iter().map(Request::json).collect();
    assert_eq!(pushes.len(), n, "{pushes:#?}");
    pushes
}

pub fn transport_args(transport: &str) -> Vec<&'static str> {
    match transport {
        "tcp" => vec!["-t", "t1"],
        _ => vec!["-t", "u1"],
    }
}

pub struct Phone {
    pub user: String,
    pub token: String,
    pub instance: String,
    pub transport: &'static str,
    /// pn-provider and pn-param the phone registers with.
    pub provider: String,
    pub pnparam: String,
}

impl Phone {
    pub fn new(user: &str, token: &str, transport: &'static str) -> Phone {
        Phone {
            user: user.into(),
            token: token.into(),
            instance: format!(
                "00000000-0000-4000-8000-{:0>12}",
                token.len() * 7 + user.len()
            ),
            transport,
            provider: "apns".to_string(),
            pnparam: format!("ABCDE12345.{APP}.voip"),
        }
    }

    pub fn keys(&self, expires: u32, contact_port: u16) -> Vec<String> {
        let mut v: Vec<String> = transport_args(self.transport)
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (k, val) in [
            ("user", self.user.clone()),
            ("token", self.token.clone()),
            ("pnparam", self.pnparam.clone()),
            ("provider", self.provider.clone()),
            ("instance", self.instance.clone()),
            ("expires", expires.to_string()),
            ("contact_port", contact_port.to_string()),
        ] {
            v.push("-key".into());
            v.push(k.into());
            v.push(val);
        }
        v
    }

    /// Registers with push parameters and a 1 s binding, waits until the module stored the device
    /// and the binding expired: the phone now sleeps.
    pub fn register_then_sleep(&self, k: &Kamailio) {
        self.register_for(k, 1);
        std::thread::sleep(Duration::from_millis(1500));
    }

    /// Registers with push parameters and an `expires` s binding (the 200 OK must announce the
    /// push service with Feature-Caps) and waits until the module stored the device.
    pub fn register_for(&self, k: &Kamailio, expires: u32) {
        let port = free_port();
        let port_text = port.to_string();
        let keys = self.keys(expires, port);
        let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
        args.extend(["-p", port_text.as_str()]);
        let (ok, out) = k
            .sipp("device_register.xml", &args)
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
    }

    /// Starts the woken phone: REGISTER, then expects the INVITE on `call_id` and answers it.
    pub fn wake(&self, k: &Kamailio, call_id: &str) -> Sipp {
        self.wake_with(k, call_id, "device_wake.xml")
    }

    /// Starts the woken phone playing `scenario` (device_wake.xml, device_wake_ring.xml...):
    /// REGISTER with a Contact on its own port, then the held INVITE on `call_id`.
    pub fn wake_with(&self, k: &Kamailio, call_id: &str, scenario: &str) -> Sipp {
        let port = free_port();
        let port_text = port.to_string();
        let keys = self.keys(3600, port);
        let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
        args.extend(["-cid_str", call_id, "-p", port_text.as_str()]);
        k.sipp(scenario, &args)
    }
}

/// Waits for a woken phone's sipp and its caller's together and fails with both traces if either
/// did not complete its call: a call that breaks on one side often shows why only on the other
/// (a caller aborting on an answer never sends the BYE the phone waits for).
pub fn assert_call_completed(device: Sipp, caller: Sipp, timeout: Duration) {
    let caller = std::thread::spawn(move || caller.wait(timeout));
    let (device_ok, device_out) = device.wait(timeout);
    let (caller_ok, caller_out) = caller.join().expect("waiting for the caller");
    let verdict = |ok: bool| if ok { "done" } else { "FAILED" };
    assert!(
        device_ok && caller_ok,
        "the call did not complete: phone {}, caller {}\n--- phone ---\n{device_out}\n--- caller ---\n{caller_out}",
        verdict(device_ok),
        verdict(caller_ok)
    );
}

pub fn caller(k: &Kamailio, user: &str, transport: &str, call_id: &str) -> Sipp {
    let mut args = transport_args(transport);
    args.extend(["-key", "user", user, "-cid_str", call_id]);
    k.sipp("caller.xml", &args)
}

pub fn verify_signature(req: &Request) {
    let header = req.header("X-Push-Signature").expect("no signature header");
    let hex_sig = header
        .strip_prefix("sha256=")
        .expect("signature without sha256=");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(req.body.as_bytes());
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("bad HMAC signature");
}

pub fn stat(k: &Kamailio, name: &str) -> u64 {
    field(&k.kamcmd(&["push.stats"]).unwrap(), name)
        .unwrap()
        .parse()
        .unwrap()
}

/// The (host, port) of every node `k`'s DMQ lists as active, its own entry included
/// (`dmq.list_nodes`: one block per node, `host`, `port`, ..., `status`).
pub fn dmq_active_nodes(k: &Kamailio) -> Vec<(String, Option<u16>)> {
    let text = k.kamcmd(&["dmq.list_nodes"]).unwrap_or_default();
    let mut active = Vec::new();
    let mut node: Option<(String, Option<u16>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(h) = line.strip_prefix("host: ") {
            node = Some((h.trim().to_string(), None));
        } else if let Some(p) = line.strip_prefix("port: ") {
            if let Some((_, port)) = node.as_mut() {
                *port = p.trim().parse().ok();
            }
        } else if line.strip_prefix("status: ").map(str::trim) == Some("active") {
            active.extend(node.take());
        }
    }
    active
}

/// Whether `k`'s DMQ lists the node on `port` as active (`k`'s own entry, active too, is on
/// another port).
pub fn dmq_sees_active(k: &Kamailio, port: u16) -> bool {
    dmq_active_nodes(k).iter().any(|(_, p)| *p == Some(port))
}

/// The statistic `name` once it reads `want`, or its value after 5 s: for a counter bumped when
/// an answer reaches the dispatcher, which may come after what the test saw (a push server
/// records a request before it answers). `assert_eq!(stat_reaching(&k, "pushes_sent", 1), 1)`.
pub fn stat_reaching(k: &Kamailio, name: &str, want: u64) -> u64 {
    let mut got = 0;
    eventually(Duration::from_secs(5), || {
        got = stat(k, name);
        got == want
    });
    got
}

/// A copy of the sipp scenario tests/sipp/`template` with STATUS replaced by `status`, in
/// `k`'s directory under a name no other copy has: callers started together (in one test or in
/// tests running in parallel) must not read a file another one is rewriting.
pub fn scenario_expecting(k: &Kamailio, template: &str, status: u16) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let stem = template.trim_end_matches(".xml");
    let scenario = k.setup.dir.join(format!("{stem}_{status}_{n}.xml"));
    let text = fs::read_to_string(crate::repo_root().join("tests/sipp").join(template))
        .unwrap()
        .replace("STATUS", &status.to_string());
    fs::write(&scenario, text).unwrap();
    scenario
}

/// A caller that must get the final answer `status` (ACKs it).
pub fn caller_expecting(k: &Kamailio, user: &str, transport: &str, status: u16) -> Sipp {
    let scenario = scenario_expecting(k, "caller_rejected.xml", status);
    let mut args = transport_args(transport);
    args.extend(["-key", "user", user]);
    k.sipp(scenario.to_str().unwrap(), &args)
}

/// Bob sends `user` a MESSAGE ("hello from bob") with Call-ID `call_id` and must get `status`.
pub fn message_expecting(k: &Kamailio, user: &str, call_id: &str, status: u16) -> Sipp {
    let scenario = scenario_expecting(k, "message_send.xml", status);
    let mut args = transport_args("udp");
    args.extend(["-key", "user", user, "-cid_str", call_id]);
    k.sipp(scenario.to_str().unwrap(), &args)
}

/// A caller that cancels after 1 s and must see 200 for the CANCEL and 487 for the INVITE.
pub fn caller_cancelling(k: &Kamailio, user: &str) -> Sipp {
    k.sipp("caller_cancel.xml", &["-key", "user", user])
}

/// The calls push.pending lists right now.
pub fn pending(k: &Kamailio) -> String {
    k.kamcmd(&["push.pending"]).unwrap_or_default()
}

/// Waits until push.pending lists no call.
pub fn no_call_pending(k: &Kamailio) -> bool {
    eventually(Duration::from_secs(5), || !pending(k).contains("call_id"))
}

/// A Kamailio running cfg-examples/push-registrar.cfg whose app `app_id` is an fcm app, with a
/// service account the local FCM server (started here, answering as `script` says) knows, and
/// the test CA trusted; `extra` adds `-A` defines (a default app, refresh pushes...).
pub fn fcm_registrar(
    name: &str,
    app_id: &str,
    script: crate::mock_push::FcmScript,
    extra: &[(&str, &str)],
) -> (Kamailio, crate::mock_push::FcmMock) {
    use crate::mock_push::{write_service_account, FcmMock, TestPki};
    let mut setup = Setup::new(name);
    let pki = TestPki::create(&setup.dir.join("pki"));
    let mock = FcmMock::start(&pki, script);
    let account = write_service_account(&setup.dir, &mock);
    setup
        .env
        .push(("SSL_CERT_FILE".into(), pki.ca_pem.display().to_string()));
    let db = setup.db_define();
    let app = format!(
        "\"id={app_id};provider=fcm;service_account={}\"",
        account.display()
    );
    let fcm_url = format!("\"{}\"", mock.base_url());
    let mut defines = vec![
        ("PUSH_DB", db.as_str()),
        ("PUSH_APP", app.as_str()),
        ("PUSH_FCM_URL", fcm_url.as_str()),
        ("MIN_EXPIRES", "1"),
    ];
    defines.extend_from_slice(extra);
    let k = Kamailio::start_example(setup, "push-registrar.cfg", &defines);
    (k, mock)
}

/// The same with the app `com.example.android` as the default app, `timeout` s to wait for a
/// woken device, and bob's Android phone (token `token`) registered and asleep.
pub fn fcm_sleeping_phone(
    name: &str,
    script: crate::mock_push::FcmScript,
    timeout: u32,
    token: &str,
) -> (Kamailio, crate::mock_push::FcmMock, Phone) {
    let timeout = timeout.to_string();
    let (k, mock) = fcm_registrar(
        name,
        "com.example.android",
        script,
        &[
            ("PUSH_TIMEOUT", timeout.as_str()),
            ("PUSH_DEFAULT_APP", "\"com.example.android\""),
        ],
    );
    let phone = Phone {
        provider: "fcm".into(),
        pnparam: "kamailio-push-test".into(),
        ..Phone::new("bob", token, "udp")
    };
    phone.register_then_sleep(&k);
    (k, mock, phone)
}

/// Node `a`'s log says a device of `aor` registered on node `b` (DMQ, `b` on 127.0.0.1) resumed
/// `calls` held call(s), and that the call went to `b` (push_cluster_relay()). Returns `a`'s log.
pub fn assert_resumed_and_relayed_to(
    a: &Kamailio,
    b: &Kamailio,
    aor: &str,
    calls: usize,
) -> String {
    let log_a = a.log_text();
    let b_uri = format!("sip:127.0.0.1:{}", b.sip_port());
    assert!(
        log_a.contains(&format!(
            "device of {aor} registered on another node (DMQ from {b_uri}): resuming {calls} call(s)"
        )),
        "{log_a}"
    );
    assert!(
        log_a.contains(&format!("relayed to {b_uri}, where the phone registered")),
        "{log_a}"
    );
    log_a
}
