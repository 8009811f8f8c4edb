//! The routing tree: which routes an enriched mention matches, at a given instant, and the
//! alerts (one per matched route, to its receiver) it raises.
//!
//! Pure and synchronous, so `earshot test-routes` and the unit tests run exactly what the
//! router runs. Config validation has already checked every matcher, interval and name; a
//! rule that still fails to parse here is a bug, reported as [`RoutesError`].

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use earshot_core::config::{RouteConfig, RouterConfig, ScoreName};
use earshot_core::model::{alert_id, now_micros, Alert, EnrichedMention};
use earshot_core::routing::{self, Field, Matcher, Op, Operand, TimeRange};

/// How a route to a team names its destination in [`Routed::receiver`] (`team:care`);
/// [`Routed::team`] has the team's name.
pub const TEAM_PREFIX: &str = "team:";

/// A rule of the config that does not parse (validation normally catches it first).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RoutesError {
    pub path: String,
    pub reason: String,
}

/// The routing tree, parsed.
pub struct Routes {
    roots: Vec<Node>,
    silences: Vec<Silence>,
    review: Option<Review>,
    intervals: HashMap<String, Interval>,
    /// Receivers with `discard`: their routes catch mentions and raise nothing.
    discard: Vec<String>,
    /// Sensitive topic names in config order, for stable `review_topics`.
    topic_order: Vec<String>,
    /// `router.spam_threshold`: a mention this spammy reaches no route.
    spam_threshold: f64,
}

/// Where one mention went: the matched route, the path of route names from the top of the
/// tree down to it, its receiver and the alert it raises (deliveries not yet filled in).
#[derive(Debug, Clone)]
pub struct Routed {
    pub path: Vec<String>,
    pub receiver: String,
    /// The team when the route names one (`receiver` is then `team:<name>`).
    pub team: Option<String>,
    /// The receiver discards: the route stops the mention and no alert is raised.
    pub discarded: bool,
    /// A silence in force matches the mention: no alert is raised.
    pub silenced: bool,
    pub alert: Alert,
}

impl Routed {
    /// The path as printed by `earshot test-routes`: `acme > acme-angry`.
    pub fn path_text(&self) -> String {
        self.path.join(" > ")
    }
}

struct Node {
    name: String,
    matchers: Vec<Matcher>,
    /// The `score`/`threshold` shorthand, recorded in the alert.
    score: Option<(ScoreName, f64)>,
    receiver: Option<String>,
    continue_matching: bool,
    active: Vec<String>,
    mute: Vec<String>,
    children: Vec<Node>,
}

struct Silence {
    matchers: Vec<Matcher>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: DateTime<Utc>,
}

impl Silence {
    fn silences(&self, enriched: &EnrichedMention, at: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|start| start <= at)
            && at < self.ends_at
            && self.matchers.iter().all(|m| matcher_holds(m, enriched))
    }
}

/// The sensitive-topic guardrail: one automaton over every topic's terms.
struct Review {
    receiver: String,
    terms: aho_corasick::AhoCorasick,
    /// The topic of each pattern, by pattern index.
    topic_of: Vec<String>,
}

impl Review {
    /// The topics whose terms occur in `text` on word boundaries, in config order.
    fn topics(&self, text: &str, order: &[String]) -> Vec<String> {
        let mut found: Vec<&str> = Vec::new();
        // Overlapping search: "class action lawsuit" must find both terms, and a match
        // rejected for its boundaries must not hide a shorter one at the same place.
        for m in self.terms.find_overlapping_iter(text) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !word(before) && !word(after) {
                found.push(&self.topic_of[m.pattern().as_usize()]);
            }
        }
        order
            .iter()
            .filter(|topic| found.contains(&topic.as_str()))
            .cloned()
            .collect()
    }
}

struct Interval {
    zone: chrono_tz::Tz,
    weekdays: Vec<Weekday>,
    times: Vec<TimeRange>,
    dates: Vec<NaiveDate>,
}

impl Interval {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        (self.weekdays.is_empty() || self.weekdays.contains(&local.weekday()))
            && (self.times.is_empty()
                || self
                    .times
                    .iter()
                    .any(|t| t.start_minute <= minute && minute < t.end_minute))
            && (self.dates.is_empty() || self.dates.contains(&local.date_naive()))
    }
}

