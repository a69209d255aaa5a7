"""The QTI 3.0 export played by a real QTI 3 player (@citolab/qti-components) in Chromium:
every item of the bundled bank loads, and the player's own response processing scores the
bank's key 1 and every distractor 0, every accepted spelling of a shape 1, and a number within
its tolerance 1 and beyond it 0. A parametric question with template variables draws its numbers
in the player: the page prints them, and the answer vaequiz computes for the printed numbers
scores 1, a wrong one 0; one exported as fixed variants scores each variant's own key.

Prerequisites, as for the other browser tests: Debian ``chromium`` and, in the repository root,
``npm install --no-save @citolab/qti-components@7.27.4``. Missing either is a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.bank.parametric import bind, space_of
from vaequiz.cli.app import app
from vaequiz.export.common import absolute_tolerance, distinct_draws, load_export_set, shape_spellings
from vaequiz.export.qti import VARIANTS
from vaequiz.export.qti_params import param_identifier
from vaequiz.expressions import format_value

REPO = Path(__file__).resolve().parent.parent
PLAYER = Path(os.environ.get("QTI_COMPONENTS_DIR", REPO / "node_modules" / "@citolab" / "qti-components"))

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>player</title></head>
<body><div id="host"></div>
<script type="module">
import { qtiTransformItem } from "./player.js";
window.loadItem = async (href) => {
  const host = document.getElementById("host");
  host.innerHTML = "";
  const transformed = await qtiTransformItem().load(href);
  host.appendChild(transformed.htmlDoc());
  await customElements.whenDefined("qti-assessment-item");
  const item = host.querySelector("qti-assessment-item");
  if (item && item.updateComplete) { await item.updateComplete; }
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  return item !== null && item.getOutcome("SCORE") !== undefined;
};
window.templateValues = () => {
  const item = document.querySelector("qti-assessment-item");
  return Object.fromEntries(item.variables.filter((v) => v.type === "template").map((v) => [v.identifier, v.value]));
};
window.printed = () => Array.from(document.querySelectorAll("qti-printed-variable")).map(
  (e) => [e.getAttribute("identifier"), e.shadowRoot ? e.shadowRoot.textContent : ""]);
window.score = (response) => {
  const item = document.querySelector("qti-assessment-item");
  item.updateResponseVariable("RESPONSE", response);
  item.processResponse();
  return Number(item.getOutcome("SCORE").value);
};
window.ready = true;
</script></body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The bundled bank's QTI package and the player, served over HTTP (module scripts and
    fetch need an origin)."""
    player = PLAYER / "cdn" / "index.js"
    if not player.is_file():
        pytest.fail(f"{player} is missing; run `npm install --no-save @citolab/qti-components@7.27.4` in {REPO}")
    root = tmp_path_factory.mktemp("qti-site")
    package = root / "bank.zip"
    done = CliRunner().invoke(app, ["export", "--format", "qti", "--bank", str(REPO / "question_bank"),
                                    "-o", str(package)])
    assert done.exit_code == 0, done.stderr
    with zipfile.ZipFile(package) as archive:
        archive.extractall(root / "pkg")
    shutil.copy(player, root / "player.js")
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.browser
def test_every_exported_item_plays_and_scores_its_key(site: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, root = site
    selection = load_export_set(REPO / "question_bank")
    bank: dict[str, AnyQuestion] = {q.id: q for q in selection.questions}
    for question_id, original in selection.parametric.items():  # fixed variants: their own numbers
        for number, values in enumerate(distinct_draws(original, VARIANTS, selection.name, selection.seed), 1):
            bank[f"{question_id}-v{number}"] = bind(original, values)
    checked = {"choice": 0, "shape": 0, "numeric": 0, "extended": 0, "templated": 0, "variant": 0}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{url}/index.html")
        page.wait_for_function("window.ready === true")
        for path in sorted((root / "pkg" / "items").glob("*.xml")):
            item_id = path.stem
            if ET.parse(path).getroot().find(f"{QTI}qti-template-processing") is not None:
                _play_templated(page, path, selection.parametric[item_id])
                checked["templated"] += 1
                continue
            question = bank[item_id]
            checked["variant"] += item_id not in selection.points
            assert page.evaluate("href => loadItem(href)", f"pkg/items/{path.name}"), path.name

            def score(response: str | list[str]) -> float:
                return page.evaluate("r => score(r)", response)

            if isinstance(question, MultipleChoice):
                key = list(question.answer) if question.multiple else question.answer[0]
                assert score(key) == 1, path.name
                for option in question.options:
                    if option.label not in question.answer:
                        assert score([option.label] if question.multiple else option.label) == 0
                checked["choice"] += 1
            elif isinstance(question, ShapeAnswer):
                for spelling in shape_spellings(question.answer):
                    assert score(spelling) == 1, (path.name, spelling)
                assert score(str(question.answer + [7])) == 0, path.name
                checked["shape"] += 1
            elif isinstance(question, NumericAnswer):
                tolerance = absolute_tolerance(question)
                assert score(repr(question.answer + tolerance / 2)) == 1, path.name
                assert score(repr(question.answer + 2 * tolerance + 1)) == 0, path.name
                checked["numeric"] += 1
            else:
                assert isinstance(question, (ShortAnswer, CodeQuestion)), path.name
                checked["extended"] += 1
        browser.close()
    assert errors == []
    assert all(checked.values()), checked


QTI = "{http://www.imsglobal.org/xsd/imsqtiasi_v3p0}"
LOADS = 6
"""Times a templated item is loaded: each load draws again, so its numbers must vary."""


def _play_templated(page: object, path: Path, question: AnyQuestion) -> None:
    """Load a templated item ``LOADS`` times: the numbers the player drew are printed, satisfy
    the question's space, and the key vaequiz computes for them scores 1, a wrong answer 0."""
    declared = {d.get("identifier"): d.get("base-type")
                for d in ET.parse(path).getroot().iter(f"{QTI}qti-template-declaration")}
    space = space_of(question)
    seen = set()
    for _ in range(LOADS):
        assert page.evaluate("href => loadItem(href)", f"pkg/items/{path.name}"), path.name
        drawn = page.evaluate("() => templateValues()")
        values = {}
        for name in space.free:
            raw = drawn[param_identifier(name)]
            values[name] = int(raw) if declared[param_identifier(name)] == "integer" else float(raw)
            assert values[name] in space.free[name], (path.name, name, raw)
        values = space.complete(values)
        assert all(space.holds(values)), (path.name, values)
        seen.add(tuple(sorted(values.items())))
        shown = page.evaluate("() => printed()")
        assert shown, path.name
        for identifier, text in shown:  # the player prints a string value JSON-quoted
            name = identifier.removeprefix("P_")
            expected = values[name] if name in values else float(drawn[identifier])
            assert text.strip('"') == format_value(expected) or float(text.strip('"')) == expected, (
                path.name, identifier, text)
        bound = bind(question, values)
        assert isinstance(bound, NumericAnswer), path.name
        tolerance = absolute_tolerance(bound)
        assert page.evaluate("r => score(r)", repr(bound.answer)) == 1, (path.name, values)
        assert page.evaluate("r => score(r)", repr(bound.answer + tolerance / 2)) == 1, (path.name, values)
        assert page.evaluate("r => score(r)", repr(bound.answer + 2 * tolerance + 1)) == 0, (path.name, values)
    assert len(seen) > 1, f"{path.name}: {LOADS} loads drew the same numbers"

