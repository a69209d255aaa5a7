"""Short answers through the real CLI: evidence and review flags in results.jsonl, grades.csv
and the feedback pages; `vaequiz review` overrides stored beside the results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import run_vaequiz

BANK = """
- id: kl-why
  kind: short_answer
  topics: [vae]
  difficulty: beginner
  source: original
  points: 2
  prompt: Why does the VAE loss contain a KL term?
  model_answer: |
    The KL term regularises the latent space: it pulls each approximate posterior toward the
    standard normal prior, so the encoder cannot memorise its inputs as isolated points.
  rubric:
    - {name: regularises, phrasings: [regularise, regularisation]}
    - name: pulls the posterior toward the prior
      phrasings: ["pull ... toward ... prior", "close to ... prior"]
      contradictions: ["kl ... measure ... reconstruction"]
    - {name: standard normal prior, phrasings: [standard normal, unit gaussian], patterns: ['n\\(0,(1|i)\\)']}
    - {name: prevents memorising, phrasings: ["cannot memorise", "stop ... overfit", "prevent ... overfit"]}
  explanation: See the model answer.
"""

ANSWERS = {
    "clear": "The KL term regularises the latent space. It pulls each posterior toward the standard "
    "normal prior, which stops the encoder from overfitting to isolated points.",
    "borderline": "It regularises the latent space and keeps the codes close to the prior.",
    "negated": "The KL does not pull the posterior toward the prior; it regularises the weights a bit.",
}


@pytest.fixture
def graded(tmp_path: Path) -> Path:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text(BANK)
    sheets = []
    for student, answer in ANSWERS.items():
        path = tmp_path / "sheets" / f"{student}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"student": student, "answers": {"kl-why": answer}}))
        sheets.append(path)
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", *sheets, "--out", out, "--bank", bank, "--workers", "1")
    assert done.returncode == 0, done.stderr
    return out


def results(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["student"]: r for r in lines}


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
