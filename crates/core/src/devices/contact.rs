//! What a REGISTER Contact says about push notifications.
//!
//! Mobile softphones put their push parameters into the Contact of their REGISTER, either as
//! RFC 8599 URI parameters (`pn-provider`, `pn-prid`, `pn-param`, `pn-purr`) or, in older Linphone
//! and Kazoo apps, as `pn-type`, `pn-tok` and `app-id`. Most put them into the Contact URI, some
//! after the `>` as Contact header parameters. This module parses Contact header values
//! ([`parse_contact_header`]) and Contact URIs as usrloc stores them ([`parse_contact_uri`]) into
//! [`ContactInfo`], and extracts the push part of a contact ([`push_binding`]).
//!
//! Everything here is plain Rust working on untrusted input: it never panics, it bounds what it
//! accepts ([`MAX_CONTACT_LEN`], [`MAX_TOKEN_LEN`], [`MAX_PARAM_LEN`]) and its errors never print a
//! whole push token ([`shorten_token`]).

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Limits (bytes) applied to decoded values.
/// A whole Contact header value or a Contact URI.
pub const MAX_CONTACT_LEN: usize = 4096;
/// A push token (`pn-prid`, `pn-tok`; for the iOS dual form, the token chosen).
pub const MAX_TOKEN_LEN: usize = 1024;
/// `pn-param`, `app-id`, `pn-provider`, `pn-type` and the other push values.
pub const MAX_PARAM_LEN: usize = 256;

/// Parameters as parsed: names lowercased, values decoded, `None` for a flag parameter.
type Params = Vec<(String, Option<String>)>;

/// One Contact as parsed: the URI (without the angle brackets, URI params kept in it), and the
/// parameters of both the URI and the header, names lowercased, values decoded (None = flag param).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactInfo {
    pub uri: String,
    pub uri_params: Vec<(String, Option<String>)>,
    pub header_params: Vec<(String, Option<String>)>,
    pub expires: Option<u32>,
    /// `+sip.instance` without the surrounding quotes, e.g. `<urn:uuid:...>`.
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
}

/// Why a Contact, or its push part, could not be used.
///
/// Values carried here are already made safe for logs: push tokens are shortened with
/// [`shorten_token`], other user-supplied text is truncated and has its control characters escaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactError {
    /// `what` is `len` bytes long, more than `max`.
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A `%` not followed by two hex digits, in the parameter named.
    BadEscape { param: String },
    /// Percent-decoding the parameter named gave bytes that are not UTF-8.
    NotUtf8 { param: String },
    /// The Contact does not follow the SIP grammar; the text says where.
    Malformed(String),
    /// A push provider without a push token.
    MissingToken { provider: String },
    /// A push token without a push provider.
    MissingProvider,
    /// The push token is empty or holds whitespace or control characters (`token` is shortened).
    BadToken { reason: &'static str, token: String },
    /// The push provider name is empty or holds characters other than letters, digits, `.-_+`.
    BadProvider { provider: String },
    /// A push value other than the token and the provider (`pn-param`, `app-id`) is unusable.
    BadValue {
        param: &'static str,
        reason: &'static str,
    },
    /// `pn-timeout` is not a number of seconds.
    BadTimeout { value: String },
}

impl fmt::Display for ContactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContactError::TooLong { what, len, max } => {
                write!(f, "{what} is too long: {len} bytes, at most {max} allowed")
            }
            ContactError::BadEscape { param } => write!(
                f,
                "invalid percent-escape ('%' not followed by two hex digits) in parameter '{param}'"
            ),
            ContactError::NotUtf8 { param } => write!(
                f,
                "percent-decoded value of parameter '{param}' is not valid UTF-8"
            ),
            ContactError::Malformed(what) => write!(f, "malformed Contact: {what}"),
            ContactError::MissingToken { provider } => write!(
                f,
                "push provider '{provider}' given without a push token (pn-prid or pn-tok)"
            ),
            ContactError::MissingProvider => write!(
                f,
                "push token given without a push provider (pn-provider or pn-type)"
            ),
            ContactError::BadToken { reason, token } => {
                write!(f, "unusable push token '{token}': {reason}")
            }
            ContactError::BadProvider { provider } => write!(
                f,
                "unusable push provider '{provider}': only letters, digits and '.-_+' are allowed"
            ),
            ContactError::BadValue { param, reason } => {
                write!(f, "unusable {param} value: {reason}")
            }
            ContactError::BadTimeout { value } => {
                write!(f, "pn-timeout '{value}' is not a number of seconds")
            }
        }
    }
}

impl std::error::Error for ContactError {}

/// The push part of a Contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBinding {
    /// "apns", "apns.dev", "fcm", "webpush", or another provider name, lowercased.
    pub provider: String,
    /// The token to push to (for the iOS dual form, the VoIP one).
    pub prid: String,
    /// pn-param or app-id, as given.
    pub param: Option<String>,
    pub silent: bool,
    pub timeout: Option<u32>,
}

impl PushBinding {
    /// RFC 8599 matching: provider, prid and param all equal.
    pub fn same_registration(&self, other: &PushBinding) -> bool {
        self.provider == other.provider && self.prid == other.prid && self.param == other.param
    }

    /// true for "apns.dev".
    pub fn sandbox(&self) -> bool {
        self.provider == "apns.dev"
    }
}

/// Parses a full Contact header value (may hold several comma-separated contacts; commas inside
/// quotes or <> do not split; `*` yields an empty Vec). name-addr (`"Name" <uri>;params`) and
/// addr-spec (`sip:u@h;params` — then, per RFC 3261, the ;params after the URI are header params)
/// forms both.
///
/// Unquoted parameter values are percent-decoded; quoted header parameter values are taken
/// literally (only their backslash escapes are undone). Empty list elements and empty parameters
/// (`;;`) are tolerated.
pub fn parse_contact_header(value: &str) -> Result<Vec<ContactInfo>, ContactError> {
    check_len("Contact header", value, MAX_CONTACT_LEN)?;
    let value = value.trim();
    if value == "*" {
        return Ok(Vec::new());
    }
    if value.is_empty() {
        return Err(malformed("empty Contact header"));
    }
    let mut contacts = Vec::new();
    for element in split_top_level(value)? {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        if element == "*" {
            return Err(malformed("'*' must be the only contact of the header"));
        }
        contacts.push(parse_element(element)?);
    }
    if contacts.is_empty() {
        return Err(malformed("no contact in the header"));
    }
    Ok(contacts)
}

