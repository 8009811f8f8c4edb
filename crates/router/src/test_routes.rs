//! `earshot test-routes FILE`: fixtures of mentions, each with the receivers it must reach,
//! checked against the routing tree the router runs.
//!
//! A fixture file (YAML or TOML):
//!
//! ```yaml
//! config: earshot.yaml          # optional; relative to this file
//! tests:
//!   - name: angry influencer on a weekday
//!     at: "2026-11-25T10:00:00Z" # optional, routing instant; now by default
//!     mention:
//!       watchlist: acme
//!       intent: complaint
//!       reach: 60000
//!       sentiment: { compound: -0.7, neg: 0.4 }
//!     expect: [care-team]       # receivers, in tree order; [] when no alert
//!     expect_routes: ["acme > acme-angry"] # optional: the matched route paths
//!     expect_review: [legal]    # optional: sensitive topics marked on the alerts
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use earshot_core::model::{
    mention_id, Author, EnrichedMention, Mention, Sentiment, Signals, Source, WatchlistMatch,
};
use serde::Deserialize;

use crate::routes::Routes;

/// Why `earshot test-routes` could not check the fixtures at all.
#[derive(Debug, thiserror::Error)]
pub enum TestRoutesError {
    #[error(transparent)]
    Fixtures(#[from] FixturesError),
    #[error("{0}")]
    Config(earshot_core::config::ConfigErrors),
    #[error(transparent)]
    Routes(#[from] crate::RoutesError),
}

/// Loads the fixtures and the configuration they test (`config_file` when given, else the
/// fixture file's `config`, else `default_yaml`), and checks every case.
pub fn run(
    fixtures_file: &Path,
    config_file: Option<&Path>,
    default_yaml: &str,
) -> Result<Report, TestRoutesError> {
    let fixtures = Fixtures::load(fixtures_file)?;
    let file = config_file.or(fixtures.config.as_deref());
    let config = earshot_core::Config::load(earshot_core::config::ConfigSources {
        defaults_yaml: file.is_none().then_some(default_yaml),
        file,
        environment: true,
    })
    .map_err(TestRoutesError::Config)?;
    let routes = Routes::new(&config.router)?;
    Ok(check(&routes, &fixtures))
}

/// A fixture file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FixturesError {
    pub path: PathBuf,
    pub reason: String,
}

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// The configuration whose routes are tested, relative to the fixture file.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// The cases.
    pub tests: Vec<RouteTest>,
}

/// One case: a mention, when it is routed, and where it must go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTest {
    /// Shown in the report.
    pub name: String,
    /// The routing instant (RFC 3339); time intervals are read at it. Now when unset.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// The enriched fields routes can match.
    pub mention: FixtureMention,
    /// The receivers the mention must reach, in tree order; empty when it raises no alert.
    pub expect: Vec<String>,
    /// When set, the matched route paths (`parent > child`) too.
    #[serde(default)]
    pub expect_routes: Option<Vec<String>>,
    /// When set, the sensitive topics the alerts must be marked with (`[]`: none).
    #[serde(default)]
    pub expect_review: Option<Vec<String>>,
}

/// The routable fields of an enriched mention; the rest get neutral values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureMention {
    /// The watchlist the copy is keyed by.
    pub watchlist: String,
    /// The post's text.
    #[serde(default)]
    pub text: String,
    /// Intent label; `unknown` by default.
    #[serde(default = "unknown")]
    pub intent: String,
    /// Detected language; none by default.
    #[serde(default)]
    pub language: Option<String>,
    /// Source kind; `x` by default.
    #[serde(default = "x")]
    pub source: String,
    /// Author handle.
    #[serde(default = "anonymous")]
    pub author: String,
    /// Reach.
    #[serde(default)]
    pub reach: i64,
    /// Urgency, 0..1.
    #[serde(default)]
    pub urgency: f64,
    /// Spam score, 0..1.
    #[serde(default)]
    pub spam_score: f64,
    /// Relevance for the keyed watchlist; 1 by default.
    #[serde(default = "one")]
    pub relevance: f64,
    /// VADER scores; neutral by default.
    #[serde(default)]
    pub sentiment: FixtureSentiment,
}

/// The sentiment scores routes can match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSentiment {
    /// Compound, -1..1.
    #[serde(default)]
    pub compound: f64,
    /// Negative share, 0..1.
    #[serde(default)]
    pub neg: f64,
}

fn unknown() -> String {
    "unknown".to_owned()
}
fn x() -> String {
    "x".to_owned()
}
fn anonymous() -> String {
    "@anonymous".to_owned()
}
fn one() -> f64 {
    1.0
}

