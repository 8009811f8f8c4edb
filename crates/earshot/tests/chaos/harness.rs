//! What every scenario of the reliability suite shares: the services as `earshot` processes
//! on one configuration file, the poster that retries until the collector acknowledges, the
//! checker's queries, the one-at-a-time lock, and the result each scenario writes for the
//! RELIABILITY.md table (`scripts/chaos`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use earshot_tests::*;

pub const SERVICES: [&str; 4] = ["collector", "enricher", "router", "sink"];

/// The scenarios run one at a time: each loads the machine's cores as a whole deployment would.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `name` from the environment, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One run's files and names: the configuration the processes share, their logs.
pub struct Run {
    pub run: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ingest: u16,
}

impl Run {
    /// Writes the configuration: `base` (the telemetry, collector, enricher and router
    /// sections, as [`scenario_config_yaml`] gives them) with the ingest port set, this run's
    /// topics and groups on `kafka`, `kafka_extra` lines under `kafka:`, and the sink on
    /// `postgres_url`.
    pub fn new(base: &str, kafka: &str, kafka_extra: &str, postgres_url: &str) -> Run {
        let run = unique("chaos");
        let ingest = free_port();
        let dir = std::env::temp_dir().join(&run);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("earshot.yaml");
        let scenario = base.replace(
            "  http:\n    listen: \"127.0.0.1:0\"",
            &format!("  http:\n    listen: \"127.0.0.1:{ingest}\""),
        );
        assert!(
            scenario.contains(&format!(":{ingest}\"")),
            "the ingest port is set"
        );
        let yaml = format!(
            r#"{scenario}
kafka:
  bootstrap_servers: "{kafka}"
  group_prefix: "{run}"
{kafka_extra}
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "{run}.deadletter"
  checkpoints: "{run}.checkpoints"
  source_health: "{run}.source-health"
sink:
  postgres:
    url: "{postgres_url}"
"#
        );
        std::fs::write(&config, yaml).unwrap();
        Run {
            run,
            dir,
            config,
            ingest,
        }
    }

    /// The topic names of this run.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.run)
    }

    pub fn fleet(&self) -> Fleet {
        Fleet {
            config: self.config.clone(),
            dir: self.dir.clone(),
            children: HashMap::new(),
            telemetry: SERVICES.iter().map(|s| (*s, free_port())).collect(),
        }
    }

    /// Removes the logs (called once every assertion held).
    pub fn clean_up(&self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    Kill,
    Terminate,
}

/// The services as child processes, restarted by name; each serves its telemetry on a port
/// of its own (`EARSHOT_TELEMETRY__LISTEN`).
pub struct Fleet {
    config: PathBuf,
    dir: PathBuf,
    children: HashMap<&'static str, Child>,
    pub telemetry: HashMap<&'static str, u16>,
}

impl Fleet {
    pub fn start(&mut self, service: &'static str) {
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
            .env(
                "EARSHOT_TELEMETRY__LISTEN",
                format!("127.0.0.1:{}", self.telemetry[service]),
            )
            .env("EARSHOT_CHAOS_PAGERDUTY_KEY", PAGERDUTY_ROUTING_KEY)
            .env_remove("EARSHOT_CONFIG")
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .spawn()
            .expect("the earshot binary starts");
        self.children.insert(service, child);
    }

