//! Module parameters: each declared once in `params!` below (name, Kamailio type, default, check,
//! doc line), from which the [`Config`] field, its default, its check and its row of [`PARAMS`]
//! (what the boundary exports to Kamailio) are generated. Values are collected as Kamailio hands
//! them over (`modparam("push", ...)`), then checked all at once in mod_init, so that a bad value
//! stops Kamailio with a line naming the parameter. The docs test (tests/docs.rs) checks that
//! README.md and doc/push.md list exactly these parameters.

use crate::devices::postgres::redact_url;
use crate::devices::store::{parse_db_url, DbUrl, DEFAULT_DB_URL};
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
            RawValue::Str(s) => write!(f, "\"{}\"", redact_record(&redact_url(s))),
        }
    }
}

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

/// A credential from the config (webhook secret, certificate password). Its `Debug` and
/// `Display` never show it, so no `{:?}` of a config, app or error can put it in a log line;
/// [`Secret::expose`] is the one way to read it, where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Keys of an app string whose values are credentials: shown as `<redacted>` in any message
/// that quotes the string.
const SECRET_KEYS: [&str; 3] = ["secret", "cert_password", "password"];

/// A `key=value;key=value` string with the values of [`SECRET_KEYS`] replaced, for messages.
pub fn redact_record(spec: &str) -> String {
    spec.split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if SECRET_KEYS.contains(&k.trim().to_ascii_lowercase().as_str()) => {
                format!("{k}=<redacted>")
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The webhook statuses that forget a device unless the app says otherwise (`dead_status`).
pub const DEFAULT_DEAD_STATUSES: [u16; 1] = [410];

/// `dead_status=410,404`: a comma-separated list of 4xx statuses (2xx, 408, 429 and 5xx have
/// their own meaning and are refused).
fn parse_dead_statuses(list: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        let status: u16 = item
            .parse()
            .map_err(|_| format!("dead_status '{item}' is not an HTTP status"))?;
        if !(400..500).contains(&status) || status == 408 || status == 429 {
            return Err(format!(
                "dead_status {status} is not a final 4xx status (408 and 429 are retried)"
            ));
        }
        out.push(status);
    }
    Ok(out)
}

/// How an app's pushes are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppProvider {
    /// An HTTP POST to the operator's endpoint.
    Webhook {
        url: String,
        secret: Option<Secret>,
        /// HTTP statuses of the endpoint that mean "this device's token is dead: forget it"
        /// (app key `dead_status`, default 410 only; a 404 from a wrong path or a deploy must not
        /// wipe devices).
        dead_statuses: Vec<u16>,
    },
    /// Apple Push Notification service.
    Apns {
        auth: ApnsAuth,
        /// Devices that say pn-provider=apns.dev use the sandbox whatever this says.
        sandbox: bool,
        /// VoIP (PushKit) pushes, or alert pushes.
        voip: bool,
    },
    /// Firebase Cloud Messaging HTTP v1, with a Google service account.
    Fcm {
        service_account: PathBuf,
        /// The service account's `project_id`, learned when its file is read at startup
        /// ([`Config::learn_fcm_project`]): RFC 8599's FCM `pn-param` names the app by it.
        project_id: Option<String>,
    },
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
        password: Option<Secret>,
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
    /// End-of-call pushes to pushed devices that did not join a call (app key `cancel_push`,
    /// default on).
    pub cancel_push: bool,
    /// A visible alert for a missed call (end-of-call push with reason `cancelled` or
    /// `timeout`): app key `missed_call_alert`, `{caller}` standing for the caller's name or URI.
    pub missed_call_alert: Option<String>,
    /// Message pushes carry the start of the text (app key `message_preview`, default off).
    pub message_preview: bool,
    /// Declared in `apps_file` (re-read by push.reload), not by `modparam("push", "app", ...)`.
    pub from_file: bool,
}

/// Keys every app takes, whatever its provider.
const COMMON_APP_KEYS: &[&str] = &[
    "id",
    "provider",
    "cancel_push",
    "missed_call_alert",
    "message_preview",
];

