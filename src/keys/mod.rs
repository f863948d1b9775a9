//! Age identities and recipients: parsing, keygen, wrapping and unwrapping a file's data key.
//!
//! Identities are looked up lazily in DESIGN order (`--identity`, `ENVV_AGE_KEY`,
//! `ENVV_AGE_KEY_FILE`, `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`, the envv and sops
//! key files, then `~/.ssh` keys when a file has an SSH recipient), so the common case reads one
//! source and does one X25519 unwrap. Secret key material stays inside age's types.
//!
//! This module never prints or reads the terminal: passphrases, plugin messages and warnings go
//! through a [`Prompter`] that the binary installs ([`set_prompter`]), as age hands its
//! `Callbacks` to identities.

pub mod phrase;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use age::secrecy::ExposeSecret;

use crate::error::{Error, IoContext, Result};
use crate::format::sops::{shamir, DataKey, KeyEntry, Metadata};

/// A recipient a data key can be wrapped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The recipient exactly as written in the policy (trimmed).
    pub text: String,
    /// Which kind of recipient the text is.
    pub kind: RecipientKind,
}

/// Kinds of recipients envv supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    /// A native age `age1…` public key.
    X25519,
    /// An SSH public key (`ssh-ed25519` or `ssh-rsa`) that age can encrypt to.
    Ssh,
    /// An age plugin recipient (`age1<plugin>1…`), wrapped by the `age-plugin-<plugin>` program.
    Plugin,
}

/// Why a text is not a recipient. No message shows the text, not even its start: a private key
/// pasted where a public key belongs lands here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    /// An `ssh-ed25519 …` or `ssh-rsa …` line that is not a usable public key; the reason is
    /// age's (or a description of it), never a part of the key.
    #[error("invalid SSH public key: {0}")]
    Ssh(&'static str),
    /// An `age1…1…` text that is neither an X25519 nor a valid plugin recipient.
    #[error("invalid age plugin recipient: {0}")]
    Plugin(&'static str),
    /// An `age1…` text that is not a valid X25519 recipient.
    #[error("invalid age recipient: {0}")]
    Age(&'static str),
    /// Not the start of any recipient kind. `private_key` is set when the text is an age
    /// private key (`AGE-SECRET-KEY-1…`), which the message then warns about.
    #[error("not a recipient: expected an age public key (age1...), ssh-ed25519 or ssh-rsa public key{}",
        if *private_key { " (this looks like a private key: never share it; `envv whoami` prints your public key)" } else { "" })]
    NotARecipient {
        /// Whether the text looks like an age private key.
        private_key: bool,
    },
}

impl Recipient {
    /// Parses and validates a recipient (`age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`, plugin).
    pub fn parse(text: &str) -> std::result::Result<Self, RecipientError> {
        let text = text.trim().to_string();
        let kind = if text.starts_with("ssh-ed25519 ") || text.starts_with("ssh-rsa ") {
            age::ssh::Recipient::from_str(&text).map_err(|e| {
                use age::ssh::ParseRecipientKeyError as P;
                RecipientError::Ssh(match e {
                    P::Invalid(why) => why,
                    P::RsaModulusTooLarge => "the RSA key is larger than age supports",
                    P::RsaModulusTooSmall => "the RSA key is smaller than 2048 bits",
                    // The key type named inside the key is not repeated.
                    _ => "unsupported SSH key type",
                })
            })?;
            RecipientKind::Ssh
        } else if text.starts_with("age1")
            && text[4..].contains('1')
            && !text.starts_with("age1pq1")
            && age::x25519::Recipient::from_str(&text).is_err()
        {
            age::plugin::Recipient::from_str(&text).map_err(RecipientError::Plugin)?;
            RecipientKind::Plugin
        } else if text.starts_with("age1") {
            age::x25519::Recipient::from_str(&text).map_err(RecipientError::Age)?;
            RecipientKind::X25519
        } else {
            return Err(RecipientError::NotARecipient {
                private_key: text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-"),
            });
        };
        Ok(Recipient { text, kind })
    }

    /// Short form for messages: `age1abcd…wxyz`.
    pub fn short(&self) -> String {
        short_key(&self.text)
    }

    /// Wraps `secret` (a data key or Shamir share) for this recipient as an armored age file
    /// with LF line endings.
    pub fn wrap(&self, secret: &[u8]) -> Result<String> {
        encrypt_armored(std::slice::from_ref(self), secret)
    }

    /// This recipient as an age recipient (starting its plugin binary for plugin recipients).
    fn to_age(&self) -> Result<Box<dyn age::Recipient + Send>> {
        Ok(match self.kind {
            RecipientKind::X25519 => Box::new(
                age::x25519::Recipient::from_str(&self.text)
                    .map_err(|e| Error::Crypto(e.to_string()))?,
            ),
            RecipientKind::Ssh => Box::new(
                age::ssh::Recipient::from_str(&self.text)
                    .map_err(|e| Error::Crypto(format!("{e:?}")))?,
            ),
            RecipientKind::Plugin => {
                let r = age::plugin::Recipient::from_str(&self.text)
                    .map_err(|e| Error::Crypto(e.to_string()))?;
                let name = r.plugin().to_string();
                Box::new(
                    age::plugin::RecipientPluginV1::new(
                        &name,
                        &[r],
                        &[],
                        AgeCallbacks::new(prompter()),
                    )
                    .map_err(|_| Error::Crypto(plugin_missing(&name)))?,
                )
            }
        })
    }
}

