"""Questions, answers as read and verdicts as plain JSON, so one can be graded in another
process or on another machine (a Celery worker) and come back exactly as a local grading.

JSON only, never pickle: a message names data, it never runs code. Floats survive JSON as
written (shortest repr), so a verdict decoded here equals the one encoded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vaequiz.bank.models import AnyQuestion, CodeQuestion, question_adapter
from vaequiz.grading.answers import Reading
from vaequiz.grading.models import CheckResult
from vaequiz.grading.objective import Graded


def needs_sandbox(question: AnyQuestion, reading: Reading) -> bool:
    """Whether grading this answer runs code (a readable, non-blank answer to a code question)."""
    return isinstance(question, CodeQuestion) and reading.problem is None and not reading.unanswered


def question_json(question: AnyQuestion) -> dict[str, Any]:
    return question_adapter.dump_python(question, mode="json")


def question_from_json(data: dict[str, Any]) -> AnyQuestion:
    return question_adapter.validate_python(data)


def reading_json(reading: Reading) -> dict[str, Any]:
    return {"answer": reading.answer, "problem": reading.problem, "params": reading.params}


def reading_from_json(data: dict[str, Any]) -> Reading:
    answer = data["answer"]
    if answer is not None and not isinstance(answer, (str, list)):
        raise ValueError("an answer is text or a list of option letters")
    return Reading(answer=answer, problem=data.get("problem"), params=data.get("params"))


def graded_json(graded: Graded) -> dict[str, Any]:
    fields = dataclasses.asdict(graded)
    fields["checks"] = [check.model_dump(mode="json") for check in graded.checks]
    return fields


def graded_from_json(data: dict[str, Any]) -> Graded:
    names = {f.name for f in dataclasses.fields(Graded)}
    fields = {k: v for k, v in data.items() if k in names}
    fields["checks"] = [CheckResult.model_validate(check) for check in data.get("checks", [])]
    return Graded(**fields)
