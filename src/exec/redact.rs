//! `envv exec --redact`: the child's output with every managed value replaced.
//!
//! CI logs are read by more people than the secrets' readers, and only some CI systems mask
//! values. With `--redact` envv stays the parent: CMD's stdout and stderr are pipes that envv
//! reads, filters and writes on, each stream in its own order. The filter replaces each value
//! (plain, escaped, percent-encoded or base64) with `[redacted:KEY]`.
//!
//! Writes do not line up with values: a program may print half a value, then the rest. The
//! filter therefore holds back the shortest tail of what it has seen that could still become a
//! value (a proper prefix of some form) and writes everything before it at once, so ordinary
//! output, line by line or a prompt without a newline, passes with no delay. A held tail is
//! written as it is once nothing arrives for [`IDLE_FLUSH`] (a program that waits that long
//! in the middle of a value is not protected) and at the end of the stream.
//!
//! SIGINT, SIGTERM and SIGHUP sent to envv are forwarded to CMD; envv's exit code is CMD's, or
//! 128+N when a signal N ended it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aho_corasick::{AhoCorasick, MatchKind};
use zeroize::Zeroizing;

use crate::checks::scan::{forms, Value};
use crate::exec::LaunchError;

/// Values shorter than this are not redacted (they would garble ordinary output).
pub const MIN_REDACT_LENGTH: usize = 4;
/// How long a held tail waits for the rest of a value.
pub const IDLE_FLUSH: Duration = Duration::from_millis(300);

/// Every form of every value, for replacing.
pub struct Redaction {
    ac: AhoCorasick,
    /// Per pattern: `[redacted:KEY]`.
    replacement: Vec<Vec<u8>>,
    /// The patterns (in byte order, to tell whether a tail could grow into one).
    sorted: Vec<Zeroizing<Vec<u8>>>,
    longest: usize,
}

impl Redaction {
    /// `None` when no value is long enough to redact.
    pub fn new(values: &[Value]) -> Option<Redaction> {
        let mut entries: Vec<(Zeroizing<Vec<u8>>, &str)> = Vec::new();
        for v in values {
            if v.value.len() < MIN_REDACT_LENGTH {
                continue;
            }
            for (_, form) in forms(v.value.expose()) {
                entries.push((form, &v.key));
            }
        }
        // One pattern per form, in byte order (the first key holding it names it).
        entries.sort_by(|a, b| a.0[..].cmp(&b.0[..]));
        entries.dedup_by(|a, b| a.0[..] == b.0[..]);
        if entries.is_empty() {
            return None;
        }
        let replacement = entries
            .iter()
            .map(|(_, k)| format!("[redacted:{k}]").into_bytes())
            .collect();
        let sorted: Vec<Zeroizing<Vec<u8>>> = entries.into_iter().map(|(f, _)| f).collect();
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(sorted.iter().map(|p| &p[..]))
            .ok()?;
        let longest = sorted.iter().map(|p| p.len()).max().unwrap_or(1);
        Some(Redaction {
            ac,
            replacement,
            sorted,
            longest,
        })
    }

    /// Whether `tail` is a proper prefix of some pattern (more bytes could make it one).
    fn could_grow(&self, tail: &[u8]) -> bool {
        let i = self.sorted.partition_point(|p| p.as_slice() < tail);
        self.sorted[i..]
            .iter()
            .take(2)
            .any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// Start of the longest suffix of `buf` that could still grow into a pattern.
    fn hold_point(&self, buf: &[u8]) -> usize {
        let max = (self.longest - 1).min(buf.len());
        for k in (1..=max).rev() {
            if self.could_grow(&buf[buf.len() - k..]) {
                return buf.len() - k;
            }
        }
        buf.len()
    }
}

/// The filter state of one output stream.
pub struct Filter<'a> {
    r: &'a Redaction,
    held: Zeroizing<Vec<u8>>,
}

impl<'a> Filter<'a> {
    /// A filter for one stream that masks the values of `r`, with nothing held back yet.
    pub fn new(r: &'a Redaction) -> Self {
        Filter {
            r,
            held: Zeroizing::new(Vec::new()),
        }
    }

    /// Takes more output; appends to `out` what can be written now.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.held.extend_from_slice(data);
        let buf = std::mem::take(&mut *self.held);
        let buf = Zeroizing::new(buf);
        let hold = self.r.hold_point(&buf);
        let mut done = 0;
        for m in self.r.ac.find_iter(&buf[..]) {
            if m.start() >= hold {
                break;
            }
            out.extend_from_slice(&buf[done..m.start()]);
            out.extend_from_slice(&self.r.replacement[m.pattern().as_usize()]);
            done = m.end();
        }
        let cut = hold.max(done);
        out.extend_from_slice(&buf[done..cut]);
        self.held.extend_from_slice(&buf[cut..]);
    }

    /// Whether a tail is held back.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Writes what is held (complete values in it are still replaced).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let buf = Zeroizing::new(std::mem::take(&mut *self.held));
        let mut done = 0;
        for m in self.r.ac.find_iter(&buf[..]) {
            out.extend_from_slice(&buf[done..m.start()]);
            out.extend_from_slice(&self.r.replacement[m.pattern().as_usize()]);
            done = m.end();
        }
        out.extend_from_slice(&buf[done..]);
    }
}

