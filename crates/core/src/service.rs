//! What a running service is given: its config, metrics, health, codecs and bus. Built once
//! per process: for Kafka by [`Services::kafka`] (one service per process, as Kubernetes runs
//! them), for the embedded mode by [`Services::memory`] (all stages share one).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, InRecord, OwnedPartitions, Publisher, Subscription};
use crate::checkpoint::{CheckpointStore, MemoryCheckpointStore};
use crate::codec::{CodecError, Codecs};
use crate::config::Config;
use crate::kafka::{
    ensure_topics_compacted, KafkaCheckpointStore, KafkaPublisher, KafkaSubscription, KafkaTable,
};
use crate::memory::MemoryBus;
use crate::registry::SchemaRegistry;
use crate::runner::{run_stage, RunError, RunnerOptions, Stage};
use crate::table::{MemoryTable, StateTable};
use crate::telemetry::{Health, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("telemetry server: {0}")]
    Telemetry(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone)]
pub enum Bus {
    Kafka,
    Memory(MemoryBus),
}

#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub health: Health,
    pub codecs: Arc<Codecs>,
    pub bus: Bus,
    /// The input partitions this process's consumers are assigned now.
    pub owned: OwnedPartitions,
}

impl Services {
    /// For one service against Kafka: creates missing topics when configured, registers
    /// schemas when a registry is configured.
    pub async fn kafka(config: Config) -> Result<Self, ServiceError> {
        if config.kafka.create_topics {
            ensure_topics_compacted(
                &config.kafka,
                &config.topics.all(),
                &[&config.topics.checkpoints, &config.topics.router_state],
            )
            .await?;
        }
        let registry = config
            .kafka
            .schema_registry_url
            .as_deref()
            .map(|url| Arc::new(SchemaRegistry::new(url)));
        let codecs = Codecs::new(registry, &config.topics).await?;
        Ok(Services {
            health: Health::new(Duration::from_millis(config.telemetry.stall_timeout_ms)),
            config: Arc::new(config),
            metrics: Metrics::default(),
            codecs: Arc::new(codecs),
            bus: Bus::Kafka,
            owned: OwnedPartitions::default(),
        })
    }

    /// For one service process against Kafka ([`Services::kafka`]), with its `/metrics`,
    /// `/healthz` and `/readyz` served on `telemetry.listen` until `shutdown`.
    pub async fn kafka_serving_telemetry(
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Self, ServiceError> {
        let services = Self::kafka(config).await?;
        crate::telemetry::serve(
            services.config.telemetry.listen,
            services.metrics.clone(),
            services.health.clone(),
            shutdown.clone(),
        )
        .await?;
        Ok(services)
    }

    /// For every stage of the embedded mode over one in-memory bus.
    pub async fn memory(config: Config, bus: MemoryBus) -> Result<Self, ServiceError> {
        let codecs = Codecs::new(None, &config.topics).await?;
        Ok(Services {
            health: Health::new(Duration::from_millis(config.telemetry.stall_timeout_ms)),
            config: Arc::new(config),
            metrics: Metrics::default(),
            codecs: Arc::new(codecs),
            bus: Bus::Memory(bus),
            owned: OwnedPartitions::everything(),
        })
    }

    /// A publisher for `client_id`.
    pub fn publisher(&self, client_id: &str) -> Result<Arc<dyn Publisher>, BusError> {
        match &self.bus {
            Bus::Kafka => Ok(Arc::new(KafkaPublisher::new(
                &self.config.kafka,
                client_id,
                self.health
                    .ready_flag(&format!("{client_id}: broker reachable")),
            )?)),
            Bus::Memory(bus) => Ok(bus.publisher()),
        }
    }

    /// The collector's checkpoint store: on Kafka the compacted checkpoint topic, joined as
    /// group `<group_prefix>-collector` to share the source instances among replicas; in
    /// memory, a store that owns every instance.
    pub async fn checkpoint_store(
        &self,
        client_id: &str,
    ) -> Result<Arc<dyn CheckpointStore>, BusError> {
        match &self.bus {
            Bus::Kafka => Ok(Arc::new(
                KafkaCheckpointStore::new(
                    &self.config.kafka,
                    &self.config.topics.checkpoints,
                    client_id,
                    self.health
                        .ready_flag(&format!("{client_id}: joined checkpoint group")),
                    Duration::from_millis(self.config.kafka.drain_timeout_ms),
                )
                .await?,
            )),
            Bus::Memory(_) => Ok(Arc::new(MemoryCheckpointStore::new())),
        }
    }

    /// A keyed table in the compacted topic `topic` (see [`crate::table`]); in memory for
    /// the embedded mode.
    pub async fn state_table(&self, topic: &str, client_id: &str) -> Result<StateTable, BusError> {
        match &self.bus {
            Bus::Kafka => KafkaTable::open(&self.config.kafka, topic, client_id).await,
            Bus::Memory(_) => Ok(MemoryTable::open()),
        }
    }

    /// Runs `stage` as consumer group `<group_prefix>-<group>` over `topics` until shutdown.
    pub async fn run_consumer<S: Stage>(
        &self,
        stage: S,
        group: &str,
        topics: &[&str],
        publisher: Arc<dyn Publisher>,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let group_id = format!("{}-{group}", self.config.kafka.group_prefix);
        let subscription: Box<dyn Subscription> = match &self.bus {
            Bus::Kafka => Box::new(KafkaSubscription::tracking(
                &self.config.kafka,
                &group_id,
                topics,
                self.metrics.clone(),
                self.health
                    .ready_flag(&format!("{group}: joined group {group_id}")),
                self.health
                    .ready_flag(&format!("{group}: broker reachable")),
                self.owned.clone(),
            )?),
            Bus::Memory(bus) => Box::new(bus.subscribe(&group_id, topics, shutdown.clone())),
        };
        let options = RunnerOptions {
            max_in_flight: self.config.kafka.max_in_flight,
            drain_timeout: Duration::from_millis(self.config.kafka.drain_timeout_ms),
            deadletter_topic: Arc::from(self.config.topics.deadletter.as_str()),
        };
        let heartbeat = self.health.heartbeat(group);
        run_stage(
            stage,
            subscription,
            publisher,
            options,
            self.metrics.clone(),
            heartbeat,
            shutdown,
        )
        .await?;
        Ok(())
    }
}

impl Subscription for Box<dyn Subscription> {
    fn recv(&mut self) -> BoxFuture<'_, Option<Result<InRecord, BusError>>> {
        (**self).recv()
    }
    fn store_offset(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), BusError> {
        (**self).store_offset(topic, partition, next_offset)
    }
    fn commit(&self) -> Result<(), BusError> {
        (**self).commit()
    }
}
