//! The `Date` header every response carries (RFC 9110 section 6.6.1).
//!
//! An origin server with a clock MUST send `Date`, in the IMF-fixdate format of RFC 9110
//! section 5.6.7:
//!
//! ```text
//! IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
//!               Sun, 06 Nov 1994 08:49:37 GMT
//! ```
//!
//! The value has a resolution of one second, so formatting it for every response would repeat
//! the same work thousands of times a second. Each thread keeps the last field line it formatted
//! (`date: ...` and its CRLF, ready to be copied into a response head) and the second it belongs
//! to; a request costs one clock read and a copy of 37 bytes. The cache is per thread rather
//! than shared so that reading it never contends.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE_LEN: usize = 29;

/// `date: ` before the value.
const PREFIX: &[u8] = b"date: ";

/// Length of the whole field line: `date: `, the value, CRLF.
pub(crate) const LINE_LEN: usize = PREFIX.len() + IMF_FIXDATE_LEN + 2;

thread_local! {
    /// The unix second of the cached line, and the line.
    static CACHED: Cell<(u64, [u8; LINE_LEN])> = const { Cell::new((u64::MAX, [0; LINE_LEN])) };
}

/// The current time as a `Date` field line, `date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`.
pub(crate) fn field_line() -> [u8; LINE_LEN] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (cached_secs, line) = cached.get();
        if cached_secs == secs {
            return line;
        }
        let mut line = [0; LINE_LEN];
        line[..PREFIX.len()].copy_from_slice(PREFIX);
        line[PREFIX.len()..LINE_LEN - 2].copy_from_slice(&imf_fixdate(secs));
        line[LINE_LEN - 2..].copy_from_slice(b"\r\n");
        cached.set((secs, line));
        line
    })
}

/// Formats `unix_secs` (seconds since 1970-01-01T00:00:00Z) as an IMF-fixdate.
pub(crate) fn imf_fixdate(unix_secs: u64) -> [u8; IMF_FIXDATE_LEN] {
    const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTH_NAMES: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4 when Sunday is 0).
    let weekday = ((days + 4) % 7) as usize;

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAY_NAMES[weekday]);
    put_two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTH_NAMES[(month - 1) as usize]);
    put_two_digits(&mut out[12..14], year / 100);
    put_two_digits(&mut out[14..16], year % 100);
    put_two_digits(&mut out[17..19], secs_of_day / 3600);
    put_two_digits(&mut out[20..22], secs_of_day / 60 % 60);
    put_two_digits(&mut out[23..25], secs_of_day % 60);
    out
}

fn put_two_digits(dst: &mut [u8], n: u64) {
    dst[0] = b'0' + (n / 10 % 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// Year, month (1..=12) and day (1..=31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar.
///
/// The calendar is shifted to start on 1 March, so that the leap day is the last day of the
/// year, and counted in 400-year eras of 146 097 days, within which the pattern of leap years
/// repeats exactly. This is the `civil_from_days` method of Howard Hinnant's "chrono-compatible
/// low-level date algorithms", restricted to dates after 1970.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_rfc_example() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn formats_edges_of_the_calendar() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        // 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(4_107_542_400),
            b"Mon, 01 Mar 2100 00:00:00 GMT"
        );
        assert_eq!(
            &imf_fixdate(1_735_689_599),
            b"Tue, 31 Dec 2024 23:59:59 GMT"
        );
    }

    #[test]
    fn cached_line_is_a_date_field() {
        for _ in 0..2 {
            let line = field_line();
            let text = std::str::from_utf8(&line).unwrap();
            assert!(text.starts_with("date: "), "{text}");
            assert!(text.ends_with(" GMT\r\n"), "{text}");
        }
    }
}
