//! The policy loader on arbitrary YAML: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nhiwatch_policy::Policy::parse(text, "fuzz.yaml", None);
    }
});
