"""Diagnosis by known mistake: does a failing answer behave like one of the question's mutants?

Every code question lists ``mutants``, the wrong answers students really write, each with its
``why``. When an answer fails, the grader compares it with each mutant on the same hidden
inputs: the answer "is" that mistake when (1) exactly the same checks fail, and (2) every value
it produced (bound names and probe results, run by run) equals the mutant's within a tolerance,
and it raised where the mutant raised. Of the mutants meeting both, the closest is reported.

Cost: each mutant runs once per question and grading run (all its trials and seeds in one
sandbox request, like an answer; a question's mutants side by side on the sandbox's workers),
lazily, the first time an answer to that question fails; the outcomes are cached for the rest
of the run. Passing answers cost nothing; each failing one
costs one comparison per mutant, in this process, never in the student's.
"""

from __future__ import annotations

import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from vaequiz.grading.checks import run_check
from vaequiz.grading.code import SandboxRunner, error_pattern, run_outcomes
from vaequiz.grading.evidence import Evidence
from vaequiz.grading.inputs import PreparedQuestion
from vaequiz.grading.objective import Graded
from vaequiz.grading.sandbox.api import ModuleSummary, OpaqueValue, RunOutcome, Value

RTOL = 1e-4
ATOL = 1e-5
"""How close two outputs must be to count as the same behaviour (float32 rounding of the same
computation written differently stays far inside this; a different formula does not)."""


@dataclass(frozen=True)
class MutantBehaviour:
    """What one mutant did on the question's hidden inputs."""

    why: str
    failing: tuple[bool, ...]
    """Per check, in the question's order: whether it failed."""
    outcomes: list[RunOutcome]


def _error_kind(error: str | None) -> str | None:
    """An error as a behaviour: its text without line numbers (the answer's lines are not the
    mutant's) and with sizes blanked (see ``error_pattern``); None when it did not raise."""
    return None if error is None else error_pattern(re.sub(r"\s*\(line \d+\)", "", error))


def value_distance(a: Value, b: Value) -> float | None:
    """0 for equal values, up to 1 for values equal within the tolerance, None when they differ.

    Tensors compare by shape and values (NaN equals NaN); modules by parameter counts (a
    student's class may have any name); other objects by type name.
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype.is_floating_point != b.dtype.is_floating_point:
            return None
        x, y = a.detach().to(torch.float64), b.detach().to(torch.float64)
        if x.numel() == 0:
            return 0.0
        same_nan = torch.isnan(x) == torch.isnan(y)
        if not bool(same_nan.all()):
            return None
        finite = torch.isfinite(x) & torch.isfinite(y)
        if not bool((x[~finite].nan_to_num(0.0) == y[~finite].nan_to_num(0.0)).all()):
            return None
        if not bool(finite.any()):
            return 0.0
        scaled = (x[finite] - y[finite]).abs() / (ATOL + RTOL * y[finite].abs())
        worst = float(scaled.max())
        return worst if worst <= 1.0 else None
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        if isinstance(a, bool) != isinstance(b, bool):
            return None
        return 0.0 if math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) or (a != a and b != b) else None
    if isinstance(a, ModuleSummary) and isinstance(b, ModuleSummary):
        same = (a.trainable_parameters, a.total_parameters) == (b.trainable_parameters, b.total_parameters)
        return 0.0 if same else None
    if isinstance(a, OpaqueValue) and isinstance(b, OpaqueValue):
        return 0.0 if a.type_name == b.type_name else None
    return 0.0 if a is None and b is None else None


def behaviour_distance(answer: list[RunOutcome], mutant: list[RunOutcome]) -> float | None:
    """The largest value distance over every run and name, or None if any run differs."""
    if len(answer) != len(mutant):
        return None
    worst = 0.0
    for mine, theirs in zip(answer, mutant):
        if _error_kind(mine.error) != _error_kind(theirs.error):
            return None
        if set(mine.probe_errors) != set(theirs.probe_errors) or any(
            _error_kind(error) != _error_kind(theirs.probe_errors[name]) for name, error in mine.probe_errors.items()
        ):
            return None
        if set(mine.outputs) != set(theirs.outputs):
            return None
        for name, value in mine.outputs.items():
            distance = value_distance(value, theirs.outputs[name])
            if distance is None:
                return None
            worst = max(worst, distance)
    return worst


class KnownMistakes:
    """The mutants' behaviour per question, computed once per grading run; thread-safe."""

    def __init__(self, sandbox: SandboxRunner, device: str = "cpu") -> None:
        self.sandbox = sandbox
        self.device = device
        self._cache: dict[str, tuple[PreparedQuestion, list[MutantBehaviour]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.mutant_runs = 0
        """Sandbox requests made for mutants so far (one per mutant and question)."""

    def behaviours(self, prepared: PreparedQuestion) -> list[MutantBehaviour]:
        """Run every mutant of ``prepared``'s question once (again only if the question changed)."""
        question_id = prepared.question.id
        with self._lock:
            lock = self._locks.setdefault(question_id, threading.Lock())
        with lock:
            cached = self._cache.get(question_id)
            if cached is None or cached[0] is not prepared:
                mutants = prepared.question.mutants
                with ThreadPoolExecutor(max_workers=max(1, len(mutants))) as pool:  # the sandbox queues them
                    ran = list(pool.map(lambda m: self._run(prepared, m.code, m.why), mutants))
                cached = (prepared, [b for b in ran if b is not None])
                self._cache[question_id] = cached
            return cached[1]

    def _run(self, prepared: PreparedQuestion, code: str, why: str) -> MutantBehaviour | None:
        result = self.sandbox.run(prepared.request(code, self.device))
        with self._lock:
            self.mutant_runs += 1
        if result.status != "ok":  # a mutant that times out or crashes describes no behaviour
            return None
        outcomes = run_outcomes(prepared, result)
        evidence = Evidence(prepared=prepared, outcomes=outcomes)
        failing = tuple(not run_check(spec, evidence).passed for spec in prepared.question.checks)
        return MutantBehaviour(why=why, failing=failing, outcomes=outcomes)

    def known_mistake(self, prepared: PreparedQuestion, outcomes: list[RunOutcome], graded: Graded) -> str | None:
        """The ``why`` of the mutant the failing answer behaves like, or None."""
        if graded.passed or not prepared.question.mutants or len(graded.checks) != len(prepared.question.checks):
            return None
        if all(c.hidden for c in graded.checks if not c.passed):  # hidden checks tell pass/fail only
            return None
        failing = tuple(not c.passed for c in graded.checks)
        best: tuple[float, str] | None = None
        for mutant in self.behaviours(prepared):
            if mutant.failing != failing:
                continue
            distance = behaviour_distance(outcomes, mutant.outcomes)
            if distance is not None and (best is None or distance < best[0]):
                best = (distance, mutant.why)
        return None if best is None else best[1].strip()
