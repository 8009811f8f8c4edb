//! Mastodon streaming timelines: server-sent events from `/api/v1/streaming/public`,
//! `/public/local` or `/hashtag?tag=…` (events `update`, `status.update`, `delete`;
//! heartbeat comments keep the read timeout from firing), parsed by eventsource-stream.
//!
//! The checkpoint is the highest status id seen. On every (re)connection the stream is
//! opened first and the gap since that id is then backfilled over REST
//! (`/api/v1/timelines/public` or `/tag/:hashtag`), paging forward with `min_id`: `since_id`
//! would return only the newest page and leave a hole when more than a page was posted.
//! Events that arrived meanwhile wait in the open stream; a status the backfill already
//! yielded is skipped when its `update` comes through the stream.
//!
//! A status's native id is its `uri`, which is the same on every server the post federates
//! to, so one post is one mention whichever server it is read from. A boost yields the
//! boosted status.
//!
//! A `delete` event gives only the server's local id of the deleted status. The source
//! remembers, for the statuses it has yielded (the boosted one for a boost; deleting a boost
//! deletes no post), the local id's `uri`, author and creation time, in a bounded cache
//! ([`STATUS_CACHE_SIZE`], least recently used out), and turns the delete of a known status
//! into its retraction ([`Mention::retraction`], same stable id). The delete of a status it
//! never yielded (the public stream announces every deletion on the server), or yielded
//! before a restart, is only counted: the cache does not survive a restart.

use std::num::NonZeroUsize;
use std::time::Duration;

use earshot_core::config::{MastodonSourceConfig, MastodonTimeline};
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::http::{error_chain, FetchError};
use super::rss::html_to_text;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "mastodon";
/// Statuses remembered per source instance, to retract the ones deleted later.
pub const STATUS_CACHE_SIZE: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MastodonCheckpoint {
    /// The highest status id (this server's id space) yielded so far.
    #[serde(default)]
    pub last_id: Option<String>,
}

pub struct MastodonSource {
    config: MastodonSourceConfig,
    token: Option<String>,
    state: MastodonCheckpoint,
    /// Ids the backfill of the current connection yielded: the same statuses may also wait
    /// in the stream, opened before the backfill, and are not yielded twice.
    backfilled: std::collections::HashSet<String>,
    /// Local status id -> what a retraction of it needs.
    yielded: lru::LruCache<String, Yielded>,
}

/// What is remembered of a yielded status, for its retraction.
struct Yielded {
    native_id: String,
    handle: String,
    created_at: i64,
}

impl MastodonSource {
    pub fn new(config: MastodonSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        let token = config
            .access_token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .map(|t| t.trim().to_owned());
        MastodonSource {
            config,
            token,
            state,
            backfilled: Default::default(),
            yielded: lru::LruCache::new(NonZeroUsize::new(STATUS_CACHE_SIZE).expect("not zero")),
        }
    }

    /// Maps a status and remembers it for a later delete.
    fn yield_status(&mut self, status: &Status, source: earshot_core::model::Source) -> Mention {
        let mention = to_mention(status, source);
        let local_id = status.reblog.as_deref().map_or(&status.id, |s| &s.id);
        self.yielded.put(
            local_id.clone(),
            Yielded {
                native_id: mention.native_id.clone(),
                handle: mention.author.handle.clone(),
                created_at: mention.created_at,
            },
        );
        mention
    }

    /// The retraction of a deleted status this source yielded; `None` for one it never did.
    fn retraction(
        &mut self,
        local_id: &str,
        source: earshot_core::model::Source,
    ) -> Option<Mention> {
        let known = self.yielded.pop(local_id.trim())?;
        Some(Mention::retraction(
            source,
            known.native_id,
            Author::handle(known.handle),
            Some(known.created_at),
            now_micros(),
        ))
    }

    fn base(&self) -> &str {
        self.config.server.trim_end_matches('/')
    }

