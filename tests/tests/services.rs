//! One service at a time, in-process through `run_with`, against real Kafka (started by
//! `scripts/test`), with unique topic names and consumer groups per test: a restart in the
//! middle of a stream loses nothing, poison records are dead-lettered without stopping the
//! stage, and the telemetry endpoints report readiness once the group is joined.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_core::bus::{headers, InRecord, OutRecord, Subscription};
use earshot_core::config::WatchlistConfig;
use earshot_core::kafka::KafkaSubscription;
use earshot_core::model::{mention_id, now_micros, Author, Engagement, Mention, Source};
use earshot_core::telemetry::{Health, Metrics};
use earshot_core::{Config, Services};
use earshot_tests::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enricher_restarted_mid_stream_loses_nothing() {
    const COUNT: usize = 2_000;
    let run = unique("restart");
    let mut config = kafka_config(&run);
    // Few records in flight, so that most of what the first instance has not finished at
    // cancel is still unread and must come from the committed position after the restart.
    config.kafka.max_in_flight = 16;
    // In batches (of up to 8 here, under the in-flight bound): each record's offset is still
    // stored only once its output is acknowledged, so the restart loses and repeats nothing.
    config.enricher.batch_size = 8;
    config.enricher.batch_wait_ms = 20;
    publish_mentions(&config, &run, COUNT).await;

    // First instance: stopped while the stream is being processed.
    let first_services = Services::kafka(config.clone()).await.unwrap();
    let first_shutdown = CancellationToken::new();
    let first = tokio::spawn(earshot_enricher::run_with(
        first_services.clone(),
        first_shutdown.clone(),
    ));
    let sent = || {
        first_services
            .metrics
            .sent
            .with_label_values(&["enricher"])
            .get()
    };
    let started = Instant::now();
    while sent() < (COUNT / 2) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first enricher produced only {} records in 60 s",
            sent()
        );
        assert!(!first.is_finished(), "the first enricher stopped by itself");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sent_at_cancel = sent();
    first_shutdown.cancel();
    let first_result = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first enricher drains and stops within 30 s")
        .unwrap();
    assert!(
        first_result.is_ok(),
        "the first enricher did not stop gracefully: {first_result:?}"
    );
    let sent_by_first = sent();
    let received_by_first = first_services
        .metrics
        .received
        .with_label_values(&["enricher"])
        .get();
    assert!(
        sent_by_first < COUNT as u64,
        "the first instance finished all {COUNT} records before it was stopped: the restart \
         would prove nothing"
    );

    // Second instance, same group: it continues from what the first committed.
    let second_services = Services::kafka(config.clone()).await.unwrap();
    let second_shutdown = CancellationToken::new();
    let second = tokio::spawn(earshot_enricher::run_with(
        second_services.clone(),
        second_shutdown.clone(),
    ));

    let expected: HashSet<uuid::Uuid> = (0..COUNT)
        .map(|i| mention_id("x", &format!("{run}-{i}")))
        .collect();
    let mut reader = reader(&config, &format!("{run}-check"), &config.topics.enriched);
    let mut seen: HashSet<uuid::Uuid> = HashSet::new();
    let mut copies = 0usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !expected.is_subset(&seen) && Instant::now() < deadline {
        let Some(record) = next_record(&mut reader, Duration::from_secs(1)).await else {
            continue;
        };
        let enriched = first_services
            .codecs
            .enriched
            .decode(record.payload.as_deref().unwrap_or_default())
            .await
            .expect("the enricher writes decodable records");
        assert_eq!(enriched.watchlist, "acme");
        assert_eq!(record.key.as_deref(), Some(&b"acme"[..]));
        copies += 1;
        seen.insert(enriched.mention.id);
    }
    let missing = expected.difference(&seen).count();
    assert_eq!(
        missing, 0,
        "{missing} of {COUNT} mentions never reached the enriched topic (first instance had \
         {sent_at_cancel} acknowledged at cancel, {sent_by_first} after draining)"
    );
    assert_eq!(
        seen.len(),
        COUNT,
        "records that are not this test's mentions appeared"
    );
    let received_by_second = second_services
        .metrics
        .received
        .with_label_values(&["enricher"])
        .get();
    println!(
        "restart: first instance {sent_at_cancel} at cancel, {sent_by_first} after drain \
         ({received_by_first} read); second read {received_by_second}; {copies} enriched \
         records for {COUNT} mentions ({} duplicates)",
        copies - COUNT
    );
    // A graceful stop drains and commits what it read, so the second instance starts exactly
    // there: nothing is read twice.
    assert_eq!(
        received_by_first + received_by_second,
        COUNT as u64,
        "the second instance did not resume from the first one's committed offsets"
    );

    second_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second enricher stops within 30 s")
        .unwrap()
        .expect("the second enricher stops gracefully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_do_not_stop_the_stage() {
    const GOOD: usize = 200;
    let run = unique("poison");
    let mut config = kafka_config(&run);
    // Batches larger than the runs of good records between two poison ones: a bad record
    // in a batch is dead-lettered alone.
    config.enricher.batch_size = 50;
    config.enricher.batch_wait_ms = 50;
    let services = Services::kafka(config.clone()).await.unwrap();

    // Each bad payload with the error type the codec gives it (`CodecError::kind`).
    let bad: Vec<(Bytes, &str)> = vec![
        (Bytes::new(), "truncated"),
        (Bytes::from_static(&[0xC3, 0x01]), "truncated"),
        (Bytes::from_static(b"{json}"), "bad_magic"),
        (
            Bytes::from_static(&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0]),
            "unknown_schema",
        ),
        (
            Bytes::from_static(&[0x00, 0, 0, 0, 7, 2, 4, 6]),
            "unknown_schema",
        ),
        (Bytes::new(), "truncated"),
        (Bytes::from_static(&[0xC3, 0x01, 0x42]), "truncated"),
        (Bytes::from_static(b"not avro at all"), "bad_magic"),
        (
            Bytes::from_static(&[0xC3, 0x01, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]),
            "unknown_schema",
        ),
        (
            Bytes::from_static(&[0x00, 0, 0, 1, 0, 0x10]),
            "unknown_schema",
        ),
    ];
    let expected_kind: HashMap<Bytes, &str> = bad.iter().cloned().collect();
    let mut payloads = Vec::with_capacity(GOOD + bad.len());
    let mut bad_iter = bad.iter();
    for i in 0..GOOD {
        payloads.push(Bytes::from(
            services.codecs.mention.encode(&mention(&run, i)).unwrap(),
        ));
        if i % 20 == 7 {
            payloads.push(bad_iter.next().unwrap().0.clone());
        }
    }
    assert_eq!(payloads.len(), GOOD + bad.len());
    publish(&services, &config.topics.raw, payloads).await;

    let shutdown = CancellationToken::new();
    let enricher = tokio::spawn(earshot_enricher::run_with(
        Services::kafka(config.clone()).await.unwrap(),
        shutdown.clone(),
    ));

    // Every good mention reaches the enriched topic.
    let expected: HashSet<uuid::Uuid> = (0..GOOD)
        .map(|i| mention_id("x", &format!("{run}-{i}")))
        .collect();
    let mut enriched_reader = reader(&config, &format!("{run}-enriched"), &config.topics.enriched);
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.is_subset(&seen) && Instant::now() < deadline {
        if let Some(record) = next_record(&mut enriched_reader, Duration::from_secs(1)).await {
            let enriched = services
                .codecs
                .enriched
                .decode(record.payload.as_deref().unwrap_or_default())
                .await
                .unwrap();
            seen.insert(enriched.mention.id);
        }
    }
    assert_eq!(
        expected.difference(&seen).count(),
        0,
        "good mentions are missing from the enriched topic"
    );

    // Exactly ten dead letters, then nothing more.
    let mut deadletter_reader = reader(&config, &format!("{run}-dlq"), &config.topics.deadletter);
    let mut dead_letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead_letters.len() < bad.len() && Instant::now() < deadline {
        if let Some(record) = next_record(&mut deadletter_reader, Duration::from_secs(1)).await {
            dead_letters.push(record);
        }
    }
    assert_eq!(
        dead_letters.len(),
        bad.len(),
        "dead letters: {dead_letters:#?}"
    );
    assert!(
        next_record(&mut deadletter_reader, Duration::from_secs(3))
            .await
            .is_none(),
        "more dead letters than bad records"
    );

    // Each dead letter points at its original record and names the codec's error type.
    let raw = read_all(
        &config,
        &format!("{run}-raw"),
        &config.topics.raw,
        GOOD + bad.len(),
    )
    .await;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut sources = HashSet::new();
    for dead in &dead_letters {
        let header = |name: &str| {
            String::from_utf8_lossy(
                dead.header(name)
                    .unwrap_or_else(|| panic!("dead letter without {name}: {dead:?}")),
            )
            .into_owned()
        };
        assert_eq!(header(headers::DLQ_SOURCE_TOPIC), config.topics.raw);
        assert_eq!(header(headers::DLQ_STAGE), "enricher");
        let partition: i32 = header(headers::DLQ_SOURCE_PARTITION).parse().unwrap();
        let offset: i64 = header(headers::DLQ_SOURCE_OFFSET).parse().unwrap();
        assert!(
            sources.insert((partition, offset)),
            "two dead letters for one record"
        );
        let payload = Bytes::copy_from_slice(dead.payload.as_deref().unwrap_or_default());
        assert_eq!(
            raw.get(&(partition, offset)),
            Some(&payload),
            "the dead letter's provenance does not point at its original payload"
        );
        let error_type = header(headers::DLQ_ERROR_TYPE);
        assert_eq!(
            Some(&error_type.as_str()),
            expected_kind.get(&payload),
            "payload {payload:02x?}"
        );
        assert!(!header(headers::DLQ_ERROR).is_empty());
        *kinds.entry(error_type).or_default() += 1;
    }
    assert_eq!(
        kinds,
        HashMap::from([
            ("truncated".to_owned(), 4),
            ("bad_magic".to_owned(), 2),
            ("unknown_schema".to_owned(), 4),
        ])
    );

    assert!(
        !enricher.is_finished(),
        "the enricher stopped on poison records"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), enricher)
        .await
        .expect("the enricher stops within 30 s")
        .unwrap()
        .expect("the enricher stops gracefully");
}

