"""Parametric questions end to end: the bank format and its located errors, stable draws,
per-student pages, sheets that record the numbers, grading with them, verify and lint."""

from __future__ import annotations

import json
import textwrap
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BUNDLED_BANK
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import MultipleChoice, NumericAnswer, ShapeAnswer, question_adapter
from vaequiz.bank.parametric import bind, draw_for, general_form, is_parametric, space_of
from vaequiz.grading.models import AnswerSheet
from vaequiz.grading.objective import format_dims, grade_mcq, grade_numeric, grade_shape
from vaequiz.grading.parametric import params_for
from vaequiz.params import ParamError, param_space
from vaequiz.render.fragments import FragmentRenderer, Mode

PARAMETRIC_BANK = """
- id: z-shape
  kind: shape
  topics: [shapes]
  difficulty: beginner
  source: original
  params:
    B: [16, 32, 64, 128]
    D: {low: 2, high: 32, step: 2}
    H: "D * 4"
  where: ["D < H", "B > D"]
  prompt: "A batch of {{ B }} inputs and a {{ D }}-dimensional latent ($H = {{ H }}$). Shape of `z`?"
  answer: [B, D]
  explanation: "For your numbers, `z` has shape ({{ B }}, {{ D }})."
- id: kl-one
  kind: numeric
  topics: [kl]
  difficulty: intermediate
  source: original
  params:
    mu: {low: -2, high: 2, step: 0.5}
    sigma: [0.5, 1, 2]
  prompt: "KL of $\\\\mathcal{N}({{ mu }}, {{ sigma:.2f }}^2)$ from $\\\\mathcal{N}(0, 1)$?"
  answer: "0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)"
  tolerance: 0.01
  explanation: "It is {{ 0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1):.3f }} nats."
- id: count
  kind: mcq
  topics: [shapes]
  difficulty: beginner
  source: original
  params:
    B: [16, 32, 64]
    D: [8, 20]
  stem: "How many numbers does a ({{ B }}, {{ D }}) tensor hold?"
  options:
    - {label: A, text: "{{ B * D }}", correct_if: "True"}
    - {label: B, text: "{{ B + D }}", correct_if: "B + D == B * D"}
    - {label: C, text: "{{ 2 * B * D }}"}
  answer: A
  explanation: "{{ B }} times {{ D }} is {{ B * D }}."
"""


def _bank(write_yaml, text: str = PARAMETRIC_BANK) -> Path:
    return write_yaml("params.yaml", text)


def _key_text(question) -> str:
    if isinstance(question, ShapeAnswer):
        return format_dims(list(question.answer))
    if isinstance(question, NumericAnswer):
        return repr(question.answer)
    return ", ".join(question.answer)


# --------------------------------------------------------------------------- the format


def test_a_parametric_bank_validates_and_binds(write_yaml) -> None:
    bank = load_bank(_bank(write_yaml))
    assert bank.ok, bank.problems
    shape = bank.get("z-shape")
    bound = bind(shape, {"B": 32, "D": 8, "H": 32})
    assert bound.answer == [32, 8]
    assert "A batch of 32 inputs and a 8-dimensional latent ($H = 32$)" in bound.prompt
    assert bound.explanation == "For your numbers, `z` has shape (32, 8)."
    kl = bind(bank.get("kl-one"), {"mu": 1.0, "sigma": 2})
    assert kl.answer == pytest.approx(0.5 * (1 + 4 - 1.3862943611198906 - 1))
    assert "2.00^2" in kl.prompt
    mcq = bind(bank.get("count"), {"B": 16, "D": 8})
    assert mcq.answer == ["A"] and mcq.options[0].text == "128"


BAD_BANK = """
- id: broken
  kind: numeric
  topics: [kl]
  difficulty: beginner
  source: original
  params:
    mu: {low: -2, high: 2, step: 0.5}
    X: "Y + 1"
    Y: "X * 2"
  where: "Q < 1"
  prompt: "mu = {{ mu:.2f }} and {{ nu }}"
  answer: "0.5 * mu**2 + foo"
  explanation: "ok"
- id: hostile
  kind: shape
  topics: [shapes]
  difficulty: beginner
  source: original
  params:
    B: "B.__class__"
  prompt: "x"
  answer: [B]
  explanation: "ok"
- id: no-params
  kind: shape
  topics: [shapes]
  difficulty: beginner
  source: original
  prompt: "A batch of {{ B }}"
  answer: [B, 3]
  explanation: "ok"
"""


