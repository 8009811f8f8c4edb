//! Loading mentions into PostgreSQL: the sink's write path (binary `COPY` into a staging table,
//! then `INSERT … ON CONFLICT DO NOTHING`, one transaction per batch) against `psql \copy`
//! loading the same rows from CSV straight into the same tables, measured in the same run.
//!
//! `DATABASE_URL=… cargo bench -p earshot-sink --bench postgres_load [-- MENTIONS [BATCH
//! [CONNECTIONS]]]` (defaults 200,000 mentions, batches of 2,000 as `sink.postgres.batch_size`,
//! the sink with 2 and with 1 connection(s), as `sink.postgres.connections`). Needs `psql`.
//! Each path runs five times into freshly truncated tables of a schema of its own, rotating
//! which goes first; the ratio is taken per round (all paths under the same machine load) and
//! its median reported. Both load `mentions` and `mention_matches` (1.5
//! matches per mention).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use earshot_core::model::{
    mention_id, Author, Engagement, EnrichedMention, Mention, SentenceSentiment, Sentiment,
    Signals, Source, Span, WatchlistMatch,
};
use earshot_core::telemetry::{Health, Metrics};
use earshot_sink::postgres::{Postgres, MENTIONS, MENTION_MATCHES};
use earshot_sink::rows::{mention_item, Item, MatchRow, MentionRow};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Odd, so that the median is one round.
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mentions: usize = args
        .first()
        .map_or(200_000, |a| a.parse().expect("MENTIONS"));
    let batch: usize = args.get(1).map_or(2_000, |a| a.parse().expect("BATCH"));
    let connections: Vec<usize> = args.get(2).map_or(vec![2, 1], |a| {
        a.split(',')
            .map(|n| n.parse().expect("CONNECTIONS: a comma-separated list"))
            .collect()
    });
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: start PostgreSQL with scripts/postgres start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&url, mentions, batch, &connections));
}

async fn bench(url: &str, count: usize, batch: usize, connections: &[usize]) {
    let items: Vec<Item> = (0..count)
        .map(|n| mention_item(enriched(n)).unwrap())
        .collect();
    let matches: usize = items
        .iter()
        .map(|item| match item {
            Item::Mention { matches, .. } => matches.len(),
            Item::Alert { .. } => 0,
        })
        .sum();
    println!("{count} mentions, {matches} matches, batches of {batch}, {ROUNDS} rounds, sink with {connections:?} connection(s)");

    let admin = connect(url).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sink_schema = format!("bench_sink_{}", &run[..12]);
    let copy_schema = format!("bench_copy_{}", &run[..12]);
    for schema in [&sink_schema, &copy_schema] {
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let mut client = connect(&schema_url(url, schema)).await;
        earshot_sink::postgres::migrate(&mut client).await.unwrap();
    }

    // The CSV files psql loads: written once, outside the timing.
    let dir = std::env::temp_dir().join(format!("earshot-bench-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mentions_csv = dir.join("mentions.csv");
    let matches_csv = dir.join("mention_matches.csv");
    write_csv(&mentions_csv, &items, |item, out| {
        if let Item::Mention { mention, .. } = item {
            mention_csv(mention, out);
        }
    });
    write_csv(&matches_csv, &items, |item, out| {
        if let Item::Mention { matches, .. } = item {
            for m in matches {
                match_csv(m, out);
            }
        }
    });

    // Path 0 is `psql \copy`; path 1 + i is the sink with `connections[i]` connections.
    let paths = 1 + connections.len();
    let name = |path: usize| match path {
        0 => "psql \\copy".to_owned(),
        p => format!("sink, {} connection(s)", connections[p - 1]),
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); paths];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); paths];
    for round in 0..ROUNDS {
        // Rotate which path goes first, so that none always meets another's leftovers
        // (autovacuum, checkpoints).
        let mut elapsed = vec![Duration::ZERO; paths];
        for step in 0..paths {
            let path = (round + step) % paths;
            if path == 0 {
                truncate(&admin, &copy_schema).await;
                elapsed[0] = load_with_psql(url, &copy_schema, &mentions_csv, &matches_csv);
                check_loaded(&admin, &copy_schema, count, matches).await;
            } else {
                truncate(&admin, &sink_schema).await;
                elapsed[path] = load_with_sink(
                    &schema_url(url, &sink_schema),
                    &items,
                    batch,
                    connections[path - 1],
                )
                .await;
                check_loaded(&admin, &sink_schema, count, matches).await;
            }
        }
        let mut line = format!("round {}:", round + 1);
        for path in 0..paths {
            let ratio = elapsed[0].as_secs_f64() / elapsed[path].as_secs_f64();
            line.push_str(&format!(
                " {} {:.0} mentions/s ({:.2} s, ratio {ratio:.2});",
                name(path),
                rate(count, elapsed[path]),
                elapsed[path].as_secs_f64()
            ));
            times[path].push(elapsed[path]);
            ratios[path].push(ratio);
        }
        println!("{line}");
    }
    for path in 0..paths {
        times[path].sort();
        ratios[path].sort_by(f64::total_cmp);
        println!(
            "median of {ROUNDS} rounds: {} {:.0} mentions/s, ratio to psql \\copy {:.2} (per-round {:.2} to {:.2}); best {:.0} mentions/s",
            name(path),
            rate(count, times[path][ROUNDS / 2]),
            ratios[path][ROUNDS / 2],
            ratios[path][0],
            ratios[path][ROUNDS - 1],
            rate(count, times[path][0]),
        );
    }

    for schema in [&sink_schema, &copy_schema] {
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sink's own write path, batch after batch as its writer task does.
async fn load_with_sink(url: &str, items: &[Item], batch: usize, connections: usize) -> Duration {
    let stop = CancellationToken::new();
    let health = Health::new(Duration::from_secs(60));
    let mut postgres = Postgres::start(
        url.parse().unwrap(),
        connections,
        health.ready_flag("bench"),
        Metrics::default(),
        &stop,
    )
    .await
    .unwrap();
    let started = Instant::now();
    for chunk in items.chunks(batch) {
        let refs: Vec<&Item> = chunk.iter().collect();
        let outcomes = postgres.write(&refs, &stop).await;
        assert!(outcomes.iter().all(Result::is_ok), "a row was rejected");
    }
    started.elapsed()
}

fn load_with_psql(url: &str, schema: &str, mentions: &Path, matches: &Path) -> Duration {
    let columns = |table: &earshot_sink::postgres::Table| {
        table
            .copied
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let started = Instant::now();
    let status = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "\\copy {schema}.mentions ({}) FROM '{}' WITH (FORMAT csv)",
            columns(&MENTIONS),
            mentions.display()
        ))
        .arg("-c")
        .arg(format!(
            "\\copy {schema}.mention_matches ({}) FROM '{}' WITH (FORMAT csv)",
            columns(&MENTION_MATCHES),
            matches.display()
        ))
        .status()
        .expect("psql runs");
    let elapsed = started.elapsed();
    assert!(status.success(), "psql \\copy failed");
    elapsed
}

