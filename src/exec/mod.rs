//! Secrets into a process: which files `exec`/`export` load, in which order, and how they merge.
//!
//! The layering follows the dotenv-flow / Next.js convention: `.env`, then the environment's own
//! file (`.env.<env>`), then the personal plaintext overrides `.env.local` and `.env.<env>.local`;
//! each only if present, and a later file wins. Encrypted files are decrypted in memory with one
//! [`Keyring`] shared across files (a key source is read once) and their MAC is verified.
//! Values are literal unless expansion is asked for ([`expand`]). Then [`inject`] decides what
//! reaches the child given the existing environment, and [`replace_process`] runs it: on Unix
//! envv becomes CMD (`execvp`), so CMD keeps envv's pid, signals and exit code.
//!
//! This path is the hot one (DESIGN §6: `envv exec -- true` within 5 ms for 100 keys and 5
//! recipients), so it touches no git history: the policy is parsed once and each file is read
//! and decrypted once.

pub mod redact;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::dotenv::{self, Entry, Line};
use crate::keys::Keyring;
use crate::secret::Secret;
use crate::store::file::EnvFile;
use crate::workspace::{Target, Workspace};

/// One file taking part in the merge.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where the file is on disk.
    pub path: PathBuf,
    /// Name for messages (relative to the repository root).
    pub name: String,
    /// Environment whose file this is (for "who can read" in errors).
    pub env: Option<String>,
    /// A personal plaintext override (`*.local`), never encrypted.
    pub local: bool,
    /// The shared base `.env` under another environment: skipped (not an error) when the
    /// caller is not one of its readers, so a production-only reader can still run with `-e`.
    pub optional: bool,
}

/// One merged variable.
#[derive(Debug, Clone)]
pub struct Var {
    /// The variable name.
    pub key: String,
    /// Its value from the last layer that set it (expanded when expansion was asked for).
    pub value: Secret,
    /// Whether the value was stored encrypted (or came from a `.local` file): CI output masks it.
    pub secret: bool,
    /// The layer that set the value last.
    pub layer: usize,
}

/// The files to load for `-e ENV` / `-f FILE`, in order, those that exist only.
///
/// With `-f FILE` only that file is loaded. Otherwise: the default environment's file (`.env`),
/// the selected environment's file, `.env.local`, and the environment file's `.local`.
pub fn layers(ws: &Workspace, env: Option<&str>, file: Option<&Path>) -> Result<Vec<Layer>> {
    if file.is_some() {
        let t = ws.target(env, file)?;
        // Anything that exists is read (and refused if it is not a regular file).
        if !t.path.exists() {
            return Err(Error::MissingFile { file: t.name });
        }
        return Ok(vec![layer_of(t, false)]);
    }
    let base = ws.target(None, None)?;
    let selected = match env {
        Some(e) => Some(ws.target(Some(e), None)?),
        None => None,
    };
    let mut wanted: Vec<Layer> = vec![layer_of(base.clone(), false)];
    if let Some(s) = &selected {
        if s.path != base.path {
            wanted[0].optional = true;
            wanted.push(layer_of(s.clone(), false));
        }
    }
    wanted.push(local_of(&base));
    if let Some(s) = &selected {
        if s.path != base.path {
            wanted.push(local_of(s));
        }
    }
    let wanted: Vec<Layer> = wanted.into_iter().filter(|l| l.path.is_file()).collect();
    // A `.local` file is not named by the policy, but a committed link must not lead out either.
    for l in wanted.iter().filter(|l| l.local) {
        crate::os::paths::check_inside(&ws.root, &l.path)?;
    }
    Ok(wanted)
}

/// Removes the `.local` layers that git tracks and returns their names. A personal override is
/// by definition not in git: one that is came from whoever committed it, and loading it would
/// let them put text next to the secrets (with expansion, around them).
pub fn drop_tracked_locals(root: &Path, layers: &mut Vec<Layer>) -> Vec<String> {
    if !layers.iter().any(|l| l.local) {
        return Vec::new();
    }
    let Some(repo) = crate::git::open(root) else {
        return Vec::new();
    };
    let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) else {
        return Vec::new();
    };
    let Ok(index) = repo.index() else {
        return Vec::new();
    };
    // The layer's own path, its final component not followed: a committed `.env.local` that
    // is a symlink is tracked under its own name, whatever it points to.
    let own_path = |l: &Layer| {
        let parent = l.path.parent()?.canonicalize().ok()?;
        Some(parent.join(l.path.file_name()?))
    };
    let tracked = |l: &Layer| {
        own_path(l)
            .and_then(|p| p.strip_prefix(&workdir).ok().map(Path::to_path_buf))
            .is_some_and(|rel| index.get_path(&rel, 0).is_some())
    };
    // A personal override is a plain file of your own; a link could point anywhere.
    let is_link =
        |l: &Layer| std::fs::symlink_metadata(&l.path).is_ok_and(|m| m.file_type().is_symlink());
    let mut dropped = Vec::new();
    layers.retain(|l| {
        if l.local && (tracked(l) || is_link(l)) {
            dropped.push(l.name.clone());
            false
        } else {
            true
        }
    });
    dropped
}

