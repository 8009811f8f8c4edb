//! Delivery of alerts to receivers: a generic JSON webhook (optionally signed with
//! HMAC-SHA256), Slack and Microsoft Teams incoming webhooks, PagerDuty Events API v2, and the
//! console (the demo receiver). Every HTTP channel retries with exponential backoff and
//! jitter, honours `Retry-After`, and reuses one delivery id (the idempotency key, and
//! PagerDuty's `dedup_key` is the alert id) across retries. The message bodies are in
//! `channels`.
//!
//! Outbound targets that resolve to loopback, private, link-local or cloud metadata
//! addresses are refused unless the receiver sets `allow_private`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use earshot_core::config::{DeliveryConfig, ReceiverConfig, RouterConfig};
use earshot_core::model::{
    delivery_id, now_micros, Alert, Delivery, DeliveryStatus, EnrichedMention,
};
use earshot_core::telemetry::Metrics;
use earshot_core::StageError;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::grouping::{self, Notification};
use crate::notice::{self, Notice};
use crate::{channels, RouterError};

/// What one delivery sends: one alert, or a notification of several.
#[derive(Clone, Copy)]
enum Message<'a> {
    Alert(&'a Alert, &'a EnrichedMention, &'a Notice),
    Notification(&'a Notification),
}

/// Where a receiver's alerts go.
pub enum Channel {
    /// Generic JSON webhook; signed when it has a key.
    Webhook {
        target: Target,
        signing_key: Option<Vec<u8>>,
    },
    /// Slack incoming webhook, paced to one message per `min_interval`.
    Slack {
        target: Target,
        pacing: Pacing,
    },
    /// Microsoft Teams incoming webhook.
    Teams {
        target: Target,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        target: Target,
        routing_key: String,
        severity: String,
    },
    /// Email over SMTP, STARTTLS required.
    Email(Box<Email>),
    Console,
}

/// An email receiver: its relay and its envelope.
pub struct Email {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    host: String,
    port: u16,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
    allow_private: bool,
}

/// An HTTP endpoint and whether it may be on a private address.
pub struct Target {
    pub url: reqwest::Url,
    pub allow_private: bool,
}

/// Spaces a channel's messages: holding the lock while waiting makes senders queue.
pub struct Pacing {
    min_interval: Duration,
    next: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacing {
    async fn wait_turn(&self) {
        let mut next = self.next.lock().await;
        if let Some(at) = *next {
            tokio::time::sleep_until(at).await;
        }
        *next = Some(tokio::time::Instant::now() + self.min_interval);
    }
}

impl Channel {
    fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Teams { .. } => "teams",
            Channel::PagerDuty { .. } => "pagerduty",
            Channel::Email(_) => "email",
            Channel::Console => "console",
        }
    }
}

pub struct Deliverer {
    receivers: HashMap<String, Receiver>,
    /// Resolves host names to public addresses only, at connection time, so that a name
    /// cannot be re-pointed at a private address between a check and the request.
    public_http: reqwest::Client,
    /// For receivers with `allow_private`.
    any_http: reqwest::Client,
    permits: Arc<Semaphore>,
    metrics: Metrics,
    shutdown: CancellationToken,
}

/// A receiver: its channel, retry policy and circuit breaker.
struct Receiver {
    channel: Channel,
    policy: DeliveryConfig,
    breaker: Breaker,
}

/// Counts consecutive failed attempts to one receiver. At `breaker_failures` the circuit
/// opens for `breaker_open_ms`: deliveries fail without trying, so that their records are
/// dead-lettered and committed instead of holding the partition behind a dead channel. When
/// the time is up the next attempt goes through (a probe): a success closes the circuit, a
/// failure opens it again.
#[derive(Default)]
struct Breaker {
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<tokio::time::Instant>,
}

impl Breaker {
    /// The failure count when the circuit is open now.
    fn open(&self, policy: &DeliveryConfig) -> Option<u32> {
        if policy.breaker_failures == 0 {
            return None;
        }
        let state = self.state.lock().expect("breaker lock");
        let open = state
            .open_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        open.then_some(state.consecutive_failures)
    }

    fn succeeded(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        state.consecutive_failures = 0;
        state.open_until = None;
    }

