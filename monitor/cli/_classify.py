"""`monitor score` (score texts now) and `monitor rescore` (re-score stored articles after a model change)."""

from __future__ import annotations

import json
import sys
import time

import click

from monitor.cli._common import App, handle_errors, render_table, time_range
from monitor.config import ConfigError, Settings

MAX_STDIN_LINES = 10_000


def _settings_for_scoring(app: App) -> Settings:
    """The config's model and topics; with no config file at the default place, the built-in defaults."""
    try:
        return app.settings
    except ConfigError:
        if app.config_path is not None:
            raise
        from monitor.config import default_config_path

        if default_config_path().exists():
            raise
        click.echo(
            f"note: no configuration file at {default_config_path()}; using the default model, no topics",
            err=True,
        )
        return Settings()


_LOADED: dict[str, object] = {}  # one load per process and configuration (commands invoked in-process)


def _load_classifier(settings: Settings):  # noqa: ANN202
    from monitor.classify import Classifier, ModelError

    key = settings.model.model_dump_json() + json.dumps(
        {name: topic.model_dump() for name, topic in settings.topics.items()}, sort_keys=True
    )
    if key not in _LOADED:
        try:
            _LOADED.clear()
            _LOADED[key] = Classifier.from_settings(settings)
        except ModelError as exc:
            raise click.ClickException(str(exc)) from None
    return _LOADED[key]


def _valid_unicode(text: str) -> str:
    """Undecodable input (surrogates) becomes U+FFFD or "?": the tokenizer rejects surrogates."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")


def _read_texts(texts: tuple[str, ...]) -> list[str]:
    texts = tuple(_valid_unicode(text) for text in texts)
    if texts == ("-",):
        lines = [_valid_unicode(line.rstrip("\r\n")) for line in sys.stdin]
        items = [line for line in lines if line.strip()]
        if not items:
            raise click.UsageError("no text on standard input (one text per line expected)")
        if len(items) > MAX_STDIN_LINES:
            raise click.UsageError(
                f"too many lines on standard input: {len(items)} (at most {MAX_STDIN_LINES})"
            )
        return items
    if not texts:
        raise click.UsageError(
            "give one or more texts to score, or '-' to read one per line from standard input"
        )
    for index, text in enumerate(texts, start=1):
        if not text.strip():
            raise click.BadParameter(f"text {index} is empty", param_hint="TEXT")
    return list(texts)


@click.command("score")
@click.argument("texts", nargs=-1)
@click.option("--language", default=None, help="Language of the texts (e.g. en, zh); detected when omitted.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_obj
@handle_errors
def score_command(app: App, texts: tuple[str, ...], language: str | None, output_format: str) -> None:
    """Score TEXT(s) now: label, score in [-1, 1], confidence, topics ('-': one text per line on stdin)."""
    items = _read_texts(texts)
    classifier = _load_classifier(_settings_for_scoring(app))
    results = classifier.score_texts(items, [language] * len(items) if language else None)
    if output_format == "json":
        data = []
        for text, result in zip(items, results, strict=True):
            item = result.to_dict()
            item["text"] = text
            data.append(item)
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    rows = [
        {
            "label": r.label,
            "score": r.score,
            "confidence": r.confidence,
            "topics": ", ".join(f"{t.name} {t.sentiment:+.2f} ({t.basis})" for t in r.topics),
            "model": r.model_name,
            "text": text,
        }
        for text, r in zip(items, results, strict=True)
    ]
    click.echo(render_table(rows, ["label", "score", "confidence", "topics", "model", "text"]))


@click.command("rescore")
@click.option(
    "--since", default=None, help="Only articles from this time on: a duration (7d) or ISO 8601 date/time."
)
@click.option("--until", default=None, help="Only articles before this time.")
@click.option("--only-missing", is_flag=True, help="Only articles that have no stored score yet.")
@click.option("--batch-size", type=click.IntRange(1, 5000), default=256, show_default=True)
@click.pass_obj
@handle_errors
def rescore_command(
    app: App, since: str | None, until: str | None, only_missing: bool, batch_size: int
) -> None:
    """Re-score stored articles with the configured model (after a model change); topics and stories too.

    Articles not yet in a story (history from before stories) are placed in one; placed ones keep theirs and
    their story's per-topic sentiment follows the new scores."""
    from monitor.classify.rescore import rescore_stored
    from monitor.stories import StoryStage

    start, end = time_range(since, until)
    engine = app.engine()
    classifier = _load_classifier(app.settings)
    stories = StoryStage(app.settings.stories, engine)
    started = time.monotonic()

    def progress(done: int) -> None:
        rate = done / max(1e-9, time.monotonic() - started)
        click.echo(f"rescored {done} articles ({rate:.0f}/s)", err=True)

    done = rescore_stored(
        classifier,
        engine,
        since=start,
        until=end,
        only_missing=only_missing,
        batch_size=batch_size,
        on_page=progress,
        on_scored=stories.assign,
    )
    models = ", ".join(f"{b['name']} {b['version']}" for b in classifier.describe()["models"].values())
    click.echo(f"rescored {done} articles with {models}")


def register(cli: click.Group) -> None:
    cli.add_command(score_command)
    cli.add_command(rescore_command)
