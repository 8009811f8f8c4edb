//! Webhook delivery against a fake customer endpoint that speaks real HTTP (axum on loopback):
//! retries with a stable idempotency key, `Retry-After`, giving up after `max_attempts`, no
//! retry on client errors, and the refusal of private targets. Then the whole router stage on
//! the in-memory bus: a delivery that always fails is published as a failed alert *and*
//! dead-lettered, and its input offset is still stored.

mod common;

use common::publish_memory as publish_enriched;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use earshot_core::bus::headers;
use earshot_core::config::{
    DeliveryConfig, ReceiverConfig, RouteConfig, RouterConfig, ScoreName, WebhookConfig,
};
use earshot_core::memory::MemoryBus;
use earshot_core::model::{alert_id, delivery_id, Alert, DeliveryStatus, EnrichedMention};
use earshot_core::telemetry::Metrics;
use earshot_core::{Config, Services};
use earshot_router::Deliverer;
use tokio_util::sync::CancellationToken;

const RECEIVER: &str = "customer-hook";
const ROUTE: &str = "acme-reach";

#[tokio::test]
async fn server_errors_are_retried_with_the_same_idempotency_key_until_delivered() {
    let endpoint = FakeEndpoint::start(vec![reply(500), reply(500)], reply(200)).await;
    let deliverer = deliverer(&endpoint.url(), true, 5);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .expect("a delivery record");

    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.last_error, None);
    assert!(delivery.delivered_at.is_some());
    assert_eq!(delivery.id, delivery_id(alert.id, RECEIVER));
    assert_eq!(delivery.channel, "webhook");
    assert_eq!(delivery.receiver, RECEIVER);

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let expected_key = delivery.id.to_string();
    for request in &requests {
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(expected_key.as_str()),
            "every attempt carries the delivery id as its idempotency key"
        );
        assert_eq!(request.body["alert"]["id"], alert.id.to_string());
        assert_eq!(request.body["delivery_id"], expected_key);
    }
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let endpoint = FakeEndpoint::start(
        vec![Reply {
            retry_after: Some("1"),
            ..reply(429)
        }],
        reply(200),
    )
    .await;
    // The backoff alone would retry after ~10 ms; only Retry-After can explain a 1 s wait.
    let deliverer = deliverer(&endpoint.url(), true, 3);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.attempts, 2);
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "the retry came {gap:?} after a 429 with Retry-After: 1"
    );
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_max_attempts_then_the_delivery_fails() {
    let endpoint = FakeEndpoint::start(vec![], reply(500)).await;
    let deliverer = deliverer(&endpoint.url(), true, 3);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Failed, "{delivery:?}");
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.delivered_at, None);
    let last_error = delivery.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("HTTP 500"),
        "last_error should name the status: {last_error:?}"
    );
    assert_eq!(endpoint.requests().len(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let endpoint = FakeEndpoint::start(vec![], reply(400)).await;
    let deliverer = deliverer(&endpoint.url(), true, 5);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Failed, "{delivery:?}");
    assert_eq!(delivery.attempts, 1);
    let last_error = delivery.last_error.as_deref().unwrap_or_default();
    assert!(last_error.contains("HTTP 400"), "{last_error:?}");
    assert_eq!(endpoint.requests().len(), 1, "a 400 must not be retried");
}

#[tokio::test]
async fn private_targets_are_refused_without_a_request() {
    let endpoint = FakeEndpoint::start(vec![], reply(200)).await;
    let deliverer = deliverer(&endpoint.url(), false, 5);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Failed, "{delivery:?}");
    assert_eq!(delivery.attempts, 1, "a refused target is not retried");
    let last_error = delivery.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("not a public address"),
        "{last_error:?}"
    );
    assert!(
        endpoint.requests().is_empty(),
        "no request may reach a private address without allow_private"
    );
}

/// An endpoint that takes the alert but answers too late: the attempt times out, the retry
/// carries the same idempotency key, so the receiver can tell it already has the alert.
#[tokio::test]
async fn a_timed_out_attempt_is_retried_with_the_same_idempotency_key() {
    let slow = Reply {
        delay: Some(Duration::from_secs(2)),
        ..reply(200)
    };
    let endpoint = FakeEndpoint::start(vec![slow], reply(200)).await;
    let mut config = router_config(&endpoint.url(), true, 3);
    config.delivery.request_timeout_ms = 300;
    let deliverer = Deliverer::new(&config, Metrics::default(), CancellationToken::new()).unwrap();
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.attempts, 2);
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    assert_eq!(
        requests[0].idempotency_key.as_deref(),
        Some(delivery.id.to_string().as_str())
    );
}

