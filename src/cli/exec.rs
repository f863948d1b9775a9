//! `envv exec` and `envv export`: secrets into a process, or into CI in the format it reads.

use super::{CliError, CliResult};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::Error;
use crate::exec::{self, LoadOptions, Var};
use crate::render;

const EXEC_EXAMPLES: &str = "\
Examples:
  envv exec -- npm start
  envv exec -e production --only DATABASE_URL -- ./migrate.sh
  envv exec --override -- printenv PORT
  envv exec --redact -- npm test        # values in the output become [redacted:KEY]";

/// Run a command with the decrypted variables in its environment.
///
/// Loads `.env`, then the environment's file (`.env.<env>`), then `.env.local`, then
/// `.env.<env>.local` (each if present; a later file wins), decrypts in memory and, on Unix,
/// replaces envv with CMD: CMD keeps the pid, receives signals directly and its exit code is
/// envv's. Variables already set in the environment win unless --override. Values are literal
/// unless --expand (or ENVV_EXPAND=1 in your environment; `expand:` in .sops.yaml is ignored).
/// A .local file that git tracks is not loaded (warned about). With -f FILE only that file is
/// loaded.
///
/// Exit codes: CMD's own; 127 when CMD is not found, 126 when it cannot be executed.
#[derive(Args, Debug)]
#[command(after_long_help = EXEC_EXAMPLES)]
pub struct ExecArgs {
    /// Let file values replace variables already set in the environment.
    #[arg(long = "override")]
    pub override_existing: bool,
    /// Inject only these keys (comma separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "KEY,...")]
    pub only: Vec<String>,
    /// Expand `$VAR` and `${VAR}` in values (loaded values first, then the environment).
    #[arg(long, env = "ENVV_EXPAND", value_parser = clap::builder::BoolishValueParser::new())]
    pub expand: bool,
    /// Skip the MAC check (recovery only).
    #[arg(long)]
    pub ignore_mac: bool,
    /// Stay the parent and replace every secret value (plain, escaped, percent-encoded or
    /// base64) in CMD's stdout and stderr with [redacted:KEY]; signals are forwarded.
    #[arg(long)]
    pub redact: bool,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<OsString>,
}

fn is_set(key: &str) -> bool {
    std::env::var_os(key).is_some()
}

