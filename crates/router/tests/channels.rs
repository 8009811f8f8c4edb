//! Each channel against a local server that answers as the real service does: Slack's
//! incoming webhooks (`ok`, 429 with `Retry-After`, 400 `invalid_blocks`), a Teams Workflows
//! webhook (202), PagerDuty's Events API v2 (202 with the dedup key, 400 `invalid event`, 5xx),
//! and a customer's endpoint that verifies the HMAC-SHA256 signature as the README says.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use earshot_core::config::{
    DeliveryConfig, PagerDutyConfig, ReceiverConfig, RouterConfig, SlackConfig, TeamsConfig,
    WebhookConfig,
};
use earshot_core::model::{Alert, DeliveryStatus, EnrichedMention, Sentiment};
use earshot_core::telemetry::Metrics;
use earshot_router::Deliverer;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn slack_gets_a_block_kit_message_and_its_429_retry_after_is_honoured() {
    let slack = Fake::start(|n, _headers, body| {
        if let Err(problem) = slack_checks(body) {
            return (400, vec![], problem.to_owned());
        }
        match n {
            0 => (429, vec![("retry-after", "1")], "rate_limited".to_owned()),
            _ => (200, vec![], "ok".to_owned()),
        }
    })
    .await;
    let deliverer = deliverer(ReceiverConfig {
        name: "care-slack".into(),
        slack: Some(SlackConfig {
            url: Some(slack.url("/services/T000/B000/XXXX")),
            allow_private: true,
            min_interval_ms: 1_000,
            ..SlackConfig::default()
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("slack-1");

    let delivery = deliverer
        .deliver(&alert, &enriched, "care-slack")
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.channel, "slack");
    assert_eq!(delivery.attempts, 2);
    let seen = slack.requests();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(900),
        "the retry came before Retry-After"
    );
    let body = &seen[1].body;
    let blocks = body["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["header", "section", "section", "context", "actions"]
    );
    let post = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(post.contains("*@influencer*"), "{post}");
    // Slack would read `<!channel>` in the post as a mention of the whole channel.
    assert!(post.contains("&lt;!channel&gt; my Acme order"), "{post}");
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"*Sentiment*\n-0.72 (neg 0.41)"),
        "{fields:?}"
    );
    assert!(fields.contains(&"*Intent*\ncomplaint"), "{fields:?}");
    let why = blocks[3]["elements"][0]["text"].as_str().unwrap();
    assert_eq!(why, "Why: matched route acme-reach; reach 50000 ≥ 1000");
    assert_eq!(
        blocks[4]["elements"][0]["url"],
        "https://x.example/status/slack-1"
    );
    assert!(body["text"]
        .as_str()
        .unwrap()
        .starts_with("Earshot: acme · acme-reach"));
}

#[tokio::test]
async fn slack_messages_to_one_channel_are_spaced_by_min_interval() {
    let slack = Fake::start(|_, _, _| (200, vec![], "ok".to_owned())).await;
    let deliverer = Arc::new(deliverer(ReceiverConfig {
        name: "care-slack".into(),
        slack: Some(SlackConfig {
            url: Some(slack.url("/services/T000/B000/XXXX")),
            allow_private: true,
            min_interval_ms: 300,
            ..SlackConfig::default()
        }),
        ..ReceiverConfig::default()
    }));
    let sends = (0..3).map(|i| {
        let deliverer = deliverer.clone();
        tokio::spawn(async move {
            let (alert, enriched) = sample(&format!("paced-{i}"));
            deliverer.deliver(&alert, &enriched, "care-slack").await
        })
    });
    for send in futures::future::join_all(sends).await {
        assert_eq!(send.unwrap().unwrap().status, DeliveryStatus::Delivered);
    }
    let seen = slack.requests();
    assert_eq!(seen.len(), 3);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(280), "messages {gap:?} apart");
    }
}

