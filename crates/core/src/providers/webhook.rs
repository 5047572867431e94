//! The "webhook" push provider: the operator's own HTTP endpoint.
//!
//! One push is one HTTP POST of a JSON [`CallPush`] to the app's URL, signed with HMAC-SHA256 in
//! [`SIGNATURE_HEADER`] when the app has a secret. [`send`] retries transient failures (408, 429,
//! 5xx, connection errors, timeouts) with exponential backoff, but never past the call's deadline,
//! and reports how the push ended as an [`Outcome`]. This module does not log: the caller does.

use super::http::{
    body_text, drain, http_error, parse_retry_after, read_limited, retryable, send_bounded,
    unix_millis, ConnectTimeoutText, RequestError, MAX_ATTEMPT_TIME, MAX_BODY_TEXT,
};
use super::{Backoff, CallPush, Outcome};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, Instant};

/// A configured webhook app.
#[derive(Clone, Debug)]
pub struct WebhookApp {
    pub id: String,
    /// `http://` or `https://`.
    pub url: String,
    pub secret: Option<String>,
}

/// Name of the signature header; value "sha256=<lowercase hex HMAC-SHA256(secret, body)>".
pub const SIGNATURE_HEADER: &str = "X-Push-Signature";

/// Re-exported here, where it was first made: the engine builds its HTTP client through it.
pub use super::http::client;

/// Hex HMAC-SHA256 of body with secret (lowercase, without the "sha256=" prefix of the header).
pub fn signature(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length, so this cannot happen; stay panic-free anyway.
        Err(_) => String::new(),
    }
}

/// Sends one push, retrying within `deadline`:
/// - 2xx -> Sent
/// - 404/410 -> TokenDead (final), other 4xx except 408/429 -> Rejected (final), 3xx -> Rejected
///   (final); statuses outside 2xx-5xx -> Rejected (final)
/// - 408, 429, 5xx, connection errors, timeouts -> retry with exponential backoff starting at
///   100 ms, doubling, capped at 2 s; a Retry-After header in integer seconds makes the wait at
///   least that long. Each attempt's timeout is min(5 s, time left). When the next attempt could
///   only start at or after the deadline, no time is spent sleeping: GaveUp with the last error.
///
/// Body: JSON of `push` with `sent_at` refreshed per attempt (a signature covers exactly the bytes
/// sent); Content-Type application/json; [`SIGNATURE_HEADER`] when the app has a secret.
pub async fn send(
    client: &reqwest::Client,
    app: &WebhookApp,
    push: &CallPush,
    deadline: Instant,
) -> Outcome {
    let url = match parse_url(&app.url) {
        Ok(url) => url,
        Err(error) => {
            return Outcome::GaveUp {
                attempts: 0,
                last_error: error,
            }
        }
    };
    let mut attempts: u32 = 0;
    let mut backoff = Backoff::default();
    let mut last_error = String::from("the deadline had passed before the first attempt");
    loop {
        let now = Instant::now();
        let left = match deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => left,
            _ => {
                return Outcome::GaveUp {
                    attempts,
                    last_error,
                }
            }
        };
        let body = match attempt_body(push) {
            Ok(body) => body,
            Err(error) => {
                return Outcome::GaveUp {
                    attempts,
                    last_error: error,
                }
            }
        };
        attempts = attempts.saturating_add(1);
        // now + left is the deadline itself, so an attempt never outlives it.
        let attempt_end = now + left.min(MAX_ATTEMPT_TIME);
        let answer = attempt(client, &url, app.secret.as_deref(), body, attempt_end).await;
        let retry_after = match answer {
            WebhookReply::Sent(status) => return Outcome::Sent { status, attempts },
            WebhookReply::TokenDead(status, body) => return Outcome::TokenDead { status, body },
            WebhookReply::Rejected(status, body) => return Outcome::Rejected { status, body },
            WebhookReply::Fatal(error) => {
                return Outcome::GaveUp {
                    attempts,
                    last_error: error,
                }
            }
            WebhookReply::Retry { error, retry_after } => {
                last_error = error;
                retry_after
            }
        };
        if !backoff.wait(retry_after, deadline).await {
            return Outcome::GaveUp {
                attempts,
                last_error,
            };
        }
    }
}

/// How one attempt ended.
enum WebhookReply {
    Sent(u16),
    TokenDead(u16, String),
    Rejected(u16, String),
    /// Worth another attempt: error text and the server's Retry-After, if any.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The request cannot be made at all; retrying would not help.
    Fatal(String),
}

