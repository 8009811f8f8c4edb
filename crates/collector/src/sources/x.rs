//! The X filtered stream (API v2). At every connection the rule set is first made exactly the
//! configured one (`GET`, then `POST /2/tweets/search/stream/rules` with `delete` and `add`);
//! then `GET /2/tweets/search/stream` with the expansions that carry the author's metrics is
//! held open. The body is one JSON object per line, with blank keep-alive lines every 20 s;
//! the read timeout catches a stalled stream. 429 honours `Retry-After` or
//! `x-rate-limit-reset`; other failures reconnect with backoff. The bearer token comes from
//! the environment.
//!
//! The stream has no cursor. `backfill_minutes` asks X for what was missed during a short
//! disconnection, on the tiers that offer it: on every reconnection, and on the first
//! connection of a restarted collector (its checkpoint records the last post id read). The
//! overlap the backfill brings is removed downstream by the stable id.
//! Mentions use the source kind `x`, the same as posts sent through the ingest endpoint, so
//! one post has one id whichever way it arrives; the author's user id is in `author.id`.
//!
//! Deletes: the v2 filtered stream carries none (X sends them on its separate batch
//! compliance endpoints, not read here), so X posts are never retracted by this source. A
//! client that learns of a deletion can post the retraction to the ingest endpoint
//! (`deleted_at`, same `native_id`).

use std::collections::HashSet;
use std::time::Duration;

use earshot_core::config::XSourceConfig;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::http::{error_chain, FetchError};
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "x";
const TWEET_FIELDS: &str = "tweet.fields=created_at,public_metrics,lang,conversation_id,referenced_tweets,attachments,author_id&expansions=author_id,attachments.media_keys&user.fields=username,name,public_metrics,verified";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct XCheckpoint {
    #[serde(default)]
    pub last_id: Option<String>,
}

pub struct XSource {
    config: XSourceConfig,
    state: XCheckpoint,
    /// Whether the rules were synced by this run (and whether the stream has run before:
    /// backfill is asked for on reconnections only).
    rules_synced: bool,
    connected_before: bool,
}

impl XSource {
    pub fn new(config: XSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state: XCheckpoint = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        // A checkpoint means the stream was read before this process: what was posted
        // since is asked for as a backfill on the first connection too.
        let connected_before = state.last_id.is_some();
        XSource {
            config,
            state,
            rules_synced: false,
            connected_before,
        }
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }

    fn token(&self) -> Result<String, SourceError> {
        std::env::var(&self.config.bearer_token_env).map_err(|_| {
            SourceError::Fetch(FetchError::Network {
                url: self.base().to_owned(),
                reason: format!(
                    "environment variable {} (bearer_token_env) is not set",
                    self.config.bearer_token_env
                ),
            })
        })
    }

    /// Makes the stream's rules exactly the configured ones.
    async fn sync_rules(&self, context: &SourceContext, token: &str) -> Result<(), SourceError> {
        let url = format!("{}/2/tweets/search/stream/rules", self.base());
        let current: RulesResponse = context
            .get_json(&url, |c| c.get(&url).bearer_auth(token))
            .await?;
        let wanted: HashSet<(&str, Option<&str>)> = self
            .config
            .rules
            .iter()
            .map(|r| (r.value.as_str(), r.tag.as_deref()))
            .collect();
        let existing: HashSet<(&str, Option<&str>)> = current
            .data
            .iter()
            .map(|r| (r.value.as_str(), r.tag.as_deref()))
            .collect();
        let stale: Vec<&str> = current
            .data
            .iter()
            .filter(|r| !wanted.contains(&(r.value.as_str(), r.tag.as_deref())))
            .map(|r| r.id.as_str())
            .collect();
        if !stale.is_empty() {
            let body = serde_json::json!({"delete": {"ids": stale}});
            let _: serde_json::Value = context
                .get_json(&url, |c| c.post(&url).bearer_auth(token).json(&body))
                .await?;
        }
        let missing: Vec<serde_json::Value> = self
            .config
            .rules
            .iter()
            .filter(|r| !existing.contains(&(r.value.as_str(), r.tag.as_deref())))
            .map(|r| match &r.tag {
                Some(tag) => serde_json::json!({"value": r.value, "tag": tag}),
                None => serde_json::json!({"value": r.value}),
            })
            .collect();
        if !missing.is_empty() {
            let body = serde_json::json!({"add": missing});
            let answer: serde_json::Value = context
                .get_json(&url, |c| c.post(&url).bearer_auth(token).json(&body))
                .await?;
            if let Some(errors) = answer
                .get("errors")
                .filter(|e| !e.as_array().is_some_and(Vec::is_empty))
            {
                // An invalid rule is a configuration problem X reports; the valid ones run.
                context.health.error("rules");
                tracing::error!(source = %context.key, %errors, "X refused some rules");
            }
        }
        tracing::info!(source = %context.key, added = missing.len(), deleted = stale.len(), "X stream rules synced");
        Ok(())
    }
}

