"""Resolve a quiz spec against a bank: the questions, their order and their points."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from vaequiz.bank.loader import Bank, Problem
from vaequiz.bank.models import AnyQuestion
from vaequiz.bank.yaml_source import SourceMap
from vaequiz.render.quiz_spec import (
    QuizSpec,
    QuizSpecError,
    SelectionRule,
    load_quiz_spec,
)
from vaequiz.render.variants import StableRandom

WHOLE_BANK_ID = "question-bank"
WHOLE_BANK_TITLE = "Question bank"


@dataclass(frozen=True)
class Quiz:
    """A resolved quiz: what every variant of one build shares."""

    id: str
    title: str
    instructions: str | None
    questions: list[AnyQuestion]
    seed: int = 0
    shuffle_questions: bool = False
    shuffle_options: bool = True
    points: dict[str, float] = field(default_factory=dict)
    """Effective points per question id (bank points unless the spec overrides them)."""
    time_limit_min: float | None = None
    """Minutes from a student's start; exam and practice pages count down and lock at zero."""


def quiz_for(bank: Bank, quiz_file: Path | None, seed: int | None = None) -> Quiz:
    """What `build`, `export` and `grade-sheets` all work on: the quiz a spec file selects from
    ``bank``, or the whole bank without one. Raises QuizSpecError with every located problem."""
    if quiz_file is None:
        return whole_bank_quiz(bank, seed or 0)
    spec, source_map = load_quiz_spec(quiz_file)
    return resolve_quiz(spec, source_map, bank, seed)


def whole_bank_quiz(bank: Bank, seed: int = 0) -> Quiz:
    """Every question in bank order; options are shuffled per variant where the MCQ allows it."""
    return Quiz(
        id=WHOLE_BANK_ID,
        title=WHOLE_BANK_TITLE,
        instructions=None,
        questions=list(bank.questions),
        seed=seed,
        points={q.id: q.points for q in bank.questions},
    )


def _matches(question: AnyQuestion, rule: SelectionRule, topics: list[str] | None) -> bool:
    if topics is not None and not set(question.topics) & set(topics):
        return False
    if rule.difficulty is not None and question.difficulty not in rule.difficulty:
        return False
    return rule.kinds is None or question.kind in rule.kinds


def _unknown_id_message(question_id: str, bank: Bank) -> str:
    message = f"no question with id '{question_id}' in the bank"
    close = difflib.get_close_matches(question_id, [q.id for q in bank.questions], n=1)
    return message + (f"; did you mean '{close[0]}'?" if close else "")


def resolve_quiz(
    spec: QuizSpec, source_map: SourceMap, bank: Bank, seed: int | None = None
) -> Quiz:
    """Apply the spec's entries in order; raises QuizSpecError naming each bad entry's place."""
    seed = spec.seed if seed is None else seed
    by_id = bank.by_id()
    taken: dict[str, AnyQuestion] = {}
    problems: list[Problem] = []
    for index, rule in enumerate(spec.select):
        where = ("select", index)
        if rule.ids is not None:
            for position, question_id in enumerate(rule.ids):
                path = where + ("ids", position)
                if question_id not in by_id:
                    problems.append(
                        Problem(source_map.locate(path), _dotted(path), _unknown_id_message(question_id, bank))
                    )
                elif question_id in taken:
                    problems.append(
                        Problem(source_map.locate(path), _dotted(path), f"'{question_id}' is selected twice")
                    )
                else:
                    taken[question_id] = by_id[question_id]
            continue
        groups = [(t, [t]) for t in rule.topics] if rule.per_topic else [("", rule.topics)]
        wanted = rule.per_topic or rule.count
        for group_name, topics in groups:
            pool = [
                q for q in bank.questions if q.id not in taken and _matches(q, rule, topics)
            ]
            if wanted is None:
                chosen = pool
            elif len(pool) < wanted:
                what = f"topic '{group_name}'" if group_name else "this entry"
                problems.append(
                    Problem(
                        source_map.locate(where + ("per_topic" if rule.per_topic else "count",)),
                        _dotted(where),
                        f"{what} asks for {wanted} question(s) but only {len(pool)} match "
                        "(after earlier entries took theirs)",
                    )
                )
                continue
            else:
                chosen = StableRandom("select", spec.id, seed, index, group_name).sample(pool, wanted)
            if not chosen and wanted is None:
                problems.append(
                    Problem(source_map.locate(where), _dotted(where), "no bank question matches this entry")
                )
            for question in chosen:
                taken[question.id] = question
    for question_id in spec.points:
        if question_id not in taken:
            path = ("points", question_id)
            reason = (
                _unknown_id_message(question_id, bank)
                if question_id not in by_id
                else f"'{question_id}' is not selected by this quiz"
            )
            problems.append(Problem(source_map.locate(path, key=True), _dotted(path), reason))
    if problems:
        raise QuizSpecError(sorted(problems))
    questions = list(taken.values())
    return Quiz(
        id=spec.id,
        title=spec.title,
        instructions=spec.instructions,
        questions=questions,
        seed=seed,
        shuffle_questions=spec.shuffle_questions,
        shuffle_options=spec.shuffle_options,
        points={q.id: spec.points.get(q.id, q.points) for q in questions},
        time_limit_min=spec.time_limit_min,
    )


def _dotted(path: tuple[object, ...]) -> str:
    return ".".join(str(p) for p in path)
