"""The online clusterer: which recent story, if any, a new article belongs to.

It holds the articles of the last `window` (plus the same again for late arrivals) in memory, never the whole
history, so the cost of placing an article does not grow with the number stored:

- **text**: MinHash LSH (`datasketch`) over headline (and substantive summary) words and word pairs finds
  candidates in near-constant time; the exact Jaccard similarity of the candidates decides. Syndicated
  copies, publisher suffixes and edited headlines meet here.
- **meaning**: the multilingual encoder's unit vector of each article (from the classifier's own pass);
  a cosine at or above the threshold joins a translation or a rewrite of the same event. Different
  languages have their own, lower threshold.

Guards keep unrelated news apart: a headline of fewer than three words (or five Chinese characters) matches
nothing; two headlines whose figures all differ ("rises 2%" / "rises 4%") never match; an article only joins
a story first seen within `window` of it, so a story that drifts for days starts anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from datasketch import MinHash, MinHashLSH

from monitor.stories._text import Features, jaccard, numbers_conflict

NUM_PERM = 64
LSH_THRESHOLD = 0.3  # candidates only: the exact Jaccard decides


@dataclass(frozen=True, slots=True)
class Thresholds:
    text: float = 0.5  # Jaccard of headline words and pairs
    meaning: float = 0.93  # cosine, same script
    cross_language: float = 0.90  # cosine, Latin against Chinese


@dataclass(slots=True)
class Member:
    """One article the index holds."""

    key: int  # article id
    story_id: int
    story_first_seen: datetime
    happened_at: datetime
    features: Features
    vector: np.ndarray | None  # unit float32, or None when the model gives none
    topics: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Match:
    story_id: int
    similarity: float
    basis: str  # text | meaning
    article_id: int  # the member it matched


@dataclass
class StoryIndex:
    window: timedelta
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        self._lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
        self._members: dict[int, Member] = {}
        self._vectors = _VectorTable()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: int) -> bool:
        return key in self._members

    def first_seen(self, key: int) -> datetime:
        """When the story of a member article was first seen."""
        return self._members[key].story_first_seen

    # -- membership ------------------------------------------------------------------------------------
    def add(self, member: Member) -> None:
        if member.key in self._members:
            self.remove(member.key)
        self._members[member.key] = member
        if member.features.enough:
            self._lsh.insert(member.key, _minhash(member.features))
        if member.vector is not None:
            self._vectors.add(member.key, member.vector)

    def remove(self, key: int) -> None:
        member = self._members.pop(key, None)
        if member is None:
            return
        if member.features.enough:
            self._lsh.remove(key)
        self._vectors.remove(key)

    def evict_before(self, horizon: datetime) -> int:
        """Forget articles of stories first seen before `horizon`: nothing new may join them any more."""
        old = [key for key, m in self._members.items() if m.story_first_seen < horizon]
        for key in old:
            self.remove(key)
        return len(old)

    # -- matching --------------------------------------------------------------------------------------
    def match(
        self,
        features: Features,
        vector: np.ndarray | None,
        happened_at: datetime,
        topics: Iterable[str] = (),
    ) -> Match | None:
        """The story this article belongs to, or None for a new one."""
        if not features.enough:
            return None
        topics = frozenset(topics)
        best: Match | None = None
        for key in self._lsh.query(_minhash(features)):
            member = self._members[key]
            if not self._in_window(member, happened_at) or numbers_conflict(features, member.features):
                continue
            score = _text_similarity(features, member.features)
            if score >= self.thresholds.text and (best is None or score > best.similarity):
                best = Match(member.story_id, round(score, 4), "text", key)
        if best is not None or vector is None:
            return best
        for key, cosine in self._vectors.nearest(vector):
            member = self._members[key]
            same_script = member.features.script == features.script
            threshold = self.thresholds.meaning if same_script else self.thresholds.cross_language
            if cosine < threshold:
                break
            if (
                not member.features.enough
                or not self._in_window(member, happened_at)
                or numbers_conflict(features, member.features)
                or (topics and member.topics and not topics & member.topics)
            ):
                continue
            return Match(member.story_id, round(float(cosine), 4), "meaning", key)
        return None

    def _in_window(self, member: Member, happened_at: datetime) -> bool:
        return abs(happened_at - member.story_first_seen) <= self.window


class _VectorTable:
    """Unit vectors in one growing matrix; a removed row is zeroed and reused, so a search is one product."""

    def __init__(self) -> None:
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._keys = np.zeros(0, dtype=np.int64)
        self._rows: dict[int, int] = {}
        self._free: list[int] = []
        self._used = 0

    def add(self, key: int, vector: np.ndarray) -> None:
        self.remove(key)
        if self._matrix.shape[1] != vector.shape[0]:
            if self._rows:
                raise ValueError(f"vector of {vector.shape[0]} dimensions among {self._matrix.shape[1]}")
            self._matrix = np.zeros((0, vector.shape[0]), dtype=np.float32)
        if self._free:
            row = self._free.pop()
        else:
            if self._used == len(self._matrix):
                grown = max(256, 2 * len(self._matrix))
                self._matrix = np.resize(self._matrix, (grown, vector.shape[0]))
                self._matrix[self._used :] = 0.0
                self._keys = np.resize(self._keys, grown)
            row, self._used = self._used, self._used + 1
        self._matrix[row] = vector
        self._keys[row] = key
        self._rows[key] = row

    def remove(self, key: int) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._matrix[row] = 0.0
            self._free.append(row)

    def nearest(self, vector: np.ndarray, limit: int = 8) -> list[tuple[int, float]]:
        """The closest vectors by cosine, best first."""
        if not self._rows:
            return []
        cosines = self._matrix[: self._used] @ vector.astype(np.float32)
        top = np.argpartition(-cosines, min(limit, self._used) - 1)[:limit]
        top = top[np.argsort(-cosines[top])]
        return [
            (int(self._keys[i]), float(cosines[i]))
            for i in top
            if int(self._keys[i]) in self._rows and self._rows[int(self._keys[i])] == i
        ]


def _text_similarity(a: Features, b: Features) -> float:
    """Headline Jaccard; where both carry a substantive summary, the whole text's counts too.

    Summaries are compared only beside the headline, so a boilerplate or shared summary alone never joins
    two items whose headlines differ."""
    title = jaccard(a.title_shingles, b.title_shingles) if a.script == b.script else 0.0
    if a.summary_shingles and b.summary_shingles and title >= 0.2:
        return max(title, jaccard(a.all_shingles, b.all_shingles))
    return title


def _minhash(features: Features) -> MinHash:
    minhash = MinHash(num_perm=NUM_PERM, seed=7)
    minhash.update_batch([s.encode("utf-8") for s in features.all_shingles])
    return minhash
