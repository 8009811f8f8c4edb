//! Router replicas sharing the enriched topic's partitions on real Kafka, as Kubernetes runs
//! them: a second replica joins mid-stream, one stops gracefully while it is sending an
//! escalation step, and a third joins and is dropped without a graceful stop. A local HTTP
//! server (the webhook channel, real HTTP on loopback) records every delivery with its
//! delivery id (`Idempotency-Key`), and which replica sent it (each replica's receivers
//! point at their own path).
//!
//! Every alert is delivered; an alert delivered more than once always carries the same
//! delivery id (the at-least-once redelivery of a record in flight at a rebalance, which
//! the receiver deduplicates); and each escalation step of the team alerts is sent exactly
//! once, by the replica assigned the alert's partition at the time: the replica that stops
//! while a step is in flight finishes and saves it before its partitions are handed over,
//! and the survivor reads that before it drives the escalation further.

mod common;

use common::{kafka_config, unique, Running};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as BodyBytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use earshot_core::bus::{OutRecord, Publisher};
use earshot_core::config::{
    DeliveryConfig, EscalationLevelConfig, EscalationPolicyConfig, EscalationTargetConfig,
    MemberConfig, ReceiverConfig, RouteConfig, RouterConfig, ScheduleConfig, TeamConfig,
    WebhookConfig,
};
use earshot_core::model::{alert_id, delivery_id, EnrichedMention};
use earshot_core::Services;
use serde_json::Value;

const PARTITIONS: i32 = 4;
const TEAM_ROUTE: &str = "to-support";
const HOOK_ROUTE: &str = "to-hook";
/// The delay between two escalation steps.
const STEP_SECS: u64 = 15;
/// How long the receiver holds its answer to the first level-2 step: the replica sending
/// it is stopped meanwhile.
const HELD: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_joining_stopping_and_dropped_deliver_every_alert_and_each_step_once() {
    let hook = Hook::start(HELD).await;
    let run = unique("rebalance");
    let config = |replica: &str| {
        let mut config = kafka_config(&run);
        config.kafka.topic_partitions = PARTITIONS;
        // A replica stopping waits for its step in progress (`HELD`) before it leaves the
        // group, up to half its session.
        config.kafka.session_timeout_ms = 30_000;
        config.router = router(&hook.url(replica));
        config
    };

    // One replica: four team alerts (level 1 each) and a first batch of alerts.
    let a = Running::start(config("a")).await;
    let feed = Feed::new(&a.services);
    let team: Vec<EnrichedMention> = (0..4)
        .map(|i| mention(&format!("{run}-team-{i}"), &format!("team-{i}"), "escalate"))
        .collect();
    for mention in &team {
        feed.publish(mention).await;
    }
    let batch = |from: usize, to: usize| -> Vec<EnrichedMention> {
        (from..to)
            .map(|i| mention(&format!("{run}-{i}"), &format!("w{}", i % 8), "complaint"))
            .collect()
    };
    let first = batch(0, 20);
    for mention in &first {
        feed.publish(mention).await;
    }
    hook.wait_for(
        "level 1 of the team alerts and the first batch",
        60,
        |seen| delivered(seen, &first) && steps(seen, &team, 1),
    )
    .await;

    // A second replica joins while mentions keep coming: the partitions are shared.
    let second = batch(20, 40);
    let feeding = feed.slowly(second.clone());
    let b = Running::start(config("b")).await;
    feeding.await.unwrap();
    wait_until("both replicas assigned partitions", || {
        (0..PARTITIONS).any(|p| a.owns(p)) && (0..PARTITIONS).any(|p| b.owns(p))
    })
    .await;
    hook.wait_for("the second batch", 60, |seen| delivered(seen, &second))
        .await;

    // Level 2 falls due; the replica sending the first one is stopped gracefully while the
    // receiver holds its answer: it finishes the step and saves it before it lets go of the
    // partition, and the survivor, reading that, does not send it again.
    let held = hook.wait_held(Duration::from_secs(STEP_SECS + 30)).await;
    let (stopping, survivor) = if held.replica == "a" { (a, b) } else { (b, a) };
    let stopped_replica = held.replica.clone();
    stopping.stop().await;
    wait_until("the survivor assigned every partition", || {
        (0..PARTITIONS).all(|p| survivor.owns(p))
    })
    .await;
    hook.wait_for("level 2 of every team alert", 30, |seen| {
        steps(seen, &team, 2)
    })
    .await;
    hook.wait_for(
        "level 1 of the second pass, from the survivor",
        30,
        |seen| steps(seen, &team, 3),
    )
    .await;

    // A third replica joins, and is dropped without a graceful stop while mentions come.
    let c = Running::start(config("c")).await;
    wait_until("the third replica assigned partitions", || {
        (0..PARTITIONS).any(|p| c.owns(p))
    })
    .await;
    let third = batch(40, 70);
    let feeding = feed.slowly(third.clone());
    wait_until("the third replica reading", || c.received() > 0).await;
    c.abort().await;
    feeding.await.unwrap();
    wait_until("the survivor assigned every partition again", || {
        (0..PARTITIONS).all(|p| survivor.owns(p))
    })
    .await;
    hook.wait_for("the third batch and the last step", 60, |seen| {
        delivered(seen, &third) && steps(seen, &team, 4)
    })
    .await;
    // Time for a step or a redelivery sent twice to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    survivor.stop().await;

    let seen = hook.seen();
    // Every request carries its delivery id three times, the same each time.
    for request in &seen {
        assert_eq!(request.idempotency_key, request.delivery, "{request:#?}");
        assert_eq!(request.body_delivery, request.delivery, "{request:#?}");
    }
    // Every alert delivered; a redelivered one only under its one delivery id.
    let mut redelivered = 0;
    for mention in first.iter().chain(&second).chain(&third) {
        let id = alert_id(mention.mention.id, HOOK_ROUTE);
        let deliveries: Vec<&Seen> = seen.iter().filter(|r| r.alert == id).collect();
        assert!(!deliveries.is_empty(), "alert {id} was not delivered");
        let expected = delivery_id(id, "hook");
        assert!(
            deliveries.iter().all(|r| r.delivery == expected),
            "alert {id} delivered under another id: {deliveries:#?}"
        );
        redelivered += deliveries.len() - 1;
    }
    eprintln!("alerts redelivered with the same delivery id: {redelivered}");
    // Each step of each team alert once: level 1 to ana, level 2 to ben, twice over.
    for mention in &team {
        let id = alert_id(mention.mention.id, TEAM_ROUTE);
        let sent: Vec<(String, String)> = seen
            .iter()
            .filter(|r| r.alert == id)
            .map(|r| (r.delivery.to_string(), r.replica.clone()))
            .collect();
        let expected: Vec<String> = [(1, 0, "ana"), (2, 0, "ben"), (1, 1, "ana"), (2, 1, "ben")]
            .iter()
            .map(|(level, pass, person)| {
                delivery_id(id, &format!("support-hook/level{level}.{pass}/{person}")).to_string()
            })
            .collect();
        assert_eq!(
            sent.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            expected,
            "alert {id}: each step once, in order: {sent:#?}"
        );
        // The second pass fell due after the stop: the stopped replica sent none of it.
        assert!(
            sent[2..]
                .iter()
                .all(|(_, replica)| *replica != stopped_replica),
            "alert {id}: {sent:#?}"
        );
    }
    let held_steps: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.delivery == held.delivery)
        .collect();
    assert_eq!(
        held_steps.len(),
        1,
        "the step held at the stop: {held_steps:#?}"
    );
}

