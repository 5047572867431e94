//! The real push services' protocols, end to end: Kamailio with push.so pushes through APNs (at its
//! real host names, inside a private mount and network namespace where /etc/hosts sends them to a
//! local HTTP/2-over-TLS server that checks what Apple checks) and through FCM HTTP v1 (a local
//! server checking the OAuth2 assertion and the message), trusting a test CA via SSL_CERT_FILE.

use std::time::{Duration, Instant};
use testkit::mock_push::*;
use testkit::netns::run_in_private_netns;
use testkit::wake::*;
use testkit::*;

const IOS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ANDROID_TOKEN: &str = "fcmtoken:APA91bH-abcdefghijklmnopqrstuvwxyz0123456789";

struct Apns {
    k: Kamailio,
    mock: ApnsMock,
    key: ApnsKey,
    pki: TestPki,
}

/// Kamailio with an APNs token-auth app, the mock on 127.0.0.1:443 (inside the namespace).
fn apns_setup(name: &str, script: ApnsScript, timeout: u32) -> Apns {
    apns_setup_with(name, script, timeout, &[])
}

/// The same, with more `-A` defines.
fn apns_setup_with(name: &str, script: ApnsScript, timeout: u32, extra: &[(&str, &str)]) -> Apns {
    let (k, mock, key, pki) = apns_registrar(name, "push-registrar.cfg", script, timeout, extra);
    Apns { k, mock, key, pki }
}

/// Kamailio with an FCM app whose service account the local FCM server knows, and a sleeping
/// Android phone registered for bob.
fn fcm_setup(name: &str, script: FcmScript) -> (Kamailio, FcmMock, Phone) {
    fcm_sleeping_phone(name, script, 20, ANDROID_TOKEN)
}

fn iphone() -> Phone {
    Phone::new("alice", IOS_TOKEN, "udp")
}

