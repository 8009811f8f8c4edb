//! The rows the sink writes, converted from the event model: one [`Item`] per input record.
//!
//! Conversion is pure and synchronous: it checks what the model cannot (timestamps in range)
//! so that a bad record is dead-lettered before it reaches a batch.

use chrono::{DateTime, Utc};
use earshot_core::model::{Alert, DeliveryStatus, EnrichedMention};
use uuid::Uuid;

/// What one input record writes.
// Moved once per record into the writer's channel, never copied around: boxing the larger
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// One enriched copy of a mention (a mention arrives once per matched watchlist); every
    /// copy writes the same `mentions` row and the matches it lists.
    Mention {
        mention: MentionRow,
        matches: Vec<MatchRow>,
    },
    /// One alert and its deliveries.
    Alert {
        alert: AlertRow,
        deliveries: Vec<DeliveryRow>,
    },
}

impl Item {
    /// When the mention behind this item was collected, for the end-to-end latency metric.
    pub fn collected_at(&self) -> DateTime<Utc> {
        match self {
            Item::Mention { mention, .. } => mention.collected_at,
            Item::Alert { alert, .. } => alert.mention_collected_at,
        }
    }
}

/// A row of `mentions`.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionRow {
    pub id: Uuid,
    pub native_id: String,
    pub source_kind: String,
    pub source_instance: String,
    pub url: Option<String>,
    pub author_handle: String,
    pub author_name: Option<String>,
    pub author_followers: Option<i64>,
    pub author_verified: bool,
    pub text: String,
    pub lang_hint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub likes: i64,
    pub reposts: i64,
    pub replies: i64,
    pub parent_id: Option<String>,
    pub conversation_id: Option<String>,
    pub has_media: bool,
    pub sentiment_neg: f64,
    pub sentiment_neu: f64,
    pub sentiment_pos: f64,
    pub sentiment_compound: f64,
    pub language: Option<String>,
    pub language_confidence: f64,
    pub spam_score: f64,
    pub intent: String,
    pub reach: i64,
    pub urgency: f64,
    pub enriched_at: DateTime<Utc>,
    pub sentences_count: i32,
    pub sentences_mean_compound: f64,
    pub sentences_min_compound: f64,
    pub sentences_max_compound: f64,
    pub sentences_most_negative: String,
    /// `signals`: every intent that holds, why spam_score is above 0, reach 0..1, what was
    /// wrong with the input.
    pub intents: Vec<String>,
    pub spam_reasons: Vec<String>,
    pub reach_score: f64,
    pub input_flags: Vec<String>,
    /// Every watchlist the mention matched (for Parquet, which has no match table).
    pub watchlists: Vec<String>,
    /// The author's stable account id on the source (a Bluesky DID, an X user id).
    pub author_id: Option<String>,
    /// Set by a retraction: when the post was deleted at its source.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A row of `mention_matches`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRow {
    pub mention_id: Uuid,
    pub watchlist: String,
    pub relevance: f64,
    pub clause: String,
}

/// A row of `alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub route: String,
    pub watchlist: String,
    pub mention_id: Uuid,
    pub mention_url: Option<String>,
    pub mention_text: String,
    pub author_handle: String,
    pub score_name: String,
    pub score: f64,
    pub threshold: f64,
    pub mention_collected_at: DateTime<Utc>,
    /// The routes from the root to the one that raised it.
    pub route_path: Vec<String>,
    /// Touches a sensitive topic: no public reply before review.
    pub review_required: bool,
    pub review_topics: Vec<String>,
    /// The receivers of its deliveries, deduped in order (for Parquet, which has no
    /// deliveries table; a receiver is the team the alert went to).
    pub receivers: Vec<String>,
    /// Set by the router's acknowledge and resolve API; a later record of the same alert
    /// fills them in, a replayed earlier one never clears them.
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The team its route sends it to (router.teams); none when the route names receivers.
    pub team: Option<String>,
    /// What raised it: `mention` or `spike`.
    pub kind: String,
}

/// A row of `deliveries`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub channel: String,
    pub receiver: String,
    pub status: &'static str,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A record that cannot become rows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {micros} microseconds since the epoch is not a representable timestamp")]
pub struct RowError {
    pub field: &'static str,
    pub micros: i64,
}

