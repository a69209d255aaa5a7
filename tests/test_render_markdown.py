"""Markdown, math and code rendering: what reaches the page is safe and never raw LaTeX."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaequiz.render.markdown import (
    MathRenderError,
    code_stylesheet,
    render_code,
    render_inline,
    render_inline_math,
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


MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"


def _tags(mathml: str) -> list[str]:
    return [e.tag.removeprefix(MATHML_NS) for e in ElementTree.fromstring(mathml).iter()]


@pytest.mark.parametrize(
    ("latex", "spaced"),
    [(r"\log p(x)", "log p"), (r"\log\sigma^2", "log σ"), (r"2\log x", "2 log x"),
     (r"(1 - x)\log(1 - y)", ") log"), (r"\log_2 x", "2 x")],
)
def test_function_names_get_a_thin_space_like_tex(latex: str, spaced: str) -> None:
    """latex2mathml runs `\\log p` together ("logp"); TeX puts a thin space after the name."""
    tree = ElementTree.fromstring(render_math(latex))
    shown = "".join(" " if e.tag == MATHML_NS + "mspace" else (e.text or "") for e in tree.iter())
    assert spaced in shown


@pytest.mark.parametrize("latex", [r"\log(x)", r"-\log(p)", r"a + \exp(\tfrac12 \ell)"])
def test_no_space_between_a_function_and_a_bracket_or_operator(latex: str) -> None:
    tree = ElementTree.fromstring(render_math(latex))
    row = list(tree[0])
    names = [i for i, e in enumerate(row) if (e.text or "") in ("log", "exp")]
    assert names and all(i + 1 < len(row) and row[i + 1].tag != MATHML_NS + "mspace" for i in names)
    assert all(i == 0 or row[i - 1].tag != MATHML_NS + "mspace" for i in names)


def test_hat_is_an_accent_character_not_an_ascii_caret() -> None:
    tree = ElementTree.fromstring(render_math(r"\hat{x}_i"))
    over = next(tree.iter(MATHML_NS + "mover"))
    assert over.get("accent") == "true" and over[1].text == "\u02c6"


def test_a_long_inline_formula_breaks_after_relations_and_operators() -> None:
    html = render_inline_math(r"\log p(x \mid z) = \sum_i x_i \log\hat{x}_i + (1 - x_i)")
    pieces = re.findall(r"<math\b.*?</math>", html)
    ends = [ElementTree.fromstring(piece)[-1] for piece in pieces]
    assert [e.text for e in ends[:-1]] == ["=", "+", "\u2212"]
    assert all(e.get("form") == "infix" for e in ends[:-1])
    assert "".join(pieces) == html  # adjacent pieces, nothing between them


@pytest.mark.parametrize("latex", [r"-x", r"a = -b", r"\beta", r"x^2 + y"])
def test_no_break_before_a_sign_or_in_a_short_formula(latex: str) -> None:
    pieces = re.findall(r"<math\b.*?</math>", render_inline_math(latex))
    for piece in pieces:
        first = ElementTree.fromstring(piece).find(".//*[1]")
        assert not (first.tag == MATHML_NS + "mo" and first.text == "=")
    assert len(pieces) == {r"-x": 1, r"a = -b": 2, r"\beta": 1, r"x^2 + y": 2}[latex]


def test_math_stays_on_the_line_of_the_text_touching_it() -> None:
    html = render_inline(r"A $\beta$-VAE, $x$ and ($y$).")
    words = re.findall(r'<span class="math-word">(.*?)</span>', html)
    assert len(words) == 2
    assert words[0].endswith("</math>-VAE,") and words[1].startswith("(<math") and words[1].endswith("</math>).")
    assert re.search(r"</span> <math", html)  # a free-standing formula is left alone


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


def test_stylesheet_is_derived_once_per_process() -> None:
    """Every feedback page of a grading run embeds it; deriving it per page cost 6 ms each."""
    assert code_stylesheet() is code_stylesheet()


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


def test_rendering_math_leaves_other_xml_writers_alone() -> None:
    """The MathML serialiser must not register a process-wide default namespace: exports that
    write MathML inside their own XML (QTI) would lose their prefixes."""
    render_markdown(r"Long $a = b + c + \hat{x}$ and $\log p$.")
    written = ElementTree.tostring(ElementTree.Element(MATHML_NS + "math"), encoding="unicode")
    assert written.startswith("<ns0:math") or ":math" in written
