"""collect stage: feeds over HTTP -> parsed, normalised, deduplicated articles -> ArticleCollected."""

from monitor.collect.collector import STATUSES, Collector, FeedResult
from monitor.collect.fetch import Fetcher, FetchError
from monitor.collect.parse import ParseError, parse_feed

__all__ = ["STATUSES", "Collector", "FeedResult", "FetchError", "Fetcher", "ParseError", "parse_feed"]
