//! The Debian package as an operator uses it: `scripts/package.sh` builds it for the installed
//! Kamailio, `dpkg -i` installs it, the installed example passes `kamailio -c` with push.so from
//! Kamailio's own module directory, Kamailio runs as user `kamailio` (as kamailio.service does)
//! with the default device store and stores a device; `dpkg -r` leaves no module behind and
//! `dpkg --purge` no device store. The reference is installed where operators look for Kamailio's
//! module docs, `/usr/share/doc/kamailio/modules/README.push.gz`, in their layout, with a section
//! per parameter the module declares. The test undoes everything it installed, also when it fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const PACKAGES: [&str; 2] = ["kamailio-push-dbgsym", "kamailio-push"];
const DEFAULT_STORE: &str = "/var/lib/kamailio/push.sqlite";
const DOC: &str = "/usr/share/doc/kamailio-push";
/// The text reference, beside Kamailio's own module READMEs.
const KAMAILIO_README: &str = "/usr/share/doc/kamailio/modules/README.push.gz";
const TOKEN: &str = "d00d0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Purges the packages when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").arg("--purge").args(PACKAGES).output();
    }
}

fn deb(dir: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".deb")
        })
        .unwrap_or_else(|| panic!("no {prefix}*.deb in {}", dir.display()))
}

/// The text reference: owned by kamailio-push, beside Kamailio's READMEs (README.tm.gz), linked
/// from kamailio-push's doc directory, in Kamailio's layout, with a "3.N. name (type)" section,
/// a default and an example for every parameter of the module.
fn check_installed_readme() {
    let owner = run(Command::new("dpkg").args(["-S", KAMAILIO_README]));
    assert!(
        owner.starts_with("kamailio-push:"),
        "{KAMAILIO_README} belongs to {owner}"
    );
    assert!(Path::new("/usr/share/doc/kamailio/modules/README.tm.gz").is_file());
    let link = Path::new(DOC).join("README.push.gz");
    assert_eq!(
        fs::canonicalize(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display())),
        Path::new(KAMAILIO_README)
    );
    let text = run(Command::new("zcat").arg(KAMAILIO_README));
    for heading in [
        "push Module",
        "Chapter 1. Admin Guide",
        "1. Overview",
        "2. Dependencies",
        "3. Parameters",
        "4. Functions",
        "6. RPC Commands",
        "7. Statistics",
        "Chapter 2. Frequently Asked Questions",
    ] {
        assert!(
            text.lines().any(|l| l == heading),
            "{KAMAILIO_README} has no heading {heading:?}"
        );
    }
    let parameters: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "3. Parameters")
        .take_while(|l| *l != "4. Functions")
        .collect();
    for param in push_core::config::PARAMS {
        let kind = match param.kind {
            push_core::config::Kind::Int => "integer",
            push_core::config::Kind::Str => "string",
        };
        // "3.N. name (type)", N being the parameter's place in the reference.
        let heading = format!(". {} ({kind})", param.name);
        let at = parameters
            .iter()
            .position(|l| l.starts_with("3.") && l.ends_with(&heading))
            .unwrap_or_else(|| panic!("{KAMAILIO_README}: no section \"3.N{heading}\""));
        let example = format!("Set {} parameter", param.name);
        let section = parameters[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("3."));
        assert!(
            section.clone().any(|l| l.trim().ends_with(&example)),
            "{KAMAILIO_README}: {heading:?} has no example"
        );
        assert!(
            section
                .clone()
                .any(|l| l.trim().starts_with("Default value is"))
                || matches!(param.default, push_core::config::DefaultValue::None),
            "{KAMAILIO_README}: {heading:?} has no default"
        );
    }
}

fn has_debug_info(so: &str) -> bool {
    run(Command::new("readelf").args(["-S", "-W", so])).contains(".debug_info")
}

