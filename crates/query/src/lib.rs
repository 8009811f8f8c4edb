//! The watchlist query language of Earshot and its matcher.
//!
//! A query is parsed once ([`parse`]; errors name the position and what was expected, so that
//! config validation can report them). All watchlists are compiled together into a
//! [`QuerySet`]: a trie of every word of every query is walked along each token of a text, in
//! the one pass that tokenizes it, and says which query words each token is (or starts with,
//! for a wildcard). That finds the candidate watchlists (those with a word of each group of
//! words the query needs: every word of a phrase, each side of a NEAR, each child of an AND,
//! an OR's children's groups distributed over each other) and is all that evaluating them
//! needs: the queries are compiled into one contiguous program (`program.rs`), and no
//! string is compared or allocated per candidate. Each match says which text spans made it,
//! how relevant it is, and which parts of the query held; [`QuerySet::clause`] writes that
//! clause out.
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
mod program;
mod text;

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use program::{Op, Program, Word};

pub use parse::{parse, Comparison, FieldTest, Node, ParseError, TextPattern, WordPattern};
pub use text::{fold, fold_into, tokenize, Token, TokenKind};

/// The vocabulary number of a word or token that has none.
pub const NO_ID: u32 = u32::MAX;

/// In a trie value: the pattern is used as a whole word.
const AS_WHOLE: u32 = 1 << 29;
/// In a trie value: the pattern is used as a wildcard prefix.
const AS_PREFIX: u32 = 1 << 30;

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
    /// Byte ranges of the text that made the match, in order, none overlapping another (a few
    /// are kept inline, without an allocation).
    pub spans: SmallVec<[(u32, u32); 4]>,
    pub relevance: f64,
    /// Which parts of the query held, for [`QuerySet::clause`].
    held: Held,
}

/// All watchlists compiled together.
pub struct QuerySet {
    queries: Vec<WatchlistQuery>,
    /// A trie of the folded text of every word of every query, walked along each token;
    /// `None` when there are no words.
    words: Option<Words>,
    /// The number of patterns (distinct folded word texts): pattern `p` is word `p` as a
    /// whole word, word `p + patterns` as a wildcard prefix.
    patterns: u32,
    /// Per word number `w`, the queries for which it is a required literal:
    /// `owners[owner_starts[w]..owner_starts[w + 1]]`.
    owner_starts: Vec<u32>,
    owners: Vec<Owner>,
    /// Queries that can match without any literal (`NOT x`, fields only): always evaluated.
    always: Vec<u32>,
    /// The queries compiled for evaluation.
    program: Program,
}

/// The words' trie.
struct Words {
    /// Every distinct folded word text, its pattern number as value.
    trie: yada::DoubleArray<Vec<u8>>,
    /// The length of the shortest word: a shorter token is none.
    shortest: usize,
}

