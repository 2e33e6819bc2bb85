//! `tinymq bench`.

use crate::args::{Failure, Outcome};

pub fn run(_args: pico_args::Arguments) -> Outcome {
    Err(Failure::run("not built yet"))
}
