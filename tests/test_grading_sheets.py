"""`vaequiz grade-sheets` end to end: sheets in, results.jsonl / grades.csv / feedback out;
malformed sheets, shuffled labels, resume after a kill, Gradescope output."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.conftest import REPO, run_vaequiz
from tests.sheet_support import PICK_OPTIONS, WHY_QUESTION, Z_SHAPE_QUESTION, pick_question, read_results, write_bank, write_sheet
from vaequiz.cli.app import app

BANK = (
    pick_question(
        [
            PICK_OPTIONS[0],
            '{label: B, text: the reconstruction term, feedback: "It measures how well x is rebuilt."}',
            PICK_OPTIONS[2],
        ]
    )
    + WHY_QUESTION
    + Z_SHAPE_QUESTION
    + """\
- id: kl
  kind: code
  topics: [vae]
  difficulty: beginner
  source: original
  points: 3
  prompt: Bind kl, the KL divergence to N(0, I) summed over everything.
  explanation: The closed form.
  given:
    mu: {type: tensor, shape: [B, D], requires_grad: true}
    logvar: {type: tensor, shape: [B, D], dist: uniform, low: -2, high: 1, requires_grad: true}
  expect: [kl]
  reference: |
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
  trials:
    - bind: {B: 3, D: 4}
    - bind: {B: 7, D: 2}
  checks:
    - {check: shape, of: kl, is: [[]]}
    - {check: close, of: kl, points: 2}
