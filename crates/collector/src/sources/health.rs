//! Health of one source instance: its metrics (items, errors, last success) and the watchdog
//! that reports when it goes quiet (nothing yielded for several usual intervals) or keeps
//! failing (several failed steps in a row), and when it recovers. Each change of state is
//! logged, set on `earshot_source_healthy` and published as a `SourceHealth` event that the
//! router can page on.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::SourceHealthConfig;
use earshot_core::model::{now_micros, SourceHealthEvent, SourceHealthState};
use earshot_core::telemetry::Metrics;
use prometheus::{IntCounter, IntGauge};
use tokio_util::sync::CancellationToken;

use super::Output;

/// What the watchdogs of one collector share.
#[derive(Clone)]
pub struct HealthSettings {
    pub config: SourceHealthConfig,
    pub metrics: Metrics,
}

/// The health state of one instance, shared by its steps, committer and watchdog.
#[derive(Clone)]
pub struct SourceHealth {
    inner: Arc<Inner>,
}

struct Inner {
    key: String,
    kind: String,
    name: String,
    settings: HealthSettings,
    items: IntCounter,
    last_success: IntGauge,
    healthy: IntGauge,
    /// Microseconds since the epoch of the last item yielded (start time until then).
    last_item_us: AtomicI64,
    last_success_us: AtomicI64,
    consecutive_failures: AtomicU32,
    last_error: Mutex<Option<String>>,
    state: Mutex<SourceHealthState>,
    sent: IntCounter,
}

impl SourceHealth {
    pub fn new(key: &str, kind: &str, name: &str, settings: HealthSettings) -> Self {
        let metrics = &settings.metrics;
        let healthy = metrics.source_healthy.with_label_values(&[key]);
        healthy.set(1);
        SourceHealth {
            inner: Arc::new(Inner {
                key: key.to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                items: metrics.source_items.with_label_values(&[key]),
                last_success: metrics.source_last_success.with_label_values(&[key]),
                sent: metrics.sent.with_label_values(&[crate::STAGE]),
                healthy,
                last_item_us: AtomicI64::new(now_micros()),
                last_success_us: AtomicI64::new(0),
                consecutive_failures: AtomicU32::new(0),
                last_error: Mutex::new(None),
                state: Mutex::new(SourceHealthState::Healthy),
                settings,
            }),
        }
    }

    /// The step yielded `count` mentions.
    pub fn yielded(&self, count: u64) {
        if count > 0 {
            self.inner.items.inc_by(count);
            self.inner
                .last_item_us
                .store(now_micros(), Ordering::Relaxed);
        }
    }

    /// `count` mentions were acknowledged by the bus.
    pub fn sent(&self, count: u64) {
        self.inner.sent.inc_by(count);
    }

    /// The source reported a deletion.
    pub fn deleted(&self) {
        self.inner
            .settings
            .metrics
            .source_deletes
            .with_label_values(&[&self.inner.key])
            .inc();
    }

    /// A step completed (items or not).
    pub fn succeeded(&self) {
        let now = now_micros();
        self.inner.last_success_us.store(now, Ordering::Relaxed);
        self.inner.last_success.set(now / 1_000_000);
        self.inner.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// A step failed.
    pub fn failed(&self, error_type: &str) {
        self.error(error_type);
        self.inner
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed);
        *self.inner.last_error.lock().expect("poisoned") = Some(error_type.to_owned());
    }

    /// Counts an error that does not fail the step (a malformed item).
    pub fn error(&self, error_type: &str) {
        self.inner
            .settings
            .metrics
            .source_errors
            .with_label_values(&[&self.inner.key, error_type])
            .inc();
    }

    /// The state the instance is in now, given its usual interval.
    pub fn evaluate(&self, usual_interval: Duration) -> SourceHealthState {
        let config = &self.inner.settings.config;
        let failures = self.inner.consecutive_failures.load(Ordering::Relaxed);
        if failures >= config.failing_after_errors {
            return SourceHealthState::Failing;
        }
        let quiet_after =
            usual_interval.as_micros() as i64 * i64::from(config.quiet_after_intervals);
        let since_item = now_micros() - self.inner.last_item_us.load(Ordering::Relaxed);
        if since_item > quiet_after {
            return SourceHealthState::Quiet;
        }
        SourceHealthState::Healthy
    }

    /// Checks the state every `check_interval_ms` until `stop`, and reports every change.
    pub fn watch(
        &self,
        usual_interval: Duration,
        output: Output,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        let every = Duration::from_millis(self.inner.settings.config.check_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let state = health.evaluate(usual_interval);
                let previous = {
                    let mut current = health.inner.state.lock().expect("poisoned");
                    std::mem::replace(&mut *current, state)
                };
                if previous != state {
                    health
                        .report(previous, state, usual_interval, &output)
                        .await;
                }
            }
        })
    }

    /// The event describing the current state.
    pub fn event(&self, state: SourceHealthState, usual_interval: Duration) -> SourceHealthEvent {
        let inner = &self.inner;
        let last_success = inner.last_success_us.load(Ordering::Relaxed);
        SourceHealthEvent {
            source_kind: inner.kind.clone(),
            source_instance: inner.name.clone(),
            state,
            observed_at: now_micros(),
            last_item_at: Some(inner.last_item_us.load(Ordering::Relaxed)),
            last_success_at: (last_success > 0).then_some(last_success),
            consecutive_failures: inner.consecutive_failures.load(Ordering::Relaxed) as i32,
            usual_interval_ms: usual_interval.as_millis() as i64,
            last_error: inner.last_error.lock().expect("poisoned").clone(),
        }
    }

    async fn report(
        &self,
        previous: SourceHealthState,
        state: SourceHealthState,
        usual_interval: Duration,
        output: &Output,
    ) {
        let event = self.event(state, usual_interval);
        self.inner
            .healthy
            .set(i64::from(state == SourceHealthState::Healthy));
        match state {
            SourceHealthState::Healthy => {
                tracing::info!(source = %self.inner.key, ?previous, "source recovered")
            }
            _ => {
                tracing::warn!(source = %self.inner.key, ?state, failures = event.consecutive_failures, "source unhealthy")
            }
        }
        if let Output::Publish(collector) = output {
            if let Err(error) = collector.publish_health(&event).await {
                tracing::error!(source = %self.inner.key, %error, "publishing the source health event failed");
            }
        }
    }
}
