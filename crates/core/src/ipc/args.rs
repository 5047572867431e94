//! The push.* RPC commands' arguments, checked in plain Rust before anything reaches the
//! dispatcher: the boundary (src/rpc.rs) reads each argument Kamailio's RPC layer gives it as text
//! (whole numbers arrive converted) or notes that it could not be read as text (kamcmd sends
//! `1.5` as a float, which Kamailio cannot convert), and [`parse`] turns the list into a
//! [`Command`] or a 400 text naming the problem. Every text it returns is bounded, and so is every
//! argument it accepts (an AOR to [`MAX_AOR`], a device to [`MAX_DEVICE_ARG`]), so a question
//! always fits the queue's frame.

use super::limits::{bounded_text, MAX_AOR};

/// Longest device argument of push.remove (a device id, a token or a shortened id).
pub const MAX_DEVICE_ARG: usize = 1024;
/// Held calls push.pending lists when no `limit=` is given.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest `limit=` push.pending accepts (an answer is also cut to what fits, see
/// `calls::PAGE_BYTES`).
pub const MAX_PAGE: u32 = 1000;
/// More arguments than any command takes are refused; the boundary reads no further.
pub const MAX_ARGS: usize = 3;

/// One argument as Kamailio's RPC layer gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Text, or a whole number converted to text.
    Text(String),
    /// A value Kamailio could not give as text (a float, a structure).
    NotText,
}

/// A push.* command with its arguments checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Stats,
    Apps,
    Reload,
    /// Held calls (of one AOR or all), `limit` of them from the `offset`-th on (oldest first).
    Pending {
        aor: Option<String>,
        offset: u32,
        limit: u32,
    },
    Devices {
        aor: String,
    },
    Remove {
        aor: String,
        device: Option<String>,
    },
    Send {
        aor: String,
    },
}

/// How each command is called, for the 400 texts.
fn usage(method: &str) -> &'static str {
    match method {
        "push.pending" => "push.pending [aor] [offset=<n>] [limit=<n>]",
        "push.devices" => "push.devices <aor>",
        "push.remove" => "push.remove <aor> [device]",
        "push.send" => "push.send <aor>",
        "push.stats" => "push.stats",
        "push.apps" => "push.apps",
        "push.reload" => "push.reload",
        _ => "",
    }
}

/// The text of argument `n` (1-based), quoted and bounded for a fault text.
fn shown(text: &str) -> String {
    bounded_text(text, 40)
}

