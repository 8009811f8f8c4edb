//! The PostgreSQL target: embedded migrations, a schema check at start, and batch writes.
//!
//! A batch is written in one transaction. Each table's rows are first binary-`COPY`ed straight
//! into the table, under a savepoint: new rows, the steady state, cost what a plain `COPY`
//! costs. If that fails (a row is already there because its range is being replayed, or a row
//! is bad), the savepoint is rolled back and the rows take the careful path: binary `COPY` into
//! a per-connection temporary staging table (`ON COMMIT DELETE ROWS`), then
//! `INSERT … SELECT … ON CONFLICT DO NOTHING`. Every table is keyed by the pipeline's stable
//! ids, so a replayed batch inserts nothing and changes nothing. The one exception is a
//! delivery that failed and was delivered on a later attempt: `delivered` replaces `failed`
//! (never the reverse), see [`OnConflict::PreferDelivered`].
//!
//! Failures: connection problems, timeouts and other server errors are retried with
//! exponential backoff (100 ms to 5 s) until the batch commits or shutdown begins, with the
//! readiness check `sink: postgres reachable` failing meanwhile. A data exception, integrity
//! violation or exceeded limit (SQLSTATE classes 22, 23 and 54, e.g. a NUL byte in a text, a
//! value too long for its index) is a bad row, not a bad database: the batch is then written item by item and only the item PostgreSQL
//! rejects fails.

use std::collections::HashSet;
use std::pin::pin;
use std::time::Duration;

use earshot_core::telemetry::{Metrics, ReadyFlag};
use earshot_core::StageError;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::rows::{AlertRow, DeliveryRow, Item, MatchRow, MentionRow};
use crate::SinkError;

/// Migrations, in order; each runs once per database, in the transaction that records it.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (
        2,
        include_str!("../migrations/0002_sentences_acknowledgements_views.sql"),
    ),
    (
        3,
        include_str!("../migrations/0003_signals_and_route_path.sql"),
    ),
    (
        4,
        include_str!("../migrations/0004_retractions_and_author_id.sql"),
    ),
    (
        5,
        include_str!("../migrations/0005_alert_team_and_kind.sql"),
    ),
    (
        6,
        include_str!("../migrations/0006_views_leave_out_deleted_mentions.sql"),
    ),
];

/// Key of the advisory lock that serializes migrations across sink replicas ("earshot").
const MIGRATION_LOCK_KEY: i64 = 0x0065_6172_7368_6f74;

/// Upper bound on one write attempt; a hung connection is dropped and retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A column the sink writes or expects.
pub struct Column {
    pub name: &'static str,
    pub pg_type: Type,
}

/// A table the sink writes: the columns it copies, plus columns it only expects to exist.
pub struct Table {
    pub name: &'static str,
    pub copied: &'static [Column],
    pub defaulted: &'static [Column],
    /// What a row whose id is already there does.
    pub on_conflict: OnConflict,
}

/// How a written row meets an existing one with the same id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep the existing row: records are immutable facts, a replay changes nothing.
    Keep,
    /// Deliveries: a `delivered` row replaces a `failed` one (the router delivered on a later
    /// attempt, after a restart), never the other way round, so replays still change nothing.
    PreferDelivered,
    /// Alerts: a later record of an alert fills `acknowledged_at` and `resolved_at` when
    /// they are still empty; nothing else changes, and nothing is ever cleared.
    FillAcknowledgements,
}

const fn col(name: &'static str, pg_type: Type) -> Column {
    Column { name, pg_type }
}

