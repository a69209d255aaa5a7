"""The stats page in a real browser: it speaks the quiz's terms (title, option text, checks,
wrong answers), cautions small cohorts, labels the item map, and fits a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from tests.browser_harness import PHONE_WIDTH, OpenPage, axe_source, browser, open_page  # noqa: F401 (fixtures)
from tests.test_browser_pages import nu_validator_errors
from tests.test_stats import write_rich
from vaequiz.cli.app import app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stats_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, bank = write_rich(tmp_path_factory.mktemp("stats"))
    out = folder / "report.html"
    done = CliRunner().invoke(app, ["stats", str(folder), "--bank", str(bank), "--out", str(out)])
    assert done.exit_code == 0, done.output
    return out


def test_stats_page_reads_in_the_quizs_terms(stats_page: Path, open_page: Callable[..., OpenPage]) -> None:
    page = open_page(stats_page, width=1280)
    p = page.page
    assert p.locator("h1").inner_text() == "Item analysis: Week 9 <quiz>"
    assert p.title() == "Item analysis: Week 9 <quiz>"
    assert "Only 5 student(s)" in p.locator(".caution").inner_text()
    options = p.locator("#detail-pick tbody tr")
    assert options.nth(0).locator(".option-text math").count() > 0  # math as the quiz showed it
    assert "It <b>reconstructs</b>" in options.nth(1).inner_text()  # bank text stays text
    assert options.nth(2).locator("code").inner_text() == "z = mu + std * eps"
    checks = p.locator("#detail-write-z tbody tr").all_inner_texts()
    assert checks[0].split("\t")[:2] == ["z has the shape of mu", "3"]
    wrong = p.locator("#detail-shape-z li").all_inner_texts()
    assert wrong[0] == "(20, 64) (2 students)"
    assert page.errors == [] and page.outside_requests() == []


def test_item_map_labels_every_point_with_its_number(stats_page: Path, open_page: Callable[..., OpenPage]) -> None:
    p = open_page(stats_page).page
    circles = p.locator("svg circle").count()
    labels = p.locator("svg .point-label").all_text_contents()
    numbers = {n.strip() for label in labels for n in label.split(",")}
    assert circles >= 2 and len(numbers) == circles
    table_numbers = set(p.locator("tbody tr td.num:first-child").all_text_contents())
    assert numbers <= table_numbers


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_stats_page_fits_a_phone_and_passes_axe(
    stats_page: Path, open_page: Callable[..., OpenPage], axe_source: str, scheme: str
) -> None:
    page = open_page(stats_page, scheme, width=PHONE_WIDTH)
    p = page.page
    assert p.evaluate("() => document.documentElement.scrollWidth") <= PHONE_WIDTH
    region = p.locator(".table-scroll").first  # the wide items table scrolls in its own box
    assert region.evaluate("r => r.scrollWidth > r.clientWidth")
    p.add_script_tag(content=axe_source)
    result = p.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []


def test_stats_page_is_valid_html(stats_page: Path) -> None:
    assert nu_validator_errors([stats_page]) == []
