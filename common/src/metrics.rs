//! Every metric strait exports, declared in one place with its unit in its
//! name. Labels are bounded: `flow`, `kind`, `state`; the per-partition
//! series (`topic`, `partition`) can be switched off in `[metrics]`.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const RECORDS_REPLICATED: &str = "strait_records_replicated_total";
pub const BYTES_REPLICATED: &str = "strait_bytes_replicated_total";
/// Bytes the target producer sent (requests on the wire, after compression).
pub const TARGET_BYTES_SENT: &str = "strait_target_bytes_sent_total";
pub const RECORDS_SKIPPED: &str = "strait_records_skipped_total";
/// Records gone from the source before strait read them (label `reason`:
/// `expired`, retention or truncation overtook replication).
pub const RECORDS_LOST: &str = "strait_records_lost_total";
/// Partitions whose position no longer existed on the source: the topic
/// was deleted and re-created, or truncated below strait's position.
pub const SOURCE_RESETS: &str = "strait_source_resets_total";
pub const REPLICATION_LATENCY: &str = "strait_replication_latency_seconds";
pub const IN_FLIGHT_BYTES: &str = "strait_in_flight_bytes";
pub const UNITS: &str = "strait_units";
pub const UNIT_STATE: &str = "strait_unit_state";
pub const UNIT_LAG: &str = "strait_unit_lag_records";
pub const LAG: &str = "strait_lag_records";
pub const ERRORS: &str = "strait_errors_total";
/// Permissions refused now, by cluster and operation (`access::denials`).
pub const PERMISSIONS_MISSING: &str = "strait_permissions_missing";
pub const PERMISSION_REFUSALS: &str = "strait_permission_refusals_total";
pub const COMMITS: &str = "strait_commits_total";
/// Transactions committed by exactly-once flows (records and progress).
pub const TRANSACTIONS: &str = "strait_transactions_total";
/// Transactions whose commit went out while the lease was valid and whose
/// answer came back after it lapsed. Not a double write (the next owner
/// fences the transactional id before it reads progress:
/// docs/coordination.md, "Zombie fencing"), so not an invariant: a sign of
/// a worker paused or slowed near its lease's end.
pub const TRANSACTIONS_LATE: &str = "strait_transactions_committed_as_lease_lapsed_total";
pub const OFFSET_SYNCS: &str = "strait_offset_syncs_emitted_total";
pub const SESSIONS: &str = "strait_flow_sessions_total";
pub const TOPICS_CREATED: &str = "strait_topics_created_total";
/// Remote topics deleted on the target while replicated, and created again.
pub const REMOTE_TOPICS_RECREATED: &str = "strait_remote_topics_recreated_total";
pub const DISCOVERY_UNITS: &str = "strait_discovered_units";
pub const TOPIC_CONFIGS_CHANGED: &str = "strait_topic_configs_changed_total";
pub const TOPICS_CONFIG_MISMATCHED: &str = "strait_topics_config_mismatched";
pub const ACLS_CHANGED: &str = "strait_acls_changed_total";
pub const CHECKPOINTS: &str = "strait_checkpoints_emitted_total";
/// Age of the oldest checkpointed group's newest landed checkpoints: every
/// commit that group made before `now - this` is translated on the target.
pub const CHECKPOINT_LAG: &str = "strait_checkpoint_lag_seconds";
/// The same for the offsets `sync_group_offsets` commits to target groups.
pub const GROUP_SYNC_LAG: &str = "strait_group_offsets_sync_lag_seconds";
pub const CHECKPOINT_ROUND: &str = "strait_checkpoint_round_seconds";
pub const CHECKPOINT_ROUNDS: &str = "strait_checkpoint_rounds_total";
pub const CHECKPOINT_ROUNDS_OVERRUN: &str = "strait_checkpoint_rounds_overrun_total";
pub const CHECKPOINT_GROUPS: &str = "strait_checkpoint_groups";
pub const HEARTBEAT_AGE: &str = "strait_heartbeat_age_seconds";
pub const HEARTBEAT_LATENCY: &str = "strait_heartbeat_latency_seconds";
pub const LEASES_LOST: &str = "strait_leases_lost_total";
/// Previous writers of exactly-once units fenced before their new owner started.
pub const WRITERS_FENCED: &str = "strait_writers_fenced_total";
/// Exactly-once units that started from the advisory commit on the source
/// because the progress committed on the target was behind it.
pub const PROGRESS_BEHIND: &str = "strait_progress_behind_total";
pub const UNITS_OWNED: &str = "strait_owner_keys_held";
pub const UNITS_WAITING: &str = "strait_units_waiting_for_owner";
pub const LEADER: &str = "strait_controller_leader";
/// Workers registered with a live lease, as the leader sees them (0 on
/// controllers that do not lead).
pub const WORKERS: &str = "strait_workers";
pub const PLAN_EPOCH: &str = "strait_plan_epoch";
pub const PLANS_WRITTEN: &str = "strait_plans_written_total";
pub const UNIT_MOVES: &str = "strait_unit_moves_total";
/// Breaches of the guarantees strait is built on, counted where the code
/// can see them (label `invariant`, one of [`INVARIANTS`]). Must stay 0; the
/// chaos suite reads them after every scenario.
pub const INVARIANT_VIOLATIONS: &str = "strait_invariant_violations_total";

