//! envv: encrypted `.env` files in git, readable by exactly the people a committed policy names.
//!
//! The library holds the whole product; `src/main.rs` only calls [`cli::main`]. Core modules
//! (`dotenv`, `sops`, `policy`, `keys`, `envfile`, `git`, `workspace`, `fsutil`) never print and
//! return typed [`error::Error`]s; the `cli` module parses arguments, calls them, and prints.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod coredump;
pub mod dotenv;
pub mod edit;
pub mod envdiff;
pub mod envfile;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod git;
pub mod gitsetup;
pub mod health;
pub mod history;
pub mod hook;
pub mod import;
pub mod keys;
pub mod membership;
pub mod merge;
pub mod paths;
pub mod phrase;
pub mod policy;
pub mod proposals;
pub mod redact;
pub mod render;
pub mod scan;
pub mod secret;
pub mod sops;
pub mod store;
pub mod trust;
pub mod workspace;

pub use error::{Error, Result};
