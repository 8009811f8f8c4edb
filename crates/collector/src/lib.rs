//! The collector: brings mentions into the pipeline. The authenticated HTTP ingest endpoint
//! `POST /v1/mentions` and NDJSON file replay convert the ingest format ([`ingest`]) into
//! `Mention` records on the raw topic, keyed by mention id; the configured sources
//! ([`sources`]: RSS/Atom, ...) pull or stream from the outside world, with checkpoints.
//!
//! The HTTP endpoint answers 202 only once every accepted mention is acknowledged by the bus;
//! a bad item gets its own error in the response while the good ones go through.

pub mod ingest;
pub mod sources;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use earshot_core::bus::{headers, Ack, BusError, OutRecord, Publisher};
use earshot_core::config::HttpIngestConfig;
use earshot_core::model::{Mention, Source};
use earshot_core::telemetry::trace_context;
use earshot_core::Services;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use prometheus::IntCounter;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

pub(crate) const STAGE: &str = "collector";

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Service(#[from] earshot_core::service::ServiceError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("collector.http: {0}")]
    Token(String),
    #[error("collector: building the HTTP client failed: {0}")]
    HttpClient(String),
}

/// Runs the collector against Kafka until `shutdown` (or until a replay-only run finishes).
pub async fn run(
    config: earshot_core::Config,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let services = Services::kafka_serving_telemetry(config, &shutdown).await?;
    run_with(services, shutdown).await
}

/// Runs the configured sources on the given services. Returns when the replay is done and no
/// HTTP endpoint is configured, or at shutdown.
pub async fn run_with(
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let collector = Collector::new(&services)?;
    let mut http = None;
    if let Some(config) = &services.config.collector.http {
        http = Some(collector.serve_http(config, shutdown.clone()).await?);
    }
    let pulling = collector.spawn_sources(shutdown.clone()).await?;
    if let Some(replay) = &services.config.collector.replay {
        let summary = collector
            .replay(&replay.path, replay.rate_per_sec, shutdown.clone())
            .await?;
        tracing::info!(sent = summary.sent, rejected = summary.rejected, path = %replay.path.display(), "replay finished");
    }
    if http.is_some() {
        shutdown.cancelled().await;
    }
    if let Some(pulling) = pulling {
        // Each source stops at shutdown once what it emitted is acknowledged and checkpointed.
        let _ = pulling.await;
    }
    collector.publisher.flush(Duration::from_millis(
        services.config.kafka.drain_timeout_ms,
    ))?;
    Ok(())
}

/// `earshot collect`: runs the configured sources until `shutdown` and prints every mention
/// they yield as one JSON object per line on standard output, instead of publishing it.
/// Checkpoints live in memory for the run.
pub async fn collect(
    config: &earshot_core::config::CollectorConfig,
    metrics: earshot_core::telemetry::Metrics,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let settings = sources::health::HealthSettings {
        config: config.health.clone(),
        metrics,
    };
    sources::run_sources(
        sources::instances(config),
        Arc::new(earshot_core::checkpoint::MemoryCheckpointStore::new()),
        sources::Output::Print,
        Arc::new(polite_client(config)?),
        settings,
        // Printed lines need no acknowledgement.
        Duration::from_secs(1),
        shutdown,
    )
    .await;
    Ok(())
}

fn polite_client(
    config: &earshot_core::config::CollectorConfig,
) -> Result<sources::http::PoliteClient, CollectorError> {
    sources::http::PoliteClient::new(&config.politeness)
        .map_err(|e| CollectorError::HttpClient(e.to_string()))
}

fn health_settings(services: &Services) -> sources::health::HealthSettings {
    sources::health::HealthSettings {
        config: services.config.collector.health.clone(),
        metrics: services.metrics.clone(),
    }
}

/// Outcome of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub sent: u64,
    pub rejected: u64,
}

#[derive(Clone)]
pub struct Collector {
    services: Services,
    publisher: Arc<dyn Publisher>,
    raw_topic: Arc<str>,
    /// This stage's received and sent counters, looked up once.
    received: IntCounter,
    sent: IntCounter,
}

