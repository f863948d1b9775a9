//! Recovery phrases: an age X25519 identity written as 24 BIP39 words, and back.
//!
//! An X25519 identity is 32 secret bytes; BIP39 turns 256 bits of entropy into 24 English words
//! with an 8-bit checksum. The phrase is exactly that encoding of the identity's bytes (no key
//! derivation, no passphrase), so every age identity, `age-keygen`'s included, has one phrase and
//! the phrase gives back the same `AGE-SECRET-KEY-1…` line. Every buffer that holds the secret,
//! its words or its bech32 text is zeroized when dropped.

use bech32::{Bech32, Hrp};
use bip39::{Language, Mnemonic};
use zeroize::Zeroizing;

/// The bech32 human-readable part of an age X25519 identity.
const SECRET_HRP: &str = "age-secret-key-";
/// Number of words in an envv recovery phrase (256 bits of entropy).
pub const WORDS: usize = 24;

/// Why a phrase or an identity could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    /// The phrase does not have 24 words.
    #[error("a recovery phrase has {WORDS} words; this one has {found}")]
    WordCount {
        /// How many words were read.
        found: usize,
    },
    /// A word is not in the BIP39 English list.
    #[error("word {position} is not a BIP39 word{}", closest_hint(closest))]
    UnknownWord {
        /// 1-based position of the word in the phrase.
        position: usize,
        /// The valid words closest to what was typed (edit distance).
        closest: Vec<&'static str>,
    },
    /// Every word is valid but the checksum (the last word's low bits) does not match.
    #[error("the phrase's checksum does not match: a word is wrong or two words are swapped")]
    Checksum,
    /// The identity text is not an age X25519 secret key.
    #[error("not an age X25519 identity (AGE-SECRET-KEY-1…): only X25519 identities have a recovery phrase")]
    NotX25519,
}

fn closest_hint(closest: &[&str]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!(" (closest: {})", closest.join(", "))
    }
}

/// The 24-word phrase of an `AGE-SECRET-KEY-1…` identity line.
pub fn phrase_of(identity: &str) -> Result<Zeroizing<String>, PhraseError> {
    let secret = secret_bytes(identity.trim())?;
    let mnemonic = Mnemonic::from_entropy_in(Language::English, &secret[..])
        .map_err(|_| PhraseError::NotX25519)?;
    let mut out = Zeroizing::new(String::with_capacity(WORDS * 9));
    for (i, w) in mnemonic.words().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
    Ok(out)
}

/// The `AGE-SECRET-KEY-1…` identity line that a phrase encodes.
///
/// Words are matched case-insensitively and may be separated by any whitespace.
pub fn identity_of(phrase: &str) -> Result<Zeroizing<String>, PhraseError> {
    let normal = Zeroizing::new(phrase.to_lowercase());
    let words: Vec<&str> = normal.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if Language::English.find_word(w).is_none() {
            return Err(PhraseError::UnknownWord {
                position: i + 1,
                closest: closest_words(w),
            });
        }
    }
    if words.len() != WORDS {
        return Err(PhraseError::WordCount { found: words.len() });
    }
    let joined = Zeroizing::new(words.join(" "));
    let mnemonic =
        Mnemonic::parse_in_normalized(Language::English, &joined).map_err(|e| match e {
            bip39::Error::InvalidChecksum => PhraseError::Checksum,
            _ => PhraseError::WordCount { found: words.len() },
        })?;
    let (mut entropy, len) = mnemonic.to_entropy_array();
    let result = encode_secret(&entropy[..len]);
    zeroize::Zeroize::zeroize(&mut entropy);
    result
}

