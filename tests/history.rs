//! History read from git: every event kind of `log`, `access`, shallow clones, amended history.

use crate::support::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// alice's repository with A, B committed, bob added then removed (with rotation).
fn repo_with_bob() -> (Sandbox, String) {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "first"]);
    let (_, bob) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob, "--yes"]);
    s.git(&["commit", "-qam", "add bob"]);
    (s, bob)
}

#[test]
fn log_names_every_event_kind_and_filters() {
    let (s, bob) = repo_with_bob();
    s.ok(&["set", "A=3"]);
    s.git(&["commit", "-qam", "change A"]);
    s.ok(&["rm", "B"]);
    s.git(&["commit", "-qam", "drop B"]);
    s.ok(&["member", "rm", "bob"]);
    s.git(&["commit", "-qam", "rm bob"]);

    let out = s.ok(&["log"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].contains("rotated (new data key; no value changed)")
            && lines[0].contains("revoked bob (former member)"),
        "{out}"
    );
    assert!(lines[1].contains("removed B"), "{out}");
    assert!(lines[2].contains("changed A"), "{out}");
    assert!(
        lines[3].contains("granted bob") && lines[3].contains("(add bob)"),
        "{out}"
    );
    assert!(
        lines[4].contains("added A B") && lines[4].contains("granted alice"),
        "{out}"
    );

    let v = json(&s.ok(&["log", "--json"]));
    let kinds: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["events"].as_array().unwrap().clone())
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "added",
        "changed",
        "removed",
        "rotated",
        "recipient_added",
        "recipient_removed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {v:#}");
    }
    let revoked = v[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "recipient_removed")
        .unwrap();
    assert_eq!(revoked["recipient"], bob.as_str());

    // --access: grants and revocations alone.
    let acc = s.ok(&["log", "--access"]);
    assert_eq!(acc.lines().count(), 3, "{acc}");
    assert!(
        !acc.contains("changed A") && !acc.contains("removed B"),
        "{acc}"
    );
    // Without an identity, a data-key change is only that.
    let out = s.envv_as(s.tmp.path()).args(["log"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().contains("data key changed"),
        "{text}"
    );
    // --since and --author filter.
    assert_eq!(s.ok(&["log", "--since", "2999-01-01"]), "");
    assert_eq!(s.ok(&["log", "--author", "nobody-here"]), "");
    assert_eq!(s.ok(&["log", "--author", "test user"]).lines().count(), 5);
    s.fails(&["log", "--since", "yesterday"], 2);
}

