//! Earshot's sentiment engine: VADER (Hutto & Gilbert, ICWSM 2014) giving exactly the scores of
//! its reference implementation, vaderSentiment 3.3.2, for every text, and fast enough for the
//! hot path of the enricher.
//!
//! - [`SentimentAnalyzer::polarity_scores`]: `neg`, `neu`, `pos` (rounded to 3 decimals) and
//!   `compound` (4 decimals), as `polarity_scores` returns them.
//! - [`SentimentAnalyzer::sentence_view`]: the same scores per sentence, summarized, for long
//!   texts on which the whole-text compound saturates.
//! - [`Lexicon`]: the embedded lexicons, with per-use overrides (a skate brand's "sick").
//!
//! Parity with the reference is tested over the four human-rated corpora of the paper and over
//! generated texts that exercise each rule (`tests/`).

mod lexicon;
mod pytext;
mod sentences;
mod vader;

use std::cell::RefCell;
use std::sync::Arc;

use sentences::sentences;

pub use lexicon::{Lexicon, LexiconError};
pub use pytext::python_round;
pub use vader::Scratch;

/// VADER's scores of one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Share of negative sentiment, 0..1, rounded to 3 decimals.
    pub neg: f64,
    /// Share of neutral words, 0..1, rounded to 3 decimals (0 for a text with no words).
    pub neu: f64,
    /// Share of positive sentiment, 0..1, rounded to 3 decimals.
    pub pos: f64,
    /// Normalized sum of valences, -1..1, rounded to 4 decimals.
    pub compound: f64,
}

/// Sentence-level summary of a text's sentiment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SentenceView {
    /// Sentences scored (those with at least one non-space character).
    pub count: usize,
    pub mean_compound: f64,
    pub min_compound: f64,
    pub max_compound: f64,
    /// The sentence with the lowest compound, when that compound is negative (at most
    /// -0.05, VADER's negative threshold); at most [`MOST_NEGATIVE_MAX_CHARS`] characters.
    pub most_negative: Option<String>,
}

/// How much of the most negative sentence a [`SentenceView`] keeps.
pub const MOST_NEGATIVE_MAX_CHARS: usize = 280;

/// VADER's threshold for a negative compound.
pub const NEGATIVE_THRESHOLD: f64 = -0.05;

/// A VADER analyzer over a lexicon. Cheap to clone (the lexicon is shared); scoring takes
/// `&self`, so one analyzer serves every thread.
#[derive(Clone)]
pub struct SentimentAnalyzer {
    lexicon: Arc<Lexicon>,
}