/// Encrypts `secret` to every recipient in one armored age file (LF line endings): any one of
/// them can open it.
pub fn encrypt_armored(recipients: &[Recipient], secret: &[u8]) -> Result<String> {
    let boxed = recipients
        .iter()
        .map(Recipient::to_age)
        .collect::<Result<Vec<_>>>()?;
    let short = || {
        recipients
            .iter()
            .map(Recipient::short)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let enc =
        age::Encryptor::with_recipients(boxed.iter().map(|b| b.as_ref() as &dyn age::Recipient))
            .map_err(|e| Error::Crypto(format!("cannot encrypt for {}: {e}", short())))?;
    let mut out = Vec::with_capacity(512);
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let mut w = enc
        .wrap_output(armor)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    w.write_all(secret)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    w.finish()
        .and_then(|a| a.finish())
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let s = String::from_utf8(out)
        .expect("armor is ASCII")
        .replace("\r\n", "\n");
    Ok(s)
}

/// How a key is shown where a person decides whether to trust it: an age key in full, an ssh
/// key as `ssh-keygen -l` prints it (`ssh-ed25519 SHA256:` and the unpadded base64 of the
/// SHA-256 of the key blob). A short form such as [`short_key`] can be ground to look like
/// another key; these cannot.
pub fn fingerprint(text: &str) -> String {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    use sha2::Digest;
    let text = text.trim();
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(body)) if kind.starts_with("ssh-") => {
            match base64::engine::general_purpose::STANDARD.decode(body) {
                Ok(blob) => format!(
                    "{kind} SHA256:{}",
                    STANDARD_NO_PAD.encode(sha2::Sha256::digest(&blob))
                ),
                Err(_) => format!("{kind} {body}"),
            }
        }
        _ => text.to_string(),
    }
}

/// `age1abcd…wxyz` or `ssh-ed25519 AAAA…wxyz`.
pub fn short_key(text: &str) -> String {
    let (prefix, body) = match text.split_once(' ') {
        Some((t, rest)) => (format!("{t} "), rest.split(' ').next().unwrap_or(rest)),
        None => (String::new(), text),
    };
    if body.chars().count() <= 14 {
        return format!("{prefix}{body}");
    }
    let head: String = body.chars().take(8).collect();
    let tail: String = body
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{prefix}{head}…{tail}")
}

/// Compares recipients ignoring an SSH key's comment.
pub fn same_recipient(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        if s.starts_with("ssh-") {
            s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        } else {
            s.to_string()
        }
    };
    norm(a) == norm(b)
}

/// What to say when the binary of an age plugin is not found.
fn plugin_missing(name: &str) -> String {
    let example = if name == "yubikey" {
        "`cargo install age-plugin-yubikey`, or your package manager's age-plugin-yubikey"
    } else {
        "the plugin's release binary or package"
    };
    format!(
        "the age plugin `age-plugin-{name}` is not on PATH: install it ({example}) and run again"
    )
}

/// How this module talks to the person running envv: messages and questions from age plugins
/// ("touch your key"), passphrases of protected identities, and warnings that do not stop the
/// command. The binary implements it for its terminal and installs it with [`set_prompter`];
/// without one, nothing is shown and nobody is asked ([`Silent`]).
///
/// The shape is age's `Callbacks`, plus [`Prompter::warn`].
pub trait Prompter: Send + Sync {
    /// Shows a message (from a plugin: "touch your YubiKey", say).
    fn display_message(&self, message: &str);

    /// Asks a yes/no question with the given answer labels; `None` when nobody can answer.
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool>;

    /// Asks for a string that is not secret (a plugin's choice of slot); `None` when nobody can
    /// answer.
    fn request_public_string(&self, description: &str) -> Option<String>;

    /// Asks for a passphrase or PIN. [`NoTerminal`] when there is nowhere to ask: the
    /// "cannot decrypt" error then says so.
    fn request_passphrase(
        &self,
        description: &str,
    ) -> std::result::Result<age::secrecy::SecretString, NoTerminal>;

    /// Reports a problem that does not stop the command.
    fn warn(&self, warning: &KeyWarning);
}

/// A passphrase was needed and there was no terminal to ask on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("there is no terminal to type the passphrase on")]
pub struct NoTerminal;

/// Something about the user's keys worth telling, that does not stop the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWarning {
    /// A key file that other users can read (Unix): `mode` is its permission bits.
    ReadableByOthers {
        /// The key file.
        path: PathBuf,
        /// Its mode (`& 0o777`).
        mode: u32,
    },
}

impl std::fmt::Display for KeyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyWarning::ReadableByOthers { path, mode } => write!(
                f,
                "{} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        }
    }
}

/// The [`Prompter`] of a process without one: shows nothing, answers nothing, and has no
/// terminal for passphrases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Prompter for Silent {
    fn display_message(&self, _: &str) {}

    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }

    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }

    fn request_passphrase(
        &self,
        _: &str,
    ) -> std::result::Result<age::secrecy::SecretString, NoTerminal> {
        Err(NoTerminal)
    }

    fn warn(&self, _: &KeyWarning) {}
}

static PROMPTER: OnceLock<Arc<dyn Prompter>> = OnceLock::new();

/// Installs the process's [`Prompter`], used by every [`Keyring`] (unless
/// [`Keyring::with_prompter`] gives another) and by plugin recipients while encrypting. The
/// first call wins; it returns whether this one did.
pub fn set_prompter(prompter: Arc<dyn Prompter>) -> bool {
    PROMPTER.set(prompter).is_ok()
}

