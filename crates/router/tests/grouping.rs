//! Grouping and rate limits through the whole router stage on the in-memory bus, against
//! local servers speaking real HTTP: a webhook receiver (one notification per group, offsets
//! held until it is delivered, a replayed mention not notified twice) and a fake Slack
//! incoming webhook (what comes too soon for the rate limit is one digest message).

mod common;

use common::publish_memory as publish;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use earshot_core::config::{
    DeliveryConfig, RateLimitConfig, ReceiverConfig, RouteConfig, RouterConfig, SlackConfig,
    WebhookConfig,
};
use earshot_core::memory::MemoryBus;
use earshot_core::model::{delivery_id, Alert, DeliveryStatus, EnrichedMention};
use earshot_core::{Config, Services};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_one_notification_and_its_records_complete_when_it_is_delivered() {
    // The first notification is answered only after 1.5 s: meanwhile nothing is committed.
    let hook = Fake::start(|n| if n == 0 { 1_500 } else { 0 }).await;
    let route = RouteConfig {
        name: "acme-all".into(),
        watchlist: Some("acme".into()),
        receiver: Some("hook".into()),
        group_by: Some(vec!["watchlist".into()]),
        group_wait_secs: Some(1),
        group_interval_secs: Some(1),
        ..RouteConfig::default()
    };
    let receiver = ReceiverConfig {
        name: "hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(hook.url("/hook")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    let (bus, services, shutdown, router) = start(route, receiver).await;
    let alerts_topic = services.config.topics.alerts.clone();

    for i in 0..3 {
        publish(
            &bus,
            &services,
            &mention(&format!("g{i}"), &format!("@author{i}")),
        )
        .await;
    }
    // Inside group_wait and while the receiver takes its time, no offset is stored.
    let started = Instant::now();
    while hook.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no notification"
        );
        assert!(!bus.is_idle(), "offsets stored before the group was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the group did not wait for more alerts"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !bus.is_idle(),
        "offsets stored before the group was delivered"
    );
    assert!(bus.records(&alerts_topic).is_empty());
    wait_until(|| bus.is_idle() && bus.records(&alerts_topic).len() == 3).await;

    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "one notification for the group");
    let body = &requests[0].body;
    assert_eq!(body["group"]["route"], "acme-all");
    assert_eq!(body["group"]["labels"]["watchlist"], "acme");
    assert_eq!(body["digest"], false);
    let mut authors: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["author_handle"].as_str().unwrap())
        .collect();
    authors.sort_unstable();
    assert_eq!(authors, ["@author0", "@author1", "@author2"]);
    assert_eq!(body["mentions"].as_array().unwrap().len(), 3);
    assert_eq!(
        requests[0].header("x-earshot-delivery"),
        body["delivery_id"].as_str()
    );
    assert_eq!(
        requests[0].header("x-earshot-group"),
        body["group"]["id"].as_str()
    );

    // Every alert is published with its own delivery record, delivered.
    let published = decode_all(&bus, &services).await;
    for alert in &published {
        let delivery = &alert.deliveries[0];
        assert_eq!(delivery.status, DeliveryStatus::Delivered, "{alert:?}");
        assert_eq!(delivery.id, delivery_id(alert.id, "hook"));
    }

    // The same mention read again (a replay) within repeat_interval is not notified again,
    // and its alert completes with the earlier delivery. A new mention is: alone, at least
    // group_interval after the group's notification, as a single alert's message.
    publish(&bus, &services, &mention("g0", "@author0")).await;
    publish(&bus, &services, &mention("g3", "@author3")).await;
    wait_until(|| bus.is_idle() && bus.records(&alerts_topic).len() == 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), 2, "the replayed mention was notified again");
    assert_eq!(requests[1].body["alert"]["author_handle"], "@author3");
    let published = decode_all(&bus, &services).await;
    assert_eq!(published[3].id, published[0].id);
    assert_eq!(published[3].deliveries, published[0].deliveries);

    stop(shutdown, router).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_comes_too_soon_for_slack_is_folded_into_one_digest() {
    let slack = Fake::start(|_| 0).await;
    let route = RouteConfig {
        name: "acme-all".into(),
        watchlist: Some("acme".into()),
        receiver: Some("care-slack".into()),
        ..RouteConfig::default()
    };
    let receiver = ReceiverConfig {
        name: "care-slack".into(),
        slack: Some(SlackConfig {
            url: Some(slack.url("/services/T000/B000/XXXX")),
            allow_private: true,
            min_interval_ms: 1_000,
            ..SlackConfig::default()
        }),
        rate_limit: Some(RateLimitConfig {
            min_interval_ms: 1_000,
            max_listed: 2,
        }),
        ..ReceiverConfig::default()
    };
    let (bus, services, shutdown, router) = start(route, receiver).await;
    let alerts_topic = services.config.topics.alerts.clone();

    for i in 0..6 {
        publish(
            &bus,
            &services,
            &mention(&format!("d{i}"), &format!("@user{i}")),
        )
        .await;
    }
    wait_until(|| bus.is_idle() && bus.records(&alerts_topic).len() == 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let requests = slack.requests();
    assert_eq!(requests.len(), 2, "one message, then one digest");
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "the digest came {gap:?} after"
    );
    assert_eq!(
        requests[0].body["blocks"][0]["text"]["text"],
        "Earshot: acme · acme-all"
    );
    let digest = &requests[1].body;
    assert_eq!(
        digest["blocks"][0]["text"]["text"],
        "Earshot digest: acme · acme-all · 5 alerts"
    );
    let blocks = digest["blocks"].as_array().unwrap();
    // Two alerts in full (a section and its why each), then one section for the rest.
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["header", "section", "context", "section", "context", "section"]
    );
    let more = blocks[5]["text"]["text"].as_str().unwrap();
    assert!(more.starts_with("3 more alerts:\n"), "{more}");
    assert_eq!(more.lines().count(), 4, "{more}");

    // All six alerts are delivered: the first alone, five by the digest.
    let published = decode_all(&bus, &services).await;
    let mut authors: Vec<&str> = published.iter().map(|a| a.author_handle.as_str()).collect();
    authors.sort_unstable();
    assert_eq!(
        authors,
        ["@user0", "@user1", "@user2", "@user3", "@user4", "@user5"]
    );
    assert!(published
        .iter()
        .all(|a| a.deliveries[0].status == DeliveryStatus::Delivered));
    let digest_delivered: Vec<i64> = published
        .iter()
        .skip(1)
        .map(|a| a.deliveries[0].delivered_at.unwrap())
        .collect();
    assert!(
        digest_delivered.windows(2).all(|w| w[0] == w[1]),
        "the five went out in one message"
    );

    stop(shutdown, router).await;
}

