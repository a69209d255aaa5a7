"""Regrading: a rerun of `grade-sheets` regrades exactly the pairs whose question, grader or
answer changed and says so; `--regrade` forces all; `vaequiz regrade DIR --dry-run` lists old and
new points and writes nothing; results never keep a stale entry, and interrupted runs resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_BANK, run_vaequiz
from tests.sheet_support import PARAMS_QUESTION, PICK_OPTIONS, Z_SHAPE_QUESTION, pick_question, read_results, write_bank, write_sheets
from vaequiz.bank.loader import load_bank
from vaequiz.grading.fingerprint import PRESENTATION_FIELDS, question_fingerprint

BANK = pick_question(PICK_OPTIONS) + Z_SHAPE_QUESTION + PARAMS_QUESTION

STUDENTS = {
    "ann": {"pick": "A", "z-shape": "(64, 20)", "params": "313600"},
    "bo": {"pick": "B", "z-shape": "(20, 64)", "params": "313600"},
    "cy": {"pick": "B", "z-shape": "64x20", "params": "1"},
}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[Path], Path]:
    bank = write_bank(tmp_path, BANK)
    sheets = write_sheets(tmp_path / "sheets", [{"student": student, "quiz": "week", "answers": answers} for student, answers in STUDENTS.items()])
    return bank, sheets, tmp_path / "out"


def points(out: Path) -> dict[tuple[str, str], float]:
    return {(r["student"], r["question"]): r["points"] for r in read_results(out)}


def gradebook(out: Path) -> list[list[str]]:
    with (out / "grades.csv").open(newline="") as handle:
        return list(csv.reader(handle))


def set_key(bank: Path, old: str, new: str) -> None:
    path = bank / "questions.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_rerun_regrades_exactly_what_changed_and_says_so(setup: tuple[Path, list[Path], Path]) -> None:
    bank, sheets, out = setup
    first = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert first.returncode == 0, first.stderr
    assert points(out)[("bo", "pick")] == 0
    assert all(r["fingerprint"] and r["grader_version"] for r in read_results(out))

    set_key(bank, "  answer: A\n", "  answer: B\n")  # the key was wrong
    fixed = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert fixed.returncode == 0, fixed.stderr
    assert "regraded pick for 3 student(s): the question's key, rubric, checks, reference or points changed" in fixed.stdout
    assert "graded 3 answer(s) (3 regraded), 6 already in" in fixed.stdout
    assert points(out)[("bo", "pick")] == 2 and points(out)[("ann", "pick")] == 0
    assert len(read_results(out)) == 9, "the newest result per pair, no stale line"
    assert gradebook(out)[0][-2:] == ["needs_review", "reviewed"]
    assert [row[:-2] for row in gradebook(out)[1:]] == [
        ["ann", "0", "1", "1", "2"],
        ["bo", "2", "0", "1", "3"],
        ["cy", "2", "1", "0", "3"],
    ]

    set_key(bank, "explanation: Batch by latent size.", "explanation: Rows by latent dimension.")
    wording = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert "graded 0 answer(s), 9 already in" in wording.stdout, "an explanation decides no grade"

    quiz = out.parent / "week.quiz.yaml"
    quiz.write_text("id: week\ntitle: Week\nselect:\n  - ids: [pick, z-shape, params]\npoints: {params: 4}\n")
    weighted = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank, "--quiz", quiz)
    assert "regraded params for 3 student(s)" in weighted.stdout and "(3 regraded)" in weighted.stdout
    assert points(out)[("ann", "params")] == 4

    forgot = run_vaequiz("regrade", out, "--bank", bank, "--dry-run")
    assert "would regrade 3 answer(s), 2 with different points" in forgot.stdout, "params falls back to 1 point"
    assert "the results are for quiz week; without --quiz its questions and points overrides" in forgot.stderr

    forced = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank, "--quiz", quiz, "--regrade")
    assert "graded 9 answer(s) (9 regraded), 0 already in" in forced.stdout
    assert "--regrade was given" in forced.stdout and len(read_results(out)) == 9


def test_a_changed_answer_and_an_older_result_are_regraded(setup: tuple[Path, list[Path], Path]) -> None:
    bank, sheets, out = setup
    assert run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank).returncode == 0
    cy = sheets[2]
    cy.write_text(json.dumps({"student": "cy", "quiz": "week", "answers": {**STUDENTS["cy"], "params": "313600"}}))
    changed = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert "regraded params for 1 student(s): the answer on the sheet changed" in changed.stdout
    assert points(out)[("cy", "params")] == 1
    # results written before fingerprints existed are graded again, not trusted
    old = [{k: v for k, v in r.items() if k not in ("fingerprint", "grader_version")} for r in read_results(out)]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    upgraded = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert "graded 9 answer(s) (9 regraded)" in upgraded.stdout
    assert "graded by another version of the grader" in upgraded.stdout


def test_regrade_dry_run_lists_old_and_new_points_and_writes_nothing(setup: tuple[Path, list[Path], Path]) -> None:
    bank, sheets, out = setup
    assert run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank).returncode == 0
    set_key(bank, "  answer: A\n", "  answer: B\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    dry = run_vaequiz("regrade", out, "--bank", bank, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    rows = [line.split("│") for line in dry.stdout.splitlines() if line.count("│") >= 6]
    table = {(r[1].strip(), r[2].strip()): (r[3].strip(), r[4].strip(), r[5].strip()) for r in rows}
    assert table == {
        ("ann", "pick"): ("2 / 2", "0 / 2", "-2"),
        ("bo", "pick"): ("0 / 2", "2 / 2", "+2"),
        ("cy", "pick"): ("0 / 2", "2 / 2", "+2"),
    }
    assert "would regrade 3 answer(s), 3 with different points; 6 up to date; nothing written" in dry.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "a dry run writes nothing"

    done = run_vaequiz("regrade", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    assert "regraded pick for 3 student(s)" in done.stdout
    assert points(out)[("bo", "pick")] == 2 and len(read_results(out)) == 9
    assert gradebook(out)[2][:-2] == ["bo", "2", "0", "1", "3"]
    assert "would regrade 0 answer(s)" in run_vaequiz("regrade", out, "--bank", bank, "--dry-run").stdout

    missing = run_vaequiz("regrade", out.parent / "nowhere", "--bank", bank)
    assert missing.returncode == 2 and "holds no results.jsonl" in missing.stderr


def test_an_interrupted_regrade_resumes_with_the_newest_results(setup: tuple[Path, list[Path], Path]) -> None:
    bank, sheets, out = setup
    assert run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank).returncode == 0
    old = (out / "results.jsonl").read_text()
    set_key(bank, "  answer: A\n", "  answer: B\n")
    assert run_vaequiz("regrade", out, "--bank", bank).returncode == 0
    new = [line for line in (out / "results.jsonl").read_text().split("\n") if '"question": "pick"' in line]
    # what a run killed after appending two of its three regrades, before compacting, leaves
    (out / "results.jsonl").write_text(old + "\n".join(new[:2]) + "\n" + new[2][:40])
    resumed = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank)
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped an incomplete last line" in resumed.stderr
    assert "graded 1 answer(s) (1 regraded), 8 already in" in resumed.stdout
    assert len(read_results(out)) == 9 and points(out)[("bo", "pick")] == 2 and points(out)[("cy", "pick")] == 2


def test_the_fingerprint_covers_what_grades_and_nothing_that_only_presents(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text(BANK)
    questions = load_bank(tmp_path).by_id()
    base = {qid: question_fingerprint(q) for qid, q in questions.items()}
    graded_changes = {
        "pick": [{"answer": ["B"]}, {"points": 3}, {"multiple": False, "answer": ["C"]}],
        "z-shape": [{"answer": [64, 21]}, {"points": 0.5}],
        "params": [{"answer": 313601.0}, {"tolerance": 1.0}, {"relative_tolerance": 0.01}],
    }
    for qid, updates in graded_changes.items():
        for update in updates:
            assert question_fingerprint(questions[qid].model_copy(update=update)) != base[qid], (qid, update)
    for qid, question in questions.items():
        for name in PRESENTATION_FIELDS & set(type(question).model_fields):
            value = getattr(question, name)
            changed = "other text" if isinstance(value, str) or value is None else value
            if isinstance(value, bool):
                changed = not value
            elif isinstance(value, list):
                changed = [*value, "extra"]
            assert question_fingerprint(question.model_copy(update={name: changed})) == base[qid], (qid, name)


def test_the_fingerprint_of_a_code_question_covers_its_checks_reference_and_limits() -> None:
    question = load_bank(BUNDLED_BANK).get("kl-divergence")
    base = question_fingerprint(question)
    for update in (
        {"reference": question.reference + "\nkl = kl * 1.0\n"},
        {"checks": question.checks[:-1]},
        {"trials": question.trials[:1]},
        {"limits": question.limits.model_copy(update={"time_s": 9})},
        {"mutants": question.mutants[:-1]},
    ):
        assert question_fingerprint(question.model_copy(update=update)) != base, list(update)
    assert question_fingerprint(question.model_copy(update={"prompt": "Reworded.", "starter": "kl = 0"})) == base
