//! `strait`: Kafka cross-cluster replication.

mod offsets;
mod serve;
mod standalone;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strait_common::config::Config;

#[derive(Parser)]
#[command(name = "strait", version, about = "Kafka cross-cluster replicator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replicate: discovery and the data plane in one process.
    Run {
        /// Path of strait.toml (see strait.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print the flows it defines.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Translate a consumer group's positions to the target, or fail it over.
    Offsets {
        #[command(subcommand)]
        action: offsets::Action,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
                .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let path = match &cli.command {
        Command::Run { config } | Command::Check { config } => config.clone(),
        Command::Offsets { config, .. } => match config {
            Some(c) => c.clone(),
            None => {
                eprintln!("strait: --config is required");
                return ExitCode::from(2);
            }
        },
    };
    let path = &path;
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strait: invalid config {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Offsets { action, .. } => offsets::run(&config, action),
        Command::Check { .. } => {
            for f in config.flows().expect("validated by load") {
                println!(
                    "flow {}: {} -> {}, remote topic of \"orders\": {}, progress group: {}",
                    f.name,
                    f.source,
                    f.target,
                    f.remote_topic("orders"),
                    f.commit_group(&config.deployment)
                );
            }
            ExitCode::SUCCESS
        }
        Command::Run { .. } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("strait: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(standalone::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "strait stopped on an error");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
