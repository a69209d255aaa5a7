"""Exports parsed back: Moodle XML and QTI with XML parsers (checking each format's required
structure), GIFT with a small parser; MCQ keys round-trip for every MCQ of the bundled bank."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.etree import ElementTree as ET

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import MultipleChoice, NumericAnswer, ShapeAnswer
from vaequiz.bank.skeletons import KINDS
from vaequiz.cli.app import app
from vaequiz.export.common import html, shape_spellings
from vaequiz.export.gift import question_gift
from vaequiz.export.moodle import MOODLE_FRACTIONS, cdata

runner = CliRunner()
BUNDLED = Path(__file__).resolve().parent.parent / "question_bank"
QTI = "{http://www.imsglobal.org/xsd/imsqtiasi_v3p0}"
MATHML = "{http://www.w3.org/1998/Math/MathML}"
CP = "{http://www.imsglobal.org/xsd/qti/qtiv3p0/imscp_v1p1}"

TRICKY_MCQ = {
    "id": "tricky-multi", "kind": "mcq", "topics": ["kl"], "difficulty": "advanced",
    "source": "original", "multiple": True, "answer": ["A", "C"],
    "stem": "Which hold for $D_{KL}(q \\,\\|\\, p)$? Note: a~b = c {d} #e \\ f.",
    "options": [
        {"label": "A", "text": "It is $\\geq 0$ ~ always.", "feedback": "Gibbs: {yes} #1"},
        {"label": "B", "text": "It is symmetric: KL(q, p) = KL(p, q)."},
        {"label": "C", "code": "kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())\n"},
        {"label": "D", "text": "It needs `x ]]> y` samples."},
    ],
    "explanation": "Non-negative, asymmetric; C is the closed form.",
}


@pytest.fixture(scope="module")
def every_kind_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One skeleton of each kind (made by `vaequiz new`) plus a multi-select MCQ full of
    characters the formats must escape."""
    folder = tmp_path_factory.mktemp("bank")
    for kind in KINDS:
        assert runner.invoke(app, ["new", kind, "--file", str(folder / "kinds.yaml")]).exit_code == 0
    (folder / "tricky.yaml").write_text(yaml.safe_dump([TRICKY_MCQ], sort_keys=False))
    assert load_bank(folder).ok
    return folder


def export(fmt: str, bank: Path, out: Path, *extra: str) -> str:
    done = runner.invoke(app, ["export", "--format", fmt, "--bank", str(bank), "-o", str(out), *extra])
    assert done.exit_code == 0, done.stderr
    return done.stderr


# --------------------------------------------------------------------------- Moodle


def moodle_questions(path: Path) -> dict[str, ET.Element]:
    minidom.parse(str(path))  # well-formed for a second, independent parser too
    root = ET.parse(path).getroot()
    assert root.tag == "quiz"
    questions = root.findall("question")
    assert questions[0].get("type") == "category"
    return {q.findtext("name/text"): q for q in questions[1:]}


def moodle_key(question: ET.Element, bank_question: MultipleChoice) -> list[str]:
    answers = question.findall("answer")
    assert len(answers) == len(bank_question.options)
    for answer in answers:
        assert abs(float(answer.get("fraction"))) in MOODLE_FRACTIONS
    return [o.label for o, a in zip(bank_question.options, answers) if float(a.get("fraction")) > 0]


