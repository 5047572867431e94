//! The FCM provider's tests, against the test kit's FCM mock ([`FcmMock`]: Google's token
//! endpoint and FCM HTTP v1 over TLS, which check assertions, tokens and message shapes as Google
//! does); the scripts here decide what passes those checks gets. On top of the mock's checks,
//! [`Google`] checks, when a test ends, what this provider must send exactly.

use super::*;
use crate::providers::http::{client_builder, unix_millis, unix_secs};
use std::sync::OnceLock;
use testkit::mock_push::{
    service_account_json, FcmAccount, FcmAnswer, FcmMock, FcmSend, FcmTokenAnswer, RawAnswer,
    RsaKey, TestPki, FCM_CLIENT_EMAIL as EMAIL, FCM_PROJECT_ID as PROJECT,
};

const KEY_ID: &str = "0123456789abcdef";
const DEVICE: &str = "fcm-device-token:APA91b-xyz";

struct Keys {
    key: RsaKey,
    /// A different 2048-bit key: Google does not know it.
    other: RsaKey,
    /// Too small for ring (and Google).
    small: RsaKey,
}

/// RSA keys made once per test run by the test kit.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        key: RsaKey::generate(2048),
        other: RsaKey::generate(2048),
        small: RsaKey::generate(1024),
    })
}

/// The test CA and server certificate, made once per test run.
fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::create(&testkit::run_dir("fcm-provider-pki")))
}

/// The module's HTTP client, trusting the test CA.
fn client() -> reqwest::Client {
    let ca = reqwest::Certificate::from_der(&pki().ca_cert_der).unwrap();
    client_builder().add_root_certificate(ca).build().unwrap()
}

/// A line from the middle of a PEM: text that must never show up in errors.
fn secret_line(pem: &str) -> String {
    let lines: Vec<&str> = pem.lines().collect();
    lines[lines.len() / 2].to_string()
}

fn account() -> FcmAccount {
    FcmAccount {
        client_email: EMAIL.to_string(),
        project_id: PROJECT.to_string(),
        private_key_id: KEY_ID.to_string(),
        public_key_pem: keys().key.public_pem.clone(),
    }
}

/// Google on 127.0.0.1 (the test kit's FCM mock) that knows the test account's key.
struct Google {
    mock: FcmMock,
}

impl Google {
    /// `token` answers the valid token requests, `send` the valid sends (n from 0 for each).
    fn start(
        token: impl Fn(usize) -> FcmTokenAnswer + Send + Sync + 'static,
        send: impl Fn(usize, &FcmSend) -> FcmAnswer + Send + Sync + 'static,
    ) -> Google {
        let mock = FcmMock::start(pki(), Box::new(send));
        mock.set_token_script(Box::new(token));
        mock.add_account(account());
        Google { mock }
    }

    /// Issues 1-hour tokens; answers every send through `send`.
    fn with_sends(send: impl Fn(usize, &FcmSend) -> FcmAnswer + Send + Sync + 'static) -> Google {
        Google::start(|_| FcmTokenAnswer::Issue, send)
    }

    fn base(&self) -> String {
        self.mock.base_url()
    }

    fn token_requests(&self) -> usize {
        self.mock.token_requests().len()
    }

    /// The requests to the project's send path.
    fn sends(&self) -> Vec<FcmSend> {
        let path = format!("/v1/projects/{PROJECT}/messages:send");
        self.mock
            .sends()
            .into_iter()
            .filter(|s| s.path == path)
            .collect()
    }

    fn account_json(&self, private_pem: &str) -> String {
        service_account_json(&account(), private_pem, &self.mock.token_uri()).to_string()
    }

    fn sender_with_key(&self, private_pem: &str) -> FcmSender {
        let account = ServiceAccount::parse(&self.account_json(private_pem)).unwrap();
        FcmSender::new(account, &self.base(), client()).unwrap()
    }

    fn sender(&self) -> FcmSender {
        self.sender_with_key(&keys().key.private_pem)
    }
}

