"""Classifier throughput on 1,000 headlines: the naive pipeline vs `Classifier.score_texts`, 0 to 16 topics.

    python bench/classify.py [--n 1000] [--threads 2] [--batch-size 32] [--repeat 2] [--compact]
                             [--model default] [--json bench/results/classify.json]

One process; each model is loaded once. Headlines are the first N rows of valid.csv (finance headlines,
English). Timed, each the best of --repeat runs after a warm-up (the first call embeds the topics and
allocates; a running monitor pays that once):

  (a) the naive baseline: a plain `transformers` text-classification pipeline over the compact English
      model (models/sentiment-en, fp32), called one headline at a time;
  (b) `Classifier.score_texts` with the project's model (`--model`, default "default":
      models/sentiment-target) and no topics: cleaning, language detection, chunking, batched encoding,
      article sentiment;
  (c) the same with the four topics of config/monitor.yaml: what `monitor run` does with every batch of
      new articles. This is the headline figure; the floor is >= 157 texts/s and faster than (a);
  (d) the same with 8 and 16 topics (the four plus made-up ones: AMD, TSMC, Intel, HBM supply, ...). The
      model reads every topic from one encoder pass per text, so a topic costs one small head row per
      text, not a pass: the rate should barely move with the number of topics;
  (e) with --compact: `Classifier.score_texts` with the compact English model and the four topics
      (topics from aliases; a topic's sentiment from the sentences naming it, which are scored as extra
      model inputs).

Precision: "auto" is bf16 only on CPUs with native bf16 (AVX512-BF16 or AMX), else fp32; the precision
that ran is printed. Peak RSS is the process's high-water mark so far, so it grows down the list.
"""

from __future__ import annotations

import argparse
import copy
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
FLOOR_TEXTS_PER_S = 157

