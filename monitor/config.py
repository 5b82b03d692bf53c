"""Configuration: the YAML file plus environment overrides, validated once at the edge.

Everything past `load_config` takes typed objects; nothing else reads the environment or the file.
"""

from __future__ import annotations

import os
import re
from datetime import time, timedelta
from email.utils import parseaddr
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.metric_names import METRIC_NAMES, NEEDS_BASELINE

DEFAULT_CONFIG_PATH = Path("config/monitor.yaml")
DEFAULT_DATABASE_URL = "sqlite:///data/monitor.db"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(Exception):
    """A configuration problem, with a message that names the file and the key (or the variable)."""


def parse_duration(value: Any) -> timedelta:
    """Parse `90s`, `10m`, `6h`, `7d`, `2w` (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            try:
                return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
            except OverflowError:
                raise ValueError(f"duration too large: {value!r}") from None
    raise ValueError(f"not a duration: {value!r} (expected a number with a unit, e.g. 90s, 10m, 6h, 7d, 2w)")


def _positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"duration must be positive: {value!r}")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in the config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


FEED_HEALTH_RULE = "feed-health"  # the rule name of the built-in feed-health alerts (reserved)
Severity = Literal["info", "warning", "critical"]


class FeedHealthConfig(_Strict):
    """Feed health (monitor/alerts/feedhealth.py): an alert per feed that keeps failing or goes silent.

    `failures`: failed polls in a row that raise it (0: failures never do); `silent_for`: how long a feed may
    bring nothing new (0s: silence never does). Routed, silenced and listed like any other alert, under the
    rule `feed-health` with the feed's name as its topic."""

    enabled: bool = True
    failures: int = Field(default=5, ge=0)
    silent_for: Duration = timedelta(days=7)
    severity: Severity = "warning"
    repeat: Duration | None = None  # reminder while a feed stays broken (default: none)

    def merged(self, override: FeedHealthOverride) -> FeedHealthConfig:
        """These defaults with a feed's own `health:` settings on top."""
        return self.model_copy(update=override.model_dump(exclude_none=True))


class FeedHealthOverride(_Strict):
    """A feed's `health:`: any key of `feed_health` except `repeat`; unset keys take the global value."""

    enabled: bool | None = None
    failures: int | None = Field(default=None, ge=0)
    silent_for: Duration | None = None
    severity: Severity | None = None


class FeedConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    url: str
    every: PositiveDuration = timedelta(minutes=10)
    language: str | None = None  # a hint; detection still runs per article
    # What the feed is about, for people reading the config (OPML import fills it from folder names); must
    # name configured topics. The classifier does not read it: it finds the topics in each article's text.
    topics: list[str] = Field(default_factory=list)
    enabled: bool = True
    health: FeedHealthOverride = Field(default_factory=FeedHealthOverride)  # over `feed_health`

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"feed url must be an http(s) URL, got {value!r}")
        return value


class TopicConfig(_Strict):
    """A topic: its aliases (`keywords`, both scripts) and a one-line description, which the model reads."""

    keywords: list[str] = Field(min_length=1)
    description: str = ""
    examples: list[str] = Field(
        default_factory=list
    )  # for people reading the config; the model does not use them
    # Accepted so that older configs load; ignored: the model reads rivalry itself (README, Model).
    rivals: list[str] = Field(default_factory=list)


# The names come from monitor/metric_names.py; a metric's spec is in monitor.alerts.metrics.METRICS.
Metric = Literal[METRIC_NAMES]  # type: ignore[valid-type]


class AlertRuleConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    topic: str
    metric: Metric
    window: PositiveDuration = timedelta(hours=6)
    baseline: PositiveDuration | None = None  # for the metrics in NEEDS_BASELINE
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    min_articles: int = Field(default=5, ge=0)
    # What a window counts: `stories` (one vote per event, however many copies carry it) or `articles`.
    count: Literal["stories", "articles"] = "stories"
    # Distinct publishers that must carry the window's stories before the rule may fire.
    min_sources: int = Field(default=0, ge=0)
    for_: Duration = Field(default=timedelta(0), alias="for")
    repeat: Duration | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True

    @model_validator(mode="after")
    def _threshold(self) -> AlertRuleConfig:
        if (self.above is None) == (self.below is None):
            raise ValueError("exactly one of 'above' or 'below' must be set")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(f"'clear' ({self.clear}) must be <= 'above' ({self.above}) for hysteresis")
            if self.below is not None and self.clear < self.below:
                raise ValueError(f"'clear' ({self.clear}) must be >= 'below' ({self.below}) for hysteresis")
        if self.metric in NEEDS_BASELINE and self.baseline is None:
            object.__setattr__(self, "baseline", self.window * 4)
        return self

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def direction(self) -> Literal["above", "below"]:
        return "above" if self.above is not None else "below"


class ModelConfig(_Strict):
    """The sentiment model. `default` is the project's own model shipped in models/."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    sentiment: str = "default"  # "default" (the project's multilingual model), a local path or a hub id
    multilingual: str | None = (
        None  # a second model for languages outside route_languages; None = `sentiment`
    )
    route_languages: list[str] = Field(default_factory=lambda: ["en"])  # languages `sentiment` handles
    backend: Literal["torch", "onnx"] = "torch"
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=128, ge=16, le=512)
    threads: int | None = Field(default=None, ge=1)
    # P(about) the model must give a topic named by an alias (below it, "bubble tea" is not AI-bubble talk)
    topic_threshold: float = Field(default=0.5, ge=0, le=1)
    # P(about) that adds a topic no alias names; 1 = never (the measured precision is in models/README.md)
    topic_add_threshold: float = Field(default=1.0, ge=0, le=1)
    onnx_cache: str | None = None  # folder of the `backend: onnx` export; default ~/.cache/aichip-monitor
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # torch: auto = bf16 on CPUs with native bf16

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """Keys of the similarity-based topic matcher and the old multilingual head: accepted, ignored."""
        if isinstance(data, dict):
            data = dict(data)
            data.pop("similarity_threshold", None)
            data.pop("multilingual_similarity_threshold", None)
            if data.get("multilingual") == "default-multilingual":
                data["multilingual"] = None  # the default model reads every language
        return data


def _network(value: Any) -> IPv4Network | IPv6Network:
    """A network in CIDR form (`10.0.0.0/8`) or one address (`169.254.170.2`): a typo fails at start,
    not silently at the first fetch."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    try:
        return ip_network(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"not an IP network: {value!r} ({exc}; e.g. 10.0.0.0/8 or 169.254.170.2)") from None


Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]


class CollectConfig(_Strict):
    """How feeds are fetched. Where they may point (`allow_private`, `deny_networks`, `allow_networks`) is the
    SSRF policy of monitor/collect/fetch.py: a feed URL or a redirect must not reach cloud metadata."""

    connect_timeout: PositiveDuration = timedelta(seconds=5)
    read_timeout: PositiveDuration = timedelta(seconds=20)
    total_timeout: PositiveDuration = timedelta(seconds=60)
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    user_agent: str = "aichip-monitor/0.1 (+https://github.com/aichip-monitor)"
    max_backoff: PositiveDuration = timedelta(hours=6)
    concurrency: int = Field(default=8, ge=1, le=64)
    jitter: Duration = timedelta(seconds=30)
    # Link-local and cloud-metadata addresses and this monitor's own HTTP port are always refused;
    # loopback and private ranges only when allow_private is false. allow_networks wins over every refusal.
    allow_private: bool = True
    deny_networks: list[Network] = Field(default_factory=list)
    allow_networks: list[Network] = Field(default_factory=list)


