//! The ingest format: the JSON a client posts to `POST /v1/mentions` and the lines of an
//! NDJSON replay file, and its conversion into a validated [`Mention`].
//!
//! ```json
//! {"native_id": "1234", "source": {"kind": "x", "instance": "brand-search"},
//!  "url": "https://…", "author": {"handle": "@maria", "name": "Maria", "followers": 120,
//!  "verified": false}, "text": "…", "lang": "en", "created_at": "2026-11-23T09:00:15Z",
//!  "engagement": {"likes": 3, "reposts": 0, "replies": 1}, "parent_id": null,
//!  "conversation_id": null, "has_media": false}
//! ```
//! `id` may be given (a UUID); otherwise it is derived from `source.kind` and `native_id`,
//! so the same post gets the same id however it arrives.
//!
//! A retraction (the post was deleted at its source) names the post the same way and gives
//! `"deleted_at": "<RFC 3339>"`; its `text` may be empty and is dropped.

use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention, Source};
use serde::Deserialize;

/// Largest accepted text, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestMention {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub native_id: Option<String>,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub url: Option<String>,
    pub author: Author,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub lang: Option<String>,
    /// RFC 3339; defaults to the time of collection.
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub engagement: Option<Engagement>,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub has_media: bool,
    /// RFC 3339: this is a retraction of a post deleted at that time.
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// Parses and validates one JSON value of the ingest format; `default_source` applies when the
/// mention does not name its source.
pub fn to_mention(value: serde_json::Value, default_source: &Source) -> Result<Mention, String> {
    let ingest: IngestMention = serde_json::from_value(value).map_err(|e| e.to_string())?;
    ingest.into_mention(default_source)
}

impl IngestMention {
    pub fn into_mention(self, default_source: &Source) -> Result<Mention, String> {
        let source = self.source.unwrap_or_else(|| default_source.clone());
        if source.kind.trim().is_empty() {
            return Err("source.kind must not be empty".into());
        }
        let timestamp = |field: &str, text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_micros())
                .map_err(|e| format!("{field} {text:?} is not an RFC 3339 timestamp: {e}"))
        };
        let deleted_at = self
            .deleted_at
            .as_deref()
            .map(|text| timestamp("deleted_at", text))
            .transpose()?;
        if self.text.trim().is_empty() && deleted_at.is_none() {
            return Err(
                "text is missing or empty (only a retraction, with deleted_at, may have none)"
                    .into(),
            );
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "text is {} bytes, more than the {MAX_TEXT_BYTES}-byte limit",
                self.text.len()
            ));
        }
        if self.author.handle.trim().is_empty() {
            return Err("author.handle must not be empty".into());
        }
        let (id, native_id) = match (self.id, self.native_id) {
            (Some(id), native) => {
                let id = uuid::Uuid::parse_str(&id)
                    .map_err(|e| format!("id {id:?} is not a UUID: {e}"))?;
                (id, native.unwrap_or_else(|| id.to_string()))
            }
            (None, Some(native)) if !native.trim().is_empty() => {
                (mention_id(&source.kind, &native), native)
            }
            _ => return Err("either id or native_id is required".into()),
        };
        let collected_at = now_micros();
        let created_at = match self.created_at {
            Some(text) => timestamp("created_at", &text)?,
            None => deleted_at.unwrap_or(collected_at),
        };
        Ok(Mention {
            id,
            native_id,
            source,
            url: self.url,
            author: self.author,
            // A retraction carries no text: the post is gone.
            text: if deleted_at.is_some() {
                String::new()
            } else {
                self.text
            },
            lang_hint: self.lang,
            created_at,
            collected_at,
            engagement: self.engagement.unwrap_or_default(),
            parent_id: self.parent_id,
            conversation_id: self.conversation_id,
            has_media: self.has_media,
            deleted_at,
        })
    }
}

/// One item of a request body, not validated yet.
#[derive(Debug)]
pub enum RawItem<'a> {
    /// A line of an NDJSON body, parsed later straight into [`IngestMention`].
    Line(&'a str),
    /// An element of a JSON array body, or a single-object body.
    Value(serde_json::Value),
}

/// One item of a request body: its position (1-based line or array index) and the item.
pub type BodyItem<'a> = (usize, RawItem<'a>);

/// Splits a request body into items: one JSON object, a JSON array of objects, or NDJSON.
pub fn split_body(body: &[u8]) -> Result<Vec<BodyItem<'_>>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("body is empty".into());
    }
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("body is not a JSON array: {e}"))?;
        return Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, RawItem::Value(v)))
            .collect());
    }
    // One (possibly pretty-printed) object, else NDJSON.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(vec![(1, RawItem::Value(value))]);
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, RawItem::Line(line)))
        .collect())
}

