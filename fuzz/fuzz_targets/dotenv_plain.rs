//! Fuzzes the plaintext dotenv parser: no panic, no hang, and every value it yields survives
//! `quote` → `parse_plain` unchanged.
#![no_main]

use envv::format::dotenv::{self, Entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = dotenv::decode_utf8("fuzz.env", data);
        return;
    };
    let Ok(entries) = dotenv::parse_plain("fuzz.env", text) else {
        return;
    };
    for e in entries {
        if let Entry::Pair { key, value, .. } = e {
            let mut line = format!("{key}=").into_bytes();
            line.extend_from_slice(&dotenv::quote(value.expose()));
            line.push(b'\n');
            let line = String::from_utf8(line).expect("quote keeps UTF-8");
            let back = dotenv::parse_plain("fuzz.env", &line).expect("quoted value re-parses");
            match &back[..] {
                [Entry::Pair {
                    key: k2, value: v2, ..
                }] => {
                    assert_eq!(k2, &key);
                    assert_eq!(v2.expose(), value.expose(), "quote round trip for {line:?}");
                }
                other => panic!("quoted line gave {other:?}"),
            }
        }
    }
});
