"""The main job's serve step (`bash .ci/main-job --serve` runs `.ci/serve` after its usual work):
it prints the server's URL, the instructor's sign-in and a student's link, and they work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.serve_support import _free_port, kill

pytestmark = pytest.mark.slow


def printed(log: Path, process: subprocess.Popen[bytes]) -> dict[str, str]:
    """The server, instructor and student lines, once the server answers (a hang guard, not a timing)."""
    deadline = time.monotonic() + 180
    while True:
        text = log.read_text(encoding="utf-8", errors="replace")
        found = {key: re.search(rf"^{key}:\s+(.*)$", text, re.M) for key in ("server", "instructor", "student")}
        if all(found.values()):
            try:
                if httpx.get(found["server"].group(1).split()[0], timeout=2).status_code == 200:  # type: ignore[union-attr]
                    return {key: match.group(1) for key, match in found.items()}  # type: ignore[union-attr]
            except httpx.HTTPError:
                pass
        assert process.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.3)


@pytest.mark.parametrize("password", [None, "from the environment"])
def test_the_serve_step_prints_an_instructor_and_a_student_link_that_sign_in(tmp_path: Path, password: str | None) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "VAEQUIZ_PORT": str(port)}
    env.pop("VAEQUIZ_INSTRUCTOR_PASSWORD", None)
    if password:
        env["VAEQUIZ_INSTRUCTOR_PASSWORD"] = password
    log = tmp_path / "serve.log"
    process = subprocess.Popen(["bash", ".ci/serve", str(tmp_path / "out")], cwd=REPO, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        lines = printed(log, process)
        base = f"http://127.0.0.1:{port}"
        assert lines["server"] == base + "/"
        login, _, email, _, shown = lines["instructor"].split()[:5]
        assert login == base + "/login" and email == "instructor@example.org"
        if password:
            assert shown == "(from" and password not in log.read_text(encoding="utf-8")
        else:
            password = shown
        with httpx.Client(base_url=base) as instructor:
            csrf = re.search(r'name="csrf" value="([^"]+)"', instructor.get("/login").text).group(1)  # type: ignore[union-attr]
            signed = instructor.post("/login", data={"email": email, "password": password, "csrf": csrf})
            assert signed.status_code == 303 and signed.headers["location"] == "/instructor"
            assert instructor.get("/instructor").status_code == 200

        link = lines["student"].split()[0]
        assert link.startswith(base + "/signin/") and "(ada;" in lines["student"]
        assert (tmp_path / "out" / "links.csv").read_text(encoding="utf-8").count(base + "/signin/") == 4
        with httpx.Client(base_url=base) as student:
            form = student.get(link.removeprefix(base)).text
            fields = {name: re.search(rf'name="{name}" value="([^"]+)"', form).group(1) for name in ("csrf", "token")}  # type: ignore[union-attr]
            signed = student.post("/signin", data=fields)
            assert signed.status_code == 303 and signed.headers["location"] == "/quiz/vae-week"
            page = student.get("/quiz/vae-week")
            assert page.status_code == 200 and 'id="serve-data"' in page.text
    finally:
        kill(process)