/// Parses a bare Contact URI as Kamailio's usrloc stores it (e.g. "sip:alice@1.2.3.4:5060;transport=tcp;pn-prid=x"),
/// i.e. all ;params belong to the URI; header_params empty.
pub fn parse_contact_uri(uri: &str) -> Result<ContactInfo, ContactError> {
    check_len("Contact URI", uri, MAX_CONTACT_LEN)?;
    let uri = uri.trim();
    let uri_params = parse_uri(uri)?;
    Ok(ContactInfo {
        uri: uri.to_owned(),
        uri_params,
        header_params: Vec::new(),
        expires: None,
        instance: None,
        reg_id: None,
    })
}

/// The push binding of a contact: Ok(None) when it has no push parameters at all (no pn-provider,
/// pn-prid, pn-type, pn-tok), Err when push parameters are present but unusable (provider without
/// token, token without provider, oversized, token with whitespace/control chars or empty, bad pn-timeout).
///
/// Parameters are looked up in the URI first, then in the header; the first occurrence wins. When
/// `pn-provider` or `pn-prid` is present the RFC 8599 pair is used and `pn-type`/`pn-tok` are
/// ignored; otherwise the legacy pair. The param is `pn-param`, or `app-id` when there is no
/// `pn-param` (the other way round for legacy contacts).
pub fn push_binding(info: &ContactInfo) -> Result<Option<PushBinding>, ContactError> {
    let get = |name: &str| -> Option<Option<&str>> {
        info.uri_params
            .iter()
            .chain(info.header_params.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };

    let rfc8599 = get("pn-provider").is_some() || get("pn-prid").is_some();
    let legacy = get("pn-type").is_some() || get("pn-tok").is_some();
    if !rfc8599 && !legacy {
        return Ok(None);
    }
    let (provider_name, token_name) = if rfc8599 {
        ("pn-provider", "pn-prid")
    } else {
        ("pn-type", "pn-tok")
    };

    // The provider.
    let raw_provider = match get(provider_name).flatten() {
        Some(p) if !p.is_empty() => p,
        _ => return Err(ContactError::MissingProvider),
    };
    check_len(provider_name, raw_provider, MAX_PARAM_LEN)?;
    if !raw_provider
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return Err(ContactError::BadProvider {
            provider: shown(raw_provider),
        });
    }
    let mut provider = raw_provider.to_ascii_lowercase();
    if !rfc8599 {
        match provider.as_str() {
            "apple" => provider = "apns".to_owned(),
            "google" | "firebase" => provider = "fcm".to_owned(),
            _ => {}
        }
    }

    // The token.
    let raw_token = match get(token_name).flatten() {
        Some(t) => t,
        None => return Err(ContactError::MissingToken { provider }),
    };
    if raw_token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ContactError::BadToken {
            reason: "it contains whitespace or control characters",
            token: shorten_token(raw_token),
        });
    }
    let token = if provider.starts_with("apns") {
        select_apns_token(raw_token)
    } else {
        raw_token
    };
    if token.is_empty() {
        return Err(ContactError::BadToken {
            reason: "it is empty",
            token: String::new(),
        });
    }
    check_len(token_name, token, MAX_TOKEN_LEN)?;

    // The param (APNs topic base or FCM project).
    let (first, second) = if rfc8599 {
        ("pn-param", "app-id")
    } else {
        ("app-id", "pn-param")
    };
    let mut param = None;
    for name in [first, second] {
        if let Some(value) = get(name).flatten().filter(|v| !v.is_empty()) {
            check_len(name, value, MAX_PARAM_LEN)?;
            if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ContactError::BadValue {
                    param: name,
                    reason: "it contains whitespace or control characters",
                });
            }
            param = Some(value.to_owned());
            break;
        }
    }

    let silent = match get("pn-silent") {
        None => false,
        Some(None) => true,
        Some(Some(v)) => {
            v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
        }
    };

    let timeout = match get("pn-timeout") {
        None => None,
        Some(value) => {
            let value = value.unwrap_or("");
            match parse_digits(value) {
                Some(Ok(seconds)) => Some(seconds),
                _ => {
                    return Err(ContactError::BadTimeout {
                        value: shown(value),
                    })
                }
            }
        }
    };

    Ok(Some(PushBinding {
        provider,
        prid: token.to_owned(),
        param,
        silent,
        timeout,
    }))
}

/// A token safe for logs and RPC output: first 6 and last 4 characters with "…" between
/// (tokens of 12 chars or less are shown as their first 2 chars + "…").
///
/// Tokens of 2 characters or less show fewer characters, so that the whole token never appears;
/// control characters are shown as `?`.
pub fn shorten_token(token: &str) -> String {
    let chars: Vec<char> = token
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let n = chars.len();
    let mut out = String::new();
    if n > 12 {
        out.extend(&chars[..6]);
        out.push('…');
        out.extend(&chars[n - 4..]);
    } else {
        let keep = if n > 2 { 2 } else { n.saturating_sub(1) };
        out.extend(&chars[..keep]);
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Private helpers.

fn malformed(what: &str) -> ContactError {
    ContactError::Malformed(what.to_owned())
}

fn check_len(what: &'static str, value: &str, max: usize) -> Result<(), ContactError> {
    if value.len() > max {
        Err(ContactError::TooLong {
            what,
            len: value.len(),
            max,
        })
    } else {
        Ok(())
    }
}

/// User text made safe for an error message: at most 32 characters, control characters escaped.
fn shown(text: &str) -> String {
    const MAX: usize = 32;
    let mut out = String::new();
    for c in text.chars().take(MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Linear whitespace inside a header value.
fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `Some(Ok(n))` for a non-empty string of ASCII digits that fits a u32, `Some(Err(()))` for
/// digits that do not fit, `None` for anything else.
fn parse_digits(value: &str) -> Option<Result<u32, ()>> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u32>().map_err(|_| ()))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Undoes `%XX` escapes; `param` names the parameter for error messages.
fn percent_decode(raw: &str, param: &str) -> Result<String, ContactError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex_value);
            let low = bytes.get(i + 2).copied().and_then(hex_value);
            match (high, low) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    return Err(ContactError::BadEscape {
                        param: shown(param),
                    })
                }
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ContactError::NotUtf8 {
        param: shown(param),
    })
}

/// Splits a Contact header value at the commas outside quoted strings and `<...>`.
fn split_top_level(value: &str) -> Result<Vec<&str>, ContactError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (i, c) in value.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if in_angle {
            match c {
                '>' => in_angle = false,
                '<' => return Err(malformed("'<' inside a <URI>")),
                _ => {}
            }
        } else {
            match c {
                '"' => in_quote = true,
                '<' => in_angle = true,
                '>' => return Err(malformed("'>' without a matching '<'")),
                ',' => {
                    parts.push(value.get(start..i).unwrap_or(""));
                    start = i + 1;
                }
                _ => {}
            }
        }
    }
    if in_quote {
        return Err(malformed("unterminated quoted string"));
    }
    if in_angle {
        return Err(malformed("unterminated '<'"));
    }
    parts.push(value.get(start..).unwrap_or(""));
    Ok(parts)
}

