//! The source framework: every configured source instance (a kind from config, several named
//! instances each) runs under one supervisor that
//!
//! - runs the instance only while this replica owns it ([`CheckpointStore::acquire`]), and
//!   restores its checkpoint first;
//! - drives its steps (a poll, or one streaming connection), with backoff and jitter after
//!   failures, until shutdown or until ownership moves;
//! - publishes what it yields in order and saves each checkpoint only once every mention
//!   read before it is acknowledged ([`committer`]);
//! - keeps its health: metrics, and `SourceHealth` events when it goes quiet or keeps failing
//!   ([`health`]).
//!
//! A source itself only fetches, parses and maps to [`Mention`]s; it never talks to the bus.

pub mod bluesky;
pub mod discourse;
pub mod hackernews;
pub mod health;
pub mod http;
pub mod mastodon;
pub mod reddit;
pub mod rss;
pub mod x;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use earshot_core::bus::{Ack, BusError};
use earshot_core::checkpoint::CheckpointStore;
use earshot_core::config::CollectorConfig;
use earshot_core::model::Mention;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Collector;
use health::SourceHealth;
use http::{FetchError, PoliteClient};

/// Why a step of a source failed. Every variant is retried by the supervisor, with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The server answered, with a status the source does not expect.
    #[error("{url}: unexpected HTTP {status}")]
    Status { url: String, status: u16 },
    /// The whole document or frame could not be parsed (single bad items are skipped and
    /// counted instead).
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    /// Publishing a mention or saving the checkpoint failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl SourceError {
    /// The `error_type` label of `earshot_source_errors_total`.
    pub fn error_type(&self) -> &'static str {
        match self {
            SourceError::Fetch(FetchError::Status { .. }) | SourceError::Status { .. } => "status",
            SourceError::Fetch(_) => "fetch",
            SourceError::Malformed { .. } => "malformed",
            SourceError::Bus(_) => "publish",
        }
    }
}

/// What a step asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Step again after this delay (a polling source's interval).
    After(Duration),
    /// Step again now (a stream that ended cleanly and is reconnected).
    Now,
}

/// One source instance. `step` fetches once (or holds one streaming connection), passes what
/// it read to [`SourceContext::emit`] with the checkpoint that follows it, and returns.
#[async_trait::async_trait]
pub trait Source: Send {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError>;
    /// The interval at which the source normally yields something; the quiet detection
    /// waits several of these.
    fn usual_interval(&self) -> Duration;
}

/// A configured source instance: its kind, name, and how to build it from a checkpoint.
pub struct Instance {
    pub kind: &'static str,
    pub name: String,
    pub build: Box<dyn Fn(Option<serde_json::Value>) -> Box<dyn Source> + Send + Sync>,
}

impl Instance {
    /// `<kind>/<name>`: the key of its checkpoint, metrics and health events.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Every source instance in the configuration.
pub fn instances(config: &CollectorConfig) -> Vec<Instance> {
    let mut all = Vec::new();
    for rss in &config.sources.rss {
        let rss = rss.clone();
        all.push(Instance {
            kind: rss::KIND,
            name: rss.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(rss::RssSource::new(rss.clone(), checkpoint))
            }),
        });
    }
    for mastodon in &config.sources.mastodon {
        let mastodon = mastodon.clone();
        all.push(Instance {
            kind: mastodon::KIND,
            name: mastodon.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(mastodon::MastodonSource::new(mastodon.clone(), checkpoint))
            }),
        });
    }
    for bluesky in &config.sources.bluesky {
        let bluesky = bluesky.clone();
        all.push(Instance {
            kind: bluesky::KIND,
            name: bluesky.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(bluesky::BlueskySource::new(bluesky.clone(), checkpoint))
            }),
        });
    }
    for hn in &config.sources.hackernews {
        let hn = hn.clone();
        all.push(Instance {
            kind: hackernews::KIND,
            name: hn.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(hackernews::HackerNewsSource::new(hn.clone(), checkpoint))
            }),
        });
    }
    for reddit in &config.sources.reddit {
        let reddit = reddit.clone();
        all.push(Instance {
            kind: reddit::KIND,
            name: reddit.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(reddit::RedditSource::new(reddit.clone(), checkpoint))
            }),
        });
    }
    for discourse in &config.sources.discourse {
        let discourse = discourse.clone();
        all.push(Instance {
            kind: discourse::KIND,
            name: discourse.name.clone(),
            build: Box::new(move |checkpoint| {
                Box::new(discourse::DiscourseSource::new(
                    discourse.clone(),
                    checkpoint,
                ))
            }),
        });
    }
    for x in &config.sources.x {
        let x = x.clone();
        all.push(Instance {
            kind: x::KIND,
            name: x.name.clone(),
            build: Box::new(move |checkpoint| Box::new(x::XSource::new(x.clone(), checkpoint))),
        });
    }
    all
}

