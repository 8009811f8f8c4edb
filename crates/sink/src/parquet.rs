//! The Parquet target: `mentions` and `alerts` as Snappy-compressed Parquet files, partitioned
//! as `<dir>/<table>/date=YYYY-MM-DD/hour=HH/` by the UTC hour of each row's `collected_at`
//! (mentions) or `created_at` (alerts), one file at a time per (partition directory, Kafka
//! topic, Kafka partition).
//!
//! Exactly once per record, by offsets in file names:
//! - Rows are appended to an open `part-<topic>-<partition>-<first offset>.parquet.tmp`; the
//!   file is finished, fsynced and renamed to
//!   `part-<topic>-<partition>-<first offset>-<last offset>.parquet` when it holds `roll_rows`
//!   rows or about `roll_bytes` bytes, has been open `roll_secs`, or at shutdown. Only then do the records
//!   behind its rows complete, so no offset is ever stored for a row that exists only in a
//!   `.tmp` file.
//! - At start, leftover `.tmp` files are deleted (their records were never acknowledged and
//!   will be read again), and the names of the finished files are read into an index of
//!   offset ranges per (directory, topic, partition). The index keeps one range per file
//!   (files closed while running are added), so it grows with the archive: move old
//!   partitions elsewhere when the directory holds millions of files.
//! - A record whose offset a finished file of its own directory, topic and partition covers
//!   is already written: it completes at once and writes nothing. Records of one partition
//!   arrive in offset order, so a file covering `first..=last` holds every record of that range
//!   that belongs in its directory (except rows PostgreSQL rejected, which it rejects again).
//!   A crash after a rename but before the offsets are committed therefore replays records
//!   that write nothing, and a crash before the rename rewrites the deleted `.tmp` file's rows.
//!   A record read again while its file is still open joins that file without a second row.
//!
//! What this does not dedupe: the enriched topic holds one copy of a mention per matched
//! watchlist, keyed by watchlist, so copies may sit in different Kafka partitions and land in
//! different files. Readers of `mentions` dedupe on `id` (`SELECT DISTINCT ON (id) …`, or
//! `QUALIFY row_number() OVER (PARTITION BY id) = 1`); the `watchlists` column lists every
//! match of the mention. The offsets in the names are those of the topic as it is: a topic
//! deleted and recreated starts its offsets again, so move the old files away first.
//!
//! Columns are those of the PostgreSQL tables (ids as UUID strings, timestamps as
//! `Timestamp(Microsecond, "UTC")`, `written_at` the time the row was appended; the alerts'
//! `team` and `kind` as in migration 5), plus the mentions' `watchlists` and the alerts'
//! `receivers` (lists of strings); match and delivery rows are in PostgreSQL only.
//! Each sink replica needs a directory of its own: the start-up cleanup would delete another
//! replica's open files.
//!
//! File I/O is synchronous, on the writer task: appends only encode into the writer's
//! buffers, and the disk is touched when a file is finished, once per roll.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::time::Instant;
use uuid::Uuid;

use crate::rows::{AlertRow, MentionRow};

