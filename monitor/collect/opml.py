"""OPML import: feed-reader subscription lists -> feed entries in the YAML config file.

The config file stays the source of truth, so imported feeds are written *into* it: the new entries
are inserted at the end of the `feeds:` list as text, leaving every comment and the rest of the file
as it was. The result is validated with the normal config loader before it replaces the file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config import ConfigError, Settings, load_config


class OpmlError(Exception):
    """The OPML file cannot be read, or the config file cannot be edited safely."""


@dataclass(frozen=True)
class OpmlFeed:
    name: str
    url: str
    title: str
    topics: tuple[str, ...] = ()


@dataclass
class ImportPlan:
    feeds: list[OpmlFeed] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # URLs already in the config
    invalid: list[str] = field(default_factory=list)  # outlines with a non-http(s) URL
    duplicates: int = 0  # repeated inside the OPML file


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].strip("-")


def _attr(element: ET.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return value.strip() or None
    return None


def read_opml(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(title, xmlUrl, enclosing folder names) for every subscription outline, in document order."""
    try:
        tree = ET.parse(path)  # noqa: S314 - expat in Python >= 3.11 refuses entity expansion attacks
    except FileNotFoundError:
        raise OpmlError(f"OPML file not found: {path}") from None
    except (ET.ParseError, OSError) as exc:
        raise OpmlError(f"cannot read OPML file {path}: {exc}") from None
    root = tree.getroot()
    if root.tag.lower() != "opml":
        raise OpmlError(f"{path} is not an OPML file (root element <{root.tag}>)")
    body = root.find("body")
    if body is None:
        raise OpmlError(f"{path}: OPML without a <body>")
    out: list[tuple[str, str, tuple[str, ...]]] = []

    def walk(element: ET.Element, folders: tuple[str, ...]) -> None:
        for outline in element:
            if outline.tag.lower() != "outline":
                continue
            url = _attr(outline, "xmlUrl")
            title = _attr(outline, "title") or _attr(outline, "text") or ""
            if url:
                out.append((title, url, folders))
            walk(outline, (*folders, title) if not url and title else folders)

    walk(body, ())
    return out


def plan_import(path: Path, settings: Settings) -> ImportPlan:
    """Which OPML subscriptions to add, with unique names; what is skipped and why."""
    plan = ImportPlan()
    known_urls = {feed.url.rstrip("/") for feed in settings.feeds}
    names = {feed.name for feed in settings.feeds}
    topic_names = {name.lower(): name for name in settings.topics}
    seen: set[str] = set()
    for title, url, folders in read_opml(path):
        key = url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            plan.invalid.append(url)
            continue
        if key in seen:
            plan.duplicates += 1
            continue
        seen.add(key)
        if key in known_urls:
            plan.already.append(url)
            continue
        base = _slug(title) or _slug(parts.hostname or "") or "feed"
        if not re.match(r"^[a-z0-9]", base):
            base = f"feed-{base}"
        name, counter = base, 2
        while name in names:
            name = f"{base}-{counter}"
            counter += 1
        names.add(name)
        topics = tuple(
            topic_names[_slug(folder).replace("-", "_")]
            for folder in folders
            if _slug(folder).replace("-", "_") in topic_names
        )
        plan.feeds.append(OpmlFeed(name=name, url=url, title=title, topics=topics))
    return plan


def _duration(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def yaml_items(feeds: list[OpmlFeed], every: timedelta, indent: str = "  ") -> list[str]:
    """One flow-style line per feed (JSON strings are valid YAML double-quoted scalars)."""
    lines = []
    for feed in feeds:
        item = f"{indent}- {{name: {feed.name}, url: {json.dumps(feed.url)}, every: {_duration(every)}"
        if feed.topics:
            item += f", topics: [{', '.join(feed.topics)}]"
        item += "}"
        if feed.title and feed.title != feed.name:
            item += f"  # {' '.join(feed.title.split())[:80]}"
        lines.append(item)
    return lines


_TOP_KEY = re.compile(r"^[^\s#-]")


def insert_feeds(text: str, items: list[str]) -> str:
    """The config text with `items` appended to its top-level `feeds:` list (created when missing)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^feeds\s*:", line)), None)
    if start is None:
        tail = "" if text.endswith("\n") or not text else "\n"
        return text + tail + "feeds:\n" + "\n".join(items) + "\n"
    rest = lines[start].split(":", 1)[1].split("#", 1)[0].strip()
    if rest in ("[]", "~", "null"):
        lines[start : start + 1] = ["feeds:", *items]
        return "\n".join(lines) + "\n"
    if rest:
        raise OpmlError("the config's `feeds:` is a one-line flow list; edit it by hand or use --print")
    end = start + 1
    last_item = start
    indent = None
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        stripped = lines[end].strip()
        if stripped and not stripped.startswith("#"):
            last_item = end
            if indent is None:
                match = re.match(r"^(\s*)-\s", lines[end])
                indent = match.group(1) if match else None
        end += 1
    if indent is not None and indent != "  ":
        items = [indent + item.lstrip() for item in items]
    lines[last_item + 1 : last_item + 1] = items
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> Settings:
    """Validate `text` as a config file, then replace `path` atomically. Returns the new settings."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            settings = load_config(tmp)
        except ConfigError as exc:
            raise OpmlError(f"the edited config would be invalid, {path} left unchanged:\n{exc}") from None
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
        return settings
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