fn layer_of(t: Target, local: bool) -> Layer {
    Layer {
        path: t.path,
        name: t.name,
        env: t.env,
        local,
        optional: false,
    }
}

fn local_of(t: &Target) -> Layer {
    let mut p = t.path.clone().into_os_string();
    p.push(".local");
    Layer {
        path: PathBuf::from(p),
        name: format!("{}.local", t.name),
        env: None,
        local: true,
        optional: false,
    }
}

/// How values are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Expand `$VAR` / `${VAR}` (see [`expand`]).
    pub expand: bool,
    /// Skip the MAC check (recovery only).
    pub ignore_mac: bool,
}

/// What [`load`] gives: the merged variables, the optional layers skipped (not a reader), and
/// warnings about lines left out (text before `=` that is not a key name).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The merged variables, in the order their keys first appeared.
    pub vars: Vec<Var>,
    /// Names of the optional layers left out because no identity is one of their readers.
    pub skipped: Vec<String>,
    /// Messages about lines left out and empty values not taken, naming file and key (never a
    /// value or the text of a line).
    pub warnings: Vec<String>,
}

/// Reads, decrypts and merges `layers` (later wins). Variables keep the position of their first
/// appearance. Optional layers the caller cannot decrypt are skipped and named in
/// [`Loaded::skipped`]. `readers(layer)` names who can read a layer, for the "no identity" error;
/// `environment(key)` is the current environment, consulted by expansion after loaded values.
pub fn load(
    layers: &[Layer],
    keyring: &mut Keyring,
    opts: LoadOptions,
    readers: impl Fn(&Layer) -> Vec<String>,
    environment: impl Fn(&str) -> Option<OsString>,
) -> Result<Loaded> {
    let mut vars: Vec<Var> = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (li, layer) in layers.iter().enumerate() {
        let pairs = match read_layer(layer, keyring, opts, &readers, &mut warnings) {
            Err(Error::NoIdentity { .. }) if layer.optional => {
                skipped.push(layer.name.clone());
                continue;
            }
            other => other?,
        };
        for (key, value, secret) in pairs {
            let value = if opts.expand {
                expand(value.expose(), |name| match index.get(name) {
                    Some(&i) => Some(vars[i].value.expose().to_vec()),
                    None => environment(name).map(os_bytes),
                })
            } else {
                value
            };
            match index.get(&key) {
                // An empty value in an encrypted file is outside its MAC (sops leaves empty
                // values out): anyone could have added it, so it never replaces a value of an
                // earlier layer. Personal `.local` overrides may blank a value on purpose.
                Some(&i)
                    if value.is_empty()
                        && !layer.local
                        && !vars[i].value.is_empty()
                        && layer_is_encrypted(layer) =>
                {
                    warnings.push(format!(
                        "{key} is empty in {} (empty values are not covered by its MAC): kept the value from {}",
                        layer.name, layers[vars[i].layer].name
                    ));
                }
                Some(&i) => {
                    vars[i] = Var {
                        key,
                        value,
                        secret,
                        layer: li,
                    }
                }
                None => {
                    index.insert(key.clone(), vars.len());
                    vars.push(Var {
                        key,
                        value,
                        secret,
                        layer: li,
                    });
                }
            }
        }
    }
    Ok(Loaded {
        vars,
        skipped,
        warnings,
    })
}

/// Whether a layer's file is an encrypted (sops) file: cheap, it looks for the MAC line.
fn layer_is_encrypted(layer: &Layer) -> bool {
    read_limited(&layer.path).is_ok_and(|b| memchr::memmem::find(&b, b"\nsops_mac=").is_some())
}

