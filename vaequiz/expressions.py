"""A small, safe evaluator for the arithmetic a parametric question writes (``"C * 2"``,
``"0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)"``, ``"D < H"``).

Bank files are shared and reviewed like code, yet a bank must never be able to run code: an
expression is parsed with :mod:`ast` and every node is checked against an allow-list (numbers,
parameter names, arithmetic, comparisons, ``and``/``or``/``not``, ``x if c else y`` and calls of
a few math functions by name). Nothing is ever handed to ``eval``. Size, exponents and result
magnitudes are bounded, so evaluating any accepted expression is fast and cannot exhaust memory.
It sits below the bank, render and grading, which all evaluate the same expressions.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Union

Number = Union[int, float]
Value = Union[int, float, bool]

MAX_SOURCE_CHARS = 500
"""Longest expression text accepted."""
MAX_NODES = 200
"""Most syntax-tree nodes an expression may have (bounds evaluation time)."""
MAX_DEPTH = 40
"""Deepest nesting accepted (bounds recursion)."""
MAX_EXPONENT = 64
"""Largest absolute exponent of ``**``."""
MAX_MAGNITUDE = 1e100
"""Largest absolute value any step may produce."""
MAX_INT = 10**18
"""Integers beyond this are refused (``2**64`` would be fine as a float, not as a size)."""

FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "min": (min, 2, 16),
    "max": (max, 2, 16),
    "abs": (abs, 1, 1),
    "log": (math.log, 1, 2),
    "exp": (math.exp, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "round": (round, 1, 2),
}
"""Callable names: the function, fewest and most arguments."""

RESERVED = frozenset(FUNCTIONS) | {"True", "False", "None"}
"""Names a parameter may not take."""

_BINARY: dict[type, tuple[str, Callable[[Number, Number], Number]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.FloorDiv: ("//", lambda a, b: a // b),
    ast.Mod: ("%", lambda a, b: a % b),
    ast.Pow: ("**", lambda a, b: a**b),
}
_COMPARE: dict[type, Callable[[Number, Number], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_DESCRIBED: dict[type, str] = {
    ast.Attribute: "attribute access (x.y)",
    ast.Subscript: "indexing (x[i])",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Set: "a set",
    ast.Dict: "a mapping",
    ast.Starred: "*unpacking",
    ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "an f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says why, for the author."""


@dataclass(frozen=True)
class Expression:
    """A parsed, allow-listed expression; ``names`` are the parameters it reads."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def __call__(self, values: Mapping[str, Value]) -> Value:
        return evaluate(self, values)


def parse_expression(source: str) -> Expression:
    """Parse ``source`` into an :class:`Expression`, or raise :class:`ExpressionError`."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression is text, not {type(source).__name__}")
    text = source.strip()
    if not text:
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE_CHARS} characters")
    if "\n" in text or "\r" in text:
        raise ExpressionError("an expression is one line")
    try:
        module = ast.parse(text, mode="eval")
    except SyntaxError as err:
        where = f" at column {err.offset}" if err.offset else ""
        raise ExpressionError(f"{text!r} is not a valid expression{where}: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes, absurd nesting
        raise ExpressionError(f"{text[:60]!r} is not a valid expression: {type(err).__name__}") from None
    names: set[str] = set()
    count = _check(module.body, names, depth=0, count=0)
    if count > MAX_NODES:
        raise ExpressionError(f"the expression is too large ({count} parts; at most {MAX_NODES})")
    return Expression(text, module.body, frozenset(names))


def _check(node: ast.AST, names: set[str], depth: int, count: int) -> int:
    """Refuse every node outside the allow-list; return the running node count."""
    count += 1
    if count > MAX_NODES:
        raise ExpressionError(f"the expression is too large (more than {MAX_NODES} parts)")
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or type(node.value) in (int, float):
            if isinstance(node.value, int) and abs(node.value) > MAX_INT:
                raise ExpressionError(f"the number {node.value} is too large")
            return count
        raise ExpressionError(f"only numbers may be written literally, not {node.value!r}"[:120])
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise ExpressionError(f"names starting with '__' are not allowed ({node.id})")
        if node.id in FUNCTIONS:
            raise ExpressionError(f"{node.id} is a function; call it, like {node.id}(x)")
        if node.id not in ("True", "False"):
            names.add(node.id)
        return count
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"the operator {type(node.op).__name__} is not allowed; use + - * / // % **")
        count = _check(node.left, names, depth + 1, count)
        return _check(node.right, names, depth + 1, count)
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            raise ExpressionError("the operator ~ is not allowed")
        return _check(node.operand, names, depth + 1, count)
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            count = _check(value, names, depth + 1, count)
        return count
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ExpressionError(f"the comparison {type(op).__name__} is not allowed; use == != < <= > >=")
        count = _check(node.left, names, depth + 1, count)
        for comparator in node.comparators:
            count = _check(comparator, names, depth + 1, count)
        return count
    if isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            count = _check(part, names, depth + 1, count)
        return count
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            what = node.func.id if isinstance(node.func, ast.Name) else "this"
            raise ExpressionError(f"calling {what} is not allowed; the functions are {allowed}")
        if node.keywords:
            raise ExpressionError(f"{node.func.id}() takes no keyword arguments")
        _, fewest, most = FUNCTIONS[node.func.id]
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise ExpressionError(f"{node.func.id}() takes {wanted} argument(s), not {len(node.args)}")
        for arg in node.args:
            count = _check(arg, names, depth + 1, count)
        return count
    what = _DESCRIBED.get(type(node), type(node).__name__)
    raise ExpressionError(f"{what} is not allowed in an expression")


