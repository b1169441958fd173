//! What a Kafka error means for the data plane: the produce side reads
//! strait_common's one table of codes; the consume side is decided here.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use strait_common::kafka_errors::{meaning_of, OnProduce};

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient: librdkafka retries by itself, or the caller waits and tries again.
    Retry,
    /// The target refused this record for good (too large, not authorised,
    /// invalid): stop the unit visibly, or skip and count if configured.
    Refused,
    /// The session's clients are unusable (fatal idempotence error,
    /// destroyed handle, delivery given up): restart the flow's session from
    /// committed positions. At-least-once: re-sends are duplicates, not loss.
    RestartSession,
}

/// What an operator can do about a refusal, where the error says it.
pub fn remedy(err: &KafkaError) -> Option<&'static str> {
    meaning_of(err).remedy
}

/// Classifies an error of a produce call or a delivery report
/// (strait_common's one table, [`strait_common::kafka_errors`]).
pub fn classify_produce(err: &KafkaError) -> Action {
    match meaning_of(err).on_produce {
        OnProduce::Refused => Action::Refused,
        OnProduce::Retry => Action::Retry,
        OnProduce::Restart => Action::RestartSession,
    }
}

/// A record for a partition the producer's metadata does not have (local
/// to librdkafka: it was not sent).
pub fn unknown_partition(err: &KafkaError) -> bool {
    matches!(err, KafkaError::MessageProduction(Code::UnknownPartition))
}

/// Classifies an error returned by the consumer's poll.
pub fn classify_consume(err: &KafkaError) -> Action {
    match err.rdkafka_error_code() {
        Some(Code::Fatal) => Action::RestartSession,
        Some(Code::TopicAuthorizationFailed | Code::GroupAuthorizationFailed) => {
            Action::RestartSession
        }
        // Transport errors, leader changes, offset resets: librdkafka
        // recovers and keeps fetching.
        _ => Action::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_refusals_are_told_apart_from_transient_errors() {
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(
            classify_produce(&e(Code::MessageSizeTooLarge)),
            Action::Refused
        );
        assert_eq!(
            classify_produce(&e(Code::TopicAuthorizationFailed)),
            Action::Refused
        );
        assert_eq!(classify_produce(&e(Code::QueueFull)), Action::Retry);
        assert_eq!(
            classify_produce(&e(Code::MessageTimedOut)),
            Action::RestartSession
        );
        assert_eq!(
            classify_produce(&e(Code::OutOfOrderSequenceNumber)),
            Action::RestartSession
        );
        assert!(remedy(&e(Code::MessageSizeTooLarge))
            .unwrap()
            .contains("max.message.bytes of the remote topic"));
        assert_eq!(remedy(&e(Code::QueueFull)), None);
        assert!(unknown_partition(&e(Code::UnknownPartition)));
        assert!(!unknown_partition(&e(Code::UnknownTopicOrPartition)));
    }

    #[test]
    fn consumer_transport_errors_are_retried_in_place() {
        let e = |c| KafkaError::MessageConsumption(c);
        assert_eq!(
            classify_consume(&e(Code::BrokerTransportFailure)),
            Action::Retry
        );
        assert_eq!(classify_consume(&e(Code::Fatal)), Action::RestartSession);
    }
}
