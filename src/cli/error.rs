//! The one error type of the command line, and its printer.
//!
//! Every command returns [`CliResult`]. A [`CliError`] carries a [`Kind`] (which picks the exit
//! code) and structured [`Hint`]s (the readers of a file, the identities tried, the next command),
//! so the core's errors stay plain data and every command prints the same way: `error: ...`,
//! then one aligned line per hint. Nothing here ever holds a value: the core builds messages
//! from names, paths and line numbers only.

use crate::error::{printable, Error};

/// What kind of failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command ran and the answer is "no": a check failed, a key is not set, the user is not
    /// a reader. Exit code 1.
    Failed,
    /// The command line, the input or the repository's state does not allow what was asked.
    /// Exit code 2.
    Usage,
    /// `exec` could not start the command: the shell's codes, 127 (not found) or 126 (not
    /// executable).
    Launch(i32),
}

impl Kind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::Launch(code) => code,
        }
    }
}

/// One line printed under an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Who can read the file (names from the policy).
    Readers(String),
    /// Which identities were tried.
    Tried(String),
    /// The next step, usually a command to run.
    Next(String),
}

impl Hint {
    fn label(&self) -> &'static str {
        match self {
            Hint::Readers(_) => "readers:",
            Hint::Tried(_) => "tried:",
            Hint::Next(_) => "hint:",
        }
    }

    fn text(&self) -> &str {
        match self {
            Hint::Readers(t) | Hint::Tried(t) | Hint::Next(t) => t,
        }
    }
}

/// An error as the command line reports it.
#[derive(Debug)]
pub struct CliError {
    /// Decides the exit code.
    pub kind: Kind,
    /// The first line, after `error: `.
    pub message: String,
    /// Lines printed under the message.
    pub hints: Vec<Hint>,
}

/// What every command returns.
pub type CliResult<T = i32> = std::result::Result<T, CliError>;

impl CliError {
    /// A usage error (exit code 2) with a message and no hint.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            kind: Kind::Usage,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// A failure (exit code 1) with a message and no hint.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            kind: Kind::Failed,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// Adds the next step.
    pub fn hint(mut self, next: impl Into<String>) -> Self {
        self.hints.push(Hint::Next(next.into()));
        self
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The text printed to stderr: `error: message` and one line per hint, with control
    /// characters escaped (file names and member names come from the repository).
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", printable(&self.message));
        let width = if self.hints.iter().any(|h| !matches!(h, Hint::Next(_))) {
            8
        } else {
            0
        };
        for h in &self.hints {
            // A multi-line hint keeps its lines under the first one.
            let text = printable(h.text()).replace('\n', "\n  ");
            out.push_str(&format!("  {:<width$} {text}\n", h.label()));
        }
        out
    }

    /// Prints the error to stderr.
    pub fn print(&self) {
        eprint!("{}", self.render());
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn join_or(list: &[String], none: &str) -> String {
    if list.is_empty() {
        none.to_string()
    } else {
        list.join(", ")
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::from(&e)
    }
}

impl From<&Error> for CliError {
    fn from(e: &Error) -> Self {
        let message = e.to_string();
        let kind = match e {
            Error::KeyNotFound { .. }
            | Error::CheckFailed(_)
            | Error::NoIdentity { .. }
            | Error::TooFewGroups { .. } => Kind::Failed,
            _ => Kind::Usage,
        };
        let mut hints = Vec::new();
        let policy = crate::policy::POLICY_FILE;
        match e {
            Error::Mac { file } => hints.push(Hint::Next(format!(
                "`git diff {file}` shows what changed; `envv decrypt --ignore-mac -f {file}` recovers readable values"
            ))),
            Error::NoIdentity { readers, tried, .. } => {
                hints.push(Hint::Readers(join_or(
                    readers,
                    "(unknown: no policy names this file)",
                )));
                hints.push(Hint::Tried(join_or(
                    tried,
                    "nothing: no identity found (run `envv keygen`)",
                )));
                hints.push(Hint::Next(
                    "send `envv whoami` to a reader and ask them to run `envv member add <you> <key>`"
                        .into(),
                ));
            }
            Error::TooFewGroups { tried, .. } => {
                hints.push(Hint::Tried(tried.join(", ")));
                hints.push(Hint::Next(
                    "add the identity of another group (`--identity FILE`, or ENVV_AGE_KEY_FILE), or ask the holders of the other groups".into(),
                ));
            }
            Error::Tampered { file, .. } => hints.push(Hint::Next(format!(
                "`git diff {file}` shows what changed; restore it with `git checkout -- {file}`"
            ))),
            Error::KeyNotFound { .. } => {
                hints.push(Hint::Next("`envv ls` lists the keys; `envv set KEY` adds one".into()))
            }
            Error::MissingFile { .. } => hints.push(Hint::Next("`envv set KEY` creates it".into())),
            Error::NoPolicy { .. } => hints.push(Hint::Next("run `envv init` first".into())),
            Error::UnknownEnv { env, declared } => hints.push(Hint::Next(format!(
                "add it with `envv env add {env}` (declared: {})",
                join_or(declared, "none")
            ))),
            Error::UndeclaredFile { file, .. } => hints.push(Hint::Next(format!(
                "declare it with `envv env add NAME --file {file}`"
            ))),
            Error::NotEncrypted { file } => {
                hints.push(Hint::Next(format!("run `envv encrypt -f {file}` first")))
            }
            Error::NoReaders { env } => hints.push(Hint::Next(format!(
                "give it one with `envv env readers {env} GROUP|MEMBER,...` (readers are in {policy})"
            ))),
            Error::StaleReaders { .. } => hints.push(Hint::Next(
                "run `envv updatekeys` (rotates its data key) before changing it".into(),
            )),
            Error::NotARepo { .. } => hints.push(Hint::Next("run `git init` first".into())),
            Error::KeyGroups { hint, .. } | Error::Usage { hint, .. } | Error::Refused { hint, .. } => {
                hints.extend(hint.clone().map(Hint::Next))
            }
            _ => {}
        }
        CliError {
            kind,
            message,
            hints,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        // Only writing JSON output fails this way (a closed pipe, a full disk).
        CliError::usage(format!("cannot write JSON output: {e}"))
    }
}

impl From<crate::keys::phrase::PhraseError> for CliError {
    fn from(e: crate::keys::phrase::PhraseError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<crate::format::dotenv::KeyNameError> for CliError {
    fn from(e: crate::format::dotenv::KeyNameError) -> Self {
        Error::from(e).into()
    }
}

impl From<git2::Error> for CliError {
    fn from(e: git2::Error) -> Self {
        Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_print_once() {
        let e: CliError = Error::io(
            "/tmp/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        )
        .into();
        let text = e.render();
        assert_eq!(text.matches("gone").count(), 1, "{text}");
    }

    #[test]
    fn hints_align_under_the_message() {
        let e: CliError = Error::NoIdentity {
            file: ".env".into(),
            readers: vec!["alice".into()],
            tried: vec![],
        }
        .into();
        let text = e.render();
        assert!(text.starts_with("error: cannot decrypt .env"), "{text}");
        assert!(text.contains("\n  readers: alice\n"), "{text}");
        assert!(text.contains("\n  tried:   nothing"), "{text}");
        assert!(text.contains("\n  hint:    send `envv whoami`"), "{text}");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn control_characters_are_escaped() {
        let text = CliError::usage("a\u{1b}[2Jb").hint("c\rd").render();
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    }
}