/// How many characters of a message's text a message push carries (`message_preview`).
pub const MESSAGE_PREVIEW_CHARS: usize = 120;

/// The longest `missed_call_alert` text (bytes).
const MAX_ALERT_TEXT: usize = 200;

fn parse_switch(key: &str, value: Option<String>, default: bool) -> Result<bool, String> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("1") | Some("on") | Some("yes") => Ok(true),
        Some("0") | Some("off") | Some("no") => Ok(false),
        Some(other) => Err(format!(
            "{key} '{}' is not 0 or 1",
            other.chars().take(20).collect::<String>()
        )),
    }
}

impl App {
    /// The visible missed-call alert for a call from `caller`, if the app has one.
    pub fn missed_call_text(&self, caller: &str) -> Option<String> {
        self.missed_call_alert
            .as_ref()
            .map(|text| text.replace("{caller}", caller))
    }
}

impl App {
    /// Parses `key=value;key=value`. Keys: id, provider, and the provider's own (webhook: url,
    /// secret; apns: key_file, key_id, team_id or cert_file, cert_password, environment,
    /// push_type; fcm: service_account). Files are only named here; they are read when the
    /// providers are built (at startup and on push.reload).
    pub fn parse(spec: &str) -> Result<App, String> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (n, part) in spec
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            // The part is not quoted: it may be a credential with a typo in its key.
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("part {} of the app string is not key=value", n + 1))?;
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
                let secret = take("secret").filter(|s| !s.is_empty()).map(Secret::new);
                let dead_statuses = match take("dead_status") {
                    None => DEFAULT_DEAD_STATUSES.to_vec(),
                    Some(list) => parse_dead_statuses(&list)?,
                };
                (
                    AppProvider::Webhook {
                        url,
                        secret,
                        dead_statuses,
                    },
                    &["url", "secret", "dead_status"],
                )
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
                        password: take("cert_password").map(Secret::new),
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
                        project_id: None,
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
            .find(|(k, _)| !COMMON_APP_KEYS.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key '{k}' for provider={}",
                provider.name()
            ));
        }
        let cancel_push = parse_switch("cancel_push", take("cancel_push"), true)?;
        let message_preview = parse_switch("message_preview", take("message_preview"), false)?;
        let missed_call_alert = take("missed_call_alert").filter(|t| !t.is_empty());
        if let Some(text) = &missed_call_alert {
            if text.len() > MAX_ALERT_TEXT || text.chars().any(char::is_control) {
                return Err(format!(
                    "missed_call_alert must be at most {MAX_ALERT_TEXT} bytes without control characters"
                ));
            }
        }
        Ok(App {
            id,
            provider,
            cancel_push,
            missed_call_alert,
            message_preview,
            from_file: false,
        })
    }
}

/// The kind of value a parameter takes; the boundary declares it to Kamailio with this type, so
/// Kamailio itself refuses a value of the other kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
}

/// What a parameter is when the script does not set it, written as the script would write it
/// (it goes through the parameter's own check when [`Config::default`] is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// Nothing: an optional value, or a list that starts empty.
    None,
    Int(i64),
    Str(&'static str),
}

impl DefaultValue {
    fn raw(self) -> Option<RawValue> {
        match self {
            DefaultValue::None => None,
            DefaultValue::Int(i) => Some(RawValue::Int(i)),
            DefaultValue::Str(s) => Some(RawValue::Str(s.to_string())),
        }
    }
}

/// A parameter the module accepts: one row of [`PARAMS`], generated by `params!` below from the
/// parameter's declaration, like its [`Config`] field.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// The same name NUL-terminated: Kamailio reads this very text.
    pub c_name: &'static CStr,
    pub kind: Kind,
    pub default: DefaultValue,
    /// Each `modparam` adds one entry (`app`, `ua_profile`); otherwise the last value wins.
    pub repeatable: bool,
    /// The declaration's doc comment (that of the `Config` field).
    pub doc: &'static str,
    /// Checks a value and stores it in the configuration; the error is the problem's text.
    apply: fn(&mut Config, &RawValue) -> Result<(), String>,
}

