//! The rule loader on an arbitrary rule file (Sigma, Sigma correlation, native sequence rules):
//! errors naming file and line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhiwatch_rules::{LoadOptions, RuleSet};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RuleSet::compile(&[("fuzz.yml", text)], &LoadOptions::default());
    }
});
