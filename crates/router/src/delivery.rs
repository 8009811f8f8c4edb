//! Delivery of alerts to receivers: a generic JSON webhook (with retries, exponential backoff
//! with jitter, `Retry-After`, a stable idempotency key) and the console (the demo receiver).
//!
//! Outbound webhook targets that resolve to loopback, private, link-local or cloud metadata
//! addresses are refused unless the receiver sets `allow_private`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use earshot_core::config::{DeliveryConfig, RouterConfig};
use earshot_core::model::{
    delivery_id, now_micros, Alert, Delivery, DeliveryStatus, EnrichedMention,
};
use earshot_core::telemetry::Metrics;
use earshot_core::StageError;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::RouterError;

/// Where a receiver's alerts go.
pub enum Channel {
    Webhook {
        url: reqwest::Url,
        allow_private: bool,
    },
    Console,
}

impl Channel {
    fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Console => "console",
        }
    }
}

pub struct Deliverer {
    receivers: HashMap<String, Channel>,
    /// Resolves host names to public addresses only, at connection time, so that a name
    /// cannot be re-pointed at a private address between a check and the request.
    public_http: reqwest::Client,
    /// For receivers with `allow_private`.
    any_http: reqwest::Client,
    policy: DeliveryConfig,
    permits: Arc<Semaphore>,
    metrics: Metrics,
    shutdown: CancellationToken,
}