impl Collector {
    pub fn new(services: &Services) -> Result<Self, CollectorError> {
        Ok(Collector {
            publisher: services.publisher("earshot-collector")?,
            raw_topic: Arc::from(services.config.topics.raw.as_str()),
            services: services.clone(),
            received: services.metrics.received.with_label_values(&[STAGE]),
            sent: services.metrics.sent.with_label_values(&[STAGE]),
        })
    }

    /// Encodes and enqueues one mention; the returned ack resolves once it is durable.
    pub async fn publish(&self, mention: &Mention) -> Result<Ack, String> {
        let record = mention_record(&self.services.codecs, &self.raw_topic, mention)?;
        Ok(self.publish_record(record).await)
    }

    async fn publish_record(&self, record: OutRecord) -> Ack {
        self.received.inc();
        self.publisher.publish(record).await
    }

    /// Starts the configured sources (`collector.sources`) until `shutdown`, each in this
    /// process only while it owns the instance; `None` when none is configured. The task
    /// ends once every source has stopped with what it emitted acknowledged and checkpointed.
    pub async fn spawn_sources(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, CollectorError> {
        let config = &self.services.config.collector;
        let instances = sources::instances(config);
        if instances.is_empty() {
            return Ok(None);
        }
        let store = self.services.checkpoint_store("earshot-collector").await?;
        Ok(Some(tokio::spawn(sources::run_sources(
            instances,
            store,
            sources::Output::Publish(Box::new(self.clone())),
            Arc::new(polite_client(config)?),
            health_settings(&self.services),
            Duration::from_millis(self.services.config.kafka.drain_timeout_ms),
            shutdown,
        ))))
    }

    /// Publishes a source health event on the source-health topic, keyed by `<kind>/<name>`,
    /// and waits for its acknowledgement.
    pub async fn publish_health(
        &self,
        event: &earshot_core::model::SourceHealthEvent,
    ) -> Result<(), String> {
        let payload = self
            .services
            .codecs
            .source_health
            .encode(event)
            .map_err(|e| e.to_string())?;
        let record = OutRecord {
            topic: Arc::from(self.services.config.topics.source_health.as_str()),
            key: Some(Bytes::from(format!(
                "{}/{}",
                event.source_kind, event.source_instance
            ))),
            payload: Bytes::from(payload),
            headers: vec![],
        };
        self.publisher
            .publish(record)
            .await
            .await
            .map_err(|e| e.to_string())
    }

    /// Replays an NDJSON file; bad lines go to the dead-letter topic with their line number.
    /// Shows a progress bar when standard error is a terminal.
    pub async fn replay(
        &self,
        path: &Path,
        rate_per_sec: u32,
        shutdown: CancellationToken,
    ) -> Result<ReplaySummary, CollectorError> {
        let io_error = |source| CollectorError::Io {
            context: format!("replay {}", path.display()),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io_error)?;
        let size = file.metadata().await.map_err(io_error)?.len();
        self.replay_from(
            tokio::io::BufReader::new(file),
            path,
            size,
            rate_per_sec,
            shutdown,
        )
        .await
    }

    /// Replays NDJSON from any reader; `path` names it in errors and dead letters.
    pub async fn replay_from<R: tokio::io::AsyncBufRead + Unpin>(
        &self,
        reader: R,
        path: &Path,
        size: u64,
        rate_per_sec: u32,
        shutdown: CancellationToken,
    ) -> Result<ReplaySummary, CollectorError> {
        let io_error = |source| CollectorError::Io {
            context: format!("replay {}", path.display()),
            source,
        };
        let progress = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "replay {bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let source = Source {
            kind: "replay".into(),
            instance: path.display().to_string(),
        };
        let mut lines = reader.lines();
        let mut in_flight = FuturesUnordered::new();
        let max_in_flight = self.services.config.kafka.max_in_flight;
        let pace = (rate_per_sec > 0).then(|| Duration::from_secs_f64(1.0 / rate_per_sec as f64));
        let mut summary = ReplaySummary::default();
        let mut line_number = 0usize;
        // Lines are parsed, validated and encoded in chunks on blocking threads, while this
        // task reads on and publishes the chunk before, in order: the second core does the
        // JSON and Avro work.
        let mut parsing: VecDeque<tokio::task::JoinHandle<Vec<ParsedLine>>> = VecDeque::new();
        let mut end_of_input = false;
        loop {
            while !end_of_input && parsing.len() < REPLAY_CHUNKS_AHEAD {
                let mut chunk = Vec::with_capacity(REPLAY_CHUNK_LINES);
                while chunk.len() < REPLAY_CHUNK_LINES {
                    let Some(line) = lines.next_line().await.map_err(io_error)? else {
                        end_of_input = true;
                        break;
                    };
                    line_number += 1;
                    progress.inc(line.len() as u64 + 1);
                    if !line.trim().is_empty() {
                        chunk.push((line_number, line));
                    }
                }
                if !chunk.is_empty() {
                    let source = source.clone();
                    let (codecs, topic) = (self.services.codecs.clone(), self.raw_topic.clone());
                    parsing.push_back(tokio::task::spawn_blocking(move || {
                        chunk
                            .into_iter()
                            .map(|(number, line)| {
                                let record =
                                    ingest::parse_item(ingest::RawItem::Line(&line), &source)
                                        .and_then(|mention| {
                                            mention_record(&codecs, &topic, &mention)
                                        });
                                (number, line, record)
                            })
                            .collect()
                    }));
                }
            }
            let Some(next) = parsing.pop_front() else {
                break;
            };
            let parsed = next.await.map_err(|e| CollectorError::Io {
                context: format!("replay {}: parsing lines", path.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
            for (number, line, parsed) in parsed {
                if shutdown.is_cancelled() {
                    break;
                }
                while in_flight.len() >= max_in_flight {
                    if let Some(result) = in_flight.next().await {
                        count_ack(result, &mut summary, &self.sent)?;
                    }
                }
                let (ack, rejected) = match parsed {
                    Ok(record) => (self.publish_record(record).await, false),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), line = number, %error, "bad replay line; dead-lettered");
                        (self.dead_letter(&line, number, path, &error).await, true)
                    }
                };
                in_flight.push(ack.map(move |result| (result, rejected)));
                if let Some(pace) = pace {
                    tokio::time::sleep(pace).await;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        while let Some(result) = in_flight.next().await {
            count_ack(result, &mut summary, &self.sent)?;
        }
        progress.finish_and_clear();
        Ok(summary)
    }

    async fn dead_letter(&self, line: &str, line_number: usize, path: &Path, error: &str) -> Ack {
        self.services
            .metrics
            .errors
            .with_label_values(&[STAGE, "invalid"])
            .inc();
        self.services
            .metrics
            .dead_lettered
            .with_label_values(&[STAGE, "invalid"])
            .inc();
        let record = OutRecord {
            topic: Arc::from(self.services.config.topics.deadletter.as_str()),
            key: None,
            payload: Bytes::from(line.to_owned()),
            headers: vec![
                (
                    headers::DLQ_SOURCE_TOPIC.to_owned(),
                    Bytes::from(format!("file:{}", path.display())),
                ),
                (
                    headers::DLQ_SOURCE_OFFSET.to_owned(),
                    Bytes::from(line_number.to_string()),
                ),
                (
                    headers::DLQ_STAGE.to_owned(),
                    Bytes::from_static(STAGE.as_bytes()),
                ),
                (
                    headers::DLQ_ERROR_TYPE.to_owned(),
                    Bytes::from_static(b"invalid"),
                ),
                (
                    headers::DLQ_ERROR.to_owned(),
                    Bytes::from(format!("line {line_number}: {error}")),
                ),
            ],
        };
        self.publisher.publish(record).await
    }

    /// Serves `POST /v1/mentions` until `shutdown`; returns the bound address.
    pub async fn serve_http(
        &self,
        config: &HttpIngestConfig,
        shutdown: CancellationToken,
    ) -> Result<SocketAddr, CollectorError> {
        let token = load_token(config)?;
        let state = IngestState {
            collector: self.clone(),
            token: Arc::from(token.as_str()),
            ack_timeout: Duration::from_millis(config.ack_timeout_ms),
            source: Source {
                kind: "ingest".into(),
                instance: "http".into(),
            },
        };
        let app = Router::new()
            .route("/v1/mentions", post(ingest_handler))
            // Refuses an announced oversized body with 413 before reading it; the extractor's
            // limit covers chunked bodies.
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                config.max_body_bytes,
            ))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| CollectorError::Io {
                context: format!("binding {}", config.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| CollectorError::Io {
            context: "local address".into(),
            source,
        })?;
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
            {
                tracing::error!(%error, "ingest server failed");
            }
        });
        self.services
            .health
            .ready_flag("collector: ingest endpoint listening")
            .set(true);
        tracing::info!(%addr, "HTTP ingest listening on /v1/mentions");
        Ok(addr)
    }
}

