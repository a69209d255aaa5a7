"""Built pages of the sample quiz in a real browser (Debian chromium through Playwright),
opened from file:// (harness: tests/browser_harness.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import expect
from typer.testing import CliRunner

from tests.browser_harness import MODES, OpenPage, axe_source, browser, open_page, serious_axe_violations  # noqa: F401 (fixtures)
from tests.conftest import run_vaequiz
from tests.test_render_sample import KEY_MARKERS, write_sample_bank, write_sample_quiz
from vaequiz.cli.app import app
from vaequiz.grading.models import AnswerSheet

pytestmark = pytest.mark.browser

STUDENT = "s-browser"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def known_to_grader(sheet: dict[str, Any]) -> dict[str, Any]:
    """The sheet without keys this version's AnswerSheet does not define (a grader that knows
    ``started_at`` and ``saved_at`` keeps them)."""
    return {k: v for k, v in sheet.items() if k in AnswerSheet.model_fields}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample quiz in every mode, an anonymous exam, and one baked for STUDENT."""
    folder = tmp_path_factory.mktemp("pages")
    bank = write_sample_bank(folder)
    quiz = write_sample_quiz(folder)
    runner = CliRunner()
    paths: dict[str, Path] = {"bank": bank, "folder": folder}
    jobs = {mode: ["--mode", mode] for mode in MODES}
    jobs["student-exam"] = ["--mode", "exam", "--student", STUDENT]
    for name, extra in jobs.items():
        out = folder / f"{name}.html"
        result = runner.invoke(app, ["build", "--bank", str(bank), "--quiz", str(quiz), *extra, "-o", str(out)])
        assert result.exit_code == 0, result.output
        paths[name] = out
    return paths


# --------------------------------------------------------------------------- loading, offline


@pytest.mark.parametrize("mode", MODES)
def test_mode_loads_offline_with_mathml_and_no_errors(built: dict[str, Path], open_page: Callable[..., OpenPage], mode: str) -> None:
    page = open_page(built[mode])
    page.page.wait_for_load_state("load")
    assert page.errors == []
    assert page.outside_requests() == []
    assert page.page.locator("math").count() > 0
    text = page.page.inner_text("body")
    assert "\\" not in text and "$" not in text, "LaTeX source is visible"
    if mode == "exam":
        content = page.page.content()
        assert not any(marker in content for marker in KEY_MARKERS)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("mode", MODES)
def test_axe_finds_no_serious_violation(
    built: dict[str, Path], open_page: Callable[..., OpenPage], axe_source: str, mode: str, scheme: str
) -> None:
    page = open_page(built[mode], scheme)
    if mode == "flashcards":
        page.page.emulate_media(reduced_motion="reduce")  # no flip animation half-way through
        page.page.click("#deck-card .flip")  # the deck with a card turned over
        page.page.click("#list-view")
        page.page.click("#show-all-cards")  # audit both faces of the cards
    if mode == "practice":
        page.page.locator("details.hint").first.evaluate("d => d.open = true")
    # Audit the settled page: a card mid-flip is half transparent, which axe reads as low contrast.
    page.page.evaluate("() => document.getAnimations().forEach(a => a.finish())")
    assert serious_axe_violations(page.page, axe_source) == []
    assert page.outside_requests() == [] and page.errors == []


