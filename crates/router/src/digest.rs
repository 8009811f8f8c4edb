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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::RouterConfig;
use earshot_core::StageError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::grouping::{GroupResult, Notification};
use crate::Deliverer;

/// Sends notifications to receivers, each within its rate limit.
pub struct Outbox {
    deliverer: Arc<Deliverer>,
    limits: HashMap<String, Limit>,
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
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
            shutdown,
        })
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
            let lane = lanes.entry(receiver.to_owned()).or_default();
            let now = Instant::now();
            if !lane.scheduled && lane.next_slot.is_none_or(|slot| slot <= now) {
                lane.next_slot = Some(now + limit.min_interval);
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
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                // Send what is pending now rather than leave it to be read again.
                _ = self.shutdown.cancelled() => {}
            }
            let batch = {
                let mut lanes = self.lanes.lock().expect("lanes lock");
                let lane = lanes.entry(receiver.clone()).or_default();
                lane.next_slot = Some(Instant::now() + limit.min_interval);
                std::mem::take(&mut lane.pending)
            };
            if !batch.is_empty() {
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
            let lane = lanes.entry(receiver.clone()).or_default();
            if lane.pending.is_empty() {
                lane.scheduled = false;
                return;
            }
            at = lane.next_slot.unwrap_or_else(Instant::now);
        }
    }
}
