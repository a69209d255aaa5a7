"""Objective graders: MCQ label sets, short answers by concept rubric, shapes and numbers."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vaequiz.bank.models import MultipleChoice, NumericAnswer, ShapeAnswer, ShortAnswer, question_adapter
from vaequiz.cli.app import app
from vaequiz.grading.objective import (
    grade_mcq,
    grade_numeric,
    grade_shape,
    parse_shape,
)
from vaequiz.bank.answer_text import stem
from vaequiz.grading.short_answer import grade_short_answer

COMMON = {"topics": ["vae"], "difficulty": "beginner", "source": "original", "explanation": "Because."}


def mcq(**fields: object) -> MultipleChoice:
    data = {
        "id": "q",
        "kind": "mcq",
        "stem": "Which?",
        "options": [
            {"label": "A", "text": "right"},
            {"label": "B", "text": "wrong", "feedback": "B confuses the terms."},
            {"label": "C", "text": "also right"},
            {"label": "D", "text": "nope"},
        ],
        "answer": "A",
        **COMMON,
        **fields,
    }
    question = question_adapter.validate_python(data)
    assert isinstance(question, MultipleChoice)
    return question


def test_single_answer_mcq_is_exact() -> None:
    question = mcq()
    assert grade_mcq(question, "A").passed and grade_mcq(question, "a").score == 1.0
    wrong = grade_mcq(question, "B")
    assert not wrong.passed and wrong.score == 0 and "B confuses the terms" in wrong.checks[0].message
    both = grade_mcq(question, ["A", "B"])
    assert not both.passed and "exactly one" in both.checks[0].message
    unknown = grade_mcq(question, "F")
    assert not unknown.passed and "F is not an option; options are A, B, C, D" in unknown.checks[0].message


def test_multi_select_is_all_or_nothing_with_right_minus_wrong_partial_credit() -> None:
    question = mcq(multiple=True, answer=["A", "C"])
    assert grade_mcq(question, ["C", "A"]).passed
    assert grade_mcq(question, "A, C").passed
    half = grade_mcq(question, ["A"])
    assert not half.passed and half.score == 0.5 and "1 correct option(s) not ticked" in half.checks[0].message
    everything = grade_mcq(question, ["A", "B", "C", "D"])
    assert not everything.passed and everything.score == 0.0
    one_each = grade_mcq(question, ["A", "B"])
    assert one_each.score == 0.0 and "B is not correct: B confuses the terms." in one_each.checks[0].message


def short_answer() -> ShortAnswer:
    question = question_adapter.validate_python(
        {
            "id": "why-reparam",
            "kind": "short_answer",
            "prompt": "Why?",
            "model_answer": "Sampling is not differentiable, so the noise moves into epsilon.",
            "rubric": [
                {"name": "sampling is not differentiable", "phrasings": ["not differentiable", "non-differentiable"]},
                {"name": "noise in epsilon", "phrasings": ["epsilon", "auxiliary noise"], "patterns": [r"\beps\b"]},
                {"name": "gradient reaches the encoder", "phrasings": ["gradients flow", "backpropagation"]},
                {"name": "log-variance", "phrasings": ["log variance"]},
            ],
            "pass_fraction": 0.5,
            **COMMON,
        }
    )
    assert isinstance(question, ShortAnswer)
    return question


def test_short_answer_reports_found_and_missing_concepts() -> None:
    question = short_answer()
    graded = grade_short_answer(question, "Because SAMPLING is Non-Differentiable we move the Auxiliary-Noises into eps.")
    found = {c.name: c.passed for c in graded.checks}
    assert found == {
        "sampling is not differentiable": True,
        "noise in epsilon": True,
        "gradient reaches the encoder": False,
        "log-variance": False,
    }
    assert graded.score == 0.5 and graded.passed
    assert [c.message for c in graded.checks if not c.passed] == ["not found in your answer"] * 2
    weak = grade_short_answer(question, "The gradient flows, thanks to the log-variances.")
    assert weak.score == 0.5 and {c.name for c in weak.checks if c.passed} == {
        "gradient reaches the encoder",
        "log-variance",
    }
    assert not grade_short_answer(question, "It makes training faster.").passed


def test_short_answer_matches_whole_words_only() -> None:
    question = short_answer()
    graded = grade_short_answer(question, "epsilonic backpropagationism")
    assert graded.score == 0.0
    assert [stem(w) for w in ("Log", "Variances", "regularises", "regularizing")] == ["log", "varianc", "regulariz", "regulariz"]


def shape_question(dims: list[int]) -> ShapeAnswer:
    question = question_adapter.validate_python(
        {"id": "shape-q", "kind": "shape", "prompt": "Shape?", "answer": dims, **COMMON}
    )
    assert isinstance(question, ShapeAnswer)
    return question


def test_shape_accepts_every_documented_spelling() -> None:
    question = shape_question([64, 20])
    for text in ["(64, 20)", "[64, 20]", "torch.Size([64, 20])", "64x20", "64 × 20", "64, 20", " (64,20) ", "64 X 20"]:
        assert grade_shape(question, text).passed, text
    wrong = grade_shape(question, "(20, 64)")
    assert not wrong.passed and "(20, 64) is not the right shape" in wrong.checks[0].message
    for text in ["sixty-four by twenty", "(64, 20", "64.5x20", "(-64, 20)", ""]:
        graded = grade_shape(question, text)
        assert not graded.passed and "write it like (64, 20)" in graded.checks[0].message, text
    assert grade_shape(shape_question([]), "torch.Size([])").passed
    assert grade_shape(shape_question([784]), "(784,)").passed


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(st.integers(0, 100_000), min_size=1, max_size=5),
    style=st.sampled_from(["tuple", "list", "size", "x", "times", "bare"]),
)
def test_shape_round_trips_in_any_style(dims: list[int], style: str) -> None:
    joined = ", ".join(map(str, dims))
    text = {
        "tuple": f"({joined}{',' if len(dims) == 1 else ''})",
        "list": f"[{joined}]",
        "size": f"torch.Size([{joined}])",
        "x": "x".join(map(str, dims)),
        "times": " × ".join(map(str, dims)),
        "bare": joined,
    }[style]
    assert parse_shape(text) == dims


def test_numeric_tolerances() -> None:
    question = question_adapter.validate_python(
        {"id": "num", "kind": "numeric", "prompt": "Value?", "answer": 0.5, "tolerance": 0.01, **COMMON}
    )
    assert isinstance(question, NumericAnswer)
    for text in ["0.5", "0.505", " 5e-1 ", "1/2"]:
        assert grade_numeric(question, text).passed, text
    assert not grade_numeric(question, "0.52").passed
    unreadable = grade_numeric(question, "half")
    assert not unreadable.passed and "could not read 'half' as a number" in unreadable.checks[0].message
    relative = question.model_copy(update={"tolerance": 0.0, "relative_tolerance": 0.1})
    assert grade_numeric(relative, "0.54").passed and not grade_numeric(relative, "0.56").passed


def test_grade_command_grades_objective_kinds_without_a_sandbox(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    bank.joinpath("q.yaml").write_text(
        json.dumps(
            [
                {"id": "pick", "kind": "mcq", "stem": "Which?", "options": [{"label": "A", "text": "yes"}, {"label": "B", "text": "no"}], "answer": "A", **COMMON},
                {"id": "shape-q", "kind": "shape", "prompt": "Shape?", "answer": [64, 20], **COMMON},
            ]
        )
    )
    answer = tmp_path / "answer.txt"
    runner = CliRunner()
    answer.write_text("A\n")
    right = runner.invoke(app, ["grade", "pick", str(answer), "--bank", str(bank), "--json"])
    assert right.exit_code == 0 and json.loads(right.stdout)["passed"] is True
    answer.write_text("torch.Size([64, 21])")
    wrong = runner.invoke(app, ["grade", "shape-q", str(answer), "--bank", str(bank)])
    assert wrong.exit_code == 1 and "(64, 21) is not the right shape" in wrong.stdout
