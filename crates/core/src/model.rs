//! The event model: Rust types for the records on Earshot's topics.
//!
//! Each type mirrors one Avro schema in `schemas/` field for field; the codec encodes them
//! straight through serde against that schema. Timestamps are microseconds since the Unix
//! epoch (Avro `timestamp-micros`), ids are UUIDs carried as Avro `uuid` strings.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A public post collected from a source, normalized (schema `dev.earshot.v1.Mention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    #[serde(with = "uuid_string")]
    pub id: Uuid,
    pub native_id: String,
    pub source: Source,
    #[serde(default)]
    pub url: Option<String>,
    pub author: Author,
    pub text: String,
    #[serde(default)]
    pub lang_hint: Option<String>,
    /// Microseconds since the Unix epoch, UTC.
    pub created_at: i64,
    /// Microseconds since the Unix epoch, UTC.
    pub collected_at: i64,
    #[serde(default)]
    pub engagement: Engagement,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub has_media: bool,
    /// Set on a retraction (microseconds since the Unix epoch, UTC): the post was deleted at
    /// its source. A retraction carries the id of the post it retracts and an empty text;
    /// see [`Mention::retraction`].
    #[serde(default)]
    pub deleted_at: Option<i64>,
}

impl Mention {
    /// The retraction of a post deleted at its source: the same stable id as the post (the
    /// same source kind and native id), an empty text, and what the delete event tells.
    /// `created_at` is the post's creation time when known, else the deletion time.
    pub fn retraction(
        source: Source,
        native_id: String,
        author: Author,
        created_at: Option<i64>,
        deleted_at: i64,
    ) -> Mention {
        Mention {
            id: mention_id(&source.kind, &native_id),
            native_id,
            source,
            url: None,
            author,
            text: String::new(),
            lang_hint: None,
            created_at: created_at.unwrap_or(deleted_at),
            collected_at: now_micros(),
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: Some(deleted_at),
        }
    }

    /// Whether this is a retraction rather than a post.
    pub fn is_retraction(&self) -> bool {
        self.deleted_at.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub kind: String,
    pub instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub handle: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub followers: Option<i64>,
    #[serde(default)]
    pub verified: bool,
    /// The account's stable id on its source when the handle can change or is not always
    /// known: a Bluesky DID, an X user id.
    #[serde(default)]
    pub id: Option<String>,
}

impl Author {
    /// An author known only by a handle.
    pub fn handle(handle: impl Into<String>) -> Author {
        Author {
            handle: handle.into(),
            name: None,
            followers: None,
            verified: false,
            id: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    #[serde(default)]
    pub likes: i64,
    #[serde(default)]
    pub reposts: i64,
    #[serde(default)]
    pub replies: i64,
}

/// A mention with what Earshot understood of it (schema `dev.earshot.v1.EnrichedMention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedMention {
    pub mention: Mention,
    /// The watchlist this copy is keyed by; empty when the mention matched none.
    pub watchlist: String,
    #[serde(default)]
    pub matches: Vec<WatchlistMatch>,
    #[serde(default)]
    pub sentiment: Sentiment,
    /// The sentence-level view beside the whole-text scores.
    #[serde(default)]
    pub sentences: SentenceSentiment,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub language_confidence: f64,
    #[serde(default)]
    pub spam_score: f64,
    #[serde(default = "unknown_intent")]
    pub intent: String,
    #[serde(default)]
    pub reach: i64,
    #[serde(default)]
    pub urgency: f64,
    /// The reasons behind the scores: intents, spam reasons, reach score, input flags.
    #[serde(default)]
    pub signals: Signals,
    pub enriched_at: i64,
}

/// Why the enricher scored a mention as it did (record `Signals` of the schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Every intent that holds, most urgent first.
    #[serde(default)]
    pub intents: Vec<String>,
    /// Why `spam_score` is above 0.
    #[serde(default)]
    pub spam_reasons: Vec<String>,
    /// Audience and momentum, 0..1.
    #[serde(default)]
    pub reach_score: f64,
    /// What was wrong with the input and how it was handled.
    #[serde(default)]
    pub flags: Vec<String>,
}

fn unknown_intent() -> String {
    "unknown".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistMatch {
    pub watchlist: String,
    pub relevance: f64,
    pub clause: String,
    #[serde(default)]
    pub spans: Vec<Span>,
}

/// A byte range of the mention text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: i32,
    pub end: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub neg: f64,
    pub neu: f64,
    pub pos: f64,
    pub compound: f64,
}

impl Default for Sentiment {
    fn default() -> Self {
        Sentiment {
            neg: 0.0,
            neu: 1.0,
            pos: 0.0,
            compound: 0.0,
        }
    }
}

/// Sentiment of a text's sentences scored one by one. VADER's compound saturates on long
/// texts (a blog post with one angry paragraph still scores near +1); these figures do not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentenceSentiment {
    /// Sentences scored; 0 when the text has none.
    pub count: i32,
    pub mean_compound: f64,
    pub min_compound: f64,
    pub max_compound: f64,
    /// The sentence with the lowest compound, empty when no sentence is negative.
    pub most_negative: String,
}

