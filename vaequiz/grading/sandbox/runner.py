"""What the sandboxed child does with a decoded request: bind, seed, run, probe, report.

This code runs in the untrusted child after the limits are applied, so it assumes nothing the
snippet could have changed is still intact; its output is only ever read through the strict
decoder of :mod:`wire`. It knows nothing about processes or limits (see :mod:`worker`).
"""

from __future__ import annotations

import builtins
import os
import random
import sys
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaequiz.grading.sandbox import wire
from vaequiz.grading.sandbox.api import ModuleValue, as_computed

_hard_exit = os._exit
"""Bound at import, so a snippet that replaces ``os._exit`` cannot keep its process alive."""

ALLOWED_PACKAGES = ("torch", "numpy", "einops")
"""What a snippet may import besides the standard library (README, "Code questions"). Packages
that happen to be installed next to the grader differ from machine to machine, so an answer
relying on one would pass here and fail elsewhere; this is a rule for answers, not a security
boundary (the process's isolation limits what the standard library can reach)."""

_real_import = builtins.__import__


def _import_for_answers(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """``__import__`` for the snippet's own code: refuses packages outside the allowed ones."""
    top = name.partition(".")[0]
    if level == 0 and top not in ALLOWED_PACKAGES and top not in sys.stdlib_module_names:
        raise ImportError(
            f"answers may import only {', '.join(ALLOWED_PACKAGES)} and the Python standard "
            f"library; {top!r} is not available",
            name=name,
        )
    return _real_import(name, globals, locals, fromlist, level)


ANSWER_BUILTINS = types.ModuleType("builtins")
"""The snippet's builtins: Python's own, with imports limited to :data:`ALLOWED_PACKAGES`."""
ANSWER_BUILTINS.__dict__.update(builtins.__dict__)
ANSWER_BUILTINS.__import__ = _import_for_answers  # type: ignore[attr-defined]

SNIPPET_FILENAME = "<snippet>"
MAX_MESSAGE = 300
_MEMORY_MARKERS = ("can't allocate memory", "not enough memory", "out of memory")


def describe_error(err: BaseException) -> str:
    """One line a student can act on, with the line number in their own source."""
    line = None
    if isinstance(err, SyntaxError) and err.filename == SNIPPET_FILENAME:
        line = err.lineno
        text = f"{type(err).__name__}: {err.msg}"
    else:
        frame = err.__traceback__
        while frame is not None:
            if frame.tb_frame.f_code.co_filename == SNIPPET_FILENAME:
                line = frame.tb_lineno
            frame = frame.tb_next
        if isinstance(err, SystemExit):
            text = "SystemExit: the snippet called exit()"
        else:
            try:
                detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            except Exception:
                detail = ""
            name = type(err).__name__
            text = f"{name}: {detail}" if detail else name
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return f"{text} (line {line})" if line else text


def is_memory_error(err: BaseException) -> bool:
    """Whether the snippet failed because the memory limit refused an allocation."""
    if isinstance(err, MemoryError):
        return True
    try:
        message = str(err).lower()
    except Exception:
        return False
    return isinstance(err, RuntimeError) and any(m in message for m in _MEMORY_MARKERS)


def module_from(value: ModuleValue) -> nn.Module:
    """A plain ``nn.Module`` whose attributes are ``nn.Embedding`` tables with the given weights."""
    module = nn.Module()
    for name, weight in value.embeddings.items():
        # from_pretrained skips the random initialisation that the weights replace anyway;
        # the clone keeps one run's in-place edits away from the next.
        setattr(module, name, nn.Embedding.from_pretrained(weight.detach().clone(), freeze=False))
    return module


def seed_everything(seed: int, device: str) -> None:
    """Seed torch's generators for ``device`` and Python's ``random``.

    ``torch.manual_seed`` would also probe every accelerator backend, which costs more than a
    whole trivial snippet; on CPU the default generator is the only one a snippet can use.
    """
    torch.default_generator.manual_seed(seed)
    if device == "cuda":
        torch.cuda.manual_seed_all(seed)
    random.seed(seed)


def bind(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Fresh copies for one run (runs of a trial share their decoded inputs, and one run's
    in-place edits must not reach the next), and the leaf behind each tensor that requires
    grad: the snippet gets that tensor as the output of a computation (:func:`as_computed`),
    gradient probes differentiate with respect to the leaf."""
    fresh = {name: _fresh(value) for name, value in given.items()}
    leaves = {n: v for n, v in fresh.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    return {n: as_computed(leaves[n]) if n in leaves else v for n, v in fresh.items()}, leaves


def _fresh(value: Any) -> Any:
    if isinstance(value, ModuleValue):
        return module_from(value)
    if isinstance(value, torch.Tensor):
        copy = value.detach().clone()
        return copy.requires_grad_(value.requires_grad) if copy.is_floating_point() else copy
    return value


class Execution:
    """Runs every requested run of one snippet and collects plain outcome dicts."""

    def __init__(self, source: str, expect: list[str], device: str = "cpu") -> None:
        self.expect = expect
        self.device = device
        self.pid = os.getpid()
        self.memory_exceeded = False
        self.code = None
        self.compile_error: str | None = None
        try:
            self.code = compile(source, SNIPPET_FILENAME, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
            self.compile_error = describe_error(err)

    def _only_in_the_runner(self) -> None:
        """A process the snippet forked has no say in the results: it ends here, silently."""
        if os.getpid() != self.pid:
            _hard_exit(0)

    def _failed(self, err: BaseException) -> str:
        if is_memory_error(err):
            self.memory_exceeded = True
        return describe_error(err)

    def run(self, seed: int, given: dict[str, Any], probes: list[dict[str, Any]]) -> dict[str, Any]:
        outcome: dict[str, Any] = {"outputs": {}, "missing": [], "error": None, "probe_errors": {}}
        if self.code is None:
            outcome["error"] = self.compile_error
            outcome["missing"] = list(self.expect)
            return outcome
        bound, leaves = bind(given)
        namespace: dict[str, Any] = {
            "__builtins__": ANSWER_BUILTINS,
            "__name__": "__snippet__",
            "torch": torch,
            "nn": nn,
            "F": F,
            **bound,
        }
        seed_everything(seed, self.device)
        try:
            exec(self.code, namespace)
        except BaseException as err:  # the snippet's own failure, reported to the student
            self._only_in_the_runner()
            outcome["error"] = self._failed(err)
        self._only_in_the_runner()
        for name in self.expect:
            if name in namespace:
                outcome["outputs"][name] = namespace[name]
            else:
                outcome["missing"].append(name)
        if outcome["error"] is None:
            for probe in probes:
                self._probe(probe, namespace, leaves, outcome)
        outputs = outcome["outputs"]
        for name, value in outputs.items():
            if type(value) in wire.PLAIN_TENSORS and value.requires_grad:
                # the probes are done: the values travel without their graph, and the graph
                # (a given module's cloned tables, for one) is freed now, not after every run
                outputs[name] = value.detach()
        return outcome

    def _probe(
        self, probe: dict[str, Any], namespace: dict[str, Any], leaves: dict[str, Any], out: dict
    ) -> None:
        kind = probe["kind"]
        target = namespace.get(probe["target"])
        if kind == "grad":
            self._grad(probe["target"], target, probe["wrt"], leaves, out)
            return
        name = probe["as_"]
        try:
            if kind == "call":
                out["outputs"][name] = _call(target, probe)
            elif kind == "fit":
                out["outputs"][name] = _fit(target, probe)
            else:
                out["probe_errors"][name] = f"unknown probe {kind!r}"
        except BaseException as err:
            out["probe_errors"][name] = self._failed(err)

    def _grad(
        self, of_name: str, of: Any, wrt: list[str], leaves: dict[str, Any], out: dict
    ) -> None:
        names = {w: f"grad__{of_name}__{w}" for w in wrt}
        sources = {w: leaves.get(w) for w in wrt}
        if not isinstance(of, torch.Tensor):
            for w, name in names.items():
                out["probe_errors"][name] = f"{of_name} is not a tensor, so no gradient reaches {w}"
            return
        usable = [w for w, t in sources.items() if isinstance(t, torch.Tensor) and t.requires_grad]
        for w in wrt:
            if w not in usable:
                out["probe_errors"][names[w]] = f"{w} is not a given tensor that requires grad"
        if not usable:
            return
        if not of.requires_grad:
            for w in usable:
                out["outputs"][names[w]] = None
                out["probe_errors"][names[w]] = f"no gradient flows from {of_name} to {w}"
            return
        try:
            grads = torch.autograd.grad(of.sum(), [sources[w] for w in usable], allow_unused=True)
        except BaseException as err:
            message = self._failed(err)
            for w in usable:
                out["probe_errors"][names[w]] = message
            return
        for w, grad in zip(usable, grads, strict=True):
            out["outputs"][names[w]] = grad
            if grad is None:
                out["probe_errors"][names[w]] = f"no gradient flows from {of_name} to {w}"


def _call(fn: Any, probe: dict[str, Any]) -> Any:
    if not callable(fn):
        raise TypeError(f"{probe['target']} is not callable")
    with torch.no_grad():
        if isinstance(fn, nn.Module):
            fn.train(bool(probe["train_mode"]))
        return fn(*probe["args"])


def _fit(fn: Any, probe: dict[str, Any]) -> Any:
    if not isinstance(fn, nn.Module):
        raise TypeError(f"{probe['target']} is not an nn.Module, so it cannot be trained")
    params = [p for p in fn.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{probe['target']} has no trainable parameters")
    inputs, targets = probe["args"][0], probe["args"][1]
    loss_fn = F.binary_cross_entropy if probe["loss"] == "bce" else F.mse_loss
    stop = probe.get("stop_below")
    return train_and_predict(
        fn, params, inputs, targets, loss_fn, float(probe["lr"]), int(probe["steps"]),
        stop_below=None if stop is None else float(stop),
    )


def train_and_predict(
    module: Any,
    params: list[Any],
    inputs: Any,
    targets: Any,
    loss_fn: Any,
    lr: float,
    steps: int,
    stop_below: float | None = None,
) -> torch.Tensor:
    """The fit probe's training: ``steps`` of Adam on ``params``, then the eval-mode prediction.
    One function, so the sandbox and the rebuilt program fit alike.

    With ``stop_below``, training ends as soon as the eval-mode prediction (what the grader
    judges) has a loss below it: a decoder fits the probe's batch in a handful of steps, and the
    remaining steps cannot turn that into a failure worth reporting. The training-mode loss,
    computed anyway, says when to look, so a model whose eval mode differs (dropout, batch
    statistics) is only ever stopped on its eval-mode loss.
    """
    optimizer = adam(params, lr)
    module.train(True)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(module(inputs).reshape(targets.shape), targets)
        if stop_below is not None and float(loss.detach()) < stop_below:
            prediction = _predict(module, inputs, targets)
            if float(loss_fn(prediction, targets)) < stop_below:
                return prediction
            module.train(True)
        loss.backward()
        optimizer.step()
    return _predict(module, inputs, targets)


def _predict(module: Any, inputs: Any, targets: Any) -> torch.Tensor:
    """The module's eval-mode prediction on ``inputs``, shaped like ``targets``."""
    module.train(False)
    with torch.no_grad():
        return module(inputs).reshape(targets.shape)


def adam(params: list[Any], lr: float) -> torch.optim.Optimizer:
    """Adam with its update fused into one kernel per step where torch supports the parameters
    (the same update rule; a third less time for a decoder of 0.3M parameters), plain otherwise
    (complex parameters, an older torch)."""
    if all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr)


def execute(request: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Every run of the request in order, as a plain document for :func:`wire.encode`."""
    execution = Execution(request["source"], list(request["expect"]), device)
    runs = [execution.run(r["seed"], r["given"], r["probes"]) for r in request["runs"]]
    return {"runs": runs, "memory_exceeded": execution.memory_exceeded}