#[test]
fn apns_token_auth_wakes_a_sleeping_iphone() {
    if !run_in_private_netns("apns_token_auth_wakes_a_sleeping_iphone") {
        return;
    }
    let s = apns_setup("apns-wake", apns_always_ok(), 20);
    let phone = iphone();
    phone.register_then_sleep(&s.k);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let call = caller(&s.k, "alice", "udp", "apns-%u");
    let reqs = s.mock.wait_for(1, Duration::from_secs(10));
    assert_eq!(reqs.len(), 1, "no push reached APNs");
    let r = &reqs[0];
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.path, format!("/3/device/{IOS_TOKEN}"));
    assert_eq!(r.header("apns-topic"), Some("org.example.phone.voip"));
    assert_eq!(r.header("apns-push-type"), Some("voip"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-collapse-id"), Some("apns-1"));
    let expiration: u64 = r.header("apns-expiration").unwrap().parse().unwrap();
    assert!(
        (before + 18..=before + 22).contains(&expiration),
        "expiration {expiration}, now {before}"
    );
    assert_eq!(r.jwt_kid.as_deref(), Some(s.key.key_id.as_str()));
    assert!(r.body.get("aps").is_some(), "{}", r.body_text);
    assert_eq!(r.body["call_id"], "apns-1");
    assert_eq!(r.body["callee_aor"], "alice");
    let (ok, out) = phone.wake(&s.k, "apns-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat_reaching(&s.k, "pushes_sent", 1), 1);
    let apps = s.k.kamcmd(&["push.apps"]).unwrap();
    assert!(
        apps.contains("provider: apns") && apps.contains("health: ok"),
        "{apps}"
    );
    assert!(
        !apps.contains(&s.key.private_key_pem[30..60]),
        "push.apps shows key material"
    );
    let _ = &s.pki;
}

#[test]
fn apns_connection_is_reused_and_sandbox_devices_use_the_sandbox() {
    if !run_in_private_netns("apns_connection_is_reused_and_sandbox_devices_use_the_sandbox") {
        return;
    }
    let s = apns_setup("apns-reuse", apns_always_ok(), 20);
    for (i, user) in ["u1", "u2", "u3"].iter().enumerate() {
        let token = format!("{:064x}", i + 1);
        Phone::new(user, &token, "udp").register_then_sleep(&s.k);
        let call = caller_cancelling(&s.k, user);
        assert!(s.mock.wait_for(2 * i + 1, Duration::from_secs(10)).len() > 2 * i);
        let (ok, out) = call.wait(Duration::from_secs(20));
        assert!(ok, "{out}");
        // The call push, then the end-of-call push of the cancelled call.
        assert_eq!(
            s.mock.wait_for(2 * i + 2, Duration::from_secs(10)).len(),
            2 * i + 2
        );
    }
    assert_eq!(
        s.mock.connections(),
        1,
        "six pushes should share one HTTP/2 connection"
    );
    // A device that says pn-provider=apns.dev is pushed through the sandbox host: a second
    // connection (the mock serves both names on the same address).
    let dev = Phone {
        provider: "apns.dev".into(),
        ..Phone::new("tester", &format!("{:064x}", 99), "udp")
    };
    dev.register_then_sleep(&s.k);
    let call = caller_cancelling(&s.k, "tester");
    let reqs = s.mock.wait_for(7, Duration::from_secs(10));
    assert_eq!(reqs.len(), 7);
    assert_eq!(reqs[6].status, 200);
    assert_eq!(
        s.mock.connections(),
        2,
        "the sandbox gets its own connection"
    );
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn apns_certificate_auth_pushes_with_the_client_certificate() {
    if !run_in_private_netns("apns_certificate_auth_pushes_with_the_client_certificate") {
        return;
    }
    // The same certificate as a PKCS#12 file with its password, and as one PEM file.
    for form in ["p12", "pem"] {
        let mut setup = Setup::new(&format!("apns-cert-{form}"));
        let pki = TestPki::create(&setup.dir.join("pki"));
        let mock = ApnsMock::start(
            "127.0.0.1:443".parse().unwrap(),
            &pki,
            ApnsAuth::Certificate,
            apns_always_ok(),
        );
        setup
            .env
            .push(("SSL_CERT_FILE".into(), pki.ca_pem.display().to_string()));
        let app = match form {
            "p12" => format!(
                "\"id={APP};provider=apns;cert_file={};cert_password=p12pass\"",
                pki.client_p12.display()
            ),
            _ => format!(
                "\"id={APP};provider=apns;cert_file={}\"",
                pki.client_pem.display()
            ),
        };
        let cfg = repo_root().join("cfg-examples/push-registrar.cfg");
        let k = start_with_app(setup, &cfg, &app, 20, &[]);
        iphone().register_then_sleep(&k);
        let call = caller_cancelling(&k, "alice");
        let reqs = mock.wait_for(1, Duration::from_secs(10));
        assert_eq!(reqs.len(), 1, "{form}");
        assert!(
            reqs[0].client_cert && reqs[0].status == 200,
            "{form}: {:?}",
            reqs[0]
        );
        let (ok, out) = call.wait(Duration::from_secs(20));
        assert!(ok, "{form}: {out}");
    }
}

#[test]
fn apns_410_forgets_the_device_and_fails_the_call_fast() {
    if !run_in_private_netns("apns_410_forgets_the_device_and_fails_the_call_fast") {
        return;
    }
    let s = apns_setup(
        "apns-410",
        Box::new(|_, _| ApnsAnswer::status(410, "Unregistered")),
        20,
    );
    iphone().register_then_sleep(&s.k);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&s.k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.mock.requests().len(), 1);
    assert!(eventually(Duration::from_secs(3), || stat(
        &s.k,
        "devices_removed"
    ) == 1));
    let devices = s.k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(!devices.contains("a1b2c3"), "{devices}");
    // With the device gone, the next call is refused at once without a push.
    let (ok, out) = caller_expecting(&s.k, "alice", "udp", 480).wait(Duration::from_secs(10));
    assert!(ok, "{out}");
    assert_eq!(s.mock.requests().len(), 1);
}

#[test]
fn apns_403_renews_the_token_once_and_429_and_resets_are_retried() {
    if !run_in_private_netns("apns_403_renews_the_token_once_and_429_and_resets_are_retried") {
        return;
    }
    let script: ApnsScript = Box::new(|n, _| match n {
        0 => ApnsAnswer::status(403, "ExpiredProviderToken"),
        1 => ApnsAnswer::status(429, "TooManyRequests"),
        2 => ApnsAnswer::ResetConnection,
        _ => ApnsAnswer::Ok,
    });
    let s = apns_setup("apns-retry", script, 20);
    iphone().register_then_sleep(&s.k);
    let call = caller_cancelling(&s.k, "alice");
    let reqs = s.mock.wait_for(4, Duration::from_secs(15));
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    assert_eq!(reqs[3].status, 200);
    assert!(
        s.mock.connections() >= 3,
        "renewal and reset must open new connections"
    );
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    // One call push accepted, after its retries (the cancelled call's end-of-call push, if the
    // phone's push was accepted in time, counts in pushes_sent and end_pushes both).
    assert!(eventually(Duration::from_secs(3), || {
        let end = stat(&s.k, "end_pushes");
        stat(&s.k, "pushes_sent").saturating_sub(end) == 1
    }));
}

#[test]
fn apns_429_with_retry_after_is_honoured() {
    if !run_in_private_netns("apns_429_with_retry_after_is_honoured") {
        return;
    }
    let s = apns_setup(
        "apns-429",
        Box::new(|n, _| match n {
            0 => ApnsAnswer::retry_after(429, "TooManyRequests", 1),
            _ => ApnsAnswer::Ok,
        }),
        20,
    );
    let phone = iphone();
    phone.register_then_sleep(&s.k);
    // A caller that waits (one that cancels would stop the retry: pushes end with the call).
    let call = caller(&s.k, "alice", "udp", "apns429-%u");
    let reqs = s.mock.wait_for(2, Duration::from_secs(10));
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!((reqs[0].status, reqs[1].status), (429, 200));
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After ignored: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited too long: {waited:?}"
    );
    // The same push, the same connection.
    assert_eq!(reqs[1].header("apns-collapse-id"), Some("apns429-1"));
    assert_eq!(s.mock.connections(), 1);
    let (ok, out) = phone.wake(&s.k, "apns429-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat_reaching(&s.k, "pushes_sent", 1), 1);
}

#[test]
fn apns_retry_after_beyond_the_deadline_fails_the_call_at_once() {
    if !run_in_private_netns("apns_retry_after_beyond_the_deadline_fails_the_call_at_once") {
        return;
    }
    // 429 to the first call, 503 to the second: both ask for an hour, the calls wait 20 s.
    let s = apns_setup(
        "apns-retry-after-late",
        Box::new(|n, _| match n {
            0 => ApnsAnswer::retry_after(429, "TooManyRequests", 3600),
            _ => ApnsAnswer::retry_after(503, "ServiceUnavailable", 3600),
        }),
        20,
    );
    let phone = iphone();
    for (n, status) in [(1, 429), (2, 503)] {
        phone.register_then_sleep(&s.k);
        let start = Instant::now();
        let (ok, out) = caller_expecting(&s.k, "alice", "udp", 480).wait(Duration::from_secs(20));
        assert!(ok, "{status}: {out}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{status}: {:?}",
            start.elapsed()
        );
        let reqs = s.mock.requests();
        assert_eq!(reqs.len(), n, "{status}: no retry expected: {reqs:?}");
        assert_eq!(reqs[n - 1].status, status);
    }
    // Throttling is not a dead token: the device stays.
    assert_eq!(stat(&s.k, "devices_removed"), 0);
    let devices = s.k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(devices.contains("a1b2c3"), "{devices}");
}

#[test]
fn apns_credentials_rejected_twice_fail_the_push_and_are_logged_once() {
    if !run_in_private_netns("apns_credentials_rejected_twice_fail_the_push_and_are_logged_once") {
        return;
    }
    let s = apns_setup(
        "apns-403",
        Box::new(|_, _| ApnsAnswer::status(403, "InvalidProviderToken")),
        20,
    );
    iphone().register_then_sleep(&s.k);
    let (ok, out) = caller_expecting(&s.k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(s.mock.requests().len(), 2, "one renewal, then give up");
    assert!(s.k.wait_for_log(
        "rejected the credentials even after renewing them",
        Duration::from_secs(3)
    ));
}

#[test]
fn push_reload_picks_up_a_rotated_key() {
    if !run_in_private_netns("push_reload_picks_up_a_rotated_key") {
        return;
    }
    let s = apns_setup("apns-reload", apns_always_ok(), 20);
    // The operator rotates the key: new key material in the same file, Apple now accepts only it.
    let rotated = apns_signing_key(&s.k.setup.dir.join("rotated"));
    std::fs::write(&s.key.p8_path, &rotated.private_key_pem).unwrap();
    s.mock.set_token_key(&rotated.public_key_pem, &s.key.key_id);
    let out = s.k.kamcmd(&["push.reload"]).unwrap();
    assert!(out.contains("reloaded"), "{out}");
    iphone().register_then_sleep(&s.k);
    let call = caller_cancelling(&s.k, "alice");
    let reqs = s.mock.wait_for(1, Duration::from_secs(10));
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].status, 200,
        "the reloaded key was not used: {:?}",
        reqs[0]
    );
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    // A broken file: push.reload says which app, and the working credentials stay.
    std::fs::write(&s.key.p8_path, "not a key").unwrap();
    let err = s.k.kamcmd(&["push.reload"]).unwrap_err();
    assert!(err.contains(APP), "{err}");
}

#[test]
fn unusable_apns_key_stops_kamailio_naming_the_app() {
    let setup = Setup::new("apns-badkey");
    let bad = setup.dir.join("AuthKey_BAD.p8");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let db = setup.db_define();
    let app = format!(
        "\"id={APP};provider=apns;key_file={};key_id=ABCDE12345;team_id=TEAM123456\"",
        bad.display()
    );
    let mut k = Kamailio::spawn_file(
        setup,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples/push-registrar.cfg"),
        &[("PUSH_DB", db.as_str()), ("PUSH_APP", app.as_str())],
    );
    let status = k
        .wait_exit(Duration::from_secs(15))
        .expect("kamailio did not stop");
    assert!(!status.success());
    let log = k.log_text();
    assert!(
        log.contains(&format!("id={APP}")) && log.contains("key_file"),
        "{log}"
    );
}

#[test]
fn fcm_wakes_a_sleeping_android_phone() {
    let (k, mock, phone) = fcm_setup("fcm-wake", fcm_always_ok());
    let call = caller(&k, "bob", "udp", "fcm-%u");
    let sends = mock.wait_for_sends(1, Duration::from_secs(10));
    assert_eq!(sends.len(), 1);
    let m = &sends[0];
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.token(), Some(ANDROID_TOKEN));
    assert_eq!(m.data("call_id"), Some("fcm-1"));
    assert_eq!(m.data("callee_aor"), Some("bob"));
    assert_eq!(m.body["message"]["android"]["priority"], "high");
    assert_eq!(mock.tokens_issued(), 1);
    assert!(
        !k.log_text().contains(ANDROID_TOKEN),
        "a full device token reached the log"
    );
    let (ok, out) = phone.wake(&k, "fcm-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn fcm_unregistered_token_forgets_the_device() {
    let (k, _mock, _phone) = fcm_setup(
        "fcm-404",
        Box::new(|_, _| FcmAnswer::status(404, "UNREGISTERED")),
    );
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "bob", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(eventually(Duration::from_secs(3), || stat(
        &k,
        "devices_removed"
    ) == 1));
}

#[test]
fn fcm_quota_exceeded_waits_for_retry_after() {
    let (k, mock, phone) = fcm_setup(
        "fcm-429",
        Box::new(|n, _| match n {
            0 => FcmAnswer::Status {
                status: 429,
                status_text: "QUOTA_EXCEEDED".into(),
                retry_after: Some(1),
            },
            _ => FcmAnswer::Ok,
        }),
    );
    // A caller that waits (one that cancels would stop the retry: pushes end with the call).
    let call = caller(&k, "bob", "udp", "fcm429-%u");
    let sends = mock.wait_for_sends(2, Duration::from_secs(10));
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert_eq!((sends[0].status, sends[1].status), (429, 200));
    let waited = sends[1].at.duration_since(sends[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After ignored: {waited:?}"
    );
    let (ok, out) = phone.wake(&k, "fcm429-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat_reaching(&k, "pushes_sent", 1), 1);
}

#[test]
fn apns_binding_refresh_is_a_background_push_not_a_voip_push() {
    if !run_in_private_netns("apns_binding_refresh_is_a_background_push_not_a_voip_push") {
        return;
    }
    // A 60 s binding, refresh pushes 57 s before it expires.
    let s = apns_setup_with(
        "apns-refresh",
        apns_always_ok(),
        20,
        &[("REFRESH_WINDOW", "57")],
    );
    let phone = iphone();
    phone.register_for(&s.k, 60);
    let reqs = s.mock.wait_for(1, Duration::from_secs(10));
    assert_eq!(reqs.len(), 1, "no refresh push reached APNs");
    let r = &reqs[0];
    // iOS treats every VoIP push as a call: a refresh goes to the app's own topic as a
    // background push, at the priority Apple requires for those.
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.path, format!("/3/device/{IOS_TOKEN}"));
    assert_eq!(r.header("apns-push-type"), Some("background"));
    assert_eq!(r.header("apns-topic"), Some("org.example.phone"));
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.body["aps"]["content-available"], 1);
    assert!(r.body["aps"].get("alert").is_none(), "{}", r.body_text);
    assert_eq!(r.body["type"], "refresh");
    assert_eq!(r.body["callee_aor"], "alice");
    // Once per binding.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.mock.requests().len(), 1);
}
