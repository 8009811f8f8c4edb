//! Where collector sources keep their place, and which replica runs which source.
//!
//! A checkpoint is an opaque value per source instance (key `<kind>/<name>`). On Kafka the
//! store is a compacted topic keyed by instance ([`crate::kafka::KafkaCheckpointStore`]):
//! pods stay stateless, and the topic's partitions double as the unit of ownership. Every
//! collector replica joins one consumer group on that topic; an instance runs only in the
//! replica that owns the partition its key maps to ([`partition_for`]), and that replica
//! restores the checkpoint from the partition before starting the source. When a partition
//! moves, the old owner stops its sources (and saves what was acknowledged) before the
//! rebalance completes, so an instance never runs in two replicas of a healthy group.
//!
//! In the embedded mode [`MemoryCheckpointStore`] owns every instance and keeps checkpoints
//! for the life of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::bus::{Ack, BusError};

/// Checkpoints of source instances, and the right to run them.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Waits until this replica owns `key`, then returns a lease on it; `None` at shutdown.
    fn acquire(&self, key: &str, shutdown: CancellationToken) -> BoxFuture<'_, Option<Lease>>;
    /// The latest checkpoint of `key`; `None` when it has none yet.
    fn load(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BusError>>;
    /// Enqueues a checkpoint; the returned ack resolves once it is durable.
    fn save(&self, key: &str, checkpoint: Bytes) -> BoxFuture<'_, Ack>;
}

/// The right to run one source instance. `lost` is cancelled when ownership moves to another
/// replica; the source must then stop. Dropping the lease tells the store it has stopped.
pub struct Lease {
    pub lost: CancellationToken,
    /// Released on drop (the Kafka store counts running sources per partition).
    pub _release: Option<Box<dyn Send + Sync>>,
}

/// The partition of the checkpoint topic that `key` is stored in and owned through: 32-bit
/// FNV-1a of the key, modulo the partition count. The store writes to this partition
/// explicitly, so it does not depend on a client's default partitioner.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

/// The embedded mode's store: this process owns every instance.
#[derive(Clone, Default)]
pub struct MemoryCheckpointStore {
    checkpoints: Arc<Mutex<HashMap<String, Bytes>>>,
}

impl MemoryCheckpointStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn acquire(&self, _key: &str, shutdown: CancellationToken) -> BoxFuture<'_, Option<Lease>> {
        Box::pin(async move {
            (!shutdown.is_cancelled()).then(|| Lease {
                lost: CancellationToken::new(),
                _release: None,
            })
        })
    }

    fn load(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BusError>> {
        let found = self.checkpoints.lock().expect("poisoned").get(key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save(&self, key: &str, checkpoint: Bytes) -> BoxFuture<'_, Ack> {
        self.checkpoints
            .lock()
            .expect("poisoned")
            .insert(key.to_owned(), checkpoint);
        Box::pin(async { Box::pin(async { Ok(()) }) as Ack })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_stable_partitions_in_range() {
        let check = |key: &str, partitions: i32, expected: i32| {
            assert_eq!(
                partition_for(key, partitions),
                expected,
                "{key} over {partitions}"
            );
        };
        // FNV-1a 32 of "" is 0x811c9dc5, of "a" is 0xe40c292c (the published test vectors).
        check("", 1_000_000_007, (0x811c_9dc5u32 % 1_000_000_007) as i32);
        check("a", 1_000_000_007, (0xe40c_292cu32 % 1_000_000_007) as i32);
        check("rss/acme-blog", 1, 0);
        check("rss/acme-blog", 0, 0);
        for partitions in 1..16 {
            let p = partition_for("mastodon/fosstodon", partitions);
            assert!((0..partitions).contains(&p));
        }
    }

    #[tokio::test]
    async fn the_memory_store_owns_everything_and_keeps_the_latest_checkpoint() {
        let store = MemoryCheckpointStore::new();
        let shutdown = CancellationToken::new();
        assert!(store.acquire("rss/a", shutdown.clone()).await.is_some());
        assert_eq!(store.load("rss/a").await.unwrap(), None);
        store
            .save("rss/a", Bytes::from_static(b"1"))
            .await
            .await
            .unwrap();
        store
            .save("rss/a", Bytes::from_static(b"2"))
            .await
            .await
            .unwrap();
        assert_eq!(store.load("rss/a").await.unwrap().unwrap(), "2");
        shutdown.cancel();
        assert!(store.acquire("rss/a", shutdown).await.is_none());
    }
}
