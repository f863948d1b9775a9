//! Fuzzes `EncValue::parse` and `Metadata::from_pairs`: no panic on any input; accepted
//! metadata writes lines that read back to the same metadata lines.
#![no_main]

use envv::sops::{EncValue, Metadata};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        let _ = EncValue::parse(line);
    }
    // Each line "KEY=VALUE" becomes a metadata pair (keys forced to start with sops_ and to
    // have no = or newline, as the stored-line reader guarantees).
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("sops_") { k.to_string() } else { format!("sops_{k}") };
            (k, v.to_string())
        })
        .collect();
    if let Ok(meta) = Metadata::from_pairs("fuzz.env", pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        let lines = meta.to_lines();
        let mut out = Vec::new();
        envv::dotenv::emit_stored(&lines, &mut out);
        let back = envv::dotenv::parse_stored("fuzz.env", &out).expect("metadata lines re-parse");
        let pairs2: Vec<(String, String)> = back
            .into_iter()
            .filter_map(|l| match l {
                envv::dotenv::Line::Pair { key, stored, .. } => Some((key, stored)),
                _ => None,
            })
            .collect();
        let meta2 = Metadata::from_pairs("fuzz.env", pairs2.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("written metadata re-reads");
        let mut out2 = Vec::new();
        envv::dotenv::emit_stored(&meta2.to_lines(), &mut out2);
        assert_eq!(out, out2, "metadata write is a fixed point");
    }
});
