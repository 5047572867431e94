//! Apps from a file (`apps_file`) against a real Kamailio: a call wakes a phone through an app of
//! the file; the file is edited (a webhook URL changed, an app added, then removed) and
//! `kamcmd push.reload` makes it so for new calls, in the dispatcher (which pushes) and in the SIP
//! workers (which answer 555 to a REGISTER naming an app no one serves); a call held across a
//! reload is still delivered; a broken file is refused with its line and the running apps keep
//! working; the file's secret appears in no log line and no answer. And `kamailio -c` and startup
//! refuse a broken file, or an app declared both in the file and by a modparam.

use std::fs;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use testkit::push_server::{PushServer, Request};
use testkit::wake::*;
use testkit::*;

const FILE_APP: &str = "org.example.file";
const SECOND_APP: &str = "org.example.second";
const FILE_SECRET: &str = "file-secret-4711";

fn webhook(id: &str, server: &PushServer) -> String {
    format!(
        "id={id};provider=webhook;url={};secret={FILE_SECRET}",
        server.url()
    )
}

/// A phone of `user` whose Contact names the app `app` (its pn-param).
fn phone(user: &str, token: &str, app: &str) -> Phone {
    let mut phone = Phone::new(user, token, "udp");
    phone.pnparam = app.to_string();
    phone
}

/// A push that arrived at a file app's server: signed with the file's secret, for `app`.
fn check_push(push: &Request, app: &str, call_id: &str) {
    let body = push.json();
    assert_eq!(body["app_id"], app, "{body}");
    assert_eq!(body["call_id"], call_id, "{body}");
    let expected = push_core::providers::webhook::signature(FILE_SECRET, push.body.as_bytes());
    assert_eq!(
        push.header("X-Push-Signature"),
        Some(format!("sha256={expected}").as_str())
    );
}

fn next_push(rx: &Receiver<Request>, what: &str) -> Request {
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no push arrived {what}"))
}

/// A REGISTER for `user` with RFC 8599 push parameters naming `app`, which must get `status`.
fn register_expecting(k: &Kamailio, user: &str, app: &str, status: u16) {
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register expecting {status}">
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]r[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port];pn-provider=apns;pn-prid=0123456789abcdef0123;pn-param={app}>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="{status}" />
</scenario>
"#
    );
    let path = k.setup.dir.join(format!("register-{user}-{status}.xml"));
    fs::write(&path, scenario).unwrap();
    let (ok, out) = Sipp::spawn(path.to_str().unwrap(), k.sip_port(), &[], &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "REGISTER naming {app} did not get {status}:\n{out}");
}

