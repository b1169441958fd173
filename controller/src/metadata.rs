//! Metadata sync: remote topics follow their source's configs and ACLs.
//! Pure decisions ([`config_changes`], [`target_acls`], [`acl_changes`])
//! and the rounds that apply them through the admin seam, reporting what
//! changed and what could not (log lines, counters, a gauge).

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;

use strait_common::access::{denials, Feature, Operation, Resource};
use strait_common::config::Flow;
use strait_common::error_event;
use strait_common::metrics as m;
use strait_common::telemetry::ErrorKind;

use crate::admin::{self, ClusterAdmin, TopicConfigs, TopicSizes, MAX_MESSAGE_BYTES};
use crate::native_admin::{AclOperation, AclPermission, ConfigOp, TopicAcl};

/// The changes that make a remote topic's configs match its source's:
/// every copied config the source sets and the target lacks or differs on.
/// A config set only on the target is left alone (it may be an operator's).
/// `max.message.bytes` is only ever raised: a remote topic that admits
/// larger records than its source already admits the source's.
pub fn config_changes(flow: &Flow, source: &TopicConfigs, target: &TopicConfigs) -> Vec<ConfigOp> {
    let admits = |k: &str, v: &str| {
        k == MAX_MESSAGE_BYTES
            && matches!(
                (target.get(k).and_then(|t| t.parse::<i64>().ok()), v.parse::<i64>()),
                (Some(t), Ok(s)) if t >= s
            )
    };
    source
        .iter()
        .filter(|(k, v)| flow.copies_config(k) && target.get(*k) != Some(*v) && !admits(k, v))
        .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
        .collect()
}

/// Brings every remote topic's configs in step with its source's, and
/// reports what changed, what could not, and how many still differ.
/// Returns, per source topic compared, whether its remote topic matches.
pub async fn sync_configs<A: ClusterAdmin>(
    flow: &Flow,
    source_admin: &A,
    target_admin: &A,
    source: &TopicSizes,
    target: &TopicSizes,
) -> BTreeMap<String, bool> {
    let name = &flow.name;
    let mut mismatched = 0;
    let mut in_sync = BTreeMap::new();
    for topic in source.keys().filter(|t| flow.replicates(t)) {
        let remote = flow.remote_topic(topic);
        if !target.contains_key(&remote) {
            continue;
        }
        let (src, tgt) = match (
            source_admin.topic_configs(topic).await,
            target_admin.topic_configs(&remote).await,
        ) {
            (Ok(s), Ok(t)) => (s, t),
            (src, tgt) => {
                let (alias, feature, op, on, e) = match (src, tgt) {
                    (Err(e), _) => (
                        &flow.source,
                        Feature::Replication,
                        Operation::DescribeConfigs,
                        topic.as_str(),
                        e,
                    ),
                    (_, Err(e)) => (
                        &flow.target,
                        Feature::TopicConfigSync,
                        Operation::AlterConfigs,
                        remote.as_str(),
                        e,
                    ),
                    _ => unreachable!("both read"),
                };
                let text = format!("{e:#}");
                if admin::is_denied(&e) {
                    denials::refused(alias, name, feature, op, denials::topic(on), &text);
                } else {
                    error_event!(
                        warn,
                        name,
                        ErrorKind::DescribeConfigs,
                        topic,
                        error = text,
                        "configs not compared"
                    );
                }
                mismatched += 1;
                in_sync.insert(topic.clone(), false);
                continue;
            }
        };
        let changes = config_changes(flow, &src, &tgt);
        if changes.is_empty() {
            in_sync.insert(topic.clone(), true);
            continue;
        }
        let n = changes.len() as u64;
        match target_admin
            .alter_topic_configs(&remote, changes.clone())
            .await
        {
            Ok(()) => {
                denials::allowed(
                    &flow.target,
                    Operation::AlterConfigs,
                    &denials::topic(&remote),
                );
                metrics::counter!(m::TOPIC_CONFIGS_CHANGED, "flow" => name.clone()).increment(n);
                info!(flow = %name, topic = %remote, changes = ?changes, "remote topic configs synced");
                in_sync.insert(topic.clone(), true);
            }
            Err(e) => {
                let text = format!("{e:#}");
                if admin::is_denied(&e) {
                    denials::refused(
                        &flow.target,
                        name,
                        Feature::TopicConfigSync,
                        Operation::AlterConfigs,
                        denials::topic(&remote),
                        &text,
                    );
                } else {
                    error_event!(warn, name, ErrorKind::AlterConfigs, topic = %remote, changes = ?changes, error = text, "remote topic configs not synced");
                }
                mismatched += 1;
                in_sync.insert(topic.clone(), false);
            }
        }
    }
    metrics::gauge!(m::TOPICS_CONFIG_MISMATCHED, "flow" => name.clone()).set(mismatched as f64);
    in_sync
}

