//! Kafka wiring: the only module that talks to rdkafka. Producer and consumer builders with
//! Earshot's delivery settings and its security settings (TLS and SASL, secrets from
//! environment variables or files), the [`Publisher`] and [`Subscription`] implementations the
//! stage runner uses, topic provisioning, and the client context that commits on rebalance,
//! tracks readiness and exports consumer lag.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::future_producer::{DeliveryFuture, OwnedDeliveryResult};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;

use crate::bus::{Ack, BatchAck, BusError, InRecord, OutRecord, Publisher, Subscription};
use crate::config::KafkaConfig;
use crate::telemetry::{Metrics, ReadyFlag};

fn base_config(config: &KafkaConfig) -> Result<ClientConfig, BusError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    client.set(
        "message.max.bytes",
        (config.max_message_bytes + 64 * 1024).to_string(),
    );
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    for (key, variable) in &config.secret_properties_env {
        // The value is a secret: errors name the variable, never the value.
        let value = std::env::var(variable).map_err(|_| {
            BusError::Consume(format!(
                "kafka.secret_properties_env.{key}: environment variable {variable} is not set"
            ))
        })?;
        client.set(key, value);
    }
    for (key, path) in &config.secret_properties_file {
        client.set(key, read_secret_file(key, path)?);
    }
    Ok(client)
}

/// The producer settings of every stage: idempotent, acks=all (ordered, nothing lost), lz4,
/// linger 5 ms, a bounded queue. Also the benchmarks' baselines, so that they compare like
/// with like.
fn producer_settings(config: &KafkaConfig, client_id: &str) -> Result<ClientConfig, BusError> {
    let mut client = base_config(config)?;
    client
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", config.message_timeout_ms.to_string())
        .set(
            "queue.buffering.max.kbytes",
            config.producer_queue_max_kbytes.to_string(),
        )
        .set("statistics.interval.ms", "5000");
    Ok(client)
}

/// Records per partition the consumer prefetches, at most (see [`consumer_settings`]).
const QUEUED_MIN_MESSAGES: usize = 5_000;

/// The consumer settings of every stage (see [`KafkaSubscription`]); also the benchmarks'.
fn consumer_settings(config: &KafkaConfig, group: &str) -> Result<ClientConfig, BusError> {
    let mut client = base_config(config)?;
    client
        .set("group.id", group)
        .set("client.id", group)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            config.commit_interval_ms.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "queued.max.messages.kbytes",
            config.consumer_queue_max_kbytes.to_string(),
        )
        // Prefetch per partition stops at this many records (librdkafka's default is
        // 100,000, which for small records only `queued.max.messages.kbytes` bounds, and
        // that counts payload bytes, not the few hundred bytes each record costs besides).
        // At 100,000 records a second this is still tens of milliseconds ahead. The next
        // fetch of a partition whose queue is full (by count or by bytes) is postponed 10 ms,
        // not librdkafka's 1 s, which starves a small queue.
        .set("queued.min.messages", QUEUED_MIN_MESSAGES.to_string())
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "fetch.message.max.bytes",
            (config.max_message_bytes + 64 * 1024).to_string(),
        )
        // A record batch larger than the fetch limits still comes whole (the broker returns
        // the first batch of a fetch whatever its size, so that the consumer progresses);
        // librdkafka's receive limit (`receive.message.max.bytes`, 100 MB by default) bounds
        // it. Such a record is handed over without its payload (see `KafkaSubscription`).
        .set("statistics.interval.ms", "5000");
    Ok(client)
}

/// Reads a secret property from a file (a mounted Secret). Errors name the property and the
/// path, never the content; trailing whitespace (the newline editors add) is not part of it.
fn read_secret_file(key: &str, path: &std::path::Path) -> Result<String, BusError> {
    let problem = |reason: String| {
        BusError::Consume(format!(
            "kafka.secret_properties_file.{key}: {}: {reason}",
            path.display()
        ))
    };
    let content = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let value = content.trim_end();
    if value.is_empty() {
        return Err(problem("the file is empty".into()));
    }
    Ok(value.to_owned())
}

/// A producer with the delivery settings every stage uses: idempotent, acks=all, ordered.
pub struct KafkaPublisher {
    producer: FutureProducer<PublisherContext>,
}

/// Tracks whether the producer reaches a broker, for `/readyz`.
pub struct PublisherContext {
    client_id: String,
    broker_reachable: ReadyFlag,
}

impl ClientContext for PublisherContext {
    fn stats(&self, statistics: Statistics) {
        self.broker_reachable
            .set(statistics.brokers.values().any(|b| b.state == "UP"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.broker_reachable.set(false);
        }
        tracing::warn!(client = %self.client_id, %error, reason, "Kafka producer error");
    }
}

impl KafkaPublisher {
    /// A producer; `broker_reachable` starts true and follows librdkafka's view of the brokers.
    pub fn new(
        config: &KafkaConfig,
        client_id: &str,
        broker_reachable: ReadyFlag,
    ) -> Result<Self, BusError> {
        broker_reachable.set(true);
        let context = PublisherContext {
            client_id: client_id.to_owned(),
            broker_reachable,
        };
        let producer = producer_settings(config, client_id)?
            .create_with_context(context)
            .map_err(|e| BusError::Publish {
                topic: "*".into(),
                reason: format!("creating the producer failed: {e}"),
            })?;
        Ok(KafkaPublisher { producer })
    }
}

impl KafkaPublisher {
    /// Hands `record` to librdkafka, waiting only while its queue is full.
    async fn enqueue(&self, record: &OutRecord) -> Result<DeliveryFuture, BusError> {
        let mut kafka_headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            kafka_headers = kafka_headers.insert(Header {
                key: name,
                value: Some(value.as_ref()),
            });
        }
        let mut future_record = FutureRecord::to(&record.topic)
            .payload(record.payload.as_ref())
            .headers(kafka_headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_ref());
        }
        loop {
            match self.producer.send_result(future_record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), refused)) => {
                    // Backpressure: wait for deliveries to free the queue, then send the same
                    // record again.
                    future_record = refused;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(publish_error(&record.topic, &error)),
            }
        }
    }
}

