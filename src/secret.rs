//! Plaintext secrets in memory.
//!
//! A [`Secret`] owns the bytes of one decrypted value. The buffer is zeroed when dropped and
//! the type's `Debug` prints a placeholder, so a value cannot reach a log or an error message
//! by accident. Code that must see the bytes (encrypting, injecting, printing on purpose)
//! calls [`Secret::expose`].

use zeroize::Zeroizing;

/// Bytes of a decrypted value, zeroized on drop, never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes (taking ownership, no copy).
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Copies a string into a secret.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Self {
        Secret::new(s.as_bytes().to_vec())
    }

    /// The plaintext bytes. Call only where the value is meant to be used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The plaintext as UTF-8, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::from_str("hunter2");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("7 bytes"));
    }
}
