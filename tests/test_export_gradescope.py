"""The Gradescope autograder zip, run as Gradescope runs it: setup.sh builds the environment (a
bare virtual environment here), and run_autograder grades real submissions with `vaequiz grade`
(sandboxed) in a folder laid out like /autograder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import CodeQuestion
from vaequiz.bank.skeletons import skeleton_data
from vaequiz.cli.app import app
from vaequiz.export import gradescope_run

REPO = Path(__file__).resolve().parent.parent

runner = CliRunner()


def build_autograder(tmp_path: Path, ids: tuple[str, ...] = ("kl-a", "kl-b", "kl-c")) -> Path:
    bank = tmp_path / "bank"
    for qid in ids:
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
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu\n" in setup and "TORCH='torch>=2.2'\n" in setup
    assert '--index-url "${VAEQUIZ_TORCH_INDEX:-$TORCH_INDEX}" "${VAEQUIZ_TORCH:-$TORCH}"' in setup
    assert "'numpy" in setup and "'pydantic" in setup and "-m vaequiz validate bank" in setup
    assert config["questions"] == [{"id": q, "points": 3.0, "file": f"{q}.py"} for q in ("kl-a", "kl-b", "kl-c")]
    assert (config["quiz_id"], config["seed"], config["student_field"]) == ("question-bank", 0, "email")
    script = tmp_path / "setup.sh"
    script.write_text(setup)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def cpu_torch_requirement() -> str:
    """The torch that .ci/setup installs, which on this project's machines is a CPU wheel."""
    [pin] = re.findall(r'pip_install "(torch==[^"]+)"', (REPO / ".ci" / "setup").read_text())
    return pin


