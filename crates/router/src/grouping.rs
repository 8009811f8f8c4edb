//! Grouping, like Alertmanager's: a route with `group_by` collects its alerts into groups
//! (one per route, receiver and values of the `group_by` labels) and sends each group as
//! one notification carrying its alerts.
//!
//! - A new group waits `group_wait_secs` for more alerts before its first notification.
//! - Alerts that join later go out together, at least `group_interval_secs` after the
//!   group's previous notification. A group idle for longer starts again with `group_wait`.
//! - An alert already notified in its group (the same mention read again after a restart)
//!   is not notified again before `repeat_interval_secs`; it completes with the earlier
//!   delivery.
//!
//! At-least-once: a record's completion waits for the notification that carries each of
//! its alerts to be delivered, or to fail after every retry (then the alert is
//! dead-lettered as an ungrouped one is), so no offset is stored before. Records waiting
//! for their group count in `kafka.max_in_flight`.
//!
//! Restarts: each group keeps, per input partition of its alerts, an entry in the state
//! topic ([`SavedGroup`]: when its pending notification is due, when it last went out, and
//! which alerts it notified within `repeat_interval`). At shutdown a pending group is not
//! sent early (unless the state is not durable, in the embedded mode: then it is sent at
//! once): its records complete as interrupted (their offsets are not stored) and the
//! router that reads them again, restarted or newly assigned the partition, puts them back
//! in the group, which goes out once, when it was due (or [`RESTORED_GRACE`] after its
//! first alert is read again, when that time has passed meanwhile), with whatever joined
//! since. `group_interval` and `repeat_interval` hold across restarts the same way.
//!
//! Rebalances: when an input partition is revoked, the groups let go of what they hold of
//! it ([`Grouper::release`], from the rebalance callback before the partition is handed
//! over: its alerts pending complete as interrupted, its notified alerts are forgotten, its
//! entries are no longer written), since its new owner writes newer entries; if it comes
//! back, each group takes up its entry again from the state topic's latest value, as on a
//! first alert (the router reads the partition's state to its end before its first record:
//! `handover`).
//!
//! The notification bodies of several alerts (a group, or a digest of the receiver's rate
//! limit, see `digest`) are here too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::RouteConfig;
use earshot_core::model::{
    delivery_id, now_micros, Alert, Delivery, DeliveryStatus, EnrichedMention, ID_NAMESPACE,
};
use earshot_core::StageError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::channels::{cut, escape_slack, title, why};
use crate::digest::Outbox;
use crate::state::StateCell;

const DEFAULT_GROUP_WAIT_SECS: u64 = 30;
const DEFAULT_GROUP_INTERVAL_SECS: u64 = 300;
const DEFAULT_REPEAT_INTERVAL_SECS: u64 = 14_400;
/// Groups are pruned (idle, nothing pending) every this many submissions.
const PRUNE_EVERY: u64 = 1_024;
/// A saved entry remembers at most this many notified alerts (the latest), so that it stays
/// well under a Kafka record's size limit; older ones may be notified again after a restart.
const MAX_SAVED_ALERTS: usize = 10_000;
/// How long after its first alert is read again a group goes out whose notification fell
/// due while the router was down (at most its `group_wait`): time for the other records
/// read again to rejoin it.
pub const RESTORED_GRACE: Duration = Duration::from_secs(1);

/// A group's entry in the state topic for the alerts of one input partition: what a router
/// restarted, or newly assigned the partition, needs to go on with the group as before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedGroup {
    /// When the pending notification is due (µs since the epoch); none when none is pending.
    #[serde(default)]
    pub due_at: Option<i64>,
    /// When the group's last notification went out (µs).
    #[serde(default)]
    pub last_sent_at: Option<i64>,
    /// The notifications within `repeat_interval` that carried this partition's alerts.
    #[serde(default)]
    pub notified: Vec<SavedNotification>,
}

/// One notification of a group, and the alerts of one partition it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedNotification {
    /// When it went out (µs).
    pub at: i64,
    pub delivery: Delivery,
    pub alerts: Vec<Uuid>,
}

/// A route's grouping, with inherited and default values resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPolicy {
    pub labels: Vec<String>,
    pub wait: Duration,
    pub interval: Duration,
    pub repeat: Duration,
}

