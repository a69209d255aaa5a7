"""Benchmark: an exam burst against a real `vaequiz serve`, with `vaequiz grade-sheets` on the
same answers as the baseline.

N simulated students (default 300) work over HTTP against a `vaequiz serve` subprocess: each
signs in with the link `vaequiz links` printed, opens the exam, types its answers (saved to the
server three times, as the page's autosave does) and submits all of them, code included, within
``--window`` seconds (default 60; the submits fall in its last ``--submit-spread`` seconds, the
end of an exam), then polls the status API as the page does until every answer is graded.
Answers are drawn, right and wrong, from the bundled sample sheets and the code corpus
(tests/corpus), and written in the student's own page letters (options are shuffled per
student).

Reported: answers graded per second (from the first submit to the last grade), the time from
submit to graded per answer (p50, p95; light questions, i.e. not code, and code apart), and
that nothing was lost: every submitted answer has exactly one result, checked in the database,
and the instructor's results.jsonl download gives every answer the points grade-sheets gives it.
Then the sheets each page would have saved go through `vaequiz grade-sheets` in the same run
(after the server stopped, the same number of workers), and the ratio of the two rates is
printed. The load average is printed with the figures: the machine may be shared.

    python bench/bench_serve.py [--students 300] [--window 60] [--submit-spread 5] [--workers N]
                                [--quiz Q.quiz.yaml] [--db URL] [--broker URL [--broker-workers 2]]

With ``--broker URL`` the server is started with ``--broker URL`` and ``--broker-workers``
`vaequiz worker --broker URL --db URL --workers W` processes grade (W: ``--workers`` split
between them); the bench stops with a message if this vaequiz has no such options.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402  (the test extra; `bash .ci/setup test` installs it)

from vaequiz.bank.loader import load_bank  # noqa: E402
from vaequiz.bank.models import CodeQuestion, MultipleChoice  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
SAMPLES = ROOT / "question_bank" / "samples"
POLL_S = 1.5
"""How often a student's page asks for the grading state: every 1.5 s, less often (up to 10 s)
while far back in a long queue, as serve.js does."""
FALLBACK = {"mcq": "A", "shape": "(1, 2)", "numeric": "0", "short_answer": "I do not know.", "code": "pass\n"}
"""An answer for a question without samples: wrong, but readable."""


class BenchError(Exception):
    """Something the bench cannot run with; the message says what to do."""


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def vaequiz(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaequiz", *args]


ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# ---------------------------------------------------------------------------- answers

def answer_pools(bank_path: Path) -> dict[str, list[Any]]:
    """Question id -> candidate answers in the bank's letters: the sample sheets' answers (right
    and wrong), every option letter for multiple choice, the corpus's snippets (hostile ones
    left out) for code."""
    bank = load_bank(bank_path)
    pools: dict[str, list[Any]] = {}
    for path in sorted(SAMPLES.glob("*.json")):
        sheet = json.loads(path.read_text(encoding="utf-8"))
        labels = sheet.get("labels", {})
        for question, value in sheet["answers"].items():
            mapping = labels.get(question)
            if mapping:
                value = [mapping[v] for v in value] if isinstance(value, list) else mapping.get(value, value)
            pools.setdefault(question, []).append(value)
    for question in bank.questions:
        if isinstance(question, MultipleChoice) and not question.multiple:
            pools.setdefault(question.id, []).extend(o.label for o in question.options)
    for path in sorted(CORPUS.rglob("*.py")):
        if path.parent.name == "hostile":
            continue
        text = path.read_text(encoding="utf-8")
        found = re.search(r"^# question: (.*)$", text, re.M)
        if found:
            pools.setdefault(found.group(1).strip(), []).append(text)
    return pools


def in_page_letters(value: Any, page_to_bank: Optional[dict[str, str]]) -> Any:
    """A bank-letter answer as the student's page shows it (its options are shuffled)."""
    if not page_to_bank:
        return value
    bank_to_page = {bank: page for page, bank in page_to_bank.items()}
    if isinstance(value, list):
        return sorted(bank_to_page.get(v, v) for v in value)
    return bank_to_page.get(value, value)


