//! Scenario 7: invalid configuration of every kind. Each process (`collector`, `enricher`,
//! `router`, `sink`, `run`) and `check-config` is started on files with one problem of each
//! kind (an unknown key, a wrong type, a value out of range, an invalid topic name, a
//! duplicate name, a query that does not parse, a reference to nothing, a bad URL, an unknown
//! time zone, missing secrets), on a file that is not YAML, on a missing file and under an
//! environment variable of the wrong type. Each must exit 64 within 10 s, list every problem
//! of its own at once (the count in the heading is the number of lines), and start nothing:
//! its telemetry and ingest ports never answer, and no topic or consumer group of the run
//! exists on the broker afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use earshot_tests::*;

use crate::harness::*;

/// An environment variable no process of the suite sets.
const UNSET: &str = "EARSHOT_CHAOS_SECRET_NEVER_SET";

/// A file with one problem of each kind, each where it hides no other (a wrong type makes its
/// whole section fall back to defaults, so it sits in a section of its own), and one missing
/// secret per process.
fn every_kind(run: &str, kafka: &str, telemetry: u16, ingest: u16) -> String {
    format!(
        r#"
kafka:
  bootstrap_servers: "{kafka}"
  group_prefix: "{run}"
  colour: blue
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: earshot
  secret_properties_env:
    sasl.password: {UNSET}
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "bad topic!"
  checkpoints: "{run}.checkpoints"
  source_health: "{run}.source-health"
  router_state: "{run}.router-state"
telemetry:
  listen: "127.0.0.1:{telemetry}"
  stall_timeout_ms: "soon"
collector:
  http:
    listen: "127.0.0.1:{ingest}"
    token_env: {UNSET}
enricher:
  batch_size: 0
  watchlists:
    - name: acme
      query: 'acme AND (refund OR "money back"'
    - name: acme
      terms: ["Acme"]
router:
  receivers:
    - name: hook
      webhook:
        url: "ftp://hooks.example.com/earshot"
    - name: pager
      pagerduty:
        routing_key_env: {UNSET}
  time_intervals:
    - name: office
      time_zone: Europe/Atlantis
      weekdays: ["monday:friday"]
  routes:
    - name: acme
      watchlist: nope
      receiver: pager
      active_time_intervals: [office]
sink:
  postgres:
    url_env: {UNSET}
"#
    )
}

/// The structural problems of [`every_kind`], which every process reports.
const STRUCTURAL: [&str; 9] = [
    "kafka.colour: unknown key",
    "topics.deadletter: \"bad topic!\" is not a valid Kafka topic name",
    "telemetry.stall_timeout_ms: invalid type",
    "enricher.watchlists[0].query: ",
    "enricher.watchlists[1].name: duplicate watchlist name \"acme\"",
    "enricher.batch_size: must be from 1 to 10000",
    "router.receivers[0].webhook.url: scheme \"ftp\" is not http or https",
    "router.time_intervals[0].time_zone: \"Europe/Atlantis\" is not an IANA time zone",
    "router.routes[0].watchlist: no watchlist named \"nope\"",
];

/// The missing secrets of [`every_kind`] per process.
fn every_kind_secrets(process: &str) -> Vec<&'static str> {
    let kafka = "kafka.secret_properties_env.sasl.password: environment variable";
    match process {
        "collector" => vec![kafka, "collector.http.token_env: environment variable"],
        "enricher" => vec![kafka],
        "router" => vec![
            kafka,
            "router.receivers[1].pagerduty.routing_key_env: environment variable",
        ],
        "sink" => vec![kafka, "sink.postgres.url_env: environment variable"],
        // The embedded mode reads no Kafka secret.
        "run" => vec![
            "collector.http.token_env: environment variable",
            "router.receivers[1].pagerduty.routing_key_env: environment variable",
            "sink.postgres.url_env: environment variable",
        ],
        other => panic!("no process {other}"),
    }
}