def test_expression_mistakes_are_located_validation_errors(write_yaml, cli) -> None:
    bank = _bank(write_yaml, BAD_BANK)
    result = cli("validate", bank)
    assert result.returncode == 1
    err = result.stderr
    expected = [
        r"params\.yaml:8:8: params\.X: derived params depend on each other in a cycle: X -> Y -> X",
        r"params\.yaml:10:10: where: unknown name\(s\) Q",
        r"params\.yaml:11:11: prompt: placeholder \{\{ nu \}\} uses nu, which is not a param",
        r"params\.yaml:12:11: answer: unknown name\(s\) foo",
        r"params\.yaml:20:8: params\.B: attribute access \(x\.y\) is not allowed",
        r"params\.yaml:29:11: prompt: placeholder \{\{ B \}\} shows a param, but the question declares none",
        r"params\.yaml:30:12: answer\.0: an answer is the text 'B': without 'params:'",
    ]
    for pattern in expected:
        assert re.search(pattern, err), (pattern, err)
    assert "Traceback" not in err


def test_an_unsatisfiable_where_fails_with_a_clear_message() -> None:
    space, problems = param_space({"D": [1, 2], "H": [1, 2]}, ["D > H + 5"])
    assert not problems
    with pytest.raises(ParamError, match="no draw satisfied 'where' \\(D > H \\+ 5\\) in 1000 tries"):
        space.draw("quiz", 0, "ada", "q")


def test_an_unsatisfiable_where_stops_the_build_with_the_question_named(write_yaml, cli, tmp_path) -> None:
    bank = _bank(write_yaml, PARAMETRIC_BANK.replace('where: ["D < H", "B > D"]', 'where: ["D > H"]'))
    result = cli("build", "--bank", bank, "-o", tmp_path / "page.html")
    assert result.returncode == 1
    assert "no draw satisfied 'where' (D > H)" in result.stderr and "Traceback" not in result.stderr


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=30), st.integers(0, 2**32))
def test_draws_are_stable_and_satisfy_where(student: str, seed: int) -> None:
    space, _ = param_space({"B": [16, 32, 64, 128], "D": {"low": 2, "high": 32, "step": 2}, "H": "D * 4"},
                           ["D < H", "B > D"])
    first = space.draw("quiz", seed, student, "z-shape")
    assert first == space.draw("quiz", seed, student, "z-shape")
    assert first["H"] == first["D"] * 4 and first["B"] > first["D"]


# --------------------------------------------------------------------------- the bundled bank


BUNDLED = load_bank(BUNDLED_BANK)
BUNDLED_PARAMETRIC = [q for q in BUNDLED.questions if is_parametric(q)]
RENDERER = FragmentRenderer()


def test_the_bundled_bank_has_at_least_eight_parametric_items() -> None:
    assert len(BUNDLED_PARAMETRIC) >= 8


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BUNDLED_PARAMETRIC), st.text(max_size=20), st.integers(0, 10_000))
def test_every_draw_of_a_bundled_question_renders_validates_and_its_key_grades_right(question, student, seed) -> None:
    values = draw_for(question, "course", seed, student)
    assert all(space_of(question).holds(values))
    bound = bind(question, values)
    again = question_adapter.validate_python(bound.model_dump(mode="json", by_alias=True))
    assert again == bound and not is_parametric(bound)
    for text in (bound.text, bound.explanation or "", bound.hint or ""):
        assert "{{" not in text
    for mode in (Mode.exam, Mode.practice, Mode.key):
        FragmentRenderer(cache=False).fragment(bound, mode)
    if isinstance(bound, ShapeAnswer):
        graded = grade_shape(bound, _key_text(bound))
    elif isinstance(bound, NumericAnswer):
        graded = grade_numeric(bound, _key_text(bound))
    else:
        assert isinstance(bound, MultipleChoice)
        graded = grade_mcq(bound, list(bound.answer))
    assert graded.passed, (question.id, values, graded.checks)


