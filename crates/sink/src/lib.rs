//! The sink: writes enriched mentions and alerts to PostgreSQL and/or Parquet files.
//!
//! One consumer group (`sink`) reads both the enriched and the alerts topic. [`SinkStage`]
//! decodes each record into rows ([`rows`]) and hands them to a writer task (module `writer`) that
//! batches them; a record completes, and its offset may be stored, only once its rows are
//! durable in every configured target: the PostgreSQL transaction committed ([`postgres`])
//! and the Parquet file holding them closed and renamed ([`parquet`]).

pub mod parquet;
pub mod postgres;
pub mod report;
pub mod rows;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::bus::InRecord;
use earshot_core::codec::Codecs;
use earshot_core::service::ServiceError;
use earshot_core::{Completion, Config, Services, Stage, StageError};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::parquet::ParquetFiles;
use crate::postgres::Postgres;
use crate::writer::{Pending, Writer};

/// Consumer group name (the group id is `<group_prefix>-sink`) and stage name.
pub const GROUP: &str = "sink";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Bus(#[from] earshot_core::bus::BusError),
    #[error("sink: neither sink.postgres nor sink.parquet is configured; nothing to write to")]
    NoTarget,
    #[error("{0}")]
    Config(String),
    #[error("PostgreSQL: {}", postgres::describe_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the PostgreSQL schema does not have what the sink writes:\n{0}")]
    Schema(String),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::ParquetError),
    #[error("the sink's writer task ended abnormally: {0}")]
    WriterTask(String),
    #[error("shutdown before the sink started")]
    Interrupted,
}

/// Runs the sink against Kafka until `shutdown`, serving `/metrics`, `/healthz` and `/readyz`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SinkError> {
    let services = Services::kafka_serving_telemetry(config, &shutdown).await?;
    run_with(services, shutdown).await
}

/// Applies pending PostgreSQL migrations to `sink.postgres` and checks the schema, then
/// returns the versions it applied (`earshot sink --migrate`).
pub async fn migrate(config: &Config) -> Result<Vec<i32>, SinkError> {
    let Some(postgres) = &config.sink.postgres else {
        return Err(SinkError::Config(
            "sink.postgres: not configured; --migrate needs a database".into(),
        ));
    };
    postgres::migrate_database(&postgres::connection_config(postgres)?).await
}

/// Runs the sink over `services`' bus until `shutdown` (or until a target fails for good).
pub async fn run_with(services: Services, shutdown: CancellationToken) -> Result<(), SinkError> {
    // Cancelled by shutdown, or by the writer when a target fails for good.
    let stop = shutdown.child_token();
    let stage = match SinkStage::start(&services, stop.clone()).await {
        Ok(stage) => stage,
        Err(SinkError::Interrupted) => return Ok(()),
        Err(error) => return Err(error),
    };
    let writer_failure = stage.failure.clone();
    let publisher = services.publisher("earshot-sink")?;
    let topics = [
        services.config.topics.enriched.as_str(),
        services.config.topics.alerts.as_str(),
    ];
    let result = services
        .run_consumer(stage, GROUP, &topics, publisher, stop)
        .await;
    if let Some(error) = writer_failure.lock().expect("poisoned").take() {
        return Err(error);
    }
    result?;
    Ok(())
}

/// The sink's [`Stage`]: decodes records and hands their rows to the writer task.
pub struct SinkStage {
    codecs: Arc<Codecs>,
    enriched_topic: String,
    alerts_topic: String,
    /// The names Parquet files give the two topics (see [`file_topic`]).
    enriched_file_topic: Arc<str>,
    alerts_file_topic: Arc<str>,
    sender: Option<mpsc::Sender<Pending>>,
    writer: Option<JoinHandle<Result<(), SinkError>>>,
    failure: Arc<Mutex<Option<SinkError>>>,
}

