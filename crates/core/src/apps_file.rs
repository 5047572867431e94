//! Apps from a file (`modparam("push", "apps_file", "/etc/kamailio/push-apps.conf")`), so that
//! apps can be added, changed and removed with `kamcmd push.reload` instead of a restart.
//!
//! The format: one app per line, written exactly as the value of `modparam("push", "app", ...)`
//! (`id=...;provider=...;key=value;...`, the same keys); blank lines and lines whose first
//! non-blank character is `#` are ignored (a `#` elsewhere is part of the value: URLs and
//! secrets may hold one). An error names the line (1-based) and what is wrong with it, never a
//! secret. A file is taken whole or not at all.
//!
//! The SIP workers need the apps too (a REGISTER naming an app no one serves is not a push
//! device, RFC 8599's 555), and they are separate processes forked before any reload. The
//! dispatcher, which re-reads the file, publishes the apps it accepted on the [`AppsBoard`], a
//! shared mapping created before fork; a worker that sees the board's generation change re-reads
//! the apps from it (never from the file, which may have changed again since).

use crate::config::{App, AppProvider};
use crate::providers::clean::outside_text;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// The largest apps file read (bytes).
pub const MAX_FILE_BYTES: usize = 256 << 10;
/// The most apps a file may declare.
pub const MAX_FILE_APPS: usize = 1000;

/// Why a file cannot be used: `line` 0 is the file as a whole (unreadable, too large).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "line {}: {}", self.line, self.problem)
        }
    }
}

/// The apps of a file's text, in file order, each marked `from_file`.
pub fn parse(text: &str) -> Result<Vec<App>, FileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(FileError {
            line: 0,
            problem: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let mut apps: Vec<(usize, App)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let spec = line.trim();
        if spec.is_empty() || spec.starts_with('#') {
            continue;
        }
        let mut app = App::parse(spec).map_err(|problem| FileError {
            line: line_no,
            // The operator's own text, but bounded and escaped before it reaches a log line.
            problem: outside_text(&problem, None),
        })?;
        if let Some((first, _)) = apps.iter().find(|(_, a)| a.id == app.id) {
            return Err(FileError {
                line: line_no,
                problem: format!(
                    "app id '{}' is already declared on line {first}",
                    outside_text(&app.id, None)
                ),
            });
        }
        if apps.len() == MAX_FILE_APPS {
            return Err(FileError {
                line: line_no,
                problem: format!("more than {MAX_FILE_APPS} apps"),
            });
        }
        app.from_file = true;
        apps.push((line_no, app));
    }
    Ok(apps.into_iter().map(|(_, app)| app).collect())
}

/// Reads and parses the apps file at `path`.
pub fn read(path: &Path) -> Result<Vec<App>, FileError> {
    parse(&read_text(path)?)
}

/// The text of the apps file at `path` (bounded, UTF-8).
pub fn read_text(path: &Path) -> Result<String, FileError> {
    let whole = |problem: String| FileError { line: 0, problem };
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read it: {e}")))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(whole(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read it: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        FileError {
            line,
            problem: "not UTF-8 text".to_string(),
        }
    })
}

/// The apps of `modparam("push", "app", ...)` (`params`, those not `from_file`) followed by the
/// file's: an id declared in both is an error.
pub fn merge(params: &[App], file: Vec<App>) -> Result<Vec<App>, String> {
    let mut apps: Vec<App> = params.iter().filter(|a| !a.from_file).cloned().collect();
    for app in file {
        if apps.iter().any(|a| a.id == app.id) {
            return Err(format!(
                "app id '{}' is declared both with modparam(\"push\", \"app\", ...) and in the file",
                outside_text(&app.id, None)
            ));
        }
        apps.push(app);
    }
    Ok(apps)
}

