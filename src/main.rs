//! The `envv` binary: everything lives in the library; see `envv::cli`.
fn main() {
    std::process::exit(envv::cli::main());
}
