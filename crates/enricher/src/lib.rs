//! The enricher: decides what a mention is about and how much it matters, and publishes one
//! `EnrichedMention` per matched watchlist (keyed by watchlist, so that per-watchlist state
//! lives in one router partition), or one with an empty watchlist when nothing matched.
//!
//! [`Enricher::enrich`] is the pure processing step; [`EnricherStage`] is the Kafka-facing
//! wrapper the stage runner drives.

pub mod language;
mod matcher;
pub mod offline;
pub mod reload;
pub mod signals;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use earshot_core::bus::{headers, BusError, OutRecord, Publisher};
use earshot_core::codec::Codecs;
use earshot_core::config::EnricherConfig;
use earshot_core::model::{now_micros, EnrichedMention, Mention, SentenceSentiment, Sentiment};
use earshot_core::telemetry::{trace_context, Metrics};
use earshot_core::{Batch, Completion, InRecord, Services, Stage, StageError};
use earshot_sentiment::{Analysis, SentimentAnalyzer};
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

/// Runs the enricher against Kafka until `shutdown`, reloading the watchlists from
/// `config_file` on SIGHUP or when it changes (see [`reload`]).
pub async fn run_reloading(
    config: earshot_core::Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), EnricherError> {
    let services = Services::kafka_serving_telemetry(config, &shutdown).await?;
    run_with_reload(services, config_file, shutdown).await
}

/// Runs the enricher on the given services (Kafka or the embedded bus) until `shutdown`.
pub async fn run_with(
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), EnricherError> {
    run_with_reload(services, None, shutdown).await
}

/// [`run_with`], reloading the watchlists from `config_file` when one is given.
pub async fn run_with_reload(
    services: Services,
    config_file: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), EnricherError> {
    let publisher = services.publisher("earshot-enricher")?;
    let mut stage = EnricherStage::new(&services, publisher.clone());
    if let Some(path) = config_file {
        let updates = reload::spawn(path, stage.enricher.clone(), reload::POLL, shutdown.clone());
        stage.updates = Some(updates);
    }
    let raw = services.config.topics.raw.clone();
    services
        .run_consumer(stage, STAGE, &[&raw], publisher, shutdown)
        .await?;
    Ok(())
}

/// What the enricher knows: the compiled watchlists and the sentiment analyzers.
pub struct Enricher {
    matcher: WatchlistMatcher,
    /// VADER with its own lexicon: the scores of vaderSentiment 3.3.2.
    sentiment: SentimentAnalyzer,
    /// VADER with a watchlist's `sentiment_lexicon` applied, for the watchlists that have one.
    watchlist_sentiment: HashMap<String, SentimentAnalyzer>,
    /// Spam, intent, reach and urgency.
    signals: signals::Signals,
    language: language::Detector,
}

impl Enricher {
    pub fn new(config: &EnricherConfig) -> Self {
        let sentiment = SentimentAnalyzer::default();
        let watchlist_sentiment = config
            .watchlists
            .iter()
            .filter(|w| !w.sentiment_lexicon.is_empty())
            .map(|w| {
                let overrides = w
                    .sentiment_lexicon
                    .iter()
                    .map(|(word, &valence)| (word.as_str(), Some(valence)));
                (w.name.clone(), sentiment.with_overrides(overrides))
            })
            .collect();
        Enricher {
            matcher: WatchlistMatcher::new(&config.watchlists),
            signals: signals::Signals::new(config),
            language: language::Detector::new(&config.language),
            sentiment,
            watchlist_sentiment,
        }
    }

