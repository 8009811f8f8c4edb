//! Spikes through the whole router stage on the in-memory bus: a watchlist's steady windows,
//! then a burst of angry mentions. The burst raises a volume peak and a negative-share peak,
//! each routed through the tree (a route matching `intent = spike`) to a webhook receiver
//! that speaks real HTTP, and published on the alerts topic with its spike. Windows follow
//! the mentions' collection times, so nothing sleeps.

mod common;

use common::publish_memory as publish;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use earshot_core::config::{
    DeliveryConfig, ReceiverConfig, RouteConfig, RouterConfig, SpikesConfig, WebhookConfig,
};
use earshot_core::memory::MemoryBus;
use earshot_core::model::{mention_id, EnrichedMention, Sentiment};
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

/// 2026-11-25T12:00:00Z.
const T0: i64 = 1_795_608_000_000_000;
const WINDOW: i64 = 60_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_angry_mentions_raises_spike_alerts_through_the_routing_tree() {
    let hook = Hook::start().await;
    let config = Config {
        router: RouterConfig {
            routes: vec![RouteConfig {
                name: "acme-spikes".into(),
                watchlist: Some("acme".into()),
                matchers: vec!["intent = spike".into()],
                receiver: Some("hook".into()),
                ..RouteConfig::default()
            }],
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
            spikes: Some(SpikesConfig {
                window_secs: 60,
                baseline_alpha: 0.2,
                warmup_windows: 4,
                min_mentions: 5,
                ..SpikesConfig::default()
            }),
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
    let services = Services::memory(config.clone(), bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let router = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));

    // Six windows of 10 calm mentions, a window of 40 angry ones, and one mention of the
    // next window, whose arrival closes the burst's window.
    let mut n = 0;
    for window in 0..6 {
        for i in 0..10 {
            n += 1;
            let at = T0 + window * WINDOW + i * WINDOW / 10;
            publish(&bus, &services, &mention(n, at, 0.4, "nice lamp", "@fan")).await;
        }
    }
    for i in 0..40 {
        n += 1;
        let at = T0 + 6 * WINDOW + i * WINDOW / 40;
        let author = if i % 4 == 0 { "@furious" } else { "@upset" };
        let text = "the lamp caught fire #recall";
        publish(&bus, &services, &mention(n, at, -0.8, text, author)).await;
    }
    publish(
        &bus,
        &services,
        &mention(n + 1, T0 + 7 * WINDOW, 0.4, "ok", "@fan"),
    )
    .await;

    let started = Instant::now();
    while !(bus.is_idle() && bus.records(&config.topics.alerts).len() == 2) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {} alerts, {} requests",
            bus.records(&config.topics.alerts).len(),
            hook.bodies().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The webhook got one request per spike, each with the spike's why.
    let bodies = hook.bodies();
    let mut received: Vec<(String, String, i64)> = bodies
        .iter()
        .map(|body| {
            let alert = &body["alert"];
            assert_eq!(alert["kind"], "spike", "{body:#}");
            assert_eq!(alert["route"], "acme-spikes");
            assert_eq!(alert["watchlist"], "acme");
            assert_eq!(body["mention"]["intent"], "spike");
            let spike = &alert["spike"];
            assert_eq!(spike["window_start"], T0 + 6 * WINDOW);
            assert_eq!(spike["negative_mentions"], 40);
            assert_eq!(spike["top_authors"][0]["name"], "@upset");
            assert_eq!(spike["top_authors"][0]["count"], 30);
            let terms: Vec<&str> = spike["top_terms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(terms, ["#recall", "caught", "fire", "lamp"], "{spike:#}");
            assert_eq!(spike["samples"].as_array().unwrap().len(), 3);
            let text = alert["mention_text"].as_str().unwrap();
            assert!(text.contains("Top terms: #recall (40)"), "{text}");
            (
                spike["metric"].as_str().unwrap().to_owned(),
                spike["direction"].as_str().unwrap().to_owned(),
                spike["mentions"].as_i64().unwrap(),
            )
        })
        .collect();
    received.sort();
    assert_eq!(
        received,
        [
            ("negative_share".to_owned(), "peak".to_owned(), 40),
            ("volume".to_owned(), "peak".to_owned(), 40),
        ]
    );

    // The alerts topic has both, delivered, with the spike for the sink.
    let mut published = Vec::new();
    for record in bus.records(&config.topics.alerts) {
        published.push(services.codecs.alert.decode(&record.payload).await.unwrap());
    }
    let mut summary: Vec<(String, String, f64, bool)> = published
        .iter()
        .map(|alert| {
            let spike = alert
                .spike
                .as_ref()
                .expect("a spike alert carries its spike");
            (
                alert.kind.clone(),
                alert.score_name.clone(),
                alert.score,
                alert.score >= alert.threshold
                    && spike.baseline_mean < alert.threshold
                    && alert.deliveries[0].status == earshot_core::model::DeliveryStatus::Delivered,
            )
        })
        .collect();
    summary.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        summary,
        [
            ("spike".to_owned(), "negative_share".to_owned(), 1.0, true),
            ("spike".to_owned(), "volume".to_owned(), 40.0, true),
        ]
    );
    assert!(bus.records(&config.topics.deadletter).is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), router)
        .await
        .expect("the router stops")
        .unwrap()
        .expect("a graceful stop");
}

fn mention(n: i64, at: i64, compound: f64, text: &str, author: &str) -> EnrichedMention {
    let (_, mut enriched) = common::acme_alert(&format!("spike-{n}"), text, "unused");
    enriched.mention.id = mention_id("x", &format!("spike-{n}"));
    enriched.mention.created_at = at - 5_000_000;
    enriched.mention.collected_at = at;
    enriched.mention.author.handle = author.into();
    enriched.matches[0].spans = vec![];
    enriched.intent = "unknown".into();
    enriched.reach = n;
    enriched.sentiment = Sentiment {
        compound,
        ..Sentiment::default()
    };
    enriched
}

/// A webhook receiver on loopback that answers 200 and keeps the JSON bodies.
struct Hook {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Hook {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State(bodies): State<Arc<Mutex<Vec<serde_json::Value>>>>,
                     Json(body): Json<serde_json::Value>| async move {
                        bodies.lock().unwrap().push(body);
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

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}
