//! The reliability suite's process faults: the four services as four `earshot` processes
//! against real Kafka and real PostgreSQL, 100,000 mentions posted to the ingest endpoint
//! while the services are killed in turn, and a checker that compares what the collector
//! acknowledged with what reached PostgreSQL and the webhook.
//!
//! - `kill_9_of_each_service_in_turn_loses_nothing`: SIGKILL of one service every 2.5 s, each
//!   service twice, restarted half a second later. Missing 0; no duplicate rows; every expected alert delivered.
//! - `sigterm_of_each_service_under_load_exits_in_time_and_loses_nothing`: SIGTERM instead;
//!   each service must exit 0 within its drain budget.
//!
//! `EARSHOT_CHAOS_MENTIONS` changes the number of mentions (default 100,000). Each test prints
//! a one-line report (mentions, kills, missing, duplicates, duplicate notifications,
//! catch-up time after the last acknowledgement).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use earshot_tests::*;

const SERVICES: [&str; 4] = ["collector", "enricher", "router", "sink"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Kill,
    Terminate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_service_in_turn_loses_nothing() {
    run_scenario(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_each_service_under_load_exits_in_time_and_loses_nothing() {
    run_scenario(Fault::Terminate).await;
}

/// The scenarios run one at a time: each loads the machine's cores as a whole deployment would.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_scenario(fault: Fault) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count: usize = std::env::var("EARSHOT_CHAOS_MENTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (webhook, received) = webhook_receiver().await;
    let (postgres_url, _schema) = fresh_schema("chaos").await;
    let run = unique("chaos");
    let ingest = free_port();
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("earshot.yaml");
    std::fs::write(&config, config_yaml(webhook, ingest, &postgres_url, &run)).unwrap();

    let mut fleet = Fleet {
        config,
        dir: dir.clone(),
        children: Default::default(),
    };
    for service in SERVICES {
        fleet.start(service);
    }
    wait_for_ingest(ingest).await;

    // Each service is hit twice, one at a time, 2.5 s apart; the posting is paced to last at
    // least as long, so that every fault lands in the middle of the load.
    let schedule: Vec<&'static str> = SERVICES.iter().chain(SERVICES.iter()).copied().collect();
    let interval = Duration::from_millis(2_500);
    let (lines, expected_alerts) = scenario_mentions(count, &run);
    let posting = interval * (schedule.len() as u32 + 1);
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

    let mentions_in_postgres = || query_count(&postgres_url, "SELECT count(*) FROM mentions");
    let deadline = Duration::from_secs(300);
    while mentions_in_postgres().await < acknowledged.len() as i64 {
        if last_acknowledged.elapsed() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let catch_up = last_acknowledged.elapsed();
    // One snapshot for every count, so that rows still arriving cannot skew one against another.
    let (stored, distinct, missing) = stored_rows(&postgres_url, &acknowledged).await;
    wait_until(
        Duration::from_secs(60),
        "every expected alert at the webhook",
        || {
            let received = received.clone();
            async move { received.lock().unwrap().by_alert.len() >= expected_alerts }
        },
    )
    .await;
    let (alerts, notifications) = {
        let received = received.lock().unwrap();
        (
            received.by_alert.len(),
            received.by_alert.values().sum::<usize>(),
        )
    };
    fleet.stop_all();

    println!(
        "chaos {fault:?}: {count} mentions, {faults} faults, acknowledged {}, stored {stored}, \
         missing {}, duplicate rows {}, alerts {alerts}/{expected_alerts}, duplicate notifications {}, \
         catch-up {:.1} s after the last acknowledgement",
        acknowledged.len(),
        missing.len(),
        stored - distinct,
        notifications - alerts,
        catch_up.as_secs_f64()
    );
    let logs = dir.display(); // kept when an assertion fails
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
    std::fs::remove_dir_all(&dir).ok();
}

fn config_yaml(webhook: SocketAddr, ingest: u16, postgres_url: &str, run: &str) -> String {
    let scenario = scenario_config_yaml(webhook).replace(
        "  http:\n    listen: \"127.0.0.1:0\"",
        &format!("  http:\n    listen: \"127.0.0.1:{ingest}\""),
    );
    assert!(
        scenario.contains(&format!(":{ingest}\"")),
        "the ingest port is set"
    );
    format!(
        r#"{scenario}
kafka:
  bootstrap_servers: "{kafka}"
  group_prefix: "{run}"
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "{run}.deadletter"
sink:
  postgres:
    url: "{postgres_url}"
"#,
        kafka = kafka_bootstrap(),
    )
}

/// The four services as child processes, restarted by name.
struct Fleet {
    config: PathBuf,
    dir: PathBuf,
    children: std::collections::HashMap<&'static str, Child>,
}

impl Fleet {
    fn start(&mut self, service: &'static str) {
        let log = |suffix: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{service}.{suffix}")))
                .unwrap()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_earshot"))
            .arg(service)
            .arg("--config")
            .arg(&self.config)
            .env("EARSHOT_E2E_TOKEN", TOKEN)
            .env_remove("EARSHOT_CONFIG")
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .spawn()
            .expect("the earshot binary starts");
        self.children.insert(service, child);
    }

    /// Stops a service with the fault; for SIGTERM, its exit code and how long it took.
    fn stop(&mut self, service: &str, fault: Fault) -> Option<(Option<i32>, Duration)> {
        let mut child = self.children.remove(service)?;
        let started = Instant::now();
        match fault {
            Fault::Kill => {
                child.kill().ok();
                child.wait().ok();
                None
            }
            Fault::Terminate => {
                Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status()
                    .ok();
                let status = wait_with_timeout(&mut child, Duration::from_secs(60));
                Some((status.and_then(|s| s.code()), started.elapsed()))
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, mut child) in self.children.drain() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_ingest(port: u16) {
    wait_until(
        Duration::from_secs(60),
        "the ingest endpoint",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
}

/// Posts every line, retrying a batch until the collector acknowledges it (202): a batch whose
/// answer is lost may be written twice, which the stable mention id makes harmless. Spreads
/// the batches over at least `spread`. Returns the native ids the collector acknowledged.
async fn post_until_acknowledged(
    port: u16,
    lines: &[String],
    batch: usize,
    spread: Duration,
) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut acknowledged = Vec::with_capacity(lines.len());
    let batches = lines.len().div_ceil(batch) as u32;
    let started = tokio::time::Instant::now();
    for (index, chunk) in lines.chunks(batch).enumerate() {
        tokio::time::sleep_until(started + spread * index as u32 / batches).await;
        loop {
            let response = client
                .post(format!("http://127.0.0.1:{port}/v1/mentions"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/x-ndjson")
                .body(chunk.join("\n"))
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 202 => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        for line in chunk {
            let mention: serde_json::Value = serde_json::from_str(line).unwrap();
            acknowledged.push(mention["native_id"].as_str().unwrap().to_owned());
        }
    }
    acknowledged
}

/// From one read of the mentions table: its rows, its distinct native ids, and the
/// acknowledged native ids that are not among them.
async fn stored_rows(postgres_url: &str, acknowledged: &[String]) -> (i64, i64, Vec<String>) {
    let (client, connection) = tokio_postgres::connect(postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows: Vec<String> = client
        .query("SELECT native_id FROM mentions", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let distinct: HashSet<&String> = rows.iter().collect();
    let missing = acknowledged
        .iter()
        .filter(|id| !distinct.contains(id))
        .cloned()
        .collect();
    (rows.len() as i64, distinct.len() as i64, missing)
}
