"""The safe expression evaluator: random valid expressions agree with Python's own arithmetic
(the reference), and hostile texts always fail with a message, never escaping the allow-list."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaequiz.expressions import (
    MAX_NODES,
    ExpressionError,
    evaluate,
    format_value,
    parse_expression,
)

NAMES = {"B": 32, "D": 8, "mu": 0.5, "sigma": 1.5}
REFERENCE_FUNCTIONS = {
    "min": min, "max": max, "abs": abs, "log": math.log, "exp": math.exp, "sqrt": math.sqrt,
    "floor": math.floor, "ceil": math.ceil, "round": round,
}

numbers = st.one_of(
    st.integers(-20, 20).map(str),
    st.floats(0.25, 20, allow_nan=False).map(lambda x: repr(round(x, 3))),
)
leaves = st.one_of(numbers, st.sampled_from(sorted(NAMES)))


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.integers(0, 3)).map(lambda t: f"({t[0]}) ** {t[1]}"),
        children.map(lambda c: f"-({c})"),
        st.tuples(children, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        children.map(lambda c: f"(not {c})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(["min", "max"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "floor", "ceil", "round", "exp", "log", "sqrt"]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
    )


expressions = st.recursive(leaves, _extend, max_leaves=12)


def reference(source: str) -> object:
    """Python's own evaluation of the same text, as the reference computation."""
    return eval(source, {"__builtins__": {}}, {**REFERENCE_FUNCTIONS, **NAMES})  # noqa: S307 - test reference


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_valid_expressions_agree_with_the_reference(source: str) -> None:
    try:
        expected = reference(source)
    except (ZeroDivisionError, ValueError, OverflowError):
        with pytest.raises(ExpressionError):
            evaluate(source, NAMES)
        return
    try:
        got = evaluate(source, NAMES)
    except ExpressionError as err:
        # only the bounds may refuse what Python computes: a huge or non-finite step
        assert str(err)
        assert not (isinstance(expected, (int, float)) and math.isfinite(expected) and abs(expected) < 1e12), (source, err)
        return
    if isinstance(expected, float) or isinstance(got, float):
        assert math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=1e-12), (source, got, expected)
    else:
        assert got == expected, (source, got, expected)


HOSTILE = [
    "B.__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "B[0]",
    "(lambda: 1)()",
    "[x for x in (1, 2)]",
    "{x: 1 for x in B}",
    "(x for x in B)",
    "__import__('os').system('touch /tmp/vaequiz-pwned')",
    "__builtins__",
    "open('/etc/passwd')",
    "eval('1')",
    "getattr(B, 'real')",
    "9 ** 9 ** 9",
    "2 ** 1000",
    "10.0 ** 400",
    "exp(1000)",
    "'text'",
    "b'bytes'",
    "f'{B}'",
    "(B := 3)",
    "[1, 2]",
    "(1, 2)",
    "{1}",
    "*B",
    "B if",
    "min()",
    "round(B, ndigits=2)",
    "~B",
    "B @ B",
    "B in (1, 2)",
    "B is 1",
    "None",
    "import os",
    "1; 2",
    "B\n+1",
    "-" * 200 + "1",
    "+".join(["B"] * (MAX_NODES + 1)),
    "1" * 600,
]


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_expressions_fail_with_a_message(source: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, NAMES)
    assert str(caught.value).strip()


hostile_fragments = st.sampled_from(
    [".__class__", "[0]", "lambda: ", " for x in B", "__dict__", "__import__", "** 999", "getattr", "open",
     "'s'", ".real", ":=", "{", "}", "[", "]", "*", "@", "(", ")", "B", "1", " ", ",", "=", "\\", "#"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(hostile_fragments, min_size=1, max_size=12).map("".join) | st.text(max_size=80))
def test_any_text_either_evaluates_to_a_number_or_fails_with_a_message(source: str) -> None:
    try:
        value = evaluate(source, NAMES)
    except ExpressionError as err:
        assert str(err).strip()
        return
    assert isinstance(value, (int, float, bool))
    assert all(not name.startswith("__") for name in parse_expression(source).names)


@given(st.sampled_from(["__import__", "__class__", "__builtins__", "__dict__"]))
def test_dunder_names_are_refused_even_as_params(name: str) -> None:
    with pytest.raises(ExpressionError, match="__"):
        evaluate(name, {name: 1})


def test_unknown_names_are_named() -> None:
    with pytest.raises(ExpressionError, match="unknown name.*H"):
        evaluate("D < H", {"D": 1})


def test_parse_reports_the_names_read() -> None:
    assert parse_expression("0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)").names == {"mu", "sigma"}


def test_format_value() -> None:
    assert format_value(32) == "32"
    assert format_value(4.0) == "4"
    assert format_value(1 / 3) == "0.333333"
    assert format_value(1.5, ".2f") == "1.50"
    with pytest.raises(ExpressionError):
        format_value(1.5, "d")
