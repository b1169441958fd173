//! `strait offsets translate|failover`: consumer group failover by hand,
//! for one group, the groups matching a regex, or every group a flow
//! checkpoints, in one pass.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use strait_common::config::Config;
use strait_common::syncs::Rule;
use strait_controller::checkpoint::failback::translate_back_groups;
use strait_controller::checkpoint::{
    checkpointed_groups, failover_groups, translate_groups, CheckpointSpec, FailoverRow,
    GroupOutcome, GroupSelector, Translated,
};

/// Which source groups a command is about (exactly one of these).
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Groups {
    /// One group.
    #[arg(long, short)]
    group: Option<String>,
    /// Every group whose whole id matches this regex (strait's own never do).
    #[arg(long, value_name = "REGEX")]
    groups: Option<String>,
    /// Every group the flow checkpoints (its `groups` and `groups_exclude`).
    #[arg(long)]
    all_groups: bool,
}

impl Groups {
    fn selector(&self) -> Result<GroupSelector, String> {
        match (&self.group, &self.groups) {
            (Some(g), _) => Ok(GroupSelector::One(g.clone())),
            (None, Some(re)) => {
                GroupSelector::matching(re).map_err(|e| format!("--groups: invalid regex: {e}"))
            }
            (None, None) => Ok(GroupSelector::Checkpointed),
        }
    }
}

