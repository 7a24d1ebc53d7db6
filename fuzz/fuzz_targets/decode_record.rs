//! Every record decoder, on one arbitrary record: the first byte picks the format, the rest is
//! the record. Decoders must return an error, never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhiwatch_decode::{Decoders, Format};

const FORMATS: [Format; 6] = [
    Format::CloudTrail,
    Format::K8sAudit,
    Format::GithubAudit,
    Format::OtlpJson,
    Format::AgentTrace,
    Format::Normalised,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(record) = std::str::from_utf8(rest) else {
        return;
    };
    let mut decoders = Decoders::default();
    let format = FORMATS[pick as usize % FORMATS.len()];
    let mut events = 0usize;
    let _ = decoders.decode(format, record, &mut |_| events += 1);
    decoders.finish(&mut |_| events += 1);
});