/// A parameter name as a C string, checked when the table is built (at compile time).
const fn c_name(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(name) => name,
        Err(_) => panic!("a parameter name holds a NUL byte"),
    }
}

/// Declares the module parameters. Each entry:
///
/// ```text
/// /// doc of the Config field
/// name: Int|Str, set(Int(..)|Str(..)) => field: T = parse;   // one value, the last one wins
/// name: Int|Str, maybe => field: T = parse;                 // Option<T>, None by default
/// name: Int|Str, each => field: T = parse_next;             // Vec<T>, one entry per modparam
/// ```
///
/// `parse` is a `fn(&RawValue) -> Result<T, String>` (for `each`: `fn(&RawValue, &[T]) -> ...`,
/// given the entries so far); its error is the problem's text in the startup error. From this the
/// macro builds the [`Config`] struct, its `Default` (each `set` default through `parse`) and
/// [`PARAMS`], which the boundary exports to Kamailio row by row.
macro_rules! params {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $kind:ident, $mode:ident $(($dkind:ident($dvalue:expr)))?
            => $field:ident: $ty:ty = $parse:expr;
    )*) => {
        /// The checked configuration every process of the module reads (set before fork; only its
        /// apps change afterwards, when push.reload re-reads `apps_file`). One field per module
        /// parameter, declared in `params!`.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: params!(@type $mode $ty), )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $field: params!(@default $mode $ty, $name, $parse $(, $dkind($dvalue))?), )*
                }
            }
        }

        /// Every parameter the module accepts. The boundary exports exactly this list, in this
        /// order.
        pub const PARAMS: &[Param] = &[$(
            Param {
                name: stringify!($name),
                c_name: c_name(concat!(stringify!($name), "\0").as_bytes()),
                kind: Kind::$kind,
                default: params!(@default_value $($dkind($dvalue))?),
                repeatable: params!(@repeatable $mode),
                doc: concat!($($doc, "\n"),+),
                apply: |config: &mut Config, value: &RawValue| {
                    params!(@apply $mode $ty, $parse, config.$field, value)
                },
            },
        )*];
    };

    (@type set $ty:ty) => { $ty };
    (@type maybe $ty:ty) => { Option<$ty> };
    (@type each $ty:ty) => { Vec<$ty> };

    (@default set $ty:ty, $name:ident, $parse:expr, $dkind:ident($dvalue:expr)) => {{
        let parse: fn(&RawValue) -> Result<$ty, String> = $parse;
        let value = DefaultValue::$dkind($dvalue).raw().expect("a set parameter has a default");
        parse(&value).expect(concat!("the default of ", stringify!($name), " passes its check"))
    }};
    (@default maybe $ty:ty, $name:ident, $parse:expr) => { None };
    (@default each $ty:ty, $name:ident, $parse:expr) => { Vec::new() };

    (@default_value) => { DefaultValue::None };
    (@default_value $dkind:ident($dvalue:expr)) => { DefaultValue::$dkind($dvalue) };

    (@repeatable each) => { true };
    (@repeatable $mode:ident) => { false };

    (@apply set $ty:ty, $parse:expr, $place:expr, $value:ident) => {{
        let parse: fn(&RawValue) -> Result<$ty, String> = $parse;
        $place = parse($value)?;
        Ok(())
    }};
    (@apply maybe $ty:ty, $parse:expr, $place:expr, $value:ident) => {{
        let parse: fn(&RawValue) -> Result<$ty, String> = $parse;
        $place = Some(parse($value)?);
        Ok(())
    }};
    (@apply each $ty:ty, $parse:expr, $place:expr, $value:ident) => {{
        let parse: fn(&RawValue, &[$ty]) -> Result<$ty, String> = $parse;
        let entry = parse($value, &$place)?;
        $place.push(entry);
        Ok(())
    }};
}

