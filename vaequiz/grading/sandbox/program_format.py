"""The strict serialised form of a captured program: whitelisted ATen ops over raw tensors.

A program is what the untrusted side hands over instead of measurements (issue 11): one graph
per thing to measure, each a list of ATen op calls whose arguments are references to earlier
values, literals, dtypes and sizes, never Python callables or pickled objects. It travels in the
wire format of :mod:`wire` (JSON header plus raw tensor bytes), so a tensor is only ever shape +
dtype + bytes. :func:`decode_program` is the trusted side's gate: it refuses, with a reason that
starts "could not measure", anything outside the allow list, any argument that does not fit the
op's schema, any reference to a value that does not exist yet, and any program over the budget
(node count, bytes, declared tensor sizes), before a single op runs.

Document layout (``doc`` of a wire message)::

    {"format": "vaequiz-program/1", "unsupported": null | reason, "error": null | message,
     "missing": [names], "main": GRAPH, "modules": {name: MODULE}}
    MODULE = {"class_name": str, "state": {name: tensor}, "trainable": [names], "graphs": [GRAPH],
              "failures": {graph label: the error the module raised when traced there}}
    GRAPH  = {"label": str, "train": bool, "inputs": [[kind, name, dtype, shape, grad]],
              "consts": [tensor], "ops": ["aten.mul.Tensor", ...], "nodes": [[NODE, ...], ...],
              "outputs": {name: ARG}}
    NODE   = [op index, [ARG...], {kwarg: ARG}, grad_enabled, [OUT...]]
    OUT    = ["tensor", dtype, shape] | ["scalar"] | ["none"]
    ARG    = ["t", value] | ["T", [value | null, ...]] | ["n", literal] | ["l", [numbers]]
           | ["dtype", name] | ["device", name] | ["layout", name] | ["memory_format", name]
           | ["opaque", type name] | ["module", name]        (the last two only as outputs)

Values are numbered in order: the graph's inputs (``kind`` "given": supplied by the trusted
side; "state": a module's parameter or buffer, shipped in ``state``; "arg": a call's
positional argument, by index), then its constants, then every node's outputs in turn; a node
may only refer to values numbered before its own. Nodes travel in chunks of at most
:data:`CHUNK` because the wire format caps a list at that length.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from vaequiz.grading.sandbox import wire

FORMAT = "vaequiz-program/1"
MAX_NODES = 100_000
"""Nodes over all graphs of one program; a snippet that needs more cannot be measured this way."""
MAX_PROGRAM_BYTES = 64 * 1024 * 1024
"""Whole encoded program: header plus every constant and state tensor."""
MAX_ELEMENTS = 1 << 26
"""Elements of any one tensor a node declares or a size argument asks for (256 MiB of float32)."""
MAX_DECLARED_BYTES = 1 << 31
"""Sum of the bytes every node of a graph declares it produces."""
CHUNK = wire.MAX_ITEMS
MAX_NAME = 120
MAX_STRING = 64

INPUT_KINDS = ("given", "state", "arg")
LAYOUTS = {"strided": torch.strided}
MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "preserve_format": torch.preserve_format,
    "channels_last": torch.channels_last,
}
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9])?)$")

_PURE = """
abs neg exp exp2 expm1 log log1p log2 log10 sqrt rsqrt pow square sin cos tan tanh sigmoid sign
sgn floor ceil round trunc frac reciprocal erf erfc erfinv lgamma digamma polygamma mvlgamma atan
atan2 asin acos sinh cosh asinh acosh atanh clamp clamp_min clamp_max clip maximum minimum fmax
fmin where add sub rsub mul div floor_divide remainder fmod xlogy special_xlog1py logaddexp lerp
addcmul addcdiv softplus relu leaky_relu elu selu celu gelu silu mish hardtanh hardsigmoid
hardswish logit threshold nan_to_num isnan isinf isfinite isneginf isposinf logical_and logical_or
logical_not logical_xor bitwise_and bitwise_or bitwise_not bitwise_xor eq ne lt le gt ge fill
zero masked_fill masked_scatter masked_select heaviside _is_all_true _is_any_true
_local_scalar_dense equal log_sigmoid_forward prelu _prelu_kernel rrelu glu
sum mean nansum prod amax amin max min argmax argmin std var std_mean var_mean norm
linalg_vector_norm logsumexp cumsum cumprod all any count_nonzero median nanmedian mode sort
argsort topk kthvalue _unique2 unique_dim unique_consecutive cummax cummin aminmax msort
mm bmm addmm addmv mv dot vdot baddbmm addbmm _cdist_forward _euclidean_dist outer
view _unsafe_view reshape expand expand_as permute transpose t squeeze unsqueeze select slice
narrow unbind split split_with_sizes chunk alias detach clone diagonal unfold _reshape_alias
repeat repeat_interleave flip roll cat stack hstack vstack gather scatter scatter_add
scatter_reduce index index_select index_put index_add index_fill take embedding nonzero triu
tril diag diag_embed lift_fresh lift_fresh_copy _to_copy copy constant_pad_nd
reflection_pad1d reflection_pad2d replication_pad1d replication_pad2d upsample_nearest1d
upsample_nearest2d upsample_bilinear2d _upsample_nearest_exact2d _unsafe_index
empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like ones ones_like full
full_like new_zeros new_ones new_full arange linspace logspace eye scalar_tensor
rand rand_like randn randn_like randint randint_like randperm normal uniform bernoulli
multinomial exponential geometric cauchy log_normal random poisson binomial _standard_gamma
_sample_dirichlet native_dropout
convolution _convolution native_batch_norm _native_batch_norm_legit
_native_batch_norm_legit_no_training native_layer_norm native_group_norm _softmax
_log_softmax binary_cross_entropy binary_cross_entropy_with_logits mse_loss l1_loss
smooth_l1_loss huber_loss nll_loss_forward nll_loss2d_forward max_pool2d_with_indices
max_pool1d avg_pool2d avg_pool1d _adaptive_avg_pool2d adaptive_max_pool2d pixel_shuffle
pixel_unshuffle im2col col2im
"""
ALLOWED_OPS: frozenset[str] = frozenset(
    name for base in _PURE.split() for name in (base, base + "_")
)
"""ATen op packets a program may call, each with its in-place variant (which writes only to its
own ``self``). Every op here reads and writes tensors only: no file, process, storage-swapping
(``set_``, ``resize_``), raw-stride (``as_strided``) or device-transfer op, and no ``out=``
overload (refused by :func:`allowed_overload`)."""

RANDOM_OPS = frozenset(
    name
    for base in "rand rand_like randn randn_like randint randint_like randperm normal uniform bernoulli "
    "multinomial exponential geometric cauchy log_normal random poisson binomial _standard_gamma "
    "_sample_dirichlet native_dropout".split()
    for name in (base, base + "_")
)
"""Ops that draw from the default generator."""

SET_RNG_STATE = "rng.set_state"
"""The one node that is not an ATen op: the snippet put the default generator in a state of its
own (``torch.manual_seed``, ``set_rng_state``) before a draw; replaying it keeps such a program
as deterministic as the snippet was. Its only argument is the state, a uint8 constant."""

ZERO_FILLED = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})
"""Ops whose output memory is uninitialised: the rebuild zero-fills it, so a program can never
read what the trusted process left in freed memory."""


class ProgramRefused(ValueError):
    """The program cannot be measured; ``str(err)`` says why, starting "could not measure"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"could not measure: {reason}")