async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    secret: Option<&str>,
    body: Vec<u8>,
    end: Instant,
) -> WebhookReply {
    let time = end.saturating_duration_since(Instant::now());
    let mut request = client
        .post(url.clone())
        .timeout(time)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        request = request.header(
            SIGNATURE_HEADER,
            format!("sha256={}", signature(secret, &body)),
        );
    }
    let request = request.body(body);
    let response = match send_bounded(request, end, time, ConnectTimeoutText::WithLimit).await {
        Ok(response) => response,
        Err(RequestError::Fatal(error)) => return WebhookReply::Fatal(error),
        Err(RequestError::Retry(error)) => {
            return WebhookReply::Retry {
                error,
                retry_after: None,
            }
        }
    };
    let status = response.status();
    let code = status.as_u16();
    if status.is_success() {
        drain(response, end).await;
        return WebhookReply::Sent(code);
    }
    let retry_after = parse_retry_after(response.headers());
    let body = body_text(&read_limited(response, MAX_BODY_TEXT, end).await);
    match code {
        404 | 410 => WebhookReply::TokenDead(code, body),
        _ if retryable(code) => WebhookReply::Retry {
            error: http_error(code, &body),
            retry_after,
        },
        _ => WebhookReply::Rejected(code, body),
    }
}

fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
    // The URL itself stays out of error texts: it may carry credentials.
    let url = reqwest::Url::parse(raw).map_err(|e| format!("invalid webhook URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "invalid webhook URL: scheme {other:?} is not http or https"
        )),
    }
}

