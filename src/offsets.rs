//! `strait offsets translate|failover`: consumer group failover by hand.

use std::process::ExitCode;

use clap::Subcommand;
use strait_common::config::Config;
use strait_common::syncs::Rule;
use strait_controller::checkpoint::{
    commit_to_target, translate_group, CheckpointSpec, GroupCommit, Translated,
};

#[derive(Subcommand)]
pub enum Action {
    /// Print where a source consumer group would resume on the target.
    Translate {
        #[arg(long, short)]
        group: String,
        /// Only this flow (default: every flow).
        #[arg(long)]
        flow: Option<String>,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Commit the translated positions to the same group on the target, so
    /// its consumers resume there. Refused while the group has active
    /// members on the target; never moves the group backwards.
    Failover {
        #[arg(long, short)]
        group: String,
        #[arg(long)]
        flow: Option<String>,
    },
}

/// One translated partition and the flow it belongs to.
pub type FlowRow = (String, Translated);

/// Why a translation could not be made.
#[derive(Debug)]
pub enum TranslateError {
    /// The request named a flow that does not exist.
    NoSuchFlow(String),
    /// Reading syncs or the group's offsets failed.
    Kafka(String),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslateError::NoSuchFlow(n) => write!(f, "no flow named {n:?}"),
            TranslateError::Kafka(e) => f.write_str(e),
        }
    }
}

/// Translates `group` through every flow (or only `only`): rows of (flow,
/// translation), and the flows' specs. Blocking.
pub fn translate_all(
    config: &Config,
    group: &str,
    only: Option<&str>,
) -> Result<(Vec<FlowRow>, Vec<CheckpointSpec>), TranslateError> {
    let flows = config.flows().expect("validated by load");
    if let Some(name) = only {
        if !flows.iter().any(|f| f.name == name) {
            return Err(TranslateError::NoSuchFlow(name.to_owned()));
        }
    }
    let mut rows = Vec::new();
    let mut specs = Vec::new();
    for flow in flows
        .into_iter()
        .filter(|f| only.is_none_or(|n| f.name == n))
    {
        let cluster = |alias: &str| config.clusters[alias].clone();
        let spec = CheckpointSpec {
            deployment: config.deployment.clone(),
            source: cluster(&flow.source),
            target: cluster(&flow.target),
            syncs_cluster: cluster(flow.offset_syncs().0),
            flow,
        };
        let t = translate_group(&spec, group)
            .map_err(|e| TranslateError::Kafka(format!("flow {}: {e:#}", spec.flow.name)))?;
        rows.extend(t.into_iter().map(|t| (spec.flow.name.clone(), t)));
        specs.push(spec);
    }
    Ok((rows, specs))
}

/// The JSON form of translated rows (CLI `--json` and the HTTP endpoint).
pub fn rows_json(group: &str, rows: &[FlowRow]) -> serde_json::Value {
    rows.iter()
        .map(|(flow, t)| {
            serde_json::json!({
                "flow": flow,
                "group": group,
                "topic": t.remote_topic,
                "partition": t.partition,
                "source_offset": t.source_offset,
                "target_offset": t.translation.offset.0,
                "exact": t.translation.rule == Rule::Exact,
                "max_reread": t.translation.max_reread,
            })
        })
        .collect()
}

pub fn run(config: &Config, action: Action) -> ExitCode {
    let (group, only) = match &action {
        Action::Translate { group, flow, .. } | Action::Failover { group, flow } => {
            (group.clone(), flow.clone())
        }
    };
    let group = &group;
    let (rows, specs) = match translate_all(config, group, only.as_deref()) {
        Ok(r) => r,
        Err(e @ TranslateError::NoSuchFlow(_)) => {
            eprintln!("strait: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("strait: {e}");
            return ExitCode::FAILURE;
        }
    };
    match action {
        Action::Translate { json, .. } => {
            if json {
                println!("{}", rows_json(group, &rows));
            } else if rows.is_empty() {
                println!("group {group}: nothing to translate (no committed offsets on replicated partitions, or no offset syncs yet)");
            } else {
                println!(
                    "{:<16} {:<32} {:>9} {:>14} {:>14}  rule",
                    "flow", "target topic", "partition", "source offset", "target offset"
                );
                for (flow, t) in &rows {
                    let rule = match t.translation.rule {
                        Rule::Exact => "exact".to_owned(),
                        Rule::MirrorMaker2 => {
                            format!("mm2 (re-reads up to {})", t.translation.max_reread)
                        }
                    };
                    println!(
                        "{flow:<16} {:<32} {:>9} {:>14} {:>14}  {rule}",
                        t.remote_topic, t.partition, t.source_offset, t.translation.offset.0
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Action::Failover { .. } => {
            let mut code = ExitCode::SUCCESS;
            for spec in &specs {
                let offsets: Vec<(String, i32, i64)> = rows
                    .iter()
                    .filter(|(f, _)| *f == spec.flow.name)
                    .map(|(_, t)| (t.remote_topic.clone(), t.partition, t.translation.offset.0))
                    .collect();
                if offsets.is_empty() {
                    println!(
                        "flow {}: group {group}: nothing to fail over",
                        spec.flow.name
                    );
                    continue;
                }
                match commit_to_target(&spec.target, group, &offsets) {
                    Ok(GroupCommit::Committed(moved)) => {
                        for (t, p, o) in moved {
                            println!(
                                "flow {}: group {group}: {t}/{p} now at {o} on {}",
                                spec.flow.name, spec.flow.target
                            );
                        }
                    }
                    Ok(GroupCommit::UpToDate) => {
                        println!(
                            "flow {}: group {group} is already at or past the translated positions",
                            spec.flow.name
                        )
                    }
                    Ok(GroupCommit::Active { members }) => {
                        eprintln!(
                            "strait: group {group} has {members} active member(s) on {}: stop them first; nothing written",
                            spec.flow.target
                        );
                        code = ExitCode::from(3);
                    }
                    Err(e) => {
                        eprintln!("strait: flow {}: {e:#}", spec.flow.name);
                        code = ExitCode::FAILURE;
                    }
                }
            }
            code
        }
    }
}
