//! Serverpod's `DateTime` text form: ISO-8601 in UTC as Dart's `toIso8601String` writes
//! it (`2026-01-01T12:00:00.000Z`, microseconds appended when non-zero).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};

/// Formats `value` the way Dart's `DateTime.toIso8601String()` formats a UTC time.
///
/// Precision below one microsecond is dropped (Dart has none). Years outside
/// `0..=9999` are written with a sign and six digits, as Dart does.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
/// assert_eq!(streampod_protocol::datetime::format(&t), "2026-01-01T12:00:00.000Z");
/// ```
pub fn format(value: &DateTime<Utc>) -> String {
    // Digits written by hand: this runs once per DateTime field of every value sent,
    // and `write!` cost several times as much.
    let naive = value.naive_utc();
    let mut out = Vec::with_capacity(27);
    let year = naive.year();
    if (0..=9999).contains(&year) {
        push_digits(&mut out, year.unsigned_abs(), 4);
    } else {
        out.push(if year < 0 { b'-' } else { b'+' });
        push_digits(&mut out, year.unsigned_abs(), 6);
    }
    // chrono stores a leap second as nanoseconds >= 1e9; Dart cannot express it.
    let nanos = naive.nanosecond().min(999_999_999);
    let (millis, micros) = (nanos / 1_000_000, nanos / 1_000 % 1_000);
    for (separator, part) in [
        (b'-', naive.month()),
        (b'-', naive.day()),
        (b'T', naive.hour()),
        (b':', naive.minute()),
        (b':', naive.second()),
    ] {
        out.push(separator);
        push_digits(&mut out, part, 2);
    }
    out.push(b'.');
    push_digits(&mut out, millis, 3);
    if micros != 0 {
        push_digits(&mut out, micros, 3);
    }
    out.push(b'Z');
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        // A remainder below 10 fits a digit.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// Why a `DateTime` string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DateTime '{input}': {reason}; expected ISO-8601 like 2026-01-01T12:00:00.000Z")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

/// Parses what Dart's `DateTime.parse` accepts: a date with an optional sign and 4 to 6
/// year digits, `-` separators optional (`20240101`), then optionally a time after `T` or
/// a space with `:` optional and minutes, seconds and a `.`/`,` fraction each optional
/// (`T000000`, `T12`), then optionally `Z` or a `±HH[:MM]` offset (a space may precede
/// it). A time without an offset is taken as UTC (Dart would take it as local time).
///
/// # Errors
///
/// A [`ParseError`] naming what is wrong.
pub fn parse(input: &str) -> Result<DateTime<Utc>, ParseError> {
    let fail = |reason| ParseError {
        input: input.to_owned(),
        reason,
    };
    let bytes = input.as_bytes();
    let signed = matches!(bytes.first(), Some(b'+' | b'-'));
    let run = Cursor(&bytes[usize::from(signed)..]).digits_len();
    if run < 4 {
        return Err(fail("the year needs 4 to 6 digits"));
    }
    // Like Dart's regular expression, the year takes as many digits as leave a valid
    // rest: `20240101` is 2024-01-01, `+0123450101` the year 12345.
    let mut last = fail("bad month");
    for year_digits in (4..=run.min(6)).rev() {
        match parse_with_year(bytes, signed, year_digits) {
            Ok(value) => return Ok(value),
            Err(reason) => last = fail(reason),
        }
    }
    Err(last)
}

fn parse_with_year(
    bytes: &[u8],
    signed: bool,
    year_digits: usize,
) -> Result<DateTime<Utc>, &'static str> {
    let mut cursor = Cursor(bytes);
    let sign = if signed {
        let sign = if cursor.peek() == Some(b'-') { -1 } else { 1 };
        cursor.bump();
        sign
    } else {
        1
    };
    let year = sign * cursor.number(year_digits).ok_or("bad year")?;
    cursor.optional(b'-');
    let month = cursor.number(2).ok_or("bad month")?;
    cursor.optional(b'-');
    let day = cursor.number(2).ok_or("bad day")?;
    let date = i32::try_from(year)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, month as u32, day as u32))
        .ok_or("no such date")?;
    if cursor.0.is_empty() {
        return Ok(date.and_time(NaiveTime::MIN).and_utc());
    }
    if !matches!(cursor.peek(), Some(b'T' | b't' | b' ')) {
        return Err("unexpected character after the date");
    }
    cursor.bump();
    let hour = cursor.number(2).ok_or("bad hour")?;
    let (mut minute, mut second, mut micros) = (0, 0, 0);
    if let Some(value) = cursor.component() {
        minute = value;
        if let Some(value) = cursor.component() {
            second = value;
            if matches!(cursor.peek(), Some(b'.' | b',')) {
                cursor.bump();
                let len = cursor.digits_len();
                if len == 0 {
                    return Err("a fraction needs digits");
                }
                let kept = len.min(6);
                micros = cursor.number(kept).ok_or("bad fraction")? * 10_i64.pow((6 - kept) as u32);
                cursor.skip(len - kept);
            }
        }
    }
    let time =
        NaiveTime::from_hms_micro_opt(hour as u32, minute as u32, second as u32, micros as u32)
            .ok_or("no such time")?;

    if cursor.peek() == Some(b' ') && cursor.0.len() > 1 {
        cursor.bump();
    }
    let offset_seconds = match cursor.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            cursor.bump();
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.bump();
            let hours = cursor.number(2).ok_or("bad offset hours")?;
            let minutes = cursor.component().unwrap_or(0);
            let total = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        Some(_) => return Err("unexpected character after the time"),
    };
    if !cursor.0.is_empty() {
        return Err("unexpected trailing characters");
    }
    date.and_time(time)
        .and_utc()
        .checked_sub_signed(TimeDelta::seconds(offset_seconds))
        .ok_or("out of range")
}

