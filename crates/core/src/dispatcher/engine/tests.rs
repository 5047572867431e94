//! The engine's state machine, driven as `dispatcher::run` drives it: messages in through
//! [`Engine::handle`], push outcomes back through the main-thread channel into
//! [`Engine::push_done`], [`Engine::tick`] for the periodic duties. The host is a fake that
//! records what it was asked (and can refuse); pushes go to a real local HTTP server (a webhook
//! app) on a real runtime; tests where time matters run on a paused tokio clock, which is the
//! engine's clock.

use super::*;
use crate::calls::{CallEnd, GRACE};
use crate::config::App;
use crate::devices::contact::PushBinding;
use crate::devices::index::AorIndex;
use crate::devices::store::Store;
use crate::ipc::message::{
    Answer, ContactChange, ContactEvent, HeldCall, PendingCall, Question, TmChange, TmEvent,
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
    appended: RefCell<Vec<CallKey>>,
    /// end_call: the key and why.
    ended: RefCell<Vec<(CallKey, CallEnd)>>,
    /// continue_call fails (tm no longer holds the transaction).
    refuse: Cell<bool>,
    /// What append_branches answers.
    branches: Cell<u32>,
}

impl Host for FakeHost {
    fn tick(&self) {}

    fn continue_call(&self, key: CallKey, failed: bool) -> Result<(), String> {
        self.continued.borrow_mut().push((key, failed));
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
            db_path: dir.join("push.db"),
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
        self.handle(ToDispatcher::Contact(ContactEvent {
            change,
            aor: AOR.into(),
            contact: format!("sip:{AOR}@10.0.0.1:5060;pn-provider=fcm;pn-prid={token}"),
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
        }));
    }

    /// push_suspend holds a call to AOR (and counts it, as push_suspend does).
    fn hold(&mut self, key: CallKey) {
        self.shared.held_now.fetch_add(1, Ordering::Relaxed);
        self.handle(ToDispatcher::Held(HeldCall {
            key,
            aor: AOR.into(),
            call_id: format!("call-{}", key.1),
            caller_uri: "sip:bob@example.com".into(),
            caller_name: Some("Bob".into()),
            timeout: 30,
            held_at_ns: crate::latency::monotonic_ns(),
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

    /// The tokens the store holds for AOR.
    fn stored_tokens(&self) -> Vec<String> {
        // The engine batches its writes until its next tick.
        self.engine.flush_store();
        let store = Store::open_reader(&self.ctx.config.db_path).unwrap();
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
    assert!(rig.jobs.try_recv().is_err(), "the stopped push reported");
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
    *db.lock().unwrap() = rig.ctx.config.db_path.clone();
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
    rig.requests(2);
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
        aor: "sip:alice@example.com".into(),
    }) {
        Answer::Devices(devices) => {
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
        Answer::Reloaded(vec![("app".into(), String::new())])
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

/// Issue 12: handling a REGISTER (and the call it resumes) commits nothing to SQLite; the tick
/// commits the batch, once, and a held call is continued before any write.
#[test]
fn registrations_are_committed_by_the_tick_not_on_the_resume_path() {
    let mut rig = Rig::ok();
    let db = rig.ctx.config.db_path.clone();
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
