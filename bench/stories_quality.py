"""Story clustering quality: pairwise precision and recall on the project's labelled set of events.

    python bench/stories_quality.py [--split test|dev|all] [--grid] [--json FILE]

The set (models/data/stories/events.csv, see its README) holds articles labelled with the event they report:
syndicated copies, rewrites, English/Chinese write-ups of one event, hard negatives (two different Nvidia
earnings-day stories, daily market wraps) and bad input (one-word headlines, shared boilerplate). Articles go
through the product's own path: the topics the classifier assigns (`Classifier.score_texts`, the shipped model
and config/monitor.yaml's topics), the stage's meaning vector of each article (`MeaningEmbedder`) and
`StoryIndex` (monitor/stories/cluster.py), in order of arrival, with the configured window. Every pair of
articles is then counted: same story and same event (true positive), same story but different events (false
positive), different stories for one event (false negative), apart by language relation: same language, or
cross-language (English against Chinese).

Events are split by a hash of their id: `dev` (a third) is where thresholds were chosen (`--grid` prints the
candidates), `test` (the rest) is what the README reports. Floors: precision >= 0.95 and recall >= 0.85 on
same-language pairs, >= 0.80 / 0.70 cross-language.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.classify.classifier import article_text  # noqa: E402
from monitor.config import StoriesConfig  # noqa: E402
from monitor.stories._embed import MeaningEmbedder  # noqa: E402
from monitor.stories._text import Features, meaning_text  # noqa: E402
from monitor.stories.cluster import Member, StoryIndex, Thresholds  # noqa: E402

DATA = ROOT / "models" / "data" / "stories" / "events.csv"
T0 = datetime(2026, 1, 5, tzinfo=UTC)
FLOORS = {"same_language": (0.95, 0.85), "cross_language": (0.80, 0.70)}


@dataclass(frozen=True)
class Row:
    event: str
    lang: str
    source: str
    at: datetime
    title: str
    summary: str


def read_rows(path: Path = DATA) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Row(
                r["event"],
                r["lang"],
                r["source"],
                T0 + timedelta(minutes=int(r["minutes"])),
                r["title"],
                r["summary"],
            )
            for r in csv.DictReader(handle)
        ]


def split_of(event: str) -> str:
    return "dev" if int(hashlib.sha1(event.encode()).hexdigest(), 16) % 3 == 0 else "test"


def cluster(
    rows: list[Row], vectors: list, topics: list[frozenset[str]], thresholds: Thresholds
) -> list[int]:
    """Story id per row, placing rows in order of arrival exactly as the stage does."""
    index = StoryIndex(window=StoriesConfig().window, thresholds=thresholds)
    stories = [0] * len(rows)
    first_seen: dict[int, datetime] = {}
    order = sorted(range(len(rows)), key=lambda i: (rows[i].at, i))
    for i in order:
        features = Features.of(rows[i].title, rows[i].summary)
        match = index.match(features, vectors[i], rows[i].at, topics[i])
        if match is None:
            story = len(first_seen) + 1
            first_seen[story] = rows[i].at
        else:
            story = match.story_id
        stories[i] = story
        index.add(Member(i, story, first_seen[story], rows[i].at, features, vectors[i], topics[i]))
    return stories


def pairwise(rows: list[Row], stories: list[int]) -> dict[str, dict[str, float]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    for i, j in itertools.combinations(range(len(rows)), 2):
        relation = "cross_language" if (rows[i].lang == "en") != (rows[j].lang == "en") else "same_language"
        gold, said = rows[i].event == rows[j].event, stories[i] == stories[j]
        if gold and said:
            counts[relation][0] += 1
        elif said:
            counts[relation][1] += 1
        elif gold:
            counts[relation][2] += 1
    out = {}
    for relation, (tp, fp, fn) in sorted(counts.items()):
        out[relation] = {
            "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
            "same_event_pairs": tp + fn,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
        }
    return out


def false_merges(rows: list[Row], stories: list[int], limit: int = 10) -> list[tuple[str, str]]:
    by_story: dict[int, list[int]] = defaultdict(list)
    for i, story in enumerate(stories):
        by_story[story].append(i)
    out = []
    for members in by_story.values():
        for i, j in itertools.combinations(members, 2):
            if rows[i].event != rows[j].event and len(out) < limit:
                out.append((rows[i].title, rows[j].title))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="test", choices=("test", "dev", "all"))
    parser.add_argument("--grid", action="store_true", help="print P/R for candidate thresholds")
    parser.add_argument("--text-only", action="store_true", help="no meaning vectors (generic models)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from monitor.classify import Classifier
    from monitor.config import ModelConfig, load_config

    rows = [r for r in read_rows() if args.split == "all" or split_of(r.event) == args.split]
    settings = load_config(ROOT / "config" / "monitor.yaml", environ={})
    classifier = Classifier.from_config(ModelConfig(threads=2, precision="fp32"), settings.topics)
    started = time.monotonic()
    scored = classifier.score_texts([article_text(r.title, r.summary) for r in rows], [r.lang for r in rows])
    seconds = time.monotonic() - started
    embedded = MeaningEmbedder().embed([meaning_text(r.title, r.summary) for r in rows])
    vectors = [
        None if args.text_only or not Features.of(r.title, r.summary).enough else embedded[i]
        for i, r in enumerate(rows)
    ]
    topics = [frozenset(t.name for t in s.topics) for s in scored]
    config = StoriesConfig()
    base = Thresholds(config.text_threshold, config.meaning_threshold, config.cross_language_threshold)
    events = len({r.event for r in rows})
    print(f"{len(rows)} articles, {events} events ({args.split}), scored in {seconds:.1f}s")

    if args.grid:
        for text, meaning, cross in itertools.product(
            (0.3, 0.4, 0.5), (0.90, 0.92, 0.94), (0.84, 0.86, 0.88)
        ):
            result = pairwise(rows, cluster(rows, vectors, topics, Thresholds(text, meaning, cross)))
            same, crossr = result.get("same_language", {}), result.get("cross_language", {})
            print(
                f"text {text:.2f} meaning {meaning:.2f} cross {cross:.2f}: "
                f"same P {same.get('precision')} R {same.get('recall')}  "
                f"cross P {crossr.get('precision')} R {crossr.get('recall')}"
            )

    stories = cluster(rows, vectors, topics, base)
    result = pairwise(rows, stories)
    print(f"thresholds: text {base.text} meaning {base.meaning} cross-language {base.cross_language}")
    for relation, figures in result.items():
        floor_p, floor_r = FLOORS[relation]
        verdict = "meets" if figures["precision"] >= floor_p and figures["recall"] >= floor_r else "BELOW"
        print(
            f"  {relation}: precision {figures['precision']:.3f} recall {figures['recall']:.3f} "
            f"({figures['same_event_pairs']} same-event pairs) - {verdict} floor {floor_p}/{floor_r}"
        )
    merges = false_merges(rows, stories)
    if merges:
        print("false merges (first ten):")
        for a, b in merges:
            print(f"  {a!r}  ~  {b!r}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"split": args.split, "articles": len(rows), "pairs": result}, indent=2) + "\n"
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
