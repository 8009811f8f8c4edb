//! Telemetry: the Prometheus metrics every stage exports (all names live here), the health
//! state behind `/healthz` and `/readyz`, the HTTP server for the three endpoints, tracing
//! setup, and the W3C trace context carried in Kafka headers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, TelemetryConfig};

/// The counters and histograms of one process. The registry is passed in, not global, so that
/// each test (and each embedded stage set) has its own.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `earshot_records_received_total{stage}`
    pub received: IntCounterVec,
    /// `earshot_records_sent_total{stage}`
    pub sent: IntCounterVec,
    /// `earshot_errors_total{stage, error_type}`
    pub errors: IntCounterVec,
    /// `earshot_records_discarded_total{stage, intentional}`
    pub discarded: IntCounterVec,
    /// `earshot_records_dead_lettered_total{stage, error_type}`
    pub dead_lettered: IntCounterVec,
    /// `earshot_consumer_lag_records{group, topic, partition}`
    pub consumer_lag: IntGaugeVec,
    /// `earshot_end_to_end_latency_seconds{stage}`: from `collected_at` to the stage's output.
    pub latency: HistogramVec,
    /// `earshot_deliveries_total{receiver, outcome}`
    pub deliveries: IntCounterVec,
    /// `earshot_watchlist_matches_total{watchlist}`
    pub watchlist_matches: IntCounterVec,
    /// `earshot_sentiment_compound{watchlist}`: VADER compound of each enriched copy, by the
    /// watchlist it is keyed by (`none` when unmatched); -0.05 and 0.05 are bucket bounds, so
    /// the negative and positive shares can be read off the buckets.
    pub sentiment: HistogramVec,
    /// `earshot_alerts_total{route}`
    pub alerts: IntCounterVec,
    /// `earshot_team_alerts_total{team, event}`: alerts to teams, by what happened to them:
    /// `raised`, `escalated` (a later level notified), `acknowledged`, `resolved`.
    pub team_alerts: IntCounterVec,
    /// `earshot_source_items_total{source}`: mentions a collector source yielded, by source
    /// instance (`<kind>/<name>`).
    pub source_items: IntCounterVec,
    /// `earshot_source_errors_total{source, error_type}`: failed requests or connections
    /// (`fetch`, `status`), malformed items or documents skipped (`malformed`), and
    /// publishing or checkpoint failures (`publish`, `checkpoint`).
    pub source_errors: IntCounterVec,
    /// `earshot_source_last_success_timestamp_seconds{source}`: Unix time of the last poll or
    /// stream read that succeeded, items or not.
    pub source_last_success: IntGaugeVec,
    /// `earshot_source_healthy{source}`: 1 while the source is healthy, 0 while it is quiet or
    /// failing (the state its last `SourceHealth` event reported).
    pub source_healthy: IntGaugeVec,
    /// `earshot_source_deletes_total{source}`: deletions a source reported (Mastodon
    /// `delete`, Jetstream delete commits). Counted only: no retraction record exists yet.
    pub source_deletes: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let received = counter(
            "earshot_records_received_total",
            "Records a stage received.",
            &["stage"],
        );
        let sent = counter(
            "earshot_records_sent_total",
            "Records a stage produced and had acknowledged.",
            &["stage"],
        );
        let errors = counter(
            "earshot_errors_total",
            "Errors, by stage and type.",
            &["stage", "error_type"],
        );
        let discarded = counter(
            "earshot_records_discarded_total",
            "Records a stage dropped; intentional=true for filtering.",
            &["stage", "intentional"],
        );
        let dead_lettered = counter(
            "earshot_records_dead_lettered_total",
            "Records sent to the dead-letter topic.",
            &["stage", "error_type"],
        );
        let deliveries = counter(
            "earshot_deliveries_total",
            "Alert deliveries by receiver and outcome.",
            &["receiver", "outcome"],
        );
        let watchlist_matches = counter(
            "earshot_watchlist_matches_total",
            "Mentions that matched a watchlist.",
            &["watchlist"],
        );
        let alerts = counter(
            "earshot_alerts_total",
            "Alerts raised, by route.",
            &["route"],
        );
        let team_alerts = counter(
            "earshot_team_alerts_total",
            "Alerts to teams: raised, escalated, acknowledged, resolved.",
            &["team", "event"],
        );
        let source_items = counter(
            "earshot_source_items_total",
            "Mentions a collector source yielded.",
            &["source"],
        );
        let source_errors = counter(
            "earshot_source_errors_total",
            "Collector source errors, by source instance and type.",
            &["source", "error_type"],
        );
        let source_deletes = counter(
            "earshot_source_deletes_total",
            "Deletions a collector source reported.",
            &["source"],
        );
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let source_last_success = gauge(
            "earshot_source_last_success_timestamp_seconds",
            "Unix time of a source's last successful poll or stream read.",
            &["source"],
        );
        let source_healthy = gauge(
            "earshot_source_healthy",
            "1 while a source is healthy, 0 while it is quiet or failing.",
            &["source"],
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "earshot_consumer_lag_records",
                "Records behind the end of the partition.",
            ),
            &["group", "topic", "partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("metric registered once");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "earshot_end_to_end_latency_seconds",
                "Seconds from collection of a mention to a stage's acknowledged output.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("metric registered once");
        let sentiment = HistogramVec::new(
            HistogramOpts::new(
                "earshot_sentiment_compound",
                "VADER compound sentiment of enriched mentions, -1..1, by watchlist.",
            )
            .buckets(vec![-0.75, -0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 0.75, 1.0]),
            &["watchlist"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(sentiment.clone()))
            .expect("metric registered once");
        Metrics {
            registry,
            received,
            sent,
            errors,
            discarded,
            dead_lettered,
            consumer_lag,
            latency,
            deliveries,
            watchlist_matches,
            sentiment,
            alerts,
            team_alerts,
            source_items,
            source_errors,
            source_last_success,
            source_healthy,
            source_deletes,
        }
    }

    /// Records the latency since `collected_at_us` for `stage`.
    pub fn observe_latency(&self, stage: &str, collected_at_us: i64) {
        self.latency
            .with_label_values(&[stage])
            .observe(seconds_since(collected_at_us));
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("text encoding is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Registry::new())
    }
}

/// Seconds from `micros` (since the epoch) to now; 0 for a time in the future (clock skew
/// between the collector's host and this one).
pub fn seconds_since(micros: i64) -> f64 {
    ((crate::model::now_micros() - micros) as f64 / 1e6).max(0.0)
}

/// Liveness and readiness of one process, shared by its loops.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    started: Instant,
    stall_timeout: Duration,
    /// Milliseconds since `started` of the last loop tick, per registered loop.
    loops: std::sync::Mutex<Vec<(String, Arc<AtomicI64>)>>,
    checks: std::sync::Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

/// A processing loop's heartbeat.
#[derive(Clone)]
pub struct Heartbeat {
    started: Instant,
    last_ms: Arc<AtomicI64>,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as i64, Ordering::Relaxed);
    }
}