    /// Enriches one mention: one record per matched watchlist, or one unmatched record.
    ///
    /// Bad input is enriched as far as it goes and flagged in `signals.flags`, never dropped:
    /// text over `max_text_bytes` is cut (`text_truncated`), empty text matches nothing
    /// (`empty_text`), negative counts are read as unknown (`invalid_followers`,
    /// `invalid_engagement`), an implausible `created_at` gives no velocity
    /// (`invalid_created_at`), an undetected language is `unknown_language`.
    ///
    /// Sentiment is VADER's, whole text and per sentence, with the watchlist's lexicon
    /// overrides for the copy keyed by a watchlist that has some; that copy's urgency and the
    /// intents that follow from sentiment (complaint, praise, opportunity) are computed from
    /// its own compound. The other scores are the same on every copy.
    ///
    /// A retraction (a post deleted at its source) is passed through as it is: one copy with
    /// no watchlist, no match and neutral scores, flagged `retraction`, so that the sink marks
    /// the stored post deleted; it is not matched, scored or counted in the spam look-back.
    pub fn enrich(&self, mut mention: Mention) -> Vec<EnrichedMention> {
        if mention.is_retraction() {
            return vec![retraction(mention)];
        }
        let mut flags = Vec::new();
        if self.signals.cap_text(&mut mention) {
            flags.push("text_truncated".to_owned());
        }
        let language = self.language.detect(
            &mention.text,
            &mention.source.kind,
            mention.lang_hint.as_deref(),
        );
        let matches = self.matcher.matches(&mention, language.code.as_deref());
        let analysis = self.sentiment.analyze(&mention.text);
        let assessment = self
            .signals
            .assess(&mention, language.code.as_deref(), flags);
        let scores = self.signals.finish(&assessment, analysis.scores.compound);
        let engagement = &mention.engagement;
        let reach = mention
            .author
            .followers
            .unwrap_or(0)
            .max(0)
            .saturating_add(engagement.likes.max(0))
            .saturating_add(engagement.reposts.max(0))
            .saturating_add(engagement.replies.max(0));
        let template = EnrichedMention {
            mention,
            watchlist: String::new(),
            matches,
            sentiment: sentiment_of(&analysis),
            sentences: sentences_of(analysis),
            language: language.code,
            language_confidence: language.confidence,
            spam_score: scores.spam_score,
            intent: scores
                .intents
                .first()
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned()),
            reach,
            urgency: scores.urgency,
            signals: earshot_core::model::Signals {
                intents: scores.intents,
                spam_reasons: scores.spam_reasons,
                reach_score: scores.reach_score,
                flags: scores.flags,
            },
            enriched_at: now_micros(),
        };
        // One copy per match; the last is the template itself, so that a mention matching
        // one watchlist (most that match any) is not copied at all.
        let count = template.matches.len().max(1);
        let mut copies = Vec::with_capacity(count);
        copies.extend((1..count).map(|_| template.clone()));
        copies.push(template);
        for (k, copy) in copies.iter_mut().enumerate() {
            let Some(found) = copy.matches.get(k) else {
                break;
            };
            copy.watchlist.clone_from(&found.watchlist);
            if let Some(analyzer) = self.watchlist_sentiment.get(&copy.watchlist) {
                let analysis = analyzer.analyze(&copy.mention.text);
                // The intents that follow from sentiment, and urgency, follow this copy's.
                let scores = self.signals.finish(&assessment, analysis.scores.compound);
                copy.intent = scores
                    .intents
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned());
                copy.signals.intents = scores.intents;
                copy.urgency = scores.urgency;
                copy.sentiment = sentiment_of(&analysis);
                copy.sentences = sentences_of(analysis);
            }
        }
        copies
    }
}

/// The one copy of a retraction: nothing is matched or scored.
fn retraction(mention: Mention) -> EnrichedMention {
    EnrichedMention {
        mention,
        watchlist: String::new(),
        matches: Vec::new(),
        sentiment: Sentiment::default(),
        sentences: SentenceSentiment::default(),
        language: None,
        language_confidence: 0.0,
        spam_score: 0.0,
        intent: "unknown".to_owned(),
        reach: 0,
        urgency: 0.0,
        signals: earshot_core::model::Signals {
            flags: vec!["retraction".to_owned()],
            ..Default::default()
        },
        enriched_at: now_micros(),
    }
}