impl Default for SentimentAnalyzer {
    fn default() -> Self {
        SentimentAnalyzer::new(Lexicon::vader())
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers, or new ones if they are in use already.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

impl SentimentAnalyzer {
    /// An analyzer over `lexicon`; [`SentimentAnalyzer::default`] uses VADER's own.
    pub fn new(lexicon: Lexicon) -> Self {
        SentimentAnalyzer {
            lexicon: Arc::new(lexicon),
        }
    }

    /// The same rules over VADER's lexicon with some words' valences replaced (or removed,
    /// with `None`): how a watchlist makes "sick" praise or "killer" harmless.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, Option<f64>)>,
    ) -> Self {
        let mut lexicon = (*self.lexicon).clone();
        for (word, valence) in overrides {
            match valence {
                Some(valence) => lexicon.set_valence(word, valence),
                None => lexicon.remove(word),
            }
        }
        SentimentAnalyzer {
            lexicon: Arc::new(lexicon),
        }
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// VADER's scores of `text`, identical to vaderSentiment 3.3.2's `polarity_scores`.
    pub fn polarity_scores(&self, text: &str) -> Scores {
        with_scratch(|scratch| self.polarity_scores_with(text, scratch))
    }

    /// [`SentimentAnalyzer::polarity_scores`] with caller-owned buffers.
    pub fn polarity_scores_with(&self, text: &str, scratch: &mut Scratch) -> Scores {
        vader::polarity_scores(&self.lexicon, text, scratch)
    }

    /// The whole-text scores and the sentence view of `text`, tokenizing the text once where
    /// it can (see [`SentimentAnalyzer::sentence_view`] for the view).
    pub fn analyze(&self, text: &str) -> Analysis {
        with_scratch(|scratch| self.analyze_with(text, scratch))
    }

    /// [`SentimentAnalyzer::analyze`] with caller-owned buffers.
    pub fn analyze_with(&self, text: &str, scratch: &mut Scratch) -> Analysis {
        let mut found = sentences(text);
        match (found.next(), found.next()) {
            (None, _) => Analysis {
                scores: self.polarity_scores_with(text, scratch),
                sentences: SentenceView::default(),
            },
            // VADER ignores surrounding whitespace, so the one sentence scores as the text.
            (Some(only), None) => {
                let scores = self.polarity_scores_with(text, scratch);
                let mut summary = Summary::default();
                summary.add(only, scores.compound);
                Analysis {
                    scores,
                    sentences: summary.view(),
                }
            }
            (Some(first), Some(second)) => {
                let mut summary = Summary::default();
                // The sentences found so far, then the rest: the text is split once.
                let scores = vader::scores_and_sentences(
                    &self.lexicon,
                    text,
                    [first, second].into_iter().chain(found),
                    scratch,
                    |sentence, compound| summary.add(sentence, compound),
                );
                Analysis {
                    scores,
                    sentences: summary.view(),
                }
            }
        }
    }

    /// Scores each sentence (Unicode sentence boundaries, UAX #29) on its own and
    /// summarizes them.
    pub fn sentence_view(&self, text: &str) -> SentenceView {
        let mut summary = Summary::default();
        for sentence in sentences(text) {
            summary.add(sentence, self.polarity_scores(sentence).compound);
        }
        summary.view()
    }
}

/// The sentence view being gathered.
#[derive(Default)]
struct Summary<'t> {
    count: usize,
    sum: f64,
    highest: Option<f64>,
    lowest: Option<(f64, &'t str)>,
}

impl<'t> Summary<'t> {
    fn add(&mut self, sentence: &'t str, compound: f64) {
        self.count += 1;
        self.sum += compound;
        self.highest = Some(self.highest.map_or(compound, |high| high.max(compound)));
        if self.lowest.is_none_or(|(low, _)| compound < low) {
            self.lowest = Some((compound, sentence));
        }
    }

    fn view(self) -> SentenceView {
        let mut view = SentenceView {
            count: self.count,
            ..SentenceView::default()
        };
        if let (Some((low, _)), Some(high)) = (self.lowest, self.highest) {
            view.mean_compound = python_round(self.sum / self.count as f64, 4);
            view.min_compound = low;
            view.max_compound = high;
        }
        view.most_negative = self
            .lowest
            .filter(|&(compound, _)| compound <= NEGATIVE_THRESHOLD)
            .map(|(_, sentence)| truncate(sentence));
        view
    }
}

/// Both views of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub scores: Scores,
    pub sentences: SentenceView,
}

fn truncate(sentence: &str) -> String {
    match sentence.char_indices().nth(MOST_NEGATIVE_MAX_CHARS) {
        Some((end, _)) => sentence[..end].to_owned(),
        None => sentence.to_owned(),
    }
}

/// The texts of the paper's four human-rated corpora (`testdata/*_GroundTruth.txt`), for
/// the tests that check every one of them.
#[cfg(test)]
pub(crate) fn corpus_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for name in [
        "tweets",
        "movieReviewSnippets",
        "amazonReviewSnippets",
        "nytEditorialSnippets",
    ] {
        let path = format!(
            "{}/testdata/{name}_GroundTruth.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let corpus = std::fs::read(&path).expect("a VADER corpus");
        let corpus = String::from_utf8_lossy(&corpus);
        texts.extend(
            corpus
                .lines()
                .filter_map(|l| l.splitn(3, '\t').nth(2))
                .map(str::to_owned),
        );
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_view_finds_the_angry_paragraph_a_saturated_compound_hides() {
        let analyzer = SentimentAnalyzer::default();
        let post = "We love the new Lumora Halo. The colours are beautiful and setup was a joy. \
                    Great value, great design, wonderful app! Support was rude and useless when it broke. \
                    Still, a lovely lamp that makes us happy every evening.";
        let whole = analyzer.polarity_scores(post);
        assert!(whole.compound > 0.9, "the whole text saturates: {whole:?}");
        let view = analyzer.sentence_view(post);
        assert_eq!(view.count, 5);
        assert!(view.min_compound <= -0.5, "{view:?}");
        assert!(view.max_compound > 0.5, "{view:?}");
        assert!(view.mean_compound < whole.compound, "{view:?}");
        assert_eq!(
            view.most_negative.as_deref(),
            Some("Support was rude and useless when it broke.")
        );
    }

    #[test]
    fn analyze_gives_the_full_sentence_view_and_shortcuts_one_sentence() {
        let analyzer = SentimentAnalyzer::default();
        for text in [
            "",
            "  ",
            "The lamp died after a week.",
            "  Great lamp!  ",
            "Good lamp. It died after a week. Support was kind.",
        ] {
            let analysis = analyzer.analyze(text);
            assert_eq!(analysis.scores, analyzer.polarity_scores(text), "{text:?}");
            assert_eq!(analysis.sentences, analyzer.sentence_view(text), "{text:?}");
        }
    }

    #[test]
    fn analyze_scores_every_sentence_as_it_scores_alone_on_the_corpora() {
        let analyzer = SentimentAnalyzer::default();
        let mut multi = 0;
        for text in crate::corpus_texts() {
            let text = text.as_str();
            let analysis = analyzer.analyze(text);
            assert_eq!(analysis.scores, analyzer.polarity_scores(text), "{text:?}");
            assert_eq!(analysis.sentences, analyzer.sentence_view(text), "{text:?}");
            multi += usize::from(analysis.sentences.count > 1);
        }
        assert!(multi > 3_000, "{multi}");
        // Sentences whose ends cut a token ("1.Then", "wow!great"), capitals counted per
        // sentence, "but" in one sentence only, emphasis per sentence, odd separators.
        for text in [
            "It cost 1.Then it broke. I HATE it but I LOVE the box!!!",
            "wow!great lamp.terrible support? no.",
            "GREAT lamp. awful support. but the box is nice",
            "Good.\u{1c}Bad.\u{1c} Very bad! Not good at all",
            "Good. \u{1c}Bad \u{1f}stuff. The end",
            "I love it 😍. It broke 😡! Never again.",
        ] {
            assert_eq!(
                analyzer.analyze(text).sentences,
                analyzer.sentence_view(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_most_negative_sentence_is_cut_at_a_character_count() {
        let long = format!("{} terrible.", "é".repeat(MOST_NEGATIVE_MAX_CHARS));
        assert_eq!(truncate(&long), "é".repeat(MOST_NEGATIVE_MAX_CHARS));
        assert_eq!(truncate("Awful."), "Awful.");
        let exact = "x".repeat(MOST_NEGATIVE_MAX_CHARS);
        assert_eq!(truncate(&exact), exact);
    }

    #[test]
    fn sentence_view_of_text_without_negative_sentences_names_none() {
        let analyzer = SentimentAnalyzer::default();
        let view = analyzer.sentence_view("Good lamp. Nice box.");
        assert_eq!(view.count, 2);
        assert_eq!(view.most_negative, None);
        assert_eq!(analyzer.sentence_view("   ").count, 0);
        assert_eq!(analyzer.sentence_view("").most_negative, None);
    }

    #[test]
    fn overrides_change_only_the_watchlists_analyzer() {
        let vader = SentimentAnalyzer::default();
        let skate = vader.with_overrides([("sick", Some(2.5)), ("killer", None)]);
        assert!(vader.polarity_scores("that kickflip was sick").compound < 0.0);
        assert!(skate.polarity_scores("that kickflip was sick").compound > 0.0);
        assert!(vader.polarity_scores("killer deck").compound < 0.0);
        assert_eq!(skate.polarity_scores("killer deck").compound, 0.0);
        assert_eq!(
            skate.polarity_scores("SICK").compound,
            vader
                .with_overrides([("Sick", Some(2.5))])
                .polarity_scores("SICK")
                .compound
        );
    }
}
