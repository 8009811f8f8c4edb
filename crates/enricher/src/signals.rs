//! What a mention means beyond its watchlists: spam and bot score with reasons, intents from
//! cue lists per language, reach and urgency scores, and the flags of bad input.
//!
//! Every formula here is documented in RELIABILITY.md ("Understanding scores"); the weights
//! of urgency and the cue lists come from `enricher` in the configuration.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use earshot_core::config::{EnricherConfig, UrgencyWeights, INTENTS};
use earshot_core::model::Mention;
use earshot_query::fold;

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

/// A set of phrases found as whole words in folded text.
struct Phrases {
    automaton: AhoCorasick,
    /// Per pattern, what it stands for (an intent index, or 0 for spam).
    labels: Vec<usize>,
}

impl Phrases {
    fn new(phrases: Vec<(String, usize)>) -> Phrases {
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(phrases.iter().map(|(p, _)| p.as_str()))
            .expect("phrases within the automaton's size limits");
        Phrases {
            automaton,
            labels: phrases.into_iter().map(|(_, label)| label).collect(),
        }
    }

    /// The labels of the phrases found in `folded` on word boundaries.
    fn found(&self, folded: &str, mut each: impl FnMut(usize)) {
        for hit in self.automaton.find_overlapping_iter(folded) {
            let before = folded[..hit.start()].chars().next_back();
            let after = folded[hit.end()..].chars().next();
            let word = |c: char| c.is_alphanumeric() || c == '_';
            if before.is_none_or(|c| !word(c)) && after.is_none_or(|c| !word(c)) {
                each(self.labels[hit.pattern().as_usize()]);
            }
        }
    }
}

/// Spam, intent, reach and urgency scoring, with the look-back state spam detection needs.
pub struct Signals {
    spam_phrases: Phrases,
    /// Labelled with their own index, so that distinct lures can be counted.
    spam_lures: Phrases,
    cues: HashMap<String, Phrases>,
    weights: UrgencyWeights,
    max_text_bytes: usize,
    recent: Mutex<Recent>,
}

impl Signals {
    pub fn new(config: &EnricherConfig) -> Signals {
        let mut spam: Vec<(String, usize)> = SPAM_PHRASES.iter().map(|p| (fold(p), 0)).collect();
        spam.extend(config.spam_phrases.iter().map(|p| (fold(p.trim()), 0)));
        let mut lists: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (lang, intent, phrases) in CUES {
            lists.entry((*lang).to_owned()).or_default().insert(
                (*intent).to_owned(),
                phrases.iter().map(|p| fold(p)).collect(),
            );
        }
        for (lang, intents) in &config.intent_cues {
            for (intent, phrases) in intents {
                lists.entry(lang.clone()).or_default().insert(
                    intent.clone(),
                    phrases.iter().map(|p| fold(p.trim())).collect(),
                );
            }
        }
        let cues = lists
            .into_iter()
            .map(|(lang, intents)| {
                let phrases = intents
                    .into_iter()
                    .filter_map(|(intent, phrases)| {
                        let index = INTENTS.iter().position(|i| *i == intent)?;
                        Some(phrases.into_iter().map(move |p| (p, index)))
                    })
                    .flatten()
                    .filter(|(p, _)| !p.is_empty())
                    .collect();
                (lang, Phrases::new(phrases))
            })
            .collect();
        let lures: Vec<String> = if config.spam_lures.is_empty() {
            SPAM_LURES.iter().map(|l| fold(l)).collect()
        } else {
            config.spam_lures.iter().map(|l| fold(l.trim())).collect()
        };
        let lures = lures
            .into_iter()
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| (l, i))
            .collect();
        Signals {
            spam_phrases: Phrases::new(spam),
            spam_lures: Phrases::new(lures),
            cues,
            weights: config.urgency.clone(),
            max_text_bytes: config.max_text_bytes,
            recent: Mutex::new(Recent::default()),
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

        let folded = fold(text);
        let (spam_score, spam_reasons) = self.spam(mention, &folded, followers);
        let mut cue_intents = [false; INTENTS.len()];
        // The cues of the mention's language, English when there are none for it.
        let cues = language
            .and_then(|l| self.cues.get(l))
            .or_else(|| self.cues.get("en"));
        if let Some(cues) = cues {
            cues.found(&folded, |intent| cue_intents[intent] = true);
        }
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

    fn spam(&self, mention: &Mention, folded: &str, followers: Option<i64>) -> (f64, Vec<String>) {
        let mut reasons: Vec<(&str, f64)> = Vec::new();
        let mut seo = false;
        self.spam_phrases.found(folded, |_| seo = true);
        // "cheap <brand> outlet" and its kin: the two words anywhere in one post.
        let words: Vec<&str> = folded
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .collect();
        if words.contains(&"cheap") && (words.contains(&"outlet") || words.contains(&"sale")) {
            seo = true;
        }
        if seo {
            reasons.push(("seo_phrase", 0.6));
        }
        let links = folded.matches("http://").count() + folded.matches("https://").count();
        if links >= 3 {
            reasons.push(("many_links", 0.35));
        }
        if links > 0 || folded.contains("www.") {
            let mut lures: Vec<usize> = Vec::new();
            self.spam_lures.found(folded, |lure| {
                if !lures.contains(&lure) {
                    lures.push(lure);
                }
            });
            if lures.len() >= 2 {
                reasons.push(("link_lure", 0.55));
            }
        }
        let hashtags = folded.matches('#').count();
        let stuffed = words.len() >= 8 && {
            // The most repeated word of three letters or more: sorted, equal words are runs
            // (cheaper than hashing every word of every post).
            let mut long: Vec<&str> = words.iter().copied().filter(|w| w.len() >= 3).collect();
            long.sort_unstable();
            let most = long.chunk_by(|a, b| a == b).map(<[_]>::len).max();
            most.is_some_and(|n| n * 4 > words.len())
        };
        if stuffed || hashtags >= 6 {
            reasons.push(("keyword_stuffing", 0.35));
        }
        let (duplicate, burst) = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(mention, folded, followers);
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
    /// Text hash to (author hash, created_at) of its recent posts.
    texts: HashMap<u64, Vec<(u64, i64)>>,
    /// Zero-follower author hash to the created_at of their recent posts.
    authors: HashMap<u64, Vec<i64>>,
}

impl Recent {
    /// Records the mention; whether its text is a recent duplicate from other authors, and
    /// whether its author is a zero-follower account bursting.
    fn observe(&mut self, mention: &Mention, folded: &str, followers: Option<i64>) -> (bool, bool) {
        let now = mention.created_at;
        let since = now.saturating_sub(SPAM_WINDOW_MICROS);
        let author = hash(&fold(&mention.author.handle));
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
        let duplicate = folded.trim().len() >= 20 && {
            let posts = self.texts.entry(hash(folded.trim())).or_default();
            posts.retain(|&(_, t)| t >= since);
            if !posts.iter().any(|&(a, _)| a == author) {
                posts.push((author, now));
            }
            posts.len() >= DUPLICATE_AUTHORS
        };
        let burst = followers == Some(0) && {
            let posts = self.authors.entry(author).or_default();
            posts.retain(|&t| t >= since);
            posts.push(now);
            posts.len() >= BURST_MENTIONS
        };
        (duplicate, burst)
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
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