/// A readiness condition (joined the group, broker reachable, database reachable).
#[derive(Clone)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Health {
    pub fn new(stall_timeout: Duration) -> Self {
        Health {
            inner: Arc::new(HealthInner {
                started: Instant::now(),
                stall_timeout,
                loops: Default::default(),
                checks: Default::default(),
            }),
        }
    }

    /// Registers a loop that must keep beating for `/healthz` to pass.
    pub fn heartbeat(&self, name: &str) -> Heartbeat {
        let beat = Heartbeat {
            started: self.inner.started,
            last_ms: Arc::new(AtomicI64::new(0)),
        };
        beat.beat();
        self.inner
            .loops
            .lock()
            .expect("poisoned")
            .push((name.to_owned(), beat.last_ms.clone()));
        beat
    }

    /// Registers a condition that must hold for `/readyz` to pass; starts false.
    pub fn ready_flag(&self, name: &str) -> ReadyFlag {
        let flag = Arc::new(AtomicBool::new(false));
        self.inner
            .checks
            .lock()
            .expect("poisoned")
            .push((name.to_owned(), flag.clone()));
        ReadyFlag(flag)
    }

    /// Names of stalled loops; empty when live.
    pub fn stalled(&self) -> Vec<String> {
        let now = self.inner.started.elapsed().as_millis() as i64;
        let limit = self.inner.stall_timeout.as_millis() as i64;
        self.inner
            .loops
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(_, last)| now - last.load(Ordering::Relaxed) > limit)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Names of readiness conditions that do not hold; empty when ready. A process whose
    /// components have not registered any condition yet is still starting.
    pub fn not_ready(&self) -> Vec<String> {
        let checks = self.inner.checks.lock().expect("poisoned");
        if checks.is_empty() {
            return vec!["starting".to_owned()];
        }
        checks
            .iter()
            .filter(|(_, flag)| !flag.load(Ordering::Relaxed))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    health: Health,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    serve_with(listen, metrics, health, Router::new(), shutdown).await
}

