"""Per-student variants: question order and option order derived from (quiz, seed, student).

The draws themselves live in :mod:`vaequiz.variants` (SHA-256 based, stable for years), which
grading also uses to re-derive a sheet's letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from vaequiz.bank.models import AnyQuestion, MultipleChoice
from vaequiz.bank.parametric import draw_for, is_parametric
from vaequiz.expressions import Value
from vaequiz.variants import LABELS, StableRandom, option_order, shown_to_bank, variant_id

__all__ = ["LABELS", "StableRandom", "Variant", "derive_variant", "variant_id"]


@dataclass(frozen=True)
class Variant:
    """What differs between two students' pages of the same quiz build."""

    quiz_id: str
    seed: int
    student: str
    id: str
    question_order: tuple[str, ...]
    option_order: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per MCQ: bank labels in the order shown (position i is shown as LABELS[i])."""
    params: dict[str, dict[str, Value]] = field(default_factory=dict)
    """Per parametric question: the numbers this student's page shows."""

    def labels(self) -> dict[str, dict[str, str]]:
        """Shown label -> bank label for every MCQ, exactly as AnswerSheet.labels wants it."""
        return {question_id: shown_to_bank(order) for question_id, order in self.option_order.items()}

    def shown_label(self, question_id: str, bank_label: str) -> str:
        return LABELS[self.option_order[question_id].index(bank_label)]


def derive_variant(
    quiz_id: str,
    seed: int,
    student: str,
    questions: Sequence[AnyQuestion],
    *,
    shuffle_questions: bool,
    shuffle_options: bool,
) -> Variant:
    """The variant of ``questions`` for one student (``""`` for an anonymous page)."""
    rng = StableRandom("variant", quiz_id, seed, student)
    ids = [q.id for q in questions]
    order = tuple(rng.shuffled(ids)) if shuffle_questions else tuple(ids)
    option_orders: dict[str, tuple[str, ...]] = {}
    for question in questions:
        if not isinstance(question, MultipleChoice):
            continue
        option_orders[question.id] = option_order(
            quiz_id,
            seed,
            student,
            question.id,
            [o.label for o in question.options],
            shuffle_options and question.shuffle,
        )
    params = {q.id: draw_for(q, quiz_id, seed, student) for q in questions if is_parametric(q)}
    return Variant(
        quiz_id=quiz_id,
        seed=seed,
        student=student,
        id=variant_id(quiz_id, seed, student),
        question_order=order,
        option_order=option_orders,
        params=params,
    )
