"""What a server serves: the bank, and each quiz as an exam or a practice page, rendered by the
same PageBuilder as `vaequiz build` with each student's own variant."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from vaequiz.bank.models import AnyQuestion, Flashcard, MultipleChoice
from vaequiz.grading.answers import Reading, read_answer
from vaequiz.grading.fingerprint import question_fingerprint
from vaequiz.render.build import BuildError, load_quiz
from vaequiz.render.fragments import FragmentRenderer, Mode
from vaequiz.render.page import PageBuilder
from vaequiz.render.selection import Quiz
from vaequiz.render.variants import LABELS

SERVED_MODES = (Mode.exam, Mode.practice)
PAGE_CACHE = 512
VARIANT_CACHE = 4096


class CourseError(ValueError):
    """A course that cannot be served; the message says what to fix."""


@dataclass
class ServedQuiz:
    """One quiz in one mode. Exams never send key material before release; practice pages
    carry their checks, as built pages do, so a quiz is served in one mode only."""

    quiz: Quiz
    mode: Mode
    time_limit_min: Optional[float]
    builder: PageBuilder
    questions: dict[str, AnyQuestion]
    fingerprints: dict[str, str]
    _pages: dict[str, str] = field(default_factory=dict)
    _variants: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        return self.quiz.id

    @property
    def graded_ids(self) -> list[str]:
        """Questions a submission grades, in quiz order (flashcards are never graded)."""
        return [q for q, question in self.questions.items() if not isinstance(question, Flashcard)]

    def page(self, student: str) -> str:
        """The student's page (their variant), rendered once per student."""
        with self._lock:
            cached = self._pages.get(student)
        if cached is None:
            cached = self.builder.render(student)
            with self._lock:
                if len(self._pages) >= PAGE_CACHE:
                    self._pages.pop(next(iter(self._pages)))
                self._pages[student] = cached
        return cached

    def variant(self, student: str) -> Any:
        """The student's variant (letters and numbers), derived once per student: grading an
        answer needs it, and deriving it costs more than grading a multiple choice."""
        with self._lock:
            cached = self._variants.get(student)
        if cached is None:
            cached = self.builder.variant(student)
            with self._lock:
                if len(self._variants) >= VARIANT_CACHE:
                    self._variants.pop(next(iter(self._variants)))
                self._variants[student] = cached
        return cached

    def reading(self, student: str, question_id: str, value: Any) -> Reading:
        """The answer as the page sent it, read with this student's letters mapped to the bank's."""
        question = self.questions[question_id]
        mapping = None
        variant = self.variant(student)
        if isinstance(question, MultipleChoice):
            order = variant.option_order.get(question_id)
            if order:
                mapping = {LABELS[i]: bank_label for i, bank_label in enumerate(order)}
        # a parametric question is graded with the numbers this student's page showed, derived
        # here on the server (never taken from the request)
        return dataclasses.replace(read_answer(value, question, mapping), params=variant.params.get(question_id))


def served_quiz(quiz: Quiz, mode: Mode, time_limit_min: Optional[float] = None) -> ServedQuiz:
    if mode not in SERVED_MODES:
        raise CourseError(f"a quiz is served as exam or practice, not {mode.value}")
    builder = PageBuilder(quiz, mode, FragmentRenderer())
    questions = {
        q.id: q.model_copy(update={"points": quiz.points[q.id]}) if q.id in quiz.points else q
        for q in builder.questions
    }
    # a quiz spec with a time limit (time_limit_min) bounds exams; --time-limit overrides it
    limit = time_limit_min if time_limit_min is not None else getattr(quiz, "time_limit_min", None)
    return ServedQuiz(
        quiz=quiz,
        mode=mode,
        time_limit_min=limit if mode is Mode.exam else None,
        builder=builder,
        questions=questions,
        fingerprints={q: question_fingerprint(question) for q, question in questions.items()},
    )


@dataclass
class Course:
    bank_root: Path
    quizzes: dict[str, ServedQuiz]

    def get(self, quiz_id: str) -> Optional[ServedQuiz]:
        return self.quizzes.get(quiz_id)


def load_course(
    bank_path: Path,
    exams: list[Path],
    practice: list[Path],
    time_limit_min: Optional[float] = None,
) -> Course:
    """The served quizzes; without any quiz file the whole bank is one practice quiz."""
    plan = [(path, Mode.exam) for path in exams] + [(path, Mode.practice) for path in practice]
    if not plan:
        plan = [(None, Mode.practice)]
    quizzes: dict[str, ServedQuiz] = {}
    for path, mode in plan:
        if path is not None and not path.is_file():
            raise CourseError(f"quiz file {path} does not exist")
        try:
            quiz = load_quiz(bank_path, path, None)
        except BuildError as err:
            raise CourseError(str(err)) from None
        if quiz.id in quizzes:
            raise CourseError(f"two quiz files have the id {quiz.id!r}; each served quiz needs its own id")
        quizzes[quiz.id] = served_quiz(quiz, mode, time_limit_min)
    return Course(bank_path, quizzes)