    /// Counts a failed attempt; true when it opened the circuit.
    fn failed(&self, policy: &DeliveryConfig) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        state.consecutive_failures += 1;
        if policy.breaker_failures == 0 || state.consecutive_failures < policy.breaker_failures {
            return false;
        }
        state.open_until =
            Some(tokio::time::Instant::now() + Duration::from_millis(policy.breaker_open_ms));
        true
    }
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
            let channel = channel(
                receiver,
                Duration::from_millis(config.delivery.request_timeout_ms),
            )?;
            receivers.insert(
                receiver.name.clone(),
                Receiver {
                    channel,
                    policy: config.delivery.for_receiver(receiver),
                    breaker: Breaker::default(),
                },
            );
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
        let notice = Notice::default();
        self.deliver_notice(alert, enriched, receiver, &notice)
            .await
    }

    /// [`Deliverer::deliver`] of one notification: to a person (on call, or named by an
    /// escalation level), at a level, with an acknowledge link (see `notice`). Its delivery
    /// id is of the alert, the receiver, the level and the person.
    pub async fn deliver_notice(
        &self,
        alert: &Alert,
        enriched: &EnrichedMention,
        receiver: &str,
        notice: &Notice,
    ) -> Result<Delivery, StageError> {
        let id = delivery_id(alert.id, &notice.key(receiver));
        self.send(Message::Alert(alert, enriched, notice), id, receiver)
            .await
    }

    /// Delivers a notification of several alerts (a group or a digest) as one message, with
    /// its id as the delivery id; a notification of one alert is that alert's message.
    pub async fn deliver_notification(
        &self,
        notification: &Notification,
        receiver: &str,
    ) -> Result<Delivery, StageError> {
        match &notification.alerts[..] {
            [(alert, enriched)] => self.deliver(alert, enriched, receiver).await,
            _ => {
                self.send(
                    Message::Notification(notification),
                    notification.id,
                    receiver,
                )
                .await
            }
        }
    }

    async fn send(
        &self,
        message: Message<'_>,
        id: uuid::Uuid,
        receiver: &str,
    ) -> Result<Delivery, StageError> {
        let Receiver {
            channel,
            policy,
            breaker,
        } = self.receivers.get(receiver).ok_or_else(|| {
            StageError::permanent("config", format!("no receiver named {receiver}"))
        })?;
        // Messages queued behind a paced channel wait here, before taking a permit, so that
        // a busy Slack channel does not use up the permits the other receivers need.
        if let Channel::Slack { pacing, .. } = channel {
            tokio::select! {
                _ = pacing.wait_turn() => {}
                _ = self.shutdown.cancelled() => return Err(StageError::Interrupted),
            }
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StageError::Interrupted)?;
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(policy.initial_backoff_ms);
        let outcome = loop {
            if let Some(failures) = breaker.open(policy) {
                break Err(format!(
                    "circuit open after {failures} consecutive failed attempts to this receiver; not tried (next probe within {} ms)",
                    policy.breaker_open_ms
                ));
            }
            attempts += 1;
            let result = match channel {
                Channel::Console => {
                    match message {
                        Message::Alert(alert, enriched, _) => {
                            print_alert(alert, enriched, receiver)
                        }
                        Message::Notification(n) => grouping::print(n, receiver),
                    }
                    Ok(())
                }
                Channel::Slack { target, pacing } => {
                    if attempts > 1 {
                        pacing.wait_turn().await;
                    }
                    let body = match message {
                        Message::Alert(alert, enriched, notice) => {
                            let mut body = channels::slack(alert, enriched);
                            notice::slack(&mut body, notice);
                            body
                        }
                        Message::Notification(n) => grouping::slack(n),
                    };
                    self.post(target, &body, &[]).await
                }
                Channel::Teams { target } => {
                    let body = match message {
                        Message::Alert(alert, enriched, notice) => {
                            let mut body = channels::teams(alert, enriched);
                            notice::teams(&mut body, notice);
                            body
                        }
                        Message::Notification(n) => grouping::teams(n),
                    };
                    self.post(target, &body, &[]).await
                }
                Channel::PagerDuty {
                    target,
                    routing_key,
                    severity,
                } => {
                    let body = match message {
                        Message::Alert(alert, enriched, notice) => {
                            let mut body =
                                channels::pagerduty(alert, enriched, routing_key, severity);
                            notice::pagerduty(&mut body, notice);
                            body
                        }
                        Message::Notification(n) => grouping::pagerduty(n, routing_key, severity),
                    };
                    self.post(target, &body, &[]).await
                }
                Channel::Email(email) => self.send_email(email, id, message).await,
                Channel::Webhook {
                    target,
                    signing_key,
                } => {
                    let (body, subject) = match message {
                        Message::Alert(alert, enriched, notice) => {
                            let mut body = serde_json::json!({
                                "delivery_id": id.to_string(),
                                "alert": alert,
                                "mention": enriched,
                            });
                            notice::webhook(&mut body, notice);
                            (body, ("X-Earshot-Alert", alert.id.to_string()))
                        }
                        Message::Notification(n) => (
                            grouping::webhook(n),
                            ("X-Earshot-Group", n.group_id.to_string()),
                        ),
                    };
                    let body = serde_json::to_vec(&body).expect("JSON values serialize");
                    let mut headers = vec![
                        ("Idempotency-Key", id.to_string()),
                        ("X-Earshot-Delivery", id.to_string()),
                        subject,
                    ];
                    if let Some(key) = signing_key {
                        let timestamp = chrono::Utc::now().timestamp().to_string();
                        let signature = channels::signature(key, id, &timestamp, &body);
                        headers.push(("X-Earshot-Timestamp", timestamp));
                        headers.push(("X-Earshot-Signature", signature));
                    }
                    self.post_bytes(target, body, &headers).await
                }
            };
            let opened = match &result {
                Ok(()) => {
                    breaker.succeeded();
                    false
                }
                Err(_) => breaker.failed(policy),
            };
            if opened {
                tracing::error!(receiver, failures = policy.breaker_failures, open_ms = policy.breaker_open_ms, "circuit opened: deliveries to this receiver fail at once until it is probed again");
            }
            match result {
                Ok(()) => break Ok(()),
                Err(error) if !error.retry || attempts >= policy.max_attempts || opened => {
                    break Err(error.message)
                }
                Err(error) => {
                    let wait = error.retry_after.unwrap_or_else(|| jitter(backoff));
                    tracing::warn!(receiver, delivery = %id, attempt = attempts, error = %error.message, wait_ms = wait.as_millis() as u64, "delivery attempt failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err(StageError::Interrupted),
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(policy.max_backoff_ms));
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

    /// Sends PagerDuty `acknowledge` or `resolve` for the alert's incident (`dedup_key` =
    /// the alert id, as its `trigger` had) to a PagerDuty receiver, with the receiver's
    /// retries. A receiver of another channel is skipped.
    pub async fn pagerduty_event(
        &self,
        receiver: &str,
        alert: uuid::Uuid,
        action: &str,
    ) -> Result<(), String> {
        let Some(Receiver {
            channel:
                Channel::PagerDuty {
                    target,
                    routing_key,
                    ..
                },
            policy,
            ..
        }) = self.receivers.get(receiver)
        else {
            return Ok(());
        };
        let body = serde_json::json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": alert.to_string(),
        });
        let mut backoff = Duration::from_millis(policy.initial_backoff_ms);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.post(target, &body, &[]).await {
                Ok(()) => return Ok(()),
                Err(error) if !error.retry || attempts >= policy.max_attempts => {
                    return Err(error.message)
                }
                Err(error) => {
                    let wait = error.retry_after.unwrap_or_else(|| jitter(backoff));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err("interrupted by shutdown".into()),
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(policy.max_backoff_ms));
                }
            }
        }
    }

    async fn send_email(
        &self,
        email: &Email,
        delivery: uuid::Uuid,
        message: Message<'_>,
    ) -> Result<(), AttemptError> {
        use lettre::AsyncTransport;
        if !email.allow_private {
            // lettre resolves the relay itself, so the check is made here, just before
            // (a name re-pointed in between is not caught, unlike the HTTP channels).
            let addresses = tokio::net::lookup_host((email.host.as_str(), email.port))
                .await
                .map_err(|e| AttemptError {
                    message: format!("SMTP {}: {e}", email.host),
                    retry: true,
                    retry_after: None,
                })?;
            for address in addresses {
                if !is_public(address.ip()) {
                    return Err(AttemptError {
                        message: format!("refusing to send to {} ({}): {NOT_PUBLIC} (set allow_private on the receiver to allow it)", email.host, address.ip()),
                        retry: false,
                        retry_after: None,
                    });
                }
            }
        }
        let message = match message {
            Message::Alert(alert, enriched, notice) => {
                // A notification for a person with an address goes to them instead of the list.
                let person = notice
                    .person
                    .as_ref()
                    .and_then(|p| p.email.as_deref())
                    .and_then(|address| address.parse::<lettre::message::Mailbox>().ok())
                    .map(|mailbox| vec![mailbox]);
                let to = person.as_ref().unwrap_or(&email.to);
                channels::email(alert, enriched, delivery, &email.from, to)
            }
            Message::Notification(n) => grouping::email(n, delivery, &email.from, &email.to),
        }
        .map_err(|e| AttemptError {
            message: format!("building the email: {e}"),
            retry: false,
            retry_after: None,
        })?;
        email.transport.send(message).await.map(drop).map_err(|e| {
            // 5xx replies will not pass later; 4xx replies, timeouts and connection or TLS
            // failures may.
            AttemptError {
                message: format!("SMTP {}: {}", email.host, error_chain(&e)),
                retry: !e.is_permanent(),
                retry_after: None,
            }
        })
    }

    async fn post(
        &self,
        target: &Target,
        body: &serde_json::Value,
        headers: &[(&str, String)],
    ) -> Result<(), AttemptError> {
        let body = serde_json::to_vec(body).expect("JSON values serialize");
        self.post_bytes(target, body, headers).await
    }

    async fn post_bytes(
        &self,
        target: &Target,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(), AttemptError> {
        let url = &target.url;
        let http = if target.allow_private {
            &self.any_http
        } else {
            // A literal IP address is not resolved, so it is checked here; names are checked
            // by the resolver when the connection is made.
            check_literal_address(url)?;
            &self.public_http
        };
        let mut request = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| {
            let message = format!("POST {}: {}", redacted(url), error_chain(&e));
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
            message: format!("POST {}: HTTP {status}", redacted(url)),
            retry,
            retry_after,
        })
    }
}

