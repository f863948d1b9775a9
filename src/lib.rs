//! envv: encrypted `.env` files in git, readable by exactly the people a committed policy names.
//!
//! The library holds the whole product; `src/main.rs` only calls [`cli::main`]. The layers, top
//! to bottom:
//!
//! * [`cli`]: one file per command or command group: parse, call the core, print. The only
//!   layer that prints or asks the user anything.
//! * [`store`]: the opened file ([`store::file::Opened`]) and the write transaction
//!   ([`store::Store::update`]); comparing two files; proposals from write-only contributors.
//! * [`render`]: every plaintext output format.
//! * [`policy`]: the `.sops.yaml` model, membership changes (re-wrapping, rotation) and the
//!   local trust file of confirmed readers.
//! * [`keys`]: recipients, identities, key generation and recovery phrases.
//! * [`git`]: the repository, the one history engine, the pre-commit hook and git setup.
//! * [`checks`]: health checks and the leak scan.
//! * [`exec`], [`merge`], [`edit`]: launching a process (and redacting its output), the
//!   key-by-key merge driver, the editor round trip.
//! * [`format`](mod@format): dotenv and sops parsing and writing, and other tools' files for import.
//! * [`os`], [`secret`], [`error`], [`workspace`]: paths and atomic files, secret types,
//!   typed errors, and where the repository and its policy are.
//!
//! Core modules never print and return typed [`error::Error`]s.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checks;
pub mod cli;
pub mod edit;
pub mod error;
pub mod exec;
pub mod format;
pub mod git;
pub mod keys;
pub mod merge;
pub mod os;
pub mod policy;
pub mod render;
pub mod secret;
pub mod store;
pub mod workspace;

pub use error::{Error, Result};