impl Fixtures {
    /// Reads a fixture file; YAML or TOML by its extension.
    pub fn load(path: &Path) -> Result<Fixtures, FixturesError> {
        let fail = |reason: String| FixturesError {
            path: path.to_owned(),
            reason,
        };
        let mut fixtures: Fixtures = config::Config::builder()
            .add_source(config::File::from(path).required(true))
            .build()
            .map_err(|e| fail(e.to_string()))?
            .try_deserialize()
            .map_err(|e| fail(e.to_string()))?;
        if let Some(config) = &mut fixtures.config {
            *config = path.parent().unwrap_or(Path::new(".")).join(&*config);
        }
        Ok(fixtures)
    }
}

impl FixtureMention {
    /// The enriched copy the router would receive.
    pub fn enriched(&self, name: &str) -> EnrichedMention {
        let mention = Mention {
            id: mention_id(&self.source, name),
            native_id: name.to_owned(),
            source: Source {
                kind: self.source.clone(),
                instance: "fixture".into(),
            },
            url: None,
            author: Author {
                handle: self.author.clone(),
                name: None,
                followers: Some(self.reach),
                verified: false,
                id: None,
            },
            text: self.text.clone(),
            lang_hint: self.language.clone(),
            created_at: 0,
            collected_at: 0,
            engagement: Default::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        };
        EnrichedMention {
            mention,
            watchlist: self.watchlist.clone(),
            matches: vec![WatchlistMatch {
                watchlist: self.watchlist.clone(),
                relevance: self.relevance,
                clause: self.watchlist.clone(),
                spans: vec![],
            }],
            sentiment: Sentiment {
                neg: self.sentiment.neg,
                neu: 1.0 - self.sentiment.neg,
                pos: 0.0,
                compound: self.sentiment.compound,
            },
            sentences: Default::default(),
            language: self.language.clone(),
            language_confidence: 1.0,
            spam_score: self.spam_score,
            intent: self.intent.clone(),
            reach: self.reach,
            urgency: self.urgency,
            signals: Signals {
                intents: Some(self.intent.clone())
                    .filter(|intent| !intent.is_empty() && intent != "unknown")
                    .into_iter()
                    .collect(),
                ..Signals::default()
            },
            enriched_at: 0,
        }
    }
}

/// The outcome of a fixture file: one line per case, and how many failed.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

/// Routes every case and compares with what it expects.
pub fn check(routes: &Routes, fixtures: &Fixtures) -> Report {
    let mut report = Report::default();
    for case in &fixtures.tests {
        let at = case.at.unwrap_or_else(Utc::now);
        let enriched = case.mention.enriched(&case.name);
        let routed = routes.route(&enriched, at);
        // A silenced alert reaches no receiver.
        let receivers: Vec<&str> = routed
            .iter()
            .filter(|r| !r.silenced)
            .map(|r| r.receiver.as_str())
            .collect();
        let paths: Vec<String> = routed.iter().map(|r| r.path_text()).collect();
        let mut problems = Vec::new();
        if receivers != case.expect {
            problems.push(format!(
                "expected receivers {:?}, got {receivers:?}",
                case.expect
            ));
        }
        if let Some(expected) = &case.expect_routes {
            if &paths != expected {
                problems.push(format!("expected routes {expected:?}, got {paths:?}"));
            }
        }
        if let Some(expected) = &case.expect_review {
            let topics = routed
                .first()
                .map(|r| r.alert.review_topics.clone())
                .unwrap_or_default();
            if &topics != expected {
                problems.push(format!(
                    "expected review topics {expected:?}, got {topics:?}"
                ));
            }
        }
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        let _ = writeln!(report.text, "{verdict} {}", case.name);
        if routed.is_empty() && routes.held_as_spam(&enriched) {
            let _ = writeln!(
                report.text,
                "       held back as spam: spam_score {:.2} ≥ router.spam_threshold {}",
                enriched.spam_score,
                routes.spam_threshold()
            );
        } else if routed.is_empty() {
            let _ = writeln!(report.text, "       no route matched");
        }
        for r in &routed {
            let mut note = if r.discarded { " (discards)" } else { "" }.to_owned();
            if r.silenced {
                note.push_str(" (silenced)");
            }
            if r.alert.review_required {
                note.push_str(&format!(
                    " (no public reply before review: {})",
                    r.alert.review_topics.join(", ")
                ));
            }
            let _ = writeln!(
                report.text,
                "       {} -> {}{note}",
                r.path_text(),
                r.receiver
            );
        }
        for problem in &problems {
            let _ = writeln!(report.text, "       {problem}");
        }
        if problems.is_empty() {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
    }
    let _ = writeln!(
        report.text,
        "{} passed, {} failed",
        report.passed, report.failed
    );
    report
}
