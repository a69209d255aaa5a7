"""Parametric questions in Moodle XML and GIFT, parsed back.

Moodle calculated questions are checked the way Moodle reads them: every formula passes a port
of Moodle's own validator (``qtype_calculated_find_formula_errors``), and a small evaluator with
PHP's semantics computes it after Moodle's substitution (each ``{name}`` becomes ``(value)``);
the result must be vaequiz's answer for that dataset item's numbers. Fixed variants (GIFT, and
Moodle's random-question categories) must each grade as vaequiz grades their numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.etree import ElementTree as ET

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_export import parse_gift
from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import MultipleChoice, NumericAnswer, ShapeAnswer
from vaequiz.bank.parametric import bind, space_of
from vaequiz.export.common import shape_spellings
from vaequiz.export.moodle import DATASET_ITEMS
from vaequiz.export.moodle_formula import NotExpressible, moodle_formula, moodle_value, same_number
from vaequiz.expressions import ExpressionError, evaluate, parse_expression

BANK = """
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
  explanation: "It is {{ 0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1):.3f }} nats; $\\\\mu^2 = {{ mu**2 }}$."
- id: every-operator
  kind: numeric
  topics: [arithmetic]
  difficulty: advanced
  source: original
  params:
    A: {low: 1, high: 40}
    K: [3, 4, 5]
    M: "A * K"
  where: ["M % 2 == 0", "A != 20"]
  prompt: "With A = {{ A }}, K = {{ K }} and M = {{ M }}, compute it."
  answer: "M // 7 + M % 5 - min(A, K, 9) + max(A, 10) / sqrt(K) + abs(A - 20) + ceil(A / 3) - floor(-A / 4) + exp(K / 10) + log(A, 2) + log(M) - -A + +K ** 0.5 * 2 ** -1"
  relative_tolerance: 0.0001
  explanation: "Every operator at once: {{ M // 7 }} and {{ M % 5 }}."
- id: rounded
  kind: numeric
  topics: [arithmetic]
  difficulty: beginner
  source: original
  params:
    A: [1, 2, 4, 5, 7]
  prompt: "What is {{ A }} / 3 to one decimal?"
  answer: "round(A / 3, 1)"
  tolerance: 0.05
  explanation: "{{ A }} / 3 is about {{ A / 3:.2f }}."
- id: both-tolerances
  kind: numeric
  topics: [arithmetic]
  difficulty: beginner
  source: original
  params:
    A: [10, 100, 1000]
  prompt: "What is {{ A }} squared?"
  answer: "A ** 2"
  tolerance: 1
  relative_tolerance: 0.01
  explanation: "{{ A }} squared is {{ A ** 2 }}."
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
  prompt: "A batch of {{ B }} inputs and a {{ D }}-dimensional latent. Shape of `z`?"
  answer: [B, D]
  explanation: "For your numbers, `z` has shape ({{ B }}, {{ D }})."
- id: count
  kind: mcq
  topics: [shapes]
  difficulty: beginner
  source: original
  params:
    B: [16, 32, 64]
    D: [8, 20]
  stem: "Which is the number of entries of a ({{ B }}, {{ D }}) tensor, #{}~=:?"
  options:
    - {label: A, text: "{{ B * D }}", correct_if: "B * D > 500"}
    - {label: B, text: "{{ B + D }}", correct_if: "B * D <= 500 and False"}
    - {label: C, text: "{{ B * D }} (no more than 500)", correct_if: "B * D <= 500"}
  answer: A
  explanation: "{{ B }} times {{ D }} is {{ B * D }}."
- id: tenths
  kind: numeric
  topics: [arithmetic]
  difficulty: beginner
  source: original
  params:
    A: [1, 2, 3]
  prompt: "How many whole tenths fit in {{ A }}?"
  answer: "A // 0.1"
  explanation: "{{ A // 0.1 }}."
- id: braces
  kind: numeric
  topics: [arithmetic]
  difficulty: beginner
  source: original
  params:
    A: [1, 2, 3]
  prompt: "In `f'{x}'`, x is {{ A }}. What is x + 1?"
  answer: "A + 1"
  explanation: "{{ A + 1 }}."
- id: plain
  kind: numeric
  topics: [arithmetic]
  difficulty: beginner
  source: original
  prompt: "What is 2 + 2?"
  answer: 4
  explanation: "Two and two."
