//! UTC timestamps: parsed from RFC 3339 without allocating, printed as RFC 3339.
//!
//! Every source writes time differently (CloudTrail whole seconds, Kubernetes microseconds,
//! OTLP nanoseconds since the epoch); the engine keeps one representation, nanoseconds since
//! the Unix epoch in an `i64`, which covers the years 1678 to 2261. A timestamp outside that
//! range is an input error, never a wrapped value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nanoseconds per second.
const NANOS: i64 = 1_000_000_000;

/// A point in time, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Why a timestamp could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeError(&'static str);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TimeError {}

impl Timestamp {
    /// Builds a timestamp from whole seconds and nanoseconds since the epoch.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        secs.checked_mul(NANOS)
            .and_then(|n| n.checked_add(i64::from(nanos)))
            .map(Timestamp)
    }

    /// Builds a timestamp from milliseconds since the epoch.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        millis.checked_mul(1_000_000).map(Timestamp)
    }

    /// The current time, from the system clock.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix(since.as_secs() as i64, since.subsec_nanos()).unwrap_or_default()
    }

    /// Whole seconds since the epoch (rounded towards negative infinity).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(NANOS)
    }

    /// Nanoseconds since the epoch.
    pub fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Hour of the week, 0 = Monday 00:00-00:59 UTC, 167 = Sunday 23:00-23:59 UTC.
    pub fn hour_of_week(self) -> u8 {
        let days = self.unix_seconds().div_euclid(86_400);
        // 1970-01-01 was a Thursday: weekday 3 when Monday is 0.
        let weekday = (days + 3).rem_euclid(7);
        let hour = self.unix_seconds().rem_euclid(86_400) / 3_600;
        (weekday * 24 + hour) as u8
    }

    /// Parses RFC 3339 (`2020-09-14T01:19:40Z`, fractional seconds and `+hh:mm` offsets
    /// accepted; a space may stand for `T`, and lower-case `t`/`z` are accepted as RFC 3339 allows).
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let b = text.as_bytes();
        if b.len() < 19 {
            return Err(TimeError("timestamp is too short for RFC 3339"));
        }
        let digits = |range: std::ops::Range<usize>| -> Result<i64, TimeError> {
            let mut value = 0i64;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return Err(TimeError("expected a digit in the timestamp"));
                }
                value = value * 10 + i64::from(c - b'0');
            }
            Ok(value)
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
            return Err(TimeError(
                "timestamp is not in RFC 3339 form YYYY-MM-DDTHH:MM:SS",
            ));
        }
        if b[16] != b':' {
            return Err(TimeError(
                "timestamp is not in RFC 3339 form YYYY-MM-DDTHH:MM:SS",
            ));
        }
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(TimeError("timestamp has an impossible date"));
        }
        // A leap second (60) is folded into the next second, as most systems do.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(TimeError("timestamp has an impossible time of day"));
        }
        let mut pos = 19;
        let mut nanos = 0i64;
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                if pos - start < 9 {
                    nanos = nanos * 10 + i64::from(b[pos] - b'0');
                }
                pos += 1;
            }
            if pos == start {
                return Err(TimeError("timestamp has a '.' without fractional digits"));
            }
            for _ in (pos - start)..9 {
                nanos *= 10;
            }
        }
        let offset_secs = match b.get(pos) {
            Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
                let h = digits(pos + 1..pos + 3)?;
                let m = digits(pos + 4..pos + 6)?;
                if h > 23 || m > 59 {
                    return Err(TimeError("timestamp has an impossible UTC offset"));
                }
                let secs = h * 3_600 + m * 60;
                if sign == b'+' {
                    secs
                } else {
                    -secs
                }
            }
            None => {
                return Err(TimeError(
                    "timestamp has no UTC offset (expected 'Z' or +hh:mm)",
                ))
            }
            _ => {
                return Err(TimeError(
                    "timestamp has trailing characters after the seconds",
                ))
            }
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_secs;
        Timestamp::from_unix(secs, nanos as u32)
            .ok_or(TimeError("timestamp is outside the years 1678-2261"))
    }

    /// Writes the timestamp as RFC 3339 UTC with the precision it needs
    /// (no fraction, milliseconds, microseconds or nanoseconds).
    pub fn write_rfc3339(self, out: &mut impl fmt::Write) -> fmt::Result {
        let secs = self.unix_seconds();
        let nanos = self.0.rem_euclid(NANOS);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let tod = secs.rem_euclid(86_400);
        write!(
            out,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            tod / 3_600,
            tod % 3_600 / 60,
            tod % 60
        )?;
        if nanos != 0 {
            if nanos % 1_000_000 == 0 {
                write!(out, ".{:03}", nanos / 1_000_000)?;
            } else if nanos % 1_000 == 0 {
                write!(out, ".{:06}", nanos / 1_000)?;
            } else {
                write!(out, ".{nanos:09}")?;
            }
        }
        out.write_char('Z')
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_rfc3339(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_providers_write() {
        let cases = [
            ("2020-09-14T01:19:40Z", 1_600_046_380_000_000_000),
            ("2018-10-26T13:38:34.867116Z", 1_540_561_114_867_116_000),
            ("2024-01-01T00:00:00.5+01:00", 1_704_063_600_500_000_000),
            ("1970-01-01 00:00:00z", 0),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                Timestamp::parse_rfc3339(text),
                Ok(Timestamp(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        for text in [
            "",
            "2020-09-14",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-09-14T25:00:00Z",
            "2020-09-14T01:19:40",
            "2020-09-14T01:19:40Zjunk",
            "9999-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "2020-09-14T01:19:40.Z",
        ] {
            assert!(
                Timestamp::parse_rfc3339(text).is_err(),
                "{text} should fail"
            );
        }
    }

    #[test]
    fn hour_of_week_starts_monday() {
        // 2024-01-01 was a Monday.
        let monday = Timestamp::parse_rfc3339("2024-01-01T00:30:00Z").unwrap();
        assert_eq!(monday.hour_of_week(), 0);
        let sunday = Timestamp::parse_rfc3339("2023-12-31T23:10:00Z").unwrap();
        assert_eq!(sunday.hour_of_week(), 167);
    }

    proptest! {
        #[test]
        fn display_round_trips(nanos in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            let ts = Timestamp(nanos);
            prop_assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()), Ok(ts));
        }

        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = Timestamp::parse_rfc3339(&text);
        }
    }
}
