"""Evaluate a sentiment model on valid.csv through the classifier's own inference path.

    python models/eval_sentiment.py [--model default] [--backend torch|onnx] [--out FILE.json]

Texts go through exactly what `monitor score` does (cleaning, chunking, the configured backend), so the
figures describe the shipped behaviour. Prints and writes accuracy, macro-F1, per-class precision,
recall and F1, and the confusion matrix (rows = gold label, columns = predicted).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # idle OpenMP threads sleep: much faster on a busy machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.classify.backend import LABELS  # noqa: E402
from monitor.classify.classifier import Classifier, load_sentiment_backend  # noqa: E402
from monitor.classify.hf import configure_threads  # noqa: E402
from monitor.config import ModelConfig  # noqa: E402

DATASET_LABELS = {0: "negative", 1: "positive", 2: "neutral"}  # bearish, bullish, neutral
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news-sentiment"


def metrics(gold: list[str], pred: list[str]) -> dict:
    matrix = [
        [sum(1 for g, p in zip(gold, pred, strict=True) if g == a and p == b) for b in LABELS] for a in LABELS
    ]
    per_class = {}
    for i, label in enumerate(LABELS):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": actual,
        }
    accuracy = sum(matrix[i][i] for i in range(len(LABELS))) / len(gold)
    macro = sum(c["f1"] for c in per_class.values()) / len(LABELS)
    return {
        "rows": len(gold),
        "accuracy": round(accuracy, 4),
        "macro_f1": round(macro, 4),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(LABELS), "rows_gold_columns_predicted": matrix},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help='"default", a local folder or a Hugging Face id')
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32", help="torch only")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="valid.csv")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: models/eval_sentiment[-onnx].json for the default model)",
    )
    args = parser.parse_args()

    config = ModelConfig(
        sentiment=args.model,
        multilingual=None,
        backend=args.backend,
        precision=args.precision,
        max_length=args.max_length,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    configure_threads(args.threads)
    backend = load_sentiment_backend(args.model, config)
    classifier = Classifier(backend, max_length=args.max_length, batch_size=args.batch_size)
    with (args.data / args.split).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [row["text"] for row in rows]
    gold = [DATASET_LABELS[int(row["label"])] for row in rows]
    started = time.monotonic()
    results = classifier.score_texts(texts, ["en"] * len(texts))
    seconds = time.monotonic() - started
    report = metrics(gold, [result.label for result in results])
    report.update(
        {
            "model": {
                "name": backend.name,
                "version": backend.version,
                "spec": args.model,
                "backend": args.backend,
            },
            "data": f"twitter-financial-news-sentiment/{args.split}",
            "max_length": args.max_length,
            "seconds": round(seconds, 1),
        }
    )
    out = args.out
    if out is None and args.model == "default":
        variant = "onnx-int8" if args.backend == "onnx" else getattr(backend, "precision", "fp32")
        suffix = "" if variant == "fp32" else f"-{variant}"
        out = ROOT / "models" / f"eval_sentiment{suffix}.json"
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        f"{backend.name} {backend.version} ({args.backend}) on {args.split}: {report['rows']} rows, "
        f"{seconds:.1f}s"
    )
    print(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}")
    for label, values in report["per_class"].items():
        print(
            f"  {label:<9} precision {values['precision']:.4f} recall {values['recall']:.4f} "
            f"F1 {values['f1']:.4f} (n={values['support']})"
        )
    print("confusion matrix (rows gold, columns predicted):")
    print("            " + " ".join(f"{label:>9}" for label in LABELS))
    for label, row in zip(LABELS, report["confusion_matrix"]["rows_gold_columns_predicted"], strict=True):
        print(f"  {label:<9} " + " ".join(f"{value:>9}" for value in row))
    if out is not None:
        print(f"written to {out}")


if __name__ == "__main__":
    main()
