//! CLI tests: every test drives the built `envv` binary in a temp repository.

mod support;

mod core;
mod exec;
mod format;
mod gitint;
mod health;
mod identities;
mod interop;
mod member;
mod peers;
mod phrase;
mod proposals;
mod props;
mod public;
mod redteam;
mod reliability;
mod threshold;
mod trust;
