//! What one node of a cluster tells the others through Kamailio's DMQ (`enable_dmq`): a small,
//! bounded JSON body, written by the node where something happened and read by every other
//! node's DMQ worker (which queues it for its dispatcher, never acting itself).
//!
//! - `registered`: a device of an AOR made a fresh binding on the sending node (a node holding
//!   calls for it resumes them, and may relay them to the sender, [`ClusterMessage::node`]);
//! - `device`: a device was stored or changed on the sending node (every node's store and AOR
//!   index learn it, so any node can push it);
//! - `removed`, `removed_token`, `removed_aor`: devices the sending node forgot (unregistered,
//!   dead token, push.remove, max_devices);
//! - `awaiting`: the sending node holds calls for an AOR (for `seconds`): a registration of
//!   that AOR's device on another node is news for it even when it looks like a refresh there
//!   (an UDP phone re-registering from the same address, a binding usrloc had not purged yet).
//!
//! The body is text from the network: it is parsed with a size limit, each field is checked
//! against the same bounds a REGISTER's values have, and anything else is refused (the DMQ peer
//! answers 400).

use crate::devices::contact::{PushBinding, MAX_PARAM_LEN, MAX_TOKEN_LEN};
use crate::devices::store::Device;
use crate::ipc::limits::{MAX_AOR, MAX_CONTACT, MAX_INSTANCE, MAX_URI, MAX_USER_AGENT};
use serde::{Deserialize, Serialize};

/// The DMQ peer name the module registers (every node must use the same).
pub const DMQ_PEER: &str = "push";
/// The Content-Type of the DMQ messages.
pub const CONTENT_TYPE: &str = "application/json";
/// The largest body accepted (one device with its Contact).
pub const MAX_BODY: usize = 4096;
/// The format's version: a node refuses a message of another version (a rolling upgrade logs it).
pub const VERSION: u32 = 1;
/// Longest provider and app names accepted.
const MAX_PROVIDER: usize = 32;
const MAX_APP: usize = 128;
/// Longest device id: an instance, or `token:` and a token.
const MAX_DEVICE_ID: usize = MAX_TOKEN_LEN + 6;
/// The largest queue frame a message may need (the queue's frame is `PIPE_BUF`, 4096 bytes): a
/// device too large for it is not sent (the other nodes learn it from the shared database).
const MAX_QUEUED: usize = 3800;

/// What one node says, and who said it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMessage {
    /// The sending node's DMQ address (the From of its KDMQ request, e.g. `sip:10.0.0.2:5060`):
    /// where a call resumed because of a `registered` message is relayed
    /// (`push_cluster_relay()`). Set by the receiving node; not in the body.
    pub node: Option<String>,
    /// The Call-ID of the KDMQ request that carried it (set by the receiving node; not in the
    /// body). DMQ answers statelessly, so a request tm retransmits (its answer was late or lost)
    /// reaches the peer again: the dispatcher acts once per Call-ID ([`Retransmissions`]).
    pub request: Option<String>,
    pub news: News,
}

/// The longest KDMQ Call-ID remembered (tm's are about 40 bytes); a longer one is not used.
pub const MAX_CALL_ID: usize = 128;

/// How long a KDMQ request is remembered: tm retransmits a non-INVITE request for at most
/// `fr_timer` (30 s by default), and keeps the transaction 5 s more.
pub const RETRANSMISSION_WINDOW: std::time::Duration = std::time::Duration::from_secs(64);
/// At most this many remembered requests (the oldest is forgotten first).
const MAX_REMEMBERED: usize = 16_384;

/// The KDMQ requests a node acted on lately, to tell a retransmission from a new message.
#[derive(Debug, Default)]
pub struct Retransmissions {
    seen: std::collections::HashSet<(Option<String>, String)>,
    order: std::collections::VecDeque<(std::time::Instant, (Option<String>, String))>,
}

