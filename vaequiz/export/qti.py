"""QTI 3.0 content package: a zip with ``imsmanifest.xml``, one ``qti-assessment-item`` per
question under ``items/`` and a ``qti-assessment-test`` holding them in order.

Kinds: mcq -> qti-choice-interaction (cardinality single or multiple, all-or-nothing
match_correct), short_answer and code -> qti-extended-text-interaction (scored by hand; the
model answer, rubric or reference sit in a scorer-only qti-rubric-block), shape ->
qti-text-entry-interaction mapping every accepted spelling, numeric -> text entry accepted
within an absolute tolerance (two comparisons). Flashcards are skipped. Math is MathML in the
MathML namespace; option feedback and hints are not carried.

Parametric questions carry their params as template variables where QTI can compute everything
the question needs (:mod:`vaequiz.export.qti_params`): each attempt draws its own numbers and a
numeric answer is computed for them. Otherwise they become ``--variants`` fixed variants, one
item each (``<id>-v1`` ...), with different numbers.
"""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.bank.parametric import bind
from vaequiz.export.common import (
    ExportError,
    ExportResult,
    ExportSet,
    absolute_tolerance,
    canonical_shape,
    distinct_draws,
    code_html,
    code_prompt_html,
    grader_info_html,
    html,
    shape_spellings,
)
from vaequiz.export.qti_params import ANSWER, MATHML_NS, QTI_NS, TOLERANCE, Untranslatable, q, template_parts
from vaequiz.params import ParamError

CP_NS = "http://www.imsglobal.org/xsd/qti/qtiv3p0/imscp_v1p1"
XML_NS = "http://www.w3.org/XML/1998/namespace"
TEMPLATES = "https://purl.imsglobal.org/spec/qti/v3p0/rptemplates/"
_VOID = {"br", "hr", "img", "col", "wbr"}
_HTML_ATTRIBUTES = {"class", "lang", "title", "href", "colspan", "rowspan", "start"}

ET.register_namespace("", QTI_NS)
ET.register_namespace("m", MATHML_NS)


class _XhtmlBuilder(HTMLParser):
    """Parses the renderer's HTML into elements: HTML in the QTI namespace, MathML in its own;
    attributes outside QTI's HTML subset (tabindex, style) are dropped."""

    def __init__(self, parent: ET.Element) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [parent]
        self.math_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "math" or self.math_depth:
            element = ET.SubElement(self.stack[-1], f"{{{MATHML_NS}}}{tag}",
                                    {k: v or "" for k, v in attrs if k != "xmlns"})
            self.math_depth += 1
        else:
            element = ET.SubElement(self.stack[-1], q(tag),
                                    {k: v or "" for k, v in attrs if k in _HTML_ATTRIBUTES})
        if tag in _VOID and not self.math_depth:
            return
        self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID or self.math_depth:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID and not self.math_depth:
            return
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag.rsplit("}", 1)[-1] == tag:
                closed = len(self.stack) - depth
                del self.stack[depth:]
                if self.math_depth:
                    self.math_depth = max(0, self.math_depth - closed)
                return

    def handle_data(self, data: str) -> None:
        parent = self.stack[-1]
        if len(parent):
            parent[-1].tail = (parent[-1].tail or "") + data
        else:
            parent.text = (parent.text or "") + data


def append_html(parent: ET.Element, markup: str) -> ET.Element:
    """Append the elements of an HTML fragment to ``parent`` (text before them included)."""
    builder = _XhtmlBuilder(parent)
    builder.feed(markup)
    builder.close()
    return parent


def identifier(question_id: str) -> str:
    """A QTI identifier (an XML name): bank ids that start with a digit get a prefix."""
    return question_id if re.match(r"[A-Za-z_]", question_id) else f"Q-{question_id}"


def _declaration(parent: ET.Element, cardinality: str, base_type: str,
                 correct: list[str] | None = None) -> ET.Element:
    declaration = ET.SubElement(parent, q("qti-response-declaration"), {
        "identifier": "RESPONSE", "cardinality": cardinality, "base-type": base_type})
    if correct:
        correct_response = ET.SubElement(declaration, q("qti-correct-response"))
        for value in correct:
            ET.SubElement(correct_response, q("qti-value")).text = value
    return declaration