/// The size of the board's text: the file's apps (at most [`MAX_FILE_BYTES`]) and, per app, the
/// Firebase project the dispatcher learned from its service account.
pub const BOARD_BYTES: usize = MAX_FILE_BYTES + 128 * MAX_FILE_APPS;

/// The apps the dispatcher accepted on the last push.reload, shared with every process (a
/// seqlock over a text: one writer, the dispatcher; readers never wait for it).
#[repr(C)]
pub struct AppsBoard {
    /// 0: nothing published (the apps are those of startup); odd: being written; even: the
    /// generation of the text.
    seq: AtomicU64,
    len: AtomicUsize,
    bytes: [AtomicU8; BOARD_BYTES],
}

impl AppsBoard {
    /// Maps an empty board shared with every process forked after this call (never unmapped).
    pub fn create() -> std::io::Result<&'static AppsBoard> {
        let ptr = crate::shared::map_shared_zeroed(std::mem::size_of::<AppsBoard>())?;
        // SAFETY: the mapping is page-aligned, large enough and writable, and all-zero bytes are a
        // valid AppsBoard (atomics of zero); it lives as long as the process.
        Ok(unsafe { &*ptr.as_ptr().cast::<AppsBoard>() })
    }

    /// Publishes the file's apps (`from_file` ones of `apps`, with what was learned of them).
    /// Only the dispatcher writes. Fails if they do not fit (then nothing changed).
    pub fn publish(&self, apps: &[App], specs: &[(String, String)]) -> Result<(), String> {
        let text = encode(apps, specs);
        if text.len() > BOARD_BYTES {
            return Err(format!(
                "the apps take more than {BOARD_BYTES} bytes to share with the SIP workers"
            ));
        }
        let seq = self.seq.load(Ordering::Relaxed);
        let writing = seq | 1;
        self.seq.store(writing, Ordering::Relaxed);
        fence(Ordering::Release);
        for (slot, byte) in self.bytes.iter().zip(text.bytes()) {
            slot.store(byte, Ordering::Relaxed);
        }
        self.len.store(text.len(), Ordering::Relaxed);
        self.seq.store(writing + 1, Ordering::Release);
        Ok(())
    }

    /// The generation published last (0: none).
    pub fn generation(&self) -> u64 {
        self.seq.load(Ordering::Acquire) & !1
    }

    /// The apps published, if the board holds a generation other than `seen`: (generation,
    /// the file's apps). `None` when nothing changed, or while the dispatcher writes (the caller
    /// keeps what it has and looks again next time).
    pub fn read_if_newer(&self, seen: u64) -> Option<(u64, Vec<App>)> {
        for _ in 0..100 {
            let start = self.seq.load(Ordering::Acquire);
            if start == seen {
                return None;
            }
            if start & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = self.len.load(Ordering::Relaxed).min(BOARD_BYTES);
            let bytes: Vec<u8> = self.bytes[..len]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != start {
                continue;
            }
            return Some((start, decode(&String::from_utf8_lossy(&bytes))));
        }
        None
    }
}

/// The board's text: one line per file app, `<Firebase project>\t<app string>` (project empty
/// unless known). `specs` holds (id, app string) of the file's apps as read.
fn encode(apps: &[App], specs: &[(String, String)]) -> String {
    let mut text = String::new();
    for app in apps.iter().filter(|a| a.from_file) {
        let Some((_, spec)) = specs.iter().find(|(id, _)| *id == app.id) else {
            continue;
        };
        let project = match &app.provider {
            AppProvider::Fcm {
                project_id: Some(p),
                ..
            } => p.as_str(),
            _ => "",
        };
        text.push_str(&project.replace(['\t', '\n'], ""));
        text.push('\t');
        text.push_str(spec);
        text.push('\n');
    }
    text
}

fn decode(text: &str) -> Vec<App> {
    text.lines()
        .filter_map(|line| {
            let (project, spec) = line.split_once('\t')?;
            let mut app = App::parse(spec).ok()?;
            app.from_file = true;
            if let AppProvider::Fcm { project_id, .. } = &mut app.provider {
                *project_id = (!project.is_empty()).then(|| project.to_string());
            }
            Some(app)
        })
        .collect()
}

