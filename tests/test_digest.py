"""Digests (monitor/digest): content against the previous period, once per period across concurrent senders
and restarts, the DST rule, config errors, the CLI, and delivery through the outbox to the Slack stand-in.

Real databases (SQLite and PostgreSQL through the `engine` fixture); articles and stories are stored for
real (the clusterer is not under test: articles are placed in stories by hand, through the store).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import make_settings
from seed import SeedArticle, seed
from slackserver import DEFAULT_TOKEN

from monitor.cli import cli
from monitor.config import ConfigError, DigestConfig, load_config
from monitor.digest import (
    DigestSender,
    Period,
    build_digest,
    current_period,
    due_at,
    render_slack,
    render_text,
)
from monitor.notify import Deliverer
from monitor.scheduler import MonitorScheduler
from monitor.store import alerts as alert_store
from monitor.store import digests as digest_store
from monitor.store import outbox
from monitor.store.db import create_db_engine, session_scope
from monitor.store.stories import Placement, add_members, new_stories

UTC_DAY = DigestConfig(at="08:00", timezone="UTC")
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # the period [START, END), the one before [START - 1d, START)
END = START + timedelta(days=1)
H = timedelta(hours=1)


def story(
    engine: sa.Engine, headline: str, at: datetime, topics: dict[str, float], sources: list[str]
) -> int:
    """One story carried by `sources` (one article each, a minute apart), every article with `topics`."""
    articles = [
        SeedArticle(
            f"{headline} - {source}", at + i * timedelta(minutes=1), topics, url=f"https://{source}/{i}"
        )
        for i, source in enumerate(sources)
    ]
    ids = seed(engine, articles)
    with engine.begin() as connection:
        [story_id] = new_stories(connection, [(headline, at)])
        add_members(
            connection,
            [
                Placement(aid, story_id, i == 0, source, "en", a.at, 1.0, "first" if i == 0 else "text", None)
                for i, (aid, a, source) in enumerate(zip(ids, articles, sources, strict=True))
            ],
        )
    return story_id


def alert_event(engine: sa.Engine, kind: str, at: datetime, value: float, **detail: object) -> None:
    with session_scope(engine) as session:
        alert_store.add_event(
            session,
            fp=alert_store.fingerprint("nvidia-drop", "nvidia"),
            rule="nvidia-drop",
            topic="nvidia",
            kind=kind,
            at=at,
            value=value,
            threshold=-0.3,
            article_count=3,
            detail={"metric": "mean_sentiment", **detail},
        )


@pytest.fixture
def news(engine: sa.Engine) -> sa.Engine:
    """Three Nvidia stories in the period (one also about TPUs), one the day before, others outside."""
    pubs = ["reuters.com", "cnbc.com", "ft.com", "bloomberg.com"]
    story(
        engine,
        "Nvidia loses $140bn as Google pitches TPUs to Meta",
        START + 2 * H,
        {"nvidia": -0.8, "tpu": 0.5},
        pubs,
    )
    story(engine, "Nvidia unveils Rubin servers", START + 5 * H, {"nvidia": 0.6}, pubs[:2])
    story(engine, "Nvidia <!channel> supplier warns on orders", START + 9 * H, {"nvidia": -0.4}, pubs[2:3])
    story(engine, "Nvidia earnings beat estimates", START - 20 * H, {"nvidia": 0.4}, pubs[:1])
    story(engine, "Nvidia news from long before", START - 30 * H, {"nvidia": -0.9}, pubs[:3])
    story(engine, "Nvidia news after the period", END + H, {"nvidia": -0.9}, pubs[:3])
    alert_event(engine, "pending", START + 3 * H, -0.45)
    alert_event(engine, "fired", START + 3 * H + 15 * timedelta(minutes=1), -0.45)
    alert_event(engine, "resolved", START + 12 * H, -0.05, reason="cleared")
    alert_event(engine, "fired", START - 2 * H, -0.5)  # the period before: not in this digest
    return engine


# ----------------------------------------------------------------------------- content


def test_content_against_the_previous_period(news: sa.Engine) -> None:
    period = Period(start=START, end=END, previous_start=START - timedelta(days=1))
    content = build_digest(news, name="digest", topics=["nvidia", "tpu", "ai_bubble"], period=period)
    nvidia, tpu, bubble = content.topics

    assert (nvidia.current.stories, nvidia.current.articles) == (3, 7)  # copies of one story count once
    assert nvidia.current.mean_sentiment == pytest.approx((-0.8 + 0.6 - 0.4) / 3)
    assert (nvidia.current.negative_share, nvidia.current.positive_share) == pytest.approx((2 / 3, 1 / 3))
    assert (nvidia.previous.stories, nvidia.previous.mean_sentiment) == (1, pytest.approx(0.4))
    assert (tpu.current.stories, tpu.current.articles, tpu.current.mean_sentiment) == (
        1,
        4,
        pytest.approx(0.5),
    )
    assert tpu.previous.stories == 0 and tpu.previous.mean_sentiment is None
    assert bubble.current.stories == 0 and not bubble.top_stories

    # The most widely carried first, with the source count and the sentiment toward every topic.
    top = nvidia.top_stories
    assert [(s.headline, s.sources, s.articles) for s in top] == [
        ("Nvidia loses $140bn as Google pitches TPUs to Meta", 4, 4),
        ("Nvidia unveils Rubin servers", 2, 2),
        ("Nvidia <!channel> supplier warns on orders", 1, 1),
    ]
    assert top[0].sentiment == pytest.approx(-0.8) and top[0].label == "negative"
    assert [(t, round(s, 2)) for t, s, _label in top[0].votes] == [("nvidia", -0.8), ("tpu", 0.5)]
    assert top[0].url == "https://reuters.com/0"
    assert [s.headline for s in tpu.top_stories] == ["Nvidia loses $140bn as Google pitches TPUs to Meta"]
    assert [t for t, _s, _label in tpu.top_stories[0].votes] == ["tpu", "nvidia"]  # the section's topic first

    # Fired and resolved in the period; pending and the earlier episode are not.
    assert [(a.kind, a.at, a.value, a.reason) for a in nvidia.alerts] == [
        ("fired", START + 3 * H + timedelta(minutes=15), -0.45, None),
        ("resolved", START + 12 * H, -0.05, "cleared"),
    ]
    assert not tpu.alerts

    data = content.as_dict()
    assert data["period"] == {
        "start": "2026-03-01T08:00:00Z",
        "end": "2026-03-02T08:00:00Z",
        "previous_start": "2026-02-28T08:00:00Z",
    }
    assert data["topics"][0]["top_stories"][0]["votes"][1] == {
        "topic": "tpu",
        "sentiment": 0.5,
        "label": "positive",
    }
    json.dumps(data)


def test_rendered_text_and_slack(news: sa.Engine) -> None:
    period = Period(start=START, end=END, previous_start=START - timedelta(days=1))
    content = build_digest(
        news,
        name="digest",
        topics=["nvidia", "tpu"],
        period=period,
        timezone="Europe/Berlin",
        schedule="daily",
    )
    text = render_text(content)
    assert text.startswith("Daily digest · 2026-03-01 09:00 → 2026-03-02 09:00 Europe/Berlin")
    assert "Volume: 3 stories (7 articles) · period before: 1 story (+2)" in text
    assert "Sentiment: -0.20 · 67% negative, 33% positive · period before: +0.40 (change -0.60)" in text
    top = "• Nvidia loses $140bn as Google pitches TPUs to Meta — 4 sources, 4 articles"
    assert f"{top} · nvidia -0.80, tpu +0.50\n    https://reuters.com/0" in text
    assert "• 🔴 2026-03-01 12:15 fired nvidia-drop: mean sentiment -0.45 (threshold -0.30)" in text
    assert "• ✅ 2026-03-01 21:00 resolved nvidia-drop: mean sentiment -0.05 (the metric is back past" in text

    fallback, blocks = render_slack(content, "https://monitor.example.com")
    slack = fallback + json.dumps(blocks, ensure_ascii=False)
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack  # a headline pings nobody
    assert "<https://reuters.com/0|Nvidia loses $140bn" in slack
    assert (
        fallback.startswith("Daily digest")
        and "nvidia 3 stories (+2), sentiment -0.20 (was +0.40)" in fallback
    )
    assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)


# ----------------------------------------------------------------------------- schedule and DST

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_time_in_the_spring_forward_gap_is_due_at_the_end_of_the_gap() -> None:
    # 2026-03-29: Europe/Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    assert due_at(datetime(2026, 3, 29).date(), DigestConfig(at="02:30").at, BERLIN) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    # The days around it: 02:30 CET, 02:30 CEST.
    assert due_at(datetime(2026, 3, 28).date(), DigestConfig(at="02:30").at, BERLIN) == datetime(
        2026, 3, 28, 1, 30, tzinfo=UTC
    )
    assert due_at(datetime(2026, 3, 30).date(), DigestConfig(at="02:30").at, BERLIN) == datetime(
        2026, 3, 30, 0, 30, tzinfo=UTC
    )
    # 2026-10-25: 02:30 happens twice; the first (CEST) counts.
    assert due_at(datetime(2026, 10, 25).date(), DigestConfig(at="02:30").at, BERLIN) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_periods_span_23_and_25_hours_across_dst() -> None:
    config = DigestConfig(at="08:00", timezone="Europe/Berlin")
    spring = current_period(config, datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert spring.end - spring.start == timedelta(hours=23)
    autumn = current_period(config, datetime(2026, 10, 25, 12, tzinfo=UTC))
    assert autumn.end - autumn.start == timedelta(hours=25)
    weekly_config = DigestConfig(period="weekly", weekday="monday", at="07:00", timezone="Europe/Berlin")
    weekly = current_period(weekly_config, datetime(2026, 4, 1, tzinfo=UTC))
    assert weekly.end == datetime(2026, 3, 30, 5, tzinfo=UTC)  # Monday 07:00 CEST
    assert weekly.start == datetime(2026, 3, 23, 6, tzinfo=UTC)  # the Monday before, 07:00 CET
    assert weekly.previous_start == datetime(2026, 3, 16, 6, tzinfo=UTC)


def run_clock(sender: DigestSender, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Call the scheduled send as the scheduler would, every `step`; the instants it queued a digest."""
    queued, now = [], start
    while now < end:
        if sender.send_due(now) is not None:
            queued.append(now)
        now += step
    return queued


