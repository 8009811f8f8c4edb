//! The at-least-once stage loop shared by every consuming service, over Kafka or the
//! in-memory bus.
//!
//! Records are handed to the stage in partition order. The stage returns a future that
//! resolves once everything the record produced is acknowledged (published and acked, written
//! and committed, delivered). Up to `max_in_flight` such futures run at once; an input offset
//! is stored only when it and every earlier offset of its partition are done, so a crash at
//! any point replays, never skips. A record the stage cannot take goes to the dead-letter
//! topic, and its offset is stored once the dead letter is acknowledged.
//!
//! Batches: a stage that says so ([`Stage::batch`]) is handed up to `max_records` records at
//! once ([`Stage::handle_batch`]): after a first record, the loop waits at most `max_wait`
//! for more (never beyond `max_in_flight`). Each record of a batch still has its own
//! completion, its own dead letter and its own offset, stored by the same rule.
//!
//! Shutdown: stop reading, wait for in-flight records (bounded by `drain_timeout`), flush the
//! producer, commit.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::bus::{headers, BusError, InRecord, OutRecord, Publisher, Subscription};
use crate::telemetry::{Heartbeat, Metrics};

/// Why a stage could not take a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    /// The record itself is bad (undecodable, invalid, undeliverable after every retry): it
    /// goes to the dead-letter topic with this reason and is not retried.
    #[error("{reason}")]
    Permanent {
        error_type: &'static str,
        reason: String,
    },
    /// Publishing an output failed after the client's retries: the offset is not stored and
    /// the service stops, to restart from its last commit.
    #[error(transparent)]
    Bus(BusError),
    /// Shutdown came before the record was done; it will be read again after restart.
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<BusError> for StageError {
    fn from(error: BusError) -> Self {
        match error {
            // The output itself is refused (for example too large): a property of this record.
            BusError::Rejected { .. } => StageError::Permanent {
                error_type: "rejected",
                reason: error.to_string(),
            },
            other => StageError::Bus(other),
        }
    }
}

impl StageError {
    pub fn permanent(error_type: &'static str, reason: impl Into<String>) -> Self {
        StageError::Permanent {
            error_type,
            reason: reason.into(),
        }
    }
}

/// The future a stage returns per record.
pub type Completion = BoxFuture<'static, Result<(), StageError>>;

/// One consuming stage's processing, separate from the loop.
pub trait Stage: Send + 'static {
    /// Stage name for metrics, logs and dead-letter headers.
    fn name(&self) -> &'static str;
    /// Takes one record, in partition order: decodes, processes and enqueues its outputs, and
    /// returns a future resolving once they are acknowledged. Awaited before the next record
    /// is read, so it should only wait for what order requires (the producer queue).
    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion>;
    /// Called once after the loop ended and in-flight work drained (flush buffers).
    fn finish(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// How many records the stage takes at once; one by default.
    fn batch(&self) -> Batch {
        Batch::ONE
    }
    /// Takes a batch of records, in partition order, and returns one completion per record,
    /// in the same order, each with the meaning of [`Stage::handle`]'s. By default, each in
    /// turn through [`Stage::handle`].
    fn handle_batch(&mut self, records: Vec<InRecord>) -> BoxFuture<'_, Vec<Completion>> {
        Box::pin(async move {
            let mut completions = Vec::with_capacity(records.len());
            for record in records {
                completions.push(self.handle(record).await);
            }
            completions
        })
    }
}

/// How a stage takes records: up to `max_records` at once, waiting at most `max_wait` after
/// the first for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub max_records: usize,
    pub max_wait: Duration,
}

impl Batch {
    /// One record at a time.
    pub const ONE: Batch = Batch {
        max_records: 1,
        max_wait: Duration::ZERO,
    };
}

/// Loop settings.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    pub deadletter_topic: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{in_flight} records were still in flight after the {timeout:?} drain timeout; they will be read again")]
    DrainTimeout { in_flight: usize, timeout: Duration },
}

type Done = (Arc<str>, i32, i64, Result<(), StageError>, InFlightKind);