"""
)

RIGHT_KL = "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())"
WRONG_KL = "kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())"


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return write_bank(tmp_path, BANK)


def test_sheets_graded_into_results_grades_and_feedback(bank: Path, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    ada = write_sheet(
        sheets,
        "ada.json",
        {
            "student": "ada",
            "answers": {"pick": "B", "why": "It is not differentiable, so noise goes in epsilon.", "z-shape": "64x20", "kl": RIGHT_KL},
            "labels": {"pick": {"A": "C", "B": "A", "C": "B"}},
        },
    )
    bob = write_sheet(sheets, "bob.json", {"student": "<b>bob</b>", "answers": {"pick": "B", "z-shape": "(20, 64)", "kl": WRONG_KL}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", ada, bob, "--out", out, "--workers", "2", "--bank", bank)
    assert done.returncode == 0, done.stderr
    lines = read_results(out)
    assert len(lines) == 8 and len({(r["student"], r["question"]) for r in lines}) == 8
    by = {(r["student"], r["question"]): r for r in lines}
    assert by[("ada", "pick")]["passed"] and by[("ada", "pick")]["answer"] == "A", "shown B maps to bank A"
    assert by[("ada", "pick")]["points"] == 2
    assert not by[("<b>bob</b>", "pick")]["passed"], "without labels, B is B"
    assert "It measures how well x is rebuilt." in by[("<b>bob</b>", "pick")]["checks"][0]["message"]
    assert by[("ada", "kl")]["passed"] and by[("ada", "kl")]["points"] == 3
    bob_kl = by[("<b>bob</b>", "kl")]
    assert not bob_kl["passed"] and bob_kl["score"] == pytest.approx(1 / 3) and bob_kl["points"] == pytest.approx(1)
    assert by[("<b>bob</b>", "why")]["error"] == "no answer" and by[("<b>bob</b>", "why")]["score"] == 0
    with (out / "grades.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["student", "pick", "why", "z-shape", "kl", "total", "needs_review", "reviewed"]
    assert rows[1] == ["<b>bob</b>", "0", "0", "0", "1", "1", "", ""]
    assert rows[2] == ["ada", "2", "1", "1", "3", "7", "", ""]
    pages = sorted((out / "feedback").glob("*.html"))
    assert len(pages) == 2
    bob_page = next(p for p in pages if p.name != "ada.html").read_text()
    assert "&lt;b&gt;bob&lt;/b&gt;" in bob_page and "<b>bob</b>" not in bob_page
    assert "kl = " in bob_page and "expected" in bob_page and "no answer" in bob_page
    assert "<script" not in bob_page and "http" not in bob_page.replace("http-equiv", ""), "self-contained"


def test_malformed_sheets_are_reported_and_skipped(bank: Path, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    good = write_sheet(sheets, "good.json", {"student": "ok", "answers": {"pick": "A", "nope-question": "x"}})
    broken = [
        (write_sheet(sheets, "truncated.json", '{"student": "x", "answers": {'), "not valid JSON: line 1"),
        (write_sheet(sheets, "nostudent.json", {"answers": {"pick": "A"}}), "student: Field required"),
        (write_sheet(sheets, "badanswers.json", {"student": "y", "answers": [{"pick": "A"}]}), "answers: must map question ids"),
        (write_sheet(sheets, "notasheet.json", [1, 2]), "not a sheet"),
        (sheets / "missing.json", "no such file"),
    ]
    twice = write_sheet(sheets, "twice.json", {"student": "ok", "answers": {}})
    latin1 = sheets / "latin1.json"
    latin1.write_bytes(b'{"student": "caf\xe9"}')
    broken.append((latin1, "not UTF-8"))
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", good, twice, *(p for p, _ in broken), "--out", out, "--bank", bank, "--workers", "1")
    assert done.returncode == 1
    for path, reason in broken:
        line = next((line for line in done.stderr.splitlines() if str(path) in line), done.stderr)
        assert "skipped" in line and reason in line, line
    twice_line = next(line for line in done.stderr.splitlines() if str(twice) in line)
    assert "set aside" in twice_line and "already has a sheet" in twice_line and str(good) in twice_line
    assert "answer to 'nope-question' ignored" in done.stderr
    assert "Traceback" not in done.stderr
    assert [(r["student"], r["question"], r["passed"]) for r in read_results(out)] == [("ok", "pick", True)]


def test_usage_errors(bank: Path, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path, "s.json", {"student": "a", "answers": {"pick": "A"}})
    not_folder = write_sheet(tmp_path, "file.txt", "x")

    def invoke(*args: object) -> Result:
        return CliRunner().invoke(app, ["grade-sheets", *map(str, args), "--bank", str(bank)])

    taken = invoke(sheet, "--out", not_folder)
    assert taken.exit_code == 2 and "exists and is not a folder" in taken.stderr
    assert invoke(sheet, "--out", tmp_path / "o", "--workers", "0").exit_code == 0, "0 means all cores"
    negative = invoke(sheet, "--out", tmp_path / "o", "--workers", "-1")
    assert negative.exit_code == 2 and "--workers must be at least 1" in negative.stderr
    none = invoke(tmp_path / "nothing.json", "--out", tmp_path / "o")
    assert none.exit_code == 2 and "none of the sheets exist" in none.stderr
    unknown_format = invoke(sheet, "--out", tmp_path / "o", "--format", "moodle")
    assert unknown_format.exit_code == 2


def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(bank: Path, tmp_path: Path) -> None:
    sheets = [
        write_sheet(tmp_path / "sheets", f"s{i:02d}.json", {"student": f"s{i:02d}", "answers": {"kl": f"import time\ntime.sleep(0.3)\n{RIGHT_KL if i % 2 else WRONG_KL}"}})
        for i in range(16)
    ]
    out = tmp_path / "out"
    results = out / "results.jsonl"
    command = [sys.executable, "-m", "vaequiz", "grade-sheets", *map(str, sheets), "--out", str(out), "--workers", "1", "--bank", str(bank)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    before = results.read_bytes()
    assert 3 <= len(before.splitlines()) < 16, "killed mid-run"
    with results.open("ab") as handle:  # what a kill in the middle of a write leaves behind
        handle.write(b'{"student": "s15", "question": "kl", "ki')
    done = run_vaequiz("grade-sheets", *sheets, "--out", out, "--workers", "2", "--bank", bank)
    assert done.returncode == 0, done.stderr
    assert "dropped an incomplete last line" in done.stderr
    after = results.read_bytes()
    assert after.startswith(before), "earlier results are kept byte for byte"
    lines = read_results(out)
    assert sorted(r["student"] for r in lines) == [f"s{i:02d}" for i in range(16)], "each pair exactly once"
    assert all(r["passed"] is bool(int(r["student"][1:]) % 2) for r in lines)
    assert f"{len(before.splitlines())} already in" in done.stdout
    again = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert again.returncode == 0 and "graded 0 answer(s), 16 already in" in again.stdout
    assert results.read_bytes() == after


def test_gradescope_results_per_student(bank: Path, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "sheets", "a.json", {"student": "ann lee", "answers": {"pick": "A", "z-shape": "64 x 21"}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", sheet, "--out", out, "--format", "gradescope", "--bank", bank)
    assert done.returncode == 0, done.stderr
    files = list((out / "gradescope").glob("*/results.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text())
    assert payload["score"] == 2
    assert [t["name"] for t in payload["tests"]] == ["pick", "z-shape"]
    for test in payload["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "visibility"}
    shape = payload["tests"][1]
    assert shape["score"] == 0 and shape["max_score"] == 1 and "(64, 21) is not the right shape" in shape["output"]


def test_quiz_spec_fixes_the_questions_and_their_points(bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text("id: week\ntitle: Week\nselect:\n  - ids: [pick, z-shape]\npoints: {pick: 5}\n")
    sheet = write_sheet(tmp_path / "sheets", "ada.json", {"student": "ada", "answers": {"pick": "A", "why": "epsilon"}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", sheet, "--out", out, "--bank", bank, "--quiz", quiz)
    assert done.returncode == 0, done.stderr
    by = {r["question"]: r for r in read_results(out)}
    assert set(by) == {"pick", "z-shape"}, "only the quiz's questions, answered or not"
    assert by["pick"]["points"] == 5 and by["pick"]["max_points"] == 5
    assert by["z-shape"]["error"] == "no answer"
    missing = run_vaequiz("grade-sheets", sheet, "--out", out, "--bank", bank, "--quiz", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    quiz.write_text("id: week\ntitle: Week\nselect:\n  - ids: [nowhere]\n")
    broken = run_vaequiz("grade-sheets", sheet, "--out", tmp_path / "o2", "--bank", bank, "--quiz", quiz)
    assert broken.returncode == 1 and "week.quiz.yaml:4" in broken.stderr, broken.stderr


def test_feedback_pages_show_questions_and_render_only_bank_text(bank: Path, tmp_path: Path) -> None:
    hostile = 'raise ValueError("<img src=x onerror=alert(1)> *not emphasis*")'
    sheet = write_sheet(tmp_path / "sheets", "eve.json", {"student": "eve", "answers": {"pick": "B", "kl": hostile}})
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", sheet, "--out", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    page = (out / "feedback" / "eve.html").read_text()
    assert "Which term pulls the posterior towards the prior?" in page
    assert "<strong>B</strong> the reconstruction term" in page, "the chosen option is named by its text"
    assert "It measures how well x is rebuilt." in page
    assert "&lt;img src=x onerror=alert(1)&gt; *not emphasis*" in page, "code messages stay plain text"
    assert "<img" not in page and "<em>not emphasis</em>" not in page
