//! Mastodon against a local server speaking its streaming API (server-sent events with
//! `update`, `status.update`, `delete` and heartbeat comments) and its REST timelines
//! (`min_id` paging, newest first), requiring a bearer token: live posts, an edit, a delete
//! (retracted), a malformed event, then an outage during which posts are made, backfilled on
//! reconnect.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use earshot_core::config::{MastodonSourceConfig, MastodonTimeline};
use earshot_core::memory::MemoryBus;
use earshot_core::model::Mention;
use earshot_core::{Config, Services};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "mastodon-test-token";

#[derive(Default)]
struct Server {
    /// Every status posted with #acme, oldest first.
    posted: Vec<serde_json::Value>,
    /// The open stream, if a client is connected.
    stream: Option<mpsc::UnboundedSender<Event>>,
    /// While true, the streaming endpoint answers 503.
    offline: bool,
    /// `min_id` of every timeline request.
    timeline_requests: Vec<String>,
    connections: usize,
}

type Shared = Arc<Mutex<Server>>;

fn status(id: u64, text: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "uri": format!("https://social.example/users/kim/statuses/{id}"),
        "url": format!("https://social.example/@kim/{id}"),
        "created_at": "2026-11-23T09:00:00.000Z",
        "account": {
            "id": "7", "username": "kim", "acct": "kim", "display_name": "Kim",
            "url": "https://social.example/@kim", "followers_count": 300, "bot": false
        },
        "content": format!("<p>{text} <a href=\"https://social.example/tags/acme\" class=\"mention hashtag\">#<span>acme</span></a></p>"),
        "spoiler_text": "", "visibility": "public", "sensitive": false,
        "language": "en", "in_reply_to_id": null,
        "replies_count": 0, "reblogs_count": 1, "favourites_count": 4,
        "media_attachments": [], "mentions": [], "tags": [{"name": "acme"}],
        "reblog": null
    })
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

#[derive(serde::Deserialize)]
struct TagQuery {
    tag: String,
}

async fn stream_handler(
    State(server): State<Shared>,
    Query(query): Query<TagQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "The access token is invalid"})),
        )
            .into_response();
    }
    assert_eq!(query.tag, "acme");
    let mut server = server.lock().unwrap();
    if server.offline {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    server.stream = Some(sender);
    server.connections += 1;
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), receiver))
    });
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_millis(50))
                .text("thump"),
        )
        .into_response()
}

#[derive(serde::Deserialize)]
struct PageQuery {
    min_id: String,
    limit: usize,
}

/// Mastodon's `min_id` paging: the `limit` statuses immediately newer than `min_id`,
/// newest first.
async fn timeline_handler(
    State(server): State<Shared>,
    Path(tag): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    assert_eq!(tag, "acme");
    let mut server = server.lock().unwrap();
    server.timeline_requests.push(query.min_id.clone());
    let min: u64 = query.min_id.parse().unwrap();
    let mut page: Vec<serde_json::Value> = server
        .posted
        .iter()
        .filter(|s| s["id"].as_str().unwrap().parse::<u64>().unwrap() > min)
        .take(query.limit)
        .cloned()
        .collect();
    page.reverse();
    Json(page).into_response()
}

async fn mastodon_server(server: Shared) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/api/v1/streaming/hashtag", get(stream_handler))
        .route("/api/v1/timelines/tag/{tag}", get(timeline_handler))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Posts a status: into the timeline, and onto the open stream if any.
fn post(server: &Shared, id: u64, text: &str) {
    let mut server = server.lock().unwrap();
    let status = status(id, text);
    server.posted.push(status.clone());
    if let Some(stream) = &server.stream {
        let _ = stream.send(Event::default().event("update").data(status.to_string()));
    }
}