/// What became of one record librdkafka took.
fn delivered(
    topic: &str,
    result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(), BusError> {
    delivered_at(topic, result).map(|_| ())
}

/// What became of one record librdkafka took: its offset once written.
fn delivered_at(
    topic: &str,
    result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<i64, BusError> {
    match result {
        Ok(Ok(delivery)) => Ok(delivery.offset),
        Ok(Err((error, _))) => Err(publish_error(topic, &error)),
        Err(_) => Err(BusError::Publish {
            topic: topic.to_owned(),
            reason: "the producer was dropped".into(),
        }),
    }
}

impl Publisher for KafkaPublisher {
    fn publish(&self, record: OutRecord) -> BoxFuture<'_, Ack> {
        Box::pin(async move {
            match self.enqueue(&record).await {
                Ok(delivery) => {
                    let topic = record.topic;
                    Box::pin(delivery.map(move |result| delivered(&topic, result))) as Ack
                }
                Err(error) => Box::pin(async move { Err(error) }) as Ack,
            }
        })
    }

    fn publish_all(&self, records: Vec<OutRecord>) -> BoxFuture<'_, BatchAck> {
        Box::pin(async move {
            let mut deliveries = Vec::with_capacity(records.len());
            for record in records {
                let delivery = self.enqueue(&record).await;
                deliveries.push((record.topic, delivery));
            }
            // Awaited in order: by the time the first is acknowledged most of the others are
            // too, so the waiting task wakes a few times per batch, not once per record.
            let all: BatchAck = Box::pin(async move {
                let mut results = Vec::with_capacity(deliveries.len());
                for (topic, delivery) in deliveries {
                    results.push(match delivery {
                        Ok(delivery) => delivered(&topic, delivery.await),
                        Err(error) => Err(error),
                    });
                }
                results
            });
            all
        })
    }

    fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer.flush(timeout).map_err(|e| BusError::Publish {
            topic: "*".into(),
            reason: format!("flush: {e}"),
        })
    }
}

/// Tells a record the broker or client refuses (retrying cannot help) from a failure to
/// reach the broker (the service stops and restarts from its last commit).
fn publish_error(topic: &str, error: &KafkaError) -> BusError {
    let reason = error.to_string();
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord,
        ) => BusError::Rejected {
            topic: topic.to_owned(),
            reason,
        },
        _ => BusError::Publish {
            topic: topic.to_owned(),
            reason,
        },
    }
}

/// Client context of Earshot's consumers.
pub struct EarshotContext {
    group: String,
    metrics: Metrics,
    joined: ReadyFlag,
    broker_reachable: ReadyFlag,
    owned: crate::bus::OwnedPartitions,
}

impl ClientContext for EarshotContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, topic_stats) in &statistics.topics {
            for (partition, stats) in &topic_stats.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&self.group, topic, &partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.broker_reachable.set(up);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.broker_reachable.set(false);
        }
        tracing::warn!(group = %self.group, %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for EarshotContext {
    /// A revocation is told before librdkafka lets go of the partitions (and commits their
    /// stored offsets): the stage stops acting for them, and lets go of their state, before
    /// this member rejoins the group and another one can be assigned them.
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked = topic_partitions_of(partitions);
            tracing::info!(group = %self.group, partitions = ?revoked, "partitions revoked");
            self.owned.revoke_all(revoked);
        }
    }

    /// An assignment is told once librdkafka took it, before any of its records is read.
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned = topic_partitions_of(partitions);
                tracing::info!(group = %self.group, partitions = ?assigned, "partitions assigned");
                self.owned.assign_all(assigned);
                self.joined.set(true);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, %error, "rebalance error")
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if let Err(error) = result {
            if !matches!(
                error,
                KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)
            ) {
                tracing::warn!(group = %self.group, %error, "offset commit failed");
            }
        }
    }
}