/// The URL without its path and query: Slack, Teams and many webhooks carry their token
/// there, and errors end up in logs and dead-letter headers.
fn redacted(url: &reqwest::Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
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

/// The channel of one receiver, with its secrets read from the environment or files.
fn channel(receiver: &ReceiverConfig, request_timeout: Duration) -> Result<Channel, RouterError> {
    let fail = |reason: String| RouterError::Receiver {
        receiver: receiver.name.clone(),
        reason,
    };
    let target = |url: &Option<String>, url_env: &Option<String>, allow_private: bool| {
        let raw = match (url, url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| fail(format!("environment variable {var} (url_env) is not set")))?,
            (None, None) => unreachable!("validated: url or url_env"),
        };
        let url = reqwest::Url::parse(&raw).map_err(|e| fail(format!("URL is invalid: {e}")))?;
        Ok::<_, RouterError>(Target { url, allow_private })
    };
    if let Some(webhook) = &receiver.webhook {
        let signing_key = secret(&webhook.secret_env, &webhook.secret_file)
            .map_err(&fail)?
            .map(String::into_bytes);
        return Ok(Channel::Webhook {
            target: target(&webhook.url, &webhook.url_env, webhook.allow_private)?,
            signing_key,
        });
    }
    if let Some(slack) = &receiver.slack {
        return Ok(Channel::Slack {
            target: target(&slack.url, &slack.url_env, slack.allow_private)?,
            pacing: Pacing {
                min_interval: Duration::from_millis(slack.min_interval_ms),
                next: tokio::sync::Mutex::new(None),
            },
        });
    }
    if let Some(teams) = &receiver.teams {
        return Ok(Channel::Teams {
            target: target(&teams.url, &teams.url_env, teams.allow_private)?,
        });
    }
    if let Some(email) = &receiver.email {
        let mut tls = lettre::transport::smtp::client::TlsParameters::builder(email.host.clone());
        if let Some(path) = &email.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
            let certificate = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls.build_rustls().map_err(|e| fail(e.to_string()))?;
        let mut transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&email.host)
                .port(email.port)
                .tls(lettre::transport::smtp::client::Tls::Required(tls))
                .timeout(Some(request_timeout));
        if let Some(username) = &email.username {
            let password = secret(&email.password_env, &email.password_file)
                .map_err(&fail)?
                .expect("validated: a password with the username");
            transport =
                transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    username.clone(),
                    password,
                ));
        }
        let parse = |text: &str| {
            text.parse::<lettre::message::Mailbox>()
                .map_err(|e| fail(format!("{text:?} is not an address: {e}")))
        };
        return Ok(Channel::Email(Box::new(Email {
            transport: transport.build(),
            host: email.host.clone(),
            port: email.port,
            from: parse(&email.from)?,
            to: email
                .to
                .iter()
                .map(|to| parse(to))
                .collect::<Result<_, _>>()?,
            allow_private: email.allow_private,
        })));
    }
    if let Some(pagerduty) = &receiver.pagerduty {
        let routing_key = secret(&pagerduty.routing_key_env, &pagerduty.routing_key_file)
            .map_err(&fail)?
            .expect("validated: routing_key_env or routing_key_file");
        return Ok(Channel::PagerDuty {
            target: target(&Some(pagerduty.url.clone()), &None, pagerduty.allow_private)?,
            routing_key,
            severity: pagerduty.severity.clone(),
        });
    }
    Ok(Channel::Console)
}

/// A secret from an environment variable or a file (its trailing newline dropped); `None`
/// when neither is configured.
fn secret(
    env: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<String>, String> {
    let value = match (env, file) {
        (Some(var), _) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err("the secret is empty".to_owned());
    }
    Ok(Some(value))
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
    let review = if alert.review_required {
        format!(" [{}]", channels::review_warning(alert))
    } else {
        String::new()
    };
    println!(
        "ALERT{review} [{route} → {receiver}] {watchlist} {score_name}={score:.2} (≥ {threshold}) {author} (reach {reach}): {text}",
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
