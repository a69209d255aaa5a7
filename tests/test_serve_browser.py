"""The served pages in a real browser (Debian chromium through Playwright) against the real
`vaequiz serve`: sign in with a link, answer, the answers are autosaved to the server (a fresh
browser profile gets them back), practice grading on demand, an exam submitted."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.browser_harness import browser  # noqa: F401 (fixtures)
from tests.conftest import run_vaequiz
from tests.serve_support import _free_port, kill, start_server, write_quizzes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

def watched(browser: Any, problems: list[str]) -> Any:
    """A fresh profile whose page errors and console errors (CSP violations included) are kept."""
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return context, page


def test_sign_in_answer_autosave_practice_grading_and_exam_submit(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    exam, practice = write_quizzes(tmp_path)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nada\n", encoding="utf-8")
    made = run_vaequiz("links", roster, "--quiz", exam, "--db", url, "--base-url", f"http://127.0.0.1:{port}")
    assert made.returncode == 0, made.stderr
    link = next(csv.DictReader(io.StringIO(made.stdout)))["link"]
    server = start_server(["--quiz", str(exam), "--practice", str(practice)], url, port, tmp_path / "server.log")
    problems: list[str] = []
    try:
        context, page = watched(browser, problems)
        page.goto(link)
        page.click("#sign-in")
        page.wait_for_url("**/quiz/serve-exam")
        page.fill("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea", "314000")
        page.check("#q-decoder-for-28x28 input[value='B']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        page.reload()
        assert page.input_value("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea") == "314000"

        other, fresh = watched(browser, problems)  # no local copy: the answers come from the server
        fresh.goto(link)
        fresh.click("#sign-in")
        fresh.wait_for_url("**/quiz/serve-exam")
        assert fresh.input_value("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea") == "314000"
        assert fresh.is_checked("#q-decoder-for-28x28 input[value='B']")
        other.close()

        page.goto(f"http://127.0.0.1:{port}/quiz/serve-practice")
        page.fill("#q-beta-loss-value input, #q-beta-loss-value textarea", "123456")
        page.click("#grade-practice")
        expect(page.locator("#q-beta-loss-value .serve-result")).to_contain_text("Graded: 0 of", timeout=120_000)

        page.goto(f"http://127.0.0.1:{port}/quiz/serve-exam")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#submit-exam")
        expect(page.locator("#server-status")).to_contain_text("Submitted", timeout=120_000)
        page.reload()
        assert page.is_disabled("#submit-exam") and page.is_disabled("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea")
        context.close()
    finally:
        kill(server)
    assert not problems, problems


def test_clearing_a_choice_is_saved_on_the_server_and_the_local_copy_takes_the_servers_answers(browser: Any, tmp_path: Path) -> None:
    """serve.js hears every edit through quiz.js's window.vaequizPage hook, the "Clear my choice"
    button included (it changes no input event), and the answers it restores from the server
    are kept in the page's local copy too."""
    from playwright.sync_api import expect

    exam, practice = write_quizzes(tmp_path)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nben\n", encoding="utf-8")
    made = run_vaequiz("links", roster, "--quiz", exam, "--db", url, "--base-url", f"http://127.0.0.1:{port}")
    assert made.returncode == 0, made.stderr
    link = next(csv.DictReader(io.StringIO(made.stdout)))["link"]
    server = start_server(["--quiz", str(exam), "--practice", str(practice)], url, port, tmp_path / "server.log")
    problems: list[str] = []
    try:
        context, page = watched(browser, problems)
        page.goto(link)
        page.click("#sign-in")
        page.wait_for_url("**/quiz/serve-exam")
        page.check("#q-decoder-for-28x28 input[value='B']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        page.evaluate("() => { document.getElementById('server-status').textContent = ''; }")
        page.click("[data-clear='decoder-for-28x28']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        assert page.evaluate("() => window.vaequizPage.answers()['decoder-for-28x28']") is None

        other, fresh = watched(browser, problems)  # answered elsewhere: this profile gets it from the server
        fresh.goto(link)
        fresh.click("#sign-in")
        fresh.wait_for_url("**/quiz/serve-exam")
        assert not fresh.is_checked("#q-decoder-for-28x28 input[value='B']")
        fresh.fill("#q-linear-layer-parameters input", "262400")
        expect(fresh.locator("#server-status")).to_contain_text("Saved on the server")
        other.close()
        page.reload()
        assert page.input_value("#q-linear-layer-parameters input") == "262400"
        stored = page.evaluate("() => JSON.stringify(Object.keys(localStorage).map(k => localStorage.getItem(k)))")
        assert "262400" in stored  # the server's answer is in this browser's own copy now
        context.close()
    finally:
        kill(server)
    assert not problems, problems
