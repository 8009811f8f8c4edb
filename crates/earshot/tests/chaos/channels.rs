//! Scenario 6: channel chaos. Every urgent mention raises one alert per channel (three routes
//! with `continue: true`: Slack, PagerDuty, an unsigned JSON webhook), and each channel is a
//! local server answering as the service does, with faults by alert: a quarter first get a
//! 500, a quarter a 429 with `Retry-After: 2`, a quarter are accepted but answered only after
//! the router's request timeout (a timeout after a successful send), a quarter go through at
//! once. The router is killed (SIGKILL) in the middle of the sends and restarted. Every alert
//! must reach every channel at least once, every attempt of an alert must carry its stable
//! key (the webhook's `Idempotency-Key` is the delivery id, PagerDuty's `dedup_key` the alert
//! id), and no retry may come before the `Retry-After` its 429 asked for, unless the router
//! was restarted in between (a new process does not know it).
//!
//! The circuit breaker is off (`breaker_failures: 0`): with a quarter of the first attempts
//! failing, ten consecutive failures would open it, and its deliveries would be
//! dead-lettered instead of retried, which is the breaker's purpose but not this scenario's.
//!
//! `EARSHOT_CHAOS_CHANNEL_MENTIONS` sets the number of mentions (default 2,000: 200 alerts per
//! channel).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use earshot_core::model::{alert_id, delivery_id, mention_id};
use serde_json::{json, Value};

use earshot_tests::*;

use crate::harness::*;

const RETRY_AFTER: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT_MS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Slack,
    PagerDuty,
    Webhook,
}

/// What the fake answered to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    ServerError,
    TooManyRequests,
    /// Taken, but answered after the router's timeout.
    OkTooLate,
}

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    /// The mention's native id (from the mention URL every channel carries).
    mention: String,
    /// The idempotency key (webhook) or dedup key (PagerDuty); none for Slack.
    key: Option<String>,
    answer: Answer,
}

struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct FakeState {
    channel: Channel,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(channel: Channel) -> Fake {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(post(answer))
            .with_state(FakeState {
                channel,
                seen: seen.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The native id in `https://x.example/status/<native id>`, wherever the body carries it.
fn mention_of(body: &str) -> Option<String> {
    let start = body.find("x.example/status/")? + "x.example/status/".len();
    let rest = &body[start..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))?;
    Some(rest[..end].to_owned())
}

/// Which fault an alert gets: by the mention's number (`<run>-<i>`, alerts on every tenth).
fn fault_of(mention: &str) -> usize {
    let i: usize = mention.rsplit('-').next().unwrap().parse().unwrap();
    (i / 10) % 4
}

async fn answer(State(state): State<FakeState>, headers: HeaderMap, body: BodyBytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(mention) = mention_of(&text) else {
        return (StatusCode::BAD_REQUEST, "no mention url").into_response();
    };
    let key = match state.channel {
        Channel::Slack => None,
        Channel::PagerDuty => json["dedup_key"].as_str().map(str::to_owned),
        Channel::Webhook => headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    if state.channel != Channel::Slack && key.is_none() {
        return (StatusCode::BAD_REQUEST, "no idempotency key").into_response();
    }
    if state.channel == Channel::PagerDuty
        && json["routing_key"].as_str() != Some(PAGERDUTY_ROUTING_KEY)
    {
        let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'routing_key' is invalid"]});
        return (StatusCode::BAD_REQUEST, answer.to_string()).into_response();
    }
    let at = Instant::now();
    let answer = {
        let mut seen = state.seen.lock().unwrap();
        let earlier = seen.iter().filter(|s| s.mention == mention).count();
        let answer = match (earlier, fault_of(&mention)) {
            (0, 0) => Answer::ServerError,
            (0, 1) => Answer::TooManyRequests,
            (0, 2) => Answer::OkTooLate,
            _ => Answer::Ok,
        };
        seen.push(Seen {
            at,
            mention,
            key: key.clone(),
            answer,
        });
        answer
    };
    let ok = || match state.channel {
        Channel::Slack => (StatusCode::OK, "ok".to_owned()).into_response(),
        Channel::PagerDuty => {
            let answer =
                json!({"status": "success", "message": "Event processed", "dedup_key": key});
            (StatusCode::ACCEPTED, answer.to_string()).into_response()
        }
        Channel::Webhook => (StatusCode::OK, "").into_response(),
    };
    match answer {
        Answer::Ok => ok(),
        Answer::OkTooLate => {
            tokio::time::sleep(Duration::from_millis(REQUEST_TIMEOUT_MS * 2)).await;
            ok()
        }
        Answer::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        Answer::TooManyRequests => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response();
            response.headers_mut().insert(
                "retry-after",
                axum::http::HeaderValue::from_str(&RETRY_AFTER.as_secs().to_string()).unwrap(),
            );
            response
        }
    }
}

fn config(slack: SocketAddr, pagerduty: SocketAddr, webhook: SocketAddr) -> String {
    format!(
        r#"
telemetry:
  listen: "127.0.0.1:0"
  log_level: "warn"
collector:
  http:
    listen: "127.0.0.1:0"
    token_env: EARSHOT_E2E_TOKEN
enricher:
  watchlists:
    - name: acme
      terms: ["Acme"]
router:
  delivery:
    max_attempts: 8
    initial_backoff_ms: 200
    max_backoff_ms: 2000
    request_timeout_ms: {REQUEST_TIMEOUT_MS}
    breaker_failures: 0
  receivers:
    - name: care-slack
      slack:
        url: "http://{slack}/services/T000/B000/XXXX"
        allow_private: true
        min_interval_ms: 20
      # Every alert as its own message, so that each one's delivery is checked: the default
      # rate limit would fold a burst into digests (tested in the router's digest tests).
      rate_limit: {{ min_interval_ms: 0, max_listed: 5 }}
    - name: on-call
      pagerduty:
        url: "http://{pagerduty}/v2/enqueue"
        routing_key_env: EARSHOT_CHAOS_PAGERDUTY_KEY
        severity: critical
        allow_private: true
    - name: support-hook
      webhook:
        url: "http://{webhook}/hook"
        allow_private: true
  routes:
    - name: acme-slack
      watchlist: acme
      score: reach
      threshold: 10000
      receiver: care-slack
      continue: true
    - name: acme-pagerduty
      watchlist: acme
      score: reach
      threshold: 10000
      receiver: on-call
      continue: true
    - name: acme-webhook
      watchlist: acme
      score: reach
      threshold: 10000
      receiver: support-hook
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_chaos_delivers_every_alert_with_the_same_key_and_honours_retry_after() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count = env_count("EARSHOT_CHAOS_CHANNEL_MENTIONS", 2_000);
    let fakes = [
        (Channel::Slack, Fake::start(Channel::Slack).await),
        (Channel::PagerDuty, Fake::start(Channel::PagerDuty).await),
        (Channel::Webhook, Fake::start(Channel::Webhook).await),
    ];
    let base = config(fakes[0].1.addr, fakes[1].1.addr, fakes[2].1.addr);
    // No sink: the scenario is about the router's deliveries.
    let run = Run::new(
        &base,
        &kafka_bootstrap(),
        "",
        "postgres://unused@127.0.0.1:1/none",
    );
    let mut fleet = run.fleet();
    for service in ["collector", "enricher", "router"] {
        fleet.start(service);
    }
    wait_for_port(run.ingest, "the ingest endpoint").await;

    let (lines, expected_alerts) = scenario_mentions(count, &run.run);
    let expected: Vec<String> = (0..count)
        .filter(|i| i % 10 == 1)
        .map(|i| format!("{}-{i}", run.run))
        .collect();
    assert_eq!(expected.len(), expected_alerts);
    let ingest = run.ingest;
    let poster = tokio::spawn(async move {
        post_until_acknowledged(ingest, &lines, 200, Duration::from_secs(8)).await
    });

    // The router is killed once deliveries are under way on every channel.
    wait_until(
        Duration::from_secs(90),
        "deliveries on every channel",
        || {
            let counts: Vec<usize> = fakes.iter().map(|(_, f)| f.requests().len()).collect();
            async move { counts.iter().all(|n| *n >= 20) }
        },
    )
    .await;
    let killed_at = Instant::now();
    fleet.stop("router", Fault::Kill);
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.start("router");
    let restarted_at = Instant::now();
    let acknowledged = poster.await.unwrap();

    // Every alert at least once on every channel, counting what was taken before a timeout.
    let delivered = |requests: &[Seen]| -> usize {
        let mut done: std::collections::HashSet<&str> = Default::default();
        for r in requests {
            if matches!(r.answer, Answer::Ok | Answer::OkTooLate) {
                done.insert(&r.mention);
            }
        }
        expected
            .iter()
            .filter(|m| done.contains(m.as_str()))
            .count()
    };
    let started = Instant::now();
    while fakes
        .iter()
        .any(|(_, f)| delivered(&f.requests()) < expected.len())
        && started.elapsed() < Duration::from_secs(180)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let exited = fleet.exited();
    fleet.stop_all();

    let mut figures = Vec::new();
    let mut problems = Vec::new();
    let mut all_delivered = true;
    let mut min_gap_after_429 = Duration::MAX;
    for (channel, fake) in &fakes {
        let requests = fake.requests();
        let got = delivered(&requests);
        all_delivered &= got == expected.len();
        let mut by_mention: HashMap<&str, Vec<&Seen>> = HashMap::new();
        for r in &requests {
            by_mention.entry(&r.mention).or_default().push(r);
        }
        let mut keys_differ = 0;
        let mut early = 0;
        for attempts in by_mention.values_mut() {
            attempts.sort_by_key(|r| r.at);
            // The key is the alert's (PagerDuty) or the delivery's (webhook) stable id.
            let alert = |route: &str| alert_id(mention_id("x", &attempts[0].mention), route);
            let expected_key = match channel {
                Channel::Slack => None,
                Channel::PagerDuty => Some(alert("acme-pagerduty").to_string()),
                Channel::Webhook => {
                    Some(delivery_id(alert("acme-webhook"), "support-hook").to_string())
                }
            };
            if attempts.iter().any(|r| r.key != expected_key) {
                keys_differ += 1;
            }
            for pair in attempts.windows(2) {
                if pair[0].answer != Answer::TooManyRequests {
                    continue;
                }
                // A restarted router does not know the Retry-After its predecessor got.
                if pair[0].at < restarted_at && pair[1].at > killed_at {
                    continue;
                }
                let gap = pair[1].at - pair[0].at;
                min_gap_after_429 = min_gap_after_429.min(gap);
                if gap < RETRY_AFTER - Duration::from_millis(100) {
                    early += 1;
                }
            }
        }
        let of = |a: Answer| requests.iter().filter(|r| r.answer == a).count();
        figures.push(format!(
            "{channel:?} {}/{} delivered in {} requests (500: {}, 429: {}, late: {}), keys not the alert's or delivery's id {keys_differ}, early retries {early}",
            got,
            expected.len(),
            requests.len(),
            of(Answer::ServerError),
            of(Answer::TooManyRequests),
            of(Answer::OkTooLate),
        ));
        if keys_differ > 0 {
            problems.push(format!(
                "{channel:?}: {keys_differ} alerts with differing keys"
            ));
        }
        if early > 0 {
            problems.push(format!("{channel:?}: {early} retries before Retry-After"));
        }
        for fault in [
            Answer::ServerError,
            Answer::TooManyRequests,
            Answer::OkTooLate,
        ] {
            if of(fault) == 0 {
                problems.push(format!("{channel:?}: no {fault:?} was answered"));
            }
        }
    }

    let passed = acknowledged.len() == count
        && all_delivered
        && problems.is_empty()
        && exited.is_empty()
        && min_gap_after_429 != Duration::MAX;
    ScenarioResult {
        id: "6-channel-chaos",
        scenario: "channel chaos: Slack, PagerDuty and a webhook answering 500, 429 with Retry-After, or too late after taking the alert; the router killed mid-send",
        must_hold: "every alert delivered at least once per channel, the same idempotency / dedup key on every retry, Retry-After honoured",
        size: format!(
            "{} mentions, {} alerts × 3 channels, 1 router kill",
            thousands(count),
            expected.len()
        ),
        result: format!(
            "{}; shortest wait after a 429 {:.2} s (Retry-After {} s)",
            figures.join("; "),
            min_gap_after_429.as_secs_f64(),
            RETRY_AFTER.as_secs()
        ),
    }
    .write(passed);

    let logs = run.dir.display();
    assert_eq!(acknowledged.len(), count);
    assert!(all_delivered, "{figures:#?}; logs in {logs}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        min_gap_after_429 != Duration::MAX,
        "no 429 was followed by a retry of the same router process"
    );
    assert!(
        exited.is_empty(),
        "services exited: {exited:?}; logs in {logs}"
    );
    run.clean_up();
}