/// The grouping of every route that groups, by route name (names are unique in the tree).
pub fn policies(routes: &[RouteConfig]) -> HashMap<String, GroupPolicy> {
    #[derive(Clone, Default)]
    struct Inherited {
        group_by: Option<Vec<String>>,
        wait: Option<u64>,
        interval: Option<u64>,
        repeat: Option<u64>,
    }
    fn walk(routes: &[RouteConfig], parent: &Inherited, out: &mut HashMap<String, GroupPolicy>) {
        for route in routes {
            let own = Inherited {
                group_by: route.group_by.clone().or_else(|| parent.group_by.clone()),
                wait: route.group_wait_secs.or(parent.wait),
                interval: route.group_interval_secs.or(parent.interval),
                repeat: route.repeat_interval_secs.or(parent.repeat),
            };
            if let Some(labels) = &own.group_by {
                out.insert(
                    route.name.clone(),
                    GroupPolicy {
                        labels: labels.clone(),
                        wait: Duration::from_secs(own.wait.unwrap_or(DEFAULT_GROUP_WAIT_SECS)),
                        interval: Duration::from_secs(
                            own.interval.unwrap_or(DEFAULT_GROUP_INTERVAL_SECS),
                        ),
                        repeat: Duration::from_secs(
                            own.repeat.unwrap_or(DEFAULT_REPEAT_INTERVAL_SECS),
                        ),
                    },
                );
            }
            walk(&route.routes, &own, out);
        }
    }
    let mut out = HashMap::new();
    walk(routes, &Inherited::default(), &mut out);
    out
}

/// An alert in a notification, with the mention it is about.
pub type Carried = (Alert, Arc<EnrichedMention>);

/// One message to a receiver carrying one or more alerts: an alert alone, a group, or a
/// digest of what came too soon for the receiver's rate limit.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The delivery id (and idempotency key): stable for the same alerts to the same
    /// receiver, so a retry carries the same one.
    pub id: Uuid,
    /// The group (the alert's id for an ungrouped alert; for a digest, the receiver's).
    pub group_id: Uuid,
    /// The route of the group; empty for a digest of several routes.
    pub route: String,
    /// The group's `group_by` labels and values.
    pub labels: Vec<(String, String)>,
    pub alerts: Vec<(Alert, Arc<EnrichedMention>)>,
    /// A digest of the receiver's rate limit.
    pub digest: bool,
    /// Alerts shown in full; the rest get one line each.
    pub max_listed: usize,
}

const MAX_LISTED: usize = 5;

impl Notification {
    /// The notification of one alert.
    pub fn single(alert: Alert, enriched: Arc<EnrichedMention>, receiver: &str) -> Self {
        Notification {
            id: delivery_id(alert.id, receiver),
            group_id: alert.id,
            route: alert.route.clone(),
            labels: Vec::new(),
            alerts: vec![(alert, enriched)],
            digest: false,
            max_listed: MAX_LISTED,
        }
    }

    /// One digest of several notifications to `receiver` (one stays itself).
    pub fn digest(mut parts: Vec<Notification>, receiver: &str, max_listed: usize) -> Self {
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let route = match &parts[..] {
            [first, rest @ ..] if rest.iter().all(|p| p.route == first.route) => {
                first.route.clone()
            }
            _ => String::new(),
        };
        let mut alerts: Vec<(Alert, Arc<EnrichedMention>)> = Vec::new();
        for part in parts {
            for (alert, enriched) in part.alerts {
                if !alerts.iter().any(|(a, _)| a.id == alert.id) {
                    alerts.push((alert, enriched));
                }
            }
        }
        Notification {
            id: notification_id(receiver, &alerts),
            group_id: Uuid::new_v5(&ID_NAMESPACE, format!("digest:{receiver}").as_bytes()),
            route,
            labels: Vec::new(),
            alerts,
            digest: true,
            max_listed,
        }
    }

    fn title(&self) -> String {
        if self.alerts.len() == 1 {
            return title(&self.alerts[0].0);
        }
        let mut watchlists: Vec<&str> = self
            .alerts
            .iter()
            .map(|(a, _)| a.watchlist.as_str())
            .collect();
        watchlists.sort_unstable();
        watchlists.dedup();
        let what = if self.digest { "digest" } else { "group" };
        let route = if self.route.is_empty() {
            String::new()
        } else {
            format!(" · {}", self.route)
        };
        format!(
            "Earshot {what}: {}{route} · {} alerts",
            watchlists.join(", "),
            self.alerts.len()
        )
    }

    /// The alerts shown in full, and the rest.
    fn split(&self) -> (&[Carried], &[Carried]) {
        self.alerts
            .split_at(self.max_listed.max(1).min(self.alerts.len()))
    }

    /// The one-line form of an alert, for the alerts beyond `max_listed`.
    fn line(alert: &Alert) -> String {
        format!(
            "{} · {}: {}",
            alert.route,
            alert.author_handle,
            cut(&alert.mention_text.replace('\n', " "), 100)
        )
    }

    fn more_text(&self) -> Option<String> {
        let (_, rest) = self.split();
        if rest.is_empty() {
            return None;
        }
        let lines: Vec<String> = rest.iter().map(|(a, _)| Self::line(a)).collect();
        Some(format!(
            "{} more alert{}:\n{}",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ))
    }
}

