//! What envv checks about a repository without changing it: the health checks of `envv check`
//! and `envv status` (policy, expiry, drift, freeze windows, key ages), and the leak scan of
//! `envv scan` (decrypted values searched for in the tree, the index and the history).

pub mod health;
pub mod scan;
