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
    /// - 404 with a Google JSON error body, or any FCM error whose details carry errorCode
    ///   UNREGISTERED -> TokenDead (final); a 404 without such a body (wrong fcm_url, a proxy's
    ///   page) says nothing about the device -> Rejected (final)
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
    /// The message is data-only: type ("call" or "refresh"), call_id, caller_uri, caller_name
    /// ("" when none), callee_aor, app_id, provider, sent_at (Unix ms of this try), expires_at, all
    /// as strings; android priority "high" for a call ("normal" for a binding refresh) and ttl the
    /// whole seconds left before the deadline (at least 1).
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
            let retry_after = match self.inner.attempt(push, deadline, refuse.take()).await {
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
                Step::Retry { error, retry_after } => {
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
}

impl Inner {
    async fn attempt(&self, push: &CallPush, deadline: Instant, refuse: Option<u64>) -> Step {
        let token = match self.access_token(deadline, refuse).await {
            Ok(token) => token,
            Err(TokenError::Retry { error, retry_after }) => {
                return Step::Retry { error, retry_after }
            }
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
        // A 404 without a Google error body comes from something else (a wrong fcm_url, a
        // proxy): it says nothing about the device, which must not be forgotten for it.
        let dead = (code == 404 && error.is_some())
            || error.is_some_and(|e| e.codes.iter().any(|c| c == "UNREGISTERED"));
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
                kind: match push.kind {
                    PushKind::Call => "call",
                    PushKind::Refresh => "refresh",
                },
                call_id: &push.call_id,
                caller_uri: &push.caller_uri,
                caller_name: push.caller_name.as_deref().unwrap_or(""),
                callee_aor: &push.callee_aor,
                app_id: &push.app_id,
                provider: &push.provider,
                sent_at: unix_millis().to_string(),
                expires_at: push.expires_at.to_string(),
            },
            android: Android {
                // A binding refresh need not wake the app at once: normal priority.
                priority: match push.kind {
                    PushKind::Call => "high",
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
mod tests {
    use super::*;
    use crate::providers::webhook;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Mutex, OnceLock};
    use std::thread::JoinHandle;
    use std::time::{SystemTime, UNIX_EPOCH};

    const PROJECT: &str = "demo-project-7";
    const EMAIL: &str = "pusher@demo-project-7.iam.gserviceaccount.com";
    const KEY_ID: &str = "0123456789abcdef";
    const DEVICE: &str = "fcm-device-token:APA91b-xyz";

    struct Keys {
        private_pem: String,
        public_pem: String,
        /// A different 2048-bit key: Google does not know it.
        other_private_pem: String,
        /// Too small for ring (and Google).
        small_private_pem: String,
    }

    /// RSA keys made once per test run with the openssl command, in a temporary directory.
    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "kamailio-push-fcm-test-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let run = |args: &[&str]| {
                let status = std::process::Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .expect("the openssl command");
                assert!(status.success(), "openssl {args:?}");
            };
            let genkey = |bits: &str, out: &str| {
                let bits = format!("rsa_keygen_bits:{bits}");
                run(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &bits,
                    "-out",
                    out,
                ]);
            };
            genkey("2048", "key.pem");
            genkey("2048", "other.pem");
            genkey("1024", "small.pem");
            run(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
            let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
            let keys = Keys {
                private_pem: read("key.pem"),
                public_pem: read("pub.pem"),
                other_private_pem: read("other.pem"),
                small_private_pem: read("small.pem"),
            };
            let _ = std::fs::remove_dir_all(&dir);
            assert!(keys.private_pem.contains("BEGIN PRIVATE KEY"));
            keys
        })
    }

    /// A line from the middle of a PEM: text that must never show up in errors.
    fn secret_line(pem: &str) -> String {
        let lines: Vec<&str> = pem.lines().collect();
        lines[lines.len() / 2].to_string()
    }

    /// One request as the test server saw it.
    #[derive(Clone, Debug)]
    struct Seen {
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

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("JSON body")
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    }

    impl Reply {
        fn status(status: u16) -> Reply {
            Reply {
                status,
                headers: Vec::new(),
                body: String::new(),
                delay: Duration::ZERO,
            }
        }

        fn body(mut self, body: impl Into<String>) -> Reply {
            self.body = body.into();
            self.headers
                .push(("Content-Type", "application/json".to_string()));
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

        fn ok() -> Reply {
            Reply::status(200).body(format!(
                r#"{{"name":"projects/{PROJECT}/messages/0:1700000000000000%abc"}}"#
            ))
        }
    }

    /// What the fake token endpoint does with its n-th valid assertion (from 0).
    enum TokenPlan {
        /// Issue the next token ("tok-1", "tok-2"...) valid this many seconds, after a delay.
        Issue {
            expires_in: u64,
            delay: Duration,
        },
        Answer(Reply),
    }

    fn issue() -> TokenPlan {
        TokenPlan::Issue {
            expires_in: 3599,
            delay: Duration::ZERO,
        }
    }

    type TokenHandler = dyn Fn(usize) -> TokenPlan + Send + Sync;
    /// Gets the index of the send request (from 0) and the number of the token it carries.
    type SendHandler = dyn Fn(usize, usize) -> Reply + Send + Sync;

    /// Google on 127.0.0.1: `/token` checks the RS256 assertion with the public key and issues
    /// tokens; `/v1/projects/<PROJECT>/messages:send` checks the bearer and the message shape,
    /// then answers through the test's handler. Each request is answered on its own thread.
    struct FakeGoogle {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        server: Arc<tiny_http::Server>,
        accept: Option<JoinHandle<()>>,
    }

    impl FakeGoogle {
        fn start(
            token: impl Fn(usize) -> TokenPlan + Send + Sync + 'static,
            send: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
        ) -> FakeGoogle {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
            let base = format!("http://{}", server.server_addr().to_ip().expect("ip"));
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
            let token: Arc<TokenHandler> = Arc::new(token);
            let send: Arc<SendHandler> = Arc::new(send);
            let issued = Arc::new(AtomicUsize::new(0));
            let token_count = Arc::new(AtomicUsize::new(0));
            let send_count = Arc::new(AtomicUsize::new(0));
            let accept = {
                let server = Arc::clone(&server);
                let seen = Arc::clone(&seen);
                let audience = format!("{base}/token");
                std::thread::spawn(move || {
                    for mut request in server.incoming_requests() {
                        let at = Instant::now();
                        let mut body = Vec::new();
                        let _ = request.as_reader().read_to_end(&mut body);
                        let one = Seen {
                            path: request.url().to_string(),
                            headers: request
                                .headers()
                                .iter()
                                .map(|h| (h.field.to_string(), h.value.to_string()))
                                .collect(),
                            body,
                            at,
                        };
                        seen.lock().unwrap().push(one.clone());
                        let (token, send) = (Arc::clone(&token), Arc::clone(&send));
                        let (issued, audience) = (Arc::clone(&issued), audience.clone());
                        let (token_count, send_count) =
                            (Arc::clone(&token_count), Arc::clone(&send_count));
                        std::thread::spawn(move || {
                            let reply = if one.path == "/token" {
                                match check_assertion(&one, &audience) {
                                    Err(problem) => Reply::status(400).body(
                                        serde_json::json!({
                                            "error": "invalid_grant",
                                            "error_description": problem
                                        })
                                        .to_string(),
                                    ),
                                    Ok(()) => {
                                        match token(token_count.fetch_add(1, Ordering::SeqCst)) {
                                            TokenPlan::Answer(reply) => reply,
                                            TokenPlan::Issue { expires_in, delay } => {
                                                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                                                Reply::status(200)
                                                    .body(format!(
                                                        r#"{{"access_token":"tok-{n}","expires_in":{expires_in},"token_type":"Bearer"}}"#
                                                    ))
                                                    .delay(delay)
                                            }
                                        }
                                    }
                                }
                            } else if one.path == format!("/v1/projects/{PROJECT}/messages:send") {
                                let bearer = one
                                    .header("Authorization")
                                    .and_then(|b| b.strip_prefix("Bearer tok-"))
                                    .and_then(|n| n.parse::<usize>().ok())
                                    .filter(|n| *n >= 1 && *n <= issued.load(Ordering::SeqCst));
                                let problems = check_message(&one);
                                match bearer {
                                    None => Reply::status(401).body(UNAUTHENTICATED),
                                    Some(_) if !problems.is_empty() => Reply::status(400).body(
                                        serde_json::json!({"error": {"code": 400,
                                            "message": problems.join("; "),
                                            "status": "INVALID_ARGUMENT"}})
                                        .to_string(),
                                    ),
                                    Some(n) => send(send_count.fetch_add(1, Ordering::SeqCst), n),
                                }
                            } else {
                                Reply::status(404)
                                    .body("<html><body>404 Not Found</body></html>")
                                    .header("Content-Type", "text/html")
                            };
                            std::thread::sleep(reply.delay);
                            let mut response = tiny_http::Response::from_data(reply.body)
                                .with_status_code(reply.status);
                            for (name, value) in reply.headers {
                                response = response.with_header(
                                    tiny_http::Header::from_bytes(
                                        name.as_bytes(),
                                        value.as_bytes(),
                                    )
                                    .unwrap(),
                                );
                            }
                            let _ = request.respond(response);
                        });
                    }
                })
            };
            FakeGoogle {
                base,
                seen,
                server,
                accept: Some(accept),
            }
        }

        /// Issues 1-hour tokens; answers every send through `send`.
        fn with_sends(send: impl Fn(usize, usize) -> Reply + Send + Sync + 'static) -> FakeGoogle {
            FakeGoogle::start(|_| issue(), send)
        }

        fn seen(&self, path: &str) -> Vec<Seen> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.path == path)
                .cloned()
                .collect()
        }

        fn token_requests(&self) -> usize {
            self.seen("/token").len()
        }

        fn sends(&self) -> Vec<Seen> {
            self.seen(&format!("/v1/projects/{PROJECT}/messages:send"))
        }

        fn account_json(&self, private_pem: &str) -> String {
            serde_json::json!({
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": KEY_ID,
                "private_key": private_pem,
                "client_email": EMAIL,
                "client_id": "1234567890",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": format!("{}/token", self.base),
            })
            .to_string()
        }

        fn sender_with_key(&self, private_pem: &str) -> FcmSender {
            let account = ServiceAccount::parse(&self.account_json(private_pem)).unwrap();
            FcmSender::new(account, &self.base, webhook::client().unwrap()).unwrap()
        }

        /// With the module's own HTTP client (connections kept alive).
        fn sender(&self) -> FcmSender {
            self.sender_with_key(&keys().private_pem)
        }

        /// For many concurrent requests: tiny_http serves each connection on one thread of a
        /// small pool and cannot close idle kept-alive ones (it drops a Connection header), so
        /// new connections could wait behind them; this client does not keep idle connections.
        fn sender_without_keep_alive(&self) -> FcmSender {
            let account = ServiceAccount::parse(&self.account_json(&keys().private_pem)).unwrap();
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            FcmSender::new(account, &self.base, client).unwrap()
        }
    }

    impl Drop for FakeGoogle {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(accept) = self.accept.take() {
                let _ = accept.join();
            }
        }
    }

    const UNAUTHENTICATED: &str = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;

    fn percent_decode(text: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = text.bytes();
        while let Some(byte) = bytes.next() {
            match byte {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let hex = std::str::from_utf8(&hex).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[derive(serde::Deserialize)]
    struct SeenClaims {
        iss: String,
        scope: String,
        aud: String,
        iat: u64,
        exp: u64,
    }

    /// What Google checks in a token request.
    fn check_assertion(seen: &Seen, audience: &str) -> Result<(), String> {
        if seen.header("Content-Type") != Some("application/x-www-form-urlencoded") {
            return Err(format!("content-type {:?}", seen.header("Content-Type")));
        }
        let form: HashMap<String, String> = String::from_utf8_lossy(&seen.body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
            return Err(format!("grant_type {:?}", form.get("grant_type")));
        }
        let assertion = form.get("assertion").ok_or("no assertion")?;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if header.alg != Algorithm::RS256
            || header.typ.as_deref() != Some("JWT")
            || header.kid.as_deref() != Some(KEY_ID)
        {
            return Err(format!("header {header:?}"));
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(keys().public_pem.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<SeenClaims>(assertion, &key, &validation)
            .map_err(|e| format!("assertion: {e}"))?
            .claims;
        let now = unix_secs();
        if claims.iss != EMAIL || claims.aud != audience {
            return Err("iss/aud".into());
        }
        if claims.scope != SCOPE {
            return Err(format!("scope {}", claims.scope));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
            return Err(format!("exp {} iat {}", claims.exp, claims.iat));
        }
        if claims.iat + 60 < now || claims.iat > now + 5 {
            return Err(format!("iat {} now {now}", claims.iat));
        }
        Ok(())
    }

    /// What FCM checks in a message: its shape and types (the test checks the values).
    fn check_message(seen: &Seen) -> Vec<String> {
        let mut problems = Vec::new();
        if seen.header("Content-Type") != Some("application/json") {
            problems.push(format!("content-type {:?}", seen.header("Content-Type")));
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&seen.body) else {
            return vec!["body is not JSON".into()];
        };
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
        CallPush {
            kind: PushKind::Call,
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            caller_uri: "sip:alice@example.com".into(),
            caller_name: Some("Alice \"A\" Ünïcode".into()),
            callee_aor: "sip:bob@example.com".into(),
            token: DEVICE.into(),
            app_id: "acme-android".into(),
            provider: "fcm".into(),
            sent_at: 0,
            expires_at: 1_900_000_000,
        }
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

    fn bearer_of(seen: &Seen) -> String {
        seen.header("Authorization").unwrap_or("").to_string()
    }

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn sender_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<FcmSender>();
    }

    #[tokio::test]
    async fn sends_a_data_message_and_caches_the_token() {
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
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
        for one in &sends {
            assert_eq!(bearer_of(one), "Bearer tok-1");
        }
        let first = sends[0].json();
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
        assert_eq!(sends[1].json()["message"]["data"]["caller_name"], "");
        let ttl2 = sends[1].json()["message"]["android"]["ttl"].clone();
        assert!(ttl2 == "19s" || ttl2 == "20s", "{ttl2}");
    }

    #[tokio::test]
    async fn short_deadline_gives_a_ttl_of_at_least_one_second() {
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
        let sender = google.sender();
        assert_eq!(sender.send(&push(), in_ms(900)).await, sent(1));
        assert_eq!(google.sends()[0].json()["message"]["android"]["ttl"], "1s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_sends_share_one_token_fetch() {
        let google = FakeGoogle::start(
            |_| TokenPlan::Issue {
                expires_in: 3599,
                delay: Duration::from_millis(150),
            },
            |_, _| Reply::ok(),
        );
        let sender = google.sender_without_keep_alive();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send(&push(), in_ms(5000)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), sent(1));
        }
        assert_eq!(sender.tokens_fetched(), 1);
        assert_eq!(google.token_requests(), 1);
        assert_eq!(google.sends().len(), 20);
    }

    #[tokio::test]
    async fn refused_token_is_renewed_once_and_the_message_sent_again() {
        // FCM no longer takes tok-1.
        let google = FakeGoogle::with_sends(|_, token| {
            if token == 1 {
                Reply::status(401).body(UNAUTHENTICATED)
            } else {
                Reply::ok()
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
        let bearers: Vec<String> = google.sends().iter().map(bearer_of).collect();
        assert_eq!(
            bearers,
            ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"].map(String::from)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_refusals_renew_the_token_once() {
        // FCM refuses tok-1 (slowly, so that all the sends hold it before any refusal comes).
        let google = FakeGoogle::with_sends(|_, token| {
            if token == 1 {
                Reply::status(403)
                    .body(UNAUTHENTICATED)
                    .delay(Duration::from_millis(100))
            } else {
                Reply::ok()
            }
        });
        let sender = google.sender_without_keep_alive();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send(&push(), in_ms(5000)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), sent(2));
        }
        // One fetch of tok-1 shared by all, one renewal to tok-2 shared by all.
        assert_eq!(sender.tokens_fetched(), 2);
        assert_eq!(google.token_requests(), 2);
        let bearers: Vec<String> = google.sends().iter().map(bearer_of).collect();
        assert_eq!(bearers.len(), 20);
        assert_eq!(bearers.iter().filter(|b| *b == "Bearer tok-1").count(), 10);
        assert_eq!(bearers.iter().filter(|b| *b == "Bearer tok-2").count(), 10);
    }

    #[tokio::test]
    async fn persistent_refusal_is_rejected_after_one_renewal() {
        for status in [401u16, 403] {
            let google = FakeGoogle::with_sends(move |_, _| {
                Reply::status(status).body(format!(
                    r#"{{"error":{{"code":{status},"message":"SenderId mismatch","status":"PERMISSION_DENIED","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"SENDER_ID_MISMATCH"}}]}}}}"#
                ))
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
        let google = FakeGoogle::with_sends(|_, _| Reply::status(404).body(UNREGISTERED));
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
        let google = FakeGoogle::with_sends(move |_, _| Reply::status(400).body(answer.clone()));
        let outcome = google.sender().send(&push(), in_ms(3000)).await;
        assert_eq!(outcome, Outcome::TokenDead { status: 400, body });
        assert_eq!(google.sends().len(), 1);
        // A Google NOT_FOUND error without details.
        const NOT_FOUND: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#;
        let google = FakeGoogle::with_sends(|_, _| Reply::status(404).body(NOT_FOUND));
        let outcome = google.sender().send(&push(), in_ms(3000)).await;
        assert_eq!(
            outcome,
            Outcome::TokenDead {
                status: 404,
                body: NOT_FOUND.into()
            }
        );
    }

    #[tokio::test]
    async fn not_found_without_a_google_error_is_not_a_dead_token() {
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
        let account = ServiceAccount::parse(&google.account_json(&keys().private_pem)).unwrap();
        let fcm_url = format!("{}/wrong-prefix", google.base);
        let sender = FcmSender::new(account, &fcm_url, webhook::client().unwrap()).unwrap();
        match sender.send(&push(), in_ms(3000)).await {
            Outcome::Rejected { status: 404, body } => {
                assert!(body.contains("Not Found"), "{body}")
            }
            other => panic!("{other:?}"),
        }
        let paths: Vec<String> = google
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(
            paths,
            [
                "/token".to_string(),
                format!("/wrong-prefix/v1/projects/{PROJECT}/messages:send")
            ]
        );
    }

    #[tokio::test]
    async fn invalid_argument_is_rejected_after_one_attempt() {
        const INVALID: &str = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
        let google = FakeGoogle::with_sends(|_, _| Reply::status(400).body(INVALID));
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
        let google = FakeGoogle::with_sends(move |_, _| Reply::status(400).body(answer.clone()));
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
        let google = FakeGoogle::with_sends(|n, _| {
            if n == 0 {
                Reply::status(429)
                    .header("Retry-After", "1")
                    .body(r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}"#)
            } else {
                Reply::ok()
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
        let google = FakeGoogle::with_sends(|_, _| {
            Reply::status(503)
                .body(r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#)
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
        let google = FakeGoogle::with_sends(|n, _| {
            if n == 0 {
                Reply::status(500).body(r#"{"error":{"code":500,"status":"INTERNAL"}}"#)
            } else {
                Reply::ok()
            }
        });
        let started = Instant::now();
        assert_eq!(google.sender().send(&push(), in_ms(3000)).await, sent(2));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn key_refused_by_the_token_endpoint_is_rejected() {
        // Signed with a key Google does not know: the fake's own verification fails.
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
        let sender = google.sender_with_key(&keys().other_private_pem);
        match sender.send(&push(), in_ms(3000)).await {
            Outcome::Rejected { status: 400, body } => {
                assert!(body.starts_with("token endpoint: "), "{body}");
                assert!(body.contains("invalid_grant"), "{body}");
                assert!(body.contains("InvalidSignature"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        // And a 401 invalid_client from the token endpoint.
        let google = FakeGoogle::start(
            |_| {
                TokenPlan::Answer(
                    Reply::status(401)
                        .body(r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#),
                )
            },
            |_, _| Reply::ok(),
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
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
        let mut account = ServiceAccount::parse(&google.account_json(&keys().private_pem)).unwrap();
        account.token_uri = format!("http://127.0.0.1:{}/token", closed_port());
        let sender = FcmSender::new(account, &google.base, webhook::client().unwrap()).unwrap();
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
        let google = FakeGoogle::start(
            |n| {
                if n == 0 {
                    TokenPlan::Answer(Reply::status(503).body(r#"{"error":"backend"}"#))
                } else {
                    issue()
                }
            },
            |_, _| Reply::ok(),
        );
        let sender = google.sender();
        assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(2));
        assert_eq!(sender.tokens_fetched(), 1);
        assert_eq!(google.token_requests(), 2);
    }

    #[tokio::test]
    async fn expired_token_is_renewed_on_the_next_send() {
        let google = FakeGoogle::start(
            |_| TokenPlan::Issue {
                expires_in: 1,
                delay: Duration::ZERO,
            },
            |_, _| Reply::ok(),
        );
        let sender = google.sender();
        assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
        assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
        assert_eq!(sender.tokens_fetched(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
        assert_eq!(sender.tokens_fetched(), 2);
        let bearers: Vec<String> = google.sends().iter().map(bearer_of).collect();
        assert_eq!(
            bearers,
            ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"].map(String::from)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unexpired_token_is_still_used_when_renewal_fails() {
        // Valid 4 s: renewal due after 2 s, still usable until 3 s. Renewals fail slowly.
        let google = FakeGoogle::start(
            |n| {
                if n == 0 {
                    TokenPlan::Issue {
                        expires_in: 4,
                        delay: Duration::ZERO,
                    }
                } else {
                    TokenPlan::Answer(Reply::status(503).delay(Duration::from_millis(200)))
                }
            },
            |_, _| Reply::ok(),
        );
        let sender = google.sender_without_keep_alive();
        assert_eq!(sender.send(&push(), in_ms(3000)).await, sent(1));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // One renewal attempt; the sends that waited for it share its failure and, like it, use
        // the old token, each at its first attempt.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send(&push(), in_ms(3000)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), sent(1));
        }
        assert_eq!(google.token_requests(), 2);
        assert_eq!(sender.tokens_fetched(), 1);
        assert!(google
            .sends()
            .iter()
            .all(|s| bearer_of(s) == "Bearer tok-1"));
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
        let google = FakeGoogle::start(
            |_| TokenPlan::Answer(Reply::status(503).delay(Duration::from_millis(100))),
            |_, _| Reply::ok(),
        );
        let sender = google.sender_without_keep_alive();
        let started = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send(&push(), in_ms(1000)).await })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
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
        let google = FakeGoogle::with_sends(|_, _| Reply::ok());
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
            "private_key": keys().private_pem,
            "client_email": EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string();
        let account = ServiceAccount::parse(&json).unwrap();
        assert_eq!(account.private_key_id, None);
        let client = webhook::client().unwrap();
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
            "private_key": k.private_pem,
            "client_email": EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let account = ServiceAccount::parse(&good.to_string()).unwrap();
        assert_eq!(account.project_id, PROJECT);
        assert_eq!(account.client_email, EMAIL);
        assert_eq!(account.private_key_id.as_deref(), Some(KEY_ID));
        assert_eq!(account.token_uri, "https://oauth2.googleapis.com/token");
        assert_eq!(account.private_key, k.private_pem);
        let shown = format!("{account:?}");
        assert!(!shown.contains(&secret_line(&k.private_pem)), "{shown}");
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
            .private_pem
            .chars()
            .take(k.private_pem.len() / 2)
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
                with("type", k.private_pem.clone().into()),
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
                with("private_key", k.public_pem.clone().into()),
                "cannot sign RS256",
            ),
            (
                with("private_key", k.small_private_pem.clone().into()),
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
            for pem in [&k.private_pem, &k.public_pem, &k.small_private_pem] {
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
            "private_key": keys().private_pem,
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
}