/// The 32 secret bytes of an age X25519 identity line, checked with the age parser.
fn secret_bytes(identity: &str) -> Result<Zeroizing<Vec<u8>>, PhraseError> {
    identity
        .parse::<age::x25519::Identity>()
        .map_err(|_| PhraseError::NotX25519)?;
    let (hrp, data) = bech32::decode(identity).map_err(|_| PhraseError::NotX25519)?;
    let data = Zeroizing::new(data);
    if hrp.as_str().to_ascii_lowercase() != SECRET_HRP || data.len() != 32 {
        return Err(PhraseError::NotX25519);
    }
    Ok(data)
}

/// Encodes 32 secret bytes as an upper-case age identity line, checked with the age parser.
fn encode_secret(secret: &[u8]) -> Result<Zeroizing<String>, PhraseError> {
    let hrp = Hrp::parse(SECRET_HRP).map_err(|_| PhraseError::NotX25519)?;
    let text = Zeroizing::new(
        bech32::encode_upper::<Bech32>(hrp, secret).map_err(|_| PhraseError::NotX25519)?,
    );
    text.parse::<age::x25519::Identity>()
        .map_err(|_| PhraseError::NotX25519)?;
    Ok(text)
}

/// Up to three BIP39 words nearest to `typed`: smallest edit distance first, then the longest
/// common prefix (people mistype the end of a word more often than its start).
fn closest_words(typed: &str) -> Vec<&'static str> {
    let typed: Vec<char> = typed.chars().take(16).collect();
    let mut scored: Vec<(usize, std::cmp::Reverse<usize>, &'static str)> = Language::English
        .word_list()
        .iter()
        .map(|w| {
            let prefix = typed
                .iter()
                .zip(w.chars())
                .take_while(|(a, b)| **a == *b)
                .count();
            (edit_distance(&typed, w), std::cmp::Reverse(prefix), *w)
        })
        .collect();
    scored.sort();
    let best = scored.first().map(|(d, _, _)| *d).unwrap_or(0);
    scored
        .into_iter()
        .take_while(|(d, _, _)| *d <= best + 1)
        .take(3)
        .map(|(_, _, w)| w)
        .collect()
}

/// Levenshtein distance between a typed word and a list word (both short).
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP39 reference vector (trezor/python-mnemonic `vectors.json`, 256-bit entropy of zeros).
    const ZEROS_PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon abandon art";

    #[test]
    fn zero_entropy_matches_the_reference_vector() {
        let id = encode_secret(&[0u8; 32]).unwrap();
        assert_eq!(&*phrase_of(&id).unwrap(), ZEROS_PHRASE);
        assert_eq!(&*identity_of(ZEROS_PHRASE).unwrap(), &*id);
    }

    #[test]
    fn generated_identities_round_trip() {
        use age::secrecy::ExposeSecret;
        for _ in 0..20 {
            let id = age::x25519::Identity::generate();
            let text = id.to_string();
            let phrase = phrase_of(text.expose_secret()).unwrap();
            assert_eq!(phrase.split(' ').count(), WORDS);
            assert_eq!(&*identity_of(&phrase).unwrap(), text.expose_secret());
        }
    }

    #[test]
    fn mistyped_word_names_position_and_neighbours() {
        let typo = ZEROS_PHRASE.replacen("art", "arr", 1);
        match identity_of(&typo) {
            Err(PhraseError::UnknownWord { position, closest }) => {
                assert_eq!(position, 24);
                assert!(closest.contains(&"art"), "{closest:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_checksum_and_count() {
        let swapped = ZEROS_PHRASE.replacen("art", "zoo", 1);
        assert_eq!(identity_of(&swapped), Err(PhraseError::Checksum));
        assert_eq!(
            identity_of("abandon abandon"),
            Err(PhraseError::WordCount { found: 2 })
        );
    }

    #[test]
    fn only_x25519_identities() {
        assert_eq!(phrase_of("hello").unwrap_err(), PhraseError::NotX25519);
        let public = age::x25519::Identity::generate().to_public().to_string();
        assert_eq!(phrase_of(&public).unwrap_err(), PhraseError::NotX25519);
    }
}