impl Retransmissions {
    /// True the first time `message`'s request is seen (or when it has no Call-ID); false for
    /// a retransmission of one acted on within [`RETRANSMISSION_WINDOW`].
    pub fn first_time(&mut self, message: &ClusterMessage, now: std::time::Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < RETRANSMISSION_WINDOW
                && self.order.len() < MAX_REMEMBERED
            {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
        let Some(id) = &message.request else {
            return true;
        };
        let key = (message.node.clone(), id.clone());
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }

    /// How many requests are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// A KDMQ request's Call-ID as the dispatcher remembers it: None if empty, too long or not
/// printable ASCII (such a message is acted on, without the retransmission check).
pub fn call_id(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    (!text.is_empty() && text.len() <= MAX_CALL_ID && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_string())
}

/// What happened on the sending node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum News {
    /// A device of `aor` made a fresh binding there (a new binding, or one whose device details
    /// changed): a node holding calls for that device resumes them. Sent after the REGISTER's
    /// reply went out.
    Registered {
        aor: String,
        /// The device's `+sip.instance`, if it has one.
        instance: Option<String>,
        provider: String,
        /// The push token (the held call's device is matched on provider, token and param, as
        /// RFC 8599 says): never logged.
        prid: String,
        param: Option<String>,
    },
    /// A device was stored, or its details changed.
    Device(Device),
    /// One device was forgotten.
    Removed { aor: String, device_id: String },
    /// The devices of `aor` with this token were forgotten (a Contact without an instance
    /// unregistered).
    RemovedToken { aor: String, prid: String },
    /// Every device of `aor` was forgotten.
    RemovedAor { aor: String },
    /// The node holds calls for `aor` and waits for its devices for up to `seconds`.
    Awaiting { aor: String, seconds: u32 },
}

/// The longest wait an `awaiting` message may announce.
pub const MAX_AWAIT_S: u32 = 3600;

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
    Device {
        v: u32,
        aor: String,
        device_id: String,
        provider: String,
        prid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        param: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        contact: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        updated_at: i64,
    },
    Removed {
        v: u32,
        aor: String,
        device_id: String,
    },
    RemovedToken {
        v: u32,
        aor: String,
        prid: String,
    },
    RemovedAor {
        v: u32,
        aor: String,
    },
    Awaiting {
        v: u32,
        aor: String,
        seconds: u32,
    },
}

/// A field of a message: not empty, at most `max` bytes, no control characters.
fn field(name: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        Err(format!(
            "a bad {name} (empty, over {max} bytes, or control characters)"
        ))
    } else {
        Ok(())
    }
}

fn optional(name: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    match value {
        Some(v) => field(name, v, max),
        None => Ok(()),
    }
}

/// The address a call is relayed to, from the sending node's DMQ address (the From URI of its
/// KDMQ request): `sip:` or `sips:`, a host and port, and of its parameters only `transport`.
/// None for anything else (the call is then not relayed).
pub fn relay_uri(from: &str) -> Option<String> {
    let from = from.trim();
    if from.len() > MAX_URI || from.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (scheme, rest) = from.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let mut parts = rest.split(';');
    let hostport = parts.next()?;
    // A user part (`sip:node@host`) is kept out: the node is its host and port.
    let hostport = hostport.rsplit('@').next()?;
    if hostport.is_empty()
        || !hostport
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return None;
    }
    let mut uri = format!("{}:{hostport}", scheme.to_ascii_lowercase());
    for p in parts {
        if let Some(t) = p.strip_prefix("transport=") {
            if t.chars().all(|c| c.is_ascii_alphanumeric()) && !t.is_empty() {
                uri.push_str(";transport=");
                uri.push_str(t);
            }
        }
    }
    Some(uri)
}

impl ClusterMessage {
    /// "This device of `aor` registered here."
    pub fn registered(aor: &str, instance: Option<&str>, binding: &PushBinding) -> ClusterMessage {
        News::Registered {
            aor: aor.to_string(),
            instance: instance.map(str::to_string),
            provider: binding.provider.clone(),
            prid: binding.prid.clone(),
            param: binding.param.clone(),
        }
        .into()
    }

    /// "This device was stored (or changed) here."
    pub fn device(device: &Device) -> ClusterMessage {
        News::Device(device.clone()).into()
    }

    /// The AOR the message is about.
    pub fn aor(&self) -> &str {
        match &self.news {
            News::Registered { aor, .. }
            | News::Removed { aor, .. }
            | News::RemovedToken { aor, .. }
            | News::RemovedAor { aor }
            | News::Awaiting { aor, .. } => aor,
            News::Device(d) => &d.aor,
        }
    }