/// Why one attempt failed, and whether to try again.
struct AttemptError {
    message: String,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Deliverer {
    pub fn new(
        config: &RouterConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<Self, RouterError> {
        let mut receivers = HashMap::new();
        for receiver in &config.receivers {
            if receiver.discard {
                // The routing tree raises no alert for it.
                continue;
            }
            let channel = match &receiver.webhook {
                Some(webhook) => {
                    let raw = match (&webhook.url, &webhook.url_env) {
                        (Some(url), _) => url.clone(),
                        (None, Some(var)) => {
                            std::env::var(var).map_err(|_| RouterError::Receiver {
                                receiver: receiver.name.clone(),
                                reason: format!(
                                    "environment variable {var} (webhook.url_env) is not set"
                                ),
                            })?
                        }
                        (None, None) => unreachable!("validated: url or url_env"),
                    };
                    let url = reqwest::Url::parse(&raw).map_err(|e| RouterError::Receiver {
                        receiver: receiver.name.clone(),
                        reason: format!("webhook URL is invalid: {e}"),
                    })?;
                    Channel::Webhook {
                        url,
                        allow_private: webhook.allow_private,
                    }
                }
                None => Channel::Console,
            };
            receivers.insert(receiver.name.clone(), channel);
        }
        let client = |public_only: bool| {
            let mut builder = reqwest::Client::builder()
                .timeout(Duration::from_millis(config.delivery.request_timeout_ms))
                .user_agent(concat!("earshot/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none());
            if public_only {
                builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
            }
            builder.build().map_err(|e| RouterError::Receiver {
                receiver: "*".into(),
                reason: e.to_string(),
            })
        };
        let (public_http, any_http) = (client(true)?, client(false)?);
        Ok(Deliverer {
            receivers,
            public_http,
            any_http,
            permits: Arc::new(Semaphore::new(config.delivery.concurrency)),
            policy: config.delivery.clone(),
            metrics,
            shutdown,
        })
    }

    /// Delivers `alert` to `receiver`, retrying as the policy allows. Returns the delivery
    /// record (delivered or failed); `Interrupted` when shutdown came first.
    pub async fn deliver(
        &self,
        alert: &Alert,
        enriched: &EnrichedMention,
        receiver: &str,
    ) -> Result<Delivery, StageError> {
        let channel = self.receivers.get(receiver).ok_or_else(|| {
            StageError::permanent("config", format!("no receiver named {receiver}"))
        })?;
        let id = delivery_id(alert.id, receiver);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StageError::Interrupted)?;
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(self.policy.initial_backoff_ms);
        let outcome = loop {
            attempts += 1;
            let result = match channel {
                Channel::Console => {
                    print_alert(alert, enriched, receiver);
                    Ok(())
                }
                Channel::Webhook { url, allow_private } => {
                    self.post_webhook(url, *allow_private, id, alert, enriched)
                        .await
                }
            };
            match result {
                Ok(()) => break Ok(()),
                Err(error) if !error.retry || attempts >= self.policy.max_attempts => {
                    break Err(error.message)
                }
                Err(error) => {
                    let wait = error.retry_after.unwrap_or_else(|| jitter(backoff));
                    tracing::warn!(receiver, alert = %alert.id, attempt = attempts, error = %error.message, wait_ms = wait.as_millis() as u64, "delivery attempt failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err(StageError::Interrupted),
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(self.policy.max_backoff_ms));
                }
            }
        };
        let (status, last_error, delivered_at) = match outcome {
            Ok(()) => (DeliveryStatus::Delivered, None, Some(now_micros())),
            Err(message) => (DeliveryStatus::Failed, Some(message), None),
        };
        let outcome_label = if status == DeliveryStatus::Delivered {
            "delivered"
        } else {
            "failed"
        };
        self.metrics
            .deliveries
            .with_label_values(&[receiver, outcome_label])
            .inc();
        Ok(Delivery {
            id,
            channel: channel.kind().to_owned(),
            receiver: receiver.to_owned(),
            status,
            attempts: attempts as i32,
            last_error,
            delivered_at,
        })
    }

    async fn post_webhook(
        &self,
        url: &reqwest::Url,
        allow_private: bool,
        delivery: uuid::Uuid,
        alert: &Alert,
        enriched: &EnrichedMention,
    ) -> Result<(), AttemptError> {
        let http = if allow_private {
            &self.any_http
        } else {
            // A literal IP address is not resolved, so it is checked here; names are checked
            // by the resolver when the connection is made.
            check_literal_address(url)?;
            &self.public_http
        };
        let body = serde_json::json!({
            "delivery_id": delivery.to_string(),
            "alert": alert,
            "mention": enriched,
        });
        let response = http
            .post(url.clone())
            .header("Idempotency-Key", delivery.to_string())
            .header("X-Earshot-Delivery", delivery.to_string())
            .header("X-Earshot-Alert", alert.id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let message = format!("POST {url}: {}", error_chain(&e));
                // A refused private address is final; any other failure on the way may pass.
                let retry = !message.contains(NOT_PUBLIC);
                AttemptError {
                    message,
                    retry,
                    retry_after: None,
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
            .map(|wait| wait.min(Duration::from_secs(300)));
        let retry = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        Err(AttemptError {
            message: format!("POST {url}: HTTP {status}"),
            retry,
            retry_after,
        })
    }
}

fn jitter(base: Duration) -> Duration {
    // ±20% so that many routers retrying together spread out.
    let nanos = uuid::Uuid::new_v4().as_u128() as u64 % 400;
    base.mul_f64(0.8 + nanos as f64 / 1000.0)
}

const NOT_PUBLIC: &str = "not a public address";

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110, section 10.2.3).
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn check_literal_address(url: &reqwest::Url) -> Result<(), AttemptError> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(AttemptError {
            message: format!("refusing to deliver to {ip}: {NOT_PUBLIC} (set allow_private on the receiver to allow it)"),
            retry: false,
            retry_after: None,
        }),
        _ => Ok(()),
    }
}

/// Resolves with the system resolver and refuses names with any non-public address.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
                let message = format!("{host} resolves to {}: {NOT_PUBLIC} (set allow_private on the receiver to allow it)", private.ip());
                return Err(message.into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an address is fit for outbound webhooks: not loopback, private, link-local
/// (which includes the 169.254.169.254 metadata service), unspecified, shared or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || a == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

fn print_alert(alert: &Alert, enriched: &EnrichedMention, receiver: &str) {
    let text: String = alert
        .mention_text
        .chars()
        .take(140)
        .collect::<String>()
        .replace('\n', " ");
    println!(
        "ALERT [{route} → {receiver}] {watchlist} {score_name}={score:.2} (≥ {threshold}) {author} (reach {reach}): {text}",
        route = alert.route,
        watchlist = alert.watchlist,
        score_name = alert.score_name,
        score = alert.score,
        threshold = alert.threshold,
        author = alert.author_handle,
        reach = enriched.reach,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (value, expected) in [
            ("7", Some(Duration::from_secs(7))),
            (" 0 ", Some(Duration::ZERO)),
            (
                "Mon, 23 Nov 2026 12:00:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Mon, 23 Nov 2026 11:59:00 GMT", Some(Duration::ZERO)),
            ("soon", None),
            ("-3", None),
        ] {
            assert_eq!(parse_retry_after(value, now), expected, "{value}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connection_time() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let error = match PublicOnlyResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(NOT_PUBLIC), "{error}");
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for (ip, public) in [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("93.184.216.34", true),
            ("2606:4700::1111", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }
}
