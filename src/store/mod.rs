//! The write transaction for one environment file: lock, open, check, change, seal, save.
//!
//! Every command that changes values (`set`, `rm`, `edit`, `import`, `encrypt`, `accept`) goes
//! through [`Store::update`], so the rules hold for all of them in one place:
//!
//! 1. the file's folder is locked and stale temporary files from a killed writer are removed;
//! 2. a missing file is created only when asked, for the policy's readers (with its key groups
//!    and threshold), after the [`Gate`] confirms those readers;
//! 3. before decrypting, the file's own rule line must agree with the policy (a pushed rule line
//!    must not decide what is stored in plain text);
//! 4. the policy is read again under the lock, and a file that someone the policy no longer
//!    lists can still decrypt is refused (`envv updatekeys` rotates it first);
//! 5. after the change, the file is sealed (values encrypted, MAC computed), the [`Gate`]
//!    confirms any value the change stores in plain text, and the file is written atomically.
//!
//! The core never asks the user anything: the [`Gate`] is the command line's part.

pub mod diff;
pub mod file;
pub mod proposals;

use crate::error::{Error, Result};
use crate::format::sops::CryptRule;
use crate::keys::{Keyring, Recipient};
use crate::store::file::{EnvFile, Opened};
use crate::workspace::{Target, Workspace};

/// The confirmations a write needs from the person running envv. The command line implements
/// it with prompts, `--yes` and the local trust file.
pub trait Gate {
    /// A new file is about to be encrypted for `recipients` (none of them reads it yet).
    fn new_file(&mut self, t: &Target, recipients: &[Recipient]) -> Result<()>;
    /// The file as opened, before the change (to tell later which values became plain text);
    /// `adopted` are the `public` patterns a new file takes on from the policy.
    fn opened(&mut self, f: &EnvFile, adopted: &[String]);
    /// The sealed file, before it is written: may refuse values stored in plain text that no
    /// confirmed pattern allows.
    fn before_save(&mut self, f: &EnvFile) -> Result<()>;
    /// The file was written: remember what was confirmed.
    fn saved(&mut self);
}

/// A gate that confirms everything and remembers nothing: for writes whose readers and rule
/// the caller has already checked.
pub struct NoGate;

impl Gate for NoGate {
    fn new_file(&mut self, _: &Target, _: &[Recipient]) -> Result<()> {
        Ok(())
    }
    fn opened(&mut self, _: &EnvFile, _: &[String]) {}
    fn before_save(&mut self, _: &EnvFile) -> Result<()> {
        Ok(())
    }
    fn saved(&mut self) {}
}

/// How [`Store::update`] opens the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open {
    /// Create the file (for the policy's readers) when it does not exist.
    pub create: bool,
    /// Keep plaintext lines added by hand to an encrypted file as pending, for the change to
    /// encrypt (only `envv encrypt` asks for this).
    pub allow_pending: bool,
}

/// The environment files of a workspace, opened with one keyring.
pub struct Store<'a> {
    ws: &'a Workspace,
    keyring: Keyring,
    gate: &'a mut dyn Gate,
}

impl<'a> Store<'a> {
    /// A store writing under `ws`, unlocking with `keyring`, confirming through `gate`.
    pub fn new(ws: &'a Workspace, keyring: Keyring, gate: &'a mut dyn Gate) -> Self {
        Store { ws, keyring, gate }
    }

    /// Opens and decrypts `t` (the MAC verified unless `ignore_mac`), without writing.
    pub fn open(&mut self, t: &Target, ignore_mac: bool) -> Result<Opened> {
        open_decrypted(self.ws, &mut self.keyring, t, ignore_mac)
    }

