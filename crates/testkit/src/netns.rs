//! Running a test inside a private mount + network namespace, where /etc/hosts sends the push
//! services' real host names to 127.0.0.1 and port 443 is free: the module reaches the mocks at
//! `api.push.apple.com` without any change to the machine (the bind mount over /etc/hosts exists
//! only inside the namespace, and the namespace only as long as the test process).
//!
//! ```ignore
//! #[test]
//! fn wakes_an_iphone() {
//!     if !testkit::netns::run_in_private_netns("wakes_an_iphone") {
//!         return; // the body ran (and passed) in the namespace
//!     }
//!     // ... here: 127.0.0.1:443 is free, api.push.apple.com is 127.0.0.1
//! }
//! ```

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The variable that tells the re-run test binary it is inside the namespace.
pub const NETNS_ENV: &str = "PUSH_TEST_NETNS";
/// The names that resolve to 127.0.0.1 inside the namespace.
pub const NETNS_HOSTS: &[&str] = &[
    "localhost",
    "api.push.apple.com",
    "api.sandbox.push.apple.com",
    "fcm.test",
    "oauth2.test",
];

/// Inside the namespace: lo up, the hosts file over /etc/hosts, then the test binary itself.
const ENTER_SCRIPT: &str =
    "ip link set lo up && mount --bind \"$PUSH_TEST_HOSTS\" /etc/hosts && exec \"$0\" \"$@\"";

/// Are we the re-run inside the private namespace?
pub fn in_private_netns() -> bool {
    std::env::var(NETNS_ENV).as_deref() == Ok("1")
}

/// The /etc/hosts used inside the namespace.
pub fn hosts_file_text() -> String {
    let mut text = format!("127.0.0.1\t{}\n", NETNS_HOSTS.join(" "));
    // The machine's own name, so that software resolving it finds an answer without DNS (the
    // namespace has no route out).
    if let Ok(name) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && !NETNS_HOSTS.contains(&name) {
            text.push_str(&format!("127.0.0.1\t{name}\n"));
        }
    }
    text.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    text
}

fn hosts_path(test_name: &str) -> PathBuf {
    let dir = crate::target_tmpdir().join("netns");
    fs::create_dir_all(&dir).unwrap();
    let safe: String = test_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!("hosts-{}-{safe}", std::process::id()))
}

/// Outside the namespace: runs test `test_name` (its full libtest name, e.g. `my_test` or
/// `module::my_test`) of this test binary again inside a private mount + network namespace,
/// streams its output, panics with that output when it fails, and returns false: the caller
/// returns. Inside (env `PUSH_TEST_NETNS=1`): returns true and the caller runs its body.
///
/// The inner run is limited to `PUSH_TEST_NETNS_TIMEOUT` seconds (default 300).
pub fn run_in_private_netns(test_name: &str) -> bool {
    if in_private_netns() {
        return true;
    }
    let hosts = hosts_path(test_name);
    fs::write(&hosts, hosts_file_text()).unwrap();
    let exe = std::env::current_exe().expect("no current test binary");
    let timeout = Duration::from_secs(
        std::env::var("PUSH_TEST_NETNS_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            ENTER_SCRIPT,
        ])
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .env("PUSH_TEST_HOSTS", &hosts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run unshare (util-linux)");

    let output = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|stream| {
        let output = output.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                eprintln!("[netns] {line}");
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        })
    })
    .collect();

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // unshare execs sh, which execs the test binary: this pid is the test process.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    for r in readers {
        let _ = r.join();
    }
    let _ = fs::remove_file(&hosts);
    let output = output.lock().unwrap().clone();
    match status {
        None => panic!(
            "{test_name} did not finish within {} s in its private network namespace:\n{output}",
            timeout.as_secs()
        ),
        Some(s) if !s.success() => {
            panic!("{test_name} failed in its private network namespace ({s}):\n{output}")
        }
        Some(_) => {}
    }
    // A name that matches no test makes libtest run nothing, successfully.
    assert!(
        output.contains("running 1 test") && output.contains("1 passed"),
        "{test_name} did not run in its private network namespace (is it its exact libtest \
         name?):\n{output}"
    );
    false
}
