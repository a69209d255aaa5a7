"""Feedback pages a student can use, through the real CLI: `vaequiz build` makes each student's
page, sheets are saved as that page saves them, `vaequiz grade-sheets` writes the feedback
pages, and the tests read the HTML.

- MCQs carry the letters the student saw, questions the number and order of their page, the
  page the quiz title, and nothing internal (question ids, kind names).
- The quiz spec's `feedback` options decide what is revealed; defaults depend on the mode.
- Code answers: line numbers, each error once, the known mistake (mutant) an answer behaves
  like, and hints that name the given a hard-coded size should come from.
"""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BUNDLED_BANK, REPO, run_vaequiz
from tests.sheet_support import kl_why_question, results_by_pair, write_bank, write_sheets

CORPUS = REPO / "tests" / "corpus"

BANK = """
- id: kl-pulls-to-prior
  kind: mcq
  topics: [vae]
  difficulty: beginner
  source: original
  stem: Which term pulls the posterior towards the prior?
  options:
    - {label: A, text: the KL term}
    - {label: B, text: the reconstruction term, feedback: "It measures how well x is rebuilt."}
    - {label: C, text: the learning rate}
    - {label: D, text: the batch size}
  answer: A
  explanation: The KL divergence to the prior regularises the encoder.
- id: decoder-output
  kind: mcq
  topics: [vae]
  difficulty: beginner
  source: original
  stem: Which activation turns decoder outputs into pixel probabilities?
  options:
    - {label: A, text: ReLU}
    - {label: B, text: Tanh}
    - {label: C, text: Sigmoid}
    - {label: D, text: None at all}
  answer: C
  explanation: A sigmoid maps every real number into (0, 1).
- id: z-batch-shape
  kind: shape
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: Shape of z for 64 inputs and a 20-dimensional latent?
  answer: [64, 20]
  explanation: Batch by latent size.
- id: kl-zero
  kind: numeric
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: KL of N(0, 1) from itself?
  answer: 0
  tolerance: 0.001
  explanation: A distribution has zero divergence from itself.
"""


class Page(HTMLParser):
    """The parts of a feedback page the tests read: title, h1, and per question section its
    heading, option lines, problem lines, code lines and the rest of its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1 = ""
        self.sections: list[dict[str, object]] = []
        self._stack: list[str] = []
        self._classes: list[str] = []
        self._open: dict[str, list[str]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = dict(attrs).get("class") or ""
        self._stack.append(tag)
        self._classes.append(classes)
        if tag == "section":
            self.sections.append({"h2": "", "options": [], "problems": [], "code": [], "text": "", "mistake": "", "hints": []})
        if tag == "li" and self.sections:
            parent = self._classes[-2] if len(self._classes) > 1 else ""
            kind = {"options": "options", "problems": "problems", "code-lines": "code"}.get(parent)
            if kind:
                self.sections[-1][kind].append("")  # type: ignore[union-attr]
                self._open = {"li": [kind]}
        if tag == "p" and self.sections and classes in ("mistake", "hint"):
            if classes == "hint":
                self.sections[-1]["hints"].append("")  # type: ignore[union-attr]
            self._open = {"p": [classes]}

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            popped = self._stack.pop()
            self._classes.pop()
            if popped in self._open:
                self._open = {}
            if popped == tag:
                break

    def handle_data(self, data: str) -> None:
        if "title" in self._stack:
            self.title += data
        if "h1" in self._stack:
            self.h1 += data
        if not self.sections or "section" not in self._stack:
            return
        section = self.sections[-1]
        section["text"] = str(section["text"]) + data
        if "h2" in self._stack:
            section["h2"] = str(section["h2"]) + data
        for kind in self._open.get("li", []):
            items = section[kind]
            items[-1] += data  # type: ignore[index]
        for kind in self._open.get("p", []):
            if kind == "mistake":
                section["mistake"] = str(section["mistake"]) + data
            else:
                section["hints"][-1] += data  # type: ignore[index]

    def question(self, number: int) -> dict[str, object]:
        found = [s for s in self.sections if re.match(rf"\s*Question {number}\b", str(s["h2"]))]
        assert len(found) == 1, [s["h2"] for s in self.sections]
        return found[0]


def squash(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def build_page(bank: Path, quiz: Path, student: str, tmp_path: Path, mode: str = "exam") -> dict:
    """Build the student's page with the real CLI and return the data its script saves from."""
    page = tmp_path / f"{student}-{mode}.html"
    done = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "--mode", mode, "--student", student, "-o", page)
    assert done.returncode == 0, done.stderr
    found = re.search(r'<script type="application/json" id="quiz-data">(.*?)</script>', page.read_text(), re.S)
    assert found
    return json.loads(found.group(1))


