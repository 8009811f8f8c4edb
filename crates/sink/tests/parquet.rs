//! The Parquet files as their readers see them: read back with pyarrow (from PyPI; scripts/test
//! installs it), after normal runs and after a simulated crash and replay. Exactly once: every
//! record's row is in exactly one finished file, however often its records are replayed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use earshot_core::bus::OutRecord;
use earshot_core::config::ParquetConfig;
use earshot_core::model::{
    Author, Engagement, EnrichedMention, Mention, SentenceSentiment, Sentiment, Signals, Source,
    WatchlistMatch,
};
use earshot_core::{Config, Services};
use earshot_sink::parquet::{remove_leftovers, ParquetFiles, Position};
use earshot_sink::rows::{mention_item, Item, MentionRow};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const HOUR_MICROS: i64 = 3_600_000_000;
/// 2024-05-01T10:00:00Z.
const BASE_MICROS: i64 = 1_714_557_600_000_000;

fn enriched(n: usize, collected_at: i64, watchlists: &[&str]) -> EnrichedMention {
    let native_id = format!("pq-{n:02}");
    EnrichedMention {
        mention: Mention {
            id: earshot_core::model::mention_id("mastodon", &native_id),
            native_id: native_id.clone(),
            source: Source {
                kind: "mastodon".into(),
                instance: "example.social".into(),
            },
            url: None,
            author: Author {
                handle: "a".into(),
                name: None,
                followers: None,
                verified: false,
                id: None,
            },
            text: format!("post {n}"),
            lang_hint: None,
            created_at: collected_at,
            collected_at,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        },
        watchlist: watchlists.first().copied().unwrap_or_default().into(),
        matches: watchlists
            .iter()
            .map(|w| WatchlistMatch {
                watchlist: (*w).into(),
                relevance: 1.0,
                clause: (*w).into(),
                spans: vec![],
            })
            .collect(),
        sentiment: Sentiment {
            neg: 0.0,
            neu: 0.5,
            pos: 0.5,
            compound: n as f64 / 100.0,
        },
        sentences: SentenceSentiment {
            count: n as i32,
            mean_compound: 0.0,
            min_compound: -0.5,
            max_compound: 0.5,
            most_negative: format!("sentence {n}"),
        },
        language: Some("en".into()),
        language_confidence: 1.0,
        spam_score: 0.0,
        intent: "question".into(),
        reach: 1,
        urgency: 0.0,
        signals: Signals {
            intents: vec!["question".into()],
            reach_score: 0.5,
            ..Signals::default()
        },
        enriched_at: collected_at,
    }
}

fn mention_row(enriched: EnrichedMention) -> MentionRow {
    match mention_item(enriched).unwrap() {
        Item::Mention { mention, .. } => mention,
        Item::Alert { .. } => unreachable!(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("earshot-{name}-{}", Uuid::new_v4().simple()))
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path.to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

/// What pyarrow reads under `dir` (see parquet_summary.py).
fn read_with_pyarrow(dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parquet_summary.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("python3 runs (scripts/test installs pyarrow from PyPI)");
    assert!(
        output.status.success(),
        "pyarrow could not read {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn column<'a>(summary: &'a Value, table: &str, name: &str) -> Vec<&'a Value> {
    summary[table]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row[name])
        .collect()
}

fn file_names(summary: &Value, table: &str) -> Vec<String> {
    summary[table]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// Appends `rows[range]` at offsets equal to their index, in batches of 2; returns the offsets
/// released (already written, or in a file that rolled).
fn append(
    files: &mut ParquetFiles<i64>,
    rows: &[MentionRow],
    range: std::ops::Range<usize>,
) -> Vec<i64> {
    let topic: Arc<str> = Arc::from("t.enriched");
    let mut released = Vec::new();
    let indexes: Vec<usize> = range.collect();
    for chunk in indexes.chunks(2) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let position = Position {
                    topic: topic.clone(),
                    partition: 0,
                    offset: i as i64,
                };
                (&rows[i], position, i as i64)
            })
            .collect();
        released.extend(files.append(batch).unwrap());
    }
    released.sort();
    released
}