class SlackConfig(_Strict):
    bot_token: SecretStr | None = None
    channel: str | None = None
    webhook_url: SecretStr | None = None
    api_url: str | None = None  # base URL of the Slack Web API, e.g. http://127.0.0.1:9999/api/

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        # The message names the problem, never the URL: a webhook URL is a secret.
        if value is not None and urlparse(value.get_secret_value()).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL (https://hooks.slack.com/services/...)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    @property
    def mode(self) -> Literal["bot", "webhook", "console"]:
        if self.bot_token and self.channel:
            return "bot"
        if self.webhook_url:
            return "webhook"
        return "console"


class NotifyConfig(_Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base: PositiveDuration = timedelta(seconds=2)
    backoff_max: PositiveDuration = timedelta(minutes=5)
    timeout: PositiveDuration = timedelta(seconds=10)
    deliver_every: PositiveDuration = timedelta(seconds=15)
    # A one-shot `monitor collect` keeps retrying due deliveries (Retry-After, backoff) this long before
    # leaving them queued for the next run.
    collect_wait: Duration = timedelta(seconds=30)


# ----------------------------------------------------------------------------- receivers and routes
# Where notifications go (monitor/notify/receivers.py, routing.py). `default` always exists: the `slack:`
# destination (bot, webhook, else the console), so a configuration without receivers works as before.

DEFAULT_RECEIVER = "default"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _http_url(value: str, what: str = "URL") -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        # The message never repeats the value: webhook URLs are secrets.
        raise ValueError(f"must be an http(s) {what}")
    return value


def _secret_http_url(value: SecretStr) -> SecretStr:
    _http_url(value.get_secret_value())
    return value


def _address(value: str) -> str:
    """One e-mail address (`name@example.com`, or `Name <name@example.com>`)."""
    address = parseaddr(value)[1]
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


SecretHttpUrl = Annotated[SecretStr, AfterValidator(_secret_http_url)]
Address = Annotated[str, AfterValidator(_address)]
Names = Annotated[list[str], BeforeValidator(_as_list)]


class _ReceiverBase(_Strict):
    name: str = Field(pattern=_NAME_PATTERN, max_length=100)


class SlackBotReceiverConfig(_ReceiverBase):
    """Slack with a bot token: chat.postMessage to `channel` (threads and edits as the `slack:` bot does)."""

    kind: Literal["slack_bot"]
    channel: str = Field(min_length=1, max_length=100)  # an ID (C0...) lets a retry look for an earlier post
    token: SecretStr | None = None  # default: slack.bot_token (SLACK_BOT_TOKEN)
    api_url: str | None = None  # default: slack.api_url (SLACK_API_URL)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class SlackWebhookReceiverConfig(_ReceiverBase):
    """A Slack incoming webhook (one channel, fixed by Slack)."""

    kind: Literal["slack_webhook"]
    url: SecretHttpUrl


class WebhookReceiverConfig(_ReceiverBase):
    """A generic JSON webhook (monitor/notify/webhook.py; the payload is documented in the README)."""

    kind: Literal["webhook"]
    url: SecretHttpUrl
    secret: SecretStr | None = None  # HMAC-SHA256 key: signs each body (header X-Monitor-Signature)


class EmailReceiverConfig(_ReceiverBase):
    """E-mail over SMTP (monitor/notify/email.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 587 starttls, 465 tls, 25 none
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_: Address = Field(alias="from")
    to: list[Address] = Field(min_length=1)
    subject_prefix: str = Field(default="[aichip-monitor] ", max_length=100)
    ca_file: str | None = None  # PEM file of the CA to trust instead of the system's (an internal relay)

    @model_validator(mode="after")
    def _login(self) -> EmailReceiverConfig:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is not")
        if self.username and self.security == "none":
            raise ValueError("a login needs an encrypted connection: set security to starttls or tls")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class ConsoleReceiverConfig(_ReceiverBase):
    """The log/console (also what `default` is without Slack settings)."""

    kind: Literal["console"]


ReceiverConfig = Annotated[
    SlackBotReceiverConfig
    | SlackWebhookReceiverConfig
    | WebhookReceiverConfig
    | EmailReceiverConfig
    | ConsoleReceiverConfig,
    Field(discriminator="kind"),
]


class RouteConfig(_Strict):
    """Alerts matching every matcher given (each a name, `*` wildcards, or a list of either) go to
    `receivers`; the first matching route wins unless it says `continue: true` (monitor/notify/routing.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rule: Names = Field(default_factory=list)
    topic: Names = Field(default_factory=list)
    severity: Annotated[list[Severity], BeforeValidator(_as_list)] = Field(default_factory=list)
    receivers: Names = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_token: SecretStr | None = None
    public_url: str | None = None  # used in Slack messages to link to the dashboard
    # /metrics names feeds and counts firing alerts: true puts it behind the API token (Prometheus then
    # sends it, e.g. `authorization: {credentials: ...}` in its scrape config).
    metrics_require_token: bool = False
    # /api/* queries running at once (the rest wait up to `query_wait`, then 503): rule evaluation and
    # collection share the process's CPU with them.
    max_concurrent_queries: int = Field(default=2, ge=1, le=64)
    query_wait: PositiveDuration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _metrics_token(self) -> HttpConfig:
        if self.metrics_require_token and self.api_token is None:
            raise ValueError(
                "metrics_require_token is true but no API token is set (http.api_token or MONITOR_API_TOKEN)"
            )
        return self


class RetentionConfig(_Strict):
    articles: Duration | None = timedelta(days=180)  # None keeps articles forever
    every: PositiveDuration = timedelta(hours=6)


class StoriesConfig(_Strict):
    """Story clustering (monitor/stories): which articles report one event."""

    enabled: bool = True
    window: PositiveDuration = timedelta(hours=48)  # an article joins a story first seen this close to it
    text_threshold: float = Field(default=0.5, gt=0.0, le=1.0)  # Jaccard of headline words and word pairs
    meaning_threshold: float = Field(default=0.92, gt=0.0, le=1.0)  # cosine of the model's vectors
    cross_language_threshold: float = Field(default=0.85, gt=0.0, le=1.0)  # cosine, English against Chinese


class LeaderConfig(_Strict):
    """Leader election between replicas (monitor/leader.py): how often a standby retries the lock."""

    check_every: PositiveDuration = timedelta(seconds=10)


class QueueConfig(_Strict):
    """Beyond one machine (monitor/queue.py): with `broker_url` set, `monitor run` enqueues feed polls and
    scoring batches for `monitor worker` processes; unset (the default), everything runs in one process."""

    broker_url: str | None = None  # amqp://user:pass@host:5672/ (RabbitMQ); MONITOR_BROKER_URL
    claim_every: PositiveDuration = timedelta(seconds=1)  # how often a replica claims due feeds
    score_batch: int = Field(default=64, ge=1, le=1024)  # articles per scoring message / model batch
    # Prepended to the queue names (collect, score): deployments (or test runs) sharing one broker.
    prefix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9_.-]*$")

    @field_validator("broker_url")
    @classmethod
    def _amqp(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("broker_url must be an amqp:// or amqps:// URL (RabbitMQ)")
        return value or None


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_OF_DAY_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _time_of_day(value: Any) -> time:
    """`08:30` on a 24-hour clock. YAML 1.1 reads an unquoted 8:30 as the number 510 (base 60), so a number
    is refused with a hint to quote it, rather than guessed at."""
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = _TIME_OF_DAY_RE.match(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
        raise ValueError(f'not a time of day: {value!r} (expected HH:MM on a 24-hour clock, e.g. "08:30")')
    raise ValueError(
        f'not a time of day: {value!r} (write it in quotes, e.g. "08:30": YAML reads an unquoted 8:30 as '
        "the number 510)"
    )


def _time_zone(value: Any) -> str:
    """An IANA zone name that this machine's zone database knows."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(value)
    except (TypeError, ValueError, KeyError, OSError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)") from None
    return value


class DigestConfig(_Strict):
    """The periodic summary (monitor/digest): once per period, at `at` local time in `timezone`."""

    name: str = Field(default="digest", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=50)
    enabled: bool = True  # false: `monitor run` sends none; `monitor digest` still prints one
    period: Literal["daily", "weekly"] = "daily"
    weekday: Literal[WEEKDAYS] | None = None  # type: ignore[valid-type]  # weekly: default monday
    at: Annotated[time, BeforeValidator(_time_of_day)] = time(8, 0)
    timezone: Annotated[str, BeforeValidator(_time_zone)] = "UTC"
    topics: list[str] = Field(default_factory=list)  # empty: every configured topic
    receivers: list[str] = Field(default_factory=list)  # empty: the default destination (Slack or console)
    top_stories: int = Field(default=3, ge=0, le=10)  # per topic, most sources first
    # A digest whose time passed while no process ran is still sent this long after it; later, skipped.
    grace: Duration = timedelta(hours=6)

    @field_validator("weekday", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _weekday(self) -> DigestConfig:
        if self.period == "daily" and self.weekday is not None:
            raise ValueError("weekday is only used with period: weekly")
        if self.period == "weekly" and self.weekday is None:
            object.__setattr__(self, "weekday", "monday")
        return self


class Settings(_Strict):
    database_url: str = DEFAULT_DATABASE_URL
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    evaluate_every: PositiveDuration = timedelta(minutes=1)
    feeds: list[FeedConfig] = Field(default_factory=list)
    topics: dict[str, TopicConfig] = Field(default_factory=dict)
    alerts: list[AlertRuleConfig] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=ModelConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    leader: LeaderConfig = Field(default_factory=LeaderConfig)
    stories: StoriesConfig = Field(default_factory=StoriesConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    digest: DigestConfig | None = None  # the periodic summary; absent: none is scheduled
    feed_health: FeedHealthConfig = Field(default_factory=FeedHealthConfig)  # per feed: `feeds[].health`
    receivers: list[ReceiverConfig] | None = None  # named destinations; `default` (Slack/console) exists too
    routes: list[RouteConfig] | None = None  # absent: every alert goes to `default`

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        names = [feed.name for feed in self.feeds]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"feeds: duplicate feed name(s): {', '.join(duplicates)}")
        rule_names = [rule.name for rule in self.alerts]
        duplicates = sorted({name for name in rule_names if rule_names.count(name) > 1})
        if duplicates:
            raise ValueError(f"alerts: duplicate rule name(s): {', '.join(duplicates)}")
        for name, topic in self.topics.items():
            for rival in topic.rivals:
                if rival not in self.topics or rival == name:
                    known = ", ".join(sorted(set(self.topics) - {name})) or "none configured"
                    raise ValueError(f"topics.{name}.rivals: unknown topic {rival!r} (known: {known})")
        for index, rule in enumerate(self.alerts):
            if rule.name == FEED_HEALTH_RULE:
                raise ValueError(
                    f"alerts.{index}.name: {FEED_HEALTH_RULE!r} is reserved for the built-in feed-health "
                    "alerts (configure them under `feed_health:`)"
                )
            if rule.topic not in self.topics:
                known = ", ".join(sorted(self.topics)) or "none configured"
                raise ValueError(f"alerts.{index}.topic: unknown topic {rule.topic!r} (known: {known})")
        self._feed_topics_known()
        self._receiver_references()
        self._digest_references()
        return self

    @property
    def receiver_names(self) -> set[str]:
        """The receivers a route or a digest may name: the configured ones and `default`."""
        return {DEFAULT_RECEIVER, *(receiver.name for receiver in self.receivers or [])}

    def _receiver_references(self) -> None:
        """Receiver names are unique, routes name configured receivers, a Slack bot receiver has a token."""
        names = [receiver.name for receiver in self.receivers or []]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"receivers: duplicate receiver name(s): {', '.join(duplicates)}")
        for index, receiver in enumerate(self.receivers or []):
            bot = isinstance(receiver, SlackBotReceiverConfig)
            if bot and receiver.token is None and not self.slack.bot_token:  # type: ignore[union-attr]
                raise ValueError(
                    f"receivers.{index}.token: receiver {receiver.name!r} needs a bot token (set token, or "
                    "slack.bot_token / SLACK_BOT_TOKEN)"
                )
        known = ", ".join(sorted(self.receiver_names))
        for index, route in enumerate(self.routes or []):
            for name in route.receivers:
                if name not in self.receiver_names:
                    raise ValueError(f"routes.{index}.receivers: unknown receiver {name!r} (known: {known})")

    def _feed_topics_known(self) -> None:
        """A feed's `topics` must name configured topics: a typo there would otherwise pass unnoticed."""
        for index, feed in enumerate(self.feeds):
            for topic in feed.topics:
                if topic not in self.topics:
                    known = ", ".join(sorted(self.topics)) or "none configured"
                    raise ValueError(f"feeds.{index}.topics: unknown topic {topic!r} (known: {known})")

    def _digest_references(self) -> None:
        """`digest.topics` must name configured topics; `digest.receivers` configured receivers, once the
        configuration names receivers (until then any names are accepted: the default destination)."""
        if self.digest is None:
            return
        for topic in self.digest.topics:
            if topic not in self.topics:
                known = ", ".join(sorted(self.topics)) or "none configured"
                raise ValueError(f"digest.topics: unknown topic {topic!r} (known: {known})")
        if self.receivers is None:
            return
        for name in self.digest.receivers:
            if name not in self.receiver_names:
                known = ", ".join(sorted(self.receiver_names))
                raise ValueError(f"digest.receivers: unknown receiver {name!r} (known: {known})")

    def feed(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise ConfigError(f"unknown feed {name!r} (known: {', '.join(f.name for f in self.feeds)})")


# Environment variables and the config key each one overrides (12-factor).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MONITOR_DATABASE_URL": ("database_url",),
    "MONITOR_LOG_LEVEL": ("log_level",),
    "MONITOR_LOG_FORMAT": ("log_format",),
    "MONITOR_HTTP_HOST": ("http", "host"),
    "MONITOR_HTTP_PORT": ("http", "port"),
    "MONITOR_API_TOKEN": ("http", "api_token"),
    "MONITOR_PUBLIC_URL": ("http", "public_url"),
    "MONITOR_BROKER_URL": ("queue", "broker_url"),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_CHANNEL": ("slack", "channel"),
    "SLACK_WEBHOOK_URL": ("slack", "webhook_url"),
    "SLACK_API_URL": ("slack", "api_url"),
}


def default_config_path() -> Path:
    return Path(os.environ.get("MONITOR_CONFIG") or DEFAULT_CONFIG_PATH)


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Set the overridden keys in `data`; returns which variable set which key, so errors can name it."""
    applied: dict[tuple[str, ...], str] = {}
    for variable, path in ENV_OVERRIDES.items():
        value = environ.get(variable)
        if value is None or value == "":
            continue
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
        target[path[-1]] = value
        applied[path] = variable
    return applied


def _error_line(item: Any, from_env: dict[tuple[str, ...], str]) -> tuple[str, bool]:
    """One validation error as `  key: problem`, and whether an environment variable caused it.

    The value is never repeated: some variables hold secrets (tokens, webhook URLs)."""
    loc = tuple(str(part) for part in item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    key = ".".join(loc)
    variable = next((var for path, var in from_env.items() if loc[: len(path)] == path), None)
    if variable:
        return f"  environment variable {variable} (sets {key}): {message}", True
    return (f"  {key}: {message}" if key else f"  {message}"), False


def _format_errors(path: Path, error: ValidationError, from_env: dict[tuple[str, ...], str]) -> str:
    """All problems, the header saying whether the file, the environment or both are at fault."""
    lines: list[str] = []
    sources: set[bool] = set()
    for item in error.errors():
        line, env = _error_line(item, from_env)
        lines.append(line)
        sources.add(env)
    where = {
        frozenset({True}): "invalid configuration in the environment:",
        frozenset({False}): f"invalid configuration in {path}:",
    }.get(frozenset(sources), f"invalid configuration in {path} and the environment:")
    return "\n".join([where, *lines])


class _DuplicateKey(Exception):
    """A mapping gives the same key twice (PyYAML would keep the last value without a word)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first})")


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping.

    Checked before merge keys (`<<: *base`) are expanded: a mapping may override what it merges in."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise _DuplicateKey(key, line, first[key])
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, path: Path | str) -> Any:
    """Parse a YAML config text strictly (safe types, no duplicate keys); ConfigError names `path`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"invalid configuration in {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}") from None


def load_config(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, merge with the environment and validate. Raises ConfigError naming the file and key."""
    path = Path(path) if path is not None else default_config_path()
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    data = load_yaml(text, path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {path}: the top level must be a mapping")
    from_env = _apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc, from_env)) from None
