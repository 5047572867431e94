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
