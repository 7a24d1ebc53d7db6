//! The whole reader on an arbitrary input: compression sniffing (gzip, zip), JSON lines versus
//! documents, envelopes, OTLP protobuf, format detection and every decoder behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhiwatch_decode::{ReadOptions, Reader, Sinks};

fuzz_target!(|data: &[u8]| {
    let options = ReadOptions {
        max_record_bytes: 1 << 16,
        max_document_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    let mut reader = Reader::new(options, None);
    let mut sinks = Sinks {
        event: &mut |_| {},
        reject: &mut |_| {},
    };
    reader.read_bytes("fuzz", data, &mut sinks);
    reader.finish(&mut sinks);
});
