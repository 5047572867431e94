//! Bounds of the strings a queue message carries, so every message fits one atomic queue write
//! ([`super::queue::MAX_FRAME`]). SIP workers cut SIP values to these before they queue them.

pub const MAX_AOR: usize = 256;
pub const MAX_CALL_ID: usize = 256;
pub const MAX_URI: usize = 512;
pub const MAX_NAME: usize = 128;
pub const MAX_CONTACT: usize = 1024;
pub const MAX_INSTANCE: usize = 256;
pub const MAX_USER_AGENT: usize = 256;
/// A held MESSAGE's text (only its start is ever shown: `message_preview`).
pub const MAX_MESSAGE_TEXT: usize = 512;

/// Cuts a string to at most `max` bytes on a character boundary.
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

/// A text for a reply or a log line: at most `max` bytes, control characters escaped, cut on a
/// character boundary and marked with `…` when it was longer.
pub fn bounded_text(text: &str, max: usize) -> String {
    let whole: usize = text.chars().map(|c| escaped(c).len()).sum();
    if whole <= max {
        return escape_controls(text);
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut out = String::with_capacity(max);
    for piece in text.chars().map(escaped) {
        if out.len() + piece.len() > room {
            break;
        }
        out.push_str(&piece);
    }
    out.push('…');
    out
}

/// `text` with its control characters escaped (a log line stays one line).
pub fn escape_controls(text: &str) -> String {
    text.chars().map(escaped).collect()
}

/// One character as it may stand in a log line: control characters escaped, never cut apart.
fn escaped(c: char) -> std::borrow::Cow<'static, str> {
    match c {
        '\n' => "\\n".into(),
        '\r' => "\\r".into(),
        '\t' => "\\t".into(),
        c if c.is_control() => format!("\\u{{{:x}}}", c as u32).into(),
        c => c.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_escapes_and_marks_the_cut() {
        assert_eq!(bounded_text("a\nb", 10), "a\\nb");
        let long = bounded_text(&"é".repeat(300), 200);
        assert!(long.len() <= 200 && long.ends_with('…'), "{long}");
        assert_eq!(bounded_text("short", 200), "short");
    }

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("abc".into(), 5), "abc");
        assert_eq!(bounded("abcdef".into(), 3), "abc");
        assert_eq!(bounded("ééé".into(), 3), "é");
    }
}
