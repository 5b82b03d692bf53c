from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("6h", timedelta(hours=6)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (30, timedelta(seconds=30)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "10", "ten minutes", "5y", "-3m", True, "99999999999d"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_default_config_is_valid() -> None:
    settings = load_config(Path(__file__).parent.parent / "config" / "monitor.yaml", environ={})
    assert len(settings.feeds) >= 12
    assert set(settings.topics) == {"nvidia", "tpu", "custom_chips", "ai_bubble"}
    assert any(feed.language == "zh" for feed in settings.feeds)
    assert settings.alerts and all(rule.topic in settings.topics for rule in settings.alerts)


def test_error_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - name: a\n    url: https://x.test/rss\n    every: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message
    assert "feeds.0.every" in message
    assert "not a duration" in message


def test_unknown_key_and_non_http_url(tmp_path: Path) -> None:
    path = write(tmp_path, "databse_url: x\nfeeds:\n  - {name: a, url: 'file:///etc/passwd'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "databse_url" in str(info.value)
    assert "feeds.0.url" in str(info.value)


def test_alert_rule_validation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "topics: {nvidia: {keywords: [nvidia]}}\n"
        "alerts:\n  - {name: r, topic: nvdia, metric: mean_sentiment, below: -0.3}\n"
        "  - {name: s, topic: nvidia, metric: mean_sentiment, below: -0.3, clear: -0.5}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert "clear" in text or "unknown topic" in text


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: sqlite:///a.db\n")
    settings = load_config(
        path,
        environ={
            "MONITOR_DATABASE_URL": "sqlite:///b.db",
            "MONITOR_HTTP_PORT": "9001",
            "SLACK_BOT_TOKEN": "xoxb-123-secret",
            "SLACK_CHANNEL": "#chips",
        },
    )
    assert settings.database_url == "sqlite:///b.db"
    assert settings.http.port == 9001
    assert settings.slack.mode == "bot"
    assert "xoxb" not in repr(settings.slack)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "feeds: [\n"), environ={})


def test_slack_urls_are_checked_without_echoing_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: sqlite:///a.db\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T1/B2/sekrit"})
    assert "slack.webhook_url" in str(info.value)
    assert "sekrit" not in str(info.value)
    with pytest.raises(ConfigError, match="slack.api_url"):
        load_config(path, environ={"SLACK_API_URL": "ftp://127.0.0.1/api/"})


def test_duplicate_keys_are_errors_naming_file_line_and_key(tmp_path: Path) -> None:
    # PyYAML keeps the last value silently: `every: 1w` would replace `every: 5m`.
    path = write(tmp_path, "feeds:\n  - name: a\n    url: https://x.test/rss\n    every: 5m\n    every: 1w\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message
    assert "duplicate key 'every' at line 5 (first at line 4)" in message


def test_a_second_top_level_block_is_an_error(tmp_path: Path) -> None:
    text = "topics:\n  nvidia: {keywords: [nvidia]}\nfeeds: []\ntopics:\n  tpu: {keywords: [tpu]}\n"
    with pytest.raises(ConfigError, match=r"duplicate key 'topics' at line 4 \(first at line 1\)"):
        load_config(write(tmp_path, text), environ={})


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    # `<<` copies keys that the mapping may then set again: that is YAML's merge, not a duplicate.
    text = (
        "feeds:\n  - &a {name: a, url: 'https://x.test/rss', every: 5m}\n  - {<<: *a, name: b, every: 30m}\n"
    )
    settings = load_config(write(tmp_path, text), environ={})
    assert [(f.name, f.every) for f in settings.feeds] == [
        ("a", timedelta(minutes=5)),
        ("b", timedelta(minutes=30)),
    ]


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "http: {port: 8001}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"MONITOR_HTTP_PORT": "abc"})
    message = str(info.value)
    assert "environment variable MONITOR_HTTP_PORT (sets http.port): " in message
    assert "valid integer" in message
    assert f"in {path}" not in message  # the file is fine
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T1/B2/sekrit"})
    assert "environment variable SLACK_WEBHOOK_URL (sets slack.webhook_url)" in str(info.value)
    assert "sekrit" not in str(info.value)


def test_file_and_environment_errors_are_told_apart(tmp_path: Path) -> None:
    path = write(tmp_path, "http: {host: 127.0.0.1}\nlog_level: LOUD\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"MONITOR_HTTP_PORT": "99999"})
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid configuration in {path} and the environment:"
    assert any(line.startswith("  log_level: ") for line in lines)
    assert any(
        line.startswith("  environment variable MONITOR_HTTP_PORT (sets http.port): ") for line in lines
    )


def test_feed_topics_must_be_configured_topics(tmp_path: Path) -> None:
    text = (
        "topics: {nvidia: {keywords: [nvidia]}, tpu: {keywords: [tpu]}}\n"
        "feeds:\n  - {name: a, url: 'https://x.test/rss', topics: [nvidia]}\n"
        "  - {name: b, url: 'https://y.test/rss', topics: [tpu, no_such_topic]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "feeds.1.topics: unknown topic 'no_such_topic' (known: nvidia, tpu)" in str(info.value)
