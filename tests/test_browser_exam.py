"""Carrying a long exam, and revising with cards: the sample quiz's pages in a real browser.

Question index, flags, "next unanswered" and "clear my choice"; a quiz spec's time limit
(counted down with Playwright's fake clock, so no test waits for real time); pages whose
instructions and buttons fit their mode; flashcards as a deck.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from playwright.sync_api import expect
from typer.testing import CliRunner

from tests.browser_harness import OpenPage, axe_source, browser, open_page  # noqa: F401 (fixtures)
from tests.test_browser_quiz import built, shown_labels  # noqa: F401 (fixture)
from tests.test_render_sample import write_sample_bank
from vaequiz.cli.app import app

pytestmark = pytest.mark.browser

TIMED_QUIZ = """
id: timed-quiz
title: Timed quiz
instructions: Answer every question, then press **Save answers**.
time_limit_min: 10
select:
  - ids: [kl-role, latent-shape, kl-value, why-reparameterize]
  - kinds: [flashcard]
"""


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("timed")
    bank = write_sample_bank(folder)
    spec = folder / "timed.quiz.yaml"
    spec.write_text(textwrap.dedent(TIMED_QUIZ).lstrip(), encoding="utf-8")
    pages = {}
    for mode in ("exam", "practice", "key", "flashcards"):
        out = folder / f"{mode}.html"
        done = CliRunner().invoke(app, ["build", "--bank", str(bank), "--quiz", str(spec), "--mode", mode,
                                        "--student", "ada", "-o", str(out)])
        assert done.exit_code == 0, done.output
        pages[mode] = out
    return pages


def stopped_clock(tab: Any) -> None:
    """A fake clock that moves only when the test moves it."""
    start = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
    tab.clock.install(time=start)
    tab.clock.pause_at(start + timedelta(minutes=1))  # ahead of the installed time, however slow the machine


def order_of(page: OpenPage) -> list[str]:
    return [item["id"] for item in page.data()["items"]]


# --------------------------------------------------------------------------- index and flags


def test_question_index_shows_answered_and_flagged_and_jumps(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    links = p.locator(".question-index a")
    assert links.count() == 7
    p.fill("#answer-kl-value", "0.5")
    link = p.locator('[data-index-for="kl-value"]')
    expect(link).to_have_class("index-link answered")
    assert link.locator(".index-state").text_content() == "answered"
    p.click('[data-flag="latent-shape"]')
    flag = p.locator('[data-flag="latent-shape"]')
    assert flag.get_attribute("aria-pressed") == "true" and flag.text_content() == "Flagged for review"
    assert p.locator('[data-index-for="latent-shape"] .index-state').text_content() == "unanswered, flagged for review"
    assert p.locator("#index-summary").text_content() == "1 answered, 6 unanswered, 1 flagged"
    p.reload()  # flags are kept with the answers
    assert p.locator("#index-summary").text_content() == "1 answered, 6 unanswered, 1 flagged"
    p.locator('[data-index-for="latent-shape"]').click()
    assert p.evaluate("() => document.activeElement.id") == "h-latent-shape"
    assert p.locator("#h-latent-shape").evaluate("h => { const r = h.getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }")
    assert page.errors == []


def test_next_unanswered_goes_to_the_first_unanswered_question_after_this_one(
    built: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    order = order_of(page)
    text_items = [i for i in order if i in ("latent-shape", "kl-value", "why-reparameterize")]
    p.fill(f"#answer-{text_items[1]}", "0.5" if text_items[1] == "kl-value" else "(64, 20)" if text_items[1] == "latent-shape" else "because")
    p.locator(f"#answer-{text_items[1]}").focus()
    p.click("#next-unanswered")
    current = p.evaluate("() => document.activeElement.closest('.item').dataset.item")
    after = order[order.index(text_items[1]) + 1:] + order[: order.index(text_items[1])]
    assert current == after[0]


def test_clear_my_choice_unanswers_a_single_answer_question(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(built["student-exam"])
    p = page.page
    clear = p.locator('[data-clear="kl-role"]')
    assert clear.is_disabled()
    p.check(f"#kl-role-option-{shown_labels(page.data(), 'kl-role', ['B'])[0]}")
    assert p.locator("#progress").text_content() == "6 of 7 questions unanswered"
    clear.click()
    assert p.locator("#q-kl-role input:checked").count() == 0
    assert p.locator("#progress").text_content() == "7 of 7 questions unanswered"
    p.reload()
    assert p.locator("#q-kl-role input:checked").count() == 0
    assert p.locator('[data-clear="vae-true-facts"]').count() == 0  # ticks can be unticked


# --------------------------------------------------------------------------- time limit


def test_time_limit_counts_down_warns_then_saves_and_locks(timed: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(timed["exam"], before_load=stopped_clock)
    p = page.page
    assert "10 minutes" in p.locator(".instructions").inner_text()
    expect(p.locator("#time-left")).to_have_text("10:00")
    p.fill("#answer-kl-value", "0.5")
    p.clock.run_for("05:01")
    expect(p.locator("#time-left")).to_have_text("4:59")
    assert p.locator("#time-warning").text_content() == "5 minutes left: save your answers soon."
    p.clock.run_for("04:00")
    assert p.locator("#time-warning").text_content() == "1 minute left: save your answers soon."
    with p.expect_download() as download_info:
        p.clock.run_for("01:00")
    sheet = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert sheet["time_limit_min"] == 10 and sheet["locked_at"] >= sheet["started_at"]
    assert sheet["answers"] == {"kl-value": "0.5"}
    assert p.locator("#time-warning").text_content().startswith("Time is up")
    assert p.locator("#answer-kl-value").evaluate("box => box.readOnly")
    p.locator("#answer-kl-value").press("End")
    p.keyboard.type("99")
    assert p.locator("#answer-kl-value").input_value() == "0.5"
    assert p.locator("#q-kl-role input").first.is_disabled()
    p.reload()  # the lock outlives the page
    assert p.locator("#answer-kl-value").evaluate("box => box.readOnly")
    assert page.errors == []


def test_only_pages_that_enforce_the_limit_mention_it_and_buttons_fit_the_mode(
    timed: dict[str, Path], open_page: Callable[..., OpenPage]
) -> None:
    for mode in ("key", "flashcards"):
        p = open_page(timed[mode]).page
        text = p.inner_text("body")
        assert "Save answers" not in text and "minutes" not in text, mode
        assert p.locator("#time-left").count() == 0 and p.locator("#save-answers").count() == 0
    practice = open_page(timed["practice"]).page  # open-ended: no clock, no promise of one
    assert "minutes" not in practice.inner_text("body") and practice.locator("#time-left").count() == 0
    assert practice.locator("#save-answers").count() == 1


def test_a_quiz_without_a_limit_shows_no_clock(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    p = open_page(built["student-exam"]).page
    assert p.locator("#time-left").count() == 0 and "minutes" not in p.inner_text("body")


# --------------------------------------------------------------------------- flashcards as a deck


def test_flashcards_are_a_deck_with_an_again_pile(built: dict[str, Path], open_page: Callable[..., OpenPage]) -> None:
    page = open_page(built["flashcards"])
    p = page.page
    assert p.locator("#card-list").is_hidden()
    cards = p.locator("#deck-card .card")
    assert cards.count() == 1
    progress = p.locator("#deck-progress")
    assert progress.text_content() == "0 of 2 known · 2 cards left in round 1"
    first = cards.first.get_attribute("data-card")
    assert p.locator("#deck-again").is_disabled()  # turn the card before judging it
    p.keyboard.press("f")  # shortcuts work without focusing the deck first
    expect(p.locator("#deck-card .card-back")).to_be_visible()
    p.keyboard.press("1")  # again
    second = cards.first.get_attribute("data-card")
    assert second != first
    assert progress.text_content() == "0 of 2 known · 1 card left in round 1 · 1 to repeat"
    p.keyboard.press("f")
    p.keyboard.press("2")  # got it
    assert cards.first.get_attribute("data-card") == first  # the again pile comes back
    assert progress.text_content() == "1 of 2 known · 1 card left in round 2"
    p.click("#deck-card .flip")
    p.click("#deck-got-it")
    assert p.locator("#deck-done-text").text_content() == "All 2 cards known, in 2 rounds."
    assert progress.text_content() == "2 of 2 known"
    p.click("#deck-shuffle")
    assert progress.text_content() == "0 of 2 known · 2 cards left in round 1"
    p.click("#list-view")
    assert p.locator("#card-list").is_visible() and p.locator("#deck").is_hidden()
    assert p.locator("#card-list .card").count() == 2
    assert page.errors == []


def test_deck_passes_axe(built: dict[str, Path], open_page: Callable[..., OpenPage], axe_source: str) -> None:
    page = open_page(built["flashcards"], "dark")
    page.page.emulate_media(reduced_motion="reduce")
    page.page.click("#deck-card .flip")
    page.page.add_script_tag(content=axe_source)
    result = page.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
