//! The VADER rules, step for step as `SentimentIntensityAnalyzer.polarity_scores` in
//! vaderSentiment 3.3.2, over a token table built once per text.
//!
//! Every rule reads the table by index; no token is allocated, hashed or lowercased twice.
//! Where the reference has a quirk that changes scores, it is reproduced and named here:
//! - emoji descriptions are spliced in with a space before but none after;
//! - a token's `isupper()` is taken after punctuation stripping, so `:D` counts as capitals;
//! - in the third-word-back negation step, a "so"/"this" right before the word adds 25%
//!   whether or not "never" precedes it;
//! - `_but_check` rescales by `list.index(value)`, so when two scores are equal the first
//!   occurrence is rescaled again and the later one not at all. The reference is quadratic;
//!   this reproduces it with per-score position heaps (see [`but_check`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::lexicon::Lexicon;
use crate::pytext::{
    is_python_space, is_python_upper, push_python_lower, python_round, strip_punctuation_range,
};
use crate::Scores;

/// Empirically derived mean intensity increase for a booster word.
const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
/// Intensity increase for a word in capitals among words that are not.
const C_INCR: f64 = 0.733;
/// Scalar of a negated word.
const N_SCALAR: f64 = -0.74;

/// `NEGATE` of the reference.
const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// The single-word entries of `BOOSTER_DICT`; its three two-word entries are in
/// [`booster_bigram`].
const BOOSTERS: &[(&str, f64)] = &[
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// The two-word entries of `BOOSTER_DICT`.
fn booster_bigram(first: &str, second: &str) -> Option<f64> {
    match (first, second) {
        ("just", "enough") | ("kind", "of") | ("sort", "of") => Some(B_DECR),
        _ => None,
    }
}

/// `SPECIAL_CASES` of two words ("badass", a single word, can never match a joined n-gram).
fn special_bigram(first: &str, second: &str) -> Option<f64> {
    match (first, second) {
        ("the", "shit") | ("the", "bomb") => Some(3.0),
        ("bad", "ass") => Some(1.5),
        ("bus", "stop") => Some(0.0),
        ("yeah", "right") => Some(-2.0),
        ("beating", "heart") => Some(3.5),
        _ => None,
    }
}

/// `SPECIAL_CASES` of three words.
fn special_trigram(first: &str, second: &str, third: &str) -> Option<f64> {
    match (first, second, third) {
        ("kiss", "of", "death") => Some(-1.5),
        ("to", "die", "for") => Some(3.0),
        _ => None,
    }
}

/// What the rules know of a word besides its valence: a bit each for the words they name.
pub(crate) mod flag {
    pub const NEGATION: u32 = 1 << 0;
    pub const NO: u32 = 1 << 1;
    pub const BUT: u32 = 1 << 2;
    pub const KIND: u32 = 1 << 3;
    pub const OF: u32 = 1 << 4;
    pub const SO_OR_THIS: u32 = 1 << 5;
    pub const NEVER: u32 = 1 << 6;
    pub const WITHOUT: u32 = 1 << 7;
    pub const DOUBT: u32 = 1 << 8;
    pub const LEAST: u32 = 1 << 9;
    pub const AT_OR_VERY: u32 = 1 << 10;
    pub const OR_OR_NOR: u32 = 1 << 11;
    /// Part of a special phrase or a two-word booster: the idiom check compares strings only
    /// when some word near the scored one has this bit.
    pub const IDIOM: u32 = 1 << 12;
    /// Set on a token, not a word: `isupper()` of the token as written.
    pub const UPPER: u32 = 1 << 13;
    /// Set on a token, not a word: the token was lowercase already, and its range is in the
    /// text rather than in the buffer of lowercased copies.
    pub const IN_TEXT: u32 = 1 << 14;
}

/// Everything one lookup of a lowercased word returns, packed small (it is copied into every
/// token).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Word {
    /// Valence in the lexicon; NaN for a word outside it.
    pub valence: f64,
    /// Single-word booster or dampener scalar; 0 for a word that is neither (no booster
    /// scalar is 0).
    pub booster: f64,
    pub flags: u32,
}