@functools.lru_cache(maxsize=4096)
def allowed_overload(qualified: str) -> torch._ops.OpOverload | None:
    """The op for "aten.name.overload" when the allow list has it, else None.

    Only names already in :data:`ALLOWED_OPS` are looked up on ``torch.ops.aten``, and
    overloads that write to an argument other than ``self`` (``out=``) are refused.
    """
    parts = qualified.split(".")
    if len(parts) != 3 or parts[0] != "aten" or parts[1] not in ALLOWED_OPS:
        return None
    packet = getattr(torch.ops.aten, parts[1], None)
    if packet is None or parts[2] not in packet.overloads():
        return None
    op = getattr(packet, parts[2])
    for argument in op._schema.arguments:
        writes = argument.alias_info is not None and argument.alias_info.is_write
        if writes and (argument.kwarg_only or argument.name != "self"):
            return None
    return op


def warm_allow_list() -> int:
    """Look up every allowed overload once (about 1,200, 20 ms), so that processes forked
    afterwards (capture and measuring children) find them cached instead of each resolving the
    ops it meets again. Returns how many are allowed."""
    allowed = 0
    for name in sorted(ALLOWED_OPS):
        packet = getattr(torch.ops.aten, name, None)
        if packet is None:
            continue
        for overload in packet.overloads():
            allowed += allowed_overload(f"aten.{name}.{overload}") is not None
    return allowed