/// A group whose notification fails after every retry: each of its alerts is published as
/// failed and dead-lettered, and only then are the offsets stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_cannot_be_delivered_dead_letters_each_of_its_alerts() {
    let hook = Fake::answering(500).await;
    let route = RouteConfig {
        name: "acme-all".into(),
        watchlist: Some("acme".into()),
        receiver: Some("hook".into()),
        group_by: Some(vec![]),
        group_wait_secs: Some(1),
        ..RouteConfig::default()
    };
    let receiver = ReceiverConfig {
        name: "hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(hook.url("/hook")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    let (bus, services, shutdown, router) = start(route, receiver).await;
    let topics = services.config.topics.clone();
    publish(&bus, &services, &mention("f0", "@a")).await;
    publish(&bus, &services, &mention("f1", "@b")).await;
    wait_until(|| bus.is_idle() && bus.records(&topics.deadletter).len() == 2).await;

    // max_attempts 2: two requests, each carrying both alerts.
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests
        .iter()
        .all(|r| r.body["alerts"].as_array().map(Vec::len) == Some(2)));
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key"),
        "a retry carries the same key"
    );
    let published = decode_all(&bus, &services).await;
    assert_eq!(published.len(), 2);
    for alert in &published {
        let delivery = &alert.deliveries[0];
        assert_eq!(delivery.status, DeliveryStatus::Failed, "{alert:?}");
        assert!(delivery
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 500")));
    }
    stop(shutdown, router).await;
}

