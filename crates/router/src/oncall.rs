//! Teams and who is on call: [`Schedule::on_call_at`] is the pure function "who is on call at
//! instant T" (rotation with a local handoff time, overrides on top), and [`Directory`] holds
//! the teams, their members and their channels, parsed from `router.teams`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use earshot_core::config::{MemberConfig, RouterConfig, ScheduleConfig};
use earshot_core::routing;

use crate::RoutesError;

/// Every team and member of the config, by name.
#[derive(Debug, Default)]
pub struct Directory {
    teams: HashMap<String, Team>,
    people: HashMap<String, Person>,
}

/// A team: its channels (receivers), its schedule and its escalation policy.
#[derive(Debug)]
pub struct Team {
    pub name: String,
    pub channels: Vec<String>,
    pub schedule: Option<Schedule>,
    pub escalation_policy: Option<String>,
}

/// A person and how each channel reaches them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub name: String,
    pub team: String,
    pub email: Option<String>,
    pub slack_user: Option<String>,
    pub pagerduty_user: Option<String>,
}

/// A rotation in one time zone, with overrides.
#[derive(Debug)]
pub struct Schedule {
    zone: chrono_tz::Tz,
    handoff_minute: u32,
    rotation_days: i64,
    start: NaiveDate,
    order: Vec<String>,
    overrides: Vec<Override>,
}

#[derive(Debug)]
struct Override {
    member: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl Schedule {
    pub fn new(config: &ScheduleConfig, members: &[MemberConfig]) -> Result<Schedule, String> {
        let order = if config.order.is_empty() {
            members.iter().map(|m| m.name.clone()).collect()
        } else {
            config.order.clone()
        };
        if order.is_empty() {
            return Err("nobody to put on call".into());
        }
        Ok(Schedule {
            zone: routing::parse_time_zone(&config.time_zone)?,
            handoff_minute: earshot_core::config::parse_time_of_day(&config.handoff)?,
            rotation_days: i64::from(config.rotation_days.max(1)),
            start: routing::parse_date(&config.start)?,
            order,
            overrides: config
                .overrides
                .iter()
                .map(|o| Override {
                    member: o.member.clone(),
                    starts_at: o.starts_at,
                    ends_at: o.ends_at,
                })
                .collect(),
        })
    }

    /// Who is on call at `at`: the last override covering it, else the rotation's member.
    ///
    /// The rotation counts local days: a turn starts at the handoff's wall-clock time in the
    /// schedule's zone, so a handoff at 09:00 stays at 09:00 across daylight-saving changes
    /// (and a turn spanning a change is an hour shorter or longer). A handoff time that does
    /// not exist on a spring-forward day happens at the first instant after the gap. Before
    /// `start`, the rotation runs backwards the same way.
    pub fn on_call_at(&self, at: DateTime<Utc>) -> &str {
        if let Some(entry) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.starts_at <= at && at < o.ends_at)
        {
            return &entry.member;
        }
        let local = at.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        let mut day = local.date_naive();
        if minute < self.handoff_minute {
            // Still the turn that began at the previous day's handoff.
            day -= Duration::days(1);
        }
        let turn = (day - self.start).num_days().div_euclid(self.rotation_days);
        let index = turn.rem_euclid(self.order.len() as i64) as usize;
        &self.order[index]
    }
}