async fn truncate(client: &tokio_postgres::Client, schema: &str) {
    client
        .batch_execute(&format!(
            "TRUNCATE {schema}.mentions, {schema}.mention_matches; CHECKPOINT"
        ))
        .await
        .unwrap();
}

async fn check_loaded(
    client: &tokio_postgres::Client,
    schema: &str,
    mentions: usize,
    matches: usize,
) {
    let count = |table: &str| {
        let sql = format!("SELECT count(*) FROM {schema}.{table}");
        async move { client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) as usize }
    };
    assert_eq!(count("mentions").await, mentions);
    assert_eq!(count("mention_matches").await, matches);
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn schema_url(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// A realistic mention: 120-260 characters of text, half of them matching a second watchlist.
fn enriched(n: usize) -> EnrichedMention {
    const TEXTS: [&str; 4] = [
        "@Parcelly my package has been 'out for delivery' for 3 days now and support just closes the chat. #ParcellyDown",
        "Honestly the new Lumora Halo is the best desk lamp I've owned, the warm white setting is perfect for late evenings and the app finally stopped crashing",
        "Does anyone know if Brewtide ships to Canada yet? Their cold brew subscription looks great but the checkout keeps rejecting my postcode, tried three times",
        "Comparing Parcelly and the others for our small shop: Parcelly is cheaper per label but their pickup window keeps slipping and we lost two orders last week alone",
    ];
    let native_id = format!("{}", 1_864_112_345_678u64 + n as u64);
    let collected_at = 1_795_431_600_000_000 + n as i64 * 1_000;
    let watchlists: &[&str] = if n.is_multiple_of(2) {
        &["parcelly", "competitors"]
    } else {
        &["parcelly"]
    };
    EnrichedMention {
        mention: Mention {
            id: mention_id("x", &native_id),
            url: Some(format!(
                "https://x.example/user{}/status/{native_id}",
                n % 5000
            )),
            native_id,
            source: Source {
                kind: "x".into(),
                instance: "brand-search".into(),
            },
            author: Author {
                handle: format!("@user{}", n % 5000),
                name: Some(format!("User {}", n % 5000)),
                followers: Some((n * 37 % 100_000) as i64),
                verified: n.is_multiple_of(50),
                id: Some(format!("{}", 1_480_000_000 + n % 5000)),
            },
            text: TEXTS[n % TEXTS.len()].to_owned(),
            lang_hint: Some("en".into()),
            created_at: collected_at - 1_250_000,
            collected_at,
            engagement: Engagement {
                likes: (n % 97) as i64,
                reposts: (n % 13) as i64,
                replies: (n % 7) as i64,
            },
            parent_id: None,
            conversation_id: Some(format!("{}", 1_864_000_000_000u64 + n as u64 / 3)),
            has_media: n.is_multiple_of(4),
            deleted_at: None,
        },
        watchlist: watchlists[0].into(),
        matches: watchlists
            .iter()
            .map(|w| WatchlistMatch {
                watchlist: (*w).into(),
                relevance: 0.75,
                clause: "\"@Parcelly\" OR \"#ParcellyDown\"".into(),
                spans: vec![Span { start: 0, end: 9 }],
            })
            .collect(),
        sentiment: Sentiment {
            neg: 0.21,
            neu: 0.72,
            pos: 0.07,
            compound: -0.4767,
        },
        sentences: SentenceSentiment {
            count: 2,
            mean_compound: -0.3,
            min_compound: -0.4767,
            max_compound: 0.0,
            most_negative: "support just closes the chat".into(),
        },
        language: Some("en".into()),
        language_confidence: 0.98,
        spam_score: 0.02,
        intent: "complaint".into(),
        reach: 48_210,
        urgency: 0.61,
        signals: Signals {
            intents: vec!["complaint".into(), "question".into()],
            spam_reasons: Vec::new(),
            reach_score: 0.42,
            flags: Vec::new(),
        },
        enriched_at: collected_at + 4_000,
    }
}

fn write_csv(path: &Path, items: &[Item], row: impl Fn(&Item, &mut Vec<u8>)) {
    let mut out = Vec::new();
    for item in items {
        row(item, &mut out);
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

/// A CSV field: NULL is an unquoted empty field, text is always quoted.
enum Field<'a> {
    Null,
    Text(&'a str),
    Plain(String),
    /// A PostgreSQL array literal, quoted as text.
    Array(String),
}

fn csv_line(fields: &[Field<'_>], out: &mut Vec<u8>) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match field {
            Field::Null => {}
            Field::Text(text) => quoted(text, out),
            Field::Array(literal) => quoted(literal, out),
            Field::Plain(value) => out.extend_from_slice(value.as_bytes()),
        }
    }
    out.push(b'\n');
}

fn quoted(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
    out.push(b'"');
}

/// `{"a","b"}`: every element quoted, as `text[]` input takes it.
fn array(values: &[String]) -> Field<'static> {
    let elements: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    Field::Array(format!("{{{}}}", elements.join(",")))
}

fn text(value: &str) -> Field<'_> {
    Field::Text(value)
}