/// The id of a notification of these alerts to this receiver.
fn notification_id(receiver: &str, alerts: &[(Alert, Arc<EnrichedMention>)]) -> Uuid {
    let mut ids: Vec<String> = alerts.iter().map(|(a, _)| a.id.to_string()).collect();
    ids.sort_unstable();
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("notification:{receiver}:{}", ids.join(",")).as_bytes(),
    )
}

/// What an alert waiting in a group gets back: the delivery of the notification that
/// carried it, or why it was not sent.
pub type GroupResult = Result<Delivery, StageError>;

/// The delivery record of one alert that went out in `notification`'s delivery.
pub fn delivery_of(alert: &Alert, receiver: &str, notification: &Delivery) -> Delivery {
    Delivery {
        id: delivery_id(alert.id, receiver),
        ..notification.clone()
    }
}

/// Whether this process is assigned an input partition now.
pub type Owns = Arc<dyn Fn(i32) -> bool + Send + Sync>;

/// The groups of every grouping route, each with its timer task while it has alerts pending.
pub struct Grouper {
    policies: HashMap<String, GroupPolicy>,
    groups: Arc<Mutex<HashMap<Uuid, GroupState>>>,
    /// The state topic's group entries, by input partition and group: taken up when the
    /// group gets its first alert of that partition.
    saved: Mutex<HashMap<(i32, Uuid), SavedGroup>>,
    state: StateCell,
    owns: Owns,
    outbox: Arc<Outbox>,
    shutdown: CancellationToken,
    submitted: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct GroupState {
    pending: Vec<Pending>,
    /// A task is timing the next notification.
    scheduled: bool,
    last_sent: Option<Instant>,
    /// Alerts notified, for `repeat_interval`.
    notified: HashMap<Uuid, Notified>,
    /// The input partitions of its alerts (whose saved entries are taken up, and written).
    partitions: HashSet<i32>,
    /// When a notification pending before a restart was due.
    restored_due: Option<Instant>,
}

/// An alert notified in its group.
struct Notified {
    at: Instant,
    at_micros: i64,
    partition: i32,
    /// The delivery of the notification that carried it.
    delivery: Arc<Delivery>,
}

struct Pending {
    alert: Alert,
    enriched: Arc<EnrichedMention>,
    partition: i32,
    done: oneshot::Sender<GroupResult>,
}

impl Grouper {
    /// `owns` says whether this process is assigned an input partition (only then does it
    /// write the partition's entries, and it releases the others'); `state` is where groups
    /// are saved once it is read.
    pub fn new(
        routes: &[RouteConfig],
        outbox: Arc<Outbox>,
        shutdown: CancellationToken,
        state: StateCell,
        owns: Owns,
    ) -> Self {
        Grouper {
            policies: policies(routes),
            groups: Arc::default(),
            saved: Mutex::default(),
            state,
            owns,
            outbox,
            shutdown,
            submitted: Default::default(),
        }
    }

    /// Takes a group's entry from the state topic (`None`: deleted).
    pub fn restore(&self, partition: i32, group_id: Uuid, saved: Option<SavedGroup>) {
        let mut entries = self.saved.lock().expect("saved groups lock");
        match saved {
            Some(saved) => entries.insert((partition, group_id), saved),
            None => entries.remove(&(partition, group_id)),
        };
    }

    /// The id of the group an alert of `route` to `receiver` about `enriched` goes in;
    /// `None` when the route does not group. Its state entries are `group/<partition>/<id>`.
    pub fn group_id(
        &self,
        route: &str,
        receiver: &str,
        enriched: &EnrichedMention,
    ) -> Option<Uuid> {
        let policy = self.policies.get(route)?;
        Some(group_of(policy, route, receiver, enriched).0)
    }