fn sentiment_of(analysis: &Analysis) -> Sentiment {
    let scores = analysis.scores;
    Sentiment {
        neg: scores.neg,
        neu: scores.neu,
        pos: scores.pos,
        compound: scores.compound,
    }
}

fn sentences_of(analysis: Analysis) -> SentenceSentiment {
    let view = analysis.sentences;
    SentenceSentiment {
        count: i32::try_from(view.count).unwrap_or(i32::MAX),
        mean_compound: view.mean_compound,
        min_compound: view.min_compound,
        max_compound: view.max_compound,
        most_negative: view.most_negative.unwrap_or_default(),
    }
}

/// The enricher as a stage: decode `Mention`, enrich, publish each result keyed by watchlist.
///
/// The runner's task reads, batches, decodes and settles records; enriching, encoding and
/// publishing run on a task of their own (the stage's worker), so that the two halves of the
/// work run on two cores. Batches reach the worker in the order they were read and it takes
/// them one at a time, each record in turn: outputs are published in input order (order per
/// key is kept) and the spam look-back sees mentions in the order they were read. With
/// `enricher.workers` above 1, a batch's shares are enriched at once, so within a batch the
/// look-back sees them in the order the threads reach it (which of several identical posts
/// is the one that counts as a duplicate may differ; the window and the count do not).
/// A record's completion resolves once the worker has published its outputs and each is
/// acknowledged.
pub struct EnricherStage {
    enricher: Arc<Enricher>,
    /// New enrichers from the reloader, taken between two records.
    updates: Option<tokio::sync::watch::Receiver<Arc<Enricher>>>,
    batch: Batch,
    /// The worker's half, until the first record starts it.
    output: Option<Output>,
    codecs: Arc<Codecs>,
    /// Batches to the worker, in input order; at most [`QUEUED_BATCHES`] wait.
    work: Option<tokio::sync::mpsc::Sender<Work>>,
    enriched_topic: Arc<str>,
}

/// Batches waiting for the worker, at most: beyond, the runner waits before reading more.
const QUEUED_BATCHES: usize = 4;

/// A batch for the worker: the enricher to use, the records, and where the result of each
/// goes once all of the batch's outputs are acknowledged.
struct Work {
    enricher: Arc<Enricher>,
    records: Vec<Decoded>,
    done: futures::channel::oneshot::Sender<BatchResults>,
}

/// A record as the stage loop's task hands it to the worker: its mention, or why it could not
/// be decoded, and the `traceparent` of its outputs. Decoding there takes that work off the
/// worker, the busier of the two.
struct Decoded {
    mention: Result<Mention, StageError>,
    traceparent: Bytes,
}

/// The result of each record of a batch, in order.
type BatchResults = Arc<Vec<Result<(), StageError>>>;

/// What the worker needs to decode, encode, publish and count.
struct Output {
    codecs: Arc<Codecs>,
    /// Threads that enrich and encode a batch together (`enricher.workers`).
    workers: usize,
    publisher: Arc<dyn Publisher>,
    metrics: Metrics,
    /// `metrics.sent` and the latency histogram for this stage, looked up once.
    sent: IntCounter,
    latency: Histogram,
    enriched_topic: Arc<str>,
    /// Per watchlist (`""` when unmatched): its metrics, looked up once, and its output key.
    by_watchlist: HashMap<String, PerWatchlist>,
}

struct PerWatchlist {
    /// `earshot_watchlist_matches_total{watchlist}`; none for unmatched copies.
    matches: Option<IntCounter>,
    /// `earshot_sentiment_compound{watchlist}` (`none` when unmatched).
    sentiment: Histogram,
    key: Bytes,
}