params! {
    /// Threads of the dispatcher's tokio runtime (network work: pushes, HTTP).
    dispatcher_threads: Int, set(Int(2)) => dispatcher_threads: usize = |v| int_in(v, THREADS_RANGE);
    /// Bytes the queue from SIP workers to the dispatcher holds before a sender is told it is full.
    queue_size: Int, set(Int(1 << 20)) => queue_size: usize = |v| int_in(v, QUEUE_SIZE_RANGE);
    /// Seconds a held call waits for a device (set on the transaction as its fr_inv timer).
    timeout: Int, set(Int(30)) => timeout: u32 = |v| int_in(v, TIMEOUT_RANGE);
    /// Calls held at once before push_suspend answers -2.
    max_pending: Int, set(Int(10_000)) => max_pending: u64 = |v| int_in(v, MAX_PENDING_RANGE);
    /// Route a held call is continued into.
    resume_route: Str, set(Str("PUSH_RESUME")) => resume_route: String = |v| {
        let route = text(v)?;
        if route.is_empty() || route.chars().any(char::is_whitespace) {
            return Err("must be the name of a route block".to_string());
        }
        Ok(route)
    };
    /// Learn devices and resume calls from usrloc's callbacks.
    auto_resume: Int, set(Int(1)) => auto_resume: bool = flag;
    /// A call whose every push failed is continued into the resume route (1) instead of answered 480 (0).
    failed_route_resume: Int, set(Int(0)) => failed_route_resume: bool = flag;
    /// The device store: an SQLite file (this node) or a PostgreSQL database (every node).
    db_url: Str, set(Str(DEFAULT_DB_URL)) => db: DbUrl = |v| {
        parse_db_url(&text(v)?).map_err(|e| e.to_string())
    };
    /// Apps pushes go through, one per `modparam("push", "app", ...)`, in declaration order.
    app: Str, each => apps: App = |v, apps| {
        let app = App::parse(&text(v)?)?;
        if apps.iter().any(|a| a.id == app.id) {
            return Err(format!("app id '{}' is declared twice", app.id));
        }
        Ok(app)
    };
    /// A file of more apps, one `app` string per line (`#` comments, blank lines), re-read by
    /// push.reload. Empty: none.
    apps_file: Str, set(Str("")) => apps_file: Option<PathBuf> = |v| {
        let path = text(v)?;
        if path.is_empty() {
            return Ok(None);
        }
        if !path.starts_with('/') {
            return Err("must be an absolute path".to_string());
        }
        Ok(Some(PathBuf::from(path)))
    };
    /// App for devices whose Contact names none (or names one that is not configured).
    default_app: Str, maybe => default_app: String = text;
    /// AORs are user@domain (1) or user (0); usrloc's own setting wins when usrloc is loaded.
    use_domain: Int, set(Int(0)) => use_domain: bool = flag;
    /// usrloc table whose contacts a late-waking device's branch is built from.
    location_table: Str, set(Str("location")) => location_table: String = |v| {
        let table = text(v)?;
        if table.is_empty() || table.contains('\0') {
            return Err("must name a usrloc table".to_string());
        }
        Ok(table)
    };
    /// Slots of the shared index of AORs with devices (8 bytes each; 3/4 usable).
    aor_index_size: Int, set(Int(1 << 20)) => aor_index_size: usize = |v| int_in(v, AOR_INDEX_RANGE);
    /// Base URL of the FCM HTTP v1 API.
    fcm_url: Str, set(Str("https://fcm.googleapis.com")) => fcm_url: String = |v| {
        let url = text(v)?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("must be an https:// (or http://) URL".to_string());
        }
        Ok(url.trim_end_matches('/').to_string())
    };
    /// User-Agent profiles naming apps' own Contact parameters, in declaration order.
    ua_profile: Str, each => profiles: crate::devices::profile::UaProfile = |v, _| {
        crate::devices::profile::UaProfile::parse(&text(v)?)
    };
    /// Binding-refresh pushes (RFC 8599): a device whose binding expires within this many seconds
    /// gets one background push so it registers again. 0: off.
    refresh_window: Int, set(Int(0)) => refresh_window: u32 = |v| int_in(v, REFRESH_WINDOW_RANGE);
    /// Devices kept per AOR, and push Contacts read per REGISTER: beyond it, the least recently
    /// registered devices give way (one request cannot fan out into many pushes).
    max_devices: Int, set(Int(10)) => max_devices: usize = |v| int_in(v, MAX_DEVICES_RANGE);
    /// Consecutive pushes of an app that fail for want of an answer (service unreachable, retries
    /// run out) before the app is marked failing and its devices are no longer pushed. 0: off.
    breaker_failures: Int, set(Int(5)) => breaker_failures: u32 = |v| int_in(v, BREAKER_FAILURES_RANGE);
    /// Seconds between the probe pushes let through to an app marked failing.
    breaker_probe_interval: Int, set(Int(10)) => breaker_probe_interval: u32 = |v| int_in(v, BREAKER_PROBE_RANGE);
    /// Cluster through Kamailio's DMQ (the dmq module loaded before push): a device's fresh
    /// registration on one node resumes the calls held for it on the others, and devices stored,
    /// changed or removed on one node are known by all at once. 0: off.
    enable_dmq: Int, set(Int(0)) => enable_dmq: bool = flag;
}

