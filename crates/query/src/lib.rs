//! The watchlist query language of Earshot and its matcher.
//!
//! A query is parsed once ([`parse`]; errors name the position and what was expected, so that
//! config validation can report them). All watchlists are compiled together into a
//! [`QuerySet`]: one Aho-Corasick automaton over the literals a query cannot match without
//! finds the candidate watchlists of a text, and only those are evaluated on the tokens.
//! Each match says which clause held, which text spans made it, and how relevant it is.
//!
//! Relevance, 0..1, says where and how strongly a watchlist matched:
//!
//! ```text
//! relevance = 0.6 · (1 − 0.5^h) + 0.25 · (1 − s / L) + 0.15 · t
//! ```
//!
//! `h` the number of distinct text spans that made the match (one 0.5, two 0.75, three
//! 0.875: repetition is stronger), `s` the byte offset of the first span and `L` the text
//! length (the subject up front is more relevant than a passing mention at the end), `t` 1
//! when a span is a #hashtag or @mention (the post tags the subject) else 0. A match made by
//! fields alone (`author:`, `site:`, ...) has no spans and relevance 1: the post is the
//! subject's own.

mod parse;
mod text;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rustc_hash::FxHashMap;

pub use parse::{parse, Comparison, FieldTest, Node, ParseError, TextPattern, WordPattern};
pub use text::{fold, tokenize, Token, TokenKind};

/// The vocabulary number of a word or token that has none.
pub const NO_ID: u32 = u32::MAX;

/// What a query is evaluated against: a mention's text and fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Document<'a> {
    pub text: &'a str,
    /// Author handle, with or without `@`.
    pub author: &'a str,
    pub url: Option<&'a str>,
    /// Source kind (`reddit`, `rss`, ...).
    pub source: &'a str,
    /// ISO 639-1 language of the text, when known.
    pub lang: Option<&'a str>,
    pub followers: Option<i64>,
}

/// One watchlist's name and parsed query.
#[derive(Debug, Clone)]
pub struct WatchlistQuery {
    pub name: String,
    pub query: Node,
}

/// A watchlist that matched a document.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    /// Index of the watchlist in the set, in configuration order.
    pub index: usize,
    /// The part of the query that held: OR branches that did not match are left out.
    pub clause: String,
    /// Byte ranges of the text that made the match, in order, none inside another.
    pub spans: Vec<(u32, u32)>,
    pub relevance: f64,
}

/// All watchlists compiled together.
pub struct QuerySet {
    queries: Vec<WatchlistQuery>,
    /// Over the folded literals; `None` when no query has one.
    automaton: Option<AhoCorasick>,
    /// Per automaton pattern, the queries that need it.
    owners: Vec<Vec<u32>>,
    /// Queries that can match without any literal (`NOT x`, fields only): always evaluated.
    always: Vec<u32>,
    /// Every whole word of the queries, numbered; tokens are looked up once per document.
    vocabulary: FxHashMap<String, u32>,
}

