//! The bodies each channel is sent: a Slack Block Kit message, a Microsoft Teams Adaptive
//! Card, a PagerDuty Events API v2 event, and the generic webhook's HMAC-SHA256 signature.
//!
//! Pure functions of the alert and the mention, so that each payload is unit-tested and the
//! fake servers of the tests check what the real services would receive.

use earshot_core::model::{Alert, EnrichedMention};
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

/// Slack refuses a section text over 3,000 characters; the post is cut well before.
const MAX_POST_CHARS: usize = 2_000;
/// PagerDuty truncates `summary` at 1,024 characters.
const MAX_SUMMARY_CHARS: usize = 1_024;

/// A Slack incoming-webhook message: the post, its scores, why it was routed, and a button
/// to open it. `text` is the notification fallback.
pub fn slack(alert: &Alert, enriched: &EnrichedMention) -> Value {
    let post = escape_slack(&cut(&alert.mention_text, MAX_POST_CHARS));
    let author = escape_slack(&alert.author_handle);
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": cut(&title(alert), 150)},
        }),
        json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": format!(
                    "*{author}* on {source} (reach {reach})\n>{quoted}",
                    source = escape_slack(&enriched.mention.source.kind),
                    reach = enriched.reach,
                    quoted = post.replace('\n', "\n>"),
                ),
            },
        }),
        json!({
            "type": "section",
            "fields": scores(enriched)
                .into_iter()
                .map(|(name, value)| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")}))
                .collect::<Vec<_>>(),
        }),
        json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape_slack(&why(alert))}],
        }),
    ];
    if alert.review_required {
        blocks.insert(
            1,
            json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!(":warning: *{}*", review_warning(alert))},
            }),
        );
    }
    if let Some(url) = &alert.mention_url {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open the post"},
                "url": url,
                "action_id": "open_post",
            }],
        }));
    }
    json!({
        "text": format!("{}: {}", title(alert), cut(&alert.mention_text, 200)),
        "blocks": blocks,
    })
}

/// A Microsoft Teams incoming-webhook message carrying an Adaptive Card.
pub fn teams(alert: &Alert, enriched: &EnrichedMention) -> Value {
    let facts: Vec<Value> = scores(enriched)
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": title(alert), "wrap": true},
            {"type": "TextBlock", "text": format!("{} on {} (reach {})", alert.author_handle, enriched.mention.source.kind, enriched.reach), "isSubtle": true, "wrap": true},
            {"type": "TextBlock", "text": cut(&alert.mention_text, MAX_POST_CHARS), "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": why(alert), "isSubtle": true, "size": "Small", "wrap": true},
        ],
    });
    if alert.review_required {
        card["body"]
            .as_array_mut()
            .expect("the card body is a list")
            .insert(
                1,
                json!({"type": "TextBlock", "text": review_warning(alert), "color": "Attention", "weight": "Bolder", "wrap": true}),
            );
    }
    if let Some(url) = &alert.mention_url {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open the post", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// A PagerDuty `trigger` event. The `dedup_key` is the alert id: the same mention on the same
/// route opens one incident however often it is retried or replayed.
pub fn pagerduty(
    alert: &Alert,
    enriched: &EnrichedMention,
    routing_key: &str,
    severity: &str,
) -> Value {
    let created = chrono::DateTime::from_timestamp_micros(alert.created_at)
        .unwrap_or_default()
        .to_rfc3339();
    let details: serde_json::Map<String, Value> = scores(enriched)
        .into_iter()
        .map(|(name, value)| (name.to_lowercase(), Value::String(value)))
        .chain([
            ("post".to_owned(), Value::String(alert.mention_text.clone())),
            (
                "author".to_owned(),
                Value::String(alert.author_handle.clone()),
            ),
            ("why".to_owned(), Value::String(why(alert))),
            ("alert_id".to_owned(), Value::String(alert.id.to_string())),
            (
                "route_path".to_owned(),
                Value::String(alert.route_path.join(" > ")),
            ),
            (
                "review_required".to_owned(),
                Value::Bool(alert.review_required),
            ),
            (
                "review_topics".to_owned(),
                Value::String(alert.review_topics.join(", ")),
            ),
        ])
        .collect();
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.id.to_string(),
        "client": "Earshot",
        "payload": {
            "summary": cut(&format!("{}: {}", title(alert), alert.mention_text), MAX_SUMMARY_CHARS),
            "source": format!("earshot/{}", alert.watchlist),
            "severity": severity,
            "timestamp": created,
            "component": alert.watchlist,
            "group": alert.route,
            "class": enriched.intent,
            "custom_details": details,
        },
    });
    if let Some(url) = &alert.mention_url {
        event["links"] = json!([{"href": url, "text": "The post"}]);
    }
    event
}

