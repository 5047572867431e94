//! The operator's RPC (issue 16) on a real Kamailio: push.devices without an AOR counts and pages
//! through every stored device, push.device_add stores a device a backend learned (checked as a
//! REGISTER's Contact is) that a call then wakes, push.pending shows the caller, the deadline and
//! each device's push state, every time is ISO 8601 UTC with milliseconds, and the same commands
//! work as JSON-RPC POSTed over HTTP (xhttp + jsonrpcs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "c0ffee0011112222333344445555666677778888999900001111222233334444";

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` as Unix milliseconds, or None when it is not exactly that form.
/// Written apart from the module's formatter (days counted year by year), so the two check
/// each other.
fn parse_iso(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1970..3000).contains(&year) || !(1..=12).contains(&month) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > lengths[month as usize - 1] {
        return None;
    }
    let mut days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    days += lengths[..month as usize - 1].iter().sum::<i64>() + day - 1;
    Some((((days * 24 + h) * 60 + m) * 60 + s) * 1000 + ms)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every `key: value` of kamcmd's output, in order.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().to_string())
        .collect()
}

#[test]
fn iso_parser_of_this_test_knows_the_calendar() {
    assert_eq!(parse_iso("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        parse_iso("2026-12-01T21:30:05.123Z"),
        Some(1_796_160_605_123)
    );
    assert_eq!(
        parse_iso("2024-02-29T00:00:00.000Z"),
        Some(1_709_164_800_000)
    );
    assert_eq!(parse_iso("2023-02-29T00:00:00.000Z"), None);
    assert_eq!(parse_iso("1796160605"), None);
    assert_eq!(parse_iso("2026-12-01 21:30:05.123Z"), None);
}

/// Hundreds of devices, some registered by phones, most added over RPC: push.devices without an
/// AOR counts them all, and its pages (default 100, `limit` up to 1000) list each one once.
#[test]
fn devices_without_an_aor_count_and_page_through_hundreds() {
    const ADDED: usize = 300;
    let server = PushServer::ok(None);
    let k = registrar("rpc-devices-page", &server.url(), 20);
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);
    Phone::new("bob", &TOKEN.replace("c0ffee", "b0b0b0"), "udp").register_then_sleep(&k);
    for i in 0..ADDED {
        let aor = format!("user{:03}", i % 120);
        // Letters first: kamcmd would send `00001e00...` as a number.
        let token = format!("d{i:05}{}", &TOKEN[6..]);
        let instance = format!("instance=<urn:uuid:00000000-0000-4000-8000-{i:012}>");
        k.kamcmd(&["push.device_add", &aor, APP, "fcm", &token, &instance])
            .unwrap_or_else(|e| panic!("device {i}: {e}"));
    }
    let total = ADDED + 2;

    // The default page: the count first, then 100 devices.
    let first = k.kamcmd(&["push.devices"]).unwrap();
    assert_eq!(field(&first, "total"), Some(total.to_string()), "{first}");
    assert_eq!(field(&first, "offset").as_deref(), Some("0"));
    assert_eq!(field(&first, "returned").as_deref(), Some("100"));
    assert_eq!(field(&first, "next_offset").as_deref(), Some("100"));
    assert_eq!(values(&first, "device").len(), 100);

    // Pages of 70 from next_offset to the end: every device once, tokens shortened.
    let mut seen = Vec::new();
    let mut offset = Some(0u64);
    let mut pages = 0;
    while let Some(at) = offset {
        let page = k
            .kamcmd(&["push.devices", &format!("offset={at}"), "limit=70"])
            .unwrap();
        assert_eq!(field(&page, "total"), Some(total.to_string()));
        let aors = values(&page, "aor");
        let devices = values(&page, "device");
        assert_eq!(aors.len(), devices.len(), "{page}");
        assert_eq!(
            field(&page, "returned"),
            Some(devices.len().to_string()),
            "{page}"
        );
        assert!(devices.len() <= 70);
        for time in values(&page, "updated_at") {
            let ms = parse_iso(&time).unwrap_or_else(|| panic!("not ISO 8601: {time}"));
            assert!((now_ms() - ms).abs() < 120_000, "{time}");
        }
        assert!(!page.contains(TOKEN), "a whole token in {page}");
        seen.extend(aors.into_iter().zip(devices));
        offset = field(&page, "next_offset").map(|n| n.parse().unwrap());
        pages += 1;
        assert!(pages < 20);
    }
    assert_eq!(pages, total.div_ceil(70));
    assert_eq!(seen.len(), total);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total, "a device listed twice");
    assert!(seen.iter().any(|(aor, _)| aor == "alice"));
    assert!(seen.iter().any(|(aor, _)| aor == "user119"));

    // Pages of up to 1000 are also cut at about 48 KB of text (so an answer always fits
    // kamcmd's and ctl's buffers): next_offset then says where to go on.
    let mut listed = 0;
    let mut offset = Some(0u64);
    while let Some(at) = offset {
        let page = k
            .kamcmd(&["push.devices", &format!("offset={at}"), "limit=1000"])
            .unwrap();
        let returned: usize = field(&page, "returned").unwrap().parse().unwrap();
        assert_eq!(values(&page, "device").len(), returned);
        assert!(returned >= 100, "{returned}");
        listed += returned;
        offset = field(&page, "next_offset").map(|n| n.parse().unwrap());
        assert_eq!(offset.is_some(), listed < total);
    }
    assert_eq!(listed, total);
    let err = k.kamcmd(&["push.devices", "limit=1001"]).unwrap_err();
    assert!(
        err.contains("400") && err.contains("limit must be a whole number from 1 to 1000"),
        "{err}"
    );
    // Past the end: the count and nothing else.
    let past = k.kamcmd(&["push.devices", "offset=5000"]).unwrap();
    assert_eq!(field(&past, "returned").as_deref(), Some("0"));
    assert!(values(&past, "device").is_empty());

    // With an AOR, as before: its devices only, no count.
    let alice = k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(field(&alice, "total").is_none(), "{alice}");
    assert_eq!(values(&alice, "device").len(), 1);
    assert_eq!(field(&alice, "token").as_deref(), Some("c0ffee…4444"));
    let user7 = k
        .kamcmd(&["push.devices", "sip:user007@example.com"])
        .unwrap();
    assert_eq!(values(&user7, "device").len(), 3, "{user7}");
}

/// A device a backend adds over RPC is checked as a REGISTER's Contact is, answered with what
/// was stored, and usable: a call to its AOR is held, the device is pushed with its token, and
/// when the phone registers (same +sip.instance) the call reaches it and is answered.
#[test]
fn a_device_added_over_rpc_is_pushed_and_gets_the_call() {
    let (pushes, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar("rpc-device-add", &server.url(), 20);
    let phone = Phone::new("carol", TOKEN, "udp");

    // Bad arguments: 400, naming the problem.
    for (args, why) in [
        (vec!["carol", APP, "apns"], "needs 4 arguments, got 3"),
        (
            vec!["carol", "no.such.app", "apns", TOKEN],
            "no app 'no.such.app'",
        ),
        (vec!["carol", APP, "ap/ns", TOKEN], "unusable push provider"),
        (
            vec!["carol", APP, "apns", TOKEN, "colour=red"],
            "is none of instance=, param=, user_agent=",
        ),
        (
            vec!["carol", APP, "apns", TOKEN, "param=a", "param=b"],
            "param is given twice",
        ),
    ] {
        let mut command = vec!["push.device_add"];
        command.extend(&args);
        let err = k.kamcmd(&command).unwrap_err();
        assert!(err.contains("400") && err.contains(why), "{args:?}: {err}");
    }
    let long = "t".repeat(1025);
    let err = k
        .kamcmd(&["push.device_add", "carol", APP, "apns", &long])
        .unwrap_err();
    assert!(
        err.contains("400") && err.contains("1025 bytes long"),
        "{err}"
    );
    assert!(!k
        .kamcmd(&["push.devices", "carol"])
        .unwrap()
        .contains("provider"));

    let instance = format!("instance=<urn:uuid:{}>", phone.instance);
    let param = format!("param={}", phone.pnparam);
    let added = k
        .kamcmd(&[
            "push.device_add",
            "sip:carol@example.com",
            APP,
            "apns",
            TOKEN,
            &instance,
            &param,
            "user_agent=Backend/1.0",
        ])
        .unwrap();
    assert_eq!(
        field(&added, "result").as_deref(),
        Some("stored"),
        "{added}"
    );
    assert_eq!(field(&added, "aor").as_deref(), Some("carol"));
    assert_eq!(field(&added, "token").as_deref(), Some("c0ffee…4444"));
    assert_eq!(field(&added, "app").as_deref(), Some(APP));
    assert!(!added.contains(TOKEN), "{added}");
    let at = field(&added, "updated_at").unwrap();
    assert!(
        parse_iso(&at).is_some_and(|ms| (now_ms() - ms).abs() < 120_000),
        "{at}"
    );
    assert!(k.log_text().contains("added by push.device_add"));

    // A call to carol is held and the added device pushed; the phone wakes and answers.
    let call = caller(&k, "carol", "udp", "rpc-added-%u");
    let push = pushes
        .recv_timeout(Duration::from_secs(10))
        .expect("the added device was not pushed");
    verify_signature(&push);
    let body = push.json();
    assert_eq!(body["token"], TOKEN);
    assert_eq!(body["app_id"], APP);
    assert_eq!(body["callee_aor"], "carol");
    let device = phone.wake(&k, "rpc-added-%u");
    assert_call_completed(device, call, Duration::from_secs(30));
    assert_eq!(stat(&k, "resumed"), 1);
    // The REGISTER (same instance) updated the record: still one device.
    assert_eq!(
        values(&k.kamcmd(&["push.devices", "carol"]).unwrap(), "device").len(),
        1
    );

    // Removed through push.remove: a call is then refused at once.
    let removed = k.kamcmd(&["push.remove", "carol"]).unwrap();
    assert!(removed.contains("removed: 1"), "{removed}");
    let (ok, out) = caller_expecting(&k, "carol", "udp", 480).wait(Duration::from_secs(10));
    assert!(ok, "{out}");
}

/// push.pending while a call is held: the caller's From URI, when it was held and when it is
/// ended if nobody registers (ISO 8601, `timeout` apart), and the device's push: retrying after
/// the service's 503, then sent (200).
#[test]
fn pending_shows_caller_deadline_and_each_push() {
    // First answer 503 (retried), the second after 4 s with 200 (time to read "retrying").
    let server = PushServer::start(
        Box::new(|n| {
            if n == 0 {
                (503, Duration::ZERO)
            } else {
                (200, Duration::from_secs(4))
            }
        }),
        None,
    );
    let k = registrar("rpc-pending-states", &server.url(), 8);
    let phone = Phone::new("dave", TOKEN, "udp");
    phone.register_then_sleep(&k);
    let device = format!("<urn:uuid:{}>", phone.instance);
    let before = now_ms();
    let call = caller_expecting(&k, "dave", "udp", 480);
    server.wait_for(2, Duration::from_secs(10));
    let pending = k.kamcmd(&["push.pending"]).unwrap();
    let caller = field(&pending, "caller").expect("no caller");
    assert!(caller.starts_with("sip:bob@127.0.0.1:"), "{pending}");
    let held = parse_iso(&field(&pending, "held_at").unwrap()).expect("held_at");
    let deadline = parse_iso(&field(&pending, "deadline").unwrap()).expect("deadline");
    assert!((held - before).abs() < 5000, "{pending}");
    assert!((deadline - held - 8000).abs() < 200, "{pending}");
    let retrying = format!("{device}: retrying (attempt 1 failed: ");
    assert!(
        pending.contains(&retrying) && pending.contains("503"),
        "{pending}"
    );
    assert!(eventually(Duration::from_secs(7), || k
        .kamcmd(&["push.pending"])
        .unwrap()
        .contains(&format!("{device}: sent (200)"))));
    // Nobody registers: 480 at the deadline.
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(no_call_pending(&k));
}

/// The same RPC as JSON-RPC 2.0 over HTTP (xhttp + jsonrpcs, cfg-examples/push-registrar.cfg
/// with WITH_JSONRPC): push.device_add stores a device, push.devices lists it, a bad request gets
/// a 400 error object, and a GET elsewhere gets 404.
#[test]
fn device_add_works_as_json_rpc_over_http() {
    let server = PushServer::ok(None);
    let k = registrar_with("rpc-http", &server.url(), 20, &[("WITH_JSONRPC", "1")]);
    let url = format!("http://127.0.0.1:{}/RPC", k.sip_port());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let call = |body: serde_json::Value| -> (u16, serde_json::Value) {
        runtime.block_on(async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("no HTTP answer");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
            )
        })
    };
    let (status, answer) = call(serde_json::json!({
        "jsonrpc": "2.0",
        "method": "push.device_add",
        "params": ["erin", APP, "fcm", TOKEN, "instance=<urn:uuid:erin-tablet>"],
        "id": 1
    }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], 1);
    let result = &answer["result"];
    assert_eq!(result["result"], "stored", "{answer}");
    assert_eq!(result["aor"], "erin");
    assert_eq!(result["device"], "<urn:uuid:erin-tablet>");
    assert_eq!(result["token"], "c0ffee…4444");
    assert!(parse_iso(result["updated_at"].as_str().unwrap()).is_some());
    assert!(!answer.to_string().contains(TOKEN));

    // Listed over HTTP as over kamcmd.
    let (_, listed) = call(serde_json::json!({
        "jsonrpc": "2.0", "method": "push.devices", "params": ["limit=10"], "id": 2
    }));
    let text = listed.to_string();
    assert!(
        text.contains("\"total\":1") && text.contains("erin-tablet"),
        "{text}"
    );
    assert!(k
        .kamcmd(&["push.devices", "erin"])
        .unwrap()
        .contains("c0ffee…4444"));

    // A bad request: an error object with 400 and the reason.
    let (_, refused) = call(serde_json::json!({
        "jsonrpc": "2.0",
        "method": "push.device_add",
        "params": ["erin", "no.such.app", "fcm", TOKEN],
        "id": 3
    }));
    assert_eq!(refused["error"]["code"], 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no app 'no.such.app'"),
        "{refused}"
    );

    // Anything but /RPC is not served.
    let status = runtime.block_on(async {
        client
            .get(format!("http://127.0.0.1:{}/other", k.sip_port()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 404);
}