    /// Runs `change` on `t` under the folder lock (see the module's rules), then seals and saves
    /// the file if `change` says it changed something (or the file is new). Returns what
    /// `change` returned.
    pub fn update<T>(
        &mut self,
        t: &Target,
        how: Open,
        change: impl FnOnce(&mut Opened) -> Result<(bool, T)>,
    ) -> Result<T> {
        let ws = self.ws;
        let _lock = crate::os::files::lock_for(&t.path)?;
        crate::os::files::clean_stale_temps(&t.path);
        let mut adopted = Vec::new();
        let mut f = match EnvFile::open(&t.path, &t.name) {
            Err(Error::MissingFile { .. }) if how.create => {
                let recipients = ws.recipients(t)?;
                self.gate.new_file(t, &recipients)?;
                let rule = ws.require_policy()?.policy.crypt_rule();
                adopted = rule.public_patterns();
                let mut f = Opened::encrypt_new(&t.path, &t.name, "", &recipients, rule)?;
                if let Some((groups, k)) = threshold_layout(ws, t) {
                    f.rewrap_groups(&groups, k, false)?;
                }
                f
            }
            Err(e) => return Err(e),
            Ok(f) if f.is_encrypted() => {
                // Before decrypting: under a swapped rule line the MAC may not even verify.
                f.refuse_rule_conflict(&policy_rule(ws)?)?;
                let dk = f.unlock(&mut self.keyring, || ws.readers(t))?;
                if how.allow_pending {
                    f.decrypt_allowing_pending(&dk)?
                } else {
                    f.decrypt(&dk, true)?
                }
            }
            Ok(_) => open_decrypted(ws, &mut self.keyring, t, false)?,
        };
        refuse_stale_readers(ws, t, f.file())?;
        let existed = t.path.exists();
        self.gate.opened(f.file(), &adopted);
        let (changed, out) = change(&mut f)?;
        if changed || !existed {
            f.seal()?;
            self.gate.before_save(f.file())?;
            f.save()?;
            self.gate.saved();
        }
        Ok(out)
    }
}

/// Opens and decrypts `t` (MAC verified unless `ignore_mac`).
pub fn open_decrypted(
    ws: &Workspace,
    keyring: &mut Keyring,
    t: &Target,
    ignore_mac: bool,
) -> Result<Opened> {
    let f = EnvFile::open(&t.path, &t.name)?;
    if !f.is_encrypted() {
        return Err(Error::NotEncrypted {
            file: t.name.clone(),
        });
    }
    let dk = f.unlock(keyring, || ws.readers(t))?;
    f.decrypt(&dk, !ignore_mac)
}

/// The key groups and threshold the policy gives `t`'s environment, when it has some.
pub fn threshold_layout(ws: &Workspace, t: &Target) -> Option<(Vec<Vec<Recipient>>, u8)> {
    let env = t.env.as_deref()?;
    ws.require_policy().ok()?.policy.key_groups(env)
}

/// What the policy leaves in plain text (its `public` patterns; sops's default without a policy).
pub fn policy_rule(ws: &Workspace) -> Result<CryptRule> {
    Ok(ws
        .policy()?
        .map(|p| p.policy.crypt_rule())
        .unwrap_or_default())
}

/// Refuses to add secrets to a file that someone the policy no longer names can still decrypt
/// (a member removed or expired by a hand edit or a pull): `envv updatekeys` rotates it first.
fn refuse_stale_readers(ws: &Workspace, t: &Target, f: &EnvFile) -> Result<()> {
    let (Some(meta), Some(env)) = (&f.meta(), &t.env) else {
        return Ok(());
    };
    // Read the policy again, now that the folder lock is held: a concurrent `member add`
    // writes the files and then the policy under the same lock.
    let path = ws.policy_path();
    if !path.is_file() {
        return Ok(());
    }
    let pf = crate::policy::PolicyFile::load(&path)?;
    let drift = crate::store::file::recipient_drift(meta, &pf.policy.recipients(env));
    if drift.extra.is_empty() {
        return Ok(());
    }
    let who: Vec<String> = drift
        .extra
        .iter()
        .map(|r| {
            pf.policy
                .members
                .iter()
                .find(|(_, m)| crate::keys::same_recipient(&m.key, r))
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| crate::keys::short_key(r))
        })
        .collect();
    Err(Error::StaleReaders {
        file: t.name.clone(),
        who,
    })
}
