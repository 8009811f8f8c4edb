//! Watchlist matching throughput with 10,000 queries over the VADER paper's tweets corpus,
//! against a plain Aho-Corasick scan of the same keyword set over the same texts, one core.
//!
//! `cargo bench -p earshot-query --bench matching` (optionally `-- SECONDS`, default 3).
//!
//! The queries are generated deterministically (a fixed-seed xorshift) from the corpus's own
//! vocabulary, so that texts do contain their keywords (a set of made-up brand names nobody
//! writes would make the prefilter's work trivially nothing): words of four letters or more,
//! the 200 most frequent left out as no watchlist is about "that" or "love". Four shapes in
//! turn, the ones listening teams write:
//!
//! - `(a OR #a) AND (b OR c*) NOT d`
//! - `"a b" OR (a NEAR/3 c)`
//! - `a* AND b lang:en`
//! - `(a OR b OR c) followers:>1000`
//!
//! The baseline is `AhoCorasick` built over every distinct keyword of the 10,000 queries
//! (ASCII case-insensitive, standard semantics) and `find_overlapping_iter` counting every
//! occurrence in each text: what any keyword matcher must at least do. Earshot's path is
//! `QuerySet::matches`: tokenizing each text while walking the query words' trie along its
//! tokens, the candidate queries, and evaluating them, with spans, relevance and the parts
//! of the query that held for each match. The line below it also writes each match's clause
//! out (`QuerySet::clause`), as the enricher does for every record it makes. The baseline
//! and the two lines of earshot's path take turns a pass over the corpus at a time
//! (`benches/turns.rs`), so that a drift in the machine's speed falls on all three alike;
//! each is timed per second of wall time and of this thread's CPU time.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasickBuilder, MatchKind};
use earshot_query::{parse, Document, QuerySet, WatchlistQuery};

#[path = "../../../benches/turns.rs"]
mod turns;
use turns::alternating;

const QUERIES: usize = 10_000;

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

    let vocabulary = vocabulary(&tweets);
    let (queries, keywords) = generate(&vocabulary);
    let started = Instant::now();
    let set = QuerySet::new(
        queries
            .iter()
            .enumerate()
            .map(|(i, q)| WatchlistQuery {
                name: format!("w{i}"),
                query: parse(q).unwrap_or_else(|e| panic!("{q}: {e}")),
            })
            .collect(),
    );
    let compile = started.elapsed();
    let baseline = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(&keywords)
        .expect("keywords compile");

    let documents: Vec<Document<'_>> = tweets
        .iter()
        .map(|text| Document {
            text,
            author: "@someone",
            url: None,
            source: "twitter",
            lang: Some("en"),
            followers: Some(5_000),
        })
        .collect();
    let with_candidates = tweets
        .iter()
        .filter(|t| !set.candidates(t).is_empty())
        .count();
    let candidates: usize = tweets.iter().map(|t| set.candidates(t).len()).sum();
    let matches: usize = documents.iter().map(|d| set.matches(d).len()).sum();
    let keyword_hits: usize = tweets
        .iter()
        .map(|t| baseline.find_overlapping_iter(t).count())
        .sum();

    let [(plain, plain_cpu), (earshot, earshot_cpu), (written, written_cpu)] = alternating(
        tweets.len(),
        budget,
        [
            &mut |i| baseline.find_overlapping_iter(black_box(tweets[i])).count(),
            &mut |i| set.matches(black_box(&documents[i])).len(),
            &mut |i| {
                let found = set.matches(black_box(&documents[i]));
                found.iter().map(|m| set.clause(m).len()).sum()
            },
        ],
    );
    let [(prefilter, prefilter_cpu)] = alternating(
        tweets.len(),
        budget,
        [&mut |i| set.candidates(black_box(tweets[i])).len()],
    );
    let [(tokenize, tokenize_cpu)] = alternating(
        tweets.len(),
        budget,
        [&mut |i| earshot_query::tokenize(black_box(tweets[i])).len()],
    );

    println!(
        "{} queries ({} distinct keywords) compiled in {:.0} ms; {} tweets, {:.0} bytes on average",
        queries.len(),
        keywords.len(),
        compile.as_secs_f64() * 1e3,
        tweets.len(),
        tweets.iter().map(|t| t.len()).sum::<usize>() as f64 / tweets.len() as f64
    );
    println!(
        "per pass: {keyword_hits} keyword occurrences, {with_candidates} tweets with candidate queries, {candidates} candidates, {matches} watchlist matches"
    );
    println!(
        "                              {:>12} {:>14}",
        "wall", "thread CPU"
    );
    println!("plain aho-corasick scan       {plain:>12.0} {plain_cpu:>14.0} tweets/s");
    println!("earshot QuerySet::matches     {earshot:>12.0} {earshot_cpu:>14.0} tweets/s");
    println!("  clauses written out too     {written:>12.0} {written_cpu:>14.0} tweets/s");
    println!("  of which: prefilter only    {prefilter:>12.0} {prefilter_cpu:>14.0} tweets/s");
    println!("  of which: tokenizer only    {tokenize:>12.0} {tokenize_cpu:>14.0} tweets/s");
    println!(
        "ratio earshot / plain         {:>12.2} {:>14.2}",
        earshot / plain,
        earshot_cpu / plain_cpu
    );
    println!(
        "  with the clauses written    {:>12.2} {:>14.2}",
        written / plain,
        written_cpu / plain_cpu
    );
}

/// Corpus words of four letters or more, by frequency, without the 200 most frequent.
fn vocabulary(tweets: &[&str]) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for tweet in tweets {
        for word in tweet.split(|c: char| !c.is_ascii_alphabetic()) {
            if word.len() >= 4 {
                *counts.entry(word.to_ascii_lowercase()).or_default() += 1;
            }
        }
    }
    let mut words: Vec<(String, usize)> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.into_iter().skip(200).map(|(w, _)| w).collect()
}

/// The queries and every distinct keyword they contain.
fn generate(vocabulary: &[String]) -> (Vec<String>, Vec<String>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        vocabulary[(state % vocabulary.len() as u64) as usize].as_str()
    };
    let mut queries = Vec::with_capacity(QUERIES);
    let mut keywords: Vec<String> = Vec::new();
    for i in 0..QUERIES {
        let (a, b, c, d) = (pick(), pick(), pick(), pick());
        let (query, words): (String, Vec<String>) = match i % 4 {
            0 => (
                format!("({a} OR #{a}) AND ({b} OR {c}*) NOT {d}"),
                vec![a.into(), format!("#{a}"), b.into(), c.into(), d.into()],
            ),
            1 => (
                format!("\"{a} {b}\" OR ({a} NEAR/3 {c})"),
                vec![a.into(), b.into(), c.into()],
            ),
            2 => (format!("{a}* AND {b} lang:en"), vec![a.into(), b.into()]),
            _ => (
                format!("({a} OR {b} OR {c}) followers:>1000"),
                vec![a.into(), b.into(), c.into()],
            ),
        };
        queries.push(query);
        keywords.extend(words);
    }
    keywords.sort();
    keywords.dedup();
    (queries, keywords)
}
