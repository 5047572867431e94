//! Module parameters: collected as Kamailio hands them over (`modparam("push", ...)`), then checked
//! all at once in mod_init, so that a bad value stops Kamailio with a line naming the parameter.

use crate::devices::store::{parse_db_url, DEFAULT_DB_URL};
use std::ffi::CStr;
use std::fmt;
use std::path::PathBuf;

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
    Param {
        name: c"timeout",
        kind: Kind::Int,
    },
    Param {
        name: c"max_pending",
        kind: Kind::Int,
    },
    Param {
        name: c"resume_route",
        kind: Kind::Str,
    },
    Param {
        name: c"auto_resume",
        kind: Kind::Int,
    },
    Param {
        name: c"db_url",
        kind: Kind::Str,
    },
    Param {
        name: c"app",
        kind: Kind::Str,
    },
    Param {
        name: c"default_app",
        kind: Kind::Str,
    },
    Param {
        name: c"use_domain",
        kind: Kind::Int,
    },
    Param {
        name: c"location_table",
        kind: Kind::Str,
    },
    Param {
        name: c"aor_index_size",
        kind: Kind::Int,
    },
    Param {
        name: c"fcm_url",
        kind: Kind::Str,
    },
    Param {
        name: c"ua_profile",
        kind: Kind::Str,
    },
    Param {
        name: c"refresh_window",
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

/// How an app's pushes are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppProvider {
    /// An HTTP POST to the operator's endpoint.
    Webhook { url: String, secret: Option<String> },
    /// Apple Push Notification service.
    Apns {
        auth: ApnsAuth,
        /// Devices that say pn-provider=apns.dev use the sandbox whatever this says.
        sandbox: bool,
        /// VoIP (PushKit) pushes, or alert pushes.
        voip: bool,
    },
    /// Firebase Cloud Messaging HTTP v1, with a Google service account.
    Fcm { service_account: PathBuf },
}

/// How the module proves itself to APNs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApnsAuth {
    /// A .p8 signing key: a JWT (ES256), reused for 55 minutes.
    Token {
        key_file: PathBuf,
        key_id: String,
        team_id: String,
    },
    /// A TLS client certificate: a PEM file with certificate and key, or a PKCS#12 file.
    Certificate {
        cert_file: PathBuf,
        password: Option<String>,
    },
}

impl AppProvider {
    pub fn name(&self) -> &'static str {
        match self {
            AppProvider::Webhook { .. } => "webhook",
            AppProvider::Apns { .. } => "apns",
            AppProvider::Fcm { .. } => "fcm",
        }
    }
}

/// One `modparam("push", "app", "id=...;provider=...;...")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub provider: AppProvider,
}

