//! The one delivery tracker of every producer (ingest, the stream, the batch jobs): the
//! producer's polling thread records each report here, and whoever waits is woken by a
//! condition variable (no polling loop), only when what it waits for has happened.
//!
//! A message carries a batch number as its delivery opaque, or [`NO_BATCH`]:
//! - batches (ingest): reports and the offsets they got are counted per batch, so a batch can
//!   be checkpointed as soon as all of its own messages are acknowledged, while the next batch
//!   is already being sent; the checkpoint then covers offsets of that batch and earlier ones
//!   only, never of a later batch (which recovery would otherwise skip);
//! - unbatched messages (the stream's outputs, the batch jobs' results, ingest's
//!   checkpoints): their count and the next offset per partition, taken by whoever checkpoints.

use std::collections::{HashMap, VecDeque};
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

#[derive(Debug)]
struct State {
    flights: VecDeque<Flight>,
    errors: Vec<String>,
    /// Reports received (success or failure), ever.
    reported: u64,
    /// Wake the waiter when `reported` reaches this.
    wake_at: u64,
    /// topic -> `(partition, the offset after its last acknowledged unbatched message)`:
    /// keyed by the topic alone so that a report looks it up without allocating.
    next_offsets: HashMap<String, Vec<(i32, i64)>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            flights: VecDeque::new(),
            errors: Vec::new(),
            reported: 0,
            wake_at: u64::MAX,
            next_offsets: HashMap::new(),
        }
    }
}

/// Shared between the producer's polling thread and the job.
#[derive(Debug, Default, Clone)]
pub struct Deliveries(Arc<(Mutex<State>, Condvar)>);

impl Deliveries {
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

    /// How many messages failed, and the first failure.
    pub fn failures(&self) -> Result<Option<(usize, String)>> {
        let st = self.lock()?;
        Ok(st.errors.first().map(|e| (st.errors.len(), e.clone())))
    }

    /// Takes the next offsets of the unbatched messages acknowledged since the last call.
    pub fn take_next_offsets(&self) -> Result<Vec<(String, i32, i64)>> {
        let taken = std::mem::take(&mut self.lock()?.next_offsets);
        Ok(taken
            .into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |(p, o)| (t.clone(), p, o)))
            .collect())
    }

    /// Waits until `target` reports have arrived in total (successes and failures).
    pub fn wait_for_reports(&self, target: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        st.wake_at = target;
        while st.reported < target {
            let now = Instant::now();
            if now >= deadline {
                let missing = target - st.reported;
                st.wake_at = u64::MAX;
                return Err(Error::Internal(format!(
                    "{missing} messages not acknowledged within {timeout:?}"
                )));
            }
            st = self
                .0
                .1
                .wait_timeout(st, deadline - now)
                .map_err(|_| Error::Internal("delivery report lock poisoned".into()))?
                .0;
        }
        st.wake_at = u64::MAX;
        Ok(())
    }

    /// The oldest batch if it is acknowledged in full, without waiting; an error, saying
    /// why, when any message was not delivered.
    pub fn try_take_oldest(&self) -> std::result::Result<Option<Flight>, String> {
        let mut st = self
            .0
            .0
            .lock()
            .map_err(|_| "delivery report lock poisoned".to_string())?;
        if let Some(first) = st.errors.first() {
            return Err(format!(
                "{} messages not delivered, first: {first}; the checkpoint did not move, rerun to resume",
                st.errors.len()
            ));
        }
        Ok(match st.flights.front() {
            Some(f) if f.done() => st.flights.pop_front(),
            _ => None,
        })
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

/// The producer context that feeds [`Deliveries`].
pub struct DeliveryContext(pub Deliveries);

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::io::broker_health::log_client_error(error, reason);
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::io::broker_health::log_librdkafka(level, fac, log_message);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let Ok(mut st) = self.0.0.0.lock() else {
            return;
        };
        let (m, failed) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        match failed {
            Some(e) => st
                .errors
                .push(format!("{}[{}]: {e}", m.topic(), m.partition())),
            None => crate::io::broker_health::broker_answered(),
        }
        st.reported += 1;
        // Whether this report completed its batch or the count waited for: the waiter waits
        // for that, and only that (a condvar notification is a system call, too dear to make
        // per message).
        let mut completed = st.reported == st.wake_at;
        if batch == NO_BATCH {
            if failed.is_none() {
                let (topic, partition, next) = (m.topic(), m.partition(), m.offset() + 1);
                let parts = match st.next_offsets.get_mut(topic) {
                    Some(v) => v,
                    None => st.next_offsets.entry(topic.to_string()).or_default(),
                };
                match parts.iter_mut().find(|(p, _)| *p == partition) {
                    Some(e) => e.1 = e.1.max(next),
                    None => parts.push((partition, next)),
                }
            }
        } else {
            // The oldest batches are at the front; a report is almost always for one of them.
            if let Some(f) = st.flights.iter_mut().find(|f| f.batch == batch) {
                f.reported += 1;
                completed |= f.done();
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
