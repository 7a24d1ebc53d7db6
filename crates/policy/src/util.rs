//! Small deserialisation helpers shared by the policy file and IAM documents.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// A value written either alone or as a list (`action: "s3:*"` or `action: ["s3:*", "ec2:*"]`),
/// as both YAML policy files and IAM documents allow.
///
/// Written as a visitor rather than `#[serde(untagged)]` so that an error inside an item keeps
/// the line and key path serde_norway attaches (untagged enums buffer the input and lose both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                let one = T::deserialize(de::value::StrDeserializer::<E>::new(text))?;
                Ok(OneOrMany(vec![one]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }

        deserializer.deserialize_any(Items(PhantomData))
    }
}

/// Deserialises a string and checks it with `check` *inside* the visitor, so that the
/// deserialiser (serde_norway) attaches the value's own line and key path to a failure.
pub(crate) fn checked_str<'de, D, T, F>(
    deserializer: D,
    expecting: &'static str,
    check: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct Checked<F, T>(F, &'static str, PhantomData<fn() -> T>);

    impl<'de, F: FnOnce(&str) -> Result<T, String>, T> Visitor<'de> for Checked<F, T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            (self.0)(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(Checked(check, expecting, PhantomData))
}

/// Parses a duration written as numbers and units: `90s`, `30m`, `2h`, `1d`, `1h30m`.
/// Returns nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration; write e.g. `90s`, `30m`, `2h` or `1d`");
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(digits);
        let number: i64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(seconds * 1_000_000_000)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        rest = tail;
    }
    if total == 0 {
        return Err(format!("`{text}` is an empty duration"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        const S: i64 = 1_000_000_000;
        assert_eq!(parse_duration("30m"), Ok(1_800 * S));
        assert_eq!(parse_duration("1h30m"), Ok(5_400 * S));
        assert_eq!(parse_duration("2d"), Ok(172_800 * S));
        for bad in ["", "m", "30", "30x", "0s", "-5m", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_or_many_reads_both_forms() {
        let one: OneOrMany<String> = serde_json::from_str(r#""a""#).unwrap();
        let many: OneOrMany<String> = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert_eq!(one.0, vec!["a"]);
        assert_eq!(many.0, vec!["a", "b"]);
        assert!(serde_json::from_str::<OneOrMany<String>>("3").is_err());
    }
}
