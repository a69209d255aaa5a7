"""The served pages in a real browser (Debian chromium through Playwright) against the real
`vaequiz serve`: sign in with a link, answer, the answers are autosaved to the server (a fresh
browser profile gets them back), practice grading on demand, an exam submitted; the instructor's
dashboard filling in live, feedback released, a student's revisions, a regrade after a question
changed (dry run, then apply) and the downloads."""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser_harness import browser  # noqa: F401 (fixtures)
from tests.conftest import run_vaequiz
from tests.serve_support import _free_port, kill, sign_in_links, start_server, write_quizzes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

def watched(browser: Any, problems: list[str]) -> Any:
    """A fresh profile whose page errors and console errors (CSP violations included) are kept."""
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return context, page


@contextmanager
def served_exam(tmp_path: Path, student: str) -> Iterator[tuple[str, int]]:
    """A real `vaequiz serve` of the test exam and practice quiz: (the student's sign-in link, port)."""
    exam, practice = write_quizzes(tmp_path)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    link = sign_in_links(tmp_path, exam, url, [student], f"http://127.0.0.1:{port}")[student]
    server = start_server(["--quiz", str(exam), "--practice", str(practice)], url, port, tmp_path / "server.log")
    try:
        yield link, port
    finally:
        kill(server)


def open_exam(browser: Any, link: str, problems: list[str]) -> Any:
    """A fresh profile signed in with ``link``, on the served exam: (context, page)."""
    context, page = watched(browser, problems)
    page.goto(link)
    page.click("#sign-in")
    page.wait_for_url("**/quiz/serve-exam")
    return context, page


