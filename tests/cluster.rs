//! Two Kamailio nodes running cfg-examples/push-cluster.cfg, with Kamailio's DMQ between them and
//! no dmq_usrloc (each node has its own location table): a call held on node A is delivered when
//! the phone, woken by A's push, registers on node B. What carries the news from B to A is the
//! push module's own DMQ message (`enable_dmq`); A relays the call to B (push_cluster_relay()),
//! which has the phone's binding. Without enable_dmq the same call times out on A.
//! (Three nodes: tests/cluster3.rs.)

use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

/// A node of the pair: `setup` is its own, `peer_port` the other node's SIP port (DMQ notifies it).
fn node(
    setup: Setup,
    push_url: &str,
    peer_port: u16,
    enable_dmq: bool,
    timeout: u32,
    debug: &str,
    extra: &[(&str, &str)],
) -> Kamailio {
    let cfg = repo_root().join("cfg-examples/push-cluster.cfg");
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    let me = format!("\"sip:127.0.0.1:{}\"", setup.sip_port);
    let peer = format!("\"sip:127.0.0.1:{peer_port}\"");
    let dmq = if enable_dmq { "1" } else { "0" };
    let mut defines = vec![
        ("DMQ_SELF", me.as_str()),
        ("DMQ_NOTIFY", peer.as_str()),
        ("ENABLE_DMQ", dmq),
        ("DEBUG_LEVEL", debug),
    ];
    defines.extend_from_slice(extra);
    start_with_app(setup, &cfg, &app, timeout, &defines)
}

