"""Parametric questions in QTI 3.0: template variables, so every delivery draws its own numbers.

A question's params become ``qti-template-declaration`` s, drawn in ``qti-template-processing``
(``qti-random-integer`` for whole-number ranges, ``qti-random`` over a ``qti-multiple`` for
other choices), derived params and the numbers texts show become ``qti-set-template-value`` s
whose QTI expressions are translated from vaequiz's expression syntax tree, and ``where:``
becomes ``qti-template-constraint`` s. Texts show the numbers through ``qti-printed-variable``
(MathML through math variables). A numeric answer is computed as a template variable and
response processing accepts it within the tolerance.

Whatever QTI cannot express (``round()``, ``x if c else y``, a shape or a per-draw MCQ key
that is text, a placeholder glued to other digits) raises :class:`Untranslatable`; the export
then writes fixed variants instead.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable, Iterator
from xml.etree import ElementTree as ET

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShortAnswer,
    question_adapter,
)
from vaequiz.bank.parametric import sample_students, space_of, text_fields
from vaequiz.expressions import Expression, evaluate, parse_expression
from vaequiz.params import PLACEHOLDER

QTI_NS = "http://www.imsglobal.org/xsd/imsqtiasi_v3p0"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
LIST_LIMIT = 1000
"""Most values a choice is listed with in ``qti-multiple``; longer ranges are computed."""
ANSWER = "ANSWER"
TOLERANCE = "TOLERANCE"


class Untranslatable(ValueError):
    """QTI cannot express this part of a question; the message says which."""


def q(tag: str) -> str:
    return f"{{{QTI_NS}}}{tag}"


def param_identifier(name: str) -> str:
    """The template variable of a param (prefixed, so a math variable ``I`` never replaces an
    identity matrix's ``I`` in the same formula)."""
    return f"P_{name}"


def _value_type(values: Iterator[Any]) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {bool}:
        return "boolean"
    if kinds <= {int}:
        return "integer"
    return "float"


def _lexical(value: Any) -> str:
    """A value as QTI writes it (``true``, ``-2``, ``0.25``)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _base_value(parent: ET.Element, value: Any) -> str:
    base_type = "boolean" if isinstance(value, bool) else "integer" if isinstance(value, int) else "float"
    ET.SubElement(parent, q("qti-base-value"), {"base-type": base_type}).text = _lexical(value)
    return base_type


def _literal_number(node: ast.expr) -> float | None:
    """The value of a number written out (``2``, ``-0.5``, ``(3)``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal_number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    return None


class Translator:
    """vaequiz expressions as QTI expressions; ``types`` gives each template variable's type."""

    _ARITHMETIC = {ast.Add: "qti-sum", ast.Sub: "qti-subtract", ast.Mult: "qti-product"}
    _COMPARISONS = {ast.Lt: "qti-lt", ast.LtE: "qti-lte", ast.Gt: "qti-gt", ast.GtE: "qti-gte",
                    ast.Eq: "qti-equal"}
    _MATH = {"abs": "abs", "exp": "exp", "floor": "floor", "ceil": "ceil"}

    def __init__(self, types: dict[str, str]) -> None:
        self.types = types

    def translate(self, parent: ET.Element, expression: Expression) -> str:
        """Append ``expression`` to ``parent``; its QTI base type."""
        return self._node(parent, expression.tree)

    def _numeric(self, parent: ET.Element, node: ast.expr) -> str:
        base_type = self._node(parent, node)
        if base_type not in ("integer", "float"):
            raise Untranslatable(f"{ast.unparse(node)} is used as a number but is {base_type}")
        return base_type

    def _whole(self, parent: ET.Element, node: ast.expr) -> ET.Element:
        """``floor(node)`` as an integer (truncating the floor of a float is exact)."""
        truncate = ET.SubElement(parent, q("qti-truncate"))
        floor = ET.SubElement(truncate, q("qti-math-operator"), {"name": "floor"})
        self._numeric(floor, node)
        return truncate

    def _node(self, parent: ET.Element, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return _base_value(parent, node.value)
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return _base_value(parent, node.id == "True")
            ET.SubElement(parent, q("qti-variable"), {"identifier": param_identifier(node.id)})
            return self.types[param_identifier(node.id)]
        if isinstance(node, ast.BinOp):
            return self._binary(parent, node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                self._boolean(ET.SubElement(parent, q("qti-not")), node.operand)
                return "boolean"
            if isinstance(node.op, ast.UAdd):
                return self._numeric(parent, node.operand)
            product = ET.SubElement(parent, q("qti-product"))
            _base_value(product, -1)
            return self._numeric(product, node.operand)
        if isinstance(node, ast.BoolOp):
            element = ET.SubElement(parent, q("qti-and" if isinstance(node.op, ast.And) else "qti-or"))
            for value in node.values:
                self._boolean(element, value)
            return "boolean"
        if isinstance(node, ast.Compare):
            return self._compare(parent, node)
        if isinstance(node, ast.Call):
            return self._call(parent, node)
        raise Untranslatable(f"QTI has no expression for {ast.unparse(node)!r}")

    def _boolean(self, parent: ET.Element, node: ast.expr) -> None:
        if self._node(parent, node) != "boolean":
            raise Untranslatable(f"{ast.unparse(node)} is used as a condition but is a number")

    def _binary(self, parent: ET.Element, node: ast.BinOp) -> str:
        operator = type(node.op)
        if operator in self._ARITHMETIC:
            element = ET.SubElement(parent, q(self._ARITHMETIC[operator]))
            types = {self._numeric(element, node.left), self._numeric(element, node.right)}
            return "integer" if types == {"integer"} else "float"
        if operator is ast.Div:
            element = ET.SubElement(parent, q("qti-divide"))
            self._numeric(element, node.left)
            self._numeric(element, node.right)
            return "float"
        if operator is ast.Pow:
            # QTI's power is NULL for 0 ** 0, which is 1 here; so the exponent must be written
            # out, and a zero one is the constant it always gives
            exponent = _literal_number(node.right)
            if exponent is None:
                raise Untranslatable(f"{ast.unparse(node)}: QTI's power has no value for 0 ** 0, "
                                     "so only an exponent written as a number translates")
            if exponent == 0:
                self._numeric(ET.Element("probe"), node.left)
                return _base_value(parent, 1.0)
            element = ET.SubElement(parent, q("qti-power"))
            self._numeric(element, node.left)
            self._numeric(element, node.right)
            return "float"
        if operator in (ast.FloorDiv, ast.Mod):
            # Python floors both (a // b and a % b take the sign of b); so does this, for whole
            # numbers. Fractional ones floor-divide by fmod in Python (1 // 0.1 == 9.0), which
            # QTI has no operator for.
            probe = ET.Element("probe")
            if {self._numeric(probe, node.left), self._numeric(probe, node.right)} != {"integer"}:
                raise Untranslatable(f"QTI cannot floor-divide fractional numbers as Python does ({ast.unparse(node)})")
            if operator is ast.FloorDiv:
                self._whole_quotient(parent, node)
                return "integer"
            subtract = ET.SubElement(parent, q("qti-subtract"))
            self._numeric(subtract, node.left)
            product = ET.SubElement(subtract, q("qti-product"))
            self._numeric(product, node.right)
            self._whole_quotient(product, node)
            return "integer"
        raise Untranslatable(f"QTI has no operator for {ast.unparse(node)!r}")

    def _quotient(self, parent: ET.Element, node: ast.BinOp) -> None:
        divide = ET.SubElement(parent, q("qti-divide"))
        self._numeric(divide, node.left)
        self._numeric(divide, node.right)

    def _whole_quotient(self, parent: ET.Element, node: ast.BinOp) -> None:
        truncate = ET.SubElement(parent, q("qti-truncate"))
        floor = ET.SubElement(truncate, q("qti-math-operator"), {"name": "floor"})
        self._quotient(floor, node)

    def _compare(self, parent: ET.Element, node: ast.Compare) -> str:
        pairs = list(zip([node.left] + node.comparators[:-1], node.ops, node.comparators))
        holder = ET.SubElement(parent, q("qti-and")) if len(pairs) > 1 else parent
        for left, op, right in pairs:
            if isinstance(op, ast.NotEq):
                target = ET.SubElement(ET.SubElement(holder, q("qti-not")), q("qti-equal"))
            elif type(op) in self._COMPARISONS:
                target = ET.SubElement(holder, q(self._COMPARISONS[type(op)]))
            else:
                raise Untranslatable(f"QTI has no comparison for {ast.unparse(node)!r}")
            self._numeric(target, left)
            self._numeric(target, right)
        return "boolean"

    def _call(self, parent: ET.Element, node: ast.Call) -> str:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name in ("min", "max"):
            element = ET.SubElement(parent, q(f"qti-{name}"))
            types = {self._numeric(element, arg) for arg in node.args}
            return "integer" if types == {"integer"} else "float"
        if name == "log":
            if len(node.args) == 1:
                return self._math(parent, "ln", node.args[0])
            divide = ET.SubElement(parent, q("qti-divide"))
            self._math(divide, "ln", node.args[0])
            self._math(divide, "ln", node.args[1])
            return "float"
        if name == "sqrt":
            power = ET.SubElement(parent, q("qti-power"))
            self._numeric(power, node.args[0])
            _base_value(power, 0.5)
            return "float"
        if name in self._MATH:
            return self._math(parent, self._MATH[name], node.args[0])
        # round(): Python rounds half to even, QTI's qti-round and qti-round-to half up
        raise Untranslatable(f"QTI cannot compute {ast.unparse(node)!r} as vaequiz does")

    def _math(self, parent: ET.Element, operator: str, argument: ast.expr) -> str:
        element = ET.SubElement(parent, q("qti-math-operator"), {"name": operator})
        self._numeric(element, argument)
        return "float"


# --------------------------------------------------------------------------- texts

_MARK = "97531{:04d}13579"
_MARKS = re.compile(r"97531(\d{4})13579")


class _Shown:
    """The template variable each placeholder prints: a param itself, or a computed display."""

    def __init__(self) -> None:
        self.displays: dict[tuple[str, str], str] = {}
        self.marks: list[tuple[str, str]] = []  # mark number -> (identifier, format spec)

    def mark(self, source: str, spec: str) -> str:
        if spec and not re.fullmatch(r"d|\.\d+[fFgG]", spec):
            raise Untranslatable(f"QTI cannot print a number as {{{{ {source.strip()}:{spec} }}}} does")
        source = source.strip()
        expression = parse_expression(source)
        if source.isidentifier() and not spec:
            identifier = param_identifier(source)
        else:
            key = (expression.source.strip(), spec)
            identifier = self.displays.setdefault(key, f"T_{len(self.displays) + 1}")
        self.marks.append((identifier, spec))
        return _MARK.format(len(self.marks) - 1)


def marked(question: AnyQuestion, shown: _Shown) -> AnyQuestion:
    """``question`` with each placeholder replaced by a digit mark that survives Markdown and
    math rendering, to be swapped for a printed variable in the rendered item."""

    def replace(match: re.Match[str]) -> str:
        source, _, spec = match.group(1).partition(":")
        return shown.mark(source, spec.strip())

    data = question.model_dump(mode="json", by_alias=True)
    for path, text in text_fields(question):
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = PLACEHOLDER.sub(replace, text)
    return question_adapter.validate_python(data)


def _printf(spec: str) -> str | None:
    """A Python format spec as QTI's printf-like ``format`` (None when there is no need)."""
    match = re.fullmatch(r"\.(\d+)([fFeEgG])", spec)
    if match:
        return f"%.{match.group(1)}{match.group(2).lower()}"
    return "%d" if spec == "d" else None


def _print_marks(item: ET.Element, shown: _Shown) -> tuple[set[str], set[str]]:
    """Swap every mark for a ``qti-printed-variable``; the identifiers printed, and those shown
    as math variables.

    A mark at the top level of an inline formula splits the formula around a printed variable
    (QTI allows no printed variable inside MathML, and players substitute math variables
    unevenly); one nested deeper (an exponent, a fraction) becomes a math variable."""
    printed: set[str] = set()
    math_variables: set[str] = set()
    _split_formulas(item, shown, printed)
    parents = {child: parent for parent in item.iter() for child in parent}
    for element in list(item.iter()):
        if element.tag.startswith(f"{{{MATHML_NS}}}"):
            found = _MARKS.fullmatch((element.text or "").strip())
            if found and element.tag.endswith(("}mn", "}mi")):
                identifier, _ = shown.marks[int(found.group(1))]
                element.tag = f"{{{MATHML_NS}}}mi"
                element.text = identifier
                math_variables.add(identifier)
            continue
        if element.text and _MARKS.search(element.text):
            pieces = _MARKS.split(element.text)
            element.text = pieces[0]
            for index, (number, after) in enumerate(zip(pieces[1::2], pieces[2::2])):
                variable = _printed(shown, number, printed)
                variable.tail = after
                element.insert(index, variable)
        if element.tail and _MARKS.search(element.tail) and element in parents:
            parent = parents[element]
            pieces = _MARKS.split(element.tail)
            element.tail = pieces[0]
            position = list(parent).index(element)
            for offset, (number, after) in enumerate(zip(pieces[1::2], pieces[2::2])):
                variable = _printed(shown, number, printed)
                variable.tail = after
                parent.insert(position + 1 + offset, variable)
    left = _MARKS.search(ET.tostring(item, encoding="unicode"))
    if left:
        raise Untranslatable("a placeholder sits where QTI cannot print a variable (glued to other "
                             "digits, or inside a formula's number)")
    return printed, math_variables


def _split_formulas(item: ET.Element, shown: _Shown, printed: set[str]) -> None:
    """``<math>(<mn>mark</mn>, 0)</math>`` -> ``<math>(</math><qti-printed-variable/><math>, 0)</math>``."""
    parents = {child: parent for parent in item.iter() for child in parent}
    for formula in list(item.iter(f"{{{MATHML_NS}}}math")):
        top = formula
        while len(top) == 1 and top[0].tag == f"{{{MATHML_NS}}}mrow":
            top = top[0]  # a lone row groups nothing
        marks = [i for i, child in enumerate(top)
                 if child.tag.endswith(("}mn", "}mi")) and _MARKS.fullmatch((child.text or "").strip())]
        if not marks or formula not in parents:
            continue
        parent = parents[formula]
        replacement: list[ET.Element] = []
        group: list[ET.Element] = []
        for i, child in enumerate(list(top)):
            if i in marks:
                if group:
                    replacement.append(_formula_like(formula, group))
                    group = []
                found = _MARKS.fullmatch((child.text or "").strip())
                assert found is not None
                replacement.append(_printed(shown, found.group(1), printed))
            else:
                group.append(child)
        if group:
            replacement.append(_formula_like(formula, group))
        replacement[-1].tail = formula.tail
        position = list(parent).index(formula)
        parent.remove(formula)
        for offset, element in enumerate(replacement):
            parent.insert(position + offset, element)


def _formula_like(formula: ET.Element, children: list[ET.Element]) -> ET.Element:
    part = ET.Element(formula.tag, dict(formula.attrib))
    part.extend(children)
    return part


def _printed(shown: _Shown, number: str, printed: set[str]) -> ET.Element:
    identifier, spec = shown.marks[int(number)]
    printed.add(identifier)
    attributes = {"identifier": identifier}
    printf = _printf(spec)
    if printf:
        attributes["format"] = printf
    return ET.Element(q("qti-printed-variable"), attributes)


# --------------------------------------------------------------------------- the item


def _set_value(processing: ET.Element, identifier: str, translate: Callable[[ET.Element], str]) -> str:
    element = ET.SubElement(processing, q("qti-set-template-value"), {"identifier": identifier})
    return translate(element)


def _draw(parent: ET.Element, values: tuple[Any, ...]) -> str:
    """Append a random pick of one of ``values``; its base type."""
    base_type = _value_type(iter(values))
    steps = {b - a for a, b in zip(values, values[1:])}
    if base_type == "integer" and len(values) > 1 and len(steps) == 1 and min(steps) > 0:
        ET.SubElement(parent, q("qti-random-integer"), {
            "min": str(values[0]), "max": str(values[-1]), "step": str(steps.pop())})
        return "integer"
    if len(values) <= LIST_LIMIT:
        choices = ET.SubElement(ET.SubElement(parent, q("qti-random")), q("qti-multiple"))
        for value in values:
            ET.SubElement(choices, q("qti-base-value"), {"base-type": base_type}).text = _lexical(value)
        return base_type
    # a long float range low + k * step: computed from a random whole k
    low, step = values[0], (values[-1] - values[0]) / (len(values) - 1)
    rounded = ET.SubElement(parent, q("qti-round-to"), {"rounding-mode": "decimalPlaces", "figures": "12"})
    total = ET.SubElement(rounded, q("qti-sum"))
    _base_value(total, float(low))
    product = ET.SubElement(total, q("qti-product"))
    _base_value(product, float(step))
    ET.SubElement(product, q("qti-random-integer"), {"min": "0", "max": str(len(values) - 1)})
    return "float"


def _check_key(question: AnyQuestion) -> None:
    """Refuse a question whose key depends on the numbers in a way QTI cannot compute."""
    if isinstance(question, MultipleChoice):
        if any(option.correct_if for option in question.options):
            raise Untranslatable("its key depends on the numbers (correct_if)")
    elif not isinstance(question, (NumericAnswer, ShortAnswer, CodeQuestion)):
        raise Untranslatable(f"a {question.kind} answer depends on the numbers")


def template_parts(question: AnyQuestion) -> tuple[AnyQuestion, Callable[[ET.Element], None]]:
    """The question with marks in its texts, and a function that turns an item built from it
    into a templated one (declarations, processing, printed variables)."""
    _check_key(question)
    space = space_of(question)
    shown = _Shown()
    plain = marked(question, shown)
    draws = sample_students(question, 40, "qti-types")
    types: dict[str, str] = {}
    processing = ET.Element(q("qti-template-processing"))
    translator = Translator(types)
    for name, values in space.free.items():
        types[param_identifier(name)] = _set_value(processing, param_identifier(name),
                                                   lambda parent, v=values: _draw(parent, v))
    for name, expression in space.derived.items():
        types[param_identifier(name)] = _set_value(
            processing, param_identifier(name), lambda parent, e=expression: translator.translate(parent, e))
    for constraint in space.where:
        element = ET.SubElement(processing, q("qti-template-constraint"))
        if translator.translate(element, constraint) != "boolean":
            raise Untranslatable(f"where {constraint.source!r} is not a condition")
    answer_steps = len(processing)
    if isinstance(question, NumericAnswer):
        expression = parse_expression(question.answer) if isinstance(question.answer, str) else None
        answer = ET.SubElement(processing, q("qti-set-template-value"), {"identifier": ANSWER})
        if expression is None:
            _base_value(answer, float(question.answer))
        else:
            types[ANSWER] = translator.translate(answer, expression)
            if types[ANSWER] == "boolean":
                raise Untranslatable("the answer is a condition, not a number")
        types.setdefault(ANSWER, "float")
        tolerance = ET.SubElement(processing, q("qti-set-template-value"), {"identifier": TOLERANCE})
        if question.relative_tolerance:
            widest = ET.SubElement(tolerance, q("qti-max"))
            _base_value(widest, float(question.tolerance))
            product = ET.SubElement(widest, q("qti-product"))
            _base_value(product, float(question.relative_tolerance))
            absolute = ET.SubElement(product, q("qti-math-operator"), {"name": "abs"})
            ET.SubElement(absolute, q("qti-variable"), {"identifier": ANSWER})
        else:
            _base_value(tolerance, float(question.tolerance))
        types[TOLERANCE] = "float"
        correct = ET.SubElement(processing, q("qti-set-correct-response"), {"identifier": "RESPONSE"})
        ET.SubElement(correct, q("qti-variable"), {"identifier": ANSWER})

    def finish(item: ET.Element) -> None:
        printed, math_variables = _print_marks(item, shown)
        used = printed | math_variables  # a display only other texts (the explanation) show is left out
        displays = {key: identifier for key, identifier in shown.displays.items() if identifier in used}
        for offset, ((source, spec), identifier) in enumerate(displays.items()):
            processing.insert(answer_steps + offset, _display(translator, identifier, source, spec))
        _check_types(displays, draws, types)
        body = item.find(q("qti-item-body"))
        assert body is not None
        position = list(item).index(body)
        declarations = [
            ET.Element(q("qti-template-declaration"), {
                "identifier": identifier, "cardinality": "single", "base-type": base_type,
                **({"math-variable": "true"} if identifier in math_variables else {}),
            })
            for identifier, base_type in types.items()
        ]
        for offset, element in enumerate(declarations + [processing]):
            item.insert(position + offset, element)

    return plain, finish


def _display(translator: Translator, identifier: str, source: str, spec: str) -> ET.Element:
    """``identifier`` set to the value a placeholder shows, rounded as its format asks."""
    holder = ET.Element("holder")
    base_type = translator.translate(holder, parse_expression(source))
    translator.types[identifier] = base_type
    element = outer = ET.Element(q("qti-set-template-value"), {"identifier": identifier})
    rounding = re.fullmatch(r"\.(\d+)([fFgG])", spec)
    if rounding and base_type == "float":  # the value shown is the value rounded as asked
        mode = "decimalPlaces" if rounding.group(2) in "fF" else "significantFigures"
        element = ET.SubElement(outer, q("qti-round-to"), {"rounding-mode": mode, "figures": rounding.group(1)})
    element.extend(list(holder))
    return outer


def _check_types(displays: dict[tuple[str, str], str], draws: list[dict[str, Any]], types: dict[str, str]) -> None:
    """A value QTI would hold as an integer must be whole for every sampled draw (vaequiz's
    integers and QTI's agree), else the translation is refused rather than wrong."""
    for draw in draws:
        for (source, _), identifier in displays.items():
            value = evaluate(source, draw)
            if types[identifier] == "integer" and not isinstance(value, int):
                raise Untranslatable(f"{source!r} is whole in QTI but not in vaequiz")
