//! A minimal stderr logger for the `log` facade: one line per record.

use std::io::Write;
use std::str::FromStr;

struct Stderr {
    level: log::LevelFilter,
}

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{:<5} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// The levels `--log-level` accepts.
#[derive(Clone, Copy, Debug)]
pub struct Level(log::LevelFilter);

impl FromStr for Level {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" | "warn" | "info" | "debug" | "trace" | "off" => {
                Ok(Level(log::LevelFilter::from_str(s).map_err(|_| "not a log level")?))
            }
            _ => Err("expected error, warn, info or debug"),
        }
    }
}

impl Default for Level {
    fn default() -> Self {
        Level(log::LevelFilter::Info)
    }
}

impl From<tinymq_net::LogLevel> for Level {
    fn from(level: tinymq_net::LogLevel) -> Self {
        Level(level.filter())
    }
}

/// Installs the logger; later calls do nothing.
pub fn init(level: Level) {
    let logger = Box::leak(Box::new(Stderr { level: level.0 }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level.0);
    }
}
