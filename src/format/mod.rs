//! The file formats envv reads and writes: dotenv text (what people type, and the sops dotenv
//! store's stored lines), the sops v3 encryption format (ENC values, metadata, MAC, Shamir
//! shares), and other tools' files that `envv import` reads (dotenvx, sops JSON and YAML).
//! Parsing only: nothing here touches the disk, git or a key.

pub mod dotenv;
pub mod import;
pub mod sops;
