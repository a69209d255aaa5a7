"""`vaequiz build` end to end: real YAML, the real CLI, the files a student would receive."""

from __future__ import annotations

import json
import re
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import run_vaequiz
from tests.test_render_sample import KEY_MARKERS, write_sample_bank, write_sample_quiz
from vaequiz.bank.loader import load_bank
from vaequiz.cli.app import app
from vaequiz.render.markdown import render_code

runner = CliRunner()
MODES = ("exam", "practice", "key", "flashcards")


def build(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["build", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample bank and quiz, built once in every mode."""
    folder = tmp_path_factory.mktemp("build")
    bank = write_sample_bank(folder)
    quiz = write_sample_quiz(folder)
    paths = {"bank": bank, "quiz": quiz}
    for mode in MODES:
        out = folder / f"{mode}.html"
        code, output = build("--bank", bank, "--quiz", quiz, "--mode", mode, "-o", out)
        assert code == 0, output
        paths[mode] = out
    return paths


def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="quiz-data">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


# --------------------------------------------------------------------------- structure


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
INTERACTIVE = {"a", "button", "input", "select", "textarea", "details", "label"}


class StructureChecker(HTMLParser):
    """Enough of an HTML validator for generated pages: nesting, ids, labels, references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.references: list[tuple[str, str]] = []
        self.controls: list[dict[str, str]] = []
        self.label_for: set[str] = set()
        self.doctype = False
        self.html_lang = False
        self.mains = 0

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.html_lang = bool(values.get("lang"))
        if tag == "main":
            self.mains += 1
        if "id" in values:
            self.ids.append(values["id"])
        for attr in ("for", "aria-labelledby", "aria-describedby", "aria-controls"):
            for target in values.get(attr, "").split():
                self.references.append((attr, target))
        if tag == "label" and "for" in values:
            self.label_for.add(values["for"])
        if tag in ("input", "textarea", "select"):
            self.controls.append(values)
        if tag in INTERACTIVE and any(t in ("button", "label", "a") for t in self.stack):
            if not (tag == "input" and "label" in self.stack and "button" not in self.stack):
                self.errors.append(f"<{tag}> nested inside {self.stack}")
        if tag in ("p",) and any(t in ("p", "button", "label", "span") for t in self.stack[-1:]):
            self.errors.append(f"<p> inside <{self.stack[-1]}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            self.handle_starttag(tag, attrs)
        elif "math" not in self.stack:
            self.errors.append(f"self-closing <{tag}/> outside MathML")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def check_structure(html: str) -> list[str]:
    checker = StructureChecker()
    checker.feed(html)
    checker.close()
    errors = list(checker.errors)
    if checker.stack:
        errors.append(f"unclosed: {checker.stack}")
    if not checker.doctype:
        errors.append("no <!DOCTYPE html>")
    if not checker.html_lang:
        errors.append("<html> has no lang")
    if checker.mains != 1:
        errors.append(f"{checker.mains} <main> elements")
    duplicates = {i for i in checker.ids if checker.ids.count(i) > 1}
    if duplicates:
        errors.append(f"duplicate ids: {sorted(duplicates)}")
    known = set(checker.ids)
    errors += [f"{attr}={target!r} names no element" for attr, target in checker.references if target not in known]
    for control in checker.controls:
        if control.get("type") == "hidden":
            continue
        if control.get("id") not in checker.label_for and "aria-labelledby" not in control:
            errors.append(f"unlabelled control {control}")
    return errors


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_well_formed_and_self_contained(sample: dict[str, Path], mode: str) -> None:
    html = sample[mode].read_text(encoding="utf-8")
    assert check_structure(html) == []
    # Nothing that could make a request: no external source, stylesheet, font or import.
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert not re.search(r"@import|url\(|<link\b|<img\b|<iframe\b", html)
    assert "<math" in html
    markup = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    assert not re.search(r"\$[^$<]*\\[a-zA-Z]+|\\(mathcal|frac|mu|sigma)\b", markup), "LaTeX left on the page"


# --------------------------------------------------------------------------- what each mode shows


def test_exam_reveals_no_key_material(sample: dict[str, Path]) -> None:
    html = sample["exam"].read_text(encoding="utf-8")
    for marker in KEY_MARKERS:
        assert marker not in html
    bank = load_bank(sample["bank"])
    for question in bank.questions:
        for secret in (getattr(question, "explanation", None), getattr(question, "model_answer", None)):
            if secret:
                assert secret.split("$")[0].strip()[:30] not in html
        reference = getattr(question, "reference", None)
        if reference:
            assert render_code(reference) not in html
            assert reference.splitlines()[0] not in html
    data = page_data(html)
    assert "checks" not in data
    assert set(data) == {"quiz", "mode", "student", "variant", "labels", "items", "rules", "max_answer_bytes",
                         "time_limit_min"}
    assert set(data["rules"]) == {"digit_zeros", "spaces"}  # the grader's character classes, no key


def test_practice_carries_hints_explanations_checks_and_keys(sample: dict[str, Path]) -> None:
    html = sample["practice"].read_text(encoding="utf-8")
    assert "SAMPLE-EXPLANATION-KL" in html and "Which two distributions" in html
    assert "SAMPLE-MODEL-ANSWER" in html
    assert "What the grader checks" in html and "and 1 hidden check" in html
    # The names the grader reports in feedback; the hidden check's name stays hidden.
    assert "<li>shape of z</li>" in html and "<li>gradient of z w.r.t. mu, logvar</li>" in html
    assert "fresh randomness in z" not in html
    assert "sample_reference_std" not in html  # reference code is for the key only
    data = page_data(html)
    assert data["checks"]["latent-shape"] == {"shape": [64, 20]}
    assert set(data["checks"]) == {"kl-role", "vae-true-facts", "sampling-code", "latent-shape", "kl-value"}


def test_key_shows_answers_rubrics_reference_and_mutants(sample: dict[str, Path]) -> None:
    html = sample["key"].read_text(encoding="utf-8")
    for marker in ("SAMPLE-EXPLANATION-CODE", "sample_reference_std", "SAMPLE-MUTANT-WHY",
                   "gradients flow", "(hidden from students)", "✓ Key", "(64, 20)"):
        assert marker in html
    assert "<input" not in html and "<textarea" not in html


def test_flashcards_hold_cards_and_short_answers_only(sample: dict[str, Path]) -> None:
    html = sample["flashcards"].read_text(encoding="utf-8")
    ids = re.findall(r'data-card="([^"]+)"', html)
    assert sorted(ids) == ["elbo-card", "why-reparameterize"]
    assert "SAMPLE-CARD-BACK" in html and "SAMPLE-MODEL-ANSWER" in html


def test_spec_points_and_title_reach_the_page(sample: dict[str, Path]) -> None:
    html = sample["exam"].read_text(encoding="utf-8")
    assert "<title>Sample quiz · Exam</title>" in html
    assert re.search(r'id="h-latent-shape" tabindex="-1">Question \d+</h2>\s*<p class="meta">Tensor shape · 2 points', html)


# --------------------------------------------------------------------------- variants and rosters


def test_builds_are_reproducible_and_differ_per_student(sample: dict[str, Path], tmp_path: Path) -> None:
    common = ["--bank", sample["bank"], "--quiz", sample["quiz"]]
    outputs = []
    for name, student in (("a1", "alice"), ("a2", "alice"), ("b", "bob")):
        out = tmp_path / f"{name}.html"
        assert build(*common, "--student", student, "-o", out)[0] == 0
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]
    alice, bob = page_data(outputs[0]), page_data(outputs[2])
    assert alice["student"] == "alice" and alice["variant"] != bob["variant"]
    assert 'id="student-id"' not in outputs[0]  # the student is baked in


def test_seed_option_changes_the_variant(sample: dict[str, Path], tmp_path: Path) -> None:
    variants = set()
    for seed in ("1", "2"):
        out = tmp_path / f"s{seed}.html"
        assert build("--bank", sample["bank"], "--quiz", sample["quiz"], "--seed", seed, "-o", out)[0] == 0
        variants.add(page_data(out.read_text(encoding="utf-8"))["variant"])
    assert len(variants) == 2


def test_roster_builds_one_page_per_student(sample: dict[str, Path], tmp_path: Path) -> None:
    roster = tmp_path / "class.csv"
    roster.write_text("name,student\nAda Lovelace,s001\nAlan Turing,s002\n\nGrace Hopper,s003\n", encoding="utf-8")
    out = tmp_path / "pages"
    code, output = build("--bank", sample["bank"], "--quiz", sample["quiz"], "--roster", roster, "-o", out)
    assert code == 0, output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["sample-quiz-s001.html", "sample-quiz-s002.html", "sample-quiz-s003.html"]
    data = page_data((out / "sample-quiz-s002.html").read_text(encoding="utf-8"))
    assert data["student"] == "s002"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,email\nAda,a@x\n", "has no 'student' or 'id' column"),
        ("student\ns1\ns1\n", "listed twice (first on line 2)"),
        ("student,name\n,Ada\n", ":2: the student column is empty"),
        ("", "the roster is empty"),
        ("id\n../etc\n", "path character"),
    ],
)
def test_malformed_roster_is_a_clear_error(sample: dict[str, Path], tmp_path: Path, content: str, message: str) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(content, encoding="utf-8")
    code, output = build("--bank", sample["bank"], "--roster", roster, "-o", tmp_path / "out")
    assert code == 1
    assert message in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--student", "a", "--roster", "r.csv"], "give --student or --roster, not both"),
        (["--roster", "missing.csv"], "roster file missing.csv does not exist"),
        (["--mode", "quizzical"], "quizzical"),
    ],
)
def test_usage_errors_exit_2(sample: dict[str, Path], tmp_path: Path, extra: list[str], message: str) -> None:
    code, output = build("--bank", sample["bank"], "-o", tmp_path / "x.html", *extra)
    assert code == 2
    assert message in output