def test_moodle_structure_for_every_kind(every_kind_bank: Path, tmp_path: Path) -> None:
    stderr = export("moodle", every_kind_bank, tmp_path / "bank.xml")
    assert "skipped flashcard-new: flashcard questions are not graded" in stderr
    questions = moodle_questions(tmp_path / "bank.xml")
    types = {qid: q.get("type") for qid, q in questions.items()}
    assert types == {"mcq-new": "multichoice", "short-answer-new": "essay", "shape-new": "shortanswer",
                     "numeric-new": "numerical", "code-new": "essay", "tricky-multi": "multichoice"}
    bank = load_bank(every_kind_bank).by_id()
    for qid, question in questions.items():
        assert question.findtext("questiontext/text").strip()
        assert float(question.findtext("defaultgrade")) == bank[qid].points
    single = questions["mcq-new"]
    assert single.findtext("single") == "true"
    assert [a.get("fraction") for a in single.findall("answer")] == ["100", "0", "0", "0"]
    multi = questions["tricky-multi"]
    assert multi.findtext("single") == "false"
    fractions = [float(a.get("fraction")) for a in multi.findall("answer")]
    assert fractions == [50, -50, 50, -50]
    assert moodle_key(multi, bank["tricky-multi"]) == ["A", "C"]
    shape = questions["shape-new"]
    assert [a.findtext("text") for a in shape.findall("answer")] == shape_spellings([64, 20])
    numeric = questions["numeric-new"].find("answer")
    assert (float(numeric.findtext("text")), float(numeric.findtext("tolerance"))) == (0.0, 0.001)
    essay = questions["short-answer-new"]
    info = essay.findtext("graderinfo/text")
    assert "gradients flow through the sample" in info and "Model answer" in info
    code = questions["code-new"]
    assert code.findtext("responseformat") == "monospaced"
    assert code.findtext("responsetemplate/text") == "kl = ...\n"
    assert "Reference solution" in code.findtext("graderinfo/text")


MOODLE_TEXT_FORMATS = {"moodle_auto_format", "html", "plain_text", "wiki_like", "markdown"}
"""The names Moodle's XML importer knows (qformat_xml::trans_format in
question/format/xml/format.php); any other is read as html with "Unrecognised text format"."""


@pytest.mark.parametrize("bank_name", ["every kind", "bundled"])
def test_every_moodle_format_attribute_is_one_moodle_knows(
    bank_name: str, every_kind_bank: Path, tmp_path: Path
) -> None:
    bank = every_kind_bank if bank_name == "every kind" else BUNDLED
    export("moodle", bank, tmp_path / "bank.xml")
    root = ET.parse(tmp_path / "bank.xml").getroot()
    formats = [(element.tag, element.get("format")) for element in root.iter() if "format" in element.attrib]
    assert formats
    assert [f for f in formats if f[1] not in MOODLE_TEXT_FORMATS] == []
    code = moodle_questions(tmp_path / "bank.xml")
    templates = [q.find("responsetemplate") for q in code.values() if q.findtext("responseformat") == "monospaced"]
    assert templates and all(t.get("format") == "plain_text" for t in templates)


def test_moodle_math_and_code_survive(every_kind_bank: Path, tmp_path: Path) -> None:
    export("moodle", every_kind_bank, tmp_path / "bank.xml")
    questions = moodle_questions(tmp_path / "bank.xml")
    stem = questions["tricky-multi"].findtext("questiontext/text")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML"' in stem
    option_c = questions["tricky-multi"].findall("answer")[2].findtext("text")
    assert option_c.startswith("<pre") and "torch.sum(1 + logvar - mu**2 - logvar.exp())" in option_c
    option_d = questions["tricky-multi"].findall("answer")[3].findtext("text")
    assert "x ]]&gt; y" in option_d


def test_cdata_keeps_its_terminator() -> None:
    element = ET.fromstring(f"<t>{cdata('a ]]> b ]]]]> c')}</t>")
    assert element.text == "a ]]> b ]]]]> c"


# --------------------------------------------------------------------------- GIFT


