//! Property tests of the parsers and the encryption round trip (the fuzz targets in `fuzz/`
//! explore the same properties for longer; these run in every `cargo test`).
//!
//! Case counts stay small because the suite runs in a debug build.

use std::path::Path;

use envv::format::dotenv::{self, Entry, Line};
use envv::format::sops::{CryptRule, EncValue, Metadata};
use envv::keys::Recipient;
use envv::store::file::{EnvFile, Opened};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary UTF-8 text without NUL, biased towards the characters dotenv cares about.
fn value() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "'", "\"", "`", "\\", "\\n", "\n", "\r", "\r\n", " ", "\t", "#", " #", "=", "$", "${X}",
        "export ", "\u{feff}", "ü", "🔑",
    ]);
    let piece = prop_oneof![
        3 => "[a-zA-Z0-9_./:@+-]{0,6}",
        3 => special.prop_map(str::to_string),
        1 => any::<String>().prop_map(|s| s.replace('\0', "")),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn key() -> impl Strategy<Value = String> {
    "[A-Z_][A-Z0-9_]{0,12}".prop_filter("sops_ is reserved", |k| !k.starts_with("sops_"))
}

/// Parses one `KEY=...` line and returns the value.
fn parse_one(line: &str) -> Vec<u8> {
    let entries = dotenv::parse_plain("p.env", line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match &entries[..] {
        [Entry::Pair { value, .. }] => value.expose().to_vec(),
        other => panic!("{line:?} gave {other:?}"),
    }
}

fn stored_line() -> impl Strategy<Value = Line> {
    // What parse_stored can give back: no LF, no NUL, no trailing CR, no BOM.
    let text = "[^\n\r\u{0}\u{feff}]{0,20}";
    prop_oneof![
        Just(Line::Blank),
        text.prop_map(Line::Comment),
        ("[^\n\r\u{0}\u{feff}#=][^\n\r\u{0}\u{feff}=]{0,12}", text).prop_map(|(key, stored)| {
            Line::Pair {
                key,
                stored,
                line: 0,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// `quote` writes any value so that the dotenv parser reads the same bytes back.
    #[test]
    fn quote_then_parse_plain_is_identity(v in value()) {
        let line = format!("K={}\n", String::from_utf8(dotenv::quote(v.as_bytes()).to_vec()).unwrap());
        prop_assert_eq!(parse_one(&line), v.as_bytes().to_vec(), "line {:?}", line);
        // Also with CRLF line endings and a leading `export`.
        let crlf = format!("export K={}\r\n", String::from_utf8(dotenv::quote(v.as_bytes()).to_vec()).unwrap());
        prop_assert_eq!(parse_one(&crlf), v.as_bytes().to_vec(), "line {:?}", crlf);
    }

    /// Stored lines written by `emit_stored` read back unchanged.
    #[test]
    fn emit_then_parse_stored_is_identity(mut lines in prop::collection::vec(stored_line(), 0..12)) {
        for (i, l) in lines.iter_mut().enumerate() {
            if let Line::Pair { line, .. } = l {
                *line = i + 1;
            }
        }
        let mut out = Vec::new();
        dotenv::emit_stored(&lines, &mut out);
        let back = dotenv::parse_stored("s.env", &out).unwrap();
        prop_assert_eq!(back, lines);
    }

    /// `unescape_stored` inverts `escape_stored` whenever a value can be stored in plain text.
    #[test]
    fn escape_stored_round_trips(v in value()) {
        if let Some(s) = dotenv::escape_stored(v.as_bytes()) {
            prop_assert!(!s.contains('\n'));
            prop_assert_eq!(dotenv::unescape_stored(&s), v.as_bytes().to_vec());
        }
    }

    /// No parser panics on arbitrary bytes.
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = dotenv::parse_plain("x.env", &text);
        let _ = dotenv::parse_stored("x.env", &bytes);
        let _ = EnvFile::from_bytes(Path::new("x.env"), "x.env", &bytes);
        let _ = EncValue::parse(&text);
        let _ = envv::policy::parse(".sops.yaml", &bytes);
        let pairs: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (format!("sops_{k}"), v.to_string()))
            .collect();
        let _ = Metadata::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    /// Near-valid input: lines built from dotenv and sops fragments.
    #[test]
    fn parsers_never_panic_on_fragments(parts in prop::collection::vec(prop::sample::select(vec![
        "A=", "export ", "B='", "C=\"", "\\", "\n", "\r\n", "#", " # c", "sops_version=3.11.0", "sops_lastmodified=2026-01-01T00:00:00Z",
        "sops_mac=ENC[AES256_GCM,data:AA==,iv:AA==,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]", "sops_age__list_0__map_recipient=age1x",
        "sops_age__list_0__map_enc=x", "sops_key_groups__list_1__map_age__list_0__map_enc=y", "sops_shamir_threshold=2.5",
        "sops_unencrypted_regex=(", "ENC[AES256_GCM,data:", ",iv:", ",tag:", ",type:int]", "=", "\u{feff}", "\u{0}", "é",
    ]), 0..24)) {
        let text = parts.concat();
        let _ = dotenv::parse_plain("x.env", &text);
        if let Ok(f) = EnvFile::from_bytes(Path::new("x.env"), "x.env", text.as_bytes()) {
            let _ = f.plan();
            let _ = EnvFile::from_bytes(Path::new("x.env"), "x.env", &f.to_bytes()).expect("written file re-reads");
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Plaintext → `encrypt_new` → bytes → `from_bytes` → `decrypt` gives every value back, the
    /// MAC verifies, and no plaintext value appears in the encrypted bytes.
    #[test]
    fn encrypt_then_decrypt_is_identity(pairs in prop::collection::btree_map(key(), value(), 0..8)) {
        let id = age::x25519::Identity::generate();
        let r = Recipient::parse(&id.to_public().to_string()).unwrap();
        let mut text = String::new();
        for (k, v) in &pairs {
            text.push_str(&format!("{k}={}\n", String::from_utf8(dotenv::quote(v.as_bytes()).to_vec()).unwrap()));
        }
        let f = Opened::encrypt_new(Path::new("x"), ".env", &text, &[r], CryptRule::default()).unwrap();
        let dk = f.data_key().clone();
        let bytes = f.to_bytes();
        prop_assert!(!bytes.contains(&b'\r'), "encrypted files are LF only");
        for v in pairs.values().filter(|v| v.len() >= 8) {
            prop_assert!(!String::from_utf8_lossy(&bytes).contains(v.as_str()), "plaintext {:?} in the file", v);
        }
        let g = EnvFile::from_bytes(Path::new("x"), ".env", &bytes).unwrap();
        let plain = g.clone().decrypt(&dk, true).unwrap();
        for (k, v) in &pairs {
            prop_assert_eq!(plain.get(k).map(|s| s.expose().to_vec()).unwrap_or_default(), v.as_bytes().to_vec(), "key {}", k);
        }
        prop_assert_eq!(g.keys().count(), pairs.len());
    }
}

/// Metadata values read from a file go through sops's `\n` unescaping; writing them back must
/// escape every one of them, or a value holding the text `\n` splits into a broken line.
#[test]
fn metadata_lines_round_trip_escaped_values() {
    let pairs = [
        (
            "sops_age__list_0__map_enc",
            "-----BEGIN AGE ENCRYPTED FILE-----\\nAAAA\\n-----END AGE ENCRYPTED FILE-----\\n",
        ),
        ("sops_age__list_0__map_recipient", "age1x\\ny"),
        ("sops_lastmodified", "2026-01-01T00:00:00Z"),
        ("sops_mac", "ENC[x\\ny]"),
        ("sops_version", "3.11.0\\nsops_extra=1"),
    ];
    let meta = Metadata::from_pairs(pairs.iter().copied()).unwrap();
    let mut out = Vec::new();
    dotenv::emit_stored(&meta.to_lines(), &mut out);
    let back = dotenv::parse_stored("m.env", &out).expect("written metadata re-parses");
    let stored: Vec<(String, String)> = back
        .into_iter()
        .filter_map(|l| match l {
            Line::Pair { key, stored, .. } => Some((key, stored)),
            _ => None,
        })
        .collect();
    let want: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The rule line is added (default rule); everything else is written as it was read.
    assert_eq!(
        stored
            .iter()
            .filter(|(k, _)| !k.ends_with("_suffix"))
            .cloned()
            .collect::<Vec<_>>(),
        want
    );
}
