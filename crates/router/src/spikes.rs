//! Spike detection: per watchlist, the mentions of each window (volume) and the share of them
//! that is negative, against a baseline learned from the earlier windows.
//!
//! - **Windows** are `window_secs` long and follow the mentions' `collected_at`, not the
//!   router's clock: a replay of the same records finds the same spikes, and tests need no
//!   sleeping. A window closes when the first mention of a later window arrives; the empty
//!   windows in between close as zero mentions (so a watchlist going quiet is a dip, seen
//!   when its next mention arrives). All copies of a watchlist are in one partition (the
//!   enricher keys them by watchlist), so one router replica sees every window of it. A
//!   mention that arrives after its window closed counts in the open one.
//! - **Baseline:** an exponentially weighted mean and variance per metric (weight
//!   `baseline_alpha`). The z-score divides by at least the noise of counting: Poisson for
//!   the volume (variance at least the mean, and at least 1), binomial for the share
//!   (`p(1-p)/n`), so a flat baseline does not turn one extra mention into a spike.
//! - **Spikes:** after `warmup_windows`, a window whose z-score reaches `z_threshold` is a
//!   peak (volume, with at least `min_mentions` mentions; negative share, over at least
//!   `min_mentions` mentions) or a dip (volume only, below a baseline of at least
//!   `min_mentions`: a drop of negative share is not something to act on).
//!   `cooldown_secs` then holds back spikes of the same metric and direction.
//! - **Learning:** each closed window updates the baseline, clamped to the threshold band
//!   once warmed up, so that one burst does not inflate the baseline and hide the next one,
//!   while a lasting change of level is still learned, one band a window.
//!
//! [`WatchlistState`] is plain serde data, kept in the state topic (`spike/<watchlist>`,
//! [`SavedSpikes`]): saved when a window closes, at most every [`SAVE_EVERY`] while one is
//! open, and at shutdown ([`SpikeDetector::to_save`], [`SpikeDetector::states`]). A router
//! restarted, or newly assigned the watchlist's partition, takes up the saved state
//! ([`SpikeInbox`]) at the watchlist's next mention, so it detects spikes against the
//! baseline learned before, without warming up again. After a crash (no shutdown save),
//! the open window's counts are those of its last save, and the records read again since
//! the last committed offset may count twice or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_core::config::SpikesConfig;
use earshot_core::model::{
    Alert, Author, Engagement, EnrichedMention, Mention, Sentiment, Signals, Source, Spike,
    SpikeCount, SpikeSample, ALERT_KIND_SPIKE, ID_NAMESPACE,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use crate::routes::Routes;

/// A watchlist's open window is saved at most this often (windows that close are saved at
/// once).
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// A watchlist's entry in the state topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSpikes {
    /// The process that wrote it (its own entries read back are not taken up again).
    pub writer: Uuid,
    pub state: WatchlistState,
}

/// Spike states saved by other processes (or before a restart), waiting for the detector to
/// take them up at their watchlist's next mention.
#[derive(Clone, Default)]
pub struct SpikeInbox(Arc<InboxInner>);

#[derive(Default)]
struct InboxInner {
    /// Bumped on every put, so that the detector looks in only when something came.
    version: AtomicU64,
    states: Mutex<HashMap<String, WatchlistState>>,
}

impl SpikeInbox {
    pub fn put(&self, watchlist: String, state: WatchlistState) {
        self.0
            .states
            .lock()
            .expect("spike inbox lock")
            .insert(watchlist, state);
        self.0.version.fetch_add(1, Ordering::Release);
    }
}

/// The intent, source kind and author of the mention a spike goes down the routing tree as.
pub const SPIKE_INTENT: &str = "spike";
pub const SPIKE_SOURCE: &str = "earshot";
pub const SPIKE_AUTHOR: &str = "earshot";

pub const METRIC_VOLUME: &str = "volume";
pub const METRIC_NEGATIVE_SHARE: &str = "negative_share";
pub const PEAK: &str = "peak";
pub const DIP: &str = "dip";

const TOP_TERMS: usize = 5;
const TOP_AUTHORS: usize = 5;
const SAMPLES: usize = 3;
/// Distinct terms and authors counted per window; later new ones are not (memory bound).
const MAX_DISTINCT: usize = 10_000;
/// Empty windows closed at most after a gap; a longer gap skips the rest.
const MAX_EMPTY_WINDOWS: i64 = 100_000;
/// Smallest variance of a share (a standard deviation of 1 point).
const MIN_SHARE_VARIANCE: f64 = 1e-4;
const SAMPLE_TEXT_CHARS: usize = 280;