/// The byte index of the first `target` outside quoted strings.
fn find_unquoted(text: &str, target: char) -> Result<Option<usize>, ContactError> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == target {
            return Ok(Some(i));
        }
    }
    if in_quote {
        return Err(malformed("unterminated quoted string"));
    }
    Ok(None)
}

/// Checks the display name before `<`: empty, one quoted string, or plain words.
fn check_display_name(display: &str) -> Result<(), ContactError> {
    let display = display.trim();
    if display.is_empty() {
        return Ok(());
    }
    if let Some(inner) = display.strip_prefix('"') {
        let mut cur = Cursor::new(inner);
        read_quoted(&mut cur)?;
        if !cur.rest().trim().is_empty() {
            return Err(malformed("text after the quoted display name"));
        }
        return Ok(());
    }
    if display
        .chars()
        .any(|c| matches!(c, '"' | ';' | '=' | '<' | '>' | '\\') || c.is_control())
    {
        return Err(malformed("invalid character in the display name"));
    }
    Ok(())
}

/// Parses one element of a Contact header (no top-level commas).
fn parse_element(element: &str) -> Result<ContactInfo, ContactError> {
    let (uri, rest) = match find_unquoted(element, '<')? {
        Some(lt) => {
            check_display_name(element.get(..lt).unwrap_or(""))?;
            let after = element.get(lt + 1..).unwrap_or("");
            let gt = after
                .find('>')
                .ok_or_else(|| malformed("unterminated '<'"))?;
            (
                after.get(..gt).unwrap_or("").trim(),
                after.get(gt + 1..).unwrap_or(""),
            )
        }
        None => match element.find(';') {
            Some(semi) => (
                element.get(..semi).unwrap_or("").trim(),
                element.get(semi..).unwrap_or(""),
            ),
            None => (element.trim(), ""),
        },
    };
    let uri_params = parse_uri(uri)?;
    let header_params = parse_header_params(rest)?;

    let first = |name: &str| {
        header_params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };
    let expires = match first("expires") {
        None => None,
        Some(value) => match parse_digits(value.unwrap_or("")) {
            Some(Ok(seconds)) => Some(seconds),
            // RFC 3261: values above 2**32-1 are taken as 2**32-1.
            Some(Err(())) => Some(u32::MAX),
            None => {
                return Err(malformed(
                    "the 'expires' parameter is not a number of seconds",
                ))
            }
        },
    };
    let reg_id = match first("reg-id") {
        None => None,
        Some(value) => match parse_digits(value.unwrap_or("")) {
            Some(Ok(id)) => Some(id),
            _ => return Err(malformed("the 'reg-id' parameter is not a number")),
        },
    };
    let instance = match first("+sip.instance") {
        None => None,
        Some(Some(value)) if !value.is_empty() => Some(value.to_owned()),
        Some(_) => return Err(malformed("the '+sip.instance' parameter has no value")),
    };

    Ok(ContactInfo {
        uri: uri.to_owned(),
        uri_params,
        header_params,
        expires,
        instance,
        reg_id,
    })
}

