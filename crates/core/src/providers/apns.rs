//! Apple Push Notification service over our own HTTP/2 client (reqwest, HTTP/2 only, ALPN "h2"):
//! `POST /3/device/<token>` to api.push.apple.com or api.sandbox.push.apple.com, one connection
//! per app and environment, reused and multiplexed. Token auth (an ES256 JWT from the .p8 key,
//! reused for 55 minutes, within Apple's 20 to 60) or certificate auth (PEM or PKCS#12). The
//! payload is built with apns-h2's notification builder; the request (headers from its options,
//! the JSON body) is made here, so the answer's status, `apns-id`, `Retry-After` and JSON `reason`
//! are all read.

use super::http::{self, RequestError};
use super::{CallPush, Outcome, PushKind};
use crate::config::ApnsAuth;
use apns_h2::request::payload::{Payload, PayloadLike};
use apns_h2::{
    CollapseId, DefaultNotificationBuilder, NotificationBuilder, NotificationOptions, Priority,
    PushType,
};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One attempt never waits longer than this for Apple.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A provider token is signed again after this long (Apple: not more often than every 20
/// minutes, refused after 60).
const JWT_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// Apple's hosts (port 443).
pub const PRODUCTION_HOST: &str = "api.push.apple.com";
pub const SANDBOX_HOST: &str = "api.sandbox.push.apple.com";
/// An idle connection is pinged this often, so that it stays usable between calls.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// The longest `reason` kept from an answer.
const MAX_REASON: usize = 64;

/// Where one push goes.
#[derive(Clone, Debug)]
pub struct ApnsTarget {
    pub token: String,
    /// The device's `remote` token (dual-token devices), for pushes to the app's own topic.
    pub alert_token: Option<String>,
    /// The device said pn-provider=apns.dev.
    pub sandbox: bool,
    /// The device's pn-param (`TEAMID.bundle.id.voip`), naming its topic.
    pub param: Option<String>,
}

/// How the module proves itself to Apple, read from the app's files.
enum Credentials {
    /// The .p8 key and the provider token signed with it (and when).
    Token {
        key: jsonwebtoken::EncodingKey,
        key_id: String,
        team_id: String,
        jwt: Mutex<Option<(String, Instant)>>,
    },
    /// The client certificate (chain) and its key, as PEM; `cert_file` names the file in errors.
    Certificate {
        identity_pem: Vec<u8>,
        cert_file: String,
    },
}

impl Credentials {
    /// Reads the key or certificate file. A token key is tried by signing a provider token with
    /// it, so that an unusable key is reported now.
    fn load(auth: &ApnsAuth) -> Result<Credentials, String> {
        match auth {
            ApnsAuth::Token {
                key_file,
                key_id,
                team_id,
            } => {
                let pem = std::fs::read(key_file)
                    .map_err(|e| format!("cannot read key_file {}: {e}", key_file.display()))?;
                let unusable = |e: jsonwebtoken::errors::Error| {
                    format!(
                        "key_file {} is not a usable .p8 (PKCS#8 EC) key: {e}",
                        key_file.display()
                    )
                };
                let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).map_err(unusable)?;
                let jwt =
                    provider_token(&key, key_id, team_id, http::unix_secs()).map_err(unusable)?;
                Ok(Credentials::Token {
                    key,
                    key_id: key_id.clone(),
                    team_id: team_id.clone(),
                    jwt: Mutex::new(Some((jwt, Instant::now()))),
                })
            }
            ApnsAuth::Certificate {
                cert_file,
                password,
            } => {
                let bytes = std::fs::read(cert_file)
                    .map_err(|e| format!("cannot read cert_file {}: {e}", cert_file.display()))?;
                let identity_pem = if bytes.windows(5).any(|w| w == b"-----") {
                    // PEM: the certificate (chain) and its key in one file.
                    identity_pem(&bytes).ok_or_else(|| {
                        format!(
                            "cert_file {} (PEM) is not usable: it needs a CERTIFICATE and a PRIVATE KEY",
                            cert_file.display()
                        )
                    })?
                } else {
                    pkcs12_to_pem(
                        &bytes,
                        password.as_ref().map_or("", crate::config::Secret::expose),
                    )
                    .map_err(|e| {
                        format!(
                            "cert_file {} (PKCS#12) is not usable (wrong cert_password?): {e}",
                            cert_file.display()
                        )
                    })?
                };
                Ok(Credentials::Certificate {
                    identity_pem,
                    cert_file: cert_file.display().to_string(),
                })
            }
        }
    }

    /// The provider token for the next request (token auth): the current one while it is younger
    /// than 55 minutes, else a new one.
    fn bearer(&self) -> Result<Option<String>, String> {
        let Credentials::Token {
            key,
            key_id,
            team_id,
            jwt,
        } = self
        else {
            return Ok(None);
        };
        let mut jwt = jwt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, made)) = jwt.as_ref() {
            if made.elapsed() < JWT_LIFETIME {
                return Ok(Some(token.clone()));
            }
        }
        let token = provider_token(key, key_id, team_id, http::unix_secs())
            .map_err(|e| format!("cannot sign the provider token: {e}"))?;
        *jwt = Some((token.clone(), Instant::now()));
        Ok(Some(token))
    }
}

