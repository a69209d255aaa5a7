"""Bank Markdown to safe HTML: math as MathML and code highlighted, both at build time.

Pages must show correct math without JavaScript and must never run anything the bank text
smuggles in, so raw HTML is escaped, images (which would fetch a URL) are not rendered, and a
formula that cannot be converted is an error instead of raw LaTeX on the page.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from vaequiz.formulas import MathRenderError, markdown_parser, render_inline_math, render_math

__all__ = ["MathRenderError", "render_markdown", "render_code", "render_math", "render_inline_math",
           "code_stylesheet"]


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
    parser = markdown_parser({"highlight": _fence_highlight})
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


@lru_cache(maxsize=1)
def code_stylesheet() -> str:
    """CSS for highlighted code: a light palette, and a dark one under prefers-color-scheme.

    Every token colour is nudged until it reaches WCAG AA contrast on the code background, so a
    Pygments style update cannot make code unreadable. Computed once per process: it depends
    only on the installed Pygments styles, and grading writes one feedback page per answer
    (deriving it took 6 ms a page, a third of a light code answer's grading).
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