pub const THREADS_RANGE: (i64, i64) = (1, 64);
/// A pipe cannot be smaller than a page; beyond 256 MiB a queue only hides a stuck dispatcher.
pub const QUEUE_SIZE_RANGE: (i64, i64) = (64 << 10, 256 << 20);
pub const TIMEOUT_RANGE: (i64, i64) = (1, 3600);
pub const MAX_PENDING_RANGE: (i64, i64) = (1, 1_000_000);
pub const AOR_INDEX_RANGE: (i64, i64) = (1024, 1 << 27);
/// Up to a day before expiry; 0 turns binding-refresh pushes off.
pub const REFRESH_WINDOW_RANGE: (i64, i64) = (0, 86_400);
pub const MAX_DEVICES_RANGE: (i64, i64) = (1, 1000);
pub const BREAKER_FAILURES_RANGE: (i64, i64) = (0, 1_000_000);
pub const BREAKER_PROBE_RANGE: (i64, i64) = (1, 3600);

impl Config {
    /// Builds the configuration from the parameters in the order the script set them; a parameter
    /// set twice keeps its last value, as Kamailio's own scalar parameters do (a repeatable one,
    /// `app` or `ua_profile`, adds one entry each time).
    /// Checks one parameter on its own, as the script sets it (so `kamailio -c` refuses a bad
    /// value while it parses the config). Checks across parameters (`default_app` naming an
    /// app) wait for [`Config::from_params`], which mod_init runs, and which `kamailio -c` runs
    /// when it exits (the module's exit handler, src/exports.rs).
    pub fn check_param(name: &'static str, value: &RawValue) -> Result<(), ParamError> {
        Config::default().apply(name, value)
    }