#[derive(Subcommand)]
pub enum Action {
    /// Print where source consumer groups would resume on the target.
    Translate {
        #[command(flatten)]
        groups: Groups,
        /// Only this flow (default: every flow).
        #[arg(long)]
        flow: Option<String>,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        /// Take the newest checkpoints on the target instead of asking the
        /// source (for when the source cluster is gone).
        #[arg(long)]
        from_checkpoints: bool,
    },
    /// Commit the translated positions to the same groups on the target, so
    /// their consumers resume there. A group with active members on the
    /// target is refused (nothing written for it; exit code 3); a group is
    /// never moved backwards, so running it twice changes nothing.
    Failover {
        #[command(flatten)]
        groups: Groups,
        #[arg(long)]
        flow: Option<String>,
        /// Read and print everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Take the newest checkpoints on the target instead of asking the
        /// source (for when the source cluster is gone).
        #[arg(long)]
        from_checkpoints: bool,
    },
    /// The way back after a failover: commit, on the source, where groups
    /// that consumed the flow's remote topics on the target resume on the
    /// source topics, translated back through the offset syncs (exact
    /// wherever they prove it; never past what the source holds). A group
    /// with active members on the source is refused (exit code 3); a group
    /// is never moved backwards, so running it twice changes nothing.
    Failback {
        #[command(flatten)]
        groups: Groups,
        /// The flow the groups failed over through (source → target).
        #[arg(long)]
        flow: String,
        /// Read and print everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One translated partition and the flow it belongs to.
pub type FlowRow = (String, Translated);

/// Why a translation could not be made.
#[derive(Debug)]
pub enum TranslateError {
    /// The request named a flow that does not exist.
    NoSuchFlow(String),
    /// Reading syncs or the groups' offsets failed.
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

/// The checkpoint specs of every flow (or only `only`).
fn specs(config: &Config, only: Option<&str>) -> Result<Vec<CheckpointSpec>, TranslateError> {
    if let Some(name) = only {
        if config.flow(name).is_none() {
            return Err(TranslateError::NoSuchFlow(name.to_owned()));
        }
    }
    Ok(config
        .flows
        .iter()
        .filter(|f| only.is_none_or(|n| f.name == n))
        .map(|flow| CheckpointSpec::new(config, flow))
        .collect())
}

/// Translates the selected groups through every flow (or only `only`):
/// rows of (flow, translation), and the flows' specs. With
/// `from_checkpoints`, the positions are the newest checkpoints on the
/// target and the source is not asked. Blocking.
pub fn translate_all(
    config: &Config,
    selector: &GroupSelector,
    only: Option<&str>,
    from_checkpoints: bool,
) -> Result<(Vec<FlowRow>, Vec<CheckpointSpec>), TranslateError> {
    let specs = specs(config, only)?;
    let mut rows = Vec::new();
    for spec in &specs {
        let t = if from_checkpoints {
            checkpointed_groups(spec, selector)
        } else {
            translate_groups(spec, selector)
        };
        let t = t.map_err(|e| {
            let hint = if from_checkpoints {
                ""
            } else {
                " (if the source cluster is gone, --from-checkpoints takes the newest checkpoints on the target)"
            };
            TranslateError::Kafka(format!("flow {}: {e:#}{hint}", spec.flow.name))
        })?;
        rows.extend(t.into_iter().map(|t| (spec.flow.name.clone(), t)));
    }
    Ok((rows, specs))
}

/// The JSON form of translated rows (CLI `--json` and the HTTP endpoint).
pub fn rows_json(rows: &[FlowRow]) -> serde_json::Value {
    rows.iter()
        .map(|(flow, t)| {
            serde_json::json!({
                "flow": flow,
                "group": t.group,
                "topic": t.remote_topic,
                "partition": t.partition,
                "source_offset": t.source_offset,
                "target_offset": t.target_offset,
                "exact": t.translation.map(|x| x.rule == Rule::Exact),
                "max_reread": t.translation.map(|x| x.max_reread),
            })
        })
        .collect()
}

fn rule(t: &Translated) -> String {
    match t.translation {
        None => "from the newest checkpoint".to_owned(),
        Some(x) if x.rule == Rule::Exact => "exact".to_owned(),
        Some(x) => format!("mm2 (re-reads up to {})", x.max_reread),
    }
}

pub fn run(config: &Config, action: Action) -> ExitCode {
    if let Action::Failback {
        groups,
        flow,
        dry_run,
    } = &action
    {
        return match groups.selector() {
            Ok(selector) => failback(config, flow, &selector, *dry_run),
            Err(e) => {
                eprintln!("strait: {e}");
                ExitCode::from(2)
            }
        };
    }
    let (groups, only, from_checkpoints) = match &action {
        Action::Translate {
            groups,
            flow,
            from_checkpoints,
            ..
        }
        | Action::Failover {
            groups,
            flow,
            from_checkpoints,
            ..
        } => (groups.clone(), flow.clone(), *from_checkpoints),
        Action::Failback { .. } => unreachable!("handled above"),
    };
    let selector = match groups.selector() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strait: {e}");
            return ExitCode::from(2);
        }
    };
    let (rows, specs) = match translate_all(config, &selector, only.as_deref(), from_checkpoints) {
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
                println!("{}", rows_json(&rows));
            } else if rows.is_empty() {
                println!("nothing to translate (no committed offsets on replicated partitions, or no offset syncs yet)");
            } else {
                println!(
                    "{:<12} {:<24} {:<32} {:>9} {:>13} {:>13}  rule",
                    "flow", "group", "target topic", "partition", "source offset", "target offset"
                );
                for (flow, t) in &rows {
                    println!(
                        "{flow:<12} {:<24} {:<32} {:>9} {:>13} {:>13}  {}",
                        t.group,
                        t.remote_topic,
                        t.partition,
                        t.source_offset,
                        t.target_offset,
                        rule(t)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Action::Failover { dry_run, .. } => failover(&specs, &rows, &selector, dry_run),
        Action::Failback { .. } => unreachable!("handled above"),
    }
}

/// Translates the selected groups' positions on the flow's remote topics
/// back to its source topics and commits them on the source.
fn failback(config: &Config, flow: &str, selector: &GroupSelector, dry_run: bool) -> ExitCode {
    let Some(f) = config.flow(flow) else {
        eprintln!("strait: no flow named {flow:?}");
        return ExitCode::from(2);
    };
    let spec = CheckpointSpec::new(config, f);
    let rows = match translate_back_groups(&spec, selector) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strait: flow {flow}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if rows.is_empty() {
        println!("flow {flow}: {}: nothing to fail back (no committed offsets on the flow's remote topics on {}, or no offset syncs)", selected(selector), f.target);
        return ExitCode::SUCCESS;
    }
    for r in rows.iter().filter(|r| r.clamped_to.is_some()) {
        eprintln!(
            "note: {}/{}: group {} read {} on {}, past the end of the source partition ({}): it resumes at the source's end",
            r.remote_topic, r.partition, r.group, r.target_offset, f.target, r.source_offset
        );
    }
    let moves: Vec<Move> = rows
        .iter()
        .map(|r| Move {
            group: r.group.clone(),
            topic: r.topic.clone(),
            partition: r.partition,
            from: r.target_offset,
            to: r.source_offset,
            exact: Some(r.translation.rule == Rule::Exact),
            max_reread: Some(r.translation.max_reread),
        })
        .collect();
    let mut done = Applied::default();
    done.apply(&spec, &spec.source, &f.source, &moves, dry_run);
    done.print(["target", "source"]);
    println!(
        "failback {flow}: {} partition position(s) {} on {}; at most {} record(s) re-read per partition",
        done.moved,
        if dry_run { "would move" } else { "moved" },
        f.source,
        done.max_reread
    );
    if !dry_run && done.refused == 0 && done.failed == 0 {
        println!(
            "next: point the groups' consumers at {}; records {} held but never replicated: `strait tail --flow {flow}`",
            f.source, f.source
        );
    }
    done.exit_code()
}

fn failover(
    specs: &[CheckpointSpec],
    rows: &[FlowRow],
    selector: &GroupSelector,
    dry_run: bool,
) -> ExitCode {
    fail_over(specs, rows, selector, dry_run).exit_code()
}

/// Writes (or, in a dry run, shows) every flow's translated positions to
/// the target groups and prints one table.
pub(crate) fn fail_over(
    specs: &[CheckpointSpec],
    rows: &[FlowRow],
    selector: &GroupSelector,
    dry_run: bool,
) -> Applied {
    let mut done = Applied::default();
    for spec in specs {
        let flow = &spec.flow.name;
        let moves: Vec<Move> = rows
            .iter()
            .filter(|(f, _)| f == flow)
            .map(|(_, t)| Move {
                group: t.group.clone(),
                topic: t.remote_topic.clone(),
                partition: t.partition,
                from: t.source_offset,
                to: t.target_offset,
                exact: t.translation.map(|x| x.rule == Rule::Exact),
                max_reread: t.translation.map(|x| x.max_reread),
            })
            .collect();
        if moves.is_empty() {
            println!("flow {flow}: {}: nothing to fail over (no committed offsets on replicated partitions, or no offset syncs yet)", selected(selector));
            continue;
        }
        done.apply(spec, &spec.target, &spec.flow.target, &moves, dry_run);
    }
    done.print(["source", "target"]);
    done
}

/// What a command that fails groups over (or back) names the groups it
/// found nothing for.
pub(crate) fn selected(selector: &GroupSelector) -> String {
    match selector {
        GroupSelector::One(g) => format!("group {g}"),
        _ => "no selected group".to_owned(),
    }
}

/// One partition of a group to move: the position it was read at, the one
/// written, and how exact the translation is.
#[derive(Debug, Clone)]
pub(crate) struct Move {
    pub group: String,
    /// The topic written, on the cluster the groups move to.
    pub topic: String,
    pub partition: i32,
    /// The group's position where it was read.
    pub from: i64,
    /// Where it resumes.
    pub to: i64,
    pub exact: Option<bool>,
    pub max_reread: Option<i64>,
}

/// What committing moves did, across flows: one table, and counts of
/// refused and failed groups.
#[derive(Default)]
pub(crate) struct Applied {
    pub refused: usize,
    pub failed: usize,
    /// Rows that moved a group forward (written, or would be in a dry run).
    pub moved: usize,
    /// The largest re-read a moved row allows (0 when all are exact).
    pub max_reread: i64,
    table: Vec<[String; 9]>,
}

impl Applied {
    /// Commits `moves` of `spec`'s flow to the same groups on `cluster`
    /// (alias `alias`): never backwards, refused for groups with members
    /// there; a dry run writes nothing.
    pub fn apply(
        &mut self,
        spec: &CheckpointSpec,
        cluster: &strait_common::config::ClusterConfig,
        alias: &str,
        moves: &[Move],
        dry_run: bool,
    ) {
        let flow = &spec.flow.name;
        let want = strait_controller::checkpoint::failover::group_commits(
            moves
                .iter()
                .map(|m| (m.group.as_str(), m.topic.as_str(), m.partition, m.to)),
        );
        let index: std::collections::HashMap<(&str, &str, i32), &Move> = moves
            .iter()
            .map(|m| ((m.group.as_str(), m.topic.as_str(), m.partition), m))
            .collect();
        let name = spec.flow.reader_group(&spec.deployment, "offsets");
        let outcomes = match failover_groups(cluster, &name, &want, dry_run) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("strait: flow {flow}: {e:#}");
                self.failed += 1;
                return;
            }
        };
        for (outcome, frows) in outcomes {
            let group = frows.first().map(|r| r.group.clone()).unwrap_or_default();
            // A written group's rows that did not move were up to date.
            let result = |moves: bool| match &outcome {
                GroupOutcome::Written if !moves => "up to date",
                GroupOutcome::Written if dry_run => "would write",
                GroupOutcome::Written => "written",
                GroupOutcome::UpToDate => "up to date",
                GroupOutcome::Refused(_) => "refused",
                GroupOutcome::Failed(_) => "failed",
            };
            match &outcome {
                GroupOutcome::Refused(why) => {
                    self.refused += 1;
                    eprintln!(
                        "strait: group {group} has active members on {alias} ({why}): stop them first; nothing written for it"
                    );
                }
                GroupOutcome::Failed(e) => {
                    self.failed += 1;
                    eprintln!("strait: flow {flow}: group {group}: {e}");
                }
                _ => {}
            }
            for r in frows {
                let m = index.get(&(r.group.as_str(), r.topic.as_str(), r.partition));
                let moved = matches!(outcome, GroupOutcome::Written) && r.moves;
                if moved {
                    self.moved += 1;
                    self.max_reread = self
                        .max_reread
                        .max(m.and_then(|m| m.max_reread).unwrap_or(0));
                }
                self.table.push(row(flow, m.copied(), &r, result(r.moves)));
            }
        }
    }

    /// Prints the table; `sides` names the position read and the one
    /// written (e.g. `["source", "target"]`).
    pub fn print(&self, sides: [&str; 2]) {
        if self.table.is_empty() {
            return;
        }
        let header = [
            "flow",
            "group",
            "topic",
            "partition",
            sides[0],
            sides[1],
            "exact",
            "max re-read",
            "result",
        ];
        let rows: Vec<Vec<String>> = self.table.iter().map(|r| r.to_vec()).collect();
        print!("{}", crate::cli::table(&header, rows));
    }

    /// 1 if anything failed, 3 if a group was refused, else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed > 0 {
            ExitCode::FAILURE
        } else if self.refused > 0 {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn row(flow: &str, m: Option<&Move>, r: &FailoverRow, result: &str) -> [String; 9] {
    [
        flow.to_owned(),
        r.group.clone(),
        r.topic.clone(),
        r.partition.to_string(),
        m.map_or("-".into(), |m| m.from.to_string()),
        r.offset.to_string(),
        match m.and_then(|m| m.exact) {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => "-".into(),
        },
        m.and_then(|m| m.max_reread)
            .map_or("-".into(), |x| x.to_string()),
        result.to_owned(),
    ]
}
