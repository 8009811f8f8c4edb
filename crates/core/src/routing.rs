//! The parsed forms of the router's rules: matchers on enriched fields and time intervals.
//!
//! The config keeps them as the strings the user wrote (so that every bad one is reported at
//! once, with its key path, by config validation); this module parses them, once for
//! validation and once when the router builds its tree, so both agree on what is valid.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime, Weekday};

/// An enriched field a matcher can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The watchlist the enriched copy is keyed by.
    Watchlist,
    /// The enricher's intent label (`complaint`, `question`, ...).
    Intent,
    /// The detected language (empty when unknown).
    Language,
    /// The source kind (`x`, `mastodon`, `reddit`, ...).
    Source,
    /// The author's handle.
    Author,
    /// VADER compound score, -1..1.
    SentimentCompound,
    /// VADER negative share, 0..1.
    SentimentNeg,
    /// Urgency, 0..1.
    Urgency,
    /// Spam score, 0..1.
    SpamScore,
    /// Reach (followers and engagement).
    Reach,
    /// The keyed watchlist's relevance, 0..1 (0 when the copy has no match for it).
    Relevance,
}

/// Every field, for messages and documentation.
pub const FIELDS: [Field; 11] = [
    Field::Watchlist,
    Field::Intent,
    Field::Language,
    Field::Source,
    Field::Author,
    Field::SentimentCompound,
    Field::SentimentNeg,
    Field::Urgency,
    Field::SpamScore,
    Field::Reach,
    Field::Relevance,
];

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Watchlist => "watchlist",
            Field::Intent => "intent",
            Field::Language => "language",
            Field::Source => "source",
            Field::Author => "author",
            Field::SentimentCompound => "sentiment.compound",
            Field::SentimentNeg => "sentiment.neg",
            Field::Urgency => "urgency",
            Field::SpamScore => "spam_score",
            Field::Reach => "reach",
            Field::Relevance => "relevance",
        }
    }

    /// Numeric fields take comparisons; text fields take equality and regular expressions.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Field::SentimentCompound
                | Field::SentimentNeg
                | Field::Urgency
                | Field::SpamScore
                | Field::Reach
                | Field::Relevance
        )
    }

    fn parse(name: &str) -> Option<Field> {
        FIELDS.into_iter().find(|f| f.as_str() == name)
    }
}

/// A matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Regex,
    NotRegex,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// Two-character operators first, so that `>=` is not read as `>` followed by `=`.
const OPS: [Op; 8] = [
    Op::Regex,
    Op::NotRegex,
    Op::Ne,
    Op::Ge,
    Op::Le,
    Op::Eq,
    Op::Gt,
    Op::Lt,
];

/// What a matcher compares its field with.
#[derive(Debug, Clone)]
pub enum Operand {
    Text(String),
    /// Anchored at both ends, as Alertmanager's regex matchers are.
    Pattern(regex::Regex),
    Number(f64),
}

/// One condition on an enriched field: `field op value`, e.g. `intent = complaint`,
/// `author =~ "@(acme|acmesupport)"`, `reach >= 10000`, `sentiment.compound < -0.5`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub field: Field,
    pub op: Op,
    pub operand: Operand,
}

impl FromStr for Matcher {
    type Err = String;