#[async_trait::async_trait]
impl Source for XSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let token = self.token()?;
        if !self.rules_synced {
            self.sync_rules(context, &token).await?;
            self.rules_synced = true;
        }
        let mut url = format!("{}/2/tweets/search/stream?{TWEET_FIELDS}", self.base());
        if self.connected_before && self.config.backfill_minutes > 0 {
            url.push_str(&format!(
                "&backfill_minutes={}",
                self.config.backfill_minutes
            ));
        }
        let response = context
            .http
            .send(
                &url,
                true,
                |c| c.get(&url).bearer_auth(&token),
                &context.cancel,
            )
            .await?;
        if !response.status().is_success() {
            return Err(SourceError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        self.connected_before = true;
        context.health.succeeded();
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FetchError::Network {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                context.health.succeeded();
                if line.is_empty() {
                    continue; // keep-alive
                }
                if let Some(mention) = self.handle_line(context, line) {
                    let checkpoint = serde_json::to_value(&self.state).expect("serializes");
                    context.emit(vec![mention], Some(checkpoint)).await?;
                }
            }
        }
        tracing::info!(source = %context.key, "the X stream ended; reconnecting");
        Ok(Next::Now)
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.usual_interval_ms)
    }
}

impl XSource {
    fn handle_line(&mut self, context: &SourceContext, line: &str) -> Option<Mention> {
        let message: StreamMessage = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(error) => {
                context.malformed("stream line", line, &error.to_string());
                return None;
            }
        };
        if let Some(errors) = message.errors.filter(|e| !e.is_empty()) {
            // Operational messages (e.g. a rule that stopped matching); not posts.
            tracing::warn!(source = %context.key, errors = %serde_json::Value::Array(errors), "X stream error message");
            return None;
        }
        let tweet = message.data?;
        self.state.last_id = Some(tweet.id.clone());
        Some(to_mention(
            &tweet,
            &message.includes.users,
            context.source(),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct RulesResponse {
    #[serde(default)]
    data: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    id: String,
    value: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamMessage {
    #[serde(default)]
    data: Option<Tweet>,
    #[serde(default)]
    includes: Includes,
    #[serde(default)]
    errors: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Includes {
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tweet {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub author_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub referenced_tweets: Vec<Reference>,
    #[serde(default)]
    pub attachments: Option<Attachments>,
    #[serde(default)]
    pub public_metrics: Option<TweetMetrics>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Attachments {
    #[serde(default)]
    pub media_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TweetMetrics {
    #[serde(default)]
    pub retweet_count: i64,
    #[serde(default)]
    pub reply_count: i64,
    #[serde(default)]
    pub like_count: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub public_metrics: Option<UserMetrics>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserMetrics {
    #[serde(default)]
    pub followers_count: i64,
}

/// Maps a post with its author from the expansions.
pub fn to_mention(tweet: &Tweet, users: &[User], source: earshot_core::model::Source) -> Mention {
    let author = tweet
        .author_id
        .as_ref()
        .and_then(|id| users.iter().find(|u| &u.id == id));
    let handle = author
        .map(|u| format!("@{}", u.username))
        .or_else(|| tweet.author_id.as_ref().map(|id| format!("id:{id}")))
        .unwrap_or_else(|| "[unknown]".into());
    let url = match author {
        Some(user) => format!("https://x.com/{}/status/{}", user.username, tweet.id),
        None => format!("https://x.com/i/web/status/{}", tweet.id),
    };
    let metrics = tweet.public_metrics.clone().unwrap_or(TweetMetrics {
        retweet_count: 0,
        reply_count: 0,
        like_count: 0,
    });
    Mention {
        id: mention_id(KIND, &tweet.id),
        native_id: tweet.id.clone(),
        url: Some(url),
        author: Author {
            handle,
            name: author.and_then(|u| u.name.clone()),
            followers: author.and_then(|u| u.public_metrics.as_ref().map(|m| m.followers_count)),
            verified: author.is_some_and(|u| u.verified),
            id: tweet.author_id.clone(),
        },
        text: tweet.text.clone(),
        lang_hint: tweet.lang.clone().filter(|l| l != "und"),
        created_at: tweet
            .created_at
            .map(|t| t.timestamp_micros())
            .unwrap_or_else(now_micros),
        collected_at: now_micros(),
        engagement: Engagement {
            likes: metrics.like_count,
            reposts: metrics.retweet_count,
            replies: metrics.reply_count,
        },
        parent_id: tweet
            .referenced_tweets
            .iter()
            .find(|r| r.kind == "replied_to")
            .map(|r| r.id.clone()),
        conversation_id: tweet.conversation_id.clone(),
        has_media: tweet
            .attachments
            .as_ref()
            .is_some_and(|a| !a.media_keys.is_empty()),
        deleted_at: None,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_post_maps_with_its_expanded_author() {
        let message: StreamMessage = serde_json::from_value(serde_json::json!({
            "data": {"id": "1861234567890123456", "text": "@AcmeHelp my kettle died after two days",
                "author_id": "2244994945", "created_at": "2026-11-23T09:00:15.000Z", "lang": "en",
                "conversation_id": "1861234500000000000",
                "referenced_tweets": [{"type": "replied_to", "id": "1861234500000000000"}],
                "attachments": {"media_keys": ["3_1861"]},
                "public_metrics": {"retweet_count": 2, "reply_count": 1, "like_count": 14, "quote_count": 0}},
            "includes": {"users": [{"id": "2244994945", "username": "maria", "name": "María",
                "verified": true, "public_metrics": {"followers_count": 52000, "following_count": 10}}]},
            "matching_rules": [{"id": "1", "tag": "acme"}]
        }))
        .unwrap();
        let source = earshot_core::model::Source {
            kind: KIND.into(),
            instance: "brand".into(),
        };
        let mention = to_mention(
            message.data.as_ref().unwrap(),
            &message.includes.users,
            source,
        );
        assert_eq!(mention.id, mention_id("x", "1861234567890123456"));
        assert_eq!(mention.author.handle, "@maria");
        assert_eq!(mention.author.followers, Some(52_000));
        assert!(mention.author.verified);
        assert_eq!(mention.author.id.as_deref(), Some("2244994945"));
        assert_eq!(
            mention.url.as_deref(),
            Some("https://x.com/maria/status/1861234567890123456")
        );
        assert_eq!(mention.parent_id.as_deref(), Some("1861234500000000000"));
        assert_eq!(
            mention.engagement,
            Engagement {
                likes: 14,
                reposts: 2,
                replies: 1
            }
        );
        assert!(mention.has_media);
    }
}
