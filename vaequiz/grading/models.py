"""Formats that cross the grading boundary: answer sheets in, check results and gradebook rows out."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from vaequiz.bank.models import Label, QuestionId, StrictModel

Answer = Annotated[
    Union[str, list[Label]],
    Field(description="MCQ: a label or list of labels; everything else: text."),
]


class AnswerSheet(StrictModel):
    """What a student's page saves and `vaequiz grade-sheets` reads.

    ``quiz``, ``variant`` and ``labels`` are written by built pages: ``labels`` maps, per
    question, each label the student saw to the bank's label, so shuffled options grade right.
    """

    student: str = Field(min_length=1, max_length=200)
    answers: dict[QuestionId, Answer] = Field(default_factory=dict)
    quiz: str | None = Field(None, description="Id of the quiz the page was built from.")
    variant: str | None = Field(None, description="Variant id (derived from seed and student).")
    labels: dict[QuestionId, dict[Label, Label]] = Field(
        default_factory=dict, description="Shown label -> bank label, per shuffled question."
    )
    mode: Literal["exam", "practice"] | None = Field(
        None, description="The mode of the page it was saved from (sets the feedback defaults)."
    )
    order: list[QuestionId] | None = Field(
        None, description="Question ids in the order the page numbered them."
    )


class CheckResult(BaseModel):
    """One check's outcome, with a message the student can act on."""

    model_config = ConfigDict(extra="forbid")

    name: str
    passed: bool
    message: str = ""
    points: float = 1.0
    hidden: bool = False


class ItemResult(BaseModel):
    """One graded (student, question) pair: a line of results.jsonl."""

    model_config = ConfigDict(extra="forbid")

    student: str
    question: str
    kind: str
    passed: bool
    score: float = Field(ge=0, le=1, description="Weighted share of checks passed.")
    points: float = Field(description="score x the question's points.")
    max_points: float
    checks: list[CheckResult] = Field(default_factory=list)
    answer: Answer | None = Field(None, description="The answer as graded (bank labels).")
    error: str | None = Field(None, description="Why the answer could not be graded, if so.")
    quiz: str | None = Field(None, description="The quiz the sheet was saved from, if it says.")
    number: int | None = Field(None, description="The question's number on the student's page.")
    labels: dict[str, str] | None = Field(
        None, description="MCQ: shown label -> bank label on the student's page."
    )
    mode: Literal["exam", "practice"] | None = Field(None, description="The page's mode, if known.")
    errors: list[str] = Field(
        default_factory=list, description="Code: each different error the snippet raised, once."
    )
    hints: list[str] = Field(
        default_factory=list, description="Code: hints derived from how the answer failed."
    )
    mistake: str | None = Field(
        None, description="Code: the 'why' of the known mistake (mutant) the answer behaves like."
    )