    /// Puts the alert, read from input `partition`, in its group; `None` when its route does
    /// not group (send it alone). The receiver resolves once the notification carrying it
    /// is delivered or failed.
    pub fn submit(
        &self,
        alert: &Alert,
        receiver: &str,
        enriched: Arc<EnrichedMention>,
        partition: i32,
    ) -> Option<oneshot::Receiver<GroupResult>> {
        let policy = self.policies.get(&alert.route)?.clone();
        let (group_id, labels) = group_of(&policy, &alert.route, receiver, &enriched);
        let (done, receiver_of_result) = oneshot::channel();
        let now = Instant::now();
        let wall = now_micros();
        let mut groups = self.groups.lock().expect("groups lock");
        if self
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            let stale = self.prune(&mut groups, now, wall);
            if let (false, Some(state)) = (stale.is_empty(), self.state.get()) {
                let state = state.clone();
                // Deletes the entries of idle groups ("router-group-prune").
                tokio::spawn(async move {
                    for (partition, group_id) in stale {
                        let ack = state.save_group(partition, group_id, None).await;
                        if let Err(error) = ack.await {
                            tracing::warn!(%error, "deleting an idle group's state failed");
                        }
                    }
                });
            }
        }
        let group = groups.entry(group_id).or_default();
        if group.partitions.insert(partition) {
            if let Some(saved) = self
                .saved
                .lock()
                .expect("saved groups lock")
                .get(&(partition, group_id))
            {
                group.take_up(partition, saved, now, wall);
            }
            if group.scheduled {
                // Already timed here: what was pending before the restart rejoins it.
                group.restored_due = None;
            }
        }
        if let Some(notified) = group.notified.get(&alert.id) {
            if now.duration_since(notified.at) < policy.repeat {
                let _ = done.send(Ok(delivery_of(alert, receiver, &notified.delivery)));
                return Some(receiver_of_result);
            }
        }
        group.pending.push(Pending {
            alert: alert.clone(),
            enriched,
            partition,
            done,
        });
        if !group.scheduled {
            group.scheduled = true;
            let mut first = match group.last_sent {
                Some(last) if now < last + policy.interval => last + policy.interval,
                // New, or idle for longer than the interval: wait for more.
                _ => now + policy.wait,
            };
            if let Some(due) = group.restored_due.take() {
                // Pending when the router stopped: out when it was due, or shortly after
                // its alerts are read again when that time has passed.
                first = first.min(due.max(now + policy.wait.min(RESTORED_GRACE)));
            }
            let task = GroupTask {
                groups: self.groups.clone(),
                group_id,
                route: alert.route.clone(),
                labels,
                receiver: receiver.to_owned(),
                policy,
                outbox: self.outbox.clone(),
                state: self.state.clone(),
                owns: self.owns.clone(),
                shutdown: self.shutdown.clone(),
            };
            // One timer task per group with alerts pending ("router-group").
            tokio::spawn(task.run(first, partition));
        }
        Some(receiver_of_result)
    }

    /// Lets go of what is held for the alerts of input `partition`, revoked from this
    /// process (called by the rebalance listener, `handover`, before the partition is
    /// handed over): another replica owns it now and writes newer entries. Each group forgets the
    /// partition's notified alerts, its pending alerts of the partition complete as
    /// interrupted (their offsets are not stored: the new owner reads them again), and a
    /// group left with nothing is dropped. When the partition comes back, each group takes
    /// up its entry again from the state topic's latest value, as on a first alert.
    pub fn release(&self, partition: i32) {
        let mut interrupted = Vec::new();
        {
            let mut groups = self.groups.lock().expect("groups lock");
            groups.retain(|_, group| {
                if !group.partitions.remove(&partition) {
                    return true;
                }
                group.notified.retain(|_, n| n.partition != partition);
                let (gone, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut group.pending)
                    .into_iter()
                    .partition(|p| p.partition == partition);
                group.pending = kept;
                interrupted.extend(gone);
                if !group.partitions.is_empty() {
                    return true;
                }
                // Nothing of this process's left: what the group knew came from the
                // released partition. A timing task still running finds it empty and stops.
                group.last_sent = None;
                group.restored_due = None;
                group.scheduled
            });
        }
        for pending in interrupted {
            let _ = pending.done.send(Err(StageError::Interrupted));
        }
    }

    /// Drops idle groups whose repeat window is over, and the saved entries of such groups;
    /// returns the entries of this process's partitions to delete from the state topic.
    fn prune(
        &self,
        groups: &mut HashMap<Uuid, GroupState>,
        now: Instant,
        wall: i64,
    ) -> Vec<(i32, Uuid)> {
        let longest = self
            .policies
            .values()
            .map(|p| p.repeat.max(p.interval))
            .max()
            .unwrap_or_default();
        let mut stale = std::collections::HashSet::new();
        groups.retain(|id, group| {
            let keep = group.scheduled
                || !group.pending.is_empty()
                || group
                    .last_sent
                    .is_some_and(|last| now.duration_since(last) < longest);
            if !keep {
                stale.extend(group.partitions.iter().map(|p| (*p, *id)));
            }
            keep
        });
        let longest_micros = i64::try_from(longest.as_micros()).unwrap_or(i64::MAX);
        self.saved
            .lock()
            .expect("saved groups lock")
            .retain(|(partition, id), saved| {
                let recent =
                    |at: Option<i64>| at.is_some_and(|at| wall.saturating_sub(at) < longest_micros);
                let keep =
                    groups.contains_key(id) || recent(saved.due_at) || recent(saved.last_sent_at);
                if !keep {
                    stale.insert((*partition, *id));
                }
                keep
            });
        stale
            .into_iter()
            .filter(|(partition, _)| (self.owns)(*partition))
            .collect()
    }
}

