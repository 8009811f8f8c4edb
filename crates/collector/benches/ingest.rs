//! Replay and HTTP ingest into real Kafka, against a bare rdkafka producer sending the same
//! encoded records (same keys, same Avro payloads, same producer settings) in the same run.
//!
//! `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 cargo bench -p earshot-collector --bench ingest`
//! (optionally `-- 300000` mentions). Each path runs three times, interleaved; the best run
//! of each is reported, with its ratio to the best baseline run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_collector::{ingest, Collector};
use earshot_core::config::HttpIngestConfig;
use earshot_core::model::Source;
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 3;
const HTTP_BATCH: usize = 1_000;
const HTTP_CONNECTIONS: usize = 16;
const TOKEN: &str = "bench-token-0123456789abcdef";

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("KAFKA_BOOTSTRAP_SERVERS is not set: start Kafka with scripts/kafka start");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(bootstrap, count));
}

/// Realistic ingest lines: a few hundred bytes each, like the bundled sample.
fn lines(count: usize, run: &str) -> Vec<String> {
    (0..count)
        .map(|i| {
            serde_json::json!({
                "native_id": format!("{run}-{i}"),
                "source": {"kind": "x", "instance": "bench"},
                "url": format!("https://x.example/status/{run}-{i}"),
                "author": {"handle": format!("@user{}", i % 5000), "name": "Sam Okafor", "followers": (i * 37) % 90_000},
                "text": format!("@Parcelly my package #{i} has been 'out for delivery' for 3 days now and support just closes the chat. #ParcellyDown"),
                "lang": "en",
                "created_at": "2026-11-23T09:00:00Z",
                "engagement": {"likes": i % 50, "reposts": i % 7, "replies": i % 11},
            })
            .to_string()
        })
        .collect()
}

async fn bench(bootstrap: String, count: usize) {
    let run = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
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
    let baseline_topic = format!("{run}.baseline");
    earshot_core::kafka::ensure_topics(&config.kafka, &[&baseline_topic])
        .await
        .unwrap();
    std::env::set_var("EARSHOT_BENCH_TOKEN", TOKEN);
    config.collector.http = Some(HttpIngestConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_env: Some("EARSHOT_BENCH_TOKEN".into()),
        ..Default::default()
    });
    let services = Services::kafka(config.clone()).await.unwrap();
    let collector = Collector::new(&services).unwrap();

    let lines = lines(count, &run);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let path = std::env::temp_dir().join(format!("{run}.ndjson"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    // The baseline sends exactly what the collector sends: the key, the encoded Avro record
    // and a traceparent header.
    let source = Source {
        kind: "replay".into(),
        instance: path.display().to_string(),
    };
    let records: Vec<(Bytes, Bytes, Bytes)> = lines
        .iter()
        .map(|line| {
            let mention = ingest::to_mention(serde_json::from_str(line).unwrap(), &source).unwrap();
            let payload = services.codecs.mention.encode(&mention).unwrap();
            (
                Bytes::from(mention.id.to_string()),
                Bytes::from(payload),
                Bytes::from(earshot_core::telemetry::trace_context::new_traceparent()),
            )
        })
        .collect();
    let payload_bytes: usize = records.iter().map(|(_, p, _)| p.len()).sum();
    println!(
        "{count} mentions, {:.0} bytes of NDJSON and {:.0} bytes of Avro per mention",
        bytes as f64 / count as f64,
        payload_bytes as f64 / count as f64
    );

    let shutdown = CancellationToken::new();
    let addr = collector
        .serve_http(
            services.config.collector.http.as_ref().unwrap(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let bodies: Arc<Vec<String>> =
        Arc::new(lines.chunks(HTTP_BATCH).map(|c| c.join("\n")).collect());

    let mut best = [Duration::MAX; 3];
    for round in 0..ROUNDS {
        let started = Instant::now();
        earshot_core::kafka::produce_bare(&config.kafka, &baseline_topic, &records)
            .await
            .unwrap();
        let baseline = started.elapsed();

        let started = Instant::now();
        let summary = collector
            .replay(&path, 0, CancellationToken::new())
            .await
            .unwrap();
        let replay = started.elapsed();
        assert_eq!(summary.sent as usize, count, "every line replayed");

        let started = Instant::now();
        let accepted = post_all(&client, addr, bodies.clone()).await;
        let http = started.elapsed();
        assert_eq!(accepted, count, "every mention accepted");

        println!(
            "round {}: baseline {:>9.0}/s  replay {:>9.0}/s  http {:>9.0}/s",
            round + 1,
            rate(count, baseline),
            rate(count, replay),
            rate(count, http)
        );
        for (slot, elapsed) in best.iter_mut().zip([baseline, replay, http]) {
            *slot = (*slot).min(elapsed);
        }
    }
    shutdown.cancel();
    let _ = std::fs::remove_file(&path);
    let baseline = rate(count, best[0]);
    println!();
    println!("| path | mentions/s | ratio |");
    println!("|---|---:|---:|");
    println!("| bare rdkafka producer, same records (baseline) | {baseline:.0} | 1.00 |");
    for (name, elapsed) in [
        ("NDJSON replay (`Collector::replay`)", best[1]),
        (
            "HTTP ingest (`POST /v1/mentions`, 1,000 per request, 16 connections)",
            best[2],
        ),
    ] {
        let r = rate(count, elapsed);
        println!("| {name} | {r:.0} | {:.2} |", r / baseline);
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Posts every body, `HTTP_CONNECTIONS` requests at a time; returns the accepted count.
async fn post_all(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    bodies: Arc<Vec<String>>,
) -> usize {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..HTTP_CONNECTIONS {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return accepted;
                };
                let response = client
                    .post(format!("http://{addr}/v1/mentions"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                let answer: serde_json::Value = response.json().await.unwrap();
                accepted += answer["accepted"].as_u64().unwrap() as usize;
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}