/// The key/value pairs of one layer, in file order (a duplicate key: the last one wins).
fn read_layer(
    layer: &Layer,
    keyring: &mut Keyring,
    opts: LoadOptions,
    readers: &impl Fn(&Layer) -> Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Secret, bool)>> {
    if layer.local {
        let bytes = read_limited(&layer.path)?;
        let text = dotenv::decode_utf8(&layer.name, &bytes)?;
        return Ok(pairs_of_plain(
            dotenv::parse_plain(&layer.name, text)?,
            true,
        ));
    }
    let bytes = read_limited(&layer.path)?;
    let f = EnvFile::from_bytes(&layer.path, &layer.name, &bytes)?;
    if !f.is_encrypted() {
        let text = dotenv::decode_utf8(&layer.name, &bytes)?;
        return Ok(pairs_of_plain(
            dotenv::parse_plain(&layer.name, text)?,
            false,
        ));
    }
    let dk = f.unlock(keyring, || readers(layer))?;
    let plan = f.plan();
    let mut out = Vec::with_capacity(f.lines().len());
    let opened = f.decrypt(&dk, !opts.ignore_mac)?;
    for (i, (line, value)) in opened.into_entries().enumerate() {
        if let (
            Line::Pair {
                key,
                stored,
                line: n,
            },
            Some(value),
        ) = (line, value)
        {
            // Keys come from the file as stored (a sops file may hold any text before `=`, such
            // as `export FOO` or ` FOO ` from a hand-written file, and keys are not in the MAC):
            // only real names reach an environment or a shell; the others are left out.
            if dotenv::validate_key(&key).is_err() {
                warnings.push(format!(
                    "{}:{}: left out: {}",
                    layer.name,
                    if n > 0 { n } else { i + 1 },
                    dotenv::key_problem(&key)
                ));
                continue;
            }
            let secret = plan[i] && !stored.is_empty();
            out.push((key, value, secret));
        }
    }
    Ok(out)
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    crate::os::paths::read_bounded(path, &path.display().to_string())
}

fn pairs_of_plain(entries: Vec<Entry>, secret: bool) -> Vec<(String, Secret, bool)> {
    entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Pair { key, value, .. } => Some((key, value, secret)),
            _ => None,
        })
        .collect()
}

#[cfg(unix)]
fn os_bytes(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    s.into_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: OsString) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// Keeps only the keys of `only` (in the order of `vars`). A key of `only` that no file sets
/// is an error naming it, unless `present_elsewhere(key)` (e.g. it is already in the environment).
pub fn select(
    vars: Vec<Var>,
    only: &[String],
    present_elsewhere: impl Fn(&str) -> bool,
) -> Result<Vec<Var>> {
    if only.is_empty() {
        return Ok(vars);
    }
    for k in only {
        if !vars.iter().any(|v| &v.key == k) && !present_elsewhere(k) {
            return Err(Error::KeyNotFound {
                key: k.clone(),
                file: "any of the loaded files".into(),
            });
        }
    }
    Ok(vars.into_iter().filter(|v| only.contains(&v.key)).collect())
}

/// Expands `$NAME`, `${NAME}` and `${NAME:-default}` in `value`; `\$` is a literal `$`.
/// `lookup` gives a name's value; an unknown name expands to nothing (as in a shell). A `$` not
/// followed by a name is kept.
pub fn expand(value: &[u8], lookup: impl Fn(&str) -> Option<Vec<u8>>) -> Secret {
    let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'\\' && value.get(i + 1) == Some(&b'$') {
            out.push(b'$');
            i += 2;
            continue;
        }
        if b != b'$' {
            out.push(b);
            i += 1;
            continue;
        }
        match value.get(i + 1) {
            Some(b'{') => {
                let Some(close) = value[i + 2..].iter().position(|&c| c == b'}') else {
                    out.push(b);
                    i += 1;
                    continue;
                };
                let inner = &value[i + 2..i + 2 + close];
                let (name, default) = match inner.windows(2).position(|w| w == b":-") {
                    Some(p) => (&inner[..p], Some(&inner[p + 2..])),
                    None => (inner, None),
                };
                let valid =
                    !name.is_empty() && is_start(name[0]) && name.iter().all(|&c| is_name(c));
                if !valid {
                    out.push(b);
                    i += 1;
                    continue;
                }
                let name = std::str::from_utf8(name).unwrap_or_default();
                match (lookup(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => out.extend_from_slice(d),
                    (Some(v), _) => out.extend_from_slice(&v),
                    (None, Some(d)) => out.extend_from_slice(d),
                    (None, None) => {}
                }
                i += 2 + close + 1;
            }
            Some(&c) if is_start(c) => {
                let end = value[i + 1..]
                    .iter()
                    .position(|&c| !is_name(c))
                    .map(|p| i + 1 + p)
                    .unwrap_or(value.len());
                let name = std::str::from_utf8(&value[i + 1..end]).unwrap_or_default();
                if let Some(v) = lookup(name) {
                    out.extend_from_slice(&v);
                }
                i = end;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Secret::new(out)
}

/// What reaches the child: every variable, except those already in the environment
/// (`is_set(key)`) unless `override_existing` (the dotenv convention: the environment wins).
pub fn inject(vars: Vec<Var>, override_existing: bool, is_set: impl Fn(&str) -> bool) -> Vec<Var> {
    vars.into_iter()
        .filter(|v| override_existing || !is_set(&v.key))
        .collect()
}

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No executable of that name on `PATH` (or at that path).
    #[error("{cmd}: command not found")]
    NotFound {
        /// The command as given.
        cmd: String,
    },
    /// The file exists but may not be executed.
    #[error("{cmd}: permission denied (not an executable file)")]
    NotExecutable {
        /// The command as given.
        cmd: String,
    },
    /// Any other reason the operating system gave for not starting it.
    #[error("{cmd}: cannot run it: {source}")]
    Other {
        /// The command as given.
        cmd: String,
        /// The error the operating system returned.
        source: std::io::Error,
    },
}

impl LaunchError {
    /// Shell conventions: 127 when the command does not exist, 126 when it cannot be executed.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::NotFound { .. } => 127,
            LaunchError::NotExecutable { .. } | LaunchError::Other { .. } => 126,
        }
    }

    fn from_io(cmd: &str, e: std::io::Error) -> Self {
        let cmd = cmd.to_string();
        match e.kind() {
            std::io::ErrorKind::NotFound => LaunchError::NotFound { cmd },
            std::io::ErrorKind::PermissionDenied => LaunchError::NotExecutable { cmd },
            _ => LaunchError::Other { cmd, source: e },
        }
    }
}

