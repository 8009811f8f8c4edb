//! RSS and Atom feeds (blogs, news, Google Alerts feeds), parsed by feed-rs.
//!
//! Each poll is a conditional GET (`If-None-Match` with the stored ETag, `If-Modified-Since`
//! with the stored Last-Modified); 304 yields nothing. Items are deduplicated by their id:
//! the RSS `guid`, the Atom `id`, else the item's link. The checkpoint keeps the validators
//! and the ids seen recently, so a restart neither re-reads an unchanged feed nor repeats an
//! item. HTML in titles, summaries and content becomes plain text (html2text).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use earshot_core::config::RssSourceConfig;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention};
use reqwest::header;
use serde::{Deserialize, Serialize};

use super::http::jittered;
use super::{Next, Source, SourceContext, SourceError};

pub const KIND: &str = "rss";

/// What a feed's checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RssCheckpoint {
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// Ids of the items already yielded, oldest first, at most `max_seen_ids`.
    #[serde(default)]
    pub seen: VecDeque<String>,
}

pub struct RssSource {
    config: RssSourceConfig,
    state: RssCheckpoint,
}

impl RssSource {
    pub fn new(config: RssSourceConfig, checkpoint: Option<serde_json::Value>) -> Self {
        let state = checkpoint
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        RssSource { config, state }
    }
}

#[async_trait::async_trait]
impl Source for RssSource {
    async fn step(&mut self, context: &SourceContext) -> Result<Next, SourceError> {
        let interval = jittered(
            Duration::from_millis(self.config.interval_ms),
            Duration::from_millis(self.config.jitter_ms),
        );
        let url = &self.config.url;
        let (etag, last_modified) = (&self.state.etag, &self.state.last_modified);
        let response = context
            .http
            .send(
                url,
                false,
                |client| {
                    let mut request = client
                        .get(url)
                        .header(header::ACCEPT, "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1");
                    if let Some(etag) = etag {
                        request = request.header(header::IF_NONE_MATCH, etag);
                    }
                    if let Some(last_modified) = last_modified {
                        request = request.header(header::IF_MODIFIED_SINCE, last_modified);
                    }
                    request
                },
                &context.cancel,
            )
            .await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Next::After(interval));
        }
        if !status.is_success() {
            return Err(SourceError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        let header_value = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (new_etag, new_last_modified) = (
            header_value(header::ETAG),
            header_value(header::LAST_MODIFIED),
        );
        let body = response.bytes().await.map_err(|e| {
            SourceError::Fetch(super::http::FetchError::Network {
                url: url.clone(),
                reason: super::http::error_chain(&e),
            })
        })?;
        let feed = match parse_feed(&body) {
            Ok(feed) => feed,
            Err(reason) => {
                // Counted by the supervisor as a failed step; logged here with a sample.
                let sample: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                tracing::warn!(source = %context.key, %reason, sample, "malformed feed");
                return Err(SourceError::Malformed {
                    what: format!("feed {url}"),
                    reason,
                });
            }
        };
        let collected_at = now_micros();
        let seen: HashSet<&str> = self.state.seen.iter().map(String::as_str).collect();
        let mut mentions = Vec::new();
        let mut new_ids = Vec::new();
        // Feeds list the newest item first; yield the oldest first.
        for entry in feed.entries.iter().rev() {
            if seen.contains(entry.id.as_str()) || new_ids.contains(&entry.id) {
                continue;
            }
            match entry_to_mention(&feed, entry, context, collected_at) {
                Ok(mention) => mentions.push(mention),
                Err(reason) => {
                    context.malformed("item", &format!("{entry:?}"), &reason);
                }
            }
            // A malformed item is remembered too: it is skipped once, not on every poll.
            new_ids.push(entry.id.clone());
        }
        drop(seen);
        self.state.seen.extend(new_ids);
        while self.state.seen.len() > self.config.max_seen_ids {
            self.state.seen.pop_front();
        }
        self.state.etag = new_etag;
        self.state.last_modified = new_last_modified;
        let checkpoint = serde_json::to_value(&self.state).expect("a checkpoint serializes");
        context.emit(mentions, Some(checkpoint)).await?;
        Ok(Next::After(interval))
    }

    fn usual_interval(&self) -> Duration {
        Duration::from_millis(self.config.interval_ms)
    }
}