def saved_sheet(data: dict, answers: dict[str, str], *, legacy: bool = False) -> dict:
    """The sheet the page's Save button writes (templates/quiz.js); ``legacy``: as pages before
    mode and order were saved wrote it."""
    sheet = {"student": data["student"], "quiz": data["quiz"], "variant": data["variant"], "labels": data["labels"], "answers": answers}
    if not legacy:
        sheet |= {"mode": data["mode"], "order": [item["id"] for item in data["items"]]}
    return sheet


def shown_letter(data: dict, question: str, bank_label: str) -> str:
    return next(shown for shown, bank in data["labels"][question].items() if bank == bank_label)


def grade(tmp_path: Path, bank: Path, quiz: Path | None, *sheets: dict, name: str = "out") -> Path:
    paths = write_sheets(tmp_path / f"{name}-sheets", list(sheets))
    out = tmp_path / name
    extra = ["--quiz", quiz] if quiz else []
    done = run_vaequiz("grade-sheets", *paths, "--out", out, "--bank", bank, "--workers", "2", *extra)
    assert done.returncode == 0, done.stderr
    return out / "feedback"


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return write_bank(tmp_path, BANK)


def write_quiz(folder: Path, feedback: str = "") -> Path:
    quiz = folder / "week.quiz.yaml"
    quiz.write_text(
        "id: week-3\ntitle: 'Week 3: the ELBO & friends'\nseed: 11\nshuffle_questions: true\n"
        "select:\n  - ids: [kl-pulls-to-prior, decoder-output, z-batch-shape, kl-zero]\n" + feedback
    )
    return quiz


def test_mcq_letters_numbering_and_title_are_the_students(bank: Path, tmp_path: Path) -> None:
    quiz = write_quiz(bank)
    students = ["ada", "bo", "cy", "di"]
    pages = {s: build_page(bank, quiz, s, tmp_path) for s in students}
    # Some student must see the options of the first MCQ in another order than the bank's,
    # and the questions in another order: else this test could not tell the letters apart.
    assert any(d["labels"]["kl-pulls-to-prior"]["A"] != "A" for d in pages.values())
    assert len({tuple(i["id"] for i in d["items"]) for d in pages.values()}) > 1
    sheets = []
    for student, data in pages.items():
        answers = {
            "kl-pulls-to-prior": shown_letter(data, "kl-pulls-to-prior", "B"),  # wrong: reconstruction
            "decoder-output": shown_letter(data, "decoder-output", "C"),  # right: sigmoid
            "z-batch-shape": "(64, 20)",
        }
        # Half the class saved from pages that did not yet record mode and order: the
        # grader re-derives the order from the quiz and the student.
        sheets.append(saved_sheet(data, answers, legacy=student in ("cy", "di")))
    feedback = grade(tmp_path, bank, None, *sheets)  # the bank's own week.quiz.yaml is found by id
    for student, data in pages.items():
        html = (feedback / f"{student}.html").read_text()
        page = Page(html)
        assert page.h1 == "Week 3: the ELBO & friends" and "Week 3: the ELBO &amp; friends" in html
        assert "Week 3" in page.title
        order = [item["id"] for item in data["items"]]
        kl = page.question(order.index("kl-pulls-to-prior") + 1)
        options = [squash(o) for o in kl["options"]]
        # Options listed A, B, C, D as the student saw them, each with its own text.
        for shown, bank_label in sorted(data["labels"]["kl-pulls-to-prior"].items()):
            text = {"A": "the KL term", "B": "the reconstruction term", "C": "the learning rate", "D": "the batch size"}[bank_label]
            line = options["ABCD".index(shown)]
            assert line.startswith(f"{shown} {text}"), (student, options)
        chosen = [o for o in options if "your answer" in o]
        assert chosen == [o for o in options if o.startswith(shown_letter(data, "kl-pulls-to-prior", "B") + " the reconstruction term")]
        assert "It measures how well x is rebuilt." in chosen[0], "the chosen option's feedback"
        keyed = [o for o in options if "correct answer" in o]
        assert len(keyed) == 1 and keyed[0].startswith(shown_letter(data, "kl-pulls-to-prior", "A") + " the KL term")
        decoder = page.question(order.index("decoder-output") + 1)
        right = [squash(o) for o in decoder["options"] if "your answer" in squash(o)]
        assert right == [f"{shown_letter(data, 'decoder-output', 'C')} Sigmoid your answer correct answer"]
        shape = page.question(order.index("z-batch-shape") + 1)
        assert "(64, 20)" in str(shape["text"])
        # Nothing internal: no question ids, kind names or bank letters used as ids.
        for internal in ("kl-pulls-to-prior", "decoder-output", "z-batch-shape", "kl-zero", "mcq", "numeric", "(shape)"):
            assert internal not in html, (student, internal)
        headings = [int(squash(s["h2"]).split()[1]) for s in page.sections]
        assert headings == sorted(order.index(q) + 1 for q in answers), "numbered as on the student's page"