/// Copies `input` to `output` through a [`Filter`] until `input` ends.
fn pump(r: &Redaction, mut input: impl Read + Send + 'static, output: &mut (dyn Write + Send)) {
    let (tx, rx) = mpsc::sync_channel::<Zeroizing<Vec<u8>>>(16);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Zeroizing::new(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        zeroize::Zeroize::zeroize(&mut buf);
    });
    let mut filter = Filter::new(r);
    let mut out = Zeroizing::new(Vec::new());
    loop {
        let wait = if filter.is_holding() {
            IDLE_FLUSH
        } else {
            Duration::from_secs(3600)
        };
        let ended = match rx.recv_timeout(wait) {
            Ok(chunk) => {
                filter.push(&chunk, &mut out);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                filter.flush(&mut out);
                false
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                filter.flush(&mut out);
                true
            }
        };
        if !out.is_empty() {
            let ok = output.write_all(&out).and_then(|_| output.flush()).is_ok();
            out.clear();
            if !ok {
                // Our output is gone (a closed pipe): stop reading, so CMD sees its own
                // output pipe close, as it would without envv.
                break;
            }
        }
        if ended {
            break;
        }
    }
    drop(rx);
    let _ = reader.join();
}

/// Runs `cmd` with its stdout and stderr filtered into `stdout` and `stderr` (passed through
/// untouched when there is nothing to redact); returns its exit code (128+N for signal N).
pub fn run(
    mut cmd: Command,
    name: &str,
    r: Option<&Redaction>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> std::result::Result<i32, LaunchError> {
    if r.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| {
        let cmd = name.to_string();
        match e.kind() {
            std::io::ErrorKind::NotFound => LaunchError::NotFound { cmd },
            std::io::ErrorKind::PermissionDenied => LaunchError::NotExecutable { cmd },
            _ => LaunchError::Other { cmd, source: e },
        }
    })?;
    let forwarder = forward_signals(child.id());
    if let (Some(r), Some(out), Some(err)) = (r, child.stdout.take(), child.stderr.take()) {
        std::thread::scope(|s| {
            s.spawn(move || pump(r, out, stdout));
            s.spawn(move || pump(r, err, stderr));
        });
    }
    let status = child.wait();
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    let status = status.map_err(|e| LaunchError::Other {
        cmd: name.to_string(),
        source: e,
    })?;
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

type Forwarder = (signal_hook::iterator::Handle, std::thread::JoinHandle<()>);

/// Forwards SIGINT, SIGTERM and SIGHUP received by envv to `pid` until the handle is closed.
#[cfg(unix)]
fn forward_signals(pid: u32) -> Option<Forwarder> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()?;
    let handle = signals.handle();
    let target = rustix::process::Pid::from_raw(pid as i32)?;
    // Ctrl-C on a terminal already reaches CMD (same foreground process group): forwarding
    // it too would deliver it twice.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let thread = std::thread::spawn(move || {
        for sig in signals.forever() {
            let sig = match sig {
                SIGINT if tty => continue,
                SIGINT => rustix::process::Signal::INT,
                SIGTERM => rustix::process::Signal::TERM,
                _ => rustix::process::Signal::HUP,
            };
            let _ = rustix::process::kill_process(target, sig);
        }
    });
    Some((handle, thread))
}

#[cfg(not(unix))]
fn forward_signals(_pid: u32) -> Option<Forwarder> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn redaction() -> Redaction {
        Redaction::new(&[
            Value {
                key: "TOKEN".into(),
                env: "default".into(),
                value: Secret::from_str("tok-123456789"),
            },
            Value {
                key: "LONGER".into(),
                env: "default".into(),
                value: Secret::from_str("tok-123456789-and-more"),
            },
        ])
        .unwrap()
    }

    fn through(r: &Redaction, parts: &[&str]) -> (String, Vec<String>) {
        let mut f = Filter::new(r);
        let mut all = Vec::new();
        let mut each = Vec::new();
        for p in parts {
            let mut out = Vec::new();
            f.push(p.as_bytes(), &mut out);
            each.push(String::from_utf8(out.clone()).unwrap());
            all.extend(out);
        }
        f.flush(&mut all);
        (String::from_utf8(all).unwrap(), each)
    }

    #[test]
    fn split_values_are_caught_and_lines_pass_at_once() {
        let r = redaction();
        let (all, each) = through(&r, &["line one\nvalue: tok-1234", "56789 ok\n"]);
        assert_eq!(all, "line one\nvalue: [redacted:TOKEN] ok\n");
        assert_eq!(each[0], "line one\nvalue: ");
        let (all, _) = through(&r, &["x tok-123456789", "-and-more y"]);
        assert_eq!(all, "x [redacted:LONGER] y");
        let (all, each) = through(&r, &["prompt> "]);
        assert_eq!((all.as_str(), each[0].as_str()), ("prompt> ", "prompt> "));
        let (all, _) = through(&r, &["t", "o", "k", "-123", "456789", "\n"]);
        assert_eq!(all, "[redacted:TOKEN]\n");
    }

    #[test]
    fn escaped_forms_are_replaced() {
        let r = redaction();
        let (all, _) = through(&r, &["{\"a\":\"tok-123456789\"} dG9rLTEyMzQ1Njc4OQ=="]);
        assert!(!all.contains("tok-1"), "{all}");
        assert!(!all.contains("dG9rLTEyMzQ1Njc4OQ"), "{all}");
    }
}