def test_phone_width_has_no_horizontal_scroll(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    for mode in MODES:
        page = open_page(built[mode], width=360)
        overflow = page.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{mode} scrolls sideways by {overflow}px at 360px"


# --------------------------------------------------------------------------- answering


def shown_labels(data: dict[str, Any], question_id: str, bank_labels: list[str]) -> list[str]:
    inverse = {bank: shown for shown, bank in data["labels"][question_id].items()}
    return sorted(inverse[b] for b in bank_labels)


CODE_ANSWER = "std = torch.exp(0.5 * logvar)\nz = mu + torch.randn_like(std) * std"
SHORT_ANSWER = "The noise epsilon is separate, so the sample is differentiable and gradients flow."


def answer_everything(page: OpenPage) -> None:
    """Answer each kind through the UI: some right, some wrong, so scores are distinguishable."""
    p = page.page
    data = page.data()
    for label in shown_labels(data, "kl-role", ["A"]):
        p.check(f"#kl-role-option-{label}")  # right
    for label in shown_labels(data, "vae-true-facts", ["A"]):
        p.check(f"#vae-true-facts-option-{label}")  # wrong: misses B
    p.check(f"#sampling-code-option-{shown_labels(data, 'sampling-code', ['A'])[0]}")  # right
    p.fill("#answer-latent-shape", "torch.Size([64, 20])")  # right
    p.fill("#answer-kl-value", "0.5")  # wrong
    p.fill("#answer-why-reparameterize", SHORT_ANSWER)
    code = p.locator("#answer-reparam-code")
    code.click()
    p.keyboard.press("Control+A")
    p.keyboard.press("Delete")
    p.keyboard.type(CODE_ANSWER)


def test_answers_persist_and_save_as_a_gradable_sheet(
    built: dict[str, Path], open_page: Callable[..., OpenPage], tmp_path: Path
) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    progress = p.locator("#progress")
    assert progress.text_content() == "7 of 7 questions unanswered"
    answer_everything(page)
    assert progress.text_content() == "All 7 questions answered"

    p.reload()
    assert p.locator("#answer-latent-shape").input_value() == "torch.Size([64, 20])"
    assert p.locator("#answer-reparam-code").input_value() == CODE_ANSWER
    data = page.data()
    checked = p.locator("#q-kl-role input:checked").evaluate_all("els => els.map(e => e.value)")
    assert checked == shown_labels(data, "kl-role", ["A"])
    assert progress.text_content() == "All 7 questions answered"

    with p.expect_download() as download_info:
        p.click("#save-answers")
    download = download_info.value
    assert download.suggested_filename == f"sample-quiz-{STUDENT}.json"
    sheet_path = tmp_path / download.suggested_filename
    download.save_as(sheet_path)
    written = json.loads(sheet_path.read_text(encoding="utf-8"))
    assert ISO_UTC.fullmatch(written["started_at"]) and ISO_UTC.fullmatch(written["saved_at"])
    assert written["started_at"] <= written["saved_at"]
    sheet_path.write_text(json.dumps(known_to_grader(written)), encoding="utf-8")
    sheet = AnswerSheet.model_validate_json(sheet_path.read_text(encoding="utf-8"))
    assert (sheet.student, sheet.quiz, sheet.variant) == (STUDENT, "sample-quiz", data["variant"])
    assert sheet.labels == data["labels"]
    bank_answer = sheet.labels["vae-true-facts"][sheet.answers["vae-true-facts"][0]]
    assert bank_answer == "A"
    assert sheet.answers["reparam-code"] == CODE_ANSWER
    assert sheet.mode == "exam" and sheet.order == [item["id"] for item in data["items"]], "for feedback pages"
    assert page.outside_requests() == [] and page.errors == []

    out = tmp_path / "graded"
    result = run_vaequiz("grade-sheets", sheet_path, "--out", out, "--bank", built["bank"], "--workers", "1")
    assert result.returncode == 0, result.stderr
    scores = {
        row["question"]: row["score"]
        for row in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())
    }
    assert scores["kl-role"] == 1 and scores["sampling-code"] == 1 and scores["latent-shape"] == 1
    assert scores["vae-true-facts"] < 1 and scores["kl-value"] == 0
    assert scores["why-reparameterize"] == 1
    assert scores["reparam-code"] == 1
    feedback = (out / "feedback" / f"{STUDENT}.html").read_text(encoding="utf-8")
    facts = feedback.index(f"Question {sheet.order.index('vae-true-facts') + 1} ")
    chosen = sheet.answers["vae-true-facts"][0]
    assert re.search(rf'<li class="chosen"><strong>{chosen}</strong>', feedback[facts:]), "the letter the student clicked"


