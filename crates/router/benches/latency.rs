//! The router's latency on real Kafka: from an `EnrichedMention` produced to the enriched
//! topic to a local webhook receiver receiving its alert, at a paced rate (1,000 mentions/s
//! by default), against a baseline measured in the same run: the same records produced the
//! same way to another topic and read by the same consumer and at-least-once loop with a
//! stage that does nothing. Then the maximum sustained rate: mentions produced as fast as
//! the producer takes them, delivered per second at the receiver.
//!
//! `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 cargo bench -p earshot-router --bench latency`
//! (optionally `-- <rate per second> <seconds>`, default `1000 10`). Prints p50, p90, p99 and
//! max for both paths, their ratio, the process CPU time of each phase and the load average.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use earshot_core::bus::{headers, OutRecord};
use earshot_core::config::{DeliveryConfig, ReceiverConfig, RouteConfig, WebhookConfig};
use earshot_core::model::{
    mention_id, now_micros, Author, Engagement, EnrichedMention, Mention, Sentiment, Source,
    WatchlistMatch,
};
use earshot_core::{Completion, Config, InRecord, Services, Stage};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// When each mention (by native id) was produced, and when it arrived.
type Clock = Arc<Mutex<Timings>>;

#[derive(Default)]
struct Timings {
    sent: HashMap<String, Instant>,
    latencies: Vec<Duration>,
    first_sent: Option<Instant>,
    last_arrived: Option<Instant>,
}

impl Timings {
    fn arrived(&mut self, native_id: &str) {
        let now = Instant::now();
        if let Some(sent) = self.sent.remove(native_id) {
            self.latencies.push(now - sent);
            self.last_arrived = Some(now);
        }
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(1_000);
    let seconds = args.get(1).copied().unwrap_or(10);
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("KAFKA_BOOTSTRAP_SERVERS is not set: start Kafka with scripts/kafka start");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(bootstrap, rate, seconds));
}

async fn bench(bootstrap: String, rate: u64, seconds: u64) {
    let run = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let clock: Clock = Arc::default();
    let receiver_addr = start_receiver(clock.clone()).await;

    let mut config = Config::default();
    config.kafka.bootstrap_servers = bootstrap;
    config.kafka.group_prefix = run.clone();
    config.telemetry.log_level = "warn".into();
    for (topic, name) in [
        (&mut config.topics.raw, "raw"),
        (&mut config.topics.enriched, "enriched"),
        (&mut config.topics.alerts, "alerts"),
        (&mut config.topics.deadletter, "deadletter"),
        (&mut config.topics.checkpoints, "checkpoints"),
        (&mut config.topics.source_health, "health"),
    ] {
        *topic = format!("{run}.{name}");
    }
    config.router.routes = vec![RouteConfig {
        name: "bench".into(),
        watchlist: Some("acme".into()),
        receiver: Some("hook".into()),
        ..RouteConfig::default()
    }];
    config.router.receivers = vec![ReceiverConfig {
        name: "hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(format!("http://{receiver_addr}/hook")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    }];
    config.router.delivery = DeliveryConfig::default();
    let baseline_topic = format!("{run}.baseline");
    earshot_core::kafka::ensure_topics(&config.kafka, &[&baseline_topic])
        .await
        .unwrap();
    let services = Services::kafka(config.clone()).await.unwrap();
    let publisher = services.publisher("bench-producer").unwrap();
    let shutdown = CancellationToken::new();

    // The baseline consumer: the runner and Kafka consumer the router uses, a stage that
    // only notes the arrival.
    let baseline = tokio::spawn({
        let (services, publisher, shutdown) =
            (services.clone(), publisher.clone(), shutdown.clone());
        let stage = Arrival {
            clock: clock.clone(),
            services: services.clone(),
        };
        async move {
            services
                .run_consumer(stage, "baseline", &[&baseline_topic], publisher, shutdown)
                .await
        }
    });
    let router_task = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));
    let baseline_topic = format!("{run}.baseline");

    // Warm up both paths (group joins, connections) until a record makes it through each.
    for (topic, name) in [
        (baseline_topic.as_str(), "baseline"),
        (config.topics.enriched.as_str(), "router"),
    ] {
        let started = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let id = format!("{run}-warm-{name}-{n}");
            send(&services, &publisher, topic, &id, &clock).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !clock.lock().unwrap().sent.contains_key(&id) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the {name} path never delivered"
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    reset(&clock);

    let count = (rate * seconds) as usize;
    println!(
        "{count} mentions at {rate}/s per path; load average {}",
        load()
    );
    let mut results = Vec::new();
    for (name, topic) in [
        ("baseline: produce -> consume", baseline_topic.as_str()),
        (
            "router: produce -> webhook receives",
            config.topics.enriched.as_str(),
        ),
    ] {
        let cpu = cpu_seconds();
        paced(
            &services,
            &publisher,
            topic,
            &format!("{run}-{name}"),
            rate,
            count,
            &clock,
        )
        .await;
        let latencies = settle(&clock, count).await;
        let cpu = cpu_seconds() - cpu;
        let summary = Summary::of(&latencies);
        println!(
            "{name}: {} of {count} arrived; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; process CPU {cpu:.2} s",
            latencies.len(),
            summary.p50,
            summary.p90,
            summary.p99,
            summary.max
        );
        results.push((name, summary));
        reset(&clock);
    }

    // Maximum sustained rate: as fast as the producer takes them.
    let burst = (count * 2).max(10_000);
    let cpu = cpu_seconds();
    let started = Instant::now();
    for i in 0..burst {
        let id = format!("{run}-burst-{i}");
        send(&services, &publisher, &config.topics.enriched, &id, &clock).await;
    }
    let produced = started.elapsed();
    let latencies = settle(&clock, burst).await;
    let cpu = cpu_seconds() - cpu;
    let (first, last) = {
        let timings = clock.lock().unwrap();
        (timings.first_sent.unwrap(), timings.last_arrived.unwrap())
    };
    let sustained = latencies.len() as f64 / (last - first).as_secs_f64();
    println!(
        "burst: {} of {burst} delivered; produced in {:.2} s; {sustained:.0} mentions/s end to end; process CPU {cpu:.2} s",
        latencies.len(),
        produced.as_secs_f64()
    );
    println!("load average after: {}", load());

    println!();
    println!("| path (at {rate}/s) | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in &results {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.p50, s.p90, s.p99, s.max
        );
    }
    let (base, router) = (&results[0].1, &results[1].1);
    println!(
        "| ratio router / baseline | {:.2} | {:.2} | {:.2} | |",
        router.p50 / base.p50,
        router.p90 / base.p90,
        router.p99 / base.p99
    );
    println!("maximum sustained rate (burst of {burst}): {sustained:.0} mentions/s");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), router_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), baseline).await;
}

