//! CloudTrail records. (Placeholder: being written.)

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Decodes CloudTrail records.
#[derive(Debug, Default)]
pub struct CloudTrailDecoder {}

impl RecordDecoder for CloudTrailDecoder {
    fn decode<'a>(
        &mut self,
        _record: &'a str,
        _emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("CloudTrail decoding is not written yet"))
    }
}
