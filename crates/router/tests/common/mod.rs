//! What the router tests share: the alert they deliver (`mention`), publishing enriched
//! copies on the in-memory bus or Kafka, and a router running in-process on Kafka.

// Each test file uses part of it.
#![allow(dead_code)]

mod mention;

pub use mention::acme_alert;

use earshot_core::model::EnrichedMention;

/// Publishes an enriched copy on the in-memory bus, keyed by its watchlist, as the enricher
/// would.
pub async fn publish_memory(
    bus: &earshot_core::memory::MemoryBus,
    services: &earshot_core::Services,
    enriched: &EnrichedMention,
) {
    publish_with(bus.publisher(), services, enriched).await;
}

/// Publishes an enriched copy on Kafka, keyed by its watchlist, as the enricher would.
pub async fn publish_kafka(services: &earshot_core::Services, enriched: &EnrichedMention) {
    publish_with(
        services.publisher("router-test").unwrap(),
        services,
        enriched,
    )
    .await;
}

async fn publish_with(
    publisher: std::sync::Arc<dyn earshot_core::bus::Publisher>,
    services: &earshot_core::Services,
    enriched: &EnrichedMention,
) {
    let payload = services.codecs.enriched.encode(enriched).unwrap();
    publisher
        .publish(earshot_core::bus::OutRecord {
            topic: std::sync::Arc::from(services.config.topics.enriched.as_str()),
            key: Some(bytes::Bytes::from(enriched.watchlist.clone())),
            payload: bytes::Bytes::from(payload),
            headers: vec![],
        })
        .await
        .await
        .unwrap();
}

/// The configuration of a test against the Kafka of `KAFKA_BOOTSTRAP_SERVERS`: topics and
/// consumer groups of their own (`run`), two partitions per topic.
pub fn kafka_config(run: &str) -> earshot_core::Config {
    let mut config = earshot_core::Config::default();
    config.kafka.bootstrap_servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    );
    config.kafka.create_topics = true;
    config.kafka.topic_partitions = 2;
    config.kafka.group_prefix = run.to_owned();
    config.kafka.drain_timeout_ms = 10_000;
    config.kafka.session_timeout_ms = 6_000;
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");
    config.topics.checkpoints = format!("{run}.checkpoints");
    config.topics.source_health = format!("{run}.health");
    config.topics.router_state = format!("{run}.router-state");
    config
}

/// `prefix` and a random suffix: names of one test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A router running in-process on Kafka.
pub struct Running {
    pub services: earshot_core::Services,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), earshot_router::RouterError>>,
}

impl Running {
    /// Starts a router on Kafka with `config`.
    pub async fn start(config: earshot_core::Config) -> Running {
        let services = earshot_core::Services::kafka(config)
            .await
            .expect("Kafka services");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));
        Running {
            services,
            shutdown,
            task,
        }
    }

    /// The records it has read.
    pub fn received(&self) -> u64 {
        self.services
            .metrics
            .received
            .with_label_values(&["router"])
            .get()
    }

    /// The alerts it has published.
    pub fn sent(&self) -> u64 {
        self.services
            .metrics
            .sent
            .with_label_values(&["router"])
            .get()
    }

    /// Whether its consumer is assigned partition `partition` of the enriched topic now.
    pub fn owns(&self, partition: i32) -> bool {
        self.services
            .owned
            .owns(&self.services.config.topics.enriched, partition)
    }

    /// Drops it without a graceful stop, as a crashed replica leaves its work: its task is
    /// aborted, so nothing in flight is drained, no spike state saved, no offset committed
    /// at shutdown (librdkafka still leaves the group as the consumer is dropped).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops it and waits for a graceful stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the router stops")
            .unwrap()
            .expect("a graceful stop");
    }
}
