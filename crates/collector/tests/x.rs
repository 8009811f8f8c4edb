//! The X filtered stream against a local server speaking API v2: the rule set is synced
//! (stale rules deleted, missing ones added), the stream is refused once with 429 and
//! `x-rate-limit-reset`, then delivers newline-delimited posts with keep-alive blank lines,
//! a malformed line and an operational error message, and drops; the reconnection asks for
//! `backfill_minutes`. Over real Kafka, a restarted collector asks for the backfill too.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use earshot_core::config::{XRuleConfig, XSourceConfig};
use earshot_core::memory::MemoryBus;
use earshot_core::model::Mention;
use earshot_core::{Config, Services};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "x-test-bearer-token";

#[derive(Default)]
struct XApi {
    /// (id, value, tag)
    rules: Vec<(String, String, Option<String>)>,
    next_rule_id: u64,
    refuse_next_stream: bool,
    stream: Option<mpsc::UnboundedSender<String>>,
    stream_queries: Vec<String>,
    /// Posts published with `publish` (all recent): what a connection asking for
    /// `backfill_minutes` gets first.
    recent: Vec<String>,
}

type Shared = Arc<Mutex<XApi>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

async fn get_rules(State(api): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let api = api.lock().unwrap();
    let data: Vec<serde_json::Value> = api
        .rules
        .iter()
        .map(|(id, value, tag)| serde_json::json!({"id": id, "value": value, "tag": tag}))
        .collect();
    Json(serde_json::json!({"data": data, "meta": {"sent": "2026-11-23T09:00:00.000Z", "result_count": data.len()}}))
        .into_response()
}

async fn post_rules(
    State(api): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut api = api.lock().unwrap();
    if let Some(ids) = body["delete"]["ids"].as_array() {
        let ids: Vec<&str> = ids.iter().filter_map(|v| v.as_str()).collect();
        api.rules.retain(|(id, _, _)| !ids.contains(&id.as_str()));
        return Json(
            serde_json::json!({"meta": {"summary": {"deleted": ids.len(), "not_deleted": 0}}}),
        )
        .into_response();
    }
    let mut created = 0;
    for rule in body["add"].as_array().unwrap() {
        api.next_rule_id += 1;
        let id = format!("18600000000000000{}", api.next_rule_id);
        let value = rule["value"].as_str().unwrap().to_owned();
        let tag = rule["tag"].as_str().map(str::to_owned);
        api.rules.push((id, value, tag));
        created += 1;
    }
    (StatusCode::CREATED, Json(serde_json::json!({"meta": {"summary": {"created": created, "not_created": 0, "valid": created, "invalid": 0}}})))
        .into_response()
}

async fn stream(
    State(api): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut api = api.lock().unwrap();
    if std::mem::take(&mut api.refuse_next_stream) {
        let reset = chrono::Utc::now().timestamp().to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-rate-limit-reset", reset)],
            Json(serde_json::json!({"title": "ConnectionException", "detail": "This stream is currently at the maximum allowed connection limit.", "type": "https://api.twitter.com/2/problems/streaming-connection"})),
        )
            .into_response();
    }
    let query = query.unwrap_or_default();
    let (sender, receiver) = mpsc::unbounded_channel::<String>();
    if query.contains("backfill_minutes=") {
        for line in &api.recent {
            sender.send(line.clone()).unwrap();
        }
    }
    api.stream_queries.push(query);
    api.stream = Some(sender);
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .unwrap()
}

fn post_line(id: u64, text: &str) -> String {
    serde_json::json!({
        "data": {"id": id.to_string(), "text": text, "author_id": "2244994945", "lang": "en",
            "created_at": "2026-11-23T09:00:15.000Z", "conversation_id": id.to_string(),
            "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 3, "quote_count": 0},
            "edit_history_tweet_ids": [id.to_string()]},
        "includes": {"users": [{"id": "2244994945", "username": "maria", "name": "María", "verified": false,
            "public_metrics": {"followers_count": 52000, "following_count": 12, "tweet_count": 900, "listed_count": 3}}]},
        "matching_rules": [{"id": "186000000000000001", "tag": "acme"}]
    })
    .to_string()
        + "\r\n"
}

