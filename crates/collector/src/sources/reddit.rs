//! Reddit listings: `/r/{sub}/new.json`, `/r/{sub}/comments.json`, and
//! `search.json?q=…&sort=new`, 100 items a page, newest first. Each poll reads the first page
//! and pages back with `after` until it reaches an item it has seen (or one older than the
//! newest it has seen), up to `max_pages`. Reddit's `before` cursor is not used: it returns
//! nothing at all once the item it names is deleted.
//!
//! The checkpoint keeps the newest `created_utc` and the fullnames (`t3_…`, `t1_…`) seen
//! recently. With OAuth client credentials, an application-only token is fetched from the
//! token endpoint and renewed before it expires; the User-Agent always names Earshot, as
//! Reddit's API rules ask.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use earshot_core::config::{RedditListing, RedditSourceConfig};
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use serde::{Deserialize, Serialize};

use super::http::jittered;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "reddit";
const SEEN_IDS: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedditCheckpoint {
    /// `created_utc` (Unix seconds) of the newest item yielded.
    #[serde(default)]
    pub newest_created: Option<f64>,
    /// Fullnames yielded recently, oldest first.
    #[serde(default)]
    pub seen: VecDeque<String>,
}

pub struct RedditSource {
    config: RedditSourceConfig,
    state: RedditCheckpoint,
    token: Option<(String, Instant)>,
}

impl RedditSource {
    pub fn new(config: RedditSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        RedditSource {
            config,
            state,
            token: None,
        }
    }

    /// The listing URL for one page.
    pub fn page_url(&self, after: Option<&str>) -> String {
        let base = self.config.url.trim_end_matches('/');
        let sub = self.config.subreddit.as_deref().unwrap_or_default();
        let mut url = match self.config.listing {
            RedditListing::New => format!("{base}/r/{sub}/new.json"),
            RedditListing::Comments => format!("{base}/r/{sub}/comments.json"),
            RedditListing::Search if sub.is_empty() => format!("{base}/search.json"),
            RedditListing::Search => format!("{base}/r/{sub}/search.json"),
        };
        let mut url_params = vec![("limit", "100".to_owned()), ("raw_json", "1".to_owned())];
        if self.config.listing == RedditListing::Search {
            url_params.push(("q", self.config.query.clone().unwrap_or_default()));
            url_params.push(("sort", "new".into()));
            if !sub.is_empty() {
                url_params.push(("restrict_sr", "1".into()));
            }
        }
        if let Some(after) = after {
            url_params.push(("after", after.to_owned()));
        }
        if let Ok(parsed) = reqwest::Url::parse_with_params(&url, &url_params) {
            url = parsed.to_string();
        }
        url
    }

