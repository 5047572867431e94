//! Module parameters: collected as Kamailio hands them over (`modparam("push", ...)`), then checked
//! all at once in mod_init, so that a bad value stops Kamailio with a line naming the parameter.

use std::ffi::CStr;
use std::fmt;

/// A value as Kamailio passed it: `modparam("push", "name", 3)` or `modparam("push", "name", "text")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawValue {
    Int(i64),
    Str(String),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::Str(s) => write!(f, "\"{s}\""),
        }
    }
}

/// The kind of value a parameter takes; the boundary declares it to Kamailio with this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
}

/// A parameter the module accepts. The name is a C string because Kamailio reads this very text.
pub struct Param {
    pub name: &'static CStr,
    pub kind: Kind,
}

/// Every parameter the module accepts. The boundary exports exactly this list, in this order.
pub const PARAMS: &[Param] = &[
    Param {
        name: c"dispatcher_threads",
        kind: Kind::Int,
    },
    Param {
        name: c"queue_size",
        kind: Kind::Int,
    },
];

/// A parameter whose value cannot be used, with what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError {
    pub param: &'static str,
    pub value: RawValue,
    pub problem: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {} for modparam(\"push\", \"{}\", ...): {}",
            self.value, self.param, self.problem
        )
    }
}

impl std::error::Error for ParamError {}

/// The checked configuration every process of the module reads (set before fork, never changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Threads of the dispatcher's tokio runtime (network work: pushes, HTTP).
    pub dispatcher_threads: usize,
    /// Bytes the queue from SIP workers to the dispatcher holds before a sender is told it is full.
    pub queue_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dispatcher_threads: 2,
            queue_size: 1 << 20,
        }
    }
}

pub const THREADS_RANGE: (i64, i64) = (1, 64);
/// A pipe cannot be smaller than a page; beyond 256 MiB a queue only hides a stuck dispatcher.
pub const QUEUE_SIZE_RANGE: (i64, i64) = (64 << 10, 256 << 20);

impl Config {
    /// Builds the configuration from the parameters in the order the script set them; a parameter
    /// set twice keeps its last value, as Kamailio's own scalar parameters do.
    pub fn from_params(params: &[(&'static str, RawValue)]) -> Result<Config, ParamError> {
        let mut config = Config::default();
        for (name, value) in params {
            let err = |problem: String| ParamError {
                param: name,
                value: value.clone(),
                problem,
            };
            match *name {
                "dispatcher_threads" => {
                    config.dispatcher_threads = int_in(value, THREADS_RANGE).map_err(err)? as usize
                }
                "queue_size" => {
                    config.queue_size = int_in(value, QUEUE_SIZE_RANGE).map_err(err)? as usize
                }
                _ => return Err(err("unknown parameter".to_string())),
            }
        }
        Ok(config)
    }
}

fn int_in(value: &RawValue, (min, max): (i64, i64)) -> Result<i64, String> {
    match value {
        RawValue::Int(i) if (min..=max).contains(i) => Ok(*i),
        RawValue::Int(_) => Err(format!("must be between {min} and {max}")),
        RawValue::Str(_) => Err("must be a number".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_parameters() {
        assert_eq!(Config::from_params(&[]).unwrap(), Config::default());
    }

    #[test]
    fn last_value_wins() {
        let c = Config::from_params(&[
            ("dispatcher_threads", RawValue::Int(3)),
            ("dispatcher_threads", RawValue::Int(5)),
            ("queue_size", RawValue::Int(65536)),
        ])
        .unwrap();
        assert_eq!(c.dispatcher_threads, 5);
        assert_eq!(c.queue_size, 65536);
    }

    #[test]
    fn out_of_range_names_the_parameter() {
        let e = Config::from_params(&[("dispatcher_threads", RawValue::Int(0))]).unwrap_err();
        assert_eq!(e.param, "dispatcher_threads");
        let text = e.to_string();
        assert!(text.contains("\"dispatcher_threads\""), "{text}");
        assert!(text.contains("between 1 and 64"), "{text}");
        let e = Config::from_params(&[("queue_size", RawValue::Int(1000))]).unwrap_err();
        assert_eq!(e.param, "queue_size");
    }

    #[test]
    fn every_declared_parameter_is_understood() {
        for param in PARAMS {
            let name = param.name.to_str().unwrap();
            let value = match param.kind {
                Kind::Int => RawValue::Int(QUEUE_SIZE_RANGE.0.max(2)),
                Kind::Str => RawValue::Str(String::new()),
            };
            // A value may be out of range, but the name itself must never be "unknown".
            if let Err(e) = Config::from_params(&[(name, value)]) {
                assert_ne!(e.problem, "unknown parameter", "{name}");
            }
        }
    }
}
