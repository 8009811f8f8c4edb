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
use earshot_core::bus::{headers, Ack, BatchAck, BusError, OutRecord, Publisher};
use earshot_core::config::HttpIngestConfig;
use earshot_core::model::{Mention, Source};
use earshot_core::telemetry::trace_context;
use earshot_core::Services;
use prometheus::IntCounter;
use subtle::ConstantTimeEq;
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
    /// Some replayed records were not acknowledged (after the producer's own retries); the
    /// replay stopped reading at the first failure and waited for the rest.
    #[error("replay {path}: {failed} records not acknowledged ({} mentions and {} dead letters were); the first: {first}", .summary.sent, .summary.rejected)]
    ReplayNotAcknowledged {
        path: String,
        failed: u64,
        summary: ReplaySummary,
        first: BusError,
    },
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
            // Large reads: each read of a tokio file is a trip to a blocking thread.
            tokio::io::BufReader::with_capacity(REPLAY_READ_BUFFER_BYTES, file),
            path,
            size,
            rate_per_sec,
            shutdown,
        )
        .await
    }

    /// Replays NDJSON from any reader; `path` names it in errors and dead letters.
    ///
    /// Lines are parsed, validated and encoded in chunks on blocking threads, a few chunks
    /// ahead, while this task reads on and hands each parsed chunk to the producer in one
    /// call, in order; bad lines become dead letters in their place. Acknowledgements are
    /// awaited a chunk at a time, and only when `kafka.max_in_flight` records wait for one,
    /// so that this task does not wake per record. The summary comes once every record is
    /// acknowledged; a record the bus does not acknowledge stops the replay, and the error
    /// counts every record that failed.
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
        let parser = Arc::new(ChunkParser {
            source: Source {
                kind: "replay".into(),
                instance: path.display().to_string(),
            },
            codecs: self.services.codecs.clone(),
            raw_topic: self.raw_topic.clone(),
            deadletter_topic: Arc::from(self.services.config.topics.deadletter.as_str()),
            file_name: Bytes::from(format!("file:{}", path.display())),
            invalid: self
                .services
                .metrics
                .errors
                .with_label_values(&[STAGE, "invalid"]),
            dead_lettered: self
                .services
                .metrics
                .dead_lettered
                .with_label_values(&[STAGE, "invalid"]),
        });
        let mut lines = reader.lines();
        let max_in_flight = self.services.config.kafka.max_in_flight;
        let mut pacer = (rate_per_sec > 0).then(|| Pacer::new(rate_per_sec));
        let mut acks = Acknowledgements::new(self.sent.clone());
        let mut line_number = 0usize;
        let mut parsing: VecDeque<tokio::task::JoinHandle<ParsedChunk>> = VecDeque::new();
        let mut end_of_input = false;
        while !shutdown.is_cancelled() && acks.failed == 0 {
            while !end_of_input && parsing.len() < REPLAY_CHUNKS_AHEAD {
                let mut chunk = Vec::with_capacity(REPLAY_CHUNK_LINES);
                let mut bytes = 0;
                while chunk.len() < REPLAY_CHUNK_LINES {
                    let Some(line) = lines.next_line().await.map_err(io_error)? else {
                        end_of_input = true;
                        break;
                    };
                    line_number += 1;
                    bytes += line.len() as u64 + 1;
                    if !line.trim().is_empty() {
                        chunk.push((line_number, line));
                    }
                }
                progress.inc(bytes);
                if !chunk.is_empty() {
                    let parser = parser.clone();
                    parsing.push_back(tokio::task::spawn_blocking(move || parser.parse(chunk)));
                }
            }
            let Some(next) = parsing.pop_front() else {
                break;
            };
            let mut chunk = next.await.map_err(|e| CollectorError::Io {
                context: format!("replay {}: parsing lines", path.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
            while !chunk.records.is_empty() {
                // A batch is never larger than what may be in flight.
                let ready = chunk.records.len().min(max_in_flight.max(1));
                let count = match &mut pacer {
                    None => ready,
                    Some(pacer) => {
                        let count = tokio::select! {
                            count = pacer.admit(ready) => count,
                            () = shutdown.cancelled() => break,
                        };
                        count
                    }
                };
                // At most `max_in_flight` records wait for their acknowledgement (at least
                // the batch about to go).
                while acks.records > 0 && acks.records + count > max_in_flight {
                    acks.settle_oldest().await;
                }
                // A record the bus refused stops the replay: nothing more is sent.
                if acks.failed > 0 {
                    break;
                }
                let batch = chunk.take(count);
                self.received
                    .inc_by(batch.dead_letter.iter().filter(|d| !**d).count() as u64);
                let ack = self.publisher.publish_all(batch.records).await;
                acks.push(ack, batch.dead_letter);
            }
        }
        acks.settle_all().await;
        progress.finish_and_clear();
        if let Some(first) = acks.first_error {
            self.services
                .metrics
                .errors
                .with_label_values(&[STAGE, "publish"])
                .inc_by(acks.failed);
            return Err(CollectorError::ReplayNotAcknowledged {
                path: path.display().to_string(),
                failed: acks.failed,
                summary: acks.summary,
                first,
            });
        }
        Ok(acks.summary)
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
/// The replay's read buffer.
const REPLAY_READ_BUFFER_BYTES: usize = 1 << 20;

/// Turns replayed lines into the records they give: a mention for the raw topic, or a dead
/// letter naming the file and the line. Runs on blocking threads.
struct ChunkParser {
    source: Source,
    codecs: Arc<earshot_core::codec::Codecs>,
    raw_topic: Arc<str>,
    deadletter_topic: Arc<str>,
    /// `file:<path>`, the dead letters' source.
    file_name: Bytes,
    /// `errors` and `dead_lettered` of this stage for invalid input.
    invalid: IntCounter,
    dead_lettered: IntCounter,
}

impl ChunkParser {
    fn parse(&self, lines: Vec<(usize, String)>) -> ParsedChunk {
        let mut chunk = ParsedChunk {
            records: VecDeque::with_capacity(lines.len()),
            dead_letter: VecDeque::with_capacity(lines.len()),
        };
        for (number, line) in lines {
            let record = ingest::parse_item(ingest::RawItem::Line(&line), &self.source)
                .and_then(|mention| mention_record(&self.codecs, &self.raw_topic, &mention));
            let (record, dead_letter) = match record {
                Ok(record) => (record, false),
                Err(error) => {
                    tracing::warn!(path = %self.source.instance, line = number, %error, "bad replay line; dead-lettered");
                    self.invalid.inc();
                    self.dead_lettered.inc();
                    (self.dead_letter(line, number, &error), true)
                }
            };
            chunk.records.push_back(record);
            chunk.dead_letter.push_back(dead_letter);
        }
        chunk
    }

    /// The dead letter of a bad line: the line itself, with the file and the line number.
    fn dead_letter(&self, line: String, line_number: usize, error: &str) -> OutRecord {
        OutRecord {
            topic: self.deadletter_topic.clone(),
            key: None,
            payload: Bytes::from(line),
            headers: vec![
                (headers::DLQ_SOURCE_TOPIC.to_owned(), self.file_name.clone()),
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
        }
    }
}

/// A chunk of replayed lines as records, in the file's order; `dead_letter[i]` tells whether
/// `records[i]` is a bad line's dead letter.
struct ParsedChunk {
    records: VecDeque<OutRecord>,
    dead_letter: VecDeque<bool>,
}

/// The records to publish in one call, and which are dead letters.
struct Batch {
    records: Vec<OutRecord>,
    dead_letter: Vec<bool>,
}

impl ParsedChunk {
    /// The first `count` records.
    fn take(&mut self, count: usize) -> Batch {
        Batch {
            records: self.records.drain(..count).collect(),
            dead_letter: self.dead_letter.drain(..count).collect(),
        }
    }
}

/// The replay's published batches waiting for their acknowledgement, oldest first, and what
/// the settled ones came to.
struct Acknowledgements {
    waiting: VecDeque<(BatchAck, Vec<bool>)>,
    /// Records waiting.
    records: usize,
    summary: ReplaySummary,
    /// Records the bus did not acknowledge, and the first such failure.
    failed: u64,
    first_error: Option<BusError>,
    sent: IntCounter,
}

impl Acknowledgements {
    fn new(sent: IntCounter) -> Self {
        Acknowledgements {
            waiting: VecDeque::new(),
            records: 0,
            summary: ReplaySummary::default(),
            failed: 0,
            first_error: None,
            sent,
        }
    }

    fn push(&mut self, ack: BatchAck, dead_letter: Vec<bool>) {
        self.records += dead_letter.len();
        self.waiting.push_back((ack, dead_letter));
    }

    /// Waits for the oldest batch and counts it.
    async fn settle_oldest(&mut self) {
        let Some((ack, dead_letter)) = self.waiting.pop_front() else {
            return;
        };
        self.records -= dead_letter.len();
        let mut sent = 0;
        for (result, dead_letter) in ack.await.into_iter().zip(dead_letter) {
            match result {
                Ok(()) if dead_letter => self.summary.rejected += 1,
                Ok(()) => sent += 1,
                Err(error) => {
                    self.failed += 1;
                    self.first_error.get_or_insert(error);
                }
            }
        }
        self.summary.sent += sent;
        self.sent.inc_by(sent);
    }

    async fn settle_all(&mut self) {
        while !self.waiting.is_empty() {
            self.settle_oldest().await;
        }
    }
}

/// Spreads a replay over time at `--rate` records per second: record `n` is due `n / rate`
/// seconds after the start. Records are let go in groups of those due (the timer's
/// resolution is a millisecond), and a replay held up (backpressure) does not catch up
/// faster than the rate allows: at most a tenth of a second's records go at once.
struct Pacer {
    rate: u32,
    started: tokio::time::Instant,
    released: u64,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Pacer {
            rate,
            started: tokio::time::Instant::now(),
            released: 0,
        }
    }

    /// Waits until at least one record is due; returns how many of `pending` may go now.
    async fn admit(&mut self, pending: usize) -> usize {
        loop {
            match self.due(self.started.elapsed(), pending) {
                Ok(count) => return count,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// At `elapsed` since the start: how many of `pending` records may go, or how long to
    /// wait until the next one is due.
    fn due(&mut self, elapsed: Duration, pending: usize) -> Result<usize, Duration> {
        const NANOS: u128 = 1_000_000_000;
        let rate = u128::from(self.rate);
        let burst = (u64::from(self.rate) / 10).max(1);
        // Record n is due once n / rate seconds have passed: records 0..due are due.
        let due = (elapsed.as_nanos() * rate / NANOS) as u64 + 1;
        if due.saturating_sub(self.released) > burst {
            self.released = due - burst;
        }
        let allowed = due.saturating_sub(self.released);
        if allowed == 0 {
            let next =
                Duration::from_nanos((u128::from(self.released) * NANOS).div_ceil(rate) as u64);
            return Err(next.saturating_sub(elapsed).max(Duration::from_micros(1)));
        }
        let count = (allowed as usize).min(pending);
        self.released += count as u64;
        Ok(count)
    }
}

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

fn load_token(config: &HttpIngestConfig) -> Result<String, CollectorError> {
    let (env, file) = config.token_source();
    earshot_core::config::read_token(env, file)
        .map_err(|e| CollectorError::Token(format!("collector.http: {e}")))
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
    // Compared in constant time, so that the answer's timing tells nothing of the token.
    let authorized =
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(state.token.as_bytes())));
    if !authorized {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks a pacer at `rate` per second, step by step, how many of the pending records may
    /// go at each elapsed time (ms); `Err` is the wait (µs) until the next one is due.
    fn check_pacer(rate: u32, steps: &[(u64, usize, Result<usize, u64>)]) {
        let mut pacer = Pacer::new(rate);
        for &(elapsed_ms, pending, expected) in steps {
            let got = pacer
                .due(Duration::from_millis(elapsed_ms), pending)
                .map_err(|wait| wait.as_micros() as u64);
            assert_eq!(
                got, expected,
                "rate {rate}, at {elapsed_ms} ms, {pending} pending"
            );
        }
    }

    #[test]
    fn the_pacer_lets_records_go_when_due_and_never_catches_up_faster_than_the_rate() {
        // One record every 10 ms: the first at once, the next at 10 ms.
        check_pacer(
            100,
            &[
                (0, 5, Ok(1)),
                (0, 4, Err(10_000)),
                (4, 4, Err(6_000)),
                (10, 4, Ok(1)),
            ],
        );
        // Records due together go together, at most what is pending.
        check_pacer(
            1_000,
            &[
                (0, 512, Ok(1)),
                (5, 511, Ok(5)),
                (5, 506, Err(1_000)),
                (9, 2, Ok(2)),
            ],
        );
        // Held up for a second, it lets a tenth of a second's records go, not the second's.
        check_pacer(
            1_000,
            &[
                (0, 10, Ok(1)),
                (1_000, 5_000, Ok(100)),
                (1_000, 4_900, Err(1_000)),
            ],
        );
        // At 1 per second the burst is still one record.
        check_pacer(
            1,
            &[(0, 3, Ok(1)), (500, 2, Err(500_000)), (5_000, 2, Ok(1))],
        );
    }

    #[test]
    fn a_chunk_is_taken_in_order_with_its_dead_letter_flags() {
        let record = |n: u8| OutRecord {
            topic: Arc::from("t"),
            key: None,
            payload: Bytes::from(vec![n]),
            headers: vec![],
        };
        let mut chunk = ParsedChunk {
            records: (0..5).map(record).collect(),
            dead_letter: [false, true, false, false, true].into(),
        };
        let first = chunk.take(2);
        assert_eq!(first.dead_letter, [false, true]);
        assert_eq!(
            first
                .records
                .iter()
                .map(|r| r.payload[0])
                .collect::<Vec<_>>(),
            [0, 1]
        );
        let rest = chunk.take(3);
        assert_eq!(rest.dead_letter, [false, false, true]);
        assert_eq!(
            rest.records
                .iter()
                .map(|r| r.payload[0])
                .collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert!(chunk.records.is_empty());
    }
}
