//! Plaintext dotenv in and out, checked against the real parsers: npm `dotenv`, python-dotenv
//! (with and without interpolation), godotenv (a small Go reader built here) and `dotenvx run`,
//! plus a POSIX shell sourcing the output. Also the plaintext input rules and the sops files
//! written from hand-made dotenv files (CRLF, naive key names).
//!
//! Parsers are found through `ENVV_TEST_NODE_PATH`, `ENVV_TEST_PYTHON`, `ENVV_TEST_GOPATH` and
//! `ENVV_TEST_DOTENVX` (what `.ci/run` sets), else the peers cache in `~/.cache/envv-peers` and
//! Debian's `/usr/share/gocode`. Under `CI=true` a missing parser fails the test; elsewhere the
//! test says what it skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

type Values = BTreeMap<String, String>;

/// `None` (with a note) when a parser is missing outside CI; a failure under CI=true.
fn missing(what: &str) -> Option<Peer> {
    missing_tool(what, ".ci/run installs it");
    None
}

fn peers_cache() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/envv-peers")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One real dotenv reader: a command that prints a file's values as a JSON object.
struct Peer {
    /// The reader's name as envv's warnings spell it.
    name: &'static str,
    /// How the report names this run of it.
    label: &'static str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
}

impl Peer {
    fn read(&self, file: &Path) -> Result<Values, String> {
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..]).arg(file).env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.current_dir(file.parent().unwrap());
        let out = c.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        Ok(v.into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect())
    }
}

const NODE_READER: &str = "const fs=require('fs');const d=require('dotenv');process.stdout.write(JSON.stringify(d.parse(fs.readFileSync(process.argv[1]))))";
const PY_READER: &str = "import json,sys\nfrom dotenv import dotenv_values\nprint(json.dumps(dotenv_values(sys.argv[2], interpolate=sys.argv[1]=='1')))";
const ENV_DUMP: &str = "process.stdout.write(JSON.stringify(process.env))";