/// The JSON body of one attempt: `push` with `sent_at` set to now.
fn attempt_body(push: &CallPush) -> Result<Vec<u8>, String> {
    let push = CallPush {
        sent_at: unix_millis(),
        ..push.clone()
    };
    serde_json::to_vec(&push).map_err(|e| format!("cannot encode the push as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::PushKind;
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    /// One request as the test server saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        at: Instant,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// What the test server answers.
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        delay: Duration,
    }

    impl Reply {
        fn status(status: u16) -> Reply {
            Reply {
                status,
                headers: Vec::new(),
                body: Vec::new(),
                delay: Duration::ZERO,
            }
        }

        fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
            self.body = body.into();
            self
        }

        fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
            self.headers.push((name, value.into()));
            self
        }

        fn delay(mut self, delay: Duration) -> Reply {
            self.delay = delay;
            self
        }
    }

    type Handler = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

    /// A real HTTP server on 127.0.0.1 that records every request and answers through `handler`
    /// (called with the request's index, from 0). Each request is answered on its own thread so
    /// a slow answer does not hold the others up.
    struct TestServer {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        server: Arc<tiny_http::Server>,
        accept: Option<JoinHandle<()>>,
    }

    impl TestServer {
        fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> TestServer {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
            let addr = server.server_addr().to_ip().expect("ip address");
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Handler> = Arc::new(handler);
            let accept = {
                let server = Arc::clone(&server);
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    for mut request in server.incoming_requests() {
                        let at = Instant::now();
                        let mut body = Vec::new();
                        let _ = request.as_reader().read_to_end(&mut body);
                        let one = Seen {
                            method: request.method().to_string(),
                            path: request.url().to_string(),
                            headers: request
                                .headers()
                                .iter()
                                .map(|h| (h.field.to_string(), h.value.to_string()))
                                .collect(),
                            body,
                            at,
                        };
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(one.clone());
                            seen.len() - 1
                        };
                        let handler = Arc::clone(&handler);
                        std::thread::spawn(move || {
                            let reply = handler(index, &one);
                            std::thread::sleep(reply.delay);
                            let mut response = tiny_http::Response::from_data(reply.body)
                                .with_status_code(reply.status);
                            for (name, value) in reply.headers {
                                response = response.with_header(
                                    tiny_http::Header::from_bytes(
                                        name.as_bytes(),
                                        value.as_bytes(),
                                    )
                                    .expect("header"),
                                );
                            }
                            let _ = request.respond(response);
                        });
                    }
                })
            };
            TestServer {
                base: format!("http://{addr}"),
                seen,
                server,
                accept: Some(accept),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{}", self.base, path)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(accept) = self.accept.take() {
                let _ = accept.join();
            }
        }
    }

    fn app(url: String, secret: Option<&str>) -> WebhookApp {
        WebhookApp {
            id: "acme".into(),
            url,
            secret: secret.map(String::from),
        }
    }

    fn push() -> CallPush {
        CallPush {
            kind: PushKind::Call,
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            caller_uri: "sip:alice@example.com".into(),
            caller_name: Some("Alice \"A\" Ünïcode".into()),
            callee_aor: "sip:bob@example.com".into(),
            token: "device-token-123".into(),
            app_id: "acme".into(),
            provider: "webhook".into(),
            sent_at: 0,
            expires_at: 1_900_000_000,
        }
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
        let server = TestServer::start(|_, seen| {
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
            if !signature_ok(SECRET, &seen.body, seen.header(SIGNATURE_HEADER)) {
                problems.push("bad signature".into());
            }
            if problems.is_empty() {
                Reply::status(200).body("ok")
            } else {
                Reply::status(400).body(problems.join(", "))
            }
        });
        let client = client().unwrap();
        let before = unix_millis();
        let outcome = send(
            &client,
            &app(server.url("/hooks/push"), Some(SECRET)),
            &push(),
            in_ms(3000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 200,
                attempts: 1
            }
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let got = parse_push(&seen[0].body);
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
        let server = TestServer::start(|_, _| Reply::status(204));
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(3000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 204,
                attempts: 1
            }
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header(SIGNATURE_HEADER), None);
        assert_eq!(parse_push(&seen[0].body).token, "device-token-123");
    }

    #[tokio::test]
    async fn server_error_is_retried_after_backoff_with_a_fresh_signed_body() {
        const SECRET: &str = "k";
        let server = TestServer::start(|i, _| {
            if i == 0 {
                Reply::status(500).body("boom")
            } else {
                Reply::status(200)
            }
        });
        let started = Instant::now();
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/p"), Some(SECRET)),
            &push(),
            in_ms(3000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 200,
                attempts: 2
            }
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(95));
        for one in &seen {
            assert!(signature_ok(
                SECRET,
                &one.body,
                one.header(SIGNATURE_HEADER)
            ));
        }
        let (first, second) = (parse_push(&seen[0].body), parse_push(&seen[1].body));
        assert!(second.sent_at >= first.sent_at + 95, "{first:?} {second:?}");
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let server = TestServer::start(|i, _| {
            if i == 0 {
                Reply::status(503).header("Retry-After", "1")
            } else {
                Reply::status(200)
            }
        });
        let started = Instant::now();
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(4000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 200,
                attempts: 2
            }
        );
        assert!(started.elapsed() >= Duration::from_secs(1));
        let seen = server.seen();
        assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(990));
    }

    #[tokio::test]
    async fn retry_after_beyond_the_deadline_gives_up_at_once() {
        let server = TestServer::start(|_, _| Reply::status(429).header("Retry-After", "30"));
        let started = Instant::now();
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(2000),
        )
        .await;
        assert!(started.elapsed() < Duration::from_millis(500));
        match outcome {
            Outcome::GaveUp {
                attempts: 1,
                last_error,
            } => assert!(last_error.contains("429"), "{last_error}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn request_timeout_status_is_retried() {
        let server = TestServer::start(|i, _| Reply::status(if i == 0 { 408 } else { 201 }));
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(3000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Sent {
                status: 201,
                attempts: 2
            }
        );
    }

    #[tokio::test]
    async fn bad_request_is_rejected_without_retry() {
        let server = TestServer::start(|_, _| Reply::status(400).body("missing token"));
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(3000),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Rejected {
                status: 400,
                body: "missing token".into()
            }
        );
        // Give a wrongly scheduled retry the chance to show up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn gone_and_not_found_mean_the_token_is_dead() {
        for status in [410, 404] {
            let server = TestServer::start(move |_, _| Reply::status(status).body("unregistered"));
            let outcome = send(
                &client().unwrap(),
                &app(server.url("/"), None),
                &push(),
                in_ms(3000),
            )
            .await;
            assert_eq!(
                outcome,
                Outcome::TokenDead {
                    status,
                    body: "unregistered".into()
                }
            );
            assert_eq!(server.seen().len(), 1);
        }
    }

    #[tokio::test]
    async fn redirect_is_rejected_and_not_followed() {
        // The Location names this same server, whose port is known only once it runs.
        let location = Arc::new(Mutex::new(String::new()));
        let target = Arc::clone(&location);
        let server = TestServer::start(move |_, seen| {
            if seen.path == "/elsewhere" {
                Reply::status(200)
            } else {
                Reply::status(302).header("Location", target.lock().unwrap().clone())
            }
        });
        *location.lock().unwrap() = server.url("/elsewhere");
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/hook"), None),
            &push(),
            in_ms(3000),
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Rejected { status: 302, .. }),
            "{outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
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
        let server = TestServer::start(|_, _| Reply::status(200).delay(Duration::from_secs(3)));
        let started = Instant::now();
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(800),
        )
        .await;
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
        let server = TestServer::start(move |_, _| Reply::status(400).body(sent.clone()));
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
            &push(),
            in_ms(3000),
        )
        .await;
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
        let server = TestServer::start(|_, _| Reply::status(200));
        let outcome = send(
            &client().unwrap(),
            &app(server.url("/"), None),
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
        assert_eq!(server.seen().len(), 0);
    }
}
