//! `strait`: Kafka cross-cluster replication.

mod cli;
mod dr;
mod mm2;
mod offsets;
mod preflight;
mod roles;
mod serve;
mod verify;

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
    /// Replicate. Without [coordination] etcd one process holds every role;
    /// with it, the process joins a fleet in the role given.
    Run {
        /// Path of strait.toml (see strait.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "all")]
        role: roles::Role,
        /// This process's id in the fleet [default: the host name]. Keep it
        /// stable across restarts: the plan is sticky per id.
        #[arg(long)]
        id: Option<String>,
    },
    /// Validate a config file and print the flows it defines.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also connect to every cluster and list each permission strait's
        /// principal lacks for what the config enables, with the ACL that
        /// grants it (exit 1 when one is missing or a cluster cannot be asked).
        #[arg(long)]
        preflight: bool,
        /// With --preflight: include what `strait offsets failover` needs
        /// (and `strait cutover`, `verify` and `tail`, which read the same).
        #[arg(long, requires = "preflight")]
        failover: bool,
        /// With --preflight: include what `strait offsets failback` needs
        /// (what --failover does, and committing the groups on the source).
        #[arg(long, requires = "preflight")]
        failback: bool,
    },
    /// Translate a consumer group's positions to the target, or fail it over.
    Offsets {
        #[command(subcommand)]
        action: offsets::Action,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Topics replicated, and the operator's additions and removals.
    Topics {
        #[command(subcommand)]
        action: Option<cli::Topics>,
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Workers of the fleet; drain and undrain.
    Workers {
        #[command(subcommand)]
        action: Option<cli::Workers>,
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Units (flow, topic, partition); pause and resume.
    Units {
        #[command(subcommand)]
        action: Option<cli::Units>,
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Every unit's planned worker, owner, state, lag and last error.
    Status {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The current plan.
    Plan {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Plan once from scratch, ignoring stickiness.
    Rebalance {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write a strait config from a MirrorMaker 2 properties file
    /// (connect-mirror-maker.properties), and list on stderr every setting
    /// it could not carry over, with the reason.
    ImportMm2 {
        /// The MirrorMaker 2 properties file.
        file: PathBuf,
        /// Where to write the config [default: stdout].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The deployment name (it names strait's progress groups).
        #[arg(long, default_value = "mm2")]
        deployment: String,
    },
    /// Take over from a stopped MirrorMaker 2: each partition of the
    /// config's flows starts where MirrorMaker 2 had got to, read from its
    /// Connect offsets topic. Run it once, before strait's first start.
    TakeoverMm2 {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        args: mm2::takeover::Args,
    },
    /// Compare source and target record by record over a range, aligned by
    /// the offset syncs, up to the committed position, and every target
    /// record after it. Exit 1 on missing, mismatched or foreign records
    /// (on the target, not from the source).
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        args: verify::Args,
    },
    /// A planned cutover of one flow, once the source's producers are
    /// stopped: waits until everything is replicated, proves the copy like
    /// `strait verify`, then fails every group of the flow over with exact
    /// positions. Exit 1 if it stops (nothing failed over), 3 if a group
    /// is active on the target.
    Cutover {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        args: dr::cutover::Args,
    },
    /// After a failover, once the failed source is back: the records it
    /// held but never replicated, per partition (ranges, counts); with
    /// --copy-to, copies them to a topic on the target.
    Tail {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        args: dr::tail::Args,
    },
    /// Print a shell completion script, e.g. `strait completions bash >
    /// /etc/bash_completion.d/strait`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ImportMm2 {
        file,
        output,
        deployment,
    } = &cli.command
    {
        return mm2::run_import(file, output.as_deref(), deployment);
    }
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(shell, &mut Cli::command(), "strait", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
                .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (api_config, call) = match cli.command {
        Command::Topics {
            action,
            api,
            config,
        } => (
            config,
            Some((api, cli::Call::Topics(action.unwrap_or(cli::Topics::List)))),
        ),
        Command::Workers {
            action,
            api,
            config,
        } => (
            config,
            Some((
                api,
                cli::Call::Workers(action.unwrap_or(cli::Workers::List)),
            )),
        ),
        Command::Units {
            action,
            api,
            config,
        } => (
            config,
            Some((api, cli::Call::Units(action.unwrap_or(cli::Units::List)))),
        ),
        Command::Status { api, config } => {
            (config, Some((api, cli::Call::Units(cli::Units::List))))
        }
        Command::Plan { api, config } => (config, Some((api, cli::Call::Plan))),
        Command::Rebalance { api, config } => (config, Some((api, cli::Call::Rebalance))),
        other => {
            return run_command(other);
        }
    };
    let (api, call) = call.expect("set above");
    let config = match api_config {
        None => None,
        Some(path) => match Config::load(&path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("strait: invalid config {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    cli::run(config.as_ref(), &api, call)
}

fn run_command(command: Command) -> ExitCode {
    let path = match &command {
        Command::Run { config, .. }
        | Command::Check { config, .. }
        | Command::TakeoverMm2 { config, .. }
        | Command::Verify { config, .. }
        | Command::Cutover { config, .. }
        | Command::Tail { config, .. } => config.clone(),
        Command::Offsets { config, .. } => match config {
            Some(c) => c.clone(),
            None => {
                eprintln!("strait: --config is required");
                return ExitCode::from(2);
            }
        },
        _ => unreachable!("API commands are handled by the caller"),
    };
    let path = &path;
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strait: invalid config {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Offsets { action, .. } => offsets::run(&config, action),
        Command::TakeoverMm2 { args, .. } => mm2::takeover::run(&config, &args),
        Command::Verify { args, .. } => verify::run(&config, &args),
        Command::Cutover { args, .. } => dr::cutover::run(&config, &args),
        Command::Tail { args, .. } => dr::tail::run(&config, &args),
        Command::Check {
            preflight,
            failover,
            failback,
            ..
        } => {
            for f in &config.flows {
                println!(
                    "flow {}: {} -> {}, remote topic of \"orders\": {}, progress group: {}{}",
                    f.name,
                    f.source,
                    f.target,
                    f.remote_topic("orders"),
                    f.commit_group(&config.deployment),
                    if f.paused {
                        " (paused: `strait run` skips it)"
                    } else {
                        ""
                    }
                );
                if let Some(back) = config
                    .flows
                    .iter()
                    .find(|b| b.source == f.target && b.target == f.source)
                {
                    println!(
                        "  way back: flow {} ({}), {}",
                        back.name,
                        if back.paused { "paused" } else { "running" },
                        if f.paused || back.paused {
                            "one direction at a time"
                        } else {
                            "active/active"
                        }
                    );
                }
            }
            if !preflight {
                return ExitCode::SUCCESS;
            }
            let report = preflight::run(
                &config,
                strait_common::access::Commands { failover, failback },
            );
            report.print();
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run { role, id, .. } => {
            let defined = config.clone();
            let mut config = config;
            for f in config.flows.iter().filter(|f| f.paused) {
                tracing::info!(flow = %f.name, "flow paused in the config: not run");
            }
            config.flows.retain(|f| !f.paused);
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
            match rt.block_on(roles::run(config, defined, role, id)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "strait stopped on an error");
                    ExitCode::FAILURE
                }
            }
        }
        _ => unreachable!("API commands are handled by the caller"),
    }
}