@pytest.mark.parametrize("question", BUNDLED_PARAMETRIC, ids=lambda q: q.id)
def test_the_general_key_shows_formulas_not_numbers(question) -> None:
    general = general_form(question)
    fragment = FragmentRenderer(cache=False).fragment(general, Mode.key)
    assert "For each student" in str(fragment.text_html)
    assert "{{" not in str(fragment.text_html)


# --------------------------------------------------------------------------- sheets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(BUNDLED_PARAMETRIC), st.text(min_size=1, max_size=30).filter(str.strip), st.integers(0, 999))
def test_params_round_trip_through_the_sheet(tmp_path, question, student, seed) -> None:
    from vaequiz.grading.sheets import read_sheet
    from vaequiz.variants import variant_id

    values = draw_for(question, "course", seed, student)
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps({
        "student": student, "quiz": "course", "variant": variant_id("course", seed, student),
        "params": {question.id: values}, "answers": {question.id: "1"},
    }), encoding="utf-8")
    sheet, warnings = read_sheet(path)
    assert warnings == [] and sheet.params == {question.id: values}
    numbers, problem = params_for(sheet, question, "course", seed)
    assert problem is None and numbers == values
    edited = dict(values)
    name = next(iter(space_of(question).free))
    edited[name] = edited[name] + 1
    sheet = sheet.model_copy(update={"params": {question.id: edited}})
    numbers, problem = params_for(sheet, question, "course", seed)
    assert numbers is None and "the sheet was edited" in problem


def _page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="quiz-data">(.*?)</script>', html, re.S).group(1))


def _totals(path: Path) -> dict[str, str]:
    """Each student's total from a gradebook (whatever other columns it has)."""
    import csv

    with path.open(encoding="utf-8") as handle:
        return {row["student"]: row["total"] for row in csv.DictReader(handle)}


def _right_sheet(bank_path: Path, page: Path) -> dict:
    """A sheet answered right, from the numbers the page shows (as its script would save it)."""
    bank = load_bank(bank_path)
    data = _page_data(page.read_text(encoding="utf-8"))
    answers: dict[str, object] = {}
    for item in data["items"]:
        question = bind(bank.get(item["id"]), data["params"][item["id"]])
        if isinstance(question, MultipleChoice):
            shown = {bank_label: shown for shown, bank_label in data["labels"][item["id"]].items()}
            answers[item["id"]] = shown[question.answer[0]]
        else:
            answers[item["id"]] = _key_text(question)
    return {"student": data["student"], "quiz": data["quiz"], "variant": data["variant"],
            "labels": data["labels"], "params": data["params"], "answers": answers}


