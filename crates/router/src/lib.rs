//! The router: decides which enriched mentions become alerts, delivers each alert to its
//! receiver with retries, and publishes the `Alert` (with its deliveries) for the sink.
//!
//! A delivery that still fails after every retry is never dropped: the alert goes to the
//! dead-letter topic with the reason, and to the alerts topic with status `failed`.
//! [`Routes::route`] is the pure step (the routing tree, in `routes`); [`RouterStage`] the
//! stage the runner drives; `test_routes` checks fixtures against the tree.
//!
//! Alerts to teams (`team:` routes) go through `escalation` (who is on call: `oncall`), which
//! keeps them in the state topic (`state`) until resolved; `api` serves acknowledge, resolve
//! and silences on the router's HTTP server. Groups, rate-limit slots and spike baselines
//! are kept in the same topic, so they survive restarts.

pub mod api;
mod channels;
mod delivery;
pub mod digest;
pub mod escalation;
pub mod grouping;
pub mod handover;
mod notice;
pub mod oncall;
mod routes;
pub mod silences;
pub mod spikes;
pub mod state;
pub mod test_routes;

use std::sync::Arc;

use bytes::Bytes;
use earshot_core::bus::{headers, OutRecord, Publisher};
use earshot_core::model::{Alert, Delivery, DeliveryStatus, EnrichedMention};
use earshot_core::telemetry::{trace_context, Metrics};
use earshot_core::{Completion, InRecord, Services, Stage, StageError};
use futures::future::{BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;

pub use delivery::{Channel, Deliverer};
pub use escalation::{Escalations, Tracked};
pub use notice::Notice;
pub use routes::{Routed, Routes, RoutesError, TEAM_PREFIX};
pub use spikes::SpikeDetector;

const STAGE: &str = "router";
/// How long the last save of the spike states at shutdown may take.
const SHUTDOWN_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Service(#[from] earshot_core::service::ServiceError),
    #[error(transparent)]
    Bus(#[from] earshot_core::bus::BusError),
    #[error(transparent)]
    Routes(#[from] RoutesError),
    #[error("receiver {receiver}: {reason}")]
    Receiver { receiver: String, reason: String },
    #[error("router.api: {0}")]
    Api(String),
    #[error("telemetry server: {0}")]
    Telemetry(#[from] std::io::Error),
}

/// Runs the router against Kafka until `shutdown`, serving `/metrics`, `/healthz`, `/readyz`
/// and the API (`router.api`) on `telemetry.listen`.
pub async fn run(
    config: earshot_core::Config,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let services = Services::kafka(config).await?;
    run_serving(services, shutdown).await
}

/// Runs the router on the given services (Kafka or the embedded bus) until `shutdown`,
/// without an HTTP server (the embedded mode serves its own telemetry).
pub async fn run_with(services: Services, shutdown: CancellationToken) -> Result<(), RouterError> {
    start(services, shutdown, false).await
}

/// [`run_with`], serving telemetry and the API on `telemetry.listen`.
pub async fn run_serving(
    services: Services,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    start(services, shutdown, true).await
}

async fn start(
    services: Services,
    shutdown: CancellationToken,
    serve: bool,
) -> Result<(), RouterError> {
    let publisher = services.publisher("earshot-router")?;
    let stage = RouterStage::new(&services, publisher.clone(), shutdown.clone())?;
    let enriched = services.config.topics.enriched.clone();
    let publish = stage.publish_update();
    // Not ready until the state is read; meanwhile the API answers 503 (and `/healthz`
    // passes), so that a slow start is not taken for a dead process.
    let state_loaded = services.health.ready_flag("router state loaded");
    if serve {
        let routes = match &services.config.router.api {
            Some(config) => {
                let token = api_token(config)?;
                let cell = stage.state.clone();
                let api = api::Api {
                    links: stage.ack_links.clone(),
                    token,
                    escalations: stage.escalations.clone(),
                    silences: stage.silences.clone(),
                    publish: publish.clone(),
                    loaded: stage.state.clone(),
                    save_silence: Arc::new(move |id, silence| {
                        let cell = cell.clone();
                        Box::pin(async move {
                            let state = cell.get().ok_or("the state is not read yet")?;
                            let ack = state.save_silence(id, silence.as_ref()).await;
                            ack.await.map_err(|e| e.to_string())
                        })
                    }),
                };
                api::routes(Arc::new(api))
            }
            None => axum::Router::new(),
        };
        earshot_core::telemetry::serve_with(
            services.config.telemetry.listen,
            services.metrics.clone(),
            services.health.clone(),
            routes,
            shutdown.clone(),
        )
        .await?;
    }
    // The state: read it all before the first mention, then keep following it.
    let table = services
        .state_table(&services.config.topics.router_state, "earshot-router")
        .await?;
    let state = state::RouterState::new(table.writer);
    let follower = tokio::spawn(state::follow(
        table.updates,
        state::Restore {
            escalations: stage.escalations.clone(),
            silences: stage.silences.clone(),
            grouper: stage.grouper.clone(),
            outbox: stage.outbox.clone(),
            spikes: stage.spike_inbox.clone(),
            writer_id: state.writer_id,
        },
    ));
    let mut caught_up = table.caught_up;
    tokio::select! {
        result = caught_up.wait_for(|caught| *caught) => {
            result.map_err(|_| earshot_core::bus::BusError::Consume("the state reader stopped".into()))?;
        }
        _ = shutdown.cancelled() => return Ok(()),
    }
    let _ = stage.state.set(state);
    state_loaded.set(true);
    // Stopped with the stage, without cancelling the caller's token (the embedded mode's
    // stages share it).
    let stage_stop = shutdown.child_token();
    // Told of each rebalance by the consumer's callbacks (see `handover`); removed when the
    // router stops.
    let (listener, assigned) = handover::Handover {
        topic: enriched.clone(),
        readiness: stage.readiness.clone(),
        grouper: stage.grouper.clone(),
        escalations: stage.escalations.clone(),
        // A member leaving the group stops heartbeating while it waits: past its session
        // timeout the group hands its partitions over anyway.
        step_timeout: std::time::Duration::from_millis(
            services
                .config
                .kafka
                .drain_timeout_ms
                .min(services.config.kafka.session_timeout_ms / 2),
        ),
    }
    .listener();
    let listening = services.owned.listen(listener);
    // Reads each assigned partition's state to its end ("router-state-catch-up").
    let catch_up = tokio::spawn(handover::catch_up(
        table.reader,
        stage.readiness.clone(),
        assigned,
        stage_stop.clone(),
    ));
    let (owned, readiness) = (services.owned.clone(), stage.readiness.clone());
    let owned_topic = enriched.clone();
    let escalator = tokio::spawn(escalation::run(
        stage.escalations.clone(),
        publish.clone(),
        // Only the alerts of the partitions assigned here whose state is read: a step the
        // previous owner sent and saved last is not sent again.
        Box::new(move |topic: &str, partition| {
            topic == owned_topic
                && owned.owns(&owned_topic, partition)
                && readiness.is_ready(partition)
        }),
        stage_stop.clone(),
    ));
    let result = services
        .run_consumer(stage, STAGE, &[&enriched], publisher, shutdown.clone())
        .await;
    // The consumer is closed: its last revocation was told.
    drop(listening);
    stage_stop.cancel();
    let _ = escalator.await;
    let _ = catch_up.await;
    follower.abort();
    result?;
    Ok(())
}

/// The API's bearer token, from `token_env` or `token_file`.
fn api_token(config: &earshot_core::config::RouterApiConfig) -> Result<String, RouterError> {
    earshot_core::config::read_token(config.token_env.as_deref(), config.token_file.as_deref())
        .map_err(|e| RouterError::Api(format!("router.api: {e}")))
}

/// The router as a stage: decode, evaluate routes, deliver, publish each alert.
pub struct RouterStage {
    routes: Routes,
    /// Alerts to teams and their escalations.
    escalations: Arc<Escalations>,
    /// Silences set by API.
    silences: Arc<silences::Silences>,
    /// Where escalations, silences, groups, rate-limit slots and spike states are saved;
    /// empty until the state is read.
    state: state::StateCell,
    /// Spike states saved by other processes, for `spikes` to take up.
    spike_inbox: spikes::SpikeInbox,
    /// The input partition of each watchlist whose spike state was saved, for the last save
    /// at shutdown.
    spike_partitions: std::collections::HashMap<String, i32>,
    /// Whether each input partition's state was read since it was assigned (`handover`).
    readiness: Arc<handover::Readiness>,
    /// Stops waiting for a partition's state at shutdown.
    shutdown: CancellationToken,
    ack_links: Option<api::AckLinks>,
    /// Groups of the routes with `group_by`, sent through the outbox.
    grouper: Arc<grouping::Grouper>,
    /// Every notification goes through it: receivers' rate limits and digests.
    outbox: Arc<digest::Outbox>,
    services: Services,
    publisher: Arc<dyn Publisher>,
    metrics: Metrics,
    alerts_topic: Arc<str>,
    deadletter_topic: Arc<str>,
    /// Per-watchlist spike detection, when `router.spikes` is set.
    spikes: Option<SpikeDetector>,
}

impl RouterStage {
    pub fn new(
        services: &Services,
        publisher: Arc<dyn Publisher>,
        shutdown: CancellationToken,
    ) -> Result<Self, RouterError> {
        let config = &services.config.router;
        let deliverer = Arc::new(Deliverer::new(
            config,
            services.metrics.clone(),
            shutdown.clone(),
        )?);
        let ack_links = match &config.api {
            Some(api) => api
                .public_base_url
                .as_deref()
                .map(|base| {
                    Ok::<_, RouterError>(api::AckLinks::new(base, api_token(api)?.as_bytes()))
                })
                .transpose()?,
            None => None,
        };
        let state = state::StateCell::default();
        let spike_inbox = spikes::SpikeInbox::default();
        let outbox =
            digest::Outbox::new(config, deliverer.clone(), shutdown.clone(), state.clone());
        let (owned, enriched) = (
            services.owned.clone(),
            services.config.topics.enriched.clone(),
        );
        let owns: grouping::Owns = Arc::new(move |partition| owned.owns(&enriched, partition));
        Ok(RouterStage {
            routes: Routes::new(config)?,
            escalations: Arc::new(Escalations::new(
                config,
                deliverer.clone(),
                ack_links.clone(),
            )?),
            silences: Arc::new(silences::Silences::default()),
            state: state.clone(),
            spike_partitions: Default::default(),
            readiness: Arc::default(),
            ack_links,
            grouper: Arc::new(grouping::Grouper::new(
                &config.routes,
                outbox.clone(),
                shutdown.clone(),
                state,
                owns,
            )),
            shutdown,
            outbox,
            services: services.clone(),
            publisher,
            metrics: services.metrics.clone(),
            alerts_topic: Arc::from(services.config.topics.alerts.as_str()),
            deadletter_topic: Arc::from(services.config.topics.deadletter.as_str()),
            spikes: config
                .spikes
                .clone()
                .map(|spikes| SpikeDetector::new(spikes).with_inbox(spike_inbox.clone())),
            spike_inbox,
        })
    }
}

impl Stage for RouterStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    /// Saves the spike state of every watchlist of the partitions this process is still
    /// assigned, so that the next router goes on from the open windows as they are now.
    fn finish(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (Some(detector), Some(state)) = (&mut self.spikes, self.state.get()) else {
                return;
            };
            // What another replica saved while it had a partition that came back since.
            detector.take_up_held();
            let detector = &*detector;
            let mut acks = Vec::new();
            let enriched = &self.services.config.topics.enriched;
            for (watchlist, spike_state) in detector.states() {
                let Some(partition) = self.spike_partitions.get(watchlist) else {
                    continue;
                };
                // Only the watchlists of the partitions this process is assigned: another
                // replica has taken the others up and saves newer states. Checked as each
                // is saved: the rebalance callback marks a partition revoked here before the
                // group can assign it to another member (which waits for this member to
                // rejoin, up to `max.poll.interval.ms`, far longer than this save may take).
                if !self.services.owned.owns(enriched, *partition) {
                    continue;
                }
                let saved = spikes::SavedSpikes {
                    writer: state.writer_id,
                    state: spike_state.clone(),
                };
                acks.push(state.save_spikes(*partition, watchlist, &saved).await);
            }
            let all = futures::future::join_all(acks);
            match tokio::time::timeout(SHUTDOWN_SAVE_TIMEOUT, all).await {
                Ok(results) => {
                    for error in results.into_iter().filter_map(Result::err) {
                        tracing::warn!(%error, "saving a spike state at shutdown failed");
                    }
                }
                Err(_) => tracing::warn!("saving the spike states at shutdown timed out"),
            }
        })
    }

    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            if !self.readiness.is_ready(record.partition) {
                // Newly assigned: what its previous owner wrote last is applied first.
                tokio::select! {
                    _ = self.readiness.wait_ready(record.partition) => {}
                    _ = self.shutdown.cancelled() => {
                        return futures::future::ready(Err(StageError::Interrupted)).boxed();
                    }
                }
            }
            let payload = record.payload.as_deref().unwrap_or_default();
            let enriched = match self.services.codecs.enriched.decode(payload).await {
                Ok(enriched) => enriched,
                Err(error) => {
                    return futures::future::ready(Err(StageError::permanent(
                        error.kind(),
                        error.to_string(),
                    )))
                    .boxed()
                }
            };
            let mut mention_alerts = self.routes.evaluate(&enriched);
            // Silences set by API mute what a config silence mutes (not the review alert).
            if !mention_alerts.is_empty() && self.silences.silences(&enriched, chrono::Utc::now()) {
                mention_alerts
                    .retain(|(alert, _)| alert.route == earshot_core::config::REVIEW_ROUTE);
            }
            // Spikes are found as windows close, by the mentions' own times; each goes down
            // the tree and its alerts complete with this record's.
            let (found, spike_state) = match &mut self.spikes {
                Some(detector) => {
                    let found = detector.observe(&enriched);
                    let to_save =
                        detector.to_save(&enriched.watchlist, tokio::time::Instant::now());
                    (found, to_save)
                }
                None => (Vec::new(), None),
            };
            // Saved before the record completes (at least every `SAVE_EVERY`, and as each
            // window closes), so a restarted router goes on from it.
            let spike_ack = match (spike_state, self.state.get()) {
                (Some(spike_state), Some(state)) => {
                    self.spike_partitions
                        .insert(enriched.watchlist.clone(), record.partition);
                    let saved = spikes::SavedSpikes {
                        writer: state.writer_id,
                        state: spike_state,
                    };
                    Some(
                        state
                            .save_spikes(record.partition, &enriched.watchlist, &saved)
                            .await,
                    )
                }
                _ => None,
            };
            let enriched = Arc::new(enriched);
            let mut alerts: Vec<(Alert, String, Arc<EnrichedMention>)> = mention_alerts
                .into_iter()
                .map(|(alert, receiver)| (alert, receiver, enriched.clone()))
                .collect();
            for spike in &found {
                alerts.extend(spikes::route(&self.routes, spike));
            }
            if alerts.is_empty() {
                self.metrics
                    .discarded
                    .with_label_values(&[STAGE, "true"])
                    .inc();
                return match spike_ack {
                    Some(ack) => async move {
                        spike_saved(ack).await;
                        Ok(())
                    }
                    .boxed(),
                    None => futures::future::ready(Ok(())).boxed(),
                };
            }
            let traceparent =
                Bytes::from(trace_context::child(record.header(headers::TRACEPARENT)));
            let services = self.services.clone();
            let grouper = self.grouper.clone();
            let outbox = self.outbox.clone();
            let publisher = self.publisher.clone();
            let metrics = self.metrics.clone();
            let alerts_topic = self.alerts_topic.clone();
            let deadletter_topic = self.deadletter_topic.clone();
            let escalations = self.escalations.clone();
            let state = self.state.get().cloned();
            let partition = record.partition;
            Box::pin(async move {
                // The alerts of one record go out concurrently (each maybe in a group or a
                // digest), then are published in order.
                let deliveries =
                    futures::future::join_all(alerts.iter().map(|(alert, receiver, enriched)| {
                        let (grouper, outbox) = (&grouper, &outbox);
                        async move {
                            match alert.team {
                                Some(_) => None,
                                None => Some(
                                    send(grouper, outbox, alert, receiver, enriched, partition)
                                        .await,
                                ),
                            }
                        }
                    }))
                    .await;
                // The spike state's write was enqueued before the deliveries: its
                // acknowledgement is awaited after them (not before), still before the record
                // completes.
                if let Some(ack) = spike_ack {
                    spike_saved(ack).await;
                }
                for ((mut alert, receiver, enriched), delivery) in
                    alerts.into_iter().zip(deliveries)
                {
                    metrics.alerts.with_label_values(&[&alert.route]).inc();
                    // An alert to a team: its first level (or its channels), kept for
                    // escalation, acknowledgement and resolution in the state topic. Any
                    // other went out above, maybe in a group or a digest.
                    let tracked = match delivery {
                        Some(delivery) => {
                            alert.deliveries.push(delivery?);
                            None
                        }
                        None => {
                            let team = alert.team.clone().unwrap_or_default();
                            let Some(tracked) = escalations
                                .notify_team(
                                    &alert,
                                    &enriched,
                                    &team,
                                    &record.topic,
                                    record.partition,
                                )
                                .await?
                            else {
                                // Resolved already: notified and published before.
                                tracing::debug!(alert = %alert.id, %team, "alert to a team read again after it was resolved; not notified again");
                                metrics.discarded.with_label_values(&[STAGE, "true"]).inc();
                                continue;
                            };
                            metrics
                                .team_alerts
                                .with_label_values(&[&team, "raised"])
                                .inc();
                            alert = tracked.alert.clone();
                            Some(tracked)
                        }
                    };
                    let failed = failure_reason(&alert.deliveries);
                    let payload = Bytes::from(
                        services
                            .codecs
                            .alert
                            .encode(&alert)
                            .map_err(|e| StageError::permanent("encode", e.to_string()))?,
                    );
                    let key = Some(Bytes::from(alert.id.to_string()));
                    let mut acks = vec![
                        publisher
                            .publish(OutRecord {
                                topic: alerts_topic.clone(),
                                key: key.clone(),
                                payload: payload.clone(),
                                headers: vec![(
                                    headers::TRACEPARENT.to_owned(),
                                    traceparent.clone(),
                                )],
                            })
                            .await,
                    ];
                    if let Some(reason) = failed {
                        metrics
                            .dead_lettered
                            .with_label_values(&[STAGE, "delivery"])
                            .inc();
                        tracing::error!(alert = %alert.id, receiver, %reason, "delivery failed after every retry; dead-lettering the alert");
                        let source = (record.topic.as_ref(), record.partition, record.offset);
                        acks.push(
                            publisher
                                .publish(delivery_dead_letter(
                                    deadletter_topic.clone(),
                                    key,
                                    payload,
                                    traceparent.clone(),
                                    Some(source),
                                    format!("receiver {receiver}: {reason}"),
                                ))
                                .await,
                        );
                    }
                    if let (Some(tracked), Some(state)) = (&tracked, &state) {
                        acks.push(state.save_alert(tracked).await);
                    }
                    for ack in acks {
                        ack.await?;
                    }
                    metrics.sent.with_label_values(&[STAGE]).inc();
                    metrics.observe_latency(STAGE, alert.mention_collected_at);
                }
                Ok(())
            }) as Completion
        })
    }
}