/// A row type written to Parquet.
pub trait ParquetRow {
    /// Directory under the root, and table name.
    const TABLE: &'static str;
    /// What dedupes the rows of one file's batch (a mention's copies make one row).
    fn id(&self) -> Uuid;
    /// The time that picks the row's partition and names its file.
    fn partition_time(&self) -> DateTime<Utc>;
    fn record_batch(
        rows: &[&Self],
        written_at: DateTime<Utc>,
    ) -> Result<RecordBatch, arrow_schema::ArrowError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ParquetError {
    pub path: PathBuf,
    pub reason: String,
}

impl ParquetError {
    fn new(path: &Path, reason: impl ToString) -> Self {
        ParquetError {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Where a record sits in Kafka (or the in-memory bus): names the files its row goes to and
/// recognizes it when it is read again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// One file at a time per partition directory, topic and Kafka partition.
type FileKey = (PathBuf, Arc<str>, i32);

/// The open files of both tables. `W` is what waits for a file to be closed (a completion).
pub struct ParquetFiles<W> {
    dir: PathBuf,
    roll_rows: usize,
    roll_bytes: u64,
    roll_after: Duration,
    open: HashMap<FileKey, OpenFile<W>>,
    /// Offset ranges of the finished files: a record in one of them is already written.
    finished: HashMap<FileKey, Vec<(i64, i64)>>,
}

struct OpenFile<W> {
    writer: ArrowWriter<File>,
    partition_dir: PathBuf,
    tmp_path: PathBuf,
    /// `part-<topic>-<partition>`.
    stem: String,
    first_offset: i64,
    last_offset: i64,
    rows: usize,
    opened: Instant,
    waiters: Vec<W>,
}

/// What one file of a batch receives.
struct Group<'a, R, W> {
    rows: Vec<&'a R>,
    ids: HashSet<Uuid>,
    waiters: Vec<W>,
    first_offset: i64,
    last_offset: i64,
}

impl<W> ParquetFiles<W> {
    /// Indexes the finished files under `config.dir` (run [`remove_leftovers`] first).
    pub fn new(config: &earshot_core::config::ParquetConfig) -> Result<Self, ParquetError> {
        let mut finished: HashMap<FileKey, Vec<(i64, i64)>> = HashMap::new();
        for table in [MentionRow::TABLE, AlertRow::TABLE] {
            index_finished_files(&config.dir.join(table), &mut finished)?;
        }
        Ok(ParquetFiles {
            dir: config.dir.clone(),
            roll_rows: config.roll_rows.max(1),
            roll_bytes: config.roll_bytes,
            roll_after: Duration::from_secs(config.roll_secs),
            open: HashMap::new(),
            finished,
        })
    }

    /// How many finished files the index knows.
    pub fn finished_files(&self) -> usize {
        self.finished.values().map(Vec::len).sum()
    }

    /// Appends rows, each with its record's position and what waits for it, in the order the
    /// records were read. A record already in a finished file is released at once without
    /// writing; one already in an open file waits for that file without a second row; a row
    /// given twice for one file (by id) is written once. Returns the waiters released (the
    /// already written records and those of the files that rolled).
    pub fn append<R: ParquetRow>(
        &mut self,
        rows: Vec<(&R, Position, W)>,
    ) -> Result<Vec<W>, ParquetError> {
        let mut released = Vec::new();
        let mut groups: BTreeMap<FileKey, Group<'_, R, W>> = BTreeMap::new();
        let mut replayed = 0usize;
        for (row, position, waiter) in rows {
            let partition = partition_dir(&self.dir, R::TABLE, row.partition_time());
            let key = (partition, position.topic, position.partition);
            let offset = position.offset;
            if self.is_finished(&key, offset) {
                replayed += 1;
                released.push(waiter);
                continue;
            }
            if let Some(file) = self.open.get_mut(&key) {
                if (file.first_offset..=file.last_offset).contains(&offset) {
                    file.waiters.push(waiter);
                    continue;
                }
                if offset < file.first_offset {
                    // Read again from before this file (after a rebalance): the file's name
                    // must keep covering only what it holds, so it is finished first.
                    released.extend(self.close(&key)?);
                }
            }
            let group = groups.entry(key).or_insert_with(|| Group {
                rows: Vec::new(),
                ids: HashSet::new(),
                waiters: Vec::new(),
                first_offset: offset,
                last_offset: offset,
            });
            if group.ids.insert(row.id()) {
                group.rows.push(row);
            }
            group.waiters.push(waiter);
            group.first_offset = group.first_offset.min(offset);
            group.last_offset = group.last_offset.max(offset);
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                table = R::TABLE,
                "records already in finished Parquet files completed without writing"
            );
        }
        let written_at = Utc::now();
        for (key, group) in groups {
            let batch = R::record_batch(&group.rows, written_at)
                .map_err(|e| ParquetError::new(&key.0, e))?;
            if !self.open.contains_key(&key) {
                let file = OpenFile::create(&key, group.first_offset, &batch)?;
                self.open.insert(key.clone(), file);
            }
            let file = self.open.get_mut(&key).expect("opened above");
            file.writer
                .write(&batch)
                .map_err(|e| ParquetError::new(&file.tmp_path, e))?;
            file.rows += batch.num_rows();
            file.last_offset = file.last_offset.max(group.last_offset);
            file.waiters.extend(group.waiters);
            if file.rows >= self.roll_rows || file.size() >= self.roll_bytes {
                released.extend(self.close(&key)?);
            }
        }
        Ok(released)
    }

    /// Closes the files open for `roll_secs` or longer; returns their waiters.
    pub fn roll_due(&mut self, now: Instant) -> Result<Vec<W>, ParquetError> {
        let due: Vec<FileKey> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened + self.roll_after <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let mut released = Vec::new();
        for key in due {
            released.extend(self.close(&key)?);
        }
        Ok(released)
    }

    /// Closes every open file; returns their waiters.
    pub fn close_all(&mut self) -> Result<Vec<W>, ParquetError> {
        let keys: Vec<FileKey> = self.open.keys().cloned().collect();
        let mut released = Vec::new();
        for key in keys {
            released.extend(self.close(&key)?);
        }
        Ok(released)
    }

    /// When the oldest open file is due to roll.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|f| f.opened + self.roll_after).min()
    }