/// Loads the merged variables for `-e`/`-f`.
fn load(ctx: &Ctx, expand: bool, ignore_mac: bool) -> crate::Result<Vec<Var>> {
    let mut layers = Vec::new();
    if ctx.files.len() > 1 {
        for f in &ctx.files {
            layers.extend(exec::layers(&ctx.ws, ctx.env.as_deref(), Some(f))?);
        }
    } else {
        layers = exec::layers(&ctx.ws, ctx.env.as_deref(), ctx.file.as_deref())?;
    }
    if ctx.file.is_none() {
        if let Some(e) = ctx.env.as_deref() {
            let t = ctx.ws.target(Some(e), None)?;
            if !t.path.is_file() {
                eprintln!("warning: {} (environment {e}) does not exist: `envv set -e {e} KEY` creates it", t.name);
            }
        }
    }
    for name in exec::drop_tracked_locals(&ctx.ws.root, &mut layers) {
        eprintln!("warning: not loading {name}: git tracks it, so it is not a personal override but text from whoever committed it; `git rm --cached {name}` if it is yours");
    }
    // Expansion is the caller's choice: a committed policy must not splice values into text.
    if ctx.ws.policy()?.is_some_and(|p| p.policy.expand) && !expand {
        eprintln!("warning: ignoring `expand: true` in {}: expansion is chosen by whoever runs envv (--expand or ENVV_EXPAND=1)", crate::policy::POLICY_FILE);
    }
    let mut ring = ctx.keyring();
    let readers = |l: &exec::Layer| match (&l.env, ctx.ws.policy()) {
        (Some(e), Ok(Some(p))) => p.policy.reader_names(e),
        _ => Vec::new(),
    };
    let loaded = exec::load(
        &layers,
        &mut ring,
        LoadOptions { expand, ignore_mac },
        readers,
        |k: &str| std::env::var_os(k),
    )?;
    for name in loaded.skipped {
        eprintln!("note: skipped {name}: you are not one of its readers");
    }
    for w in loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded.vars)
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> CliResult<i32> {
    let vars = load(ctx, a.expand, a.ignore_mac)?;
    let redaction = a.redact.then(|| super::scan::redaction(&vars));
    let vars = exec::select(vars, &a.only, is_set)?;
    let vars = exec::inject(vars, a.override_existing, is_set);
    let (cmd, args) = a.cmd.split_first().expect("clap requires CMD");
    let cmd = cmd.to_string_lossy().into_owned();
    let launched = match redaction {
        Some(r) => crate::exec::redact::run(
            exec::command(&cmd, args, &vars),
            &cmd,
            r.as_ref(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        None => exec::replace_process(&cmd, args, &vars),
    };
    match launched {
        Ok(code) => Ok(code),
        Err(e) => {
            let err = CliError {
                kind: super::Kind::Launch(e.exit_code()),
                message: format!("envv exec: {e}"),
                hints: Vec::new(),
            };
            Err(match e {
                exec::LaunchError::NotFound { .. } => {
                    err.hint("check the spelling, or that it is installed and on PATH")
                }
                exec::LaunchError::NotExecutable { .. } => err.hint(format!(
                    "`chmod +x {cmd}`, or run it through its interpreter (`envv exec -- sh {cmd}`)"
                )),
                exec::LaunchError::Other { .. } => err,
            })
        }
    }
}

/// Output formats of `envv export`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// KEY=value lines, spelled so dotenv parsers read the values literally (a warning names
    /// any value no spelling carries exactly; json is always exact).
    Dotenv,
    /// `export KEY='value'` lines for `eval`.
    Shell,
    /// One JSON object.
    Json,
    /// Appends to $GITHUB_ENV (multi-line safe) and prints `::add-mask::` for every secret line.
    Github,
    /// `docker run --env-file` lines (values with line breaks are refused).
    Docker,
    /// A Kubernetes v1 Secret manifest (needs --name).
    K8s,
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  eval \"$(envv export --format shell)\"
  envv export -e production --format github          # in a GitHub Actions step
  envv export -e production --format k8s --name app | kubectl apply -f -";

/// Print the decrypted variables for CI, containers and shells.
///
/// Uses the same files and order as `envv exec` (the environment's file wins over `.env`).
/// `github` writes to the file named by $GITHUB_ENV with a random heredoc delimiter and prints
/// `::add-mask::` lines for every line of every secret value, so later steps see the variables
/// and the log hides them.
#[derive(Args, Debug)]
#[command(after_long_help = EXPORT_EXAMPLES)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "dotenv")]
    pub format: Format,
    /// Name of the Kubernetes Secret (k8s format).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of the Kubernetes Secret (k8s format).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Export only these keys (comma separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "KEY,...")]
    pub only: Vec<String>,
    /// Expand `$VAR` and `${VAR}` in values.
    #[arg(long, env = "ENVV_EXPAND", value_parser = clap::builder::BoolishValueParser::new())]
    pub expand: bool,
    /// Write to this file (mode 0600) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> CliResult<i32> {
    if a.format == Format::K8s {
        render::check_k8s_name(a.name.as_deref())?;
    }
    let github_env = if a.format == Format::Github {
        Some(std::env::var_os("GITHUB_ENV").filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::usage("GITHUB_ENV is not set: --format github runs inside a GitHub Actions step (elsewhere use --format dotenv or shell)")
        })?)
    } else {
        None
    };
    let vars = load(ctx, a.expand, false)?;
    let vars = exec::select(vars, &a.only, |_| false)?;
    let out = match a.format {
        Format::Dotenv => {
            let r = render::dotenv(&vars);
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            r.bytes
        }
        Format::Shell => render::shell(&vars),
        Format::Json => render::json(&vars)?,
        Format::Docker => render::docker(&vars)?,
        Format::K8s => render::k8s(
            &vars,
            a.name.as_deref().unwrap_or_default(),
            a.namespace.as_deref(),
        ),
        Format::Github => {
            let path = PathBuf::from(github_env.expect("checked above"));
            let (masks, entries) = render::github(&vars);
            let mut so = std::io::stdout().lock();
            so.write_all(&masks)?;
            so.flush()?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(&entries).map_err(|e| Error::io(&path, e))?;
            eprintln!("exported {} variable(s) to $GITHUB_ENV", vars.len());
            return Ok(0);
        }
    };
    super::write_plaintext(a.output.as_deref(), &out)?;
    Ok(0)
}