def test_what_is_revealed_follows_the_quiz_spec(bank: Path, tmp_path: Path) -> None:
    data = build_page(bank, write_quiz(bank), "ada", tmp_path)
    wrong = {"kl-pulls-to-prior": shown_letter(data, "kl-pulls-to-prior", "B"), "z-batch-shape": "(20, 64)", "kl-zero": "1"}
    order = [item["id"] for item in data["items"]]

    def page(feedback: str, name: str, mode: str = "exam") -> tuple[str, Page]:
        folder = tmp_path / f"spec-{name}"
        folder.mkdir()
        quiz = write_quiz(folder, feedback)
        sheet = saved_sheet(data, wrong) | {"mode": mode}
        html = (grade(tmp_path, bank, quiz, sheet, name=f"out-{name}") / "ada.html").read_text()
        return html, Page(html)

    # Exam default: the correct answer and the explanation, after grading.
    html, default = page("", "default")
    kl = default.question(order.index("kl-pulls-to-prior") + 1)
    assert any("correct answer" in o for o in kl["options"])
    assert "The KL divergence to the prior regularises the encoder." in html
    assert "(64, 20)" in str(default.question(order.index("z-batch-shape") + 1)["text"]), "the shape key"
    # key: never hides every key and, by default, the explanations that give it away.
    html, never = page("feedback: {key: never}\n", "never")
    kl = never.question(order.index("kl-pulls-to-prior") + 1)
    assert not any("correct answer" in o for o in kl["options"]) and any("your answer" in o for o in kl["options"])
    assert "Correct answer" not in html and "regularises the encoder" not in html and "(64, 20)" not in html
    assert "It measures how well x is rebuilt." not in html
    # Explanations may be released without the key.
    html, explained = page("feedback: {key: never, explanations: true}\n", "explained")
    assert "regularises the encoder" in html and "Correct answer" not in html
    # Explicit after_grading with explanations off.
    html, bare = page("feedback:\n  key: after_grading\n  explanations: false\n", "bare")
    assert "Correct answer" in html and "regularises the encoder" not in html


