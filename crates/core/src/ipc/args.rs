//! The push.* RPC commands' arguments, checked in plain Rust before anything reaches the
//! dispatcher: the boundary (src/rpc.rs) reads each argument Kamailio's RPC layer gives it as text
//! (whole numbers arrive converted) or notes that it could not be read as text (kamcmd sends
//! `1.5` as a float, which Kamailio cannot convert), and [`parse`] turns the list into a
//! [`Command`] or a 400 text naming the problem. Every text it returns is bounded, and so is every
//! argument it accepts (an AOR to [`MAX_AOR`], a device to [`MAX_DEVICE_ARG`]), so a question
//! always fits the queue's frame.

use super::limits::{bounded_text, MAX_AOR, MAX_INSTANCE, MAX_NAME, MAX_USER_AGENT};

/// Longest device argument of push.remove (a device id, a token or a shortened id), and longest
/// token push.device_add takes (as a Contact's `pn-prid`, the APNs dual form included).
pub const MAX_DEVICE_ARG: usize = 1024;
/// Longest `param=` (a Contact's `pn-param`) push.device_add takes.
pub const MAX_PARAM_ARG: usize = 256;
/// Held calls push.pending (devices push.devices) lists when no `limit=` is given.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest `limit=` push.pending and push.devices accept (an answer is also cut to what fits,
/// see `calls::PAGE_BYTES`).
pub const MAX_PAGE: u32 = 1000;
/// More arguments than any command takes are refused; the boundary reads no further.
pub const MAX_ARGS: usize = 7;

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
    /// The devices of one AOR (all of them), or a page of every stored device: `limit` of them
    /// from the `offset`-th on (by AOR, then device).
    Devices {
        aor: Option<String>,
        offset: u32,
        limit: u32,
    },
    /// Add (or replace) a device of an AOR as a REGISTER's Contact would: pushed through `app`,
    /// with the Contact's `pn-provider`, `pn-prid` (`token`), `pn-param` and `+sip.instance`.
    DeviceAdd(DeviceAdd),
    Remove {
        aor: String,
        device: Option<String>,
    },
    Send {
        aor: String,
    },
}

/// push.device_add's arguments, each bounded; what they mean is checked by the dispatcher (the
/// checks a REGISTER's Contact gets).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceAdd {
    pub aor: String,
    pub app: String,
    pub provider: String,
    pub token: String,
    pub instance: Option<String>,
    pub param: Option<String>,
    pub user_agent: Option<String>,
}

/// How each command is called, for the 400 texts.
fn usage(method: &str) -> &'static str {
    match method {
        "push.pending" => "push.pending [aor] [offset=<n>] [limit=<n>]",
        "push.devices" => "push.devices [aor] [offset=<n>] [limit=<n>]",
        "push.device_add" => {
            "push.device_add <aor> <app> <provider> <token> [instance=] [param=] [user_agent=]"
        }
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
        "push.device_add" => 7,
        "push.pending" | "push.devices" => 3,
        "push.remove" => 2,
        "push.send" => 1,
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
        "push.devices" => {
            let (aor, offset, limit) = paged(method, usage, &texts, &aor)?;
            Ok(Command::Devices { aor, offset, limit })
        }
        "push.device_add" => device_add(method, usage, &texts, &aor),
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
            let (aor, offset, limit) = paged(method, usage, &texts, &aor)?;
            Ok(Command::Pending { aor, offset, limit })
        }
    }
}

/// An optional AOR and `offset=`/`limit=` in any order, each at most once (push.pending,
/// push.devices): the AOR, the offset (default 0) and the limit (default [`DEFAULT_PAGE`]).
fn paged(
    method: &str,
    usage: &str,
    texts: &[&str],
    aor: &dyn Fn(usize) -> Result<String, String>,
) -> Result<(Option<String>, u32, u32), String> {
    let bad = |why: String| Err(format!("{method}: {why}; usage: {usage}"));
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
    Ok((aor_arg, offset.unwrap_or(0), limit.unwrap_or(DEFAULT_PAGE)))
}