# ---------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own session (so it and its sandbox workers stop together)."""
    return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def check_broker_cli() -> None:
    """Fail clearly when this vaequiz has no Celery path yet."""
    serve = subprocess.run(vaequiz("serve", "--help"), cwd=ROOT, env=ENV, capture_output=True, text=True)
    worker = subprocess.run(vaequiz("worker", "--help"), cwd=ROOT, env=ENV, capture_output=True, text=True)
    if "--broker" not in serve.stdout or worker.returncode != 0:
        raise BenchError("--broker needs `vaequiz serve --broker URL` and `vaequiz worker --broker URL --db URL "
                         "--workers N`, which this vaequiz does not have; run the bench without --broker")


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise BenchError(f"vaequiz serve stopped (exit {process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"vaequiz serve did not answer within {limit_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


# ---------------------------------------------------------------------------- students

@dataclass
class Student:
    name: str
    link: str
    start_at: float
    submit_at: float
    attempt: int = 0
    page: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    submitted: float = 0.0
    seen_graded: float = 0.0
    saves: int = 0
    error: Optional[str] = None


def hidden_field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    if not found:
        raise BenchError(f"no {name} field in the page: {html[:300]}")
    return found.group(1)


def script_json(html: str, element_id: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    if not found:
        raise BenchError(f"no #{element_id} in the quiz page")
    return json.loads(found.group(1))


async def send(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, sent again (as a browser does) when the connection broke, e.g. a kept-alive
    one the server had just closed; three tries."""
    for attempt in range(3):
        try:
            return await client.request(method, path, **kwargs)
        except httpx.TransportError:
            if attempt == 2:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def run_student(student: Student, base: str, pools: dict[str, list[Any]], clock0: float, rng: random.Random,
                      patience_s: float) -> None:
    """Sign in, open the exam, three autosaves, submit, poll until every answer is graded."""
    await asyncio.sleep(max(0.0, clock0 + student.start_at - time.time()))
    async with httpx.AsyncClient(base_url=base, timeout=120, follow_redirects=False) as client:
        form = await send(client, "GET", student.link.replace(base, ""))
        csrf = hidden_field(form.text, "csrf")
        signed = await send(client, "POST", "/signin", data={"token": hidden_field(form.text, "token"), "csrf": csrf})
        if signed.status_code != 303:
            raise BenchError(f"{student.name}: sign-in answered {signed.status_code}: {signed.text[:200]}")
        page = await send(client, "GET", signed.headers["location"])
        quiz_data, serve_data = script_json(page.text, "quiz-data"), script_json(page.text, "serve-data")
        student.attempt = serve_data["attempt"]
        student.page = quiz_data
        headers = {"X-CSRF-Token": serve_data["csrf"]}
        items = [item for item in quiz_data["items"] if item["kind"] != "flashcard"]
        for item in items:
            pool = pools.get(item["id"]) or [FALLBACK[item["kind"]]]
            student.answers[item["id"]] = in_page_letters(rng.choice(pool), quiz_data.get("labels", {}).get(item["id"]))
        # autosaves: a third of the answers, two thirds, all (unanswered ones as null, as the page sends)
        base_path = f"/api/attempts/{student.attempt}"
        for part in (1, 2, 3):
            step = (student.submit_at - student.start_at) / 4
            await asyncio.sleep(max(0.0, clock0 + student.start_at + part * step - time.time()))
            shown = {item["id"]: (student.answers[item["id"]] if n < part * len(items) / 3 else None)
                     for n, item in enumerate(items)}
            saved = await send(client, "POST", base_path + "/answers", json={"answers": shown}, headers=headers)
            if saved.status_code != 200:
                raise BenchError(f"{student.name}: autosave answered {saved.status_code}: {saved.text[:200]}")
            student.saves += 1
        await asyncio.sleep(max(0.0, clock0 + student.submit_at - time.time()))
        student.submitted = time.time()
        sent = await send(client, "POST", base_path + "/submit", json={"answers": student.answers}, headers=headers)
        if sent.status_code == 409 and "already submitted" in sent.text:  # a resent submit whose first copy arrived
            sent = await send(client, "GET", base_path + "/status")
        if sent.status_code != 200:
            raise BenchError(f"{student.name}: submit answered {sent.status_code}: {sent.text[:200]}")
        while True:
            status = (await send(client, "GET", base_path + "/status")).json()
            states = status["questions"]
            if len(states) == len(items) and all(s["state"] == "graded" for s in states.values()):
                student.seen_graded = time.time()
                return
            if time.time() - student.submitted > patience_s:
                raise BenchError(f"{student.name}: not all answers graded {patience_s:.0f} s after the submit: {states}")
            deepest = max((s["position"] or 0 for s in states.values()), default=0)
            await asyncio.sleep(min(10.0, max(POLL_S, deepest / 100)))


async def burst(students: list[Student], base: str, pools: dict[str, list[Any]], seed: int, patience_s: float) -> None:
    clock0 = time.time() + 1.0
    rng = random.Random(seed)

    async def one(student: Student) -> None:
        try:
            await run_student(student, base, pools, clock0, random.Random(rng.random()), patience_s)
        except (BenchError, httpx.HTTPError, KeyError, ValueError) as err:
            student.error = f"{type(err).__name__}: {err}"

    await asyncio.gather(*(one(s) for s in students))


# ---------------------------------------------------------------------------- checks

def as_utc(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class ServerFigures:
    graded: int
    lost: int
    twice: int
    first_submit: float
    last_graded: float
    latency_light: list[float]
    latency_code: list[float]


def check_database(url: str, quiz: str, code_ids: set[str]) -> ServerFigures:
    """Every submitted answer (the newest revision of each question of every submitted attempt)
    graded exactly once; times from the submit to each result."""
    from sqlalchemy import func, select

    from vaequiz.serve.db import attempts, jobs, open_engine, results, revisions

    engine = open_engine(url)
    with engine.connect() as db:
        submitted = {row.id: as_utc(row.submitted_at) for row in db.execute(
            select(attempts.c.id, attempts.c.submitted_at).where(attempts.c.quiz == quiz, attempts.c.submitted_at.is_not(None)))}
        newest = select(revisions.c.attempt_id, revisions.c.question, func.max(revisions.c.id).label("id")) \
            .group_by(revisions.c.attempt_id, revisions.c.question).subquery()
        final = {(row.attempt_id, row.question): row.id for row in db.execute(select(newest))
                 if row.attempt_id in submitted}
        per_revision: dict[int, int] = {}
        graded_at: dict[int, float] = {}
        for row in db.execute(select(results.c.revision_id, results.c.graded_at)):
            per_revision[row.revision_id] = per_revision.get(row.revision_id, 0) + 1
            graded_at[row.revision_id] = as_utc(row.graded_at)
        unfinished = db.execute(select(func.count()).select_from(jobs).where(jobs.c.state != "done")).scalar_one()
    engine.dispose()
    lost = sum(1 for revision in final.values() if per_revision.get(revision, 0) == 0) + unfinished
    twice = sum(1 for revision in final.values() if per_revision.get(revision, 0) > 1)
    light, code = [], []
    for (attempt, question), revision in final.items():
        if revision in graded_at:
            (code if question in code_ids else light).append(graded_at[revision] - submitted[attempt])
    times = [graded_at[r] for r in final.values() if r in graded_at]
    return ServerFigures(len(times), lost, twice, min(submitted.values(), default=0.0), max(times, default=0.0), light, code)


def instructor_results(base: str, email: str, password: str, quiz: str) -> list[dict[str, Any]]:
    """The instructor's results.jsonl download."""
    with httpx.Client(base_url=base, timeout=120) as client:
        csrf = hidden_field(client.get("/login").text, "csrf")
        signed = client.post("/login", data={"email": email, "password": password, "csrf": csrf})
        if signed.status_code != 303:
            raise BenchError(f"the instructor could not sign in ({signed.status_code})")
        text = client.get(f"/instructor/quiz/{quiz}/results.jsonl").text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_sheets(folder: Path, students: list[Student]) -> list[Path]:
    """The sheet each student's page would have saved: its variant, letters, numbers, answers."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for student in students:
        page = student.page
        sheet = {
            "student": student.name, "quiz": page["quiz"], "variant": page["variant"], "labels": page.get("labels", {}),
            "mode": page["mode"], "order": [item["id"] for item in page["items"]],
            "answers": {q: v for q, v in student.answers.items() if v is not None},
        }
        if page.get("params"):
            sheet["params"] = page["params"]
        path = folder / f"{student.name}.json"
        path.write_text(json.dumps(sheet), encoding="utf-8")
        paths.append(path)
    return paths


def points_of(items: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(item["student"], item["question"]): item["points"] for item in items}


# ---------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--window", type=float, default=60, help="seconds in which every student signs in, saves and submits")
    parser.add_argument("--submit-spread", type=float, default=5, help="the submits fall in the window's last SECONDS")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="grading workers (server and grade-sheets)")
    parser.add_argument("--quiz", type=Path, default=ROOT / "question_bank" / "vae-week.quiz.yaml")
    parser.add_argument("--bank", type=Path, default=ROOT / "question_bank")
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--broker", help="Celery broker URL: `vaequiz serve --broker` and `vaequiz worker` processes grade")
    parser.add_argument("--broker-workers", type=int, default=2, help="`vaequiz worker` processes with --broker")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--patience", type=float, default=900, help="seconds a student waits for its grades (a hang guard)")
    args = parser.parse_args()
    if args.students < 1 or args.workers < 1 or args.submit_spread > args.window:
        parser.error("--students and --workers must be at least 1, and --submit-spread at most --window")
    try:
        return bench(args)
    except BenchError as err:
        print(f"bench_serve: {err}", file=sys.stderr)
        return 2


def bench(args: argparse.Namespace) -> int:
    if args.broker:
        check_broker_cli()
    bank = load_bank(args.bank)
    code_ids = {q.id for q in bank.questions if isinstance(q, CodeQuestion)}
    pools = answer_pools(args.bank)
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, torch CPU; workers {args.workers}; {load()}")
    with tempfile.TemporaryDirectory(prefix="vaequiz-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        url = args.db or f"sqlite:///{tmp / 'serve.db'}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        roster = tmp / "roster.csv"
        names = [f"s{i:04d}" for i in range(1, args.students + 1)]
        roster.write_text("student\n" + "".join(n + "\n" for n in names), encoding="utf-8")
        email, password = "bench@example.org", "bench password " + str(args.seed)
        made = subprocess.run(vaequiz("serve", "--create-instructor", email, "--db", url), input=password + "\n",
                              cwd=ROOT, env=ENV, capture_output=True, text=True)
        if made.returncode != 0:
            raise BenchError(f"vaequiz serve --create-instructor failed: {made.stderr.strip()}")
        made = subprocess.run(vaequiz("links", str(roster), "--quiz", str(args.quiz), "--db", url, "--base-url", base),
                              cwd=ROOT, env=ENV, capture_output=True, text=True)
        if made.returncode != 0:
            raise BenchError(f"vaequiz links failed: {made.stderr.strip()}")
        links = {row["student"]: row["link"] for row in csv.DictReader(io.StringIO(made.stdout))}
        quiz_id = re.search(r"^id:\s*(\S+)", args.quiz.read_text(encoding="utf-8"), re.M).group(1)

        rng = random.Random(args.seed)
        students = []
        for name in names:
            start_at = rng.uniform(0, (args.window - args.submit_spread) / 2)
            students.append(Student(name, links[name], start_at, rng.uniform(args.window - args.submit_spread, args.window)))

        log = tmp / "server.log"
        serve = vaequiz("serve", "--bank", str(args.bank), "--quiz", str(args.quiz), "--db", url, "--port", str(port),
                        "--workers", str(0 if args.broker else args.workers))
        if args.broker:
            serve += ["--broker", args.broker]
        server = start(serve, log)
        workers = []
        try:
            wait_ready(base, server, log)
            if args.broker:
                each = max(1, args.workers // args.broker_workers)
                workers = [start(vaequiz("worker", "--broker", args.broker, "--db", url, "--workers", str(each)), tmp / f"worker-{n}.log")
                           for n in range(args.broker_workers)]
            how = f"{args.broker_workers} `vaequiz worker` processes over {args.broker}" if args.broker else f"{args.workers} grading workers in the server"
            print(f"burst: {args.students} students, {args.window:.0f} s window, submits in the last "
                  f"{args.submit_spread:.0f} s; {how}; {url.split(':')[0]}")
            began = time.perf_counter()
            asyncio.run(burst(students, base, pools, args.seed, args.patience))
            burst_s = time.perf_counter() - began
            failed = [s for s in students if s.error]
            for student in failed[:5]:
                print(f"  {student.name}: {student.error}")
            served = instructor_results(base, email, password, quiz_id)
        finally:
            for process in workers:
                stop(process)
            stop(server)
        figures = check_database(url, quiz_id, code_ids)
        print(f"students: {args.students - len(failed)} finished, {len(failed)} failed; burst took {burst_s:.1f} s; {load()}")
        answers = figures.graded
        server_s = figures.last_graded - figures.first_submit
        server_rate = answers / server_s if server_s > 0 else float("nan")
        print(f"server: {answers} answers graded in {server_s:.2f} s from the first submit = {server_rate:.1f} answers/s")
        print(f"lost: {figures.lost}; graded more than once: {figures.twice}")
        for label, values in (("light questions (not code)", figures.latency_light), ("code questions", figures.latency_code)):
            if values:
                print(f"submit to graded, {label}: p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
                      f"max {max(values):.2f} s ({len(values)} answers)")
        seen = [s.seen_graded - s.submitted for s in students if s.seen_graded]
        if seen:
            print(f"as the pages saw it (polling every {POLL_S:g}-10 s): all answers graded after p50 "
                  f"{percentile(seen, 0.5):.2f} s, p95 {percentile(seen, 0.95):.2f} s")

        sheets = write_sheets(tmp / "sheets", [s for s in students if s.page])
        out = tmp / "graded"
        began = time.perf_counter()
        done = subprocess.run(vaequiz("grade-sheets", *map(str, sheets), "--out", str(out), "--bank", str(args.bank),
                                      "--quiz", str(args.quiz), "--workers", str(args.workers)), cwd=ROOT, env=ENV, capture_output=True, text=True)
        sheets_s = time.perf_counter() - began
        if done.returncode != 0:
            raise BenchError(f"grade-sheets failed: {done.stderr.strip()[-2000:]}")
        baseline = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        baseline_rate = len(baseline) / sheets_s
        print(f"grade-sheets (the same answers, whole command): {len(baseline)} answers in {sheets_s:.2f} s = {baseline_rate:.1f} answers/s; {load()}")
        theirs, ours = points_of(baseline), points_of(served)
        differ = sorted(key for key in theirs.keys() | ours.keys() if theirs.get(key) != ours.get(key))
        print(f"results.jsonl download: {len(ours)} answers; points differing from grade-sheets: {len(differ)}"
              + (f" (first: {differ[:3]})" if differ else ""))
        print(f"ratio: server {server_rate / baseline_rate:.2f}x grade-sheets' throughput")
        ok = not failed and figures.lost == 0 and figures.twice == 0 and not differ and len(ours) == len(theirs) == answers
        print("checks: " + ("every submitted answer graded exactly once, with grade-sheets' points" if ok else "FAILED"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