/// Spike detection over every watched watchlist.
pub struct SpikeDetector {
    config: SpikesConfig,
    window_micros: i64,
    watchlists: HashMap<String, WatchlistState>,
    inbox: SpikeInbox,
    /// The inbox's version last drained into `restored`.
    inbox_seen: u64,
    /// Saved states not yet taken up.
    restored: HashMap<String, WatchlistState>,
    /// Per watchlist, the window start and time of its last save.
    saved: HashMap<String, (i64, Instant)>,
}

/// What is kept per watchlist: the baseline, the open window and the cooldowns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchlistState {
    pub baseline: Baseline,
    pub window: Window,
    /// `<metric>:<direction>` to the collection time (µs) before which no other such spike
    /// is raised.
    pub cooldown_until: BTreeMap<String, i64>,
}

/// The learned baseline of a watchlist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Mentions per window; every closed window counts.
    pub volume: Ewma,
    /// Negative share; only windows of at least `min_mentions` mentions count.
    pub negative_share: Ewma,
}

/// An exponentially weighted moving mean and variance (West's incremental form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    pub mean: f64,
    pub variance: f64,
    /// Values folded in.
    pub samples: u64,
}

impl Ewma {
    fn update(&mut self, value: f64, alpha: f64) {
        if self.samples == 0 {
            self.mean = value;
            self.variance = 0.0;
        } else {
            let diff = value - self.mean;
            let increment = alpha * diff;
            self.mean += increment;
            self.variance = (1.0 - alpha) * (self.variance + diff * increment);
        }
        self.samples += 1;
    }
}

/// The open window of a watchlist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start, µs since the epoch, a multiple of the window length.
    pub start: i64,
    pub mentions: u64,
    pub negative: u64,
    /// Mentions carrying each term (counted once per mention).
    pub terms: HashMap<String, u64>,
    pub authors: HashMap<String, u64>,
    /// The mentions with the most reach, most first.
    pub samples: Vec<SpikeSample>,
}

/// A spike found when a window closed.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeFound {
    pub watchlist: String,
    pub spike: Spike,
    /// The bound the value crossed: the baseline plus (peak) or minus (dip) `z_threshold`
    /// standard deviations.
    pub bound: f64,
    /// Collection time of the mention whose arrival closed the window.
    pub closed_at: i64,
}

impl SpikeDetector {
    pub fn new(config: SpikesConfig) -> Self {
        SpikeDetector {
            window_micros: (config.window_secs.max(1) as i64).saturating_mul(1_000_000),
            config,
            watchlists: HashMap::new(),
            inbox: SpikeInbox::default(),
            inbox_seen: 0,
            restored: HashMap::new(),
            saved: HashMap::new(),
        }
    }

    /// Where saved states come in.
    pub fn with_inbox(mut self, inbox: SpikeInbox) -> Self {
        self.inbox = inbox;
        self
    }

    /// Takes up the saved state of `watchlist` unless the one held here is further along
    /// (a late save of the replica that had the partition before).
    fn take_up(&mut self, watchlist: &str) {
        self.drain_inbox();
        if self.restored.is_empty() {
            return;
        }
        let Some(saved) = self.restored.remove(watchlist) else {
            return;
        };
        self.take_up_state(watchlist, saved);
    }

    /// Takes up every saved state that came in, for the watchlists held here, unless the
    /// one held is further along: before the last save at shutdown, so that a watchlist
    /// whose partition came back is not saved older than its other owner left it.
    pub fn take_up_held(&mut self) {
        self.drain_inbox();
        let held: Vec<String> = self
            .restored
            .keys()
            .filter(|w| self.watchlists.contains_key(*w))
            .cloned()
            .collect();
        for watchlist in held {
            if let Some(saved) = self.restored.remove(&watchlist) {
                self.take_up_state(&watchlist, saved);
            }
        }
    }

    /// Moves what came in the inbox since it was last looked at into `restored`.
    fn drain_inbox(&mut self) {
        let version = self.inbox.0.version.load(Ordering::Acquire);
        if version != self.inbox_seen {
            self.inbox_seen = version;
            let mut states = self.inbox.0.states.lock().expect("spike inbox lock");
            self.restored.extend(states.drain());
        }
    }