/// The app strings of a file's text, by app id (what [`AppsBoard::publish`] shares).
pub fn specs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|spec| App::parse(spec).ok().map(|a| (a.id, spec.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawValue};

    const HOOK: &str =
        "id=org.example.file;provider=webhook;url=http://127.0.0.1:9/push;secret=hunter2";

    #[test]
    fn one_app_per_line_with_comments_and_blank_lines() {
        let text = format!(
            "# apps of the push module\n\n  {HOOK}  \n\t# id=x;provider=nonsense\n\
             id=b;provider=webhook;url=https://push.example.com/a#frag;dead_status=410,404\n"
        );
        let apps = parse(&text).unwrap();
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["org.example.file", "b"]);
        assert!(apps.iter().all(|a| a.from_file));
        // A '#' inside a value is part of it.
        assert!(matches!(&apps[1].provider,
            AppProvider::Webhook { url, dead_statuses, .. }
                if url == "https://push.example.com/a#frag" && dead_statuses == &[410, 404]));
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("# nothing\n\n").unwrap(), vec![]);
    }

    #[test]
    fn an_error_names_the_line_and_never_a_secret() {
        let text = format!("# one\n{HOOK}\n\nid=c;provider=carrier-pigeon;secret=hunter2\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.problem.contains("unknown provider"), "{e}");
        assert_eq!(
            e.to_string(),
            "line 4: unknown provider 'carrier-pigeon' (supported: webhook, apns, fcm)"
        );
        // A secret with a typo in its separator is not echoed.
        let e = parse("id=a;provider=webhook;url=http://x.example/;secret:hunter2").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // The same id twice.
        let e = parse(&format!("{HOOK}\n{HOOK}\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("already declared on line 1"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
        // A line that is not an app string at all.
        let e = parse(&format!("{HOOK}\nthis is not an app\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("not key=value"), "{e}");
        // Control characters in the operator's text are escaped in the message.
        let e = parse("id=a;provider=web\u{1b}[2Jhook;url=http://x.example/").unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn a_file_is_bounded() {
        let big = format!("# {}\n", "x".repeat(MAX_FILE_BYTES));
        assert_eq!(parse(&big).unwrap_err().line, 0);
        let many: String = (0..=MAX_FILE_APPS)
            .map(|i| format!("id=a{i};provider=webhook;url=http://x.example/\n"))
            .collect();
        let e = parse(&many).unwrap_err();
        assert_eq!(e.line, MAX_FILE_APPS + 1);
    }

    #[test]
    fn reading_names_a_missing_or_binary_file() {
        let dir = std::env::temp_dir().join(format!("apps-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = read(&dir.join("missing.conf")).unwrap_err();
        assert_eq!(missing.line, 0);
        assert!(missing.problem.starts_with("cannot read it"), "{missing}");
        let binary = dir.join("binary.conf");
        std::fs::write(&binary, b"# ok\n# ok\nid=\xff\xfe\n").unwrap();
        assert_eq!(read(&binary).unwrap_err().line, 3);
        let good = dir.join("good.conf");
        std::fs::write(&good, format!("{HOOK}\n")).unwrap();
        assert_eq!(read(&good).unwrap()[0].id, "org.example.file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modparam_and_file_apps_merge_and_a_name_in_both_is_an_error() {
        let param = App::parse("id=p;provider=webhook;url=http://x.example/").unwrap();
        let file = parse(HOOK).unwrap();
        let merged = merge(std::slice::from_ref(&param), file.clone()).unwrap();
        assert_eq!(
            merged.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["p", "org.example.file"]
        );
        // Merging again (a reload) replaces the file's apps, keeps the modparam ones.
        let again = merge(
            &merged,
            parse("id=z;provider=webhook;url=http://y.example/").unwrap(),
        )
        .unwrap();
        assert_eq!(
            again.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["p", "z"]
        );
        let e = merge(
            &[param],
            parse("id=p;provider=webhook;url=http://x.example/;secret=hunter2").unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("'p' is declared both with modparam"), "{e}");
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn the_config_check_reads_the_file() {
        let dir = std::env::temp_dir().join(format!("apps-file-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("apps.conf");
        std::fs::write(&file, format!("# apps\n{HOOK}\n")).unwrap();
        let path = RawValue::Str(file.display().to_string());
        let app = RawValue::Str("id=p;provider=webhook;url=http://x.example/".into());
        let config = Config::from_params(&[
            ("app", app.clone()),
            ("apps_file", path.clone()),
            ("default_app", RawValue::Str("org.example.file".into())),
        ])
        .unwrap();
        assert_eq!(config.apps.len(), 2);
        assert!(config.app_for(Some("org.example.file")).unwrap().from_file);
        // Off by default, and an empty value is off.
        assert_eq!(Config::default().apps_file, None);
        assert!(Config::check_param("apps_file", &RawValue::Str(String::new())).is_ok());
        let e = Config::check_param("apps_file", &RawValue::Str("apps.conf".into())).unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        // A bad line stops Kamailio (and `kamailio -c`) with the parameter and the line.
        std::fs::write(&file, format!("{HOOK}\n\nid=q;provider=webhook\n")).unwrap();
        let e = Config::from_params(&[("app", app.clone()), ("apps_file", path.clone())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "modparam(\"push\", \"apps_file\", ...): line 3: provider=webhook needs url"
            ),
            "{e}"
        );
        // A name in both.
        std::fs::write(
            &file,
            "id=p;provider=webhook;url=http://x.example/;secret=hunter2\n",
        )
        .unwrap();
        let e = Config::from_params(&[("app", app.clone()), ("apps_file", path.clone())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'p' is declared both"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // default_app may name a file app, and must name one that exists.
        std::fs::write(&file, format!("{HOOK}\n")).unwrap();
        let e = Config::from_params(&[
            ("apps_file", path),
            ("default_app", RawValue::Str("nope".into())),
        ])
        .unwrap_err();
        assert_eq!(e.param, "default_app");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_board_carries_the_apps_to_other_processes() {
        let board = AppsBoard::create().unwrap();
        assert_eq!(board.read_if_newer(0), None);
        let text = format!("{HOOK}\n# fcm\nid=android;provider=fcm;service_account=/etc/sa.json\n");
        let mut apps = merge(
            &[App::parse("id=p;provider=webhook;url=http://x.example/").unwrap()],
            parse(&text).unwrap(),
        )
        .unwrap();
        if let AppProvider::Fcm { project_id, .. } = &mut apps[2].provider {
            *project_id = Some("my-project".into());
        }
        // SAFETY: the child only reads the shared mapping and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The child waits for the parent's publication, then checks what it reads.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let ok = loop {
                if let Some((generation, got)) = board.read_if_newer(0) {
                    break generation == 2
                        && got.len() == 2
                        && got[0].id == "org.example.file"
                        && got[0].from_file
                        && matches!(&got[0].provider, AppProvider::Webhook { secret: Some(s), .. } if s.expose() == "hunter2")
                        && matches!(&got[1].provider, AppProvider::Fcm { project_id: Some(p), .. } if p == "my-project");
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            // SAFETY: leaves the forked test child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        board.publish(&apps, &specs(&text)).unwrap();
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(board.generation(), 2);
        assert_eq!(board.read_if_newer(2), None);
        // A second publication is a new generation; no file apps is an empty list.
        board.publish(&apps[..1], &[]).unwrap();
        assert_eq!(board.read_if_newer(2), Some((4, vec![])));
    }
}