#[test]
fn package_installs_runs_as_kamailio_and_removes_cleanly() {
    if testing_built_kamailio() {
        // The package depends on the Debian kamailio package it was built for; a Kamailio built
        // into its own prefix (KAMAILIO_BIN) has no package to depend on.
        eprintln!(
            "package test: runs against the installed Debian kamailio only (KAMAILIO_BIN is set)"
        );
        return;
    }
    for p in PACKAGES {
        assert!(
            !installed(p),
            "{p} is installed on this machine; this test installs and purges its own build: remove it first"
        );
    }
    assert!(
        !Path::new(DEFAULT_STORE).exists(),
        "{DEFAULT_STORE} exists: this test would purge it"
    );

    let out = run_dir("package");
    run(Command::new(repo_root().join("scripts/package.sh"))
        .arg("--module")
        .arg(module_path())
        .arg("--out")
        .arg(&out));
    let main = deb(&out, "kamailio-push_");
    let dbgsym = deb(&out, "kamailio-push-dbgsym_");

    // Pinned to exactly the installed Kamailio.
    let kamailio = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "kamailio"]));
    let depends = run(Command::new("dpkg-deb").arg("-f").arg(&main).arg("Depends"));
    assert!(
        depends.contains(&format!("kamailio (= {kamailio})")),
        "Depends: {depends}"
    );

    let _purge = Purge;
    run(Command::new("dpkg").arg("-i").arg(&main).arg(&dbgsym));
    let so = format!("{DEBIAN_MODULES}/push.so");
    assert!(!has_debug_info(&so), "{so} still carries its debug info");
    let build_id = run(Command::new("readelf").args(["-n", &so]));
    let build_id = build_id
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("push.so has a build id")
        .to_string();
    let debug_file = format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &build_id[..2],
        &build_id[2..]
    );
    assert!(has_debug_info(&debug_file), "{debug_file}");
    for doc in [
        "push.md",
        "copyright",
        "changelog.Debian.gz",
        "examples/push-registrar.cfg",
    ] {
        assert!(Path::new(DOC).join(doc).is_file(), "{DOC}/{doc} missing");
    }
    check_installed_readme();
    let kamailio_user = fs::metadata("/var/lib/kamailio")
        .expect("no /var/lib/kamailio")
        .uid();
    let kamailio_uid: u32 = run(Command::new("id").args(["-u", "kamailio"]))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        kamailio_user, kamailio_uid,
        "/var/lib/kamailio is not the kamailio user's"
    );

    // The installed example, with push.so from Kamailio's module directory only.
    let example = Path::new(DOC).join("examples/push-registrar.cfg");
    run(Command::new("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(&example)
        .arg("-L")
        .arg(DEBIAN_MODULES));

    // As kamailio.service runs it: user kamailio, the default db_url.
    let server = PushServer::start(Box::new(|_| (200, Duration::ZERO)), None);
    let mut setup = Setup::new("package-run");
    setup.installed_modules = true;
    setup.run_as = Some("kamailio".into());
    let app = format!(
        "\"id={APP};provider=webhook;url={};secret={SECRET}\"",
        server.url()
    );
    let k = Kamailio::start_file(
        setup,
        &example,
        &[("PUSH_APP", app.as_str()), ("MIN_EXPIRES", "1")],
    );
    let owner = run(Command::new("ps").args(["-o", "user=", "-p", &k.pid.to_string()]));
    assert_eq!(owner.trim(), "kamailio");
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);
    let devices = k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(devices.contains("provider"), "no device stored: {devices}");
    let store = fs::metadata(DEFAULT_STORE).expect("the default device store was not created");
    assert_eq!(store.uid(), kamailio_uid);
    drop(k);

    // Removed: no module left; purged: no device store left.
    run(Command::new("dpkg").arg("-r").args(PACKAGES));
    assert!(!Path::new(&so).exists(), "dpkg -r left {so}");
    assert!(
        !Path::new(KAMAILIO_README).exists(),
        "dpkg -r left {KAMAILIO_README}"
    );
    assert!(
        Path::new("/usr/share/doc/kamailio/modules/README.tm.gz").is_file(),
        "dpkg -r took Kamailio's own module READMEs with it"
    );
    assert!(
        !Path::new(&debug_file).exists(),
        "dpkg -r left {debug_file}"
    );
    assert!(
        Path::new(DEFAULT_STORE).exists(),
        "dpkg -r must keep the device store"
    );
    run(Command::new("dpkg").arg("--purge").args(PACKAGES));
    assert!(
        !Path::new(DEFAULT_STORE).exists(),
        "dpkg --purge left {DEFAULT_STORE}"
    );
}
