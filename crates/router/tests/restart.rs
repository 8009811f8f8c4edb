//! What the router keeps across restarts besides escalations, against real Kafka (its state
//! topic, `earshot.router.state`): a group pending when the router stops goes out once,
//! after the restart, with the alerts of before and after it; an alert notified in its
//! group is not notified again by the next router within `repeat_interval`; a receiver's
//! rate limit holds across a restart, and what was pending for its digest goes out at the
//! saved slot; and spike detection goes on from the baseline learned before the restart,
//! without warming up again.

mod common;

use common::{kafka_config, publish_kafka as publish, unique, Running};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use earshot_core::config::{
    DeliveryConfig, RateLimitConfig, ReceiverConfig, RouteConfig, RouterConfig, SpikesConfig,
    WebhookConfig,
};
use earshot_core::model::{mention_id, EnrichedMention, Sentiment};
use serde_json::Value;

/// 2026-11-25T12:00:00Z.
const T0: i64 = 1_795_608_000_000_000;
const WINDOW: i64 = 60_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pending_at_a_restart_goes_out_once_and_is_not_notified_again() {
    let hook = Hook::start().await;
    let run = unique("grouprestart");
    let mut config = kafka_config(&run);
    config.router = router(
        &hook,
        RouteConfig {
            name: "acme-all".into(),
            watchlist: Some("acme".into()),
            receiver: Some("hook".into()),
            group_by: Some(vec!["watchlist".into()]),
            group_wait_secs: Some(8),
            ..RouteConfig::default()
        },
        None,
    );

    // Two alerts join the group; the router stops inside its group_wait.
    let first = Running::start(config.clone()).await;
    let services = first.services.clone();
    publish(&first.services, &mention("g0", "@a")).await;
    publish(&first.services, &mention("g1", "@b")).await;
    wait_until("the first router read both", || first.received() >= 2).await;
    // Time for the group's entry to be saved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stop().await;
    assert!(
        hook.bodies().is_empty(),
        "the pending group was sent at shutdown: {:#?}",
        hook.bodies()
    );

    // A third alert while no router runs; the next router sends one notification with all
    // three (the first two read again, their offsets not stored).
    publish(&services, &mention("g2", "@c")).await;
    let second = Running::start(config.clone()).await;
    wait_until("the group's notification", || !hook.bodies().is_empty()).await;
    wait_until("the three alerts published", || second.sent() >= 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "one notification: {bodies:#?}");
    let mut authors: Vec<&str> = bodies[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["author_handle"].as_str().unwrap())
        .collect();
    authors.sort_unstable();
    assert_eq!(authors, ["@a", "@b", "@c"]);
    second.stop().await;

    // The same mention read again by a new router (as after a crash between delivery and
    // commit) completes with the earlier delivery: no new notification. Without the saved
    // memory it would start a new group and be notified after group_wait.
    publish(&services, &mention("g0", "@a")).await;
    let third = Running::start(config.clone()).await;
    wait_until("the replayed alert published", || third.sent() >= 1).await;
    assert_eq!(hook.bodies().len(), 1, "{:#?}", hook.bodies());
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_a_restart_and_the_pending_digest_goes_out_at_its_slot() {
    const INTERVAL: Duration = Duration::from_secs(15);
    let hook = Hook::start().await;
    let run = unique("digestrestart");
    let mut config = kafka_config(&run);
    config.router = router(
        &hook,
        RouteConfig {
            name: "acme-all".into(),
            watchlist: Some("acme".into()),
            receiver: Some("hook".into()),
            ..RouteConfig::default()
        },
        None,
    );
    config.router.receivers[0].rate_limit = Some(RateLimitConfig {
        min_interval_ms: INTERVAL.as_millis() as u64,
        max_listed: 5,
    });

    // The first alert takes the slot; the second waits for the next one, and the router
    // stops before it.
    let first = Running::start(config.clone()).await;
    let services = first.services.clone();
    publish(&services, &mention("r0", "@a")).await;
    wait_until("the first message", || hook.bodies().len() == 1).await;
    publish(&services, &mention("r1", "@b")).await;
    wait_until("the first router read both", || first.received() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    assert_eq!(
        hook.bodies().len(),
        1,
        "the pending digest was sent at shutdown"
    );

    // The next router reads the second alert again and sends it at the saved slot, not at
    // once.
    let second = Running::start(config.clone()).await;
    wait_until("the second message", || hook.bodies().len() == 2).await;
    let seen = hook.seen();
    assert_eq!(seen[1].1["alert"]["author_handle"], "@b", "{:#}", seen[1].1);
    let gap = seen[1].0 - seen[0].0;
    assert!(
        gap >= INTERVAL - Duration::from_millis(500),
        "the rate limit did not hold across the restart: {gap:?}"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_router_detects_a_spike_against_the_baseline_learned_before() {
    let hook = Hook::start().await;
    let run = unique("spikerestart");
    let mut config = kafka_config(&run);
    config.router = router(
        &hook,
        RouteConfig {
            name: "acme-spikes".into(),
            watchlist: Some("acme".into()),
            matchers: vec!["intent = spike".into()],
            receiver: Some("hook".into()),
            ..RouteConfig::default()
        },
        Some(SpikesConfig {
            window_secs: 60,
            baseline_alpha: 0.2,
            warmup_windows: 4,
            min_mentions: 5,
            ..SpikesConfig::default()
        }),
    );

    // Six calm windows of 10 mentions each, and the first mention of the seventh, to the
    // first router: the baseline is warmed up.
    let first = Running::start(config.clone()).await;
    let mut n = 0;
    for window in 0..6 {
        for i in 0..10 {
            n += 1;
            let at = T0 + window * WINDOW + i * WINDOW / 10;
            publish(&first.services, &spiky(n, at, 0.4, "@fan")).await;
        }
    }
    n += 1;
    publish(&first.services, &spiky(n, T0 + 6 * WINDOW, 0.4, "@fan")).await;
    wait_until("the first router read the calm windows", || {
        first.received() >= 61
    })
    .await;
    first.stop().await;
    assert!(hook.bodies().is_empty(), "{:#?}", hook.bodies());

    // To the next router: a burst in the seventh window, closed by a mention of the eighth.
    // Fresh, it would still be warming up (no spike before 4 windows); it raises the peak.
    let second = Running::start(config.clone()).await;
    for i in 1..40 {
        n += 1;
        let at = T0 + 6 * WINDOW + i * WINDOW / 40;
        publish(&second.services, &spiky(n, at, 0.4, "@upset")).await;
    }
    n += 1;
    publish(&second.services, &spiky(n, T0 + 7 * WINDOW, 0.4, "@fan")).await;
    wait_until("the spike's notification", || !hook.bodies().is_empty()).await;
    let bodies = hook.bodies();
    let spike = &bodies[0]["alert"]["spike"];
    assert_eq!(spike["metric"], "volume", "{:#}", bodies[0]);
    assert_eq!(spike["direction"], "peak");
    assert_eq!(spike["window_start"], T0 + 6 * WINDOW);
    assert_eq!(
        spike["mentions"], 40,
        "the window's mentions before and after"
    );
    let mean = spike["baseline_mean"].as_f64().unwrap();
    assert!((mean - 10.0).abs() < 0.01, "the baseline of before: {mean}");
    second.stop().await;
}

fn router(hook: &Hook, route: RouteConfig, spikes: Option<SpikesConfig>) -> RouterConfig {
    RouterConfig {
        routes: vec![route],
        receivers: vec![ReceiverConfig {
            name: "hook".into(),
            webhook: Some(WebhookConfig {
                url: Some(hook.url()),
                allow_private: true,
                ..WebhookConfig::default()
            }),
            ..ReceiverConfig::default()
        }],
        delivery: DeliveryConfig {
            max_attempts: 2,
            initial_backoff_ms: 10,
            ..DeliveryConfig::default()
        },
        spikes,
        ..RouterConfig::default()
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mention(native_id: &str, author: &str) -> EnrichedMention {
    let (_, mut enriched) = common::acme_alert(native_id, "my Acme lamp flickers", "unused");
    enriched.mention.author.handle = author.into();
    enriched
}

/// A calm mention of `acme` collected at `at`, for spike detection.
fn spiky(n: i64, at: i64, compound: f64, author: &str) -> EnrichedMention {
    let (_, mut enriched) = common::acme_alert(&format!("spike-{n}"), "a lamp", "unused");
    enriched.mention.id = mention_id("x", &format!("spike-{n}"));
    enriched.mention.created_at = at - 5_000_000;
    enriched.mention.collected_at = at;
    enriched.mention.author.handle = author.into();
    enriched.intent = "unknown".into();
    enriched.sentiment = Sentiment {
        compound,
        ..Sentiment::default()
    };
    enriched
}

type Seen = Arc<Mutex<Vec<(Instant, Value)>>>;

/// A webhook receiver on loopback that answers 200 and keeps the JSON bodies, with when
/// each came.
struct Hook {
    addr: SocketAddr,
    bodies: Seen,
}

impl Hook {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State(bodies): State<Seen>, Json(body): Json<Value>| async move {
                        bodies.lock().unwrap().push((Instant::now(), body));
                        "ok"
                    },
                ),
            )
            .with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { addr, bodies }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.seen().into_iter().map(|(_, body)| body).collect()
    }

    fn seen(&self) -> Vec<(Instant, Value)> {
        self.bodies.lock().unwrap().clone()
    }
}
