//! The `portcullis` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = portcullis_server::cli::Cli::parse();
    portcullis_server::cli::run(cli)
}
