//! Per-receiver rate limits that fold overflow into a digest.
//!
//! A receiver with a rate limit (`rate_limit.min_interval_ms`; Slack receivers by default,
//! at their `min_interval_ms`) gets at most one message per interval. A notification that
//! comes while the receiver's slot is taken does not fail and does not queue as its own
//! message: it joins the receiver's pending digest, which goes out as one message ("12 more
//! alerts: ...", the first `max_listed` in full) when the next slot opens. Whatever the
//! rate, a receiver's pending work is one digest, bounded by the records in flight.
//!
//! Every notification folded into a digest completes with the digest's delivery, so the
//! offsets of the records behind it are stored only once the digest is delivered (or has
//! failed after every retry and is dead-lettered with them).
//!
//! Restarts: each message to a rate-limited receiver saves the receiver's next slot in the
//! state topic ([`SavedSlot`]), and a router (re)started reads it before its first mention,
//! so the limit holds across restarts. At shutdown a pending digest is not sent early (in
//! the embedded mode, whose state is not durable, it is sent at once): its
//! records complete as interrupted (their offsets are not stored), and, read again after
//! the restart, they fold into one digest at the saved slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::RouterConfig;
use earshot_core::model::now_micros;
use earshot_core::StageError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::grouping::{GroupResult, Notification};
use crate::state::StateCell;
use crate::Deliverer;

/// A rate-limited receiver's entry in the state topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedSlot {
    /// When the receiver may get its next message (µs since the epoch).
    pub next_slot_at: i64,
}

/// Sends notifications to receivers, each within its rate limit.
pub struct Outbox {
    deliverer: Arc<Deliverer>,
    limits: HashMap<String, Limit>,
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
    /// Saved next slots, taken up when a receiver's lane is first used.
    saved: Mutex<HashMap<String, i64>>,
    state: StateCell,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    min_interval: Duration,
    max_listed: usize,
}

/// One rate-limited receiver.
#[derive(Default)]
struct Lane {
    /// When the next message may go.
    next_slot: Option<Instant>,
    pending: Vec<(Notification, oneshot::Sender<GroupResult>)>,
    /// A task is waiting for the next slot to send the digest.
    scheduled: bool,
}

impl Outbox {
    pub fn new(
        config: &RouterConfig,
        deliverer: Arc<Deliverer>,
        shutdown: CancellationToken,
        state: StateCell,
    ) -> Arc<Self> {
        let limits = config
            .receivers
            .iter()
            .filter_map(|receiver| {
                let limit = receiver.effective_rate_limit()?;
                (limit.min_interval_ms > 0).then(|| {
                    (
                        receiver.name.clone(),
                        Limit {
                            min_interval: Duration::from_millis(limit.min_interval_ms),
                            max_listed: limit.max_listed,
                        },
                    )
                })
            })
            .collect();
        Arc::new(Outbox {
            deliverer,
            limits,
            lanes: Arc::default(),
            saved: Mutex::default(),
            state,
            shutdown,
        })
    }

    /// Takes a receiver's saved slot from the state topic; the latest slot wins.
    pub fn restore(&self, receiver: &str, slot: SavedSlot) {
        let mut saved = self.saved.lock().expect("saved slots lock");
        let at = saved.entry(receiver.to_owned()).or_insert(i64::MIN);
        *at = (*at).max(slot.next_slot_at);
    }

