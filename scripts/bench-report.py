#!/usr/bin/env python3
"""Writes the figures section of BENCHMARKS.md from the outputs of scripts/bench.

    scripts/bench-report.py target/bench BENCHMARKS.md

The section sits between the two marker comments below and is replaced whole on every run;
everything outside them is hand-written and kept. The per-component benchmarks are changed by
other work often, so their output is copied as printed, not parsed: only the whole-pipeline
bench (its `BENCH_JSON` line) is turned into tables. Standard library only.
"""
import json
import os
import sys

BEGIN = "<!-- scripts/bench: figures begin (generated, do not edit by hand) -->"
END = "<!-- scripts/bench: figures end -->"

COMPONENTS = [
    ("sentiment", "`cargo bench -p earshot-sentiment --bench sentiment` (VADER against the lexicon-lookup floor)"),
    ("bench-sentiment", "`scripts/bench-sentiment` (`earshot sentiment` against vaderSentiment 3.3.2)"),
    ("matching", "`cargo bench -p earshot-query --bench matching` (watchlists against a plain Aho-Corasick scan)"),
    ("enrich", "`cargo bench -p earshot-enricher --bench enrich` (the whole `enrich()` against VADER alone)"),
    ("ingest", "`cargo bench -p earshot-collector --bench ingest` (replay and HTTP ingest against a bare producer)"),
    ("postgres_load", "`cargo bench -p earshot-sink --bench postgres_load` (the sink against `psql \\copy`)"),
    ("codec", "`cargo bench -p earshot-core --bench codec` (serde_avro_fast against apache-avro)"),
    ("router_latency", "`cargo bench -p earshot-router --bench latency` (enriched mention on Kafka to webhook at 1,000/s, against a produce → consume baseline; target p99 ≤ 20 ms)"),
]


def read(directory, name):
    path = os.path.join(directory, name)
    return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else None


def status(directory, name):
    text = read(directory, name + ".status")
    if not text:
        return None, None, None
    code, seconds, *load = text.split()
    return int(code), int(seconds), " ".join(load)


def fmt(value, digits=0):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def verdict(ok):
    return "met" if ok else "**not met**"


