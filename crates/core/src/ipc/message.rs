//! The messages carried from Kamailio's processes to the dispatcher, and its answers.

use crate::devices::contact::PushBinding;
use serde::{Deserialize, Serialize};

/// A transaction as tm identifies it: (hash_index, label).
pub type CallKey = (u32, u32);

/// A message for the dispatcher.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToDispatcher {
    /// A question; the answer goes to the abstract socket `reply_to`.
    Ask {
        reply_to: String,
        question: Question,
    },
    /// push_suspend held this call: push its AOR's devices.
    Held(HeldCall),
    /// A binding changed (usrloc callback or push_register).
    Contact(ContactEvent),
    /// Something happened to a held transaction (tm callback).
    Tm(TmEvent),
    /// Continue the calls held for this AOR (push_resume in an onreply_route, sent once the
    /// REGISTER's reply has been relayed); nobody waits for an answer.
    Resume { aor: String },
    /// Another node of the cluster says (through DMQ) that a device registered there.
    Cluster(crate::ipc::cluster::ClusterMessage),
}

/// What push_suspend held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeldKind {
    /// An INVITE: a call push (APNs: VoIP), and end-of-call pushes when it ends.
    #[default]
    Call,
    /// A MESSAGE: a message push (never a call push), one per device while one is outstanding.
    Message,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCall {
    pub key: CallKey,
    pub kind: HeldKind,
    pub aor: String,
    pub call_id: String,
    pub caller_uri: String,
    pub caller_name: Option<String>,
    /// Seconds the call may wait (its fr_inv timer).
    pub timeout: u32,
    /// CLOCK_MONOTONIC (the same clock in every process) when push_suspend held the call, in ns.
    pub held_at_ns: u64,
    /// A MESSAGE's text (text/plain bodies only, bounded): the preview of apps that want one.
    pub text: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContactChange {
    /// Registered or refreshed (a 2xx to REGISTER is on its way).
    Registered,
    /// De-registered (Expires: 0).
    Removed,
    /// `Contact: *`: every binding of the AOR removed.
    RemovedAll,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEvent {
    pub change: ContactChange,
    pub aor: String,
    /// The Contact URI (with its parameters).
    pub contact: String,
    pub instance: Option<String>,
    pub user_agent: Option<String>,
    /// The push binding the Contact carries (None: no push parameters).
    pub binding: Option<PushBinding>,
    /// Resume the calls held for this device (usrloc path); push_register leaves that to
    /// push_resume().
    pub resume: bool,
    /// When the binding expires (Unix seconds), if known: binding-refresh pushes go out before.
    pub expires_at: Option<i64>,
    /// The binding was made by a REGISTER this node received (a request route's save()), not
    /// replicated from another node (dmq_usrloc) nor written by a timer: only such a binding is
    /// news for the other nodes of a cluster.
    #[serde(default)]
    pub local: bool,
    /// The binding was applied outside any request route or while routing a KDMQ request: a
    /// replica from another node (dmq_usrloc, in a DMQ worker), or a write by a timer or an RPC.
    /// With `enable_dmq`, such a binding resumes nothing (the node that received the REGISTER
    /// says so itself, after its 200 OK: a replica may arrive before that 200 OK is out).
    #[serde(default)]
    pub replica: bool,
    /// usrloc inserted the binding (it was not in the location table: a phone whose binding
    /// expired while it slept, or a new one), rather than updating an existing one.
    #[serde(default)]
    pub inserted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TmChange {
    /// The caller's CANCEL arrived.
    Cancelled,
    /// A final response went out (the call is over for the module).
    Replied(u16),
    /// tm destroyed the transaction.
    Destroyed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmEvent {
    pub key: CallKey,
    pub change: TmChange,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Question {
    /// The dispatcher's own state, for `push.stats`.
    Status,
    /// Held calls, of one AOR or all, oldest first: at most `limit` from the `offset`-th on.
    Pending {
        aor: Option<String>,
        offset: u32,
        limit: u32,
    },
    /// Devices stored for an AOR, or (no AOR) every stored device by AOR then device: at most
    /// `limit` from the `offset`-th on.
    Devices {
        aor: Option<String>,
        offset: u32,
        limit: u32,
    },
    /// Add or replace a device of an AOR (push.device_add), checked as a REGISTER's Contact is.
    DeviceAdd(crate::ipc::args::DeviceAdd),
    /// Continue every call held for this AOR (push_resume); answers how many.
    Resume { aor: String },
    /// The configured apps and how they fare.
    Apps,
    /// Re-read every app's credential files.
    Reload,
    /// Forget the devices of an AOR (all, or the one whose id, token or shortened id matches).
    Remove { aor: String, device: Option<String> },
    /// Push every device of an AOR now (a test push) and report each provider's answer.
    Send { aor: String },
    /// Kamailio shuts down (asked by its main process before it stops the others): every call
    /// still waiting is answered 503 now; answers how many.
    Shutdown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Status(DispatcherStatus),
    /// One page of held calls: `total` match, `calls` start at the `offset`-th.
    Pending {
        total: u32,
        offset: u32,
        calls: Vec<PendingCall>,
    },
    /// One page of devices: `total` match, `devices` start at the `offset`-th.
    Devices {
        total: u64,
        offset: u32,
        devices: Vec<DeviceView>,
    },
    /// push.device_add stored the device: how (`stored`, `replaced`, `unchanged`), and the
    /// devices of the AOR that gave way to it (max_devices), shown as in logs.
    DeviceAdded {
        device: DeviceView,
        result: String,
        evicted: Vec<String>,
    },
    Resumed(u32),
    Apps(Vec<AppView>),
    /// Per app: what push.reload did with it.
    Reloaded(Vec<AppReload>),
    Removed(u32),
    /// Held calls answered because Kamailio shuts down.
    Ended(u32),
    /// Per device: its shortened id, the app and the provider's answer.
    Sent(Vec<(String, String, String)>),
    Error(String),
}

/// What push.reload did with one app (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReload {
    pub id: String,
    /// `reloaded` (same definition, credential files read again), `added`, `changed` or
    /// `removed` (by the apps file).
    pub change: String,
    /// Why the credentials could not be read again (the old ones are kept); empty when they were.
    pub error: String,
}

/// An app as `push.apps` shows it (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    pub id: String,
    pub provider: String,
    pub environment: String,
    pub health: String,
}

/// What the dispatcher says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherStatus {
    pub pid: i32,
    pub uptime_ms: u64,
    /// Messages queued and not yet read, as the dispatcher sees it when answering.
    pub queue_depth: i64,
    /// Capacity of the queue in bytes.
    pub queue_size: usize,
    pub runtime_threads: usize,
    /// Messages the dispatcher has read since it started.
    pub messages_handled: u64,
    /// The device store.
    pub store: StoreStatus,
}

/// What push.stats says of the device store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// `db_url`, its password redacted.
    pub url: String,
    /// SQLite: open / not open; PostgreSQL: connecting / connected / unreachable.
    pub state: String,
    /// PostgreSQL: writes waiting for the database.
    pub queued: u64,
    /// PostgreSQL: writes dropped because too many were waiting.
    pub dropped: u64,
    /// PostgreSQL: writes made in the database since start.
    pub written: u64,
}

/// A held call as `push.pending` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    pub aor: String,
    pub call_id: String,
    /// The caller's From URI, bounded and escaped (text from outside).
    pub caller: String,
    pub age_ms: u64,
    /// Unix milliseconds when the call was held.
    pub held_at_ms: i64,
    /// Unix milliseconds when it is ended (480) if no device registers.
    pub deadline_ms: i64,
    pub devices_pushed: u32,
    pub state: String,
    /// Each device pushed for the call and where its push stands.
    pub devices: Vec<PendingDevice>,
}

/// One device of a held call, as push.pending shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDevice {
    /// Its id as logs show it (an instance, or `token:` and the shortened token).
    pub device: String,
    /// `sending`, `retrying (attempt n: why)`, `sent (status)`, `failed (why)`, `covered by ...`.
    pub push: String,
}

/// A device as `push.devices` shows it (token shortened).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub aor: String,
    pub device_id: String,
    pub provider: String,
    pub token: String,
    pub app: String,
    pub user_agent: String,
    /// Unix seconds.
    pub updated_at: i64,
}