def _outcomes(parent: ET.Element, points: float) -> None:
    ET.SubElement(parent, q("qti-outcome-declaration"),
                  {"identifier": "SCORE", "cardinality": "single", "base-type": "float"})
    maximum = ET.SubElement(parent, q("qti-outcome-declaration"), {
        "identifier": "MAXSCORE", "cardinality": "single", "base-type": "float"})
    default = ET.SubElement(maximum, q("qti-default-value"))
    ET.SubElement(default, q("qti-value")).text = f"{points:g}"


def _body(item: ET.Element, markup: str) -> ET.Element:
    body = ET.SubElement(item, q("qti-item-body"))
    append_html(ET.SubElement(body, q("div"), {"class": "stem"}), markup)
    return body


def _option_markup(option: object) -> str:
    text = getattr(option, "text", None)
    code = getattr(option, "code", None)
    return (html(text) if text else "") + (code_html(code) if code else "")


def _choice_item(item: ET.Element, question: MultipleChoice, points: float) -> None:
    cardinality = "multiple" if question.multiple else "single"
    _declaration(item, cardinality, "identifier", list(question.answer))
    _outcomes(item, points)
    body = _body(item, html(question.stem))
    interaction = ET.SubElement(body, q("qti-choice-interaction"), {
        "response-identifier": "RESPONSE",
        "shuffle": "true" if question.shuffle else "false",
        "max-choices": "0" if question.multiple else "1",
    })
    for option in question.options:
        choice = ET.SubElement(interaction, q("qti-simple-choice"), {"identifier": option.label})
        append_html(choice, _option_markup(option))
    ET.SubElement(item, q("qti-response-processing"), {"template": TEMPLATES + "match_correct.xml"})


def _extended_item(item: ET.Element, question: AnyQuestion, points: float, markup: str) -> None:
    _declaration(item, "single", "string")
    _outcomes(item, points)
    body = _body(item, markup)
    attributes = {"response-identifier": "RESPONSE", "expected-lines": "10"}
    if isinstance(question, CodeQuestion):
        attributes["format"] = "preformatted"
    ET.SubElement(body, q("qti-extended-text-interaction"), attributes)
    rubric = ET.SubElement(body, q("qti-rubric-block"), {"view": "scorer", "use": "scoring"})
    append_html(ET.SubElement(rubric, q("qti-content-body")), grader_info_html(question))


def _text_entry(body: ET.Element, label: str) -> None:
    paragraph = ET.SubElement(body, q("p"))
    paragraph.text = label + " "
    ET.SubElement(paragraph, q("qti-text-entry-interaction"),
                  {"response-identifier": "RESPONSE", "expected-length": "24"})


def _shape_item(item: ET.Element, question: ShapeAnswer, points: float) -> None:
    declaration = _declaration(item, "single", "string", [canonical_shape(question.answer)])
    mapping = ET.SubElement(declaration, q("qti-mapping"), {"default-value": "0"})
    for spelling in shape_spellings(question.answer):
        ET.SubElement(mapping, q("qti-map-entry"),
                      {"map-key": spelling, "mapped-value": "1", "case-sensitive": "false"})
    _outcomes(item, points)
    _text_entry(_body(item, html(question.prompt)), "Shape:")
    ET.SubElement(item, q("qti-response-processing"), {"template": TEMPLATES + "map_response.xml"})