/// The command with `vars` added to its environment.
pub fn command(cmd: &str, args: &[OsString], vars: &[Var]) -> std::process::Command {
    let mut c = std::process::Command::new(cmd);
    c.args(args);
    for v in vars {
        c.env(&v.key, value_os(v.value.expose()));
    }
    c
}

#[cfg(unix)]
fn value_os(b: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b)
}

#[cfg(not(unix))]
fn value_os(b: &[u8]) -> OsString {
    OsString::from(String::from_utf8_lossy(b).into_owned())
}

/// Runs `cmd` with `vars` added to the environment. On Unix the current process is replaced
/// (same pid; signals and exit status are CMD's), so this returns only when CMD could not be
/// started. Elsewhere CMD is spawned and its exit code returned.
pub fn replace_process(
    cmd: &str,
    args: &[OsString],
    vars: &[Var],
) -> std::result::Result<i32, LaunchError> {
    let mut c = command(cmd, args, vars);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = c.exec();
        Err(LaunchError::from_io(cmd, e))
    }
    #[cfg(not(unix))]
    {
        let status = c.status().map_err(|e| LaunchError::from_io(cmd, e))?;
        Ok(status.code().unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(v: &str) -> String {
        let map: HashMap<&str, &str> = [("A", "1"), ("EMPTY", ""), ("B_2", "two")]
            .into_iter()
            .collect();
        String::from_utf8(
            expand(v.as_bytes(), |n| map.get(n).map(|s| s.as_bytes().to_vec()))
                .expose()
                .to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn expansion_forms() {
        assert_eq!(exp("x$A"), "x1");
        assert_eq!(exp("${A}x"), "1x");
        assert_eq!(exp("$B_2-$A"), "two-1");
        assert_eq!(exp("$NOPE."), ".");
        assert_eq!(exp("${NOPE:-dflt}"), "dflt");
        assert_eq!(exp("${EMPTY:-dflt}"), "dflt");
        assert_eq!(exp("${A:-dflt}"), "1");
        assert_eq!(exp("\\$A"), "$A");
        assert_eq!(exp("cost $5 and $"), "cost $5 and $");
        assert_eq!(exp("${unclosed"), "${unclosed");
        assert_eq!(exp("${1bad}"), "${1bad}");
    }

    #[test]
    fn select_and_inject() {
        let v = |k: &str| Var {
            key: k.into(),
            value: Secret::from_str("v"),
            secret: true,
            layer: 0,
        };
        let vars = vec![v("A"), v("B"), v("C")];
        let sel = select(vars.clone(), &["C".into(), "A".into()], |_| false).unwrap();
        assert_eq!(
            sel.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(),
            ["A", "C"]
        );
        assert!(matches!(
            select(vars.clone(), &["Z".into()], |_| false),
            Err(Error::KeyNotFound { .. })
        ));
        assert!(select(vars.clone(), &["Z".into()], |k| k == "Z")
            .unwrap()
            .is_empty());
        let inj = inject(vars.clone(), false, |k| k == "B");
        assert_eq!(inj.len(), 2);
        assert_eq!(inject(vars, true, |k| k == "B").len(), 3);
    }
}
