//! The webhook provider's tests, against the test kit's record-and-answer HTTP server
//! ([`PushServer`]): signature, body, retries and their pacing, final answers, deadlines.

use super::*;
use crate::providers::{EndReason, PushKind};
use std::sync::{Arc, Mutex};
use testkit::push_server::{Answer, PushServer};

fn app(url: String, secret: Option<&str>) -> WebhookApp {
    WebhookApp {
        id: "acme".into(),
        url,
        secret: secret.map(crate::config::Secret::new),
        dead_statuses: crate::config::DEFAULT_DEAD_STATUSES.to_vec(),
    }
}

fn push() -> CallPush {
    CallPush::sample("device-token-123", "acme", "webhook")
}

/// Pushes to `path` on `server` with the module's client, `ms` before the deadline.
async fn send_to(server: &PushServer, path: &str, secret: Option<&str>, ms: u64) -> Outcome {
    send(
        &client().unwrap(),
        &app(server.url_for(path), secret),
        &push(),
        in_ms(ms),
    )
    .await
}

fn sent(status: u16, attempts: u32) -> Outcome {
    Outcome::Sent { status, attempts }
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// The server's own check of a signature header, with the hmac crate's verification.
fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_mac) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    if hex_mac != hex_mac.to_ascii_lowercase() {
        return false;
    }
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Parses a received body back into a CallPush, field by field.
fn parse_push(body: &[u8]) -> CallPush {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_string()
    };
    CallPush {
        kind: match v["type"].as_str() {
            Some("refresh") => PushKind::Refresh,
            Some("message") => PushKind::Message,
            Some("cancel") => PushKind::Cancel,
            _ => PushKind::Call,
        },
        call_id: s("call_id"),
        caller_uri: s("caller_uri"),
        caller_name: v["caller_name"].as_str().map(String::from),
        callee_aor: s("callee_aor"),
        token: s("token"),
        app_id: s("app_id"),
        provider: s("provider"),
        sent_at: v["sent_at"].as_u64().expect("sent_at"),
        expires_at: v["expires_at"].as_u64().expect("expires_at"),
        reason: match v["reason"].as_str() {
            Some("cancelled") => Some(EndReason::Cancelled),
            Some("answered_elsewhere") => Some(EndReason::AnsweredElsewhere),
            Some("timeout") => Some(EndReason::Timeout),
            _ => None,
        },
        text: v["text"].as_str().map(String::from),
        alert: v["alert"].as_str().map(String::from),
    }
}

