//! The polling JSON sources against local servers shaped like the public APIs: Hacker News
//! (Firebase `maxitem` and `item/{id}`, an id whose item is still `null`, a deleted and a
//! malformed item), Reddit (listings paged with `after`, OAuth client credentials, 429 with
//! `Retry-After`) and Discourse (`/posts.json` paged with `before`). Each resumes from its
//! cursor and yields every new item once, oldest first: within a run over the in-memory bus,
//! and across a restart from the checkpoints saved in real Kafka.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use earshot_core::config::{
    DiscourseSourceConfig, HackerNewsSourceConfig, RedditListing, RedditOAuthConfig,
    RedditSourceConfig,
};
use earshot_core::memory::MemoryBus;
use earshot_core::model::Mention;
use earshot_core::{Config, Services};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Api {
    hn_max: u64,
    /// Every item id requested, in order.
    hn_item_requests: Vec<u64>,
    hn_polls: usize,
    hn_items: HashMap<u64, serde_json::Value>,
    /// Reddit posts, oldest first.
    reddit: Vec<serde_json::Value>,
    reddit_throttle_next: bool,
    reddit_tokens_issued: usize,
    user_agents: Vec<String>,
    /// Discourse posts, oldest first.
    discourse: Vec<serde_json::Value>,
    discourse_requests: Vec<Option<u64>>,
}

type Shared = Arc<Mutex<Api>>;

async fn hn_maxitem(State(api): State<Shared>) -> Json<u64> {
    let mut api = api.lock().unwrap();
    api.hn_polls += 1;
    Json(api.hn_max)
}

async fn hn_item(State(api): State<Shared>, Path(file): Path<String>) -> Response {
    let id: u64 = file.trim_end_matches(".json").parse().unwrap();
    let mut api = api.lock().unwrap();
    api.hn_item_requests.push(id);
    Json(
        api.hn_items
            .get(&id)
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    )
    .into_response()
}

fn hn_comment(id: u64, text: &str) -> serde_json::Value {
    serde_json::json!({"by": "pg", "id": id, "parent": 8863, "text": text, "time": 1763888400 + id, "type": "comment"})
}

const REDDIT_TOKEN: &str = "reddit-app-token";

async fn reddit_token(State(api): State<Shared>, headers: HeaderMap, body: String) -> Response {
    // Basic base64("client-id:client-secret").
    let expected = "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ=";
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected)
        || body != "grant_type=client_credentials"
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    api.lock().unwrap().reddit_tokens_issued += 1;
    Json(serde_json::json!({"access_token": REDDIT_TOKEN, "token_type": "bearer", "expires_in": 86400, "scope": "*"}))
        .into_response()
}

#[derive(serde::Deserialize)]
struct RedditQuery {
    #[serde(default)]
    after: Option<String>,
}