def test_dst_gap_day_sends_once_at_the_next_valid_instant(engine: sa.Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, digest={"at": "02:30", "timezone": "Europe/Berlin", "grace": "1h"})
    sender = DigestSender(settings, engine)
    queued = run_clock(
        sender,
        datetime(2026, 3, 28, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 0, tzinfo=UTC),
        timedelta(minutes=5),
    )
    # Once on each day, the gap day included: 02:30 CET, 03:00 CEST (no 02:30 that day), 02:30 CEST.
    assert queued == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    claims = digest_store.claims(engine)
    assert [(c.period_start, c.period_end) for c in claims][1] == (queued[0], queued[1])
    assert len(outbox.list_notifications(engine)) == 3


def test_fall_back_day_sends_once(engine: sa.Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, digest={"at": "02:30", "timezone": "Europe/Berlin"})
    queued = run_clock(
        DigestSender(settings, engine),
        datetime(2026, 10, 24, 22, tzinfo=UTC),
        datetime(2026, 10, 25, 22, tzinfo=UTC),
        timedelta(minutes=10),
    )
    assert queued == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]


def test_a_missed_digest_is_sent_late_within_grace_only(engine: sa.Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, digest={"at": "08:00", "grace": "6h"})
    sender = DigestSender(settings, engine)
    assert sender.send_due(datetime(2026, 3, 2, 15, 0, 1, tzinfo=UTC)) is None  # 7 h late: skipped
    assert sender.send_due(datetime(2026, 3, 3, 13, tzinfo=UTC)) is not None  # 5 h late: sent
    assert sender.send_due(datetime(2026, 3, 3, 13, 1, tzinfo=UTC)) is None  # and only once