def op_name(op: Any) -> str:
    """"aten.mul.Tensor" for an ``OpOverload``."""
    return f"{op.namespace}.{op._schema.name.split('::')[1]}.{op._overloadname}"


def graph_label(train: bool, grad: bool, args: Any) -> str:
    """How a module graph is found again: mode, grad mode and argument shapes."""
    shapes = ";".join("x".join(str(d) for d in a.shape) for a in args)
    return f"{'train' if train else 'eval'}/{'grad' if grad else 'nograd'}/{shapes}"


# --------------------------------------------------------------------------- decoded form


@dataclass(frozen=True)
class Node:
    op: torch._ops.OpOverload | None
    """None for :data:`SET_RNG_STATE`."""
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    grad_enabled: bool
    outs: tuple[tuple[Any, ...], ...]
    """("tensor", dtype, shape) | ("scalar",) | ("none",) per output."""


@dataclass(frozen=True)
class InputSpec:
    kind: str
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    grad: bool


@dataclass(frozen=True)
class Graph:
    label: str
    train: bool
    inputs: tuple[InputSpec, ...]
    consts: tuple[torch.Tensor, ...]
    nodes: tuple[Node, ...]
    outputs: dict[str, Any]
    """name -> ("t", value) | ("n", literal) | ("opaque", type name) | ("module", name)."""


@dataclass(frozen=True)
class ModuleProgram:
    class_name: str
    state: dict[str, torch.Tensor]
    trainable: tuple[str, ...]
    graphs: tuple[Graph, ...]
    failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Program:
    unsupported: str | None
    error: str | None
    missing: tuple[str, ...]
    main: Graph | None
    modules: dict[str, ModuleProgram] = field(default_factory=dict)


# --------------------------------------------------------------------------- encoding


def encode_program(doc: dict[str, Any]) -> bytes:
    """Bytes for a program document built by the capture side (see the module docstring)."""
    return wire.encode(doc)


def chunked(nodes: list[Any]) -> list[list[Any]]:
    return [nodes[i : i + CHUNK] for i in range(0, len(nodes), CHUNK)] or []


# --------------------------------------------------------------------------- strict decoding


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise ProgramRefused(reason)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _name(value: Any, what: str) -> str:
    _expect(type(value) is str and 0 < len(value) <= MAX_NAME, f"{what} must be a short string")
    return value


def _shape(value: Any, what: str) -> tuple[int, ...]:
    _expect(
        type(value) is list
        and len(value) <= wire.MAX_DIMS
        and all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in value),
        f"{what}: a shape must be at most {wire.MAX_DIMS} sizes",
    )
    _expect(math.prod(value) <= MAX_ELEMENTS, f"{what}: {math.prod(value)} elements exceed {MAX_ELEMENTS}")
    return tuple(value)


def _dtype(value: Any, what: str) -> torch.dtype:
    _expect(type(value) is str and value in wire.DTYPES, f"{what}: unknown dtype {str(value)[:20]!r}")
    return wire.DTYPES[value]


def decode_program(data: bytes | bytearray | memoryview) -> Program:
    """The program in ``data``, checked; raises :class:`ProgramRefused` on anything else."""
    try:
        doc = wire.decode(data, max_bytes=MAX_PROGRAM_BYTES)
    except wire.WireError as err:
        raise ProgramRefused(f"the program is not a well-formed message ({err})") from None
    except RecursionError:
        raise ProgramRefused("the program is nested too deeply") from None
    keys = {"format", "unsupported", "error", "missing", "main", "modules"}
    _expect(type(doc) is dict and set(doc) == keys, "the program document has the wrong fields")
    _expect(doc["format"] == FORMAT, f"the program is not in format {FORMAT}")
    for key in ("unsupported", "error"):
        _expect(doc[key] is None or type(doc[key]) is str, f"'{key}' must be text or null")
    missing = doc["missing"]
    _expect(type(missing) is list and all(type(m) is str for m in missing), "'missing' must list names")
    budget = _Budget()
    main = None if doc["main"] is None else _graph(doc["main"], budget, "main")
    modules_doc = doc["modules"]
    _expect(type(modules_doc) is dict and len(modules_doc) <= 16, "'modules' must be a small dict")
    modules = {_name(n, "module name"): _module(m, budget, n) for n, m in modules_doc.items()}
    for graph in [main] if main else []:
        for ref in graph.outputs.values():
            _expect(ref[0] != "module" or ref[1] in modules, f"output refers to unknown module {ref[1]!r}")
    unsupported = doc["unsupported"][:300] if doc["unsupported"] else None
    error = doc["error"][:300] if doc["error"] else None
    return Program(unsupported, error, tuple(m[:MAX_NAME] for m in missing), main, modules)


