//! What the restart tests share: a collector against the real Kafka of `scripts/test`, with
//! topics of its own, started and stopped through `run_with`, and a reader of its raw topic.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use earshot_core::bus::Subscription;
use earshot_core::kafka::KafkaSubscription;
use earshot_core::model::Mention;
use earshot_core::telemetry::{Health, Metrics};
use earshot_core::{Config, Services};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A name of this run's own.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A collector configuration on real Kafka with topics and groups named after `run`, polite
/// settings fast enough for tests, and no source yet.
pub fn kafka_config(run: &str) -> Config {
    let mut config = Config::default();
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
    let politeness = &mut config.collector.politeness;
    politeness.per_host_interval_ms = 0;
    politeness.initial_backoff_ms = 20;
    politeness.max_backoff_ms = 200;
    config
}

/// A running collector process (in this test process).
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), earshot_collector::CollectorError>>,
}

impl Running {
    pub async fn start(config: &Config) -> Running {
        let shutdown = CancellationToken::new();
        let services = Services::kafka(config.clone()).await.unwrap();
        let task = tokio::spawn(earshot_collector::run_with(services, shutdown.clone()));
        Running { shutdown, task }
    }

    /// SIGTERM: each source stops once what it emitted is acknowledged and checkpointed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the collector stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

pub async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every mention on the raw topic, in topic order per partition, read by a fresh group until
/// `distinct` different ids came and then nothing more for two seconds (so that duplicates
/// show).
pub async fn raw_mentions(config: &Config, distinct: usize) -> Vec<Mention> {
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
    let mut mentions: Vec<Mention> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        let wait = Duration::from_secs(if ids.len() >= distinct { 2 } else { 1 });
        match tokio::time::timeout(wait, reader.recv()).await {
            Ok(Some(Ok(record))) => {
                let mention = services
                    .codecs
                    .mention
                    .decode(&record.payload.unwrap())
                    .await
                    .unwrap();
                ids.insert(mention.id);
                mentions.push(mention);
            }
            Ok(other) => panic!("consuming failed: {:?}", other.map(|r| r.err())),
            Err(_) if ids.len() >= distinct => break,
            Err(_) => {}
        }
    }
    mentions
}

/// Native ids, sorted (duplicates kept).
pub fn native_ids(mentions: &[Mention]) -> Vec<String> {
    let mut ids: Vec<String> = mentions.iter().map(|m| m.native_id.clone()).collect();
    ids.sort();
    ids
}
