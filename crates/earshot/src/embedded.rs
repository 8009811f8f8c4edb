//! The embedded mode (`earshot run`): collector, enricher, router and sink in one process over
//! the in-memory bus, with the same acknowledgement semantics as over Kafka.
//!
//! With the bundled sample (or a replay file) it stops by itself once every stage has stored
//! offsets up to the end of every topic; with the HTTP ingest endpoint configured it runs until
//! interrupted. Either way it ends with a summary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use earshot_collector::Collector;
use earshot_core::memory::MemoryBus;
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

/// The built-in configuration of the embedded mode.
pub const DEMO_CONFIG: &str = include_str!("demo.yaml");
/// The bundled sample stream: synthetic mentions of three fictional brands.
pub const SAMPLE: &str = include_str!("../sample/mentions.ndjson");

/// What the run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub mentions: u64,
    pub rejected: u64,
    pub matched_by_watchlist: BTreeMap<String, u64>,
    pub alerts_by_route: BTreeMap<String, u64>,
    pub dead_lettered: u64,
    pub elapsed: Duration,
    pub ingest_addr: Option<SocketAddr>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "── summary ─────────────────────────────────────────")?;
        writeln!(f, "mentions collected   {:>8}", self.mentions)?;
        if self.rejected > 0 {
            writeln!(f, "rejected lines       {:>8}", self.rejected)?;
        }
        for (watchlist, count) in &self.matched_by_watchlist {
            writeln!(f, "matched {watchlist:<13}{count:>8}")?;
        }
        let alerts: u64 = self.alerts_by_route.values().sum();
        writeln!(f, "alerts               {alerts:>8}")?;
        for (route, count) in &self.alerts_by_route {
            writeln!(f, "  {route:<24}{count:>6}")?;
        }
        writeln!(f, "dead-lettered        {:>8}", self.dead_lettered)?;
        write!(f, "took {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// Where the embedded mode's mentions come from.
/// With the HTTP endpoint or collector sources configured, the run lasts until interrupted.
pub enum Input<'a> {
    /// The bundled sample, or any NDJSON text.
    Text(&'a str),
    /// The sources in the config (HTTP ingest runs until `shutdown`; a replay file stops).
    Configured,
}

/// Runs every stage until the input is consumed (or `shutdown`), then drains and summarizes.
/// `on_ready` is told the ingest address once the HTTP endpoint listens.
pub async fn run(
    config: Config,
    input: Input<'_>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Option<SocketAddr>),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await?;
    let telemetry_addr = earshot_core::telemetry::serve(
        services.config.telemetry.listen,
        services.metrics.clone(),
        services.health.clone(),
        shutdown.clone(),
    )
    .await
    .context("starting the telemetry server")?;
    tracing::info!(%telemetry_addr, "metrics at /metrics");

    // Every group must exist before the first record is published, or the log could be
    // trimmed below a stage that has not joined yet.
    let topics = &services.config.topics;
    let prefix = &services.config.kafka.group_prefix;
    bus.declare_group(&format!("{prefix}-enricher"), &[&topics.raw]);
    bus.declare_group(&format!("{prefix}-router"), &[&topics.enriched]);
    bus.declare_group(
        &format!("{prefix}-{}", earshot_sink::GROUP),
        &[&topics.enriched, &topics.alerts],
    );

    // The stages stop only after the input is done and drained, or on shutdown.
    let stages = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (services, token) = (services.clone(), stages.clone());
        tasks.spawn(async move {
            earshot_enricher::run_with(services, token)
                .await
                .context("enricher")
        });
    }
    {
        let (services, token) = (services.clone(), stages.clone());
        tasks.spawn(async move {
            earshot_router::run_with(services, token)
                .await
                .context("router")
        });
    }
    {
        let (services, token) = (services.clone(), stages.clone());
        tasks.spawn(async move {
            earshot_sink::run_with(services, token)
                .await
                .context("sink")
        });
    }

    services
        .health
        .ready_flag("embedded: stages running")
        .set(true);
    let collector = Collector::new(&services)?;
    let mut rejected = 0;
    let mut ingest_addr = None;
    match input {
        Input::Text(text) => {
            on_ready(None);
            let replay = collector
                .replay_from(
                    text.as_bytes(),
                    Path::new("bundled sample"),
                    text.len() as u64,
                    0,
                    shutdown.clone(),
                )
                .await?;
            rejected = replay.rejected;
        }
        Input::Configured => {
            if let Some(http) = &services.config.collector.http {
                ingest_addr = Some(collector.serve_http(http, shutdown.clone()).await?);
            }
            let sources = collector.spawn_sources(shutdown.clone()).await?;
            on_ready(ingest_addr);
            if let Some(replay) = &services.config.collector.replay {
                rejected = collector
                    .replay(&replay.path, replay.rate_per_sec, shutdown.clone())
                    .await?
                    .rejected;
            }
            if ingest_addr.is_some() || sources.is_some() {
                shutdown.cancelled().await;
            }
            if let Some(sources) = sources {
                // They stop at shutdown with what they emitted acknowledged.
                let _ = sources.await;
            }
        }
    }

    // Wait until every stage has caught up with every topic (or shutdown), then stop them.
    let mut idle_ticks = 0;
    while !shutdown.is_cancelled() && idle_ticks < 3 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.cancelled() => {}
            Some(finished) = tasks.join_next() => {
                finished.context("a stage panicked")??;
                anyhow::bail!("a stage stopped before the input was processed");
            }
        }
        idle_ticks = if bus.is_idle() { idle_ticks + 1 } else { 0 };
    }
    stages.cancel();
    while let Some(finished) = tasks.join_next().await {
        finished.context("a stage panicked")??;
    }

    let metrics = &services.metrics;
    let mut summary = Summary {
        mentions: metrics.sent.with_label_values(&["collector"]).get(),
        rejected,
        elapsed: started.elapsed(),
        ingest_addr,
        ..Summary::default()
    };
    for family in metrics.registry.gather() {
        let label = |m: &prometheus::proto::Metric, name: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        for m in family.get_metric() {
            let value = m.get_counter().get_value() as u64;
            match family.name() {
                "earshot_watchlist_matches_total" => {
                    summary
                        .matched_by_watchlist
                        .insert(label(m, "watchlist"), value);
                }
                "earshot_alerts_total" => {
                    summary.alerts_by_route.insert(label(m, "route"), value);
                }
                "earshot_records_dead_lettered_total" => summary.dead_lettered += value,
                _ => {}
            }
        }
    }
    Ok(summary)
}
