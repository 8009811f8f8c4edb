//! What a mention means beyond its watchlists: spam and bot score with reasons, intents from
//! cue lists per language, reach and urgency scores, and the flags of bad input.
//!
//! Every formula here is documented in RELIABILITY.md ("Understanding scores"); the weights
//! of urgency and the cue lists come from `enricher` in the configuration.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use earshot_core::config::{EnricherConfig, UrgencyWeights, INTENTS};
use earshot_core::model::Mention;
use earshot_query::{fold, fold_into};
use smallvec::SmallVec;

/// Spam detection looks back this far (by the mentions' `created_at`) for the same text from
/// other authors and for bursts of one new account.
pub const SPAM_WINDOW_MICROS: i64 = 10 * 60 * 1_000_000;
/// Distinct authors posting the same text within the window that make it `duplicate_text`.
pub const DUPLICATE_AUTHORS: usize = 3;
/// Mentions within the window from one zero-follower account that make a `new_account_burst`.
pub const BURST_MENTIONS: usize = 5;
/// Entries of the look-back state before entries older than the window are dropped.
const STATE_CAPACITY: usize = 100_000;

/// Built-in link-farm and SEO phrases; `enricher.spam_phrases` adds to them.
const SPAM_PHRASES: &[&str] = &[
    "replica watches",
    "replica watch",
    "replica handbags",
    "cheap jerseys",
    "payday loan",
    "payday loans",
    "title loan",
    "title loans",
    "packers and movers",
    "buy followers",
    "buy cheap",
    "outlet online",
    "online casino",
    "casino bonus",
    "viagra",
    "cialis",
    "work from home",
    "earn money fast",
    "make money online",
    "seo services",
    "backlinks",
    "free bitcoin",
    "crypto giveaway",
    "essay writing service",
    "click here",
];

/// Built-in lure words of giveaway and phishing bots; `enricher.spam_lures` replaces them.
/// Two different ones in a post with a link make it a `link_lure`: one alone is ordinary
/// ("free shipping", "claim" a warranty), the pair with a link is the bot's pitch ("claim
/// your compensation now https://…", "free prize, click https://…").
const SPAM_LURES: &[&str] = &[
    "claim",
    "free",
    "compensation",
    "prize",
    "winner",
    "reward",
    "giveaway",
    "giving away",
    "gift card",
    "voucher",
    "airdrop",
    "bonus",
];

/// Built-in cues: (language, intent, phrases).
const CUES: &[(&str, &str, &[&str])] = &[
    (
        "en",
        "complaint",
        &[
            "refund",
            "broken",
            "worst",
            "terrible",
            "awful",
            "never arrived",
            "still waiting",
            "doesn't work",
            "does not work",
            "not working",
            "disappointed",
            "rip off",
            "ripoff",
            "scam",
            "unacceptable",
            "useless",
            "fix this",
        ],
    ),
    (
        "en",
        "question",
        &[
            "how do i",
            "how can i",
            "how to",
            "does anyone",
            "anyone know",
            "is there",
            "can i",
            "what is",
            "where is",
            "why is",
            "why does",
            "help me",
        ],
    ),
    (
        "en",
        "praise",
        &[
            "love",
            "loving",
            "amazing",
            "awesome",
            "best",
            "great job",
            "thank you",
            "thanks",
            "excellent",
            "impressed",
            "brilliant",
        ],
    ),
    (
        "en",
        "purchase_intent",
        &[
            "want to buy",
            "going to buy",
            "thinking of buying",
            "thinking about getting",
            "should i buy",
            "where can i buy",
            "where to buy",
            "looking to buy",
            "just ordered",
            "pre-order",
            "preorder",
            "take my money",
        ],
    ),
    (
        "en",
        "churn_threat",
        &[
            "cancel my",
            "cancelling",
            "canceling",
            "switching to",
            "never again",
            "done with",
            "unsubscribe",
            "last time i",
            "moving to",
            "goodbye",
        ],
    ),
    (
        "en",
        "crisis_risk",
        &[
            "lawsuit",
            "will sue",
            "sued",
            "suing",
            "class action",
            "outage",
            "is down",
            "data breach",
            "breach",
            "leaked",
            "hacked",
            "recall",
            "recalled",
            "injury",
            "injured",
            "burned",
            "caught fire",
            "exploded",
            "boycott",
            "poisoned",
            "lawyer",
        ],
    ),
    (
        "en",
        "opportunity",
        &[
            "any recommendations",
            "recommend a",
            "suggestions for",
            "looking for a",
            "what should i get",
            "alternatives to",
            "trending",
        ],
    ),
    (
        "fr",
        "complaint",
        &[
            "remboursement",
            "casse",
            "pire",
            "nul",
            "arnaque",
            "jamais recu",
            "toujours pas",
            "ne marche pas",
            "decu",
            "inadmissible",
        ],
    ),
    (
        "fr",
        "question",
        &["comment", "pourquoi", "quelqu'un sait", "est-ce que"],
    ),
    (
        "fr",
        "praise",
        &[
            "adore",
            "j'adore",
            "genial",
            "incroyable",
            "excellent",
            "merci",
            "bravo",
        ],
    ),
    (
        "fr",
        "purchase_intent",
        &[
            "envie d'acheter",
            "je vais acheter",
            "ou acheter",
            "je compte acheter",
            "commande",
        ],
    ),
    (
        "fr",
        "churn_threat",
        &[
            "resilier",
            "je me desabonne",
            "je passe chez",
            "plus jamais",
            "je quitte",
        ],
    ),
    (
        "fr",
        "crisis_risk",
        &[
            "proces",
            "plainte",
            "panne",
            "fuite de donnees",
            "piratage",
            "rappel",
            "blesse",
            "boycott",
            "avocat",
        ],
    ),
    (
        "fr",
        "opportunity",
        &[
            "des recommandations",
            "vous conseillez",
            "cherche un",
            "alternatives a",
        ],
    ),
];