fn node_peer() -> Option<Peer> {
    let node_path = std::env::var_os("ENVV_TEST_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| peers_cache().join("node_modules"));
    if on_path("node").is_none() || !node_path.join("dotenv/package.json").is_file() {
        return missing("node with npm dotenv");
    }
    Some(Peer {
        name: "node dotenv",
        label: "node dotenv",
        cmd: vec!["node".into(), "-e".into(), NODE_READER.into()],
        env: vec![("NODE_PATH".into(), node_path.display().to_string())],
    })
}

fn python_peers() -> Vec<Peer> {
    let python = std::env::var_os("ENVV_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| peers_cache().join("venv/bin/python"));
    let works = python.is_file()
        && Command::new(&python)
            .args(["-c", "import dotenv"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !works {
        return missing("python-dotenv").into_iter().collect();
    }
    let p = python.display().to_string();
    vec![
        Peer {
            name: "python-dotenv",
            label: "python-dotenv",
            cmd: vec![p.clone(), "-c".into(), PY_READER.into(), "0".into()],
            env: vec![],
        },
        Peer {
            name: "python-dotenv (interpolate=True)",
            label: "python-dotenv (interpolate=True)",
            cmd: vec![p, "-c".into(), PY_READER.into(), "1".into()],
            env: vec![],
        },
    ]
}

/// Builds `tests/fixtures/peers/godotenv_reader.go` against the godotenv sources (GOPATH mode).
fn godotenv_peer() -> Option<Peer> {
    let gopath = std::env::var_os("ENVV_TEST_GOPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/gocode"));
    if on_path("go").is_none() || !gopath.join("src/github.com/joho/godotenv").is_dir() {
        return missing("go with godotenv (golang-github-joho-godotenv-dev)");
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("godotenv-reader");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join(format!("reader-{}", std::process::id()));
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(fixtures().join("peers/godotenv_reader.go"))
        .env("GOPATH", &gopath)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the godotenv reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Peer {
        name: "godotenv",
        label: "godotenv",
        cmd: vec![bin.display().to_string()],
        env: vec![],
    })
}

fn dotenvx_bin() -> Option<PathBuf> {
    let found = std::env::var_os("ENVV_TEST_DOTENVX")
        .map(PathBuf::from)
        .or_else(|| on_path("dotenvx"))
        .or_else(|| Some(peers_cache().join("bin/dotenvx")))
        .filter(|p| p.is_file());
    if found.is_none() {
        missing("dotenvx");
    }
    found
}

/// `dotenvx run -f FILE -- node -e <dump env>`: what a program started by dotenvx sees.
fn dotenvx_peer(home: &Path) -> Option<Peer> {
    let bin = dotenvx_bin()?;
    let wrapper = home.join("dotenvx-read.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' run -q -f \"$1\" -- node -e '{ENV_DUMP}'\n",
            bin.display()
        ),
    )
    .unwrap();
    Some(Peer {
        name: "dotenvx",
        label: "dotenvx run",
        cmd: vec!["sh".into(), wrapper.display().to_string()],
        env: vec![("HOME".into(), home.display().to_string())],
    })
}

/// Every reader available here (each missing one skipped with a note, or failing under CI).
fn all_peers(home: &Path) -> Vec<Peer> {
    let mut peers: Vec<Peer> = node_peer().into_iter().collect();
    // dotenv 17+ also has a hand-written parser behind `{fast: true}`; it must agree.
    if let Some(mut fast) = node_peer() {
        fast.label = "node dotenv (fast: true)";
        fast.cmd[2] = NODE_READER.replace(
            "fs.readFileSync(process.argv[1])",
            "fs.readFileSync(process.argv[1]),{fast:true}",
        );
        peers.push(fast);
    }
    peers.extend(python_peers());
    peers.extend(godotenv_peer());
    peers.extend(dotenvx_peer(home));
    peers
}

/// Sources `file` in a POSIX shell (`set -a; . FILE`), as users do with dotenv files.
fn shell_source(file: &Path) -> std::process::Output {
    Command::new("sh")
        .args(["-c", "set -a; . \"$1\"", "sh"])
        .arg(file)
        .current_dir(file.parent().unwrap())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

/// Hard values: quotes of every kind, backslashes, `$` forms, commands, comments, line
/// breaks, Unicode spaces, text that looks like other lines. `dir` is where a value that
/// runs a command would leave its marker.
fn corpus(dir: &Path) -> Vec<String> {
    let mark = |n: &str| dir.join(format!("pwned-{n}")).display().to_string();
    let mut v: Vec<String> = [
        "plain",
        "",
        " ",
        "   ",
        "with space",
        " leading",
        "trailing ",
        "\tTAB\t",
        "it's",
        "it's \"fine\"",
        "say \"hi\"",
        "\"",
        "'",
        "\"\"",
        "''",
        "`",
        "back`tick",
        "`tick`",
        "'single' and \"double\" and `back`",
        "C:\\Users\\me\\",
        "\\\\server\\share",
        "\\",
        "\\\\",
        "a\\b",
        "ends with \\",
        "it's C:\\dir\\",
        "\\n",
        "\\n literal and \\t too",
        "\\\"",
        "\\'",
        "a\nb",
        "a\r\nb",
        "a\rb",
        "trailing newline\n",
        "\nleading newline",
        "$HOME",
        "${HOME}",
        "${HOME:-fallback}",
        "${UNSET:-default}",
        "$lower",
        "$5",
        "$",
        "$$",
        "cost: $ 5",
        "\\$HOME",
        "it's $HOME",
        "it's ${HOME}",
        "x#y",
        "x #y",
        "#start",
        " # spaced hash",
        "a # b # c",
        "KEY=value",
        "A=1\nB=2",
        "x\nINJECTED=1",
        "#\rINJECTED=attacker_value",
        "=",
        "==",
        "a=b=c",
        "postgres://app:p%40ss@db.example.com:5432/app?sslmode=require",
        "https://example.com/path?x=1&y=2#frag",
        "dGVzdCBrZXkgbm90IGEgc2VjcmV0Cg==",
        "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n-----END TEST KEY-----\n",
        "{\n  \"name\": \"app\",\n  \"port\": 8080,\n  \"tags\": [\"a\", \"b\"]\n}",
        "{\"compact\":\"json\",\"n\":1}",
        "[1, 2, 3]",
        "~/path",
        "a:~/b",
        "a;b",
        "a && b",
        "a | b",
        "a > b",
        "<in",
        "*",
        "?",
        "[abc]",
        "{a,b}",
        "!bang",
        "%PATH%",
        "^caret",
        "ü",
        "日本語の値",
        "emoji 🎉 value",
        "\u{00a0}nbsp\u{00a0}",
        "\u{2003}em space\u{2003}",
        "\u{3000}ideographic",
        "zero\u{200b}width",
        "\u{feff}bom",
        "line\u{2028}separator",
        "para\u{2029}separator",
        "next\u{0085}line",
        "\u{000b}vertical tab",
        "\u{000c}form feed",
        "mixed 'quotes\" here",
        "\"quoted\"",
        "'quoted'",
        "`quoted`",
        " 'padded' ",
        "true",
        "0",
        "1e10",
        "null",
        "  multiple   inner   spaces  ",
        "export",
        "export FOO=bar",
        "tab\tinside",
        "two \\\\ backslashes",
        "path C:\\\\share\\dir",
        "${A} and \\\\",
        "'\\\\'",
        "cr\r\"quote\"",
        "cr\r$HOME",
        "it's\r",
        "\\ \"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend([
        format!("$(touch {})", mark("dollar")),
        format!("it's $(touch {})", mark("quote-dollar")),
        format!("`touch {}`", mark("backtick")),
        format!("it's `touch {}`", mark("quote-backtick")),
        format!("\"$(touch {})\"", mark("dq-dollar")),
        format!("'$(touch {})'", mark("sq-dollar")),
        format!("x\\$(touch {})", mark("bs-dollar")),
        format!("it's \\$(touch {})", mark("quote-bs-dollar")),
        format!("$(touch {}) it's \\", mark("trailing-bs")),
        format!("${{X:-$(touch {})}}", mark("default")),
    ]);
    v
}

/// KEY -> readers named in its warning.
fn warnings(stderr: &str) -> BTreeMap<String, Vec<String>> {
    let mut w = BTreeMap::new();
    for line in stderr.lines() {
        if let Some(i) = line.find(" has no dotenv spelling") {
            let head = &line[..i];
            let key = head.rsplit([' ', ':']).next().unwrap().to_string();
            let names = line.split("; ").nth(1).unwrap_or_default();
            let names = names.split(" would read").next().unwrap();
            w.insert(key, names.split(", ").map(String::from).collect());
        }
    }
    w
}

#[test]
fn output_reads_back_exactly_in_the_real_parsers_or_warns() {
    let s = Sandbox::new();
    s.init_alice();
    let marks = s.tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let values = corpus(&marks);
    assert!(values.len() >= 100, "corpus of {} values", values.len());
    let key = |i: usize| format!("V{i:03}");
    for (i, v) in values.iter().enumerate() {
        s.ok(&["set", &key(i), v]);
    }
    let out_dir = s.tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let decrypted = out_dir.join("decrypt.env");
    let exported = out_dir.join("export.env");
    let d = s.run(&["decrypt", "-o", decrypted.to_str().unwrap()]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let e = s.run(&["export", "-o", exported.to_str().unwrap()]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let warned = warnings(&String::from_utf8_lossy(&d.stderr));
    assert_eq!(
        warned,
        warnings(&String::from_utf8_lossy(&e.stderr)),
        "decrypt and export warn alike"
    );
    // Every warning is about a value that has a reason: a quote that cannot be written with
    // the others, a backslash, a `$` or a backtick.
    for k in warned.keys() {
        let v = &values[k[1..].parse::<usize>().unwrap()];
        assert!(v.contains(['\'', '"', '\\', '$', '`', '\r']), "{k} warned");
    }
    let peers = all_peers(&s.home);
    let mut report = Vec::new();
    for file in [&decrypted, &exported] {
        for p in &peers {
            let got = p
                .read(file)
                .unwrap_or_else(|e| panic!("{} could not read {}: {e}", p.label, file.display()));
            let extra: Vec<&String> = got.keys().filter(|k| !k.starts_with('V')).collect();
            if p.name != "dotenvx" {
                assert!(
                    extra.is_empty(),
                    "{} sees keys envv never wrote: {extra:?}",
                    p.name
                );
            }
            let mut exact = 0;
            for (i, v) in values.iter().enumerate() {
                let k = key(i);
                let named = warned
                    .get(&k)
                    .is_some_and(|n| n.iter().any(|n| n == p.name));
                let right = got.get(&k) == Some(v);
                exact += usize::from(right);
                // The warning names exactly the readers that misread the value.
                assert!(
                    right != named,
                    "{}: {} reads {k} as {:?} (value {v:?}); the warning names {:?}",
                    file.display(),
                    p.label,
                    got.get(&k),
                    warned.get(&k)
                );
            }
            report.push(format!(
                "{}: {} {exact}/{} exact",
                file.file_name().unwrap().to_string_lossy(),
                p.label,
                values.len()
            ));
        }
        let sh = shell_source(file);
        assert!(
            sh.status.success(),
            "sh could not source {}: {}",
            file.display(),
            String::from_utf8_lossy(&sh.stderr)
        );
    }
    let ran: Vec<_> = std::fs::read_dir(&marks).unwrap().collect();
    assert!(ran.is_empty(), "a value ran as a command: {ran:?}");
    eprintln!(
        "corpus: {} values, {} warned\n{}",
        values.len(),
        warned.len(),
        report.join("\n")
    );
}

/// Input-side cases modelled on the parsers' own test suites: where node dotenv and
/// python-dotenv agree on a value, envv reads the same.
#[test]
fn plaintext_input_agrees_with_node_and_python_where_they_agree() {
    let cases: &[&str] = &[
        "BASIC=basic",
        "AFTER_LINE=after_line\n",
        "EMPTY=",
        "EMPTY_SINGLE_QUOTES=''",
        "EMPTY_DOUBLE_QUOTES=\"\"",
        "SINGLE_QUOTES='single_quotes'",
        "SINGLE_QUOTES_SPACED='    single quotes    '",
        "DOUBLE_QUOTES=\"double_quotes\"",
        "DOUBLE_QUOTES_SPACED=\"    double quotes    \"",
        "DOUBLE_QUOTES_INSIDE_SINGLE='double \"quotes\" work inside single quotes'",
        "SINGLE_QUOTES_INSIDE_DOUBLE=\"single 'quotes' work inside double quotes\"",
        "EXPAND_NEWLINES=\"expand\\nnew\\nlines\"",
        "DONT_EXPAND_UNQUOTED=dontexpand\\nnewlines",
        "DONT_EXPAND_SQUOTED='dontexpand\\nnewlines'",
        "INLINE_COMMENTS=inline comments # work #very #well",
        "INLINE_COMMENTS_SINGLE_QUOTES='inline comments outside of #singlequotes' # work",
        "INLINE_COMMENTS_DOUBLE_QUOTES=\"inline comments outside of #doublequotes\" # work",
        "EQUAL_SIGNS=equals==",
        "RETAIN_INNER_QUOTES={\"foo\": \"bar\"}",
        "RETAIN_INNER_QUOTES_AS_STRING='{\"foo\": \"bar\"}'",
        "TRIM_SPACE_FROM_UNQUOTED=    some spaced out string",
        "USERNAME=therealnerdybeast@example.tld",
        "    SPACED_KEY = parsed",
        "export EXPORTED=exported value",
        "MULTI_DOUBLE_QUOTED=\"THIS\nIS\nA\nMULTILINE\nSTRING\"",
        "MULTI_SINGLE_QUOTED='THIS\nIS\nA\nMULTILINE\nSTRING'",
        "a=b",
        "a =b",
        "a= b",
        " a = b ",
        "a=b # comment",
        "a='b' # comment",
        "a=\"b\" # comment",
        "a=b#c",
        "a=# comment",
        "a=   # todo",
        "a=x\rb=y\r",
        "a=x\r\nb=y\r\n",
        "a=\u{00a0}nbsp\u{00a0}",
        "a=\u{2003}em\u{2003}",
        "a=\"\\$\"",
        "a=\"line\\nbreak\"",
        "a=\"tab\\tx\"",
        "a=x y z",
        "a=\"  padded  \"",
        "a=url://user:p@host/x?y=1",
        "INLINE_COMMENTS_SPACE=inline comments start with a#space",
        "ESCAPE_CHAR=ab\\cde",
        "ESCAPE_NEWLINE_NO_QUOTE=line1\\nline2",
        "ESCAPE_QUOTES=single quote: \\', double quote: \\\", backtick: \\`",
        "ESCAPE_TAB=\\t",
        "ESCAPE_DOLLAR=\\$\\$\\$",
        "ESCAPE_QUOTES_IN_QUOTES=\"John said: \\\"Lets go\\\"\"",
        "a=b\t#c",
        "a=b c",
        "a=b\tc",
        "a=b  c",
        "a=b\u{00a0} c",
        "a=b c ",
        "a='b c '",
        "a=\"b c \"",
        "export export_a=1",
        "export port=8000",
        "a='b\\nc'",
        "a=\"b\\nc\"",
        "a=\u{e0}",
        "a=\"\u{e0}\"",
        "a=b\rc=d",
        "a=\nb=c",
        "a=b\n\nc=d",
        "# comment\na=\"b\nc\"\nd=e\n",
        "a=b\n# comment 1",
        "\u{feff}a=b\nc=d",
    ];
    let Some(node) = node_peer() else { return };
    let py = python_peers();
    let Some(python) = py.first() else { return };
    let s = Sandbox::new();
    s.init_alice();
    let mut compared = 0;
    for (n, case) in cases.iter().enumerate() {
        let name = format!(".env.case{n}");
        let path = s.repo.join(&name);
        std::fs::write(&path, case).unwrap();
        let (Ok(a), Ok(b)) = (node.read(&path), python.read(&path)) else {
            continue;
        };
        let agreed: Values = a
            .iter()
            .filter(|(k, v)| b.get(*k) == Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let out = s.run(&["export", "-f", &name, "--format", "json"]);
        assert!(
            out.status.success(),
            "envv refused case {case:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let envv: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap();
        for (k, v) in &agreed {
            // The one documented difference: `\$` inside double quotes is a `$` for envv (as
            // in godotenv and a shell); node and python keep the backslash.
            if *case == "a=\"\\$\"" {
                assert_eq!(envv[k].as_str(), Some("$"), "{case:?}");
                assert_eq!(v, "\\$");
                continue;
            }
            assert_eq!(envv[k].as_str(), Some(v.as_str()), "case {case:?} key {k}");
            compared += 1;
        }
    }
    assert!(compared >= 60, "only {compared} values compared");
    eprintln!(
        "input cases: {} files, {compared} agreed values compared",
        cases.len()
    );
}

fn encrypted_get(s: &Sandbox, text: &str, key: &str) -> String {
    s.write(".env", text);
    s.ok(&["encrypt", ".env"]);
    s.ok(&["get", key])
}

#[test]
fn input_empty_value_before_a_comment() {
    let s = Sandbox::new();
    s.init_alice();
    assert_eq!(
        encrypted_get(&s, "KEY= # comment\nTODO=   # todo\nB=x\n", "KEY"),
        ""
    );
    assert_eq!(s.ok(&["get", "TODO"]), "");
    // Without a space the `#` is part of the value (python-dotenv and godotenv agree).
    assert_eq!(encrypted_get(&s, "H=#novalue\n", "H"), "#novalue");
}

#[test]
fn input_cr_alone_ends_a_line() {
    let s = Sandbox::new();
    s.init_alice();
    assert_eq!(
        encrypted_get(&s, "USER=admin\rPASSWORD=hunter2\r", "USER"),
        "admin"
    );
    assert_eq!(s.ok(&["get", "PASSWORD"]), "hunter2");
}

#[test]
fn input_unicode_spaces_at_the_edges_of_unquoted_values_are_trimmed() {
    let s = Sandbox::new();
    s.init_alice();
    assert_eq!(
        encrypted_get(
            &s,
            "A=\u{00a0}nbsp\u{00a0}\nB=\u{2003}em\u{3000}\nC='\u{00a0}kept\u{00a0}'\n",
            "A"
        ),
        "nbsp"
    );
    assert_eq!(s.ok(&["get", "B"]), "em");
    assert_eq!(s.ok(&["get", "C"]), "\u{00a0}kept\u{00a0}");
}

#[test]
fn input_backslash_dollar_in_double_quotes_is_a_dollar() {
    let s = Sandbox::new();
    s.init_alice();
    assert_eq!(
        encrypted_get(&s, "A=\"\\$HOME \\`x\\` \\$\\(y)\"\nB='\\$'\n", "A"),
        "$HOME `x` $(y)"
    );
    assert_eq!(s.ok(&["get", "B"]), "\\$");
}

#[test]
fn input_duplicate_keys_are_an_error_naming_both_lines() {
    let s = Sandbox::new();
    s.init_alice();
    s.write(".env", "A=1\nB=2\nA=3\n");
    let err = s.fails(&["encrypt", ".env"], 2);
    assert!(
        err.contains(".env:3") && err.contains("line 1") && err.contains("duplicate key A"),
        "{err}"
    );
}

/// Appends `line` to the data lines of the encrypted `.env` (before the sops_ metadata), as a
/// pusher without keys can.
fn inject_line(s: &Sandbox, line: &str) {
    let text = s.read(".env");
    let at = text.find("\nsops_").unwrap() + 1;
    s.write(".env", format!("{}{line}\n{}", &text[..at], &text[at..]));
}

#[test]
fn decrypt_drops_a_cr_smuggled_plaintext_comment() {
    let s = Sandbox::new();
    s.init_alice();
    s.write(".env", "# top\nA=1\n");
    s.ok(&["encrypt", ".env"]);
    inject_line(&s, "#\rINJECTED=attacker_value");
    let out = s.ok(&["decrypt"]);
    assert!(!out.contains("INJECTED"), "{out:?}");
    assert!(!out.contains('\r'), "{out:?}");
    // The encrypted comment comes back.
    assert!(out.starts_with("# top\n"), "{out:?}");
    if let Some(node) = node_peer() {
        let f = s.tmp.path().join("decrypted.env");
        s.ok(&["decrypt", "-o", f.to_str().unwrap()]);
        let got = node.read(&f).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["A"], "{got:?}");
    }
}

#[test]
fn decrypt_and_textconv_leave_out_keys_that_are_not_names() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let pwned = s.tmp.path().join("PWNED");
    inject_line(&s, &format!("$(touch {})=", pwned.display()));
    let out = s.run(&["decrypt"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!text.contains("touch"), "{text}");
    assert!(err.contains(".env:2: left out"), "{err}");
    let f = s.tmp.path().join("decrypted.env");
    std::fs::write(&f, &text).unwrap();
    assert!(shell_source(&f).status.success());
    assert!(!pwned.exists(), "the key ran as a command");
    let tc = s.ok(&["decrypt", "--textconv", ".env"]);
    assert!(
        !tc.contains("touch") && tc.contains("line 2 left out"),
        "{tc}"
    );
}

#[test]
fn a_value_with_a_command_never_runs_under_dotenvx_or_a_shell() {
    let s = Sandbox::new();
    s.init_alice();
    let x = s.tmp.path().join("X");
    s.ok(&["set", "V", &format!("it's $(touch {})", x.display())]);
    let f = s.tmp.path().join("exported.env");
    let out = s.run(&["export", "--format", "dotenv", "-o", f.to_str().unwrap()]);
    assert!(out.status.success());
    shell_source(&f);
    assert!(!x.exists(), "sh ran the value");
    if let Some(peer) = dotenvx_peer(&s.home) {
        let got = peer.read(&f).unwrap();
        assert!(got.contains_key("V"), "{got:?}");
        assert!(!x.exists(), "dotenvx ran the value");
    }
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("V has no dotenv spelling"), "{err}");
}

#[test]
fn sops_crlf_file_plaintext_values_keep_their_cr_in_the_mac() {
    let Some(sops) = sops() else { return };
    let s = Sandbox::new();
    let key = fixtures().join("keys.txt");
    s.write("plain.env", "A=1\r\nPUB_unencrypted=visible\r\n");
    let out = run_sops(
        &sops,
        &s.repo,
        &key,
        &[
            "encrypt",
            "--age",
            TEST_KEY_A_PUBLIC,
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            "plain.env",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.write("crlf.env", &out.stdout);
    let json = run_sops(
        &sops,
        &s.repo,
        &key,
        &["decrypt", "--output-type", "json", "crlf.env"],
    );
    assert!(json.status.success());
    let want: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json.stdout).unwrap();
    let id = key.to_str().unwrap();
    let got = s.ok(&[
        "export",
        "-f",
        "crlf.env",
        "--format",
        "json",
        "--identity",
        id,
    ]);
    let got: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&got).unwrap();
    assert_eq!(got, want);
    assert_eq!(want["PUB_unencrypted"], "visible\r");
}

#[test]
fn sops_keys_from_naive_files_are_left_out_with_a_warning() {
    let Some(sops) = sops() else { return };
    let s = Sandbox::new();
    let key = fixtures().join("keys.txt");
    s.write("plain.env", "export FOO=1\n SPACED =2\nGOOD=3\n");
    let out = run_sops(
        &sops,
        &s.repo,
        &key,
        &[
            "encrypt",
            "--age",
            TEST_KEY_A_PUBLIC,
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            "plain.env",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.write("naive.env", &out.stdout);
    let id = key.to_str().unwrap();
    let out = s.run(&[
        "exec",
        "-f",
        "naive.env",
        "--identity",
        id,
        "--",
        "printenv",
        "GOOD",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "3\n");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("naive.env:1: left out") && err.contains("naive.env:2: left out"),
        "{err}"
    );
    let out = s.run(&["export", "-f", "naive.env", "--identity", id]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "GOOD=3\n");
    let out = s.run(&["decrypt", "-f", "naive.env", "--identity", id]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "export FOO=1\nGOOD=3\n"
    );
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("naive.env:2: left out"));
}

#[test]
fn edit_shows_every_hard_value_so_that_saving_changes_nothing() {
    let s = Sandbox::new();
    s.init_alice();
    let marks = s.tmp.path().join("marks");
    let values = corpus(&marks);
    for (i, v) in values.iter().enumerate() {
        s.ok(&["set", &format!("V{i:03}"), v]);
    }
    let before = s.read(".env");
    let out = s.envv().arg("edit").env("EDITOR", "true").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.read(".env"),
        before,
        "an edit without changes rewrote the file"
    );
    // Adding a line keeps every other value and its ciphertext.
    let ed = s.tmp.path().join("append.sh");
    std::fs::write(&ed, "#!/bin/sh\necho 'NEW=1' >> \"$1\"\n").unwrap();
    let out = s
        .envv()
        .arg("edit")
        .env("EDITOR", format!("sh {}", ed.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = s.read(".env");
    for line in before.lines().filter(|l| l.starts_with('V')) {
        assert!(after.contains(line), "ciphertext changed: {line}");
    }
    let json = s.ok(&["export", "--format", "json"]);
    let got: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            got[&format!("V{i:03}")].as_str(),
            Some(v.as_str()),
            "V{i:03}"
        );
    }
    assert_eq!(got["NEW"], "1");
}

#[test]
fn an_encrypted_file_converted_to_crlf_still_reads() {
    // git with core.autocrlf on Windows checks files out with CRLF.
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    s.ok(&["set", "PUB_unencrypted", "visible"]);
    let crlf = s.read(".env").replace('\n', "\r\n");
    s.write(".env", crlf);
    assert_eq!(s.ok(&["get", "A"]), "1");
    assert_eq!(s.ok(&["get", "PUB_unencrypted"]), "visible");
    s.ok(&["set", "B", "2"]);
    assert_eq!(s.ok(&["get", "PUB_unencrypted"]), "visible");
}

#[test]
fn edit_stores_keys_from_naive_sops_files_under_their_names() {
    let Some(sops) = sops() else { return };
    let s = Sandbox::new();
    let alice = s.init_alice();
    // Outside the repository: sops would apply envv's .sops.yaml to plain.env.
    let dir = s.tmp.path().join("sops");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plain.env"), "export FOO=1\n SPACED =2\nGOOD=3\n").unwrap();
    let out = run_sops(
        &sops,
        &dir,
        &s.default_key(),
        &[
            "encrypt",
            "--age",
            &alice,
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            "plain.env",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.write(".env", &out.stdout);
    let out = s.envv().arg("edit").env("EDITOR", "true").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(".env:2: shown as SPACED"), "{err}");
    let out = s.run(&["export", "--format", "json"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"FOO": "1", "SPACED": "2", "GOOD": "3"})
    );
}
