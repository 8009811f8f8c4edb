//! RSS/Atom against a local feed server that speaks HTTP like a blog or news site: ETag and
//! Last-Modified validators, 304, 429 with `Retry-After`, a maintenance page instead of the
//! feed, a malformed item. Over the in-memory bus, and over real Kafka (started by
//! `scripts/test`) for a restart in the middle with no gap and no loss, and for two replicas
//! sharing the feeds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use earshot_core::bus::Subscription;
use earshot_core::config::RssSourceConfig;
use earshot_core::kafka::KafkaSubscription;
use earshot_core::memory::MemoryBus;
use earshot_core::model::{Mention, SourceHealthEvent, SourceHealthState};
use earshot_core::telemetry::{Health, Metrics};
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

/// One feed as its server holds it.
#[derive(Default)]
struct Feed {
    /// (guid, title), oldest first; the feed shows the newest first.
    items: Vec<(String, String)>,
    /// Bumped on every change; the ETag is `"v<version>"`.
    version: u32,
    /// Answers to give before the feed itself, in order: 429 with Retry-After seconds, or
    /// a maintenance page (HTML, not a feed).
    script: Vec<Scripted>,
    /// Requests seen: (time, If-None-Match).
    requests: Vec<(Instant, Option<String>)>,
}

#[derive(Clone, Copy)]
enum Scripted {
    TooManyRequests { retry_after_secs: u64 },
    MaintenancePage,
}

type Feeds = Arc<Mutex<HashMap<String, Feed>>>;

async fn feed_handler(
    State(feeds): State<Feeds>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut feeds = feeds.lock().unwrap();
    let Some(feed) = feeds.get_mut(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    feed.requests.push((Instant::now(), if_none_match.clone()));
    if !feed.script.is_empty() {
        return match feed.script.remove(0) {
            Scripted::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "slow down",
            )
                .into_response(),
            Scripted::MaintenancePage => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>Down for maintenance</h1></body></html>",
            )
                .into_response(),
        };
    }
    let etag = format!("\"v{}\"", feed.version);
    if if_none_match.as_deref() == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>{name} news</title><link>https://{name}.example.org/</link><language>en</language>
<description>Posts from {name}</description>
"#
    );
    for (guid, title) in feed.items.iter().rev() {
        if title.is_empty() {
            // Malformed: an item with neither title nor content.
            body.push_str(&format!("<item><guid>{guid}</guid></item>\n"));
            continue;
        }
        body.push_str(&format!(
            "<item><title>{title}</title><link>https://{name}.example.org/{guid}</link>\
             <guid isPermaLink=\"false\">{guid}</guid><pubDate>Mon, 23 Nov 2026 09:00:00 GMT</pubDate>\
             <dc:creator>Sam Lee</dc:creator>\
             <content:encoded><![CDATA[<p>{title} &mdash; <a href=\"https://{name}.example.org/{guid}\">read more</a></p>]]></content:encoded></item>\n"
        ));
    }
    body.push_str("</channel></rss>\n");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "application/rss+xml; charset=utf-8".to_owned(),
            ),
            (header::ETAG, etag),
            (
                header::LAST_MODIFIED,
                "Mon, 23 Nov 2026 09:00:00 GMT".to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}

