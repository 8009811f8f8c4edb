//! Bluesky against a local Jetstream: a WebSocket server that, like the real one, replays
//! every event from `cursor` (a `time_us`) on and then streams live ones, with post creates,
//! updates, deletes (retracted), identity events (authors' handles) and a malformed frame, and
//! that drops the connection in the middle. The reconnection resumes from the stored cursor
//! rewound a few seconds.

mod common;

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
    let all = mentions(&bus, &services);
    let of = |n: u32| {
        all.iter()
            .filter(move |m| m.native_id == format!("at://did:plc:kim/app.bsky.feed.post/post{n}"))
    };
    let retractions: Vec<&Mention> = all.iter().filter(|m| m.is_retraction()).collect();
    assert_eq!(
        retractions.len(),
        1,
        "the delete of post1 is retracted once"
    );
    let post1 = of(1).find(|m| !m.is_retraction()).unwrap();
    assert_eq!(retractions[0].id, post1.id, "under the post's stable id");
    assert_eq!(retractions[0].deleted_at, Some(BASE_US + 3_000_000));
    assert_eq!(retractions[0].text, "");
    // Before the identity event the author is known by DID only; after it, by handle.
    assert_eq!(post1.author.handle, "did:plc:kim");
    assert_eq!(retractions[0].author.handle, "@kim.bsky.social");
    for post in of(4).chain(of(6)) {
        assert_eq!(post.author.handle, "@kim.bsky.social");
    }
    assert!(all
        .iter()
        .all(|m| m.author.id.as_deref() == Some("did:plc:kim")));
    let metrics = services.metrics.render();
    assert!(
        metrics.contains(
            "earshot_source_errors_total{error_type=\"malformed\",source=\"bluesky/firehose\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("earshot_source_deletes_total{source=\"bluesky/firehose\"} 1"));
}

async fn jetstream_server(server: Shared) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/subscribe", get(subscribe))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Against real Kafka: three posts are read, the collector is stopped, two more are posted
/// while it is down, and the restarted collector connects with the `time_us` cursor of its
/// checkpoint rewound by `cursor_rewind_ms`. Jetstream replays from there, so the posts just
/// before the cut come again: no gap, and the overlap has the posts' stable ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_resumes_jetstream_from_its_rewound_kafka_checkpoint() {
    let server: Shared = Default::default();
    let addr = jetstream_server(server.clone()).await;
    let run = common::unique("bluesky_restart");
    let mut config = common::kafka_config(&run);
    config.collector.sources.bluesky = vec![BlueskySourceConfig {
        name: "firehose".into(),
        url: format!("ws://{addr}/subscribe"),
        wanted_dids: vec![],
        cursor_rewind_ms: 1_500,
        checkpoint_interval_ms: 0,
        usual_interval_ms: 60_000,
    }];

    let collector = common::Running::start(&config).await;
    common::wait_until(Duration::from_secs(30), "a connection", || {
        !server.lock().unwrap().connections.is_empty()
    })
    .await;
    for n in 1..=3 {
        server
            .lock()
            .unwrap()
            .log
            .push(post_event(n, &format!("Acme post {n}")));
    }
    assert_eq!(common::raw_mentions(&config, 3).await.len(), 3);
    collector.stop().await;

    for n in 4..=5 {
        server
            .lock()
            .unwrap()
            .log
            .push(post_event(n, &format!("Acme while down {n}")));
    }
    let collector = common::Running::start(&config).await;
    common::wait_until(Duration::from_secs(30), "the second connection", || {
        server.lock().unwrap().connections.len() >= 2
    })
    .await;
    server
        .lock()
        .unwrap()
        .log
        .push(post_event(6, "Acme live again"));
    let all = common::raw_mentions(&config, 6).await;
    collector.stop().await;

    assert_eq!(
        server.lock().unwrap().connections[1].cursor,
        Some(BASE_US + 3_000_000 - 1_500_000),
        "the checkpoint's time_us (post 3), rewound by cursor_rewind_ms"
    );
    let distinct: BTreeSet<String> = all.iter().map(|m| m.native_id.clone()).collect();
    let expected: BTreeSet<String> = (1..=6)
        .map(|n| format!("at://did:plc:kim/app.bsky.feed.post/post{n}"))
        .collect();
    assert_eq!(distinct, expected, "no gap");
    // Posts 2 and 3 were replayed: read twice, under their stable ids.
    assert_eq!(
        common::native_ids(&all),
        [1, 2, 2, 3, 3, 4, 5, 6]
            .iter()
            .map(|n| format!("at://did:plc:kim/app.bsky.feed.post/post{n}"))
            .collect::<Vec<_>>()
    );
    for mention in &all {
        assert_eq!(
            mention.id,
            earshot_core::model::mention_id("bluesky", &mention.native_id),
            "the overlap is removed downstream by the stable id"
        );
    }
}
