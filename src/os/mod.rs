//! What envv asks of the operating system: paths confined to the working tree, files written
//! atomically under a lock, and a process that never dumps its memory to a core file.

pub mod coredump;
pub mod files;
pub mod memory;
pub mod paths;
