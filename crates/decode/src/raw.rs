//! The raw record an event keeps, without reading the record a second time.

use serde_json::value::RawValue;

use crate::DecodeError;

/// A record, known to be one valid JSON value (it was just read whole, skipped values
/// included), as a borrowed [`RawValue`]: what an event keeps as `raw`.
///
/// serde_json has no public constructor for a borrowed `RawValue`: the only way is to let a
/// deserializer hand one over, and serde_json's own parser would read the record a second time,
/// which costs as much as the decoding itself. So this plays the part of a deserializer with
/// serde's public value deserializers: `&RawValue` asks for a one-entry map whose key is
/// serde_json's raw-value marker and whose value is the borrowed JSON text. Should a future
/// serde_json change that contract, the marker is refused and the record is read again instead:
/// slower, never wrong (a unit test notices the fallback).
pub(crate) fn parsed_record(record: &str) -> Result<&RawValue, DecodeError> {
    handed_over(record)
        .or_else(|_| serde_json::from_str(record).map_err(|err| DecodeError::json(&err)))
}

/// `record` handed to `&RawValue`'s `Deserialize` as serde_json's deserializer would hand it.
fn handed_over(record: &str) -> Result<&RawValue, serde::de::value::Error> {
    use serde::de::value::{BorrowedStrDeserializer, MapDeserializer};
    use serde::Deserialize;
    const RAW_VALUE_MARKER: &str = "$serde_json::private::RawValue";
    let entry = (
        BorrowedStrDeserializer::new(RAW_VALUE_MARKER),
        BorrowedStrDeserializer::new(record),
    );
    <&RawValue>::deserialize(MapDeserializer::new(std::iter::once(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_record_is_handed_over_without_a_second_parse() {
        // If serde_json ever changes how it deserializes a borrowed `RawValue`, `parsed_record`
        // still works (by parsing again) but loses its speed: this test says so.
        let raw = handed_over(r#"{"a": [1, 2]}"#).expect("serde_json's RawValue contract changed");
        assert_eq!(raw.get(), r#"{"a": [1, 2]}"#);
    }
}
