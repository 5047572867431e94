//! What push_suspend needs inside a SIP worker, without waiting on anything but a local file:
//! a read-only connection to the device store, opened after fork on first use.

use crate::devices::store::Store;
use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

/// After a failed open, how long a worker answers "no devices" before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

enum Reader {
    Closed,
    Open(Store),
    Failed(Instant),
}

thread_local! {
    static READER: RefCell<Reader> = const { RefCell::new(Reader::Closed) };
}

/// Does this AOR have a push device? Errors say why the store could not be read.
pub fn has_devices(db: &Path, aor: &str) -> Result<bool, String> {
    READER.with(|cell| {
        let mut reader = cell.borrow_mut();
        if let Reader::Failed(at) = *reader {
            if at.elapsed() < REOPEN_AFTER {
                return Err("the device store is not readable yet".to_string());
            }
            *reader = Reader::Closed;
        }
        if let Reader::Closed = *reader {
            match Store::open_reader(db) {
                Ok(store) => *reader = Reader::Open(store),
                Err(e) => {
                    *reader = Reader::Failed(Instant::now());
                    return Err(e.to_string());
                }
            }
        }
        match &*reader {
            Reader::Open(store) => store.has_devices(aor).map_err(|e| e.to_string()),
            _ => Err("the device store is not open".to_string()),
        }
    })
}

/// Cuts a string to at most `max` bytes on a character boundary (bounded message sizes).
pub fn bounded(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("abc".into(), 5), "abc");
        assert_eq!(bounded("abcdef".into(), 3), "abc");
        assert_eq!(bounded("ééé".into(), 3), "é");
    }
}