# --------------------------------------------------------------------------- content errors


def write_quiz(tmp_path: Path, text: str) -> Path:
    return write_sample_quiz(tmp_path, text)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            """
            id: q
            title: T
            select:
              - ids: [kl-role, kl-rol]
            """,
            "sample.quiz.yaml:4:20: select.0.ids.1: no question with id 'kl-rol' in the bank; did you mean 'kl-role'?",
        ),
        (
            """
            id: q
            title: T
            selct: []
            """,
            "sample.quiz.yaml:3:1: selct: unknown field 'selct'; did you mean 'select'?",
        ),
        (
            """
            id: q
            title: T
            select:
              - topics: [kl-divergence]
                count: 5
            """,
            "select.0: this entry asks for 5 question(s) but only 2 match",
        ),
        (
            """
            id: q
            title: T
            select:
              - ids: [kl-role]
            points: {latent-shape: 3}
            """,
            "points.latent-shape: 'latent-shape' is not selected by this quiz",
        ),
        (
            """
            id: q
            title: T
            select:
              - ids: [kl-role]
                count: 1
            """,
            "select.0: an entry lists 'ids' or filters",
        ),
        (
            """
            id: q
            title: T
            time_limit_min: 0
            select:
              - ids: [kl-role]
            """,
            "sample.quiz.yaml:3:17: time_limit_min: ",
        ),
        ("[1, 2]", "a quiz spec is a mapping"),
        ("id: q\ntitle: [unclosed\n", "YAML syntax error"),
    ],
)
def test_quiz_spec_errors_are_located(sample: dict[str, Path], tmp_path: Path, spec: str, expected: str) -> None:
    quiz = write_quiz(tmp_path, spec)
    code, output = build("--bank", sample["bank"], "--quiz", quiz, "-o", tmp_path / "x.html")
    assert code == 1, output
    assert expected in output, output
    assert not (tmp_path / "x.html").exists()


