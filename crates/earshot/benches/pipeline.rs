//! The benchmark suite's whole-pipeline figures (`scripts/bench` runs this and writes
//! BENCHMARKS.md from its last line). Every figure comes with a baseline measured in the same
//! run, on the same broker:
//!
//! - **enricher**: the `earshot enricher` process (release binary) through Kafka against a bare
//!   rdkafka consume → produce passthrough of the same records with the same client settings
//!   (`kafka::passthrough_bare`). Both are timed the same way: from the first record on the
//!   output topic to the last, so the consumer group's join is left out of both.
//! - **pipeline**: the four services as four `earshot` processes, mentions posted to the ingest
//!   endpoint (1,000 per request, 4 connections), mentions per second from the first request
//!   to the last row in the sink's PostgreSQL table; the same in embedded mode (`earshot run
//!   --replay` of a generated file, process wall time). The baseline is the bare passthrough
//!   above: one hop's ceiling on this broker.
//! - **latency**: mentions posted at 1,000/s, 10 per request, each raising one alert; time from
//!   the request to the alert's arrival at a webhook receiver, p50 and p99; against one bare
//!   produce → consume round trip at the same rate (`kafka::round_trip_bare`). Target: p99 at
//!   most 3.3 × the bare p99 × 2 hops: the path crosses Kafka twice (collector → enricher,
//!   enricher → router); the HTTP legs in and out are counted in the time but not as hops,
//!   which makes the target stricter. Alerts that have not reached the receiver two minutes
//!   after the last request are told apart: raised (in the sink's `alerts` table) but late or
//!   undelivered, or never raised.
//! - **memory**: peak RSS (`VmHWM` of `/proc/<pid>/status`) of each service process after the
//!   throughput and latency runs. Target: 64 MiB each.
//!
//! ```sh
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 DATABASE_URL=postgres://earshot@127.0.0.1:35432/earshot \
//!   cargo bench -p earshot --bench pipeline -- [--quick] [--only enricher|pipeline|embedded]
//! ```
//! `--only <part>` runs one part alone (for instance the enricher rounds, to iterate on the
//! enricher's service path); the JSON then holds that part only, so `scripts/bench` never
//! passes it. The enricher rounds also report the enricher process's CPU seconds per thread
//! (from `/proc/<pid>/task/*/stat`), to show which thread is saturated.
//! Also prints the thread CPU time of the bench process and the load average, since this
//! machine is shared. The last line is `BENCH_JSON {...}` with every figure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use earshot_core::codec::Codec;
use earshot_core::config::{ConfigSources, KafkaConfig};
use earshot_core::kafka;
use earshot_core::model::{Mention, Source};
use earshot_tests::{fresh_schema, kafka_bootstrap, unique, TOKEN};
use serde_json::{json, Value};

struct Sizes {
    /// Records through the enricher and the passthrough, per round.
    enricher: usize,
    rounds: usize,
    /// Mentions through the whole pipeline (each mode).
    pipeline: usize,
    /// Seconds of posting at 1,000 mentions/s for the latency run.
    latency_secs: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).map(String::as_str).unwrap_or_default());
    if let Some(part) = only {
        anyhow::ensure!(
            ["enricher", "pipeline", "embedded"].contains(&part),
            "--only takes enricher, pipeline or embedded, not {part:?}"
        );
    }
    let runs = |part: &str| only.is_none_or(|o| o == part);
    let sizes = if quick {
        Sizes {
            enricher: 10_000,
            rounds: 1,
            pipeline: 10_000,
            latency_secs: 5,
        }
    } else {
        Sizes {
            enricher: 50_000,
            rounds: 3,
            pipeline: 100_000,
            latency_secs: 30,
        }
    };
    let earshot = earshot_binary()?;
    let mut results = serde_json::Map::new();
    results.insert("quick".into(), json!(quick));
    results.insert("load_before".into(), json!(load_average()));

    if runs("enricher") {
        let enricher = bench_enricher(&earshot, &sizes).await?;
        results.insert("enricher".into(), enricher);
    }
    if runs("pipeline") {
        let pipeline = bench_pipeline(&earshot, &sizes).await?;
        results.insert("pipeline".into(), pipeline);
    }
    if runs("embedded") {
        let embedded = bench_embedded(&earshot, &sizes).await?;
        results.insert("embedded".into(), embedded);
    }

    results.insert("load_after".into(), json!(load_average()));
    results.insert("bench_cpu_secs".into(), json!(process_cpu_secs()));
    println!("BENCH_JSON {}", Value::Object(results));
    Ok(())
}

