//! The HTTP plumbing the reqwest-based providers (webhook, FCM, APNs) share: the client, one bounded
//! request, bounded body reading, the texts that describe a failed request or an error status,
//! Retry-After, and the Unix clock.

use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USER_AGENT: &str = concat!("kamailio-push/", env!("CARGO_PKG_VERSION"));
/// The client's connect timeout.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest single HTTP request; shorter when less time is left before the deadline.
pub(crate) const MAX_ATTEMPT_TIME: Duration = Duration::from_secs(5);
/// Most bytes of a response body kept in an [`Outcome`](super::Outcome) (and in error texts).
pub(crate) const MAX_BODY_TEXT: usize = 512;
/// A 2xx body is read (and thrown away) up to this size and time so that the connection can go
/// back to the pool; beyond that the connection is simply dropped.
const DRAIN_LIMIT: usize = 16 * 1024;
const DRAIN_TIME: Duration = Duration::from_millis(200);

/// The HTTP client the providers use: no redirects followed (a 3xx is treated like a Rejected final
/// answer), connect timeout 2 s, a per-request timeout applied per attempt (by the provider),
/// HTTP/1.1 and HTTP/2 allowed (HTTP/2 through ALPN on https), user agent
/// "kamailio-push/<crate version>".
pub fn client() -> Result<reqwest::Client, String> {
    client_builder()
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {}", error_chain(&e)))
}

/// The settings of [`client`], for a caller (a test) that adds its own (a root certificate).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
}

/// Why a request got no answer.
pub(crate) enum RequestError {
    /// Worth another attempt (the attempt timed out).
    Retry(String),
    /// The service could not be reached (connection refused or timed out, a name that does not
    /// resolve, a failed TLS handshake): retried only a few times ([`super::Backoff`]).
    Unreachable(String),
    /// The request cannot be made at all (reqwest could not build it); retrying would not help.
    Fatal(String),
}

/// How [`error_text`] words a connection that timed out.
#[derive(Clone, Copy)]
pub(crate) enum ConnectTimeoutText {
    /// "connection timed out (limit 2000 ms)" (the webhook's wording).
    WithLimit,
    /// "connection timed out" (FCM's wording).
    Plain,
}

/// Sends `request`, never past `end` (reqwest's own timeout of `time` should fire first).
pub(crate) async fn send_bounded(
    request: reqwest::RequestBuilder,
    end: Instant,
    time: Duration,
    wording: ConnectTimeoutText,
) -> Result<reqwest::Response, RequestError> {
    match tokio::time::timeout_at(end.into(), request.send()).await {
        Err(_) => Err(RequestError::Retry(format!(
            "timed out after {} ms",
            time.as_millis()
        ))),
        Ok(Err(error)) if error.is_builder() => {
            Err(RequestError::Fatal(error_text(&error, time, wording)))
        }
        Ok(Err(error)) if error.is_connect() => {
            Err(RequestError::Unreachable(error_text(&error, time, wording)))
        }
        Ok(Err(error)) => Err(RequestError::Retry(error_text(&error, time, wording))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Reads a 2xx answer's body away (bounded in size, and in time by 200 ms and `end`) so that its
/// connection can be reused.
pub(crate) async fn drain(response: reqwest::Response, end: Instant) {
    let drain_end = Instant::now()
        .checked_add(DRAIN_TIME)
        .map_or(end, |t| t.min(end));
    read_limited(response, DRAIN_LIMIT, drain_end).await;
}

/// 408, 429 and 5xx: the server may answer better later.
pub(crate) fn retryable(code: u16) -> bool {
    matches!(code, 408 | 429 | 500..=599)
}

/// "HTTP 503 Service Unavailable: <body>" ("HTTP 503 Service Unavailable" when the body is empty).
pub(crate) fn http_error(code: u16, body: &str) -> String {
    let mut text = format!("HTTP {code}");
    if let Some(reason) = reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        text.push(' ');
        text.push_str(reason);
    }
    if !body.is_empty() {
        text.push_str(": ");
        text.push_str(body);
    }
    text
}

/// Retry-After in integer seconds; an HTTP date or anything else is ignored.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads at most `limit` bytes of the body, stopping at `until`; errors end the reading quietly.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    until: Instant,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let reading = async {
        while bytes.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(limit - bytes.len());
                    bytes.extend_from_slice(chunk.get(..take).unwrap_or_default());
                }
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout_at(until.into(), reading).await;
    bytes
}

/// Lossy UTF-8 of the first [`MAX_BODY_TEXT`] bytes, never longer than that many bytes.
pub(crate) fn body_text(bytes: &[u8]) -> String {
    let head = bytes.get(..bytes.len().min(MAX_BODY_TEXT)).unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(head).into_owned();
    if text.len() > MAX_BODY_TEXT {
        let mut end = MAX_BODY_TEXT;
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Error text for a failed request: its kind, then the chain of causes, without the URL.
pub(crate) fn error_text(
    error: &reqwest::Error,
    time: Duration,
    wording: ConnectTimeoutText,
) -> String {
    let kind = if error.is_connect() && error.is_timeout() {
        match wording {
            ConnectTimeoutText::WithLimit => format!(
                "connection timed out (limit {} ms)",
                CONNECT_TIMEOUT.as_millis()
            ),
            ConnectTimeoutText::Plain => String::from("connection timed out"),
        }
    } else if error.is_timeout() {
        format!("timed out after {} ms", time.as_millis())
    } else if error.is_connect() {
        String::from("connection failed")
    } else if error.is_builder() {
        String::from("cannot build the request")
    } else {
        String::from("request failed")
    };
    let causes = error_chain(error);
    if causes.is_empty() {
        kind
    } else {
        format!("{kind}: {causes}")
    }
}

/// The causes of `error` (not `error` itself, whose text names the URL), joined by ": ".
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        cause = current.source();
    }
    parts.join(": ")
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_text_is_bounded_even_when_cutting_a_character() {
        let mut bytes = vec![b'a'; 511];
        bytes.extend_from_slice("é and more".as_bytes());
        let text = body_text(&bytes);
        assert!(text.len() <= MAX_BODY_TEXT);
        assert_eq!(text, "a".repeat(511));
        assert_eq!(body_text(b"short"), "short");
    }

    #[test]
    fn body_text_never_exceeds_512_bytes() {
        let mut bytes = vec![b'a'; 511];
        bytes.extend_from_slice("é and more".as_bytes());
        assert_eq!(body_text(&bytes), "a".repeat(511));
        assert_eq!(body_text(b"short"), "short");
        assert_eq!(body_text(&[0xff; 600]).len(), 510);
    }
}