    /// An application-only OAuth token, fetched or renewed when needed.
    async fn token(&mut self, context: &SourceContext) -> Result<Option<String>, SourceError> {
        let Some(oauth) = &self.config.oauth else {
            return Ok(None);
        };
        if let Some((token, expires)) = &self.token {
            if Instant::now() + Duration::from_secs(60) < *expires {
                return Ok(Some(token.clone()));
            }
        }
        let variable = |name: &str| {
            std::env::var(name).map_err(|_| SourceError::Status {
                url: format!("environment variable {name} (reddit oauth) is not set"),
                status: 0,
            })
        };
        let (id, secret) = (
            variable(&oauth.client_id_env)?,
            variable(&oauth.client_secret_env)?,
        );
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let url = oauth.token_url.clone();
        let token: Token = context
            .get_json(&url, |c| {
                c.post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;
        self.token = Some((
            token.access_token.clone(),
            Instant::now() + Duration::from_secs(token.expires_in),
        ));
        Ok(Some(token.access_token))
    }
}

#[async_trait::async_trait]
impl Source for RedditSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let interval = jittered(
            Duration::from_millis(self.config.interval_ms),
            Duration::from_millis(self.config.jitter_ms),
        );
        let token = self.token(context).await?;
        let seen: HashSet<String> = self.state.seen.iter().cloned().collect();
        let newest = self.state.newest_created;
        let mut fresh: Vec<Thing> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..self.config.max_pages {
            let url = self.page_url(after.as_deref());
            let listing: Listing = context
                .get_json(&url, |c| match &token {
                    Some(token) => c.get(&url).bearer_auth(token),
                    None => c.get(&url),
                })
                .await?;
            let mut reached_known = false;
            for child in listing.data.children {
                match serde_json::from_value::<Thing>(child.clone()) {
                    Ok(thing) => {
                        let known = seen.contains(&thing.data.name)
                            || newest.is_some_and(|n| thing.data.created_utc < n);
                        if known {
                            reached_known = true;
                        } else {
                            fresh.push(thing);
                        }
                    }
                    Err(error) => {
                        context.malformed("listing item", &child.to_string(), &error.to_string())
                    }
                }
            }
            // A first start reads one page only: it begins at the present.
            if reached_known || newest.is_none() || listing.data.after.is_none() {
                break;
            }
            after = listing.data.after;
        }
        // Oldest first.
        fresh.sort_by(|a, b| a.data.created_utc.total_cmp(&b.data.created_utc));
        fresh.dedup_by(|a, b| a.data.name == b.data.name);
        let mut mentions = Vec::with_capacity(fresh.len());
        for thing in &fresh {
            match to_mention(thing, context.source()) {
                Ok(mention) => mentions.push(mention),
                Err(error) => context.malformed("listing item", &thing.data.name, &error),
            }
            self.state.seen.push_back(thing.data.name.clone());
            let created = thing.data.created_utc;
            if self.state.newest_created.is_none_or(|n| created > n) {
                self.state.newest_created = Some(created);
            }
        }
        while self.state.seen.len() > SEEN_IDS {
            self.state.seen.pop_front();
        }
        if !fresh.is_empty() || newest.is_none() {
            if self.state.newest_created.is_none() {
                self.state.newest_created = Some(chrono::Utc::now().timestamp() as f64);
            }
            let checkpoint = serde_json::to_value(&self.state).expect("serializes");
            context.emit(mentions, Some(checkpoint)).await?;
        }
        Ok(Next::After(interval))
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.interval_ms)
    }
}

#[derive(Debug, Deserialize)]
struct Listing {
    data: ListingData,
}

#[derive(Debug, Deserialize)]
struct ListingData {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    children: Vec<serde_json::Value>,
}