    /// How many waiters the open files hold.
    pub fn waiting(&self) -> usize {
        self.open.values().map(|f| f.waiters.len()).sum()
    }

    fn is_finished(&self, key: &FileKey, offset: i64) -> bool {
        self.finished.get(key).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&offset))
        })
    }

    fn close(&mut self, key: &FileKey) -> Result<Vec<W>, ParquetError> {
        let Some(file) = self.open.remove(key) else {
            return Ok(Vec::new());
        };
        let range = (file.first_offset, file.last_offset);
        let waiters = file.close()?;
        self.finished.entry(key.clone()).or_default().push(range);
        Ok(waiters)
    }
}

impl<W> OpenFile<W> {
    /// Bytes written so far plus the row group being built in memory.
    fn size(&self) -> u64 {
        self.writer.bytes_written() as u64 + self.writer.in_progress_size() as u64
    }

    fn create(key: &FileKey, first_offset: i64, first: &RecordBatch) -> Result<Self, ParquetError> {
        let (partition_dir, topic, partition) = key;
        std::fs::create_dir_all(partition_dir).map_err(|e| ParquetError::new(partition_dir, e))?;
        let stem = format!("part-{topic}-{partition}");
        let tmp_path = partition_dir.join(format!("{stem}-{first_offset}.parquet.tmp"));
        let file = File::create(&tmp_path).map_err(|e| ParquetError::new(&tmp_path, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file, first.schema(), Some(properties))
            .map_err(|e| ParquetError::new(&tmp_path, e))?;
        Ok(OpenFile {
            writer,
            partition_dir: partition_dir.clone(),
            tmp_path,
            stem,
            first_offset,
            last_offset: first_offset,
            rows: 0,
            opened: Instant::now(),
            waiters: Vec::new(),
        })
    }

    /// Finishes the file, makes it durable and gives it its final name. A file of that name
    /// already there (written before a crash, its `.tmp` rewritten since) holds the same
    /// records and is replaced.
    fn close(self) -> Result<Vec<W>, ParquetError> {
        let final_path = self.partition_dir.join(format!(
            "{}-{}-{}.parquet",
            self.stem, self.first_offset, self.last_offset
        ));
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ParquetError::new(&self.tmp_path, e))?;
        file.sync_all()
            .map_err(|e| ParquetError::new(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &final_path)
            .map_err(|e| ParquetError::new(&final_path, e))?;
        // The rename is durable once the directory is.
        File::open(&self.partition_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ParquetError::new(&self.partition_dir, e))?;
        tracing::info!(path = %final_path.display(), rows = self.rows, "Parquet file written");
        Ok(self.waiters)
    }
}

/// The topic, partition and offset range a finished file's name gives:
/// `part-<topic>-<partition>-<first>-<last>.parquet`. Topic names may hold `-`, so the name
/// is read from the right. Files named otherwise (by earlier versions) give nothing.
pub fn parse_file_name(name: &str) -> Option<(String, i32, i64, i64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.rsplitn(4, '-');
    let last: i64 = parts.next()?.parse().ok()?;
    let first: i64 = parts.next()?.parse().ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|t| !t.is_empty())?;
    (first <= last).then(|| (topic.to_owned(), partition, first, last))
}

fn index_finished_files(
    dir: &Path,
    finished: &mut HashMap<FileKey, Vec<(i64, i64)>>,
) -> Result<(), ParquetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ParquetError::new(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ParquetError::new(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ParquetError::new(&path, e))?;
        if kind.is_dir() {
            index_finished_files(&path, finished)?;
        } else if let Some((topic, partition, first, last)) =
            parse_file_name(&entry.file_name().to_string_lossy())
        {
            finished
                .entry((dir.to_owned(), Arc::from(topic), partition))
                .or_default()
                .push((first, last));
        }
    }
    Ok(())
}

