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

import contextlib
import functools
import math
import os
import shutil
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from xml.etree import ElementTree as ET

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
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
from vaequiz.export.qti_params import param_identifier
from vaequiz.expressions import ExpressionError, evaluate, format_value, parse_expression

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


OPERATORS_BANK: list[dict[str, Any]] = [
    {
        "id": "every-operator", "kind": "numeric", "topics": ["elbo"], "difficulty": "advanced",
        "source": "original",
        "params": {"A": {"low": -9, "high": 9}, "B": [2, 3, 5], "X": [0.5, 1.5, 4, 9.25], "H": "A * 2 + B"},
        "where": ["A != 0 and not (B == 5 and A > 5)", "H >= -20 or B < 3", "A <= 9"],
        "prompt": "With A = {{ A }}, B = {{ B }}, $X = {{ X }}$ and `H = {{ H }}` (so $A \\cdot B = {{ A * B }}$ "
                  "and X / 3 is about {{ X / 3:.2f }}), what is the value?",
        "answer": "A // B + A % B - -H + log(X) + log(X, 2) + sqrt(X) + exp(1) * floor(X / 3) - ceil(X / 4)"
                  " + abs(-A) + min(A, B, 1) * max(X, 2) + X ** 0.5 / 2 - 3 * (A - 1) / 2",
        "tolerance": 0.0001, "relative_tolerance": 0.001, "explanation": "Operator by operator.",
    },
    {
        "id": "rounded-value", "kind": "numeric", "topics": ["elbo"], "difficulty": "beginner",
        "source": "original", "params": {"X": [0.5, 1.5, 2.5, 4]},
        "prompt": "Round {{ X }} times 3.", "answer": "round(X * 3)",
        "explanation": "Python rounds half to even.",
    },
    {
        "id": "batch-words", "kind": "mcq", "topics": ["elbo"], "difficulty": "beginner",
        "source": "original", "params": {"N": [16, 32, 64, 128]},
        "stem": "A batch holds {{ N }} images. What does its first dimension count?",
        "options": [{"label": "A", "text": "The {{ N }} images"}, {"label": "B", "text": "Pixels"}],
        "answer": "A", "explanation": "The batch dimension counts the {{ N }} samples, about {{ round(N / 3) }} per class.",
    },
    {
        "id": "even-batch", "kind": "mcq", "topics": ["elbo"], "difficulty": "beginner",
        "source": "original", "params": {"N": [3, 4, 7, 8, 10]},
        "stem": "Is {{ N }} even?",
        "options": [{"label": "A", "text": "Yes", "correct_if": "N % 2 == 0"},
                    {"label": "B", "text": "No", "correct_if": "N % 2 == 1"}],
        "answer": "A", "explanation": "Even numbers leave no remainder when halved.",
    },
    {
        "id": "percent-shown", "kind": "numeric", "topics": ["elbo"], "difficulty": "beginner",
        "source": "original", "params": {"p": [0.25, 0.5]},
        "prompt": "What is {{ p:.0% }} of 8?", "answer": "p * 8", "explanation": "{{ p }} times 8.",
    },
]
"""Parametric questions that use every operator the QTI translation knows (numeric, where,
derived, displayed expressions), what it refuses (round, a percent format), a templated MCQ
whose explanation (not in the item) uses round, and a per-draw key."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    shutil.copy(PLAYER / "cdn" / "index.js", root / "player.js")
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _export(bank: Path, root: Path) -> str:
    """Export ``bank`` to QTI with the real CLI and unpack it under ``root/pkg``; stderr."""
    if not (PLAYER / "cdn" / "index.js").is_file():
        pytest.fail(f"{PLAYER / 'cdn' / 'index.js'} is missing; run `npm install --no-save @citolab/qti-components@7.27.4` in {REPO}")
    package = root / "bank.zip"
    done = CliRunner().invoke(app, ["export", "--format", "qti", "--bank", str(bank), "-o", str(package)])
    assert done.exit_code == 0, done.stderr
    with zipfile.ZipFile(package) as archive:
        archive.extractall(root / "pkg")
    return done.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The bundled bank's QTI package and the player, served over HTTP (module scripts and
    fetch need an origin)."""
    root = tmp_path_factory.mktemp("qti-site")
    _export(REPO / "question_bank", root)
    with _serve(root) as url:
        yield url, root


