//! Push-capable devices: what REGISTER Contacts say about them ([`contact`]) and the persistent
//! store that remembers them after their bindings expire ([`store`]).

pub mod contact;
pub mod index;
pub mod postgres;
pub mod profile;
pub mod store;

/// The key under which an AOR's devices and calls are kept: `user` or, with use_domain, `user@host`
/// (what usrloc uses as its AOR with the same setting). Accepts `sip:user@host;params`, `user@host`
/// or `user`; None for text with no user part. The user part is percent-decoded, as registrar
/// does before it stores a binding (`sip:%2B4930123@h` and `sip:+4930123@h` are one AOR); an
/// invalid escape is kept as it is. usrloc's own AORs (the callbacks') are keys already and are
/// not passed through here again.
pub fn normalize_aor(text: &str, use_domain: bool) -> Option<String> {
    let text = text.trim().trim_start_matches('<').trim_end_matches('>');
    let text = text
        .strip_prefix("sip:")
        .or_else(|| text.strip_prefix("sips:"))
        .unwrap_or(text);
    let text = text.split([';', '?', '>']).next().unwrap_or("");
    let (user, host) = match text.split_once('@') {
        Some((u, h)) => (u, Some(h.split(':').next().unwrap_or(h))),
        None => (text, None),
    };
    if user.is_empty() {
        return None;
    }
    let user = unescape_user(user);
    let user = user.as_str();
    Some(match (use_domain, host) {
        (true, Some(host)) if !host.is_empty() => format!("{user}@{}", host.to_ascii_lowercase()),
        _ => user.to_string(),
    })
}

/// A URI's user part with its `%XX` escapes undone (registrar's un_escape); the text unchanged
/// if an escape is invalid. Bytes that are not UTF-8 are replaced, as everywhere Kamailio text
/// enters the module.
fn unescape_user(user: &str) -> String {
    if !user.contains('%') {
        return user.to_string();
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = user.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => return user.to_string(),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device's identity within its AOR: its +sip.instance, else its token.
pub fn device_id(instance: Option<&str>, prid: &str) -> String {
    match instance {
        Some(i) if !i.is_empty() => i.to_string(),
        _ => format!("token:{prid}"),
    }
}

/// The RFC 8599 `Feature-Caps` header (with its CRLF) a registrar adds to the 2xx of a push
/// REGISTER: `+sip.pns` names the provider; with binding-refresh pushes on, `+sip.pnsreg` says how
/// many seconds before the binding expires the refresh push goes out.
pub fn feature_caps(provider: &str, refresh_window: u32) -> String {
    if refresh_window > 0 {
        format!("Feature-Caps: +sip.pns=\"{provider}\";+sip.pnsreg=\"{refresh_window}\"\r\n")
    } else {
        format!("Feature-Caps: +sip.pns=\"{provider}\"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_keys_follow_use_domain() {
        assert_eq!(
            normalize_aor("sip:alice@Example.com:5060;transport=tcp", false).as_deref(),
            Some("alice")
        );
        assert_eq!(
            normalize_aor("sip:alice@Example.com:5060;transport=tcp", true).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            normalize_aor("<sips:bob@host>", true).as_deref(),
            Some("bob@host")
        );
        assert_eq!(normalize_aor("carol", true).as_deref(), Some("carol"));
        assert_eq!(normalize_aor("sip:@host", false), None);
        assert_eq!(normalize_aor("", false), None);
    }

    /// Issue 12: registrar stores `sip:%2B4930123@h` as `+4930123`; every path must use that key.
    #[test]
    fn aor_user_is_percent_decoded_like_registrar() {
        assert_eq!(
            normalize_aor("sip:%2B4930123@example.com", false).as_deref(),
            Some("+4930123")
        );
        assert_eq!(
            normalize_aor("sip:%2b4930123@Example.com;user=phone", true).as_deref(),
            Some("+4930123@example.com")
        );
        assert_eq!(normalize_aor("%61lice", false).as_deref(), Some("alice"));
        // An invalid escape is kept as it is.
        assert_eq!(normalize_aor("sip:50%@h", false).as_deref(), Some("50%"));
        assert_eq!(normalize_aor("sip:%zz@h", false).as_deref(), Some("%zz"));
    }

    #[test]
    fn device_identity_prefers_instance() {
        assert_eq!(device_id(Some("<urn:uuid:1>"), "tok"), "<urn:uuid:1>");
        assert_eq!(device_id(None, "tok"), "token:tok");
        assert_eq!(device_id(Some(""), "tok"), "token:tok");
    }

    #[test]
    fn feature_caps_names_provider_and_refresh_window() {
        assert_eq!(
            super::feature_caps("apns", 0),
            "Feature-Caps: +sip.pns=\"apns\"\r\n"
        );
        assert_eq!(
            super::feature_caps("fcm", 300),
            "Feature-Caps: +sip.pns=\"fcm\";+sip.pnsreg=\"300\"\r\n"
        );
    }
}
