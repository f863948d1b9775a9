//! Typed errors for the envv core.
//!
//! Every error names the file (and line or key where there is one) and never carries a secret
//! value: messages are built from names, paths and line numbers only. The CLI layer prints the
//! message with its hints and maps the kind to an exit code (`cli::CliError`).

use std::path::Path;

/// Result alias used across the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, typed so the CLI can choose an exit code and a hint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of a dotenv file (plaintext or encrypted) that cannot be read.
    #[error("{file}:{line}: {msg}")]
    Parse {
        /// Name of the file, as messages show it.
        file: String,
        /// 1-based number of the line that cannot be read.
        line: usize,
        /// What is wrong with the line, without its text.
        msg: String,
    },

    /// A structural problem with an encrypted file (metadata, ENC blob, data key).
    #[error("{file}: {msg}")]
    Format {
        /// Name of the file, as messages show it.
        file: String,
        /// What is wrong with the structure.
        msg: String,
    },

    /// The MAC of a file does not match its values.
    #[error("{file} was modified outside envv or sops: the MAC does not match its values")]
    Mac {
        /// Name of the file, as messages show it.
        file: String,
    },

    /// No identity could unwrap the data key of a file.
    #[error("cannot decrypt {file}: none of your identities is a reader")]
    NoIdentity {
        /// Name of the file, as messages show it; several
        /// files are joined with `, `.
        file: String,
        /// Names of the members the policy lists as readers (empty when unknown).
        readers: Vec<String>,
        /// Labels of the identities tried, `source (age1…)`, then problems loading sources.
        tried: Vec<String>,
    },

    /// The identities open some of a file's key groups, but fewer than its threshold.
    #[error("cannot decrypt {file}: it needs {needed} of {groups} key groups; your identities open {opened}")]
    TooFewGroups {
        /// Name of the file, as messages show it.
        file: String,
        /// How many key groups must be opened (the file's Shamir threshold).
        needed: u64,
        /// How many key groups the file has.
        groups: usize,
        /// How many key groups the identities opened (at least 1, fewer than `needed`).
        opened: usize,
        /// Names of the members the policy lists as readers (empty when unknown).
        readers: Vec<String>,
        /// Labels of the identities tried, `source (age1…)`, then problems loading sources.
        tried: Vec<String>,
    },

    /// A value's ciphertext failed authentication (edited, or moved to another key).
    #[error("{file}:{line}: the encrypted value of {key} does not authenticate (edited by hand, or moved from another key)")]
    Tampered {
        /// Name of the file, as messages show it.
        file: String,
        /// 1-based number of the line holding the value.
        line: usize,
        /// Name of the key whose value does not authenticate.
        key: String,
    },

    /// A key that was asked for is not in the file.
    #[error("{key} is not set in {file}")]
    KeyNotFound {
        /// Name of the key that was asked for.
        key: String,
        /// Name of the file, as messages show it.
        file: String,
    },

    /// The file does not exist.
    #[error("{file} does not exist")]
    MissingFile {
        /// Name of the file, as messages show it.
        file: String,
    },

    /// `.sops.yaml` is invalid; `line` is where the problem is, when known.
    #[error("{file}{}: {msg}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Policy {
        /// Path of the policy file as shown to the user.
        file: String,
        /// 1-based line of the problem; `None` when it is not tied to one line.
        line: Option<usize>,
        /// What is wrong with the policy.
        msg: String,
    },

    /// A path envv refuses to read or write (outside the working tree, a link, not a regular
    /// file).
    #[error("{file}: {msg}")]
    Path {
        /// The path as shown to the user.
        file: String,
        /// Why envv refuses it.
        msg: String,
    },

    /// No `.sops.yaml` was found: in `dir`, or (`parents`) in it and every folder above it.
    #[error("no {} in {dir}{}", crate::policy::POLICY_FILE, if *parents { " or its parents" } else { "" })]
    NoPolicy {
        /// The folder where the search started.
        dir: String,
        /// Whether the folders above `dir` were searched too.
        parents: bool,
    },

    /// An environment name the policy does not declare.
    #[error(
        "environment \"{env}\" is not declared in {}",
        crate::policy::POLICY_FILE
    )]
    UnknownEnv {
        /// The environment name that was asked for.
        env: String,
        /// The environment names the policy does declare, for the hint.
        declared: Vec<String>,
    },

    /// A file that is not the file of any environment of the policy.
    #[error("{file} is not the file of any environment in {policy}")]
    UndeclaredFile {
        /// Name of the file, as messages show it.
        file: String,
        /// Name of the policy file that was consulted.
        policy: String,
    },

    /// A file that exists but is not encrypted yet.
    #[error("{file} is not encrypted")]
    NotEncrypted {
        /// Name of the file, as messages show it.
        file: String,
    },

    /// An environment whose readers have all expired or been removed.
    #[error("environment {env} has no current reader (all expired?)")]
    NoReaders {
        /// Name of the environment.
        env: String,
    },

    /// A file that people the policy no longer lists can still decrypt.
    #[error("{file} can still be decrypted by {} whom {} no longer lists as readers", who.join(", "), crate::policy::POLICY_FILE)]
    StaleReaders {
        /// Name of the file, as messages show it.
        file: String,
        /// Names (or short keys) of the people who can still decrypt it.
        who: Vec<String>,
    },

    /// A working folder that is not inside a git repository.
    #[error("{dir} is not inside a git repository")]
    NotARepo {
        /// The folder that was searched.
        dir: String,
    },

    /// A key-group layout or threshold envv will not change as asked.
    #[error("{file}: {msg}")]
    KeyGroups {
        /// Name of the file, as messages show it.
        file: String,
        /// What envv will not do, and why.
        msg: String,
        /// The next step to suggest, when there is one.
        hint: Option<String>,
    },

    /// Arguments that cannot be used as given.
    #[error("{msg}")]
    Usage {
        /// What is wrong with the arguments.
        msg: String,
        /// The next step to suggest, when there is one.
        hint: Option<String>,
    },

    /// An operation envv refuses in the repository's current state.
    #[error("{msg}")]
    Refused {
        /// What was refused, and why.
        msg: String,
        /// The next step to suggest, when there is one.
        hint: Option<String>,
    },

    /// A check found problems (pre-commit, updatekeys --check, check).
    #[error("{0}")]
    CheckFailed(String),

    /// Encryption machinery failed (age, recipients).
    #[error("{0}")]
    Crypto(String),

    /// An operating system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on, as shown to the user.
        path: String,
        /// The error the operating system returned.
        #[source]
        source: std::io::Error,
    },

    /// A git operation failed.
    #[error("git: {0}")]
    Git(String),

    /// A key name that is not valid where one was asked for (a command-line argument).
    #[error(transparent)]
    KeyName(#[from] crate::format::dotenv::KeyNameError),
}