/// What this provider must send exactly (beyond what Google checks), checked when a test ends.
impl Drop for Google {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let now = unix_secs();
        for request in self.mock.token_requests() {
            assert_eq!(
                request.content_type.as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(request.grant_type.as_deref(), Some(GRANT_TYPE));
            assert_eq!(request.typ.as_deref(), Some("JWT"));
            assert_eq!(request.kid.as_deref(), Some(KEY_ID));
            assert_eq!(request.iss.as_deref(), Some(EMAIL));
            assert_eq!(request.scope.as_deref(), Some(SCOPE));
            let (iat, exp) = (request.iat.unwrap(), request.exp.unwrap());
            assert!(exp > iat && exp - iat <= 3600, "exp {exp} iat {iat}");
            assert!(iat + 60 >= now && iat <= now + 5, "iat {iat} now {now}");
        }
        for send in self.sends().iter().filter(|s| s.token_number > 0) {
            let problems = check_message(send);
            assert!(problems.is_empty(), "{problems:?}");
        }
    }
}

const UNAUTHENTICATED: &str = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;

/// What this provider's message must look like: its shape and types (the tests check the values).
fn check_message(seen: &FcmSend) -> Vec<String> {
    let mut problems = Vec::new();
    if seen.header("Content-Type") != Some("application/json") {
        problems.push(format!("content-type {:?}", seen.header("Content-Type")));
    }
    let v = &seen.body;
    if v.is_null() {
        return vec!["body is not JSON".into()];
    }
    let message = &v["message"];
    if message["token"].as_str().is_none_or(str::is_empty) {
        problems.push("no token".into());
    }
    match message["data"].as_object() {
        None => problems.push("no data".into()),
        Some(data) => {
            let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let expected = [
                "app_id",
                "callee_aor",
                "caller_name",
                "caller_uri",
                "call_id",
                "expires_at",
                "provider",
                "sent_at",
                "type",
            ];
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            if keys != expected {
                problems.push(format!("data keys {keys:?}"));
            }
            for (key, value) in data {
                if !value.is_string() {
                    problems.push(format!("data.{key} is not a string"));
                }
            }
        }
    }
    if message["android"]["priority"] != "high" {
        problems.push("android.priority is not high".into());
    }
    let ttl_ok = message["android"]["ttl"]
        .as_str()
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t >= 1);
    if !ttl_ok {
        problems.push(format!("android.ttl {}", message["android"]["ttl"]));
    }
    if message.as_object().map_or(0, |m| m.len()) != 3 {
        problems.push("extra message fields (a notification?)".into());
    }
    problems
}

