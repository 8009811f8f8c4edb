//! Bluesky through Jetstream: a WebSocket (tokio-tungstenite) on
//! `/subscribe?wantedCollections=app.bsky.feed.post` (optionally `wantedDids=…`) carrying
//! one JSON event per text frame. Commits of posts are what Earshot reads: `create` and
//! `update` yield the post, `delete` its retraction (same stable id, see
//! [`Mention::retraction`]).
//!
//! A commit names its author by DID only. Jetstream also sends `identity` events (a DID and
//! its current handle) whatever `wantedCollections` says; the source keeps the handles they
//! give in a bounded cache (least recently used out, [`HANDLE_CACHE_SIZE`]) and shows an
//! author as `@handle` when it knows it, as the DID otherwise. The DID is always in
//! `author.id`, which does not change when the handle does.
//!
//! The checkpoint is the `time_us` of the last event read (at most one per
//! `checkpoint_interval_ms`). A connection resumes with `cursor` set to it minus
//! `cursor_rewind_ms`, because Jetstream's cursor is a time, not a position: events near the
//! cut may be delivered in a slightly different order. The overlap is removed by the stable
//! id downstream (the post's `at://` URI).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use earshot_core::config::BlueskySourceConfig;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::http::FetchError;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "bluesky";
const POST_COLLECTION: &str = "app.bsky.feed.post";
/// Handles remembered from identity events, per source instance.
pub const HANDLE_CACHE_SIZE: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlueskyCheckpoint {
    /// `time_us` of the last event read.
    #[serde(default)]
    pub time_us: Option<i64>,
}

pub struct BlueskySource {
    config: BlueskySourceConfig,
    state: BlueskyCheckpoint,
    handles: Handles,
}

/// DID -> handle, from identity events; bounded, least recently used out.
pub struct Handles(lru::LruCache<String, String>);

impl Handles {
    pub fn new(capacity: usize) -> Self {
        Handles(lru::LruCache::new(
            NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
        ))
    }

    /// Learns from an identity event; an identity without a handle forgets the DID's.
    pub fn learn(&mut self, event: &JetstreamEvent) {
        let Some(identity) = event.identity.as_ref().filter(|_| event.kind == "identity") else {
            return;
        };
        match identity.handle.as_deref().map(str::trim) {
            Some(handle) if !handle.is_empty() && handle != "handle.invalid" => {
                self.0.put(event.did.clone(), handle.to_owned());
            }
            _ => {
                self.0.pop(&event.did);
            }
        }
    }

    /// The author of an event: `@handle` when known, else the DID; the DID in `id`.
    pub fn author(&mut self, did: &str) -> Author {
        let handle = match self.0.get(did) {
            Some(handle) => format!("@{handle}"),
            None => did.to_owned(),
        };
        Author {
            id: Some(did.to_owned()),
            ..Author::handle(handle)
        }
    }
}

impl BlueskySource {
    pub fn new(config: BlueskySourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        BlueskySource {
            config,
            state,
            handles: Handles::new(HANDLE_CACHE_SIZE),
        }
    }

    /// The subscribe URL with the wanted collection and accounts, and the rewound cursor.
    pub fn subscribe_url(&self) -> String {
        let mut url = reqwest::Url::parse(&self.config.url).expect("validated at load");
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("wantedCollections", POST_COLLECTION);
            for did in &self.config.wanted_dids {
                query.append_pair("wantedDids", did);
            }
            if let Some(time_us) = self.state.time_us {
                let rewind = self.config.cursor_rewind_ms as i64 * 1_000;
                query.append_pair("cursor", &(time_us - rewind).max(0).to_string());
            }
        }
        url.to_string()
    }
}

