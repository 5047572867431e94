//! The "fcm" push provider: Firebase Cloud Messaging HTTP v1 (Android apps).
//!
//! An app is declared with a Google service-account JSON file ([`ServiceAccount`]). An
//! [`FcmSender`] signs an RS256 JWT assertion with the account's key, trades it at the account's
//! `token_uri` for an OAuth2 access token (cached, renewed before it expires, one renewal at a time
//! however many pushes run), and posts one data-only, high-priority message per push to
//! `<fcm_url>/v1/projects/<project_id>/messages:send`.
//!
//! [`FcmSender::send`] retries transient failures (408, 429, 5xx, connection errors, timeouts, and
//! the same from the token endpoint) with exponential backoff, but never past the call's deadline,
//! and reports how the push ended as an [`Outcome`]. This module does not log: the caller does.

use super::http::{
    body_text, drain, http_error, parse_retry_after, read_limited, retryable, send_bounded,
    unix_millis, unix_secs, ConnectTimeoutText, RequestError, MAX_ATTEMPT_TIME, MAX_BODY_TEXT,
};
use super::{Backoff, CallPush, Outcome, PushKind};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Google's FCM endpoint (the module's default `fcm_url`).
pub const DEFAULT_FCM_URL: &str = "https://fcm.googleapis.com";

/// The OAuth2 scope that allows sending FCM messages.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// exp - iat of the JWT assertion (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// Lifetime assumed when the token endpoint does not say (`expires_in` missing).
const DEFAULT_TOKEN_LIFETIME: u64 = 3600;
/// Lifetimes beyond this are not believed.
const MAX_TOKEN_LIFETIME: u64 = 24 * 3600;
/// A cached token is renewed when less than this is left (at most half its lifetime).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// When renewal fails, the old token is still used unless less than this is left (at most a
/// quarter of its lifetime).
const STOP_USING_BEFORE: Duration = Duration::from_secs(30);

/// Token answers and error bodies are read up to this size to be parsed as JSON.
const MAX_JSON_BODY: usize = 64 * 1024;

/// A Google service account, from the JSON key file the Firebase console hands out.
#[derive(Clone)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// The `kid` of the JWT assertions, when the file names it.
    pub private_key_id: Option<String>,
    /// PEM (PKCS#8 or PKCS#1) RSA private key of at least 2048 bits.
    pub private_key: String,
    /// OAuth2 token endpoint, `http://` or `https://`.
    pub token_uri: String,
}

/// Like a derived Debug, but the private key is never shown.
impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Parses and checks the JSON: required fields present and non-empty, type == "service_account"
    /// when present, token_uri http(s), private_key usable for RS256. Errors are operator-readable
    /// and never contain the key.
    pub fn parse(json: &str) -> Result<ServiceAccount, String> {
        parse_account(json).map_err(|e| format!("invalid FCM service account: {e}"))
    }

    /// Reads and parses a service-account file; errors name the path.
    pub fn from_file(path: &Path) -> Result<ServiceAccount, String> {
        let json = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the FCM service account file {}: {e}",
                path.display()
            )
        })?;
        ServiceAccount::parse(&json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn parse_account(json: &str) -> Result<ServiceAccount, String> {
    // serde_json's message is not used as is: only the kind and position are shown, so no piece
    // of the file (the key) can end up in the text.
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end",
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax | serde_json::error::Category::Data => {
                "syntax error"
            }
        };
        format!(
            "not JSON ({kind} at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| String::from("not a JSON object"))?;
    match object.get("type") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(kind)) if kind == "service_account" => {}
        Some(serde_json::Value::String(kind)) => {
            let shown = if kind.len() <= 40 && kind.chars().all(|c| !c.is_control()) {
                format!(" {kind:?}")
            } else {
                String::new()
            };
            return Err(format!(
                "type{shown} is not \"service_account\" (a service account key file is needed)"
            ));
        }
        Some(_) => return Err(String::from("type is not a string")),
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let required = |name: &str| -> Result<String, String> {
        text(name)?.ok_or_else(|| format!("{name} is missing or empty"))
    };
    let account = ServiceAccount {
        project_id: required("project_id")?.trim().to_string(),
        client_email: required("client_email")?.trim().to_string(),
        private_key_id: text("private_key_id")?.map(|s| s.trim().to_string()),
        private_key: required("private_key")?,
        token_uri: required("token_uri")?.trim().to_string(),
    };
    http_url(&account.token_uri).map_err(|e| format!("token_uri {e}"))?;
    signing_key(&account.private_key)?;
    Ok(account)
}

