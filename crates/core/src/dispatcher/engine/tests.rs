//! The engine's state machine, driven as `dispatcher::run` drives it: messages in through
//! [`Engine::handle`], push outcomes back through the main-thread channel into
//! [`Engine::push_done`], [`Engine::tick`] for the periodic duties. The host is a fake that
//! records what it was asked (and can refuse); pushes go to a real local HTTP server (a webhook
//! app) on a real runtime; tests where time matters run on a paused tokio clock, which is the
//! engine's clock.

use super::*;
use crate::calls::{CallEnd, GRACE};
use crate::config::{App, AppProvider};
use crate::devices::contact::PushBinding;
use crate::devices::index::AorIndex;
use crate::devices::store::{Device, Store};
use crate::ipc::cluster::{ClusterMessage, News};
use crate::ipc::message::{
    Answer, ContactChange, ContactEvent, HeldCall, HeldKind, PendingCall, Question, TmChange,
    TmEvent,
};
use crate::shared::{Counters, Shared};
use crossbeam_channel::Receiver;
use std::cell::{Cell, RefCell};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;
use testkit::push_server::{PushServer, Request, Script};

const AOR: &str = "alice";
const WAIT: Duration = Duration::from_secs(10);

/// A host that records what the engine asks of it.
#[derive(Default)]
struct FakeHost {
    /// continue_call: the key and `failed`.
    continued: RefCell<Vec<(CallKey, bool)>>,
    /// continue_call's `relay` (the node to relay to), per call continued.
    relays: RefCell<Vec<Option<String>>>,
    appended: RefCell<Vec<CallKey>>,
    /// end_call: the key and why.
    ended: RefCell<Vec<(CallKey, CallEnd)>>,
    /// continue_call fails (tm no longer holds the transaction).
    refuse: Cell<bool>,
    /// What append_branches answers.
    branches: Cell<u32>,
    /// The metric updates exported.
    metrics: RefCell<Vec<crate::metrics::Update>>,
    /// Messages sent to the other nodes of the cluster.
    broadcast: RefCell<Vec<ClusterMessage>>,
}

impl Host for FakeHost {
    fn tick(&self) {}

    fn continue_call(&self, key: CallKey, failed: bool, relay: Option<&str>) -> Result<(), String> {
        self.continued.borrow_mut().push((key, failed));
        self.relays.borrow_mut().push(relay.map(String::from));
        if self.refuse.get() {
            return Err("no such transaction".into());
        }
        Ok(())
    }

    fn end_call(&self, key: CallKey, why: CallEnd) -> Result<(), String> {
        self.ended.borrow_mut().push((key, why));
        if self.refuse.get() {
            return Err("no such transaction".into());
        }
        Ok(())
    }

    fn append_branches(&self, key: CallKey) -> Result<u32, String> {
        self.appended.borrow_mut().push(key);
        Ok(self.branches.get())
    }

    fn export_metrics(&self, updates: &[crate::metrics::Update]) {
        self.metrics.borrow_mut().extend_from_slice(updates);
    }

    fn cluster_broadcast(&self, message: &ClusterMessage) -> Result<(), String> {
        self.broadcast.borrow_mut().push(message.clone());
        Ok(())
    }
}

/// An engine with one webhook app ("app", the default app) pushing to a local server, its store
/// in a fresh directory, and a runtime of its own for the pushes.
struct Rig {
    engine: Engine,
    host: FakeHost,
    jobs: Receiver<MainJob>,
    server: PushServer,
    shared: &'static Shared,
    ctx: Arc<Context>,
    dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

fn temp_dir() -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "push-engine-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl Rig {
    fn new(script: Box<Script>, configure: impl FnOnce(&mut Config)) -> Rig {
        let server = PushServer::start(script, None);
        let dir = temp_dir();
        let spec = format!("id=app;provider=webhook;url={}", server.url());
        let mut config = Config {
            db: crate::devices::store::DbUrl::Sqlite(dir.join("push.db")),
            apps: vec![App::parse(&spec).unwrap()],
            default_app: Some("app".into()),
            ..Config::default()
        };
        configure(&mut config);
        let shared: &'static Shared = Box::leak(Box::default());
        let (main, jobs) = crossbeam_channel::unbounded();
        let ctx = Arc::new(Context {
            config,
            shared,
            index: AorIndex::create(1024).unwrap(),
            queue_size: 1 << 16,
            started: Instant::now(),
            messages_handled: AtomicU64::new(0),
            main: main.clone(),
            apps_board: None,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let engine = Engine::new(ctx.clone(), runtime.handle().clone(), main);
        Rig {
            engine,
            host: FakeHost::default(),
            jobs,
            server,
            shared,
            ctx,
            dir,
            runtime: Some(runtime),
        }
    }

    /// Every push answered 200 at once.
    fn ok() -> Rig {
        Rig::new(Box::new(|_| (200, Duration::ZERO)), |_| {})
    }

    fn answering(status: u16) -> Rig {
        Rig::new(Box::new(move |_| (status, Duration::ZERO)), |_| {})
    }

    fn handle(&mut self, message: ToDispatcher) {
        self.engine.handle(message, &self.host);
    }

    /// The device registers (usrloc): `token` for pushes, `instance` if it sends one.
    fn register(&mut self, token: &str, instance: Option<&str>) {
        self.contact(ContactChange::Registered, token, instance);
    }

    fn contact(&mut self, change: ContactChange, token: &str, instance: Option<&str>) {
        self.handle(ToDispatcher::Contact(fcm_contact(
            change, token, instance, 5060,
        )));
    }

    /// push_suspend holds a call to AOR (and counts it, as push_suspend does).
    fn hold(&mut self, key: CallKey) {
        self.shared.held_now.fetch_add(1, Ordering::Relaxed);
        self.handle(ToDispatcher::Held(HeldCall {
            key,
            kind: HeldKind::Call,
            aor: AOR.into(),
            call_id: format!("call-{}", key.1),
            caller_uri: "sip:bob@example.com".into(),
            caller_name: Some("Bob".into()),
            timeout: 30,
            held_at_ns: crate::latency::monotonic_ns(),
            text: None,
        }));
    }

    /// push_suspend holds a MESSAGE to AOR with this text.
    fn hold_message(&mut self, key: CallKey, text: &str) {
        self.shared.held_now.fetch_add(1, Ordering::Relaxed);
        self.handle(ToDispatcher::Held(HeldCall {
            key,
            kind: HeldKind::Message,
            aor: AOR.into(),
            call_id: format!("msg-{}", key.1),
            caller_uri: "sip:bob@example.com".into(),
            caller_name: None,
            timeout: 30,
            held_at_ns: crate::latency::monotonic_ns(),
            text: Some(text.into()),
        }));
    }

    fn tm(&mut self, key: CallKey, change: TmChange) {
        self.handle(ToDispatcher::Tm(TmEvent { key, change }));
    }

    /// Waits for `n` finished pushes and hands each to the engine, as the main loop does;
    /// returns their outcomes.
    fn pushes_done(&mut self, n: usize) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while outcomes.len() < n {
            match self.jobs.recv_timeout(WAIT) {
                Ok(MainJob::PushDone(done)) => {
                    outcomes.push(done.outcome.clone());
                    self.engine.push_done(done, &self.host);
                }
                Ok(MainJob::PushRetrying {
                    key,
                    device_id,
                    attempts,
                    error,
                }) => self.engine.push_retrying(key, &device_id, attempts, &error),
                Ok(_) => {}
                Err(e) => panic!("{} of {n} pushes finished: {e}", outcomes.len()),
            }
        }
        outcomes
    }

    /// The usual start: the device registers, a call (1, 1) is held and its push has gone out.
    fn call_pushed(&mut self, token: &str, instance: Option<&str>) {
        self.register(token, instance);
        self.hold((1, 1));
        self.pushes_done(1);
    }

    /// The server got exactly `n` requests (waiting for them, then a little more for extra ones).
    fn requests(&self, n: usize) -> Vec<Request> {
        self.server.wait_for(n, WAIT);
        std::thread::sleep(Duration::from_millis(200));
        let got = self.server.requests();
        assert_eq!(got.len(), n, "push requests: {got:#?}");
        got
    }

    fn count(&self, counter: fn(&Counters) -> &AtomicU64) -> u64 {
        counter(&self.shared.counters).load(Ordering::Relaxed)
    }

    fn held_now(&self) -> i64 {
        self.shared.held_now.load(Ordering::Relaxed)
    }

    fn continued(&self) -> Vec<(CallKey, bool)> {
        self.host.continued.borrow().clone()
    }

    fn ended(&self) -> Vec<(CallKey, CallEnd)> {
        self.host.ended.borrow().clone()
    }

    /// Asks as kamcmd does: the answer comes to an abstract socket.
    fn ask(&mut self, question: Question) -> Answer {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "push-engine-test/{}/{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        self.handle(ToDispatcher::Ask {
            reply_to: name,
            question,
        });
        let mut buf = vec![0u8; 1 << 16];
        let n = socket.recv(&mut buf).expect("no answer");
        postcard::from_bytes(&buf[..n]).unwrap()
    }

    fn pending(&mut self) -> Vec<PendingCall> {
        match self.ask(Question::Pending {
            aor: None,
            offset: 0,
            limit: 1000,
        }) {
            Answer::Pending { calls, .. } => calls,
            other => panic!("{other:?}"),
        }
    }

    /// What this node told the other nodes of the cluster so far.
    fn told(&self) -> Vec<News> {
        self.host
            .broadcast
            .borrow()
            .iter()
            .map(|m| m.news.clone())
            .collect()
    }

    /// The tokens the store holds for AOR.
    fn stored_tokens(&self) -> Vec<String> {
        // The engine batches its writes until its next tick.
        self.engine.flush_store();
        let store = Store::open_reader(&self.ctx.config.db.sqlite_path().unwrap()).unwrap();
        let devices = store.devices(AOR).unwrap();
        devices.into_iter().map(|d| d.prid).collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Allowed inside a test's own runtime, where dropping a runtime is not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn held_call_is_pushed_then_resumed_once() {
    let mut rig = Rig::ok();
    rig.register("tokA", None);
    rig.hold((1, 1));
    let push = rig.requests(1)[0].json();
    assert_eq!(push["type"], "call");
    assert_eq!(push["call_id"], "call-1");
    assert_eq!(push["token"], "tokA");
    assert_eq!(push["callee_aor"], AOR);
    assert_eq!(push["caller_uri"], "sip:bob@example.com");
    assert_eq!(push["app_id"], "app");
    assert!(matches!(rig.pushes_done(1)[..], [Outcome::Sent { .. }]));
    // Pushed, not resumed: the device has not registered yet.
    assert!(rig.continued().is_empty());
    assert_eq!(rig.pending()[0].state, "waiting");
    assert_eq!(rig.count(|c| &c.pushes_sent), 1);

    rig.register("tokA", None);
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.count(|c| &c.resumed), 1);
    assert_eq!(rig.pending()[0].state, "resumed");

    // The call is answered: tm is done with it.
    rig.tm((1, 1), TmChange::Replied(200));
    assert!(rig.pending().is_empty());
    assert_eq!(rig.held_now(), 0);
    assert_eq!(rig.count(|c| &c.timed_out) + rig.count(|c| &c.cancelled), 0);
    rig.register("tokA", None);
    assert_eq!(rig.continued().len(), 1);
}

