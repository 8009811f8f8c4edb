//! The router: decides which enriched mentions become alerts, delivers each alert to its
//! receiver with retries, and publishes the `Alert` (with its deliveries) for the sink.
//!
//! A delivery that still fails after every retry is never dropped: the alert goes to the
//! dead-letter topic with the reason, and to the alerts topic with status `failed`.
//! [`Routes::route`] is the pure step (the routing tree, in `routes`); [`RouterStage`] the
//! stage the runner drives; `test_routes` checks fixtures against the tree.

mod channels;
mod delivery;
mod routes;
pub mod test_routes;

use std::sync::Arc;

use bytes::Bytes;
use earshot_core::bus::{headers, OutRecord, Publisher};
use earshot_core::model::DeliveryStatus;
use earshot_core::telemetry::{trace_context, Metrics};
use earshot_core::{Completion, InRecord, Services, Stage, StageError};
use futures::future::{BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;

pub use delivery::{Channel, Deliverer};
pub use routes::{Routed, Routes, RoutesError};

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
    deliverer: Arc<Deliverer>,
    services: Services,
    publisher: Arc<dyn Publisher>,
    metrics: Metrics,
    alerts_topic: Arc<str>,
    deadletter_topic: Arc<str>,
}

impl RouterStage {
    pub fn new(
        services: &Services,
        publisher: Arc<dyn Publisher>,
        shutdown: CancellationToken,
    ) -> Result<Self, RouterError> {
        let config = &services.config.router;
        Ok(RouterStage {
            routes: Routes::new(config)?,
            deliverer: Arc::new(Deliverer::new(config, services.metrics.clone(), shutdown)?),
            services: services.clone(),
            publisher,
            metrics: services.metrics.clone(),
            alerts_topic: Arc::from(services.config.topics.alerts.as_str()),
            deadletter_topic: Arc::from(services.config.topics.deadletter.as_str()),
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
            let alerts = self.routes.evaluate(&enriched);
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
            let deliverer = self.deliverer.clone();
            let publisher = self.publisher.clone();
            let metrics = self.metrics.clone();
            let alerts_topic = self.alerts_topic.clone();
            let deadletter_topic = self.deadletter_topic.clone();
            Box::pin(async move {
                for (mut alert, receiver) in alerts {
                    metrics.alerts.with_label_values(&[&alert.route]).inc();
                    let delivery = deliverer.deliver(&alert, &enriched, &receiver).await?;
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
