//! The router's people: teams (members with their contacts, the team's channels), on-call
//! schedules (rotations with a handoff time in a time zone, overrides) and escalation
//! policies (levels of targets, the delay before the next level, repeats), with their
//! validation. Part of `config`; the router computes who is on call (`earshot_router::oncall`).

use serde::{Deserialize, Serialize};

use super::ConfigErrors;

/// A team: its people, the receivers it is reached on, who is on call and how alerts to it
/// escalate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeamConfig {
    /// Unique team name; routes name it with `team:`.
    pub name: String,
    /// The team's receivers (names in `router.receivers`): alerts to the team, and
    /// notifications of its on-call member or of one of its members, go to each of them.
    pub channels: Vec<String>,
    /// The people of the team; member names are unique across all teams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberConfig>,
    /// Who is on call when; without one, the team has nobody on call and alerts to it go to
    /// its channels without a named person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
    /// The escalation policy (a name in `router.escalation_policies`) of the team's alerts;
    /// without one, an alert notifies the team once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
}

/// A person and how each channel reaches them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberConfig {
    /// Unique name across all teams, used by schedules, overrides and escalation targets.
    pub name: String,
    /// Email address: an email channel notifying this person sends to it instead of its
    /// configured recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Slack member id (`U024BE7LH`): Slack messages notifying this person mention them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user: Option<String>,
    /// PagerDuty user id or name, carried in the event's `custom_details.notify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty_user: Option<String>,
}

/// A rotation: the members take turns of `rotation_days` days, handing over at `handoff`
/// local time, from the `start` date on; overrides replace whoever the rotation names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// IANA time zone of `handoff` and `start`, e.g. `Europe/Paris`; UTC by default.
    #[serde(default = "super::utc")]
    pub time_zone: String,
    /// Local time of day of each handoff, `09:00`. Handoffs keep this wall-clock time across
    /// daylight-saving changes.
    pub handoff: String,
    /// Length of one member's turn, in days (7: weekly).
    #[serde(default = "seven")]
    pub rotation_days: u32,
    /// The date (local) of the first handoff, `2026-11-02`: the first member of `order` is
    /// on call from `handoff` that day.
    pub start: String,
    /// The order of turns (member names of this team); all members in their order when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Temporary replacements; when several cover an instant, the last one listed wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<OverrideConfig>,
}

fn seven() -> u32 {
    7
}

/// Someone on call in place of the rotation, from `starts_at` (included) to `ends_at`
/// (excluded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverrideConfig {
    /// A member of this team.
    pub member: String,
    /// RFC 3339, `2026-12-24T09:00:00+01:00`.
    pub starts_at: chrono::DateTime<chrono::Utc>,
    /// RFC 3339, after `starts_at`.
    pub ends_at: chrono::DateTime<chrono::Utc>,
}

/// How an unacknowledged alert climbs: level 1 is notified at once; when nobody acknowledges
/// it within that level's `delay_secs`, the next level is notified, and so on; after the
/// last level, the levels are run again `repeat` more times.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EscalationPolicyConfig {
    /// Unique name teams refer to.
    pub name: String,
    /// The levels, in order.
    pub levels: Vec<EscalationLevelConfig>,
    /// Times the whole sequence runs again after the last level, when still unacknowledged.
    #[serde(default)]
    pub repeat: u32,
}

/// One level: who is notified, and how long to wait for an acknowledgement before the next.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EscalationLevelConfig {
    /// Who is notified at this level.
    pub targets: Vec<EscalationTargetConfig>,
    /// Seconds to wait, after notifying this level, for an acknowledgement before notifying
    /// the next level (600: ten minutes).
    pub delay_secs: u64,
}

/// One target of a level: set exactly one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EscalationTargetConfig {
    /// The on-call member of this team, notified on the team's channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_call: Option<String>,
    /// A receiver, as a route would notify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// A member (by name), notified on their team's channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The router's API: `POST /v1/alerts/{id}/ack` and `/resolve`, `/v1/silences`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouterApiConfig {
    /// Environment variable holding the API's bearer token (at least 16 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the bearer token (trailing newline ignored); or `token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// The router's address as people reach it, `https://earshot.example.com`: messages to
    /// teams carry a signed acknowledge link on it. No link when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
}

/// `09:00` as minutes after midnight.
pub fn parse_time_of_day(text: &str) -> Result<u32, String> {
    let time = chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("{text:?} is not a time like \"09:00\""))?;
    Ok(chrono::Timelike::hour(&time) * 60 + chrono::Timelike::minute(&time))
}

pub(super) fn validate_api(api: &RouterApiConfig, errors: &mut ConfigErrors) {
    if api.token_env.is_some() == api.token_file.is_some() {
        errors.push(
            "router.api",
            "set one of token_env and token_file: the API requires a bearer token",
        );
    }
    if let Some(base) = &api.public_base_url {
        match reqwest::Url::parse(base) {
            Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
            Ok(url) => errors.push(
                "router.api.public_base_url",
                format!("scheme {:?} is not http or https", url.scheme()),
            ),
            Err(e) => errors.push(
                "router.api.public_base_url",
                format!("{base:?} is not a URL: {e}"),
            ),
        }
    }
}

