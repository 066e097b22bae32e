//! Thin binary: parse flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use ecr_public_pull_secret_operator::{
    config::{Cli, Command},
    crd, run, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(Box::new(cli.run))) {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init(args.log_format, &args.log_filter);
            match run::run(&args, run::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