/// Publishes a post: onto the open stream if any, and into the recent posts.
fn publish(api: &Shared, line: String) {
    let mut api = api.lock().unwrap();
    api.recent.push(line.clone());
    if let Some(stream) = &api.stream {
        let _ = stream.send(line);
    }
}

fn send(api: &Shared, line: String) {
    api.lock()
        .unwrap()
        .stream
        .as_ref()
        .unwrap()
        .send(line)
        .unwrap();
}

async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mentions(bus: &MemoryBus, services: &Services) -> Vec<Mention> {
    bus.records(&services.config.topics.raw)
        .iter()
        .map(|r| futures::executor::block_on(services.codecs.mention.decode(&r.payload)).unwrap())
        .collect()
}

#[tokio::test]
async fn rules_are_synced_and_the_stream_is_read_and_reconnected() {
    let api: Shared = Default::default();
    {
        let mut api = api.lock().unwrap();
        api.rules = vec![
            ("1".into(), "old campaign".into(), None),
            ("2".into(), "acme".into(), Some("acme".into())),
        ];
        api.refuse_next_stream = true;
    }
    let app = Router::new()
        .route(
            "/2/tweets/search/stream/rules",
            get(get_rules).post(post_rules),
        )
        .route("/2/tweets/search/stream", get(stream))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    std::env::set_var("EARSHOT_TEST_X_TOKEN", TOKEN);
    let mut config = Config::default();
    config.collector.sources.x = vec![XSourceConfig {
        name: "brand".into(),
        url: format!("http://{addr}"),
        bearer_token_env: "EARSHOT_TEST_X_TOKEN".into(),
        rules: vec![
            XRuleConfig {
                value: "acme".into(),
                tag: Some("acme".into()),
            },
            XRuleConfig {
                value: "acme kettle -is:retweet".into(),
                tag: Some("kettle".into()),
            },
        ],
        backfill_minutes: 2,
        usual_interval_ms: 60_000,
    }];
    config.collector.politeness.per_host_interval_ms = 0;
    config.collector.politeness.initial_backoff_ms = 10;
    config.collector.politeness.read_timeout_ms = 5_000;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));

    wait_until(Duration::from_secs(10), "a stream connection", || {
        api.lock().unwrap().stream.is_some()
    })
    .await;
    {
        let api = api.lock().unwrap();
        let rules: Vec<(&str, Option<&str>)> = api
            .rules
            .iter()
            .map(|(_, v, t)| (v.as_str(), t.as_deref()))
            .collect();
        assert_eq!(
            rules,
            [
                ("acme", Some("acme")),
                ("acme kettle -is:retweet", Some("kettle"))
            ]
        );
        assert!(
            !api.stream_queries[0].contains("backfill_minutes"),
            "no backfill on the first connection"
        );
        assert!(api.stream_queries[0].contains("expansions=author_id"));
    }
    send(&api, "\r\n".into());
    send(&api, post_line(1861000000000000001, "My Acme kettle died"));
    send(&api, "{\"data\": {\"id\": \r\n".into());
    send(&api, "{\"errors\": [{\"title\": \"operational-disconnect\", \"disconnect_type\": \"UpstreamOperationalDisconnect\"}]}\r\n".into());
    // A line split across two chunks.
    let line = post_line(1861000000000000002, "Acme replaced it, thanks");
    let (first, second) = line.split_at(40);
    send(&api, first.to_owned());
    send(&api, second.to_owned());
    wait_until(Duration::from_secs(10), "two posts", || {
        mentions(&bus, &services).len() == 2
    })
    .await;

    api.lock().unwrap().stream = None; // the connection drops
    wait_until(Duration::from_secs(10), "a reconnection", || {
        api.lock().unwrap().stream_queries.len() == 2
    })
    .await;
    assert!(api.lock().unwrap().stream_queries[1].contains("backfill_minutes=2"));
    send(&api, post_line(1861000000000000003, "Acme statement"));
    wait_until(Duration::from_secs(10), "the third post", || {
        mentions(&bus, &services).len() == 3
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let all = mentions(&bus, &services);
    assert_eq!(all[0].author.handle, "@maria");
    assert_eq!(all[0].author.followers, Some(52_000));
    assert_eq!(all[1].text, "Acme replaced it, thanks");
    assert_eq!(all[2].native_id, "1861000000000000003");
    assert!(services
        .metrics
        .render()
        .contains("earshot_source_errors_total{error_type=\"malformed\",source=\"x/brand\"} 1"));
}

async fn x_server(api: Shared) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/2/tweets/search/stream/rules",
            get(get_rules).post(post_rules),
        )
        .route("/2/tweets/search/stream", get(stream))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Against real Kafka: two posts are read, the collector is stopped, two more are posted