/// The topics and partitions of a rebalance's list.
fn topic_partitions_of(list: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

/// A consumer-group member with auto offset store off: offsets are stored by the runner and
/// committed in the background every `commit_interval_ms`, and at shutdown. With auto commit
/// on, librdkafka itself commits the stored offsets of revoked partitions before a rebalance
/// hands them over (tested in `tests/tests/services.rs`), so no commit is needed in the
/// rebalance callback.
///
/// A record whose payload is larger than `kafka.max_message_bytes` + 64 KiB, the bound of the
/// service's own producer and topics (a topic provisioned with a larger `max.message.bytes`,
/// or a compressible record that fit the topic compressed) is handed over without its payload and with the [`crate::bus::headers::OVERSIZED`] header:
/// the runner dead-letters it (headers only) and stores its offset, so the stage never holds
/// the payload.
pub struct KafkaSubscription {
    consumer: StreamConsumer<EarshotContext>,
    max_payload: usize,
    /// The topic of the last record, shared by the records that follow from it.
    last_topic: Option<Arc<str>>,
}

impl KafkaSubscription {
    pub fn new(
        config: &KafkaConfig,
        group: &str,
        topics: &[&str],
        metrics: Metrics,
        joined: ReadyFlag,
        broker_reachable: ReadyFlag,
    ) -> Result<Self, BusError> {
        Self::tracking(
            config,
            group,
            topics,
            metrics,
            joined,
            broker_reachable,
            crate::bus::OwnedPartitions::default(),
        )
    }

    /// [`KafkaSubscription::new`], keeping `owned` up to date with the assignment and
    /// telling its listeners of each rebalance.
    pub fn tracking(
        config: &KafkaConfig,
        group: &str,
        topics: &[&str],
        metrics: Metrics,
        joined: ReadyFlag,
        broker_reachable: ReadyFlag,
        owned: crate::bus::OwnedPartitions,
    ) -> Result<Self, BusError> {
        broker_reachable.set(true);
        let context = EarshotContext {
            group: group.to_owned(),
            metrics,
            joined,
            broker_reachable,
            owned,
        };
        let consumer: StreamConsumer<EarshotContext> = consumer_settings(config, group)?
            .create_with_context(context)
            .map_err(|e| BusError::Consume(format!("creating the consumer failed: {e}")))?;
        consumer
            .subscribe(topics)
            .map_err(|e| BusError::Consume(format!("subscribing to {topics:?} failed: {e}")))?;
        Ok(KafkaSubscription {
            consumer,
            // The bound the service's own producer and topics have (see `base_config`).
            max_payload: config.max_message_bytes + 64 * 1024,
            last_topic: None,
        })
    }
}

impl Subscription for KafkaSubscription {
    fn recv(&mut self) -> BoxFuture<'_, Option<Result<InRecord, BusError>>> {
        Box::pin(async move {
            match self.consumer.recv().await {
                Ok(message) => {
                    let headers: Vec<(String, Bytes)> = message
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                // The oversized marker is this subscription's alone: one that
                                // came with the record is not believed.
                                .filter(|h| h.key != crate::bus::headers::OVERSIZED)
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        Bytes::copy_from_slice(h.value.unwrap_or_default()),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let size = message.payload_len();
                    let (payload, headers) = if size > self.max_payload {
                        let mut headers = headers;
                        headers.push((
                            crate::bus::headers::OVERSIZED.to_owned(),
                            Bytes::from(size.to_string()),
                        ));
                        (None, headers)
                    } else {
                        (message.payload().map(Bytes::copy_from_slice), headers)
                    };
                    let topic = match &self.last_topic {
                        Some(topic) if **topic == *message.topic() => topic.clone(),
                        _ => self.last_topic.insert(Arc::from(message.topic())).clone(),
                    };
                    Some(Ok(InRecord {
                        topic,
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(Bytes::copy_from_slice),
                        payload,
                        headers,
                    }))
                }
                Err(error) => Some(Err(BusError::Consume(error.to_string()))),
            }
        })
    }

    fn store_offset(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), BusError> {
        // librdkafka's store_offset takes the next offset to consume (the committed position).
        self.consumer
            .store_offset(topic, partition, next_offset - 1)
            .map_err(|e| {
                BusError::Commit(format!(
                    "storing offset {next_offset} of {topic}/{partition}: {e}"
                ))
            })
    }

    fn commit(&self) -> Result<(), BusError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(BusError::Commit(error.to_string())),
        }
    }
}