    /// Sets one parameter as the script set it, checked on its own.
    fn apply(&mut self, name: &'static str, value: &RawValue) -> Result<(), ParamError> {
        let err = |problem: String| ParamError {
            param: name,
            value: value.clone(),
            problem,
        };
        let param = PARAMS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| err("unknown parameter".to_string()))?;
        (param.apply)(self, value).map_err(err)
    }

    pub fn from_params(params: &[(&'static str, RawValue)]) -> Result<Config, ParamError> {
        let mut config = Config::default();
        for (name, value) in params {
            config.apply(name, value)?;
        }
        if let Some(path) = config.apps_file.clone() {
            let value = params
                .iter()
                .rev()
                .find(|(n, _)| *n == "apps_file")
                .map(|(_, v)| v.clone())
                .unwrap_or(RawValue::Str(path.display().to_string()));
            let file_apps = crate::apps_file::read(&path).map_err(|e| ParamError {
                param: "apps_file",
                value: value.clone(),
                problem: e.to_string(),
            })?;
            config.apps =
                crate::apps_file::merge(&config.apps, file_apps).map_err(|problem| ParamError {
                    param: "apps_file",
                    value,
                    problem,
                })?;
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
                    problem: format!("no app with id '{default}' is declared with modparam(\"push\", \"app\", ...) or in apps_file"),
                });
            }
        }
        Ok(config)
    }

    /// The app a device is pushed through: the one its Contact names, else the default app.
    /// A Contact names an app by its id, or by the forms softphones send: RFC 8599's APNs
    /// `pn-param` (`TEAMID.bundle.id.voip`, `TEAMID.bundle.id.remote&voip`), Linphone's
    /// `app-id` with `.dev` / `.prod`, and RFC 8599's FCM `pn-param`, the Firebase project id
    /// (that of an fcm app's service account).
    pub fn app_for(&self, named: Option<&str>) -> Option<&App> {
        named
            .and_then(|name| app_named(&self.apps, name))
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
    /// Notes the Firebase project of the fcm app `app_id` (read from its service account at
    /// startup), so that devices whose `pn-param` is that project id are pushed through it.
    pub fn learn_fcm_project(&mut self, app_id: &str, project: &str) {
        for app in self.apps.iter_mut().filter(|a| a.id == app_id) {
            if let AppProvider::Fcm { project_id, .. } = &mut app.provider {
                *project_id = Some(project.to_string());
            }
        }
    }

    /// RFC 8599 "supported": the app a device with this `pn-provider` and `pn-param`/`app-id`
    /// would be pushed through (see [`Config::app_for`]) exists and can push that provider.
    pub fn app_serving(&self, provider: &str, named: Option<&str>) -> Option<&App> {
        self.app_for(named).filter(|a| a.provider.serves(provider))
    }
}

/// The app of `apps` a Contact's `pn-param` / `app-id` value names (see [`Config::app_for`]),
/// without falling back to the default app.
pub fn app_named<'a>(apps: &'a [App], name: &str) -> Option<&'a App> {
    app_candidates(name)
        .find_map(|id| apps.iter().find(|a| a.id == id))
        .or_else(|| {
            apps.iter().find(|a| {
                matches!(&a.provider, AppProvider::Fcm { project_id: Some(p), .. } if p == name)
            })
        })
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

/// An int parameter within `min..=max`, as the field's type (every range fits it).
fn int_in<T: TryFrom<i64>>(value: &RawValue, (min, max): (i64, i64)) -> Result<T, String> {
    match value {
        RawValue::Int(i) if (min..=max).contains(i) => {
            T::try_from(*i).map_err(|_| format!("must be between {min} and {max}"))
        }
        RawValue::Int(_) => Err(format!("must be between {min} and {max}")),
        RawValue::Str(_) => Err("must be a number".to_string()),
    }
}

