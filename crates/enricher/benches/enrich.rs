//! The whole `Enricher::enrich` (sentiment, matching, language, spam, intent, reach, urgency)
//! on the VADER paper's tweets corpus as mentions, one core.
//!
//! `cargo bench -p earshot-enricher --bench enrich` (optionally `-- SECONDS`, default 3).
//!
//! Measured in the same run, per second of wall time and of this thread's CPU time (from
//! /proc/thread-self/schedstat): VADER alone (`polarity_scores`, the largest single part,
//! the reference point), language detection alone (whatlang), and `enrich()` with the demo's
//! three brand watchlists plus twenty topic queries, so that a share of the tweets match.

use std::hint::black_box;
use std::time::{Duration, Instant};

use earshot_core::config::{EnricherConfig, WatchlistConfig};
use earshot_core::model::{mention_id, Author, Engagement, Mention, Source};
use earshot_enricher::Enricher;
use earshot_sentiment::SentimentAnalyzer;

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sentiment/testdata/tweets_GroundTruth.txt"
    ))
    .expect("the tweets corpus");
    let tweets: Vec<&str> = corpus
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.splitn(3, '\t').nth(2).unwrap_or_default())
        .collect();
    let mentions: Vec<Mention> = tweets
        .iter()
        .enumerate()
        .map(|(i, t)| mention(i, t))
        .collect();

    let watchlist = |name: &str, query: &str| WatchlistConfig {
        name: name.into(),
        terms: Vec::new(),
        query: Some(query.into()),
        sentiment_lexicon: Default::default(),
    };
    let mut watchlists = vec![
        watchlist("lumora", "lumora OR #lumora OR @lumora OR \"lumora halo\""),
        watchlist("brewtide", "brewtide OR #brewtide OR @brewtide"),
        watchlist(
            "parcelly",
            "parcelly OR #parcelly OR @parcellysupport OR #parcellydown",
        ),
    ];
    for (i, topic) in [
        "movie*", "phone", "game*", "music", "coffee", "school", "work*", "birthday", "weekend",
        "food", "dinner", "sleep*", "party", "money", "car", "rain*", "beach", "book*", "show",
        "team",
    ]
    .iter()
    .enumerate()
    {
        watchlists.push(watchlist(
            &format!("topic-{i}"),
            &format!("{topic} NOT (giveaway OR #ad)"),
        ));
    }
    let enricher = Enricher::new(&EnricherConfig {
        watchlists,
        ..EnricherConfig::default()
    });
    let analyzer = SentimentAnalyzer::default();

    let copies: usize = mentions
        .iter()
        .map(|m| enricher.enrich(m.clone()).len())
        .sum();
    let (vader, vader_cpu) = rate(mentions.len(), budget, |i| {
        analyzer.polarity_scores(black_box(tweets[i])).compound as usize
    });
    let (language, language_cpu) = rate(mentions.len(), budget, |i| {
        whatlang::detect(black_box(tweets[i])).map_or(0, |info| info.lang() as usize)
    });
    // For scale: whatlang restricted to seven Western European languages.
    let seven = whatlang::Detector::with_allowlist(vec![
        whatlang::Lang::Eng,
        whatlang::Lang::Fra,
        whatlang::Lang::Deu,
        whatlang::Lang::Spa,
        whatlang::Lang::Por,
        whatlang::Lang::Ita,
        whatlang::Lang::Nld,
    ]);
    let (seven_rate, seven_cpu) = rate(mentions.len(), budget, |i| {
        seven
            .detect(black_box(tweets[i]))
            .map_or(0, |info| info.lang() as usize)
    });
    // The clone is part of the work: the service hands enrich() an owned, decoded mention.
    let (enrich, enrich_cpu) = rate(mentions.len(), budget, |i| {
        enricher.enrich(black_box(mentions[i].clone())).len()
    });
    println!(
        "{} tweets as mentions, {:.0} bytes on average; {} enriched records per pass",
        tweets.len(),
        tweets.iter().map(|t| t.len()).sum::<usize>() as f64 / tweets.len() as f64,
        copies
    );
    println!(
        "                              {:>12} {:>14}",
        "wall", "thread CPU"
    );
    println!("VADER polarity_scores alone   {vader:>12.0} {vader_cpu:>14.0} mentions/s");
    println!("whatlang detect alone         {language:>12.0} {language_cpu:>14.0} mentions/s");
    println!("whatlang, 7 languages only    {seven_rate:>12.0} {seven_cpu:>14.0} mentions/s");
    println!("Enricher::enrich              {enrich:>12.0} {enrich_cpu:>14.0} mentions/s");
    println!(
        "ratio enrich / VADER alone    {:>12.2} {:>14.2}",
        enrich / vader,
        enrich_cpu / vader_cpu
    );
}

fn mention(i: usize, text: &str) -> Mention {
    Mention {
        id: mention_id("bench", &i.to_string()),
        native_id: i.to_string(),
        source: Source {
            kind: "twitter".into(),
            instance: "bench".into(),
        },
        url: Some(format!("https://twitter.example/status/{i}")),
        author: Author {
            handle: format!("@user{}", i % 500),
            name: None,
            followers: Some((i as i64 * 7919) % 50_000),
            verified: false,
            id: None,
        },
        text: text.into(),
        lang_hint: None,
        created_at: 1_700_000_000_000_000 + i as i64 * 1_000_000,
        collected_at: 1_700_000_000_000_000 + i as i64 * 1_000_000,
        engagement: Engagement {
            likes: (i as i64 * 31) % 200,
            reposts: (i as i64 * 17) % 40,
            replies: (i as i64 * 13) % 20,
        },
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    }
}

/// Items per second of `work` over indices 0..n, repeated for `budget` after a warm-up pass:
/// per second of wall time and per second of this thread's CPU time.
fn rate(n: usize, budget: Duration, mut work: impl FnMut(usize) -> usize) -> (f64, f64) {
    for i in 0..n {
        black_box(work(i));
    }
    let (started, cpu_started) = (Instant::now(), thread_cpu_nanos());
    let mut done = 0usize;
    while started.elapsed() < budget {
        for i in 0..n {
            black_box(work(i));
        }
        done += n;
    }
    let cpu_seconds = (thread_cpu_nanos() - cpu_started) as f64 / 1e9;
    (
        done as f64 / started.elapsed().as_secs_f64(),
        done as f64 / cpu_seconds,
    )
}

/// Nanoseconds this thread has run on a CPU (the first field of schedstat).
fn thread_cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}