thread_local! {
    /// What [`QuerySet::matches`] and [`QuerySet::candidates`] fill on every call, kept per
    /// thread so that a call allocates only what it returns.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl QuerySet {
    /// Compiles `queries`.
    ///
    /// # Panics
    ///
    /// With two million queries or more, or words beyond the trie's size limit (2^29
    /// units): far beyond what a configuration holds.
    pub fn new(mut queries: Vec<WatchlistQuery>) -> Self {
        // The trie has one pattern per distinct folded word text. Pattern `p` is word `p` as
        // a whole word and word `p + patterns` as a wildcard prefix, so that the trie's value
        // says which words a token is without a look-up: the pattern, and whether each use
        // occurs in a query.
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_of: FxHashMap<String, u32> = FxHashMap::default();
        let mut uses: Vec<u32> = Vec::new();
        for query in &queries {
            each_word(&query.query, &mut |word| {
                let pattern = *pattern_of.entry(word.text.clone()).or_insert_with(|| {
                    patterns.push(word.text.clone());
                    uses.push(0);
                    patterns.len() as u32 - 1
                });
                uses[pattern as usize] |= if word.prefix { AS_PREFIX } else { AS_WHOLE };
            });
        }
        let count = patterns.len() as u32;
        assert!(count < AS_WHOLE, "fewer than 2^29 distinct query words");
        for query in &mut queries {
            number_words(&mut query.query, &mut |word| {
                pattern_of[&word.text] + if word.prefix { count } else { 0 }
            });
        }
        let mut owned: Vec<Vec<Owner>> = vec![Vec::new(); 2 * patterns.len()];
        let mut always = Vec::new();
        let groups = affordable_groups(
            queries.iter().map(|q| required_groups(&q.query)).collect(),
            2 * patterns.len(),
        );
        for (index, groups) in groups.iter().enumerate() {
            if groups.is_empty() {
                always.push(index as u32);
            }
            let all = (1u16 << groups.len()) - 1;
            for (group, literals) in groups.iter().enumerate() {
                for &(word, _) in literals {
                    let owner = Owner::new(index, group, all as u8);
                    let owners = &mut owned[word as usize];
                    if owners.last() != Some(&owner) {
                        owners.push(owner);
                    }
                }
            }
        }
        let mut owner_starts = Vec::with_capacity(owned.len() + 1);
        let mut owners = Vec::with_capacity(owned.iter().map(Vec::len).sum());
        owner_starts.push(0);
        for list in &owned {
            owners.extend_from_slice(list);
            owner_starts.push(owners.len() as u32);
        }
        // A double-array trie: the walk along a token is one or two look-ups per byte in an
        // array of 130 KB for the 10,000 queries of the bench, where an anchored
        // Aho-Corasick automaton is 600 KB (a DFA 6.5 MB) and slower to walk for its cache
        // misses. NUL ends the trie's keys: a word with one (in a URL) is left out and never
        // matches.
        let mut keys: Vec<(&[u8], u32)> = patterns
            .iter()
            .enumerate()
            .filter(|(_, text)| !text.is_empty() && !text.as_bytes().contains(&0))
            .map(|(pattern, text)| (text.as_bytes(), pattern as u32 | uses[pattern]))
            .collect();
        keys.sort_unstable();
        let words = (!keys.is_empty()).then(|| {
            let trie = yada::builder::DoubleArrayBuilder::build(&keys)
                .and_then(yada::DoubleArray::new)
                .expect("query words within the trie's size limits");
            let shortest = keys.iter().map(|(key, _)| key.len()).min().unwrap_or(0);
            Words { trie, shortest }
        });
        let mut program = Program::default();
        for query in &queries {
            program.push(&query.query);
        }
        QuerySet {
            queries,
            words,
            patterns: count,
            owner_starts,
            owners,
            always,
            program,
        }
    }

    pub fn queries(&self) -> &[WatchlistQuery] {
        &self.queries
    }

    /// Index of the watchlist called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.queries.iter().position(|q| q.name == name)
    }

    /// The queries worth evaluating on `text`, ascending: those with a word of each of their
    /// required parts (each child of an AND that needs a word) among its tokens, a superset
    /// of the real matches, and those that need none.
    pub fn candidates(&self, text: &str) -> Vec<usize> {
        with_scratch(|scratch| {
            self.view(text, &mut scratch.view);
            self.candidates_in(&scratch.view, &mut scratch.candidates);
            scratch
                .candidates
                .list
                .iter()
                .map(|&i| i as usize)
                .collect()
        })
    }

    /// The candidates of `view` into `out`, ascending.
    fn candidates_in(&self, view: &View, out: &mut Candidates) {
        out.clear(self.queries.len());
        for &query in &self.always {
            out.list.push(query);
        }
        // Each word's owners, in three passes so that the cache misses of each pass overlap
        // rather than wait for one another: where the owners are, the first of them, and
        // then all of them offered.
        out.owners.clear();
        let mut last = NO_ID;
        for &entry in &view.found {
            let word = found_word(entry);
            if word != last {
                let (from, to) = (
                    self.owner_starts[word as usize],
                    self.owner_starts[word as usize + 1],
                );
                if from < to {
                    out.owners.push((from, to));
                }
                last = word;
            }
        }
        let mut seen = 0;
        for &(from, _) in &out.owners {
            seen ^= self.owners[from as usize].0;
        }
        std::hint::black_box(seen);
        for k in 0..out.owners.len() {
            let (from, to) = out.owners[k];
            for &owner in &self.owners[from as usize..to as usize] {
                out.offer(owner);
            }
        }
        out.list.sort_unstable();
    }

    /// `text`'s tokens and which query words each is, into `view`.
    ///
    /// ASCII text (most posts) is tokenized byte by byte and lower-cased whole (folding ASCII
    /// is lower-casing), and the trie walked along each token's text from its start in the
    /// same pass: a token is a word when the walk ends on the word, and starts with a
    /// wildcard prefix when the walk passes through it. The walk stops at the first byte no
    /// word continues with. Other text is tokenized and folded first, and the walk goes
    /// along each folded token, which finds the same for ASCII text: the property test
    /// `the_ascii_scan_finds_what_the_folded_tokens_do` holds them together, and to what
    /// a plain comparison of every query word with every folded token finds.
    fn view(&self, text: &str, view: &mut View) {
        if text.is_ascii() {
            self.view_ascii(text, view);
        } else {
            self.view_folded(text, view);
        }
    }

    fn view_ascii(&self, text: &str, view: &mut View) {
        view.clear();
        let View {
            tokens,
            found,
            lower,
        } = view;
        // Folding ASCII is lower-casing: the whole text at once.
        lower.clear();
        lower.extend_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        lower.extend_from_slice(&[0; text::PADDING]);
        text::ascii_token_spans(text, lower, |kind, start, end| {
            let span = Span::new(kind, start, end);
            let folded = &lower[span.norm_start() as usize..end];
            self.walk(folded, tokens.len() as u32, found);
            tokens.push(span);
        });
        found.sort_unstable();
        found.dedup();
    }

    fn view_folded(&self, text: &str, view: &mut View) {
        view.clear();
        for (i, token) in tokenize(text).iter().enumerate() {
            self.walk(token.norm.as_bytes(), i as u32, &mut view.found);
            view.tokens.push(Span::new(
                token.kind,
                token.start as usize,
                token.end as usize,
            ));
        }
        view.found.sort_unstable();
        view.found.dedup();
    }

    /// Records in `found` the words that token `i`, of folded text `folded`, is or starts
    /// with.
    #[inline(always)]
    fn walk(&self, folded: &[u8], i: u32, found: &mut Vec<u64>) {
        let Some(Words { trie, shortest }) = &self.words else {
            return;
        };
        if folded.len() < *shortest {
            return;
        }
        for (value, length) in trie.common_prefix_search(folded) {
            let pattern = value & !(AS_WHOLE | AS_PREFIX);
            if value & AS_WHOLE != 0 && length == folded.len() {
                found.push(found_entry(pattern, i));
            }
            if value & AS_PREFIX != 0 {
                found.push(found_entry(pattern + self.patterns, i));
            }
        }
    }

    /// The watchlists `document` matches, in configuration order.
    pub fn matches(&self, document: &Document<'_>) -> Vec<QueryMatch> {
        with_scratch(|scratch| {
            self.view(document.text, &mut scratch.view);
            let Scratch {
                view,
                candidates,
                hits,
                held,
            } = scratch;
            self.matches_in(document, view, candidates, hits, held)
        })
    }

    fn matches_in(
        &self,
        document: &Document<'_>,
        view: &View,
        candidates: &mut Candidates,
        hits: &mut Vec<Hit>,
        held: &mut Vec<u64>,
    ) -> Vec<QueryMatch> {
        self.candidates_in(view, candidates);
        if candidates.list.is_empty() {
            return Vec::new();
        }
        let prepared = Prepared::new(document, view, &self.program);
        let mut out = Vec::with_capacity(candidates.list.len());
        for &index in &candidates.list {
            let index = index as usize;
            let (root, end) = self.program.query(index);
            // Candidates have a word of each part of the query that needs one, and most
            // match: evaluated once, what held and the spans recorded on the way.
            hits.clear();
            let mut marks = Marks::new(root, end, held);
            if evaluate(&prepared, root, hits, &mut marks) {
                outermost(hits);
                out.push(QueryMatch {
                    index,
                    relevance: relevance(hits, document.text.len()),
                    spans: hits.iter().map(|h| (h.start, h.end)).collect(),
                    held: marks.held(),
                });
            }
        }
        out
    }

    /// The part of `found`'s query that held, as written in the query: OR branches that did
    /// not match are left out (`(lumora OR #lumora) AND refund*` on "#lumora refunds" held
    /// as `#lumora AND refund*`). Written out when asked for, as most matches are counted,
    /// routed or stored without it.
    pub fn clause(&self, found: &QueryMatch) -> String {
        let root = self.program.root(found.index);
        let mut clause = String::with_capacity(self.program.clause_capacity(root));
        self.program
            .render(root, &|i| found.held.get(i - root), &mut clause);
        clause
    }

    /// Every clause of watchlist `index` with whether it holds on `document` and the text it
    /// found, one per line, indented by depth: why a query did or did not match.
    pub fn explain(&self, index: usize, document: &Document<'_>) -> String {
        let mut view = View::default();
        self.view(document.text, &mut view);
        let prepared = Prepared::new(document, &view, &self.program);
        let mut out = String::new();
        let root = self.program.root(index);
        trace(&self.queries[index].query, &prepared, root, 0, &mut out);
        out
    }
}