    fn take_up_state(&mut self, watchlist: &str, saved: WatchlistState) {
        let newer = match self.watchlists.get(watchlist) {
            None => true,
            Some(held) => {
                (saved.window.start, saved.window.mentions)
                    > (held.window.start, held.window.mentions)
            }
        };
        if newer {
            self.watchlists.insert(watchlist.to_owned(), saved);
        }
    }

    /// The state of `watchlist` to save now, when it has not been saved since its window
    /// opened or for [`SAVE_EVERY`].
    pub fn to_save(&mut self, watchlist: &str, now: Instant) -> Option<WatchlistState> {
        let state = self.watchlists.get(watchlist)?;
        if let Some((start, at)) = self.saved.get(watchlist) {
            if *start == state.window.start && now.duration_since(*at) < SAVE_EVERY {
                return None;
            }
        }
        self.saved
            .insert(watchlist.to_owned(), (state.window.start, now));
        Some(state.clone())
    }

    /// Counts one enriched copy in its watchlist's window; returns the spikes of the windows
    /// its arrival closed.
    pub fn observe(&mut self, enriched: &EnrichedMention) -> Vec<SpikeFound> {
        let watchlist = &enriched.watchlist;
        if watchlist.is_empty()
            || !(self.config.watchlists.is_empty() || self.config.watchlists.contains(watchlist))
        {
            return Vec::new();
        }
        let at = enriched.mention.collected_at;
        let start = at.div_euclid(self.window_micros) * self.window_micros;
        self.take_up(watchlist);
        // Looked up by reference: the key is allocated only for a watchlist's first mention.
        if !self.watchlists.contains_key(watchlist) {
            self.watchlists.insert(
                watchlist.clone(),
                WatchlistState {
                    window: Window {
                        start,
                        ..Window::default()
                    },
                    ..WatchlistState::default()
                },
            );
        }
        let state = self.watchlists.get_mut(watchlist).expect("inserted above");
        let mut found = Vec::new();
        if start > state.window.start {
            let gap = (start - state.window.start) / self.window_micros;
            found.extend(close(
                state,
                &self.config,
                self.window_micros,
                watchlist,
                at,
            ));
            for _ in 1..gap.min(MAX_EMPTY_WINDOWS) {
                state.window = Window {
                    start: state.window.start + self.window_micros,
                    ..Window::default()
                };
                found.extend(close(
                    state,
                    &self.config,
                    self.window_micros,
                    watchlist,
                    at,
                ));
            }
            state.window = Window {
                start,
                ..Window::default()
            };
        }
        let max_age = (self.config.max_post_age_secs as i64).saturating_mul(1_000_000);
        if enriched.mention.created_at >= at.saturating_sub(max_age) {
            count(&mut state.window, enriched, self.config.negative_compound);
        }
        found
    }

    /// Every watchlist's state, to persist.
    pub fn states(&self) -> impl Iterator<Item = (&str, &WatchlistState)> {
        self.watchlists
            .iter()
            .map(|(name, state)| (name.as_str(), state))
    }

    /// Puts back a watchlist's persisted state.
    pub fn restore(&mut self, watchlist: String, state: WatchlistState) {
        self.watchlists.insert(watchlist, state);
    }
}

/// The alerts a spike raises: it goes down the routing tree as a mention of its watchlist
/// with intent `spike` (see [`subject`]), and each alert carries the spike.
pub fn route(routes: &Routes, found: &SpikeFound) -> Vec<(Alert, String, Arc<EnrichedMention>)> {
    let subject = Arc::new(subject(found));
    routes
        .evaluate(&subject)
        .into_iter()
        .map(|(mut alert, receiver)| {
            alert.kind = ALERT_KIND_SPIKE.to_owned();
            alert.score_name = found.spike.metric.clone();
            alert.score = found.spike.value;
            alert.threshold = found.bound;
            alert.mention_collected_at = found.closed_at;
            alert.spike = Some(found.spike.clone());
            (alert, receiver, subject.clone())
        })
        .collect()
}