"""

MOODLE_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9\-_\s]*)\}")
"""Moodle's PLACEHODLER_REGEX (qtype_calculated)."""
MOODLE_TEXT_FORMULA = re.compile(r"\{=([^{}]*(?:\{[^{}]+}[^{}]*)*)}")
"""The pattern Moodle's variable substituter finds ``{=...}`` formulas in text with."""


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("params-bank")
    (folder / "params.yaml").write_text(BANK.lstrip("\n"), encoding="utf-8")
    loaded = load_bank(folder)
    assert loaded.ok, loaded.problems
    return folder


# --------------------------------------------------------------------------- Moodle's rules, ported


def find_formula_errors(formula: str) -> str | None:
    """A port of Moodle's ``qtype_calculated_find_formula_errors`` (question/type/calculated/
    questiontype.php): None when Moodle accepts the formula, else what it refuses."""
    for comment in ("//", "/*", "#", "<?", "?>"):
        if comment in formula:
            return f"comment start {comment}"
    formula = MOODLE_PLACEHOLDER.sub("1.0", formula)
    formula = formula.replace(" ", "").lower()
    safe = re.escape("-+/*%>:~<?=!")
    operand = f"[{safe}.0-9eE]"
    call = re.compile(rf"(^|[{safe},(])([a-z0-9_]*)\(({operand}+(,{operand}+((,{operand}+)+)?)?)?\)")
    one = {"abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "bindec", "ceil", "cos", "cosh",
           "decbin", "decoct", "deg2rad", "exp", "expm1", "floor", "is_finite", "is_infinite", "is_nan",
           "log10", "log1p", "octdec", "rad2deg", "sin", "sinh", "sqrt", "tan", "tanh"}
    while match := call.search(formula):
        name, args, second, third = match.group(2), match.group(3), match.group(4), match.group(5)
        if name == "":
            if second or not args:
                return f"illegal syntax {match.group(0)}"
        elif name == "pi":
            if args is not None:
                return "pi takes no arguments"
        elif name in one:
            if second or not args:
                return f"{name} takes one argument"
        elif name in ("log", "round"):
            if third or not args:
                return f"{name} takes one or two arguments"
        elif name in ("atan2", "fmod", "pow"):
            if third or not second:
                return f"{name} takes two arguments"
        elif name in ("min", "max"):
            if not second:
                return f"{name} takes at least two arguments"
        else:
            return f"unsupported function {name}"
        if match.group(1):
            formula = formula.replace(match.group(0), match.group(1) + "1.0")
        else:
            formula = re.sub(rf"^{re.escape(name)}\([^)]*\)", "1.0", formula)
    leftover = re.search(rf"[^{safe}.0-9eE]+", formula)
    return f"illegal syntax {leftover.group(0)}" if leftover else None


def substitute(formula: str, values: dict[str, str]) -> str:
    """What Moodle's variable substituter evaluates: each ``{name}`` as ``(value)``."""
    for name, value in values.items():
        formula = formula.replace("{" + name + "}", f"({value})")
    assert "{" not in formula, f"a wildcard has no dataset: {formula}"
    return formula


PHP_FUNCTIONS = {
    "abs": abs, "sqrt": math.sqrt, "exp": math.exp, "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)), "pow": lambda a, b: a ** b, "min": min, "max": max,
    "log": lambda x, base=None: math.log(x) if base is None else math.log(x) / math.log(base),
    "round": lambda x, digits=0: math.copysign(math.floor(abs(x) * 10**digits + 0.5), x) / 10**digits,
}


