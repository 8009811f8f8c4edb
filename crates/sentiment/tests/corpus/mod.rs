//! The VADER paper's corpora and vaderSentiment 3.3.2's scores of them, from `testdata/`.

#![allow(dead_code)] // each test file uses part of this module

use std::collections::HashMap;
use std::path::PathBuf;

/// File stems of the four corpora, as the paper's Table 4 orders them.
pub const CORPORA: [&str; 4] = [
    "tweets",
    "movieReviewSnippets",
    "amazonReviewSnippets",
    "nytEditorialSnippets",
];

pub struct Text {
    pub id: String,
    /// Mean rating of the human raters, -4..4.
    pub mean_rating: f64,
    pub text: String,
    /// neg, neu, pos, compound as vaderSentiment 3.3.2 gives them.
    pub reference: [f64; 4],
}

pub struct Corpus {
    pub texts: Vec<Text>,
}

pub fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file)
}

impl Corpus {
    pub fn load(name: &str) -> Corpus {
        let read = |file: String| {
            std::fs::read_to_string(testdata(&file))
                .unwrap_or_else(|e| panic!("reading {file}: {e}"))
        };
        let mut reference: HashMap<String, [f64; 4]> = HashMap::new();
        for line in read(format!("{name}_reference_scores.tsv")).lines().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let score = |i: usize| fields[i].parse::<f64>().unwrap();
            reference.insert(
                fields[0].to_owned(),
                [score(1), score(2), score(3), score(4)],
            );
        }
        let texts = read(format!("{name}_GroundTruth.txt"))
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut fields = line.splitn(3, '\t');
                let id = fields.next().unwrap().to_owned();
                let mean_rating = fields.next().unwrap().parse().unwrap();
                let text = fields.next().unwrap_or_default().to_owned();
                let reference = reference[&id];
                Text {
                    id,
                    mean_rating,
                    text,
                    reference,
                }
            })
            .collect();
        Corpus { texts }
    }
}

/// Fails with the first differing texts when any text scored differently from the reference.
pub fn assert_none_differ(mismatches: &[String], checked: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {checked} texts differ from the reference, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}