def autograder_environment(setup: Path) -> Path:
    """A virtual environment holding only what ``setup.sh`` installs, built by running it.

    Gradescope runs setup.sh against the image's python3; here it runs against a fresh venv
    without system site packages, with torch from PyPI at the pin .ci/setup uses (the script's
    default CPU index is not reachable from this project's machines). The venv is kept under
    the git-ignored .cache/, keyed by the script and the interpreter, and the script is run
    on it again each time (pip then only confirms what is installed)."""
    script = setup.read_text()
    key = hashlib.sha256(f"{script}\0{sys.version}\0{cpu_torch_requirement()}".encode()).hexdigest()[:16]
    cache = REPO / ".cache"
    cache.mkdir(exist_ok=True)
    venv = cache / f"gradescope-venv-{key}"
    with open(cache / "gradescope-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in cache.glob("gradescope-venv-*"):
            if stale.is_dir() and stale != venv:
                shutil.rmtree(stale)
        if not (venv / "built").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        environment.update(VAEQUIZ_PYTHON=str(venv / "bin" / "python"),
                           VAEQUIZ_TORCH_INDEX="https://pypi.org/simple",
                           VAEQUIZ_TORCH=cpu_torch_requirement())
        done = subprocess.run(["bash", str(setup)], env=environment, capture_output=True, text=True,
                              timeout=1800, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "ok:" in done.stdout  # the bank validated with the shipped vaequiz
        (venv / "built").touch()
    return venv


def run_autograder(root: Path, venv: Path, files: dict[str, str], email: str = "student@example.com") -> dict:
    """Gradescope's run: a fresh submission folder, ``submission_metadata.json`` naming the
    submitter as Gradescope writes it, and ``/autograder/run_autograder`` executed as a program
    (its ``python3`` is the environment's)."""
    submission, results = root / "submission", root / "results"
    shutil.rmtree(submission, ignore_errors=True)
    shutil.rmtree(results, ignore_errors=True)
    submission.mkdir()
    (root / "submission_metadata.json").write_text(json.dumps({
        "id": 123456, "created_at": "2026-12-01T14:22:32.365935-07:00",
        "assignment": {"id": 25828, "title": "VAE week", "total_points": "20.0", "group_submission": False},
        "submission_method": "upload",
        "users": [{"email": email, "id": 1234, "name": email.split("@")[0].title()}],
        "previous_submissions": [],
    }))
    for name, text in files.items():
        (submission / name).write_text(text)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(AUTOGRADER_ROOT=str(root), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    environment.pop("VAEQUIZ_PYTHON", None)
    done = subprocess.run([str(root / "source" / "run_autograder")], env=environment, cwd=root,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    results_json = json.loads((results / "results.json").read_text())
    assert results_json["output"] == "", results_json["output"]
    tests = results_json["tests"]
    assert all(set(t) == {"name", "score", "max_score", "output", "visibility"} for t in tests)
    assert results_json["score"] == round(sum(t["score"] for t in tests), 6)
    return results_json


def by_question(results: dict) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for test in results["tests"]:
        grouped.setdefault(test["name"].split(":")[0], []).append(test)
    return grouped


@pytest.mark.slow
def test_autograder_built_from_setup_sh_alone_scores_right_wrong_and_empty_submissions(tmp_path: Path) -> None:
    """What Gradescope does: unzip into /autograder/source, run setup.sh, then run_autograder
    once per submission. Before numpy was a declared dependency, right answers scored 0 here."""
    out = build_autograder(tmp_path, ("kl-a", "kl-b"))
    root = tmp_path / "autograder"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root / "source")  # as Gradescope's unzip: setup.sh sets the modes
    venv = autograder_environment(root / "source" / "setup.sh")
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import importlib.metadata as m, sys, torch; "
                       "print(torch.version.cuda, sys.prefix != sys.base_prefix, "
                       "sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].lower().startswith('nvidia')))"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={"PATH": os.environ["PATH"]})
    assert probe.stdout.split() == ["None", "True", "[]"], probe.stdout + probe.stderr  # CPU torch, no CUDA
    isolated = subprocess.run([python, "-c", "import vaequiz"], capture_output=True, cwd=tmp_path,
                              env={"PATH": os.environ["PATH"]}, timeout=300)
    assert isolated.returncode != 0  # nothing from this machine's site-packages leaks in

    body = skeleton_data("code", "x")
    right = run_autograder(root, venv, {"kl-a.py": body["reference"], "kl-b.py": body["reference"]})
    assert right["score"] == 6.0
    for question, tests in by_question(right).items():
        assert round(sum(t["max_score"] for t in tests), 6) == 3.0, question
        assert all(t["score"] == t["max_score"] and t["output"] == "passed" for t in tests), tests

    wrong = run_autograder(root, venv, {"kl-a.py": body["mutants"][0]["code"],  # sums over the batch too
                                        "kl-b.py": "kl = torch.sum(mu\n"})
    graded = by_question(wrong)
    failed = [t for t in graded["kl-a"] if t["score"] == 0]
    assert failed and all(t["output"] and t["output"] != "passed" for t in failed)
    assert 0 <= sum(t["score"] for t in graded["kl-a"]) < 3.0
    assert sum(t["score"] for t in graded["kl-b"]) == 0 and "line 1" in graded["kl-b"][0]["output"]
    assert wrong["score"] < 3.0

    empty = run_autograder(root, venv, {})
    assert empty["score"] == 0
    assert set(by_question(empty)) == {"kl-a", "kl-b"}
    for question in ("kl-a", "kl-b"):
        [missing] = by_question(empty)[question]
        assert missing["max_score"] == 3.0 and f"upload your answer as {question}.py" in missing["output"]


@settings(max_examples=200, deadline=None)
@given(points=st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda p: round(p, 2)),
       weights=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 7.0]), min_size=1, max_size=12),
       passed=st.data())
def test_check_shares_add_up_to_the_question_points(points: float, weights: list[float], passed: st.DataObject) -> None:
    checks = [{"name": f"c{i}", "points": w, "passed": passed.draw(st.booleans())} for i, w in enumerate(weights)]
    tests = gradescope_run.tests_for("q", points, {"checks": checks}, "")
    assert round(sum(t["max_score"] for t in tests), 6) == points
    if all(c["passed"] for c in checks):
        assert round(sum(t["score"] for t in tests), 6) == points
    assert all(t["max_score"] >= 0 for t in tests)