/// A routed alert and its deliveries (schema `dev.earshot.v1.Alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(with = "uuid_string")]
    pub id: Uuid,
    pub created_at: i64,
    pub route: String,
    pub watchlist: String,
    #[serde(with = "uuid_string")]
    pub mention_id: Uuid,
    #[serde(default)]
    pub mention_url: Option<String>,
    pub mention_text: String,
    pub author_handle: String,
    pub score_name: String,
    pub score: f64,
    pub threshold: f64,
    pub mention_collected_at: i64,
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
    /// Route names from the top of the routing tree down to `route`.
    #[serde(default)]
    pub route_path: Vec<String>,
    /// No public reply before review: the mention touches a sensitive topic.
    #[serde(default)]
    pub review_required: bool,
    /// The sensitive topics it touches.
    #[serde(default)]
    pub review_topics: Vec<String>,
    /// The team the route sends it to; none when the route names a receiver.
    #[serde(default)]
    pub team: Option<String>,
    /// When someone acknowledged it, microseconds since the Unix epoch, UTC.
    #[serde(default)]
    pub acknowledged_at: Option<i64>,
    /// Who acknowledged it, as they said.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// When someone resolved it, microseconds since the Unix epoch, UTC.
    #[serde(default)]
    pub resolved_at: Option<i64>,
    /// What raised it: [`ALERT_KIND_MENTION`] or [`ALERT_KIND_SPIKE`].
    #[serde(default = "mention_kind")]
    pub kind: String,
    /// For a spike alert: the window against its baseline, and what was in it.
    #[serde(default)]
    pub spike: Option<Spike>,
}

/// An alert raised by one mention matching a route.
pub const ALERT_KIND_MENTION: &str = "mention";
/// An alert raised by a watchlist's window leaving its baseline (`Alert::spike`).
pub const ALERT_KIND_SPIKE: &str = "spike";

fn mention_kind() -> String {
    ALERT_KIND_MENTION.to_owned()
}

/// Why a spike alert was raised (record `Spike` of the alert schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spike {
    /// `volume` or `negative_share`.
    pub metric: String,
    /// `peak` or `dip`.
    pub direction: String,
    /// Microseconds since the Unix epoch, UTC; included.
    pub window_start: i64,
    /// Microseconds since the Unix epoch, UTC; excluded.
    pub window_end: i64,
    pub mentions: i64,
    pub negative_mentions: i64,
    /// The metric in the window.
    pub value: f64,
    pub baseline_mean: f64,
    pub baseline_stddev: f64,
    pub z_score: f64,
    #[serde(default)]
    pub top_terms: Vec<SpikeCount>,
    #[serde(default)]
    pub top_authors: Vec<SpikeCount>,
    #[serde(default)]
    pub samples: Vec<SpikeSample>,
}

/// A term or author of a spike's window and how many of its mentions carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpikeCount {
    pub name: String,
    pub count: i64,
}

/// A mention of a spike's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpikeSample {
    #[serde(with = "uuid_string")]
    pub mention_id: Uuid,
    pub author: String,
    pub text: String,
    #[serde(default)]
    pub url: Option<String>,
    pub reach: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(with = "uuid_string")]
    pub id: Uuid,
    pub channel: String,
    pub receiver: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    Failed,
}

/// A change in the health of one collector source instance (schema
/// `dev.earshot.v1.SourceHealth`), keyed by `<kind>/<name>` on the source-health topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHealthEvent {
    pub source_kind: String,
    pub source_instance: String,
    pub state: SourceHealthState,
    pub observed_at: i64,
    #[serde(default)]
    pub last_item_at: Option<i64>,
    #[serde(default)]
    pub last_success_at: Option<i64>,
    pub consecutive_failures: i32,
    pub usual_interval_ms: i64,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceHealthState {
    /// Yielding as usual.
    Healthy,
    /// Nothing yielded for several usual intervals.
    Quiet,
    /// Several failed polls or connections in a row.
    Failing,
}

/// Namespace of the UUIDv5 ids Earshot derives (mention ids, alert ids, delivery ids).
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6561_7273_686f_7400_8000_0000_0000_0001);

/// The stable id of a post: the same source kind and native id always give the same id.
pub fn mention_id(source_kind: &str, native_id: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{source_kind}:{native_id}").as_bytes(),
    )
}

/// The stable id of an alert: one mention routed by one route gives one alert, however often
/// it is replayed.
pub fn alert_id(mention_id: Uuid, route: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("alert:{mention_id}:{route}").as_bytes(),
    )
}

/// The stable id of one delivery of an alert to one receiver.
pub fn delivery_id(alert_id: Uuid, receiver: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("delivery:{alert_id}:{receiver}").as_bytes(),
    )
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Avro carries UUIDs as strings; serde's `Uuid` would write bytes to a non-human-readable
/// serializer such as Avro's, so ids go through their string form explicitly.
pub mod uuid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}