#[derive(Clone, Copy, PartialEq, Eq)]
enum InFlightKind {
    Stage,
    DeadLetter,
    /// The dead-letter topic refused the original payload; this dead letter carries only the
    /// headers.
    DeadLetterWithoutPayload,
}

/// Runs `stage` over `subscription` until `shutdown` is cancelled or the subscription closes.
pub async fn run_stage<S: Stage, Sub: Subscription>(
    mut stage: S,
    mut subscription: Sub,
    publisher: Arc<dyn Publisher>,
    options: RunnerOptions,
    metrics: Metrics,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let stage_name = stage.name();
    // Looked up once: a labelled lookup per record would hash and lock on the hot path.
    let received = metrics.received.with_label_values(&[stage_name]);
    let mut tracker = OffsetTracker::default();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut keep_alive = tokio::time::interval(Duration::from_secs(1));
    let mut failure: Option<RunError> = None;
    // Kept so that a dead letter can carry the original key, payload and headers.
    let mut originals: HashMap<(Arc<str>, i32, i64), InRecord> = HashMap::new();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                heartbeat.beat();
                // Settles this record and every other already done, then stores each
                // partition's new position once rather than once per record.
                let mut positions = Positions::default();
                let mut next = Some(done);
                let mut settled = 0;
                while let Some(done) = next {
                    if let Err(error) = settle(done, &mut tracker, &mut positions, &mut originals, &publisher, &options, &metrics, stage_name, &mut in_flight).await {
                        failure = Some(error);
                        break;
                    }
                    settled += 1;
                    next = if settled < SETTLE_AT_ONCE {
                        in_flight.next().now_or_never().flatten()
                    } else {
                        None
                    };
                }
                positions.store(&mut subscription, stage_name);
                if failure.is_some() {
                    break;
                }
            }
            next = subscription.recv(), if in_flight.len() < options.max_in_flight => {
                heartbeat.beat();
                let record = match next {
                    None => break,
                    Some(Ok(record)) => record,
                    Some(Err(error)) => {
                        metrics.errors.with_label_values(&[stage_name, "consume"]).inc();
                        tracing::warn!(stage = stage_name, %error, "consumer error; continuing");
                        continue;
                    }
                };
                let batch = stage.batch();
                let mut records = vec![record];
                if batch.max_records > 1 {
                    // More records for the batch, for a bounded time, and never more in flight
                    // than allowed. A closed subscription ends the loop at the next turn.
                    let deadline = tokio::time::Instant::now() + batch.max_wait;
                    while records.len() < batch.max_records
                        && in_flight.len() + records.len() < options.max_in_flight
                    {
                        // A record already there is taken without arming a timer.
                        let next = match subscription.recv().now_or_never() {
                            Some(next) => next,
                            None => match tokio::time::timeout_at(deadline, subscription.recv()).await {
                                Ok(next) => next,
                                Err(_) => break,
                            },
                        };
                        match next {
                            Some(Ok(record)) => records.push(record),
                            Some(Err(error)) => {
                                metrics.errors.with_label_values(&[stage_name, "consume"]).inc();
                                tracing::warn!(stage = stage_name, %error, "consumer error; continuing");
                            }
                            None => break,
                        }
                    }
                }
                let mut keys = Vec::with_capacity(records.len());
                let mut accepted = Vec::with_capacity(records.len());
                for record in records {
                    received.inc();
                    tracker.begin(&record.topic, record.partition, record.offset);
                    let key = (record.topic.clone(), record.partition, record.offset);
                    originals.insert(key.clone(), record.clone());
                    if let Some(size) = record.header(headers::OVERSIZED) {
                        // Left without its payload by the subscription: dead-lettered, headers only.
                        let reason = format!(
                            "the payload ({} bytes) is larger than kafka.max_message_bytes + 64 KiB; dead-lettered without it",
                            String::from_utf8_lossy(size)
                        );
                        in_flight.push(Box::pin(async move {
                            (key.0, key.1, key.2, Err(StageError::permanent("oversized", reason)), InFlightKind::Stage)
                        }));
                        continue;
                    }
                    keys.push(key);
                    accepted.push(record);
                }
                let mut records = accepted;
                let completions = if records.is_empty() {
                    Vec::new()
                } else if records.len() == 1 {
                    let record = records.pop().expect("one record");
                    vec![stage.handle(record).await]
                } else {
                    stage.handle_batch(records).await
                };
                let mut completions = completions.into_iter();
                for key in keys {
                    // A stage that returned too few completions: the record is not silently
                    // taken as done, it is dead-lettered with the reason.
                    let completion = completions.next().unwrap_or_else(|| {
                        futures::future::ready(Err(StageError::permanent(
                            "internal",
                            "the stage returned no completion for this record of its batch",
                        )))
                        .boxed()
                    });
                    in_flight.push(Box::pin(async move {
                        let result = completion.await;
                        (key.0, key.1, key.2, result, InFlightKind::Stage)
                    }));
                }
            }
            _ = keep_alive.tick() => heartbeat.beat(),
        }
    }

    // Drain what is in flight, bounded in time.
    let drain = async {
        while let Some(done) = in_flight.next().await {
            heartbeat.beat();
            let mut positions = Positions::default();
            if let Err(error) = settle(
                done,
                &mut tracker,
                &mut positions,
                &mut originals,
                &publisher,
                &options,
                &metrics,
                stage_name,
                &mut in_flight,
            )
            .await
            {
                failure.get_or_insert(error);
            }
            positions.store(&mut subscription, stage_name);
        }
    };
    let drained = tokio::time::timeout(options.drain_timeout, drain)
        .await
        .is_ok();
    stage.finish().await;
    if let Err(error) = publisher.flush(options.drain_timeout) {
        tracing::warn!(stage = stage_name, %error, "flushing the producer at shutdown failed");
    }
    if let Err(error) = subscription.commit() {
        tracing::warn!(stage = stage_name, %error, "committing offsets at shutdown failed");
    }
    if !drained {
        failure.get_or_insert(RunError::DrainTimeout {
            in_flight: originals.len(),
            timeout: options.drain_timeout,
        });
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn settle(
    (topic, partition, offset, result, kind): Done,
    tracker: &mut OffsetTracker,
    positions: &mut Positions,
    originals: &mut HashMap<(Arc<str>, i32, i64), InRecord>,
    publisher: &Arc<dyn Publisher>,
    options: &RunnerOptions,
    metrics: &Metrics,
    stage_name: &'static str,
    in_flight: &mut FuturesUnordered<BoxFuture<'static, Done>>,
) -> Result<(), RunError> {
    match result {
        Ok(()) => {
            originals.remove(&(topic.clone(), partition, offset));
            if kind == InFlightKind::DeadLetter {
                tracing::debug!(stage = stage_name, %topic, partition, offset, "dead letter acknowledged");
            }
            if let Some(next) = tracker.complete(&topic, partition, offset) {
                positions.advance(topic, partition, next);
            }
            Ok(())
        }
        Err(StageError::Permanent { error_type, reason }) => {
            let (next_kind, reason) = match kind {
                InFlightKind::Stage => (InFlightKind::DeadLetter, reason),
                // The dead-letter topic refused the payload (too large for it): keep the
                // provenance and the reason, drop the payload.
                InFlightKind::DeadLetter => (
                    InFlightKind::DeadLetterWithoutPayload,
                    format!("payload omitted, the dead-letter topic refused it: {reason}"),
                ),
                InFlightKind::DeadLetterWithoutPayload => {
                    tracing::error!(stage = stage_name, %topic, partition, offset, %reason, "the dead-letter topic refused even a header-only dead letter");
                    return Err(RunError::Bus(BusError::Rejected {
                        topic: options.deadletter_topic.to_string(),
                        reason,
                    }));
                }
            };
            let original = originals.get(&(topic.clone(), partition, offset)).cloned();
            if kind == InFlightKind::Stage {
                metrics
                    .errors
                    .with_label_values(&[stage_name, error_type])
                    .inc();
                metrics
                    .dead_lettered
                    .with_label_values(&[stage_name, error_type])
                    .inc();
            }
            let trace_id = original
                .as_ref()
                .and_then(|r| r.header(headers::TRACEPARENT))
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(crate::telemetry::trace_context::trace_id)
                .unwrap_or_default()
                .to_owned();
            tracing::warn!(stage = stage_name, %topic, partition, offset, error_type, %reason, trace_id, "dead-lettering record");
            let mut dead_letter = dead_letter_record(
                &options.deadletter_topic,
                original.as_ref(),
                &topic,
                partition,
                offset,
                stage_name,
                error_type,
                &reason,
            );
            if next_kind == InFlightKind::DeadLetterWithoutPayload {
                dead_letter.payload = Bytes::new();
            }
            let ack = publisher.publish(dead_letter).await;
            in_flight.push(Box::pin(async move {
                let result = ack.await.map_err(StageError::from);
                (topic, partition, offset, result, next_kind)
            }));
            Ok(())
        }
        Err(StageError::Bus(error)) => {
            metrics
                .errors
                .with_label_values(&[stage_name, "publish"])
                .inc();
            tracing::error!(stage = stage_name, %topic, partition, offset, %error, "an output was not acknowledged; stopping without storing its offset");
            Err(RunError::Bus(error))
        }
        Err(StageError::Interrupted) => Ok(()),
    }
}

/// Records settled at once before the loop reads again: bounds the time between two reads.
const SETTLE_AT_ONCE: usize = 1024;

/// The committable positions that moved while settling, to be stored once per partition.
#[derive(Default)]
struct Positions(Vec<(Arc<str>, i32, i64)>);

impl Positions {
    fn advance(&mut self, topic: Arc<str>, partition: i32, next: i64) {
        match self
            .0
            .iter_mut()
            .find(|(t, p, _)| *p == partition && **t == *topic)
        {
            Some((_, _, position)) => *position = (*position).max(next),
            None => self.0.push((topic, partition, next)),
        }
    }

    fn store<Sub: Subscription>(self, subscription: &mut Sub, stage_name: &'static str) {
        for (topic, partition, next) in self.0 {
            if let Err(error) = subscription.store_offset(&topic, partition, next) {
                // The partition was revoked meanwhile: its new owner reads it again.
                tracing::debug!(stage = stage_name, %topic, partition, %error, "offset not stored");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn dead_letter_record(
    deadletter_topic: &Arc<str>,
    original: Option<&InRecord>,
    topic: &str,
    partition: i32,
    offset: i64,
    stage: &str,
    error_type: &str,
    reason: &str,
) -> OutRecord {
    let mut record_headers: Vec<(String, Bytes)> = original
        .map(|r| {
            r.headers
                .iter()
                .filter(|(n, _)| !n.starts_with("earshot."))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    record_headers.extend([
        (
            headers::DLQ_SOURCE_TOPIC.to_owned(),
            Bytes::from(topic.to_owned()),
        ),
        (
            headers::DLQ_SOURCE_PARTITION.to_owned(),
            Bytes::from(partition.to_string()),
        ),
        (
            headers::DLQ_SOURCE_OFFSET.to_owned(),
            Bytes::from(offset.to_string()),
        ),
        (headers::DLQ_STAGE.to_owned(), Bytes::from(stage.to_owned())),
        (
            headers::DLQ_ERROR_TYPE.to_owned(),
            Bytes::from(error_type.to_owned()),
        ),
        (
            headers::DLQ_ERROR.to_owned(),
            Bytes::from(reason.to_owned()),
        ),
    ]);
    OutRecord {
        topic: deadletter_topic.clone(),
        key: original.and_then(|r| r.key.clone()),
        payload: original.and_then(|r| r.payload.clone()).unwrap_or_default(),
        headers: record_headers,
    }
}

/// Per partition: offsets begun and not yet done; the committable position is the lowest
/// pending offset, or one past the highest begun when nothing is pending.
#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<(Arc<str>, i32), PartitionOffsets>,
}

struct PartitionOffsets {
    pending: BTreeSet<i64>,
    next: i64,
    stored: i64,
}

impl OffsetTracker {
    pub fn begin(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let entry = self
            .partitions
            .entry((topic.clone(), partition))
            .or_insert_with(|| PartitionOffsets {
                pending: BTreeSet::new(),
                next: offset,
                stored: offset,
            });
        entry.pending.insert(offset);
        entry.next = entry.next.max(offset + 1);
    }

    /// Marks `offset` done; returns the new committable position when it moved forward.
    pub fn complete(&mut self, topic: &Arc<str>, partition: i32, offset: i64) -> Option<i64> {
        let entry = self.partitions.get_mut(&(topic.clone(), partition))?;
        entry.pending.remove(&offset);
        let committable = entry.pending.first().copied().unwrap_or(entry.next);
        (committable > entry.stored).then(|| {
            entry.stored = committable;
            committable
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBus;
    use crate::telemetry::Health;

    /// A stage that refuses every record.
    struct RefuseAll;

    impl Stage for RefuseAll {
        fn name(&self) -> &'static str {
            "refuser"
        }
        fn handle(&mut self, _record: InRecord) -> BoxFuture<'_, Completion> {
            Box::pin(async {
                Box::pin(async { Err(StageError::permanent("invalid", "not wanted")) })
                    as Completion
            })
        }
    }

    /// The in-memory bus, except that the dead-letter topic refuses records with a payload,
    /// as a broker refuses records over its size limit.
    struct SmallDeadLetterTopic(MemoryBus);

    impl Publisher for SmallDeadLetterTopic {
        fn publish(&self, record: OutRecord) -> BoxFuture<'_, crate::bus::Ack> {
            if &*record.topic == "dlq" && !record.payload.is_empty() {
                let topic = record.topic.to_string();
                return Box::pin(async move {
                    Box::pin(async move {
                        Err(BusError::Rejected {
                            topic,
                            reason: "too large".into(),
                        })
                    }) as crate::bus::Ack
                });
            }
            self.0.publish(record)
        }
        fn flush(&self, timeout: Duration) -> Result<(), BusError> {
            self.0.flush(timeout)
        }
    }

    #[tokio::test]
    async fn a_dead_letter_the_topic_refuses_is_written_without_its_payload() {
        let bus = MemoryBus::new();
        let shutdown = CancellationToken::new();
        let subscription = bus.subscribe("g", &["in"], shutdown.clone());
        bus.publish(OutRecord {
            topic: Arc::from("in"),
            key: None,
            payload: Bytes::from_static(b"a large payload"),
            headers: vec![],
        })
        .await
        .await
        .unwrap();
        let options = RunnerOptions {
            max_in_flight: 8,
            drain_timeout: Duration::from_secs(1),
            deadletter_topic: Arc::from("dlq"),
        };
        let health = Health::new(Duration::from_secs(30));
        let runner = tokio::spawn(run_stage(
            RefuseAll,
            subscription,
            Arc::new(SmallDeadLetterTopic(bus.clone())),
            options,
            Metrics::default(),
            health.heartbeat("refuser"),
            shutdown.clone(),
        ));
        for _ in 0..200 {
            if bus.is_idle() && !bus.records("dlq").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let letters = bus.records("dlq");
        assert_eq!(letters.len(), 1);
        assert!(letters[0].payload.is_empty());
        let header = |name: &str| {
            letters[0]
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(header(headers::DLQ_SOURCE_TOPIC).as_deref(), Some("in"));
        assert!(
            header(headers::DLQ_ERROR)
                .unwrap()
                .contains("payload omitted"),
            "{:?}",
            header(headers::DLQ_ERROR)
        );
        assert!(
            bus.is_idle(),
            "the record's offset is stored once the header-only dead letter is in"
        );
        shutdown.cancel();
        runner.await.unwrap().unwrap();
    }

    /// Takes batches of up to four records; records batch sizes; the record whose payload is
    /// `hold` completes only when the test says so.
    struct Batches {
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
        hold: Option<tokio::sync::oneshot::Receiver<()>>,
    }

    impl Stage for Batches {
        fn name(&self) -> &'static str {
            "batches"
        }
        fn handle(&mut self, _record: InRecord) -> BoxFuture<'_, Completion> {
            unreachable!("a batching stage is handed batches")
        }
        fn batch(&self) -> Batch {
            Batch {
                max_records: 4,
                max_wait: Duration::from_millis(200),
            }
        }
        fn handle_batch(&mut self, records: Vec<InRecord>) -> BoxFuture<'_, Vec<Completion>> {
            self.sizes.lock().unwrap().push(records.len());
            let completions = records
                .iter()
                .map(|record| match record.payload.as_deref() {
                    Some(b"hold") => {
                        let hold = self.hold.take().expect("one held record");
                        Box::pin(async move { hold.await.map_err(|_| StageError::Interrupted) })
                            as Completion
                    }
                    Some(b"bad") => {
                        Box::pin(async { Err(StageError::permanent("invalid", "bad record")) })
                            as Completion
                    }
                    _ => Box::pin(async { Ok(()) }) as Completion,
                })
                .collect();
            Box::pin(async move { completions })
        }
    }

    #[tokio::test]
    async fn a_batching_stage_gets_batches_and_offsets_wait_for_every_record_of_them() {
        let bus = MemoryBus::new();
        let shutdown = CancellationToken::new();
        let subscription = bus.subscribe("g", &["in"], shutdown.clone());
        for payload in ["a", "b", "hold", "c", "d", "bad", "e", "f", "g", "h"] {
            bus.publish(OutRecord {
                topic: Arc::from("in"),
                key: None,
                payload: Bytes::from(payload),
                headers: vec![],
            })
            .await
            .await
            .unwrap();
        }
        let (release, hold) = tokio::sync::oneshot::channel();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stage = Batches {
            sizes: sizes.clone(),
            hold: Some(hold),
        };
        let options = RunnerOptions {
            max_in_flight: 100,
            drain_timeout: Duration::from_secs(1),
            deadletter_topic: Arc::from("dlq"),
        };
        let health = Health::new(Duration::from_secs(30));
        let runner = tokio::spawn(run_stage(
            stage,
            subscription,
            bus.publisher(),
            options,
            Metrics::default(),
            health.heartbeat("batches"),
            shutdown.clone(),
        ));
        async fn wait_for(done: impl Fn() -> bool) {
            let started = std::time::Instant::now();
            while !done() {
                assert!(started.elapsed() < Duration::from_secs(10), "timed out");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        wait_for(|| sizes.lock().unwrap().iter().sum::<usize>() == 10).await;
        wait_for(|| bus.records("dlq").len() == 1).await;
        // Every record is done but the held one: no offset past it may be stored.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !bus.is_idle(),
            "an offset was stored past a record not yet done"
        );
        assert_eq!(*sizes.lock().unwrap(), [4, 4, 2]);
        release.send(()).unwrap();
        wait_for(|| bus.is_idle()).await;
        shutdown.cancel();
        runner.await.unwrap().unwrap();
    }

    #[test]
    fn offsets_are_committable_only_when_all_earlier_are_done() {
        let topic: Arc<str> = Arc::from("t");
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin(&topic, 0, offset);
        }
        assert_eq!(tracker.complete(&topic, 0, 12), None);
        assert_eq!(tracker.complete(&topic, 0, 11), None);
        assert_eq!(tracker.complete(&topic, 0, 10), Some(13));
        assert_eq!(tracker.complete(&topic, 0, 14), None);
        assert_eq!(tracker.complete(&topic, 0, 13), Some(15));
    }

    #[test]
    fn partitions_are_independent() {
        let topic: Arc<str> = Arc::from("t");
        let mut tracker = OffsetTracker::default();
        tracker.begin(&topic, 0, 0);
        tracker.begin(&topic, 1, 0);
        assert_eq!(tracker.complete(&topic, 1, 0), Some(1));
        assert_eq!(tracker.complete(&topic, 0, 0), Some(1));
    }
}
