"""Program capture, on the untrusted side: run a snippet once and record what it computed.

The snippet runs as the sandbox runs it (same builtins, binding and seeding) under a
:class:`torch.utils._python_dispatch.TorchDispatchMode` that records every ATen call below
autograd: the op, its arguments (earlier values by reference, literals, dtypes, sizes), the
grad mode it ran under and the dtype and shape of what it returned. The result is a program in
the form of :mod:`program_format`; a trusted process rebuilds and measures it
(:mod:`program_run`). Nothing measured here is believed: the trusted side only ever runs the
ops, so a snippet that tampers with this recorder can only change which program it hands
over, and the program is what gets measured.

Why a dispatch mode rather than ``torch.export`` or ``make_fx``:

* ``torch.export`` traces a function of tensors with Dynamo; snippets are top-level statements
  that loop over rows (``for row in flat_z``), call ``int()``/``.numpy()`` on data, import
  numpy and einops. Export refuses data-dependent control flow and graph breaks, so most of the
  corpus would fall back. It also needs an ``nn.Module`` or a function, and most answers are
  neither.
* ``make_fx`` (default, ``pre_dispatch=False``) sees the same ATen ops as a dispatch mode, but
  drops the grad mode: ops run under ``torch.no_grad()``, and a custom ``autograd.Function``'s
  forward (which runs with grad disabled), come out as ordinary differentiable ops, so a
  detached ``z`` would be rebuilt with a gradient: an unfaithful trace that passes a wrong
  answer. Recording ``torch.is_grad_enabled()`` per op keeps it faithful; the mode is also 150
  lines whose every rule (constants, aliasing, the allow list) is visible here.

Data-dependent control flow is specialised to the traced inputs (a Python loop over rows
unrolls, ``.item()`` becomes a literal), which is what a trial needs: the trusted side replays
the program on the same hidden inputs. Randomness (``randn_like``, ``normal_``, ``randint``,
``multinomial``, ``bernoulli_``, dropout) stays ops, so replaying with a repeat's seed draws
fresh numbers. A tensor the recorder never saw produced (``.data``, ``torch.from_numpy``, a
value computed with the mode disabled) enters the program as a constant: its value is the
snippet's, and no gradient flows through it, which is the conservative reading.

A snippet whose values cannot be expressed this way (an op outside the allow list, a tensor
subclass, a generator argument, too many ops) yields a program marked ``unsupported`` with the
reason; the grader then measures it in-process and says so (``measured in-process``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vaequiz.grading.sandbox import wire
from vaequiz.grading.sandbox.api import ModuleValue, as_computed
from vaequiz.grading.sandbox.program_format import (
    FORMAT,
    RANDOM_OPS,
    SET_RNG_STATE,
    MAX_NODES,
    MEMORY_FORMATS,
    allowed_overload,
    chunked,
    graph_label,
    encode_program,
    op_name,
)
from vaequiz.grading.sandbox.runner import (
    ANSWER_BUILTINS,
    SNIPPET_FILENAME,
    describe_error,
    is_memory_error,
    module_from,
    seed_everything,
)

_TENSOR_TYPES = wire.PLAIN_TENSORS
_hard_exit = os._exit
"""Bound at import, so a snippet that replaces ``os._exit`` cannot keep a forked copy going."""
_MEMORY_FORMAT_NAMES = {v: k for k, v in MEMORY_FORMATS.items()}
MAX_CONSTS = wire.MAX_ITEMS


class _Unsupported(Exception):
    """This value or op cannot be part of a program."""


class GraphBuilder:
    """One graph under construction: inputs, constants, recorded nodes, named outputs."""

    def __init__(self, label: str, train: bool = False) -> None:
        self.label = label
        self.train = train
        self.inputs: list[list[Any]] = []
        self.consts: list[torch.Tensor] = []
        self.ops: list[str] = []
        self.op_index: dict[str, int] = {}
        self.nodes: list[list[Any]] = []
        self.outputs: dict[str, list[Any]] = {}
        self.count = 0
        self.tracked: dict[int, tuple[torch.Tensor, int]] = {}
        """id(tensor) -> (tensor, value): the tensor is held so its id stays unique."""
        self.by_memory: dict[tuple[Any, ...], tuple[torch.Tensor, int]] = {}
        """Where a tracked tensor's elements lie -> (tensor, its newest value): see :meth:`ref`."""
        self.const_values: list[int] = []
        self.unsupported: str | None = None

    def add_input(self, kind: str, name: str, tensor: torch.Tensor, grad: bool = False) -> int:
        if self.consts or self.nodes:
            raise RuntimeError("inputs come before constants and nodes")
        self.inputs.append([kind, name, wire.DTYPE_NAMES[tensor.dtype], list(tensor.shape), grad])
        return self._track(tensor)

    def _track(self, tensor: torch.Tensor) -> int:
        value = self.count
        self.count += 1
        self.tracked[id(tensor)] = (tensor, value)
        key = _memory_key(tensor)
        if key is not None:
            self.by_memory[key] = (tensor, value)
        return value

    def ref(self, tensor: torch.Tensor) -> int:
        """The value holding ``tensor``; a tensor never seen before becomes a constant.

        A new tensor object over exactly the elements of a tracked tensor that carries no
        gradient is that tensor's value: ``nn.Parameter(torch.empty(...))`` wraps the recorded
        ``empty`` this way, and a module's initialisation then fills it in place. Without this,
        every parameter would also travel as a constant of uninitialised memory (half of a
        decoder's program). An alias of a tensor that carries a gradient (``mu.data``) stays a
        constant: the alias has cut the gradient, and the program must too.
        """
        known = self.tracked.get(id(tensor))
        if known is not None and known[0] is tensor:
            return known[1]
        key = _memory_key(tensor)
        same = self.by_memory.get(key) if key is not None else None
        if same is not None and not same[0].requires_grad:
            self.tracked[id(tensor)] = (tensor, same[1])
            return same[1]
        if type(tensor) not in _TENSOR_TYPES or tensor.layout != torch.strided:
            raise _Unsupported(f"a {type(tensor).__name__} ({tensor.layout}) cannot be captured")
        if tensor.dtype not in wire.DTYPE_NAMES:
            raise _Unsupported(f"tensors of dtype {tensor.dtype} cannot be captured")
        if len(self.consts) >= MAX_CONSTS:
            raise _Unsupported(f"more than {MAX_CONSTS} constant tensors")
        # Constants are numbered after the inputs and before every node: renumbering nodes
        # would cost a pass, so a constant met mid-graph is numbered now and placed later.
        value = self._track(tensor)
        self.consts.append(tensor.detach().clone())
        self.const_values.append(value)
        return value

    def arg(self, value: Any) -> list[Any]:
        """The tagged form of one op argument."""
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            if kind is str and len(value) > 64:
                raise _Unsupported("a long string argument")
            return ["n", value]
        if isinstance(value, torch.Tensor):
            return ["t", self.ref(value)]
        if kind in (list, tuple):
            if any(isinstance(v, torch.Tensor) for v in value):
                return ["T", [None if v is None else self.ref(v) for v in value]]
            if all(type(v) in (bool, int, float) for v in value):
                return ["l", list(value)]
        if kind is torch.dtype and value in wire.DTYPE_NAMES:
            return ["dtype", wire.DTYPE_NAMES[value]]
        if kind is torch.device:
            return ["device", str(value)]
        if value is torch.strided:
            return ["layout", "strided"]
        if kind is torch.memory_format and value in _MEMORY_FORMAT_NAMES:
            return ["memory_format", _MEMORY_FORMAT_NAMES[value]]
        raise _Unsupported(f"an argument of type {kind.__name__} cannot be captured")

    def record(self, name: str, args: list, kwargs: dict, grad: bool, result: Any) -> None:
        if len(self.nodes) >= MAX_NODES:
            raise _Unsupported(f"more than {MAX_NODES} operations")
        flat = list(result) if isinstance(result, (tuple, list)) else [result]
        outs = []
        for item in flat:
            if isinstance(item, torch.Tensor):
                if item.dtype not in wire.DTYPE_NAMES or item.layout != torch.strided:
                    raise _Unsupported(f"{name} returned a tensor that cannot be captured")
                outs.append(["tensor", wire.DTYPE_NAMES[item.dtype], list(item.shape)])
            elif item is None:
                outs.append(["none"])
            elif type(item) in (bool, int, float):
                outs.append(["scalar"])
            else:
                raise _Unsupported(f"{name} returned a {type(item).__name__}")
        if name not in self.op_index:
            self.op_index[name] = len(self.ops)
            self.ops.append(name)
        self.nodes.append([self.op_index[name], args, kwargs, grad, outs])
        for item in flat:
            if isinstance(item, torch.Tensor):
                self._track(item)
            else:
                self.count += 1

    def output(self, name: str, value: Any, modules: dict[str, Any], capture_module: Any) -> None:
        """Bind the snippet's value of ``name`` as an output of the graph."""
        if isinstance(value, torch.Tensor):
            self.outputs[name] = ["t", self.ref(value)]
        elif value is None or type(value) in (bool, int, float):
            self.outputs[name] = ["n", value]
        elif isinstance(value, nn.Module):
            modules[name] = capture_module(name, value)
            self.outputs[name] = ["module", name]
        else:
            self.outputs[name] = ["opaque", wire._type_name(value)]

    def document(self) -> dict[str, Any]:
        """The graph as a program-format document, values renumbered inputs, consts, nodes."""
        renumber = self._renumbering()
        nodes = [_renumbered_node(node, renumber) for node in self.nodes]
        outputs = {k: _renumbered_arg(v, renumber) for k, v in self.outputs.items()}
        return {
            "label": self.label,
            "train": self.train,
            "inputs": self.inputs,
            "consts": self.consts,
            "ops": self.ops,
            "nodes": chunked(nodes),
            "outputs": outputs,
        }

    def _renumbering(self) -> dict[int, int]:
        """Capture numbers values as met; the format puts constants before every node."""
        order = list(range(len(self.inputs))) + self.const_values
        taken = set(order)
        order += [v for v in range(self.count) if v not in taken]
        return {old: new for new, old in enumerate(order)}


