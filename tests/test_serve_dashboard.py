"""The instructor's side of the service through HTTP, on SQLite and a real PostgreSQL:
per-question statistics from the stats package, every saved revision of an attempt, the
Gradescope download, regrade (dry run, then apply) after a question changed, and the security
rules of each new page."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import BUNDLED_BANK, run_vaequiz
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
from tests.test_serve_app import key_material, make_site, right_answers, shown_key
from vaequiz.grading.models import ItemResult
from vaequiz.serve.app import Settings
from vaequiz.serve.course import load_course
from vaequiz.serve.db import results
from vaequiz.serve.server import build_app, database

NEW_GETS = (
    "/instructor/quiz/serve-exam/stats",
    "/instructor/quiz/serve-exam/gradescope.zip",
    "/instructor/attempts/{attempt}",
)
NEW_POSTS = ("/instructor/quiz/serve-exam/regrade", "/instructor/quiz/serve-exam/regrade/apply")


def submit_exam(site: Site, student: str, tmp_path: Path, right: bool) -> int:
    """The student answers three questions (right or wrong), the linear layer twice, submits."""
    client = sign_in_student(site, student)
    page = client.get("/quiz/serve-exam").text
    conf = open_quiz(client, "serve-exam")
    attempt = conf["attempt"]
    count, shape = right_answers(student, tmp_path) if right else ("1", "(1, 1)")
    letter = shown_key(page, "decoder-for-28x28", conf)
    wrong_letter = next(x for x in "ABCD" if x != letter)
    assert client.post(f"/api/attempts/{attempt}/answers", json={"answers": {"linear-layer-parameters": "7"}}).status_code == 200
    answers = {"linear-layer-parameters": count, "encoder-z-shape": shape,
               "decoder-for-28x28": letter if right else wrong_letter}
    assert client.post(f"/api/attempts/{attempt}/submit", json={"answers": answers}).status_code == 200
    wait_graded(client, attempt, len(EXAM_IDS))
    return attempt


def test_statistics_revisions_and_gradescope_download(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = make_site(tmp_path, db_url, threads=1)
    try:
        ada = submit_exam(site, "ada", tmp_path, right=True)
        submit_exam(site, "ben", tmp_path, right=False)
        teacher = sign_in_instructor(site)

        lines = teacher.get("/instructor/quiz/serve-exam/results.jsonl").text
        folder = tmp_path / "downloaded"
        folder.mkdir()
        (folder / "results.jsonl").write_text(lines, encoding="utf-8")
        stats = run_vaequiz("stats", folder, "--bank", BUNDLED_BANK, "--json")
        assert stats.returncode == 0, stats.stderr
        expected = {item["question"]: item for item in json.loads(stats.stdout)["items"]}
        board = teacher.get("/instructor").text
        table = board.split('<table class="stats">', 1)[1].split("</table>", 1)[0]
        shown = {cells[1]: cells for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)) if cells}
        assert set(shown) == set(EXAM_IDS)
        for question, item in expected.items():
            assert shown[question][3] == str(item["students"]) == "2"
            assert shown[question][4] == f"{item['facility']:.2f}", (question, shown[question])
        assert shown["linear-layer-parameters"][4] == "0.50" and shown["kl-importance"][4] == "0.00"
        full = teacher.get("/instructor/quiz/serve-exam/stats")
        assert full.status_code == 200 and "Cronbach" in full.text and "linear-layer-parameters" in full.text

        assert f'href="/instructor/attempts/{ada}">ada</a>' in board
        attempt_page = teacher.get(f"/instructor/attempts/{ada}").text
        section = attempt_page.split('id="question-linear-layer-parameters"', 1)[1].split("</section>", 1)[0]
        revisions = re.findall(r'<tr class="revision">(.*?)</tr>', section, re.S)
        count, _ = right_answers("ada", tmp_path)
        assert len(revisions) == 2 and "<pre>7</pre>" in revisions[0] and f"<pre>{count}</pre>" in revisions[1]
        assert "not graded" in revisions[0] and "1 of 1 points (counts)" in revisions[1]
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", revisions[0])
        unanswered = attempt_page.split('id="question-kl-importance"', 1)[1].split("</section>", 1)[0]
        assert "(no answer)" in unanswered and "0 of" in unanswered

        download = teacher.get("/instructor/quiz/serve-exam/gradescope.zip")
        assert download.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(download.content))
        assert sorted(archive.namelist()) == ["ada/results.json", "ben/results.json"]
        payload = json.loads(archive.read("ada/results.json"))
        items = {i.question: i for i in (ItemResult.model_validate_json(x) for x in lines.splitlines()) if i.student == "ada"}
        assert payload["score"] == sum(i.points for i in items.values()) == 3
        assert [t["name"] for t in payload["tests"]] == EXAM_IDS
        assert {t["name"]: t["score"] for t in payload["tests"]} == {q: i.points for q, i in items.items()}
    finally:
        site.close()


def changed_points_site(tmp_path: Path, url: str) -> Site:
    """The same course with the exam's encoder-z-shape worth 3 points: its fingerprint changed."""
    exam, practice = write_quizzes(tmp_path)
    exam.write_text(exam.read_text(encoding="utf-8") + "points: {encoder-z-shape: 3}\n", encoding="utf-8")
    course = load_course(BUNDLED_BANK, [exam], [practice])
    engine = database(url)
    return Site(build_app(engine, course, Settings(grading_threads=1)), engine)


