//! The command line: clap definitions, dispatch, and how errors are shown.
//!
//! One file per command group; each loads what it needs, calls the core, and prints. Data goes
//! to stdout, messages to stderr. Exit codes: 0 ok, 1 a check failed / a key is missing / no
//! access, 2 usage or input error; `exec` returns the child's own code.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::keys::Keyring;
use crate::workspace::{Target, Workspace};
pub use error::{CliError, CliResult, Hint, Kind};

mod access;
mod confirm;
mod crypt;
mod docs;
mod edit;
mod env;
mod error;
mod exec;
mod git;
mod health;
mod import;
mod init;
mod keys;
mod member;
mod prompt;
mod propose;
mod public;
mod scan;
mod updatekeys;
mod values;

const EXAMPLES: &str = "\
Examples:
  envv keygen                         # your key, once per machine
  envv init                           # .sops.yaml with you as first member
  envv set DATABASE_URL               # prompts for the value (hidden)
  envv get DATABASE_URL
  envv exec -- npm start              # run with the secrets in the environment
  envv set -e production STRIPE_KEY   # another environment (.env.production)";

/// Encrypted .env files in git, for exactly the people .sops.yaml names (sops-compatible).
#[derive(Parser, Debug)]
#[command(name = "envv", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// Environment to use (its file comes from .sops.yaml; `production` → .env.production).
    #[arg(
        short = 'e',
        long = "env",
        global = true,
        env = "ENVV_ENV",
        value_name = "ENV"
    )]
    pub env: Option<String>,

    /// Dotenv file to use instead of an environment's file (`exec` and `export` take several,
    /// loaded in order, later wins).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Vec<PathBuf>,

    /// Age, SSH or passphrase-protected identity file to decrypt with (repeatable; tried first).
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE")]
    pub identity: Vec<PathBuf>,

    /// Give the data key to readers you have not confirmed yet, and store in plain text what
    /// `public` patterns you have not confirmed yet match (both listed first), without asking.
    #[arg(short = 'y', long = "yes", global = true)]
    pub yes: bool,
    /// Let a re-wrap or rotation (member add/rm, env readers, updatekeys, rotate) replace a
    /// file's key groups by one group that any single reader opens (lowers its threshold).
    #[arg(long, global = true)]
    pub flatten: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// All commands.
///
/// Each variant is documented by its arguments type: clap takes a variant's doc comment as the
/// command's help and would replace the longer help written on that type.
#[allow(missing_docs)]
#[derive(Subcommand, Debug)]
pub enum Command {
    Keygen(keys::KeygenArgs),
    Whoami(keys::WhoamiArgs),
    Recover(keys::RecoverArgs),
    Init(init::InitArgs),
    Set(values::SetArgs),
    Get(values::GetArgs),
    Rm(values::RmArgs),
    Ls(values::LsArgs),
    Import(import::ImportArgs),
    Encrypt(crypt::EncryptArgs),
    Decrypt(crypt::DecryptArgs),
    Exec(exec::ExecArgs),
    Export(exec::ExportArgs),
    Edit(edit::EditArgs),
    Propose(propose::ProposeArgs),
    Accept(propose::AcceptArgs),
    Reject(propose::RejectArgs),
    Completions(docs::CompletionsArgs),
    Man(docs::ManArgs),
    Member(member::MemberArgs),
    Join(member::JoinArgs),
    Updatekeys(updatekeys::UpdatekeysArgs),
    Rotate(updatekeys::RotateArgs),
    Env(env::EnvArgs),
    Group(env::GroupArgs),
    Hook(git::HookArgs),
    Git(git::GitArgs),
    MergeDriver(git::MergeDriverArgs),
    Log(git::LogArgs),
    Access(access::AccessArgs),
    Check(health::CheckArgs),
    Diff(health::DiffArgs),
    Status(health::StatusArgs),
    Scan(scan::ScanArgs),
}

/// What every command gets: the workspace and the global options.
pub struct Ctx {
    /// The repository the command runs in (its root, policy and paths).
    pub ws: Workspace,
    /// `-e`/`--env` (or `$ENVV_ENV`); `None` when not given or empty.
    pub env: Option<String>,
    /// The first `-f` given; `None` when there is none.
    pub file: Option<PathBuf>,
    /// Every `-f` given, in order (only `exec` and `export` accept more than one).
    pub files: Vec<PathBuf>,
    /// Every `-i` identity file given, in order; they are tried before the default ones.
    pub identities: Vec<PathBuf>,
    /// `--yes`: readers not confirmed yet are confirmed without asking.
    pub yes: bool,
    /// `--flatten`: key groups may be replaced by one group.
    pub flatten: bool,
}

impl Ctx {
    /// The file selected by `-e`/`-f` (or the default environment).
    pub fn target(&self) -> crate::Result<Target> {
        self.ws.target(self.env.as_deref(), self.file.as_deref())
    }

    /// Starts a membership change (locks, policy) with `--flatten` applied.
    pub fn transaction(&self) -> crate::Result<crate::policy::membership::Transaction> {
        let mut s = crate::policy::membership::Transaction::begin(&self.ws.root)?;
        s.flatten = self.flatten;
        Ok(s)
    }

    /// A keyring with `--identity` files first.
    pub fn keyring(&self) -> Keyring {
        Keyring::new(&self.identities)
    }
}

