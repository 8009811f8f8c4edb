//! `earshot report`: what the sink stored, summarized for people. Loads the facts it needs from
//! PostgreSQL ([`load_postgres`]) or from the Parquet files ([`load_parquet`]), computes the
//! figures once ([`analyze`], pure), and renders them as terminal tables ([`Report::terminal`])
//! or as one self-contained HTML file with inline SVG charts drawn by plotters
//! ([`Report::html`]).
//!
//! The figures match the PostgreSQL views (migrations 2, 5 and 6): sentiment buckets
//! (negative <= -0.05 < neutral < 0.05 <= positive), spam (`spam_score >= 0.5`), a mention
//! counting once per watchlist it matched, mentions deleted at their source (retracted) left
//! out, an alert's team being its route's team or else each receiver it was delivered to, and
//! response-time percentiles interpolated as `percentile_cont` does. Parquet files written
//! before alerts had a `team` column count an alert for each receiver it was delivered to.
//!
//! Spikes: an hour of a watchlist is a spike when its mentions exceed the mean of the trailing
//! [`SPIKE_WINDOW_HOURS`] hours by more than three standard deviations (the deviation counted
//! as at least 1, so that a flat, quiet series does not flag every small blip), once at least
//! [`SPIKE_MIN_HISTORY_HOURS`] hours of history precede it. Hours without mentions count as 0.
//!
//! The facts are held in memory (a few dozen bytes per mention and alert), which suits
//! millions of mentions, not billions; for more, query the views.
//!
//! From Parquet: mentions are deduped on `id` (the files hold one row per enriched copy, see
//! [`crate::parquet`]), and a mention with a retraction row (`deleted_at` set) anywhere in the
//! files is left out; acknowledgements are in PostgreSQL only, so response times are empty.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use plotters::prelude::*;
use uuid::Uuid;

/// Hours of history a spike is measured against.
pub const SPIKE_WINDOW_HOURS: usize = 24;
/// Hours of history needed before an hour can be a spike.
pub const SPIKE_MIN_HISTORY_HOURS: usize = 6;
/// `spam_score` from which a mention counts as spam (as in the `spam_share` view).
pub const SPAM_THRESHOLD: f64 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("PostgreSQL: {}", crate::postgres::describe_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{path}: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{0}: no Parquet files of mentions or alerts there")]
    NoParquet(PathBuf),
    #[error("drawing the chart '{chart}': {reason}")]
    Chart { chart: String, reason: String },
}

/// One stored mention, as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionFact {
    pub id: Uuid,
    pub collected_at: DateTime<Utc>,
    pub sentiment_compound: f64,
    pub spam_score: f64,
    pub intent: String,
    /// Every watchlist it matched, sorted.
    pub watchlists: Vec<String>,
}

/// One stored alert, as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFact {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub route: String,
    /// The receivers it was delivered to, sorted; `(none)` when it has no delivery.
    pub teams: Vec<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// What the report is computed from.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Where the facts come from, for the report's header.
    pub source: String,
    pub mentions: Vec<MentionFact>,
    pub alerts: Vec<AlertFact>,
}

/// Loads every mention not deleted at its source, and every alert, from the sink's
/// PostgreSQL tables (migrated to version 5 or later).
pub async fn load_postgres(config: &tokio_postgres::Config) -> Result<Dataset, ReportError> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let mentions = client
        .query(
            "SELECT m.id, m.collected_at, m.sentiment_compound, m.spam_score, m.intent,
                    coalesce(array_agg(mm.watchlist ORDER BY mm.watchlist)
                             FILTER (WHERE mm.watchlist IS NOT NULL), '{}')
             FROM mentions m LEFT JOIN mention_matches mm ON mm.mention_id = m.id
             WHERE m.deleted_at IS NULL
             GROUP BY m.id",
            &[],
        )
        .await?
        .iter()
        .map(|row| MentionFact {
            id: row.get(0),
            collected_at: row.get(1),
            sentiment_compound: row.get(2),
            spam_score: row.get(3),
            intent: row.get(4),
            watchlists: row.get(5),
        })
        .collect();
    let alerts = client
        .query(
            "SELECT a.id, a.created_at, a.route, a.acknowledged_at,
                    array_agg(t.team ORDER BY t.team)
             FROM alerts a JOIN alert_teams t ON t.alert_id = a.id
             GROUP BY a.id",
            &[],
        )
        .await?
        .iter()
        .map(|row| AlertFact {
            id: row.get(0),
            created_at: row.get(1),
            route: row.get(2),
            acknowledged_at: row.get(3),
            teams: row.get(4),
        })
        .collect();
    drop(client);
    let _ = connection.await;
    let database = config.get_dbname().unwrap_or("?");
    Ok(Dataset {
        source: format!("PostgreSQL database {database}"),
        mentions,
        alerts,
    })
}

