//! The admin operations the control plane needs, behind one seam: the
//! Kafka implementation (rdkafka's admin client), and a double for tests
//! of what a test broker cannot do (tansu has no CreatePartitions).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::error::{KafkaError, RDKafkaError};

use strait_common::config::ClusterConfig;

use crate::native_admin::{
    create_topic_acls, delete_topic_acls, describe_topic_acls, describe_topic_configs,
    incremental_alter_topic, AdminError, ConfigOp, GroupError, TopicAcl,
};
use strait_common::access::denials;
use strait_common::kafka::client_config;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Partition count of every topic of a cluster.
pub type TopicSizes = BTreeMap<String, i32>;

pub trait ClusterAdmin: Send + Sync + 'static {
    /// Every topic and its partition count.
    fn topic_sizes(&self) -> impl Future<Output = anyhow::Result<TopicSizes>> + Send;
    /// Creates a topic (`replication_factor` None: the cluster's default);
    /// `Ok(false)` when it already exists.
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: Option<i32>,
        config: &[(&str, &str)],
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Grows a topic to `total` partitions (never shrinks).
    fn create_partitions(
        &self,
        name: &str,
        total: i32,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The configs set on the topic itself (not broker defaults), and the
    /// effective `max.message.bytes` whatever sets it: the largest record
    /// batch the topic holds, which its remote topic must admit.
    fn topic_configs(
        &self,
        name: &str,
    ) -> impl Future<Output = anyhow::Result<TopicConfigs>> + Send;
    /// Changes only the named configs (IncrementalAlterConfigs).
    fn alter_topic_configs(
        &self,
        name: &str,
        ops: Vec<ConfigOp>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Every literal topic ACL.
    fn topic_acls(&self) -> impl Future<Output = anyhow::Result<Vec<TopicAcl>>> + Send;
    fn create_acls(&self, acls: Vec<TopicAcl>) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn delete_acls(&self, acls: Vec<TopicAcl>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Topic-level config overrides: name -> value.
/// The topic config that bounds a record's size.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

pub type TopicConfigs = BTreeMap<String, String>;

/// A request refused with `code`: "{what}: {code}", the code kept
/// ([`kafka_code`] finds it).
fn refused(code: RDKafkaErrorCode, what: String) -> anyhow::Error {
    AdminError::Kafka {
        code,
        message: format!("{what}: {code}"),
    }
    .into()
}

/// The Kafka (or librdkafka) error code `e` carries: the first one along
/// its chain of causes, from the admin calls ([`AdminError`]), rdkafka's
/// clients ([`KafkaError`], [`RDKafkaError`]) or a group request
/// ([`GroupError`]). `None` where nothing in it has one (a refusal
/// librdkafka gave only as text, a task that panicked, ...).
pub fn kafka_code(e: &anyhow::Error) -> Option<RDKafkaErrorCode> {
    e.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<AdminError>() {
            e.code()
        } else if let Some(e) = cause.downcast_ref::<KafkaError>() {
            match e {
                // A whole admin request failed: rdkafka keeps the code but
                // does not give it as `rdkafka_error_code`.
                KafkaError::AdminOp(code) => Some(*code),
                e => e.rdkafka_error_code(),
            }
        } else if let Some(e) = cause.downcast_ref::<RDKafkaError>() {
            Some(e.code())
        } else {
            cause.downcast_ref::<GroupError>().map(|e| e.code)
        }
    })
}

/// Whether `e` is an authorization refusal, by its code
/// ([`denials::is_denial`]).
pub fn is_denied(e: &anyhow::Error) -> bool {
    kafka_code(e).is_some_and(denials::is_denial)
}

/// A cluster's admin API through librdkafka.
#[derive(Clone)]
pub struct KafkaAdmin(Arc<AdminClient<DefaultClientContext>>);

impl KafkaAdmin {
    pub fn new(cluster: &ClusterConfig) -> anyhow::Result<Self> {
        Ok(KafkaAdmin(Arc::new(
            client_config(cluster)
                .create()
                .context("cannot create admin client")?,
        )))
    }
}

impl ClusterAdmin for KafkaAdmin {
    async fn topic_sizes(&self) -> anyhow::Result<TopicSizes> {
        let admin = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let md = admin
                .inner()
                .fetch_metadata(None, TIMEOUT)
                .context("metadata request failed")?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                .collect())
        })
        .await?
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: Option<i32>,
        config: &[(&str, &str)],
    ) -> anyhow::Result<bool> {
        let rf = TopicReplication::Fixed(replication_factor.unwrap_or(-1));
        let mut topic = NewTopic::new(name, partitions, rf);
        for (k, v) in config {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        match self
            .0
            .create_topics([&topic], &opts)
            .await?
            .into_iter()
            .next()
        {
            Some(Ok(_)) => Ok(true),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
            Some(Err((_, code))) => Err(refused(code, format!("cannot create topic {name}"))),
            None => Err(anyhow!("no result creating topic {name}")),
        }
    }

    async fn create_partitions(&self, name: &str, total: i32) -> anyhow::Result<()> {
        let grow = NewPartitions::new(name, total as usize);
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        match self
            .0
            .create_partitions([&grow], &opts)
            .await?
            .into_iter()
            .next()
        {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(refused(
                code,
                format!("cannot grow topic {name} to {total} partitions"),
            )),
            None => Err(anyhow!("no result growing topic {name}")),
        }
    }

    async fn topic_configs(&self, name: &str) -> anyhow::Result<TopicConfigs> {
        // Not rdkafka's describe_configs: it drops the topic's error, and a
        // refused topic would read as one without configs.
        let admin = self.0.clone();
        let topic = name.to_owned();
        let entries = tokio::task::spawn_blocking(move || {
            describe_topic_configs(admin.inner(), &topic, TIMEOUT)
        })
        .await??;
        Ok(entries
            .into_iter()
            .filter(|e| (!e.is_default && e.topic_level) || e.name == MAX_MESSAGE_BYTES)
            .filter_map(|e| Some((e.name, e.value?)))
            .collect())
    }

    async fn alter_topic_configs(&self, name: &str, ops: Vec<ConfigOp>) -> anyhow::Result<()> {
        let admin = self.0.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            incremental_alter_topic(admin.inner(), &name, &ops, TIMEOUT)
        })
        .await?
        .map_err(anyhow::Error::from)
    }

    async fn topic_acls(&self) -> anyhow::Result<Vec<TopicAcl>> {
        let admin = self.0.clone();
        Ok(
            tokio::task::spawn_blocking(move || describe_topic_acls(admin.inner(), TIMEOUT))
                .await??,
        )
    }

    async fn create_acls(&self, acls: Vec<TopicAcl>) -> anyhow::Result<()> {
        let admin = self.0.clone();
        Ok(
            tokio::task::spawn_blocking(move || create_topic_acls(admin.inner(), &acls, TIMEOUT))
                .await??,
        )
    }

    async fn delete_acls(&self, acls: Vec<TopicAcl>) -> anyhow::Result<()> {
        let admin = self.0.clone();
        Ok(
            tokio::task::spawn_blocking(move || delete_topic_acls(admin.inner(), &acls, TIMEOUT))
                .await??,
        )
    }
}

