//! Scenario 4: 1 % poison records on the topics between the stages while mentions flow
//! through the four services. Truncated Avro, a wrong magic byte, an unknown writer-schema
//! fingerprint, and 10 MB payloads (on topics provisioned to hold them, over the services'
//! 1 MiB `kafka.max_message_bytes`) are produced straight onto the raw, enriched and alerts
//! topics. Every good mention must reach PostgreSQL, every injected record must be
//! dead-lettered once per stage that reads its topic (the router and the sink both read the
//! enriched topic) with its provenance headers, no service may exit, and every group's lag
//! must come back to zero.
//!
//! `EARSHOT_CHAOS_POISON_MENTIONS` sets the number of good mentions (default 20,000; 1 % of
//! it are injected). Three of the poison records are 10 MB each, one per topic: more would
//! mostly measure the disk of a shared CI machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_core::bus::{headers, InRecord, OutRecord, Publisher, Subscription};
use earshot_core::codec::Codecs;
use earshot_core::config::{KafkaConfig, TopicsConfig};
use earshot_core::kafka::{committed_lag, ensure_topics, KafkaPublisher, KafkaSubscription};
use earshot_core::model::{
    alert_id, mention_id, now_micros, Alert, Author, Engagement, EnrichedMention, Mention, Source,
};
use earshot_core::telemetry::{Health, Metrics};
use earshot_tests::*;

use crate::harness::*;

/// The header the injector puts on each poison record; dead letters keep it.
const POISON_HEADER: &str = "chaos.poison";
const TEN_MB: usize = 10 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Poison {
    Truncated,
    BadMagic,
    UnknownSchema,
    TenMegabytes,
}

