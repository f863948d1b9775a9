//! Benchmarks of the library core behind DESIGN.md §6: parse, decrypt, set, encrypt on 100,
//! 1,000 and 10,000 keys, and the per-file work of `member add` (re-wrap) and `member rm`
//! (rotation) over 20 files of 1,000 keys.
//!
//! Run with `cargo bench --bench core` (a filter narrows it: `cargo bench --bench core -- decrypt`).
//! Identities are generated at start; nothing is read from the user's machine.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use envv::format::sops::{CryptRule, DataKey};
use envv::keys::{Keyring, Recipient};
use envv::secret::Secret;
use envv::store::file::{EnvFile, Opened};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// A test identity written to a temp file (the keyring reads identities from files).
struct Fixture {
    _dir: tempfile::TempDir,
    identity_file: PathBuf,
    recipient: Recipient,
}

impl Fixture {
    fn new() -> Self {
        let id = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().expect("temp dir");
        let identity_file = dir.path().join("keys.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &identity_file,
            format!("{}\n", id.to_string().expose_secret()),
        )
        .expect("write identity");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&identity_file, private).expect("chmod identity");
        }
        let recipient = Recipient::parse(&id.to_public().to_string()).expect("recipient");
        Fixture {
            _dir: dir,
            identity_file,
            recipient,
        }
    }

    fn keyring(&self) -> Keyring {
        Keyring::new(std::slice::from_ref(&self.identity_file))
    }
}

fn other_recipient() -> Recipient {
    Recipient::parse(&age::x25519::Identity::generate().to_public().to_string()).expect("recipient")
}

/// `n` keys with 32-character values, like the peer benchmark's files.
fn plaintext(n: usize) -> String {
    let mut s = String::with_capacity(n * 44);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        s.push_str(&format!("KEY_{i:05}="));
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(x % 62) as usize]
                    as char,
            );
        }
        s.push('\n');
    }
    s
}

fn encrypted(n: usize, recipients: &[Recipient]) -> (Vec<u8>, DataKey) {
    let f = Opened::encrypt_new(
        Path::new(".env"),
        ".env",
        &plaintext(n),
        recipients,
        CryptRule::default(),
    )
    .expect("encrypt");
    (f.to_bytes(), f.data_key().clone())
}

fn per_size(c: &mut Criterion, fx: &Fixture) {
    let recipients = [fx.recipient.clone()];
    for n in SIZES {
        let (bytes, dk) = encrypted(n, &recipients);
        let text = plaintext(n);
        let mut g = c.benchmark_group(format!("{n} keys"));
        g.throughput(Throughput::Elements(n as u64));
        if n >= 10_000 {
            g.sample_size(20);
        }
        g.bench_function("parse", |b| {
            b.iter(|| EnvFile::from_bytes(Path::new(".env"), ".env", &bytes).expect("parse"))
        });
        let file = EnvFile::from_bytes(Path::new(".env"), ".env", &bytes).expect("parse");
        g.bench_function("decrypt-all", |b| {
            // (The clone is part of it: decrypting takes the stored file.)
            b.iter(|| file.clone().decrypt(&dk, true).expect("decrypt"))
        });
        // What `envv get` does after reading the file: unwrap the data key, decrypt, verify.
        g.bench_function("open+unlock+decrypt", |b| {
            b.iter(|| {
                let f = EnvFile::from_bytes(Path::new(".env"), ".env", &bytes).expect("parse");
                let dk = f.unlock(&mut fx.keyring(), Vec::new).expect("unlock");
                f.decrypt(&dk, true).expect("decrypt")
            })
        });
        g.bench_function("set-one (set+seal+to_bytes)", |b| {
            let mut f = file.clone().decrypt(&dk, true).expect("decrypt");
            let key = format!("KEY_{:05}", n / 2);
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let v = if flip {
                    "first-new-value"
                } else {
                    "second-new-value"
                };
                assert!(f.set(&key, Secret::from_str(v)).expect("set"));
                f.seal().expect("seal");
                f.to_bytes()
            })
        });
        g.bench_function("encrypt-all (encrypt_new)", |b| {
            b.iter(|| {
                Opened::encrypt_new(
                    Path::new(".env"),
                    ".env",
                    &text,
                    &recipients,
                    CryptRule::default(),
                )
                .expect("encrypt")
            })
        });
        g.finish();
    }
}

/// `member add` and `member rm` over 20 files of 1,000 keys: read, unlock, change, serialise.
fn membership(c: &mut Criterion, fx: &Fixture) {
    let base = [fx.recipient.clone(), other_recipient()];
    let files: Vec<Vec<u8>> = (0..20).map(|_| encrypted(1_000, &base).0).collect();
    let mut added = base.to_vec();
    added.push(other_recipient());
    let mut g = c.benchmark_group("20 files x 1,000 keys");
    g.sample_size(10);
    g.bench_function("member add (rewrap_incremental)", |b| {
        b.iter_batched(
            || fx.keyring(),
            |mut ring| {
                for bytes in &files {
                    let mut f =
                        EnvFile::from_bytes(Path::new(".env"), ".env", bytes).expect("parse");
                    let dk = f.unlock(&mut ring, Vec::new).expect("unlock");
                    f.rewrap_incremental(&dk, &added, false).expect("rewrap");
                    std::hint::black_box(f.to_bytes());
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("member rm (rotate)", |b| {
        b.iter_batched(
            || fx.keyring(),
            |mut ring| {
                for bytes in &files {
                    let f = EnvFile::from_bytes(Path::new(".env"), ".env", bytes).expect("parse");
                    let dk = f.unlock(&mut ring, Vec::new).expect("unlock");
                    let mut f = f.decrypt(&dk, true).expect("decrypt");
                    f.rotate(&base[..1]).expect("rotate");
                    std::hint::black_box(f.to_bytes());
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let fx = Fixture::new();
    per_size(c, &fx);
    membership(c, &fx);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);
