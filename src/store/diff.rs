//! Comparing two environments without showing a value.
//!
//! `envv diff A B` lists keys only in A, only in B, and keys whose decrypted values differ. For
//! each value it shows a short keyed hash (HMAC-SHA256 under a key derived from both files' data
//! keys), so equal values are visibly equal while the hash reveals nothing to someone who cannot
//! read both files: guessing a value from its hash needs the data keys.

use sha2::{Digest, Sha256};

use crate::format::sops::DataKey;
use crate::store::file::{EnvFile, Opened};

/// How one key compares between the two environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// The key is in the first file only.
    OnlyA,
    /// The key is in the second file only.
    OnlyB,
    /// In both, with values whose hashes differ.
    Different,
    /// In both, with values whose hashes are equal.
    Same,
    /// In both, but the values could not be compared (a file could not be decrypted).
    NotCompared,
}

impl Status {
    /// The status as JSON output names it (`only_a`, `same`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::OnlyA => "only_a",
            Status::OnlyB => "only_b",
            Status::Different => "different",
            Status::Same => "same",
            Status::NotCompared => "not_compared",
        }
    }
}

/// One key of the comparison; the hashes are present when that side was decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDiff {
    /// The key name.
    pub key: String,
    /// How it compares.
    pub status: Status,
    /// Short keyed hash of the first file's value (10 hex characters); `None` when that file was
    /// not decrypted, or the key is not in it.
    pub hash_a: Option<String>,
    /// Short keyed hash of the second file's value; `None` as for `hash_a`.
    pub hash_b: Option<String>,
}

/// One side: a file, and its values when they could be decrypted.
pub struct Side<'a> {
    /// The file as stored.
    pub file: &'a EnvFile,
    /// Its decrypted values; `None` when it could not be decrypted.
    pub plain: Option<&'a Opened>,
}

/// Compares two files key by key, sorted by key name. `hash_key` (see [`hash_key`]) is needed
/// for hashes; without it, or without both plains, common keys are [`Status::NotCompared`].
pub fn compare(a: &Side, b: &Side, hash_key: Option<&[u8; 32]>) -> Vec<KeyDiff> {
    let keys = |s: &Side| -> std::collections::BTreeMap<String, Option<String>> {
        let mut m = std::collections::BTreeMap::new();
        for k in s.file.keys() {
            let h = match (s.plain, hash_key) {
                (Some(p), Some(hk)) => p.get(k).map(|v| short_hash(hk, v.expose())),
                _ => None,
            };
            m.insert(k.to_string(), h);
        }
        m
    };
    let ka = keys(a);
    let kb = keys(b);
    let mut out = Vec::new();
    for (k, ha) in &ka {
        let (status, hb) = match kb.get(k) {
            None => (Status::OnlyA, None),
            Some(hb) => match (ha, hb) {
                (Some(x), Some(y)) if x == y => (Status::Same, hb.clone()),
                (Some(_), Some(_)) => (Status::Different, hb.clone()),
                _ => (Status::NotCompared, hb.clone()),
            },
        };
        out.push(KeyDiff {
            key: k.clone(),
            status,
            hash_a: ha.clone(),
            hash_b: hb,
        });
    }
    for (k, hb) in &kb {
        if !ka.contains_key(k) {
            out.push(KeyDiff {
                key: k.clone(),
                status: Status::OnlyB,
                hash_a: None,
                hash_b: hb.clone(),
            });
        }
    }
    out.sort_by(|x, y| x.key.cmp(&y.key));
    out
}

/// The hash key for a comparison: derived from both data keys, independent of their order, so
/// `diff A B` and `diff B A` show the same hashes, and a rotation changes them.
pub fn hash_key(a: &DataKey, b: &DataKey) -> [u8; 32] {
    let (lo, hi) = if a.bytes() <= b.bytes() {
        (a.bytes(), b.bytes())
    } else {
        (b.bytes(), a.bytes())
    };
    let mut msg = zeroize::Zeroizing::new([0u8; 64]);
    msg[..32].copy_from_slice(lo);
    msg[32..].copy_from_slice(hi);
    hmac_sha256(b"envv diff v1", &msg[..])
}

/// The first 5 bytes of HMAC-SHA256(key, value), in hex.
pub fn short_hash(key: &[u8; 32], value: &[u8]) -> String {
    hmac_sha256(key, value)[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        assert_eq!(
            hex(&hmac_sha256(
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hash_key_is_symmetric_and_keyed() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        assert_eq!(hash_key(&a, &b), hash_key(&b, &a));
        let k = hash_key(&a, &b);
        assert_eq!(short_hash(&k, b"v").len(), 10);
        assert_ne!(short_hash(&k, b"v"), short_hash(&hash_key(&a, &a), b"v"));
    }

    #[test]
    fn compare_classifies_keys() {
        let id = age::x25519::Identity::generate();
        let r = crate::keys::Recipient::parse(&id.to_public().to_string()).unwrap();
        let p = std::path::Path::new("x");
        let rule = crate::format::sops::CryptRule::default;
        let pa = Opened::encrypt_new(
            p,
            ".env.a",
            "SAME=1\nDIFF=a\nONLY_A=x\n",
            std::slice::from_ref(&r),
            rule(),
        )
        .unwrap();
        let pb =
            Opened::encrypt_new(p, ".env.b", "SAME=1\nDIFF=b\nONLY_B=y\n", &[r], rule()).unwrap();
        let (fa, fb) = (pa.file(), pb.file());
        let hk = hash_key(pa.data_key(), pb.data_key());
        let rows = compare(
            &Side {
                file: fa,
                plain: Some(&pa),
            },
            &Side {
                file: fb,
                plain: Some(&pb),
            },
            Some(&hk),
        );
        let st: Vec<(&str, Status)> = rows.iter().map(|r| (r.key.as_str(), r.status)).collect();
        assert_eq!(
            st,
            vec![
                ("DIFF", Status::Different),
                ("ONLY_A", Status::OnlyA),
                ("ONLY_B", Status::OnlyB),
                ("SAME", Status::Same)
            ]
        );
        assert_eq!(rows[3].hash_a, rows[3].hash_b);
        let rows = compare(
            &Side {
                file: fa,
                plain: Some(&pa),
            },
            &Side {
                file: fb,
                plain: None,
            },
            None,
        );
        assert_eq!(rows[0].status, Status::NotCompared);
        assert!(rows[0].hash_a.is_none());
    }
}
