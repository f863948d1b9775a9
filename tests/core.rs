//! Core commands: keygen, whoami, init, set, get, rm, ls, encrypt, decrypt.

use crate::support::*;

#[test]
fn set_then_get_round_trips_tricky_values() {
    let s = Sandbox::new();
    s.init_alice();
    let values = [
        ("EQ", "a=b=c"),
        ("SPACES", "  padded  "),
        ("QUOTES", "it's \"quoted\""),
        ("HASH", "abc # not a comment"),
        ("DOLLAR", "p@$$w0rd${HOME}"),
        ("UNICODE", "héllo ✓ 日本語 🔑"),
        ("MULTI", "line one\nline two\n"),
        ("BACKSLASH_N", "C:\\temp\\new"),
    ];
    for (k, v) in values {
        s.ok(&["set", k, v]);
    }
    for (k, v) in values {
        assert_eq!(s.ok(&["get", k]), v, "{k}");
    }
}
