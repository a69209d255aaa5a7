"""The Gradescope autograder zip, run locally: its run_autograder grades real submissions with
`vaequiz grade` (sandboxed) in a folder laid out like /autograder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from typer.testing import CliRunner

from vaequiz.bank.skeletons import skeleton_data
from vaequiz.cli.app import app

runner = CliRunner()


def build_autograder(tmp_path: Path) -> Path:
    bank = tmp_path / "bank"
    for qid in ("kl-a", "kl-b", "kl-c"):
        done = runner.invoke(app, ["new", "code", "--id", qid, "--file", str(bank / "code.yaml")])
        assert done.exit_code == 0, done.stderr
    out = tmp_path / "autograder.zip"
    done = runner.invoke(app, ["export", "--format", "gradescope", "--bank", str(bank), "-o", str(out)])
    assert done.exit_code == 0, done.stderr
    return out


def test_zip_layout_and_setup_script(tmp_path: Path) -> None:
    out = build_autograder(tmp_path)
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        for executable in ("setup.sh", "run_autograder"):
            mode = archive.getinfo(executable).external_attr >> 16
            assert mode & stat.S_IXUSR, executable
        setup = archive.read("setup.sh").decode()
        config = json.loads(archive.read("vaequiz_autograder.json"))
    assert {"bank/code.yaml", "lib/vaequiz/__main__.py", "lib/reference_impl/__init__.py"} <= names
    assert not any("__pycache__" in n for n in names)
    assert "--index-url https://download.pytorch.org/whl/cpu 'torch" in setup
    assert "'pydantic" in setup and "python3 -m vaequiz validate bank" in setup
    assert config["questions"] == [{"id": q, "points": 3.0} for q in ("kl-a", "kl-b", "kl-c")]
    script = tmp_path / "setup.sh"
    script.write_text(setup)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.slow
def test_run_autograder_grades_submissions_into_gradescope_results(tmp_path: Path) -> None:
    out = build_autograder(tmp_path)
    root = tmp_path / "autograder"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root / "source")
    submission = root / "submission"
    submission.mkdir()
    body = skeleton_data("code", "x")
    (submission / "kl-a.py").write_text(body["reference"])
    (submission / "kl-b.py").write_text(body["mutants"][0]["code"])  # sums over the batch too
    environment = {**os.environ, "AUTOGRADER_ROOT": str(root), "VAEQUIZ_PYTHON": sys.executable}
    environment.pop("PYTHONPATH", None)  # grade with the copy shipped in the zip
    done = subprocess.run([sys.executable, str(root / "source" / "run_autograder")],
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["output"] == ""
    tests = results["tests"]
    assert all(set(t) == {"name", "score", "max_score", "output", "visibility"} for t in tests)
    by_question: dict[str, list[dict]] = {}
    for test in tests:
        by_question.setdefault(test["name"].split(":")[0], []).append(test)
    assert sum(t["max_score"] for t in by_question["kl-a"]) == 3.0
    assert all(t["score"] == t["max_score"] and t["output"] == "passed" for t in by_question["kl-a"])
    failed = [t for t in by_question["kl-b"] if t["score"] == 0]
    assert failed and all(t["output"] and t["output"] != "passed" for t in failed)
    assert 0 <= sum(t["score"] for t in by_question["kl-b"]) < 3.0
    [missing] = by_question["kl-c"]
    assert missing["score"] == 0 and "no file kl-c.py" in missing["output"]
    assert results["score"] == round(sum(t["score"] for t in tests), 6)
    assert results["score"] >= 3.0
