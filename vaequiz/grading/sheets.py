"""Read answer sheets as people really produce them, decide which sheet counts for each student,
and turn every sheet into one answer per (student, question) for :mod:`vaequiz.grading.batch`.

Tolerance is deliberate: a UTF-8 BOM, an unknown top-level key, ``null`` answers or numbers
where text is expected cost nothing; a file that cannot be a sheet at all (not JSON, no
student, answers that are not a mapping) is refused with its reason. What could mislead a grade
is refused rather than guessed: a sheet from another quiz (with ``--quiz``), or letters of a
shuffled variant that cannot be mapped back to the bank's.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

from pydantic import TypeAdapter, ValidationError

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import ID_PATTERN, AnyQuestion, Flashcard, MultipleChoice
from vaequiz.grading.answers import Reading, read_answer, valid_text
from vaequiz.grading.batch import BatchReport, Readings, RemoteGrade, SandboxFactory, grade_batch
from vaequiz.grading.feedback import QuizLookup, SheetLayouts
from vaequiz.grading.grader import ShownAs
from vaequiz.grading.models import AnswerSheet
from vaequiz.grading.parametric import clean_params, params_for
from vaequiz.variants import LABELS, option_order, shown_to_bank, variant_id

MAX_SHEET_BYTES = 8 * 1024 * 1024


class SheetError(ValueError):
    """A file that cannot be read as a sheet; the message says why."""


@dataclass(frozen=True)
class QuizIdentity:
    """What a page's letters derive from: quiz id, seed and whether options are shuffled."""

    id: str
    seed: int
    shuffle_options: bool


@dataclass(frozen=True)
class LoadedSheet:
    path: Path
    sheet: AnswerSheet