/// Checks teams and escalation policies: names, references to receivers, members, teams
/// and policies, schedules' time zones, times, dates and overrides.
pub(super) fn validate_oncall(
    teams: &[TeamConfig],
    policies: &[EscalationPolicyConfig],
    receivers: &[&str],
    errors: &mut ConfigErrors,
) {
    let mut team_names: Vec<&str> = Vec::new();
    let mut member_names: Vec<&str> = Vec::new();
    for (i, team) in teams.iter().enumerate() {
        let path = format!("router.teams[{i}]");
        if team.name.trim().is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        } else if team_names.contains(&team.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate team name {:?}", team.name),
            );
        }
        team_names.push(&team.name);
        if team.channels.is_empty() {
            errors.push(
                format!("{path}.channels"),
                "must list at least one receiver",
            );
        }
        for (j, channel) in team.channels.iter().enumerate() {
            if !receivers.contains(&channel.as_str()) {
                errors.push(
                    format!("{path}.channels[{j}]"),
                    format!("no receiver named {channel:?} in router.receivers"),
                );
            }
        }
        for (j, member) in team.members.iter().enumerate() {
            let member_path = format!("{path}.members[{j}]");
            if member.name.trim().is_empty() {
                errors.push(format!("{member_path}.name"), "must not be empty");
            } else if member_names.contains(&member.name.as_str()) {
                errors.push(
                    format!("{member_path}.name"),
                    format!(
                        "duplicate member name {:?} (names are unique across teams)",
                        member.name
                    ),
                );
            }
            member_names.push(&member.name);
            if let Some(email) = &member.email {
                if !email.contains('@') || email.trim() != email {
                    errors.push(
                        format!("{member_path}.email"),
                        format!("{email:?} is not an address"),
                    );
                }
            }
        }
        if let Some(policy) = &team.escalation_policy {
            if !policies.iter().any(|p| &p.name == policy) {
                errors.push(
                    format!("{path}.escalation_policy"),
                    format!("no escalation policy named {policy:?} in router.escalation_policies"),
                );
            }
        }
        if let Some(schedule) = &team.schedule {
            let path = format!("{path}.schedule");
            if let Err(e) = crate::routing::parse_time_zone(&schedule.time_zone) {
                errors.push(format!("{path}.time_zone"), e);
            }
            if let Err(e) = parse_time_of_day(&schedule.handoff) {
                errors.push(format!("{path}.handoff"), e);
            }
            if let Err(e) = crate::routing::parse_date(&schedule.start) {
                errors.push(format!("{path}.start"), e);
            }
            if schedule.rotation_days == 0 {
                errors.push(format!("{path}.rotation_days"), "must be at least 1");
            }
            let is_member = |name: &str| team.members.iter().any(|m| m.name == name);
            if schedule.order.is_empty() && team.members.is_empty() {
                errors.push(
                    format!("{path}.order"),
                    "nobody to put on call: the team has no members",
                );
            }
            for (j, name) in schedule.order.iter().enumerate() {
                if !is_member(name) {
                    errors.push(
                        format!("{path}.order[{j}]"),
                        format!("no member named {name:?} in this team"),
                    );
                }
            }
            for (j, entry) in schedule.overrides.iter().enumerate() {
                if !is_member(&entry.member) {
                    errors.push(
                        format!("{path}.overrides[{j}].member"),
                        format!("no member named {:?} in this team", entry.member),
                    );
                }
                if entry.starts_at >= entry.ends_at {
                    errors.push(
                        format!("{path}.overrides[{j}].ends_at"),
                        "must be after starts_at",
                    );
                }
            }
        }
    }
    let mut policy_names: Vec<&str> = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let path = format!("router.escalation_policies[{i}]");
        if policy.name.trim().is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        } else if policy_names.contains(&policy.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate escalation policy name {:?}", policy.name),
            );
        }
        policy_names.push(&policy.name);
        if policy.levels.is_empty() {
            errors.push(format!("{path}.levels"), "must list at least one level");
        }
        for (j, level) in policy.levels.iter().enumerate() {
            let path = format!("{path}.levels[{j}]");
            if level.targets.is_empty() {
                errors.push(format!("{path}.targets"), "must list at least one target");
            }
            for (k, target) in level.targets.iter().enumerate() {
                let path = format!("{path}.targets[{k}]");
                let set = usize::from(target.on_call.is_some())
                    + usize::from(target.receiver.is_some())
                    + usize::from(target.user.is_some());
                if set != 1 {
                    errors.push(&path, "set exactly one of on_call, receiver and user");
                }
                if let Some(team) = &target.on_call {
                    match teams.iter().find(|t| &t.name == team) {
                        None => errors.push(
                            format!("{path}.on_call"),
                            format!("no team named {team:?} in router.teams"),
                        ),
                        Some(t) if t.schedule.is_none() => errors.push(
                            format!("{path}.on_call"),
                            format!("team {team:?} has no schedule, so nobody is on call"),
                        ),
                        Some(_) => {}
                    }
                }
                if let Some(receiver) = &target.receiver {
                    if !receivers.contains(&receiver.as_str()) {
                        errors.push(
                            format!("{path}.receiver"),
                            format!("no receiver named {receiver:?} in router.receivers"),
                        );
                    }
                }
                if let Some(user) = &target.user {
                    if !member_names.contains(&user.as_str()) {
                        errors.push(
                            format!("{path}.user"),
                            format!("no member named {user:?} in router.teams"),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(yaml: &str) -> Vec<String> {
        let value: serde_json::Value = config::Config::builder()
            .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        match Config::from_value(value) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.problems,
        }
    }

    #[test]
    fn a_valid_team_with_schedule_and_policy_passes() {
        let found = problems(
            r#"
router:
  receivers:
    - { name: care-slack, slack: { url_env: SLACK_URL } }
    - { name: managers, console: true }
  teams:
    - name: care
      channels: [care-slack]
      members:
        - { name: alice, email: alice@example.com, slack_user: U01 }
        - { name: bob }
      schedule:
        time_zone: Europe/Paris
        handoff: "09:00"
        rotation_days: 7
        start: "2026-11-02"
        overrides:
          - { member: bob, starts_at: "2026-12-24T09:00:00+01:00", ends_at: "2026-12-26T09:00:00+01:00" }
      escalation_policy: care-policy
  escalation_policies:
    - name: care-policy
      repeat: 1
      levels:
        - { targets: [{ on_call: care }], delay_secs: 600 }
        - { targets: [{ user: alice }, { receiver: managers }], delay_secs: 900 }
  routes:
    - { name: all, team: care }
"#,
        );
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn teams_schedules_and_policies_are_checked_with_their_paths() {
        let found = problems(
            r#"
router:
  receivers:
    - { name: care-slack, slack: { url_env: SLACK_URL } }
  teams:
    - name: care
      channels: [care-slack, nowhere]
      members:
        - { name: alice, email: "not an address" }
        - { name: alice }
      schedule:
        time_zone: Mars/Olympus
        handoff: "9h"
        rotation_days: 0
        start: "02/11/2026"
        order: [alice, zoe]
        overrides:
          - { member: zoe, starts_at: "2026-12-26T09:00:00Z", ends_at: "2026-12-24T09:00:00Z" }
      escalation_policy: missing
    - name: care
      channels: []
    - name: quiet
      channels: [care-slack]
  escalation_policies:
    - name: p
      levels:
        - { targets: [{ on_call: quiet }, { on_call: nobody }, { user: zoe }, { receiver: nope }, {}, { user: alice, receiver: care-slack }], delay_secs: 60 }
        - { targets: [], delay_secs: 60 }
    - { name: p, levels: [] }
  routes:
    - { name: a, team: ghosts }
    - { name: b, team: care, receiver: care-slack }
"#,
        );
        let expected = [
            "router.teams[0].channels[1]: no receiver named \"nowhere\"",
            "router.teams[0].members[0].email: \"not an address\" is not an address",
            "router.teams[0].members[1].name: duplicate member name \"alice\"",
            "router.teams[0].escalation_policy: no escalation policy named \"missing\"",
            "router.teams[0].schedule.time_zone: \"Mars/Olympus\" is not an IANA time zone",
            "router.teams[0].schedule.handoff: \"9h\" is not a time",
            "router.teams[0].schedule.start: \"02/11/2026\" is not a date",
            "router.teams[0].schedule.rotation_days: must be at least 1",
            "router.teams[0].schedule.order[1]: no member named \"zoe\" in this team",
            "router.teams[0].schedule.overrides[0].member: no member named \"zoe\"",
            "router.teams[0].schedule.overrides[0].ends_at: must be after starts_at",
            "router.teams[1].name: duplicate team name \"care\"",
            "router.teams[1].channels: must list at least one receiver",
            "router.escalation_policies[0].levels[0].targets[0].on_call: team \"quiet\" has no schedule",
            "router.escalation_policies[0].levels[0].targets[1].on_call: no team named \"nobody\"",
            "router.escalation_policies[0].levels[0].targets[2].user: no member named \"zoe\"",
            "router.escalation_policies[0].levels[0].targets[3].receiver: no receiver named \"nope\"",
            "router.escalation_policies[0].levels[0].targets[4]: set exactly one of on_call, receiver and user",
            "router.escalation_policies[0].levels[0].targets[5]: set exactly one of on_call, receiver and user",
            "router.escalation_policies[0].levels[1].targets: must list at least one target",
            "router.escalation_policies[1].name: duplicate escalation policy name \"p\"",
            "router.escalation_policies[1].levels: must list at least one level",
            "router.routes[0].team: no team named \"ghosts\" in router.teams",
            "router.routes[1].team: set receiver or team, not both",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }
}