#[test]
fn access_lists_grants_and_a_rotated_removal() {
    let (s, bob) = repo_with_bob();
    let grant = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    let out = s.ok(&["access"]);
    let bob_line = out
        .lines()
        .find(|l| l.contains("bob"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        bob_line.contains(&grant[..8]) && bob_line.contains("via team > bob"),
        "{out}"
    );
    let v = json(&s.ok(&["access", "--json"]));
    let readers = v[0]["readers"].as_array().unwrap();
    let b = readers.iter().find(|r| r["member"] == "bob").unwrap();
    assert_eq!(b["granted"]["commit"], grant.as_str());
    assert_eq!(b["path"], "team > bob");

    s.ok(&["member", "rm", "bob"]);
    s.git(&["commit", "-qam", "rm bob"]);
    let rm = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    let out = s.ok(&["access"]);
    let line = out
        .lines()
        .find(|l| l.contains("removed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&rm[..8]) && line.contains(&format!("rotated in {}", &rm[..8])),
        "{out}"
    );
    let v = json(&s.ok(&["access", "--json"]));
    let past = &v[0]["past_readers"][0];
    assert_eq!(past["recipient"], bob.as_str());
    assert_eq!(past["member"], "bob");
    assert_eq!(past["removed"]["commit"], rm.as_str());
    assert_eq!(past["rotated"]["commit"], rm.as_str());
    assert_eq!(v[0]["readers"].as_array().unwrap().len(), 1);
}

#[test]
fn access_says_when_a_removed_reader_was_not_rotated_and_lists_unconfirmed() {
    let (s, bob) = repo_with_bob();
    // Someone drops bob's wrapped key from the file by hand: same data key, bob kept a copy.
    let text = s.read(".env");
    let idx = text
        .lines()
        .find(|l| l.ends_with(&format!("__map_recipient={bob}")))
        .and_then(|l| l.strip_prefix("sops_age__list_"))
        .and_then(|l| l.split("__").next())
        .unwrap()
        .to_string();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("sops_age__list_{idx}__")))
        .map(|l| format!("{l}\n"))
        .collect();
    s.write(".env", kept);
    s.git(&["commit", "-qam", "drop bob by hand"]);
    let out = s.ok(&["access"]);
    let line = out
        .lines()
        .find(|l| l.contains("removed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("bob")
            && line.contains("NOT rotated: values they could read are still valid"),
        "{out}"
    );
    // bob is still named in .sops.yaml: unconfirmed (never wrapped since).
    assert!(
        out.lines()
            .any(|l| l.contains("unconfirmed") && l.contains("bob")),
        "{out}"
    );
    let v = json(&s.ok(&["access", "--json"]));
    assert!(v[0]["past_readers"][0]["rotated"].is_null(), "{v:#}");
    assert_eq!(v[0]["unconfirmed"][0]["member"], "bob");
}

#[test]
fn a_shallow_clone_reports_no_false_added_and_says_ages_are_lower_bounds() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "first"]);
    s.ok(&["set", "B=3"]);
    s.git(&["commit", "-qam", "change B"]);
    s.ok(&["set", "C=4"]);
    s.git(&["commit", "-qam", "add C"]);
    let src = format!("file://{}", s.repo.display());
    let clone = s.tmp.path().join("clone");
    let out = s.git_out(
        s.tmp.path(),
        &["clone", "-q", "--depth", "2", &src, clone.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |args: &[&str]| {
        let o = s.envv_in(&clone).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (log, err) = run(&["log"]);
    assert!(
        !log.contains("added A") && !log.contains("added B"),
        "{log}"
    );
    assert!(log.contains("added C"), "{log}");
    assert!(
        log.contains("present at the start of the shallow history"),
        "{log}"
    );
    assert_eq!(
        err.matches("history is shallow: ages are at least").count(),
        1,
        "{err}"
    );
    let (log_a, _) = run(&["log", "A"]);
    assert!(!log_a.contains("added"), "{log_a}");
    let (ls, err) = run(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with('A') && l.contains("(or older)")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with('C') && !l.contains("(or older)")),
        "{ls}"
    );
    assert_eq!(err.matches("history is shallow").count(), 1, "{err}");
    // The full history dates A from its real commit.
    let full = s.ok(&["ls"]);
    assert!(!full.contains("(or older)"), "{full}");
}

#[test]
fn an_amended_commit_is_dated_by_the_new_commit() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "first"]);
    s.ok(&["set", "A=2"]);
    s.git(&["commit", "-qam", "second"]);
    let old = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    assert!(s.ok(&["ls"]).contains(&old[..8]));
    s.ok(&["set", "A=3"]);
    s.git(&["commit", "-q", "--amend", "-am", "second, amended"]);
    let new = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    let ls = s.ok(&["ls"]);
    assert!(ls.contains(&new[..8]) && !ls.contains(&old[..8]), "{ls}");
    let log = s.ok(&["log", "A"]);
    assert!(
        !log.contains(&old[..8]) && log.contains("second, amended"),
        "{log}"
    );
    // Rebased onto a new root commit: every id changes, the events stay.
    s.git(&["checkout", "-q", "--orphan", "other"]);
    s.git(&["rm", "-rqf", "."]);
    s.write("README", "x\n");
    s.git(&["add", "README"]);
    s.git(&["commit", "-qm", "root"]);
    s.git(&["checkout", "-q", "main"]);
    s.git(&["rebase", "-q", "other"]);
    let log = s.ok(&["log", "A"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(!log.contains(&new[..8]), "{log}");
    // An uncommitted change is "not committed".
    s.ok(&["set", "A=4"]);
    assert!(s.ok(&["ls"]).contains("not committed"));
}

#[test]
fn the_history_cache_is_safe_to_delete_or_corrupt() {
    let (s, _) = repo_with_bob();
    s.ok(&["set", "A=5"]);
    s.git(&["commit", "-qam", "change A"]);
    let first = (s.ok(&["log", "--json"]), s.ok(&["ls"]), s.ok(&["access"]));
    let dir = s.repo.join(".git/envv/history");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one cache file per history file: {files:?}");
    // From the cache: the same answers.
    assert_eq!(
        (s.ok(&["log", "--json"]), s.ok(&["ls"]), s.ok(&["access"])),
        first
    );
    // Corrupt: ignored and rewritten.
    std::fs::write(&files[0], "{ not json").unwrap();
    assert_eq!(s.ok(&["log", "--json"]), first.0);
    assert!(std::fs::read_to_string(&files[0]).unwrap().starts_with('{'));
    // A file of another format version is dropped.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&files[0], text.replace("\"version\":1", "\"version\":999")).unwrap();
    assert_eq!(s.ok(&["log", "--json"]), first.0);
    // Deleted: rebuilt.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (s.ok(&["log", "--json"]), s.ok(&["ls"]), s.ok(&["access"])),
        first
    );
    assert!(dir.is_dir());
}

