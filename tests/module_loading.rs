//! The foundation: push.so loads into the real Kamailio, forks its dispatcher, answers RPC, refuses
//! bad parameters and goes away with Kamailio.

use std::path::Path;
use std::time::Duration;
use testkit::*;

fn minimal(setup: &Setup, debug: i32, extra: &str) -> String {
    format!(
        "{}loadmodule \"sl.so\"\n{extra}\nrequest_route {{\n  sl_send_reply(\"200\", \"OK\");\n}}\n\
         route[PUSH_RESUME] {{\n  t_reply(\"480\", \"Temporarily Unavailable\");\n}}\n",
        setup.preamble(debug)
    )
}

#[test]
fn loads_and_dispatcher_answers_push_stats() {
    let setup = Setup::new("loads");
    let cfg = minimal(&setup, 2, "modparam(\"push\", \"dispatcher_threads\", 3)");
    let k = Kamailio::start(setup, &cfg);
    let log = k.log_text();
    assert!(!log.contains("mismatch"), "{log}");
    assert!(!log.contains("undefined symbol"), "{log}");

    let pid = k
        .process_pid("push dispatcher")
        .expect("no 'push dispatcher' in core.psx");
    assert!(process_alive(pid));
    let stats = k.kamcmd(&["push.stats"]).unwrap();
    assert_eq!(field(&stats, "pid"), Some(pid.to_string()), "{stats}");
    assert_eq!(
        field(&stats, "runtime_threads").as_deref(),
        Some("3"),
        "{stats}"
    );
    assert_eq!(
        field(&stats, "queue_depth").as_deref(),
        Some("0"),
        "{stats}"
    );
    assert_eq!(field(&stats, "suspended").as_deref(), Some("0"), "{stats}");
    // Each push.stats goes through the dispatcher's queue: the count it reports moves.
    let handled: u64 = field(&stats, "messages_handled").unwrap().parse().unwrap();
    let again = k.kamcmd(&["push.stats"]).unwrap();
    let handled_again: u64 = field(&again, "messages_handled").unwrap().parse().unwrap();
    assert_eq!(handled_again, handled + 1, "{again}");
}

#[test]
fn sip_is_served_with_the_module_loaded() {
    let setup = Setup::new("sip");
    let cfg = minimal(&setup, 2, "");
    let k = Kamailio::start(setup, &cfg);
    let (ok, out) = sipp("options.xml", k.sip_port(), &[], &k.setup.dir);
    assert!(ok, "sipp failed:\n{out}");
}

/// Starts Kamailio with a config it must refuse; returns its log.
fn refused(name: &str, extra: &str) -> String {
    let setup = Setup::new(name);
    let cfg = minimal(&setup, 2, extra);
    let mut k = Kamailio::spawn(setup, &cfg, &[]);
    let status = k
        .wait_exit(Duration::from_secs(15))
        .expect("kamailio did not stop");
    assert!(!status.success());
    k.log_text()
}

#[test]
fn bad_parameter_value_stops_kamailio_naming_it() {
    let log = refused("badparam", "modparam(\"push\", \"dispatcher_threads\", 0)");
    assert!(
        log.contains("invalid value 0 for modparam(\"push\", \"dispatcher_threads\", ...): must be between 1 and 64"),
        "{log}"
    );
}

#[test]
fn a_store_the_kamailio_user_cannot_write_names_the_user_and_the_fix() {
    // A directory root owns: the user kamailio (as Debian's kamailio.service runs it) may not
    // create the store's directory inside it.
    let root_only = target_tmpdir().join("root-only");
    std::fs::create_dir_all(&root_only).unwrap();
    let db = root_only.join("push/push.sqlite");
    let mut setup = Setup::new("store-permission");
    setup.run_as = Some("kamailio".into());
    let cfg = minimal(&setup, 2, "").replace(
        &format!("sqlite://{}", setup.dir.join("push.sqlite").display()),
        &format!("sqlite://{}", db.display()),
    );
    assert!(cfg.contains(&db.display().to_string()));
    let mut k = Kamailio::spawn(setup, &cfg, &[]);
    let status = k
        .wait_exit(Duration::from_secs(15))
        .expect("kamailio did not stop");
    assert!(!status.success());
    let log = k.log_text();
    assert!(
        log.contains("Permission denied")
            && log.contains("Kamailio runs as user kamailio")
            && log.contains(&format!(
                "install -d -o kamailio -g kamailio -m 0750 {}/push",
                root_only.display()
            )),
        "{log}"
    );
}

