//! The sink against the real PostgreSQL started by `scripts/postgres` (`scripts/test` sets
//! DATABASE_URL), driven in-process over the in-memory bus through `run_with`. Each test
//! works in a schema of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use earshot_core::bus::{headers, OutRecord};
use earshot_core::config::{ParquetConfig, PostgresConfig};
use earshot_core::memory::MemoryBus;
use earshot_core::model::{
    Alert, Author, Delivery, DeliveryStatus, Engagement, EnrichedMention, Mention,
    SentenceSentiment, Sentiment, Signals, Source, WatchlistMatch,
};
use earshot_core::{Config, Publisher, Services};
use earshot_sink::SinkError;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const HOUR_MICROS: i64 = 3_600_000_000;
/// 2024-05-01T10:00:00Z.
const BASE_MICROS: i64 = 1_714_557_600_000_000;

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run these tests with scripts/test, which starts PostgreSQL (scripts/postgres start) and sets it",
    )
}

/// A schema of this test's own, and a URL whose connections use it.
struct TestDb {
    client: Client,
    schema: String,
    url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let base = database_url();
        let schema = format!("test_{}", Uuid::new_v4().simple());
        let client = connect(&base).await;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema}"
            ))
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url =
            format!("{base}{separator}options=-csearch_path%3D{schema}&application_name={schema}");
        TestDb {
            client,
            schema,
            url,
        }
    }

    async fn count(&self, table: &str) -> i64 {
        self.client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Every row of `table` as JSON text, in a stable order.
    async fn snapshot(&self, table: &str) -> Vec<String> {
        let rows = self
            .client
            .query(
                &format!("SELECT to_jsonb(t)::text AS row FROM {table} t ORDER BY row"),
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn drop(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .unwrap();
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connecting to DATABASE_URL");
    tokio::spawn(connection);
    client
}

fn config_for(url: &str) -> Config {
    config(url, None)
}

fn config(url: &str, parquet_dir: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.sink.postgres = Some(PostgresConfig {
        url: Some(url.to_owned()),
        url_env: None,
        batch_size: 100,
        batch_linger_ms: 20,
        connections: 2,
    });
    config.sink.parquet = parquet_dir.map(|dir| ParquetConfig {
        dir: dir.to_owned(),
        roll_rows: 4,
        roll_secs: 3600,
        ..ParquetConfig::default()
    });
    config
}

/// The sink running in-process over its own in-memory bus.
struct RunningSink {
    bus: MemoryBus,
    services: Services,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), SinkError>>,
}

impl RunningSink {
    async fn start(config: Config) -> RunningSink {
        let bus = MemoryBus::new();
        let services = Services::memory(config, bus.clone()).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(earshot_sink::run_with(services.clone(), shutdown.clone()));
        RunningSink {
            bus,
            services,
            shutdown,
            task,
        }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        let record = OutRecord {
            topic: Arc::from(topic),
            key: None,
            payload: Bytes::from(payload),
            headers: vec![],
        };
        self.bus.publish(record).await.await.unwrap();
    }

    async fn publish_enriched(&self, enriched: &EnrichedMention) {
        let payload = self.services.codecs.enriched.encode(enriched).unwrap();
        self.publish(&self.services.config.topics.enriched, payload)
            .await;
    }

    async fn publish_alert(&self, alert: &Alert) {
        let payload = self.services.codecs.alert.encode(alert).unwrap();
        self.publish(&self.services.config.topics.alerts, payload)
            .await;
    }

    fn received(&self) -> u64 {
        self.services
            .metrics
            .received
            .with_label_values(&["sink"])
            .get()
    }

    /// Waits until the sink has read `records` records.
    async fn wait_received(&self, records: u64) {
        let what = format!("the sink to read {records} records");
        wait_for(&what, || {
            self.received() >= records || self.task.is_finished()
        })
        .await;
        assert!(
            !self.task.is_finished(),
            "the sink stopped while waiting for {what}"
        );
    }

    /// Waits until the sink has read `records` records and stored every offset.
    async fn wait_done(&self, records: u64) {
        let what = format!("the sink to complete {records} records");
        wait_for(&what, || {
            (self.received() >= records && self.bus.is_idle()) || self.task.is_finished()
        })
        .await;
        assert!(
            !self.task.is_finished(),
            "the sink stopped while waiting for {what}"
        );
    }

    async fn stop(self) -> Result<(), SinkError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the sink stops")
            .unwrap()
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn enriched(
    native_id: &str,
    text: &str,
    collected_at: i64,
    watchlists: &[&str],
) -> EnrichedMention {
    EnrichedMention {
        mention: Mention {
            id: earshot_core::model::mention_id("mastodon", native_id),
            native_id: native_id.into(),
            source: Source {
                kind: "mastodon".into(),
                instance: "example.social".into(),
            },
            url: Some(format!("https://example.social/@a/{native_id}")),
            author: Author {
                handle: "a".into(),
                name: Some("A".into()),
                followers: Some(42),
                verified: true,
                id: None,
            },
            text: text.into(),
            lang_hint: None,
            created_at: collected_at - 1_000_000,
            collected_at,
            engagement: Engagement {
                likes: 1,
                reposts: 2,
                replies: 3,
            },
            parent_id: None,
            conversation_id: Some("c1".into()),
            has_media: false,
            deleted_at: None,
        },
        watchlist: watchlists.first().copied().unwrap_or_default().into(),
        matches: watchlists
            .iter()
            .map(|w| WatchlistMatch {
                watchlist: (*w).into(),
                relevance: 0.75,
                clause: (*w).into(),
                spans: vec![],
            })
            .collect(),
        sentiment: Sentiment {
            neg: 0.1,
            neu: 0.6,
            pos: 0.3,
            compound: 0.4,
        },
        sentences: SentenceSentiment {
            count: 2,
            mean_compound: 0.1,
            min_compound: -0.3,
            max_compound: 0.5,
            most_negative: format!("{text}, sadly."),
        },
        language: Some("en".into()),
        language_confidence: 0.99,
        spam_score: 0.01,
        intent: "question".into(),
        reach: 420,
        urgency: 0.3,
        signals: Signals {
            intents: vec!["question".into(), "purchase_intent".into()],
            spam_reasons: vec![],
            reach_score: 0.25,
            flags: vec!["text_truncated".into()],
        },
        enriched_at: collected_at + 5_000,
    }
}

fn alert(mention: &EnrichedMention, route: &str) -> Alert {
    let id = earshot_core::model::alert_id(mention.mention.id, route);
    Alert {
        id,
        created_at: mention.mention.collected_at + 10_000,
        route: route.into(),
        watchlist: mention.watchlist.clone(),
        mention_id: mention.mention.id,
        mention_url: mention.mention.url.clone(),
        mention_text: mention.mention.text.clone(),
        author_handle: mention.mention.author.handle.clone(),
        score_name: "urgency".into(),
        score: 0.9,
        threshold: 0.5,
        mention_collected_at: mention.mention.collected_at,
        deliveries: ["ops", "support"]
            .iter()
            .map(|receiver| Delivery {
                id: earshot_core::model::delivery_id(id, receiver),
                channel: "webhook".into(),
                receiver: (*receiver).into(),
                status: DeliveryStatus::Delivered,
                attempts: 1,
                last_error: None,
                delivered_at: Some(mention.mention.collected_at + 20_000),
            })
            .collect(),
        route_path: vec!["root".into(), route.into()],
        review_required: true,
        review_topics: vec!["legal".into()],
        team: None,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        kind: "mention".into(),
        spike: None,
    }
}

const TABLES: [&str; 4] = ["mentions", "mention_matches", "alerts", "deliveries"];

#[tokio::test]
async fn a_replayed_batch_writes_each_row_once_and_changes_nothing() {
    let db = TestDb::new().await;
    let mentions: Vec<EnrichedMention> = (0..5)
        .map(|n| {
            enriched(
                &format!("replay-{n}"),
                &format!("post {n}"),
                BASE_MICROS + n,
                &["brand"],
            )
        })
        .collect();
    let alerts = [alert(&mentions[0], "urgent"), alert(&mentions[1], "urgent")];

    let mut snapshots = Vec::new();
    for _run in 0..2 {
        let sink = RunningSink::start(config(&db.url, None)).await;
        for mention in &mentions {
            sink.publish_enriched(mention).await;
        }
        for alert in &alerts {
            sink.publish_alert(alert).await;
        }
        sink.wait_done(7).await;
        assert_eq!(
            sink.services
                .metrics
                .sent
                .with_label_values(&["sink"])
                .get(),
            7
        );
        sink.stop().await.unwrap();
        let mut snapshot = Vec::new();
        for table in TABLES {
            snapshot.push(db.snapshot(table).await);
        }
        snapshots.push(snapshot);
    }

    assert_eq!(db.count("mentions").await, 5);
    assert_eq!(db.count("mention_matches").await, 5);
    assert_eq!(db.count("alerts").await, 2);
    assert_eq!(db.count("deliveries").await, 4);
    assert_eq!(snapshots[0], snapshots[1], "the replay changed the tables");
    let row = db
        .client
        .query_one(
            "SELECT text, author_followers, created_at, collected_at, sentiment_compound, \
             sentences_count, sentences_mean_compound, sentences_min_compound, \
             sentences_max_compound, sentences_most_negative, intents, spam_reasons, \
             reach_score, input_flags \
             FROM mentions WHERE native_id = 'replay-3'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "post 3");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(42));
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(2)
            .timestamp_micros(),
        BASE_MICROS + 3 - 1_000_000
    );
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(3)
            .timestamp_micros(),
        BASE_MICROS + 3
    );
    assert_eq!(row.get::<_, f64>(4), 0.4);
    assert_eq!(row.get::<_, i32>(5), 2);
    assert_eq!(row.get::<_, f64>(6), 0.1);
    assert_eq!(row.get::<_, f64>(7), -0.3);
    assert_eq!(row.get::<_, f64>(8), 0.5);
    assert_eq!(row.get::<_, String>(9), "post 3, sadly.");
    assert_eq!(
        row.get::<_, Vec<String>>(10),
        ["question", "purchase_intent"]
    );
    assert!(row.get::<_, Vec<String>>(11).is_empty());
    assert_eq!(row.get::<_, f64>(12), 0.25);
    assert_eq!(row.get::<_, Vec<String>>(13), ["text_truncated"]);
    let alert = db
        .client
        .query_one(
            "SELECT route_path, review_required, review_topics FROM alerts LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(alert.get::<_, Vec<String>>(0)[0], "root");
    assert!(alert.get::<_, bool>(1));
    assert_eq!(alert.get::<_, Vec<String>>(2), ["legal"]);
    db.drop().await;
}

/// The writer copies a batch straight into the tables and falls back to the staged
/// insert-on-conflict path when a row is already there: a batch that mixes stored and new rows
/// must add exactly the new ones and leave the stored ones as they were.
#[tokio::test]
async fn a_batch_mixing_stored_and_new_rows_adds_only_the_new_ones() {
    use earshot_core::telemetry::{Health, Metrics};
    use earshot_sink::postgres::Postgres;
    use earshot_sink::rows::{alert_item, mention_item, Item};

    let db = TestDb::new().await;
    let stop = CancellationToken::new();
    let health = Health::new(Duration::from_secs(60));
    let mut postgres = Postgres::start(
        db.url.parse().unwrap(),
        2,
        health.ready_flag("test"),
        Metrics::default(),
        &stop,
    )
    .await
    .unwrap();
    let mention = |n: i64, text: &str| {
        mention_item(enriched(
            &format!("mixed-{n}"),
            text,
            BASE_MICROS + n,
            &["brand", "rival"],
        ))
        .unwrap()
    };
    let first: Vec<Item> = (0..4).map(|n| mention(n, "first write")).collect();
    let first_alert = alert(
        &enriched("mixed-0", "first write", BASE_MICROS, &["brand"]),
        "urgent",
    );
    let mut batch: Vec<&Item> = first.iter().collect();
    let alert_row = alert_item(first_alert.clone()).unwrap();
    batch.push(&alert_row);
    assert!(postgres
        .write(&batch, &stop)
        .await
        .iter()
        .all(Result::is_ok));
    let stored: Vec<Vec<String>> = {
        let mut tables = Vec::new();
        for table in TABLES {
            tables.push(db.snapshot(table).await);
        }
        tables
    };

    // Rows 2 and 3 again (with other text, which must not win), rows 4 to 6 new, the alert again.
    let second: Vec<Item> = (2..7).map(|n| mention(n, "second write")).collect();
    let mut batch: Vec<&Item> = second.iter().collect();
    batch.push(&alert_row);
    assert!(postgres
        .write(&batch, &stop)
        .await
        .iter()
        .all(Result::is_ok));

    assert_eq!(db.count("mentions").await, 7);
    assert_eq!(db.count("mention_matches").await, 14);
    assert_eq!(db.count("alerts").await, 1);
    for (table, before) in TABLES.iter().zip(&stored) {
        let after = db.snapshot(table).await;
        for row in before {
            assert!(after.contains(row), "{table}: the stored row {row} changed");
        }
    }
    let texts = db
        .client
        .query(
            "SELECT native_id, text FROM mentions ORDER BY native_id",
            &[],
        )
        .await
        .unwrap();
    let texts: Vec<(String, String)> = texts.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(texts[3], ("mixed-3".to_owned(), "first write".to_owned()));
    assert_eq!(texts[4], ("mixed-4".to_owned(), "second write".to_owned()));
    db.drop().await;
}

/// The enricher's copy of the retraction of `native_id` (see `enriched`), deleted at
/// `deleted_at`.
fn retraction(native_id: &str, deleted_at: i64) -> EnrichedMention {
    let mut copy = enriched(native_id, "", deleted_at, &[]);
    copy.mention.deleted_at = Some(deleted_at);
    copy.mention.author.id = Some("did:plc:a".into());
    copy.signals = Signals {
        flags: vec!["retraction".into()],
        ..Signals::default()
    };
    copy
}

async fn deletion(db: &TestDb, native_id: &str) -> (String, Option<i64>) {
    let row = db
        .client
        .query_one(
            "SELECT text, deleted_at FROM mentions WHERE native_id = $1",
            &[&native_id],
        )
        .await
        .unwrap();
    (
        row.get(0),
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1)
            .map(|t| t.timestamp_micros()),
    )
}

#[tokio::test]
async fn a_retraction_marks_the_stored_mention_deleted_once_whatever_the_order() {
    let db = TestDb::new().await;
    let deleted = BASE_MICROS + HOUR_MICROS;
    let records = |sink: &RunningSink| sink.received();
    let mut runs = Vec::new();
    for run in 0..2 {
        let sink = RunningSink::start(config(&db.url, None)).await;
        // A post, then (in a later batch) its retraction.
        let mut posted = enriched(
            "post-then-delete",
            "Acme kettle broke",
            BASE_MICROS,
            &["acme"],
        );
        posted.mention.author.id = Some("did:plc:a".into());
        sink.publish_enriched(&posted).await;
        sink.wait_done(1).await;
        if run == 0 {
            assert_eq!(deletion(&db, "post-then-delete").await.1, None);
        }
        sink.publish_enriched(&retraction("post-then-delete", deleted))
            .await;
        sink.wait_done(2).await;
        // The same retraction again, seen later: the first deletion time stays.
        sink.publish_enriched(&retraction("post-then-delete", deleted + 1))
            .await;
        // A post and its retraction in one batch.
        sink.publish_enriched(&enriched(
            "same-batch",
            "Acme again",
            BASE_MICROS,
            &["acme"],
        ))
        .await;
        sink.publish_enriched(&retraction("same-batch", deleted))
            .await;
        // A retraction read before its post (they travel on different partitions).
        sink.publish_enriched(&retraction("delete-then-post", deleted))
            .await;
        sink.wait_done(6).await;
        sink.publish_enriched(&enriched(
            "delete-then-post",
            "Acme late",
            BASE_MICROS,
            &["acme"],
        ))
        .await;
        sink.wait_done(7).await;
        assert_eq!(records(&sink), 7);
        sink.stop().await.unwrap();
        runs.push(db.snapshot("mentions").await);
    }

    assert_eq!(db.count("mentions").await, 3);
    assert_eq!(
        deletion(&db, "post-then-delete").await,
        ("Acme kettle broke".to_owned(), Some(deleted)),
        "the post is kept and marked deleted at the first retraction's time"
    );
    assert_eq!(
        deletion(&db, "same-batch").await,
        ("Acme again".to_owned(), Some(deleted))
    );
    assert_eq!(
        deletion(&db, "delete-then-post").await,
        (String::new(), Some(deleted)),
        "a post read after its retraction stays deleted"
    );
    let author_id: Option<String> = db
        .client
        .query_one(
            "SELECT author_id FROM mentions WHERE native_id = 'post-then-delete'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(author_id.as_deref(), Some("did:plc:a"));
    assert_eq!(runs[0], runs[1], "replaying everything changed nothing");
    db.drop().await;
}

/// An alert routed to a team counts for that team (whoever was on call got it); an alert
/// routed to receivers counts for each receiver, as before teams existed. The alert's kind
/// is stored.
#[tokio::test]
async fn alerts_count_for_their_team_or_else_their_receivers() {
    use earshot_core::telemetry::{Health, Metrics};
    use earshot_sink::postgres::Postgres;
    use earshot_sink::rows::alert_item;

    let db = TestDb::new().await;
    let stop = CancellationToken::new();
    let health = Health::new(Duration::from_secs(60));
    let mut postgres = Postgres::start(
        db.url.parse().unwrap(),
        2,
        health.ready_flag("test"),
        Metrics::default(),
        &stop,
    )
    .await
    .unwrap();
    let mention = enriched("teams-1", "Acme outage again", BASE_MICROS, &["brand"]);
    // To the support team: one notification, delivered, to the person on call.
    let mut to_team = alert(&mention, "outage");
    to_team.team = Some("support".into());
    to_team.deliveries.truncate(1);
    to_team.deliveries[0].receiver = "care-slack".into();
    // To receivers: ops delivered, support failed.
    let mut to_receivers = alert(&mention, "influencer");
    to_receivers.deliveries[1].status = DeliveryStatus::Failed;
    let mut spike = alert(&mention, "spikes");
    spike.kind = "spike".into();
    spike.team = Some("support".into());
    spike.deliveries.clear();
    let items: Vec<_> = [to_team, to_receivers, spike]
        .into_iter()
        .map(|a| alert_item(a).unwrap())
        .collect();
    let batch: Vec<_> = items.iter().collect();
    assert!(postgres
        .write(&batch, &stop)
        .await
        .iter()
        .all(Result::is_ok));

    assert_eq!(
        view_rows(
            &db,
            "SELECT team, route, alerts, delivered FROM alerts_by_team"
        )
        .await,
        [
            "(ops,influencer,1,1)",
            "(support,influencer,1,0)",
            "(support,outage,1,1)",
            "(support,spikes,1,0)",
        ]
    );
    assert_eq!(
        view_rows(&db, "SELECT route, kind, team FROM alerts").await,
        [
            "(influencer,mention,)",
            "(outage,mention,support)",
            "(spikes,spike,support)",
        ]
    );

    // The same alerts in Parquet: `earshot report --parquet` counts them as the view does.
    let dir = std::env::temp_dir().join(format!("earshot-teams-{}", Uuid::new_v4().simple()));
    let mut files: earshot_sink::parquet::ParquetFiles<i64> =
        earshot_sink::parquet::ParquetFiles::new(&ParquetConfig {
            dir: dir.clone(),
            ..ParquetConfig::default()
        })
        .unwrap();
    let topic: Arc<str> = Arc::from("t.alerts");
    let rows: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(offset, item)| match item {
            earshot_sink::rows::Item::Alert { alert, .. } => {
                let position = earshot_sink::parquet::Position {
                    topic: topic.clone(),
                    partition: 0,
                    offset: offset as i64,
                };
                (alert, position, offset as i64)
            }
            _ => unreachable!("alert_item makes alerts"),
        })
        .collect();
    files.append(rows).unwrap();
    files.close_all().unwrap();
    let figures = earshot_sink::report::analyze(&earshot_sink::report::load_parquet(&dir).unwrap());
    let counted: Vec<(&str, &str, u64)> = figures
        .alerts_by_team
        .iter()
        .map(|r| (r.team.as_str(), r.route.as_str(), r.alerts))
        .collect();
    assert_eq!(
        counted,
        [
            ("ops", "influencer", 1),
            ("support", "influencer", 1),
            ("support", "outage", 1),
            ("support", "spikes", 1),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop().await;
}

#[tokio::test]
async fn a_mention_matching_two_watchlists_is_one_mention_with_two_matches() {
    let db = TestDb::new().await;
    let sink = RunningSink::start(config(&db.url, None)).await;
    let first = enriched(
        "two-watchlists",
        "brand vs rival",
        BASE_MICROS,
        &["brand", "rival"],
    );
    let mut second = first.clone();
    second.watchlist = "rival".into();
    sink.publish_enriched(&first).await;
    sink.publish_enriched(&second).await;
    sink.wait_done(2).await;
    // And once more in a later batch.
    sink.publish_enriched(&second).await;
    sink.wait_done(3).await;
    sink.stop().await.unwrap();

    assert_eq!(db.count("mentions").await, 1);
    let matches: Vec<String> = db
        .client
        .query(
            "SELECT watchlist FROM mention_matches WHERE mention_id = $1 ORDER BY watchlist",
            &[&first.mention.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(matches, ["brand", "rival"]);
    db.drop().await;
}

#[tokio::test]
async fn a_row_postgres_rejects_is_dead_lettered_and_the_others_are_written() {
    let db = TestDb::new().await;
    let sink = RunningSink::start(config(&db.url, None)).await;
    let good_before = enriched("nul-0", "fine", BASE_MICROS, &["brand"]);
    let bad = enriched("nul-1", "has a \0 byte", BASE_MICROS, &["brand"]);
    let good_after = enriched("nul-2", "fine too", BASE_MICROS, &["brand"]);
    for mention in [&good_before, &bad, &good_after] {
        sink.publish_enriched(mention).await;
    }
    sink.wait_done(3).await;

    let dead_letters = sink.bus.records(&sink.services.config.topics.deadletter);
    assert_eq!(
        dead_letters.len(),
        1,
        "exactly the bad record is dead-lettered"
    );
    let header = |name: &str| {
        let (_, value) = dead_letters[0]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .expect("header present");
        String::from_utf8(value.to_vec()).unwrap()
    };
    assert_eq!(header(headers::DLQ_ERROR_TYPE), "rejected");
    let reason = header(headers::DLQ_ERROR);
    assert!(
        reason.starts_with("mentions.text: "),
        "reason names table and column: {reason}"
    );
    assert_eq!(
        sink.services
            .metrics
            .sent
            .with_label_values(&["sink"])
            .get(),
        2
    );
    sink.stop().await.unwrap();

    let written: Vec<String> = db
        .client
        .query("SELECT native_id FROM mentions ORDER BY native_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(written, ["nul-0", "nul-2"]);
    assert_eq!(db.count("mention_matches").await, 2);
    db.drop().await;
}

#[tokio::test]
async fn parquet_files_appear_only_when_rolled_and_hold_every_row() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("earshot-sink-{}", db.schema));
    // A leftover of an earlier run: deleted at start.
    let leftover = dir.join("mentions/date=2024-05-01/hour=09/part-1-x.parquet.tmp");
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::write(&leftover, b"unfinished").unwrap();

    let sink = RunningSink::start(config(&db.url, Some(&dir))).await;
    let hour_10: Vec<EnrichedMention> = (0..5)
        .map(|n| enriched(&format!("pq-{n}"), "text", BASE_MICROS + n, &["brand"]))
        .collect();
    for mention in &hour_10[..3] {
        sink.publish_enriched(mention).await;
    }
    sink.wait_received(3).await;
    wait_for("an open Parquet file", || {
        !files(&dir, ".parquet.tmp").is_empty()
    })
    .await;
    assert!(!leftover.exists(), "the leftover .tmp was deleted at start");
    assert!(
        files(&dir, ".parquet").is_empty(),
        "no file is finished before it rolls"
    );
    assert!(
        !sink.bus.is_idle(),
        "records whose rows are only in a .tmp file are not acknowledged"
    );
    assert_eq!(
        db.count("mentions").await,
        3,
        "PostgreSQL committed them meanwhile"
    );

    // Two more reach roll_rows (4): the file rolls and every record completes.
    for mention in &hour_10[3..] {
        sink.publish_enriched(mention).await;
    }
    sink.wait_done(5).await;
    let finished = files(&dir, ".parquet");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert!(
        finished[0].starts_with(dir.join("mentions/date=2024-05-01/hour=10")),
        "{finished:?}"
    );
    let name = finished[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Named by topic (with this run's suffix: the in-memory bus starts at offset 0 on every
    // run), partition and offset range.
    let (topic, partition, first, last) = earshot_sink::parquet::parse_file_name(&name).unwrap();
    assert!(
        topic.starts_with(&format!("{}~", sink.services.config.topics.enriched)),
        "{name}"
    );
    assert_eq!((partition, first, last), (0, 0, 4), "{name}");
    assert_eq!(parquet_rows(&finished[0]), 5);
    assert!(files(&dir, ".parquet.tmp").is_empty());

    // Rows of another hour and an alert stay in open files until shutdown.
    let hour_11 = enriched("pq-later", "text", BASE_MICROS + HOUR_MICROS, &["brand"]);
    sink.publish_enriched(&hour_11).await;
    sink.publish_alert(&alert(&hour_10[0], "urgent")).await;
    sink.wait_received(7).await;
    wait_for("two open Parquet files", || {
        files(&dir, ".parquet.tmp").len() == 2
    })
    .await;
    assert!(!sink.bus.is_idle());
    let bus = sink.bus.clone();
    sink.stop().await.unwrap();

    assert!(
        files(&dir, ".parquet.tmp").is_empty(),
        "no .tmp remains after shutdown"
    );
    assert!(
        bus.is_idle(),
        "closing the files at shutdown completed their records"
    );
    let mentions: usize = files(&dir.join("mentions"), ".parquet")
        .iter()
        .map(|f| parquet_rows(f))
        .sum();
    let alerts: usize = files(&dir.join("alerts"), ".parquet")
        .iter()
        .map(|f| parquet_rows(f))
        .sum();
    assert_eq!((mentions, alerts), (6, 1));
    assert_eq!(
        files(&dir.join("mentions/date=2024-05-01/hour=11"), ".parquet").len(),
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop().await;
}

#[tokio::test]
async fn a_lost_connection_is_retried_and_the_batch_still_commits() {
    let db = TestDb::new().await;
    let sink = RunningSink::start(config(&db.url, None)).await;
    sink.publish_enriched(&enriched("conn-0", "before", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_done(1).await;
    // Kill the sink's connection (it carries the schema name as application_name).
    let killed: i64 = db
        .client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&db.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    sink.publish_enriched(&enriched("conn-1", "after", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_done(2).await;
    let readiness = sink.services.health.not_ready();
    sink.stop().await.unwrap();
    assert_eq!(db.count("mentions").await, 2);
    assert!(
        readiness.is_empty(),
        "ready again after reconnecting: {readiness:?}"
    );
    db.drop().await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_not_ready_and_shutdown_still_ends_the_sink() {
    // Port 1 on loopback: nothing listens there.
    let sink = RunningSink::start(config("postgres://earshot@127.0.0.1:1/earshot", None)).await;
    wait_for("the readiness check to fail", || {
        sink.services
            .health
            .not_ready()
            .iter()
            .any(|name| name == "sink: postgres reachable")
    })
    .await;
    sink.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_column_fails_the_start_naming_table_and_column() {
    let db = TestDb::new().await;
    let mut client = connect(&db.url).await;
    earshot_sink::postgres::migrate(&mut client).await.unwrap();
    db.client
        .batch_execute("ALTER TABLE mentions DROP COLUMN urgency")
        .await
        .unwrap();
    let sink = RunningSink::start(config(&db.url, None)).await;
    let error = tokio::time::timeout(Duration::from_secs(20), sink.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("mentions.urgency: column is missing"),
        "{error}"
    );
    db.drop().await;
}

/// The versions of every shipped migration, in order.
fn every_migration() -> Vec<i32> {
    earshot_sink::postgres::MIGRATIONS
        .iter()
        .map(|(version, _)| *version)
        .collect()
}

#[tokio::test]
async fn replicas_starting_together_apply_each_migration_once() {
    let db = TestDb::new().await;
    let (mut a, mut b) = (connect(&db.url).await, connect(&db.url).await);
    let (applied_a, applied_b) = tokio::join!(
        earshot_sink::postgres::migrate(&mut a),
        earshot_sink::postgres::migrate(&mut b)
    );
    let mut applied = [applied_a.unwrap(), applied_b.unwrap()];
    applied.sort();
    assert_eq!(applied, [vec![], every_migration()]);
    assert_eq!(
        db.count("earshot_schema_migrations").await,
        every_migration().len() as i64
    );
    db.drop().await;
}

#[tokio::test]
async fn with_parquet_only_records_complete_when_their_file_rolls() {
    let dir = std::env::temp_dir().join(format!(
        "earshot-sink-parquet-only-{}",
        Uuid::new_v4().simple()
    ));
    let mut config = Config::default();
    config.sink.parquet = Some(ParquetConfig {
        dir: dir.clone(),
        roll_rows: 2,
        roll_secs: 3600,
        ..ParquetConfig::default()
    });
    let sink = RunningSink::start(config).await;
    sink.publish_enriched(&enriched("only-0", "text", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_received(1).await;
    wait_for("an open Parquet file", || {
        !files(&dir, ".parquet.tmp").is_empty()
    })
    .await;
    assert!(!sink.bus.is_idle());
    sink.publish_enriched(&enriched("only-1", "text", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_done(2).await;
    sink.stop().await.unwrap();
    let finished = files(&dir, ".parquet");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(parquet_rows(&finished[0]), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Files under `dir` whose names end with `suffix` (".parquet" excludes ".parquet.tmp").
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn parquet_rows(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let collected_at = batch
            .schema()
            .field_with_name("collected_at")
            .or(batch.schema().field_with_name("created_at"))
            .unwrap()
            .data_type()
            .clone();
        assert_eq!(
            collected_at,
            arrow_schema::DataType::Timestamp(
                arrow_schema::TimeUnit::Microsecond,
                Some("UTC".into())
            ),
            "{}",
            path.display()
        );
        rows += batch.num_rows();
    }
    rows
}

async fn delivery_statuses(db: &TestDb) -> Vec<(String, i32)> {
    db.client
        .query(
            "SELECT status, attempts FROM deliveries ORDER BY receiver",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i32>(1)))
        .collect()
}

/// A delivery that failed and was delivered on a later attempt (the router retried after a
/// restart) ends as `delivered`; a replay of the old, failed record does not undo that.
#[tokio::test]
async fn a_later_successful_delivery_replaces_a_failed_one_and_never_the_reverse() {
    let db = TestDb::new().await;
    let mention = enriched("redelivered", "post", BASE_MICROS, &["brand"]);
    let delivered = alert(&mention, "urgent");
    let mut failed = delivered.clone();
    for delivery in &mut failed.deliveries {
        delivery.status = DeliveryStatus::Failed;
        delivery.attempts = 6;
        delivery.last_error = Some("POST https://hooks.example/x: HTTP 503".into());
        delivery.delivered_at = None;
    }

    // Failed first, then delivered in a later run, then the failed record replayed; and once
    // both in the same batch.
    for (records, expected) in [
        (vec![&failed], "failed"),
        (vec![&delivered], "delivered"),
        (vec![&failed], "delivered"),
        (vec![&failed, &delivered, &failed], "delivered"),
    ] {
        let sink = RunningSink::start(config(&db.url, None)).await;
        for record in &records {
            sink.publish_alert(record).await;
        }
        sink.wait_done(records.len() as u64).await;
        sink.stop().await.unwrap();
        let rows = delivery_statuses(&db).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter().all(|(status, _)| status == expected),
            "{rows:?}, expected {expected}"
        );
    }
    assert_eq!(
        delivery_statuses(&db).await[0].1,
        1,
        "the delivered attempt count is kept"
    );
    assert_eq!(db.count("alerts").await, 1);
    db.drop().await;
}

#[tokio::test]
async fn a_later_record_of_an_alert_fills_acknowledged_and_resolved_and_a_replay_never_clears_them()
{
    let db = TestDb::new().await;
    let mention = enriched("acknowledged", "post", BASE_MICROS, &["brand"]);
    let raised = alert(&mention, "urgent");
    let mut acknowledged = raised.clone();
    acknowledged.acknowledged_at = Some(BASE_MICROS + 60_000_000);
    acknowledged.acknowledged_by = Some("ana".into());
    let mut resolved = acknowledged.clone();
    resolved.resolved_at = Some(BASE_MICROS + 120_000_000);

    // Raised, acknowledged, the raised record replayed, then resolved and acknowledged
    // again in one batch: each step only fills what is still empty.
    let ack = Some(BASE_MICROS + 60_000_000);
    let done = Some(BASE_MICROS + 120_000_000);
    for (records, expected) in [
        (vec![&raised], (None, None)),
        (vec![&acknowledged], (ack, None)),
        (vec![&raised], (ack, None)),
        (vec![&resolved, &acknowledged, &raised], (ack, done)),
    ] {
        let sink = RunningSink::start(config(&db.url, None)).await;
        for record in &records {
            sink.publish_alert(record).await;
        }
        sink.wait_done(records.len() as u64).await;
        sink.stop().await.unwrap();
        let row = db
            .client
            .query_one(
                "SELECT (extract(epoch FROM acknowledged_at) * 1000000)::bigint, \
                 (extract(epoch FROM resolved_at) * 1000000)::bigint FROM alerts",
                &[],
            )
            .await
            .unwrap();
        let found: (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
        assert_eq!(found, expected);
    }
    assert_eq!(db.count("alerts").await, 1);
    db.drop().await;
}

/// Mentions and alerts with known values for the views: sentiment and spam scores on the
/// buckets' boundaries, two UTC days, alerts with and without acknowledgements, and one
/// mention deleted at its source (which would add a row to every mention view and three
/// hours to the report were it counted).
async fn seed_view_data(db: &TestDb) {
    db.client
        .batch_execute(
            "
            INSERT INTO mentions (id, native_id, source_kind, source_instance, author_handle,
                author_verified, text, created_at, collected_at, likes, reposts, replies,
                has_media, sentiment_neg, sentiment_neu, sentiment_pos, sentiment_compound,
                language_confidence, spam_score, intent, reach, urgency, enriched_at)
            SELECT id::uuid, id, 'mastodon', 'example.social', 'a', false, 't', at, at,
                0, 0, 0, false, 0, 1, 0, compound, 1, spam, intent, 0, 0, at
            FROM (VALUES
                ('00000000-0000-0000-0000-000000000001', timestamptz '2024-05-01 10:05Z', -0.05, 0.0, 'complaint'),
                ('00000000-0000-0000-0000-000000000002', timestamptz '2024-05-01 10:30Z', 0.05, 0.9, 'question'),
                ('00000000-0000-0000-0000-000000000003', timestamptz '2024-05-01 10:59:59Z', -0.0499, 0.5, 'complaint'),
                ('00000000-0000-0000-0000-000000000004', timestamptz '2024-05-01 11:00Z', 0.0499, 0.1, 'complaint'),
                ('00000000-0000-0000-0000-000000000005', timestamptz '2024-05-02 00:10Z', 0.9, 0.0, 'praise'),
                ('00000000-0000-0000-0000-000000000006', timestamptz '2024-05-02 03:00Z', -0.9, 0.9, 'complaint')
            ) AS v(id, at, compound, spam, intent);
            -- Deleted at its source: kept, flagged, and in no view nor the report.
            UPDATE mentions SET deleted_at = timestamptz '2024-05-02 04:00Z'
            WHERE id = '00000000-0000-0000-0000-000000000006';
            INSERT INTO mention_matches (mention_id, watchlist, relevance, clause) VALUES
                ('00000000-0000-0000-0000-000000000001', 'a', 1, 'a'),
                ('00000000-0000-0000-0000-000000000002', 'a', 1, 'a'),
                ('00000000-0000-0000-0000-000000000002', 'b', 1, 'b'),
                ('00000000-0000-0000-0000-000000000003', 'b', 1, 'b'),
                ('00000000-0000-0000-0000-000000000004', 'a', 1, 'a'),
                ('00000000-0000-0000-0000-000000000005', 'a', 1, 'a'),
                ('00000000-0000-0000-0000-000000000006', 'a', 1, 'a'),
                ('00000000-0000-0000-0000-000000000006', 'b', 1, 'b');
            INSERT INTO alerts (id, created_at, route, watchlist, mention_id, mention_text,
                author_handle, score_name, score, threshold, mention_collected_at, acknowledged_at)
            SELECT id::uuid, timestamptz '2024-05-01 10:00Z', route, 'a',
                '00000000-0000-0000-0000-000000000001', 't', 'a', 'urgency', 1, 0.5,
                timestamptz '2024-05-01 10:00Z', timestamptz '2024-05-01 10:00Z' + ack
            FROM (VALUES
                ('00000000-0000-0000-0000-0000000000a1', 'r1', interval '60 seconds'),
                ('00000000-0000-0000-0000-0000000000a2', 'r1', interval '300 seconds'),
                ('00000000-0000-0000-0000-0000000000a3', 'r2', NULL),
                ('00000000-0000-0000-0000-0000000000a4', 'r2', interval '10 seconds'),
                ('00000000-0000-0000-0000-0000000000a5', 'r3', NULL)
            ) AS v(id, route, ack);
            INSERT INTO deliveries (id, alert_id, channel, receiver, status, attempts)
            SELECT gen_random_uuid(), alert_id::uuid, 'webhook', receiver, status, 1
            FROM (VALUES
                ('00000000-0000-0000-0000-0000000000a1', 'ops', 'delivered'),
                ('00000000-0000-0000-0000-0000000000a2', 'ops', 'failed'),
                ('00000000-0000-0000-0000-0000000000a3', 'ops', 'delivered'),
                ('00000000-0000-0000-0000-0000000000a3', 'sales', 'delivered'),
                ('00000000-0000-0000-0000-0000000000a4', 'sales', 'delivered')
            ) AS v(alert_id, receiver, status);
            ",
        )
        .await
        .unwrap();
}

/// Every row of a view as text, each column formatted by PostgreSQL (floats rounded to
/// 4 decimals, times in UTC), sorted.
async fn view_rows(db: &TestDb, query: &str) -> Vec<String> {
    db.client
        .batch_execute("SET TIME ZONE 'UTC'")
        .await
        .unwrap();
    let mut rows: Vec<String> = db
        .client
        .query(&format!("SELECT row(v.*)::text FROM ({query}) v"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn the_analytics_views_give_the_expected_rows_on_known_data() {
    let db = TestDb::new().await;
    let mut config = config(&db.url, None);
    config.sink.postgres.as_mut().unwrap().url = Some(db.url.clone());
    assert_eq!(
        earshot_sink::migrate(&config).await.unwrap(),
        every_migration()
    );
    assert_eq!(
        earshot_sink::migrate(&config).await.unwrap(),
        Vec::<i32>::new(),
        "a second --migrate applies nothing"
    );
    seed_view_data(&db).await;
    assert_eq!(
        view_rows(
            &db,
            "SELECT id, deleted_at FROM mentions WHERE deleted_at IS NOT NULL"
        )
        .await,
        [r#"(00000000-0000-0000-0000-000000000006,"2024-05-02 04:00:00+00")"#],
        "the deleted mention's row is kept, flagged"
    );

    assert_eq!(
        view_rows(
            &db,
            "SELECT watchlist, hour, sentiment, intent, mentions FROM mentions_hourly"
        )
        .await,
        [
            r#"(a,"2024-05-01 10:00:00+00",negative,complaint,1)"#,
            r#"(a,"2024-05-01 10:00:00+00",positive,question,1)"#,
            r#"(a,"2024-05-01 11:00:00+00",neutral,complaint,1)"#,
            r#"(a,"2024-05-02 00:00:00+00",positive,praise,1)"#,
            r#"(b,"2024-05-01 10:00:00+00",neutral,complaint,1)"#,
            r#"(b,"2024-05-01 10:00:00+00",positive,question,1)"#,
        ]
    );
    assert_eq!(
        view_rows(
            &db,
            "SELECT day, watchlist, mentions, round(share::numeric, 4) FROM share_of_voice"
        )
        .await,
        [
            r#"("2024-05-01 00:00:00+00",a,3,0.6000)"#,
            r#"("2024-05-01 00:00:00+00",b,2,0.4000)"#,
            r#"("2024-05-02 00:00:00+00",a,1,1.0000)"#,
        ]
    );
    assert_eq!(
        view_rows(
            &db,
            "SELECT day, watchlist, mentions, spam, round(share::numeric, 4) FROM spam_share"
        )
        .await,
        [
            r#"("2024-05-01 00:00:00+00",a,3,1,0.3333)"#,
            r#"("2024-05-01 00:00:00+00",b,2,2,1.0000)"#,
            r#"("2024-05-02 00:00:00+00",a,1,0,0.0000)"#,
        ]
    );
    assert_eq!(
        view_rows(
            &db,
            "SELECT team, route, alerts, delivered FROM alerts_by_team"
        )
        .await,
        [
            r#"("(none)",r3,1,0)"#,
            "(ops,r1,2,1)",
            "(ops,r2,1,1)",
            "(sales,r2,2,2)",
        ]
    );
    assert_eq!(
        view_rows(
            &db,
            "SELECT team, alerts, acknowledged, round(p50_secs::numeric, 4), \
             round(p90_secs::numeric, 4), round(p99_secs::numeric, 4) FROM response_times"
        )
        .await,
        [
            r#"("(none)",1,0,,,)"#,
            "(ops,3,2,180.0000,276.0000,297.6000)",
            "(sales,2,1,10.0000,10.0000,10.0000)",
        ]
    );
    db.drop().await;
}

#[tokio::test]
async fn the_report_from_postgres_agrees_with_the_views() {
    use earshot_sink::report::{self, ResponseTimes, TeamRouteAlerts};
    let db = TestDb::new().await;
    let config = config(&db.url, None);
    earshot_sink::migrate(&config).await.unwrap();
    seed_view_data(&db).await;

    let dataset = report::load_postgres(&db.url.parse().unwrap())
        .await
        .unwrap();
    let figures = report::analyze(&dataset);
    assert_eq!(figures.mentions, 5);
    assert_eq!(figures.hours.len(), 15, "10:00 on May 1 to 00:00 on May 2");
    let summary: Vec<(&str, u64, u64, u64, u64, u64)> = figures
        .watchlists
        .iter()
        .map(|w| {
            (
                w.watchlist.as_str(),
                w.mentions,
                w.negative,
                w.neutral,
                w.positive,
                w.spam,
            )
        })
        .collect();
    assert_eq!(summary, [("a", 4, 1, 1, 2, 1), ("b", 2, 0, 1, 1, 2)]);
    assert_eq!(figures.watchlists[0].hourly[0].mentions, 2);
    assert!((figures.watchlists[0].share_of_voice - 4.0 / 6.0).abs() < 1e-12);
    let team_route = |team: &str, route: &str, alerts| TeamRouteAlerts {
        team: team.into(),
        route: route.into(),
        alerts,
    };
    assert_eq!(
        figures.alerts_by_team,
        [
            team_route("(none)", "r3", 1),
            team_route("ops", "r1", 2),
            team_route("ops", "r2", 1),
            team_route("sales", "r2", 2),
        ]
    );
    let rounded = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
    let times: Vec<ResponseTimes> = figures
        .response_times
        .into_iter()
        .map(|r| ResponseTimes {
            p50_secs: rounded(r.p50_secs),
            p90_secs: rounded(r.p90_secs),
            p99_secs: rounded(r.p99_secs),
            ..r
        })
        .collect();
    let response = |team: &str, alerts, acknowledged, p: Option<(f64, f64, f64)>| ResponseTimes {
        team: team.into(),
        alerts,
        acknowledged,
        p50_secs: p.map(|p| p.0),
        p90_secs: p.map(|p| p.1),
        p99_secs: p.map(|p| p.2),
    };
    assert_eq!(
        times,
        [
            response("(none)", 1, 0, None),
            response("ops", 3, 2, Some((180.0, 276.0, 297.6))),
            response("sales", 2, 1, Some((10.0, 10.0, 10.0))),
        ],
        "the same figures as the response_times view"
    );
    db.drop().await;
}

/// A TCP forwarder to PostgreSQL that can be taken down (open connections cut, new ones
/// closed at once) and brought back: the network fault between the sink and its database.
struct Outage {
    port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Outage {
    async fn start(target: String) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cuts) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Outage { port, down, cut }
    }

    fn take_down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn bring_back(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn postgres_going_down_mid_run_holds_offsets_fails_readiness_and_catches_up() {
    let db = TestDb::new().await;
    let config: tokio_postgres::Config = db.url.parse().unwrap();
    let (host, port) = match (&config.get_hosts()[0], config.get_ports()[0]) {
        (tokio_postgres::config::Host::Tcp(host), port) => (host.clone(), port),
        _ => panic!("DATABASE_URL must be a TCP address for this test"),
    };
    let outage = Outage::start(format!("{host}:{port}")).await;
    let url = db.url.replacen(
        &format!("{host}:{port}"),
        &format!("127.0.0.1:{}", outage.port),
        1,
    );
    assert_ne!(url, db.url);
    let sink = RunningSink::start(config_for(&url)).await;
    sink.publish_enriched(&enriched("down-0", "before", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_done(1).await;

    outage.take_down();
    for n in 1..4 {
        let mention = enriched(&format!("down-{n}"), "during", BASE_MICROS, &["brand"]);
        sink.publish_enriched(&mention).await;
    }
    sink.wait_received(4).await;
    wait_for("the readiness check to fail", || {
        sink.services
            .health
            .not_ready()
            .iter()
            .any(|name| name == "sink: postgres reachable")
    })
    .await;
    assert!(
        !sink.bus.is_idle(),
        "no offset moves while PostgreSQL is down"
    );
    assert_eq!(
        db.count("mentions").await,
        1,
        "nothing was committed meanwhile"
    );
    let errors = sink
        .services
        .metrics
        .errors
        .with_label_values(&["sink", "postgres"])
        .get();
    assert!(errors >= 1, "failed attempts are counted");

    outage.bring_back();
    sink.wait_done(4).await;
    let readiness = sink.services.health.not_ready();
    assert!(
        sink.bus
            .records(&sink.services.config.topics.deadletter)
            .is_empty(),
        "an outage dead-letters nothing"
    );
    sink.stop().await.unwrap();
    assert_eq!(db.count("mentions").await, 4);
    assert_eq!(db.count("mention_matches").await, 4);
    assert!(readiness.is_empty(), "ready again: {readiness:?}");
    db.drop().await;
}

#[tokio::test]
async fn records_the_schema_cannot_take_are_dead_lettered_with_the_reason() {
    let db = TestDb::new().await;
    let sink = RunningSink::start(config_for(&db.url)).await;
    // Too long: a match key over the b-tree index's limit (PostgreSQL: program limit exceeded).
    // (Random, so that PostgreSQL cannot compress it under the limit.)
    let long_name: String = (0..200)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let too_long = enriched("long-0", "fine", BASE_MICROS, &[&long_name]);
    // Bad encoding: a text that is not UTF-8, which the Avro decoder refuses.
    let valid = enriched("utf8-0", "caf\u{e9} ok", BASE_MICROS, &["brand"]);
    let mut bad_utf8 = sink.services.codecs.enriched.encode(&valid).unwrap();
    let at = bad_utf8
        .windows(3)
        .position(|w| w == "caf".as_bytes())
        .unwrap();
    bad_utf8[at + 3] = 0xFF; // the first byte of 'é' becomes an invalid UTF-8 byte
    let good = enriched("fine-0", "fine", BASE_MICROS, &["brand"]);

    sink.publish_enriched(&too_long).await;
    sink.publish(&sink.services.config.topics.enriched, bad_utf8)
        .await;
    sink.publish_enriched(&good).await;
    sink.wait_done(3).await;

    let dead_letters = sink.bus.records(&sink.services.config.topics.deadletter);
    let reasons: Vec<(String, String)> = dead_letters
        .iter()
        .map(|record| {
            let header = |name: &str| {
                record
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            (header(headers::DLQ_ERROR_TYPE), header(headers::DLQ_ERROR))
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let reason = |kind: &str| {
        reasons
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_else(|| panic!("no {kind} dead letter in {reasons:?}"))
    };
    let rejected = reason("rejected");
    assert!(
        rejected.starts_with("mention_matches.") && rejected.contains("index row"),
        "names the table and PostgreSQL's reason: {rejected}"
    );
    assert!(
        reason("decode").contains("not valid utf-8"),
        "names the encoding problem: {reasons:?}"
    );
    sink.stop().await.unwrap();
    let written: Vec<String> = db
        .client
        .query("SELECT native_id FROM mentions ORDER BY native_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        written,
        ["fine-0"],
        "the rejected mention left no partial row"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_postgres_too_slow_to_answer_is_not_ready_and_the_batch_commits_once_it_answers() {
    let db = TestDb::new().await;
    let sink = RunningSink::start(config_for(&db.url)).await;
    sink.publish_enriched(&enriched("slow-0", "before", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_done(1).await;

    // Another session holds the table: the sink's next write waits longer than its 15 s
    // attempt timeout, gives the connection up, and retries.
    let (mut locker, connection) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE mentions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    sink.publish_enriched(&enriched("slow-1", "during", BASE_MICROS, &["brand"]))
        .await;
    sink.wait_received(2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !sink
        .services
        .health
        .not_ready()
        .iter()
        .any(|name| name == "sink: postgres reachable")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed while PostgreSQL did not answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !sink.bus.is_idle(),
        "the waiting record is not acknowledged"
    );
    lock.rollback().await.unwrap();

    sink.wait_done(2).await;
    let readiness = sink.services.health.not_ready();
    sink.stop().await.unwrap();
    assert_eq!(db.count("mentions").await, 2);
    assert_eq!(db.count("mention_matches").await, 2);
    assert!(readiness.is_empty(), "ready again: {readiness:?}");
    db.drop().await;
}