/// The item of one enriched mention.
pub fn mention_item(enriched: EnrichedMention) -> Result<Item, RowError> {
    let EnrichedMention {
        mention,
        watchlist: _,
        matches,
        sentiment,
        sentences,
        language,
        language_confidence,
        spam_score,
        intent,
        reach,
        urgency,
        signals,
        enriched_at,
    } = enriched;
    let id = mention.id;
    let mut row = MentionRow {
        id,
        native_id: mention.native_id,
        source_kind: mention.source.kind,
        source_instance: mention.source.instance,
        url: mention.url,
        author_handle: mention.author.handle,
        author_name: mention.author.name,
        author_followers: mention.author.followers,
        author_verified: mention.author.verified,
        text: mention.text,
        lang_hint: mention.lang_hint,
        created_at: timestamp("mention.created_at", mention.created_at)?,
        collected_at: timestamp("mention.collected_at", mention.collected_at)?,
        likes: mention.engagement.likes,
        reposts: mention.engagement.reposts,
        replies: mention.engagement.replies,
        parent_id: mention.parent_id,
        conversation_id: mention.conversation_id,
        has_media: mention.has_media,
        sentiment_neg: sentiment.neg,
        sentiment_neu: sentiment.neu,
        sentiment_pos: sentiment.pos,
        sentiment_compound: sentiment.compound,
        language,
        language_confidence,
        spam_score,
        intent,
        reach,
        urgency,
        enriched_at: timestamp("enriched_at", enriched_at)?,
        sentences_count: sentences.count,
        sentences_mean_compound: sentences.mean_compound,
        sentences_min_compound: sentences.min_compound,
        sentences_max_compound: sentences.max_compound,
        sentences_most_negative: sentences.most_negative,
        intents: signals.intents,
        spam_reasons: signals.spam_reasons,
        reach_score: signals.reach_score,
        input_flags: signals.flags,
        watchlists: Vec::new(),
        author_id: mention.author.id,
        deleted_at: mention
            .deleted_at
            .map(|at| timestamp("mention.deleted_at", at))
            .transpose()?,
    };
    let mut rows: Vec<MatchRow> = Vec::with_capacity(matches.len());
    for m in matches {
        // One row per watchlist: the table's key is (mention_id, watchlist).
        if !rows.iter().any(|r| r.watchlist == m.watchlist) {
            rows.push(MatchRow {
                mention_id: id,
                watchlist: m.watchlist,
                relevance: m.relevance,
                clause: m.clause,
            });
        }
    }
    row.watchlists = rows.iter().map(|m| m.watchlist.clone()).collect();
    Ok(Item::Mention {
        mention: row,
        matches: rows,
    })
}

/// The item of one alert.
pub fn alert_item(alert: Alert) -> Result<Item, RowError> {
    let mut deliveries = Vec::with_capacity(alert.deliveries.len());
    let mut receivers: Vec<String> = Vec::new();
    for delivery in alert.deliveries {
        if !receivers.contains(&delivery.receiver) {
            receivers.push(delivery.receiver.clone());
        }
        deliveries.push(DeliveryRow {
            id: delivery.id,
            alert_id: alert.id,
            channel: delivery.channel,
            receiver: delivery.receiver,
            status: match delivery.status {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Failed => "failed",
            },
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            delivered_at: delivery
                .delivered_at
                .map(|at| timestamp("deliveries.delivered_at", at))
                .transpose()?,
        });
    }
    let row = AlertRow {
        id: alert.id,
        created_at: timestamp("created_at", alert.created_at)?,
        route: alert.route,
        watchlist: alert.watchlist,
        mention_id: alert.mention_id,
        mention_url: alert.mention_url,
        mention_text: alert.mention_text,
        author_handle: alert.author_handle,
        score_name: alert.score_name,
        score: alert.score,
        threshold: alert.threshold,
        mention_collected_at: timestamp("mention_collected_at", alert.mention_collected_at)?,
        route_path: alert.route_path,
        review_required: alert.review_required,
        review_topics: alert.review_topics,
        receivers,
        acknowledged_at: alert
            .acknowledged_at
            .map(|at| timestamp("acknowledged_at", at))
            .transpose()?,
        resolved_at: alert
            .resolved_at
            .map(|at| timestamp("resolved_at", at))
            .transpose()?,
        team: alert.team,
        kind: alert.kind,
    };
    Ok(Item::Alert {
        alert: row,
        deliveries,
    })
}