#[test]
fn same_device_registering_twice_resumes_once() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", Some("<urn:uuid:a>"));
    // The REGISTER after the challenge, then one more (a second binding refresh).
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.register("tokA", Some("<urn:uuid:a>"));
    // push_resume from the script for the same registration.
    rig.handle(ToDispatcher::Resume { aor: AOR.into() });
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.count(|c| &c.resumed), 1);
    // The second REGISTER only offered tm the device as a branch of the ringing call.
    assert_eq!(*rig.host.appended.borrow(), vec![(1, 1)]);
    assert_eq!(rig.stored_tokens(), vec!["tokA"]);
}

#[test]
fn late_second_device_joins_the_ringing_call() {
    let mut rig = Rig::ok();
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.register("tokB", Some("<urn:uuid:b>"));
    rig.hold((1, 1));
    let mut tokens: Vec<String> = rig
        .requests(2)
        .iter()
        .map(|r| r.json()["token"].as_str().unwrap().to_string())
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["tokA", "tokB"]);
    rig.pushes_done(2);

    rig.host.branches.set(1);
    rig.register("tokA", Some("<urn:uuid:a>"));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert!(rig.host.appended.borrow().is_empty());
    rig.register("tokB", Some("<urn:uuid:b>"));
    assert_eq!(*rig.host.appended.borrow(), vec![(1, 1)]);
    assert_eq!(rig.continued().len(), 1, "the call was resumed twice");
}

#[test]
fn every_push_failing_fails_the_call_for_good() {
    let mut rig = Rig::answering(400);
    rig.register("tokA", None);
    rig.register("tokB", None);
    rig.hold((1, 1));
    rig.requests(2);
    rig.pushes_done(1);
    assert!(rig.ended().is_empty(), "failed while a push was out");
    rig.pushes_done(1);
    // Answered 480 by the module (RFC 8599), not continued into the resume route.
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::Failed)]);
    assert!(rig.continued().is_empty());
    assert_eq!(rig.count(|c| &c.pushes_failed), 2);
    assert_eq!(rig.pending()[0].state, "failed");
    match rig.ask(Question::Apps) {
        Answer::Apps(apps) => assert_eq!(apps[0].health, "rejected (400 {})"),
        other => panic!("{other:?}"),
    }
    // A device registering now does not resume the failed call.
    rig.register("tokA", None);
    assert!(rig.continued().is_empty());
    assert_eq!(rig.ended().len(), 1);
    // Refused is not dead: the devices are kept.
    assert_eq!(rig.stored_tokens().len(), 2);
}

#[test]
fn call_no_device_can_be_pushed_for_fails_at_once() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.default_app = None
    });
    // No device at all.
    rig.hold((1, 1));
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::Failed)]);
    // A device whose app is not configured.
    rig.handle(ToDispatcher::Contact(ContactEvent {
        change: ContactChange::Registered,
        aor: AOR.into(),
        contact: "sip:alice@10.0.0.1".into(),
        instance: None,
        user_agent: None,
        binding: Some(PushBinding {
            provider: "apns".into(),
            prid: "tokA".into(),
            param: Some("TEAM123456.com.example.other.voip".into()),
            silent: false,
            timeout: None,
        }),
        resume: true,
        expires_at: None,
        local: false,
        replica: false,
        inserted: false,
    }));
    rig.hold((1, 2));
    assert_eq!(
        rig.ended(),
        vec![((1, 1), CallEnd::Failed), ((1, 2), CallEnd::Failed)]
    );
    assert!(rig.continued().is_empty());
    assert_eq!(rig.count(|c| &c.pushes_failed), 1);
    rig.requests(0);
}

#[test]
fn dead_token_forgets_the_device() {
    let mut rig = Rig::answering(410);
    rig.register("tokA", None);
    assert!(rig.ctx.index.contains(AOR));
    rig.hold((1, 1));
    assert!(matches!(
        rig.pushes_done(1)[..],
        [Outcome::TokenDead { status: 410, .. }]
    ));
    assert!(rig.stored_tokens().is_empty());
    assert!(!rig.ctx.index.contains(AOR));
    assert_eq!(rig.count(|c| &c.devices_removed), 1);
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::Failed)]);
}

#[test]
fn failed_route_resume_continues_a_failed_call_into_the_resume_route() {
    let mut rig = Rig::new(Box::new(|_| (410, Duration::ZERO)), |c| {
        c.failed_route_resume = true
    });
    rig.register("tokA", None);
    rig.hold((1, 1));
    rig.pushes_done(1);
    assert_eq!(rig.continued(), vec![((1, 1), true)]);
    assert!(rig.ended().is_empty());
}

#[test]
fn replaced_token_is_stored_and_used() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", Some("<urn:uuid:a>"));
    // The app got a new token: the same instance registers with it, and that resumes the call.
    rig.register("tokB", Some("<urn:uuid:a>"));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.stored_tokens(), vec!["tokB"]);
    rig.tm((1, 1), TmChange::Replied(200));
    // The next call pushes the new token.
    rig.hold((1, 2));
    let pushes = rig.requests(2);
    assert_eq!(pushes[0].json()["token"], "tokA");
    assert_eq!(pushes[1].json()["token"], "tokB");
}

#[test]
fn cancelled_call_is_forgotten_and_not_resumed() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", None);
    rig.tm((1, 1), TmChange::Cancelled);
    assert_eq!(rig.count(|c| &c.cancelled), 1);
    assert_eq!(rig.held_now(), 0);
    assert!(rig.pending().is_empty());
    rig.register("tokA", None);
    assert!(rig.continued().is_empty());
    // tm's later reply and destroy for it count nothing more.
    rig.tm((1, 1), TmChange::Replied(487));
    rig.tm((1, 1), TmChange::Destroyed);
    assert_eq!(rig.count(|c| &c.cancelled), 1);
    assert_eq!(rig.count(|c| &c.timed_out), 0);
    assert_eq!(rig.held_now(), 0);
}

#[test]
fn tm_ending_a_call_stops_its_pushes() {
    // The push service fails: the push retries (100 ms, 200 ms, 400 ms...) until the deadline.
    // The device never got a push: no end-of-call push either.
    let mut rig = Rig::answering(503);
    rig.register("tokA", None);
    rig.hold((1, 1));
    rig.server.wait_for(2, WAIT);
    rig.tm((1, 1), TmChange::Replied(408));
    assert_eq!(rig.count(|c| &c.timed_out), 1);
    assert_eq!(rig.held_now(), 0);
    let sent = rig.server.requests().len();
    std::thread::sleep(Duration::from_millis(1500));
    // At most the one on the wire when the call ended.
    assert!(rig.server.requests().len() <= sent + 1);
    // (Its retry notes, sent while it ran, are no report.)
    assert!(
        !rig.jobs
            .try_iter()
            .any(|job| matches!(job, MainJob::PushDone(_))),
        "the stopped push reported"
    );
    // A Held read after tm ended the call is dropped.
    rig.hold((1, 1));
    assert_eq!(rig.held_now(), 0);
    assert!(rig.pending().is_empty());
}

#[test]
fn resume_refused_by_tm_forgets_the_call() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", None);
    rig.host.refuse.set(true);
    rig.register("tokA", None);
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.count(|c| &c.resumed), 0);
    assert!(rig.pending().is_empty());
    assert_eq!(rig.held_now(), 0);
}

#[tokio::test(start_paused = true)]
async fn refresh_push_is_marked_before_it_is_sent() {
    // What the store said when each push arrived: was the binding still due?
    let due_then: Arc<Mutex<Vec<usize>>> = Arc::default();
    let db = Arc::new(Mutex::new(PathBuf::new()));
    let (seen, db_seen) = (due_then.clone(), db.clone());
    let mut rig = Rig::new(
        Box::new(move |_| {
            let store = Store::open_reader(&db_seen.lock().unwrap()).unwrap();
            let now = unix_now().as_secs() as i64;
            let due = store.due_refreshes(now, now + 60, 10).unwrap();
            seen.lock().unwrap().push(due.len());
            (200, Duration::ZERO)
        }),
        |c| c.refresh_window = 60,
    );
    *db.lock().unwrap() = rig.ctx.config.db.sqlite_path().unwrap().to_path_buf();
    rig.register("tokA", None);
    // Due now, but the store is asked once a second only.
    rig.engine.tick(&rig.host);
    rig.requests(0);

    tokio::time::advance(Duration::from_secs(1)).await;
    rig.engine.tick(&rig.host);
    let push = rig.requests(1)[0].json();
    assert_eq!(push["type"], "refresh");
    assert_eq!(push["call_id"], "refresh-token:tokA");
    assert_eq!(push["token"], "tokA");
    assert_eq!(*due_then.lock().unwrap(), vec![0], "pushed while still due");
    rig.pushes_done(1);
    assert_eq!(rig.count(|c| &c.refresh_pushes), 1);

    // The device does not answer: no second push for this binding.
    tokio::time::advance(Duration::from_secs(1)).await;
    rig.engine.tick(&rig.host);
    rig.requests(1);

    // It registers again: its new binding gets one.
    rig.register("tokA", None);
    tokio::time::advance(Duration::from_secs(1)).await;
    rig.engine.tick(&rig.host);
    rig.requests(2);
    rig.pushes_done(1);
    assert_eq!(rig.count(|c| &c.refresh_pushes), 2);
}

