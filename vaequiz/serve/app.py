"""The ASGI app (Starlette): sign-in, the student's quiz pages and answer API, the instructor's
dashboard and downloads. Storage is the database of :mod:`.db`; grading goes through the job
queue of :mod:`.jobs`.

Security on every response: a CSP with a per-request nonce, nosniff, no framing, no referrer
(sign-in links carry tokens), no caching. Every POST checks the CSRF token (double submit: an
HttpOnly SameSite=Strict cookie and the same value in a form field or X-CSRF-Token header).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import jinja2
from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette.concurrency import run_in_threadpool

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import CodeQuestion
from vaequiz.grading.answers import MAX_ANSWER_BYTES
from vaequiz.grading.models import ItemResult
from vaequiz.grading.reports import visible_message, write_gradescope, write_grades_csv
from vaequiz.render.fragments import Mode
from vaequiz.serve import accounts, jobs, regrade
from vaequiz.serve.accounts import AccountError, User
from vaequiz.serve.course import Course, ServedQuiz
from vaequiz.serve.db import attempts, aware, now, releases, results, revisions, users
from vaequiz.serve.regrade import Current
from vaequiz.stats.analysis import StatsInputError, StatsReport, analyse
from vaequiz.stats.report import render_html

SESSION_COOKIE = "vaequiz_session"
CSRF_COOKIE = "vaequiz_csrf"
MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body: a whole quiz of answers, each within the grader's 256 KB."""
DEADLINE_GRACE = timedelta(seconds=30)
"""Saves arriving this late after the time limit still count (a slow network, a debounce)."""
_HERE = Path(__file__).parent


class HttpError(Exception):
    """A request refused with a status and a message the client can show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Settings:
    code_per_minute: int = 30
    """Code answers one student may send for grading per minute (practice and submit)."""
    grading_threads: int = 2


class RateLimiter:
    """A sliding one-minute window per student."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, user_id: int, count: int) -> bool:
        if count == 0:
            return True
        moment = time.monotonic()
        with self._lock:
            seen = self._seen[user_id]
            while seen and seen[0] <= moment - 60:
                seen.popleft()
            if len(seen) + count > self.per_minute:
                return False
            seen.extend([moment] * count)
            return True