/// Buffers a match fills, reused from call to call.
#[derive(Default)]
struct Scratch {
    view: View,
    candidates: Candidates,
    hits: Vec<Hit>,
    held: Vec<u64>,
}

/// Runs `f` with this thread's scratch, or a new one if it is in use already.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Which operations of a query held, by their place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// The first 64.
    Few(u64),
    Many(Box<[u64]>),
}

impl Held {
    fn get(&self, k: usize) -> bool {
        let word = match self {
            Held::Few(bits) if k < 64 => *bits,
            Held::Few(_) => 0,
            Held::Many(bits) => bits.get(k / 64).copied().unwrap_or(0),
        };
        word >> (k % 64) & 1 == 1
    }
}

/// The operations of the query at `root` that held, marked during evaluation: in one word
/// when the query has at most 64 operations (nearly all do), otherwise in `bits`.
struct Marks<'a> {
    root: usize,
    few: u64,
    bits: &'a mut Vec<u64>,
    many: bool,
}

impl<'a> Marks<'a> {
    /// Cleared marks for the operations `root..end`, kept in `bits` when there are more
    /// than 64.
    fn new(root: usize, end: usize, bits: &'a mut Vec<u64>) -> Self {
        let many = end - root > 64;
        if many {
            bits.clear();
            bits.resize((end - root).div_ceil(64), 0);
        }
        Marks {
            root,
            few: 0,
            bits,
            many,
        }
    }

    #[inline(always)]
    fn mark(&mut self, i: usize) {
        let k = i - self.root;
        if self.many {
            self.bits[k / 64] |= 1 << (k % 64);
        } else {
            self.few |= 1 << k;
        }
    }

    fn held(&self) -> Held {
        if self.many {
            Held::Many(self.bits.as_slice().into())
        } else {
            Held::Few(self.few)
        }
    }
}

/// A query that a word makes a candidate, or brings closer to being one: the query needs a
/// word of each of its groups (the children of an AND that need words, at most eight), and
/// this word is of one of them. Packed in 32 bits (query number, group, all the groups'
/// bits), as there is one per query and word and they are read for every text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner(u32);

impl Owner {
    fn new(query: usize, group: usize, groups: u8) -> Self {
        let query = u32::try_from(query)
            .ok()
            .filter(|&q| q < 1 << 21)
            .expect("fewer than two million queries");
        Owner(query << 11 | (group as u32) << 8 | u32::from(groups))
    }

    fn query(self) -> u32 {
        self.0 >> 11
    }

    /// This word's group, as a bit.
    fn group(self) -> u8 {
        1 << ((self.0 >> 8) & 7)
    }

    /// The bits of all the query's groups.
    fn groups(self) -> u8 {
        self.0 as u8
    }
}

/// The candidates of a text: each is listed once, when all its groups are there. A query's
/// stamp says which of them are (the low 8 bits) and is current when its high 24 bits are
/// the epoch, so that clearing the set is one increment.
#[derive(Default)]
struct Candidates {
    list: Vec<u32>,
    /// Scratch: the range in `owners` of each word of the text that has owners.
    owners: Vec<(u32, u32)>,
    stamps: Vec<u32>,
    epoch: u32,
}

impl Candidates {
    /// Empties the set, for query numbers below `queries`.
    fn clear(&mut self, queries: usize) {
        self.list.clear();
        if self.stamps.len() < queries {
            self.stamps.resize(queries, 0);
        }
        self.epoch = (self.epoch + 1) & 0xFF_FFFF;
        if self.epoch == 0 {
            self.stamps.fill(0);
            self.epoch = 1;
        }
    }

    /// Records that a word of `owner`'s group is in the text.
    fn offer(&mut self, owner: Owner) {
        let stamp = &mut self.stamps[owner.query() as usize];
        if *stamp >> 8 != self.epoch {
            *stamp = self.epoch << 8;
        }
        let (had, groups) = (*stamp as u8, owner.groups());
        if had != groups {
            *stamp |= u32::from(owner.group());
            if had | owner.group() == groups {
                self.list.push(owner.query());
            }
        }
    }
}