#[async_trait::async_trait]
impl Source for BlueskySource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let url = self.subscribe_url();
        let network = |reason: String| {
            SourceError::Fetch(FetchError::Network {
                url: url.clone(),
                reason,
            })
        };
        context.http.wait_turn_for(&url, &context.cancel).await?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| network(e.to_string()))?;
        request.headers_mut().insert(
            reqwest::header::USER_AGENT,
            context
                .http
                .user_agent
                .parse()
                .map_err(|_| network("the User-Agent is not a valid header value".into()))?,
        );
        let connected = tokio::time::timeout(
            context.http.connect_timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| network("connect timed out".into()))?;
        let (mut socket, _) = connected.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => SourceError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            },
            other => network(other.to_string()),
        })?;
        context.health.succeeded();
        let interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let mut last_checkpoint = Instant::now();
        let mut unsaved = false;
        loop {
            let frame = match tokio::time::timeout(context.http.read_timeout, socket.next()).await {
                Err(_) => return Err(network("no frame within the read timeout".into())),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(network(error.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let text = match frame {
                Message::Text(text) => text,
                Message::Close(_) => break,
                Message::Binary(bytes) => {
                    context.malformed(
                        "frame",
                        &format!("{} binary bytes", bytes.len()),
                        "binary frame (compression was not requested)",
                    );
                    continue;
                }
                // Pings are answered by tungstenite itself.
                _ => continue,
            };
            let event: JetstreamEvent = match serde_json::from_str(text.as_str()) {
                Ok(event) => event,
                Err(error) => {
                    context.malformed("event", text.as_str(), &error.to_string());
                    continue;
                }
            };
            self.state.time_us = Some(event.time_us);
            unsaved = true;
            self.handles.learn(&event);
            let mut mentions = Vec::new();
            match to_mention(&event, &mut self.handles, context.source()) {
                Ok(Some(mention)) => {
                    if mention.is_retraction() {
                        context.health.deleted();
                    }
                    mentions.push(mention);
                }
                Ok(None) => {}
                Err(error) => context.malformed("post", text.as_str(), &error),
            }
            let due = last_checkpoint.elapsed() >= interval;
            if !mentions.is_empty() || due {
                let checkpoint =
                    due.then(|| serde_json::to_value(&self.state).expect("serializes"));
                if due {
                    last_checkpoint = Instant::now();
                    unsaved = false;
                }
                context.emit(mentions, checkpoint).await?;
            }
            context.health.succeeded();
        }
        if unsaved {
            let checkpoint = serde_json::to_value(&self.state).expect("serializes");
            context.emit(Vec::new(), Some(checkpoint)).await?;
        }
        tracing::info!(source = %context.key, "the Jetstream connection closed; reconnecting");
        Ok(Next::Now)
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.usual_interval_ms)
    }
}

/// One Jetstream event.
#[derive(Debug, Clone, Deserialize)]
pub struct JetstreamEvent {
    pub did: String,
    pub time_us: i64,
    pub kind: String,
    #[serde(default)]
    pub commit: Option<Commit>,
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// An `identity` event's payload: the DID's current handle, when it has a valid one.
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub handle: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub operation: String,
    pub collection: String,
    pub rkey: String,
    #[serde(default)]
    pub record: Option<serde_json::Value>,
}

