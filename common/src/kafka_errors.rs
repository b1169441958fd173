//! The one table of what a Kafka error code means to strait: the class it
//! is counted under (`strait_errors_total{kind}`), what the data plane does
//! about a record whose produce failed with it, whether it is an
//! authorization refusal (the preflight's and the run-time refusals'
//! business), and what an operator can do. Every other place asks here, so
//! a code cannot be a refusal in one place and `other` in another.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

use crate::error_kind::ErrorKind;

/// What the data plane does about a record whose produce failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnProduce {
    /// Transient: wait and send it again.
    Retry,
    /// The target refused it for good (too large, not authorised, invalid):
    /// stop the unit visibly, or skip and count if configured.
    Refused,
    /// The producer's view cannot be trusted (with no delivery timeout,
    /// librdkafka never gives a record up on its own): restart the session
    /// from committed positions.
    Restart,
}

/// What one code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meaning {
    pub kind: ErrorKind,
    pub on_produce: OnProduce,
    /// An authorization refusal.
    pub denial: bool,
    /// What an operator can do about it, where the code says it.
    pub remedy: Option<&'static str>,
}

const TOO_LARGE: &str = "raise max.message.bytes of the remote topic (and message.max.bytes of the target brokers, and replica.fetch.max.bytes where it is lower), or message.max.bytes in the target cluster's kafka table if it is set there";
const GRANT_WRITE: &str = "grant strait's principal Write on the remote topic";

/// The table.
pub fn meaning(code: Code) -> Meaning {
    use ErrorKind as K;
    use OnProduce::*;
    let m = |kind, on_produce| Meaning {
        kind,
        on_produce,
        denial: false,
        remedy: None,
    };
    match code {
        Code::MessageSizeTooLarge | Code::InvalidMessageSize => Meaning {
            remedy: Some(TOO_LARGE),
            ..m(K::RecordTooLarge, Refused)
        },
        Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed => Meaning {
            denial: true,
            remedy: Some(GRANT_WRITE),
            ..m(K::NotAuthorised, Refused)
        },
        // Not about a record: the group or transactional id of the session.
        Code::GroupAuthorizationFailed | Code::TransactionalIdAuthorizationFailed => Meaning {
            denial: true,
            ..m(K::NotAuthorised, Restart)
        },
        Code::InvalidMessage
        | Code::InvalidRecord
        | Code::InvalidTimestamp
        | Code::PolicyViolation
        | Code::InvalidRequiredAcks
        | Code::UnsupportedForMessageFormat => m(K::InvalidRecord, Refused),
        Code::MessageTimedOut | Code::RequestTimedOut => m(K::Timeout, Restart),
        Code::BrokerTransportFailure | Code::AllBrokersDown => m(K::Transport, Restart),
        Code::UnknownPartition | Code::UnknownTopicOrPartition => m(K::UnknownPartition, Restart),
        Code::QueueFull => m(K::QueueFull, Retry),
        Code::Fatal => m(K::Fatal, Restart),
        Code::PurgeQueue | Code::PurgeInflight => m(K::Purged, Restart),
        _ => m(K::Other, Restart),
    }
}

impl ErrorKind {
    /// The class of a Kafka client's error, from the table.
    pub fn of(err: &KafkaError) -> ErrorKind {
        meaning_of(err).kind
    }
}

/// The meaning of a client error; errors without a code are `other`.
pub fn meaning_of(err: &KafkaError) -> Meaning {
    match err.rdkafka_error_code() {
        Some(code) => meaning(code),
        None => Meaning {
            kind: ErrorKind::Other,
            on_produce: OnProduce::Restart,
            denial: false,
            remedy: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code librdkafka knows (its own, negative, and Kafka's), from
    /// its table of error descriptions.
    fn all_codes() -> Vec<Code> {
        let mut descs: *const rdkafka::bindings::rd_kafka_err_desc = std::ptr::null();
        let mut n: usize = 0;
        // SAFETY: librdkafka hands out a pointer to its static table and its
        // length; entries without a name are unused slots.
        unsafe {
            rdkafka::bindings::rd_kafka_get_err_descs(&mut descs, &mut n);
            std::slice::from_raw_parts(descs, n)
                .iter()
                .filter(|d| !d.name.is_null())
                .map(|d| Code::from(d.code))
                .collect()
        }
    }

    #[test]
    fn the_table_agrees_with_itself_for_every_code() {
        let codes = all_codes();
        assert!(codes.len() > 150, "librdkafka's table: {}", codes.len());
        for code in codes {
            let x = meaning(code);
            if x.on_produce == OnProduce::Refused {
                assert!(
                    matches!(
                        x.kind,
                        ErrorKind::RecordTooLarge
                            | ErrorKind::NotAuthorised
                            | ErrorKind::InvalidRecord
                    ),
                    "{code:?}: a refusal counted as {}",
                    x.kind
                );
            }
            assert_eq!(
                x.denial,
                x.kind == ErrorKind::NotAuthorised,
                "{code:?}: denial and class disagree"
            );
            if x.remedy.is_some() {
                assert_eq!(x.on_produce, OnProduce::Refused, "{code:?}");
            }
        }
    }

    #[test]
    fn a_policy_violation_is_a_refused_invalid_record() {
        let x = meaning(Code::PolicyViolation);
        assert_eq!(
            (x.kind, x.on_produce),
            (ErrorKind::InvalidRecord, OnProduce::Refused)
        );
        let x = meaning(Code::GroupAuthorizationFailed);
        assert_eq!(
            (x.kind, x.on_produce, x.denial),
            (ErrorKind::NotAuthorised, OnProduce::Restart, true)
        );
        assert_eq!(
            meaning(Code::InvalidReplicationFactor).kind,
            ErrorKind::Other
        );
    }
}
