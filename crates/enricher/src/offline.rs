//! The enricher offline, for users debugging watchlists: `earshot enrich` (Mention NDJSON in,
//! EnrichedMention NDJSON out, through the same [`Enricher`] the service runs) and
//! `earshot test-queries` (fixture posts with the watchlists each must and must not match;
//! every failure printed with the clause trace of the query).

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::path::Path;

use earshot_core::config::{EnricherConfig, WatchlistConfig};
use earshot_core::model::{mention_id, Author, Engagement, Mention, Source};
use serde::Deserialize;

use crate::matcher::{document, query_of};
use crate::Enricher;

/// What a run of `earshot enrich` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EnrichSummary {
    pub enriched: u64,
    pub rejected: u64,
}

/// Enriches every `Mention` line of `input` onto `output`, one `EnrichedMention` per line
/// (one per matched watchlist). A line that is not a Mention is reported on `errors` with its
/// line number and the run goes on.
pub fn enrich_ndjson(
    enricher: &Enricher,
    input: impl BufRead,
    output: impl Write,
    mut errors: impl Write,
) -> io::Result<EnrichSummary> {
    let mut output = io::BufWriter::new(output);
    let mut summary = EnrichSummary::default();
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Mention>(&line) {
            Ok(mention) => {
                for enriched in enricher.enrich(mention) {
                    serde_json::to_writer(&mut output, &enriched)?;
                    output.write_all(b"\n")?;
                }
                summary.enriched += 1;
            }
            Err(error) => {
                summary.rejected += 1;
                writeln!(errors, "line {}: not a Mention: {error}", number + 1)?;
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

/// A query fixture file: watchlists (the `enricher.watchlists` of a config, unless the config
/// is given separately) and posts with what each must and must not match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Watchlists to test, shaped as in the configuration.
    #[serde(default)]
    pub watchlists: Vec<WatchlistConfig>,
    /// The posts.
    pub cases: Vec<Case>,
}

/// One fixture post: its text and fields, and the expected watchlists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The post's text.
    pub text: String,
    /// Author handle; `@someone` when absent.
    #[serde(default)]
    pub author: Option<String>,
    /// Author followers.
    #[serde(default)]
    pub followers: Option<i64>,
    /// Source kind; `fixture` when absent.
    #[serde(default)]
    pub source: Option<String>,
    /// The post's URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The source's language hint.
    #[serde(default)]
    pub lang: Option<String>,
    /// Watchlists the post must match.
    #[serde(default)]
    pub must_match: Vec<String>,
    /// Watchlists the post must not match.
    #[serde(default)]
    pub must_not_match: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid query fixture ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Reads a YAML (or JSON, which is YAML) fixture file.
pub fn load_fixture(path: &Path) -> Result<Fixture, FixtureError> {
    let read_error = |message: String| FixtureError::Read {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
    config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| read_error(e.to_string()))
}

/// What a fixture run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FixtureSummary {
    pub cases: usize,
    pub failures: usize,
}

/// Runs every case through the [`Enricher`] built from `config`, writing each failure with
/// the clause trace of the watchlist concerned. Invalid watchlists or cases naming a
/// watchlist that does not exist are reported all at once as [`FixtureError::Invalid`].
pub fn test_queries(
    config: &EnricherConfig,
    cases: &[Case],
    mut output: impl Write,
) -> Result<FixtureSummary, io::Error> {
    let enricher = Enricher::new(config);
    let mut summary = FixtureSummary {
        cases: cases.len(),
        failures: 0,
    };
    for (i, case) in cases.iter().enumerate() {
        let mention = mention_of(case, i);
        let enriched = enricher.enrich(mention.clone());
        let matched: BTreeSet<&str> = enriched
            .iter()
            .map(|e| e.watchlist.as_str())
            .filter(|w| !w.is_empty())
            .collect();
        let lang = enriched[0].language.as_deref().or(case.lang.as_deref());
        let expectations = case
            .must_match
            .iter()
            .map(|w| (w, true))
            .chain(case.must_not_match.iter().map(|w| (w, false)));
        for (watchlist, expected) in expectations {
            if matched.contains(watchlist.as_str()) == expected {
                continue;
            }
            summary.failures += 1;
            let verb = if expected {
                "must match"
            } else {
                "must not match"
            };
            writeln!(
                output,
                "FAIL cases[{i}] {verb} {watchlist}: {:?}",
                case.text
            )?;
            if let Some(found) = enriched.iter().find(|e| &e.watchlist == watchlist) {
                let found = &found.matches.iter().find(|m| &m.watchlist == watchlist);
                if let Some(found) = found {
                    writeln!(output, "  matched by: {}", found.clause)?;
                }
            }
            let set = enricher.matcher.set();
            match set.position(watchlist) {
                Some(index) => {
                    for line in set.explain(index, &document(&mention, lang)).lines() {
                        writeln!(output, "  {line}")?;
                    }
                }
                None => writeln!(output, "  no watchlist named {watchlist:?}")?,
            }
        }
    }
    Ok(summary)
}

/// Problems of a fixture before it runs: watchlists whose query does not parse, cases naming
/// watchlists that do not exist.
pub fn fixture_problems(watchlists: &[WatchlistConfig], cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, watchlist) in watchlists.iter().enumerate() {
        if let Err(error) = query_of(watchlist) {
            problems.push(format!("watchlists[{i}] {:?}: {error}", watchlist.name));
        }
    }
    if watchlists.is_empty() {
        problems.push("no watchlists: give them in the fixture or with --config".into());
    }
    let names: BTreeSet<&str> = watchlists.iter().map(|w| w.name.as_str()).collect();
    for (i, case) in cases.iter().enumerate() {
        let named = case.must_match.iter().chain(&case.must_not_match);
        for name in named.filter(|n| !names.contains(n.as_str())) {
            problems.push(format!("cases[{i}]: no watchlist named {name:?}"));
        }
        if case.must_match.is_empty() && case.must_not_match.is_empty() {
            problems.push(format!(
                "cases[{i}]: expects nothing (give must_match or must_not_match)"
            ));
        }
    }
    problems
}

