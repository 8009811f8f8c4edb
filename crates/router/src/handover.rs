//! What the router does when an input partition moves between replicas, told by the
//! consumer's rebalance callbacks (`earshot_core::bus::OwnedPartitions::listen`).
//!
//! - Revoked (before librdkafka hands the partition over, the rebalance waiting for it): the
//!   partition is no longer ready, its groups let go of what they hold of it
//!   ([`crate::grouping::Grouper::release`]), and the escalation steps of its alerts that are
//!   being sent are waited for, so that the new owner reads them in the state topic rather
//!   than sending them again. The wait is bounded by `kafka.drain_timeout_ms` and half of
//!   `kafka.session_timeout_ms`: a member leaving the group (shutdown) does not heartbeat
//!   meanwhile, and the group hands its partitions over once its session expires.
//! - Assigned (before any of its records is read): the partition is not ready until the
//!   state topic's partition was read up to its end as it is then
//!   (`earshot_core::table::TableReader::read_to_end`, by the "router-state-catch-up" task):
//!   what the previous owner wrote last (a step sent, a group notified, a spike window, an
//!   alert resolved) is applied before the first record of the partition is handled, and
//!   before its escalations are driven here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::bus::{RebalanceEvent, RebalanceListener};
use earshot_core::table::TableReader;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::escalation::Escalations;
use crate::grouping::Grouper;

/// Which input partitions have had their state read since they were last assigned.
#[derive(Default)]
pub struct Readiness {
    partitions: Mutex<HashMap<i32, Assignment>>,
    /// Woken when a partition becomes ready.
    ready: Notify,
}

/// One input partition's latest assignment.
struct Assignment {
    /// Counts assignments and revocations: a read started for an earlier one does not make
    /// a later one ready.
    epoch: u64,
    ready: bool,
}

impl Readiness {
    /// Whether the records and escalations of `partition` may be handled: its state was read
    /// since it was assigned. A partition never assigned or revoked here is ready (the
    /// embedded mode's, which owns everything); ownership is asked separately.
    pub fn is_ready(&self, partition: i32) -> bool {
        self.partitions
            .lock()
            .expect("readiness lock")
            .get(&partition)
            .is_none_or(|a| a.ready)
    }

    /// Waits until `partition` is ready.
    pub async fn wait_ready(&self, partition: i32) {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_ready(partition) {
                return;
            }
            notified.await;
        }
    }

    /// `partition` is assigned (again): not ready until its state is read; returns the
    /// assignment's epoch, for [`Readiness::read`].
    pub fn assigned(&self, partition: i32) -> u64 {
        self.unready(partition)
    }

    /// `partition` is revoked.
    pub fn revoked(&self, partition: i32) {
        self.unready(partition);
    }

    /// The state of `partition` was read for assignment `epoch`: ready, unless it was
    /// revoked or assigned again since.
    pub fn read(&self, partition: i32, epoch: u64) {
        let mut partitions = self.partitions.lock().expect("readiness lock");
        if let Some(assignment) = partitions.get_mut(&partition) {
            if assignment.epoch == epoch {
                assignment.ready = true;
                drop(partitions);
                self.ready.notify_waiters();
            }
        }
    }

    /// Whether `epoch` is still `partition`'s latest assignment.
    fn current(&self, partition: i32, epoch: u64) -> bool {
        self.partitions
            .lock()
            .expect("readiness lock")
            .get(&partition)
            .is_some_and(|a| a.epoch == epoch)
    }

    fn unready(&self, partition: i32) -> u64 {
        let mut partitions = self.partitions.lock().expect("readiness lock");
        let assignment = partitions.entry(partition).or_insert(Assignment {
            epoch: 0,
            ready: false,
        });
        assignment.epoch += 1;
        assignment.ready = false;
        assignment.epoch
    }
}

/// What a revocation lets go of, and where an assignment's state is read.
pub struct Handover {
    /// The input topic whose partitions are the router's.
    pub topic: String,
    pub readiness: Arc<Readiness>,
    pub grouper: Arc<Grouper>,
    pub escalations: Arc<Escalations>,
    /// How long a revocation waits for the steps being sent.
    pub step_timeout: Duration,
}