impl EnricherStage {
    pub fn new(services: &Services, publisher: Arc<dyn Publisher>) -> Self {
        let enriched_topic: Arc<str> = Arc::from(services.config.topics.enriched.as_str());
        EnricherStage {
            enricher: Arc::new(Enricher::new(&services.config.enricher)),
            updates: None,
            batch: Batch {
                max_records: services.config.enricher.batch_size.max(1),
                max_wait: std::time::Duration::from_millis(services.config.enricher.batch_wait_ms),
            },
            output: Some(Output {
                codecs: services.codecs.clone(),
                workers: services.config.enricher.workers.max(1),
                publisher,
                sent: services.metrics.sent.with_label_values(&[STAGE]),
                latency: services.metrics.latency.with_label_values(&[STAGE]),
                metrics: services.metrics.clone(),
                enriched_topic: enriched_topic.clone(),
                by_watchlist: HashMap::new(),
            }),
            work: None,
            codecs: services.codecs.clone(),
            enriched_topic,
        }
    }
}

impl EnricherStage {
    /// Takes the reloader's newest enricher, if any: between two records or batches.
    fn take_update(&mut self) {
        if let Some(updates) = &mut self.updates {
            if updates.has_changed().unwrap_or(false) {
                self.enricher = updates.borrow_and_update().clone();
            }
        }
    }

    /// Hands `records` to the worker (started on the first call) and returns their
    /// completions, in order. They resolve together, once every output of the batch is
    /// acknowledged (each with its own record's result): the runner is woken once per batch,
    /// not once per record or per output.
    async fn submit(&mut self, records: Vec<InRecord>) -> Vec<Completion> {
        self.take_update();
        if let Some(output) = self.output.take() {
            let (work, batches) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
            tokio::spawn(output.run(batches));
            self.work = Some(work);
        }
        let mut decoded = Vec::with_capacity(records.len());
        for record in &records {
            let payload = record.payload.as_deref().unwrap_or_default();
            decoded.push(Decoded {
                mention: self
                    .codecs
                    .mention
                    .decode(payload)
                    .await
                    .map_err(|error| StageError::permanent(error.kind(), error.to_string())),
                traceparent: Bytes::from(trace_context::child(record.header(headers::TRACEPARENT))),
            });
        }
        let (done, results) = futures::channel::oneshot::channel::<BatchResults>();
        let results = results.shared();
        let completions = (0..records.len())
            .map(|i| {
                let topic = self.enriched_topic.clone();
                results
                    .clone()
                    .map(move |results| match results {
                        Ok(results) => results.get(i).cloned().unwrap_or_else(|| {
                            Err(StageError::permanent(
                                "internal",
                                "the enricher's worker gave no result for this record",
                            ))
                        }),
                        // The worker ended before this batch (it panicked): stop without
                        // storing the offset, so that the record is read again after a restart.
                        Err(_) => Err(StageError::Bus(BusError::Publish {
                            topic: topic.to_string(),
                            reason: "the enricher's worker stopped before publishing this record's outputs".into(),
                        })),
                    })
                    .boxed()
            })
            .collect();
        if let Some(work) = &self.work {
            // A send fails only when the worker is gone; the completions then say so.
            // Waits while the worker is behind: records are left in the consumer's queue
            // rather than held here.
            let _ = work
                .send(Work {
                    enricher: self.enricher.clone(),
                    records: decoded,
                    done,
                })
                .await;
        }
        completions
    }
}

/// A record enriched and encoded: all its outputs, or why it has none.
struct Prepared {
    outputs: Result<Vec<Encoded>, StageError>,
    traceparent: Bytes,
    collected_at: i64,
}

/// One enriched copy, encoded.
struct Encoded {
    watchlist: String,
    /// The copy's compound sentiment; none for a retraction, which was not scored.
    compound: Option<f64>,
    payload: Vec<u8>,
}

