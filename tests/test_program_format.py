"""The strict program format: what the trusted side accepts, what it refuses and why.

Programs here are built by hand (as a hostile child could build them), encoded in the wire
format and decoded by :func:`decode_program`; every refusal is a :class:`ProgramRefused`
whose message starts "could not measure".
"""

from __future__ import annotations

import json
import resource
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaequiz.grading.sandbox import wire
from vaequiz.grading.sandbox.program import capture_bytes
from vaequiz.grading.sandbox.program_format import (
    FORMAT,
    MAX_NODES,
    MAX_PROGRAM_BYTES,
    ProgramRefused,
    allowed_overload,
    decode_program,
    encode_program,
)
from vaequiz.grading.sandbox.program_run import NotCaptured, measure_run

MU = torch.tensor([[0.5, -1.0]], requires_grad=True)
GIVEN = {"mu": MU}


def program(nodes: list, ops: list[str], outputs: dict, consts: list | None = None, inputs: list | None = None) -> bytes:
    """A one-graph program over the given ``mu`` (value 0), consts next, then nodes."""
    graph = {
        "label": "main",
        "train": False,
        "inputs": inputs if inputs is not None else [["given", "mu", "float32", [1, 2], True]],
        "consts": consts or [],
        "ops": ops,
        "nodes": [nodes] if nodes else [],
        "outputs": outputs,
    }
    doc = {"format": FORMAT, "unsupported": None, "error": None, "missing": [], "main": graph, "modules": {}}
    return encode_program(doc)


def measure(data: bytes) -> Any:
    return measure_run(decode_program(data), GIVEN, seed=1, probes=[_grad_probe()])


def _grad_probe() -> Any:
    from vaequiz.grading.sandbox.api import ProbeRequest

    return ProbeRequest(kind="grad", target="z", wrt=("mu",))


DOUBLE = [0, [["t", 0], ["n", 2]], {}, True, [["tensor", "float32", [1, 2]]]]


def test_a_well_formed_program_is_rebuilt_and_measured_here() -> None:
    outcome = measure(program([DOUBLE], ["aten.mul.Tensor"], {"z": ["t", 1]}))
    torch.testing.assert_close(outcome.outputs["z"], MU.detach() * 2)
    torch.testing.assert_close(outcome.outputs["grad__z__mu"], torch.full((1, 2), 2.0))


def test_a_constant_output_has_no_gradient_whatever_its_value() -> None:
    outcome = measure(program([], [], {"z": ["t", 1]}, consts=[torch.tensor([[1.0, -2.0]])]))
    assert outcome.outputs["grad__z__mu"] is None
    assert outcome.probe_errors["grad__z__mu"] == "no gradient flows from z to mu"


def test_an_op_recorded_under_no_grad_is_rebuilt_under_no_grad() -> None:
    node = [0, [["t", 0], ["n", 2]], {}, False, [["tensor", "float32", [1, 2]]]]
    outcome = measure(program([node], ["aten.mul.Tensor"], {"z": ["t", 1]}))
    assert outcome.probe_errors["grad__z__mu"] == "no gradient flows from z to mu"


@pytest.mark.parametrize(
    "op",
    [
        "aten.from_file.default",
        "aten.set_.source_Storage",
        "aten.resize_.default",
        "aten.as_strided.default",
        "aten.add.out",
        "aten.mul.not_an_overload",
        "builtins.eval.default",
        "aten.mul",
        "os.system.default",
    ],
)
def test_an_op_outside_the_allow_list_is_refused(op: str) -> None:
    assert allowed_overload(op) is None
    with pytest.raises(ProgramRefused, match=r"^could not measure: .*is not allowed"):
        decode_program(program([DOUBLE], [op], {"z": ["t", 1]}))


def test_every_allowed_op_reads_and_writes_tensors_only() -> None:
    from vaequiz.grading.sandbox.program_format import ALLOWED_OPS

    for name in ALLOWED_OPS:
        packet = getattr(torch.ops.aten, name, None)
        for overload in packet.overloads() if packet is not None else []:
            op = allowed_overload(f"aten.{name}.{overload}")
            if op is None:
                continue
            for argument in op._schema.arguments:
                writes = argument.alias_info is not None and argument.alias_info.is_write
                assert not writes or argument.name == "self", f"{name}.{overload} writes {argument.name}"
                assert "Storage" not in str(argument.real_type), f"{name}.{overload}"


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        ([0, [["t", 5], ["n", 2]], {}, True, [["tensor", "float32", [1, 2]]]], "does not exist yet"),
        ([0, [["t", -1], ["n", 2]], {}, True, [["tensor", "float32", [1, 2]]]], "does not exist yet"),
        ([0, [["t", 0], ["n", "2"]], {}, True, [["tensor", "float32", [1, 2]]]], "expected a tensor"),
        ([0, [["t", 0], ["t", 0], ["t", 0]], {}, True, [["tensor", "float32", [1, 2]]]], "at most 2 positional"),
        ([0, [["t", 0], ["n", 2]], {"out": ["t", 0]}, True, [["tensor", "float32", [1, 2]]]], "no argument 'out'"),
        ([0, [["t", 0], ["n", 2]], {}, True, [["tensor", "float128", [1, 2]]]], "unknown dtype"),
        ([0, [["t", 0], ["n", 2]], {}, True, [["tensor", "float32", [1, -2]]]], "a shape must be"),
        ([0, [["t", 0], ["n", 2]], {}, "yes", [["tensor", "float32", [1, 2]]]], "malformed node"),
        ([3, [["t", 0], ["n", 2]], {}, True, [["tensor", "float32", [1, 2]]]], "op index out of range"),
        ([0, [["py", "lambda: 0"], ["n", 2]], {}, True, []], "expected a tensor"),
    ],
)
def test_a_malformed_node_is_refused(node: list, reason: str) -> None:
    with pytest.raises(ProgramRefused, match=reason):
        decode_program(program([node], ["aten.mul.Tensor"], {"z": ["t", 1]}))


