//! `envv completions` and `envv man`: shell completions and a man page, generated from the clap
//! definitions so they never drift from the real flags.

use super::{CliError, CliResult};
use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Ctx};

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  envv completions bash > ~/.local/share/bash-completion/completions/envv
  envv completions zsh > \"${fpath[1]}/_envv\"
  envv completions fish > ~/.config/fish/completions/envv.fish";

/// Print shell completions.
#[derive(Args, Debug)]
#[command(after_long_help = COMPLETIONS_EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn completions(_ctx: &Ctx, a: CompletionsArgs) -> CliResult<i32> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "envv", &mut out);
    out.flush()?;
    Ok(0)
}

const MAN_EXAMPLES: &str = "\
Examples:
  envv man | man -l -
  envv man exec > envv-exec.1";

/// Print the man page (roff), for envv or one of its commands.
#[derive(Args, Debug)]
#[command(after_long_help = MAN_EXAMPLES)]
pub struct ManArgs {
    /// A command to document instead of envv itself.
    pub command: Option<String>,
}

pub fn man(_ctx: &Ctx, a: ManArgs) -> CliResult<i32> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &a.command {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name).cloned().ok_or_else(|| {
                CliError::usage(format!("no command \"{name}\"")).hint("`envv --help` lists them")
            })?;
            let full: &'static str = Box::leak(format!("envv-{}", sub.get_name()).into_boxed_str());
            sub.name(full)
        }
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(0)
}
