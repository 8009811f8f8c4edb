"""Reads the sink's Parquet files with pyarrow, as an analyst would, and prints a JSON summary.

Usage: parquet_summary.py DIR. Reads every finished `*.parquet` file (never `*.parquet.tmp`)
under DIR/<table>/ with hive partitioning (date=/hour=) and prints, per table, the file
count and every row's id, partition and a few columns, sorted by id.
"""
import json
import pathlib
import sys

import pyarrow.dataset as ds

root = pathlib.Path(sys.argv[1])
summary = {}
for table in ("mentions", "alerts"):
    files = sorted(str(p) for p in (root / table).rglob("*.parquet"))
    if not files:
        summary[table] = {"files": [], "rows": []}
        continue
    dataset = ds.dataset(
        files,
        format="parquet",
        partitioning=ds.partitioning(flavor="hive"),
        partition_base_dir=str(root / table),
    )
    rows = dataset.to_table().to_pylist()
    keep = {
        "mentions": ["id", "native_id", "date", "hour", "sentiment_compound", "sentences_count",
                     "sentences_most_negative", "watchlists", "intents", "reach_score", "input_flags",
                     "collected_at", "written_at", "author_id", "deleted_at"],
        "alerts": ["id", "route", "route_path", "review_required", "date", "hour", "created_at"],
    }[table]
    out = []
    for row in rows:
        out.append({k: (str(row[k]) if k in ("date", "hour", "collected_at", "created_at", "written_at", "deleted_at")
                        and row.get(k) is not None else row.get(k))
                    for k in keep})
    out.sort(key=lambda r: r["id"])
    summary[table] = {
        "files": [str(pathlib.Path(f).relative_to(root / table)) for f in files],
        "rows": out,
    }
print(json.dumps(summary))
