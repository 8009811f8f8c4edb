//! Alerts to teams: the first notification (the team's channels, addressed to whoever is on
//! call), escalation while nobody acknowledges (the policy's levels, one after another, each
//! after the previous level's delay, repeated `repeat` times), and acknowledgement and
//! resolution, which stop it.
//!
//! Each alert to a team is a [`Tracked`] entry, kept until it is resolved. The router's
//! stage notifies the first level as part of handling the mention ([`Escalations::notify_team`]);
//! [`run`] is the task that notifies the later levels when they fall due and publishes the
//! updated alert each time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use earshot_core::config::{EscalationPolicyConfig, RouterConfig};
use earshot_core::model::{now_micros, Alert, Delivery, EnrichedMention};
use earshot_core::StageError;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::notice::Notice;
use crate::oncall::{Directory, Person};
use crate::{Deliverer, RoutesError};

/// An alert to a team, and where its escalation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    /// The alert, with every delivery made so far.
    pub alert: Alert,
    /// The mention, for the bodies of later levels.
    pub enriched: EnrichedMention,
    pub team: String,
    /// The input topic and partition the alert came from: the replica assigned that
    /// partition drives the escalation.
    #[serde(default)]
    pub topic: String,
    pub partition: i32,
    /// Escalation steps notified so far (levels, counting repeats); 0 without a policy.
    pub steps_notified: u32,
    /// When the next step is due (microseconds since the epoch); none when nothing more is
    /// to be sent (no policy, last step sent, acknowledged or resolved). Acknowledgement and
    /// resolution are the alert's own `acknowledged_at` and `resolved_at`.
    pub next_step_at: Option<i64>,
    /// When this entry last changed (microseconds): of two copies of one entry (the state
    /// topic replays older ones), the later wins.
    pub updated_at: i64,
}

/// Why an acknowledgement or resolution was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no open alert to a team with id {0} here")]
    Unknown(Uuid),
    #[error("alert {0} is already resolved")]
    Resolved(Uuid),
}

/// The teams' alerts of this router.
pub struct Escalations {
    directory: Directory,
    policies: HashMap<String, EscalationPolicyConfig>,
    deliverer: Arc<Deliverer>,
    /// `<base>/v1/alerts/{id}/ack` links in messages, when the router has a public base URL.
    ack_links: Option<crate::api::AckLinks>,
    tracked: Mutex<HashMap<Uuid, Tracked>>,
    /// Alerts resolved lately, so that a copy written before the resolution and read after
    /// it does not bring the alert back, and acting on one says it is resolved.
    resolved: Mutex<Resolved>,
    /// Entries merged from two copies (an acknowledgement or resolution made on one replica
    /// while another wrote a step), for the escalation task to save again.
    resave: Mutex<Vec<Tracked>>,
    /// Woken when an entry is added, so that the escalation task sees a sooner deadline.
    changed: tokio::sync::Notify,
    /// Steps (and merged entries) being sent and saved, per input topic and partition: a
    /// revocation waits for them ([`Escalations::wait_for_steps`]).
    stepping: Mutex<HashMap<(String, i32), usize>>,
    /// Signalled when a step of `stepping` is done.
    stepped: std::sync::Condvar,
}

/// A step being sent for an alert of one input partition ([`Escalations::begin_step`]).
pub struct Step<'a> {
    escalations: &'a Escalations,
    key: (String, i32),
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        let mut stepping = self.escalations.stepping.lock().expect("stepping lock");
        if let Some(count) = stepping.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                stepping.remove(&self.key);
            }
        }
        drop(stepping);
        self.escalations.stepped.notify_all();
    }
}

/// Resolved alert ids and when, the latest [`RESOLVED_KEPT`].
#[derive(Default)]
struct Resolved {
    at: HashMap<Uuid, i64>,
    order: VecDeque<Uuid>,
}

/// How many resolved alert ids are remembered.
const RESOLVED_KEPT: usize = 100_000;

impl Resolved {
    fn remember(&mut self, id: Uuid, at: i64) {
        if self.at.insert(id, at).is_none() {
            self.order.push_back(id);
            if self.order.len() > RESOLVED_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.at.remove(&old);
                }
            }
        }
    }
}