/// An in-memory cluster for tests of the control plane.
#[cfg(test)]
pub mod double {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct FakeCluster {
        pub topics: Mutex<TopicSizes>,
        pub configs: Mutex<BTreeMap<String, TopicConfigs>>,
        pub acls: Mutex<std::collections::BTreeSet<TopicAcl>>,
        /// When false, CreatePartitions fails like on a broker without it.
        pub can_grow: bool,
        pub calls: Mutex<Vec<String>>,
        /// Topics whose configs are not described yet (a broker whose
        /// metadata lags just after a creation): none are reported.
        pub undescribed: Mutex<std::collections::BTreeSet<String>>,
        /// When true, describing configs or ACLs never answers (a target
        /// that hangs); `stalls` counts the calls left hanging.
        pub stalled: AtomicBool,
        pub stalls: AtomicUsize,
    }

    impl FakeCluster {
        pub fn with(topics: &[(&str, i32)], can_grow: bool) -> Arc<Self> {
            Arc::new(FakeCluster {
                topics: Mutex::new(topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()),
                configs: Mutex::default(),
                acls: Mutex::default(),
                can_grow,
                calls: Mutex::default(),
                undescribed: Mutex::default(),
                stalled: AtomicBool::new(false),
                stalls: AtomicUsize::new(0),
            })
        }

        /// Hangs for good while `stalled`.
        async fn maybe_stall(&self) {
            if self.stalled.load(Ordering::SeqCst) {
                self.stalls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }

        pub fn size(&self, topic: &str) -> Option<i32> {
            self.topics.lock().unwrap().get(topic).copied()
        }

        pub fn set(&self, topic: &str, partitions: i32) {
            self.topics
                .lock()
                .unwrap()
                .insert(topic.to_owned(), partitions);
        }
    }

    impl ClusterAdmin for Arc<FakeCluster> {
        async fn topic_sizes(&self) -> anyhow::Result<TopicSizes> {
            Ok(self.topics.lock().unwrap().clone())
        }

        async fn create_topic(
            &self,
            name: &str,
            partitions: i32,
            replication_factor: Option<i32>,
            config: &[(&str, &str)],
        ) -> anyhow::Result<bool> {
            let rf = replication_factor
                .map(|r| format!(" rf{r}"))
                .unwrap_or_default();
            self.calls
                .lock()
                .unwrap()
                .push(format!("create {name} {partitions}{rf}"));
            let mut t = self.topics.lock().unwrap();
            if t.contains_key(name) {
                return Ok(false);
            }
            t.insert(name.to_owned(), partitions);
            let c = config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.configs.lock().unwrap().insert(name.to_owned(), c);
            Ok(true)
        }