/// A consumer that cannot join its group (no broker answers) is not ready, and `/readyz`
/// names the group it waits for. (Against a live broker the join is too quick to observe
/// reliably before it completes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_group_a_consumer_waits_to_join() {
    let run = unique("unjoined");
    let mut config = kafka_config(&run);
    config.kafka.bootstrap_servers = "127.0.0.1:1".into();
    config.kafka.create_topics = false;
    let services = Services::kafka(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let enricher = tokio::spawn(earshot_enricher::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    let group = format!("{run}-enricher");
    wait_until(
        Duration::from_secs(10),
        "the join condition to be registered",
        || async {
            services
                .health
                .not_ready()
                .iter()
                .any(|name| name.contains(&group))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = services.health.not_ready();
    assert!(
        waiting
            .iter()
            .any(|name| name.contains(&format!("joined group {group}"))),
        "{waiting:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), enricher)
        .await
        .expect("the enricher stops within 30 s")
        .unwrap()
        .expect("the enricher stops gracefully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telemetry_reports_ready_once_partitions_are_assigned() {
    let run = unique("ready");
    let config = kafka_config(&run);
    let services = Services::kafka(config.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let addr = earshot_core::telemetry::serve(
        "127.0.0.1:0".parse().unwrap(),
        services.metrics.clone(),
        services.health.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let enricher = tokio::spawn(earshot_enricher::run_with(
        services.clone(),
        shutdown.clone(),
    ));

    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    wait_until(Duration::from_secs(30), "/readyz 200", || async {
        get("/readyz").await.0 == 200
    })
    .await;
    let (status, body) = get("/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert!(
        services.health.not_ready().is_empty(),
        "{:?}",
        services.health.not_ready()
    );
    let (status, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // One record through the stage puts the stage's counters on /metrics.
    publish(
        &services,
        &config.topics.raw,
        vec![Bytes::from(
            services.codecs.mention.encode(&mention(&run, 0)).unwrap(),
        )],
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the record counted on /metrics",
        || async {
            let (status, body) = get("/metrics").await;
            status == 200
                && body.contains("earshot_records_received_total{stage=\"enricher\"} 1")
                && body.contains("earshot_records_sent_total{stage=\"enricher\"} 1")
        },
    )
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), enricher)
        .await
        .expect("the enricher stops within 30 s")
        .unwrap()
        .expect("the enricher stops gracefully");
}

/// An output the broker refuses (here: an enriched copy larger than the topic takes, because
/// every one of thousands of matches carries its span) is a property of the record: the
/// input is dead-lettered and the stage goes on; it does not stop the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_output_the_broker_refuses_dead_letters_its_input() {
    let run = unique("refused");
    let mut config = kafka_config(&run);
    // Records up to 1,000 + 64 KiB bytes: the raw mention fits, its enriched copy does not.
    config.kafka.max_message_bytes = 1_000;
    let services = Services::kafka(config.clone()).await.unwrap();
    let mut huge = mention(&run, 0);
    huge.text = "Acme ".repeat(12_000);
    let payloads = vec![
        Bytes::from(services.codecs.mention.encode(&mention(&run, 1)).unwrap()),
        Bytes::from(services.codecs.mention.encode(&huge).unwrap()),
        Bytes::from(services.codecs.mention.encode(&mention(&run, 2)).unwrap()),
    ];
    assert!(
        payloads[1].len() < 1_000 + 64 * 1024,
        "the input itself fits"
    );
    publish(&services, &config.topics.raw, payloads).await;

    let shutdown = CancellationToken::new();
    let enricher = tokio::spawn(earshot_enricher::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    let enriched = read_all(
        &config,
        &format!("{run}-check-enriched"),
        &config.topics.enriched,
        2,
    )
    .await;
    assert_eq!(enriched.len(), 2);
    let mut dead = reader(
        &config,
        &format!("{run}-check-dlq"),
        &config.topics.deadletter,
    );
    let letter = next_record(&mut dead, Duration::from_secs(30))
        .await
        .expect("a dead letter");
    assert_eq!(
        letter.header(headers::DLQ_ERROR_TYPE),
        Some(&b"rejected"[..])
    );
    let reason = String::from_utf8_lossy(letter.header(headers::DLQ_ERROR).unwrap()).to_string();
    assert!(reason.contains("refused the record"), "{reason}");
    let decoded = services
        .codecs
        .mention
        .decode(letter.payload.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        decoded.id, huge.id,
        "the dead letter is the input that could not be enriched"
    );
    assert!(!enricher.is_finished(), "the enricher keeps running");
    shutdown.cancel();
    enricher
        .await
        .unwrap()
        .expect("the enricher stops gracefully");
}

/// A record larger than the service's `kafka.max_message_bytes` on a topic provisioned for
/// larger records (here 3 MiB, incompressible, against the default 1 MiB) is fetched, not
/// retried forever: it is dead-lettered with its headers only (type `oversized`), its offset
/// is committed, and the records around it are enriched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_over_the_size_limit_is_dead_lettered_without_its_payload() {
    let run = unique("oversized");
    let mut config = kafka_config(&run);
    // A prefetch queue (and so `fetch.max.bytes`) smaller than the record: it comes anyway.
    config.kafka.consumer_queue_max_kbytes = 1024;
    let mut provisioned = config.kafka.clone();
    provisioned.max_message_bytes = 4 * 1024 * 1024;
    earshot_core::kafka::ensure_topics(
        &provisioned,
        &[&config.topics.raw, &config.topics.deadletter],
    )
    .await
    .unwrap();
    let services = Services::kafka(config.clone()).await.unwrap();
    let mut large = services.codecs.mention.encode(&mention(&run, 1)).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    while large.len() < 3 * 1024 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        large.extend_from_slice(&state.to_le_bytes());
    }
    let publisher = earshot_core::kafka::KafkaPublisher::new(
        &provisioned,
        "oversized-producer",
        services.health.ready_flag("producer"),
    )
    .unwrap();
    let raw: Arc<str> = Arc::from(config.topics.raw.as_str());
    let key = Bytes::from_static(b"one-partition");
    let mut acks = Vec::new();
    let origin = ("origin".to_owned(), Bytes::from_static(b"test"));
    // The last record claims to be oversized in a header of its own: that is not believed.
    let spoofed = (headers::OVERSIZED.to_owned(), Bytes::from_static(b"1"));
    for (payload, record_headers) in [
        (
            Bytes::from(services.codecs.mention.encode(&mention(&run, 0)).unwrap()),
            vec![origin.clone()],
        ),
        (Bytes::from(large), vec![origin.clone()]),
        (
            Bytes::from(services.codecs.mention.encode(&mention(&run, 2)).unwrap()),
            vec![origin.clone(), spoofed],
        ),
    ] {
        acks.push(
            earshot_core::bus::Publisher::publish(
                &publisher,
                OutRecord {
                    topic: raw.clone(),
                    key: Some(key.clone()),
                    payload,
                    headers: record_headers,
                },
            )
            .await,
        );
    }
    for ack in acks {
        ack.await.expect("the provisioned topic takes the record");
    }

    let shutdown = CancellationToken::new();
    let enricher = tokio::spawn(earshot_enricher::run_with(
        services.clone(),
        shutdown.clone(),
    ));
    let enriched = read_all(
        &config,
        &format!("{run}-check-enriched"),
        &config.topics.enriched,
        2,
    )
    .await;
    assert_eq!(
        enriched.len(),
        2,
        "the records around it are enriched, the one with a spoofed marker too"
    );
    let mut dead = reader(
        &config,
        &format!("{run}-check-dlq"),
        &config.topics.deadletter,
    );
    let letter = next_record(&mut dead, Duration::from_secs(30))
        .await
        .expect("a dead letter");
    let header = |name: &str| {
        letter
            .header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header(headers::DLQ_ERROR_TYPE).as_deref(),
        Some("oversized")
    );
    assert_eq!(header(headers::DLQ_STAGE).as_deref(), Some("enricher"));
    assert_eq!(
        header(headers::DLQ_SOURCE_TOPIC),
        Some(config.topics.raw.clone())
    );
    assert_eq!(header(headers::DLQ_SOURCE_OFFSET).as_deref(), Some("1"));
    assert_eq!(
        header("origin").as_deref(),
        Some("test"),
        "the original headers are kept"
    );
    assert_eq!(
        header(headers::OVERSIZED),
        None,
        "the internal marker is not"
    );
    let reason = header(headers::DLQ_ERROR).unwrap();
    assert!(reason.contains("bytes"), "{reason}");
    assert!(
        letter.payload.as_deref().unwrap_or_default().is_empty(),
        "the dead letter carries the headers only"
    );
    assert_eq!(letter.key.as_deref(), Some(&b"one-partition"[..]));

    // The offset past it is committed: nothing of the raw topic is left for the group.
    let group = format!("{run}-enricher");
    let lag_config = config.kafka.clone();
    let topic = config.topics.raw.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (c, g, t) = (lag_config.clone(), group.clone(), topic.clone());
        let lag =
            tokio::task::spawn_blocking(move || earshot_core::kafka::committed_lag(&c, &g, &[&t]))
                .await
                .unwrap()
                .unwrap();
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{lag} records of the raw topic are still uncommitted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!enricher.is_finished(), "the enricher keeps running");
    shutdown.cancel();
    enricher
        .await
        .unwrap()
        .expect("the enricher stops gracefully");
}

/// A config on the test Kafka with this run's topics and groups, and one watchlist (`acme`)
/// that every generated mention matches exactly once.
fn kafka_config(run: &str) -> Config {
    init_logs();
    let mut config = Config::default();
    config.kafka.bootstrap_servers = kafka_bootstrap();
    config.kafka.group_prefix = run.to_owned();
    config.kafka.drain_timeout_ms = 10_000;
    config.topics.raw = format!("{run}.raw");
    config.topics.enriched = format!("{run}.enriched");
    config.topics.alerts = format!("{run}.alerts");
    config.topics.deadletter = format!("{run}.deadletter");
    config.telemetry.listen = "127.0.0.1:0".parse().unwrap();
    config.enricher.watchlists = vec![WatchlistConfig {
        name: "acme".into(),
        terms: vec!["Acme".into()],
        query: None,
        sentiment_lexicon: Default::default(),
    }];
    config
}

fn mention(run: &str, i: usize) -> Mention {
    let native_id = format!("{run}-{i}");
    Mention {
        id: mention_id("x", &native_id),
        url: Some(format!("https://x.example/status/{native_id}")),
        native_id,
        source: Source {
            kind: "x".into(),
            instance: "services-test".into(),
        },
        author: Author {
            handle: format!("@user{i}"),
            name: None,
            followers: Some(120),
            verified: false,
            id: None,
        },
        text: format!("my Acme order #{i} arrived late"),
        lang_hint: Some("en".into()),
        created_at: now_micros(),
        collected_at: now_micros(),
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    }
}

/// Publishes `count` encoded mentions of this run to the raw topic and waits for every
/// acknowledgement.
async fn publish_mentions(config: &Config, run: &str, count: usize) {
    let services = Services::kafka(config.clone()).await.unwrap();
    let payloads = (0..count)
        .map(|i| Bytes::from(services.codecs.mention.encode(&mention(run, i)).unwrap()))
        .collect();
    publish(&services, &config.topics.raw, payloads).await;
}

/// Publishes `payloads` to `topic` and waits for every acknowledgement.
async fn publish(services: &Services, topic: &str, payloads: Vec<Bytes>) {
    let publisher = services.publisher("services-test-producer").unwrap();
    let topic: Arc<str> = Arc::from(topic);
    let mut acks = Vec::with_capacity(payloads.len());
    for payload in payloads {
        acks.push(
            publisher
                .publish(OutRecord {
                    topic: topic.clone(),
                    key: None,
                    payload,
                    headers: vec![],
                })
                .await,
        );
    }
    for ack in acks {
        ack.await.expect("the broker acknowledges");
    }
}

/// A consumer in its own group reading `topic` from the beginning.
fn reader(config: &Config, group: &str, topic: &str) -> KafkaSubscription {
    let health = Health::new(Duration::from_secs(60));
    KafkaSubscription::new(
        &config.kafka,
        group,
        &[topic],
        Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("broker"),
    )
    .expect("a consumer")
}

/// The next record, or `None` when nothing came within `wait`.
async fn next_record(reader: &mut KafkaSubscription, wait: Duration) -> Option<InRecord> {
    match tokio::time::timeout(wait, reader.recv()).await {
        Ok(Some(Ok(record))) => Some(record),
        Ok(Some(Err(error))) => panic!("consuming failed: {error}"),
        Ok(None) | Err(_) => None,
    }
}

/// Every record of `topic` by (partition, offset); expects `count` of them.
async fn read_all(
    config: &Config,
    group: &str,
    topic: &str,
    count: usize,
) -> HashMap<(i32, i64), Bytes> {
    let mut reader = reader(config, group, topic);
    let mut records = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.len() < count && Instant::now() < deadline {
        if let Some(record) = next_record(&mut reader, Duration::from_secs(1)).await {
            records.insert(
                (record.partition, record.offset),
                record.payload.unwrap_or_default(),
            );
        }
    }
    assert_eq!(records.len(), count, "records of {topic}");
    records
}

/// With no broker acknowledging, the ingest endpoint answers 503 (retry) once its ack
/// timeout passes, instead of 202, and `/readyz` reports the broker unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_endpoint_answers_503_when_kafka_does_not_acknowledge() {
    init_logs();
    std::env::set_var("EARSHOT_SERVICES_TOKEN", TOKEN);
    let mut config = Config::default();
    // Nothing listens on port 1 of loopback.
    config.kafka.bootstrap_servers = "127.0.0.1:1".into();
    config.kafka.create_topics = false;
    let http = earshot_core::config::HttpIngestConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_env: Some("EARSHOT_SERVICES_TOKEN".into()),
        ack_timeout_ms: 1_000,
        ..Default::default()
    };
    let services = Services::kafka(config).await.unwrap();
    let collector = earshot_collector::Collector::new(&services).unwrap();
    let shutdown = CancellationToken::new();
    let addr = collector.serve_http(&http, shutdown.clone()).await.unwrap();

    let (lines, _) = scenario_mentions(1, "unacknowledged");
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/mentions"))
        .bearer_auth(TOKEN)
        .body(lines[0].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before the ack timeout"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");

    wait_until(
        Duration::from_secs(20),
        "readiness to report the broker unreachable",
        || async {
            services
                .health
                .not_ready()
                .iter()
                .any(|c| c == "earshot-collector: broker reachable")
        },
    )
    .await;
    shutdown.cancel();
}

/// When a second member joins, the first commits what it has done before its partitions go,
/// so the second starts where the first stopped. Background commits are pushed out of the
/// way (one a minute) so that only the commit on revocation can explain it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_are_committed_before_they_are_revoked() {
    const COUNT: usize = 200;
    let run = unique("revoke");
    let mut config = kafka_config(&run);
    config.kafka.commit_interval_ms = 60_000;
    publish_mentions(&config, &run, COUNT).await;

    let first_services = Services::kafka(config.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(earshot_enricher::run_with(
        first_services.clone(),
        shutdown.clone(),
    ));
    wait_until(
        Duration::from_secs(60),
        "the first member to finish the stream",
        || async {
            first_services
                .metrics
                .sent
                .with_label_values(&["enricher"])
                .get()
                == COUNT as u64
        },
    )
    .await;

    let second_services = Services::kafka(config.clone()).await.unwrap();
    let second = tokio::spawn(earshot_enricher::run_with(
        second_services.clone(),
        shutdown.clone(),
    ));
    wait_until(
        Duration::from_secs(60),
        "the second member to join",
        || async { second_services.health.not_ready().is_empty() },
    )
    .await;
    // Give the second member time to read anything it would wrongly start from the beginning.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let read_again = second_services
        .metrics
        .received
        .with_label_values(&["enricher"])
        .get();
    assert_eq!(
        read_again, 0,
        "the second member re-read records the first had done"
    );

    shutdown.cancel();
    first
        .await
        .unwrap()
        .expect("the first member stops gracefully");
    second
        .await
        .unwrap()
        .expect("the second member stops gracefully");
}

/// The enricher reloads its watchlists when its configuration file changes, between two
/// records: every mention is enriched exactly once, those before the change with the old
/// watchlists and those after it with the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchlists_reload_from_the_file_without_losing_or_repeating_records() {
    let run = unique("reload");
    let config = kafka_config(&run);
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("earshot.yaml");
    let watchlist =
        |name: &str| format!("enricher:\n  watchlists:\n    - name: {name}\n      terms: [Acme]\n");
    std::fs::write(&file, watchlist("acme")).unwrap();
    let services = Services::kafka(config.clone()).await.unwrap();
    let publish_range = |range: std::ops::Range<usize>| {
        let services = services.clone();
        let run = run.clone();
        let topic = config.topics.raw.clone();
        async move {
            let payloads = range
                .map(|i| Bytes::from(services.codecs.mention.encode(&mention(&run, i)).unwrap()))
                .collect();
            publish(&services, &topic, payloads).await;
        }
    };
    publish_range(0..100).await;
    let shutdown = CancellationToken::new();
    let enricher = tokio::spawn(earshot_enricher::run_with_reload(
        services.clone(),
        Some(file.clone()),
        shutdown.clone(),
    ));
    let mut reader = reader(&config, &format!("{run}-check"), &config.topics.enriched);
    let mut copies: HashMap<uuid::Uuid, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies.len() < 100 && Instant::now() < deadline {
        if let Some(record) = next_record(&mut reader, Duration::from_secs(1)).await {
            record_copy(&services, &mut copies, record).await;
        }
    }
    assert_eq!(
        copies.len(),
        100,
        "the first 100 mentions were not all enriched"
    );

    std::fs::write(&file, watchlist("acme-renamed")).unwrap();
    // Probes, one at a time, until one comes out with the new watchlist.
    let mut probe = 1_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    'reloaded: loop {
        assert!(
            Instant::now() < deadline,
            "the watchlists were not reloaded within 30 s"
        );
        publish_range(probe..probe + 1).await;
        probe += 1;
        while let Some(record) = next_record(&mut reader, Duration::from_millis(300)).await {
            record_copy(&services, &mut copies, record).await;
            if copies.values().flatten().any(|w| w == "acme-renamed") {
                break 'reloaded;
            }
        }
    }
    publish_range(2_000..2_100).await;
    let expected = 100 + (probe - 1_000) + 100;
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies.len() < expected && Instant::now() < deadline {
        if let Some(record) = next_record(&mut reader, Duration::from_secs(1)).await {
            record_copy(&services, &mut copies, record).await;
        }
    }
    // Anything late or repeated would arrive within this quiet period.
    while let Some(record) = next_record(&mut reader, Duration::from_secs(2)).await {
        record_copy(&services, &mut copies, record).await;
    }
    shutdown.cancel();
    enricher.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(copies.len(), expected, "mentions lost");
    let repeated: Vec<_> = copies.values().filter(|w| w.len() != 1).collect();
    assert!(repeated.is_empty(), "mentions enriched twice: {repeated:?}");
    for i in (0..100).chain(2_000..2_100) {
        let id = mention_id("x", &format!("{run}-{i}"));
        let want = if i < 100 { "acme" } else { "acme-renamed" };
        assert_eq!(copies[&id], [want], "mention {i}");
    }
}

/// Notes which watchlist an enriched record of `record`'s mention was keyed by.
async fn record_copy(
    services: &Services,
    copies: &mut HashMap<uuid::Uuid, Vec<String>>,
    record: InRecord,
) {
    let enriched = services
        .codecs
        .enriched
        .decode(record.payload.as_deref().unwrap_or_default())
        .await
        .expect("the enricher writes decodable records");
    copies
        .entry(enriched.mention.id)
        .or_default()
        .push(enriched.watchlist);
}