/// A device of AOR pushed through the webhook app with `token`.
fn stored_device(token: &str) -> crate::devices::store::Device {
    crate::devices::store::Device {
        aor: AOR.into(),
        device_id: format!("token:{token}"),
        provider: "webhook".into(),
        prid: token.into(),
        param: None,
        app_id: Some("app".into()),
        instance: None,
        contact: "sip:alice@192.0.2.1:5060".into(),
        user_agent: None,
        updated_at: 1,
    }
}

#[test]
fn claimed_refreshes_are_pushed_unless_expired_meanwhile() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.refresh_window = 60
    });
    let now = unix_now().as_secs() as i64;
    rig.engine.refresh_claimed(vec![
        (stored_device("tokLive"), now + 30),
        (stored_device("tokGone"), now - 1),
        (stored_device("tokNow"), now),
    ]);
    let got = rig.requests(1);
    let push = got[0].json();
    assert_eq!(push["type"], "refresh");
    assert_eq!(push["token"], "tokLive");
    assert_eq!(push["call_id"], "refresh-token:tokLive");
    assert_eq!(push["expires_at"], (now + 30) as u64);
    rig.pushes_done(1);
    assert_eq!(rig.count(|c| &c.refresh_pushes), 1);
}

/// With the PostgreSQL store the node's own copy is never scanned for refresh pushes: only what
/// it claimed in the database is pushed, so a database it cannot reach means no refresh push
/// (never one per node).
#[tokio::test(start_paused = true)]
async fn shared_store_sends_no_refresh_push_it_did_not_claim() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.refresh_window = 60;
        // Nothing listens on port 1.
        c.db = crate::devices::store::DbUrl::Postgres(
            crate::devices::postgres::parse_pg_url("postgres://kam@127.0.0.1:1/push").unwrap(),
        );
    });
    rig.register("tokA", None);
    let now_s = unix_now().as_secs() as i64;
    // The binding is due in the node's copy...
    let store = rig.engine.store.as_ref().unwrap();
    assert_eq!(store.due_refreshes(now_s, now_s + 60, 10).unwrap().len(), 1);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        rig.engine.tick(&rig.host);
    }
    // ...but unclaimed: no push, and it stays unmarked (the claim belongs to the database).
    rig.requests(0);
    let store = rig.engine.store.as_ref().unwrap();
    assert_eq!(store.due_refreshes(now_s, now_s + 60, 10).unwrap().len(), 1);
    assert_eq!(rig.count(|c| &c.refresh_pushes), 0);
}

#[tokio::test(start_paused = true)]
async fn call_tm_never_ended_is_dropped_after_its_deadline() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", None);
    // The call's timeout (30 s) and the grace: still kept.
    tokio::time::advance(Duration::from_secs(30) + GRACE).await;
    rig.engine.tick(&rig.host);
    assert_eq!(rig.pending().len(), 1);
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::TimedOut)]);
    tokio::time::advance(Duration::from_secs(1)).await;
    rig.engine.tick(&rig.host);
    assert!(rig.pending().is_empty());
    assert_eq!(rig.held_now(), 0);

    // Its key is remembered as ended for a minute: a late Held for it is dropped...
    rig.hold((1, 1));
    assert!(rig.pending().is_empty());
    tokio::time::advance(Duration::from_secs(60)).await;
    rig.engine.tick(&rig.host);
    // ...and then forgotten: tm may use the key again.
    rig.hold((1, 1));
    assert_eq!(rig.pending().len(), 1);
    // The call push, the end-of-call push (timeout) when the call was dropped, the new call's.
    // (the last two in either order).
    let mut kinds: Vec<(String, String)> = rig
        .requests(3)
        .iter()
        .map(|r| {
            let j = r.json();
            (
                j["type"].as_str().unwrap().into(),
                j["reason"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    kinds.sort();
    let call = ("call".to_string(), String::new());
    assert_eq!(
        kinds,
        [
            call.clone(),
            call,
            ("cancel".to_string(), "timeout".to_string())
        ]
    );
}

#[test]
fn rpc_answers() {
    let mut rig = Rig::ok();
    let health = |rig: &mut Rig| match rig.ask(Question::Apps) {
        Answer::Apps(apps) => (
            apps[0].id.clone(),
            apps[0].provider.clone(),
            apps[0].health.clone(),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        health(&mut rig),
        ("app".into(), "webhook".into(), "ready".into())
    );
    assert_eq!(
        rig.ask(Question::Send { aor: "bob".into() }),
        Answer::Error("no push device for bob".into())
    );
    rig.register("tokA0123456789", None);
    match rig.ask(Question::Devices {
        aor: Some("sip:alice@example.com".into()),
        offset: 0,
        limit: 100,
    }) {
        Answer::Devices { devices, total, .. } => {
            assert_eq!(total, 1);
            assert_eq!(devices.len(), 1);
            assert_eq!(devices[0].device_id, "token:tokA01…6789");
            assert_eq!(devices[0].user_agent, "test phone");
        }
        other => panic!("{other:?}"),
    }

    // push.send: a test push, answered by the task once the server answered.
    assert_eq!(
        rig.ask(Question::Send { aor: AOR.into() }),
        Answer::Sent(vec![(
            "token:tokA01…6789".into(),
            "app".into(),
            "sent (200, 1 attempt(s))".into()
        )])
    );
    let push = rig.requests(1)[0].json();
    assert!(push["call_id"].as_str().unwrap().starts_with("push.send-"));
    // The app can tell it from a call.
    assert_eq!(push["type"], "test");
    assert_eq!(push["caller_name"], "push.send");
    assert_eq!(push["caller_uri"], "sip:push.send@localhost");
    rig.pushes_done(1);
    assert_eq!(health(&mut rig).2, "ok");

    assert_eq!(
        rig.ask(Question::Reload),
        Answer::Reloaded(vec![crate::ipc::message::AppReload {
            id: "app".into(),
            change: "reloaded".into(),
            error: String::new(),
        }])
    );
    assert_eq!(health(&mut rig).2, "ready");

    rig.hold((1, 1));
    rig.pushes_done(1);
    assert_eq!(
        rig.ask(Question::Resume {
            aor: "sip:alice@example.com".into()
        }),
        Answer::Resumed(1)
    );
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(
        rig.ask(Question::Resume { aor: "".into() }),
        Answer::Error("'' is not an AOR".into())
    );

    assert_eq!(
        rig.ask(Question::Remove {
            aor: AOR.into(),
            device: Some("other".into())
        }),
        Answer::Error("no such device for alice".into())
    );
    assert_eq!(
        rig.ask(Question::Remove {
            aor: AOR.into(),
            device: Some("token:tokA01…6789".into())
        }),
        Answer::Removed(1)
    );
    assert!(rig.stored_tokens().is_empty());
    assert!(!rig.ctx.index.contains(AOR));
    assert_eq!(rig.count(|c| &c.devices_removed), 1);
}

#[tokio::test(start_paused = true)]
async fn call_nobody_answers_is_ended_by_the_module_at_its_deadline_once() {
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", None);
    tokio::time::advance(Duration::from_millis(29_900)).await;
    rig.engine.tick(&rig.host);
    assert!(rig.ended().is_empty(), "ended before its timeout");
    tokio::time::advance(Duration::from_millis(100)).await;
    rig.engine.tick(&rig.host);
    rig.engine.tick(&rig.host);
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::TimedOut)]);
    assert_eq!(rig.count(|c| &c.timed_out), 1);
    assert_eq!(rig.pending()[0].state, "timed out");
    // A device registering now does not resume it; tm's 480 forgets it, counted once.
    rig.register("tokA", None);
    assert!(rig.continued().is_empty());
    rig.tm((1, 1), TmChange::Replied(480));
    assert!(rig.pending().is_empty());
    assert_eq!(rig.count(|c| &c.timed_out), 1);
    assert_eq!(rig.held_now(), 0);
}

/// Issue 12: one AOR keeps at most max_devices devices (the least recently registered give way),
/// so a call makes at most max_devices pushes however many Contacts were registered.
#[test]
fn an_aor_keeps_at_most_max_devices_and_a_call_pushes_only_those() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.max_devices = 3);
    for i in 0..8 {
        rig.register(&format!("tok{i}"), None);
    }
    let mut tokens = rig.stored_tokens();
    tokens.sort();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    // The last one registered is always kept.
    assert!(tokens.contains(&"tok7".to_string()), "{tokens:?}");
    assert_eq!(rig.count(|c| &c.devices_stored), 8);
    assert_eq!(rig.count(|c| &c.devices_removed), 5);
    rig.hold((1, 1));
    rig.pushes_done(3);
    assert_eq!(rig.requests(3).len(), 3);
}

#[test]
fn push_resume_whose_worker_gave_up_continues_nothing() {
    let mut rig = Rig::ok();
    rig.call_pushed("tok", None);
    // Nobody listens at this name any more: the worker stopped waiting.
    rig.handle(ToDispatcher::Ask {
        reply_to: format!("push-engine-test/{}/gone", std::process::id()),
        question: Question::Resume { aor: AOR.into() },
    });
    assert_eq!(rig.continued(), vec![]);
    // The call still waits: the next push_resume that is heard continues it, and says so.
    assert_eq!(
        rig.ask(Question::Resume { aor: AOR.into() }),
        Answer::Resumed(1)
    );
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(
        rig.ask(Question::Resume { aor: AOR.into() }),
        Answer::Resumed(0)
    );
}