/// Enriches and encodes one decoded record: the CPU work of a record, which the worker may
/// run on another thread.
fn prepare(enricher: &Enricher, codecs: &Codecs, decoded: Decoded) -> Prepared {
    let Decoded {
        mention,
        traceparent,
    } = decoded;
    let mention = match mention {
        Ok(mention) => mention,
        Err(error) => {
            return Prepared {
                outputs: Err(error),
                traceparent,
                collected_at: 0,
            }
        }
    };
    let collected_at = mention.collected_at;
    let outputs = enricher
        .enrich(mention)
        .into_iter()
        .map(|copy| {
            let payload = codecs
                .enriched
                .encode(&copy)
                .map_err(|error| StageError::permanent("encode", error.to_string()))?;
            Ok(Encoded {
                compound: (!copy.mention.is_retraction()).then_some(copy.sentiment.compound),
                watchlist: copy.watchlist,
                payload,
            })
        })
        .collect();
    Prepared {
        outputs,
        traceparent,
        collected_at,
    }
}

impl Output {
    /// The worker: takes batches in order until the stage is dropped. Each batch's
    /// acknowledgements are awaited by a task of their own, so that the worker goes on with
    /// the next batch meanwhile.
    async fn run(mut self, mut batches: tokio::sync::mpsc::Receiver<Work>) {
        while let Some(Work {
            enricher,
            records,
            done,
        }) = batches.recv().await
        {
            let mut completions = Vec::with_capacity(records.len());
            if self.workers <= 1 {
                // Each record published as soon as it is enriched.
                for decoded in records {
                    let prepared = prepare(&enricher, &self.codecs, decoded);
                    completions.push(self.publish(prepared).await);
                }
            } else {
                // None: the runtime is shutting down; the batch's completions say that the
                // worker stopped, and its offsets are not stored.
                let Some(prepared) = self.prepare_all(enricher, records).await else {
                    return;
                };
                for record in prepared {
                    completions.push(self.publish(record).await);
                }
            }
            tokio::spawn(async move {
                let mut results = Vec::with_capacity(completions.len());
                for completion in completions {
                    results.push(completion.await);
                }
                // The runner gave the batch up (shutdown): it will be read again.
                let _ = done.send(Arc::new(results));
            });
        }
    }

    /// Enriches and encodes a batch's records, in order: each of up to `workers` blocking
    /// threads takes a contiguous share of the batch (here when there is one record). A
    /// panic on one of them ends this worker as a panic here would; `None` when the runtime
    /// is shutting down and cancelled a share.
    async fn prepare_all(
        &self,
        enricher: Arc<Enricher>,
        records: Vec<Decoded>,
    ) -> Option<Vec<Prepared>> {
        let count = records.len();
        let workers = self.workers.min(count);
        if workers <= 1 {
            return Some(
                records
                    .into_iter()
                    .map(|decoded| prepare(&enricher, &self.codecs, decoded))
                    .collect(),
            );
        }
        let share = count.div_ceil(workers);
        let mut records = records.into_iter();
        let mut shares = Vec::with_capacity(workers);
        loop {
            let records: Vec<Decoded> = records.by_ref().take(share).collect();
            if records.is_empty() {
                break;
            }
            let (enricher, codecs) = (enricher.clone(), self.codecs.clone());
            shares.push(tokio::task::spawn_blocking(move || {
                records
                    .into_iter()
                    .map(|decoded| prepare(&enricher, &codecs, decoded))
                    .collect::<Vec<_>>()
            }));
        }
        let mut prepared = Vec::with_capacity(count);
        for share in shares {
            match share.await {
                Ok(share) => prepared.extend(share),
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => return None,
            }
        }
        Some(prepared)
    }