class SecurityHeaders:
    """Pure ASGI middleware: a nonce per request (``scope['state']['nonce']``) and the headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce
        headers = [
            (b"content-security-policy", (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
            ).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if scope.get("scheme") == "https":
            headers.append((b"strict-transport-security", b"max-age=31536000"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _script_json(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


_META_CSP = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n?')


class Service:
    """Request handlers over one database, one course and one grading worker."""

    def __init__(self, engine: Engine, course: Course, worker: jobs.Dispatch, settings: Settings) -> None:
        self.engine = engine
        self.course = course
        self.worker = worker
        self.settings = settings
        self.limiter = RateLimiter(settings.code_per_minute)
        self.templates = _templates()
        self.serve_js = (_HERE / "static" / "serve.js").read_text(encoding="utf-8")
        self.dashboard_js = (_HERE / "static" / "dashboard.js").read_text(encoding="utf-8")
        self.plans = regrade.Plans()

    # ------------------------------------------------------------------ plumbing

    def csrf_token(self, request: Request) -> str:
        token = request.cookies.get(CSRF_COOKIE)
        if not token or not re.fullmatch(r"[A-Za-z0-9_-]{20,100}", token):
            token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
            request.state.new_csrf = token
        return token

    def finish(self, request: Request, response: Response) -> Response:
        """Set the CSRF cookie when this request made a new token."""
        new = getattr(request.state, "new_csrf", None)
        if new:
            response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("user", self.user(request))
        context.setdefault("error", None)
        context.setdefault("nonce", request.state.nonce)
        html = self.templates.get_template(template).render(csrf=self.csrf_token(request), **context)
        return self.finish(request, HTMLResponse(html, status_code=status))

    def check_csrf(self, request: Request, given: Optional[str]) -> None:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
            raise HttpError(403, "missing or wrong CSRF token; reload the page and try again")

    async def body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HttpError(413, f"the request is larger than {MAX_BODY_BYTES // 1024 // 1024} MB")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(413, f"the request is larger than {MAX_BODY_BYTES // 1024 // 1024} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    async def form(self, request: Request) -> dict[str, str]:
        """The form fields of a POST, after its CSRF check."""
        from urllib.parse import parse_qs

        raw = await self.body(request)
        try:
            fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            raise HttpError(400, "the form is not UTF-8") from None
        self.check_csrf(request, fields.get("csrf"))
        return fields

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The JSON object of an API call, after its CSRF check."""
        self.check_csrf(request, request.headers.get("x-csrf-token"))
        raw = await self.body(request)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(400, "the body is not JSON (UTF-8)") from None
        if not isinstance(data, dict):
            raise HttpError(422, "the body must be a JSON object")
        return data

    def user(self, request: Request) -> Optional[User]:
        cached = getattr(request.state, "user", False)
        if cached is not False:
            return cached
        token = request.cookies.get(SESSION_COOKIE)
        found = accounts.session_user(self.engine, token) if token else None
        request.state.user = found
        return found

    def student(self, request: Request) -> User:
        found = self.user(request)
        if found is None:
            raise HttpError(401, "sign in first")
        if found.instructor:
            raise HttpError(403, "this is for students; instructors use the dashboard")
        return found

    def instructor(self, request: Request) -> User:
        found = self.user(request)
        if found is None:
            raise HttpError(401, "sign in first")
        if not found.instructor:
            raise HttpError(403, "this page is for the instructor")
        return found

    def sign_in(self, request: Request, user: User, target: str) -> Response:
        token = accounts.open_session(self.engine, user)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https",
            max_age=int(accounts.SESSION_LIFETIME.total_seconds()), path="/",
        )
        return response

    # ------------------------------------------------------------------ people

    async def home(self, request: Request) -> Response:
        found = self.user(request)
        if found is not None and found.instructor:
            return RedirectResponse("/instructor", status_code=303)
        if found is None:
            return self.page(request, "home.html.j2", title="vaequiz")
        listed = []
        with self.engine.connect() as db:
            mine = {row.quiz: row for row in db.execute(select(attempts).where(attempts.c.user_id == found.id))}
        for served in self.course.quizzes.values():
            attempt = mine.get(served.id)
            state = None if attempt is None else ("submitted" if attempt.submitted_at else "started")
            listed.append({"id": served.id, "title": served.quiz.title, "mode": served.mode.value,
                           "time_limit": served.time_limit_min, "state": state})
        return self.page(request, "quizzes.html.j2", title="Your quizzes", quizzes=listed)

    async def signin_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        found = accounts.redeem_link(self.engine, token)
        if found is None:
            return self.page(request, "home.html.j2", status=404, title="vaequiz",
                             error="This sign-in link is unknown or has expired; ask your instructor for a new one.")
        return self.page(request, "signin.html.j2", title="Sign in", token=token, student=found[0].name)

    async def signin(self, request: Request) -> Response:
        fields = await self.form(request)
        found = accounts.redeem_link(self.engine, fields.get("token", ""))
        if found is None:
            return self.page(request, "home.html.j2", status=403, title="vaequiz",
                             error="This sign-in link is unknown or has expired; ask your instructor for a new one.")
        person, quiz = found
        return self.sign_in(request, person, f"/quiz/{quiz}" if quiz and self.course.get(quiz) else "/")

    async def join(self, request: Request) -> Response:
        fields = await self.form(request)
        try:
            person = accounts.join(self.engine, fields.get("code", ""), fields.get("name", ""))
        except AccountError as err:
            return self.page(request, "home.html.j2", status=400, title="vaequiz", error=str(err))
        return self.sign_in(request, person, "/")

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html.j2", title="Instructor sign-in")

    async def login(self, request: Request) -> Response:
        fields = await self.form(request)
        person = accounts.check_instructor(self.engine, fields.get("email", ""), fields.get("password", ""))
        if person is None:
            return self.page(request, "login.html.j2", status=403, title="Instructor sign-in", error="Wrong email or password.")
        return self.sign_in(request, person, "/instructor")

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            accounts.close_session(self.engine, token)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ attempts

    def served(self, quiz_id: str) -> ServedQuiz:
        found = self.course.get(quiz_id)
        if found is None:
            raise HttpError(404, f"no quiz {quiz_id[:80]!r} is served here")
        return found

    def open_attempt(self, person: User, served: ServedQuiz) -> Any:
        with self.engine.begin() as db:
            row = db.execute(select(attempts).where(and_(
                attempts.c.user_id == person.id, attempts.c.quiz == served.id, attempts.c.mode == served.mode.value
            ))).first()
            if row is not None:
                return row
        started = now()
        deadline = started + timedelta(minutes=served.time_limit_min) if served.time_limit_min else None
        try:
            with self.engine.begin() as db:
                db.execute(insert(attempts).values(
                    user_id=person.id, quiz=served.id, mode=served.mode.value, started_at=started, deadline=deadline
                ))
        except IntegrityError:  # the same student opened it twice at once
            pass
        with self.engine.connect() as db:
            return db.execute(select(attempts).where(and_(
                attempts.c.user_id == person.id, attempts.c.quiz == served.id, attempts.c.mode == served.mode.value
            ))).one()

    def attempt(self, request: Request) -> tuple[User, Any, ServedQuiz]:
        """The signed-in student's own attempt named in the path; anyone else's is 404."""
        person = self.student(request)
        raw = request.path_params["attempt"]
        with self.engine.connect() as db:
            row = db.execute(select(attempts).where(and_(attempts.c.id == raw, attempts.c.user_id == person.id))).first()
        if row is None:
            raise HttpError(404, "no such attempt of yours")
        served = self.served(row.quiz)
        return person, self.close_if_expired(row, served), served

    def close_if_expired(self, row: Any, served: ServedQuiz) -> Any:
        """An exam past its time limit (plus grace) is submitted with what was saved."""
        if row.submitted_at is None and row.deadline is not None and now() > aware(row.deadline) + DEADLINE_GRACE:
            self.submit_attempt(row.id, served, {})
            with self.engine.connect() as db:
                row = db.execute(select(attempts).where(attempts.c.id == row.id)).one()
        return row

    def submit_attempt(self, attempt_id: int, served: ServedQuiz, answers: dict[str, Any]) -> bool:
        """Final answers, a job for every graded question and the submit time in one
        transaction; False when it was already submitted."""
        with self.engine.begin() as db:
            marked = db.execute(
                update(attempts).where(and_(attempts.c.id == attempt_id, attempts.c.submitted_at.is_(None)))
                .values(submitted_at=now())
            ).rowcount
            if marked != 1:
                return False
            jobs.save_answers(db, attempt_id, answers)
            jobs.enqueue(db, attempt_id, served.graded_ids)
        self.worker.notify()
        return True

    async def quiz_page(self, request: Request) -> Response:
        person = self.student(request)
        served = self.served(request.path_params["quiz"])
        row = self.close_if_expired(self.open_attempt(person, served), served)
        with self.engine.connect() as db:
            saved = {q: json.loads(v) for q, (_, v) in jobs.latest_revisions(db, row.id).items()}
            graded = bool(jobs.attempt_states(db, row.id))
        conf = {
            "attempt": row.id,
            "csrf": self.csrf_token(request),
            "mode": served.mode.value,
            "submitted": row.submitted_at is not None,
            "graded": graded,
            "deadline": aware(row.deadline).isoformat() if row.deadline else None,
            "answers": saved,
        }
        nonce = request.state.nonce
        html = _META_CSP.sub("", served.page(person.name), count=1)
        html = html.replace("<script>", f'<script nonce="{nonce}">')
        extra = (
            f'<script type="application/json" id="serve-data">{_script_json(conf)}</script>\n'
            f'<script nonce="{nonce}">\n{self.serve_js}</script>\n</body>'
        )
        head, _, tail = html.rpartition("</body>")
        return self.finish(request, HTMLResponse(head + extra + tail))

    def checked_answers(self, served: ServedQuiz, data: dict[str, Any], *, allow_null: bool = True) -> dict[str, Any]:
        answers = data.get("answers")
        if not isinstance(answers, dict):
            raise HttpError(422, "'answers' must be an object mapping question ids to answers")
        for question, value in answers.items():
            if question not in served.questions:
                raise HttpError(422, f"{question[:80]!r} is not a question of quiz {served.id!r}")
            ok = (
                isinstance(value, str)
                or (value is None and allow_null)
                or (isinstance(value, list) and len(value) <= 26 and all(isinstance(v, str) and len(v) <= 8 for v in value))
            )
            if not ok:
                raise HttpError(422, f"the answer to {question!r} must be text or a list of option letters")
            if isinstance(value, str) and len(value.encode("utf-8", "replace")) > MAX_ANSWER_BYTES:
                raise HttpError(413, f"the answer to {question!r} is larger than {MAX_ANSWER_BYTES // 1024} KB")
        return answers

    def rate_check(self, person: User, served: ServedQuiz, answers: dict[str, Any]) -> None:
        code = sum(
            1 for q, v in answers.items()
            if isinstance(served.questions[q], CodeQuestion) and isinstance(v, str) and v.strip()
        )
        if not self.limiter.take(person.id, code):
            raise HttpError(429, f"too many code answers sent for grading; at most {self.limiter.per_minute} a minute, try again shortly")

    async def save(self, request: Request) -> Response:
        person, row, served = self.attempt(request)
        answers = self.checked_answers(served, await self.json_body(request))
        if row.submitted_at is not None:
            raise HttpError(409, "this exam is already submitted; answers can no longer change")
        with self.engine.begin() as db:
            saved = jobs.save_answers(db, row.id, answers)
        return JSONResponse({"saved": sorted(saved), "saved_at": now().isoformat()})

    async def submit(self, request: Request) -> Response:
        person, row, served = self.attempt(request)
        answers = self.checked_answers(served, await self.json_body(request))
        if served.mode is not Mode.exam:
            raise HttpError(409, "practice quizzes are not submitted; ask for grading instead")
        if row.submitted_at is not None:
            raise HttpError(409, "this exam is already submitted")
        self.rate_check(person, served, answers)
        if not self.submit_attempt(row.id, served, answers):
            raise HttpError(409, "this exam is already submitted")
        return JSONResponse({"submitted": True})

    async def grade(self, request: Request) -> Response:
        person, row, served = self.attempt(request)
        answers = self.checked_answers(served, await self.json_body(request), allow_null=False)
        if served.mode is not Mode.practice:
            raise HttpError(409, "exam answers are graded when the exam is submitted")
        unknown = [q for q in answers if q not in served.graded_ids]
        if unknown:
            raise HttpError(422, f"{unknown[0]!r} is not graded (a flashcard)")
        self.rate_check(person, served, answers)
        try:
            with self.engine.begin() as db:
                jobs.save_answers(db, row.id, answers)
                queued = jobs.enqueue(db, row.id, list(answers))
        except IntegrityError:  # the same answer sent twice at once: the other request queued it
            raise HttpError(409, "this answer is already queued for grading") from None
        self.worker.notify()
        return JSONResponse({"queued": sorted(queued)})

    async def status(self, request: Request) -> Response:
        person, row, served = self.attempt(request)
        released = self.released(served.id)
        show = served.mode is Mode.practice or released
        with self.engine.connect() as db:
            states = jobs.attempt_states(db, row.id, self.worker.code, with_results=show)
        questions = {}
        for question, state in states.items():
            entry: dict[str, Any] = {"state": state.state, "position": state.position, "result": None}
            if show and state.result is not None:
                entry["result"] = student_view(state.result)
            questions[question] = entry
        return JSONResponse({
            "mode": served.mode.value,
            "submitted": row.submitted_at is not None,
            "released": released,
            "deadline": aware(row.deadline).isoformat() if row.deadline else None,
            "questions": questions,
        })

    def released(self, quiz_id: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(select(releases.c.quiz).where(releases.c.quiz == quiz_id)).first() is not None

    # ------------------------------------------------------------------ instructor

    def current_results(self, served: ServedQuiz) -> list[Current]:
        """The result that counts per (student, question) of this quiz: the newest result of
        the newest graded revision (a regrade adds a newer result for the same revision)."""
        ranked = (
            select(
                results.c.id, results.c.item, results.c.revision_id, results.c.attempt_id,
                func.row_number().over(
                    partition_by=(results.c.attempt_id, results.c.question),
                    order_by=(results.c.revision_id.desc(), results.c.id.desc()),
                ).label("rank"),
            )
            .select_from(results.join(attempts, attempts.c.id == results.c.attempt_id))
            .where(and_(attempts.c.quiz == served.id, attempts.c.mode == served.mode.value))
            .subquery()
        )
        with self.engine.connect() as db:
            rows = db.execute(select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.id)).all()
        return [Current(ItemResult.model_validate_json(row.item), row.revision_id, row.attempt_id) for row in rows]

    def latest_results(self, served: ServedQuiz) -> list[ItemResult]:
        """The gradebook: the result that counts per (student, question)."""
        return [current.item for current in self.current_results(served)]

    def quiz_stats(self, served: ServedQuiz, items: list[ItemResult]) -> Optional[StatsReport]:
        """`vaequiz stats` of the current results (None before anything is graded)."""
        order = {q: i for i, q in enumerate(served.graded_ids)}
        ordered = sorted(items, key=lambda i: (order.get(i.question, len(order)), i.student))
        bank = Bank(root=self.course.bank_root, questions=list(served.questions.values()))
        try:
            return analyse(ordered, served.id, bank, title=served.quiz.title)
        except StatsInputError:
            return None

    async def dashboard(self, request: Request) -> Response:
        self.instructor(request)
        listed = []
        for served in self.course.quizzes.values():
            questions = served.graded_ids
            items = self.latest_results(served)
            gradebook: dict[str, dict[str, ItemResult]] = defaultdict(dict)
            for item in items:
                gradebook[item.student][item.question] = item
            with self.engine.connect() as db:
                rows = db.execute(
                    select(attempts, users.c.name).join(users, users.c.id == attempts.c.user_id)
                    .where(and_(attempts.c.quiz == served.id, attempts.c.mode == served.mode.value))
                    .order_by(users.c.name)
                ).all()
                answered = dict(db.execute(
                    select(revisions.c.attempt_id, func.count(func.distinct(revisions.c.question)))
                    .join(attempts, attempts.c.id == revisions.c.attempt_id)
                    .where(and_(attempts.c.quiz == served.id, revisions.c.value != jobs.NULL))
                    .group_by(revisions.c.attempt_id)
                ).all())
                released = db.execute(select(releases.c.released_at).where(releases.c.quiz == served.id)).first()
            table = []
            for row in rows:
                graded = gradebook.get(row.name, {})
                table.append({
                    "student": row.name,
                    "attempt": row.id,
                    "started": aware(row.started_at).strftime("%Y-%m-%d %H:%M"),
                    "submitted": aware(row.submitted_at).strftime("%Y-%m-%d %H:%M") if row.submitted_at else None,
                    "answered": f"{answered.get(row.id, 0)} of {len(questions)}",
                    "cells": [f"{graded[q].points:g}" if q in graded else "" for q in questions],
                    "total": f"{sum(i.points for i in graded.values()):g}" if graded else "",
                })
            listed.append({
                "id": served.id, "title": served.quiz.title, "mode": served.mode.value, "questions": questions,
                "rows": table, "started": len(rows), "submitted": sum(1 for r in rows if r.submitted_at),
                "released": aware(released.released_at).strftime("%Y-%m-%d %H:%M") if released else None,
                "stats": self.quiz_stats(served, items),
            })
        return self.page(request, "dashboard.html.j2", title="Dashboard", quizzes=listed,
                         join_code=accounts.join_code(self.engine), script=self.dashboard_js)

    async def stats_page(self, request: Request) -> Response:
        """The whole `vaequiz stats` report of the current results, as `vaequiz stats --html`."""
        self.instructor(request)
        served = self.served(request.path_params["quiz"])
        report = self.quiz_stats(served, self.latest_results(served))
        if report is None:
            return self.page(request, "message.html.j2", status=404, title="Statistics",
                             error="Nothing is graded yet; statistics appear with the first results.")
        return self.finish(request, HTMLResponse(render_html(report)))

    async def attempt_page(self, request: Request) -> Response:
        """One student's attempt: every saved revision of every question, which revisions were
        graded, and every result (the one that counts marked), check messages included."""
        self.instructor(request)
        attempt_id = request.path_params["attempt"]
        with self.engine.connect() as db:
            row = db.execute(
                select(attempts, users.c.name).join(users, users.c.id == attempts.c.user_id).where(attempts.c.id == attempt_id)
            ).first()
            if row is None:
                raise HttpError(404, "no such attempt")
            saved = db.execute(
                select(revisions).where(revisions.c.attempt_id == attempt_id).order_by(revisions.c.id)
            ).all()
            graded = db.execute(
                select(results.c.id, results.c.revision_id, results.c.item, results.c.graded_at)
                .where(results.c.attempt_id == attempt_id).order_by(results.c.revision_id, results.c.id)
            ).all()
        served = self.course.get(row.quiz)
        parsed = [(result, ItemResult.model_validate_json(result.item)) for result in graded]
        counting = {item.question: result.id for result, item in parsed}  # rows run oldest revision first
        per_revision: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for result, item in parsed:
            per_revision[result.revision_id].append({
                "id": result.id,
                "graded_at": aware(result.graded_at).strftime("%Y-%m-%d %H:%M:%S"),
                "points": f"{item.points:g}", "max_points": f"{item.max_points:g}",
                "error": item.error, "counts": counting[item.question] == result.id,
                "checks": [{"name": c.name, "passed": c.passed, "message": c.message, "hidden": c.hidden} for c in item.checks],
            })
        order = served.graded_ids if served else []
        questions: dict[str, list[dict[str, Any]]] = {q: [] for q in order}
        for revision in saved:
            value = json.loads(revision.value)
            questions.setdefault(revision.question, []).append({
                "id": revision.id,
                "saved_at": aware(revision.saved_at).strftime("%Y-%m-%d %H:%M:%S"),
                "value": "(no answer)" if value is None else " ".join(value) if isinstance(value, list) else value,
                "results": per_revision.get(revision.id, []),
            })
        return self.page(
            request, "attempt.html.j2", title=f"{row.name}: {served.quiz.title if served else row.quiz}",
            student=row.name, quiz=row.quiz, mode=row.mode,
            started=aware(row.started_at).strftime("%Y-%m-%d %H:%M:%S"),
            submitted=aware(row.submitted_at).strftime("%Y-%m-%d %H:%M:%S") if row.submitted_at else None,
            questions=questions,
        )

    async def regrade_dry_run(self, request: Request) -> Response:
        """Grade again, writing nothing, what went stale; the page lists old and new points and
        asks to confirm."""
        self.instructor(request)
        await self.form(request)
        served = self.served(request.path_params["quiz"])
        current = self.current_results(served)
        plan = await run_in_threadpool(
            regrade.dry_run, served, self.course.bank_root, current, self.worker.sandbox_factory,
            max(1, self.settings.grading_threads),
        )
        self.plans.keep(plan)
        return self.page(request, "regrade.html.j2", title=f"Regrade {served.quiz.title}: dry run", quiz=served.id,
                         plan=plan, students=len({c.item.student for c in current}))

    async def regrade_apply(self, request: Request) -> Response:
        self.instructor(request)
        fields = await self.form(request)
        served = self.served(request.path_params["quiz"])
        plan = self.plans.take(fields.get("plan", ""), served.id)
        if plan is None:
            return self.page(request, "message.html.j2", status=409, title="Regrade",
                             error="This dry run is no longer here (applied already, or the server restarted); run the dry run again.")
        regrade.apply(self.engine, plan)
        return RedirectResponse("/instructor", status_code=303)

    async def release(self, request: Request) -> Response:
        self.instructor(request)
        await self.form(request)
        served = self.served(request.path_params["quiz"])
        try:
            with self.engine.begin() as db:
                db.execute(insert(releases).values(quiz=served.id, released_at=now()))
        except IntegrityError:
            pass  # released already
        return RedirectResponse("/instructor", status_code=303)

    async def grades_csv(self, request: Request) -> Response:
        self.instructor(request)
        served = self.served(request.path_params["quiz"])
        text = grades_csv_text(self.latest_results(served), served.graded_ids)
        return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                                 headers={"content-disposition": f'attachment; filename="{served.id}-grades.csv"'})

    async def results_jsonl(self, request: Request) -> Response:
        self.instructor(request)
        served = self.served(request.path_params["quiz"])
        lines = "".join(
            json.dumps(item.model_dump(mode="json"), ensure_ascii=True) + "\n" for item in self.latest_results(served)
        )
        return PlainTextResponse(lines, media_type="application/x-ndjson",
                                 headers={"content-disposition": f'attachment; filename="{served.id}-results.jsonl"'})


    async def gradescope_zip(self, request: Request) -> Response:
        """Gradescope's autograder results.json per student, as `grade-sheets --format
        gradescope` writes them (``<student>/results.json``), in one zip."""
        self.instructor(request)
        served = self.served(request.path_params["quiz"])
        data = gradescope_zip_bytes(self.latest_results(served), served.graded_ids)
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{served.id}-gradescope.zip"'})