/// Creates the topics that do not exist yet (development and tests; production provisions
/// them with their retention and replication).
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), BusError> {
    if topics.is_empty() {
        // The admin API refuses an empty request.
        return Ok(());
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        base_config(config)?
            .create()
            .map_err(|e| BusError::Consume(format!("creating the admin client failed: {e}")))?;
    let max_bytes = (config.max_message_bytes + 64 * 1024).to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.topic_partitions,
                TopicReplication::Fixed(config.topic_replication_factor),
            )
            .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| BusError::Consume(format!("creating topics failed: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Consume(format!(
                    "creating topic {topic} failed: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Creates the topics that do not exist yet; the `compacted` ones with
/// `cleanup.policy=compact` (the collector's checkpoints keep only the latest value per key).
pub async fn ensure_topics_compacted(
    config: &KafkaConfig,
    topics: &[&str],
    compacted: &[&str],
) -> Result<(), BusError> {
    let plain: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| !compacted.contains(t))
        .collect();
    ensure_topics(config, &plain).await?;
    if compacted.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        base_config(config)?
            .create()
            .map_err(|e| BusError::Consume(format!("creating the admin client failed: {e}")))?;
    let new_topics: Vec<NewTopic<'_>> = compacted
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.topic_partitions,
                TopicReplication::Fixed(config.topic_replication_factor),
            )
            .set("cleanup.policy", "compact")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| BusError::Consume(format!("creating topics failed: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Consume(format!(
                    "creating topic {topic} failed: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// The collector's checkpoints in a compacted topic, and ownership of source instances
/// through a consumer group on that topic (see [`crate::checkpoint`]).
///
/// A background thread polls the group member; its rebalance callbacks run there, so the
/// revoke callback can block until the sources of the revoked partitions have stopped (and
/// saved what was acknowledged) before the partitions are handed over.
pub struct KafkaCheckpointStore {
    topic: String,
    partitions: i32,
    producer: FutureProducer,
    config: KafkaConfig,
    ownership: Arc<Ownership>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

struct Ownership {
    topic: String,
    state: std::sync::Mutex<OwnershipState>,
    /// Signalled when a lease is released.
    released: std::sync::Condvar,
    /// Wakes `acquire` callers when partitions are assigned.
    assigned: tokio::sync::Notify,
    /// How long a revoke waits for the sources of its partitions to stop.
    release_timeout: Duration,
    joined: ReadyFlag,
}

#[derive(Default)]
struct OwnershipState {
    assigned: std::collections::HashSet<i32>,
    /// Id and `lost` token of every lease, per partition.
    leases: std::collections::HashMap<i32, Vec<(u64, tokio_util::sync::CancellationToken)>>,
    next_lease: u64,
}

struct OwnershipContext(Arc<Ownership>);

impl ClientContext for OwnershipContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(topic = %self.0.topic, %error, reason, "Kafka checkpoint group error");
    }
}

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked: Vec<i32> = list
            .elements_for_topic(&self.0.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let mut state = self.0.state.lock().expect("poisoned");
        for partition in &revoked {
            state.assigned.remove(partition);
            for (_, lost) in state.leases.get(partition).into_iter().flatten() {
                lost.cancel();
            }
        }
        tracing::info!(partitions = ?revoked, "checkpoint partitions revoked; stopping their sources");
        let deadline = std::time::Instant::now() + self.0.release_timeout;
        while revoked
            .iter()
            .any(|p| state.leases.get(p).is_some_and(|l| !l.is_empty()))
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!(partitions = ?revoked, "sources did not stop in time; handing the partitions over anyway");
                break;
            }
            state = self
                .0
                .released
                .wait_timeout(state, left)
                .expect("poisoned")
                .0;
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned: Vec<i32> = list
                .elements_for_topic(&self.0.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(partitions = ?assigned, "checkpoint partitions assigned");
            self.0
                .state
                .lock()
                .expect("poisoned")
                .assigned
                .extend(assigned);
            self.0.joined.set(true);
            self.0.assigned.notify_waiters();
        }
    }
}

/// Releases a lease when the source that held it stops.
struct LeaseRelease {
    ownership: Arc<Ownership>,
    partition: i32,
    id: u64,
}

impl Drop for LeaseRelease {
    fn drop(&mut self) {
        let mut state = self.ownership.state.lock().expect("poisoned");
        if let Some(leases) = state.leases.get_mut(&self.partition) {
            leases.retain(|(id, _)| *id != self.id);
        }
        drop(state);
        self.ownership.released.notify_all();
    }
}

impl KafkaCheckpointStore {
    /// Joins `<group_prefix>-collector` on `topic` and starts the polling thread.
    pub async fn new(
        config: &KafkaConfig,
        topic: &str,
        client_id: &str,
        joined: ReadyFlag,
        release_timeout: Duration,
    ) -> Result<Self, BusError> {
        let producer = keyed_table_producer(config, topic, &format!("{client_id}-checkpoints"))?;
        let (client, metadata_topic) = (producer.clone(), topic.to_owned());
        let partitions = tokio::task::spawn_blocking(move || {
            topic_partitions(client.client(), &metadata_topic, "checkpoint")
        })
        .await
        .map_err(|e| BusError::Consume(format!("checkpoint metadata task failed: {e}")))??;
        let ownership = Arc::new(Ownership {
            topic: topic.to_owned(),
            state: Default::default(),
            released: std::sync::Condvar::new(),
            assigned: tokio::sync::Notify::new(),
            release_timeout,
            joined,
        });
        let group = format!("{}-collector", config.group_prefix);
        let consumer: rdkafka::consumer::BaseConsumer<OwnershipContext> = base_config(config)?
            .set("group.id", &group)
            .set("client.id", format!("{client_id}-owner"))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set("queued.max.messages.kbytes", "1024")
            .create_with_context(OwnershipContext(ownership.clone()))
            .map_err(|e| {
                BusError::Consume(format!("creating the checkpoint group member failed: {e}"))
            })?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| BusError::Consume(format!("subscribing to {topic} failed: {e}")))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("checkpoint-owner".into())
            .spawn(move || {
                // Messages are ignored: the group exists for its partition assignment. Polling
                // serves the rebalance callbacks.
                while !thread_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                // Leaving the group revokes every partition (after the sources stopped).
                consumer.unsubscribe();
                let _ = consumer.poll(Duration::from_millis(100));
            })
            .map_err(|e| BusError::Consume(format!("starting the checkpoint thread: {e}")))?;
        Ok(KafkaCheckpointStore {
            topic: topic.to_owned(),
            partitions,
            producer,
            config: config.clone(),
            ownership,
            stop,
        })
    }
}

impl Drop for KafkaCheckpointStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl crate::checkpoint::CheckpointStore for KafkaCheckpointStore {
    fn acquire(
        &self,
        key: &str,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'_, Option<crate::checkpoint::Lease>> {
        let partition = crate::checkpoint::partition_for(key, self.partitions);
        Box::pin(async move {
            loop {
                let notified = self.ownership.assigned.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut state = self.ownership.state.lock().expect("poisoned");
                    if state.assigned.contains(&partition) {
                        let lost = tokio_util::sync::CancellationToken::new();
                        state.next_lease += 1;
                        let id = state.next_lease;
                        state
                            .leases
                            .entry(partition)
                            .or_default()
                            .push((id, lost.clone()));
                        return Some(crate::checkpoint::Lease {
                            lost,
                            _release: Some(Box::new(LeaseRelease {
                                ownership: self.ownership.clone(),
                                partition,
                                id,
                            })),
                        });
                    }
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        })
    }

    fn load(&self, key: &str) -> BoxFuture<'_, Result<Option<Bytes>, BusError>> {
        let partition = crate::checkpoint::partition_for(key, self.partitions);
        let (topic, key, config) = (self.topic.clone(), key.to_owned(), self.config.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_latest(&config, &topic, partition, &key))
                .await
                .map_err(|e| BusError::Consume(format!("checkpoint read task failed: {e}")))?
        })
    }

    fn save(&self, key: &str, checkpoint: Bytes) -> BoxFuture<'_, Ack> {
        let partition = crate::checkpoint::partition_for(key, self.partitions);
        let ack = put_keyed(
            &self.producer,
            &self.topic,
            partition,
            key,
            Some(&checkpoint),
        );
        Box::pin(async move { ack })
    }
}