#[test]
fn rotations_carry_a_proof_and_a_replacement_is_rekeyed() {
    let (s, _) = repo_with_bob();
    let bob_key = s.tmp.path().join("bob.key");
    s.ok(&["member", "rm", "bob"]);
    s.git(&["commit", "-qam", "rm bob"]);
    assert!(s.read(".env").contains("sops_envv_rotation_proof="));
    // alice reads both versions; bob only the one before: both see a proven rotation.
    let log = s.ok(&["log"]);
    assert!(
        log.lines()
            .next()
            .unwrap()
            .contains("rotated (new data key; no value changed)"),
        "{log}"
    );
    let out = s
        .envv_as(s.tmp.path())
        .args(["-i", bob_key.to_str().unwrap(), "log"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("rotated (new data key)"),
        "{text}"
    );
    let v = json(&s.ok(&["check", "--json"]));
    assert!(!v.to_string().contains("\"rekeyed\""), "{v:#}");

    // Someone with only the public keys replaces the file outright: a new data key, no proof.
    let a = s.ok(&["get", "A"]);
    std::fs::remove_file(s.repo.join(".env")).unwrap();
    s.write(".env", format!("A={}\nB=evil\n", a.trim()));
    s.ok(&["encrypt", "-f", ".env"]);
    assert!(!s.read(".env").contains("sops_envv_rotation_proof"));
    s.git(&[
        "commit",
        "-qa",
        "--author",
        "Mallory <mallory@example.com>",
        "-m",
        "routine update",
    ]);
    let log = s.ok(&["log"]);
    let first = log.lines().next().unwrap();
    assert!(first.contains("rekeyed (no proof: replaced by someone without the previous key, or by sops rotate; values changed: B)") && first.contains("Mallory"), "{log}");
    let lj = json(&s.ok(&["log", "--json"]));
    assert!(
        lj[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "rekeyed"),
        "{lj:#}"
    );
    let v = json(&s.ok(&["check", "--json"]));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "rekeyed")
        .unwrap_or_else(|| panic!("{v:#}"));
    let head = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(f["commit"], head.as_str());
    assert!(f["message"].as_str().unwrap().contains("Mallory"), "{f}");
    // Without an identity nothing more than a data-key change can be said.
    let out = s.envv_as(s.tmp.path()).args(["log"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().contains("data key changed"),
        "{text}"
    );
}

#[test]
fn sops_reads_a_file_with_a_rotation_proof() {
    let Some(sops) = sops() else { return };
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=two words"]);
    s.ok(&["rotate"]);
    assert!(s.read(".env").contains("sops_envv_rotation_proof="));
    let out = run_sops(&sops, &s.repo, &s.default_key(), &["decrypt", ".env"]);
    assert!(
        out.status.success(),
        "sops decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("A=1") && text.contains("B=two words"),
        "{text}"
    );
    // envv keeps reading what sops rewrites (sops drops the proof line; harmless).
    let out = run_sops(
        &sops,
        &s.repo,
        &s.default_key(),
        &["set", ".env", "[\"A\"]", "\"3\""],
    );
    assert!(
        out.status.success(),
        "sops set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "A"]).trim(), "3");
}

/// Versions edited by hand: a value is its key's last line, a version that does not parse
/// holds no key, and the answers are the same from the cache and rebuilt without it.
#[test]
fn hand_edited_versions_are_read_as_the_stored_parser_reads_them() {
    let s = Sandbox::new();
    let versions = [
        ("v1", "#h\nA=1\nB=2\nZ=end\n"),
        // An earlier duplicate of A: its value (the last line) is unchanged.
        ("v2", "#h\nA=0\nB=2\nA=1\nZ=end\n"),
        // The duplicates swapped: A's last line is now A=0.
        ("v3", "#h\nA=1\nB=2\nA=0\nZ=end\n"),
        // A line without `=`: the version does not parse and holds no key.
        ("v4", "#h\nA=1\nnot a pair\nZ=end\n"),
        ("v5", "#h\nA=1\nB=2\nZ=end\n"),
        // CRs: kept in a plain value, dropped from a comment.
        ("v6", "#h\r\nA=1\nB=2\r\nZ=end\n"),
        // A key inserted between unchanged lines, and the last line changed.
        ("v7", "#h\r\nA=1\nN=new\nB=2\r\nZ=fin\n"),
    ];
    for (msg, text) in versions {
        s.write(".env", text);
        s.git(&["add", "-A"]);
        s.git(&["commit", "-qm", msg]);
    }
    let events = |text: &str| -> Vec<String> {
        json(text)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let list = |k: &str| {
                    e[k].as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "{} +{} ~{} -{}",
                    e["summary"].as_str().unwrap(),
                    list("added"),
                    list("changed"),
                    list("removed")
                )
            })
            .collect()
    };
    let cold = s.ok(&["log", "--json"]);
    let mut got = events(&cold);
    got.retain(|e| !e.ends_with(" + ~ -"));
    assert_eq!(
        got,
        [
            "v7 +N ~Z -",
            "v6 + ~B -",
            "v5 +A,B,Z ~ -",
            "v4 + ~ -A,B,Z",
            "v3 + ~A -",
            "v1 +A,B,Z ~ -",
        ],
        "{cold}"
    );
    assert_eq!(s.ok(&["log", "--json"]), cold, "from the cache");
    std::fs::remove_dir_all(s.repo.join(".git/envv/history")).unwrap();
    assert_eq!(s.ok(&["log", "--json"]), cold, "rebuilt");
    let log = s.ok(&["log", "A"]);
    assert!(!log.contains("v2") && log.contains("v3"), "{log}");
}