/// A post created or updated, or the retraction of a deleted one; `Ok(None)` for everything
/// else (other collections, identity and account events); `Err` for a post record that is
/// not one.
pub fn to_mention(
    event: &JetstreamEvent,
    handles: &mut Handles,
    source: earshot_core::model::Source,
) -> Result<Option<Mention>, String> {
    let Some(commit) = &event.commit else {
        return Ok(None);
    };
    if event.kind != "commit" || commit.collection != POST_COLLECTION {
        return Ok(None);
    }
    let uri = format!("at://{}/{}/{}", event.did, commit.collection, commit.rkey);
    match commit.operation.as_str() {
        "create" | "update" => {}
        "delete" => {
            return Ok(Some(Mention::retraction(
                source,
                uri,
                handles.author(&event.did),
                None,
                event.time_us,
            )))
        }
        _ => return Ok(None),
    }
    let record = commit
        .record
        .as_ref()
        .ok_or("a post commit without a record")?;
    let text = record["text"]
        .as_str()
        .ok_or("the post record has no text")?
        .trim()
        .to_owned();
    if text.is_empty() {
        // An image-only post: nothing to listen to.
        return Ok(None);
    }
    let created_at = record["createdAt"]
        .as_str()
        .ok_or("the post record has no createdAt")
        .and_then(|t| {
            chrono::DateTime::parse_from_rfc3339(t).map_err(|_| "createdAt is not RFC 3339")
        })?
        .timestamp_micros();
    let embed_type = record["embed"]["$type"].as_str().unwrap_or_default();
    Ok(Some(Mention {
        id: mention_id(KIND, &uri),
        url: Some(format!(
            "https://bsky.app/profile/{}/post/{}",
            event.did, commit.rkey
        )),
        native_id: uri,
        author: handles.author(&event.did),
        text,
        lang_hint: record["langs"][0].as_str().map(str::to_owned),
        created_at,
        collected_at: now_micros(),
        engagement: Engagement::default(),
        parent_id: record["reply"]["parent"]["uri"].as_str().map(str::to_owned),
        conversation_id: record["reply"]["root"]["uri"].as_str().map(str::to_owned),
        has_media: embed_type.contains("images")
            || embed_type.contains("video")
            || embed_type.contains("recordWithMedia"),
        deleted_at: None,
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> earshot_core::model::Source {
        earshot_core::model::Source {
            kind: KIND.into(),
            instance: "firehose".into(),
        }
    }

    #[test]
    fn post_commits_map_to_mentions_and_the_rest_is_skipped() {
        let check = |json: serde_json::Value, expected: Result<Option<&str>, &str>| {
            let event: JetstreamEvent = serde_json::from_value(json.clone()).unwrap();
            let got = to_mention(&event, &mut Handles::new(10), source());
            match (got, expected) {
                (Ok(Some(m)), Ok(Some(text))) => assert_eq!(m.text, text, "{json}"),
                (Ok(None), Ok(None)) => {}
                (Err(e), Err(want)) => assert!(e.contains(want), "{e} for {json}"),
                (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
            }
        };
        let post = |operation: &str, record: serde_json::Value| {
            serde_json::json!({"did": "did:plc:abc", "time_us": 1_763_888_400_000_000i64, "kind": "commit",
                "commit": {"rev": "3l3q", "operation": operation, "collection": "app.bsky.feed.post",
                           "rkey": "3l3qo2vuowo2b", "record": record, "cid": "bafyrei"}})
        };
        let record = serde_json::json!({"$type": "app.bsky.feed.post", "text": "Acme kettle review",
            "createdAt": "2026-11-23T09:00:00.000Z", "langs": ["en"]});
        check(
            post("create", record.clone()),
            Ok(Some("Acme kettle review")),
        );
        check(
            post("update", record.clone()),
            Ok(Some("Acme kettle review")),
        );
        check(
            serde_json::json!({"did": "did:plc:abc", "time_us": 1, "kind": "commit",
                "commit": {"rev": "1", "operation": "delete", "collection": "app.bsky.feed.post", "rkey": "3l3q"}}),
            Ok(Some("")),
        );
        check(
            serde_json::json!({"did": "did:plc:abc", "time_us": 1, "kind": "commit",
                "commit": {"rev": "1", "operation": "create", "collection": "app.bsky.feed.like", "rkey": "3l3q",
                           "record": {"subject": {"uri": "at://did:plc:x/app.bsky.feed.post/1"}}}}),
            Ok(None),
        );
        check(
            serde_json::json!({"did": "did:plc:abc", "time_us": 1, "kind": "identity",
                "identity": {"did": "did:plc:abc", "handle": "kim.bsky.social", "seq": 1, "time": "2026-11-23T09:00:00Z"}}),
            Ok(None),
        );
        check(
            post("create", serde_json::json!({"text": "no date"})),
            Err("createdAt"),
        );
        check(
            post(
                "create",
                serde_json::json!({"createdAt": "2026-11-23T09:00:00Z"}),
            ),
            Err("no text"),
        );
    }

    #[test]
    fn a_reply_with_images_keeps_its_thread_and_media_flag() {
        let event: JetstreamEvent = serde_json::from_value(serde_json::json!({
            "did": "did:plc:kim", "time_us": 1_763_888_400_000_000i64, "kind": "commit",
            "commit": {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "3kb",
              "record": {"text": "Same here", "createdAt": "2026-11-23T09:00:00Z", "langs": ["en"],
                "reply": {"root": {"uri": "at://did:plc:a/app.bsky.feed.post/1", "cid": "x"},
                          "parent": {"uri": "at://did:plc:b/app.bsky.feed.post/2", "cid": "y"}},
                "embed": {"$type": "app.bsky.embed.images", "images": []}}}
        }))
        .unwrap();
        let mention = to_mention(&event, &mut Handles::new(10), source())
            .unwrap()
            .unwrap();
        assert_eq!(mention.native_id, "at://did:plc:kim/app.bsky.feed.post/3kb");
        assert_eq!(
            mention.url.as_deref(),
            Some("https://bsky.app/profile/did:plc:kim/post/3kb")
        );
        assert_eq!(
            mention.parent_id.as_deref(),
            Some("at://did:plc:b/app.bsky.feed.post/2")
        );
        assert_eq!(
            mention.conversation_id.as_deref(),
            Some("at://did:plc:a/app.bsky.feed.post/1")
        );
        assert!(mention.has_media);
    }

    #[test]
    fn a_delete_retracts_the_post_under_its_stable_id() {
        let event = |operation: &str| -> JetstreamEvent {
            serde_json::from_value(serde_json::json!({
                "did": "did:plc:kim", "time_us": 1_763_888_460_000_000i64, "kind": "commit",
                "commit": {"rev": "r", "operation": operation, "collection": "app.bsky.feed.post", "rkey": "3kb",
                  "record": {"text": "Acme kettle broke", "createdAt": "2026-11-23T09:00:00Z"}}
            }))
            .unwrap()
        };
        let handles = &mut Handles::new(10);
        let post = to_mention(&event("create"), handles, source())
            .unwrap()
            .unwrap();
        let retraction = to_mention(&event("delete"), handles, source())
            .unwrap()
            .unwrap();
        assert!(!post.is_retraction());
        assert!(retraction.is_retraction());
        assert_eq!(retraction.id, post.id);
        assert_eq!(retraction.native_id, post.native_id);
        assert_eq!(retraction.deleted_at, Some(1_763_888_460_000_000));
        assert_eq!(retraction.text, "");
        assert_eq!(retraction.author.id.as_deref(), Some("did:plc:kim"));
    }

    #[test]
    fn identity_events_give_authors_their_handles_within_a_bounded_cache() {
        let identity = |did: &str, handle: Option<&str>| -> JetstreamEvent {
            serde_json::from_value(serde_json::json!({
                "did": did, "time_us": 1, "kind": "identity",
                "identity": {"did": did, "handle": handle, "seq": 1, "time": "2026-11-23T09:00:00Z"}
            }))
            .unwrap()
        };
        let handles = &mut Handles::new(2);
        let check = |handles: &mut Handles, did: &str, expected: &str| {
            let author = handles.author(did);
            assert_eq!(author.handle, expected, "{did}");
            assert_eq!(
                author.id.as_deref(),
                Some(did),
                "the DID stays in author.id"
            );
        };
        check(handles, "did:plc:kim", "did:plc:kim");
        handles.learn(&identity("did:plc:kim", Some("kim.bsky.social")));
        check(handles, "did:plc:kim", "@kim.bsky.social");
        handles.learn(&identity("did:plc:kim", Some("kim.example.com")));
        check(handles, "did:plc:kim", "@kim.example.com");
        handles.learn(&identity("did:plc:sam", Some("sam.bsky.social")));
        handles.learn(&identity("did:plc:ana", Some("ana.bsky.social")));
        // Capacity 2: kim, the least recently used, is forgotten.
        check(handles, "did:plc:kim", "did:plc:kim");
        check(handles, "did:plc:ana", "@ana.bsky.social");
        handles.learn(&identity("did:plc:ana", Some("handle.invalid")));
        check(handles, "did:plc:ana", "did:plc:ana");
        handles.learn(&identity("did:plc:sam", None));
        check(handles, "did:plc:sam", "did:plc:sam");
    }

    #[test]
    fn the_cursor_is_rewound_from_the_checkpoint() {
        let config = BlueskySourceConfig {
            name: "f".into(),
            url: "wss://jetstream.example/subscribe".into(),
            wanted_dids: vec!["did:plc:kim".into()],
            cursor_rewind_ms: 5_000,
            checkpoint_interval_ms: 1_000,
            usual_interval_ms: 60_000,
        };
        let fresh = BlueskySource::new(config.clone(), None);
        assert_eq!(
            fresh.subscribe_url(),
            "wss://jetstream.example/subscribe?wantedCollections=app.bsky.feed.post&wantedDids=did%3Aplc%3Akim"
        );
        let resumed =
            BlueskySource::new(config, Some(serde_json::json!({"time_us": 1_000_000_000})));
        assert!(resumed.subscribe_url().ends_with("&cursor=995000000"));
    }
}