fn mention_of(case: &Case, index: usize) -> Mention {
    Mention {
        id: mention_id("fixture", &index.to_string()),
        native_id: index.to_string(),
        source: Source {
            kind: case.source.clone().unwrap_or_else(|| "fixture".into()),
            instance: "fixture".into(),
        },
        url: case.url.clone(),
        author: Author {
            handle: case.author.clone().unwrap_or_else(|| "@someone".into()),
            name: None,
            followers: case.followers,
            verified: false,
            id: None,
        },
        text: case.text.clone(),
        lang_hint: case.lang.clone(),
        created_at: 0,
        collected_at: 0,
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchlist(name: &str, query: &str) -> WatchlistConfig {
        WatchlistConfig {
            name: name.into(),
            terms: Vec::new(),
            query: Some(query.into()),
            sentiment_lexicon: Default::default(),
        }
    }

    fn case(text: &str, must: &[&str], must_not: &[&str]) -> Case {
        Case {
            text: text.into(),
            author: None,
            followers: None,
            source: None,
            url: None,
            lang: None,
            must_match: must.iter().map(|s| s.to_string()).collect(),
            must_not_match: must_not.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn failures_are_printed_with_the_clause_trace() {
        let watchlists = [watchlist("lumora", "lumora NOT recall")];
        let cases = [
            case("my lumora lamp", &["lumora"], &[]),
            case("lumora recall notice", &["lumora"], &[]),
            case("lumora is great", &[], &["lumora"]),
        ];
        let mut out = Vec::new();
        let config = EnricherConfig {
            watchlists: watchlists.to_vec(),
            ..EnricherConfig::default()
        };
        let summary = test_queries(&config, &cases, &mut out).unwrap();
        assert_eq!(
            summary,
            FixtureSummary {
                cases: 3,
                failures: 2
            }
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "FAIL cases[1] must match lumora: \"lumora recall notice\"\n  \
             ✗ AND\n    ✓ lumora  found [\"lumora\"]\n    ✗ NOT recall\n      ✓ recall  found [\"recall\"]\n\
             FAIL cases[2] must not match lumora: \"lumora is great\"\n  \
             matched by: lumora AND NOT recall\n  \
             ✓ AND  found [\"lumora\"]\n    ✓ lumora  found [\"lumora\"]\n    ✓ NOT recall\n      ✗ recall\n"
        );
    }

    #[test]
    fn fixture_problems_are_reported_together() {
        let watchlists = [watchlist("ok", "lumora"), watchlist("bad", "(lumora")];
        let cases = [case("x", &["nope"], &["ok"]), case("y", &[], &[])];
        assert_eq!(
            fixture_problems(&watchlists, &cases),
            [
                "watchlists[1] \"bad\": at character 8: expected ')', found the end of the query",
                "cases[0]: no watchlist named \"nope\"",
                "cases[1]: expects nothing (give must_match or must_not_match)",
            ]
        );
    }

    #[test]
    fn enrich_ndjson_writes_one_record_per_watchlist_and_reports_bad_lines() {
        let enricher = Enricher::new(&EnricherConfig {
            watchlists: vec![watchlist("lumora", "lumora"), watchlist("lamps", "lamp*")],
            ..EnricherConfig::default()
        });
        let mention = mention_of(&case("Lumora lamps", &[], &[]), 0);
        let input = format!(
            "{}\n\nnot json\n{{\"text\": \"no id\"}}\n",
            serde_json::to_string(&mention).unwrap()
        );
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let summary = enrich_ndjson(&enricher, input.as_bytes(), &mut out, &mut errors).unwrap();
        assert_eq!(
            summary,
            EnrichSummary {
                enriched: 1,
                rejected: 2
            }
        );
        let records: Vec<earshot_core::EnrichedMention> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let watchlists: Vec<&str> = records.iter().map(|r| r.watchlist.as_str()).collect();
        assert_eq!(watchlists, ["lumora", "lamps"]);
        assert_eq!(records[0].mention, mention);
        let errors = String::from_utf8(errors).unwrap();
        assert!(errors.starts_with("line 3: not a Mention: "), "{errors}");
        assert!(
            errors.contains("\nline 4: not a Mention: missing field"),
            "{errors}"
        );
    }
}