def test_feedback_options_are_checked_with_located_messages(bank: Path, tmp_path: Path) -> None:
    quiz = write_quiz(bank, "feedback:\n  key: later\n  solutions: true\n  explanation: true\n")
    done = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "-o", tmp_path / "x.html")
    assert done.returncode == 1
    assert re.search(r"week\.quiz\.yaml:8:\d+: feedback\.key: .*'never'.*'after_grading'", done.stderr), done.stderr
    assert re.search(r"week\.quiz\.yaml:10:\d+: feedback\.explanation: .*did you mean 'explanations'", done.stderr), done.stderr
    quiz.write_text(quiz.read_text().replace("key: later", "key: never").replace("  explanation: true\n", ""))
    done = run_vaequiz("build", "--bank", bank, "--quiz", quiz, "-o", tmp_path / "x.html")
    assert done.returncode == 1 and "'solutions: true' shows a correct answer" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


CODE_QUIZ = """id: code-week
title: Code week
select:
  - ids: [reparameterization-trick, vae-loss, mnist-decoder-bce, kl-divergence, codebook-flatten]
"""

NAME_ERROR = "std = torch.exp(0.5 * logvar)\nz = mu + torch.randn_like(sd) * std\n"

CUSTOM_DECODER = """class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(20, 256)
        self.out = nn.Linear(256, 784)

    def forward(self, z):
        return torch.sigmoid(self.out(torch.relu(self.hidden(z))))

decoder = Decoder()
"""

FIXED_LATENT_KL = "ones = torch.ones(4, 3)\nkl = -0.5 * torch.sum(ones + logvar - mu.pow(2) - logvar.exp())\n"


def test_code_feedback_line_numbers_errors_once_known_mistakes_and_size_hints(tmp_path: Path) -> None:
    quiz = tmp_path / "code.quiz.yaml"
    quiz.write_text(CODE_QUIZ)
    order = ["reparameterization-trick", "vae-loss", "mnist-decoder-bce", "kl-divergence", "codebook-flatten"]

    def sheet(student: str, answers: dict[str, str], mode: str = "exam") -> dict:
        return {"student": student, "quiz": "code-week", "mode": mode, "order": order, "answers": answers}

    ada = sheet("ada", {
        "reparameterization-trick": NAME_ERROR,
        "vae-loss": (CORPUS / "vae-loss" / "fail_beta_on_recon.py").read_text(),
        "mnist-decoder-bce": (CORPUS / "mnist-decoder-bce" / "fail_hardcoded_20.py").read_text(),
        "kl-divergence": (CORPUS / "kl-divergence" / "fail_missing_one.py").read_text(),
        "codebook-flatten": (CORPUS / "codebook-flatten" / "fail_reshape_without_permute.py").read_text(),
    })
    bo = sheet("bo", {
        "vae-loss": (CORPUS / "vae-loss" / "pass_functional.py").read_text(),
        "mnist-decoder-bce": CUSTOM_DECODER,
        "kl-divergence": FIXED_LATENT_KL,
    })
    cy = sheet("cy", {"kl-divergence": FIXED_LATENT_KL}, mode="practice")
    feedback = grade(tmp_path, BUNDLED_BANK, quiz, ada, bo, cy)
    page = Page((feedback / "ada.html").read_text())

    # Line numbers, and the NameError (raised on every hidden input, failing every check) once.
    reparam = page.question(1)
    assert [squash(line) for line in reparam["code"]] == ["std = torch.exp(0.5 * logvar)", "z = mu + torch.randn_like(sd) * std"]
    problems = [squash(p) for p in reparam["problems"]]
    assert len(problems) == 1 and "NameError: name 'sd' is not defined (line 2)" in problems[0], problems
    assert squash(reparam["text"]).count("NameError") == 1
    assert "fails: shape of z" in problems[0]

    # The known mistake, named by its mutant's why.
    vae_loss = page.question(2)
    assert squash(vae_loss["mistake"]) == (
        "This looks like a common mistake: Weights the reconstruction term by beta instead of the KL term."
    )

    # A hard-coded latent size: the hint names the given; the mutant for it matches too.
    decoder = page.question(3)
    assert len(decoder["problems"]) == 1, "one matmul error, not one per hidden input"
    assert any("latent_dim" in h and "20" in h for h in decoder["hints"]), decoder["hints"]
    assert "Hard-codes a latent size of 20" in str(decoder["mistake"])

    # A failing answer that is no known mistake gets no such claim.
    kl = page.question(4)
    assert kl["mistake"] == "" and "value of kl" in squash(" ".join(map(str, kl["problems"])))
    assert page.question(5)["mistake"], "codebook-flatten: reshape without permute is a known mistake"
    assert "A correct solution" not in (feedback / "ada.html").read_text(), "exam: no reference solutions"
    practice = (feedback / "cy.html").read_text()
    assert "A correct solution" in practice and "logvar.exp()" in practice, "practice shows everything"

    # The size hint is general: a custom module with the size in __init__, and a tensor size.
    other = Page((feedback / "bo.html").read_text())
    custom = other.question(3)
    assert custom["mistake"] == "", "256 hidden units: no mutant behaves like this one"
    assert any("latent_dim" in h and "size 20" in h for h in custom["hints"]), custom["hints"]
    fixed = other.question(4)
    assert any("size 3" in h and "mu.shape[1]" in h for h in fixed["hints"]), fixed["hints"]
    assert other.question(2)["problems"] == [] and other.question(2)["hints"] == []


