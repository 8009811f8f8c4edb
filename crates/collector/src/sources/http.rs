//! Politeness towards the servers sources read from: one HTTP client per collector with a
//! User-Agent naming Earshot, connect and read timeouts, a minimum interval between requests
//! to the same host (across all sources), `Retry-After` honoured on 429 and 503, and
//! exponential backoff with jitter on network errors and 5xx.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use earshot_core::config::PolitenessConfig;
use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// Why a request gave no usable response after every attempt.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("cancelled")]
    Cancelled,
}

/// The shared HTTP client of a collector's sources.
pub struct PoliteClient {
    client: reqwest::Client,
    /// Streams get no overall timeout, only the read timeout; polls get both.
    request_timeout: Duration,
    per_host_interval: Duration,
    /// Earliest time of the next request, per host.
    next_slot: Mutex<HashMap<String, Instant>>,
    pub backoff: Backoff,
    max_attempts: u32,
    /// For connections made without reqwest (WebSocket).
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl PoliteClient {
    pub fn new(config: &PolitenessConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(&config.user_agent)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .read_timeout(Duration::from_millis(config.read_timeout_ms))
            .build()?;
        Ok(PoliteClient {
            client,
            request_timeout: Duration::from_millis(
                config.connect_timeout_ms + config.read_timeout_ms,
            ),
            per_host_interval: Duration::from_millis(config.per_host_interval_ms),
            next_slot: Mutex::new(HashMap::new()),
            backoff: Backoff {
                initial: Duration::from_millis(config.initial_backoff_ms),
                max: Duration::from_millis(config.max_backoff_ms),
            },
            max_attempts: config.max_attempts,
            user_agent: config.user_agent.clone(),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            read_timeout: Duration::from_millis(config.read_timeout_ms),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes, retrying network errors, 429 and 5xx up to
    /// `max_attempts` with backoff (a `Retry-After` replaces the backoff delay). Any other
    /// status, including 304 and 4xx, is the caller's to handle. `stream` drops the overall
    /// timeout, for long-lived responses.
    pub async fn send(
        &self,
        url: &str,
        stream: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        cancel: &CancellationToken,
    ) -> Result<Response, FetchError> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_turn(&host, cancel).await?;
            let mut request = build(&self.client);
            if !stream {
                request = request.timeout(self.request_timeout);
            }
            let outcome = tokio::select! {
                outcome = request.send() => outcome,
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
            };
            let (error, delay) = match outcome {
                Ok(response) if is_retried(response.status()) => {
                    let status = response.status();
                    let delay = retry_after(response.headers())
                        .or_else(|| rate_limit_reset(response.headers()))
                        .map(|d| d.min(self.backoff.max))
                        .unwrap_or_else(|| self.backoff.delay(attempt));
                    if status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        // The whole host asked for a pause, not just this request.
                        self.push_back(&host, delay);
                    }
                    (
                        FetchError::Status {
                            url: url.to_owned(),
                            status: status.as_u16(),
                        },
                        delay,
                    )
                }
                Ok(response) => return Ok(response),
                Err(error) => (
                    FetchError::Network {
                        url: url.to_owned(),
                        reason: error_chain(&error),
                    },
                    self.backoff.delay(attempt),
                ),
            };
            if attempt >= self.max_attempts {
                return Err(error);
            }
            tracing::info!(%error, attempt, delay_ms = delay.as_millis() as u64, "request failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
            }
        }
    }

    /// Waits for `url`'s host's turn (for connections made without [`PoliteClient::send`]).
    pub async fn wait_turn_for(
        &self,
        url: &str,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        self.wait_turn(&host_key(url), cancel).await
    }

    /// Waits until the host's next slot and books the one after it.
    async fn wait_turn(&self, host: &str, cancel: &CancellationToken) -> Result<(), FetchError> {
        let at = {
            let mut slots = self.next_slot.lock().expect("poisoned");
            let now = Instant::now();
            let slot = slots.get(host).copied().unwrap_or(now).max(now);
            slots.insert(host.to_owned(), slot + self.per_host_interval);
            slot
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => Ok(()),
            _ = cancel.cancelled() => Err(FetchError::Cancelled),
        }
    }

    fn push_back(&self, host: &str, delay: Duration) {
        let mut slots = self.next_slot.lock().expect("poisoned");
        let until = Instant::now() + delay;
        let slot = slots.entry(host.to_owned()).or_insert(until);
        *slot = (*slot).max(until);
    }
}

/// `host:port` of a URL, the unit of the per-host interval.
fn host_key(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_default()
}

fn is_retried(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Exponential backoff with jitter: attempt n waits a random time between half and all of
/// `initial * 2^(n-1)`, capped at `max`. The jitter keeps replicas and sources that failed
/// together from retrying in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// X's `x-rate-limit-reset` (Unix seconds when the window resets), for a 429 that carries
/// no `Retry-After`.
pub fn rate_limit_reset(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let reset: i64 = headers
        .get("x-rate-limit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let wait = reset - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.max(0) as u64))
}

/// The error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Up to `interval + jitter`, the jitter drawn uniformly.
pub fn jittered(interval: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return interval;
    }
    interval + rand::rng().random_range(Duration::ZERO..=jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let check = |value: &str, expected: Option<std::ops::RangeInclusive<u64>>| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            let got = retry_after(&headers).map(|d| d.as_secs());
            match expected {
                Some(range) => assert!(
                    got.is_some_and(|g| range.contains(&g)),
                    "{value}: {got:?} not in {range:?}"
                ),
                None => assert_eq!(got, None, "{value}"),
            }
        };
        check("120", Some(120..=120));
        check(" 0 ", Some(0..=0));
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        check(&in_a_minute, Some(58..=60));
        check("Wed, 21 Oct 2015 07:28:00 GMT", Some(0..=0));
        check("soon", None);
        check("-5", None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
        };
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (60, 1_000),
        ] {
            assert_eq!(backoff.ceiling(attempt), Duration::from_millis(ceiling_ms));
            for _ in 0..50 {
                let delay = backoff.delay(attempt).as_millis() as u64;
                assert!(
                    (ceiling_ms / 2..=ceiling_ms).contains(&delay),
                    "attempt {attempt}: {delay} ms"
                );
            }
        }
    }
}
