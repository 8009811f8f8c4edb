//! The whole `Enricher::enrich` (sentiment, matching, language, spam, intent, reach, urgency)
//! on the VADER paper's tweets corpus as mentions, one core.
//!
//! `cargo bench -p earshot-enricher --bench enrich` (optionally `-- SECONDS`, default 3).
//!
//! Measured in the same run, taking turns a pass over the corpus at a time
//! (`benches/turns.rs`), per second of wall time and of this thread's CPU time: VADER alone
//! (`polarity_scores`, the reference point), each other component alone (language detection with the default detector and with whatlang,
//! watchlist matching, spam / intent / reach / urgency signals), and `enrich()` with the
//! demo's three brand watchlists plus twenty topic queries, so that a share of the tweets
//! match. whatlang, a hundred times slower, is timed on its own after them.
//!
//! It then compares the languages found by the default detector (script first, whichlang for
//! Latin text) with whatlang's on the four VADER corpora (all English) and on the
//! multilingual sanity set (testdata/languages.tsv).

use std::hint::black_box;
use std::time::Duration;

use earshot_core::config::{EnricherConfig, LanguageDetector, WatchlistConfig};
use earshot_core::model::{mention_id, Author, Engagement, Mention, Source};
use earshot_enricher::language::detect_text;
use earshot_enricher::signals::Signals;
use earshot_enricher::{Enricher, WatchlistMatcher};
use earshot_sentiment::SentimentAnalyzer;

#[path = "../../../benches/turns.rs"]
mod turns;
use turns::alternating;

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
    let config = EnricherConfig {
        watchlists,
        ..EnricherConfig::default()
    };
    let enricher = Enricher::new(&config);
    let analyzer = SentimentAnalyzer::default();
    let matcher = WatchlistMatcher::new(&config.watchlists);
    let signals = Signals::new(&config);

    let copies: usize = mentions
        .iter()
        .map(|m| enricher.enrich(m.clone()).len())
        .sum();
    // The clone is part of the work: the service hands enrich() an owned, decoded mention.
    let [(vader, vader_cpu), (language, language_cpu), (matching, matching_cpu), (signal, signal_cpu), (enrich, enrich_cpu)] =
        alternating(
            mentions.len(),
            budget,
            [
                &mut |i| analyzer.polarity_scores(black_box(tweets[i])).compound as usize,
                &mut |i| {
                    detect_text(black_box(tweets[i]), LanguageDetector::Whichlang)
                        .map_or(0, |(c, _)| c.len())
                },
                &mut |i| matcher.matches(black_box(&mentions[i]), Some("en")).len(),
                &mut |i| {
                    signals
                        .score(black_box(&mentions[i]), -0.2, Some("en"), Vec::new())
                        .intents
                        .len()
                },
                &mut |i| enricher.enrich(black_box(mentions[i].clone())).len(),
            ],
        );
    let [(whatlang_rate, whatlang_cpu)] = alternating(
        mentions.len(),
        budget,
        [&mut |i| {
            detect_text(black_box(tweets[i]), LanguageDetector::Whatlang)
                .map_or(0, |(c, _)| c.len())
        }],
    );
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
    println!("language, default (whichlang) {language:>12.0} {language_cpu:>14.0} mentions/s");
    println!("language, whatlang            {whatlang_rate:>12.0} {whatlang_cpu:>14.0} mentions/s");
    println!("watchlist matching            {matching:>12.0} {matching_cpu:>14.0} mentions/s");
    println!("signals (spam, intent, ...)   {signal:>12.0} {signal_cpu:>14.0} mentions/s");
    println!("Enricher::enrich              {enrich:>12.0} {enrich_cpu:>14.0} mentions/s");
    println!(
        "ratio enrich / VADER alone    {:>12.2} {:>14.2}",
        enrich / vader,
        enrich_cpu / vader_cpu
    );
    println!(
        "ratio enrich / whatlang alone {:>12.2} {:>14.2}",
        enrich / whatlang_rate,
        enrich_cpu / whatlang_cpu
    );
    agreement();
}

/// The default detector against whatlang: on the English corpora, the share each finds
/// English (and how often they agree); on the sanity set, the share each gets right.
fn agreement() {
    println!();
    println!(
        "{:<28} {:>6} {:>12} {:>12} {:>10}",
        "corpus", "texts", "default", "whatlang", "agree"
    );
    for name in [
        "tweets",
        "movieReviewSnippets",
        "amazonReviewSnippets",
        "nytEditorialSnippets",
    ] {
        let path = format!(
            "{}/../sentiment/testdata/{name}_GroundTruth.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let corpus = std::fs::read_to_string(&path).expect("a VADER corpus");
        let texts: Vec<(&str, &str)> = corpus
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').splitn(3, '\t').nth(2))
            .map(|text| ("en", text))
            .collect();
        report(name, &texts);
    }
    let set = include_str!("../testdata/languages.tsv");
    let texts: Vec<(&str, &str)> = set
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once('\t'))
        .collect();
    report("multilingual sanity set", &texts);
}

fn report(name: &str, texts: &[(&str, &str)]) {
    let (mut default, mut whatlang, mut agree) = (0, 0, 0);
    for &(expected, text) in texts {
        // As enrich() takes them: below the confidence bar a detection is no answer.
        let found = |detector| {
            detect_text(text, detector)
                .filter(|&(_, confidence)| confidence >= earshot_enricher::language::MIN_CONFIDENCE)
                .map(|(code, _)| code)
        };
        let (a, b) = (
            found(LanguageDetector::Whichlang),
            found(LanguageDetector::Whatlang),
        );
        default += usize::from(a == Some(expected));
        whatlang += usize::from(b == Some(expected));
        agree += usize::from(a == b);
    }
    let share = |n: usize| format!("{:.1} %", 100.0 * n as f64 / texts.len() as f64);
    println!(
        "{name:<28} {:>6} {:>12} {:>12} {:>10}",
        texts.len(),
        share(default),
        share(whatlang),
        share(agree)
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
