//! RFC 3339 timestamps (`2030-01-01T00:00:00Z`) to and from Unix milliseconds.
//!
//! The API speaks RFC 3339 because every JSON client can produce and read it; the store keeps
//! milliseconds. Days are converted with the proleptic Gregorian calendar arithmetic of Howard
//! Hinnant's `days_from_civil` / `civil_from_days`. Written out: UTC, `Z`, milliseconds only
//! when not zero. Read: any offset (`Z`, `+02:00`), fractions of a second to any precision
//! (truncated to milliseconds), no leap seconds. Times before 1970 are refused.

/// Formats Unix milliseconds as RFC 3339 in UTC.
pub fn format(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let millis = ms % 1000;
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// Parses an RFC 3339 date-time into Unix milliseconds.
pub fn parse(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (millis, zone) = fraction(&text[19..])?;
    let offset_secs = offset(zone)?;
    let days = days_from_civil(year as i64, month, day);
    let local = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    let utc = local - offset_secs;
    (utc >= 0).then(|| utc as u64 * 1000 + millis)
}

/// Splits an optional `.fff` off the front: (milliseconds, the rest).
fn fraction(text: &str) -> Option<(u64, &str)> {
    let Some(digits) = text.strip_prefix('.') else {
        return Some((0, text));
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    let mut millis = 0;
    for (i, c) in digits[..len.min(3)].bytes().enumerate() {
        millis += u64::from(c - b'0') * 10u64.pow(2 - i as u32);
    }
    Some((millis, &digits[len..]))
}

/// `Z` or `±HH:MM`, in seconds east of UTC.
fn offset(zone: &str) -> Option<i64> {
    if zone == "Z" || zone == "z" {
        return Some(0);
    }
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = zone[1..3].parse().ok()?;
    let minutes: i64 = zone[4..6].parse().ok()?;
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format(1_893_456_000_250), "2030-01-01T00:00:00.250Z");
        assert_eq!(parse("2030-01-01T00:00:00Z"), Some(1_893_456_000_000));
        assert_eq!(
            parse("2030-01-01T02:00:00.25+02:00"),
            Some(1_893_456_000_250)
        );
        assert_eq!(parse("2029-12-31T19:00:00-05:00"), Some(1_893_456_000_000));
        assert_eq!(
            parse("2000-02-29T00:00:00.123456789Z"),
            Some(951_782_400_123)
        );
    }

    #[test]
    fn malformed_times_are_refused() {
        for text in [
            "",
            "2030-01-01",
            "2030-01-01T00:00:00",
            "2030-13-01T00:00:00Z",
            "2030-02-29T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:00:60Z",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00+2:00",
            "1969-12-31T23:59:59Z",
            "+030-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn parse_inverts_format(ms in 0u64..253_402_300_800_000) {
            prop_assert_eq!(parse(&format(ms)), Some(ms));
        }
    }
}
