//! No plaintext in core dumps.
//!
//! A crash or a SIGQUIT of a process holding decrypted values would otherwise write them to
//! disk in a core file (or hand them to a crash handler such as systemd-coredump or apport).
//! Before a command reads an identity, the process sets its core size limit to 0 and, on Linux,
//! marks itself non-dumpable (`PR_SET_DUMPABLE` 0), which also covers `core_pattern` pipes that
//! ignore the size limit and keeps other processes of the same user from attaching a debugger.
//! Both calls go through rustix's safe wrappers, so this crate keeps `forbid(unsafe_code)`.

/// Forbids core dumps of this process (best effort: a platform without the call is left as
/// it is). Processes started later (`exec`) inherit the 0 soft limit and may raise it.
pub fn forbid() {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let current = getrlimit(Resource::Core);
        let _ = setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: current.maximum,
            },
        );
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
}