/// The mention a spike goes down the routing tree as: its watchlist, intent `spike`, source
/// and author `earshot`, the summary as text, neutral scores. Its id is stable for the
/// watchlist, metric, direction and window, so a replay raises the same alert ids.
pub fn subject(found: &SpikeFound) -> EnrichedMention {
    let spike = &found.spike;
    let native_id = format!(
        "{}:{}:{}:{}",
        found.watchlist, spike.metric, spike.direction, spike.window_start
    );
    let id = uuid::Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{SPIKE_SOURCE}:spike:{native_id}").as_bytes(),
    );
    EnrichedMention {
        mention: Mention {
            id,
            native_id,
            source: Source {
                kind: SPIKE_SOURCE.to_owned(),
                instance: "spikes".to_owned(),
            },
            url: None,
            author: Author {
                handle: SPIKE_AUTHOR.to_owned(),
                name: None,
                followers: None,
                verified: false,
                id: None,
            },
            text: summary(&found.watchlist, spike),
            lang_hint: None,
            created_at: spike.window_end,
            collected_at: found.closed_at,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        },
        watchlist: found.watchlist.clone(),
        matches: Vec::new(),
        sentiment: Sentiment::default(),
        sentences: Default::default(),
        language: None,
        language_confidence: 0.0,
        spam_score: 0.0,
        intent: SPIKE_INTENT.to_owned(),
        reach: 0,
        urgency: 0.0,
        signals: Signals {
            intents: vec![SPIKE_INTENT.to_owned()],
            ..Signals::default()
        },
        enriched_at: found.closed_at,
    }
}