#[test]
fn an_app_that_cannot_be_reached_is_marked_failing_probed_and_healthy_again() {
    // Port 1 on the loopback: every connection refused.
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.apps = vec![App::parse("id=app;provider=webhook;url=http://127.0.0.1:1/push").unwrap()];
        c.breaker_failures = 2;
        c.breaker_probe_interval = 1;
    });
    rig.register("tok", None);
    for n in 1..=2 {
        rig.hold((1, n));
        let outcomes = rig.pushes_done(1);
        assert!(
            matches!(&outcomes[0], Outcome::GaveUp { attempts: 3, .. }),
            "{outcomes:?}"
        );
        assert_eq!(rig.ended().last(), Some(&((1, n), CallEnd::Failed)));
    }
    assert_eq!(rig.shared.apps_failing.load(Ordering::Relaxed), 1);
    let apps = rig.ask(Question::Apps);
    assert!(
        format!("{apps:?}").contains("failing (circuit open after 2 pushes"),
        "{apps:?}"
    );
    // Open: the next call ends at once, no push goes.
    rig.hold((1, 3));
    assert_eq!(rig.ended().last(), Some(&((1, 3), CallEnd::Failed)));
    assert!(rig.jobs.recv_timeout(Duration::from_millis(300)).is_err());
    // A probe is due after the interval: that call's push goes (and fails again).
    std::thread::sleep(Duration::from_millis(1100));
    rig.hold((1, 4));
    assert!(matches!(rig.pushes_done(1)[0], Outcome::GaveUp { .. }));
    assert_eq!(rig.shared.apps_failing.load(Ordering::Relaxed), 1);
    rig.hold((1, 5));
    assert_eq!(rig.ended().last(), Some(&((1, 5), CallEnd::Failed)));
    // An answer closes it (a push.send test push is never held back).
    rig.engine.push_done(
        PushDone {
            key: (u32::MAX, u32::MAX),
            aor: AOR.into(),
            app_id: "app".into(),
            device_id: "token:tok".into(),
            outcome: Outcome::Sent {
                status: 200,
                attempts: 1,
            },
            provider: "webhook",
            purpose: PushPurpose::Test,
            took: Duration::from_millis(3),
        },
        &rig.host,
    );
    assert_eq!(rig.shared.apps_failing.load(Ordering::Relaxed), 0);
}

#[test]
fn shutdown_answers_every_waiting_call_and_any_held_after_it() {
    let mut rig = Rig::ok();
    rig.call_pushed("tok", None);
    assert_eq!(rig.ask(Question::Shutdown), Answer::Ended(1));
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::Shutdown)]);
    rig.shared.shutting_down.store(1, Ordering::Relaxed);
    rig.hold((1, 2));
    assert_eq!(rig.ended().last(), Some(&((1, 2), CallEnd::Shutdown)));
    assert_eq!(rig.ask(Question::Shutdown), Answer::Ended(0));
}

/// Two devices (a, b) of AOR registered and pushed for the call (1, 1).
fn two_devices_pushed(rig: &mut Rig) {
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.register("tokB", Some("<urn:uuid:b>"));
    rig.hold((1, 1));
    rig.requests(2);
    rig.pushes_done(2);
}

/// The end-of-call pushes among the server's requests: (token, reason) sorted.
fn end_pushes(rig: &Rig, total: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rig
        .requests(total)
        .iter()
        .map(|r| r.json())
        .filter(|j| j["type"] == "cancel")
        .map(|j| {
            assert_eq!(j["call_id"], "call-1", "{j}");
            assert_eq!(j["caller_uri"], "sip:bob@example.com", "{j}");
            (
                j["token"].as_str().unwrap().to_string(),
                j["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn answered_elsewhere_pushes_only_the_device_that_did_not_join() {
    let mut rig = Rig::ok();
    two_devices_pushed(&mut rig);
    // a wakes and gets the call; b never registers.
    rig.register("tokA", Some("<urn:uuid:a>"));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    rig.tm((1, 1), TmChange::Replied(200));
    assert_eq!(
        end_pushes(&rig, 3),
        [("tokB".to_string(), "answered_elsewhere".to_string())]
    );
    rig.pushes_done(1);
    assert_eq!(rig.count(|c| &c.end_pushes), 1);
    // tm's destroy later sends nothing more.
    rig.tm((1, 1), TmChange::Destroyed);
    rig.requests(3);
}

#[test]
fn cancel_pushes_every_pushed_device_once_with_reason_cancelled() {
    let mut rig = Rig::ok();
    two_devices_pushed(&mut rig);
    rig.tm((1, 1), TmChange::Cancelled);
    rig.tm((1, 1), TmChange::Replied(487));
    rig.tm((1, 1), TmChange::Destroyed);
    assert_eq!(
        end_pushes(&rig, 4),
        [
            ("tokA".to_string(), "cancelled".to_string()),
            ("tokB".to_string(), "cancelled".to_string())
        ]
    );
    // A missed call shows no alert unless the app asks for one.
    assert!(rig.server.requests()[2].json().get("alert").is_none());
}

#[test]
fn a_device_that_joined_the_ringing_call_gets_no_end_push() {
    let mut rig = Rig::ok();
    two_devices_pushed(&mut rig);
    rig.host.branches.set(1);
    rig.register("tokA", Some("<urn:uuid:a>"));
    // b wakes late and joins as a new branch: tm cancels it, no push needed.
    rig.register("tokB", Some("<urn:uuid:b>"));
    rig.tm((1, 1), TmChange::Cancelled);
    assert!(end_pushes(&rig, 2).is_empty());
}

#[test]
fn timeout_pushes_devices_with_reason_timeout_and_the_missed_call_alert() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.apps[0].missed_call_alert = Some("Missed call from {caller}".into())
    });
    two_devices_pushed(&mut rig);
    // The module ended the call (480) or tm's timer did (408): the phones missed it.
    rig.tm((1, 1), TmChange::Replied(480));
    assert_eq!(
        end_pushes(&rig, 4),
        [
            ("tokA".to_string(), "timeout".to_string()),
            ("tokB".to_string(), "timeout".to_string())
        ]
    );
    assert_eq!(rig.count(|c| &c.timed_out), 1);
    let last = rig.server.requests()[3].json();
    assert_eq!(last["alert"], "Missed call from Bob");
}

#[test]
fn answered_elsewhere_carries_no_missed_call_alert_and_cancel_push_off_sends_nothing() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.apps[0].missed_call_alert = Some("Missed call".into())
    });
    two_devices_pushed(&mut rig);
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.tm((1, 1), TmChange::Replied(200));
    let push = rig.requests(3)[2].json();
    assert_eq!(push["reason"], "answered_elsewhere");
    assert!(push.get("alert").is_none(), "{push}");

    let mut off = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.apps[0].cancel_push = false
    });
    two_devices_pushed(&mut off);
    off.tm((1, 1), TmChange::Cancelled);
    off.requests(2);
}

#[test]
fn a_device_whose_push_failed_gets_no_end_push() {
    let mut rig = Rig::answering(400);
    rig.register("tokA", None);
    rig.hold((1, 1));
    rig.pushes_done(1);
    assert_eq!(rig.ended(), vec![((1, 1), CallEnd::Failed)]);
    rig.tm((1, 1), TmChange::Replied(480));
    rig.requests(1);
}

#[test]
fn a_message_is_pushed_as_a_message_once_per_device_while_its_push_is_outstanding() {
    let mut rig = Rig::ok();
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.hold_message((1, 1), "hello there");
    rig.hold_message((1, 2), "second");
    rig.hold_message((1, 3), "third");
    let pushes = rig.requests(1);
    let push = pushes[0].json();
    assert_eq!(push["type"], "message");
    assert_eq!(push["call_id"], "msg-1");
    assert_eq!(push["caller_uri"], "sip:bob@example.com");
    // No text without the app's message_preview.
    assert!(push.get("text").is_none(), "{push}");
    rig.pushes_done(1);
    assert_eq!(rig.pending().len(), 3);
    // The device registers: every held message is continued, once.
    rig.register("tokA", Some("<urn:uuid:a>"));
    let mut continued = rig.continued();
    continued.sort();
    assert_eq!(
        continued,
        vec![((1, 1), false), ((1, 2), false), ((1, 3), false)]
    );
    // Delivered: no end-of-call push for a message.
    for key in [(1, 1), (1, 2), (1, 3)] {
        rig.tm(key, TmChange::Replied(200));
    }
    rig.requests(1);
    // A message after that is pushed again.
    rig.hold_message((1, 4), "later");
    rig.requests(2);
}

#[test]
fn a_message_timing_out_gets_no_end_push_and_the_covered_ones_share_a_failed_push() {
    let mut rig = Rig::answering(400);
    rig.register("tokA", None);
    rig.hold_message((1, 1), "one");
    rig.hold_message((1, 2), "two");
    rig.requests(1);
    rig.pushes_done(1);
    // The one push failed: both messages fail now (480), not at their timeout.
    let mut ended = rig.ended();
    ended.sort_by_key(|(k, _)| *k);
    assert_eq!(
        ended,
        vec![((1, 1), CallEnd::Failed), ((1, 2), CallEnd::Failed)]
    );
    rig.tm((1, 1), TmChange::Replied(480));
    rig.tm((1, 2), TmChange::Replied(480));
    rig.requests(1);
}