impl QuerySet {
    pub fn new(mut queries: Vec<WatchlistQuery>) -> Self {
        let mut vocabulary = FxHashMap::default();
        for query in &mut queries {
            number_words(&mut query.query, &mut vocabulary);
        }
        let mut literals: Vec<String> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut index_of = std::collections::HashMap::new();
        let mut always = Vec::new();
        for (index, query) in queries.iter().enumerate() {
            match required_literals(&query.query) {
                Some(needed) => {
                    for literal in needed {
                        let pattern = *index_of.entry(literal.clone()).or_insert_with(|| {
                            literals.push(literal);
                            owners.push(Vec::new());
                            owners.len() - 1
                        });
                        if owners[pattern].last() != Some(&(index as u32)) {
                            owners[pattern].push(index as u32);
                        }
                    }
                }
                None => always.push(index as u32),
            }
        }
        let automaton = (!literals.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&literals)
                .expect("literals within the automaton's size limits")
        });
        QuerySet {
            queries,
            automaton,
            owners,
            always,
            vocabulary,
        }
    }

    pub fn queries(&self) -> &[WatchlistQuery] {
        &self.queries
    }

    /// Index of the watchlist called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.queries.iter().position(|q| q.name == name)
    }

    /// The queries worth evaluating on `text`, ascending: those whose required literals occur
    /// in it (as bytes of the folded text, so a superset of the real matches) and those that
    /// need none.
    pub fn candidates(&self, text: &str) -> Vec<usize> {
        let mut found: Vec<u32> = self.always.clone();
        if let Some(automaton) = &self.automaton {
            // ASCII text is scanned as is (the automaton ignores ASCII case); other text folded
            // first so that accents and non-ASCII case do not hide a literal.
            let folded;
            let haystack = if text.is_ascii() {
                text
            } else {
                folded = fold(text);
                folded.as_str()
            };
            for hit in automaton.find_overlapping_iter(haystack) {
                found.extend_from_slice(&self.owners[hit.pattern().as_usize()]);
            }
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|i| i as usize).collect()
    }

    /// The watchlists `document` matches, in configuration order.
    pub fn matches(&self, document: &Document<'_>) -> Vec<QueryMatch> {
        let candidates = self.candidates(document.text);
        if candidates.is_empty() {
            return Vec::new();
        }
        let prepared = Prepared::new(document, &self.vocabulary);
        let mut out = Vec::new();
        let mut hits = Vec::new();
        for index in candidates {
            let query = &self.queries[index].query;
            // Most candidates do not match: a yes/no pass that allocates nothing first, the
            // clause and spans only for the matches.
            if !holds(query, &prepared) {
                continue;
            }
            hits.clear();
            if let Some(clause) = evaluate(query, &prepared, &mut hits) {
                let hits = outermost(&mut hits);
                out.push(QueryMatch {
                    index,
                    clause,
                    relevance: relevance(&hits, document.text.len()),
                    spans: hits.iter().map(|h| (h.start, h.end)).collect(),
                });
            }
        }
        out
    }

    /// Every clause of watchlist `index` with whether it holds on `document` and the text it
    /// found, one per line, indented by depth: why a query did or did not match.
    pub fn explain(&self, index: usize, document: &Document<'_>) -> String {
        let prepared = Prepared::new(document, &self.vocabulary);
        let mut out = String::new();
        trace(&self.queries[index].query, &prepared, 0, &mut out);
        out
    }
}

/// Numbers the whole (not wildcard) words of `node` in `vocabulary`.
fn number_words(node: &mut Node, vocabulary: &mut FxHashMap<String, u32>) {
    match node {
        Node::Text(pattern) => {
            for word in pattern.words.iter_mut().filter(|w| !w.prefix) {
                let next = vocabulary.len() as u32;
                word.id = *vocabulary.entry(word.text.clone()).or_insert(next);
            }
        }
        Node::Or(children) | Node::And(children) => {
            for child in children {
                number_words(child, vocabulary);
            }
        }
        Node::Not(child) => number_words(child, vocabulary),
        Node::Near { left, right, .. } => {
            number_words(left, vocabulary);
            number_words(right, vocabulary);
        }
        Node::Field(_) => {}
    }
}

/// Literals at least one of which occurs in any text the node matches, folded; `None` when
/// the node can match without any (NOT, fields).
fn required_literals(node: &Node) -> Option<Vec<String>> {
    match node {
        Node::Text(pattern) => {
            // The longest word of a phrase is the most selective one to look for.
            let word = pattern.words.iter().max_by_key(|w| w.text.len())?;
            let literal = match word.kind {
                TokenKind::Hashtag => format!("#{}", word.text),
                TokenKind::Mention => format!("@{}", word.text),
                _ => word.text.clone(),
            };
            Some(vec![literal])
        }
        Node::Or(children) => {
            let mut all = Vec::new();
            for child in children {
                all.extend(required_literals(child)?);
            }
            Some(all)
        }
        Node::And(children) => {
            children
                .iter()
                .filter_map(required_literals)
                .min_by_key(|literals| {
                    (
                        literals.len(),
                        usize::MAX - literals.iter().map(String::len).min().unwrap_or(0),
                    )
                })
        }
        Node::Near { left, right, .. } => {
            let (left, right) = (required_literals(left)?, required_literals(right)?);
            Some(if left.len() <= right.len() {
                left
            } else {
                right
            })
        }
        Node::Not(_) | Node::Field(_) => None,
    }
}

