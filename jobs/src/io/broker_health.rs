//! The brokers' health as the clients see it: lost connections (which librdkafka recovers
//! from by itself) logged once when they go and once when messages flow again, not once per
//! reconnect attempt; librdkafka's own lines routed to our logs.

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Logs a client error, except end-of-partition, which consumers that read to the end
/// receive on purpose (some librdkafka versions also raise it as a global error).
pub fn log_client_error(error: KafkaError, reason: &str) {
    if matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    if let Some(code) = error.rdkafka_error_code()
        && transport(code)
    {
        // librdkafka reconnects and resends by itself: one line when the brokers go away,
        // one when they answer again (`broker_answered`), not one per reconnect attempt.
        if !BROKERS_DOWN.swap(true, Ordering::Relaxed) {
            tracing::warn!(message = "Kafka brokers unreachable; reconnecting, nothing is dropped and no checkpoint moves until they answer.", %error, reason);
        } else {
            tracing::debug!(message = "Kafka brokers still unreachable.", %error, reason);
        }
        return;
    }
    tracing::error!(message = "Kafka client error.", %error, reason);
}

/// Whether the brokers were last reported unreachable.
static BROKERS_DOWN: AtomicBool = AtomicBool::new(false);

/// Errors of the connection to the brokers, which librdkafka recovers from by itself.
pub fn transport(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::UnknownTopicOrPartition
    )
}

/// A message came through: if the brokers were reported unreachable, say they are back.
#[inline]
pub fn broker_answered() {
    if BROKERS_DOWN.load(Ordering::Relaxed) && BROKERS_DOWN.swap(false, Ordering::Relaxed) {
        tracing::info!(message = "Kafka brokers answer again; carrying on.");
    }
}

/// librdkafka's own log lines: errors and warnings as such, but those about a lost
/// connection (`FAIL`), which [`log_client_error`] reports once, at debug level.
pub fn log_librdkafka(level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    let connection = fac.contains("FAIL");
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error if !connection => {
            tracing::error!(message = "librdkafka", fac, line)
        }
        L::Warning if !connection => tracing::warn!(message = "librdkafka", fac, line),
        _ => tracing::debug!(message = "librdkafka", fac, line),
    }
}