def php_eval(expression: str) -> float:
    """Evaluate a substituted Moodle formula with PHP's precedence (``**`` above unary minus,
    right-associative) and the PHP math functions Moodle allows."""
    tokens = re.findall(r"\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|\*\*|[a-z_][a-z0-9_]*|[-+*/%(),]", expression)
    assert "".join(tokens) == expression.replace(" ", ""), expression
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = tokens[position]
        assert expected is None or token == expected, (expected, token, expression)
        position += 1
        return token

    def additive() -> float:
        value = multiplicative()
        while peek() in ("+", "-"):
            value = value + multiplicative() if take() == "+" else value - multiplicative()
        return value

    def multiplicative() -> float:
        value = unary()
        while peek() in ("*", "/", "%"):
            operator, right = take(), unary()
            value = value * right if operator == "*" else value / right if operator == "/" else float(int(value) % int(right))
        return value

    def unary() -> float:
        if peek() == "-":
            take()
            return -unary()
        if peek() == "+":
            take()
            return unary()
        return power()

    def power() -> float:
        base = primary()
        if peek() == "**":
            take()
            return base ** unary()
        return base

    def primary() -> float:
        token = take()
        if token == "(":
            value = additive()
            take(")")
            return value
        if token[0].isalpha():
            take("(")
            args = [additive()]
            while peek() == ",":
                take()
                args.append(additive())
            take(")")
            return PHP_FUNCTIONS[token](*args)
        return float(token)

    value = additive()
    assert position == len(tokens), expression
    return value


# --------------------------------------------------------------------------- Moodle


def run_export(cli, fmt: str, bank: Path, out: Path, *extra: Any) -> str:
    done = cli("export", "--format", fmt, "--bank", bank, "-o", out, *extra)
    assert done.returncode == 0, done.stderr
    return done.stderr


def moodle_root(path: Path) -> ET.Element:
    minidom.parse(str(path))
    root = ET.parse(path).getroot()
    assert root.tag == "quiz"
    return root


def dataset_items(question: ET.Element) -> list[dict[str, str]]:
    """The joint draws of a calculated question: item number -> {wildcard: value}."""
    definitions = question.findall("dataset_definitions/dataset_definition")
    items: dict[int, dict[str, str]] = {}
    for definition in definitions:
        for path in ("status/text", "name/text", "type", "distribution/text", "minimum/text",
                     "maximum/text", "decimals/text", "itemcount", "number_of_items"):
            assert definition.findtext(path) is not None, path  # what Moodle's importer reads
        name = definition.findtext("name/text")
        entries = definition.findall("dataset_items/dataset_item")
        assert int(definition.findtext("itemcount")) == len(entries) == int(definition.findtext("number_of_items"))
        numbers = [float(e.findtext("value")) for e in entries]
        assert float(definition.findtext("minimum/text")) == min(numbers)
        assert float(definition.findtext("maximum/text")) == max(numbers)
        for entry in entries:
            items.setdefault(int(entry.findtext("number")), {})[name] = entry.findtext("value")
    assert sorted(items) == list(range(1, len(items) + 1))
    assert all(set(item) == set(items[1]) for item in items.values())
    return [items[n] for n in sorted(items)]


def as_number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def test_numeric_params_become_calculated_questions_whose_formulas_moodle_computes_right(
    cli, bank: Path, tmp_path: Path
) -> None:
    stderr = run_export(cli, "moodle", bank, tmp_path / "bank.xml")
    root = moodle_root(tmp_path / "bank.xml")
    questions = {q.findtext("name/text"): q for q in root.findall("question")}
    by_id = load_bank(bank).by_id()
    for qid in ("kl-one", "every-operator", "both-tolerances"):
        question, original = questions[qid], by_id[qid]
        assert question.get("type") == "calculated", qid
        assert isinstance(original, NumericAnswer)
        answer = question.find("answer")
        for path in ("text", "tolerance", "tolerancetype", "correctanswerformat", "correctanswerlength"):
            assert answer.findtext(path) is not None, path
        formula = answer.findtext("text")
        assert find_formula_errors(formula) is None, formula
        items = dataset_items(question)
        space = space_of(original)
        assert len(items) == min(DATASET_ITEMS, space.size) if not space.where else len(items) == DATASET_ITEMS
        texts = [question.findtext("questiontext/text"), question.findtext("generalfeedback/text")]
        wildcards = {m.group(1) for text in [formula, *texts] for m in MOODLE_PLACEHOLDER.finditer(text)}
        assert wildcards <= set(items[0]), "every wildcard has a dataset"
        drawn = set()
        for item in items:
            values = {name: as_number(value) for name, value in item.items()}
            free = {name: values[name] for name in space.free}
            assert all(v in space.free[name] for name, v in free.items())
            full = space.complete(free)
            assert all(space.holds(full)), f"{qid}: item {item} breaks 'where'"
            assert {k: full[k] for k in values} == values, "derived params agree with the free ones"
            expected = float(evaluate(original.answer, full))
            got = php_eval(substitute(formula, item))
            assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), (qid, item, got, expected)
            for text in texts:
                for inner in MOODLE_TEXT_FORMULA.findall(text):
                    assert find_formula_errors(inner) is None, inner
                    php_eval(substitute(inner, item))
            drawn.add(tuple(sorted(free.items())))
        assert len(drawn) == len(items), "dataset items are different draws"
    kl = questions["kl-one"]
    assert (kl.findtext("answer/tolerancetype"), float(kl.findtext("answer/tolerance"))) == ("2", 0.01)
    text = kl.findtext("questiontext/text")
    assert "<mn>{mu}</mn>" in text and "{=round({sigma}, 2)}" in text
    item = dataset_items(kl)[0]
    [shown] = [f for f in MOODLE_TEXT_FORMULA.findall(kl.findtext("generalfeedback/text")) if "round" in f]
    values = {k: as_number(v) for k, v in item.items()}
    exact = float(evaluate("0.5 * (mu**2 + sigma**2 - log(sigma**2) - 1)", values))
    assert abs(php_eval(substitute(shown, item)) - exact) <= 0.0005 + 1e-12
    operators = questions["every-operator"]
    assert operators.findtext("answer/tolerancetype") == "1"
    assert float(operators.findtext("answer/tolerance")) == 0.0001
    both = questions["both-tolerances"]
    assert (both.findtext("answer/tolerancetype"), float(both.findtext("answer/tolerance"))) == ("2", 1.0)
    assert "both-tolerances: Moodle has one kind of tolerance" in stderr
    assert "kl-one: parametric; written as a Moodle calculated question" in stderr
    assert questions["plain"].get("type") == "numerical"


