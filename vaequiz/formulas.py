"""LaTeX formulas in bank Markdown: where they are, and whether they convert to MathML.

The lowest layer under the bank and render: ``validate`` reports a formula that cannot be
converted as a located bank problem, and pages convert formulas with the same function, so a
bank that validates never stops a page build on its math.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from functools import lru_cache
from html import escape
from typing import Any, Iterator

from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

__all__ = [
    "MathRenderError", "render_math", "render_inline_math", "markdown_parser", "formulas", "formula_errors",
]


class MathRenderError(ValueError):
    """A formula latex2mathml cannot turn into valid MathML; ``latex`` is the offending source."""

    def __init__(self, latex: str, reason: str) -> None:
        super().__init__(f"cannot render the formula ${latex}$: {reason}")
        self.latex = latex
        self.reason = reason


_MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
_ARITY = {"mfrac": 2, "msup": 2, "msub": 2, "msubsup": 3, "mroot": 2, "mover": 2, "munder": 2,
          "munderover": 3}
"""MathML elements with a fixed number of children; latex2mathml emits fewer on bad input."""
_LEFTOVER_COMMAND = re.compile(r"\\[A-Za-z]+")


def _braces_balanced(latex: str) -> bool:
    depth = 0
    for token in re.findall(r"\\.|[{}]", latex):
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


@lru_cache(maxsize=4096)
def render_math(latex: str, display: bool = False) -> str:
    """One formula as a ``<math>`` element; raises MathRenderError instead of degrading."""
    source = latex.strip()
    if not source:
        raise MathRenderError(latex, "the formula is empty")
    if not _braces_balanced(source):
        raise MathRenderError(latex, "unbalanced braces { }")
    try:
        mathml = latex_to_mathml(source, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises many unrelated exception types
        reason = str(err) or type(err).__name__
        raise MathRenderError(latex, f"{reason} (latex2mathml: {type(err).__name__})") from None
    try:
        tree = ElementTree.fromstring(mathml)
    except ElementTree.ParseError as err:
        raise MathRenderError(latex, f"the converter produced invalid MathML ({err})") from None
    for element in tree.iter():
        name = element.tag.removeprefix(_MATHML_NS)
        expected = _ARITY.get(name)
        if expected is not None and len(element) != expected:
            raise MathRenderError(latex, f"incomplete <{name}>: a group or argument is missing")
        text = element.text or ""
        leftover = _LEFTOVER_COMMAND.search(text)
        if leftover:
            raise MathRenderError(latex, f"unknown command {leftover.group(0)}")
    _typeset_like_tex(tree)
    return _serialise(tree)


_ROW_LIKE = {"math", "mrow", "mstyle", "mtd", "msqrt", "mpadded", "mphantom", "menclose", "merror"}
"""Elements whose children sit side by side (spacing can be inserted between them)."""
_FUNCTION_NAMES = {
    "arg", "cos", "cosh", "cot", "coth", "csc", "deg", "det", "dim", "exp", "gcd", "hom", "inf",
    "ker", "lg", "lim", "ln", "log", "max", "min", "Pr", "sec", "sin", "sinh", "sup", "tan", "tanh",
}
_ACCENTS = {"^": "\u02c6", "~": "\u02dc"}
"""ASCII accents latex2mathml emits for \\hat and \\tilde, and the accent characters to draw."""
_THIN_SPACE = "0.167em"
_CLOSING = set(")]}|\u2016\u27e9\u232a")
_BREAK_AFTER = set("=<>+\u2212\u00b1\u2213\u00d7\u00b7\u2264\u2265\u2248\u2260\u2261\u221d\u2192\u2190\u21d2\u2208\u223c\u2243")
"""Relations and binary operators after which a long inline formula may break, as TeX does."""


def _local(element: ElementTree.Element) -> str:
    return element.tag.removeprefix(_MATHML_NS)


def _is_function_name(element: ElementTree.Element) -> bool:
    """``\\log``, ``\\exp``, ... alone or carrying a sub/superscript (``\\log_2``)."""
    if _local(element) in ("msub", "msup", "msubsup") and len(element):
        element = element[0]
    return _local(element) == "mi" and (element.text or "").strip() in _FUNCTION_NAMES


def _typeset_like_tex(tree: ElementTree.Element) -> None:
    """Fix what latex2mathml leaves to TeX's spacing rules and fonts.

    A function name gets a thin space from an ordinary neighbour (``\\log p``, ``2\\log x``;
    none before a bracket or an operator), and ``\\hat``/``\\tilde`` draw real accent characters
    placed as accents instead of an ASCII caret floating above the letter."""
    for parent in tree.iter():
        name = _local(parent)
        if name == "mover" and len(parent) == 2 and _local(parent[1]) == "mo":
            accent = _ACCENTS.get((parent[1].text or "").strip())
            if accent:
                parent[1].text = accent
                parent[1].set("stretchy", "false")
                parent.set("accent", "true")
        if name not in _ROW_LIKE:
            continue
        children = list(parent)
        spaced: list[ElementTree.Element] = []
        for index, child in enumerate(children):
            if _is_function_name(child):
                before = children[index - 1] if index else None
                after = children[index + 1] if index + 1 < len(children) else None
                if before is not None and (_local(before) not in ("mo", "mspace") or _closes(before)):
                    spaced.append(_space())
                spaced.append(child)
                if after is not None and _local(after) not in ("mo", "mspace"):
                    spaced.append(_space())
            else:
                spaced.append(child)
        if len(spaced) != len(children):
            parent[:] = spaced


def _closes(element: ElementTree.Element) -> bool:
    return _local(element) == "mo" and (element.text or "").strip() in _CLOSING


def _space() -> ElementTree.Element:
    return ElementTree.Element(f"{_MATHML_NS}mspace", {"width": _THIN_SPACE})


def _serialise(element: ElementTree.Element, root: bool = True) -> str:
    """MathML markup with the namespace declared on ``<math>`` and no prefixes.

    Written here rather than by ElementTree.tostring, which would need a process-wide
    register_namespace (and would then change every other XML the process writes, such as
    the QTI export)."""
    name = _local(element)
    attributes = "".join(f' {key}="{escape(value, quote=True)}"' for key, value in element.attrib.items())
    if root:
        attributes = f' xmlns="{_MATHML_NS[1:-1]}"' + attributes
    inner = escape(element.text or "", quote=False) + "".join(_serialise(child, False) for child in element)
    markup = f"<{name}{attributes}>{inner}</{name}>" if inner else f"<{name}{attributes} />"
    return markup + ("" if root else escape(element.tail or "", quote=False))


@lru_cache(maxsize=4096)
def render_inline_math(latex: str) -> str:
    """An inline formula as one or more adjacent ``<math>`` elements.

    Browsers do not break lines inside a ``<math>`` element, so a long formula would widen a
    phone screen; like TeX, it is cut after top-level relations and binary operators into
    pieces the line can break between. Each cut operator keeps its infix spacing."""
    tree = ElementTree.fromstring(render_math(latex, False))
    row = tree[0] if len(tree) == 1 and _local(tree[0]) == "mrow" else tree
    children = list(row)
    pieces: list[list[ElementTree.Element]] = [[]]
    for index, child in enumerate(children):
        pieces[-1].append(child)
        breakable = (
            _local(child) == "mo"
            and (child.text or "").strip() in _BREAK_AFTER
            and 0 < index < len(children) - 1
            and (_local(children[index - 1]) != "mo" or _closes(children[index - 1]))
        )
        if breakable:
            child.set("form", "infix")
            pieces.append([])
    if len(pieces) == 1:
        return _serialise(tree)
    parts = []
    for piece in pieces:
        # The piece's children go straight into <math>: an <mrow> holding only text and the
        # operator would be an "embellished operator" and lose the operator's spacing.
        math = ElementTree.Element(tree.tag, dict(tree.attrib))
        math.extend(piece)
        parts.append(_serialise(math))
    return "".join(parts)


def markdown_parser(options: dict[str, Any] | None = None) -> MarkdownIt:
    """The bank's Markdown dialect: CommonMark, tables, strikethrough, $...$ and $$...$$ math;
    no raw HTML and no images (an image would fetch a URL from a page that must stay offline)."""
    parser = MarkdownIt("commonmark", {"html": False, **(options or {})})
    parser.enable("table")
    parser.enable("strikethrough")
    parser.disable("image")
    parser.use(dollarmath_plugin, allow_digits=False, double_inline=True)
    return parser


MATH_TOKENS = {"math_inline": False, "math_inline_double": True, "math_block": True,
               "math_block_label": True}
"""Token types of the math plugin, each with whether it is displayed as a block."""

_finder = markdown_parser()


def formulas(text: str) -> Iterator[tuple[str, bool]]:
    """Every formula of a Markdown text as (LaTeX, displayed), as the page renderer sees them
    (``$`` inside code is not math)."""
    stack = list(reversed(_finder.parse(text)))
    while stack:
        token = stack.pop()
        if token.type in MATH_TOKENS:
            yield token.content, MATH_TOKENS[token.type]
        stack.extend(reversed(token.children or []))


def formula_errors(text: str) -> list[MathRenderError]:
    """Why each formula of ``text`` that cannot be converted fails; empty when all render."""
    errors: list[MathRenderError] = []
    if "$" not in text:  # no math at all: skip parsing (most fields of a bank)
        return errors
    for latex, display in formulas(text):
        try:
            render_math(latex, display)
        except MathRenderError as err:
            errors.append(err)
    return errors
