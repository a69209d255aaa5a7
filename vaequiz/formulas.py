"""LaTeX formulas in bank Markdown: where they are, and whether they convert to MathML.

The lowest layer under the bank and render: ``validate`` reports a formula that cannot be
converted as a located bank problem, and pages convert formulas with the same function, so a
bank that validates never stops a page build on its math.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from functools import lru_cache
from typing import Any, Iterator

from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

__all__ = ["MathRenderError", "render_math", "markdown_parser", "formulas", "formula_errors"]


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
    return mathml


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
