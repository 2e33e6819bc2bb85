//! `tinymq pub` and `tinymq sub`.

use crate::args::{Failure, Outcome};

pub fn run_pub(_args: pico_args::Arguments) -> Outcome {
    Err(Failure::run("not built yet"))
}

pub fn run_sub(_args: pico_args::Arguments) -> Outcome {
    Err(Failure::run("not built yet"))
}
