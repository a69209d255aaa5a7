"""The pure derivation behind per-student variants: stable draws from (quiz, seed, student).

It sits below both render (which builds a variant's page) and grading (which must map a
sheet's letters back to the bank's, even for a sheet that lost its ``labels``), so neither
imports the other. The derivation uses SHA-256, never Python's salted ``hash()`` or a library
RNG whose algorithm may change, so any student's variant can be rebuilt years later.
"""

from __future__ import annotations

import hashlib
import string
from typing import Sequence, TypeVar

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


def option_order(
    quiz_id: str, seed: int, student: str, question_id: str, bank_labels: Sequence[str], shuffled: bool
) -> tuple[str, ...]:
    """Bank labels in the order one student's page shows them (position i is shown as
    ``LABELS[i]``); ``shuffled`` is whether the quiz and the question allow shuffling."""
    if not shuffled:
        return tuple(bank_labels)
    return tuple(StableRandom("options", quiz_id, seed, student, question_id).shuffled(bank_labels))


def shown_to_bank(order: Sequence[str]) -> dict[str, str]:
    """Shown label -> bank label for one question, as a sheet's ``labels`` records it."""
    return {LABELS[i]: bank for i, bank in enumerate(order)}
