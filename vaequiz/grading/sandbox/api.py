"""The sandbox's public contract, shared by the grader (trusted) and the worker (untrusted side).

The grader turns a code question plus a student's source into a :class:`SandboxRequest`: every
hidden input is already drawn (seeded) and travels as plain values; the request carries no key,
no reference solution and no expected output. The sandbox answers with a
:class:`SandboxResult`: the values the snippet bound (and what the probes measured), decoded
strictly from bytes. Verdicts are computed from it by the grader, never inside the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from vaequiz.bank.models import Limits


@dataclass(frozen=True)
class ModuleValue:
    """A given ``nn.Module`` holding embedding tables (e.g. ``model.codebook``): name -> weight."""

    embeddings: dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModuleSummary:
    """What the sandbox reports about an ``nn.Module`` the snippet bound (it cannot travel)."""

    class_name: str
    trainable_parameters: int
    total_parameters: int


@dataclass(frozen=True)
class OpaqueValue:
    """Any other object the snippet bound: only its type name crosses the boundary."""

    type_name: str


Value = torch.Tensor | int | float | bool | None | ModuleValue | ModuleSummary | OpaqueValue
"""Values that cross the boundary. Tensors travel as dtype + shape + raw bytes, never pickle."""


@dataclass(frozen=True)
class ProbeRequest:
    """A probe to run after the snippet, with its inputs already drawn by the grader.

    ``kind`` is "grad" (d of.sum() / d wrt, results named ``grad__{of}__{w}``), "call"
    (``fn(*args)`` under no_grad, eval mode unless train_mode, result named ``as_``) or "fit"
    (train ``fn`` on ``args[0] -> args[1]`` with Adam for ``steps`` steps and loss ``loss``,
    fewer once the eval-mode loss is below ``stop_below``; result ``as_`` is the final prediction
    on ``args[0]``, reshaped to ``args[1]``'s shape).
    """

    kind: Literal["grad", "call", "fit"]
    target: str
    wrt: tuple[str, ...] = ()
    args: tuple[torch.Tensor, ...] = ()
    as_: str = ""
    loss: Literal["bce", "mse"] = "bce"
    steps: int = 0
    lr: float = 0.0
    train_mode: bool = False
    stop_below: float | None = None


@dataclass(frozen=True)
class RunRequest:
    """One execution of the snippet: its seed, the given values and the probes after it."""

    seed: int
    given: dict[str, Value]
    probes: tuple[ProbeRequest, ...] = ()


@dataclass(frozen=True)
class SandboxRequest:
    """Everything one graded submission needs; runs execute in one sandboxed process, in order."""

    source: str
    expect: tuple[str, ...]
    runs: tuple[RunRequest, ...]
    limits: Limits = field(default_factory=Limits)
    device: Literal["cpu", "cuda"] = "cpu"


@dataclass
class RunOutcome:
    """What one run produced: expected names and probe results, or the error it raised."""

    outputs: dict[str, Value] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    error: str | None = None
    """The snippet's exception as the student should read it, e.g. "NameError: name 'sd' is
    not defined (line 2)"; None when it ran to the end."""
    probe_errors: dict[str, str] = field(default_factory=dict)


Status = Literal[
    "ok",
    "time_limit",
    "cpu_limit",
    "memory_limit",
    "output_limit",
    "crashed",
    "invalid_output",
    "source_rejected",
    "sandbox_error",
    "not_measured",
]


@dataclass
class SandboxResult:
    """The sandbox's answer. ``status`` is "ok" when every run finished (even if a run raised)."""

    status: Status
    reason: str
    """For students: "time limit of 5 s exceeded", "process killed by signal 11 (segfault)"."""
    runs: list[RunOutcome] = field(default_factory=list)
    output: str = ""
    """stdout and stderr of the snippet, cut at the output limit."""
    wall_s: float = 0.0
    in_process: str | None = None
    """None when every value and probe was measured from the snippet's program, in a process
    that ran no student Python; otherwise why they were measured in the snippet's own process
    ("measured in-process: ..."), for the instructor to see."""


def as_computed(leaf: torch.Tensor) -> torch.Tensor:
    """How a given tensor that requires grad is bound: as the output of a computation on ``leaf``.

    Prompts describe such givens as outputs (an encoder's ``mu`` and ``logvar``), and in-place
    ops that are legal on an output (``logvar.mul_(0.5)``) raise on a leaf that requires grad.
    Gradient probes differentiate with respect to ``leaf``, which measures the same gradient.
    Used alike by the sandbox and by the trusted reference run.
    """
    return leaf.clone() if leaf.requires_grad else leaf


class SandboxUnavailable(RuntimeError):
    """The worker could not be started at all (not a student's fault)."""
