//! The `envv` binary: everything lives in the library; see `envv::cli`.
fn main() {
    // Like other Unix filters, stop quietly when the reader of stdout goes away
    // (`envv member ls | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: called first in main, before any other thread exists (libgit2's options are
    // process-wide and not synchronised); SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Pack files mapped in windows of 1 MiB, 4 MiB at a time: mapped pages count as
        // resident, and history reads would otherwise keep a whole pack mapped.
        let _ = git2::opts::set_mwindow_size(1 << 20);
        let _ = git2::opts::set_mwindow_mapped_limit(4 << 20);
    }
    // When asked (`check`): buffers of 256 KiB and more (whole file versions) get pages of
    // their own, returned when freed (see `envv::os::memory`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    envv::os::memory::on_return_large_buffers(|| {
        // SAFETY: mallopt only sets an option of the allocator, under its own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        }
    });
    std::process::exit(envv::cli::main());
}