class _Budget:
    """Node count over all graphs of one program."""

    def __init__(self) -> None:
        self.nodes = 0

    def take(self, count: int) -> None:
        self.nodes += count
        _expect(self.nodes <= MAX_NODES, f"the program has more than {MAX_NODES} operations")


def _module(doc: Any, budget: _Budget, name: str) -> ModuleProgram:
    keys = {"class_name", "state", "trainable", "graphs", "failures"}
    _expect(type(doc) is dict and set(doc) == keys, f"module {name}: wrong fields")
    state = doc["state"]
    _expect(
        type(state) is dict
        and len(state) <= wire.MAX_ITEMS
        and all(isinstance(t, torch.Tensor) for t in state.values()),
        f"module {name}: 'state' must map names to tensors",
    )
    trainable = doc["trainable"]
    _expect(
        type(trainable) is list and all(type(t) is str and t in state for t in trainable),
        f"module {name}: 'trainable' must name state tensors",
    )
    for t in trainable:
        _expect(state[t].is_floating_point(), f"module {name}: parameter {t} is not floating point")
    graphs = doc["graphs"]
    _expect(type(graphs) is list and 0 < len(graphs) <= 16, f"module {name}: needs 1 to 16 graphs")
    decoded = tuple(_graph(g, budget, f"{name}[{i}]") for i, g in enumerate(graphs))
    for graph in decoded:
        for spec in graph.inputs:
            if spec.kind == "state":
                _expect(spec.name in state, f"{graph.label}: unknown state tensor {spec.name!r}")
                tensor = state[spec.name]
                _expect(
                    tensor.dtype == spec.dtype and tuple(tensor.shape) == spec.shape,
                    f"{graph.label}: state tensor {spec.name} does not match its declaration",
                )
            _expect(spec.kind != "given", f"{graph.label}: a module graph has no givens")
    failures = doc["failures"]
    _expect(
        type(failures) is dict and len(failures) <= 16 and all(type(v) is str for v in failures.values()),
        f"module {name}: 'failures' must map graph labels to messages",
    )
    failures = {k[:MAX_NAME]: v[:300] for k, v in failures.items()}
    return ModuleProgram(_name(doc["class_name"], "class name"), dict(state), tuple(trainable), decoded, failures)