def test_per_topic_draws_are_seeded(sample: dict[str, Path], tmp_path: Path) -> None:
    quiz = write_quiz(
        tmp_path,
        """
        id: drawn
        title: Drawn
        select:
          - topics: [kl-divergence, reparameterization]
            per_topic: 1
            kinds: [mcq, numeric, short_answer]
        """,
    )
    chosen = []
    for seed in range(6):
        out = tmp_path / f"{seed}.html"
        assert build("--bank", sample["bank"], "--quiz", quiz, "--seed", str(seed), "-o", out)[0] == 0
        chosen.append(tuple(sorted(i["id"] for i in page_data(out.read_text(encoding="utf-8"))["items"])))
    assert all(len(c) == 2 for c in chosen)
    assert len(set(chosen)) > 1


def test_bad_formula_is_a_build_error_naming_the_question(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text(
        textwrap.dedent(
            r"""
            - id: broken-math
              kind: shape
              topics: [shapes]
              difficulty: beginner
              source: original
              prompt: What is the shape of $\mathbf{z}$?
              answer: [2, 3]
              explanation: Because $\notacommand{x}$ says so.
            """
        ),
        encoding="utf-8",
    )
    code, output = build("--bank", bank, "--mode", "exam", "-o", tmp_path / "exam.html")
    assert code == 0  # the exam never renders the explanation
    code, output = build("--bank", bank, "--mode", "key", "-o", tmp_path / "key.html")
    assert code == 1
    assert "question 'broken-math', field 'explanation'" in output and r"\notacommand" in output
    assert not (tmp_path / "key.html").exists()


def test_invalid_bank_is_reported_not_rendered(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text("- id: Bad Id\n  kind: shape\n", encoding="utf-8")
    code, output = build("--bank", bank, "-o", tmp_path / "x.html")
    assert code == 1
    assert "the bank has" in output and "q.yaml:1:" in output


def test_whole_bank_in_bank_order_through_the_real_cli(sample: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bank.html"
    result = run_vaequiz("build", "--bank", sample["bank"], "--mode", "practice", "-o", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (practice" in result.stdout
    ids = [i["id"] for i in page_data(out.read_text(encoding="utf-8"))["items"]]
    bank = load_bank(sample["bank"])
    assert ids == [q.id for q in bank.questions if q.kind != "flashcard"]


def test_example_quiz_spec_is_valid() -> None:
    from vaequiz.render.quiz_spec import load_quiz_spec

    spec, _ = load_quiz_spec(Path(__file__).resolve().parent.parent / "question_bank" / "vae-week.quiz.yaml")
    assert spec.id == "vae-week" and spec.select


def test_missing_quiz_file_and_unwritable_output_are_usage_errors(sample: dict[str, Path], tmp_path: Path) -> None:
    code, output = build("--bank", sample["bank"], "--quiz", tmp_path / "nope.quiz.yaml", "-o", tmp_path / "x.html")
    assert code == 2 and "nope.quiz.yaml does not exist" in output
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    code, output = build("--bank", sample["bank"], "-o", blocker / "x.html")
    assert code == 2 and "cannot write" in output and "Traceback" not in output


def test_student_id_cannot_break_out_of_the_page(sample: dict[str, Path], tmp_path: Path) -> None:
    hostile = '</script><script>alert(1)</script><!--'
    out = tmp_path / "x.html"
    code, output = build("--bank", sample["bank"], "--quiz", sample["quiz"], "--student", hostile, "-o", out)
    assert code == 0, output
    html = out.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html
    assert page_data(html)["student"] == hostile
    assert check_structure(html) == []


def test_exam_of_the_bundled_bank_reveals_none_of_its_key_material(tmp_path: Path) -> None:
    """The grep-able guarantee on the real bank: explanations, hints, model answers, feedback,
    mutants and reference solutions never reach an exam page."""
    from tests.conftest import BUNDLED_BANK
    from vaequiz.render.markdown import render_markdown

    out = tmp_path / "exam.html"
    code, output = build("--bank", BUNDLED_BANK, "--mode", "exam", "-o", out)
    assert code == 0, output
    html = out.read_text(encoding="utf-8")
    bank = load_bank(BUNDLED_BANK)
    shown_code = "\n".join(
        (o.code or "") for q in bank.questions for o in getattr(q, "options", [])
    ) + "\n".join(q.text + (getattr(q, "starter", None) or "") for q in bank.questions)

    def plain(markdown: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<math.*?</math>|<[^>]+>", " ", render_markdown(markdown))).strip()

    page_text = re.sub(r"\s+", " ", re.sub(r"<math.*?</math>|<[^>]+>", " ", html))
    shown_text = " ".join(
        [plain(q.text) for q in bank.questions]
        + [plain(o.text) for q in bank.questions for o in getattr(q, "options", []) if o.text]
        + [plain(f"```python\n{o.code}\n```") for q in bank.questions for o in getattr(q, "options", []) if o.code]
    )
    for question in bank.questions:
        secrets = [question.explanation, question.hint, getattr(question, "model_answer", None)]
        secrets += [o.feedback for o in getattr(question, "options", [])]
        secrets += [m.why for m in getattr(question, "mutants", [])]
        for secret in filter(None, secrets):
            snippet = plain(secret)[:60]
            if len(snippet) >= 20 and snippet not in shown_text:
                assert snippet not in page_text, f"{question.id}: {snippet!r} is on the exam page"
        for source in [getattr(question, "reference", None)] + [m.code for m in getattr(question, "mutants", [])]:
            if not source or source.strip() in shown_code:
                continue  # the same code is shown by another question's text or options
            assert render_code(source) not in html, f"{question.id}: code block on the exam page"
            for line in source.splitlines():
                line = line.strip()
                if len(line) >= 25 and line not in shown_code:
                    escaped = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    assert line not in html and escaped not in page_text, f"{question.id}: {line!r}"