/// An APNs provider token: ES256, `kid` the key id, `iss` the team, `iat` now.
fn provider_token(
    key: &jsonwebtoken::EncodingKey,
    key_id: &str,
    team_id: &str,
    iat: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = None;
    header.kid = Some(key_id.to_string());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({ "iss": team_id, "iat": iat }),
        key,
    )
}

/// The PEM blocks of a certificate file that make a TLS client identity: its certificates and
/// its private key (PKCS#8, PKCS#1 or SEC1), in the file's order; anything else (EC parameters,
/// openssl's "Bag Attributes" lines) left out. None without a certificate or without a key.
fn identity_pem(file: &[u8]) -> Option<Vec<u8>> {
    const KINDS: [&str; 4] = [
        "CERTIFICATE",
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
    ];
    let text = String::from_utf8_lossy(file);
    let mut out = String::new();
    let (mut certs, mut keys) = (0, 0);
    let mut rest = text.as_ref();
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            break;
        };
        let block_end = begin + 11 + end + end_marker.len();
        if KINDS.contains(&label) {
            out.push_str(&rest[begin..block_end]);
            out.push('\n');
            if label == "CERTIFICATE" {
                certs += 1;
            } else {
                keys += 1;
            }
        }
        rest = &rest[block_end..];
    }
    (certs > 0 && keys == 1).then(|| out.into_bytes())
}

/// A PKCS#12 file's first key and its certificate chain, as PEM.
fn pkcs12_to_pem(der: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let store = p12_keystore::KeyStore::from_pkcs12(der, password).map_err(|e| e.to_string())?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| String::from("it holds no private key with its certificate"))?;
    if chain.chain().is_empty() {
        return Err(String::from("it holds no certificate for its key"));
    }
    let mut pem = String::new();
    for cert in chain.chain() {
        pem.push_str(&pem_block("CERTIFICATE", cert.as_der()));
    }
    pem.push_str(&pem_block("PRIVATE KEY", chain.key()));
    Ok(pem.into_bytes())
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Where the requests go instead of Apple's hosts at port 443 (unit tests: the local APNs at
/// 127.0.0.1, trusting the test CA); empty in the module.
#[derive(Clone, Default)]
struct Route {
    /// Apple's host names resolve to this address, and URLs carry its port.
    addr: Option<SocketAddr>,
    /// Another root certificate (DER) to trust.
    root_der: Option<Vec<u8>>,
}

#[derive(Default)]
struct Connections {
    production: Option<reqwest::Client>,
    sandbox: Option<reqwest::Client>,
}

struct Inner {
    bundle_id: String,
    auth: ApnsAuth,
    sandbox_default: bool,
    voip: bool,
    credentials: Mutex<Arc<Credentials>>,
    connections: Mutex<Connections>,
    route: Route,
    renewals: AtomicU64,
}

/// Pushes for one APNs app. Cheap to clone.
#[derive(Clone)]
pub struct ApnsSender {
    inner: Arc<Inner>,
}