def _decode(path: Path) -> object:
    try:
        if path.stat().st_size > MAX_SHEET_BYTES:
            raise SheetError(f"larger than {MAX_SHEET_BYTES // 1024 // 1024} MB")
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (Windows editors) is not an error
    except FileNotFoundError:
        raise SheetError("no such file") from None
    except IsADirectoryError:
        raise SheetError("is a folder, not a sheet") from None
    except UnicodeDecodeError as err:
        raise SheetError(f"not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise SheetError(f"cannot be read: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SheetError(f"not valid JSON: line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise SheetError("not a sheet: JSON nested too deeply") from None


def _clean_labels(value: object, warnings: list[str]) -> dict[str, dict[str, str]]:
    """Well-formed ``labels`` entries (each a one-to-one map of letters); the rest are dropped
    with a warning, and their questions are treated as having lost their labels."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        warnings.append("labels ignored: not a mapping of question ids to letters")
        return {}
    clean: dict[str, dict[str, str]] = {}
    for question_id, mapping in value.items():
        if not re.fullmatch(ID_PATTERN, question_id):
            warnings.append(f"labels for {question_id[:80]!r} ignored: not a question id")
            continue
        ok = (
            isinstance(mapping, dict)
            and all(isinstance(k, str) and k in LABELS and len(k) == 1 for k in mapping)
            and all(isinstance(v, str) and v in LABELS and len(v) == 1 for v in mapping.values())
            and len(set(mapping.values())) == len(mapping)
        )
        if ok:
            clean[question_id] = dict(mapping)
        else:
            warnings.append(f"labels for {question_id!r} ignored: not a one-to-one map of letters")
    return clean


def _clean_order(value: object, warnings: list[str]) -> Optional[list[str]]:
    """The page's question order (ids, each once), or None with a warning: a bad order costs
    only the numbering of the feedback page, never the sheet."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) and re.fullmatch(ID_PATTERN, v) for v in value):
        if len(set(value)) == len(value):
            return list(value)
    warnings.append("order ignored: not a list of distinct question ids")
    return None


PAGE_MODES = ("exam", "practice")


def _clean_mode(value: object, warnings: list[str]) -> Optional[str]:
    """The page's mode (exam or practice), or None with a warning."""
    if value is None or value in PAGE_MODES:
        return value  # type: ignore[return-value]
    warnings.append(f"mode ignored: {str(value)[:40]!r} is not one of {', '.join(PAGE_MODES)}")
    return None


_TIME = TypeAdapter(datetime)


def _timestamp(data: dict[str, object], key: str, warnings: list[str]) -> Optional[datetime]:
    """An ISO 8601 time, or None with a warning: a bad time never costs the sheet."""
    value = data.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return _TIME.validate_python(value)
    except ValidationError:
        pass
    warnings.append(f"{key} ignored: {str(value)[:40]!r} is not an ISO 8601 time")
    return None


def read_sheet(path: Path) -> tuple[AnswerSheet, list[str]]:
    """Parse one sheet, tolerating what people's tools produce; return it with warnings, or
    raise :class:`SheetError` when the file cannot be a sheet at all."""
    data = _decode(path)
    if not isinstance(data, dict):
        raise SheetError(f"not a sheet: the file holds a JSON {type(data).__name__}, not an object with 'student' and 'answers'")
    warnings: list[str] = []
    known = list(AnswerSheet.model_fields)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            warnings.append(f"unknown key {str(key)[:40]!r} ignored" + (f"; did you mean {close[0]!r}?" if close else ""))
    answers = data.get("answers")
    if answers is None:
        answers = {}
    if not isinstance(answers, dict):
        raise SheetError(f"answers: must map question ids to answers; got a JSON {type(answers).__name__}")
    cleaned = {
        "student": data.get("student"),
        "answers": answers,
        "quiz": data.get("quiz"),
        "variant": data.get("variant"),
        "labels": _clean_labels(data.get("labels"), warnings),
        "params": clean_params(data.get("params"), warnings),
        "started_at": _timestamp(data, "started_at", warnings),
        "saved_at": _timestamp(data, "saved_at", warnings),
        "mode": _clean_mode(data.get("mode"), warnings),
        "order": _clean_order(data.get("order"), warnings),
    }
    for key in ("quiz", "variant"):
        if not isinstance(cleaned[key], (str, int, float)) or isinstance(cleaned[key], bool):
            if cleaned[key] is not None:
                warnings.append(f"{key} ignored: not text")
            cleaned[key] = None
    for key in ("student", "quiz", "variant"):
        if isinstance(cleaned[key], str):
            cleaned[key] = valid_text(cleaned[key])
    try:
        sheet = AnswerSheet.model_validate({k: v for k, v in cleaned.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "sheet"
        raise SheetError(f"{where}: {first['msg']}") from None
    if sheet.started_at and sheet.saved_at and _utc(sheet.saved_at) < _utc(sheet.started_at):
        warnings.append("saved_at is earlier than started_at; the computer's clock may be wrong")
    return sheet, warnings


def _utc(moment: datetime) -> datetime:
    """Times without a zone are taken as UTC, so any two sheets' times compare."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _pick_latest(group: list[LoadedSheet], report: BatchReport) -> LoadedSheet:
    """Of several sheets for one student: the later ``saved_at`` wins; identical sheets are one;
    otherwise the first given counts and the run fails until someone removes the other."""
    first = group[0]
    times = [s.sheet.saved_at for s in group]
    if all(t is not None for t in times):
        latest = max(group, key=lambda s: _utc(s.sheet.saved_at))  # type: ignore[arg-type]
        if sum(_utc(t) == _utc(latest.sheet.saved_at) for t in times) == 1:  # type: ignore[arg-type]
            for other in group:
                if other is not latest:
                    report.warnings.append(
                        f"{other.path}: set aside: {other.sheet.student!r} has a later sheet, {latest.path} "
                        f"(saved {latest.sheet.saved_at.isoformat()}, this one {other.sheet.saved_at.isoformat()})"  # type: ignore[union-attr]
                    )
            return latest
    for other in group[1:]:
        same = (other.sheet.answers, other.sheet.labels) == (first.sheet.answers, first.sheet.labels)
        if same:
            report.warnings.append(f"{other.path}: set aside: the same answers as {first.path}")
            continue
        why = "neither says when it was saved" if not any(times) else "their saved_at times do not tell which is later"
        report.problems.append(
            f"{other.path}: set aside: student {other.sheet.student!r} already has a sheet ({first.path}) "
            f"and {why}; graded {first.path}. Remove the sheet that should not count and rerun"
        )
    return first


def load_sheets(
    paths: list[Path], bank: Bank, report: BatchReport, quiz: Optional[QuizIdentity], quiz_given: bool
) -> list[LoadedSheet]:
    """One sheet per student; files that cannot be sheets, sheets of another quiz (with
    ``--quiz``) and set-aside duplicates are reported."""
    groups: dict[str, list[LoadedSheet]] = {}
    known = bank.by_id()
    for path in paths:
        try:
            sheet, warnings = read_sheet(path)
        except SheetError as err:
            report.problems.append(f"{path}: skipped: {err}")
            continue
        except Exception as err:  # a reader bug must not lose the rest of the class
            report.problems.append(f"{path}: skipped: could not be read ({type(err).__name__}: {err})")
            continue
        if quiz_given and quiz is not None and sheet.quiz is not None and sheet.quiz != quiz.id:
            report.problems.append(
                f"{path}: skipped: the sheet is for quiz {sheet.quiz!r}, not {quiz.id!r} (--quiz); "
                "grade it with its own quiz spec"
            )
            continue
        report.warnings += [f"{path}: {w}" for w in warnings]
        for question_id in sheet.answers:
            if question_id not in known:
                report.warnings.append(f"{path}: answer to {question_id[:80]!r} ignored: no such question in the bank")
        groups.setdefault(sheet.student, []).append(LoadedSheet(path, sheet))
    return [_pick_latest(group, report) for group in groups.values()]


def letters_for(
    loaded: LoadedSheet, question: MultipleChoice, quiz: Optional[QuizIdentity], quiz_given: bool
) -> tuple[Optional[dict[str, str]], Optional[str]]:
    """(shown label -> bank label, None) for ``question`` on this sheet, or (None, why not).

    A sheet's own ``labels`` come first. Without them the letters are the bank's when the
    question cannot have been shuffled, or when the sheet names no variant (written by hand).
    A variant's lost labels are re-derived only when its id proves the quiz, seed and student
    they come from; otherwise the answer is refused, never read with the wrong letters.
    """
    sheet = loaded.sheet
    bank_labels = [o.label for o in question.options]
    mapping = sheet.labels.get(question.id)
    if mapping is not None:
        if not set(mapping.values()) <= set(bank_labels):
            return None, (
                f"the sheet's labels for {question.id!r} name options the question does not have "
                f"({', '.join(sorted(set(mapping.values()) - set(bank_labels)))}); was the question changed after the quiz was built?"
            )
        return mapping, None
    if not question.shuffle or sheet.variant is None:
        return None, None
    if quiz is not None and (sheet.quiz is None or sheet.quiz == quiz.id):
        if not quiz.shuffle_options:
            return None, None
        for student in (sheet.student, ""):  # "" is the anonymous page a student typed a name into
            if variant_id(quiz.id, quiz.seed, student) == sheet.variant:
                order = option_order(quiz.id, quiz.seed, student, question.id, bank_labels, True)
                return shown_to_bank(order), None
    where = f"quiz {quiz.id!r} with seed {quiz.seed}" if quiz is not None else "any quiz given"
    hint = "; grade with the --quiz (and --seed) the page was built with" if not quiz_given else (
        "; if the pages were built with --seed, grade with the same --seed"
    )
    return None, (
        f"the sheet lost the labels of shuffled question {question.id!r} and its variant "
        f"{sheet.variant!r} is not {where} for this student, so its letters cannot be mapped "
        f"back safely{hint}"
    )


def sheet_readings(
    loaded: LoadedSheet,
    questions: list[AnyQuestion],
    quiz: Optional[QuizIdentity],
    quiz_given: bool,
    report: BatchReport,
    letters: Optional[dict[str, dict[str, str]]] = None,
) -> dict[str, Reading]:
    """Each question's answer on this sheet, read against its kind; questions whose letters
    cannot be mapped back are left out and reported (not graded, so a fixed sheet grades later).
    ``letters`` (if given) receives, per MCQ, the shown -> bank letters the answer was read with."""
    readings: dict[str, Reading] = {}
    rederived: list[str] = []
    sheet = loaded.sheet
    for question in questions:
        mapping = None
        if isinstance(question, MultipleChoice) and sheet.answers.get(question.id) is not None:
            mapping, problem = letters_for(loaded, question, quiz, quiz_given)
            if problem:
                report.problems.append(f"{loaded.path}: {question.id}: not graded: {problem}")
                continue
            if mapping is not None and question.id not in sheet.labels:
                rederived.append(question.id)
            if mapping is not None and letters is not None:
                letters[question.id] = mapping
        reading = read_answer(sheet.answers.get(question.id), question, mapping)
        numbers, problem = params_for(sheet, question, quiz.id if quiz else None, quiz.seed if quiz else None)
        if problem and not reading.unanswered:
            report.problems.append(f"{loaded.path}: {question.id}: not graded: {problem}")
            continue
        readings[question.id] = dataclasses.replace(reading, params=numbers) if numbers is not None else reading
    if rederived and quiz is not None:
        report.warnings.append(
            f"{loaded.path}: no labels for {', '.join(rederived)}; re-derived from quiz {quiz.id!r}, "
            f"seed {quiz.seed} and the student (variant {sheet.variant} matches)"
        )
    return readings


def grade_sheets(
    paths: list[Path],
    out: Path,
    bank: Bank,
    sandbox_factory: SandboxFactory,
    workers: int,
    device: str = "cpu",
    output_format: Literal["default", "gradescope"] = "default",
    only: Optional[list[str]] = None,
    quiz: Optional[QuizIdentity] = None,
    quiz_given: bool = False,
    regrade_all: bool = False,
    quiz_file: Optional[Path] = None,
    seed: Optional[int] = None,
    grade: Optional[RemoteGrade] = None,
) -> BatchReport:
    """Grade every sheet into ``out``, resuming from ``out/results.jsonl``: a stored result is
    kept while its question, the grader and the answer are unchanged, and regraded otherwise.

    ``only`` (a quiz's question ids) fixes the questions every student is graded on; without
    it, every question answered by some sheet of the run, or already in the results, is.
    ``quiz`` is what letters of a variant derive from; ``quiz_given`` says it came from
    ``--quiz``, which also refuses sheets of other quizzes. ``quiz_file`` (else the bank's spec
    with the sheet's quiz id) gives feedback pages their title, numbering and options.
    """
    report = BatchReport()
    sheets = load_sheets(paths, bank, report, quiz, quiz_given)
    answered = {q for s in sheets for q, v in s.sheet.answers.items() if v is not None}
    gradable = [q for q in bank.questions if not isinstance(q, Flashcard) and (only is None or q.id in only)]
    quizzes = QuizLookup(bank, quiz_file, seed)
    run_order = only or [q.id for q in gradable if q.id in answered]
    layouts = SheetLayouts(quizzes, run_order)
    readings: Readings = {}
    shown: dict[tuple[str, str], ShownAs] = {}
    for loaded in sheets:
        letters: dict[str, dict[str, str]] = {}
        per_question = sheet_readings(loaded, gradable, quiz, quiz_given, report, letters)
        readings[loaded.sheet.student] = (loaded.sheet.quiz, per_question)
        for question_id in per_question:
            shown[(loaded.sheet.student, question_id)] = layouts.shown(
                loaded.sheet, question_id, letters.get(question_id)
            )
    return grade_batch(
        out,
        bank,
        readings,
        sandbox_factory,
        workers,
        device,
        output_format,
        only=only,
        asked=answered,
        regrade_all=regrade_all,
        report=report,
        shown=shown,
        quizzes=quizzes,
        grade=grade,
    )