def _graph(doc: Any, budget: _Budget, label: str) -> Graph:
    keys = {"label", "train", "inputs", "consts", "ops", "nodes", "outputs"}
    _expect(type(doc) is dict and set(doc) == keys, f"graph {label}: wrong fields")
    _expect(type(doc["train"]) is bool, f"graph {label}: 'train' must be a bool")
    inputs = []
    _expect(type(doc["inputs"]) is list and len(doc["inputs"]) <= wire.MAX_ITEMS, f"{label}: bad inputs")
    for entry in doc["inputs"]:
        _expect(type(entry) is list and len(entry) == 5, f"{label}: an input is [kind, name, dtype, shape, grad]")
        kind, name, dtype, shape, grad = entry
        _expect(kind in INPUT_KINDS, f"{label}: unknown input kind {str(kind)[:20]!r}")
        _expect(type(grad) is bool, f"{label}: an input's grad flag must be a bool")
        inputs.append(InputSpec(kind, _name(name, "input name"), _dtype(dtype, label), _shape(shape, label), grad))
    consts = doc["consts"]
    _expect(
        type(consts) is list and all(isinstance(c, torch.Tensor) for c in consts),
        f"{label}: 'consts' must be a list of tensors",
    )
    names = doc["ops"]
    _expect(type(names) is list and len(names) <= 4096, f"{label}: 'ops' must be a list")
    ops = []
    for qualified in names:
        if qualified == SET_RNG_STATE:
            ops.append((None, qualified))
            continue
        op = allowed_overload(qualified) if type(qualified) is str else None
        _expect(op is not None, f"{label}: operation {str(qualified)[:80]!r} is not allowed")
        ops.append((op, qualified))
    chunks = doc["nodes"]
    _expect(type(chunks) is list and all(type(c) is list for c in chunks), f"{label}: 'nodes' must be chunks")
    kinds: list[str] = ["tensor"] * (len(inputs) + len(consts))
    nodes = []
    declared = 0
    for chunk in chunks:
        budget.take(len(chunk))
        for node_doc in chunk:
            node = _node(node_doc, ops, kinds, f"{label} node {len(nodes)}")
            for out in node.outs:
                if out[0] == "tensor":
                    declared += math.prod(out[2]) * torch.empty((), dtype=out[1]).element_size()
                kinds.append(out[0])
            _expect(declared <= MAX_DECLARED_BYTES, f"{label}: declares more than {MAX_DECLARED_BYTES} bytes")
            nodes.append(node)
    outputs_doc = doc["outputs"]
    _expect(type(outputs_doc) is dict and len(outputs_doc) <= 64, f"{label}: 'outputs' must be a dict")
    outputs = {_name(k, "output name"): _output(v, kinds, label) for k, v in outputs_doc.items()}
    return Graph(_name(doc["label"], "label"), doc["train"], tuple(inputs), tuple(consts), tuple(nodes), outputs)


def _output(doc: Any, kinds: list[str], label: str) -> tuple[Any, ...]:
    _expect(type(doc) is list and len(doc) == 2, f"{label}: an output is [tag, value]")
    tag, value = doc
    if tag == "t":
        return ("t", _ref(value, kinds, label))
    if tag == "n" and (value is None or type(value) in (bool, int, float, str)):
        return ("n", value[:MAX_STRING] if type(value) is str else value)
    if tag in ("opaque", "module") and type(value) is str:
        return (tag, value[:MAX_NAME])
    raise ProgramRefused(f"{label}: malformed output {str(tag)[:20]!r}")


def _ref(value: Any, kinds: list[str], where: str) -> int:
    _expect(_is_int(value) and 0 <= value < len(kinds), f"{where}: refers to value {str(value)[:20]} that does not exist yet")
    _expect(kinds[value] == "tensor", f"{where}: refers to value {value}, which is not a tensor")
    return value


def _node(doc: Any, ops: list[tuple[Any, str]], kinds: list[str], where: str) -> Node:
    _expect(type(doc) is list and len(doc) == 5, f"{where}: a node is [op, args, kwargs, grad, outs]")
    index, args, kwargs, grad, outs = doc
    _expect(_is_int(index) and 0 <= index < len(ops), f"{where}: op index out of range")
    op, name = ops[index]
    _expect(type(args) is list and type(kwargs) is dict and type(grad) is bool, f"{where}: malformed node")
    if op is None:
        _expect(len(args) == 1 and not kwargs and outs == [], f"{where}: {name} takes one state and returns nothing")
        state = _argument(args[0], "Tensor", kinds, where, "state")
        _expect(type(state) is tuple, f"{where}: {name} needs a state tensor")
        return Node(None, name, (state,), {}, grad, ())  # type: ignore[arg-type]
    schema = op._schema.arguments
    positional = [a for a in schema if not a.kwarg_only]
    _expect(len(args) <= len(positional), f"{where}: {name} takes at most {len(positional)} positional arguments")
    by_name = {a.name: a for a in schema}
    decoded_args = tuple(
        _argument(v, str(a.real_type), kinds, f"{where} ({name} {a.name})", a.name)
        for v, a in zip(args, positional)
    )
    decoded_kwargs = {}
    for key, value in kwargs.items():
        argument = by_name.get(key)
        _expect(
            argument is not None and schema.index(argument) >= len(args),
            f"{where}: {name} has no argument {str(key)[:30]!r} left to set",
        )
        decoded_kwargs[key] = _argument(
            value, str(argument.real_type), kinds, f"{where} ({name} {key})", key
        )
    _expect(type(outs) is list and len(outs) <= wire.MAX_ITEMS, f"{where}: 'outs' must list the outputs")
    decoded_outs = []
    for out in outs:
        _expect(type(out) is list and len(out) >= 1, f"{where}: malformed output declaration")
        if out == ["scalar"] or out == ["none"]:
            decoded_outs.append((out[0],))
            continue
        _expect(len(out) == 3 and out[0] == "tensor", f"{where}: malformed output declaration")
        decoded_outs.append(("tensor", _dtype(out[1], where), _shape(out[2], where)))
    return Node(op, name, decoded_args, decoded_kwargs, grad, tuple(decoded_outs))


