#!/usr/bin/env python3
"""Scores text with the reference VADER implementation, vaderSentiment 3.3.2 (from PyPI).

    scripts/vader-reference.py < lines.tsv > scores.tsv          # id<TAB>text -> id<TAB>neg<TAB>neu<TAB>pos<TAB>compound
    scripts/vader-reference.py --jsonl < texts.jsonl > cases.jsonl  # {"text": ...} -> adds "scores": [neg, neu, pos, compound]

The TSV mode reads the same input as `earshot sentiment` (a line without a tab is a text whose
id is its line number) and prints the same columns with 4 decimals, so the two outputs can be
compared line by line. Used to generate the reference cases under crates/sentiment/testdata and
by scripts/bench-sentiment.
"""
import json
import sys

try:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
except ImportError:
    sys.exit("vader-reference: pip install vaderSentiment==3.3.2")


def main():
    analyzer = SentimentIntensityAnalyzer()
    out = sys.stdout
    if "--jsonl" in sys.argv[1:]:
        for line in sys.stdin:
            case = json.loads(line)
            s = analyzer.polarity_scores(case["text"])
            case["scores"] = [s["neg"], s["neu"], s["pos"], s["compound"]]
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
        return
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="surrogateescape", newline="\n")
    for number, line in enumerate(stdin, start=1):
        line = line.rstrip("\n").rstrip("\r")
        ident, tab, text = line.partition("\t")
        if not tab:
            ident, text = str(number), line
        if not text:
            continue
        s = analyzer.polarity_scores(text)
        out.write(f"{ident}\t{s['neg']:.4f}\t{s['neu']:.4f}\t{s['pos']:.4f}\t{s['compound']:.4f}\n")


if __name__ == "__main__":
    main()