/// Loads every finished Parquet file under `dir` (`mentions/` and `alerts/`; `.tmp` files
/// are unfinished and skipped), deduping mentions and alerts on `id` and leaving out the
/// mentions a retraction row marks deleted.
pub fn load_parquet(dir: &Path) -> Result<Dataset, ReportError> {
    let mention_files = parquet_files(&dir.join("mentions"))?;
    let alert_files = parquet_files(&dir.join("alerts"))?;
    if mention_files.is_empty() && alert_files.is_empty() {
        return Err(ReportError::NoParquet(dir.to_owned()));
    }
    let mut mentions: Vec<MentionFact> = Vec::new();
    let mut mention_index: HashMap<Uuid, usize> = HashMap::new();
    // A retraction may sit in another file than its post, before or after it.
    let mut deleted: HashSet<Uuid> = HashSet::new();
    for path in &mention_files {
        for batch in read_batches(path)? {
            deleted.extend(deleted_ids(&batch).map_err(|reason| parquet_error(path, reason))?);
            for fact in mention_facts(&batch).map_err(|reason| parquet_error(path, reason))? {
                match mention_index.get(&fact.id) {
                    Some(&i) => {
                        let known = &mut mentions[i].watchlists;
                        known.extend(fact.watchlists);
                        known.sort();
                        known.dedup();
                    }
                    None => {
                        mention_index.insert(fact.id, mentions.len());
                        mentions.push(fact);
                    }
                }
            }
        }
    }
    mentions.retain(|m| !deleted.contains(&m.id));
    let mut alerts: Vec<AlertFact> = Vec::new();
    let mut alert_ids: BTreeSet<Uuid> = BTreeSet::new();
    for path in &alert_files {
        for batch in read_batches(path)? {
            let facts = alert_facts(&batch).map_err(|reason| parquet_error(path, reason))?;
            alerts.extend(facts.into_iter().filter(|a| alert_ids.insert(a.id)));
        }
    }
    Ok(Dataset {
        source: format!("Parquet files under {}", dir.display()),
        mentions,
        alerts,
    })
}

/// The figures of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub source: String,
    /// Mentions stored (distinct ids), matched or not.
    pub mentions: u64,
    /// Every UTC hour from the first mention's to the last one's.
    pub hours: Vec<DateTime<Utc>>,
    pub watchlists: Vec<WatchlistFigures>,
    pub alerts_by_team: Vec<TeamRouteAlerts>,
    pub response_times: Vec<ResponseTimes>,
}

/// One watchlist's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchlistFigures {
    pub watchlist: String,
    pub mentions: u64,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    pub spam: u64,
    /// Of all matched mentions (a mention matching two watchlists counts for both).
    pub share_of_voice: f64,
    pub by_intent: BTreeMap<String, u64>,
    /// Aligned with [`Report::hours`].
    pub hourly: Vec<HourFigures>,
    /// Indexes into [`Report::hours`].
    pub spikes: Vec<usize>,
}

impl WatchlistFigures {
    pub fn spam_share(&self) -> f64 {
        ratio(self.spam, self.mentions)
    }
}

/// One watchlist's mentions in one hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourFigures {
    pub mentions: u64,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    pub compound_sum: f64,
}

