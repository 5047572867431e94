//! Secrets stay secret (issue 12): a Kamailio at debug=3 with all four kinds of credentials (a
//! webhook secret, an APNs .p8 key, an APNs PKCS#12 certificate with its password, an FCM service
//! account), every failure path exercised (a bad app string, a wrong certificate password, a
//! webhook that echoes the request with control characters and a bearer token, an FCM endpoint
//! that echoes the OAuth token it was sent), then every secret and every full device token is
//! looked for in the log and in every push.* answer: none may be there, and no raw control
//! character of a push service's answer may reach the log.

use std::fs;
use std::time::Duration;
use testkit::mock_push::*;
use testkit::push_server::{Answer, PushServer};
use testkit::wake::*;
use testkit::*;

const WEBHOOK_SECRET: &str = "whsec-7f3a9c1e5b2d4f60-never-log";
const IOS_TOKEN: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7a1ce";
const ANDROID_TOKEN: &str = "fcmtoken:APA91bH-secrettoken0123456789abcdefghijklmnop";
const FORGED: &str = "\r\n 0(1) ERROR: <core> forged line\x1b[31m\x00";

/// Base64 lines of a PEM private key (the parts that would give the key away).
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

/// Asserts that none of `secrets` occurs in `text` (named `place` in the failure message).
fn assert_clean(place: &str, text: &str, secrets: &[(String, String)]) {
    for (what, secret) in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} found in {place}:\n{text}"
        );
    }
}

