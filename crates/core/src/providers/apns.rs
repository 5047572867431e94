//! Apple Push Notification service, through the apns-h2 client: one HTTP/2 connection per app and
//! environment, reused and multiplexed; token auth (an ES256 JWT from the .p8 key, which the client
//! reuses for 55 minutes, within Apple's 20 to 60) or certificate auth (PEM or PKCS#12).

use super::{CallPush, Outcome, PushKind};
use crate::config::ApnsAuth;
use apns_h2::{
    Client, ClientConfig, CollapseId, DefaultNotificationBuilder, Endpoint, NotificationBuilder,
    NotificationOptions, Priority, PushType,
};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One attempt never waits longer than this for Apple.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one push goes.
#[derive(Clone, Debug)]
pub struct ApnsTarget {
    pub token: String,
    /// The device's `remote` token (dual-token devices), for pushes to the app's own topic.
    pub alert_token: Option<String>,
    /// The device said pn-provider=apns.dev.
    pub sandbox: bool,
    /// The device's pn-param (`TEAMID.bundle.id.voip`), naming its topic.
    pub param: Option<String>,
}

struct Clients {
    production: Option<Client>,
    sandbox: Option<Client>,
}

struct Inner {
    bundle_id: String,
    auth: ApnsAuth,
    sandbox_default: bool,
    voip: bool,
    clients: Mutex<Clients>,
    renewals: AtomicU64,
}

/// Pushes for one APNs app. Cheap to clone.
#[derive(Clone)]
pub struct ApnsSender {
    inner: Arc<Inner>,
}

fn build_client(auth: &ApnsAuth, sandbox: bool) -> Result<Client, String> {
    let endpoint = if sandbox {
        Endpoint::Sandbox
    } else {
        Endpoint::Production
    };
    let mut config = ClientConfig::new(endpoint);
    config.request_timeout = Some(ATTEMPT_TIMEOUT);
    match auth {
        ApnsAuth::Token {
            key_file,
            key_id,
            team_id,
        } => {
            let pem = std::fs::read(key_file)
                .map_err(|e| format!("cannot read key_file {}: {e}", key_file.display()))?;
            Client::token(pem.as_slice(), key_id.clone(), team_id.clone(), config).map_err(|e| {
                format!(
                    "key_file {} is not a usable .p8 (PKCS#8 EC) key: {e}",
                    key_file.display()
                )
            })
        }
        ApnsAuth::Certificate {
            cert_file,
            password,
        } => {
            let bytes = std::fs::read(cert_file)
                .map_err(|e| format!("cannot read cert_file {}: {e}", cert_file.display()))?;
            if bytes.starts_with(b"-----") || bytes.windows(5).any(|w| w == b"-----") {
                // PEM: the certificate (chain) and its PKCS#8 key in one file.
                Client::certificate_parts(&bytes, &bytes, config).map_err(|e| {
                    format!("cert_file {} (PEM) is not usable: {e}", cert_file.display())
                })
            } else {
                Client::certificate(
                    &mut bytes.as_slice(),
                    password.as_ref().map_or("", crate::config::Secret::expose),
                    config,
                )
                .map_err(|e| {
                    format!(
                        "cert_file {} (PKCS#12) is not usable (wrong cert_password?): {e}",
                        cert_file.display()
                    )
                })
            }
        }
    }
}

impl ApnsSender {
    /// Reads the credentials and builds the client of the app's default environment, so that bad
    /// credentials are reported at once.
    pub fn new(
        bundle_id: &str,
        auth: &ApnsAuth,
        sandbox: bool,
        voip: bool,
    ) -> Result<ApnsSender, String> {
        let first = build_client(auth, sandbox)?;
        let clients = if sandbox {
            Clients {
                production: None,
                sandbox: Some(first),
            }
        } else {
            Clients {
                production: Some(first),
                sandbox: None,
            }
        };
        Ok(ApnsSender {
            inner: Arc::new(Inner {
                bundle_id: bundle_id.to_string(),
                auth: auth.clone(),
                sandbox_default: sandbox,
                voip,
                clients: Mutex::new(clients),
                renewals: AtomicU64::new(0),
            }),
        })
    }

    /// Times the credentials were renewed after APNs rejected them.
    pub fn renewals(&self) -> u64 {
        self.inner.renewals.load(Ordering::Relaxed)
    }