/// In the embedded mode the state does not outlive the process: a group pending at shutdown
/// is sent then, rather than left for a next router that would not know it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_durable_state_a_pending_group_is_sent_at_shutdown() {
    let hook = Fake::start(|_| 0).await;
    let route = RouteConfig {
        name: "acme-all".into(),
        watchlist: Some("acme".into()),
        receiver: Some("hook".into()),
        group_by: Some(vec![]),
        group_wait_secs: Some(600),
        ..RouteConfig::default()
    };
    let receiver = ReceiverConfig {
        name: "hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(hook.url("/hook")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    let (bus, services, shutdown, router) = start(route, receiver).await;
    publish(&bus, &services, &mention("s0", "@a")).await;
    wait_until(|| {
        services
            .metrics
            .received
            .with_label_values(&["router"])
            .get()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hook.requests().is_empty(), "sent before group_wait");
    stop(shutdown, router).await;
    assert_eq!(hook.requests().len(), 1, "the pending group was not sent");
    assert_eq!(bus.records(&services.config.topics.alerts).len(), 1);
}

/// A partition revoked and assigned back: while it was away, another replica notified
/// alerts of the group and saved the group's entry. Its groups here let go of the stale
/// memory at the revocation (the alerts pending for it complete as interrupted, for the new
/// owner to read again), and take up the entry's latest value when it comes back, so an
/// alert the other replica notified is not notified again.
#[tokio::test]
async fn a_partition_revoked_and_assigned_back_takes_up_its_groups_latest_saved_state() {
    use earshot_core::model::{delivery_id, now_micros, Delivery};
    use earshot_core::StageError;
    use earshot_router::digest::Outbox;
    use earshot_router::grouping::{Grouper, Owns, SavedGroup, SavedNotification};

    let config = RouterConfig {
        routes: vec![RouteConfig {
            name: "acme-all".into(),
            watchlist: Some("acme".into()),
            receiver: Some("hook".into()),
            group_by: Some(vec!["watchlist".into()]),
            // Nothing goes out during the test.
            group_wait_secs: Some(3_600),
            ..RouteConfig::default()
        }],
        receivers: vec![ReceiverConfig {
            name: "hook".into(),
            webhook: Some(WebhookConfig {
                url: Some("http://127.0.0.1:9/hook".into()),
                allow_private: true,
                ..WebhookConfig::default()
            }),
            ..ReceiverConfig::default()
        }],
        ..RouterConfig::default()
    };
    let shutdown = CancellationToken::new();
    let state = earshot_router::state::StateCell::default();
    let deliverer = earshot_router::Deliverer::new(
        &config,
        earshot_core::telemetry::Metrics::default(),
        shutdown.clone(),
    )
    .unwrap();
    let outbox = Outbox::new(
        &config,
        Arc::new(deliverer),
        shutdown.clone(),
        state.clone(),
    );
    let owned: Arc<Mutex<Vec<i32>>> = Arc::new(Mutex::new(vec![0]));
    let owns: Owns = {
        let owned = owned.clone();
        Arc::new(move |partition| owned.lock().unwrap().contains(&partition))
    };
    let grouper = Grouper::new(&config.routes, outbox, shutdown.clone(), state, owns);

    let alert = |native: &str| {
        let (alert, enriched) = common::acme_alert(native, "my Acme lamp flickers", "acme-all");
        (alert, Arc::new(enriched))
    };
    let (x, x_mention) = alert("rebalance-x");
    let (y, y_mention) = alert("rebalance-y");
    let (z, z_mention) = alert("rebalance-z");
    let group = grouper.group_id("acme-all", "hook", &x_mention).unwrap();
    let delivered = |n: u128| Delivery {
        id: uuid::Uuid::from_u128(n),
        channel: "webhook".into(),
        receiver: "hook".into(),
        status: DeliveryStatus::Delivered,
        attempts: 1,
        last_error: None,
        delivered_at: Some(1_795_608_000_000_000),
    };
    let notified = |n: u128, alerts: Vec<uuid::Uuid>| SavedNotification {
        at: now_micros() - 60_000_000,
        delivery: delivered(n),
        alerts,
    };
    let entry = |notifications: Vec<SavedNotification>| SavedGroup {
        due_at: None,
        last_sent_at: Some(now_micros() - 60_000_000),
        notified: notifications,
    };

    // The state topic holds the group's entry of partition 0: x went out in delivery 1.
    grouper.restore(0, group, Some(entry(vec![notified(1, vec![x.id])])));
    let mut x_done = grouper.submit(&x, "hook", x_mention.clone(), 0).unwrap();
    assert_eq!(
        x_done.try_recv().unwrap().unwrap().id,
        delivery_id(x.id, "hook")
    );
    let mut y_pending = grouper.submit(&y, "hook", y_mention.clone(), 0).unwrap();

    // Partition 0 is revoked (the rebalance listener releases it): y, pending, completes
    // as interrupted (no offset stored).
    owned.lock().unwrap().clear();
    grouper.release(0);
    assert!(matches!(
        y_pending.try_recv(),
        Ok(Err(StageError::Interrupted))
    ));

    // Meanwhile its new owner sent y and z in delivery 2 and saved the entry.
    grouper.restore(
        0,
        group,
        Some(entry(vec![
            notified(1, vec![x.id]),
            notified(2, vec![y.id, z.id]),
        ])),
    );

    // Assigned back, the replayed z and y complete with delivery 2: not notified again.
    owned.lock().unwrap().push(0);
    for (alert, mention) in [(z, z_mention), (y, y_mention)] {
        let mut done = grouper.submit(&alert, "hook", mention, 0).unwrap();
        let delivery = done
            .try_recv()
            .expect("completed at once with the other replica's delivery")
            .unwrap();
        assert_eq!(
            delivery,
            Delivery {
                id: delivery_id(alert.id, "hook"),
                ..delivered(2)
            }
        );
    }
    shutdown.cancel();
}

async fn start(
    route: RouteConfig,
    receiver: ReceiverConfig,
) -> (
    MemoryBus,
    Services,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), earshot_router::RouterError>>,
) {
    let config = Config {
        router: RouterConfig {
            routes: vec![route],
            receivers: vec![receiver],
            delivery: DeliveryConfig {
                max_attempts: 2,
                initial_backoff_ms: 10,
                ..DeliveryConfig::default()
            },
            ..RouterConfig::default()
        },
        ..Config::default()
    };
    let bus = MemoryBus::new();
    // Declared before anything is published, so that `is_idle` waits for the router.
    bus.declare_group(
        &format!("{}-router", config.kafka.group_prefix),
        &[&config.topics.enriched],
    );
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let router = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));
    (bus, services, shutdown, router)
}

