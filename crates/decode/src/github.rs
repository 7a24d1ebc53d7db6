//! GitHub audit records. (Placeholder: being written.)

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Decodes GitHub audit records.
#[derive(Debug, Default)]
pub struct GithubAuditDecoder {}

impl RecordDecoder for GithubAuditDecoder {
    fn decode<'a>(
        &mut self,
        _record: &'a str,
        _emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("GitHub audit decoding is not written yet"))
    }
}