/// Waits for a spike state's save. A failed one (too large for the topic, broker down) is
/// logged and costs only the state's freshness after a restart: never the record.
async fn spike_saved(ack: earshot_core::bus::Ack) {
    if let Err(error) = ack.await {
        tracing::warn!(%error, "saving a spike state failed");
    }
}

/// The dead-letter record of an alert a delivery of which failed after every retry: the
/// alert's payload under its key, the reason, and the input record it came from (`source`:
/// topic, partition, offset), when a record (not the escalation task) sent it.
fn delivery_dead_letter(
    topic: Arc<str>,
    key: Option<Bytes>,
    payload: Bytes,
    traceparent: Bytes,
    source: Option<(&str, i32, i64)>,
    reason: String,
) -> OutRecord {
    let mut record_headers = vec![(headers::TRACEPARENT.to_owned(), traceparent)];
    if let Some((source_topic, partition, offset)) = source {
        record_headers.extend([
            (
                headers::DLQ_SOURCE_TOPIC.to_owned(),
                Bytes::from(source_topic.to_owned()),
            ),
            (
                headers::DLQ_SOURCE_PARTITION.to_owned(),
                Bytes::from(partition.to_string()),
            ),
            (
                headers::DLQ_SOURCE_OFFSET.to_owned(),
                Bytes::from(offset.to_string()),
            ),
        ]);
    }
    record_headers.extend([
        (
            headers::DLQ_STAGE.to_owned(),
            Bytes::from_static(STAGE.as_bytes()),
        ),
        (
            headers::DLQ_ERROR_TYPE.to_owned(),
            Bytes::from_static(b"delivery"),
        ),
        (headers::DLQ_ERROR.to_owned(), Bytes::from(reason)),
    ]);
    OutRecord {
        topic,
        key,
        payload,
        headers: record_headers,
    }
}