/// Severity of each intent in urgency, in [`INTENTS`] order.
const SEVERITY: [f64; 7] = [1.0, 0.8, 0.6, 0.4, 0.4, 0.3, 0.1];

/// The scores of one mention.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub spam_score: f64,
    pub spam_reasons: Vec<String>,
    pub intents: Vec<String>,
    pub reach_score: f64,
    pub urgency: f64,
    pub flags: Vec<String>,
}

/// What [`Signals::assess`] found, before sentiment is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub spam_score: f64,
    pub spam_reasons: Vec<String>,
    /// Intents whose cue phrases occur, in [`INTENTS`] order.
    cue_intents: [bool; INTENTS.len()],
    question_mark: bool,
    /// Interactions per hour since posting.
    velocity: f64,
    velocity_score: f64,
    pub reach_score: f64,
    pub flags: Vec<String>,
}

/// What a phrase of [`Phrases`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    /// A link-farm or SEO phrase (whole words).
    Spam,
    /// The lure of this index in the lure list (whole words), so distinct ones are counted.
    Lure(u32),
    /// A cue of `INTENTS[intent]` in the language of this index of `Signals::languages`
    /// (whole words).
    Cue { language: u32, intent: u8 },
    /// `http://` or `https://`, anywhere: links are counted.
    Link,
    /// `www.`, anywhere.
    Www,
}

impl Label {
    fn whole_words(self) -> bool {
        !matches!(self, Label::Link | Label::Www)
    }
}

/// Every phrase the signals look for (spam phrases, lures, the cues of every language, link
/// markers) in one automaton, so that a mention's folded text is scanned once.
struct Phrases {
    automaton: AhoCorasick,
    /// Per pattern, the range of its labels in `labels` (one phrase may be several things:
    /// "excellent" praises in English and in French).
    ranges: Vec<(u32, u32)>,
    labels: Vec<Label>,
}

impl Phrases {
    /// `phrases` are folded; empty ones are left out (they would be found everywhere).
    fn new(phrases: impl IntoIterator<Item = (String, Label)>) -> Phrases {
        let mut by_phrase: BTreeMap<String, Vec<Label>> = BTreeMap::new();
        for (phrase, label) in phrases {
            if !phrase.is_empty() {
                let labels = by_phrase.entry(phrase).or_default();
                if !labels.contains(&label) {
                    labels.push(label);
                }
            }
        }
        // A DFA: one table look-up per byte. The default for this many patterns is an NFA
        // that follows failure transitions, about twice as slow on tweets.
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(by_phrase.keys())
            .expect("phrases within the automaton's size limits");
        let (mut ranges, mut labels) = (Vec::new(), Vec::new());
        for found in by_phrase.into_values() {
            let start = labels.len() as u32;
            labels.extend(found);
            ranges.push((start, labels.len() as u32));
        }
        Phrases {
            automaton,
            ranges,
            labels,
        }
    }

    /// The labels of every occurrence in `folded`: the whole-word ones only where the phrase
    /// is on word boundaries.
    fn found(&self, folded: &str, mut each: impl FnMut(Label)) {
        let bytes = folded.as_bytes();
        for hit in self.automaton.find_overlapping_iter(folded) {
            let (start, end) = self.ranges[hit.pattern().as_usize()];
            let mut whole_word = None;
            for &label in &self.labels[start as usize..end as usize] {
                if label.whole_words()
                    && !*whole_word.get_or_insert_with(|| {
                        !word_before(folded, bytes, hit.start())
                            && !word_after(folded, bytes, hit.end())
                    })
                {
                    continue;
                }
                each(label);
            }
        }
    }
}