impl Default for Word {
    fn default() -> Self {
        Word {
            valence: f64::NAN,
            booster: 0.0,
            flags: 0,
        }
    }
}

impl Word {
    #[inline]
    pub fn valence(&self) -> Option<f64> {
        (!self.valence.is_nan()).then_some(self.valence)
    }
}

/// The words the rules name, with their booster scalar and flags, to merge into a lexicon.
pub(crate) fn rule_words() -> impl Iterator<Item = (&'static str, Option<f64>, u32)> {
    const NAMED: &[(&str, u32)] = &[
        ("no", flag::NO),
        ("but", flag::BUT),
        ("kind", flag::KIND | flag::IDIOM),
        ("of", flag::OF | flag::IDIOM),
        ("so", flag::SO_OR_THIS),
        ("this", flag::SO_OR_THIS),
        ("never", flag::NEVER),
        ("without", flag::WITHOUT),
        ("doubt", flag::DOUBT),
        ("least", flag::LEAST),
        ("at", flag::AT_OR_VERY),
        ("very", flag::AT_OR_VERY),
        ("or", flag::OR_OR_NOR),
        ("nor", flag::OR_OR_NOR),
    ];
    const IDIOM_WORDS: &[&str] = &[
        "the", "shit", "bomb", "bad", "ass", "bus", "stop", "yeah", "right", "beating", "heart",
        "kiss", "death", "to", "die", "for", "just", "enough", "sort",
    ];
    NEGATE
        .iter()
        .map(|&word| (word, None, flag::NEGATION))
        .chain(
            BOOSTERS
                .iter()
                .map(|&(word, scalar)| (word, Some(scalar), 0)),
        )
        .chain(NAMED.iter().map(|&(word, flags)| (word, None, flags)))
        .chain(IDIOM_WORDS.iter().map(|&word| (word, None, flag::IDIOM)))
}

/// One token of the text as the rules see it.
#[derive(Clone, Copy)]
struct Token {
    /// Byte range of the lowercased token in `Scratch::lower`.
    start: u32,
    end: u32,
    /// [`flag`] bits; `NEGATION` is the reference's `negated([word])`: a negation word or a
    /// word containing "n't"; `UPPER` is `isupper()` of the token as written.
    flags: u32,
    /// What the lexicon says of the word, looked up once.
    valence: f64,
    booster: f64,
}

impl Token {
    #[inline]
    fn valence(&self) -> Option<f64> {
        (!self.valence.is_nan()).then_some(self.valence)
    }
    #[inline]
    fn booster(&self) -> Option<f64> {
        (self.booster != 0.0).then_some(self.booster)
    }
    #[inline]
    fn upper(&self) -> bool {
        self.flags & flag::UPPER != 0
    }
}

/// Buffers reused from one text to the next, so that scoring allocates nothing once warm.
#[derive(Default)]
pub struct Scratch {
    spliced: String,
    lower: String,
    tokens: Vec<Token>,
    sentiments: Vec<f64>,
    heaps: Vec<BinaryHeap<Reverse<u32>>>,
    heap_of_value: FxHashMap<u64, usize>,
}

struct Table<'a> {
    tokens: &'a [Token],
    text: &'a str,
    lower: &'a str,
}

impl Table<'_> {
    /// The lowercased token.
    #[inline]
    fn word(&self, i: usize) -> &str {
        let token = &self.tokens[i];
        let buffer = if token.flags & flag::IN_TEXT != 0 {
            self.text
        } else {
            self.lower
        };
        &buffer[token.start as usize..token.end as usize]
    }
    #[inline]
    fn has(&self, i: usize, flag: u32) -> bool {
        self.tokens[i].flags & flag != 0
    }
    #[inline]
    fn in_lexicon(&self, i: usize) -> bool {
        !self.tokens[i].valence.is_nan()
    }
}

