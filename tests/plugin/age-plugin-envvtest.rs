//! `age-plugin-envvtest`: a TEST age plugin, built only for envv's test suite (a cargo example,
//! never part of the envv binary or its packages).
//!
//! It stands in for hardware plugins such as age-plugin-yubikey, so that plugin recipients and
//! identities run end to end through the real age plugin protocol. It protects nothing: a file
//! key is XORed with a pad derived from a fixed, published test secret, and a check tag tells
//! its own stanzas from others. Run without arguments it prints its one identity and recipient.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io;

use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::secrecy::ExposeSecret;
use age_plugin::{identity, recipient, run_state_machine, Callbacks, PluginHandler};
use sha2::{Digest, Sha256};

const NAME: &str = "envvtest";
const TAG: &str = "envvtest";
/// The fixed test secret: published, so never use this plugin for anything real.
const TEST_SECRET: &[u8] = b"envv test plugin secret, published on purpose";
const IDENTITY_BYTES: &[u8] = b"envv-test-identity";
const RECIPIENT_BYTES: &[u8] = b"envv-test-recipient";

fn pad() -> [u8; 32] {
    Sha256::digest([TEST_SECRET, b"/pad"].concat()).into()
}

fn tag_of(key: &[u8]) -> Vec<u8> {
    Sha256::digest([TEST_SECRET, b"/tag", key].concat())[..16].to_vec()
}

fn wrap(key: &[u8]) -> Vec<u8> {
    let p = pad();
    let mut body: Vec<u8> = key.iter().zip(p.iter()).map(|(a, b)| a ^ b).collect();
    body.extend(tag_of(key));
    body
}

fn unwrap(body: &[u8]) -> Option<[u8; FILE_KEY_BYTES]> {
    if body.len() != FILE_KEY_BYTES + 16 {
        return None;
    }
    let p = pad();
    let mut key = [0u8; FILE_KEY_BYTES];
    for (i, k) in key.iter_mut().enumerate() {
        *k = body[i] ^ p[i];
    }
    (tag_of(&key) == body[FILE_KEY_BYTES..]).then_some(key)
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Wrapper;
    type IdentityV1 = Unwrapper;

    fn recipient_v1(self) -> io::Result<Wrapper> {
        Ok(Wrapper { count: 0 })
    }

    fn identity_v1(self) -> io::Result<Unwrapper> {
        Ok(Unwrapper { known: false })
    }
}

struct Wrapper {
    count: usize,
}

impl recipient::RecipientPluginV1 for Wrapper {
    fn add_recipient(
        &mut self,
        index: usize,
        _: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        if bytes == RECIPIENT_BYTES {
            self.count += 1;
            Ok(())
        } else {
            Err(recipient::Error::Recipient {
                index,
                message: "not the envvtest recipient".into(),
            })
        }
    }

    fn add_identity(
        &mut self,
        index: usize,
        _: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        if bytes == IDENTITY_BYTES {
            self.count += 1;
            Ok(())
        } else {
            Err(recipient::Error::Identity {
                index,
                message: "not the envvtest identity".into(),
            })
        }
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        Ok(Ok(file_keys
            .iter()
            .map(|k| {
                (0..self.count)
                    .map(|_| Stanza {
                        tag: TAG.into(),
                        args: vec![],
                        body: wrap(k.expose_secret()),
                    })
                    .collect()
            })
            .collect()))
    }
}

struct Unwrapper {
    known: bool,
}

impl identity::IdentityPluginV1 for Unwrapper {
    fn add_identity(&mut self, index: usize, _: &str, bytes: &[u8]) -> Result<(), identity::Error> {
        if bytes == IDENTITY_BYTES {
            self.known = true;
            Ok(())
        } else {
            Err(identity::Error::Identity {
                index,
                message: "not the envvtest identity".into(),
            })
        }
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        _: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        let mut out = HashMap::new();
        if !self.known {
            return Ok(out);
        }
        for (i, stanzas) in files.iter().enumerate() {
            if let Some(key) = stanzas
                .iter()
                .filter(|s| s.tag == TAG)
                .find_map(|s| unwrap(&s.body))
            {
                let Ok(fk) = FileKey::try_init_with_mut(|k| {
                    k.copy_from_slice(&key);
                    Ok::<(), Infallible>(())
                });
                out.insert(i, Ok(fk));
            }
        }
        Ok(out)
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args
        .iter()
        .position(|a| a == "--age-plugin" || a.starts_with("--age-plugin="))
    {
        Some(i) => {
            let machine = match args[i].strip_prefix("--age-plugin=") {
                Some(m) => m.to_string(),
                None => args.get(i + 1).cloned().unwrap_or_default(),
            };
            run_state_machine(&machine, Handler)
        }
        None => {
            age_plugin::print_new_identity(NAME, IDENTITY_BYTES, RECIPIENT_BYTES);
            Ok(())
        }
    }
}