/// Every blob of the repository as envv's pack reader reads it, against libgit2: how many
/// blobs there are, and how many the reader took from a pack itself.
fn assert_blobs_read_as_libgit2_reads_them(s: &Sandbox) -> (usize, usize) {
    let repo = git2::Repository::open(&s.repo).unwrap();
    let mut ids = Vec::new();
    repo.odb()
        .unwrap()
        .foreach(|id| {
            ids.push(*id);
            true
        })
        .unwrap();
    let mut blobs = envv::git::pack::Blobs::new(&repo);
    let mut n = 0;
    for id in ids {
        let Ok(blob) = repo.find_blob(id) else {
            continue;
        };
        let read = blobs.read(id).expect("every blob is read");
        assert!(read[..] == *blob.content(), "blob {id} differs");
        n += 1;
    }
    (n, blobs.packed_reads())
}

#[test]
fn versions_read_the_same_loose_and_from_packs_with_either_kind_of_delta() {
    let s = Sandbox::new();
    s.init_alice();
    // Above 1 MiB encrypted, the size past which libgit2 stops caching delta bases.
    let mut plain = String::new();
    for i in 0..6000 {
        plain.push_str(&format!(
            "KEY_{i:04}=test-value-{i:04}-abcdefghijklmnopqrstuvwxyz0123456789\n"
        ));
    }
    s.write(".env", plain);
    s.ok(&["encrypt"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "many keys"]);
    assert!(std::fs::metadata(s.repo.join(".env")).unwrap().len() > 1 << 20);
    for round in 0..8 {
        s.ok(&[
            "set",
            &format!("KEY_{:04}=test-changed-{round}", round * 700),
        ]);
        s.git(&["commit", "-qam", &format!("change {round}")]);
    }
    let cache = s.repo.join(".git/envv/history");
    let answers = || {
        let _ = std::fs::remove_dir_all(&cache);
        let out = (s.ok(&["log", "--json"]), s.ok(&["ls"]));
        let _ = std::fs::remove_dir_all(&cache);
        out
    };
    let loose = answers();
    assert!(loose.0.contains("KEY_4900"), "{}", loose.0);
    let (blobs, packed) = assert_blobs_read_as_libgit2_reads_them(&s);
    assert!(
        blobs >= 10 && packed == 0,
        "{blobs} blobs, {packed} from packs"
    );

    // Packed, each older version a delta against a newer one (by offset, git's default).
    s.git(&["gc", "-q"]);
    let chains = s.git(&["verify-pack", "-v", &pack_index(&s)]);
    assert!(chains.contains("chain length = "), "deltas: {chains}");
    assert_eq!(answers(), loose);
    assert_eq!(assert_blobs_read_as_libgit2_reads_them(&s), (blobs, blobs));
    // The same when the index no longer vouches for the working file (its modification time
    // changed): HEAD's version is then inflated from the pack, not taken from the file.
    let file = s.repo.join(".env");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    set_mtime(&file, mtime + std::time::Duration::from_secs(5));
    assert_eq!(answers(), loose);
    set_mtime(&file, mtime);

    // Deltas naming their base by id, and a loose object beside the pack.
    s.git(&["-c", "pack.useDeltaBaseOffset=false", "repack", "-adfq"]);
    s.ok(&["set", "KEY_0001=test-after-repack"]);
    s.git(&["commit", "-qam", "after the repack"]);
    let after = answers();
    assert!(after.0.contains("after the repack"), "{}", after.0);
    assert_eq!(
        after.0.matches("\"commit\"").count(),
        loose.0.matches("\"commit\"").count() + 1
    );
    let (now, packed) = assert_blobs_read_as_libgit2_reads_them(&s);
    assert!(
        now > blobs && packed == blobs,
        "{now} blobs, {packed} from packs"
    );
}

