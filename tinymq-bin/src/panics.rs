//! The command's panic hook, installed once at start: the library never
//! replaces the process's hook, the program that owns the process does.
//!
//! redb asserts on some damaged files (a truncated one, say); tinymq-net
//! catches that panic and returns an error naming the file, which the
//! command prints as its one line. [`quietly`] keeps the hook silent for
//! panics that the call it runs catches itself; a panic that escapes it is
//! printed as usual before it goes on unwinding.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};

thread_local! {
    /// Set while this thread runs [`quietly`].
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The last panic the hook kept quiet on this thread.
    static SILENCED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook. Call once, before any thread starts.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        if QUIET.with(Cell::get) {
            SILENCED.with(|silenced| *silenced.borrow_mut() = Some(info.to_string()));
        } else {
            default(info);
        }
    }));
}

/// Runs `f`, which turns the panics it expects into errors, with this
/// thread's panics kept off stderr.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let was_quiet = QUIET.with(|quiet| quiet.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|quiet| quiet.set(was_quiet));
    let silenced = SILENCED.with(|silenced| silenced.borrow_mut().take());
    match result {
        Ok(value) => value,
        Err(payload) => {
            if let Some(message) = silenced {
                let thread = std::thread::current();
                eprintln!("thread '{}' {message}", thread.name().unwrap_or("<unnamed>"));
            }
            std::panic::resume_unwind(payload)
        }
    }
}
