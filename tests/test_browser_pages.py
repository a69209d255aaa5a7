"""Every page the bundled bank produces, checked whole: the W3C Nu HTML validator finds no error,
nothing widens a 390 px phone screen in either colour scheme, math is spaced and wrapped like
TeX, and the focus ring does not look like an error.

Pages: the whole bank in every mode, the week quiz for a roster student (shuffled variant) in
every mode, the stats page and the feedback pages of `grade-sheets` on the sample sheets.
"""

from __future__ import annotations

import colorsys
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from tests.browser_harness import (  # noqa: F401 (fixtures)
    MODES,
    PHONE_WIDTH,
    OpenPage,
    browser,
    open_page,
)
from tests.conftest import BUNDLED_BANK, REPO, run_vaequiz
from vaequiz.cli.app import app

pytestmark = pytest.mark.browser

VNU_JAR = REPO / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
WEEK_QUIZ = BUNDLED_BANK / "vae-week.quiz.yaml"
SAMPLE_SHEETS = sorted((BUNDLED_BANK / "samples").glob("*.json"))


@pytest.fixture(scope="module")
def bank_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> page file, built and graded through the real CLI."""
    folder = tmp_path_factory.mktemp("bank-pages")
    runner = CliRunner()
    pages: dict[str, Path] = {}

    def build(name: str, *args: str) -> None:
        out = folder / f"{name}.html"
        done = runner.invoke(app, ["build", "--bank", str(BUNDLED_BANK), *args, "-o", str(out)])
        assert done.exit_code == 0, done.output
        pages[name] = out

    for mode in MODES:
        build(f"bank-{mode}", "--mode", mode)
        build(f"week-{mode}", "--mode", mode, "--quiz", str(WEEK_QUIZ), "--student", "ada")
    graded = folder / "graded"
    done = run_vaequiz("grade-sheets", *SAMPLE_SHEETS, "--out", graded, "--bank", BUNDLED_BANK, "--workers", "1")
    assert done.returncode == 0, done.stderr
    for feedback in sorted((graded / "feedback").glob("*.html")):
        pages[f"feedback-{feedback.stem}"] = feedback
    stats = folder / "stats.html"
    done = runner.invoke(app, ["stats", str(graded), "--bank", str(BUNDLED_BANK), "--out", str(stats)])
    assert done.exit_code == 0, done.output
    pages["stats"] = stats
    return pages


# --------------------------------------------------------------------------- W3C Nu validator


def nu_validator_errors(files: list[Path]) -> list[str]:
    """Errors of the W3C Nu HTML checker (vnu.jar from npm, run by Debian's Java) on the files."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("java is missing; run `bash .ci/setup test` (installs default-jre-headless)")
    if not VNU_JAR.is_file():
        pytest.fail(f"{VNU_JAR} is missing; run `bash .ci/setup test` (installs vnu-jar from npm)")
    done = subprocess.run(
        [java, "-jar", str(VNU_JAR), "--errors-only", "--format", "json", *map(str, files)],
        capture_output=True, text=True, timeout=600,
    )
    messages = json.loads(done.stderr or '{"messages": []}')["messages"]
    return [
        f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}: {m['message']}"
        for m in messages
        if m.get("type") in ("error", "non-document-error")
    ]


def test_every_page_passes_the_nu_html_validator(bank_pages: dict[str, Path]) -> None:
    assert {"bank-exam", "bank-practice", "bank-key", "bank-flashcards", "week-exam", "stats"} <= set(bank_pages)
    assert any(name.startswith("feedback-") for name in bank_pages)
    assert nu_validator_errors(list(bank_pages.values())) == []


def test_the_validator_reports_invalid_html(tmp_path: Path) -> None:
    """The check above can fail: the attribute this project once shipped is reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html lang="en"><head><title>t</title></head>'
                    '<body><textarea wrap="off"></textarea></body></html>', encoding="utf-8")
    errors = nu_validator_errors([page])
    assert len(errors) == 1 and "wrap" in errors[0]


# --------------------------------------------------------------------------- phone width

REVEAL_EVERYTHING = """() => {
  document.querySelectorAll('[hidden]').forEach(e => { e.hidden = false; });
  document.querySelectorAll('details').forEach(d => { d.open = true; });
}"""

WIDER_THAN_SCREEN = """() => {
  const width = document.documentElement.clientWidth;
  const sticking = [];
  for (const element of document.querySelectorAll('body *')) {
    const box = element.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 0.5) {
      let clipped = false;
      for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
        if (getComputedStyle(up).overflowX !== 'visible' && up.getBoundingClientRect().right <= width + 0.5) { clipped = true; break; }
      }
      if (!clipped) { sticking.push(element.tagName.toLowerCase() + ' in #' + ((element.closest('[id]') || {}).id || '?')); }
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, viewport: window.innerWidth, sticking: sticking.slice(0, 5)};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_page_is_wider_than_a_phone(bank_pages: dict[str, Path], open_page: Callable[..., OpenPage], scheme: str) -> None:
    """At 390 px, with every hidden part shown (explanations, feedback, hints, card backs)."""
    wide = {}
    for name, path in bank_pages.items():
        page = open_page(path, scheme, width=PHONE_WIDTH)
        page.page.evaluate(REVEAL_EVERYTHING)
        measured = page.page.evaluate(WIDER_THAN_SCREEN)
        if measured["scrollWidth"] > measured["viewport"]:
            wide[name] = measured
        assert page.errors == []
        page.close()
    assert wide == {}