impl Poison {
    /// The `earshot.error.type` its dead letter must carry. A record cut inside its datum
    /// has a valid header, so the decoder reports `decode`.
    fn error_type(self) -> &'static str {
        match self {
            Poison::Truncated => "decode",
            Poison::BadMagic => "bad_magic",
            Poison::UnknownSchema => "unknown_schema",
            Poison::TenMegabytes => "oversized",
        }
    }

    fn spoil(self, valid: &[u8], seed: u64) -> Bytes {
        match self {
            Poison::Truncated => Bytes::copy_from_slice(&valid[..valid.len() / 2]),
            Poison::BadMagic => {
                let mut bytes = valid.to_vec();
                bytes[0] = 0xC4;
                Bytes::from(bytes)
            }
            Poison::UnknownSchema => {
                // Single-object encoding: C3 01, then the schema's 8-byte fingerprint.
                let mut bytes = valid.to_vec();
                for byte in &mut bytes[2..10] {
                    *byte ^= 0x5A;
                }
                Bytes::from(bytes)
            }
            Poison::TenMegabytes => {
                // A valid header, then incompressible bytes (xorshift), so that the record is
                // 10 MB on the wire too, not a few kilobytes of lz4.
                let mut bytes = valid[..10].to_vec();
                let mut state = seed | 1;
                while bytes.len() < TEN_MB {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    bytes.extend_from_slice(&state.to_le_bytes());
                }
                Bytes::from(bytes)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_percent_poison_is_dead_lettered_and_every_good_record_delivered() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count = env_count("EARSHOT_CHAOS_POISON_MENTIONS", 20_000);
    let poison_count = (count / 100).max(6);
    let (_webhook, received, base) = webhook_and_base().await;
    let (postgres_url, _schema) = fresh_schema("chaos").await;
    let run = Run::new(&base, &kafka_bootstrap(), "", &postgres_url);
    let (raw, enriched, alerts, deadletter) = (
        run.topic("raw"),
        run.topic("enriched"),
        run.topic("alerts"),
        run.topic("deadletter"),
    );

    // The topics are provisioned to hold 12 MiB records, more than the services take.
    let injector_config = KafkaConfig {
        bootstrap_servers: kafka_bootstrap(),
        max_message_bytes: 12 * 1024 * 1024,
        ..KafkaConfig::default()
    };
    ensure_topics(&injector_config, &[&raw, &enriched, &alerts, &deadletter])
        .await
        .unwrap();

    let mut fleet = run.fleet();
    for service in SERVICES {
        fleet.start(service);
    }
    wait_for_port(run.ingest, "the ingest endpoint").await;

    // The poison: each kind on each topic, the 10 MB ones once per topic.
    let codecs = Codecs::new(None, &TopicsConfig::default()).await.unwrap();
    let valid = [
        (
            raw.clone(),
            Bytes::from(codecs.mention.encode(&mention(&run.run)).unwrap()),
        ),
        (
            enriched.clone(),
            Bytes::from(codecs.enriched.encode(&enriched_mention(&run.run)).unwrap()),
        ),
        (
            alerts.clone(),
            Bytes::from(codecs.alert.encode(&alert(&run.run)).unwrap()),
        ),
    ];
    let kinds = [Poison::Truncated, Poison::BadMagic, Poison::UnknownSchema];
    let poison: Vec<(String, Poison, Bytes)> = (0..poison_count)
        .map(|i| {
            let (topic, valid) = &valid[i % 3];
            let kind = if i < 3 {
                Poison::TenMegabytes
            } else {
                kinds[(i / 3) % 3]
            };
            (topic.clone(), kind, kind.spoil(valid, i as u64 + 1))
        })
        .collect();
    // Readers of each topic: a record there is dead-lettered once per reading stage.
    let readers = |topic: &str| -> &'static [&'static str] {
        if *topic == *raw {
            &["enricher"]
        } else if *topic == *enriched {
            &["router", "sink"]
        } else {
            &["sink"]
        }
    };
    let expected_letters: usize = poison.iter().map(|(t, _, _)| readers(t).len()).sum();

    // Good mentions through the ingest endpoint and poison straight onto the topics, both
    // spread over the same 15 s. The 10 MB records go in the middle of the stream.
    let spread = Duration::from_secs(15);
    let (lines, expected_alerts) = scenario_mentions(count, &run.run);
    let ingest = run.ingest;
    let poster =
        tokio::spawn(async move { post_until_acknowledged(ingest, &lines, 500, spread).await });
    let injector = KafkaPublisher::new(
        &injector_config,
        "chaos-poison-injector",
        Health::new(Duration::from_secs(60)).ready_flag("injector"),
    )
    .unwrap();
    let mut order: Vec<usize> = (3..poison.len()).collect();
    order.insert(order.len() / 2, 0);
    order.insert(order.len() / 2, 1);
    order.insert(order.len() / 2, 2);
    let started = tokio::time::Instant::now();
    let mut acks = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        tokio::time::sleep_until(started + spread * n as u32 / order.len() as u32).await;
        let (topic, _, payload) = &poison[i];
        acks.push(
            injector
                .publish(OutRecord {
                    topic: Arc::from(topic.as_str()),
                    key: None,
                    payload: payload.clone(),
                    headers: vec![(POISON_HEADER.to_owned(), Bytes::from(i.to_string()))],
                })
                .await,
        );
    }
    for ack in acks {
        ack.await.expect("the broker takes every poison record");
    }
    let acknowledged = poster.await.unwrap();
    let last_acknowledged = Instant::now();
    let catch_up = wait_for_mentions(
        &postgres_url,
        acknowledged.len(),
        last_acknowledged,
        Duration::from_secs(180),
    )
    .await;
    let (stored, distinct, missing) = stored_rows(&postgres_url, &acknowledged).await;
    let (alerts_seen, _) = webhook_alerts(&received, expected_alerts).await;

    // The dead letters: read until the expected count, then 3 s more for any extra.
    let mut reader = KafkaSubscription::new(
        &KafkaConfig {
            bootstrap_servers: kafka_bootstrap(),
            ..KafkaConfig::default()
        },
        &format!("{}-check-dlq", run.run),
        &[&deadletter],
        Metrics::default(),
        Health::new(Duration::from_secs(60)).ready_flag("joined"),
        Health::new(Duration::from_secs(60)).ready_flag("broker"),
    )
    .unwrap();
    let mut letters: Vec<InRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while letters.len() < expected_letters && Instant::now() < deadline {
        if let Ok(Some(Ok(record))) =
            tokio::time::timeout(Duration::from_secs(1), reader.recv()).await
        {
            letters.push(record);
        }
    }
    while let Ok(Some(Ok(record))) =
        tokio::time::timeout(Duration::from_secs(3), reader.recv()).await
    {
        letters.push(record);
    }

    // Each dead letter names its injected record, the stage, the error type and reason, and
    // the provenance of the original.
    let mut problems = Vec::new();
    let mut per_record: HashMap<(usize, String), usize> = HashMap::new();
    let mut per_type: HashMap<String, usize> = HashMap::new();
    for letter in &letters {
        let header = |name: &str| {
            letter
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let Some(index) = header(POISON_HEADER).and_then(|v| v.parse::<usize>().ok()) else {
            problems.push(format!(
                "a dead letter that is not an injected record: {:?}",
                header(headers::DLQ_ERROR)
            ));
            continue;
        };
        let (topic, kind, payload) = &poison[index];
        let stage = header(headers::DLQ_STAGE).unwrap_or_default();
        let error_type = header(headers::DLQ_ERROR_TYPE).unwrap_or_default();
        *per_type.entry(error_type.clone()).or_default() += 1;
        *per_record.entry((index, stage.clone())).or_default() += 1;
        if header(headers::DLQ_SOURCE_TOPIC).as_deref() != Some(topic.as_str())
            || header(headers::DLQ_SOURCE_PARTITION)
                .and_then(|p| p.parse::<i32>().ok())
                .is_none()
            || header(headers::DLQ_SOURCE_OFFSET)
                .and_then(|o| o.parse::<i64>().ok())
                .is_none()
            || header(headers::DLQ_ERROR).is_none_or(|e| e.is_empty())
            || !readers(topic).contains(&stage.as_str())
            || error_type != kind.error_type()
        {
            problems.push(format!(
                "poison {index} ({kind:?} on {topic}): headers {:?}",
                letter.headers
            ));
        }
        let expected_payload = if *kind == Poison::TenMegabytes {
            Bytes::new()
        } else {
            payload.clone()
        };
        if letter.payload.clone().unwrap_or_default() != expected_payload {
            problems.push(format!(
                "poison {index} ({kind:?}): the dead letter's payload differs"
            ));
        }
    }
    let twice: Vec<_> = per_record.iter().filter(|(_, n)| **n > 1).collect();
    let exited = fleet.exited();

    // The groups' committed offsets reach the end of their topics.
    let lag_config = KafkaConfig {
        bootstrap_servers: kafka_bootstrap(),
        ..KafkaConfig::default()
    };
    let groups = [
        ("enricher", vec![raw.clone()]),
        ("router", vec![enriched.clone()]),
        ("sink", vec![enriched.clone(), alerts.clone()]),
    ];
    let lag_deadline = Instant::now() + Duration::from_secs(60);
    let lag = loop {
        let mut total = 0;
        for (group, topics) in &groups {
            let (config, group, topics) = (
                lag_config.clone(),
                format!("{}-{group}", run.run),
                topics.clone(),
            );
            total += tokio::task::spawn_blocking(move || {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                committed_lag(&config, &group, &topics)
            })
            .await
            .unwrap()
            .unwrap_or(i64::MAX / 4);
        }
        if total == 0 || Instant::now() > lag_deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    fleet.stop_all();

    let passed = missing.is_empty()
        && stored == distinct
        && alerts_seen == expected_alerts
        && letters.len() == expected_letters
        && problems.is_empty()
        && twice.is_empty()
        && exited.is_empty()
        && lag == 0;
    let mut types: Vec<String> = per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    types.sort();
    ScenarioResult {
        id: "4-poison",
        scenario: "1 % poison records (truncated Avro, wrong magic byte, unknown schema, 10 MB payload) on the raw, enriched and alerts topics",
        must_hold: "every good record delivered, dead letters = injected records × reading stages, with headers, no restart, lag back to zero",
        size: format!(
            "{} mentions, {} poison records ({} × 10 MB)",
            thousands(count),
            poison.len(),
            3
        ),
        result: format!(
            "missing {} of {} acknowledged, duplicate rows {}, alerts {}/{}, dead letters {}/{} ({}), header problems {}, services exited {}, lag {} after catching up {:.1} s after the last acknowledgement",
            missing.len(),
            thousands(acknowledged.len()),
            stored - distinct,
            thousands(alerts_seen),
            thousands(expected_alerts),
            letters.len(),
            expected_letters,
            types.join(", "),
            problems.len(),
            exited.len(),
            lag,
            catch_up.as_secs_f64()
        ),
    }
    .write(passed);

    let logs = run.dir.display();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {:?}; logs in {logs}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(stored, distinct, "no mention stored twice");
    assert_eq!(
        alerts_seen, expected_alerts,
        "every expected alert delivered"
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        twice.is_empty(),
        "dead-lettered twice by one stage: {twice:?}"
    );
    assert_eq!(
        letters.len(),
        expected_letters,
        "one dead letter per injected record and reading stage; logs in {logs}"
    );
    assert!(
        exited.is_empty(),
        "services exited: {exited:?}; logs in {logs}"
    );
    assert_eq!(
        lag, 0,
        "every group caught up with its topics; logs in {logs}"
    );
    run.clean_up();
}

fn mention(run: &str) -> Mention {
    let native_id = format!("{run}-poison");
    Mention {
        id: mention_id("x", &native_id),
        url: Some(format!("https://x.example/status/{native_id}")),
        native_id,
        source: Source {
            kind: "x".into(),
            instance: "chaos".into(),
        },
        author: Author {
            handle: "@poison".into(),
            name: None,
            followers: Some(50_000),
            verified: false,
            id: None,
        },
        text: "my Acme order arrived late and the box was crushed".into(),
        lang_hint: Some("en".into()),
        created_at: now_micros(),
        collected_at: now_micros(),
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    }
}

fn enriched_mention(run: &str) -> EnrichedMention {
    EnrichedMention {
        mention: mention(run),
        watchlist: "acme".into(),
        matches: vec![],
        sentiment: Default::default(),
        sentences: Default::default(),
        language: Some("en".into()),
        language_confidence: 0.99,
        spam_score: 0.0,
        intent: "complaint".into(),
        reach: 50_000,
        urgency: 0.6,
        signals: Default::default(),
        enriched_at: now_micros(),
    }
}

fn alert(run: &str) -> Alert {
    let mention = mention(run);
    Alert {
        id: alert_id(mention.id, "acme-influencer"),
        created_at: now_micros(),
        route: "acme-influencer".into(),
        watchlist: "acme".into(),
        mention_id: mention.id,
        mention_url: mention.url.clone(),
        mention_text: mention.text.clone(),
        author_handle: mention.author.handle.clone(),
        score_name: "reach".into(),
        score: 50_000.0,
        threshold: 10_000.0,
        mention_collected_at: mention.collected_at,
        deliveries: vec![],
        route_path: vec!["acme-influencer".into()],
        review_required: false,
        review_topics: vec![],
        team: None,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        kind: "mention".into(),
        spike: None,
    }
}