    /// The lane of `receiver`, created with its saved slot.
    fn lane<'a>(&self, lanes: &'a mut HashMap<String, Lane>, receiver: &str) -> &'a mut Lane {
        lanes.entry(receiver.to_owned()).or_insert_with(|| {
            let saved = self
                .saved
                .lock()
                .expect("saved slots lock")
                .get(receiver)
                .copied();
            let next_slot = saved.and_then(|at| {
                let ahead = at.saturating_sub(now_micros());
                (ahead > 0).then(|| Instant::now() + Duration::from_micros(ahead.unsigned_abs()))
            });
            Lane {
                next_slot,
                ..Lane::default()
            }
        })
    }

    /// Saves the receiver's next slot, `interval` from now, without waiting: a lost write
    /// only lets one message come early after a restart.
    fn save_slot(&self, receiver: &str, interval: Duration) {
        let Some(state) = self.state.get() else {
            return;
        };
        let slot = SavedSlot {
            next_slot_at: now_micros()
                .saturating_add(i64::try_from(interval.as_micros()).unwrap_or(i64::MAX)),
        };
        let (state, receiver) = (state.clone(), receiver.to_owned());
        // "router-digest-slot"
        tokio::spawn(async move {
            let ack = state.save_slot(&receiver, &slot).await;
            if let Err(error) = ack.await {
                tracing::warn!(receiver, %error, "saving a receiver's rate-limit slot failed");
            }
        });
    }

    /// Sends `notification` to `receiver`: now, or folded into the receiver's next digest
    /// when its rate limit's slot is taken. Resolves with the delivery of the message that
    /// carried it.
    pub async fn send(self: &Arc<Self>, notification: Notification, receiver: &str) -> GroupResult {
        let Some(limit) = self.limits.get(receiver).copied() else {
            return self
                .deliverer
                .deliver_notification(&notification, receiver)
                .await;
        };
        let waiting = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            let lane = self.lane(&mut lanes, receiver);
            let now = Instant::now();
            if !lane.scheduled && lane.next_slot.is_none_or(|slot| slot <= now) {
                lane.next_slot = Some(now + limit.min_interval);
                self.save_slot(receiver, limit.min_interval);
                None
            } else {
                let (done, waiting) = oneshot::channel();
                lane.pending.push((notification.clone(), done));
                if !lane.scheduled {
                    lane.scheduled = true;
                    let at = lane.next_slot.unwrap_or(now);
                    // One task per receiver with a digest pending ("router-digest").
                    tokio::spawn(self.clone().send_digests(receiver.to_owned(), limit, at));
                }
                Some(waiting)
            }
        };
        match waiting {
            None => {
                self.deliverer
                    .deliver_notification(&notification, receiver)
                    .await
            }
            Some(waiting) => waiting.await.unwrap_or(Err(StageError::Interrupted)),
        }
    }

    /// Sends the receiver's pending digest at each slot until none is pending.
    async fn send_digests(self: Arc<Self>, receiver: String, limit: Limit, mut at: Instant) {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep_until(at) => false,
                _ = self.shutdown.cancelled() => true,
            };
            if stopping && self.state.get().is_some_and(|state| state.durable()) {
                // Not sent early: read again after the restart, the records fold into the
                // digest at the saved slot. Without a durable state (the embedded mode), it
                // is sent now instead.
                let batch = {
                    let mut lanes = self.lanes.lock().expect("lanes lock");
                    let lane = self.lane(&mut lanes, &receiver);
                    lane.scheduled = false;
                    std::mem::take(&mut lane.pending)
                };
                for (_, done) in batch {
                    let _ = done.send(Err(StageError::Interrupted));
                }
                return;
            }
            let batch = {
                let mut lanes = self.lanes.lock().expect("lanes lock");
                let lane = self.lane(&mut lanes, &receiver);
                lane.next_slot = Some(Instant::now() + limit.min_interval);
                std::mem::take(&mut lane.pending)
            };
            if !batch.is_empty() {
                self.save_slot(&receiver, limit.min_interval);
                let (parts, waiters): (Vec<Notification>, Vec<_>) = batch.into_iter().unzip();
                let folded = parts.len();
                let digest = Notification::digest(parts, &receiver, limit.max_listed);
                tracing::debug!(
                    receiver,
                    folded,
                    alerts = digest.alerts.len(),
                    "sending a digest of what came too soon for the rate limit"
                );
                let result = self
                    .deliverer
                    .deliver_notification(&digest, &receiver)
                    .await;
                for done in waiters {
                    let _ = done.send(result.clone());
                }
            }
            let mut lanes = self.lanes.lock().expect("lanes lock");
            let lane = self.lane(&mut lanes, &receiver);
            if lane.pending.is_empty() {
                lane.scheduled = false;
                return;
            }
            at = lane.next_slot.unwrap_or_else(Instant::now);
        }
    }
}