/// [`serve`], with a service's own routes beside the three (the router's API).
pub async fn serve_with(
    listen: SocketAddr,
    metrics: Metrics,
    health: Health,
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(ServerState { metrics, health })
        .merge(routes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "telemetry server failed");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(addr)
}

async fn metrics_handler(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn healthz_handler(State(state): State<ServerState>) -> impl IntoResponse {
    let stalled = state.health.stalled();
    if stalled.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: {}\n", stalled.join(", ")),
        )
    }
}

async fn readyz_handler(State(state): State<ServerState>) -> impl IntoResponse {
    let waiting = state.health.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", waiting.join(", ")),
        )
    }
}

/// Installs the global tracing subscriber (text or JSON to stderr). Safe to call twice.
pub fn init_tracing(config: &TelemetryConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EARSHOT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// W3C trace context (`traceparent: 00-<trace id>-<span id>-01`) for following one mention
/// through all four services in the logs.
pub mod trace_context {
    /// A new trace for a mention entering the pipeline.
    pub fn new_traceparent() -> String {
        // Not zero: W3C trace context forbids an all-zero trace id.
        let trace = rand::random::<u128>().max(1);
        format!("00-{trace:032x}-{}-01", span_id())
    }

    /// A new span id. Ids come from the thread's own generator (seeded from the OS once), so
    /// that a mention entering the pipeline costs no system call; they need to be unique,
    /// not secret.
    fn span_id() -> String {
        format!("{:016x}", rand::random::<u64>().max(1))
    }

    /// The same trace with a new span id, for a stage's output.
    pub fn child(parent: Option<&[u8]>) -> String {
        match parent
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(trace_id)
        {
            Some(trace) => format!("00-{trace}-{}-01", span_id()),
            None => new_traceparent(),
        }
    }

    /// The trace id of a `traceparent` value.
    pub fn trace_id(traceparent: &str) -> Option<&str> {
        let mut parts = traceparent.split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_registered_condition() {
        let health = Health::new(Duration::from_secs(30));
        assert_eq!(health.not_ready(), vec!["starting"]);
        let joined = health.ready_flag("joined group");
        let broker = health.ready_flag("broker reachable");
        assert_eq!(health.not_ready(), vec!["joined group", "broker reachable"]);
        joined.set(true);
        broker.set(true);
        assert!(health.not_ready().is_empty());
        broker.set(false);
        assert_eq!(health.not_ready(), vec!["broker reachable"]);
    }

    #[test]
    fn a_loop_that_stops_beating_is_reported_as_stalled() {
        let health = Health::new(Duration::from_millis(20));
        let beat = health.heartbeat("enricher");
        assert!(health.stalled().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(health.stalled(), vec!["enricher"]);
        beat.beat();
        assert!(health.stalled().is_empty());
    }

    #[test]
    fn trace_context_keeps_the_trace_and_renews_the_span() {
        let parent = trace_context::new_traceparent();
        let child = trace_context::child(Some(parent.as_bytes()));
        assert_eq!(
            trace_context::trace_id(&parent),
            trace_context::trace_id(&child)
        );
        assert_ne!(parent, child);
        assert!(trace_context::trace_id(&trace_context::child(Some(b"garbage"))).is_some());
        for traceparent in [&parent, &child] {
            let parts: Vec<&str> = traceparent.split('-').collect();
            let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lengths, [2, 32, 16, 2], "{traceparent}");
            assert!(
                traceparent
                    .bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{traceparent}"
            );
        }
    }
}