# Made-up extra topics for (d): aliases in both scripts and a description, like the configured ones.
EXTRA_TOPICS: dict[str, dict] = {
    "amd": {
        "keywords": ["amd", "advanced micro devices", "lisa su", "instinct", "mi300", "mi350", "超威"],
        "description": "AMD and its Instinct data-centre GPUs competing with Nvidia.",
    },
    "tsmc": {
        "keywords": ["tsmc", "taiwan semiconductor", "cowos", "台积电", "台積電"],
        "description": "TSMC, the foundry that makes most AI chips, and its advanced packaging capacity.",
    },
    "intel": {
        "keywords": ["intel", "gaudi", "intel foundry", "pat gelsinger", "lip-bu tan", "英特尔", "英特爾"],
        "description": "Intel: Gaudi accelerators, its foundry business and its turnaround.",
    },
    "hbm_supply": {
        "keywords": ["hbm", "hbm3e", "hbm4", "high-bandwidth memory", "sk hynix", "高带宽内存", "海力士"],
        "description": "Supply and prices of high-bandwidth memory for AI accelerators.",
    },
    "micron": {
        "keywords": ["micron", "mu", "美光"],
        "description": "Micron Technology, memory maker, and its HBM and DRAM business.",
    },
    "samsung": {
        "keywords": ["samsung", "samsung electronics", "三星"],
        "description": "Samsung's memory and foundry business and its AI-chip customers.",
    },
    "openai": {
        "keywords": ["openai", "chatgpt", "sam altman", "stargate"],
        "description": "OpenAI: its compute deals, data centres and spending on AI chips.",
    },
    "export_controls": {
        "keywords": ["export controls", "export curbs", "export ban", "entity list", "出口管制"],
        "description": "US restrictions on selling AI chips and chipmaking tools to China.",
    },
    "arm": {
        "keywords": ["arm holdings", "arm", "softbank", "rene haas", "安谋"],
        "description": "Arm Holdings, its chip designs for data centres, and SoftBank.",
    },
    "qualcomm": {
        "keywords": ["qualcomm", "snapdragon", "cloud ai 100", "高通"],
        "description": "Qualcomm's AI inference chips for data centres and devices.",
    },
    "cerebras": {
        "keywords": ["cerebras", "wafer-scale engine", "wse-3"],
        "description": "Cerebras Systems and its wafer-scale AI chips.",
    },
    "groq": {
        "keywords": ["groq", "lpu", "language processing unit"],
        "description": "Groq and its LPU inference chips.",
    },
}


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
    print(f"{label:<60} {best:7.2f}s  {rate:8.1f} texts/s   peak RSS {peak_rss_mb():6.0f} MB", flush=True)
    return {
        "seconds": round(best, 3),
        "texts_per_second": round(rate, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def precision_of(backend) -> str:  # noqa: ANN001
    """The arithmetic a backend runs in (TransformersBackend.precision, TargetBackend.model.precision)."""
    return getattr(backend, "precision", None) or getattr(getattr(backend, "model", None), "precision", "?")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--model", default="default", help="model.sentiment for (b)-(d): default, or a model folder"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument(
        "--compact", action="store_true", help="also time (e): the compact English model with 4 topics"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is reported")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from monitor.classify.classifier import MAIN, Classifier
    from monitor.classify.hf import COMPACT_SPEC, configure_threads, load_model
    from monitor.classify.topics import TopicMatcher
    from monitor.config import ModelConfig, TopicConfig, load_config

    threads = configure_threads(args.threads)
    with args.data.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for _, row in zip(range(args.n), csv.DictReader(handle), strict=False)]
    n = len(texts)
    topics = load_config(ROOT / "config" / "monitor.yaml", environ={}).topics
    extra = {name: TopicConfig(**spec) for name, spec in EXTRA_TOPICS.items()}
    counts = [len(topics), *(k for k in (8, 16) if k > len(topics))]
    topic_sets = {k: {**topics, **dict(list(extra.items())[: k - len(topics)])} for k in counts}
    print(f"{n} headlines, torch {torch.__version__}, {threads} threads, batch size {args.batch_size}")
    results: dict = {
        "n": n,
        "threads": threads,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "torch": torch.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }

    # (a) The naive baseline: the compact English model through a plain pipeline, one text per call, fp32.
    started = time.perf_counter()
    model, tokenizer, name, version, _ = load_model(COMPACT_SPEC)
    print(f"compact model {name} {version} loaded in {time.perf_counter() - started:.1f}s")
    results["naive_model"] = f"{name} {version}"
    naive = pipeline("text-classification", model=model.float().eval(), tokenizer=tokenizer, device=-1)
    naive(texts[:5])  # warm-up
    results["pipeline_one_at_a_time"] = timed(
        "(a) transformers pipeline, compact-en, one at a time (fp32)",
        lambda: [naive(t) for t in texts],
        n,
        args.repeat,
    )

    # (b)-(d) The project's model, loaded the way `monitor run` loads it; one copy per topic set, sharing it.
    config = ModelConfig(
        sentiment=args.model, threads=args.threads, batch_size=args.batch_size, precision=args.precision
    )
    started = time.perf_counter()
    classifier = Classifier.from_config(config, topics)
    load_seconds = time.perf_counter() - started
    backend = classifier.backends[MAIN]
    precision = precision_of(backend)
    print(
        f"model {backend.name} {backend.version} ({precision}) loaded in {load_seconds:.1f}s, "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    results.update(
        model=f"{backend.name} {backend.version}", precision=precision, load_seconds=round(load_seconds, 2)
    )

    def variant(topic_set: dict[str, TopicConfig] | None) -> Classifier:
        out = copy.copy(classifier)  # same backends, other topics
        out.topics = TopicMatcher(topic_set) if topic_set else None
        return out

    def run(label: str, scorer: Classifier) -> dict:
        scorer.score_texts(texts[:64])  # warm-up: embeds the topics once, as a running monitor does
        return timed(label, lambda: scorer.score_texts(texts), n, args.repeat)

    results["score_texts_no_topics"] = run(
        f"(b) Classifier.score_texts, no topics ({precision})", variant(None)
    )
    per_topics: dict[str, dict] = {}
    for count, topic_set in topic_sets.items():
        tag = "config's" if count == len(topics) else "config's + made-up"
        label = f"({'c' if count == len(topics) else 'd'}) Classifier.score_texts, {count} topics ({tag})"
        per_topics[str(count)] = run(label, variant(topic_set))
    results["score_texts_topics"] = per_topics

    if args.compact:
        compact_config = ModelConfig(
            sentiment=COMPACT_SPEC, threads=args.threads, batch_size=args.batch_size, precision=args.precision
        )
        compact = Classifier.from_config(compact_config, topics)
        compact_precision = precision_of(compact.backends[MAIN])
        results["compact_precision"] = compact_precision
        results["score_texts_compact_topics"] = run(
            f"(e) Classifier.score_texts, compact-en, {len(topics)} topics ({compact_precision})", compact
        )

    naive_rate = results["pipeline_one_at_a_time"]["texts_per_second"]
    headline = per_topics[str(len(topics))]["texts_per_second"]
    ratio = headline / naive_rate
    growth = per_topics[str(counts[-1])]["texts_per_second"] / headline
    results["ratio_topics_vs_pipeline"] = round(ratio, 2)
    results[f"ratio_{counts[-1]}_topics_vs_{len(topics)}"] = round(growth, 3)
    results["peak_rss_mb"] = round(peak_rss_mb())
    print(
        f"(c) {len(topics)} topics / (a) one-at-a-time = {ratio:.2f}x; "
        f"(d) {counts[-1]} topics / (c) {len(topics)} topics = {growth:.2f}; peak RSS {peak_rss_mb():.0f} MB"
    )
    ok = headline >= FLOOR_TEXTS_PER_S and headline > naive_rate
    results["floors_met"] = ok
    print(f"floors ((c) >= {FLOOR_TEXTS_PER_S} texts/s and faster than (a)): " + ("met" if ok else "NOT met"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
