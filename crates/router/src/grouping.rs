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
//! for their group count in `kafka.max_in_flight`. At shutdown, pending groups are sent at
//! once rather than waiting out their timers.
//!
//! The notification bodies of several alerts (a group, or a digest of the receiver's rate
//! limit, see `digest`) are here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::RouteConfig;
use earshot_core::model::{delivery_id, Alert, Delivery, EnrichedMention, ID_NAMESPACE};
use earshot_core::StageError;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::channels::{cut, escape_slack, title, why};
use crate::digest::Outbox;

const DEFAULT_GROUP_WAIT_SECS: u64 = 30;
const DEFAULT_GROUP_INTERVAL_SECS: u64 = 300;
const DEFAULT_REPEAT_INTERVAL_SECS: u64 = 14_400;
/// Groups are pruned (idle, nothing pending) every this many submissions.
const PRUNE_EVERY: u64 = 1_024;

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

/// The groups of every grouping route, each with its timer task while it has alerts pending.
pub struct Grouper {
    policies: HashMap<String, GroupPolicy>,
    groups: Arc<Mutex<HashMap<Uuid, GroupState>>>,
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
    /// Alerts notified, with when and the delivery, for `repeat_interval`.
    notified: HashMap<Uuid, (Instant, Delivery)>,
}

struct Pending {
    alert: Alert,
    enriched: Arc<EnrichedMention>,
    done: oneshot::Sender<GroupResult>,
}

impl Grouper {
    pub fn new(routes: &[RouteConfig], outbox: Arc<Outbox>, shutdown: CancellationToken) -> Self {
        Grouper {
            policies: policies(routes),
            groups: Arc::default(),
            outbox,
            shutdown,
            submitted: Default::default(),
        }
    }

    /// Puts the alert in its group; `None` when its route does not group (send it alone).
    /// The receiver resolves once the notification carrying it is delivered or failed.
    pub fn submit(
        &self,
        alert: Alert,
        receiver: &str,
        enriched: Arc<EnrichedMention>,
    ) -> Option<oneshot::Receiver<GroupResult>> {
        let policy = self.policies.get(&alert.route)?.clone();
        let labels: Vec<(String, String)> = policy
            .labels
            .iter()
            .map(|label| (label.clone(), label_value(label, &enriched).to_owned()))
            .collect();
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        let group_id = Uuid::new_v5(
            &ID_NAMESPACE,
            format!("group:{}:{receiver}:{{{key}}}", alert.route).as_bytes(),
        );
        let (done, receiver_of_result) = oneshot::channel();
        let now = Instant::now();
        let mut groups = self.groups.lock().expect("groups lock");
        if self
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            prune(&mut groups, &self.policies, now);
        }
        let group = groups.entry(group_id).or_default();
        if let Some((at, delivery)) = group.notified.get(&alert.id) {
            if now.duration_since(*at) < policy.repeat {
                let _ = done.send(Ok(delivery.clone()));
                return Some(receiver_of_result);
            }
        }
        group.pending.push(Pending {
            alert: alert.clone(),
            enriched,
            done,
        });
        if !group.scheduled {
            group.scheduled = true;
            let first = match group.last_sent {
                Some(last) if now < last + policy.interval => last + policy.interval,
                // New, or idle for longer than the interval: wait for more.
                _ => now + policy.wait,
            };
            let task = GroupTask {
                groups: self.groups.clone(),
                group_id,
                route: alert.route.clone(),
                labels,
                receiver: receiver.to_owned(),
                policy,
                outbox: self.outbox.clone(),
                shutdown: self.shutdown.clone(),
            };
            // One timer task per group with alerts pending ("router-group").
            tokio::spawn(task.run(first));
        }
        Some(receiver_of_result)
    }
}

/// Drops idle groups whose repeat window is over.
fn prune(
    groups: &mut HashMap<Uuid, GroupState>,
    policies: &HashMap<String, GroupPolicy>,
    now: Instant,
) {
    let longest = policies
        .values()
        .map(|p| p.repeat.max(p.interval))
        .max()
        .unwrap_or_default();
    groups.retain(|_, group| {
        group.scheduled
            || !group.pending.is_empty()
            || group
                .last_sent
                .is_some_and(|last| now.duration_since(last) < longest)
    });
}

struct GroupTask {
    groups: Arc<Mutex<HashMap<Uuid, GroupState>>>,
    group_id: Uuid,
    route: String,
    labels: Vec<(String, String)>,
    receiver: String,
    policy: GroupPolicy,
    outbox: Arc<Outbox>,
    shutdown: CancellationToken,
}

impl GroupTask {
    /// Sends the group's pending alerts at `at`, then every `interval` while more join.
    async fn run(self, mut at: Instant) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                // Send what is pending now rather than leave it to be read again.
                _ = self.shutdown.cancelled() => {}
            }
            let batch = {
                let mut groups = self.groups.lock().expect("groups lock");
                let group = groups.entry(self.group_id).or_default();
                std::mem::take(&mut group.pending)
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
            // Whether more joined meanwhile is decided under the lock that `submit` takes, so
            // that exactly one task times each group.
            let more = {
                let mut groups = self.groups.lock().expect("groups lock");
                let group = groups.entry(self.group_id).or_default();
                group.last_sent = Some(sent);
                if let Ok(delivery) = &result {
                    if delivery.status == earshot_core::model::DeliveryStatus::Delivered {
                        for pending in &batch {
                            group.notified.insert(
                                pending.alert.id,
                                (sent, delivery_of(&pending.alert, &self.receiver, delivery)),
                            );
                        }
                    }
                }
                group
                    .notified
                    .retain(|_, (at, _)| sent.duration_since(*at) < self.policy.repeat);
                let more = !group.pending.is_empty();
                group.scheduled = more;
                more
            };
            for pending in batch {
                let _ = pending.done.send(result.clone());
            }
            if !more {
                return;
            }
            at = sent + self.policy.interval;
        }
    }
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
