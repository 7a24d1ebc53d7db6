//! Approved hours: `"Mon-Fri 05:00-21:00 UTC"`, several ranges allowed.
//!
//! ## Syntax
//!
//! One or more ranges, separated by `,` or `;` (or given as a YAML list). A range is
//! `DAYS HH:MM-HH:MM [ZONE]`:
//! - DAYS: a day (`Mon`), a span (`Mon-Fri`, wrapping: `Fri-Mon`), `daily` or `*`; day names are
//!   the English three-letter abbreviations (or full names), in any case;
//! - the times are a start and an end on a 24-hour clock; `24:00` is the end of the day; an end
//!   earlier than the start runs past midnight into the next day (`Mon-Fri 22:00-06:00` covers
//!   Tuesday 05:00);
//! - ZONE: `UTC` (the default), or a fixed offset `UTC+02:00`, `+02:00`, `UTC-5`. Named time zones
//!   are refused rather than guessed, because their offsets change with daylight saving.
//!
//! The ranges compile to a bitmap of the 10,080 minutes of the week (1.3 KiB per policy entry),
//! so checking an event is one division and one bit test.

use nhiwatch_model::Timestamp;

const MINUTES_PER_DAY: i64 = 1_440;
const MINUTES_PER_WEEK: i64 = 7 * MINUTES_PER_DAY;
const WORDS: usize = (MINUTES_PER_WEEK as usize).div_ceil(64);

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Compiled approved hours.
#[derive(Clone)]
pub struct Hours {
    text: String,
    minutes: Box<[u64; WORDS]>,
}

impl std::fmt::Debug for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hours").field(&self.text).finish()
    }
}

impl Hours {
    /// Parses one or more ranges (see the module documentation).
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Hours, String> {
        let mut minutes = Box::new([0u64; WORDS]);
        let mut texts = Vec::new();
        for text in ranges {
            for range in text.as_ref().split([',', ';']) {
                let range = range.trim();
                if range.is_empty() {
                    continue;
                }
                add_range(&mut minutes, range)?;
                texts.push(range.to_owned());
            }
        }
        if texts.is_empty() {
            return Err("no hours given; write e.g. `Mon-Fri 05:00-21:00 UTC`".into());
        }
        Ok(Hours {
            text: texts.join(", "),
            minutes,
        })
    }

    /// The ranges as written, joined with `, `.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `time` falls within the approved hours.
    pub fn contains(&self, time: Timestamp) -> bool {
        let minute = minute_of_week(time.unix_seconds().div_euclid(60));
        self.minutes[minute / 64] & (1 << (minute % 64)) != 0
    }

    /// How many minutes of the week are approved.
    pub fn approved_minutes(&self) -> u32 {
        self.minutes.iter().map(|w| w.count_ones()).sum()
    }
}

/// Minute of the week, 0 = Monday 00:00 UTC, for minutes since the epoch.
fn minute_of_week(minutes: i64) -> usize {
    // 1970-01-01 was a Thursday: three days after a Monday.
    (minutes + 3 * MINUTES_PER_DAY).rem_euclid(MINUTES_PER_WEEK) as usize
}

fn add_range(minutes: &mut [u64; WORDS], range: &str) -> Result<(), String> {
    let bad = |why: &str| format!("`{range}`: {why}; write e.g. `Mon-Fri 05:00-21:00 UTC`");
    let mut words = range.split_whitespace();
    let days = words.next().ok_or_else(|| bad("no days"))?;
    let times = words.next().ok_or_else(|| bad("no times"))?;
    let offset = match words.next() {
        None => 0,
        Some(zone) => parse_zone(zone).ok_or_else(|| {
            bad("the zone must be UTC or a fixed offset such as UTC+02:00 (named zones change with daylight saving)")
        })?,
    };
    if words.next().is_some() {
        return Err(bad("unexpected text after the zone"));
    }
    let days = parse_days(days).ok_or_else(|| bad("unknown days"))?;
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| bad("the times need a `-`"))?;
    let start = parse_clock(start).ok_or_else(|| bad("the start is not HH:MM"))?;
    let end = parse_clock(end).ok_or_else(|| bad("the end is not HH:MM"))?;
    if start == end || start == MINUTES_PER_DAY {
        return Err(bad("the range is empty"));
    }
    let length = (end - start).rem_euclid(MINUTES_PER_DAY);
    let length = if length == 0 { MINUTES_PER_DAY } else { length };
    for day in 0..7i64 {
        if days & (1 << day) == 0 {
            continue;
        }
        let local = day * MINUTES_PER_DAY + start;
        for m in local..local + length {
            // Local time = UTC + offset, so UTC = local - offset.
            let minute = (m - offset).rem_euclid(MINUTES_PER_WEEK) as usize;
            minutes[minute / 64] |= 1 << (minute % 64);
        }
    }
    Ok(())
}

