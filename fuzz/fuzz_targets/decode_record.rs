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
    let first = decode_once(&mut decoders, format, record, &mut events);
    if format == Format::CloudTrail {
        // The CloudTrail decoder remembers identities it has seen twice: the third reading
        // recalls one. Whatever the record, that must not change what it decodes to.
        for _ in 0..2 {
            let again = decode_once(&mut decoders, format, record, &mut events);
            assert_eq!(first, again, "a remembered identity changed the outcome");
        }
    }
    decoders.finish(&mut |_| events += 1);
});

/// One decoding of `record`: the event as JSON (its time left out when it was read from the
/// clock) or the error's text.
fn decode_once(
    decoders: &mut Decoders,
    format: Format,
    record: &str,
    events: &mut usize,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    decoders
        .decode(format, record, &mut |mut event| {
            *events += 1;
            if event.time_inferred {
                event.time = nhiwatch_model::Timestamp(0);
            }
            out.push(serde_json::to_string(&event).unwrap_or_default());
        })
        .map_err(|err| err.to_string())?;
    Ok(out)
}