    /// The process id of a running service.
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.children.get(service).map(|c| c.id())
    }

    /// The services that exited by themselves, with their status.
    pub fn exited(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .filter_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name}: {status}")),
                _ => None,
            })
            .collect()
    }

    /// What each service says of itself, for a failure message: its exit status if it exited,
    /// else its `/readyz` answer; and the last lines of its log.
    pub async fn diagnose(&mut self) -> String {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut services: Vec<&'static str> = self.telemetry.keys().copied().collect();
        services.sort();
        let mut report = String::new();
        for service in services {
            let state = match self.children.get_mut(service).map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => format!("exited: {status}"),
                None => "not running".to_owned(),
                _ => match client
                    .get(format!(
                        "http://127.0.0.1:{}/readyz",
                        self.telemetry[service]
                    ))
                    .send()
                    .await
                {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(e) => format!("/readyz unanswered: {e}"),
                },
            };
            let log = std::fs::read_to_string(self.dir.join(format!("{service}.err")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
            report.push_str(&format!("{service}: {}\n    {tail}\n", state.trim()));
        }
        report
    }

    /// Stops a service with the fault; for SIGTERM, its exit code and how long it took.
    pub fn stop(&mut self, service: &str, fault: Fault) -> Option<(Option<i32>, Duration)> {
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

    pub fn stop_all(&mut self) {
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

/// The routing key the PagerDuty receivers of the scenarios read from the environment.
pub const PAGERDUTY_ROUTING_KEY: &str = "R0UT1NGKEY0123456789ABCDEFGHIJKL";

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_for_port(port: u16, what: &str) {
    wait_until(Duration::from_secs(90), what, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

/// Posts every line, retrying a batch until the collector acknowledges it (202): a batch whose
/// answer is lost may be written twice, which the stable mention id makes harmless. Spreads
/// the batches over at least `spread`. Returns the native ids the collector acknowledged.
pub async fn post_until_acknowledged(
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
pub async fn stored_rows(postgres_url: &str, acknowledged: &[String]) -> (i64, i64, Vec<String>) {
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

/// Waits (up to `deadline` after `since`) until PostgreSQL holds `count` mentions; returns how
/// long after `since` that was.
pub async fn wait_for_mentions(
    postgres_url: &str,
    count: usize,
    since: Instant,
    deadline: Duration,
) -> Duration {
    while query_count(postgres_url, "SELECT count(*) FROM mentions").await < count as i64 {
        if since.elapsed() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    since.elapsed()
}

/// The webhook receiver's alerts and total notifications, once it saw `expected` alerts (or a
/// minute passed).
pub async fn webhook_alerts(
    received: &std::sync::Arc<std::sync::Mutex<Received>>,
    expected: usize,
) -> (usize, usize) {
    let started = Instant::now();
    while received.lock().unwrap().by_alert.len() < expected
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = received.lock().unwrap();
    (
        received.by_alert.len(),
        received.by_alert.values().sum::<usize>(),
    )
}

/// A line of the RELIABILITY.md table: each scenario writes its own as JSON into
/// `EARSHOT_CHAOS_RESULTS` (default `target/tmp/chaos-results`), and `scripts/chaos`
/// rewrites the table from them.
pub struct ScenarioResult<'a> {
    /// Sort key and file name (`1-kill-9`).
    pub id: &'a str,
    pub scenario: &'a str,
    pub must_hold: &'a str,
    /// The size of the run (`100,000 mentions, 8 faults`).
    pub size: String,
    /// What the checker found.
    pub result: String,
}

impl ScenarioResult<'_> {
    /// Writes the result; `passed` says whether every assertion held (the table shows
    /// failures too).
    pub fn write(&self, passed: bool) {
        let dir = std::env::var_os("EARSHOT_CHAOS_RESULTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos-results"));
        std::fs::create_dir_all(&dir).unwrap();
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let line = serde_json::json!({
            "id": self.id,
            "scenario": self.scenario,
            "must_hold": self.must_hold,
            "size": self.size,
            "result": self.result,
            "passed": passed,
            "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
            "load_average": load,
            "cores": cores,
        });
        std::fs::write(
            dir.join(format!("{}.json", self.id)),
            serde_json::to_string_pretty(&line).unwrap(),
        )
        .unwrap();
        println!("chaos {}: {}", self.id, self.result);
    }
}

/// A thousands separator for the figures of the table.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The webhook receiver and the usual base configuration with one route to it.
pub async fn webhook_and_base() -> (
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<Received>>,
    String,
) {
    let (webhook, received) = webhook_receiver().await;
    (webhook, received, scenario_config_yaml(webhook))
}
