"""Classifier throughput on 1,000 headlines: batched vs one-at-a-time, torch vs ONNX int8, peak RSS.

    python bench/classify.py [--n 1000] [--batch-size 32] [--onnx] [--json bench/results/classify.json]

One process, one model load: the same fine-tuned weights are timed (1) through a plain `transformers`
text-classification pipeline called once per headline (the naive way, fp32), (2) through the classifier's
batched backend in fp32 and in the default precision (bf16 on CPUs with native bf16), (3) through the
whole `Classifier.score_texts` (cleaning, routing, topics with the sentence encoder), and (4) with `--onnx`,
the int8 ONNX Runtime backend. Each figure is the best of --repeat runs. Headlines are the first N rows
of valid.csv (finance headlines); the floors are >= 150 headlines/s batched and >= 4x the naive pipeline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as monitor.classify does: no spinning OpenMP threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news-sentiment" / "valid.csv"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, func, n: int, repeat: int) -> dict:  # noqa: ANN001
    """Best of `repeat` runs: on a shared machine the fastest run is the one least disturbed by others."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - started)
    rate = n / best
    print(f"{label:<48} {best:7.2f}s  {rate:8.1f} texts/s   peak RSS {peak_rss_mb():6.0f} MB", flush=True)
    return {
        "seconds": round(best, 3),
        "texts_per_second": round(rate, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--onnx", action="store_true", help="also time the int8 ONNX Runtime backend")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is reported")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from monitor.classify.classifier import Classifier
    from monitor.classify.hf import TransformersBackend, configure_threads, load_model
    from monitor.config import load_config

    threads = configure_threads(args.threads)
    with args.data.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for _, row in zip(range(args.n), csv.DictReader(handle), strict=False)]
    n = len(texts)
    print(f"{n} headlines, torch {torch.__version__}, {threads} threads, batch size {args.batch_size}")
    started = time.perf_counter()
    model, tokenizer, name, version, _ = load_model(args.model)
    load_seconds = time.perf_counter() - started
    print(f"model {name} {version} loaded in {load_seconds:.1f}s, peak RSS {peak_rss_mb():.0f} MB")
    results: dict = {
        "n": n,
        "threads": threads,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "model": f"{name} {version}",
        "load_seconds": round(load_seconds, 2),
    }

    naive = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    naive(texts[:5])  # warm-up
    results["pipeline_one_at_a_time"] = timed(
        "transformers pipeline, one at a time (fp32)", lambda: [naive(t) for t in texts], n, args.repeat
    )

    def backend_for(precision: str) -> TransformersBackend:
        return TransformersBackend(
            model,
            tokenizer,
            name=name,
            version=version,
            max_length=128,
            batch_size=args.batch_size,
            precision=precision,
        )

    fp32 = backend_for("fp32")
    fp32.predict_proba(texts[:32])
    results["batched_fp32"] = timed(
        "classifier backend, batched (fp32)", lambda: fp32.predict_proba(texts), n, args.repeat
    )
    default = backend_for("auto")
    results["default_precision"] = default.precision
    default.predict_proba(texts[:32])
    results["batched_default"] = timed(
        f"classifier backend, batched ({default.precision}, the default here)",
        lambda: default.predict_proba(texts),
        n,
        args.repeat,
    )
    classifier = Classifier(default, max_length=128, batch_size=args.batch_size)
    results["score_texts"] = timed(
        "Classifier.score_texts, no topics", lambda: classifier.score_texts(texts), n, args.repeat
    )

    settings = load_config(ROOT / "config" / "monitor.yaml", environ={})
    if settings.topics:
        from monitor.classify.topics import SentenceEncoder, TopicMatcher

        matcher = TopicMatcher(
            settings.topics,
            SentenceEncoder(),
            topic_threshold=settings.model.topic_threshold,
            similarity_threshold=settings.model.similarity_threshold,
        )
        with_topics = Classifier(default, topics=matcher, max_length=128, batch_size=args.batch_size)
        results["score_texts_topics"] = timed(
            f"Classifier.score_texts + {len(settings.topics)} topics",
            lambda: with_topics.score_texts(texts),
            n,
            args.repeat,
        )

    if args.onnx:
        from monitor.classify.onnx import load_onnx_backend

        onnx_backend = load_onnx_backend(args.model, batch_size=args.batch_size, threads=threads)
        onnx_backend.predict_proba(texts[:32])
        results["batched_onnx_int8"] = timed(
            "classifier backend, batched (ONNX int8)",
            lambda: onnx_backend.predict_proba(texts),
            n,
            args.repeat,
        )

    naive_rate = results["pipeline_one_at_a_time"]["texts_per_second"]
    results["ratio_batched_fp32_vs_pipeline"] = round(
        results["batched_fp32"]["texts_per_second"] / naive_rate, 2
    )
    ratio = results["batched_default"]["texts_per_second"] / naive_rate
    results["ratio_default_vs_pipeline"] = round(ratio, 2)
    results["peak_rss_mb"] = round(peak_rss_mb())
    print(
        f"batched fp32 / one-at-a-time = {results['ratio_batched_fp32_vs_pipeline']:.1f}x; "
        f"batched {default.precision} (default) / one-at-a-time = {ratio:.1f}x; "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    ok = results["batched_default"]["texts_per_second"] >= 150 and ratio >= 4
    print("floors (>= 150 texts/s batched, >= 4x): " + ("met" if ok else "NOT met"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