/// The spike in words: counts against baseline, top terms, top authors, sample mentions.
pub fn summary(watchlist: &str, spike: &Spike) -> String {
    let minutes = (spike.window_end - spike.window_start) / 60_000_000;
    let from = chrono::DateTime::from_timestamp_micros(spike.window_start).unwrap_or_default();
    let to = chrono::DateTime::from_timestamp_micros(spike.window_end).unwrap_or_default();
    let window = format!(
        "in {minutes} min ({} to {} UTC)",
        from.format("%Y-%m-%d %H:%M"),
        to.format("%H:%M")
    );
    let direction = if spike.direction == DIP {
        "dip"
    } else {
        "peak"
    };
    let mut text = if spike.metric == METRIC_NEGATIVE_SHARE {
        format!(
            "Negative share {direction} on {watchlist}: {:.0}% of {} mentions negative {window}, against a baseline of {:.0}% ± {:.0}% (z {:+.1}).",
            spike.value * 100.0,
            spike.mentions,
            spike.baseline_mean * 100.0,
            spike.baseline_stddev * 100.0,
            spike.z_score,
        )
    } else {
        format!(
            "Volume {direction} on {watchlist}: {} mentions {window}, against a baseline of {:.1} ± {:.1} (z {:+.1}). Negative: {}.",
            spike.mentions,
            spike.baseline_mean,
            spike.baseline_stddev,
            spike.z_score,
            spike.negative_mentions,
        )
    };
    let counts = |counts: &[SpikeCount]| {
        counts
            .iter()
            .map(|c| format!("{} ({})", c.name, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !spike.top_terms.is_empty() {
        text.push_str(&format!(" Top terms: {}.", counts(&spike.top_terms)));
    }
    if !spike.top_authors.is_empty() {
        text.push_str(&format!(" Top authors: {}.", counts(&spike.top_authors)));
    }
    for sample in &spike.samples {
        let short: String = sample.text.chars().take(140).collect();
        text.push_str(&format!(
            "\n- {} (reach {}): {}",
            sample.author,
            sample.reach,
            short.replace('\n', " ")
        ));
    }
    text
}

/// Closes the open window: the spikes it makes, then the baseline learns it.
fn close(
    state: &mut WatchlistState,
    config: &SpikesConfig,
    window_micros: i64,
    watchlist: &str,
    closed_at: i64,
) -> Vec<SpikeFound> {
    let window = &state.window;
    let end = window.start + window_micros;
    let z_threshold = config.z_threshold;
    let min_mentions = config.min_mentions;
    let mut candidates = Vec::new();

    let volume = state.baseline.volume;
    let mentions = window.mentions as f64;
    let volume_stddev = volume.variance.max(volume.mean).max(1.0).sqrt();
    let volume_z = (mentions - volume.mean) / volume_stddev;
    let volume_ready = volume.samples >= u64::from(config.warmup_windows);
    if volume_ready {
        if volume_z >= z_threshold && window.mentions >= min_mentions {
            candidates.push((
                METRIC_VOLUME,
                PEAK,
                mentions,
                volume.mean,
                volume_stddev,
                volume_z,
                volume.mean + z_threshold * volume_stddev,
            ));
        } else if config.dips && volume_z <= -z_threshold && volume.mean >= min_mentions as f64 {
            candidates.push((
                METRIC_VOLUME,
                DIP,
                mentions,
                volume.mean,
                volume_stddev,
                volume_z,
                volume.mean - z_threshold * volume_stddev,
            ));
        }
    }

    let share_baseline = state.baseline.negative_share;
    let share_counts = window.mentions >= min_mentions;
    let share = if window.mentions == 0 {
        0.0
    } else {
        window.negative as f64 / mentions
    };
    let binomial = share_baseline.mean * (1.0 - share_baseline.mean) / mentions.max(1.0);
    let share_stddev = share_baseline
        .variance
        .max(binomial)
        .max(MIN_SHARE_VARIANCE)
        .sqrt();
    let share_z = (share - share_baseline.mean) / share_stddev;
    let share_ready = share_baseline.samples >= u64::from(config.warmup_windows);
    if share_counts && share_ready && share_z >= z_threshold {
        candidates.push((
            METRIC_NEGATIVE_SHARE,
            PEAK,
            share,
            share_baseline.mean,
            share_stddev,
            share_z,
            share_baseline.mean + z_threshold * share_stddev,
        ));
    }

    let mut found = Vec::new();
    for (metric, direction, value, mean, stddev, z, bound) in candidates {
        let key = format!("{metric}:{direction}");
        if state
            .cooldown_until
            .get(&key)
            .is_some_and(|until| window.start < *until)
        {
            continue;
        }
        let cooldown = (config.cooldown_secs as i64).saturating_mul(1_000_000);
        state
            .cooldown_until
            .insert(key, end.saturating_add(cooldown));
        found.push(SpikeFound {
            watchlist: watchlist.to_owned(),
            spike: Spike {
                metric: metric.to_owned(),
                direction: direction.to_owned(),
                window_start: window.start,
                window_end: end,
                mentions: window.mentions as i64,
                negative_mentions: window.negative as i64,
                value,
                baseline_mean: mean,
                baseline_stddev: stddev,
                z_score: z,
                top_terms: top(&window.terms, TOP_TERMS),
                top_authors: top(&window.authors, TOP_AUTHORS),
                samples: window.samples.clone(),
            },
            bound,
            closed_at,
        });
    }

    let clamp = |value: f64, mean: f64, stddev: f64, ready: bool| {
        if ready {
            value.clamp(mean - z_threshold * stddev, mean + z_threshold * stddev)
        } else {
            value
        }
    };
    let alpha = config.baseline_alpha;
    state.baseline.volume.update(
        clamp(mentions, volume.mean, volume_stddev, volume_ready),
        alpha,
    );
    if share_counts {
        state.baseline.negative_share.update(
            clamp(share, share_baseline.mean, share_stddev, share_ready),
            alpha,
        );
    }
    found
}

/// Counts one mention in the window.
fn count(window: &mut Window, enriched: &EnrichedMention, negative_compound: f64) {
    let mention = &enriched.mention;
    window.mentions += 1;
    if enriched.sentiment.compound <= negative_compound {
        window.negative += 1;
    }
    bump(&mut window.authors, &mention.author.handle);
    for term in terms(enriched) {
        bump(&mut window.terms, &term);
    }
    let at = window
        .samples
        .iter()
        .position(|s| s.reach < enriched.reach)
        .unwrap_or(window.samples.len());
    if at < SAMPLES {
        window.samples.insert(
            at,
            SpikeSample {
                mention_id: mention.id,
                author: mention.author.handle.clone(),
                text: mention.text.chars().take(SAMPLE_TEXT_CHARS).collect(),
                url: mention.url.clone(),
                reach: enriched.reach,
            },
        );
        window.samples.truncate(SAMPLES);
    }
}

fn bump(counts: &mut HashMap<String, u64>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count += 1;
    } else if counts.len() < MAX_DISTINCT {
        counts.insert(key.to_owned(), 1);
    }
}

/// The `n` most frequent, most first, ties by name.
fn top(counts: &HashMap<String, u64>, n: usize) -> Vec<SpikeCount> {
    let mut all: Vec<(&String, &u64)> = counts.iter().collect();
    all.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    all.into_iter()
        .take(n)
        .map(|(name, count)| SpikeCount {
            name: name.clone(),
            count: *count as i64,
        })
        .collect()
}

/// The distinct terms of a mention worth counting: lowercased words, hashtags and mentions
/// of at least 3 characters, without stop words, links, numbers, and the text that matched
/// the watchlist (which every mention of it carries).
fn terms(enriched: &EnrichedMention) -> Vec<String> {
    let text = &enriched.mention.text;
    let spans: Vec<(usize, usize)> = enriched
        .matches
        .iter()
        .filter(|m| m.watchlist == enriched.watchlist)
        .flat_map(|m| m.spans.iter())
        .map(|s| (s.start.max(0) as usize, s.end.max(0) as usize))
        .collect();
    let watchlist = enriched.watchlist.to_lowercase();
    let mut found: Vec<String> = Vec::new();
    for token in text.split(char::is_whitespace) {
        if token.is_empty() || token.contains("://") || token.starts_with("www.") {
            continue;
        }
        let start = token.as_ptr() as usize - text.as_ptr() as usize;
        let end = start + token.len();
        if spans.iter().any(|&(s, e)| s < end && start < e) {
            continue;
        }
        let prefix = token.starts_with(['#', '@']).then(|| &token[..1]);
        let word = token
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        let word = word
            .strip_suffix("'s")
            .or_else(|| word.strip_suffix("’s"))
            .unwrap_or(&word);
        if word.chars().count() < 3
            || !word.chars().any(char::is_alphabetic)
            || word == watchlist
            || STOP_WORDS.binary_search(&word).is_ok()
        {
            continue;
        }
        let term = format!("{}{word}", prefix.unwrap_or(""));
        if !found.contains(&term) {
            found.push(term);
        }
    }
    found
}

/// Common English words of 3 letters or more, sorted (binary search).
const STOP_WORDS: &[&str] = &[
    "about", "after", "again", "all", "also", "and", "any", "are", "because", "been", "before",
    "being", "but", "can", "could", "did", "does", "doing", "don't", "for", "from", "get", "got",
    "had", "has", "have", "her", "here", "him", "his", "how", "i'm", "into", "its", "it's", "just",
    "like", "more", "most", "not", "now", "off", "one", "only", "our", "out", "over", "same",
    "she", "should", "some", "still", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "too", "very", "was", "way", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_core::model::{mention_id, Span, WatchlistMatch};

    const MINUTE: i64 = 60_000_000;
    /// 2026-11-25T12:00:00Z, a window boundary for any window that divides an hour.
    const T0: i64 = 1_795_608_000_000_000;

    fn config() -> SpikesConfig {
        SpikesConfig {
            window_secs: 300,
            baseline_alpha: 0.2,
            warmup_windows: 6,
            z_threshold: 3.0,
            min_mentions: 5,
            dips: true,
            negative_compound: -0.05,
            cooldown_secs: 1_800,
            max_post_age_secs: 3_600,
            watchlists: Vec::new(),
        }
    }

    /// A mention of `acme` collected at `at`, with this compound and reach.
    fn mention(n: usize, at: i64, compound: f64, text: &str, author: &str) -> EnrichedMention {
        let native = format!("m{n}-{at}");
        let full = format!("Acme {text}");
        EnrichedMention {
            mention: Mention {
                id: mention_id("x", &native),
                native_id: native.clone(),
                source: Source {
                    kind: "x".into(),
                    instance: "test".into(),
                },
                url: Some(format!("https://x.example/{native}")),
                author: Author {
                    handle: author.into(),
                    name: None,
                    followers: None,
                    verified: false,
                    id: None,
                },
                text: full,
                lang_hint: None,
                created_at: at - 1_000_000,
                collected_at: at,
                engagement: Engagement::default(),
                parent_id: None,
                conversation_id: None,
                has_media: false,
                deleted_at: None,
            },
            watchlist: "acme".into(),
            matches: vec![WatchlistMatch {
                watchlist: "acme".into(),
                relevance: 1.0,
                clause: "acme".into(),
                spans: vec![Span { start: 0, end: 4 }],
            }],
            sentiment: Sentiment {
                compound,
                ..Sentiment::default()
            },
            sentences: Default::default(),
            language: Some("en".into()),
            language_confidence: 1.0,
            spam_score: 0.0,
            intent: "unknown".into(),
            reach: n as i64,
            urgency: 0.0,
            signals: Signals::default(),
            enriched_at: at,
        }
    }

    /// Feeds windows of `counts[i]` mentions each (`negative[i]` of them negative), spread
    /// over window i, then one mention at the start of the next window to close the last.
    /// Returns the spikes, tagged by the window index they came from.
    fn feed(
        detector: &mut SpikeDetector,
        counts: &[usize],
        negative: &[usize],
    ) -> Vec<(usize, String)> {
        let window = 5 * MINUTE;
        let mut found = Vec::new();
        let mut n = 0;
        let tag = |spikes: Vec<SpikeFound>, found: &mut Vec<(usize, String)>| {
            for spike in spikes {
                let index = ((spike.spike.window_start - T0) / window) as usize;
                found.push((
                    index,
                    format!("{}:{}", spike.spike.metric, spike.spike.direction),
                ));
            }
        };
        for (i, &count) in counts.iter().enumerate() {
            for j in 0..count {
                n += 1;
                let at = T0 + i as i64 * window + j as i64 * window / count as i64;
                let compound = if j < negative.get(i).copied().unwrap_or(0) {
                    -0.6
                } else {
                    0.3
                };
                let spikes = detector.observe(&mention(n, at, compound, "order late", "@a"));
                tag(spikes, &mut found);
            }
        }
        let end = T0 + counts.len() as i64 * window;
        let spikes = detector.observe(&mention(n + 1, end, 0.3, "closing", "@z"));
        tag(spikes, &mut found);
        found
    }

    fn check(
        name: &str,
        config: SpikesConfig,
        counts: &[usize],
        negative: &[usize],
        expected: &[(usize, &str)],
    ) {
        let mut detector = SpikeDetector::new(config);
        let found = feed(&mut detector, counts, negative);
        let expected: Vec<(usize, String)> =
            expected.iter().map(|(i, s)| (*i, s.to_string())).collect();
        assert_eq!(found, expected, "{name}");
    }

    const STEADY: [usize; 8] = [20, 22, 19, 21, 20, 18, 22, 20];

    #[test]
    fn peaks_and_dips_of_volume_against_the_baseline() {
        let with = |tail: &[usize]| [&STEADY[..], tail].concat();
        check("steady: nothing", config(), &with(&[21, 19]), &[], &[]);
        check(
            "a burst is a peak",
            config(),
            &with(&[60]),
            &[],
            &[(8, "volume:peak")],
        );
        check(
            "a quiet window is a dip",
            config(),
            &with(&[2]),
            &[],
            &[(8, "volume:dip")],
        );
        check(
            "no dips when they are off",
            SpikesConfig {
                dips: false,
                ..config()
            },
            &with(&[2]),
            &[],
            &[],
        );
        // The window that held only the closing mention is a dip; the two empty windows
        // after it are within the cooldown.
        let mut detector = SpikeDetector::new(config());
        feed(&mut detector, &STEADY, &[]);
        let after_gap = T0 + 11 * 5 * MINUTE;
        let found = detector.observe(&mention(999, after_gap, 0.3, "back", "@a"));
        let windows: Vec<(i64, &str)> = found
            .iter()
            .map(|f| {
                (
                    (f.spike.window_start - T0) / (5 * MINUTE),
                    f.spike.direction.as_str(),
                )
            })
            .collect();
        assert_eq!(windows, [(8, "dip")], "a gap of empty windows");
        assert_eq!(found[0].spike.mentions, 1);
    }

    #[test]
    fn nothing_before_the_warmup_and_the_minimum_sample() {
        check(
            "a burst during warmup is learned, not raised",
            config(),
            &[20, 21, 60],
            &[],
            &[],
        );
        // A baseline of 1 mention a window: 4 is far above it but under min_mentions (5).
        check(
            "a small peak is under the minimum sample",
            config(),
            &[1, 1, 1, 1, 1, 1, 1, 1, 4],
            &[],
            &[],
        );
        check(
            "at the minimum sample it is raised",
            config(),
            &[1, 1, 1, 1, 1, 1, 1, 1, 6],
            &[],
            &[(8, "volume:peak")],
        );
        // A dip needs a baseline of at least min_mentions.
        check(
            "a dip from a tiny baseline is not raised",
            config(),
            &[3, 3, 3, 3, 3, 3, 3, 3, 0],
            &[],
            &[],
        );
    }

    #[test]
    fn cooldown_holds_back_the_same_spike_not_others() {
        let counts = [&STEADY[..], &[60, 60, 60]].concat();
        check(
            "a lasting burst is raised once within the cooldown",
            config(),
            &counts,
            &[],
            &[(8, "volume:peak")],
        );
        check(
            "without a cooldown, each window that is still a peak",
            SpikesConfig {
                cooldown_secs: 0,
                ..config()
            },
            &counts,
            &[],
            // The baseline learns the burst one band a window: 60 stays a peak a few windows.
            &[(8, "volume:peak"), (9, "volume:peak"), (10, "volume:peak")],
        );
        // After the cooldown (30 min = 6 windows), a new burst is raised again.
        let counts = [&STEADY[..], &[60], &STEADY[..], &[60]].concat();
        check(
            "after the cooldown",
            config(),
            &counts,
            &[],
            &[(8, "volume:peak"), (17, "volume:peak")],
        );
    }

    #[test]
    fn negative_share_peaks_at_steady_volume() {
        // 2 of 20 negative, then 14 of 20: same volume, much angrier.
        let negative = [2, 2, 3, 2, 2, 2, 3, 2, 14];
        check(
            "negative share",
            config(),
            &[&STEADY[..], &[20]].concat(),
            &negative,
            &[(8, "negative_share:peak")],
        );
        // The same share over 4 mentions is under the minimum sample.
        check(
            "negative share under the minimum sample",
            SpikesConfig {
                dips: false,
                ..config()
            },
            &[20, 20, 20, 20, 20, 20, 20, 20, 4],
            &[2, 2, 2, 2, 2, 2, 2, 2, 4],
            &[],
        );
    }

    #[test]
    fn the_spike_says_why() {
        let mut detector = SpikeDetector::new(config());
        feed(&mut detector, &STEADY, &[]);
        let at = T0 + 8 * 5 * MINUTE;
        // 40 angry mentions, plus the one that closed the previous window.
        for i in 0..40 {
            let (text, author) = if i % 2 == 0 {
                ("caught fire, recall now #recall", "@angry")
            } else {
                ("the lamp caught fire", "@other")
            };
            detector.observe(&mention(1000 + i, at + i as i64, -0.7, text, author));
        }
        let found = detector.observe(&mention(2000, at + 5 * MINUTE, 0.0, "x", "@z"));
        let [volume, share] = &found[..] else {
            panic!("two spikes: {found:#?}")
        };
        let spike = &volume.spike;
        assert_eq!(
            (spike.metric.as_str(), spike.direction.as_str()),
            ("volume", "peak")
        );
        assert_eq!(share.spike.metric, "negative_share");
        assert_eq!((spike.mentions, spike.negative_mentions), (41, 40));
        assert!(
            spike.baseline_mean > 18.0 && spike.baseline_mean < 22.0,
            "{spike:?}"
        );
        assert!(spike.z_score > 3.0 && volume.bound < 41.0, "{volume:?}");
        let terms: Vec<(&str, i64)> = spike
            .top_terms
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect();
        // "Acme" matched the watchlist and is left out; "the" and "now" are stop words.
        assert_eq!(
            terms,
            [
                ("caught", 40),
                ("fire", 40),
                ("#recall", 20),
                ("lamp", 20),
                ("recall", 20)
            ]
        );
        let authors: Vec<(&str, i64)> = spike
            .top_authors
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect();
        assert_eq!(authors, [("@angry", 20), ("@other", 20), ("@z", 1)]);
        let reach: Vec<i64> = spike.samples.iter().map(|s| s.reach).collect();
        assert_eq!(reach, [1039, 1038, 1037], "the most reach first");
        let text = summary("acme", spike);
        assert!(
            text.starts_with("Volume peak on acme: 41 mentions in 5 min (2026-11-25 12:40 to 12:45 UTC), against a baseline of"),
            "{text}"
        );
        assert!(text.contains("Top terms: caught (40), fire (40)"), "{text}");
        assert!(
            text.contains("Top authors: @angry (20), @other (20), @z (1)."),
            "{text}"
        );
        assert!(
            text.contains("\n- @other (reach 1039): Acme the lamp caught fire"),
            "{text}"
        );
    }

    #[test]
    fn old_posts_are_not_counted_and_state_round_trips() {
        let mut detector = SpikeDetector::new(config());
        let mut old = mention(1, T0, -0.9, "from last year", "@a");
        old.mention.created_at = T0 - 2 * 3_600 * 1_000_000;
        detector.observe(&old);
        detector.observe(&mention(2, T0 + 1, -0.9, "fresh", "@a"));
        let (_, state) = detector.states().next().unwrap();
        assert_eq!((state.window.mentions, state.window.negative), (1, 1));

        let json = serde_json::to_string(state).unwrap();
        let restored: WatchlistState = serde_json::from_str(&json).unwrap();
        assert_eq!(&restored, state);
        let mut other = SpikeDetector::new(config());
        other.restore("acme".into(), restored);
        assert_eq!(other.states().next().unwrap().1, state);
    }
}
