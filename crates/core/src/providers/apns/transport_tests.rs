//! The APNs transport against the test kit's local APNs ([`ApnsMock`]: HTTP/2 over TLS, ALPN "h2"
//! only, checking provider tokens, client certificates, headers and payloads as Apple does),
//! reached at Apple's host names resolved to 127.0.0.1 and trusting the test CA.

use super::*;
use crate::config::Secret;
use std::sync::OnceLock;
use testkit::mock_push::{
    apns_signing_key, ApnsAnswer, ApnsAuth as MockAuth, ApnsKey, ApnsMock, ApnsScript, TestPki,
};

const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BUNDLE: &str = "org.example.phone";

/// The test CA and server certificate, made once per test run.
fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::create(&testkit::run_dir("apns-provider-pki")))
}

fn route_to(addr: SocketAddr) -> Route {
    Route {
        addr: Some(addr),
        root_der: Some(pki().ca_cert_der.clone()),
    }
}

/// A local APNs with token auth, and a VoIP app's sender that pushes to it.
struct Apple {
    mock: ApnsMock,
    sender: ApnsSender,
    key: ApnsKey,
}

fn apple(script: ApnsScript) -> Apple {
    let key = apns_signing_key(&testkit::run_dir("apns-provider-key"));
    let mock = ApnsMock::start(
        "127.0.0.1:0".parse().unwrap(),
        pki(),
        MockAuth::token(&key),
        script,
    );
    let auth = ApnsAuth::Token {
        key_file: key.p8_path.clone(),
        key_id: key.key_id.clone(),
        team_id: key.team_id.clone(),
    };
    let sender = ApnsSender::with_route(BUNDLE, &auth, false, true, route_to(mock.addr())).unwrap();
    Apple { mock, sender, key }
}

fn target() -> ApnsTarget {
    ApnsTarget {
        token: DEVICE.to_string(),
        alert_token: None,
        sandbox: false,
        param: None,
    }
}