#[test]
fn incompressible_blobs_are_read_from_the_pack() {
    // Stored (not compressed) by zlib in blocks of about 16 KiB, each with its own header: the
    // reader must read the whole stream, not stop at a bound that allows fewer headers.
    let s = Sandbox::new();
    s.init_alice();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for (name, size) in [("a.bin", 20_000), ("b.bin", 70_000), ("c.bin", 1 << 20)] {
        std::fs::write(s.repo.join(name), noise(size)).unwrap();
    }
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "noise"]);
    s.git(&["gc", "-q"]);
    let (blobs, packed) = assert_blobs_read_as_libgit2_reads_them(&s);
    assert!(
        blobs >= 3 && packed == blobs,
        "{blobs} blobs, {packed} from packs"
    );
}

/// The `.idx` of the repository's one pack.
fn pack_index(s: &Sandbox) -> String {
    let dir = s.repo.join(".git/objects/pack");
    let idx: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    assert_eq!(idx.len(), 1, "{idx:?}");
    idx[0].display().to_string()
}

#[test]
#[cfg(unix)]
fn ls_sees_a_change_that_kept_the_size_and_the_modification_time() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=first-value", "B=second-value"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "values"]);
    // Let the index be written after the file, so its stat data is trusted.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.git(&["update-index", "--refresh"]);
    let ls = s.ok(&["ls"]);
    assert!(!ls.contains("not committed"), "{ls}");
    // B's ciphertext swapped for A's line moved down (same bytes, same size), the mtime put
    // back: only the change time differs from what the index recorded.
    let path = s.repo.join(".env");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let text = s.read(".env");
    let a = text.lines().find(|l| l.starts_with("A=")).unwrap();
    let b = text.lines().find(|l| l.starts_with("B=")).unwrap();
    let swapped = text
        .replace(a, "\u{0}")
        .replace(b, &a.replacen("A=", "B=", 1))
        .replace('\u{0}', &b.replacen("B=", "A=", 1));
    assert_eq!(swapped.len(), text.len());
    assert_ne!(swapped, text);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &f, swapped.as_bytes()).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let ls = s.ok(&["ls"]);
    assert!(ls.contains("not committed"), "{ls}");
}

/// alice's repository, three commits (A=1 B=2; A=3; B=4), packed by `git gc`.
fn packed_repo_of_three_versions() -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "first"]);
    s.ok(&["set", "A=3"]);
    s.git(&["commit", "-qam", "second"]);
    s.ok(&["set", "B=4"]);
    s.git(&["commit", "-qam", "third"]);
    s.git(&["gc", "-q"]);
    s
}