/// The release binary next to this bench's own (cargo builds it for benches).
fn earshot_binary() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_earshot"));
    anyhow::ensure!(path.exists(), "{} is missing", path.display());
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// a. The enricher through Kafka against a bare passthrough.

async fn bench_enricher(earshot: &Path, sizes: &Sizes) -> anyhow::Result<Value> {
    let run = unique("bench_enrich");
    let kafka = kafka_config(&run);
    let (raw, bare, enriched) = (
        format!("{run}.raw"),
        format!("{run}.bare"),
        format!("{run}.enriched"),
    );
    kafka::ensure_topics(
        &kafka,
        &[&raw, &bare, &enriched, &format!("{run}.deadletter")],
    )
    .await?;
    let mentions = generated_mentions(sizes.enricher, &run, None);
    let codec = Codec::<Mention>::single_object()?;
    let records: Vec<(Bytes, Bytes, Bytes)> = mentions
        .iter()
        .map(|m| {
            Ok((
                Bytes::from(m.id.to_string()),
                Bytes::from(codec.encode(m)?),
                Bytes::from_static(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    kafka::produce_bare(&kafka, &raw, &records).await?;

    // What the enricher will write: one copy per matched watchlist, one when none matched.
    let config_yaml = services_config_yaml(&run, &kafka, "127.0.0.1:9", 0, "postgres://unused");
    let config = Config::load(ConfigSources {
        defaults_yaml: Some(&config_yaml),
        file: None,
        environment: false,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = earshot_enricher::Enricher::new(&config.enricher);
    let expected: i64 = mentions
        .iter()
        .map(|m| engine.enrich(m.clone()).len().max(1) as i64)
        .sum();

    let ends = kafka::TopicEnds::new(&kafka)?;
    let mut rounds = Vec::new();
    for round in 0..sizes.rounds {
        // Baseline: the bare passthrough.
        let start = ends.end_offset(&bare)?;
        let group = format!("{run}-bare-{round}");
        let bench_cpu_before = process_cpu_secs();
        let passthrough = {
            let (kafka, raw, bare) = (kafka.clone(), raw.clone(), bare.clone());
            let count = records.len();
            tokio::spawn(async move {
                kafka::passthrough_bare(&kafka, &group, &raw, &bare, count).await
            })
        };
        let bare_secs = time_output(&ends, &bare, start, records.len() as i64).await?;
        passthrough.await??;
        // The passthrough runs in this process: its CPU time, with the polling of the output.
        let bare_cpu = process_cpu_secs() - bench_cpu_before;

        // The enricher process, with a group of its own so that it reads everything again.
        let dir = std::env::temp_dir().join(format!("{run}-{round}"));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("earshot.yaml");
        let mut round_kafka = kafka.clone();
        round_kafka.group_prefix = format!("{run}-e{round}");
        std::fs::write(
            &file,
            services_config_yaml(&run, &round_kafka, "127.0.0.1:9", 0, "postgres://unused"),
        )?;
        let start = ends.end_offset(&enriched)?;
        let mut child = spawn_service(earshot, "enricher", &file, &dir)?;
        let enricher_secs = time_output(&ends, &enriched, start, expected).await;
        let peak_rss_kib = peak_rss_kib(child.id());
        let threads = thread_cpu_secs(child.id());
        let process_cpu = cpu_secs(&child.id().to_string());
        stop(&mut child);
        let enricher_secs = enricher_secs?;
        let round = json!({
            "bare_per_sec": records.len() as f64 / bare_secs,
            "enricher_per_sec": records.len() as f64 / enricher_secs,
            "ratio": bare_secs / enricher_secs,
            "enricher_peak_rss_kib": peak_rss_kib,
            "bare_cpu_secs": bare_cpu,
            "enricher_cpu_secs": process_cpu,
            "enricher_thread_cpu_secs": threads,
        });
        println!("enricher round {round}");
        rounds.push(round);
        std::fs::remove_dir_all(&dir).ok();
    }
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r["ratio"].as_f64().unwrap())
        .collect();
    let median_round = &rounds[median_index(&ratios)];
    Ok(json!({
        "records": records.len(),
        "payload_bytes_mean": bytes / records.len(),
        "enriched_copies": expected,
        "rounds": rounds,
        "median": median_round,
    }))
}

/// Seconds from the first new record on `topic` (past `start`) to the `count`-th.
async fn time_output(
    ends: &kafka::TopicEnds,
    topic: &str,
    start: i64,
    count: i64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let written = ends.end_offset(topic)? - start;
        if written > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if written >= count {
            let first = first.expect("set above");
            return Ok(first.elapsed().as_secs_f64().max(0.001));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic}: {written} of {count} records after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// b, c, d. Four processes: throughput, latency at 1,000/s, peak memory.

async fn bench_pipeline(earshot: &Path, sizes: &Sizes) -> anyhow::Result<Value> {
    let run = unique("bench_pipe");
    let kafka = kafka_config(&run);
    let (webhook, arrivals) = latency_receiver().await;
    let (postgres_url, _schema) = fresh_schema("bench").await;
    let ingest_port = free_port();
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("earshot.yaml");
    std::fs::write(
        &file,
        services_config_yaml(
            &run,
            &kafka,
            &webhook.to_string(),
            ingest_port,
            &postgres_url,
        ),
    )?;
    let mut fleet: Vec<(&str, Child)> = Vec::new();
    for service in ["collector", "enricher", "router", "sink"] {
        fleet.push((service, spawn_service(earshot, service, &file, &dir)?));
    }
    let result = async {
        wait_for_port(ingest_port).await?;
        let (postgres, connection) =
            tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let count_rows = || async {
            postgres
                .query_one("SELECT count(*) FROM mentions", &[])
                .await
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or(-1)
        };
        // Warm-up: one request through every stage, so that topics, groups and the sink's
        // migrations are in place before the clock starts.
        let warm = lines(&generated_mentions(10, &format!("{run}-warm"), None));
        post_batches(ingest_port, warm, 10, 1).await?;
        wait_rows(&count_rows, 10, Duration::from_secs(120)).await?;

        // Throughput.
        let batch = lines(&generated_mentions(sizes.pipeline, &run, None));
        let started = Instant::now();
        post_batches(ingest_port, batch, 1_000, 4).await?;
        let posted_secs = started.elapsed().as_secs_f64();
        wait_rows(
            &count_rows,
            10 + sizes.pipeline as i64,
            Duration::from_secs(600),
        )
        .await?;
        let pipeline_secs = started.elapsed().as_secs_f64();

        // Latency baseline: one bare hop at the same rate, while the services idle.
        let rate = 1_000usize;
        let count = rate * sizes.latency_secs as usize;
        let topic = format!("{run}.round-trip");
        kafka::ensure_topics(&kafka, &[&topic]).await?;
        let sample =
            Codec::<Mention>::single_object()?.encode(&generated_mentions(1, &run, None)[0])?;
        let mut bare =
            kafka::round_trip_bare(&kafka, &topic, &sample, count, Duration::from_millis(1))
                .await?;

        // Latency through the four services: 10 mentions every 10 ms, each raising one alert.
        let latency_run = format!("{run}-latency");
        let mentions = generated_mentions(count, &latency_run, Some(500_000));
        let mut sent_at: HashMap<String, Instant> = HashMap::new();
        let client = reqwest::Client::new();
        let ticker_start = tokio::time::Instant::now();
        let mut requests = Vec::new();
        for (tick, chunk) in mentions.chunks(10).enumerate() {
            tokio::time::sleep_until(ticker_start + Duration::from_millis(10 * tick as u64)).await;
            let now = Instant::now();
            for m in chunk {
                sent_at.insert(m.native_id.clone(), now);
            }
            let body = lines(chunk).join("\n");
            let request = client
                .post(format!("http://127.0.0.1:{ingest_port}/v1/mentions"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send();
            requests.push(tokio::spawn(request));
        }
        for request in requests {
            let response = request.await??;
            anyhow::ensure!(
                response.status() == 202,
                "ingest answered {}",
                response.status()
            );
        }
        // The receiver also gets the throughput run's alerts, some of them late: count this
        // run's mentions only.
        let arrived_here = || {
            let arrivals = arrivals.lock().unwrap();
            sent_at.keys().filter(|id| arrivals.contains_key(*id)).count()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while arrived_here() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // An alert that has not arrived after two minutes counts as slower than any that did:
        // a percentile that falls among them is reported as unknown (null), not as a number.
        let mut through: Vec<Duration> = {
            let arrivals = arrivals.lock().unwrap();
            sent_at
                .iter()
                .map(|(id, sent)| {
                    arrivals
                        .get(id)
                        .map_or(Duration::MAX, |at| at.duration_since(*sent))
                })
                .collect()
        };
        let arrived = through.iter().filter(|d| **d < Duration::MAX).count();
        // Of those that did not arrive, how many the router raised: the sink stores every
        // alert of the alerts topic; give it the time to catch up first. Mentions with an
        // alert, not alerts: a mention that also names another brand raises one per route.
        let raised_sql = format!(
            "SELECT count(DISTINCT a.mention_id) FROM alerts a JOIN mentions m ON m.id = a.mention_id \
             WHERE m.native_id LIKE '{latency_run}-%'"
        );
        let count_raised = || async {
            postgres
                .query_one(raised_sql.as_str(), &[])
                .await
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or(-1)
        };
        wait_rows(&count_raised, count as i64, Duration::from_secs(30))
            .await
            .ok();
        let raised = count_raised().await;

        let memory: serde_json::Map<String, Value> = fleet
            .iter()
            .map(|(service, child)| (service.to_string(), json!(peak_rss_kib(child.id()))))
            .collect();
        let cpu: serde_json::Map<String, Value> = fleet
            .iter()
            .map(|(service, child)| {
                (
                    service.to_string(),
                    json!(cpu_secs(&child.id().to_string())),
                )
            })
            .collect();
        let (bare_p50, bare_p99) = (
            percentile(&mut bare, 0.50).unwrap_or(f64::NAN),
            percentile(&mut bare, 0.99).unwrap_or(f64::NAN),
        );
        let (p50, p99) = (
            percentile(&mut through, 0.50),
            percentile(&mut through, 0.99),
        );
        println!(
            "pipeline: {} mentions in {pipeline_secs:.1} s",
            sizes.pipeline
        );
        Ok::<Value, anyhow::Error>(json!({
            "mentions": sizes.pipeline,
            "posted_secs": posted_secs,
            "secs": pipeline_secs,
            "per_sec": sizes.pipeline as f64 / pipeline_secs,
            "latency": {
                "rate_per_sec": rate,
                "count": count,
                "arrived_within_120_s": arrived,
                "raised_mentions": raised,
                "p50_ms": p50,
                "p99_ms": p99,
                "bare_p50_ms": bare_p50,
                "bare_p99_ms": bare_p99,
                "hops": 2,
                "target_p99_ms": 3.3 * bare_p99 * 2.0,
            },
            "peak_rss_kib": memory,
            "cpu_secs": cpu,
        }))
    }
    .await;
    for (_, child) in &mut fleet {
        stop(child);
    }
    if result.is_ok() {
        std::fs::remove_dir_all(&dir).ok();
    } else {
        eprintln!("logs of the services in {}", dir.display());
    }
    result
}

async fn bench_embedded(earshot: &Path, sizes: &Sizes) -> anyhow::Result<Value> {
    let run = unique("bench_embedded");
    let (webhook, _arrivals) = latency_receiver().await;
    let (postgres_url, _schema) = fresh_schema("bench").await;
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir)?;
    let replay = dir.join("mentions.ndjson");
    std::fs::write(
        &replay,
        lines(&generated_mentions(sizes.pipeline, &run, None)).join("\n") + "\n",
    )?;
    let file = dir.join("earshot.yaml");
    std::fs::write(
        &file,
        format!(
            "{}\nsink:\n  postgres:\n    url: \"{postgres_url}\"\n",
            pipeline_yaml(&webhook.to_string())
        ),
    )?;
    let started = Instant::now();
    let status = Command::new(earshot)
        .args(["run", "--config"])
        .arg(&file)
        .arg("--replay")
        .arg(&replay)
        .current_dir(&dir)
        .env_remove("EARSHOT_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("run.err"))?)
        .status()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.success(),
        "earshot run failed: see {}",
        dir.display()
    );
    let (postgres, connection) =
        tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let rows: i64 = postgres
        .query_one("SELECT count(*) FROM mentions", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        rows == sizes.pipeline as i64,
        "{rows} of {} mentions in PostgreSQL after the embedded run",
        sizes.pipeline
    );
    std::fs::remove_dir_all(&dir).ok();
    println!("embedded: {} mentions in {secs:.1} s", sizes.pipeline);
    Ok(json!({
        "mentions": sizes.pipeline,
        "secs": secs,
        "per_sec": sizes.pipeline as f64 / secs,
    }))
}

// ---------------------------------------------------------------------------------------------
// Shared pieces.

use earshot_core::Config;

fn kafka_config(run: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: kafka_bootstrap(),
        group_prefix: run.to_owned(),
        ..KafkaConfig::default()
    }
}

/// The demo's watchlists and brand routes, plus a route that alerts the webhook on every
/// mention from an account with more than 400,000 followers (the latency run's mentions).
fn pipeline_yaml(webhook: &str) -> String {
    format!(
        r##"
telemetry:
  listen: "127.0.0.1:0"
  log_level: "warn"
enricher:
  watchlists:
    - name: lumora
      terms: ["Lumora", "#lumora", "@Lumora", "Lumora Halo", "Lumora Strip"]
    - name: brewtide
      terms: ["Brewtide", "#brewtide", "@Brewtide"]
    - name: parcelly
      terms: ["Parcelly", "#parcelly", "@Parcelly", "@ParcellySupport", "#ParcellyDown", "#ParcellyOutage"]
    - name: parcelly-outage
      query: '(parcelly OR #parcellydown OR #parcellyoutage) AND (outage OR down OR erroring OR breach OR #parcellydown OR #parcellyoutage) NOT giveaway'
router:
  receivers:
    - name: bench-hook
      webhook:
        url: "http://{webhook}/hook"
        allow_private: true
  routes:
    - name: lumora-celebrity
      watchlist: lumora
      score: reach
      threshold: 400000
      receiver: bench-hook
    - name: parcelly-influencer
      watchlist: parcelly
      score: reach
      threshold: 50000
      receiver: bench-hook
    - name: brewtide-strong-match
      watchlist: brewtide
      score: relevance
      threshold: 0.75
      matchers: ["spam_score < 0.5"]
      receiver: bench-hook
"##
    )
}

fn services_config_yaml(
    run: &str,
    kafka: &KafkaConfig,
    webhook: &str,
    ingest_port: u16,
    postgres_url: &str,
) -> String {
    format!(
        r#"{pipeline}
collector:
  http:
    listen: "127.0.0.1:{ingest_port}"
    token_env: EARSHOT_BENCH_TOKEN
kafka:
  bootstrap_servers: "{bootstrap}"
  group_prefix: "{group}"
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "{run}.deadletter"
  checkpoints: "{run}.checkpoints"
  source_health: "{run}.source-health"
sink:
  postgres:
    url: "{postgres_url}"
"#,
        pipeline = pipeline_yaml(webhook),
        bootstrap = kafka.bootstrap_servers,
        group = kafka.group_prefix,
    )
}

/// `count` mentions cycled from the bundled sample (realistic texts of the demo's three brands,
/// with their authors and engagement), each with its own native id. With `followers`, every
/// mention names Lumora and comes from an account that large, and the sample's spam is left
/// out (the enricher of the bench's configuration scores it; spam pages nobody), so that each
/// raises one alert.
fn generated_mentions(count: usize, run: &str, followers: Option<i64>) -> Vec<Mention> {
    let source = Source {
        kind: "bench".into(),
        instance: "generated".into(),
    };
    let sample: Vec<Mention> = earshot::embedded::SAMPLE
        .lines()
        .map(|line| {
            earshot_collector::ingest::parse_item(
                earshot_collector::ingest::RawItem::Line(line),
                &source,
            )
            .expect("the bundled sample is valid")
        })
        .collect();
    let sample: Vec<Mention> = match followers {
        None => sample,
        Some(followers) => {
            let config = earshot_core::config::Config::load(ConfigSources {
                defaults_yaml: Some(&pipeline_yaml("127.0.0.1:9")),
                ..ConfigSources::default()
            })
            .expect("the bench's configuration is valid");
            let enricher = earshot_enricher::Enricher::new(&config.enricher);
            sample
                .into_iter()
                .map(|mut mention| {
                    mention.text = format!("Lumora {}", mention.text);
                    mention.author.followers = Some(followers);
                    mention
                })
                .filter(|mention| {
                    let spam = enricher
                        .enrich(mention.clone())
                        .iter()
                        .map(|e| e.spam_score)
                        .fold(0.0, f64::max);
                    spam < config.router.spam_threshold.0
                })
                .collect()
        }
    };
    (0..count)
        .map(|i| {
            let mut mention = sample[i % sample.len()].clone();
            mention.native_id = format!("{run}-{i}");
            mention.id = earshot_core::model::mention_id(&mention.source.kind, &mention.native_id);
            mention
        })
        .collect()
}

/// The ingest format of each mention, one JSON line each.
fn lines(mentions: &[Mention]) -> Vec<String> {
    mentions
        .iter()
        .map(|m| {
            json!({
                "native_id": m.native_id,
                "source": {"kind": m.source.kind, "instance": m.source.instance},
                "url": m.url,
                "author": {"handle": m.author.handle, "name": m.author.name,
                           "followers": m.author.followers, "verified": m.author.verified},
                "text": m.text,
                "lang": m.lang_hint,
                "engagement": {"likes": m.engagement.likes, "reposts": m.engagement.reposts,
                               "replies": m.engagement.replies},
                "has_media": m.has_media,
            })
            .to_string()
        })
        .collect()
}

/// Posts `lines` in batches of `batch` over `connections` concurrent connections; every
/// request must be answered 202.
async fn post_batches(
    port: u16,
    lines: Vec<String>,
    batch: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let bodies: Vec<String> = lines.chunks(batch).map(|c| c.join("\n")).collect();
    let queue = Arc::new(Mutex::new(bodies));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, queue) = (client.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return Ok::<(), anyhow::Error>(());
                };
                let response = client
                    .post(format!("http://127.0.0.1:{port}/v1/mentions"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 202,
                    "ingest answered {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

async fn wait_rows<F, Fut>(count_rows: &F, expected: i64, timeout: Duration) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let rows = count_rows().await;
        if rows >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{rows} of {expected} mentions in PostgreSQL after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook endpoint that notes when each mention's alert arrives (by native id).
async fn latency_receiver() -> (SocketAddr, Arc<Mutex<HashMap<String, Instant>>>) {
    type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;
    let arrivals: Arrivals = Arc::default();
    async fn handle(State(arrivals): State<Arrivals>, Json(body): Json<Value>) -> StatusCode {
        let now = Instant::now();
        // The delivery's `mention` is the enriched mention, which holds the mention.
        let Some(native_id) = body["mention"]["mention"]["native_id"].as_str() else {
            return StatusCode::BAD_REQUEST;
        };
        arrivals
            .lock()
            .unwrap()
            .entry(native_id.to_owned())
            .or_insert(now);
        StatusCode::OK
    }
    let app = Router::new()
        .route("/hook", post(handle))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, arrivals)
}

fn spawn_service(
    earshot: &Path,
    service: &str,
    config: &Path,
    dir: &Path,
) -> anyhow::Result<Child> {
    let log = |suffix: &str| std::fs::File::create(dir.join(format!("{service}.{suffix}")));
    Ok(Command::new(earshot)
        .arg(service)
        .arg("--config")
        .arg(config)
        .env("EARSHOT_BENCH_TOKEN", TOKEN)
        .env_remove("EARSHOT_CONFIG")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log("out")?)
        .stderr(log("err")?)
        .spawn()?)
}

fn stop(child: &mut Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ingest endpoint did not open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `VmHWM` of a process, in KiB: its peak resident set size.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds (user + system) of each thread of process `pid` by thread name, busiest first;
/// threads of one name (tokio's workers, for instance) are summed.
fn thread_cpu_secs(pid: u32) -> Value {
    let mut by_name: HashMap<String, f64> = HashMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().to_string();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        *by_name.entry(name).or_default() += cpu_secs(&format!("{pid}/task/{tid}"));
    }
    let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    Value::Array(
        threads
            .into_iter()
            .map(|(name, secs)| json!([name, secs]))
            .collect(),
    )
}

/// Milliseconds at quantile `q` (nearest rank); `None` when it falls on `Duration::MAX` (a
/// record that never arrived).
fn percentile(values: &mut [Duration], q: f64) -> Option<f64> {
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let value = values[rank - 1];
    (value < Duration::MAX).then_some(value.as_secs_f64() * 1_000.0)
}

fn median_index(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[order.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// User + system CPU seconds of this process (all threads), from `/proc/self/stat`.
fn process_cpu_secs() -> f64 {
    cpu_secs("self")
}

/// User + system CPU seconds of process `pid` (all threads), from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
    (ticks(11) + ticks(12)) / 100.0
}