def oldest_python() -> str:
    """The oldest Python pyproject.toml admits: what Gradescope's default image runs (3.10)."""
    [version] = re.findall(r'^requires-python = ">=(\d+\.\d+)"', (REPO / "pyproject.toml").read_text(), re.M)
    return version


def vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    """vermin's verdict on the oldest Python; a file it cannot parse is a failure too (vermin
    parses with this interpreter and reports newer syntax as an error, yet exits 0)."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
         f"--target={oldest_python()}-", "--violations", "--eval-annotations", "--no-tips",
         "--exclude-regex", r"/tests/corpus/", *map(str, paths)],
        capture_output=True, text=True, timeout=600)
    if done.returncode == 0 and "error:" in done.stdout:
        done.returncode = 1
    return done


def test_the_code_and_the_bank_snippets_need_nothing_newer_than_the_oldest_python(tmp_path: Path) -> None:
    """Gradescope's default image runs Python 3.10: vaequiz, the reference implementation, the
    tests and the bank's snippets (run in the sandbox by the same interpreter) must too."""
    assert oldest_python() == "3.10"
    snippets = tmp_path / "snippets"
    snippets.mkdir()
    for question in load_bank(REPO / "question_bank").questions:
        if isinstance(question, CodeQuestion):
            sources = [question.reference, question.starter or ""] + [m.code for m in question.mutants]
            for number, source in enumerate(sources):
                (snippets / f"{question.id.replace('-', '_')}_{number}.py").write_text(source)
    assert len(list(snippets.iterdir())) > 20
    done = vermin(REPO / "vaequiz", REPO / "reference_impl", REPO / "tests", REPO / "bench", snippets)
    assert done.returncode == 0, done.stdout + done.stderr
    # The same check refuses each 3.11-only feature, and syntax it cannot parse.
    for newer in ("from enum import StrEnum", "from typing import Self", "import tomllib",
                  "try:\n    pass\nexcept* ValueError:\n    pass", "import datetime\nprint(datetime.UTC)",
                  "def same[T](x: T) -> T:\n    return x"):
        (snippets / "newer.py").write_text(newer + "\n")
        assert vermin(snippets / "newer.py").returncode != 0, newer


def test_the_str_enum_stand_in_prints_as_its_value_like_enum_str_enum() -> None:
    """What enum.StrEnum (3.11) gives and the code relies on (CLI choices, YAML, HTML, JSON)."""
    from vaequiz.compat import StrEnum

    mode = StrEnum("Mode", {"exam": "exam", "key": "key"})
    exam = mode("exam")
    assert (str(exam), f"{exam}", f"{exam:>6}", format(exam), exam + "!", json.dumps(exam)) == \
           ("exam", "exam", "  exam", "exam", "exam!", '"exam"')
    assert exam == "exam" and isinstance(exam, str) and mode["key"] is mode("key")


LAYER = {
    "id": "layer-params", "kind": "numeric", "topics": ["architecture"], "difficulty": "beginner",
    "source": "original", "params": {"I": [784, 1024, 3072], "O": [128, 256, 400, 512]},
    "prompt": "How many parameters does `nn.Linear({{ I }}, {{ O }})` have?",
    "answer": "I * O + O", "explanation": "{{ I }} x {{ O }} weights plus {{ O }} biases.",
}


def _parametric_bank(tmp_path: Path) -> Path:
    bank = tmp_path / "bank"
    done = runner.invoke(app, ["new", "code", "--id", "kl-a", "--file", str(bank / "code.yaml")])
    assert done.exit_code == 0, done.stderr
    [code] = yaml.safe_load((bank / "code.yaml").read_text())
    code["params"] = {"N": [2, 4]}  # a code question showing the student's example size
    code["prompt"] += "\n\nFor example, a batch of {{ N }} rows."
    (bank / "code.yaml").write_text(yaml.safe_dump([code], sort_keys=False))
    (bank / "params.yaml").write_text(json.dumps([LAYER]))
    return bank