impl HourFigures {
    /// Mean VADER compound of the hour's mentions; `None` without mentions.
    pub fn mean_compound(&self) -> Option<f64> {
        (self.mentions > 0).then(|| self.compound_sum / self.mentions as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamRouteAlerts {
    pub team: String,
    pub route: String,
    pub alerts: u64,
}

/// Alert created -> acknowledged, in seconds, over the team's acknowledged alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseTimes {
    pub team: String,
    pub alerts: u64,
    pub acknowledged: u64,
    pub p50_secs: Option<f64>,
    pub p90_secs: Option<f64>,
    pub p99_secs: Option<f64>,
}

/// The sentiment bucket of a VADER compound score.
pub fn sentiment_bucket(compound: f64) -> &'static str {
    if compound <= -0.05 {
        "negative"
    } else if compound >= 0.05 {
        "positive"
    } else {
        "neutral"
    }
}

/// Computes every figure of the report.
pub fn analyze(dataset: &Dataset) -> Report {
    let hour_of = |t: DateTime<Utc>| {
        t.duration_trunc(TimeDelta::hours(1))
            .expect("an hour divides any timestamp")
    };
    let hours: Vec<DateTime<Utc>> = match (
        dataset.mentions.iter().map(|m| m.collected_at).min(),
        dataset.mentions.iter().map(|m| m.collected_at).max(),
    ) {
        (Some(first), Some(last)) => {
            let (first, last) = (hour_of(first), hour_of(last));
            let count = (last - first).num_hours() as usize + 1;
            (0..count)
                .map(|i| first + TimeDelta::hours(i as i64))
                .collect()
        }
        _ => Vec::new(),
    };
    let first_hour = hours.first().copied();

    let mut by_watchlist: BTreeMap<&str, WatchlistFigures> = BTreeMap::new();
    for mention in &dataset.mentions {
        let bucket = sentiment_bucket(mention.sentiment_compound);
        let index = first_hour
            .map(|first| (hour_of(mention.collected_at) - first).num_hours() as usize)
            .unwrap_or_default();
        for watchlist in &mention.watchlists {
            let figures =
                by_watchlist
                    .entry(watchlist.as_str())
                    .or_insert_with(|| WatchlistFigures {
                        watchlist: watchlist.clone(),
                        mentions: 0,
                        negative: 0,
                        neutral: 0,
                        positive: 0,
                        spam: 0,
                        share_of_voice: 0.0,
                        by_intent: BTreeMap::new(),
                        hourly: vec![HourFigures::default(); hours.len()],
                        spikes: Vec::new(),
                    });
            figures.mentions += 1;
            let hour = &mut figures.hourly[index];
            hour.mentions += 1;
            hour.compound_sum += mention.sentiment_compound;
            match bucket {
                "negative" => {
                    figures.negative += 1;
                    hour.negative += 1;
                }
                "positive" => {
                    figures.positive += 1;
                    hour.positive += 1;
                }
                _ => {
                    figures.neutral += 1;
                    hour.neutral += 1;
                }
            }
            if mention.spam_score >= SPAM_THRESHOLD {
                figures.spam += 1;
            }
            *figures.by_intent.entry(mention.intent.clone()).or_default() += 1;
        }
    }
    let matched: u64 = by_watchlist.values().map(|w| w.mentions).sum();
    let mut watchlists: Vec<WatchlistFigures> = by_watchlist.into_values().collect();
    for figures in &mut watchlists {
        figures.share_of_voice = ratio(figures.mentions, matched);
        let counts: Vec<u64> = figures.hourly.iter().map(|h| h.mentions).collect();
        figures.spikes = spikes(&counts);
    }

    let mut by_team_route: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut by_team: BTreeMap<&str, (u64, Vec<f64>)> = BTreeMap::new();
    for alert in &dataset.alerts {
        for team in &alert.teams {
            *by_team_route
                .entry((team.as_str(), alert.route.as_str()))
                .or_default() += 1;
            let (alerts, waits) = by_team.entry(team.as_str()).or_default();
            *alerts += 1;
            if let Some(acknowledged) = alert.acknowledged_at {
                waits.push((acknowledged - alert.created_at).as_seconds_f64());
            }
        }
    }
    let alerts_by_team = by_team_route
        .into_iter()
        .map(|((team, route), alerts)| TeamRouteAlerts {
            team: team.to_owned(),
            route: route.to_owned(),
            alerts,
        })
        .collect();
    let response_times = by_team
        .into_iter()
        .map(|(team, (alerts, mut waits))| {
            waits.sort_by(f64::total_cmp);
            ResponseTimes {
                team: team.to_owned(),
                alerts,
                acknowledged: waits.len() as u64,
                p50_secs: percentile(&waits, 0.5),
                p90_secs: percentile(&waits, 0.9),
                p99_secs: percentile(&waits, 0.99),
            }
        })
        .collect();

    Report {
        source: dataset.source.clone(),
        mentions: dataset.mentions.len() as u64,
        hours,
        watchlists,
        alerts_by_team,
        response_times,
    }
}

/// The hours (indexes) of `counts` that are spikes (see the module documentation).
pub fn spikes(counts: &[u64]) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let window = &counts[i.saturating_sub(SPIKE_WINDOW_HOURS)..i];
        if window.len() < SPIKE_MIN_HISTORY_HOURS {
            continue;
        }
        let n = window.len() as f64;
        let mean = window.iter().sum::<u64>() as f64 / n;
        let variance = window
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        if count as f64 > mean + 3.0 * variance.sqrt().max(1.0) {
            found.push(i);
        }
    }
    found
}

/// The `p` percentile of sorted `values`, interpolated linearly between the two nearest
/// ranks (PostgreSQL's `percentile_cont`); `None` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = p * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