/// A 0/1 switch.
fn flag(value: &RawValue) -> Result<bool, String> {
    Ok(int_in::<i64>(value, (0, 1))? == 1)
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
    fn a_database_password_never_shows_in_a_parameter_error() {
        for url in [
            "postgres://kam:Hush-42@db/push?sslmode=require",
            "postgres://kam:Hush-42@db:99999/push",
            "mysql://kam:Hush-42@db/push",
        ] {
            let e = Config::check_param("db_url", &RawValue::Str(url.into()))
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("Hush-42") && e.contains("kam:<redacted>@db"),
                "{e}"
            );
        }
        let ok = Config::from_params(&[(
            "db_url",
            RawValue::Str("postgres://kam:Hush-42@db/push".into()),
        )]);
        let c = ok.unwrap();
        assert!(!format!("{c:?}").contains("Hush-42"));
        assert_eq!(c.db.to_string(), "postgres://kam:<redacted>@db:5432/push");
    }

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
    fn end_of_call_and_message_settings_are_per_app() {
        let plain = App::parse("id=a;provider=webhook;url=http://x.example/").unwrap();
        assert!(plain.cancel_push && !plain.message_preview && plain.missed_call_alert.is_none());
        let app = App::parse(
            "id=a;provider=webhook;url=http://x.example/;cancel_push=0;message_preview=1;missed_call_alert=Missed call from {caller}",
        )
        .unwrap();
        assert!(!app.cancel_push && app.message_preview);
        assert_eq!(
            app.missed_call_text("Bob").as_deref(),
            Some("Missed call from Bob")
        );
        for bad in ["cancel_push=maybe", "message_preview=2"] {
            let err = App::parse(&format!(
                "id=a;provider=webhook;url=http://x.example/;{bad}"
            ))
            .unwrap_err();
            assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
        }
        let long = format!(
            "id=a;provider=fcm;service_account=/x.json;missed_call_alert={}",
            "x".repeat(300)
        );
        assert!(App::parse(&long).unwrap_err().contains("missed_call_alert"));
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
                secret: Some(Secret::new("k1")),
                dead_statuses: vec![410],
            }
        );
        assert!(App::parse("provider=webhook;url=http://x.example/")
            .unwrap_err()
            .contains("missing id"));
        let both = App::parse("id=a;provider=webhook;url=http://x.example/;dead_status=410, 404");
        assert!(
            matches!(both.unwrap().provider, AppProvider::Webhook { dead_statuses, .. } if dead_statuses == [410, 404])
        );
        for bad in [
            "dead_status=500",
            "dead_status=429",
            "dead_status=gone",
            "dead_status=",
        ] {
            let err = App::parse(&format!(
                "id=a;provider=webhook;url=http://x.example/;{bad}"
            ))
            .unwrap_err();
            assert!(err.contains("dead_status"), "{bad}: {err}");
        }
        // Credentials never appear in what a bad app string is reported with.
        let err = ParamError {
            param: "app",
            value: RawValue::Str(
                "id=a;provider=apns;cert_file=/c.p12;cert_password=hunter2;secret=s3".into(),
            ),
            problem: "x".into(),
        }
        .to_string();
        assert!(
            !err.contains("hunter2")
                && !err.contains("s3;")
                && err.contains("cert_password=<redacted>"),
            "{err}"
        );
        let err =
            App::parse("id=a;provider=webhook;url=http://x.example/;secret:hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
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
                service_account: "/etc/sa.json".into(),
                project_id: None,
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
    fn one_parameter_is_checked_on_its_own() {
        // What kamailio -c can check while it parses: each value alone.
        let bad = Config::check_param(
            "app",
            &RawValue::Str("id=a;provider=webhook;url=http://x.example/;colour=red".into()),
        )
        .unwrap_err();
        assert!(bad.problem.contains("unknown key 'colour'"), "{bad}");
        assert!(Config::check_param("dispatcher_threads", &RawValue::Int(0)).is_err());
        assert!(Config::check_param("no_such_thing", &RawValue::Int(1)).is_err());
        // An app named before it is declared: only the whole config can tell.
        assert!(Config::check_param("default_app", &RawValue::Str("later".into())).is_ok());
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
    fn the_table_declares_each_parameter_once_with_its_default() {
        let mut names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PARAMS.len(), "a parameter is declared twice");
        for param in PARAMS {
            assert_eq!(param.c_name.to_str(), Ok(param.name));
            assert!(
                !param.doc.trim().is_empty(),
                "{} has no doc line",
                param.name
            );
            // A default is the value the script could have written: setting it changes nothing.
            if let Some(value) = param.default.raw() {
                assert_eq!(
                    Config::from_params(&[(param.name, value)]),
                    Ok(Config::default()),
                    "{}",
                    param.name
                );
            }
            // The other kind of value is refused, naming the parameter (Kamailio refuses it
            // first; the check stays for callers that are not Kamailio).
            let wrong = match param.kind {
                Kind::Int => RawValue::Str("x".to_string()),
                Kind::Str => RawValue::Int(1),
            };
            let e = Config::from_params(&[(param.name, wrong)]).unwrap_err();
            assert_eq!(e.param, param.name);
            assert!(
                e.problem.starts_with("must be a"),
                "{}: {}",
                param.name,
                e.problem
            );
        }
        let e = Config::from_params(&[("no_such_thing", RawValue::Int(1))]).unwrap_err();
        assert_eq!(e.problem, "unknown parameter");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.dispatcher_threads, 2);
        assert_eq!(c.queue_size, 1 << 20);
        assert_eq!(c.timeout, 30);
        assert_eq!(c.max_pending, 10_000);
        assert_eq!(c.resume_route, "PUSH_RESUME");
        assert!(c.auto_resume);
        assert_eq!(
            c.db,
            DbUrl::Sqlite(PathBuf::from("/var/lib/kamailio/push.sqlite"))
        );
        assert!(c.apps.is_empty() && c.profiles.is_empty());
        assert_eq!(c.default_app, None);
        assert!(!c.use_domain);
        assert_eq!(c.location_table, "location");
        assert_eq!(c.aor_index_size, 1 << 20);
        assert_eq!(c.fcm_url, "https://fcm.googleapis.com");
        assert_eq!(c.refresh_window, 0);
        assert_eq!(c.max_devices, 10);
        let repeatable: Vec<&str> = PARAMS
            .iter()
            .filter(|p| p.repeatable)
            .map(|p| p.name)
            .collect();
        assert_eq!(repeatable, ["app", "ua_profile"]);
    }

    #[test]
    fn repeated_parameters_add_entries_and_keep_their_order() {
        let str = |name: &'static str, v: &str| (name, RawValue::Str(v.to_string()));
        let c = Config::from_params(&[
            str("app", "id=a;provider=webhook;url=http://127.0.0.1:1/a"),
            str("ua_profile", "name=one;regex=^One;token=t1"),
            str("app", "id=b;provider=webhook;url=http://127.0.0.1:1/b"),
            str("ua_profile", "name=two;regex=^Two;token=t2"),
            str("default_app", " b "),
            ("auto_resume", RawValue::Int(0)),
        ])
        .unwrap();
        let apps: Vec<&str> = c.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(apps, ["a", "b"]);
        let profiles: Vec<&str> = c.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(profiles, ["one", "two"]);
        assert_eq!(c.default_app.as_deref(), Some("b"));
        assert!(!c.auto_resume);
        let e = Config::from_params(&[("use_domain", RawValue::Int(2))]).unwrap_err();
        assert_eq!(
            (e.param, e.problem.as_str()),
            ("use_domain", "must be between 0 and 1")
        );
    }

    #[test]
    fn max_devices_is_bounded() {
        for bad in [0, 1001, -1] {
            let e = Config::from_params(&[("max_devices", RawValue::Int(bad))]).unwrap_err();
            assert_eq!(
                (e.param, e.problem.as_str()),
                ("max_devices", "must be between 1 and 1000")
            );
        }
        let c = Config::from_params(&[("max_devices", RawValue::Int(1000))]).unwrap();
        assert_eq!(c.max_devices, 1000);
    }

    /// RFC 8599: the FCM pn-param is the Firebase project id, which names the fcm app whose
    /// service account belongs to that project (as well as the app's own id).
    #[test]
    fn fcm_pn_param_names_the_app_by_its_project_id() {
        let str = |name: &'static str, v: &str| (name, RawValue::Str(v.to_string()));
        let mut c = Config::from_params(&[
            str("app", "id=org.example.phone;provider=apns;cert_file=/c.pem"),
            str(
                "app",
                "id=com.example.phone.android;provider=fcm;service_account=/sa.json",
            ),
        ])
        .unwrap();
        // Not known before the service account is read.
        assert!(c.app_serving("fcm", Some("push-test-project")).is_none());
        c.learn_fcm_project("com.example.phone.android", "push-test-project");
        let id = |a: Option<&App>| a.map(|a| a.id.clone());
        assert_eq!(
            id(c.app_serving("fcm", Some("push-test-project"))).as_deref(),
            Some("com.example.phone.android")
        );
        assert_eq!(
            id(c.app_serving("fcm", Some("com.example.phone.android"))).as_deref(),
            Some("com.example.phone.android")
        );
        // Other projects name no app.
        assert!(c.app_for(Some("other-project")).is_none());
        assert!(c.app_serving("apns", Some("push-test-project")).is_none());
        // Only fcm apps learn a project.
        c.learn_fcm_project("org.example.phone", "x");
        assert!(c.app_for(Some("x")).is_none());
    }
}
