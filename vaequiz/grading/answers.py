"""Read one answer from a sheet against its question: whatever JSON value a student's file holds
becomes either something the graders can score, "unanswered", or a reason the student can act on.

One mechanism for every kind, so no value can end a run: ``null`` and blank text are unanswered;
numbers, booleans, lists and objects where text is expected are read as their text (``314000``,
``[64, 20]``); MCQ letters are read in the letters the student saw, then mapped to the bank's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from vaequiz.bank.models import AnyQuestion, MultipleChoice
from vaequiz.grading.models import RecordedAnswer

MAX_ANSWER_BYTES = 256 * 1024
"""Longest answer read, in UTF-8 bytes: the limit on code sources, applied to every kind."""

QUOTE_CHARS = 60
"""How much of an unreadable answer a message quotes."""


@dataclass(frozen=True)
class Reading:
    """One answer as read: ``answer`` is graded and recorded; ``problem`` (if any) is why it
    cannot be graded, and the item scores 0 with that message."""

    answer: Optional[RecordedAnswer]
    problem: Optional[str] = None
    params: Optional[dict[str, object]] = None
    """A parametric question's numbers for this student (cross-checked against the sheet)."""

    @property
    def unanswered(self) -> bool:
        return self.answer is None or self.answer == [] or (isinstance(self.answer, str) and not self.answer.strip())


def quote(text: str) -> str:
    """``text`` for a message: at most QUOTE_CHARS characters, quoted."""
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "...")


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (JSON allows ``"\\ud800"``; UTF-8 cannot hold it) replaced by
    U+FFFD, so every page and file written from it can be encoded."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_text(value: object) -> str:
    """Any JSON value as text: strings as they are, lists of strings joined by ", ", other values
    as their JSON text (``314000``, ``[64, 20]``, ``true``)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ", ".join(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (RecursionError, ValueError):  # nested about as deep as the JSON reader allows
            text = "(a value nested too deeply to read)"
    return valid_text(text)


def read_answer(
    value: object, question: AnyQuestion, shown_to_bank: Optional[Mapping[str, str]] = None
) -> Reading:
    """Read ``value`` (a JSON value) as an answer to ``question``.

    ``shown_to_bank`` maps the letters the student saw to the bank's; without it they are the
    bank's own. Never raises for any JSON value.
    """
    if value is None:
        return Reading(None)
    text = as_text(value)
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_ANSWER_BYTES:
        return Reading(
            text,
            f"your answer is {size:,} bytes long; answers are limited to {MAX_ANSWER_BYTES // 1024} KB",
        )
    if not isinstance(question, MultipleChoice):
        return Reading(text)
    return read_choice(value, text, question, shown_to_bank)


def read_choice(
    value: object, text: str, question: MultipleChoice, shown_to_bank: Optional[Mapping[str, str]]
) -> Reading:
    """Letters (``"B"``, ``"b, d"``, ``"B D"``, ``["B", "D"]``) in the student's letters, mapped to
    bank labels. Run-together letters (``"AC"``) are refused with the spelling to use rather
    than guessed at, so a typo never silently becomes a different choice."""
    mapping = dict(shown_to_bank) if shown_to_bank else {o.label: o.label for o in question.options}
    shown = sorted(mapping)
    if isinstance(value, list):
        tokens = [valid_text(v).strip().upper() for v in value if isinstance(v, str) and v.strip()]
        readable = all(isinstance(v, str) for v in value)
    elif isinstance(value, str):
        tokens = [t.upper() for t in re.split(r"[\s,;]+", text.strip()) if t]
        readable = True
    else:
        tokens, readable = [], False
    how = "letters separated by commas, like 'A, C'" if question.multiple else f"one letter of {', '.join(shown)}"
    what = "options" if question.multiple else "an option"
    if not readable:
        return Reading(text, f"could not read {quote(text.strip())} as {what}; write {how}")
    if not tokens:
        return Reading(None)
    for token in tokens:
        if token in mapping:
            continue
        if len(token) > 1 and all(c in mapping for c in token):
            if question.multiple:
                spelled = ", ".join(token)
                return Reading(text, f"could not read {quote(token)} as options; write {quote(spelled)}")
            return Reading(text, f"could not read {quote(token)} as one option; choose {how}")
        if len(token) == 1 and token.isalpha():
            return Reading(text, f"{token} is not an option; options are {', '.join(shown)}")
        return Reading(text, f"could not read {quote(text.strip())} as {what}; write {how}")
    labels = [mapping[t] for t in tokens]
    return Reading(labels if question.multiple or len(labels) != 1 else labels[0])
