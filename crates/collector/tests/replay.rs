//! NDJSON replay into real Kafka (started by `scripts/test`): every good line on the raw topic
//! in the file's order, a retraction under its post's id, every bad line in the dead-letter
//! topic with its line number, the summary counting what was acknowledged, and a paced replay
//! stopped by shutdown having published exactly what it reports.

mod common;

use std::time::{Duration, Instant};

use common::{kafka_config, raw_mentions, unique};
use earshot_collector::{Collector, ReplaySummary};
use earshot_core::bus::{headers, InRecord, Subscription};
use earshot_core::kafka::KafkaSubscription;
use earshot_core::telemetry::{Health, Metrics};
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

const LINES: usize = 1_500;
/// Line numbers (1-based) that are not mentions.
const BLANK_LINE: usize = 7;
const NOT_JSON_LINE: usize = 10;
const NO_TEXT_LINE: usize = 700;
/// Retracts the post of line 1.
const RETRACTION_LINE: usize = 1_200;

fn line(number: usize) -> String {
    match number {
        BLANK_LINE => "   ".into(),
        NOT_JSON_LINE => "not json".into(),
        NO_TEXT_LINE => r#"{"native_id": "no-text", "author": {"handle": "@a"}}"#.into(),
        RETRACTION_LINE => serde_json::json!({
            "native_id": "post-1",
            "source": {"kind": "x", "instance": "replay-test"},
            "author": {"handle": "@user1"},
            "deleted_at": "2026-11-23T10:00:00Z",
        })
        .to_string(),
        n => serde_json::json!({
            "native_id": format!("post-{n}"),
            "source": {"kind": "x", "instance": "replay-test"},
            "author": {"handle": format!("@user{n}")},
            "text": format!("Acme order #{n} is late"),
            "created_at": "2026-11-23T09:00:00Z",
        })
        .to_string(),
    }
}

/// One partition, so that the raw topic's order is the order of publication.
fn config(run: &str) -> Config {
    let mut config = kafka_config(run);
    config.kafka.topic_partitions = 1;
    // Fewer than a chunk's records in flight: every chunk waits for the one before.
    config.kafka.max_in_flight = 300;
    config
}

/// The first `count` records of `topic`, read from the start by a group of its own.
async fn read_records(config: &Config, topic: &str, count: usize) -> Vec<InRecord> {
    let health = Health::new(Duration::from_secs(60));
    let mut reader = KafkaSubscription::new(
        &config.kafka,
        &unique("reader"),
        &[topic],
        Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("broker"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut records = Vec::new();
    while records.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.recv()).await {
            Ok(Some(Ok(record))) => records.push(record),
            Ok(other) => panic!("consuming failed: {:?}", other.map(|r| r.err())),
            Err(_) => panic!("{} of {count} records of {topic} came", records.len()),
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_publishes_good_lines_in_order_and_dead_letters_bad_ones_with_their_line() {
    let run = unique("replay");
    let config = config(&run);
    let services = Services::kafka(config.clone()).await.unwrap();
    let collector = Collector::new(&services).unwrap();
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mentions.ndjson");
    let text: Vec<String> = (1..=LINES).map(line).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();

    let summary = collector
        .replay(&path, 0, CancellationToken::new())
        .await
        .unwrap();
    let mentions = LINES - 3; // all but the blank, the not-JSON and the textless line
    assert_eq!(
        summary,
        ReplaySummary {
            sent: mentions as u64,
            rejected: 2
        }
    );

    // The retraction shares its post's id, so one distinct id fewer than mentions.
    let raw = raw_mentions(&config, mentions - 1).await;
    let published: Vec<&str> = raw.iter().map(|m| m.native_id.as_str()).collect();
    let expected: Vec<String> = (1..=LINES)
        .filter(|n| ![BLANK_LINE, NOT_JSON_LINE, NO_TEXT_LINE].contains(n))
        .map(|n| match n {
            RETRACTION_LINE => "post-1".to_owned(),
            n => format!("post-{n}"),
        })
        .collect();
    assert_eq!(
        published, expected,
        "every good line once, in the file's order"
    );
    let retraction = raw
        .iter()
        .find(|m| m.deleted_at.is_some())
        .expect("the retraction is on the raw topic");
    assert_eq!(retraction.id, raw[0].id, "under its post's id");
    assert_eq!(retraction.text, "");

    let dead = read_records(&config, &config.topics.deadletter, 2).await;
    let header = |record: &InRecord, name: &str| {
        String::from_utf8(record.header(name).unwrap().to_vec()).unwrap()
    };
    let found: Vec<(String, String, String)> = dead
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.payload.clone().unwrap().to_vec()).unwrap(),
                header(r, headers::DLQ_SOURCE_OFFSET),
                header(r, headers::DLQ_SOURCE_TOPIC),
            )
        })
        .collect();
    let file = format!("file:{}", path.display());
    assert_eq!(
        found,
        [
            (line(NOT_JSON_LINE), "10".to_owned(), file.clone()),
            (line(NO_TEXT_LINE), "700".to_owned(), file),
        ]
    );
    assert!(
        header(&dead[1], headers::DLQ_ERROR).starts_with("line 700: text is missing"),
        "{}",
        header(&dead[1], headers::DLQ_ERROR)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_replay_stops_at_shutdown_with_what_it_reports_published() {
    let run = unique("replay_stop");
    let config = config(&run);
    let services = Services::kafka(config.clone()).await.unwrap();
    let collector = Collector::new(&services).unwrap();
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mentions.ndjson");
    let text: Vec<String> = (100_001..=100_000 + LINES).map(line).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
    });
    // 100 a second: far from the whole file when shutdown comes.
    let summary = tokio::time::timeout(
        Duration::from_secs(30),
        collector.replay(&path, 100, shutdown),
    )
    .await
    .expect("the replay stops at shutdown")
    .unwrap();
    assert!(
        summary.sent > 0 && summary.sent < LINES as u64,
        "{summary:?}"
    );
    let raw = raw_mentions(&config, summary.sent as usize).await;
    assert_eq!(
        raw.len() as u64,
        summary.sent,
        "what the summary counts, and nothing more, is on the raw topic"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
