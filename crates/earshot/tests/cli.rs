//! The `earshot` binary as an operator runs it: `check-config` reports every problem of a file
//! with its key path and exits 64, or prints the effective configuration; a service given an
//! invalid configuration exits 64 before starting anything; `sentiment` scores stdin line by
//! line.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A file with one problem of each kind, each in its own section so that none hides another.
const BAD_CONFIG: &str = r#"
kafka:
  bootstrap_servers: "127.0.0.1:9092"
  colour: blue
topics:
  raw: "bad topic!"
telemetry:
  stall_timeout_ms: "soon"
enricher:
  watchlists:
    - name: acme
      terms: ["Acme"]
router:
  receivers:
    - name: console
      console: true
  routes:
    - name: acme-reach
      watchlist: nope
      score: reach
      threshold: 1000
      receiver: console
"#;

const VALID_CONFIG: &str = r##"
kafka:
  bootstrap_servers: "broker-1:9092,broker-2:9092"
  max_in_flight: 500
enricher:
  watchlists:
    - name: acme
      terms: ["Acme", "#acme"]
router:
  receivers:
    - name: console
      console: true
  routes:
    - name: acme-reach
      watchlist: acme
      score: reach
      threshold: 1000
      receiver: console
"##;

#[test]
fn check_config_lists_every_problem_with_its_key_path_and_exits_64() {
    let file = temp_file("bad.yaml", BAD_CONFIG);
    let output = earshot(&["check-config", path_str(&file.path)], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(
        output.stdout.is_empty(),
        "no effective config is printed for an invalid file: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let expected = [
        "kafka.colour: unknown key",
        "topics.raw: \"bad topic!\" is not a valid Kafka topic name",
        "telemetry.stall_timeout_ms: invalid type",
        "router.routes[0].watchlist: no watchlist named \"nope\"",
    ];
    let problems: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- "))
        .collect();
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in stderr:\n{stderr}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "stderr:\n{stderr}");
    assert!(
        stderr.contains("invalid configuration (4 problems)"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn check_config_prints_the_effective_configuration_of_a_valid_file() {
    let file = temp_file("valid.yaml", VALID_CONFIG);
    // Environment variables are the top layer, over the file and the defaults.
    let output = earshot(
        &["check-config", path_str(&file.path)],
        &[("EARSHOT_KAFKA__GROUP_PREFIX", "from-env")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");

    let effective: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    // From the file.
    assert_eq!(
        effective["kafka"]["bootstrap_servers"],
        "broker-1:9092,broker-2:9092"
    );
    assert_eq!(effective["kafka"]["max_in_flight"], 500);
    assert_eq!(effective["enricher"]["watchlists"][0]["name"], "acme");
    assert_eq!(effective["router"]["routes"][0]["score"], "reach");
    // From the environment.
    assert_eq!(effective["kafka"]["group_prefix"], "from-env");
    // From the defaults.
    assert_eq!(effective["topics"]["raw"], "earshot.mentions.raw");
    assert_eq!(effective["router"]["delivery"]["max_attempts"], 6);
}

#[test]
fn check_config_of_a_missing_file_exits_64() {
    let missing = std::env::temp_dir().join(format!(
        "earshot-cli-{}-does-not-exist.yaml",
        std::process::id()
    ));
    let output = earshot(&["check-config", path_str(&missing)], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(
        stderr.contains("invalid configuration"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn a_service_with_an_invalid_config_exits_64_without_starting() {
    let file = temp_file("enricher-bad.yaml", BAD_CONFIG);
    let mut child = base_command(&[])
        .args(["enricher", "--config", path_str(&file.path)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the earshot binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "`earshot enricher` with an invalid config was still running after 10 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(64), "stderr:\n{stderr}");
    assert!(
        stderr.contains("kafka.colour: unknown key")
            && stderr.contains("router.routes[0].watchlist"),
        "the service prints the same problems as check-config; stderr:\n{stderr}"
    );
}

/// The configurations the project ships (the deployment example, the embedded demo, the
/// Kubernetes and Docker Compose configurations) stay valid as the code changes.
#[test]
fn the_shipped_configurations_are_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/earshot.example.yaml",
        "crates/earshot/src/demo.yaml",
        "deploy/kubernetes/base/earshot.yaml",
        "deploy/kubernetes/overlays/production/earshot.yaml",
        "deploy/compose/earshot.yaml",
    ] {
        let path = root.join(file);
        let output = earshot(&["check-config", path_str(&path)], &[]);
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// SIGTERM makes a service stop polling, drain, flush and commit, then exit 0, well within a
/// Kubernetes grace period. Against the real Kafka that scripts/test starts.
#[test]
fn a_service_exits_cleanly_on_sigterm() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
    );
    let run = format!("cli{}", uuid_like());
    let config = temp_file(
        "enricher.yaml",
        &format!(
            r#"
kafka:
  bootstrap_servers: "{bootstrap}"
  group_prefix: "{run}"
topics:
  raw: "{run}.raw"
  enriched: "{run}.enriched"
  alerts: "{run}.alerts"
  deadletter: "{run}.deadletter"
telemetry:
  listen: "127.0.0.1:0"
  log_level: "info"
enricher:
  watchlists:
    - name: acme
      terms: ["Acme"]
"#
        ),
    );
    let mut child = base_command(&[])
        .args(["enricher", "--config", path_str(&config.path)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the earshot binary starts");
    // Wait until it has joined its group: the log says so.
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let started = Instant::now();
    let mut log = String::new();
    while !log.contains("partitions assigned") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the enricher did not join its group:\n{log}"
        );
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "no exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    assert!(log.contains("shutdown signal received"), "{log}");
}

/// `earshot collect` prints what the configured sources yield as NDJSON on standard output,
/// here an Atom feed served on loopback, and publishes nothing (no Kafka is configured).
#[test]
fn collect_prints_what_the_sources_yield_as_ndjson() {
    const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Google Alert - acme</title>
<id>tag:google.com,2013:googlealerts/feed:7</id><updated>2026-11-23T09:00:00Z</updated>
<entry><id>tag:google.com,2013:googlealerts/feed:7:1</id><title type="html">&lt;b&gt;Acme&lt;/b&gt; kettles recalled</title>
<link href="https://news.example/acme-recall"/><published>2026-11-23T08:00:00Z</published>
<content type="html">Acme recalls 10,000 kettles</content></entry>
<entry><id>tag:google.com,2013:googlealerts/feed:7:2</id><title>Acme support praised</title>
<link href="https://blog.example/acme-support"/><published>2026-11-23T08:30:00Z</published></entry>
</feed>"#;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(async {
        let app = axum::Router::new().route(
            "/alerts/acme",
            axum::routing::get(|| async { ([("content-type", "application/atom+xml")], ATOM) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let config = temp_file(
        "collect.yaml",
        &format!(
            "kafka:\n  bootstrap_servers: \"127.0.0.1:1\"\ncollector:\n  sources:\n    rss:\n      - name: google-alerts-acme\n        url: \"http://{addr}/alerts/acme\"\n        interval_ms: 200\n"
        ),
    );
    let output = earshot(
        &[
            "collect",
            "--config",
            path_str(&config.path),
            "--seconds",
            "2",
        ],
        &[("EARSHOT_LOG", "warn")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "each entry once, though the feed was polled repeatedly"
    );
    assert_eq!(
        lines[0]["native_id"],
        "tag:google.com,2013:googlealerts/feed:7:2"
    );
    assert_eq!(
        lines[1]["text"],
        "Acme kettles recalled\n\nAcme recalls 10,000 kettles"
    );
    assert_eq!(lines[1]["source"]["kind"], "rss");
    assert_eq!(lines[1]["source"]["instance"], "google-alerts-acme");
    assert_eq!(lines[1]["url"], "https://news.example/acme-recall");
    drop(runtime);
}

/// Runs the binary to completion with `env` added to a clean `EARSHOT_` environment.
#[test]
fn sentiment_streams_scores_reports_bad_lines_and_exits_65() {
    use std::io::Write;
    let mut child = base_command(&[])
        .arg("sentiment")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the earshot binary runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"a1\tThe lamp is great!\n\xc3\x28 broken\nThe courier was NOT helpful at all :(\n",
        )
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    // Scores as vaderSentiment 3.3.2 prints them (scripts/vader-reference.py).
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "a1\t0.0000\t0.4060\t0.5940\t0.6588\n3\t0.4660\t0.5340\t0.0000\t-0.6407\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2: invalid UTF-8 at byte 1"),
        "{stderr}"
    );
    assert!(stderr.contains("2 lines scored, 1 rejected"), "{stderr}");
    assert_eq!(output.status.code(), Some(65));

    let clean = base_command(&[]).arg("sentiment").output().unwrap();
    assert_eq!(clean.status.code(), Some(0), "no input, nothing rejected");
    assert!(clean.stdout.is_empty());
}

fn earshot(args: &[&str], env: &[(&str, &str)]) -> Output {
    base_command(env)
        .args(args)
        .output()
        .expect("the earshot binary runs")
}

fn base_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_earshot"));
    // Whatever the developer's shell exports must not leak into the configuration under test.
    for (name, _) in std::env::vars() {
        if name.starts_with("EARSHOT_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.stdin(Stdio::null());
    command
}

/// A config file of its own under the temporary directory, removed on drop.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_file(name: &str, contents: &str) -> TempConfig {
    let dir = std::env::temp_dir().join(format!(
        "earshot-cli-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    TempConfig { dir, path }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn the_demo_run_then_report_over_its_parquet_files_agree() {
    let dir = std::env::temp_dir().join(format!(
        "earshot-cli-report-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // The demo writes its Parquet files under ./earshot-data.
    let run = base_command(&[])
        .arg("run")
        .current_dir(&dir)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{summary}");
    let matched = |watchlist: &str| -> u64 {
        summary
            .lines()
            .find_map(|l| l.strip_prefix(&format!("matched {watchlist}")))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count for {watchlist} in {summary}"))
    };

    let html = dir.join("report.html");
    let report = base_command(&[])
        .args(["report", "--parquet"])
        .arg(dir.join("earshot-data"))
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(
        report.status.success(),
        "{tables}{}",
        String::from_utf8_lossy(&report.stderr)
    );
    // The report counts each mention once per watchlist, as the enricher matched it.
    for watchlist in ["brewtide", "lumora", "parcelly"] {
        let row = tables
            .lines()
            .find(|l| l.starts_with(&format!("{watchlist} ")))
            .unwrap_or_else(|| panic!("no row for {watchlist} in {tables}"));
        let mentions: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(mentions, matched(watchlist), "{watchlist}: {row}");
    }
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("Mentions per hour") && html.contains("Share of voice"));

    // Neither source, or both: usage errors.
    let neither = earshot(&["report"], &[]);
    assert_eq!(neither.status.code(), Some(2));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let nothing = earshot(&["report", "--parquet", path_str(&empty)], &[]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no Parquet files"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sink_migrate_applies_the_schema_once_and_exits() {
    let base = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL",
    );
    let schema = format!(
        "cli_migrate_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let sql = |statement: &str| {
        let status = Command::new("psql")
            .args([
                base.as_str(),
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ])
            .status()
            .expect("psql runs");
        assert!(status.success(), "{statement}");
    };
    sql(&format!("CREATE SCHEMA {schema}"));
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    let env = [("EARSHOT_SINK__POSTGRES__URL", url.as_str())];

    let first = earshot(&["sink", "--migrate"], &env);
    let second = earshot(&["sink", "--migrate"], &env);
    sql(&format!("DROP SCHEMA {schema} CASCADE"));
    // Every shipped migration, then none.
    let every: Vec<i32> = earshot_sink::postgres::MIGRATIONS
        .iter()
        .map(|(version, _)| *version)
        .collect();
    for (output, expected) in [(&first, format!("{every:?}")), (&second, "[]".to_owned())] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("migrations applied: {expected}")),
            "{stdout}"
        );
    }
}

/// The project's own routing fixtures pass: every case reaches the receivers it expects.
#[test]
fn the_shipped_routing_fixtures_pass() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/earshot.example.routes.yaml",
        "crates/earshot/src/demo-routes.yaml",
    ] {
        let path = root.join(file);
        let output = earshot(&["test-routes", path_str(&path)], &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{file}:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(" 0 failed"), "{file}:\n{stdout}");
    }
}

/// A case that reaches other receivers than it expects fails the run (exit 1), and the
/// report shows the route path it took; an invalid configuration exits 64, an unreadable
/// fixture file 65.
#[test]
fn test_routes_prints_the_matched_path_and_fails_on_a_wrong_expectation() {
    let config = temp_file(
        "earshot.yaml",
        r#"
enricher:
  watchlists:
    - { name: acme, terms: ["Acme"] }
router:
  receivers:
    - { name: care, console: true }
    - { name: legal, console: true }
  routes:
    - name: acme
      watchlist: acme
      receiver: care
      routes:
        - name: acme-lawsuit
          matchers: ["intent = legal_threat"]
          receiver: legal
"#,
    );
    let fixtures = temp_file(
        "routes.yaml",
        r#"
tests:
  - name: a legal threat
    mention: { watchlist: acme, intent: legal_threat }
    expect: [legal]
  - name: wrongly expected to reach care
    mention: { watchlist: acme, intent: legal_threat }
    expect: [care]
  - name: wrongly expected to need review
    mention: { watchlist: acme, intent: legal_threat }
    expect: [legal]
    expect_review: [legal]
"#,
    );
    let output = earshot(
        &[
            "test-routes",
            path_str(&fixtures.path),
            "--config",
            path_str(&config.path),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let expected = "\
ok   a legal threat
       acme > acme-lawsuit -> legal
FAIL wrongly expected to reach care
       acme > acme-lawsuit -> legal
       expected receivers [\"care\"], got [\"legal\"]
FAIL wrongly expected to need review
       acme > acme-lawsuit -> legal
       expected review topics [\"legal\"], got []
1 passed, 2 failed
";
    assert_eq!(stdout, expected);

    let bad_config = temp_file(
        "bad.yaml",
        "router:\n  routes:\n    - { name: r, matchers: [\"mood = bad\"] }\n",
    );
    let output = earshot(
        &[
            "test-routes",
            path_str(&fixtures.path),
            "--config",
            path_str(&bad_config.path),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("router.routes[0].matchers[0]: \"mood\" is not a field"),
        "{stderr}"
    );

    let bad_fixtures = temp_file("bad-routes.yaml", "tests:\n  - name: no mention\n");
    let output = earshot(&["test-routes", path_str(&bad_fixtures.path)], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("bad-routes.yaml"), "{stderr}");
}

/// The project's own query fixtures pass: every construct of the query language matches and
/// fails to match where the fixture says.
#[test]
fn the_project_query_fixtures_pass() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture = root.join("crates/enricher/testdata/queries.yaml");
    let output = earshot(&["test-queries", path_str(&fixture)], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.ends_with(" failures\n") && stdout.contains(", 0 failures"),
        "{stdout}"
    );
}

/// A failing case exits 1 and prints the clause trace; a fixture with a broken query or an
/// unknown watchlist exits 64 naming every problem.
#[test]
fn test_queries_prints_failures_with_the_trace_and_exits_non_zero() {
    let failing = temp_file(
        "failing.yaml",
        r#"
watchlists:
  - name: lumora
    query: 'lumora NOT recall'
cases:
  - text: "Lumora recall notice"
    must_match: [lumora]
  - text: "Lumora lamp"
    must_match: [lumora]
"#,
    );
    let output = earshot(&["test-queries", path_str(&failing.path)], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "FAIL cases[0] must match lumora: \"Lumora recall notice\"\n  ✗ AND\n    ✓ lumora  found [\"Lumora\"]\n    ✗ NOT recall\n      ✓ recall  found [\"recall\"]\n2 cases, 1 failures\n"
    );

    let invalid = temp_file(
        "invalid.yaml",
        "watchlists:\n  - name: a\n    query: '(lumora'\ncases:\n  - text: x\n    must_not_match: [b]\n",
    );
    let output = earshot(&["test-queries", path_str(&invalid.path)], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("watchlists[0] \"a\": at character 8: expected ')'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cases[0]: no watchlist named \"b\""),
        "{stderr}"
    );
}

/// `earshot enrich` turns Mention NDJSON into EnrichedMention NDJSON with the configuration's
/// watchlists; a bad line is reported with its number and the exit code is 65.
#[test]
fn enrich_reads_mentions_and_writes_enriched_mentions() {
    use std::io::Write as _;
    let config = temp_file(
        "config.yaml",
        "enricher:\n  watchlists:\n    - name: acme\n      query: 'acme NEAR/2 refund*'\n",
    );
    let mention = r#"{"id":"6f1c2a9e-4d1b-5d7e-9a43-0c3f2b1a7e55","native_id":"1","source":{"kind":"reddit","instance":"r/x"},"author":{"handle":"@sam","followers":5},"text":"Acme, refunds please!","created_at":0,"collected_at":0}"#;
    let mut child = base_command(&[])
        .args(["enrich", "--config", path_str(&config.path)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{mention}\nnot json").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert_eq!(
        stderr,
        "line 2: not a Mention: expected ident at line 1 column 2\n"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["watchlist"], "acme");
    assert_eq!(lines[0]["matches"][0]["clause"], "acme NEAR/2 refund*");
    assert_eq!(
        lines[0]["matches"][0]["spans"],
        serde_json::json!([{"start": 0, "end": 4}, {"start": 6, "end": 13}])
    );
    assert!(
        lines[0]["sentiment"]["compound"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
}