        async fn topic_configs(&self, name: &str) -> anyhow::Result<TopicConfigs> {
            self.maybe_stall().await;
            if self.undescribed.lock().unwrap().contains(name) {
                return Ok(TopicConfigs::new());
            }
            Ok(self
                .configs
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or_default())
        }

        async fn topic_acls(&self) -> anyhow::Result<Vec<TopicAcl>> {
            self.maybe_stall().await;
            Ok(self.acls.lock().unwrap().iter().cloned().collect())
        }

        async fn create_acls(&self, acls: Vec<TopicAcl>) -> anyhow::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("create acls {}", acls.len()));
            self.acls.lock().unwrap().extend(acls);
            Ok(())
        }

        async fn delete_acls(&self, acls: Vec<TopicAcl>) -> anyhow::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("delete acls {}", acls.len()));
            let mut all = self.acls.lock().unwrap();
            for a in &acls {
                all.remove(a);
            }
            Ok(())
        }

        async fn alter_topic_configs(&self, name: &str, ops: Vec<ConfigOp>) -> anyhow::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("alter {name} {ops:?}"));
            let mut all = self.configs.lock().unwrap();
            let c = all.entry(name.to_owned()).or_default();
            for op in ops {
                match op {
                    ConfigOp::Set(k, v) => {
                        c.insert(k, v);
                    }
                    ConfigOp::Delete(k) => {
                        c.remove(&k);
                    }
                }
            }
            Ok(())
        }

        async fn create_partitions(&self, name: &str, total: i32) -> anyhow::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("grow {name} {total}"));
            if !self.can_grow {
                return Err(refused(
                    RDKafkaErrorCode::UnsupportedVersion,
                    format!("cannot grow topic {name}"),
                ));
            }
            let mut t = self.topics.lock().unwrap();
            let have = t.get_mut(name).ok_or_else(|| anyhow!("no topic {name}"))?;
            *have = (*have).max(total);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as Code;

    #[test]
    fn a_refused_request_keeps_its_code_and_its_text() {
        let e = refused(
            Code::TopicAuthorizationFailed,
            "cannot create topic t".into(),
        );
        assert_eq!(
            format!("{e:#}"),
            "cannot create topic t: TopicAuthorizationFailed (Broker: Topic authorization failed)"
        );
        assert_eq!(kafka_code(&e), Some(Code::TopicAuthorizationFailed));
        assert!(is_denied(&e));
    }

    #[test]
    fn the_code_is_found_under_any_context() {
        let cases: Vec<(anyhow::Error, Code)> = vec![
            (
                anyhow::Error::from(AdminError::Kafka {
                    code: Code::ClusterAuthorizationFailed,
                    message: "x".into(),
                }),
                Code::ClusterAuthorizationFailed,
            ),
            (
                AdminError::Rejected {
                    name: "t".into(),
                    message: "x".into(),
                    code: Some(Code::TopicAuthorizationFailed),
                }
                .into(),
                Code::TopicAuthorizationFailed,
            ),
            (
                KafkaError::MessageConsumption(Code::TopicAuthorizationFailed).into(),
                Code::TopicAuthorizationFailed,
            ),
            (
                KafkaError::AdminOp(Code::ClusterAuthorizationFailed).into(),
                Code::ClusterAuthorizationFailed,
            ),
            (
                GroupError {
                    code: Code::GroupAuthorizationFailed,
                    message: String::new(),
                }
                .into(),
                Code::GroupAuthorizationFailed,
            ),
            (
                AdminError::Timeout(Duration::from_secs(1)).into(),
                Code::RequestTimedOut,
            ),
        ];
        for (e, code) in cases {
            let e = e.context("inner").context("outer");
            assert_eq!(kafka_code(&e), Some(code), "{e:#}");
            assert_eq!(is_denied(&e), denials::is_denial(code), "{e:#}");
        }
    }

    #[test]
    fn a_cause_without_a_code_is_passed_over() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapped(#[source] GroupError);
        let e = anyhow::Error::from(Wrapped(GroupError {
            code: Code::GroupAuthorizationFailed,
            message: String::new(),
        }))
        .context("outer");
        assert_eq!(kafka_code(&e), Some(Code::GroupAuthorizationFailed));
        assert!(is_denied(&e));
    }

    #[test]
    fn text_alone_is_not_a_refusal() {
        // Only the code decides: words that read like a refusal are not one.
        let e = anyhow!("Broker: Topic authorization failed").context("outer");
        assert_eq!(kafka_code(&e), None);
        assert!(!is_denied(&e));
        let e = anyhow::Error::from(KafkaError::ClientCreation("authorization failed".into()));
        assert!(!is_denied(&e));
        let e = anyhow::Error::from(AdminError::Rejected {
            name: "acl".into(),
            message: "authorization failed".into(),
            code: None,
        });
        assert!(!is_denied(&e));
    }
}
