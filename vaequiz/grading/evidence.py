"""What a graded submission produced, looked up by name with reasons a student can act on.

Checks ask for values by name ("z", "mu", "grad__z__logvar", "model.codebook", "reference");
when a value is missing because the snippet raised, never assigned it, or a probe failed, the
lookup raises :class:`Unavailable` carrying the reason, and the check fails with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vaequiz.grading.inputs import PreparedQuestion, PreparedRun
from vaequiz.grading.sandbox.api import ModuleSummary, ModuleValue, OpaqueValue, RunOutcome, Value


class Unavailable(Exception):
    """A value a check needs does not exist; ``str(err)`` says why, for the student."""


def _parse_grad_name(name: str) -> tuple[str, str] | None:
    if name.startswith("grad__") and name.count("__") == 2:
        _, of, wrt = name.split("__")
        return of, wrt
    return None


def describe_value(value: Any) -> str:
    """A short description of a value's type for messages: "a float", "a Tensor of shape (3,)"."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {format_shape(value.shape)}"
    if isinstance(value, ModuleSummary):
        return f"an nn.Module ({value.class_name})"
    if isinstance(value, OpaqueValue):
        return f"a {value.type_name}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def format_shape(shape: Any) -> str:
    """``(64, 20)``, ``(784,)`` or ``()`` for a scalar."""
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


@dataclass
class Evidence:
    """The prepared runs, the sandbox's outcome for each, and the reference's values.

    ``declared`` is how many runs the question declares (its trials' repeats): every check
    evaluates those, so each fixed-sample test keeps its budget. Runs past them exist only when
    a sequential check asked for more (:class:`vaequiz.grading.checks.NeedsMoreRuns`); only such
    a check reads them, through :meth:`all_run_indices`.
    """

    prepared: PreparedQuestion
    outcomes: list[RunOutcome]
    declared: int | None = None
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Values derived once and shared by the checks of one grading (e.g. code indices)."""

    @property
    def runs(self) -> list[PreparedRun]:
        return self.prepared.runs

    def run_indices(self) -> range:
        """The declared runs, which every check evaluates."""
        total = len(self.prepared.runs)
        return range(total if self.declared is None else min(self.declared, total))

    def all_run_indices(self) -> range:
        """The declared runs and any a sequential check asked for after them."""
        return range(len(self.prepared.runs))

    def value(self, index: int, name: str) -> Value:
        """The value of ``name`` in run ``index``: a given, a student output or a probe result."""
        run = self.prepared.runs[index]
        if "." in name:
            owner, attribute = name.split(".", 1)
            module = self.value(index, owner)
            if isinstance(module, ModuleValue) and attribute in module.embeddings:
                return module.embeddings[attribute]
            raise Unavailable(f"{name} is not available")
        if name in run.given:
            return run.given[name]
        outcome = self.outcomes[index]
        if name in outcome.outputs:
            return outcome.outputs[name]
        raise Unavailable(self._why_missing(index, name))

    def reference(self, index: int, name: str) -> Value:
        """The reference solution's value of ``name`` on the same inputs."""
        if self.prepared.reference_error:
            raise Unavailable(self.prepared.reference_error)
        values = self.prepared.reference[index]
        if name in self.prepared.runs[index].given:
            return self.prepared.runs[index].given[name]
        if name not in values:
            raise Unavailable(f"the reference has no value for {name}")
        return values[name]

    def _why_missing(self, index: int, name: str) -> str:
        outcome = self.outcomes[index]
        grad = _parse_grad_name(name)
        target = grad[0] if grad else self._probe_target(index, name)
        if target is None or target in outcome.missing or target not in outcome.outputs:
            missing_name = name if target is None else target
            if outcome.error:
                return f"your code raised {outcome.error}"
            return f"{missing_name} was never assigned"
        for key in (name, target):
            if key in outcome.probe_errors:
                return self._probe_message(name, outcome.probe_errors[key])
        if outcome.probe_errors:
            return self._probe_message(name, next(iter(outcome.probe_errors.values())))
        return f"{name} was not produced"

    def _probe_target(self, index: int, name: str) -> str | None:
        for probe in self.prepared.runs[index].probes:
            if probe.as_ == name:
                return probe.target
        return None

    @staticmethod
    def _probe_message(name: str, error: str) -> str:
        grad = _parse_grad_name(name)
        if grad:
            return f"the gradient of {grad[0]}.sum() with respect to {grad[1]} could not be taken: {error}"
        return f"{name} could not be computed: {error}"
