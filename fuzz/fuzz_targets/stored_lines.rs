//! Fuzzes the sops stored-line reader, `EnvFile::from_bytes`, and the decrypt and MAC steps:
//! no panic; emit → parse and `to_bytes` → `from_bytes` are fixed points; a file whose MAC
//! checks out decrypts to the same values without the check.
//!
//! The decrypt step uses the data keys of the seed files (TEST fixtures, encrypted for the
//! TEST identity in tests/fixtures/keys.txt), so no age unwrapping happens per input.
//!
//! The value of a rule line holding a regular expression (`sops_*_regex=`) is replaced by one
//! of a few fixed patterns (see `rule_patterns.rs`): compiling the fuzzed pattern cost about
//! 1 ms per input under AddressSanitizer and was why this target ran at a few hundred inputs
//! per second.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use envv::format::dotenv;
use envv::format::sops::DataKey;
use envv::store::file::EnvFile;
use libfuzzer_sys::fuzz_target;

/// TEST data keys of corpus/stored_lines: basic.env (and the hostile_* files made from it),
/// mac_only.env, public_regex.env, two_recipients.env.
const SEED_KEYS: [&str; 4] = [
    "3a7fd7d07f23c7f7784041f43645be0ad45c97e4fed62e34d7b68d3173ee8c14",
    "8ae954636d939fe41fe6edbed602d9444e8dacbfed31f1df962c46211cc9aa04",
    "c17f9223d4bec467a686c0d860a5d6984b44b5cc96744b834071805e588e4c5e",
    "8ee7cd29441684e9e9b99f4f88045c0ae0b9ef443ad07a02bec0e70a9b338bcf",
];

fn keys() -> &'static [DataKey] {
    static KEYS: OnceLock<Vec<DataKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        SEED_KEYS
            .iter()
            .map(|h| {
                let b: Vec<u8> = (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect();
                DataKey::from_slice(&b).unwrap()
            })
            .collect()
    })
}

#[path = "rule_patterns.rs"]
mod rule_patterns;

/// Stand-ins for a file's own rule regexes, all valid (the refusals are `sops_metadata`'s).
const PATTERNS: [&str; 4] = [
    "^PORT$",
    "^(PORT|NODE_ENV|NEXT_PUBLIC_.*)$",
    "sops:enc",
    ".*",
];

fuzz_target!(|data: &[u8]| {
    let data = &*rule_patterns::fixed(data, &PATTERNS);
    if let Ok(lines) = dotenv::parse_stored("fuzz.env", data) {
        let mut out = Vec::new();
        dotenv::emit_stored(&lines, &mut out);
        let again = dotenv::parse_stored("fuzz.env", &out).expect("emitted lines re-parse");
        let mut out2 = Vec::new();
        dotenv::emit_stored(&again, &mut out2);
        assert_eq!(out, out2, "emit is a fixed point");
    }
    if let Ok(f) = EnvFile::from_bytes(Path::new("fuzz.env"), "fuzz.env", data) {
        let bytes = f.to_bytes();
        let g = EnvFile::from_bytes(Path::new("fuzz.env"), "fuzz.env", &bytes)
            .expect("to_bytes output re-reads");
        assert_eq!(g.to_bytes(), bytes, "to_bytes is a fixed point");
        let _ = f.plan();
        if f.is_encrypted() {
            // A wrong key fails at the first encrypted value; only a key that opens every
            // value is tried with the MAC check (the check runs after the same loop).
            for dk in keys() {
                let Ok(unchecked) = f.clone().decrypt(dk, false) else {
                    continue;
                };
                if let Ok(checked) = f.clone().decrypt(dk, true) {
                    let values = |o: &envv::store::file::Opened| {
                        o.entries().map(|(_, v)| v.cloned()).collect::<Vec<_>>()
                    };
                    assert_eq!(
                        values(&checked),
                        values(&unchecked),
                        "the MAC check changes no value"
                    );
                    break;
                }
            }
        }
    }
});