#[tokio::test]
async fn names_of_private_addresses_are_refused_when_connecting() {
    // The same endpoint by a name that resolves to loopback: refused by the resolver at
    // connection time, so a name cannot be re-pointed after a check.
    let endpoint = FakeEndpoint::start(vec![], reply(200)).await;
    let by_name = endpoint.url().replace("127.0.0.1", "localhost");
    let deliverer = deliverer(&by_name, false, 5);
    let (alert, enriched) = sample_alert();

    let delivery = deliverer
        .deliver(&alert, &enriched, RECEIVER)
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Failed, "{delivery:?}");
    assert_eq!(delivery.attempts, 1, "a refused target is not retried");
    let last_error = delivery.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("localhost resolves to"),
        "{last_error:?}"
    );
    assert!(endpoint.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_stage_publishes_and_dead_letters_an_undeliverable_alert_and_moves_on() {
    let endpoint = FakeEndpoint::start(vec![], reply(500)).await;
    let config = Config {
        router: router_config(&endpoint.url(), true, 2),
        ..Config::default()
    };
    let bus = MemoryBus::new();
    let services = Services::memory(config.clone(), bus.clone())
        .await
        .expect("in-memory services");

    let shutdown = CancellationToken::new();
    let router = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));

    let (_, enriched) = sample_alert();
    publish_enriched(&bus, &services, &enriched).await;

    let started = Instant::now();
    loop {
        let done = bus.records(&config.topics.alerts).len() == 1
            && bus.records(&config.topics.deadletter).len() == 1
            && bus.is_idle();
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: alerts {:?}, dead letters {:?}, idle {}",
            bus.records(&config.topics.alerts).len(),
            bus.records(&config.topics.deadletter).len(),
            bus.is_idle()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more arrives: exactly one alert and one dead letter for the one input.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bus.records(&config.topics.alerts).len(), 1);
    assert_eq!(bus.records(&config.topics.deadletter).len(), 1);
    assert_eq!(
        endpoint.requests().len(),
        2,
        "max_attempts 2 means two requests"
    );

    let published = &bus.records(&config.topics.alerts)[0];
    let alert = services
        .codecs
        .alert
        .decode(&published.payload)
        .await
        .unwrap();
    assert_eq!(alert.id, alert_id(enriched.mention.id, ROUTE));
    assert_eq!(alert.deliveries.len(), 1);
    let delivery = &alert.deliveries[0];
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 2);
    assert!(
        delivery
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{delivery:?}"
    );

    let dead_letter = &bus.records(&config.topics.deadletter)[0];
    let header = |name: &str| {
        dead_letter
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header(headers::DLQ_STAGE).as_deref(), Some("router"));
    assert_eq!(header(headers::DLQ_ERROR_TYPE).as_deref(), Some("delivery"));
    assert_eq!(
        header(headers::DLQ_SOURCE_TOPIC).as_deref(),
        Some(config.topics.enriched.as_str())
    );
    assert_eq!(header(headers::DLQ_SOURCE_PARTITION).as_deref(), Some("0"));
    assert_eq!(header(headers::DLQ_SOURCE_OFFSET).as_deref(), Some("0"));
    let reason = header(headers::DLQ_ERROR).unwrap_or_default();
    assert!(
        reason.contains(RECEIVER) && reason.contains("HTTP 500"),
        "{reason:?}"
    );
    // The dead letter carries the failed alert itself, decodable with the alert codec.
    let dead_alert = services
        .codecs
        .alert
        .decode(&dead_letter.payload)
        .await
        .unwrap();
    assert_eq!(dead_alert, alert);

    assert_eq!(
        services
            .metrics
            .dead_lettered
            .with_label_values(&["router", "delivery"])
            .get(),
        1
    );
    assert_eq!(
        services
            .metrics
            .deliveries
            .with_label_values(&[RECEIVER, "failed"])
            .get(),
        1
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), router)
        .await
        .expect("the router stops after shutdown")
        .unwrap()
        .expect("a graceful stop");
}

/// One scripted answer of the fake endpoint.
#[derive(Debug, Clone, Copy)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    /// Answer only after this long (a slow endpoint).
    delay: Option<Duration>,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
        delay: None,
    }
}

