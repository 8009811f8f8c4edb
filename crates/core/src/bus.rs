//! The message bus a stage reads from and publishes to: Kafka in production
//! ([`crate::kafka`]), an in-memory log in the embedded mode ([`crate::memory`]). Both give
//! the same guarantees to the stage runner: records arrive in order per partition, a
//! published record is acknowledged once durable, and an input offset is stored only when the
//! runner says every output of that record is acknowledged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

/// A record read from a topic.
#[derive(Debug, Clone)]
pub struct InRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl InRecord {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A record to publish.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The broker did not acknowledge the record (after the client's own retries).
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    /// Reading failed in a way the client does not recover from by itself.
    /// The broker or client refuses this record itself (too large, invalid): retrying cannot
    /// help, so the record that produced it is dead-lettered instead.
    #[error("{topic} refused the record: {reason}")]
    Rejected { topic: String, reason: String },
    #[error("consuming failed: {0}")]
    Consume(String),
    #[error("committing offsets failed: {0}")]
    Commit(String),
    #[error("the bus is shut down")]
    Closed,
}

/// Resolves once the broker acknowledged the record (acks=all on Kafka).
pub type Ack = BoxFuture<'static, Result<(), BusError>>;

/// Resolves once every record of a batch is acknowledged or failed: one result per record,
/// in the batch's order.
pub type BatchAck = BoxFuture<'static, Vec<Result<(), BusError>>>;

pub trait Publisher: Send + Sync + 'static {
    /// Enqueues without waiting for the broker; records with the same key keep their order.
    /// Waits only when the client's queue is full.
    fn publish(&self, record: OutRecord) -> BoxFuture<'_, Ack>;
    /// Enqueues `records` in order, as [`Publisher::publish`] would one by one, and returns
    /// one acknowledgement for them all. For producers of many records at once (a replay):
    /// no future per record, and no wakeup per acknowledgement.
    fn publish_all(&self, records: Vec<OutRecord>) -> BoxFuture<'_, BatchAck> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(records.len());
            for record in records {
                acks.push(self.publish(record).await);
            }
            let all: BatchAck = Box::pin(futures::future::join_all(acks));
            all
        })
    }
    /// Waits until everything enqueued is acknowledged, up to `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), BusError>;
}

/// A consumer-group member's view of its input topics.
pub trait Subscription: Send + 'static {
    /// The next record; `None` once the subscription is closed.
    fn recv(&mut self) -> BoxFuture<'_, Option<Result<InRecord, BusError>>>;
    /// Marks everything before `next_offset` in the partition as done; committed later.
    fn store_offset(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), BusError>;
    /// Commits stored offsets now, waiting for the broker.
    fn commit(&self) -> Result<(), BusError>;
}

/// Header names Earshot sets on records.
pub mod headers {
    /// W3C trace context, carried from the collector through every stage.
    pub const TRACEPARENT: &str = "traceparent";
    pub const DLQ_SOURCE_TOPIC: &str = "earshot.source.topic";
    pub const DLQ_SOURCE_PARTITION: &str = "earshot.source.partition";
    pub const DLQ_SOURCE_OFFSET: &str = "earshot.source.offset";
    pub const DLQ_STAGE: &str = "earshot.stage";
    pub const DLQ_ERROR: &str = "earshot.error";
    pub const DLQ_ERROR_TYPE: &str = "earshot.error.type";
    /// Set by the Kafka subscription on a record whose payload exceeds
    /// `kafka.max_message_bytes`: the payload's size in bytes; the payload is left out.
    pub const OVERSIZED: &str = "earshot.oversized";
}

/// The input partitions a consumer of this process is assigned now. The router drives the
/// escalations of its own partitions' alerts only, so that each is escalated by one replica.
#[derive(Clone, Default)]
pub struct OwnedPartitions(std::sync::Arc<std::sync::RwLock<OwnedState>>);

#[derive(Default)]
struct OwnedState {
    everything: bool,
    partitions: std::collections::HashSet<(String, i32)>,
}

impl OwnedPartitions {
    /// Owns every partition (the embedded mode's single process).
    pub fn everything() -> Self {
        let owned = OwnedPartitions::default();
        owned.0.write().expect("owned lock").everything = true;
        owned
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        let state = self.0.read().expect("owned lock");
        state.everything || state.partitions.contains(&(topic.to_owned(), partition))
    }

    pub fn assign(&self, topic: &str, partition: i32) {
        let mut state = self.0.write().expect("owned lock");
        state.partitions.insert((topic.to_owned(), partition));
    }

    pub fn revoke(&self, topic: &str, partition: i32) {
        let mut state = self.0.write().expect("owned lock");
        state.partitions.remove(&(topic.to_owned(), partition));
    }
}
