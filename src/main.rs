//! The `envv` binary: everything lives in the library; see `envv::cli`.
fn main() {
    // Like other Unix filters, stop quietly when the reader of stdout goes away
    // (`envv member ls | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: called first in main, before any other thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(envv::cli::main());
}
