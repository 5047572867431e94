//! Text from outside made safe to log and to show in an RPC answer: a push service's answer body,
//! an error chain, a reason. Whatever a service (or a proxy in front of it) sends back is
//! bounded, its control characters are escaped (no forged log lines, no NUL), and credentials it
//! may echo are redacted: bearer tokens, JWTs, Google access tokens, and the device's own push
//! token (shown shortened, as everywhere else).

use crate::devices::contact::shorten_token;
use crate::ipc::limits::bounded_text;
use once_cell::sync::Lazy;
use regex::Regex;

/// The most bytes of outside text kept (after escaping).
pub const MAX_TEXT: usize = 512;

static BEARER: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"(?i)\b(bearer)(\s+|%20|\+)[^\s,;&]+").expect("bearer pattern"));
static JWT: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*").expect("jwt pattern")
});
static GOOGLE_TOKEN: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"ya29\.[A-Za-z0-9._-]+").expect("access token pattern"));

/// `text` as it may be logged: credentials and the device token redacted, control characters
/// escaped, at most [`MAX_TEXT`] bytes (cut on a character boundary, marked with `…`).
pub fn outside_text(text: &str, device_token: Option<&str>) -> String {
    let mut text = text.to_string();
    if let Some(token) = device_token.filter(|t| t.len() >= 8) {
        text = replace_ignoring_case(&text, token, &shorten_token(token));
    }
    let text = BEARER.replace_all(&text, "$1 <redacted>");
    let text = JWT.replace_all(&text, "<jwt redacted>");
    let text = GOOGLE_TOKEN.replace_all(&text, "ya29.<redacted>");
    bounded_text(&text, MAX_TEXT)
}

/// Every occurrence of `needle` (ASCII case ignored: a hex token may come back in upper case)
/// replaced by `with`.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    let lower_text = text.to_ascii_lowercase();
    let lower_needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower_text[rest..].find(&lower_needle) {
        let start = rest + found;
        out.push_str(&text[rest..start]);
        out.push_str(with);
        rest = start + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        let text = outside_text("bad\r\n 0(1) ERROR: forged\x1b[31m\0end\u{85}", None);
        assert_eq!(
            text,
            "bad\\r\\n 0(1) ERROR: forged\\u{1b}[31m\\u{0}end\\u{85}"
        );
        assert!(!text.chars().any(char::is_control));
    }

    #[test]
    fn echoed_credentials_and_the_device_token_are_redacted() {
        let echo = format!(
            "{{\"token\":\"{}\"}} Authorization: Bearer ya29.a0AfH6SMBx-secret.token; \
             assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl auth=bearer%20abc.def",
            TOKEN.to_ascii_uppercase()
        );
        let text = outside_text(&echo, Some(TOKEN));
        assert!(!text.to_ascii_lowercase().contains(TOKEN), "{text}");
        assert!(text.contains(&shorten_token(TOKEN)), "{text}");
        for secret in [
            "ya29.a0AfH6",
            "eyJhbGciOiJSUzI1NiJ9",
            "c2lnbmF0dXJl",
            "abc.def",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("Bearer <redacted>"), "{text}");
    }

    #[test]
    fn text_is_bounded_after_escaping() {
        let text = outside_text(&"\0".repeat(1000), None);
        assert!(text.len() <= MAX_TEXT, "{}", text.len());
        assert!(text.ends_with('…'));
        let text = outside_text(&"é".repeat(600), None);
        assert!(text.len() <= MAX_TEXT);
        assert_eq!(outside_text("short", None), "short");
    }
}
