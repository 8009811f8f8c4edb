//! Alerts to teams through the whole router: the on-call person is notified at level 1, the
//! next level when nobody acknowledges in time, and the acknowledge / resolve API stops it
//! and tells PagerDuty (a local server speaking Events API v2). Against real Kafka, a router
//! restarted in the middle of an escalation sends level 2 exactly once and level 1 not
//! again: the escalation lives in the compacted state topic.

mod common;

use common::{kafka_config, publish_kafka as publish, publish_memory, unique, Running};
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
    DeliveryConfig, EscalationLevelConfig, EscalationPolicyConfig, EscalationTargetConfig,
    MemberConfig, PagerDutyConfig, ReceiverConfig, RouteConfig, RouterApiConfig, RouterConfig,
    ScheduleConfig, TeamConfig, WebhookConfig,
};
use earshot_core::memory::MemoryBus;
use earshot_core::model::{alert_id, Alert};
use earshot_core::{Config, Services};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ROUTE: &str = "acme-to-support";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_restarted_mid_escalation_sends_level_two_once_and_level_one_not_again() {
    let hook = Fake::start(|_| (200, json!({}))).await;
    let run = unique("escalation");
    let mut config = kafka_config(&run);
    config.router = team_router(&hook.url("/hook"), None, 3);

    let (_, enriched) = common::acme_alert(&unique("restart"), "Acme ate my order", ROUTE);
    let first = Running::start(config.clone()).await;
    publish(&first.services, &enriched).await;
    hook.wait_for(1, Duration::from_secs(30)).await;
    // Stop in the middle: level 2 is due 3 s after level 1.
    first.stop().await;
    assert_eq!(hook.requests().len(), 1, "{:#?}", hook.requests());

    let second = Running::start(config.clone()).await;
    hook.wait_for(2, Duration::from_secs(40)).await;
    // The policy has two levels and no repeat: nothing more comes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = hook.requests();
    let levels: Vec<(Value, Value)> = seen
        .iter()
        .map(|r| {
            (
                r.body["notice"]["level"].clone(),
                r.body["notice"]["person"]["name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        levels,
        [(json!(1), json!("ana")), (json!(2), json!("ben"))],
        "level 1 to the on-call member once, then level 2 to ben once"
    );
    // Each notification has its own delivery id, stable across retries and restarts.
    assert_ne!(seen[0].body["delivery_id"], seen[1].body["delivery_id"]);
    assert_eq!(
        second
            .services
            .metrics
            .team_alerts
            .with_label_values(&["support", "escalated"])
            .get(),
        1
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_stops_escalation_and_pagerduty_hears_acknowledge_and_resolve() {
    let pagerduty = Fake::start(|body| {
        match body["event_action"].as_str() {
            Some("trigger" | "acknowledge" | "resolve") if body["dedup_key"].is_string() => (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}),
            ),
            _ => (400, json!({"status": "invalid event", "message": "Event object is invalid"})),
        }
    })
    .await;
    let hook = Fake::start(|_| (200, json!({}))).await;
    let token_env = format!("EARSHOT_TEST_ROUTER_TOKEN_{}", unique("t").to_uppercase());
    let token = "a-router-api-token-for-tests";
    std::env::set_var(&token_env, token);
    std::env::set_var(
        "EARSHOT_TEST_PAGERDUTY_KEY",
        "R0UT1NGKEY0000000000000000000000",
    );
    let mut router = team_router(&hook.url("/hook"), Some(&pagerduty.url("/v2/enqueue")), 2);
    router.api = Some(RouterApiConfig {
        token_env: Some(token_env),
        token_file: None,
        public_base_url: Some("https://earshot.example.com".into()),
    });
    let port = free_port();
    let mut config = Config {
        router,
        ..Config::default()
    };
    config.telemetry.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let bus = MemoryBus::new();
    let services = Services::memory(config.clone(), bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(earshot_router::run_serving(
        services.clone(),
        shutdown.clone(),
    ));
    let (_, enriched) = common::acme_alert(&unique("ack"), "Acme ate my order", ROUTE);
    let id = alert_id(enriched.mention.id, ROUTE);
    publish_memory(&bus, &services, &enriched).await;

    // Level 1: the team's channels, PagerDuty and the hook, for the on-call member.
    pagerduty.wait_for(1, Duration::from_secs(20)).await;
    hook.wait_for(1, Duration::from_secs(20)).await;
    let trigger = &pagerduty.requests()[0].body;
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], id.to_string());
    assert_eq!(trigger["payload"]["custom_details"]["notify"], "PANA0001");
    let ack_url = hook.requests()[0].body["notice"]["ack_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ack_url.starts_with(&format!(
        "https://earshot.example.com/v1/alerts/{id}/ack?sig="
    )));

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let post = |path: String, bearer: Option<&str>, body: Value| {
        let mut request = http.post(format!("{base}{path}")).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let refused = post(
        format!("/v1/alerts/{id}/ack"),
        Some("wrong-token-wrong-token"),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 401);
    let unknown = post(
        format!("/v1/alerts/{}/ack", uuid::Uuid::new_v4()),
        Some(token),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let acked = post(
        format!("/v1/alerts/{id}/ack"),
        Some(token),
        json!({"by": "ana"}),
    )
    .await
    .unwrap();
    assert_eq!(acked.status(), 200);
    let acked: Value = acked.json().await.unwrap();
    assert_eq!(acked["acknowledged_by"], "ana");
    assert!(acked["acknowledged_at"].is_string(), "{acked}");

    // PagerDuty hears `acknowledge` for the same incident; level 2 (due 2 s after level 1)
    // never comes.
    pagerduty.wait_for(2, Duration::from_secs(10)).await;
    let event = &pagerduty.requests()[1].body;
    assert_eq!(event["event_action"], "acknowledge");
    assert_eq!(event["dedup_key"], id.to_string());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        hook.requests().len(),
        1,
        "escalated after the acknowledgement"
    );
    assert_eq!(pagerduty.requests().len(), 2);

    let resolved = post(format!("/v1/alerts/{id}/resolve"), Some(token), json!({}))
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    pagerduty.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(pagerduty.requests()[2].body["event_action"], "resolve");
    let again = post(format!("/v1/alerts/{id}/resolve"), Some(token), json!({}))
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a resolved alert is known as resolved");
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        body["error"],
        format!("alert {id} is already resolved"),
        "{body}"
    );
    let acked = post(format!("/v1/alerts/{id}/ack"), Some(token), json!({}))
        .await
        .unwrap();
    assert_eq!(acked.status(), 409);

    // The alerts topic carries the alert as raised, acknowledged, then resolved.
    let alerts = published_alerts(&bus, &services, id).await;
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    assert_eq!(alerts[0].team.as_deref(), Some("support"));
    assert_eq!(alerts[0].acknowledged_at, None);
    assert_eq!(alerts[1].acknowledged_by.as_deref(), Some("ana"));
    assert!(alerts[1].acknowledged_at.is_some() && alerts[1].resolved_at.is_none());
    assert_eq!(alerts[2].acknowledged_at, alerts[1].acknowledged_at);
    assert!(alerts[2].resolved_at.is_some());
    let counted = |event: &str| {
        services
            .metrics
            .team_alerts
            .with_label_values(&["support", event])
            .get()
    };
    assert_eq!(
        (
            counted("raised"),
            counted("acknowledged"),
            counted("resolved"),
            counted("escalated")
        ),
        (1, 1, 1, 0)
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the router stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_acknowledge_link_and_api_silences_work() {
    let hook = Fake::start(|_| (200, json!({}))).await;
    let token_env = format!("EARSHOT_TEST_ROUTER_TOKEN_{}", unique("s").to_uppercase());
    let token = "another-router-api-token";
    std::env::set_var(&token_env, token);
    let mut router = team_router(&hook.url("/hook"), None, 2);
    router.api = Some(RouterApiConfig {
        token_env: Some(token_env),
        token_file: None,
        public_base_url: Some("https://earshot.example.com/".into()),
    });
    let port = free_port();
    let mut config = Config {
        router,
        ..Config::default()
    };
    config.telemetry.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let bus = MemoryBus::new();
    let services = Services::memory(config.clone(), bus.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(earshot_router::run_serving(
        services.clone(),
        shutdown.clone(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let (_, first) = common::acme_alert(&unique("link"), "Acme ate my order", ROUTE);
    let id = alert_id(first.mention.id, ROUTE);
    publish_memory(&bus, &services, &first).await;
    hook.wait_for(1, Duration::from_secs(20)).await;
    let link = hook.requests()[0].body["notice"]["ack_url"]
        .as_str()
        .unwrap()
        .replace("https://earshot.example.com", &base);
    let forged = http
        .get(format!("{base}/v1/alerts/{id}/ack?sig=00ff"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Opening the link (a GET, as link previews and scanners do too) changes nothing: it
    // shows a page whose button POSTs the same URL.
    let opened = http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert!(opened.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = opened.text().await.unwrap();
    let sig = link.rsplit_once("sig=").unwrap().1;
    assert!(
        page.contains(&format!("<form method=\"post\" action=\"ack?sig={sig}\">")),
        "{page}"
    );
    let forged_post = http
        .post(format!("{base}/v1/alerts/{id}/ack?sig=00ff"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged_post.status(), 401);
    // Level 2 is due 2 s after level 1: only opened, the link did not acknowledge.
    hook.wait_for(2, Duration::from_secs(20)).await;
    let confirmed = http.post(&link).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert!(confirmed.text().await.unwrap().contains("acknowledged"));
    let status = http
        .post(format!("{base}/v1/alerts/{id}/ack"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let status: Value = status.json().await.unwrap();
    // Acknowledging again keeps the first person: the button's POST acknowledged.
    assert_eq!(status["acknowledged_by"], "ack link", "{status}");

    // A silence by API: the same author's next mention raises nothing while it holds.
    let unauthorized = http
        .post(format!("{base}/v1/silences"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let invalid = http
        .post(format!("{base}/v1/silences"))
        .bearer_auth(token)
        .json(&json!({"matchers": ["mood = calm"], "ends_at": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let errors: Value = invalid.json().await.unwrap();
    assert_eq!(errors["errors"].as_array().unwrap().len(), 2, "{errors}");
    let ends_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let created = http
        .post(format!("{base}/v1/silences"))
        .bearer_auth(token)
        .json(&json!({"matchers": ["author = \"@influencer\""], "ends_at": ends_at, "comment": "troll campaign"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let listed: Value = http
        .get(format!("{base}/v1/silences"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], created["id"]);

    let alerts_before = bus.records(&config.topics.alerts).len();
    let (_, second) = common::acme_alert(&unique("silenced"), "Acme again", ROUTE);
    publish_memory(&bus, &services, &second).await;
    wait_idle(&bus).await;
    assert_eq!(bus.records(&config.topics.alerts).len(), alerts_before);
    assert_eq!(hook.requests().len(), 2);

    let removed = http
        .delete(format!(
            "{base}/v1/silences/{}",
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let (_, third) = common::acme_alert(&unique("after"), "Acme once more", ROUTE);
    publish_memory(&bus, &services, &third).await;
    hook.wait_for(3, Duration::from_secs(20)).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the router stops")
        .unwrap()
        .unwrap();
}

/// Any replica acknowledges or resolves, while the one assigned the partition writes the
/// steps: whichever order the two copies are read in, the acknowledgement or resolution
/// holds, and the merged entry is saved again by the escalation task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_written_at_once_by_two_replicas_keep_the_acknowledgement_and_resolution() {
    use earshot_router::{escalation, Deliverer, Escalations, Tracked};
    let config = team_router("http://127.0.0.1:9/hook", None, 3_600);
    let deliverer = Deliverer::new(
        &config,
        earshot_core::telemetry::Metrics::default(),
        CancellationToken::new(),
    )
    .unwrap();
    let escalations = Arc::new(Escalations::new(&config, Arc::new(deliverer), None).unwrap());
    let saved: Arc<Mutex<Vec<Tracked>>> = Arc::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(escalation::run(
        escalations.clone(),
        {
            let saved = saved.clone();
            Arc::new(move |entry: Tracked, _| {
                saved.lock().unwrap().push(entry);
                Box::pin(async { Ok(()) })
            })
        },
        Box::new(|_: &str, _| true),
        stop.clone(),
    ));
    let tracked = |native: &str| {
        let (alert, enriched) = common::acme_alert(&unique(native), "Acme ate my order", ROUTE);
        let later = earshot_core::model::now_micros() + 3_600_000_000;
        let step = Tracked {
            alert,
            enriched,
            team: "support".into(),
            topic: "enriched".into(),
            partition: 0,
            steps_notified: 2,
            next_step_at: Some(later),
            updated_at: 300,
        };
        let mut acknowledged = step.clone();
        acknowledged.steps_notified = 1;
        acknowledged.alert.acknowledged_at = Some(150);
        acknowledged.alert.acknowledged_by = Some("ana".into());
        acknowledged.next_step_at = None;
        acknowledged.updated_at = 200;
        (step, acknowledged)
    };
    let wait_saved = |count: usize| {
        let saved = saved.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while saved.lock().unwrap().len() < count {
                assert!(Instant::now() < deadline, "not saved again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // The step (later) is read first, then the acknowledged copy (older).
    let (step, acknowledged) = tracked("merge-a");
    let id = step.alert.id;
    escalations.insert(step.clone());
    escalations.insert(acknowledged.clone());
    let held = escalations.get(id).unwrap();
    assert_eq!(held.alert.acknowledged_by.as_deref(), Some("ana"));
    assert_eq!(held.alert.acknowledged_at, Some(150));
    assert_eq!(held.steps_notified, 2, "the step stays sent");
    assert_eq!(held.next_step_at, None, "no further step");
    assert!(held.updated_at > 300, "the merged copy is the latest");
    wait_saved(1).await;
    assert_eq!(saved.lock().unwrap()[0], held);

    // The other order: the acknowledgement is read first, then the later step without it.
    let (step, acknowledged) = tracked("merge-b");
    escalations.insert(acknowledged);
    escalations.insert(step.clone());
    let held = escalations.get(step.alert.id).unwrap();
    assert_eq!(held.alert.acknowledged_by.as_deref(), Some("ana"));
    assert_eq!((held.steps_notified, held.next_step_at), (2, None));
    wait_saved(2).await;

    // Resolved here; a copy written before the resolution, read after it, does not bring
    // the alert back, and is saved again as resolved.
    escalations.resolve(id, None, chrono::Utc::now()).unwrap();
    escalations.insert(step_of(&saved, 0));
    assert!(escalations.get(id).is_none());
    assert!(matches!(
        escalations.acknowledge(id, None, chrono::Utc::now()),
        Err(escalation::AckError::Resolved(_))
    ));
    wait_saved(3).await;
    let resaved = saved.lock().unwrap()[2].clone();
    assert_eq!(resaved.alert.id, id);
    assert!(resaved.alert.resolved_at.is_some());

    stop.cancel();
    task.await.unwrap();
}

/// A mention of an alert to a team read again after the alert was resolved (redelivered
/// after a crash before its offset was committed, or read by the replica newly assigned its
/// partition): the team is not notified again, neither by the router that resolved it nor
/// by a new one that read the resolution (the entry's tombstone) from the state topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_team_alert_read_again_is_not_notified_again_here_nor_after_a_restart() {
    use earshot_router::{Deliverer, Escalations};
    let hook = Fake::start(|_| (200, json!({}))).await;
    let config = team_router(&hook.url("/hook"), None, 3_600);
    let escalations = || {
        let deliverer = Deliverer::new(
            &config,
            earshot_core::telemetry::Metrics::default(),
            CancellationToken::new(),
        )
        .unwrap();
        Arc::new(Escalations::new(&config, Arc::new(deliverer), None).unwrap())
    };
    let (mut alert, enriched) = common::acme_alert(&unique("resolved"), "Acme ate my order", ROUTE);
    alert.team = Some("support".into());
    let notify = |escalations: Arc<Escalations>| {
        let (alert, enriched) = (alert.clone(), enriched.clone());
        async move {
            escalations
                .notify_team(&alert, &enriched, "support", "enriched", 0)
                .await
                .unwrap()
        }
    };

    let here = escalations();
    let raised = notify(here.clone()).await.expect("a new alert is notified");
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(
        notify(here.clone()).await,
        Some(raised),
        "open: held, not notified again"
    );
    here.resolve(alert.id, Some("ana".into()), chrono::Utc::now())
        .unwrap();
    assert_eq!(notify(here.clone()).await, None, "resolved here");

    // The next router reads the state topic: the alert's entry deleted at its resolution.
    let next = escalations();
    next.remove(alert.id);
    assert_eq!(
        notify(next.clone()).await,
        None,
        "resolved before the restart"
    );
    assert_eq!(hook.requests().len(), 1, "{:#?}", hook.requests());
}

/// A revocation waits for the steps in progress of the revoked partitions only, and a step
/// of a partition this replica does not own is not begun.
#[test]
fn a_revocation_waits_for_the_steps_in_progress_of_its_partitions() {
    use earshot_router::{Deliverer, Escalations};
    let config = team_router("http://127.0.0.1:9/hook", None, 60);
    let deliverer = Deliverer::new(
        &config,
        earshot_core::telemetry::Metrics::default(),
        CancellationToken::new(),
    )
    .unwrap();
    let escalations = Arc::new(Escalations::new(&config, Arc::new(deliverer), None).unwrap());
    let owns = |topic: &str, partition: i32| topic == "enriched" && partition != 2;
    assert!(escalations.begin_step("enriched", 2, &owns).is_none());
    let step = escalations.begin_step("enriched", 1, &owns).unwrap();
    let short = Duration::from_millis(50);
    assert!(escalations.wait_for_steps("enriched", &[0, 2], short));
    assert!(!escalations.wait_for_steps("enriched", &[0, 1], short));
    let waiting = {
        let escalations = escalations.clone();
        std::thread::spawn(move || {
            escalations.wait_for_steps("enriched", &[1], Duration::from_secs(10))
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    drop(step);
    assert!(waiting.join().unwrap(), "done once the step is");
}

fn step_of(saved: &Mutex<Vec<earshot_router::Tracked>>, n: usize) -> earshot_router::Tracked {
    let mut entry = saved.lock().unwrap()[n].clone();
    entry.alert.acknowledged_at = None;
    entry.updated_at -= 1;
    entry
}

/// A route of every `acme` mention to the team `support` (ana on call, then ben), whose
/// policy notifies the on-call member, then ben after `delay_secs`.
fn team_router(hook_url: &str, pagerduty_url: Option<&str>, delay_secs: u64) -> RouterConfig {
    let mut receivers = vec![ReceiverConfig {
        name: "support-hook".into(),
        webhook: Some(WebhookConfig {
            url: Some(hook_url.to_owned()),
            allow_private: true,
            ..WebhookConfig::default()
        }),
        ..ReceiverConfig::default()
    }];
    if let Some(url) = pagerduty_url {
        receivers.push(ReceiverConfig {
            name: "support-pagerduty".into(),
            pagerduty: Some(PagerDutyConfig {
                url: url.to_owned(),
                routing_key_env: Some("EARSHOT_TEST_PAGERDUTY_KEY".into()),
                routing_key_file: None,
                severity: "critical".into(),
                allow_private: true,
            }),
            ..ReceiverConfig::default()
        });
    }
    let member = |name: &str, pagerduty: &str| MemberConfig {
        name: name.into(),
        email: Some(format!("{name}@example.com")),
        slack_user: None,
        pagerduty_user: Some(pagerduty.into()),
    };
    RouterConfig {
        routes: vec![RouteConfig {
            name: ROUTE.into(),
            watchlist: Some("acme".into()),
            team: Some("support".into()),
            ..RouteConfig::default()
        }],
        teams: vec![TeamConfig {
            name: "support".into(),
            channels: receivers.iter().map(|r| r.name.clone()).collect(),
            members: vec![member("ana", "PANA0001"), member("ben", "PBEN0002")],
            // A weekly rotation from a Monday far back with ana alone in the order: ana is
            // on call whatever the day.
            schedule: Some(ScheduleConfig {
                time_zone: "Europe/Paris".into(),
                handoff: "09:00".into(),
                rotation_days: 7,
                start: "2020-01-06".into(),
                order: vec!["ana".into()],
                overrides: vec![],
            }),
            escalation_policy: Some("support-policy".into()),
        }],
        escalation_policies: vec![EscalationPolicyConfig {
            name: "support-policy".into(),
            repeat: 0,
            levels: vec![
                EscalationLevelConfig {
                    targets: vec![EscalationTargetConfig {
                        on_call: Some("support".into()),
                        ..EscalationTargetConfig::default()
                    }],
                    delay_secs,
                },
                EscalationLevelConfig {
                    targets: vec![EscalationTargetConfig {
                        user: Some("ben".into()),
                        ..EscalationTargetConfig::default()
                    }],
                    delay_secs,
                },
            ],
        }],
        receivers,
        delivery: DeliveryConfig {
            max_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            request_timeout_ms: 5_000,
            concurrency: 4,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    }
}

async fn published_alerts(bus: &MemoryBus, services: &Services, id: uuid::Uuid) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for record in bus.records(&services.config.topics.alerts) {
        let alert = services.codecs.alert.decode(&record.payload).await.unwrap();
        if alert.id == id {
            alerts.push(alert);
        }
    }
    alerts
}

async fn wait_idle(bus: &MemoryBus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bus.is_idle() {
        assert!(Instant::now() < deadline, "the router did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a fake server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
}

type Answer = dyn Fn(&Value) -> (u16, Value) + Send + Sync;

struct Shared {
    seen: Mutex<Vec<Seen>>,
    answer: Box<Answer>,
}

/// A local HTTP server that records each JSON body it is sent and answers as `answer` says.
struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Fake {
    async fn start(answer: impl Fn(&Value) -> (u16, Value) + Send + Sync + 'static) -> Fake {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        });
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.requests().len() < count {
            assert!(
                Instant::now() < deadline,
                "expected {count} requests, got {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    _headers: HeaderMap,
    body: BodyBytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = (shared.answer)(&body);
    shared.seen.lock().unwrap().push(Seen { body });
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}
