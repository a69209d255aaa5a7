"""The byte format values cross the sandbox boundary in: a JSON header plus raw tensor bytes.

Layout: ``b"VQW1"``, the header's length (4 bytes, little endian), the header (UTF-8 JSON:
``{"tensors": [{"dtype", "shape", "nbytes", "grad"}...], "doc": ...}``), then every tensor's
bytes back to back. ``doc`` is JSON in which objects are tagged with a ``"$"`` key (``dict``,
``tensor``, ``module``, ``summary``, ``opaque``) so plain dicts and boundary values never mix.

Never pickle: decoding only ever builds JSON values, the api dataclasses and plain tensors, and
it is strict and bounded (known dtypes, byte lengths that match numel x itemsize, a size cap, a
dims cap, a nesting cap), so bytes written by a hostile snippet can at worst be rejected.
Encoding trusts nothing either: only exact ``torch.Tensor`` / ``nn.Parameter`` objects become
tensors; subclasses and other objects travel as their type name, modules as a summary.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Callable

import torch
from torch import nn

from vaequiz.grading.sandbox.api import ModuleSummary, ModuleValue, OpaqueValue

MAGIC = b"VQW1"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_DIMS = 8
MAX_TENSORS = 100_000
MAX_DEPTH = 32
MAX_TYPE_NAME = 120
MAX_ITEMS = 10_000
"""Longest list or dict encoded as such; longer ones travel as their type name."""
MAX_TEXT = 1 << 18
"""Longest string encoded as such (a source may be 256 KB); longer ones travel as their type name."""
INT64_RANGE = (-(2**63), 2**63 - 1)

DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
"""The tensor types that travel as tensors (a subclass travels as its type name)."""
_HEAD = struct.Struct("<4sI")


class WireError(ValueError):
    """The bytes are not a well-formed message (truncated, oversized, or lying about sizes)."""


# --------------------------------------------------------------------------- encoding


class _Encoder:
    """Collects tensors while turning a value tree into tagged JSON."""

    def __init__(self, keep_grad: bool) -> None:
        self.keep_grad = keep_grad
        self.specs: list[dict[str, Any]] = []
        self.blobs: list[bytes | memoryview] = []
        """Views of the tensors' own memory: joined once into the message, never copied before."""
        self.seen: dict[int, tuple[torch.Tensor, int]] = {}
        """id -> (tensor, index): a tensor that appears several times (the inputs shared by
        every repeat of a trial) travels once; the tensor is held so its id stays unique."""

    def tensor(self, value: torch.Tensor) -> dict[str, Any]:
        known = self.seen.get(id(value))
        if known is not None and known[0] is value:
            return {"$": "tensor", "i": known[1]}
        plain = value.detach()
        if plain.device.type != "cpu":
            plain = plain.cpu()
        plain = plain.resolve_conj().resolve_neg().contiguous()
        flat = plain.reshape(-1)
        blob = memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else b""
        self.specs.append(
            {
                "dtype": DTYPE_NAMES[plain.dtype],
                "shape": list(plain.shape),
                "nbytes": len(blob),
                "grad": bool(self.keep_grad and value.requires_grad),
            }
        )
        self.blobs.append(blob)
        self.seen[id(value)] = (value, len(self.specs) - 1)
        return {"$": "tensor", "i": len(self.specs) - 1}

    def value(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            return _opaque("nested too deeply")
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is str:
            return value if len(value) <= MAX_TEXT else _opaque("str")
        if kind is int:
            return value if INT64_RANGE[0] <= value <= INT64_RANGE[1] else _opaque("int")
        if kind is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if kind in PLAIN_TENSORS:
            if value.layout != torch.strided or value.dtype not in DTYPE_NAMES:
                return _opaque(f"tensor ({value.layout}, {value.dtype})")
            try:
                return self.tensor(value)
            except Exception:
                return _opaque(f"tensor on {value.device}")
        if kind in (list, tuple, dict) and len(value) > MAX_ITEMS:
            return _opaque(kind.__name__)
        if kind in (list, tuple):
            return [self.value(item, depth + 1) for item in value]
        if kind is dict:
            return {"$": "dict", "v": {str(k): self.value(v, depth + 1) for k, v in value.items()}}
        if kind is ModuleValue:
            return {"$": "module", "v": {k: self.tensor(t) for k, t in value.embeddings.items()}}
        if kind is ModuleSummary:
            return _summary(value)
        if kind is OpaqueValue:
            return _opaque(value.type_name)
        if isinstance(value, nn.Module):
            return _summarise_module(value)
        return _opaque(_type_name(value))


def _opaque(type_name: str) -> dict[str, Any]:
    return {"$": "opaque", "type_name": type_name[:MAX_TYPE_NAME]}


def _summary(value: ModuleSummary) -> dict[str, Any]:
    return {
        "$": "summary",
        "class_name": value.class_name[:MAX_TYPE_NAME],
        "trainable_parameters": value.trainable_parameters,
        "total_parameters": value.total_parameters,
    }


def _type_name(value: Any) -> str:
    """The value's type name, read from the type itself (an instance can lie via __class__)."""
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", "?")
    if not isinstance(module, str) or not isinstance(name, str):
        return "?"
    return name if module in ("builtins", "__main__", "__snippet__", "") else f"{module}.{name}"


def _summarise_module(module: nn.Module) -> dict[str, Any]:
    """Parameter counts of a module the snippet built (runs its code: only ever in the child)."""
    try:
        total = trainable = 0
        for param in module.parameters():
            count = int(param.numel())
            total += count
            trainable += count if param.requires_grad else 0
        return _summary(ModuleSummary(_type_name(module), trainable, total))
    except Exception:
        return _opaque(_type_name(module))


def encode(doc: Any, *, keep_grad: bool = False) -> bytes:
    """Bytes for a tree of JSON values, tuples, tensors and boundary values.

    ``keep_grad`` records ``requires_grad`` so the other side can restore it (requests only).
    """
    encoder = _Encoder(keep_grad)
    tree = encoder.value(doc)
    return _message(_header(encoder, tree).encode(), encoder.blobs)


def _header(encoder: _Encoder, tree: Any) -> str:
    return json.dumps({"tensors": encoder.specs, "doc": tree}, separators=(",", ":"), allow_nan=False)


def _message(header: bytes, blobs: list[bytes | memoryview]) -> bytes:
    if len(header) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    return b"".join([_HEAD.pack(MAGIC, len(header)), header, *blobs])


def text_template(doc: dict[str, Any], field: str, *, keep_grad: bool = False) -> Callable[[str], bytes]:
    """``encode`` for messages that differ from ``doc`` only in the text of ``field``.

    Everything else (a question's runs: inputs, seeds, probes) is encoded once; each call only
    writes the text into the header. The bytes are exactly ``encode({**doc, field: text})``'s.
    """
    marker = "\x00vaequiz-text\x00"
    encoder = _Encoder(keep_grad)
    before, found, after = _header(encoder, encoder.value({**doc, field: marker})).partition(json.dumps(marker))
    if not found or json.dumps(marker) in after:
        raise ValueError(f"the text of {field!r} is not where the template can find it")
    head, tail = before.encode(), after.encode()
    blobs: list[bytes | memoryview] = [b"".join(encoder.blobs)]

    def encoded(text: str) -> bytes:
        if type(text) is not str or len(text) > MAX_TEXT:
            return encode({**doc, field: text}, keep_grad=keep_grad)
        return _message(b"".join([head, json.dumps(text).encode(), tail]), blobs)

    return encoded


# --------------------------------------------------------------------------- decoding


def decode(
    data: bytes | bytearray | memoryview,
    *,
    device: str | torch.device = "cpu",
    max_bytes: int = DEFAULT_MAX_BYTES,
    restore_grad: bool = False,
) -> Any:
    """The value tree in ``data``; raises :class:`WireError` on anything malformed."""
    view = memoryview(data).cast("B")
    if len(view) > max_bytes:
        raise WireError(f"message of {len(view)} bytes exceeds the limit of {max_bytes}")
    if len(view) < _HEAD.size:
        raise WireError("message is truncated (no header)")
    magic, header_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise WireError("message does not start with the wire magic")
    if header_len > MAX_HEADER_BYTES or _HEAD.size + header_len > len(view):
        raise WireError("header length is out of bounds")
    try:
        header = json.loads(bytes(view[_HEAD.size : _HEAD.size + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise WireError(f"header is not valid JSON: {str(err)[:200]}") from None
    if not isinstance(header, dict) or set(header) != {"tensors", "doc"}:
        raise WireError("header must hold exactly 'tensors' and 'doc'")
    tensors = _decode_tensors(
        header["tensors"], view[_HEAD.size + header_len :], torch.device(device), restore_grad
    )
    return _Decoder(tensors).value(header["doc"], 0)


def _decode_tensors(
    specs: Any, body: memoryview, device: torch.device, restore_grad: bool
) -> list[torch.Tensor]:
    if not isinstance(specs, list) or len(specs) > MAX_TENSORS:
        raise WireError(f"'tensors' must be a list of at most {MAX_TENSORS} entries")
    tensors: list[torch.Tensor] = []
    offset = 0
    for index, spec in enumerate(specs):
        dtype, shape, nbytes, grad = _check_spec(index, spec)
        if offset + nbytes > len(body):
            raise WireError(f"tensor {index} runs past the end of the message")
        if nbytes:
            raw = torch.frombuffer(bytearray(body[offset : offset + nbytes]), dtype=torch.uint8)
            if dtype is torch.bool and bool((raw > 1).any()):
                raise WireError(f"tensor {index} is bool but holds bytes other than 0 and 1")
            tensor = raw.view(dtype).reshape(shape)
        else:
            tensor = torch.empty(shape, dtype=dtype)
        offset += nbytes
        tensor = tensor.to(device)
        if grad and restore_grad:
            tensor.requires_grad_(True)
        tensors.append(tensor)
    if offset != len(body):
        raise WireError(f"{len(body) - offset} bytes follow the last tensor")
    return tensors


def _check_spec(index: int, spec: Any) -> tuple[torch.dtype, list[int], int, bool]:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "nbytes", "grad"}:
        raise WireError(f"tensor {index}: spec must hold exactly dtype, shape, nbytes, grad")
    dtype = DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    if dtype is None:
        raise WireError(f"tensor {index}: unknown dtype {str(spec['dtype'])[:40]!r}")
    shape = spec["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and 0 <= d < 2**40 for d in shape)
    ):
        raise WireError(f"tensor {index}: shape must be at most {MAX_DIMS} non-negative ints")
    nbytes = spec["nbytes"]
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if type(nbytes) is not int or nbytes != numel * itemsize:
        raise WireError(
            f"tensor {index}: {nbytes!r} bytes do not match shape {shape} of {spec['dtype']}"
        )
    if type(spec["grad"]) is not bool or (spec["grad"] and not dtype.is_floating_point):
        raise WireError(f"tensor {index}: 'grad' must be a bool, true only for floats")
    return dtype, shape, nbytes, spec["grad"]


class _Decoder:
    """Turns tagged JSON back into values, refusing every tag and shape it does not know."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors

    def tensor(self, node: Any) -> torch.Tensor:
        if not isinstance(node, dict) or node.get("$") != "tensor" or set(node) != {"$", "i"}:
            raise WireError("expected a tensor reference")
        index = node["i"]
        if type(index) is not int or not 0 <= index < len(self.tensors):
            raise WireError(f"tensor reference {str(index)[:20]} is out of range")
        return self.tensors[index]

    def value(self, node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH + 1:
            raise WireError("values are nested too deeply")
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.value(item, depth + 1) for item in node]
        if type(node) is not dict:
            raise WireError("unexpected JSON value")
        tag = node.get("$")
        if tag == "tensor":
            return self.tensor(node)
        if tag == "dict" and set(node) == {"$", "v"} and type(node["v"]) is dict:
            return {k: self.value(v, depth + 1) for k, v in node["v"].items()}
        if tag == "float" and set(node) == {"$", "v"} and node["v"] in ("nan", "inf", "-inf"):
            return float(node["v"])
        if tag == "module" and set(node) == {"$", "v"} and type(node["v"]) is dict:
            return ModuleValue({str(k): self.tensor(v) for k, v in node["v"].items()})
        if tag == "summary" and set(node) == {
            "$",
            "class_name",
            "trainable_parameters",
            "total_parameters",
        }:
            counts = (node["trainable_parameters"], node["total_parameters"])
            if type(node["class_name"]) is str and all(type(c) is int and c >= 0 for c in counts):
                return ModuleSummary(node["class_name"][:MAX_TYPE_NAME], *counts)
        if tag == "opaque" and set(node) == {"$", "type_name"} and type(node["type_name"]) is str:
            return OpaqueValue(node["type_name"][:MAX_TYPE_NAME])
        raise WireError(f"unknown or malformed tagged value {str(tag)[:40]!r}")