impl App {
    /// Parses `key=value;key=value`. Keys: id, provider, and the provider's own (webhook: url,
    /// secret; apns: key_file, key_id, team_id or cert_file, cert_password, environment,
    /// push_type; fcm: service_account). Files are only named here; they are read when the
    /// providers are built (at startup and on push.reload).
    pub fn parse(spec: &str) -> Result<App, String> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not key=value"))?;
            let k = k.trim().to_ascii_lowercase();
            if fields.iter().any(|(seen, _)| *seen == k) {
                return Err(format!("key '{k}' is given twice"));
            }
            fields.push((k, v.trim().to_string()));
        }
        let take = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let id = take("id")
            .filter(|v| !v.is_empty())
            .ok_or("missing id=<app id>")?;
        let provider = take("provider").ok_or("missing provider=webhook|apns|fcm")?;
        let (provider, allowed): (AppProvider, &[&str]) = match provider
            .to_ascii_lowercase()
            .as_str()
        {
            "webhook" => {
                let url = take("url").ok_or("provider=webhook needs url=<http(s) URL>")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                    return Err(format!("url '{url}' is not an http:// or https:// URL"));
                }
                let secret = take("secret").filter(|s| !s.is_empty());
                (AppProvider::Webhook { url, secret }, &["url", "secret"])
            }
            "apns" => {
                let auth = match (take("key_file"), take("cert_file")) {
                    (Some(_), Some(_)) => return Err("give key_file (token auth) or cert_file, not both".into()),
                    (Some(key_file), None) => {
                        let key_id = take("key_id").filter(|v| !v.is_empty()).ok_or("key_file needs key_id=<key id>")?;
                        let team_id = take("team_id").filter(|v| !v.is_empty()).ok_or("key_file needs team_id=<team id>")?;
                        ApnsAuth::Token {
                            key_file: PathBuf::from(key_file),
                            key_id,
                            team_id,
                        }
                    }
                    (None, Some(cert_file)) => ApnsAuth::Certificate {
                        cert_file: PathBuf::from(cert_file),
                        password: take("cert_password"),
                    },
                    (None, None) => {
                        return Err("provider=apns needs key_file/key_id/team_id (token) or cert_file (certificate)".into())
                    }
                };
                let sandbox = match take("environment")
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("production") => false,
                    Some("sandbox") | Some("development") => true,
                    Some(other) => {
                        return Err(format!(
                            "environment '{other}' is not production or sandbox"
                        ))
                    }
                };
                let voip = match take("push_type")
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("voip") => true,
                    Some("alert") => false,
                    Some(other) => return Err(format!("push_type '{other}' is not voip or alert")),
                };
                (
                    AppProvider::Apns {
                        auth,
                        sandbox,
                        voip,
                    },
                    &[
                        "key_file",
                        "key_id",
                        "team_id",
                        "cert_file",
                        "cert_password",
                        "environment",
                        "push_type",
                    ],
                )
            }
            "fcm" => {
                let path = take("service_account")
                    .ok_or("provider=fcm needs service_account=<file.json>")?;
                (
                    AppProvider::Fcm {
                        service_account: PathBuf::from(path),
                    },
                    &["service_account"],
                )
            }
            other => {
                return Err(format!(
                    "unknown provider '{other}' (supported: webhook, apns, fcm)"
                ))
            }
        };
        if let Some((k, _)) = fields
            .iter()
            .find(|(k, _)| k != "id" && k != "provider" && !allowed.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key '{k}' for provider={}",
                provider.name()
            ));
        }
        Ok(App { id, provider })
    }
}

/// The checked configuration every process of the module reads (set before fork, never changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Threads of the dispatcher's tokio runtime (network work: pushes, HTTP).
    pub dispatcher_threads: usize,
    /// Bytes the queue from SIP workers to the dispatcher holds before a sender is told it is full.
    pub queue_size: usize,
    /// Seconds a held call waits for a device (set on the transaction as its fr_inv timer).
    pub timeout: u32,
    /// Calls held at once before push_suspend answers -2.
    pub max_pending: u64,
    /// Route a held call is continued into.
    pub resume_route: String,
    /// Learn devices and resume calls from usrloc's callbacks.
    pub auto_resume: bool,
    /// The SQLite file of the device store.
    pub db_path: PathBuf,
    pub apps: Vec<App>,
    /// App for devices whose Contact names none (or names one that is not configured).
    pub default_app: Option<String>,
    /// AORs are user@domain (1) or user (0); usrloc's own setting wins when usrloc is loaded.
    pub use_domain: bool,
    /// usrloc table whose contacts a late-waking device's branch is built from.
    pub location_table: String,
    /// Slots of the shared index of AORs with devices (8 bytes each; 3/4 usable).
    pub aor_index_size: usize,
    /// Base URL of the FCM HTTP v1 API.
    pub fcm_url: String,
    /// User-Agent profiles naming apps' own Contact parameters, in declaration order.
    pub profiles: Vec<crate::devices::profile::UaProfile>,
    /// Binding-refresh pushes (RFC 8599): a device whose binding expires within this many seconds
    /// gets one background push so it registers again. 0: off.
    pub refresh_window: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dispatcher_threads: 2,
            queue_size: 1 << 20,
            timeout: 30,
            max_pending: 10_000,
            resume_route: "PUSH_RESUME".to_string(),
            auto_resume: true,
            db_path: parse_db_url(DEFAULT_DB_URL).expect("the default db_url is valid"),
            apps: Vec::new(),
            default_app: None,
            use_domain: false,
            location_table: "location".to_string(),
            aor_index_size: 1 << 20,
            fcm_url: "https://fcm.googleapis.com".to_string(),
            profiles: Vec::new(),
            refresh_window: 0,
        }
    }
}

pub const THREADS_RANGE: (i64, i64) = (1, 64);
/// A pipe cannot be smaller than a page; beyond 256 MiB a queue only hides a stuck dispatcher.
pub const QUEUE_SIZE_RANGE: (i64, i64) = (64 << 10, 256 << 20);
pub const TIMEOUT_RANGE: (i64, i64) = (1, 3600);
pub const MAX_PENDING_RANGE: (i64, i64) = (1, 1_000_000);
pub const AOR_INDEX_RANGE: (i64, i64) = (1024, 1 << 27);
/// Up to a day before expiry; 0 turns binding-refresh pushes off.
pub const REFRESH_WINDOW_RANGE: (i64, i64) = (0, 86_400);