impl GroupState {
    /// Takes up a group's saved entry for the alerts of `partition`.
    fn take_up(&mut self, partition: i32, saved: &SavedGroup, now: Instant, wall: i64) {
        let instant = |micros: i64| instant_at(micros, now, wall);
        if let Some(last) = saved.last_sent_at.map(instant) {
            self.last_sent = self.last_sent.max(Some(last));
        }
        if let Some(due) = saved.due_at.map(instant) {
            self.restored_due = Some(self.restored_due.map_or(due, |d| d.min(due)));
        }
        for notification in &saved.notified {
            let delivery = Arc::new(notification.delivery.clone());
            for id in &notification.alerts {
                self.notified.entry(*id).or_insert_with(|| Notified {
                    at: instant(notification.at),
                    at_micros: notification.at,
                    partition,
                    delivery: delivery.clone(),
                });
            }
        }
    }

    /// What the entry of the group for the alerts of `partition` is made of: cheap to take
    /// (no delivery is cloned), so that it is taken under the groups' lock and the entry
    /// built after.
    fn snapshot(&self, partition: i32) -> GroupSnapshot {
        GroupSnapshot {
            last_sent: self.last_sent,
            notified: self
                .notified
                .iter()
                .filter(|(_, n)| n.partition == partition)
                .map(|(id, n)| (*id, n.at, n.at_micros, n.delivery.clone()))
                .collect(),
        }
    }

    /// The entry of the group for the alerts of `partition`.
    #[cfg(test)]
    fn saved(&self, partition: i32, due: Option<Instant>, now: Instant, wall: i64) -> SavedGroup {
        self.snapshot(partition).into_saved(due, now, wall)
    }
}

/// A group's entry for one partition as taken under the lock ([`GroupState::snapshot`]).
struct GroupSnapshot {
    last_sent: Option<Instant>,
    /// Each notified alert: its id, when (as an instant and in µs) and its delivery.
    notified: Vec<(Uuid, Instant, i64, Arc<Delivery>)>,
}

impl GroupSnapshot {
    /// The entry: the latest [`MAX_SAVED_ALERTS`] notified alerts, by notification.
    fn into_saved(mut self, due: Option<Instant>, now: Instant, wall: i64) -> SavedGroup {
        if self.notified.len() > MAX_SAVED_ALERTS {
            self.notified
                .sort_unstable_by_key(|(_, at, _, _)| std::cmp::Reverse(*at));
            self.notified.truncate(MAX_SAVED_ALERTS);
        }
        let mut notified: BTreeMap<Uuid, SavedNotification> = BTreeMap::new();
        for (id, _, at_micros, delivery) in self.notified {
            notified
                .entry(delivery.id)
                .or_insert_with(|| SavedNotification {
                    at: at_micros,
                    delivery: (*delivery).clone(),
                    alerts: Vec::new(),
                })
                .alerts
                .push(id);
        }
        SavedGroup {
            due_at: due.map(|at| micros_at(at, now, wall)),
            last_sent_at: self.last_sent.map(|at| micros_at(at, now, wall)),
            notified: notified.into_values().collect(),
        }
    }
}

/// The instant of a wall-clock time in µs, given one instant and its wall-clock time.
fn instant_at(micros: i64, now: Instant, wall: i64) -> Instant {
    let ago = wall.saturating_sub(micros);
    let by = Duration::from_micros(ago.unsigned_abs());
    if ago >= 0 {
        // Before the clock's origin (a host just booted): taken as now.
        now.checked_sub(by).unwrap_or(now)
    } else {
        now + by
    }
}

/// The wall-clock time in µs of an instant, given one instant and its wall-clock time.
fn micros_at(at: Instant, now: Instant, wall: i64) -> i64 {
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    if at <= now {
        wall.saturating_sub(micros(now - at))
    } else {
        wall.saturating_add(micros(at - now))
    }
}

struct GroupTask {
    groups: Arc<Mutex<HashMap<Uuid, GroupState>>>,
    group_id: Uuid,
    route: String,
    labels: Vec<(String, String)>,
    receiver: String,
    policy: GroupPolicy,
    outbox: Arc<Outbox>,
    state: StateCell,
    owns: Owns,
    shutdown: CancellationToken,
}