def _numeric_item(item: ET.Element, question: NumericAnswer, points: float) -> None:
    _declaration(item, "single", "float", [repr(float(question.answer))])
    _outcomes(item, points)
    _text_entry(_body(item, html(question.prompt)), "Answer:")
    processing = ET.SubElement(item, q("qti-response-processing"))
    condition = ET.SubElement(processing, q("qti-response-condition"))
    branch = ET.SubElement(condition, q("qti-response-if"))
    # lower <= RESPONSE <= upper with plain comparisons: tolerance-mode on qti-equal is in
    # the spec, but players (e.g. @citolab/qti-components 7) only implement exact equality
    tolerance = absolute_tolerance(question)
    within = ET.SubElement(branch, q("qti-and"))
    for operator, bound in (("qti-gte", question.answer - tolerance),
                            ("qti-lte", question.answer + tolerance)):
        comparison = ET.SubElement(within, q(operator))
        ET.SubElement(comparison, q("qti-variable"), {"identifier": "RESPONSE"})
        ET.SubElement(comparison, q("qti-base-value"), {"base-type": "float"}).text = repr(bound)
    for parent, value in ((branch, "1"), (ET.SubElement(condition, q("qti-response-else")), "0")):
        outcome = ET.SubElement(parent, q("qti-set-outcome-value"), {"identifier": "SCORE"})
        ET.SubElement(outcome, q("qti-base-value"), {"base-type": "float"}).text = value


def _computed_numeric_item(item: ET.Element, question: NumericAnswer, points: float) -> None:
    """A numeric item whose answer and tolerance are template variables: accepted when
    ANSWER - TOLERANCE <= RESPONSE <= ANSWER + TOLERANCE."""
    _declaration(item, "single", "float")
    _outcomes(item, points)
    _text_entry(_body(item, html(question.prompt)), "Answer:")
    processing = ET.SubElement(item, q("qti-response-processing"))
    condition = ET.SubElement(processing, q("qti-response-condition"))
    branch = ET.SubElement(condition, q("qti-response-if"))
    within = ET.SubElement(branch, q("qti-and"))
    for operator, bound in (("qti-gte", "qti-subtract"), ("qti-lte", "qti-sum")):
        comparison = ET.SubElement(within, q(operator))
        ET.SubElement(comparison, q("qti-variable"), {"identifier": "RESPONSE"})
        limit = ET.SubElement(comparison, q(bound))
        for name in (ANSWER, TOLERANCE):
            ET.SubElement(limit, q("qti-variable"), {"identifier": name})
    for parent, value in ((branch, "1"), (ET.SubElement(condition, q("qti-response-else")), "0")):
        outcome = ET.SubElement(parent, q("qti-set-outcome-value"), {"identifier": "SCORE"})
        ET.SubElement(outcome, q("qti-base-value"), {"base-type": "float"}).text = value


def item_element(question: AnyQuestion, points: float) -> ET.Element | None:
    """One ``qti-assessment-item``, or None for kinds QTI export does not hold."""
    item = ET.Element(q("qti-assessment-item"), {
        "identifier": identifier(question.id), "title": question.id, "adaptive": "false",
        "time-dependent": "false", f"{{{XML_NS}}}lang": "en",
    })
    if isinstance(question, MultipleChoice):
        _choice_item(item, question, points)
    elif isinstance(question, ShortAnswer):
        _extended_item(item, question, points, html(question.prompt))
    elif isinstance(question, CodeQuestion):
        _extended_item(item, question, points, code_prompt_html(question))
    elif isinstance(question, ShapeAnswer):
        _shape_item(item, question, points)
    elif isinstance(question, NumericAnswer) and isinstance(question.answer, str):
        _computed_numeric_item(item, question, points)
    elif isinstance(question, NumericAnswer):
        _numeric_item(item, question, points)
    else:
        return None
    return item


def parametric_items(question: AnyQuestion, points: float, quiz_id: str, seed: int,
                     variants: int) -> tuple[list[tuple[str, ET.Element]], str]:
    """The items of a parametric question (item id, element) and what stderr should say: one
    templated item, or fixed variants when QTI cannot compute what the question needs."""
    try:
        plain, finish = template_parts(question)
        element = item_element(plain, points)
        if element is not None:
            finish(element)
            return [(question.id, element)], (
                f"{question.id}: parametric; exported with QTI template variables (each attempt "
                "draws its own numbers, not the ones vaequiz gives a student)")
        reason = f"{question.kind} questions are not graded"
    except Untranslatable as err:
        reason = str(err)
    except ParamError as err:
        raise ExportError(f"parametric question {question.id!r} cannot be drawn: {err}") from None
    items = []
    try:
        draws = distinct_draws(question, variants, quiz_id, seed)
        for number, values in enumerate(draws, start=1):
            element = item_element(bind(question, values), points)
            if element is None:
                return [], reason
            item_id = f"{question.id}-v{number}"
            element.set("identifier", identifier(item_id))
            element.set("title", f"{question.id} (variant {number})")
            items.append((item_id, element))
    except ParamError as err:
        raise ExportError(f"parametric question {question.id!r} cannot be drawn: {err}") from None
    first, last = items[0][0], items[-1][0]
    return items, (f"{question.id}: parametric; QTI cannot compute it ({reason}), so it is exported "
                   f"as {len(items)} fixed variants, separate items {first} ... {last}")


