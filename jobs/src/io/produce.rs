//! Messages handed to librdkafka a partition's run at a time (`rd_kafka_produce_batch`)
//! instead of one `rd_kafka_producev` call each.
//!
//! `rdkafka`'s `send` allocates the topic name as a C string per message, and librdkafka then
//! looks the topic up by name under the client's write lock and the partition under the
//! topic's lock, for every message. Here a topic handle is taken once, messages are gathered
//! (their bytes copied into one buffer) and handed over per (topic, partition), so that only
//! the message allocation and the partition queue remain per message. Within a partition the
//! messages keep the order they were pushed in, which is all that Kafka orders.
//!
//! Messages with headers go through `send` as before (`produce_batch` takes no headers).

use std::ffi::{CString, c_void};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

/// A librdkafka topic handle, released on drop.
struct TopicHandle {
    name: String,
    ptr: *mut rd::rd_kafka_topic_t,
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `rd_kafka_topic_new` and is released once, here.
        unsafe { rd::rd_kafka_topic_destroy(self.ptr) }
    }
}

/// One gathered message: where its bytes are in the buffer, and its delivery opaque.
#[derive(Debug, Clone, Copy)]
struct Gathered {
    topic: usize,
    partition: i32,
    /// `buf[at..at + key_len]` is the key, the payload follows it.
    at: usize,
    key_len: usize,
    len: usize,
    opaque: usize,
}

/// Gathers messages for one producer and hands them to librdkafka in runs per partition.
/// Call [`Batcher::flush`] before relying on every pushed message being with the producer;
/// dropping a batcher with messages still gathered discards them.
pub struct Batcher<'p, C: ProducerContext<DeliveryOpaque = usize> + 'static> {
    producer: &'p ThreadedProducer<C>,
    topics: Vec<TopicHandle>,
    buf: Vec<u8>,
    gathered: Vec<Gathered>,
    /// Gathered messages that trigger a flush.
    chunk: usize,
    /// Reused per flush: message indices sorted by (topic, partition), and the C messages.
    order: Vec<u32>,
    msgs: Vec<rd::rd_kafka_message_t>,
}

impl<'p, C: ProducerContext<DeliveryOpaque = usize> + 'static> Batcher<'p, C> {
    /// A batcher that hands messages over whenever `chunk` of them are gathered (small enough
    /// that librdkafka's broker thread always has work, large enough to batch the locks).
    pub fn new(producer: &'p ThreadedProducer<C>, chunk: usize) -> Batcher<'p, C> {
        Batcher {
            producer,
            topics: Vec::new(),
            buf: Vec::new(),
            gathered: Vec::with_capacity(chunk),
            chunk: chunk.max(1),
            order: Vec::with_capacity(chunk),
            msgs: Vec::with_capacity(chunk),
        }
    }

    fn topic(&mut self, name: &str) -> Result<usize, KafkaError> {
        if let Some(i) = self.topics.iter().position(|t| t.name == name) {
            return Ok(i);
        }
        let cname = CString::new(name)?;
        // SAFETY: the client pointer is valid while `producer` lives, which outlives `self`;
        // a NULL conf takes the client's default topic configuration.
        let ptr = unsafe {
            rd::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                cname.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if ptr.is_null() {
            // SAFETY: reads the calling thread's last librdkafka error.
            let code = unsafe { rd::rd_kafka_last_error() };
            return Err(KafkaError::MessageProduction(code.into()));
        }
        self.topics.push(TopicHandle {
            name: name.to_string(),
            ptr,
        });
        Ok(self.topics.len() - 1)
    }

    /// Gathers one message (its key and payload are copied); hands the gathered ones over
    /// when the chunk is full.
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
        opaque: usize,
    ) -> Result<(), KafkaError> {
        let topic = match self.topics.last() {
            // Almost every message goes to the topic of the one before it.
            Some(t) if t.name == topic => self.topics.len() - 1,
            _ => self.topic(topic)?,
        };
        let at = self.buf.len();
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(payload);
        self.gathered.push(Gathered {
            topic,
            partition,
            at,
            key_len: key.len(),
            len: payload.len(),
            opaque,
        });
        if self.gathered.len() >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands every gathered message to the producer, waiting while its queue is full. On an
    /// error the messages not yet handed over are discarded and the error returned.
    pub fn flush(&mut self) -> Result<(), KafkaError> {
        let result = self.hand_over();
        self.gathered.clear();
        self.buf.clear();
        result
    }

    fn hand_over(&mut self) -> Result<(), KafkaError> {
        self.order.clear();
        self.order.extend(0..self.gathered.len() as u32);
        let g = &self.gathered;
        // Stable: a partition's messages keep their order.
        self.order
            .sort_by_key(|&i| (g[i as usize].topic, g[i as usize].partition));
        let mut start = 0;
        while start < self.order.len() {
            let first = g[self.order[start] as usize];
            let end = start
                + self.order[start..]
                    .iter()
                    .take_while(|&&i| {
                        let m = &g[i as usize];
                        m.topic == first.topic && m.partition == first.partition
                    })
                    .count();
            self.msgs.clear();
            for &i in &self.order[start..end] {
                let m = &g[i as usize];
                // librdkafka copies key and payload (F_COPY); it never writes through these.
                let base = self.buf.as_ptr().wrapping_add(m.at) as *mut c_void;
                self.msgs.push(rd::rd_kafka_message_t {
                    err: rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                    rkt: std::ptr::null_mut(),
                    partition: m.partition,
                    payload: base.wrapping_byte_add(m.key_len),
                    len: m.len,
                    key: base,
                    key_len: m.key_len,
                    offset: 0,
                    _private: m.opaque as *mut c_void,
                });
            }
            let rkt = self.topics[first.topic].ptr;
            let mut done = 0;
            while done < self.msgs.len() {
                let rest = &mut self.msgs[done..];
                // SAFETY: `rkt` is a live handle of this producer; `rest` points at valid
                // messages whose key and payload point into `self.buf`, which is not touched
                // until the call returns (librdkafka copies them, F_COPY).
                let n = unsafe {
                    rd::rd_kafka_produce_batch(
                        rkt,
                        first.partition,
                        rd::RD_KAFKA_MSG_F_COPY,
                        rest.as_mut_ptr(),
                        rest.len() as i32,
                    )
                };
                if usize::try_from(n).is_ok_and(|n| n == rest.len()) {
                    break;
                }
                // Every message before the first failed one was taken. A full queue fails
                // that message and every later one: hand them over again once the broker
                // thread has drained some; any other error ends the run.
                let Some(failed) = rest
                    .iter()
                    .position(|m| m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
                else {
                    break;
                };
                let code: RDKafkaErrorCode = rest[failed].err.into();
                if code != RDKafkaErrorCode::QueueFull {
                    return Err(KafkaError::MessageProduction(code));
                }
                done += failed;
                std::thread::sleep(Duration::from_millis(2));
            }
            start = end;
        }
        Ok(())
    }
}

/// Sends what the producer holds at once, `linger.ms` notwithstanding, and waits until every
/// message handed to it has its delivery report (the reports' callbacks have run when this
/// returns). Woken by the last report: `rdkafka`'s own `flush` polls in steps of 100 ms.
pub fn flush_now<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer is valid while `producer` lives. rdkafka serves delivery
    // reports as events on its own thread, so librdkafka's flush only waits for its message
    // count to reach zero; it does not poll the queue that thread serves.
    let code: RDKafkaErrorCode =
        unsafe { rd::rd_kafka_flush(producer.client().native_ptr(), ms) }.into();
    match code {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::Flush(code)),
    }
}
