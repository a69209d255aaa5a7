"""The labelled corpus (tests/corpus) through the real CLI, against the bundled bank.

Every snippet file starts with a header::

    # question: kl-divergence
    # expect: pass | fail
    # why: what the snippet shows
    # reason: text expected in the failure (optional; "a|b" accepts either)

The whole corpus goes through one ``vaequiz grade-sheets`` run (one sheet per snippet, so one
sandbox start); ``vaequiz grade --json`` is exercised for its output contract and exit codes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.conftest import BUNDLED_BANK, run_vaequiz
from vaequiz.bank.loader import load_bank
from vaequiz.cli.app import app

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Snippet:
    path: Path
    question: str
    expect: str
    reason: str

    @property
    def student(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


def read_corpus() -> list[Snippet]:
    snippets = []
    for path in sorted(CORPUS.rglob("*.py")):
        header = dict(re.findall(r"^# (question|expect|reason): (.*)$", path.read_text(), re.M))
        snippets.append(Snippet(path, header["question"].strip(), header["expect"].strip(), header.get("reason", "").strip()))
    return snippets


SNIPPETS = read_corpus()
BANK_IDS = {q.id for q in load_bank(BUNDLED_BANK).questions}


def test_corpus_is_labelled_and_covers_every_code_question() -> None:
    assert len(SNIPPETS) >= 80
    assert {s.expect for s in SNIPPETS} == {"pass", "fail"}
    by_question: dict[str, set[str]] = {}
    for s in SNIPPETS:
        by_question.setdefault(s.question, set()).add(s.expect)
    for question in (
        "reparameterization-trick",
        "mnist-decoder-bce",
        "codebook-flatten",
        "codebook-sample",
        "kl-divergence",
        "vae-loss",
        "vq-nearest",
    ):
        assert by_question.get(question) == {"pass", "fail"}, question


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Grade the corpus once with `vaequiz grade-sheets` and return results by student."""
    folder = tmp_path_factory.mktemp("corpus")
    sheets = []
    for i, snippet in enumerate(s for s in SNIPPETS if s.question in BANK_IDS):
        sheet = folder / "sheets" / f"{i:03d}.json"
        sheet.parent.mkdir(exist_ok=True)
        sheet.write_text(json.dumps({"student": snippet.student, "answers": {snippet.question: snippet.path.read_text()}}))
        sheets.append(sheet)
    out = folder / "out"
    done = run_vaequiz("grade-sheets", *sheets, "--out", out, "--workers", "2", timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    questions = {s.question for s in SNIPPETS if s.question in BANK_IDS}
    assert len(lines) == len(sheets) * len(questions), "one line per (student, question), no duplicates"
    unanswered = [r for r in lines if r["answer"] is None]
    assert all(r["score"] == 0 and r["error"] == "no answer" for r in unanswered)
    return {r["student"]: r for r in lines if r["answer"] is not None}


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.student)
def test_corpus_verdict(snippet: Snippet, corpus_results: dict[str, dict]) -> None:
    if snippet.question not in BANK_IDS:
        pytest.skip(f"the bundled bank has no question {snippet.question}")
    result = corpus_results[snippet.student]
    failures = [c for c in result["checks"] if not c["passed"]]
    assert result["passed"] is (snippet.expect == "pass"), failures
    if snippet.expect == "pass":
        assert result["score"] == 1.0
        return
    assert result["score"] < 1.0
    assert failures, "a failed answer names the checks it failed"
    for check in failures:
        assert check["message"], f"check {check['name']} failed without saying why"
    if snippet.reason:
        text = " ".join([result.get("error") or "", *(c["message"] for c in failures)]).lower()
        assert any(part.lower() in text for part in snippet.reason.split("|")), text


# --------------------------------------------------------------------------- `grade` contract


def _json(stdout: str) -> dict:
    decoded = json.loads(stdout)
    assert isinstance(decoded, dict)
    return decoded


def test_grade_json_right_answer_exits_0() -> None:
    done = run_vaequiz("grade", "kl-divergence", CORPUS / "kl-divergence" / "pass_distributions.py", "--json")
    assert done.returncode == 0, done.stderr
    result = _json(done.stdout)
    assert result["question"] == "kl-divergence" and result["passed"] is True and result["score"] == 1.0
    assert all({"name", "passed", "message"} <= set(c) for c in result["checks"])


def test_grade_wrong_answer_exits_1_with_actionable_message() -> None:
    done = run_vaequiz("grade", "reparameterization-trick", CORPUS / "reparameterization-trick" / "fail_wrong_shape.py")
    assert done.returncode == 1, done.stderr
    assert "NOT PASSED" in done.stdout
    assert re.search(r"z has shape \(\d+, 1\).*expected \(\d+, \d+\), the shape of mu", done.stdout)


def invoke(*args: object) -> Result:
    """The CLI in process (typer's runner), for cases that never start a sandbox."""
    return CliRunner().invoke(app, [str(a) for a in args])


def test_grade_usage_errors_exit_2(tmp_path: Path) -> None:
    answer = tmp_path / "answer.py"
    answer.write_text("kl = 0\n")
    unknown = invoke("grade", "kl-divergenc", answer)
    assert unknown.exit_code == 2 and "unknown question 'kl-divergenc'" in unknown.stderr
    assert "did you mean 'kl-divergence'" in unknown.stderr
    missing = invoke("grade", "kl-divergence", tmp_path / "nope.py", "--json")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr and missing.stdout == ""
    bad_bank = invoke("grade", "kl-divergence", answer, "--bank", tmp_path / "no-bank")
    assert bad_bank.exit_code == 2 and "does not exist" in bad_bank.stderr
    for result in (unknown, missing, bad_bank):
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_grade_cuda_without_a_device_is_a_usage_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    answer = tmp_path / "answer.py"
    answer.write_text("kl = 0\n")
    done = invoke("grade", "kl-divergence", answer, "--device", "cuda")
    assert done.exit_code == 2 and "no CUDA device" in done.stderr


def test_grade_non_utf8_answer_is_not_passed(tmp_path: Path) -> None:
    answer = tmp_path / "latin1.py"
    answer.write_bytes(b"kl = 'caf\xe9'\n")
    done = invoke("grade", "kl-divergence", answer, "--json")
    assert done.exit_code == 1
    result = _json(done.stdout)
    assert result["passed"] is False and "not UTF-8" in result["error"]


def test_grade_huge_answer_is_refused_with_a_reason(tmp_path: Path) -> None:
    answer = tmp_path / "huge.py"
    answer.write_text("kl = 0\n" + "# padding\n" * 40_000)
    done = invoke("grade", "kl-divergence", answer, "--json")
    assert done.exit_code == 1
    assert "limit" in _json(done.stdout)["error"]


@pytest.mark.cuda
def test_grade_on_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    done = run_vaequiz("grade", "kl-divergence", CORPUS / "kl-divergence" / "pass_closed_form.py", "--json", "--device", "cuda")
    assert done.returncode == 0, done.stderr
    assert _json(done.stdout)["passed"] is True