/// Parses and validates one item. A line goes straight into [`IngestMention`]; only a line
/// that fails is parsed again as a `Value`, to say whether it is not JSON at all or which
/// field is wrong, exactly as for an array element.
pub fn parse_item(item: RawItem<'_>, default_source: &Source) -> Result<Mention, String> {
    match item {
        RawItem::Value(value) => to_mention(value, default_source),
        RawItem::Line(line) => match serde_json::from_str::<IngestMention>(line) {
            Ok(ingest) => ingest.into_mention(default_source),
            Err(_) => serde_json::from_str(line)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|value| to_mention(value, default_source)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            kind: "ingest".into(),
            instance: "http".into(),
        }
    }

    #[test]
    fn the_same_post_gets_the_same_id() {
        let line = r#"{"native_id":"42","source":{"kind":"x","instance":"a"},"author":{"handle":"@a"},"text":"hi"}"#;
        let a = to_mention(serde_json::from_str(line).unwrap(), &source()).unwrap();
        let b = to_mention(
            serde_json::from_str(&line.replace("\"a\"}", "\"b\"}")).unwrap(),
            &source(),
        )
        .unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id, mention_id("x", "42"));
    }

    #[test]
    fn a_retraction_has_the_posts_id_no_text_and_its_deletion_time() {
        let post = r#"{"native_id":"42","source":{"kind":"x","instance":"a"},"author":{"handle":"@a"},"text":"hi"}"#;
        let post = to_mention(serde_json::from_str(post).unwrap(), &source()).unwrap();
        assert_eq!(post.deleted_at, None);
        let retraction = r#"{"native_id":"42","source":{"kind":"x","instance":"a"},"author":{"handle":"@a"},"text":"hi","deleted_at":"2026-11-23T09:00:00Z"}"#;
        let retraction = to_mention(serde_json::from_str(retraction).unwrap(), &source()).unwrap();
        assert_eq!(retraction.id, post.id);
        assert!(retraction.is_retraction());
        assert_eq!(retraction.deleted_at, Some(1_795_424_400_000_000));
        assert_eq!(retraction.created_at, 1_795_424_400_000_000);
        assert_eq!(retraction.text, "");
        let without_text =
            r#"{"native_id":"42","author":{"handle":"@a"},"deleted_at":"2026-11-23T09:00:00Z"}"#;
        assert!(to_mention(serde_json::from_str(without_text).unwrap(), &source()).is_ok());
    }

    #[test]
    fn bad_items_name_what_is_wrong() {
        for (json, expected) in [
            (
                r#"{"author":{"handle":"@a"},"text":"hi"}"#,
                "either id or native_id is required",
            ),
            (
                r#"{"native_id":"1","author":{"handle":"@a"},"text":"  "}"#,
                "text is missing or empty",
            ),
            (
                r#"{"native_id":"1","author":{"handle":"@a"},"text":"x","created_at":"yesterday"}"#,
                "created_at \"yesterday\" is not an RFC 3339",
            ),
            (
                r#"{"native_id":"1","author":{"handle":"@a"},"text":"x","colour":"red"}"#,
                "unknown field `colour`",
            ),
            (r#"{"native_id":"1","text":"x"}"#, "missing field `author`"),
            (
                r#"{"native_id":"1","author":{"handle":"@a"},"deleted_at":"soon"}"#,
                "deleted_at \"soon\" is not an RFC 3339",
            ),
            (
                r#"{"id":"nope","author":{"handle":"@a"},"text":"x"}"#,
                "id \"nope\" is not a UUID",
            ),
        ] {
            let error = to_mention(serde_json::from_str(json).unwrap(), &source()).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn bodies_may_be_an_object_an_array_or_ndjson() {
        assert_eq!(split_body(b"{\n \"a\": 1\n}").unwrap().len(), 1);
        assert_eq!(split_body(b"[{}, {}, {}]").unwrap().len(), 3);
        let line = r#"{"native_id":"1","author":{"handle":"@a"},"text":"x"}"#;
        let body = format!("{line}\n\nnot json\n{{\"native_id\":\"2\"}}\n");
        let items: Vec<(usize, Result<Mention, String>)> = split_body(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(n, item)| (n, parse_item(item, &source())))
            .collect();
        assert_eq!(
            items
                .iter()
                .map(|(n, r)| (*n, r.is_ok()))
                .collect::<Vec<_>>(),
            vec![(1, true), (3, false), (4, false)]
        );
        assert!(items[1].1.as_ref().unwrap_err().starts_with("not JSON: "));
        assert!(items[2]
            .1
            .as_ref()
            .unwrap_err()
            .contains("missing field `author`"));
        assert!(split_body(b"   ").is_err());
        assert!(split_body(&[0xff, 0xfe]).is_err());
    }
}