pub const MENTIONS: Table = Table {
    name: "mentions",
    copied: &[
        col("id", Type::UUID),
        col("native_id", Type::TEXT),
        col("source_kind", Type::TEXT),
        col("source_instance", Type::TEXT),
        col("url", Type::TEXT),
        col("author_handle", Type::TEXT),
        col("author_name", Type::TEXT),
        col("author_followers", Type::INT8),
        col("author_verified", Type::BOOL),
        col("text", Type::TEXT),
        col("lang_hint", Type::TEXT),
        col("created_at", Type::TIMESTAMPTZ),
        col("collected_at", Type::TIMESTAMPTZ),
        col("likes", Type::INT8),
        col("reposts", Type::INT8),
        col("replies", Type::INT8),
        col("parent_id", Type::TEXT),
        col("conversation_id", Type::TEXT),
        col("has_media", Type::BOOL),
        col("sentiment_neg", Type::FLOAT8),
        col("sentiment_neu", Type::FLOAT8),
        col("sentiment_pos", Type::FLOAT8),
        col("sentiment_compound", Type::FLOAT8),
        col("language", Type::TEXT),
        col("language_confidence", Type::FLOAT8),
        col("spam_score", Type::FLOAT8),
        col("intent", Type::TEXT),
        col("reach", Type::INT8),
        col("urgency", Type::FLOAT8),
        col("enriched_at", Type::TIMESTAMPTZ),
        col("sentences_count", Type::INT4),
        col("sentences_mean_compound", Type::FLOAT8),
        col("sentences_min_compound", Type::FLOAT8),
        col("sentences_max_compound", Type::FLOAT8),
        col("sentences_most_negative", Type::TEXT),
        col("intents", Type::TEXT_ARRAY),
        col("spam_reasons", Type::TEXT_ARRAY),
        col("reach_score", Type::FLOAT8),
        col("input_flags", Type::TEXT_ARRAY),
        col("author_id", Type::TEXT),
        col("deleted_at", Type::TIMESTAMPTZ),
    ],
    defaulted: &[col("written_at", Type::TIMESTAMPTZ)],
    on_conflict: OnConflict::Keep,
};

/// In the order of [`MENTIONS`]' columns.
fn mention_values(m: &MentionRow) -> Vec<&(dyn ToSql + Sync)> {
    vec![
        &m.id,
        &m.native_id,
        &m.source_kind,
        &m.source_instance,
        &m.url,
        &m.author_handle,
        &m.author_name,
        &m.author_followers,
        &m.author_verified,
        &m.text,
        &m.lang_hint,
        &m.created_at,
        &m.collected_at,
        &m.likes,
        &m.reposts,
        &m.replies,
        &m.parent_id,
        &m.conversation_id,
        &m.has_media,
        &m.sentiment_neg,
        &m.sentiment_neu,
        &m.sentiment_pos,
        &m.sentiment_compound,
        &m.language,
        &m.language_confidence,
        &m.spam_score,
        &m.intent,
        &m.reach,
        &m.urgency,
        &m.enriched_at,
        &m.sentences_count,
        &m.sentences_mean_compound,
        &m.sentences_min_compound,
        &m.sentences_max_compound,
        &m.sentences_most_negative,
        &m.intents,
        &m.spam_reasons,
        &m.reach_score,
        &m.input_flags,
        &m.author_id,
        &m.deleted_at,
    ]
}

pub const MENTION_MATCHES: Table = Table {
    name: "mention_matches",
    copied: &[
        col("mention_id", Type::UUID),
        col("watchlist", Type::TEXT),
        col("relevance", Type::FLOAT8),
        col("clause", Type::TEXT),
    ],
    defaulted: &[],
    on_conflict: OnConflict::Keep,
};

fn match_values(m: &MatchRow) -> Vec<&(dyn ToSql + Sync)> {
    vec![&m.mention_id, &m.watchlist, &m.relevance, &m.clause]
}

pub const ALERTS: Table = Table {
    name: "alerts",
    copied: &[
        col("id", Type::UUID),
        col("created_at", Type::TIMESTAMPTZ),
        col("route", Type::TEXT),
        col("watchlist", Type::TEXT),
        col("mention_id", Type::UUID),
        col("mention_url", Type::TEXT),
        col("mention_text", Type::TEXT),
        col("author_handle", Type::TEXT),
        col("score_name", Type::TEXT),
        col("score", Type::FLOAT8),
        col("threshold", Type::FLOAT8),
        col("mention_collected_at", Type::TIMESTAMPTZ),
        col("route_path", Type::TEXT_ARRAY),
        col("review_required", Type::BOOL),
        col("review_topics", Type::TEXT_ARRAY),
        col("acknowledged_at", Type::TIMESTAMPTZ),
        col("resolved_at", Type::TIMESTAMPTZ),
        col("team", Type::TEXT),
        col("kind", Type::TEXT),
    ],
    defaulted: &[],
    on_conflict: OnConflict::FillAcknowledgements,
};

