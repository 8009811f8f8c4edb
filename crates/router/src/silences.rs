//! Silences set through the API (`POST /v1/silences`): like `router.silences` in config,
//! matchers on enriched fields and an expiry, added and removed while the router runs.
//! Expired silences are dropped as they are found.

use std::collections::BTreeMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use earshot_core::model::EnrichedMention;
use earshot_core::routing::Matcher;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One silence, as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSilence {
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    /// `field op value`, as in routes; all must hold.
    pub matchers: Vec<String>,
    /// In force from now when unset.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Required: no silence is forever.
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: Option<String>,
}

impl ApiSilence {
    /// Checks the silence as config validation would; every problem, by field.
    pub fn problems(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut problems = Vec::new();
        if self.matchers.is_empty() {
            problems.push("matchers: must list at least one matcher".to_owned());
        }
        for (i, text) in self.matchers.iter().enumerate() {
            if let Err(e) = text.parse::<Matcher>() {
                problems.push(format!("matchers[{i}]: {e}"));
            }
        }
        if self.ends_at <= now {
            problems.push("ends_at: must be in the future".to_owned());
        }
        if self.starts_at.is_some_and(|start| start >= self.ends_at) {
            problems.push("ends_at: must be after starts_at".to_owned());
        }
        problems
    }
}

/// The API's silences, parsed.
#[derive(Default)]
pub struct Silences {
    by_id: RwLock<BTreeMap<Uuid, (ApiSilence, Vec<Matcher>)>>,
}

impl Silences {
    /// Adds or replaces a silence; `Err` with every problem when it is invalid.
    pub fn insert(&self, silence: ApiSilence) -> Result<(), Vec<String>> {
        let problems = silence.problems(Utc::now());
        if !problems.is_empty() {
            return Err(problems);
        }
        self.restore(silence);
        Ok(())
    }

    /// Adds a silence read back from the state topic (expired ones are ignored).
    pub fn restore(&self, silence: ApiSilence) {
        if silence.ends_at <= Utc::now() {
            return;
        }
        let Ok(matchers) = silence
            .matchers
            .iter()
            .map(|m| m.parse::<Matcher>())
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        self.by_id
            .write()
            .expect("silences lock")
            .insert(silence.id, (silence, matchers));
    }

    pub fn remove(&self, id: Uuid) -> Option<ApiSilence> {
        self.by_id
            .write()
            .expect("silences lock")
            .remove(&id)
            .map(|(s, _)| s)
    }

    /// The silences not yet expired at `now`.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<ApiSilence> {
        let mut by_id = self.by_id.write().expect("silences lock");
        by_id.retain(|_, (s, _)| s.ends_at > now);
        by_id.values().map(|(s, _)| s.clone()).collect()
    }

    /// Whether a silence in force at `at` matches the mention.
    pub fn silences(&self, enriched: &EnrichedMention, at: DateTime<Utc>) -> bool {
        let by_id = self.by_id.read().expect("silences lock");
        by_id.values().any(|(silence, matchers)| {
            silence.starts_at.is_none_or(|start| start <= at)
                && at < silence.ends_at
                && matchers
                    .iter()
                    .all(|m| crate::routes::matcher_holds(m, enriched))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_routes::FixtureMention;

    fn mention(author: &str) -> EnrichedMention {
        let fixture: FixtureMention =
            serde_json::from_value(serde_json::json!({"watchlist": "acme", "author": author}))
                .unwrap();
        fixture.enriched("silence")
    }

    #[test]
    fn a_silence_mutes_matching_mentions_while_in_force_only() {
        let silences = Silences::default();
        let now = Utc::now();
        let silence = ApiSilence {
            id: Uuid::new_v4(),
            matchers: vec!["author = \"@troll\"".into(), "watchlist = acme".into()],
            starts_at: Some(now + chrono::Duration::minutes(10)),
            ends_at: now + chrono::Duration::hours(1),
            comment: String::new(),
            created_by: None,
        };
        silences.insert(silence.clone()).unwrap();
        assert!(!silences.silences(&mention("@troll"), now));
        let later = now + chrono::Duration::minutes(20);
        assert!(silences.silences(&mention("@troll"), later));
        assert!(!silences.silences(&mention("@fan"), later));
        assert!(!silences.silences(&mention("@troll"), now + chrono::Duration::hours(2)));
        assert_eq!(silences.list(now), vec![silence.clone()]);
        assert_eq!(silences.remove(silence.id), Some(silence));
        assert!(!silences.silences(&mention("@troll"), later));
    }

    #[test]
    fn invalid_silences_are_refused_with_every_problem() {
        let now = Utc::now();
        let problems = Silences::default()
            .insert(ApiSilence {
                id: Uuid::new_v4(),
                matchers: vec!["mood = calm".into()],
                starts_at: Some(now),
                ends_at: now - chrono::Duration::minutes(1),
                comment: String::new(),
                created_by: None,
            })
            .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("matchers[0]: \"mood\" is not a field"),
            "{problems:?}"
        );
    }
}
