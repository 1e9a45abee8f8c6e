//! floodchat: a peer-to-peer command-line chat room. See `floodchat --help`.

#![forbid(unsafe_code)]

#[cfg(not(any(feature = "smol", feature = "async-std")))]
compile_error!("floodchat needs a runtime: enable the feature \"smol\" or \"async-std\"");

#[cfg(feature = "async-std")]
mod async_std;
mod cli;
mod datadir;
mod driver;
mod handoff;
mod history;
mod keys;
mod lines;
mod net;
#[cfg(feature = "smol")]
mod smol;
mod stdio;
mod terminal;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use cli::{Cli, RuntimeKind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.runtime {
        #[cfg(feature = "smol")]
        RuntimeKind::Smol => driver::run::<smol::Smol>(&cli),
        #[cfg(feature = "async-std")]
        RuntimeKind::AsyncStd => driver::run::<async_std::AsyncStd>(&cli),
        #[allow(unreachable_patterns)]
        missing => Cli::command()
            .error(
                ErrorKind::InvalidValue,
                format!("this floodchat was built without the {missing} runtime; rebuild it with --features {missing}"),
            )
            .exit(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            driver::say(message);
            ExitCode::FAILURE
        }
    }
}