/// Scores `text`; see [`crate::SentimentAnalyzer::polarity_scores`].
pub(crate) fn polarity_scores(lexicon: &Lexicon, text: &str, scratch: &mut Scratch) -> Scores {
    scores_and_sentences(lexicon, text, std::iter::empty(), scratch, |_, _| {})
}

/// Scores `text`, and each of `sentences` (trimmed pieces of `text`, in order) as
/// [`polarity_scores`] would score it on its own, calling `each` with the sentence and its
/// compound.
///
/// A sentence of ASCII text whose ends cut no token has for tokens a run of the text's
/// tokens, each looked up exactly as it would be alone: it is scored from the text's token
/// table, without tokenizing it again. Other sentences are tokenized on their own.
pub(crate) fn scores_and_sentences<'t>(
    lexicon: &Lexicon,
    text: &'t str,
    sentences: impl IntoIterator<Item = &'t str>,
    scratch: &mut Scratch,
    mut each: impl FnMut(&'t str, f64),
) -> Scores {
    let original = text;
    let Scratch {
        spliced,
        lower,
        tokens,
        sentiments,
        heaps,
        heap_of_value,
    } = scratch;
    let text = splice_emoji(lexicon, text, spliced);

    tokens.clear();
    lower.clear();
    let mut upper_count = 0usize;
    // Tokenizes text[raw_start..raw_end]; an ASCII token with no capital is its own lowercase
    // form and is not copied.
    let mut push = |raw_start: usize, raw_end: usize, ascii: bool| {
        let (start, end) = strip_punctuation_range(&text[raw_start..raw_end], ascii);
        let (start, end) = (raw_start + start, raw_start + end);
        let word = &text[start..end];
        let (upper, in_text, range) = if ascii {
            let (has_upper, has_lower) = ascii_cases(word.as_bytes());
            if has_upper {
                let at = lower.len();
                lower.push_str(word);
                lower[at..].make_ascii_lowercase();
                (!has_lower, false, (at, lower.len()))
            } else {
                (false, true, (start, end))
            }
        } else {
            let at = lower.len();
            push_python_lower(word, lower);
            (is_python_upper(word), false, (at, lower.len()))
        };
        let lowered = if in_text { word } else { &lower[range.0..] };
        let found = lexicon.word(lowered).unwrap_or_default();
        let contracted = contains_nt(lowered.as_bytes());
        upper_count += usize::from(upper);
        tokens.push(Token {
            start: range.0 as u32,
            end: range.1 as u32,
            flags: found.flags
                | if contracted { flag::NEGATION } else { 0 }
                | if upper { flag::UPPER } else { 0 }
                | if in_text { flag::IN_TEXT } else { 0 },
            valence: found.valence,
            booster: found.booster,
        });
    };
    if text.is_ascii() {
        let bytes = text.as_bytes();
        let is_space = is_ascii_python_space;
        let mut at = 0;
        while at < bytes.len() {
            if is_space(bytes[at]) {
                at += 1;
                continue;
            }
            let start = at;
            while at < bytes.len() && !is_space(bytes[at]) {
                at += 1;
            }
            push(start, at, true);
        }
    } else {
        let mut start = None;
        for (at, c) in text
            .char_indices()
            .chain(std::iter::once((text.len(), ' ')))
        {
            match (start, is_python_space(c)) {
                (Some(from), true) => {
                    push(from, at, text[from..at].is_ascii());
                    start = None;
                }
                (None, false) => start = Some(at),
                _ => {}
            }
        }
    }
    let table = Table {
        tokens,
        text,
        lower,
    };
    let whole = score_tokens(&table, upper_count, text, sentiments, heaps, heap_of_value);

    let mut sentences = sentences.into_iter().peekable();
    if sentences.peek().is_none() {
        return whole;
    }
    let mut own: Option<Scratch> = None;
    let bytes = original.as_bytes();
    // Whether a token runs across byte `at`.
    let cut = |at: usize| {
        at > 0
            && at < bytes.len()
            && !is_ascii_python_space(bytes[at - 1])
            && !is_ascii_python_space(bytes[at])
    };
    let ascii = original.is_ascii();
    let mut next_token = 0;
    for sentence in sentences {
        let start = sentence.as_ptr() as usize - original.as_ptr() as usize;
        let end = start + sentence.len();
        // Once one sentence is tokenized on its own, the rest are too: the count of the
        // text's tokens before them is no longer kept.
        if own.is_some() || !ascii || cut(start) || cut(end) {
            let own = own.get_or_insert_with(Scratch::default);
            each(sentence, polarity_scores(lexicon, sentence, own).compound);
            continue;
        }
        let words = count_words(sentence.as_bytes());
        let range = next_token..next_token + words;
        next_token += words;
        let tokens = &table.tokens[range];
        let upper_count = tokens.iter().filter(|t| t.upper()).count();
        let table = Table {
            tokens,
            text: table.text,
            lower: table.lower,
        };
        let scores = score_tokens(
            &table,
            upper_count,
            sentence,
            sentiments,
            heaps,
            heap_of_value,
        );
        each(sentence, scores.compound);
    }
    whole
}