async fn feed_server(feeds: Feeds) -> SocketAddr {
    let app = Router::new()
        .route("/feeds/{name}", get(feed_handler))
        .with_state(feeds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn add_items(feeds: &Feeds, name: &str, items: &[(&str, &str)]) {
    let mut feeds = feeds.lock().unwrap();
    let feed = feeds.entry(name.to_owned()).or_default();
    feed.items
        .extend(items.iter().map(|(g, t)| (g.to_string(), t.to_string())));
    feed.version += 1;
}

fn rss_source(name: &str, addr: SocketAddr, interval_ms: u64) -> RssSourceConfig {
    RssSourceConfig {
        name: name.into(),
        url: format!("http://{addr}/feeds/{name}"),
        interval_ms,
        jitter_ms: 0,
        max_seen_ids: 100,
    }
}

/// Fast politeness for tests: short backoff, no per-host interval.
fn test_config() -> Config {
    let mut config = Config::default();
    config.telemetry.log_level = "warn".into();
    earshot_core::telemetry::init_tracing(&config.telemetry);
    config.telemetry.listen = "127.0.0.1:0".parse().unwrap();
    let politeness = &mut config.collector.politeness;
    politeness.per_host_interval_ms = 0;
    politeness.initial_backoff_ms = 20;
    politeness.max_backoff_ms = 2_000;
    politeness.connect_timeout_ms = 1_000;
    politeness.read_timeout_ms = 2_000;
    config.collector.health.check_interval_ms = 20;
    config
}

async fn wait_until(timeout: Duration, what: &str, check: impl FnMut() -> bool) {
    wait_until_or(timeout, what, check).await
}

async fn wait_until_or(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn memory_mentions(bus: &MemoryBus, services: &Services) -> Vec<Mention> {
    bus.records(&services.config.topics.raw)
        .iter()
        .map(|r| futures::executor::block_on(services.codecs.mention.decode(&r.payload)).unwrap())
        .collect()
}

fn metric(services: &Services, line_prefix: &str) -> u64 {
    services
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One feed through its life: first read, 304s, a new item, 429 with Retry-After, a
/// maintenance page, a malformed item; every good item published once, every bad thing
/// counted, and the source keeps going.
#[tokio::test]
async fn a_feed_is_polled_conditionally_and_each_item_is_published_once() {
    let feeds: Feeds = Default::default();
    add_items(
        &feeds,
        "acme",
        &[
            ("acme-1", "Acme kettle review"),
            ("acme-2", ""),
            ("acme-3", "Acme recall"),
        ],
    );
    let addr = feed_server(feeds.clone()).await;
    let mut config = test_config();
    config.collector.sources.rss = vec![rss_source("acme", addr, 30)];
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));

    wait_until(Duration::from_secs(10), "the first two items", || {
        memory_mentions(&bus, &services).len() == 2
    })
    .await;
    wait_until(Duration::from_secs(10), "a conditional request", || {
        feeds.lock().unwrap()["acme"]
            .requests
            .iter()
            .any(|(_, etag)| etag.as_deref() == Some("\"v1\""))
    })
    .await;
    let mentions = memory_mentions(&bus, &services);
    assert_eq!(
        mentions
            .iter()
            .map(|m| m.native_id.as_str())
            .collect::<Vec<_>>(),
        ["acme-1", "acme-3"],
        "oldest first, the malformed item skipped"
    );
    assert_eq!(mentions[0].text, "Acme kettle review \u{2014} read more");
    assert_eq!(mentions[0].author.handle, "Sam Lee");
    assert_eq!(mentions[0].source.kind, "rss");
    assert_eq!(mentions[0].source.instance, "acme");
    assert_eq!(
        metric(
            &services,
            "earshot_source_errors_total{error_type=\"malformed\",source=\"rss/acme\"}"
        ),
        1
    );

    // The host asks for a pause, then serves a maintenance page, then the feed with a new
    // item: the pause is honoured, the page counted, the item published.
    {
        let mut feeds = feeds.lock().unwrap();
        let feed = feeds.get_mut("acme").unwrap();
        feed.script = vec![
            Scripted::TooManyRequests {
                retry_after_secs: 1,
            },
            Scripted::MaintenancePage,
        ];
    }
    add_items(&feeds, "acme", &[("acme-4", "Acme support replies")]);
    wait_until(Duration::from_secs(10), "the new item", || {
        memory_mentions(&bus, &services).len() == 3
    })
    .await;
    {
        let feeds = feeds.lock().unwrap();
        let requests = &feeds["acme"].requests;
        let throttled = requests
            .windows(2)
            .find(|w| w[1].0.duration_since(w[0].0) >= Duration::from_millis(900));
        assert!(
            throttled.is_some(),
            "the request after the 429 waited for Retry-After"
        );
    }
    assert_eq!(memory_mentions(&bus, &services)[2].native_id, "acme-4");
    assert_eq!(
        metric(
            &services,
            "earshot_source_errors_total{error_type=\"malformed\",source=\"rss/acme\"}"
        ),
        2,
        "the maintenance page is counted as malformed"
    );
    assert!(
        metric(
            &services,
            "earshot_source_last_success_timestamp_seconds{source=\"rss/acme\"}"
        ) > 0
    );
    assert_eq!(
        metric(&services, "earshot_source_items_total{source=\"rss/acme\"}"),
        3
    );

    shutdown.cancel();
    collector.await.unwrap().unwrap();
    let ids: Vec<_> = memory_mentions(&bus, &services)
        .iter()
        .map(|m| m.native_id.clone())
        .collect();
    assert_eq!(ids, ["acme-1", "acme-3", "acme-4"], "each item once");
}

/// A feed that stays unchanged goes quiet after `quiet_after_intervals` intervals: a
/// `SourceHealth` event is published and the gauge drops; a new item brings it back.
#[tokio::test]
async fn a_source_that_yields_nothing_is_reported_quiet_and_then_recovered() {
    let feeds: Feeds = Default::default();
    add_items(&feeds, "quiet", &[("q-1", "first post")]);
    let addr = feed_server(feeds.clone()).await;
    let mut config = test_config();
    config.collector.sources.rss = vec![rss_source("quiet", addr, 40)];
    config.collector.health.quiet_after_intervals = 5;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    let events = || -> Vec<SourceHealthEvent> {
        bus.records(&services.config.topics.source_health)
            .iter()
            .map(|r| {
                assert_eq!(r.key.as_deref(), Some(&b"rss/quiet"[..]));
                futures::executor::block_on(services.codecs.source_health.decode(&r.payload))
                    .unwrap()
            })
            .collect()
    };
    wait_until(Duration::from_secs(10), "a quiet event", || {
        !events().is_empty()
    })
    .await;
    let quiet = &events()[0];
    assert_eq!(quiet.state, SourceHealthState::Quiet);
    assert_eq!(
        (quiet.source_kind.as_str(), quiet.source_instance.as_str()),
        ("rss", "quiet")
    );
    assert_eq!(quiet.usual_interval_ms, 40);
    assert!(quiet.last_success_at.is_some());
    assert_eq!(
        metric(&services, "earshot_source_healthy{source=\"rss/quiet\"}"),
        0
    );

    add_items(&feeds, "quiet", &[("q-2", "second post")]);
    wait_until(Duration::from_secs(10), "a recovery event", || {
        events().len() >= 2
    })
    .await;
    assert_eq!(events()[1].state, SourceHealthState::Healthy);
    assert_eq!(
        metric(&services, "earshot_source_healthy{source=\"rss/quiet\"}"),
        1
    );
    shutdown.cancel();
    collector.await.unwrap().unwrap();
}

/// A feed that keeps failing is reported failing after `failing_after_errors` failed polls.
#[tokio::test]
async fn a_source_that_keeps_failing_is_reported_failing() {
    let feeds: Feeds = Default::default();
    let addr = feed_server(feeds.clone()).await; // no feed "gone": every poll is a 404
    let mut config = test_config();
    config.collector.sources.rss = vec![rss_source("gone", addr, 10)];
    config.collector.health.failing_after_errors = 3;
    // Only failing is under test: never quiet first.
    config.collector.health.quiet_after_intervals = 100_000;
    config.collector.politeness.max_backoff_ms = 50;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    let topic = services.config.topics.source_health.clone();
    wait_until(Duration::from_secs(10), "a failing event", || {
        !bus.records(&topic).is_empty()
    })
    .await;
    let event = services
        .codecs
        .source_health
        .decode(&bus.records(&topic)[0].payload)
        .await
        .unwrap();
    assert_eq!(event.state, SourceHealthState::Failing);
    assert!(event.consecutive_failures >= 3);
    assert_eq!(event.last_error.as_deref(), Some("status"));
    assert!(
        metric(
            &services,
            "earshot_source_errors_total{error_type=\"status\",source=\"rss/gone\"}"
        ) >= 3
    );
    shutdown.cancel();
    collector.await.unwrap().unwrap();
}

// ---- against real Kafka ----

fn kafka_config(run: &str) -> Config {
    let mut config = test_config();
    config.kafka.bootstrap_servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    );
    config.kafka.group_prefix = run.to_owned();
    config.kafka.drain_timeout_ms = 10_000;
    config.kafka.session_timeout_ms = 6_000;
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");
    config.topics.checkpoints = format!("{run}.checkpoints");
    config.topics.source_health = format!("{run}.health");
    config
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Native ids of every mention on the raw topic, read by a fresh group until `count` came or
/// nothing more arrives.
async fn raw_native_ids(config: &Config, count: usize) -> Vec<String> {
    let services = Services::kafka(config.clone()).await.unwrap();
    let health = Health::new(Duration::from_secs(60));
    let mut reader = KafkaSubscription::new(
        &config.kafka,
        &unique("reader"),
        &[&config.topics.raw],
        Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("broker"),
    )
    .unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let wait = if ids.len() >= count {
            Duration::from_secs(2) // anything more would be a duplicate
        } else {
            Duration::from_secs(1)
        };
        match tokio::time::timeout(wait, reader.recv()).await {
            Ok(Some(Ok(record))) => {
                let mention = services
                    .codecs
                    .mention
                    .decode(&record.payload.unwrap())
                    .await
                    .unwrap();
                ids.push(mention.native_id);
            }
            Ok(other) => panic!("consuming failed: {:?}", other.map(|r| r.err())),
            Err(_) if ids.len() >= count => break,
            Err(_) => {}
        }
    }
    ids.sort();
    ids
}

/// The collector is stopped after the first items and restarted after the feed changed:
/// the second run sends the first run's ETag (restored from the checkpoint topic) and
/// publishes only the new items, so every item is on the raw topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_resumes_from_its_checkpoint_with_no_gap_and_no_loss() {
    let run = unique("rss_restart");
    let feeds: Feeds = Default::default();
    add_items(
        &feeds,
        "blog",
        &[("b-1", "one"), ("b-2", "two"), ("b-3", "three")],
    );
    let addr = feed_server(feeds.clone()).await;
    let mut config = kafka_config(&run);
    config.collector.sources.rss = vec![rss_source("blog", addr, 50)];

    let first_run = |config: Config| async move {
        let shutdown = CancellationToken::new();
        let services = Services::kafka(config).await.unwrap();
        let task = tokio::spawn(earshot_collector::run_with(services, shutdown.clone()));
        (shutdown, task)
    };
    let (shutdown, task) = first_run(config.clone()).await;
    wait_until(Duration::from_secs(30), "a conditional poll", || {
        feeds.lock().unwrap()["blog"]
            .requests
            .iter()
            .any(|(_, etag)| etag.is_some())
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let requests_of_first_run = feeds.lock().unwrap()["blog"].requests.len();

    add_items(&feeds, "blog", &[("b-4", "four"), ("b-5", "five")]);
    let (shutdown, task) = first_run(config.clone()).await;
    wait_until(
        Duration::from_secs(30),
        "the second run's first poll",
        || feeds.lock().unwrap()["blog"].requests.len() > requests_of_first_run,
    )
    .await;
    assert_eq!(
        feeds.lock().unwrap()["blog"].requests[requests_of_first_run]
            .1
            .as_deref(),
        Some("\"v1\""),
        "the second run restored the first run's ETag"
    );
    let ids = raw_native_ids(&config, 5).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        ids,
        ["b-1", "b-2", "b-3", "b-4", "b-5"],
        "every item exactly once"
    );
}

/// Two replicas share eight feeds through the checkpoint group: each feed is read by one
/// replica only (no item is published twice), and when one replica stops, the other takes
/// its feeds over from their checkpoints (new items published once, old ones not again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_source_once_and_take_over_when_one_stops() {
    let run = unique("rss_replicas");
    let feeds: Feeds = Default::default();
    let names: Vec<String> = (0..8).map(|i| format!("feed{i}")).collect();
    for name in &names {
        add_items(&feeds, name, &[(&format!("{name}-1"), "first")]);
    }
    let addr = feed_server(feeds.clone()).await;
    let mut config = kafka_config(&run);
    config.collector.sources.rss = names.iter().map(|n| rss_source(n, addr, 50)).collect();

    let start = |config: Config| async move {
        let shutdown = CancellationToken::new();
        let services = Services::kafka(config).await.unwrap();
        let task = tokio::spawn(earshot_collector::run_with(services, shutdown.clone()));
        (shutdown, task)
    };
    let (stop_a, replica_a) = start(config.clone()).await;
    let (stop_b, replica_b) = start(config.clone()).await;
    let ids = raw_native_ids(&config, 8).await;
    assert_eq!(ids.len(), 8, "each feed's item once: {ids:?}");

    stop_a.cancel();
    replica_a.await.unwrap().unwrap();
    for name in &names {
        add_items(&feeds, name, &[(&format!("{name}-2"), "second")]);
    }
    let ids = raw_native_ids(&config, 16).await;
    stop_b.cancel();
    replica_b.await.unwrap().unwrap();
    let mut expected: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("{n}-1"), format!("{n}-2")])
        .collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "every item exactly once across both replicas"
    );
}