def variant_numbers(title: str, qid: str) -> dict[str, int | float]:
    """``qid (B = 32, H = 256 and D = 8)`` -> the numbers."""
    match = re.fullmatch(re.escape(qid) + r" \((.*)\)", title)
    assert match, title
    pairs = re.split(r", | and ", match.group(1))
    return {name: as_number(value) for name, value in (p.split(" = ") for p in pairs)}


def check_variant(original: Any, numbers: dict[str, Any], answer_texts: list[str],
                  right: list[bool]) -> None:
    """One fixed draw carries the answer vaequiz computes for its numbers: ``answer_texts`` as
    written, ``right`` whether each answer is marked right."""
    space = space_of(original)
    full = space.complete({k: numbers[k] for k in space.free})
    assert all(space.holds(full)) and {k: full[k] for k in numbers} == numbers
    bound = bind(original, full)
    if isinstance(bound, ShapeAnswer):
        assert answer_texts == shape_spellings(bound.answer)
    elif isinstance(bound, NumericAnswer):
        assert float(answer_texts[0]) == bound.answer
    elif isinstance(bound, MultipleChoice):
        assert [o.label for o, r in zip(bound.options, right) if r] == bound.answer
    else:
        pytest.fail(f"unexpected kind {bound.kind}")


def test_other_params_become_fixed_variants_behind_a_random_question(cli, bank: Path, tmp_path: Path) -> None:
    stderr = run_export(cli, "moodle", bank, tmp_path / "bank.xml", "--variants", 4)
    root = moodle_root(tmp_path / "bank.xml")
    by_id = load_bank(bank).by_id()
    elements = root.findall("question")
    name = bank.resolve().name
    for qid, count in (("z-shape", 4), ("count", 4), ("rounded", 4), ("braces", 3), ("tenths", 3)):
        start = next(i for i, e in enumerate(elements)
                     if e.get("type") == "category" and e.findtext("category/text") == f"$course$/top/{name}/{qid}")
        variants = elements[start + 1 : start + 1 + count]
        titles = [v.findtext("name/text") for v in variants]
        assert len(set(titles)) == count
        for variant in variants:
            numbers = variant_numbers(variant.findtext("name/text"), qid)
            answers = variant.findall("answer")
            check_variant(by_id[qid], numbers, [a.findtext("text") for a in answers],
                          [float(a.get("fraction")) > 0 for a in answers])
            assert str(next(iter(numbers.values()))) in variant.findtext("questiontext/text")
        random = elements[start + 1 + count]
        assert random.get("type") == "random" and random.findtext("questiontext/text") == "0"
        back = elements[start + 2 + count]
        assert back.get("type") == "category" and back.findtext("category/text") == f"$course$/top/{name}"
        assert f"{qid}: parametric; written as {count} fixed variant(s) in category {name}/{qid}" in stderr
    assert "rounds halves to even" in stderr
    found = re.search(r"for A = (\d), Moodle's floor\(\{A\} / 0\.1\) gives (\d+) where vaequiz's A // 0\.1 gives (\d+)", stderr)
    assert found and int(found.group(2)) == 10 * int(found.group(1)) == int(found.group(3)) + 1
    assert "braces: parametric; written as 3 fixed variant(s)" in stderr and "which Moodle would read as a wildcard" in stderr