fn alert_values(a: &AlertRow) -> Vec<&(dyn ToSql + Sync)> {
    vec![
        &a.id,
        &a.created_at,
        &a.route,
        &a.watchlist,
        &a.mention_id,
        &a.mention_url,
        &a.mention_text,
        &a.author_handle,
        &a.score_name,
        &a.score,
        &a.threshold,
        &a.mention_collected_at,
        &a.route_path,
        &a.review_required,
        &a.review_topics,
        &a.acknowledged_at,
        &a.resolved_at,
        &a.team,
        &a.kind,
    ]
}

pub const DELIVERIES: Table = Table {
    name: "deliveries",
    copied: &[
        col("id", Type::UUID),
        col("alert_id", Type::UUID),
        col("channel", Type::TEXT),
        col("receiver", Type::TEXT),
        col("status", Type::TEXT),
        col("attempts", Type::INT4),
        col("last_error", Type::TEXT),
        col("delivered_at", Type::TIMESTAMPTZ),
    ],
    defaulted: &[],
    on_conflict: OnConflict::PreferDelivered,
};

fn delivery_values(d: &DeliveryRow) -> Vec<&(dyn ToSql + Sync)> {
    vec![
        &d.id,
        &d.alert_id,
        &d.channel,
        &d.receiver,
        &d.status,
        &d.attempts,
        &d.last_error,
        &d.delivered_at,
    ]
}

pub const TABLES: [&Table; 4] = [&MENTIONS, &MENTION_MATCHES, &ALERTS, &DELIVERIES];

/// The name `information_schema.columns.data_type` gives a type.
fn information_schema_type(pg_type: &Type) -> &'static str {
    match *pg_type {
        Type::UUID => "uuid",
        Type::TEXT => "text",
        Type::INT8 => "bigint",
        Type::INT4 => "integer",
        Type::BOOL => "boolean",
        Type::FLOAT8 => "double precision",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        // information_schema names every array type so; the element type is in udt_name.
        Type::TEXT_ARRAY => "ARRAY",
        _ => "unexpected type",
    }
}

/// The connection settings: `url`, or the URL in the variable `url_env` names. The URL is
/// never echoed in errors: it may hold a password.
pub fn connection_config(
    config: &earshot_core::config::PostgresConfig,
) -> Result<tokio_postgres::Config, SinkError> {
    let (url, key) = match (&config.url, &config.url_env) {
        (Some(url), _) => (url.clone(), "sink.postgres.url".to_owned()),
        (None, Some(name)) => {
            let url = std::env::var(name).map_err(|_| {
                SinkError::Config(format!(
                    "sink.postgres.url_env: the environment variable {name} is not set"
                ))
            })?;
            (url, format!("sink.postgres.url_env ({name})"))
        }
        (None, None) => {
            return Err(SinkError::Config(
                "sink.postgres: set url or url_env".into(),
            ))
        }
    };
    url.parse()
        .map_err(|e| SinkError::Config(format!("{key}: not a PostgreSQL connection URL: {e}")))
}

/// The PostgreSQL target; owned by the sink's writer task.
///
/// It writes on `connections` connections at once: a batch is split by mention or alert id,
/// so that every row of one mention (or alert) goes through the same connection, and the
/// parts are written in concurrent transactions. A batch is done when every part has
/// committed; a part that fails is retried on its own (the rows are idempotent), so the
/// offsets behind a batch are still stored only once all of its rows are in PostgreSQL.
pub struct Postgres {
    target: Target,
    /// One connection per lane; `None` until connected, or after it was lost.
    lanes: Vec<Option<Client>>,
}

/// What every lane shares.
struct Target {
    config: tokio_postgres::Config,
    ready: ReadyFlag,
    metrics: Metrics,
}