/// A valid file whose every secret is missing: each process must name exactly its own.
fn secrets_only(run: &str, kafka: &str, telemetry: u16, ingest: u16) -> String {
    format!(
        r#"
kafka:
  bootstrap_servers: "{kafka}"
  group_prefix: "{run}"
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: earshot
  secret_properties_file:
    sasl.password: "/nonexistent/{run}/kafka-password"
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "{run}.deadletter"
  checkpoints: "{run}.checkpoints"
  source_health: "{run}.source-health"
  router_state: "{run}.router-state"
telemetry:
  listen: "127.0.0.1:{telemetry}"
collector:
  http:
    listen: "127.0.0.1:{ingest}"
    token_env: {UNSET}
enricher:
  watchlists:
    - name: acme
      terms: ["Acme"]
router:
  receivers:
    - name: slack
      slack:
        url_env: {UNSET}
    - name: pager
      pagerduty:
        routing_key_file: "/nonexistent/{run}/pagerduty-key"
  api:
    token_env: {UNSET}
  routes:
    - name: acme
      watchlist: acme
      receiver: slack
sink:
  postgres:
    url_env: {UNSET}
"#
    )
}

/// The missing secrets of [`secrets_only`] per process.
fn own_secrets(process: &str) -> Vec<&'static str> {
    let kafka = "kafka.secret_properties_file.sasl.password: cannot read";
    let collector = "collector.http.token_env: environment variable";
    let router = [
        "router.receivers[0].slack.url_env: environment variable",
        "router.receivers[1].pagerduty.routing_key_file: cannot read",
        "router.api.token_env: environment variable",
    ];
    let sink = "sink.postgres.url_env: environment variable";
    match process {
        "collector" => vec![kafka, collector],
        "enricher" => vec![kafka],
        "router" => [&[kafka][..], &router[..]].concat(),
        "sink" => vec![kafka, sink],
        "run" => [&[collector][..], &router[..], &[sink][..]].concat(),
        other => panic!("no process {other}"),
    }
}

/// One of the inputs every process is refused on: what is wrong with it, the configuration
/// file, the environment, and the problems expected.
type Input<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Vec<&'a str>);

/// One start of `earshot` that must be refused.
struct Refusal {
    what: String,
    stderr: String,
    code: Option<i32>,
    took: Duration,
    /// A port of the process's that answered while it ran.
    port_answered: Option<u16>,
}