#[test]
fn message_preview_is_cut_and_only_for_apps_that_want_it() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.apps[0].message_preview = true
    });
    rig.register("tokA", None);
    let long = format!("hi\n{}", "x".repeat(400));
    rig.hold_message((1, 1), &long);
    let push = rig.requests(1)[0].json();
    let text = push["text"].as_str().unwrap();
    assert!(text.starts_with("hi x"), "{text}");
    assert_eq!(text.chars().count(), crate::config::MESSAGE_PREVIEW_CHARS);
    assert!(text.ends_with('…'));
}

#[test]
fn a_gateway_device_registering_through_push_register_joins_the_call() {
    let mut rig = Rig::ok();
    two_devices_pushed(&mut rig);
    // push_register() on the backend's 2xx (no resume of its own), then push_resume().
    rig.handle(ToDispatcher::Contact(ContactEvent {
        change: ContactChange::Registered,
        aor: AOR.into(),
        contact: format!("sip:{AOR}@10.0.0.1:5060;pn-provider=fcm;pn-prid=tokA"),
        instance: Some("<urn:uuid:a>".into()),
        user_agent: None,
        binding: Some(PushBinding {
            provider: "fcm".into(),
            prid: "tokA".into(),
            param: None,
            silent: false,
            timeout: None,
        }),
        resume: false,
        expires_at: None,
        local: false,
        replica: false,
        inserted: false,
    }));
    assert!(rig.continued().is_empty());
    rig.handle(ToDispatcher::Resume { aor: AOR.into() });
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    rig.tm((1, 1), TmChange::Replied(200));
    assert_eq!(
        end_pushes(&rig, 3),
        [("tokB".to_string(), "answered_elsewhere".to_string())]
    );
}

/// A host whose append_branches fails (the call is ending): the late device got no branch.
#[test]
fn a_late_device_that_got_no_branch_still_gets_its_end_push() {
    struct NoBranch(FakeHost);
    impl Host for NoBranch {
        fn tick(&self) {}
        fn continue_call(
            &self,
            key: CallKey,
            failed: bool,
            relay: Option<&str>,
        ) -> Result<(), String> {
            self.0.continue_call(key, failed, relay)
        }
        fn end_call(&self, key: CallKey, why: CallEnd) -> Result<(), String> {
            self.0.end_call(key, why)
        }
        fn append_branches(&self, _: CallKey) -> Result<u32, String> {
            Err("transaction cancelled".into())
        }
    }
    let mut rig = Rig::ok();
    two_devices_pushed(&mut rig);
    rig.register("tokA", Some("<urn:uuid:a>"));
    let host = NoBranch(FakeHost::default());
    rig.engine.handle(
        ToDispatcher::Contact(ContactEvent {
            change: ContactChange::Registered,
            aor: AOR.into(),
            contact: format!("sip:{AOR}@10.0.0.2:5060;pn-provider=fcm;pn-prid=tokB"),
            instance: Some("<urn:uuid:b>".into()),
            user_agent: None,
            binding: Some(PushBinding {
                provider: "fcm".into(),
                prid: "tokB".into(),
                param: None,
                silent: false,
                timeout: None,
            }),
            resume: true,
            expires_at: None,
            local: false,
            replica: false,
            inserted: false,
        }),
        &host,
    );
    rig.tm((1, 1), TmChange::Cancelled);
    assert_eq!(
        end_pushes(&rig, 3),
        [("tokB".to_string(), "cancelled".to_string())]
    );
}

/// Issue 12: handling a REGISTER (and the call it resumes) commits nothing to SQLite; the tick
/// commits the batch, once, and a held call is continued before any write.
#[test]
fn registrations_are_committed_by_the_tick_not_on_the_resume_path() {
    let mut rig = Rig::ok();
    let db = rig.ctx.config.db.sqlite_path().unwrap().to_path_buf();
    let reader = move || Store::open_reader(&db).unwrap().devices(AOR).unwrap();
    rig.register("tokA", Some("<urn:uuid:a>"));
    rig.hold((1, 1));
    rig.pushes_done(1);
    rig.register("tokB", Some("<urn:uuid:a>"));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    // Nothing committed yet: the REGISTERs' writes wait in the batch...
    assert!(reader().is_empty(), "a REGISTER was committed on its own");
    // ...which the engine itself reads (the push above found the device).
    rig.engine.tick(&rig.host);
    let stored = reader();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].prid, "tokB");
}

/// The metric updates exported at the next tick.
fn exported(rig: &mut Rig) -> Vec<crate::metrics::Update> {
    rig.host.metrics.borrow_mut().clear();
    rig.engine.tick(&rig.host);
    rig.host.metrics.borrow().clone()
}

#[test]
fn a_woken_call_is_measured_per_app_and_provider() {
    use crate::metrics::{Update, FAMILIES, HELD, ROUND_TRIP, SENT, WAKE};
    let mut rig = Rig::ok();
    rig.call_pushed("tokA", None);
    rig.register("tokA", None);
    rig.tm((1, 1), TmChange::Replied(200));
    let updates = exported(&mut rig);
    assert!(
        updates.contains(&Update::CounterInc {
            family: &FAMILIES[SENT],
            labels: vec!["app".into(), "webhook".into()],
            by: 1
        }),
        "{updates:#?}"
    );
    let observed = |family: usize, labels: Vec<String>| {
        updates.iter().any(|u| {
            matches!(u, Update::Observe { family: f, labels: l, value }
                if *f == &FAMILIES[family] && *l == labels && *value >= 0.0 && *value < 10.0)
        })
    };
    assert!(observed(ROUND_TRIP, vec!["webhook".into()]), "{updates:#?}");
    assert!(observed(WAKE, vec![]), "{updates:#?}");
    assert!(observed(HELD, vec!["resumed".into()]), "{updates:#?}");
    // The levels: nothing held now, the app healthy.
    assert!(updates.iter().any(|u| matches!(u,
        Update::GaugeSet { family, value, .. } if family.name == "push_app_failing" && *value == 0.0)));
    // Nothing new: nothing exported again.
    assert!(exported(&mut rig)
        .iter()
        .all(|u| !matches!(u, Update::CounterInc { .. } | Update::Observe { .. })));
}

#[test]
fn failures_are_counted_by_reason_and_a_statistic_reset_resets_them() {
    use crate::metrics::{Update, FAILED, FAMILIES};
    let mut rig = Rig::answering(400);
    rig.call_pushed("tokA", None);
    let updates = exported(&mut rig);
    let labels = vec!["app".to_string(), "webhook".into(), "rejected".into()];
    assert!(
        updates.contains(&Update::CounterInc {
            family: &FAMILIES[FAILED],
            labels: labels.clone(),
            by: 1
        }),
        "{updates:#?}"
    );
    // kamcmd stats.reset_statistics push:pushes_failed
    let statistic = crate::shared::STATISTICS
        .iter()
        .find(|s| s.name == "pushes_failed")
        .unwrap();
    statistic.reset(rig.shared);
    assert_eq!(statistic.value(rig.shared), 0);
    let updates = exported(&mut rig);
    assert!(
        updates.contains(&Update::CounterReset {
            family: &FAMILIES[FAILED],
            labels
        }),
        "{updates:#?}"
    );
    assert!(exported(&mut rig)
        .iter()
        .all(|u| !matches!(u, Update::CounterReset { .. })));
}

/// The device "tokF" of AOR registers naming the app `app` (its pn-param).
fn register_for_app(rig: &mut Rig, app: &str) {
    rig.handle(ToDispatcher::Contact(ContactEvent {
        change: ContactChange::Registered,
        aor: AOR.into(),
        contact: format!("sip:{AOR}@10.0.0.1;pn-provider=apns;pn-prid=tokF;pn-param={app}"),
        instance: None,
        user_agent: None,
        binding: Some(PushBinding {
            provider: "apns".into(),
            prid: "tokF".into(),
            param: Some(app.into()),
            silent: false,
            timeout: None,
        }),
        resume: true,
        expires_at: None,
        local: false,
        replica: false,
        inserted: false,
    }));
}

fn reload_changes(rig: &mut Rig) -> Vec<(String, String)> {
    match rig.ask(Question::Reload) {
        Answer::Reloaded(apps) => apps.into_iter().map(|a| (a.id, a.change)).collect(),
        other => panic!("{other:?}"),
    }
}

fn device_add(aor: &str, app: &str, provider: &str, token: &str) -> crate::ipc::args::DeviceAdd {
    crate::ipc::args::DeviceAdd {
        aor: aor.into(),
        app: app.into(),
        provider: provider.into(),
        token: token.into(),
        instance: None,
        param: None,
        user_agent: None,
    }
}

