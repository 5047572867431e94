//! Three Kamailio nodes of one cluster (issue 15), each in a network namespace of its own with
//! its own address (10.77.0.11, .12, .13, port 5060), all running cfg-examples/push-cluster.cfg:
//! DMQ between them (the push module's `enable_dmq`), a real PostgreSQL server the test starts as
//! their shared device store, the webhook push server, sipp phones and callers on the test's own
//! address (10.77.0.1). testkit::cluster builds it all inside the test's private network
//! namespace (netns::run_in_private_netns), so nothing of it reaches the machine.
//!
//! What a user would see is checked: the calls' outcomes at the callers and the phones (which
//! node the INVITE came through, from its Via headers), the pushes the push server received
//! (exactly how many), the nodes' push.devices, push.pending and push.stats, their log lines.
//!
//! Run with `--test-threads=2` (as scripts/test.sh and scripts/test-kamailio.sh do): about 40 s
//! of wall time on 2 cores (each test builds its own cluster, in its own private namespace:
//! PostgreSQL and three Kamailio nodes start in about 5 s; the longest test, the cut link, takes
//! about 20 s).

use std::time::Duration;
use testkit::cluster::*;
use testkit::netns::run_in_private_netns;
use testkit::wake::*;
use testkit::*;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// A phone of `user` with a token and an instance of its own.
fn phone(user: &str, transport: &'static str) -> Phone {
    let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let token = format!("{hex:0<16}{}", "0123456789abcdef".repeat(3));
    Phone {
        instance: format!("00000000-0000-4000-8000-{:0>12}", &hex[..hex.len().min(12)]),
        ..Phone::new(user, &token, transport)
    }
}