impl GroupTask {
    /// Sends the group's pending alerts at `at`, then every `interval` while more join.
    /// `partition` is the first pending alert's.
    async fn run(self, mut at: Instant, partition: i32) {
        self.save(&[partition], Some(at)).await;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep_until(at) => false,
                _ = self.shutdown.cancelled() => true,
            };
            if stopping && self.state.get().is_some_and(|state| state.durable()) {
                // Not sent early: the records are read again after the restart and rejoin
                // the group, due when it was (saved above or after the last send). Without
                // a durable state (the embedded mode), it is sent now instead.
                let batch = {
                    let mut groups = self.groups.lock().expect("groups lock");
                    match groups.get_mut(&self.group_id) {
                        Some(group) => {
                            group.scheduled = false;
                            std::mem::take(&mut group.pending)
                        }
                        None => Vec::new(),
                    }
                };
                for pending in batch {
                    let _ = pending.done.send(Err(StageError::Interrupted));
                }
                return;
            }
            let batch = {
                let mut groups = self.groups.lock().expect("groups lock");
                let Some(group) = groups.get_mut(&self.group_id) else {
                    return;
                };
                let batch = std::mem::take(&mut group.pending);
                if batch.is_empty() {
                    // Its alerts' partition was released meanwhile: nothing to send.
                    group.scheduled = false;
                    return;
                }
                batch
            };
            let mut alerts: Vec<(Alert, Arc<EnrichedMention>)> = Vec::new();
            for pending in &batch {
                if !alerts.iter().any(|(a, _)| a.id == pending.alert.id) {
                    alerts.push((pending.alert.clone(), pending.enriched.clone()));
                }
            }
            let result = if alerts.is_empty() {
                Err(StageError::Interrupted)
            } else {
                let notification = Notification {
                    id: notification_id(&self.receiver, &alerts),
                    group_id: self.group_id,
                    route: self.route.clone(),
                    labels: self.labels.clone(),
                    alerts,
                    digest: false,
                    max_listed: MAX_LISTED,
                };
                self.outbox.send(notification, &self.receiver).await
            };
            let sent = Instant::now();
            let sent_micros = now_micros();
            // Whether more joined meanwhile is decided under the lock that `submit` takes, so
            // that exactly one task times each group.
            let (more, mut partitions) = {
                let mut groups = self.groups.lock().expect("groups lock");
                let group = groups.entry(self.group_id).or_default();
                group.last_sent = Some(sent);
                if let Ok(delivery) = &result {
                    if delivery.status == DeliveryStatus::Delivered {
                        let delivery = Arc::new(delivery.clone());
                        // Not the alerts of a partition released while it went out: its
                        // entry is the new owner's to write now (which reads them again).
                        for pending in batch
                            .iter()
                            .filter(|p| group.partitions.contains(&p.partition))
                        {
                            group.notified.insert(
                                pending.alert.id,
                                Notified {
                                    at: sent,
                                    at_micros: sent_micros,
                                    partition: pending.partition,
                                    delivery: delivery.clone(),
                                },
                            );
                        }
                    }
                }
                group
                    .notified
                    .retain(|_, n| sent.duration_since(n.at) < self.policy.repeat);
                let more = !group.pending.is_empty();
                group.scheduled = more;
                let partitions: Vec<i32> = batch
                    .iter()
                    .chain(&group.pending)
                    .map(|p| p.partition)
                    .collect();
                (more, partitions)
            };
            let next = more.then(|| sent + self.policy.interval);
            partitions.sort_unstable();
            partitions.dedup();
            // Saved before the records complete: read again after a crash, they are not
            // notified again within repeat_interval.
            self.save(&partitions, next).await;
            for pending in batch {
                let _ = pending.done.send(result.clone());
            }
            match next {
                Some(next) => at = next,
                None => return,
            }
        }
    }

    /// Writes the group's entries of `partitions`, with `due` the next notification's time,
    /// and waits until they are durable. A failed write is logged: the group goes on, and
    /// only its timing after a restart is lost.
    async fn save(&self, partitions: &[i32], due: Option<Instant>) {
        let Some(state) = self.state.get() else {
            return;
        };
        let (now, wall) = (Instant::now(), now_micros());
        // Only what is needed is copied under the lock that every submission takes (the
        // notified alerts' ids, times and shared deliveries); the entries are built and
        // encoded after it is released.
        let snapshots: Vec<(i32, GroupSnapshot)> = {
            let groups = self.groups.lock().expect("groups lock");
            let Some(group) = groups.get(&self.group_id) else {
                return;
            };
            partitions
                .iter()
                // Not the entry of a partition released meanwhile: its new owner writes it.
                .filter(|p| group.partitions.contains(p) && (self.owns)(**p))
                .map(|p| (*p, group.snapshot(*p)))
                .collect()
        };
        let mut acks = Vec::with_capacity(snapshots.len());
        for (partition, snapshot) in snapshots {
            let entry = snapshot.into_saved(due, now, wall);
            acks.push(
                state
                    .save_group(partition, self.group_id, Some(&entry))
                    .await,
            );
        }
        for ack in acks {
            if let Err(error) = ack.await {
                tracing::warn!(group = %self.group_id, %error, "saving a group's state failed");
            }
        }
    }
}