/// Why a write did not commit.
enum Failure {
    /// PostgreSQL refused the data itself: `<table>.<column>: <error>`.
    Rejected(String),
    /// Shutdown began before the write succeeded.
    Interrupted,
}

impl Postgres {
    /// Connects (retrying while the server is unreachable, until `stop`), applies pending
    /// migrations and checks that every table has the columns the sink writes.
    ///
    /// The first connection is made here; the other `connections - 1` on their first write.
    pub async fn start(
        config: tokio_postgres::Config,
        connections: usize,
        ready: ReadyFlag,
        metrics: Metrics,
        stop: &CancellationToken,
    ) -> Result<Self, SinkError> {
        let mut postgres = Postgres {
            target: Target {
                config,
                ready,
                metrics,
            },
            lanes: (0..connections.max(1)).map(|_| None).collect(),
        };
        let mut backoff = Backoff::default();
        loop {
            match postgres.target.connect_and_prepare().await {
                Ok(client) => {
                    postgres.lanes[0] = Some(client);
                    postgres.target.ready.set(true);
                    return Ok(postgres);
                }
                Err(SinkError::Postgres(error)) if is_transient(&error) => {
                    tracing::warn!(%error, "PostgreSQL is not reachable yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = stop.cancelled() => return Err(SinkError::Interrupted),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes `items`, split over the connections; returns each item's outcome, in order.
    pub async fn write(
        &mut self,
        items: &[&Item],
        stop: &CancellationToken,
    ) -> Vec<Result<(), StageError>> {
        let lanes = self.lanes.len();
        if lanes == 1 || items.len() < 2 {
            return self.target.write(&mut self.lanes[0], items, stop).await;
        }
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); lanes];
        for (index, item) in items.iter().enumerate() {
            let id = match item {
                Item::Mention { mention, .. } => mention.id,
                Item::Alert { alert, .. } => alert.id,
            };
            parts[(id.as_u64_pair().1 % lanes as u64) as usize].push(index);
        }
        let target = &self.target;
        let written = futures::future::join_all(self.lanes.iter_mut().zip(&parts).map(
            |(lane, part)| async move {
                let rows: Vec<&Item> = part.iter().map(|&index| items[index]).collect();
                target.write(lane, &rows, stop).await
            },
        ))
        .await;
        let mut outcomes: Vec<Option<Result<(), StageError>>> =
            items.iter().map(|_| None).collect();
        for (part, results) in parts.iter().zip(written) {
            for (&index, result) in part.iter().zip(results) {
                outcomes[index] = Some(result);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every item is in one part"))
            .collect()
    }
}

impl Target {
    async fn connect_and_prepare(&self) -> Result<Client, SinkError> {
        let mut client = self.connect_only().await?;
        let applied = migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "applied PostgreSQL migrations");
        }
        check_schema(&client).await?;
        create_staging_tables(&client).await?;
        Ok(client)
    }

    /// A new connection, ready to write (after the schema was checked at start).
    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let client = self.connect_only().await?;
        create_staging_tables(&client).await?;
        Ok(client)
    }

    async fn connect_only(&self) -> Result<Client, tokio_postgres::Error> {
        // TLS is not built in: use a private network, or a local pooler/proxy that terminates it.
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(
            async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "PostgreSQL connection closed");
                }
            }
            .instrument(tracing::info_span!("sink-postgres-connection")),
        );
        Ok(client)
    }

    /// Writes `items` in one transaction on `lane`; returns each item's outcome, in order.
    async fn write(
        &self,
        lane: &mut Option<Client>,
        items: &[&Item],
        stop: &CancellationToken,
    ) -> Vec<Result<(), StageError>> {
        match self.write_with_retry(lane, items, stop).await {
            Ok(()) => items.iter().map(|_| Ok(())).collect(),
            Err(Failure::Interrupted) => {
                items.iter().map(|_| Err(StageError::Interrupted)).collect()
            }
            Err(Failure::Rejected(reason)) if items.len() == 1 => {
                vec![Err(StageError::permanent("rejected", reason))]
            }
            Err(Failure::Rejected(reason)) => {
                tracing::info!(%reason, rows = items.len(), "PostgreSQL rejected a row; writing the batch item by item");
                let mut outcomes = Vec::with_capacity(items.len());
                for item in items {
                    outcomes.push(match self.write_with_retry(lane, &[item], stop).await {
                        Ok(()) => Ok(()),
                        Err(Failure::Rejected(reason)) => {
                            Err(StageError::permanent("rejected", reason))
                        }
                        Err(Failure::Interrupted) => Err(StageError::Interrupted),
                    });
                }
                outcomes
            }
        }
    }

    async fn write_with_retry(
        &self,
        lane: &mut Option<Client>,
        items: &[&Item],
        stop: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut backoff = Backoff::default();
        loop {
            let error = match self.attempt(lane, items).await {
                Ok(()) => {
                    self.ready.set(true);
                    return Ok(());
                }
                Err(AttemptError::Postgres(error)) if is_rejection(&error) => {
                    self.ready.set(true);
                    return Err(Failure::Rejected(describe_rejection(&error)));
                }
                Err(error) => error,
            };
            self.ready.set(false);
            self.metrics
                .errors
                .with_label_values(&["sink", "postgres"])
                .inc();
            if error.connection_lost() {
                *lane = None;
            }
            if stop.is_cancelled() {
                tracing::warn!(%error, "writing to PostgreSQL failed during shutdown; the batch will be replayed");
                return Err(Failure::Interrupted);
            }
            let delay = backoff.next_delay();
            tracing::warn!(%error, retry_in = ?delay, "writing to PostgreSQL failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return Err(Failure::Interrupted),
            }
        }
    }

    async fn attempt(
        &self,
        lane: &mut Option<Client>,
        items: &[&Item],
    ) -> Result<(), AttemptError> {
        if lane.is_none() {
            *lane = Some(self.connect().await?);
        }
        let client = lane.as_mut().expect("connected above");
        match tokio::time::timeout(ATTEMPT_TIMEOUT, write_transaction(client, items)).await {
            Ok(result) => result.map_err(AttemptError::Postgres),
            Err(_) => Err(AttemptError::Timeout),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{}", describe_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no answer within {ATTEMPT_TIMEOUT:?}")]
    Timeout,
}