/// Checks the arguments of `method` (`push.pending`, ...). The error is the 400 fault's text,
/// at most about 190 bytes.
pub fn parse(method: &str, args: &[Arg]) -> Result<Command, String> {
    let usage = usage(method);
    if usage.is_empty() {
        return Err(format!("unknown command {}", shown(method)));
    }
    let bad = |why: String| Err(format!("{method}: {why}; usage: {usage}"));
    let mut texts = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Arg::Text(t) => texts.push(t.as_str()),
            Arg::NotText => {
                return bad(format!(
                    "argument {} is not text or a whole number (a number with a fraction?)",
                    i + 1
                ))
            }
        }
    }
    let most = match method {
        "push.pending" => 3,
        "push.remove" => 2,
        "push.devices" | "push.send" => 1,
        _ => 0,
    };
    if texts.len() > most {
        return bad(match most {
            0 => "takes no argument".to_string(),
            n => format!("takes at most {n} argument(s), got {}", texts.len()),
        });
    }
    let aor = |i: usize| -> Result<String, String> {
        let text = texts.get(i).copied().unwrap_or_default();
        if text.trim().is_empty() {
            return Err(format!("{method}: needs an AOR; usage: {usage}"));
        }
        if text.len() > MAX_AOR {
            return Err(format!(
                "{method}: the AOR is {} bytes long; AORs are at most {MAX_AOR} bytes",
                text.len()
            ));
        }
        Ok(text.to_string())
    };
    match method {
        "push.stats" => Ok(Command::Stats),
        "push.apps" => Ok(Command::Apps),
        "push.reload" => Ok(Command::Reload),
        "push.devices" => Ok(Command::Devices { aor: aor(0)? }),
        "push.send" => Ok(Command::Send { aor: aor(0)? }),
        "push.remove" => {
            let aor = aor(0)?;
            let device = match texts.get(1) {
                None => None,
                Some(d) if d.trim().is_empty() => return bad("the device is empty".into()),
                Some(d) if d.len() > MAX_DEVICE_ARG => {
                    return bad(format!(
                        "the device is {} bytes long; at most {MAX_DEVICE_ARG}",
                        d.len()
                    ))
                }
                Some(d) => Some(d.to_string()),
            };
            Ok(Command::Remove { aor, device })
        }
        _ => {
            // push.pending: an AOR and offset=/limit= in any order, each at most once.
            let (mut aor_arg, mut offset, mut limit) = (None, None, None);
            for (i, text) in texts.iter().enumerate() {
                let number = |value: &str, name: &str, range: (u32, u32)| {
                    value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (range.0..=range.1).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "{method}: {name} must be a whole number from {} to {}, not {}; usage: {usage}",
                                range.0,
                                range.1,
                                shown(value)
                            )
                        })
                };
                let slot = if let Some(v) = text.strip_prefix("offset=") {
                    (&mut offset, number(v, "offset", (0, u32::MAX))?, "offset")
                } else if let Some(v) = text.strip_prefix("limit=") {
                    (&mut limit, number(v, "limit", (1, MAX_PAGE))?, "limit")
                } else {
                    if aor_arg.is_some() {
                        return bad(format!(
                            "argument {} ({}) is a second AOR (offset=<n>, limit=<n>?)",
                            i + 1,
                            shown(text)
                        ));
                    }
                    aor_arg = Some(aor(i)?);
                    continue;
                };
                let (place, value, name) = slot;
                if place.replace(value).is_some() {
                    return bad(format!("{name} is given twice"));
                }
            }
            Ok(Command::Pending {
                aor: aor_arg,
                offset: offset.unwrap_or(0),
                limit: limit.unwrap_or(DEFAULT_PAGE),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(args: &[&str]) -> Vec<Arg> {
        args.iter().map(|a| Arg::Text(a.to_string())).collect()
    }

    #[test]
    fn pending_takes_an_aor_and_paging_in_any_order() {
        assert_eq!(
            parse("push.pending", &[]),
            Ok(Command::Pending {
                aor: None,
                offset: 0,
                limit: DEFAULT_PAGE
            })
        );
        assert_eq!(
            parse(
                "push.pending",
                &text(&["limit=500", "alice", "offset=1000"])
            ),
            Ok(Command::Pending {
                aor: Some("alice".into()),
                offset: 1000,
                limit: 500
            })
        );
        // A number alone is an AOR (a phone number), as kamcmd sends it.
        assert_eq!(
            parse("push.pending", &text(&["4930123"])),
            Ok(Command::Pending {
                aor: Some("4930123".into()),
                offset: 0,
                limit: DEFAULT_PAGE
            })
        );
    }

    #[test]
    fn bad_arguments_get_a_text_naming_the_problem() {
        let e = parse("push.pending", &[Arg::NotText]).unwrap_err();
        assert!(e.contains("argument 1 is not text"), "{e}");
        let e = parse("push.pending", &text(&["limit=0"])).unwrap_err();
        assert!(
            e.contains("limit must be a whole number from 1 to 1000"),
            "{e}"
        );
        let e = parse("push.pending", &text(&["limit=5", "limit=6"])).unwrap_err();
        assert!(e.contains("limit is given twice"), "{e}");
        let e = parse("push.pending", &text(&["alice", "bob"])).unwrap_err();
        assert!(e.contains("second AOR"), "{e}");
        let e = parse("push.pending", &text(&["a", "b", "c", "d"])).unwrap_err();
        assert!(e.contains("at most 3"), "{e}");
        let e = parse("push.devices", &[]).unwrap_err();
        assert!(e.contains("needs an AOR"), "{e}");
        let e = parse("push.apps", &text(&["x"])).unwrap_err();
        assert!(e.contains("takes no argument"), "{e}");
        let big = "x".repeat(5000);
        let e = parse("push.devices", &text(&[&big])).unwrap_err();
        assert!(e.contains("5000 bytes long"), "{e}");
        let e = parse("push.remove", &text(&["alice", &big])).unwrap_err();
        assert!(e.contains("5000 bytes long"), "{e}");
        let e = parse("push.pending", &text(&[&format!("limit={big}")])).unwrap_err();
        assert!(e.len() <= 200, "{}", e.len());
    }

    #[test]
    fn every_fault_text_fits_ctl() {
        for &method in crate::fuzzing::RPC_METHODS {
            for args in [
                vec![Arg::NotText],
                text(&[
                    "\u{1b}[31m".repeat(100).as_str(),
                    "offset=\n".repeat(90).as_str(),
                ]),
                text(&["a", "b", "c", "d"]),
            ] {
                if let Err(e) = parse(method, &args) {
                    crate::fuzzing::check_rpc_fault(method, &e);
                }
            }
        }
    }
}
