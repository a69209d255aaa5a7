"""Markdown, math and code rendering: what reaches the page is safe and never raw LaTeX."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaequiz.render.markdown import (
    MathRenderError,
    code_stylesheet,
    render_code,
    render_inline,
    render_markdown,
    render_math,
)


def test_inline_math_becomes_mathml_without_latex_left() -> None:
    html = render_markdown(r"Sample $z = \mu + \sigma \odot \varepsilon$ per row.")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in html
    assert "\\mu" not in html and "$" not in html


def test_display_math_is_a_block_math_element() -> None:
    html = render_markdown("Before\n\n$$\n\\frac{1}{2} \\sum_i x_i^2\n$$\n\nAfter")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in html
    assert "<mfrac>" in html


@pytest.mark.parametrize(
    "latex",
    [r"\foobar x", r"x^", r"\left( x", r"\frac{a}{b", r"a}", r"\frac{a}", ""],
)
def test_bad_formula_raises_with_its_source(latex: str) -> None:
    with pytest.raises(MathRenderError) as caught:
        render_math(latex)
    assert caught.value.latex == latex


def test_bad_formula_inside_markdown_raises() -> None:
    with pytest.raises(MathRenderError, match=r"\\notacommand"):
        render_markdown(r"The loss is $\notacommand{x}$.")


def test_raw_html_is_escaped_and_images_are_not_fetched() -> None:
    html = render_markdown(
        '<script>alert(1)</script> <img src=x onerror=alert(1)> ![cat](http://example.com/c.png)'
    )
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_javascript_links_are_not_linked() -> None:
    html = render_markdown("[click](javascript:alert(1))")
    assert 'href="javascript' not in html


def test_dollar_amounts_are_not_math() -> None:
    assert "<math" not in render_markdown("It costs $5 and $10.")


def test_fenced_code_is_highlighted_and_focusable() -> None:
    html = render_markdown("```python\nz = mu + eps * std  # sample\n```")
    assert '<pre class="highlight" tabindex="0">' in html
    assert '<span class="c1"># sample</span>' in html


def test_render_code_escapes_and_highlights() -> None:
    html = render_code("if a < b:\n    print('<b>')\n")
    assert "&lt;" in html and "<b>" not in html
    assert 'class="k"' in html


def test_render_inline_drops_the_single_paragraph() -> None:
    assert render_inline("just *text*") == "just <em>text</em>"


def test_stylesheet_has_light_and_dark_palettes() -> None:
    css = code_stylesheet()
    assert ".highlight .k" in css and "prefers-color-scheme: dark" in css


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_no_text_injects_markup(text: str) -> None:
    try:
        html = render_markdown(text)
    except MathRenderError:
        return
    assert not re.search(r"<(script|img|iframe|object|style|link)\b", html, re.I)


def test_code_colours_meet_wcag_aa_on_the_page_code_background() -> None:
    from pathlib import Path

    from vaequiz.render.markdown import DARK_CODE_BACKGROUND, LIGHT_CODE_BACKGROUND, contrast_ratio

    page_css = (Path(__file__).resolve().parent.parent / "templates" / "quiz.css").read_text()
    code_backgrounds = re.findall(r"--code-bg: (#[0-9a-f]{6})", page_css)
    assert code_backgrounds[:2] == [LIGHT_CODE_BACKGROUND, DARK_CODE_BACKGROUND]
    light, dark = code_stylesheet().split("@media (prefers-color-scheme: dark)")
    for part, background in ((light, LIGHT_CODE_BACKGROUND), (dark, DARK_CODE_BACKGROUND)):
        colours = re.findall(r"(?<![-\w])color: (#[0-9a-fA-F]{3,6})", part)
        assert colours
        assert min(contrast_ratio(c, background) for c in colours) >= 4.5