impl Config {
    /// Builds the configuration from the parameters in the order the script set them; a parameter
    /// set twice keeps its last value, as Kamailio's own scalar parameters do (`app` adds one app
    /// each time).
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
                "timeout" => config.timeout = int_in(value, TIMEOUT_RANGE).map_err(err)? as u32,
                "max_pending" => {
                    config.max_pending = int_in(value, MAX_PENDING_RANGE).map_err(err)? as u64
                }
                "refresh_window" => {
                    config.refresh_window = int_in(value, REFRESH_WINDOW_RANGE).map_err(err)? as u32
                }
                "auto_resume" => config.auto_resume = int_in(value, (0, 1)).map_err(err)? == 1,
                "use_domain" => config.use_domain = int_in(value, (0, 1)).map_err(err)? == 1,
                "resume_route" => {
                    let route = text(value).map_err(err)?;
                    if route.is_empty() || route.chars().any(char::is_whitespace) {
                        return Err(err("must be the name of a route block".to_string()));
                    }
                    config.resume_route = route;
                }
                "db_url" => {
                    config.db_path =
                        parse_db_url(&text(value).map_err(err)?).map_err(|e| err(e.to_string()))?
                }
                "app" => {
                    let app = App::parse(&text(value).map_err(err)?).map_err(err)?;
                    if config.apps.iter().any(|a| a.id == app.id) {
                        return Err(err(format!("app id '{}' is declared twice", app.id)));
                    }
                    config.apps.push(app);
                }
                "default_app" => config.default_app = Some(text(value).map_err(err)?),
                "aor_index_size" => {
                    config.aor_index_size = int_in(value, AOR_INDEX_RANGE).map_err(err)? as usize
                }
                "ua_profile" => {
                    let profile =
                        crate::devices::profile::UaProfile::parse(&text(value).map_err(err)?)
                            .map_err(err)?;
                    config.profiles.push(profile);
                }
                "fcm_url" => {
                    let url = text(value).map_err(err)?;
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(err("must be an https:// (or http://) URL".to_string()));
                    }
                    config.fcm_url = url.trim_end_matches('/').to_string();
                }
                "location_table" => {
                    let table = text(value).map_err(err)?;
                    if table.is_empty() || table.contains('\0') {
                        return Err(err("must name a usrloc table".to_string()));
                    }
                    config.location_table = table;
                }
                _ => return Err(err("unknown parameter".to_string())),
            }
        }
        if let Some(default) = &config.default_app {
            if !config.apps.iter().any(|a| &a.id == default) {
                let value = params
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == "default_app")
                    .map(|(_, v)| v.clone())
                    .unwrap_or(RawValue::Str(default.clone()));
                return Err(ParamError {
                    param: "default_app",
                    value,
                    problem: format!("no app with id '{default}' is declared with modparam(\"push\", \"app\", ...)"),
                });
            }
        }
        Ok(config)
    }

    /// The app a device is pushed through: the one its Contact names, else the default app.
    /// A Contact names an app by its id, or by the forms softphones send: RFC 8599's APNs
    /// `pn-param` (`TEAMID.bundle.id.voip`, `TEAMID.bundle.id.remote&voip`) and Linphone's
    /// `app-id` with `.dev` / `.prod`.
    pub fn app_for(&self, named: Option<&str>) -> Option<&App> {
        named
            .and_then(|name| {
                app_candidates(name).find_map(|id| self.apps.iter().find(|a| a.id == id))
            })
            .or_else(|| {
                self.default_app
                    .as_ref()
                    .and_then(|d| self.apps.iter().find(|a| &a.id == d))
            })
    }
}

impl AppProvider {
    /// Whether this kind of app can push devices of the RFC 8599 `pn-provider` named (a webhook
    /// hands any provider's token to the operator's endpoint).
    pub fn serves(&self, provider: &str) -> bool {
        match self {
            AppProvider::Webhook { .. } => true,
            AppProvider::Apns { .. } => provider == "apns" || provider == "apns.dev",
            AppProvider::Fcm { .. } => provider == "fcm",
        }
    }
}