#[test]
fn no_secret_or_full_token_reaches_a_log_line_or_an_rpc_answer() {
    let mut setup = Setup::new("secrets");
    let pki = TestPki::create(&setup.dir.join("pki"));
    let apns_key = apns_signing_key(&setup.dir);
    setup
        .env
        .push(("SSL_CERT_FILE".into(), pki.ca_pem.display().to_string()));

    // FCM answers every send with 400 and a body echoing the bearer it got, plus control bytes.
    let fcm = FcmMock::start(
        &pki,
        Box::new(|_, send: &FcmSend| {
            let bearer = send.header("authorization").unwrap_or_default().to_string();
            FcmAnswer::Raw(RawAnswer::json(
                400,
                format!("proxy says: Authorization: {bearer}{FORGED}"),
            ))
        }),
    );
    let account = write_service_account(&setup.dir, &fcm);
    let account_json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&account).unwrap()).unwrap();
    let account_key = account_json["private_key"].as_str().unwrap().to_string();

    // The webhook answers 400 echoing the request (the device token is in it), a bearer token
    // a proxy added, and bytes that would forge a log line.
    let webhook = PushServer::answering(|_, request| {
        Answer::status(400).body(format!(
            "echo: {} Authorization: Bearer proxy-0123456789abcdef{FORGED}",
            request.body
        ))
    });

    let apps = [
        format!(
            "\"id={APP};provider=webhook;url={};secret={WEBHOOK_SECRET}\"",
            webhook.url()
        ),
        format!(
            "\"id=com.example.android;provider=fcm;service_account={}\"",
            account.display()
        ),
        format!(
            "\"id=org.example.token;provider=apns;key_file={};key_id={};team_id={}\"",
            apns_key.p8_path.display(),
            apns_key.key_id,
            apns_key.team_id
        ),
        format!(
            "\"id=org.example.cert;provider=apns;cert_file={};cert_password={}\"",
            pki.client_p12.display(),
            pki.p12_password
        ),
    ];
    let db = setup.db_define();
    let fcm_url = format!("\"{}\"", fcm.base_url());
    let k = Kamailio::start_example(
        setup,
        "push-registrar.cfg",
        &[
            ("PUSH_DB", db.as_str()),
            ("PUSH_APP", apps[0].as_str()),
            ("PUSH_APP2", apps[1].as_str()),
            ("PUSH_APP3", apps[2].as_str()),
            ("PUSH_APP4", apps[3].as_str()),
            ("PUSH_FCM_URL", fcm_url.as_str()),
            ("MIN_EXPIRES", "1"),
            ("PUSH_TIMEOUT", "10"),
            ("DEBUG_LEVEL", "3"),
        ],
    );

    let iphone = Phone::new("alice", IOS_TOKEN, "udp");
    let android = Phone {
        provider: "fcm".into(),
        pnparam: "com.example.android".into(),
        ..Phone::new("bob", ANDROID_TOKEN, "udp")
    };
    iphone.register_then_sleep(&k);
    android.register_then_sleep(&k);

    // Both calls fail (the services refuse): the answers' text goes through every log path.
    for user in ["alice", "bob"] {
        let call = caller_expecting(&k, user, "udp", 480);
        let (ok, out) = call.wait(Duration::from_secs(20));
        assert!(ok, "call to {user}: {out}");
    }
    assert!(
        !webhook.requests().is_empty() && !fcm.sends().is_empty(),
        "the failure paths were not reached"
    );

    let mut answers = String::new();
    for args in [
        vec!["push.stats"],
        vec!["push.apps"],
        vec!["push.pending"],
        vec!["push.devices", "alice"],
        vec!["push.devices", "bob"],
        vec!["push.send", "alice"],
        vec!["push.send", "bob"],
        vec!["stats.get_statistics", "push:"],
    ] {
        let answer = k.kamcmd(&args).unwrap_or_else(|e| e);
        answers.push_str(&format!("== {args:?}\n{answer}\n"));
    }

    // Kamailio refusing two bad apps: a malformed app string, a wrong certificate password.
    let wrong_password = "wrong-p12-password-hunter2";
    let mut refusals = String::new();
    for (name, app) in [
        (
            "secrets-bad-string",
            format!("id=x;provider=apns;cert_password={wrong_password};cert_file"),
        ),
        (
            "secrets-bad-password",
            format!(
                "id=x;provider=apns;cert_file={};cert_password={wrong_password}",
                pki.client_p12.display()
            ),
        ),
    ] {
        let setup = Setup::new(name);
        let cfg = setup.preamble(3) + &format!("modparam(\"push\", \"app\", \"{app}\")\n");
        let mut refused = Kamailio::spawn(setup, &cfg, &[]);
        let status = refused
            .wait_exit(Duration::from_secs(15))
            .expect("kamailio did not stop");
        assert!(!status.success(), "{name}: Kamailio started with a bad app");
        refusals.push_str(&refused.log_text());
    }

    let mut secrets: Vec<(String, String)> = vec![
        ("the webhook secret".into(), WEBHOOK_SECRET.into()),
        ("the PKCS#12 password".into(), pki.p12_password.clone()),
        ("a wrong PKCS#12 password".into(), wrong_password.into()),
        ("the iPhone's full token".into(), IOS_TOKEN.into()),
        (
            "the Android phone's full token".into(),
            ANDROID_TOKEN.into(),
        ),
        (
            "the proxy's bearer token".into(),
            "proxy-0123456789abcdef".into(),
        ),
    ];
    for line in pem_body_lines(&apns_key.private_key_pem) {
        secrets.push(("a line of the APNs private key".into(), line));
    }
    for line in pem_body_lines(&account_key.replace("\\n", "\n")) {
        secrets.push(("a line of the service account's key".into(), line));
    }
    for request in fcm.token_requests() {
        if let Some(token) = request.access_token {
            secrets.push(("an OAuth access token".into(), token));
        }
        if let Some(jwt) = request.assertion {
            secrets.push(("an OAuth assertion (JWT)".into(), jwt));
        }
    }
    assert!(
        secrets
            .iter()
            .any(|(what, _)| what.starts_with("an OAuth access")),
        "FCM issued no token: the bearer path was not exercised"
    );

    // Kamailio's own debug lines echo the config's defines (the secrets among them): only what
    // the module writes is its to keep clean.
    let module_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains(": push: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let log_bytes = fs::read(&k.log).unwrap();
    let log = module_lines(&String::from_utf8_lossy(&log_bytes));
    let refusals = module_lines(&refusals);
    assert!(log.contains("DEBUG: push"), "debug=3 shows no module line");
    assert!(
        log.contains("rejected") || log.contains("400"),
        "the refusals were not logged:\n{log}"
    );
    assert_clean("the log", &log, &secrets);
    assert!(refusals.contains("cert_password"), "{refusals}");
    assert_clean("the refused starts' logs", &refusals, &secrets);
    assert_clean("the push.* answers", &answers, &secrets);
    assert!(
        !log_bytes.contains(&0) && !log_bytes.contains(&0x1b),
        "a raw NUL or ESC from a push service reached the log"
    );
    assert!(
        log.contains("\\u{1b}") || log.contains("\\r\\n"),
        "the services' control characters were not shown escaped:\n{log}"
    );
    assert!(
        !log.contains("\n 0(1) ERROR: <core> forged line"),
        "a push service forged a log line:\n{log}"
    );
}
