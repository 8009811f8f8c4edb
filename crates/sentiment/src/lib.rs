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
mod vader;

use std::cell::RefCell;
use std::sync::Arc;

use unicode_segmentation::UnicodeSegmentation;

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
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.polarity_scores_with(text, &mut scratch),
            Err(_) => self.polarity_scores_with(text, &mut Scratch::default()),
        })
    }

    /// [`SentimentAnalyzer::polarity_scores`] with caller-owned buffers.
    pub fn polarity_scores_with(&self, text: &str, scratch: &mut Scratch) -> Scores {
        vader::polarity_scores(&self.lexicon, text, scratch)
    }

    /// The whole-text scores and the sentence view of `text`, scoring a one-sentence text
    /// once.
    pub fn analyze(&self, text: &str) -> Analysis {
        let scores = self.polarity_scores(text);
        let mut sentences = sentences(text);
        let sentences = match (sentences.next(), sentences.next()) {
            (None, _) => SentenceView::default(),
            // VADER ignores surrounding whitespace, so the one sentence scores as the text.
            (Some(only), None) => SentenceView {
                count: 1,
                mean_compound: scores.compound,
                min_compound: scores.compound,
                max_compound: scores.compound,
                most_negative: (scores.compound <= NEGATIVE_THRESHOLD).then(|| truncate(only)),
            },
            (Some(_), Some(_)) => self.sentence_view(text),
        };
        Analysis { scores, sentences }
    }

    /// Scores each sentence (Unicode sentence boundaries, UAX #29) and summarizes them.
    pub fn sentence_view(&self, text: &str) -> SentenceView {
        let mut view = SentenceView::default();
        let (mut sum, mut highest, mut lowest) = (0.0f64, f64::NEG_INFINITY, None::<(f64, &str)>);
        for sentence in text
            .split_sentence_bounds()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let compound = self.polarity_scores(sentence).compound;
            view.count += 1;
            sum += compound;
            highest = highest.max(compound);
            if lowest.is_none_or(|(low, _)| compound < low) {
                lowest = Some((compound, sentence));
            }
        }
        if let Some((low, _)) = lowest {
            view.mean_compound = python_round(sum / view.count as f64, 4);
            view.min_compound = low;
            view.max_compound = highest;
        }
        view.most_negative = lowest
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

fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn truncate(sentence: &str) -> String {
    sentence.chars().take(MOST_NEGATIVE_MAX_CHARS).collect()
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
