//! Scenario 5: a slow and then failing PostgreSQL. The sink reaches PostgreSQL through a
//! fault injector in this test (a TCP forwarder): first every answer of the server is held
//! back 500 ms for 25 s, then the forwarder cuts every connection and refuses new ones for
//! `EARSHOT_CHAOS_PG_OUTAGE_SECS` (default 60 s: "minutes" scaled to what CI affords), then
//! forwards again. Meanwhile mentions are posted. Every acknowledged mention must be in
//! PostgreSQL once, the sink's memory (its RSS, from /proc) must stay bounded, and the time it
//! takes to catch up once PostgreSQL is back is reported.
//!
//! `EARSHOT_CHAOS_PG_MENTIONS` sets the number of mentions (default 20,000, over 20 s).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use earshot_tests::*;

use crate::harness::*;

const PASS: u8 = 0;
const SLOW: u8 = 1;
const DOWN: u8 = 2;
/// How long the slow phase holds back each answer of the server.
const LATENCY: Duration = Duration::from_millis(500);
/// How long the slow phase lasts.
const SLOW_FOR: Duration = Duration::from_secs(25);
/// The RSS the sink must stay under (it holds at most `kafka.max_in_flight` records).
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// A TCP forwarder to PostgreSQL that can delay the server's answers, or cut every
/// connection and refuse new ones.
struct Injector {
    port: u16,
    mode: Arc<AtomicU8>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Injector {
    async fn start(target: String) -> Injector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accept_mode, cuts) = (mode.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if accept_mode.load(Ordering::SeqCst) == DOWN {
                    continue; // dropped: the connection closes at once
                }
                let mut cut = cuts.subscribe();
                let (target, mode) = (target.clone(), accept_mode.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_read.read(&mut buffer).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if mode.load(Ordering::SeqCst) == SLOW {
                                tokio::time::sleep(LATENCY).await;
                            }
                            client_write.write_all(&buffer[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Injector { port, mode, cut }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        if mode == DOWN {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// The resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_then_failing_postgres_loses_nothing_and_memory_stays_bounded() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let count = env_count("EARSHOT_CHAOS_PG_MENTIONS", 20_000);
    let outage = Duration::from_secs(env_count("EARSHOT_CHAOS_PG_OUTAGE_SECS", 60) as u64);
    let (_webhook, received, base) = webhook_and_base().await;
    let (postgres_url, _schema) = fresh_schema("chaos").await;
    let parsed: tokio_postgres::Config = postgres_url.parse().unwrap();
    let target = match (&parsed.get_hosts()[0], parsed.get_ports()[0]) {
        (tokio_postgres::config::Host::Tcp(host), port) => format!("{host}:{port}"),
        _ => panic!("DATABASE_URL must be a TCP address for this scenario"),
    };
    let injector = Injector::start(target.clone()).await;
    let through_injector =
        postgres_url.replacen(&target, &format!("127.0.0.1:{}", injector.port), 1);
    assert_ne!(through_injector, postgres_url);
    let run = Run::new(&base, &kafka_bootstrap(), "", &through_injector);
    let mut fleet = run.fleet();
    for service in SERVICES {
        fleet.start(service);
    }
    wait_for_port(run.ingest, "the ingest endpoint").await;
    let sink = fleet.pid("sink").unwrap();

    // The sink's RSS, sampled every 250 ms: before the faults, and its peak.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::SeqCst) {
                if let Some(rss) = rss_kib(sink) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };

    let spread = Duration::from_secs(20);
    let (lines, expected_alerts) = scenario_mentions(count, &run.run);
    let ingest = run.ingest;
    let poster =
        tokio::spawn(async move { post_until_acknowledged(ingest, &lines, 500, spread).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_kib(sink).unwrap_or_default();
    let in_postgres = || query_count(&postgres_url, "SELECT count(*) FROM mentions");
    injector.set(SLOW);
    let stored_before_slow = in_postgres().await;
    tokio::time::sleep(SLOW_FOR).await;
    injector.set(DOWN);
    // A COMMIT that reached the server before the cut may still complete: count after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored_before_outage = in_postgres().await;
    tokio::time::sleep(outage.saturating_sub(Duration::from_secs(1))).await;
    let stored_at_end_of_outage = in_postgres().await;
    injector.set(PASS);
    let back = Instant::now();
    let acknowledged = poster.await.unwrap();

    let catch_up = wait_for_mentions(
        &postgres_url,
        acknowledged.len(),
        back,
        Duration::from_secs(240),
    )
    .await;
    let (stored, distinct, missing) = stored_rows(&postgres_url, &acknowledged).await;
    let (alerts, _) = webhook_alerts(&received, expected_alerts).await;
    sampling.store(false, Ordering::SeqCst);
    let rss_peak = sampler.await.unwrap();
    let exited = fleet.exited();
    fleet.stop_all();

    let passed = acknowledged.len() == count
        && missing.is_empty()
        && stored == distinct
        && alerts == expected_alerts
        && rss_peak < RSS_LIMIT_KIB
        && stored_at_end_of_outage == stored_before_outage
        && exited.is_empty();
    ScenarioResult {
        id: "5-slow-postgres",
        scenario: "a slow (500 ms added to every answer of the server, for 25 s) and then failing PostgreSQL (connections cut and refused)",
        must_hold: "missing 0, no duplicate rows, nothing written while down, sink RSS under 256 MiB, catch-up time reported",
        size: format!(
            "{} mentions, down {} s",
            thousands(count),
            outage.as_secs()
        ),
        result: format!(
            "missing {}, duplicate rows {}, alerts {}/{}, rows written while slow {}, while down {}, sink RSS {} MiB before the faults and {} MiB at its peak, caught up {:.1} s after PostgreSQL came back, services exited {}",
            missing.len(),
            stored - distinct,
            thousands(alerts),
            thousands(expected_alerts),
            stored_before_outage - stored_before_slow,
            stored_at_end_of_outage - stored_before_outage,
            rss_before / 1024,
            rss_peak / 1024,
            catch_up.as_secs_f64(),
            exited.len()
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
    assert_eq!(
        stored_at_end_of_outage, stored_before_outage,
        "nothing reaches PostgreSQL while it is down"
    );
    assert!(
        rss_peak < RSS_LIMIT_KIB,
        "the sink's RSS peaked at {} MiB",
        rss_peak / 1024
    );
    assert!(
        exited.is_empty(),
        "services exited: {exited:?}; logs in {logs}"
    );
    run.clean_up();
}
