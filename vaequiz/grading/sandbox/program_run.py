"""Rebuild a captured program and measure it, on the trusted side (a process that runs no
student Python).

:func:`measure_run` is the trusted counterpart of one run of :class:`runner.Execution`: it binds
the hidden inputs itself (never the ones the program shipped), replays the program's ops with
the run's seed, and takes every measurement here: the expected values, gradients (with
``torch.autograd.grad`` of this process), module calls, and training steps for a fit, where
the program's parameters are leaves of a :class:`RebuiltModule` that Adam steps. The result is a
:class:`api.RunOutcome`, so checks read it exactly as they read the sandbox's.

Every op is re-checked as it runs: its outputs must have the dtypes and shapes the program
declared, or the program is refused ("could not measure"). Ops whose memory starts
uninitialised are zero-filled, so nothing of this process leaks into a value.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaequiz.grading.sandbox import wire
from vaequiz.grading.sandbox.api import ModuleSummary, ModuleValue, OpaqueValue, ProbeRequest, RunOutcome, Value
from vaequiz.grading.sandbox.program_format import (
    ZERO_FILLED,
    decode_program,
    graph_label,
    Graph,
    ModuleProgram,
    Program,
    ProgramRefused,
)
from vaequiz.grading.sandbox.runner import train_and_predict


class NotCaptured(Exception):
    """The snippet could not be captured as a program; measure it in-process and say so."""


class ModuleRaised(Exception):
    """The student's module raised when traced for this call; ``str(err)`` is its message."""


def run_graph(
    graph: Graph, bindings: dict[tuple[str, str], Any], device: str | torch.device = "cpu"
) -> list[Any]:
    """Every value of ``graph`` (inputs, constants, node outputs) after replaying its ops."""
    values: list[Any] = []
    for spec in graph.inputs:
        bound = bindings.get((spec.kind, spec.name))
        if not isinstance(bound, torch.Tensor):
            raise ProgramRefused(f"{graph.label}: the program needs {spec.kind} {spec.name!r}, which does not exist")
        if bound.dtype != spec.dtype or tuple(bound.shape) != spec.shape:
            raise ProgramRefused(f"{graph.label}: {spec.name} does not have the dtype and shape the program declares")
        values.append(bound)
    values += [c.clone().to(device) for c in graph.consts]
    target = torch.device(device)
    for index, node in enumerate(graph.nodes):
        args = [_resolve(a, values, target) for a in node.args]
        kwargs = {k: _resolve(v, values, target) for k, v in node.kwargs.items()}
        if node.op is None:
            _set_rng_state(args[0], f"{graph.label} node {index}")
            continue
        try:
            with torch.set_grad_enabled(node.grad_enabled):
                result = node.op(*args, **kwargs)
        except Exception as err:
            raise ProgramRefused(
                f"{graph.label} node {index} ({node.name}) failed when replayed: {type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}"
            ) from None
        flat = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(flat) != len(node.outs):
            raise ProgramRefused(f"{graph.label} node {index} ({node.name}) returned {len(flat)} values, not {len(node.outs)}")
        if node.name.split(".")[1] in ZERO_FILLED:
            with torch.no_grad():
                flat[0].zero_()
        for item, declared in zip(flat, node.outs):
            _check_declared(item, declared, f"{graph.label} node {index} ({node.name})")
        values += flat
    return values


def _set_rng_state(state: Any, where: str) -> None:
    """Put the default generator where the snippet put it (only ever a CPU generator state)."""
    valid = isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1
    try:
        if not valid:
            raise ValueError("not a uint8 vector")
        torch.default_generator.set_state(state.clone())
    except (RuntimeError, ValueError) as err:
        raise ProgramRefused(f"{where}: not a generator state ({str(err)[:80]})") from None


def _check_declared(item: Any, declared: tuple[Any, ...], where: str) -> None:
    if declared[0] == "tensor":
        ok = isinstance(item, torch.Tensor) and item.dtype == declared[1] and tuple(item.shape) == declared[2]
    elif declared[0] == "scalar":
        ok = type(item) in (bool, int, float)
    else:
        ok = item is None
    if not ok:
        raise ProgramRefused(f"{where} did not produce what the program declares")


def _resolve(arg: Any, values: list[Any], device: torch.device) -> Any:
    if type(arg) is tuple:
        if arg[0] == "ref":
            return values[arg[1]]
        if arg[0] == "refs":
            return [None if a is None else values[a[1]] for a in arg[1]]
        if arg[0] == "device":
            return device
    return arg


def _output(graph: Graph, name: str, values: list[Any], modules: dict[str, ModuleProgram]) -> Value:
    tag, payload = graph.outputs[name]
    if tag == "t":
        return values[payload]
    if tag == "n":
        return payload if type(payload) is not str else OpaqueValue("str")
    if tag == "module":
        module = modules[payload]
        counts = {n: t.numel() for n, t in module.state.items()}
        trainable = sum(counts[n] for n in module.trainable)
        return ModuleSummary(module.class_name, trainable, sum(counts.values()))
    return OpaqueValue(payload)


