//! The reliability suite: the services as `earshot` processes against real Kafka and real
//! PostgreSQL, faults injected while mentions flow, and a checker that compares what the
//! collector acknowledged with what reached PostgreSQL, the dead-letter topic and the
//! receivers. Scenarios run one at a time; each prints a one-line report and writes its
//! result for the RELIABILITY.md table (`scripts/chaos` regenerates it).
//!
//! - `kill_9_of_each_service_in_turn_loses_nothing`: SIGKILL of one service every 2.5 s, each
//!   service twice, restarted half a second later. Missing 0; no duplicate rows; every
//!   expected alert delivered.
//! - `sigterm_of_each_service_under_load_exits_in_time_and_loses_nothing`: SIGTERM instead;
//!   each service must exit 0 within its drain budget.
//! - [`broker`]: a Kafka broker (the test's own) restarted in the middle of a run.
//! - [`poison`]: 1 % poison records on the topics between the stages.
//! - [`postgres`]: a slow and then failing PostgreSQL.
//! - [`channels`]: channels answering 500, 429 and too late, and the router killed mid-send.
//! - [`config`]: invalid configuration of every kind: all problems at once, exit 64, nothing
//!   started.
//!
//! `EARSHOT_CHAOS_MENTIONS` changes the number of mentions of scenarios 1 and 2 (default
//! 100,000).

mod broker;
mod channels;
mod config;
mod harness;
mod poison;
mod postgres;

use std::time::{Duration, Instant};

use earshot_tests::*;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_service_in_turn_loses_nothing() {
    run_scenario(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_each_service_under_load_exits_in_time_and_loses_nothing() {
    run_scenario(Fault::Terminate).await;
}

async fn run_scenario(fault: Fault) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count = env_count("EARSHOT_CHAOS_MENTIONS", 100_000);
    let (_webhook, received, base) = webhook_and_base().await;
    let (postgres_url, _schema) = fresh_schema("chaos").await;
    let run = Run::new(&base, &kafka_bootstrap(), "", &postgres_url);
    let mut fleet = run.fleet();
    for service in SERVICES {
        fleet.start(service);
    }
    wait_for_port(run.ingest, "the ingest endpoint").await;

    // Each service is hit twice, one at a time, 2.5 s apart; the posting is paced to last at
    // least as long, so that every fault lands in the middle of the load.
    let schedule: Vec<&'static str> = SERVICES.iter().chain(SERVICES.iter()).copied().collect();
    let interval = Duration::from_millis(2_500);
    let (lines, expected_alerts) = scenario_mentions(count, &run.run);
    let posting = interval * (schedule.len() as u32 + 1);
    let ingest = run.ingest;
    let poster =
        tokio::spawn(async move { post_until_acknowledged(ingest, &lines, 500, posting).await });

    let mut faults = 0;
    let mut slow_exits = Vec::new();
    for service in schedule {
        tokio::time::sleep(interval).await;
        let exit = fleet.stop(service, fault);
        faults += 1;
        if fault == Fault::Terminate {
            match exit {
                Some((code, took)) if code == Some(0) && took < Duration::from_secs(30) => {}
                other => slow_exits.push(format!("{service}: {other:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        fleet.start(service);
    }
    let acknowledged = poster.await.unwrap();
    let last_acknowledged = Instant::now();

    let catch_up = wait_for_mentions(
        &postgres_url,
        acknowledged.len(),
        last_acknowledged,
        Duration::from_secs(300),
    )
    .await;
    // One snapshot for every count, so that rows still arriving cannot skew one against another.
    let (stored, distinct, missing) = stored_rows(&postgres_url, &acknowledged).await;
    let (alerts, notifications) = webhook_alerts(&received, expected_alerts).await;
    fleet.stop_all();

    let passed = faults == 8
        && acknowledged.len() == count
        && missing.is_empty()
        && stored == distinct
        && alerts == expected_alerts
        && slow_exits.is_empty();
    let (id, scenario, must_hold) = match fault {
        Fault::Kill => (
            "1-kill-9",
            "kill -9 of each service in turn",
            "missing 0, no duplicate rows, every expected alert delivered at least once",
        ),
        Fault::Terminate => (
            "2-sigterm",
            "SIGTERM of each service in turn under load",
            "each exits 0 within 30 s; missing 0, no duplicate rows, every expected alert delivered",
        ),
    };
    let exits = match fault {
        Fault::Kill => String::new(),
        Fault::Terminate if slow_exits.is_empty() => "every exit clean and in time, ".into(),
        Fault::Terminate => format!("late or failed exits {slow_exits:?}, "),
    };
    ScenarioResult {
        id,
        scenario,
        must_hold,
        size: format!("{} mentions, {faults} faults", thousands(count)),
        result: format!(
            "{exits}missing {}, duplicate rows {}, alerts {}/{}, {} duplicate notifications, \
             caught up {:.1} s after the last acknowledgement",
            missing.len(),
            stored - distinct,
            thousands(alerts),
            thousands(expected_alerts),
            notifications - alerts,
            catch_up.as_secs_f64()
        ),
    }
    .write(passed);

    let logs = run.dir.display(); // kept when an assertion fails
    assert_eq!(faults, 8, "every service was hit twice; logs in {logs}");
    assert_eq!(
        acknowledged.len(),
        count,
        "the poster retries until every mention is acknowledged"
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {:?}; logs in {logs}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(stored, distinct, "no mention stored twice");
    assert_eq!(
        alerts, expected_alerts,
        "every expected alert delivered at least once"
    );
    assert!(
        slow_exits.is_empty(),
        "services that did not exit 0 in time on SIGTERM: {slow_exits:?}"
    );
    run.clean_up();
}
