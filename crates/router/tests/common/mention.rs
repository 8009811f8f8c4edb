//! The alert the router tests deliver: a mention of the `acme` watchlist by an account with
//! 50,000 followers, enriched, and the alert a route raises for it. Each test file adjusts the
//! fields its channel shows.

use earshot_core::model::{
    alert_id, mention_id, now_micros, Alert, Author, Engagement, EnrichedMention, Mention,
    Sentiment, Source, WatchlistMatch,
};

pub fn acme_alert(native_id: &str, text: &str, route: &str) -> (Alert, EnrichedMention) {
    let mention = Mention {
        id: mention_id("x", native_id),
        native_id: native_id.into(),
        source: Source {
            kind: "x".into(),
            instance: "test".into(),
        },
        url: Some(format!("https://x.example/status/{native_id}")),
        author: Author {
            handle: "@influencer".into(),
            name: None,
            followers: Some(50_000),
            verified: false,
            id: None,
        },
        text: text.into(),
        lang_hint: Some("en".into()),
        created_at: now_micros() - 2_000_000,
        collected_at: now_micros() - 1_000_000,
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    };
    let enriched = EnrichedMention {
        mention: mention.clone(),
        watchlist: "acme".into(),
        matches: vec![WatchlistMatch {
            watchlist: "acme".into(),
            relevance: 0.5,
            clause: "Acme".into(),
            spans: vec![],
        }],
        sentiment: Sentiment::default(),
        sentences: Default::default(),
        signals: Default::default(),
        language: Some("en".into()),
        language_confidence: 0.99,
        spam_score: 0.0,
        intent: "complaint".into(),
        reach: 50_000,
        urgency: 0.6,
        enriched_at: now_micros(),
    };
    let alert = Alert {
        id: alert_id(mention.id, route),
        created_at: now_micros(),
        route: route.into(),
        watchlist: "acme".into(),
        mention_id: mention.id,
        mention_url: mention.url.clone(),
        mention_text: mention.text.clone(),
        author_handle: mention.author.handle.clone(),
        score_name: "reach".into(),
        score: 50_000.0,
        threshold: 1000.0,
        mention_collected_at: mention.collected_at,
        deliveries: Vec::new(),
        route_path: vec![route.into()],
        review_required: false,
        review_topics: vec![],
        team: None,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        kind: "mention".into(),
        spike: None,
    };
    (alert, enriched)
}