/// Calls `each` with every word of `node`.
fn each_word(node: &Node, each: &mut impl FnMut(&WordPattern)) {
    match node {
        Node::Text(pattern) => pattern.words.iter().for_each(each),
        Node::Or(children) | Node::And(children) => {
            for child in children {
                each_word(child, each);
            }
        }
        Node::Not(child) => each_word(child, each),
        Node::Near { left, right, .. } => {
            each_word(left, each);
            each_word(right, each);
        }
        Node::Field(_) => {}
    }
}

/// Sets the number of every word of `node` to what `number` says.
fn number_words(node: &mut Node, number: &mut impl FnMut(&WordPattern) -> u32) {
    match node {
        Node::Text(pattern) => {
            for word in pattern.words.iter_mut() {
                word.id = number(word);
            }
        }
        Node::Or(children) | Node::And(children) => {
            for child in children {
                number_words(child, number);
            }
        }
        Node::Not(child) => number_words(child, number),
        Node::Near { left, right, .. } => {
            number_words(left, number);
            number_words(right, number);
        }
        Node::Field(_) => {}
    }
}

/// A group of required words: a text that matches has at least one of them among its
/// tokens. Words by (number, length), sorted, none twice.
type Group = Vec<(u32, usize)>;

/// At most this many groups are kept for a node, the most selective.
const MAX_GROUPS: usize = 8;

/// Groups of words a text must have a word of each of to match `node` (at most eight, the
/// most selective); none when it can match without any.
fn required_groups(node: &Node) -> Vec<Group> {
    required(node).unwrap_or_default()
}

/// A word in the groups of more queries than this is too costly to count for any but a
/// query's first group: its owners are read for every text that has it, and a word in that
/// many queries (`the` in many phrases) is likely in many texts.
const MAX_OWNERS: usize = 64;

/// Each query's `groups` without those, after its first, that have a word in the groups of
/// more than [`MAX_OWNERS`] queries (of `words` word numbers): dropping a group only makes
/// more texts candidates, never fewer.
fn affordable_groups(mut groups: Vec<Vec<Group>>, words: usize) -> Vec<Vec<Group>> {
    let mut queries_of = vec![0usize; words];
    for query in &groups {
        let mut seen: Vec<u32> = query.iter().flatten().map(|&(word, _)| word).collect();
        seen.sort_unstable();
        seen.dedup();
        for word in seen {
            queries_of[word as usize] += 1;
        }
    }
    for query in &mut groups {
        let mut k = 0;
        query.retain(|group| {
            k += 1;
            k == 1
                || group
                    .iter()
                    .all(|&(word, _)| queries_of[word as usize] <= MAX_OWNERS)
        });
    }
    groups
}

/// How selective a group of required words is, most first: fewer words, then a longer
/// shortest word.
fn rank(literals: &[(u32, usize)]) -> (usize, usize) {
    (
        literals.len(),
        usize::MAX - literals.iter().map(|&(_, len)| len).min().unwrap_or(0),
    )
}

/// The groups of required words of `node`, a conjunction of disjunctions: every word of a
/// phrase, both sides of a NEAR, each child of an AND; for an OR, each child's groups
/// distributed over the others' (`"a b" OR (a NEAR/3 c)` needs `a`, and `b` or `c`), so
/// that a text with only some of a phrase's words is not a candidate. Weakened, never
/// strengthened, when there are too many: any subset of the groups is still required.
/// `None` when the node can match without any word (NOT, fields).
fn required(node: &Node) -> Option<Vec<Group>> {
    let groups = match node {
        Node::Text(pattern) => pattern
            .words
            .iter()
            .map(|word| vec![(word.id, word.text.len())])
            .collect(),
        Node::And(children) => {
            let groups: Vec<Group> = children.iter().filter_map(required).flatten().collect();
            if groups.is_empty() {
                return None;
            }
            groups
        }
        Node::Near { left, right, .. } => {
            let mut groups = required(left)?;
            groups.extend(required(right)?);
            groups
        }
        Node::Or(children) => {
            let mut children = children.iter();
            let mut groups = required(children.next()?)?;
            for child in children {
                let other = required(child)?;
                // (g1 AND g2) OR (h1 AND h2) needs (g1 OR h1), (g1 OR h2), (g2 OR h1) and
                // (g2 OR h2).
                groups = simplified(
                    groups
                        .iter()
                        .flat_map(|g| other.iter().map(move |h| union(g, h)))
                        .collect(),
                );
            }
            groups
        }
        Node::Not(_) | Node::Field(_) => return None,
    };
    Some(simplified(groups))
}

