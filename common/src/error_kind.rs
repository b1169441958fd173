//! The closed list of error kinds: the `kind` label of
//! `strait_errors_total`, and how a Kafka client's error is classed into
//! one. Shared by the metric declarations ([`crate::metrics`], which
//! describe every kind) and the telemetry events ([`crate::telemetry`],
//! which log and count them).

/// The `kind` label of `strait_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    // A Kafka client's error, by class (data plane and heartbeats).
    RecordTooLarge,
    NotAuthorised,
    InvalidRecord,
    Timeout,
    Transport,
    UnknownPartition,
    QueueFull,
    Fatal,
    Purged,
    Other,
    // What failed.
    /// A progress commit to the source.
    Commit,
    /// A flow session stopped because the worker's lease lapsed.
    Fenced,
    /// A flow session failed and restarts.
    Session,
    Heartbeat,
    Discovery,
    CreateTopic,
    CreatePartitions,
    DescribeConfigs,
    AlterConfigs,
    DescribeAcls,
    Acls,
    Checkpoint,
    /// Records gone from the source before they were read (retention or
    /// truncation), or a position that no longer exists (re-created topic).
    SourceGap,
    /// A remote topic was deleted on the target while replicated.
    RemoteTopicGone,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 24] = [
        ErrorKind::RecordTooLarge,
        ErrorKind::NotAuthorised,
        ErrorKind::InvalidRecord,
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::UnknownPartition,
        ErrorKind::QueueFull,
        ErrorKind::Fatal,
        ErrorKind::Purged,
        ErrorKind::Other,
        ErrorKind::Commit,
        ErrorKind::Fenced,
        ErrorKind::Session,
        ErrorKind::Heartbeat,
        ErrorKind::Discovery,
        ErrorKind::CreateTopic,
        ErrorKind::CreatePartitions,
        ErrorKind::DescribeConfigs,
        ErrorKind::AlterConfigs,
        ErrorKind::DescribeAcls,
        ErrorKind::Acls,
        ErrorKind::Checkpoint,
        ErrorKind::SourceGap,
        ErrorKind::RemoteTopicGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RecordTooLarge => "record_too_large",
            ErrorKind::NotAuthorised => "not_authorised",
            ErrorKind::InvalidRecord => "invalid_record",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::UnknownPartition => "unknown_partition",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Purged => "purged",
            ErrorKind::Other => "other",
            ErrorKind::Commit => "commit",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Session => "session",
            ErrorKind::Heartbeat => "heartbeat",
            ErrorKind::Discovery => "discovery",
            ErrorKind::CreateTopic => "create_topic",
            ErrorKind::CreatePartitions => "create_partitions",
            ErrorKind::DescribeConfigs => "describe_configs",
            ErrorKind::AlterConfigs => "alter_configs",
            ErrorKind::DescribeAcls => "describe_acls",
            ErrorKind::Acls => "acls",
            ErrorKind::Checkpoint => "checkpoint",
            ErrorKind::SourceGap => "source_gap",
            ErrorKind::RemoteTopicGone => "remote_topic_gone",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn every_kind_is_listed_once_with_a_distinct_label() {
        let labels: std::collections::BTreeSet<&str> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn kafka_errors_are_classed() {
        let e = KafkaError::MessageProduction(Code::MessageSizeTooLarge);
        assert_eq!(ErrorKind::of(&e), ErrorKind::RecordTooLarge);
        let e = KafkaError::MessageProduction(Code::QueueFull);
        assert_eq!(ErrorKind::of(&e), ErrorKind::QueueFull);
        let e = KafkaError::MessageProduction(Code::InvalidReplicationFactor);
        assert_eq!(ErrorKind::of(&e), ErrorKind::Other);
    }
}
