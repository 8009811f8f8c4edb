//! Parity with vaderSentiment 3.3.2 on 20,360 generated texts that make the rules interact as
//! natural text rarely does: capitals, emoji glued to words, unusual whitespace, negation
//! three words back, equal scores around "but". Regenerate with
//! `scripts/gen-sentiment-cases.py | scripts/vader-reference.py --jsonl`.

mod corpus;

use earshot_sentiment::SentimentAnalyzer;

#[test]
fn generated_texts_score_exactly_as_the_reference() {
    let cases = std::fs::read_to_string(corpus::testdata("generated_cases.jsonl")).unwrap();
    let analyzer = SentimentAnalyzer::default();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in cases.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = case["text"].as_str().unwrap();
        let want: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = analyzer.polarity_scores(text);
        let got = vec![got.neg, got.neu, got.pos, got.compound];
        if got != want {
            mismatches.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        checked += 1;
    }
    assert_eq!(checked, 20_360);
    corpus::assert_none_differ(&mismatches, checked);
}