/// Lines per chunk parsed on a blocking thread during a replay.
const REPLAY_CHUNK_LINES: usize = 512;
/// Chunks parsed ahead of the one being published.
const REPLAY_CHUNKS_AHEAD: usize = 2;

/// A replayed line: its number, its text, and the record it gives or why it gives none.
type ParsedLine = (usize, String, Result<OutRecord, String>);

/// The raw topic's record of `mention`: keyed by its stable id, Avro-encoded, with a new trace.
fn mention_record(
    codecs: &earshot_core::codec::Codecs,
    topic: &Arc<str>,
    mention: &Mention,
) -> Result<OutRecord, String> {
    let payload = codecs.mention.encode(mention).map_err(|e| e.to_string())?;
    Ok(OutRecord {
        topic: topic.clone(),
        key: Some(Bytes::from(mention.id.to_string())),
        payload: Bytes::from(payload),
        headers: vec![(
            headers::TRACEPARENT.to_owned(),
            Bytes::from(trace_context::new_traceparent()),
        )],
    })
}

fn count_ack(
    (result, rejected): (Result<(), BusError>, bool),
    summary: &mut ReplaySummary,
    sent: &IntCounter,
) -> Result<(), CollectorError> {
    result?;
    if rejected {
        summary.rejected += 1;
    } else {
        summary.sent += 1;
        sent.inc();
    }
    Ok(())
}

