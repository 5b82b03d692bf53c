"""Scoring collected articles end to end: stored scores and topic rows (SQLite and PostgreSQL), CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from seed import SeedArticle, seed
from sqlmodel import Session

from monitor.classify import Classifier
from monitor.cli import cli
from monitor.events import ArticleCollected, ArticleScored
from monitor.store.tables import ArticleScore, ArticleTopic

NOW = datetime.now(UTC).replace(microsecond=0)
TITLES = [
    "Google's TPUs win Meta as Nvidia loses the deal",
    "Broadcom soars on record custom ASIC orders",
    "英伟达股价大跌",
]


def events_for(ids: list[int], titles: list[str]) -> list[ArticleCollected]:
    return [
        ArticleCollected(
            article_id=i,
            feed="wire",
            title=t,
            summary="",
            url=None,
            language=None,
            published_at=NOW - timedelta(hours=1),
        )
        for i, t in zip(ids, titles, strict=True)
    ]


def stored(engine: sa.engine.Engine) -> tuple[dict[int, ArticleScore], list[ArticleTopic]]:
    with Session(engine) as session:
        scores = {row.article_id: row for row in session.exec(sa.select(ArticleScore)).scalars()}
        topics = list(session.exec(sa.select(ArticleTopic).order_by(ArticleTopic.article_id)).scalars())
    return scores, topics


def test_score_articles_stores_scores_and_topics(engine: sa.engine.Engine, classifier: Classifier) -> None:
    at = NOW - timedelta(hours=2)
    ids = seed(engine, [SeedArticle(title=t, at=at, topics={}) for t in TITLES])
    scored = classifier.score_articles(engine, events_for(ids, TITLES))
    assert [s.article_id for s in scored] == ids
    assert all(isinstance(s, ArticleScored) and s.model.startswith("aichip-sentiment@") for s in scored)
    scores, topics = stored(engine)
    assert {scores[i].model_name for i in ids} == {"aichip-sentiment"}
    assert scores[ids[1]].label == "positive" and scores[ids[2]].score == pytest.approx(scored[2].score)
    by_article = {(t.article_id, t.topic): t for t in topics}
    assert by_article[(ids[0], "nvidia")].sentiment < 0 < by_article[(ids[0], "tpu")].sentiment
    assert (ids[1], "custom_chips") in by_article and (ids[2], "nvidia") in by_article
    assert all(t.happened_at == at for t in topics)
    event_topics = {t.name: t.sentiment for t in scored[0].topics}
    assert event_topics["nvidia"] == pytest.approx(by_article[(ids[0], "nvidia")].sentiment)

    # Re-scoring an edited article replaces its rows (no duplicates, no stale topics).
    classifier.score_articles(engine, events_for([ids[0]], ["Nvidia beats estimates and raises guidance"]))
    scores, topics = stored(engine)
    assert [t.topic for t in topics if t.article_id == ids[0]] == ["nvidia"]
    assert scores[ids[0]].label == "positive"


def test_vanished_articles_are_skipped(engine: sa.engine.Engine, classifier: Classifier) -> None:
    ids = seed(engine, [SeedArticle(title="Nvidia rallies", at=NOW, topics={})])
    scored = classifier.score_articles(engine, events_for([ids[0], ids[0] + 999], ["Nvidia rallies", "Gone"]))
    assert [s.article_id for s in scored] == ids
    assert classifier.score_articles(engine, []) == []


def test_a_session_target_leaves_the_commit_to_the_caller(
    sqlite_engine: sa.engine.Engine, classifier: Classifier
) -> None:
    ids = seed(sqlite_engine, [SeedArticle(title="Nvidia rallies", at=NOW, topics={})])
    with Session(sqlite_engine) as session:
        assert len(classifier.score_articles(session, events_for(ids, ["Nvidia rallies"]))) == 1
        session.rollback()
    scores, _ = stored(sqlite_engine)
    assert scores[ids[0]].model_name == "seed"


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    from conftest import TOPICS

    topics = {name: dict(topic) for name, topic in TOPICS.items()}
    topics["tpu"]["rivals"] = ["nvidia"]  # retired key: still accepted
    path = tmp_path / "monitor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'monitor.db'}",
                "topics": topics,
                "model": {"multilingual": None, "threads": 2},
            }
        ),
        encoding="utf-8",
    )
    return path


def test_cli_score_json(config_file: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config_file),
            "score",
            "--format",
            "json",
            "Google's TPUs win Meta as Nvidia loses the deal",
            "Broadcom beats and raises",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [item["text"] for item in data] == [
        "Google's TPUs win Meta as Nvidia loses the deal",
        "Broadcom beats and raises",
    ]
    for item in data:
        assert {"label", "score", "confidence", "topics", "model"} <= set(item)
    topics = {t["name"]: t for t in data[0]["topics"]}
    assert {"name", "relevance", "sentiment"} <= set(topics["nvidia"])
    assert topics["nvidia"]["sentiment"] < 0 < topics["tpu"]["sentiment"]
    assert data[1]["label"] == "positive"


def test_cli_score_stdin_and_table(config_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["--config", str(config_file), "score", "-", "--format", "json"],
        input="Nvidia shares plunge\n\n英伟达股价创新高\n",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [item["text"] for item in data] == ["Nvidia shares plunge", "英伟达股价创新高"]
    assert data[0]["label"] == "negative" and data[1]["language"] == "zh"
    assert [t["name"] for t in data[1]["topics"]] == ["nvidia"]
    result = runner.invoke(cli, ["--config", str(config_file), "score", "Nvidia shares plunge"])
    assert result.exit_code == 0 and "negative" in result.stdout and "nvidia" in result.stdout


def test_cli_score_bad_input(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config_file), "score", "ok", "  "])
    assert result.exit_code == 2 and "text 2 is empty" in result.output
    result = runner.invoke(cli, ["--config", str(config_file), "score", "-"], input="\n\n")
    assert result.exit_code == 2 and "no text on standard input" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"model": {"sentiment": str(tmp_path / "no-such-model")}}), encoding="utf-8"
    )
    result = runner.invoke(cli, ["--config", str(bad), "score", "Nvidia"])
    assert result.exit_code == 1 and "no-such-model" in result.output and "does not exist" in result.output


def test_cli_rescore(config_file: Path, tmp_path: Path) -> None:
    from monitor.store.db import create_db_engine
    from monitor.store.migrate import upgrade

    engine = create_db_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    upgrade(engine)
    ids = seed(
        engine,
        [
            SeedArticle(title="Nvidia shares plunge", at=NOW - timedelta(hours=3), topics={"nvidia": 0.9}),
            SeedArticle(title="Nvidia record revenue", at=NOW - timedelta(days=40), topics={"nvidia": -0.9}),
        ],
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config_file), "rescore", "--since", "7d"])
    assert result.exit_code == 0, result.output
    assert "rescored 1 articles with aichip-sentiment" in result.stdout
    scores, topics = stored(engine)
    assert scores[ids[0]].model_name == "aichip-sentiment" and scores[ids[0]].label == "negative"
    assert scores[ids[1]].model_name == "seed"  # outside --since
    assert [t.sentiment < 0 for t in topics if t.article_id == ids[0]] == [True]
    result = runner.invoke(cli, ["--config", str(config_file), "rescore", "--only-missing"])
    assert result.exit_code == 0 and "rescored 0 articles" in result.stdout
    result = runner.invoke(cli, ["--config", str(config_file), "rescore", "--since", "soon"])
    assert result.exit_code == 2 and "--since" in result.output
    engine.dispose()


def test_cli_score_undecodable_input_scores_instead_of_crashing(config_file: Path) -> None:
    # Invalid UTF-8 in argv arrives as surrogate escapes; the tokenizer rejects surrogates.
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "score", "--format", "json", "\udcff Nvidia falls", "a \ud800 b"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [item["text"] for item in data] == ["\ufffd Nvidia falls", "a ? b"]