async fn stop(
    shutdown: CancellationToken,
    router: tokio::task::JoinHandle<Result<(), earshot_router::RouterError>>,
) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), router)
        .await
        .expect("the router stops")
        .unwrap()
        .expect("a graceful stop");
}

async fn wait_until(done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mention(native_id: &str, author: &str) -> EnrichedMention {
    let (_, mut enriched) = common::acme_alert(native_id, "my Acme lamp flickers", "unused");
    enriched.mention.author.handle = author.into();
    enriched
}

async fn decode_all(bus: &MemoryBus, services: &Services) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for record in bus.records(&services.config.topics.alerts) {
        alerts.push(services.codecs.alert.decode(&record.payload).await.unwrap());
    }
    alerts
}

/// What the fake server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Shared = (Box<dyn Fn(usize) -> u64 + Send + Sync>, Mutex<Vec<Seen>>);

/// A receiver on loopback that answers 200 `ok` (as Slack and webhooks do), after a delay
/// in milliseconds chosen by request number.
struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Fake {
    async fn start(delay_ms: impl Fn(usize) -> u64 + Send + Sync + 'static) -> Fake {
        Self::serve(Box::new(delay_ms), 200).await
    }

    /// A receiver that answers every request with `status`.
    async fn answering(status: u16) -> Fake {
        Self::serve(Box::new(|_| 0), status).await
    }

    async fn serve(delay_ms: Box<dyn Fn(usize) -> u64 + Send + Sync>, status: u16) -> Fake {
        let shared: Arc<Shared> = Arc::new((delay_ms, Mutex::new(Vec::new())));
        let app =
            Router::new()
                .fallback(post(
                    move |State(shared): State<Arc<Shared>>,
                          headers: HeaderMap,
                          body: BodyBytes| async move {
                        let n = {
                            let mut seen = shared.1.lock().unwrap();
                            seen.push(Seen {
                                at: Instant::now(),
                                headers: headers
                                    .iter()
                                    .map(|(n, v)| {
                                        (n.to_string(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect(),
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            });
                            seen.len() - 1
                        };
                        tokio::time::sleep(Duration::from_millis((shared.0)(n))).await;
                        (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
                    },
                ))
                .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.shared.1.lock().unwrap().clone()
    }
}