/// A time from integer milliseconds since the Unix epoch (the other form Serverpod accepts).
pub fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// A byte cursor for the hand-written parser above.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn bump(&mut self) {
        self.skip(1);
    }

    fn skip(&mut self, n: usize) {
        self.0 = self.0.get(n..).unwrap_or_default();
    }

    fn digits_len(&self) -> usize {
        self.0.iter().take_while(|b| b.is_ascii_digit()).count()
    }

    /// Reads exactly `len` digits.
    fn number(&mut self, len: usize) -> Option<i64> {
        if len == 0 || self.digits_len() < len {
            return None;
        }
        let value = self.0[..len]
            .iter()
            .fold(0_i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        self.skip(len);
        Some(value)
    }

    /// Skips `byte` when it comes next.
    fn optional(&mut self, byte: u8) {
        if self.peek() == Some(byte) {
            self.bump();
        }
    }

    /// A further time component: an optional `:` and exactly two digits, or nothing
    /// (the cursor unmoved) when they do not follow.
    fn component(&mut self) -> Option<i64> {
        let before = self.0;
        self.optional(b':');
        let value = self.number(2);
        if value.is_none() {
            self.0 = before;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_dart() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(format(&t), "2026-01-01T12:00:00.000Z");
        let t = t + TimeDelta::microseconds(1_234);
        assert_eq!(format(&t), "2026-01-01T12:00:00.001234Z");
        let t = Utc.with_ymd_and_hms(12345, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(format(&t), "+012345-03-04T05:06:07.000Z");
        let t = Utc.with_ymd_and_hms(-44, 3, 15, 0, 0, 0).unwrap();
        assert_eq!(format(&t), "-000044-03-15T00:00:00.000Z");
    }

    #[test]
    fn parses_dart_and_iso_forms() {
        let want = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        for text in [
            "2026-01-01T12:00:00.000Z",
            "2026-01-01T12:00:00Z",
            "2026-01-01 12:00:00",
            "2026-01-01T12:00",
            "2026-01-01T14:00:00+02:00",
            "2026-01-01T07:30:00.000-0430",
            "2026-01-01T12:00:00.0000000Z",
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        assert_eq!(
            parse("2026-01-01"),
            Ok(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            parse("2026-01-01T12:00:00.123456789Z")
                .unwrap()
                .nanosecond(),
            123_456_000
        );
        assert_eq!(
            parse("+012345-03-04T05:06:07.000Z"),
            Ok(Utc.with_ymd_and_hms(12345, 3, 4, 5, 6, 7).unwrap())
        );
        // Dart's other forms: basic (no separators), 5-digit and signed years, an hour
        // alone, a space before the zone.
        let midnight = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for text in [
            "20240101T000000Z",
            "20240101",
            "2024-01-01T00",
            "20240101T0000",
            "2024-01-01 00:00:00 Z",
            "20240101T020000+0200",
            "2024-01-01T02:00:00 +02",
        ] {
            assert_eq!(parse(text), Ok(midnight), "{text}");
        }
        assert_eq!(
            parse("12345-03-04T05:06:07Z"),
            Ok(Utc.with_ymd_and_hms(12345, 3, 4, 5, 6, 7).unwrap())
        );
        assert_eq!(
            parse("-2026-01-01"),
            Ok(Utc.with_ymd_and_hms(-2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            parse("+1234560101"),
            Ok(Utc.with_ymd_and_hms(123456, 1, 1, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30",
            "2026-01-01T25:00:00Z",
            "2026-01-01T12:00:00.Z",
            "2026-01-01T12:00:00Zjunk",
            "26-01-01",
            "2026-01-01T1",
            "2026-01-01X",
            "1234567-01-01",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(text), "{err}");
        }
    }
}
