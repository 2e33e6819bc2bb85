//! Argument helpers shared by the subcommands: pico-args with errors that
//! name the bad flag, and the exit-status split README.md states ("Publish
//! and subscribe": usage errors exit 2, other failures 1).

use std::fmt::Display;
use std::str::FromStr;

/// A usage error: exit status 2, one line naming the bad flag.
#[derive(Debug)]
pub struct UsageError(pub String);

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags: exit 2.
    Usage(UsageError),
    /// Anything else: exit 1.
    Run(String),
}

impl Failure {
    /// A run-time failure with a one-line message.
    pub fn run(message: impl Display) -> Self {
        Failure::Run(message.to_string())
    }
}

impl From<UsageError> for Failure {
    fn from(error: UsageError) -> Self {
        Failure::Usage(error)
    }
}

/// The result of a subcommand.
pub type Outcome = Result<(), Failure>;

fn describe(flag: &str, error: pico_args::Error) -> UsageError {
    UsageError(match error {
        pico_args::Error::MissingOption(_) => format!("{flag} needs a value"),
        pico_args::Error::OptionWithoutAValue(_) => format!("{flag} needs a value"),
        // pico-args reports a value our parser refused this way: the cause
        // is that parser's own message, naming the value.
        pico_args::Error::Utf8ArgumentParsingFailed { cause, .. } => format!("{flag}: {cause}"),
        pico_args::Error::NonUtf8Argument => format!("{flag}: the value is not valid UTF-8"),
        pico_args::Error::ArgumentParsingFailed { cause } => format!("{flag}: {cause}"),
        other => format!("{flag}: {other}"),
    })
}

/// An optional flag with a value parsed by `FromStr`.
pub fn opt<T>(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<T>, UsageError>
where
    T: FromStr,
    T::Err: Display,
{
    args.opt_value_from_fn(flag, |s| s.parse::<T>().map_err(|e| format!("{s:?} is not valid ({e})")))
        .map_err(|e| describe(flag, e))
}

/// A flag that may be repeated.
pub fn many<T>(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Vec<T>, UsageError>
where
    T: FromStr,
    T::Err: Display,
{
    args.values_from_fn(flag, |s| s.parse::<T>().map_err(|e| format!("{s:?} is not valid ({e})")))
        .map_err(|e| describe(flag, e))
}

/// Whether a switch was given.
pub fn switch(args: &mut pico_args::Arguments, flag: &'static str) -> bool {
    args.contains(flag)
}

/// A `true|false` flag.
pub fn opt_bool(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<bool>, UsageError> {
    args.opt_value_from_fn(flag, |s| match s {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    })
    .map_err(|e| describe(flag, e))
}

/// The next positional argument, once every flag is taken; `None` when
/// none is left or the next is an unknown flag (which [`finish`] names).
pub fn free(args: &mut pico_args::Arguments, what: &'static str) -> Result<Option<String>, UsageError> {
    args.subcommand().map_err(|e| describe(what, e))
}

/// Fails on anything left over, naming the first stray argument.
pub fn finish(args: pico_args::Arguments) -> Result<(), UsageError> {
    let rest = args.finish();
    match rest.first() {
        None => Ok(()),
        Some(stray) => {
            let stray = stray.to_string_lossy();
            Err(UsageError(if stray.starts_with('-') {
                format!("unknown flag {stray} (try --help)")
            } else {
                format!("unexpected argument {stray:?} (try --help)")
            }))
        }
    }
}

/// Prints `usage` and returns true when `--help` was given.
pub fn help(args: &mut pico_args::Arguments, usage: &str) -> bool {
    if args.contains(["-h", "--help"]) {
        println!("{usage}");
        true
    } else {
        false
    }
}
