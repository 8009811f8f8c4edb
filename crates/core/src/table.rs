//! A keyed table kept in a compacted topic, read by every replica: the router's state
//! (pending escalations, acknowledgements, silences set by API) survives restarts and is seen
//! by every replica, while each entry is written to the partition of the input partition it
//! belongs to.
//!
//! [`StateTable::open`] returns the writer and a stream of every update: first the topic's
//! content from the beginning (then `caught_up` turns true), then each new write, whichever
//! replica made it. The last value of a key wins; `None` (a tombstone) deletes it.
//!
//! On Kafka the topic is [`crate::kafka::KafkaTable`]; in the embedded mode
//! [`MemoryTable`] hands each write straight back to the stream and keeps nothing.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::bus::{Ack, BusError};

/// One write to the table, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableUpdate {
    pub partition: i32,
    pub key: String,
    /// `None`: the key was deleted.
    pub value: Option<Bytes>,
}

/// Writes to a table.
pub trait TableWriter: Send + Sync + 'static {
    /// The table topic's partition count.
    fn partitions(&self) -> i32;
    /// Enqueues `value` for `key` in `partition` (taken modulo the partition count); `None`
    /// deletes the key. The ack resolves once the write is durable.
    fn put(&self, partition: i32, key: &str, value: Option<Bytes>) -> BoxFuture<'_, Ack>;
    /// Whether what is written outlives the process (false for the embedded mode's table).
    fn durable(&self) -> bool {
        true
    }
}

/// An open table: its writer, the stream of its updates, and whether the stream has
/// delivered everything the topic held when it was opened.
pub struct StateTable {
    pub writer: Arc<dyn TableWriter>,
    pub updates: mpsc::Receiver<TableUpdate>,
    pub caught_up: watch::Receiver<bool>,
}

/// The embedded mode's table: a process keeps its state for its own life only.
pub struct MemoryTable {
    updates: mpsc::Sender<TableUpdate>,
}

impl MemoryTable {
    pub fn open() -> StateTable {
        let (sender, updates) = mpsc::channel(1024);
        let (_, caught_up) = watch::channel(true);
        StateTable {
            writer: Arc::new(MemoryTable { updates: sender }),
            updates,
            caught_up,
        }
    }
}

impl TableWriter for MemoryTable {
    fn partitions(&self) -> i32 {
        1
    }

    fn durable(&self) -> bool {
        false
    }

    fn put(&self, _partition: i32, key: &str, value: Option<Bytes>) -> BoxFuture<'_, Ack> {
        let update = TableUpdate {
            partition: 0,
            key: key.to_owned(),
            value,
        };
        Box::pin(async move {
            // Nobody reading any more (shutdown): the write has nowhere to go, and nothing
            // would read it after the process ends anyway.
            let _ = self.updates.send(update).await;
            Box::pin(async { Ok::<(), BusError>(()) }) as Ack
        })
    }
}