/// The installed [`Prompter`], or [`Silent`].
fn prompter() -> Arc<dyn Prompter> {
    PROMPTER.get().cloned().unwrap_or_else(|| Arc::new(Silent))
}

/// A [`Prompter`] as age's `Callbacks`, noting when a passphrase could not be asked for.
#[derive(Clone)]
struct AgeCallbacks {
    prompter: Arc<dyn Prompter>,
    /// Set when a passphrase was needed and there was no terminal: reported by
    /// [`Keyring::tried`].
    no_terminal: Arc<AtomicBool>,
}

impl AgeCallbacks {
    fn new(prompter: Arc<dyn Prompter>) -> Self {
        AgeCallbacks {
            prompter,
            no_terminal: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl age::Callbacks for AgeCallbacks {
    fn display_message(&self, message: &str) {
        self.prompter.display_message(message);
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        self.prompter.confirm(message, yes, no)
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        self.prompter.request_public_string(description)
    }

    fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
        match self.prompter.request_passphrase(description) {
            Ok(p) => Some(p),
            Err(NoTerminal) => {
                self.no_terminal.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One identity loaded from a source.
struct LoadedIdentity {
    identity: Box<dyn age::Identity>,
    /// Its recipient text when known without unlocking (X25519, unencrypted SSH).
    public: Option<String>,
    /// What kind of identity it is, for messages about identities without a known public key.
    kind: IdentityKind,
}

/// Kinds of identity, as far as messages need to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdentityKind {
    /// An `age -p` (scrypt) encrypted identity file.
    Passphrase,
    /// An `AGE-PLUGIN-NAME-1…` identity handled by `age-plugin-NAME`.
    Plugin(String),
    /// X25519 and SSH keys.
    Other,
}

/// A place identities come from, for messages.
struct Source {
    label: String,
    identities: Vec<LoadedIdentity>,
}

/// Where to look for identities, in order.
#[derive(Debug, Clone)]
enum SourceSpec {
    File {
        label: String,
        path: PathBuf,
        explicit: bool,
    },
    Text {
        label: String,
        var: &'static str,
    },
    Cmd {
        label: String,
    },
    Ssh {
        path: PathBuf,
    },
}

/// The identities available to this process, loaded lazily in lookup order.
pub struct Keyring {
    specs: Vec<SourceSpec>,
    loaded: Vec<Option<Source>>,
    /// Sources that could not be read (reported in errors; other sources are still used).
    pub problems: Vec<SourceError>,
    /// Asks for passphrases and shows plugin messages and warnings while sources load.
    callbacks: AgeCallbacks,
    /// Recipients whose entry did not open although an X25519 identity with that very public
    /// key was tried: the wrapped key was damaged or edited (see [`Keyring::damaged`]).
    damaged: Vec<String>,
    /// For the last file with key groups that did not open: how many groups opened.
    groups_opened: Option<usize>,
}

/// The user's config folder for envv: `$XDG_CONFIG_HOME/envv` or `~/.config/envv`.
pub fn envv_config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .map(|d| d.join("envv"))
}

/// The default key file `keygen` writes: `~/.config/envv/keys.txt`.
pub fn default_key_file() -> Option<PathBuf> {
    envv_config_dir().map(|d| d.join("keys.txt"))
}

/// sops's user key file (`$XDG_CONFIG_HOME/sops/age/keys.txt`, platform config dir elsewhere).
fn sops_key_file() -> Option<PathBuf> {
    if cfg!(target_os = "linux") {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
            .map(|d| d.join("sops/age/keys.txt"))
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(dirs::config_dir)
            .map(|d| d.join("sops/age/keys.txt"))
    }
}

fn nonempty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Keyring {
    /// The lookup order of DESIGN §3, with `explicit` (`--identity`) files first. When
    /// `--identity`, `ENVV_AGE_KEY` or `ENVV_AGE_KEY_FILE` is given, only those are used.
    pub fn new(explicit: &[PathBuf]) -> Self {
        let mut specs = Vec::new();
        for p in explicit {
            specs.push(SourceSpec::File {
                label: format!("--identity {}", p.display()),
                path: p.clone(),
                explicit: true,
            });
        }
        if nonempty_env("ENVV_AGE_KEY").is_some() {
            specs.push(SourceSpec::Text {
                label: "$ENVV_AGE_KEY".into(),
                var: "ENVV_AGE_KEY",
            });
        }
        if let Some(p) = nonempty_env("ENVV_AGE_KEY_FILE") {
            specs.push(SourceSpec::File {
                label: format!("$ENVV_AGE_KEY_FILE ({p})"),
                path: p.into(),
                explicit: true,
            });
        }
        // envv's own explicit identities (flag, ENVV_* variables) replace every other source: a
        // CI job or a test that sets ENVV_AGE_KEY_FILE gets exactly that identity. sops's
        // variables join the default files instead (sops users often export them globally).
        let exclusive = !specs.is_empty();
        if nonempty_env("SOPS_AGE_KEY").is_some() {
            specs.push(SourceSpec::Text {
                label: "$SOPS_AGE_KEY".into(),
                var: "SOPS_AGE_KEY",
            });
        }
        if let Some(p) = nonempty_env("SOPS_AGE_KEY_FILE") {
            specs.push(SourceSpec::File {
                label: format!("$SOPS_AGE_KEY_FILE ({p})"),
                path: p.into(),
                explicit: true,
            });
        }
        if nonempty_env("SOPS_AGE_KEY_CMD").is_some() {
            specs.push(SourceSpec::Cmd {
                label: "$SOPS_AGE_KEY_CMD".into(),
            });
        }
        if exclusive {
            return Keyring::with_specs(specs);
        }
        if let Some(p) = default_key_file() {
            specs.push(SourceSpec::File {
                label: tilde(&p),
                path: p,
                explicit: false,
            });
        }
        if let Some(p) = sops_key_file() {
            specs.push(SourceSpec::File {
                label: tilde(&p),
                path: p,
                explicit: false,
            });
        }
        if let Some(h) = dirs::home_dir() {
            specs.push(SourceSpec::Ssh {
                path: h.join(".ssh/id_ed25519"),
            });
            specs.push(SourceSpec::Ssh {
                path: h.join(".ssh/id_rsa"),
            });
        }
        Keyring::with_specs(specs)
    }

    fn with_specs(specs: Vec<SourceSpec>) -> Self {
        let n = specs.len();
        Keyring {
            specs,
            loaded: (0..n).map(|_| None).collect(),
            problems: Vec::new(),
            callbacks: AgeCallbacks::new(prompter()),
            groups_opened: None,
            damaged: Vec::new(),
        }
    }

    /// This keyring with `prompter` instead of the installed one (see [`set_prompter`]). Call it
    /// before the keyring is used: identities keep the prompter they were loaded with.
    pub fn with_prompter(mut self, prompter: Arc<dyn Prompter>) -> Self {
        self.callbacks = AgeCallbacks::new(prompter);
        self
    }

    fn load(&mut self, i: usize) -> Option<&Source> {
        if self.loaded[i].is_none() {
            let spec = self.specs[i].clone();
            let res = load_source(&spec, &self.callbacks);
            match res {
                Ok(Some(src)) => self.loaded[i] = Some(src),
                Ok(None) => {
                    self.loaded[i] = Some(Source {
                        label: String::new(),
                        identities: Vec::new(),
                    })
                }
                Err(e) => {
                    self.problems.push(e);
                    self.loaded[i] = Some(Source {
                        label: String::new(),
                        identities: Vec::new(),
                    });
                }
            }
        }
        self.loaded[i].as_ref()
    }

    /// Unwraps the data key of a file. Tries sources in order; in each source, identities whose
    /// public key matches a recipient entry first. Returns the data key and the label of the
    /// source that opened it, or `None` with nothing opened.
    pub fn unwrap(&mut self, meta: &Metadata) -> Result<Option<DataKey>> {
        let has_ssh = meta.recipients().iter().any(|r| r.starts_with("ssh-"));
        if meta.groups.len() <= 1 {
            let entries: Vec<&KeyEntry> = meta.groups.iter().flatten().collect();
            match self.unwrap_any(&entries, has_ssh) {
                Some(bytes) => {
                    let key = DataKey::from_slice(&bytes).ok_or_else(|| {
                        Error::Crypto("the unwrapped data key is not 32 bytes".into())
                    })?;
                    Ok(Some(key))
                }
                None => Ok(None),
            }
        } else {
            let mut shares = Vec::new();
            for group in &meta.groups {
                let entries: Vec<&KeyEntry> = group.iter().collect();
                if let Some(s) = self.unwrap_any(&entries, has_ssh) {
                    shares.push(s);
                }
            }
            let threshold = meta.groups_needed();
            if (shares.len() as u64) < threshold {
                self.groups_opened = Some(shares.len());
                return Ok(None);
            }
            let plain: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
            let key = zeroize::Zeroizing::new(
                shamir::combine(&plain).map_err(|e| Error::Crypto(e.to_string()))?,
            );
            // `sops_shamir_threshold` is not authenticated: check that the stored number of
            // shares really recovers the key, so a threshold lowered by hand is never used to
            // split the next data key.
            let t = threshold as usize;
            let lowered = if t < plain.len() {
                let again = zeroize::Zeroizing::new(
                    shamir::combine(&plain[..t]).map_err(|e| Error::Crypto(e.to_string()))?,
                );
                again[..] != key[..]
            } else {
                false
            };
            for mut p in plain {
                zeroize::Zeroize::zeroize(&mut p);
            }
            if lowered {
                return Err(Error::Crypto(
                    "its sops_shamir_threshold is lower than the key groups it was split for (edited by hand?): restore the file with `git checkout`".into(),
                ));
            }
            Ok(Some(DataKey::from_slice(&key).ok_or_else(|| {
                Error::Crypto("recovered data key is not 32 bytes".into())
            })?))
        }
    }

    fn unwrap_any(
        &mut self,
        entries: &[&KeyEntry],
        has_ssh: bool,
    ) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let mut damaged = Vec::new();
        for i in 0..self.specs.len() {
            if matches!(self.specs[i], SourceSpec::Ssh { .. }) && !has_ssh {
                continue;
            }
            let Some(src) = self.load(i) else { continue };
            // Identities with a known public key only open the entry with that recipient.
            for id in &src.identities {
                match &id.public {
                    Some(p) => {
                        for e in entries.iter().filter(|e| same_recipient(&e.recipient, p)) {
                            if let Some(k) = try_unwrap(id.identity.as_ref(), &e.enc) {
                                return Some(k);
                            }
                            // An X25519 identity cannot fail on its own entry (no passphrase,
                            // no plugin): the entry itself is broken.
                            if p.starts_with("age1") {
                                damaged.push(e.recipient.clone());
                            }
                        }
                    }
                    None => {
                        for e in entries {
                            if let Some(k) = try_unwrap(id.identity.as_ref(), &e.enc) {
                                return Some(k);
                            }
                        }
                    }
                }
            }
        }
        for d in damaged {
            if !self.damaged.contains(&d) {
                self.damaged.push(d);
            }
        }
        None
    }

    /// Opens an armored age file of at most `max` plaintext bytes (not a file's data key: a
    /// proposal, say) with any identity, in lookup order. `None` when no identity opens it.
    pub fn open_armored(
        &mut self,
        armored: &str,
        max: usize,
    ) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        for i in 0..self.specs.len() {
            let Some(src) = self.load(i) else { continue };
            for id in &src.identities {
                if let Some(v) = try_open(id.identity.as_ref(), armored, max) {
                    return Some(v);
                }
            }
        }
        None
    }

    /// Recipients whose wrapped data key failed to open with the matching X25519 identity: the
    /// file's `sops_age` lines were damaged or edited (not "you are not a reader").
    pub fn damaged(&self) -> &[String] {
        &self.damaged
    }

    /// After [`Keyring::unwrap`] found too few shares of a file with key groups: how many of its
    /// groups the identities opened.
    pub fn groups_opened(&self) -> Option<usize> {
        self.groups_opened
    }

    /// Labels of the identities tried so far (for "no identity" errors): `source (age1…)`.
    pub fn tried(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.specs.len() {
            if let Some(Some(src)) = self.loaded.get(i) {
                for id in &src.identities {
                    let key = match (&id.public, &id.kind) {
                        (Some(p), _) => short_key(p),
                        (None, IdentityKind::Passphrase)
                            if self.callbacks.no_terminal.load(Ordering::Relaxed) =>
                        {
                            "passphrase-protected, and there is no terminal to type the passphrase on: in CI pass the identity itself in $ENVV_AGE_KEY".into()
                        }
                        (None, IdentityKind::Passphrase) => "passphrase-protected".into(),
                        (None, IdentityKind::Plugin(name)) => format!("age-plugin-{name}"),
                        (None, IdentityKind::Other) => "locked identity".into(),
                    };
                    out.push(format!("{} ({key})", src.label));
                }
            }
        }
        out.extend(self.problems.iter().map(ToString::to_string));
        out
    }

    /// Loads every source and returns the public keys found, with their source labels.
    pub fn all_publics(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..self.specs.len() {
            if let Some(src) = self.load(i) {
                for id in &src.identities {
                    if let Some(p) = &id.public {
                        if !out.iter().any(|(q, _): &(String, String)| q == p) {
                            out.push((p.clone(), src.label.clone()));
                        }
                    }
                }
            }
        }
        out
    }
}

fn try_unwrap(identity: &dyn age::Identity, armored: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    try_open(identity, armored, 33)
}

/// Decrypts an armored age file with one identity, reading at most `max` bytes into a buffer
/// allocated once (so no unzeroized copy is left behind by growth). More than `max` is `None`.
fn try_open(
    identity: &dyn age::Identity,
    armored: &str,
    max: usize,
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let trimmed = armored.trim_start();
    let reader = age::armor::ArmoredReader::new(trimmed.as_bytes());
    let dec = age::Decryptor::new(reader).ok()?;
    let r = dec.decrypt(std::iter::once(identity)).ok()?;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(max + 1));
    r.take(max as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= max).then_some(out)
}

fn tilde(p: &Path) -> String {
    if let Some(h) = dirs::home_dir() {
        if let Ok(rest) = p.strip_prefix(&h) {
            return format!("~/{}", rest.display());
        }
    }
    p.display().to_string()
}

/// Why a source of identities could not be read. Each names the source (`label`: the flag,
/// variable or file) and, for key files, the line; never the text of a line, which holds a
/// private key.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `$SOPS_AGE_KEY_CMD` cannot be split into words (an unclosed quote).
    #[error("{label}: cannot split the command: {reason}")]
    CommandSyntax {
        /// The source.
        label: String,
        /// What is wrong with the quoting.
        reason: String,
    },
    /// `$SOPS_AGE_KEY_CMD` has no words.
    #[error("{label}: empty command")]
    EmptyCommand {
        /// The source.
        label: String,
    },
    /// The key command could not be started.
    #[error("{label}: cannot run {program}: {source}")]
    CannotRun {
        /// The source.
        label: String,
        /// The command's program.
        program: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The key command exited with a failure.
    #[error("{label}: {program} exited with {status}")]
    CommandFailed {
        /// The source.
        label: String,
        /// The command's program.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// A key file that was named explicitly cannot be read.
    #[error("{label}: {source}")]
    Unreadable {
        /// The source.
        label: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The source is not UTF-8 text.
    #[error("{label}: not a text identity file")]
    NotText {
        /// The source.
        label: String,
    },
    /// A passphrase-protected identity file that age cannot read.
    #[error("{label}: {source}")]
    Protected {
        /// The source.
        label: String,
        /// age's reason.
        source: age::DecryptError,
    },
    /// An age-encrypted file that holds something other than identities.
    #[error("{label}: an age file that is not a passphrase-protected identity")]
    NotAnIdentity {
        /// The source.
        label: String,
    },
    /// An OpenSSH private key that cannot be read.
    #[error("{label}: {source}")]
    Ssh {
        /// The source.
        label: String,
        /// The parse error.
        source: std::io::Error,
    },
    /// An OpenSSH key of a kind age does not support; `kind` is age's description of it.
    #[error("{label}: unsupported SSH key ({kind})")]
    UnsupportedSsh {
        /// The source.
        label: String,
        /// The key kind.
        kind: String,
    },
    /// An `AGE-SECRET-KEY-1…` line that is not a valid key.
    #[error("{label}:{line}: invalid AGE-SECRET-KEY line")]
    BadSecretKey {
        /// The source.
        label: String,
        /// The line number.
        line: usize,
    },
    /// An `AGE-PLUGIN-…` line that is not a valid plugin identity.
    #[error("{label}:{line}: invalid AGE-PLUGIN identity")]
    BadPluginIdentity {
        /// The source.
        label: String,
        /// The line number.
        line: usize,
    },
    /// A line that is neither a comment nor an identity.
    #[error("{label}:{line}: not an age identity line")]
    NotAnIdentityLine {
        /// The source.
        label: String,
        /// The line number.
        line: usize,
    },
    /// A plugin identity whose `age-plugin-NAME` binary is not on PATH.
    #[error("{label}: {}", plugin_missing(plugin))]
    PluginMissing {
        /// The source.
        label: String,
        /// The plugin's name.
        plugin: String,
    },
}

fn load_source(
    spec: &SourceSpec,
    callbacks: &AgeCallbacks,
) -> std::result::Result<Option<Source>, SourceError> {
    match spec {
        SourceSpec::Text { label, var } => {
            let text = zeroize::Zeroizing::new(std::env::var(var).unwrap_or_default());
            parse_identity_text(label, text.as_bytes(), None, callbacks).map(Some)
        }
        SourceSpec::Cmd { label } => {
            let cmd = std::env::var("SOPS_AGE_KEY_CMD").unwrap_or_default();
            let argv = shell_words::split(&cmd).map_err(|e| SourceError::CommandSyntax {
                label: label.clone(),
                reason: e.to_string(),
            })?;
            let (prog, args) = argv
                .split_first()
                .ok_or_else(|| SourceError::EmptyCommand {
                    label: label.clone(),
                })?;
            let out = std::process::Command::new(prog)
                .args(args)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|source| SourceError::CannotRun {
                    label: label.clone(),
                    program: prog.clone(),
                    source,
                })?;
            let stdout = zeroize::Zeroizing::new(out.stdout);
            if !out.status.success() {
                return Err(SourceError::CommandFailed {
                    label: label.clone(),
                    program: prog.clone(),
                    status: out.status,
                });
            }
            parse_identity_text(label, &stdout, None, callbacks).map(Some)
        }
        SourceSpec::File {
            label,
            path,
            explicit,
        } => {
            let bytes = match std::fs::read(path) {
                Ok(b) => zeroize::Zeroizing::new(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
                Err(source) => {
                    return Err(SourceError::Unreadable {
                        label: label.clone(),
                        source,
                    })
                }
            };
            if let Some(w) = readable_by_others(path) {
                callbacks.prompter.warn(&w);
            }
            parse_identity_text(label, &bytes, Some(path), callbacks).map(Some)
        }
        SourceSpec::Ssh { path } => {
            let label = tilde(path);
            let bytes = match std::fs::read(path) {
                Ok(b) => zeroize::Zeroizing::new(b),
                Err(_) => return Ok(None),
            };
            parse_identity_text(&label, &bytes, Some(path), callbacks).map(Some)
        }
    }
}

/// A warning when a key file is readable by group or others (Unix); `None` otherwise.
pub fn readable_by_others(path: &Path) -> Option<KeyWarning> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(KeyWarning::ReadableByOthers {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    let _ = path;
    None
}

/// Parses identity text: age identity lines, a passphrase-protected identity file, or an
/// OpenSSH private key.
fn parse_identity_text(
    label: &str,
    bytes: &[u8],
    path: Option<&Path>,
    callbacks: &AgeCallbacks,
) -> std::result::Result<Source, SourceError> {
    let label_ = || label.to_string();
    let text = std::str::from_utf8(bytes).map_err(|_| SourceError::NotText { label: label_() })?;
    let head = text.trim_start();
    let filename = path.map(|p| p.display().to_string());
    let mut identities = Vec::new();
    if head.starts_with("age-encryption.org/")
        || head.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
    {
        let reader = age::armor::ArmoredReader::new(std::io::Cursor::new(head.as_bytes().to_vec()));
        let id = age::encrypted::Identity::from_buffer(reader, filename, callbacks.clone(), None)
            .map_err(|source| SourceError::Protected {
                label: label_(),
                source,
            })?
            .ok_or_else(|| SourceError::NotAnIdentity { label: label_() })?;
        identities.push(LoadedIdentity {
            identity: Box::new(id),
            public: None,
            kind: IdentityKind::Passphrase,
        });
    } else if head.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        || head.starts_with("-----BEGIN RSA PRIVATE KEY-----")
    {
        let id = age::ssh::Identity::from_buffer(head.as_bytes(), filename).map_err(|source| {
            SourceError::Ssh {
                label: label_(),
                source,
            }
        })?;
        let public = match &id {
            age::ssh::Identity::Unencrypted(_) => age::ssh::Recipient::try_from(id.clone())
                .ok()
                .map(|r| r.to_string()),
            _ => path
                .and_then(|p| std::fs::read_to_string(p.with_extension("pub")).ok())
                .map(|s| s.trim().to_string()),
        };
        if let age::ssh::Identity::Unsupported(k) = &id {
            return Err(SourceError::UnsupportedSsh {
                label: label_(),
                kind: format!("{k:?}"),
            });
        }
        identities.push(LoadedIdentity {
            identity: Box::new(id.with_callbacks(callbacks.clone())),
            public,
            kind: IdentityKind::Other,
        });
    } else {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-SECRET-KEY-1") {
                let id = age::x25519::Identity::from_str(line).map_err(|_| {
                    SourceError::BadSecretKey {
                        label: label_(),
                        line: n + 1,
                    }
                })?;
                let public = id.to_public().to_string();
                identities.push(LoadedIdentity {
                    identity: Box::new(id),
                    public: Some(public),
                    kind: IdentityKind::Other,
                });
            } else if line.starts_with("AGE-PLUGIN-") {
                let id = age::plugin::Identity::from_str(line).map_err(|_| {
                    SourceError::BadPluginIdentity {
                        label: label_(),
                        line: n + 1,
                    }
                })?;
                let name = id.plugin().to_string();
                match age::plugin::IdentityPluginV1::new(&name, &[id], callbacks.clone()) {
                    Ok(p) => identities.push(LoadedIdentity {
                        identity: Box::new(p),
                        public: None,
                        kind: IdentityKind::Plugin(name.clone()),
                    }),
                    Err(_) => {
                        return Err(SourceError::PluginMissing {
                            label: label_(),
                            plugin: name,
                        })
                    }
                }
            } else {
                return Err(SourceError::NotAnIdentityLine {
                    label: label_(),
                    line: n + 1,
                });
            }
        }
    }
    Ok(Source {
        label: label.to_string(),
        identities,
    })
}

/// Generates a new X25519 identity into `path` (0600, parent 0700), never overwriting.
/// Returns the public key.
pub fn keygen(path: &Path) -> Result<String> {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string();
    write_identity(path, secret.expose_secret(), "created")
}

/// Writes one X25519 identity line to a new key file `path` (0600, parent 0700), never
/// overwriting, with `# <verb>: <date>` and `# public key:` comments. Returns the public key.
pub fn write_identity(path: &Path, identity: &str, verb: &str) -> Result<String> {
    let id: age::x25519::Identity = identity
        .parse()
        .map_err(|_| Error::usage("not an age X25519 identity"))?;
    if path.exists() || path.is_symlink() {
        return Err(Error::refused_hint(
            format!(
                "{} already exists; envv never overwrites a key file",
                path.display()
            ),
            "its public key: `envv whoami`; write elsewhere with -o FILE",
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let public = id.to_public().to_string();
    let now = crate::format::sops::now_timestamp();
    let body = zeroize::Zeroizing::new(format!(
        "# {verb}: {now}\n# public key: {public}\n{identity}\n"
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).at(path)?;
    f.write_all(body.as_bytes()).at(path)?;
    f.sync_all().at(path)?;
    Ok(public)
}

/// The X25519 identity lines (`AGE-SECRET-KEY-1…`) of a plain key file, in file order.
/// Passphrase-protected and plugin identities are not included.
pub fn x25519_lines(path: &Path) -> Result<Vec<zeroize::Zeroizing<String>>> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).at(path)?);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .map(|l| zeroize::Zeroizing::new(l.to_string()))
        .collect())
}

/// Creates a folder (and parents) with mode 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).at(dir)
}

/// Reads the public key of "you": the first X25519 identity in lookup order, else an SSH public
/// key beside `~/.ssh/id_ed25519`.
pub fn my_public_key(keyring: &mut Keyring) -> Option<String> {
    if let Some((p, _)) = keyring
        .all_publics()
        .into_iter()
        .find(|(p, _)| p.starts_with("age1"))
    {
        return Some(p);
    }
    let h = dirs::home_dir()?;
    let f = std::fs::File::open(h.join(".ssh/id_ed25519.pub")).ok()?;
    let mut line = String::new();
    BufReader::new(f).read_line(&mut line).ok()?;
    Recipient::parse(&line).ok().map(|r| r.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_parse() {
        let id = age::x25519::Identity::generate();
        let p = id.to_public().to_string();
        assert_eq!(Recipient::parse(&p).unwrap().kind, RecipientKind::X25519);
        assert!(matches!(
            Recipient::parse("age1nope"),
            Err(RecipientError::Age(_))
        ));
        assert_eq!(
            Recipient::parse("hello"),
            Err(RecipientError::NotARecipient { private_key: false })
        );
        assert!(matches!(
            Recipient::parse("ssh-ed25519 AAAA garbage"),
            Err(RecipientError::Ssh(_))
        ));
    }

    #[test]
    fn recipient_errors_never_show_the_text() {
        let id = age::x25519::Identity::generate();
        let private = id.to_string();
        let private = private.expose_secret();
        let e = Recipient::parse(private).unwrap_err();
        assert_eq!(e, RecipientError::NotARecipient { private_key: true });
        let m = e.to_string();
        assert!(
            m.starts_with("not a recipient: expected an age public key"),
            "{m}"
        );
        assert!(m.contains("looks like a private key"), "{m}");
        assert!(
            !m.contains(&private[..20]) && !m.contains(&private[private.len() - 8..]),
            "{m}"
        );
        for text in [
            "age1qqqqhunter2secret",
            "age1hunter2secret1x",
            "ssh-ed25519 aHVudGVyMnNlY3JldA== me",
            "ssh-rsa aHVudGVyMnNlY3JldA==",
        ] {
            let m = Recipient::parse(text).unwrap_err().to_string();
            assert!(
                !m.contains("hunter2") && !m.contains("aHVudGVy"),
                "{text}: {m}"
            );
        }
    }

    /// Records what the keyring tells and asks, to check that nothing goes to the terminal.
    #[derive(Default)]
    struct Recording {
        warnings: std::sync::Mutex<Vec<KeyWarning>>,
        asked: std::sync::Mutex<Vec<String>>,
    }

    impl Prompter for Recording {
        fn display_message(&self, message: &str) {
            self.asked.lock().unwrap().push(message.into());
        }
        fn confirm(&self, message: &str, _: &str, _: Option<&str>) -> Option<bool> {
            self.asked.lock().unwrap().push(message.into());
            None
        }
        fn request_public_string(&self, description: &str) -> Option<String> {
            self.asked.lock().unwrap().push(description.into());
            None
        }
        fn request_passphrase(
            &self,
            description: &str,
        ) -> std::result::Result<age::secrecy::SecretString, NoTerminal> {
            self.asked.lock().unwrap().push(description.into());
            Err(NoTerminal)
        }
        fn warn(&self, warning: &KeyWarning) {
            self.warnings.lock().unwrap().push(warning.clone());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_a_warning_for_the_prompter() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test-key.txt");
        let id = age::x25519::Identity::generate();
        std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let rec = Arc::new(Recording::default());
        let mut ring = Keyring::new(std::slice::from_ref(&path)).with_prompter(rec.clone());
        assert_eq!(ring.all_publics().len(), 1);
        let w = rec.warnings.lock().unwrap().clone();
        assert_eq!(
            w,
            vec![KeyWarning::ReadableByOthers {
                path: path.clone(),
                mode: 0o644
            }]
        );
        assert_eq!(
            w[0].to_string(),
            format!(
                "{} is readable by other users (mode 644); run `chmod 600 {}`",
                path.display(),
                path.display()
            )
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&path), None);
    }

    #[test]
    fn a_protected_identity_without_a_terminal_says_so_in_tried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test-key.age");
        let id = age::x25519::Identity::generate();
        let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
            "test passphrase".to_string(),
        ));
        let mut out = Vec::new();
        let mut w = enc
            .wrap_output(
                age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                    .unwrap(),
            )
            .unwrap();
        w.write_all(id.to_string().expose_secret().as_bytes())
            .unwrap();
        w.finish().unwrap().finish().unwrap();
        std::fs::write(&path, &out).unwrap();
        let rec = Arc::new(Recording::default());
        let mut ring = Keyring::new(std::slice::from_ref(&path)).with_prompter(rec.clone());
        let r = Recipient::parse(&id.to_public().to_string()).unwrap();
        let meta = Metadata::new(
            vec![vec![KeyEntry {
                recipient: r.text.clone(),
                enc: r.wrap(&[1u8; 32]).unwrap(),
            }]],
            Default::default(),
        );
        assert!(ring.unwrap(&meta).unwrap().is_none());
        assert_eq!(
            rec.asked.lock().unwrap().len(),
            1,
            "asked once for the passphrase"
        );
        let tried = ring.tried().join("\n");
        assert!(
            tried.contains("no terminal to type the passphrase on"),
            "{tried}"
        );
    }

    #[test]
    fn source_errors_name_the_source_and_line_only() {
        let cb = AgeCallbacks::new(Arc::new(Silent));
        let secretish = "AGE-SECRET-KEY-1HUNTER2NOTAKEY";
        let e = parse_identity_text(
            "keys.txt",
            format!("# c\n{secretish}\n").as_bytes(),
            None,
            &cb,
        )
        .err()
        .unwrap();
        assert!(matches!(e, SourceError::BadSecretKey { line: 2, .. }));
        assert_eq!(e.to_string(), "keys.txt:2: invalid AGE-SECRET-KEY line");
        let e = parse_identity_text("$ENVV_AGE_KEY", b"hunter2\n", None, &cb)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "$ENVV_AGE_KEY:1: not an age identity line");
        let e = parse_identity_text("k", &[0xff, 0xfe], None, &cb)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "k: not a text identity file");
    }

    #[test]
    fn wrap_unwrap() {
        let id = age::x25519::Identity::generate();
        let r = Recipient::parse(&id.to_public().to_string()).unwrap();
        let armored = r.wrap(&[7u8; 32]).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(armored.ends_with("-----END AGE ENCRYPTED FILE-----\n"));
        assert!(!armored.contains('\r'));
        let k = try_unwrap(&id, &armored).unwrap();
        assert_eq!(&k[..], &[7u8; 32]);
        let other = age::x25519::Identity::generate();
        assert!(try_unwrap(&other, &armored).is_none());
    }

    #[test]
    fn fingerprints_are_what_ssh_keygen_prints() {
        // What `ssh-keygen -lf` (OpenSSH) prints for this test key.
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMWyfOOWyTN73mrdaAZmGIi4jT+fTVyEbW/bxaDbGzY1 bob@test";
        assert_eq!(
            fingerprint(ssh),
            "ssh-ed25519 SHA256:F1AfWRbntnIuvA/x4LCx3j/NYkyNauGDc94yYEtLnXw"
        );
        let age = "age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38";
        assert_eq!(fingerprint(age), age);
    }

    #[test]
    fn short_keys() {
        assert_eq!(
            short_key("age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38"),
            "age1y7hp…zh38"
        );
        assert!(same_recipient(
            "ssh-ed25519 AAAAC3 bob@laptop",
            "ssh-ed25519 AAAAC3"
        ));
    }
}