    fn stream_url(&self) -> String {
        let base = self.base();
        match self.config.timeline {
            MastodonTimeline::Public => format!("{base}/api/v1/streaming/public"),
            MastodonTimeline::Local => format!("{base}/api/v1/streaming/public/local"),
            MastodonTimeline::Hashtag => format!(
                "{base}/api/v1/streaming/hashtag?tag={}",
                encode(self.config.hashtag.as_deref().unwrap_or_default())
            ),
        }
    }

    fn timeline_url(&self, min_id: &str) -> String {
        let base = self.base();
        let limit = self.config.backfill_page_size;
        match self.config.timeline {
            MastodonTimeline::Public => {
                format!("{base}/api/v1/timelines/public?min_id={min_id}&limit={limit}")
            }
            MastodonTimeline::Local => {
                format!("{base}/api/v1/timelines/public?local=true&min_id={min_id}&limit={limit}")
            }
            MastodonTimeline::Hashtag => format!(
                "{base}/api/v1/timelines/tag/{}?min_id={min_id}&limit={limit}",
                encode(self.config.hashtag.as_deref().unwrap_or_default())
            ),
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Pages forward from the checkpoint until a page comes back empty.
    async fn backfill(&mut self, context: &SourceContext) -> Result<(), SourceError> {
        while let Some(last_id) = self.state.last_id.clone() {
            let url = self.timeline_url(&last_id);
            let response = context
                .http
                .send(
                    &url,
                    false,
                    |client| self.authorize(client.get(&url)),
                    &context.cancel,
                )
                .await?;
            if !response.status().is_success() {
                return Err(SourceError::Status {
                    url,
                    status: response.status().as_u16(),
                });
            }
            let body = response.bytes().await.map_err(|e| FetchError::Network {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            let page: Vec<serde_json::Value> =
                serde_json::from_slice(&body).map_err(|e| SourceError::Malformed {
                    what: format!("timeline page {url}"),
                    reason: e.to_string(),
                })?;
            if page.is_empty() {
                return Ok(());
            }
            let mut statuses = Vec::with_capacity(page.len());
            for value in page {
                match serde_json::from_value::<Status>(value.clone()) {
                    Ok(status) => statuses.push(status),
                    Err(error) => {
                        context.malformed("status", &value.to_string(), &error.to_string())
                    }
                }
            }
            // A page lists the newest first.
            statuses.sort_by(|a, b| compare_ids(&a.id, &b.id));
            let mut highest = last_id.clone();
            let mut mentions = Vec::new();
            for status in &statuses {
                if compare_ids(&status.id, &highest).is_gt() {
                    highest = status.id.clone();
                }
                mentions.push(self.yield_status(status, context.source()));
                self.backfilled.insert(status.id.clone());
            }
            if highest == last_id {
                // The server ignored min_id; stop rather than loop.
                return Ok(());
            }
            self.state.last_id = Some(highest);
            context
                .emit(
                    mentions,
                    Some(serde_json::to_value(&self.state).expect("serializes")),
                )
                .await?;
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        context: &SourceContext,
        event: &eventsource_stream::Event,
    ) -> Option<Mention> {
        match event.event.as_str() {
            "update" | "status.update" => match serde_json::from_str::<Status>(&event.data) {
                Ok(status) if event.event == "update" && self.backfilled.contains(&status.id) => {
                    None
                }
                Ok(status) => {
                    let newer = self
                        .state
                        .last_id
                        .as_deref()
                        .is_none_or(|last| compare_ids(&status.id, last).is_gt());
                    if newer {
                        self.state.last_id = Some(status.id.clone());
                    }
                    Some(self.yield_status(&status, context.source()))
                }
                Err(error) => {
                    context.malformed(&event.event, &event.data, &error.to_string());
                    None
                }
            },
            "delete" => {
                context.health.deleted();
                let retraction = self.retraction(&event.data, context.source());
                tracing::debug!(source = %context.key, id = %event.data, retracted = retraction.is_some(), "status deleted");
                retraction
            }
            // Notifications, conversations, announcements: not mentions.
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Source for MastodonSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let url = self.stream_url();
        let response = context
            .http
            .send(
                &url,
                true,
                |client| {
                    self.authorize(client.get(&url))
                        .header(reqwest::header::ACCEPT, "text/event-stream")
                },
                &context.cancel,
            )
            .await?;
        if !response.status().is_success() {
            return Err(SourceError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        // The stream is open: whatever is posted from now on waits in it while the gap is
        // backfilled.
        self.backfilled.clear();
        self.backfill(context).await?;
        context.health.succeeded();
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(eventsource_stream::EventStreamError::Transport(error)) => {
                    return Err(SourceError::Fetch(FetchError::Network {
                        url,
                        reason: error_chain(&error),
                    }))
                }
                Err(error) => {
                    return Err(SourceError::Malformed {
                        what: format!("event stream {url}"),
                        reason: error.to_string(),
                    })
                }
            };
            if let Some(mention) = self.handle_event(context, &event) {
                let checkpoint = serde_json::to_value(&self.state).expect("serializes");
                context.emit(vec![mention], Some(checkpoint)).await?;
            }
            context.health.succeeded();
        }
        tracing::info!(source = %context.key, "the stream ended; reconnecting");
        Ok(Next::Now)
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.usual_interval_ms)
    }
}

/// Mastodon ids are decimal strings (snowflakes): longer is larger, then lexical order.
fn compare_ids(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn encode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", text)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_owned()))
        .unwrap_or_default()
}

/// The fields of a Mastodon `Status` entity that Earshot uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub id: String,
    pub uri: String,
    #[serde(default)]
    pub url: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub account: Account,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub spoiler_text: String,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub in_reply_to_id: Option<String>,
    #[serde(default)]
    pub replies_count: i64,
    #[serde(default)]
    pub reblogs_count: i64,
    #[serde(default)]
    pub favourites_count: i64,
    #[serde(default)]
    pub media_attachments: Vec<serde_json::Value>,
    #[serde(default)]
    pub reblog: Option<Box<Status>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub acct: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub followers_count: Option<i64>,
    #[serde(default)]
    pub url: Option<String>,
}

/// Maps a status (or, for a boost, the boosted status) to a mention.
pub fn to_mention(status: &Status, source: earshot_core::model::Source) -> Mention {
    let status = status.reblog.as_deref().unwrap_or(status);
    let mut text = html_to_text(&status.content);
    if !status.spoiler_text.is_empty() {
        text = format!("{}\n\n{text}", status.spoiler_text);
    }
    // A local account's acct has no domain; its profile URL names the server.
    let handle = if status.account.acct.contains('@') {
        format!("@{}", status.account.acct)
    } else {
        let host = status
            .account
            .url
            .as_deref()
            .or(status.url.as_deref())
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned));
        match host {
            Some(host) => format!("@{}@{host}", status.account.acct),
            None => format!("@{}", status.account.acct),
        }
    };
    Mention {
        id: mention_id(KIND, &status.uri),
        native_id: status.uri.clone(),
        url: status.url.clone().or(Some(status.uri.clone())),
        author: Author {
            handle,
            name: (!status.account.display_name.is_empty())
                .then(|| status.account.display_name.clone()),
            followers: status.account.followers_count,
            verified: false,
            id: None,
        },
        text,
        lang_hint: status.language.clone(),
        created_at: status.created_at.timestamp_micros(),
        collected_at: now_micros(),
        engagement: Engagement {
            likes: status.favourites_count,
            reposts: status.reblogs_count,
            replies: status.replies_count,
        },
        parent_id: status.in_reply_to_id.clone(),
        conversation_id: None,
        has_media: !status.media_attachments.is_empty(),
        deleted_at: None,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_as_numbers() {
        let check = |a: &str, b: &str, expected: std::cmp::Ordering| {
            assert_eq!(compare_ids(a, b), expected, "{a} vs {b}");
        };
        check("109", "110", std::cmp::Ordering::Less);
        check("99", "100", std::cmp::Ordering::Less);
        check(
            "113507374537890123",
            "113507374537890123",
            std::cmp::Ordering::Equal,
        );
        check(
            "113507374537890124",
            "99999999999999999",
            std::cmp::Ordering::Greater,
        );
    }

    #[test]
    fn deleting_a_yielded_status_retracts_it_and_deleting_a_boost_retracts_nothing() {
        let mut source = MastodonSource::new(
            MastodonSourceConfig {
                name: "social".into(),
                server: "https://mastodon.social".into(),
                timeline: MastodonTimeline::Public,
                hashtag: None,
                access_token_env: None,
                backfill_page_size: 40,
                usual_interval_ms: 60_000,
            },
            None,
        );
        let origin = || earshot_core::model::Source {
            kind: KIND.into(),
            instance: "social".into(),
        };
        let boost: Status = serde_json::from_value(serde_json::json!({
            "id": "200", "uri": "https://mastodon.social/users/bob/statuses/200/activity",
            "created_at": "2026-11-23T09:05:00.000Z",
            "account": {"acct": "bob", "url": "https://mastodon.social/@bob"},
            "reblog": {"id": "100", "uri": "https://fosstodon.org/users/alice/statuses/9",
                "created_at": "2026-11-23T09:00:00.000Z", "account": {"acct": "alice@fosstodon.org"},
                "content": "<p>Acme kettle broke</p>"}
        }))
        .unwrap();
        let post = source.yield_status(&boost, origin());
        assert_eq!(
            source.retraction("200", origin()),
            None,
            "an unboost deletes no post"
        );
        assert_eq!(source.retraction("999", origin()), None, "never yielded");
        let retraction = source.retraction("100", origin()).unwrap();
        assert_eq!(retraction.id, post.id);
        assert_eq!(retraction.native_id, post.native_id);
        assert_eq!(retraction.author.handle, "@alice@fosstodon.org");
        assert_eq!(retraction.created_at, post.created_at);
        assert!(retraction.is_retraction());
        assert_eq!(source.retraction("100", origin()), None, "retracted once");
    }

    #[test]
    fn a_boost_yields_the_boosted_status_with_its_uri_as_id() {
        let json = serde_json::json!({
            "id": "113507374537890200",
            "uri": "https://mastodon.social/users/bob/statuses/113507374537890200/activity",
            "created_at": "2026-11-23T09:05:00.000Z",
            "account": {"id": "2", "acct": "bob", "display_name": "Bob", "url": "https://mastodon.social/@bob"},
            "content": "",
            "reblog": {
                "id": "113507374537890100",
                "uri": "https://fosstodon.org/users/alice/statuses/113507374537000000",
                "url": "https://fosstodon.org/@alice/113507374537000000",
                "created_at": "2026-11-23T09:00:00.000Z",
                "account": {"id": "1", "acct": "alice@fosstodon.org", "display_name": "Alice", "followers_count": 1200},
                "content": "<p>My <span class=\"h-card\"><a href=\"https://x\">@acme</a></span> kettle broke &amp; support ignored me</p>",
                "spoiler_text": "",
                "language": "en",
                "in_reply_to_id": null,
                "replies_count": 2, "reblogs_count": 5, "favourites_count": 9,
                "media_attachments": [{"id": "9", "type": "image"}]
            }
        });
        let status: Status = serde_json::from_value(json).unwrap();
        let source = earshot_core::model::Source {
            kind: KIND.into(),
            instance: "social".into(),
        };
        let mention = to_mention(&status, source);
        assert_eq!(
            mention.native_id,
            "https://fosstodon.org/users/alice/statuses/113507374537000000"
        );
        assert_eq!(mention.id, mention_id("mastodon", &mention.native_id));
        assert_eq!(mention.author.handle, "@alice@fosstodon.org");
        assert_eq!(mention.author.followers, Some(1200));
        assert_eq!(mention.text, "My @acme kettle broke & support ignored me");
        assert_eq!(
            mention.engagement,
            Engagement {
                likes: 9,
                reposts: 5,
                replies: 2
            }
        );
        assert!(mention.has_media);
        assert_eq!(mention.lang_hint.as_deref(), Some("en"));
    }
}
