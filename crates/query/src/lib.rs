//! The watchlist query language of Earshot and its matcher.
//!
//! A query is parsed once ([`parse`]; errors name the position and what was expected, so that
//! config validation can report them). All watchlists are compiled together into a
//! [`QuerySet`]: one Aho-Corasick automaton over every word of every query scans a text once;
//! its hits on token boundaries say which query words each token is, which finds the
//! candidate watchlists (those a required word of which occurs) and is all that evaluating
//! them needs: no string is compared or allocated per candidate.
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
    /// Over the folded text of every word of every query; `None` when there are none.
    automaton: Option<AhoCorasick>,
    /// Per automaton pattern: the word number of the pattern as a whole word and as a
    /// wildcard prefix ([`NO_ID`] when no query uses it so).
    pattern_words: Vec<(u32, u32)>,
    /// Per word number, the queries for which it is a required literal.
    owners: Vec<Vec<u32>>,
    /// Queries that can match without any literal (`NOT x`, fields only): always evaluated.
    always: Vec<u32>,
    /// The clause text of each NOT, NEAR and field node, by the node's address (the queries
    /// do not move once in the set), so that a match copies it instead of formatting it.
    clauses: FxHashMap<usize, String>,
}

impl QuerySet {
    pub fn new(mut queries: Vec<WatchlistQuery>) -> Self {
        // Words are numbered by (folded text, wildcard); the automaton has one pattern per
        // distinct text.
        let mut words: FxHashMap<(String, bool), u32> = FxHashMap::default();
        for query in &mut queries {
            number_words(&mut query.query, &mut words);
        }
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_words: Vec<(u32, u32)> = Vec::new();
        let mut pattern_of: FxHashMap<String, usize> = FxHashMap::default();
        let mut numbered: Vec<(&(String, bool), &u32)> = words.iter().collect();
        numbered.sort_by_key(|(_, &id)| id);
        for ((text, prefix), &id) in numbered {
            let pattern = *pattern_of.entry(text.clone()).or_insert_with(|| {
                patterns.push(text.clone());
                pattern_words.push((NO_ID, NO_ID));
                patterns.len() - 1
            });
            if *prefix {
                pattern_words[pattern].1 = id;
            } else {
                pattern_words[pattern].0 = id;
            }
        }
        let mut owners: Vec<Vec<u32>> = vec![Vec::new(); words.len()];
        let mut always = Vec::new();
        for (index, query) in queries.iter().enumerate() {
            match required_literals(&query.query) {
                Some(needed) => {
                    for (word, _) in needed {
                        let owners = &mut owners[word as usize];
                        if owners.last() != Some(&(index as u32)) {
                            owners.push(index as u32);
                        }
                    }
                }
                None => always.push(index as u32),
            }
        }
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("query words within the automaton's size limits")
        });
        let mut set = QuerySet {
            queries,
            automaton,
            pattern_words,
            owners,
            always,
            clauses: FxHashMap::default(),
        };
        let mut clauses = FxHashMap::default();
        for query in &set.queries {
            fixed_clauses(&query.query, &mut clauses);
        }
        set.clauses = clauses;
        set
    }

    pub fn queries(&self) -> &[WatchlistQuery] {
        &self.queries
    }

    /// Index of the watchlist called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.queries.iter().position(|q| q.name == name)
    }

    /// The queries worth evaluating on `text`, ascending: those one of whose required
    /// literals is a token of it (a superset of the real matches) and those that need none.
    pub fn candidates(&self, text: &str) -> Vec<usize> {
        let view = self.view(text);
        self.candidates_in(&view)
            .into_iter()
            .map(|i| i as usize)
            .collect()
    }

    fn candidates_in(&self, view: &View) -> Vec<u32> {
        let mut found: Vec<u32> = self.always.clone();
        let mut last = NO_ID;
        for &(word, _) in &view.found {
            if word != last {
                found.extend_from_slice(&self.owners[word as usize]);
                last = word;
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// `text`'s tokens and which query words each is, from one scan of the automaton.
    ///
    /// ASCII text (most posts) is scanned whole, as is (the automaton ignores ASCII case, and
    /// folding ASCII is lower-casing); a hit counts where it starts a token's folded text and
    /// ends with it (a word) or within it (a wildcard prefix). Other text is tokenized and
    /// folded first and each token scanned on its own, which finds the same for ASCII text:
    /// the property test `the_ascii_scan_finds_what_the_folded_tokens_do` holds them together.
    fn view(&self, text: &str) -> View {
        if text.is_ascii() {
            self.view_ascii(text)
        } else {
            self.view_folded(text)
        }
    }

    fn view_ascii(&self, text: &str) -> View {
        let mut tokens: Vec<Span> = Vec::new();
        text::token_spans(text, |kind, start, end| {
            tokens.push(Span::new(kind, start, end))
        });
        let mut found = Vec::new();
        if let Some(automaton) = &self.automaton {
            for hit in automaton.find_overlapping_iter(text) {
                let start = hit.start() as u32;
                let i = tokens.partition_point(|t| t.norm_start() < start);
                let Some(token) = tokens.get(i).filter(|t| t.norm_start() == start) else {
                    continue;
                };
                let end = hit.end() as u32;
                if end <= token.end {
                    let (whole, prefix) = self.pattern_words[hit.pattern().as_usize()];
                    push_found(&mut found, whole, prefix, end == token.end, i);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        View { tokens, found }
    }

    fn view_folded(&self, text: &str) -> View {
        let folded = tokenize(text);
        let mut found = Vec::new();
        if let Some(automaton) = &self.automaton {
            for (i, token) in folded.iter().enumerate() {
                for hit in automaton.find_overlapping_iter(&token.norm) {
                    if hit.start() == 0 {
                        let (whole, prefix) = self.pattern_words[hit.pattern().as_usize()];
                        push_found(&mut found, whole, prefix, hit.end() == token.norm.len(), i);
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        let tokens = folded
            .iter()
            .map(|t| Span::new(t.kind, t.start as usize, t.end as usize))
            .collect();
        View { tokens, found }
    }

    /// The watchlists `document` matches, in configuration order.
    pub fn matches(&self, document: &Document<'_>) -> Vec<QueryMatch> {
        self.matches_in(document, self.view(document.text))
    }

    fn matches_in(&self, document: &Document<'_>, view: View) -> Vec<QueryMatch> {
        let candidates = self.candidates_in(&view);
        if candidates.is_empty() {
            return Vec::new();
        }
        let prepared = Prepared::new(document, view, &self.clauses);
        let mut out = Vec::new();
        let mut hits = Vec::new();
        for index in candidates {
            let index = index as usize;
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
        let prepared = Prepared::new(document, self.view(document.text), &self.clauses);
        let mut out = String::new();
        trace(&self.queries[index].query, &prepared, 0, &mut out);
        out
    }
}

/// The clauses of `node`'s NOT, NEAR and field nodes, by address.
fn fixed_clauses(node: &Node, clauses: &mut FxHashMap<usize, String>) {
    let clause = match node {
        Node::Text(_) => None,
        Node::Or(children) | Node::And(children) => {
            for child in children {
                fixed_clauses(child, clauses);
            }
            None
        }
        Node::Not(child) => {
            fixed_clauses(child, clauses);
            Some(format!("NOT {}", grouped(child, child.to_string())))
        }
        Node::Near { .. } | Node::Field(_) => Some(node.to_string()),
    };
    if let Some(clause) = clause {
        clauses.insert(std::ptr::from_ref(node) as usize, clause);
    }
}

/// Records that token `i` is the word `whole` (when the hit is the whole token) and starts
/// with the wildcard prefix `prefix`.
fn push_found(found: &mut Vec<(u32, u32)>, whole: u32, prefix: u32, is_whole: bool, i: usize) {
    if whole != NO_ID && is_whole {
        found.push((whole, i as u32));
    }
    if prefix != NO_ID {
        found.push((prefix, i as u32));
    }
}

/// Numbers the words of `node` by (text, wildcard) in `words`.
fn number_words(node: &mut Node, words: &mut FxHashMap<(String, bool), u32>) {
    match node {
        Node::Text(pattern) => {
            for word in pattern.words.iter_mut() {
                let next = words.len() as u32;
                word.id = *words
                    .entry((word.text.clone(), word.prefix))
                    .or_insert(next);
            }
        }
        Node::Or(children) | Node::And(children) => {
            for child in children {
                number_words(child, words);
            }
        }
        Node::Not(child) => number_words(child, words),
        Node::Near { left, right, .. } => {
            number_words(left, words);
            number_words(right, words);
        }
        Node::Field(_) => {}
    }
}

/// Words (number, length) at least one of which is a token of any text the node matches;
/// `None` when the node can match without any (NOT, fields).
fn required_literals(node: &Node) -> Option<Vec<(u32, usize)>> {
    match node {
        Node::Text(pattern) => {
            // The longest word of a phrase is the most selective one to look for.
            let word = pattern.words.iter().max_by_key(|w| w.text.len())?;
            Some(vec![(word.id, word.text.len())])
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
                        usize::MAX - literals.iter().map(|&(_, len)| len).min().unwrap_or(0),
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

/// A token's kind and byte range in the original text.
#[derive(Debug, Clone, Copy)]
struct Span {
    kind: TokenKind,
    start: u32,
    end: u32,
}

impl Span {
    fn new(kind: TokenKind, start: usize, end: usize) -> Self {
        Span {
            kind,
            start: start as u32,
            end: end as u32,
        }
    }

    /// Where the folded text starts: after the `#` or `@`.
    fn norm_start(&self) -> u32 {
        match self.kind {
            TokenKind::Hashtag | TokenKind::Mention => self.start + 1,
            _ => self.start,
        }
    }
}

/// A text as queries see it: its tokens, and which query word each token is.
struct View {
    tokens: Vec<Span>,
    /// (word number, token index), sorted: token `i` is the word (or starts with the
    /// wildcard prefix) numbered so.
    found: Vec<(u32, u32)>,
}

/// A document with its text's view and, when a field test asks, its fields folded.
struct Prepared<'a> {
    document: &'a Document<'a>,
    tokens: Vec<Span>,
    found: Vec<(u32, u32)>,
    fields: std::cell::OnceCell<Fields>,
    clauses: &'a FxHashMap<usize, String>,
}

struct Fields {
    author: String,
    url: Option<String>,
    host: Option<String>,
    source: String,
}

impl<'a> Prepared<'a> {
    fn new(document: &'a Document<'a>, view: View, clauses: &'a FxHashMap<usize, String>) -> Self {
        Prepared {
            document,
            tokens: view.tokens,
            found: view.found,
            fields: std::cell::OnceCell::new(),
            clauses,
        }
    }

    /// The clause of a NOT, NEAR or field node as it reads in a trace.
    fn clause(&self, node: &Node) -> String {
        match self.clauses.get(&(std::ptr::from_ref(node) as usize)) {
            Some(clause) => clause.clone(),
            None => match node {
                Node::Not(child) => format!("NOT {}", grouped(child, child.to_string())),
                other => other.to_string(),
            },
        }
    }

    fn fields(&self) -> &Fields {
        self.fields.get_or_init(|| {
            let document = self.document;
            let url = document.url.map(fold);
            let host = url.as_deref().map(|url| {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default();
                host.trim_start_matches("www.").to_owned()
            });
            Fields {
                author: fold(document.author.trim().trim_start_matches('@')),
                url,
                host,
                source: fold(document.source),
            }
        })
    }

    /// Whether `word` matches token `i`.
    fn word_at(&self, word: &WordPattern, i: usize) -> bool {
        kind_fits(word.kind, self.tokens[i].kind)
            && self.found.binary_search(&(word.id, i as u32)).is_ok()
    }

    /// Token ranges `[i, j)` where `pattern` occurs, in order.
    fn occurrences<'p>(
        &'p self,
        pattern: &'p TextPattern,
    ) -> impl Iterator<Item = (usize, usize)> + 'p {
        let n = pattern.words.len();
        let first = pattern.words.first().map_or(NO_ID, |w| w.id);
        let from = self.found.partition_point(|&(id, _)| id < first);
        self.found[from..]
            .iter()
            .take_while(move |&&(id, _)| id == first)
            .map(|&(_, i)| i as usize)
            .filter(move |&i| {
                i + n <= self.tokens.len()
                    && pattern
                        .words
                        .iter()
                        .enumerate()
                        .all(|(k, word)| self.word_at(word, i + k))
            })
            .map(move |i| (i, i + n))
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
            let before = hits.len();
            hits.extend(
                doc.occurrences(pattern)
                    .map(|(i, j)| hit(&doc.tokens, i, j)),
            );
            (hits.len() > before).then(|| pattern.source.clone())
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
                None => Some(doc.clause(node)),
            }
        }
        Node::Near {
            left,
            right,
            distance,
            ordered,
        } => {
            let (lefts, rights) = (positions(left, doc), positions(right, doc));
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
            (hits.len() > before).then(|| doc.clause(node))
        }
        Node::Field(test) => field_holds(test, doc).then(|| doc.clause(node)),
    }
}

/// Whether `node` matches, as [`evaluate`] decides, without building the clause or spans.
fn holds(node: &Node, doc: &Prepared<'_>) -> bool {
    match node {
        Node::Text(pattern) => doc.occurrences(pattern).next().is_some(),
        Node::Or(children) => children.iter().any(|child| holds(child, doc)),
        Node::And(children) => children.iter().all(|child| holds(child, doc)),
        Node::Not(child) => !holds(child, doc),
        Node::Near {
            left,
            right,
            distance,
            ordered,
        } => {
            let rights = positions(right, doc);
            !rights.is_empty()
                && positions(left, doc).iter().any(|&a| {
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

fn hit(tokens: &[Span], start: usize, end: usize) -> Hit {
    Hit {
        start: tokens[start].start,
        end: tokens[end - 1].end,
        tagged: tokens[start..end]
            .iter()
            .any(|t| matches!(t.kind, TokenKind::Hashtag | TokenKind::Mention)),
    }
}

/// Token ranges `[i, j)` where a positional node occurs.
fn positions(node: &Node, doc: &Prepared<'_>) -> Vec<(usize, usize)> {
    match node {
        Node::Text(pattern) => doc.occurrences(pattern).collect(),
        Node::Or(children) => children.iter().flat_map(|c| positions(c, doc)).collect(),
        _ => Vec::new(),
    }
}

/// Whether a query word of `word` kind may match a token of `token` kind.
fn kind_fits(word: TokenKind, token: TokenKind) -> bool {
    match word {
        // A plain word also finds the brand in `#lumora` and `@lumora`.
        TokenKind::Word => matches!(
            token,
            TokenKind::Word | TokenKind::Hashtag | TokenKind::Mention
        ),
        kind => token == kind,
    }
}

fn field_holds(test: &FieldTest, doc: &Prepared<'_>) -> bool {
    let fields = || doc.fields();
    match test {
        FieldTest::Author { handle, prefix } => {
            let author = &fields().author;
            if *prefix {
                author.starts_with(handle.as_str())
            } else {
                author == handle
            }
        }
        FieldTest::Site(site) => fields().host.as_deref().is_some_and(|host| {
            host == site
                || (host.len() > site.len()
                    && host.ends_with(site.as_str())
                    && host.as_bytes()[host.len() - site.len() - 1] == b'.')
        }),
        FieldTest::Lang(lang) => doc
            .document
            .lang
            .is_some_and(|l| l.eq_ignore_ascii_case(lang)),
        FieldTest::Source(source) => fields().source == *source,
        FieldTest::Url(part) => fields()
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

    /// Queries of every construct (those of crates/enricher/testdata/queries.yaml and more).
    const PROPERTY_QUERIES: &[&str] = &[
        "lumora OR #lumora OR @lumora",
        "(lumora OR #lumora) AND (refund* OR \"money back\") NOT author:lumora_help",
        "parcelly NEAR/3 (late OR delayed OR \"never arrived\")",
        "parcelly NEAR/2f (late OR delayed)",
        "brewtide lang:en",
        "(coffee OR cafe) source:reddit site:reddit.com url:/r/lamps",
        "(lumora OR parcelly OR brewtide) followers:>10000",
        "(lumora OR parcelly) AND (lawsuit OR outage OR \"data breach\" OR injur*) NOT (#ad OR giveaway)",
        "\"don't buy\" lumora",
        "@sam.bsky.social OR sam*",
        "https://lumora.com/x OR www.lumora.com",
        "lu* AND NOT lumora",
        "\"lumora lamp\" OR \"lamp lumora\" OR (lamp NEAR/1f lamp)",
        "re* NEAR/5 #ad",
        "a OR b_c OR don't OR 2024",
    ];

    /// Pieces of text the random posts are made of: the query words in several cases and
    /// shapes, near misses, and separators.
    const PIECES: &[&str] = &[
        "lumora",
        "Lumora",
        "LUMORA",
        "#lumora",
        "@Lumora",
        "lumoras",
        "lumora's",
        "illumora",
        "refund",
        "Refunds",
        "refundable",
        "money",
        "back",
        "parcelly",
        "Parcelly",
        "late",
        "delayed",
        "never",
        "arrived",
        "brewtide",
        "coffee",
        "cafe",
        "lawsuit",
        "outage",
        "data",
        "breach",
        "injured",
        "injury",
        "#ad",
        "#AD",
        "giveaway",
        "don't",
        "DON'T",
        "buy",
        "@sam.bsky.social",
        "sam",
        "samuel",
        "https://lumora.com/x",
        "https://lumora.com/x?y=1",
        "www.lumora.com",
        "lamp",
        "lu",
        "re",
        "a",
        "b_c",
        "2024",
        "#",
        "@",
        "'",
        ".",
        ",",
        "!",
        "?",
        "(",
        ")",
        "-",
        "_",
        "/",
        ":",
        "  ",
        " ",
        " ",
        " ",
    ];

    #[test]
    fn the_ascii_scan_finds_what_the_folded_tokens_do() {
        let names: Vec<String> = (0..PROPERTY_QUERIES.len())
            .map(|i| format!("q{i}"))
            .collect();
        let pairs: Vec<(&str, &str)> = names
            .iter()
            .map(String::as_str)
            .zip(PROPERTY_QUERIES.iter().copied())
            .collect();
        let set = set(&pairs);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut matched = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..next(14) {
                text.push_str(PIECES[next(PIECES.len())]);
                if next(3) > 0 {
                    text.push(' ');
                }
            }
            let (ascii, folded) = (set.view_ascii(&text), set.view_folded(&text));
            let spans = |v: &View| {
                v.tokens
                    .iter()
                    .map(|t| (t.kind, t.start, t.end))
                    .collect::<Vec<_>>()
            };
            assert_eq!(spans(&ascii), spans(&folded), "{text:?}");
            assert_eq!(ascii.found, folded.found, "{text:?}");
            let document = doc(&text);
            let fast = set.matches_in(&document, ascii);
            assert_eq!(fast, set.matches_in(&document, folded), "{text:?}");
            // The traced path agrees: a watchlist matches exactly when its trace says so.
            for (index, query) in PROPERTY_QUERIES.iter().enumerate() {
                let traced = set.explain(index, &document).starts_with('✓');
                assert_eq!(
                    fast.iter().any(|m| m.index == index),
                    traced,
                    "{text:?} {query}\n{}",
                    set.explain(index, &document)
                );
            }
            matched += fast.len();
        }
        assert!(
            matched > 1000,
            "the random posts match often enough: {matched}"
        );
    }
}
