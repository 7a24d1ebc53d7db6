//! Generic JSON lines, decoded through a field mapping. (Placeholder: being written.)

use nhiwatch_model::Event;

use crate::{DecodeError, RecordDecoder};

/// Which fields of a generic JSON record hold the identity, action, resource, time and outcome.
#[derive(Clone, Debug, Default)]
pub struct Mapping {}

/// Decodes generic JSON records through a [`Mapping`].
#[derive(Debug)]
pub struct MappedDecoder {
    _mapping: Mapping,
}

impl MappedDecoder {
    /// A decoder for the given mapping.
    pub fn new(mapping: Mapping) -> Self {
        MappedDecoder { _mapping: mapping }
    }
}

impl RecordDecoder for MappedDecoder {
    fn decode<'a>(
        &mut self,
        _record: &'a str,
        _emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("mapped JSON decoding is not written yet"))
    }
}