/// Starts `earshot args…` and watches `ports` until it exits (10 s at most).
fn refused(what: String, args: &[&str], env: &[(&str, &str)], ports: &[u16]) -> Refusal {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("EARSHOT_CONFIG")
        .env_remove(UNSET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the earshot binary starts");
    let mut port_answered = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        for port in ports {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(20)).is_ok() {
                port_answered.get_or_insert(*port);
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let output = child.wait_with_output().unwrap();
    Refusal {
        what,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: status.and_then(|s| s.code()),
        took,
        port_answered,
    }
}

impl Refusal {
    /// The problems listed under the heading.
    fn problems(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|line| line.strip_prefix("  - "))
            .collect()
    }

    /// What is wrong with this refusal, given the problems it must list (each a prefix of one
    /// line; an empty prefix stands for a line this check does not name).
    fn faults(&self, expected: &[&str]) -> Vec<String> {
        let mut faults = Vec::new();
        if self.code != Some(64) {
            faults.push(format!(
                "{}: exit {:?} after {:?}, not 64",
                self.what, self.code, self.took
            ));
        }
        if let Some(port) = self.port_answered {
            faults.push(format!("{}: port {port} answered", self.what));
        }
        let problems = self.problems();
        let heading = format!(
            "invalid configuration ({} problem{}):",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        if !self.stderr.contains(&heading) {
            faults.push(format!("{}: no heading {heading:?}", self.what));
        }
        for want in expected.iter().filter(|w| !w.is_empty()) {
            if !problems.iter().any(|p| p.starts_with(want)) {
                faults.push(format!("{}: {want:?} is not listed", self.what));
            }
        }
        if problems.len() != expected.len() {
            faults.push(format!(
                "{}: {} problems listed, {} expected",
                self.what,
                problems.len(),
                expected.len()
            ));
        }
        if !faults.is_empty() {
            faults.push(format!("{} stderr:\n{}", self.what, self.stderr));
        }
        faults
    }
}

/// Topics and consumer groups on the broker whose names start with `run`.
fn on_broker(kafka: &str, run: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .expect("a metadata client");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .expect("the broker's metadata");
    let mut found: Vec<String> = metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(run))
        .map(|t| format!("topic {}", t.name()))
        .collect();
    let groups = consumer
        .fetch_group_list(None, timeout)
        .expect("the broker's groups");
    found.extend(
        groups
            .groups()
            .iter()
            .filter(|g| g.name().starts_with(run))
            .map(|g| format!("group {}", g.name())),
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_of_every_kind_is_reported_at_once_and_starts_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let kafka = kafka_bootstrap();
    let run = unique("chaos_config");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let (telemetry, ingest) = (free_port(), free_port());
    let ports = [telemetry, ingest];
    let telemetry_env = format!("127.0.0.1:{telemetry}");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let every = write(
        "every-kind.yaml",
        &every_kind(&run, &kafka, telemetry, ingest),
    );
    let secrets = write(
        "secrets-only.yaml",
        &secrets_only(&run, &kafka, telemetry, ingest),
    );
    let not_yaml = write(
        "not-yaml.yaml",
        "kafka:\n  bootstrap_servers: [\"a\"\n  group_prefix: x\n",
    );
    let missing = dir.join("missing.yaml").to_str().unwrap().to_owned();

    let processes = ["collector", "enricher", "router", "sink", "run"];
    let mut refusals = Vec::new();
    let mut faults = Vec::new();
    let mut check = |refusal: Refusal, expected: &[&str]| {
        faults.extend(refusal.faults(expected));
        refusals.push(refusal);
    };

    // Every kind at once: each process lists the structural problems and its own secrets.
    for process in processes {
        let mut expected = STRUCTURAL.to_vec();
        expected.extend(every_kind_secrets(process));
        let r = refused(
            format!("{process}, every kind"),
            &[process, "--config", &every],
            &[],
            &ports,
        );
        check(r, &expected);
    }
    check(
        refused(
            "check-config, every kind".into(),
            &["check-config", &every],
            &[],
            &ports,
        ),
        &STRUCTURAL,
    );

    // A valid file with every secret missing: each process names exactly its own.
    for process in processes {
        let r = refused(
            format!("{process}, secrets missing"),
            &[process, "--config", &secrets],
            &[],
            &ports,
        );
        check(r, &own_secrets(process));
    }
    check(
        refused(
            "check-config --secrets-of router, secrets missing".into(),
            &["check-config", &secrets, "--secrets-of", "router"],
            &[],
            &ports,
        ),
        &own_secrets("router"),
    );

    // Not YAML, a missing file, an environment variable of the wrong type.
    let wrong_type = [
        ("EARSHOT_KAFKA__MAX_IN_FLIGHT", "lots"),
        ("EARSHOT_TELEMETRY__LISTEN", telemetry_env.as_str()),
    ];
    for process in processes {
        // The secrets are checked on the sections that parsed: Kafka's fell back to defaults.
        let mut wrong_type_expected = vec!["kafka.max_in_flight: invalid type"];
        wrong_type_expected.extend(
            own_secrets(process)
                .into_iter()
                .filter(|p| !p.starts_with("kafka.")),
        );
        let inputs: [Input<'_>; 3] = [
            ("not YAML", &not_yaml, &[], vec![&not_yaml]),
            ("missing file", &missing, &[], vec![&missing]),
            (
                "wrong type in the environment",
                &secrets,
                &wrong_type,
                wrong_type_expected,
            ),
        ];
        for (what, file, env, expected) in inputs {
            let r = refused(
                format!("{process}, {what}"),
                &[process, "--config", file],
                env,
                &ports,
            );
            check(r, &expected);
        }
    }

    // Nothing reached the broker.
    let leftovers = on_broker(&kafka, &run);
    if !leftovers.is_empty() {
        faults.push(format!("on the broker afterwards: {leftovers:?}"));
    }

    let starts = refusals.len();
    let refused_64 = refusals.iter().filter(|r| r.code == Some(64)).count();
    let problems: usize = refusals.iter().map(|r| r.problems().len()).sum();
    let slowest = refusals.iter().map(|r| r.took).max().unwrap_or_default();
    let answered = refusals
        .iter()
        .filter(|r| r.port_answered.is_some())
        .count();
    ScenarioResult {
        id: "7-config",
        scenario: "invalid configuration of every kind (unknown key, wrong type, out of range, \
                   bad topic name, duplicate name, query that does not parse, reference to \
                   nothing, bad URL, unknown time zone, missing secrets; not YAML; missing file; \
                   wrong type in the environment)",
        must_hold: "every problem reported at once, exit 64, nothing started (no port, topic or \
                    consumer group)",
        size: format!("{starts} starts of 5 processes and check-config on 5 kinds of input"),
        result: format!(
            "exit 64: {refused_64}/{starts}, {problems} problems listed, faults {}, ports \
             answered {answered}, topics or groups created {}, slowest refusal {} ms",
            faults.len(),
            leftovers.len(),
            slowest.as_millis()
        ),
    }
    .write(faults.is_empty());
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}
