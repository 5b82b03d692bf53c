"""The project's own labelled set (models/data/): rows, topics and the fixed train / dev / test split.

Each row is a text with its article label and (topic, label) targets (see models/data/GUIDE.md). The split
is by a hash of the normalised text, so it never changes as files grow and a text lands in the same split
whoever reads it: 20% test (never used for training or for choosing anything), 10% dev (epoch and
threshold choice), 70% train.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "models" / "data"
sys.path.insert(0, str(DATA))

from validate import check, parse_targets  # noqa: E402

# Topics kept out of training entirely: they measure how the model reads a topic it has never been taught,
# as with one a user adds to the config.
UNSEEN_TOPICS = ("amd", "hbm_supply")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Row:
    text: str
    lang: str
    article: str
    targets: dict[str, str]
    source: str  # the file it came from

    @property
    def split(self) -> str:
        return split_of(self.text)


def split_of(text: str) -> str:
    key = unicodedata.normalize("NFKC", text).casefold().strip()
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket < 2 else "dev" if bucket < 3 else "train"


def load_topics() -> dict[str, dict]:
    return yaml.safe_load((DATA / "topics.yaml").read_text(encoding="utf-8"))


def read_holdout() -> list[Row]:
    """The challenge set (holdout/*.csv): written apart from the authors' files, in another style (sentences
    from inside articles, analyst notes, posts), and never read by training, whatever its hash says."""
    return read_rows(sorted((DATA / "holdout").glob("*.csv")))


def read_rows(paths: list[Path] | None = None) -> list[Row]:
    """Every valid row of the labelled files (authors/*.csv by default); a file with errors is refused."""
    topics = set(load_topics())
    paths = sorted((DATA / "authors").glob("*.csv")) if paths is None else paths
    rows: list[Row] = []
    seen: set[str] = set()
    for path in paths:
        errors, _stats = check(path, topics)
        if errors:
            raise SystemExit(f"{path}: {len(errors)} errors, first: {errors[0]}")
        with path.open(encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle):
                text = record["text"].strip()
                key = unicodedata.normalize("NFKC", text).casefold()
                if key in seen:
                    continue  # the same text written by two authors: keep the first
                seen.add(key)
                rows.append(
                    Row(
                        text,
                        record["lang"],
                        record["article"],
                        parse_targets(record["targets"], topics),
                        path.stem,
                    )
                )
    return rows
