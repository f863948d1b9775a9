//! `envv edit`: the decrypted file in your editor, re-encrypted when you save.

use super::{CliError, CliResult};
use std::cell::Cell;

use clap::Args;

use super::Ctx;
use crate::edit::{self, EditorExit, Scratch};
use crate::error::Error;
use crate::format::dotenv;

const EDIT_EXAMPLES: &str = "\
Examples:
  envv edit
  EDITOR=\"code --wait\" envv edit -e production";

/// Edit the decrypted file in $VISUAL / $EDITOR; only the values you change are re-encrypted.
///
/// The plaintext goes to a private temp file (0600 in a 0700 folder, on /dev/shm when it
/// exists) that is removed on success, error, Ctrl-C, SIGTERM and SIGQUIT; after a SIGKILL the
/// next `envv edit` or `envv status` removes it. The edited text is parsed as
/// dotenv (quotes, escapes, comments) before anything is written: a bad line reopens the editor
/// on a terminal, and otherwise aborts naming the line, leaving the file unchanged. Values you
/// did not touch keep their ciphertext, so `git diff` shows only your changes. A missing file
/// is created.
#[derive(Args, Debug)]
#[command(after_long_help = EDIT_EXAMPLES)]
pub struct EditArgs {}

pub fn edit(ctx: &Ctx, _a: EditArgs) -> CliResult<i32> {
    report_swept();
    let t = ctx.target()?;
    let stop = edit::catch_signals()?;
    let editor = edit::editor_command()?;
    let stopped: Cell<Option<i32>> = Cell::new(None);
    let label = format!("{} (edited)", t.name);
    let existed = t.path.exists();
    let left_empty = Cell::new(false);
    let result = super::values::update(ctx, &t, true, |f| {
        let scratch = {
            let text = crate::render::file(f, crate::render::FileMode::Edit);
            for w in &text.warnings {
                eprintln!("warning: {w}");
            }
            Scratch::create(&t.name, &text.bytes)?
        };
        loop {
            match edit::run_editor(&editor, &scratch.path, &stop)? {
                EditorExit::Saved => {}
                EditorExit::Failed(code) => {
                    return Err(Error::CheckFailed(format!(
                        "the editor exited with status {code}: nothing changed in {}",
                        t.name
                    )));
                }
                EditorExit::Killed(sig) => {
                    return Err(Error::CheckFailed(format!(
                        "the editor was killed by signal {sig}: nothing changed in {}",
                        t.name
                    )));
                }
                EditorExit::Stopped(sig) => {
                    stopped.set(Some(sig));
                    return Err(Error::CheckFailed(format!(
                        "stopped by signal {sig}: nothing changed in {}; the temp file is removed",
                        t.name
                    )));
                }
            }
            let bytes = scratch.read()?;
            let parsed = dotenv::decode_utf8(&label, &bytes)
                .and_then(|text| dotenv::parse_plain(&label, text))
                .and_then(|entries| {
                    crate::store::file::refuse_duplicate_entries(&label, &entries).map(|()| entries)
                });
            match parsed {
                Ok(entries) => {
                    let changed = f.apply_edit(entries);
                    if !existed && f.file().lines().is_empty() {
                        // Nothing typed into a new file: do not create an empty one.
                        left_empty.set(true);
                        return Err(Error::CheckFailed(String::new()));
                    }
                    return Ok((changed, if changed { Some(f.pending()) } else { None }));
                }
                Err(e) if super::stdin_is_tty() && ask_reopen(&e) => continue,
                Err(e) => {
                    return Err(Error::refused_hint(
                        format!("{e}\n  nothing changed in {}", t.name),
                        "fix that line and run `envv edit` again",
                    ));
                }
            }
        }
    });
    drop(stop);
    match result {
        Ok(Some(n)) => {
            eprintln!(
                "saved {}: {n} value(s)/comment(s) re-encrypted, the rest unchanged",
                t.name
            );
            Ok(0)
        }
        Ok(None) => {
            eprintln!("no changes to {}", t.name);
            Ok(0)
        }
        Err(_) if left_empty.get() => {
            eprintln!("nothing entered: {} not created", t.name);
            Ok(0)
        }
        Err(e) => {
            if let Some(sig) = stopped.get() {
                CliError::from(e).print();
                return Ok(128 + sig);
            }
            Err(e.into())
        }
    }
}

/// Removes scratch folders of killed `edit`s and says so (on stderr).
pub(super) fn report_swept() {
    for s in edit::sweep_stale() {
        eprintln!(
            "removed {}: plaintext left by `envv edit` (pid {}), which was killed before it could clean up",
            s.dir.display(),
            s.pid
        );
    }
}

/// Shows the parse error and asks whether to reopen the editor (default yes).
fn ask_reopen(e: &Error) -> bool {
    CliError::from(e).print();
    eprint!("reopen the editor to fix it? [Y/n] ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    let a = answer.trim().to_ascii_lowercase();
    a.is_empty() || a == "y" || a == "yes"
}