class RebuiltModule(nn.Module):
    """A student's module rebuilt from its program: parameters are leaves here, so an optimizer
    steps them; buffers are shared by every graph, so state (BatchNorm statistics) carries over
    from call to call as in the original. ``forward`` replays the graph traced for the current
    mode, grad mode and argument shapes."""

    def __init__(self, program: ModuleProgram, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.program = program
        self.device_ = torch.device(device)
        self.params = nn.ParameterList()
        self.state: dict[str, torch.Tensor] = {}
        for name, tensor in program.state.items():
            copy = tensor.detach().clone().to(device)
            if name in program.trainable:
                param = nn.Parameter(copy)
                self.params.append(param)
                self.state[name] = param
            else:
                self.register_buffer(f"buffer{len(self.state)}", copy)
                self.state[name] = copy
        self.graphs = {g.label: g for g in program.graphs}

    def forward(self, *args: torch.Tensor) -> Any:
        label = graph_label(self.training, torch.is_grad_enabled(), args)
        if label in self.program.failures:
            raise ModuleRaised(self.program.failures[label])
        graph = self.graphs.get(label)
        if graph is None:
            raise ProgramRefused(f"the program has no graph for a call {label}")
        bindings: dict[tuple[str, str], Any] = {("state", n): t for n, t in self.state.items()}
        bindings.update({("arg", str(i)): a for i, a in enumerate(args)})
        values = run_graph(graph, bindings, self.device_)
        return _output(graph, "out", values, {})


def _bindings(given: dict[str, Value], device: str) -> tuple[dict[tuple[str, str], Any], dict[str, torch.Tensor]]:
    """Fresh trusted copies of the hidden inputs: program bindings, leaves for gradients."""
    bindings: dict[tuple[str, str], Any] = {}
    leaves: dict[str, torch.Tensor] = {}
    for name, value in given.items():
        if isinstance(value, torch.Tensor):
            copy = value.detach().clone().to(device)
            if value.requires_grad and copy.is_floating_point():
                copy.requires_grad_(True)
                leaves[name] = copy
            bindings[("given", name)] = copy
        elif isinstance(value, ModuleValue):
            for attr, weight in value.embeddings.items():
                bindings[("given", f"{name}.{attr}")] = weight.detach().clone().to(device).requires_grad_(True)
    return bindings, leaves


def measure_run(
    program: Program,
    given: dict[str, Value],
    seed: int,
    probes: Sequence[Any] = (),
    device: str = "cpu",
) -> RunOutcome:
    """One run measured from the program: outputs, gradients, calls and fits.

    Raises :class:`NotCaptured` when the program says the snippet could not be captured, and
    :class:`ProgramRefused` when the program cannot be measured.
    """
    if program.unsupported:
        raise NotCaptured(program.unsupported)
    outcome = RunOutcome(missing=tuple(program.missing), error=program.error)
    if program.main is None:
        return outcome
    bindings, leaves = _bindings(given, device)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        values = run_graph(program.main, bindings, device)
        live = {name: _output(program.main, name, values, program.modules) for name in program.main.outputs}
        outcome.outputs = {n: v.detach().cpu() if isinstance(v, torch.Tensor) else v for n, v in live.items()}
        if program.error is None:
            modules = {n: RebuiltModule(m, device) for n, m in program.modules.items()}
            for probe in probes:
                _probe(probe, live, modules, leaves, outcome)
    return outcome


def _probe(probe: Any, live: dict[str, Any], modules: dict[str, RebuiltModule], leaves: dict, out: RunOutcome) -> None:
    if probe.kind == "grad":
        _grad(probe.target, live.get(probe.target), probe.wrt, leaves, out)
        return
    name = probe.as_
    module = modules.get(probe.target)
    try:
        if module is None:
            raise TypeError(
                f"{probe.target} is not an nn.Module, so it cannot be "
                + ("trained" if probe.kind == "fit" else "called")
            )
        result = _call(module, probe) if probe.kind == "call" else _fit(module, probe)
        out.outputs[name] = result.detach().cpu() if isinstance(result, torch.Tensor) else result
    except ModuleRaised as err:
        out.probe_errors[name] = str(err)
    except ProgramRefused:
        raise
    except Exception as err:
        out.probe_errors[name] = f"{type(err).__name__}: {str(err)[:200]}"


def _grad(of_name: str, of: Any, wrt: Sequence[str], leaves: dict[str, torch.Tensor], out: RunOutcome) -> None:
    """As :meth:`runner.Execution._grad`, on the rebuilt values and this process's autograd."""
    names = {w: f"grad__{of_name}__{w}" for w in wrt}
    if not isinstance(of, torch.Tensor):
        for w, name in names.items():
            out.probe_errors[name] = f"{of_name} is not a tensor, so no gradient reaches {w}"
        return
    usable = [w for w in wrt if w in leaves]
    for w in wrt:
        if w not in usable:
            out.probe_errors[names[w]] = f"{w} is not a given tensor that requires grad"
    if not usable:
        return
    if not of.requires_grad:
        for w in usable:
            out.outputs[names[w]] = None
            out.probe_errors[names[w]] = f"no gradient flows from {of_name} to {w}"
        return
    grads = torch.autograd.grad(of.sum(), [leaves[w] for w in usable], allow_unused=True)
    for w, grad in zip(usable, grads):
        out.outputs[names[w]] = None if grad is None else grad.detach().cpu()
        if grad is None:
            out.probe_errors[names[w]] = f"no gradient flows from {of_name} to {w}"


def _call(module: RebuiltModule, probe: Any) -> Any:
    with torch.no_grad():
        module.train(bool(probe.train_mode))
        return module(*[a.to(module.device_) for a in probe.args])


def _fit(module: RebuiltModule, probe: Any) -> Any:
    """As ``runner._fit``: Adam on the rebuilt parameters, then the eval-mode prediction."""
    params = list(module.params)
    if not params:
        raise ValueError(f"{probe.target} has no trainable parameters")
    inputs, targets = (a.to(module.device_) for a in probe.args[:2])
    loss_fn = F.binary_cross_entropy if probe.loss == "bce" else F.mse_loss
    return train_and_predict(
        module, params, inputs, targets, loss_fn, float(probe.lr), int(probe.steps), stop_below=probe.stop_below
    )


# --------------------------------------------------------------------------- the sandbox's measure mode

_LENGTH = 4


def measure_body(request: bytes, captured: bytes | memoryview) -> bytes:
    """What a measuring child reads: the request (hidden inputs, probes) and the capture's
    answer, each length-prefixed."""
    parts = [bytes(request), bytes(captured)]
    return b"".join(len(p).to_bytes(_LENGTH, "little") + p for p in parts)


def _split(body: bytes) -> tuple[memoryview, memoryview]:
    """The request and the capture's answer, as views of ``body`` (a decoder's programs are
    megabytes: each copy would cost a child fresh pages)."""
    view = memoryview(body)
    parts, at = [], 0
    for _ in range(2):
        if at + _LENGTH > len(body):
            raise ProgramRefused("the capture's answer is cut short")
        size = int.from_bytes(body[at : at + _LENGTH], "little")
        at += _LENGTH
        if at + size > len(body):
            raise ProgramRefused("the capture's answer is cut short")
        parts.append(view[at : at + size])
        at += size
    if at != len(body):
        raise ProgramRefused("the capture's answer has bytes after its end")
    return parts[0], parts[1]


def _probe_request(doc: dict[str, Any]) -> ProbeRequest:
    return ProbeRequest(**{**doc, "wrt": tuple(doc["wrt"]), "args": tuple(doc["args"])})


def _programs(captured: memoryview, runs: int) -> tuple[list[memoryview], bool]:
    """The encoded program of each run and the memory flag, from the capture's answer."""
    try:
        doc = wire.decode(captured)
    except wire.WireError as err:
        raise ProgramRefused(f"the capture's answer is not a well-formed message ({err})") from None
    ok = type(doc) is dict and set(doc) == {"programs", "memory_exceeded"}
    programs = doc["programs"] if ok else None
    if not (
        type(programs) is list
        and len(programs) == runs
        and all(type(p) is torch.Tensor and p.dtype == torch.uint8 and p.dim() == 1 for p in programs)
        and type(doc["memory_exceeded"]) is bool
    ):
        raise ProgramRefused(f"the capture did not hand over one program for each of the {runs} runs")
    return [memoryview(p.numpy()) for p in programs], doc["memory_exceeded"]


def measure_request(body: bytes, device: str = "cpu") -> dict[str, Any]:
    """The sandbox's measure mode, in a child that never ran student Python: decode every
    run's program strictly, replay it on this process's own copy of the hidden inputs with the
    run's seed, take every measurement. The document has the fields of ``runner.execute``'s,
    plus ``unsupported`` (a run could not be captured: the grader falls back to measuring
    values in the snippet's process) and ``refused`` (the program cannot be measured)."""
    doc: dict[str, Any] = {"runs": [], "memory_exceeded": False, "unsupported": None, "refused": None}
    try:
        request_bytes, captured = _split(body)
        request = wire.decode(request_bytes, device=device, restore_grad=True)
        blobs, doc["memory_exceeded"] = _programs(captured, len(request["runs"]))
        for run, blob in zip(request["runs"], blobs):
            program = decode_program(blob)
            if program.unsupported:
                doc["unsupported"] = program.unsupported
                doc["runs"] = []
                break
            probes = [_probe_request(p) for p in run["probes"]]
            outcome = measure_run(program, run["given"], run["seed"], probes, device)
            doc["runs"].append(
                {
                    "outputs": outcome.outputs,
                    "missing": list(outcome.missing),
                    "error": outcome.error,
                    "probe_errors": outcome.probe_errors,
                }
            )
    except ProgramRefused as err:
        doc["runs"], doc["refused"] = [], str(err)[:400]
    except RecursionError:
        doc["runs"], doc["refused"] = [], "could not measure: the program is nested too deeply"
    except Exception as err:  # replaying a hostile program may fail in ways no check foresaw
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        doc["runs"], doc["refused"] = [], f"could not measure: {type(err).__name__}: {detail}"
    return doc