/// The Via headers of the INVITE of call `call_id` in a sipp phone's message trace, top first
/// (the trace may hold other runs of the same scenario in the same directory).
fn invite_vias(trace: &str, call_id: &str) -> Vec<String> {
    let call = format!("call-id: {}", call_id.to_ascii_lowercase());
    trace
        .split("INVITE sip:")
        .skip(1)
        .map(|m| {
            m.lines()
                .take_while(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
        })
        .find(|headers| {
            headers
                .iter()
                .any(|l| l.trim().to_ascii_lowercase() == call)
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(str::to_string)
        .collect()
}

/// Asserts that the INVITE of call `call_id` the phone received came from node `through`,
/// which had it from node `held_on` (two Via headers of the nodes', over the caller's).
fn came_through(trace: &str, call_id: &str, through: usize, held_on: usize) {
    let vias = invite_vias(trace, call_id);
    assert!(
        vias.len() >= 3,
        "the phone's INVITE for {call_id} has too few Via headers: {vias:#?}\n{trace}"
    );
    // `Via: SIP/2.0/UDP 10.77.0.12;branch=...` (Kamailio leaves the default port 5060 out).
    let at = |v: &str, i: usize| {
        let sent_by = v.split_whitespace().nth(2).unwrap_or_default();
        let host = sent_by.split(';').next().unwrap_or_default();
        host == node_ip(i) || host == format!("{}:{SIP_PORT}", node_ip(i))
    };
    assert!(
        at(&vias[0], through),
        "the INVITE did not come from node {} ({}): {vias:#?}",
        letter(through),
        node_ip(through)
    );
    assert!(
        at(&vias[1], held_on),
        "node {} did not have the INVITE from node {}: {vias:#?}",
        letter(through),
        letter(held_on)
    );
    assert!(
        vias[2].contains(TEST_IP),
        "the caller's Via is not under them: {vias:#?}"
    );
}

/// A caller on node `at` calls `user`; the call is held there and pushed: waits until the push
/// server has `pushes` pushes in all and the node lists the call in push.pending.
fn held_call(
    c: &Cluster,
    at: usize,
    user: &str,
    transport: &str,
    call_id: &str,
    pushes: usize,
) -> Sipp {
    let call = caller(c.node(at), user, transport, call_id);
    let got = c.wait_pushes(pushes, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        pushes,
        "node {} did not push for the call to {user}:\n{}",
        letter(at),
        c.logs()
    );
    assert_eq!(got[pushes - 1].json()["callee_aor"], user);
    let id = call_id.replace("%u", "1");
    assert!(
        eventually(Duration::from_secs(5), || pending(c.node(at)).contains(&id)),
        "node {} does not hold {id}: {}",
        letter(at),
        pending(c.node(at))
    );
    call
}

/// The woken phone registers on node `on` and gets the call (`call_id`) held on node
/// `held_on` through `on`; the caller's call is answered. Returns the phone's trace.
fn woken_on(
    c: &Cluster,
    phone: &Phone,
    on: usize,
    held_on: usize,
    call: Sipp,
    call_id: &str,
) -> String {
    let device = phone.wake(c.node(on), call_id);
    let (ok, trace) = device.wait(Duration::from_secs(45));
    assert!(
        ok,
        "the phone, registered on {}, did not get the call held on {}:\n{trace}\n{}",
        letter(on),
        letter(held_on),
        c.logs()
    );
    let (ok, out) = call.wait(Duration::from_secs(45));
    assert!(
        ok,
        "the caller's call was not answered:\n{out}\n{}",
        c.logs()
    );
    if on != held_on {
        came_through(&trace, &call_id.replace("%u", "1"), on, held_on);
        relayed(c, held_on, on);
    }
    trace
}

/// Node `held_on`'s log says it relayed a resumed call to node `to` (push_cluster_relay()).
fn relayed(c: &Cluster, held_on: usize, to: usize) {
    let line = format!("relayed to {}, where the phone registered", dmq_uri(to));
    assert!(
        c.node(held_on).log_text().contains(&line),
        "no '{line}' in node {}'s log:\n{}",
        letter(held_on),
        c.logs()
    );
}

/// How many "resuming <k> call(s)" lines for DMQ news node `i`'s log has.
fn dmq_resumes(c: &Cluster, i: usize) -> usize {
    c.node(i)
        .log_text()
        .lines()
        .filter(|l| {
            l.contains("registered on another node (DMQ from ") && l.contains("): resuming")
        })
        .count()
}

/// No more pushes than `n` arrive within a while.
fn exactly_pushes(c: &Cluster, n: usize) {
    c.wait_pushes(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let pushes = c.pushes();
    assert_eq!(
        pushes.len(),
        n,
        "{:#?}\n{}",
        pushes.iter().map(|r| r.json()).collect::<Vec<_>>(),
        c.logs()
    );
}

fn held_on_a_delivered_through_b(test: &str, transport: &'static str) {
    if !run_in_private_netns(test) {
        return;
    }
    let c = Cluster::start(&format!("c3-{transport}"), 3, NodeOptions::default());
    let alice = phone("alice", transport);
    alice.register_then_sleep(c.node(A));
    // Every node knows alice's device (shared store, DMQ device news).
    c.wait_same_devices(1, Duration::from_secs(10));

    let call_id = format!("c3-{transport}-%u");
    let call = held_call(&c, A, "alice", transport, &call_id, 1);
    let push = &c.pushes()[0];
    assert_eq!(push.json()["token"], alice.token.as_str());
    woken_on(&c, &alice, B, A, call, &call_id);

    // A resumed the call once, because of B's DMQ message, and relayed it to B; B and C held
    // nothing and pushed nothing.
    assert_eq!(dmq_resumes(&c, A), 1, "{}", c.logs());
    assert!(no_call_pending(c.node(A)), "{}", pending(c.node(A)));
    assert_eq!(c.stat(A, "suspended"), 1);
    assert_eq!(c.stat(A, "resumed"), 1);
    for i in [B, C] {
        assert_eq!(c.stat(i, "suspended"), 0, "node {}", letter(i));
        assert_eq!(c.stat(i, "pushes_sent"), 0, "node {}", letter(i));
    }
    exactly_pushes(&c, 1);
    // Neither the full token nor the database password shows in a log.
    for i in [A, B, C] {
        let log = c.node(i).log_text();
        assert!(!log.contains(&alice.token), "{log}");
        assert!(!log.contains(&c.pg.password), "{log}");
    }
}

#[test]
fn udp_call_held_on_a_is_delivered_through_b_when_the_phone_registers_on_b() {
    held_on_a_delivered_through_b(
        "udp_call_held_on_a_is_delivered_through_b_when_the_phone_registers_on_b",
        "udp",
    );
}

#[test]
fn tcp_call_held_on_a_is_delivered_through_b_when_the_phone_registers_on_b() {
    held_on_a_delivered_through_b(
        "tcp_call_held_on_a_is_delivered_through_b_when_the_phone_registers_on_b",
        "tcp",
    );
}

/// A device registered on A and asleep is pushed by C for a call that comes to C: when C started
/// after the device's binding expired (C loads it from PostgreSQL), and when C was running as it
/// registered (DMQ told C).
#[test]
fn a_device_asleep_after_registering_on_a_is_pushed_by_c_even_if_c_started_later() {
    if !run_in_private_netns(
        "a_device_asleep_after_registering_on_a_is_pushed_by_c_even_if_c_started_later",
    ) {
        return;
    }
    let mut c = Cluster::new("c3-later", 3, NodeOptions::default());
    c.start_node(A);
    c.start_node(B);
    c.wait_mesh();
    let alice = phone("alice", "udp");
    alice.register_then_sleep(c.node(A));

    // C starts after alice's binding expired: it never saw her register.
    c.start_node(C);
    c.wait_mesh();
    assert_eq!(
        c.wait_same_devices(1, Duration::from_secs(10))[0].0,
        "alice"
    );
    let call = held_call(&c, C, "alice", "udp", "c3-later-alice-%u", 1);
    assert_eq!(c.pushes()[0].json()["token"], alice.token.as_str());
    woken_on(&c, &alice, C, C, call, "c3-later-alice-%u");

    // C running: bob registers on A, falls asleep; C pushes him for a call to C and the call
    // reaches him through A, where he registers again.
    let bob = phone("bob", "udp");
    bob.register_then_sleep(c.node(A));
    c.wait_same_devices(2, Duration::from_secs(10));
    let call = held_call(&c, C, "bob", "udp", "c3-later-bob-%u", 2);
    assert_eq!(c.pushes()[1].json()["token"], bob.token.as_str());
    woken_on(&c, &bob, A, C, call, "c3-later-bob-%u");

    assert_eq!(c.stat_reaching(C, "pushes_sent", 2), 2);
    assert_eq!(c.stat(C, "resumed"), 2);
    assert_eq!(dmq_resumes(&c, C), 1, "{}", c.logs());
    for i in [A, B] {
        assert_eq!(c.stat(i, "pushes_sent"), 0, "node {}", letter(i));
        assert_eq!(c.stat(i, "suspended"), 0, "node {}", letter(i));
    }
    exactly_pushes(&c, 2);
}

/// Two callers call alice, one on A and one on C: both calls are held (each node pushes her
/// once); her phone registers on B and gets both calls, each through B.
#[test]
fn two_calls_held_on_a_and_c_are_both_delivered_when_the_phone_registers_on_b() {
    if !run_in_private_netns(
        "two_calls_held_on_a_and_c_are_both_delivered_when_the_phone_registers_on_b",
    ) {
        return;
    }
    let c = Cluster::start("c3-two", 3, NodeOptions::default());
    let alice = phone("alice", "udp");
    alice.register_then_sleep(c.node(A));
    c.wait_same_devices(1, Duration::from_secs(10));
    let first = held_call(&c, A, "alice", "udp", "c3-two-a-%u", 1);
    let second = held_call(&c, C, "alice", "udp", "c3-two-c-%u", 2);

    // The phone's SIP stack answers both calls on its port; it registers on B from there.
    let port = free_port();
    let port_text = port.to_string();
    let answering = c
        .node(B)
        .sipp("device_answer.xml", &["-p", port_text.as_str(), "-m", "2"]);
    std::thread::sleep(Duration::from_millis(200));
    let keys = alice.keys(3600, port);
    let args: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (ok, out) = c
        .node(B)
        .sipp("device_register.xml", &args)
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    for (name, call) in [("on A", first), ("on C", second)] {
        let (ok, out) = call.wait(Duration::from_secs(30));
        assert!(
            ok,
            "the call held {name} was not answered:\n{out}\n{}",
            c.logs()
        );
    }
    let (ok, trace) = answering.wait(Duration::from_secs(20));
    assert!(ok, "the phone did not answer both calls:\n{trace}");
    // Both INVITEs came through B, one from A, one from C.
    for (held_on, id) in [(A, "c3-two-a-1"), (C, "c3-two-c-1")] {
        came_through(&trace, id, B, held_on);
        relayed(&c, held_on, B);
    }
    for i in [A, C] {
        assert_eq!(c.stat(i, "suspended"), 1, "node {}", letter(i));
        assert_eq!(c.stat(i, "resumed"), 1, "node {}", letter(i));
        assert_eq!(
            c.stat_reaching(i, "pushes_sent", 1),
            1,
            "node {}",
            letter(i)
        );
        assert_eq!(dmq_resumes(&c, i), 1, "node {}:\n{}", letter(i), c.logs());
        assert!(no_call_pending(c.node(i)), "{}", pending(c.node(i)));
    }
    assert_eq!(c.stat(B, "suspended"), 0);
    assert_eq!(c.stat(B, "pushes_sent"), 0);
    exactly_pushes(&c, 2);
}

/// `kill -9` of node A (every process of it at once) while B and C hold calls for devices that
/// registered on A: B and C keep their calls and deliver them when the phones register on C and
/// B, their devices intact; a device registers on B while A is down; A, restarted, knows all
/// three devices again and delivers a call to the new one.
#[test]
fn kill_9_of_a_node_costs_the_others_nothing_and_the_node_catches_up_when_restarted() {
    if !run_in_private_netns(
        "kill_9_of_a_node_costs_the_others_nothing_and_the_node_catches_up_when_restarted",
    ) {
        return;
    }
    let mut c = Cluster::start("c3-kill", 3, NodeOptions::default());
    let (alice, bob, erin) = (
        phone("alice", "udp"),
        phone("bob", "udp"),
        phone("erin", "udp"),
    );
    alice.register_then_sleep(c.node(A));
    bob.register_then_sleep(c.node(A));
    let before = c.wait_same_devices(2, Duration::from_secs(10));
    let alice_call = held_call(&c, B, "alice", "udp", "c3-kill-alice-%u", 1);
    let bob_call = held_call(&c, C, "bob", "udp", "c3-kill-bob-%u", 2);

    c.kill9(A);
    // B and C still hold their calls and know both devices.
    for (i, id) in [(B, "c3-kill-alice-1"), (C, "c3-kill-bob-1")] {
        assert!(pending(c.node(i)).contains(id), "{}", pending(c.node(i)));
        assert_eq!(c.devices(i), before, "node {}", letter(i));
    }
    // The phones wake on the other node still running: each call goes through it.
    woken_on(&c, &alice, C, B, alice_call, "c3-kill-alice-%u");
    woken_on(&c, &bob, B, C, bob_call, "c3-kill-bob-%u");
    for i in [B, C] {
        assert_eq!(c.stat(i, "resumed"), 1, "node {}", letter(i));
        assert!(no_call_pending(c.node(i)), "{}", pending(c.node(i)));
    }
    // A device new while A is down.
    erin.register_then_sleep(c.node(B));
    c.wait_same_devices(3, Duration::from_secs(10));

    // A comes back: it knows the three devices, and pushes erin for a call to A.
    c.start_node(A);
    c.wait_mesh();
    let after = c.wait_same_devices(3, Duration::from_secs(15));
    assert!(after.iter().any(|d| d.0 == "erin"), "{after:#?}");
    let erin_call = held_call(&c, A, "erin", "udp", "c3-kill-erin-%u", 3);
    assert_eq!(c.pushes()[2].json()["token"], erin.token.as_str());
    woken_on(&c, &erin, C, A, erin_call, "c3-kill-erin-%u");
    assert_eq!(c.stat(A, "resumed"), 1);
    exactly_pushes(&c, 3);
}

/// C's link cut for 5 s while C holds a call, while the phone of that call registers on A, while
/// another call is held and delivered between A and B, and while a new device registers on B.
/// Once it heals: C resumes its call once (DMQ's retransmission reached it) and delivers it
/// through A; no node resumed anything twice; the push server got one push per held call; every
/// node knows the same devices (the new one included); calls held on any node reach sleeping
/// phones registering on another.
#[test]
fn a_cut_link_brings_no_duplicate_resume_no_push_storm_and_heals_to_one_state() {
    if !run_in_private_netns(
        "a_cut_link_brings_no_duplicate_resume_no_push_storm_and_heals_to_one_state",
    ) {
        return;
    }
    let c = Cluster::start("c3-cut", 3, NodeOptions::default());
    let (alice, carol, dave) = (
        phone("alice", "udp"),
        phone("carol", "udp"),
        phone("dave", "udp"),
    );
    alice.register_then_sleep(c.node(A));
    carol.register_then_sleep(c.node(A));
    c.wait_same_devices(2, Duration::from_secs(10));
    let carol_call = held_call(&c, C, "carol", "udp", "c3-cut-carol-%u", 1);

    c.net.cut(C);
    let cut_at = std::time::Instant::now();
    // While C is cut off: a call to alice held on A, delivered through B...
    let alice_call = held_call(&c, A, "alice", "udp", "c3-cut-alice-%u", 2);
    woken_on(&c, &alice, B, A, alice_call, "c3-cut-alice-%u");
    // ... carol's phone wakes on A (C does not hear it yet) ...
    let carol_phone = carol.wake(c.node(A), "c3-cut-carol-%u");
    // ... and dave's phone registers on B for the first time, then sleeps.
    dave.register_then_sleep(c.node(B));
    let cut = Duration::from_secs(5);
    std::thread::sleep(cut.saturating_sub(cut_at.elapsed()));
    // Nothing of the news reached C: it still holds carol's call and does not know dave.
    assert_eq!(c.stat(C, "resumed"), 0);
    assert!(
        !c.devices(C).iter().any(|d| d.0 == "dave"),
        "{:#?}",
        c.devices(C)
    );
    c.net.heal(C);

    // C hears of carol's registration once it is back, resumes its call and relays it to A.
    let (ok, trace) = carol_phone.wait(Duration::from_secs(45));
    assert!(
        ok,
        "carol's phone did not get the call held on C:\n{trace}\n{}",
        c.logs()
    );
    came_through(&trace, "c3-cut-carol-1", A, C);
    let (ok, out) = carol_call.wait(Duration::from_secs(45));
    assert!(ok, "carol's caller:\n{out}\n{}", c.logs());

    // Each held call resumed once, on the node that held it; one push per held call.
    assert_eq!(c.stat(A, "resumed"), 1);
    assert_eq!(c.stat(C, "resumed"), 1);
    assert_eq!(c.stat(B, "resumed"), 0);
    assert_eq!(dmq_resumes(&c, A), 1, "{}", c.logs());
    assert_eq!(dmq_resumes(&c, C), 1, "{}", c.logs());
    assert_eq!(dmq_resumes(&c, B), 0, "{}", c.logs());
    exactly_pushes(&c, 2);

    // One state: every node knows alice, carol and dave (registered during the cut).
    let devices = c.wait_same_devices(3, Duration::from_secs(20));
    let aors: Vec<&str> = devices.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(aors, ["alice", "carol", "dave"]);
    c.wait_mesh();

    // Calls work from every node, to phones asleep (no live binding anywhere: alice and carol
    // woke during the cut and are reachable where they registered): dave, and two phones that
    // register after the cut, each pushed once and delivered through another node.
    let (erin, frank) = (phone("erin", "udp"), phone("frank", "udp"));
    erin.register_then_sleep(c.node(C));
    frank.register_then_sleep(c.node(A));
    c.wait_same_devices(5, Duration::from_secs(10));
    let call = held_call(&c, C, "dave", "udp", "c3-cut-dave-%u", 3);
    woken_on(&c, &dave, A, C, call, "c3-cut-dave-%u");
    let call = held_call(&c, A, "erin", "udp", "c3-cut-erin-%u", 4);
    woken_on(&c, &erin, B, A, call, "c3-cut-erin-%u");
    let call = held_call(&c, B, "frank", "udp", "c3-cut-frank-%u", 5);
    woken_on(&c, &frank, C, B, call, "c3-cut-frank-%u");
    exactly_pushes(&c, 5);
    assert_eq!(c.stat(A, "resumed"), 2);
    assert_eq!(c.stat(B, "resumed"), 1);
    assert_eq!(c.stat(C, "resumed"), 2);
    for i in [A, B, C] {
        assert!(no_call_pending(c.node(i)), "{}", pending(c.node(i)));
    }
}

#[test]
fn postgres_stopped_for_10_s_costs_no_call_and_loses_no_device() {
    if !run_in_private_netns("postgres_stopped_for_10_s_costs_no_call_and_loses_no_device") {
        return;
    }
    let mut c = Cluster::start("c3-pgdown", 3, NodeOptions::default());
    let alice = phone("alice", "udp");
    alice.register_then_sleep(c.node(A));
    c.wait_same_devices(1, Duration::from_secs(10));

    // The shared store goes away for 10 s.
    let stopped = std::time::Instant::now();
    c.pg.stop();
    // A call to a device the nodes know still wakes it: held on C, the phone registers on B.
    let call = held_call(&c, C, "alice", "udp", "c3-pg-alice-%u", 1);
    woken_on(&c, &alice, B, C, call, "c3-pg-alice-%u");
    // A phone registers on B meanwhile: every node knows it at once (DMQ, not the database).
    let dave = phone("dave", "udp");
    dave.register_then_sleep(c.node(B));
    let devices = c.wait_same_devices(2, Duration::from_secs(10));
    assert!(devices.iter().any(|d| d.0 == "dave"), "{devices:?}");
    let rows = |c: &Cluster| {
        c.pg.psql(
            &c.pg.database,
            "SELECT count(*) FROM push_devices WHERE aor = 'dave'",
        )
        .unwrap_or_default()
        .trim()
        .to_string()
    };
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    c.pg.start_again();
    // What B queued while the database was away is written once it is back.
    assert!(
        eventually(Duration::from_secs(30), || rows(&c) == "1"),
        "dave was not stored after the database came back: {}\n{}",
        rows(&c),
        c.logs()
    );
    // And a call from A to the device registered during the outage wakes it.
    let call = held_call(&c, A, "dave", "udp", "c3-pg-dave-%u", 2);
    woken_on(&c, &dave, A, A, call, "c3-pg-dave-%u");
    exactly_pushes(&c, 2);
    // No secret of the store in any log.
    assert!(
        !c.logs().contains(&c.pg.password),
        "the database password was logged"
    );
}