/// Two items a page (Reddit may return fewer than `limit`), newest first, `after` paging.
async fn reddit_new(
    State(api): State<Shared>,
    Query(query): Query<RedditQuery>,
    headers: HeaderMap,
) -> Response {
    let mut api = api.lock().unwrap();
    api.user_agents.push(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {REDDIT_TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if std::mem::take(&mut api.reddit_throttle_next) {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")]).into_response();
    }
    let newest_first: Vec<&serde_json::Value> = api.reddit.iter().rev().collect();
    let start = match &query.after {
        Some(after) => {
            newest_first
                .iter()
                .position(|p| p["data"]["name"] == after.as_str())
                .unwrap()
                + 1
        }
        None => 0,
    };
    let page: Vec<serde_json::Value> = newest_first
        .iter()
        .skip(start)
        .take(2)
        .map(|v| (*v).clone())
        .collect();
    let after =
        (start + 2 < newest_first.len()).then(|| page.last().unwrap()["data"]["name"].clone());
    Json(serde_json::json!({"kind": "Listing", "data": {"after": after, "dist": page.len(), "children": page, "before": null}}))
        .into_response()
}

fn reddit_post(n: u64) -> serde_json::Value {
    serde_json::json!({"kind": "t3", "data": {
        "name": format!("t3_p{n}"), "id": format!("p{n}"), "created_utc": 1763888400.0 + n as f64,
        "author": "brewfan", "title": format!("Brewtide question {n}"), "selftext": "",
        "subreddit": "coffee", "permalink": format!("/r/coffee/comments/p{n}/q/"),
        "score": 1, "num_comments": 0, "is_video": false}})
}

#[derive(serde::Deserialize)]
struct DiscourseQuery {
    #[serde(default)]
    before: Option<u64>,
}

/// Three posts a page, newest first, `before` paging.
async fn discourse_posts(
    State(api): State<Shared>,
    Query(query): Query<DiscourseQuery>,
) -> Json<serde_json::Value> {
    let mut api = api.lock().unwrap();
    api.discourse_requests.push(query.before);
    let page: Vec<serde_json::Value> = api
        .discourse
        .iter()
        .rev()
        .filter(|p| query.before.is_none_or(|b| p["id"].as_u64().unwrap() < b))
        .take(3)
        .cloned()
        .collect();
    Json(serde_json::json!({"latest_posts": page}))
}

fn discourse_post(id: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "name": "Kim", "username": "kim", "avatar_template": "/a/{size}.png",
        "created_at": "2026-11-23T09:00:00.000Z", "cooked": format!("<p>Halo lamp report {id}</p>"),
        "post_number": 2, "post_type": 1, "updated_at": "2026-11-23T09:00:00.000Z", "reply_count": 0,
        "reply_to_post_number": null, "topic_id": 311, "topic_slug": "halo-flicker",
        "topic_title": "Halo lamps flicker", "raw": "", "like_count": 0})
}

async fn api_server(api: Shared) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/v0/maxitem.json", get(hn_maxitem))
        .route("/v0/item/{file}", get(hn_item))
        .route("/api/v1/access_token", post(reddit_token))
        .route("/r/coffee/new.json", get(reddit_new))
        .route("/posts.json", get(discourse_posts))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mentions_of(bus: &MemoryBus, services: &Services, kind: &str) -> Vec<Mention> {
    bus.records(&services.config.topics.raw)
        .iter()
        .map(|r| futures::executor::block_on(services.codecs.mention.decode(&r.payload)).unwrap())
        .filter(|m| m.source.kind == kind)
        .collect()
}

fn native_ids(mentions: &[Mention]) -> Vec<String> {
    mentions.iter().map(|m| m.native_id.clone()).collect()
}

