"""The wire format: lossless round trips, and strict, bounded rejection of anything malformed."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vaequiz.grading.sandbox import wire
from vaequiz.grading.sandbox.api import ModuleSummary, ModuleValue, OpaqueValue

DTYPES = sorted(wire.DTYPES, key=str)


def _tensor(dtype_name: str, shape: list[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    dtype = wire.DTYPES[dtype_name]
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) > 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * 100).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=generator, dtype=torch.int64).to(
        dtype
    )


tensors = st.builds(
    _tensor,
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 5), min_size=0, max_size=4),
    st.integers(0, 2**31),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(tensors, max_size=4), st.booleans())
def test_tensors_round_trip_exactly(values: list[torch.Tensor], grad: bool) -> None:
    values = [v.requires_grad_(grad) if v.dtype.is_floating_point else v for v in values]
    decoded = wire.decode(wire.encode({"xs": values}, keep_grad=True), restore_grad=True)
    assert len(decoded["xs"]) == len(values)
    for original, copy in zip(values, decoded["xs"], strict=True):
        assert type(copy) is torch.Tensor
        assert copy.dtype == original.dtype and copy.shape == original.shape
        assert torch.equal(copy.detach().view(-1), original.detach().view(-1))
        assert copy.requires_grad == original.requires_grad


json_leaves = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
json_trees = st.recursive(
    json_leaves | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None)
@given(json_trees)
def test_plain_values_round_trip(tree: object) -> None:
    assert wire.decode(wire.encode(tree)) == tree


def test_views_non_contiguous_and_special_floats_travel_as_plain_tensors() -> None:
    base = torch.arange(24.0).reshape(2, 3, 4)
    view = base.transpose(0, 2)[1:]
    doc = {
        "view": view,
        "param": nn.Parameter(torch.ones(2)),
        "inf": float("inf"),
        "nan": float("nan"),
    }
    decoded = wire.decode(wire.encode(doc))
    assert torch.equal(decoded["view"], view) and decoded["view"].is_contiguous()
    assert type(decoded["param"]) is torch.Tensor
    assert decoded["inf"] == float("inf") and decoded["nan"] != decoded["nan"]


def test_boundary_values_round_trip() -> None:
    doc = {
        "model": ModuleValue({"codebook": torch.randn(5, 3)}),
        "summary": ModuleSummary("Decoder", 10, 12),
        "opaque": OpaqueValue("Thing"),
    }
    decoded = wire.decode(wire.encode(doc))
    assert torch.equal(decoded["model"].embeddings["codebook"], doc["model"].embeddings["codebook"])
    assert decoded["summary"] == doc["summary"] and decoded["opaque"] == doc["opaque"]


class Sneaky(torch.Tensor):
    """A tensor subclass: its methods could run code on the reading side."""


class Reducer:
    def __reduce__(self) -> tuple:  # pragma: no cover - must never be called
        return (os.system, ("echo pwned",))


def test_untrusted_objects_travel_only_as_type_names() -> None:
    decoded = wire.decode(
        wire.encode(
            {
                "sub": torch.zeros(3).as_subclass(Sneaky),
                "reduce": Reducer(),
                "module": nn.Sequential(nn.Linear(3, 2), nn.Sigmoid()),
                "huge_int": 10**30,
                "sparse": torch.eye(3).to_sparse(),
                "long_list": list(range(wire.MAX_ITEMS + 1)),
            }
        )
    )
    assert decoded["sub"] == OpaqueValue(f"{__name__}.Sneaky")
    assert decoded["reduce"] == OpaqueValue(f"{__name__}.Reducer")
    assert decoded["module"] == ModuleSummary("torch.nn.modules.container.Sequential", 8, 8)
    assert decoded["huge_int"] == OpaqueValue("int")
    assert isinstance(decoded["sparse"], OpaqueValue)
    assert decoded["long_list"] == OpaqueValue("list")


def test_decodes_onto_the_requested_device() -> None:
    decoded = wire.decode(wire.encode([torch.ones(2)]), device="meta")
    assert decoded[0].device.type == "meta"


# --------------------------------------------------------------------------- rejection


def _message(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<4sI", wire.MAGIC, len(raw)) + raw + body


def _spec(**changes: object) -> dict:
    spec = {"dtype": "float32", "shape": [2], "nbytes": 8, "grad": False}
    spec.update(changes)
    return spec


TENSOR_REF = {"$": "tensor", "i": 0}

MALFORMED = {
    "empty": b"",
    "wrong magic": b"XXXX" + bytes(8),
    "header past end": struct.pack("<4sI", wire.MAGIC, 1000) + b"{}",
    "header not json": struct.pack("<4sI", wire.MAGIC, 3) + b"{{{",
    "header not utf-8": struct.pack("<4sI", wire.MAGIC, 2) + b"\xff\xfe",
    "extra header keys": _message({"tensors": [], "doc": None, "x": 1}),
    "unknown dtype": _message({"tensors": [_spec(dtype="object")], "doc": TENSOR_REF}, bytes(8)),
    "nbytes mismatch": _message({"tensors": [_spec(nbytes=4)], "doc": TENSOR_REF}, bytes(4)),
    "too many dims": _message(
        {"tensors": [_spec(shape=[1] * 9, nbytes=4)], "doc": TENSOR_REF}, bytes(4)
    ),
    "negative dim": _message({"tensors": [_spec(shape=[-2], nbytes=-8)], "doc": None}),
    "float dim": _message({"tensors": [_spec(shape=[2.0])], "doc": None}, bytes(8)),
    "body too short": _message({"tensors": [_spec()], "doc": TENSOR_REF}, bytes(4)),
    "trailing bytes": _message({"tensors": [_spec()], "doc": TENSOR_REF}, bytes(12)),
    "bool not 0/1": _message(
        {"tensors": [_spec(dtype="bool", nbytes=2)], "doc": TENSOR_REF}, b"\x01\x07"
    ),
    "grad on ints": _message(
        {"tensors": [_spec(dtype="int32", grad=True)], "doc": TENSOR_REF}, bytes(8)
    ),
    "tensor ref out of range": _message({"tensors": [], "doc": TENSOR_REF}),
    "unknown tag": _message({"tensors": [], "doc": {"$": "pickle", "v": "cos\nsystem"}}),
    "untagged object": _message({"tensors": [], "doc": {"a": 1}}),
    "bad summary": _message(
        {
            "tensors": [],
            "doc": {
                "$": "summary",
                "class_name": 3,
                "trainable_parameters": 1,
                "total_parameters": 1,
            },
        }
    ),
    "deep nesting": struct.pack("<4sI", wire.MAGIC, 200_004)
    + b'{"tensors":[],"doc":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_are_rejected(name: str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(MALFORMED[name])


def test_size_limit_is_enforced_before_reading() -> None:
    data = wire.encode(torch.zeros(1000))
    with pytest.raises(wire.WireError, match="exceeds the limit"):
        wire.decode(data, max_bytes=len(data) - 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400))
def test_arbitrary_bytes_never_escape_as_other_errors(noise: bytes, cut: int) -> None:
    valid = wire.encode({"a": torch.arange(6).reshape(2, 3), "b": [1.5, None]})
    for candidate in (noise, valid[:cut] + noise, wire.MAGIC + noise):
        try:
            wire.decode(candidate)
        except wire.WireError:
            pass


def test_a_tensor_repeated_in_a_message_travels_once() -> None:
    encode, decode = wire.encode, wire.decode
    shared = torch.randn(512, 64)
    once = encode({"runs": [{"w": shared}]})
    many = encode({"runs": [{"w": shared} for _ in range(50)]})
    assert len(many) < len(once) + 50 * 64  # header grows a little; the 128 KB body does not
    decoded = decode(many)["runs"]
    assert all(torch.equal(run["w"], shared) for run in decoded)
    equal_but_distinct = encode({"a": shared, "b": shared.clone()})
    assert len(equal_but_distinct) > 2 * shared.numel() * 4


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=300) | st.integers(wire.MAX_TEXT - 4, wire.MAX_TEXT + 4).map(lambda n: ("a\u00e9\u2028\"\\\x00" * (1 << 16))[:n]),
    st.lists(tensors, max_size=3),
)
def test_a_text_template_encodes_exactly_what_encode_does(text: str, values: list[torch.Tensor]) -> None:
    """The sandbox encodes a question's runs once and writes each answer's source into the
    header; the bytes must be those of a full encoding, whatever the source (quotes, escapes,
    line separators, NUL, and past the length where a string travels as its type name)."""
    doc = {"source": "", "expect": ["z"], "runs": [{"seed": 1, "given": {f"x{i}": v for i, v in enumerate(values)}}]}
    template = wire.text_template(doc, "source", keep_grad=True)
    assert template(text) == wire.encode({**doc, "source": text}, keep_grad=True)
    if len(text) <= wire.MAX_TEXT:
        assert wire.decode(template(text))["source"] == text
