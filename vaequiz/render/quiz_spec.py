"""The quiz spec (``*.quiz.yaml``): which bank questions a page holds, in what order, for how much.

Loaded like bank files, so every mistake is reported as ``file:line:column: field: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, model_validator

from vaequiz.bank.loader import Problem, validate_located
from vaequiz.bank.models import (
    Difficulty,
    Markdown,
    QuestionId,
    StrictModel,
    Topic,
)
from vaequiz.bank.yaml_source import Location, SourceMap, YamlSourceError, read_yaml_file

KIND_NAMES = ("mcq", "short_answer", "flashcard", "shape", "numeric", "code")


class SelectionRule(StrictModel):
    """One entry of ``select``: named questions, or a draw from the questions matching filters.

    With ``ids`` the questions are taken as listed. Otherwise the pool is every bank question
    having any of ``topics`` (all topics when omitted), one of ``difficulty`` and one of
    ``kinds``, minus questions an earlier entry already took. ``count`` draws that many from
    the pool, ``per_topic`` draws that many for each listed topic; with neither, the whole pool
    is taken. Draws depend only on the quiz id, the seed and the entry's position, so every
    student of one build gets the same questions.
    """

    ids: list[QuestionId] | None = Field(None, min_length=1, description="Questions by id.")
    topics: list[Topic] | None = Field(None, min_length=1, description="Any of these topics.")
    difficulty: list[Difficulty] | None = Field(None, min_length=1)
    kinds: list[str] | None = Field(None, min_length=1, description=f"Any of {KIND_NAMES}.")
    count: int | None = Field(None, ge=1, le=1000, description="Draw this many at random.")
    per_topic: int | None = Field(
        None, ge=1, le=1000, description="Draw this many for each listed topic."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "SelectionRule":
        filters = self.topics or self.difficulty or self.kinds
        if self.ids is not None and (filters or self.count or self.per_topic):
            raise ValueError(
                "an entry lists 'ids' or filters (topics, difficulty, kinds, count, per_topic), "
                "not both; write two entries"
            )
        if self.count is not None and self.per_topic is not None:
            raise ValueError("use 'count' (from the whole pool) or 'per_topic', not both")
        if self.per_topic is not None and not self.topics:
            raise ValueError("'per_topic' needs 'topics' to draw from")
        for kind in self.kinds or []:
            if kind not in KIND_NAMES:
                raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KIND_NAMES)}")
        return self


class QuizSpec(StrictModel):
    """A quiz: its questions (``select``), order and option shuffling, points and seed."""

    id: QuestionId = Field(description="Kebab-case id; saved answer sheets record it.")
    title: str = Field(min_length=1, max_length=200)
    instructions: Markdown | None = Field(None, description="Shown above the first question.")
    select: list[SelectionRule] = Field(min_length=1)
    seed: int = Field(0, ge=0, description="Seed for draws and variants; --seed overrides it.")
    shuffle_questions: bool = Field(False, description="Each variant orders questions itself.")
    shuffle_options: bool = Field(
        True, description="Shuffle options of MCQs whose 'shuffle' is true, per variant."
    )
    points: dict[QuestionId, float] = Field(
        default_factory=dict, description="Points overrides by question id."
    )
    time_limit_min: float | None = Field(
        None, gt=0, le=1440, description="Minutes from a student's start; the page counts down, then saves and locks."
    )

    @model_validator(mode="after")
    def _points_non_negative(self) -> "QuizSpec":
        for question_id, value in self.points.items():
            if value < 0:
                raise ValueError(f"points for {question_id!r} cannot be negative")
        return self


quiz_spec_adapter: TypeAdapter[QuizSpec] = TypeAdapter(QuizSpec)


class QuizSpecError(Exception):
    """A quiz spec with problems; each is located in the file."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_quiz_spec(path: Path) -> tuple[QuizSpec, SourceMap]:
    """Read and validate a quiz spec; raises QuizSpecError with located problems."""
    display = _display(path)
    if not path.is_file():
        raise QuizSpecError([Problem(Location(display, 1, 1), "", "no such quiz file")])
    try:
        data, source_map = read_yaml_file(path, display)
    except YamlSourceError as err:
        raise QuizSpecError([Problem(err.location, "", err.message)]) from None
    if not isinstance(data, dict):
        what = "nothing" if data is None else f"a {type(data).__name__}"
        raise QuizSpecError(
            [Problem(source_map.locate(()), "", f"a quiz spec is a mapping (id, title, select, ...), not {what}")]
        )
    found: Any = validate_located(quiz_spec_adapter, data, source_map, (), lambda _: QuizSpec)
    if isinstance(found, list):
        raise QuizSpecError(sorted(found))
    return found, source_map