fn call() -> CallPush {
    CallPush::sample(DEVICE, BUNDLE, "apns")
}

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[tokio::test]
async fn a_push_carries_apples_headers_and_a_body_without_token_or_options() {
    let a = apple(Box::new(|_, _| ApnsAnswer::Ok));
    let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
    assert_eq!(
        outcome,
        Outcome::Sent {
            status: 200,
            attempts: 1
        }
    );
    let reqs = a.mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.status), ("POST", 200), "{r:?}");
    assert_eq!(r.path, format!("/3/device/{DEVICE}"));
    assert_eq!(r.header("apns-topic"), Some("org.example.phone.voip"));
    assert_eq!(r.header("apns-push-type"), Some("voip"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-expiration"), Some("1900000000"));
    assert_eq!(
        r.header("apns-collapse-id"),
        Some("a84b4c76e66710@pc33.example.com")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("apns-id").is_none());
    let auth = r.header("authorization").unwrap();
    assert!(auth.starts_with("bearer "), "{auth}");
    assert_eq!(r.jwt_kid.as_deref(), Some(a.key.key_id.as_str()));
    let now = http::unix_secs();
    assert!(r.jwt_iat.is_some_and(|iat| iat + 60 >= now && iat <= now));
    // The body is the payload alone: aps and the call's fields.
    assert!(r.body["aps"].is_object(), "{}", r.body_text);
    assert_eq!(r.body["call_id"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(r.body["callee_aor"], "sip:bob@example.com");
    assert_eq!(r.body["type"], "call");
    for absent in ["device_token", "options", "token"] {
        assert!(r.body.get(absent).is_none(), "{absent}: {}", r.body_text);
    }
    assert!(!r.body_text.contains(DEVICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_share_one_connection_per_environment() {
    let a = apple(Box::new(|_, _| ApnsAnswer::Ok));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let sender = a.sender.clone();
        tasks.push(tokio::spawn(async move {
            sender.send(&call(), &target(), in_secs(10)).await
        }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Outcome::Sent { .. }));
    }
    let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
    assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    assert_eq!(a.mock.requests().len(), 21);
    assert_eq!(
        a.mock.connections(),
        1,
        "one HTTP/2 connection, multiplexed"
    );
    // A sandbox device: Apple's other host, its own connection.
    let sandbox = ApnsTarget {
        sandbox: true,
        ..target()
    };
    let outcome = a.sender.send(&call(), &sandbox, in_secs(10)).await;
    assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    assert_eq!(a.mock.connections(), 2);
    let reqs = a.mock.requests();
    assert!(reqs.iter().all(|r| r.connection <= 2));
    assert_eq!(reqs.last().unwrap().connection, 2);
}

#[tokio::test]
async fn retry_after_of_429_and_503_is_the_least_wait() {
    for (status, reason) in [(429, "TooManyRequests"), (503, "ServiceUnavailable")] {
        let a = apple(Box::new(move |n, _| match n {
            0 => ApnsAnswer::retry_after(status, reason, 1),
            _ => ApnsAnswer::Ok,
        }));
        let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 200,
                attempts: 2
            },
            "{status}"
        );
        let reqs = a.mock.requests();
        assert_eq!((reqs[0].status, reqs[1].status), (status, 200));
        let waited = reqs[1].at.duration_since(reqs[0].at);
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_millis(2500),
            "{status}: waited {waited:?}"
        );
        assert_eq!(a.mock.connections(), 1, "{status}: the connection stays");
    }
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_ends_the_push_at_once() {
    for (status, reason) in [(429, "TooManyRequests"), (503, "ServiceUnavailable")] {
        let a = apple(Box::new(move |_, _| {
            ApnsAnswer::retry_after(status, reason, 3600)
        }));
        let start = Instant::now();
        let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{status}: {:?}",
            start.elapsed()
        );
        match outcome {
            Outcome::GaveUp {
                attempts: 1,
                last_error,
            } => assert_eq!(
                last_error,
                format!("{status} {reason} (Retry-After 3600 s)")
            ),
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(a.mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn throttling_without_retry_after_and_5xx_are_retried_with_backoff() {
    let a = apple(Box::new(|n, _| match n {
        0 => ApnsAnswer::status(429, "TooManyRequests"),
        1 => ApnsAnswer::status(500, "InternalServerError"),
        // Retry-After is read for 429 and 503 only.
        2 => ApnsAnswer::retry_after(500, "InternalServerError", 3600),
        _ => ApnsAnswer::Ok,
    }));
    let start = Instant::now();
    let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
    assert_eq!(
        outcome,
        Outcome::Sent {
            status: 200,
            attempts: 4
        }
    );
    // 100 + 200 + 400 ms of backoff.
    assert!(
        start.elapsed() >= Duration::from_millis(650) && start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn an_expired_provider_token_is_renewed_once() {
    let a = apple(Box::new(|n, _| match n {
        0 => ApnsAnswer::status(403, "ExpiredProviderToken"),
        _ => ApnsAnswer::Ok,
    }));
    let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
    assert_eq!(
        outcome,
        Outcome::Sent {
            status: 200,
            attempts: 2
        }
    );
    assert_eq!(a.sender.renewals(), 1);
    assert_eq!(a.mock.connections(), 2, "renewal opens a new connection");
    // Refused again after the renewal: the push is rejected, with one renewal only.
    a.mock.set_script(Box::new(|_, _| {
        ApnsAnswer::status(403, "InvalidProviderToken")
    }));
    let outcome = a.sender.send(&call(), &target(), in_secs(10)).await;
    match outcome {
        Outcome::Rejected { status: 403, body } => {
            assert!(body.starts_with("InvalidProviderToken (apns-id "), "{body}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.sender.renewals(), 2);
    assert_eq!(a.mock.requests().len(), 4);
}

#[tokio::test]
async fn dead_tokens_and_refusals_end_the_push() {
    let a = apple(Box::new(|n, _| match n {
        0 => ApnsAnswer::status(410, "Unregistered"),
        1 => ApnsAnswer::status(400, "BadDeviceToken"),
        _ => ApnsAnswer::status(400, "BadCollapseId"),
    }));
    for expected in [(410, "Unregistered"), (400, "BadDeviceToken")] {
        match a.sender.send(&call(), &target(), in_secs(10)).await {
            Outcome::TokenDead { status, body } => {
                assert_eq!(status, expected.0);
                assert!(
                    body.starts_with(&format!("{} (apns-id ", expected.1)),
                    "{body}"
                );
            }
            other => panic!("{expected:?}: {other:?}"),
        }
    }
    match a.sender.send(&call(), &target(), in_secs(10)).await {
        Outcome::Rejected { status: 400, body } => assert!(body.starts_with("BadCollapseId")),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.mock.requests().len(), 3, "no retries");
}

#[tokio::test]
async fn a_refresh_is_a_background_push() {
    let a = apple(Box::new(|_, _| ApnsAnswer::Ok));
    let push = CallPush {
        kind: PushKind::Refresh,
        ..call()
    };
    let outcome = a.sender.send(&push, &target(), in_secs(10)).await;
    assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    let r = &a.mock.requests()[0];
    assert_eq!(r.header("apns-push-type"), Some("background"));
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.header("apns-topic"), Some(BUNDLE));
    assert_eq!(r.body["aps"]["content-available"], 1);
}

#[tokio::test]
async fn apple_unreachable_gives_up_after_a_few_attempts() {
    // A port nobody listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let key = apns_signing_key(&testkit::run_dir("apns-provider-key"));
    let auth = ApnsAuth::Token {
        key_file: key.p8_path.clone(),
        key_id: key.key_id.clone(),
        team_id: key.team_id.clone(),
    };
    let sender = ApnsSender::with_route(BUNDLE, &auth, false, true, route_to(addr)).unwrap();
    let start = Instant::now();
    let outcome = sender.send(&call(), &target(), in_secs(20)).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    match outcome {
        Outcome::GaveUp {
            attempts: 3,
            last_error,
        } => assert!(last_error.starts_with("connection failed"), "{last_error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn certificate_auth_with_pkcs12_and_pem() {
    let pki = pki();
    let mock = ApnsMock::start(
        "127.0.0.1:0".parse().unwrap(),
        pki,
        MockAuth::Certificate,
        Box::new(|_, _| ApnsAnswer::Ok),
    );
    let p12 = ApnsAuth::Certificate {
        cert_file: pki.client_p12.clone(),
        password: Some(Secret::new(pki.p12_password.clone())),
    };
    let pem = ApnsAuth::Certificate {
        cert_file: pki.client_pem.clone(),
        password: None,
    };
    for auth in [p12, pem] {
        let sender = ApnsSender::with_route(
            &pki.client_bundle_id,
            &auth,
            false,
            true,
            route_to(mock.addr()),
        )
        .unwrap();
        let outcome = sender.send(&call(), &target(), in_secs(10)).await;
        assert!(
            matches!(outcome, Outcome::Sent { .. }),
            "{auth:?}: {outcome:?}"
        );
        let r = mock.requests().pop().unwrap();
        assert!(r.client_cert && r.status == 200, "{r:?}");
        assert!(r.header("authorization").is_none());
    }
}

#[test]
fn unusable_credentials_are_reported_naming_the_file_without_secrets() {
    let dir = testkit::run_dir("apns-provider-bad");
    let bad = dir.join("AuthKey_BAD.p8");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let token = |key_file| ApnsAuth::Token {
        key_file,
        key_id: "ABCDE12345".into(),
        team_id: "TEAM123456".into(),
    };
    let err = ApnsSender::new(BUNDLE, &token(bad.clone()), false, true)
        .err()
        .unwrap();
    assert!(
        err.starts_with(&format!("key_file {} is not a usable .p8", bad.display())),
        "{err}"
    );
    let err = ApnsSender::new(BUNDLE, &token(dir.join("missing.p8")), false, true)
        .err()
        .unwrap();
    assert!(err.starts_with("cannot read key_file"), "{err}");
    let wrong = ApnsAuth::Certificate {
        cert_file: pki().client_p12.clone(),
        password: Some(Secret::new("not-the-password")),
    };
    let err = ApnsSender::new(BUNDLE, &wrong, false, true).err().unwrap();
    assert!(
        err.contains("(PKCS#12) is not usable (wrong cert_password?)"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"));
    // A PEM file with a certificate but no key.
    let cert_only = ApnsAuth::Certificate {
        cert_file: pki().client_cert_pem.clone(),
        password: None,
    };
    let err = ApnsSender::new(BUNDLE, &cert_only, false, true)
        .err()
        .unwrap();
    assert!(err.contains("(PEM) is not usable"), "{err}");
}

#[test]
fn the_provider_token_is_reused_for_55_minutes() {
    let key = apns_signing_key(&testkit::run_dir("apns-provider-key"));
    let auth = ApnsAuth::Token {
        key_file: key.p8_path.clone(),
        key_id: key.key_id.clone(),
        team_id: key.team_id.clone(),
    };
    let credentials = Credentials::load(&auth).unwrap();
    let first = credentials.bearer().unwrap().unwrap();
    assert_eq!(credentials.bearer().unwrap().unwrap(), first);
    let header = jsonwebtoken::decode_header(&first).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(key.key_id.as_str()));
    assert_eq!(header.typ, None);
    // 56 minutes later: a new token.
    let Credentials::Token { jwt, .. } = &credentials else {
        unreachable!()
    };
    if let Some(old) = Instant::now().checked_sub(Duration::from_secs(56 * 60)) {
        jwt.lock().unwrap().as_mut().unwrap().1 = old;
        assert_ne!(credentials.bearer().unwrap().unwrap(), first);
    }
}

#[test]
fn headers_come_from_the_notification_options() {
    let options = NotificationOptions {
        apns_id: Some("123e4567-e89b-12d3-a456-426614174000"),
        apns_push_type: Some(PushType::Voip),
        apns_expiration: Some(1_900_000_000),
        apns_priority: Some(Priority::High),
        apns_topic: Some("org.example.phone.voip"),
        apns_collapse_id: CollapseId::new("call-1").ok(),
    };
    assert_eq!(
        option_headers(&options),
        vec![
            ("apns-topic", "org.example.phone.voip".to_string()),
            ("apns-push-type", "voip".to_string()),
            ("apns-priority", "10".to_string()),
            ("apns-expiration", "1900000000".to_string()),
            ("apns-collapse-id", "call-1".to_string()),
            (
                "apns-id",
                "123e4567-e89b-12d3-a456-426614174000".to_string()
            ),
        ]
    );
    assert!(option_headers(&NotificationOptions::default()).is_empty());
}

#[test]
fn answers_and_tokens_are_read_safely() {
    assert_eq!(
        reason_of(br#"{"reason":"BadDeviceToken"}"#),
        "BadDeviceToken"
    );
    assert_eq!(reason_of(b""), "no reason");
    assert_eq!(reason_of(b"<html>"), "no reason");
    assert_eq!(reason_of(br#"{"reason":""}"#), "no reason");
    let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(500));
    assert_eq!(reason_of(long.as_bytes()).len(), MAX_REASON);
    assert_eq!(path_segment(DEVICE), DEVICE);
    assert_eq!(path_segment("ab/../c?d e"), "ab%2F..%2Fc%3Fd%20e");
}

#[test]
fn identity_pem_keeps_certificates_and_one_key() {
    let block = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
    let file = format!(
        "Bag Attributes\n{}{}{}",
        block("EC PARAMETERS"),
        block("EC PRIVATE KEY"),
        block("CERTIFICATE")
    );
    let kept = String::from_utf8(identity_pem(file.as_bytes()).unwrap()).unwrap();
    assert!(
        !kept.contains("PARAMETERS") && !kept.contains("Bag"),
        "{kept}"
    );
    assert!(kept.contains("EC PRIVATE KEY") && kept.contains("CERTIFICATE"));
    assert!(identity_pem(block("CERTIFICATE").as_bytes()).is_none());
    assert!(identity_pem(block("PRIVATE KEY").as_bytes()).is_none());
    let two_keys = format!(
        "{}{}{}",
        block("PRIVATE KEY"),
        block("PRIVATE KEY"),
        block("CERTIFICATE")
    );
    assert!(identity_pem(two_keys.as_bytes()).is_none());
}