impl AttemptError {
    /// The connection is gone or in an unknown state: reconnect before the next attempt.
    fn connection_lost(&self) -> bool {
        match self {
            AttemptError::Timeout => true,
            AttemptError::Postgres(error) => error.is_closed() || error.as_db_error().is_none(),
        }
    }
}

/// One transaction: stage every table's rows, move them, commit.
async fn write_transaction(
    client: &mut Client,
    items: &[&Item],
) -> Result<(), tokio_postgres::Error> {
    // Dedupe within the batch: a mention arrives once per matched watchlist.
    let mut mention_ids = HashSet::new();
    let mut match_keys = HashSet::new();
    let mut delivery_ids = HashSet::new();
    let (mut mentions, mut matches, mut alerts, mut deliveries) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for item in items {
        match item {
            Item::Mention {
                mention,
                matches: rows,
            } => {
                // A post and its retraction may share a batch: both are staged.
                if mention_ids.insert((mention.id, mention.deleted_at.is_some())) {
                    mentions.push(mention);
                }
                matches.extend(
                    rows.iter()
                        .filter(|m| match_keys.insert((m.mention_id, m.watchlist.as_str()))),
                );
            }
            Item::Alert {
                alert,
                deliveries: rows,
            } => {
                // Every copy is staged: a later record of the alert may carry its
                // acknowledgement, and the insert keeps the most complete one.
                alerts.push(alert);
                deliveries.extend(rows.iter().filter(|d| delivery_ids.insert(d.id)));
            }
        }
    }
    // Posts before retractions, so that a post and its retraction in one batch insert the
    // post (which the retraction then marks), not a text-less row.
    mentions.sort_by_key(|m| m.deleted_at.is_some());
    let mut transaction = client.transaction().await?;
    let staged = copy_and_insert(&mut transaction, &MENTIONS, &mentions, mention_values).await?;
    // Straight in, a retraction is its own new row; staged, it may retract a stored post.
    if staged && mentions.iter().any(|m| m.deleted_at.is_some()) {
        transaction.batch_execute(MARK_DELETED).await?;
    }
    copy_and_insert(&mut transaction, &MENTION_MATCHES, &matches, match_values).await?;
    copy_and_insert(&mut transaction, &ALERTS, &alerts, alert_values).await?;
    copy_and_insert(&mut transaction, &DELIVERIES, &deliveries, delivery_values).await?;
    transaction.commit().await
}

