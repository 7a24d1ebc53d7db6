//! nhiwatch's own normalised events (the output of `nhiwatch normalize`), read back in.
//!
//! This lets normalised telemetry be stored, shipped and replayed through detection unchanged.

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Decodes normalised events, as `nhiwatch normalize --format jsonl` writes them.
#[derive(Debug, Default)]
pub struct NormalisedDecoder {}

impl RecordDecoder for NormalisedDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        let event: Event<'a> =
            serde_json::from_str(record).map_err(|err| DecodeError::json(&err))?;
        if event.id.is_empty() {
            return Err(DecodeError::field("id", "is empty"));
        }
        if event.identity.id.is_empty() {
            return Err(DecodeError::field("identity.id", "is empty"));
        }
        emit(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_normalize_writes() {
        let line = r#"{"id":"e1","time":"2024-01-01T00:00:00Z","source":"cloudtrail","identity":{"id":"arn:aws:iam::1:role/r","kind":"role"},"action":"s3:GetObject","action_class":"read","outcome":"success","raw":{"a":1}}"#;
        let mut events = Vec::new();
        NormalisedDecoder::default()
            .decode(line, &mut |e| events.push(e.into_owned()))
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "s3:GetObject");
        assert_eq!(events[0].raw.get(), r#"{"a":1}"#);
    }

    #[test]
    fn names_the_bad_field() {
        let line = r#"{"id":"e1","time":"yesterday","source":"cloudtrail","identity":{"id":"x","kind":"role"},"action":"a:b","action_class":"read","outcome":"success","raw":{}}"#;
        let err = NormalisedDecoder::default()
            .decode(line, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
