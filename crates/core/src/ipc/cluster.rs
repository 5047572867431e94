//! What one node of a cluster tells the others through Kamailio's DMQ (`enable_dmq`): a small,
//! bounded JSON body, written by the node where a device registered and read by every other
//! node's DMQ worker (which queues it for its dispatcher, never acting itself).
//!
//! The body is text from the network: it is parsed with a size limit, each field is checked
//! against the same bounds a REGISTER's values have, and anything else is refused (the DMQ peer
//! answers 400).

use crate::devices::contact::{PushBinding, MAX_PARAM_LEN, MAX_TOKEN_LEN};
use crate::ipc::limits::{MAX_AOR, MAX_INSTANCE};
use serde::{Deserialize, Serialize};

/// The DMQ peer name the module registers (every node must use the same).
pub const DMQ_PEER: &str = "push";
/// The Content-Type of the DMQ messages.
pub const CONTENT_TYPE: &str = "application/json";
/// The largest body accepted (a message holds an AOR, an instance and one push binding).
pub const MAX_BODY: usize = 4096;
/// The format's version: a node refuses a message of another version (a rolling upgrade logs it).
pub const VERSION: u32 = 1;
/// Longest provider name accepted.
const MAX_PROVIDER: usize = 32;

/// What one node tells the others: a device of `aor` made a fresh binding on the sending node (a
/// new binding, or one whose device details changed), so a node holding calls for that device
/// resumes them. Sent after the REGISTER's reply went out. (Also what a DMQ worker queues for its
/// dispatcher: a plain struct, as the queue's encoding wants.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMessage {
    pub aor: String,
    /// The device's `+sip.instance`, if it has one.
    pub instance: Option<String>,
    pub provider: String,
    /// The push token (the held call's device is matched on provider, token and param, as
    /// RFC 8599 says): never logged.
    pub prid: String,
    pub param: Option<String>,
}

/// The JSON body on the DMQ bus: `{"type":"registered","v":1,"aor":...}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Registered {
        v: u32,
        aor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        provider: String,
        prid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        param: Option<String>,
    },
}

impl ClusterMessage {
    /// "This device of `aor` registered here."
    pub fn registered(aor: &str, instance: Option<&str>, binding: &PushBinding) -> ClusterMessage {
        ClusterMessage {
            aor: aor.to_string(),
            instance: instance.map(str::to_string),
            provider: binding.provider.clone(),
            prid: binding.prid.clone(),
            param: binding.param.clone(),
        }
    }

    /// The AOR the message is about.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The device's push binding (as a held call's device is matched).
    pub fn binding(&self) -> Option<PushBinding> {
        Some(PushBinding {
            provider: self.provider.clone(),
            prid: self.prid.clone(),
            param: self.param.clone(),
            silent: false,
            timeout: None,
        })
    }

    /// The device's instance, if it has one.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// The body sent through DMQ.
    pub fn encode(&self) -> String {
        serde_json::to_string(&Wire::Registered {
            v: VERSION,
            aor: self.aor.clone(),
            instance: self.instance.clone(),
            provider: self.provider.clone(),
            prid: self.prid.clone(),
            param: self.param.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a body another node sent; `Err` says why it is refused (bounded text, no token).
    pub fn decode(body: &[u8]) -> Result<ClusterMessage, String> {
        if body.len() > MAX_BODY {
            return Err(format!(
                "a body of {} bytes (at most {MAX_BODY})",
                body.len()
            ));
        }
        let wire: Wire = serde_json::from_slice(body).map_err(|e| {
            // serde's message may quote the input: only its category and position.
            format!(
                "not a push cluster message ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        let Wire::Registered {
            v,
            aor,
            instance,
            provider,
            prid,
            param,
        } = wire;
        if v != VERSION {
            return Err(format!("format version {v} (this node speaks {VERSION})"));
        }
        let field = |name: &str, value: &str, max: usize| {
            if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
                Err(format!(
                    "a bad {name} (empty, over {max} bytes, or control characters)"
                ))
            } else {
                Ok(())
            }
        };
        field("aor", &aor, MAX_AOR)?;
        field("provider", &provider, MAX_PROVIDER)?;
        field("token", &prid, MAX_TOKEN_LEN)?;
        if let Some(instance) = &instance {
            field("instance", instance, MAX_INSTANCE)?;
        }
        if let Some(param) = &param {
            field("param", param, MAX_PARAM_LEN)?;
        }
        Ok(ClusterMessage {
            aor,
            instance,
            provider,
            prid,
            param,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> PushBinding {
        PushBinding {
            provider: "apns".into(),
            prid: "tok123".into(),
            param: Some("ABCDE12345.org.example.voip".into()),
            silent: true,
            timeout: Some(5),
        }
    }

    #[test]
    fn a_message_survives_the_trip() {
        let m = ClusterMessage::registered("alice@example.com", Some("<urn:uuid:1>"), &binding());
        let body = m.encode();
        assert!(body.len() < 300, "{body}");
        assert!(body.contains("\"type\":\"registered\""), "{body}");
        let back = ClusterMessage::decode(body.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.aor(), "alice@example.com");
        assert_eq!(back.instance(), Some("<urn:uuid:1>"));
        let b = back.binding().unwrap();
        assert!(b.same_registration(&binding()));
        // On the dispatcher's queue (postcard), too.
        let queued = crate::ipc::message::ToDispatcher::Cluster(m.clone());
        let bytes = postcard::to_allocvec(&queued).unwrap();
        assert_eq!(
            postcard::from_bytes::<crate::ipc::message::ToDispatcher>(&bytes).unwrap(),
            queued
        );
    }

    #[test]
    fn bad_bodies_are_refused_without_echoing_them() {
        let secret = "SECRETTOKEN";
        for body in [
            format!("{{\"type\":\"registered\",\"v\":1,\"aor\":\"a\",\"provider\":\"apns\",\"prid\":\"{secret}\""),
            format!("{{\"type\":\"registered\",\"v\":2,\"aor\":\"a\",\"provider\":\"apns\",\"prid\":\"{secret}\"}}"),
            format!("{{\"type\":\"registered\",\"v\":1,\"aor\":\"\",\"provider\":\"apns\",\"prid\":\"{secret}\"}}"),
            format!("{{\"type\":\"registered\",\"v\":1,\"aor\":\"a\\n\",\"provider\":\"apns\",\"prid\":\"{secret}\"}}"),
            format!("{{\"type\":\"registered\",\"v\":1,\"aor\":\"a\",\"provider\":\"apns\",\"prid\":\"{secret}\",\"x\":1}}"),
            format!("{{\"type\":\"forget\",\"v\":1,\"aor\":\"a\",\"prid\":\"{secret}\"}}"),
            "[]".to_string(),
            "\u{0}\u{1}".to_string(),
        ] {
            let e = ClusterMessage::decode(body.as_bytes()).unwrap_err();
            assert!(!e.contains(secret), "{e}");
        }
        let huge = format!(
            "{{\"type\":\"registered\",\"v\":1,\"aor\":\"a\",\"provider\":\"apns\",\"prid\":\"{}\"}}",
            "x".repeat(MAX_BODY)
        );
        assert!(ClusterMessage::decode(huge.as_bytes())
            .unwrap_err()
            .contains("bytes"));
    }
}