def _memory_key(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """Which elements ``tensor`` views: two live tensors with one key hold the same numbers."""
    if type(tensor) not in _TENSOR_TYPES or tensor.layout != torch.strided or tensor.numel() == 0:
        return None
    return (tensor.device, tensor.dtype, tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))


def _renumbered_arg(arg: list[Any], renumber: dict[int, int]) -> list[Any]:
    if arg[0] == "t":
        return ["t", renumber[arg[1]]]
    if arg[0] == "T":
        return ["T", [None if v is None else renumber[v] for v in arg[1]]]
    return arg


def _renumbered_node(node: list[Any], renumber: dict[int, int]) -> list[Any]:
    index, args, kwargs, grad, outs = node
    return [
        index,
        [_renumbered_arg(a, renumber) for a in args],
        {k: _renumbered_arg(v, renumber) for k, v in kwargs.items()},
        grad,
        outs,
    ]


class Recorder(TorchDispatchMode):
    """Records every ATen call into a :class:`GraphBuilder` and runs it unchanged.

    A call that cannot be recorded marks the builder unsupported (first reason kept) and still
    runs, so the snippet behaves exactly as it would without the recorder.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Keep ``__torch_dispatch__`` unwrapped: torch wraps a mode's hook in a Dynamo guard
        (for modes running under ``torch.compile``), which costs more per op than recording it;
        a capture never runs under ``torch.compile``."""
        return False

    def __init__(self, builder: GraphBuilder) -> None:
        super().__init__()
        self.builder = builder
        self.rng_state = torch.default_generator.get_state()
        """The generator's state after the last recorded draw (or at the start)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        builder = self.builder
        if builder.unsupported is not None:
            return func(*args, **kwargs)
        name = op_name(func)
        try:
            if allowed_overload(name) is None:
                raise _Unsupported(f"operation {name} is not in the allow list")
            encoded_args = [builder.arg(a) for a in args]
            encoded_kwargs = {k: builder.arg(v) for k, v in kwargs.items()}
        except _Unsupported as err:
            builder.unsupported = str(err)
            return func(*args, **kwargs)
        grad = torch.is_grad_enabled()
        random = name.split(".")[1] in RANDOM_OPS
        if random:
            self._follow_generator()
        result = func(*args, **kwargs)
        if random:
            self.rng_state = torch.default_generator.get_state()
        try:
            builder.record(name, encoded_args, encoded_kwargs, grad, result)
        except _Unsupported as err:
            builder.unsupported = str(err)
        return result

    def _follow_generator(self) -> None:
        """Record a state the snippet gave the generator itself (``torch.manual_seed``)."""
        state = torch.default_generator.get_state()
        if not torch.equal(state, self.rng_state):
            try:
                self.builder.record(SET_RNG_STATE, [["t", self.builder.ref(state)]], {}, False, [])
            except _Unsupported as err:
                self.builder.unsupported = str(err)
            self.rng_state = state


def module_calls(name: str, probes: Sequence[Any]) -> list[tuple[bool, bool, tuple[torch.Tensor, ...]]]:
    """(train, grad, args) for each forward the probes on module ``name`` will make.

    A call probe runs once under no_grad; a fit probe runs forward in train mode with grad
    (every step) and once more in eval mode under no_grad (the final prediction).
    """
    calls = []
    for probe in probes:
        if _field(probe, "target") != name:
            continue
        kind, args = _field(probe, "kind"), tuple(_field(probe, "args"))
        if kind == "call":
            calls.append((bool(_field(probe, "train_mode")), False, args))
        elif kind == "fit" and args:
            calls += [(True, True, args[:1]), (False, False, args[:1])]
    return calls


def _field(probe: Any, key: str) -> Any:
    return probe[key] if isinstance(probe, dict) else getattr(probe, key)


def capture_module(module: nn.Module, calls: Sequence[tuple[bool, bool, tuple[torch.Tensor, ...]]]) -> dict[str, Any]:
    """A module program: its parameters and buffers as raw tensors, one graph per call.

    Each call is traced from the same initial state (restored after every trace), which is
    the state the trusted side starts from.
    """
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    state = {n: t.detach().clone() for n, t in {**params, **buffers}.items()}
    graphs, failures, seen = [], {}, set()
    for train, grad, args in calls:
        label = graph_label(train, grad, args)
        if label in seen:
            continue
        seen.add(label)
        builder = GraphBuilder(label, train)
        for n, t in params.items():
            builder.add_input("state", n, t, bool(t.requires_grad))
        for n, t in buffers.items():
            builder.add_input("state", n, t)
        copies = [a.detach().clone() for a in args]
        for i, a in enumerate(copies):
            builder.add_input("arg", str(i), a)
        try:
            module.train(train)
            with torch.set_grad_enabled(grad), Recorder(builder):
                out = module(*copies)
            builder.output("out", out, {}, lambda *_: None)
        except _Unsupported as err:
            builder.unsupported = str(err)
        except BaseException as err:  # the module's own failure, for the probe to report
            failures[label] = describe_error(err)
            continue
        finally:
            with torch.no_grad():
                for n, t in {**params, **buffers}.items():
                    if t.shape == state[n].shape:
                        t.copy_(state[n])
        if builder.unsupported is not None:
            raise _Unsupported(f"{builder.unsupported} (in {type(module).__name__})")
        graphs.append(builder.document())
    if not graphs:
        builder = GraphBuilder("none", False)
        builder.outputs["out"] = ["n", None]
        graphs.append(builder.document())
    return {
        "class_name": wire._type_name(module)[: wire.MAX_TYPE_NAME],
        "state": state,
        "trainable": [n for n, p in params.items() if p.requires_grad and p.is_floating_point()],
        "graphs": graphs,
        "failures": failures,
    }


def capture_run(
    source: str | CodeType,
    expect: Sequence[str],
    given: dict[str, Any],
    seed: int,
    probes: Sequence[Any] = (),
    device: str = "cpu",
    raised: Callable[[BaseException], None] | None = None,
) -> dict[str, Any]:
    """Run ``source`` (text, or the code compiled from it) once on ``given`` with ``seed`` and
    return its program document (``raised`` sees the snippet's own exception, if any)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "unsupported": None,
        "error": None,
        "missing": [],
        "main": None,
        "modules": {},
    }
    try:
        code = source if isinstance(source, CodeType) else compile(source, SNIPPET_FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
        doc["error"] = describe_error(err)
        doc["missing"] = list(expect)
        return doc
    builder = GraphBuilder("main")
    namespace: dict[str, Any] = {"__builtins__": ANSWER_BUILTINS, "__name__": "__snippet__", "torch": torch, "nn": nn, "F": F}
    leaves: dict[str, torch.Tensor] = {}
    try:
        for name, value in given.items():
            if isinstance(value, torch.Tensor):
                copy = value.detach().clone()
                if value.requires_grad and copy.is_floating_point():
                    copy.requires_grad_(True)
                    leaves[name] = copy
                builder.add_input("given", name, copy, bool(copy.requires_grad))
                namespace[name] = copy
            elif isinstance(value, ModuleValue):
                module = module_from(value)
                for attr in value.embeddings:
                    weight = getattr(module, attr).weight
                    builder.add_input("given", f"{name}.{attr}", weight, True)
                namespace[name] = module
            else:
                namespace[name] = value
    except _Unsupported as err:
        doc["unsupported"] = str(err)
        return doc
    seed_everything(seed, device)
    with Recorder(builder):
        for name, leaf in leaves.items():
            namespace[name] = as_computed(leaf)
        try:
            exec(code, namespace)
        except BaseException as err:  # the snippet's own failure, reported to the student
            doc["error"] = describe_error(err)
            if raised is not None:
                raised(err)
    modules: dict[str, Any] = {}
    try:
        for name in expect:
            if name not in namespace:
                doc["missing"].append(name)
                continue
            builder.output(
                name, namespace[name], modules, lambda n, m: capture_module(m, module_calls(n, probes))
            )
    except _Unsupported as err:
        builder.unsupported = builder.unsupported or str(err)
    if builder.unsupported is not None:
        doc["unsupported"] = builder.unsupported
        return doc
    doc["main"] = builder.document()
    doc["modules"] = modules
    return doc


def capture_bytes(*args: Any, **kwargs: Any) -> bytes:
    """:func:`capture_run`, encoded in the program format."""
    return encode_program(capture_run(*args, **kwargs))


def capture_runs(request: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The sandbox's capture mode: every run of a decoded request captured as a program.

    The document (for :func:`wire.encode`) holds each run's encoded program as a uint8 tensor
    and whether the snippet ran out of memory. Nothing in it is believed: the trusted side
    decodes every program strictly and measures it (:func:`program_run.measure_request`). A
    capture that fails for a reason of its own (the snippet broke the recorder) hands over a
    program marked unsupported, which is never measured as a pass for probes.
    """
    pid = os.getpid()
    memory = [False]

    def raised(err: BaseException) -> None:
        if os.getpid() != pid:  # a process the snippet forked has no say: it ends here
            os._exit(0)
        memory[0] = memory[0] or is_memory_error(err)

    programs = []
    try:  # once for every run, as the runner compiles once
        source: str | CodeType = compile(request["source"], SNIPPET_FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        source = request["source"]  # each run's program then carries the error
    for run in request["runs"]:
        try:
            doc = capture_run(
                source, request["expect"], run["given"], run["seed"], run["probes"], device, raised
            )
        except Exception as err:
            doc = _unsupported_doc(f"the capture failed: {type(err).__name__}: {str(err)[:160]}")
        if os.getpid() != pid:
            _hard_exit(0)
        try:
            data = encode_program(doc)
        except Exception as err:
            data = encode_program(_unsupported_doc(f"the program could not be encoded: {type(err).__name__}"))
        programs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return {"programs": programs, "memory_exceeded": memory[0]}


def _unsupported_doc(reason: str) -> dict[str, Any]:
    return {"format": FORMAT, "unsupported": reason, "error": None, "missing": [], "main": None, "modules": {}}


# --------------------------------------------------------------------------- subprocess entry


def capture_request(source: str, expect: Sequence[str], runs: Sequence[Any]) -> bytes:
    """A capture request in the wire format: the source, the names and each run's inputs."""
    doc = {
        "source": source,
        "expect": list(expect),
        "runs": [
            {
                "seed": run.seed,
                "given": dict(run.given),
                "probes": [
                    {"kind": p.kind, "target": p.target, "args": list(p.args), "train_mode": p.train_mode}
                    for p in run.probes
                ],
            }
            for run in runs
        ],
    }
    return wire.encode(doc, keep_grad=True)


def capture_files(request_path: Path, out: Path) -> None:
    """Capture every run of the request in ``request_path`` into ``out/run-{i}.program``."""
    request = wire.decode(request_path.read_bytes(), restore_grad=True)
    for index, run in enumerate(request["runs"]):
        data = capture_bytes(request["source"], request["expect"], run["given"], run["seed"], run["probes"])
        (out / f"run-{index}.program").write_bytes(data)


def main(argv: Sequence[str]) -> int:
    """``python -m vaequiz.grading.sandbox.program REQUEST OUTDIR [REQUEST OUTDIR ...]``.

    Each request is captured in its own child forked from this process once torch is imported
    (as a sandbox worker forks one per answer), so no snippet sees another's changes.
    """
    if len(argv) < 2 or len(argv) % 2:
        print("usage: python -m vaequiz.grading.sandbox.program REQUEST OUTDIR [REQUEST OUTDIR ...]", file=sys.stderr)
        return 2
    for request_path, out in zip(argv[0::2], argv[1::2]):
        pid = os.fork()
        if pid == 0:
            try:
                capture_files(Path(request_path), Path(out))
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