/// The RSA key, proven able to sign an RS256 JWT. Errors never quote the key.
fn signing_key(pem: &str) -> Result<EncodingKey, String> {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| String::from("private_key is not a PEM RSA private key"))?;
    let probe = Claims {
        iss: "probe",
        scope: SCOPE,
        aud: "probe",
        iat: 0,
        exp: 0,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &probe, &key).map_err(|e| {
        match e.kind() {
            JwtErrorKind::InvalidRsaKey(why) => format!(
                "private_key cannot sign RS256 JWTs ({why}; an RSA private key of at least 2048 bits is needed)"
            ),
            _ => String::from("private_key cannot sign RS256 JWTs"),
        }
    })?;
    Ok(key)
}

/// An http(s) URL with a host; errors do not quote the URL.
fn http_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(String::from("has no host")),
        other => Err(format!("has scheme {other:?}, not http or https")),
    }
}

/// `<base>/v1/projects/<project_id>/messages:send`, the project id percent-encoded as needed.
fn send_url(base: &str, project_id: &str) -> Result<reqwest::Url, String> {
    let mut url = http_url(base.trim_end_matches('/')).map_err(|e| format!("FCM URL {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(String::from("FCM URL must not have a query or a fragment"));
    }
    url.path_segments_mut()
        .map_err(|_| String::from("FCM URL cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "projects", project_id, "messages:send"]);
    Ok(url)
}

/// Claims of the JWT assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Sends pushes for one Firebase project. Cheap to clone (the clones share the access token).
#[derive(Clone)]
pub struct FcmSender {
    inner: Arc<Inner>,
}

struct Inner {
    account: ServiceAccount,
    key: EncodingKey,
    token_url: reqwest::Url,
    send_url: reqwest::Url,
    client: reqwest::Client,
    /// Held while checking the cache and, when needed, fetching a token: one fetch at a time.
    tokens: tokio::sync::Mutex<TokenCache>,
    fetched: AtomicU64,
}

#[derive(Default)]
struct TokenCache {
    current: Option<AccessToken>,
    /// The last failed fetch and when it ended: tasks that were waiting for that fetch share its
    /// failure instead of each asking the token endpoint again right away.
    failure: Option<(Instant, TokenError)>,
}

#[derive(Clone)]
struct AccessToken {
    /// "Bearer <token>", marked sensitive.
    bearer: HeaderValue,
    /// Which fetch produced it (1 for the first).
    generation: u64,
    /// From then on, a renewal is attempted before use.
    renew_at: Instant,
    /// Until then, it is still used when a renewal fails.
    usable_until: Instant,
}

impl TokenCache {
    fn still_usable(&self, now: Instant) -> Option<AccessToken> {
        self.current
            .as_ref()
            .filter(|token| now < token.usable_until)
            .cloned()
    }
}

/// Why no access token could be had.
#[derive(Clone, Debug)]
enum TokenError {
    /// Transient (connection error, timeout, 408, 429, 5xx, unreadable answer).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The token endpoint could not be reached (retried a few times only).
    Unreachable(String),
    /// The token endpoint refused the credentials (or answered another final status).
    Rejected { status: u16, body: String },
    /// No request can be made at all.
    Fatal(String),
}

/// How one attempt (access token, then message) ended.
enum Step {
    Sent(u16),
    TokenDead(u16, String),
    Rejected(u16, String),
    /// 401/403 from FCM with the token of this generation.
    Unauthorized {
        status: u16,
        body: String,
        generation: u64,
    },
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// FCM or the token endpoint could not be reached (retried a few times only).
    Unreachable(String),
    Fatal(String),
}

impl FcmSender {
    /// `fcm_url`: base URL without trailing slash (the module's fcm_url parameter).
    pub fn new(
        account: ServiceAccount,
        fcm_url: &str,
        client: reqwest::Client,
    ) -> Result<FcmSender, String> {
        for (name, value) in [
            ("project_id", &account.project_id),
            ("client_email", &account.client_email),
        ] {
            if value.trim().is_empty() {
                return Err(format!("invalid FCM service account: {name} is empty"));
            }
        }
        let key = signing_key(&account.private_key)
            .map_err(|e| format!("invalid FCM service account: {e}"))?;
        let token_url = http_url(&account.token_uri)
            .map_err(|e| format!("invalid FCM service account: token_uri {e}"))?;
        let send_url = send_url(fcm_url, &account.project_id)?;
        Ok(FcmSender {
            inner: Arc::new(Inner {
                account,
                key,
                token_url,
                send_url,
                client,
                tokens: tokio::sync::Mutex::new(TokenCache::default()),
                fetched: AtomicU64::new(0),
            }),
        })
    }

    /// How many access tokens were fetched so far (tests: one renewal for concurrent pushes).
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.fetched.load(Ordering::Relaxed)
    }

    pub fn project_id(&self) -> &str {
        &self.inner.account.project_id
    }

    /// Sends one push to `push.token`, retrying within `deadline`:
    /// - 2xx -> Sent
    /// - an FCM error whose details carry errorCode UNREGISTERED -> TokenDead (final); any other
    ///   404 (a wrong fcm_url or project, a proxy's page) says nothing about the device ->
    ///   Rejected (final)
    /// - 401/403 -> the access token is dropped, a new one fetched and the message sent again at
    ///   once; a second 401/403 -> Rejected (final: the credentials are refused)
    /// - 408, 429, 5xx, connection errors, timeouts (from FCM or from the token endpoint) -> retry
    ///   with exponential backoff starting at 100 ms, doubling, capped at 2 s; a Retry-After in
    ///   integer seconds makes the wait at least that long. Each HTTP request's timeout is
    ///   min(5 s, time left). When the next attempt could only start at or after the deadline,
    ///   no time is spent sleeping: GaveUp with the last error.
    /// - any other status from FCM -> Rejected (final); any other status from the token endpoint
    ///   (400/401 invalid_grant...) -> Rejected with that status and the body prefixed with
    ///   "token endpoint: ".
    ///
    /// `attempts` counts tries, each being "get an access token (cached or fetched), then post the
    /// message"; a try that failed getting the token counts too.
    ///
    /// The message is data-only: type ("call", "refresh", "test", "message" or "cancel"),
    /// call_id, caller_uri, caller_name ("" when none), callee_aor, app_id, provider, sent_at
    /// (Unix ms of this try), expires_at, and, when they apply, reason (end-of-call push), text
    /// (message preview) and alert (missed-call text), all as strings; android priority "high"
    /// ("normal" for a binding refresh) and ttl the whole seconds left before the deadline (at
    /// least 1).
    pub async fn send(&self, push: &CallPush, deadline: Instant) -> Outcome {
        let mut attempts: u32 = 0;
        let mut backoff = Backoff::default();
        let mut last_error = String::from("the deadline had passed before the first attempt");
        let mut renewed = false;
        let mut refuse: Option<u64> = None;
        loop {
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => {}
                _ => {
                    return Outcome::GaveUp {
                        attempts,
                        last_error,
                    }
                }
            }
            attempts = attempts.saturating_add(1);
            let (retry_after, error) = match self.inner.attempt(push, deadline, refuse.take()).await
            {
                Step::Sent(status) => return Outcome::Sent { status, attempts },
                Step::TokenDead(status, body) => return Outcome::TokenDead { status, body },
                Step::Rejected(status, body) => return Outcome::Rejected { status, body },
                Step::Fatal(error) => {
                    return Outcome::GaveUp {
                        attempts,
                        last_error: error,
                    }
                }
                Step::Unauthorized {
                    status,
                    body,
                    generation,
                } => {
                    if renewed {
                        return Outcome::Rejected { status, body };
                    }
                    // Drop that token, get another and try again at once (no backoff).
                    renewed = true;
                    refuse = Some(generation);
                    last_error = http_error(status, &one_line(&body));
                    continue;
                }
                Step::Retry { error, retry_after } => (retry_after, error),
                Step::Unreachable(error) => {
                    match backoff.retry_unreachable(deadline, attempts, error).await {
                        Ok(error) => last_error = error,
                        Err(gave_up) => return gave_up,
                    }
                    continue;
                }
            };
            match backoff.retry(retry_after, deadline, attempts, error).await {
                Ok(error) => last_error = error,
                Err(gave_up) => return gave_up,
            }
        }
    }
}

impl Inner {
    async fn attempt(&self, push: &CallPush, deadline: Instant, refuse: Option<u64>) -> Step {
        let token = match self.access_token(deadline, refuse).await {
            Ok(token) => token,
            Err(TokenError::Retry { error, retry_after }) => {
                return Step::Retry { error, retry_after }
            }
            Err(TokenError::Unreachable(error)) => return Step::Unreachable(error),
            Err(TokenError::Rejected { status, body }) => return Step::Rejected(status, body),
            Err(TokenError::Fatal(error)) => return Step::Fatal(error),
        };
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Step::Retry {
                error: String::from("the deadline passed while getting the access token"),
                retry_after: None,
            };
        }
        let time = left.min(MAX_ATTEMPT_TIME);
        let end = now + time;
        let body = match message_body(push, left) {
            Ok(body) => body,
            Err(error) => return Step::Fatal(error),
        };
        let request = self
            .client
            .post(self.send_url.clone())
            .timeout(time)
            .header(AUTHORIZATION, token.bearer.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = match send_bounded(request, end, time, ConnectTimeoutText::Plain).await {
            Ok(response) => response,
            Err(RequestError::Retry(error)) => {
                return Step::Retry {
                    error,
                    retry_after: None,
                }
            }
            Err(RequestError::Unreachable(error)) => return Step::Unreachable(error),
            Err(RequestError::Fatal(error)) => return Step::Fatal(error),
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            drain(response, end).await;
            return Step::Sent(code);
        }
        let retry_after = parse_retry_after(response.headers());
        let raw = read_limited(response, MAX_JSON_BODY, end).await;
        let body = body_text(&raw);
        let error = fcm_error(&raw);
        // Only Google's UNREGISTERED says the token is dead. A 404 without it comes from
        // something else (a wrong fcm_url or project, a proxy): it says nothing about the
        // device, which must not be forgotten for it.
        let dead = error.is_some_and(|e| e.codes.iter().any(|c| c == "UNREGISTERED"));
        if dead {
            return Step::TokenDead(code, body);
        }
        match code {
            401 | 403 => Step::Unauthorized {
                status: code,
                body,
                generation: token.generation,
            },
            _ if retryable(code) => Step::Retry {
                error: http_error(code, &one_line(&body)),
                retry_after,
            },
            _ => Step::Rejected(code, body),
        }
    }

    /// A usable access token: the cached one unless it is due for renewal or is `refuse`d (it was
    /// just refused by FCM), else a fresh one. The lock makes concurrent callers wait for a single
    /// fetch and share its result.
    async fn access_token(
        &self,
        deadline: Instant,
        refuse: Option<u64>,
    ) -> Result<AccessToken, TokenError> {
        let asked = Instant::now();
        let left = deadline.saturating_duration_since(asked);
        if left.is_zero() {
            return Err(TokenError::Retry {
                error: String::from("the deadline passed before an access token could be had"),
                retry_after: None,
            });
        }
        let wait_end = asked + left.min(MAX_ATTEMPT_TIME);
        let mut cache = match tokio::time::timeout_at(wait_end.into(), self.tokens.lock()).await {
            Ok(cache) => cache,
            Err(_) => {
                return Err(TokenError::Retry {
                    error: String::from("timed out waiting for another access token request"),
                    retry_after: None,
                })
            }
        };
        let now = Instant::now();
        if let Some(refused) = refuse {
            if cache
                .current
                .as_ref()
                .is_some_and(|t| t.generation == refused)
            {
                cache.current = None;
            }
        }
        if let Some(token) = cache.current.as_ref().filter(|t| now < t.renew_at) {
            return Ok(token.clone());
        }
        if let Some((failed_at, error)) = &cache.failure {
            if *failed_at >= asked {
                // The fetch this task waited for failed a moment ago: do not ask again at once.
                return cache.still_usable(now).ok_or_else(|| error.clone());
            }
        }
        let time = deadline
            .saturating_duration_since(now)
            .min(MAX_ATTEMPT_TIME);
        if time.is_zero() {
            return Err(TokenError::Retry {
                error: String::from("the deadline passed before an access token could be had"),
                retry_after: None,
            });
        }
        match self.fetch_token(now + time, time).await {
            Ok((bearer, lifetime, requested_at)) => {
                let generation = self
                    .fetched
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let renew_margin = RENEW_BEFORE.min(lifetime / 2);
                let use_margin = STOP_USING_BEFORE.min(lifetime / 4);
                let expiry = requested_at.checked_add(lifetime);
                let token = AccessToken {
                    bearer,
                    generation,
                    renew_at: expiry
                        .and_then(|e| e.checked_sub(renew_margin))
                        .unwrap_or(requested_at),
                    usable_until: expiry
                        .and_then(|e| e.checked_sub(use_margin))
                        .unwrap_or(requested_at),
                };
                cache.current = Some(token.clone());
                cache.failure = None;
                Ok(token)
            }
            Err(error) => {
                let failed_at = Instant::now();
                cache.failure = Some((failed_at, error.clone()));
                cache.still_usable(failed_at).ok_or(error)
            }
        }
    }

    /// One token request: the bearer header value, the lifetime, and when the request started.
    async fn fetch_token(
        &self,
        end: Instant,
        time: Duration,
    ) -> Result<(HeaderValue, Duration, Instant), TokenError> {
        let requested_at = Instant::now();
        let iat = unix_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(String::from("JWT"));
        header.kid = self.account.private_key_id.clone();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat.saturating_add(ASSERTION_LIFETIME),
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| {
            TokenError::Fatal(String::from(
                "cannot sign the access token request with the service account key",
            ))
        })?;
        let request = self
            .client
            .post(self.token_url.clone())
            .timeout(time)
            .header(ACCEPT, "application/json")
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ]);
        let response = match send_bounded(request, end, time, ConnectTimeoutText::Plain).await {
            Ok(response) => response,
            Err(RequestError::Retry(error)) => {
                return Err(TokenError::Retry {
                    error: format!("access token request: {error}"),
                    retry_after: None,
                })
            }
            Err(RequestError::Unreachable(error)) => {
                return Err(TokenError::Unreachable(format!(
                    "access token request: {error}"
                )))
            }
            Err(RequestError::Fatal(error)) => {
                return Err(TokenError::Fatal(format!("access token request: {error}")))
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if !status.is_success() {
            let retry_after = parse_retry_after(response.headers());
            let body = body_text(&read_limited(response, MAX_BODY_TEXT, end).await);
            return Err(match code {
                _ if retryable(code) => TokenError::Retry {
                    error: format!(
                        "access token request: {}",
                        http_error(code, &one_line(&body))
                    ),
                    retry_after,
                },
                _ => TokenError::Rejected {
                    status: code,
                    body: body_text(format!("token endpoint: {body}").as_bytes()),
                },
            });
        }
        let raw = read_limited(response, MAX_JSON_BODY, end).await;
        let unusable = |what: &str| TokenError::Retry {
            error: format!("access token request: the token endpoint answered {code} {what}"),
            retry_after: None,
        };
        // The answer holds the token: nothing of it goes into error texts.
        let answer: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|_| unusable("with a body that is not JSON"))?;
        let token = answer
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unusable("without an access_token"))?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| unusable("with an access_token unfit for an HTTP header"))?;
        bearer.set_sensitive(true);
        let seconds = match answer.get("expires_in") {
            Some(serde_json::Value::Number(n)) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f.min(MAX_TOKEN_LIFETIME as f64) as u64)
            }),
            Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
        Ok((bearer, Duration::from_secs(seconds), requested_at))
    }
}

