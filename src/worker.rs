//! Helpers for code that runs on SIP workers.

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
