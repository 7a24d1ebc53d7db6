//! Kubernetes audit records. (Placeholder: being written.)

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Decodes Kubernetes audit records.
#[derive(Debug, Default)]
pub struct K8sAuditDecoder {}

impl RecordDecoder for K8sAuditDecoder {
    fn decode<'a>(
        &mut self,
        _record: &'a str,
        _emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("Kubernetes audit decoding is not written yet"))
    }
}