def _argument(doc: Any, kind: str, kinds: list[str], where: str, arg_name: str) -> Any:
    """One argument, checked against the type its schema declares (``real_type``)."""
    _expect(type(doc) is list and len(doc) == 2, f"{where}: an argument is [tag, value]")
    tag, value = doc
    optional = kind.startswith("Optional[")
    base = kind[len("Optional[") : -1] if optional else kind
    if tag == "n" and value is None:
        _expect(optional, f"{where}: None where {kind} is required")
        return None
    if base == "Tensor":
        if tag == "n" and type(value) in (bool, int, float):
            return value  # a Python number where the op takes a tensor (a wrapped number)
        _expect(tag == "t", f"{where}: expected a tensor")
        return ("ref", _ref(value, kinds, where))
    if base in ("List[Tensor]", "List[Optional[Tensor]]"):
        _expect(tag == "T" and type(value) is list and len(value) <= wire.MAX_ITEMS, f"{where}: expected tensors")
        holes = base == "List[Optional[Tensor]]"
        refs = []
        for item in value:
            _expect(item is not None or holes, f"{where}: None in a list of tensors")
            refs.append(None if item is None else ("ref", _ref(item, kinds, where)))
        return ("refs", refs)
    if base in ("int", "SymInt"):
        _expect(tag == "n" and _is_int(value), f"{where}: expected an int")
        return value
    if base == "float":
        _expect(tag == "n" and _is_number(value), f"{where}: expected a float")
        return value
    if base in ("number", "Scalar"):
        _expect(tag == "n" and type(value) in (bool, int, float), f"{where}: expected a number")
        return value
    if base == "bool":
        _expect(tag == "n" and type(value) is bool, f"{where}: expected a bool")
        return value
    if base == "str":
        _expect(tag == "n" and type(value) is str and len(value) <= MAX_STRING, f"{where}: expected a short string")
        return value
    if base in ("List[int]", "List[SymInt]"):
        if tag == "n" and _is_int(value):
            value = [value]
        _expect(tag in ("l", "n") and type(value) is list and len(value) <= wire.MAX_ITEMS, f"{where}: expected ints")
        _expect(all(_is_int(v) and abs(v) <= MAX_ELEMENTS for v in value), f"{where}: expected ints no larger than {MAX_ELEMENTS}")
        if arg_name == "size":
            _expect(math.prod(abs(v) for v in value) <= MAX_ELEMENTS, f"{where}: asks for more than {MAX_ELEMENTS} elements")
        return list(value)
    if base in ("List[float]", "List[bool]"):
        element = bool if base == "List[bool]" else float
        _expect(tag == "l" and type(value) is list and len(value) <= wire.MAX_ITEMS, f"{where}: expected a list")
        _expect(all(type(v) is bool if element is bool else _is_number(v) for v in value), f"{where}: wrong element type")
        return list(value)
    if base == "ScalarType":
        _expect(tag == "dtype", f"{where}: expected a dtype")
        return _dtype(value, where)
    if base == "Device":
        _expect(tag == "device" and type(value) is str and _DEVICE.match(value) is not None, f"{where}: expected a device")
        return ("device", value)
    if base == "Layout":
        _expect(tag == "layout" and value in LAYOUTS, f"{where}: only the strided layout is allowed")
        return LAYOUTS[value]
    if base == "MemoryFormat":
        _expect(tag == "memory_format" and value in MEMORY_FORMATS, f"{where}: unknown memory format")
        return MEMORY_FORMATS[value]
    raise ProgramRefused(f"{where}: arguments of type {kind} cannot be passed (only None)")