/// Parses RSS 0.9x/1.0/2.0, Atom or JSON Feed. An item without a `guid` or `id` is
/// identified by its link (feed-rs would otherwise hash its title and links, which changes
/// when a title is edited).
pub fn parse_feed(body: &[u8]) -> Result<feed_rs::model::Feed, String> {
    feed_rs::parser::Builder::new()
        .id_generator(|links, title, _base| match links.first() {
            Some(link) => link.href.trim().to_owned(),
            None => format!(
                "title:{}",
                title.as_ref().map(|t| t.content.trim()).unwrap_or_default()
            ),
        })
        .build()
        .parse(body)
        .map_err(|e| e.to_string())
}

/// Maps one feed item to a mention; an item with neither title nor content is malformed.
pub fn entry_to_mention(
    feed: &feed_rs::model::Feed,
    entry: &feed_rs::model::Entry,
    context: &SourceContext,
    collected_at: i64,
) -> Result<Mention, String> {
    let source = context.source();
    map_entry(feed, entry, source, collected_at)
}

/// Maps one feed item to a mention of `source`: what [`entry_to_mention`] does with the
/// context's source, without a context (the fuzz targets under `fuzz/`).
pub fn map_entry(
    feed: &feed_rs::model::Feed,
    entry: &feed_rs::model::Entry,
    source: earshot_core::model::Source,
    collected_at: i64,
) -> Result<Mention, String> {
    if entry.id.trim().is_empty() || entry.id.starts_with("title:") && entry.title.is_none() {
        return Err("the item has no guid, id or link".into());
    }
    let title = entry
        .title
        .as_ref()
        .map(|t| html_to_text(&t.content))
        .unwrap_or_default();
    let body = entry
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .or(entry.summary.as_ref().map(|s| s.content.as_str()))
        .map(html_to_text)
        .unwrap_or_default();
    let text = match (title.is_empty(), body.is_empty()) {
        (true, true) => return Err("the item has neither a title nor content".into()),
        (false, true) => title,
        (true, false) => body,
        (false, false) if body.starts_with(&title) => body,
        (false, false) => format!("{title}\n\n{body}"),
    };
    let feed_title = feed.title.as_ref().map(|t| html_to_text(&t.content));
    let author = entry.authors.first().or(feed.authors.first());
    let handle = author
        .map(|a| a.name.trim().to_owned())
        // feed-rs names an Atom author without a name "unknown".
        .filter(|n| !n.is_empty() && n != "unknown")
        .or_else(|| feed_title.clone())
        .or_else(|| host_of(&feed.links))
        .unwrap_or_else(|| source.instance.clone());
    let url = entry
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(entry.links.first())
        .map(|l| l.href.clone());
    let created_at = entry
        .published
        .or(entry.updated)
        .map(|t| t.timestamp_micros())
        .unwrap_or(collected_at);
    let has_media = !entry.media.is_empty()
        || entry
            .links
            .iter()
            .any(|l| l.rel.as_deref() == Some("enclosure"));
    Ok(Mention {
        id: mention_id(&source.kind, &entry.id),
        native_id: entry.id.clone(),
        url,
        author: Author {
            handle,
            name: feed_title,
            followers: None,
            verified: false,
            id: None,
        },
        text,
        lang_hint: entry.language.clone().or(feed.language.clone()),
        created_at,
        collected_at,
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media,
        deleted_at: None,
        source,
    })
}