fn load_token(config: &HttpIngestConfig) -> Result<String, CollectorError> {
    let token = match (&config.token_file, &config.token_env) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            CollectorError::Token(format!("reading token_file {}: {e}", path.display()))
        })?,
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            CollectorError::Token(format!("environment variable {var} (token_env) is not set"))
        })?,
        (None, None) => return Err(CollectorError::Token("set token_env or token_file".into())),
    };
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(CollectorError::Token(
            "the bearer token must be at least 16 characters".into(),
        ));
    }
    Ok(token)
}

#[derive(Clone)]
struct IngestState {
    collector: Collector,
    token: Arc<str>,
    ack_timeout: Duration,
    source: Source,
}

#[derive(serde::Serialize)]
struct IngestResponse {
    accepted: usize,
    rejected: Vec<RejectedItem>,
}

#[derive(serde::Serialize)]
struct RejectedItem {
    /// 1-based line (NDJSON) or array index.
    item: usize,
    error: String,
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn ingest_handler(
    State(state): State<IngestState>,
    request_headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = request_headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), state.token.as_bytes())) {
        return error_response(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    }
    let items = match ingest::split_body(&body) {
        Ok(items) => items,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, error),
    };
    let metrics = &state.collector.services.metrics;
    let mut rejected = Vec::new();
    let mut acks = Vec::with_capacity(items.len());
    for (item, value) in items {
        let mention = ingest::parse_item(value, &state.source);
        match mention {
            Ok(mention) => match state.collector.publish(&mention).await {
                Ok(ack) => acks.push(ack),
                Err(error) => rejected.push(RejectedItem { item, error }),
            },
            Err(error) => {
                metrics.errors.with_label_values(&[STAGE, "invalid"]).inc();
                rejected.push(RejectedItem { item, error });
            }
        }
    }
    let accepted = acks.len();
    let all_acked = async {
        for ack in acks {
            ack.await?;
        }
        Ok::<(), BusError>(())
    };
    match tokio::time::timeout(state.ack_timeout, all_acked).await {
        Ok(Ok(())) => {
            state.collector.sent.inc_by(accepted as u64);
            let status = if accepted == 0 && !rejected.is_empty() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::ACCEPTED
            };
            (status, Json(IngestResponse { accepted, rejected })).into_response()
        }
        Ok(Err(error)) => {
            metrics.errors.with_label_values(&[STAGE, "publish"]).inc();
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not acknowledged, retry the request: {error}"),
            )
        }
        Err(_) => {
            metrics.errors.with_label_values(&[STAGE, "publish"]).inc();
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not acknowledged in time, retry the request",
            )
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