/// Reads `partition` of the checkpoint topic from its start to its current end; the last
/// value written for `key` wins (a tombstone clears it).
fn read_latest(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    key: &str,
) -> Result<Option<Bytes>, BusError> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = base_config(config)?
        .set(
            "group.id",
            format!("{}-checkpoint-reader", config.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| BusError::Consume(format!("creating the checkpoint reader failed: {e}")))?;
    let timeout = Duration::from_secs(30);
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| BusError::Consume(format!("watermarks of {topic}/{partition}: {e}")))?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(low))
        .map_err(|e| BusError::Consume(e.to_string()))?;
    consumer
        .assign(&assignment)
        .map_err(|e| BusError::Consume(format!("assigning {topic}/{partition}: {e}")))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut latest = None;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(BusError::Consume(format!(
                "reading {topic}/{partition} up to offset {high} timed out"
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if message.key() == Some(key.as_bytes()) {
                    latest = message.payload().map(Bytes::copy_from_slice);
                }
                if message.offset() + 1 >= high {
                    return Ok(latest);
                }
            }
            Some(Err(error)) => {
                return Err(BusError::Consume(format!(
                    "reading {topic}/{partition}: {error}"
                )))
            }
            None => {}
        }
    }
}

/// How many records of `topics` consumer group `group` has not committed yet: per partition,
/// the high watermark minus the committed offset (the low watermark when nothing is
/// committed), summed. Blocking; for checks and tools (the services export the same figure,
/// from librdkafka's statistics, as `earshot_consumer_lag_records`).
pub fn committed_lag(config: &KafkaConfig, group: &str, topics: &[&str]) -> Result<i64, BusError> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    // Not subscribed: it reads the group's committed offsets without joining the group.
    let consumer: BaseConsumer = base_config(config)?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| BusError::Consume(format!("creating the lag reader failed: {e}")))?;
    let timeout = Duration::from_secs(30);
    let mut partitions = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| BusError::Consume(format!("metadata of {topic}: {e}")))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), timeout)
                .map_err(|e| {
                    BusError::Consume(format!("watermarks of {topic}/{}: {e}", partition.id()))
                })?;
            partitions.add_partition(topic, partition.id());
            ends.push((topic.to_string(), partition.id(), low, high));
        }
    }
    let committed = consumer
        .committed_offsets(partitions, timeout)
        .map_err(|e| BusError::Consume(format!("committed offsets of {group}: {e}")))?;
    let mut lag = 0;
    for (topic, partition, low, high) in ends {
        let position = match committed
            .find_partition(&topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(offset)) => offset,
            _ => low,
        };
        lag += (high - position).max(0);
    }
    Ok(lag)
}

/// How long a service waits at start for a topic created a moment ago to show in the
/// metadata with a leader for every partition.
const TOPIC_WAIT: Duration = Duration::from_secs(60);

/// The partition count of `topic` (a `what` topic, for the error), once the metadata lists it
/// with a leader for every partition; waits up to [`TOPIC_WAIT`] for a topic created a moment
/// ago or a broker starting. Blocking.
fn topic_partitions<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    what: &str,
) -> Result<i32, BusError> {
    let deadline = std::time::Instant::now() + TOPIC_WAIT;
    loop {
        let found = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map(|m| {
                m.topics()
                    .first()
                    .filter(|t| t.error().is_none())
                    .filter(|t| {
                        t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0)
                    })
                    .map_or(0, |t| t.partitions().len() as i32)
            });
        match found {
            Ok(0) | Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(0) => {
                return Err(BusError::Consume(format!(
                    "{what} topic {topic} does not exist or has a partition without a leader (create it compacted, or set kafka.create_topics)"
                )))
            }
            Ok(n) => return Ok(n),
            Err(e) => return Err(BusError::Consume(format!("metadata of {topic}: {e}"))),
        }
    }
}

/// A keyed table in a compacted topic (see [`crate::table`]): a producer that writes each
/// key to the partition it is given, and a thread (not in any consumer group) that reads
/// every partition from the beginning and keeps following them.
///
/// [`crate::table::TableReader::read_to_end`] writes a mark (a tombstone under this
/// process's own key, which the reading thread never hands on) to the partition and waits
/// until the thread has read up to it: the mark lands after every write acknowledged before
/// it, whoever made them, and being a record it is seen whatever compaction left of the
/// records before it (a high watermark can lie beyond the last record left, and the end of a
/// partition reported before the call cannot be told from one reported after it).
pub struct KafkaTable {
    topic: String,
    partitions: i32,
    producer: FutureProducer,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// This process's mark key.
    mark_key: String,
    /// Each `read_to_end` call's mark, for the reading thread.
    marks: std::sync::mpsc::Sender<TableMark>,
}

/// The prefix of the marks' keys: a record under it is not an entry of the table.
const TABLE_MARK_PREFIX: &str = "earshot.table.mark/";

/// A mark written by `read_to_end`: resolved once the reading thread has read `offset` of
/// `partition` and handed on everything before it.
struct TableMark {
    partition: i32,
    offset: i64,
    done: tokio::sync::oneshot::Sender<()>,
}

