//! The sink's writer task: batches the items the stage hands it and writes each batch to every
//! configured target, then resolves each item's completion.
//!
//! A batch flushes at `batch_size` items or `batch_linger_ms` after its first item, whichever
//! comes first. It goes to PostgreSQL first (one transaction); the items PostgreSQL took are
//! then appended to Parquet, and complete when their file is closed. An item PostgreSQL
//! rejected completes with its error and is not written to Parquet.
//!
//! Open Parquet files also roll early once the items waiting on them reach the runner's
//! `max_in_flight`: no further record can be read until some complete.
//!
//! At shutdown the task writes what it holds (one PostgreSQL attempt, no retries) and closes
//! every Parquet file, so in-flight records complete before the runner's drain timeout; it
//! ends once the stage drops its sender.

use std::time::Duration;

use earshot_core::telemetry::Metrics;
use earshot_core::StageError;
use prometheus::{Histogram, IntCounter};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::parquet::{ParquetFiles, Position};
use crate::postgres::Postgres;
use crate::rows::Item;
use crate::SinkError;

/// An item and the completion it resolves.
pub struct Pending {
    pub item: Item,
    /// Where the record is: Parquet files are named by it.
    pub position: Position,
    pub done: oneshot::Sender<Result<(), StageError>>,
}

/// Resolves one record's completion. Dropped unresolved, the record is interrupted (not
/// acknowledged, read again after a restart).
pub struct Waiter {
    done: oneshot::Sender<Result<(), StageError>>,
    collected_at_micros: i64,
}

impl Waiter {
    fn succeed(self, sent: &IntCounter, latency: &Histogram) {
        sent.inc();
        latency.observe(earshot_core::telemetry::seconds_since(
            self.collected_at_micros,
        ));
        let _ = self.done.send(Ok(()));
    }

    fn fail(self, error: StageError) {
        let _ = self.done.send(Err(error));
    }
}

pub struct Writer {
    pub postgres: Option<Postgres>,
    pub parquet: Option<ParquetFiles<Waiter>>,
    pub batch_size: usize,
    pub linger: Duration,
    pub max_waiting: usize,
    pub metrics: Metrics,
    /// Shutdown; also cancelled by the writer when it fails, to stop the consumer.
    pub stop: CancellationToken,
}

impl Writer {
    pub async fn run(mut self, receiver: mpsc::Receiver<Pending>) -> Result<(), SinkError> {
        let result = self.run_until_closed(receiver).await;
        if let Err(error) = &result {
            tracing::error!(%error, "the sink's writer failed; stopping");
            self.stop.cancel();
        }
        result
    }

    async fn run_until_closed(
        &mut self,
        mut receiver: mpsc::Receiver<Pending>,
    ) -> Result<(), SinkError> {
        let mut batch: Vec<Pending> = Vec::new();
        let mut linger_until: Option<Instant> = None;
        let mut stopping = false;
        loop {
            let parquet_deadline = self.parquet.as_ref().and_then(ParquetFiles::next_deadline);
            let deadline = [linger_until, parquet_deadline].into_iter().flatten().min();
            tokio::select! {
                biased;
                _ = self.stop.cancelled(), if !stopping => {
                    stopping = true;
                    while let Ok(pending) = receiver.try_recv() {
                        batch.push(pending);
                    }
                    self.flush(&mut batch).await?;
                    linger_until = None;
                    self.close_all_files()?;
                }
                received = receiver.recv() => {
                    let Some(pending) = received else { break };
                    batch.push(pending);
                    if stopping {
                        // Records handed over during shutdown: write them at once.
                        while let Ok(pending) = receiver.try_recv() {
                            batch.push(pending);
                        }
                        self.flush(&mut batch).await?;
                        self.close_all_files()?;
                    } else if batch.len() >= self.batch_size {
                        self.flush(&mut batch).await?;
                        linger_until = None;
                    } else if linger_until.is_none() {
                        linger_until = Some(Instant::now() + self.linger);
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = Instant::now();
                    if linger_until.is_some_and(|at| at <= now) {
                        self.flush(&mut batch).await?;
                        linger_until = None;
                    }
                    if let Some(parquet) = &mut self.parquet {
                        let released = parquet.roll_due(now)?;
                        self.succeed(released);
                    }
                }
            }
        }
        self.flush(&mut batch).await?;
        self.close_all_files()
    }

    /// Writes `batch` (in chunks of `batch_size`) and leaves it empty.
    async fn flush(&mut self, batch: &mut Vec<Pending>) -> Result<(), SinkError> {
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(self.batch_size));
            let chunk = std::mem::replace(batch, rest);
            self.write_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn write_chunk(&mut self, chunk: Vec<Pending>) -> Result<(), SinkError> {
        let mut items = Vec::with_capacity(chunk.len());
        let mut waiters = Vec::with_capacity(chunk.len());
        for Pending {
            item,
            position,
            done,
        } in chunk
        {
            waiters.push(Waiter {
                done,
                collected_at_micros: item.collected_at().timestamp_micros(),
            });
            items.push((item, position));
        }

        // PostgreSQL first; keep the items it took.
        let mut accepted: Vec<((Item, Position), Waiter)> = Vec::with_capacity(items.len());
        if let Some(postgres) = &mut self.postgres {
            let refs: Vec<&Item> = items.iter().map(|(item, _)| item).collect();
            let outcomes = postgres.write(&refs, &self.stop).await;
            for ((item, waiter), outcome) in items.into_iter().zip(waiters).zip(outcomes) {
                match outcome {
                    Ok(()) => accepted.push((item, waiter)),
                    Err(error) => waiter.fail(error),
                }
            }
        } else {
            accepted.extend(items.into_iter().zip(waiters));
        }

        let Some(parquet) = &mut self.parquet else {
            self.succeed(accepted.into_iter().map(|(_, waiter)| waiter).collect());
            return Ok(());
        };
        let (items, waiters): (Vec<(Item, Position)>, Vec<Waiter>) = accepted.into_iter().unzip();
        let mut mention_rows = Vec::new();
        let mut alert_rows = Vec::new();
        for ((item, position), waiter) in items.iter().zip(waiters) {
            match item {
                Item::Mention { mention, .. } => {
                    mention_rows.push((mention, position.clone(), waiter))
                }
                Item::Alert { alert, .. } => alert_rows.push((alert, position.clone(), waiter)),
            }
        }
        let mut released = parquet.append(mention_rows)?;
        released.extend(parquet.append(alert_rows)?);
        if parquet.waiting() >= self.max_waiting {
            tracing::debug!(
                waiting = parquet.waiting(),
                "rolling Parquet files early: the in-flight limit is reached"
            );
            released.extend(parquet.close_all()?);
        }
        self.succeed(released);
        Ok(())
    }

    fn close_all_files(&mut self) -> Result<(), SinkError> {
        if let Some(parquet) = &mut self.parquet {
            let released = parquet.close_all()?;
            self.succeed(released);
        }
        Ok(())
    }

    fn succeed(&self, waiters: Vec<Waiter>) {
        // Labelled metrics looked up once per batch, not once per record.
        let sent = self.metrics.sent.with_label_values(&["sink"]);
        let latency = self.metrics.latency.with_label_values(&["sink"]);
        for waiter in waiters {
            waiter.succeed(&sent, &latency);
        }
    }
}
