//! The `backdrop` command: background generation and image expansion on the local
//! machine, the task server and its workers, API keys, and diffusion models.
//!
//! Exit status: 0 on success, 2 when the input or the flags are refused (one line on
//! standard error names the problem, the limit and the stable error code), 1 when a
//! run fails for another reason (engine, disk). Output files appear only when the whole
//! run succeeded.

mod cli;
mod config;
mod models;
mod output;
mod run;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_status())
        }
    }
}
