//! Delivery reports of ingest's batches in flight.
//!
//! Every message ingest sends carries its batch's number as the delivery opaque. The producer's
//! polling thread counts reports and the offsets they got per batch, so a batch can be
//! checkpointed as soon as all of its own messages are acknowledged, while the next batch is
//! already being sent; the checkpoint then covers offsets of that batch and earlier ones only,
//! never of a later batch (which recovery would otherwise skip).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::{Error, Result};

/// The opaque of messages that belong to no batch (checkpoints): only their failures count.
pub const NO_BATCH: usize = 0;

/// One batch's reports so far.
#[derive(Debug)]
pub struct Flight {
    pub batch: usize,
    /// Messages sent, once the batch is completely handed to the producer.
    pub sent: Option<u64>,
    pub reported: u64,
    /// `(topic, partition, offset after the batch's last acknowledged message there)`.
    pub next_offsets: Vec<(String, i32, i64)>,
}

impl Flight {
    fn done(&self) -> bool {
        self.sent.is_some_and(|n| self.reported >= n)
    }
}

#[derive(Debug, Default)]
struct State {
    flights: VecDeque<Flight>,
    errors: Vec<String>,
}

/// Shared between the producer's polling thread and ingest.
#[derive(Debug, Default, Clone)]
pub struct Flights(Arc<(Mutex<State>, Condvar)>);

impl Flights {
    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.0
            .0
            .lock()
            .map_err(|_| Error::Internal("delivery report lock poisoned".into()))
    }

    /// Starts tracking batch `batch` (before its first message is sent).
    pub fn open(&self, batch: usize) -> Result<()> {
        self.lock()?.flights.push_back(Flight {
            batch,
            sent: None,
            reported: 0,
            next_offsets: Vec::new(),
        });
        Ok(())
    }

    /// Records that batch `batch` is completely sent, with `sent` messages.
    pub fn close(&self, batch: usize, sent: u64) -> Result<()> {
        let mut st = self.lock()?;
        if let Some(f) = st.flights.iter_mut().find(|f| f.batch == batch) {
            f.sent = Some(sent);
        }
        drop(st);
        self.0.1.notify_all();
        Ok(())
    }

    /// The first delivery failure, if any message failed (checkpoints included).
    pub fn first_failure(&self) -> Result<Option<String>> {
        Ok(self.lock()?.errors.first().cloned())
    }

    /// Waits until the oldest batch is acknowledged in full and returns its reports. Fails,
    /// saying why, at once when any message (of any batch, or a checkpoint) was not delivered,
    /// or when the batch is not acknowledged within `timeout`.
    pub fn take_oldest(&self, timeout: Duration) -> std::result::Result<Flight, String> {
        let deadline = Instant::now() + timeout;
        let poisoned = |_| "delivery report lock poisoned".to_string();
        let mut st = self.0.0.lock().map_err(poisoned)?;
        loop {
            if let Some(first) = st.errors.first() {
                return Err(format!(
                    "{} messages not delivered, first: {first}; the checkpoint did not move, rerun to resume",
                    st.errors.len()
                ));
            }
            let Some(f) = st.flights.front() else {
                return Err("no batch in flight".into());
            };
            if f.done() {
                return st
                    .flights
                    .pop_front()
                    .ok_or_else(|| "no batch in flight".into());
            }
            let now = Instant::now();
            if now >= deadline {
                let sent = f.sent.unwrap_or(0);
                return Err(format!(
                    "{} of {sent} messages of a batch not acknowledged within {timeout:?}",
                    sent.saturating_sub(f.reported)
                ));
            }
            st = self
                .0
                .1
                .wait_timeout(st, deadline - now)
                .map_err(|_| "delivery report lock poisoned".to_string())?
                .0;
        }
    }
}

/// The producer context that feeds [`Flights`].
pub struct FlightContext(pub Flights);

impl ClientContext for FlightContext {}

impl ProducerContext for FlightContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let Ok(mut st) = self.0.0.0.lock() else {
            return;
        };
        let (m, failed) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        if let Some(e) = failed {
            st.errors
                .push(format!("{}[{}]: {e}", m.topic(), m.partition()));
        }
        // Whether this report completed its batch: ingest waits for that, and only that
        // (a condvar notification is a system call, too dear to make per message).
        let mut completed = false;
        if batch != NO_BATCH {
            // The oldest batches are at the front; a report is almost always for one of them.
            if let Some(f) = st.flights.iter_mut().find(|f| f.batch == batch) {
                f.reported += 1;
                completed = f.done();
                if failed.is_none() {
                    let (topic, partition, next) = (m.topic(), m.partition(), m.offset() + 1);
                    match f
                        .next_offsets
                        .iter_mut()
                        .find(|(t, p, _)| *p == partition && t == topic)
                    {
                        Some(e) => e.2 = e.2.max(next),
                        None => f.next_offsets.push((topic.to_string(), partition, next)),
                    }
                }
            }
        }
        let wake = failed.is_some() || completed;
        drop(st);
        if wake {
            self.0.0.1.notify_all();
        }
    }
}
