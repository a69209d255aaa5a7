"""Durability: the real `vaequiz serve` in a subprocess, killed (SIGKILL) in the middle of an
exam burst and started again; once the killed server's job leases run out (5 s here), every
submitted answer ends up graded exactly once."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.serve_support import (  # noqa: F401  (fixtures)
    EXAM_IDS,
    _free_port,
    db_url,
    kill,
    postgres_server,
    sign_in_links,
    start_server,
    write_quizzes,
)
from vaequiz.serve.db import jobs, open_engine, results, revisions

pytestmark = pytest.mark.slow

STUDENTS = [f"s{n:02d}" for n in range(10)]
RIGHT = "z = mu + torch.randn_like(logvar) * (0.5 * logvar).exp()\n"
WRONG = "z = mu + logvar\n"


def submit(base: str, link: str, code: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        token = link.rsplit("/", 1)[1]
        form = client.get(f"/signin/{token}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert client.post("/signin", data={"token": token, "csrf": csrf}).status_code == 303
        page = client.get("/quiz/serve-exam")
        conf: dict[str, Any] = json.loads(re.search(r'id="serve-data">(.*?)</script>', page.text, re.S).group(1))
        answers = {"linear-layer-parameters": "314000", "encoder-z-shape": "(64, 20)", "reparameterization-trick": code}
        response = client.post(f"/api/attempts/{conf['attempt']}/submit", json={"answers": answers},
                               headers={"X-CSRF-Token": conf["csrf"]})
        assert response.status_code == 200, response.text


def test_a_killed_server_loses_nothing_and_grades_every_answer_exactly_once(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    exam, _ = write_quizzes(tmp_path)
    links = sign_in_links(tmp_path, exam, db_url, STUDENTS)
    engine = open_engine(db_url)
    port, log = _free_port(), tmp_path / "server.log"
    server = start_server(["--quiz", str(exam)], db_url, port, log, ("--lease", "5"))
    try:
        for n, student in enumerate(STUDENTS):
            submit(f"http://127.0.0.1:{port}", links[student], RIGHT if n % 2 == 0 else WRONG)
        total = len(STUDENTS) * len(EXAM_IDS)
        deadline = time.monotonic() + 300
        with engine.connect() as db:
            while db.execute(select(func.count()).select_from(results)).scalar_one() == 0:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        kill(server)
        with engine.connect() as db:
            done_at_kill = db.execute(select(func.count()).select_from(results)).scalar_one()
            assert db.execute(select(func.count()).select_from(jobs)).scalar_one() == total
        assert done_at_kill < total, "the server finished before it was killed; the burst was too small"

        server = start_server(["--quiz", str(exam)], db_url, port, log, ("--lease", "5"))
        deadline = time.monotonic() + 600
        with engine.connect() as db:
            while db.execute(select(func.count()).select_from(jobs).where(jobs.c.state != "done")).scalar_one():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
                db.rollback()
            per_revision = db.execute(
                select(results.c.revision_id, func.count()).group_by(results.c.revision_id)
            ).all()
            assert len(per_revision) == total and all(count == 1 for _, count in per_revision)
            graded = {row.revision_id for row in db.execute(select(jobs.c.revision_id))}
            assert graded == {revision for revision, _ in per_revision}
            code_items = [
                json.loads(row.item) for row in db.execute(
                    select(results.c.item).join(revisions, revisions.c.id == results.c.revision_id)
                    .where(revisions.c.question == "reparameterization-trick")
                )
            ]
        points = {item["student"]: item["points"] for item in code_items}
        assert points == {s: (4.0 if n % 2 == 0 else points[s]) for n, s in enumerate(STUDENTS)}
        assert all(points[s] < 4.0 for n, s in enumerate(STUDENTS) if n % 2)
    finally:
        kill(server)
        engine.dispose()
