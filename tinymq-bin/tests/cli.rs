//! The command line of CLI.md: exit statuses and messages of every
//! subcommand. (The end-to-end tests in the workspace's `tests/` build the
//! binary themselves, so they never run a stale one.)

use std::process::Command;

fn tinymq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tinymq"))
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["broker", "--bogus"][..], "--bogus"),
        (&["broker", "--threads", "zero"][..], "--threads"),
        (&["broker", "--network", "udp"][..], "--network"),
        (&["pub", "--message", "x"][..], "--topic"),
        (&["sub", "--format", "xml", "--topic", "a"][..], "--format"),
        (&["bench", "--size", "4"][..], "--size"),
        (&["bench", "--protocol", "amqp"][..], "--protocol"),
        (&["bench", "--protocol", "nats", "--tls", "--insecure"][..], "--tls"),
        (&["bench", "--protocol", "mqtt", "--handshakes", "10"][..], "--handshakes"),
        (&["user", "add"][..], "NAME"),
        (&["user", "list", "--bogus"][..], "--bogus"),
        (&["user", "remove", "a/b"][..], "a/b"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let output = tinymq().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn other_failures_exit_1_with_one_line() {
    // Nothing listens on port 1 of loopback.
    let output = tinymq().args(["pub", "--address", "127.0.0.1:1", "--topic", "a", "--message", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8(output.stderr).unwrap().lines().count(), 1);
}

#[test]
fn version_and_help() {
    let output = tinymq().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), format!("tinymq {}", env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["broker", "--help"][..],
        &["pub", "--help"][..],
        &["sub", "--help"][..],
        &["bench", "--help"][..],
        &["user", "--help"][..],
    ] {
        let output = tinymq().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8(output.stdout).unwrap().starts_with("Usage:") || args == ["--help"], "{args:?}");
    }
}
