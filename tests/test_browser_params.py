"""Parametric questions in a real browser: two students' exam pages show different numbers, and
both, answered right in the page from the numbers it shows and saved by its script, grade full
marks through grade-sheets."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import run_vaequiz
from tests.test_browser_quiz import OpenPage, browser, open_page  # noqa: F401 - fixtures
from tests.test_params import PARAMETRIC_BANK
from vaequiz.grading.models import AnswerSheet

pytestmark = pytest.mark.browser

STUDENTS = ("ada", "ben")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("params-pages")
    bank = folder / "bank"
    bank.mkdir()
    (bank / "params.yaml").write_text(textwrap.dedent(PARAMETRIC_BANK).lstrip("\n"), encoding="utf-8")
    roster = folder / "roster.csv"
    roster.write_text("student\n" + "\n".join(STUDENTS) + "\n", encoding="utf-8")
    result = run_vaequiz("build", "--bank", bank, "--roster", roster, "-o", folder / "exam")
    assert result.returncode == 0, result.stderr
    built = {name: folder / "exam" / f"question-bank-{name}.html" for name in STUDENTS}
    assert all(p.is_file() for p in built.values()), list((folder / "exam").iterdir())
    return {"bank": bank, **built}


def _visible(page: OpenPage, question_id: str) -> str:
    return page.page.locator(f"#prompt-{question_id}").inner_text()


def _totals(path: Path) -> dict[str, str]:
    """Each student's total from a gradebook (whatever other columns it has)."""
    import csv

    with path.open(encoding="utf-8") as handle:
        return {row["student"]: row["total"] for row in csv.DictReader(handle)}


def answer_from_the_page(page: OpenPage) -> dict[str, int | float]:
    """Read each student's numbers off the page as they see them and answer right."""
    p = page.page
    shape = re.search(r"A batch of (\d+) inputs and a (\d+)-dimensional latent", _visible(page, "z-shape"))
    assert shape, _visible(page, "z-shape")
    batch, latent = int(shape.group(1)), int(shape.group(2))
    p.fill("#answer-z-shape", f"({batch}, {latent})")

    # the KL prompt is MathML: its text holds mu and sigma in order
    numbers = re.findall(r"-?\d+(?:\.\d+)?", _visible(page, "kl-one").replace("\u2212", "-"))
    mu, sigma = float(numbers[0]), float(numbers[1])
    kl = 0.5 * (mu**2 + sigma**2 - math.log(sigma**2) - 1)
    p.fill("#answer-kl-one", f"{kl:.4f}")

    count = re.search(r"a \((\d+), (\d+)\) tensor", _visible(page, "count"))
    assert count
    product = int(count.group(1)) * int(count.group(2))
    options = p.locator("#q-count .option")
    for i in range(options.count()):
        option = options.nth(i)
        if option.locator(".option-body").inner_text().strip() == str(product):
            option.locator("input").check()
            break
    else:
        pytest.fail(f"no option shows {product}")
    return {"B": batch, "D": latent, "mu": mu, "sigma": sigma}


def test_two_students_see_different_numbers_and_both_grade_full_marks(
    pages: dict[str, Path], open_page: Callable[..., OpenPage], tmp_path: Path
) -> None:
    seen: dict[str, dict[str, int | float]] = {}
    sheets: list[Path] = []
    for name in STUDENTS:
        page = open_page(pages[name])
        seen[name] = answer_from_the_page(page)
        assert page.page.locator("#progress").text_content() == "All 3 questions answered"
        with page.page.expect_download() as download_info:
            page.page.click("#save-answers")
        path = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(path)
        sheet = AnswerSheet.model_validate_json(path.read_text(encoding="utf-8"))
        assert sheet.student == name and sheet.params == page.data()["params"]
        assert sheet.params["z-shape"]["B"] == seen[name]["B"]
        assert page.errors == [] and page.outside_requests() == []
        sheets.append(path)
    assert seen["ada"] != seen["ben"]

    out = tmp_path / "graded"
    result = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", pages["bank"])
    assert result.returncode == 0, result.stderr
    results = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(results) == 6
    assert all(r["score"] == 1 for r in results), [(r["student"], r["question"], r["checks"]) for r in results]
    assert _totals(out / "grades.csv") == {"ada": "3", "ben": "3"}