/// Python's `str.isspace()` for an ASCII byte (what `str.split()` splits on).
#[inline]
fn is_ascii_python_space(byte: u8) -> bool {
    matches!(byte, b'\t'..=b'\r' | 0x1c..=0x1f | b' ')
}

/// The number of tokens `str.split()` finds in ASCII text.
fn count_words(bytes: &[u8]) -> usize {
    let mut words = 0;
    let mut in_word = false;
    for &byte in bytes {
        let space = is_ascii_python_space(byte);
        words += usize::from(in_word && space);
        in_word = !space;
    }
    words + usize::from(in_word)
}

/// The rules over a token table, `text` the text the tokens are of (for its punctuation).
fn score_tokens(
    table: &Table<'_>,
    upper_count: usize,
    text: &str,
    sentiments: &mut Vec<f64>,
    heaps: &mut Vec<BinaryHeap<Reverse<u32>>>,
    heap_of_value: &mut FxHashMap<u64, usize>,
) -> Scores {
    let tokens = table.tokens;
    let count = tokens.len();
    let cap_differential = upper_count > 0 && upper_count < count;

    sentiments.clear();
    for (i, token) in tokens.iter().enumerate() {
        let valence = if token.booster().is_some()
            || (i + 1 < count && table.has(i, flag::KIND) && table.has(i + 1, flag::OF))
        {
            0.0
        } else {
            sentiment_valence(table, i, cap_differential)
        };
        sentiments.push(valence);
    }

    if let Some(but) = (0..count).find(|&i| table.has(i, flag::BUT)) {
        but_check(sentiments, but, heaps, heap_of_value);
    }
    score_valence(sentiments, text)
}

/// Whether a word contains "n't" (cheaper than a substring search on words this short).
#[inline]
fn contains_nt(word: &[u8]) -> bool {
    word.len() > 2
        && (1..word.len() - 1)
            .any(|at| word[at] == b'\'' && word[at - 1] == b'n' && word[at + 1] == b't')
}

/// Whether an ASCII word has capitals and lowercase letters; `str.isupper()` is
/// `capitals && !lowercase`.
#[inline]
fn ascii_cases(word: &[u8]) -> (bool, bool) {
    let (mut upper, mut lower) = (false, false);
    for &byte in word {
        upper |= byte.is_ascii_uppercase();
        lower |= byte.is_ascii_lowercase();
    }
    (upper, lower)
}