def test_draws_whose_keys_moodle_cannot_grade_are_left_out_and_said(cli, write_yaml: Any, tmp_path: Path) -> None:
    """Moodle's grades split 100% over 1 to 10 keys, not 11: a multi-select draw with 11 right
    options cannot be written, the others are."""
    question = {
        "id": "many-keys", "kind": "mcq", "topics": ["counting"], "difficulty": "beginner",
        "source": "original", "multiple": True, "params": {"N": [2, 11]},
        "stem": "Which of the first {{ N }} options are right?", "answer": ["A", "B"],
        "options": [{"label": chr(65 + i), "text": f"option {i + 1}", "correct_if": f"N > {i}"} for i in range(12)],
        "explanation": "The first {{ N }}.",
    }
    bank = write_yaml("many.yaml", yaml.safe_dump([question], sort_keys=False))
    stderr = run_export(cli, "moodle", bank, tmp_path / "many.xml")
    names = [q.findtext("name/text") for q in moodle_root(tmp_path / "many.xml").findall("question")]
    assert "many-keys (N = 2)" in names and "many-keys (N = 11)" not in names
    assert ("many-keys: parametric; written as 1 fixed variant(s) in category bank/many-keys, with a random "
            "question giving each attempt one of them (1 draw(s) left out: Moodle's grades cannot split "
            "100% over their keys)") in stderr


def test_a_small_space_gives_fewer_variants_not_repeats(cli, bank: Path, tmp_path: Path) -> None:
    stderr = run_export(cli, "gift", bank, tmp_path / "bank.gift", "--variants", 9)
    parsed = parse_gift((tmp_path / "bank.gift").read_text())
    assert len([t for t in parsed if t.startswith("both-tolerances (")]) == 3  # A has three values
    assert "both-tolerances: parametric; written as 3 fixed variant(s)" in stderr


def test_gift_writes_fixed_variants_titled_with_their_numbers(cli, bank: Path, tmp_path: Path) -> None:
    stderr = run_export(cli, "gift", bank, tmp_path / "bank.gift", "--variants", 3)
    source = (tmp_path / "bank.gift").read_text()
    parsed = parse_gift(source)
    by_id = load_bank(bank).by_id()
    name = bank.resolve().name
    for qid, original in by_id.items():
        if not original.params:
            assert qid in parsed
            continue
        titles = [t for t in parsed if t.startswith(qid + " (")]
        assert len(titles) == 3 and qid not in parsed, qid
        for title in titles:
            question = parsed[title]
            answers = question.get("answers", [])
            texts = [repr(question["numeric"][0])] if "numeric" in question else [a["text"] for a in answers]
            check_variant(original, variant_numbers(title, qid), texts, [a["mark"] == "=" for a in answers])
        assert f"$CATEGORY: $course$/top/{name}/{qid}\n\n::{qid} (" in source
        assert f"{qid}: parametric; written as 3 fixed variant(s)" in stderr
        assert "exported with one fixed draw" not in stderr
    for title in (t for t in parsed if t.startswith("count (")):
        numbers = variant_numbers(title, "count")
        assert parsed[title]["text"] == f"<p>Which is the number of entries of a ({numbers['B']}, {numbers['D']}) tensor, #{{}}~=:?</p>"