impl Routes {
    pub fn new(config: &RouterConfig) -> Result<Self, RoutesError> {
        let mut intervals = HashMap::new();
        for (i, interval) in config.time_intervals.iter().enumerate() {
            let path = format!("router.time_intervals[{i}]");
            let fail = |reason: String| RoutesError {
                path: path.clone(),
                reason,
            };
            let mut weekdays = Vec::new();
            for days in &interval.weekdays {
                weekdays.extend(routing::parse_weekdays(days).map_err(fail)?);
            }
            intervals.insert(
                interval.name.clone(),
                Interval {
                    zone: routing::parse_time_zone(&interval.time_zone).map_err(fail)?,
                    weekdays,
                    times: interval
                        .times
                        .iter()
                        .map(|t| t.parse::<TimeRange>())
                        .collect::<Result<_, _>>()
                        .map_err(fail)?,
                    dates: interval
                        .dates
                        .iter()
                        .map(|d| routing::parse_date(d))
                        .collect::<Result<_, _>>()
                        .map_err(fail)?,
                },
            );
        }
        let roots = nodes(&config.routes, "router.routes")?;
        let review = match &config.review {
            None => None,
            Some(review) => {
                let mut patterns = Vec::new();
                let mut topic_of = Vec::new();
                for topic in &review.topics {
                    for term in &topic.terms {
                        patterns.push(term.trim().to_owned());
                        topic_of.push(topic.name.clone());
                    }
                }
                let terms = aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                    .map_err(|e| RoutesError {
                        path: "router.review.topics".into(),
                        reason: e.to_string(),
                    })?;
                Some(Review {
                    receiver: review.receiver.clone(),
                    terms,
                    topic_of,
                })
            }
        };
        let topic_order = config
            .review
            .iter()
            .flat_map(|r| r.topics.iter().map(|t| t.name.clone()))
            .collect();
        let discard = config
            .receivers
            .iter()
            .filter(|r| r.discard)
            .map(|r| r.name.clone())
            .collect();
        let mut silences = Vec::new();
        for (i, silence) in config.silences.iter().enumerate() {
            let matchers = silence
                .matchers
                .iter()
                .enumerate()
                .map(|(j, text)| {
                    text.parse().map_err(|reason| RoutesError {
                        path: format!("router.silences[{i}].matchers[{j}]"),
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?;
            silences.push(Silence {
                matchers,
                starts_at: silence.starts_at,
                ends_at: silence.ends_at,
            });
        }
        Ok(Routes {
            roots,
            silences,
            review,
            topic_order,
            intervals,
            discard,
            spam_threshold: config.spam_threshold.0,
        })
    }

    /// The alerts one enriched copy raises at `at` (routing time: time intervals are read at
    /// it). Deliveries are filled in by the deliverer.
    pub fn evaluate(&self, enriched: &EnrichedMention) -> Vec<(Alert, String)> {
        self.route(enriched, Utc::now())
            .into_iter()
            .filter(|routed| !routed.discarded && !routed.silenced)
            .map(|routed| (routed.alert, routed.receiver))
            .collect()
    }

    /// Every route the mention reaches at `at`, in tree order, with its path (including the
    /// routes to discarding receivers, which raise no alert).
    ///
    /// A retraction (the post was deleted at its source) reaches no route: nothing is
    /// alerted about a post that no longer exists. Nor does spam ([`Routes::held_as_spam`]).
    pub fn route(&self, enriched: &EnrichedMention, at: DateTime<Utc>) -> Vec<Routed> {
        if enriched.mention.is_retraction() || self.held_as_spam(enriched) {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut path = Vec::new();
        self.descend(&self.roots, enriched, at, &mut path, None, &mut found);
        if self.silences.iter().any(|s| s.silences(enriched, at)) {
            for routed in &mut found {
                routed.silenced = true;
            }
        }
        if let Some(review) = &self.review {
            let topics = review.topics(&enriched.mention.text, &self.topic_order);
            if !topics.is_empty() {
                // The review team sees it whatever the tree did, on its own route (one
                // stable alert id per mention); the other alerts carry the warning too.
                let reached = found
                    .iter()
                    .any(|r| r.receiver == review.receiver && !r.discarded && !r.silenced);
                if !reached {
                    let node = Node::review();
                    let mut alert = routed(&[&node], &review.receiver, enriched);
                    alert.discarded = self.discard.contains(&review.receiver);
                    found.push(alert);
                }
                for routed in &mut found {
                    routed.alert.review_required = true;
                    routed.alert.review_topics = topics.clone();
                }
            }
        }
        found
    }

    /// Whether the mention is spam by `router.spam_threshold`: it pages nobody, whatever
    /// the routes say.
    pub fn held_as_spam(&self, enriched: &EnrichedMention) -> bool {
        enriched.spam_score >= self.spam_threshold
    }

    /// The spam threshold in force.
    pub fn spam_threshold(&self) -> f64 {
        self.spam_threshold
    }

    /// Tries `nodes` in order; returns whether any matched.
    fn descend<'a>(
        &'a self,
        nodes: &'a [Node],
        enriched: &EnrichedMention,
        at: DateTime<Utc>,
        path: &mut Vec<&'a Node>,
        receiver: Option<&'a str>,
        found: &mut Vec<Routed>,
    ) -> bool {
        let mut any = false;
        for node in nodes {
            if !self.matches(node, enriched, at) {
                continue;
            }
            any = true;
            let receiver = node.receiver.as_deref().or(receiver);
            path.push(node);
            let child_matched = self.descend(&node.children, enriched, at, path, receiver, found);
            if !child_matched {
                if let Some(receiver) = receiver {
                    let mut routed = routed(path, receiver, enriched);
                    routed.discarded = self.discard.iter().any(|d| d == receiver);
                    found.push(routed);
                }
            }
            path.pop();
            if !node.continue_matching {
                break;
            }
        }
        any
    }

    fn matches(&self, node: &Node, enriched: &EnrichedMention, at: DateTime<Utc>) -> bool {
        let inside = |names: &[String]| {
            names
                .iter()
                .any(|name| self.intervals.get(name).is_some_and(|i| i.contains(at)))
        };
        if !node.active.is_empty() && !inside(&node.active) {
            return false;
        }
        if inside(&node.mute) {
            return false;
        }
        if let Some((name, threshold)) = node.score {
            match score(name, enriched) {
                Some(score) if score >= threshold => {}
                _ => return false,
            }
        }
        node.matchers.iter().all(|m| matcher_holds(m, enriched))
    }
}

impl Node {
    /// The route of review alerts.
    fn review() -> Node {
        Node {
            name: earshot_core::config::REVIEW_ROUTE.to_owned(),
            matchers: Vec::new(),
            score: None,
            receiver: None,
            continue_matching: false,
            active: Vec::new(),
            mute: Vec::new(),
            children: Vec::new(),
        }
    }
}

fn nodes(configs: &[RouteConfig], parent: &str) -> Result<Vec<Node>, RoutesError> {
    configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let path = format!("{parent}[{i}]");
            let mut matchers = Vec::new();
            if let Some(watchlist) = &config.watchlist {
                matchers.push(Matcher {
                    field: Field::Watchlist,
                    op: Op::Eq,
                    operand: Operand::Text(watchlist.clone()),
                });
            }
            for (j, text) in config.matchers.iter().enumerate() {
                matchers.push(text.parse().map_err(|reason| RoutesError {
                    path: format!("{path}.matchers[{j}]"),
                    reason,
                })?);
            }
            Ok(Node {
                name: config.name.clone(),
                matchers,
                score: config.score.zip(config.threshold),
                // A team is a destination like a receiver, written `team:<name>` (see
                // `TEAM_PREFIX`), so that it is inherited and reported the same way.
                receiver: config.receiver.clone().or_else(|| {
                    config
                        .team
                        .as_ref()
                        .map(|team| format!("{TEAM_PREFIX}{team}"))
                }),
                continue_matching: config.continue_matching,
                active: config.active_time_intervals.clone(),
                mute: config.mute_time_intervals.clone(),
                children: nodes(&config.routes, &format!("{path}.routes"))?,
            })
        })
        .collect()
}

/// The alert of a matched route. Its score is the `score`/`threshold` shorthand of the
/// deepest route on the path that has one, else the deepest `>`/`>=` matcher's field and
/// bound (what made the mention worth an alert), else none (empty name, 0 against 0).
fn routed(path: &[&Node], receiver: &str, enriched: &EnrichedMention) -> Routed {
    let leaf = path.last().expect("a matched route");
    let shorthand = path.iter().rev().find_map(|node| node.score);
    let (score_name, score, threshold) = match shorthand {
        Some((name, threshold)) => (
            name.as_str().to_owned(),
            score(name, enriched).unwrap_or_default(),
            threshold,
        ),
        None => path
            .iter()
            .rev()
            .flat_map(|node| node.matchers.iter().rev())
            .find_map(|m| match (m.op, &m.operand) {
                (Op::Ge | Op::Gt, Operand::Number(bound)) => Some((
                    m.field.as_str().to_owned(),
                    number(m.field, enriched).unwrap_or_default(),
                    *bound,
                )),
                _ => None,
            })
            .unwrap_or_default(),
    };
    let mention = &enriched.mention;
    Routed {
        path: path.iter().map(|node| node.name.clone()).collect(),
        receiver: receiver.to_owned(),
        team: receiver.strip_prefix(TEAM_PREFIX).map(str::to_owned),
        discarded: false,
        silenced: false,
        alert: Alert {
            id: alert_id(mention.id, &leaf.name),
            created_at: now_micros(),
            route: leaf.name.clone(),
            watchlist: enriched.watchlist.clone(),
            mention_id: mention.id,
            mention_url: mention.url.clone(),
            mention_text: mention.text.clone(),
            author_handle: mention.author.handle.clone(),
            score_name,
            score,
            threshold,
            mention_collected_at: mention.collected_at,
            deliveries: Vec::new(),
            route_path: path.iter().map(|node| node.name.clone()).collect(),
            review_required: false,
            review_topics: Vec::new(),
            team: receiver.strip_prefix(TEAM_PREFIX).map(str::to_owned),
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            kind: earshot_core::model::ALERT_KIND_MENTION.to_owned(),
            spike: None,
        },
    }
}

pub(crate) fn matcher_holds(matcher: &Matcher, enriched: &EnrichedMention) -> bool {
    if matcher.field == Field::Intent && !enriched.signals.intents.is_empty() {
        // Several intents may hold: `intent = complaint` (or `=~`) holds when one of them is a
        // complaint, `intent != complaint` (or `!~`) when none is.
        let mut intents = enriched.signals.intents.iter();
        return match matcher.op {
            Op::Ne | Op::NotRegex => intents.all(|intent| matcher.matches_text(intent)),
            _ => intents.any(|intent| matcher.matches_text(intent)),
        };
    }
    match number(matcher.field, enriched) {
        Some(value) => matcher.matches_number(value),
        None => matcher.matches_text(text(matcher.field, enriched)),
    }
}

/// A numeric field's value; `None` for text fields.
fn number(field: Field, enriched: &EnrichedMention) -> Option<f64> {
    Some(match field {
        Field::SentimentCompound => enriched.sentiment.compound,
        Field::SentimentNeg => enriched.sentiment.neg,
        Field::Urgency => enriched.urgency,
        Field::SpamScore => enriched.spam_score,
        Field::Reach => enriched.reach as f64,
        Field::Relevance => relevance(enriched).unwrap_or(0.0),
        Field::Watchlist | Field::Intent | Field::Language | Field::Source | Field::Author => {
            return None
        }
    })
}

fn text(field: Field, enriched: &EnrichedMention) -> &str {
    match field {
        Field::Watchlist => &enriched.watchlist,
        Field::Intent => &enriched.intent,
        Field::Language => enriched.language.as_deref().unwrap_or(""),
        Field::Source => &enriched.mention.source.kind,
        Field::Author => &enriched.mention.author.handle,
        _ => "",
    }
}

fn relevance(enriched: &EnrichedMention) -> Option<f64> {
    enriched
        .matches
        .iter()
        .find(|m| m.watchlist == enriched.watchlist)
        .map(|m| m.relevance)
}

fn score(name: ScoreName, enriched: &EnrichedMention) -> Option<f64> {
    Some(match name {
        ScoreName::Urgency => enriched.urgency,
        // A copy without a match for its own watchlist has no relevance: the route does not
        // match rather than reading it as 0.
        ScoreName::Relevance => relevance(enriched)?,
        ScoreName::Negativity => -enriched.sentiment.compound,
        ScoreName::Reach => enriched.reach as f64,
        ScoreName::Spam => enriched.spam_score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_routes::{FixtureMention, FixtureSentiment};

    const TREE: &str = r#"
receivers:
  - { name: care, console: true }
  - { name: oncall, console: true }
  - { name: everything, console: true }
  - { name: drop, discard: true }
  - { name: legal-review, console: true }
silences:
  - matchers: ["author = \"@noisy\""]
    starts_at: "2026-11-25T00:00:00Z"
    ends_at: "2026-11-26T00:00:00Z"
    comment: "a known troll, for one day"
review:
  receiver: legal-review
  topics:
    - { name: legal, terms: ["lawsuit", "class action", "sue"] }
    - { name: health, terms: ["food poisoning"] }
time_intervals:
  - name: paris-office-hours
    time_zone: Europe/Paris
    weekdays: ["monday:friday"]
    times: ["09:00-18:00"]
  - name: holidays
    time_zone: Europe/Paris
    dates: ["2026-12-25"]
routes:
  - name: bots
    matchers: ["author =~ \"@.*bot\""]
    receiver: drop
  - name: audit
    receiver: everything
    matchers: ["reach >= 1000000"]
    continue: true
  - name: acme
    watchlist: acme
    receiver: care
    matchers: ["spam_score < 0.5"]
    routes:
      - name: acme-angry-office
        matchers: ["sentiment.compound <= -0.5", "intent =~ complaint|churn"]
        active_time_intervals: [paris-office-hours]
        mute_time_intervals: [holidays]
      - name: acme-angry-after-hours
        matchers: ["sentiment.compound <= -0.5"]
        receiver: oncall
      - name: acme-french
        matchers: ["language = fr"]
        continue: true
      - name: acme-influencer
        score: reach
        threshold: 10000
"#;

    fn routes() -> Routes {
        let config: RouterConfig = config::Config::builder()
            .add_source(config::File::from_str(TREE, config::FileFormat::Yaml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        Routes::new(&config).unwrap()
    }

    fn mention() -> FixtureMention {
        FixtureMention {
            watchlist: "acme".into(),
            text: "acme".into(),
            intent: "unknown".into(),
            language: Some("en".into()),
            source: "x".into(),
            author: "@someone".into(),
            reach: 10,
            urgency: 0.0,
            spam_score: 0.0,
            relevance: 1.0,
            sentiment: FixtureSentiment::default(),
        }
    }

    fn angry_complaint() -> FixtureMention {
        FixtureMention {
            intent: "complaint".into(),
            sentiment: FixtureSentiment {
                compound: -0.8,
                neg: 0.5,
            },
            ..mention()
        }
    }

    /// The tree has one route for every mention of acme and no spam matcher: the guard
    /// holds spam back anyway, from its configured score on.
    #[test]
    fn spam_pages_nobody_whatever_the_routes_say() {
        let tree = |threshold: &str| -> Routes {
            let yaml = format!(
                "{threshold}\nreceivers: [{{ name: care, console: true }}]\nroutes:\n  - {{ name: all-acme, watchlist: acme, receiver: care }}\n"
            );
            let config: RouterConfig = config::Config::builder()
                .add_source(config::File::from_str(&yaml, config::FileFormat::Yaml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap();
            Routes::new(&config).unwrap()
        };
        let at: DateTime<Utc> = "2026-11-25T09:30:00Z".parse().unwrap();
        let spammy = |score: f64| {
            FixtureMention {
                spam_score: score,
                ..mention()
            }
            .enriched("spam")
        };
        let default = tree("");
        assert_eq!(default.route(&spammy(0.49), at).len(), 1);
        assert!(default.route(&spammy(0.5), at).is_empty());
        assert!(default.evaluate(&spammy(0.97)).is_empty());
        assert!(default.held_as_spam(&spammy(0.5)));
        let lenient = tree("spam_threshold: 0.9");
        assert_eq!(lenient.route(&spammy(0.6), at).len(), 1);
        assert!(lenient.route(&spammy(0.9), at).is_empty());
    }

    #[test]
    fn a_retraction_raises_no_alert() {
        let routes = routes();
        let at: DateTime<Utc> = "2026-11-25T09:30:00Z".parse().unwrap();
        // An angry complaint about a lawsuit, from an account with a huge reach: as a post it
        // reaches the tree, the audit route and the review team.
        let m = FixtureMention {
            text: "acme lawsuit".into(),
            reach: 2_000_000,
            ..angry_complaint()
        };
        let mut enriched = m.enriched("retracted");
        assert!(!routes.route(&enriched, at).is_empty());
        assert!(!routes.evaluate(&enriched).is_empty());
        enriched.mention.deleted_at = Some(1_763_888_400_000_000);
        assert!(routes.route(&enriched, at).is_empty());
        assert!(routes.evaluate(&enriched).is_empty());
    }

    /// Each case: a mention, the routing instant (UTC), and the matched paths with receivers.
    #[test]
    fn mentions_go_down_the_tree() {
        let routes = routes();
        let check = |name: &str, m: FixtureMention, at: &str, expected: &[&str]| {
            let at: DateTime<Utc> = at.parse().unwrap();
            let found: Vec<String> = routes
                .route(&m.enriched(name), at)
                .iter()
                .map(|r| format!("{} -> {}", r.path_text(), r.receiver))
                .collect();
            assert_eq!(found, expected, "{name}");
        };
        // Wednesday 25 November 2026; Paris is UTC+1 in winter.
        let office = "2026-11-25T09:30:00Z";
        let evening = "2026-11-25T19:30:00Z";
        check(
            "no child matches: the parent raises it",
            mention(),
            office,
            &["acme -> care"],
        );
        check(
            "spam is stopped at the parent",
            FixtureMention {
                spam_score: 0.9,
                ..angry_complaint()
            },
            office,
            &[],
        );
        check(
            "other watchlists match nothing",
            FixtureMention {
                watchlist: "globex".into(),
                ..angry_complaint()
            },
            office,
            &[],
        );
        check(
            "angry complaint in office hours",
            angry_complaint(),
            office,
            &["acme > acme-angry-office -> care"],
        );
        check(
            "08:30 UTC is 09:30 in Paris",
            angry_complaint(),
            "2026-11-25T08:30:00Z",
            &["acme > acme-angry-office -> care"],
        );
        check(
            "07:30 UTC is before office hours in Paris",
            angry_complaint(),
            "2026-11-25T07:30:00Z",
            &["acme > acme-angry-after-hours -> oncall"],
        );
        check(
            "angry complaint in the evening goes on call",
            angry_complaint(),
            evening,
            &["acme > acme-angry-after-hours -> oncall"],
        );
        check(
            "on Saturday too",
            angry_complaint(),
            "2026-11-28T10:00:00Z",
            &["acme > acme-angry-after-hours -> oncall"],
        );
        check(
            "Christmas (a Friday) mutes the office route",
            angry_complaint(),
            "2026-12-25T10:00:00Z",
            &["acme > acme-angry-after-hours -> oncall"],
        );
        check(
            "angry but not a complaint",
            FixtureMention {
                intent: "question".into(),
                ..angry_complaint()
            },
            office,
            &["acme > acme-angry-after-hours -> oncall"],
        );
        check(
            "continue: French and influential",
            FixtureMention {
                language: Some("fr".into()),
                reach: 20_000,
                ..mention()
            },
            office,
            &[
                "acme > acme-french -> care",
                "acme > acme-influencer -> care",
            ],
        );
        check(
            "a discarding route stops bots",
            FixtureMention {
                author: "@dealsbot".into(),
                reach: 2_000_000,
                ..angry_complaint()
            },
            office,
            &["bots -> drop"],
        );
        assert!(routes
            .evaluate(
                &FixtureMention {
                    author: "@dealsbot".into(),
                    ..mention()
                }
                .enriched("bot")
            )
            .is_empty());
        check(
            "continue at the top: audit and the acme tree",
            FixtureMention {
                reach: 2_000_000,
                ..mention()
            },
            office,
            &["audit -> everything", "acme > acme-influencer -> care"],
        );
    }

    /// Sensitive topics: every alert is marked, and the review team gets its own.
    #[test]
    fn sensitive_topics_go_to_review_and_mark_every_alert() {
        let routes = routes();
        let at: DateTime<Utc> = "2026-11-25T09:30:00Z".parse().unwrap();
        let check = |text: &str, expected: &[&str], topics: &[&str]| {
            let m = FixtureMention {
                text: text.into(),
                ..angry_complaint()
            };
            let found = routes.route(&m.enriched(text), at);
            let paths: Vec<String> = found
                .iter()
                .map(|r| format!("{} -> {}", r.path_text(), r.receiver))
                .collect();
            assert_eq!(paths, expected, "{text}");
            for r in &found {
                assert_eq!(r.alert.review_required, !topics.is_empty(), "{text}");
                assert_eq!(r.alert.review_topics, topics, "{text}");
                assert_eq!(r.alert.route_path, r.path, "{text}");
            }
        };
        check(
            "Acme, see you in court: class action LAWSUIT incoming",
            &["acme > acme-angry-office -> care", "review -> legal-review"],
            &["legal"],
        );
        check(
            "Acme gave my kid food poisoning, I will sue",
            &["acme > acme-angry-office -> care", "review -> legal-review"],
            &["legal", "health"],
        );
        // Word boundaries: "suede" and "lawsuits" are not the terms.
        check(
            "Acme suede shoes fell apart; no lawsuits here",
            &["acme > acme-angry-office -> care"],
            &[],
        );
    }

    /// A route may name a team instead of a receiver; children inherit it like a receiver,
    /// and the alert records the team.
    #[test]
    fn routes_to_teams_are_inherited_and_recorded_in_the_alert() {
        let config: RouterConfig = serde_json::from_value(serde_json::json!({
            "receivers": [{"name": "care", "console": true}],
            "routes": [{
                "name": "acme",
                "watchlist": "acme",
                "team": "support",
                "routes": [
                    {"name": "acme-big", "matchers": ["reach >= 1000"]},
                    {"name": "acme-care", "matchers": ["reach >= 100"], "receiver": "care"}
                ]
            }]
        }))
        .unwrap();
        let routes = Routes::new(&config).unwrap();
        let at: DateTime<Utc> = "2026-11-25T09:30:00Z".parse().unwrap();
        let check = |reach: i64, expected: (&str, &str, Option<&str>)| {
            let found = routes.route(&FixtureMention { reach, ..mention() }.enriched("t"), at);
            assert_eq!(found.len(), 1, "{found:?}");
            let routed = &found[0];
            assert_eq!(
                (
                    routed.path_text().as_str(),
                    routed.receiver.as_str(),
                    routed.team.as_deref()
                ),
                expected
            );
            assert_eq!(routed.alert.team.as_deref(), expected.2);
        };
        check(5000, ("acme > acme-big", "team:support", Some("support")));
        check(500, ("acme > acme-care", "care", None));
        check(5, ("acme", "team:support", Some("support")));
    }

    /// A silence mutes alerts while in force, but not the review alert of a sensitive topic.
    #[test]
    fn silences_mute_alerts_until_they_expire() {
        let routes = routes();
        let check = |at: &str, text: &str, expected: &[(&str, bool)]| {
            let m = FixtureMention {
                author: "@noisy".into(),
                text: text.into(),
                ..angry_complaint()
            };
            let found: Vec<(String, bool)> = routes
                .route(&m.enriched(text), at.parse().unwrap())
                .iter()
                .map(|r| (r.path_text(), r.silenced))
                .collect();
            let expected: Vec<(String, bool)> =
                expected.iter().map(|(p, s)| (p.to_string(), *s)).collect();
            assert_eq!(found, expected, "{at} {text}");
        };
        check(
            "2026-11-25T09:30:00Z",
            "acme!",
            &[("acme > acme-angry-office", true)],
        );
        check(
            "2026-11-25T09:30:00Z",
            "acme, see you in court: lawsuit",
            &[("acme > acme-angry-office", true), ("review", false)],
        );
        check(
            "2026-11-24T09:30:00Z",
            "acme!",
            &[("acme > acme-angry-office", false)],
        );
        // Expired.
        check(
            "2026-11-26T09:30:00Z",
            "acme!",
            &[("acme > acme-angry-office", false)],
        );
    }

    #[test]
    fn alerts_record_the_route_and_what_made_it_fire() {
        let routes = routes();
        let at: DateTime<Utc> = "2026-11-25T09:30:00Z".parse().unwrap();
        let m = FixtureMention {
            reach: 2_000_000,
            ..mention()
        };
        let enriched = m.enriched("big");
        let found = routes.route(&enriched, at);
        let summary: Vec<(&str, &str, f64, f64)> = found
            .iter()
            .map(|r| {
                (
                    r.alert.route.as_str(),
                    r.alert.score_name.as_str(),
                    r.alert.score,
                    r.alert.threshold,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("audit", "reach", 2_000_000.0, 1_000_000.0),
                ("acme-influencer", "reach", 2_000_000.0, 10_000.0),
            ]
        );
        assert_eq!(
            found[1].alert.id,
            alert_id(enriched.mention.id, "acme-influencer")
        );
    }
}
