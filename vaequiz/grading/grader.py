"""The one entry point that grades any answer to any question kind, for every command.

It prepares each code question once (hidden inputs and reference outputs are the same for every
student) and dispatches by kind: objective kinds in process, code through the sandbox.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    Flashcard,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.grading.code import SandboxRunner, grade_source
from vaequiz.grading.inputs import PreparedQuestion, prepare_question
from vaequiz.grading.mistakes import KnownMistakes
from vaequiz.grading.models import Answer, CheckResult, ItemResult
from vaequiz.grading.objective import Graded, grade_mcq, grade_numeric, grade_shape
from vaequiz.grading.semantic import flagger_if_requested
from vaequiz.grading.short_answer import grade_short_answer

NO_ANSWER = "no answer"


@dataclass(frozen=True)
class ShownAs:
    """How one student's page showed a question: its number, MCQ letters and the page mode."""

    number: int | None = None
    labels: dict[str, str] | None = None
    mode: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"number": self.number, "labels": self.labels, "mode": self.mode}

    @classmethod
    def of(cls, item: ItemResult) -> "ShownAs":
        """How an earlier result's page showed it (to keep when regrading from results alone)."""
        return cls(number=item.number, labels=item.labels, mode=item.mode)


def refused(reason: str) -> Graded:
    """An answer that cannot be run at all (not UTF-8, too large): not passed, with the reason."""
    return Graded(0.0, [CheckResult(name="answer", passed=False, message=reason)], error=reason)


class Grader:
    """Grades (question, answer) pairs; thread-safe, so a pool can share one instance."""

    def __init__(self, sandbox: SandboxRunner | None, device: str = "cpu") -> None:
        self.sandbox = sandbox
        self.device = device
        self.mistakes = KnownMistakes(sandbox, device) if sandbox is not None else None
        """Each question's mutants, run once per grader when an answer to it first fails."""
        self._prepared: dict[str, tuple[CodeQuestion, PreparedQuestion]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def prepared(self, question: CodeQuestion) -> PreparedQuestion:
        """Hidden inputs and reference outputs for ``question``, computed once (again if a
        question with the same id but other content comes along)."""
        with self._lock:
            lock = self._locks.setdefault(question.id, threading.Lock())
        with lock:
            cached = self._prepared.get(question.id)
            if cached is None or not (cached[0] is question or cached[0] == question):
                cached = (question, prepare_question(question, self.device))
                self._prepared[question.id] = cached
            return cached[1]

    def grade(self, question: AnyQuestion, answer: Answer | None, diagnose: bool = True) -> Graded:
        """Score one answer; None or blank text is "no answer". A failing code answer is compared
        with the question's known mistakes unless ``diagnose`` is False (verify grades the
        mutants themselves)."""
        if answer is None or (isinstance(answer, str) and not answer.strip()) or answer == []:
            return refused(NO_ANSWER)
        if getattr(question, "params", None):
            return refused(
                f"{question.id} is parametric: its key depends on a student's numbers; grade it from a sheet "
                "(grade-sheets), which records them"
            )
        if isinstance(question, MultipleChoice):
            return grade_mcq(question, answer)
        text = answer if isinstance(answer, str) else ", ".join(answer)
        if isinstance(question, ShortAnswer):
            graded = grade_short_answer(question, text)
            semantic = flagger_if_requested()  # optional second opinion: review flags, never points
            return semantic.review(question, text, graded) if semantic is not None else graded
        if isinstance(question, ShapeAnswer):
            return grade_shape(question, text)
        if isinstance(question, NumericAnswer):
            return grade_numeric(question, text)
        if isinstance(question, CodeQuestion):
            if self.sandbox is None:
                raise RuntimeError("grading code needs a sandbox")
            return grade_source(
                self.prepared(question), text, self.sandbox, self.device, self.mistakes if diagnose else None
            )
        if isinstance(question, Flashcard):
            return Graded(0.0, [CheckResult(name="answer", passed=False, message="flashcards are not graded")])
        raise TypeError(f"cannot grade a {type(question).__name__}")

    def item(self, student: str, question: AnyQuestion, answer: Answer | None) -> ItemResult:
        """One results.jsonl line for (student, question)."""
        return item_result(student, question, answer, self.grade(question, answer))


def item_result(
    student: str,
    question: AnyQuestion,
    answer: Answer | None,
    graded: Graded,
    quiz: str | None = None,
    shown: ShownAs | None = None,
) -> ItemResult:
    """The gradebook line for a graded answer: score clamped to 0..1, points = score x points
    (both rounded to 9 decimals, so 1/3 of 3 points is 1, not 0.999999). ``shown`` says how the
    student's page showed the question, so feedback can speak in the student's terms."""
    raw = min(1.0, max(0.0, graded.score))
    return ItemResult(
        student=student,
        question=question.id,
        kind=question.kind,
        passed=bool(graded.passed),
        score=round(raw, 9),
        points=round(raw * question.points, 9),
        max_points=question.points,
        checks=graded.checks,
        answer=answer,
        error=graded.error,
        quiz=quiz,
        hints=graded.hints,
        mistake=graded.mistake,
        errors=graded.errors,
        needs_review=graded.needs_review,
        review_reasons=graded.review_reasons,
        in_process=graded.in_process,
        **(shown.fields() if shown else {}),
    )