/// push.device_add: the checks a REGISTER's Contact gets (its push parameters through the same
/// parser, an app that exists and pushes that provider, max_devices), an answer saying what was
/// stored, and a device that a held call then pushes through the app it was added with.
#[test]
fn device_add_is_checked_like_a_register_and_then_pushed() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        c.max_devices = 2;
        c.apps
            .push(App::parse("id=droid;provider=fcm;service_account=/nonexistent.json").unwrap());
    });
    let refused =
        |rig: &mut Rig, add: crate::ipc::args::DeviceAdd| match rig.ask(Question::DeviceAdd(add)) {
            Answer::Error(e) => e,
            other => panic!("{other:?}"),
        };
    let e = refused(
        &mut rig,
        device_add(AOR, "nope", "apns", "tok0123456789abcdef"),
    );
    assert!(e.contains("no app 'nope' (apps: app, droid)"), "{e}");
    let e = refused(
        &mut rig,
        device_add(AOR, "droid", "apns", "tok0123456789abcdef"),
    );
    assert!(
        e.contains("app droid (fcm) cannot push provider 'apns'"),
        "{e}"
    );
    let e = refused(
        &mut rig,
        device_add(AOR, "app", "ap ns", "tok0123456789abcdef"),
    );
    assert!(e.contains("unusable push provider"), "{e}");
    let e = refused(&mut rig, device_add(AOR, "app", "apns", "tok 0123456789"));
    assert!(e.contains("whitespace"), "{e}");
    let e = refused(&mut rig, device_add(AOR, "app", "apns", &"t".repeat(1025)));
    assert!(e.contains("too long: 1025 bytes, at most 1024"), "{e}");
    let mut bad_param = device_add(AOR, "app", "apns", "tok0123456789abcdef");
    bad_param.param = Some("p".repeat(300));
    let e = refused(&mut rig, bad_param);
    assert!(e.contains("pn-param is too long"), "{e}");
    let e = refused(
        &mut rig,
        device_add("sip:@host", "app", "apns", "tok0123456789abcdef"),
    );
    assert!(e.contains("is not an AOR"), "{e}");
    assert!(rig.stored_tokens().is_empty());

    // An APNs dual token: the VoIP one is stored, as from a REGISTER.
    let mut add = device_add(
        "sip:alice@example.com",
        "app",
        "apns",
        "remotetoken0001:remote&voiptoken00001:voip",
    );
    add.instance = Some("<urn:uuid:dev-1>".into());
    add.user_agent = Some("Backend/1.0".into());
    match rig.ask(Question::DeviceAdd(add.clone())) {
        Answer::DeviceAdded {
            device,
            result,
            evicted,
        } => {
            assert_eq!(result, "stored");
            assert!(evicted.is_empty());
            assert_eq!(device.aor, AOR);
            assert_eq!(device.device_id, "<urn:uuid:dev-1>");
            assert_eq!(device.token, "voipto…0001");
            assert_eq!(device.app, "app");
            assert_eq!(device.provider, "apns");
            assert_eq!(device.user_agent, "Backend/1.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(rig.ctx.index.contains(AOR));
    assert_eq!(rig.stored_tokens(), vec!["voiptoken00001"]);
    // The `remote` token is kept for alert pushes, as for a REGISTER's Contact.
    let stored = Store::open_reader(&rig.ctx.config.db.sqlite_path().unwrap())
        .unwrap()
        .devices(AOR)
        .unwrap();
    assert_eq!(
        crate::providers::PushTarget::of(&stored[0])
            .alert_token
            .as_deref(),
        Some("remotetoken0001")
    );
    assert_eq!(stored[0].app_id.as_deref(), Some("app"));
    assert_eq!(stored[0].instance.as_deref(), Some("<urn:uuid:dev-1>"));
    // The same again: unchanged; a new token for the instance: replaced.
    match rig.ask(Question::DeviceAdd(add.clone())) {
        Answer::DeviceAdded { result, .. } => assert_eq!(result, "unchanged"),
        other => panic!("{other:?}"),
    }
    add.token = "newvoiptoken0002".into();
    match rig.ask(Question::DeviceAdd(add)) {
        Answer::DeviceAdded { result, .. } => assert_eq!(result, "replaced"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.stored_tokens(), vec!["newvoiptoken0002"]);

    // A held call pushes it through its app, with its token.
    rig.hold((1, 1));
    rig.pushes_done(1);
    let push = rig.requests(1)[0].json();
    assert_eq!(push["token"], "newvoiptoken0002");
    assert_eq!(push["app_id"], "app");

    // max_devices (2): a third device makes the least recently registered one give way.
    std::thread::sleep(Duration::from_millis(1100));
    let mut second = device_add(AOR, "droid", "fcm", "fcmtoken000000000002");
    second.instance = Some("<urn:uuid:dev-2>".into());
    assert!(matches!(
        rig.ask(Question::DeviceAdd(second)),
        Answer::DeviceAdded { .. }
    ));
    std::thread::sleep(Duration::from_millis(1100));
    let mut third = device_add(AOR, "app", "fcm", "fcmtoken000000000003");
    third.instance = Some("<urn:uuid:dev-3>".into());
    match rig.ask(Question::DeviceAdd(third)) {
        Answer::DeviceAdded { evicted, .. } => assert_eq!(evicted, vec!["<urn:uuid:dev-1>"]),
        other => panic!("{other:?}"),
    }
    let mut tokens = rig.stored_tokens();
    tokens.sort();
    assert_eq!(tokens, vec!["fcmtoken000000000002", "fcmtoken000000000003"]);
}

/// push.devices without an AOR: the count of every stored device, and pages that list each once.
#[test]
fn devices_page_through_every_aor() {
    let mut rig = Rig::ok();
    for i in 0..230 {
        let add = device_add(
            &format!("user{:03}", i % 57),
            "app",
            "fcm",
            // Tokens that stay apart once shortened (first 6 and last 4 characters).
            &format!("{i:05}-token-{i:05}"),
        );
        assert!(matches!(
            rig.ask(Question::DeviceAdd(add)),
            Answer::DeviceAdded { .. }
        ));
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let Answer::Devices {
            total,
            offset: at,
            devices,
        } = rig.ask(Question::Devices {
            aor: None,
            offset,
            limit: 100,
        })
        else {
            panic!("not a page");
        };
        assert_eq!((total, at), (230, offset));
        if devices.is_empty() {
            break;
        }
        assert!(devices.len() <= 100);
        offset += devices.len() as u32;
        seen.extend(devices.into_iter().map(|d| (d.aor, d.device_id)));
    }
    assert_eq!(seen.len(), 230);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 230);
    // One AOR: its devices only (4 of them: 230 = 57 * 4 + 2).
    match rig.ask(Question::Devices {
        aor: Some("user010".into()),
        offset: 0,
        limit: 100,
    }) {
        Answer::Devices { total, devices, .. } => {
            assert_eq!((total, devices.len()), (4, 4));
            assert!(devices.iter().all(|d| d.aor == "user010"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn push_reload_applies_the_apps_file_for_new_pushes_only() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("apps.conf");
    let mut base = String::new();
    let rig_file = file.clone();
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| {
        let AppProvider::Webhook { url, .. } = &c.apps[0].provider else {
            unreachable!()
        };
        base = url.clone();
        std::fs::write(
            &rig_file,
            format!("# file apps\nid=filed;provider=webhook;url={base}/one;secret=hunter2\n"),
        )
        .unwrap();
        c.apps_file = Some(rig_file.clone());
        c.apps =
            crate::apps_file::merge(&c.apps, crate::apps_file::read(&rig_file).unwrap()).unwrap();
    });
    let paths = |rig: &Rig, n: usize| -> Vec<String> {
        rig.requests(n).into_iter().map(|r| r.path).collect()
    };

    register_for_app(&mut rig, "filed");
    rig.hold((1, 1));
    rig.pushes_done(1);
    assert_eq!(paths(&rig, 1), ["/push/one"]);

    // The URL changes and an app is added while the call is held.
    std::fs::write(
        &file,
        format!(
            "id=filed;provider=webhook;url={base}/two;secret=hunter2\n\n\
             id=second;provider=webhook;url={base}/second\n"
        ),
    )
    .unwrap();
    assert_eq!(
        reload_changes(&mut rig),
        [
            ("app".to_string(), "reloaded".to_string()),
            ("filed".into(), "changed".into()),
            ("second".into(), "added".into())
        ]
    );
    // The held call is untouched: the device registers and the call goes on.
    assert!(rig.continued().is_empty() && rig.ended().is_empty());
    register_for_app(&mut rig, "filed");
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    // A new call's push goes to the new URL.
    rig.hold((1, 2));
    rig.pushes_done(1);
    assert_eq!(paths(&rig, 2)[1], "/push/two");

    // A broken file is refused whole, with its line, and the apps stay.
    std::fs::write(
        &file,
        "id=second;provider=webhook;url=http://127.0.0.1:1/x\nid=bad;provider=pigeon;secret=hunter2\n",
    )
    .unwrap();
    let Answer::Error(e) = rig.ask(Question::Reload) else {
        panic!("a broken file was taken")
    };
    assert!(
        e.starts_with("apps_file line 2: unknown provider 'pigeon'"),
        "{e}"
    );
    assert!(!e.contains("hunter2"));
    let Answer::Apps(apps) = rig.ask(Question::Apps) else {
        panic!()
    };
    let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["app", "filed", "second"]);
    // A file declaring a modparam app's id is refused too.
    std::fs::write(&file, format!("id=app;provider=webhook;url={base}/x\n")).unwrap();
    assert!(matches!(rig.ask(Question::Reload), Answer::Error(e) if e.contains("declared both")));

    // The app is removed: its device is kept, and not pushed through the default app.
    std::fs::write(
        &file,
        format!("id=second;provider=webhook;url={base}/second\n"),
    )
    .unwrap();
    assert_eq!(
        reload_changes(&mut rig),
        [
            ("filed".to_string(), "removed".to_string()),
            ("app".into(), "reloaded".into()),
            ("second".into(), "reloaded".into())
        ]
    );
    rig.hold((1, 3));
    assert!(rig.ended().contains(&((1, 3), CallEnd::Failed)));
    assert_eq!(rig.stored_tokens(), ["tokF"]);
    let Answer::Sent(sent) = rig.ask(Question::Send { aor: AOR.into() }) else {
        panic!()
    };
    assert!(sent[0].2.contains("removed"), "{sent:?}");

    // Back again: pushed as before.
    std::fs::write(
        &file,
        format!("id=filed;provider=webhook;url={base}/three\n"),
    )
    .unwrap();
    let changes = reload_changes(&mut rig);
    assert!(
        changes.contains(&("filed".into(), "added".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("second".into(), "removed".into())),
        "{changes:?}"
    );
    rig.hold((1, 4));
    rig.pushes_done(1);
    assert_eq!(paths(&rig, 3)[2], "/push/three");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// push.pending: the caller, when the call is ended if nobody registers, and each device's push
/// state as it goes: retrying after a failed attempt, then sent with the service's status.
#[test]
fn pending_shows_caller_deadline_and_push_states() {
    let mut rig = Rig::new(
        Box::new(|n| {
            if n == 0 {
                (503, Duration::ZERO)
            } else {
                (200, Duration::from_millis(1500))
            }
        }),
        |_| {},
    );
    rig.register("tokA0123456789", None);
    let before = crate::iso_time::unix_ms_now();
    rig.hold((1, 1));
    assert_eq!(rig.pending()[0].devices[0].push, "sending");
    // The first attempt's 503 comes back as a retry note while the second one is out.
    loop {
        match rig.jobs.recv_timeout(WAIT).expect("no retry note") {
            MainJob::PushRetrying {
                key,
                device_id,
                attempts,
                error,
            } => {
                rig.engine.push_retrying(key, &device_id, attempts, &error);
                break;
            }
            _ => {}
        }
    }
    let call = &rig.pending()[0];
    assert_eq!(call.caller, "sip:bob@example.com");
    assert_eq!(call.devices[0].device, "token:tokA01…6789");
    assert!(
        call.devices[0]
            .push
            .starts_with("retrying (attempt 1 failed: ")
            && call.devices[0].push.contains("503"),
        "{:?}",
        call.devices[0]
    );
    // Held for 30 s: the deadline is then, the hold time now.
    assert!((call.held_at_ms - before).abs() < 1000, "{call:?}");
    assert!(
        (call.deadline_ms - call.held_at_ms - 30_000).abs() < 100,
        "{call:?}"
    );
    rig.pushes_done(1);
    assert_eq!(rig.pending()[0].devices[0].push, "sent (200)");
}

/// A REGISTER of AOR's device with token `token` as usrloc reports it: received by this node
/// (`local`) or replicated from another (dmq_usrloc), a binding usrloc `inserted` or updated.
fn usrloc_event(token: &str, port: u16, local: bool, inserted: bool) -> ToDispatcher {
    ToDispatcher::Contact(ContactEvent {
        local,
        replica: !local,
        inserted,
        ..fcm_contact(ContactChange::Registered, token, Some("<urn:uuid:a>"), port)
    })
}

/// AOR's device with FCM token `token` at 10.0.0.1:`port` (and `instance`, if it sends one), as
/// usrloc reports it on the node that received the REGISTER.
fn fcm_contact(
    change: ContactChange,
    token: &str,
    instance: Option<&str>,
    port: u16,
) -> ContactEvent {
    ContactEvent {
        change,
        aor: AOR.into(),
        contact: format!("sip:{AOR}@10.0.0.1:{port};pn-provider=fcm;pn-prid={token}"),
        instance: instance.map(String::from),
        user_agent: Some("test phone".into()),
        binding: Some(PushBinding {
            provider: "fcm".into(),
            prid: token.into(),
            param: None,
            silent: false,
            timeout: None,
        }),
        resume: true,
        expires_at: Some(unix_now().as_secs() as i64 + 30),
        local: false,
        replica: false,
        inserted: false,
    }
}

#[test]
fn cluster_hears_of_fresh_bindings_only_not_of_refreshes() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    // (`registered` messages, device messages)
    let sent = |rig: &Rig| {
        let b = rig.host.broadcast.borrow();
        let registered = b
            .iter()
            .filter(|m| matches!(m.news, News::Registered { .. }))
            .count();
        (registered, b.len() - registered)
    };
    // A new binding received here: the cluster hears of it once, and of the new device.
    rig.handle(usrloc_event("tokA", 5060, true, true));
    assert_eq!(sent(&rig), (1, 1));
    {
        let first = &rig.host.broadcast.borrow()[0];
        assert_eq!(first.aor(), AOR);
        assert_eq!(first.instance(), Some("<urn:uuid:a>"));
        assert_eq!(first.binding().unwrap().prid, "tokA");
        let News::Device(d) = &rig.host.broadcast.borrow()[1].news else {
            panic!("not a device message")
        };
        assert_eq!((d.aor.as_str(), d.prid.as_str()), (AOR, "tokA"));
    }
    // 1,000 refreshes of the unchanged binding: no message.
    for _ in 0..1000 {
        rig.handle(usrloc_event("tokA", 5060, true, false));
    }
    assert_eq!(
        sent(&rig),
        (1, 1),
        "messages per 1,000 refreshes of an unchanged device"
    );
    // The phone comes back from another address (it woke on a new connection): news, and its
    // device changed (its Contact).
    rig.handle(usrloc_event("tokA", 40000, true, false));
    assert_eq!(sent(&rig), (2, 2));
    // A new token: news.
    rig.handle(usrloc_event("tokB", 40000, true, false));
    assert_eq!(sent(&rig), (3, 3));
    // Its binding expired while it slept, then it registered again with the same details: news
    // for held calls, the device is unchanged.
    rig.handle(usrloc_event("tokB", 40000, true, true));
    assert_eq!(sent(&rig), (4, 3));
    // A binding replicated from another node (dmq_usrloc) is never sent on, inserted or not.
    rig.handle(usrloc_event("tokC", 41000, false, true));
    rig.handle(usrloc_event("tokC", 42000, false, false));
    assert_eq!(sent(&rig), (4, 3));
    assert_eq!(rig.count(|c| &c.cluster_sent), 7);

    // Without enable_dmq nothing is ever sent.
    let mut off = Rig::ok();
    off.handle(usrloc_event("tokA", 5060, true, true));
    off.handle(usrloc_event("tokB", 5061, true, false));
    assert!(off.host.broadcast.borrow().is_empty());
}

#[test]
fn a_device_registering_on_another_node_resumes_the_held_call_once() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    rig.handle(usrloc_event("tokA", 5060, true, true));
    rig.hold((1, 1));
    rig.pushes_done(1);
    assert!(rig.continued().is_empty());
    // Another device of the AOR registered elsewhere: not the pushed one, nothing resumed.
    let other = PushBinding {
        provider: "fcm".into(),
        prid: "tokZ".into(),
        param: None,
        silent: false,
        timeout: None,
    };
    rig.handle(ToDispatcher::Cluster(ClusterMessage::registered(
        AOR, None, &other,
    )));
    assert!(rig.continued().is_empty());
    // The pushed device registered on another node: resumed here.
    let pushed = PushBinding {
        prid: "tokA".into(),
        ..other.clone()
    };
    let news = ClusterMessage::registered(AOR, Some("<urn:uuid:a>"), &pushed);
    rig.handle(ToDispatcher::Cluster(news.clone()));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.count(|c| &c.resumed), 1);
    // The same news again, and the device's binding replicated here (dmq_usrloc): still once.
    rig.handle(ToDispatcher::Cluster(news));
    rig.handle(usrloc_event("tokA", 40000, false, true));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);
    assert_eq!(rig.count(|c| &c.resumed), 1);
    // The message is not stored as a device here (the node it registered at stores it).
    assert_eq!(rig.stored_tokens(), vec!["tokA"]);
}

#[test]
fn with_enable_dmq_a_replica_waits_for_the_other_nodes_message() {
    // dmq_usrloc may apply B's binding here before B's 200 OK is out: with enable_dmq the
    // replica stores the device but resumes nothing; B's DMQ message (sent after its 200 OK)
    // resumes the call.
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    rig.handle(usrloc_event("tokA", 5060, true, true));
    rig.hold((1, 1));
    rig.pushes_done(1);
    rig.handle(usrloc_event("tokA", 40000, false, true));
    assert!(rig.continued().is_empty());
    assert!(
        rig.host
            .broadcast
            .borrow()
            .iter()
            .filter(|m| !matches!(m.news, News::Awaiting { .. }))
            .count()
            == 2,
        "a replica is never sent on: {:?}",
        rig.host.broadcast.borrow()
    );
    let pushed = PushBinding {
        provider: "fcm".into(),
        prid: "tokA".into(),
        param: None,
        silent: false,
        timeout: None,
    };
    rig.handle(ToDispatcher::Cluster(ClusterMessage::registered(
        AOR,
        Some("<urn:uuid:a>"),
        &pushed,
    )));
    assert_eq!(rig.continued(), vec![((1, 1), false)]);

    // Without enable_dmq a replica resumes at once, as before.
    let mut off = Rig::ok();
    off.handle(usrloc_event("tokA", 5060, true, true));
    off.hold((1, 1));
    off.pushes_done(1);
    off.handle(usrloc_event("tokA", 40000, false, true));
    assert_eq!(off.continued(), vec![((1, 1), false)]);
}

#[test]
fn the_minute_touch_loses_no_increment_or_observation() {
    use crate::metrics::{Update, FAMILIES, ROUND_TRIP, SENT};
    let mut rig = Rig::ok();
    exported(&mut rig);
    rig.call_pushed("tokA", None);
    // The pushes' outcome is in; the next tick is also the minute's touch.
    rig.engine.last_touch = now() - TOUCH_EVERY - Duration::from_secs(1);
    let updates = exported(&mut rig);
    let labels = vec!["app".to_string(), "webhook".into()];
    let sent: u64 = updates
        .iter()
        .filter_map(|u| match u {
            Update::CounterInc {
                family,
                labels: l,
                by,
            } if *family == &FAMILIES[SENT] && *l == labels => Some(*by),
            _ => None,
        })
        .sum();
    assert_eq!(sent, 1, "{updates:#?}");
    assert!(
        updates.iter().any(
            |u| matches!(u, Update::Observe { family, .. } if *family == &FAMILIES[ROUND_TRIP])
        ),
        "{updates:#?}"
    );
}

#[test]
fn a_call_resumed_by_another_nodes_message_is_relayed_to_that_node() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    rig.handle(usrloc_event("tokA", 5060, true, true));
    rig.hold((1, 1));
    rig.hold((1, 2));
    rig.pushes_done(2);
    let pushed = PushBinding {
        provider: "fcm".into(),
        prid: "tokA".into(),
        param: None,
        silent: false,
        timeout: None,
    };
    let body = ClusterMessage::registered(AOR, Some("<urn:uuid:a>"), &pushed)
        .encode()
        .unwrap();
    // As node B's DMQ worker reads it: B's address is the From of its KDMQ request.
    let news =
        ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.2:5060;passive=true")).unwrap();
    rig.handle(ToDispatcher::Cluster(news));
    assert_eq!(rig.continued(), vec![((1, 1), false), ((1, 2), false)]);
    assert_eq!(
        *rig.host.relays.borrow(),
        vec![Some("sip:10.0.0.2:5060".to_string()); 2]
    );
    // A device registering here resumes with no relay.
    rig.hold((1, 3));
    rig.pushes_done(1);
    rig.handle(usrloc_event("tokA", 40000, true, true));
    assert_eq!(rig.continued().len(), 3);
    assert_eq!(rig.host.relays.borrow()[2], None);
}

#[test]
fn devices_another_node_tells_of_are_known_here_and_not_told_on() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    let device = |aor: &str, token: &str, instance: Option<&str>| Device {
        aor: aor.into(),
        device_id: crate::devices::device_id(instance, token),
        provider: "fcm".into(),
        prid: token.into(),
        param: None,
        app_id: None,
        instance: instance.map(String::from),
        contact: format!("sip:{aor}@10.0.0.7:5060;pn-provider=fcm;pn-prid={token}"),
        user_agent: None,
        updated_at: unix_now().as_secs() as i64,
    };
    let tell = |rig: &mut Rig, news: News| {
        let body = ClusterMessage::from(news).encode().unwrap();
        let m = ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.3:5060")).unwrap();
        rig.handle(ToDispatcher::Cluster(m));
        rig.engine.flush_store();
    };
    assert!(!rig.ctx.index.contains(AOR));
    tell(
        &mut rig,
        News::Device(device(AOR, "tokX", Some("<urn:uuid:x>"))),
    );
    tell(&mut rig, News::Device(device(AOR, "tokY", None)));
    tell(&mut rig, News::Device(device("bob", "tokZ", None)));
    assert!(rig.ctx.index.contains(AOR) && rig.ctx.index.contains("bob"));
    let mut tokens = rig.stored_tokens();
    tokens.sort();
    assert_eq!(tokens, vec!["tokX", "tokY"]);
    // A call to a device learned from another node is pushed from here.
    rig.hold((2, 1));
    assert_eq!(rig.pushes_done(2).len(), 2);
    // Nothing told is told on (no echo between nodes); the call held here is.
    assert!(rig
        .host
        .broadcast
        .borrow()
        .iter()
        .all(|m| matches!(m.news, News::Awaiting { .. })));
    rig.host.broadcast.borrow_mut().clear();

    tell(
        &mut rig,
        News::Removed {
            aor: AOR.into(),
            device_id: "<urn:uuid:x>".into(),
        },
    );
    assert_eq!(rig.stored_tokens(), vec!["tokY"]);
    tell(
        &mut rig,
        News::RemovedToken {
            aor: AOR.into(),
            prid: "tokY".into(),
        },
    );
    assert!(rig.stored_tokens().is_empty());
    assert!(!rig.ctx.index.contains(AOR), "an AOR with no device left");
    tell(&mut rig, News::RemovedAor { aor: "bob".into() });
    assert!(!rig.ctx.index.contains("bob"));
    assert!(rig.host.broadcast.borrow().is_empty());
}