@pytest.mark.browser
def test_every_exported_item_plays_and_scores_its_key(site: tuple[str, Path]) -> None:
    url, root = site
    checked = _play_package(url, root, REPO / "question_bank")
    assert all(checked.values()), checked


@pytest.mark.browser
def test_every_translated_operator_computes_as_vaequiz_does(tmp_path: Path) -> None:
    """Each templated item is played several times: whatever the player draws, the answer
    vaequiz computes for those numbers scores 1 (so every operator, derived param and ``where:``
    means in QTI what it means in vaequiz); what QTI cannot compute plays as fixed variants."""
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "params.yaml").write_text(yaml.safe_dump(OPERATORS_BANK, sort_keys=False))
    root = tmp_path / "site"
    root.mkdir()
    stderr = _export(bank, root)
    assert "every-operator: parametric; exported with QTI template variables" in stderr
    assert "batch-words: parametric; exported with QTI template variables" in stderr
    assert "rounded-value: parametric; QTI cannot compute it" in stderr and "rounded-value-v4" in stderr
    assert "even-batch: parametric; QTI cannot compute it" in stderr and "even-batch-v5" in stderr
    assert "percent-shown: parametric; QTI cannot compute it (QTI cannot print a number as {{ p:.0% }} does)" in stderr
    with _serve(root) as url:
        checked = _play_package(url, root, bank)
    assert checked["templated"] == 2 and checked["variant"] == 4 + 5 + 2, checked


def _play_package(url: str, root: Path, bank_path: Path) -> dict[str, int]:
    """Play every item under ``root/pkg/items``; how many of each kind were checked."""
    from playwright.sync_api import sync_playwright

    selection = load_export_set(bank_path)
    bank: dict[str, AnyQuestion] = {q.id: q for q in selection.questions}
    for question_id, original in selection.parametric.items():  # fixed variants: their own numbers
        for number, values in enumerate(distinct_draws(original, selection.variants, selection.quiz_id, selection.seed), 1):
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
    return checked


QTI = "{http://www.imsglobal.org/xsd/imsqtiasi_v3p0}"
LOADS = 12
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
        if isinstance(bound, MultipleChoice):  # the key is the bank's; only the texts vary
            assert not bound.multiple
            for option in bound.options:
                assert page.evaluate("r => score(r)", option.label) == (option.label in bound.answer), path.name
            continue
        assert isinstance(bound, NumericAnswer), path.name
        tolerance = absolute_tolerance(bound)
        assert page.evaluate("r => score(r)", repr(bound.answer)) == 1, (path.name, values)
        assert page.evaluate("r => score(r)", repr(bound.answer + tolerance / 2)) == 1, (path.name, values)
        assert page.evaluate("r => score(r)", repr(bound.answer + 2 * tolerance + 1)) == 0, (path.name, values)
    assert len(seen) > 1, f"{path.name}: {LOADS} loads drew the same numbers"



# --------------------------------------------------------------------------- translation property

PROPERTY_VALUES = {"A": 7, "B": -3, "X": 2.5, "Y": 0.4}
"""Fixed params for the property: whole and fractional, positive and negative."""

_numbers = st.one_of(st.integers(-9, 9).map(str), st.sampled_from(["0.5", "1.25", "3.0", "0.1"]))
_leaves = st.one_of(_numbers, st.sampled_from(sorted(PROPERTY_VALUES)))


def _arithmetic(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, st.integers(0, 3)).map(lambda t: f"({t[0]}) ** {t[1]}"),
        children.map(lambda c: f"-({c})"),
        st.tuples(st.sampled_from(["min", "max"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "floor", "ceil", "exp", "log", "sqrt"]), children).map(
            lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, children).map(lambda t: f"log({t[0]}, {t[1]})"),
    )


