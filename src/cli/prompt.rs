//! The terminal side of [`crate::keys::Prompter`]: plugin messages and warnings on stderr,
//! questions on stdin when it is a terminal, passphrases on the controlling terminal.

use crate::keys::{KeyWarning, NoTerminal, Prompter};

/// Prompts on the terminal when there is one, declines otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Prompter for Terminal {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return None;
        }
        eprint!("{message} [{yes}/{}] ", no.unwrap_or("no"));
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(line.trim().eq_ignore_ascii_case(yes) || line.trim().eq_ignore_ascii_case("y"))
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return None;
        }
        eprint!("{description} ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    fn request_passphrase(
        &self,
        description: &str,
    ) -> Result<age::secrecy::SecretString, NoTerminal> {
        // rpassword asks on /dev/tty; without a controlling terminal it fails at once (no
        // hang), and the "cannot decrypt" error then says why.
        rpassword::prompt_password(format!("{description}: "))
            .map(age::secrecy::SecretString::from)
            .map_err(|_| NoTerminal)
    }

    fn warn(&self, warning: &KeyWarning) {
        eprintln!("warning: {warning}");
    }
}
