//! CLI tests: every test drives the built `envv` binary in a temp repository.

mod support;

mod core;
mod exec;
mod format;
mod gitint;
mod health;
mod interop;
mod member;
mod props;
mod reliability;
