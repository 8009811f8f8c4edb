//! Bluesky against a local Jetstream: a WebSocket server that, like the real one, replays
//! every event from `cursor` (a `time_us`) on and then streams live ones, with post creates,
//! updates, deletes, identity events and a malformed frame, and that drops the connection in
//! the middle. The reconnection resumes from the stored cursor rewound a few seconds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use earshot_core::config::BlueskySourceConfig;
use earshot_core::memory::MemoryBus;
use earshot_core::model::Mention;
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Jetstream {
    /// Every event, in time order (JSON text frames).
    log: Vec<(i64, String)>,
    /// The query of every connection.
    connections: Vec<SubscribeQuery>,
    user_agents: Vec<String>,
    /// Serve only the first this many events, then close the connection.
    close_after: Option<usize>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct SubscribeQuery {
    #[serde(rename = "wantedCollections")]
    wanted_collections: String,
    #[serde(default)]
    cursor: Option<i64>,
}

type Shared = Arc<Mutex<Jetstream>>;

const BASE_US: i64 = 1_763_888_400_000_000;

fn post_event(n: i64, text: &str) -> (i64, String) {
    let time_us = BASE_US + n * 1_000_000;
    let event = serde_json::json!({
        "did": "did:plc:kim", "time_us": time_us, "kind": "commit",
        "commit": {"rev": format!("rev{n}"), "operation": "create", "collection": "app.bsky.feed.post",
            "rkey": format!("post{n}"), "cid": "bafyreib",
            "record": {"$type": "app.bsky.feed.post", "text": text,
                       "createdAt": "2026-11-23T09:00:00.000Z", "langs": ["en"]}}
    });
    (time_us, event.to_string())
}

async fn subscribe(
    State(server): State<Shared>,
    Query(query): Query<SubscribeQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    {
        let mut server = server.lock().unwrap();
        server.connections.push(query.clone());
        server.user_agents.push(
            headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
    }
    upgrade.on_upgrade(move |socket| serve(socket, server, query.cursor))
}

/// Replays from the cursor, then polls the log for live events.
async fn serve(mut socket: WebSocket, server: Shared, cursor: Option<i64>) {
    let mut sent = 0usize;
    let mut position = {
        let server = server.lock().unwrap();
        match cursor {
            Some(cursor) => server.log.iter().take_while(|(t, _)| *t < cursor).count(),
            None => server.log.len(),
        }
    };
    loop {
        let (next, close_after) = {
            let server = server.lock().unwrap();
            (server.log.get(position).cloned(), server.close_after)
        };
        if close_after.is_some_and(|limit| sent >= limit) {
            server.lock().unwrap().close_after = None;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        match next {
            Some((_, text)) => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                position += 1;
                sent += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn mentions(bus: &MemoryBus, services: &Services) -> Vec<Mention> {
    bus.records(&services.config.topics.raw)
        .iter()
        .map(|r| futures::executor::block_on(services.codecs.mention.decode(&r.payload)).unwrap())
        .collect()
}

async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn jetstream_posts_are_read_and_a_dropped_connection_resumes_from_the_rewound_cursor() {
    let server: Shared = Default::default();
    let app = Router::new()
        .route("/subscribe", get(subscribe))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = Config::default();
    config.collector.sources.bluesky = vec![BlueskySourceConfig {
        name: "firehose".into(),
        url: format!("ws://{addr}/subscribe"),
        wanted_dids: vec![],
        cursor_rewind_ms: 500,
        checkpoint_interval_ms: 0,
        usual_interval_ms: 60_000,
    }];
    config.collector.politeness.per_host_interval_ms = 0;
    config.collector.politeness.initial_backoff_ms = 20;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    wait_until(Duration::from_secs(10), "a connection", || {
        !server.lock().unwrap().connections.is_empty()
    })
    .await;
    {
        let mut server = server.lock().unwrap();
        // The connection drops after these six frames.
        server.close_after = Some(6);
        server.log.push(post_event(1, "Acme kettle review"));
        server.log.push((
            BASE_US + 1_500_000,
            "{\"did\": \"did:plc:kim\", \"time_us\":".into(),
        ));
        server.log.push(post_event(2, "Acme support was quick"));
        server.log.push((
            BASE_US + 2_500_000,
            serde_json::json!({"did": "did:plc:kim", "time_us": BASE_US + 2_500_000, "kind": "identity",
                "identity": {"did": "did:plc:kim", "handle": "kim.bsky.social", "seq": 9, "time": "2026-11-23T09:00:02Z"}})
            .to_string(),
        ));
        server.log.push((
            BASE_US + 3_000_000,
            serde_json::json!({"did": "did:plc:kim", "time_us": BASE_US + 3_000_000, "kind": "commit",
                "commit": {"rev": "rev3", "operation": "delete", "collection": "app.bsky.feed.post", "rkey": "post1"}})
            .to_string(),
        ));
        server.log.push(post_event(4, "Acme recall announced"));
        // After the drop:
        server
            .log
            .push(post_event(5, "Acme recall covered by the news"));
    }
    wait_until(Duration::from_secs(10), "a reconnection", || {
        server.lock().unwrap().connections.len() >= 2
    })
    .await;
    server
        .lock()
        .unwrap()
        .log
        .push(post_event(6, "Acme statement published"));
    wait_until(Duration::from_secs(10), "every post", || {
        let ids: BTreeSet<String> = mentions(&bus, &services)
            .into_iter()
            .map(|m| m.native_id)
            .collect();
        ids.len() == 5
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let server = server.lock().unwrap();
    assert_eq!(
        server.connections[0].wanted_collections,
        "app.bsky.feed.post"
    );
    assert_eq!(
        server.connections[0].cursor, None,
        "a first start reads from now"
    );
    assert_eq!(
        server.connections[1].cursor,
        Some(BASE_US + 4_000_000 - 500_000),
        "resumed from the last event read, rewound by cursor_rewind_ms"
    );
    assert!(server.user_agents[0].starts_with("Earshot/"));
    let ids: BTreeSet<String> = mentions(&bus, &services)
        .into_iter()
        .map(|m| m.native_id)
        .collect();
    let expected: BTreeSet<String> = [1, 2, 4, 5, 6]
        .iter()
        .map(|n| format!("at://did:plc:kim/app.bsky.feed.post/post{n}"))
        .collect();
    assert_eq!(ids, expected, "no gap");
    let metrics = services.metrics.render();
    assert!(
        metrics.contains(
            "earshot_source_errors_total{error_type=\"malformed\",source=\"bluesky/firehose\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("earshot_source_deletes_total{source=\"bluesky/firehose\"} 1"));
}