#[test]
fn a_retransmitted_dmq_request_is_acted_on_once() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    let tell = |rig: &mut Rig, news: News, call_id: &str| {
        let body = ClusterMessage::from(news).encode().unwrap();
        let mut m = ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.3:5060")).unwrap();
        m.request = crate::ipc::cluster::call_id(call_id.as_bytes());
        rig.handle(ToDispatcher::Cluster(m));
        rig.engine.flush_store();
    };
    let device = Device {
        aor: AOR.into(),
        device_id: "<urn:uuid:x>".into(),
        provider: "fcm".into(),
        prid: "tokX".into(),
        param: None,
        app_id: None,
        instance: Some("<urn:uuid:x>".into()),
        contact: format!("sip:{AOR}@10.0.0.7:5060;pn-provider=fcm;pn-prid=tokX"),
        user_agent: None,
        updated_at: unix_now().as_secs() as i64,
    };
    let removed = News::Removed {
        aor: AOR.into(),
        device_id: "<urn:uuid:x>".into(),
    };
    tell(&mut rig, News::Device(device.clone()), "c1@10.0.0.3");
    tell(&mut rig, removed.clone(), "c2@10.0.0.3");
    assert!(rig.stored_tokens().is_empty());
    // The phone registers again over there: told in a new request.
    tell(&mut rig, News::Device(device), "c3@10.0.0.3");
    assert_eq!(rig.stored_tokens(), vec!["tokX"]);
    // tm retransmits the removal (its answer was lost): the newer device is not undone.
    tell(&mut rig, removed.clone(), "c2@10.0.0.3");
    assert_eq!(rig.stored_tokens(), vec!["tokX"]);
    assert_eq!(rig.count(|c| &c.cluster_received), 3);
    // The same Call-ID from another node is another request.
    let body = ClusterMessage::from(removed).encode().unwrap();
    let mut m = ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.4:5060")).unwrap();
    m.request = Some("c2@10.0.0.3".into());
    rig.handle(ToDispatcher::Cluster(m));
    rig.engine.flush_store();
    assert!(rig.stored_tokens().is_empty());
    assert_eq!(rig.count(|c| &c.cluster_received), 4);
}

