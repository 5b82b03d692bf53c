"""Why an alert transition happened, as facts a person can check.

The facts are stored with the transition (`alert_events.detail`, JSON), are the body of its notification
(the outbox payload) and are what `monitor alerts show ID` prints, so the three always agree:

- the metric's value against its threshold and clear level, the window, and the baseline it was compared with
  (volume_ratio, sentiment_shift) or the coverage it is a share of (coverage_share);
- the evidence: stories, distinct publishers and articles in the window, and the minimums the rule asks for;
- the top stories (at most five) in the order that explains the turn: headline, the story's sentiment toward
  the topic, how many publishers carry it, a link to its first article — one line per story, never a list of
  copies of one wire story;
- what changed since the alert's last notice: value, stories and sources then and now, new stories since.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from monitor.alerts.lifecycle import NOTIFIED_KINDS
from monitor.alerts.metrics import METRICS, Measurement, clear_level, headline_order
from monitor.config import AlertRuleConfig
from monitor.store import alerts as alert_store
from monitor.store import outbox
from monitor.store.tables import Alert, AlertEvent, Notification
from monitor.store.windows import WindowStory, top_stories, window_sources, window_stories
from monitor.timeutil import as_utc, isoformat

if TYPE_CHECKING:
    from monitor.store.alerts import Episode

TOP_STORIES = 5


def explain(
    session: Session,
    rule: AlertRuleConfig,
    m: Measurement,
    kind: str,
    reason: str | None,
    now: datetime,
    previous: AlertEvent | None = None,
) -> dict[str, Any]:
    """The facts of one transition of `rule` at `now` (JSON-ready)."""
    stories = window_stories(session, rule.topic, m.window_start, m.window_end)
    order = headline_order(rule, resolved=kind == "resolved")
    since = as_utc(previous.at) if previous is not None else None
    facts = rule_facts(rule, m, kind, reason, now)
    facts.update(evidence(session, rule, m, stories))
    facts.update(
        headline_order=order,
        headlines=[story_facts(s, since) for s in top_stories(stories, session, order, TOP_STORIES)],
        previous=previous_facts(previous),
        new_stories=None if since is None else sum(1 for s in stories if as_utc(s.first_seen) > since),
    )
    return facts


def rule_facts(
    rule: AlertRuleConfig, m: Measurement, kind: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    """The rule's side: what was measured, against which threshold, over which window."""
    return {
        "kind": kind,
        "rule": rule.name,
        "topic": rule.topic,
        "severity": rule.severity,
        "metric": rule.metric,
        "direction": rule.direction,
        "threshold": rule.threshold,
        "clear": rule.clear,
        "clear_level": clear_level(rule),
        "unit": rule.count,
        "min_articles": rule.min_articles,
        "min_sources": rule.min_sources,
        "value": m.value,
        "count": m.count,
        "window_seconds": rule.window.total_seconds(),
        "window_start": isoformat(m.window_start),
        "window_end": isoformat(m.window_end),
        "baseline_seconds": rule.baseline.total_seconds()
        if rule.baseline is not None and METRICS[rule.metric].needs_baseline
        else None,
        "baseline_count": m.baseline_count,
        "baseline_value": m.baseline_value,
        "coverage_total": m.coverage_total,
        "at": isoformat(now),
        "reason": reason,
    }


def evidence(
    session: Session, rule: AlertRuleConfig, m: Measurement, stories: list[WindowStory]
) -> dict[str, Any]:
    """Stories, articles and publishers in the window, whichever unit the rule counts."""
    sources = m.sources
    if sources is None:
        sources = window_sources(session, rule.topic, m.window_start, m.window_end)
    articles = m.articles if m.articles is not None else sum(s.window_articles for s in stories)
    return {"stories": len(stories), "articles": articles, "sources": sources}


def story_facts(story: WindowStory, since: datetime | None) -> dict[str, Any]:
    """One top story, as a message line shows it."""
    return {
        "title": story.headline,
        "url": story.url,
        "source": story.source,
        "score": round(story.sentiment, 4),
        "label": story.label,
        "sources": story.sources,
        "articles": story.articles,
        "story_id": story.story_id,
        "happened_at": isoformat(story.first_seen),
        "new": since is not None and as_utc(story.first_seen) > since,
    }


# ----------------------------------------------------------------------------- the last notice


def last_notice(session: Session, alert: Alert) -> AlertEvent | None:
    """The alert's latest notified transition (fired, reminder or resolved), if it ever had one."""
    if alert.last_notified_at is None:
        return None
    events = alert_store.events(session, since=alert.last_notified_at, fingerprints=[alert.fingerprint])
    notified = [e for e in events if e.kind in NOTIFIED_KINDS]
    return notified[-1] if notified else None