/// A day set as 7 bits, Monday = bit 0.
fn parse_days(text: &str) -> Option<u8> {
    let lower = text.to_ascii_lowercase();
    if lower == "daily" || lower == "*" {
        return Some(0x7f);
    }
    let day = |name: &str| {
        DAYS.iter()
            .position(|full| name.len() >= 3 && full.starts_with(name))
            .map(|d| d as i64)
    };
    let (from, to) = match lower.split_once('-') {
        Some((from, to)) => (day(from)?, day(to)?),
        None => {
            let one = day(&lower)?;
            (one, one)
        }
    };
    let mut set = 0u8;
    let count = (to - from).rem_euclid(7) + 1;
    for i in 0..count {
        set |= 1 << ((from + i) % 7);
    }
    Some(set)
}

fn parse_clock(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Minutes east of UTC.
fn parse_zone(text: &str) -> Option<i64> {
    let upper = text.to_ascii_uppercase();
    let rest = upper.strip_prefix("UTC").unwrap_or(&upper);
    if rest.is_empty() {
        return Some(0);
    }
    let (sign, rest) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    if !(0..=14).contains(&h) || !(0..=59).contains(&m) {
        return None;
    }
    Some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn weekday_business_hours() {
        let hours = Hours::parse(&["Mon-Fri 05:00-21:00 UTC"]).unwrap();
        // 2024-01-01 was a Monday.
        assert!(hours.contains(at("2024-01-01T05:00:00Z")));
        assert!(hours.contains(at("2024-01-05T20:59:59Z")));
        assert!(!hours.contains(at("2024-01-01T04:59:59Z")));
        assert!(!hours.contains(at("2024-01-01T21:00:00Z")));
        assert!(!hours.contains(at("2024-01-06T12:00:00Z")), "Saturday");
        assert_eq!(hours.approved_minutes(), 5 * 16 * 60);
    }

    #[test]
    fn several_ranges_overnight_and_offsets() {
        let hours = Hours::parse(&[
            "Mon-Fri 22:00-06:00 UTC, Sat 08:00-12:00",
            "sun 10:00-11:00 UTC+02:00",
        ])
        .unwrap();
        assert!(
            hours.contains(at("2024-01-02T05:30:00Z")),
            "Monday night into Tuesday"
        );
        assert!(
            hours.contains(at("2024-01-06T05:59:00Z")),
            "Friday night into Saturday"
        );
        assert!(!hours.contains(at("2024-01-06T06:00:00Z")));
        assert!(hours.contains(at("2024-01-06T08:00:00Z")));
        // Sunday 10:00 at UTC+2 is 08:00 UTC.
        assert!(hours.contains(at("2024-01-07T08:30:00Z")));
        assert!(!hours.contains(at("2024-01-07T10:30:00Z")));
        assert_eq!(
            hours.text(),
            "Mon-Fri 22:00-06:00 UTC, Sat 08:00-12:00, sun 10:00-11:00 UTC+02:00"
        );
        let all = Hours::parse(&["daily 00:00-24:00"]).unwrap();
        assert_eq!(all.approved_minutes(), 10_080);
        let wrap = Hours::parse(&["Fri-Mon 00:00-24:00"]).unwrap();
        assert_eq!(wrap.approved_minutes(), 4 * 1_440);
    }

    #[test]
    fn bad_hours_say_why() {
        for (text, why) in [
            ("", "no hours"),
            ("Mon-Fri", "no times"),
            ("Mon-Fry 05:00-21:00", "unknown days"),
            ("Mon 5-21", "not HH:MM"),
            ("Mon 05:00-05:00", "empty"),
            ("Mon 05:00-25:00", "not HH:MM"),
            ("Mon 05:00-21:00 Europe/Paris", "named zones"),
            ("Mon 05:00-21:00 UTC extra", "unexpected"),
        ] {
            let message = Hours::parse(&[text]).unwrap_err();
            assert!(message.contains(why), "{text}: {message}");
        }
    }
}