def test_every_bundled_parametric_question_is_carried_by_moodle_and_gift(cli, tmp_path: Path) -> None:
    bundled = Path(__file__).resolve().parent.parent / "question_bank"
    moodle_stderr = run_export(cli, "moodle", bundled, tmp_path / "b.xml")
    gift_stderr = run_export(cli, "gift", bundled, tmp_path / "b.gift")
    assert "fixed draw" not in moodle_stderr + gift_stderr
    gift = parse_gift((tmp_path / "b.gift").read_text())
    moodle = {q.findtext("name/text"): q for q in moodle_root(tmp_path / "b.xml").findall("question")}
    parametric = [q for q in load_bank(bundled).questions if q.params]
    assert len(parametric) >= 8
    for original in parametric:
        titles = [t for t in gift if t.startswith(original.id + " (")]
        assert len(titles) == 5, original.id
        for title in titles:
            answers = gift[title].get("answers", [])
            texts = [repr(gift[title]["numeric"][0])] if "numeric" in gift[title] else [a["text"] for a in answers]
            check_variant(original, variant_numbers(title, original.id), texts, [a["mark"] == "=" for a in answers])
        if isinstance(original, NumericAnswer):  # every bundled numeric one is computable
            question = moodle[original.id]
            assert question.get("type") == "calculated", original.id
            formula = question.findtext("answer/text")
            for item in dataset_items(question):
                values = space_of(original).complete({k: as_number(item[k]) for k in space_of(original).free})
                assert math.isclose(php_eval(substitute(formula, item)), float(evaluate(original.answer, values)),
                                    rel_tol=1e-9, abs_tol=1e-9)
        else:
            variants = [t for t in moodle if t and t.startswith(original.id + " (")]
            assert len(variants) == 5 and f"Random ({original.id})" in moodle, original.id


# --------------------------------------------------------------------------- the translation


NAMES = ("a", "b", "c")
leaf = st.one_of(st.sampled_from(NAMES), st.integers(0, 9).map(str), st.sampled_from(["0.5", "2.5", "1e-3"]))


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = children.map(lambda c: f"-({c})")
    calls = st.one_of(
        st.tuples(st.sampled_from(["abs", "exp", "sqrt", "floor", "ceil", "log"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["min", "max", "log"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"max({t[0]}, {t[1]}, {t[2]})"),
    )
    return st.one_of(binary, unary, calls)


expressions = st.recursive(leaf, combine, max_leaves=8)
numbers = st.one_of(st.integers(-50, 50), st.sampled_from([0.25, 0.5, -1.5, 3.75, 1e-3]))


@settings(max_examples=300, deadline=None)
@given(source=expressions, values=st.fixed_dictionaries({n: numbers for n in NAMES}))
def test_every_translated_formula_computes_what_the_exporter_expects(source: str, values: dict[str, Any]) -> None:
    """The exporter keeps a calculated question only where moodle_value agrees with vaequiz, so
    moodle_value must be what Moodle really computes from the formula written."""
    expression = parse_expression(source)
    formula = moodle_formula(expression)
    assert find_formula_errors(formula) is None, formula
    try:
        expected = float(evaluate(expression, values))
    except ExpressionError:
        return  # vaequiz refuses this draw (verify reports it); nothing to compare
    try:
        predicted = moodle_value(expression, values)
    except (ArithmeticError, ValueError):
        return  # the exporter falls back
    got = php_eval(substitute(formula, {k: repr(v) for k, v in values.items()}))
    assert got == predicted or math.isclose(got, predicted, rel_tol=1e-12), (source, formula, values, got, predicted)
    if same_number(predicted, expected):
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(source=expressions.filter(lambda s: "//" not in s and "%" not in s),
       values=st.fixed_dictionaries({n: st.integers(-50, 50) | st.sampled_from([0.25, 0.5, 3.75]) for n in NAMES}))
def test_without_floor_division_moodle_agrees_with_vaequiz(source: str, values: dict[str, Any]) -> None:
    expression = parse_expression(source)
    try:
        expected = float(evaluate(expression, values))
    except ExpressionError:
        return
    got = php_eval(substitute(moodle_formula(expression), {k: repr(v) for k, v in values.items()}))
    assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), (source, values, got, expected)


@pytest.mark.parametrize("source, why", [
    ("round(a)", "halves"), ("a if b else c", "comparisons"), ("a < b", "comparisons"),
    ("not a", "not"), ("a and b", "comparisons"), ("_a + 1", "wildcard name"),
])
def test_what_moodle_cannot_say_the_same_way_is_refused(source: str, why: str) -> None:
    with pytest.raises(NotExpressible, match=why):
        moodle_formula(parse_expression(source))
