//! What a stage relies on when a partition moves between replicas, against the Kafka of
//! `KAFKA_BOOTSTRAP_SERVERS`: a state table's partition read to its end has delivered
//! another replica's last writes, and a member's rebalance listener has let go of a revoked
//! partition before another member is assigned it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_core::bus::{OwnedPartitions, RebalanceEvent, Subscription};
use earshot_core::config::KafkaConfig;
use earshot_core::kafka::{ensure_topics_compacted, KafkaSubscription, KafkaTable};
use earshot_core::table::TableUpdate;
use earshot_core::telemetry::{Health, Metrics};

fn kafka_config(run: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
            "KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts Kafka",
        ),
        topic_partitions: 2,
        group_prefix: run.to_owned(),
        session_timeout_ms: 6_000,
        ..KafkaConfig::default()
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One replica writes entries; the other, following the table (slowly), reads the partition
/// to its end: by then it has applied every one of them (and none of the marks reading
/// writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_read_to_its_end_has_delivered_another_replicas_last_writes() {
    let run = unique("table");
    let config = kafka_config(&run);
    let topic = format!("{run}.state");
    ensure_topics_compacted(&config, &[], &[&topic])
        .await
        .unwrap();
    let writer = KafkaTable::open(&config, &topic, "writer").await.unwrap();
    let mut reader = KafkaTable::open(&config, &topic, "reader").await.unwrap();
    reader.caught_up.wait_for(|caught| *caught).await.unwrap();
    let applied: Arc<Mutex<Vec<TableUpdate>>> = Arc::default();
    let following = {
        let applied = applied.clone();
        let mut updates = reader.updates;
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                // A reader slower than the writes (the router applies each to its state):
                // what counts is what it applied, not what the table's thread has read.
                tokio::time::sleep(Duration::from_millis(2)).await;
                applied.lock().unwrap().push(update);
            }
        })
    };

    let mut acks = Vec::new();
    for i in 0..200 {
        let value = Some(Bytes::from(format!("value {i}")));
        acks.push(writer.writer.put(1, &format!("entry/{i}"), value).await);
    }
    for ack in acks {
        ack.await.unwrap();
    }
    reader.reader.read_to_end(1).await.unwrap();
    let keys: Vec<String> = applied
        .lock()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u.partition, 1, "{u:?}");
            u.key.clone()
        })
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("entry/{i}")).collect();
    assert_eq!(
        keys, expected,
        "every write applied, in order, and nothing else"
    );

    // A partition with nothing in it but marks reads to its end too.
    reader.reader.read_to_end(0).await.unwrap();
    assert_eq!(applied.lock().unwrap().len(), 200);
    drop(reader.writer);
    following.abort();
}

/// Two members of one group: when the second joins, the first's listener hears the
/// revocation of what moves, and has returned, before the second is assigned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_is_let_go_of_before_another_member_is_assigned_it() {
    let run = unique("handover");
    let config = kafka_config(&run);
    let topic = format!("{run}.input");
    ensure_topics_compacted(&config, &[&topic], &[])
        .await
        .unwrap();
    // (member, event, partitions, when it was heard, when the listener returned)
    type Heard = Vec<(&'static str, &'static str, Vec<i32>, Instant, Instant)>;
    let heard: Arc<Mutex<Heard>> = Arc::default();
    let member = |name: &'static str| {
        let owned = OwnedPartitions::default();
        let heard = heard.clone();
        let listening = owned.listen(Arc::new(move |event: &RebalanceEvent| {
            let at = Instant::now();
            let (kind, list) = match event {
                RebalanceEvent::Assigned(list) => ("assigned", list),
                RebalanceEvent::Revoked(list) => {
                    // Letting go takes a while: the group waits for it.
                    std::thread::sleep(Duration::from_millis(1_500));
                    ("revoked", list)
                }
            };
            let partitions = list.iter().map(|(_, p)| *p).collect();
            heard
                .lock()
                .unwrap()
                .push((name, kind, partitions, at, Instant::now()));
        }));
        let health = Health::new(Duration::from_secs(60));
        let mut subscription = KafkaSubscription::tracking(
            &config,
            &format!("{run}-group"),
            &[&topic],
            Metrics::default(),
            health.ready_flag("joined"),
            health.ready_flag("broker"),
            owned.clone(),
        )
        .unwrap();
        // Reading serves the rebalance callbacks.
        let polling = tokio::spawn(async move {
            let _listening = listening;
            while subscription.recv().await.is_some() {}
        });
        (owned, polling)
    };

    let (first, first_polling) = member("first");
    wait_until("the first member assigned both partitions", || {
        first.owns(&topic, 0) && first.owns(&topic, 1)
    })
    .await;
    let (second, second_polling) = member("second");
    wait_until("the second member assigned a partition", || {
        second.owns(&topic, 0) || second.owns(&topic, 1)
    })
    .await;

    let heard = heard.lock().unwrap().clone();
    let (_, _, moved, second_assigned_at, _) = heard
        .iter()
        .find(|(name, kind, _, _, _)| *name == "second" && *kind == "assigned")
        .cloned()
        .expect("the second member heard its assignment");
    for partition in moved {
        let released = heard
            .iter()
            .filter(|(name, kind, list, _, _)| {
                *name == "first" && *kind == "revoked" && list.contains(&partition)
            })
            .map(|(_, _, _, _, returned)| *returned)
            .next()
            .unwrap_or_else(|| {
                panic!("the first member heard no revocation of {partition}: {heard:?}")
            });
        assert!(
            released <= second_assigned_at,
            "partition {partition} assigned to the second member before the first let go of it: {heard:?}"
        );
        assert!(!first.owns(&topic, partition));
    }
    first_polling.abort();
    second_polling.abort();
}