_expressions = st.recursive(_leaves, _arithmetic, max_leaves=8)


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A page with the player loaded, and the folder it serves items from."""
    from playwright.sync_api import sync_playwright

    if not (PLAYER / "cdn" / "index.js").is_file():
        pytest.fail(f"{PLAYER / 'cdn' / 'index.js'} is missing; run `npm install --no-save @citolab/qti-components@7.27.4` in {REPO}")
    root = tmp_path_factory.mktemp("qti-property")
    (root / "pkg" / "items").mkdir(parents=True)
    with _serve(root) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/index.html")
        page.wait_for_function("window.ready === true")
        yield page, root
        browser.close()


@pytest.mark.browser
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sources=st.lists(_expressions, min_size=30, max_size=30))
@example(sources=["(0) ** 0", "(A - 7) ** 0", "(A - 7) ** 2", "sqrt(A - 7)", "(B) ** 3"])  # QTI: 0 ** 0 is NULL
def test_translated_expressions_compute_in_the_player_what_vaequiz_computes(
        player: tuple[Any, Path], sources: list[str]) -> None:
    """Random arithmetic over whole and fractional, positive and negative params, translated to
    QTI and computed by the player's template processing, equals vaequiz's own evaluation
    (floor division and modulo of negatives included)."""
    from vaequiz.export.qti import _outcomes, identifier
    from vaequiz.export.qti_params import Translator, Untranslatable, q

    page, root = player
    expected: dict[str, float] = {}
    types = {param_identifier(n): "integer" if isinstance(v, int) else "float" for n, v in PROPERTY_VALUES.items()}
    item = ET.Element(q("qti-assessment-item"), {"identifier": identifier("property"), "title": "property",
                                                 "adaptive": "false", "time-dependent": "false"})
    _outcomes(item, 1.0)
    processing = ET.Element(q("qti-template-processing"))
    for name, value in PROPERTY_VALUES.items():
        step = ET.SubElement(processing, q("qti-set-template-value"), {"identifier": param_identifier(name)})
        ET.SubElement(step, q("qti-base-value"), {"base-type": types[param_identifier(name)]}).text = repr(value)
    translator = Translator(types)
    for number, source in enumerate(sources):
        try:
            value = evaluate(source, PROPERTY_VALUES)
        except ExpressionError:
            continue  # a division by zero, a log of a negative: nothing to compare
        step = ET.Element(q("qti-set-template-value"), {"identifier": f"T_{number}"})
        try:
            translator.translate(step, parse_expression(source))
        except Untranslatable:
            continue
        processing.append(step)
        expected[f"T_{number}"] = float(value)
    declarations = [ET.Element(q("qti-template-declaration"), {"identifier": i, "cardinality": "single", "base-type": "float"})
                    for i in list(types) + list(expected)]
    item.extend(declarations + [processing])
    ET.SubElement(ET.SubElement(item, q("qti-item-body")), q("p")).text = "property"
    name = f"property-{len(list((root / 'pkg' / 'items').iterdir()))}.xml"  # a new URL: no cached item
    (root / "pkg" / "items" / name).write_bytes(ET.tostring(item, encoding="utf-8", xml_declaration=True))
    assert page.evaluate("href => loadItem(href)", f"pkg/items/{name}")
    computed = page.evaluate("() => templateValues()")
    for name, value in expected.items():
        got = computed[name]
        assert got not in (None, ""), (sources[int(name[2:])], value)
        assert math.isclose(float(got), value, rel_tol=1e-9, abs_tol=1e-9), (sources[int(name[2:])], got, value)


def test_a_power_translates_only_with_its_exponent_written_out() -> None:
    """QTI's power is NULL for 0 ** 0 (1 in vaequiz): ``x ** 0`` becomes the constant 1, a
    written exponent a power, and an exponent that is a param (it might be 0) is refused, so
    the exporter falls back to fixed variants for that question."""
    from vaequiz.export.qti_params import Translator, Untranslatable, q

    translator = Translator({"P_A": "integer", "P_B": "integer"})
    zero = ET.Element(q("qti-set-template-value"))
    translator.translate(zero, parse_expression("(A - 7) ** 0"))
    assert [e.tag for e in zero] == [q("qti-base-value")] and zero[0].text in ("1", "1.0")
    squared = ET.Element(q("qti-set-template-value"))
    translator.translate(squared, parse_expression("A ** 2"))
    assert [e.tag for e in squared] == [q("qti-power")]
    with pytest.raises(Untranslatable, match="0 \\*\\* 0"):
        translator.translate(ET.Element(q("qti-set-template-value")), parse_expression("A ** B"))