impl Handover {
    /// The rebalance listener, and the receiving end of the assignments whose state is to
    /// be read ([`catch_up`]).
    pub fn listener(self) -> (RebalanceListener, mpsc::UnboundedReceiver<(i32, u64)>) {
        let (assigned, to_read) = mpsc::unbounded_channel();
        let listener: RebalanceListener = Arc::new(move |event: &RebalanceEvent| match event {
            RebalanceEvent::Assigned(list) => {
                for partition in self.ours(list) {
                    let epoch = self.readiness.assigned(partition);
                    // Closed only once the router stopped: nothing left to read for.
                    let _ = assigned.send((partition, epoch));
                }
            }
            RebalanceEvent::Revoked(list) => self.revoke(&self.ours(list)),
        });
        (listener, to_read)
    }

    fn ours(&self, list: &[(String, i32)]) -> Vec<i32> {
        list.iter()
            .filter(|(topic, _)| *topic == self.topic)
            .map(|(_, partition)| *partition)
            .collect()
    }

    fn revoke(&self, partitions: &[i32]) {
        if partitions.is_empty() {
            return;
        }
        for partition in partitions {
            self.readiness.revoked(*partition);
            self.grouper.release(*partition);
        }
        let wait = |timeout| {
            self.escalations
                .wait_for_steps(&self.topic, partitions, timeout)
        };
        // The callback runs on a runtime worker, inside the stage loop's read; the steps'
        // task runs elsewhere. On the multi-threaded runtime the worker is handed over
        // while this one waits; a single-threaded runtime could not run the steps at all.
        // Nothing is handed over when no step is in progress (the usual case).
        let finished = wait(Duration::ZERO)
            || match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => false,
                Ok(_) => tokio::task::block_in_place(|| wait(self.step_timeout)),
                Err(_) => wait(self.step_timeout),
            };
        if finished {
            tracing::info!(
                ?partitions,
                "partitions revoked: their groups' state released, no escalation step in progress"
            );
        } else {
            tracing::warn!(?partitions, "partitions revoked while an escalation step was still being sent: the new owner may send it again (same delivery id)");
        }
    }
}

/// Reads the state of each partition assigned (told by the listener of [`Handover`]) up to
/// its end, then marks it ready, until `stop`. The partitions of one rebalance are read at
/// once; a failed read is retried (100 ms doubling to 5 s) while the assignment stands.
pub async fn catch_up(
    reader: Arc<dyn TableReader>,
    readiness: Arc<Readiness>,
    mut assigned: mpsc::UnboundedReceiver<(i32, u64)>,
    stop: CancellationToken,
) {
    let mut reading = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((partition, epoch)) = assigned.recv() => {
                reading.push(read_partition(reader.clone(), readiness.clone(), partition, epoch));
            }
            Some(()) = reading.next(), if !reading.is_empty() => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn read_partition(
    reader: Arc<dyn TableReader>,
    readiness: Arc<Readiness>,
    partition: i32,
    epoch: u64,
) {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    while readiness.current(partition, epoch) {
        match reader.read_to_end(partition).await {
            Ok(()) => {
                readiness.read(partition, epoch);
                tracing::info!(
                    partition,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "partition assigned: its state is read up to the end"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(partition, %error, "reading the state of an assigned partition failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// A partition is ready once read for its latest assignment: a read finishing for an
    /// assignment since revoked, or assigned again, does not make it ready.
    #[tokio::test]
    async fn a_partition_is_ready_once_read_for_its_latest_assignment() {
        let readiness = Readiness::default();
        assert!(readiness.is_ready(3), "never assigned: the embedded mode's");
        let first = readiness.assigned(3);
        assert!(!readiness.is_ready(3));
        readiness.revoked(3);
        let second = readiness.assigned(3);
        readiness.read(3, first);
        assert!(!readiness.is_ready(3), "read for an earlier assignment");
        let waiting = readiness.wait_ready(3);
        tokio::pin!(waiting);
        assert!(waiting.as_mut().now_or_never().is_none());
        readiness.read(3, second);
        assert!(readiness.is_ready(3));
        waiting.await;
        assert!(!readiness.current(3, first) && readiness.current(3, second));
    }
}