/// The id and the `group_by` labels of the group of an alert of `route` to `receiver`.
fn group_of(
    policy: &GroupPolicy,
    route: &str,
    receiver: &str,
    enriched: &EnrichedMention,
) -> (Uuid, Vec<(String, String)>) {
    let labels: Vec<(String, String)> = policy
        .labels
        .iter()
        .map(|label| (label.clone(), label_value(label, enriched).to_owned()))
        .collect();
    let key = labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let group_id = Uuid::new_v5(
        &ID_NAMESPACE,
        format!("group:{route}:{receiver}:{{{key}}}").as_bytes(),
    );
    (group_id, labels)
}

/// The value of a `group_by` label.
fn label_value<'a>(label: &str, enriched: &'a EnrichedMention) -> &'a str {
    match label {
        "watchlist" => &enriched.watchlist,
        "intent" => &enriched.intent,
        "language" => enriched.language.as_deref().unwrap_or(""),
        "source" => &enriched.mention.source.kind,
        "author" => &enriched.mention.author.handle,
        _ => "",
    }
}

/// A Slack message of several alerts: a header, each listed alert as a section with its why,
/// then the others one line each.
pub fn slack(notification: &Notification) -> Value {
    let (listed, _) = notification.split();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&notification.title(), 150)},
    })];
    if !notification.labels.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape_slack(&labels_text(notification))}],
        }));
    }
    for (alert, enriched) in listed {
        let mut text = format!(
            "*{}* on {} (reach {})\n>{}",
            escape_slack(&alert.author_handle),
            escape_slack(&enriched.mention.source.kind),
            enriched.reach,
            escape_slack(&cut(&alert.mention_text, 500)).replace('\n', "\n>"),
        );
        if let Some(url) = &alert.mention_url {
            text.push_str(&format!("\n<{}|Open the post>", escape_slack(url)));
        }
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, 2_900)}}),
        );
        let mut context = why(alert);
        if alert.review_required {
            context = format!("{} · {context}", crate::channels::review_warning(alert));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape_slack(&context)}],
        }));
    }
    if let Some(more) = notification.more_text() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&escape_slack(&more), 2_900)},
        }));
    }
    json!({"text": notification.title(), "blocks": blocks})
}

/// A Microsoft Teams message of several alerts (an Adaptive Card).
pub fn teams(notification: &Notification) -> Value {
    let (listed, _) = notification.split();
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder",
        "text": notification.title(), "wrap": true,
    })];
    for (alert, enriched) in listed {
        body.push(json!({"type": "TextBlock", "text": format!("{} on {} (reach {})", alert.author_handle, enriched.mention.source.kind, enriched.reach), "isSubtle": true, "wrap": true, "separator": true}));
        body.push(
            json!({"type": "TextBlock", "text": cut(&alert.mention_text, 500), "wrap": true}),
        );
        body.push(json!({"type": "TextBlock", "text": why(alert), "isSubtle": true, "size": "Small", "wrap": true}));
    }
    if let Some(more) = notification.more_text() {
        body.push(json!({"type": "TextBlock", "text": more, "wrap": true, "separator": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// A PagerDuty `trigger` for several alerts; its `dedup_key` is the group, so that a group's
/// later notifications update one incident.
pub fn pagerduty(notification: &Notification, routing_key: &str, severity: &str) -> Value {
    let first = &notification.alerts[0].0;
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|(a, _)| {
            json!({"alert_id": a.id.to_string(), "route": a.route, "author": a.author_handle,
                   "post": cut(&a.mention_text, 300), "url": a.mention_url})
        })
        .collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notification.group_id.to_string(),
        "client": "Earshot",
        "payload": {
            "summary": cut(&format!("{}: {}", notification.title(), first.mention_text), 1_024),
            "source": format!("earshot/{}", first.watchlist),
            "severity": severity,
            "component": first.watchlist,
            "group": notification.route,
            "custom_details": {"alerts": alerts, "group": labels_text(notification)},
        },
    })
}

/// A plain-text email of several alerts.
pub fn email(
    notification: &Notification,
    delivery: Uuid,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
) -> Result<lettre::Message, lettre::error::Error> {
    let (listed, _) = notification.split();
    let mut body = String::new();
    if !notification.labels.is_empty() {
        body.push_str(&format!("{}\n\n", labels_text(notification)));
    }
    for (alert, enriched) in listed {
        if alert.review_required {
            body.push_str(&format!("{}\n", crate::channels::review_warning(alert)));
        }
        body.push_str(&format!(
            "{} on {} (reach {}):\n{}\n{}\n",
            alert.author_handle,
            enriched.mention.source.kind,
            enriched.reach,
            alert.mention_text,
            why(alert)
        ));
        if let Some(url) = &alert.mention_url {
            body.push_str(&format!("The post: {url}\n"));
        }
        body.push('\n');
    }
    if let Some(more) = notification.more_text() {
        body.push_str(&format!("{more}\n"));
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(cut(&notification.title(), 200))
        .message_id(Some(format!("<{delivery}@earshot>")))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for recipient in to {
        builder = builder.to(recipient.clone());
    }
    builder.body(body)
}

/// The generic webhook's body for several alerts: `{"delivery_id", "group", "digest",
/// "alerts", "mentions"}`, every alert in full.
pub fn webhook(notification: &Notification) -> Value {
    let labels: serde_json::Map<String, Value> = notification
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "delivery_id": notification.id.to_string(),
        "group": {"id": notification.group_id.to_string(), "route": notification.route, "labels": labels},
        "digest": notification.digest,
        "alerts": notification.alerts.iter().map(|(a, _)| a).collect::<Vec<_>>(),
        "mentions": notification.alerts.iter().map(|(_, m)| m.as_ref()).collect::<Vec<_>>(),
    })
}

