//! The enricher: decides what a mention is about and how much it matters, and publishes one
//! `EnrichedMention` per matched watchlist (keyed by watchlist, so that per-watchlist state
//! lives in one router partition), or one with an empty watchlist when nothing matched.
//!
//! [`Enricher::enrich`] is the pure processing step; [`EnricherStage`] is the Kafka-facing
//! wrapper the stage runner drives.

mod matcher;

use std::sync::Arc;

use bytes::Bytes;
use earshot_core::bus::{headers, OutRecord, Publisher};
use earshot_core::codec::Codecs;
use earshot_core::config::EnricherConfig;
use earshot_core::model::{now_micros, EnrichedMention, Mention, Sentiment};
use earshot_core::telemetry::{trace_context, Metrics};
use earshot_core::{Completion, InRecord, Services, Stage, StageError};
use futures::future::{BoxFuture, FutureExt};
use prometheus::{Histogram, IntCounter};
use tokio_util::sync::CancellationToken;

pub use matcher::WatchlistMatcher;

const STAGE: &str = "enricher";

#[derive(Debug, thiserror::Error)]
pub enum EnricherError {
    #[error(transparent)]
    Service(#[from] earshot_core::service::ServiceError),
    #[error(transparent)]
    Bus(#[from] earshot_core::bus::BusError),
}

/// Runs the enricher against Kafka until `shutdown`.
pub async fn run(
    config: earshot_core::Config,
    shutdown: CancellationToken,
) -> Result<(), EnricherError> {
    let services = Services::kafka_serving_telemetry(config, &shutdown).await?;
    run_with(services, shutdown).await
}

/// Runs the enricher on the given services (Kafka or the embedded bus) until `shutdown`.
pub async fn run_with(
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), EnricherError> {
    let publisher = services.publisher("earshot-enricher")?;
    let stage = EnricherStage::new(&services, publisher.clone());
    let raw = services.config.topics.raw.clone();
    services
        .run_consumer(stage, STAGE, &[&raw], publisher, shutdown)
        .await?;
    Ok(())
}

/// What the enricher knows: the compiled watchlists.
pub struct Enricher {
    matcher: WatchlistMatcher,
}

impl Enricher {
    pub fn new(config: &EnricherConfig) -> Self {
        Enricher {
            matcher: WatchlistMatcher::new(&config.watchlists),
        }
    }

    /// Enriches one mention: one record per matched watchlist, or one unmatched record.
    ///
    /// Until the sentiment and understanding engines land, sentiment, language, spam, intent
    /// and urgency stay at their documented defaults (neutral, none, 0, "unknown", 0); reach
    /// is followers plus engagement.
    pub fn enrich(&self, mention: Mention) -> Vec<EnrichedMention> {
        let matches = self.matcher.matches(&mention.text);
        let engagement = &mention.engagement;
        let reach = mention.author.followers.unwrap_or(0).max(0)
            + engagement.likes.max(0)
            + engagement.reposts.max(0)
            + engagement.replies.max(0);
        let template = EnrichedMention {
            mention,
            watchlist: String::new(),
            matches,
            sentiment: Sentiment::default(),
            sentences: Default::default(),
            language: None,
            language_confidence: 0.0,
            spam_score: 0.0,
            intent: "unknown".to_owned(),
            reach,
            urgency: 0.0,
            enriched_at: now_micros(),
        };
        if template.matches.is_empty() {
            return vec![template];
        }
        template
            .matches
            .iter()
            .map(|m| EnrichedMention {
                watchlist: m.watchlist.clone(),
                ..template.clone()
            })
            .collect()
    }
}

/// The enricher as a stage: decode `Mention`, enrich, publish each result keyed by watchlist.
pub struct EnricherStage {
    enricher: Enricher,
    codecs: Arc<Codecs>,
    publisher: Arc<dyn Publisher>,
    metrics: Metrics,
    /// `metrics.sent` and the latency histogram for this stage, looked up once.
    sent: IntCounter,
    latency: Histogram,
    enriched_topic: Arc<str>,
}

impl EnricherStage {
    pub fn new(services: &Services, publisher: Arc<dyn Publisher>) -> Self {
        EnricherStage {
            enricher: Enricher::new(&services.config.enricher),
            codecs: services.codecs.clone(),
            publisher,
            sent: services.metrics.sent.with_label_values(&[STAGE]),
            latency: services.metrics.latency.with_label_values(&[STAGE]),
            metrics: services.metrics.clone(),
            enriched_topic: Arc::from(services.config.topics.enriched.as_str()),
        }
    }
}

impl Stage for EnricherStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            let (mention_codec, enriched_codec) = (&self.codecs.mention, &self.codecs.enriched);
            let payload = record.payload.as_deref().unwrap_or_default();
            let mention = match mention_codec.decode(payload).await {
                Ok(mention) => mention,
                Err(error) => {
                    return ready(Err(StageError::permanent(error.kind(), error.to_string())))
                }
            };
            let collected_at = mention.collected_at;
            let enriched = self.enricher.enrich(mention);
            let traceparent =
                Bytes::from(trace_context::child(record.header(headers::TRACEPARENT)));
            let mut acks = Vec::with_capacity(enriched.len());
            for copy in &enriched {
                if !copy.watchlist.is_empty() {
                    self.metrics
                        .watchlist_matches
                        .with_label_values(&[&copy.watchlist])
                        .inc();
                }
                let payload = match enriched_codec.encode(copy) {
                    Ok(payload) => payload,
                    Err(error) => {
                        return ready(Err(StageError::permanent("encode", error.to_string())))
                    }
                };
                let out = OutRecord {
                    topic: self.enriched_topic.clone(),
                    key: Some(Bytes::from(copy.watchlist.clone())),
                    payload: Bytes::from(payload),
                    headers: vec![(headers::TRACEPARENT.to_owned(), traceparent.clone())],
                };
                acks.push(self.publisher.publish(out).await);
            }
            let (sent, latency) = (self.sent.clone(), self.latency.clone());
            let count = acks.len() as u64;
            Box::pin(async move {
                for ack in acks {
                    ack.await?;
                }
                sent.inc_by(count);
                latency.observe(earshot_core::telemetry::seconds_since(collected_at));
                Ok(())
            }) as Completion
        })
    }
}

fn ready(result: Result<(), StageError>) -> Completion {
    futures::future::ready(result).boxed()
}