impl Directory {
    pub fn new(config: &RouterConfig) -> Result<Directory, RoutesError> {
        let mut directory = Directory::default();
        for (i, team) in config.teams.iter().enumerate() {
            let schedule = team
                .schedule
                .as_ref()
                .map(|s| Schedule::new(s, &team.members))
                .transpose()
                .map_err(|reason| RoutesError {
                    path: format!("router.teams[{i}].schedule"),
                    reason,
                })?;
            for member in &team.members {
                directory.people.insert(
                    member.name.clone(),
                    Person {
                        name: member.name.clone(),
                        team: team.name.clone(),
                        email: member.email.clone(),
                        slack_user: member.slack_user.clone(),
                        pagerduty_user: member.pagerduty_user.clone(),
                    },
                );
            }
            directory.teams.insert(
                team.name.clone(),
                Team {
                    name: team.name.clone(),
                    channels: team.channels.clone(),
                    schedule,
                    escalation_policy: team.escalation_policy.clone(),
                },
            );
        }
        Ok(directory)
    }

    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.get(name)
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.get(name)
    }

    /// The member of `team` on call at `at`, when the team has a schedule.
    pub fn on_call(&self, team: &str, at: DateTime<Utc>) -> Option<&Person> {
        let schedule = self.teams.get(team)?.schedule.as_ref()?;
        self.people.get(schedule.on_call_at(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_core::config::OverrideConfig;

    fn schedule(
        zone: &str,
        handoff: &str,
        days: u32,
        overrides: &[(&str, &str, &str)],
    ) -> Schedule {
        let members: Vec<MemberConfig> = ["ana", "ben", "cho"]
            .iter()
            .map(|name| MemberConfig {
                name: (*name).into(),
                ..MemberConfig::default()
            })
            .collect();
        let config = ScheduleConfig {
            time_zone: zone.into(),
            handoff: handoff.into(),
            rotation_days: days,
            start: "2027-03-22".into(),
            order: Vec::new(),
            overrides: overrides
                .iter()
                .map(|(member, starts, ends)| OverrideConfig {
                    member: (*member).into(),
                    starts_at: starts.parse().unwrap(),
                    ends_at: ends.parse().unwrap(),
                })
                .collect(),
        };
        Schedule::new(&config, &members).unwrap()
    }

    fn check(schedule: &Schedule, cases: &[(&str, &str)]) {
        for (at, expected) in cases {
            let instant: DateTime<Utc> = DateTime::parse_from_rfc3339(at).unwrap().into();
            assert_eq!(schedule.on_call_at(instant), *expected, "at {at}");
        }
    }

    #[test]
    fn a_weekly_rotation_hands_over_at_local_time() {
        // Paris is UTC+1 in winter: handoff 09:00 local is 08:00Z.
        let weekly = schedule("Europe/Paris", "09:00", 7, &[]);
        check(
            &weekly,
            &[
                ("2027-03-22T08:59:59+01:00", "cho"), // before the first handoff: the turn before
                ("2027-03-22T09:00:00+01:00", "ana"),
                ("2027-03-28T23:00:00+01:00", "ana"),
                ("2027-03-29T08:59:00+02:00", "ana"),
                ("2027-03-29T09:00:00+02:00", "ben"),
                ("2027-04-05T09:00:00+02:00", "cho"),
                ("2027-04-12T09:00:00+02:00", "ana"),
                ("2027-03-15T09:00:00+01:00", "cho"),
            ],
        );
    }

    #[test]
    fn handoffs_keep_their_wall_clock_time_across_daylight_saving() {
        // Europe/Paris springs forward on 2027-03-28 at 02:00 and falls back on 2027-10-31.
        let daily = schedule("Europe/Paris", "09:00", 1, &[]);
        check(
            &daily,
            &[
                ("2027-03-27T07:59:00Z", "ben"), // 08:59 CET: still the 26th's turn
                ("2027-03-27T08:00:00Z", "cho"), // 09:00 CET
                ("2027-03-28T07:00:00Z", "ana"), // 09:00 CEST, one hour earlier in UTC
                ("2027-03-28T06:59:00Z", "cho"),
                ("2027-10-31T07:59:00Z", "ana"), // 08:59 CET after falling back
                ("2027-10-31T08:00:00Z", "ben"), // 09:00 CET
            ],
        );
        // A handoff at 02:30 does not exist on 2027-03-28 in Paris: it happens at 03:00
        // CEST, the first instant after the gap.
        let at_night = schedule("Europe/Paris", "02:30", 1, &[]);
        check(
            &at_night,
            &[
                ("2027-03-28T00:59:59Z", "cho"), // 01:59:59 CET: the 27th's turn
                ("2027-03-28T01:00:00Z", "ana"), // 03:00 CEST
                // 2027-10-31 02:30 happens twice; the first one hands over.
                ("2027-10-31T00:30:00Z", "ben"), // 02:30 CEST
                ("2027-10-31T01:30:00Z", "ben"), // 02:30 CET, the same turn
                ("2027-10-31T00:29:00Z", "ana"),
            ],
        );
        // New York changes on other dates (2027-03-14 and 2027-11-07).
        let new_york = schedule("America/New_York", "08:00", 1, &[]);
        check(
            &new_york,
            &[
                ("2027-03-14T11:59:00Z", "ana"), // 07:59 EDT
                ("2027-03-14T12:00:00Z", "ben"), // 08:00 EDT
                ("2027-03-13T13:00:00Z", "ana"), // 08:00 EST
                ("2027-03-13T12:59:00Z", "cho"), // 07:59 EST
            ],
        );
    }

    #[test]
    fn overrides_replace_the_rotation_and_the_last_listed_wins() {
        let weekly = schedule(
            "UTC",
            "09:00",
            7,
            &[
                ("cho", "2027-03-23T00:00:00Z", "2027-03-24T00:00:00Z"),
                ("ben", "2027-03-23T12:00:00Z", "2027-03-23T13:00:00Z"),
            ],
        );
        check(
            &weekly,
            &[
                ("2027-03-22T23:59:59Z", "ana"),
                ("2027-03-23T00:00:00Z", "cho"), // start included
                ("2027-03-23T12:30:00Z", "ben"), // nested, listed later
                ("2027-03-23T13:00:00Z", "cho"),
                ("2027-03-24T00:00:00Z", "ana"), // end excluded
            ],
        );
    }

    #[test]
    fn the_directory_finds_the_on_call_person_of_a_team() {
        let config: RouterConfig = serde_json::from_value(serde_json::json!({
            "teams": [{
                "name": "care",
                "channels": ["care-slack"],
                "members": [
                    {"name": "ana", "email": "ana@example.com"},
                    {"name": "ben", "slack_user": "U02"}
                ],
                "schedule": {"handoff": "09:00", "rotation_days": 1, "start": "2027-01-01"}
            }, {"name": "ops", "channels": ["ops-hook"]}]
        }))
        .unwrap();
        let directory = Directory::new(&config).unwrap();
        let at = |text: &str| -> DateTime<Utc> { text.parse().unwrap() };
        assert_eq!(
            directory
                .on_call("care", at("2027-01-01T10:00:00Z"))
                .unwrap()
                .email
                .as_deref(),
            Some("ana@example.com")
        );
        assert_eq!(
            directory
                .on_call("care", at("2027-01-02T10:00:00Z"))
                .unwrap()
                .slack_user
                .as_deref(),
            Some("U02")
        );
        assert!(directory
            .on_call("ops", at("2027-01-02T10:00:00Z"))
            .is_none());
        assert_eq!(directory.person("ben").unwrap().team, "care");
    }
}
