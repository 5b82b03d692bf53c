"""Fine-tune the packaged all-MiniLM-L6-v2 into the project's 3-class financial sentiment model.

    python models/train_sentiment.py [--data ../shared/data/twitter-financial-news-sentiment]
                                     [--out models/sentiment-en]

Reads train.csv/valid.csv from --data (never copied into the repository); dataset labels are
0 = bearish, 1 = bullish, 2 = neutral and are mapped to the model's order negative, neutral, positive.
The word/position/type embedding tables stay frozen, so only the encoder layers, the embedding LayerNorm,
the pooler and the head are shipped (fp16). The epoch with the best macro-F1 on valid.csv is kept.
Seeded and deterministic on CPU for a given torch version; prints progress.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # idle OpenMP threads sleep: much faster on a busy machine

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.classify.shipped import FROZEN_PREFIXES, base_model_path, save_shipped  # noqa: E402
from monitor.classify.text import clean_text  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
DATASET_TO_MODEL = {0: 0, 1: 2, 2: 1}  # bearish -> negative, bullish -> positive, neutral -> neutral
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news-sentiment"


def read_split(path: Path) -> tuple[list[str], list[int], int]:
    """(cleaned texts, model labels, rows dropped because nothing was left after cleaning)."""
    texts, labels, dropped = [], [], 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = clean_text(row["text"])
            if not text:
                dropped += 1
                continue
            texts.append(text)
            labels.append(DATASET_TO_MODEL[int(row["label"])])
    return texts, labels, dropped


def macro_f1(gold: list[int], pred: list[int]) -> tuple[float, list[float], float]:
    f1s = []
    for label in range(len(LABELS)):
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    accuracy = sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold)
    return sum(f1s) / len(f1s), f1s, accuracy


@torch.inference_mode()
def predict(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 128) -> list[int]:
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    preds = [0] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        logits = model(**batch).logits
        for i, p in zip(idx, logits.argmax(-1).tolist(), strict=True):
            preds[i] = p
    return preds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.csv and valid.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "sentiment-en")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=0.06, help="fraction of steps for linear warm-up")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--class-weights", choices=["none", "sqrt", "inverse"], default="sqrt")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument(
        "--limit", type=int, default=0, help="train on a seeded sample of N rows (smoke runs)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    train_texts, train_labels, train_dropped = read_split(args.data / "train.csv")
    valid_texts, valid_labels, valid_dropped = read_split(args.data / "valid.csv")
    if args.limit:
        keep = sorted(
            random.Random(args.seed).sample(range(len(train_texts)), min(args.limit, len(train_texts)))
        )
        train_texts, train_labels = [train_texts[i] for i in keep], [train_labels[i] for i in keep]
    counts = np.bincount(train_labels, minlength=3)
    print(
        f"train rows {len(train_texts)} (dropped {train_dropped} empty after cleaning), "
        f"valid rows {len(valid_texts)}; class counts {dict(zip(LABELS, counts.tolist(), strict=True))}",
        flush=True,
    )

    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    frozen = 0
    for name, param in model.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            param.requires_grad_(False)
            frozen += param.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"parameters: {trainable:,} trainable, {frozen:,} frozen (taken from the base package)", flush=True)

    if args.class_weights == "none":
        weights = np.ones(3)
    else:
        power = 0.5 if args.class_weights == "sqrt" else 1.0
        weights = (counts.sum() / counts) ** power
        weights = weights / weights.mean()
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32), label_smoothing=args.label_smoothing
    )
    print(f"class weights {np.round(weights, 3).tolist()}", flush=True)

    decay = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and not n.endswith(("bias", "LayerNorm.weight"))
    ]
    no_decay = [
        p for n, p in model.named_parameters() if p.requires_grad and n.endswith(("bias", "LayerNorm.weight"))
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    steps_per_epoch = math.ceil(len(train_texts) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total_steps * args.warmup), total_steps)
    generator = torch.Generator().manual_seed(args.seed)

    history, best_f1, best_state, best_epoch = [], -1.0, None, 0
    started = time.monotonic()
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        permutation = torch.randperm(len(train_texts), generator=generator).tolist()
        running = 0.0
        for batch_start in range(0, len(permutation), args.batch_size):
            idx = permutation[batch_start : batch_start + args.batch_size]
            batch = tokenizer(
                [train_texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            )
            target = torch.tensor([train_labels[i] for i in idx])
            loss = loss_fn(model(**batch).logits, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            if step % 25 == 0 or step == total_steps:
                elapsed = time.monotonic() - started
                eta = elapsed / step * (total_steps - step)
                print(
                    f"epoch {epoch} step {step}/{total_steps} loss {running / 25:.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} elapsed {elapsed / 60:.1f}m eta {eta / 60:.1f}m",
                    flush=True,
                )
                running = 0.0
        preds = predict(model, tokenizer, valid_texts, args.max_length)
        f1, per_class, accuracy = macro_f1(valid_labels, preds)
        history.append(
            {
                "epoch": epoch,
                "valid_macro_f1": round(f1, 4),
                "valid_accuracy": round(accuracy, 4),
                "valid_f1": dict(zip(LABELS, [round(x, 4) for x in per_class], strict=True)),
                "minutes": round((time.monotonic() - started) / 60, 1),
            }
        )
        print(
            f"== epoch {epoch}: valid macro-F1 {f1:.4f} accuracy {accuracy:.4f} per-class "
            f"{[round(x, 4) for x in per_class]}",
            flush=True,
        )
        if f1 > best_f1:
            best_f1, best_epoch = f1, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    minutes = (time.monotonic() - started) / 60
    hyper = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("out", "data")
    }
    manifest = save_shipped(
        model,
        args.out,
        name="aichip-sentiment-en",
        version=args.version,
        max_length=args.max_length,
        extra={"trained_epoch": best_epoch, "valid_macro_f1_during_training": round(best_f1, 4)},
    )
    training = {
        "data": {
            "train": "twitter-financial-news-sentiment/train.csv",
            "valid": "twitter-financial-news-sentiment/valid.csv",
            "train_rows": len(train_texts),
            "train_dropped_empty": train_dropped,
            "valid_rows": len(valid_texts),
            "valid_dropped_empty": valid_dropped,
            "class_counts": dict(zip(LABELS, counts.tolist(), strict=True)),
        },
        "hyperparameters": hyper,
        "class_weights": [round(float(w), 4) for w in weights],
        "parameters": {"trainable": trainable, "frozen": frozen},
        "history": history,
        "best_epoch": best_epoch,
        "minutes": round(minutes, 1),
        "torch": torch.__version__,
    }
    (args.out / "training.json").write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
    size = (args.out / "weights.safetensors").stat().st_size / 1e6
    print(
        f"saved {manifest.name} {manifest.version} to {args.out} ({size:.1f} MB); best epoch {best_epoch} "
        f"macro-F1 {best_f1:.4f}; {minutes:.1f} min",
        flush=True,
    )


if __name__ == "__main__":
    main()
