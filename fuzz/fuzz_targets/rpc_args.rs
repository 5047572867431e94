//! push.* RPC arguments as an operator (or anything that reaches ctl/jsonrpcs) can send them:
//! the first byte picks the command, the rest is split on NUL into arguments (a lone 0xff byte
//! stands for an argument that is not text, such as a float). The checker never panics, every
//! fault text fits ctl's buffer without a control character, and what it accepts is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_core::fuzzing::{check_rpc_fault, RPC_METHODS};
use push_core::ipc::args::{parse, Arg, Command, MAX_DEVICE_ARG, MAX_PAGE};
use push_core::ipc::limits::MAX_AOR;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let method = RPC_METHODS[pick as usize % RPC_METHODS.len()];
    let args: Vec<Arg> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == 0)
            .map(|a| match a {
                [0xff] => Arg::NotText,
                a => Arg::Text(String::from_utf8_lossy(a).into_owned()),
            })
            .collect()
    };
    match parse(method, &args) {
        Ok(command) => match command {
            Command::Pending { aor, limit, .. } => {
                assert!((1..=MAX_PAGE).contains(&limit));
                assert!(aor.is_none_or(|a| a.len() <= MAX_AOR));
            }
            Command::Devices { aor, limit, .. } => {
                assert!((1..=MAX_PAGE).contains(&limit));
                assert!(aor.is_none_or(|a| a.len() <= MAX_AOR));
            }
            Command::DeviceAdd(add) => {
                assert!(add.aor.len() <= MAX_AOR && add.token.len() <= MAX_DEVICE_ARG);
                // Whatever it accepts fits one queue frame.
                let question = push_core::ipc::message::ToDispatcher::Ask {
                    reply_to: "kamailio-push/4294967295/18446744073709551615/0".into(),
                    question: push_core::ipc::message::Question::DeviceAdd(add),
                };
                assert!(push_core::ipc::queue::encode(&question).is_ok());
            }
            Command::Send { aor } => assert!(aor.len() <= MAX_AOR),
            Command::Remove { aor, device } => {
                assert!(aor.len() <= MAX_AOR);
                assert!(device.is_none_or(|d| d.len() <= MAX_DEVICE_ARG));
            }
            Command::Stats | Command::Apps | Command::Reload => {}
        },
        Err(text) => check_rpc_fault(method, &text),
    }
});