impl Report {
    /// The summary tables, as plain text for a terminal.
    pub fn terminal(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Earshot report: {}", self.source);
        match (self.hours.first(), self.hours.last()) {
            (Some(first), Some(last)) => {
                let _ = writeln!(
                    out,
                    "{} mentions, {} to {} UTC",
                    self.mentions,
                    first.format("%Y-%m-%d %H:00"),
                    (*last + TimeDelta::hours(1)).format("%Y-%m-%d %H:00")
                );
            }
            _ => {
                let _ = writeln!(out, "no mentions");
            }
        }
        let _ = writeln!(out, "\nMentions per watchlist");
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6}  top intent",
            "watchlist", "mentions", "negative", "neutral", "positive", "share", "spam", "spikes"
        );
        for w in &self.watchlists {
            let top_intent = w
                .by_intent
                .iter()
                .max_by_key(|(intent, count)| (**count, std::cmp::Reverse(intent.as_str())))
                .map(|(intent, count)| format!("{intent} ({count})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<20} {:>8} {:>8} {:>8} {:>8} {:>6.1}% {:>5.1}% {:>6}  {top_intent}",
                w.watchlist,
                w.mentions,
                w.negative,
                w.neutral,
                w.positive,
                100.0 * w.share_of_voice,
                100.0 * w.spam_share(),
                w.spikes.len(),
            );
        }
        let spikes: Vec<String> = self
            .watchlists
            .iter()
            .flat_map(|w| {
                w.spikes.iter().map(|&i| {
                    format!(
                        "  {} {}: {} mentions",
                        w.watchlist,
                        self.hours[i].format("%Y-%m-%d %H:00"),
                        w.hourly[i].mentions
                    )
                })
            })
            .collect();
        if !spikes.is_empty() {
            let _ = writeln!(
                out,
                "\nSpikes (hours above mean + 3 sd of the trailing 24 h)"
            );
            for line in spikes {
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = writeln!(out, "\nAlerts per team and route");
        let _ = writeln!(out, "{:<20} {:<28} {:>7}", "team", "route", "alerts");
        for row in &self.alerts_by_team {
            let _ = writeln!(out, "{:<20} {:<28} {:>7}", row.team, row.route, row.alerts);
        }
        let _ = writeln!(
            out,
            "\nResponse time, alert created -> acknowledged (seconds)"
        );
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>6} {:>9} {:>9} {:>9}",
            "team", "alerts", "acked", "p50", "p90", "p99"
        );
        for row in &self.response_times {
            let _ = writeln!(
                out,
                "{:<20} {:>7} {:>6} {:>9} {:>9} {:>9}",
                row.team,
                row.alerts,
                row.acknowledged,
                seconds(row.p50_secs),
                seconds(row.p90_secs),
                seconds(row.p99_secs),
            );
        }
        out
    }

    /// The report as one HTML file: tables and inline SVG charts, no external resource.
    pub fn html(&self, generated_at: DateTime<Utc>) -> Result<String, ReportError> {
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<h1>Earshot report</h1>\n<p class=\"meta\">{} &middot; {} mentions &middot; generated {}</p>",
            escape(&self.source),
            self.mentions,
            generated_at.format("%Y-%m-%d %H:%M UTC")
        );

        body.push_str("<h2>Volume per watchlist</h2>\n");
        body.push_str(&format!(
            "<p>Mentions per UTC hour. Red dots mark spikes: hours above the mean + 3 sd of the trailing {SPIKE_WINDOW_HOURS} h (sd at least 1, after {SPIKE_MIN_HISTORY_HOURS} h of history).</p>\n"
        ));
        body.push_str(&self.volume_chart()?);
        body.push_str("<h2>Sentiment per watchlist</h2>\n<p>Mean VADER compound per UTC hour (hours without mentions left out).</p>\n");
        body.push_str(&self.sentiment_chart()?);

        body.push_str("<h2>Share of voice</h2>\n");
        let shares: Vec<(String, f64)> = self
            .watchlists
            .iter()
            .map(|w| (w.watchlist.clone(), 100.0 * w.share_of_voice))
            .collect();
        body.push_str(&bar_chart(
            "Share of voice (% of matched mentions)",
            "%",
            &shares,
        )?);
        body.push_str("<table><tr><th>watchlist</th><th>mentions</th><th>negative</th><th>neutral</th><th>positive</th><th>share of voice</th><th>spam</th><th>intents</th></tr>\n");
        for w in &self.watchlists {
            let intents: Vec<String> = w
                .by_intent
                .iter()
                .map(|(intent, count)| format!("{} {count}", escape(intent)))
                .collect();
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td></tr>",
                escape(&w.watchlist),
                w.mentions,
                w.negative,
                w.neutral,
                w.positive,
                100.0 * w.share_of_voice,
                100.0 * w.spam_share(),
                intents.join(", ")
            );
        }
        body.push_str("</table>\n");

        body.push_str(
            "<h2>Alerts per team</h2>\n<p>An alert counts for its route's team, or else for each receiver it was delivered to.</p>\n",
        );
        let mut per_team: BTreeMap<&str, u64> = BTreeMap::new();
        for row in &self.alerts_by_team {
            *per_team.entry(&row.team).or_default() += row.alerts;
        }
        let per_team: Vec<(String, f64)> = per_team
            .into_iter()
            .map(|(team, alerts)| (team.to_owned(), alerts as f64))
            .collect();
        body.push_str(&bar_chart("Alerts per team", "alerts", &per_team)?);
        body.push_str("<table><tr><th>team</th><th>route</th><th>alerts</th></tr>\n");
        for row in &self.alerts_by_team {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.team),
                escape(&row.route),
                row.alerts
            );
        }
        body.push_str("</table>\n");

        body.push_str("<h2>Response times per team</h2>\n<p>Alert created &rarr; acknowledged, over acknowledged alerts.</p>\n");
        let p90: Vec<(String, f64)> = self
            .response_times
            .iter()
            .filter_map(|r| Some((r.team.clone(), r.p90_secs?)))
            .collect();
        if p90.is_empty() {
            body.push_str("<p>No acknowledged alert yet: the router records acknowledgements in PostgreSQL (<code>alerts.acknowledged_at</code>).</p>\n");
        } else {
            body.push_str(&bar_chart(
                "Response time p90 per team (seconds)",
                "seconds",
                &p90,
            )?);
        }
        body.push_str("<table><tr><th>team</th><th>alerts</th><th>acknowledged</th><th>p50 (s)</th><th>p90 (s)</th><th>p99 (s)</th></tr>\n");
        for row in &self.response_times {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.team),
                row.alerts,
                row.acknowledged,
                seconds(row.p50_secs),
                seconds(row.p90_secs),
                seconds(row.p99_secs)
            );
        }
        body.push_str("</table>\n");

        Ok(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Earshot report</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
        ))
    }

    fn volume_chart(&self) -> Result<String, ReportError> {
        let series: Vec<Series> = self
            .watchlists
            .iter()
            .map(|w| Series {
                name: w.watchlist.clone(),
                points: w
                    .hourly
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (i, h.mentions as f64))
                    .collect(),
                marked: w.spikes.clone(),
            })
            .collect();
        line_chart("Mentions per hour", "mentions", &self.hours, &series, None)
    }

    fn sentiment_chart(&self) -> Result<String, ReportError> {
        let series: Vec<Series> = self
            .watchlists
            .iter()
            .map(|w| Series {
                name: w.watchlist.clone(),
                points: w
                    .hourly
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| Some((i, h.mean_compound()?)))
                    .collect(),
                marked: Vec::new(),
            })
            .collect();
        line_chart(
            "Mean sentiment per hour",
            "compound",
            &self.hours,
            &series,
            Some((-1.0, 1.0)),
        )
    }
}