/// A listing child: `t3` (a post) or `t1` (a comment).
#[derive(Debug, Clone, Deserialize)]
pub struct Thing {
    pub kind: String,
    pub data: ThingData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThingData {
    /// The fullname, `t3_…` or `t1_…`.
    pub name: String,
    pub created_utc: f64,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub selftext: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub permalink: Option<String>,
    #[serde(default)]
    pub score: Option<i64>,
    #[serde(default)]
    pub num_comments: Option<i64>,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub link_id: Option<String>,
    #[serde(default)]
    pub is_video: bool,
    #[serde(default)]
    pub post_hint: Option<String>,
    #[serde(default)]
    pub subreddit: Option<String>,
}

/// Maps a post or a comment; a removed one (author `[deleted]`, empty text) is malformed.
pub fn to_mention(thing: &Thing, source: earshot_core::model::Source) -> Result<Mention, String> {
    let data = &thing.data;
    let text = match thing.kind.as_str() {
        "t3" => {
            let title = data.title.as_deref().unwrap_or_default().trim();
            let body = data.selftext.as_deref().unwrap_or_default().trim();
            if body.is_empty() {
                title.to_owned()
            } else {
                format!("{title}\n\n{body}")
            }
        }
        "t1" => data.body.as_deref().unwrap_or_default().trim().to_owned(),
        other => return Err(format!("unexpected kind {other:?}")),
    };
    if text.is_empty() || text == "[removed]" || text == "[deleted]" {
        return Err("no text (removed or deleted)".into());
    }
    let author = data
        .author
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or("no author")?;
    Ok(Mention {
        id: mention_id(KIND, &data.name),
        native_id: data.name.clone(),
        url: data
            .permalink
            .as_ref()
            .map(|p| format!("https://www.reddit.com{p}")),
        author: Author {
            handle: format!("u/{author}"),
            name: None,
            followers: None,
            verified: false,
            id: None,
        },
        text,
        lang_hint: None,
        created_at: (data.created_utc * 1e6) as i64,
        collected_at: now_micros(),
        engagement: Engagement {
            likes: data.score.unwrap_or(0),
            reposts: 0,
            replies: data.num_comments.unwrap_or(0),
        },
        parent_id: data.parent_id.clone(),
        conversation_id: data.link_id.clone(),
        has_media: data.is_video
            || matches!(
                data.post_hint.as_deref(),
                Some("image" | "hosted:video" | "rich:video")
            ),
        deleted_at: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        listing: RedditListing,
        subreddit: Option<&str>,
        query: Option<&str>,
    ) -> RedditSourceConfig {
        RedditSourceConfig {
            name: "r".into(),
            listing,
            subreddit: subreddit.map(Into::into),
            query: query.map(Into::into),
            url: "https://www.reddit.com".into(),
            oauth: None,
            interval_ms: 1,
            jitter_ms: 0,
            max_pages: 1,
        }
    }

    #[test]
    fn listing_urls() {
        let check = |config: RedditSourceConfig, after: Option<&str>, expected: &str| {
            assert_eq!(RedditSource::new(config, None).page_url(after), expected);
        };
        check(
            config(RedditListing::New, Some("coffee"), None),
            None,
            "https://www.reddit.com/r/coffee/new.json?limit=100&raw_json=1",
        );
        check(
            config(RedditListing::Comments, Some("coffee"), None),
            Some("t1_abc"),
            "https://www.reddit.com/r/coffee/comments.json?limit=100&raw_json=1&after=t1_abc",
        );
        check(
            config(RedditListing::Search, None, Some("acme kettle")),
            None,
            "https://www.reddit.com/search.json?limit=100&raw_json=1&q=acme+kettle&sort=new",
        );
        check(
            config(RedditListing::Search, Some("coffee"), Some("acme")),
            None,
            "https://www.reddit.com/r/coffee/search.json?limit=100&raw_json=1&q=acme&sort=new&restrict_sr=1",
        );
    }

    #[test]
    fn posts_and_comments_map_and_removed_ones_are_malformed() {
        let source = || earshot_core::model::Source {
            kind: KIND.into(),
            instance: "r".into(),
        };
        let thing = |json: serde_json::Value| -> Thing { serde_json::from_value(json).unwrap() };
        let post = thing(
            serde_json::json!({"kind": "t3", "data": {"name": "t3_1h2x", "created_utc": 1763888400.0,
            "author": "brewfan", "title": "Brewtide subscription worth it?", "selftext": "Thinking of trying it.",
            "permalink": "/r/coffee/comments/1h2x/brewtide/", "score": 12, "num_comments": 4, "post_hint": "image"}}),
        );
        let mention = to_mention(&post, source()).unwrap();
        assert_eq!(
            mention.text,
            "Brewtide subscription worth it?\n\nThinking of trying it."
        );
        assert_eq!(mention.author.handle, "u/brewfan");
        assert_eq!(
            mention.url.as_deref(),
            Some("https://www.reddit.com/r/coffee/comments/1h2x/brewtide/")
        );
        assert_eq!(mention.created_at, 1_763_888_400_000_000);
        assert!(mention.has_media);
        let comment = thing(
            serde_json::json!({"kind": "t1", "data": {"name": "t1_k9", "created_utc": 1763888460.0,
            "author": "kim", "body": "It is great", "parent_id": "t3_1h2x", "link_id": "t3_1h2x", "score": 3}}),
        );
        let mention = to_mention(&comment, source()).unwrap();
        assert_eq!(
            (
                mention.parent_id.as_deref(),
                mention.conversation_id.as_deref()
            ),
            (Some("t3_1h2x"), Some("t3_1h2x"))
        );
        let removed = thing(
            serde_json::json!({"kind": "t1", "data": {"name": "t1_x", "created_utc": 1.0, "author": "[deleted]", "body": "[removed]"}}),
        );
        assert!(to_mention(&removed, source()).is_err());
    }
}