/// Microseconds since the Unix epoch (the model's timestamps) as a UTC timestamp.
pub fn timestamp(field: &'static str, micros: i64) -> Result<DateTime<Utc>, RowError> {
    DateTime::from_timestamp_micros(micros).ok_or(RowError { field, micros })
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_core::model::{
        Author, Delivery, Engagement, Mention, Sentiment, Source, WatchlistMatch,
    };

    fn check_timestamp(micros: i64, expected: Option<&str>) {
        let got = timestamp("t", micros)
            .ok()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        assert_eq!(got.as_deref(), expected, "timestamp({micros})");
    }

    #[test]
    fn timestamps_convert_from_micros() {
        check_timestamp(0, Some("1970-01-01T00:00:00.000000Z"));
        check_timestamp(1_700_000_000_123_456, Some("2023-11-14T22:13:20.123456Z"));
        check_timestamp(-1, Some("1969-12-31T23:59:59.999999Z"));
        check_timestamp(i64::MAX, None);
    }

    fn enriched(matches: &[&str]) -> EnrichedMention {
        EnrichedMention {
            mention: Mention {
                id: Uuid::from_u128(7),
                native_id: "n1".into(),
                source: Source {
                    kind: "mastodon".into(),
                    instance: "example.social".into(),
                },
                url: None,
                author: Author {
                    handle: "a".into(),
                    name: None,
                    followers: Some(3),
                    verified: false,
                    id: None,
                },
                text: "hello".into(),
                lang_hint: None,
                created_at: 1_000_000,
                collected_at: 2_000_000,
                engagement: Engagement::default(),
                parent_id: None,
                conversation_id: None,
                has_media: false,
                deleted_at: None,
            },
            watchlist: matches.first().copied().unwrap_or_default().into(),
            matches: matches
                .iter()
                .map(|w| WatchlistMatch {
                    watchlist: (*w).into(),
                    relevance: 0.5,
                    clause: "c".into(),
                    spans: vec![],
                })
                .collect(),
            sentiment: Sentiment::default(),
            sentences: Default::default(),
            language: Some("en".into()),
            language_confidence: 0.9,
            spam_score: 0.1,
            intent: "question".into(),
            reach: 10,
            urgency: 0.2,
            signals: Default::default(),
            enriched_at: 3_000_000,
        }
    }

    fn check_matches(watchlists: &[&str], expected: &[&str]) {
        let Item::Mention { mention, matches } = mention_item(enriched(watchlists)).unwrap() else {
            panic!("not a mention")
        };
        let got: Vec<&str> = matches.iter().map(|m| m.watchlist.as_str()).collect();
        assert_eq!(got, expected, "matches of {watchlists:?}");
        assert_eq!(mention.watchlists, expected, "watchlists of {watchlists:?}");
        assert!(matches.iter().all(|m| m.mention_id == mention.id));
    }

    #[test]
    fn one_match_row_per_watchlist() {
        check_matches(&[], &[]);
        check_matches(&["a"], &["a"]);
        check_matches(&["a", "b"], &["a", "b"]);
        check_matches(&["a", "b", "a"], &["a", "b"]);
    }

    #[test]
    fn mention_fields_map_to_columns() {
        let Item::Mention { mention, .. } = mention_item(enriched(&["a"])).unwrap() else {
            panic!("not a mention")
        };
        assert_eq!(mention.source_kind, "mastodon");
        assert_eq!(mention.author_followers, Some(3));
        assert_eq!(mention.collected_at.timestamp_micros(), 2_000_000);
        assert_eq!(mention.enriched_at.timestamp_micros(), 3_000_000);
        assert_eq!(mention.sentiment_neu, 1.0);
    }

    #[test]
    fn out_of_range_timestamps_are_rejected_with_the_field() {
        let mut bad = enriched(&["a"]);
        bad.mention.collected_at = i64::MIN;
        assert_eq!(mention_item(bad).unwrap_err().field, "mention.collected_at");
    }

    #[test]
    fn alert_deliveries_carry_the_alert_id() {
        let alert = Alert {
            id: Uuid::from_u128(1),
            created_at: 5,
            route: "r".into(),
            watchlist: "w".into(),
            mention_id: Uuid::from_u128(2),
            mention_url: None,
            mention_text: "t".into(),
            author_handle: "h".into(),
            score_name: "urgency".into(),
            score: 0.9,
            threshold: 0.5,
            mention_collected_at: 4,
            deliveries: vec![Delivery {
                id: Uuid::from_u128(3),
                channel: "webhook".into(),
                receiver: "ops".into(),
                status: DeliveryStatus::Failed,
                attempts: 6,
                last_error: Some("503".into()),
                delivered_at: None,
            }],
            route_path: vec![],
            review_required: false,
            review_topics: vec![],
            team: None,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            kind: "mention".into(),
            spike: None,
        };
        let Item::Alert { alert, deliveries } = alert_item(alert).unwrap() else {
            panic!("not an alert")
        };
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].alert_id, alert.id);
        assert_eq!(deliveries[0].status, "failed");
        assert_eq!(alert.receivers, ["ops"]);
        assert_eq!(alert.mention_collected_at.timestamp_micros(), 4);
    }
}