/// The JSON of the FCM message for `push`, with sent_at now and ttl from `left`.
fn message_body(push: &CallPush, left: Duration) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    struct Body<'a> {
        message: Message<'a>,
    }
    #[derive(Serialize)]
    struct Message<'a> {
        token: &'a str,
        data: Data<'a>,
        android: Android,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        call_id: &'a str,
        caller_uri: &'a str,
        caller_name: &'a str,
        callee_aor: &'a str,
        app_id: &'a str,
        provider: &'a str,
        sent_at: String,
        expires_at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        alert: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Android {
        priority: &'static str,
        ttl: String,
    }
    let body = Body {
        message: Message {
            token: &push.token,
            data: Data {
                kind: push.kind.as_str(),
                call_id: &push.call_id,
                caller_uri: &push.caller_uri,
                caller_name: push.caller_name.as_deref().unwrap_or(""),
                callee_aor: &push.callee_aor,
                app_id: &push.app_id,
                provider: &push.provider,
                sent_at: unix_millis().to_string(),
                expires_at: push.expires_at.to_string(),
                reason: push.reason.map(|r| r.as_str()),
                text: push.text.as_deref(),
                alert: push.alert.as_deref(),
            },
            android: Android {
                // A binding refresh need not wake the app at once: normal priority.
                priority: match push.kind {
                    PushKind::Call | PushKind::Test | PushKind::Message | PushKind::Cancel => {
                        "high"
                    }
                    PushKind::Refresh => "normal",
                },
                ttl: format!("{}s", left.as_secs().max(1)),
            },
        },
    };
    serde_json::to_vec(&body).map_err(|e| format!("cannot encode the FCM message as JSON: {e}"))
}

/// A Google API error body: `{"error":{"code":..,"status":..,"details":[{"errorCode":..}]}}`.
struct FcmError {
    /// The errorCode values found in the details.
    codes: Vec<String>,
}

fn fcm_error(raw: &[u8]) -> Option<FcmError> {
    let value = serde_json::from_slice::<serde_json::Value>(raw).ok()?;
    let error = value.get("error")?.as_object()?;
    let codes = error
        .get("details")
        .and_then(|d| d.as_array())
        .map(|details| {
            details
                .iter()
                .filter_map(|d| d.get("errorCode").and_then(|c| c.as_str()))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Some(FcmError { codes })
}

/// The body on one line: runs of white space (line breaks too) made one space, for error texts.
fn one_line(body: &str) -> String {
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
