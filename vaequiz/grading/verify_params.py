"""`vaequiz verify` for parametric questions: every draw must make a sound question.

Many draws (default 500, as many students) are made per question; each must satisfy its
``where:``, bind (every answer and placeholder evaluates, numeric answers are finite, an MCQ has
exactly one right option, or at least two when multi-select), and its own key must grade as
right. Too few distinct draws means students share numbers, which is worth a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vaequiz.bank.models import AnyQuestion, MultipleChoice, NumericAnswer, ShapeAnswer
from vaequiz.bank.parametric import bind, space_of
from vaequiz.grading.objective import format_dims, grade_mcq, grade_numeric, grade_shape
from vaequiz.params import ParamError, describe

DEFAULT_DRAWS = 500
MIN_DISTINCT = 10
MAX_MESSAGES = 3
"""Problems listed per question (the rest are counted)."""


@dataclass
class DrawCheck:
    """What the draws of one question showed."""

    question: str
    draws: int
    distinct: int = 0
    problems: list[str] = field(default_factory=list)
    failed: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def warning(self) -> str | None:
        if self.distinct < MIN_DISTINCT:
            return f"only {self.distinct} distinct draw(s) in {self.draws}; students will share numbers"
        return None

    def detail(self) -> str:
        if self.ok:
            text = f"{self.distinct} distinct draws; every key grades right"
        else:
            more = self.failed - len(self.problems)
            text = "; ".join(self.problems) + (f"; and {more} more draw(s)" if more > 0 else "")
        return text + (f"; warning: {self.warning}" if self.warning else "")


def check_draws(question: AnyQuestion, draws: int = DEFAULT_DRAWS) -> DrawCheck:
    """Draw ``question`` as ``draws`` students would get it and check every draw."""
    report = DrawCheck(question.id, draws)
    space = space_of(question)
    seen: set[tuple[tuple[str, object], ...]] = set()
    for i in range(draws):
        try:
            values = space.draw("verify", 0, f"student-{i}", question.id)
        except ParamError as err:
            report.failed += draws - i
            report.problems.append(str(err))
            break
        seen.add(tuple(sorted(values.items())))
        why = _problem(question, values, space)
        if why:
            report.failed += 1
            if len(report.problems) < MAX_MESSAGES:
                report.problems.append(why)
    report.distinct = len(seen)
    return report


def _problem(question: AnyQuestion, values: dict, space) -> str | None:  # type: ignore[no-untyped-def, type-arg]
    numbers = describe(values)
    if not all(space.holds(values)):
        return f"for {numbers}: 'where' does not hold"
    try:
        bound = bind(question, values)
    except ParamError as err:
        return str(err)
    if isinstance(bound, NumericAnswer):
        if not math.isfinite(float(bound.answer)):
            return f"for {numbers}: the answer is not finite"
        graded = grade_numeric(bound, repr(float(bound.answer)))
    elif isinstance(bound, ShapeAnswer):
        graded = grade_shape(bound, format_dims([int(d) for d in bound.answer]))
    elif isinstance(bound, MultipleChoice):
        graded = grade_mcq(bound, list(bound.answer))
    else:
        return None
    if not graded.passed:
        failed = "; ".join(c.message for c in graded.checks if not c.passed)
        return f"for {numbers}: the key does not grade as right: {failed}"
    return None