impl Escalations {
    pub fn new(
        config: &RouterConfig,
        deliverer: Arc<Deliverer>,
        ack_links: Option<crate::api::AckLinks>,
    ) -> Result<Self, RoutesError> {
        Ok(Escalations {
            directory: Directory::new(config)?,
            policies: config
                .escalation_policies
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            deliverer,
            ack_links,
            tracked: Mutex::new(HashMap::new()),
            resolved: Mutex::default(),
            resave: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            stepping: Mutex::default(),
            stepped: std::sync::Condvar::new(),
        })
    }

    /// Starts a step for an alert of `topic`'s `partition` when this replica `owns` it;
    /// the step counts as in progress until the returned guard is dropped. Ownership is
    /// asked under the lock that [`Escalations::wait_for_steps`] takes, so a revocation
    /// (which takes ownership away before it waits) either sees the step or prevents it.
    pub fn begin_step(
        &self,
        topic: &str,
        partition: i32,
        owns: &dyn Fn(&str, i32) -> bool,
    ) -> Option<Step<'_>> {
        let mut stepping = self.stepping.lock().expect("stepping lock");
        if !owns(topic, partition) {
            return None;
        }
        let key = (topic.to_owned(), partition);
        *stepping.entry(key.clone()).or_default() += 1;
        Some(Step {
            escalations: self,
            key,
        })
    }

    /// Waits, up to `timeout`, until no step of `topic`'s `partitions` is in progress (each
    /// sent and saved, or failed): once a partition is revoked, the replica it goes to reads
    /// the state topic up to its end and finds the step there, rather than sending it again.
    /// Returns whether they all finished in time. Blocking: for the rebalance callback.
    pub fn wait_for_steps(&self, topic: &str, partitions: &[i32], timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut stepping = self.stepping.lock().expect("stepping lock");
        loop {
            let busy = partitions
                .iter()
                .any(|p| stepping.contains_key(&(topic.to_owned(), *p)));
            if !busy {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            stepping = self
                .stepped
                .wait_timeout(stepping, left)
                .expect("stepping lock")
                .0;
        }
    }

    /// Notifies `team` of a new alert: the first level of its escalation policy, or its
    /// channels addressed to whoever is on call when it has none. Returns the deliveries
    /// made and the tracked entry (already held here); an alert already tracked (a replayed
    /// mention) is not notified again.
    ///
    /// `None`: the alert was resolved already (its mention redelivered after a crash
    /// before its offset was committed, or read again by the replica newly assigned its
    /// partition): nothing is sent, and there is nothing new to publish. Resolved alerts
    /// are known by their id from the state topic, whose tombstone says so until it is
    /// compacted away (`delete.retention.ms`), and from this process's own resolutions.
    pub async fn notify_team(
        &self,
        alert: &Alert,
        enriched: &EnrichedMention,
        team: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Tracked>, StageError> {
        if let Some(known) = self.get(alert.id) {
            return Ok(Some(known));
        }
        if self.is_resolved(alert.id) {
            return Ok(None);
        }
        let now = Utc::now();
        let mut tracked = Tracked {
            alert: alert.clone(),
            enriched: enriched.clone(),
            team: team.to_owned(),
            topic: topic.to_owned(),
            partition,
            steps_notified: 0,
            next_step_at: None,
            updated_at: now.timestamp_micros(),
        };
        let deliveries = match self.policy_of(team) {
            Some(_) => {
                let (deliveries, next) = self.notify_step(&tracked, 0, now).await?;
                tracked.steps_notified = 1;
                tracked.next_step_at = next;
                deliveries
            }
            None => {
                let person = self.directory.on_call(team, now).cloned();
                let channels = self.channels(team);
                self.send(&tracked, &channels, person, None, 0).await?
            }
        };
        tracked.alert.deliveries.extend(deliveries);
        self.insert(tracked.clone());
        Ok(Some(tracked))
    }

    /// Whether alert `id` was resolved (lately: the latest [`RESOLVED_KEPT`] are known).
    pub fn is_resolved(&self, id: Uuid) -> bool {
        self.resolved
            .lock()
            .expect("resolved lock")
            .at
            .contains_key(&id)
    }

    /// The alerts whose next step is due at `now`, soonest first.
    pub fn due(&self, now: DateTime<Utc>, owns: &dyn Fn(&str, i32) -> bool) -> Vec<Uuid> {
        let micros = now.timestamp_micros();
        let tracked = self.tracked.lock().expect("escalations lock");
        let mut due: Vec<(i64, Uuid)> = tracked
            .values()
            .filter(|t| owns(&t.topic, t.partition))
            .filter_map(|t| {
                t.next_step_at
                    .filter(|at| *at <= micros)
                    .map(|at| (at, t.alert.id))
            })
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Notifies the next step of `id` when it is still due at `now`; returns the updated
    /// entry (to publish and save) and the step's deliveries, or `None` when nothing was due
    /// (acknowledged meanwhile).
    pub async fn escalate(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<(Tracked, Vec<Delivery>)>, StageError> {
        let Some(current) = self.get(id) else {
            return Ok(None);
        };
        if current
            .next_step_at
            .is_none_or(|at| at > now.timestamp_micros())
        {
            return Ok(None);
        }
        let (deliveries, next) = self
            .notify_step(&current, current.steps_notified, now)
            .await?;
        let mut tracked = self.tracked.lock().expect("escalations lock");
        let Some(entry) = tracked.get_mut(&id) else {
            return Ok(None);
        };
        entry.alert.deliveries.extend(deliveries.iter().cloned());
        entry.steps_notified = current.steps_notified + 1;
        entry.updated_at = now_micros().max(entry.updated_at + 1);
        // Acknowledged while this step was being sent: it stays the last one.
        entry.next_step_at = if entry.alert.acknowledged_at.is_some() {
            None
        } else {
            next
        };
        Ok(Some((entry.clone(), deliveries)))
    }

    /// Stops the escalation of `id`. Acknowledging twice keeps the first time and person.
    pub fn acknowledge(
        &self,
        id: Uuid,
        by: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Tracked, AckError> {
        let mut tracked = self.tracked.lock().expect("escalations lock");
        let entry = tracked.get_mut(&id).ok_or_else(|| self.unknown(id))?;
        if entry.alert.resolved_at.is_some() {
            return Err(AckError::Resolved(id));
        }
        if entry.alert.acknowledged_at.is_none() {
            entry.alert.acknowledged_at = Some(at.timestamp_micros());
            entry.alert.acknowledged_by = by;
        }
        entry.next_step_at = None;
        entry.updated_at = now_micros().max(entry.updated_at + 1);
        Ok(entry.clone())
    }

    /// Resolves `id` (acknowledging it too when it was not) and forgets it: the returned
    /// entry is the last word on it.
    pub fn resolve(
        &self,
        id: Uuid,
        by: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Tracked, AckError> {
        let mut tracked = self.tracked.lock().expect("escalations lock");
        let mut entry = tracked.remove(&id).ok_or_else(|| self.unknown(id))?;
        let micros = at.timestamp_micros();
        self.resolved
            .lock()
            .expect("resolved lock")
            .remember(id, micros);
        if entry.alert.acknowledged_at.is_none() {
            entry.alert.acknowledged_at = Some(micros);
            entry.alert.acknowledged_by = by;
        }
        entry.alert.resolved_at = Some(micros);
        entry.next_step_at = None;
        entry.updated_at = now_micros().max(entry.updated_at + 1);
        Ok(entry)
    }

    pub fn get(&self, id: Uuid) -> Option<Tracked> {
        self.tracked
            .lock()
            .expect("escalations lock")
            .get(&id)
            .cloned()
    }

    /// Why `id` is not held: resolved lately, or unknown here.
    fn unknown(&self, id: Uuid) -> AckError {
        match self
            .resolved
            .lock()
            .expect("resolved lock")
            .at
            .contains_key(&id)
        {
            true => AckError::Resolved(id),
            false => AckError::Unknown(id),
        }
    }

    /// Holds `entry` (new, or read from the state topic) unless a later copy is held; a
    /// resolved one is dropped.
    ///
    /// Any replica acknowledges or resolves, while the one assigned the alert's partition
    /// writes its steps: of two copies, the later one wins, but an acknowledgement or a
    /// resolution that only the other carries is kept, and the merged entry is saved again
    /// (by the escalation task, on the replica assigned the partition).
    pub fn insert(&self, mut entry: Tracked) {
        let id = entry.alert.id;
        let resolved_at = match entry.alert.resolved_at {
            Some(at) => {
                self.resolved
                    .lock()
                    .expect("resolved lock")
                    .remember(id, at);
                Some(at)
            }
            None => self
                .resolved
                .lock()
                .expect("resolved lock")
                .at
                .get(&id)
                .copied(),
        };
        let mut tracked = self.tracked.lock().expect("escalations lock");
        if let Some(at) = resolved_at {
            tracked.remove(&id);
            if entry.alert.resolved_at.is_none() {
                // Written before the resolution was read there: resolved again.
                if entry.alert.acknowledged_at.is_none() {
                    entry.alert.acknowledged_at = Some(at);
                }
                entry.alert.resolved_at = Some(at);
                entry.next_step_at = None;
                entry.updated_at = now_micros().max(entry.updated_at + 1);
                self.resave.lock().expect("resave lock").push(entry);
                drop(tracked);
                self.changed.notify_one();
            }
            return;
        }
        let merged = match tracked.get_mut(&id) {
            Some(held) if held.updated_at > entry.updated_at => {
                if held.alert.acknowledged_at.is_some() || entry.alert.acknowledged_at.is_none() {
                    return;
                }
                // An older copy carrying an acknowledgement made meanwhile elsewhere.
                held.alert.acknowledged_at = entry.alert.acknowledged_at;
                held.alert.acknowledged_by = entry.alert.acknowledged_by;
                held.next_step_at = None;
                held.updated_at = now_micros().max(held.updated_at + 1);
                Some(held.clone())
            }
            Some(held)
                if held.alert.acknowledged_at.is_some()
                    && entry.alert.acknowledged_at.is_none() =>
            {
                // A later copy (a step sent meanwhile) without the acknowledgement held here.
                entry.alert.acknowledged_at = held.alert.acknowledged_at;
                entry.alert.acknowledged_by = held.alert.acknowledged_by.clone();
                entry.next_step_at = None;
                entry.updated_at = now_micros().max(entry.updated_at + 1);
                *held = entry.clone();
                Some(entry)
            }
            _ => {
                tracked.insert(id, entry);
                None
            }
        };
        drop(tracked);
        if let Some(merged) = merged {
            self.resave.lock().expect("resave lock").push(merged);
        }
        self.changed.notify_one();
    }

    /// Forgets `id` (resolved: its state was deleted).
    pub fn remove(&self, id: Uuid) {
        self.tracked.lock().expect("escalations lock").remove(&id);
        let mut resolved = self.resolved.lock().expect("resolved lock");
        if !resolved.at.contains_key(&id) {
            resolved.remember(id, now_micros());
        }
    }

    /// The merged entries to save again.
    fn take_resave(&self) -> Vec<Tracked> {
        std::mem::take(&mut *self.resave.lock().expect("resave lock"))
    }

    /// The PagerDuty receivers the alert was delivered to, for acknowledge and resolve
    /// events.
    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    fn next_deadline(&self) -> Option<i64> {
        self.tracked
            .lock()
            .expect("escalations lock")
            .values()
            .filter_map(|t| t.next_step_at)
            .min()
    }

    fn policy_of(&self, team: &str) -> Option<&EscalationPolicyConfig> {
        let name = self.directory.team(team)?.escalation_policy.as_ref()?;
        self.policies.get(name)
    }

    fn channels(&self, team: &str) -> Vec<String> {
        self.directory
            .team(team)
            .map(|t| t.channels.clone())
            .unwrap_or_default()
    }

    /// Notifies step `step` (0-based, counting repeats) of the team's policy; returns the
    /// deliveries and when the next step is due (none after the last).
    async fn notify_step(
        &self,
        tracked: &Tracked,
        step: u32,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Delivery>, Option<i64>), StageError> {
        let Some(policy) = self.policy_of(&tracked.team) else {
            return Ok((Vec::new(), None));
        };
        let levels = policy.levels.len() as u32;
        let total = levels * (policy.repeat + 1);
        if levels == 0 || step >= total {
            return Ok((Vec::new(), None));
        }
        let level = &policy.levels[(step % levels) as usize];
        let mut deliveries = Vec::new();
        for target in &level.targets {
            let (channels, person) = if let Some(team) = &target.on_call {
                (
                    self.channels(team),
                    self.directory.on_call(team, now).cloned(),
                )
            } else if let Some(receiver) = &target.receiver {
                (vec![receiver.clone()], None)
            } else if let Some(user) = &target.user {
                let person = self.directory.person(user).cloned();
                let channels = person
                    .as_ref()
                    .map(|p| self.channels(&p.team))
                    .unwrap_or_default();
                (channels, person)
            } else {
                continue;
            };
            deliveries.extend(
                self.send(
                    tracked,
                    &channels,
                    person,
                    Some(step % levels + 1),
                    step / levels,
                )
                .await?,
            );
        }
        let next = (step + 1 < total).then(|| {
            now.timestamp_micros()
                + i64::try_from(level.delay_secs)
                    .unwrap_or(i64::MAX / 2_000_000)
                    .saturating_mul(1_000_000)
        });
        Ok((deliveries, next))
    }

    /// One notification to each of `channels`, concurrently.
    async fn send(
        &self,
        tracked: &Tracked,
        channels: &[String],
        person: Option<Person>,
        level: Option<u32>,
        pass: u32,
    ) -> Result<Vec<Delivery>, StageError> {
        let notice = Notice {
            person,
            level,
            pass,
            ack_url: self.ack_links.as_ref().map(|l| l.url(tracked.alert.id)),
        };
        let sends = channels.iter().map(|channel| {
            self.deliverer
                .deliver_notice(&tracked.alert, &tracked.enriched, channel, &notice)
        });
        futures::future::join_all(sends).await.into_iter().collect()
    }
}

/// Publishes an updated entry (its alert on the alerts topic, its state; the alert on the
/// dead-letter topic too when one of `failed` is set) and resolves once it is acknowledged.
pub type Publish =
    Arc<dyn Fn(Tracked, Vec<Delivery>) -> BoxFuture<'static, Result<(), StageError>> + Send + Sync>;

/// Whether this replica is assigned an input topic's partition.
pub type Owns = Box<dyn Fn(&str, i32) -> bool + Send + Sync>;

/// Notifies each due step of the alerts of the partitions this replica `owns` until
/// `shutdown`, publishing each updated entry. A step is saved only after it was sent: a
/// router stopped in between sends that step again after restart (same delivery ids),
/// never skips it.
pub async fn run(
    escalations: Arc<Escalations>,
    publish: Publish,
    owns: Owns,
    shutdown: CancellationToken,
) {
    loop {
        for entry in escalations.take_resave() {
            let Some(_step) = escalations.begin_step(&entry.topic, entry.partition, &*owns) else {
                continue;
            };
            let id = entry.alert.id;
            tracing::info!(alert = %id, "saving an alert merged from two replicas' copies");
            if let Err(error) = publish(entry, Vec::new()).await {
                tracing::error!(alert = %id, %error, "publishing a merged alert failed");
            }
        }
        let now = Utc::now();
        for id in escalations.due(now, &*owns) {
            let Some((topic, partition)) = escalations.get(id).map(|t| (t.topic, t.partition))
            else {
                continue;
            };
            // Held until the step is saved: a revocation waits for it.
            let Some(_step) = escalations.begin_step(&topic, partition, &*owns) else {
                continue;
            };
            match escalations.escalate(id, now).await {
                Ok(Some((entry, deliveries))) => {
                    tracing::info!(alert = %id, team = %entry.team, step = entry.steps_notified, "escalated: nobody acknowledged in time");
                    if let Err(error) = publish(entry, deliveries).await {
                        tracing::error!(alert = %id, %error, "publishing an escalated alert failed");
                    }
                }
                Ok(None) => {}
                Err(StageError::Interrupted) => return,
                Err(error) => tracing::error!(alert = %id, %error, "escalation step failed"),
            }
        }
        let wait = escalations
            .next_deadline()
            .map(|at| Duration::from_micros((at - now_micros()).clamp(0, 1_000_000) as u64))
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = escalations.changed.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
