//! What every provider shares about one push: what it carries ([`CallPush`], [`PushKind`]),
//! where it goes ([`PushTarget`]) and how it ended ([`Outcome`]).

use serde::Serialize;

/// Why a push goes out.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// Wake the app for a held call (APNs: a VoIP push).
    #[default]
    Call,
    /// RFC 8599 binding refresh: the app should only register again (APNs: a background push,
    /// never a VoIP one, which iOS would show as a call). The call fields are empty.
    Refresh,
    /// An operator's test push (`push.send`): the app can tell it from a call (APNs: an alert
    /// push to the app's own topic, never a VoIP push, which iOS would show as a phantom call).
    Test,
    /// A held MESSAGE (a chat message): never a call push (APNs: an alert push to the app's own
    /// topic; iOS forbids VoIP pushes for anything but calls).
    Message,
    /// The end of a held call the device was pushed for and did not join ([`EndReason`]): the
    /// app stops ringing (APNs: an alert push to the app's own topic, never a VoIP push).
    Cancel,
}

impl PushKind {
    /// The name apps read (`type` in every payload).
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Call => "call",
            PushKind::Refresh => "refresh",
            PushKind::Test => "test",
            PushKind::Message => "message",
            PushKind::Cancel => "cancel",
        }
    }
}

/// Why a held call ended, as an end-of-call push says (`reason`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller hung up (CANCEL).
    Cancelled,
    /// Another device (another branch) answered with 2xx.
    AnsweredElsewhere,
    /// No device registered within `timeout`, or none that registered answered before tm ended
    /// the call.
    Timeout,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Cancelled => "cancelled",
            EndReason::AnsweredElsewhere => "answered_elsewhere",
            EndReason::Timeout => "timeout",
        }
    }

    /// Whether the callee missed the call (a "missed call" alert is worth showing).
    pub fn missed(self) -> bool {
        matches!(self, EndReason::Cancelled | EndReason::Timeout)
    }
}

/// What every provider sends about a call (the JSON body of the webhook, field names as below).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CallPush {
    /// "call", "refresh", "test", "message" or "cancel".
    #[serde(rename = "type")]
    pub kind: PushKind,
    pub call_id: String,
    pub caller_uri: String,
    pub caller_name: Option<String>,
    pub callee_aor: String,
    pub token: String,
    pub app_id: String,
    pub provider: String,
    /// Unix milliseconds when this attempt was built.
    pub sent_at: u64,
    /// Unix seconds when the call stops waiting.
    pub expires_at: u64,
    /// An end-of-call push: why the call ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// A message push: the start of the message's text (only for apps with `message_preview`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A visible alert the app's user should see (an end-of-call push for a missed call, from the
    /// app's `missed_call_alert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

#[cfg(test)]
impl CallPush {
    /// A call from Alice (a display name with a quote and non-ASCII letters) to Bob, for the
    /// providers' tests.
    pub(crate) fn sample(token: &str, app_id: &str, provider: &str) -> CallPush {
        CallPush {
            kind: PushKind::Call,
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            caller_uri: "sip:alice@example.com".into(),
            caller_name: Some("Alice \"A\" Ünïcode".into()),
            callee_aor: "sip:bob@example.com".into(),
            token: token.into(),
            app_id: app_id.into(),
            provider: provider.into(),
            sent_at: 0,
            expires_at: 1_900_000_000,
            reason: None,
            text: None,
            alert: None,
        }
    }
}

/// How a push ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Sent { status: u16, attempts: u32 },
    /// 404 or 410: the endpoint says this token/device is gone; the device should be forgotten.
    TokenDead { status: u16, body: String },
    /// Any other 4xx (except 408, 429), a 3xx, or a non-standard status: final, not retried.
    Rejected { status: u16, body: String },
    /// Retries exhausted because the deadline came: last error text (connect refused, timeout,
    /// 5xx...). `attempts` is 0 when no request could be made at all (deadline already passed,
    /// unusable URL).
    GaveUp { attempts: u32, last_error: String },
}

impl Outcome {
    /// The same outcome with its text bounded, escaped and redacted (see [`super::clean`]).
    pub fn cleaned(self, device_token: &str) -> Outcome {
        let clean = |text: String| super::clean::outside_text(&text, Some(device_token));
        match self {
            Outcome::Sent { .. } => self,
            Outcome::TokenDead { status, body } => Outcome::TokenDead {
                status,
                body: clean(body),
            },
            Outcome::Rejected { status, body } => Outcome::Rejected {
                status,
                body: clean(body),
            },
            Outcome::GaveUp {
                attempts,
                last_error,
            } => Outcome::GaveUp {
                attempts,
                last_error: clean(last_error),
            },
        }
    }
}

/// Where one push goes, from the device record.
#[derive(Clone, Debug)]
pub struct PushTarget {
    pub token: String,
    /// APNs dual-token devices (`pn-prid=tokA:remote&tokB:voip`): the `remote` token, for pushes
    /// to the app's own topic (the stored token is the VoIP one, which APNs refuses there).
    pub alert_token: Option<String>,
    /// The device's pn-provider (`apns`, `apns.dev`, `fcm`, ...).
    pub device_provider: String,
    /// The device's pn-param / app-id.
    pub param: Option<String>,
}

impl PushTarget {
    /// Where a push to this stored device goes.
    pub fn of(device: &crate::devices::store::Device) -> PushTarget {
        PushTarget {
            token: device.prid.clone(),
            alert_token: crate::devices::contact::apns_remote_token(&device.contact)
                .filter(|t| *t != device.prid),
            device_provider: device.provider.clone(),
            param: device.param.clone(),
        }
    }
}
