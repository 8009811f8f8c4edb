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

/// The input partitions a consumer of this process is assigned now, and the stage's
/// rebalance listeners. The router drives the escalations of its own partitions' alerts
/// only, so that each is escalated by one replica.
///
/// On Kafka the consumer's rebalance callbacks update it ([`crate::kafka`]): a revocation
/// in librdkafka's pre-rebalance callback, before the partitions are handed over (the
/// group waits for this member to rejoin, which it does once the callback returned), an
/// assignment in the post-rebalance callback, before any record of it is read. Both run on
/// the thread that polls the consumer, inside the stage loop's read.
#[derive(Clone, Default)]
pub struct OwnedPartitions(std::sync::Arc<std::sync::RwLock<OwnedState>>);

/// A change of a consumer's assignment, as told to a [`RebalanceListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions are this process's now; none of their records was read yet.
    Assigned(Vec<(String, i32)>),
    /// These partitions are about to be handed over: the listener lets go of what it holds
    /// of them before it returns.
    Revoked(Vec<(String, i32)>),
}

/// Told of each assignment and revocation, on the thread that polls the consumer: it must
/// not wait for work of the stage loop's own task (which is blocked in that poll), and
/// what it waits for delays the rebalance of the whole group.
pub type RebalanceListener = std::sync::Arc<dyn Fn(&RebalanceEvent) + Send + Sync>;

#[derive(Default)]
struct OwnedState {
    everything: bool,
    partitions: std::collections::HashSet<(String, i32)>,
    listeners: Vec<(u64, RebalanceListener)>,
    next_listener: u64,
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

    /// Tells `listener` of every assignment and revocation from now on, until the returned
    /// handle is dropped.
    #[must_use = "the listener is removed when the handle is dropped"]
    pub fn listen(&self, listener: RebalanceListener) -> Listening {
        let mut state = self.0.write().expect("owned lock");
        state.next_listener += 1;
        let id = state.next_listener;
        state.listeners.push((id, listener));
        Listening {
            owned: self.clone(),
            id,
        }
    }

    pub fn assign(&self, topic: &str, partition: i32) {
        self.assign_all(vec![(topic.to_owned(), partition)]);
    }

    pub fn revoke(&self, topic: &str, partition: i32) {
        self.revoke_all(vec![(topic.to_owned(), partition)]);
    }

    /// Tells the listeners of the assignment of `partitions`, then counts them as owned: a
    /// listener that holds a partition back until it is ready (the router reading its
    /// state) has done so before [`OwnedPartitions::owns`] says yes.
    pub fn assign_all(&self, partitions: Vec<(String, i32)>) {
        if partitions.is_empty() {
            return;
        }
        let event = RebalanceEvent::Assigned(partitions.clone());
        for listener in self.listeners() {
            listener(&event);
        }
        self.0
            .write()
            .expect("owned lock")
            .partitions
            .extend(partitions);
    }

    /// Stops counting `partitions` as owned, then tells the listeners, which let go of them
    /// before this returns.
    pub fn revoke_all(&self, partitions: Vec<(String, i32)>) {
        if partitions.is_empty() {
            return;
        }
        {
            let mut state = self.0.write().expect("owned lock");
            for partition in &partitions {
                state.partitions.remove(partition);
            }
        }
        let event = RebalanceEvent::Revoked(partitions);
        for listener in self.listeners() {
            listener(&event);
        }
    }

    /// The listeners, taken out of the lock: a listener may ask [`OwnedPartitions::owns`].
    fn listeners(&self) -> Vec<RebalanceListener> {
        let state = self.0.read().expect("owned lock");
        state.listeners.iter().map(|(_, l)| l.clone()).collect()
    }
}

/// A listener of [`OwnedPartitions`]: removed when dropped.
pub struct Listening {
    owned: OwnedPartitions,
    id: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut state = self.owned.0.write().expect("owned lock");
        state.listeners.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A listener sees an assignment before the partition counts as owned, and a
    /// revocation after it no longer does.
    #[test]
    fn listeners_hear_assignments_before_and_revocations_after_ownership_changes() {
        let owned = OwnedPartitions::default();
        let heard: Arc<Mutex<Vec<(RebalanceEvent, bool)>>> = Arc::default();
        let (listening, seen) = (owned.clone(), heard.clone());
        let listener = owned.listen(Arc::new(move |event| {
            seen.lock()
                .unwrap()
                .push((event.clone(), listening.owns("t", 1)));
        }));
        owned.assign_all(vec![("t".into(), 1)]);
        assert!(owned.owns("t", 1));
        owned.revoke("t", 1);
        assert!(!owned.owns("t", 1));
        owned.revoke_all(vec![]);
        drop(listener);
        owned.assign("t", 2);
        assert_eq!(
            *heard.lock().unwrap(),
            [
                (RebalanceEvent::Assigned(vec![("t".into(), 1)]), false),
                (RebalanceEvent::Revoked(vec![("t".into(), 1)]), false),
            ]
        );
    }
}