/// Checks a URI and returns its parameters (between the host part and any `?headers`).
fn parse_uri(uri: &str) -> Result<Params, ContactError> {
    check_len("Contact URI", uri, MAX_CONTACT_LEN)?;
    if uri.is_empty() {
        return Err(malformed("empty URI"));
    }
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    {
        return Err(malformed(
            "invalid character in the URI (whitespace, control character, '<', '>' or '\"')",
        ));
    }
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| malformed("URI without a scheme"))?;
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(malformed("URI without a valid scheme"));
    }
    // The user part may hold ';' and '?', but not '@': the first '@' ends it.
    let host_part = match rest.find('@') {
        Some(at) => rest.get(at + 1..).unwrap_or(""),
        None => rest,
    };
    let host_end = host_part.find([';', '?']).unwrap_or(host_part.len());
    if host_end == 0 {
        return Err(malformed("URI without a host"));
    }
    let after_host = host_part.get(host_end..).unwrap_or("");
    let Some(params) = after_host.strip_prefix(';') else {
        return Ok(Vec::new());
    };
    let params = params.split('?').next().unwrap_or("");

    let mut out = Vec::new();
    for segment in params.split(';') {
        if segment.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = match segment.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (segment, None),
        };
        if raw_name.is_empty() {
            return Err(malformed("URI parameter without a name"));
        }
        let name = percent_decode(raw_name, raw_name)?.to_ascii_lowercase();
        let value = match raw_value {
            Some(v) => Some(percent_decode(v, &name)?),
            None => None,
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Parses `;name=value;flag;name="quoted"...` after the contact address.
fn parse_header_params(text: &str) -> Result<Params, ContactError> {
    let mut cur = Cursor::new(text);
    let mut out = Vec::new();
    loop {
        cur.skip_lws();
        match cur.bump() {
            None => break,
            Some(';') => {}
            Some(_) => {
                return Err(malformed(
                    "unexpected text after the contact address (expected ';')",
                ))
            }
        }
        cur.skip_lws();
        if matches!(cur.peek(), None | Some(';')) {
            continue;
        }
        let raw_name = cur.take_while(|c| !is_lws(c) && c != '=' && c != ';');
        if raw_name.is_empty() {
            return Err(malformed("header parameter without a name"));
        }
        if raw_name
            .chars()
            .any(|c| matches!(c, '"' | '<' | '>' | ',' | '\\') || c.is_control())
        {
            return Err(malformed("invalid character in a header parameter name"));
        }
        let name = percent_decode(raw_name, raw_name)?.to_ascii_lowercase();
        cur.skip_lws();
        let value = if cur.peek() == Some('=') {
            cur.bump();
            cur.skip_lws();
            if cur.peek() == Some('"') {
                cur.bump();
                Some(read_quoted(&mut cur)?)
            } else {
                let raw = cur.take_while(|c| !is_lws(c) && c != ';');
                if raw
                    .chars()
                    .any(|c| matches!(c, '"' | '<' | '>' | ',' | '\\') || c.is_control())
                {
                    return Err(ContactError::Malformed(format!(
                        "invalid character in the value of header parameter '{}'",
                        shown(&name)
                    )));
                }
                Some(percent_decode(raw, &name)?)
            }
        } else {
            None
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Reads the rest of a quoted string whose opening quote was consumed, up to and including the
/// closing quote; returns the content with backslash escapes undone.
fn read_quoted(cur: &mut Cursor<'_>) -> Result<String, ContactError> {
    let mut out = String::new();
    loop {
        match cur.bump() {
            None => return Err(malformed("unterminated quoted string")),
            Some('"') => return Ok(out),
            Some('\\') => match cur.bump() {
                Some(c) => out.push(c),
                None => return Err(malformed("unterminated quoted string")),
            },
            Some(c) => out.push(c),
        }
    }
}

/// The `remote` token of an APNs dual-form `pn-prid` (`tokA:remote&tokB:voip`) in a stored
/// Contact URI, if it has one: pushes to the app's own topic (alerts: messages, end-of-call
/// pushes) need it, while the stored token is the VoIP one. None for any other Contact.
pub fn apns_remote_token(contact: &str) -> Option<String> {
    let info = parse_contact_uri(contact).ok()?;
    let raw = info
        .uri_params
        .iter()
        .find(|(n, _)| n == "pn-prid")
        .and_then(|(_, v)| v.as_deref())?;
    raw.split('&')
        .filter_map(|part| part.rsplit_once(':'))
        .find(|(token, kind)| kind.eq_ignore_ascii_case("remote") && !token.is_empty())
        .map(|(token, _)| token.to_string())
}

/// For the APNs dual form `tokA:remote&tokB:voip`: the VoIP token, else the `remote` one, else
/// the first one. A single token without `:type` is returned as is.
fn select_apns_token(raw: &str) -> &str {
    let mut first = None;
    let mut remote = None;
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (token, kind) = match part.rsplit_once(':') {
            Some((token, kind)) => (token, kind),
            None => (part, ""),
        };
        if kind.eq_ignore_ascii_case("voip") {
            return token;
        }
        if remote.is_none() && kind.eq_ignore_ascii_case("remote") {
            remote = Some(token);
        }
        if first.is_none() {
            first = Some(token);
        }
    }
    remote.or(first).unwrap_or("")
}

/// A position in a string that only ever stops at char boundaries.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_lws(&mut self) {
        while self.peek().is_some_and(is_lws) {
            self.bump();
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APNS_REMOTE: &str = "4e1f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091";
    const APNS_VOIP: &str = "a7d0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8";
    const FCM_TOKEN: &str = "dXk3h1Zy0Ts:APA91bH-9fLkQ2_mNpRsTuVwXyZ0123456789abcdefghijklmnop";

    fn one(header: &str) -> ContactInfo {
        let mut contacts = parse_contact_header(header).expect("header parses");
        assert_eq!(contacts.len(), 1, "one contact in {header:?}");
        contacts.remove(0)
    }

    fn binding(header: &str) -> PushBinding {
        push_binding(&one(header))
            .expect("push parameters usable")
            .expect("push parameters present")
    }

    fn binding_err(header: &str) -> ContactError {
        match push_binding(&one(header)) {
            Err(e) => e,
            Ok(b) => panic!("expected an error for {header:?}, got {b:?}"),
        }
    }

    fn p(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn remote_token_of_the_dual_form() {
        assert_eq!(
            apns_remote_token(
                "sip:a@h;pn-provider=apns;pn-prid=REM:remote&VO:voip;pn-param=T.b.remote&voip"
            )
            .as_deref(),
            Some("REM")
        );
        assert_eq!(
            apns_remote_token("sip:a@h;pn-provider=apns;pn-prid=VO"),
            None
        );
        assert_eq!(apns_remote_token("sip:a@h;pn-prid=VO:voip"), None);
        assert_eq!(apns_remote_token("not a uri"), None);
    }

    #[test]
    fn linphone_rfc8599_in_uri() {
        let c = one("<sip:alice@10.0.0.1:5060;transport=tcp;pn-provider=apns;pn-prid=ABC;pn-param=TEAM.com.x.voip>");
        assert_eq!(
            c.uri,
            "sip:alice@10.0.0.1:5060;transport=tcp;pn-provider=apns;pn-prid=ABC;pn-param=TEAM.com.x.voip"
        );
        assert_eq!(
            c.uri_params,
            vec![
                p("transport", Some("tcp")),
                p("pn-provider", Some("apns")),
                p("pn-prid", Some("ABC")),
                p("pn-param", Some("TEAM.com.x.voip")),
            ]
        );
        assert!(c.header_params.is_empty());
        assert_eq!(c.expires, None);
        assert_eq!(
            push_binding(&c).unwrap(),
            Some(PushBinding {
                provider: "apns".into(),
                prid: "ABC".into(),
                param: Some("TEAM.com.x.voip".into()),
                silent: false,
                timeout: None,
            })
        );
    }

    #[test]
    fn linphone_full_ios_contact() {
        let header = format!(
            "<sip:alice@192.168.1.10:5060;transport=tls;pn-prid={APNS_REMOTE}:remote&{APNS_VOIP}:voip;\
             pn-provider=apns.dev;pn-param=ABCD1234.org.linphone.phone.remote%26voip;pn-silent=1;\
             pn-timeout=0;pn-msg-str=IM_MSG;pn-call-snd=notes_of_the_day.caf>;\
             +sip.instance=\"<urn:uuid:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9>\";\
             +org.linphone.specs=\"groupchat/1.1,lime\";expires=600"
        );
        let c = one(&header);
        assert_eq!(c.expires, Some(600));
        assert_eq!(
            c.instance.as_deref(),
            Some("<urn:uuid:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9>")
        );
        let b = push_binding(&c).unwrap().unwrap();
        assert_eq!(b.provider, "apns.dev");
        assert!(b.sandbox());
        assert_eq!(b.prid, APNS_VOIP);
        assert_eq!(
            b.param.as_deref(),
            Some("ABCD1234.org.linphone.phone.remote&voip")
        );
        assert!(b.silent);
        assert_eq!(b.timeout, Some(0));
    }

    #[test]
    fn ios_dual_token_forms() {
        // VoIP second.
        let b = binding(&format!(
            "<sip:a@h;pn-provider=apns;pn-prid={APNS_REMOTE}:remote&{APNS_VOIP}:voip;pn-param=T.b.remote&voip>"
        ));
        assert_eq!(b.prid, APNS_VOIP);
        assert_eq!(b.param.as_deref(), Some("T.b.remote&voip"));
        // VoIP first, percent-encoded separators.
        let b = binding(&format!(
            "<sip:a@h;pn-provider=apns;pn-prid={APNS_VOIP}%3Avoip%26{APNS_REMOTE}%3Aremote>"
        ));
        assert_eq!(b.prid, APNS_VOIP);
        // Only a remote token.
        let b = binding(&format!(
            "<sip:a@h;pn-provider=apns;pn-prid={APNS_REMOTE}:remote;pn-param=T.b.remote>"
        ));
        assert_eq!(b.prid, APNS_REMOTE);
        // Plain token.
        let b = binding(&format!("<sip:a@h;pn-provider=apns;pn-prid={APNS_REMOTE}>"));
        assert_eq!(b.prid, APNS_REMOTE);
        // Nothing but a type: empty token.
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=apns;pn-prid=:voip>"),
            ContactError::BadToken { .. }
        ));
    }

    #[test]
    fn fcm_token_with_colon_is_kept_whole() {
        let b = binding(&format!(
            "<sip:a@h;pn-provider=fcm;pn-prid={FCM_TOKEN};pn-param=my-project>"
        ));
        assert_eq!(b.provider, "fcm");
        assert_eq!(b.prid, FCM_TOKEN);
        assert_eq!(b.param.as_deref(), Some("my-project"));
        assert!(!b.sandbox());
        // Even when the colon is percent-encoded.
        let encoded = FCM_TOKEN.replace(':', "%3A");
        let b = binding(&format!("<sip:a@h;pn-provider=fcm;pn-prid={encoded}>"));
        assert_eq!(b.prid, FCM_TOKEN);
    }

    #[test]
    fn legacy_parameters() {
        let b = binding("<sip:a@h;app-id=com.example.phone;pn-type=apple;pn-tok=ABCDEF0123>");
        assert_eq!(b.provider, "apns");
        assert_eq!(b.prid, "ABCDEF0123");
        assert_eq!(b.param.as_deref(), Some("com.example.phone"));
        for (kind, provider) in [
            ("google", "fcm"),
            ("firebase", "fcm"),
            ("Google", "fcm"),
            ("APPLE", "apns"),
            ("Huawei", "huawei"),
        ] {
            let b = binding(&format!("<sip:a@h;pn-type={kind};pn-tok=tok123>"));
            assert_eq!(b.provider, provider, "pn-type={kind}");
            assert_eq!(b.prid, "tok123");
            assert_eq!(b.param, None);
        }
        // pn-tok without pn-type, pn-type without pn-tok.
        assert_eq!(
            binding_err("<sip:a@h;pn-tok=tok123>"),
            ContactError::MissingProvider
        );
        assert!(matches!(
            binding_err("<sip:a@h;pn-type=google>"),
            ContactError::MissingToken { provider } if provider == "fcm"
        ));
    }

    #[test]
    fn rfc8599_wins_over_legacy() {
        let b = binding(
            "<sip:a@h;pn-type=google;pn-tok=OLDTOKEN;app-id=com.old;\
             pn-provider=apns;pn-prid=NEWTOKEN;pn-param=TEAM.com.new.voip>",
        );
        assert_eq!(b.provider, "apns");
        assert_eq!(b.prid, "NEWTOKEN");
        assert_eq!(b.param.as_deref(), Some("TEAM.com.new.voip"));
        // app-id is the fallback param of an RFC 8599 contact without pn-param.
        let b = binding("<sip:a@h;pn-provider=fcm;pn-prid=NEWTOKEN;app-id=com.old>");
        assert_eq!(b.param.as_deref(), Some("com.old"));
        // An RFC 8599 provider does not borrow the legacy token.
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-tok=OLDTOKEN>"),
            ContactError::MissingToken { .. }
        ));
    }

    #[test]
    fn header_param_placement_and_precedence() {
        let c = one("\"Alice\" <sip:alice@h;transport=tcp>;pn-provider=fcm;pn-prid=TOKEN1;pn-param=proj;expires=60");
        assert_eq!(c.uri, "sip:alice@h;transport=tcp");
        assert_eq!(c.uri_params, vec![p("transport", Some("tcp"))]);
        assert_eq!(c.expires, Some(60));
        let b = push_binding(&c).unwrap().unwrap();
        assert_eq!(
            (b.provider.as_str(), b.prid.as_str(), b.param.as_deref()),
            ("fcm", "TOKEN1", Some("proj"))
        );
        // URI parameters take precedence over header parameters, each name separately.
        let b = binding(
            "<sip:alice@h;pn-prid=URITOKEN>;pn-provider=fcm;pn-prid=HDRTOKEN;pn-param=proj",
        );
        assert_eq!(b.prid, "URITOKEN");
        assert_eq!(b.provider, "fcm");
        assert_eq!(b.param.as_deref(), Some("proj"));
        // Quoted header values.
        let b = binding("<sip:alice@h>;pn-provider=\"fcm\";pn-prid=\"TOK\\\"EN\"");
        assert_eq!(b.prid, "TOK\"EN");
    }

    #[test]
    fn names_case_insensitive_and_percent_decoding() {
        let c = one("<sip:a@h;PN-Provider=FCM;Pn-Prid=ab%3Acd%2fef;pn%2Dparam=my%20proj>");
        assert_eq!(
            c.uri_params,
            vec![
                p("pn-provider", Some("FCM")),
                p("pn-prid", Some("ab:cd/ef")),
                p("pn-param", Some("my proj")),
            ]
        );
        // Provider lowercased, token decoded; the param with a space is refused.
        assert_eq!(
            binding_err("<sip:a@h;PN-Provider=FCM;Pn-Prid=ab%3Acd%2fef;pn%2Dparam=my%20proj>"),
            ContactError::BadValue {
                param: "pn-param",
                reason: "it contains whitespace or control characters"
            }
        );
        let b = binding("<sip:a@h;PN-Provider=FCM;Pn-Prid=ab%3Acd%2fef>;PN-PARAM=x%2Ey");
        assert_eq!(b.provider, "fcm");
        assert_eq!(b.prid, "ab:cd/ef");
        assert_eq!(b.param.as_deref(), Some("x.y"));
        // Multibyte decoding.
        let c = one("<sip:a@h;x=%C3%A9t%C3%A9>");
        assert_eq!(c.uri_params, vec![p("x", Some("été"))]);
        // Escapes that are not UTF-8.
        assert!(matches!(
            parse_contact_header("<sip:a@h;x=%E9>"),
            Err(ContactError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn instance_reg_id_expires() {
        let c = one("<sip:alice@10.0.0.1:5060;transport=tcp;ob>;reg-id=1;+sip.instance=\"<urn:uuid:0a1b2c3d-0000-1111-2222-333344445555>\";expires=3600");
        assert_eq!(c.reg_id, Some(1));
        assert_eq!(c.expires, Some(3600));
        assert_eq!(
            c.instance.as_deref(),
            Some("<urn:uuid:0a1b2c3d-0000-1111-2222-333344445555>")
        );
        assert_eq!(
            c.uri_params,
            vec![p("transport", Some("tcp")), p("ob", None)]
        );
        assert_eq!(push_binding(&c).unwrap(), None);
        // Spaces around ';' and '=', upper-case names.
        let c = one("<sip:a@h> ; EXPIRES = 0 ; Reg-Id=7");
        assert_eq!(c.expires, Some(0));
        assert_eq!(c.reg_id, Some(7));
        assert_eq!(c.instance, None);
        // Huge expires is capped, bad values refused.
        assert_eq!(
            one("<sip:a@h>;expires=99999999999999999999").expires,
            Some(u32::MAX)
        );
        for bad in [
            "<sip:a@h>;expires=soon",
            "<sip:a@h>;expires",
            "<sip:a@h>;expires=-1",
            "<sip:a@h>;reg-id=x",
            "<sip:a@h>;reg-id=99999999999",
            "<sip:a@h>;+sip.instance",
            "<sip:a@h>;+sip.instance=\"\"",
        ] {
            assert!(
                matches!(parse_contact_header(bad), Err(ContactError::Malformed(_))),
                "{bad:?}"
            );
        }
        // URI parameters named like header ones do not count.
        assert_eq!(one("<sip:a@h;expires=30>").expires, None);
    }

    #[test]
    fn several_contacts_with_commas_inside_quotes_and_angles() {
        let header = "\"Doe, John\" <sip:john@h;x=a,b>;+sip.instance=\"<urn:uuid:1,2>\", \
                      <sip:two@h;pn-provider=fcm;pn-prid=T2>;expires=5 ,sip:three@h;expires=7";
        let contacts = parse_contact_header(header).unwrap();
        assert_eq!(contacts.len(), 3);
        assert_eq!(contacts[0].uri, "sip:john@h;x=a,b");
        assert_eq!(contacts[0].uri_params, vec![p("x", Some("a,b"))]);
        assert_eq!(contacts[0].instance.as_deref(), Some("<urn:uuid:1,2>"));
        assert_eq!(contacts[1].uri, "sip:two@h;pn-provider=fcm;pn-prid=T2");
        assert_eq!(contacts[1].expires, Some(5));
        assert_eq!(push_binding(&contacts[1]).unwrap().unwrap().prid, "T2");
        assert_eq!(contacts[2].uri, "sip:three@h");
        assert_eq!(contacts[2].expires, Some(7));
        assert_eq!(push_binding(&contacts[0]).unwrap(), None);
    }

    #[test]
    fn star() {
        assert_eq!(parse_contact_header("*").unwrap(), vec![]);
        assert_eq!(parse_contact_header("  *\t").unwrap(), vec![]);
        assert!(matches!(
            parse_contact_header("*, <sip:a@h>"),
            Err(ContactError::Malformed(_))
        ));
        assert!(matches!(
            parse_contact_header("<sip:a@h>,*"),
            Err(ContactError::Malformed(_))
        ));
    }

    #[test]
    fn addr_spec_form() {
        let c = one("sip:alice@h:5060;expires=60;pn-provider=fcm;pn-prid=TOKEN;+sip.instance=\"<urn:uuid:9>\"");
        assert_eq!(c.uri, "sip:alice@h:5060");
        assert!(c.uri_params.is_empty());
        assert_eq!(c.expires, Some(60));
        assert_eq!(c.instance.as_deref(), Some("<urn:uuid:9>"));
        assert_eq!(
            c.header_params[..3],
            [
                p("expires", Some("60")),
                p("pn-provider", Some("fcm")),
                p("pn-prid", Some("TOKEN"))
            ]
        );
        let b = push_binding(&c).unwrap().unwrap();
        assert_eq!((b.provider.as_str(), b.prid.as_str()), ("fcm", "TOKEN"));
        // Without any parameter.
        let c = one("sips:bob@[2001:db8::1]:5061");
        assert_eq!(c.uri, "sips:bob@[2001:db8::1]:5061");
        assert!(c.uri_params.is_empty() && c.header_params.is_empty());
    }

    #[test]
    fn bare_uri_as_usrloc_stores_it() {
        let c = parse_contact_uri(
            "sip:alice@1.2.3.4:5060;transport=tcp;pn-provider=fcm;pn-prid=x123;expires=5",
        )
        .unwrap();
        assert_eq!(
            c.uri,
            "sip:alice@1.2.3.4:5060;transport=tcp;pn-provider=fcm;pn-prid=x123;expires=5"
        );
        assert_eq!(c.uri_params.len(), 4);
        assert!(c.header_params.is_empty());
        assert_eq!(c.expires, None);
        assert_eq!(push_binding(&c).unwrap().unwrap().prid, "x123");
        // A user part with ';' and URI headers after the parameters.
        let c = parse_contact_uri("sip:+123;npdi@h;user=phone?subject=x").unwrap();
        assert_eq!(c.uri_params, vec![p("user", Some("phone"))]);
        assert!(parse_contact_uri("<sip:a@h>").is_err());
        assert!(parse_contact_uri("sip:a@h;pn-prid=%G1").is_err());
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "<sip:a@h;expires=5",
            "\"Alice <sip:a@h>",
            "<sip:a@h>;+sip.instance=\"<urn:uuid:1>",
            "<sip:a@h>;x=\"a\\",
            "sip:a@h>",
            "<sip:a@h<x>>",
            "<>",
            "<sip:a@h> junk",
            "<sip:a@h>;x=a\"b",
            "<sip:a@h>;=x",
            "\"A\" junk <sip:a@h>",
            "Al;ice <sip:a@h>",
            "alice",
            "<sip:>",
            "<sip:a@>",
            "<sip:a b@h>",
            "<1sip:a@h>",
            "<sip:a@h;=x>",
            "\"Alice\" sip:a@h",
            "",
            "   ",
            ",",
        ] {
            match parse_contact_header(bad) {
                Err(ContactError::Malformed(_)) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn bad_percent_escapes() {
        for bad in [
            "<sip:a@h;pn-prid=ab%3>",
            "<sip:a@h;pn-prid=ab%zz>",
            "<sip:a@h;pn-prid=%>",
            "<sip:a@h;pn%2=x>",
            "<sip:a@h>;pn-prid=%g0",
            "sip:a@h;x=%é",
        ] {
            assert!(
                matches!(
                    parse_contact_header(bad),
                    Err(ContactError::BadEscape { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_contact_header("<sip:a@h;pn-prid=ab%zz>").unwrap_err(),
            ContactError::BadEscape {
                param: "pn-prid".into()
            }
        );
    }

    #[test]
    fn size_limits() {
        let max_token = "t".repeat(MAX_TOKEN_LEN);
        let b = binding(&format!("<sip:a@h;pn-provider=fcm;pn-prid={max_token}>"));
        assert_eq!(b.prid.len(), MAX_TOKEN_LEN);
        let long_token = "t".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            binding_err(&format!("<sip:a@h;pn-provider=fcm;pn-prid={long_token}>")),
            ContactError::TooLong {
                what: "pn-prid",
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            }
        );
        // Legacy token, and a limit on the decoded length.
        let encoded = "%41".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            binding_err(&format!("<sip:a@h;pn-type=google;pn-tok={encoded}>")),
            ContactError::TooLong { what: "pn-tok", .. }
        ));
        let long_param = "p".repeat(MAX_PARAM_LEN + 1);
        assert!(matches!(
            binding_err(&format!(
                "<sip:a@h;pn-provider=fcm;pn-prid=t;pn-param={long_param}>"
            )),
            ContactError::TooLong {
                what: "pn-param",
                ..
            }
        ));
        let long_provider = "x".repeat(MAX_PARAM_LEN + 1);
        assert!(matches!(
            binding_err(&format!("<sip:a@h;pn-provider={long_provider};pn-prid=t>")),
            ContactError::TooLong {
                what: "pn-provider",
                ..
            }
        ));

        // A whole header of exactly the limit passes, one byte more does not.
        let prefix = "<sip:a@h;x=";
        let fill = MAX_CONTACT_LEN - prefix.len() - 1;
        let exact = format!("{prefix}{}>", "y".repeat(fill));
        assert_eq!(exact.len(), MAX_CONTACT_LEN);
        assert!(parse_contact_header(&exact).is_ok());
        let over = format!("{prefix}{}>", "y".repeat(fill + 1));
        assert_eq!(
            parse_contact_header(&over).unwrap_err(),
            ContactError::TooLong {
                what: "Contact header",
                len: MAX_CONTACT_LEN + 1,
                max: MAX_CONTACT_LEN
            }
        );
        let uri = format!("sip:a@h;x={}", "y".repeat(MAX_CONTACT_LEN));
        assert!(matches!(
            parse_contact_uri(&uri),
            Err(ContactError::TooLong { .. })
        ));
    }

    #[test]
    fn unusable_push_parameters() {
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-prid=>"),
            ContactError::BadToken { .. }
        ));
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-prid=ab%20cd>"),
            ContactError::BadToken { .. }
        ));
        assert!(matches!(
            binding_err("<sip:a@h>;pn-provider=fcm;pn-prid=\"ab cd\""),
            ContactError::BadToken { .. }
        ));
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-prid=ab%00cd>"),
            ContactError::BadToken { .. }
        ));
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-prid=ab%0Acd>"),
            ContactError::BadToken { .. }
        ));
        assert_eq!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-param=proj>"),
            ContactError::MissingToken {
                provider: "fcm".into()
            }
        );
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=apns;pn-prid>"),
            ContactError::MissingToken { .. }
        ));
        assert_eq!(
            binding_err("<sip:a@h;pn-prid=TOKEN>"),
            ContactError::MissingProvider
        );
        assert_eq!(
            binding_err("<sip:a@h;pn-provider=;pn-prid=TOKEN>"),
            ContactError::MissingProvider
        );
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fc%2Fm;pn-prid=TOKEN>"),
            ContactError::BadProvider { .. }
        ));
        for bad in ["abc", "-1", "+5", "99999999999", "", "1.5"] {
            assert!(
                matches!(
                    binding_err(&format!(
                        "<sip:a@h;pn-provider=fcm;pn-prid=T;pn-timeout={bad}>"
                    )),
                    ContactError::BadTimeout { .. }
                ),
                "pn-timeout={bad}"
            );
        }
        assert!(matches!(
            binding_err("<sip:a@h;pn-provider=fcm;pn-prid=T;pn-timeout>"),
            ContactError::BadTimeout { .. }
        ));
        let b = binding("<sip:a@h;pn-provider=fcm;pn-prid=T;pn-timeout=30;pn-silent=0>");
        assert_eq!(b.timeout, Some(30));
        assert!(!b.silent);
        assert!(binding("<sip:a@h;pn-provider=fcm;pn-prid=T;pn-silent>").silent);
    }

    #[test]
    fn no_push_parameters() {
        for header in [
            "<sip:a@h;transport=tcp>;expires=60",
            "<sip:a@h;pn-param=TEAM.x.voip;app-id=com.x;pn-silent=1>",
            "sip:a@h",
        ] {
            assert_eq!(push_binding(&one(header)).unwrap(), None, "{header:?}");
        }
    }

    #[test]
    fn errors_never_print_a_full_token() {
        let token = "SECRETTOKEN0123456789abcdefSECRET";
        let headers = [
            format!("<sip:a@h;pn-prid={token}>"),
            format!("<sip:a@h;pn-provider=fcm;pn-prid={token}%20x>"),
            format!(
                "<sip:a@h;pn-provider=fcm;pn-prid={token}{}>",
                "z".repeat(MAX_TOKEN_LEN)
            ),
            format!("<sip:a@h;pn-provider=fcm;pn-prid={token};pn-timeout=x>"),
            format!("<sip:a@h;pn-provider=fcm;pn-prid={token}%zz>"),
            format!("<sip:a@h;pn-provider=fcm;pn-prid={token}%FF>"),
            format!("<sip:a@h;pn-provider=fcm>;pn-prid={token}\"x\""),
            format!("<sip:a@h;pn-provider=fcm;pn-prid={token}> junk"),
            format!("<sip:a@h;pn-provider=fcm;{token}%zz=1>"),
        ];
        let mut errors = 0;
        for header in &headers {
            let err = match parse_contact_header(header) {
                Err(e) => e,
                Ok(contacts) => match push_binding(&contacts[0]) {
                    Err(e) => e,
                    Ok(b) => panic!("{header:?} gave {b:?}"),
                },
            };
            errors += 1;
            let text = err.to_string();
            assert!(!text.contains(token), "{text}");
            assert!(!format!("{err:?}").contains(token), "{err:?}");
        }
        assert_eq!(errors, headers.len());
    }

    #[test]
    fn shorten_token_hides_tokens() {
        assert_eq!(shorten_token("0123456789abcdef"), "012345…cdef");
        assert_eq!(shorten_token("abcdefghijklm"), "abcdef…jklm");
        assert_eq!(shorten_token("abcdefghijkl"), "ab…");
        assert_eq!(shorten_token("abc"), "ab…");
        assert_eq!(shorten_token("ab"), "a…");
        assert_eq!(shorten_token("a"), "…");
        assert_eq!(shorten_token(""), "…");
        assert_eq!(shorten_token("éééééééééééééé"), "éééééé…éééé");
        assert_eq!(shorten_token(APNS_VOIP), "a7d0b1…d7e8");
        assert!(!shorten_token("abc\ndefghijklmnop\u{0}").contains('\n'));
    }

    proptest! {
        /// Any token (without the ellipsis itself) comes out shortened: never whole, at most 11
        /// characters, fewer of its own characters than it has, no control character.
        #[test]
        fn shorten_token_never_shows_a_whole_token(token in "[^…]{1,80}") {
            let short = shorten_token(&token);
            let len = token.chars().count();
            prop_assert!(!short.contains(&token), "{:?} -> {:?}", token, short);
            prop_assert!(short.chars().count() <= 11, "{:?}", short);
            prop_assert!(short.chars().filter(|&c| c != '…').count() < len);
            prop_assert!(!short.chars().any(char::is_control), "{:?}", short);
        }
    }

    #[test]
    fn same_registration_semantics() {
        let a = PushBinding {
            provider: "apns".into(),
            prid: "TOKEN".into(),
            param: Some("TEAM.com.x.voip".into()),
            silent: false,
            timeout: None,
        };
        let mut b = a.clone();
        b.silent = true;
        b.timeout = Some(30);
        assert!(a.same_registration(&b));
        assert!(b.same_registration(&a));
        let mut c = a.clone();
        c.prid = "OTHER".into();
        assert!(!a.same_registration(&c));
        let mut d = a.clone();
        d.param = None;
        assert!(!a.same_registration(&d));
        let mut e = a.clone();
        e.param = Some("TEAM.com.y.voip".into());
        assert!(!a.same_registration(&e));
        let mut f = a.clone();
        f.provider = "apns.dev".into();
        assert!(!a.same_registration(&f));
        assert!(f.sandbox());
        assert!(!a.sandbox());
        // Two parses of the same contact register the same device.
        let x = binding("<sip:a@10.0.0.1;pn-provider=fcm;pn-prid=T;pn-param=proj>;expires=60");
        let y =
            binding("<sip:a@10.0.0.2:5061;pn-param=proj;pn-prid=T;pn-provider=FCM;pn-silent=1>");
        assert!(x.same_registration(&y));
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<String> = [
            "é",
            ";",
            "=",
            "<>",
            "\"",
            "<",
            ">",
            ",",
            ",,,",
            "*",
            "**",
            "\\",
            "%",
            "%%",
            "%é",
            "é%",
            ";;;",
            "=;=",
            "<;>",
            "<\"",
            "\"<",
            "<sip:é@é;é=é%C3%A9>",
            "sip:%",
            "sip:@",
            "sip:a@h;%E9",
            "sip:a@h;é",
            "<sip:a@h>;é=é",
            "<sip:a@h>;\"",
            "<sip:a@h>;x=\"é\\é\"",
            "\"\\é\" <sip:a@h>",
            "\u{0}",
            "\u{7f}<sip:\u{0}>",
            "sip:a@h;pn-prid=é;pn-provider=é",
            "<sip:a@h;pn-provider=apns;pn-prid=é:voip&é>",
            "<sip:a@h;pn-provider=apns;pn-prid=&&&>",
            "<sip:a@h;pn-provider=apns;pn-prid=:>",
            "<sip:a@h;pn-timeout=é;pn-provider=a;pn-prid=b>",
            "😀<sip:😀@😀>;😀=\"😀\"",
            "<sip:a@h>,",
            ",<sip:a@h>",
            "<sip:a@h> ,, <sip:b@h>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push("a".repeat(100_000));
        inputs.push("<".repeat(10_000));
        inputs.push("\"".repeat(10_001));
        inputs.push("é".repeat(3_000));
        inputs.push(format!(
            "<sip:a@h;pn-provider=apns;pn-prid={}>",
            "é".repeat(1_500)
        ));
        inputs.push(format!("<sip:a@h;x={}", "%".repeat(4_000)));
        inputs.push(";".repeat(4_096));
        inputs.push(",".repeat(4_096));

        let parsed: usize = inputs.iter().map(|input| exercise(input)).sum();
        // Some of these do form contacts: the parser is exercised past its checks.
        assert!(parsed > 0);
    }

    /// Runs a string through both parsers, the push parameters of what parses and shorten_token:
    /// nothing may panic, a stored token stays within [`MAX_TOKEN_LEN`] and every error prints.
    /// Returns how many of the two parses gave a contact.
    fn exercise(input: &str) -> usize {
        crate::fuzzing::exercise_contact(input, &[])
    }

    /// Pieces a Contact is made of, and the characters that break naive parsers.
    const TROUBLEMAKERS: &[&str] = &[
        "<",
        ">",
        "\"",
        "\\",
        ";",
        "=",
        ",",
        "%",
        "%3A",
        "%2",
        ":",
        "@",
        "&",
        "?",
        " ",
        "\t",
        "é",
        "😀",
        "\u{0}",
        "sip:",
        "a",
        "1",
        "*",
        "pn-provider",
        "pn-prid",
        "pn-type",
        "pn-tok",
        "apns",
        "fcm",
        ":voip",
        ":remote",
        "expires",
        "reg-id",
        "+sip.instance",
        "pn-timeout",
        "pn-param",
        "app-id",
    ];

    /// Up to 23 troublemakers in a row.
    fn troublemakers() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TROUBLEMAKERS), 0..24)
            .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        // A quick check on every test run; the long search for bad input is the libFuzzer
        // target fuzz/fuzz_targets/contact.rs (scripts/fuzz.sh), which replaced the 20,000 cases
        // that ran here.
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Strings made of troublemakers never panic either parser.
        #[test]
        fn troublemaker_strings_never_panic(input in troublemakers()) {
            exercise(&input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Nor does any string of printable characters.
        #[test]
        fn any_string_never_panics(input in any::<String>()) {
            exercise(&input);
        }

        /// A well-formed push Contact, with troublemakers after it as header parameters, parses
        /// to its push binding, the token as given.
        #[test]
        fn well_formed_push_contacts_parse(
            user in "[a-z0-9]{1,16}",
            host in "[a-z0-9.]{1,32}",
            provider in prop::sample::select(&["apns", "apns.dev", "fcm", "webpush"][..]),
            token in "[A-Za-z0-9_-]{1,200}",
            trailer in troublemakers(),
        ) {
            let uri = format!("sip:{user}@{host};pn-provider={provider};pn-prid={token}");
            let contact = parse_contact_uri(&uri).unwrap();
            let b = push_binding(&contact).unwrap().expect("push parameters present");
            prop_assert_eq!(&b.provider, provider);
            prop_assert_eq!(&b.prid, &token);
            // The same URI in a Contact header, whatever follows it, never panics; when the
            // header parses, its first contact is that URI.
            let header = format!("<{uri}>;{trailer}");
            exercise(&header);
            if let Ok(contacts) = parse_contact_header(&header) {
                prop_assert_eq!(&contacts[0].uri, &uri);
            }
        }
    }
}