/// The words of both groups.
fn union(g: &[(u32, usize)], h: &[(u32, usize)]) -> Group {
    let mut words: Group = g.iter().chain(h).copied().collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// `groups` with their words sorted, without those that another group makes redundant (a
/// group with all of another's words adds nothing), the most selective first, at most
/// [`MAX_GROUPS`].
fn simplified(mut groups: Vec<Group>) -> Vec<Group> {
    for group in &mut groups {
        group.sort_unstable();
        group.dedup();
    }
    groups.sort_by_key(|group| rank(group));
    let mut kept: Vec<Group> = Vec::new();
    for group in groups {
        let redundant = kept
            .iter()
            .any(|k| k.iter().all(|word| group.binary_search(word).is_ok()));
        if !redundant {
            kept.push(group);
        }
        if kept.len() == MAX_GROUPS {
            break;
        }
    }
    kept
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

    /// Whether it is a #hashtag or @mention.
    fn is_tag(&self) -> bool {
        matches!(self.kind, TokenKind::Hashtag | TokenKind::Mention)
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
#[derive(Default)]
struct View {
    tokens: Vec<Span>,
    /// (word number, token index) packed by [`found_entry`], sorted: token `i` is the word
    /// (or starts with the wildcard prefix) numbered so.
    found: Vec<u64>,
    /// Scratch: the text in lower case.
    lower: Vec<u8>,
}

/// A `found` entry: token `token` is word `word`. Packed so that sorting and searching
/// compare one integer.
fn found_entry(word: u32, token: u32) -> u64 {
    u64::from(word) << 32 | u64::from(token)
}

/// Word `word`'s bit in [`Prepared::present`], one of 64 (Fibonacci hashing).
#[inline(always)]
fn presence(word: u32) -> u64 {
    1 << (word.wrapping_mul(0x9E37_79B9) >> 26)
}

/// The word of a `found` entry.
fn found_word(entry: u64) -> u32 {
    (entry >> 32) as u32
}

impl View {
    fn clear(&mut self) {
        self.tokens.clear();
        self.found.clear();
    }
}

/// A document with its text's view and, when a field test asks, its fields folded.
struct Prepared<'a> {
    document: &'a Document<'a>,
    tokens: &'a [Span],
    found: &'a [u64],
    /// Which words may be in `found`: a bit per word number hashed, so that most words a
    /// text does not have are known absent without a search.
    present: u64,
    fields: std::cell::OnceCell<Fields>,
    program: &'a Program,
}

struct Fields {
    author: String,
    url: Option<String>,
    host: Option<String>,
    source: String,
}

impl<'a> Prepared<'a> {
    fn new(document: &'a Document<'a>, view: &'a View, program: &'a Program) -> Self {
        Prepared {
            document,
            tokens: &view.tokens,
            found: &view.found,
            present: view
                .found
                .iter()
                .fold(0, |present, &entry| present | presence(found_word(entry))),
            fields: std::cell::OnceCell::new(),
            program,
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

    /// The `found` entries of word `id`: the tokens that are it, ascending.
    #[inline(always)]
    fn entries(&self, id: u32) -> &'a [u64] {
        if self.present & presence(id) == 0 {
            return &[];
        }
        let found = self.found;
        let from = found.partition_point(|&e| e < found_entry(id, 0));
        let rest = &found[from..];
        let n = rest.iter().take_while(|&&e| found_word(e) == id).count();
        &rest[..n]
    }

    /// The tokens that are `word`, of a kind it may match, ascending.
    #[inline(always)]
    fn tokens_of(&self, word: Word) -> impl Iterator<Item = usize> + 'a {
        let tokens = self.tokens;
        self.entries(word.id)
            .iter()
            .map(|&entry| entry as u32 as usize)
            .filter(move |&i| kind_fits(word.kind, tokens[i].kind))
    }

    /// Whether `word` matches token `i`.
    fn word_at(&self, word: &Word, i: usize) -> bool {
        kind_fits(word.kind, self.tokens[i].kind)
            && self
                .found
                .binary_search(&found_entry(word.id, i as u32))
                .is_ok()
    }

    /// Token ranges `[i, j)` where the words occur one after the other, in order: from the
    /// tokens that are the first word (found together), those of a fitting kind followed by
    /// the other words.
    fn occurrences<'p>(&'p self, words: &'p [Word]) -> impl Iterator<Item = (usize, usize)> + 'p {
        let n = words.len();
        let (first, rest) = words
            .split_first()
            .map_or((NO_ID, &[][..]), |(first, rest)| (first.id, rest));
        let kind = words.first().map_or(TokenKind::Word, |w| w.kind);
        self.entries(first)
            .iter()
            .map(|&e| e as u32 as usize)
            .filter(move |&i| {
                kind_fits(kind, self.tokens[i].kind)
                    && i + n <= self.tokens.len()
                    && rest
                        .iter()
                        .enumerate()
                        .all(|(k, word)| self.word_at(word, i + 1 + k))
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

/// Evaluates operation `i`; on a match, marks it in `held` and appends the hits that made it
/// to `hits`, which it leaves as they were otherwise.
fn evaluate(doc: &Prepared<'_>, i: usize, hits: &mut Vec<Hit>, held: &mut Marks<'_>) -> bool {
    let program = doc.program;
    let holds = match program.op(i) {
        Op::Word(word) => word_hits(doc, word, hits),
        Op::Phrase { .. } => phrase_hits(doc, i, hits),
        Op::Or { end } => {
            let mut any = false;
            let mut child = i + 1;
            while child < end as usize {
                any |= evaluate_child(doc, child, hits, held);
                child = program.end(child);
            }
            any
        }
        Op::And { end } => {
            let before = hits.len();
            let mut child = i + 1;
            while child < end as usize {
                if !evaluate_child(doc, child, hits, held) {
                    hits.truncate(before);
                    return false;
                }
                child = program.end(child);
            }
            true
        }
        Op::Not { .. } => !holds(doc, i + 1),
        Op::Near { near } => {
            let before = hits.len();
            near_pairs(doc, i, near, &mut |a, b| {
                hits.push(hit(doc.tokens, a.0, a.1));
                hits.push(hit(doc.tokens, b.0, b.1));
                false
            });
            hits.len() > before
        }
        Op::Lang(_) | Op::FollowersOver(_) | Op::FollowersUnder(_) | Op::Field { .. } => {
            op_holds(doc, i)
        }
    };
    if holds {
        held.mark(i);
    }
    holds
}

/// [`evaluate`] for a child of an OR or AND: a word (most are) here, without the call.
#[inline(always)]
fn evaluate_child(doc: &Prepared<'_>, i: usize, hits: &mut Vec<Hit>, held: &mut Marks<'_>) -> bool {
    match doc.program.op(i) {
        Op::Word(word) => {
            let holds = word_hits(doc, word, hits);
            if holds {
                held.mark(i);
            }
            holds
        }
        _ => evaluate(doc, i, hits, held),
    }
}

/// Appends a hit for each token that is `word`; whether there were any.
#[inline(always)]
fn word_hits(doc: &Prepared<'_>, word: Word, hits: &mut Vec<Hit>) -> bool {
    let before = hits.len();
    // [`Prepared::tokens_of`] written out: on the hottest path of evaluation, the iterator
    // measured about 1.5 % slower in the matching bench.
    for &entry in doc.entries(word.id) {
        let token = doc.tokens[entry as u32 as usize];
        if kind_fits(word.kind, token.kind) {
            hits.push(Hit {
                start: token.start,
                end: token.end,
                tagged: token.is_tag(),
            });
        }
    }
    hits.len() > before
}

/// Appends the hits of phrase operation `i`; whether there were any.
fn phrase_hits(doc: &Prepared<'_>, i: usize, hits: &mut Vec<Hit>) -> bool {
    let before = hits.len();
    for (start, end) in doc.occurrences(doc.program.words(i)) {
        hits.push(hit(doc.tokens, start, end));
    }
    hits.len() > before
}

/// Whether operation `i` matches, as [`evaluate`] decides, without marking what held or
/// collecting spans.
fn holds(doc: &Prepared<'_>, i: usize) -> bool {
    let program = doc.program;
    match program.op(i) {
        Op::Word(word) => doc.tokens_of(word).next().is_some(),
        Op::Phrase { .. } => doc.occurrences(program.words(i)).next().is_some(),
        Op::Or { end } => program.children(i, end).any(|child| holds(doc, child)),
        Op::And { end } => program.children(i, end).all(|child| holds(doc, child)),
        Op::Not { .. } => !holds(doc, i + 1),
        Op::Near { near } => near_pairs(doc, i, near, &mut |_, _| true),
        Op::Lang(_) | Op::FollowersOver(_) | Op::FollowersUnder(_) | Op::Field { .. } => {
            op_holds(doc, i)
        }
    }
}

/// Token ranges, a few inline.
type Positions = SmallVec<[(usize, usize); 8]>;

/// Calls `each` with every pair of token ranges of NEAR operation `i`'s sides that are near
/// enough, left side first, until it returns true; whether it did.
fn near_pairs(
    doc: &Prepared<'_>,
    i: usize,
    near: u32,
    each: &mut impl FnMut((usize, usize), (usize, usize)) -> bool,
) -> bool {
    let (right, near) = doc.program.near(i, near);
    let mut left_at = Positions::new();
    positions(doc, i + 1, &mut left_at);
    if left_at.is_empty() {
        return false;
    }
    let mut right_at = Positions::new();
    positions(doc, right, &mut right_at);
    for &a in &left_at {
        for &b in &right_at {
            if within(a, b, near.distance as usize, near.ordered) && each(a, b) {
                return true;
            }
        }
    }
    false
}

/// Whether field test operation `i` holds.
fn op_holds(doc: &Prepared<'_>, i: usize) -> bool {
    match doc.program.op(i) {
        Op::Lang(lang) => lang_holds(&lang, doc),
        Op::FollowersOver(n) => {
            followers_hold(Comparison::Greater, n.into(), doc.document.followers)
        }
        Op::FollowersUnder(n) => followers_hold(Comparison::Less, n.into(), doc.document.followers),
        Op::Field { test } => field_holds(doc.program.field(test), doc),
        _ => false,
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
    if matches!(child, Node::Or(_) | Node::And(_)) && clause.contains(' ') {
        format!("({clause})")
    } else {
        clause
    }
}

fn hit(tokens: &[Span], start: usize, end: usize) -> Hit {
    Hit {
        start: tokens[start].start,
        end: tokens[end - 1].end,
        tagged: tokens[start..end].iter().any(Span::is_tag),
    }
}

/// Appends the token ranges `[i, j)` where positional operation `op` occurs (a text, or an
/// OR of texts), in order.
fn positions(doc: &Prepared<'_>, op: usize, out: &mut Positions) {
    let program = doc.program;
    match program.op(op) {
        Op::Word(word) => out.extend(doc.tokens_of(word).map(|i| (i, i + 1))),
        Op::Phrase { .. } => out.extend(doc.occurrences(program.words(op))),
        Op::Or { end } => {
            for child in program.children(op, end) {
                positions(doc, child, out);
            }
        }
        _ => {}
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
        FieldTest::Lang(lang) => lang_holds(lang.as_bytes(), doc),
        FieldTest::Source(source) => fields().source == *source,
        FieldTest::Url(part) => fields()
            .url
            .as_deref()
            .is_some_and(|url| url.contains(part.as_str())),
        FieldTest::Followers(comparison, count) => {
            followers_hold(*comparison, *count, doc.document.followers)
        }
    }
}

/// Whether an author with `followers` (when known) passes `followers:` `comparison` `count`.
fn followers_hold(comparison: Comparison, count: i64, followers: Option<i64>) -> bool {
    followers.is_some_and(|f| match comparison {
        Comparison::Greater => f > count,
        Comparison::GreaterOrEqual => f >= count,
        Comparison::Less => f < count,
        Comparison::LessOrEqual => f <= count,
        Comparison::Equal => f == count,
    })
}

fn lang_holds(lang: &[u8], doc: &Prepared<'_>) -> bool {
    doc.document
        .lang
        .is_some_and(|l| l.as_bytes().eq_ignore_ascii_case(lang))
}

/// Sorts `hits` and joins those that overlap into one, so that a span counts once however
/// many clauses found it and the spans of a match never overlap (`"acme pro" AND "pro max"`
/// on "acme pro max" made one span, not two that share "pro").
fn outermost(hits: &mut Vec<Hit>) {
    if hits.len() < 2 {
        return;
    }
    // Hits with the same range are the same hit (`tagged` follows from the tokens).
    hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut kept = 0;
    for i in 0..hits.len() {
        let hit = hits[i];
        if kept > 0 && hit.start < hits[kept - 1].end {
            let last = &mut hits[kept - 1];
            last.end = last.end.max(hit.end);
            last.tagged |= hit.tagged;
            continue;
        }
        hits[kept] = hit;
        kept += 1;
    }
    hits.truncate(kept);
}

/// 1 - 0.5^h for h spans, to 30: exact, as each 0.5^h is.
const STRENGTH: [f64; 31] = {
    let mut strength = [0.0; 31];
    let (mut h, mut half_to_h) = (0, 1.0);
    while h < 31 {
        strength[h] = 1.0 - half_to_h;
        half_to_h /= 2.0;
        h += 1;
    }
    strength
};

/// The documented formula (see the crate docs).
fn relevance(hits: &[Hit], text_len: usize) -> f64 {
    let Some(first) = hits.first() else {
        return 1.0;
    };
    let strength = STRENGTH[hits.len().min(30)];
    let earliness = 1.0 - f64::from(first.start) / text_len.max(1) as f64;
    let tagged = if hits.iter().any(|h| h.tagged) {
        1.0
    } else {
        0.0
    };
    (0.6 * strength + 0.25 * earliness + 0.15 * tagged).clamp(0.0, 1.0)
}

/// Appends the trace of `node`, compiled as operation `op`, and of its children.
fn trace(node: &Node, doc: &Prepared<'_>, op: usize, depth: usize, out: &mut String) {
    let (mut hits, mut bits) = (Vec::new(), Vec::new());
    let end = doc.program.end(op);
    let held = evaluate(doc, op, &mut hits, &mut Marks::new(op, end, &mut bits));
    outermost(&mut hits);
    let found: Vec<&str> = hits
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
    let program = doc.program;
    match (node, program.op(op)) {
        (Node::Or(children), Op::Or { end }) | (Node::And(children), Op::And { end }) => {
            for (child, child_op) in children.iter().zip(program.children(op, end)) {
                trace(child, doc, child_op, depth + 1, out);
            }
        }
        (Node::Not(child), _) => trace(child, doc, op + 1, depth + 1, out),
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
        // The AND needs a word of each of its children: "refund*", and lumora or parcelly.
        assert_eq!(set.candidates("parcelly refunds"), vec![1, 2, 3]);
        assert_eq!(set.candidates("refunds only"), vec![2, 3]);
        assert_eq!(set.candidates("parcelly only"), vec![2, 3]);
        assert_eq!(set.candidates("lumora refund"), vec![0, 1, 2, 3]);
        // A phrase needs every one of its words.
        assert_eq!(set.candidates("Courier"), vec![2, 3]);
        assert_eq!(set.candidates("the Courier"), vec![2, 3, 4]);
        assert_eq!(set.candidates("Ünïcode LUMÖRA"), vec![0, 2, 3]);
    }

    #[test]
    fn a_word_in_many_queries_makes_no_group_beyond_the_first() {
        // "the" is in all 200 phrases; a text with it alone reads none of their owners.
        let names: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let queries: Vec<String> = (0..200).map(|i| format!("\"the lumora{i}\"")).collect();
        let pairs: Vec<(&str, &str)> = names
            .iter()
            .map(String::as_str)
            .zip(queries.iter().map(String::as_str))
            .collect();
        let set = set(&pairs);
        let the = set
            .owner_starts
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0);
        assert_eq!(the, 1, "no word has more than one owner");
        assert_eq!(set.candidates("the lumora7 lamp"), vec![7]);
        assert!(set.candidates("the lamp").is_empty());
        assert_eq!(set.matches(&doc("the lumora7"))[0].index, 7);
        assert!(set.matches(&doc("lumora7 the")).is_empty());
    }

    #[test]
    fn an_or_needs_a_word_of_each_group_its_children_share() {
        // ("parcel" AND "late") OR ("parcel" AND "delayed"): parcel, and late or delayed.
        let set = set(&[
            ("late", "\"parcel late\" OR (parcel NEAR/3 delayed)"),
            (
                "either",
                "\"lumora lamp\" OR (#lamp AND refund*) OR NOT casino",
            ),
            (
                "nested",
                "(lumora AND (refund OR return)) OR (parcelly AND refund)",
            ),
        ]);
        assert_eq!(set.candidates("a parcel"), vec![1]);
        assert_eq!(set.candidates("late and delayed"), vec![1]);
        assert_eq!(set.candidates("parcel running late"), vec![0, 1]);
        assert_eq!(set.candidates("delayed parcel"), vec![0, 1]);
        // A branch that needs no word (NOT casino) makes the OR need none.
        assert_eq!(set.candidates("casino"), vec![1]);
        // (lumora OR parcelly) AND (lumora OR refund) AND refund-or-return ..., weakened
        // but never missing a match.
        assert_eq!(set.candidates("lumora return"), vec![1, 2]);
        assert_eq!(set.candidates("parcelly refund"), vec![1, 2]);
        assert_eq!(set.candidates("parcelly return"), vec![1]);
        assert_eq!(set.candidates("refund"), vec![1]);
        let matched =
            |text| -> Vec<usize> { set.matches(&doc(text)).iter().map(|m| m.index).collect() };
        assert_eq!(matched("delayed parcel"), vec![0, 1]);
        assert_eq!(matched("parcelly refund"), vec![1, 2]);
        assert_eq!(matched("parcel running late"), vec![1]);
    }

    #[test]
    fn a_match_names_the_clause_that_held_and_its_relevance() {
        let set = set(&[("w", "(lumora OR \"lumora lamp\" OR #lamp) AND NOT recall")]);
        let text = "#lamp from lumora, lumora!";
        let found = set.matches(&doc(text));
        assert_eq!(found.len(), 1);
        assert_eq!(set.clause(&found[0]), "(lumora OR #lamp) AND NOT recall");
        assert_eq!(found[0].spans.as_slice(), [(0, 5), (11, 17), (19, 25)]);
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

    #[test]
    fn the_clause_leaves_out_the_or_branches_that_did_not_hold() {
        for (query, text, expected) in [
            ("lumora", "LUMORA", "lumora"),
            ("(a AND b) OR c", "a b c", "(a AND b) OR c"),
            ("(a AND b) OR c", "b a", "a AND b"),
            ("(a AND b) OR c", "c", "c"),
            ("c OR (a AND b)", "c a b", "c OR (a AND b)"),
            ("((a OR b) AND c) OR d", "a b c d", "((a OR b) AND c) OR d"),
            ("((a OR b) AND c) OR d", "a c", "a AND c"),
            ("((a OR b) AND c) OR d", "b c d", "(b AND c) OR d"),
            ("(a OR b OR c) AND d", "c d a", "(a OR c) AND d"),
            (
                "(a OR b) NEAR/2 c lang:en",
                "b x c",
                "(a OR b) NEAR/2 c AND lang:en",
            ),
            ("x OR (NOT y AND z)", "z", "NOT y AND z"),
            ("x OR (NOT y AND z)", "x z", "x OR (NOT y AND z)"),
            ("\"a b\" OR #c", "#c a b", "\"a b\" OR #c"),
        ] {
            let set = set(&[("w", query)]);
            let found = set.matches(&doc(text));
            assert_eq!(found.len(), 1, "{query} on {text:?}");
            assert_eq!(set.clause(&found[0]), expected, "{query} on {text:?}");
        }
    }

    #[test]
    fn overlapping_clauses_make_one_span() {
        let set = set(&[("pro", "\"acme pro\" AND \"pro max\"")]);
        let found = set.matches(&doc("new acme pro max today"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].spans.as_slice(), [(4, 16)]);
        // Inside another: counted once.
        let set = self::set(&[("in", "\"acme pro max\" AND pro")]);
        let found = set.matches(&doc("acme pro max"));
        assert_eq!(found[0].spans.as_slice(), [(0, 12)]);
    }

    #[test]
    fn long_queries_match_and_say_what_held() {
        // More than 64 operations: what held does not fit in one word of bits.
        let words: Vec<String> = (0..70).map(|i| format!("w{i}")).collect();
        let any = words.join(" OR ");
        let any = set(&[("any", &any)]);
        let found = any.matches(&doc("w3 and w65"));
        assert_eq!(found.len(), 1);
        assert_eq!(any.clause(&found[0]), "w3 OR w65");
        assert_eq!(found[0].spans.as_slice(), [(0, 2), (7, 10)]);
        // More than eight required parts: the candidates look for eight, evaluation for all.
        let all = words[..10].join(" AND ");
        let all = set(&[("all", &all)]);
        let text = words[..10].join(" ");
        assert_eq!(all.matches(&doc(&text)).len(), 1);
        for missing in 0..10 {
            let text: Vec<&str> = words[..10]
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != missing)
                .map(|(_, w)| w.as_str())
                .collect();
            assert!(all.matches(&doc(&text.join(" "))).is_empty(), "{missing}");
        }
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
        "(\"money back\" AND lumora) OR (refund* NEAR/2 parcelly) OR \"never arrived\"",
        "(lumora OR \"lumora lamp\") AND (late OR (delayed AND parcelly))",
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

    /// What the trie's walks must find, found the slow way: (word number, token index)
    /// for each query word that a folded token is or, for a wildcard, starts with.
    fn words_of_tokens(set: &QuerySet, text: &str) -> Vec<(u32, u32)> {
        fn words<'n>(node: &'n Node, out: &mut Vec<&'n WordPattern>) {
            match node {
                Node::Text(pattern) => out.extend(&pattern.words),
                Node::Or(children) | Node::And(children) => {
                    children.iter().for_each(|child| words(child, out))
                }
                Node::Not(child) => words(child, out),
                Node::Near { left, right, .. } => {
                    words(left, out);
                    words(right, out);
                }
                Node::Field(_) => {}
            }
        }
        let mut all = Vec::new();
        for query in set.queries() {
            words(&query.query, &mut all);
        }
        let mut found: Vec<(u32, u32)> = tokenize(text)
            .iter()
            .enumerate()
            .flat_map(|(i, token)| {
                all.iter()
                    .filter(|word| {
                        if word.prefix {
                            token.norm.starts_with(&word.text)
                        } else {
                            token.norm == word.text
                        }
                    })
                    .map(move |word| (word.id, i as u32))
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// A view's `found` as (word number, token index) pairs.
    fn found_pairs(view: &View) -> Vec<(u32, u32)> {
        view.found
            .iter()
            .map(|&e| (found_word(e), e as u32))
            .collect()
    }

    #[test]
    fn the_walks_along_folded_tokens_find_their_words() {
        let set = set(&[
            ("a", "café OR lumora OR refund* OR \"don't\" OR #eclair"),
            ("b", "naïve NEAR/2 ångström* OR ß OR 😡"),
        ]);
        for text in [
            "Café LUMÖRA #Lumöra don’t refünds Refunds",
            "naïve ÉCLAIR #Éclair Ångströms ß SS 😡😡",
            "",
            "ÜBER",
        ] {
            let mut view = View::default();
            set.view(text, &mut view);
            assert_eq!(found_pairs(&view), words_of_tokens(&set, text), "{text:?}");
        }
        let mut view = View::default();
        set.view("Café LUMÖRA #Lumöra don’t", &mut view);
        assert_eq!(view.found.len(), 4, "the walks find something");
    }

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
            let (mut ascii, mut folded) = (View::default(), View::default());
            set.view_ascii(&text, &mut ascii);
            set.view_folded(&text, &mut folded);
            let spans = |v: &View| {
                v.tokens
                    .iter()
                    .map(|t| (t.kind, t.start, t.end))
                    .collect::<Vec<_>>()
            };
            assert_eq!(spans(&ascii), spans(&folded), "{text:?}");
            assert_eq!(ascii.found, folded.found, "{text:?}");
            assert_eq!(
                found_pairs(&ascii),
                words_of_tokens(&set, &text),
                "{text:?}"
            );
            let document = doc(&text);
            let mut scratch = Scratch::default();
            let fast = set.matches(&document);
            for view in [&ascii, &folded] {
                let Scratch {
                    candidates,
                    hits,
                    held,
                    ..
                } = &mut scratch;
                let found = set.matches_in(&document, view, candidates, hits, held);
                assert_eq!(fast, found, "{text:?}");
            }
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
