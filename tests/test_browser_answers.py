"""No answer is lost, and no answer costs points for its spelling: the sample quiz's pages in a
real browser (Debian chromium through Playwright).

Two tabs stay in sync item by item, newest edit winning; an oversized paste is cut at the box
and never stops later saves; a failed save is reported and the next one recovers; the sheet
records when the student started and saved; numbers and shapes are read by the grader's own
rules as the student types (compared with the grader on generated inputs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect

from tests.browser_harness import OpenPage, browser, open_page  # noqa: F401 (fixtures)
from tests.test_browser_quiz import STUDENT, built, shown_labels  # noqa: F401 (fixture)
from vaequiz.grading.objective import parse_number, parse_shape
from vaequiz.grading.sandbox.pool import MAX_SOURCE_BYTES
from vaequiz.render.reading_rules import MAX_ANSWER_BYTES

pytestmark = pytest.mark.browser


def download_sheet(p: Any) -> dict[str, Any]:
    with p.expect_download() as download_info:
        p.click("#save-answers")
    return json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- no lost answers


def test_two_tabs_keep_each_others_answers_and_the_newest_edit_wins(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    page = open_page(built["student-exam"])
    first, second = page.page, page.new_tab()  # both open before anything is answered
    first.fill("#answer-latent-shape", "(1, 2)")
    second.fill("#answer-kl-value", "0.5")  # the stale tab must not wipe the first tab's answer
    expect(second.locator("#answer-latent-shape")).to_have_value("(1, 2)")
    expect(first.locator("#answer-kl-value")).to_have_value("0.5")
    second.fill("#answer-latent-shape", "(3, 4)")  # newer edit of the same item
    expect(first.locator("#answer-latent-shape")).to_have_value("(3, 4)")
    first.reload()
    assert first.locator("#answer-latent-shape").input_value() == "(3, 4)"
    assert first.locator("#answer-kl-value").input_value() == "0.5"
    assert first.locator("#progress").text_content() == "5 of 7 questions unanswered"
    assert page.errors == []


STALE_WRITE = """() => {
  const key = Object.keys(localStorage).find(k => k.startsWith('vaequiz:'));
  const record = JSON.parse(localStorage.getItem(key));
  delete record.answers['latent-shape'];  // written by a tab that had not yet seen this edit
  localStorage.setItem(key, JSON.stringify(record));
}"""


def test_a_tab_restores_an_edit_that_another_tabs_late_write_missed(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    """Tabs see each other's writes with a delay; a write made without an edit is repaired by
    the tab that made the edit."""
    page = open_page(built["student-exam"])
    first, second = page.page, page.new_tab()
    first.fill("#answer-latent-shape", "(64, 20)")
    expect(second.locator("#answer-latent-shape")).to_have_value("(64, 20)")
    second.evaluate(STALE_WRITE)
    stored = "() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('vaequiz:')))).answers"
    first.wait_for_function(stored.replace("() => ", "() => (") + ")['latent-shape'] !== undefined")
    second.reload()
    assert second.locator("#answer-latent-shape").input_value() == "(64, 20)"


def test_the_page_cuts_answers_at_the_graders_limit() -> None:
    assert MAX_ANSWER_BYTES == MAX_SOURCE_BYTES


def test_an_oversized_paste_is_cut_at_the_box_and_saving_goes_on(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    p.locator("#answer-reparam-code").evaluate(
        "box => { box.value = 'z = mu  # ' + 'é'.repeat(3 * 1024 * 1024); box.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    message = p.locator("#msg-reparam-code").text_content()
    assert message.startswith("Cut to 256 KB, the most the grader reads (the text was 6145 KB)")
    size = p.locator("#answer-reparam-code").evaluate("box => new TextEncoder().encode(box.value).length")
    assert MAX_ANSWER_BYTES - 1 <= size <= MAX_ANSWER_BYTES
    p.fill("#answer-latent-shape", "(64, 20)")  # a later answer is still kept
    assert p.locator("#save-message").text_content() == ""
    p.reload()
    assert p.locator("#answer-latent-shape").input_value() == "(64, 20)"
    assert p.locator("#answer-reparam-code").input_value().startswith("z = mu  # éé")
    assert page.errors == []


FILL_STORAGE = """() => {
  let size = 1 << 22, index = 0;
  while (size >= 1) {
    try { localStorage.setItem('filler-' + index++, 'x'.repeat(size)); } catch (error) { size >>= 1; }
  }
}"""


def test_a_failed_save_is_reported_and_the_next_one_recovers(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    p.evaluate(FILL_STORAGE)  # another page of this origin used up the storage
    p.fill("#answer-kl-value", "0.25")
    failure = p.locator("#save-message").text_content()
    assert failure.startswith("The last save in this browser failed at ") and "press Save answers now" in failure
    p.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('filler-')).forEach(k => localStorage.removeItem(k))")
    p.fill("#answer-latent-shape", "(64, 20)")
    assert p.locator("#save-message").text_content().startswith("Your answers are kept in this browser again")
    p.reload()
    assert p.locator("#answer-kl-value").input_value() == "0.25"  # the answer whose save failed
    assert p.locator("#answer-latent-shape").input_value() == "(64, 20)"


def test_the_sheet_records_times_and_multi_select_as_a_list(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    data = page.data()
    label = shown_labels(data, "vae-true-facts", ["B"])[0]
    p.check(f"#vae-true-facts-option-{label}")
    sheet = download_sheet(p)
    assert sheet["answers"] == {"vae-true-facts": [label]}
    assert sheet["started_at"] <= sheet["saved_at"] and sheet["saved_at"].endswith("Z")
    p.reload()  # the start time belongs to the student, not to the page load
    assert download_sheet(p)["started_at"] == sheet["started_at"]


def test_leaving_with_answers_not_downloaded_asks_first(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    p.fill("#answer-kl-value", "0.25")
    download_sheet(p)
    p.fill("#answer-kl-value", "0.5")
    dialogs: list[str] = []
    p.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    p.close(run_before_unload=True)
    expect(p.locator("#answer-kl-value")).to_have_value("0.5")  # still open: the student stayed
    assert dialogs == ["beforeunload"]


# --------------------------------------------------------------------------- reading answers


@pytest.mark.parametrize(
    ("box", "text", "message"),
    [
        ("kl-value", "1,307", "Can't read this as a number; write 1.307."),
        ("kl-value", "１２８", ""),
        ("kl-value", "zero", "Can't read this as a number; write it like 0.25, -1e-3 or 1/2."),
        ("kl-value", "0.5", ""),
        ("kl-value", "0", ""),
        ("latent-shape", "（64，20）", "Can't read this as a shape; write (64, 20)."),
        ("latent-shape", "64 by 20", "Can't read this as a shape; write it like (64, 20), torch.Size([64, 20]) or 64x20."),
        ("latent-shape", "(64, 20)", ""),
        ("latent-shape", "(20, 64)", ""),
    ],
)
def test_exam_says_at_the_box_what_the_grader_cannot_read(
    built: dict[str, Path], open_page: Callable[..., OpenPage], box: str, text: str, message: str
) -> None:
    """Right and wrong readable answers alike get no message: nothing reveals correctness."""
    p = open_page(built["student-exam"]).page
    p.fill(f"#answer-{box}", text)
    expect(p.locator(f"#msg-{box}")).to_have_text(message)
    p.locator(f"#answer-{box}").blur()
    expect(p.locator(f"#msg-{box}")).to_have_text(message)


@pytest.fixture(scope="module")
def reader(browser: Any, built: dict[str, Path]) -> Iterator[Any]:
    """The exam page's parsers, called directly."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(built["student-exam"].resolve().as_uri())
    yield page
    context.close()


