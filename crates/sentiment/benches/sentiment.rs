//! Sentiment throughput on the VADER paper's tweets corpus, one core, scores only.
//!
//! `cargo bench -p earshot-sentiment --bench sentiment` (optionally `-- SECONDS`, default 3).
//!
//! Measured in the same run, because these machines are shared and noisy:
//! - earshot's VADER (`polarity_scores`);
//! - a floor: the least any lexicon scorer must do, splitting on whitespace, lowercasing each
//!   token and looking it up in the same lexicon, summing what is found. The ratio says how
//!   close to that floor the full rule set runs.
//! - both taking turns a pass over the corpus at a time (`benches/turns.rs`), so that a drift
//!   in the machine's speed falls on both alike, per second of wall time and per second of
//!   this thread's CPU time, which leaves out time spent waiting for a core that other
//!   processes hold, so that a busy machine does not read as a slow engine;
//! - scaling: texts of 1,000 to 100,000 words with a "but" every three words (the rule the
//!   reference runs in quadratic time), in nanoseconds per word.

use std::hint::black_box;
use std::time::{Duration, Instant};

use earshot_sentiment::{Scratch, SentimentAnalyzer};
use rustc_hash::FxHashMap;

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
        "/testdata/tweets_GroundTruth.txt"
    ))
    .expect("the tweets corpus");
    let tweets: Vec<&str> = corpus
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.splitn(3, '\t').nth(2).unwrap_or_default())
        .collect();
    let analyzer = SentimentAnalyzer::default();
    let lexicon: FxHashMap<String, f64> = include_str!("../lexicon/vader_lexicon.txt")
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some((fields.next()?.to_owned(), fields.next()?.parse().ok()?))
        })
        .collect();

    let mut scratch = Scratch::default();
    let mut lower = String::new();
    let [(vader, vader_cpu), (floor, floor_cpu)] = alternating(
        tweets.len(),
        budget,
        [
            &mut |i| {
                analyzer
                    .polarity_scores_with(black_box(tweets[i]), &mut scratch)
                    .compound as usize
            },
            &mut |i| {
                let mut sum = 0.0;
                for word in black_box(tweets[i]).split_whitespace() {
                    lower.clear();
                    lower.extend(word.chars().flat_map(char::to_lowercase));
                    sum += lexicon.get(lower.as_str()).copied().unwrap_or(0.0);
                }
                sum as usize
            },
        ],
    );
    println!(
        "tweets corpus: {} texts, {:.0} bytes on average",
        tweets.len(),
        corpus.len() as f64 / tweets.len() as f64
    );
    println!(
        "                           {:>12} {:>14}",
        "wall", "thread CPU"
    );
    println!("earshot VADER              {vader:>12.0} {vader_cpu:>14.0} tweets/s");
    println!("floor (split+lookup)       {floor:>12.0} {floor_cpu:>14.0} tweets/s");
    println!(
        "ratio VADER / floor        {:>12.2} {:>14.2}",
        vader / floor,
        vader_cpu / floor_cpu
    );

    println!("scaling with \"but\" (ns per word; flat means linear):");
    for words in [1_000usize, 10_000, 100_000] {
        let text = "good but bad ".repeat(words / 3);
        let started = Instant::now();
        let mut runs = 0u32;
        while started.elapsed() < budget / 4 || runs < 3 {
            black_box(analyzer.polarity_scores_with(black_box(&text), &mut scratch));
            runs += 1;
        }
        let per_word = started.elapsed().as_nanos() as f64 / f64::from(runs) / words as f64;
        println!("  {words:>7} words           {per_word:>12.1} ns/word");
    }
}
