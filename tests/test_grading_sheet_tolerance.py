"""`vaequiz grade-sheets` on sheets as people really produce them: any value in any answer gets
a verdict (never a traceback), BOMs, unknown keys, nulls and numbers are read, sheets of another
quiz and unmappable letters are refused, the later of two sheets counts, and grades.csv cannot
start a formula in a spreadsheet."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests import sheet_support
from tests.conftest import run_vaequiz
from tests.sheet_support import PARAMS_QUESTION, PICK_OPTIONS, WHY_QUESTION, Z_SHAPE_QUESTION, pick_question, read_results, write_bank, write_sheet
from vaequiz.cli.app import app

BANK = (
    pick_question([*PICK_OPTIONS, "{label: D, text: the batch size}"])
    + """\
- id: ticks
  kind: mcq
  topics: [vae]
  difficulty: beginner
  source: original
  multiple: true
  stem: Which are parts of the VAE loss?
  options:
    - {label: A, text: reconstruction}
    - {label: B, text: weight decay}
    - {label: C, text: KL divergence}
    - {label: D, text: dropout}
  answer: [A, C]
  explanation: Reconstruction plus KL.
"""
    + WHY_QUESTION
    + Z_SHAPE_QUESTION
    + PARAMS_QUESTION
)

QUIZ = "id: week\ntitle: Week\nseed: 7\nselect:\n  - ids: [pick, ticks, why, z-shape, params]\n"
QUESTIONS = ["pick", "ticks", "why", "z-shape", "params"]


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return write_bank(tmp_path, BANK)


def results_by_pair(out: Path) -> dict[tuple[str, str], dict]:
    pairs = sheet_support.results_by_pair(out)
    assert len(pairs) == len(read_results(out)), "one line per pair"
    return pairs


def message(result: dict) -> str:
    return " ".join([result["error"] or ""] + [c["message"] for c in result["checks"]])


def test_any_value_in_any_answer_gets_a_verdict_and_the_run_writes_everything(bank: Path, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    odd = write_sheet(
        sheets,
        "odd.json",
        {
            "student": "odd",
            "answers": {
                "ticks": "AC",
                "pick": "CD",
                "why": {"text": "epsilon"},
                "z-shape": None,
                "params": "x" * (1024 * 1024),
            },
        },
    )
    lists = write_sheet(
        sheets,
        "lists.json",
        {"student": "lists", "answers": {"ticks": ["A", 3], "pick": True, "why": 42, "z-shape": [64, 20], "params": 313600}},
    )
    deep = write_sheet(sheets, "deep.json", '{"student": "deep", "answers": {"why": ' + "[" * 600 + "]" * 600 + ', "params": "313600"}}')
    good = write_sheet(sheets, "good.json", {"student": "good", "answers": {"ticks": "a, c", "pick": "A"}})
    out = tmp_path / "out"
    lone = write_sheet(sheets, "lone.json", {"student": "zed\udc00", "answers": {"why": "\ud800 epsilon", "pick": "A\udc00"}})
    done = run_vaequiz("grade-sheets", odd, lists, good, deep, lone, "--out", out, "--bank", bank, "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    by = results_by_pair(out)
    assert len(by) == 25, "every student gets a verdict on every question"
    assert by[("zed\ufffd", "why")]["checks"][1]["passed"], "a lone surrogate (valid JSON, not UTF-8) becomes U+FFFD"
    assert by[("deep", "params")]["passed"] and not by[("deep", "why")]["passed"], "600 levels of nesting cost one item"
    assert "could not read 'AC' as options; write 'A, C'" in message(by[("odd", "ticks")])
    assert "could not read 'CD' as one option; choose one letter of A, B, C, D" in message(by[("odd", "pick")])
    assert by[("odd", "z-shape")]["error"] == "no answer", "null means unanswered"
    assert "answers are limited to 256 KB" in message(by[("odd", "params")])
    assert len(message(by[("odd", "params")])) < 200, "a message never quotes a megabyte"
    assert by[("odd", "why")]["checks"][1]["passed"], "an object is read as its text"
    assert "could not read '[\"A\", 3]' as options" in message(by[("lists", "ticks")])
    assert "could not read 'true' as an option" in message(by[("lists", "pick")])
    assert by[("lists", "z-shape")]["passed"], "[64, 20] is read as its text"
    assert by[("lists", "params")]["passed"], "a JSON number is read as its text"
    assert by[("good", "ticks")]["passed"] and by[("good", "pick")]["passed"]
    for result in by.values():
        assert result["passed"] or message(result).strip(), "a failed item always says why"
    rows = list(csv.reader((out / "grades.csv").open()))
    assert [r[0] for r in rows] == ["student", "deep", "good", "lists", "odd", "zed\ufffd"]
    assert len(list((out / "feedback").glob("*.html"))) == 5


def test_a_sheet_as_editors_and_scripts_write_it(bank: Path, tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "sheets",
        "bom.json",
        {"student": 12345, "answers": {"params": 313600, "z-shape": [64, 20], "pick": None}, "anwsers": {}, "browser": "x"},
        prefix=b"\xef\xbb\xbf",
    )
    other = write_sheet(tmp_path / "sheets", "other.json", {"student": "other", "answers": {"pick": "A"}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", sheet, other, "--out", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    assert "unknown key 'anwsers' ignored; did you mean 'answers'?" in done.stderr
    assert "unknown key 'browser' ignored" in done.stderr
    by = results_by_pair(out)
    assert by[("12345", "params")]["passed"] and by[("12345", "z-shape")]["passed"]
    assert by[("12345", "pick")]["error"] == "no answer"


def test_with_quiz_a_sheet_of_another_quiz_is_refused_and_the_rest_graded(bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text(QUIZ)
    sheets = tmp_path / "sheets"
    other = write_sheet(sheets, "other.json", {"student": "ann", "quiz": "exam-2", "answers": {"params": "313600"}})
    mine = write_sheet(sheets, "mine.json", {"student": "bo", "quiz": "week", "answers": {"params": "313600"}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", other, mine, "--out", out, "--bank", bank, "--quiz", quiz)
    assert done.returncode == 1
    line = next(line for line in done.stderr.splitlines() if str(other) in line)
    assert "skipped: the sheet is for quiz 'exam-2', not 'week'" in line
    assert {s for s, _ in results_by_pair(out)} == {"bo"}


def test_of_two_sheets_for_one_student_the_later_saved_at_counts(bank: Path, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    later = write_sheet(
        sheets,
        "ada-2.json",
        {"student": "ada", "started_at": "2026-03-02T09:00:00Z", "saved_at": "2026-03-02T10:05:00+01:00", "answers": {"params": "313600"}},
    )
    earlier = write_sheet(
        sheets,
        "ada-1.json",
        {"student": "ada", "started_at": "2026-03-02T08:00:00Z", "saved_at": "2026-03-02T08:30:00Z", "answers": {"params": "1"}},
    )
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", earlier, later, "--out", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if "set aside" in line)
    assert line.startswith(f"vaequiz: warning: {earlier}: set aside:") and f"has a later sheet, {later}" in line
    assert results_by_pair(out)[("ada", "params")]["passed"]
    # the earlier sheet's answer replaced by the later one's on a rerun, too
    again = run_vaequiz("grade-sheets", later, earlier, "--out", out, "--bank", bank)
    assert again.returncode == 0 and "graded 0 answer(s)" in again.stdout, again.stdout


def page_data(page: Path) -> dict:
    match = re.search(r'<script type="application/json" id="quiz-data">(.*?)</script>', page.read_text(), re.S)
    assert match, "the page carries its data"
    return json.loads(match.group(1))


def test_a_variant_that_lost_its_labels_is_re_derived_or_refused(bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text(QUIZ)
    built = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "--student", "ada", "-o", tmp_path / "ada.html")
    assert built.returncode == 0, built.stderr
    data = page_data(tmp_path / "ada.html")
    shown = {bank_label: shown for shown, bank_label in data["labels"]["pick"].items()}
    ticks_shown = {bank_label: shown for shown, bank_label in data["labels"]["ticks"].items()}
    assert shown["A"] != "A" or ticks_shown != {"A": "A", "B": "B", "C": "C", "D": "D"}, "seed 7 shuffles"
    answers = {"pick": shown["A"], "ticks": ", ".join(sorted([ticks_shown["A"], ticks_shown["C"]]))}
    sheets = tmp_path / "sheets"
    lost = write_sheet(sheets, "ada.json", {"student": "ada", "quiz": "week", "variant": data["variant"], "answers": answers})
    # the anonymous page (no student baked in) derives its letters for student ""
    built = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "-o", tmp_path / "anon.html")
    anon = page_data(tmp_path / "anon.html")
    anon_shown = {b: s for s, b in anon["labels"]["pick"].items()}
    typed = write_sheet(sheets, "cy.json", {"student": "cy", "quiz": "week", "variant": anon["variant"], "answers": {"pick": anon_shown["A"]}})
    forged = write_sheet(sheets, "eve.json", {"student": "eve", "quiz": "week", "variant": data["variant"], "answers": {"pick": "A", "params": "313600"}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", lost, typed, forged, "--out", out, "--bank", bank, "--quiz", quiz)
    assert done.returncode == 1, "a refused answer fails the run"
    assert f"{lost}: no labels for pick, ticks; re-derived from quiz 'week', seed 7" in done.stderr
    by = results_by_pair(out)
    assert by[("ada", "pick")]["passed"] and by[("ada", "pick")]["answer"] == "A"
    assert by[("ada", "ticks")]["passed"]
    assert by[("cy", "pick")]["passed"]
    refused = next(line for line in done.stderr.splitlines() if str(forged) in line)
    assert "pick: not graded: the sheet lost the labels of shuffled question 'pick'" in refused
    assert ("eve", "pick") not in by, "never graded with the wrong letters"
    assert by[("eve", "params")]["passed"], "the sheet's other answers are graded"
    without_quiz = run_vaequiz("grade-sheets", lost, "--out", tmp_path / "out2", "--bank", bank)
    assert without_quiz.returncode == 1 and "grade with the --quiz (and --seed)" in without_quiz.stderr


def test_lost_labels_of_a_page_built_with_another_seed_need_that_seed(bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text(QUIZ)
    built = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "--seed", "11", "--student", "ada", "-o", tmp_path / "ada.html")
    assert built.returncode == 0, built.stderr
    data = page_data(tmp_path / "ada.html")
    shown = {b: s for s, b in data["labels"]["pick"].items()}
    sheet = write_sheet(tmp_path / "sheets", "ada.json", {"student": "ada", "quiz": "week", "variant": data["variant"], "answers": {"pick": shown["A"]}})
    unseeded = run_vaequiz("grade-sheets", sheet, "--out", tmp_path / "o1", "--bank", bank, "--quiz", quiz)
    assert unseeded.returncode == 1 and "grade with the same --seed" in unseeded.stderr
    seeded = run_vaequiz("grade-sheets", sheet, "--out", tmp_path / "o2", "--bank", bank, "--quiz", quiz, "--seed", "11")
    assert seeded.returncode == 0, seeded.stderr
    assert results_by_pair(tmp_path / "o2")[("ada", "pick")]["passed"]


def test_grades_csv_cannot_start_a_formula(bank: Path, tmp_path: Path) -> None:
    names = ['=HYPERLINK("http://x.invalid","click")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain"]
    sheets = [
        write_sheet(tmp_path / "sheets", f"s{i}.json", {"student": name, "answers": {"params": "313600"}})
        for i, name in enumerate(names)
    ]
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    with (out / "grades.csv").open(newline="") as handle:
        cells = [row[0] for row in csv.reader(handle)][1:]
    assert sorted(cells) == sorted("'" + n if n[0] in "=+-@\t\r" else n for n in names)
    for cell in cells:
        assert cell[0] not in "=+-@\t\r", cell


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["AC", "CD", "a c", "A,,C", "E", "(64, 20)", "313600", "  ", "ABCD", "A\ud800", "\udc00 epsilon"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
TOP_LEVEL = st.dictionaries(
    st.sampled_from(["quiz", "variant", "labels", "saved_at", "started_at", "extra", "Answers"]), JSON, max_size=4
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    odd=st.dictionaries(st.sampled_from(["pick", "ticks", "why", "nope", "Bad Id"]), JSON, max_size=5),
    top=TOP_LEVEL,
)
def test_arbitrary_json_sheets_never_raise_and_keep_their_valid_items(
    bank: Path, tmp_path_factory: pytest.TempPathFactory, odd: dict, top: dict
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    answers = {**odd, "z-shape": "(64, 20)", "params": 313600}
    sheet = write_sheet(folder, "s.json", {"quiz": "q\ud800", **top, "student": "s", "answers": answers})
    out = folder / "out"
    result = CliRunner().invoke(app, ["grade-sheets", str(sheet), "--out", str(out), "--bank", str(bank), "--workers", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1), result.output
    by = results_by_pair(out)
    assert by[("s", "z-shape")]["passed"] and by[("s", "params")]["passed"], "valid items are never lost"
    for question in ("pick", "ticks", "why"):
        if odd.get(question) is None:
            continue  # null is unanswered, and nobody else was asked the question
        if ("s", question) in by:
            item = by[("s", question)]
            assert item["passed"] or message(item).strip(), "a verdict with a message"
        else:  # only letters that cannot be mapped back (a variant without its labels) are set aside
            assert f"{question}: not graded: the sheet lost the labels" in result.stderr, result.stderr
    assert (out / "grades.csv").is_file() and (out / "feedback" / "s.html").is_file()