impl Config {
    /// RFC 8599 "supported": the app a device with this `pn-provider` and `pn-param`/`app-id`
    /// would be pushed through (see [`Config::app_for`]) exists and can push that provider.
    pub fn app_serving(&self, provider: &str, named: Option<&str>) -> Option<&App> {
        self.app_for(named).filter(|a| a.provider.serves(provider))
    }
}

/// The app ids a `pn-param` / `app-id` value may mean, most literal first.
fn app_candidates(name: &str) -> impl Iterator<Item = &str> {
    const SUFFIXES: [&str; 5] = [".remote&voip", ".voip", ".remote", ".dev", ".prod"];
    let stripped = SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    // An APNs pn-param starts with the 10-character team id.
    let team = |s: &str| -> Option<usize> {
        let (first, rest) = s.split_once('.')?;
        (first.len() == 10
            && first.chars().all(|c| c.is_ascii_alphanumeric())
            && rest.contains('.'))
        .then_some(first.len() + 1)
    };
    let without_team = team(stripped).map(|i| &stripped[i..]).unwrap_or(stripped);
    [name, stripped, without_team].into_iter()
}

fn int_in(value: &RawValue, (min, max): (i64, i64)) -> Result<i64, String> {
    match value {
        RawValue::Int(i) if (min..=max).contains(i) => Ok(*i),
        RawValue::Int(_) => Err(format!("must be between {min} and {max}")),
        RawValue::Str(_) => Err("must be a number".to_string()),
    }
}

