"""Per-student variants: question order and option order derived from (quiz, seed, student).

The derivation uses SHA-256, never Python's salted ``hash()`` or a library RNG whose algorithm
may change, so an instructor can rebuild any student's page years later and get the same one.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from typing import Sequence, TypeVar

from vaequiz.bank.models import AnyQuestion, MultipleChoice

T = TypeVar("T")
LABELS = string.ascii_uppercase


class StableRandom:
    """A deterministic generator: SHA-256 of (key, counter) blocks; same key, same draws."""

    def __init__(self, *key_parts: object) -> None:
        self._key = "\x1f".join(str(p) for p in key_parts).encode("utf-8")
        self._counter = 0

    def _next_u64(self) -> int:
        digest = hashlib.sha256(self._key + b"\x1e" + str(self._counter).encode()).digest()
        self._counter += 1
        return int.from_bytes(digest[:8], "big")

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), by rejection so no value is favoured."""
        if n <= 0:
            raise ValueError("n must be positive")
        limit = (1 << 64) - ((1 << 64) % n)
        while True:
            value = self._next_u64()
            if value < limit:
                return value % n

    def shuffled(self, items: Sequence[T]) -> list[T]:
        """A Fisher-Yates shuffled copy."""
        result = list(items)
        for i in range(len(result) - 1, 0, -1):
            j = self.below(i + 1)
            result[i], result[j] = result[j], result[i]
        return result

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        """``k`` distinct items, kept in their original order."""
        chosen = sorted(self.shuffled(range(len(items)))[:k])
        return [items[i] for i in chosen]


def variant_id(quiz_id: str, seed: int, student: str) -> str:
    """A short, stable name for a variant; printed on the page and saved in the sheet."""
    digest = hashlib.sha256(f"{quiz_id}\x1f{seed}\x1f{student}".encode("utf-8")).hexdigest()
    return f"v{digest[:10]}"


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

    def labels(self) -> dict[str, dict[str, str]]:
        """Shown label -> bank label for every MCQ, exactly as AnswerSheet.labels wants it."""
        return {
            question_id: {LABELS[i]: bank for i, bank in enumerate(order)}
            for question_id, order in self.option_order.items()
        }

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
    option_order: dict[str, tuple[str, ...]] = {}
    for question in questions:
        if not isinstance(question, MultipleChoice):
            continue
        bank_labels = [o.label for o in question.options]
        if shuffle_options and question.shuffle:
            option_rng = StableRandom("options", quiz_id, seed, student, question.id)
            option_order[question.id] = tuple(option_rng.shuffled(bank_labels))
        else:
            option_order[question.id] = tuple(bank_labels)
    return Variant(
        quiz_id=quiz_id,
        seed=seed,
        student=student,
        id=variant_id(quiz_id, seed, student),
        question_order=order,
        option_order=option_order,
    )
