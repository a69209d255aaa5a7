"""Hints from how a code answer failed: a size written as a number where a given decides it.

A snippet that writes ``nn.Linear(20, 400)`` where the prompt gives ``latent_dim`` works on the
course's example and fails on the grader's other sizes; torch then says only "mat1 and mat2
shapes cannot be multiplied (5x12 and 20x400)". The hint names the given instead. It is worked
out from two signals, both general (no question is special-cased):

- an error whose message shows a literal of the code next to the run's value of a given size
  (the number torch compared it with), or
- trials that pass exactly where a given size equals the literal, and fail where it does not.

Only integer literals of the student's code that the reference does not use count, so sizes
the question fixes (784 pixels, 400 hidden units) are never blamed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

import torch

from vaequiz.bank.models import ScalarInput, TensorInput
from vaequiz.grading.checks import run_check
from vaequiz.grading.evidence import Evidence
from vaequiz.grading.inputs import PreparedQuestion
from vaequiz.grading.sandbox.api import RunOutcome

SMALLEST_SIZE = 2
"""Literals below this (0, 1) are indices and flags far more often than sizes."""


def int_literals(source: str) -> set[int]:
    """Integer constants written in ``source`` (``-1`` counts as 1); empty if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {
        abs(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int
    }


def given_sizes(prepared: PreparedQuestion, index: int) -> dict[str, int]:
    """Sizes a snippet can read from its givens in run ``index``, by the expression that reads
    them: ``latent_dim`` for an int given, ``mu.shape[1]`` for a tensor given's dimension."""
    sizes: dict[str, int] = {}
    given = prepared.runs[index].given
    for name, spec in prepared.question.given.items():
        value = given.get(name)
        if isinstance(spec, ScalarInput) and spec.type == "int" and isinstance(value, int):
            sizes[name] = value
        elif isinstance(spec, TensorInput) and isinstance(value, torch.Tensor):
            for dim, size in enumerate(value.shape):
                sizes.setdefault(f"{name}.shape[{dim}]", int(size))
    return sizes


def _numbers(text: str) -> list[int]:
    """Whole numbers in an error message, leaving out the "(line N)" the sandbox adds."""
    text = re.sub(r"\(line \d+\)", "", text)
    return [int(n) for n in re.findall(r"(?<![\d.])\d+(?![\d]|\.\d)", text)]


@dataclass(frozen=True)
class _Suspect:
    literal: int
    given: str


def _from_errors(prepared: PreparedQuestion, outcomes: list[RunOutcome], literals: set[int]) -> dict[_Suspect, int]:
    """Votes for (literal, given) from error messages: the literal and the given's value both
    appear, the given's value differs from the literal, and they stand closest together."""
    votes: dict[_Suspect, int] = {}
    for index, outcome in enumerate(outcomes):
        sizes = given_sizes(prepared, index)
        for error in (outcome.error, *outcome.probe_errors.values()):
            if not error:
                continue
            numbers = _numbers(error)
            best: list[tuple[int, _Suspect]] = []
            for i, number in enumerate(numbers):
                if number not in literals or number in sizes.values():
                    continue
                for name, size in sizes.items():
                    positions = [j for j, n in enumerate(numbers) if n == size]
                    if positions:
                        best.append((min(abs(j - i) for j in positions), _Suspect(number, name)))
            if best:
                closest = min(distance for distance, _ in best)
                for distance, suspect in best:
                    if distance == closest:
                        votes[suspect] = votes.get(suspect, 0) + 1
    return votes


def _trial_passes(prepared: PreparedQuestion, outcomes: list[RunOutcome]) -> dict[int, bool]:
    """Whether every check passes on each trial alone (its runs only)."""
    passes: dict[int, bool] = {}
    for trial in sorted({run.trial for run in prepared.runs}):
        keep = [i for i, run in enumerate(prepared.runs) if run.trial == trial]
        subset = replace(
            prepared,
            runs=[prepared.runs[i] for i in keep],
            reference=[prepared.reference[i] for i in keep] if prepared.reference else [],
        )
        evidence = Evidence(prepared=subset, outcomes=[outcomes[i] for i in keep])
        passes[trial] = all(run_check(spec, evidence).passed for spec in prepared.question.checks)
    return passes


def _from_trials(prepared: PreparedQuestion, outcomes: list[RunOutcome], literals: set[int]) -> dict[_Suspect, int]:
    """Votes for (literal, given) where trials pass exactly when the given equals the literal."""
    if len({run.trial for run in prepared.runs}) < 2:
        return {}  # one trial cannot both pass and fail: no vote, so no need to check it again
    passes = _trial_passes(prepared, outcomes)
    if all(passes.values()) or not any(passes.values()):
        return {}
    first_run = {run.trial: i for i, run in reversed(list(enumerate(prepared.runs)))}
    sizes = {trial: given_sizes(prepared, i) for trial, i in first_run.items()}
    votes: dict[_Suspect, int] = {}
    for name in sizes[next(iter(sizes))]:
        for literal in literals:
            if all((sizes[t].get(name) == literal) == passed for t, passed in passes.items()):
                votes[_Suspect(literal, name)] = len(passes)
    return votes


def size_hints(prepared: PreparedQuestion, source: str, outcomes: list[RunOutcome]) -> list[str]:
    """Hints for a failing answer that writes a size as a number where a given decides it."""
    literals = {
        n for n in int_literals(source) - int_literals(prepared.question.reference) if n >= SMALLEST_SIZE
    }
    if not literals or not prepared.question.given:
        return []
    votes = _from_errors(prepared, outcomes, literals)
    if not votes:
        votes = _from_trials(prepared, outcomes, literals)
    if not votes:
        return []
    hints = []
    for literal in sorted({s.literal for s in votes}):
        order = list(given_sizes(prepared, 0))
        mine = {s.given: v for s, v in votes.items() if s.literal == literal}
        most = max(mine.values())
        top = sorted((name for name, v in mine.items() if v == most), key=order.index)[:2]
        values = sorted({given_sizes(prepared, i).get(top[0]) for i in range(len(prepared.runs))} - {None})
        shown = str(values[0]) if len(values) == 1 else ", ".join(map(str, values[:-1])) + f" and {values[-1]}"
        names = " or ".join(top)
        hints.append(
            f"Your code writes the size {literal} as a number where it should come from {names} "
            f"({shown} on the hidden inputs). Use {names} instead of {literal}: the grader tries "
            "sizes other than the example's."
        )
    return hints