    /// A `registered` message's push binding (as a held call's device is matched).
    pub fn binding(&self) -> Option<PushBinding> {
        match &self.news {
            News::Registered {
                provider,
                prid,
                param,
                ..
            } => Some(PushBinding {
                provider: provider.clone(),
                prid: prid.clone(),
                param: param.clone(),
                silent: false,
                timeout: None,
            }),
            _ => None,
        }
    }

    /// A `registered` message's device instance, if it has one.
    pub fn instance(&self) -> Option<&str> {
        match &self.news {
            News::Registered { instance, .. } => instance.as_deref(),
            _ => None,
        }
    }

    /// The body sent through DMQ (None: too large for the other nodes' queues, not sent).
    pub fn encode(&self) -> Option<String> {
        let wire = match self.news.clone() {
            News::Registered {
                aor,
                instance,
                provider,
                prid,
                param,
            } => Wire::Registered {
                v: VERSION,
                aor,
                instance,
                provider,
                prid,
                param,
            },
            News::Device(d) => Wire::Device {
                v: VERSION,
                aor: d.aor,
                device_id: d.device_id,
                provider: d.provider,
                prid: d.prid,
                param: d.param,
                app: d.app_id,
                instance: d.instance,
                contact: d.contact,
                user_agent: d.user_agent,
                updated_at: d.updated_at,
            },
            News::Removed { aor, device_id } => Wire::Removed {
                v: VERSION,
                aor,
                device_id,
            },
            News::RemovedToken { aor, prid } => Wire::RemovedToken {
                v: VERSION,
                aor,
                prid,
            },
            News::RemovedAor { aor } => Wire::RemovedAor { v: VERSION, aor },
            News::Awaiting { aor, seconds } => Wire::Awaiting {
                v: VERSION,
                aor,
                seconds,
            },
        };
        let body = serde_json::to_string(&wire).ok()?;
        // The receiver queues it with the sender's address (at most MAX_URI) and the request's
        // Call-ID (at most MAX_CALL_ID).
        let queued = postcard::to_allocvec(self)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        (body.len() <= MAX_BODY && queued + MAX_URI + MAX_CALL_ID <= MAX_QUEUED).then_some(body)
    }

    /// Reads a body node `from` (its DMQ address, if known) sent; `Err` says why it is refused
    /// (bounded text, no token).
    pub fn decode(body: &[u8], from: Option<&str>) -> Result<ClusterMessage, String> {
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
        let news = match wire {
            Wire::Registered {
                v,
                aor,
                instance,
                provider,
                prid,
                param,
            } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                field("provider", &provider, MAX_PROVIDER)?;
                field("token", &prid, MAX_TOKEN_LEN)?;
                optional("instance", &instance, MAX_INSTANCE)?;
                optional("param", &param, MAX_PARAM_LEN)?;
                News::Registered {
                    aor,
                    instance,
                    provider,
                    prid,
                    param,
                }
            }
            Wire::Device {
                v,
                aor,
                device_id,
                provider,
                prid,
                param,
                app,
                instance,
                contact,
                user_agent,
                updated_at,
            } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                field("device id", &device_id, MAX_DEVICE_ID)?;
                field("provider", &provider, MAX_PROVIDER)?;
                field("token", &prid, MAX_TOKEN_LEN)?;
                optional("param", &param, MAX_PARAM_LEN)?;
                optional("app", &app, MAX_APP)?;
                optional("instance", &instance, MAX_INSTANCE)?;
                field("contact", &contact, MAX_CONTACT)?;
                optional("user agent", &user_agent, MAX_USER_AGENT)?;
                if updated_at < 0 {
                    return Err("a bad updated_at".into());
                }
                News::Device(Device {
                    aor,
                    device_id,
                    provider,
                    prid,
                    param,
                    app_id: app,
                    instance,
                    contact,
                    user_agent,
                    updated_at,
                })
            }
            Wire::Removed { v, aor, device_id } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                field("device id", &device_id, MAX_DEVICE_ID)?;
                News::Removed { aor, device_id }
            }
            Wire::RemovedToken { v, aor, prid } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                field("token", &prid, MAX_TOKEN_LEN)?;
                News::RemovedToken { aor, prid }
            }
            Wire::RemovedAor { v, aor } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                News::RemovedAor { aor }
            }
            Wire::Awaiting { v, aor, seconds } => {
                version(v)?;
                field("aor", &aor, MAX_AOR)?;
                if seconds == 0 || seconds > MAX_AWAIT_S {
                    return Err(format!("a wait of {seconds} s (1 to {MAX_AWAIT_S})"));
                }
                News::Awaiting { aor, seconds }
            }
        };
        Ok(ClusterMessage {
            node: from.and_then(relay_uri),
            request: None,
            news,
        })
    }
}