/// while it is down. The stream has no cursor: the restarted collector, whose checkpoint says
/// it has read the stream before, asks for `backfill_minutes` on its first connection, and X
/// sends the recent posts again. No gap; the overlap has the posts' stable ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_asks_x_for_the_backfill_and_loses_nothing() {
    let api: Shared = Default::default();
    let addr = x_server(api.clone()).await;
    std::env::set_var("EARSHOT_TEST_X_TOKEN", TOKEN);
    let run = common::unique("x_restart");
    let mut config = common::kafka_config(&run);
    config.collector.sources.x = vec![XSourceConfig {
        name: "brand".into(),
        url: format!("http://{addr}"),
        bearer_token_env: "EARSHOT_TEST_X_TOKEN".into(),
        rules: vec![XRuleConfig {
            value: "acme".into(),
            tag: Some("acme".into()),
        }],
        backfill_minutes: 5,
        usual_interval_ms: 60_000,
    }];
    config.collector.politeness.read_timeout_ms = 5_000;

    let collector = common::Running::start(&config).await;
    common::wait_until(Duration::from_secs(30), "a stream connection", || {
        api.lock().unwrap().stream.is_some()
    })
    .await;
    publish(&api, post_line(1861000000000000001, "Acme one"));
    publish(&api, post_line(1861000000000000002, "Acme two"));
    assert_eq!(common::raw_mentions(&config, 2).await.len(), 2);
    collector.stop().await;
    api.lock().unwrap().stream = None;

    publish(&api, post_line(1861000000000000003, "Acme while down"));
    publish(
        &api,
        post_line(1861000000000000004, "Acme while down again"),
    );
    let collector = common::Running::start(&config).await;
    common::wait_until(Duration::from_secs(30), "the second connection", || {
        api.lock().unwrap().stream_queries.len() >= 2
    })
    .await;
    publish(&api, post_line(1861000000000000005, "Acme live again"));
    let all = common::raw_mentions(&config, 5).await;
    collector.stop().await;

    let queries = api.lock().unwrap().stream_queries.clone();
    assert!(!queries[0].contains("backfill_minutes"), "{queries:?}");
    assert!(
        queries[1].contains("backfill_minutes=5"),
        "the restart asks for the backfill: {queries:?}"
    );
    let distinct: std::collections::BTreeSet<String> =
        all.iter().map(|m| m.native_id.clone()).collect();
    assert_eq!(
        distinct,
        (1..=5).map(|n| format!("186100000000000000{n}")).collect(),
        "no gap"
    );
    assert!(all.len() > 5, "posts 1 and 2 came again in the backfill");
    for mention in &all {
        assert_eq!(
            mention.id,
            earshot_core::model::mention_id("x", &mention.native_id),
            "the overlap is removed downstream by the stable id"
        );
    }
}