# --------------------------------------------------------------------------- math typesetting

FUNCTION_GAPS = """() => {
  const names = new Set(['log', 'exp', 'ln', 'max', 'min', 'sin', 'cos']);
  const gaps = [];
  for (const name of document.querySelectorAll('mi')) {
    if (!names.has(name.textContent.trim())) continue;
    let next = name.nextElementSibling;
    while (next && next.localName === 'mspace') next = next.nextElementSibling;
    if (!next || next.localName === 'mo') continue;
    const size = parseFloat(getComputedStyle(name).fontSize);
    gaps.push((next.getBoundingClientRect().left - name.getBoundingClientRect().right) / size);
  }
  return gaps;
}"""

ACCENT_HEIGHTS = """() => [...document.querySelectorAll('mover[accent="true"]')].map(over => {
  const size = parseFloat(getComputedStyle(over).fontSize);
  return (over.children[0].getBoundingClientRect().top - over.getBoundingClientRect().top) / size;
})"""


def test_math_is_spaced_and_accented_like_tex(bank_pages: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    """`\\log p` and `\\log\\sigma` show a thin space; `\\hat{x}` sits close above the letter."""
    page = open_page(bank_pages["bank-key"])
    gaps = page.page.evaluate(FUNCTION_GAPS)
    assert len(gaps) >= 10 and min(gaps) >= 0.12, gaps
    heights = page.page.evaluate(ACCENT_HEIGHTS)
    assert heights and max(heights) <= 0.3, heights


BETA_VAE_BREAKS = """() => {
  const words = [...document.querySelectorAll('p, li, div')].filter(e => /β-VAE/.test(e.textContent) && e.querySelector('math'));
  const paragraph = words[words.length - 1];
  const probe = document.createElement('div');
  probe.innerHTML = paragraph.innerHTML;
  document.body.prepend(probe);
  const broken = [];
  for (let width = 30; width <= 400; width += 1) {
    probe.style.width = width + 'px';
    for (const math of probe.querySelectorAll('math')) {
      if (math.textContent.trim() !== 'β') continue;
      const after = math.nextSibling || math.parentNode.nextSibling;
      if (!after || after.nodeType !== Node.TEXT_NODE || !after.textContent.startsWith('-')) continue;
      const range = document.createRange();
      range.setStart(after, 0); range.setEnd(after, 1);
      if (range.getBoundingClientRect().top > math.getBoundingClientRect().bottom - 2) broken.push(width);
    }
  }
  probe.remove();
  return broken;
}"""


def test_beta_vae_never_breaks_after_the_beta(bank_pages: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(bank_pages["bank-key"])
    assert page.page.locator("math").filter(has_text="β").count() > 0
    assert page.page.evaluate(BETA_VAE_BREAKS) == []


# --------------------------------------------------------------------------- focus ring


def _hue_and_saturation(css_colour: str) -> tuple[float, float]:
    red, green, blue = (int(v) / 255 for v in re.findall(r"\d+", css_colour)[:3])
    hue, _, saturation = colorsys.rgb_to_hls(red, green, blue)
    return hue * 360, saturation


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_focus_ring_does_not_look_like_an_error(bank_pages: dict[str, Path], open_page: Callable[..., OpenPage], scheme: str) -> None:
    page = open_page(bank_pages["bank-practice"], scheme)
    p = page.page
    p.keyboard.press("Tab")  # the skip link
    ring = p.evaluate("() => getComputedStyle(document.activeElement).outlineColor")
    error = p.evaluate("() => getComputedStyle(document.documentElement).getPropertyValue('--bad-fg')")
    hue, saturation = _hue_and_saturation(ring)
    assert saturation > 0.3 and 180 <= hue <= 260, f"focus ring {ring} (hue {hue:.0f}) is not blue"
    assert error.strip() and ring != error