impl SinkStage {
    /// Prepares the configured targets (PostgreSQL: connect, migrate, check the schema;
    /// Parquet: delete unfinished files) and starts the writer task. `stop` ends the writer
    /// (after writing what it holds); the writer cancels it when a target fails for good.
    pub async fn start(services: &Services, stop: CancellationToken) -> Result<Self, SinkError> {
        let sink = &services.config.sink;
        if sink.postgres.is_none() && sink.parquet.is_none() {
            return Err(SinkError::NoTarget);
        }
        let (batch_size, linger) = match &sink.postgres {
            Some(pg) => (
                pg.batch_size.max(1),
                Duration::from_millis(pg.batch_linger_ms),
            ),
            None => {
                let defaults = earshot_core::config::PostgresConfig::default();
                (
                    defaults.batch_size,
                    Duration::from_millis(defaults.batch_linger_ms),
                )
            }
        };
        let postgres = match &sink.postgres {
            Some(config) => {
                let connection = postgres::connection_config(config)?;
                let ready = services.health.ready_flag("sink: postgres reachable");
                Some(
                    Postgres::start(
                        connection,
                        config.connections,
                        ready,
                        services.metrics.clone(),
                        &stop,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let parquet = match &sink.parquet {
            Some(config) => {
                let removed = parquet::remove_leftovers(&config.dir)?;
                if removed > 0 {
                    tracing::info!(removed, dir = %config.dir.display(), "deleted unfinished Parquet files");
                }
                let files = ParquetFiles::new(config)?;
                tracing::info!(
                    finished = files.finished_files(),
                    dir = %config.dir.display(),
                    "indexed the finished Parquet files; records they hold are not written again"
                );
                Some(files)
            }
            None => None,
        };
        let writer = Writer {
            postgres,
            parquet,
            batch_size,
            linger,
            max_waiting: services.config.kafka.max_in_flight.max(1),
            metrics: services.metrics.clone(),
            stop,
        };
        let (sender, receiver) = mpsc::channel(batch_size);
        // tokio::task::Builder (task names) is unstable; the span names the task instead.
        let writer = tokio::spawn(tracing::Instrument::instrument(
            writer.run(receiver),
            tracing::info_span!("sink-writer"),
        ));
        Ok(SinkStage {
            codecs: services.codecs.clone(),
            enriched_topic: services.config.topics.enriched.clone(),
            alerts_topic: services.config.topics.alerts.clone(),
            enriched_file_topic: file_topic(services, &services.config.topics.enriched),
            alerts_file_topic: file_topic(services, &services.config.topics.alerts),
            sender: Some(sender),
            writer: Some(writer),
            failure: Arc::default(),
        })
    }

    /// Decodes a record into the rows it writes.
    async fn decode(&self, record: &InRecord) -> Result<rows::Item, StageError> {
        let payload = record.payload.as_deref().unwrap_or_default();
        let topic = &*record.topic;
        let item = if topic == self.enriched_topic {
            let enriched = self.codecs.enriched.decode(payload).await;
            rows::mention_item(
                enriched.map_err(|e| StageError::permanent(e.kind(), e.to_string()))?,
            )
        } else if topic == self.alerts_topic {
            let alert = self.codecs.alert.decode(payload).await;
            rows::alert_item(alert.map_err(|e| StageError::permanent(e.kind(), e.to_string()))?)
        } else {
            return Err(StageError::permanent(
                "decode",
                format!("the sink does not read topic {topic}"),
            ));
        };
        item.map_err(|e| StageError::permanent("invalid", e.to_string()))
    }
}

/// The topic as Parquet file names give it. Kafka offsets outlive the process, so a Kafka
/// topic is named as it is. The in-memory bus of the embedded mode starts its offsets at 0 on
/// every run: its topics get a suffix new on each run (`~` cannot occur in a Kafka topic
/// name), so one run's files neither replace nor hide another's.
fn file_topic(services: &Services, topic: &str) -> Arc<str> {
    match services.bus {
        earshot_core::service::Bus::Kafka => Arc::from(topic),
        earshot_core::service::Bus::Memory(_) => {
            Arc::from(format!("{topic}~{}", uuid::Uuid::new_v4().simple()))
        }
    }
}

impl Stage for SinkStage {
    fn name(&self) -> &'static str {
        GROUP
    }

    // The trait's shape: handling (awaited in order) yields the completion (awaited later).
    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            let item = match self.decode(&record).await {
                Ok(item) => item,
                Err(error) => return Box::pin(async move { Err(error) }) as Completion,
            };
            let (done, completed) = oneshot::channel();
            let Some(sender) = &self.sender else {
                return Box::pin(async { Err(StageError::Interrupted) }) as Completion;
            };
            let topic = if *record.topic == *self.enriched_topic {
                &self.enriched_file_topic
            } else {
                &self.alerts_file_topic
            };
            let position = parquet::Position {
                topic: topic.clone(),
                partition: record.partition,
                offset: record.offset,
            };
            let pending = Pending {
                item,
                position,
                done,
            };
            if sender.send(pending).await.is_err() {
                // The writer has stopped (it failed; the loop is stopping too).
                return Box::pin(async { Err(StageError::Interrupted) }) as Completion;
            }
            // A dropped sender means the writer stopped before the rows were durable.
            Box::pin(async move { completed.await.unwrap_or(Err(StageError::Interrupted)) })
                as Completion
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Closing the channel ends the writer once it has written what it holds.
            self.sender = None;
            let Some(writer) = self.writer.take() else {
                return;
            };
            let error = match writer.await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error,
                Err(join_error) => SinkError::WriterTask(join_error.to_string()),
            };
            self.failure.lock().expect("poisoned").get_or_insert(error);
        })
    }
}