/// What the fake endpoint saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    idempotency_key: Option<String>,
    body: serde_json::Value,
}

struct Script {
    replies: VecDeque<Reply>,
    then: Reply,
    seen: Vec<Seen>,
}

/// A customer's webhook endpoint on loopback answering with `replies` in order, then `then`.
struct FakeEndpoint {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl FakeEndpoint {
    async fn start(replies: Vec<Reply>, then: Reply) -> Self {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            then,
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeEndpoint { addr, script }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    request_headers: HeaderMap,
    body: BodyBytes,
) -> Response {
    let next = {
        let mut script = script.lock().unwrap();
        record(&mut script, &request_headers, &body);
        script.replies.pop_front().unwrap_or(script.then)
    };
    if let Some(delay) = next.delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(next.status).unwrap();
    match next.retry_after {
        Some(seconds) => (status, [("retry-after", seconds)], "").into_response(),
        None => (status, "").into_response(),
    }
}

fn record(script: &mut Script, request_headers: &HeaderMap, body: &[u8]) {
    script.seen.push(Seen {
        at: Instant::now(),
        idempotency_key: request_headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    });
}

fn router_config(url: &str, allow_private: bool, max_attempts: u32) -> RouterConfig {
    RouterConfig {
        routes: vec![RouteConfig {
            name: ROUTE.into(),
            watchlist: Some("acme".into()),
            score: Some(ScoreName::Reach),
            threshold: Some(1000.0),
            receiver: Some(RECEIVER.into()),
            ..RouteConfig::default()
        }],
        time_intervals: vec![],
        silences: vec![],
        review: None,
        receivers: vec![ReceiverConfig {
            name: RECEIVER.into(),
            webhook: Some(WebhookConfig {
                url: Some(url.to_owned()),
                allow_private,
                ..WebhookConfig::default()
            }),
            ..ReceiverConfig::default()
        }],
        delivery: DeliveryConfig {
            max_attempts,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            request_timeout_ms: 5_000,
            concurrency: 4,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    }
}

fn deliverer(url: &str, allow_private: bool, max_attempts: u32) -> Deliverer {
    Deliverer::new(
        &router_config(url, allow_private, max_attempts),
        Metrics::default(),
        CancellationToken::new(),
    )
    .expect("a deliverer")
}

/// An enriched mention of the `acme` watchlist with reach 50,000, and the alert it raises.
fn sample_alert() -> (Alert, EnrichedMention) {
    let (mut alert, mut enriched) =
        common::acme_alert("delivery-1", "my Acme order arrived crushed", ROUTE);
    alert.route_path = vec![];
    enriched.language = None;
    enriched.language_confidence = 0.0;
    enriched.intent = "unknown".into();
    enriched.urgency = 0.0;
    (alert, enriched)
}

/// Shutdown waits for in-flight records at most `drain_timeout_ms`: a delivery stuck on a
/// hanging endpoint does not hold the process past its grace period, and its record's offset
/// is not stored, so it is read again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_stuck_delivery_after_the_drain_timeout() {
    let hanging = Reply {
        delay: Some(Duration::from_secs(30)),
        ..reply(200)
    };
    let endpoint = FakeEndpoint::start(vec![hanging], reply(200)).await;
    let mut config = Config {
        router: router_config(&endpoint.url(), true, 1),
        ..Config::default()
    };
    config.router.delivery.request_timeout_ms = 60_000;
    config.kafka.drain_timeout_ms = 500;
    let bus = MemoryBus::new();
    let services = Services::memory(config.clone(), bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let router = tokio::spawn(earshot_router::run_with(services.clone(), shutdown.clone()));

    let (_, enriched) = sample_alert();
    publish_enriched(&bus, &services, &enriched).await;
    let started = Instant::now();
    while endpoint.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the delivery never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let cancelled = Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), router)
        .await
        .expect("the router stops soon after the drain timeout")
        .unwrap();
    let waited = cancelled.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "stopped after {waited:?}, before the drain timeout"
    );
    let error = result
        .expect_err("a drain that timed out is reported")
        .to_string();
    assert!(error.contains("drain timeout"), "{error}");
    assert!(
        !bus.is_idle(),
        "the stuck record's offset must not be stored"
    );
    assert!(bus.records(&config.topics.alerts).is_empty());
}