def test_vaequiz_grade_names_the_known_mistake(tmp_path: Path) -> None:
    done = run_vaequiz("grade", "vae-loss", CORPUS / "vae-loss" / "fail_beta_on_recon.py", "--json", "--bank", BUNDLED_BANK)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["mistake"] == "Weights the reconstruction term by beta instead of the KL term."
    right = run_vaequiz("grade", "vae-loss", CORPUS / "vae-loss" / "pass_functional.py", "--bank", BUNDLED_BANK)
    assert right.returncode == 0 and "common mistake" not in right.stdout


@settings(max_examples=60, deadline=None)
@given(
    shown=st.permutations(["A", "B", "C", "D"]),
    picked=st.sets(st.sampled_from("ABCD"), max_size=4),
    multiple=st.booleans(),
    reveal=st.booleans(),
)
def test_options_carry_the_letters_the_student_saw(shown: list[str], picked: set[str], multiple: bool, reveal: bool) -> None:
    """Whatever the shuffle and the choice, each option line names the student's letter for it,
    the chosen options are the ones the student clicked, and the key is marked only if revealed."""
    from vaequiz.bank.models import MultipleChoice
    from vaequiz.grading.feedback import item_view
    from vaequiz.grading.models import ItemResult
    from vaequiz.render.quiz_spec import FeedbackOptions

    question = MultipleChoice.model_validate({
        "id": "q", "kind": "mcq", "topics": ["t"], "difficulty": "beginner", "source": "original",
        "stem": "Pick", "explanation": "Because.", "multiple": multiple,
        "options": [{"label": b, "text": f"text {b}"} for b in "ABCD"],
        "answer": ["A", "C"] if multiple else "C",
    })
    labels = dict(zip("ABCD", shown))  # shown letter -> bank letter
    clicked = sorted(picked) if multiple else sorted(picked)[:1]
    answer = [labels[c] for c in clicked]
    item = ItemResult(
        student="s", question="q", kind="mcq", passed=False, score=0, points=0, max_points=1,
        answer=answer if multiple else (answer[0] if answer else None), labels=labels,
    )
    policy = FeedbackOptions(key="after_grading" if reveal else "never").resolve("exam")
    view = item_view(1, item, question, policy)
    assert [o.letter for o in view.options] == ["A", "B", "C", "D"]
    assert all(str(o.html) == f"text {labels[o.letter]}" for o in view.options)
    assert sorted(o.letter for o in view.options if o.chosen) == clicked
    keyed = sorted(o.letter for o in view.options if o.correct)
    expected = sorted(s for s, b in labels.items() if b in question.answer) if reveal else []
    assert keyed == expected
    assert all(o.correct is None for o in view.options) or reveal