/// Where mentions go: the raw topic, or standard output (`earshot collect`).
#[derive(Clone)]
pub enum Output {
    Publish(Box<Collector>),
    /// One JSON object per line; nothing is acknowledged but the line being written.
    Print,
}

/// A step's view of its instance: the shared HTTP client, the output and the health state.
pub struct SourceContext {
    pub kind: &'static str,
    pub name: String,
    pub key: String,
    pub http: Arc<PoliteClient>,
    pub cancel: CancellationToken,
    output: Output,
    pending: mpsc::Sender<Pending>,
    pub health: SourceHealth,
}

/// Mentions enqueued, and the checkpoint to save once they are all acknowledged.
struct Pending {
    acks: Vec<Ack>,
    count: u64,
    checkpoint: Option<Bytes>,
}

impl SourceContext {
    /// The `source` of every mention this instance yields.
    pub fn source(&self) -> earshot_core::model::Source {
        earshot_core::model::Source {
            kind: self.kind.into(),
            instance: self.name.clone(),
        }
    }

    /// Publishes `mentions` in order, then the checkpoint once all of them (and everything
    /// emitted before) are acknowledged. Waits when too much is unacknowledged.
    pub async fn emit(
        &self,
        mentions: Vec<Mention>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<(), SourceError> {
        let mut acks = Vec::with_capacity(mentions.len());
        let count = mentions.len() as u64;
        match &self.output {
            Output::Publish(collector) => {
                for mention in &mentions {
                    match collector.publish(mention).await {
                        Ok(ack) => acks.push(ack),
                        Err(error) => self.malformed("mention", &mention.native_id, &error),
                    }
                }
            }
            Output::Print => {
                let mut stdout = std::io::stdout().lock();
                for mention in &mentions {
                    let line = serde_json::to_string(mention).expect("a mention serializes");
                    let _ = writeln!(stdout, "{line}");
                }
                let _ = stdout.flush();
            }
        }
        self.health.yielded(count);
        let checkpoint = checkpoint.map(|state| {
            let record = serde_json::json!({
                "source": self.key,
                "saved_at": chrono::Utc::now().to_rfc3339(),
                "state": state,
            });
            Bytes::from(record.to_string())
        });
        self.pending
            .send(Pending {
                acks,
                count,
                checkpoint,
            })
            .await
            .map_err(|_| BusError::Closed)?;
        Ok(())
    }

    /// GETs `url` politely (the request `build` makes) and parses the JSON body; a status
    /// other than 2xx, or a body that is not JSON, fails the step.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, SourceError> {
        let response = self.http.send(url, false, build, &self.cancel).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let body = response.bytes().await.map_err(|e| FetchError::Network {
            url: url.to_owned(),
            reason: http::error_chain(&e),
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            let sample: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            tracing::warn!(source = %self.key, %url, error = %e, sample, "malformed JSON response");
            SourceError::Malformed {
                what: format!("response of {url}"),
                reason: e.to_string(),
            }
        })
    }

    /// Counts and logs an item or document that could not be read, with a sample; the
    /// source skips it and goes on.
    pub fn malformed(&self, what: &str, sample: &str, error: &str) {
        self.health.error("malformed");
        let sample: String = sample.chars().take(200).collect();
        tracing::warn!(source = %self.key, what, %error, sample, "malformed item skipped");
    }
}

/// Runs every instance until `shutdown`; each in this replica only while it owns it.
pub async fn run_sources(
    instances: Vec<Instance>,
    store: Arc<dyn CheckpointStore>,
    output: Output,
    http: Arc<PoliteClient>,
    health: health::HealthSettings,
    drain_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for instance in instances {
        let (store, output, http, health, shutdown) = (
            store.clone(),
            output.clone(),
            http.clone(),
            health.clone(),
            shutdown.clone(),
        );
        // Named by its span: task names need tokio_unstable.
        let span = tracing::info_span!("source", key = %instance.key());
        tasks.spawn(
            supervise(
                instance,
                store,
                output,
                http,
                health,
                drain_timeout,
                shutdown,
            )
            .instrument(span),
        );
    }
    while tasks.join_next().await.is_some() {}
}

/// How many emitted batches may wait for their acknowledgements at once.
const PENDING_BATCHES: usize = 64;