/// The HTTP/2 client of one app and environment: its own connection pool, so one connection,
/// multiplexed; HTTP/2 only; idle connections pinged so that they stay open.
fn build_client(credentials: &Credentials, route: &Route) -> Result<reqwest::Client, String> {
    let mut builder = http::client_builder()
        .http2_prior_knowledge()
        .http2_keep_alive_interval(KEEP_ALIVE)
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .http2_keep_alive_while_idle(true)
        .pool_idle_timeout(None);
    if let Credentials::Certificate {
        identity_pem,
        cert_file,
    } = credentials
    {
        let identity = reqwest::Identity::from_pem(identity_pem).map_err(|e| {
            format!(
                "cert_file {cert_file} (PEM) is not usable: {}",
                http::error_chain(&e)
            )
        })?;
        builder = builder.identity(identity);
    }
    if let Some(addr) = route.addr {
        builder = builder
            .resolve(PRODUCTION_HOST, addr)
            .resolve(SANDBOX_HOST, addr);
    }
    if let Some(der) = &route.root_der {
        let ca = reqwest::Certificate::from_der(der)
            .map_err(|e| format!("bad root certificate: {}", http::error_chain(&e)))?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(|e| match credentials {
        Credentials::Certificate { cert_file, .. } => format!(
            "cert_file {cert_file} is not usable: {}",
            http::error_chain(&e)
        ),
        Credentials::Token { .. } => {
            format!("cannot build the APNs client: {}", http::error_chain(&e))
        }
    })
}

/// The request headers APNs reads, from the notification's options.
fn option_headers(options: &NotificationOptions<'_>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(topic) = options.apns_topic {
        headers.push(("apns-topic", topic.to_string()));
    }
    if let Some(push_type) = options.apns_push_type {
        headers.push(("apns-push-type", push_type.to_string()));
    }
    if let Some(priority) = &options.apns_priority {
        headers.push(("apns-priority", priority.to_string()));
    }
    if let Some(expiration) = options.apns_expiration {
        headers.push(("apns-expiration", expiration.to_string()));
    }
    if let Some(collapse) = &options.apns_collapse_id {
        headers.push(("apns-collapse-id", collapse.value.to_string()));
    }
    if let Some(id) = options.apns_id {
        headers.push(("apns-id", id.to_string()));
    }
    headers
}

/// A device token as one path segment: anything but letters, digits and `-._~` percent-encoded
/// (a real token is hex; a strange one must not change the path).
fn path_segment(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `reason` of an APNs error body (`{"reason":"BadDeviceToken"}`), bounded; "no reason"
/// when there is none.
fn reason_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON).collect())
        .unwrap_or_else(|| String::from("no reason"))
}

/// One attempt's answer, when it was not a success.
struct Failure {
    /// 0: no answer.
    status: u16,
    reason: String,
    apns_id: Option<String>,
    retry_after: Option<Duration>,
    /// Apple could not be reached at all (refused, a name that does not resolve, a failed TLS
    /// handshake): only a few attempts.
    unreachable: bool,
    /// The request could not be made (no client, a header value that is not valid): retrying
    /// would not help.
    fatal: bool,
}

impl Failure {
    fn without_answer(reason: String, unreachable: bool) -> Failure {
        Failure {
            status: 0,
            reason,
            apns_id: None,
            retry_after: None,
            unreachable,
            fatal: false,
        }
    }

    fn fatal(reason: String) -> Failure {
        Failure {
            fatal: true,
            ..Failure::without_answer(reason, false)
        }
    }

    /// The reason with the answer's apns-id, for a final outcome.
    fn body(&self) -> String {
        match &self.apns_id {
            Some(id) => format!("{} (apns-id {id})", self.reason),
            None => self.reason.clone(),
        }
    }
}

impl ApnsSender {
    /// Reads the credentials and builds the client of the app's default environment, so that bad
    /// credentials are reported at once.
    pub fn new(
        bundle_id: &str,
        auth: &ApnsAuth,
        sandbox: bool,
        voip: bool,
    ) -> Result<ApnsSender, String> {
        Self::with_route(bundle_id, auth, sandbox, voip, Route::default())
    }

    fn with_route(
        bundle_id: &str,
        auth: &ApnsAuth,
        sandbox: bool,
        voip: bool,
        route: Route,
    ) -> Result<ApnsSender, String> {
        let credentials = Credentials::load(auth)?;
        let first = build_client(&credentials, &route)?;
        let mut connections = Connections::default();
        if sandbox {
            connections.sandbox = Some(first);
        } else {
            connections.production = Some(first);
        }
        Ok(ApnsSender {
            inner: Arc::new(Inner {
                bundle_id: bundle_id.to_string(),
                auth: auth.clone(),
                sandbox_default: sandbox,
                voip,
                credentials: Mutex::new(Arc::new(credentials)),
                connections: Mutex::new(connections),
                route,
                renewals: AtomicU64::new(0),
            }),
        })
    }