/// `<dir>/<table>/date=YYYY-MM-DD/hour=HH`, in UTC.
pub fn partition_dir(dir: &Path, table: &str, time: DateTime<Utc>) -> PathBuf {
    dir.join(table)
        .join(format!("date={}", time.format("%Y-%m-%d")))
        .join(format!("hour={}", time.format("%H")))
}

/// Deletes `*.parquet.tmp` files left under the tables' directories by an earlier run.
pub fn remove_leftovers(dir: &Path) -> Result<usize, ParquetError> {
    let mut removed = 0;
    for table in [MentionRow::TABLE, AlertRow::TABLE] {
        removed += remove_tmp_files(&dir.join(table))?;
    }
    Ok(removed)
}

fn remove_tmp_files(dir: &Path) -> Result<usize, ParquetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ParquetError::new(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| ParquetError::new(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ParquetError::new(&path, e))?;
        if kind.is_dir() {
            removed += remove_tmp_files(&path)?;
        } else if path.to_string_lossy().ends_with(".parquet.tmp") {
            std::fs::remove_file(&path).map_err(|e| ParquetError::new(&path, e))?;
            tracing::info!(path = %path.display(), "deleted an unfinished Parquet file; its records will be replayed");
            removed += 1;
        }
    }
    Ok(removed)
}

impl ParquetRow for MentionRow {
    const TABLE: &'static str = "mentions";

    /// A post's copies make one row; its retraction is a row of its own, even in the same
    /// file.
    fn id(&self) -> Uuid {
        match self.deleted_at {
            None => self.id,
            Some(_) => Uuid::new_v5(&self.id, b"retraction"),
        }
    }

    fn partition_time(&self) -> DateTime<Utc> {
        self.collected_at
    }