/// The ACLs the target should have for this flow's remote topics, from the
/// source's literal topic ACLs, as MirrorMaker 2 maps them: ALLOW WRITE is
/// never copied (only strait writes remote topics) and ALLOW ALL becomes
/// ALLOW READ; everything else (READ, DESCRIBE, DENY ...) is copied as is.
pub fn target_acls(flow: &Flow, source: &[TopicAcl]) -> BTreeSet<TopicAcl> {
    source
        .iter()
        .filter(|a| flow.replicates(&a.topic))
        .filter_map(|a| {
            let operation = match (a.permission, a.operation) {
                (AclPermission::Allow, AclOperation::Write) => return None,
                (AclPermission::Allow, AclOperation::All) => AclOperation::Read,
                (_, op) => op,
            };
            Some(TopicAcl {
                topic: flow.remote_topic(&a.topic),
                operation,
                ..a.clone()
            })
        })
        .collect()
}

/// What to create on the target, and (when deletions are on) what to
/// remove: ACLs on this flow's remote topics that the source no longer
/// implies. ACLs on other topics are never touched.
pub fn acl_changes(
    flow: &Flow,
    desired: &BTreeSet<TopicAcl>,
    existing: &[TopicAcl],
    remote_topics: &BTreeSet<String>,
) -> (Vec<TopicAcl>, Vec<TopicAcl>) {
    let existing: BTreeSet<&TopicAcl> = existing.iter().collect();
    let create = desired
        .iter()
        .filter(|a| !existing.contains(a))
        .cloned()
        .collect();
    let delete = if flow.sync_acl_deletions {
        existing
            .iter()
            .filter(|a| remote_topics.contains(&a.topic) && !desired.contains(**a))
            .map(|a| (*a).clone())
            .collect()
    } else {
        Vec::new()
    };
    (create, delete)
}