impl KafkaTable {
    /// Opens `topic` (it must exist; compacted) and starts reading it.
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        client_id: &str,
    ) -> Result<crate::table::StateTable, BusError> {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::{Offset, TopicPartitionList};
        let producer = keyed_table_producer(config, topic, &format!("{client_id}-state"))?;
        let consumer: BaseConsumer<StateReaderContext> = base_config(config)?
            .set("group.id", format!("{}-state-reader", config.group_prefix))
            .set("client.id", format!("{client_id}-state-reader"))
            .set("enable.auto.commit", "false")
            // The end of a partition is the sure sign of having read it: compaction can leave
            // the last offsets below the high watermark empty.
            .set("enable.partition.eof", "true")
            .create_with_context(StateReaderContext(topic.to_owned()))
            .map_err(|e| BusError::Consume(format!("creating the state reader failed: {e}")))?;
        let (topic_owned, metadata_producer) = (topic.to_owned(), producer.clone());
        // Watermarks at opening: reading up to them is "caught up".
        let (consumer, partitions, highs) = tokio::task::spawn_blocking(move || {
            let partitions = topic_partitions(metadata_producer.client(), &topic_owned, "state")?;
            let deadline = std::time::Instant::now() + TOPIC_WAIT;
            let mut highs = Vec::new();
            let mut assignment = TopicPartitionList::new();
            for partition in 0..partitions {
                // A partition whose leader is being elected answers with an error for a
                // moment (a topic created a moment ago, a broker restarting).
                let high = loop {
                    match consumer.fetch_watermarks(
                        &topic_owned,
                        partition,
                        Duration::from_secs(10),
                    ) {
                        Ok((_, high)) => break high,
                        Err(_) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => {
                            return Err(BusError::Consume(format!(
                                "watermarks of {topic_owned}/{partition}: {e}"
                            )))
                        }
                    }
                };
                highs.push(high);
                assignment
                    .add_partition_offset(&topic_owned, partition, Offset::Beginning)
                    .map_err(|e| BusError::Consume(e.to_string()))?;
            }
            consumer
                .assign(&assignment)
                .map_err(|e| BusError::Consume(format!("assigning {topic_owned}: {e}")))?;
            Ok((consumer, partitions, highs))
        })
        .await
        .map_err(|e| BusError::Consume(format!("state metadata task failed: {e}")))??;
        let (sender, updates) = tokio::sync::mpsc::channel(4096);
        let (caught_up_sender, caught_up) = tokio::sync::watch::channel(false);
        let (marks, marks_read) = std::sync::mpsc::channel::<TableMark>();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("state-reader".into())
            .spawn(move || {
                use crate::table::TableItem;
                // Per partition, the next offset to read; caught up once each reaches the
                // high watermark seen at opening (or its end, whichever comes first).
                let mut positions = vec![0i64; highs.len()];
                let mut caught = false;
                let mut waiting: Vec<TableMark> = Vec::new();
                while !thread_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !caught && positions.iter().zip(&highs).all(|(at, high)| at >= high) {
                        caught = true;
                        let _ = caught_up_sender.send(true);
                    }
                    waiting.extend(marks_read.try_iter());
                    // The marks read past: everything before each went down the stream.
                    let mut index = 0;
                    while index < waiting.len() {
                        let mark = &waiting[index];
                        if positions
                            .get(mark.partition as usize)
                            .is_some_and(|at| *at > mark.offset)
                        {
                            let mark = waiting.swap_remove(index);
                            if sender.blocking_send(TableItem::ReadTo(mark.done)).is_err() {
                                return;
                            }
                        } else {
                            index += 1;
                        }
                    }
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            let partition = message.partition();
                            if let Some(at) = positions.get_mut(partition as usize) {
                                *at = message.offset() + 1;
                            }
                            let Some(key) = message.key() else { continue };
                            if key.starts_with(TABLE_MARK_PREFIX.as_bytes()) {
                                continue;
                            }
                            let update = crate::table::TableUpdate {
                                partition,
                                key: String::from_utf8_lossy(key).into_owned(),
                                value: message.payload().map(Bytes::copy_from_slice),
                            };
                            if sender.blocking_send(TableItem::Update(update)).is_err() {
                                return;
                            }
                        }
                        Some(Err(KafkaError::PartitionEOF(partition))) => {
                            if let (Some(at), Some(high)) = (
                                positions.get_mut(partition as usize),
                                highs.get(partition as usize),
                            ) {
                                *at = (*at).max(*high);
                            }
                        }
                        // Logged by the context (`StateReaderContext`).
                        Some(Err(_)) => {}
                        None => {}
                    }
                }
            })
            .map_err(|e| BusError::Consume(format!("starting the state reader: {e}")))?;
        let table = Arc::new(KafkaTable {
            topic: topic.to_owned(),
            partitions,
            producer,
            stop,
            mark_key: format!(
                "{TABLE_MARK_PREFIX}{client_id}/{}",
                uuid::Uuid::new_v4().simple()
            ),
            marks,
        });
        Ok(crate::table::StateTable {
            writer: table.clone(),
            reader: table,
            updates: crate::table::TableUpdates::new(updates),
            caught_up,
        })
    }
}

impl crate::table::TableReader for KafkaTable {
    fn read_to_end(&self, partition: i32) -> BoxFuture<'_, Result<(), BusError>> {
        let partition = partition.rem_euclid(self.partitions.max(1));
        Box::pin(async move {
            let mark = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(partition)
                .key(self.mark_key.as_bytes());
            let delivery = self
                .producer
                .send_result(mark)
                .map_err(|(error, _)| publish_error(&self.topic, &error))?;
            let offset = delivered_at(&self.topic, delivery.await)?;
            let (done, reached) = tokio::sync::oneshot::channel();
            self.marks
                .send(TableMark {
                    partition,
                    offset,
                    done,
                })
                .map_err(|_| BusError::Closed)?;
            reached.await.map_err(|_| BusError::Closed)
        })
    }
}

/// The state reader's client context: librdkafka reports reaching the end of a partition
/// as an error event, which is how the reader knows it has caught up, not a fault to log.
struct StateReaderContext(String);

impl ClientContext for StateReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(topic = %self.0, %error, reason, "Kafka state reader error");
        }
    }
}

impl ConsumerContext for StateReaderContext {}

impl Drop for KafkaTable {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl crate::table::TableWriter for KafkaTable {
    fn partitions(&self) -> i32 {
        self.partitions
    }

    fn put(&self, partition: i32, key: &str, value: Option<Bytes>) -> BoxFuture<'_, Ack> {
        let partition = partition.rem_euclid(self.partitions.max(1));
        let ack = put_keyed(&self.producer, &self.topic, partition, key, value.as_ref());
        Box::pin(async move { ack })
    }
}

/// The producer of a keyed, compacted topic (the collector's checkpoints, the router's
/// state): idempotent, acks=all, each write sent at once (no linger).
fn keyed_table_producer(
    config: &KafkaConfig,
    topic: &str,
    client_id: &str,
) -> Result<FutureProducer, BusError> {
    base_config(config)?
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", config.message_timeout_ms.to_string())
        .create()
        .map_err(|e| BusError::Publish {
            topic: topic.to_owned(),
            reason: format!("creating the producer of {topic} failed: {e}"),
        })
}

