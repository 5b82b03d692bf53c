"""Mixed-language throughput: is a batch that is half Chinese slower to score than an English-only one?

    python bench/multilingual.py [--n 256] [--zh-share 0.5] [--runs 10] [--threads 2] [--json out.json]

One model reads both languages (the project's target-aware model, `model.sentiment: default`), so there is
no routing to a second model any more; what can still differ is the text itself (Chinese headlines
tokenize to a different number of tokens, and language detection takes another path). One process, the
model loaded once through `Classifier.from_config` with the four topics of config/monitor.yaml (the same
path as `monitor run`). English headlines are the first rows of valid.csv, Chinese ones the project's
evaluation headlines (models/eval/zh_headlines.csv, cycled); the mixed batch interleaves them so that
every batch the model sees holds both. The whole `score_texts` (cleaning, language detection, chunking,
topics) is timed on the English-only and the mixed batch of the same size, in alternating order, and the
median of the paired mixed/English ratios is reported (the earlier floor: mixed >= 70% of English-only).
Rates are per wall-clock second and per CPU-second of this process (less disturbed by other jobs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news-sentiment" / "valid.csv"
ZH_SET = ROOT / "models" / "eval" / "zh_headlines.csv"
FLOOR = 0.70


def column(path: Path, n: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    if not texts:
        raise SystemExit(f"no rows in {path}")
    return [texts[i % len(texts)] for i in range(n)]


def timed(func, n: int) -> tuple[float, float]:  # noqa: ANN001
    """(texts per wall-clock second, texts per CPU second of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=256, help="texts per batch")
    parser.add_argument(
        "--zh-share", type=float, default=0.5, help="share of Chinese texts in the mixed batch"
    )
    parser.add_argument("--runs", type=int, default=10, help="paired runs (English-only + mixed)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="default", help="model.sentiment: default, or a model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 0 < args.zh_share <= 1:
        raise SystemExit("--zh-share must be in (0, 1]")

    from monitor.classify import Classifier
    from monitor.classify.classifier import MAIN
    from monitor.config import ModelConfig, load_config

    topics = load_config(ROOT / "config" / "monitor.yaml", environ={}).topics
    started = time.perf_counter()
    classifier = Classifier.from_config(ModelConfig(sentiment=args.model, threads=args.threads), topics)
    backend = classifier.backends[MAIN]
    print(
        f"model {backend.name} {backend.version} loaded in {time.perf_counter() - started:.1f}s; "
        f"{len(topics)} topics, {args.threads} threads, {args.n} texts per batch",
        flush=True,
    )

    english = column(args.data, args.n)
    chinese = column(ZH_SET, args.n)
    n_zh = round(args.n * args.zh_share)
    # Interleave so that every scoring call sees both languages.
    step = args.n / max(n_zh, 1)
    zh_positions = {int(k * step) for k in range(n_zh)}
    mixed = [chinese[i] if i in zh_positions else english[i] for i in range(args.n)]

    classifier.score_texts(english[:64])  # warm-up: topic vectors, first allocations, both scripts
    classifier.score_texts(chinese[:64])
    runs: dict[str, list[tuple[float, float]]] = {"english": [], "mixed": []}
    batches = {"english": english, "mixed": mixed}
    for run in range(args.runs):
        # Alternate which batch goes first so that a change in machine load hits both alike.
        order = ("english", "mixed") if run % 2 == 0 else ("mixed", "english")
        for kind in order:
            runs[kind].append(timed(lambda kind=kind: classifier.score_texts(batches[kind]), args.n))
        en_wall, en_cpu = runs["english"][-1]
        mx_wall, mx_cpu = runs["mixed"][-1]
        print(
            f"  run {run + 1}: english-only {en_wall:7.1f}/s ({en_cpu:6.1f}/cpu-s)   "
            f"mixed {mx_wall:7.1f}/s ({mx_cpu:6.1f}/cpu-s)   mixed/english {mx_wall / en_wall:.2f}",
            flush=True,
        )
    wall_ratios = [m[0] / e[0] for e, m in zip(runs["english"], runs["mixed"], strict=True)]
    cpu_ratios = [m[1] / e[1] for e, m in zip(runs["english"], runs["mixed"], strict=True)]
    en = statistics.median(r[0] for r in runs["english"])
    mx = statistics.median(r[0] for r in runs["mixed"])
    en_cpu = statistics.median(r[1] for r in runs["english"])
    mx_cpu = statistics.median(r[1] for r in runs["mixed"])
    ratio = statistics.median(wall_ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    result = {
        "n": args.n,
        "zh_share": args.zh_share,
        "topics": len(topics),
        "runs": args.runs,
        "threads": args.threads,
        "model": f"{backend.name} {backend.version}",
        "classifier_english_only_texts_per_s": round(en, 1),
        "classifier_mixed_texts_per_s": round(mx, 1),
        "mixed_over_english": round(ratio, 3),
        "classifier_english_only_texts_per_cpu_s": round(en_cpu, 1),
        "classifier_mixed_texts_per_cpu_s": round(mx_cpu, 1),
        "mixed_over_english_cpu": round(cpu_ratio, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "floor": FLOOR,
        "passes": ratio >= FLOOR,
    }
    print(
        f"\nClassifier.score_texts, {len(topics)} topics: english-only {en:.1f}/s, "
        f"mixed ({args.zh_share:.0%} zh) {mx:.1f}/s -> mixed / english-only = {ratio:.2f} "
        f"(median of {args.runs} paired runs; floor {FLOOR:.2f}: {'ok' if ratio >= FLOOR else 'BELOW'})"
    )
    print(
        f"per CPU-second (less sensitive to other load): english-only {en_cpu:.1f}, mixed {mx_cpu:.1f} -> "
        f"{cpu_ratio:.2f}; load average {os.getloadavg()[0]:.2f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
