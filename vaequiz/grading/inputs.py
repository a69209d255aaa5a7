"""Hidden inputs for code questions: seeded draws, sandbox requests, and the trusted reference run.

Every value a snippet sees is drawn here with a ``torch.Generator`` whose seed is derived from
the question id, the trial index and the repeat, so the same submission always meets the same
inputs and grading is reproducible. The reference solution is trusted code: it runs in this
(grader) process on copies of the same inputs, and neither it nor its outputs ever reach the
sandbox.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vaequiz.bank.models import (
    CallProbe,
    CodeQuestion,
    FitProbe,
    GradProbe,
    ModuleInput,
    ProbeSpec,
    ScalarInput,
    TensorInput,
    grad_output_name,
)
from vaequiz.grading.sandbox.api import (
    ModuleSummary,
    ModuleValue,
    OpaqueValue,
    ProbeRequest,
    RunRequest,
    SandboxRequest,
    Value,
    as_computed,
)

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "bool": torch.bool,
}
_SEED_MASK = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (question id, trial, repeat, purpose).

    Hash-based rather than ``hash()`` so seeds agree across processes and Python versions.
    """
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


def resolve_dim(dim: int | str, bind: dict[str, int | float], where: str) -> int:
    """A literal size, or the trial's value for a symbol such as ``B``."""
    if isinstance(dim, int):
        return dim
    if dim not in bind:
        raise ValueError(f"{where}: symbol {dim!r} is not bound by the trial")
    return int(bind[dim])


def draw_tensor(spec: TensorInput, bind: dict[str, int | float], gen: torch.Generator, where: str) -> torch.Tensor:
    """One tensor drawn as ``spec`` describes, from ``gen``."""
    shape = [resolve_dim(d, bind, where) for d in spec.shape]
    dtype = _DTYPES[spec.dtype]
    if spec.dist == "normal":
        values = torch.randn(shape, generator=gen, dtype=torch.float64) * spec.std + spec.mean
    elif spec.dist == "uniform":
        values = torch.rand(shape, generator=gen, dtype=torch.float64) * (spec.high - spec.low) + spec.low
    elif spec.dist == "bernoulli":
        values = (torch.rand(shape, generator=gen, dtype=torch.float64) < spec.p).to(torch.float64)
    elif spec.dist == "randint":
        values = torch.randint(int(spec.low), int(spec.high), shape, generator=gen).to(torch.float64)
    else:  # probability: strictly inside (0, 1), so log() and BCE stay finite
        values = torch.rand(shape, generator=gen, dtype=torch.float64).mul(0.98).add(0.01)
    tensor = values.to(dtype)
    if spec.requires_grad:
        tensor.requires_grad_(True)
    return tensor


def draw_input(spec: Any, bind: dict[str, int | float], gen: torch.Generator, where: str) -> Value:
    """A given value: a tensor, a scalar, or a module carrying embedding tables."""
    if isinstance(spec, TensorInput):
        return draw_tensor(spec, bind, gen, where)
    if isinstance(spec, ScalarInput):
        raw = bind[spec.value] if isinstance(spec.value, str) else spec.value
        if isinstance(spec.value, str) and spec.value not in bind:
            raise ValueError(f"{where}: symbol {spec.value!r} is not bound by the trial")
        return int(raw) if spec.type == "int" else float(raw)
    if isinstance(spec, ModuleInput):
        tables = {
            name: torch.randn(
                resolve_dim(e.num_embeddings, bind, where),
                resolve_dim(e.embedding_dim, bind, where),
                generator=gen,
            )
            for name, e in spec.embeddings.items()
        }
        return ModuleValue(embeddings=tables)
    raise TypeError(f"{where}: unsupported input spec {type(spec).__name__}")


@dataclass(frozen=True)
class PreparedRun:
    """One execution of a trial: its inputs, probe inputs and the seed the snippet runs with."""

    trial: int
    repeat: int
    bind: dict[str, int | float]
    seed: int
    given: dict[str, Value]
    probes: tuple[ProbeRequest, ...]

    def describe(self) -> str:
        """Sizes of the trial, for messages: "B=257, D=13"."""
        return ", ".join(f"{k}={v:g}" for k, v in self.bind.items()) or "fixed sizes"