/// Writes `value` for `key` to `partition` of a keyed table topic (`None`: a tombstone);
/// the ack resolves once the write is durable.
fn put_keyed(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    value: Option<&Bytes>,
) -> Ack {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .key(key.as_bytes());
    if let Some(value) = value {
        record = record.payload(value.as_ref());
    }
    let topic = topic.to_owned();
    match producer.send_result(record) {
        Ok(delivery) => Box::pin(delivery.map(move |result| delivered(&topic, result))),
        Err((error, _)) => {
            let error = publish_error(&topic, &error);
            Box::pin(async move { Err(error) })
        }
    }
}

/// The benchmarks' baseline: a bare rdkafka producer with the settings of
/// [`KafkaPublisher`] (idempotent, acks=all, lz4, linger 5 ms) sending `records` (key,
/// payload, `traceparent` header) to `topic` as fast as its queue takes them, and waiting
/// for every acknowledgement. It lives here because only this module talks to rdkafka.
pub async fn produce_bare(
    config: &KafkaConfig,
    topic: &str,
    records: &[(Bytes, Bytes, Bytes)],
) -> Result<(), BusError> {
    let producer: FutureProducer = producer_settings(config, "earshot-bench-baseline")?
        .create()
        .map_err(|e| BusError::Publish {
            topic: topic.to_owned(),
            reason: format!("creating the producer failed: {e}"),
        })?;
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, payload, traceparent) in records {
        loop {
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: crate::bus::headers::TRACEPARENT,
                value: Some(traceparent.as_ref()),
            });
            let record = FutureRecord::to(topic)
                .key(key.as_ref())
                .payload(payload.as_ref())
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(publish_error(topic, &error)),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(publish_error(topic, &error)),
            Err(_) => {
                return Err(BusError::Publish {
                    topic: topic.to_owned(),
                    reason: "the producer was dropped".into(),
                })
            }
        }
    }
    Ok(())
}

