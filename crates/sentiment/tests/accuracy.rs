//! Accuracy against the human raters of the VADER paper, per corpus: Pearson r between the
//! compound score and the raters' mean, and polar precision, recall and F1 (compound >= 0.05
//! positive, <= -0.05 negative; a mean rating > 0 positive, < 0 negative), averaged over the
//! two polar classes weighted by their support. Neutral ratings count as misses for whichever
//! polar class predicts them.
//!
//! `cargo test -p earshot-sentiment --test accuracy -- --nocapture` prints the table beside
//! the paper's Table 4 (`testdata/paper_table4.tsv`).

mod corpus;

use corpus::{testdata, Corpus, CORPORA};
use earshot_sentiment::SentimentAnalyzer;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Accuracy {
    r: f64,
    precision: f64,
    recall: f64,
    f1: f64,
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        xy += (a - mean_x) * (b - mean_y);
        xx += (a - mean_x).powi(2);
        yy += (b - mean_y).powi(2);
    }
    xy / (xx * yy).sqrt()
}

fn accuracy(ratings: &[f64], compounds: &[f64]) -> Accuracy {
    let truth: Vec<i8> = ratings
        .iter()
        .map(|&r| (r > 0.0) as i8 - (r < 0.0) as i8)
        .collect();
    let predicted: Vec<i8> = compounds
        .iter()
        .map(|&c| (c >= 0.05) as i8 - (c <= -0.05) as i8)
        .collect();
    let (mut precision, mut recall, mut f1, mut support) = (0.0, 0.0, 0.0, 0.0);
    for class in [1i8, -1] {
        let pairs = || truth.iter().zip(&predicted);
        let true_positives = pairs().filter(|&(&t, &p)| t == class && p == class).count() as f64;
        let predicted_class = predicted.iter().filter(|&&p| p == class).count() as f64;
        let actual_class = truth.iter().filter(|&&t| t == class).count() as f64;
        let (p, r) = (
            true_positives / predicted_class,
            true_positives / actual_class,
        );
        precision += p * actual_class;
        recall += r * actual_class;
        f1 += 2.0 * p * r / (p + r) * actual_class;
        support += actual_class;
    }
    Accuracy {
        r: pearson(ratings, compounds),
        precision: precision / support,
        recall: recall / support,
        f1: f1 / support,
    }
}

#[test]
fn accuracy_per_corpus_is_the_references_and_the_papers_table_sits_beside_it() {
    let analyzer = SentimentAnalyzer::default();
    let paper = std::fs::read_to_string(testdata("paper_table4.tsv")).unwrap();
    let paper_row = |corpus: &str| -> Vec<String> {
        paper
            .lines()
            .map(|line| line.split('\t').collect::<Vec<_>>())
            .find(|f| f.len() == 6 && f[0] == corpus && f[1] == "VADER")
            .map(|f| f[2..].iter().map(|v| v.to_string()).collect())
            .unwrap()
    };
    println!(
        "| corpus | texts | r | precision | recall | F1 | paper: r | precision | recall | F1 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for name in CORPORA {
        let corpus = Corpus::load(name);
        let ratings: Vec<f64> = corpus.texts.iter().map(|t| t.mean_rating).collect();
        let ours: Vec<f64> = corpus
            .texts
            .iter()
            .map(|t| analyzer.polarity_scores(&t.text).compound)
            .collect();
        let reference: Vec<f64> = corpus.texts.iter().map(|t| t.reference[3]).collect();
        let measured = accuracy(&ratings, &ours);
        assert_eq!(
            measured,
            accuracy(&ratings, &reference),
            "{name}: the same as vaderSentiment 3.3.2's"
        );
        let short = name
            .trim_end_matches("ReviewSnippets")
            .trim_end_matches("EditorialSnippets");
        let paper = paper_row(short);
        println!(
            "| {short} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            corpus.texts.len(),
            measured.r,
            measured.precision,
            measured.recall,
            measured.f1,
            paper.join(" | ")
        );
        if name == "tweets" {
            assert_eq!(
                format!("{:.3} {:.3}", measured.r, measured.f1),
                "0.872 0.949"
            );
        }
    }
}