@dataclass
class PreparedQuestion:
    """Everything the grader needs per code question, computed once and shared by all students."""

    question: CodeQuestion
    runs: list[PreparedRun]
    reference: list[dict[str, Value]] = field(default_factory=list)
    reference_error: str | None = None
    device: str = "cpu"
    _extensions: dict[int, PreparedQuestion] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _run_requests: dict[int, tuple[RunRequest, ...]] = field(default_factory=dict, repr=False, compare=False)

    def request(self, source: str, device: str = "cpu", start: int = 0) -> SandboxRequest:
        """The sandbox request for one submission: inputs only, never the reference.

        ``start`` skips the runs already made (an extension asked for by a sequential check).
        Every answer's request holds the same runs (one tuple per ``start``), so the sandbox
        encodes them once.
        """
        runs = self._run_requests.get(start)
        if runs is None:
            runs = tuple(RunRequest(seed=r.seed, given=r.given, probes=r.probes) for r in self.runs[start:])
            runs = self._run_requests.setdefault(start, runs)
        return SandboxRequest(
            source=source,
            expect=tuple(self.question.expect),
            runs=runs,
            limits=self.question.limits,
            device="cuda" if device == "cuda" else "cpu",
        )

    def extended(self, total_runs: int) -> PreparedQuestion:
        """These runs followed by more repeats of every trial, at least ``total_runs`` in all.

        Each trial's repeats grow in proportion (rounded up); an added repeat r of trial t has the seed
        repeat r always has (``derive_seed(id, t, r, "run")``) and the trial's inputs, so the
        runs are those a question declaring that many repeats would make, in another order.
        Computed once per size (with the reference's values) and shared by every student.
        """
        if total_runs <= len(self.runs):
            return self
        with self._lock:
            cached = self._extensions.get(total_runs)
            if cached is None:
                cached = _extend(self, total_runs)
                self._extensions[total_runs] = cached
            return cached


def _probe_request(
    probe: ProbeSpec, bind: dict[str, int | float], gen: torch.Generator, where: str
) -> ProbeRequest:
    if isinstance(probe, GradProbe):
        return ProbeRequest(kind="grad", target=probe.of, wrt=tuple(probe.wrt))
    if isinstance(probe, CallProbe):
        args = tuple(draw_tensor(a, bind, gen, where) for a in probe.args)
        return ProbeRequest(
            kind="call", target=probe.fn, args=args, as_=probe.as_, train_mode=probe.train_mode
        )
    assert isinstance(probe, FitProbe)
    return ProbeRequest(
        kind="fit",
        target=probe.fn,
        args=(draw_tensor(probe.input, bind, gen, where), draw_tensor(probe.target, bind, gen, where)),
        as_=probe.as_,
        loss=probe.loss,
        steps=probe.steps,
        lr=probe.lr,
        stop_below=probe.stop_below,
    )


def prepare_runs(question: CodeQuestion) -> list[PreparedRun]:
    """Draw every trial's inputs (once per trial) and one seed per repeat."""
    runs: list[PreparedRun] = []
    for t, trial in enumerate(question.trials):
        where = f"{question.id} trials[{t}]"
        gen = torch.Generator().manual_seed(derive_seed(question.id, t, "inputs"))
        given = {name: draw_input(spec, trial.bind, gen, where) for name, spec in question.given.items()}
        probes = tuple(_probe_request(p, trial.bind, gen, where) for p in question.probes)
        for r in range(trial.repeat):
            runs.append(
                PreparedRun(
                    trial=t,
                    repeat=r,
                    bind=dict(trial.bind),
                    seed=derive_seed(question.id, t, r, "run"),
                    given=given,
                    probes=probes,
                )
            )
    return runs


_TRUSTED_RNG = threading.Lock()
"""The reference seeds torch's global generator; one question at a time keeps that reproducible."""


def prepare_question(question: CodeQuestion, device: str = "cpu") -> PreparedQuestion:
    """Inputs for every run, plus the reference's outputs on them (computed here, trusted)."""
    prepared = PreparedQuestion(question=question, runs=prepare_runs(question), device=device)
    try:
        with _TRUSTED_RNG:
            prepared.reference = [
                run_trusted(question.reference, question.expect, run, device) for run in prepared.runs
            ]
    except Exception as err:  # an author's bug: reported by checks that need the reference
        prepared.reference_error = f"the reference solution failed: {type(err).__name__}: {err}"
    return prepared