    fn from_str(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(text.len());
        let name = &text[..name_end];
        let rest = text[name_end..].trim_start();
        let field = Field::parse(name).ok_or_else(|| {
            format!(
                "{name:?} is not a field; use one of {}",
                FIELDS.map(Field::as_str).join(", ")
            )
        })?;
        let op = OPS
            .into_iter()
            .find(|op| rest.starts_with(op.as_str()))
            .ok_or_else(|| {
                format!("expected an operator (=, !=, =~, !~, >, >=, <, <=) after {name:?}")
            })?;
        let raw = rest[op.as_str().len()..].trim();
        let value = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(quoted) => quoted,
            None => raw,
        };
        let operand = match (field.is_numeric(), op) {
            (true, Op::Regex | Op::NotRegex) => {
                return Err(format!(
                    "{name} is a number: compare it with =, !=, >, >=, < or <="
                ))
            }
            (false, Op::Gt | Op::Ge | Op::Lt | Op::Le) => {
                return Err(format!("{name} is text: match it with =, !=, =~ or !~"))
            }
            (true, _) => match value.parse::<f64>() {
                Ok(number) if number.is_finite() => Operand::Number(number),
                _ => return Err(format!("{value:?} is not a number")),
            },
            (false, Op::Regex | Op::NotRegex) => match regex::Regex::new(&format!("^(?:{value})$"))
            {
                Ok(pattern) => Operand::Pattern(pattern),
                Err(e) => return Err(format!("{value:?} is not a regular expression: {e}")),
            },
            (false, _) => Operand::Text(value.to_owned()),
        };
        Ok(Matcher { field, op, operand })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match &self.operand {
            Operand::Text(text) => format!("{text:?}"),
            Operand::Pattern(pattern) => {
                let anchored = pattern.as_str();
                format!("{:?}", &anchored[4..anchored.len() - 2])
            }
            Operand::Number(number) => number.to_string(),
        };
        write!(f, "{} {} {value}", self.field.as_str(), self.op.as_str())
    }
}

impl Matcher {
    /// Tests a text field's value.
    pub fn matches_text(&self, value: &str) -> bool {
        match (&self.operand, self.op) {
            (Operand::Text(want), Op::Eq) => value == want,
            (Operand::Text(want), Op::Ne) => value != want,
            (Operand::Pattern(pattern), Op::Regex) => pattern.is_match(value),
            (Operand::Pattern(pattern), Op::NotRegex) => !pattern.is_match(value),
            _ => false,
        }
    }

    /// Tests a numeric field's value.
    pub fn matches_number(&self, value: f64) -> bool {
        let Operand::Number(want) = self.operand else {
            return false;
        };
        match self.op {
            Op::Eq => value == want,
            Op::Ne => value != want,
            Op::Gt => value > want,
            Op::Ge => value >= want,
            Op::Lt => value < want,
            Op::Le => value <= want,
            Op::Regex | Op::NotRegex => false,
        }
    }
}

/// A range of wall-clock time within a day, `start` included, `end` excluded; `end` 24:00 is
/// written `24:00` and means the end of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u32,
    pub end_minute: u32,
}

impl FromStr for TimeRange {
    type Err = String;

    /// `09:00-17:30`.
    fn from_str(text: &str) -> Result<TimeRange, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a time range like \"09:00-17:00\""))?;
        let minute = |part: &str| -> Result<u32, String> {
            let part = part.trim();
            if part == "24:00" {
                return Ok(24 * 60);
            }
            let time = NaiveTime::parse_from_str(part, "%H:%M")
                .map_err(|_| format!("{part:?} is not a time like \"09:00\""))?;
            Ok(chrono::Timelike::hour(&time) * 60 + chrono::Timelike::minute(&time))
        };
        let (start_minute, end_minute) = (minute(start)?, minute(end)?);
        if start_minute >= end_minute {
            return Err(format!(
                "{text:?} ends before it starts (split a range across midnight in two)"
            ));
        }
        Ok(TimeRange {
            start_minute,
            end_minute,
        })
    }
}

/// Weekdays in a `weekdays` entry: one day (`saturday`) or an inclusive range
/// (`monday:friday`).
pub fn parse_weekdays(text: &str) -> Result<Vec<Weekday>, String> {
    let day = |name: &str| -> Result<Weekday, String> {
        name.trim()
            .parse::<Weekday>()
            .map_err(|_| format!("{name:?} is not a day of the week"))
    };
    match text.split_once(':') {
        None => Ok(vec![day(text)?]),
        Some((first, last)) => {
            let (first, last) = (day(first)?, day(last)?);
            let mut days = vec![first];
            let mut current = first;
            while current != last {
                current = current.succ();
                days.push(current);
            }
            Ok(days)
        }
    }
}

/// A date in a `dates` entry, `2026-12-25`.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date like \"2026-12-25\""))
}

