//! Times in RPC answers: ISO 8601 in UTC with milliseconds (`2026-12-01T21:30:05.123Z`), what an
//! operator reads and any JSON tool parses, instead of raw epoch numbers.
//!
//! The conversion from days since 1970-01-01 to a civil date is the usual one for the proleptic
//! Gregorian calendar (eras of 400 years, March-based years so the leap day ends a year).

#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (year, month 1..=12, day 1..=31) of the day `days` after 1970-01-01 (negative: before).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March = 0 .. February = 11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `unix_ms` (milliseconds since 1970-01-01T00:00:00Z) as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Years
/// outside 0..=9999 are written with a sign (ISO 8601's expanded form), never wrong digits.
pub fn iso8601_ms(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let in_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Unix seconds (as the device store keeps them) in ISO 8601.
pub fn iso8601_secs(unix_s: i64) -> String {
    iso8601_ms(unix_s.saturating_mul(1000))
}

/// A [`SystemTime`] in ISO 8601 (before 1970: negative milliseconds, still right).
pub fn iso8601(time: SystemTime) -> String {
    let ms = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    };
    iso8601_ms(ms)
}

/// Now, in milliseconds since the epoch.
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
        // `date -u -d @951782400` (the leap day of a year divisible by 400).
        assert_eq!(iso8601_secs(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_secs(1_709_164_800), "2024-02-29T00:00:00.000Z");
        // The brief's example: 2026-12-01T21:30:05.123Z.
        assert_eq!(iso8601_ms(1_796_160_605_123), "2026-12-01T21:30:05.123Z");
        assert_eq!(iso8601_secs(4_102_444_799), "2099-12-31T23:59:59.000Z");
        // 2100 is not a leap year: after Feb 28 comes Mar 1.
        assert_eq!(iso8601_secs(4_107_542_400), "2100-03-01T00:00:00.000Z");
        assert_eq!(iso8601_secs(253_402_300_799), "9999-12-31T23:59:59.000Z");
        assert_eq!(iso8601_secs(253_402_300_800), "+10000-01-01T00:00:00.000Z");
        assert_eq!(iso8601_secs(-62_167_219_200), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso8601_secs(-62_167_219_201), "-0001-12-31T23:59:59.000Z");
        // Extremes never panic.
        assert!(iso8601_ms(i64::MAX).ends_with('Z'));
        assert!(iso8601_ms(i64::MIN).ends_with('Z'));
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    /// Day by day over 1600..2400, the civil date steps like a calendar: the day after the last
    /// of a month is the first of the next, months have their lengths, leap years as Gregory said.
    #[test]
    fn every_day_follows_the_last() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let start = -135_140; // 1600-01-01
        assert_eq!(civil_from_days(start), (1600, 1, 1));
        let mut prev = civil_from_days(start);
        for days in start + 1..=157_800 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            if pd < length(py, pm) {
                assert_eq!((y, m, d), (py, pm, pd + 1), "day {days}");
            } else if pm < 12 {
                assert_eq!((y, m, d), (py, pm + 1, 1), "day {days}");
            } else {
                assert_eq!((y, m, d), (py + 1, 1, 1), "day {days}");
            }
            prev = (y, m, d);
        }
        assert_eq!(prev.0, 2402);
    }

    #[test]
    fn now_is_this_century() {
        let now = iso8601(SystemTime::now());
        assert!(now.starts_with("20") && now.len() == 24, "{now}");
    }
}