/// push.device_add: four values in order (AOR, app, provider, token), then `instance=`,
/// `param=` and `user_agent=` in any order, each at most once; every one bounded and free of
/// control characters (what they mean is the dispatcher's to check).
fn device_add(
    method: &str,
    usage: &str,
    texts: &[&str],
    aor: &dyn Fn(usize) -> Result<String, String>,
) -> Result<Command, String> {
    // The usage is long: a text that would not fit ctl's fault buffer goes without it.
    let bad = |why: String| {
        let full = format!("{method}: {why}; usage: {usage}");
        Err(if full.len() <= 200 {
            full
        } else {
            format!("{method}: {why}")
        })
    };
    const NAMES: [&str; 4] = ["AOR", "app", "provider", "token"];
    if texts.len() < NAMES.len() {
        return bad(format!(
            "needs {} arguments, got {}",
            NAMES.len(),
            texts.len()
        ));
    }
    let value = |i: usize, name: &str, max: usize| -> Result<String, String> {
        let text = texts[i];
        if text.trim().is_empty() {
            return Err(format!("{method}: the {name} is empty"));
        }
        if text.len() > max {
            return Err(format!(
                "{method}: the {name} is {} bytes long; at most {max}",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("{method}: the {name} holds control characters"));
        }
        Ok(text.trim().to_string())
    };
    let aor = aor(0)?;
    let app = value(1, "app", MAX_NAME)?;
    let provider = value(2, "provider", MAX_NAME)?;
    let token = value(3, "token", MAX_DEVICE_ARG)?;
    let (mut instance, mut param, mut user_agent) = (None, None, None);
    for (i, text) in texts.iter().enumerate().skip(NAMES.len()) {
        let (slot, name, max) = if text.starts_with("instance=") {
            (&mut instance, "instance", MAX_INSTANCE)
        } else if text.starts_with("param=") {
            (&mut param, "param", MAX_PARAM_ARG)
        } else if text.starts_with("user_agent=") {
            (&mut user_agent, "user_agent", MAX_USER_AGENT)
        } else {
            return bad(format!(
                "argument {} ({}) is none of instance=, param=, user_agent=",
                i + 1,
                shown(text)
            ));
        };
        let given = &text[name.len() + 1..];
        if given.trim().is_empty() {
            return bad(format!("{name}= is empty"));
        }
        if given.len() > max {
            return bad(format!(
                "{name} is {} bytes long; at most {max}",
                given.len()
            ));
        }
        if given.chars().any(char::is_control) {
            return bad(format!("{name} holds control characters"));
        }
        if slot.replace(given.trim().to_string()).is_some() {
            return bad(format!("{name} is given twice"));
        }
    }
    Ok(Command::DeviceAdd(DeviceAdd {
        aor,
        app,
        provider,
        token,
        instance,
        param,
        user_agent,
    }))
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
        let e = parse("push.send", &[]).unwrap_err();
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
    fn devices_without_an_aor_is_a_page_of_every_device() {
        assert_eq!(
            parse("push.devices", &[]),
            Ok(Command::Devices {
                aor: None,
                offset: 0,
                limit: DEFAULT_PAGE
            })
        );
        assert_eq!(
            parse("push.devices", &text(&["offset=200", "limit=1000"])),
            Ok(Command::Devices {
                aor: None,
                offset: 200,
                limit: 1000
            })
        );
        assert_eq!(
            parse("push.devices", &text(&["alice"])),
            Ok(Command::Devices {
                aor: Some("alice".into()),
                offset: 0,
                limit: DEFAULT_PAGE
            })
        );
        let e = parse("push.devices", &text(&["limit=1001"])).unwrap_err();
        assert!(
            e.contains("limit must be a whole number from 1 to 1000"),
            "{e}"
        );
        let e = parse("push.devices", &text(&["offset=-1"])).unwrap_err();
        assert!(e.contains("offset must be a whole number"), "{e}");
    }

    #[test]
    fn device_add_takes_four_values_then_named_ones() {
        let want = |instance: Option<&str>, param: Option<&str>, ua: Option<&str>| {
            Ok(Command::DeviceAdd(DeviceAdd {
                aor: "alice".into(),
                app: "org.example.phone".into(),
                provider: "apns".into(),
                token: "0123456789abcdef".into(),
                instance: instance.map(Into::into),
                param: param.map(Into::into),
                user_agent: ua.map(Into::into),
            }))
        };
        let base = ["alice", "org.example.phone", "apns", "0123456789abcdef"];
        assert_eq!(
            parse("push.device_add", &text(&base)),
            want(None, None, None)
        );
        let mut all = base.to_vec();
        all.extend([
            "user_agent=Backend/1.0 (iOS)",
            "instance=<urn:uuid:1>",
            "param=TEAM123456.org.example.phone.voip",
        ]);
        assert_eq!(
            parse("push.device_add", &text(&all)),
            want(
                Some("<urn:uuid:1>"),
                Some("TEAM123456.org.example.phone.voip"),
                Some("Backend/1.0 (iOS)")
            )
        );
        let e = parse("push.device_add", &text(&base[..3])).unwrap_err();
        assert!(e.contains("needs 4 arguments, got 3"), "{e}");
        let e = parse("push.device_add", &text(&["alice", "", "apns", "t"])).unwrap_err();
        assert!(e.contains("the app is empty"), "{e}");
        let e = parse("push.device_add", &text(&["alice", "a", "apns", "t\nx"])).unwrap_err();
        assert!(e.contains("control characters"), "{e}");
        let big = "x".repeat(MAX_DEVICE_ARG + 1);
        let e = parse("push.device_add", &text(&["alice", "a", "apns", &big])).unwrap_err();
        assert!(e.contains("the token is 1025 bytes long"), "{e}");
        let mut twice = base.to_vec();
        twice.extend(["param=a", "param=b"]);
        let e = parse("push.device_add", &text(&twice)).unwrap_err();
        assert!(e.contains("param is given twice"), "{e}");
        let mut odd = base.to_vec();
        odd.push("colour=red");
        let e = parse("push.device_add", &text(&odd)).unwrap_err();
        assert!(e.contains("argument 5 (colour=red) is none of"), "{e}");
        let mut empty = base.to_vec();
        empty.push("instance=");
        let e = parse("push.device_add", &text(&empty)).unwrap_err();
        assert!(e.contains("instance= is empty"), "{e}");
        let e = parse("push.device_add", &[Arg::Text("a".into()), Arg::NotText]).unwrap_err();
        assert!(e.contains("argument 2 is not text"), "{e}");
    }

    /// Every argument push.device_add accepts fits, with the question, in one queue frame.
    #[test]
    fn the_largest_device_add_fits_a_queue_frame() {
        let args = [
            "a".repeat(MAX_AOR),
            "b".repeat(MAX_NAME),
            "c".repeat(MAX_NAME),
            "d".repeat(MAX_DEVICE_ARG),
            format!("instance={}", "e".repeat(MAX_INSTANCE)),
            format!("param={}", "f".repeat(MAX_PARAM_ARG)),
            format!("user_agent={}", "g".repeat(MAX_USER_AGENT)),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let Ok(Command::DeviceAdd(add)) = parse("push.device_add", &text(&refs)) else {
            panic!("refused");
        };
        let question = crate::ipc::message::ToDispatcher::Ask {
            reply_to: "kamailio-push/4294967295/18446744073709551615/340282366920938463463374607431768211455".into(),
            question: crate::ipc::message::Question::DeviceAdd(add),
        };
        assert!(crate::ipc::queue::encode(&question).is_ok());
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