/// Marks the stored posts that the batch's retractions retract, once: the first deletion
/// time stays, so replays change nothing.
const MARK_DELETED: &str = "UPDATE mentions SET deleted_at = staged.deleted_at \
     FROM pg_temp.staging_mentions staged \
     WHERE staged.deleted_at IS NOT NULL AND mentions.id = staged.id AND mentions.deleted_at IS NULL";

/// Writes `rows` into `table`; returns whether they went through the staging table.
async fn copy_and_insert<R>(
    transaction: &mut Transaction<'_>,
    table: &Table,
    rows: &[&R],
    values: fn(&R) -> Vec<&(dyn ToSql + Sync)>,
) -> Result<bool, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(false);
    }
    let name = table.name;
    // New rows go straight in. Any server error (a key already there, a bad row) undoes only
    // this table's rows, and the staged path below decides row by row.
    let direct = transaction.savepoint("direct_copy").await?;
    match copy_rows(&direct, name, table, rows, values).await {
        Ok(()) => return direct.commit().await.map(|()| false),
        Err(error) if error.as_db_error().is_some() => {
            tracing::debug!(table = name, error = %describe_error(&error), "direct COPY refused; staging the rows");
            direct.rollback().await?;
        }
        Err(error) => return Err(error),
    }
    copy_rows(
        transaction,
        &format!("pg_temp.staging_{name}"),
        table,
        rows,
        values,
    )
    .await?;
    let columns = column_list(table);
    let insert = match table.on_conflict {
        OnConflict::Keep => format!(
            "INSERT INTO {name} ({columns}) SELECT {columns} FROM pg_temp.staging_{name} ON CONFLICT DO NOTHING"
        ),
        // DO UPDATE may touch a row once per statement: one staged row per id, delivered first.
        OnConflict::PreferDelivered => format!(
            "INSERT INTO {name} ({columns}) \
             SELECT DISTINCT ON (id) {columns} FROM pg_temp.staging_{name} ORDER BY id, (status = 'delivered') DESC \
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, \
             last_error = EXCLUDED.last_error, delivered_at = EXCLUDED.delivered_at \
             WHERE {name}.status <> 'delivered' AND EXCLUDED.status = 'delivered'"
        ),
        // An alert's later records (acknowledged, resolved) fill these in; an earlier one,
        // replayed, never clears them. One staged row per id, the most complete first.
        OnConflict::FillAcknowledgements => format!(
            "INSERT INTO {name} ({columns}) \
             SELECT DISTINCT ON (id) {columns} FROM pg_temp.staging_{name} \
             ORDER BY id, resolved_at IS NULL, acknowledged_at IS NULL \
             ON CONFLICT (id) DO UPDATE SET \
             acknowledged_at = COALESCE({name}.acknowledged_at, EXCLUDED.acknowledged_at), \
             resolved_at = COALESCE({name}.resolved_at, EXCLUDED.resolved_at) \
             WHERE ({name}.acknowledged_at IS NULL AND EXCLUDED.acknowledged_at IS NOT NULL) \
             OR ({name}.resolved_at IS NULL AND EXCLUDED.resolved_at IS NOT NULL)"
        ),
    };
    transaction.batch_execute(&insert).await?;
    Ok(true)
}

