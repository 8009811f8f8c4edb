//! Hacker News through its Firebase API: `/v0/maxitem.json`, then `/v0/item/{id}.json` for
//! every id since the last one read, stories and comments alike (jobs and polls too, when
//! they have text). The checkpoint is the last item id read; a first start begins at the
//! current maximum.
//!
//! Items are fetched `concurrency` at a time but yielded in id order. An id whose item is
//! still `null` (the API publishes the id a moment before the item) ends the batch there, so
//! it is read again by the next poll instead of being skipped.

use std::time::Duration;

use earshot_core::config::HackerNewsSourceConfig;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::rss::html_to_text;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "hackernews";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HackerNewsCheckpoint {
    #[serde(default)]
    pub last_item: Option<u64>,
}

pub struct HackerNewsSource {
    config: HackerNewsSourceConfig,
    state: HackerNewsCheckpoint,
}

impl HackerNewsSource {
    pub fn new(config: HackerNewsSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        HackerNewsSource { config, state }
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }
}

#[async_trait::async_trait]
impl Source for HackerNewsSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let interval = Duration::from_millis(self.config.interval_ms);
        let url = format!("{}/maxitem.json", self.base());
        let max: u64 = context.get_json(&url, |c| c.get(&url)).await?;
        let Some(last) = self.state.last_item else {
            self.state.last_item = Some(max);
            let checkpoint = serde_json::to_value(&self.state).expect("serializes");
            context.emit(Vec::new(), Some(checkpoint)).await?;
            return Ok(Next::After(interval));
        };
        if max <= last {
            return Ok(Next::After(interval));
        }
        let until = max.min(last + self.config.max_items_per_poll);
        let base = self.base().to_owned();
        let mut fetched = futures::stream::iter(last + 1..=until)
            .map(|id| {
                let url = format!("{base}/item/{id}.json");
                async move {
                    let item: Option<serde_json::Value> =
                        context.get_json(&url, |c| c.get(&url)).await?;
                    Ok::<_, SourceError>((id, item))
                }
            })
            .buffered(self.config.concurrency);
        let mut mentions = Vec::new();
        let mut reached = last;
        while let Some(result) = fetched.next().await {
            let (id, item) = result?;
            let Some(item) = item else {
                break; // not published yet: read it again next poll
            };
            reached = id;
            match serde_json::from_value::<Item>(item.clone()) {
                Ok(item) => {
                    if let Some(mention) = to_mention(&item, context.source()) {
                        mentions.push(mention);
                    }
                }
                Err(error) => context.malformed("item", &item.to_string(), &error.to_string()),
            }
        }
        drop(fetched);
        if reached == last {
            return Ok(Next::After(interval));
        }
        self.state.last_item = Some(reached);
        let checkpoint = serde_json::to_value(&self.state).expect("serializes");
        context.emit(mentions, Some(checkpoint)).await?;
        Ok(if reached < max && reached == until {
            Next::Now
        } else {
            Next::After(interval)
        })
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.interval_ms)
    }
}

/// The fields of a Hacker News item that Earshot uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    pub id: u64,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub by: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub time: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub parent: Option<u64>,
    #[serde(default)]
    pub kids: Vec<u64>,
    #[serde(default)]
    pub score: Option<i64>,
    #[serde(default)]
    pub descendants: Option<i64>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub dead: bool,
}

/// A story, comment, job or poll with text; `None` for deleted or dead items, poll options
/// and items without text.
pub fn to_mention(item: &Item, source: earshot_core::model::Source) -> Option<Mention> {
    if item.deleted || item.dead || item.kind == "pollopt" {
        return None;
    }
    let title = item.title.as_deref().map(html_to_text).unwrap_or_default();
    let body = item.text.as_deref().map(html_to_text).unwrap_or_default();
    let mut text = match (title.is_empty(), body.is_empty()) {
        (true, true) => return None,
        (false, true) => title,
        (true, false) => body,
        (false, false) => format!("{title}\n\n{body}"),
    };
    if let Some(link) = &item.url {
        text = format!("{text}\n\n{link}");
    }
    let native_id = item.id.to_string();
    Some(Mention {
        id: mention_id(KIND, &native_id),
        url: Some(format!("https://news.ycombinator.com/item?id={}", item.id)),
        native_id,
        author: Author {
            handle: item.by.clone().unwrap_or_else(|| "[unknown]".into()),
            name: None,
            followers: None,
            verified: false,
            id: None,
        },
        text,
        lang_hint: None,
        created_at: item.time.map(|t| t * 1_000_000).unwrap_or_else(now_micros),
        collected_at: now_micros(),
        engagement: Engagement {
            likes: item.score.unwrap_or(0),
            reposts: 0,
            replies: item.descendants.unwrap_or(item.kids.len() as i64),
        },
        parent_id: item.parent.map(|p| p.to_string()),
        conversation_id: None,
        has_media: false,
        deleted_at: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stories_and_comments_map_and_the_rest_is_skipped() {
        let source = || earshot_core::model::Source {
            kind: KIND.into(),
            instance: "hn".into(),
        };
        let check = |json: serde_json::Value, expected: Option<&str>| {
            let item: Item = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(
                to_mention(&item, source()).map(|m| m.text).as_deref(),
                expected,
                "{json}"
            );
        };
        check(
            serde_json::json!({"by": "dhouston", "descendants": 71, "id": 8863, "kids": [9224, 8917],
                "score": 104, "time": 1175714200, "title": "My YC app: Dropbox - Throw away your USB drive",
                "type": "story", "url": "http://www.getdropbox.com/u/2/screencast.html"}),
            Some("My YC app: Dropbox - Throw away your USB drive\n\nhttp://www.getdropbox.com/u/2/screencast.html"),
        );
        check(
            serde_json::json!({"by": "norvig", "id": 2921983, "kids": [2922097], "parent": 2921506,
                "text": "Aw shucks, guys ... you make me blush with your compliments.<p>Tell you what, Ill make a deal: I&#x27;ll keep writing", "time": 1314211127, "type": "comment"}),
            Some("Aw shucks, guys ... you make me blush with your compliments.\n\nTell you what, Ill make a deal: I'll keep writing"),
        );
        check(
            serde_json::json!({"id": 5, "deleted": true, "type": "comment", "time": 1}),
            None,
        );
        check(
            serde_json::json!({"id": 6, "dead": true, "type": "comment", "text": "spam"}),
            None,
        );
        check(
            serde_json::json!({"id": 7, "type": "pollopt", "text": "yes", "score": 3}),
            None,
        );
        let comment: Item = serde_json::from_value(serde_json::json!({"by": "a", "id": 9, "parent": 8, "text": "x", "time": 1314211127, "type": "comment"})).unwrap();
        let mention = to_mention(&comment, source()).unwrap();
        assert_eq!(mention.parent_id.as_deref(), Some("8"));
        assert_eq!(mention.created_at, 1_314_211_127_000_000);
        assert_eq!(
            mention.url.as_deref(),
            Some("https://news.ycombinator.com/item?id=9")
        );
    }
}