def test_roster_pages_show_each_student_their_numbers_and_grade_with_them(write_yaml, cli, tmp_path) -> None:
    bank = _bank(write_yaml)
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nada\nben\n", encoding="utf-8")
    result = cli("build", "--bank", bank, "--roster", roster, "-o", tmp_path / "pages")
    assert result.returncode == 0, result.stderr
    pages = {p.stem.rsplit("-", 1)[-1]: p for p in (tmp_path / "pages").glob("*.html")}
    shown = {name: _page_data(page.read_text())["params"] for name, page in pages.items()}
    assert shown["ada"] != shown["ben"]
    ada_html = pages["ada"].read_text()
    assert f"A batch of {shown['ada']['z-shape']['B']} inputs" in ada_html
    assert "{{" not in ada_html and "checks" not in _page_data(ada_html)  # exam: no key in the page
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    for name, page in pages.items():
        (sheets / f"{name}.json").write_text(json.dumps(_right_sheet(bank, page)), encoding="utf-8")
    result = cli("grade-sheets", "--bank", bank, *sorted(sheets.glob("*.json")), "--out", tmp_path / "graded")
    assert result.returncode == 0, result.stderr
    assert _totals(tmp_path / "graded" / "grades.csv") == {"ada": "3", "ben": "3"}
    results = [json.loads(line) for line in (tmp_path / "graded" / "results.jsonl").read_text().splitlines()]
    assert {(r["student"], r["question"]): r["params"] for r in results}[("ada", "z-shape")] == shown["ada"]["z-shape"]

    # ben's numbers are not ada's: ada's answers on ben's sheet fail, and say for which numbers
    ben = json.loads((sheets / "ben.json").read_text())
    ada = json.loads((sheets / "ada.json").read_text())
    ben["answers"]["z-shape"] = ada["answers"]["z-shape"]
    (sheets / "ben.json").write_text(json.dumps(ben), encoding="utf-8")
    result = cli("grade-sheets", "--bank", bank, sheets / "ben.json", "--out", tmp_path / "graded2")
    line = next(json.loads(x) for x in (tmp_path / "graded2" / "results.jsonl").read_text().splitlines()
                if '"z-shape"' in x)
    numbers = shown["ben"]["z-shape"]
    assert line["score"] == 0
    assert line["checks"][0]["message"].startswith(
        f"for your numbers, B = {numbers['B']}, D = {numbers['D']} and H = {numbers['H']}: ")
    feedback = (tmp_path / "graded2" / "feedback" / "ben.html").read_text()
    assert f"A batch of {numbers['B']} inputs" in feedback

    # a sheet whose params were edited (to ada's easier numbers) is refused, item by item
    ben["params"]["z-shape"] = shown["ada"]["z-shape"]
    (sheets / "ben.json").write_text(json.dumps(ben), encoding="utf-8")
    result = cli("grade-sheets", "--bank", bank, sheets / "ben.json", "--out", tmp_path / "graded3")
    assert result.returncode == 1
    assert "ben.json: z-shape: not graded: the sheet's params for 'z-shape'" in result.stderr
    assert "the sheet was edited" in result.stderr
    assert "kl-one: not graded" not in result.stderr


def test_practice_pages_check_the_students_own_numbers_and_keys_show_formulas(write_yaml, cli, tmp_path) -> None:
    bank = _bank(write_yaml)
    result = cli("build", "--bank", bank, "--mode", "practice", "--student", "ada", "-o", tmp_path / "p.html")
    assert result.returncode == 0, result.stderr
    data = _page_data((tmp_path / "p.html").read_text())
    numbers = data["params"]["z-shape"]
    assert data["checks"]["z-shape"]["shape"] == [numbers["B"], numbers["D"]]
    result = cli("build", "--bank", bank, "--mode", "key", "-o", tmp_path / "key.html")
    key = (tmp_path / "key.html").read_text()
    assert "For each student" in key and "B ∈ {16, 32, 64, 128}" in key and "(B, D)" in key
    result = cli("build", "--bank", bank, "--mode", "key", "--student", "ada", "-o", tmp_path / "ada-key.html")
    ada_key = (tmp_path / "ada-key.html").read_text()
    assert "For each student" not in ada_key and f"({numbers['B']}, {numbers['D']})" in ada_key


# --------------------------------------------------------------------------- verify and lint


def test_verify_draws_every_parametric_question(write_yaml, cli) -> None:
    bank = _bank(write_yaml)
    result = cli("verify", bank, "--draws", "100", "--json")
    assert result.returncode == 0, result.stderr
    findings = {f["question"]: f for f in json.loads(result.stdout)}
    assert findings["z-shape"]["subject"] == "100 draws" and findings["z-shape"]["agrees"]
    assert "warning: only 6 distinct draw(s)" in findings["count"]["detail"]


def test_verify_fails_a_draw_that_breaks_the_question(write_yaml, cli) -> None:
    broken = PARAMETRIC_BANK.replace('correct_if: "True"', 'correct_if: "B > 16"').replace(
        "answer: \"0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)\"", "answer: \"log(mu)\"")
    result = cli("verify", _bank(write_yaml, broken), "--draws", "100", "--json")
    assert result.returncode == 1
    findings = {f["question"]: f for f in json.loads(result.stdout)}
    assert not findings["count"]["agrees"] and "B = 16" in findings["count"]["detail"]
    assert not findings["kl-one"]["agrees"] and "log(" in findings["kl-one"]["detail"]