    /// Times the credentials were renewed after APNs rejected them.
    pub fn renewals(&self) -> u64 {
        self.inner.renewals.load(Ordering::Relaxed)
    }

    fn credentials(&self) -> Arc<Credentials> {
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The client for an environment, built on first use.
    fn client(&self, sandbox: bool) -> Result<reqwest::Client, String> {
        let credentials = self.credentials();
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = if sandbox {
            &mut connections.sandbox
        } else {
            &mut connections.production
        };
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let c = build_client(&credentials, &self.inner.route)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// After APNs refused the credentials: reads them again (a fresh provider token, or a
    /// certificate replaced on disk) and drops the environment's connection so that the next
    /// push opens a new one.
    fn renew(&self, sandbox: bool) -> Result<(), String> {
        let credentials = Credentials::load(&self.inner.auth)?;
        *self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
        self.renew_connection(sandbox);
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn topic(&self, param: Option<&str>) -> String {
        topic_for(&self.inner.bundle_id, self.inner.voip, param)
    }

    /// The request for one payload.
    fn request(
        &self,
        client: &reqwest::Client,
        sandbox: bool,
        payload: &Payload<'_>,
        time: Duration,
    ) -> Result<reqwest::RequestBuilder, String> {
        let body = payload
            .to_json_string()
            .map_err(|e| format!("cannot encode the payload: {e}"))?;
        let host = if sandbox {
            SANDBOX_HOST
        } else {
            PRODUCTION_HOST
        };
        let port = self
            .inner
            .route
            .addr
            .map_or(String::new(), |a| format!(":{}", a.port()));
        let url = format!(
            "https://{host}{port}/3/device/{}",
            path_segment(payload.get_device_token())
        );
        let mut request = client
            .post(url)
            .timeout(time)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in option_headers(payload.get_options()) {
            request = request.header(name, value);
        }
        if let Some(jwt) = self.credentials().bearer()? {
            request = request.header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"));
        }
        Ok(request)
    }

    /// Sends one payload: Ok on 200, else what went wrong.
    async fn attempt(
        &self,
        sandbox: bool,
        payload: &Payload<'_>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let client = self.client(sandbox).map_err(Failure::fatal)?;
        let time = deadline
            .saturating_duration_since(Instant::now())
            .min(ATTEMPT_TIMEOUT);
        let end = Instant::now().checked_add(time).unwrap_or(deadline);
        let request = self
            .request(&client, sandbox, payload, time)
            .map_err(Failure::fatal)?;
        let response =
            match http::send_bounded(request, end, time, http::ConnectTimeoutText::Plain).await {
                Ok(response) => response,
                Err(RequestError::Unreachable(e)) => return Err(Failure::without_answer(e, true)),
                Err(RequestError::Retry(e)) => return Err(Failure::without_answer(e, false)),
                Err(RequestError::Fatal(e)) => return Err(Failure::fatal(e)),
            };
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let apns_id = response
            .headers()
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| id.chars().take(40).collect());
        let retry_after = http::parse_retry_after(response.headers());
        let body = http::read_limited(response, http::MAX_BODY_TEXT, end).await;
        Err(Failure {
            status,
            reason: reason_of(&body),
            apns_id,
            retry_after,
            unreachable: false,
            fatal: false,
        })
    }

    /// Sends one push, retrying within the call's deadline:
    /// - 200 -> Sent;
    /// - 410, 400 BadDeviceToken or DeviceTokenNotForTopic -> TokenDead;
    /// - 403 InvalidProviderToken / ExpiredProviderToken -> the credentials are renewed once
    ///   (new token, new connection) and the push sent again;
    /// - 429 and 5xx, a timeout or a broken connection -> retried with backoff; for 429 and 503
    ///   a `Retry-After` is the least wait, and one that would end past the deadline ends the
    ///   push at once (GaveUp);
    /// - Apple unreachable -> a few attempts ([`super::Backoff::retry_unreachable`]);
    /// - anything else -> Rejected.
    pub async fn send(&self, push: &CallPush, target: &ApnsTarget, deadline: Instant) -> Outcome {
        let sandbox = target.sandbox || self.inner.sandbox_default;
        // A binding refresh is a background push to the app itself (never a VoIP push, which iOS
        // reports as a call): the app's own topic, normal priority, content-available only.
        let refresh = push.kind == PushKind::Refresh;
        // Only a call may be a VoIP push: a test push, a message and an end-of-call push are
        // alerts to the app's own topic.
        let voip = self.inner.voip && push.kind == PushKind::Call;
        let topic = topic_for(&self.inner.bundle_id, voip, target.param.as_deref());
        // The app's own topic takes the device's `remote` token when it gave two (the stored one
        // is then its VoIP token, which APNs refuses for that topic).
        let token = match (&target.alert_token, voip) {
            (Some(remote), false) => remote.as_str(),
            _ => target.token.as_str(),
        };
        let collapse = collapse_id(&push.call_id);
        let caller = push
            .caller_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| push.caller_uri.clone());
        let mut attempts = 0;
        let mut renewed = false;
        let mut backoff = super::Backoff::default();
        let mut last_error = String::from("no attempt made");
        loop {
            if Instant::now() >= deadline {
                return Outcome::GaveUp {
                    attempts,
                    last_error,
                };
            }
            attempts += 1;
            let options = NotificationOptions {
                apns_push_type: Some(if refresh {
                    PushType::Background
                } else if voip {
                    PushType::Voip
                } else {
                    PushType::Alert
                }),
                apns_priority: Some(if refresh {
                    Priority::Normal
                } else {
                    Priority::High
                }),
                apns_expiration: Some(push.expires_at),
                apns_topic: Some(&topic),
                apns_collapse_id: CollapseId::new(&collapse).ok(),
                ..Default::default()
            };
            let builder = match push.kind {
                PushKind::Refresh => DefaultNotificationBuilder::new().content_available(),
                PushKind::Test => DefaultNotificationBuilder::new()
                    .title("kamailio-push")
                    .body("Test push (push.send)"),
                PushKind::Call if voip => DefaultNotificationBuilder::new(),
                PushKind::Call => DefaultNotificationBuilder::new()
                    .title(caller.as_str())
                    .body("Incoming call"),
                // A chat message: a visible alert from the sender (the text only with the app's
                // message_preview), grouped per sender; a Notification Service Extension may
                // rewrite it (mutable-content).
                PushKind::Message => DefaultNotificationBuilder::new()
                    .title(caller.as_str())
                    .body(push.text.as_deref().unwrap_or("New message"))
                    .thread_id(push.caller_uri.as_str())
                    .sound("default")
                    .mutable_content(),
                // The end of a call: content-available so the running app (it is, while CallKit
                // shows the call its VoIP push started) is handed the push and ends the CallKit
                // call; a visible alert only for a missed call of an app with missed_call_alert.
                PushKind::Cancel => match &push.alert {
                    Some(alert) => DefaultNotificationBuilder::new()
                        .title(caller.as_str())
                        .body(alert.as_str())
                        .content_available()
                        .mutable_content(),
                    None => DefaultNotificationBuilder::new().content_available(),
                },
            };
            let mut payload = builder.build(token, options);
            for (key, value) in [
                ("type", serde_json::json!(push.kind)),
                ("call_id", serde_json::json!(push.call_id)),
                ("caller_uri", serde_json::json!(push.caller_uri)),
                ("caller_name", serde_json::json!(push.caller_name)),
                ("callee_aor", serde_json::json!(push.callee_aor)),
                ("app_id", serde_json::json!(push.app_id)),
                ("provider", serde_json::json!(push.provider)),
                ("sent_at", serde_json::json!(push.sent_at)),
                ("expires_at", serde_json::json!(push.expires_at)),
            ] {
                let _ = payload.add_custom_data(key, &value);
            }
            for (key, value) in [
                ("reason", push.reason.map(|r| r.as_str().to_string())),
                ("text", push.text.clone()),
                ("alert", push.alert.clone()),
            ] {
                if let Some(value) = value {
                    let _ = payload.add_custom_data(key, &value);
                }
            }
            let failure = match self.attempt(sandbox, &payload, deadline).await {
                Ok(()) => {
                    return Outcome::Sent {
                        status: 200,
                        attempts,
                    }
                }
                Err(failure) if failure.fatal => {
                    return Outcome::Rejected {
                        status: 0,
                        body: failure.reason,
                    }
                }
                Err(failure) => failure,
            };
            let status = failure.status;
            let retryable = matches!(status, 0 | 429 | 500..=599);
            // A push to the app's own topic with a token of another kind (a VoIP-only device)
            // says nothing of the token the device's calls use: refused, the device kept.
            let other_token = !voip && (self.inner.voip || token != target.token);
            match (status, failure.reason.as_str()) {
                (400, "BadDeviceToken" | "DeviceTokenNotForTopic") if other_token => {
                    return Outcome::Rejected {
                        status,
                        body: failure.body(),
                    }
                }
                (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
                    return Outcome::TokenDead {
                        status,
                        body: failure.body(),
                    }
                }
                (403, "InvalidProviderToken" | "ExpiredProviderToken") if !renewed => {
                    // Renew the JWT (and connection) once, then try again.
                    renewed = true;
                    if let Err(e) = self.renew(sandbox) {
                        return Outcome::Rejected { status: 0, body: e };
                    }
                    last_error = format!("{status} {}", failure.reason);
                    continue;
                }
                _ if !retryable => {
                    return Outcome::Rejected {
                        status,
                        body: failure.body(),
                    }
                }
                _ => {}
            }
            if status == 0 {
                // A broken connection is rebuilt for the next attempt.
                self.renew_connection(sandbox);
            }
            last_error = if status == 0 {
                failure.reason
            } else {
                format!("{status} {}", failure.reason)
            };
            // Apple asks for a pause with 429 (too many pushes for this device) and 503.
            let retry_after = match status {
                429 | 503 => failure.retry_after,
                _ => None,
            };
            if let Some(wait) = retry_after {
                last_error = format!("{last_error} (Retry-After {} s)", wait.as_secs());
            }
            let next = if failure.unreachable {
                backoff
                    .retry_unreachable(deadline, attempts, last_error)
                    .await
            } else {
                backoff
                    .retry(retry_after, deadline, attempts, last_error)
                    .await
            };
            last_error = match next {
                Ok(error) => error,
                Err(gave_up) => return gave_up,
            };
        }
    }

    fn renew_connection(&self, sandbox: bool) {
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if sandbox {
            connections.sandbox = None;
        } else {
            connections.production = None;
        }
    }
}

#[cfg(test)]
mod transport_tests;

/// The topic: the one the device's pn-param names (without its 10-character team id), else the
/// bundle id; with `.voip` for VoIP pushes.
pub fn topic_for(bundle_id: &str, voip: bool, param: Option<&str>) -> String {
    let base = param
        .map(|param| {
            let without_team = match param.split_once('.') {
                Some((team, rest)) if team.len() == 10 && rest.contains('.') => rest,
                _ => param,
            };
            without_team
                .strip_suffix(".remote&voip")
                .or_else(|| without_team.strip_suffix(".voip"))
                .or_else(|| without_team.strip_suffix(".remote"))
                .unwrap_or(without_team)
        })
        .filter(|b| !b.is_empty())
        .unwrap_or(bundle_id);
    if voip {
        format!("{base}.voip")
    } else {
        base.to_string()
    }
}

/// apns-collapse-id is at most 64 bytes: a long Call-ID is replaced by its hash.
pub fn collapse_id(call_id: &str) -> String {
    if call_id.len() <= 64 {
        call_id.to_string()
    } else {
        hex::encode(&Sha256::digest(call_id.as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_pn_param_or_bundle() {
        assert_eq!(
            topic_for("org.example.phone", true, None),
            "org.example.phone.voip"
        );
        assert_eq!(
            topic_for("org.example.phone", false, None),
            "org.example.phone"
        );
        assert_eq!(
            topic_for(
                "org.example.phone",
                true,
                Some("ABCDE12345.org.example.beta.voip")
            ),
            "org.example.beta.voip"
        );
        assert_eq!(
            topic_for(
                "org.example.phone",
                true,
                Some("ABCDE12345.org.example.phone.remote&voip")
            ),
            "org.example.phone.voip"
        );
        assert_eq!(topic_for("b.id", false, Some("")), "b.id");
    }

    #[test]
    fn collapse_ids_fit_apple_limit() {
        assert_eq!(collapse_id("abc@host"), "abc@host");
        let long = "x".repeat(200);
        let c = collapse_id(&long);
        assert_eq!(c.len(), 32);
        assert_eq!(c, collapse_id(&long));
    }
}