def test_sign_in_answer_autosave_practice_grading_and_exam_submit(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    with served_exam(tmp_path, "ada") as (link, port):
        context, page = open_exam(browser, link, problems)
        page.fill("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea", "314000")
        page.check("#q-decoder-for-28x28 input[value='B']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        page.reload()
        assert page.input_value("#q-linear-layer-parameters input, #q-linear-layer-parameters textarea") == "314000"

        other, fresh = open_exam(browser, link, problems)  # no local copy: the answers come from the server
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
    assert not problems, problems


def test_instructor_watches_releases_reads_revisions_regrades_and_downloads(browser: Any, tmp_path: Path) -> None:
    import json
    import zipfile

    from playwright.sync_api import expect

    from tests.test_serve_app import right_answers

    exam, _ = write_quizzes(tmp_path)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    link = sign_in_links(tmp_path, exam, url, ["ada"], base)["ada"]
    created = run_vaequiz("serve", "--create-instructor", "prof@example.org", "--db", url, input="a long password\n")
    assert created.returncode == 0, created.stderr
    count, shape = right_answers("ada", tmp_path)
    field = "#q-{0} input, #q-{0} textarea"
    server = start_server(["--quiz", str(exam)], url, port, tmp_path / "server.log")
    problems: list[str] = []
    try:
        teacher_context, teacher = watched(browser, problems)
        teacher.goto(f"{base}/login")
        teacher.fill("input[name=email]", "prof@example.org")
        teacher.fill("input[name=password]", "a long password")
        teacher.click("button[type=submit]")
        teacher.wait_for_url("**/instructor")
        grades = teacher.locator("#quiz-serve-exam table.grades tbody")
        expect(teacher.locator("#quiz-serve-exam")).to_contain_text("No graded answers yet.")

        student_context, student = watched(browser, problems)
        student.goto(link)
        student.click("#sign-in")
        student.wait_for_url("**/quiz/serve-exam")
        student.fill(field.format("linear-layer-parameters"), "7")
        expect(student.locator("#server-status")).to_contain_text("Saved on the server")
        student.fill(field.format("linear-layer-parameters"), count)
        student.fill(field.format("encoder-z-shape"), shape)
        # the open dashboard fills in by itself as the student works
        expect(grades.locator("tr", has_text="ada")).to_contain_text("2 of 5", timeout=60_000)
        student.once("dialog", lambda dialog: dialog.accept())
        student.click("#submit-exam")
        expect(student.locator("#server-status")).to_contain_text("Grades and feedback appear here", timeout=120_000)
        expect(grades.locator("tr", has_text="ada").locator("td").last).to_have_text("2", timeout=60_000)
        expect(teacher.locator("#quiz-serve-exam table.stats")).to_contain_text("encoder-z-shape", timeout=60_000)
        assert "1 of 1 points" not in student.locator("#q-encoder-z-shape").inner_text()

        teacher.click("#quiz-serve-exam button:has-text('Release feedback')")
        expect(teacher.locator("#quiz-serve-exam")).to_contain_text("Feedback released")
        student.reload()
        expect(student.locator("#q-encoder-z-shape .serve-result")).to_contain_text("Graded: 1 of 1 points")
        expect(student.locator("#server-status")).to_contain_text("Submitted and graded.")

        teacher.click("#quiz-serve-exam table.grades a:has-text('ada')")
        teacher.wait_for_url("**/instructor/attempts/*")
        revisions = teacher.locator("#question-linear-layer-parameters tr.revision")
        expect(revisions).to_have_count(2)
        expect(revisions.nth(0)).to_contain_text("7")
        expect(revisions.nth(0)).to_contain_text("not graded")
        expect(revisions.nth(1)).to_contain_text(count)
        expect(revisions.nth(1)).to_contain_text("1 of 1 points (counts)")
        teacher.click("text=Back to the dashboard")

        def download(name: str) -> Path:
            """Click the dashboard's link in another tab of the instructor's browser."""
            tab = teacher_context.new_page()
            tab.goto(f"{base}/instructor")
            with tab.expect_download() as started:
                tab.click(f"#quiz-serve-exam a[href$='/{name}']")
            tab.close()
            target = tmp_path / f"{len(list(tmp_path.glob('dl-*')))}-dl-{name}"
            started.value.save_as(target)
            return target

        def ada_grades() -> dict[str, str]:
            return next(csv.DictReader(download("grades.csv").open(encoding="utf-8")))

        first = ada_grades()
        assert first["student"] == "ada" and first["encoder-z-shape"] == "1" and first["total"] == "2"
        with zipfile.ZipFile(download("gradescope.zip")) as archive:
            assert archive.namelist() == ["ada/results.json"]
            payload = json.loads(archive.read("ada/results.json"))
        assert payload["score"] == 2 and {t["name"]: t["score"] for t in payload["tests"]}["encoder-z-shape"] == 1

        for tab in (teacher, student):  # closed while the server is down (no refused polls)
            tab.goto("about:blank")
        kill(server)  # the instructor raises encoder-z-shape to 3 points and restarts the server
        exam.write_text(exam.read_text(encoding="utf-8") + "points: {encoder-z-shape: 3}\n", encoding="utf-8")
        server = start_server(["--quiz", str(exam)], url, port, tmp_path / "server.log")
        teacher.goto(f"{base}/instructor")
        teacher.click("#quiz-serve-exam button.regrade")
        plan = teacher.locator("#regrade-plan tbody tr")
        expect(plan).to_have_count(1, timeout=120_000)
        expect(plan).to_contain_text("encoder-z-shape")
        expect(plan).to_contain_text("1 / 1")
        expect(plan).to_contain_text("3 / 3")
        assert ada_grades()["total"] == "2"  # the dry run stored nothing
        teacher.click("#apply-regrade")
        teacher.wait_for_url("**/instructor")
        expect(grades.locator("tr", has_text="ada").locator("td").last).to_have_text("4")
        regraded = ada_grades()
        assert regraded["encoder-z-shape"] == "3" and regraded["total"] == "4"
        student.goto(f"{base}/quiz/serve-exam")
        expect(student.locator("#q-encoder-z-shape .serve-result")).to_contain_text("Graded: 3 of 3 points")
        teacher_context.close()
        student_context.close()
    finally:
        kill(server)
    assert not problems, problems


def test_clearing_a_choice_is_saved_on_the_server_and_the_local_copy_takes_the_servers_answers(browser: Any, tmp_path: Path) -> None:
    """serve.js hears every edit through quiz.js's window.vaequizPage hook, the "Clear my choice"
    button included (it changes no input event), and the answers it restores from the server
    are kept in the page's local copy too."""
    from playwright.sync_api import expect

    problems: list[str] = []
    with served_exam(tmp_path, "ben") as (link, port):
        context, page = open_exam(browser, link, problems)
        page.check("#q-decoder-for-28x28 input[value='B']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        page.evaluate("() => { document.getElementById('server-status').textContent = ''; }")
        page.click("[data-clear='decoder-for-28x28']")
        expect(page.locator("#server-status")).to_contain_text("Saved on the server")
        assert page.evaluate("() => window.vaequizPage.answers()['decoder-for-28x28']") is None

        other, fresh = open_exam(browser, link, problems)  # answered elsewhere: this profile gets it from the server
        assert not fresh.is_checked("#q-decoder-for-28x28 input[value='B']")
        fresh.fill("#q-linear-layer-parameters input", "262400")
        expect(fresh.locator("#server-status")).to_contain_text("Saved on the server")
        other.close()
        page.reload()
        assert page.input_value("#q-linear-layer-parameters input") == "262400"
        stored = page.evaluate("() => JSON.stringify(Object.keys(localStorage).map(k => localStorage.getItem(k)))")
        assert "262400" in stored  # the server's answer is in this browser's own copy now
        context.close()
    assert not problems, problems
