//! A REGISTER's Contact header value (and a bare Contact URI) through both parsers, the push
//! parameters of whatever parses (standard names, and through a User-Agent profile), the AOR
//! normaliser and shorten_token: nothing may panic, a stored token stays within MAX_TOKEN_LEN,
//! and every error prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_core::devices::normalize_aor;
use push_core::devices::profile::UaProfile;
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
    push_core::fuzzing::exercise_contact(input, profiles());
    let _ = normalize_aor(input, false);
    let _ = normalize_aor(input, true);
});
