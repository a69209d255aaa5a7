"""The service through HTTP (Starlette's TestClient, the real worker and sandbox), on SQLite and
on a real PostgreSQL: sign-in, autosave with every revision kept, exam submit and release,
practice grading, downloads in grade-sheets' formats, and the security rules."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select, update

from tests.conftest import BUNDLED_BANK
from tests.serve_support import (
    EXAM_IDS,
    Site,
    csrf_of,
    db_url,  # noqa: F401  (fixture)
    open_quiz,
    postgres_server,  # noqa: F401  (fixture)
    sign_in_instructor,
    sign_in_student,
    wait_graded,
    write_quizzes,
)
from vaequiz.bank.loader import load_bank
from vaequiz.grading.models import ItemResult
from vaequiz.grading.reports import write_grades_csv
from vaequiz.serve.app import Settings
from vaequiz.serve.course import load_course
from vaequiz.serve.db import attempts, now, revisions
from vaequiz.serve.db import jobs as jobs_table
from vaequiz.serve.server import build_app, database

BANK = load_bank(BUNDLED_BANK)
REPARAM = "z = mu + torch.randn_like(logvar) * (0.5 * logvar).exp()\n"  # right, and not the reference's text


def make_site(tmp_path: Path, url: str, threads: int = 1, code_per_minute: int = 30) -> Site:
    exam, practice = write_quizzes(tmp_path)
    course = load_course(BUNDLED_BANK, [exam], [practice])
    engine = database(url)
    return Site(build_app(engine, course, Settings(code_per_minute=code_per_minute, grading_threads=threads)), engine)


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:  # noqa: F811
    made = make_site(tmp_path, db_url, threads=0)
    yield made
    made.close()


def key_material() -> list[str]:
    """Text that only the key holds for the exam's questions: explanations, option feedback,
    the model answer, the code reference and mutants."""
    found: list[str] = []
    for question_id in EXAM_IDS:
        question = BANK.get(question_id)
        if getattr(question, "explanation", None):
            found.append(question.explanation.strip()[:40])
        for option in getattr(question, "options", []) or []:
            if option.feedback:
                found.append(option.feedback.strip()[:40])
        if getattr(question, "model_answer", None):
            found.append(question.model_answer.strip()[:40])
        if getattr(question, "reference", None):
            found.append("torch.exp(0.5 * logvar)")
            found += [m.code.strip()[:30] for m in question.mutants]
    return found


def right_answers(student: str, folder: Path) -> tuple[str, str]:
    """The exam's parametric keys for this student's numbers: the parameter count and z's shape."""
    from vaequiz.bank.parametric import bind
    from vaequiz.expressions import format_value
    from vaequiz.grading.objective import format_dims

    exam, practice = write_quizzes(folder)
    served = load_course(BUNDLED_BANK, [exam], [practice]).get("serve-exam")
    params = served.builder.variant(student).params
    count = bind(served.questions["linear-layer-parameters"], params["linear-layer-parameters"]).answer
    shape = bind(served.questions["encoder-z-shape"], params["encoder-z-shape"]).answer
    return format_value(count), format_dims(list(shape))


def shown_key(page: str, question_id: str, serve_data: dict[str, Any]) -> str:
    """The letter this student's page shows for the key of an MCQ (their variant's order)."""
    question = BANK.get(question_id)
    order = [o.label for o in question.options]
    labels = json.loads(page.split('id="quiz-data">', 1)[1].split("</script>", 1)[0])["labels"]
    mapping = labels.get(question_id, {label: label for label in order})
    return next(shown for shown, bank in mapping.items() if bank in question.answer)