/// `earshot report --parquet` leaves out a mention whose retraction row is in the files,
/// whichever file holds it, as the PostgreSQL views leave out deleted mentions.
#[test]
fn the_report_from_parquet_leaves_out_retracted_mentions() {
    let dir = temp_dir("parquet-report-retraction");
    let config = ParquetConfig {
        dir: dir.clone(),
        roll_rows: 2,
        roll_secs: 3600,
        ..ParquetConfig::default()
    };
    let kept = enriched(1, BASE_MICROS + 1, &["brand"]);
    let retracted = enriched(2, BASE_MICROS + 2, &["brand"]);
    let mut retraction = enriched(2, BASE_MICROS + 3, &[]);
    retraction.mention.text = String::new();
    retraction.mention.deleted_at = Some(BASE_MICROS + 3);
    let kept_id = kept.mention.id;
    // The posts roll into one file, the retraction into the next.
    let rows = vec![
        mention_row(kept),
        mention_row(retracted),
        mention_row(retraction),
    ];
    let mut files = ParquetFiles::new(&config).unwrap();
    let mut released = append(&mut files, &rows, 0..3);
    released.extend(files.close_all().unwrap());
    released.sort();
    assert_eq!(released, [0, 1, 2]);

    let dataset = earshot_sink::report::load_parquet(&dir).unwrap();
    let ids: Vec<Uuid> = dataset.mentions.iter().map(|m| m.id).collect();
    assert_eq!(ids, [kept_id], "the retracted post is left out");
    let figures = earshot_sink::report::analyze(&dataset);
    assert_eq!(figures.mentions, 1);
    assert_eq!(figures.watchlists[0].mentions, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Parquet is append-only: a retraction is a row of its own, with `deleted_at` set, that
/// readers join to the post by `id`.
#[test]
fn a_retraction_is_a_row_with_its_deletion_time_and_the_authors_id() {
    let dir = temp_dir("parquet-retraction");
    let config = ParquetConfig {
        dir: dir.clone(),
        roll_rows: 2,
        roll_secs: 3600,
        ..ParquetConfig::default()
    };
    let post = enriched(1, BASE_MICROS + 1, &["brand"]);
    let mut retraction = enriched(1, BASE_MICROS + 2, &[]);
    retraction.mention.text = String::new();
    retraction.mention.deleted_at = Some(BASE_MICROS + 2);
    retraction.mention.author.id = Some("did:plc:a".into());
    let rows = vec![mention_row(post), mention_row(retraction)];
    let mut files = ParquetFiles::new(&config).unwrap();
    let mut released = append(&mut files, &rows, 0..2);
    released.extend(files.close_all().unwrap());
    released.sort();
    assert_eq!(released, [0, 1]);

    let summary = read_with_pyarrow(&dir);
    let mut found: Vec<(String, Value, Value)> = summary["mentions"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap().to_owned(),
                row["deleted_at"].clone(),
                row["author_id"].clone(),
            )
        })
        .collect();
    found.sort_by_key(|(_, deleted_at, _)| deleted_at.is_string());
    let id = rows[0].id.to_string();
    assert_eq!(
        found,
        [
            (id.clone(), Value::Null, Value::Null),
            (
                id,
                Value::from("2024-05-01 10:00:00.000002+00:00"),
                Value::from("did:plc:a")
            ),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_and_full_replay_leave_every_row_exactly_once() {
    let dir = temp_dir("parquet-crash");
    let config = ParquetConfig {
        dir: dir.clone(),
        roll_rows: 4,
        roll_secs: 3600,
        ..ParquetConfig::default()
    };
    // Offsets 0..8 at 10:xx, 8..10 at 11:xx.
    let rows: Vec<MentionRow> = (0..10)
        .map(|n| {
            let hour = if n < 8 { 0 } else { HOUR_MICROS };
            mention_row(enriched(n, BASE_MICROS + hour + n as i64, &["brand"]))
        })
        .collect();

    // Run 1: two files of hour 10 roll at 4 rows; hour 11's rows stay in a .tmp file when the
    // process dies (the files are dropped, never closed).
    let mut run_1 = ParquetFiles::new(&config).unwrap();
    assert_eq!(append(&mut run_1, &rows, 0..10), (0..8).collect::<Vec<_>>());
    drop(run_1);
    assert_eq!(files(&dir, ".parquet.tmp").len(), 1);

    // Run 2 (restart): the .tmp is deleted, no offset was committed, everything is replayed.
    assert_eq!(remove_leftovers(&dir).unwrap(), 1);
    let mut run_2 = ParquetFiles::new(&config).unwrap();
    assert_eq!(run_2.finished_files(), 2);
    assert_eq!(
        append(&mut run_2, &rows, 0..10),
        (0..8).collect::<Vec<_>>(),
        "records in finished files complete at once"
    );
    assert_eq!(run_2.close_all().unwrap(), [8, 9]);

    // Run 3: a replay of a middle range writes nothing at all.
    let mut run_3 = ParquetFiles::new(&config).unwrap();
    assert_eq!(
        append(&mut run_3, &rows, 2..10),
        (2..10).collect::<Vec<_>>()
    );
    assert_eq!(run_3.waiting(), 0);
    assert!(run_3.close_all().unwrap().is_empty());

    let summary = read_with_pyarrow(&dir);
    assert_eq!(
        file_names(&summary, "mentions"),
        [
            "date=2024-05-01/hour=10/part-t.enriched-0-0-3.parquet",
            "date=2024-05-01/hour=10/part-t.enriched-0-4-7.parquet",
            "date=2024-05-01/hour=11/part-t.enriched-0-8-9.parquet",
        ]
    );
    let mut native_ids: Vec<&str> = column(&summary, "mentions", "native_id")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    native_ids.sort();
    let expected: Vec<String> = (0..10).map(|n| format!("pq-{n:02}")).collect();
    assert_eq!(native_ids, expected, "every row exactly once");
    let hours: Vec<&str> = summary["mentions"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["native_id"] == "pq-09")
        .map(|r| r["hour"].as_str().unwrap())
        .collect();
    assert_eq!(hours, ["11"]);

    // `earshot report --parquet` reads the same files.
    let dataset = earshot_sink::report::load_parquet(&dir).unwrap();
    let figures = earshot_sink::report::analyze(&dataset);
    assert_eq!(figures.mentions, 10);
    assert_eq!(figures.watchlists.len(), 1);
    assert_eq!(figures.watchlists[0].watchlist, "brand");
    let per_hour: Vec<u64> = figures.watchlists[0]
        .hourly
        .iter()
        .map(|h| h.mentions)
        .collect();
    assert_eq!(per_hour, [8, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Files roll by size as well as by rows and time: with `roll_rows` out of reach, a file that
/// grows past `roll_bytes` is finished and its records released.
#[test]
fn a_file_rolls_when_it_reaches_roll_bytes() {
    let dir = temp_dir("parquet-bytes");
    let config = ParquetConfig {
        dir: dir.clone(),
        roll_rows: 1_000_000,
        roll_bytes: 16 * 1024,
        ..ParquetConfig::default()
    };
    // About 2 KiB of text per row that Snappy cannot shrink much: 60 rows are ~120 KiB.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let rows: Vec<MentionRow> = (0..60)
        .map(|n| {
            let mut em = enriched(n, BASE_MICROS + n as i64, &["brand"]);
            em.mention.text = (0..300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("{:x} ", state % 0xffff_ffff)
                })
                .collect();
            mention_row(em)
        })
        .collect();
    let mut files_1 = ParquetFiles::new(&config).unwrap();
    let released = append(&mut files_1, &rows, 0..60);
    assert!(
        released.len() >= 40,
        "files over 16 KiB roll as they fill: {} of 60 records released",
        released.len()
    );
    let rest = files_1.close_all().unwrap();
    assert_eq!(released.len() + rest.len(), 60);
    let finished = files(&dir, ".parquet");
    assert!(finished.len() >= 3, "{finished:?}");
    for name in &finished {
        let size = std::fs::metadata(name).unwrap().len();
        assert!(size < 64 * 1024, "{name} is {size} bytes");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Parquet-only sink on the test Kafka with this run's topics.
fn kafka_config(run: &str, dir: &Path) -> Config {
    let mut config = Config::default();
    config.kafka.bootstrap_servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    );
    config.kafka.group_prefix = run.to_owned();
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");
    config.telemetry.listen = "127.0.0.1:0".parse().unwrap();
    // Files roll by time too: a partition's last rows complete within a second.
    config.sink.parquet = Some(ParquetConfig {
        dir: dir.to_owned(),
        roll_rows: 3,
        roll_secs: 1,
        ..ParquetConfig::default()
    });
    config
}

/// Runs the sink in consumer group `<group_prefix>-sink` until it has completed `records`
/// records, then stops it.
async fn run_sink_until(config: &Config, records: u64) {
    let services = Services::kafka(config.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(earshot_sink::run_with(services.clone(), shutdown.clone()));
    let sent = || services.metrics.sent.with_label_values(&["sink"]).get();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sent() < records {
        assert!(!task.is_finished(), "the sink stopped");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink completed {} of {records} records in 60 s",
            sent()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replay_from_kafka_writes_no_row_twice_and_pyarrow_reads_every_column() {
    let run = format!("pq_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let dir = temp_dir("parquet-sink");
    let mut config = kafka_config(&run, &dir);
    let topic = config.topics.enriched.clone();
    let mentions: Vec<EnrichedMention> = (0..7)
        .map(|n| enriched(n, BASE_MICROS + n as i64, &["brand", "rival"]))
        .collect();
    let services = Services::kafka(config.clone()).await.unwrap();
    let publisher = services.publisher("parquet-test-producer").unwrap();
    let mut acks = Vec::new();
    for mention in &mentions {
        let record = OutRecord {
            topic: Arc::from(topic.as_str()),
            key: None,
            payload: Bytes::from(services.codecs.enriched.encode(mention).unwrap()),
            headers: vec![],
        };
        acks.push(publisher.publish(record).await);
    }
    for ack in acks {
        ack.await.expect("the broker acknowledges");
    }

    run_sink_until(&config, 7).await;
    let first = read_with_pyarrow(&dir);
    // A second group reads the topic again from the start: what a crash before any offset
    // was committed replays.
    config.kafka.group_prefix = format!("{run}-replay");
    run_sink_until(&config, 7).await;
    let second = read_with_pyarrow(&dir);
    assert_eq!(
        first, second,
        "the replay changed the files (written_at would differ)"
    );

    let names = file_names(&second, "mentions");
    for name in &names {
        let name = name
            .strip_prefix("date=2024-05-01/hour=10/")
            .unwrap_or_else(|| panic!("{name} is in the partition of 10:00"));
        let (file_topic, ..) = earshot_sink::parquet::parse_file_name(name).unwrap();
        assert_eq!(file_topic, topic);
    }
    assert_eq!(column(&second, "mentions", "id").len(), 7, "{names:?}");
    let row = second["mentions"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["native_id"] == "pq-05")
        .unwrap()
        .clone();
    assert_eq!(row["id"], mentions[5].mention.id.to_string());
    assert_eq!(row["date"], "2024-05-01");
    assert_eq!(row["hour"], "10");
    assert_eq!(row["sentiment_compound"], 0.05);
    assert_eq!(row["sentences_count"], 5);
    assert_eq!(row["sentences_most_negative"], "sentence 5");
    assert_eq!(row["watchlists"], serde_json::json!(["brand", "rival"]));
    assert_eq!(row["intents"], serde_json::json!(["question"]));
    assert_eq!(row["reach_score"], 0.5);
    assert_eq!(row["input_flags"], serde_json::json!([]));
    assert_eq!(row["collected_at"], "2024-05-01 10:00:00.000005+00:00");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn rows_in(path: &str) -> usize {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|batch| batch.unwrap().num_rows())
        .sum()
}

#[test]
fn records_read_again_while_their_file_is_open_add_no_row_and_earlier_ones_start_a_new_file() {
    let dir = temp_dir("parquet-reread");
    let config = ParquetConfig {
        dir: dir.clone(),
        roll_rows: 100,
        roll_secs: 3600,
        ..ParquetConfig::default()
    };
    let rows: Vec<MentionRow> = (0..8)
        .map(|n| mention_row(enriched(n, BASE_MICROS + n as i64, &["brand"])))
        .collect();
    let mut files = ParquetFiles::new(&config).unwrap();
    let at = |offset: i64| Position {
        topic: Arc::from("t.enriched"),
        partition: 0,
        offset,
    };

    assert!(files
        .append(vec![(&rows[5], at(5), 5), (&rows[6], at(6), 6)])
        .unwrap()
        .is_empty());
    // After a rebalance, offset 5 is read again while its file is open: it waits for that
    // file and adds no row.
    assert!(files
        .append(vec![(&rows[5], at(5), 50)])
        .unwrap()
        .is_empty());
    assert_eq!(files.waiting(), 3);
    // Offset 3 (never written) comes after: the open file is finished first, so that its name
    // keeps covering only the offsets it holds.
    let mut released = files.append(vec![(&rows[3], at(3), 3)]).unwrap();
    released.sort();
    assert_eq!(released, [5, 6, 50]);
    assert_eq!(files.close_all().unwrap(), [3]);

    let partition = dir.join("mentions/date=2024-05-01/hour=10");
    let names: Vec<String> = files_named(&partition);
    assert_eq!(
        names,
        [
            "part-t.enriched-0-3-3.parquet",
            "part-t.enriched-0-5-6.parquet"
        ]
    );
    assert_eq!(
        rows_in(&partition.join(&names[1]).to_string_lossy()),
        2,
        "offset 5 is in its file once"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn files_named(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
