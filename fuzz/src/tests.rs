//! The stable side of the fuzz targets: every committed input (`seeds/<target>/`, and
//! `regressions/<target>/` for inputs that once crashed a target) through its target, so that
//! `cargo test` proves no crash without nightly or libFuzzer. `scripts/fuzz` runs this when
//! nightly is missing.

use std::path::{Path, PathBuf};

use earshot_core::codec::{AvroRecord, Codec};
use earshot_core::model::*;

use super::*;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory").path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_committed_input_runs_through_its_target_without_a_crash() {
    for (target, body) in TARGETS {
        let files = inputs(target);
        assert!(
            files.len() >= 3,
            "{target}: only {} seed files under seeds/{target}",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("a readable seed");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target} crashed on {}", file.display());
        }
    }
}

/// The Avro seeds are written by [`avro_seeds`]; they must still decode, so that a schema
/// change that leaves them stale is noticed (the fuzzer would then start from garbage).
/// `EARSHOT_WRITE_SEEDS=1 cargo test` rewrites them.
#[test]
fn the_avro_seeds_are_current_records() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/avro_decode");
    let seeds = avro_seeds();
    if std::env::var_os("EARSHOT_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, expected) in &seeds {
        let found = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(
            found == *expected,
            "seeds/avro_decode/{name} is stale: EARSHOT_WRITE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml"
        );
    }
    // And each decodes (the selector byte picks the right type).
    let decodes = |bytes: &[u8]| {
        let payload = &bytes[1..];
        let c = codecs();
        futures::executor::block_on(async {
            match bytes[0] % 4 {
                0 => c.mention().decode(payload).await.is_ok(),
                1 => c.enriched().decode(payload).await.is_ok(),
                2 => c.alert().decode(payload).await.is_ok(),
                _ => c.source_health().decode(payload).await.is_ok(),
            }
        })
    };
    for (name, bytes) in &seeds {
        assert!(decodes(bytes), "{name} does not decode");
    }
}

#[test]
fn a_truncated_or_foreign_payload_is_an_error_not_a_crash() {
    let (_, good) = &avro_seeds()[0];
    for cut in 0..good.len() {
        avro_decode(&good[..cut]);
    }
    avro_decode(&[0, 0, 0, 0, 0, 99, 1, 2, 3]);
    avro_decode(&[1, 0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
}

/// Selector byte, then the payload in single-object framing and in Confluent framing (id
/// [`CONFLUENT_FIRST_ID`], the current schema).
pub fn avro_seeds() -> Vec<(String, Vec<u8>)> {
    let mentions = sample_mentions();
    let enriched: Vec<EnrichedMention> = mentions.iter().take(2).map(enrich).collect();
    let alerts: Vec<Alert> = enriched.iter().map(alert).collect();
    let health = vec![SourceHealthEvent {
        source_kind: "rss".into(),
        source_instance: "dailygrind".into(),
        state: SourceHealthState::Failing,
        observed_at: 1_763_888_400_000_000,
        last_item_at: Some(1_763_888_000_000_000),
        last_success_at: None,
        consecutive_failures: 5,
        usual_interval_ms: 300_000,
        last_error: Some("HTTP 503 from dailygrind.example.org".into()),
    }];
    let mut seeds = Vec::new();
    add(&mut seeds, "mention", 0, codecs().mention(), &mentions[..3]);
    add(&mut seeds, "enriched", 1, codecs().enriched(), &enriched);
    add(&mut seeds, "alert", 2, codecs().alert(), &alerts);
    add(
        &mut seeds,
        "source_health",
        3,
        codecs().source_health(),
        &health,
    );
    seeds
}

fn add<T: AvroRecord>(
    seeds: &mut Vec<(String, Vec<u8>)>,
    name: &str,
    selector: u8,
    codec: &Codec<T>,
    records: &[T],
) {
    for (n, record) in records.iter().enumerate() {
        let single = codec.encode(record).expect("encodes");
        let mut confluent = vec![0];
        confluent.extend_from_slice(&CONFLUENT_FIRST_ID.to_be_bytes());
        confluent.extend_from_slice(&single[10..]);
        for (framing, payload) in [("single", single), ("confluent", confluent)] {
            let mut bytes = vec![selector];
            bytes.extend_from_slice(&payload);
            seeds.push((format!("{name}-{n}-{framing}.bin"), bytes));
        }
    }
}

fn sample_mentions() -> Vec<Mention> {
    let source = Source {
        kind: "ingest".into(),
        instance: "sample".into(),
    };
    include_str!("../../crates/earshot/sample/mentions.ndjson")
        .lines()
        .take(3)
        .map(|line| {
            let mut mention = ingest::parse_item(ingest::RawItem::Line(line), &source)
                .expect("the sample is valid");
            mention.collected_at = mention.created_at + 1_000_000;
            mention
        })
        .collect()
}

fn enrich(mention: &Mention) -> EnrichedMention {
    EnrichedMention {
        mention: mention.clone(),
        watchlist: "brewtide".into(),
        matches: vec![WatchlistMatch {
            watchlist: "brewtide".into(),
            relevance: 0.81,
            clause: "brewtide".into(),
            spans: vec![Span { start: 9, end: 17 }],
        }],
        sentiment: Sentiment {
            neg: 0.1,
            neu: 0.6,
            pos: 0.3,
            compound: 0.4404,
        },
        sentences: SentenceSentiment {
            count: 2,
            mean_compound: 0.2,
            min_compound: -0.1,
            max_compound: 0.5,
            most_negative: "It was late.".into(),
        },
        language: Some("fr".into()),
        language_confidence: 0.93,
        spam_score: 0.05,
        intent: "praise".into(),
        reach: 142,
        urgency: 0.2,
        signals: Signals {
            intents: vec!["praise".into()],
            spam_reasons: vec![],
            reach_score: 0.12,
            flags: vec!["text_truncated".into()],
        },
        enriched_at: mention.collected_at + 5_000,
    }
}

fn alert(enriched: &EnrichedMention) -> Alert {
    let id = alert_id(enriched.mention.id, "brewtide-strong-match");
    Alert {
        id,
        created_at: enriched.enriched_at + 1_000,
        route: "brewtide-strong-match".into(),
        watchlist: enriched.watchlist.clone(),
        mention_id: enriched.mention.id,
        mention_url: enriched.mention.url.clone(),
        mention_text: enriched.mention.text.clone(),
        author_handle: enriched.mention.author.handle.clone(),
        score_name: "relevance".into(),
        score: 0.81,
        threshold: 0.75,
        mention_collected_at: enriched.mention.collected_at,
        deliveries: vec![Delivery {
            id: delivery_id(id, "care-hook"),
            channel: "webhook".into(),
            receiver: "care-hook".into(),
            status: DeliveryStatus::Delivered,
            attempts: 2,
            last_error: Some("HTTP 503".into()),
            delivered_at: Some(enriched.enriched_at + 9_000),
        }],
        route_path: vec!["brewtide".into(), "brewtide-strong-match".into()],
        review_required: false,
        review_topics: vec![],
        team: Some("care".into()),
        acknowledged_at: Some(enriched.enriched_at + 60_000_000),
        acknowledged_by: Some("ana".into()),
        resolved_at: None,
        kind: ALERT_KIND_MENTION.into(),
        spike: None,
    }
}