def test_a_generator_argument_is_refused() -> None:
    node = [0, [["t", 0]], {"generator": ["n", 7]}, True, [["tensor", "float32", [1, 2]]]]
    with pytest.raises(ProgramRefused, match="Generator"):
        decode_program(program([node], ["aten.normal_.default"], {"z": ["t", 1]}))


def test_a_factory_asking_for_too_many_elements_is_refused_before_it_runs() -> None:
    node = [0, [["l", [1 << 20, 1 << 20]]], {}, True, [["tensor", "float32", [1, 1]]]]
    with pytest.raises(ProgramRefused, match="elements"):
        decode_program(program([node], ["aten.ones.default"], {"z": ["t", 1]}))


def test_a_node_that_lies_about_its_output_is_refused_when_replayed() -> None:
    node = [0, [["t", 0], ["n", 2]], {}, True, [["tensor", "float64", [1, 2]]]]
    with pytest.raises(ProgramRefused, match="did not produce what the program declares"):
        measure(program([node], ["aten.mul.Tensor"], {"z": ["t", 1]}))


def test_a_given_with_another_shape_is_refused() -> None:
    data = program([DOUBLE], ["aten.mul.Tensor"], {"z": ["t", 1]}, inputs=[["given", "mu", "float32", [3, 2], True]])
    with pytest.raises(ProgramRefused, match="dtype and shape"):
        measure(data)


def test_uninitialised_memory_is_zero_filled() -> None:
    node = [0, [["l", [4, 4]]], {"dtype": ["dtype", "float32"]}, True, [["tensor", "float32", [4, 4]]]]
    outcome = measure(program([node], ["aten.empty.memory_format"], {"z": ["t", 1]}))
    assert torch.equal(outcome.outputs["z"], torch.zeros(4, 4))


def test_a_program_marked_unsupported_is_not_measured_but_handed_back() -> None:
    data = capture_bytes("z = torch.randn(2, 2).to_sparse()\n", ["z"], GIVEN, seed=1)
    program_ = decode_program(data)
    assert program_.unsupported
    with pytest.raises(NotCaptured):
        measure_run(program_, GIVEN, 1)


def test_more_nodes_than_the_budget_are_refused() -> None:
    node = [0, [["t", 0], ["n", 1]], {}, True, [["tensor", "float32", [1, 2]]]]
    chunks = [[node] * wire.MAX_ITEMS for _ in range(MAX_NODES // wire.MAX_ITEMS)] + [[node]]
    graph = {
        "label": "main", "train": False, "inputs": [["given", "mu", "float32", [1, 2], True]],
        "consts": [], "ops": ["aten.mul.Tensor"], "nodes": chunks, "outputs": {"z": ["t", 1]},
    }
    doc = {"format": FORMAT, "unsupported": None, "error": None, "missing": [], "main": graph, "modules": {}}
    with pytest.raises(ProgramRefused, match=f"more than {MAX_NODES} operations"):
        decode_program(encode_program(doc))


def test_a_graph_of_ten_million_nodes_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Written to disk node by node (as a child would stream it), mapped, then decoded: the
    size check refuses it before any of it is parsed, so memory does not grow with it."""
    node = b"[0,[],{},true,[]]"
    count = 10_000_000
    head = b'{"tensors":[],"doc":{"format":"' + FORMAT.encode() + b'","main":{"nodes":[['
    tail = b']]}}}'
    size = len(head) + count * (len(node) + 1) - 1 + len(tail)
    path = tmp_path / "huge.program"
    with path.open("wb") as out:
        out.write(struct.pack("<4sI", wire.MAGIC, size))
        out.write(head)
        block = b",".join([node] * 100_000)
        for i in range(count // 100_000):
            out.write(block if i == 0 else b"," + block)
        out.write(tail)
    import mmap

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert len(mapped) > MAX_PROGRAM_BYTES
        with pytest.raises(ProgramRefused, match="exceeds the limit"):
            decode_program(memoryview(mapped))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    path.unlink()
    assert grown_kib < 64 * 1024, f"decoding grew the peak memory by {grown_kib} KiB"


VALID = program([DOUBLE], ["aten.mul.Tensor"], {"z": ["t", 1]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_programs_are_measured_or_refused_never_crash(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        decoded = decode_program(bytes(raw))
    except ProgramRefused as err:
        assert str(err).startswith("could not measure")
        return
    try:
        measure_run(decoded, GIVEN, 1, [_grad_probe()])
    except (ProgramRefused, NotCaptured):
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=12,
    )
)
def test_arbitrary_documents_are_refused_cleanly(doc: Any) -> None:
    try:
        decode_program(wire.encode(doc))
    except ProgramRefused as err:
        assert str(err).startswith("could not measure")
    json.dumps(doc)  # the document itself stays plain JSON