def _test_element(name: str, title: str, item_ids: list[str]) -> ET.Element:
    test = ET.Element(q("qti-assessment-test"), {"identifier": identifier(name), "title": title})
    part = ET.SubElement(test, q("qti-test-part"), {
        "identifier": "part-1", "navigation-mode": "nonlinear", "submission-mode": "simultaneous"})
    section = ET.SubElement(part, q("qti-assessment-section"),
                            {"identifier": "section-1", "title": title, "visible": "true"})
    for item_id in item_ids:
        ET.SubElement(section, q("qti-assessment-item-ref"),
                      {"identifier": identifier(item_id), "href": f"../items/{item_id}.xml"})
    return test


def _manifest(name: str, item_ids: list[str]) -> ET.Element:
    def c(tag: str) -> str:
        return f"{{{CP_NS}}}{tag}"

    manifest = ET.Element(c("manifest"), {"identifier": f"MANIFEST-{identifier(name)}"})
    metadata = ET.SubElement(manifest, c("metadata"))
    ET.SubElement(metadata, c("schema")).text = "QTI Package"
    ET.SubElement(metadata, c("schemaversion")).text = "3.0.0"
    ET.SubElement(manifest, c("organizations"))
    resources = ET.SubElement(manifest, c("resources"))
    test = ET.SubElement(resources, c("resource"), {
        "identifier": f"TEST-{identifier(name)}", "type": "imsqti_test_xmlv3p0",
        "href": "tests/test.xml"})
    ET.SubElement(test, c("file"), {"href": "tests/test.xml"})
    for item_id in item_ids:
        ET.SubElement(test, c("dependency"), {"identifierref": identifier(item_id)})
    for item_id in item_ids:
        href = f"items/{item_id}.xml"
        resource = ET.SubElement(resources, c("resource"), {
            "identifier": identifier(item_id), "type": "imsqti_item_xmlv3p0", "href": href})
        ET.SubElement(resource, c("file"), {"href": href})
    return manifest


def _xml_bytes(element: ET.Element, indent: bool = False) -> bytes:
    """Serialised with a declaration; items stay unindented, since indenting would add
    whitespace inside ``<pre>`` blocks."""
    if indent:
        ET.indent(element)
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def export(selection: ExportSet, out: Path) -> ExportResult:
    """Write the content package zip."""
    result = ExportResult(out)
    files: dict[str, bytes] = {}
    item_ids: list[str] = []
    for question in selection.questions:
        points = selection.points[question.id]
        original = selection.parametric.get(question.id)
        if original is not None:
            items, note = parametric_items(original, points, selection.quiz_id, selection.seed,
                                           selection.variants)
            if items:
                selection.fixed_draws.pop(question.id, None)
                result.lost.append(note)
        else:
            element = item_element(question, points)
            items = [(question.id, element)] if element is not None else []
        if not items:
            result.skipped.append((question.id, f"{question.kind} questions are not graded"))
            continue
        for item_id, element in items:
            files[f"items/{item_id}.xml"] = _xml_bytes(element)
            item_ids.append(item_id)
        result.written.append(question.id)
    ET.register_namespace("", CP_NS)
    manifest = _xml_bytes(_manifest(selection.name, item_ids), indent=True)
    ET.register_namespace("", QTI_NS)
    files["tests/test.xml"] = _xml_bytes(_test_element(selection.name, selection.title, item_ids), indent=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", manifest)
        for name, data in files.items():
            archive.writestr(name, data)
    return result
