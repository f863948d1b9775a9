//! Fuzzes the sops stored-line reader and `EnvFile::from_bytes`: no panic, and for accepted
//! input, emit → parse is a fixed point.
#![no_main]

use std::path::Path;

use envv::dotenv;
use envv::envfile::EnvFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        let g = EnvFile::from_bytes(Path::new("fuzz.env"), "fuzz.env", &bytes).expect("to_bytes output re-reads");
        assert_eq!(g.to_bytes(), bytes, "to_bytes is a fixed point");
        let _ = f.plan();
    }
});
