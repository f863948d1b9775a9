//! Stand-ins for the regular expressions of `sops_*_regex=` rule lines, shared by the targets
//! that read metadata.
//!
//! Compiling an arbitrary pattern is the regex crate's work (fuzzed upstream): about 1 ms per
//! input under AddressSanitizer, 20 ms for a pattern over envv's bound. With the fuzzed
//! patterns, mutations of a seed's rule line were most of the run time and steered the fuzzer
//! into the regex compiler. Each value is replaced by one of a few fixed patterns, chosen by
//! its length; `sops::rule_regex` compiles each of them once per process.

use std::borrow::Cow;

/// `data` with the value of every `sops_*_regex=` line replaced by one of `patterns`. Trailing
/// CRs stay, so the line ending cases are still fuzzed.
pub fn fixed<'a>(data: &'a [u8], patterns: &[&str]) -> Cow<'a, [u8]> {
    // `str::contains` is the standard library's (not instrumented): a byte loop here would be
    // traced comparison by comparison.
    let Ok(text) = std::str::from_utf8(data) else {
        return Cow::Borrowed(data);
    };
    if !text.contains("_regex=") {
        return Cow::Borrowed(data);
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match line.split_once('=') {
            Some((key, value)) if key.starts_with("sops_") && key.ends_with("_regex") => {
                out.push_str(key);
                out.push('=');
                let kept = value.trim_end_matches('\r');
                out.push_str(patterns[kept.len() % patterns.len()]);
                out.push_str(&value[kept.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    Cow::Owned(out.into_bytes())
}