/// One instance: acquire, restore, run, and start over after a failure or a lost lease.
async fn supervise(
    instance: Instance,
    store: Arc<dyn CheckpointStore>,
    output: Output,
    http: Arc<PoliteClient>,
    settings: health::HealthSettings,
    drain_timeout: Duration,
    shutdown: CancellationToken,
) {
    let key = instance.key();
    let health = SourceHealth::new(&key, instance.kind, &instance.name, settings.clone());
    let backoff = http.backoff;
    let mut failures = 0u32;
    loop {
        let Some(lease) = store.acquire(&key, shutdown.clone()).await else {
            return;
        };
        let stop = shutdown.child_token();
        let watch_lease = {
            let (lost, stop) = (lease.lost.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = lost.cancelled() => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            })
        };
        let checkpoint = match restore(store.as_ref(), &key, &stop, backoff).await {
            Some(checkpoint) => checkpoint,
            None => {
                watch_lease.abort();
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
        };
        tracing::info!(source = %key, restored = checkpoint.is_some(), "source starting");
        let mut source = (instance.build)(checkpoint);
        let watchdog = health.watch(source.usual_interval(), output.clone(), stop.clone());
        let (pending, queue) = mpsc::channel(PENDING_BATCHES);
        let failed = CancellationToken::new();
        let committer = tokio::spawn(committer(
            queue,
            store.clone(),
            key.clone(),
            health.clone(),
            failed.clone(),
        ));
        let context = SourceContext {
            kind: instance.kind,
            name: instance.name.clone(),
            key: key.clone(),
            http: http.clone(),
            cancel: stop.clone(),
            output: output.clone(),
            pending,
            health: health.clone(),
        };
        loop {
            let step = tokio::select! {
                step = source.step(&context) => Some(step),
                _ = stop.cancelled() => None,
                _ = failed.cancelled() => None,
            };
            let delay = match step {
                None => break,
                Some(Ok(next)) => {
                    failures = 0;
                    health.succeeded();
                    match next {
                        Next::After(delay) => delay,
                        Next::Now => Duration::ZERO,
                    }
                }
                Some(Err(SourceError::Fetch(FetchError::Cancelled))) => break,
                Some(Err(error)) => {
                    failures += 1;
                    health.failed(error.error_type());
                    let delay = backoff.delay(failures);
                    tracing::warn!(source = %key, %error, failures, retry_in_ms = delay.as_millis() as u64, "source step failed");
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => break,
                _ = failed.cancelled() => break,
            }
        }
        // Whatever was emitted is acknowledged and its checkpoint saved before the lease is
        // released, so that the next owner starts exactly where this one stopped.
        drop(context);
        if tokio::time::timeout(drain_timeout, committer)
            .await
            .is_err()
        {
            // Not acknowledged in time: the checkpoint stays where it was, and what follows
            // it is read again by the next run (duplicates, not loss).
            tracing::warn!(source = %key, "acknowledgements did not arrive within the drain timeout; the last checkpoint is kept");
        }
        stop.cancel();
        watchdog.abort();
        watch_lease.abort();
        drop(lease);
        if shutdown.is_cancelled() {
            tracing::info!(source = %key, "source stopped");
            return;
        }
        if failed.is_cancelled() {
            failures += 1;
            let delay = backoff.delay(failures);
            tracing::warn!(source = %key, retry_in_ms = delay.as_millis() as u64, "restarting the source from its last checkpoint");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The checkpoint of `key`, retried with backoff; `Some(None)` when there is none, `None` when
/// stopped first. An unreadable checkpoint is logged and ignored: the source starts afresh.
async fn restore(
    store: &dyn CheckpointStore,
    key: &str,
    stop: &CancellationToken,
    backoff: http::Backoff,
) -> Option<Option<serde_json::Value>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let loaded = tokio::select! {
            loaded = store.load(key) => loaded,
            _ = stop.cancelled() => return None,
        };
        match loaded {
            Ok(None) => return Some(None),
            Ok(Some(bytes)) => {
                let state = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|mut record| record.get_mut("state").map(serde_json::Value::take));
                if state.is_none() {
                    tracing::error!(source = %key, "unreadable checkpoint ignored; the source starts afresh");
                }
                return Some(state);
            }
            Err(error) => {
                let delay = backoff.delay(attempt);
                tracing::warn!(source = %key, %error, "loading the checkpoint failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return None,
                }
            }
        }
    }
}

/// Awaits each batch's acknowledgements in emission order, then saves its checkpoint. On any
/// failure it cancels `failed` and stops: the source restarts from the last saved checkpoint.
async fn committer(
    mut queue: mpsc::Receiver<Pending>,
    store: Arc<dyn CheckpointStore>,
    key: String,
    health: SourceHealth,
    failed: CancellationToken,
) {
    while let Some(batch) = queue.recv().await {
        let acknowledged = futures::future::try_join_all(batch.acks).await;
        if let Err(error) = acknowledged {
            health.error("publish");
            tracing::error!(source = %key, %error, "a mention was not acknowledged; the checkpoint is not saved");
            failed.cancel();
            return;
        }
        health.sent(batch.count);
        if let Some(checkpoint) = batch.checkpoint {
            let saved = store.save(&key, checkpoint).then(|ack| ack).await;
            if let Err(error) = saved {
                health.error("checkpoint");
                tracing::error!(source = %key, %error, "saving the checkpoint failed");
                failed.cancel();
                return;
            }
        }
    }
}