def test_exam_flow_keeps_revisions_hides_the_key_until_release_and_downloads_grade_sheets_formats(
    tmp_path: Path, db_url: str  # noqa: F811
) -> None:
    site = make_site(tmp_path, db_url, threads=1)
    try:
        student = sign_in_student(site, "ada")
        responses: list[str] = []
        page = student.get("/quiz/serve-exam")
        responses.append(page.text)
        conf = open_quiz(student, "serve-exam")
        attempt = conf["attempt"]
        key_letter = shown_key(page.text, "decoder-for-28x28", conf)
        params_key, shape_key = right_answers("ada", tmp_path)  # both questions are parametric
        first = student.post(f"/api/attempts/{attempt}/answers", json={"answers": {"linear-layer-parameters": "1"}})
        second = student.post(f"/api/attempts/{attempt}/answers", json={"answers": {
            "linear-layer-parameters": params_key, "decoder-for-28x28": key_letter, "encoder-z-shape": shape_key,
        }})
        assert first.status_code == second.status_code == 200, second.text
        responses += [first.text, second.text]
        with site.engine.connect() as db:
            kept = db.execute(select(revisions.c.value).where(revisions.c.question == "linear-layer-parameters").order_by(revisions.c.id)).all()
        assert [json.loads(r.value) for r in kept] == ["1", params_key]
        reloaded = open_quiz(student, "serve-exam")
        assert reloaded["answers"]["linear-layer-parameters"] == params_key

        submitted = student.post(f"/api/attempts/{attempt}/submit", json={"answers": {"reparameterization-trick": REPARAM}})
        assert submitted.status_code == 200, submitted.text
        status = wait_graded(student, attempt, len(EXAM_IDS))
        responses.append(json.dumps(status))
        assert all(entry["result"] is None for entry in status["questions"].values())
        late = student.post(f"/api/attempts/{attempt}/answers", json={"answers": {"encoder-z-shape": "1"}})
        assert late.status_code == 409 and "already submitted" in late.json()["error"]
        responses += [student.get("/").text, student.get("/quiz/serve-exam").text]
        for path in ("/instructor", f"/instructor/attempts/{attempt}", "/instructor/quiz/serve-exam/stats",
                     "/instructor/quiz/serve-exam/gradescope.zip", "/instructor/quiz/serve-exam/results.jsonl"):
            responses.append(student.get(path).text)  # instructor pages: refused, nothing of the key in the refusal
        for path in ("/instructor/quiz/serve-exam/regrade", "/instructor/quiz/serve-exam/regrade/apply"):
            responses.append(student.post(path, data={"csrf": student.headers["X-CSRF-Token"]}).text)
        for text in responses:
            for secret in key_material():
                assert secret not in text, f"key material {secret!r} sent before release"

        teacher = sign_in_instructor(site)
        board = teacher.get("/instructor")
        assert board.status_code == 200
        row = re.search(r'<tr><td><a href="/instructor/attempts/\d+">ada</a></td>(.*?)</tr>', board.text, re.S).group(1)
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[2] == "4 of 5" and cells[3:] == ["1", "1", "1", "0", "4", "7"], cells
        assert "1 started, 1 submitted" in board.text and "Release feedback" in board.text
        released = teacher.post("/instructor/quiz/serve-exam/release", data={"csrf": teacher.headers["X-CSRF-Token"]}, follow_redirects=False)
        assert released.status_code == 303
        after = student.get(f"/api/attempts/{attempt}/status").json()
        points = {q: e["result"]["points"] for q, e in after["questions"].items()}
        assert points["linear-layer-parameters"] == 1 and points["decoder-for-28x28"] == 1
        assert points["encoder-z-shape"] == 1 and points["reparameterization-trick"] == 4
        assert points["kl-importance"] == 0  # unanswered: graded as "no answer"

        lines = teacher.get("/instructor/quiz/serve-exam/results.jsonl").text.splitlines()
        items = [ItemResult.model_validate_json(line) for line in lines]
        assert sorted(i.question for i in items) == sorted(EXAM_IDS)
        assert all(i.student == "ada" and i.quiz == "serve-exam" and i.fingerprint for i in items)
        expected = tmp_path / "expected.csv"
        write_grades_csv(expected, items, EXAM_IDS)
        download = teacher.get("/instructor/quiz/serve-exam/grades.csv")
        assert download.headers["content-type"].startswith("text/csv")
        assert download.text == expected.read_text(encoding="utf-8")
        header, first = (line.split(",") for line in download.text.splitlines()[:2])
        assert first[header.index("total")] == "7"
    finally:
        site.close()


