//! Parity with vaderSentiment 3.3.2 over the four human-rated corpora of the VADER paper
//! (23,703 texts): every score of every text equal to the reference's, to the last decimal.

mod corpus;

use corpus::{Corpus, CORPORA};
use earshot_sentiment::SentimentAnalyzer;

#[test]
fn every_corpus_text_scores_exactly_as_the_reference() {
    let analyzer = SentimentAnalyzer::default();
    let mut total = 0;
    let mut mismatches = Vec::new();
    for name in CORPORA {
        let corpus = Corpus::load(name);
        for text in &corpus.texts {
            total += 1;
            let got = analyzer.polarity_scores(&text.text);
            let want = text.reference;
            let got = [got.neg, got.neu, got.pos, got.compound];
            if got != want {
                mismatches.push(format!(
                    "{name} {}: got {got:?}, want {want:?}: {:?}",
                    text.id, text.text
                ));
            }
        }
    }
    assert_eq!(total, 23_703, "the four corpora hold 23,703 texts");
    corpus::assert_none_differ(&mismatches, total);
}
