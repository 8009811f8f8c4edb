//! A keyed table kept in a compacted topic, read by every replica: the router's state
//! (pending escalations, acknowledgements, silences set by API) survives restarts and is seen
//! by every replica, while each entry is written to the partition of the input partition it
//! belongs to.
//!
//! Opening a table (`Services::state_table`) returns the writer and a stream of every
//! update: first the topic's content from the beginning (then `caught_up` turns true), then
//! each new write, whichever replica made it. The last value of a key wins; `None` (a
//! tombstone) deletes it.
//!
//! [`TableReader::read_to_end`] waits until the stream has delivered, and its reader has
//! applied, everything one partition holds at the time of the call: the router awaits it for
//! a partition newly assigned, so that what the previous owner wrote last is applied before
//! the first record of the partition is handled.
//!
//! On Kafka the topic is [`crate::kafka::KafkaTable`]; in the embedded mode
//! [`MemoryTable`] hands each write straight back to the stream and keeps nothing.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

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

/// Reads a table's partitions to their end.
pub trait TableReader: Send + Sync + 'static {
    /// Resolves once every update of `partition` (taken modulo the partition count) written
    /// before the call was delivered by the table's [`TableUpdates`] and applied by its
    /// reader: that is, the reader asked for the update after it. Fails when the end cannot
    /// be learnt (the broker unreachable past the client's timeouts) or the table is closed.
    fn read_to_end(&self, partition: i32) -> BoxFuture<'_, Result<(), BusError>>;
}

/// An open table: its writer and reader, the stream of its updates, and whether the stream
/// has delivered everything the topic held when it was opened.
pub struct StateTable {
    pub writer: Arc<dyn TableWriter>,
    pub reader: Arc<dyn TableReader>,
    pub updates: TableUpdates,
    pub caught_up: watch::Receiver<bool>,
}

/// The stream of a table's updates, in the order of each partition.
pub struct TableUpdates {
    items: mpsc::Receiver<TableItem>,
}

/// What the table's reading side sends down the stream: an update, or the point up to which
/// a [`TableReader::read_to_end`] call waits.
pub(crate) enum TableItem {
    Update(TableUpdate),
    /// Everything before it was delivered: resolved as the stream's reader asks for more.
    ReadTo(oneshot::Sender<()>),
}

impl TableUpdates {
    pub(crate) fn new(items: mpsc::Receiver<TableItem>) -> Self {
        TableUpdates { items }
    }

    /// The next update; `None` once the table is closed. Asking for the next update is what
    /// says the previous ones are applied: a [`TableReader::read_to_end`] waiting for them
    /// resolves then.
    pub async fn recv(&mut self) -> Option<TableUpdate> {
        loop {
            match self.items.recv().await? {
                TableItem::Update(update) => return Some(update),
                TableItem::ReadTo(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// The embedded mode's table: a process keeps its state for its own life only.
pub struct MemoryTable {
    updates: mpsc::Sender<TableItem>,
}

impl MemoryTable {
    pub fn open() -> StateTable {
        let (sender, items) = mpsc::channel(1024);
        let (_, caught_up) = watch::channel(true);
        let table = Arc::new(MemoryTable { updates: sender });
        StateTable {
            writer: table.clone(),
            reader: table,
            updates: TableUpdates::new(items),
            caught_up,
        }
    }
}

impl TableReader for MemoryTable {
    /// Every write went down the stream before its `put` returned: the mark sent after them
    /// comes back once the reader has taken them all.
    fn read_to_end(&self, _partition: i32) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            let (done, reached) = oneshot::channel();
            self.updates
                .send(TableItem::ReadTo(done))
                .await
                .map_err(|_| BusError::Closed)?;
            reached.await.map_err(|_| BusError::Closed)
        })
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
            let _ = self.updates.send(TableItem::Update(update)).await;
            Box::pin(async { Ok::<(), BusError>(()) }) as Ack
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_to_end` resolves only once the updates written before it were taken from the
    /// stream, and the stream hands over only updates, never the mark itself.
    #[tokio::test]
    async fn read_to_end_waits_until_earlier_writes_were_taken() {
        let mut table = MemoryTable::open();
        for key in ["a", "b"] {
            let ack = table
                .writer
                .put(0, key, Some(Bytes::from_static(b"1")))
                .await;
            ack.await.unwrap();
        }
        let reader = table.reader.clone();
        let mut reading = tokio::spawn(async move { reader.read_to_end(0).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            futures::FutureExt::now_or_never(&mut reading).is_none(),
            "nothing was taken yet"
        );
        assert_eq!(table.updates.recv().await.unwrap().key, "a");
        assert_eq!(table.updates.recv().await.unwrap().key, "b");
        let next = table.updates.recv();
        tokio::pin!(next);
        assert!(futures::FutureExt::now_or_never(&mut next).is_none());
        reading.await.unwrap().unwrap();
    }
}