const STYLE: &str =
    "body { font-family: sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #666; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { text-align: left; background: #f4f4f4; }
td:first-child { text-align: left; }
svg { display: block; margin: 1em 0; }
";

/// Tableau 10: tells lines and bars apart better than plotters' default palette.
const COLORS: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0xe1, 0x57, 0x59),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Up to this many hours, every point of a line also gets a dot (a single hour is no line).
const DOTTED_UP_TO_HOURS: usize = 48;

struct Series {
    name: String,
    /// (hour index, value).
    points: Vec<(usize, f64)>,
    /// Hour indexes marked with a red dot.
    marked: Vec<usize>,
}

fn chart_error(chart: &str) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        chart: chart.to_owned(),
        reason,
    }
}

/// One line per series over the report's hours, marked points as red dots, as an SVG element.
/// `y_range`: fixed bounds, or `None` for 0 to the largest value.
fn line_chart(
    title: &str,
    y_label: &str,
    hours: &[DateTime<Utc>],
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<String, ReportError> {
    let error = chart_error(title);
    let (low, high) = y_range.unwrap_or_else(|| {
        let max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        (0.0, (max * 1.05).max(1.0))
    });
    // One hour still gets an axis of some width, its dots in the middle.
    let (first_x, last_x) = if hours.len() > 1 {
        (0.0, (hours.len() - 1) as f64)
    } else {
        (-0.5, 0.5)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(first_x..last_x, low..high)
            .map_err(|e| error(e.to_string()))?;
        // Ticks fall between hours too; only whole hours are labelled.
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            hours
                .get(i as usize)
                .map(|h| h.format("%m-%d %H:00").to_string())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(hours.len().clamp(2, 8))
            .x_label_formatter(&label)
            .y_desc(y_label)
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| error(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let color = color(i);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|&(x, y)| (x as f64, y)),
                    color.stroke_width(2),
                ))
                .map_err(|e| error(e.to_string()))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            if hours.len() <= DOTTED_UP_TO_HOURS {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&(x, y)| Circle::new((x as f64, y), 3, color.filled())),
                    )
                    .map_err(|e| error(e.to_string()))?;
            }
            let marked = s
                .points
                .iter()
                .filter(|(x, _)| s.marked.contains(x))
                .map(|&(x, y)| Circle::new((x as f64, y), 5, RED.filled()));
            chart
                .draw_series(marked)
                .map_err(|e| error(e.to_string()))?;
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| error(e.to_string()))?;
        }
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// One bar per (label, value), as an SVG element.
fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<String, ReportError> {
    let error = chart_error(title);
    let high = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1.0) * 1.1;
    let count = bars.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..count as f64 - 0.5, 0f64..high)
            .map_err(|e| error(e.to_string()))?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                bars.get(i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(count + 1)
            .x_label_formatter(&label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| error(e.to_string()))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
                let x = i as f64;
                Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *value)], color(i).filled())
            }))
            .map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn seconds(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "-".into())
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn parquet_error(path: &Path, reason: impl ToString) -> ReportError {
    ReportError::Parquet {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Finished `*.parquet` files under `dir`, sorted.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(parquet_error(dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| parquet_error(dir, e))?.path();
        if path.is_dir() {
            found.extend(parquet_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, ReportError> {
    let file = std::fs::File::open(path).map_err(|e| parquet_error(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|e| parquet_error(path, e))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet_error(path, e))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| format!("no column {name}"))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>, String> {
    let array = column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column {name} is not a string column"))?;
    Ok(array
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}

/// A nullable string column; all nulls when the column is absent (files written before it
/// existed).
fn optional_strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, String> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(vec![None; batch.num_rows()]);
    };
    let array = array
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column {name} is not a string column"))?;
    Ok(array.iter().map(|v| v.map(str::to_owned)).collect())
}

fn uuids(batch: &RecordBatch, name: &str) -> Result<Vec<Uuid>, String> {
    strings(batch, name)?
        .iter()
        .map(|s| Uuid::parse_str(s).map_err(|e| format!("column {name}: {s:?}: {e}")))
        .collect()
}

fn times(batch: &RecordBatch, name: &str) -> Result<Vec<Option<DateTime<Utc>>>, String> {
    let array = column(batch, name)?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| format!("column {name} is not a microsecond timestamp"))?;
    Ok(array
        .iter()
        .map(|v| v.and_then(DateTime::from_timestamp_micros))
        .collect())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, String> {
    let array = column(batch, name)?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| format!("column {name} is not a double column"))?;
    Ok(array.iter().map(Option::unwrap_or_default).collect())
}

/// A list-of-strings column, sorted per row; empty lists when the column is absent (files
/// written before it existed).
fn string_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>, String> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(vec![Vec::new(); batch.num_rows()]);
    };
    let lists = array
        .as_list_opt::<i32>()
        .ok_or_else(|| format!("column {name} is not a list"))?;
    let mut out = Vec::with_capacity(lists.len());
    for i in 0..lists.len() {
        let values = lists.value(i);
        let values = values
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name} is not a list of strings"))?;
        let mut row: Vec<String> = values.iter().flatten().map(str::to_owned).collect();
        row.sort();
        row.dedup();
        out.push(row);
    }
    Ok(out)
}