    fn record_batch(
        rows: &[&Self],
        written_at: DateTime<Utc>,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_from_iter_with_nullable([
            ("id", uuids(rows.iter().map(|r| r.id)), false),
            (
                "native_id",
                strings(rows.iter().map(|r| r.native_id.as_str())),
                false,
            ),
            (
                "source_kind",
                strings(rows.iter().map(|r| r.source_kind.as_str())),
                false,
            ),
            (
                "source_instance",
                strings(rows.iter().map(|r| r.source_instance.as_str())),
                false,
            ),
            (
                "url",
                optional_strings(rows.iter().map(|r| r.url.as_deref())),
                true,
            ),
            (
                "author_handle",
                strings(rows.iter().map(|r| r.author_handle.as_str())),
                false,
            ),
            (
                "author_name",
                optional_strings(rows.iter().map(|r| r.author_name.as_deref())),
                true,
            ),
            (
                "author_followers",
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|r| r.author_followers),
                )),
                true,
            ),
            (
                "author_verified",
                booleans(rows.iter().map(|r| r.author_verified)),
                false,
            ),
            ("text", strings(rows.iter().map(|r| r.text.as_str())), false),
            (
                "lang_hint",
                optional_strings(rows.iter().map(|r| r.lang_hint.as_deref())),
                true,
            ),
            (
                "created_at",
                timestamps(rows.iter().map(|r| r.created_at)),
                false,
            ),
            (
                "collected_at",
                timestamps(rows.iter().map(|r| r.collected_at)),
                false,
            ),
            ("likes", int64s(rows.iter().map(|r| r.likes)), false),
            ("reposts", int64s(rows.iter().map(|r| r.reposts)), false),
            ("replies", int64s(rows.iter().map(|r| r.replies)), false),
            (
                "parent_id",
                optional_strings(rows.iter().map(|r| r.parent_id.as_deref())),
                true,
            ),
            (
                "conversation_id",
                optional_strings(rows.iter().map(|r| r.conversation_id.as_deref())),
                true,
            ),
            (
                "has_media",
                booleans(rows.iter().map(|r| r.has_media)),
                false,
            ),
            (
                "sentiment_neg",
                float64s(rows.iter().map(|r| r.sentiment_neg)),
                false,
            ),
            (
                "sentiment_neu",
                float64s(rows.iter().map(|r| r.sentiment_neu)),
                false,
            ),
            (
                "sentiment_pos",
                float64s(rows.iter().map(|r| r.sentiment_pos)),
                false,
            ),
            (
                "sentiment_compound",
                float64s(rows.iter().map(|r| r.sentiment_compound)),
                false,
            ),
            (
                "language",
                optional_strings(rows.iter().map(|r| r.language.as_deref())),
                true,
            ),
            (
                "language_confidence",
                float64s(rows.iter().map(|r| r.language_confidence)),
                false,
            ),
            (
                "spam_score",
                float64s(rows.iter().map(|r| r.spam_score)),
                false,
            ),
            (
                "intent",
                strings(rows.iter().map(|r| r.intent.as_str())),
                false,
            ),
            ("reach", int64s(rows.iter().map(|r| r.reach)), false),
            ("urgency", float64s(rows.iter().map(|r| r.urgency)), false),
            (
                "enriched_at",
                timestamps(rows.iter().map(|r| r.enriched_at)),
                false,
            ),
            (
                "sentences_count",
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.sentences_count),
                )),
                false,
            ),
            (
                "sentences_mean_compound",
                float64s(rows.iter().map(|r| r.sentences_mean_compound)),
                false,
            ),
            (
                "sentences_min_compound",
                float64s(rows.iter().map(|r| r.sentences_min_compound)),
                false,
            ),
            (
                "sentences_max_compound",
                float64s(rows.iter().map(|r| r.sentences_max_compound)),
                false,
            ),
            (
                "sentences_most_negative",
                strings(rows.iter().map(|r| r.sentences_most_negative.as_str())),
                false,
            ),
            (
                "intents",
                string_lists(rows.iter().map(|r| &r.intents)),
                false,
            ),
            (
                "spam_reasons",
                string_lists(rows.iter().map(|r| &r.spam_reasons)),
                false,
            ),
            (
                "reach_score",
                float64s(rows.iter().map(|r| r.reach_score)),
                false,
            ),
            (
                "input_flags",
                string_lists(rows.iter().map(|r| &r.input_flags)),
                false,
            ),
            (
                "watchlists",
                string_lists(rows.iter().map(|r| &r.watchlists)),
                false,
            ),
            (
                "author_id",
                optional_strings(rows.iter().map(|r| r.author_id.as_deref())),
                true,
            ),
            // Set on a retraction's row: the post `id` was deleted at its source.
            (
                "deleted_at",
                Arc::new(
                    TimestampMicrosecondArray::from_iter(
                        rows.iter()
                            .map(|r| r.deleted_at.map(|t| t.timestamp_micros())),
                    )
                    .with_timezone("UTC"),
                ),
                true,
            ),
            (
                "written_at",
                timestamps(rows.iter().map(|_| written_at)),
                false,
            ),
        ])
    }
}

impl ParquetRow for AlertRow {
    const TABLE: &'static str = "alerts";

    fn id(&self) -> Uuid {
        self.id
    }

    fn partition_time(&self) -> DateTime<Utc> {
        self.created_at
    }

    fn record_batch(
        rows: &[&Self],
        _written_at: DateTime<Utc>,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_from_iter_with_nullable([
            ("id", uuids(rows.iter().map(|r| r.id)), false),
            (
                "created_at",
                timestamps(rows.iter().map(|r| r.created_at)),
                false,
            ),
            (
                "route",
                strings(rows.iter().map(|r| r.route.as_str())),
                false,
            ),
            (
                "watchlist",
                strings(rows.iter().map(|r| r.watchlist.as_str())),
                false,
            ),
            (
                "mention_id",
                uuids(rows.iter().map(|r| r.mention_id)),
                false,
            ),
            (
                "mention_url",
                optional_strings(rows.iter().map(|r| r.mention_url.as_deref())),
                true,
            ),
            (
                "mention_text",
                strings(rows.iter().map(|r| r.mention_text.as_str())),
                false,
            ),
            (
                "author_handle",
                strings(rows.iter().map(|r| r.author_handle.as_str())),
                false,
            ),
            (
                "score_name",
                strings(rows.iter().map(|r| r.score_name.as_str())),
                false,
            ),
            ("score", float64s(rows.iter().map(|r| r.score)), false),
            (
                "threshold",
                float64s(rows.iter().map(|r| r.threshold)),
                false,
            ),
            (
                "mention_collected_at",
                timestamps(rows.iter().map(|r| r.mention_collected_at)),
                false,
            ),
            (
                "route_path",
                string_lists(rows.iter().map(|r| &r.route_path)),
                false,
            ),
            (
                "review_required",
                booleans(rows.iter().map(|r| r.review_required)),
                false,
            ),
            (
                "review_topics",
                string_lists(rows.iter().map(|r| &r.review_topics)),
                false,
            ),
            (
                "receivers",
                string_lists(rows.iter().map(|r| &r.receivers)),
                false,
            ),
            (
                "acknowledged_at",
                optional_timestamps(rows.iter().map(|r| r.acknowledged_at)),
                true,
            ),
            (
                "resolved_at",
                optional_timestamps(rows.iter().map(|r| r.resolved_at)),
                true,
            ),
            (
                "team",
                optional_strings(rows.iter().map(|r| r.team.as_deref())),
                true,
            ),
            ("kind", strings(rows.iter().map(|r| r.kind.as_str())), false),
        ])
    }
}

