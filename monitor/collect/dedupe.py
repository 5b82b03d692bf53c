"""Dedupe keys: canonical URL, else the entry's guid (scoped to its feed), else a hash of title+summary.

A URL identifies an article only if it tells entries apart: some feeds give every entry the site's
home page as its link, or reuse one link for distinct items. Such a URL is ignored for those entries
and their guid (or content hash) is used instead, so distinct entries are never merged.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

from monitor.collect.normalize import Entry, canonical_url
from monitor.store.articles import ArticleInput

URL_MAX = 2000  # the column's size: a longer URL still keys the entry but is not stored


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shared_urls(entries: Sequence[Entry]) -> set[str]:
    """URLs used by several *different* entries of one feed document."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.url:
            groups[entry.url].append(entry)
    shared = set()
    for url, group in groups.items():
        if len(group) < 2:
            continue
        guids = {entry.guid for entry in group if entry.guid}
        hashes = {entry.content_hash for entry in group}
        if len(guids) > 1 or (not guids and len(hashes) > 1):
            shared.add(url)
    return shared


def _is_site_root(url: str) -> bool:
    """`https://example.com/` names a site, never an article."""
    rest = url.split("://", 1)[-1]
    return "/" not in rest.rstrip("/") and "?" not in rest


def dedupe_key(entry: Entry, feed_name: str, *, url_ok: bool = True) -> str:
    if entry.url and url_ok and not _is_site_root(entry.url):
        return _digest(f"url:{entry.url}")
    if entry.guid:
        return _digest(f"guid:{feed_name}:{entry.guid}")
    return _digest(f"hash:{entry.content_hash}")


def dedupe_entries(
    entries: Sequence[Entry], *, feed_name: str, not_article_urls: Iterable[str | None] = ()
) -> tuple[list[ArticleInput], int]:
    """Keyed, de-duplicated inputs (first occurrence wins) and how many duplicates were dropped."""
    ignored = {canonical_url(url) for url in not_article_urls if url}
    ignored |= _shared_urls(entries)
    seen: set[str] = set()
    out: list[ArticleInput] = []
    duplicates = 0
    for entry in entries:
        key = dedupe_key(entry, feed_name, url_ok=entry.url not in ignored)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        out.append(
            ArticleInput(
                dedupe_key=key,
                title=entry.title,
                summary=entry.summary,
                content_hash=entry.content_hash,
                url=entry.url if entry.url and len(entry.url) <= URL_MAX else None,
                guid=entry.guid,
                author=entry.author,
                source=entry.source,
                language=entry.language,
                published_at=entry.published_at,
            )
        )
    return out, duplicates