fn write_apps(path: &Path, lines: &[String]) {
    // Written to a new file and renamed, as an operator's tooling would (the reload never sees
    // half a file); the test of a broken file below writes a whole broken file.
    let tmp = path.with_extension("new");
    fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A call from Bob to `phone` (sleeping): its push must reach `rx` for `app`; the phone wakes
/// and the call is answered.
fn call_wakes(k: &Kamailio, phone: &Phone, rx: &Receiver<Request>, app: &str, call: &str) {
    let call_id = format!("{call}-%u");
    let caller = caller(k, &phone.user, "udp", &call_id);
    let push = next_push(rx, &format!("for {call}"));
    check_push(&push, app, &format!("{call}-1"));
    let device = phone.wake(k, &call_id);
    assert_call_completed(device, caller, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn apps_from_the_file_follow_push_reload() {
    let (rx_one, hook_one) = notifier();
    let (rx_two, hook_two) = notifier();
    let (rx_second, hook_second) = notifier();
    let modparam_server = PushServer::ok(None);
    let one = PushServer::ok(Some(hook_one));
    let two = PushServer::ok(Some(hook_two));
    let second = PushServer::ok(Some(hook_second));

    let setup = Setup::new("apps-file");
    let apps = setup.dir.join("push-apps.conf");
    write_apps(
        &apps,
        &[
            "# apps the module reads at startup and on kamcmd push.reload".to_string(),
            String::new(),
            webhook(FILE_APP, &one),
        ],
    );
    let apps_define = format!("\"{}\"", apps.display());
    let cfg = repo_root().join("cfg-examples/push-registrar.cfg");
    let k = registrar_from(
        setup,
        &cfg,
        &modparam_server.url(),
        20,
        &[
            ("PUSH_APPS_FILE", apps_define.as_str()),
            ("NO_DEFAULT_APP", "1"),
        ],
    );
    let mut answers = Vec::new();
    let mut kamcmd = |args: &[&str]| {
        let answer = k.kamcmd(args);
        answers.push(format!("{args:?}: {answer:?}"));
        answer
    };

    let listed = kamcmd(&["push.apps"]).unwrap();
    assert!(
        listed.contains(APP) && listed.contains(FILE_APP),
        "{listed}"
    );
    // The second app is not declared yet: a REGISTER naming it gets 555.
    register_expecting(&k, "carol", SECOND_APP, 555);

    // A call wakes a phone through the file's app.
    let alice = phone(
        "alice",
        "a11ce0000000000000000000000000000000000000000000000000000000beef",
        FILE_APP,
    );
    alice.register_then_sleep(&k);
    call_wakes(&k, &alice, &rx_one, FILE_APP, "af-one");

    // A call is held (its push went to the first URL) when the file changes: the app's URL moves
    // to the second server and a second app is added.
    let held_id = "af-held-%u";
    let held_call = caller(&k, "alice", "udp", held_id);
    let push = next_push(&rx_one, "for the call held across the reload");
    check_push(&push, FILE_APP, "af-held-1");
    write_apps(
        &apps,
        &[
            "# moved, and a second app".to_string(),
            webhook(FILE_APP, &two),
            String::new(),
            webhook(SECOND_APP, &second),
        ],
    );
    let reloaded = kamcmd(&["push.reload"]).unwrap();
    for (id, result) in [
        (APP, "reloaded"),
        (FILE_APP, "changed"),
        (SECOND_APP, "added"),
    ] {
        assert_eq!(
            field_after(&reloaded, id).as_deref(),
            Some(result),
            "{id} not {result} in:\n{reloaded}"
        );
    }
    assert!(k.wait_for_log(
        "push.reload: 3 app(s) in use (1 added, 1 changed, 0 removed)",
        Duration::from_secs(5)
    ));
    // The held call is untouched: still held, and delivered when the phone registers.
    let pending = kamcmd(&["push.pending"]).unwrap();
    assert!(pending.contains("af-held-1"), "{pending}");
    let device = alice.wake(&k, held_id);
    let (ok, out) = device.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the call held across the reload was not delivered:\n{out}"
    );
    let (ok, out) = held_call.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the call held across the reload was not answered:\n{out}"
    );
    std::thread::sleep(Duration::from_millis(1500));

    // New calls go to the new URL, and no longer to the old one.
    call_wakes(&k, &alice, &rx_two, FILE_APP, "af-two");
    assert!(
        rx_one.try_recv().is_err(),
        "a push still went to the old URL"
    );

    // The SIP workers know the new app: its phone registers and is woken through it.
    let carol = phone(
        "carol",
        "ca401000000000000000000000000000000000000000000000000000000cafe",
        SECOND_APP,
    );
    carol.register_then_sleep(&k);
    call_wakes(&k, &carol, &rx_second, SECOND_APP, "af-second");

    // A broken file is refused whole, with its line; the running apps stay.
    write_apps(
        &apps,
        &[
            webhook(FILE_APP, &one),
            "# the next line is wrong".to_string(),
            format!("id=org.example.third;provider=carrier-pigeon;secret={FILE_SECRET}"),
        ],
    );
    let refused = kamcmd(&["push.reload"]).unwrap_err();
    assert!(
        refused.contains("line 3") && refused.contains("unknown provider 'carrier-pigeon'"),
        "{refused}"
    );
    assert!(k.wait_for_log("push.reload refused", Duration::from_secs(5)));
    let log = k.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("push.reload refused"))
        .unwrap();
    assert!(
        line.contains(&apps.display().to_string()) && line.contains("line 3"),
        "{line}"
    );
    let listed = kamcmd(&["push.apps"]).unwrap();
    assert!(listed.contains(SECOND_APP), "{listed}");
    call_wakes(&k, &alice, &rx_two, FILE_APP, "af-after-broken");

    // The second app is removed: its phone's device is kept, and a call to it is not pushed
    // (no other app pushes it instead) but ends at once with 480.
    write_apps(&apps, &[webhook(FILE_APP, &two)]);
    let reloaded = kamcmd(&["push.reload"]).unwrap();
    assert_eq!(
        field_after(&reloaded, SECOND_APP).as_deref(),
        Some("removed"),
        "{reloaded}"
    );
    let started = Instant::now();
    let (ok, out) = caller_expecting(&k, "carol", "udp", 480).wait(Duration::from_secs(20));
    assert!(
        ok,
        "a call to the removed app's phone did not end in 480:\n{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "480 took {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx_second.try_recv().is_err(),
        "the removed app still pushed"
    );
    let devices = kamcmd(&["push.devices", "carol"]).unwrap();
    assert!(
        devices.contains("ca4010"),
        "the removed app's device was dropped: {devices}"
    );
    assert!(k
        .log_text()
        .contains("was removed from apps_file by push.reload"));
    // And the workers no longer take a REGISTER naming it.
    register_expecting(&k, "dave", SECOND_APP, 555);
    // The remaining app still works.
    call_wakes(&k, &alice, &rx_two, FILE_APP, "af-last");

    // The file's secret is in no answer and no log line.
    let log = k.log_text();
    assert!(!log.contains(FILE_SECRET), "the secret is in the log");
    for answer in &answers {
        assert!(!answer.contains(FILE_SECRET), "the secret is in {answer}");
    }
}

/// The value printed after `id: <id>` and a `result:` key, however kamcmd indents it.
fn field_after(text: &str, id: &str) -> Option<String> {
    let start = text.find(&format!("id: {id}\n"))?;
    let rest = &text[start..];
    let line = rest
        .lines()
        .find(|l| l.trim_start().starts_with("result:"))?;
    Some(
        line.trim_start()
            .trim_start_matches("result:")
            .trim()
            .to_string(),
    )
}

#[test]
fn a_broken_or_clashing_apps_file_is_refused_at_startup_and_by_kamailio_c() {
    let server = PushServer::ok(None);
    let dir = run_dir("apps-file-check");
    let apps = dir.join("push-apps.conf");
    let cfg = repo_root().join("cfg-examples/push-registrar.cfg");
    let db = format!("\"sqlite://{}\"", dir.join("push.sqlite").display());
    let app = format!("\"id={APP};provider=webhook;url={}\"", server.url());
    let apps_define = format!("\"{}\"", apps.display());
    let defines = [
        ("PUSH_DB", db.as_str()),
        ("PUSH_APP", app.as_str()),
        ("PUSH_APPS_FILE", apps_define.as_str()),
    ];

    fs::write(&apps, format!("# ok\n{}\n", webhook(FILE_APP, &server))).unwrap();
    let (ok, out) = check_config(&cfg, &defines);
    assert!(ok, "a good apps file was refused:\n{out}");

    fs::write(
        &apps,
        format!(
            "{}\n\nid=org.example.third;provider=webhook;secret={FILE_SECRET}\n",
            webhook(FILE_APP, &server)
        ),
    )
    .unwrap();
    let (ok, out) = check_config(&cfg, &defines);
    assert!(!ok, "kamailio -c took a broken apps file:\n{out}");
    assert!(
        out.contains("modparam(\"push\", \"apps_file\", ...): line 3: provider=webhook needs url"),
        "{out}"
    );
    assert!(!out.contains(FILE_SECRET), "{out}");

    // An app declared both by a modparam and in the file.
    fs::write(
        &apps,
        format!(
            "id={APP};provider=webhook;url={};secret={FILE_SECRET}\n",
            server.url()
        ),
    )
    .unwrap();
    let (ok, out) = check_config(&cfg, &defines);
    assert!(!ok, "kamailio -c took an app declared twice:\n{out}");
    assert!(
        out.contains(&format!(
            "app id '{APP}' is declared both with modparam(\"push\", \"app\", ...) and in the file"
        )),
        "{out}"
    );
    assert!(!out.contains(FILE_SECRET), "{out}");

    // Kamailio itself does not start with it either.
    let setup = Setup::new("apps-file-clash");
    let port = setup.sip_port.to_string();
    let mut all = vec![("SIP_PORT", port.as_str())];
    all.extend_from_slice(&defines);
    let mut k = Kamailio::spawn_file(setup, &cfg, &all);
    let status = k.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "Kamailio started with an app declared twice"
    );
    assert!(
        k.log_text().contains("is declared both"),
        "{}",
        k.log_text()
    );
}