/// Whether the character before byte `at` is a word character (alphanumeric or `_`).
#[inline]
fn word_before(text: &str, bytes: &[u8], at: usize) -> bool {
    match at.checked_sub(1).map(|i| bytes[i]) {
        None => false,
        Some(byte) if byte.is_ascii() => byte.is_ascii_alphanumeric() || byte == b'_',
        Some(_) => text[..at].chars().next_back().is_some_and(is_word_char),
    }
}

/// Whether the character at byte `at` is a word character.
#[inline]
fn word_after(text: &str, bytes: &[u8], at: usize) -> bool {
    match bytes.get(at) {
        None => false,
        Some(&byte) if byte.is_ascii() => byte.is_ascii_alphanumeric() || byte == b'_',
        Some(_) => text[at..].chars().next().is_some_and(is_word_char),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Spam, intent, reach and urgency scoring, with the look-back state spam detection needs.
pub struct Signals {
    phrases: Phrases,
    /// The languages with cue lists, in `Label::Cue` order.
    languages: Vec<String>,
    /// Index of English in `languages`: its cues apply to languages without their own.
    english: Option<u32>,
    weights: UrgencyWeights,
    max_text_bytes: usize,
    recent: Mutex<Recent>,
    /// Keys of the hashes that stand for texts and handles in the look-back: random per
    /// process, so that nobody can write a text or handle that hashes the same as another.
    keys: std::hash::RandomState,
}

impl Signals {
    /// The look-back's identity of a folded text; none when it is too short to count as a
    /// duplicate.
    fn text_hash(&self, folded: &str) -> Option<u64> {
        let text = folded.trim();
        (text.len() >= 20).then(|| self.keys.hash_one(text))
    }

    pub fn new(config: &EnricherConfig) -> Signals {
        let mut phrases: Vec<(String, Label)> = SPAM_PHRASES
            .iter()
            .map(|p| (fold(p), Label::Spam))
            .collect();
        phrases.extend(
            config
                .spam_phrases
                .iter()
                .map(|p| (fold(p.trim()), Label::Spam)),
        );
        let mut lists: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (lang, intent, cues) in CUES {
            lists
                .entry((*lang).to_owned())
                .or_default()
                .insert((*intent).to_owned(), cues.iter().map(|p| fold(p)).collect());
        }
        for (lang, intents) in &config.intent_cues {
            for (intent, cues) in intents {
                lists.entry(lang.clone()).or_default().insert(
                    intent.clone(),
                    cues.iter().map(|p| fold(p.trim())).collect(),
                );
            }
        }
        let mut languages = Vec::with_capacity(lists.len());
        for (lang, intents) in lists {
            let language = languages.len() as u32;
            languages.push(lang);
            for (intent, cues) in intents {
                let Some(intent) = INTENTS.iter().position(|i| *i == intent) else {
                    continue;
                };
                let label = Label::Cue {
                    language,
                    intent: intent as u8,
                };
                phrases.extend(cues.into_iter().map(|cue| (cue, label)));
            }
        }
        let lures: Vec<String> = if config.spam_lures.is_empty() {
            SPAM_LURES.iter().map(|l| fold(l)).collect()
        } else {
            config.spam_lures.iter().map(|l| fold(l.trim())).collect()
        };
        phrases.extend(
            lures
                .into_iter()
                .filter(|l| !l.is_empty())
                .enumerate()
                .map(|(i, l)| (l, Label::Lure(i as u32))),
        );
        phrases.extend([
            ("http://".to_owned(), Label::Link),
            ("https://".to_owned(), Label::Link),
            ("www.".to_owned(), Label::Www),
        ]);
        let english = languages.iter().position(|l| l == "en").map(|i| i as u32);
        Signals {
            phrases: Phrases::new(phrases),
            languages,
            english,
            weights: config.urgency.clone(),
            max_text_bytes: config.max_text_bytes,
            recent: Mutex::new(Recent::default()),
            keys: std::hash::RandomState::new(),
        }
    }

    /// Cuts text longer than the limit at a character boundary; true when it did.
    pub fn cap_text(&self, mention: &mut Mention) -> bool {
        if mention.text.len() <= self.max_text_bytes {
            return false;
        }
        let mut end = self.max_text_bytes;
        while !mention.text.is_char_boundary(end) {
            end -= 1;
        }
        mention.text.truncate(end);
        true
    }

    /// Scores `mention` given its sentiment compound, language and whether it matched any
    /// watchlist. `flags` holds what was already found wrong (a truncated text).
    pub fn score(
        &self,
        mention: &Mention,
        compound: f64,
        language: Option<&str>,
        flags: Vec<String>,
    ) -> Scores {
        self.finish(&self.assess(mention, language, flags), compound)
    }

    /// Everything about `mention` that does not depend on its sentiment: spam, cue intents,
    /// reach, velocity and flags. Records the mention in the spam look-back state, so it is
    /// called once per mention; [`Signals::finish`] then scores it for a sentiment compound,
    /// as many times as there are sentiments (a watchlist with its own lexicon has its own).
    pub fn assess(
        &self,
        mention: &Mention,
        language: Option<&str>,
        mut flags: Vec<String>,
    ) -> Assessment {
        let text = mention.text.as_str();
        if text.trim().is_empty() {
            flags.push("empty_text".into());
        }
        if language.is_none() {
            flags.push("unknown_language".into());
        }
        let followers = match mention.author.followers {
            Some(f) if f < 0 => {
                flags.push("invalid_followers".into());
                None
            }
            other => other,
        };
        let engagement = &mention.engagement;
        if engagement.likes < 0 || engagement.reposts < 0 || engagement.replies < 0 {
            flags.push("invalid_engagement".into());
        }
        let interactions = (engagement.likes.max(0) as f64)
            + 2.0 * (engagement.reposts.max(0) as f64)
            + (engagement.replies.max(0) as f64);
        let age_micros = mention.collected_at.saturating_sub(mention.created_at);
        let created_valid = mention.created_at > 0 && age_micros > -86_400_000_000;
        if !created_valid {
            flags.push("invalid_created_at".into());
        }
        // Engagement per hour since posting; an hour at least a minute, none when the
        // creation time cannot be trusted.
        let velocity = if created_valid {
            interactions / (age_micros.max(0) as f64 / 3.6e9).max(1.0 / 60.0)
        } else {
            0.0
        };
        let velocity_score = (((1.0 + velocity).log10()) / 4.0).min(1.0);
        let reach_score = 0.6 * (((1.0 + followers.unwrap_or(0) as f64).log10()) / 7.0).min(1.0)
            + 0.25 * (((1.0 + interactions).log10()) / 5.0).min(1.0)
            + 0.15 * velocity_score;

        // The cues of the mention's language, English when there are none for it.
        let cue_language = language
            .and_then(|l| self.languages.iter().position(|known| known == l))
            .map(|i| i as u32)
            .or(self.english);
        let (spam_score, spam_reasons, cue_intents) = with_scratch(|scratch| {
            fold_into(text, &mut scratch.folded);
            fold_into(&mention.author.handle, &mut scratch.handle);
            let (folded, author) = (scratch.folded.as_str(), self.keys.hash_one(&scratch.handle));
            let mut found = Found::default();
            self.phrases.found(folded, |label| match label {
                Label::Spam => found.seo = true,
                Label::Lure(lure) => match found.lure {
                    Some(first) if first != lure => found.two_lures = true,
                    _ => found.lure = Some(lure),
                },
                Label::Cue { language, intent } if Some(language) == cue_language => {
                    found.cue_intents[usize::from(intent)] = true
                }
                Label::Cue { .. } => {}
                Label::Link => found.links += 1,
                Label::Www => found.www = true,
            });
            let (score, reasons) = self.spam(
                mention,
                folded,
                author,
                followers,
                &found,
                &mut scratch.long_words,
            );
            (score, reasons, found.cue_intents)
        });
        Assessment {
            spam_score,
            spam_reasons,
            cue_intents,
            question_mark: text.contains('?'),
            velocity,
            velocity_score,
            reach_score,
            flags,
        }
    }

    /// The scores of an assessed mention for the sentiment `compound`: the intents that
    /// follow from sentiment (complaint, praise, opportunity) and urgency depend on it.
    pub fn finish(&self, assessment: &Assessment, compound: f64) -> Scores {
        let intents = intents(assessment, compound);
        let severity = intents
            .first()
            .and_then(|i| INTENTS.iter().position(|k| k == i))
            .map_or(0.0, |i| SEVERITY[i]);
        let w = &self.weights;
        let total = w.negativity + w.intent + w.reach + w.velocity;
        let urgency = ((w.negativity * (-compound).max(0.0)
            + w.intent * severity
            + w.reach * assessment.reach_score
            + w.velocity * assessment.velocity_score)
            / total.max(f64::MIN_POSITIVE))
            * (1.0 - assessment.spam_score);
        Scores {
            spam_score: assessment.spam_score,
            spam_reasons: assessment.spam_reasons.clone(),
            intents,
            reach_score: assessment.reach_score.clamp(0.0, 1.0),
            urgency: urgency.clamp(0.0, 1.0),
            flags: assessment.flags.clone(),
        }
    }

    fn spam(
        &self,
        mention: &Mention,
        folded: &str,
        author: u64,
        followers: Option<i64>,
        found: &Found,
        long_words: &mut Vec<(u32, u32)>,
    ) -> (f64, Vec<String>) {
        let mut reasons: Vec<(&str, f64)> = Vec::new();
        let mut seo = found.seo;
        // "cheap <brand> outlet" and its kin: the two words anywhere in one post.
        let (mut cheap, mut outlet_or_sale, mut words) = (false, false, 0usize);
        long_words.clear();
        for_each_word(folded, |word| {
            words += 1;
            cheap |= word == "cheap";
            outlet_or_sale |= word == "outlet" || word == "sale";
            if word.len() >= 3 {
                let start = word.as_ptr() as usize - folded.as_ptr() as usize;
                long_words.push((start as u32, (start + word.len()) as u32));
            }
        });
        if cheap && outlet_or_sale {
            seo = true;
        }
        if seo {
            reasons.push(("seo_phrase", 0.6));
        }
        if found.links >= 3 {
            reasons.push(("many_links", 0.35));
        }
        if (found.links > 0 || found.www) && found.two_lures {
            reasons.push(("link_lure", 0.55));
        }
        let hashtags = folded.bytes().filter(|&b| b == b'#').count();
        // A word of three letters or more repeated in more than a quarter of the words.
        let stuffed = words >= 8 && repeats_over_a_quarter(folded, long_words, words);
        if stuffed || hashtags >= 6 {
            reasons.push(("keyword_stuffing", 0.35));
        }
        let (duplicate, burst) = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(mention, self.text_hash(folded), author, followers);
        if duplicate {
            reasons.push(("duplicate_text", 0.5));
        }
        if burst {
            reasons.push(("new_account_burst", 0.4));
        }
        let score = 1.0 - reasons.iter().map(|(_, w)| 1.0 - w).product::<f64>();
        (
            score,
            reasons.into_iter().map(|(r, _)| r.to_owned()).collect(),
        )
    }
}

/// What one scan of a mention's folded text found.
#[derive(Default)]
struct Found {
    seo: bool,
    /// The first lure found, and whether another one was.
    lure: Option<u32>,
    two_lures: bool,
    cue_intents: [bool; INTENTS.len()],
    links: usize,
    www: bool,
}

/// The folded text and handle of the mention being assessed, reused from one mention to the
/// next.
#[derive(Default)]
struct Scratch {
    folded: String,
    handle: String,
    /// Byte ranges of the folded text's words of three bytes or more.
    long_words: Vec<(u32, u32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch, or a new one if it is in use already.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// The words of folded text: runs of alphanumeric characters and apostrophes.
fn for_each_word<'t>(folded: &'t str, mut each: impl FnMut(&'t str)) {
    if !folded.is_ascii() {
        folded
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .for_each(each);
        return;
    }
    // 64 bytes at a time: a bit per word byte, then the bits where a word starts or ends,
    // visited in order. A branch per byte on its class mispredicts at every word's edges.
    let bytes = folded.as_bytes();
    let (mut start, mut in_word, mut carry) = (0usize, false, 0u64);
    for (chunk_index, chunk) in bytes.chunks(64).enumerate() {
        let mut mask = 0u64;
        for (bit, &byte) in chunk.iter().enumerate() {
            mask |= u64::from(WORD_BYTE[usize::from(byte)]) << bit;
        }
        let base = chunk_index * 64;
        let mut edges = mask ^ ((mask << 1) | carry);
        while edges != 0 {
            let at = base + edges.trailing_zeros() as usize;
            edges &= edges - 1;
            if in_word {
                each(&folded[start..at]);
            } else {
                start = at;
            }
            in_word = !in_word;
        }
        carry = mask >> 63;
    }
    if in_word {
        each(&folded[start..]);
    }
}

/// The bytes of words: ASCII letters and digits, and the apostrophe.
const WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = (byte as u8).is_ascii_alphanumeric() || byte as u8 == b'\'';
        byte += 1;
    }
    table
};

/// Whether one of `long_words` (the byte ranges in `folded` of its words of three bytes or
/// more) occurs more than `words / 4`
/// times. A word that frequent is among the three candidates of the Misra-Gries summary of
/// the long words (every word occurring more than a quarter of them is), so two passes find
/// it without sorting or hashing.
fn repeats_over_a_quarter(folded: &str, long_words: &[(u32, u32)], words: usize) -> bool {
    let word = |&(start, end): &(u32, u32)| &folded[start as usize..end as usize];
    let mut candidates: [(&str, usize); 3] = [("", 0); 3];
    for word in long_words.iter().map(word) {
        if let Some(candidate) = candidates
            .iter_mut()
            .find(|(known, count)| *count > 0 && *known == word)
        {
            candidate.1 += 1;
        } else if let Some(free) = candidates.iter_mut().find(|(_, count)| *count == 0) {
            *free = (word, 1);
        } else {
            for candidate in &mut candidates {
                candidate.1 -= 1;
            }
        }
    }
    let mut counts = [0usize; 3];
    for word in long_words.iter().map(word) {
        for (count, (candidate, left)) in counts.iter_mut().zip(&candidates) {
            *count += usize::from(*left > 0 && *candidate == word);
        }
    }
    counts.iter().any(|&count| count * 4 > words)
}

/// The intents that hold, most urgent first: the cue intents plus those that follow from a
/// question mark, the sentiment and the velocity.
fn intents(assessment: &Assessment, compound: f64) -> Vec<String> {
    let mut held = assessment.cue_intents;
    let index = |name: &str| {
        INTENTS
            .iter()
            .position(|i| *i == name)
            .expect("known intent")
    };
    if assessment.question_mark {
        held[index("question")] = true;
    }
    if compound <= -0.5 {
        held[index("complaint")] = true;
    }
    if compound >= 0.6 && !held[index("complaint")] {
        held[index("praise")] = true;
    }
    // A fast-moving, non-negative conversation is one the brand could join.
    if assessment.velocity >= 100.0 && compound >= 0.0 {
        held[index("opportunity")] = true;
    }
    INTENTS
        .iter()
        .zip(held)
        .filter(|(_, h)| *h)
        .map(|(i, _)| (*i).to_owned())
        .collect()
}

/// Recent texts and zero-follower authors, by `created_at`, for duplicate and burst detection.
#[derive(Default)]
struct Recent {
    /// Text hash to (author hash, created_at) of its recent posts. Most texts are posted
    /// once: the first post is kept in the table's slot, not behind a pointer.
    texts: HashMap<u64, SmallVec<[(u64, i64); 1]>>,
    /// Zero-follower author hash to the created_at of their recent posts.
    authors: HashMap<u64, SmallVec<[i64; 1]>>,
}

impl Recent {
    /// Records the mention; whether its text is a recent duplicate from other authors, and
    /// whether its author is a zero-follower account bursting.
    /// `text` is the hash of the folded text, none when it is too short to count as a
    /// duplicate; `author` the hash of the folded handle.
    fn observe(
        &mut self,
        mention: &Mention,
        text: Option<u64>,
        author: u64,
        followers: Option<i64>,
    ) -> (bool, bool) {
        let now = mention.created_at;
        let since = now.saturating_sub(SPAM_WINDOW_MICROS);
        if self.texts.len() + self.authors.len() > STATE_CAPACITY {
            self.texts
                .retain(|_, posts| posts.iter().any(|&(_, t)| t >= since));
            self.authors
                .retain(|_, posts| posts.iter().any(|&t| t >= since));
            if self.texts.len() + self.authors.len() > STATE_CAPACITY {
                // Everything is recent: forget rather than grow without bound.
                self.texts.clear();
                self.authors.clear();
            }
        }
        let duplicate = text.is_some_and(|text| {
            let posts = self.texts.entry(text).or_default();
            posts.retain(|(_, t)| *t >= since);
            if !posts.iter().any(|&(a, _)| a == author) {
                posts.push((author, now));
            }
            posts.len() >= DUPLICATE_AUTHORS
        });
        let burst = followers == Some(0) && {
            let posts = self.authors.entry(author).or_default();
            posts.retain(|t| *t >= since);
            posts.push(now);
            posts.len() >= BURST_MENTIONS
        };
        (duplicate, burst)
    }
}

#[cfg(test)]
mod tests {
    use earshot_core::model::{mention_id, Author, Engagement, Source};

    use super::*;

    fn mention(author: &str, text: &str, followers: Option<i64>, created_at: i64) -> Mention {
        Mention {
            id: mention_id("test", text),
            native_id: text.into(),
            source: Source {
                kind: "test".into(),
                instance: "unit".into(),
            },
            url: None,
            author: Author {
                handle: author.into(),
                name: None,
                followers,
                verified: false,
                id: None,
            },
            text: text.into(),
            lang_hint: None,
            created_at,
            collected_at: created_at + 60_000_000,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        }
    }

    const T0: i64 = 1_800_000_000_000_000;

    /// Intents and spam reasons of one text (English, neutral sentiment unless given).
    fn check(text: &str, compound: f64, intents: &[&str], spam: &[&str]) {
        let signals = Signals::new(&EnricherConfig::default());
        let scores = signals.score(
            &mention("@a", text, Some(100), T0),
            compound,
            Some("en"),
            Vec::new(),
        );
        assert_eq!(scores.intents, intents, "{text:?}");
        assert_eq!(scores.spam_reasons, spam, "{text:?}");
        assert!((0.0..=1.0).contains(&scores.spam_score) && (0.0..=1.0).contains(&scores.urgency));
        assert_eq!(scores.spam_score > 0.0, !spam.is_empty(), "{text:?}");
    }

    #[test]
    fn intents_and_spam_reasons_follow_the_cues() {
        check(
            "Still waiting for my refund, this is unacceptable",
            -0.3,
            &["complaint"],
            &[],
        );
        check("How do I reset the lamp?", 0.0, &["question"], &[]);
        check("Love the new lamp, thank you!", 0.8, &["praise"], &[]);
        check(
            "Thinking of buying the Halo, worth it?",
            0.0,
            &["question", "purchase_intent"],
            &[],
        );
        check(
            "Cancelling my subscription, switching to Brewtide",
            -0.1,
            &["churn_threat"],
            &[],
        );
        check(
            "Parcelly outage again, we are talking to a lawyer",
            -0.6,
            &["crisis_risk", "complaint"],
            &[],
        );
        check(
            "Any recommendations for a desk lamp",
            0.0,
            &["opportunity"],
            &[],
        );
        check("A Sue Anderson book", 0.0, &[], &[]);
        check(
            "Best replica watches, cheap: visit now",
            0.6,
            &["praise"],
            &["seo_phrase"],
        );
        check("cheap lumora lamps outlet store", 0.0, &[], &["seo_phrase"]);
        check(
            "Packers and Movers Bangalore https://a.example https://b.example https://c.example",
            0.0,
            &[],
            &["seo_phrase", "many_links"],
        );
        check(
            "lamp lamp lamp lamp buy lamp lamp cheap lamp",
            0.0,
            &[],
            &["keyword_stuffing"],
        );
        check("#a #b #c #d #e #f", 0.0, &[], &["keyword_stuffing"]);
        check("a perfectly ordinary post about lamps", 0.0, &[], &[]);
        check(
            "Claim your COMPENSATION for late deliveries now https://parcelly-refunds.example.net/c",
            0.0,
            &[],
            &["link_lure"],
        );
        check(
            "You are a winner! Your prize is waiting: www.lucky.example/win",
            0.0,
            &[],
            &["link_lure"],
        );
        // One lure, or two without a link, is an ordinary post.
        check(
            "free shipping on the Halo this week https://lumora.example/halo",
            0.0,
            &[],
            &[],
        );
        check(
            "how do I claim compensation for a lost parcel",
            0.0,
            &["question"],
            &[],
        );
    }

    #[test]
    fn a_giveaway_bot_is_likely_spam_and_its_lures_come_from_the_config() {
        let bot = "claim your compensation for late deliveries now https://parcelly.example.org/x";
        let default = Signals::new(&EnricherConfig::default());
        let score = |signals: &Signals, text: &str| {
            signals.score(
                &mention("@bot", text, Some(3), T0),
                0.0,
                Some("en"),
                Vec::new(),
            )
        };
        let scores = score(&default, bot);
        assert!(scores.spam_score >= 0.5, "{scores:?}");
        assert!(scores.urgency < score(&default, "late deliveries again").urgency);
        let config = EnricherConfig {
            spam_lures: vec!["Gewinn".into(), "gratis".into()],
            ..EnricherConfig::default()
        };
        let custom = Signals::new(&config);
        // The configured list replaces the built-in one.
        assert!(score(&custom, bot).spam_reasons.is_empty());
        assert_eq!(
            score(&custom, "Dein GEWINN ist gratis: https://x.example/y").spam_reasons,
            ["link_lure"]
        );
    }

    #[test]
    fn cue_lists_follow_the_language_and_the_config() {
        let mut config = EnricherConfig::default();
        config.intent_cues.insert(
            "en".into(),
            [("praise".to_owned(), vec!["rad".to_owned()])]
                .into_iter()
                .collect(),
        );
        let signals = Signals::new(&config);
        let intents = |text: &str, lang: &str| {
            signals
                .score(&mention("@a", text, None, T0), 0.0, Some(lang), Vec::new())
                .intents
        };
        assert_eq!(intents("so rad", "en"), ["praise"]);
        // The configured list replaces the built-in one for that intent.
        assert_eq!(intents("love it", "en"), Vec::<String>::new());
        assert_eq!(intents("j'adore la lampe", "fr"), ["praise"]);
        assert_eq!(intents("jamais reçu mon colis", "fr"), ["complaint"]);
        // No cues for German: the English ones apply.
        assert_eq!(intents("still waiting", "de"), ["complaint"]);
    }

    #[test]
    fn the_same_text_from_many_authors_and_zero_follower_bursts_are_spam() {
        let signals = Signals::new(&EnricherConfig::default());
        let text = "Get the best deal on lamps today only";
        let reasons = |m: Mention| signals.score(&m, 0.0, Some("en"), Vec::new()).spam_reasons;
        assert!(reasons(mention("@a", text, Some(50), T0)).is_empty());
        assert!(
            reasons(mention("@a", text, Some(50), T0 + 1)).is_empty(),
            "same author again"
        );
        assert!(reasons(mention("@b", text, Some(50), T0 + 2)).is_empty());
        assert_eq!(
            reasons(mention("@c", text, Some(50), T0 + 3)),
            ["duplicate_text"]
        );
        // Outside the window the count starts again.
        let later = T0 + SPAM_WINDOW_MICROS + 10;
        assert!(reasons(mention("@d", text, Some(50), later)).is_empty());

        for i in 0..BURST_MENTIONS as i64 {
            let found = reasons(mention(
                "@fresh",
                &format!("post number {i}"),
                Some(0),
                T0 + i,
            ));
            assert_eq!(
                found.is_empty(),
                i + 1 < BURST_MENTIONS as i64,
                "{i}: {found:?}"
            );
        }
        assert!(reasons(mention("@known", "post number 9", Some(10), T0)).is_empty());
    }

    #[test]
    fn reach_and_urgency_rise_with_audience_negativity_and_crisis() {
        let signals = Signals::new(&EnricherConfig::default());
        let score = |text: &str, followers: i64, likes: i64, compound: f64| {
            let mut m = mention("@a", text, Some(followers), T0);
            m.engagement.likes = likes;
            signals.score(&m, compound, Some("en"), Vec::new())
        };
        let small = score("nice lamp", 10, 0, 0.0);
        let big = score("nice lamp", 2_000_000, 5_000, 0.0);
        assert!(
            small.reach_score < 0.2 && big.reach_score > 0.8,
            "{small:?} {big:?}"
        );
        let calm = score("nice lamp", 100, 0, 0.3);
        let crisis = score("lamp caught fire, calling a lawyer", 100, 0, -0.7);
        assert!(crisis.urgency > calm.urgency + 0.4, "{calm:?} {crisis:?}");
        let spam = score(
            "lamp caught fire, calling a lawyer, replica watches",
            100,
            0,
            -0.7,
        );
        assert!(spam.urgency < crisis.urgency / 2.0, "{spam:?}");
    }

    #[test]
    fn words_and_the_repeated_word_count_as_splitting_and_sorting_would() {
        // What the spam check did before: split, collect, sort, count runs.
        fn reference(folded: &str) -> (Vec<&str>, bool) {
            let words: Vec<&str> = folded
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .filter(|w| !w.is_empty())
                .collect();
            let mut long: Vec<&str> = words.iter().copied().filter(|w| w.len() >= 3).collect();
            long.sort_unstable();
            let most = long.chunk_by(|a, b| a == b).map(<[_]>::len).max();
            let stuffed = most.is_some_and(|n| n * 4 > words.len());
            (words, stuffed)
        }
        let vocabulary = [
            "lamp", "lamp's", "buy", "it", "cheap", "éclair", "a", "the", "go", "1234",
        ];
        let separators = [" ", ", ", "!", " #", "_", "-", " é ", "'"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut stuffed = 0;
        for round in 0..20_000 {
            let mut text = String::new();
            for _ in 0..next(30) {
                text.push_str(vocabulary[next(vocabulary.len())]);
                text.push_str(separators[next(separators.len())]);
            }
            // Half the texts ASCII, which takes the 64-bytes-at-a-time path.
            if round % 2 == 0 {
                text.retain(|c| c.is_ascii());
            }
            let (words, expected) = reference(&text);
            let mut found = Vec::new();
            for_each_word(&text, |w| found.push(w));
            assert_eq!(found, words, "{text:?}");
            let long: Vec<(u32, u32)> = found
                .iter()
                .filter(|w| w.len() >= 3)
                .map(|w| {
                    let start = w.as_ptr() as usize - text.as_ptr() as usize;
                    (start as u32, (start + w.len()) as u32)
                })
                .collect();
            assert_eq!(
                repeats_over_a_quarter(&text, &long, words.len()),
                expected,
                "{text:?}"
            );
            stuffed += usize::from(expected);
        }
        assert!(stuffed > 1_000 && stuffed < 19_000, "{stuffed}");
    }

    #[test]
    fn bad_input_is_flagged_not_dropped() {
        let config = EnricherConfig {
            max_text_bytes: 1024,
            ..EnricherConfig::default()
        };
        let signals = Signals::new(&config);
        let mut huge = mention("@a", &"é".repeat(2000), Some(-5), 0);
        assert!(signals.cap_text(&mut huge));
        assert_eq!(huge.text.len(), 1024);
        huge.engagement.likes = -1;
        let scores = signals.score(&huge, 0.0, None, vec!["text_truncated".into()]);
        assert_eq!(
            scores.flags,
            [
                "text_truncated",
                "unknown_language",
                "invalid_followers",
                "invalid_engagement",
                "invalid_created_at"
            ]
        );
        let empty = signals.score(
            &mention("@a", "  ", Some(1), T0),
            0.0,
            Some("en"),
            Vec::new(),
        );
        assert_eq!(empty.flags, ["empty_text"]);
    }
}