/// Routes mentions with the intent `escalate` to the team `support` (ana on call, then
/// ben, each `STEP_SECS` apart, twice over), and every other mention to the receiver `hook`.
/// Both receivers post to `base`.
fn router(base: &str) -> RouterConfig {
    let webhook = |name: &str, path: &str| ReceiverConfig {
        name: name.into(),
        webhook: Some(WebhookConfig {
            url: Some(format!("{base}/{path}")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    let member = |name: &str| MemberConfig {
        name: name.into(),
        email: Some(format!("{name}@example.com")),
        slack_user: None,
        pagerduty_user: None,
    };
    let level = |target: EscalationTargetConfig| EscalationLevelConfig {
        targets: vec![target],
        delay_secs: STEP_SECS,
    };
    RouterConfig {
        routes: vec![
            RouteConfig {
                name: TEAM_ROUTE.into(),
                matchers: vec!["intent = escalate".into()],
                team: Some("support".into()),
                ..RouteConfig::default()
            },
            RouteConfig {
                name: HOOK_ROUTE.into(),
                receiver: Some("hook".into()),
                ..RouteConfig::default()
            },
        ],
        receivers: vec![webhook("hook", "hook"), webhook("support-hook", "team")],
        teams: vec![TeamConfig {
            name: "support".into(),
            channels: vec!["support-hook".into()],
            members: vec![member("ana"), member("ben")],
            // ana alone in the rotation: on call whatever the day.
            schedule: Some(ScheduleConfig {
                time_zone: "UTC".into(),
                handoff: "09:00".into(),
                rotation_days: 7,
                start: "2020-01-06".into(),
                order: vec!["ana".into()],
                overrides: vec![],
            }),
            escalation_policy: Some("support-policy".into()),
        }],
        escalation_policies: vec![EscalationPolicyConfig {
            name: "support-policy".into(),
            repeat: 1,
            levels: vec![
                level(EscalationTargetConfig {
                    on_call: Some("support".into()),
                    ..EscalationTargetConfig::default()
                }),
                level(EscalationTargetConfig {
                    user: Some("ben".into()),
                    ..EscalationTargetConfig::default()
                }),
            ],
        }],
        delivery: DeliveryConfig {
            max_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            // Longer than the held answer.
            request_timeout_ms: 20_000,
            concurrency: 8,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    }
}

/// An enriched mention keyed by `watchlist` (the input partition follows it), with `intent`.
fn mention(native_id: &str, watchlist: &str, intent: &str) -> EnrichedMention {
    let (_, mut enriched) = common::acme_alert(native_id, "Acme ate my order", HOOK_ROUTE);
    enriched.watchlist = watchlist.into();
    enriched.intent = intent.into();
    enriched
}

/// Whether every one of `mentions` was delivered to `hook` at least once.
fn delivered(seen: &[Seen], mentions: &[EnrichedMention]) -> bool {
    mentions.iter().all(|m| {
        let id = alert_id(m.mention.id, HOOK_ROUTE);
        seen.iter().any(|r| r.alert == id)
    })
}

/// Whether each team alert had at least `count` steps delivered.
fn steps(seen: &[Seen], team: &[EnrichedMention], count: usize) -> bool {
    team.iter().all(|m| {
        let id = alert_id(m.mention.id, TEAM_ROUTE);
        seen.iter().filter(|r| r.alert == id).count() >= count
    })
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes enriched mentions on Kafka, keyed by watchlist, as the enricher does.
#[derive(Clone)]
struct Feed {
    services: Services,
    publisher: Arc<dyn Publisher>,
}

impl Feed {
    fn new(services: &Services) -> Feed {
        Feed {
            services: services.clone(),
            publisher: services.publisher("router-test").unwrap(),
        }
    }

    async fn publish(&self, enriched: &EnrichedMention) {
        let payload = self.services.codecs.enriched.encode(enriched).unwrap();
        self.publisher
            .publish(OutRecord {
                topic: Arc::from(self.services.config.topics.enriched.as_str()),
                key: Some(Bytes::from(enriched.watchlist.clone())),
                payload: Bytes::from(payload),
                headers: vec![],
            })
            .await
            .await
            .unwrap();
    }

    /// Publishes `mentions` one every 100 ms, on a task of its own.
    fn slowly(&self, mentions: Vec<EnrichedMention>) -> tokio::task::JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            for mention in &mentions {
                feed.publish(mention).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    /// Whose receivers posted it (`a`, `b`, `c`).
    replica: String,
    alert: uuid::Uuid,
    delivery: uuid::Uuid,
    idempotency_key: uuid::Uuid,
    body_delivery: uuid::Uuid,
    level: Option<u64>,
}

struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// The first level-2 step, held: set once it arrived.
    held: Mutex<Option<Seen>>,
    hold: Duration,
}

/// A webhook receiver on loopback: answers 200 to every delivery (the first level-2 step
/// after `hold`), recording each.
struct Hook {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Hook {
    async fn start(hold: Duration) -> Hook {
        let shared = Arc::new(Shared {
            seen: Mutex::default(),
            held: Mutex::default(),
            hold,
        });
        let app = Router::new()
            .route("/{replica}/{receiver}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { addr, shared }
    }

    /// The base URL of `replica`'s receivers.
    fn url(&self, replica: &str) -> String {
        format!("http://{}/{replica}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, secs: u64, done: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(&self.seen()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; seen: {:#?}",
                summary(&self.seen())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The step being held, once it arrived.
    async fn wait_held(&self, within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            if let Some(held) = self.shared.held.lock().unwrap().clone() {
                return held;
            }
            assert!(Instant::now() < deadline, "no level-2 step came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Deliveries per replica and alert, for failure messages.
fn summary(seen: &[Seen]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in seen {
        let kind = match request.level {
            Some(level) => format!("level {level}"),
            None => "alert".into(),
        };
        *counts
            .entry(format!("{} {kind}", request.replica))
            .or_default() += 1;
    }
    counts
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path((replica, _receiver)): Path<(String, String)>,
    headers: HeaderMap,
    body: BodyBytes,
) -> &'static str {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| -> uuid::Uuid {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    let seen = Seen {
        replica,
        alert: header("X-Earshot-Alert"),
        delivery: header("X-Earshot-Delivery"),
        idempotency_key: header("Idempotency-Key"),
        body_delivery: body["delivery_id"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
        level: body["notice"]["level"].as_u64(),
    };
    shared.seen.lock().unwrap().push(seen.clone());
    let hold = {
        let mut held = shared.held.lock().unwrap();
        let first = seen.level == Some(2) && held.is_none();
        if first {
            *held = Some(seen);
        }
        first
    };
    if hold {
        tokio::time::sleep(shared.hold).await;
    }
    "ok"
}