def test_practice_grades_on_demand_and_shows_results_at_once(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = make_site(tmp_path, db_url, threads=1)
    try:
        student = sign_in_student(site, "ben")
        attempt = open_quiz(student, "serve-practice")["attempt"]
        asked = student.post(f"/api/attempts/{attempt}/grade", json={"answers": {"beta-loss-value": "12345"}})
        assert asked.status_code == 200, asked.text
        status = wait_graded(student, attempt, 1)
        result = status["questions"]["beta-loss-value"]["result"]
        assert result["points"] == 0 and result["checks"] and result["checks"][0]["message"]
        again = student.post(f"/api/attempts/{attempt}/grade", json={"answers": {"beta-loss-value": "12345"}})
        assert again.status_code == 200
        with site.engine.connect() as db:
            assert len(db.execute(select(revisions.c.id).where(revisions.c.question == "beta-loss-value")).all()) == 1
    finally:
        site.close()


def test_a_second_student_cannot_read_or_change_the_first_ones_attempt(site: Site) -> None:
    ada = sign_in_student(site, "ada")
    attempt = open_quiz(ada, "serve-exam")["attempt"]
    practice = open_quiz(ada, "serve-practice")["attempt"]
    ben = sign_in_student(site, "ben")
    for target in (attempt, practice):
        assert ben.get(f"/api/attempts/{target}/status").status_code == 404
        for action in ("answers", "submit", "grade"):
            response = ben.post(f"/api/attempts/{target}/{action}", json={"answers": {}})
            assert response.status_code == 404, (action, response.text)
            assert response.json()["error"] == "no such attempt of yours"
    with site.engine.connect() as db:
        assert db.execute(select(revisions.c.id)).first() is None
        assert db.execute(select(attempts.c.submitted_at).where(attempts.c.id == attempt)).scalar_one() is None
    anonymous = site.client()
    assert anonymous.get(f"/api/attempts/{attempt}/status").status_code == 401


def test_instructor_pages_need_the_instructor(site: Site) -> None:
    student = sign_in_student(site, "ada")
    anonymous = site.client()
    csrf = csrf_of(anonymous)
    anonymous.headers["X-CSRF-Token"] = csrf
    for client, status in ((student, 403), (anonymous, None)):
        for path in ("/instructor", "/instructor/quiz/serve-exam/grades.csv", "/instructor/quiz/serve-exam/results.jsonl"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code in ((403,) if status else (303,)), (path, response.status_code)
        token = client.headers["X-CSRF-Token"]
        response = client.post("/instructor/quiz/serve-exam/release", data={"csrf": token}, follow_redirects=False)
        assert response.status_code in (403, 303)
    teacher = sign_in_instructor(site)
    assert teacher.get("/instructor").status_code == 200
    assert teacher.get("/api/attempts/1/status").status_code == 403


def test_every_post_needs_the_csrf_token(site: Site) -> None:
    student = sign_in_student(site, "ada")
    attempt = open_quiz(student, "serve-practice")["attempt"]
    del student.headers["X-CSRF-Token"]
    for path in ("/signin", "/join", "/login", "/logout"):
        response = student.post(path, data={"csrf": "x" * 40}, follow_redirects=False)
        assert response.status_code == 403 and "CSRF" in response.json()["error"], path
    teacher = sign_in_instructor(site)
    response = teacher.post("/instructor/quiz/serve-exam/release", data={"csrf": "x" * 40}, follow_redirects=False)
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert teacher.post("/instructor/quiz/serve-exam/release", follow_redirects=False).status_code == 403
    for action in ("answers", "submit", "grade"):
        response = student.post(f"/api/attempts/{attempt}/{action}", json={"answers": {}})
        assert response.status_code == 403 and "CSRF" in response.json()["error"]
    wrong = student.post(f"/api/attempts/{attempt}/answers", json={"answers": {}}, headers={"X-CSRF-Token": "y" * 43})
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"answers": {"no-such-question": "1"}}, 422, "is not a question of quiz"),
        ({"answers": {"kl-divergence": 12}}, 422, "must be text or a list"),
        ({"answers": {"kl-divergence": {"a": 1}}}, 422, "must be text or a list"),
        ({"answers": ["kl-divergence"]}, 422, "'answers' must be an object"),
        ([1, 2], 422, "must be a JSON object"),
        ({"answers": {"kl-divergence": "x" * (256 * 1024 + 1)}}, 413, "larger than 256 KB"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_clear_message(site: Site, body: Any, status: int, message: str) -> None:
    student = sign_in_student(site, "ada")
    attempt = open_quiz(student, "serve-practice")["attempt"]
    response = student.post(f"/api/attempts/{attempt}/answers", json=body)
    assert response.status_code == status and message in response.json()["error"], response.text


def test_bodies_that_are_not_json_or_too_large_are_refused(site: Site) -> None:
    student = sign_in_student(site, "ada")
    attempt = open_quiz(student, "serve-practice")["attempt"]
    broken = student.post(f"/api/attempts/{attempt}/answers", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not JSON" in broken.json()["error"]
    huge = student.post(f"/api/attempts/{attempt}/answers", content=b" " * (5 * 1024 * 1024))
    assert huge.status_code == 413 and "larger than 4 MB" in huge.json()["error"]


def test_code_submissions_are_rate_limited_per_student(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = make_site(tmp_path, db_url, threads=0, code_per_minute=2)
    try:
        ada = sign_in_student(site, "ada")
        attempt = open_quiz(ada, "serve-practice")["attempt"]
        for n in range(2):
            ok = ada.post(f"/api/attempts/{attempt}/grade", json={"answers": {"kl-divergence": f"kl = {n}"}})
            assert ok.status_code == 200, ok.text
        refused = ada.post(f"/api/attempts/{attempt}/grade", json={"answers": {"kl-divergence": "kl = 9"}})
        assert refused.status_code == 429 and "at most 2 a minute" in refused.json()["error"]
        objective = ada.post(f"/api/attempts/{attempt}/grade", json={"answers": {"beta-loss-value": "1"}})
        assert objective.status_code == 200  # only code answers count
        ben = sign_in_student(site, "ben")
        other = open_quiz(ben, "serve-practice")["attempt"]
        assert ben.post(f"/api/attempts/{other}/grade", json={"answers": {"kl-divergence": "kl = 1"}}).status_code == 200
    finally:
        site.close()


def test_security_headers_and_cookies(site: Site) -> None:
    anonymous = site.client()
    home = anonymous.get("/")
    cookie = home.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    student = sign_in_student(site, "ada")
    for response in (home, anonymous.get("/login"), student.get("/quiz/serve-exam"), student.get("/nowhere"),
                     student.get("/api/attempts/1/status")):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src 'nonce-" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    page = student.get("/quiz/serve-exam")
    nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert page.text.count("<script>") == 0 and page.text.count(f'<script nonce="{nonce}">') == 2
    assert 'http-equiv="Content-Security-Policy"' not in page.text


def test_session_cookie_is_httponly_lax_and_secure_over_https(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    from vaequiz.serve.accounts import issue_links

    site = make_site(tmp_path, db_url, threads=0)
    try:
        token = issue_links(site.engine, ["ada"], None)["ada"]
        client = site.TestClient(site.app, base_url="https://testserver")
        client.__enter__()
        site.clients.append(client)
        form = client.get(f"/signin/{token}")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        response = client.post("/signin", data={"token": token, "csrf": csrf}, follow_redirects=False)
        cookie = response.headers["set-cookie"]
        assert "vaequiz_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
        assert token not in cookie
    finally:
        site.close()


def test_expired_links_and_a_wrong_join_code_are_refused(site: Site) -> None:
    from vaequiz.serve.accounts import issue_links, join_code

    token = issue_links(site.engine, ["ada"], None, timedelta(seconds=-1))["ada"]
    client = site.client()
    assert client.get(f"/signin/{token}").status_code == 404
    csrf = csrf_of(client)
    assert client.post("/signin", data={"token": token, "csrf": csrf}).status_code == 403
    wrong = client.post("/join", data={"code": "NOPE", "name": "cai", "csrf": csrf})
    assert wrong.status_code == 400 and "not this course" in wrong.text
    taken = client.post("/join", data={"code": join_code(site.engine), "name": "ada", "csrf": csrf})
    assert taken.status_code == 400 and "already taken" in taken.text
    joined = client.post("/join", data={"code": join_code(site.engine).lower(), "name": "cai", "csrf": csrf}, follow_redirects=False)
    assert joined.status_code == 303
    assert "Served exam" in client.get("/").text


def test_an_exam_past_its_time_limit_takes_no_answers_and_is_submitted_with_what_was_saved(site: Site) -> None:
    student = sign_in_student(site, "ada")
    attempt = open_quiz(student, "serve-exam")["attempt"]
    assert student.post(f"/api/attempts/{attempt}/answers", json={"answers": {"encoder-z-shape": "(64, 20)"}}).status_code == 200
    with site.engine.begin() as db:
        db.execute(update(attempts).where(attempts.c.id == attempt).values(deadline=now() - timedelta(minutes=5)))
    late = student.post(f"/api/attempts/{attempt}/answers", json={"answers": {"encoder-z-shape": "(1, 1)"}})
    assert late.status_code == 409
    status = student.get(f"/api/attempts/{attempt}/status").json()
    assert status["submitted"] and set(status["questions"]) == set(EXAM_IDS)
    with site.engine.connect() as db:
        values = [r.value for r in db.execute(select(revisions.c.value).where(revisions.c.question == "encoder-z-shape"))]
    assert values == ['"(64, 20)"']


def test_the_time_limit_comes_from_the_server_option(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    exam, practice = write_quizzes(tmp_path)
    course = load_course(BUNDLED_BANK, [exam], [practice], time_limit_min=30)
    engine = database(db_url)
    site = Site(build_app(engine, course, Settings(grading_threads=0)), engine)
    try:
        student = sign_in_student(site, "ada")
        conf = open_quiz(student, "serve-exam")
        assert conf["deadline"] is not None and open_quiz(student, "serve-practice")["deadline"] is None
    finally:
        site.close()


def test_the_status_says_queued_with_the_position_then_running_then_graded(site: Site) -> None:
    ada = sign_in_student(site, "ada")
    ada_attempt = open_quiz(ada, "serve-practice")["attempt"]
    ben = sign_in_student(site, "ben")
    ben_attempt = open_quiz(ben, "serve-practice")["attempt"]
    assert ada.get(f"/api/attempts/{ada_attempt}/status").json()["questions"] == {}
    assert ada.post(f"/api/attempts/{ada_attempt}/grade", json={"answers": {"beta-loss-value": "1"}}).status_code == 200
    assert ben.post(f"/api/attempts/{ben_attempt}/grade", json={"answers": {"beta-loss-value": "2"}}).status_code == 200

    def state(client: Any, attempt: int) -> tuple[str, Any]:
        entry = client.get(f"/api/attempts/{attempt}/status").json()["questions"]["beta-loss-value"]
        return entry["state"], entry["position"]

    assert state(ada, ada_attempt) == ("queued", 1) and state(ben, ben_attempt) == ("queued", 2)
    worker = site.app.state.service.worker  # this site grades nothing by itself (0 threads)
    job = worker.claim()
    assert state(ada, ada_attempt) == ("running", None) and state(ben, ben_attempt) == ("queued", 1)
    worker.run(job)
    assert state(ada, ada_attempt) == ("graded", None)
    assert ada.get(f"/api/attempts/{ada_attempt}/status").json()["questions"]["beta-loss-value"]["result"]["max_points"] > 0


def test_sessions_expire_and_sign_out_ends_them(site: Site) -> None:
    from vaequiz.serve.accounts import open_session, student

    with site.engine.begin() as db:
        ada = student(db, "ada")
    expired = site.client()
    expired.cookies.set("vaequiz_session", open_session(site.engine, ada, timedelta(seconds=-1)))
    assert expired.get("/api/attempts/1/status").status_code == 401
    assert "Join with the course code" in expired.get("/").text

    client = sign_in_student(site, "ben")
    attempt = open_quiz(client, "serve-practice")["attempt"]
    assert client.get(f"/api/attempts/{attempt}/status").status_code == 200
    token = client.cookies.get("vaequiz_session")
    out = client.post("/logout", data={"csrf": client.headers["X-CSRF-Token"]}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("vaequiz_session", token)  # a copied cookie is worthless after sign-out
    assert client.get(f"/api/attempts/{attempt}/status").status_code == 401


def test_a_parametric_question_is_graded_with_the_students_own_numbers(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    from vaequiz.bank.parametric import bind

    site = make_site(tmp_path, db_url, threads=1)
    try:
        exam, practice = write_quizzes(tmp_path)
        served = load_course(BUNDLED_BANK, [exam], [practice]).get("serve-practice")
        numbers = served.builder.variant("ben").params["beta-loss-value"]
        key = bind(served.questions["beta-loss-value"], numbers).answer
        student = sign_in_student(site, "ben")
        attempt = open_quiz(student, "serve-practice")["attempt"]
        asked = student.post(f"/api/attempts/{attempt}/grade", json={"answers": {"beta-loss-value": f"{key:g}"}})
        assert asked.status_code == 200, asked.text
        result = wait_graded(student, attempt, 1)["questions"]["beta-loss-value"]["result"]
        assert result["points"] == result["max_points"], result
    finally:
        site.close()


def test_answers_without_code_are_graded_first_and_the_positions_say_so(site: Site) -> None:
    """A burst of code (or the sandbox's start) never holds up a multiple choice or a number."""
    ada = sign_in_student(site, "ada")
    ada_attempt = open_quiz(ada, "serve-practice")["attempt"]
    ben = sign_in_student(site, "ben")
    ben_attempt = open_quiz(ben, "serve-practice")["attempt"]
    code = "def kl_divergence(mu, logvar):\n    return mu.sum()\n"
    assert ada.post(f"/api/attempts/{ada_attempt}/grade", json={"answers": {"kl-divergence": code}}).status_code == 200
    assert ben.post(f"/api/attempts/{ben_attempt}/grade", json={"answers": {"beta-loss-value": "2"}}).status_code == 200

    def entry(client: Any, attempt: int, question: str) -> tuple[str, Any]:
        found = client.get(f"/api/attempts/{attempt}/status").json()["questions"][question]
        return found["state"], found["position"]

    assert entry(ben, ben_attempt, "beta-loss-value") == ("queued", 1)
    assert entry(ada, ada_attempt, "kl-divergence") == ("queued", 2)
    worker = site.app.state.service.worker  # this site grades nothing by itself (0 threads)
    first = worker.claim()
    assert entry(ben, ben_attempt, "beta-loss-value") == ("running", None)
    assert entry(ada, ada_attempt, "kl-divergence") == ("queued", 1)
    worker.run(first)
    assert entry(ben, ben_attempt, "beta-loss-value") == ("graded", None)


def test_a_grading_thread_takes_answers_without_code_together_and_code_answers_apart(site: Site) -> None:
    ada = sign_in_student(site, "ada")
    attempt = open_quiz(ada, "serve-practice")["attempt"]
    answers = {"kl-divergence": "def kl_divergence(mu, logvar):\n    return mu.sum()\n", "beta-loss-value": "2",
               "decoder-block-bce": "A"}
    assert ada.post(f"/api/attempts/{attempt}/grade", json={"answers": answers}).status_code == 200
    worker = site.app.state.service.worker  # this site grades nothing by itself (0 threads)
    light = worker.claim_batch(32)
    with site.engine.connect() as db:
        taken = {row.question for row in db.execute(
            select(revisions.c.question).join(jobs_table, jobs_table.c.revision_id == revisions.c.id).where(jobs_table.c.id.in_([job for job, _ in light])))}
    assert taken == {"beta-loss-value", "decoder-block-bce"}
    code = worker.claim_batch(32)
    assert len(code) == 1 and worker.claim_batch(32) == []
    worker.run_batch(light)
    states = ada.get(f"/api/attempts/{attempt}/status").json()["questions"]
    assert states["beta-loss-value"]["state"] == states["decoder-block-bce"]["state"] == "graded"
    assert states["kl-divergence"]["state"] == "running"


def test_the_sandbox_starts_with_the_server_when_a_served_quiz_has_code(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    """Not with the first code answer: that answer (and every thread that took one) would wait for it."""
    made = make_site(tmp_path, db_url, threads=1)
    try:
        made.client()  # starts the app, and so the worker
        worker = made.app.state.service.worker
        deadline = time.monotonic() + 300  # a hang guard, not a timing
        while worker.grader.sandbox is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        made.close()
