"""`vaequiz lint`: one small bank per rule, written as real YAML, through the real CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from vaequiz.bank.lint import lint_bank
from vaequiz.cli.app import app

runner = CliRunner()
FINDING = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning): .+ \(.+\)$")


def mcq(qid: str, answer: str = "B", **changes: Any) -> dict[str, Any]:
    """A clean single-answer MCQ: similar options, feedback on each, a hint."""
    question = {
        "id": qid, "kind": "mcq", "topics": ["kl"], "difficulty": "beginner", "source": "original",
        "stem": f"Question {qid}: which loss term keeps the posterior close to the prior here?",
        "options": [
            {"label": "A", "text": "The reconstruction term", "feedback": "It rebuilds x."},
            {"label": "B", "text": "The divergence term", "feedback": "Yes."},
            {"label": "C", "text": "The weight decay term", "feedback": "A regulariser."},
            {"label": "D", "text": "The perceptual term", "feedback": "Not in a VAE."},
        ],
        "answer": answer, "hint": "Compare two distributions.", "explanation": "KL compares them.",
    }
    question.update(changes)
    return question


def write_bank(folder: Path, questions: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.yaml").write_text(yaml.safe_dump(questions, sort_keys=False, width=200))
    return folder


def lint(folder: Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["lint", str(folder)])
    lines = [l for l in result.stdout.splitlines() if l]
    for line in lines:
        assert FINDING.match(line), line
    return result.exit_code, lines


def line_of(folder: Path, needle: str) -> int:
    text = (folder / "bank.yaml").read_text().splitlines()
    return next(i for i, l in enumerate(text, 1) if needle in l)


def test_clean_bank_has_no_findings(tmp_path: Path) -> None:
    code, lines = lint(write_bank(tmp_path, [mcq("clean-one")]))
    assert (code, lines) == (0, [])


def test_longest_key_is_a_cue(tmp_path: Path) -> None:
    question = mcq("long-key")
    question["options"][1]["text"] = "The KL divergence between the posterior and the prior"
    folder = write_bank(tmp_path, [question])
    code, lines = lint(folder)
    assert code == 0
    assert len(lines) == 1 and "key B is the longest option" in lines[0]
    assert lines[0].startswith(f"{folder / 'bank.yaml'}:{line_of(folder, 'label: B')}:")


def test_key_alone_in_its_form_is_a_cue(tmp_path: Path) -> None:
    question = mcq("form-key")
    question["options"][1]["text"] = "$D_{KL}$ term"
    code, lines = lint(write_bank(tmp_path, [question]))
    assert any("only option written as math" in l for l in lines), lines


def test_keys_bunched_on_one_letter(tmp_path: Path) -> None:
    topics = ["encoder", "decoder", "prior", "posterior", "codebook", "beta", "latent", "loss",
              "sampling", "gradient"]
    bunched = [mcq(f"q{i}", "A", stem=f"What does the {t} do in a VAE?") for i, t in enumerate(topics)]
    code, lines = lint(write_bank(tmp_path / "bunched", bunched))
    assert code == 0
    found = [l for l in lines if "keys are bunched on A" in l]
    assert len(found) == 1 and "A 10 (expected 2.5)" in found[0]
    spread = [mcq(f"q{i}", "ABCD"[i % 4], stem=f"What does the {t} do in a VAE?")
              for i, t in enumerate(topics)]
    _, lines = lint(write_bank(tmp_path / "spread", spread))
    assert lines == []


def test_all_of_the_above(tmp_path: Path) -> None:
    question = mcq("above")
    question["options"][3]["text"] = "All of the above"
    folder = write_bank(tmp_path, [question])
    _, lines = lint(folder)
    found = [l for l in lines if "All of the above" in l]
    assert len(found) == 1 and f":{line_of(folder, 'All of the above')}:" in found[0]


def test_mcq_without_hint_or_distractor_feedback(tmp_path: Path) -> None:
    question = mcq("bare")
    del question["hint"]
    del question["options"][2]["feedback"]
    _, lines = lint(write_bank(tmp_path, [question]))
    assert len(lines) == 1
    assert "has no hint and no feedback on distractor C" in lines[0]


def test_near_duplicate_stems(tmp_path: Path) -> None:
    first = mcq("first", stem="Which term of the VAE loss keeps the posterior near the prior?")
    second = mcq("second", stem="Which term of the VAE loss keeps the posterior close to the prior?")
    other = mcq("other", stem="What shape does the decoder output for a batch of 28x28 images?")
    folder = write_bank(tmp_path, [first, second, other])
    _, lines = lint(folder)
    found = [l for l in lines if "reads like" in l]
    assert len(found) == 1 and "'second' reads like 'first'" in found[0]


def code_question(mutants: int) -> dict[str, Any]:
    return {
        "id": "double-it", "kind": "code", "topics": ["tensors"], "difficulty": "beginner",
        "source": "original", "prompt": "Bind `y`, twice `x`.", "explanation": "Multiply by 2.",
        "given": {"x": {"type": "tensor", "shape": ["B"]}}, "expect": ["y"],
        "reference": "y = 2 * x\n", "trials": [{"bind": {"B": 3}}],
        "checks": [{"check": "close", "of": "y"}],
        "mutants": [{"code": f"y = {i + 3} * x\n", "why": "Wrong factor."} for i in range(mutants)],
    }


def test_code_question_with_few_mutants(tmp_path: Path) -> None:
    _, lines = lint(write_bank(tmp_path / "few", [code_question(2)]))
    assert len(lines) == 1 and "has 2 mutant(s); at least 4" in lines[0]
    _, lines = lint(write_bank(tmp_path / "enough", [code_question(4)]))
    assert lines == []


def test_rubric_concept_with_single_phrasing(tmp_path: Path) -> None:
    question = {
        "id": "explain-kl", "kind": "short_answer", "topics": ["kl"], "difficulty": "beginner",
        "source": "original", "prompt": "Why the KL term?", "model_answer": "It regularises.",
        "explanation": "See lecture 3.",
        "rubric": [
            {"name": "regularisation", "phrasings": ["regularise", "regularize"]},
            {"name": "prior", "phrasings": ["prior"]},
        ],
    }
    folder = write_bank(tmp_path, [question])
    _, lines = lint(folder)
    lines = [line for line in lines if "marked example(s)" not in line]  # few-examples: tested elsewhere
    assert len(lines) == 1 and "'prior' has a single phrasing" in lines[0]
    assert f":{line_of(folder, 'name: prior')}:" in lines[0]


def test_math_that_does_not_render_is_an_error(tmp_path: Path) -> None:
    question = mcq("bad-math")
    question["options"][0]["feedback"] = r"It uses $\frac{1}$ of the data."
    folder = write_bank(tmp_path, [question])
    code, lines = lint(folder)
    assert code == 1
    errors = [l for l in lines if ": error: " in l]
    assert len(errors) == 1 and "options.0.feedback" in errors[0]
    assert f":{line_of(folder, 'frac')}:" in errors[0]


def test_schema_problems_are_errors_and_other_questions_still_linted(tmp_path: Path) -> None:
    broken = mcq("broken", answer="Z")
    bare = mcq("bare")
    del bare["hint"]
    code, lines = lint(write_bank(tmp_path, [broken, bare]))
    assert code == 1
    assert any(": error: " in l and "answer Z is not one of the options" in l for l in lines)
    assert any(": warning: " in l and "'bare' has no hint" in l for l in lines)


def test_bundled_bank_lints_without_errors() -> None:
    report = lint_bank(Path(__file__).resolve().parent.parent / "question_bank")
    assert report.errors == [], [str(e) for e in report.errors]


def test_real_cli_exit_codes(tmp_path: Path) -> None:
    question = mcq("above")
    question["options"][3]["text"] = "None of the above"
    folder = write_bank(tmp_path, [question])
    done = subprocess.run([sys.executable, "-m", "vaequiz", "lint", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "warning: option D says 'None of the above'" in done.stdout
    assert "0 error(s), 1 warning(s) in 1 question(s)" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "vaequiz", "lint", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
