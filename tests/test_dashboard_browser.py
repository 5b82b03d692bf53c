"""The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, via Selenium).

The page is served by the real app over a database with known data; the test checks that the chart
drew exactly the expected points (SVG circles carrying their data), the alert band, and headlines
(Chinese text intact, markup shown as text, never executed).

Where Chromium is not installed the test is skipped with a reason (printed by `make test` through
pytest's `-ra`); with MONITOR_REQUIRE_BROWSER=1 (set by .ci/run) a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_settings
from seed import SeedArticle, seed
from sqlmodel import Session

from monitor.api import create_app
from monitor.config import StoriesConfig
from monitor.store import alerts as alert_store
from monitor.store.tables import Alert
from monitor.stories import StoryStage

pytestmark = pytest.mark.browser

REQUIRE = os.environ.get("MONITOR_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
]
XSS_TITLE = (
    '<img src=x onerror="window.__pwned=1"> <!channel> Nvidia & "friends" <script>window.__pwned=2</script>'
)
CHINESE_TITLE = "英伟达股价大跌，Meta考虑采用谷歌TPU"
TEXT_ONLY = StoriesConfig(meaning_threshold=1.0, cross_language_threshold=1.0)


def _browser_or_skip():  # noqa: ANN202
    missing = None
    try:
        from selenium import webdriver  # noqa: F401
    except ImportError:
        missing = "the selenium package is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM:
        missing = "no Chromium installed (apt-get install chromium chromium-driver)"
    if missing is None and not CHROMEDRIVER:
        missing = "no chromedriver installed (apt-get install chromium-driver)"
    if missing:
        if REQUIRE:
            pytest.fail(f"browser test required (MONITOR_REQUIRE_BROWSER=1) but {missing}")
        pytest.skip(f"dashboard browser test skipped: {missing}")


@pytest.fixture
def driver() -> Iterator:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def _serve(app) -> tuple[str, callable]:  # noqa: ANN001
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started:
        assert time.time() < deadline, "the app did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def _known_data(engine, now: datetime) -> dict[str, list[float]]:  # noqa: ANN001
    """Nvidia articles in three hours of the last day; returns the expected mean per hour start."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    h1, h2, h3 = hour - timedelta(hours=20), hour - timedelta(hours=9), hour - timedelta(hours=2)
    articles = [
        SeedArticle("Nvidia beats estimates on record revenue", h1 + timedelta(minutes=5), {"nvidia": 0.8}),
        SeedArticle("Nvidia shares rise", h1 + timedelta(minutes=40), {"nvidia": 0.4}),
        SeedArticle("Nvidia steady ahead of results", h2 + timedelta(minutes=10), {"nvidia": 0.0}),
        SeedArticle(
            CHINESE_TITLE,
            h3 + timedelta(minutes=1),
            {"nvidia": -0.9, "tpu": 0.6},
            language="zh",
            url="https://example.com/zh/1",
        ),
        SeedArticle(
            XSS_TITLE, h3 + timedelta(minutes=20), {"nvidia": -0.5}, url="javascript:window.__pwned=3"
        ),
        SeedArticle(
            "Nvidia loses $140bn in two days",
            h3 + timedelta(minutes=30),
            {"nvidia": -0.7},
            url="https://example.com/en/loss",
        ),
        # A syndicated copy from another publisher: one story with two sources.
        SeedArticle(
            "Nvidia loses $140bn in two days - Yahoo Finance",
            h3 + timedelta(minutes=45),
            {"nvidia": -0.6},
            url="https://finance.yahoo.com/news/nvidia-loses-140bn",
        ),
        SeedArticle("AI bubble talk grows as Nvidia slides", h3 + timedelta(minutes=50), {"ai_bubble": -0.4}),
    ]
    seed(engine, articles)
    return {h1.isoformat(): [0.8, 0.4], h2.isoformat(): [0.0], h3.isoformat(): [-0.9, -0.5, -0.7, -0.6]}


def _alert(engine, fired: datetime, resolved: datetime) -> None:  # noqa: ANN001
    fp = alert_store.fingerprint("nvidia-sentiment-drop", "nvidia")
    with Session(engine) as session:
        session.add(Alert(fingerprint=fp, rule="nvidia-sentiment-drop", topic="nvidia", state="resolved"))
        session.flush()
        for kind, at, value in (
            ("pending", fired - timedelta(minutes=15), -0.5),
            ("fired", fired, -0.6),
            ("resolved", resolved, -0.05),
        ):
            alert_store.add_event(
                session,
                fp=fp,
                rule="nvidia-sentiment-drop",
                topic="nvidia",
                kind=kind,
                at=at,
                value=value,
                threshold=-0.3,
                article_count=3,
            )
        session.commit()


