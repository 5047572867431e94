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
    pub secret: Option<crate::config::Secret>,
    /// Statuses that mean the device's token is dead (the app's `dead_status`, default 410).
    pub dead_statuses: Vec<u16>,
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
/// - the app's dead statuses (default 410) -> TokenDead (final), other 4xx except 408/429 ->
///   Rejected (final, the device is kept), 3xx -> Rejected
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
        let answer = attempt(
            client,
            &url,
            app.secret.as_ref().map(crate::config::Secret::expose),
            &app.dead_statuses,
            body,
            attempt_end,
        )
        .await;
        let (retry_after, error) = match answer {
            WebhookReply::Sent(status) => return Outcome::Sent { status, attempts },
            WebhookReply::TokenDead(status, body) => return Outcome::TokenDead { status, body },
            WebhookReply::Rejected(status, body) => return Outcome::Rejected { status, body },
            WebhookReply::Fatal(error) => {
                return Outcome::GaveUp {
                    attempts,
                    last_error: error,
                }
            }
            WebhookReply::Retry { error, retry_after } => (retry_after, error),
            WebhookReply::Unreachable(error) => {
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
    /// The endpoint could not be reached: retried a few times only.
    Unreachable(String),
    /// The request cannot be made at all; retrying would not help.
    Fatal(String),
}

async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    secret: Option<&str>,
    dead_statuses: &[u16],
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
        Err(RequestError::Unreachable(error)) => return WebhookReply::Unreachable(error),
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
        _ if dead_statuses.contains(&code) => WebhookReply::TokenDead(code, body),
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
mod tests;