def test_anonymous_page_asks_for_the_student_first(built: dict[str, Path], open_page: Callable[..., OpenPage], tmp_path: Path) -> None:
    page = open_page(built["exam"])
    p = page.page
    assert p.locator("#q-latent-shape").get_attribute("inert") is not None  # nothing to answer yet
    p.click("#save-answers")
    assert p.locator("#save-message").text_content() == "Enter your name or student id first."
    assert p.evaluate("() => document.activeElement.id") == "student-id"
    p.click("#start-answering")
    assert p.locator("#student-help").text_content() == "Enter your name or student id first."
    p.fill("#student-id", "Ada Lovelace")
    p.keyboard.press("Enter")
    assert p.locator("#q-latent-shape").get_attribute("inert") is None
    p.fill("#answer-latent-shape", "(64, 20)")
    p.reload()  # the same tab remembers who is answering
    assert p.locator("#student-id").input_value() == "Ada Lovelace"
    assert p.locator("#answer-latent-shape").input_value() == "(64, 20)"
    with p.expect_download() as download_info:
        p.click("#save-answers")
    assert download_info.value.suggested_filename == "sample-quiz-Ada_Lovelace.json"
    sheet = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert sheet["student"] == "Ada Lovelace" and sheet["answers"] == {"latent-shape": "(64, 20)"}
    assert "6 unanswered" in p.locator("#save-message").text_content()


