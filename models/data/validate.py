"""Check a labelled CSV of the project's set against GUIDE.md: columns, languages, labels and topic names.

    python models/data/validate.py models/data/authors/*.csv
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
LABELS = {"negative", "neutral", "positive"}
LANGS = {"en", "zh-Hans", "zh-Hant"}
COLUMNS = ["text", "lang", "article", "targets"]


def topic_names() -> set[str]:
    return set(yaml.safe_load((HERE / "topics.yaml").read_text(encoding="utf-8")))


def parse_targets(value: str, topics: set[str]) -> dict[str, str]:
    """`nvidia=negative;tpu=positive` -> {"nvidia": "negative", "tpu": "positive"}; ValueError names the fault."""
    targets: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        topic, sep, label = (piece.strip() for piece in item.partition("="))
        if not sep or topic not in topics or label not in LABELS:
            raise ValueError(f"bad target {item!r}")
        if topic in targets:
            raise ValueError(f"topic {topic!r} twice")
        targets[topic] = label
    return targets


def check(path: Path, topics: set[str]) -> tuple[list[str], Counter[str]]:
    errors: list[str] = []
    stats: Counter[str] = Counter()
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            return [f"{path}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}"], stats
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            text = (row["text"] or "").strip()
            if not text:
                errors.append(f"{where}: empty text")
                continue
            if text.casefold() in seen:
                errors.append(f"{where}: duplicate text")
            seen.add(text.casefold())
            if row["lang"] not in LANGS:
                errors.append(f"{where}: lang {row['lang']!r} not in {sorted(LANGS)}")
            if row["article"] not in LABELS:
                errors.append(f"{where}: article {row['article']!r} not in {sorted(LABELS)}")
            try:
                targets = parse_targets(row["targets"] or "", topics)
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
                continue
            stats["rows"] += 1
            stats[f"lang:{row['lang']}"] += 1
            stats["pairs"] += len(targets)
            stats["no-topic rows"] += not targets
            stats["multi-topic rows"] += len(targets) >= 2
            stats["opposite-sign rows"] += {"positive", "negative"} <= set(targets.values())
            for topic, label in targets.items():
                stats[f"{topic}:{label}"] += 1
    return errors, stats


def main(paths: list[str]) -> int:
    topics = topic_names()
    failed = False
    for name in paths:
        errors, stats = check(Path(name), topics)
        failed |= bool(errors)
        for error in errors[:50]:
            print(error)
        print(f"{name}: " + ", ".join(f"{key} {value}" for key, value in sorted(stats.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
