//! Checks the fuzz targets (`fuzz/fuzz_targets/`) and this crate's unit tests both run, so the
//! property a fuzzer hunts for and the one `cargo test` checks on hand-picked inputs are the same
//! code. Each check panics when the property does not hold; none is used by the module itself.

use crate::devices::contact::{
    parse_contact_header, parse_contact_uri, push_binding, shorten_token, MAX_TOKEN_LEN,
};
use crate::devices::profile::{binding_for, UaProfile};

/// The push.* RPC methods, and one the module does not have.
pub const RPC_METHODS: &[&str] = &[
    "push.pending",
    "push.devices",
    "push.device_add",
    "push.remove",
    "push.send",
    "push.stats",
    "push.apps",
    "push.reload",
    "push.unknown",
];

/// A fault text of the RPC argument checker (`ipc::args::parse`) must fit ctl's buffer
/// (200 bytes) and hold no control character.
pub fn check_rpc_fault(method: &str, text: &str) {
    assert!(text.len() <= 200, "{method}: {} bytes: {text}", text.len());
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
}

/// Runs a string through both Contact parsers and the push parameters of what parses (the
/// standard names, and when `profiles` is not empty through them too, as from a `Kazoo/4.3`
/// User-Agent) and `shorten_token`: nothing may panic, a stored token stays within
/// [`MAX_TOKEN_LEN`] and every error prints. Returns how many of the two parses gave a contact.
pub fn exercise_contact(input: &str, profiles: &[UaProfile]) -> usize {
    let mut parsed = 0;
    for result in [
        parse_contact_header(input).map(|v| v.into_iter().next()),
        parse_contact_uri(input).map(Some),
    ] {
        match result {
            Ok(Some(contact)) => {
                parsed += 1;
                let mut bindings = vec![push_binding(&contact)];
                if !profiles.is_empty() {
                    bindings.push(binding_for(&contact, Some("Kazoo/4.3"), profiles));
                }
                for binding in bindings {
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
    parsed
}
