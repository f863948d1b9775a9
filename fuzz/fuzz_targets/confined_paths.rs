//! Fuzzes `paths::resolve` (environment file paths from a hostile policy) on a fixture tree
//! holding links that lead out, links inside, a loop, a device, a FIFO and a socket: no panic,
//! and every path it accepts is lexically inside the repository and, on disk, resolves inside
//! it to a regular file.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use envv::os::paths;
use libfuzzer_sys::fuzz_target;

struct Tree {
    repo: PathBuf,
    real: PathBuf,
    /// Keeps the socket `sock` bound for the run.
    _socket: std::os::unix::net::UnixListener,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("envv-fuzz-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let repo = base.join("repo");
        for d in [".git", "dir/sub", "app"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        std::fs::create_dir_all(base.join("other")).unwrap();
        for f in [
            ".env",
            "dir/.env",
            "dir/sub/.env",
            "app/.env",
            "../other/.env",
        ] {
            std::fs::write(repo.join(f), "A=1\n").unwrap();
        }
        let links: [(&str, &str); 10] = [
            ("sib", "../other"),
            (".env.shared", "../other/.env"),
            ("inner", "dir"),
            (".env.alias", ".env"),
            ("loop", "loop"),
            ("zero", "/dev/zero"),
            ("up", ".."),
            ("dir/back", "../.."),
            ("dir/sub/top", "../../.env"),
            ("abs", "/tmp"),
        ];
        for (at, to) in links {
            std::os::unix::fs::symlink(to, repo.join(at)).unwrap();
        }
        // Not regular files, inside the repository (and a link to each).
        let fifo = std::process::Command::new("mkfifo")
            .arg(repo.join("dir/fifo"))
            .status()
            .unwrap();
        assert!(fifo.success(), "mkfifo");
        let socket = std::os::unix::net::UnixListener::bind(repo.join("sock")).unwrap();
        for (at, to) in [("fifo.env", "dir/fifo"), ("sock.env", "sock")] {
            std::os::unix::fs::symlink(to, repo.join(at)).unwrap();
        }
        let real = repo.canonicalize().unwrap();
        Tree {
            repo,
            real,
            _socket: socket,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(rel) = std::str::from_utf8(data) else {
        return;
    };
    if rel.len() > 512 || rel.contains('\0') {
        return;
    }
    let t = tree();
    let Ok(p) = paths::resolve(&t.repo, rel) else {
        return;
    };
    assert!(p.starts_with(&t.repo), "{rel:?} resolved to {p:?}");
    assert!(
        !p.components().any(|c| c == Component::ParentDir),
        "{rel:?} resolved to {p:?}"
    );
    // The deepest part of it that exists resolves inside the repository.
    let mut a: &Path = &p;
    loop {
        if let Ok(real) = a.canonicalize() {
            assert!(real.starts_with(&t.real), "{rel:?} reaches {real:?}");
            if a == p {
                assert!(
                    real.is_file(),
                    "{rel:?} accepted a non-regular file {real:?}"
                );
            }
            break;
        }
        if std::fs::symlink_metadata(a).is_ok() {
            panic!("{rel:?}: accepted a path through a broken link at {a:?}");
        }
        a = a.parent().expect("the repository exists");
    }
});
