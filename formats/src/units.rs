//! Money and time as the whole crate carries them: integer cents (`i64`) and microseconds
//! since the Unix epoch, UTC; their exact parsing and their text forms. A leaf: it imports
//! nothing of the crate.

use chrono::{DateTime, NaiveDateTime};

/// Avro `decimal(12, 2)`: the largest magnitude in cents.
pub const MAX_CENTS: i64 = 999_999_999_999;

/// Parses exact decimal text (`"50000"`, `"19.9"`, `"-3.50"`) into cents; more than two
/// decimal places (other than trailing zeros), exponents and values beyond
/// `decimal(12, 2)` are errors, never rounded.
pub fn parse_cents(text: &str) -> Result<i64, &'static str> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() {
        return Err("is not a decimal number");
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a decimal number");
    }
    if frac.len() > 2 {
        return Err("cannot be encoded: more than 2 decimal places");
    }
    let int = int.trim_start_matches('0');
    if int.len() > 10 {
        return Err("cannot be encoded: more than 12 digits");
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "is not a decimal number")?
    };
    let mut cents: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| "is not a decimal number")?
    };
    if frac.len() == 1 {
        cents *= 10;
    }
    let v = whole * 100 + cents;
    if v > MAX_CENTS {
        return Err("cannot be encoded: more than 12 digits");
    }
    Ok(if neg { -v } else { v })
}

/// Formats cents as decimal text with two places: `5000000` -> `"50000.00"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f]` (or with `T`, or RFC 3339 with an offset) as UTC
/// microseconds since the epoch.
pub fn parse_micros(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(m) = parse_canonical_micros(t.as_bytes()) {
        return Some(m);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// The fast path of [`parse_micros`]: exactly `YYYY-MM-DD HH:MM:SS` with an optional
/// fraction of 1 to 6 digits, as every dialect's projection renders timestamps; anything else
/// (or an impossible date) is left to chrono's general parser.
fn parse_canonical_micros(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let micros = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=6).contains(&frac.len()) => {
            num(frac)? * 10u32.pow(6 - frac.len() as u32)
        }
        _ => return None,
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    let dt =
        date.and_hms_micro_opt(num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?, micros)?;
    Some(dt.and_utc().timestamp_micros())
}

/// Formats microseconds as the canonical `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) text that every
/// dialect parses.
pub fn format_micros(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => "1970-01-01 00:00:00.000000".into(),
    }
}

/// Formats microseconds as RFC 3339 UTC (`2026-11-21T13:00:00.123456Z`) for JSON.
pub fn rfc3339_micros(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::new(),
    }
}

/// Formats microseconds as RFC 3339 UTC to the second (`2026-11-21T13:00:00Z`), for keys.
pub fn rfc3339_secs(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_and_refuses_to_round() {
        assert_eq!(parse_cents("50000.00"), Ok(5_000_000));
        assert_eq!(parse_cents("19.9"), Ok(1990));
        assert_eq!(parse_cents("0.07"), Ok(7));
        assert_eq!(parse_cents("12"), Ok(1200));
        assert_eq!(parse_cents("1.500"), Ok(150));
        assert_eq!(parse_cents("-3.5"), Ok(-350));
        assert!(
            parse_cents("19.999")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(parse_cents("1e+20").is_err());
        assert!(
            parse_cents("12345678901.00")
                .unwrap_err()
                .contains("12 digits")
        );
        assert_eq!(parse_cents("9999999999.99"), Ok(MAX_CENTS));
        assert_eq!(format_cents(5_000_000), "50000.00");
        assert_eq!(format_cents(7), "0.07");
    }

    #[test]
    fn timestamps_round_trip_through_canonical_text() {
        let m = parse_micros("2026-11-21 13:05:00.25").unwrap();
        assert_eq!(format_micros(m), "2026-11-21 13:05:00.250000");
        assert_eq!(parse_micros("2026-11-21T13:05:00.250000"), Some(m));
        assert_eq!(parse_micros("2026-11-21T13:05:00.25Z"), Some(m));
        assert_eq!(parse_micros("2026-11-21 13:05:00"), Some(m - 250_000));
        assert_eq!(rfc3339_micros(m), "2026-11-21T13:05:00.250000Z");
        assert_eq!(parse_micros("21/11/2026"), None);
        // The fast path agrees with chrono's parser, and leaves it what it does not know.
        for t in [
            "2026-11-21 13:05:00.123456",
            "2026-11-21 13:05:00.1",
            "1999-12-31 23:59:59",
            "2024-02-29 00:00:00.000001",
        ] {
            let slow = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros();
            assert_eq!(parse_canonical_micros(t.as_bytes()), Some(slow), "{t}");
        }
        for t in [
            "2025-02-29 00:00:00",
            "2026-11-21 24:00:00",
            "2026-11-21 13:05:00.1234567",
            "2026-11-21T13:05:00",
            "2026-1x-21 13:05:00",
        ] {
            assert_eq!(parse_canonical_micros(t.as_bytes()), None, "{t}");
        }
        assert_eq!(parse_micros("2025-02-29 00:00:00"), None);
    }
}