/// Two nodes that know each other through DMQ (each lists the other as active).
fn pair(
    name: &str,
    push_url: &str,
    enable_dmq: bool,
    timeout: u32,
    debug: &str,
    extra: &[(&str, &str)],
) -> (Kamailio, Kamailio) {
    let (sa, sb) = (
        Setup::new(&format!("{name}-a")),
        Setup::new(&format!("{name}-b")),
    );
    let (pa, pb) = (sa.sip_port, sb.sip_port);
    let a = node(sa, push_url, pb, enable_dmq, timeout, debug, extra);
    let b = node(sb, push_url, pa, enable_dmq, timeout, debug, extra);
    for (k, other) in [(&a, pb), (&b, pa)] {
        assert!(
            eventually(Duration::from_secs(20), || dmq_sees_active(k, other)),
            "the DMQ nodes do not see each other:\n{}",
            k.kamcmd(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
    (a, b)
}

fn held_on_a_then_phone_registers_on_b(
    name: &str,
    transport: &'static str,
    enable_dmq: bool,
    extra: &[(&str, &str)],
) -> (Kamailio, Kamailio) {
    let (pushes, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let (a, b) = pair(
        name,
        &server.url(),
        enable_dmq,
        if enable_dmq { 20 } else { 5 },
        "2",
        extra,
    );
    let phone = Phone::new(
        "alice",
        "c1u57e12c1u57e12c1u57e12c1u57e12c1u57e12c1u57e12c1u57e12c1u57e12",
        transport,
    );
    // The phone registered at A once, and fell asleep (its binding expired).
    phone.register_then_sleep(&a);

    let call_id = format!("{name}-%u");
    if enable_dmq {
        let call = caller(&a, "alice", transport, &call_id);
        let push = pushes
            .recv_timeout(Duration::from_secs(10))
            .expect("A pushed nothing");
        assert_eq!(push.json()["callee_aor"], "alice");
        assert!(
            pending(&a).contains(&format!("{name}-1")),
            "{}",
            pending(&a)
        );
        // The woken phone registers at B, then gets the call held on A.
        // (Its 180 and 200, relayed through both nodes, may reach the caller in either order.)
        let device = phone.wake(&b, &call_id);
        let (ok, out) = device.wait(Duration::from_secs(30));
        assert!(ok, "the phone, registered at B, did not get the call held on A:\n{out}\n--- A:\n{}\n--- B:\n{}", a.log_text(), b.log_text());
        let (ok, out) = call.wait(Duration::from_secs(30));
        assert!(ok, "the caller's call was not answered:\n{out}");
    } else {
        let call = caller_expecting(&a, "alice", "udp", 480);
        pushes
            .recv_timeout(Duration::from_secs(10))
            .expect("A pushed nothing");
        phone.register_for(&b, 3600);
        let (ok, out) = call.wait(Duration::from_secs(30));
        assert!(
            ok,
            "without enable_dmq the call held on A must time out (480):\n{out}"
        );
    }
    (a, b)
}

#[test]
fn call_held_on_a_is_delivered_when_the_phone_registers_on_b() {
    delivered_through_b("cluster", "udp");
}

#[test]
fn over_tcp_the_call_reaches_the_phone_on_its_connection_to_b() {
    delivered_through_b("cluster-tcp", "tcp");
}

fn delivered_through_b(name: &str, transport: &'static str) {
    let (a, b) = held_on_a_then_phone_registers_on_b(name, transport, true, &[]);
    // A resumed the call because of B's DMQ message (A has no binding for the phone: no
    // dmq_usrloc), then relayed it to B, the sender of that message.
    let log_a = assert_resumed_and_relayed_to(&a, &b, "alice", 1);
    assert!(no_call_pending(&a), "{}", pending(&a));
    assert_eq!(stat(&a, "suspended"), 1);
    assert_eq!(stat(&a, "resumed"), 1);
    // B held nothing and pushed nothing: it only told A and delivered the relayed call.
    assert_eq!(stat(&b, "suspended"), 0);
    assert_eq!(stat(&b, "pushes_sent"), 0);
    // The full token never shows in either log.
    for log in [&log_a, &b.log_text()] {
        assert!(!log.contains("c1u57e12c1u57e12c1u57e12"), "{log}");
    }
}

#[test]
fn without_enable_dmq_the_call_held_on_a_times_out() {
    let (a, _b) = held_on_a_then_phone_registers_on_b("nocluster", "udp", false, &[]);
    assert!(!a.log_text().contains("registered on another node"));
    assert_eq!(stat(&a, "resumed"), 0);
    assert_eq!(stat(&a, "timed_out"), 1);
}

#[test]
fn with_dmq_usrloc_too_the_call_is_resumed_once() {
    // dmq_usrloc replicates B's binding to A, and A's usrloc callback fires for it, possibly
    // before B's 200 OK is out: with enable_dmq that replica resumes nothing, B's DMQ message
    // (sent after its 200 OK) does, once, and the call goes through B (which holds the phone's
    // connection) rather than to the replicated binding. The phone gets one INVITE, after its
    // 200 OK (sipp fails on anything else).
    let (a, b) =
        held_on_a_then_phone_registers_on_b("cluster-ul", "udp", true, &[("WITH_DMQ_USRLOC", "1")]);
    let log_a = assert_resumed_and_relayed_to(&a, &b, "alice", 1);
    assert!(
        !log_a.contains("device of alice registered: resuming"),
        "{log_a}"
    );
    // The call went through B, so the phone's answer came back through B to A's transaction:
    // nothing is left held on A.
    assert!(
        eventually(Duration::from_secs(5), || no_call_pending(&a)),
        "{}",
        pending(&a)
    );
    assert_eq!(stat(&a, "suspended"), 1);
    assert_eq!(stat(&a, "resumed"), 1);
    assert_eq!(stat(&b, "suspended"), 0);
    // A never sent on the binding dmq_usrloc replicated to it (debug is off: B would log a
    // refused or unexpected message only as a warning).
    assert!(!b.log_text().contains("refused"), "{}", b.log_text());
}

/// The phone registers (a 3600 s binding) with its Contact on `contact_port`, and the module has
/// stored it.
fn register_at(phone: &Phone, k: &Kamailio, contact_port: u16) {
    let port_text = contact_port.to_string();
    let keys = phone.keys(3600, contact_port);
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend(["-p", port_text.as_str()]);
    let (ok, out) = Sipp::spawn("device_register.xml", k.sip_port(), &args, &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "device registration failed:\n{out}");
}

#[test]
fn refreshes_of_an_unchanged_binding_send_no_dmq_message() {
    let server = PushServer::ok(None);
    // Debug lines on: each DMQ message the module sends and receives is logged.
    let (a, b) = pair("refresh", &server.url(), true, 20, "3", &[]);
    let phone = Phone::new(
        "carol",
        "4ef4e54ef4e54ef4e54ef4e54ef4e54ef4e54ef4e54ef4e54ef4e54ef4e54ef4",
        "udp",
    );
    let sent = |k: &Kamailio| k.log_text().matches("told the cluster").count();
    let heard = |k: &Kamailio| {
        k.log_text()
            .matches("a device of carol registered on another node")
            .count()
    };
    let learned = |k: &Kamailio| {
        k.log_text()
            .matches("device of carol learned from another node")
            .count()
    };
    // A fresh binding at A: B hears of it once.
    let contact_port = free_port();
    register_at(&phone, &a, contact_port);
    assert!(
        eventually(Duration::from_secs(5), || heard(&b) == 1),
        "B did not hear of the fresh binding:\n{}",
        b.log_text()
    );
    // A logs that it told the cluster after the message left: B may log first.
    assert!(
        eventually(Duration::from_secs(5), || sent(&a) == 1),
        "A logged {} messages sent",
        sent(&a)
    );
    // ... and of the new device (B can push it now).
    assert!(
        eventually(Duration::from_secs(5), || learned(&b) == 1),
        "{}",
        b.log_text()
    );
    assert!(
        b.kamcmd(&["push.devices", "carol"])
            .unwrap_or_default()
            .contains("4ef4e5"),
        "{:?}",
        b.kamcmd(&["push.devices", "carol"])
    );
    // 50 refreshes of the same binding (same Contact, same token) at A: no DMQ message.
    const REFRESHES: usize = 50;
    for _ in 0..REFRESHES {
        register_at(&phone, &a, contact_port);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sent(&a), 1, "{REFRESHES} refreshes sent DMQ messages");
    assert_eq!(heard(&b), 1, "{}", b.log_text());
    assert_eq!(learned(&b), 1, "{}", b.log_text());
    // The statistics say the same: a `registered` and a `device` message, nothing since.
    assert_eq!(stat(&a, "cluster_sent"), 2);
    assert_eq!(stat(&b, "cluster_received"), 2);
    // The phone comes back on another port (it woke on a new connection): that is news.
    register_at(&phone, &a, free_port());
    assert!(
        eventually(Duration::from_secs(5), || heard(&b) == 2),
        "{}",
        b.log_text()
    );
    assert!(
        eventually(Duration::from_secs(5), || sent(&a) == 2),
        "A logged {} messages sent",
        sent(&a)
    );
    // (its Contact changed: B learns the device's new details too)
    assert!(
        eventually(Duration::from_secs(5), || learned(&b) == 2),
        "{}",
        b.log_text()
    );
    eprintln!("DMQ messages sent for {REFRESHES} REGISTER refreshes of an unchanged device: 0");
}

#[test]
fn enable_dmq_without_the_dmq_module_stops_kamailio_saying_so() {
    let setup = Setup::new("dmq-missing");
    let cfg = format!(
        "{}loadmodule \"sl.so\"\nmodparam(\"push\", \"enable_dmq\", 1)\nrequest_route {{\n  sl_send_reply(\"200\", \"OK\");\n}}\n\
         route[PUSH_RESUME] {{\n  t_reply(\"480\", \"Temporarily Unavailable\");\n}}\n",
        setup.preamble(2)
    );
    let mut k = Kamailio::spawn(setup, &cfg, &[]);
    let status = k
        .wait_exit(Duration::from_secs(15))
        .expect("kamailio did not stop");
    assert!(!status.success());
    let log = k.log_text();
    assert!(
        log.contains("needs the dmq module: loadmodule \"dmq.so\" before \"push.so\""),
        "{log}"
    );
}

/// Sends one KDMQ request for the push peer with `body` to `k` over UDP, from a new socket and
/// with a Call-ID of its own; returns the status line of its answer.
fn kdmq(k: &Kamailio, body: &[u8]) -> String {
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    kdmq_from(&socket, k, body, &format!("kdmq-{n}@test"))
}

/// Sends one KDMQ request with `body` and `call_id` from `socket` (the sending node's address)
/// to `k`; returns the status line of its answer. The same `call_id` from the same socket is
/// what tm's retransmission of a request looks like.
fn kdmq_from(socket: &std::net::UdpSocket, k: &Kamailio, body: &[u8], call_id: &str) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let port = k.sip_port();
    let mut request = format!(
        "KDMQ sip:push@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\n\
         From: <sip:push@{me}>;tag=t-{call_id}\r\n\
         To: <sip:push@127.0.0.1:{port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 KDMQ\r\n\
         Max-Forwards: 1\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n",
        len = body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    socket.send_to(&request, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("no answer to KDMQ");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        // 100 Trying is not the answer.
        if !first.starts_with("SIP/2.0 1") {
            return first;
        }
    }
}

#[test]
fn a_retransmitted_dmq_request_is_acted_on_once() {
    let server = PushServer::ok(None);
    let (a, _b) = pair("kdmq-again", &server.url(), true, 20, "3", &[]);
    let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let device = br#"{"type":"device","v":1,"aor":"erin","device_id":"token:e1e1e1e1e1e1","provider":"fcm","prid":"e1e1e1e1e1e1","contact":"sip:erin@10.0.0.5:5060;pn-provider=fcm;pn-prid=e1e1e1e1e1e1","updated_at":1764633600}"#;
    let removed = br#"{"type":"removed","v":1,"aor":"erin","device_id":"token:e1e1e1e1e1e1"}"#;
    let known = || {
        a.kamcmd(&["push.devices", "erin"])
            .unwrap_or_default()
            .contains("fcm")
    };
    let before = stat(&a, "cluster_received");
    // The other node stores the device, forgets it, and stores it again: three requests.
    for (body, call_id, after) in [
        (&device[..], "d1@node", true),
        (&removed[..], "r1@node", false),
        (&device[..], "d2@node", true),
    ] {
        let status = kdmq_from(&node, &a, body, call_id);
        assert!(status.starts_with("SIP/2.0 200"), "{status}");
        assert!(
            eventually(Duration::from_secs(5), || known() == after),
            "after {call_id}: {:?}",
            a.kamcmd(&["push.devices", "erin"])
        );
    }
    // tm retransmits the removal (DMQ's answer to it was lost): answered again, not acted on,
    // so the device stored since stays.
    let status = kdmq_from(&node, &a, removed, "r1@node");
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    assert!(
        eventually(Duration::from_secs(5), || a
            .log_text()
            .contains("a DMQ message about erin came again from")),
        "{}",
        a.log_text()
    );
    assert!(known(), "{:?}", a.kamcmd(&["push.devices", "erin"]));
    assert_eq!(stat(&a, "cluster_received") - before, 3);
}

#[test]
fn bad_dmq_messages_are_refused_and_harmless() {
    let server = PushServer::ok(None);
    let (a, _b) = pair("kdmq", &server.url(), true, 20, "2", &[]);
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"type\":\"registered\",\"v\":1}".to_vec(),
        b"{\"type\":\"device\",\"v\":1,\"aor\":\"alice\",\"device_id\":\"d\",\"provider\":\"fcm\",\"prid\":\"SECRETSECRET\",\"contact\":\"\",\"updated_at\":1}".to_vec(),
        b"{\"type\":\"registered\",\"v\":9,\"aor\":\"alice\",\"provider\":\"apns\",\"prid\":\"SECRETSECRET\"}".to_vec(),
        b"{\"type\":\"registered\",\"v\":1,\"aor\":\"al\\nice\",\"provider\":\"apns\",\"prid\":\"SECRETSECRET\"}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        format!(
            "{{\"type\":\"registered\",\"v\":1,\"aor\":\"alice\",\"provider\":\"apns\",\"prid\":\"{}\"}}",
            "x".repeat(5000)
        )
        .into_bytes(),
    ];
    for body in &bad {
        let status = kdmq(&a, body);
        assert!(status.starts_with("SIP/2.0 400"), "{status}");
    }
    // A well-formed one for an AOR with nothing held: accepted, nothing happens.
    let good =
        br#"{"type":"registered","v":1,"aor":"nobody","provider":"apns","prid":"SECRETSECRET"}"#;
    assert!(kdmq(&a, good).starts_with("SIP/2.0 200"));
    // A device another node stored: known here at once.
    let device = br#"{"type":"device","v":1,"aor":"dave","device_id":"token:SECRETSECRET","provider":"fcm","prid":"SECRETSECRET","contact":"sip:dave@10.0.0.5:5060;pn-provider=fcm;pn-prid=SECRETSECRET","updated_at":1764633600}"#;
    assert!(kdmq(&a, device).starts_with("SIP/2.0 200"));
    assert!(
        eventually(Duration::from_secs(5), || a
            .kamcmd(&["push.devices", "dave"])
            .unwrap_or_default()
            .contains("fcm")),
        "{:?}",
        a.kamcmd(&["push.devices", "dave"])
    );
    // Kamailio and the dispatcher are still there; the token never reached the log.
    assert!(a.kamcmd(&["push.stats"]).is_ok());
    let log = a.log_text();
    assert!(
        log.contains("a DMQ message for the push peer refused"),
        "{log}"
    );
    assert!(!log.contains("SECRETSECRET"), "{log}");
}
