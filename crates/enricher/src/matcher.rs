//! Watchlist matching on plain terms: every term of every watchlist compiled into one
//! Aho-Corasick automaton, ASCII case-insensitive, accepted only on word boundaries.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use earshot_core::config::WatchlistConfig;
use earshot_core::model::{Span, WatchlistMatch};

pub struct WatchlistMatcher {
    automaton: Option<AhoCorasick>,
    /// Per pattern: (watchlist index, the term as configured).
    patterns: Vec<(usize, String)>,
    names: Vec<String>,
}

impl WatchlistMatcher {
    pub fn new(watchlists: &[WatchlistConfig]) -> Self {
        let mut patterns = Vec::new();
        for (index, watchlist) in watchlists.iter().enumerate() {
            for term in &watchlist.terms {
                patterns.push((index, term.trim().to_owned()));
            }
        }
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(patterns.iter().map(|(_, term)| term.as_str()))
                .expect("plain terms always compile")
        });
        WatchlistMatcher {
            automaton,
            patterns,
            names: watchlists.iter().map(|w| w.name.clone()).collect(),
        }
    }

    /// The watchlists `text` matches, in configuration order, with the spans of their terms.
    ///
    /// Relevance is `1 - 0.5^hits` over the term occurrences found (one hit 0.5, two 0.75,
    /// three 0.875), a placeholder until query relevance lands.
    pub fn matches(&self, text: &str) -> Vec<WatchlistMatch> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let mut found: BTreeMap<usize, (Vec<Span>, Vec<&str>)> = BTreeMap::new();
        // Overlapping search so that a term inside a longer non-boundary match is still seen.
        for hit in automaton.find_overlapping_iter(text) {
            if !on_word_boundaries(text, hit.start(), hit.end()) {
                continue;
            }
            let (watchlist, term) = &self.patterns[hit.pattern().as_usize()];
            let entry = found.entry(*watchlist).or_default();
            entry.0.push(Span {
                start: hit.start() as i32,
                end: hit.end() as i32,
            });
            if !entry.1.contains(&term.as_str()) {
                entry.1.push(term);
            }
        }
        found
            .into_iter()
            .map(|(index, (spans, terms))| (index, (outermost(spans), terms)))
            .map(|(index, (spans, terms))| WatchlistMatch {
                watchlist: self.names[index].clone(),
                relevance: 1.0 - 0.5f64.powi(spans.len().min(30) as i32),
                clause: terms
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(" OR "),
                spans,
            })
            .collect()
    }
}

/// Drops spans inside another span of the same watchlist, so that `#lumora` counts once even
/// when both `#lumora` and `Lumora` are terms.
fn outermost(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        if kept.last().is_none_or(|last| span.end > last.end) {
            kept.push(span);
        }
    }
    kept
}

fn on_word_boundaries(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    before.is_none_or(|c| !is_word(c)) && after.is_none_or(|c| !is_word(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> WatchlistMatcher {
        WatchlistMatcher::new(&[
            WatchlistConfig {
                name: "lumora".into(),
                terms: vec!["Lumora".into(), "#lumora".into()],
                sentiment_lexicon: Default::default(),
            },
            WatchlistConfig {
                name: "parcelly".into(),
                terms: vec!["parcelly".into()],
                sentiment_lexicon: Default::default(),
            },
        ])
    }

    fn check(text: &str, expected: &[(&str, usize)]) {
        let got: Vec<(String, usize)> = matcher()
            .matches(text)
            .into_iter()
            .map(|m| (m.watchlist, m.spans.len()))
            .collect();
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        assert_eq!(got, expected, "text: {text:?}");
    }

    #[test]
    fn terms_match_case_insensitively_on_word_boundaries() {
        check("My LUMORA lamp died", &[("lumora", 1)]);
        check("lumora, lumora!", &[("lumora", 2)]);
        check("Lumoras are great", &[]);
        check("illumoraX", &[]);
        check(
            "@Lumora where is my order via parcelly?",
            &[("lumora", 1), ("parcelly", 1)],
        );
        check("love #lumora", &[("lumora", 1)]);
        // "#lumora" needs a boundary before "#"; the plain term still matches after it.
        check("love#lumora", &[("lumora", 1)]);
        check("#lumora #Lumora lumora", &[("lumora", 3)]);
        check("nothing here", &[]);
        check("", &[]);
    }

    #[test]
    fn spans_point_at_the_term() {
        let text = "über Parcelly";
        let matches = matcher().matches(text);
        let span = matches[0].spans[0];
        assert_eq!(&text[span.start as usize..span.end as usize], "Parcelly");
        assert_eq!(matches[0].relevance, 0.5);
    }
}