fn host_of(links: &[feed_rs::model::Link]) -> Option<String> {
    links
        .first()
        .and_then(|l| reqwest::Url::parse(&l.href).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// Plain text of an HTML fragment: no markup, no link footnotes, entities decoded, runs of
/// whitespace collapsed (feeds wrap lines arbitrarily).
pub fn html_to_text(html: &str) -> String {
    let text = if html.contains('<') || html.contains('&') {
        html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
            .string_from_read(html.as_bytes(), 100_000)
            .unwrap_or_else(|_| html.to_owned())
    } else {
        html.to_owned()
    };
    let mut paragraphs = Vec::new();
    for paragraph in text.split("\n\n") {
        let joined = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        if !joined.is_empty() {
            paragraphs.push(joined);
        }
    }
    paragraphs.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_clean_text() {
        let check = |html: &str, expected: &str| assert_eq!(html_to_text(html), expected, "{html}");
        check("plain words", "plain words");
        check(
            "<p>Acme&#8217;s <b>new</b> kettle</p>",
            "Acme\u{2019}s new kettle",
        );
        check(
            "<p>One <a href=\"https://x.example/a\">link</a>.</p>\n<p>Two\n   lines</p>",
            "One link.\n\nTwo lines",
        );
        check("<script>alert(1)</script><p>kept</p>", "kept");
        check("Fish &amp; chips", "Fish & chips");
        check("", "");
    }

    fn source() -> earshot_core::model::Source {
        earshot_core::model::Source {
            kind: KIND.into(),
            instance: "blog".into(),
        }
    }

    #[test]
    fn items_map_to_mentions_with_stable_ids() {
        let rss = br#"<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>The Daily Grind</title><link>https://dailygrind.example.org/</link><language>en-us</language>
<item><title>Brewtide raises Series B</title><link>https://dailygrind.example.org/brewtide-b</link>
<guid isPermaLink="false">dg-1042</guid><pubDate>Mon, 23 Nov 2026 09:00:00 GMT</pubDate>
<dc:creator>Ana Ruiz</dc:creator><description>&lt;p&gt;Brewtide &lt;em&gt;raised&lt;/em&gt; money.&lt;/p&gt;</description>
<enclosure url="https://dailygrind.example.org/b.jpg" type="image/jpeg" length="1"/></item>
<item><title>No guid here</title><link>https://dailygrind.example.org/no-guid</link></item>
<item><description>   </description></item>
</channel></rss>"#;
        let feed = parse_feed(rss).unwrap();
        let first = map_entry(&feed, &feed.entries[0], source(), 7).unwrap();
        assert_eq!(first.native_id, "dg-1042");
        assert_eq!(first.id, mention_id("rss", "dg-1042"));
        assert_eq!(
            first.text,
            "Brewtide raises Series B\n\nBrewtide raised money."
        );
        assert_eq!(first.author.handle, "Ana Ruiz");
        assert_eq!(first.author.name.as_deref(), Some("The Daily Grind"));
        assert_eq!(
            first.url.as_deref(),
            Some("https://dailygrind.example.org/brewtide-b")
        );
        assert_eq!(first.lang_hint.as_deref(), Some("en-us"));
        assert_eq!(
            first.created_at,
            chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
                .unwrap()
                .timestamp_micros()
        );
        assert!(first.has_media);
        let second = map_entry(&feed, &feed.entries[1], source(), 7).unwrap();
        assert_eq!(second.native_id, "https://dailygrind.example.org/no-guid");
        assert_eq!(second.created_at, 7, "no date: the time of collection");
        assert!(!second.has_media);
        assert!(map_entry(&feed, &feed.entries[2], source(), 7).is_err());
    }

    #[test]
    fn atom_entries_use_their_id() {
        let atom = br#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Google Alert - acme</title>
<id>tag:google.com,2013:googlealerts/feed:123</id><updated>2026-11-23T09:00:00Z</updated>
<entry><id>tag:google.com,2013:googlealerts/feed:123:456</id>
<title type="html">&lt;b&gt;Acme&lt;/b&gt; recalls kettles</title>
<link href="https://www.google.com/url?q=https://news.example/acme"/>
<published>2026-11-23T08:00:00Z</published><updated>2026-11-23T08:30:00Z</updated>
<content type="html">Acme &lt;b&gt;recalls&lt;/b&gt; 10,000 kettles</content>
<author><name></name></author></entry></feed>"#;
        let feed = parse_feed(atom).unwrap();
        let mention = map_entry(&feed, &feed.entries[0], source(), 7).unwrap();
        assert_eq!(
            mention.native_id,
            "tag:google.com,2013:googlealerts/feed:123:456"
        );
        assert_eq!(
            mention.text,
            "Acme recalls kettles\n\nAcme recalls 10,000 kettles"
        );
        assert_eq!(mention.author.handle, "Google Alert - acme");
    }

    #[test]
    fn a_document_that_is_not_a_feed_is_an_error() {
        for body in [
            &b"<html><body>maintenance</body></html>"[..],
            b"<rss><channel><item>",
            b"",
        ] {
            assert!(
                parse_feed(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