def test_lint_flags_unshown_params_and_a_where_that_rejects_most_draws(write_yaml, cli) -> None:
    text = PARAMETRIC_BANK.replace('where: ["D < H", "B > D"]', 'where: ["D < H", "B > D", "D == 2"]').replace(
        "    sigma: [0.5, 1, 2]\n", "    sigma: [0.5, 1, 2]\n    unused: [1, 2]\n")
    result = cli("lint", _bank(write_yaml, text))
    assert "param unused is never shown in the question's text" in result.stderr + result.stdout
    assert re.search(r"'where' rejects 9\d% of draws", result.stderr + result.stdout)


def test_grading_a_parametric_question_without_numbers_says_how(cli, tmp_path) -> None:
    answer = tmp_path / "answer.txt"
    answer.write_text("(64, 20)\n", encoding="utf-8")
    result = cli("grade", "encoder-z-shape", answer)
    assert result.returncode == 1
    assert "encoder-z-shape is parametric" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_a_sheet_from_before_the_params_changed_is_told_apart_from_an_edited_one() -> None:
    question = next(q for q in BUNDLED_PARAMETRIC if q.id == "per-sample-kl-shape")
    sheet = AnswerSheet(student="ada", params={question.id: {"B": 64}}, answers={question.id: "(64,)"})
    numbers, problem = params_for(sheet, question, "course", 0)
    assert numbers is None and "was the question changed after the quiz was built?" in problem
    unrecorded = AnswerSheet(student="ada", answers={question.id: "(64,)"})
    numbers, problem = params_for(unrecorded, question, "course", 0)
    assert problem is None and numbers == draw_for(question, "course", 0, "ada")


def test_gift_carries_fixed_variants_and_says_so(write_yaml, cli, tmp_path) -> None:
    from vaequiz.export.common import distinct_draws

    bank = _bank(write_yaml)
    result = cli("export", "--format", "gift", "--bank", bank, "--variants", "3", "-o", tmp_path / "bank.gift")
    assert result.returncode == 0, result.stderr
    assert "z-shape: parametric; written as 3 fixed variant(s)" in result.stderr
    text = (tmp_path / "bank.gift").read_text(encoding="utf-8")
    draws = distinct_draws(load_bank(bank).get("z-shape"), 3, "question-bank", 0)  # the page's quiz id
    assert len(draws) == 3 and "{{" not in text
    for numbers in draws:
        assert f"A batch of {numbers['B']} inputs" in text


@pytest.mark.parametrize(
    "change",
    [
        ("  answer: [B, D]\n", "  answer: [B, 'x y']\n"),  # not an expression
        ("  where: [\"D < H\", \"B > D\"]\n", "  where: [\"D < H\", \"no way\"]\n"),
        ("    H: \"D * 4\"\n", "    H: \"D 4\"\n"),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(write_yaml, change) -> None:
    """Editors see the commonest expression mistake (two names in a row) through the schema."""
    import jsonschema
    import yaml

    schema = json.loads((Path(__file__).parent.parent / "vaequiz/schemas/question-bank.schema.json").read_text())
    text = PARAMETRIC_BANK.replace(*change)
    assert text != PARAMETRIC_BANK
    bank = _bank(write_yaml, text)
    assert not load_bank(bank).ok
    assert not jsonschema.Draft202012Validator(schema).is_valid(yaml.safe_load((bank / "params.yaml").read_text()))


def test_without_params_the_schema_wants_plain_answers(write_yaml) -> None:
    import jsonschema
    import yaml

    schema = json.loads((Path(__file__).parent.parent / "vaequiz/schemas/question-bank.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    plain = textwrap.dedent(PARAMETRIC_BANK).split("- id: kl-one")[0]
    start, _, rest = plain.partition("  params:\n")
    without = start + "  prompt:" + rest.split("  prompt:", 1)[1]  # the question with params: removed
    without = without.replace('  where: ["D < H", "B > D"]\n', "").replace("{{ B }}", "64").replace("{{ D }}", "8").replace("{{ H }}", "32")
    assert validator.is_valid(yaml.safe_load(without.replace("answer: [B, D]", "answer: [64, 8]")))
    for bad in ("answer: [B, D]", "answer: [64, 8]\n  where: ['1 < 2']"):
        document = yaml.safe_load(without.replace("answer: [B, D]", bad))
        assert not validator.is_valid(document), bad
        assert not load_bank(write_yaml("plain.yaml", yaml.safe_dump(document))).ok, bad