def split_unescaped(text: str, delimiters: str) -> list[tuple[str, str]]:
    """Split at unescaped delimiter characters: [(delimiter before, segment), ...]."""
    parts: list[tuple[str, str]] = []
    current, before, i = "", "", 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if char in delimiters:
            parts.append((before, current))
            current, before = "", char
        else:
            current += char
        i += 1
    parts.append((before, current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse_gift(source: str) -> dict[str, dict[str, Any]]:
    """A small GIFT reader: title, [html] text, answers with weights and feedback."""
    questions = {}
    for block in source.split("\n\n"):
        block = block.strip()
        if not block.startswith("::"):
            assert block.startswith(("//", "$CATEGORY:")) or not block, block
            continue
        title, rest = re.match(r"::((?:\\.|[^:\\])*)::(.*)", block, re.S).groups()
        assert rest.startswith("[html]")
        pieces = split_unescaped(rest[len("[html]"):], "{}")
        assert [d for d, _ in pieces] == ["", "{", "}"] and pieces[2][1] == "", block[:200]
        text, body = pieces[0][1].rstrip(" "), pieces[1][1]
        body, *general = re.split(r"(?<!\\)####", body)
        question: dict[str, Any] = {"text": unescape(text), "general": [unescape(g).strip() for g in general]}
        if body.startswith("#"):
            value, tolerance = body[1:].split(":")
            question["numeric"] = (float(value), float(tolerance))
        else:
            answers = []
            for mark, segment in split_unescaped(body.strip(), "=~")[1:]:
                weight = re.match(r"%(-?[\d.]+)%", segment)
                segment = segment[weight.end():] if weight else segment
                text_part, *feedback = [s for _, s in split_unescaped(segment.strip(), "#")]
                answers.append({"mark": mark, "weight": float(weight.group(1)) if weight else None,
                                "text": unescape(text_part.strip()),
                                "feedback": unescape(feedback[0].strip()) if feedback else None})
            question["answers"] = answers
        questions[unescape(title)] = question
    return questions


def gift_key(question: dict[str, Any], bank_question: MultipleChoice) -> list[str]:
    answers = question["answers"]
    assert len(answers) == len(bank_question.options)
    if bank_question.multiple:
        return [o.label for o, a in zip(bank_question.options, answers) if a["weight"] > 0]
    return [o.label for o, a in zip(bank_question.options, answers) if a["mark"] == "="]


def test_gift_parses_back_with_escaping(every_kind_bank: Path, tmp_path: Path) -> None:
    stderr = export("gift", every_kind_bank, tmp_path / "bank.gift")
    assert "skipped flashcard-new" in stderr
    parsed = parse_gift((tmp_path / "bank.gift").read_text())
    bank = load_bank(every_kind_bank).by_id()
    assert set(parsed) == {q for q in bank if bank[q].kind != "flashcard"}
    tricky = parsed["tricky-multi"]
    assert tricky["text"] == html(TRICKY_MCQ["stem"])
    assert [a["weight"] for a in tricky["answers"]] == [50, -50, 50, -50]
    assert tricky["answers"][0]["text"] == html(TRICKY_MCQ["options"][0]["text"])
    assert tricky["answers"][0]["feedback"] == html("Gibbs: {yes} #1")
    assert tricky["general"] == [html(TRICKY_MCQ["explanation"])]
    assert parsed["numeric-new"]["numeric"] == (0.0, 0.001)
    assert [a["text"] for a in parsed["shape-new"]["answers"]] == shape_spellings([64, 20])
    assert parsed["code-new"]["answers"] == [] and parsed["short-answer-new"]["answers"] == []


def test_gift_says_on_stderr_which_points_it_cannot_carry(cli, every_kind_bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text(yaml.safe_dump({"id": "week-1", "title": "Week 1",
                                    "select": [{"ids": ["mcq-new", "tricky-multi", "shape-new"]}],
                                    "points": {"shape-new": 3, "tricky-multi": 2.5}}))
    done = cli("export", "--format", "gift", "--bank", every_kind_bank, "--quiz", quiz,
               "-o", tmp_path / "week.gift")
    assert done.returncode == 0, done.stderr
    [loss] = [line for line in done.stderr.splitlines() if "GIFT cannot carry points" in line]
    assert "2 question(s) lose theirs (tricky-multi: 2.5, shape-new: 3)" in loss
    assert "mcq-new" not in loss and "--format moodle" in loss
    assert set(parse_gift((tmp_path / "week.gift").read_text())) == {"mcq-new", "tricky-multi", "shape-new"}
    # Nothing to say when every question is worth Moodle's default mark, or for Moodle XML.
    for fmt, points in (("gift", {}), ("moodle", {"shape-new": 3})):
        quiz.write_text(yaml.safe_dump({"id": "week-1", "title": "Week 1",
                                        "select": [{"ids": ["mcq-new", "shape-new"]}], "points": points}))
        done = cli("export", "--format", fmt, "--bank", every_kind_bank, "--quiz", quiz, "-o", tmp_path / "x")
        assert done.returncode == 0 and "points" not in done.stderr, (fmt, done.stderr)


safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="$`\\*_[]<>&!|"),
    min_size=1, max_size=40,
).filter(lambda t: t.strip() and html(t))


@settings(max_examples=40, deadline=None)
@given(stem=safe_text, options=st.lists(safe_text, min_size=2, max_size=5, unique_by=lambda t: html(t)),
       key=st.integers(min_value=0, max_value=4))
def test_gift_escaping_round_trips_any_text(stem: str, options: list[str], key: int) -> None:
    key %= len(options)
    question = MultipleChoice.model_validate({
        "id": "any", "kind": "mcq", "topics": ["x"], "difficulty": "beginner", "source": "original",
        "stem": stem, "answer": chr(65 + key), "explanation": "because {#}",
        "options": [{"label": chr(65 + i), "text": t} for i, t in enumerate(options)],
    })
    parsed = parse_gift(question_gift(question))["any"]
    assert parsed["text"] == html(stem)
    assert [a["text"] for a in parsed["answers"]] == [html(t) for t in options]
    assert gift_key(parsed, question) == [chr(65 + key)]


# --------------------------------------------------------------------------- QTI


def qti_items(path: Path) -> dict[str, ET.Element]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = ET.fromstring(archive.read("imsmanifest.xml"))
        assert manifest.tag == f"{CP}manifest"
        assert manifest.findtext(f"{CP}metadata/{CP}schemaversion") == "3.0.0"
        items = {}
        for resource in manifest.iter(f"{CP}resource"):
            href = resource.get("href")
            assert href in names and resource.find(f"{CP}file").get("href") == href
            root = ET.fromstring(archive.read(href))
            minidom.parseString(archive.read(href))
            if resource.get("type") == "imsqti_test_xmlv3p0":
                assert root.tag == f"{QTI}qti-assessment-test"
                refs = [r.get("href") for r in root.iter(f"{QTI}qti-assessment-item-ref")]
                assert all(f"items/{Path(r).name}" in names for r in refs)
                continue
            assert resource.get("type") == "imsqti_item_xmlv3p0"
            assert root.tag == f"{QTI}qti-assessment-item"
            assert root.get("identifier") == resource.get("identifier")
            assert root.find(f"{QTI}qti-item-body") is not None
            items[root.get("title")] = root
    return items


def qti_key(item: ET.Element) -> list[str]:
    declaration = item.find(f"{QTI}qti-response-declaration")
    return [v.text for v in declaration.iter(f"{QTI}qti-value")]


def test_qti_package_structure_for_every_kind(every_kind_bank: Path, tmp_path: Path) -> None:
    export("qti", every_kind_bank, tmp_path / "bank.zip")
    items = qti_items(tmp_path / "bank.zip")
    assert "flashcard-new" not in items and len(items) == len(KINDS)

    def interaction(qid: str) -> str:
        body = items[qid].find(f"{QTI}qti-item-body")
        found = [e.tag.removeprefix(QTI) for e in body.iter() if e.tag.endswith("-interaction")]
        assert len(found) == 1
        return found[0]

    assert interaction("mcq-new") == "qti-choice-interaction"
    assert interaction("tricky-multi") == "qti-choice-interaction"
    assert interaction("short-answer-new") == "qti-extended-text-interaction"
    assert interaction("code-new") == "qti-extended-text-interaction"
    assert interaction("shape-new") == "qti-text-entry-interaction"
    assert interaction("numeric-new") == "qti-text-entry-interaction"
    multi = items["tricky-multi"].find(f"{QTI}qti-response-declaration")
    assert multi.get("cardinality") == "multiple" and qti_key(items["tricky-multi"]) == ["A", "C"]
    choices = items["tricky-multi"].find(f".//{QTI}qti-choice-interaction")
    assert choices.get("max-choices") == "0"
    assert [c.get("identifier") for c in choices] == ["A", "B", "C", "D"]
    assert items["mcq-new"].find(f"{QTI}qti-response-declaration").get("cardinality") == "single"
    math = list(items["tricky-multi"].iter(f"{MATHML}math"))
    assert math and math[0].find(f"{MATHML}mrow") is not None
    pre = items["tricky-multi"].find(f".//{QTI}pre")
    assert "torch.sum(1 + logvar - mu**2 - logvar.exp())" in "".join(pre.itertext())
    mapping = items["shape-new"].find(f".//{QTI}qti-mapping")
    assert [e.get("map-key") for e in mapping] == shape_spellings([64, 20])
    within = items["numeric-new"].find(f".//{QTI}qti-response-if/{QTI}qti-and")
    bounds = [(c.tag.removeprefix(QTI), float(c.find(f"{QTI}qti-base-value").text)) for c in within]
    assert bounds == [("qti-gte", -0.001), ("qti-lte", 0.001)]
    rubric = items["short-answer-new"].find(f".//{QTI}qti-rubric-block")
    assert rubric.get("view") == "scorer" and "noise drawn separately" in "".join(rubric.itertext())


# --------------------------------------------------------------------------- the bundled bank


def test_every_bundled_mcq_key_round_trips_through_every_format(tmp_path: Path) -> None:
    bank = load_bank(BUNDLED)
    mcqs = [q for q in bank.questions if isinstance(q, MultipleChoice)]
    assert mcqs
    export("moodle", BUNDLED, tmp_path / "b.xml")
    export("gift", BUNDLED, tmp_path / "b.gift")
    export("qti", BUNDLED, tmp_path / "b.zip")
    moodle = moodle_questions(tmp_path / "b.xml")
    gift = parse_gift((tmp_path / "b.gift").read_text())
    qti = qti_items(tmp_path / "b.zip")
    for question in mcqs:
        assert moodle_key(moodle[question.id], question) == question.answer, question.id
        assert gift_key(gift[question.id], question) == question.answer, question.id
        assert qti_key(qti[question.id]) == question.answer, question.id
    from vaequiz.bank.parametric import is_parametric

    for question in bank.questions:
        if is_parametric(question):  # fixed variants, each checked in tests/test_export_params.py
            continue
        if isinstance(question, NumericAnswer):
            assert gift[question.id]["numeric"][0] == question.answer
        if isinstance(question, ShapeAnswer):
            assert gift[question.id]["answers"][0]["text"] == shape_spellings(question.answer)[0]


def test_quiz_selects_questions(every_kind_bank: Path, tmp_path: Path) -> None:
    quiz = tmp_path / "week.quiz.yaml"
    quiz.write_text(yaml.safe_dump({"id": "week-1", "title": "Week 1",
                                    "select": [{"ids": ["tricky-multi", "shape-new"]}],
                                    "points": {"shape-new": 3}}))
    export("moodle", every_kind_bank, tmp_path / "week.xml", "--quiz", str(quiz))
    questions = moodle_questions(tmp_path / "week.xml")
    assert list(questions) == ["tricky-multi", "shape-new"]
    assert questions["shape-new"].findtext("defaultgrade") == "3"


def test_bad_input_is_reported_not_raised(every_kind_bank: Path, tmp_path: Path) -> None:
    done = runner.invoke(app, ["export", "--format", "qti", "--bank", str(every_kind_bank),
                               "-o", str(tmp_path)])
    assert done.exit_code == 2 and "is a folder" in done.stderr
    quiz = tmp_path / "bad.quiz.yaml"
    quiz.write_text(yaml.safe_dump({"id": "bad", "title": "Bad", "select": [{"ids": ["nope"]}]}))
    done = runner.invoke(app, ["export", "--format", "gift", "--bank", str(every_kind_bank),
                               "--quiz", str(quiz), "-o", str(tmp_path / "x.gift")])
    assert done.exit_code == 1 and "no question with id 'nope'" in done.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "q.yaml").write_text("- id: x\n  kind: mcq\n")
    done = runner.invoke(app, ["export", "--format", "moodle", "--bank", str(broken),
                               "-o", str(tmp_path / "x.xml")])
    assert done.exit_code == 1 and "fix them first" in done.stderr
    done = runner.invoke(app, ["export", "--format", "gradescope", "--bank", str(every_kind_bank),
                               "--quiz", str(write_quiz(tmp_path, ["mcq-new"])), "-o", str(tmp_path / "g.zip")])
    assert done.exit_code == 1 and "no code questions" in done.stderr


def write_quiz(folder: Path, ids: list[str]) -> Path:
    path = folder / "some.quiz.yaml"
    path.write_text(yaml.safe_dump({"id": "some", "title": "Some", "select": [{"ids": ids}]}))
    return path


@pytest.mark.parametrize("dims", [[], [784], [64, 20], [16, 64, 7, 7]])
def test_every_exported_shape_spelling_is_one_the_grader_accepts(dims: list[int]) -> None:
    """An LMS accepts exactly the listed spellings; vaequiz must grade each of them right too."""
    from vaequiz.grading.objective import parse_shape

    for spelling in shape_spellings(dims):
        assert parse_shape(spelling) == dims, spelling
