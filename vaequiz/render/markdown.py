"""Bank Markdown to safe HTML: math as MathML and code highlighted, both at build time.

Pages must show correct math without JavaScript and must never run anything the bank text
smuggles in, so raw HTML is escaped, images (which would fetch a URL) are not rendered, and a
formula that cannot be converted is an error instead of raw LaTeX on the page.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from functools import lru_cache
from html import escape
from typing import Any

from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["MathRenderError", "render_markdown", "render_code", "render_math", "render_inline_math",
           "code_stylesheet"]


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


_formatter = HtmlFormatter(nowrap=True)


def _highlight_html(source: str, language: str) -> str:
    try:
        lexer = PythonLexer() if language in ("", "python", "py") else get_lexer_by_name(language)
    except ClassNotFound:
        return escape(source)
    return highlight(source, lexer, _formatter)


def _code_block(source: str, language: str, focusable: bool = True) -> str:
    # tabindex: a scrollable region must be reachable by keyboard; blocks inside a label (an
    # option) wrap instead of scrolling, because a label holds no focusable content.
    css_language = escape(language or "python", quote=True)
    opening = '<pre class="highlight" tabindex="0">' if focusable else '<pre class="highlight wrap">'
    return (
        f'{opening}<code class="language-{css_language}">'
        f"{_highlight_html(source, language)}</code></pre>\n"
    )


@lru_cache(maxsize=4096)
def render_code(source: str, focusable: bool = True) -> str:
    """A Python snippet as a highlighted ``<pre>`` block (``focusable=False`` inside labels)."""
    return _code_block(source.rstrip("\n") + "\n", "python", focusable)


def _fence_highlight(source: str, language: str, attrs: str) -> str:
    return _code_block(source, language.strip().lower())


def _math_inline(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    return render_inline_math(tokens[idx].content)


def _math_display(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # A wide formula scrolls inside its own box rather than widening the page; the box takes
    # focus so keyboard users can scroll it too. A span, because $$...$$ may sit in a paragraph.
    mathml = render_math(tokens[idx].content, True)
    return f'<span class="math-display" tabindex="0">{mathml}</span>' + ("\n" if tokens[idx].block else "")


def _build_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "highlight": _fence_highlight})
    parser.enable("table")
    parser.enable("strikethrough")
    parser.disable("image")  # an image would fetch a URL from a page that must stay offline
    parser.use(dollarmath_plugin, allow_digits=False, double_inline=True)
    for rule in ("math_inline",):
        parser.add_render_rule(rule, _math_inline)
    for rule in ("math_inline_double", "math_block", "math_block_label"):
        parser.add_render_rule(rule, _math_display)
    return parser


_parser = _build_parser()


@lru_cache(maxsize=8192)
def render_markdown(text: str) -> str:
    """Bank Markdown as HTML; cached, because variants re-use the same texts many times."""
    return render_markdown_uncached(text)


def render_markdown_uncached(text: str) -> str:
    """The same as :func:`render_markdown` without the cache (benchmarks compare the two)."""
    return _glue_math_to_words(_parser.render(text))


_MATH_IN_WORD = re.compile(r'([^\s<>]*)(<math\b[^>]*display="inline"[^>]*>.*?</math>)([^\s<]*)', re.DOTALL)


def _glue_math_to_words(html: str) -> str:
    """Keep inline math and the text touching it on one line (``$\\beta$-VAE``, ``($x$)``):
    a browser would otherwise break between the formula and its suffix."""

    def glue(match: re.Match[str]) -> str:
        before, math, after = match.groups()
        if not before and not after:
            return match.group(0)
        return f'<span class="math-word">{before}{math}{after}</span>'

    return _MATH_IN_WORD.sub(glue, html)


def render_inline(text: str) -> str:
    """Markdown for a short text (an option) without the wrapping paragraph when there is one."""
    html = render_markdown(text).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        return html[3:-4]
    return html


LIGHT_CODE_BACKGROUND = "#f1f3f5"
DARK_CODE_BACKGROUND = "#0d1117"
"""Code block backgrounds of templates/quiz.css (--code-bg); token colours are checked against them."""
MIN_CONTRAST = 4.6


def code_stylesheet() -> str:
    """CSS for highlighted code: a light palette, and a dark one under prefers-color-scheme.

    Every token colour is nudged until it reaches WCAG AA contrast on the code background, so a
    Pygments style update cannot make code unreadable.
    """
    light = HtmlFormatter(style="default").get_style_defs(".highlight")
    dark = HtmlFormatter(style="github-dark").get_style_defs(".highlight")
    light = _readable(_drop_backgrounds(light), LIGHT_CODE_BACKGROUND)
    dark = _readable(_drop_backgrounds(dark), DARK_CODE_BACKGROUND)
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def _drop_backgrounds(css: str) -> str:
    """Keep token colours only; the page's own stylesheet paints the code background."""
    lines = [
        line
        for line in css.splitlines()
        if not line.startswith(("pre {", ".highlight .hll", ".highlight {", "td.linenos",
                                 "span.linenos", ".highlight  {"))
    ]
    return "\n".join(re.sub(r"background-color: #[0-9a-fA-F]+;?", "", line) for line in lines)


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    value = hex_colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    return tuple(int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _luminance(rgb: tuple[float, float, float]) -> float:
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two ``#rrggbb`` colours."""
    lighter, darker = sorted((_luminance(_rgb(foreground)), _luminance(_rgb(background))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _readable(css: str, background: str) -> str:
    towards_white = _luminance(_rgb(background)) < 0.5

    def fix(match: re.Match[str]) -> str:
        colour = match.group(1)
        rgb = _rgb(colour)
        for _ in range(40):
            hex_now = "#" + "".join(f"{round(c * 255):02x}" for c in rgb)
            if contrast_ratio(hex_now, background) >= MIN_CONTRAST:
                return f"color: {hex_now}"
            rgb = tuple(c + (1 - c) * 0.08 if towards_white else c * 0.92 for c in rgb)  # type: ignore[assignment]
        return "color: " + ("#ffffff" if towards_white else "#000000")

    return re.sub(r"(?<![-\w])color: (#[0-9a-fA-F]{3,6})\b", fix, css)