/// Replaces each emoji of the lexicon by its description, as the reference does: a space
/// before unless the previous character was a space, none after.
fn splice_emoji<'t>(lexicon: &Lexicon, text: &'t str, spliced: &'t mut String) -> &'t str {
    if text.is_ascii() {
        return text; // every emoji of the lexicon is outside ASCII
    }
    let Some(first) = text
        .char_indices()
        .find(|&(_, c)| lexicon.emoji(c).is_some())
        .map(|(at, _)| at)
    else {
        return text;
    };
    spliced.clear();
    spliced.push_str(&text[..first]);
    let mut previous_space = text[..first].chars().next_back().is_none_or(|c| c == ' ');
    for c in text[first..].chars() {
        if let Some(description) = lexicon.emoji(c) {
            if !previous_space {
                spliced.push(' ');
            }
            spliced.push_str(description);
            previous_space = false;
        } else {
            spliced.push(c);
            previous_space = c == ' ';
        }
    }
    spliced
}

/// `sentiment_valence` of the reference, for the token at `i`.
fn sentiment_valence(table: &Table<'_>, i: usize, cap_differential: bool) -> f64 {
    let tokens = table.tokens;
    let count = tokens.len();
    let Some(lexicon_valence) = tokens[i].valence() else {
        return 0.0;
    };
    let mut valence = lexicon_valence;
    // "no" before a lexicon word negates it rather than counting as a word of its own.
    if table.has(i, flag::NO) && i != count - 1 && table.in_lexicon(i + 1) {
        valence = 0.0;
    }
    if (i > 0 && table.has(i - 1, flag::NO))
        || (i > 1 && table.has(i - 2, flag::NO))
        || (i > 2 && table.has(i - 3, flag::NO) && table.has(i - 1, flag::OR_OR_NOR))
    {
        valence = lexicon_valence * N_SCALAR;
    }
    if tokens[i].upper() && cap_differential {
        if valence > 0.0 {
            valence += C_INCR;
        } else {
            valence -= C_INCR;
        }
    }
    for start in 0..3 {
        if i > start && !table.in_lexicon(i - (start + 1)) {
            let mut scalar = scalar_inc_dec(&tokens[i - (start + 1)], valence, cap_differential);
            if start == 1 && scalar != 0.0 {
                scalar *= 0.95;
            }
            if start == 2 && scalar != 0.0 {
                scalar *= 0.9;
            }
            valence += scalar;
            valence = negation_check(table, valence, start, i);
            if start == 2 {
                valence = special_idioms_check(table, valence, i);
            }
        }
    }
    least_check(table, valence, i)
}