def pipeline_section(directory):
    text = read(directory, "pipeline.txt") or ""
    line = next((l for l in reversed(text.splitlines()) if l.startswith("BENCH_JSON ")), None)
    code, seconds, _ = status(directory, "pipeline")
    if line is None:
        return [f"The whole-pipeline bench failed (exit {code}); see `target/bench/pipeline.err`.", ""]
    r = json.loads(line[len("BENCH_JSON "):])
    out = []
    e = r["enricher"]
    m = e["median"]
    out += [
        "### The enricher through Kafka (`cargo bench -p earshot --bench pipeline`)",
        "",
        f"{e['records']:,} mentions ({e['payload_bytes_mean']} bytes of Avro on average) read from one topic; "
        f"the `earshot enricher` process writes {e['enriched_copies']:,} enriched copies (one per matched "
        "watchlist), the baseline a bare rdkafka consume → produce passthrough of the same records with the "
        "same client settings (`kafka::passthrough_bare`). Both are timed from the first output record to "
        f"the last; median round of {len(e['rounds'])} by ratio.",
        "",
        "| path | mentions/s | ratio | target |",
        "|---|---:|---:|---|",
        f"| bare passthrough, consume → produce (baseline) | {fmt(m['bare_per_sec'])} | 1.00 | |",
        f"| `earshot enricher` | {fmt(m['enricher_per_sec'])} | {m['ratio']:.2f} | ≥ 0.8: {verdict(m['ratio'] >= 0.8)} |",
        "",
        "Rounds (ratio): " + ", ".join(f"{x['ratio']:.2f}" for x in e["rounds"]) + ".",
        "",
    ]
    p, emb = r["pipeline"], r["embedded"]
    base = m["bare_per_sec"]
    out += [
        "### Whole pipeline, mentions per second into PostgreSQL",
        "",
        f"{p['mentions']:,} mentions of the bundled sample's kind posted to the ingest endpoint (1,000 per request, "
        "4 connections), four `earshot` processes and the broker on this machine, timed from the first "
        "request to the last row in the sink's `mentions` table; embedded mode: `earshot run --replay` of the same "
        "number of mentions into PostgreSQL, process wall time. The baseline is the bare passthrough above, one "
        "hop's ceiling on this broker (on the way to PostgreSQL the pipeline crosses Kafka twice, collector → enricher → sink, and the router's alerts a third time).",
        "",
        "| path | mentions/s | ratio to one bare hop |",
        "|---|---:|---:|",
        f"| bare passthrough, one hop (baseline) | {fmt(base)} | 1.00 |",
        f"| four services over Kafka | {fmt(p['per_sec'])} | {p['per_sec'] / base:.2f} |",
        f"| embedded mode (`earshot run`) | {fmt(emb['per_sec'])} | {emb['per_sec'] / base:.2f} |",
        "",
        "CPU seconds per service during the run (throughput and latency): "
        + ", ".join(f"{k} {v:.1f}" for k, v in p["cpu_secs"].items()) + ".",
        "",
    ]
    lat = p["latency"]
    target = lat["target_p99_ms"]
    ms = lambda v: "n/a" if v is None else f"{v:.1f}"
    late = lat["count"] - lat.get("arrived_within_120_s", lat["count"])
    met = lat["p99_ms"] is not None and lat["p99_ms"] <= target
    out += [
        "### End-to-end latency, ingest → webhook, at 1,000 mentions/s",
        "",
        f"{lat['count']:,} mentions posted at {lat['rate_per_sec']:,}/s (10 per request every 10 ms), each raising one "
        "alert to a webhook receiver on loopback; time from the request to the alert's arrival. The baseline is "
        "one bare produce → consume round trip at the same rate with the same client settings "
        f"(`kafka::round_trip_bare`); the target is p99 ≤ 3.3 × bare p99 × {lat.get('hops', 2)} hops (the path crosses "
        "Kafka twice, collector → enricher → router; the HTTP legs in and out are timed but not counted as hops).",
        "",
        "| path | p50 ms | p99 ms | target p99 ms |",
        "|---|---:|---:|---|",
        f"| bare round trip, one hop (baseline) | {lat['bare_p50_ms']:.1f} | {lat['bare_p99_ms']:.1f} | |",
        f"| ingest → webhook | {ms(lat['p50_ms'])} | {ms(lat['p99_ms'])} | ≤ {target:.1f}: {verdict(met)} |",
        "",
    ]
    if late:
        raised = lat.get("raised_mentions")
        if raised is None or raised < 0:
            why = "late, or never raised: this run did not count the mentions that raised an alert"
        else:
            never = max(lat["count"] - raised, 0)
            why = (f"{raised:,} of the mentions raised an alert (the sink's `alerts` table), so {never:,} never did and "
                   f"{max(late - never, 0):,} were raised but had not reached the receiver")
        out += [f"{late:,} of the {lat['count']:,} alerts had not arrived 120 s after the last request ({why}); "
                "a percentile that falls among them is n/a.", ""]
    rss = dict(p["peak_rss_kib"])
    rows = [
        f"| {name} | {fmt(kib / 1024 if kib else None, 1)} | {verdict(kib is not None and kib <= 64 * 1024)} |"
        for name, kib in rss.items()
    ]
    out += [
        "### Peak memory per service",
        "",
        "`VmHWM` (peak resident set) of each service process after the throughput and latency runs above. "
        "Target: 64 MiB each.",
        "",
        "| service | peak RSS MiB | ≤ 64 MiB |",
        "|---|---:|---|",
        *rows,
        "",
        f"Load average {r['load_before']} before the pipeline bench, {r['load_after']} after; the bench process "
        f"itself used {r['bench_cpu_secs']:.1f} CPU seconds.",
        "",
    ]
    return out


def main():
    directory, target = sys.argv[1], sys.argv[2]
    machine = dict(
        line.split("=", 1) for line in (read(directory, "machine.txt") or "").splitlines() if "=" in line
    )
    quick = machine.get("quick") == "1"
    profile = machine.get("profile", "release")
    lines = [
        BEGIN,
        "",
        "## Figures from `scripts/bench`",
        "",
        f"Measured {machine.get('date', '?')} by `scripts/bench{' --quick' if quick else ''}`"
        + (" (smaller sizes: a check that the suite runs, not a result)" if quick else "")
        + (f", **{profile} profile: unoptimized, the figures mean nothing**" if profile != "release" else "")
        + f". Machine: {machine.get('nproc', '?')} cores ({machine.get('cpu', '?')}), {machine.get('memory', '?')}; "
        f"load average {machine.get('load_start', '?')} at the start and {machine.get('load_end', '?')} at the end; "
        f"{machine.get('rustc', '')}. Reproduce with `scripts/bench`; raw outputs are in `target/bench/`.",
        "",
    ]
    lines += pipeline_section(directory)
    lines += ["### Per-component benchmarks, as printed", ""]
    for name, title in COMPONENTS:
        code, seconds, load = status(directory, name)
        text = (read(directory, name + ".txt") or "").rstrip()
        lines.append(f"#### {title}")
        lines.append("")
        if code is None:
            lines += ["Not run.", ""]
            continue
        if code != 0:
            lines += [f"Failed (exit {code}); see `target/bench/{name}.err`.", ""]
            continue
        lines += ["```text", text, "```", "", f"{seconds} s; load average {load} at its end.", ""]
    lines.append(END)
    section = "\n".join(lines)

    document = open(target, encoding="utf-8").read()
    if BEGIN in document and END in document:
        head, rest = document.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        document = head + section + tail
    else:
        # First run: after the introduction, before the first hand-written section.
        at = document.find("\n## ")
        at = len(document) if at < 0 else at + 1
        document = document[:at] + section + "\n\n" + document[at:]
    open(target, "w", encoding="utf-8").write(document)


if __name__ == "__main__":
    main()