/// Messages waiting for their turn on a paced Slack channel do not hold the delivery permits:
/// with one permit, a webhook delivery goes through while the second Slack message waits.
#[tokio::test]
async fn a_paced_slack_channel_does_not_hold_up_other_receivers() {
    let slack = Fake::start(|_, _, _| (200, vec![], "ok".to_owned())).await;
    let hook = Fake::start(|_, _, _| (200, vec![], String::new())).await;
    let config = RouterConfig {
        receivers: vec![
            ReceiverConfig {
                name: "slack".into(),
                slack: Some(SlackConfig {
                    url: Some(slack.url("/services/T/B/X")),
                    allow_private: true,
                    min_interval_ms: 1_500,
                    ..SlackConfig::default()
                }),
                ..ReceiverConfig::default()
            },
            ReceiverConfig {
                name: "hook".into(),
                webhook: Some(WebhookConfig {
                    url: Some(hook.url("/hook")),
                    allow_private: true,
                    ..WebhookConfig::default()
                }),
                ..ReceiverConfig::default()
            },
        ],
        delivery: DeliveryConfig {
            concurrency: 1,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    };
    let deliverer =
        Arc::new(Deliverer::new(&config, Metrics::default(), CancellationToken::new()).unwrap());
    let finished = Arc::new(Mutex::new(Vec::new()));
    let send = |receiver: &'static str, id: &'static str| {
        let (deliverer, finished) = (deliverer.clone(), finished.clone());
        tokio::spawn(async move {
            let (alert, enriched) = sample(id);
            let delivery = deliverer
                .deliver(&alert, &enriched, receiver)
                .await
                .unwrap();
            assert_eq!(delivery.status, DeliveryStatus::Delivered);
            finished.lock().unwrap().push(id);
        })
    };
    let first = send("slack", "slack-a");
    first.await.unwrap();
    let second = send("slack", "slack-b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = send("hook", "hook-a");
    other.await.unwrap();
    second.await.unwrap();
    assert_eq!(*finished.lock().unwrap(), ["slack-a", "hook-a", "slack-b"]);
}

#[tokio::test]
async fn slack_refusing_the_payload_is_not_retried() {
    let slack = Fake::start(|_, _, _| (400, vec![], "invalid_blocks".to_owned())).await;
    let deliverer = deliverer(ReceiverConfig {
        name: "care-slack".into(),
        slack: Some(SlackConfig {
            url: Some(slack.url("/services/T000/B000/SECRET")),
            allow_private: true,
            min_interval_ms: 0,
            ..SlackConfig::default()
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("slack-bad");
    let delivery = deliverer
        .deliver(&alert, &enriched, "care-slack")
        .await
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 1);
    let error = delivery.last_error.unwrap();
    assert!(error.contains("HTTP 400"), "{error}");
    // The webhook URL's path is its token: it must not reach logs or the dead-letter topic.
    assert!(!error.contains("SECRET"), "{error}");
}

#[tokio::test]
async fn teams_gets_an_adaptive_card() {
    let teams = Fake::start(|_, _, body| {
        let ok = body["type"] == "message"
            && body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
            && body["attachments"][0]["content"]["type"] == "AdaptiveCard";
        if ok {
            (202, vec![], String::new())
        } else {
            (400, vec![], "Bad payload".to_owned())
        }
    })
    .await;
    let deliverer = deliverer(ReceiverConfig {
        name: "care-teams".into(),
        teams: Some(TeamsConfig {
            url: Some(teams.url("/workflows/abc/triggers/manual/paths/invoke?sig=xyz")),
            allow_private: true,
            ..TeamsConfig::default()
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("teams-1");
    let delivery = deliverer
        .deliver(&alert, &enriched, "care-teams")
        .await
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.channel, "teams");
    let card = &teams.requests()[0].body["attachments"][0]["content"];
    assert_eq!(card["body"][0]["text"], "Earshot: acme · acme-reach");
    assert_eq!(card["body"][2]["text"], alert.mention_text);
    let facts = card["body"][3]["facts"].as_array().unwrap();
    assert!(
        facts.contains(&json!({"title": "Reach", "value": "50000"})),
        "{facts:?}"
    );
    assert_eq!(
        card["actions"][0]["url"],
        "https://x.example/status/teams-1"
    );
}

#[tokio::test]
async fn pagerduty_dedup_key_is_the_alert_id_across_retries_and_repeats() {
    let pagerduty = Fake::start(|n, _, body| {
        if let Err(problem) = pagerduty_checks(body) {
            let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": [problem]});
            return (400, vec![], answer.to_string());
        }
        if n == 0 {
            return (503, vec![], "Service Unavailable".to_owned());
        }
        let answer = json!({"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]});
        (202, vec![], answer.to_string())
    })
    .await;
    std::env::set_var(
        "EARSHOT_TEST_PD_ROUTING_KEY",
        "R0UT1NGKEY0000000000000000000042",
    );
    let deliverer = deliverer(ReceiverConfig {
        name: "on-call".into(),
        pagerduty: Some(PagerDutyConfig {
            url: pagerduty.url("/v2/enqueue"),
            routing_key_env: Some("EARSHOT_TEST_PD_ROUTING_KEY".into()),
            routing_key_file: None,
            severity: "critical".into(),
            allow_private: true,
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("pd-1");

    let first = deliverer
        .deliver(&alert, &enriched, "on-call")
        .await
        .unwrap();
    // The same alert again (a replay after a restart): the same incident.
    let again = deliverer
        .deliver(&alert, &enriched, "on-call")
        .await
        .unwrap();

    assert_eq!(first.status, DeliveryStatus::Delivered, "{first:?}");
    assert_eq!(first.attempts, 2);
    assert_eq!(again.status, DeliveryStatus::Delivered);
    assert_eq!(first.channel, "pagerduty");
    let seen = pagerduty.requests();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.body["dedup_key"], alert.id.to_string());
        assert_eq!(
            request.body["routing_key"],
            "R0UT1NGKEY0000000000000000000042"
        );
        assert_eq!(request.body["event_action"], "trigger");
    }
    let payload = &seen[1].body["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "earshot/acme");
    assert_eq!(payload["group"], "acme-reach");
    assert_eq!(payload["custom_details"]["intent"], "complaint");
    assert_eq!(
        seen[1].body["links"][0]["href"],
        "https://x.example/status/pd-1"
    );
}

#[tokio::test]
async fn pagerduty_rejecting_the_event_is_not_retried() {
    let pagerduty = Fake::start(|_, _, _| {
        let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'routing_key' is invalid"]});
        (400, vec![], answer.to_string())
    })
    .await;
    let dir = std::env::temp_dir().join(format!("earshot-pd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("routing-key");
    std::fs::write(&key_file, "wrong-key\n").unwrap();
    let deliverer = deliverer(ReceiverConfig {
        name: "on-call".into(),
        pagerduty: Some(PagerDutyConfig {
            url: pagerduty.url("/v2/enqueue"),
            routing_key_env: None,
            routing_key_file: Some(key_file),
            severity: "warning".into(),
            allow_private: true,
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("pd-bad");
    let delivery = deliverer
        .deliver(&alert, &enriched, "on-call")
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 1);
    // The key comes from the file without its newline.
    assert_eq!(pagerduty.requests()[0].body["routing_key"], "wrong-key");
}

#[tokio::test]
async fn signed_webhooks_verify_with_the_documented_recipe() {
    const KEY: &str = "whsec-0123456789abcdef";
    // The receiving side, as the README describes it: HMAC-SHA256 under the shared key of
    // `<X-Earshot-Delivery>.<X-Earshot-Timestamp>.<raw body>`, compared in constant time with
    // the hex after `v1=` in X-Earshot-Signature, and a timestamp within 5 minutes.
    let endpoint = Fake::start(|n, headers, _| {
        let verified = headers.verified.unwrap_or(false);
        match (verified, n) {
            (false, _) => (401, vec![], "bad signature".to_owned()),
            (true, 0) => (500, vec![], String::new()),
            (true, _) => (200, vec![], String::new()),
        }
    })
    .await
    .verifying(KEY);
    std::env::set_var("EARSHOT_TEST_WEBHOOK_SECRET", KEY);
    let deliverer = deliverer(ReceiverConfig {
        name: "customer-hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(endpoint.url("/hook")),
            allow_private: true,
            secret_env: Some("EARSHOT_TEST_WEBHOOK_SECRET".into()),
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    });
    let (alert, enriched) = sample("signed-1");
    let delivery = deliverer
        .deliver(&alert, &enriched, "customer-hook")
        .await
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.attempts, 2);
    let seen = endpoint.requests();
    assert!(seen.iter().all(|r| r.verified == Some(true)), "{seen:#?}");

    // The same endpoint refuses a sender with another key.
    std::env::set_var("EARSHOT_TEST_WEBHOOK_SECRET_WRONG", "not-the-key");
    let impostor = deliverer_with(
        ReceiverConfig {
            name: "customer-hook".into(),
            webhook: Some(WebhookConfig {
                url: Some(endpoint.url("/hook")),
                allow_private: true,
                secret_env: Some("EARSHOT_TEST_WEBHOOK_SECRET_WRONG".into()),
                ..WebhookConfig::default()
            }),
            ..ReceiverConfig::default()
        },
        1,
    );
    let refused = impostor
        .deliver(&alert, &enriched, "customer-hook")
        .await
        .unwrap();
    assert_eq!(refused.status, DeliveryStatus::Failed);
    assert_eq!(endpoint.requests().last().unwrap().verified, Some(false));
}

/// An alert about a sensitive topic says "no public reply before review" on every channel.
#[tokio::test]
async fn sensitive_alerts_carry_the_review_warning() {
    let slack = Fake::start(|_, _, body| match slack_checks(body) {
        Ok(()) => (200, vec![], "ok".to_owned()),
        Err(problem) => (400, vec![], problem.to_owned()),
    })
    .await;
    let teams = Fake::start(|_, _, _| (202, vec![], String::new())).await;
    let config = RouterConfig {
        receivers: vec![
            ReceiverConfig {
                name: "slack".into(),
                slack: Some(SlackConfig {
                    url: Some(slack.url("/services/T/B/X")),
                    allow_private: true,
                    ..SlackConfig::default()
                }),
                ..ReceiverConfig::default()
            },
            ReceiverConfig {
                name: "teams".into(),
                teams: Some(TeamsConfig {
                    url: Some(teams.url("/invoke")),
                    allow_private: true,
                    ..TeamsConfig::default()
                }),
                ..ReceiverConfig::default()
            },
        ],
        ..RouterConfig::default()
    };
    let deliverer = Deliverer::new(&config, Metrics::default(), CancellationToken::new()).unwrap();
    let (mut alert, enriched) = sample("sensitive");
    alert.review_required = true;
    alert.review_topics = vec!["legal".into(), "health".into()];
    for receiver in ["slack", "teams"] {
        let delivery = deliverer
            .deliver(&alert, &enriched, receiver)
            .await
            .unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    }
    let warning = "No public reply before review (sensitive: legal, health)";
    let slack_body = &slack.requests()[0].body;
    assert_eq!(
        slack_body["blocks"][1]["text"]["text"],
        format!(":warning: *{warning}*")
    );
    let card = &teams.requests()[0].body["attachments"][0]["content"];
    assert_eq!(card["body"][1]["text"], warning);
    assert_eq!(card["body"][1]["color"], "Attention");
}

/// A dead receiver opens its circuit after `breaker_failures` consecutive failed attempts:
/// its deliveries then fail without a request (to be dead-lettered) while another receiver
/// keeps delivering; after `breaker_open_ms` one attempt probes it again.
#[tokio::test]
async fn a_dead_receiver_opens_its_circuit_and_the_others_keep_delivering() {
    let dead = Fake::start(|_, _, _| (503, vec![], String::new())).await;
    let alive = Fake::start(|_, _, _| (200, vec![], String::new())).await;
    let hook = |name: &str, url: String| ReceiverConfig {
        name: name.into(),
        webhook: Some(WebhookConfig {
            url: Some(url),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    let config = RouterConfig {
        receivers: vec![
            hook("dead", dead.url("/hook")),
            hook("alive", alive.url("/hook")),
        ],
        delivery: DeliveryConfig {
            max_attempts: 2,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
            breaker_failures: 3,
            breaker_open_ms: 300,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    };
    let deliverer = Deliverer::new(&config, Metrics::default(), CancellationToken::new()).unwrap();
    let (alert, enriched) = sample("breaker");

    let first = deliverer.deliver(&alert, &enriched, "dead").await.unwrap();
    assert_eq!((first.status, first.attempts), (DeliveryStatus::Failed, 2));
    // The third consecutive failure opens the circuit: no retry after it.
    let second = deliverer.deliver(&alert, &enriched, "dead").await.unwrap();
    assert_eq!(
        (second.status, second.attempts),
        (DeliveryStatus::Failed, 1)
    );
    let third = deliverer.deliver(&alert, &enriched, "dead").await.unwrap();
    assert_eq!((third.status, third.attempts), (DeliveryStatus::Failed, 0));
    assert!(
        third
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("circuit open"),
        "{third:?}"
    );
    assert_eq!(dead.requests().len(), 3);

    let other = deliverer.deliver(&alert, &enriched, "alive").await.unwrap();
    assert_eq!(other.status, DeliveryStatus::Delivered);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe = deliverer.deliver(&alert, &enriched, "dead").await.unwrap();
    assert_eq!((probe.status, probe.attempts), (DeliveryStatus::Failed, 1));
    assert_eq!(
        dead.requests().len(),
        4,
        "one probe after the circuit's open time"
    );
}

/// Each receiver's `retry` overrides `router.delivery`.
#[tokio::test]
async fn a_receiver_has_its_own_retry_policy() {
    let failing = Fake::start(|_, _, _| (500, vec![], String::new())).await;
    let mut receiver = ReceiverConfig {
        name: "hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(failing.url("/hook")),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    };
    receiver.retry = Some(earshot_core::config::RetryConfig {
        max_attempts: Some(2),
        ..Default::default()
    });
    let deliverer = deliverer_with(receiver, 5);
    let (alert, enriched) = sample("own-policy");
    let delivery = deliverer.deliver(&alert, &enriched, "hook").await.unwrap();
    assert_eq!(
        (delivery.status, delivery.attempts),
        (DeliveryStatus::Failed, 2)
    );
    assert_eq!(failing.requests().len(), 2);
}

/// Slack's own checks of an incoming-webhook message, those that matter here: `text` or
/// `blocks`, known block types, a header of plain text up to 150 characters.
fn slack_checks(body: &Value) -> Result<(), &'static str> {
    let blocks = body["blocks"].as_array().ok_or("invalid_blocks")?;
    if body["text"].as_str().is_none_or(str::is_empty) && blocks.is_empty() {
        return Err("no_text");
    }
    for block in blocks {
        match block["type"].as_str() {
            Some("header") => {
                let text = &block["text"];
                if text["type"] != "plain_text"
                    || text["text"]
                        .as_str()
                        .is_none_or(|t| t.chars().count() > 150)
                {
                    return Err("invalid_blocks");
                }
            }
            Some("section" | "context" | "actions" | "divider") => {}
            _ => return Err("invalid_blocks"),
        }
    }
    Ok(())
}

/// PagerDuty's checks of an Events API v2 event.
fn pagerduty_checks(body: &Value) -> Result<(), &'static str> {
    if body["routing_key"].as_str().is_none_or(str::is_empty) {
        return Err("'routing_key' is missing or blank");
    }
    if !matches!(
        body["event_action"].as_str(),
        Some("trigger" | "acknowledge" | "resolve")
    ) {
        return Err("'event_action' is invalid");
    }
    let payload = &body["payload"];
    if payload["summary"].as_str().is_none_or(str::is_empty) {
        return Err("'payload.summary' is missing or blank");
    }
    if payload["source"].as_str().is_none_or(str::is_empty) {
        return Err("'payload.source' is missing or blank");
    }
    if !matches!(
        payload["severity"].as_str(),
        Some("critical" | "error" | "warning" | "info")
    ) {
        return Err("'payload.severity' is invalid");
    }
    Ok(())
}

fn deliverer(receiver: ReceiverConfig) -> Deliverer {
    deliverer_with(receiver, 4)
}

fn deliverer_with(receiver: ReceiverConfig, max_attempts: u32) -> Deliverer {
    let config = RouterConfig {
        receivers: vec![receiver],
        delivery: DeliveryConfig {
            max_attempts,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            request_timeout_ms: 5_000,
            concurrency: 4,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    };
    Deliverer::new(&config, Metrics::default(), CancellationToken::new()).expect("a deliverer")
}

/// An angry complaint by a large account in the `acme` watchlist, and its alert.
fn sample(native_id: &str) -> (Alert, EnrichedMention) {
    let (alert, mut enriched) = common::acme_alert(
        native_id,
        "<!channel> my Acme order arrived crushed & nobody answers",
        "acme-reach",
    );
    enriched.sentiment = Sentiment {
        neg: 0.41,
        neu: 0.59,
        pos: 0.0,
        compound: -0.72,
    };
    (alert, enriched)
}

/// What the fake server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    body: Value,
    /// Whether the signature verified, when the server checks signatures.
    verified: Option<bool>,
}

type Answer = (u16, Vec<(&'static str, &'static str)>, String);
type Handler = dyn Fn(usize, &Seen, &Value) -> Answer + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
    key: Mutex<Option<String>>,
}

/// A local HTTP server: `handler(request number, what was seen, JSON body)` answers.
struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Fake {
    async fn start(
        handler: impl Fn(usize, &Seen, &Value) -> Answer + Send + Sync + 'static,
    ) -> Fake {
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
            key: Mutex::new(None),
        });
        let app = Router::new()
            .fallback(post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, shared }
    }

    /// Checks each request's signature with `key`.
    fn verifying(self, key: &str) -> Fake {
        *self.shared.key.lock().unwrap() = Some(key.to_owned());
        self
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: BodyBytes,
) -> Response {
    let key = shared.key.lock().unwrap().clone();
    let seen = Seen {
        at: Instant::now(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified: key.map(|key| verify(&key, &headers, &body)),
    };
    let json = seen.body.clone();
    let n = {
        let mut all = shared.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, extra, text) = (shared.handler)(n, &seen, &json);
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// The README's verification recipe.
fn verify(key: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(delivery), Some(timestamp), Some(signature)) = (
        header("x-earshot-delivery"),
        header("x-earshot-timestamp"),
        header("x-earshot-signature"),
    ) else {
        return false;
    };
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
    let Some(hex) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{delivery}.{timestamp}.").as_bytes());
    mac.update(body);
    fresh && mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
