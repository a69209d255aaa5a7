"""Grade many (student, question) answers into an output folder, keeping what is still valid.

A stored result is reused only while everything that decided it is unchanged: the question's
fingerprint (key, rubric, checks, reference, points), the grader version and the answer itself.
Anything else is graded (again), appended to results.jsonl as soon as it is ready (so an
interrupted run resumes), and the file is then compacted to the newest line per pair. The
gradebook files are always written from the results, one stale entry never among them.

How the student's page showed a question (its number, MCQ letters, page mode) only presents a
result: it is recorded with the result for the feedback page, never part of the fingerprint,
and a result regraded from results.jsonl alone keeps the layout it had.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import AnyQuestion, CodeQuestion, Flashcard
from vaequiz.grading.answers import Reading, read_answer
from vaequiz.grading.code import SandboxRunner
from vaequiz.grading.feedback import QuizLookup, write_feedback_pages
from vaequiz.grading.fingerprint import GRADER_VERSION, question_fingerprint
from vaequiz.grading.grader import Grader, ShownAs, item_result, refused
from vaequiz.grading.models import ItemResult
from vaequiz.grading.objective import Graded
from vaequiz.grading.reports import write_gradescope, write_grades_csv
from vaequiz.grading.parametric import grade_with_params
from vaequiz.grading.review import apply_overrides
from vaequiz.grading.results import RESULTS_FILE, ResultsLog, compact_results, read_results

SandboxFactory = Callable[[], AbstractContextManager[SandboxRunner]]
RemoteGrade = Callable[[AnyQuestion, Reading], Graded]
"""Grades one answer somewhere else (`vaequiz worker`), as :func:`grade_reading` would here."""

REASONS = {
    "forced": "--regrade was given",
    "grader": "graded by another version of the grader",
    "question": "the question's key, rubric, checks, reference or points changed",
    "answer": "the answer on the sheet changed",
}
"""Why a stored result is graded again, as the run says it."""

Readings = dict[str, tuple[Optional[str], dict[str, Reading]]]
"""Per student: the quiz their sheet names, and the answer read for each question."""

Layouts = dict[tuple[str, str], ShownAs]
"""Per (student, question): how the student's page showed the question."""


@dataclass
class Change:
    """One (student, question) graded in this run: its old points (None if new) and new points."""

    student: str
    question: str
    reason: str
    old_points: Optional[float]
    new_points: float
    max_points: float
    old_max_points: Optional[float] = None


@dataclass
class BatchReport:
    """What a run did, for the command to print."""

    graded: int = 0
    """Pairs graded in this run, new ones and regraded ones."""
    resumed: int = 0
    """Pairs whose stored result was still valid and kept."""
    students: int = 0
    problems: list[str] = field(default_factory=list)
    """Sheets skipped and pairs that could not be graded: the run exits 1 if any."""
    warnings: list[str] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    dry_run: bool = False

    @property
    def regraded(self) -> list[Change]:
        return [c for c in self.changes if c.old_points is not None]

    def regrade_summary(self) -> list[str]:
        """One line per question and reason: which stored results were (or would be) regraded."""
        counts = Counter((c.question, c.reason) for c in self.regraded)
        verb = "would regrade" if self.dry_run else "regraded"
        return [
            f"{verb} {question} for {n} student(s): {REASONS.get(reason, reason)}"
            for (question, reason), n in sorted(counts.items())
        ]


def stale_reason(
    stored: Optional[ItemResult], reading: Reading, fingerprint: str, regrade_all: bool
) -> Optional[str]:
    """Why ``stored`` cannot stand for this answer ("new" when nothing is stored), or None."""
    if stored is None:
        return "new"
    if regrade_all:
        return "forced"
    if stored.grader_version != GRADER_VERSION or stored.fingerprint is None:
        return "grader"
    if stored.fingerprint != fingerprint:
        return "question"
    if stored.answer != reading.answer or (stored.params or None) != (reading.params or None):
        return "answer"
    return None


def _progress(total: int) -> tuple[AbstractContextManager[object], Callable[[], None]]:
    """A rich progress bar on a terminal; nothing when stderr is a file or pipe."""
    if not sys.stderr.isatty() or total == 0:
        return nullcontext(), lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "grading", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True)
    )
    task = progress.add_task("grading", total=total)
    return progress, lambda: progress.advance(task)


def grade_reading(grader: Grader, question: AnyQuestion, reading: Reading) -> Graded:
    """An unreadable answer scores 0 with its reason; anything else goes to the grader."""
    if reading.problem is not None:
        return refused(reading.problem)
    return grade_with_params(lambda q: grader.grade(q, reading.answer), question, reading.params)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Pair:
    student: str
    quiz: Optional[str]
    question: AnyQuestion
    reading: Reading
    reason: str
    shown: Optional[ShownAs] = None