fn push() -> CallPush {
    CallPush::sample(DEVICE, "acme-android", "fcm")
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn sent(attempts: u32) -> Outcome {
    Outcome::Sent {
        status: 200,
        attempts,
    }
}

/// Which access token (1 for the first issued) each send carried.
fn token_numbers(sends: &[FcmSend]) -> Vec<usize> {
    sends.iter().map(|s| s.token_number).collect()
}

/// `count` pushes at once, each with `ms` to go; their outcomes.
async fn send_concurrently(sender: &FcmSender, count: usize, ms: u64) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(&push(), in_ms(ms)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn raw(status: u16, body: &str) -> FcmAnswer {
    FcmAnswer::Raw(RawAnswer::json(status, body))
}

fn token_raw(status: u16, body: &str) -> FcmTokenAnswer {
    FcmTokenAnswer::Raw(RawAnswer::json(status, body))
}

#[test]
fn sender_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<FcmSender>();
}

#[tokio::test]
async fn sends_a_data_message_and_caches_the_token() {
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let sender = google.sender();
    assert_eq!(sender.project_id(), PROJECT);
    assert_eq!(sender.tokens_fetched(), 0);
    let before = unix_millis();
    let deadline = in_ms(30_000);
    assert_eq!(sender.send(&push(), deadline).await, sent(1));
    let after = unix_millis();
    let mut no_name = push();
    no_name.caller_name = None;
    assert_eq!(sender.send(&no_name, in_ms(20_000)).await, sent(1));
    assert_eq!(sender.clone().send(&push(), in_ms(20_000)).await, sent(1));
    assert_eq!(sender.tokens_fetched(), 1);
    assert_eq!(google.token_requests(), 1);

    let sends = google.sends();
    assert_eq!(sends.len(), 3);
    assert_eq!(token_numbers(&sends), [1, 1, 1]);
    let first = sends[0].body.clone();
    let message = &first["message"];
    assert_eq!(message["token"], DEVICE);
    let data = &message["data"];
    assert_eq!(data["call_id"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(data["caller_uri"], "sip:alice@example.com");
    assert_eq!(data["caller_name"], "Alice \"A\" Ünïcode");
    assert_eq!(data["callee_aor"], "sip:bob@example.com");
    assert_eq!(data["app_id"], "acme-android");
    assert_eq!(data["provider"], "fcm");
    assert_eq!(data["expires_at"], "1900000000");
    let sent_at: u64 = data["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= before && sent_at <= after, "{sent_at}");
    assert_eq!(message["android"]["priority"], "high");
    let ttl: u64 = message["android"]["ttl"]
        .as_str()
        .unwrap()
        .strip_suffix('s')
        .unwrap()
        .parse()
        .unwrap();
    let remaining = deadline.duration_since(sends[0].at).as_secs_f64();
    assert!(
        (ttl as f64 - remaining).abs() <= 1.0,
        "ttl {ttl}, {remaining}"
    );
    assert_eq!(sends[1].body["message"]["data"]["caller_name"], "");
    let ttl2 = sends[1].body["message"]["android"]["ttl"].clone();
    assert!(ttl2 == "19s" || ttl2 == "20s", "{ttl2}");
}

#[tokio::test]
async fn short_deadline_gives_a_ttl_of_at_least_one_second() {
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let sender = google.sender();
    assert_eq!(sender.send(&push(), in_ms(900)).await, sent(1));
    assert_eq!(google.sends()[0].body["message"]["android"]["ttl"], "1s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_share_one_token_fetch() {
    let google = Google::start(
        |_| {
            FcmTokenAnswer::Delay(
                Duration::from_millis(150),
                Box::new(FcmTokenAnswer::IssueFor(3599)),
            )
        },
        |_, _| FcmAnswer::Ok,
    );
    let sender = google.sender();
    for outcome in send_concurrently(&sender, 20, 5000).await {
        assert_eq!(outcome, sent(1));
    }
    assert_eq!(sender.tokens_fetched(), 1);
    assert_eq!(google.token_requests(), 1);
    assert_eq!(google.sends().len(), 20);
}

#[tokio::test]
async fn refused_token_is_renewed_once_and_the_message_sent_again() {
    // FCM no longer takes tok-1.
    let google = Google::with_sends(|_, send| {
        if send.token_number == 1 {
            raw(401, UNAUTHENTICATED)
        } else {
            FcmAnswer::Ok
        }
    });
    let sender = google.sender();
    let started = Instant::now();
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(2));
    // Renewed at once, without backoff.
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(sender.tokens_fetched(), 2);
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
    assert_eq!(sender.tokens_fetched(), 2);
    assert_eq!(token_numbers(&google.sends()), [1, 2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refusals_renew_the_token_once() {
    // FCM refuses tok-1 (slowly, so that all the sends hold it before any refusal comes).
    let google = Google::with_sends(|_, send| {
        if send.token_number == 1 {
            FcmAnswer::Delay(
                Duration::from_millis(100),
                Box::new(raw(403, UNAUTHENTICATED)),
            )
        } else {
            FcmAnswer::Ok
        }
    });
    let sender = google.sender();
    for outcome in send_concurrently(&sender, 10, 5000).await {
        assert_eq!(outcome, sent(2));
    }
    // One fetch of tok-1 shared by all, one renewal to tok-2 shared by all.
    assert_eq!(sender.tokens_fetched(), 2);
    assert_eq!(google.token_requests(), 2);
    let tokens = token_numbers(&google.sends());
    assert_eq!(tokens.len(), 20);
    assert_eq!(tokens.iter().filter(|t| **t == 1).count(), 10);
    assert_eq!(tokens.iter().filter(|t| **t == 2).count(), 10);
}

#[tokio::test]
async fn persistent_refusal_is_rejected_after_one_renewal() {
    for status in [401u16, 403] {
        let google = Google::with_sends(move |_, _| {
            raw(
                status,
                &format!(
                    r#"{{"error":{{"code":{status},"message":"SenderId mismatch","status":"PERMISSION_DENIED","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"SENDER_ID_MISMATCH"}}]}}}}"#
                ),
            )
        });
        let sender = google.sender();
        match sender.send(&push(), in_ms(3000)).await {
            Outcome::Rejected { status: got, body } => {
                assert_eq!(got, status);
                assert!(body.contains("SENDER_ID_MISMATCH"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sender.tokens_fetched(), 2);
        assert_eq!(google.token_requests(), 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(google.sends().len(), 2);
    }
}

#[tokio::test]
async fn unregistered_token_is_dead() {
    const UNREGISTERED: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
    let google = Google::with_sends(|_, _| raw(404, UNREGISTERED));
    let outcome = google.sender().send(&push(), in_ms(3000)).await;
    assert_eq!(
        outcome,
        Outcome::TokenDead {
            status: 404,
            body: UNREGISTERED.into()
        }
    );
    // UNREGISTERED decides even under another status.
    let body = UNREGISTERED.replace("404", "400");
    let answer = body.clone();
    let google = Google::with_sends(move |_, _| raw(400, &answer));
    let outcome = google.sender().send(&push(), in_ms(3000)).await;
    assert_eq!(outcome, Outcome::TokenDead { status: 400, body });
    assert_eq!(google.sends().len(), 1);
    // A Google NOT_FOUND error without UNREGISTERED (a wrong project in the URL answers this
    // way too): a rejected push, the device is kept.
    const NOT_FOUND: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#;
    let google = Google::with_sends(|_, _| raw(404, NOT_FOUND));
    let outcome = google.sender().send(&push(), in_ms(3000)).await;
    assert!(
        matches!(outcome, Outcome::Rejected { status: 404, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn not_found_without_a_google_error_is_not_a_dead_token() {
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let account = ServiceAccount::parse(&google.account_json(&keys().key.private_pem)).unwrap();
    let fcm_url = format!("{}/wrong-prefix", google.base());
    let sender = FcmSender::new(account, &fcm_url, client()).unwrap();
    match sender.send(&push(), in_ms(3000)).await {
        Outcome::Rejected { status: 404, body } => {
            assert!(body.contains("Not Found"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    // One token request, then the one send, to the wrong path.
    let tokens = google.mock.token_requests();
    let sends = google.mock.sends();
    assert_eq!(tokens.len(), 1);
    let paths: Vec<String> = sends.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [format!("/wrong-prefix/v1/projects/{PROJECT}/messages:send")]
    );
    assert!(tokens[0].at <= sends[0].at);
}

#[tokio::test]
async fn invalid_argument_is_rejected_after_one_attempt() {
    const INVALID: &str = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
    let google = Google::with_sends(|_, _| raw(400, INVALID));
    let outcome = google.sender().send(&push(), in_ms(3000)).await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            status: 400,
            body: INVALID.into()
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(google.sends().len(), 1);
}

#[tokio::test]
async fn long_error_body_is_cut_to_512_bytes() {
    let long = format!(
        r#"{{"error":{{"code":400,"message":"{}","status":"INVALID_ARGUMENT"}}}}"#,
        "é".repeat(1000)
    );
    let answer = long.clone();
    let google = Google::with_sends(move |_, _| raw(400, &answer));
    match google.sender().send(&push(), in_ms(3000)).await {
        Outcome::Rejected { status: 400, body } => {
            assert!(body.len() <= 512 && body.len() >= 510, "{}", body.len());
            assert!(long.starts_with(&body));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn quota_exceeded_waits_for_retry_after() {
    let google = Google::with_sends(|n, _| {
        if n == 0 {
            FcmAnswer::Raw(
                RawAnswer::json(429, r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}"#)
                    .header("Retry-After", "1"),
            )
        } else {
            FcmAnswer::Ok
        }
    });
    let sender = google.sender();
    let started = Instant::now();
    assert_eq!(sender.send(&push(), in_ms(4000)).await, sent(2));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let sends = google.sends();
    assert!(sends[1].at.duration_since(sends[0].at) >= Duration::from_millis(990));
    assert_eq!(sender.tokens_fetched(), 1);
}

#[tokio::test]
async fn unavailable_forever_gives_up_by_the_deadline() {
    let google = Google::with_sends(|_, _| {
        raw(
            503,
            r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#,
        )
    });
    let sender = google.sender();
    let started = Instant::now();
    let outcome = sender.send(&push(), in_ms(800)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1200), "{took:?}");
    match outcome {
        Outcome::GaveUp {
            attempts,
            last_error,
        } => {
            assert!(attempts >= 3, "{attempts}");
            assert!(last_error.contains("503"), "{last_error}");
            assert!(last_error.contains("UNAVAILABLE"), "{last_error}");
            assert!(!last_error.contains('\n'), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sender.tokens_fetched(), 1);
    assert!(google.sends().len() >= 3);
}

#[tokio::test]
async fn internal_error_is_retried() {
    let google = Google::with_sends(|n, _| {
        if n == 0 {
            raw(500, r#"{"error":{"code":500,"status":"INTERNAL"}}"#)
        } else {
            FcmAnswer::Ok
        }
    });
    let started = Instant::now();
    assert_eq!(google.sender().send(&push(), in_ms(3000)).await, sent(2));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn key_refused_by_the_token_endpoint_is_rejected() {
    // Signed with a key Google does not know: the mock's verification fails.
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let sender = google.sender_with_key(&keys().other.private_pem);
    match sender.send(&push(), in_ms(3000)).await {
        Outcome::Rejected { status: 400, body } => {
            assert!(body.starts_with("token endpoint: "), "{body}");
            assert!(body.contains("invalid_grant"), "{body}");
            assert!(body.contains("Invalid JWT Signature"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    // And a 401 invalid_client from the token endpoint.
    let google = Google::start(
        |_| {
            token_raw(
                401,
                r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#,
            )
        },
        |_, _| FcmAnswer::Ok,
    );
    let sender = google.sender();
    match sender.send(&push(), in_ms(3000)).await {
        Outcome::Rejected { status: 401, body } => {
            assert!(body.contains("invalid_client"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(google.token_requests(), 1);
    assert!(google.sends().is_empty());
    assert_eq!(sender.tokens_fetched(), 0);
}

#[tokio::test]
async fn token_endpoint_down_gives_up_by_the_deadline() {
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let mut account = ServiceAccount::parse(&google.account_json(&keys().key.private_pem)).unwrap();
    account.token_uri = format!("http://127.0.0.1:{}/token", closed_port());
    let sender = FcmSender::new(account, &google.base(), client()).unwrap();
    let started = Instant::now();
    let outcome = sender.send(&push(), in_ms(500)).await;
    assert!(started.elapsed() < Duration::from_millis(700));
    match outcome {
        Outcome::GaveUp {
            attempts,
            last_error,
        } => {
            assert!(attempts >= 2, "{attempts}");
            assert!(last_error.contains("access token"), "{last_error}");
            assert!(
                last_error.to_lowercase().contains("connect"),
                "{last_error}"
            );
            assert!(!last_error.contains("127.0.0.1"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(google.sends().is_empty());
    assert_eq!(sender.tokens_fetched(), 0);
}

#[tokio::test]
async fn token_endpoint_unavailable_then_back() {
    let google = Google::start(
        |n| {
            if n == 0 {
                token_raw(503, r#"{"error":"backend"}"#)
            } else {
                FcmTokenAnswer::Issue
            }
        },
        |_, _| FcmAnswer::Ok,
    );
    let sender = google.sender();
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(2));
    assert_eq!(sender.tokens_fetched(), 1);
    assert_eq!(google.token_requests(), 2);
}

#[tokio::test]
async fn expired_token_is_renewed_on_the_next_send() {
    let google = Google::start(|_| FcmTokenAnswer::IssueFor(1), |_, _| FcmAnswer::Ok);
    let sender = google.sender();
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
    assert_eq!(sender.tokens_fetched(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
    assert_eq!(sender.tokens_fetched(), 2);
    assert_eq!(token_numbers(&google.sends()), [1, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unexpired_token_is_still_used_when_renewal_fails() {
    // Valid 4 s: renewal due after 2 s, still usable until 3 s. Renewals fail slowly.
    let google = Google::start(
        |n| {
            if n == 0 {
                FcmTokenAnswer::IssueFor(4)
            } else {
                FcmTokenAnswer::Delay(Duration::from_millis(200), Box::new(token_raw(503, "")))
            }
        },
        |_, _| FcmAnswer::Ok,
    );
    let sender = google.sender();
    assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // One renewal attempt; the sends that waited for it share its failure and, like it, use
    // the old token, each at its first attempt.
    for outcome in send_concurrently(&sender, 5, 3000).await {
        assert_eq!(outcome, sent(1));
    }
    assert_eq!(google.token_requests(), 2);
    assert_eq!(sender.tokens_fetched(), 1);
    assert!(google.sends().iter().all(|s| s.token_number == 1));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Now too close to expiry: no token, no message.
    match sender.send(&push(), in_ms(300)).await {
        Outcome::GaveUp { last_error, .. } => {
            assert!(last_error.contains("503"), "{last_error}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(google.sends().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_waiting_for_a_failed_fetch_do_not_each_retry_it_at_once() {
    // The token endpoint fails after 100 ms every time.
    let google = Google::start(
        |_| FcmTokenAnswer::Delay(Duration::from_millis(100), Box::new(token_raw(503, ""))),
        |_, _| FcmAnswer::Ok,
    );
    let sender = google.sender();
    let started = Instant::now();
    for outcome in send_concurrently(&sender, 10, 1000).await {
        match outcome {
            Outcome::GaveUp { last_error, .. } => {
                assert!(last_error.contains("503"), "{last_error}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_millis(1300));
    // Fetches come in rounds spaced by the backoff (about 4 in 1 s), not one after the
    // other for every waiting send (about 10).
    let requests = google.token_requests();
    assert!((2..=5).contains(&requests), "{requests}");
}

#[tokio::test]
async fn passed_deadline_makes_no_request() {
    let google = Google::with_sends(|_, _| FcmAnswer::Ok);
    let outcome = google.sender().send(&push(), Instant::now()).await;
    assert!(
        matches!(outcome, Outcome::GaveUp { attempts: 0, .. }),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(google.token_requests(), 0);
    assert!(google.sends().is_empty());
}

#[test]
fn new_checks_the_fcm_url() {
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "p",
        "private_key": keys().key.private_pem,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    let account = ServiceAccount::parse(&json).unwrap();
    assert_eq!(account.private_key_id, None);
    let client = client();
    for bad in [
        "",
        "fcm.googleapis.com",
        "ftp://fcm.googleapis.com",
        "https://x/?a=b",
    ] {
        let error = FcmSender::new(account.clone(), bad, client.clone())
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(error.contains("FCM URL"), "{error}");
    }
    for good in [
        DEFAULT_FCM_URL,
        "https://fcm.googleapis.com/",
        "http://127.0.0.1:9",
    ] {
        let sender = FcmSender::new(account.clone(), good, client.clone()).unwrap();
        assert_eq!(sender.project_id(), "p");
    }
    assert_eq!(
        send_url("https://proxy.example/fcm/", "a/b c")
            .unwrap()
            .as_str(),
        "https://proxy.example/fcm/v1/projects/a%2Fb%20c/messages:send"
    );
}

#[test]
fn service_account_parse_errors_are_readable_and_keyless() {
    let k = keys();
    let good: serde_json::Value = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": k.key.private_pem,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let account = ServiceAccount::parse(&good.to_string()).unwrap();
    assert_eq!(account.project_id, PROJECT);
    assert_eq!(account.client_email, EMAIL);
    assert_eq!(account.private_key_id.as_deref(), Some(KEY_ID));
    assert_eq!(account.token_uri, "https://oauth2.googleapis.com/token");
    assert_eq!(account.private_key, k.key.private_pem);
    let shown = format!("{account:?}");
    assert!(!shown.contains(&secret_line(&k.key.private_pem)), "{shown}");
    assert!(shown.contains(PROJECT));

    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[field] = value;
        v.to_string()
    };
    let without = |field: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    };
    // The type may be absent.
    assert!(ServiceAccount::parse(&without("type")).is_ok());
    let truncated_key: String = k
        .key
        .private_pem
        .chars()
        .take(k.key.private_pem.len() / 2)
        .collect();
    let cases: Vec<(String, &str)> = vec![
        (without("project_id"), "project_id is missing"),
        (without("client_email"), "client_email is missing"),
        (without("private_key"), "private_key is missing"),
        (without("token_uri"), "token_uri is missing"),
        (
            with("project_id", "  ".into()),
            "project_id is missing or empty",
        ),
        (
            with("client_email", 7.into()),
            "client_email is not a string",
        ),
        (
            with("type", "authorized_user".into()),
            "\"authorized_user\" is not \"service_account\"",
        ),
        (
            with("type", k.key.private_pem.clone().into()),
            "is not \"service_account\"",
        ),
        (
            with("token_uri", "ftp://x/token".into()),
            "token_uri has scheme",
        ),
        (
            with("token_uri", "oauth2.googleapis.com".into()),
            "token_uri is not a valid URL",
        ),
        (
            with("private_key", "not a key".into()),
            "not a PEM RSA private key",
        ),
        (
            with("private_key", truncated_key.into()),
            "not a PEM RSA private key",
        ),
        (
            with("private_key", k.key.public_pem.clone().into()),
            "cannot sign RS256",
        ),
        (
            with("private_key", k.small.private_pem.clone().into()),
            "cannot sign RS256",
        ),
        ("[1, 2]".into(), "not a JSON object"),
        ("".into(), "not JSON"),
        (good.to_string().replace("\"type\"", "type"), "not JSON"),
        (
            good.to_string()[..good.to_string().len() / 2].to_string(),
            "not JSON",
        ),
    ];
    for (json, expected) in cases {
        let error = ServiceAccount::parse(&json).expect_err(expected);
        assert!(
            error.starts_with("invalid FCM service account: "),
            "{error}"
        );
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        for pem in [&k.key.private_pem, &k.key.public_pem, &k.small.private_pem] {
            assert!(!error.contains(&secret_line(pem)), "{error}");
            assert!(!error.contains("BEGIN"), "{error}");
        }
        assert!(error.len() < 300, "{error}");
    }
}

#[test]
fn from_file_names_the_path() {
    let google_json = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key": keys().key.private_pem,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    let dir = std::env::temp_dir().join(format!(
        "kamailio-push-fcm-file-{}-{}",
        std::process::id(),
        unix_millis()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("sa.json");
    std::fs::write(&good, &google_json).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, google_json.replace("service_account", "x")).unwrap();
    let missing = dir.join("missing.json");
    let parsed = ServiceAccount::from_file(&good);
    let bad_error = ServiceAccount::from_file(&bad).unwrap_err();
    let missing_error = ServiceAccount::from_file(&missing).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(parsed.unwrap().project_id, PROJECT);
    assert!(
        bad_error.contains(&bad.display().to_string()),
        "{bad_error}"
    );
    assert!(bad_error.contains("service_account"), "{bad_error}");
    assert!(
        missing_error.contains(&missing.display().to_string()),
        "{missing_error}"
    );
}

#[test]
fn message_and_end_of_call_pushes_are_high_priority_data_with_their_fields() {
    let mut push = CallPush::sample("tok", "app", "fcm");
    push.kind = crate::providers::PushKind::Cancel;
    push.reason = Some(crate::providers::EndReason::AnsweredElsewhere);
    let body: serde_json::Value =
        serde_json::from_slice(&message_body(&push, Duration::from_secs(30)).unwrap()).unwrap();
    let message = &body["message"];
    assert_eq!(message["data"]["type"], "cancel");
    assert_eq!(message["data"]["reason"], "answered_elsewhere");
    assert_eq!(message["data"]["call_id"], push.call_id);
    assert!(message["data"].get("text").is_none() && message["data"].get("alert").is_none());
    assert_eq!(message["android"]["priority"], "high");

    push.kind = crate::providers::PushKind::Message;
    push.reason = None;
    push.text = Some("hello".into());
    let body: serde_json::Value =
        serde_json::from_slice(&message_body(&push, Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(body["message"]["data"]["type"], "message");
    assert_eq!(body["message"]["data"]["text"], "hello");
    assert!(body["message"]["data"].get("reason").is_none());
    assert_eq!(body["message"]["android"]["priority"], "high");
    // Every data value is a string, as FCM requires.
    assert!(body["message"]["data"]
        .as_object()
        .unwrap()
        .values()
        .all(serde_json::Value::is_string));
}