SIZE_BANK = """
- id: prior-mean
  kind: code
  topics: [vae]
  difficulty: beginner
  source: original
  prompt: Bind `prior_mean`, the mean of the prior over a latent of size `latent_dim` (20 in the notes).
  explanation: The prior is N(0, I).
  given:
    latent_dim: {type: int, value: latent_dim}
  expect: [prior_mean]
  reference: prior_mean = torch.zeros(latent_dim)
  trials:
    - bind: {latent_dim: 20}
    - bind: {latent_dim: 12}
  checks:
    - {check: shape, of: prior_mean, is: [[latent_dim]]}
    - {check: close, of: prior_mean}
"""


def test_size_hint_from_trials_that_pass_only_at_the_written_size(tmp_path: Path) -> None:
    """No error at all: the answer passes where latent_dim is 20 and fails elsewhere."""
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "q.yaml").write_text(SIZE_BANK)
    sheets = [
        {"student": "ada", "answers": {"prior-mean": "prior_mean = torch.zeros(20)\n"}},
        {"student": "bo", "answers": {"prior-mean": "prior_mean = torch.ones(latent_dim) * 2\n"}},
    ]
    feedback = grade(tmp_path, bank, None, *sheets)
    ada = Page((feedback / "ada.html").read_text()).question(1)
    assert any("size 20" in h and "latent_dim" in h and "12 and 20" in h for h in ada["hints"]), ada["hints"]
    assert "prior_mean has shape (20,)" in squash(" ".join(map(str, ada["problems"])))
    bo = Page((feedback / "bo.html").read_text()).question(1)
    assert bo["hints"] == [], "2 is a wrong value, not a size: no trial passes"


# --------------------------------------------------------------------------- regrade, review, sheets

SHORT_ANSWER = kl_why_question(
    """\
    - {name: regularises, phrasings: [regularise, regularisation]}
    - name: pulls the posterior toward the prior
      phrasings: ["pull ... toward ... prior", "close to ... prior"]
    - {name: standard normal prior, phrasings: [standard normal, unit gaussian]}
    - {name: prevents memorising, phrasings: ["cannot memorise", "stop ... overfit", "prevent ... overfit"]}
"""
)
BORDERLINE = "It regularises the latent space and keeps the codes close to the prior."


