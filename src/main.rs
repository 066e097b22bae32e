//! Thin binary: parse flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use ecr_public_pull_secret_operator::{
    aws::{self, diagnose},
    config::{Cli, Command},
    crd, run, telemetry,
};

/// jemalloc with one arena and no thread caches (settings in `.cargo/config.toml`): glibc's
/// allocator keeps an arena per thread and freed memory in each, so the operator's resident set
/// stays higher after a burst (BENCHMARKS.md "Memory" has both measured).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(Box::new(cli.run))) {
        Command::Crd { write: None } => {
            print!("{}---\n{}", crd::crd_yaml(), crd::cluster_crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd { write: Some(dir) } => {
            let files = [
                ("ecrpublicpullsecrets", crd::crd_yaml()),
                ("clusterecrpublicpullsecrets", crd::cluster_crd_yaml()),
            ];
            for (plural, yaml) in files {
                let path = dir.join(format!("{plural}.{}.yaml", crd::GROUP));
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Token(args) => {
            let settings = aws::AwsSettings {
                operation_timeout: args.aws_operation_timeout,
                ..Default::default()
            };
            let sdk = aws::load_sdk_config(&settings).await;
            let options = diagnose::Options {
                role_arn: args.role_arn,
                show_token: args.show_token,
                private_regions: args.private_regions,
            };
            match diagnose::token(&sdk, &settings, &options, &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error [{}]: {e}", e.label());
                    ExitCode::FAILURE
                }
            }
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