#[test]
fn signature_matches_rfc4231_case_2() {
    assert_eq!(
        signature("Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test]
async fn ok_is_sent_once_with_json_and_a_verified_signature() {
    const SECRET: &str = "s3cret-key";
    let server = PushServer::answering(|_, seen| {
        let mut problems = Vec::new();
        if seen.method != "POST" {
            problems.push(format!("method {}", seen.method));
        }
        if seen.path != "/hooks/push" {
            problems.push(format!("path {}", seen.path));
        }
        if seen.header("Content-Type") != Some("application/json") {
            problems.push(format!("content-type {:?}", seen.header("Content-Type")));
        }
        if !signature_ok(SECRET, seen.body.as_bytes(), seen.header(SIGNATURE_HEADER)) {
            problems.push("bad signature".into());
        }
        if problems.is_empty() {
            Answer::status(200).body("ok")
        } else {
            Answer::status(400).body(problems.join(", "))
        }
    });
    let client = client().unwrap();
    let before = unix_millis();
    let outcome = send(
        &client,
        &app(server.url_for("/hooks/push"), Some(SECRET)),
        &push(),
        in_ms(3000),
    )
    .await;
    assert_eq!(outcome, sent(200, 1));
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let got = parse_push(seen[0].body.as_bytes());
    assert!(got.sent_at >= before && got.sent_at <= unix_millis());
    assert_eq!(
        got,
        CallPush {
            sent_at: got.sent_at,
            ..push()
        }
    );
    assert_eq!(
        seen[0].header("User-Agent"),
        Some(concat!("kamailio-push/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn no_signature_header_without_secret() {
    let server = PushServer::answering(|_, _| Answer::status(204));
    let outcome = send_to(&server, "/", None, 3000).await;
    assert_eq!(outcome, sent(204, 1));
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header(SIGNATURE_HEADER), None);
    assert_eq!(
        parse_push(seen[0].body.as_bytes()).token,
        "device-token-123"
    );
}

#[tokio::test]
async fn server_error_is_retried_after_backoff_with_a_fresh_signed_body() {
    const SECRET: &str = "k";
    let server = PushServer::answering(|i, _| {
        if i == 0 {
            Answer::status(500).body("boom")
        } else {
            Answer::status(200)
        }
    });
    let started = Instant::now();
    let outcome = send(
        &client().unwrap(),
        &app(server.url_for("/p"), Some(SECRET)),
        &push(),
        in_ms(3000),
    )
    .await;
    assert_eq!(outcome, sent(200, 2));
    assert!(started.elapsed() >= Duration::from_millis(100));
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(95));
    for one in &seen {
        assert!(signature_ok(
            SECRET,
            one.body.as_bytes(),
            one.header(SIGNATURE_HEADER)
        ));
    }
    let (first, second) = (
        parse_push(seen[0].body.as_bytes()),
        parse_push(seen[1].body.as_bytes()),
    );
    assert!(second.sent_at >= first.sent_at + 95, "{first:?} {second:?}");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = PushServer::answering(|i, _| {
        if i == 0 {
            Answer::status(503).header("Retry-After", "1")
        } else {
            Answer::status(200)
        }
    });
    let started = Instant::now();
    let outcome = send_to(&server, "/", None, 4000).await;
    assert_eq!(outcome, sent(200, 2));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = server.requests();
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(990));
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_gives_up_at_once() {
    let server = PushServer::answering(|_, _| Answer::status(429).header("Retry-After", "30"));
    let started = Instant::now();
    let outcome = send_to(&server, "/", None, 2000).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    match outcome {
        Outcome::GaveUp {
            attempts: 1,
            last_error,
        } => assert!(last_error.contains("429"), "{last_error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn request_timeout_status_is_retried() {
    let server = PushServer::answering(|i, _| Answer::status(if i == 0 { 408 } else { 201 }));
    let outcome = send_to(&server, "/", None, 3000).await;
    assert_eq!(outcome, sent(201, 2));
}

#[tokio::test]
async fn bad_request_is_rejected_without_retry() {
    let server = PushServer::answering(|_, _| Answer::status(400).body("missing token"));
    let outcome = send_to(&server, "/", None, 3000).await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            status: 400,
            body: "missing token".into()
        }
    );
    // Give a wrongly scheduled retry the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn only_gone_means_the_token_is_dead_by_default() {
    // 410: the token is dead. 404 (a wrong path, a deploy): a rejected push, the device is kept.
    for (status, dead) in [(410, true), (404, false)] {
        let server = PushServer::answering(move |_, _| Answer::status(status).body("unregistered"));
        let outcome = send_to(&server, "/", None, 3000).await;
        let body = "unregistered".to_string();
        let expected = if dead {
            Outcome::TokenDead { status, body }
        } else {
            Outcome::Rejected { status, body }
        };
        assert_eq!(outcome, expected);
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn an_app_can_say_which_statuses_mean_dead() {
    let server = PushServer::answering(|_, _| Answer::status(404).body("no such device"));
    let mut app = app(server.url_for("/"), None);
    app.dead_statuses = vec![410, 404];
    let outcome = send(&client().unwrap(), &app, &push(), in_ms(3000)).await;
    assert!(
        matches!(outcome, Outcome::TokenDead { status: 404, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn redirect_is_rejected_and_not_followed() {
    // The Location names this same server, whose port is known only once it runs.
    let location = Arc::new(Mutex::new(String::new()));
    let target = Arc::clone(&location);
    let server = PushServer::answering(move |_, seen| {
        if seen.path == "/elsewhere" {
            Answer::status(200)
        } else {
            Answer::status(302).header("Location", target.lock().unwrap().clone())
        }
    });
    *location.lock().unwrap() = server.url_for("/elsewhere");
    let outcome = send_to(&server, "/hook", None, 3000).await;
    assert!(
        matches!(outcome, Outcome::Rejected { status: 302, .. }),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, vec!["/hook".to_string()]);
}

#[tokio::test]
async fn connection_refused_gives_up_by_the_deadline() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let started = Instant::now();
    let outcome = send(
        &client().unwrap(),
        &app(format!("http://127.0.0.1:{port}/"), None),
        &push(),
        in_ms(500),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(700));
    match outcome {
        Outcome::GaveUp {
            attempts,
            last_error,
        } => {
            assert!(attempts >= 2, "{attempts}");
            assert!(
                last_error.to_lowercase().contains("connect"),
                "{last_error}"
            );
            assert!(!last_error.contains("127.0.0.1"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slow_server_gives_up_by_the_deadline() {
    let server = PushServer::answering(|_, _| Answer::status(200).delay(Duration::from_secs(3)));
    let started = Instant::now();
    let outcome = send_to(&server, "/", None, 800).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1200), "{took:?}");
    assert!(took >= Duration::from_millis(790), "{took:?}");
    match outcome {
        Outcome::GaveUp {
            attempts: 1,
            last_error,
        } => assert!(last_error.contains("timed out"), "{last_error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn long_rejection_body_is_cut_to_512_bytes() {
    let long: String = (0..2000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sent = long.clone();
    let server = PushServer::answering(move |_, _| Answer::status(400).body(sent.clone()));
    let outcome = send_to(&server, "/", None, 3000).await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            status: 400,
            body: long[..512].to_string()
        }
    );
}

#[tokio::test]
async fn passed_deadline_and_bad_url_make_no_request() {
    let server = PushServer::answering(|_, _| Answer::status(200));
    let outcome = send(
        &client().unwrap(),
        &app(server.url_for("/"), None),
        &push(),
        Instant::now(),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::GaveUp { attempts: 0, .. }),
        "{outcome:?}"
    );
    for url in ["ftp://example.com/", "not a url"] {
        let outcome = send(
            &client().unwrap(),
            &app(url.into(), None),
            &push(),
            in_ms(3000),
        )
        .await;
        match outcome {
            Outcome::GaveUp {
                attempts: 0,
                last_error,
            } => assert!(last_error.contains("invalid webhook URL"), "{last_error}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.requests().len(), 0);
}