    /// Publishes one prepared record's outputs; the completion resolves once every output
    /// is acknowledged.
    async fn publish(&mut self, prepared: Prepared) -> Completion {
        let Prepared {
            outputs,
            traceparent,
            collected_at,
        } = prepared;
        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(error) => return ready(Err(error)),
        };
        let mut acks = Vec::with_capacity(outputs.len());
        for output in outputs {
            let labelled = self.per_watchlist(&output.watchlist);
            if let Some(compound) = output.compound {
                if let Some(matches) = &labelled.matches {
                    matches.inc();
                }
                labelled.sentiment.observe(compound);
            }
            let key = labelled.key.clone();
            let out = OutRecord {
                topic: self.enriched_topic.clone(),
                key: Some(key),
                payload: Bytes::from(output.payload),
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
    }

    /// The metrics and output key of `watchlist`, looked up once per watchlist.
    fn per_watchlist(&mut self, watchlist: &str) -> &PerWatchlist {
        if !self.by_watchlist.contains_key(watchlist) {
            let labelled = PerWatchlist {
                matches: (!watchlist.is_empty()).then(|| {
                    self.metrics
                        .watchlist_matches
                        .with_label_values(&[watchlist])
                }),
                sentiment: self
                    .metrics
                    .sentiment
                    .with_label_values(&[if watchlist.is_empty() {
                        "none"
                    } else {
                        watchlist
                    }]),
                key: Bytes::copy_from_slice(watchlist.as_bytes()),
            };
            self.by_watchlist.insert(watchlist.to_owned(), labelled);
        }
        &self.by_watchlist[watchlist]
    }
}

impl Stage for EnricherStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            self.submit(vec![record])
                .await
                .pop()
                .expect("one completion per record")
        })
    }

    fn batch(&self) -> Batch {
        self.batch
    }

    /// A batch is enriched with one enricher: a reload takes effect between two batches.
    fn handle_batch(&mut self, records: Vec<InRecord>) -> BoxFuture<'_, Vec<Completion>> {
        Box::pin(self.submit(records))
    }
}

fn ready(result: Result<(), StageError>) -> Completion {
    futures::future::ready(result).boxed()
}

#[cfg(test)]
mod tests {
    use earshot_core::config::WatchlistConfig;
    use earshot_core::model::{mention_id, Author, Engagement, Source};

    use super::*;

    fn mention(text: &str) -> Mention {
        Mention {
            id: mention_id("test", text),
            native_id: text.into(),
            source: Source {
                kind: "test".into(),
                instance: "unit".into(),
            },
            url: None,
            author: Author {
                handle: "@sam".into(),
                name: None,
                followers: Some(10),
                verified: false,
                id: None,
            },
            text: text.into(),
            lang_hint: None,
            created_at: 0,
            collected_at: 0,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        }
    }

    fn enricher() -> Enricher {
        let watchlist = |name: &str, lexicon: &[(&str, f64)]| WatchlistConfig {
            name: name.into(),
            terms: vec![name.into()],
            query: None,
            sentiment_lexicon: lexicon.iter().map(|&(w, v)| (w.to_owned(), v)).collect(),
        };
        Enricher::new(&EnricherConfig {
            watchlists: vec![
                watchlist("skateco", &[("sick", 2.5)]),
                watchlist("parcelly", &[]),
            ],
            ..EnricherConfig::default()
        })
    }

    #[test]
    fn sentiment_is_vaders_and_a_watchlists_lexicon_changes_only_its_copy() {
        let copies = enricher().enrich(mention("Skateco deck and Parcelly shipping, both sick"));
        let by_watchlist = |name: &str| copies.iter().find(|c| c.watchlist == name).unwrap();
        // "sick" is -1.6 in VADER's lexicon; the reference scores this text
        // {neg: 0.355, neu: 0.645, pos: 0.0, compound: -0.5106}.
        let parcelly = by_watchlist("parcelly");
        assert_eq!(
            parcelly.sentiment,
            Sentiment {
                neg: 0.355,
                neu: 0.645,
                pos: 0.0,
                compound: -0.5106
            }
        );
        let skateco = by_watchlist("skateco");
        assert_eq!(skateco.sentiment.neg, 0.0);
        assert!(skateco.sentiment.compound > 0.5, "{:?}", skateco.sentiment);
        assert_eq!(skateco.sentences.max_compound, skateco.sentiment.compound);
    }

