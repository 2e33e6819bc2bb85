//! The `tinymq` command: a thin wrapper over `tinymq-net`.

/// The usage lines of `--tls`, `--ca` and `--insecure` (see `tls.rs`), a
/// macro so that `concat!` can put them in each command's usage text.
macro_rules! tls_usage {
    () => {
        "  --tls                  speak TLS to the broker, with --ca or --insecure
  --ca PEM               trust the CA certificate(s) in this file
  --insecure             accept ANY certificate: encrypted, but anyone on the
                         path can pose as the broker (tests only)"
    };
}

mod args;
mod bench;
mod broker;
mod logger;
mod panics;
mod pubsub;
mod tls;
mod user;

use std::process::ExitCode;

use args::UsageError;

const USAGE: &str = "\
tinymq: a lightweight, fast pub/sub message broker

Usage: tinymq <COMMAND> [OPTIONS]

Commands:
  broker   run a broker in the foreground
  pub      publish messages
  sub      subscribe and print messages
  bench    measure publish and delivery rates and latency
  user     add, remove and list users (their passwords stored hashed)
  config   print the default configuration file

Run `tinymq <COMMAND> --help` for a command's options.
Options: --help, --version";

fn main() -> ExitCode {
    panics::install();
    let mut raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let command = raw.first().and_then(|c| c.to_str()).map(str::to_owned);
    let result = match command.as_deref() {
        None | Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("tinymq {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(name) => {
            raw.remove(0);
            let args = pico_args::Arguments::from_vec(raw);
            match name {
                "broker" => broker::run(args),
                "pub" => pubsub::run_pub(args),
                "sub" => pubsub::run_sub(args),
                "bench" => bench::run(args),
                "user" => user::run(args),
                "config" => broker::run_config(args),
                other => Err(args::Failure::Usage(UsageError(format!("unknown command {other:?} (try --help)")))),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(args::Failure::Usage(UsageError(message))) => {
            eprintln!("tinymq: {message}");
            ExitCode::from(2)
        }
        Err(args::Failure::Run(message)) => {
            eprintln!("tinymq: {message}");
            ExitCode::from(1)
        }
    }
}
