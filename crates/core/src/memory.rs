//! The in-memory bus of the embedded mode (`earshot run`): one log per topic (a single
//! partition), consumer groups with stored offsets, and the same contract as Kafka: a
//! published record is acknowledged once it is in the log, and records below every group's
//! stored offset are dropped from memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{Ack, BusError, InRecord, OutRecord, Publisher, Subscription};

/// A set of in-memory topics shared by the stages of one process.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Mutex<BusState>>,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct BusState {
    topics: HashMap<Arc<str>, TopicLog>,
}

#[derive(Default)]
struct TopicLog {
    /// Offset of `records[0]`.
    base: i64,
    records: VecDeque<OutRecord>,
    /// Stored (next) offset per group reading this topic.
    groups: HashMap<String, i64>,
}

impl TopicLog {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    fn trim(&mut self) {
        if let Some(low) = self.groups.values().min().copied() {
            while self.base < low && !self.records.is_empty() {
                self.records.pop_front();
                self.base += 1;
            }
        }
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.clone())
    }

    /// Declares that `group` will read `topics`, so that nothing is trimmed before it joins.
    /// The embedded mode declares every stage's group before the first record is published.
    pub fn declare_group(&self, group: &str, topics: &[&str]) {
        let mut state = self.inner.lock().expect("poisoned");
        for topic in topics {
            let log = state.topics.entry(Arc::from(*topic)).or_default();
            let base = log.base;
            log.groups.entry(group.to_owned()).or_insert(base);
        }
    }

    /// Joins `group` on `topics`; reading starts at the group's stored offset (0 when new).
    pub fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
        shutdown: CancellationToken,
    ) -> MemorySubscription {
        let mut state = self.inner.lock().expect("poisoned");
        let mut positions = Vec::new();
        for topic in topics {
            let log = state.topics.entry(Arc::from(*topic)).or_default();
            let start = *log.groups.entry(group.to_owned()).or_insert(log.base);
            positions.push((Arc::from(*topic), start));
        }
        MemorySubscription {
            bus: self.clone(),
            group: group.to_owned(),
            positions,
            next_topic: 0,
            shutdown,
        }
    }

    /// True when every group has stored offsets up to the end of every topic it reads.
    pub fn is_idle(&self) -> bool {
        let state = self.inner.lock().expect("poisoned");
        state
            .topics
            .values()
            .all(|log| log.groups.values().all(|stored| *stored >= log.end()))
    }

    /// Records published to `topic` so far.
    pub fn end_offset(&self, topic: &str) -> i64 {
        self.inner
            .lock()
            .expect("poisoned")
            .topics
            .get(topic)
            .map_or(0, TopicLog::end)
    }

    /// A copy of the records still held for `topic` (tests and the embedded summary).
    pub fn records(&self, topic: &str) -> Vec<OutRecord> {
        let state = self.inner.lock().expect("poisoned");
        state
            .topics
            .get(topic)
            .map(|log| log.records.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Publisher for MemoryBus {
    fn publish(&self, record: OutRecord) -> BoxFuture<'_, Ack> {
        {
            let mut state = self.inner.lock().expect("poisoned");
            let log = state.topics.entry(record.topic.clone()).or_default();
            log.records.push_back(record);
            log.trim();
        }
        self.notify.notify_waiters();
        Box::pin(async { Box::pin(async { Ok(()) }) as Ack })
    }

    fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// One group's reader over in-memory topics.
pub struct MemorySubscription {
    bus: MemoryBus,
    group: String,
    /// Next offset to read, per topic.
    positions: Vec<(Arc<str>, i64)>,
    next_topic: usize,
    shutdown: CancellationToken,
}

impl MemorySubscription {
    fn try_next(&mut self) -> Option<InRecord> {
        let state = self.bus.inner.lock().expect("poisoned");
        for step in 0..self.positions.len() {
            let index = (self.next_topic + step) % self.positions.len();
            let (topic, position) = &mut self.positions[index];
            let Some(log) = state.topics.get(topic) else {
                continue;
            };
            // Records below `base` were read by every group already (trimmed after store).
            let at = (*position).max(log.base);
            if at < log.end() {
                let record = &log.records[(at - log.base) as usize];
                *position = at + 1;
                self.next_topic = index + 1;
                return Some(InRecord {
                    topic: topic.clone(),
                    partition: 0,
                    offset: at,
                    key: record.key.clone(),
                    payload: Some(record.payload.clone()),
                    headers: record.headers.clone(),
                });
            }
        }
        None
    }
}

impl Subscription for MemorySubscription {
    fn recv(&mut self) -> BoxFuture<'_, Option<Result<InRecord, BusError>>> {
        Box::pin(async move {
            let notify = self.bus.notify.clone();
            loop {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(record) = self.try_next() {
                    return Some(Ok(record));
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = self.shutdown.cancelled() => return None,
                }
            }
        })
    }

    fn store_offset(&self, topic: &str, _partition: i32, next_offset: i64) -> Result<(), BusError> {
        {
            let mut state = self.bus.inner.lock().expect("poisoned");
            let log = state.topics.get_mut(topic).ok_or(BusError::Closed)?;
            let stored = log.groups.entry(self.group.clone()).or_insert(0);
            *stored = (*stored).max(next_offset);
            log.trim();
        }
        self.bus.notify.notify_waiters();
        Ok(())
    }

    fn commit(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(topic: &str, n: u8) -> OutRecord {
        OutRecord {
            topic: Arc::from(topic),
            key: None,
            payload: Bytes::from(vec![n]),
            headers: vec![],
        }
    }

    #[tokio::test]
    async fn groups_read_independently_and_logs_are_trimmed_after_every_group_stored() {
        let bus = MemoryBus::new();
        let shutdown = CancellationToken::new();
        let mut a = bus.subscribe("a", &["t"], shutdown.clone());
        let mut b = bus.subscribe("b", &["t"], shutdown.clone());
        for n in 0..3 {
            bus.publish(record("t", n)).await.await.unwrap();
        }
        for expected in 0..3 {
            let got = a.recv().await.unwrap().unwrap();
            assert_eq!(got.offset, expected);
            assert_eq!(got.payload.unwrap()[0], expected as u8);
        }
        a.store_offset("t", 0, 3).unwrap();
        assert!(!bus.is_idle(), "group b has not stored anything yet");
        assert_eq!(bus.records("t").len(), 3, "b still needs every record");
        assert_eq!(b.recv().await.unwrap().unwrap().offset, 0);
        b.store_offset("t", 0, 3).unwrap();
        assert!(bus.is_idle());
        assert!(bus.records("t").is_empty());
        shutdown.cancel();
        assert!(a.recv().await.is_none());
    }
}