/// `scalar_inc_dec` of the reference: the booster's scalar, signed with the valence and
/// raised for a booster in capitals.
fn scalar_inc_dec(word: &Token, valence: f64, cap_differential: bool) -> f64 {
    let Some(mut scalar) = word.booster() else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if word.upper() && cap_differential {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// `_negation_check` of the reference, including its "never so" and "without doubt" cases.
fn negation_check(table: &Table<'_>, valence: f64, start: usize, i: usize) -> f64 {
    let so_or_this = |at: usize| table.has(at, flag::SO_OR_THIS);
    let negated = |at: usize| table.has(at, flag::NEGATION);
    match start {
        0 if negated(i - 1) => valence * N_SCALAR,
        1 if table.has(i - 2, flag::NEVER) && so_or_this(i - 1) => valence * 1.25,
        1 if table.has(i - 2, flag::WITHOUT) && table.has(i - 1, flag::DOUBT) => valence,
        1 if negated(i - 2) => valence * N_SCALAR,
        // The reference's condition reads `never and (so or this) or (so or this)`.
        2 if (table.has(i - 3, flag::NEVER) && so_or_this(i - 2)) || so_or_this(i - 1) => {
            valence * 1.25
        }
        2 if table.has(i - 3, flag::WITHOUT)
            && (table.has(i - 2, flag::DOUBT) || table.has(i - 1, flag::DOUBT)) =>
        {
            valence
        }
        2 if negated(i - 3) => valence * N_SCALAR,
        _ => valence,
    }
}

/// `_special_idioms_check` of the reference (only reached with `i >= 3`).
fn special_idioms_check(table: &Table<'_>, mut valence: f64, i: usize) -> f64 {
    let count = table.tokens.len();
    if !(i - 3..(i + 3).min(count)).any(|at| table.has(at, flag::IDIOM)) {
        return valence; // no phrase can match without one of its words
    }
    let w = |at: usize| table.word(at);
    let (three, two, one, zero) = (w(i - 3), w(i - 2), w(i - 1), w(i));
    let found = special_bigram(one, zero)
        .or_else(|| special_trigram(two, one, zero))
        .or_else(|| special_bigram(two, one))
        .or_else(|| special_trigram(three, two, one))
        .or_else(|| special_bigram(three, two));
    if let Some(special) = found {
        valence = special;
    }
    if count - 1 > i {
        if let Some(special) = special_bigram(zero, w(i + 1)) {
            valence = special;
        }
    }
    if count - 1 > i + 1 {
        if let Some(special) = special_trigram(zero, w(i + 1), w(i + 2)) {
            valence = special;
        }
    }
    // Booster bigrams ("kind of", "sort of", "just enough") before the word; a trigram can
    // never equal a two-word key.
    for (first, second) in [(three, two), (two, one)] {
        if let Some(scalar) = booster_bigram(first, second) {
            valence += scalar;
        }
    }
    valence
}

/// `_least_check` of the reference: "least" before a word negates it, except in "at least"
/// and "very least".
fn least_check(table: &Table<'_>, valence: f64, i: usize) -> f64 {
    if i > 1 && !table.in_lexicon(i - 1) && table.has(i - 1, flag::LEAST) {
        if !table.has(i - 2, flag::AT_OR_VERY) {
            return valence * N_SCALAR;
        }
    } else if i > 0 && !table.in_lexicon(i - 1) && table.has(i - 1, flag::LEAST) {
        return valence * N_SCALAR;
    }
    valence
}

/// `_but_check` of the reference: scores before the first "but" are halved, scores after it
/// raised by half. The reference walks the list and rescales `sentiments[index(value)]`, the
/// first position holding an equal score, not necessarily the one it is visiting; this keeps,
/// for each score value, a min-heap of the positions that have held it, drops positions whose
/// score has since changed when they surface, and so finds the same position in
/// O(log n) instead of O(n).
fn but_check(
    sentiments: &mut [f64],
    but: usize,
    heaps: &mut Vec<BinaryHeap<Reverse<u32>>>,
    heap_of_value: &mut FxHashMap<u64, usize>,
) {
    for heap in heaps.iter_mut() {
        heap.clear();
    }
    heap_of_value.clear();
    let mut used = 0usize;
    let mut heap_for = |value: f64, heaps: &mut Vec<BinaryHeap<Reverse<u32>>>| -> usize {
        // +0.0 and -0.0 are equal to Python's index(); zeros are skipped anyway.
        let key = if value == 0.0 { 0 } else { value.to_bits() };
        *heap_of_value.entry(key).or_insert_with(|| {
            if used == heaps.len() {
                heaps.push(BinaryHeap::new());
            }
            used += 1;
            used - 1
        })
    };
    for visiting in 0..sentiments.len() {
        let value = sentiments[visiting];
        if value == 0.0 {
            continue; // rescaling zero changes nothing
        }
        let heap = heap_for(value, heaps);
        heaps[heap].push(Reverse(visiting as u32));
        let first = loop {
            let Reverse(position) = *heaps[heap]
                .peek()
                .expect("the visited position is in its heap");
            if sentiments[position as usize] == value {
                break position as usize;
            }
            heaps[heap].pop();
        };
        let rescaled = match first.cmp(&but) {
            std::cmp::Ordering::Less => value * 0.5,
            std::cmp::Ordering::Greater => value * 1.5,
            std::cmp::Ordering::Equal => continue,
        };
        sentiments[first] = rescaled;
        let heap = heap_for(rescaled, heaps);
        heaps[heap].push(Reverse(first as u32));
    }
}

/// `score_valence` of the reference.
fn score_valence(sentiments: &[f64], text: &str) -> Scores {
    if sentiments.is_empty() {
        return Scores {
            neg: 0.0,
            neu: 0.0,
            pos: 0.0,
            compound: 0.0,
        };
    }
    // Python's sum() starts from the integer 0, so a lone -0.0 sums to +0.0.
    let mut sum = sentiments.iter().fold(0.0f64, |sum, &score| sum + score);
    let emphasis = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    let compound = normalize(sum);

    let (mut pos_sum, mut neg_sum, mut neu_count) = (0.0f64, 0.0f64, 0u32);
    for &score in sentiments {
        if score > 0.0 {
            pos_sum += score + 1.0; // compensates for neutral words counted as 1
        }
        if score < 0.0 {
            neg_sum += score - 1.0;
        }
        if score == 0.0 {
            neu_count += 1;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += emphasis;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= emphasis;
    }
    let total = pos_sum + neg_sum.abs() + f64::from(neu_count);
    Scores {
        neg: python_round((neg_sum / total).abs(), 3),
        neu: python_round((f64::from(neu_count) / total).abs(), 3),
        pos: python_round((pos_sum / total).abs(), 3),
        compound: python_round(compound, 4),
    }
}

/// Emphasis from "!" (up to four) and from two or more "?".
fn punctuation_emphasis(text: &str) -> f64 {
    let (mut exclamations, mut questions) = (0u32, 0u32);
    for &byte in text.as_bytes() {
        exclamations += u32::from(byte == b'!');
        questions += u32::from(byte == b'?');
    }
    let exclamation = f64::from(exclamations.min(4)) * 0.292;
    let question = match questions {
        0 | 1 => 0.0,
        2 | 3 => f64::from(questions) * 0.18,
        _ => 0.96,
    };
    exclamation + question
}

/// Maps an unbounded sum into -1..1; alpha 15 approximates the largest expected value.
fn normalize(score: f64) -> f64 {
    (score / (score * score + 15.0).sqrt()).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_but_check` exactly as the reference writes it, quadratic.
    fn but_check_reference(sentiments: &mut [f64], but: usize) {
        for k in 0..sentiments.len() {
            let value = sentiments[k];
            let first = sentiments.iter().position(|&s| s == value).unwrap();
            if first < but {
                sentiments[first] = value * 0.5;
            } else if first > but {
                sentiments[first] = value * 1.5;
            }
        }
    }

    #[test]
    fn but_check_rescales_the_positions_the_reference_rescales() {
        // Scores drawn from a few values related by the factors 0.5 and 1.5, so that equal
        // scores and rescaled-into-equal scores are common.
        let values = [
            0.0, 1.0, 2.0, 0.5, 1.5, 3.0, 0.75, 2.25, -1.0, -2.0, -0.5, -1.5, 4.5,
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let (mut heaps, mut heap_of_value) = (Vec::new(), FxHashMap::default());
        let mut differing_from_naive = 0;
        for _ in 0..20_000 {
            let len = 1 + next(16);
            let scores: Vec<f64> = (0..len).map(|_| values[next(values.len())]).collect();
            let but = next(len);
            let mut want = scores.clone();
            but_check_reference(&mut want, but);
            let mut got = scores.clone();
            but_check(&mut got, but, &mut heaps, &mut heap_of_value);
            assert_eq!(got, want, "scores {scores:?}, but at {but}");
            let naive: Vec<f64> = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| match i.cmp(&but) {
                    std::cmp::Ordering::Less => s * 0.5,
                    std::cmp::Ordering::Greater => s * 1.5,
                    std::cmp::Ordering::Equal => s,
                })
                .collect();
            differing_from_naive += usize::from(naive != want);
        }
        assert!(
            differing_from_naive > 1_000,
            "the quirk is exercised: {differing_from_naive}"
        );
    }
}