fn text(value: &RawValue) -> Result<String, String> {
    match value {
        RawValue::Str(s) => Ok(s.trim().to_string()),
        RawValue::Int(_) => Err("must be a string".to_string()),
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
    fn apps_are_parsed_and_checked() {
        let app = App::parse(
            "id=com.example.phone; provider=webhook; url=https://push.example.com/hook; secret=k1",
        )
        .unwrap();
        assert_eq!(app.id, "com.example.phone");
        assert_eq!(
            app.provider,
            AppProvider::Webhook {
                url: "https://push.example.com/hook".into(),
                secret: Some("k1".into())
            }
        );
        assert!(App::parse("provider=webhook;url=http://x.example/")
            .unwrap_err()
            .contains("missing id"));
        assert!(App::parse("id=a;provider=carrier-pigeon")
            .unwrap_err()
            .contains("unknown provider"));
        let apns = App::parse("id=org.example.phone;provider=apns;key_file=/k/AuthKey_ABC.p8;key_id=ABC123DEFG;team_id=TEAM123456;environment=sandbox").unwrap();
        assert_eq!(
            apns.provider,
            AppProvider::Apns {
                auth: ApnsAuth::Token {
                    key_file: "/k/AuthKey_ABC.p8".into(),
                    key_id: "ABC123DEFG".into(),
                    team_id: "TEAM123456".into()
                },
                sandbox: true,
                voip: true
            }
        );
        let cert =
            App::parse("id=x;provider=apns;cert_file=/c.p12;cert_password=pw;push_type=alert")
                .unwrap();
        assert!(matches!(
            cert.provider,
            AppProvider::Apns {
                voip: false,
                sandbox: false,
                auth: ApnsAuth::Certificate { .. }
            }
        ));
        assert!(App::parse("id=x;provider=apns;key_file=/k.p8;team_id=T")
            .unwrap_err()
            .contains("key_id"));
        assert!(App::parse("id=x;provider=apns")
            .unwrap_err()
            .contains("needs key_file"));
        assert!(
            App::parse("id=x;provider=apns;cert_file=/c;environment=moon")
                .unwrap_err()
                .contains("environment")
        );
        let fcm =
            App::parse("id=com.example.android;provider=fcm;service_account=/etc/sa.json").unwrap();
        assert_eq!(
            fcm.provider,
            AppProvider::Fcm {
                service_account: "/etc/sa.json".into()
            }
        );
        assert!(App::parse("id=x;provider=fcm")
            .unwrap_err()
            .contains("service_account"));
        assert!(App::parse("id=a;provider=webhook;url=ftp://x/y")
            .unwrap_err()
            .contains("not an http"));
        assert!(
            App::parse("id=a;provider=webhook;url=http://x.example/;colour=red")
                .unwrap_err()
                .contains("unknown key 'colour'")
        );
        assert!(
            App::parse("id=a;id=b;provider=webhook;url=http://x.example/")
                .unwrap_err()
                .contains("twice")
        );
        assert!(App::parse("id=a;provider")
            .unwrap_err()
            .contains("key=value"));
    }

    #[test]
    fn apps_are_found_from_what_softphones_send() {
        let app = |s: &str| ("app", RawValue::Str(s.to_string()));
        let c = Config::from_params(&[
            app("id=org.example.phone;provider=webhook;url=http://127.0.0.1:1/a"),
            app("id=org.example.other;provider=webhook;url=http://127.0.0.1:1/b"),
        ])
        .unwrap();
        for named in [
            "org.example.phone",
            "ABCDE12345.org.example.phone.voip",
            "ABCDE12345.org.example.phone.remote&voip",
            "org.example.phone.dev",
            "org.example.phone.prod",
        ] {
            assert_eq!(
                c.app_for(Some(named)).map(|a| a.id.as_str()),
                Some("org.example.phone"),
                "{named}"
            );
        }
        assert_eq!(
            c.app_for(Some("ABCDE12345.org.example.other.voip"))
                .unwrap()
                .id,
            "org.example.other"
        );
        assert!(c.app_for(Some("com.unknown.app.voip")).is_none());
        assert!(c.app_for(None).is_none());
    }

    #[test]
    fn default_app_must_exist_and_is_the_fallback() {
        let app = |s: &str| ("app", RawValue::Str(s.to_string()));
        let c = Config::from_params(&[
            app("id=one;provider=webhook;url=http://127.0.0.1:1/a"),
            app("id=two;provider=webhook;url=http://127.0.0.1:1/b"),
            ("default_app", RawValue::Str("two".into())),
        ])
        .unwrap();
        assert_eq!(c.app_for(Some("one")).unwrap().id, "one");
        assert_eq!(c.app_for(Some("unknown")).unwrap().id, "two");
        assert_eq!(c.app_for(None).unwrap().id, "two");
        let e = Config::from_params(&[("default_app", RawValue::Str("ghost".into()))]).unwrap_err();
        assert_eq!(e.param, "default_app");
        assert!(e.problem.contains("ghost"));
        let e = Config::from_params(&[
            app("id=one;provider=webhook;url=http://127.0.0.1:1/a"),
            app("id=one;provider=webhook;url=http://127.0.0.1:1/b"),
        ])
        .unwrap_err();
        assert!(e.problem.contains("declared twice"));
    }

    #[test]
    fn a_push_service_is_supported_when_the_devices_app_can_push_its_provider() {
        let app = |s: &str| ("app", RawValue::Str(s.to_string()));
        let c = Config::from_params(&[
            app("id=com.example.android;provider=fcm;service_account=/nonexistent.json"),
            app("id=org.example.hook;provider=webhook;url=http://127.0.0.1:1/a"),
            ("default_app", RawValue::Str("com.example.android".into())),
        ])
        .unwrap();
        // The default FCM app pushes FCM devices, not APNs ones (the webhook app is not theirs).
        assert_eq!(
            c.app_serving("fcm", Some("whatever")).unwrap().id,
            "com.example.android"
        );
        assert!(c
            .app_serving("apns", Some("ABCDE12345.org.example.phone.voip"))
            .is_none());
        // A webhook app takes any provider's token.
        assert_eq!(
            c.app_serving("apns", Some("org.example.hook")).unwrap().id,
            "org.example.hook"
        );
        assert_eq!(
            c.app_serving("pushy", Some("org.example.hook")).unwrap().id,
            "org.example.hook"
        );
        // Without a default app, an app nobody declared serves nothing.
        let c = Config::from_params(&[app(
            "id=org.example.phone;provider=apns;cert_file=/nonexistent.pem",
        )])
        .unwrap();
        assert!(c
            .app_serving("apns", Some("TEAMID1234.org.example.phone.voip"))
            .is_some());
        assert!(c
            .app_serving("apns.dev", Some("org.example.phone"))
            .is_some());
        assert!(c.app_serving("fcm", Some("org.example.phone")).is_none());
        assert!(c.app_serving("apns", Some("org.other.app")).is_none());
    }

    #[test]
    fn every_declared_parameter_is_understood() {
        for param in PARAMS {
            let name = param.name.to_str().unwrap();
            let value = match param.kind {
                Kind::Int => RawValue::Int(QUEUE_SIZE_RANGE.0.max(2)),
                Kind::Str => RawValue::Str("x".to_string()),
            };
            // A value may be out of range, but the name itself must never be "unknown".
            if let Err(e) = Config::from_params(&[(name, value)]) {
                assert_ne!(e.problem, "unknown parameter", "{name}");
            }
        }
    }
}