/// The benchmark suite's baseline for a stage: a bare consume → produce passthrough with the
/// settings of [`KafkaSubscription`] and [`KafkaPublisher`]. Reads `count` records of `from`
/// as member of `group` (from the start), publishes each payload with its key and headers to
/// `to`, and stores each offset once its copy is acknowledged, keeping up to
/// `kafka.max_in_flight` copies in flight, as the stage runner does; returns when all `count`
/// copies are acknowledged.
pub async fn passthrough_bare(
    config: &KafkaConfig,
    group: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Result<(), BusError> {
    use futures::stream::{FuturesOrdered, StreamExt};
    let consumer: StreamConsumer = consumer_settings(config, group)?
        .create()
        .map_err(|e| BusError::Consume(format!("creating the consumer failed: {e}")))?;
    consumer
        .subscribe(&[from])
        .map_err(|e| BusError::Consume(format!("subscribing to {from} failed: {e}")))?;
    let producer: FutureProducer = producer_settings(config, "earshot-bench-passthrough")?
        .create()
        .map_err(|e| BusError::Publish {
            topic: to.to_owned(),
            reason: format!("creating the producer failed: {e}"),
        })?;
    let mut pending = FuturesOrdered::new();
    let (mut received, mut done) = (0, 0);
    while done < count {
        tokio::select! {
            biased;
            Some((partition, offset, result)) = pending.next(), if !pending.is_empty() => {
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => return Err(publish_error(to, &error)),
                    Err(_) => return Err(BusError::Publish { topic: to.to_owned(), reason: "the producer was dropped".into() }),
                }
                consumer
                    .store_offset(from, partition, offset)
                    .map_err(|e| BusError::Commit(format!("storing offset {offset} of {from}/{partition}: {e}")))?;
                done += 1;
            }
            message = consumer.recv(), if received < count && pending.len() < config.max_in_flight => {
                let message = message.map_err(|e| BusError::Consume(e.to_string()))?;
                received += 1;
                loop {
                    let mut record = FutureRecord::to(to).payload(message.payload().unwrap_or_default());
                    if let Some(key) = message.key() {
                        record = record.key(key);
                    }
                    if let Some(headers) = message.headers() {
                        record = record.headers(headers.detach());
                    }
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            let (partition, offset) = (message.partition(), message.offset());
                            pending.push_back(delivery.map(move |result| (partition, offset, result)));
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((error, _)) => return Err(publish_error(to, &error)),
                    }
                }
            }
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .map_err(|e| BusError::Commit(e.to_string()))?;
    Ok(())
}

/// The benchmark suite's latency baseline: one hop, a bare produce → consume round trip with
/// the settings of [`KafkaPublisher`] and [`KafkaSubscription`]. Joins a fresh group on
/// `topic`, then sends `count` records (an 8-byte sequence number, then `payload`) one every
/// `interval`, and returns the time from each send to its receipt, in send order.
pub async fn round_trip_bare(
    config: &KafkaConfig,
    topic: &str,
    payload: &[u8],
    count: usize,
    interval: Duration,
) -> Result<Vec<Duration>, BusError> {
    use std::sync::Mutex;
    use std::time::Instant;
    let group = format!("{}-round-trip", config.group_prefix);
    let consumer: StreamConsumer = consumer_settings(config, &group)?
        .set("auto.offset.reset", "latest")
        .create()
        .map_err(|e| BusError::Consume(format!("creating the consumer failed: {e}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| BusError::Consume(format!("subscribing to {topic} failed: {e}")))?;
    let producer: FutureProducer = producer_settings(config, "earshot-bench-round-trip")?
        .create()
        .map_err(|e| BusError::Publish {
            topic: topic.to_owned(),
            reason: format!("creating the producer failed: {e}"),
        })?;
    // Sequence numbers from `u64::MAX` down are warm-up records, sent until the group has
    // joined and one comes back.
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));
    let latencies: Arc<Mutex<Vec<Option<Duration>>>> = Arc::new(Mutex::new(vec![None; count]));
    let warm = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let (sent, latencies, warm) = (sent.clone(), latencies.clone(), warm.clone());
        async move {
            let mut received = 0;
            while received < count {
                let message = consumer
                    .recv()
                    .await
                    .map_err(|e| BusError::Consume(e.to_string()))?;
                let now = Instant::now();
                let Some(sequence) = message
                    .payload()
                    .and_then(|p| p.get(..8))
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                else {
                    continue;
                };
                if sequence >= count as u64 {
                    warm.store(true, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                if let Some(at) = sent.lock().expect("poisoned")[sequence as usize] {
                    latencies.lock().expect("poisoned")[sequence as usize] = Some(now - at);
                    received += 1;
                }
            }
            Ok::<(), BusError>(())
        }
    };
    let sender = async {
        let send = |sequence: u64| {
            let mut body = sequence.to_be_bytes().to_vec();
            body.extend_from_slice(payload);
            let key = sequence.to_string();
            producer
                .send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(&body))
                .map_err(|(error, _)| publish_error(topic, &error))
        };
        let mut warm_up = u64::MAX;
        while !warm.load(std::sync::atomic::Ordering::SeqCst) {
            drop(send(warm_up)?);
            warm_up -= 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = tokio::time::Instant::now();
        let mut acks = Vec::with_capacity(count);
        for sequence in 0..count {
            tokio::time::sleep_until(started + interval * sequence as u32).await;
            sent.lock().expect("poisoned")[sequence] = Some(Instant::now());
            acks.push(send(sequence as u64)?);
        }
        for ack in acks {
            if let Ok(Err((error, _))) = ack.await {
                return Err(publish_error(topic, &error));
            }
        }
        Ok::<(), BusError>(())
    };
    let (received, sent_all) = tokio::join!(receiver, sender);
    received?;
    sent_all?;
    let latencies = latencies.lock().expect("poisoned");
    Ok(latencies
        .iter()
        .map(|l| l.expect("every record received"))
        .collect())
}

/// Where topics end, for benchmarks that wait for a stage's output: one client, asked again
/// and again.
pub struct TopicEnds {
    client: rdkafka::consumer::BaseConsumer,
}

impl TopicEnds {
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let client = base_config(config)?
            .create()
            .map_err(|e| BusError::Consume(format!("creating the client failed: {e}")))?;
        Ok(TopicEnds { client })
    }

    /// The number of records written to `topic` so far: the sum of its partitions' high
    /// watermarks.
    pub fn end_offset(&self, topic: &str) -> Result<i64, BusError> {
        let timeout = Duration::from_secs(10);
        let metadata = self
            .client
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| BusError::Consume(format!("metadata of {topic}: {e}")))?;
        let mut total = 0;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (_, high) = self
                    .client
                    .fetch_watermarks(topic, partition.id(), timeout)
                    .map_err(|e| BusError::Consume(format!("watermarks of {topic}: {e}")))?;
                total += high;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::producer::BaseProducer;

    use super::*;

    fn kafka_config(
        properties: &[(&str, &str)],
        files: &[(&str, &std::path::Path)],
    ) -> KafkaConfig {
        KafkaConfig {
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret_properties_file: files
                .iter()
                .map(|(k, p)| (k.to_string(), p.to_path_buf()))
                .collect::<BTreeMap<_, _>>(),
            ..KafkaConfig::default()
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("earshot-kafka-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// librdkafka refuses `SSL`, `SASL_SSL` and the SCRAM mechanisms when it is built without
    /// OpenSSL ("OpenSSL not available at build time"); this build has it, so each combination
    /// gives a client. Nothing connects: creating a client does not reach a broker.
    #[test]
    fn tls_and_scram_clients_can_be_created() {
        let dir = temp_dir("scram");
        let password = dir.join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        for (protocol, mechanism) in [
            ("SSL", None),
            ("SASL_SSL", Some("SCRAM-SHA-512")),
            ("SASL_SSL", Some("SCRAM-SHA-256")),
            ("SASL_PLAINTEXT", Some("SCRAM-SHA-256")),
            ("SASL_SSL", Some("PLAIN")),
        ] {
            let mut properties = vec![("security.protocol", protocol)];
            let mut files = Vec::new();
            if let Some(mechanism) = mechanism {
                properties.push(("sasl.mechanism", mechanism));
                properties.push(("sasl.username", "earshot"));
                files.push(("sasl.password", password.as_path()));
            }
            let client = base_config(&kafka_config(&properties, &files)).unwrap();
            let created: Result<BaseProducer, _> = client.create();
            assert!(
                created.is_ok(),
                "{protocol} {mechanism:?}: {:?}",
                created.err()
            );
        }
    }

    #[test]
    fn secret_files_are_read_without_trailing_whitespace() {
        let dir = temp_dir("secret");
        let password = dir.join("password");
        std::fs::write(&password, "s3cret \n\n").unwrap();
        let client = base_config(&kafka_config(&[], &[("sasl.password", &password)])).unwrap();
        assert_eq!(client.get("sasl.password"), Some("s3cret"));
    }

    #[test]
    fn a_missing_or_empty_secret_file_is_named_without_its_content() {
        let dir = temp_dir("missing");
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let missing = dir.join("missing");
        for (path, reason) in [(&missing, "No such file"), (&empty, "the file is empty")] {
            let error = base_config(&kafka_config(&[], &[("sasl.password", path)]))
                .expect_err("an unreadable secret is an error");
            let message = error.to_string();
            assert!(
                message.contains("kafka.secret_properties_file.sasl.password")
                    && message.contains(&path.display().to_string())
                    && message.contains(reason),
                "{message}"
            );
        }
    }
}
