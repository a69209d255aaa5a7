"""vaequiz expressions as Moodle calculated-question formulas (``{B} * pow({D}, 2)``).

Moodle substitutes each wildcard ``{name}`` with its dataset value in parentheses and evaluates
the result as PHP, after ``qtype_calculated_find_formula_errors`` has allowed only numbers,
``+ - * / % **``-style operators and a list of PHP math functions. The translation is written
from the safe expression's syntax tree, fully parenthesised so PHP's precedence cannot differ
from Python's, and keeps Python's meaning: ``a // b`` becomes ``floor(a / b)`` and ``a % b``
becomes ``(a - b * floor(a / b))`` (PHP's ``%`` truncates to integers). What PHP cannot say the
same way raises :class:`NotExpressible` with the reason, and the exporter falls back to fixed
draws: ``round`` (Python rounds halves to even, PHP away from zero), comparisons, ``and``/``or``/
``not`` and ``x if c else y`` (a formula in question text would need ``<``, which HTML escapes).

The same meaning is not always the same number: Python's ``1 // 0.1`` is 9 (the binary 0.1 is a
little above one tenth) while ``floor(1 / 0.1)`` is 10. :func:`moodle_value` computes what Moodle
will compute, step by step as the formula says, so the exporter compares it with vaequiz's value
for every dataset item and falls back where any differs.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Mapping

from vaequiz.expressions import Expression

WILDCARD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""Names Moodle reads as wildcards (a letter first: its placeholder pattern)."""
SAME_FUNCTIONS = frozenset({"min", "max", "abs", "log", "exp", "sqrt", "floor", "ceil"})
"""vaequiz functions PHP computes the same way, under the same name and arguments."""
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class NotExpressible(ValueError):
    """The expression has no Moodle formula with the same meaning; the message says why."""


def wildcard(name: str) -> str:
    if not WILDCARD_NAME.match(name):
        raise NotExpressible(f"the param name {name!r} is not a Moodle wildcard name (a letter first)")
    return "{" + name + "}"


def moodle_formula(expression: Expression) -> str:
    """The Moodle formula computing ``expression`` from the wildcards of its names."""
    return _formula(expression.tree)


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotExpressible(f"the literal {value!r} is not a number")
    return repr(value)


def _formula(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.Name):
        if node.id in ("True", "False"):
            raise NotExpressible("Moodle formulas have no true/false")
        return wildcard(node.id)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return f"(-{_formula(node.operand)})"
        if isinstance(node.op, ast.UAdd):
            return _formula(node.operand)
        raise NotExpressible("'not' has no Moodle formula")
    if isinstance(node, ast.BinOp):
        left, right = _formula(node.left), _formula(node.right)
        if type(node.op) in _OPERATORS:
            return f"({left} {_OPERATORS[type(node.op)]} {right})"
        if isinstance(node.op, ast.Pow):
            return f"pow({left}, {right})"
        if isinstance(node.op, ast.FloorDiv):
            return f"floor({left} / {right})"
        if isinstance(node.op, ast.Mod):
            return f"({left} - {right} * floor({left} / {right}))"
        raise NotExpressible(f"the operator {type(node.op).__name__} has no Moodle formula")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == "round":
            raise NotExpressible("round() rounds halves to even in vaequiz but away from zero in Moodle")
        if name not in SAME_FUNCTIONS:
            raise NotExpressible(f"{name}() has no Moodle formula")
        return f"{name}({', '.join(_formula(arg) for arg in node.args)})"
    if isinstance(node, (ast.Compare, ast.BoolOp, ast.IfExp)):
        raise NotExpressible("comparisons, and/or and 'x if c else y' are not written as Moodle formulas")
    raise NotExpressible(f"{type(node).__name__} has no Moodle formula")


AGREEMENT = 1e-9
"""Relative (and absolute) difference below which Moodle's value and vaequiz's are the same."""
_PHP_FUNCTIONS = {
    "min": min, "max": max, "abs": abs, "exp": math.exp, "sqrt": math.sqrt,
    "floor": lambda x: float(math.floor(x)), "ceil": lambda x: float(math.ceil(x)),
    "log": lambda x, base=None: math.log(x) if base is None else math.log(x) / math.log(base),
}


def moodle_value(expression: Expression, values: Mapping[str, float]) -> float:
    """What Moodle computes for :func:`moodle_formula` of ``expression`` (PHP doubles, operation
    by operation as the formula writes them). Raises ArithmeticError or ValueError where PHP
    would fail (a division by zero, a logarithm of 0)."""
    return float(_value(expression.tree, values))


def _value(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, values)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, values), _value(node.right, values)
        operations = {
            ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
            ast.Div: lambda: left / right, ast.Pow: lambda: left ** right,
            ast.FloorDiv: lambda: float(math.floor(left / right)),
            ast.Mod: lambda: left - right * float(math.floor(left / right)),
        }
        return operations[type(node.op)]()
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _PHP_FUNCTIONS[node.func.id](*(_value(arg, values) for arg in node.args))


def same_number(moodle: float, vaequiz: float) -> bool:
    return math.isclose(moodle, vaequiz, rel_tol=AGREEMENT, abs_tol=AGREEMENT)
