#!/usr/bin/env python3
"""Gradescope's ``run_autograder``: grade each question's file with `vaequiz grade`.

A parametric question is graded with the submitting student's own numbers: the student is read
from Gradescope's ``submission_metadata.json`` (the first user's field the config names, email
by default) and `vaequiz grade --student` draws their numbers as their page did.

Shipped verbatim in the autograder zip. It uses only the standard library and never raises:
whatever happens, ``results.json`` is written, so a student always sees why they scored what
they did. Paths follow Gradescope's layout under ``/autograder``; the environment overrides
them (``AUTOGRADER_ROOT``, ``AUTOGRADER_SOURCE``, ``AUTOGRADER_SUBMISSION``,
``AUTOGRADER_RESULTS``) and the interpreter (``VAEQUIZ_PYTHON``), so the same script runs
locally against a folder laid out like /autograder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CONFIG_FILE = "vaequiz_autograder.json"
GRADE_TIMEOUT_S = 900


def _paths() -> tuple[Path, Path, Path, Path]:
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    source = Path(os.environ.get("AUTOGRADER_SOURCE", root / "source"))
    submission = Path(os.environ.get("AUTOGRADER_SUBMISSION", root / "submission"))
    results = Path(os.environ.get("AUTOGRADER_RESULTS", root / "results"))
    return source, submission, results, root / "submission_metadata.json"


def find_submission(submission: Path, file_name: str, only_question: bool) -> Path | None:
    """``file_name`` anywhere in the submission; with one question, any single file of its kind."""
    named = sorted(submission.rglob(file_name))
    if named:
        return named[0]
    same_kind = sorted(submission.rglob("*" + Path(file_name).suffix))
    if only_question and len(same_kind) == 1:
        return same_kind[0]
    return None


def submitter(metadata: Path, field: str) -> tuple[str | None, str]:
    """The student id the pages were built for, from Gradescope's submission metadata, or None
    and why not. A group submission is graded with its first member's numbers."""
    try:
        users = json.loads(metadata.read_text(encoding="utf-8")).get("users") or []
    except (OSError, ValueError, AttributeError) as err:
        return None, f"cannot read {metadata.name} ({type(err).__name__}), so your numbers are unknown"
    if not users or not isinstance(users[0], dict) or users[0].get(field) in (None, ""):
        return None, f"{metadata.name} names no submitter with a {field}, so your numbers are unknown"
    return str(users[0][field]).strip(), ""


def grade_one(source: Path, question_id: str, answer: Path, *extra: str) -> tuple[dict[str, Any] | None, str]:
    """Run `vaequiz grade --json`; its JSON, or None and what went wrong."""
    python = os.environ.get("VAEQUIZ_PYTHON", sys.executable or "python3")
    environment = dict(os.environ)
    library = str(source / "lib")
    environment["PYTHONPATH"] = library + os.pathsep + environment.get("PYTHONPATH", "")
    command = [python, "-m", "vaequiz", "grade", question_id, str(answer), "--json",
               "--bank", str(source / "bank"), *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=GRADE_TIMEOUT_S,
                              env=environment, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"grading took longer than {GRADE_TIMEOUT_S} s"
    except OSError as err:
        return None, f"cannot start the grader: {err}"
    try:
        return json.loads(done.stdout), ""
    except json.JSONDecodeError:
        return None, (done.stderr.strip() or done.stdout.strip())[-2000:] or f"exit code {done.returncode}"


def tests_for(question_id: str, points: float, graded: dict[str, Any] | None, problem: str) -> list[dict[str, Any]]:
    """One Gradescope test per check, worth its share of the question's points."""
    if graded is None or not graded.get("checks"):
        reason = problem or (graded or {}).get("error") or "the answer could not be graded"
        return [{"name": question_id, "score": 0.0, "max_score": points, "output": reason,
                 "visibility": "visible"}]
    checks = graded["checks"]
    total = sum(float(c.get("points", 1.0)) for c in checks) or 1.0
    # Shares rounded as results.json writes them; the last takes the rest, so a right answer
    # scores exactly the question's points (not 8.000002 of 8).
    shares = [round(points * float(c.get("points", 1.0)) / total, 6) for c in checks]
    shares[-1] = round(points - sum(shares[:-1]), 6)
    tests = []
    for check, share in zip(checks, shares):
        if check.get("passed"):
            output = "passed"
        elif check.get("hidden"):
            output = "failed (hidden check: details are not shown)"
        else:
            output = check.get("message") or "failed"
        tests.append({
            "name": f"{question_id}: {check.get('name', 'check')}",
            "score": share if check.get("passed") else 0.0,
            "max_score": share,
            "output": output,
            "visibility": "visible",
        })
    if graded.get("error"):
        tests[0]["output"] = f"{graded['error']}\n{tests[0]['output']}"
    return tests


def main() -> int:
    source, submission, results, metadata = _paths()
    payload: dict[str, Any] = {"score": 0.0, "tests": [], "output": ""}
    try:
        config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
        questions = config["questions"]
        for question in questions:
            question_id, points = question["id"], float(question["points"])
            file_name = question.get("file", f"{question_id}.py")
            answer = find_submission(submission, file_name, len(questions) == 1)
            student, why = None, ""
            if question.get("parametric"):
                student, why = submitter(metadata, config.get("student_field", "email"))
            if answer is None:
                tests = [{"name": question_id, "score": 0.0, "max_score": points,
                          "output": f"no file {file_name} in the submission; upload your "
                                    f"answer as {file_name}", "visibility": "visible"}]
            elif question.get("parametric") and student is None:
                tests = tests_for(question_id, points, None, why)
            else:
                extra = ["--student", student, "--quiz-id", str(config["quiz_id"]),
                         "--seed", str(config["seed"])] if student is not None else []
                graded, problem = grade_one(source, question_id, answer, *extra)
                tests = tests_for(question_id, points, graded, problem)
                if graded is not None and graded.get("params"):
                    numbers = ", ".join(f"{k} = {v}" for k, v in graded["params"].items())
                    tests[0]["output"] = f"graded with your numbers: {numbers}\n{tests[0]['output']}"
            payload["tests"].extend(tests)
        payload["score"] = round(sum(t["score"] for t in payload["tests"]), 6)
        for test in payload["tests"]:
            test["score"], test["max_score"] = round(test["score"], 6), round(test["max_score"], 6)
    except Exception as err:  # the student must always get a results file
        payload["output"] = f"The autograder failed: {type(err).__name__}: {err}"
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
