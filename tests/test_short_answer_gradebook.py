"""Short answers through the real CLI: evidence and review flags in results.jsonl, grades.csv
and the feedback pages; `vaequiz review` overrides stored beside the results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import run_vaequiz
from tests.sheet_support import kl_why_question, read_results, write_bank, write_sheets

BANK = kl_why_question(
    """\
    - {name: regularises, phrasings: [regularise, regularisation]}
    - name: pulls the posterior toward the prior
      phrasings: ["pull ... toward ... prior", "close to ... prior"]
      contradictions: ["kl ... measure ... reconstruction"]
    - {name: standard normal prior, phrasings: [standard normal, unit gaussian], patterns: ['n\\(0,(1|i)\\)']}
    - {name: prevents memorising, phrasings: ["cannot memorise", "stop ... overfit", "prevent ... overfit"]}
"""
)

ANSWERS = {
    "clear": "The KL term regularises the latent space. It pulls each posterior toward the standard "
    "normal prior, which stops the encoder from overfitting to isolated points.",
    "borderline": "It regularises the latent space and keeps the codes close to the prior.",
    "negated": "The KL does not pull the posterior toward the prior; it regularises the weights a bit.",
}


@pytest.fixture
def graded(tmp_path: Path) -> Path:
    bank = write_bank(tmp_path, BANK, "q.yaml")
    sheets = write_sheets(tmp_path / "sheets", [{"student": student, "answers": {"kl-why": answer}} for student, answer in ANSWERS.items()])
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank, "--workers", "1")
    assert done.returncode == 0, done.stderr
    return out


def results(out: Path) -> dict[str, dict]:
    return {r["student"]: r for r in read_results(out)}


def grades(out: Path) -> dict[str, dict[str, str]]:
    with (out / "grades.csv").open() as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_flags_and_evidence_reach_results_grades_and_feedback(graded: Path) -> None:
    by = results(graded)
    assert not by["clear"]["needs_review"] and by["clear"]["score"] == 1
    assert by["borderline"]["needs_review"] and "within one of the pass line" in by["borderline"]["review_reasons"][0]
    assert by["negated"]["needs_review"] and not by["negated"]["passed"]
    evidence = {c["name"]: c["evidence"] for c in by["clear"]["checks"]}
    assert evidence["regularises"] == "found 'regularises' in: 'The KL term regularises the latent space.'"
    negated = next(c for c in by["negated"]["checks"] if c["name"] == "pulls the posterior toward the prior")
    assert "is negated in" in negated["message"]
    rows = grades(graded)
    assert rows["clear"]["needs_review"] == "" and rows["borderline"]["needs_review"] == "kl-why"
    assert rows["negated"]["needs_review"] == "kl-why" and rows["clear"]["kl-why"] == "2"
    page = (graded / "feedback" / "borderline.html").read_text()
    assert "A teacher will confirm this grade." in page
    assert "found &#39;regularises&#39; in: &#39;It regularises the latent space" in page
    assert "A teacher will confirm this grade." not in (graded / "feedback" / "clear.html").read_text()


def test_grade_one_answer_reports_evidence_and_review(graded: Path, tmp_path: Path) -> None:
    answer = tmp_path / "answer.txt"
    answer.write_text(ANSWERS["borderline"])
    done = run_vaequiz("grade", "kl-why", answer, "--json", "--bank", tmp_path / "bank")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["needs_review"] and report["review_reasons"]
    assert report["checks"][0]["evidence"].startswith("found 'regularises' in:")
    plain = run_vaequiz("grade", "kl-why", answer, "--bank", tmp_path / "bank")
    assert "found 'regularises' in:" in plain.stdout and "a teacher will confirm this grade" in plain.stdout


def rerun(graded: Path, answers: dict[str, str]) -> None:
    """Grade the same students again into the same folder, from scratch (results.jsonl removed)."""
    (graded / "results.jsonl").unlink()
    sheets = write_sheets(graded.parent / "sheets", [{"student": student, "answers": {"kl-why": answer}} for student, answer in answers.items()])
    done = run_vaequiz("grade-sheets", *sheets, "--out", graded, "--bank", graded.parent / "bank", "--workers", "1")
    assert done.returncode == 0, done.stderr


def test_review_in_the_terminal_overrides_concept_by_concept_and_survives_regrading(graded: Path) -> None:
    bank = graded.parent / "bank"
    # pending answers come by question then student: borderline, then negated
    done = run_vaequiz("review", graded, "--bank", bank, "--reviewer", "ms-t", input="y\n\ny\nn\nq\n")
    assert done.returncode == 0, done.stderr
    assert "[1/2] borderline / kl-why" in done.stdout and "found 'regularises' in:" in done.stdout
    assert "stored 1 override(s)" in done.stdout and "1 flagged answer(s) left" in done.stdout
    overrides = [json.loads(line) for line in (graded / "overrides.jsonl").read_text().splitlines()]
    assert len(overrides) == 1 and overrides[0]["reviewer"] == "ms-t"
    assert overrides[0]["concepts"] == {
        "regularises": True, "pulls the posterior toward the prior": True,
        "standard normal prior": True, "prevents memorising": False,
    }
    rows = grades(graded)
    assert rows["borderline"]["kl-why"] == "1.5" and rows["borderline"]["needs_review"] == ""
    assert rows["borderline"]["reviewed"] == "kl-why" and rows["negated"]["needs_review"] == "kl-why"
    page = (graded / "feedback" / "borderline.html").read_text()
    assert "Reviewed by ms-t." in page and "A teacher will confirm this grade." not in page
    assert results(graded)["borderline"]["score"] == 0.5, "results.jsonl keeps the grader's verdict"

    rerun(graded, ANSWERS)
    assert grades(graded)["borderline"]["kl-why"] == "1.5", "the override survives a regrade"
    changed = {**ANSWERS, "borderline": ANSWERS["borderline"] + " It also matters."}
    rerun(graded, changed)
    rows = grades(graded)
    assert rows["borderline"]["kl-why"] == "1" and rows["borderline"]["needs_review"] == "kl-why"
    again = run_vaequiz("review", graded, "--bank", bank, "--export", graded / "todo.csv")
    assert "wrote 2 flagged answer(s)" in again.stdout


def test_review_through_a_csv(graded: Path) -> None:
    bank = graded.parent / "bank"
    sheet = graded / "review.csv"
    done = run_vaequiz("review", graded, "--bank", bank, "--export", sheet)
    assert done.returncode == 0 and "wrote 2 flagged answer(s), 8 concept row(s)" in done.stdout
    with sheet.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == ["borderline"] * 4 + ["negated"] * 4
    assert rows[0]["grader"] == "yes" and rows[0]["answer"] == ANSWERS["borderline"] and rows[1]["answer"] == ""
    negated = rows[4:]
    assert "is negated in" in negated[1]["evidence"]
    negated[1]["teacher"] = "no"   # the teacher agrees it is negated
    negated[0]["teacher"] = "yes"
    negated[2]["teacher"] = "maybe"  # not a verdict: this answer is left alone, the row reported
    rows[2]["teacher"] = "y"
    rows[3]["teacher"] = "yes"
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    back = run_vaequiz("review", graded, "--bank", bank, "--import", sheet, "--reviewer", "dr-k")
    assert back.returncode == 1 and f"{sheet}:8: teacher must be yes, no or empty (got 'maybe')" in back.stderr
    assert "stored 1 override(s)" in back.stdout and "Traceback" not in back.stderr
    table = grades(graded)
    assert table["borderline"]["kl-why"] == "2" and table["borderline"]["reviewed"] == "kl-why"
    assert table["negated"]["needs_review"] == "kl-why"
    missing = run_vaequiz("review", graded.parent / "nowhere", "--bank", bank)
    assert missing.returncode == 2 and "results.jsonl does not exist" in missing.stderr
