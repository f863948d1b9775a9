//! CLI tests: every test drives the built `envv` binary in a temp repository.

mod support;

mod attacks;
mod core;
mod exec;
mod format;
mod gitint;
mod health;
mod history;
mod hostile;
mod identities;
mod import;
mod interop;
mod member;
mod peers;
mod phrase;
mod proposals;
mod props;
mod public;
mod reliability;
mod scan;
mod snapshots;
mod threshold;
mod trust;