impl From<News> for ClusterMessage {
    fn from(news: News) -> ClusterMessage {
        ClusterMessage {
            node: None,
            request: None,
            news,
        }
    }
}

fn version(v: u32) -> Result<(), String> {
    if v != VERSION {
        return Err(format!("format version {v} (this node speaks {VERSION})"));
    }
    Ok(())
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

    fn device() -> Device {
        Device {
            aor: "alice@example.com".into(),
            device_id: "<urn:uuid:1>".into(),
            provider: "fcm".into(),
            prid: "tok456".into(),
            param: None,
            app_id: Some("org.example.phone".into()),
            instance: Some("<urn:uuid:1>".into()),
            contact: "sip:alice@10.0.0.9:5060;pn-provider=fcm;pn-prid=tok456".into(),
            user_agent: Some("Phone/1.0".into()),
            updated_at: 1_700_000_000,
        }
    }

    /// The trip: encoded, read by another node, and queued for its dispatcher.
    fn trip(m: &ClusterMessage) -> ClusterMessage {
        let body = m.encode().expect("fits");
        let back = ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.2:5060")).unwrap();
        assert_eq!(back.news, m.news);
        assert_eq!(back.node.as_deref(), Some("sip:10.0.0.2:5060"));
        let queued = crate::ipc::message::ToDispatcher::Cluster(back.clone());
        let bytes = postcard::to_allocvec(&queued).unwrap();
        assert_eq!(
            postcard::from_bytes::<crate::ipc::message::ToDispatcher>(&bytes).unwrap(),
            queued
        );
        back
    }

    #[test]
    fn a_message_survives_the_trip() {
        let m = ClusterMessage::registered("alice@example.com", Some("<urn:uuid:1>"), &binding());
        let body = m.encode().unwrap();
        assert!(body.len() < 300, "{body}");
        assert!(body.contains("\"type\":\"registered\""), "{body}");
        let back = trip(&m);
        assert_eq!(back.aor(), "alice@example.com");
        assert_eq!(back.instance(), Some("<urn:uuid:1>"));
        let b = back.binding().unwrap();
        assert!(b.same_registration(&binding()));
    }

    #[test]
    fn device_news_survives_the_trip() {
        let d = device();
        let back = trip(&ClusterMessage::device(&d));
        assert_eq!(back.news, News::Device(d.clone()));
        assert_eq!(back.aor(), "alice@example.com");
        assert!(back.binding().is_none());
        for news in [
            News::Removed {
                aor: d.aor.clone(),
                device_id: d.device_id.clone(),
            },
            News::RemovedToken {
                aor: d.aor.clone(),
                prid: d.prid.clone(),
            },
            News::RemovedAor { aor: d.aor.clone() },
            News::Awaiting {
                aor: d.aor.clone(),
                seconds: 35,
            },
        ] {
            trip(&news.into());
        }
    }

    #[test]
    fn a_device_too_large_for_a_queue_frame_is_not_sent() {
        let mut d = device();
        d.prid = "t".repeat(MAX_TOKEN_LEN);
        d.device_id = format!("token:{}", d.prid);
        d.contact = format!("sip:a@h;pn-prid={}", "t".repeat(MAX_CONTACT - 20));
        d.aor = "a".repeat(MAX_AOR);
        d.user_agent = Some("u".repeat(MAX_USER_AGENT));
        assert!(ClusterMessage::device(&d).encode().is_none());
        // The largest values one by one still fit.
        let mut d = device();
        d.contact = "c".repeat(MAX_CONTACT);
        d.user_agent = Some("u".repeat(MAX_USER_AGENT));
        trip(&ClusterMessage::device(&d));
    }

    #[test]
    fn the_relay_address_is_the_senders_host_and_port() {
        assert_eq!(
            relay_uri("sip:10.0.0.2:5060").as_deref(),
            Some("sip:10.0.0.2:5060")
        );
        assert_eq!(
            relay_uri("sip:node@[::1]:5070;transport=tcp;passive=true").as_deref(),
            Some("sip:[::1]:5070;transport=tcp")
        );
        for bad in [
            "",
            "http://x",
            "sip:",
            "sip:a b",
            "sip:x\r\nVia: evil",
            "sip:ho$t",
            "tel:+1234",
        ] {
            assert_eq!(relay_uri(bad), None, "{bad:?}");
        }
        // A message whose sender is unusable is still read, just not relayed.
        let m = ClusterMessage::registered("a", None, &binding());
        let back = ClusterMessage::decode(m.encode().unwrap().as_bytes(), Some("junk")).unwrap();
        assert_eq!(back.node, None);
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
            format!("{{\"type\":\"device\",\"v\":1,\"aor\":\"a\",\"device_id\":\"d\",\"provider\":\"fcm\",\"prid\":\"{secret}\",\"contact\":\"\",\"updated_at\":1}}"),
            format!("{{\"type\":\"device\",\"v\":1,\"aor\":\"a\",\"device_id\":\"d\",\"provider\":\"fcm\",\"prid\":\"{secret}\",\"contact\":\"sip:x\",\"updated_at\":-5}}"),
            format!("{{\"type\":\"removed_token\",\"v\":1,\"aor\":\"a\",\"prid\":\"{secret}\\u0000\"}}"),
            "{\"type\":\"removed_aor\",\"v\":1}".to_string(),
            "{\"type\":\"awaiting\",\"v\":1,\"aor\":\"a\",\"seconds\":0}".to_string(),
            "{\"type\":\"awaiting\",\"v\":1,\"aor\":\"a\",\"seconds\":99999}".to_string(),
            "[]".to_string(),
            "\u{0}\u{1}".to_string(),
        ] {
            let e = ClusterMessage::decode(body.as_bytes(), None).unwrap_err();
            assert!(!e.contains(secret), "{e}");
        }
        let huge = format!(
            "{{\"type\":\"registered\",\"v\":1,\"aor\":\"a\",\"provider\":\"apns\",\"prid\":\"{}\"}}",
            "x".repeat(MAX_BODY)
        );
        assert!(ClusterMessage::decode(huge.as_bytes(), None)
            .unwrap_err()
            .contains("bytes"));
    }

    #[test]
    fn a_retransmission_is_told_from_a_new_request() {
        let start = std::time::Instant::now();
        let mut seen = Retransmissions::default();
        let message = |node: &str, id: Option<&str>| {
            let mut m = ClusterMessage::registered("alice", None, &binding());
            m.node = Some(node.into());
            m.request = id.map(String::from);
            m
        };
        assert!(seen.first_time(&message("sip:a:5060", Some("x1")), start));
        assert!(!seen.first_time(&message("sip:a:5060", Some("x1")), start));
        // another request, or the same Call-ID from another node
        assert!(seen.first_time(&message("sip:a:5060", Some("x2")), start));
        assert!(seen.first_time(&message("sip:b:5060", Some("x1")), start));
        // no Call-ID: always acted on, never remembered
        assert!(seen.first_time(&message("sip:a:5060", None), start));
        assert!(seen.first_time(&message("sip:a:5060", None), start));
        assert_eq!(seen.len(), 3);
        // after the window tm no longer retransmits: forgotten
        let later = start + RETRANSMISSION_WINDOW;
        assert!(seen.first_time(&message("sip:a:5060", Some("x1")), later));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn remembered_requests_are_bounded() {
        let now = std::time::Instant::now();
        let mut seen = Retransmissions::default();
        let mut m = ClusterMessage::registered("alice", None, &binding());
        for n in 0..MAX_REMEMBERED + 100 {
            m.request = Some(format!("id{n}"));
            assert!(seen.first_time(&m, now));
        }
        assert!(seen.len() <= MAX_REMEMBERED);
        // the newest are still known
        assert!(!seen.first_time(&m, now));
    }

    #[test]
    fn call_ids_are_bounded_and_printable() {
        assert_eq!(call_id(b" abc@host ").as_deref(), Some("abc@host"));
        assert_eq!(call_id(b""), None);
        assert_eq!(call_id(b"a b"), None);
        assert_eq!(call_id(b"a\x01b"), None);
        assert_eq!(call_id(&[0xff, 0xfe]), None);
        assert_eq!(call_id("x".repeat(MAX_CALL_ID + 1).as_bytes()), None);
        assert!(call_id("x".repeat(MAX_CALL_ID).as_bytes()).is_some());
    }
}