def test_storage_is_per_student_and_can_be_cleared(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    """On a shared lab computer the next student never sees the previous one's name or answers."""
    page = open_page(built["exam"])
    p = page.page
    p.fill("#student-id", "ada")
    p.click("#start-answering")
    p.fill("#answer-kl-value", "0.5")
    ben = page.new_tab()  # the next student opens the page
    assert ben.locator("#student-id").input_value() == ""
    assert ben.locator("#answer-kl-value").input_value() == ""
    ben.fill("#student-id", "ben")
    ben.click("#start-answering")
    assert ben.locator("#answer-kl-value").input_value() == ""
    ben.fill("#answer-kl-value", "7")
    questions: list[str] = []
    ben.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    ben.click("#switch-student")  # not downloaded yet: asks first
    assert questions and "not downloaded" in questions[0]
    ben.fill("#student-id", "ada")
    ben.click("#start-answering")
    assert ben.locator("#answer-kl-value").input_value() == "0.5"

    assert p.locator("#clear-answers").is_hidden()  # offered after saving
    with p.expect_download():
        p.click("#save-answers")
    p.once("dialog", lambda dialog: dialog.accept())
    p.click("#clear-answers")
    assert p.locator("#student-id").input_value() == ""
    assert p.locator("#answer-kl-value").input_value() == ""
    stored = p.evaluate("() => Object.keys(localStorage).filter(k => k.endsWith(':ada'))")
    assert stored == []
    # the other tab still showing ada forgets her answers too, so it cannot write them back
    expect(ben.locator("#answer-kl-value")).to_have_value("")
    expect(ben.locator("#student-help")).to_contain_text("removed from this browser in another tab")
    p.fill("#student-id", "ada")
    p.click("#start-answering")
    p.fill("#answer-latent-shape", "(1, 2)")  # an edit: the other tab sees this write
    ben.wait_for_timeout(300)
    assert p.locator("#answer-kl-value").input_value() == ""
    record = p.evaluate("() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith(':ada'))))")
    assert record["answers"].get("kl-value", {"value": None})["value"] in (None, "")
    assert page.errors == []


def test_code_box_tab_indents_and_escape_leaves(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    p = open_page(built["student-exam"]).page
    box = p.locator("#answer-reparam-code")
    box.click()
    p.keyboard.press("Control+A")
    p.keyboard.type("if True:\n")
    p.keyboard.press("Tab")
    p.keyboard.type("z = mu")
    assert box.input_value() == "if True:\n    z = mu"
    p.keyboard.press("Escape")
    p.keyboard.press("Tab")
    assert p.evaluate("() => document.activeElement.id") != "answer-reparam-code"
    box.focus()
    p.keyboard.press("Shift+Tab")
    assert p.evaluate("() => document.activeElement.id") != "answer-reparam-code"
    assert box.input_value() == "if True:\n    z = mu"


def test_practice_checks_answers_and_reveals_explanations(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    """A wrong answer gets its feedback and another try; the key and explanation come only
    after a correct answer or "Show answer"."""
    page = open_page(built["practice"])
    p = page.page
    data = page.data()
    explanation = p.locator("#reveal-kl-role")
    assert explanation.is_hidden()
    wrong = shown_labels(data, "kl-role", ["B"])[0]
    p.check(f"#kl-role-option-{wrong}")
    p.click('[data-check="kl-role"]')
    assert p.locator("#verdict-kl-role").text_content().startswith("Not correct")
    assert "try again" in p.locator("#verdict-kl-role").text_content()
    assert explanation.is_hidden()
    assert p.locator(f'#q-kl-role [data-feedback-for="{wrong}"]').is_visible()
    p.check(f"#kl-role-option-{shown_labels(data, 'kl-role', ['A'])[0]}")
    p.click('[data-check="kl-role"]')
    assert p.locator("#verdict-kl-role").text_content() == "Correct."
    assert explanation.is_visible()

    for label in shown_labels(data, "vae-true-facts", ["A", "C"]):
        p.check(f"#vae-true-facts-option-{label}")
    p.click('[data-check="vae-true-facts"]')
    assert p.locator("#verdict-vae-true-facts").text_content() == (
        "Not correct: 1 of your 2 ticks is right, and there are 2 correct options. Try again.")
    assert p.locator("#reveal-vae-true-facts").is_hidden()

    for text, verdict in (("[20, 64]", "Not correct: right numbers, wrong order"), ("(64, 21)", "Not correct: that is not"),
                          ("sixty", "Can't read this as a shape"), ("64 x 20", "Correct.")):
        p.fill("#answer-latent-shape", text)
        p.click('[data-check="latent-shape"]')
        assert p.locator("#verdict-latent-shape").text_content().startswith(verdict)
    p.fill("#answer-kl-value", "3")
    p.click('[data-check="kl-value"]')
    assert p.locator("#reveal-kl-value").is_hidden()
    p.click('[data-show-answer="kl-value"]')
    assert p.locator("#reveal-kl-value").is_visible()
    assert "Answer: 0" in p.locator("#reveal-kl-value").inner_text()

    reveal = p.locator('[data-reveal="why-reparameterize"]')
    assert reveal.is_disabled()
    p.fill("#answer-why-reparameterize", "my attempt")
    reveal.click()
    assert p.locator("#reveal-why-reparameterize").inner_text().count("SAMPLE-MODEL-ANSWER") == 1
    assert page.errors == []


def test_flashcards_flip_by_keyboard(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    p = open_page(built["flashcards"]).page
    p.click("#list-view")
    back = p.locator("#back-elbo-card")
    assert back.is_hidden()
    button = p.locator("#card-elbo-card .flip")
    button.focus()
    p.keyboard.press("Enter")
    assert back.is_visible() and button.get_attribute("aria-expanded") == "true"
    p.keyboard.press("Space")
    assert back.is_hidden() and button.get_attribute("aria-expanded") == "false"


def test_print_shows_the_key_and_hides_controls(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    p = open_page(built["flashcards"]).page
    p.emulate_media(media="print")
    assert p.locator("#back-elbo-card").is_visible()
    assert p.locator("#show-all-cards").is_hidden()
    pdf = p.pdf()
    assert pdf.startswith(b"%PDF")
    exam = open_page(built["exam"]).page
    exam.emulate_media(media="print")
    assert exam.locator("#save-answers").is_hidden()
    assert re.search(r"Question 1", exam.inner_text("main"))


SHAPE_SPELLINGS = (
    "(64, 20)", "(64,20)", "[64, 20]", "64x20", "64 X 20", "64 × 20", "64*20", "64, 20", "64,20,",
    "torch.Size([64, 20])", "TORCH.SIZE([64,20])", "size(64, 20)", "((64, 20))", " [ 64 , 20 ] ",
    "(20, 64)", "(64, 20, 1)", "(64,)", "64", "()", "[]", "scalar", "64 20", "(64, 20]", "64,,20",
    "sixty-four by twenty", "", "(-64, 20)", "(64.0, 20)", "1234567890123x20",
    "６４x２０", "(６４, ２０)", "（64，20）", "64\u3000x 20", "\u00a0(64, 20)\u00a0", "\ufeff(64, 20)",
)
NUMBER_SPELLINGS = (
    "0", "0.0", "-0", "+0.0005", "0.0005", "0.002", "5e-4", "5E-4", ".0005", "0.", "1/2000", "1 / 2000",
    "−0.0005", "1_0", "1__0", "_1", "0x10", "nan", "inf", "1e400", "1/0", "zero", "", "0,5", "1e-3",
    "０", "０.０００５", "٠٫٠", "1２8", "\u30000.0005\u3000", "\x850\x85", "\ufeff0", "１/２０００",
)


def test_practice_checks_agree_with_the_grader(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    """The page's JavaScript parsers mirror the grader's; for every spelling the practice verdict
    (right, wrong, or unreadable) is the one grade-sheets would give."""
    from vaequiz.bank.loader import load_bank
    from vaequiz.grading.objective import grade_numeric, grade_shape, parse_number, parse_shape

    bank = load_bank(built["bank"])
    shape_q, number_q = bank.get("latent-shape"), bank.get("kl-value")
    page = open_page(built["practice"])
    p = page.page

    def page_verdict(question_id: str, text: str) -> bool | None:
        p.fill(f"#answer-{question_id}", text)
        p.click(f'[data-check="{question_id}"]')
        shown = p.locator(f"#verdict-{question_id}").text_content() or ""
        if shown == "Correct.":
            return True
        if shown.startswith("Not correct"):
            return False
        return None  # unreadable (or empty): the page asks for a shape or number

    for text in SHAPE_SPELLINGS:
        expected = None if parse_shape(text) is None else grade_shape(shape_q, text).score == 1
        assert page_verdict("latent-shape", text) == expected, text
    for text in NUMBER_SPELLINGS:
        expected = None if parse_number(text) is None else grade_numeric(number_q, text).score == 1
        assert page_verdict("kl-value", text) == expected, text
    assert page.errors == []


@pytest.fixture(scope="module")
def feedback_page(built: dict[str, Path]) -> Path:
    """A feedback page with every part shown: wrong MCQs with option feedback and the key, a
    shape, a number, a short answer, and a code answer that behaves like the known mistake."""
    folder = built["folder"]
    sheet = folder / "feedback-sheet.json"
    sheet.write_text(json.dumps({
        "student": "fb-student", "quiz": "sample-quiz", "mode": "practice",
        "answers": {"kl-role": "B", "vae-true-facts": ["A", "C"], "latent-shape": "(20, 64)", "kl-value": "2",
                    "why-reparameterize": "It is faster.", "reparam-code": "z = mu * torch.randn_like(logvar)\n"},
    }))
    out = folder / "feedback-out"
    done = run_vaequiz("grade-sheets", sheet, "--out", out, "--bank", built["bank"], "--quiz", folder / "sample.quiz.yaml", "--workers", "1")
    assert done.returncode == 0, done.stderr
    page = out / "feedback" / "fb-student.html"
    html = page.read_text(encoding="utf-8")
    assert "This looks like a common mistake" in html
    assert "no gradient reaches logvar" in html and "raised no gradient" not in html, "a probe's finding is no exception"
    return page


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_feedback_page_has_no_serious_axe_violation(
    feedback_page: Path, open_page: Callable[..., OpenPage], axe_source: str, scheme: str
) -> None:
    page = open_page(feedback_page, scheme)
    assert serious_axe_violations(page.page, axe_source) == []
    assert page.outside_requests() == [] and page.errors == []