PYTHON_DIGITS = "0123456789٠٣٩०५१২৩੦๓០１２８９𝟎𝟘𝟙"
PYTHON_SPACES = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000\u2028"
NOT_PYTHON_SPACES = "\ufeff\u200b"
SYMBOLS = "()[],xX×*./_eE+-−:;'" + "TorchSizeScalarKİ" + "（）［］，．"
ANSWER_TEXT = st.text(
    alphabet=st.sampled_from(PYTHON_DIGITS + PYTHON_SPACES + NOT_PYTHON_SPACES + SYMBOLS) | st.characters(),
    max_size=14,
)
NUMBERISH = st.builds(
    lambda sign, number, space: f"{space}{sign}{number}{space}",
    st.sampled_from(["", "-", "+", "−"]),
    st.one_of(
        st.floats(allow_nan=False).map(repr),
        st.integers(-10**25, 10**25).map(str),
        st.builds(lambda a, b: f"{a}/{b}", st.integers(0, 10**6), st.integers(0, 999)),
        st.builds(lambda a, b: f"{a}_{b}", st.integers(0, 999), st.integers(0, 999)),
    ),
    st.sampled_from(["", " ", "\u3000", "\ufeff", "\x85"]),
)
SHAPEISH = st.builds(
    lambda dims, separator, wrapper, trailing: wrapper.format(separator.join(map(str, dims)) + trailing),
    st.lists(st.integers(0, 10**13), max_size=4),
    st.sampled_from([", ", ",", "x", " X ", "×", "*", " ", ",\n"]),
    st.sampled_from(["{}", "({})", "[{}]", "torch.Size([{}])", "size({})", "（{}）", "(({}))"]),
    st.sampled_from(["", ",", " ,"]),
)


def _same_number(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    return float(ours) == theirs  # the page's value arrives as JSON: an int when integral


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANSWER_TEXT | NUMBERISH | SHAPEISH, min_size=25, max_size=25))
def test_the_page_reads_numbers_and_shapes_exactly_as_the_grader(reader: Any, texts: list[str]) -> None:
    """One set of rules: for generated spellings the page's parsers and the grader's agree."""
    results = reader.evaluate(
        "texts => texts.map(t => [vaequizReading.parseShape(t), vaequizReading.parseNumber(t)])", texts
    )
    for text, (shape, number) in zip(texts, results):
        assert shape == parse_shape(text), f"shape {text!r}: page {shape}, grader {parse_shape(text)}"
        assert _same_number(number, parse_number(text)), f"number {text!r}: page {number}, grader {parse_number(text)}"


def test_full_width_and_other_scripts_digits_read_alike(reader: Any) -> None:
    texts = ["１２８", "٣.٥", "１/２", "(６４, ２０)", "６４x２０", "1\u30002", "\u3000128\u3000", "\ufeff128", "1e５"]
    results = reader.evaluate(
        "texts => texts.map(t => [vaequizReading.parseShape(t), vaequizReading.parseNumber(t)])", texts
    )
    assert results[0][1] == 128 and results[3][0] == [64, 20]
    for text, (shape, number) in zip(texts, results):
        assert shape == parse_shape(text) and _same_number(number, parse_number(text)), text