def previous_facts(event: AlertEvent | None) -> dict[str, Any] | None:
    """What the last notice said: its kind, time, value and evidence (older events carry value only)."""
    if event is None:
        return None
    detail = stored_detail(event)
    return {
        "kind": event.kind,
        "at": isoformat(event.at),
        "value": event.value,
        "count": event.article_count,
        "stories": detail.get("stories"),
        "sources": detail.get("sources"),
        "articles": detail.get("articles"),
    }


def stored_detail(event: AlertEvent) -> dict[str, Any]:
    """An event's detail JSON (empty when it has none or it does not parse)."""
    if not event.detail:
        return {}
    try:
        detail = json.loads(event.detail)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


# ----------------------------------------------------------------------------- reading it back


def episode_evidence(session: Session, episodes: list[Episode]) -> list[dict[str, Any]]:
    """Per episode: `id` (its fired event, else its first event: what `monitor alerts show` takes) and the
    stories, articles and sources its window held then (events stored before explanations: articles only)."""
    ids = [event_id for episode in episodes for event_id in episode.event_ids]
    rows: dict[int, AlertEvent] = {}
    for start in range(0, len(ids), 500):
        query = sa.select(AlertEvent).where(AlertEvent.id.in_(ids[start : start + 500]))
        rows.update({event.id: event for event in session.execute(query).scalars()})  # type: ignore[misc]
    out = []
    for episode in episodes:
        events = [rows[i] for i in episode.event_ids if i in rows]
        named = next((e for e in events if e.kind == "fired"), events[0] if events else None)
        detail = stored_detail(named) if named is not None else {}
        out.append(
            {
                "id": named.id if named is not None else None,
                "stories": detail.get("stories"),
                "articles": detail.get("articles", episode.articles),
                "sources": detail.get("sources"),
            }
        )
    return out


def describe_event(session: Session, event_id: int, rules: list[AlertRuleConfig]) -> dict[str, Any] | None:
    """One alert event with its explanation, its episode and its notification (`monitor alerts show`)."""
    event = session.get(AlertEvent, event_id)
    if event is None:
        return None
    history = alert_store.events(session, fingerprints=[event.fingerprint])
    return {
        "id": event.id,
        "fingerprint": event.fingerprint,
        "rule": event.rule,
        "topic": event.topic,
        "kind": event.kind,
        "at": isoformat(event.at),
        "value": event.value,
        "threshold": event.threshold,
        "explanation": event_facts(session, event, rules),
        "episode": [
            {"id": e.id, "kind": e.kind, "at": isoformat(e.at), "value": e.value}
            for e in _episode_of(history, event_id)
        ],
        "notification": _notification(session, event_id),
        # One per receiver the transition was routed to (`notification` is the first of them).
        "notifications": [_note(row) for row in outbox.all_for_event(session, event_id)],
    }


def event_facts(session: Session, event: AlertEvent, rules: list[AlertRuleConfig]) -> dict[str, Any]:
    """The event's stored explanation; for events stored before explanations, its notification's payload,
    else what the event row says (with the rule's settings while it is still configured)."""
    detail = stored_detail(event)
    if "metric" in detail:
        return detail
    notification = outbox.for_event(session, event.id) if event.id is not None else None
    if notification is not None:
        payload = json.loads(notification.payload)
        if isinstance(payload, dict) and "metric" in payload:
            return payload
    rule = next((r for r in rules if r.name == event.rule and r.topic == event.topic), None)
    return {
        "kind": event.kind,
        "rule": event.rule,
        "topic": event.topic,
        "metric": rule.metric if rule is not None else "unknown",
        "direction": rule.direction if rule is not None else "below",
        "threshold": event.threshold,
        "clear": rule.clear if rule is not None else None,
        "min_articles": rule.min_articles if rule is not None else 0,
        "value": event.value,
        "count": event.article_count,
        "window_seconds": rule.window.total_seconds() if rule is not None else 0,
        "at": isoformat(event.at),
        "reason": detail.get("reason"),
    }


def _episode_of(history: list[AlertEvent], event_id: int) -> list[AlertEvent]:
    """The events of the episode `event_id` belongs to (an episode ends with resolved or cancelled)."""
    episode: list[AlertEvent] = []
    for event in history:
        episode.append(event)
        if event.kind in ("resolved", "cancelled"):
            if any(e.id == event_id for e in episode):
                return episode
            episode = []
    return episode if any(e.id == event_id for e in episode) else []


def _notification(session: Session, event_id: int) -> dict[str, Any] | None:
    row = outbox.for_event(session, event_id)
    return None if row is None else _note(row)


def _note(row: Notification) -> dict[str, Any]:
    return {
        "id": row.id,
        "receiver": row.receiver,
        "status": row.status,
        "attempts": row.attempts,
        "delivered_at": isoformat(row.delivered_at),
        "delivered_via": row.delivered_via,
        "error": row.last_error if row.status != "delivered" else None,
    }
