//! A REGISTER's Contact header value (and a bare Contact URI) through both parsers, the push
//! parameters of whatever parses (standard names, and through a User-Agent profile), the AOR
//! normaliser and shorten_token: nothing may panic, a stored token stays within MAX_TOKEN_LEN,
//! and every error prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_core::devices::contact::{
    parse_contact_header, parse_contact_uri, push_binding, shorten_token, MAX_TOKEN_LEN,
};
use push_core::devices::normalize_aor;
use push_core::devices::profile::{binding_for, UaProfile};
use std::sync::OnceLock;

fn profiles() -> &'static [UaProfile] {
    static PROFILES: OnceLock<Vec<UaProfile>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        vec![UaProfile::parse("name=kazoo;regex=^Kazoo;app=x-app;type=x-type;token=x-tok").unwrap()]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for result in [
        parse_contact_header(input).map(|v| v.into_iter().next()),
        parse_contact_uri(input).map(Some),
    ] {
        match result {
            Ok(Some(contact)) => {
                for binding in [
                    push_binding(&contact),
                    binding_for(&contact, Some("Kazoo/4.3"), profiles()),
                ] {
                    match binding {
                        Ok(Some(b)) => {
                            assert!(b.prid.len() <= MAX_TOKEN_LEN, "token of {}", b.prid.len());
                            let _ = shorten_token(&b.prid);
                            let _ = b.sandbox();
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = e.to_string();
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let _ = shorten_token(input);
    let _ = normalize_aor(input, false);
    let _ = normalize_aor(input, true);
});