fn send(server: &Shared, event: Event) {
    server
        .lock()
        .unwrap()
        .stream
        .as_ref()
        .unwrap()
        .send(event)
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

fn metric(services: &Services, line_prefix: &str) -> u64 {
    services
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_hashtag_stream_is_followed_and_its_gaps_backfilled_on_reconnect() {
    let server: Shared = Default::default();
    let addr = mastodon_server(server.clone()).await;
    std::env::set_var("EARSHOT_TEST_MASTODON_TOKEN", TOKEN);
    let mut config = Config::default();
    config.collector.sources.mastodon = vec![MastodonSourceConfig {
        name: "social-acme".into(),
        server: format!("http://{addr}"),
        timeline: MastodonTimeline::Hashtag,
        hashtag: Some("acme".into()),
        access_token_env: Some("EARSHOT_TEST_MASTODON_TOKEN".into()),
        backfill_page_size: 2,
        usual_interval_ms: 60_000,
    }];
    let politeness = &mut config.collector.politeness;
    politeness.per_host_interval_ms = 0;
    politeness.initial_backoff_ms = 20;
    politeness.max_backoff_ms = 200;
    politeness.read_timeout_ms = 1_000;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    wait_until(Duration::from_secs(10), "a stream connection", || {
        server.lock().unwrap().stream.is_some()
    })
    .await;

    post(&server, 1001, "Acme kettle broke");
    send(
        &server,
        Event::default()
            .event("update")
            .data("{\"id\": \"1002\", \"uri\":"),
    );
    post(&server, 1003, "Acme support was great");
    send(&server, Event::default().event("delete").data("1001"));
    let mut edited = status(1001, "Acme kettle broke, edited: support replaced it");
    edited["edited_at"] = serde_json::json!("2026-11-23T09:10:00.000Z");
    send(
        &server,
        Event::default()
            .event("status.update")
            .data(edited.to_string()),
    );
    send(&server, Event::default().event("notification").data("{}"));
    // A delete of a status this source never yielded is counted, not retracted.
    send(&server, Event::default().event("delete").data("999"));
    wait_until(Duration::from_secs(10), "four records", || {
        mentions(&bus, &services).len() == 4
    })
    .await;
    let live = mentions(&bus, &services);
    assert_eq!(live[0].text, "Acme kettle broke #acme");
    assert_eq!(live[0].author.handle, "@kim@social.example");
    assert_eq!(
        live[0].native_id,
        "https://social.example/users/kim/statuses/1001"
    );
    assert!(!live[0].is_retraction());
    assert!(live[2].is_retraction(), "the delete retracts 1001");
    assert_eq!(live[2].id, live[0].id, "a retraction has the post's id");
    assert_eq!(live[2].native_id, live[0].native_id);
    assert_eq!(live[2].author.handle, "@kim@social.example");
    assert_eq!(live[2].created_at, live[0].created_at);
    assert_eq!(live[2].text, "");
    assert_eq!(live[3].id, live[0].id, "an edit keeps the post's id");
    assert_eq!(
        live[3].text,
        "Acme kettle broke, edited: support replaced it #acme"
    );
    let key = "source=\"mastodon/social-acme\"";
    assert_eq!(
        metric(
            &services,
            &format!("earshot_source_errors_total{{error_type=\"malformed\",{key}}}")
        ),
        1
    );
    wait_until(Duration::from_secs(10), "both deletes counted", || {
        metric(&services, &format!("earshot_source_deletes_total{{{key}}}")) == 2
    })
    .await;
    assert_eq!(mentions(&bus, &services).len(), 4, "nothing for status 999");

    // An outage: the stream drops and the server refuses to stream while five posts are made.
    {
        let mut server = server.lock().unwrap();
        server.offline = true;
        server.stream = None;
    }
    for id in 1004..=1008 {
        post(&server, id, &format!("Acme post {id}"));
    }
    server.lock().unwrap().offline = false;
    // The backfill ends with a request for the page after the last status, which comes after
    // that status is published: wait for both.
    wait_until(Duration::from_secs(10), "the backfill", || {
        mentions(&bus, &services).len() == 9 && server.lock().unwrap().timeline_requests.len() >= 4
    })
    .await;
    assert_eq!(
        server.lock().unwrap().timeline_requests[..4],
        ["1003", "1005", "1007", "1008"],
        "paged forward from the last status seen, two at a time, until an empty page"
    );
    post(&server, 1009, "Acme live again");
    wait_until(Duration::from_secs(10), "the live post", || {
        mentions(&bus, &services).len() == 10
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let ids: BTreeSet<String> = mentions(&bus, &services)
        .iter()
        .map(|m| m.native_id.rsplit('/').next().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [1001, 1003, 1004, 1005, 1006, 1007, 1008, 1009]
        .iter()
        .map(u64::to_string)
        .collect();
    assert_eq!(
        ids, expected,
        "no gap: every post, the malformed one excepted"
    );
    assert!(server.lock().unwrap().connections >= 2);
}

/// Against real Kafka: the collector is stopped after two live posts, three more are posted
/// while it is down, and the restarted collector backfills them from the checkpoint it
/// saved (the last status id), then follows the stream again. Every post is on the raw
/// topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_backfills_what_was_posted_while_it_was_down() {
    let server: Shared = Default::default();
    let addr = mastodon_server(server.clone()).await;
    std::env::set_var("EARSHOT_TEST_MASTODON_TOKEN", TOKEN);
    let run = format!(
        "mastodon_restart_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut config = Config::default();
    config.kafka.bootstrap_servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    );
    config.kafka.group_prefix = run.clone();
    config.kafka.session_timeout_ms = 6_000;
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");
    config.topics.checkpoints = format!("{run}.checkpoints");
    config.topics.source_health = format!("{run}.health");
    config.collector.sources.mastodon = vec![MastodonSourceConfig {
        name: "social-acme".into(),
        server: format!("http://{addr}"),
        timeline: MastodonTimeline::Hashtag,
        hashtag: Some("acme".into()),
        access_token_env: Some("EARSHOT_TEST_MASTODON_TOKEN".into()),
        backfill_page_size: 40,
        usual_interval_ms: 60_000,
    }];
    config.collector.politeness.per_host_interval_ms = 0;
    config.collector.politeness.initial_backoff_ms = 20;
    let start = |config: Config| async move {
        let shutdown = CancellationToken::new();
        let services = Services::kafka(config).await.unwrap();
        let task = tokio::spawn(earshot_collector::run_with(services, shutdown.clone()));
        (shutdown, task)
    };

    let (shutdown, task) = start(config.clone()).await;
    wait_until(Duration::from_secs(30), "a stream connection", || {
        server.lock().unwrap().stream.is_some()
    })
    .await;
    post(&server, 1001, "Acme one");
    post(&server, 1002, "Acme two");
    let ids = raw_ids(&config, 2).await;
    assert_eq!(ids, ["1001", "1002"]);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    server.lock().unwrap().stream = None;

    for id in 1003..=1005 {
        post(&server, id, &format!("Acme while down {id}"));
    }
    let (shutdown, task) = start(config.clone()).await;
    wait_until(Duration::from_secs(30), "the second connection", || {
        server.lock().unwrap().stream.is_some()
    })
    .await;
    post(&server, 1006, "Acme live again");
    let ids = raw_ids(&config, 6).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        ids,
        ["1001", "1002", "1003", "1004", "1005", "1006"],
        "each post exactly once"
    );
    assert_eq!(
        server.lock().unwrap().timeline_requests[0],
        "1002",
        "backfilled from the checkpoint"
    );
}

/// Status ids (the last segment of the native id) on the raw topic, read by a fresh group
/// until `count` came and nothing more arrives for two seconds.
async fn raw_ids(config: &Config, count: usize) -> Vec<String> {
    use earshot_core::bus::Subscription;
    let services = Services::kafka(config.clone()).await.unwrap();
    let health = earshot_core::telemetry::Health::new(Duration::from_secs(60));
    let mut reader = earshot_core::kafka::KafkaSubscription::new(
        &config.kafka,
        &format!("reader_{}", uuid::Uuid::new_v4().simple()),
        &[&config.topics.raw],
        earshot_core::telemetry::Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("broker"),
    )
    .unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let wait = Duration::from_secs(if ids.len() >= count { 2 } else { 1 });
        match tokio::time::timeout(wait, reader.recv()).await {
            Ok(Some(Ok(record))) => {
                let mention = services
                    .codecs
                    .mention
                    .decode(&record.payload.unwrap())
                    .await
                    .unwrap();
                ids.push(mention.native_id.rsplit('/').next().unwrap().to_owned());
            }
            Ok(other) => panic!("consuming failed: {:?}", other.map(|r| r.err())),
            Err(_) if ids.len() >= count => break,
            Err(_) => {}
        }
    }
    ids.sort();
    ids
}
