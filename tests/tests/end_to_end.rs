//! The whole pipeline, end to end: 10,000 mentions posted to the collector's HTTP ingest, then
//! every mention exactly once in PostgreSQL, the expected alerts at the webhook, and the one
//! poison record in the dead-letter topic. Once with the four services against real Kafka and
//! real PostgreSQL, once in the embedded mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot::embedded::{self, Input};
use earshot_core::bus::{headers, OutRecord, Subscription};
use earshot_core::config::{ConfigSources, PostgresConfig, ReplayConfig};
use earshot_core::kafka::KafkaSubscription;
use earshot_core::{Config, Services};
use earshot_tests::*;
use tokio_util::sync::CancellationToken;

const MENTIONS: usize = 10_000;

fn scenario_config(webhook: std::net::SocketAddr, postgres_url: &str) -> Config {
    init_logs();
    std::env::set_var("EARSHOT_E2E_TOKEN", TOKEN);
    let yaml = scenario_config_yaml(webhook);
    let mut config = Config::load(ConfigSources {
        defaults_yaml: Some(&yaml),
        file: None,
        environment: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    config.sink.postgres = Some(PostgresConfig {
        url: Some(postgres_url.to_owned()),
        url_env: None,
        ..PostgresConfig::default()
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_services_over_kafka_deliver_every_mention_once() {
    let (webhook, received) = webhook_receiver().await;
    let (postgres_url, _schema) = fresh_schema("e2e_kafka").await;
    let run = unique("e2e");
    let mut config = scenario_config(webhook, &postgres_url);
    config.kafka.bootstrap_servers = kafka_bootstrap();
    config.kafka.group_prefix = run.clone();
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");

    // Four services, each with its own metrics and health, as four processes would have.
    let shutdown = CancellationToken::new();
    let collector_services = Services::kafka(config.clone()).await.unwrap();
    let collector = earshot_collector::Collector::new(&collector_services).unwrap();
    let ingest = collector
        .serve_http(config.collector.http.as_ref().unwrap(), shutdown.clone())
        .await
        .unwrap();
    let mut services = tokio::task::JoinSet::new();
    for stage in ["enricher", "router", "sink"] {
        let (s, t) = (
            Services::kafka(config.clone()).await.unwrap(),
            shutdown.clone(),
        );
        services.spawn(async move {
            let result = match stage {
                "enricher" => earshot_enricher::run_with(s, t)
                    .await
                    .map_err(|e| e.to_string()),
                "router" => earshot_router::run_with(s, t)
                    .await
                    .map_err(|e| e.to_string()),
                _ => earshot_sink::run_with(s, t)
                    .await
                    .map_err(|e| e.to_string()),
            };
            result.map_err(|e| format!("{stage}: {e}"))
        });
    }

    // One poison record straight onto the raw topic: a truncated single-object payload.
    let publisher = collector_services.publisher("e2e-poison").unwrap();
    let poison = OutRecord {
        topic: Arc::from(config.topics.raw.as_str()),
        key: Some(Bytes::from_static(b"poison")),
        payload: Bytes::from_static(&[0xC3, 0x01, 0x42]),
        headers: vec![],
    };
    publisher.publish(poison).await.await.unwrap();

    let (lines, expected_alerts) = scenario_mentions(MENTIONS, &run);
    let started = Instant::now();
    assert_eq!(post_ndjson(ingest, &lines, 500).await, MENTIONS);
    let ingested = started.elapsed();

    wait_until(Duration::from_secs(180), "every mention in PostgreSQL", || {
        let url = postgres_url.clone();
        async move { query_count(&url, "SELECT count(*) FROM mentions").await == MENTIONS as i64 }
    })
    .await;
    let stored = started.elapsed();
    wait_until(
        Duration::from_secs(60),
        "every alert at the webhook and in PostgreSQL",
        || {
            let (url, received) = (postgres_url.clone(), received.clone());
            async move {
                received.lock().unwrap().by_alert.len() == expected_alerts
                    && query_count(&url, "SELECT count(*) FROM alerts").await
                        == expected_alerts as i64
            }
        },
    )
    .await;
    println!(
        "end to end over Kafka: {MENTIONS} mentions ingested in {:.2} s, all in PostgreSQL after {:.2} s ({:.0} mentions/s)",
        ingested.as_secs_f64(),
        stored.as_secs_f64(),
        MENTIONS as f64 / stored.as_secs_f64()
    );

    // The dead-letter topic holds exactly the poison record, with its provenance.
    let health = earshot_core::telemetry::Health::new(Duration::from_secs(60));
    let mut deadletters = KafkaSubscription::new(
        &config.kafka,
        &format!("{run}-check"),
        &[&config.topics.deadletter],
        earshot_core::telemetry::Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("broker"),
    )
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), deadletters.recv())
        .await
        .expect("a dead letter")
        .unwrap()
        .unwrap();
    assert_eq!(first.payload.as_deref(), Some(&[0xC3, 0x01, 0x42][..]));
    assert_eq!(
        first.header(headers::DLQ_SOURCE_TOPIC),
        Some(config.topics.raw.as_bytes())
    );
    assert_eq!(first.header(headers::DLQ_STAGE), Some(&b"enricher"[..]));
    assert_eq!(
        first.header(headers::DLQ_ERROR_TYPE),
        Some(&b"truncated"[..])
    );
    assert!(first.header(headers::DLQ_SOURCE_OFFSET).is_some());
    assert!(
        tokio::time::timeout(Duration::from_secs(3), deadletters.recv())
            .await
            .is_err(),
        "only one dead letter"
    );

    shutdown.cancel();
    while let Some(result) = services.join_next().await {
        result.unwrap().unwrap();
    }

    // Exactly once in PostgreSQL; one match row per matched mention; no duplicate deliveries.
    let distinct = query_count(&postgres_url, "SELECT count(DISTINCT id) FROM mentions").await;
    assert_eq!(distinct, MENTIONS as i64);
    let matched = query_count(
        &postgres_url,
        "SELECT count(*) FROM mention_matches WHERE watchlist = 'acme'",
    )
    .await;
    assert_eq!(matched, (MENTIONS - MENTIONS / 5) as i64);
    let received = received.lock().unwrap();
    assert!(
        received.by_alert.values().all(|n| *n == 1),
        "an alert was delivered twice in a clean run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_mode_runs_the_same_scenario() {
    let (webhook, received) = webhook_receiver().await;
    let (postgres_url, _schema) = fresh_schema("e2e_embedded").await;
    let run = unique("emb");
    let mut config = scenario_config(webhook, &postgres_url);
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    config.sink.parquet = Some(earshot_core::config::ParquetConfig {
        dir: dir.join("parquet"),
        roll_rows: 100_000,
        roll_secs: 1,
        ..Default::default()
    });
    // In the embedded mode the poison record arrives through a replay file.
    let replay = dir.join("poison.ndjson");
    std::fs::write(
        &replay,
        "{\"native_id\": \"p1\", \"text\": \"no author\"}\n",
    )
    .unwrap();
    config.collector.replay = Some(ReplayConfig {
        path: replay,
        rate_per_sec: 0,
    });

    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let pipeline = tokio::spawn(embedded::run(
        config,
        Input::Configured,
        shutdown.clone(),
        move |addr| {
            let _ = ready_tx.send(addr);
        },
    ));
    let ingest = ready_rx
        .await
        .unwrap()
        .expect("the ingest endpoint listens");

    // The endpoint's contract: 401 without the token, per-line errors, 413 over the limit.
    let client = reqwest::Client::new();
    let url = format!("http://{ingest}/v1/mentions");
    let unauthorized = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Announce a body over the 8 MiB limit: the answer must come before the body is read.
    let mut stream = tokio::net::TcpStream::connect(ingest).await.unwrap();
    let request = format!(
        "POST /v1/mentions HTTP/1.1\r\nHost: {ingest}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        9 * 1024 * 1024
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut response = vec![0u8; 64];
    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut response)
        .await
        .unwrap();
    let status_line = String::from_utf8_lossy(&response[..read]).to_string();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let all_bad = client
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{\"text\": \"x\"}\nnot json\n")
        .send()
        .await
        .unwrap();
    assert_eq!(all_bad.status(), 400);
    let body: serde_json::Value = all_bad.json().await.unwrap();
    assert_eq!(body["rejected"][0]["item"], 1);
    assert!(
        body["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{body}"
    );

    let (lines, expected_alerts) = scenario_mentions(MENTIONS, &run);
    let mut with_bad_line = lines[..3].to_vec();
    with_bad_line.insert(
        1,
        "{\"native_id\": \"x\", \"author\": {\"handle\": \"@a\"}}".into(),
    );
    let mixed = client
        .post(&url)
        .bearer_auth(TOKEN)
        .body(with_bad_line.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 202);
    let body: serde_json::Value = mixed.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"][0]["item"], 2);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("text is missing or empty"),
        "{body}"
    );

    let started = Instant::now();
    assert_eq!(post_ndjson(ingest, &lines[3..], 500).await, MENTIONS - 3);
    wait_until(Duration::from_secs(120), "every mention in PostgreSQL", || {
        let url = postgres_url.clone();
        async move { query_count(&url, "SELECT count(*) FROM mentions").await == MENTIONS as i64 }
    })
    .await;
    let stored = started.elapsed();
    wait_until(
        Duration::from_secs(60),
        "every alert at the webhook",
        || {
            let received = received.clone();
            async move { received.lock().unwrap().by_alert.len() == expected_alerts }
        },
    )
    .await;
    println!(
        "end to end embedded: {MENTIONS} mentions in PostgreSQL after {:.2} s ({:.0} mentions/s)",
        stored.as_secs_f64(),
        MENTIONS as f64 / stored.as_secs_f64()
    );

    shutdown.cancel();
    let summary = pipeline.await.unwrap().unwrap();
    assert_eq!(summary.mentions, MENTIONS as u64);
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.dead_lettered, 1, "{summary}");
    assert_eq!(
        summary.alerts_by_route.get("acme-influencer").copied(),
        Some(expected_alerts as u64)
    );
    assert_eq!(
        query_count(&postgres_url, "SELECT count(DISTINCT id) FROM mentions").await,
        MENTIONS as i64
    );
    assert_eq!(
        query_count(&postgres_url, "SELECT count(*) FROM alerts").await,
        expected_alerts as i64
    );
    let parquet_files = walk(&dir.join("parquet"));
    assert!(
        parquet_files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet")),
        "{parquet_files:?}"
    );
    assert!(
        !parquet_files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".tmp")),
        "{parquet_files:?}"
    );
}

#[tokio::test]
async fn the_bundled_sample_runs_to_completion_with_alerts() {
    let config = Config::load(ConfigSources {
        defaults_yaml: Some(embedded::DEMO_CONFIG),
        file: None,
        environment: false,
    })
    .unwrap();
    let mut config = config;
    let dir = std::env::temp_dir().join(unique("sample"));
    config.sink.parquet.as_mut().unwrap().dir = dir.clone();
    config.sink.parquet.as_mut().unwrap().roll_secs = 1;
    let summary = embedded::run(
        config,
        Input::Text(embedded::SAMPLE),
        CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    let sample_lines = embedded::SAMPLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    assert_eq!(summary.mentions, sample_lines);
    assert_eq!(summary.dead_lettered, 0);
    for watchlist in ["lumora", "brewtide", "parcelly"] {
        assert!(
            summary
                .matched_by_watchlist
                .get(watchlist)
                .copied()
                .unwrap_or(0)
                > 50,
            "{summary}"
        );
    }
    assert!(
        summary
            .alerts_by_route
            .get("parcelly-influencer")
            .copied()
            .unwrap_or(0)
            >= 10,
        "{summary}"
    );
    assert!(walk(&dir)
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "parquet")));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