#[tokio::test]
async fn hacker_news_reddit_and_discourse_resume_from_their_cursors() {
    let api: Shared = Default::default();
    {
        let mut api = api.lock().unwrap();
        api.hn_max = 100;
        api.reddit = vec![reddit_post(1), reddit_post(2)];
        api.discourse = (1..=3).map(discourse_post).collect();
    }
    let addr = api_server(api.clone()).await;
    std::env::set_var("EARSHOT_TEST_REDDIT_ID", "client-id");
    std::env::set_var("EARSHOT_TEST_REDDIT_SECRET", "client-secret");
    let mut config = Config::default();
    let sources = &mut config.collector.sources;
    sources.hackernews = vec![HackerNewsSourceConfig {
        name: "hn".into(),
        url: format!("http://{addr}/v0"),
        interval_ms: 30,
        max_items_per_poll: 100,
        concurrency: 4,
    }];
    sources.reddit = vec![RedditSourceConfig {
        name: "coffee".into(),
        listing: RedditListing::New,
        subreddit: Some("coffee".into()),
        query: None,
        url: format!("http://{addr}"),
        oauth: Some(RedditOAuthConfig {
            client_id_env: "EARSHOT_TEST_REDDIT_ID".into(),
            client_secret_env: "EARSHOT_TEST_REDDIT_SECRET".into(),
            token_url: format!("http://{addr}/api/v1/access_token"),
        }),
        interval_ms: 30,
        jitter_ms: 0,
        max_pages: 10,
    }];
    sources.discourse = vec![DiscourseSourceConfig {
        name: "forum".into(),
        url: format!("http://{addr}"),
        api_key_env: None,
        api_username_env: None,
        interval_ms: 30,
        jitter_ms: 0,
        max_pages: 10,
    }];
    config.collector.politeness.per_host_interval_ms = 0;
    config.collector.politeness.initial_backoff_ms = 10;
    let bus = MemoryBus::new();
    let services = Services::memory(config, bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(earshot_collector::run_with(
        services.clone(),
        shutdown.clone(),
    ));

    // First start: Reddit yields its first page; Hacker News and Discourse begin at the present.
    wait_until(Duration::from_secs(10), "the first Reddit page", || {
        mentions_of(&bus, &services, "reddit").len() == 2
    })
    .await;
    wait_until(Duration::from_secs(10), "the first Discourse poll", || {
        api.lock().unwrap().discourse_requests.len() >= 2
    })
    .await;

    {
        let mut api = api.lock().unwrap();
        api.hn_items
            .insert(101, hn_comment(101, "Acme&#x27;s API is down"));
        api.hn_items.insert(
            102,
            serde_json::json!({"id": 102, "deleted": true, "type": "comment", "time": 1}),
        );
        api.hn_items.insert(
            103,
            serde_json::json!({"id": "not a number", "type": "story"}),
        );
        api.hn_items.insert(104, serde_json::json!({"by": "dang", "id": 104, "title": "Acme raises prices", "type": "story", "time": 1763888500, "score": 10, "descendants": 3, "url": "https://acme.example/blog"}));
        api.hn_max = 105; // 105 is announced before its item exists
        api.reddit.extend((3..=7).map(reddit_post));
        api.reddit_throttle_next = true;
        api.discourse.extend((4..=8).map(discourse_post));
    }
    wait_until(
        Duration::from_secs(10),
        "Hacker News items up to 104",
        || mentions_of(&bus, &services, "hackernews").len() == 2,
    )
    .await;
    api.lock()
        .unwrap()
        .hn_items
        .insert(105, hn_comment(105, "Confirmed, Acme status page is red"));
    wait_until(Duration::from_secs(10), "every new item", || {
        mentions_of(&bus, &services, "hackernews").len() == 3
            && mentions_of(&bus, &services, "reddit").len() == 7
            && mentions_of(&bus, &services, "discourse").len() == 5
    })
    .await;
    // Let a few more polls pass: nothing may be yielded twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let hn = mentions_of(&bus, &services, "hackernews");
    assert_eq!(native_ids(&hn), ["101", "104", "105"]);
    assert_eq!(hn[0].text, "Acme's API is down");
    assert_eq!(
        hn[1].text,
        "Acme raises prices\n\nhttps://acme.example/blog"
    );
    let reddit = mentions_of(&bus, &services, "reddit");
    assert_eq!(
        native_ids(&reddit),
        (1..=7).map(|n| format!("t3_p{n}")).collect::<Vec<_>>(),
        "paged back with after, oldest first, each once"
    );
    let discourse = mentions_of(&bus, &services, "discourse");
    assert_eq!(
        native_ids(&discourse),
        (4..=8)
            .map(|n| format!("http://{addr}/p/{n}"))
            .collect::<Vec<_>>()
    );
    let api = api.lock().unwrap();
    assert_eq!(
        api.reddit_tokens_issued, 1,
        "the token is reused until it expires"
    );
    assert!(api.user_agents.iter().all(|ua| ua.starts_with("Earshot/")));
    assert!(
        api.discourse_requests.contains(&Some(6)),
        "paged back with before: {:?}",
        api.discourse_requests
    );
    let metrics = services.metrics.render();
    assert!(
        metrics.contains(
            "earshot_source_errors_total{error_type=\"malformed\",source=\"hackernews/hn\"} 1"
        ),
        "{metrics}"
    );
}

/// Against real Kafka: Hacker News (last item id), Reddit (`after` paging and the seen ids)
/// and Discourse (last post id) each yield a first batch, the collector is stopped, more is
/// posted while it is down, and the restarted collector resumes each from the checkpoint it
/// saved: every item is on the raw topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_polling_sources_resume_from_their_kafka_checkpoints_with_no_gap_and_no_loss() {
    let api: Shared = Default::default();
    {
        let mut api = api.lock().unwrap();
        api.hn_max = 100;
        api.reddit = vec![reddit_post(1), reddit_post(2)];
        api.discourse = (1..=3).map(discourse_post).collect();
    }
    let addr = api_server(api.clone()).await;
    std::env::set_var("EARSHOT_TEST_REDDIT_ID", "client-id");
    std::env::set_var("EARSHOT_TEST_REDDIT_SECRET", "client-secret");
    let run = common::unique("polling_restart");
    let mut config = common::kafka_config(&run);
    let sources = &mut config.collector.sources;
    sources.hackernews = vec![HackerNewsSourceConfig {
        name: "hn".into(),
        url: format!("http://{addr}/v0"),
        interval_ms: 50,
        max_items_per_poll: 100,
        concurrency: 4,
    }];
    sources.reddit = vec![RedditSourceConfig {
        name: "coffee".into(),
        listing: RedditListing::New,
        subreddit: Some("coffee".into()),
        query: None,
        url: format!("http://{addr}"),
        oauth: Some(RedditOAuthConfig {
            client_id_env: "EARSHOT_TEST_REDDIT_ID".into(),
            client_secret_env: "EARSHOT_TEST_REDDIT_SECRET".into(),
            token_url: format!("http://{addr}/api/v1/access_token"),
        }),
        interval_ms: 50,
        jitter_ms: 0,
        max_pages: 10,
    }];
    sources.discourse = vec![DiscourseSourceConfig {
        name: "forum".into(),
        url: format!("http://{addr}"),
        api_key_env: None,
        api_username_env: None,
        interval_ms: 50,
        jitter_ms: 0,
        max_pages: 10,
    }];

    let collector = common::Running::start(&config).await;
    // Two polls of each: the first one's checkpoint (the present) is taken.
    common::wait_until(Duration::from_secs(30), "two polls of each source", || {
        let api = api.lock().unwrap();
        api.hn_polls >= 2 && api.user_agents.len() >= 2 && api.discourse_requests.len() >= 2
    })
    .await;
    {
        let mut api = api.lock().unwrap();
        api.hn_items.insert(101, hn_comment(101, "Acme one"));
        api.hn_items.insert(102, hn_comment(102, "Acme two"));
        api.hn_max = 102;
        api.reddit.extend((3..=4).map(reddit_post));
        api.discourse.extend((4..=5).map(discourse_post));
    }
    // p1, p2 (Reddit's first page), p3, p4; 101, 102; 4, 5.
    let first = common::raw_mentions(&config, 8).await;
    assert_eq!(first.len(), 8, "{:?}", common::native_ids(&first));
    collector.stop().await;

    let requested_before_restart = api.lock().unwrap().hn_item_requests.len();
    {
        let mut api = api.lock().unwrap();
        for id in 103..=105 {
            api.hn_items
                .insert(id, hn_comment(id, &format!("Acme while down {id}")));
        }
        api.hn_max = 105;
        api.reddit.extend((5..=7).map(reddit_post));
        api.discourse.extend((6..=8).map(discourse_post));
    }
    let collector = common::Running::start(&config).await;
    let all = common::raw_mentions(&config, 17).await;
    collector.stop().await;

    let ids_of = |kind: &str| {
        common::native_ids(
            &all.iter()
                .filter(|m| m.source.kind == kind)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        ids_of("hackernews"),
        ["101", "102", "103", "104", "105"],
        "every item exactly once"
    );
    let mut reddit: Vec<String> = (1..=7).map(|n| format!("t3_p{n}")).collect();
    reddit.sort();
    assert_eq!(ids_of("reddit"), reddit, "every post exactly once");
    assert_eq!(
        ids_of("discourse"),
        (4..=8)
            .map(|n| format!("http://{addr}/p/{n}"))
            .collect::<Vec<_>>(),
        "every post exactly once"
    );
    assert_eq!(
        api.lock().unwrap().hn_item_requests[requested_before_restart..]
            .iter()
            .min(),
        Some(&103),
        "Hacker News resumed after the last item id of the checkpoint"
    );
}