def _extend(prepared: PreparedQuestion, total_runs: int) -> PreparedQuestion:
    question = prepared.question
    first = {run.trial: run for run in reversed(prepared.runs)}
    declared = {t: trial.repeat for t, trial in enumerate(question.trials)}
    extra = [
        PreparedRun(
            trial=t,
            repeat=r,
            bind=dict(run.bind),
            seed=derive_seed(question.id, t, r, "run"),
            given=run.given,
            probes=run.probes,
        )
        for t, run in sorted(first.items())
        for r in range(declared[t], -(-declared[t] * total_runs // len(prepared.runs)))
    ]
    longer = PreparedQuestion(
        question=question,
        runs=prepared.runs + extra,
        reference_error=prepared.reference_error,
        device=prepared.device,
    )
    if prepared.reference_error is None:
        try:
            with _TRUSTED_RNG:
                added = [run_trusted(question.reference, question.expect, run, prepared.device) for run in extra]
            longer.reference = prepared.reference + added
        except Exception as err:
            longer.reference_error = f"the reference solution failed: {type(err).__name__}: {err}"
    return longer


# --------------------------------------------------------------------------- trusted execution


def _copy_given(value: Value, device: str) -> Any:
    """A private copy of a given value, as a live object the trusted code can use."""
    if isinstance(value, torch.Tensor):
        copy = value.detach().clone().to(device)
        return copy.requires_grad_(value.requires_grad)
    if isinstance(value, ModuleValue):
        module = nn.Module()
        for name, weight in value.embeddings.items():
            embedding = nn.Embedding(weight.shape[0], weight.shape[1]).to(device)
            with torch.no_grad():
                embedding.weight.copy_(weight)
            setattr(module, name, embedding)
        return module
    return value


def summarise(value: Any) -> Value:
    """What crosses back from trusted execution: tensors detached on CPU, modules summarised."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, nn.Module):
        params = list(value.parameters())
        return ModuleSummary(
            class_name=type(value).__name__,
            trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
            total_parameters=sum(p.numel() for p in params),
        )
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return OpaqueValue(type_name=type(value).__name__)


def run_trusted(source: str, expect: list[str], run: PreparedRun, device: str = "cpu") -> dict[str, Value]:
    """Run trusted code (a reference solution) on ``run``'s inputs with its seed.

    Grad and call probes run too, so ``close`` and ``gradient compare: reference`` checks can
    compare against them; fit probes are left out (no check compares a fit to the reference).
    Givens are bound as the sandbox binds them (tensors that require grad as outputs of a
    computation, gradients taken with respect to the leaves behind them).
    """
    copies = {name: _copy_given(v, device) for name, v in run.given.items()}
    leaves = {n: v for n, v in copies.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "F": F}
    namespace.update({n: as_computed(leaves[n]) if n in leaves else v for n, v in copies.items()})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        exec(compile(source, "<reference>", "exec"), namespace)  # noqa: S102 - trusted bank code
    missing = [name for name in expect if name not in namespace]
    if missing:
        raise RuntimeError(f"never assigned {', '.join(missing)}")
    outputs: dict[str, Value] = {name: summarise(namespace[name]) for name in expect}
    for probe in run.probes:
        if probe.kind == "grad":
            of = namespace[probe.target]
            inputs = [leaves.get(w, copies[w]) for w in probe.wrt]  # as in the sandbox: the leaves
            grads = torch.autograd.grad(of.sum(), inputs, allow_unused=True, retain_graph=True)
            for w, g in zip(probe.wrt, grads):
                outputs[grad_output_name(probe.target, w)] = None if g is None else g.detach().cpu()
        elif probe.kind == "call":
            fn = namespace[probe.target]
            if isinstance(fn, nn.Module):
                fn.train(probe.train_mode)
            with torch.no_grad():
                result = fn(*[a.to(device) for a in probe.args])
            outputs[probe.as_] = summarise(result)
    return outputs