fn optional(value: &Option<String>) -> Field<'_> {
    value.as_deref().map_or(Field::Null, Field::Text)
}

fn plain(value: impl ToString) -> Field<'static> {
    Field::Plain(value.to_string())
}

fn time(value: chrono::DateTime<chrono::Utc>) -> Field<'static> {
    Field::Plain(value.to_rfc3339())
}

/// In the order of [`MENTIONS`]' columns.
fn mention_csv(m: &MentionRow, out: &mut Vec<u8>) {
    csv_line(
        &[
            plain(m.id),
            text(&m.native_id),
            text(&m.source_kind),
            text(&m.source_instance),
            optional(&m.url),
            text(&m.author_handle),
            optional(&m.author_name),
            m.author_followers.map_or(Field::Null, plain),
            plain(m.author_verified),
            text(&m.text),
            optional(&m.lang_hint),
            time(m.created_at),
            time(m.collected_at),
            plain(m.likes),
            plain(m.reposts),
            plain(m.replies),
            optional(&m.parent_id),
            optional(&m.conversation_id),
            plain(m.has_media),
            plain(m.sentiment_neg),
            plain(m.sentiment_neu),
            plain(m.sentiment_pos),
            plain(m.sentiment_compound),
            optional(&m.language),
            plain(m.language_confidence),
            plain(m.spam_score),
            text(&m.intent),
            plain(m.reach),
            plain(m.urgency),
            time(m.enriched_at),
            plain(m.sentences_count),
            plain(m.sentences_mean_compound),
            plain(m.sentences_min_compound),
            plain(m.sentences_max_compound),
            text(&m.sentences_most_negative),
            array(&m.intents),
            array(&m.spam_reasons),
            plain(m.reach_score),
            array(&m.input_flags),
            optional(&m.author_id),
            m.deleted_at.map_or(Field::Null, time),
        ],
        out,
    );
}

fn match_csv(m: &MatchRow, out: &mut Vec<u8>) {
    csv_line(
        &[
            plain(m.mention_id),
            text(&m.watchlist),
            plain(m.relevance),
            text(&m.clause),
        ],
        out,
    );
}
