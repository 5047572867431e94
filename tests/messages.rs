//! Messages for sleeping phones (issue 14): push_suspend() holds a MESSAGE and pushes it as a
//! message (never a call push), one push per device while one is outstanding however many
//! messages wait; the MESSAGE is delivered after the phone's REGISTER, answered 480 when none
//! comes in time, or (cfg-examples/push-msilo.cfg) stored with Kamailio's msilo in SQLite and
//! delivered at the next REGISTER.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "dddd0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

/// Kamailio running `cfg` (push-plain.cfg, push-msilo.cfg) with the webhook app at `url`.
fn start(name: &str, cfg: &str, url: &str, timeout: u32, extra: &[(&str, &str)]) -> Kamailio {
    let cfg = repo_root().join("cfg-examples").join(cfg);
    registrar_from(Setup::new(name), &cfg, url, timeout, extra)
}

/// The woken phone registers and takes `n` MESSAGEs (each answered 200): one sipp listens for
/// them, another registers a Contact naming its port.
fn wake_for_messages(k: &Kamailio, phone: &Phone, n: usize) -> Sipp {
    let port = free_port();
    let (port_text, n_text) = (port.to_string(), n.to_string());
    let taker = Sipp::spawn(
        "device_take_message.xml",
        k.sip_port(),
        &["-p", port_text.as_str(), "-m", n_text.as_str()],
        &k.setup.dir,
    );
    let keys = phone.keys(3600, port);
    let args: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (ok, out) = Sipp::spawn("device_register.xml", k.sip_port(), &args, &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "the woken phone could not register: {out}");
    taker
}

#[test]
fn message_to_a_sleeping_phone_is_pushed_as_a_message_and_delivered_after_its_register() {
    let server = PushServer::ok(None);
    let k = start("msg-deliver", "push-plain.cfg", &server.url(), 20, &[]);
    let phone = Phone::new("alice", TOKEN, "udp");
    phone.register_then_sleep(&k);
    let sent = message_expecting(&k, "alice", "msg-deliver-%u", 200);
    let pushes = settled(&server, 1);
    let push = &pushes[0];
    assert_eq!(push["type"], "message", "{push}");
    assert_eq!(push["call_id"], "msg-deliver-1");
    assert!(
        push["caller_uri"].as_str().unwrap().starts_with("sip:bob@"),
        "{push}"
    );
    assert_eq!(push["caller_name"], "Bob Caller");
    assert_eq!(push["callee_aor"], "alice");
    assert_eq!(push["token"], TOKEN);
    // The text only for an app with message_preview.
    assert!(push.get("text").is_none(), "{push}");
    let (ok, out) = wake_for_messages(&k, &phone, 1).wait(Duration::from_secs(20));
    assert!(ok, "the woken phone did not get the message: {out}");
    let (ok, out) = sent.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "resumed"), 1);
    assert_eq!(stat(&k, "end_pushes"), 0);
}

#[test]
fn message_nobody_registers_for_gets_480() {
    let server = PushServer::ok(None);
    let k = start("msg-timeout", "push-plain.cfg", &server.url(), 2, &[]);
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);
    let (ok, out) = message_expecting(&k, "alice", "msg-480-%u", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    // One message push; a message is no call: no end-of-call push.
    let pushes = settled(&server, 1);
    assert_eq!(pushes[0]["type"], "message");
    assert!(eventually(Duration::from_secs(3), || stat(&k, "timed_out") == 1));
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn several_messages_for_a_sleeping_phone_make_one_push_with_the_preview() {
    let server = PushServer::ok(None);
    let url = format!("{};message_preview=1", server.url());
    let k = start("msg-several", "push-plain.cfg", &url, 20, &[]);
    let phone = Phone::new("alice", TOKEN, "udp");
    phone.register_then_sleep(&k);
    let senders: Vec<Sipp> = (1..=3)
        .map(|n| {
            let sipp = message_expecting(&k, "alice", &format!("msg-many-{n}-%u"), 200);
            server.wait_for(1, Duration::from_secs(5));
            sipp
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), || stat(&k, "suspended") == 3));
    let pushes = settled(&server, 1);
    assert_eq!(pushes[0]["type"], "message");
    assert_eq!(pushes[0]["text"], "hello from bob");
    let (ok, out) = wake_for_messages(&k, &phone, 3).wait(Duration::from_secs(20));
    assert!(ok, "the woken phone did not get the three messages: {out}");
    for sender in senders {
        let (ok, out) = sender.wait(Duration::from_secs(20));
        assert!(ok, "{out}");
    }
    // Still one push.
    assert_eq!(server.requests().len(), 1);
}