/// The headings of `envv --help`, each with its commands in the order shown. Every command is
/// under exactly one heading (a test checks this).
pub const COMMAND_HEADINGS: &[(&str, &[&str])] = &[
    (
        "Secrets",
        &[
            "init",
            "set",
            "get",
            "rm",
            "ls",
            "edit",
            "import",
            "encrypt",
            "decrypt",
            "rotate",
            "updatekeys",
            "propose",
            "accept",
            "reject",
        ],
    ),
    ("Running", &["exec", "export"]),
    (
        "People",
        &[
            "keygen", "whoami", "recover", "member", "join", "group", "env", "access",
        ],
    ),
    ("Git", &["hook", "git", "merge-driver", "log"]),
    ("Health", &["status", "check", "diff", "scan"]),
    ("Documentation", &["completions", "man", "help"]),
];

/// The `help` command clap adds, as its listing shows it.
const HELP_ABOUT: &str = "Print this message or the help of the given subcommand(s)";

/// The command line with `envv --help` listing the commands under [`COMMAND_HEADINGS`].
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let listing = command_listing(&cmd);
    cmd.help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}Options:\n{{options}}{{after-help}}"
    ))
}

/// The command listing of `envv --help`: one block per heading, each command's summary
/// wrapped at word boundaries to 100 columns.
fn command_listing(cmd: &clap::Command) -> String {
    const WIDTH: usize = 100;
    let name_width = COMMAND_HEADINGS
        .iter()
        .flat_map(|(_, names)| names.iter().map(|n| n.len()))
        .max()
        .unwrap_or(0);
    let indent = 2 + name_width + 2;
    let mut out = String::new();
    for (heading, names) in COMMAND_HEADINGS {
        out.push_str(heading);
        out.push_str(":\n");
        for name in *names {
            let about = match cmd.find_subcommand(name) {
                Some(sub) => sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
                None => HELP_ABOUT.to_string(),
            };
            let mut line = format!("  {name:<name_width$}  ");
            for word in about.split_whitespace() {
                if line.len() > indent && line.len() + 1 + word.len() > WIDTH {
                    out.push_str(line.trim_end());
                    out.push('\n');
                    line = " ".repeat(indent);
                } else if line.len() > indent {
                    line.push(' ');
                }
                line.push_str(word);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Runs envv with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let mut matches = command().get_matches();
    match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => run(cli),
        Err(e) => e.format(&mut command()).exit(),
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            e.print();
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> CliResult<i32> {
    // First, before any identity is read or value decrypted: no core dumps.
    crate::os::coredump::forbid();
    crate::keys::set_prompter(std::sync::Arc::new(prompt::Terminal));
    let ws = Workspace::discover()?;
    if cli.file.len() > 1 && !matches!(cli.command, Command::Exec(_) | Command::Export(_)) {
        return Err(CliError::usage(
            "-f/--file may be given once for this command (exec and export take several)",
        ));
    }
    let ctx = Ctx {
        ws,
        env: cli.env.filter(|e| !e.is_empty()),
        file: cli.file.first().cloned(),
        files: cli.file,
        identities: cli.identity,
        yes: cli.yes,
        flatten: cli.flatten,
    };
    match cli.command {
        Command::Keygen(a) => keys::keygen(&ctx, a),
        Command::Whoami(a) => keys::whoami(&ctx, a),
        Command::Recover(a) => keys::recover(&ctx, a),
        Command::Init(a) => init::run(ctx, a),
        Command::Set(a) => values::set(&ctx, a),
        Command::Get(a) => values::get(&ctx, a),
        Command::Rm(a) => values::rm(&ctx, a),
        Command::Ls(a) => values::ls(&ctx, a),
        Command::Import(a) => import::import(&ctx, a),
        Command::Encrypt(a) => crypt::encrypt(&ctx, a),
        Command::Decrypt(a) => crypt::decrypt(&ctx, a),
        Command::Exec(a) => exec::exec(&ctx, a),
        Command::Export(a) => exec::export(&ctx, a),
        Command::Edit(a) => edit::edit(&ctx, a),
        Command::Propose(a) => propose::propose(&ctx, a),
        Command::Accept(a) => propose::accept(&ctx, a),
        Command::Reject(a) => propose::reject(&ctx, a),
        Command::Completions(a) => docs::completions(&ctx, a),
        Command::Man(a) => docs::man(&ctx, a),
        Command::Member(a) => member::run(&ctx, a),
        Command::Join(a) => member::join(&ctx, a),
        Command::Updatekeys(a) => updatekeys::updatekeys(&ctx, a),
        Command::Rotate(a) => updatekeys::rotate(&ctx, a),
        Command::Env(a) => env::env(&ctx, a),
        Command::Group(a) => env::group(&ctx, a),
        Command::Hook(a) => git::hook_cmd(&ctx, a),
        Command::Git(a) => git::git_cmd(&ctx, a),
        Command::MergeDriver(a) => git::merge_driver(&ctx, a),
        Command::Log(a) => git::log(&ctx, a),
        Command::Access(a) => access::access(&ctx, a),
        Command::Check(a) => health::check(&ctx, a),
        Command::Diff(a) => health::diff(&ctx, a),
        Command::Status(a) => health::status(&ctx, a),
        Command::Scan(a) => scan::scan(&ctx, a),
    }
}

/// Writes plaintext output to `output` (a 0600 file, with a reminder) or to stdout.
pub(crate) fn write_plaintext(output: Option<&std::path::Path>, bytes: &[u8]) -> CliResult<()> {
    use std::io::Write;
    match output {
        Some(p) => {
            crate::os::files::write_private(p, bytes)?;
            eprintln!("wrote {} (mode 0600): delete it when done", p.display());
        }
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(bytes)?;
            so.flush()?;
        }
    }
    Ok(())
}

/// Whether stdin is an interactive terminal.
pub fn stdin_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
        command().debug_assert();
    }
}