    #[test]
    fn a_retraction_passes_through_unmatched_and_unscored() {
        let enricher = enricher();
        let post = mention("Parcelly lost my parcel, terrible service");
        assert_eq!(enricher.enrich(post.clone())[0].watchlist, "parcelly");
        let retraction = Mention::retraction(
            post.source.clone(),
            post.native_id.clone(),
            post.author.clone(),
            Some(post.created_at),
            1_763_888_400_000_000,
        );
        // Even with a text (an ingest client may send one), nothing is matched.
        let copies = enricher.enrich(Mention {
            text: post.text.clone(),
            ..retraction
        });
        assert_eq!(copies.len(), 1);
        let copy = &copies[0];
        assert_eq!(copy.mention.id, post.id);
        assert_eq!(copy.mention.deleted_at, Some(1_763_888_400_000_000));
        assert_eq!(copy.watchlist, "");
        assert!(copy.matches.is_empty());
        assert_eq!(copy.sentiment, Sentiment::default());
        assert_eq!(copy.spam_score, 0.0);
        assert_eq!(copy.signals.flags, ["retraction"]);
    }

    #[test]
    fn urgency_and_intents_follow_the_copys_own_sentiment() {
        // "sick" is negative in VADER's lexicon (compound -0.5106 here, a complaint);
        // skateco's lexicon makes it praise, so its copy is no complaint and less urgent.
        let mut m = mention("Skateco deck and Parcelly shipping, both sick");
        m.created_at = 1_800_000_000_000_000;
        m.collected_at = m.created_at + 60_000_000;
        let copies = enricher().enrich(m.clone());
        let by_watchlist = |name: &str| copies.iter().find(|c| c.watchlist == name).unwrap();
        let (skateco, parcelly) = (by_watchlist("skateco"), by_watchlist("parcelly"));
        assert!(
            parcelly.sentiment.compound <= -0.5,
            "{:?}",
            parcelly.sentiment
        );
        assert!(skateco.sentiment.compound > 0.0, "{:?}", skateco.sentiment);
        assert_eq!(parcelly.intent, "complaint");
        assert!(!skateco.signals.intents.contains(&"complaint".to_owned()));
        assert!(
            skateco.urgency < parcelly.urgency - 0.2,
            "{} vs {}",
            skateco.urgency,
            parcelly.urgency
        );
        // Each copy's urgency is what the signals give for its own compound.
        let signals = signals::Signals::new(&EnricherConfig::default());
        for copy in [skateco, parcelly] {
            let expected = signals
                .score(
                    &m,
                    copy.sentiment.compound,
                    copy.language.as_deref(),
                    Vec::new(),
                )
                .urgency;
            assert!(
                (copy.urgency - expected).abs() < 1e-12,
                "{}",
                copy.watchlist
            );
        }
    }

