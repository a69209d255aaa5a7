"""`vaequiz stats` on parametric questions: statistics pooled over variants, a per-variant
breakdown, and a variant much harder than the others flagged (and only then)."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.browser_harness import PHONE_WIDTH, OpenPage, axe_source, browser, open_page  # noqa: F401 (fixtures)
from tests.test_browser_pages import nu_validator_errors
from tests.test_stats import stats_json, write_results
from vaequiz.cli.app import app
from vaequiz.grading.models import ItemResult
from vaequiz.stats.analysis import VARIANT_MIN_STUDENTS, fisher_lower_tail

DRAWS = [{"B": 16, "D": 8}, {"B": 32, "D": 8}, {"B": 64, "D": 20}, {"B": 128, "D": 20}]


def cohort(pass_rates: list[float], students: int = 160, seed: int = 3) -> list[ItemResult]:
    """Each student draws one of DRAWS for 'z-shape' (round robin, as a roster spreads them) and
    passes it with that variant's rate; a plain item 'plain' is passed with rate 0.6."""
    rng = random.Random(seed)
    rows = []
    for s in range(students):
        variant = s % len(DRAWS)
        right = rng.random() < pass_rates[variant]
        answer = f"({DRAWS[variant]['B']}, {DRAWS[variant]['D']})" if right else "(1, 2)"
        rows.append(ItemResult(student=f"s{s:03d}", question="z-shape", kind="shape", passed=right,
                               score=float(right), points=float(right), max_points=1.0, answer=answer,
                               params=DRAWS[variant]))
        plain = rng.random() < 0.6
        rows.append(ItemResult(student=f"s{s:03d}", question="plain", kind="numeric", passed=plain,
                               score=float(plain), points=float(plain), max_points=1.0, answer="4"))
    return rows


def variants_of(report: dict[str, Any], question: str = "z-shape") -> dict[str, dict[str, Any]]:
    item = next(i for i in report["items"] if i["question"] == question)
    return {v["numbers"]: v for v in item["variants"]}


def test_a_variant_much_harder_than_the_others_is_flagged(tmp_path: Path) -> None:
    rows = cohort([0.85, 0.85, 0.85, 0.2])
    report = stats_json(write_results(tmp_path / "quiz", rows))
    item = next(i for i in report["items"] if i["question"] == "z-shape")
    scores = [r.score for r in rows if r.question == "z-shape"]
    assert math.isclose(item["facility"], sum(scores) / len(scores))  # pooled over variants
    assert item["students"] == 160
    variants = variants_of(report)
    assert set(variants) == {"B = 16 and D = 8", "B = 32 and D = 8", "B = 64 and D = 20", "B = 128 and D = 20"}
    hard = variants["B = 128 and D = 20"]
    assert hard["harder"] and hard["students"] == 40 and hard["params"] == {"B": 128, "D": 20}
    assert hard["p_value"] < 0.05 / 4
    assert [v["harder"] for n, v in variants.items() if n != "B = 128 and D = 20"] == [False] * 3
    [flag] = [f for f in item["flags"] if f.startswith("variant")]
    assert flag.startswith("variant B = 128 and D = 20 much harder:") and "Fisher exact p" in flag
    plain = next(i for i in report["items"] if i["question"] == "plain")
    assert plain["variants"] is None


def test_variants_that_differ_by_chance_only_are_not_flagged(tmp_path: Path) -> None:
    report = stats_json(write_results(tmp_path / "quiz", cohort([0.7, 0.7, 0.7, 0.7])))
    variants = variants_of(report)
    assert len(variants) == 4 and not any(v["harder"] for v in variants.values())
    assert all(v["p_value"] is not None for v in variants.values())
    item = next(i for i in report["items"] if i["question"] == "z-shape")
    assert not [f for f in item["flags"] if f.startswith("variant")]


def test_a_variant_with_few_students_is_listed_but_not_tested(tmp_path: Path) -> None:
    rows = cohort([0.9, 0.9, 0.9, 0.9], students=40)
    for row in rows[:2 * (VARIANT_MIN_STUDENTS - 1)]:  # a fifth draw, failed by every one of them
        if row.question == "z-shape":
            row.params, row.passed, row.score, row.points = {"B": 8, "D": 2}, False, 0.0, 0.0
    report = stats_json(write_results(tmp_path / "quiz", rows))
    rare = variants_of(report)["B = 8 and D = 2"]
    assert rare["students"] == VARIANT_MIN_STUDENTS - 1 and rare["p_value"] is None and not rare["harder"]


def test_the_html_report_shows_the_variants(tmp_path: Path) -> None:
    out = tmp_path / "stats.html"
    folder = write_results(tmp_path / "quiz", cohort([0.85, 0.85, 0.85, 0.2]))
    done = CliRunner().invoke(app, ["stats", str(folder), "--out", str(out)])
    assert done.exit_code == 0, done.stderr
    page = out.read_text()
    section = page[page.index('<section id="variants-z-shape">'):]
    section = section[: section.index("</section>")]
    rows = re.findall(r"<tr><td>(.*?)</td>.*?<td class=\"flag\">(.*?)</td></tr>", section, re.S)
    assert dict(rows) == {"B = 16 and D = 8": "", "B = 32 and D = 8": "", "B = 64 and D = 20": "",
                          "B = 128 and D = 20": "much harder"}
    assert "Fisher exact" in page
    summary = CliRunner().invoke(app, ["stats", str(folder)])
    assert "variant B = 128 and D = 20 much harder" in summary.stdout
    assert json.loads(CliRunner().invoke(app, ["stats", str(folder), "--json"]).stdout)["items"][0]["variants"]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fisher_tail_matches_counting_every_possible_group(data: st.DataObject) -> None:
    total = data.draw(st.integers(2, 10))
    passed = data.draw(st.integers(0, total))
    size = data.draw(st.integers(1, total - 1))
    at_most = data.draw(st.integers(max(0, size - (total - passed)), min(size, passed)))
    outcomes = [True] * passed + [False] * (total - passed)
    groups = list(itertools.combinations(range(total), size))
    expected = sum(sum(outcomes[i] for i in group) <= at_most for group in groups) / len(groups)
    assert math.isclose(fisher_lower_tail(at_most, size, passed, total), expected, rel_tol=1e-12)


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_variants_section_fits_a_phone_passes_axe_and_validates(
    tmp_path: Path, open_page: Callable[..., OpenPage], axe_source: str, scheme: str
) -> None:
    out = tmp_path / "stats.html"
    folder = write_results(tmp_path / "quiz", cohort([0.85, 0.85, 0.85, 0.2]))
    assert CliRunner().invoke(app, ["stats", str(folder), "--out", str(out)]).exit_code == 0
    page = open_page(out, scheme, width=PHONE_WIDTH)
    p = page.page
    assert p.evaluate("() => document.documentElement.scrollWidth") <= PHONE_WIDTH
    rows = p.locator("#variants-z-shape tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows if "much harder" in r] == ["B = 128 and D = 20"]
    p.add_script_tag(content=axe_source)
    result = p.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    assert page.errors == [] and page.outside_requests() == []
    assert nu_validator_errors([out]) == []
