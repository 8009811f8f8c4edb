//! The router: decides which enriched mentions become alerts, delivers each alert to its
//! receiver with retries, and publishes the `Alert` (with its deliveries) for the sink.
//!
//! A delivery that still fails after every retry is never dropped: the alert goes to the
//! dead-letter topic with the reason, and to the alerts topic with status `failed`.
//! [`Routes::route`] is the pure step (the routing tree, in `routes`); [`RouterStage`] the
//! stage the runner drives; `test_routes` checks fixtures against the tree.

mod channels;
mod delivery;
pub mod digest;
pub mod grouping;
mod routes;
pub mod spikes;
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
pub use routes::{Routed, Routes, RoutesError};
pub use spikes::SpikeDetector;

const STAGE: &str = "router";

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
}

/// Runs the router against Kafka until `shutdown`.
pub async fn run(
    config: earshot_core::Config,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let services = Services::kafka_serving_telemetry(config, &shutdown).await?;
    run_with(services, shutdown).await
}

/// Runs the router on the given services (Kafka or the embedded bus) until `shutdown`.
pub async fn run_with(services: Services, shutdown: CancellationToken) -> Result<(), RouterError> {
    let publisher = services.publisher("earshot-router")?;
    let stage = RouterStage::new(&services, publisher.clone(), shutdown.clone())?;
    let enriched = services.config.topics.enriched.clone();
    services
        .run_consumer(stage, STAGE, &[&enriched], publisher, shutdown)
        .await?;
    Ok(())
}

/// The router as a stage: decode, evaluate routes, deliver, publish each alert.
pub struct RouterStage {
    routes: Routes,
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
        let outbox = digest::Outbox::new(config, deliverer, shutdown.clone());
        Ok(RouterStage {
            routes: Routes::new(config)?,
            grouper: Arc::new(grouping::Grouper::new(
                &config.routes,
                outbox.clone(),
                shutdown,
            )),
            outbox,
            services: services.clone(),
            publisher,
            metrics: services.metrics.clone(),
            alerts_topic: Arc::from(services.config.topics.alerts.as_str()),
            deadletter_topic: Arc::from(services.config.topics.deadletter.as_str()),
            spikes: config.spikes.clone().map(SpikeDetector::new),
        })
    }
}

impl Stage for RouterStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn handle(&mut self, record: InRecord) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
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
            // Spikes are found as windows close, by the mentions' own times; each goes down
            // the tree and its alerts complete with this record's.
            let found = match &mut self.spikes {
                Some(detector) => detector.observe(&enriched),
                None => Vec::new(),
            };
            let enriched = Arc::new(enriched);
            let mut alerts: Vec<(Alert, String, Arc<EnrichedMention>)> = self
                .routes
                .evaluate(&enriched)
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
                return futures::future::ready(Ok(())).boxed();
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
            Box::pin(async move {
                // The alerts of one record go out concurrently (each maybe in a group or a
                // digest), then are published in order.
                let deliveries =
                    futures::future::join_all(alerts.iter().map(|(alert, receiver, enriched)| {
                        send(&grouper, &outbox, alert, receiver, enriched)
                    }))
                    .await;
                for ((mut alert, receiver, _), delivery) in alerts.into_iter().zip(deliveries) {
                    metrics.alerts.with_label_values(&[&alert.route]).inc();
                    let delivery = delivery?;
                    let failed = (delivery.status == DeliveryStatus::Failed)
                        .then(|| delivery.last_error.clone().unwrap_or_default());
                    alert.deliveries.push(delivery);
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
                        acks.push(
                            publisher
                                .publish(OutRecord {
                                    topic: deadletter_topic.clone(),
                                    key,
                                    payload,
                                    headers: vec![
                                        (headers::TRACEPARENT.to_owned(), traceparent.clone()),
                                        (
                                            headers::DLQ_SOURCE_TOPIC.to_owned(),
                                            Bytes::from(record.topic.to_string()),
                                        ),
                                        (
                                            headers::DLQ_SOURCE_PARTITION.to_owned(),
                                            Bytes::from(record.partition.to_string()),
                                        ),
                                        (
                                            headers::DLQ_SOURCE_OFFSET.to_owned(),
                                            Bytes::from(record.offset.to_string()),
                                        ),
                                        (
                                            headers::DLQ_STAGE.to_owned(),
                                            Bytes::from_static(STAGE.as_bytes()),
                                        ),
                                        (
                                            headers::DLQ_ERROR_TYPE.to_owned(),
                                            Bytes::from_static(b"delivery"),
                                        ),
                                        (
                                            headers::DLQ_ERROR.to_owned(),
                                            Bytes::from(format!("receiver {receiver}: {reason}")),
                                        ),
                                    ],
                                })
                                .await,
                        );
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

/// Sends one alert: in its route's group when the route groups, else alone, both through
/// the receiver's rate limit. Resolves with the alert's own delivery record once the message
/// that carried it is delivered or has failed.
async fn send(
    grouper: &grouping::Grouper,
    outbox: &Arc<digest::Outbox>,
    alert: &Alert,
    receiver: &str,
    enriched: &Arc<EnrichedMention>,
) -> Result<Delivery, StageError> {
    let delivery = match grouper.submit(alert.clone(), receiver, enriched.clone()) {
        Some(waiting) => waiting.await.unwrap_or(Err(StageError::Interrupted))?,
        None => {
            let single = grouping::Notification::single(alert.clone(), enriched.clone(), receiver);
            outbox.send(single, receiver).await?
        }
    };
    Ok(grouping::delivery_of(alert, receiver, &delivery))
}
