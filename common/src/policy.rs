//! Replication policies: the name a source topic gets on the target, which
//! topics are internal, and cycle detection (docs/formats.md, "Remote topic
//! names").

use serde::Deserialize;

/// How remote topics are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationPolicy {
    /// `{source}{separator}{topic}`: cycle-safe, the default.
    Prefix { separator: String },
    /// `{topic}`: one-way only, cycles cannot be detected.
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    #[default]
    Prefix,
    Identity,
}

/// Name of the offset-syncs topic, as MirrorMaker 2 names it: `other` is the
/// target alias when the topic lives on the source, the source alias when it
/// lives on the target.
pub fn offset_syncs_topic(other: &str) -> String {
    format!("mm2-offset-syncs.{other}.internal")
}

/// Name of the checkpoints topic on the target.
pub fn checkpoints_topic(source: &str) -> String {
    format!("{source}.checkpoints.internal")
}

/// Name of the heartbeats topic on a source cluster.
pub const HEARTBEATS_TOPIC: &str = "heartbeats";

/// Topics never replicated, whatever the filters say: Kafka's and clients'
/// internal topics (`__consumer_offsets`, `_schemas`-like dot topics), and
/// MirrorMaker 2's and strait's own (`*.internal`, `*-internal`).
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
        || topic.starts_with('.')
        || topic.ends_with(".internal")
        || topic.ends_with("-internal")
        || topic.starts_with("mm2-")
}

impl ReplicationPolicy {
    pub fn new(kind: PolicyKind, separator: &str) -> Self {
        match kind {
            PolicyKind::Prefix => ReplicationPolicy::Prefix {
                separator: separator.to_owned(),
            },
            PolicyKind::Identity => ReplicationPolicy::Identity,
        }
    }

    /// The name of `topic` from cluster `source` on the target.
    pub fn remote_topic(&self, source: &str, topic: &str) -> String {
        match self {
            ReplicationPolicy::Prefix { separator } => format!("{source}{separator}{topic}"),
            ReplicationPolicy::Identity => topic.to_owned(),
        }
    }

    /// What every remote topic from `source` starts with, under the prefix
    /// policy (`{source}{separator}`); the identity policy has none.
    pub fn remote_prefix(&self, source: &str) -> Option<String> {
        match self {
            ReplicationPolicy::Prefix { separator } => Some(format!("{source}{separator}")),
            ReplicationPolicy::Identity => None,
        }
    }

    /// The cluster a topic says it came from, if its name carries one.
    fn topic_source<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        match self {
            ReplicationPolicy::Prefix { separator } => topic.split_once(separator.as_str()),
            ReplicationPolicy::Identity => None,
        }
    }

    /// True when replicating `topic` to `target` would send records back to
    /// a cluster they came from: some prefix in the topic's chain of sources
    /// (`a.b.orders` came from `a`, which had it from `b`) is the target.
    /// Like MirrorMaker 2, a prefix that is not an alias of the target is
    /// harmless. The identity policy cannot tell, hence "one-way only".
    pub fn is_cycle(&self, topic: &str, target: &str) -> bool {
        let mut rest = topic;
        while let Some((source, upstream)) = self.topic_source(rest) {
            if source == target {
                return true;
            }
            rest = upstream;
        }
        false
    }

    /// A heartbeats topic: `heartbeats`, or one replicated from another
    /// cluster (`{alias}{separator}heartbeats` under the prefix policy).
    pub fn is_heartbeats_topic(&self, topic: &str) -> bool {
        topic == HEARTBEATS_TOPIC
            || self
                .topic_source(topic)
                .is_some_and(|(_, upstream)| self.is_heartbeats_topic(upstream))
    }

    /// Whether a source topic of `source` is a candidate for replication to
    /// `target` before the flow's own filters apply.
    pub fn may_replicate(&self, topic: &str, target: &str) -> bool {
        !is_internal(topic) && !self.is_cycle(topic, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> ReplicationPolicy {
        ReplicationPolicy::new(PolicyKind::Prefix, ".")
    }

    #[test]
    fn prefix_policy_names_remote_topics_after_the_source() {
        assert_eq!(prefix().remote_topic("us", "orders"), "us.orders");
        let dash = ReplicationPolicy::new(PolicyKind::Prefix, "--");
        assert_eq!(dash.remote_topic("us", "orders"), "us--orders");
        let id = ReplicationPolicy::new(PolicyKind::Identity, ".");
        assert_eq!(id.remote_topic("us", "orders"), "orders");
    }

    #[test]
    fn prefix_policy_detects_cycles_along_the_chain() {
        let p = prefix();
        assert!(p.is_cycle("dr.orders", "dr"), "came from dr");
        assert!(p.is_cycle("eu.dr.orders", "dr"), "came from dr through eu");
        assert!(!p.is_cycle("eu.orders", "dr"));
        assert!(!p.is_cycle("orders", "dr"));
        assert!(!p.may_replicate("dr.orders", "dr"));
        assert!(p.may_replicate("orders", "dr"));
    }

    #[test]
    fn identity_policy_cannot_see_cycles() {
        let id = ReplicationPolicy::new(PolicyKind::Identity, ".");
        assert!(!id.is_cycle("dr.orders", "dr"));
    }

    #[test]
    fn internal_topics_are_never_candidates() {
        for t in [
            "__consumer_offsets",
            "__transaction_state",
            ".hidden",
            "us.checkpoints.internal",
            "mm2-offset-syncs.dr.internal",
            "connect-offsets-internal",
        ] {
            assert!(is_internal(t), "{t}");
            assert!(!prefix().may_replicate(t, "dr"), "{t}");
        }
        for t in ["orders", "heartbeats", "us.heartbeats", "internal.orders"] {
            assert!(!is_internal(t), "{t}");
        }
    }

    #[test]
    fn internal_topic_names_follow_mirrormaker2() {
        assert_eq!(offset_syncs_topic("dr"), "mm2-offset-syncs.dr.internal");
        assert_eq!(checkpoints_topic("us"), "us.checkpoints.internal");
    }
}
