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

from monitor.stories._text import Features, jaccard, numbers_conflict, subjects_conflict

NUM_PERM = 64
LSH_THRESHOLD = 0.3  # candidates only: the exact Jaccard decides
SUPPORTED_MARGIN = 0.03  # how much lower a cosine may be when words or names are shared too
SUPPORTING_JACCARD = 0.2  # headline words two rewrites of one event share, beyond the company's name
UNSUPPORTED_MEANING = 0.96  # same script, no shared words: only a near-identical meaning joins
LEAD_MARGIN = 0.03  # how far below the lower threshold a meaning match may sit from the story's first article


@dataclass(frozen=True, slots=True)
class Thresholds:
    text: float = 0.5  # Jaccard of headline words and pairs
    meaning: float = 0.92  # cosine, same script
    cross_language: float = 0.85  # cosine, Latin against Chinese


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
    signature: MinHash | None = None  # computed from `features` when not given


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
        self._first: dict[int, int] = {}  # story id -> its first member here (the story's lead)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: int) -> bool:
        return key in self._members

    def move(self, key: int, story_id: int) -> None:
        """Give a member another story id (a provisional one becoming the stored row's)."""
        member = self._members[key]
        if self._first.get(member.story_id) == key:
            del self._first[member.story_id]
        member.story_id = story_id
        self._first.setdefault(story_id, key)

    def first_seen(self, key: int) -> datetime:
        """When the story of a member article was first seen."""
        return self._members[key].story_first_seen

    # -- membership ------------------------------------------------------------------------------------
    def add(self, member: Member) -> None:
        if member.key in self._members:
            self.remove(member.key)
        self._members[member.key] = member
        self._first.setdefault(member.story_id, member.key)
        if member.features.enough:
            self._lsh.insert(member.key, member.signature or signature(member.features))
        if member.vector is not None:
            self._vectors.add(member.key, member.vector)

    def remove(self, key: int) -> None:
        member = self._members.pop(key, None)
        if member is None:
            return
        if self._first.get(member.story_id) == key:
            del self._first[member.story_id]
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
        minhash: MinHash | None = None,
    ) -> Match | None:
        """The story this article belongs to, or None for a new one (`minhash`: its `signature`, if known)."""
        if not features.enough:
            return None
        topics = frozenset(topics)
        best: Match | None = None
        for key in self._lsh.query(minhash or signature(features)):
            member = self._members[key]
            if not self._in_window(member, happened_at) or _conflict(features, member.features):
                continue
            score = _text_similarity(features, member.features)
            if score >= self.thresholds.text and (best is None or score > best.similarity):
                best = Match(member.story_id, round(score, 4), "text", key)
        if best is not None or vector is None:
            return best
        floor = min(self.thresholds.meaning, self.thresholds.cross_language) - SUPPORTED_MARGIN
        for key, cosine in self._vectors.nearest(vector):
            if cosine < floor:
                break
            member = self._members[key]
            if (
                not member.features.enough
                or not self._in_window(member, happened_at)
                or _conflict(features, member.features)
                or (topics and member.topics and not topics & member.topics)
            ):
                continue
            if cosine >= self._meaning_threshold(features, member.features) and self._near_lead(
                vector, member
            ):
                return Match(member.story_id, round(float(cosine), 4), "meaning", key)
        return None

    def _near_lead(self, vector: np.ndarray, member: Member) -> bool:
        """Close enough to the story's first article too: a chain of near neighbours must not walk a story
        from one event to another."""
        lead = self._members.get(self._first.get(member.story_id, -1))
        if lead is None or lead.vector is None or lead.key == member.key:
            return True
        return (
            float(lead.vector @ vector)
            >= min(self.thresholds.meaning, self.thresholds.cross_language) - LEAD_MARGIN
        )

    def _meaning_threshold(self, a: Features, b: Features) -> float:
        """The cosine two articles need. In one script, headlines about one company in the same tone sit close
        in meaning ("Nvidia slumps as demand fears grow", "Nvidia suffers worst week amid bubble fears"):
        without shared words beyond a name they need an almost identical meaning (`UNSUPPORTED_MEANING`).
        Across scripts, shared names and figures ("TPU", "Anthropic", "100") lower the bar a little."""
        if a.script == b.script:
            if jaccard(a.title_shingles, b.title_shingles) >= SUPPORTING_JACCARD:
                return self.thresholds.meaning - SUPPORTED_MARGIN
            return max(self.thresholds.meaning, UNSUPPORTED_MEANING)
        shared = len(a.anchors & b.anchors) >= 2
        return self.thresholds.cross_language - (SUPPORTED_MARGIN if shared else 0.0)

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
                matrix = np.zeros((grown, vector.shape[0]), dtype=np.float32)
                matrix[: self._used] = self._matrix[: self._used]
                keys = np.zeros(grown, dtype=np.int64)
                keys[: self._used] = self._keys[: self._used]
                self._matrix, self._keys = matrix, keys
            row, self._used = self._used, self._used + 1
        self._matrix[row] = vector
        self._keys[row] = key
        self._rows[key] = row

    def remove(self, key: int) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._matrix[row] = 0.0
            self._free.append(row)

    def nearest(self, vector: np.ndarray, limit: int = 16) -> list[tuple[int, float]]:
        """The closest vectors by cosine, best first."""
        if not self._rows:
            return []
        # einsum, not BLAS: a matrix-vector product this small is slower across BLAS threads on a busy CPU.
        cosines = np.einsum("ij,j->i", self._matrix[: self._used], vector.astype(np.float32), optimize=False)
        top = np.argpartition(-cosines, min(limit, self._used) - 1)[:limit]
        top = top[np.argsort(-cosines[top])]
        return [
            (int(self._keys[i]), float(cosines[i]))
            for i in top
            if int(self._keys[i]) in self._rows and self._rows[int(self._keys[i])] == i
        ]


def _conflict(a: Features, b: Features) -> bool:
    return numbers_conflict(a, b) or subjects_conflict(a, b)


def _text_similarity(a: Features, b: Features) -> float:
    """Headline Jaccard; where both carry a substantive summary, the whole text's counts too.

    Summaries are compared only beside the headline, so a boilerplate or shared summary alone never joins
    two items whose headlines differ."""
    title = jaccard(a.title_shingles, b.title_shingles) if a.script == b.script else 0.0
    if a.summary_shingles and b.summary_shingles and title >= 0.2:
        return max(title, jaccard(a.all_shingles, b.all_shingles))
    return title


_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=7)  # its permutations are drawn once, not per article


def signature(features: Features) -> MinHash:
    """The MinHash of an article's shingles (compute once; `match` and `add` take it)."""
    minhash = MinHash(NUM_PERM, seed=7, permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme)
    minhash.update_batch([s.encode("utf-8") for s in features.all_shingles])
    return minhash
