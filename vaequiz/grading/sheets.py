"""Grade answer sheets in bulk: read and check sheets, grade every pending (student, question)
pair on a thread pool, append each result as it is ready, then write the gradebook files.

Which questions a sheet is graded on: every question (other than flashcards) that any sheet in
the run answers, plus those already in results.jsonl, so a student who skipped a question the
class was asked gets 0 with "no answer" for it.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import ValidationError

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import AnyQuestion, CodeQuestion, Flashcard, MultipleChoice
from vaequiz.grading.code import SandboxRunner
from vaequiz.grading.grader import Grader, item_result
from vaequiz.grading.models import Answer, AnswerSheet, ItemResult
from vaequiz.grading.objective import Graded, parse_labels
from vaequiz.grading.feedback import QuizLookup, SheetLayouts, write_feedback_pages
from vaequiz.grading.reports import write_gradescope, write_grades_csv
from vaequiz.grading.results import RESULTS_FILE, ResultsLog, read_results

MAX_SHEET_BYTES = 8 * 1024 * 1024

SandboxFactory = Callable[[], AbstractContextManager[SandboxRunner]]


class SheetError(ValueError):
    """A sheet that cannot be graded; the message says why."""


def read_sheet(path: Path) -> AnswerSheet:
    """Parse and validate one sheet, or raise :class:`SheetError` with a readable reason."""
    try:
        if path.stat().st_size > MAX_SHEET_BYTES:
            raise SheetError(f"larger than {MAX_SHEET_BYTES // 1024 // 1024} MB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SheetError("no such file") from None
    except IsADirectoryError:
        raise SheetError("is a folder, not a sheet") from None
    except UnicodeDecodeError:
        raise SheetError("not UTF-8 text") from None
    except OSError as err:
        raise SheetError(f"cannot be read: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SheetError(f"not valid JSON: line {err.lineno} column {err.colno}: {err.msg}") from None
    try:
        return AnswerSheet.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "sheet"
        more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
        raise SheetError(f"{where}: {first['msg']}{more}") from None


def graded_answer(sheet: AnswerSheet, question: AnyQuestion) -> Answer | None:
    """The sheet's answer to ``question``, with shuffled MCQ labels mapped back to bank labels."""
    answer = sheet.answers.get(question.id)
    if answer is None or not isinstance(question, MultipleChoice):
        return answer
    mapping = sheet.labels.get(question.id, {})
    labels = [mapping.get(label, label) for label in parse_labels(answer)]
    return labels if question.multiple or len(labels) != 1 else labels[0]


@dataclass
class SheetsReport:
    """What a grade-sheets run did, for the command to print."""

    graded: int = 0
    resumed: int = 0
    students: int = 0
    problems: list[str] = field(default_factory=list)
    """Sheets skipped and pairs that could not be graded: the run exits 1 if any."""
    warnings: list[str] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def load_sheets(paths: list[Path], bank: Bank, report: SheetsReport) -> list[AnswerSheet]:
    """Valid sheets in order; malformed ones and repeated students reported and skipped."""
    sheets: list[AnswerSheet] = []
    seen: dict[str, Path] = {}
    known = bank.by_id()
    for path in paths:
        try:
            sheet = read_sheet(path)
        except SheetError as err:
            report.problems.append(f"{path}: skipped: {err}")
            continue
        if sheet.student in seen:
            report.problems.append(
                f"{path}: skipped: student {sheet.student!r} already has a sheet ({seen[sheet.student]})"
            )
            continue
        seen[sheet.student] = path
        for question_id in sheet.answers:
            if question_id not in known:
                report.warnings.append(f"{path}: answer to {question_id!r} ignored: no such question in the bank")
        sheets.append(sheet)
    return sheets


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


def grade_sheets(
    paths: list[Path],
    out: Path,
    bank: Bank,
    sandbox_factory: SandboxFactory,
    workers: int,
    device: str = "cpu",
    output_format: Literal["default", "gradescope"] = "default",
    only: list[str] | None = None,
    quiz_file: Path | None = None,
) -> SheetsReport:
    """Grade every sheet into ``out``; resumes from ``out/results.jsonl`` without regrading.

    ``only`` (a quiz's question ids) fixes the questions every student is graded on; without
    it, every question answered by some sheet of the run is. ``quiz_file`` (else the bank's
    spec with the sheet's quiz id) gives feedback pages their title, numbering and options.
    """
    report = SheetsReport()
    sheets = load_sheets(paths, bank, report)
    out.mkdir(parents=True, exist_ok=True)
    done, warnings = read_results(out / RESULTS_FILE)
    report.warnings += warnings
    done_pairs = {(i.student, i.question) for i in done}
    asked = set(only) if only is not None else {q for s in sheets for q in s.answers} | {
        i.question for i in done
    }
    questions = [q for q in bank.questions if q.id in asked and not isinstance(q, Flashcard)]
    report.questions = [q.id for q in questions]
    quizzes = QuizLookup(bank, quiz_file)
    layouts = SheetLayouts(quizzes, only or report.questions)
    pending = [
        (sheet, question)
        for sheet in sheets
        for question in questions
        if (sheet.student, question.id) not in done_pairs
    ]
    report.resumed = sum(1 for s in sheets for q in questions if (s.student, q.id) in done_pairs)
    needs_sandbox = any(
        isinstance(q, CodeQuestion) and str(s.answers.get(q.id) or "").strip() for s, q in pending
    )
    fresh: list[ItemResult] = []
    with ExitStack() as stack:
        sandbox = stack.enter_context(sandbox_factory()) if needs_sandbox else None
        grader = Grader(sandbox, device)
        log = stack.enter_context(ResultsLog(out / RESULTS_FILE))
        bar, advance = _progress(len(pending))
        stack.enter_context(bar)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        futures: dict[Future[Graded], tuple[AnswerSheet, AnyQuestion]] = {
            pool.submit(grader.grade, question, graded_answer(sheet, question)): (sheet, question)
            for sheet, question in pending
        }
        for future in as_completed(futures):
            sheet, question = futures[future]
            advance()
            try:
                graded = future.result()
            except Exception as err:  # a grader bug must not lose the rest of the class
                report.problems.append(
                    f"{sheet.student} / {question.id}: not graded: {type(err).__name__}: {err}"
                )
                continue
            if graded.retry:
                report.problems.append(
                    f"{sheet.student} / {question.id}: not graded: {graded.error}; rerun to retry"
                )
                continue
            item = item_result(
                sheet.student, question, graded_answer(sheet, question), graded, sheet.quiz,
                layouts.shown(sheet, question.id),
            )
            log.append(item)
            fresh.append(item)
            report.graded += 1
    report.results = done + fresh
    report.students = len({i.student for i in report.results})
    write_grades_csv(out / "grades.csv", report.results, report.questions)
    report.written.append(out / "grades.csv")
    report.written += write_feedback_pages(
        out / "feedback", report.results, report.questions, bank.by_id(), quizzes
    ).values()
    if output_format == "gradescope":
        report.written += write_gradescope(out / "gradescope", report.results, report.questions).values()
    return report
