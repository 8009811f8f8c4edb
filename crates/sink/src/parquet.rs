//! The Parquet target: `mentions` and `alerts` as Snappy-compressed Parquet files, partitioned
//! as `<dir>/<table>/date=YYYY-MM-DD/hour=HH/part-<first micros>-<uuid>.parquet` by the UTC
//! hour of each row's `collected_at` (mentions) or `created_at` (alerts).
//!
//! Exactly-once-friendly, not exactly-once: rows are appended to an open
//! `<name>.parquet.tmp` per partition; the file is finished, fsynced and renamed to
//! `<name>.parquet` when it holds `roll_rows` rows, has been open `roll_secs`, or at shutdown.
//! Only then do the records behind its rows complete, so no offset is ever stored for a row
//! that exists only in a `.tmp` file. At start, leftover `.tmp` files are deleted: their
//! records were never acknowledged and will be read again.
//!
//! A crash after a rename but before the offsets are committed replays those records, which
//! then land in a second file; a mention matching several watchlists also arrives several
//! times and may land in several files. So **readers dedupe on `id`** (views over the files
//! do `SELECT DISTINCT ON (id) …`, or `QUALIFY row_number() OVER (PARTITION BY id) = 1`).
//!
//! Columns are those of the PostgreSQL tables (ids as UUID strings, timestamps as
//! `Timestamp(Microsecond, "UTC")`, `written_at` the time the row was appended); match and
//! delivery rows are in PostgreSQL only. Each sink replica needs a directory of its own: the
//! start-up cleanup would delete another replica's open files.
//!
//! File I/O is synchronous, on the writer task: appends only encode into the writer's
//! buffers, and the disk is touched when a file is finished, once per roll.

use std::collections::{BTreeMap, HashMap};
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

/// The open files of both tables. `W` is what waits for a file to be closed (a completion).
pub struct ParquetFiles<W> {
    dir: PathBuf,
    roll_rows: usize,
    roll_after: Duration,
    /// By partition directory (which includes the table).
    open: HashMap<PathBuf, OpenFile<W>>,
}

struct OpenFile<W> {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    rows: usize,
    opened: Instant,
    waiters: Vec<W>,
}

impl<W> ParquetFiles<W> {
    pub fn new(config: &earshot_core::config::ParquetConfig) -> Self {
        ParquetFiles {
            dir: config.dir.clone(),
            roll_rows: config.roll_rows.max(1),
            roll_after: Duration::from_secs(config.roll_secs),
            open: HashMap::new(),
        }
    }

    /// Appends rows, each with what waits for it (a row given twice, by id, is written once).
    /// Returns the waiters of the files that rolled.
    pub fn append<R: ParquetRow>(&mut self, rows: Vec<(&R, W)>) -> Result<Vec<W>, ParquetError> {
        let mut by_id: HashMap<Uuid, usize> = HashMap::new();
        let mut partitions: BTreeMap<PathBuf, (Vec<&R>, Vec<W>)> = BTreeMap::new();
        let mut partition_of_row: Vec<PathBuf> = Vec::new();
        for (row, waiter) in rows {
            let partition = match by_id.get(&row.id()) {
                Some(&index) => partition_of_row[index].clone(),
                None => {
                    let partition = partition_dir(&self.dir, R::TABLE, row.partition_time());
                    by_id.insert(row.id(), partition_of_row.len());
                    partition_of_row.push(partition.clone());
                    partitions.entry(partition.clone()).or_default().0.push(row);
                    partition
                }
            };
            partitions.entry(partition).or_default().1.push(waiter);
        }
        let written_at = Utc::now();
        let mut released = Vec::new();
        for (partition, (rows, waiters)) in partitions {
            let batch =
                R::record_batch(&rows, written_at).map_err(|e| ParquetError::new(&partition, e))?;
            if !self.open.contains_key(&partition) {
                let file = OpenFile::create(&partition, &batch, rows[0].partition_time())?;
                self.open.insert(partition.clone(), file);
            }
            let file = self.open.get_mut(&partition).expect("opened above");
            file.writer
                .write(&batch)
                .map_err(|e| ParquetError::new(&file.tmp_path, e))?;
            file.rows += batch.num_rows();
            file.waiters.extend(waiters);
            if file.rows >= self.roll_rows {
                let file = self.open.remove(&partition).expect("present");
                released.extend(file.close()?);
            }
        }
        Ok(released)
    }

    /// Closes the files open for `roll_secs` or longer; returns their waiters.
    pub fn roll_due(&mut self, now: Instant) -> Result<Vec<W>, ParquetError> {
        let due: Vec<PathBuf> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened + self.roll_after <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let mut released = Vec::new();
        for partition in due {
            let file = self.open.remove(&partition).expect("present");
            released.extend(file.close()?);
        }
        Ok(released)
    }

    /// Closes every open file; returns their waiters.
    pub fn close_all(&mut self) -> Result<Vec<W>, ParquetError> {
        let mut released = Vec::new();
        for (_, file) in self.open.drain() {
            released.extend(file.close()?);
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
}

impl<W> OpenFile<W> {
    fn create(
        partition: &Path,
        first: &RecordBatch,
        first_time: DateTime<Utc>,
    ) -> Result<Self, ParquetError> {
        std::fs::create_dir_all(partition).map_err(|e| ParquetError::new(partition, e))?;
        let name = format!("part-{}-{}", first_time.timestamp_micros(), Uuid::new_v4());
        let tmp_path = partition.join(format!("{name}.parquet.tmp"));
        let final_path = partition.join(format!("{name}.parquet"));
        let file = File::create(&tmp_path).map_err(|e| ParquetError::new(&tmp_path, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file, first.schema(), Some(properties))
            .map_err(|e| ParquetError::new(&tmp_path, e))?;
        Ok(OpenFile {
            writer,
            tmp_path,
            final_path,
            rows: 0,
            opened: Instant::now(),
            waiters: Vec::new(),
        })
    }

    /// Finishes the file, makes it durable and gives it its final name.
    fn close(self) -> Result<Vec<W>, ParquetError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ParquetError::new(&self.tmp_path, e))?;
        file.sync_all()
            .map_err(|e| ParquetError::new(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| ParquetError::new(&self.final_path, e))?;
        if let Some(parent) = self.final_path.parent() {
            // The rename is durable once the directory is.
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| ParquetError::new(parent, e))?;
        }
        tracing::info!(path = %self.final_path.display(), rows = self.rows, "Parquet file written");
        Ok(self.waiters)
    }
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

    fn id(&self) -> Uuid {
        self.id
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
                "watchlists",
                string_lists(rows.iter().map(|r| &r.watchlists)),
                false,
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