/// A document with its text tokenized and its fields folded, for evaluation.
struct Prepared<'a> {
    document: &'a Document<'a>,
    tokens: Vec<Token>,
    author: String,
    url: Option<String>,
    host: Option<String>,
    source: String,
}

impl<'a> Prepared<'a> {
    fn new(document: &'a Document<'a>, vocabulary: &FxHashMap<String, u32>) -> Self {
        let mut tokens = tokenize(document.text);
        for token in &mut tokens {
            token.id = vocabulary.get(&token.norm).copied().unwrap_or(NO_ID);
        }
        let url = document.url.map(fold);
        let host = url.as_deref().map(|url| {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default();
            host.trim_start_matches("www.").to_owned()
        });
        Prepared {
            document,
            tokens,
            author: fold(document.author.trim().trim_start_matches('@')),
            url,
            host,
            source: fold(document.source),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    start: u32,
    end: u32,
    /// A #hashtag or @mention is part of it.
    tagged: bool,
}

/// Evaluates `node`; on a match, the clause that held, with the hits that made it appended.
fn evaluate(node: &Node, doc: &Prepared<'_>, hits: &mut Vec<Hit>) -> Option<String> {
    match node {
        Node::Text(pattern) => {
            let found = occurrences(pattern, &doc.tokens);
            if found.is_empty() {
                return None;
            }
            hits.extend(found.iter().map(|&(i, j)| hit(&doc.tokens, i, j)));
            Some(pattern.source.clone())
        }
        Node::Or(children) => {
            let mut held: Vec<(&Node, String)> = children
                .iter()
                .filter_map(|child| evaluate(child, doc, hits).map(|clause| (child, clause)))
                .collect();
            match held.len() {
                0 => None,
                // One branch held: it is the clause, as it would read on its own.
                1 => held.pop().map(|(_, clause)| clause),
                _ => Some(
                    held.into_iter()
                        .map(|(child, clause)| grouped(child, clause))
                        .collect::<Vec<_>>()
                        .join(" OR "),
                ),
            }
        }
        Node::And(children) => {
            let before = hits.len();
            let mut held = Vec::with_capacity(children.len());
            for child in children {
                match evaluate(child, doc, hits) {
                    Some(clause) => held.push(grouped(child, clause)),
                    None => {
                        hits.truncate(before);
                        return None;
                    }
                }
            }
            Some(held.join(" AND "))
        }
        Node::Not(child) => {
            let mut ignored = Vec::new();
            match evaluate(child, doc, &mut ignored) {
                Some(_) => None,
                None => Some(format!("NOT {}", grouped(child, child.to_string()))),
            }
        }
        Node::Near {
            left,
            right,
            distance,
            ordered,
        } => {
            let (lefts, rights) = (positions(left, &doc.tokens), positions(right, &doc.tokens));
            let before = hits.len();
            for &(a_start, a_end) in &lefts {
                for &(b_start, b_end) in &rights {
                    if within(
                        (a_start, a_end),
                        (b_start, b_end),
                        *distance as usize,
                        *ordered,
                    ) {
                        hits.push(hit(&doc.tokens, a_start, a_end));
                        hits.push(hit(&doc.tokens, b_start, b_end));
                    }
                }
            }
            (hits.len() > before).then(|| node.to_string())
        }
        Node::Field(test) => field_holds(test, doc).then(|| test.to_string()),
    }
}

/// Whether `node` matches, as [`evaluate`] decides, without building the clause or spans.
fn holds(node: &Node, doc: &Prepared<'_>) -> bool {
    match node {
        Node::Text(pattern) => occurs(pattern, &doc.tokens),
        Node::Or(children) => children.iter().any(|child| holds(child, doc)),
        Node::And(children) => children.iter().all(|child| holds(child, doc)),
        Node::Not(child) => !holds(child, doc),
        Node::Near {
            left,
            right,
            distance,
            ordered,
        } => {
            let rights = positions(right, &doc.tokens);
            !rights.is_empty()
                && positions(left, &doc.tokens).iter().any(|&a| {
                    rights
                        .iter()
                        .any(|&b| within(a, b, *distance as usize, *ordered))
                })
        }
        Node::Field(test) => field_holds(test, doc),
    }
}

/// Whether token ranges `a` and `b` are at most `distance` words apart (`a` first when
/// `ordered`); overlapping ranges are not.
fn within(a: (usize, usize), b: (usize, usize), distance: usize, ordered: bool) -> bool {
    let gap = if a.1 <= b.0 {
        Some(b.0 - a.1)
    } else if !ordered && b.1 <= a.0 {
        Some(a.0 - b.1)
    } else {
        None
    };
    gap.is_some_and(|gap| gap <= distance)
}

fn grouped(child: &Node, clause: String) -> String {
    match child {
        Node::Or(_) | Node::And(_) if clause.contains(' ') => format!("({clause})"),
        _ => clause,
    }
}

fn hit(tokens: &[Token], start: usize, end: usize) -> Hit {
    Hit {
        start: tokens[start].start,
        end: tokens[end - 1].end,
        tagged: tokens[start..end]
            .iter()
            .any(|t| matches!(t.kind, TokenKind::Hashtag | TokenKind::Mention)),
    }
}

/// Token ranges `[i, j)` where a positional node occurs.
fn positions(node: &Node, tokens: &[Token]) -> Vec<(usize, usize)> {
    match node {
        Node::Text(pattern) => occurrences(pattern, tokens),
        Node::Or(children) => children.iter().flat_map(|c| positions(c, tokens)).collect(),
        _ => Vec::new(),
    }
}

fn occurs(pattern: &TextPattern, tokens: &[Token]) -> bool {
    let n = pattern.words.len();
    tokens.len() >= n
        && (0..=tokens.len() - n).any(|i| {
            pattern
                .words
                .iter()
                .zip(&tokens[i..i + n])
                .all(|(word, token)| word_matches(word, token))
        })
}

fn occurrences(pattern: &TextPattern, tokens: &[Token]) -> Vec<(usize, usize)> {
    let n = pattern.words.len();
    if tokens.len() < n {
        return Vec::new();
    }
    (0..=tokens.len() - n)
        .filter(|&i| {
            pattern
                .words
                .iter()
                .zip(&tokens[i..i + n])
                .all(|(word, token)| word_matches(word, token))
        })
        .map(|i| (i, i + n))
        .collect()
}

fn word_matches(word: &WordPattern, token: &Token) -> bool {
    let kind_fits = match word.kind {
        // A plain word also finds the brand in `#lumora` and `@lumora`.
        TokenKind::Word => matches!(
            token.kind,
            TokenKind::Word | TokenKind::Hashtag | TokenKind::Mention
        ),
        kind => token.kind == kind,
    };
    kind_fits
        && if word.prefix {
            token.norm.starts_with(&word.text)
        } else {
            // Within a set both sides are numbered; the strings compare equal exactly then.
            token.id == word.id && (word.id != NO_ID || token.norm == word.text)
        }
}

fn field_holds(test: &FieldTest, doc: &Prepared<'_>) -> bool {
    match test {
        FieldTest::Author { handle, prefix } => {
            if *prefix {
                doc.author.starts_with(handle.as_str())
            } else {
                doc.author == *handle
            }
        }
        FieldTest::Site(site) => doc.host.as_deref().is_some_and(|host| {
            host == site
                || (host.len() > site.len()
                    && host.ends_with(site.as_str())
                    && host.as_bytes()[host.len() - site.len() - 1] == b'.')
        }),
        FieldTest::Lang(lang) => doc
            .document
            .lang
            .is_some_and(|l| l.eq_ignore_ascii_case(lang)),
        FieldTest::Source(source) => doc.source == *source,
        FieldTest::Url(part) => doc
            .url
            .as_deref()
            .is_some_and(|url| url.contains(part.as_str())),
        FieldTest::Followers(comparison, count) => {
            doc.document.followers.is_some_and(|f| match comparison {
                Comparison::Greater => f > *count,
                Comparison::GreaterOrEqual => f >= *count,
                Comparison::Less => f < *count,
                Comparison::LessOrEqual => f <= *count,
                Comparison::Equal => f == *count,
            })
        }
    }
}

/// Sorted hits without those inside another, so that a span counts once however many
/// clauses found it.
fn outermost(hits: &mut [Hit]) -> Vec<Hit> {
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for &hit in hits.iter() {
        match kept.last_mut() {
            Some(last) if hit.end <= last.end => last.tagged |= hit.tagged && hit == *last,
            _ => kept.push(hit),
        }
    }
    kept
}

/// The documented formula (see the crate docs).
fn relevance(hits: &[Hit], text_len: usize) -> f64 {
    let Some(first) = hits.first() else {
        return 1.0;
    };
    let strength = 1.0 - 0.5f64.powi(hits.len().min(30) as i32);
    let earliness = 1.0 - f64::from(first.start) / text_len.max(1) as f64;
    let tagged = if hits.iter().any(|h| h.tagged) {
        1.0
    } else {
        0.0
    };
    (0.6 * strength + 0.25 * earliness + 0.15 * tagged).clamp(0.0, 1.0)
}

fn trace(node: &Node, doc: &Prepared<'_>, depth: usize, out: &mut String) {
    let mut hits = Vec::new();
    let held = evaluate(node, doc, &mut hits).is_some();
    let found: Vec<&str> = outermost(&mut hits)
        .iter()
        .map(|h| &doc.document.text[h.start as usize..h.end as usize])
        .collect();
    let mark = if held { "✓" } else { "✗" };
    let label = match node {
        Node::Or(_) => "OR".to_owned(),
        Node::And(_) => "AND".to_owned(),
        other => other.to_string(),
    };
    out.push_str(&format!("{:indent$}{mark} {label}", "", indent = depth * 2));
    if !found.is_empty() && !matches!(node, Node::Not(_)) {
        out.push_str(&format!("  found {found:?}"));
    }
    out.push('\n');
    match node {
        Node::Or(children) | Node::And(children) => {
            for child in children {
                trace(child, doc, depth + 1, out);
            }
        }
        Node::Not(child) => trace(child, doc, depth + 1, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(queries: &[(&str, &str)]) -> QuerySet {
        QuerySet::new(
            queries
                .iter()
                .map(|(name, query)| WatchlistQuery {
                    name: (*name).into(),
                    query: parse(query).unwrap_or_else(|e| panic!("{query}: {e}")),
                })
                .collect(),
        )
    }

    fn doc(text: &str) -> Document<'_> {
        Document {
            text,
            author: "@sam",
            url: Some("https://www.reddit.com/r/lamps/comments/1"),
            source: "reddit",
            lang: Some("en"),
            followers: Some(12_000),
        }
    }

    /// `query` on `text`: the matched spans' text, or `None` when it does not match.
    fn check(query: &str, text: &str, expected: Option<&[&str]>) {
        let set = set(&[("w", query)]);
        let got = set.matches(&doc(text)).into_iter().next().map(|m| {
            m.spans
                .iter()
                .map(|&(s, e)| text[s as usize..e as usize].to_owned())
                .collect::<Vec<_>>()
        });
        let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            got,
            expected,
            "query {query:?} on {text:?}\n{}",
            set.explain(0, &doc(text))
        );
    }

    #[test]
    fn queries_match_as_written() {
        check("lumora", "My LUMORA lamp died", Some(&["LUMORA"]));
        check("lumora", "Lumoras are great", None);
        check(
            "lumora",
            "love #Lumora and @lumora",
            Some(&["#Lumora", "@lumora"]),
        );
        check("#lumora", "lumora lamp", None);
        check("#lumora", "lumora #LUMORA", Some(&["#LUMORA"]));
        check("@lumora", "#lumora", None);
        check("café", "CAFE creme", Some(&["CAFE"]));
        check("cafe", "Café crème", Some(&["Café"]));
        check(
            "\"lumora lamp\"",
            "the Lumora  lamp broke",
            Some(&["Lumora  lamp"]),
        );
        check("\"lumora lamp\"", "the lamp lumora broke", None);
        check(
            "refund*",
            "REFUNDS please, a refund",
            Some(&["REFUNDS", "refund"]),
        );
        check("refund*", "nonrefundable", None);
        check(
            "lumora AND refund*",
            "lumora refund",
            Some(&["lumora", "refund"]),
        );
        check("lumora refund*", "lumora only", None);
        check("lumora NOT recall", "lumora recall", None);
        check("lumora NOT recall", "lumora lamp", Some(&["lumora"]));
        check(
            "(lamp OR bulb) AND lumora",
            "lumora bulb",
            Some(&["lumora", "bulb"]),
        );
        check(
            "lumora NEAR/2 broken",
            "broken again my lumora",
            Some(&["broken", "lumora"]),
        );
        check("lumora NEAR/1 broken", "broken again my lumora", None);
        check("lumora NEAR/2f broken", "broken again my lumora", None);
        check(
            "lumora NEAR/2f broken",
            "lumora is broken",
            Some(&["lumora", "broken"]),
        );
        check(
            "(refund* OR \"money back\") NEAR/3 lumora",
            "want my money back from Lumora",
            Some(&["money back", "Lumora"]),
        );
        check("don't", "I don’t like it", Some(&["don’t"]));
        check("😡", "lamp 😡😡", Some(&["😡", "😡"]));
        check("lumora author:sam", "lumora", Some(&["lumora"]));
        check("lumora author:@other", "lumora", None);
        check("lumora author:sa*", "lumora", Some(&["lumora"]));
        check("site:reddit.com", "anything", Some(&[]));
        check("site:eddit.com", "anything", None);
        check(
            "lamp source:reddit lang:en url:/r/lamps",
            "lamp",
            Some(&["lamp"]),
        );
        check("lamp lang:de", "lamp", None);
        check("lamp followers:>10000", "lamp", Some(&["lamp"]));
        check("lamp followers:>20000", "lamp", None);
        check(
            "https://lumora.com/x",
            "see https://lumora.com/x now",
            Some(&["https://lumora.com/x"]),
        );
        check("lumora.com", "see https://lumora.com/x now", None);
    }

    #[test]
    fn only_candidates_with_a_required_literal_are_evaluated() {
        let set = set(&[
            ("lumora", "lumora OR #lamp"),
            ("refunds", "refund* AND (lumora OR parcelly)"),
            ("not-spam", "NOT casino"),
            ("verified", "author:lumora"),
            ("phrase", "\"the courier\""),
        ]);
        assert_eq!(set.candidates("nothing"), vec![2, 3]);
        assert_eq!(set.candidates("LUMORA"), vec![0, 2, 3]);
        // "refund*" is the required literal of the AND: only it makes the watchlist a candidate.
        assert_eq!(set.candidates("parcelly refunds"), vec![1, 2, 3]);
        assert_eq!(set.candidates("Courier"), vec![2, 3, 4]);
        assert_eq!(set.candidates("Ünïcode LUMÖRA"), vec![0, 2, 3]);
    }

    #[test]
    fn a_match_names_the_clause_that_held_and_its_relevance() {
        let set = set(&[("w", "(lumora OR \"lumora lamp\" OR #lamp) AND NOT recall")]);
        let text = "#lamp from lumora, lumora!";
        let found = set.matches(&doc(text));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].clause, "(lumora OR #lamp) AND NOT recall");
        assert_eq!(found[0].spans, vec![(0, 5), (11, 17), (19, 25)]);
        // 3 spans, first at 0, a hashtag: 0.6 · 0.875 + 0.25 + 0.15.
        assert!(
            (found[0].relevance - 0.925).abs() < 1e-9,
            "{}",
            found[0].relevance
        );
        let late = set.matches(&doc("what a day. in the end I chose lumora"));
        assert!(late[0].relevance < 0.4, "{}", late[0].relevance);
        let explained = set.explain(0, &doc("lumora recall"));
        assert_eq!(
            explained,
            "✗ AND\n  ✓ OR  found [\"lumora\"]\n    ✓ lumora  found [\"lumora\"]\n    ✗ \"lumora lamp\"\n    ✗ #lamp\n  ✗ NOT recall\n    ✓ recall  found [\"recall\"]\n"
        );
    }
}