# ----------------------------------------------------------------------------- once per period


def test_two_concurrent_senders_queue_one_digest_per_period(
    news: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, digest={"at": "08:00"})
    engines = [create_db_engine(db_url) for _ in range(2)]
    barrier = threading.Barrier(2)

    class Racing(DigestSender):
        def build(self, period, **kwargs):  # noqa: ANN001, ANN202 - both have seen "not claimed" by now
            content = super().build(period, **kwargs)
            barrier.wait(timeout=30)
            return content

    results: list[int | None] = []
    try:
        for day in range(3):  # three periods, each raced by two processes' worth of connections
            now = END + timedelta(days=day, minutes=1)
            threads = [
                threading.Thread(target=lambda e=e, n=now: results.append(Racing(settings, e).send_due(n)))
                for e in engines
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        # After a restart (a new process, a new engine): already claimed, nothing queued.
        restarted = create_db_engine(db_url)
        assert DigestSender(settings, restarted).send_due(END + timedelta(minutes=30)) is None
        restarted.dispose()
    finally:
        for e in engines:
            e.dispose()
    assert len([r for r in results if r is not None]) == 3 and results.count(None) == 3
    claims = digest_store.claims(news)
    assert [c.period_start for c in claims] == [START + timedelta(days=d) for d in range(3)]
    rows = outbox.list_notifications(news)
    assert [(r.kind, r.fingerprint, r.alert_event_id, r.receiver) for r in rows] == [
        ("digest", "digest:digest", None, "default")
    ] * 3


def test_one_outbox_row_per_named_receiver(engine: sa.Engine, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        receivers=[{"name": "desk", "kind": "console"}, {"name": "ops", "kind": "console"}],
        digest={"receivers": ["desk", "ops", "desk"]},
    )
    assert DigestSender(settings, engine).send_due(END + timedelta(minutes=1)) is not None
    rows = outbox.list_notifications(engine)
    assert [(r.receiver, json.loads(r.payload)["key"]) for r in rows] == [
        ("desk", "digest-digest-20260301T080000-20260302T080000"),
        ("ops", "digest-digest-20260301T080000-20260302T080000"),
    ]
    assert [c.receivers for c in digest_store.claims(engine)] == ["desk,ops"]
    report = Deliverer(settings, engine).deliver_due()
    assert (report.delivered, report.failed) == (2, 0)


def test_scheduled_digest_is_delivered_to_slack_once(news: sa.Engine, tmp_path: Path, slack_server) -> None:  # noqa: ANN001
    settings = make_settings(
        tmp_path,
        digest={"at": "08:00", "topics": ["nvidia"], "receivers": ["team-slack"]},
        slack={"bot_token": DEFAULT_TOKEN, "channel": "C0ALERTS1", "api_url": slack_server.api_url},
        notify={"timeout": "2s"},
    )
    for _ in range(2):  # two replicas
        DigestSender(settings, news).send_due(END + timedelta(minutes=1))
    report = Deliverer(settings, news).deliver_due()
    assert report.delivered == 1
    [message] = slack_server.top_level()
    assert message.text.startswith(
        "Daily digest · 2026-03-01 08:00 → 2026-03-02 08:00 UTC: nvidia 3 stories (+2)"
    )
    assert "&lt;!channel&gt;" in json.dumps(message.blocks) and "<!channel>" not in json.dumps(message.blocks)
    assert message.metadata["event_payload"]["kind"] == "digest"
    [row] = outbox.list_notifications(news)
    assert row.receiver == "default"  # no `receivers:` configured: any name means the default destination
    assert Deliverer(settings, news).deliver_due().delivered == 0


def test_scheduler_runs_the_digest_job(engine: sa.Engine, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    at = (now - timedelta(minutes=2)).strftime("%H:%M")
    settings = make_settings(tmp_path, digest={"at": at})

    class Pipeline:  # the stages have their own tests; the digest job needs none of them
        def process_feed(self, feed) -> None:  # noqa: ANN001
            pass

        def evaluate(self) -> list:
            return []

        def deliver(self) -> None:
            pass

        def score_missing(self, **_options: object) -> int:
            return 0

    scheduler = MonitorScheduler(settings, engine, Pipeline())
    scheduler.start()
    try:
        assert "digest" in scheduler.job_ids()
        scheduler.recovering.clear()
        scheduler._digest()
        scheduler._digest()
    finally:
        scheduler.shutdown()
    assert len(digest_store.claims(engine)) == 1
    no_digest = MonitorScheduler(make_settings(tmp_path), engine, Pipeline())
    no_digest.start()
    try:
        assert "digest" not in no_digest.job_ids()
    finally:
        no_digest.shutdown()


# ----------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ('at: "25:00"', "digest.at: not a time of day: '25:00' (expected HH:MM"),
        ("at: 8:30", 'digest.at: not a time of day: 510 (write it in quotes, e.g. "08:30"'),
        ("timezone: Europe/Berln", "digest.timezone: unknown time zone 'Europe/Berln' (an IANA name"),
        ("weekday: friday", "digest: weekday is only used with period: weekly"),
        ("topics: [nvdia]", "digest.topics: unknown topic 'nvdia' (known: "),
        ("receivers: team", "digest.receivers: Input should be a valid list"),
        ("receivers: [1]", "digest.receivers.0: Input should be a valid string"),
        (
            "receivers: [desk, pager]\nreceivers: [{name: desk, kind: console}]",
            "digest.receivers: unknown receiver 'pager' (known: default, desk)",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, digest: str, message: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(f"topics:\n  nvidia: {{keywords: [nvidia]}}\ndigest:\n  {digest}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert f"invalid configuration in {path}" in str(error.value)
    assert message in str(error.value)


def test_cli_prints_and_sends(news: sa.Engine, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"database_url: {db_url}\ntopics:\n  nvidia: {{keywords: [nvidia]}}\n  tpu: {{keywords: [tpu]}}\n"
        'digest:\n  at: "08:00"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    since = START.isoformat()
    result = runner.invoke(cli, ["--config", str(path), "digest", "--since", since, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["topic"] for t in data["topics"]] == ["nvidia", "tpu"]
    assert data["topics"][0]["current"]["stories"] == 4  # since START until now: the later story too

    result = runner.invoke(
        cli, ["--config", str(path), "digest", "--since", since, "--topic", "tpu", "--send"]
    )
    assert result.exit_code == 0, result.output
    assert "tpu\n  Volume: 1 story (4 articles)" in result.output
    assert "digest queued (1 notification); 1 notification delivered via console" in result.output
    [row] = outbox.list_notifications(news)
    assert (row.kind, row.status, row.delivered_via) == ("digest", "delivered", "console")
    assert digest_store.claims(news) == []  # a digest asked for by hand claims no period

    result = runner.invoke(cli, ["--config", str(path), "digest", "--topic", "nope"])
    assert result.exit_code == 2 and "--topic: unknown topic 'nope'" in result.output


def test_the_shipped_example_is_valid(tmp_path: Path) -> None:
    """The commented `digest:` block of config/monitor.yaml loads once uncommented."""
    shipped = (Path(__file__).resolve().parents[1] / "config" / "monitor.yaml").read_text(encoding="utf-8")
    head, example = shipped.split("# digest:\n")
    path = tmp_path / "monitor.yaml"
    path.write_text(head + "digest:\n" + example.replace("#   ", "  "), encoding="utf-8")
    digest = load_config(path, environ={}).digest
    assert digest is not None and (digest.at.hour, digest.timezone, digest.period) == (
        8,
        "Europe/Berlin",
        "daily",
    )
