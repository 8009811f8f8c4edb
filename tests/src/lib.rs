//! Shared helpers of the end-to-end tests: the real Kafka and PostgreSQL the project's scripts
//! start, unique names per test, a webhook receiver standing in for a customer's endpoint,
//! and mention generators.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};

/// Logs of the services under test, at `EARSHOT_LOG` (default `warn`).
pub fn init_logs() {
    let telemetry = earshot_core::config::TelemetryConfig {
        log_level: "warn".into(),
        ..Default::default()
    };
    earshot_core::telemetry::init_tracing(&telemetry);
}

/// Kafka started by `scripts/kafka start` (or any, through `KAFKA_BOOTSTRAP_SERVERS`).
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    )
}

/// PostgreSQL started by `scripts/postgres start` (or any, through `DATABASE_URL`).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
}

/// A short unique suffix for topic, group and schema names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates a fresh schema and returns a connection URL whose search path is that schema.
pub async fn fresh_schema(prefix: &str) -> (String, String) {
    let url = database_url();
    let schema = unique(prefix);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    (
        format!("{url}{separator}options=-c%20search_path%3D{schema}"),
        schema,
    )
}

pub async fn query_count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    match client.query_one(sql, &[]).await {
        Ok(row) => row.get(0),
        Err(_) => -1, // the table may not exist yet while the sink migrates
    }
}

/// What the webhook receiver saw.
#[derive(Default, Debug)]
pub struct Received {
    /// Requests per alert id.
    pub by_alert: HashMap<String, usize>,
    /// Idempotency keys seen.
    pub idempotency_keys: Vec<String>,
}

/// A customer's webhook endpoint on loopback, answering 200 to well-formed alert deliveries.
pub async fn webhook_receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    async fn handle(
        State(state): State<Arc<Mutex<Received>>>,
        headers: HeaderMap,
        Json(body): Json<serde_json::Value>,
    ) -> StatusCode {
        let Some(alert) = body["alert"]["id"].as_str() else {
            return StatusCode::BAD_REQUEST;
        };
        let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
            return StatusCode::BAD_REQUEST;
        };
        let mut state = state.lock().unwrap();
        *state.by_alert.entry(alert.to_owned()).or_default() += 1;
        state.idempotency_keys.push(key.to_owned());
        StatusCode::OK
    }
    let app = Router::new()
        .route("/hook", post(handle))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// The scenario's mentions: every fifth does not name the brand; every tenth (of those that
/// do) is from an account with 50,000 followers, which the route alerts on.
pub fn scenario_mentions(count: usize, run: &str) -> (Vec<String>, usize) {
    let mut lines = Vec::with_capacity(count);
    let mut expected_alerts = 0;
    for i in 0..count {
        let names_brand = i % 5 != 0;
        let influencer = names_brand && i % 10 == 1;
        if influencer {
            expected_alerts += 1;
        }
        let text = if names_brand {
            format!("my Acme order #{i} arrived late and the box was crushed")
        } else {
            format!("lovely weather today, walk #{i}")
        };
        let line = serde_json::json!({
            "native_id": format!("{run}-{i}"),
            "source": {"kind": "x", "instance": "e2e"},
            "url": format!("https://x.example/status/{run}-{i}"),
            "author": {"handle": format!("@user{i}"), "followers": if influencer { 50_000 } else { 120 }},
            "text": text,
            "lang": "en",
            "created_at": "2026-11-23T09:00:00Z",
        });
        lines.push(line.to_string());
    }
    (lines, expected_alerts)
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The YAML shared by both modes: one watchlist, one route to the webhook.
pub fn scenario_config_yaml(webhook: SocketAddr) -> String {
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
  receivers:
    - name: support-hook
      webhook:
        url: "http://{webhook}/hook"
        allow_private: true
  routes:
    - name: acme-influencer
      watchlist: acme
      score: reach
      threshold: 10000
      receiver: support-hook
"#
    )
}

pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// Posts the lines to the ingest endpoint as NDJSON in batches; returns the accepted count.
pub async fn post_ndjson(addr: SocketAddr, lines: &[String], batch: usize) -> usize {
    let client = reqwest::Client::new();
    let mut accepted = 0;
    for chunk in lines.chunks(batch) {
        let response = client
            .post(format!("http://{addr}/v1/mentions"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await
            .expect("ingest request");
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let body: serde_json::Value = response.json().await.unwrap();
        accepted += body["accepted"].as_u64().unwrap() as usize;
    }
    accepted
}