def page_view(html: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """What a student reads of their page's layout: the title, and per question its heading
    number with its option lines (letters and texts, without the tags)."""
    page = Page(html)
    layout = [
        (squash(s["h2"]).split()[1], [squash(o).split(" your answer")[0].split(" correct answer")[0] for o in s["options"]])  # type: ignore[union-attr]
        for s in page.sections
    ]
    return page.h1, layout


def test_regrade_and_review_rewrite_pages_in_the_students_terms(bank: Path, tmp_path: Path) -> None:
    (bank / "short.yaml").write_text(SHORT_ANSWER)
    quiz = bank / "week.quiz.yaml"
    quiz.write_text(
        "id: week-3\ntitle: Week 3\nseed: 11\nshuffle_questions: true\n"
        "select:\n  - ids: [kl-pulls-to-prior, decoder-output, z-batch-shape, kl-why]\n"
    )
    pages = {s: build_page(bank, quiz, s, tmp_path) for s in ("ada", "bo", "cy")}
    sheets = [
        saved_sheet(
            data,
            {
                "kl-pulls-to-prior": shown_letter(data, "kl-pulls-to-prior", "B"),
                "decoder-output": shown_letter(data, "decoder-output", "C"),
                "z-batch-shape": "(64, 20)",
                "kl-why": BORDERLINE,
            },
        )
        for data in pages.values()
    ]
    feedback = grade(tmp_path, bank, None, *sheets)
    out = feedback.parent
    first = {s: page_view((feedback / f"{s}.html").read_text()) for s in pages}
    stored = results_by_pair(out)
    # The layout differs between students, the fingerprint (what decided the grade) does not.
    assert len({json.dumps(stored[(s, "kl-pulls-to-prior")]["labels"], sort_keys=True) for s in pages}) > 1
    assert len({stored[(s, "kl-pulls-to-prior")]["fingerprint"] for s in pages}) == 1
    for student, data in pages.items():
        order = [item["id"] for item in data["items"]]
        assert first[student][0] == "Week 3"
        assert [n for n, _ in first[student][1]] == [str(i) for i in range(1, 5)]
        assert stored[(student, "kl-why")]["number"] == order.index("kl-why") + 1
    # A rerun with the same sheets keeps every result: layouts are not part of the fingerprint.
    again = run_vaequiz("grade-sheets", *sorted((tmp_path / "out-sheets").glob("*.json")), "--out", out, "--bank", bank)
    assert again.returncode == 0 and "graded 0 answer(s), 12 already in" in again.stdout, again.stdout

    # regrade from results.jsonl alone: every page keeps the student's letters and numbering.
    done = run_vaequiz("regrade", out, "--bank", bank, "--all", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "12 regraded" in done.stdout
    after = results_by_pair(out)
    for pair, item in stored.items():
        assert (after[pair]["number"], after[pair]["labels"], after[pair]["mode"]) == (item["number"], item["labels"], item["mode"])
    for student in pages:
        html = (feedback / f"{student}.html").read_text()
        assert page_view(html) == first[student], student
        assert "A teacher will confirm this grade." in html and "kl-why" not in html

    # review: the teacher's override lands on the same student-terms page.
    done = run_vaequiz("review", out, "--bank", bank, "--reviewer", "ms-t", input="y\n\ny\ny\nq\n")
    assert done.returncode == 0, done.stderr
    assert "stored 1 override(s)" in done.stdout
    html = (feedback / "ada.html").read_text()
    assert page_view(html) == first["ada"]
    assert "Reviewed by ms-t." in html and "A teacher will confirm this grade." not in html
    ada = Page(html).question(after[("ada", "kl-why")]["number"])
    assert "found &#39;regularises&#39;" in html and "regularises" in str(ada["text"]), "evidence per concept"
    assert "A teacher will confirm this grade." in (feedback / "bo.html").read_text()
    with (out / "grades.csv").open() as handle:
        rows = {row[0]: row for row in csv.reader(handle)}
    assert rows["ada"][-1] == "kl-why" and rows["bo"][-2] == "kl-why"


def test_lost_labels_are_rederived_for_the_page_too(bank: Path, tmp_path: Path) -> None:
    quiz = write_quiz(bank)
    # a student who saw the keyed option under another letter than the bank's
    data = next(
        d for d in (build_page(bank, quiz, s, tmp_path) for s in ("ada", "bo", "cy", "di"))
        if shown_letter(d, "kl-pulls-to-prior", "A") != "A"
    )
    picked = shown_letter(data, "kl-pulls-to-prior", "A")
    sheet = saved_sheet(data, {"kl-pulls-to-prior": picked})
    del sheet["labels"]  # an editor dropped them; the variant id still proves quiz, seed and student
    feedback = grade(tmp_path, bank, quiz, sheet)
    order = [item["id"] for item in data["items"]]
    options = [squash(o) for o in Page((feedback / f"{data['student']}.html").read_text()).question(order.index("kl-pulls-to-prior") + 1)["options"]]  # type: ignore[union-attr]
    assert [o for o in options if "your answer" in o] == [f"{picked} the KL term your answer correct answer"]


def test_bad_mode_or_order_costs_only_the_numbering(bank: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "x.json"
    sheet.write_text(json.dumps({"student": "x", "mode": "flashcards", "order": "kl-zero", "answers": {"kl-zero": "0"}}))
    out = tmp_path / "out"
    done = run_vaequiz("grade-sheets", sheet, "--out", out, "--bank", bank)
    assert done.returncode == 0, done.stderr
    assert "mode ignored: 'flashcards' is not one of exam, practice" in done.stderr
    assert "order ignored: not a list of distinct question ids" in done.stderr
    page = Page((out / "feedback" / "x.html").read_text())
    assert [squash(s["h2"]) for s in page.sections] == ["Question 1 right 1 / 1 points"]