/// `kamailio -c` (where operators check a config) refuses a bad push parameter with the same
/// line as a start would, naming the parameter.
#[test]
fn kamailio_c_refuses_bad_push_parameters() {
    for (extra, expected) in [
        (
            "modparam(\"push\", \"app\", \"id=a;provider=webhook;url=http://x.example/;colour=red\")",
            "unknown key 'colour'",
        ),
        (
            "modparam(\"push\", \"db_url\", \"sqlite://relative/push.sqlite\")",
            "modparam(\"push\", \"db_url\"",
        ),
        (
            "modparam(\"push\", \"dispatcher_threads\", 0)",
            "must be between 1 and 64",
        ),
        // A check across parameters: default_app must name a declared app.
        (
            "modparam(\"push\", \"app\", \"id=a;provider=webhook;url=http://x.example/\")\n\
             modparam(\"push\", \"default_app\", \"ghost\")",
            "modparam(\"push\", \"default_app\", ...): no app with id 'ghost'",
        ),
    ] {
        let setup = Setup::new("check");
        let cfg_path = setup.dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, minimal(&setup, 2, extra)).unwrap();
        let (ok, out) = check_config(&cfg_path, &[]);
        assert!(!ok, "kamailio -c accepted {extra}:\n{out}");
        assert!(out.contains(expected), "{extra}:\n{out}");
    }
}

/// `default_app` may come before the app it names: `kamailio -c` checks the whole set.
#[test]
fn kamailio_c_accepts_default_app_declared_before_its_app() {
    let setup = Setup::new("checkorder");
    let cfg_path = setup.dir.join("kamailio.cfg");
    let extra = "modparam(\"push\", \"default_app\", \"a\")\n\
                 modparam(\"push\", \"app\", \"id=a;provider=webhook;url=http://x.example/\")";
    std::fs::write(&cfg_path, minimal(&setup, 2, extra)).unwrap();
    let (ok, out) = check_config(&cfg_path, &[]);
    assert!(ok, "kamailio -c refused a valid config:\n{out}");
    assert!(!out.contains("default_app"), "{out}");
}

#[test]
fn parameter_of_the_wrong_type_is_refused_by_kamailio() {
    let log = refused("badtype", "modparam(\"push\", \"queue_size\", \"big\")");
    assert!(log.contains("queue_size"), "{log}");
}

#[test]
fn unknown_parameter_is_refused() {
    let log = refused("unknown", "modparam(\"push\", \"no_such_thing\", 1)");
    assert!(log.contains("no_such_thing"), "{log}");
}

#[test]
fn stopping_kamailio_leaves_no_module_process() {
    let setup = Setup::new("stop");
    let cfg = minimal(&setup, 2, "");
    let mut k = Kamailio::start(setup, &cfg);
    let pid = k.process_pid("push dispatcher").unwrap();
    // Within Kamailio's own shutdown time (ser_kill_timeout, 60 s: under load its children
    // sometimes hang in their SIGTERM handler and its main process waits that long).
    let status = k
        .stop_within(Duration::from_secs(65))
        .expect("kamailio did not stop on SIGTERM");
    assert!(status.success() || status.code().is_some(), "{status}");
    assert!(!process_alive(pid), "dispatcher {pid} outlived Kamailio");
    assert!(
        !group_alive(k.pid as i32),
        "processes of Kamailio's group are left"
    );
}

#[test]
fn dispatcher_dies_with_kamailio_even_when_killed() {
    let setup = Setup::new("sigkill");
    let cfg = minimal(&setup, 2, "");
    let mut k = Kamailio::start(setup, &cfg);
    let pid = k.process_pid("push dispatcher").unwrap();
    let mut main = k.take_child().unwrap();
    main.kill().unwrap();
    main.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_alive(pid),
        "dispatcher {pid} outlived a killed Kamailio"
    );
}

#[test]
fn log_lines_follow_kamailio_debug_level() {
    // At debug=2 (info) the dispatcher's start line is printed through Kamailio's logger...
    let setup = Setup::new("loginfo");
    let cfg = minimal(&setup, 2, "");
    let k = Kamailio::start(setup, &cfg);
    assert!(
        k.wait_for_log(
            "INFO: push: dispatcher(): push dispatcher running",
            Duration::from_secs(5)
        ),
        "{}",
        k.log_text()
    );
    drop(k);
    // ...and at debug=1 (notice) it is not.
    let setup = Setup::new("lognotice");
    let cfg = minimal(&setup, 1, "");
    let k = Kamailio::start(setup, &cfg);
    let pid = k.process_pid("push dispatcher").unwrap();
    assert!(process_alive(pid));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !k.log_text().contains("push dispatcher running"),
        "{}",
        k.log_text()
    );
}

#[test]
fn every_example_config_passes_kamailio_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("cfg") {
            continue;
        }
        let (ok, out) = check_config(&path, &[]);
        assert!(ok, "kamailio -c rejects {}:\n{out}", path.display());
        checked += 1;
    }
    assert!(checked > 0, "no example config in {}", dir.display());
}