#[test]
fn devices_forgotten_here_are_told_to_the_cluster() {
    let mut rig = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    rig.handle(usrloc_event("tokA", 5060, true, true));
    rig.host.broadcast.borrow_mut().clear();
    // The phone unregisters here.
    rig.handle(ToDispatcher::Contact(ContactEvent {
        local: true,
        ..fcm_contact(ContactChange::Removed, "tokA", Some("<urn:uuid:a>"), 5060)
    }));
    assert_eq!(
        rig.told(),
        vec![News::Removed {
            aor: AOR.into(),
            device_id: "<urn:uuid:a>".into()
        }]
    );
    // push.remove of a device registered again.
    rig.handle(usrloc_event("tokB", 5060, true, true));
    rig.host.broadcast.borrow_mut().clear();
    assert!(matches!(
        rig.engine.remove_devices(AOR, None),
        Answer::Removed(1)
    ));
    // (an RPC's changes are sent when its message is handled)
    rig.engine.send_announcements(&rig.host);
    assert!(matches!(
        &rig.host.broadcast.borrow()[..],
        [m] if matches!(&m.news, News::Removed { .. })
    ));
    // Without enable_dmq: nothing.
    let mut off = Rig::ok();
    off.handle(usrloc_event("tokA", 5060, true, true));
    assert!(matches!(
        off.engine.remove_devices(AOR, None),
        Answer::Removed(1)
    ));
    off.engine.tick(&off.host);
    assert!(off.host.broadcast.borrow().is_empty());
}

#[test]
fn a_node_holding_a_call_is_told_even_of_a_refresh_elsewhere() {
    // Node A holds calls for the AOR: it tells the cluster, once per call (each may find a
    // device alive elsewhere).
    let mut a = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    a.handle(usrloc_event("tokA", 5060, true, true));
    a.host.broadcast.borrow_mut().clear();
    a.hold((1, 1));
    a.hold((1, 2));
    let told: Vec<News> = a.told();
    assert!(
        matches!(&told[..], [News::Awaiting { aor, seconds }, News::Awaiting { .. }] if aor == AOR && *seconds > 0),
        "{told:?}"
    );

    // Node B knows the device, registered and alive there: a refresh sends nothing...
    let mut b = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    b.handle(usrloc_event("tokA", 5060, true, true));
    b.host.broadcast.borrow_mut().clear();
    b.handle(usrloc_event("tokA", 5060, true, false));
    assert!(b.host.broadcast.borrow().is_empty());
    // ... but once A said it waits for the AOR, the same refresh is news for A.
    let body = ClusterMessage::from(told[0].clone()).encode().unwrap();
    b.handle(ToDispatcher::Cluster(
        ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.1:5060")).unwrap(),
    ));
    // (the device's binding here is alive: A hears of it at once)
    let told_at_once: Vec<News> = b.told();
    assert!(
        matches!(&told_at_once[..], [News::Registered { aor, prid, .. }] if aor == AOR && prid == "tokA"),
        "{told_at_once:?}"
    );
    b.host.broadcast.borrow_mut().clear();
    b.handle(usrloc_event("tokA", 5060, true, false));
    let sent: Vec<News> = b.told();
    assert!(
        matches!(&sent[..], [News::Registered { aor, prid, .. }] if aor == AOR && prid == "tokA"),
        "{sent:?}"
    );
    // Once the wait is over, refreshes are quiet again.
    b.engine
        .forget_stale_waits(now() + Duration::from_secs(3600));
    b.host.broadcast.borrow_mut().clear();
    b.handle(usrloc_event("tokA", 5060, true, false));
    assert!(b.host.broadcast.borrow().is_empty());
}

#[test]
fn a_phone_that_unregistered_here_is_not_offered_to_a_waiting_node() {
    let mut b = Rig::new(Box::new(|_| (200, Duration::ZERO)), |c| c.enable_dmq = true);
    b.handle(usrloc_event("tokA", 5060, true, true));
    b.handle(ToDispatcher::Contact(ContactEvent {
        local: true,
        ..fcm_contact(ContactChange::Removed, "tokA", Some("<urn:uuid:a>"), 5060)
    }));
    b.host.broadcast.borrow_mut().clear();
    // Another node holds a call for the AOR: this node has no live binding of it to offer (a
    // relayed call would find nothing here).
    let body = ClusterMessage::from(News::Awaiting {
        aor: AOR.into(),
        seconds: 35,
    })
    .encode()
    .unwrap();
    b.handle(ToDispatcher::Cluster(
        ClusterMessage::decode(body.as_bytes(), Some("sip:10.0.0.1:5060")).unwrap(),
    ));
    assert!(b.told().is_empty(), "{:?}", b.told());
    // It registers again: that is news for the waiting node.
    b.handle(usrloc_event("tokA", 5060, true, false));
    assert!(
        matches!(&b.told()[..], [News::Registered { .. }, News::Device(_)]),
        "{:?}",
        b.told()
    );
}