fn mention_facts(batch: &RecordBatch) -> Result<Vec<MentionFact>, String> {
    let ids = uuids(batch, "id")?;
    let collected = times(batch, "collected_at")?;
    let compound = floats(batch, "sentiment_compound")?;
    let spam = floats(batch, "spam_score")?;
    let intents = strings(batch, "intent")?;
    let watchlists = string_lists(batch, "watchlists")?;
    let mut facts = Vec::with_capacity(ids.len());
    for (i, watchlists) in watchlists.into_iter().enumerate() {
        facts.push(MentionFact {
            id: ids[i],
            collected_at: collected[i].ok_or("collected_at: a null or out-of-range time")?,
            sentiment_compound: compound[i],
            spam_score: spam[i],
            intent: intents[i].clone(),
            watchlists,
        });
    }
    Ok(facts)
}

/// The ids of the rows that are retractions (`deleted_at` set); none in files written before
/// the column existed.
fn deleted_ids(batch: &RecordBatch) -> Result<Vec<Uuid>, String> {
    if batch.column_by_name("deleted_at").is_none() {
        return Ok(Vec::new());
    }
    let ids = uuids(batch, "id")?;
    let deleted_at = times(batch, "deleted_at")?;
    Ok(ids
        .into_iter()
        .zip(deleted_at)
        .filter_map(|(id, at)| at.map(|_| id))
        .collect())
}

