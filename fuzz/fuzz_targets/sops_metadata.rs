//! Fuzzes `EncValue::parse` and `Metadata::from_pairs`: no panic on any input; accepted
//! metadata writes lines that read back to the same metadata lines.
//!
//! Rule regexes are replaced by fixed patterns (see `rule_patterns.rs`), among them one that
//! does not parse and one over envv's size bound, so both refusals are reached; envv remembers
//! a refusal, so the large one is compiled once per process instead of costing 20 ms on every
//! input that keeps the line.
#![no_main]

#[path = "rule_patterns.rs"]
mod rule_patterns;

use envv::format::dotenv::{self, Line};
use envv::format::sops::{EncValue, Metadata};
use libfuzzer_sys::fuzz_target;

/// The `sops_*` pairs of stored lines, as `EnvFile::from_bytes` hands them to `from_pairs`.
fn pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let lines = dotenv::parse_stored("fuzz.env", bytes).ok()?;
    Some(
        lines
            .into_iter()
            .filter_map(|l| match l {
                Line::Pair { key, stored, .. } if key.starts_with("sops_") => Some((key, stored)),
                _ => None,
            })
            .collect(),
    )
}

/// Rule patterns: valid ones, one that does not parse, one over the size bound.
const PATTERNS: [&str; 5] = [
    "^PORT$",
    "^(PORT|NODE_ENV|NEXT_PUBLIC_.*)$",
    ".*",
    "(",
    "(\\w{100}){100}",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = EncValue::parse(line);
    }
    // Lines get a `sops_` prefix so most of the input reaches the metadata reader; NUL is
    // refused by `EnvFile::from_bytes` before this point, as the real reader does.
    if data.contains(&0) {
        return;
    }
    let prefixed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("sops_") {
                format!("{l}\n")
            } else {
                format!("sops_{l}\n")
            }
        })
        .collect();
    let prefixed = rule_patterns::fixed(prefixed.as_bytes(), &PATTERNS);
    let Some(input) = pairs(&prefixed) else {
        return;
    };
    if let Ok(meta) = Metadata::from_pairs(input.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        let mut out = Vec::new();
        dotenv::emit_stored(&meta.to_lines(), &mut out);
        let again = pairs(&out).expect("written metadata re-parses");
        let meta2 = Metadata::from_pairs(again.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("written metadata re-reads");
        let mut out2 = Vec::new();
        dotenv::emit_stored(&meta2.to_lines(), &mut out2);
        assert_eq!(out, out2, "metadata write is a fixed point");
    }
});
