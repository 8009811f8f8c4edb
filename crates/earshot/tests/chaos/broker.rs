//! Scenario 3: the Kafka broker restarted in the middle of a run. The four services run
//! against a broker of this test's own (`scripts/kafka` on free ports and its own directory,
//! never the shared one), which is stopped (SIGTERM, as an orchestrator stops it) while
//! mentions are posted, and started again 5 s later from the same data directory. Every
//! mention the collector acknowledged must reach PostgreSQL, no row twice, every expected
//! alert delivered; the services' readiness must fail during the outage and recover.
//!
//! `EARSHOT_CHAOS_BROKER_MENTIONS` sets the number of mentions (default 30,000, posted over
//! 20 s; a single-node restart on a loaded 2-core machine takes 10 to 30 s).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use earshot_tests::*;

use crate::harness::*;

/// A single-node broker of this test's own, stopped and removed when the test ends.
pub struct PrivateBroker {
    ports: [u16; 2],
    dir: PathBuf,
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        let ports = [free_port(), free_port()];
        let dir = std::env::temp_dir().join(format!(
            "earshot-kafka-chaos-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let broker = PrivateBroker { ports, dir };
        broker.up();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0])
    }

    fn script(&self, action: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka");
        let mut command = Command::new(script);
        command
            .arg(action)
            // The shared broker's address must not short-circuit the script.
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env("EARSHOT_KAFKA_PORT", self.ports[0].to_string())
            .env("EARSHOT_KAFKA_CONTROLLER_PORT", self.ports[1].to_string())
            .env("EARSHOT_KAFKA_DIR", &self.dir);
        command
    }

    /// Starts the broker (again) and waits until it answers.
    pub fn up(&self) {
        let output = self.script("start").output().expect("scripts/kafka runs");
        assert!(
            output.status.success(),
            "scripts/kafka start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the broker gracefully (SIGTERM; the script kills it after 30 s).
    pub fn down(&self) {
        let output = self.script("stop").output().expect("scripts/kafka runs");
        assert!(output.status.success(), "scripts/kafka stop failed");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `/readyz` of the service on `port` answers 200.
async fn ready(client: &reqwest::Client, port: u16) -> bool {
    client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_run_loses_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count = env_count("EARSHOT_CHAOS_BROKER_MENTIONS", 30_000);
    let broker = tokio::task::spawn_blocking(PrivateBroker::start)
        .await
        .unwrap();
    let (_webhook, received, base) = webhook_and_base().await;
    let (postgres_url, _schema) = fresh_schema("chaos").await;
    let run = Run::new(&base, &broker.bootstrap(), "", &postgres_url);
    let mut fleet = run.fleet();
    for service in SERVICES {
        fleet.start(service);
    }
    wait_for_port(run.ingest, "the ingest endpoint").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let ports = fleet.telemetry.clone();
    // A fresh broker on a loaded machine: the first group joins and topic leaders take a while.
    let started = Instant::now();
    loop {
        let mut all = true;
        for port in ports.values() {
            all &= ready(&client, *port).await;
        }
        if all {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "timed out after 180 s waiting for every service ready; the services:\n{}",
            fleet.diagnose().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let spread = Duration::from_secs(20);
    let (lines, expected_alerts) = scenario_mentions(count, &run.run);
    let ingest = run.ingest;
    let poster =
        tokio::spawn(async move { post_until_acknowledged(ingest, &lines, 500, spread).await });

    // Readiness of every service, sampled through the outage.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (client, ports, watching) = (client.clone(), ports.clone(), watching.clone());
        tokio::spawn(async move {
            let mut unready: std::collections::HashSet<&'static str> = Default::default();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                for (service, port) in &ports {
                    if !ready(&client, *port).await {
                        unready.insert(service);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            unready
        })
    };

    tokio::time::sleep(Duration::from_secs(7)).await;
    let stopping = Instant::now();
    let broker = tokio::task::spawn_blocking(move || {
        broker.down();
        let stopped = stopping.elapsed();
        std::thread::sleep(Duration::from_secs(5));
        broker.up();
        (broker, stopped)
    });
    let (broker, stop_took) = broker.await.unwrap();
    let outage = stopping.elapsed();
    let acknowledged = poster.await.unwrap();
    let last_acknowledged = Instant::now();

    let catch_up = wait_for_mentions(
        &postgres_url,
        acknowledged.len(),
        last_acknowledged,
        Duration::from_secs(240),
    )
    .await;
    let (stored, distinct, missing) = stored_rows(&postgres_url, &acknowledged).await;
    let (alerts, notifications) = webhook_alerts(&received, expected_alerts).await;
    let recovered = {
        let started = Instant::now();
        loop {
            let mut all = true;
            for port in ports.values() {
                all &= ready(&client, *port).await;
            }
            if all || started.elapsed() > Duration::from_secs(60) {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let unready = watcher.await.unwrap();
    let exited = fleet.exited();
    let diagnosis = if recovered && exited.is_empty() {
        String::new()
    } else {
        fleet.diagnose().await
    };
    fleet.stop_all();
    drop(broker);

    let passed = acknowledged.len() == count
        && missing.is_empty()
        && stored == distinct
        && alerts == expected_alerts
        && !unready.is_empty()
        && recovered
        && exited.is_empty();
    let mut unready: Vec<&str> = unready.into_iter().collect();
    unready.sort();
    ScenarioResult {
        id: "3-broker-restart",
        scenario: "Kafka broker restart in the middle of a run",
        must_hold: "missing 0, no duplicate rows, every expected alert delivered; readiness fails during the outage and recovers",
        size: format!("{} mentions, 1 restart", thousands(count)),
        result: format!(
            "missing {}, duplicate rows {}, alerts {}/{}, {} duplicate notifications, broker down {:.1} s (stop took {:.1} s), not ready meanwhile: {}, all ready again: {}, services exited by themselves: {}, caught up {:.1} s after the last acknowledgement",
            missing.len(),
            stored - distinct,
            thousands(alerts),
            thousands(expected_alerts),
            notifications - alerts,
            outage.as_secs_f64(),
            stop_took.as_secs_f64(),
            unready.join(", "),
            if recovered { "yes" } else { "no" },
            exited.len(),
            catch_up.as_secs_f64()
        ),
    }
    .write(passed);

    let logs = run.dir.display();
    assert_eq!(acknowledged.len(), count);
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {:?}; logs in {logs}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(stored, distinct, "no mention stored twice");
    assert_eq!(alerts, expected_alerts, "every expected alert delivered");
    assert!(
        !unready.is_empty(),
        "no service reported itself not ready while the broker was down"
    );
    assert!(
        recovered,
        "every service ready again after the restart; the services:\n{diagnosis}"
    );
    assert!(
        exited.is_empty(),
        "services exited: {exited:?}; logs in {logs}; the services:\n{diagnosis}"
    );
    run.clean_up();
}