    /// Input order is kept through the worker: each mention's copies come out after the
    /// copies of the mentions read before it, keyed by watchlist; an undecodable record is
    /// dead-lettered with its reason; every offset is stored once all is acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stage_keeps_input_order_keys_by_watchlist_and_dead_letters_bad_records() {
        keeps_input_order(1, 4).await;
    }

    /// The same with three threads enriching each batch of eight (shares of three, three and
    /// two records, the bad ones among them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_workers_keep_input_order_and_dead_letter_bad_records() {
        keeps_input_order(3, 8).await;
    }

    async fn keeps_input_order(workers: usize, batch_size: usize) {
        use earshot_core::memory::MemoryBus;
        let bus = MemoryBus::new();
        let config = earshot_core::Config {
            enricher: EnricherConfig {
                watchlists: ["skateco", "parcelly"]
                    .map(|name| WatchlistConfig {
                        name: name.into(),
                        terms: vec![name.into()],
                        query: None,
                        sentiment_lexicon: Default::default(),
                    })
                    .to_vec(),
                batch_size,
                workers,
                ..EnricherConfig::default()
            },
            ..earshot_core::Config::default()
        };
        let services = Services::memory(config, bus.clone()).await.unwrap();
        let (raw, enriched, deadletter) = {
            let topics = &services.config.topics;
            (
                topics.raw.clone(),
                topics.enriched.clone(),
                topics.deadletter.clone(),
            )
        };
        // Which watchlists each input names; `None` is a payload that is not Avro.
        let inputs: Vec<Option<&[&str]>> = (0..40)
            .map(|i| match i % 5 {
                0 => Some(&["parcelly"][..]),
                1 => Some(&["skateco", "parcelly"][..]),
                2 => None,
                3 => Some(&[][..]),
                _ => Some(&["skateco"][..]),
            })
            .collect();
        for (i, watchlists) in inputs.iter().enumerate() {
            let payload = match watchlists {
                Some(names) => {
                    let text = format!("post {i} about {} today", names.join(" and "));
                    let mut m = mention(&text);
                    m.native_id = i.to_string();
                    Bytes::from(services.codecs.mention.encode(&m).unwrap())
                }
                None => Bytes::from_static(b"not avro"),
            };
            let out = OutRecord {
                topic: Arc::from(raw.as_str()),
                key: None,
                payload,
                headers: vec![],
            };
            bus.publish(out).await.await.unwrap();
        }
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(run_with(services.clone(), shutdown.clone()));
        let expected: usize = inputs.iter().flatten().map(|w| w.len().max(1)).sum();
        let started = std::time::Instant::now();
        while !(bus.is_idle() && bus.records(&enriched).len() == expected) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{} of {expected} copies, idle: {}",
                bus.records(&enriched).len(),
                bus.is_idle()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        run.await.unwrap().unwrap();

        let mut got: Vec<(usize, String)> = Vec::new();
        for record in bus.records(&enriched) {
            let copy = services
                .codecs
                .enriched
                .decode(&record.payload)
                .await
                .unwrap();
            assert_eq!(record.key.as_deref(), Some(copy.watchlist.as_bytes()));
            got.push((copy.mention.native_id.parse().unwrap(), copy.watchlist));
        }
        let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        for (i, watchlists) in inputs.iter().enumerate() {
            let mut keys: Vec<&str> = got
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, w)| w.as_str())
                .collect();
            keys.sort_unstable();
            let mut want: Vec<&str> = match watchlists {
                Some([]) => vec![""],
                Some(names) => names.to_vec(),
                None => vec![],
            };
            want.sort_unstable();
            assert_eq!(keys, want, "input {i}");
        }
        let letters = bus.records(&deadletter);
        assert_eq!(letters.len(), inputs.iter().filter(|w| w.is_none()).count());
        for letter in letters {
            let header = |name: &str| {
                letter
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            assert_eq!(
                header(headers::DLQ_ERROR_TYPE).as_deref(),
                Some("bad_magic")
            );
            assert!(header(headers::DLQ_ERROR).is_some_and(|e| e.contains("framing")));
        }
    }

    #[test]
    fn unmatched_mentions_carry_the_sentence_view_too() {
        let copies = enricher().enrich(mention(
            "Love the new lamp. The app is wonderful! The courier was rude and useless.",
        ));
        assert_eq!(copies.len(), 1);
        let sentences = &copies[0].sentences;
        assert_eq!(sentences.count, 3);
        assert!(sentences.min_compound < -0.5, "{sentences:?}");
        assert_eq!(sentences.most_negative, "The courier was rude and useless.");
        assert_eq!(copies[0].sentiment, {
            let s = SentimentAnalyzer::default().polarity_scores(&copies[0].mention.text);
            Sentiment {
                neg: s.neg,
                neu: s.neu,
                pos: s.pos,
                compound: s.compound,
            }
        });
    }
}