def _two_students(bank: Path) -> dict[str, float]:
    """Two emails whose numbers differ, with each one's right answer."""
    from vaequiz.bank.parametric import bind, draw_for

    question = load_bank(bank).get("layer-params")
    answers: dict[str, float] = {}
    for n in range(50):
        email = f"student{n}@example.com"
        answer = bind(question, draw_for(question, "question-bank", 0, email)).answer
        if answer not in answers.values():
            answers[email] = answer
        if len(answers) == 2:
            return answers
    raise AssertionError("no two students with different numbers")


def test_grade_with_a_students_numbers_on_the_command_line(cli, tmp_path: Path) -> None:
    """`vaequiz grade --student` (what the autograder runs) grades a parametric question with
    the numbers that student's page shows; without --student it says how to give them."""
    bank = _parametric_bank(tmp_path)
    (ada, ada_answer), (bob, bob_answer) = _two_students(bank).items()
    answer = tmp_path / "answer.txt"
    answer.write_text(f"{ada_answer:g}")
    done = cli("grade", "layer-params", str(answer), "--bank", str(bank), "--student", ada, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["passed"] and set(result["params"]) == {"I", "O"}
    done = cli("grade", "layer-params", str(answer), "--bank", str(bank), "--student", bob, "--json")
    assert done.returncode == 1 and "for your numbers, I = " in json.loads(done.stdout)["checks"][0]["message"]
    done = cli("grade", "layer-params", str(answer), "--bank", str(bank))
    assert done.returncode == 1 and "give --student" in done.stderr and "Traceback" not in done.stderr


def test_export_carries_parametric_questions_to_the_autograder(tmp_path: Path) -> None:
    bank = _parametric_bank(tmp_path)
    out = tmp_path / "autograder.zip"
    done = runner.invoke(app, ["export", "--format", "gradescope", "--bank", str(bank), "-o", str(out)])
    assert done.exit_code == 0, done.stderr
    assert "layer-params: parametric; the autograder grades each student with their own numbers" in done.stderr
    assert "fixed draw" not in done.stderr
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("vaequiz_autograder.json"))
    assert config["questions"] == [
        {"id": "kl-a", "points": 3.0, "parametric": True, "file": "kl-a.py"},
        {"id": "layer-params", "points": 1.0, "parametric": True, "file": "layer-params.txt"},
    ]


@pytest.mark.slow
def test_autograder_grades_each_student_with_their_own_numbers(tmp_path: Path) -> None:
    """Two students with different numbers: each one's right answer scores full marks for them
    and zero for the other, because run_autograder draws the submitter's numbers (from
    submission_metadata.json) exactly as their page did."""
    bank = _parametric_bank(tmp_path)
    out = tmp_path / "autograder.zip"
    done = runner.invoke(app, ["export", "--format", "gradescope", "--bank", str(bank), "-o", str(out)])
    assert done.exit_code == 0, done.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root / "source")
    venv = autograder_environment(root / "source" / "setup.sh")
    students = _two_students(bank)
    reference = skeleton_data("code", "x")["reference"]
    for email, own in students.items():
        [other] = [answer for student, answer in students.items() if student != email]
        right = by_question(run_autograder(root, venv, {"layer-params.txt": f"{own:g}", "kl-a.py": reference}, email))
        assert [t["score"] for t in right["layer-params"]] == [1.0], right["layer-params"]
        assert "graded with your numbers: I = " in right["layer-params"][0]["output"]
        assert round(sum(t["score"] for t in right["kl-a"]), 6) == 3.0  # a parametric code question too
        assert "graded with your numbers: N = " in right["kl-a"][0]["output"]
        wrong = by_question(run_autograder(root, venv, {"layer-params.txt": f"{other:g}"}, email))
        assert [t["score"] for t in wrong["layer-params"]] == [0.0], wrong["layer-params"]
        assert "for your numbers, I = " in wrong["layer-params"][0]["output"]
    (root / "submission_metadata.json").unlink()
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(AUTOGRADER_ROOT=str(root), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(root / "source" / "run_autograder")], env=environment, check=True, timeout=900)
    unknown = by_question(json.loads((root / "results" / "results.json").read_text()))
    assert unknown["layer-params"][0]["score"] == 0 and "your numbers are unknown" in unknown["layer-params"][0]["output"]