fn uuids(values: impl Iterator<Item = Uuid>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        values.map(|id| id.hyphenated().to_string()),
    ))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn string_lists<'a>(values: impl Iterator<Item = &'a Vec<String>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in values {
        for value in list {
            builder.values().append_value(value);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn int64s(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn float64s(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

fn booleans(values: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from_iter(values.map(Some)))
}

fn optional_timestamps(values: impl Iterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter(values.map(|t| t.map(|t| t.timestamp_micros())))
            .with_timezone("UTC"),
    )
}

fn timestamps(values: impl Iterator<Item = DateTime<Utc>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter_values(values.map(|t| t.timestamp_micros()))
            .with_timezone("UTC"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::timestamp;

    fn check_partition(micros: i64, expected: &str) {
        let time = timestamp("t", micros).unwrap();
        assert_eq!(
            partition_dir(Path::new("/data"), "mentions", time),
            Path::new(expected),
            "{micros}"
        );
    }

    #[test]
    fn partitions_are_utc_date_and_hour() {
        check_partition(0, "/data/mentions/date=1970-01-01/hour=00");
        check_partition(
            1_700_000_000_000_000,
            "/data/mentions/date=2023-11-14/hour=22",
        );
        check_partition(
            1_700_006_399_999_999,
            "/data/mentions/date=2023-11-14/hour=23",
        );
        check_partition(
            1_700_006_400_000_000,
            "/data/mentions/date=2023-11-15/hour=00",
        );
    }

    fn check_name(name: &str, expected: Option<(&str, i32, i64, i64)>) {
        assert_eq!(
            parse_file_name(name),
            expected.map(|(t, p, f, l)| (t.to_owned(), p, f, l)),
            "{name}"
        );
    }

    #[test]
    fn finished_file_names_give_topic_partition_and_offsets() {
        check_name(
            "part-earshot.mentions.enriched-3-100-199.parquet",
            Some(("earshot.mentions.enriched", 3, 100, 199)),
        );
        check_name("part-my-topic-0-7-7.parquet", Some(("my-topic", 0, 7, 7)));
        check_name("part-t-0-7.parquet.tmp", None);
        check_name("part-t-0-9-7.parquet", None);
        check_name("part--0-1-2.parquet", None);
        check_name(
            "part-1714557600000000-0b7e3a52-1c4e-4d7e-9f00-6a1b2c3d4e5f.parquet",
            None,
        );
    }

    #[test]
    fn leftover_tmp_files_are_removed_and_finished_files_kept() {
        let dir = std::env::temp_dir().join(format!("earshot-sink-leftovers-{}", Uuid::new_v4()));
        let partition = dir.join("mentions/date=2024-01-01/hour=00");
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join("part-1-a.parquet.tmp"), b"x").unwrap();
        std::fs::write(partition.join("part-1-b.parquet"), b"x").unwrap();
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::fs::write(dir.join("elsewhere/keep.parquet.tmp"), b"x").unwrap();
        assert_eq!(remove_leftovers(&dir).unwrap(), 1);
        assert!(!partition.join("part-1-a.parquet.tmp").exists());
        assert!(partition.join("part-1-b.parquet").exists());
        assert!(
            dir.join("elsewhere/keep.parquet.tmp").exists(),
            "only the tables' directories are cleaned"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