/// The console receiver's lines for several alerts.
pub fn print(notification: &Notification, receiver: &str) {
    println!("{} → {receiver}", notification.title());
    for (alert, _) in &notification.alerts {
        println!("  {}", Notification::line(alert));
    }
}

fn labels_text(notification: &Notification) -> String {
    notification
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: u128) -> Delivery {
        Delivery {
            id: Uuid::from_u128(n),
            channel: "webhook".into(),
            receiver: "hook".into(),
            status: DeliveryStatus::Delivered,
            attempts: 1,
            last_error: None,
            delivered_at: Some(1_000),
        }
    }

    /// A saved entry taken up and saved again is the same entry, per partition; the times
    /// come back to the microsecond within the clocks' reading.
    #[test]
    fn a_saved_group_round_trips_per_partition() {
        let wall = 1_795_608_000_000_000;
        let now = Instant::now();
        let saved = |due: Option<i64>, notified: Vec<SavedNotification>| SavedGroup {
            due_at: due,
            last_sent_at: Some(wall - 60_000_000),
            notified,
        };
        let p0 = saved(
            Some(wall + 5_000_000),
            vec![SavedNotification {
                at: wall - 60_000_000,
                delivery: delivery(1),
                alerts: vec![Uuid::from_u128(10), Uuid::from_u128(11)],
            }],
        );
        let p1 = saved(
            None,
            vec![SavedNotification {
                at: wall - 60_000_000,
                delivery: delivery(1),
                alerts: vec![Uuid::from_u128(20)],
            }],
        );
        let mut group = GroupState::default();
        group.take_up(0, &p0, now, wall);
        group.take_up(1, &p1, now, wall);
        assert_eq!(group.notified.len(), 3);
        let due = group.restored_due.expect("a pending notification");
        assert_eq!(due.duration_since(now), Duration::from_secs(5));
        assert_eq!(
            now.duration_since(group.last_sent.unwrap()),
            Duration::from_secs(60)
        );
        let mut again = group.saved(0, Some(due), now, wall);
        again.notified[0].alerts.sort();
        assert_eq!(again, p0);
        assert_eq!(group.saved(1, None, now, wall), p1);
        assert_eq!(
            group.saved(2, None, now, wall).notified,
            vec![],
            "a partition without alerts"
        );
    }

    #[test]
    fn grouping_is_inherited_down_the_tree() {
        let yaml = r#"
- name: acme
  group_by: [watchlist, author]
  group_wait_secs: 10
  routes:
    - name: acme-angry
      group_interval_secs: 60
    - name: acme-single
      group_by: []
      repeat_interval_secs: 5
- name: globex
"#;
        let routes: Vec<RouteConfig> = serde_json::from_value(
            serde_json::to_value(
                config::Config::builder()
                    .add_source(config::File::from_str(
                        &format!("routes:\n{}", yaml.replace('\n', "\n  ")),
                        config::FileFormat::Yaml,
                    ))
                    .build()
                    .unwrap()
                    .get::<serde_json::Value>("routes")
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let found = policies(&routes);
        let secs = Duration::from_secs;
        assert_eq!(
            found.get("acme"),
            Some(&GroupPolicy {
                labels: vec!["watchlist".into(), "author".into()],
                wait: secs(10),
                interval: secs(300),
                repeat: secs(14_400),
            })
        );
        assert_eq!(
            found.get("acme-angry"),
            Some(&GroupPolicy {
                labels: vec!["watchlist".into(), "author".into()],
                wait: secs(10),
                interval: secs(60),
                repeat: secs(14_400),
            })
        );
        assert_eq!(
            found.get("acme-single"),
            Some(&GroupPolicy {
                labels: vec![],
                wait: secs(10),
                interval: secs(300),
                repeat: secs(5),
            })
        );
        assert_eq!(found.get("globex"), None, "no group_by: no grouping");
    }
}