/// A plain-text email: the subject names the watchlist and route (and the review warning
/// first, when there is one); the `Message-ID` is the delivery id, the same on every retry,
/// so that mail clients show a retried message once.
pub fn email(
    alert: &Alert,
    enriched: &EnrichedMention,
    delivery: uuid::Uuid,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
) -> Result<lettre::Message, lettre::error::Error> {
    let mut subject = title(alert);
    let mut body = String::new();
    if alert.review_required {
        subject = format!("[REVIEW] {subject}");
        body.push_str(&format!("{}\n\n", review_warning(alert)));
    }
    body.push_str(&format!(
        "{} on {} (reach {}):\n\n{}\n\n",
        alert.author_handle, enriched.mention.source.kind, enriched.reach, alert.mention_text
    ));
    for (name, value) in scores(enriched) {
        body.push_str(&format!("{name}: {value}\n"));
    }
    body.push_str(&format!("\n{}\n", why(alert)));
    if let Some(url) = &alert.mention_url {
        body.push_str(&format!("\nThe post: {url}\n"));
    }
    body.push_str(&format!("\nAlert {}\n", alert.id));
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(cut(&subject, 200))
        .message_id(Some(format!("<{delivery}@earshot>")))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for recipient in to {
        builder = builder.to(recipient.clone());
    }
    builder.body(body)
}

/// `v1=` and the hex HMAC-SHA256, under `key`, of `<delivery id>.<timestamp>.<body>`.
/// Binding the delivery id and the timestamp stops a captured request from being replayed
/// later or as another delivery.
pub fn signature(key: &[u8], delivery: uuid::Uuid, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(delivery.to_string().as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The guardrail's warning on alerts about sensitive topics.
pub fn review_warning(alert: &Alert) -> String {
    format!(
        "No public reply before review (sensitive: {})",
        alert.review_topics.join(", ")
    )
}

pub(crate) fn title(alert: &Alert) -> String {
    format!("Earshot: {} · {}", alert.watchlist, alert.route)
}

/// Why the alert was raised: the route and the score against its bound.
pub(crate) fn why(alert: &Alert) -> String {
    if let Some(spike) = &alert.spike {
        return spike_why(alert, spike);
    }
    if alert.score_name.is_empty() {
        format!("Why: matched route {}", alert.route)
    } else {
        format!(
            "Why: matched route {}; {} {} ≥ {}",
            alert.route, alert.score_name, alert.score, alert.threshold
        )
    }
}

/// A spike's line: the window's value against the bound it crossed and the baseline.
fn spike_why(alert: &Alert, spike: &earshot_core::model::Spike) -> String {
    let relation = if spike.direction == crate::spikes::DIP {
        "≤"
    } else {
        "≥"
    };
    let (value, bound, mean, stddev) = if spike.metric == crate::spikes::METRIC_NEGATIVE_SHARE {
        let percent = |x: f64| format!("{:.0}%", x * 100.0);
        (
            percent(spike.value),
            percent(alert.threshold),
            percent(spike.baseline_mean),
            percent(spike.baseline_stddev),
        )
    } else {
        (
            format!("{:.0}", spike.value),
            format!("{:.1}", alert.threshold),
            format!("{:.1}", spike.baseline_mean),
            format!("{:.1}", spike.baseline_stddev),
        )
    };
    format!(
        "Why: matched route {}; {} {} {value} {relation} {bound} (baseline {mean} ± {stddev}, z {:+.1})",
        alert.route, spike.metric, spike.direction, spike.z_score
    )
}

fn scores(enriched: &EnrichedMention) -> Vec<(&'static str, String)> {
    vec![
        (
            "Sentiment",
            format!(
                "{:+.2} (neg {:.2})",
                enriched.sentiment.compound, enriched.sentiment.neg
            ),
        ),
        ("Urgency", format!("{:.2}", enriched.urgency)),
        ("Intent", enriched.intent.clone()),
        (
            "Language",
            enriched
                .language
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ),
        ("Reach", enriched.reach.to_string()),
        ("Spam", format!("{:.2}", enriched.spam_score)),
    ]
}

/// Slack's mrkdwn reads `<...>` as links and mentions: user text must not.
pub(crate) fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A different key, delivery id, timestamp or body gives another signature; the same
    /// inputs the same one. (The fake receiver in tests/channels.rs verifies it as the README
    /// tells users to.)
    #[test]
    fn signatures_bind_the_key_the_delivery_the_timestamp_and_the_body() {
        let id = uuid::Uuid::from_u128(1);
        let base = signature(b"key", id, "1700000000", b"{}");
        // The README's Python recipe gives this for the same inputs.
        assert_eq!(
            base,
            "v1=530efdc81d3632bb4a22a42dc331b01542f34c2841beb902495e19b95defd9a6"
        );
        assert_eq!(base, signature(b"key", id, "1700000000", b"{}"));
        for other in [
            signature(b"other", id, "1700000000", b"{}"),
            signature(b"key", uuid::Uuid::from_u128(2), "1700000000", b"{}"),
            signature(b"key", id, "1700000001", b"{}"),
            signature(b"key", id, "1700000000", b"{ }"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn slack_text_cannot_inject_links_or_mentions() {
        assert_eq!(
            escape_slack("<!channel> a & b <https://x|y>"),
            "&lt;!channel&gt; a &amp; b &lt;https://x|y&gt;"
        );
    }

    #[test]
    fn long_posts_are_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 10), "héllo");
        assert_eq!(cut("héllo", 2), "hé…");
    }
}
