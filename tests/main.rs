//! CLI tests: every test drives the built `envv` binary in a temp repository.

mod support;

mod core;
mod exec;
mod gitint;
mod health;
mod hostile;
mod interop;
mod member;
mod props;
mod reliability;