impl Error {
    /// Builds an [`Error::Usage`] without a hint.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage {
            msg: msg.into(),
            hint: None,
        }
    }

    /// Builds an [`Error::Usage`] with the next step.
    pub fn usage_hint(msg: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            msg: msg.into(),
            hint: Some(hint.into()),
        }
    }

    /// Builds an [`Error::Refused`] without a hint.
    pub fn refused(msg: impl Into<String>) -> Self {
        Error::Refused {
            msg: msg.into(),
            hint: None,
        }
    }

    /// Builds an [`Error::Refused`] with the next step.
    pub fn refused_hint(msg: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Refused {
            msg: msg.into(),
            hint: Some(hint.into()),
        }
    }

    /// Builds an [`Error::KeyGroups`].
    pub fn key_groups(file: impl Into<String>, msg: impl Into<String>, hint: Option<&str>) -> Self {
        Error::KeyGroups {
            file: file.into(),
            msg: msg.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Builds an [`Error::Format`].
    pub fn format(file: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Format {
            file: file.into(),
            msg: msg.into(),
        }
    }
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Self {
        Error::Git(e.message().to_string())
    }
}

/// Text for a terminal: control characters other than newlines are shown escaped (`\u{1b}`),
/// so that text a pusher wrote (member names, commit authors, file names) cannot move the
/// cursor, erase lines or write the clipboard when envv prints it.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Text for one line of a terminal: like [`printable`], with newlines escaped too, so that a
/// file name from the repository cannot start a line of its own (a forged `hint:`).
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Shortens a path for messages: relative to `base` when inside it.
pub fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Helper trait to attach a path to io errors.
pub trait IoContext<T> {
    /// Turns an io error into an [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