def student_view(item: ItemResult) -> dict[str, Any]:
    """A result as its student may read it: hidden checks say only pass or fail."""
    return {
        "points": item.points,
        "max_points": item.max_points,
        "passed": item.passed,
        "checks": [{"name": c.name, "passed": c.passed, "message": visible_message(c)} for c in item.checks],
    }


def grades_csv_text(items: list[ItemResult], questions: list[str]) -> str:
    """grades.csv exactly as grade-sheets writes it (its own writer, through a temporary file)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grades.csv"
        write_grades_csv(path, items, questions)
        return path.read_text(encoding="utf-8")


def gradescope_zip_bytes(items: list[ItemResult], questions: list[str]) -> bytes:
    """grade-sheets' gradescope/ folder (its own writer, through a temporary folder), zipped."""
    import io
    import tempfile
    import zipfile

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(write_gradescope(Path(folder), items, questions).values()):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def create_app(engine: Engine, course: Course, worker: jobs.Dispatch, settings: Settings) -> Starlette:
    """The app; starting it starts the grading worker, stopping it stops the worker."""
    service = Service(engine, course, worker, settings)

    def handle(method: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await method(request)
            except HttpError as err:
                if request.url.path.startswith("/api/") or err.status != 401:
                    return JSONResponse({"error": err.message}, status_code=err.status)
                return RedirectResponse("/", status_code=303)
        return endpoint

    routes = [
        Route("/", handle(service.home)),
        Route("/signin/{token}", handle(service.signin_page)),
        Route("/signin", handle(service.signin), methods=["POST"]),
        Route("/join", handle(service.join), methods=["POST"]),
        Route("/login", handle(service.login_page)),
        Route("/login", handle(service.login), methods=["POST"]),
        Route("/logout", handle(service.logout), methods=["POST"]),
        Route("/quiz/{quiz}", handle(service.quiz_page)),
        Route("/api/attempts/{attempt:int}/answers", handle(service.save), methods=["POST"]),
        Route("/api/attempts/{attempt:int}/submit", handle(service.submit), methods=["POST"]),
        Route("/api/attempts/{attempt:int}/grade", handle(service.grade), methods=["POST"]),
        Route("/api/attempts/{attempt:int}/status", handle(service.status)),
        Route("/instructor", handle(service.dashboard)),
        Route("/instructor/quiz/{quiz}/release", handle(service.release), methods=["POST"]),
        Route("/instructor/quiz/{quiz}/grades.csv", handle(service.grades_csv)),
        Route("/instructor/quiz/{quiz}/results.jsonl", handle(service.results_jsonl)),
        Route("/instructor/quiz/{quiz}/gradescope.zip", handle(service.gradescope_zip)),
        Route("/instructor/quiz/{quiz}/stats", handle(service.stats_page)),
        Route("/instructor/quiz/{quiz}/regrade", handle(service.regrade_dry_run), methods=["POST"]),
        Route("/instructor/quiz/{quiz}/regrade/apply", handle(service.regrade_apply), methods=["POST"]),
        Route("/instructor/attempts/{attempt:int}", handle(service.attempt_page)),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
    app.state.service = service
    return app