def grade_batch(
    out: Path,
    bank: Bank,
    readings: Readings,
    sandbox_factory: SandboxFactory,
    workers: int,
    device: str = "cpu",
    output_format: Literal["default", "gradescope"] = "default",
    *,
    only: Optional[list[str]] = None,
    asked: set[str] | None = None,
    regrade_all: bool = False,
    dry_run: bool = False,
    report: Optional[BatchReport] = None,
    shown: Optional[Layouts] = None,
    quizzes: Optional[QuizLookup] = None,
    grade: Optional[RemoteGrade] = None,
) -> BatchReport:
    """Grade ``readings`` (from sheets) and every stored result that went stale into ``out``.

    Students with results in ``out`` but no sheet in this run are regraded from their stored
    answers, keeping the page layout their results recorded. Questions: ``only`` when given,
    else ``asked`` plus those already in the results. ``shown`` is how each sheet's page showed
    its questions; ``quizzes`` gives feedback pages their quiz title and what they reveal (the
    bank's quiz specs when not given). ``dry_run`` grades but writes nothing;
    ``report.changes`` then says what would change. ``grade`` grades one answer elsewhere (on
    `vaequiz worker` processes) instead of here: no sandbox opens, ``workers`` answers are in
    flight at once, and everything else is the same.
    """
    report = report or BatchReport()
    report.dry_run = dry_run
    results_path = out / RESULTS_FILE
    done, warnings = read_results(results_path, repair=not dry_run)
    report.warnings += warnings
    stored = {(i.student, i.question): i for i in done}
    wanted = set(only) if only is not None else set(asked or ()) | {i.question for i in done}
    questions = [q for q in bank.questions if q.id in wanted and not isinstance(q, Flashcard)]
    by_id = {q.id: q for q in questions}
    report.questions = [q.id for q in questions]
    left_out = sorted({i.question for i in done} - set(by_id))
    if left_out:
        report.warnings.append(
            f"{results_path}: results for {', '.join(left_out)} left out of the gradebook: "
            + ("not in this quiz" if only is not None else "no longer in the bank")
        )
    fingerprints = {q.id: question_fingerprint(q) for q in questions}

    shown = shown or {}
    candidates: list[tuple[str, Optional[str], AnyQuestion, Reading, Optional[ShownAs]]] = []
    for student, (quiz, per_question) in readings.items():
        candidates += [
            (student, quiz, q, per_question[q.id], shown.get((student, q.id)))
            for q in questions
            if q.id in per_question
        ]
    for (student, question_id), item in stored.items():
        if student not in readings and question_id in by_id:
            question = by_id[question_id]
            reading = dataclasses.replace(read_answer(item.answer, question), params=item.params)
            candidates.append((student, item.quiz, question, reading, ShownAs.of(item)))
    pending: list[_Pair] = []
    relaid: dict[tuple[str, str], ItemResult] = {}
    for student, quiz, question, reading, layout in candidates:
        old = stored.get((student, question.id))
        reason = stale_reason(old, reading, fingerprints[question.id], regrade_all)
        if reason is not None:
            if layout is None and old is not None:
                layout = ShownAs.of(old)
            pending.append(_Pair(student, quiz, question, reading, reason, layout))
            continue
        report.resumed += 1
        if old is not None and layout is not None and ShownAs.of(old) != layout:
            relaid[(student, question.id)] = old.model_copy(update=layout.fields())  # display only

    needs_sandbox = grade is None and any(
        isinstance(p.question, CodeQuestion) and p.reading.problem is None and not p.reading.unanswered
        for p in pending
    )
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    fresh: dict[tuple[str, str], ItemResult] = {}
    with ExitStack() as stack:
        sandbox = stack.enter_context(sandbox_factory()) if needs_sandbox else None
        grader = Grader(sandbox, device)
        log = None if dry_run else stack.enter_context(ResultsLog(results_path))
        for item in relaid.values():
            if log is not None:
                log.append(item)
        bar, advance = _progress(len(pending))
        stack.enter_context(bar)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        futures: dict[Future[Graded], _Pair] = {
            (pool.submit(grade, p.question, p.reading) if grade is not None
             else pool.submit(grade_reading, grader, p.question, p.reading)): p
            for p in pending
        }
        for future in as_completed(futures):
            pair = futures[future]
            advance()
            where = f"{pair.student} / {pair.question.id}"
            try:
                graded = future.result()
                if graded.retry:
                    report.problems.append(f"{where}: not graded: {graded.error}; rerun to retry")
                    continue
                item = item_result(
                    pair.student, pair.question, pair.reading.answer, graded, pair.quiz, pair.shown  # type: ignore[arg-type]
                )
                item = item.model_copy(
                    update={
                        "fingerprint": fingerprints[pair.question.id],
                        "grader_version": GRADER_VERSION,
                        "params": pair.reading.params,
                    }
                )
            except Exception as err:  # a grader bug must not lose the rest of the class
                report.problems.append(f"{where}: not graded: {type(err).__name__}: {err}")
                continue
            if log is not None:
                log.append(item)
            fresh[(pair.student, pair.question.id)] = item
            old = stored.get((pair.student, pair.question.id))
            report.changes.append(
                Change(
                    pair.student,
                    pair.question.id,
                    pair.reason,
                    None if old is None else old.points,
                    item.points,
                    item.max_points,
                    None if old is None else old.max_points,
                )
            )
            report.graded += 1
    report.changes.sort(key=lambda c: (c.student, report.questions.index(c.question)))
    latest = {**stored, **relaid, **fresh}
    report.results = [item for (_, question_id), item in latest.items() if question_id in by_id]
    report.students = len({i.student for i in report.results})
    if dry_run:
        return report
    compact_results(results_path)
    gradebook, override_warnings = apply_overrides(report.results, out, bank.by_id())  # teachers' reviews
    report.warnings += override_warnings
    write_grades_csv(out / "grades.csv", gradebook, report.questions)
    report.written.append(out / "grades.csv")
    report.written += write_feedback_pages(
        out / "feedback", gradebook, report.questions, bank.by_id(), quizzes or QuizLookup(bank)
    ).values()
    if output_format == "gradescope":
        report.written += write_gradescope(out / "gradescope", gradebook, report.questions).values()
    return report
