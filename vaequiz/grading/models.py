"""Formats that cross the grading boundary: answer sheets in, check results and gradebook rows out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from vaequiz.bank.models import Label, QuestionId, StrictModel

Answer = Annotated[
    Union[str, list[Label]],
    Field(description="MCQ: a label or list of labels; everything else: text."),
]

RecordedAnswer = Annotated[
    Union[str, list[str]],
    Field(
        description="An answer as it was read: MCQ letters mapped to bank labels, text otherwise; "
        "an answer that could not be read is kept as the text the student gave."
    ),
]


class AnswerSheet(StrictModel):
    """What a student's page saves and `vaequiz grade-sheets` reads.

    ``quiz``, ``variant`` and ``labels`` are written by built pages: ``labels`` maps, per
    question, each label the student saw to the bank's label, so shuffled options grade right.
    Answers stay raw JSON here: each is read against its question's kind when it is graded, so
    one unreadable answer costs that item only (see :mod:`vaequiz.grading.answers`).
    """

    student: str = Field(min_length=1, max_length=200)
    answers: dict[str, Any] = Field(
        default_factory=dict,
        description="Question id -> answer (any JSON value, read per question); null means unanswered.",
    )
    quiz: str | None = Field(None, description="Id of the quiz the page was built from.")
    variant: str | None = Field(None, description="Variant id (derived from seed and student).")
    labels: dict[QuestionId, dict[Label, Label]] = Field(
        default_factory=dict, description="Shown label -> bank label, per shuffled question."
    )
    params: dict[QuestionId, dict[str, Union[bool, int, float]]] = Field(
        default_factory=dict,
        description="The numbers each parametric question showed (re-derived and cross-checked when graded).",
    )
    started_at: Optional[datetime] = Field(None, description="When the student opened the page (ISO 8601).")
    saved_at: Optional[datetime] = Field(
        None, description="When the sheet was saved (ISO 8601); of two sheets for one student the later wins."
    )
    time_limit_min: Optional[float] = Field(
        None, gt=0, description="The exam page's time limit in minutes, when the quiz spec sets one."
    )
    locked_at: Optional[datetime] = Field(
        None, description="When the page's time limit ran out and locked the answers (ISO 8601)."
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
    evidence: str = Field(
        "", description="Why a passed check passed, e.g. the sentence a short-answer concept was found in."
    )


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
    answer: Optional[RecordedAnswer] = Field(None, description="The answer as graded (bank labels).")
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
    fingerprint: Optional[str] = Field(
        None,
        description="Digest of what decided the grade besides the answer: the question's key, "
        "rubric, checks, reference and points (quiz overrides included). A rerun regrades the "
        "pair when it changes.",
    )
    grader_version: Optional[str] = Field(None, description="GRADER_VERSION of the grading code.")
    needs_review: bool = Field(False, description="The verdict is fragile: a teacher should confirm it.")
    review_reasons: list[str] = Field(default_factory=list, description="Why it needs review.")
    reviewed_by: str | None = Field(
        None, description="Set when a teacher's override (overrides.jsonl) decided this result."
    )
    in_process: Optional[str] = Field(
        None,
        description="Code: why the answer's values were measured in the process that ran it "
        "('measured in-process: ...'), where its program could not be captured; null when every "
        "measurement came from its program, out of that process.",
    )
    params: Optional[dict[str, Union[bool, int, float]]] = Field(
        None, description="A parametric question's numbers for this student, as graded."
    )
