//! Who one notification of an alert is for, and what that adds to each channel's body: the
//! on-call person or member being paged (a Slack mention, the email address, PagerDuty's
//! `custom_details.notify`), the escalation level, and an acknowledge link.
//!
//! Pure edits of the bodies `channels` builds, so that `channels` stays the one place of each
//! body's layout and these additions are unit-tested on their own.

use serde_json::{json, Value};

use crate::oncall::Person;

/// What sets one notification apart from the plain delivery of an alert to a receiver.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    /// The person it is for (on call, or a member named by an escalation level).
    pub person: Option<Person>,
    /// The escalation level (1 for the first), when the alert escalates.
    pub level: Option<u32>,
    /// How many times the policy's levels were run through before (its `repeat`s).
    pub pass: u32,
    /// A link that acknowledges the alert (on the router's public base URL).
    pub ack_url: Option<String>,
}

impl Notice {
    /// Part of the delivery id: one notification of one alert to one receiver, per level and
    /// person, keeps its id across retries and replays, and two levels get two ids.
    pub fn key(&self, receiver: &str) -> String {
        match (&self.level, &self.person) {
            (None, None) => receiver.to_owned(),
            (level, person) => format!(
                "{receiver}/level{}.{}/{}",
                level.unwrap_or(0),
                self.pass,
                person.as_ref().map(|p| p.name.as_str()).unwrap_or("")
            ),
        }
    }

    fn line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(level) = self.level {
            parts.push(format!("Escalation level {level}"));
            if self.pass > 0 {
                parts.push(format!("(repeat {})", self.pass));
            }
        }
        if let Some(person) = &self.person {
            parts.push(format!("for {} ({})", person.name, person.team));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Adds the Slack mention of the person, the level, and an "Acknowledge" button.
pub fn slack(body: &mut Value, notice: &Notice) {
    let Some(blocks) = body["blocks"].as_array_mut() else {
        return;
    };
    if let Some(line) = notice.line() {
        let mention = notice
            .person
            .as_ref()
            .and_then(|p| p.slack_user.as_deref())
            .map(|user| format!("<@{user}> "))
            .unwrap_or_default();
        blocks.insert(
            1,
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{mention}{line}")}}),
        );
    }
    if let Some(url) = &notice.ack_url {
        let button = json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Acknowledge"},
            "url": url,
            "style": "primary",
            "action_id": "acknowledge",
        });
        match blocks
            .iter_mut()
            .find(|b| b["type"] == "actions")
            .and_then(|b| b["elements"].as_array_mut())
        {
            Some(elements) => elements.push(button),
            None => blocks.push(json!({"type": "actions", "elements": [button]})),
        }
    }
}

/// Adds the level and person to the Adaptive Card, and an "Acknowledge" action.
pub fn teams(body: &mut Value, notice: &Notice) {
    let card = &mut body["attachments"][0]["content"];
    if let Some(line) = notice.line() {
        if let Some(items) = card["body"].as_array_mut() {
            items.insert(
                1,
                json!({"type": "TextBlock", "text": line, "weight": "Bolder", "wrap": true}),
            );
        }
    }
    if let Some(url) = &notice.ack_url {
        let action = json!({"type": "Action.OpenUrl", "title": "Acknowledge", "url": url});
        match card["actions"].as_array_mut() {
            Some(actions) => actions.push(action),
            None => card["actions"] = json!([action]),
        }
    }
}

/// Adds `notify` (the PagerDuty user, else the person's name) and the level to the event's
/// custom details; the dedup key stays the alert id.
pub fn pagerduty(body: &mut Value, notice: &Notice) {
    let details = &mut body["payload"]["custom_details"];
    if !details.is_object() {
        return;
    }
    if let Some(person) = &notice.person {
        details["notify"] = json!(person.pagerduty_user.as_deref().unwrap_or(&person.name));
    }
    if let Some(level) = notice.level {
        details["escalation_level"] = json!(level);
    }
    if let Some(url) = &notice.ack_url {
        details["acknowledge_url"] = json!(url);
    }
}

/// The webhook body's `notice` object: `person`, `level`, `ack_url` (absent keys when unset).
pub fn webhook(body: &mut Value, notice: &Notice) {
    if notice.person.is_none() && notice.level.is_none() && notice.ack_url.is_none() {
        return;
    }
    body["notice"] = json!({
        "person": notice.person,
        "level": notice.level,
        "ack_url": notice.ack_url,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            name: "ana".into(),
            team: "care".into(),
            email: Some("ana@example.com".into()),
            slack_user: Some("U024BE7LH".into()),
            pagerduty_user: Some("PXPGF42".into()),
        }
    }

    #[test]
    fn slack_mentions_the_person_and_gets_an_acknowledge_button() {
        let mut body = json!({"text": "t", "blocks": [
            {"type": "header"}, {"type": "section"},
            {"type": "actions", "elements": [{"type": "button", "action_id": "open_post"}]}
        ]});
        slack(
            &mut body,
            &Notice {
                person: Some(person()),
                level: Some(2),
                pass: 0,
                ack_url: Some("https://earshot.example.com/v1/alerts/a/ack?sig=x".into()),
            },
        );
        assert_eq!(
            body["blocks"][1]["text"]["text"],
            "<@U024BE7LH> Escalation level 2 for ana (care)"
        );
        let actions = &body["blocks"][3]["elements"];
        assert_eq!(actions[1]["action_id"], "acknowledge");
        assert_eq!(
            actions[1]["url"],
            "https://earshot.example.com/v1/alerts/a/ack?sig=x"
        );
        // Nothing to add: the body is left as it is.
        let before = json!({"text": "t", "blocks": [{"type": "header"}]});
        let mut after = before.clone();
        slack(&mut after, &Notice::default());
        assert_eq!(before, after);
    }

    #[test]
    fn pagerduty_and_webhook_carry_the_person_and_level() {
        let mut event = json!({"payload": {"custom_details": {"post": "p"}}});
        let notice = Notice {
            person: Some(person()),
            level: Some(1),
            pass: 0,
            ack_url: None,
        };
        pagerduty(&mut event, &notice);
        assert_eq!(event["payload"]["custom_details"]["notify"], "PXPGF42");
        assert_eq!(event["payload"]["custom_details"]["escalation_level"], 1);
        let mut hook = json!({"alert": {}});
        webhook(&mut hook, &notice);
        assert_eq!(hook["notice"]["person"]["email"], "ana@example.com");
        assert_eq!(hook["notice"]["level"], 1);
    }

    #[test]
    fn each_level_and_person_has_its_own_delivery_key() {
        let plain = Notice::default();
        assert_eq!(plain.key("care-slack"), "care-slack");
        let first = Notice {
            person: Some(person()),
            level: Some(1),
            pass: 0,
            ack_url: None,
        };
        let second = Notice {
            level: Some(2),
            ..first.clone()
        };
        assert_eq!(first.key("care-slack"), "care-slack/level1.0/ana");
        let repeated = Notice {
            pass: 1,
            ..first.clone()
        };
        assert_ne!(first.key("care-slack"), repeated.key("care-slack"));
        assert_ne!(first.key("care-slack"), second.key("care-slack"));
    }
}