/// Writes `objects/pack/pack-<name>.{pack,idx}` holding one whole blob, `content`, under the id
/// `oid` (not its hash), the pack header claiming `claimed` objects. Checksums are zeros:
/// git compares the pack's trailer with the index's copy of it and hashes nothing on read.
fn write_decoy_pack(s: &Sandbox, name: &str, oid: &str, content: &[u8], claimed: u32) {
    let oid: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&oid[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut size = content.len();
    let mut first = (3u8 << 4) | (size & 15) as u8;
    size >>= 4;
    let mut entry = Vec::new();
    while size != 0 {
        entry.push(first | 0x80);
        first = (size & 0x7f) as u8;
        size >>= 7;
    }
    entry.push(first);
    let mut z = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut zipped = vec![0u8; z.zlib_compress_bound(content.len())];
    let n = z.zlib_compress(content, &mut zipped).unwrap();
    entry.extend(&zipped[..n]);
    let mut pack = b"PACK".to_vec();
    pack.extend(2u32.to_be_bytes());
    pack.extend(claimed.to_be_bytes());
    pack.extend(&entry);
    pack.extend([0u8; 20]);
    let mut idx = vec![0xff, b't', b'O', b'c', 0, 0, 0, 2];
    for i in 0..256u32 {
        idx.extend(u32::from(i >= u32::from(oid[0])).to_be_bytes());
    }
    idx.extend(&oid);
    idx.extend(0u32.to_be_bytes()); // CRC
    idx.extend(12u32.to_be_bytes()); // offset
    idx.extend([0u8; 40]); // the pack's checksum, the index's
    let base = s
        .repo
        .join(".git/objects/pack")
        .join(format!("pack-{name}"));
    std::fs::write(base.with_extension("pack"), pack).unwrap();
    std::fs::write(base.with_extension("idx"), idx).unwrap();
}

fn set_mtime(path: &std::path::Path, t: std::time::SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn history_reads_an_object_from_the_pack_git_reads_it_from() {
    let s = packed_repo_of_three_versions();
    let cache = s.repo.join(".git/envv/history");
    let answers = || {
        let _ = std::fs::remove_dir_all(&cache);
        let out = (s.ok(&["log"]), s.ok(&["ls"]));
        let _ = std::fs::remove_dir_all(&cache);
        out
    };
    let before = answers();
    assert!(before.0.contains("changed A  (second)"), "{}", before.0);
    // A second pack holding the second version's id with the first version's bytes: older
    // than the real pack, so git (and libgit2) read the real one; its name sorts first.
    let first = s.git(&["rev-parse", "HEAD~2:.env"]);
    let second = s.git(&["rev-parse", "HEAD~1:.env"]);
    let (first, second) = (first.trim(), second.trim());
    let real = s.git(&["cat-file", "-p", second]);
    let old_bytes = s.git(&["cat-file", "-p", first]);
    let zeros = "0".repeat(40);
    write_decoy_pack(&s, &zeros, second, old_bytes.as_bytes(), 1);
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
    for ext in ["pack", "idx"] {
        let p = s.repo.join(format!(".git/objects/pack/pack-{zeros}.{ext}"));
        set_mtime(&p, old);
    }
    assert_eq!(
        s.git(&["cat-file", "-p", second]),
        real,
        "git reads the real pack"
    );
    assert_eq!(answers(), before, "the decoy pack changed envv's history");

    // The same decoy, newest but with a header git refuses (2 objects, the index has 1):
    // git reads the object from the real pack.
    write_decoy_pack(&s, &zeros, second, old_bytes.as_bytes(), 2);
    assert_eq!(
        s.git(&["cat-file", "-p", second]),
        real,
        "git refuses the decoy"
    );
    assert_eq!(
        answers(),
        before,
        "a pack git refuses changed envv's history"
    );
}

#[test]
#[cfg(unix)]
fn history_does_not_hang_on_a_pack_that_is_a_fifo() {
    let s = packed_repo_of_three_versions();
    let dir = s.repo.join(".git/objects/pack");
    let idx = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    let zeros = "0".repeat(40);
    std::fs::copy(&idx, dir.join(format!("pack-{zeros}.idx"))).unwrap();
    let fifo = dir.join(format!("pack-{zeros}.pack"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // git and libgit2 skip a pack that is not a regular file.
    assert!(s.git(&["log", "--oneline"]).contains("third"));
    let _ = std::fs::remove_dir_all(s.repo.join(".git/envv/history"));
    let mut child = s
        .std_envv()
        .arg("ls")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(finished, "envv ls blocked opening a FIFO in objects/pack");
}
