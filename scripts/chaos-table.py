#!/usr/bin/env python3
"""Rewrites the results table of RELIABILITY.md, between the chaos-results markers, from the
JSON files the reliability suite's scenarios write (one per scenario, see
crates/earshot/tests/chaos/harness.rs). Usage: chaos-table.py RESULTS_DIR RELIABILITY.md"""
import json
import pathlib
import sys

BEGIN = "<!-- chaos-results:begin (written by scripts/chaos; do not edit) -->"
END = "<!-- chaos-results:end -->"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def main():
    results_dir, document = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    results = []
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        results.append(json.loads(path.read_text()))
    results.sort(key=lambda r: r["id"])
    lines = [
        BEGIN,
        "| scenario | what must hold | size | result | passed | date | load average (cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} ({}) |".format(
                cell(r["scenario"]),
                cell(r["must_hold"]),
                cell(r["size"]),
                cell(r["result"]),
                "yes" if r["passed"] else "**no**",
                cell(r["date"]),
                cell(r["load_average"]),
                r["cores"],
            )
        )
    lines.append(END)
    text = document.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{document}: the chaos-results markers are missing")
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    document.write_text(before + "\n".join(lines) + after)
    print(f"chaos: {len(results)} results written to {document}", file=sys.stderr)


if __name__ == "__main__":
    main()