def _wait_loaded(browser, timeout: float = 20) -> str:  # noqa: ANN001
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = browser.execute_script("return document.body.getAttribute('data-loaded')")
        if state:
            return state
        time.sleep(0.1)
    raise AssertionError("the dashboard did not finish loading: " + browser.find_element("id", "status").text)


def test_dashboard_draws_known_points(driver, sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    now = datetime.now(UTC)
    expected = _known_data(sqlite_engine, now)
    # The stories the dashboard lists; copies join by their text only, so the test does not depend on how
    # close the meaning model puts unrelated headlines.
    StoryStage(TEXT_ONLY, sqlite_engine).rebuild()
    hour = now.replace(minute=0, second=0, microsecond=0)
    _alert(sqlite_engine, hour - timedelta(hours=2, minutes=-35), hour - timedelta(hours=1))
    settings = make_settings(tmp_path)
    base, stop = _serve(create_app(settings, sqlite_engine))
    try:
        driver.get(f"{base}/?topic=nvidia&range=24h")
        assert _wait_loaded(driver) == "true", driver.find_element(By.ID, "status").text

        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert [c.get_attribute("data-topic") for c in charts] == ["nvidia"]
        circles = charts[0].find_elements(By.CSS_SELECTOR, "circle.point")
        drawn = {
            datetime.fromisoformat(c.get_attribute("data-bucket-start")).astimezone(UTC).isoformat(): (
                float(c.get_attribute("data-mean")),
                int(c.get_attribute("data-articles")),
            )
            for c in circles
        }
        assert len(circles) == 3
        assert sorted(drawn) == sorted(expected)
        for start, values in expected.items():
            mean, count = drawn[start]
            assert count == len(values)
            assert mean == pytest.approx(sum(values) / len(values), abs=1e-9)
        # Points are placed left to right in time order and lower for more negative means.
        xs = [float(c.get_attribute("cx")) for c in circles]
        ys = [float(c.get_attribute("cy")) for c in circles]
        assert xs == sorted(xs)
        assert ys[0] < ys[1] < ys[2]
        # Volume bars for every bucket of the range (24 or 25 hourly buckets), empty ones at zero height.
        bars = charts[0].find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(bars) in (24, 25)
        assert sum(int(b.get_attribute("data-articles")) for b in bars) == 7
        # The alert episode is drawn as a band.
        bands = charts[0].find_elements(By.CSS_SELECTOR, "g.alert")
        assert [b.get_attribute("data-rule") for b in bands] == ["nvidia-sentiment-drop"]
        assert bands[0].get_attribute("data-state") == "resolved"

        # Headlines: Chinese intact; markup shown as text and never run; no javascript: link.
        negative = driver.find_element(By.CSS_SELECTOR, "[data-topic='nvidia'] .negative")
        assert negative.get_attribute("data-kind") == "stories"
        items = negative.find_elements(By.TAG_NAME, "li")
        texts = [li.text for li in items]
        assert any(CHINESE_TITLE in t for t in texts)
        assert any(XSS_TITLE in t for t in texts)
        assert texts[0].startswith(CHINESE_TITLE)  # the most negative first (-0.9)
        # The syndicated copies are one story, listed once with its source count (mean -0.65: second).
        assert sum("Nvidia loses $140bn" in t for t in texts) == 1
        assert texts[1].startswith("Nvidia loses $140bn in two days")
        assert "2 sources" in texts[1] and items[1].get_attribute("data-sources") == "2"
        assert "1 source" in texts[0] and "1 sources" not in texts[0]
        # "Most covered": only stories more than one source carried.
        covered = driver.find_element(By.CSS_SELECTOR, "[data-topic='nvidia'] .covered")
        [story] = covered.find_elements(By.TAG_NAME, "li")
        assert story.text.startswith("Nvidia loses $140bn in two days") and "2 sources" in story.text
        hrefs = [a.get_attribute("href") for a in negative.find_elements(By.TAG_NAME, "a")]
        assert "https://example.com/zh/1" in hrefs
        assert not any(h.startswith("javascript:") for h in hrefs)
        assert driver.execute_script("return window.__pwned === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, ".headlines img, .headlines script")
        positive = driver.find_element(By.CSS_SELECTOR, "[data-topic='nvidia'] .positive")
        assert "Nvidia beats estimates" in positive.text

        # The AI-bubble index: one bubble story of the seven in the range.
        index = driver.find_element(By.ID, "bubble-index-value")
        assert float(index.get_attribute("data-value")) == pytest.approx(1 / 7)
        assert index.text == "14%"
        shares = [
            b.get_attribute("data-coverage-share")
            for b in driver.find_elements(By.CSS_SELECTOR, "#bubble-index rect.index-bar")
        ]
        assert [float(v) for v in shares if v and float(v) > 0] == [pytest.approx(1 / 4)]
    finally:
        stop()


def test_dashboard_asks_for_the_token(driver, sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _known_data(sqlite_engine, datetime.now(UTC))
    settings = make_settings(tmp_path, http={"api_token": "s3cret-token"})
    base, stop = _serve(create_app(settings, sqlite_engine))
    try:
        driver.get(f"{base}/?range=24h")
        assert _wait_loaded(driver) == "error"
        assert driver.find_element(By.ID, "auth").is_displayed()
        driver.find_element(By.ID, "token").send_keys("s3cret-token")
        driver.execute_script("document.body.removeAttribute('data-loaded')")
        driver.find_element(By.CSS_SELECTOR, "#auth-form button").click()
        assert _wait_loaded(driver) == "true"
        topics = [c.get_attribute("data-topic") for c in driver.find_elements(By.CSS_SELECTOR, "svg.chart")]
        assert topics == ["nvidia", "tpu", "custom_chips", "ai_bubble"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart[data-topic='tpu'] circle.point")) == 1
    finally:
        stop()


# Character x positions of each headline's score, in the order the characters are stored: on screen they
# must run left to right ("+0.01", not "10.0+").
_SCORE_XS = """
return [...document.querySelectorAll(arguments[0])].map((li) => {
  const node = li.querySelector('.score').firstChild;
  return [...node.data].map((_, i) => {
    const range = document.createRange();
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    return range.getBoundingClientRect().left;
  });
});
"""
RLO_TITLE = "Nvidia \u202eslips as buyers wait"  # an unterminated right-to-left override
HEBREW_TITLE = "אנבידיה עולה"  # right-to-left letters, no control characters


def test_bidi_controls_in_titles_do_not_reorder_scores(driver, sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    at = datetime.now(UTC) - timedelta(hours=1)
    seed(
        sqlite_engine,
        [
            SeedArticle(RLO_TITLE, at, {"nvidia": 0.01}),
            SeedArticle(HEBREW_TITLE, at + timedelta(minutes=1), {"nvidia": 0.02}, language="he"),
        ],
    )
    base, stop = _serve(create_app(make_settings(tmp_path), sqlite_engine))
    try:
        driver.get(f"{base}/?topic=nvidia&range=24h")
        assert _wait_loaded(driver) == "true", driver.find_element(By.ID, "status").text
        items = driver.find_elements(By.CSS_SELECTOR, "[data-topic='nvidia'] .positive li")
        scores = [li.find_element(By.CSS_SELECTOR, ".score").text for li in items]
        assert scores == ["+0.02", "+0.01"]
        for xs in driver.execute_script(_SCORE_XS, "[data-topic='nvidia'] .positive li"):
            assert xs == sorted(xs), f"score characters drawn out of order: {xs}"
        titles = [li.find_element(By.CSS_SELECTOR, "a").text for li in items]
        assert titles == [HEBREW_TITLE, "Nvidia slips as buyers wait"]  # the control character is gone
    finally:
        stop()


def test_docs_render_offline(driver, sqlite_engine, tmp_path) -> None:  # noqa: ANN001
    """`/docs` draws Swagger UI with every asset from the app itself (it was blank offline: a CDN script)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, stop = _serve(create_app(make_settings(tmp_path), sqlite_engine))
    try:
        driver.get(f"{base}/docs")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        paths = {
            e.text.replace("\u200b", "")
            for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        }
        assert {"/api/sentiment", "/api/articles", "/readyz"} <= paths
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(base) for url in loaded), loaded
    finally:
        stop()
