//! Where everything lives in the store: under `/strait/{deployment}/`
//! (docs/coordination.md).

use crate::model::{TopicPartition, Unit};

#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(deployment: &str) -> Keys {
        Keys {
            root: format!("/strait/{deployment}/"),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// The election key; its holder is the leader controller.
    pub fn leader(&self) -> String {
        format!("{}leader", self.root)
    }

    pub fn workers(&self) -> String {
        format!("{}workers/", self.root)
    }

    pub fn worker(&self, id: &str) -> String {
        format!("{}{id}", self.workers())
    }

    pub fn plans(&self) -> String {
        format!("{}plan/", self.root)
    }

    pub fn plan(&self, worker: &str) -> String {
        format!("{}{worker}", self.plans())
    }

    pub fn owners(&self) -> String {
        format!("{}owners/", self.root)
    }

    pub fn owner(&self, unit: &Unit) -> String {
        format!(
            "{}{}/{}/{}",
            self.owners(),
            unit.flow,
            unit.source.topic,
            unit.source.partition
        )
    }

    /// With exactly-once: `writers/{flow}/{topic}/{partition}`, on no lease,
    /// names the transactional id that may hold an open transaction with
    /// the unit's records (docs/coordination.md, "Exactly-once").
    pub fn writers(&self) -> String {
        format!("{}writers/", self.root)
    }

    pub fn writer(&self, unit: &Unit) -> String {
        format!(
            "{}{}/{}/{}",
            self.writers(),
            unit.flow,
            unit.source.topic,
            unit.source.partition
        )
    }

    pub fn loads(&self) -> String {
        format!("{}load/", self.root)
    }

    pub fn load(&self, worker: &str) -> String {
        format!("{}{worker}", self.loads())
    }

    pub fn admin(&self) -> String {
        format!("{}admin/", self.root)
    }

    pub fn paused_units(&self) -> String {
        format!("{}paused/", self.admin())
    }

    pub fn paused(&self, flow: &str, tp: &TopicPartition) -> String {
        format!(
            "{}{flow}/{}/{}",
            self.paused_units(),
            tp.topic,
            tp.partition
        )
    }

    pub fn drained_workers(&self) -> String {
        format!("{}drained/", self.admin())
    }

    pub fn drained(&self, worker: &str) -> String {
        format!("{}{worker}", self.drained_workers())
    }

    pub fn topic_overrides(&self) -> String {
        format!("{}topics/", self.admin())
    }

    pub fn topic_override(&self, flow: &str, topic: &str) -> String {
        format!("{}{flow}/{topic}", self.topic_overrides())
    }

    /// The last segment of a key under `prefix` (a worker id).
    pub fn id_under<'a>(&self, prefix: &str, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(prefix)
            .filter(|s| !s.is_empty() && !s.contains('/'))
    }

    /// `(flow, topic, partition)` of a key under `prefix` (paused units, owners).
    pub fn unit_under<'a>(&self, prefix: &str, key: &'a str) -> Option<(&'a str, TopicPartition)> {
        let rest = key.strip_prefix(prefix)?;
        let mut it = rest.splitn(3, '/');
        let flow = it.next()?;
        let topic = it.next()?;
        let partition = it.next()?.parse().ok()?;
        Some((
            flow,
            TopicPartition {
                topic: topic.to_owned(),
                partition,
            },
        ))
    }

    /// `(flow, topic)` of a topic override key.
    pub fn topic_under<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix(&self.topic_overrides())?;
        rest.split_once('/')
            .filter(|(f, t)| !f.is_empty() && !t.is_empty() && !t.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_the_deployment_and_parse_back() {
        let k = Keys::new("prod");
        let unit = Unit {
            flow: "a-b".into(),
            source: TopicPartition {
                topic: "orders.v1".into(),
                partition: 7,
            },
            remote_topic: "a.orders.v1".into(),
        };
        assert_eq!(k.owner(&unit), "/strait/prod/owners/a-b/orders.v1/7");
        assert_eq!(k.leader(), "/strait/prod/leader");
        assert_eq!(k.plan("w1"), "/strait/prod/plan/w1");
        let key = k.owner(&unit);
        let (flow, tp) = k.unit_under(&k.owners(), &key).unwrap();
        assert_eq!((flow, &tp), ("a-b", &unit.source));
        assert_eq!(k.id_under(&k.workers(), &k.worker("w-2")), Some("w-2"));
        assert_eq!(k.id_under(&k.workers(), "/strait/prod/workers/"), None);
        assert_eq!(
            k.topic_under(&k.topic_override("a-b", "x")),
            Some(("a-b", "x"))
        );
        // Another deployment's keys never match.
        assert!(!Keys::new("prod2").owners().starts_with(&k.owners()));
    }
}
