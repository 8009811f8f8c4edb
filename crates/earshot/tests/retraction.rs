//! A post deleted at its source, end to end in the embedded mode with real PostgreSQL: the
//! mention is collected and stored, then its retraction arrives through the HTTP ingest; the
//! row is kept, flagged deleted with the retraction's time, and the analytics views and the
//! report stop counting it.

use std::time::Duration;

use earshot::embedded::{self, Input};
use earshot_core::config::{ConfigSources, PostgresConfig};
use earshot_core::Config;
use earshot_tests::*;
use tokio_util::sync::CancellationToken;

fn config(webhook: std::net::SocketAddr, postgres_url: &str) -> Config {
    init_logs();
    std::env::set_var("EARSHOT_E2E_TOKEN", TOKEN);
    let yaml = scenario_config_yaml(webhook);
    let mut config = Config::load(ConfigSources {
        defaults_yaml: Some(&yaml),
        file: None,
        environment: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    config.sink.postgres = Some(PostgresConfig {
        url: Some(postgres_url.to_owned()),
        url_env: None,
        ..PostgresConfig::default()
    });
    config
}

fn post(run: &str, name: &str) -> String {
    serde_json::json!({
        "native_id": format!("{run}-{name}"),
        "source": {"kind": "x", "instance": "e2e"},
        "author": {"handle": format!("@{name}"), "followers": 120},
        "text": format!("my Acme order ({name}) arrived late"),
        "created_at": "2026-11-23T09:00:00Z",
    })
    .to_string()
}

/// The delete event of a post: the same source and native id, the time it was deleted.
fn retraction(run: &str, name: &str) -> String {
    serde_json::json!({
        "native_id": format!("{run}-{name}"),
        "source": {"kind": "x", "instance": "e2e"},
        "author": {"handle": format!("@{name}")},
        "deleted_at": "2026-11-23T10:30:00Z",
    })
    .to_string()
}

/// Mentions of the `acme` watchlist counted by each view that counts mentions.
async fn counted_by_views(url: &str) -> [i64; 3] {
    [
        query_count(
            url,
            "SELECT coalesce(sum(mentions), 0)::bigint FROM mentions_hourly WHERE watchlist = 'acme'",
        )
        .await,
        query_count(
            url,
            "SELECT coalesce(sum(mentions), 0)::bigint FROM share_of_voice WHERE watchlist = 'acme'",
        )
        .await,
        query_count(
            url,
            "SELECT coalesce(sum(mentions), 0)::bigint FROM spam_share WHERE watchlist = 'acme'",
        )
        .await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retracted_mention_stays_stored_flagged_deleted_and_leaves_the_views() {
    let (webhook, _received) = webhook_receiver().await;
    let (postgres_url, _schema) = fresh_schema("e2e_retraction").await;
    let run = unique("retract");
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let pipeline = tokio::spawn(embedded::run(
        config(webhook, &postgres_url),
        Input::Configured,
        shutdown.clone(),
        move |addr| {
            let _ = ready_tx.send(addr);
        },
    ));
    let ingest = ready_rx
        .await
        .unwrap()
        .expect("the ingest endpoint listens");

    let posts: Vec<String> = ["kept-1", "kept-2", "gone"]
        .iter()
        .map(|name| post(&run, name))
        .collect();
    assert_eq!(post_ndjson(ingest, &posts, 10).await, 3);
    wait_until(Duration::from_secs(60), "the three mentions stored", || {
        let url = postgres_url.clone();
        async move { query_count(&url, "SELECT count(*) FROM mentions").await == 3 }
    })
    .await;
    assert_eq!(counted_by_views(&postgres_url).await, [3, 3, 3]);

    assert_eq!(
        post_ndjson(ingest, &[retraction(&run, "gone")], 10).await,
        1
    );
    wait_until(
        Duration::from_secs(60),
        "the mention marked deleted",
        || {
            let url = postgres_url.clone();
            async move {
                query_count(
                    &url,
                    "SELECT count(*) FROM mentions WHERE deleted_at IS NOT NULL",
                )
                .await
                    == 1
            }
        },
    )
    .await;

    // Kept, with what was collected, and flagged at the retraction's time.
    let gone = format!("{run}-gone");
    let (client, connection) = tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT text, deleted_at = timestamptz '2026-11-23T10:30:00Z' FROM mentions \
             WHERE native_id = $1",
            &[&gone],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "my Acme order (gone) arrived late");
    assert!(row.get::<_, bool>(1), "deleted at the retraction's time");
    assert_eq!(
        query_count(&postgres_url, "SELECT count(*) FROM mentions").await,
        3
    );
    assert_eq!(
        counted_by_views(&postgres_url).await,
        [2, 2, 2],
        "the views leave the deleted mention out"
    );
    let dataset = earshot_sink::report::load_postgres(&postgres_url.parse().unwrap())
        .await
        .unwrap();
    let figures = earshot_sink::report::analyze(&dataset);
    assert_eq!(figures.mentions, 2, "the report leaves it out too");
    assert_eq!(figures.watchlists[0].mentions, 2);

    shutdown.cancel();
    let summary = pipeline.await.unwrap().unwrap();
    assert_eq!(summary.rejected, 0, "{summary}");
}