/// A worker's data plane held a unit while the unit's owner key belonged to
/// another worker's lease, its own lease being valid.
pub const SINGLE_OWNER: &str = "single_owner";
/// A commit would have passed the records the target acknowledged.
pub const COMMIT_PAST_ACK: &str = "commit_past_ack";
/// The checkpoints topic holds a checkpoint below an earlier one of the same
/// group and partition (seen when the checkpoint service reads it back).
pub const CHECKPOINT_BACKWARDS: &str = "checkpoint_backwards";
/// A second write in an exactly-once flow is not something one process can
/// see: the chaos suite judges it by reading the target with Kafka's
/// read_committed (0 duplicates), not by a counter.
pub const INVARIANTS: [&str; 3] = [SINGLE_OWNER, COMMIT_PAST_ACK, CHECKPOINT_BACKWARDS];

/// Counts one breach of `invariant`.
pub fn violated(invariant: &'static str) {
    metrics::counter!(INVARIANT_VIOLATIONS, "invariant" => invariant).increment(1);
}

/// Buckets of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Registers descriptions with the installed recorder.
pub fn describe() {
    describe_counter!(
        INVARIANT_VIOLATIONS,
        Unit::Count,
        format!(
            "breaches of strait's guarantees seen by this process, by invariant ({}); must stay 0",
            INVARIANTS.join(", ")
        )
    );
    // Exported from the start, so "0" is a reading and not an absence.
    for invariant in INVARIANTS {
        metrics::counter!(INVARIANT_VIOLATIONS, "invariant" => invariant).absolute(0);
    }
    describe_counter!(
        RECORDS_REPLICATED,
        Unit::Count,
        "records acknowledged by the target, by flow"
    );
    describe_counter!(
        BYTES_REPLICATED,
        Unit::Bytes,
        "key+value bytes acknowledged by the target, by flow"
    );
    describe_counter!(
        TARGET_BYTES_SENT,
        Unit::Bytes,
        "bytes the target producer sent to the target brokers (after compression), by flow"
    );
    describe_counter!(
        RECORDS_SKIPPED,
        Unit::Count,
        "records the target refused for good and the flow skipped (on_refused = \"skip\")"
    );
    describe_counter!(
        REMOTE_TOPICS_RECREATED,
        Unit::Count,
        "remote topics deleted on the target while replicated, and created again with their source's partition count, by flow"
    );
    describe_counter!(
        RECORDS_LOST,
        Unit::Count,
        "records gone from the source before strait read them, by flow and reason (expired: retention or truncation overtook replication); never silent, see on_source_gap"
    );
    describe_counter!(
        SOURCE_RESETS,
        Unit::Count,
        "partitions whose position no longer existed on the source, or was committed in another incarnation of the topic (topic deleted and re-created, or truncated), by flow"
    );
    describe_histogram!(
        REPLICATION_LATENCY,
        Unit::Seconds,
        "target acknowledgement time minus source record timestamp"
    );
    describe_gauge!(
        IN_FLIGHT_BYTES,
        Unit::Bytes,
        "bytes produced to the target and not yet acknowledged, by flow"
    );
    describe_gauge!(
        UNITS,
        Unit::Count,
        "partitions owned by this process, by flow and state"
    );
    describe_gauge!(
        UNIT_STATE,
        "state of one partition: 0 running, 1 paused (back-pressure), 2 failed, 3 releasing"
    );
    describe_gauge!(
        UNIT_LAG,
        Unit::Count,
        "source high watermark minus committed position, per partition"
    );
    describe_gauge!(LAG, Unit::Count, "sum of the partitions' lag, by flow");
    let kinds: Vec<&str> = crate::error_kind::ErrorKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    describe_counter!(
        ERRORS,
        Unit::Count,
        format!("errors by flow and kind ({})", kinds.join(", "))
    );
    describe_gauge!(
        PERMISSIONS_MISSING,
        Unit::Count,
        "permissions a cluster refuses strait now (one per operation and resource), by cluster and operation; /v1/status lists them with the ACL to add"
    );
    describe_counter!(
        PERMISSION_REFUSALS,
        Unit::Count,
        "requests refused for a missing permission, by cluster and operation"
    );
    describe_counter!(
        COMMITS,
        Unit::Count,
        "progress commits to the source cluster, by flow"
    );
    describe_counter!(OFFSET_SYNCS, Unit::Count, "offset syncs emitted, by flow");
    describe_counter!(
        TRANSACTIONS,
        Unit::Count,
        "transactions committed towards the target by an exactly-once flow (records and each unit's progress), by flow"
    );
    describe_counter!(
        TRANSACTIONS_LATE,
        Unit::Count,
        "transactions whose commit was sent while the lease was valid and answered after it lapsed (not a double write: the next owner fences first), by flow"
    );
    describe_counter!(
        SESSIONS,
        Unit::Count,
        "flow sessions started (a restart after an error starts a new one)"
    );
    describe_counter!(
        TOPICS_CREATED,
        Unit::Count,
        "remote topics created on the target, by flow"
    );
    describe_gauge!(
        DISCOVERY_UNITS,
        Unit::Count,
        "partitions discovered for replication, by flow"
    );
    describe_counter!(
        LEASES_LOST,
        Unit::Count,
        "coordination leases lost (not renewed in time); the process fenced itself, by role"
    );
    describe_counter!(
        WRITERS_FENCED,
        Unit::Count,
        "previous writers (transactional ids) of exactly-once units this worker fenced before starting them"
    );
    describe_counter!(
        PROGRESS_BEHIND,
        Unit::Count,
        "exactly-once units started from the source group's advisory commit because the progress their transactions committed on the target was behind it (a broker that lost a transactional offset commit)"
    );
    describe_gauge!(
        UNITS_OWNED,
        Unit::Count,
        "owner keys this worker holds in the coordination store"
    );
    describe_gauge!(
        UNITS_WAITING,
        Unit::Count,
        "units planned for this worker whose previous owner has not released them yet"
    );
    describe_counter!(
        TOPIC_CONFIGS_CHANGED,
        Unit::Count,
        "configs changed on remote topics to match their source, by flow"
    );
    describe_gauge!(
        TOPICS_CONFIG_MISMATCHED,
        Unit::Count,
        "remote topics whose configs could not be brought in step at the last sync, by flow"
    );
    describe_counter!(
        ACLS_CHANGED,
        Unit::Count,
        "ACLs created or deleted on remote topics, by flow and change"
    );
    describe_counter!(
        CHECKPOINTS,
        Unit::Count,
        "checkpoints written to the target, by flow"
    );
    describe_gauge!(
        CHECKPOINT_LAG,
        Unit::Seconds,
        "how far the target's checkpoints may trail the source commits they translate: age of the oldest group's newest landed round, by flow"
    );
    describe_gauge!(
        GROUP_SYNC_LAG,
        Unit::Seconds,
        "the same for the offsets sync_group_offsets commits to idle target groups, by flow"
    );
    describe_gauge!(
        CHECKPOINT_ROUND,
        Unit::Seconds,
        "duration of the last checkpoint round, by flow"
    );
    describe_counter!(
        CHECKPOINT_ROUNDS,
        Unit::Count,
        "checkpoint rounds whose transaction committed, by flow"
    );
    describe_counter!(
        CHECKPOINT_ROUNDS_OVERRUN,
        Unit::Count,
        "checkpoint rounds that took longer than checkpoint_interval, by flow"
    );
    describe_gauge!(
        CHECKPOINT_GROUPS,
        Unit::Count,
        "source consumer groups the last checkpoint round covered, by flow"
    );
    describe_gauge!(
        HEARTBEAT_AGE,
        Unit::Seconds,
        "age of the newest heartbeat of the flow's source seen on the target"
    );
    describe_gauge!(
        HEARTBEAT_LATENCY,
        Unit::Seconds,
        "replication latency of the newest heartbeat seen on the target"
    );
    describe_gauge!(LEADER, "1 while this controller is the leader");
    describe_gauge!(
        WORKERS,
        "workers registered with a live lease, by state (active, draining), as the leader counts them; 0 on a controller that does not lead"
    );
    describe_gauge!(PLAN_EPOCH, "epoch of the plan the leader last wrote");
    describe_counter!(
        PLANS_WRITTEN,
        Unit::Count,
        "plans written by this controller"
    );
    describe_counter!(
        UNIT_MOVES,
        Unit::Count,
        "units whose worker changed between consecutive plans"
    );
}

#[cfg(test)]
mod tests {
    /// Every metric declared here has a description: each `pub const` whose
    /// value is a `strait_` name is the first argument of a `describe_*!`.
    #[test]
    fn every_metric_is_described() {
        let source = include_str!("metrics.rs");
        let body = &source[source.find("pub fn describe()").expect("describe()")..];
        let mut undescribed = Vec::new();
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            if !line.contains("= \"strait_") {
                continue;
            }
            let name = rest.split(':').next().unwrap().trim();
            let described = [
                "describe_counter!(",
                "describe_gauge!(",
                "describe_histogram!(",
            ]
            .iter()
            .any(|m| {
                body.contains(&format!("{m}\n        {name},"))
                    || body.contains(&format!("{m}{name},"))
            });
            if !described {
                undescribed.push(name.to_owned());
            }
        }
        assert!(undescribed.is_empty(), "not described: {undescribed:?}");
    }
}