/// Binary `COPY` of `rows` into `target`, which has `table`'s copied columns.
async fn copy_rows<R>(
    transaction: &Transaction<'_>,
    target: &str,
    table: &Table,
    rows: &[&R],
    values: fn(&R) -> Vec<&(dyn ToSql + Sync)>,
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction
        .copy_in(&format!(
            "COPY {target} ({}) FROM STDIN (FORMAT binary)",
            column_list(table)
        ))
        .await?;
    let types: Vec<Type> = table.copied.iter().map(|c| c.pg_type.clone()).collect();
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in rows {
        writer.as_mut().write(&values(row)).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Staging tables live as long as the connection; their rows vanish at each commit.
async fn create_staging_tables(client: &Client) -> Result<(), tokio_postgres::Error> {
    let mut ddl = String::new();
    for table in TABLES {
        ddl.push_str(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS staging_{name} ON COMMIT DELETE ROWS AS SELECT {columns} FROM {name} WITH NO DATA;",
            name = table.name,
            columns = column_list(table),
        ));
    }
    client.batch_execute(&ddl).await
}

fn column_list(table: &Table) -> String {
    table
        .copied
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connects once, applies pending [`MIGRATIONS`] and checks the schema; returns the versions
/// applied.
pub async fn migrate_database(config: &tokio_postgres::Config) -> Result<Vec<i32>, SinkError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let applied = migrate(&mut client).await?;
    check_schema(&client).await?;
    drop(client);
    // The connection ends once the client is gone; its error (if any) was already reported.
    let _ = connection.await;
    Ok(applied)
}

/// Applies pending [`MIGRATIONS`] in one transaction under an advisory lock, so replicas that
/// start together apply each migration once. Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS earshot_schema_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let done: Vec<i32> = transaction
        .query("SELECT version FROM earshot_schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if !done.contains(version) {
            transaction.batch_execute(sql).await?;
            transaction
                .execute(
                    "INSERT INTO earshot_schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            applied.push(*version);
        }
    }
    transaction.commit().await?;
    Ok(applied)
}

/// Checks that every table in the current schema has the columns the sink writes, with the
/// types it writes; reports every mismatch at once.
pub async fn check_schema(client: &Client) -> Result<(), SinkError> {
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&names],
        )
        .await?;
    let found: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let problems = schema_problems(&found);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SinkError::Schema(problems.join("\n")))
    }
}