/// An alert counts for its route's team, or else for each receiver it was delivered to (as
/// the `alert_teams` view of migration 5).
fn alert_facts(batch: &RecordBatch) -> Result<Vec<AlertFact>, String> {
    let ids = uuids(batch, "id")?;
    let created = times(batch, "created_at")?;
    let routes = strings(batch, "route")?;
    let receivers = string_lists(batch, "receivers")?;
    let route_teams = optional_strings(batch, "team")?;
    let mut facts = Vec::with_capacity(ids.len());
    for (i, mut teams) in receivers.into_iter().enumerate() {
        if let Some(team) = &route_teams[i] {
            teams = vec![team.clone()];
        } else if teams.is_empty() {
            teams.push("(none)".to_owned());
        }
        facts.push(AlertFact {
            id: ids[i],
            created_at: created[i].ok_or("created_at: a null or out-of-range time")?,
            route: routes[i].clone(),
            teams,
            acknowledged_at: None,
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_spikes(counts: &[u64], expected: &[usize]) {
        assert_eq!(spikes(counts), expected, "{counts:?}");
    }

    #[test]
    fn spikes_are_hours_above_the_trailing_mean_plus_three_sd() {
        // Too little history: nothing is a spike.
        check_spikes(&[0, 0, 0, 0, 0, 50], &[]);
        // Flat zero history: sd counts as 1, so 4 is a spike and 3 is not.
        check_spikes(&[0, 0, 0, 0, 0, 0, 3], &[]);
        check_spikes(&[0, 0, 0, 0, 0, 0, 4], &[6]);
        // Noisy history (mean 10, sd 2): 16 is exactly 3 sd above, 17 is more.
        check_spikes(&[8, 12, 8, 12, 8, 12, 16], &[]);
        check_spikes(&[8, 12, 8, 12, 8, 12, 17], &[6]);
        // The spike then sits in the window and raises the bar for the next hour.
        check_spikes(&[5, 5, 5, 5, 5, 5, 40, 40], &[6]);
    }

    fn check_percentile(values: &[f64], p: f64, expected: Option<f64>) {
        let got = percentile(values, p);
        match (got, expected) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "p{p} of {values:?}: {g}"),
            _ => assert_eq!(got, expected, "p{p} of {values:?}"),
        }
    }

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        check_percentile(&[], 0.5, None);
        check_percentile(&[10.0], 0.99, Some(10.0));
        check_percentile(&[60.0, 300.0], 0.5, Some(180.0));
        check_percentile(&[60.0, 300.0], 0.9, Some(276.0));
        check_percentile(&[60.0, 300.0], 0.99, Some(297.6));
        check_percentile(&[1.0, 2.0, 3.0, 4.0], 0.5, Some(2.5));
    }

    #[test]
    fn sentiment_buckets_split_at_five_hundredths() {
        for (compound, bucket) in [
            (-0.5, "negative"),
            (-0.05, "negative"),
            (-0.0499, "neutral"),
            (0.0, "neutral"),
            (0.0499, "neutral"),
            (0.05, "positive"),
        ] {
            assert_eq!(sentiment_bucket(compound), bucket, "{compound}");
        }
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2024, 5, 1, hour, minute, 0).unwrap()
    }

    fn mention(n: u128, hour: u32, compound: f64, spam: f64, watchlists: &[&str]) -> MentionFact {
        MentionFact {
            id: Uuid::from_u128(n),
            collected_at: at(hour, n as u32 % 60),
            sentiment_compound: compound,
            spam_score: spam,
            intent: if compound < 0.0 {
                "complaint"
            } else {
                "praise"
            }
            .into(),
            watchlists: watchlists.iter().map(|w| w.to_string()).collect(),
        }
    }

    /// Brand `a`: 2 mentions an hour from 00:00 to 07:00, then 12 at 08:00 (a spike); brand `b`:
    /// one negative spam mention at 08:00; one mention matching nothing.
    pub(super) fn sample() -> Dataset {
        let mut mentions = Vec::new();
        let mut n = 0;
        for hour in 0..8 {
            for _ in 0..2 {
                n += 1;
                mentions.push(mention(n, hour, 0.5, 0.0, &["a"]));
            }
        }
        for _ in 0..12 {
            n += 1;
            mentions.push(mention(n, 8, -0.6, 0.0, &["a"]));
        }
        mentions.push(mention(100, 8, -0.2, 0.9, &["a", "b"]));
        mentions.push(mention(101, 3, 0.0, 0.0, &[]));
        let alert = |n: u128, route: &str, teams: &[&str], ack_secs: Option<i64>| AlertFact {
            id: Uuid::from_u128(1000 + n),
            created_at: at(8, 0),
            route: route.into(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
            acknowledged_at: ack_secs.map(|s| at(8, 0) + TimeDelta::seconds(s)),
        };
        Dataset {
            source: "test data".into(),
            mentions,
            alerts: vec![
                alert(1, "a-urgent", &["ops"], Some(60)),
                alert(2, "a-urgent", &["ops"], Some(300)),
                alert(3, "b-reach", &["ops", "sales"], None),
            ],
        }
    }

    #[test]
    fn the_figures_of_known_data() {
        let report = analyze(&sample());
        assert_eq!(report.mentions, 30);
        assert_eq!(report.hours.len(), 9);
        assert_eq!(report.hours[0], at(0, 0));
        let a = &report.watchlists[0];
        assert_eq!(
            (
                a.watchlist.as_str(),
                a.mentions,
                a.negative,
                a.neutral,
                a.positive,
                a.spam
            ),
            ("a", 29, 13, 0, 16, 1)
        );
        assert_eq!(a.by_intent["complaint"], 13);
        assert_eq!(a.hourly[8].mentions, 13);
        assert_eq!(a.spikes, [8]);
        assert!((a.share_of_voice - 29.0 / 30.0).abs() < 1e-12);
        let b = &report.watchlists[1];
        assert_eq!((b.mentions, b.spam, b.spikes.len()), (1, 1, 0));
        assert_eq!(b.spam_share(), 1.0);
        assert_eq!(
            report.alerts_by_team,
            [
                TeamRouteAlerts {
                    team: "ops".into(),
                    route: "a-urgent".into(),
                    alerts: 2
                },
                TeamRouteAlerts {
                    team: "ops".into(),
                    route: "b-reach".into(),
                    alerts: 1
                },
                TeamRouteAlerts {
                    team: "sales".into(),
                    route: "b-reach".into(),
                    alerts: 1
                },
            ]
        );
        let ops = &report.response_times[0];
        assert_eq!((ops.alerts, ops.acknowledged), (3, 2));
        assert_eq!(ops.p50_secs, Some(180.0));
        let sales = &report.response_times[1];
        assert_eq!((sales.acknowledged, sales.p50_secs), (0, None));
    }

    #[test]
    fn the_terminal_tables_show_the_figures() {
        let text = analyze(&sample()).terminal();
        for expected in [
            "30 mentions, 2024-05-01 00:00 to 2024-05-01 09:00 UTC",
            "a                          29       13        0       16   96.7%   3.4%      1  praise (16)",
            "b                           1        1        0        0    3.3% 100.0%      0  complaint (1)",
            "  a 2024-05-01 08:00: 13 mentions",
            "ops                  a-urgent                           2",
            "ops                        3      2     180.0     276.0     297.6",
            "sales                      1      0         -         -         -",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn the_html_report_is_one_file_with_every_chart() {
        let html = analyze(&sample()).html(at(12, 0)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 5, "five charts");
        for caption in [
            "Mentions per hour",
            "Mean sentiment per hour",
            "Share of voice (% of matched mentions)",
            "Alerts per team",
            "Response time p90 per team (seconds)",
        ] {
            assert!(html.contains(caption), "missing chart {caption:?}");
        }
        // The spike's red dot (plotters' RED) is drawn once: one spike in the report.
        assert_eq!(html.matches("fill=\"#FF0000\"").count(), 1);
        assert!(html.contains(
            "<td>ops</td><td>3</td><td>2</td><td>180.0</td><td>276.0</td><td>297.6</td>"
        ));
        // Self-contained: nothing is fetched from elsewhere.
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "external reference {external:?}");
        }
    }

    #[test]
    fn without_acknowledgements_the_response_chart_is_a_note() {
        let mut data = sample();
        data.alerts
            .iter_mut()
            .for_each(|a| a.acknowledged_at = None);
        let html = analyze(&data).html(at(12, 0)).unwrap();
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("No acknowledged alert yet"));
    }

    #[test]
    fn names_are_escaped_in_html() {
        let mut data = sample();
        data.mentions[0].watchlists = vec!["<b>&co".into()];
        let html = analyze(&data).html(at(12, 0)).unwrap();
        assert!(html.contains("<td>&lt;b&gt;&amp;co</td>"));
        assert!(!html.contains("<b>&co"));
    }
}