def grades_row(client: Any, student: str) -> dict[str, str]:
    import csv

    rows = list(csv.DictReader(io.StringIO(client.get("/instructor/quiz/serve-exam/grades.csv").text)))
    return next(r for r in rows if r["student"] == student)


def test_regrade_dry_run_stores_nothing_and_apply_adds_new_results(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    first = make_site(tmp_path, db_url, threads=1)
    try:
        attempt = submit_exam(first, "ada", tmp_path, right=True)
        teacher = sign_in_instructor(first)
        nothing = teacher.post("/instructor/quiz/serve-exam/regrade", data={"csrf": teacher.headers["X-CSRF-Token"]})
        assert nothing.status_code == 200 and 'id="regrade-nothing"' in nothing.text and "5 result(s) are up to date" in nothing.text
    finally:
        first.close()
    site = changed_points_site(tmp_path, db_url)
    try:
        teacher = sign_in_instructor(site, email="second@example.org")
        csrf = teacher.headers["X-CSRF-Token"]
        before = grades_row(teacher, "ada")
        assert before["encoder-z-shape"] == "1" and before["total"] == "3"
        with site.engine.connect() as db:
            stored = db.execute(select(func.count()).select_from(results)).scalar_one()

        dry = teacher.post("/instructor/quiz/serve-exam/regrade", data={"csrf": csrf})
        assert dry.status_code == 200, dry.text
        plan = dry.text.split('id="regrade-plan"', 1)[1].split("</table>", 1)[0]
        rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", plan, re.S)]
        rows = [r for r in rows if r]
        assert rows == [["ada", "encoder-z-shape", "1 / 1", "3 / 3", "+2", "the question&#39;s key, rubric, checks, reference or points changed"]]
        with site.engine.connect() as db:
            assert db.execute(select(func.count()).select_from(results)).scalar_one() == stored
        assert grades_row(teacher, "ada") == before

        token = re.search(r'name="plan" value="([^"]+)"', dry.text).group(1)
        applied = teacher.post("/instructor/quiz/serve-exam/regrade/apply", data={"csrf": csrf, "plan": token}, follow_redirects=False)
        assert applied.status_code == 303
        after = grades_row(teacher, "ada")
        assert after["encoder-z-shape"] == "3" and after["total"] == "5"
        with site.engine.connect() as db:
            kept = db.execute(select(results.c.item).where(results.c.question == "encoder-z-shape").order_by(results.c.id)).all()
        assert [ItemResult.model_validate_json(r.item).points for r in kept] == [1, 3]  # the stale one stays in the history

        again = teacher.post("/instructor/quiz/serve-exam/regrade/apply", data={"csrf": csrf, "plan": token})
        assert again.status_code == 409 and "run the dry run again" in again.text
        settled = teacher.post("/instructor/quiz/serve-exam/regrade", data={"csrf": csrf})
        assert 'id="regrade-nothing"' in settled.text

        page = teacher.get(f"/instructor/attempts/{attempt}").text
        section = page.split('id="question-encoder-z-shape"', 1)[1].split("</section>", 1)[0]
        assert "1 of 1 points (replaced by a later result)" in section and "3 of 3 points (counts)" in section
        student = sign_in_student(site, "ada")
        teacher.post("/instructor/quiz/serve-exam/release", data={"csrf": csrf})
        status = student.get(f"/api/attempts/{attempt}/status").json()
        assert status["questions"]["encoder-z-shape"]["result"]["points"] == 3
    finally:
        site.close()


def test_new_instructor_pages_refuse_students_and_anonymous_visitors(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = make_site(tmp_path, db_url, threads=1)
    try:
        attempt = submit_exam(site, "ada", tmp_path, right=True)
        ben = sign_in_student(site, "ben")
        ada = sign_in_student(site, "ada")
        anonymous = site.client()
        anonymous.headers["X-CSRF-Token"] = csrf_of(anonymous)
        seen: list[str] = []
        for client, refused in ((ada, 403), (ben, 403), (anonymous, 303)):
            for path in NEW_GETS:
                response = client.get(path.format(attempt=attempt), follow_redirects=False)
                assert response.status_code == refused, (path, response.status_code)
                seen.append(response.text)
            for path in NEW_POSTS:
                response = client.post(path, data={"csrf": client.headers["X-CSRF-Token"], "plan": "x"}, follow_redirects=False)
                assert response.status_code == refused, (path, response.status_code)
                seen.append(response.text)
        for text in seen:
            assert "ada" not in text  # neither the student's name nor anything of her attempt
            for secret in key_material():
                assert secret not in text
        teacher = sign_in_instructor(site)
        assert teacher.get(f"/instructor/attempts/{attempt + 1000}").status_code == 404
        for path in NEW_GETS:
            assert teacher.get(path.format(attempt=attempt)).status_code == 200, path
        assert teacher.get("/instructor/quiz/no-such-quiz/stats").status_code == 404
    finally:
        site.close()


def test_regrade_posts_need_the_csrf_token(site: Any) -> None:
    teacher = sign_in_instructor(site)
    for path in NEW_POSTS:
        for data in ({"csrf": "x" * 40, "plan": "p"}, {"plan": "p"}):
            response = teacher.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403 and "CSRF" in response.json()["error"], path


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Any:  # noqa: F811
    made = make_site(tmp_path, db_url, threads=0)
    yield made
    made.close()


def test_statistics_wait_for_the_first_result(site: Any) -> None:
    teacher = sign_in_instructor(site)
    assert "No graded answers yet." in teacher.get("/instructor").text
    missing = teacher.get("/instructor/quiz/serve-exam/stats")
    assert missing.status_code == 404 and "Nothing is graded yet" in missing.text
    empty = zipfile.ZipFile(io.BytesIO(teacher.get("/instructor/quiz/serve-exam/gradescope.zip").content))
    assert empty.namelist() == []


def test_the_result_that_counts_is_the_newest_of_the_newest_graded_revision(site: Any) -> None:
    """Whatever order answers are saved, graded and regraded in (a regrade of an older revision
    finishing after a newer revision's grading included), the gradebook holds, per student and
    question, the newest result of the newest graded revision."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from sqlalchemy import delete, insert

    from vaequiz.serve.accounts import student as make_student
    from vaequiz.serve.db import attempts, now, revisions

    service = site.app.state.service
    served = service.course.get("serve-exam")
    with site.engine.begin() as db:
        people = [make_student(db, name) for name in ("ada", "ben")]
        attempt_ids = [db.execute(insert(attempts).values(user_id=p.id, quiz="serve-exam", mode="exam", started_at=now()))
                       .inserted_primary_key[0] for p in people]
    questions = EXAM_IDS[:2]
    event = st.tuples(st.sampled_from(["save", "grade"]), st.integers(0, 1), st.sampled_from(questions),
                      st.integers(0, 5), st.sampled_from(["f1/v1", "f2/v1", "f2/v2"]))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(event, max_size=14))
    def check(events: list[tuple[str, int, str, int, str]]) -> None:
        with site.engine.begin() as db:
            db.execute(delete(results))
            db.execute(delete(revisions))
        saved: dict[tuple[int, str], list[int]] = {}
        graded: dict[tuple[int, str], list[tuple[int, int, float]]] = {}
        done: set[tuple[int, str]] = set()
        for kind, who, question, back, grader in events:
            pair = (who, question)
            with site.engine.begin() as db:
                if kind == "save" or pair not in saved:
                    saved.setdefault(pair, []).append(db.execute(insert(revisions).values(
                        attempt_id=attempt_ids[who], question=question, value='"1"', saved_at=now())).inserted_primary_key[0])
                    continue
                revision = saved[pair][max(0, len(saved[pair]) - 1 - back)]  # the newest, or an older one
                if (revision, grader) in done:
                    continue  # the same revision and grader twice: the database refuses it (test_serve_storage)
                done.add((revision, grader))
                mark = float(len(graded.get(pair, [])) + 1)
                result_id = db.execute(insert(results).values(
                    revision_id=revision, attempt_id=attempt_ids[who], question=question, graded_at=now(), grader=grader,
                    item=ItemResult(student=people[who].name, question=question, kind="numeric", passed=True, score=1,
                                    points=mark, max_points=99).model_dump_json(),
                )).inserted_primary_key[0]
            graded.setdefault(pair, []).append((revision, result_id, mark))
        expected = {(people[who].name, question): max(rows)[2] for (who, question), rows in graded.items()}
        current = {(c.item.student, c.item.question): c.item.points for c in service.current_results(served)}
        assert current == expected

    check()
