"""Graders for answers that need no sandbox: multiple choice, shapes, numbers (short answers:
:mod:`vaequiz.grading.short_answer`).

Each returns a :class:`Graded` (score in 0..1 and the checks behind it), computed in process.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from vaequiz.bank.models import MultipleChoice, NumericAnswer, ShapeAnswer
from vaequiz.grading.models import CheckResult

@dataclass
class Graded:
    """One graded answer: the share of points earned and the checks that explain it."""

    score: float
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    passed: bool | None = None
    """Defaults to "full score and no error"; short answers pass at their ``pass_fraction``."""
    output: str = ""
    """What a code answer printed (stdout and stderr, cut at the output limit)."""
    retry: bool = False
    """The grader itself failed (not the student): do not record, grade again on the next run."""
    hints: list[str] = field(default_factory=list)
    """Code: what the way it failed suggests (e.g. a size written as a number)."""
    mistake: str | None = None
    """Code: the ``why`` of the known mistake (mutant) the answer behaves like."""
    errors: list[str] = field(default_factory=list)
    """Code: each different error the snippet or a probe raised, once."""
    needs_review: bool = False
    """The verdict is fragile (short answers): a teacher should confirm it."""
    review_reasons: list[str] = field(default_factory=list)
    in_process: str | None = None
    """Code: why the answer was measured in its own process ("measured in-process: ..."), or
    None when every measurement came from its program, out of that process."""

    def __post_init__(self) -> None:
        if self.passed is None:
            self.passed = self.error is None and self.score >= 1.0 - 1e-9


def _single(name: str, passed: bool, message: str = "") -> list[CheckResult]:
    return [CheckResult(name=name, passed=passed, message="" if passed else message)]


# --------------------------------------------------------------------------- multiple choice


def parse_labels(answer: str | list[str]) -> list[str]:
    """``"B"``, ``"B, D"``, ``"B D"`` or ``["B", "D"]`` -> ``["B", "D"]`` (upper-cased, in order)."""
    parts = answer if isinstance(answer, list) else re.split(r"[\s,;]+", answer.strip())
    return [p.strip().upper() for p in parts if p and p.strip()]


def grade_mcq(question: MultipleChoice, answer: str | list[str]) -> Graded:
    """Single answer: exactly the key. Multi-select: all-or-nothing for ``passed``; the score is
    (correct ticks - wrong ticks) / number of keys, floored at 0, so ticking every option
    earns nothing."""
    labels = [o.label for o in question.options]
    picked = parse_labels(answer)
    unknown = [p for p in picked if p not in labels]
    if unknown:
        return Graded(
            0.0,
            _single("answer", False, f"{', '.join(unknown)} is not an option; options are {', '.join(labels)}"),
        )
    if not picked:
        return Graded(0.0, _single("answer", False, "no option chosen"))
    feedback = {o.label: o.feedback for o in question.options}
    key = set(question.answer)
    if not question.multiple:
        if len(set(picked)) > 1:
            return Graded(0.0, _single("answer", False, "pick exactly one option"))
        choice = picked[0]
        right = choice in key
        note = feedback.get(choice) or ("" if right else f"{choice} is not the correct option")
        return Graded(1.0 if right else 0.0, _single("answer", right, note.strip()))
    chosen = set(picked)
    hits, false_picks = chosen & key, chosen - key
    missed = key - chosen
    score = max(0.0, (len(hits) - len(false_picks)) / len(key))
    messages = [f"{label} is not correct" + (f": {feedback[label].strip()}" if feedback[label] else "") for label in sorted(false_picks)]
    if missed:
        messages.append(f"{len(missed)} correct option(s) not ticked")
    return Graded(score, _single("answer", not false_picks and not missed, "; ".join(messages)))


# --------------------------------------------------------------------------- shape


_SHAPE_WRAPPERS = [
    re.compile(r"^torch\.size\s*\(\s*(.*)\s*\)$"),
    re.compile(r"^size\s*\(\s*(.*)\s*\)$"),
    re.compile(r"^\((.*)\)$"),
    re.compile(r"^\[(.*)\]$"),
]


def parse_shape(text: str) -> list[int] | None:
    """``(64, 20)``, ``[64, 20]``, ``torch.Size([64, 20])``, ``64x20``, ``64 × 20``, ``64, 20``,
    ``(784,)``, ``()``, ``scalar`` -> a list of sizes; None when the text is not a shape.

    templates/quiz.js mirrors these rules for practice checks; keep the two in step (a browser
    test compares them)."""
    body = text.strip().lower()
    if not body:
        return None
    changed = True
    while changed:
        changed = False
        for wrapper in _SHAPE_WRAPPERS:
            match = wrapper.match(body)
            if match:
                body, changed = match.group(1).strip(), True
                break
    if body in ("", "scalar"):  # "()", "[]", "torch.Size([])" or the word: a scalar
        return []
    parts = re.split(r"\s*(?:,|x|×|\*)\s*", body)
    if parts and parts[-1] == "" and "," in body:
        parts = parts[:-1]
    if not parts or not all(re.fullmatch(r"\d{1,12}", p) for p in parts):
        return None
    return [int(p) for p in parts]


def format_dims(dims: list[int]) -> str:
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def grade_shape(question: ShapeAnswer, answer: str) -> Graded:
    """Exact match of the parsed shape; unreadable text fails with the accepted forms."""
    dims = parse_shape(answer)
    if dims is None:
        return Graded(
            0.0,
            _single(
                "shape",
                False,
                f"could not read {answer.strip()[:60]!r} as a shape; write it like (64, 20), "
                "torch.Size([64, 20]) or 64x20",
            ),
        )
    right = dims == list(question.answer)
    return Graded(1.0 if right else 0.0, _single("shape", right, f"{format_dims(dims)} is not the right shape"))


# --------------------------------------------------------------------------- numeric


def parse_number(text: str) -> float | None:
    """A plain decimal or scientific number (``0.5``, ``-1e-3``, ``1/2``); None otherwise.

    Mirrored by templates/quiz.js for practice checks (compared by a browser test)."""
    body = text.strip().replace("−", "-")
    fraction = re.fullmatch(r"([-+]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)", body)
    if fraction:
        denominator = float(fraction.group(2))
        return float(fraction.group(1)) / denominator if denominator else None
    try:
        value = float(body)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def grade_numeric(question: NumericAnswer, answer: str) -> Graded:
    """Accepted within ``tolerance`` (absolute) or ``relative_tolerance`` of the key."""
    value = parse_number(answer)
    if value is None:
        return Graded(0.0, _single("value", False, f"could not read {answer.strip()[:60]!r} as a number"))
    right = math.isclose(
        value,
        question.answer,
        rel_tol=max(question.relative_tolerance, 1e-9),
        abs_tol=question.tolerance,
    )
    return Graded(1.0 if right else 0.0, _single("value", right, f"{value:g} is not the expected value"))