def evaluate(expression: Expression | str, values: Mapping[str, Value]) -> Value:
    """The value of ``expression`` for ``values`` (parameter name -> number).

    Raises :class:`ExpressionError` for an unknown name, a division by zero, a math domain
    error, an exponent or a result beyond the bounds, or a non-finite result.
    """
    parsed = parse_expression(expression) if isinstance(expression, str) else expression
    missing = sorted(parsed.names - set(values))
    if missing:
        raise ExpressionError(f"unknown name(s) {', '.join(missing)} in {parsed.source!r}")
    try:
        return _eval(parsed.tree, values)
    except ExpressionError as err:
        raise ExpressionError(f"{parsed.source!r}: {err}") from None


def _bounded(value: Value) -> Value:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ExpressionError(f"an integer result is larger than {MAX_INT:.0e}")
        return value
    if not math.isfinite(value):
        raise ExpressionError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ExpressionError(f"a result is larger than {MAX_MAGNITUDE:g}")
    return value


def _number(value: Value, what: str) -> Number:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, (int, float)):
        raise ExpressionError(f"{what} is not a number")
    return value


def _eval(node: ast.expr, values: Mapping[str, Value]) -> Value:
    if isinstance(node, ast.Constant):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, ast.Name):
        if node.id == "True":
            return True
        if node.id == "False":
            return False
        return _bounded(_number(values[node.id], f"parameter {node.id}"))
    if isinstance(node, ast.BinOp):
        symbol, operation = _BINARY[type(node.op)]
        left = _number(_eval(node.left, values), "an operand")
        right = _number(_eval(node.right, values), "an operand")
        if symbol in ("/", "//", "%") and right == 0:
            raise ExpressionError("division by zero")
        if symbol == "**":
            if abs(right) > MAX_EXPONENT:
                raise ExpressionError(f"the exponent {right:g} is larger than {MAX_EXPONENT}")
            if left == 0 and right < 0:
                raise ExpressionError("0 cannot be raised to a negative power")
            if left < 0 and not float(right).is_integer():
                raise ExpressionError("a negative number cannot be raised to a fractional power")
            if abs(left) > 1 and abs(right) * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise ExpressionError(f"{left:g} ** {right:g} is larger than {MAX_MAGNITUDE:g}")
        try:
            return _bounded(operation(left, right))
        except OverflowError:
            raise ExpressionError(f"{left:g} {symbol} {right:g} overflows") from None
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        number = _number(operand, "an operand")
        return -number if isinstance(node.op, ast.USub) else +number
    if isinstance(node, ast.BoolOp):
        result: Value = True
        for part in node.values:
            result = _eval(part, values)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result
    if isinstance(node, ast.Compare):
        left = _number(_eval(node.left, values), "an operand")
        for op, comparator in zip(node.ops, node.comparators):
            right = _number(_eval(comparator, values), "an operand")
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, values) if _eval(node.test, values) else _eval(node.orelse, values)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        function = FUNCTIONS[name][0]
        args = [_number(_eval(arg, values), f"an argument of {name}()") for arg in node.args]
        if name == "round" and len(args) == 2:
            if not isinstance(args[1], int) or abs(args[1]) > 20:
                raise ExpressionError("round()'s second argument is a whole number of digits, at most 20")
        if name in ("floor", "ceil", "round") and len(args) == 1 and abs(args[0]) > MAX_INT:
            raise ExpressionError(f"{name}() of {args[0]:g} is larger than {MAX_INT:.0e}")
        try:
            return _bounded(function(*args))
        except (ValueError, ZeroDivisionError):
            shown = ", ".join(f"{a:g}" for a in args)
            raise ExpressionError(f"{name}({shown}) is not defined") from None
        except OverflowError:
            raise ExpressionError(f"{name}() overflows") from None
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after parsing


def format_value(value: Value, spec: str = "") -> str:
    """A value as text shows it: a format spec (``.2f``) if given; whole numbers without a
    decimal point; other floats with up to 6 significant digits."""
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError) as err:
            raise ExpressionError(f"format {spec!r} does not apply to {value!r}: {err}") from None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