/// An SQLite file with msilo's table, made from Kamailio's own schema files.
fn msilo_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("msilo.sqlite");
    for schema in ["standard-create.sql", "msilo-create.sql"] {
        let sql = std::fs::read(Path::new("/usr/share/kamailio/db_sqlite").join(schema))
            .expect("kamailio-sqlite-modules is not installed (scripts/setup.sh)");
        let mut child = Command::new("sqlite3")
            .arg(&db)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sqlite3 is not installed (scripts/setup.sh)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&sql).unwrap();
        assert!(child.wait().unwrap().success(), "{schema}");
    }
    db
}

fn stored_messages(db: &Path) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT username || '|' || body FROM silo;")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn msilo_example_stores_a_message_nobody_woke_for_and_delivers_it_at_the_next_register() {
    let server = PushServer::ok(None);
    let setup = Setup::new("msg-msilo");
    let db = msilo_db(&setup.dir);
    let msilo = format!("\"sqlite:///{}\"", db.display());
    let proxy = format!("\"sip:127.0.0.1:{}\"", setup.sip_port);
    let cfg = repo_root().join("cfg-examples/push-msilo.cfg");
    let k = registrar_from(
        setup,
        &cfg,
        &server.url(),
        2,
        &[
            ("MSILO_DB", msilo.as_str()),
            ("MSILO_PROXY", proxy.as_str()),
        ],
    );
    let phone = Phone::new("alice", TOKEN, "udp");
    phone.register_then_sleep(&k);
    // Pushed as a message; nobody registers within 2 s: stored, 202 to the sender.
    let (ok, out) =
        message_expecting(&k, "alice", "msg-silo-%u", 202).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let pushes = settled(&server, 1);
    assert_eq!(pushes[0]["type"], "message");
    let stored = stored_messages(&db);
    assert!(
        stored.starts_with("alice|") && stored.contains("hello from bob"),
        "{stored:?}"
    );
    // The phone registers later: msilo's m_dump() delivers the stored message.
    let (ok, out) = wake_for_messages(&k, &phone, 1).wait(Duration::from_secs(20));
    assert!(ok, "the stored message was not delivered: {out}");
    assert!(
        // msilo deletes a delivered message at its next check (check_time 5 s in the example).
        eventually(Duration::from_secs(12), || stored_messages(&db).is_empty()),
        "still stored after delivery: {}",
        stored_messages(&db)
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn fcm_message_push_is_a_high_priority_data_message_never_a_call() {
    use testkit::mock_push::fcm_always_ok;
    let (k, mock, _phone) = fcm_sleeping_phone(
        "msg-fcm",
        fcm_always_ok(),
        2,
        "fcmtoken:APA91bH-abcdefghijklmnopqrstuvwxyz0123456789",
    );
    // push-registrar.cfg: a MESSAGE with no live binding is held (route[HOLD]) and, nobody
    // registering within 2 s, answered 480 by its failure route.
    let (ok, out) = message_expecting(&k, "bob", "msg-fcm-%u", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let sends = mock.wait_for_sends(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mock.sends().len(), 1, "{:#?}", mock.sends());
    let m = &sends[0];
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.data("type"), Some("message"));
    assert_eq!(m.data("call_id"), Some("msg-fcm-1"));
    assert_eq!(m.data("caller_name"), Some("Bob Caller"));
    assert_eq!(m.data("text"), None, "no preview without message_preview");
    assert_eq!(m.body["message"]["android"]["priority"], "high");
}