/// Produces `count` mentions at `rate` per second (each one sent at its slot, not waiting
/// for acknowledgements in between).
async fn paced(
    services: &Services,
    publisher: &Arc<dyn earshot_core::bus::Publisher>,
    topic: &str,
    prefix: &str,
    rate: u64,
    count: usize,
    clock: &Clock,
) {
    let started = tokio::time::Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..count {
        tokio::time::sleep_until(started + every * i as u32).await;
        send(services, publisher, topic, &format!("{prefix}-{i}"), clock).await;
    }
}

/// Waits until `count` arrived (or 30 s without progress); returns the latencies.
async fn settle(clock: &Clock, count: usize) -> Vec<Duration> {
    let mut last = (0, Instant::now());
    loop {
        let arrived = clock.lock().unwrap().latencies.len();
        if arrived >= count {
            break;
        }
        if arrived != last.0 {
            last = (arrived, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("only {arrived} of {count} arrived");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.lock().unwrap().latencies.clone()
}

fn reset(clock: &Clock) {
    *clock.lock().unwrap() = Timings::default();
}

async fn send(
    services: &Services,
    publisher: &Arc<dyn earshot_core::bus::Publisher>,
    topic: &str,
    native_id: &str,
    clock: &Clock,
) {
    let enriched = enriched(native_id);
    let payload = Bytes::from(services.codecs.enriched.encode(&enriched).unwrap());
    {
        let mut timings = clock.lock().unwrap();
        let now = Instant::now();
        timings.sent.insert(native_id.to_owned(), now);
        timings.first_sent.get_or_insert(now);
    }
    // Not awaited in line: the paced loop must not wait for the broker's acknowledgement.
    let ack = publisher
        .publish(OutRecord {
            topic: Arc::from(topic),
            key: Some(Bytes::from_static(b"acme")),
            payload,
            headers: vec![(
                headers::TRACEPARENT.to_owned(),
                Bytes::from(earshot_core::telemetry::trace_context::new_traceparent()),
            )],
        })
        .await;
    tokio::spawn(async move { ack.await.expect("acknowledged") });
}

/// A realistic enriched copy of the `acme` watchlist.
fn enriched(native_id: &str) -> EnrichedMention {
    let now = now_micros();
    EnrichedMention {
        mention: Mention {
            id: mention_id("x", native_id),
            native_id: native_id.to_owned(),
            source: Source {
                kind: "x".into(),
                instance: "bench".into(),
            },
            url: Some(format!("https://x.example/status/{native_id}")),
            author: Author {
                handle: "@sam_okafor".into(),
                name: Some("Sam Okafor".into()),
                followers: Some(12_400),
                verified: false,
                id: Some("2244994945".into()),
            },
            text: "@Acme my order has been 'out for delivery' for 3 days now and support just closes the chat. #AcmeDown".into(),
            lang_hint: Some("en".into()),
            created_at: now - 2_000_000,
            collected_at: now,
            engagement: Engagement {
                likes: 14,
                reposts: 3,
                replies: 5,
            },
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        },
        watchlist: "acme".into(),
        matches: vec![WatchlistMatch {
            watchlist: "acme".into(),
            relevance: 0.86,
            clause: "acme".into(),
            spans: vec![],
        }],
        sentiment: Sentiment {
            neg: 0.21,
            neu: 0.79,
            pos: 0.0,
            compound: -0.57,
        },
        sentences: Default::default(),
        language: Some("en".into()),
        language_confidence: 0.98,
        spam_score: 0.02,
        intent: "complaint".into(),
        reach: 12_422,
        urgency: 0.71,
        signals: Default::default(),
        enriched_at: now,
    }
}

/// The webhook receiver: notes each alert's mention as it arrives.
async fn start_receiver(clock: Clock) -> SocketAddr {
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(clock): State<Clock>, Json(body): Json<serde_json::Value>| async move {
                    if let Some(id) = body["mention"]["mention"]["native_id"].as_str() {
                        clock.lock().unwrap().arrived(id);
                    }
                    "ok"
                },
            ),
        )
        .with_state(clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The baseline's stage: decodes the record and notes its arrival.
struct Arrival {
    clock: Clock,
    services: Services,
}

impl Stage for Arrival {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            let payload = record.payload.as_deref().unwrap_or_default();
            if let Ok(enriched) = self.services.codecs.enriched.decode(payload).await {
                self.clock
                    .lock()
                    .unwrap()
                    .arrived(&enriched.mention.native_id);
            }
            Box::pin(async { Ok(()) }) as Completion
        })
    }
}

struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(latencies: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if ms.is_empty() {
                f64::NAN
            } else {
                ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1]
            }
        };
        Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// User plus system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the state field's start.
    (ticks(11) + ticks(12)) / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