/// The reasons of the failed deliveries among `deliveries`, when any failed.
fn failure_reason(deliveries: &[earshot_core::model::Delivery]) -> Option<String> {
    let reasons: Vec<String> = deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Failed)
        .map(|d| {
            format!(
                "{}: {}",
                d.receiver,
                d.last_error.as_deref().unwrap_or_default()
            )
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

impl RouterStage {
    /// Publishes an alert to a team after it escalated, or was acknowledged or resolved:
    /// the alert on the alerts topic (and the dead-letter topic when a delivery of the step
    /// failed), its entry in the state topic.
    fn publish_update(&self) -> escalation::Publish {
        let services = self.services.clone();
        let publisher = self.publisher.clone();
        let metrics = self.metrics.clone();
        let alerts_topic = self.alerts_topic.clone();
        let deadletter_topic = self.deadletter_topic.clone();
        let state = self.state.clone();
        Arc::new(
            move |tracked: Tracked, step: Vec<earshot_core::model::Delivery>| {
                let (services, publisher, metrics) =
                    (services.clone(), publisher.clone(), metrics.clone());
                let (alerts_topic, deadletter_topic, state) = (
                    alerts_topic.clone(),
                    deadletter_topic.clone(),
                    state.clone(),
                );
                Box::pin(async move {
                    let payload = Bytes::from(
                        services
                            .codecs
                            .alert
                            .encode(&tracked.alert)
                            .map_err(|e| StageError::permanent("encode", e.to_string()))?,
                    );
                    let key = Some(Bytes::from(tracked.alert.id.to_string()));
                    let traceparent = Bytes::from(trace_context::new_traceparent());
                    let mut acks = vec![
                        publisher
                            .publish(OutRecord {
                                topic: alerts_topic,
                                key: key.clone(),
                                payload: payload.clone(),
                                headers: vec![(
                                    headers::TRACEPARENT.to_owned(),
                                    traceparent.clone(),
                                )],
                            })
                            .await,
                    ];
                    if let Some(reason) = failure_reason(&step) {
                        metrics
                            .dead_lettered
                            .with_label_values(&[STAGE, "delivery"])
                            .inc();
                        tracing::error!(alert = %tracked.alert.id, team = %tracked.team, %reason, "escalation delivery failed after every retry; dead-lettering the alert");
                        acks.push(
                            publisher
                                .publish(delivery_dead_letter(
                                    deadletter_topic,
                                    key,
                                    payload,
                                    traceparent,
                                    None,
                                    format!("team {}: {reason}", tracked.team),
                                ))
                                .await,
                        );
                    }
                    if let Some(state) = state.get() {
                        acks.push(state.save_alert(&tracked).await);
                    }
                    for ack in acks {
                        ack.await?;
                    }
                    let event = if tracked.alert.resolved_at.is_some() {
                        "resolved"
                    } else if tracked.alert.acknowledged_at.is_some() && step.is_empty() {
                        "acknowledged"
                    } else {
                        "escalated"
                    };
                    metrics
                        .team_alerts
                        .with_label_values(&[&tracked.team, event])
                        .inc();
                    Ok(())
                }) as BoxFuture<'static, Result<(), StageError>>
            },
        )
    }
}

/// Sends one alert, read from input `partition`: in its route's group when the route groups,
/// else alone, both through the receiver's rate limit. Resolves with the alert's own delivery
/// record once the message that carried it is delivered or has failed.
async fn send(
    grouper: &grouping::Grouper,
    outbox: &Arc<digest::Outbox>,
    alert: &Alert,
    receiver: &str,
    enriched: &Arc<EnrichedMention>,
    partition: i32,
) -> Result<Delivery, StageError> {
    let delivery = match grouper.submit(alert, receiver, enriched.clone(), partition) {
        Some(waiting) => waiting.await.unwrap_or(Err(StageError::Interrupted))?,
        None => {
            let single = grouping::Notification::single(alert.clone(), enriched.clone(), receiver);
            outbox.send(single, receiver).await?
        }
    };
    Ok(grouping::delivery_of(alert, receiver, &delivery))
}

#[cfg(test)]
#[path = "../tests/common/mention.rs"]
mod test_common;

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use earshot_core::bus::{Ack, OwnedPartitions};
    use earshot_core::config::{RouterConfig, SpikesConfig};
    use earshot_core::memory::MemoryBus;
    use earshot_core::table::TableWriter;
    use earshot_core::Config;

    use super::*;

    /// A state table that keeps the keys written, by partition.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(i32, String)>>, Mutex<Vec<Option<Bytes>>>);

    impl TableWriter for Recorder {
        fn partitions(&self) -> i32 {
            2
        }

        fn put(&self, partition: i32, key: &str, value: Option<Bytes>) -> BoxFuture<'_, Ack> {
            self.0.lock().unwrap().push((partition, key.to_owned()));
            self.1.lock().unwrap().push(value);
            Box::pin(async { Box::pin(async { Ok(()) }) as Ack })
        }
    }

    /// Two watchlists, one in each input partition; partition 1 is revoked before the
    /// router stops: only the spike state of partition 0's watchlist is saved at shutdown
    /// (the other one's new owner saves newer ones).
    #[tokio::test]
    async fn at_shutdown_only_the_spike_states_of_owned_partitions_are_saved() {
        let config = Config {
            router: RouterConfig {
                spikes: Some(SpikesConfig {
                    window_secs: 60,
                    ..SpikesConfig::default()
                }),
                ..RouterConfig::default()
            },
            ..Config::default()
        };
        let bus = MemoryBus::new();
        let mut services = Services::memory(config, bus.clone()).await.unwrap();
        services.owned = OwnedPartitions::default();
        let topic = services.config.topics.enriched.clone();
        services.owned.assign(&topic, 0);
        services.owned.assign(&topic, 1);
        let mut stage =
            RouterStage::new(&services, bus.publisher(), CancellationToken::new()).unwrap();
        let writer = Arc::new(Recorder::default());
        let _ = stage.state.set(state::RouterState::new(writer.clone()));

        for (partition, watchlist) in [(0, "acme"), (1, "globex")] {
            let (_, mut enriched) =
                test_common::acme_alert(&format!("spikes-{watchlist}"), "a lamp", "unused");
            enriched.watchlist = watchlist.into();
            let record = InRecord {
                topic: Arc::from(topic.as_str()),
                partition,
                offset: 0,
                key: None,
                payload: Some(Bytes::from(
                    services.codecs.enriched.encode(&enriched).unwrap(),
                )),
                headers: vec![],
            };
            stage.handle(record).await.await.unwrap();
        }
        let saved = std::mem::take(&mut *writer.0.lock().unwrap());
        assert_eq!(
            saved,
            [(0, "spike/acme".to_owned()), (1, "spike/globex".to_owned())],
            "each watchlist's first mention saves its state"
        );

        // Partition 1 is revoked; partition 0 went away and came back meanwhile, and its
        // other owner saved acme's state further along than the one held here.
        services.owned.revoke(&topic, 1);
        let held = stage
            .spikes
            .as_ref()
            .unwrap()
            .states()
            .find(|(w, _)| *w == "acme")
            .unwrap()
            .1
            .clone();
        let mut further = held.clone();
        further.window.mentions += 10;
        stage.spike_inbox.put("acme".into(), further.clone());
        writer.1.lock().unwrap().clear();
        stage.finish().await;
        assert_eq!(
            *writer.0.lock().unwrap(),
            [(0, "spike/acme".to_owned())],
            "saved at shutdown: the owned partition's watchlist only"
        );
        let value = writer.1.lock().unwrap()[0].clone().unwrap();
        let saved: spikes::SavedSpikes = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            saved.state, further,
            "not older than its other owner left it"
        );
    }

    /// Reads a partition to its end only when told to.
    #[derive(Default)]
    struct GatedReader(tokio::sync::Notify);

    impl earshot_core::table::TableReader for GatedReader {
        fn read_to_end(
            &self,
            _partition: i32,
        ) -> BoxFuture<'_, Result<(), earshot_core::bus::BusError>> {
            Box::pin(async move {
                self.0.notified().await;
                Ok(())
            })
        }
    }

    /// A record of a partition newly assigned is handled only once the partition's state
    /// was read to its end: what its previous owner wrote last comes first.
    #[tokio::test]
    async fn the_first_record_of_an_assigned_partition_waits_for_its_state() {
        let bus = MemoryBus::new();
        let mut services = Services::memory(Config::default(), bus.clone())
            .await
            .unwrap();
        services.owned = OwnedPartitions::default();
        let topic = services.config.topics.enriched.clone();
        let mut stage =
            RouterStage::new(&services, bus.publisher(), CancellationToken::new()).unwrap();
        let (listener, assigned) = handover::Handover {
            topic: topic.clone(),
            readiness: stage.readiness.clone(),
            grouper: stage.grouper.clone(),
            escalations: stage.escalations.clone(),
            step_timeout: std::time::Duration::from_secs(1),
        }
        .listener();
        let _listening = services.owned.listen(listener);
        let reader = Arc::new(GatedReader::default());
        let stop = CancellationToken::new();
        let catch_up = tokio::spawn(handover::catch_up(
            reader.clone(),
            stage.readiness.clone(),
            assigned,
            stop.clone(),
        ));

        services.owned.assign(&topic, 0);
        let (_, enriched) = test_common::acme_alert("catch-up", "a lamp", "unused");
        let record = InRecord {
            topic: Arc::from(topic.as_str()),
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(Bytes::from(
                services.codecs.enriched.encode(&enriched).unwrap(),
            )),
            headers: vec![],
        };
        let handling = stage.handle(record);
        tokio::pin!(handling);
        tokio::select! {
            _ = &mut handling => panic!("handled before the partition's state was read"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        reader.0.notify_one();
        handling.await.await.unwrap();
        stop.cancel();
        catch_up.await.unwrap();
    }
}