/// What is missing or mistyped, given `(table, column, data_type)` rows.
fn schema_problems(found: &[(String, String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for table in TABLES {
        for column in table.copied.iter().chain(table.defaulted) {
            let expected = information_schema_type(&column.pg_type);
            match found
                .iter()
                .find(|(t, c, _)| t == table.name && c == column.name)
            {
                None => problems.push(format!(
                    "{}.{}: column is missing (expected {expected})",
                    table.name, column.name
                )),
                Some((_, _, actual)) if actual != expected => problems.push(format!(
                    "{}.{}: column is {actual}, expected {expected}",
                    table.name, column.name
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// SQLSTATE class 22 (data exception), 23 (integrity constraint violation) or 54 (program
/// limit exceeded, e.g. a value too long for its index): the row is bad, and retrying it would
/// block the sink for good.
fn is_rejection(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| is_rejection_code(code.code()))
}

fn is_rejection_code(sqlstate: &str) -> bool {
    ["22", "23", "54"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// Worth retrying at start: the server is not (yet) reachable or not accepting connections.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => ["08", "53", "57"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    }
}

/// The server's message when there is one (`Display` of the error only says "db error").
pub fn describe_error(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => db.to_string(),
        (None, Some(source)) => format!("{error}: {source}"),
        (None, None) => error.to_string(),
    }
}

/// `<table>.<column>: <message>`, from the error's fields or, for `COPY`, its context line
/// (`COPY staging_mentions, line 1, column text`).
fn describe_rejection(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let (context_table, context_column) =
        db.where_().map(parse_copy_context).unwrap_or((None, None));
    let table = db.table().or(context_table).unwrap_or("?");
    let table = table.strip_prefix("staging_").unwrap_or(table);
    let column = db.column().or(context_column).unwrap_or("?");
    format!("{table}.{column}: {}", db.message())
}

fn parse_copy_context(context: &str) -> (Option<&str>, Option<&str>) {
    let Some(rest) = context.lines().find_map(|line| line.strip_prefix("COPY ")) else {
        return (None, None);
    };
    let mut parts = rest.split(", ");
    let table = parts.next().map(|t| t.rsplit('.').next().unwrap_or(t));
    let column = parts
        .find_map(|p| p.strip_prefix("column "))
        .map(|c| c.split(':').next().unwrap_or(c));
    (table, column)
}

/// Exponential backoff from 100 ms, doubling, capped at 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: INITIAL_BACKOFF,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_connection_config(
        url: Option<&str>,
        url_env: Option<&str>,
        expected: Result<&str, &str>,
    ) {
        let config = earshot_core::config::PostgresConfig {
            url: url.map(String::from),
            url_env: url_env.map(String::from),
            ..Default::default()
        };
        match (connection_config(&config), expected) {
            (Ok(got), Ok(dbname)) => assert_eq!(got.get_dbname(), Some(dbname)),
            (Err(got), Err(message)) => assert!(got.to_string().contains(message), "{got}"),
            (got, expected) => panic!("{url:?}/{url_env:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn connection_settings_come_from_url_or_the_named_variable() {
        check_connection_config(Some("postgres://u@h:5432/db"), None, Ok("db"));
        check_connection_config(
            Some("postgres://u@h:notaport/db"),
            None,
            Err("sink.postgres.url: not a PostgreSQL connection URL"),
        );
        check_connection_config(
            None,
            Some("EARSHOT_SINK_TEST_UNSET_VARIABLE"),
            Err("EARSHOT_SINK_TEST_UNSET_VARIABLE is not set"),
        );
        check_connection_config(None, None, Err("set url or url_env"));
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    fn check_rejection(sqlstate: &str, expected: bool) {
        assert_eq!(is_rejection_code(sqlstate), expected, "SQLSTATE {sqlstate}");
    }

    #[test]
    fn only_data_and_integrity_errors_reject_rows() {
        check_rejection("22021", true); // invalid byte sequence (NUL in text)
        check_rejection("22008", true); // datetime field overflow
        check_rejection("23502", true); // not null violation
        check_rejection("54000", true); // index row size exceeds the maximum
        check_rejection("08006", false); // connection failure
        check_rejection("57P01", false); // admin shutdown
        check_rejection("40001", false); // serialization failure
        check_rejection("42703", false); // undefined column
    }

    fn check_context(context: &str, expected: (Option<&str>, Option<&str>)) {
        assert_eq!(parse_copy_context(context), expected, "{context:?}");
    }

    #[test]
    fn copy_context_names_table_and_column() {
        check_context(
            "COPY staging_mentions, line 1, column text",
            (Some("staging_mentions"), Some("text")),
        );
        check_context(
            "COPY pg_temp_3.staging_alerts, line 2, column mention_text: \"x\"",
            (Some("staging_alerts"), Some("mention_text")),
        );
        check_context(
            "COPY staging_mentions, line 1",
            (Some("staging_mentions"), None),
        );
        check_context("SQL statement \"INSERT …\"", (None, None));
    }

    #[test]
    fn schema_check_names_missing_and_mistyped_columns() {
        let mut found: Vec<(String, String, String)> = TABLES
            .iter()
            .flat_map(|t| {
                t.copied.iter().chain(t.defaulted).map(|c| {
                    (
                        t.name.to_owned(),
                        c.name.to_owned(),
                        information_schema_type(&c.pg_type).to_owned(),
                    )
                })
            })
            .collect();
        assert!(schema_problems(&found).is_empty());
        found.retain(|(t, c, _)| !(t == "mentions" && c == "urgency"));
        found
            .iter_mut()
            .filter(|(t, c, _)| t == "deliveries" && c == "attempts")
            .for_each(|row| row.2 = "text".into());
        assert_eq!(
            schema_problems(&found),
            [
                "mentions.urgency: column is missing (expected double precision)",
                "deliveries.attempts: column is text, expected integer",
            ]
        );
    }
}
