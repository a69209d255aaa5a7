"""Grading parametric questions with each student's own numbers.

A sheet records the numbers its page showed; they are trusted only after they are re-derived
from (quiz, seed, student, question), so an edited sheet cannot pick easier numbers. The
question is then bound to those numbers (:func:`vaequiz.bank.parametric.bind`) and graded like
any plain question; failing messages say which numbers they are about.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, Optional

from vaequiz.bank.models import AnyQuestion
from vaequiz.bank.parametric import bind, draw_for, is_parametric
from vaequiz.expressions import Value
from vaequiz.grading.models import AnswerSheet, CheckResult
from vaequiz.grading.objective import Graded
from vaequiz.params import ParamError, describe
from vaequiz.variants import variant_id

Params = dict[str, Value]
VARIANT_ID = re.compile(r"v[0-9a-f]{10}")
"""The form of the variant ids built pages carry (:func:`vaequiz.variants.variant_id`)."""


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal names and numbers (a float that went through JSON compares equal to itself)."""
    if set(a) != set(b):
        return False
    for name in a:
        x, y = a[name], b[name]
        if isinstance(x, bool) or isinstance(y, bool):
            if x is not y and x != y:
                return False
        elif not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            return False
        elif not math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12):
            return False
    return True


def clean_params(value: object, warnings: list[str]) -> dict[str, dict[str, Value]]:
    """A sheet's ``params`` as written: question id -> name -> number; malformed entries are
    dropped with a warning (their questions are then re-derived, or refused)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        warnings.append("params ignored: not a mapping of question ids to numbers")
        return {}
    clean: dict[str, dict[str, Value]] = {}
    for question_id, numbers in value.items():
        ok = isinstance(numbers, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and (isinstance(v, bool) or math.isfinite(v))
            for k, v in numbers.items()
        )
        if ok:
            clean[str(question_id)] = dict(numbers)
        else:
            warnings.append(f"params for {str(question_id)[:80]!r} ignored: not a mapping of names to numbers")
    return clean


def params_for(
    sheet: AnswerSheet, question: AnyQuestion, quiz_id: Optional[str], seed: Optional[int]
) -> tuple[Optional[Params], Optional[str]]:
    """(the numbers to grade ``question`` with, None) or (None, why the item is not graded).

    The numbers are re-derived for the sheet's student (or the anonymous page a student typed
    a name into) when the sheet's variant proves the quiz and seed; recorded numbers must equal
    a re-derivation, so a sheet whose params were edited is refused, item by item.
    """
    if not is_parametric(question):
        return None, None
    recorded = sheet.params.get(question.id)
    derived: list[Params] = []
    # a variant name vaequiz did not write (a hand-made sheet) proves nothing: the student's own
    # numbers are used, as for a sheet that names no variant
    built = sheet.variant is not None and VARIANT_ID.fullmatch(sheet.variant) is not None
    if quiz_id is not None and seed is not None and (sheet.quiz is None or sheet.quiz == quiz_id):
        for student in (sheet.student, ""):
            if not built and student == "":
                continue
            if not built or variant_id(quiz_id, seed, student) == sheet.variant:
                try:
                    derived.append(draw_for(question, quiz_id, seed, student))
                except ParamError as err:
                    return None, str(err)
    if not derived:
        where = f"quiz {quiz_id!r} with seed {seed}" if quiz_id is not None else "the quiz given"
        return None, (
            f"the numbers of parametric question {question.id!r} cannot be re-derived: the sheet's "
            f"variant {sheet.variant!r} is not {where} for this student; grade with the --quiz "
            "(and --seed) the page was built with"
        )
    if recorded is None:
        return derived[0], None
    for numbers in derived:
        if same_params(recorded, numbers):
            return numbers, None
    if set(recorded) != set(derived[0]):
        return None, (
            f"the sheet's params for {question.id!r} are {', '.join(sorted(recorded)) or 'none'}, but the "
            f"question's are {', '.join(sorted(derived[0]))}; was the question changed after the quiz was built?"
        )
    return None, (
        f"the sheet's params for {question.id!r} ({describe(recorded) or 'none'}) are not the numbers its "
        f"page showed ({describe(derived[0])}); the sheet was edited, so this answer is not graded"
    )


def grade_with_params(
    grade: Callable[[AnyQuestion], Graded], question: AnyQuestion, params: Optional[Mapping[str, Value]]
) -> Graded:
    """Grade ``question`` bound to ``params``; failing messages start with the numbers."""
    if params is None or not is_parametric(question):
        return grade(question)
    numbers = describe({k: params[k] for k in question.params or {} if k in params})
    try:
        bound = bind(question, params)
    except ParamError as err:
        reason = f"cannot grade with these numbers: {err}"
        return Graded(0.0, [CheckResult(name="answer", passed=False, message=reason)], error=reason)
    graded = grade(bound)
    for check in graded.checks:
        if not check.passed and check.message:
            check.message = f"for your numbers, {numbers}: {check.message}"
    if graded.error and graded.error != "no answer":
        graded.error = f"for your numbers, {numbers}: {graded.error}"
    return graded


def bound_for_feedback(question: Optional[AnyQuestion], params: Optional[Mapping[str, Value]]) -> Optional[AnyQuestion]:
    """The question as the student saw it, for a feedback page (unbound if it cannot be)."""
    if question is None or params is None or not is_parametric(question):
        return question
    try:
        return bind(question, params)
    except ParamError:
        return question