/// One ACL sync round for a flow.
pub async fn sync_acls<A: ClusterAdmin>(
    flow: &Flow,
    source_admin: &A,
    target_admin: &A,
    source: &TopicSizes,
    target: &TopicSizes,
) {
    let name = &flow.name;
    let (src, tgt) = match (
        source_admin.topic_acls().await,
        target_admin.topic_acls().await,
    ) {
        (Ok(s), Ok(t)) => {
            denials::allowed(&flow.source, Operation::Describe, &Resource::Cluster);
            denials::allowed(&flow.target, Operation::Alter, &Resource::Cluster);
            (s, t)
        }
        (src, tgt) => {
            let (alias, op, e) = match (src, tgt) {
                (Err(e), _) => (&flow.source, Operation::Describe, e),
                (_, Err(e)) => (&flow.target, Operation::Alter, e),
                _ => unreachable!("both read"),
            };
            let text = format!("{e:#}");
            if admin::is_denied(&e) {
                denials::refused(alias, name, Feature::AclSync, op, Resource::Cluster, &text);
            } else {
                error_event!(
                    warn,
                    name,
                    ErrorKind::DescribeAcls,
                    error = text,
                    "ACLs not compared"
                );
            }
            return;
        }
    };
    let remote_topics: BTreeSet<String> = source
        .keys()
        .filter(|t| flow.replicates(t))
        .map(|t| flow.remote_topic(t))
        .filter(|r| target.contains_key(r))
        .collect();
    let desired: BTreeSet<TopicAcl> = target_acls(flow, &src)
        .into_iter()
        .filter(|a| remote_topics.contains(&a.topic))
        .collect();
    let (create, delete) = acl_changes(flow, &desired, &tgt, &remote_topics);
    for (what, acls, result) in [
        (
            "created",
            &create,
            if create.is_empty() {
                Ok(())
            } else {
                target_admin.create_acls(create.clone()).await
            },
        ),
        (
            "deleted",
            &delete,
            if delete.is_empty() {
                Ok(())
            } else {
                target_admin.delete_acls(delete.clone()).await
            },
        ),
    ] {
        if acls.is_empty() {
            continue;
        }
        match result {
            Ok(()) => {
                metrics::counter!(m::ACLS_CHANGED, "flow" => name.clone(), "change" => what)
                    .increment(acls.len() as u64);
                info!(flow = %name, acls = ?acls, "remote topic ACLs {what}");
            }
            Err(e) => {
                let text = format!("{e:#}");
                if admin::is_denied(&e) {
                    denials::refused(
                        &flow.target,
                        name,
                        Feature::AclSync,
                        Operation::Alter,
                        Resource::Cluster,
                        &text,
                    );
                } else {
                    error_event!(warn, name, ErrorKind::Acls, acls = ?acls, error = text, "remote topic ACLs not {what}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::config::Config;

    fn flow(extra: &str) -> Flow {
        let text = format!(
            "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n\
             [[flows]]\nsource = \"us\"\ntarget = \"dr\"\ntopics = [\"orders\"]\nsync_acls = true\n{extra}"
        );
        Config::parse(&text).unwrap().flows.remove(0)
    }

    fn acl(topic: &str, who: &str, operation: AclOperation, permission: AclPermission) -> TopicAcl {
        TopicAcl {
            topic: topic.into(),
            principal: format!("User:{who}"),
            host: "*".into(),
            operation,
            permission,
        }
    }

    #[test]
    fn acls_map_as_mirrormaker2_does_so_only_strait_writes() {
        use AclOperation::*;
        use AclPermission::*;
        let source = [
            acl("orders", "alice", Read, Allow),
            acl("orders", "bob", Write, Allow),
            acl("orders", "carol", All, Allow),
            acl("orders", "dave", Write, Deny),
            acl("payments", "erin", Read, Allow), // not replicated by this flow
        ];
        let got: Vec<TopicAcl> = target_acls(&flow(""), &source).into_iter().collect();
        assert_eq!(
            got,
            vec![
                acl("us.orders", "alice", Read, Allow),
                acl("us.orders", "carol", Read, Allow),
                acl("us.orders", "dave", Write, Deny),
            ]
        );
    }

    #[test]
    fn deletions_are_opt_in_and_limited_to_the_flows_remote_topics() {
        use AclOperation::*;
        use AclPermission::*;
        let desired: BTreeSet<TopicAcl> = [acl("us.orders", "alice", Read, Allow)].into();
        let existing = [
            acl("us.orders", "gone", Read, Allow),
            acl("local-topic", "ops", Read, Allow),
        ];
        let remote: BTreeSet<String> = ["us.orders".to_owned()].into();
        let (create, delete) = acl_changes(&flow(""), &desired, &existing, &remote);
        assert_eq!(create, vec![acl("us.orders", "alice", Read, Allow)]);
        assert!(delete.is_empty(), "deletions are off by default");
        let (_, delete) = acl_changes(
            &flow("sync_acl_deletions = true"),
            &desired,
            &existing,
            &remote,
        );
        assert_eq!(
            delete,
            vec![acl("us.orders", "gone", Read, Allow)],
            "never an ACL of another topic"
        );
    }

    #[test]
    fn configs_differing_or_missing_are_set_and_excluded_ones_never() {
        let f = flow("");
        let src: TopicConfigs = [
            ("retention.ms", "1"),
            ("min.insync.replicas", "2"),
            ("cleanup.policy", "compact"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tgt: TopicConfigs = [("cleanup.policy", "compact"), ("segment.ms", "5")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            config_changes(&f, &src, &tgt),
            vec![ConfigOp::Set("retention.ms".into(), "1".into())]
        );
    }

    #[test]
    fn a_remote_topic_admits_the_largest_source_records_and_is_never_lowered() {
        let f = flow("");
        let configs = |pairs: &[(&str, &str)]| -> TopicConfigs {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let src = configs(&[("max.message.bytes", "5242880")]);
        assert_eq!(
            config_changes(&f, &src, &configs(&[("max.message.bytes", "1048588")])),
            vec![ConfigOp::Set("max.message.bytes".into(), "5242880".into())],
            "raised to admit the source's records"
        );
        assert_eq!(
            config_changes(&f, &src, &configs(&[("max.message.bytes", "10485760")])),
            vec![],
            "already admits them: an operator's larger limit stays"
        );
        assert_eq!(
            config_changes(&f, &src, &configs(&[])),
            vec![ConfigOp::Set("max.message.bytes".into(), "5242880".into())]
        );
    }
}
