//! Allocator tuning that the binary installs: the library has no unsafe code, and setting
//! the C allocator's options takes some.
//!
//! The history engine holds whole file versions (a 10,000-key file is 1.6 MB) one or two at a
//! time and frees them as it goes. glibc raises its threshold for giving such buffers pages of
//! their own after the first one is freed, and later versions are then carved out of the heap,
//! where what is freed stays resident. `check`, which decrypts every file after reading their
//! history, asks for large buffers to be returned when freed; other commands keep the default,
//! which costs fewer page faults (a reused heap buffer needs no fresh pages).

use std::sync::OnceLock;

static RETURN_LARGE_BUFFERS: OnceLock<fn()> = OnceLock::new();

/// Installs what [`return_large_buffers`] does (once; later calls are ignored).
pub fn on_return_large_buffers(f: fn()) {
    let _ = RETURN_LARGE_BUFFERS.set(f);
}

/// From now on, large buffers are returned to the system when freed (if the binary installed
/// a way; otherwise nothing changes).
pub fn return_large_buffers() {
    if let Some(f) = RETURN_LARGE_BUFFERS.get() {
        f();
    }
}
