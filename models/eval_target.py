"""Figures for the model card: sentiment toward topics, topic precision/recall, article-level macro-F1.

    python models/eval_target.py [--model default] [--split test] [--out models/eval_target.json]

Everything goes through the product's own path (`Classifier.score_texts` with the catalogue's topics,
`models/data/topics.yaml`, whose first four are the shipped config's topics):
- **topics**: per topic and language, precision and recall of the topics the classifier assigns, against
  the labelled set's targets (a topic missing from a row's targets is "not about");
- **sentiment toward a topic**: on every labelled (text, topic) pair, the model's reading of the text
  toward the topic (whether or not the topic was assigned), 3-class accuracy ("sign": negative / neutral /
  positive) and macro-F1; rows with two topics of opposite sign are counted whole (both right);
- topics training never saw (`owned.UNSEEN_TOPICS`) are reported apart;
- **article**: macro-F1 on the shared `valid.csv` and on `models/eval/zh_headlines.csv`.
`--split holdout` scores the challenge set (`models/data/holdout/`, written apart and never trained on).
`--split dev` gives the figures on the dev split, and with `--choose-add-threshold` the lowest
P(about) at which topics found without an alias reach 0.95 precision there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from owned import UNSEEN_TOPICS, load_topics, read_holdout, read_rows  # noqa: E402
from train_sentiment import DEFAULT_DATA, LABELS, read_split  # noqa: E402

from monitor.classify import Classifier  # noqa: E402
from monitor.classify.classifier import MAIN  # noqa: E402
from monitor.classify.text import clean_text  # noqa: E402
from monitor.config import ModelConfig, TopicConfig  # noqa: E402

ZH_EVAL = ROOT / "models" / "eval" / "zh_headlines.csv"


def macro_f1(gold: list[str], pred: list[str]) -> dict:
    f1s = {}
    for label in LABELS:
        tp = sum(g == p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, pred, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s[label] = round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))
    return {
        "n": len(gold),
        "macro_f1": round(sum(f1s.values()) / 3, 4),
        "accuracy": round(accuracy, 4),
        "f1": f1s,
    }


def language_group(lang: str) -> str:
    return "en" if lang == "en" else "zh"


def evaluate_owned(classifier: Classifier, rows, split: str | None) -> dict:
    rows = [r for r in rows if split is None or r.split == split]
    texts = [r.text for r in rows]
    langs = ["en" if r.lang == "en" else "zh" for r in rows]
    scored = classifier.score_texts(texts, langs)
    backend = classifier.backends[MAIN]
    specs = classifier.topics.specs
    readings = backend.read([clean_text(t) for t in texts], specs)
    names = [s.name for s in specs]

    topic_counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)  # group -> (gold, pred)
    errors = []
    opposite = Counter()
    add_candidates = []  # (about, is_gold) for topics no alias names
    for row, result, reading, lang in zip(rows, scored, readings, langs, strict=True):
        assigned = {t.name for t in result.topics}
        for name in names:
            gold = name in row.targets
            counts = topic_counts[(name, lang)]
            counts["tp"] += gold and name in assigned
            counts["fp"] += (not gold) and name in assigned
            counts["fn"] += gold and name not in assigned
            view = reading.topics[name]
            if not view.mentions:
                add_candidates.append((view.about, gold, name))
        both_right = True
        for name, gold_label in row.targets.items():
            view = reading.topics[name]
            pred = LABELS[int(view.probabilities.argmax())]
            group = "unseen" if name in UNSEEN_TOPICS else lang
            pairs[group].append((gold_label, pred))
            pairs[f"topic:{name}"].append((gold_label, pred))
            both_right &= pred == gold_label
            if pred != gold_label:
                errors.append({"text": row.text, "topic": name, "gold": gold_label, "predicted": pred})
        if {"positive", "negative"} <= set(row.targets.values()):
            seen = [n for n in row.targets if n not in UNSEEN_TOPICS]
            key = "opposite_rows" if len(seen) == len(row.targets) else "opposite_rows_with_unseen"
            opposite[key] += 1
            opposite[f"{key}_both_right"] += both_right
            for name in row.targets:
                gold_label = row.targets[name]
                pred = LABELS[int(reading.topics[name].probabilities.argmax())]
                opposite[f"{key}_pairs"] += 1
                opposite[f"{key}_pairs_right"] += pred == gold_label

    topics_out: dict[str, dict] = {}
    for (name, lang), c in sorted(topic_counts.items()):
        support = c["tp"] + c["fn"]
        topics_out[f"{name}/{lang}"] = {
            "support": support,
            "precision": round(c["tp"] / (c["tp"] + c["fp"]), 4) if c["tp"] + c["fp"] else None,
            "recall": round(c["tp"] / support, 4) if support else None,
            "false_positives": c["fp"],
        }
    sentiment = {group: macro_f1([g for g, _ in v], [p for _, p in v]) for group, v in sorted(pairs.items())}
    seen_pairs = [p for g in ("en", "zh") for p in pairs[g]]
    sentiment["all_seen_topics"] = macro_f1([g for g, _ in seen_pairs], [p for _, p in seen_pairs])
    return {
        "split": split,
        "rows": len(rows),
        "languages": dict(Counter(r.lang for r in rows)),
        "sentiment_toward_topic": sentiment,
        "opposite_sign": {
            **dict(opposite),
            "row_accuracy": round(
                opposite["opposite_rows_both_right"] / max(1, opposite["opposite_rows"]), 4
            ),
            "pair_accuracy": round(
                opposite["opposite_rows_pairs_right"] / max(1, opposite["opposite_rows_pairs"]), 4
            ),
        },
        "topics": topics_out,
        "errors": errors[:400],
        "_add_candidates": add_candidates,
    }


def choose_add_threshold(candidates: list[tuple[float, bool, str]], floor: float = 0.95) -> dict:
    """Lowest P(about) at which topics without an alias are right >= floor of the time (at least 5 found)."""
    best = None
    for threshold in [x / 100 for x in range(50, 100)] + [0.995, 0.999]:
        found = [(gold, name) for about, gold, name in candidates if about >= threshold]
        if len(found) >= 5 and sum(g for g, _ in found) / len(found) >= floor:
            best = {
                "threshold": threshold,
                "found": len(found),
                "precision": round(sum(g for g, _ in found) / len(found), 4),
            }
            break
    return best or {"threshold": 1.0, "found": 0, "precision": None}


def evaluate_articles(classifier: Classifier, data: Path) -> dict:
    out = {}
    texts, labels, _ = read_split(data / "valid.csv")
    scored = classifier.score_texts(texts, ["en"] * len(texts))
    out["valid.csv"] = macro_f1([LABELS[y] for y in labels], [r.label for r in scored])
    with ZH_EVAL.open(encoding="utf-8", newline="") as handle:
        zh_rows = list(csv.DictReader(handle))
    scored = classifier.score_texts([r["text"] for r in zh_rows], ["zh"] * len(zh_rows))
    out["zh_headlines.csv"] = macro_f1([r["label"] for r in zh_rows], [r.label for r in scored])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test", "holdout"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--choose-add-threshold", action="store_true")
    parser.add_argument("--skip-articles", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    catalogue = load_topics()
    topics = {
        name: TopicConfig(keywords=entry["aliases"], description=entry.get("description", ""))
        for name, entry in catalogue.items()
    }
    config = ModelConfig(sentiment=args.model, threads=args.threads, precision=args.precision)
    classifier = Classifier.from_config(config, topics)
    started = time.monotonic()
    report: dict = {"model": classifier.describe()["models"], "precision": args.precision}
    if args.split == "holdout":
        report["owned"] = evaluate_owned(classifier, read_holdout(), None)
    else:
        report["owned"] = evaluate_owned(classifier, read_rows(), args.split)
    candidates = report["owned"].pop("_add_candidates")
    if args.choose_add_threshold:
        report["topic_add_threshold"] = choose_add_threshold(candidates)
    if not args.skip_articles:
        report["article"] = evaluate_articles(classifier, args.data)
    report["seconds"] = round(time.monotonic() - started, 1)
    owned = report["owned"]
    print(f"== {args.split} split: {owned['rows']} rows {owned['languages']}")
    for group, figures in owned["sentiment_toward_topic"].items():
        if not group.startswith("topic:"):
            print(
                f"sentiment toward topic [{group}]: accuracy {figures['accuracy']} "
                f"macro-F1 {figures['macro_f1']} (n={figures['n']})"
            )
    for group, figures in owned["sentiment_toward_topic"].items():
        if group.startswith("topic:"):
            print(f"  {group}: accuracy {figures['accuracy']} (n={figures['n']})")
    print(f"opposite-sign rows: {owned['opposite_sign']}")
    print("topics (precision / recall / support):")
    for key, figures in owned["topics"].items():
        print(f"  {key}: {figures['precision']} / {figures['recall']} / {figures['support']}")
    if "topic_add_threshold" in report:
        print(f"topic_add_threshold: {report['topic_add_threshold']}")
    for name, figures in report.get("article", {}).items():
        print(
            f"article [{name}]: macro-F1 {figures['macro_f1']} accuracy {figures['accuracy']} {figures['f1']}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
