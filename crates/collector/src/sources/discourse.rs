//! Discourse forums: `/posts.json` lists the latest posts of every public topic, newest
//! first; `?before=<post id>` pages back. Each poll reads the first page and pages back
//! until it reaches the last post id of the checkpoint (up to `max_pages`), then yields the
//! new posts oldest first. A first start begins at the newest post. `Api-Key` and
//! `Api-Username` headers are sent when configured, for private forums.

use std::time::Duration;

use earshot_core::config::DiscourseSourceConfig;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use serde::{Deserialize, Serialize};

use super::http::jittered;
use super::rss::html_to_text;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "discourse";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscourseCheckpoint {
    #[serde(default)]
    pub last_post_id: Option<u64>,
}

pub struct DiscourseSource {
    config: DiscourseSourceConfig,
    state: DiscourseCheckpoint,
    credentials: Option<(String, String)>,
}

impl DiscourseSource {
    pub fn new(config: DiscourseSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        let read = |name: &Option<String>| name.as_ref().and_then(|n| std::env::var(n).ok());
        let credentials = read(&config.api_key_env).zip(read(&config.api_username_env));
        DiscourseSource {
            config,
            state,
            credentials,
        }
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }
}

#[async_trait::async_trait]
impl Source for DiscourseSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let interval = jittered(
            Duration::from_millis(self.config.interval_ms),
            Duration::from_millis(self.config.jitter_ms),
        );
        let last = self.state.last_post_id;
        let mut fresh: Vec<Post> = Vec::new();
        let mut before: Option<u64> = None;
        for _ in 0..self.config.max_pages {
            let url = match before {
                Some(id) => format!("{}/posts.json?before={id}", self.base()),
                None => format!("{}/posts.json", self.base()),
            };
            let page: PostsPage = context
                .get_json(&url, |c| {
                    let request = c.get(&url);
                    match &self.credentials {
                        Some((key, user)) => {
                            request.header("Api-Key", key).header("Api-Username", user)
                        }
                        None => request,
                    }
                })
                .await?;
            let mut oldest = None;
            let mut reached_known = page.latest_posts.is_empty();
            for value in page.latest_posts {
                match serde_json::from_value::<Post>(value.clone()) {
                    Ok(post) => {
                        oldest = Some(oldest.map_or(post.id, |o: u64| o.min(post.id)));
                        if last.is_some_and(|l| post.id <= l) {
                            reached_known = true;
                        } else {
                            fresh.push(post);
                        }
                    }
                    Err(error) => context.malformed("post", &value.to_string(), &error.to_string()),
                }
            }
            if reached_known || last.is_none() {
                break;
            }
            match oldest {
                Some(id) if before.is_none_or(|b| id < b) => before = Some(id),
                _ => break,
            }
        }
        if last.is_none() {
            // A first start begins at the present: remember the newest post only.
            self.state.last_post_id = fresh.iter().map(|p| p.id).max().or(Some(0));
            let checkpoint = serde_json::to_value(&self.state).expect("serializes");
            context.emit(Vec::new(), Some(checkpoint)).await?;
            return Ok(Next::After(interval));
        }
        if fresh.is_empty() {
            return Ok(Next::After(interval));
        }
        fresh.sort_by_key(|p| p.id);
        fresh.dedup_by_key(|p| p.id);
        let mut mentions = Vec::with_capacity(fresh.len());
        for post in &fresh {
            match to_mention(post, self.base(), context.source()) {
                Ok(mention) => mentions.push(mention),
                Err(error) => context.malformed("post", &post.id.to_string(), &error),
            }
        }
        self.state.last_post_id = fresh.last().map(|p| p.id);
        let checkpoint = serde_json::to_value(&self.state).expect("serializes");
        context.emit(mentions, Some(checkpoint)).await?;
        Ok(Next::After(interval))
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.interval_ms)
    }
}

#[derive(Debug, Deserialize)]
struct PostsPage {
    #[serde(default)]
    latest_posts: Vec<serde_json::Value>,
}

/// The fields of a Discourse post that Earshot uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Post {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The rendered HTML.
    #[serde(default)]
    pub cooked: String,
    pub topic_id: u64,
    #[serde(default)]
    pub topic_slug: Option<String>,
    #[serde(default)]
    pub topic_title: Option<String>,
    pub post_number: u64,
    #[serde(default)]
    pub reply_to_post_number: Option<u64>,
    #[serde(default)]
    pub reply_count: i64,
    #[serde(default)]
    pub like_count: Option<i64>,
}

/// Maps a post; the first post of a topic carries the topic's title.
pub fn to_mention(
    post: &Post,
    base: &str,
    source: earshot_core::model::Source,
) -> Result<Mention, String> {
    let body = html_to_text(&post.cooked);
    if body.is_empty() {
        return Err("the post has no text".into());
    }
    let text = match (&post.topic_title, post.post_number) {
        (Some(title), 1) => format!("{title}\n\n{body}"),
        _ => body,
    };
    // The same post seen on another forum is another post: the id names the forum.
    let native_id = format!("{base}/p/{}", post.id);
    let slug = post.topic_slug.as_deref().unwrap_or("-");
    Ok(Mention {
        id: mention_id(KIND, &native_id),
        native_id,
        url: Some(format!(
            "{base}/t/{slug}/{}/{}",
            post.topic_id, post.post_number
        )),
        author: Author {
            handle: format!("@{}", post.username),
            name: post.name.clone().filter(|n| !n.is_empty()),
            followers: None,
            verified: false,
            id: None,
        },
        text,
        lang_hint: None,
        created_at: post.created_at.timestamp_micros(),
        collected_at: now_micros(),
        engagement: Engagement {
            likes: post.like_count.unwrap_or(0),
            reposts: 0,
            replies: post.reply_count,
        },
        parent_id: post
            .reply_to_post_number
            .map(|n| format!("{base}/t/{}/{n}", post.topic_id)),
        conversation_id: Some(format!("{base}/t/{}", post.topic_id)),
        has_media: post.cooked.contains("<img") && !post.cooked.contains("class=\"emoji"),
        deleted_at: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_first_post_carries_its_title() {
        let post: Post = serde_json::from_value(serde_json::json!({
            "id": 1204, "name": "Kim Lee", "username": "kim", "created_at": "2026-11-23T09:00:00.000Z",
            "cooked": "<p>Our <strong>Lumora Halo</strong> lamps flicker after the update.</p>",
            "post_number": 1, "post_type": 1, "reply_count": 2, "reply_to_post_number": null,
            "topic_id": 311, "topic_slug": "halo-flicker", "topic_title": "Halo lamps flicker",
            "like_count": 5
        }))
        .unwrap();
        let source = earshot_core::model::Source {
            kind: KIND.into(),
            instance: "forum".into(),
        };
        let mention = to_mention(&post, "https://forum.example", source).unwrap();
        assert_eq!(
            mention.text,
            "Halo lamps flicker\n\nOur Lumora Halo lamps flicker after the update."
        );
        assert_eq!(mention.native_id, "https://forum.example/p/1204");
        assert_eq!(
            mention.url.as_deref(),
            Some("https://forum.example/t/halo-flicker/311/1")
        );
        assert_eq!(mention.author.handle, "@kim");
        assert_eq!(
            mention.conversation_id.as_deref(),
            Some("https://forum.example/t/311")
        );
        assert_eq!(mention.engagement.likes, 5);
    }
}
