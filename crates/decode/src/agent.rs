//! agent trace records. (Placeholder: being written.)

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Decodes agent trace records.
#[derive(Debug, Default)]
pub struct AgentTraceDecoder {}

impl RecordDecoder for AgentTraceDecoder {
    fn decode<'a>(
        &mut self,
        _record: &'a str,
        _emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("agent trace decoding is not written yet"))
    }
}