/// A time zone name from the IANA database, `Europe/Paris`.
pub fn parse_time_zone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("{text:?} is not an IANA time zone such as \"Europe/Paris\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_or_say_what_is_wrong() {
        fn check(text: &str, expected: Result<&str, &str>) {
            let parsed = text.parse::<Matcher>().map(|m| m.to_string());
            match expected {
                Ok(display) => assert_eq!(parsed.as_deref(), Ok(display), "{text}"),
                Err(prefix) => {
                    let error = parsed.expect_err(text);
                    assert!(error.starts_with(prefix), "{text}: {error}");
                }
            }
        }
        check("intent = complaint", Ok("intent = \"complaint\""));
        check("intent=complaint", Ok("intent = \"complaint\""));
        check("author != \"@acme\"", Ok("author != \"@acme\""));
        check(
            "author =~ @(acme|acmehelp)",
            Ok("author =~ \"@(acme|acmehelp)\""),
        );
        check("language !~ \"en|fr\"", Ok("language !~ \"en|fr\""));
        check("reach >= 10000", Ok("reach >= 10000"));
        check("sentiment.compound < -0.5", Ok("sentiment.compound < -0.5"));
        check("sentiment.neg > 0.3", Ok("sentiment.neg > 0.3"));
        check("spam_score <= 0.2", Ok("spam_score <= 0.2"));
        check("urgency = 1", Ok("urgency = 1"));
        check("mood = angry", Err("\"mood\" is not a field"));
        check("intent complaint", Err("expected an operator"));
        check("reach =~ 1.*", Err("reach is a number"));
        check("intent > b", Err("intent is text"));
        check("reach >= lots", Err("\"lots\" is not a number"));
        check("reach >= inf", Err("\"inf\" is not a number"));
        check("author =~ \"(\"", Err("\"(\" is not a regular expression"));
    }

    #[test]
    fn regex_matchers_are_anchored() {
        fn check(matcher: &str, value: &str, expected: bool) {
            let m: Matcher = matcher.parse().unwrap();
            assert_eq!(m.matches_text(value), expected, "{matcher} on {value:?}");
        }
        check("language =~ en", "en", true);
        check("language =~ en", "fr-en", false);
        check("language =~ \"en|fr\"", "fr", true);
        check("language !~ \"en|fr\"", "de", true);
        check("intent = complaint", "complaint", true);
        check("intent != complaint", "complaint", false);
    }

    #[test]
    fn comparisons_on_numbers() {
        fn check(matcher: &str, value: f64, expected: bool) {
            let m: Matcher = matcher.parse().unwrap();
            assert_eq!(m.matches_number(value), expected, "{matcher} on {value}");
        }
        check("reach >= 100", 100.0, true);
        check("reach > 100", 100.0, false);
        check("sentiment.compound < -0.5", -0.6, true);
        check("sentiment.compound <= -0.5", -0.5, true);
        check("urgency != 0", 0.0, false);
        check("urgency = 0.5", 0.5, true);
    }

    #[test]
    fn time_ranges_weekdays_dates_and_zones() {
        assert_eq!(
            "09:00-17:30".parse::<TimeRange>(),
            Ok(TimeRange {
                start_minute: 540,
                end_minute: 1050
            })
        );
        assert_eq!(
            "18:00-24:00".parse::<TimeRange>().map(|r| r.end_minute),
            Ok(1440)
        );
        assert!("17:00-09:00"
            .parse::<TimeRange>()
            .unwrap_err()
            .contains("ends before it starts"));
        assert!("9am-5pm".parse::<TimeRange>().is_err());
        assert_eq!(
            parse_weekdays("monday:friday").unwrap(),
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
        assert_eq!(
            parse_weekdays("saturday:sunday").unwrap(),
            [Weekday::Sat, Weekday::Sun]
        );
        assert!(parse_weekdays("funday").is_err());
        assert!(parse_date("2026-12-25").is_ok());
        assert!(parse_date("25/12/2026").is_err());
        assert!(parse_time_zone("Europe/Paris").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }
}
