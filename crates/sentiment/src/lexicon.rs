//! The VADER lexicons (vaderSentiment 3.3.2, MIT, `lexicon/LICENSE.vaderSentiment.txt`),
//! embedded at build time, and per-use overrides of word valences.

use rustc_hash::FxHashMap;

use crate::vader::{rule_words, Word};

const VADER_LEXICON: &str = include_str!("../lexicon/vader_lexicon.txt");
const EMOJI_LEXICON: &str = include_str!("../lexicon/emoji_utf8_lexicon.txt");

/// Word valences and emoji descriptions.
#[derive(Clone)]
pub struct Lexicon {
    /// Lexicon words and the words VADER's rules name (boosters, negations, "but", ...), so
    /// that one lookup per token answers every question the rules ask of it.
    words: FxHashMap<Box<str>, Word>,
    /// Single-character emoji only: the reference looks emoji up one character at a time, so
    /// its multi-character entries (flags, keycaps, skin tones) never match.
    emoji: FxHashMap<char, &'static str>,
}

/// A lexicon line that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("lexicon line {line}: {reason}")]
pub struct LexiconError {
    pub line: usize,
    pub reason: String,
}

impl Lexicon {
    /// The lexicons of vaderSentiment 3.3.2, exactly as it reads them.
    pub fn vader() -> Self {
        Lexicon::parse(VADER_LEXICON, EMOJI_LEXICON).expect("the embedded lexicons are well formed")
    }

    /// Reads lexicons in vaderSentiment's formats: `word<TAB>valence<TAB>…` per line, and
    /// `emoji<TAB>description` per line. A later line for the same word wins, as in the
    /// reference.
    pub fn parse(words: &str, emoji: &'static str) -> Result<Self, LexiconError> {
        let mut word_map: FxHashMap<Box<str>, Word> = FxHashMap::default();
        for (index, line) in words.trim_end_matches('\n').split('\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let mut fields = line.trim().split('\t');
            let (Some(word), Some(valence)) = (fields.next(), fields.next()) else {
                return Err(LexiconError {
                    line: index + 1,
                    reason: "expected word<TAB>valence".into(),
                });
            };
            let valence: f64 = valence.parse().map_err(|_| LexiconError {
                line: index + 1,
                reason: format!("valence {valence:?} of {word:?} is not a number"),
            })?;
            word_map.entry(Box::from(word)).or_default().valence = valence;
        }
        for (word, booster, flags) in rule_words() {
            let entry = word_map.entry(Box::from(word)).or_default();
            if let Some(booster) = booster {
                entry.booster = booster;
            }
            entry.flags |= flags;
        }
        let mut emoji_map = FxHashMap::default();
        for (index, line) in emoji.trim_end_matches('\n').split('\n').enumerate() {
            let mut fields = line.trim().split('\t');
            let (Some(symbol), Some(description)) = (fields.next(), fields.next()) else {
                return Err(LexiconError {
                    line: index + 1,
                    reason: "expected emoji<TAB>description".into(),
                });
            };
            let mut chars = symbol.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                emoji_map.insert(c, description);
            }
        }
        Ok(Lexicon {
            words: word_map,
            emoji: emoji_map,
        })
    }

    /// The valence of a lowercased word.
    #[inline]
    pub fn valence(&self, word: &str) -> Option<f64> {
        self.words.get(word).and_then(|w| w.valence())
    }

    /// Everything the rules know of a lowercased word.
    #[inline]
    pub(crate) fn word(&self, word: &str) -> Option<Word> {
        self.words.get(word).copied()
    }

    /// The description of an emoji character.
    #[inline]
    pub fn emoji(&self, c: char) -> Option<&'static str> {
        if (c as u32) < 0xA9 {
            return None; // nothing below © is an emoji of the lexicon
        }
        self.emoji.get(&c).copied()
    }

    /// Sets the valence of a word (lowercased, as lookups are), adding it if missing. A
    /// valence of 0 keeps the word in the lexicon with no sentiment, which still counts it
    /// as a lexicon word for the neighbouring rules, as VADER would.
    pub fn set_valence(&mut self, word: &str, valence: f64) {
        self.words
            .entry(Box::from(word.to_lowercase()))
            .or_default()
            .valence = valence;
    }

    /// Removes a word's valence, so that it is scored as a word outside the lexicon (what the
    /// rules know of it, as a booster or a negation, stays).
    pub fn remove(&mut self, word: &str) {
        if let Some(entry) = self.words.get_mut(word.to_lowercase().as_str()) {
            entry.valence = f64::NAN;
        }
    }

    /// Number of words with a valence.
    pub fn len(&self) -> usize {
        self.words
            .values()
            .filter(|w| w.valence().is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_short_and_long_are_found_set_and_removed_alike() {
        let mut lexicon = Lexicon::vader();
        assert_eq!(lexicon.valence("good"), Some(1.9));
        assert_eq!(lexicon.valence("adventurousness"), Some(1.8));
        assert_eq!(lexicon.valence("advantageousness"), Some(1.6));
        // A prefix, or the word with a NUL, is another word.
        assert_eq!(lexicon.valence("goo"), None);
        assert_eq!(lexicon.valence("good\0"), None);
        assert_eq!(lexicon.valence(""), None);
        let count = lexicon.len();
        lexicon.set_valence("Advantageousness", -1.0);
        lexicon.set_valence("GOOD", 0.5);
        lexicon.set_valence("a-sixteen-bytes!", 2.0);
        assert_eq!(lexicon.valence("advantageousness"), Some(-1.0));
        assert_eq!(lexicon.valence("good"), Some(0.5));
        assert_eq!(lexicon.valence("a-sixteen-bytes!"), Some(2.0));
        assert_eq!(lexicon.len(), count + 1);
        lexicon.remove("good");
        lexicon.remove("advantageousness");
        assert_eq!(lexicon.valence("good"), None);
        assert_eq!(lexicon.valence("advantageousness"), None);
        assert_eq!(lexicon.len(), count - 1);
    }
}