    /// The client for an environment, built on first use.
    fn client(&self, sandbox: bool) -> Result<Client, String> {
        let mut clients = self.inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        let slot = if sandbox {
            &mut clients.sandbox
        } else {
            &mut clients.production
        };
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let c = build_client(&self.inner.auth, sandbox)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops the environment's client so the next push builds a new one: a fresh connection and,
    /// for token auth, a fresh JWT.
    fn renew(&self, sandbox: bool) {
        self.renew_connection(sandbox);
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn topic(&self, param: Option<&str>) -> String {
        topic_for(&self.inner.bundle_id, self.inner.voip, param)
    }

    pub async fn send(&self, push: &CallPush, target: &ApnsTarget, deadline: Instant) -> Outcome {
        let sandbox = target.sandbox || self.inner.sandbox_default;
        // A binding refresh is a background push to the app itself (never a VoIP push, which iOS
        // reports as a call): the app's own topic, normal priority, content-available only.
        let refresh = push.kind == PushKind::Refresh;
        // Only a call may be a VoIP push: a test push, a message and an end-of-call push are
        // alerts to the app's own topic.
        let voip = self.inner.voip && push.kind == PushKind::Call;
        let topic = topic_for(&self.inner.bundle_id, voip, target.param.as_deref());
        // The app's own topic takes the device's `remote` token when it gave two (the stored one
        // is then its VoIP token, which APNs refuses for that topic).
        let token = match (&target.alert_token, voip) {
            (Some(remote), false) => remote.as_str(),
            _ => target.token.as_str(),
        };
        let collapse = collapse_id(&push.call_id);
        let caller = push
            .caller_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| push.caller_uri.clone());
        let mut attempts = 0;
        let mut renewed = false;
        let mut backoff = super::Backoff::default();
        let mut last_error = String::from("no attempt made");
        loop {
            if Instant::now() >= deadline {
                return Outcome::GaveUp {
                    attempts,
                    last_error,
                };
            }
            let client = match self.client(sandbox) {
                Ok(c) => c,
                Err(e) => return Outcome::Rejected { status: 0, body: e },
            };
            attempts += 1;
            let options = NotificationOptions {
                apns_push_type: Some(if refresh {
                    PushType::Background
                } else if voip {
                    PushType::Voip
                } else {
                    PushType::Alert
                }),
                apns_priority: Some(if refresh {
                    Priority::Normal
                } else {
                    Priority::High
                }),
                apns_expiration: Some(push.expires_at),
                apns_topic: Some(&topic),
                apns_collapse_id: CollapseId::new(&collapse).ok(),
                ..Default::default()
            };
            let builder = match push.kind {
                PushKind::Refresh => DefaultNotificationBuilder::new().content_available(),
                PushKind::Test => DefaultNotificationBuilder::new()
                    .title("kamailio-push")
                    .body("Test push (push.send)"),
                PushKind::Call if voip => DefaultNotificationBuilder::new(),
                PushKind::Call => DefaultNotificationBuilder::new()
                    .title(caller.as_str())
                    .body("Incoming call"),
                // A chat message: a visible alert from the sender (the text only with the app's
                // message_preview), grouped per sender; a Notification Service Extension may
                // rewrite it (mutable-content).
                PushKind::Message => DefaultNotificationBuilder::new()
                    .title(caller.as_str())
                    .body(push.text.as_deref().unwrap_or("New message"))
                    .thread_id(push.caller_uri.as_str())
                    .sound("default")
                    .mutable_content(),
                // The end of a call: content-available so the running app (it is, while CallKit
                // shows the call its VoIP push started) is handed the push and ends the CallKit
                // call; a visible alert only for a missed call of an app with missed_call_alert.
                PushKind::Cancel => match &push.alert {
                    Some(alert) => DefaultNotificationBuilder::new()
                        .title(caller.as_str())
                        .body(alert.as_str())
                        .content_available()
                        .mutable_content(),
                    None => DefaultNotificationBuilder::new().content_available(),
                },
            };
            let mut payload = builder.build(token, options);
            for (key, value) in [
                ("type", serde_json::json!(push.kind)),
                ("call_id", serde_json::json!(push.call_id)),
                ("caller_uri", serde_json::json!(push.caller_uri)),
                ("caller_name", serde_json::json!(push.caller_name)),
                ("callee_aor", serde_json::json!(push.callee_aor)),
                ("app_id", serde_json::json!(push.app_id)),
                ("provider", serde_json::json!(push.provider)),
                ("sent_at", serde_json::json!(push.sent_at)),
                ("expires_at", serde_json::json!(push.expires_at)),
            ] {
                let _ = payload.add_custom_data(key, &value);
            }
            for (key, value) in [
                ("reason", push.reason.map(|r| r.as_str().to_string())),
                ("text", push.text.clone()),
                ("alert", push.alert.clone()),
            ] {
                if let Some(value) = value {
                    let _ = payload.add_custom_data(key, &value);
                }
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(ATTEMPT_TIMEOUT);
            let result = tokio::time::timeout(left, client.send(payload)).await;
            // Apple could not be reached at all (refused, a name that does not resolve, a failed
            // TLS handshake): only a few attempts (a broken stream or a timeout keeps its retries).
            let unreachable =
                matches!(&result, Ok(Err(apns_h2::Error::ClientError(e))) if e.is_connect());
            let (status, reason, retryable) = match result {
                Ok(Ok(_)) => {
                    return Outcome::Sent {
                        status: 200,
                        attempts,
                    }
                }
                Err(_) => (0, format!("no answer within {} ms", left.as_millis()), true),
                Ok(Err(apns_h2::Error::ResponseError(r))) => {
                    let reason = r
                        .error
                        .as_ref()
                        .map(|e| format!("{:?}", e.reason))
                        .unwrap_or_else(|| "no reason".to_string());
                    (r.code, reason, matches!(r.code, 429 | 500..=599))
                }
                Ok(Err(e)) => (0, format!("connection failed: {e}"), true),
            };
            // A push to the app's own topic with a token of another kind (a VoIP-only device)
            // says nothing of the token the device's calls use: refused, the device kept.
            let other_token = !voip && (self.inner.voip || token != target.token);
            match (status, reason.as_str()) {
                (400, "BadDeviceToken" | "DeviceTokenNotForTopic") if other_token => {
                    return Outcome::Rejected {
                        status,
                        body: reason,
                    }
                }
                (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
                    return Outcome::TokenDead {
                        status,
                        body: reason,
                    }
                }
                (403, "InvalidProviderToken" | "ExpiredProviderToken") if !renewed => {
                    // Renew the JWT (and connection) once, then try again.
                    renewed = true;
                    self.renew(sandbox);
                    last_error = format!("{status} {reason}");
                    continue;
                }
                _ if !retryable => {
                    return Outcome::Rejected {
                        status,
                        body: reason,
                    }
                }
                _ => {}
            }
            if status == 0 {
                // A broken connection is rebuilt for the next attempt.
                self.renew_connection(sandbox);
            }
            last_error = if status == 0 {
                reason
            } else {
                format!("{status} {reason}")
            };
            let next = if unreachable {
                backoff
                    .retry_unreachable(deadline, attempts, last_error)
                    .await
            } else {
                backoff.retry(None, deadline, attempts, last_error).await
            };
            last_error = match next {
                Ok(error) => error,
                Err(gave_up) => return gave_up,
            };
        }
    }

    fn renew_connection(&self, sandbox: bool) {
        let mut clients = self.inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        if sandbox {
            clients.sandbox = None;
        } else {
            clients.production = None;
        }
    }
}

/// The topic: the one the device's pn-param names (without its 10-character team id), else the
/// bundle id; with `.voip` for VoIP pushes.
pub fn topic_for(bundle_id: &str, voip: bool, param: Option<&str>) -> String {
    let base = param
        .map(|param| {
            let without_team = match param.split_once('.') {
                Some((team, rest)) if team.len() == 10 && rest.contains('.') => rest,
                _ => param,
            };
            without_team
                .strip_suffix(".remote&voip")
                .or_else(|| without_team.strip_suffix(".voip"))
                .or_else(|| without_team.strip_suffix(".remote"))
                .unwrap_or(without_team)
        })
        .filter(|b| !b.is_empty())
        .unwrap_or(bundle_id);
    if voip {
        format!("{base}.voip")
    } else {
        base.to_string()
    }
}

/// apns-collapse-id is at most 64 bytes: a long Call-ID is replaced by its hash.
pub fn collapse_id(call_id: &str) -> String {
    if call_id.len() <= 64 {
        call_id.to_string()
    } else {
        hex::encode(&Sha256::digest(call_id.as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_pn_param_or_bundle() {
        assert_eq!(
            topic_for("org.example.phone", true, None),
            "org.example.phone.voip"
        );
        assert_eq!(
            topic_for("org.example.phone", false, None),
            "org.example.phone"
        );
        assert_eq!(
            topic_for(
                "org.example.phone",
                true,
                Some("ABCDE12345.org.example.beta.voip")
            ),
            "org.example.beta.voip"
        );
        assert_eq!(
            topic_for(
                "org.example.phone",
                true,
                Some("ABCDE12345.org.example.phone.remote&voip")
            ),
            "org.example.phone.voip"
        );
        assert_eq!(topic_for("b.id", false, Some("")), "b.id");
    }

    #[test]
    fn collapse_ids_fit_apple_limit() {
        assert_eq!(collapse_id("abc@host"), "abc@host");
        let long = "x".repeat(200);
        let c = collapse_id(&long);
        assert_eq!(c.len(), 32);
        assert_eq!(c, collapse_id(&long));
    }
}
