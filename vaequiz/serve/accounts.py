"""People and sign-in: instructor passwords (scrypt), student sign-in links and the course join
code, and sessions. Every secret is random and stored only as a hash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from sqlalchemy import Connection, Engine, delete, insert, select

from vaequiz.serve.db import aware, now, sessions, settings, sign_in_tokens, users

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8
SESSION_LIFETIME = timedelta(hours=12)
LINK_LIFETIME = timedelta(days=14)
MAX_NAME = 200


class AccountError(ValueError):
    """A request about people that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    @property
    def instructor(self) -> bool:
        return self.role == "instructor"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    encode = base64.b64encode
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, base64.b64decode(digest))


def secret_hash(token: str) -> str:
    """Tokens are 256-bit random, so a plain SHA-256 is enough to make a stolen table useless."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _user(row: object) -> User:
    return User(row.id, row.name, row.role)  # type: ignore[attr-defined]


def clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise AccountError("the name is empty")
    if len(name) > MAX_NAME:
        raise AccountError(f"the name is longer than {MAX_NAME} characters")
    if any(ord(ch) < 32 for ch in name):
        raise AccountError("the name contains control characters")
    return name


def create_instructor(engine: Engine, email: str, password: str) -> None:
    """Create the instructor, or set a new password when the account exists."""
    email = clean_name(email)
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is shorter than {MIN_PASSWORD} characters")
    with engine.begin() as db:
        found = db.execute(select(users).where(users.c.name == email)).first()
        if found is not None and found.role != "instructor":
            raise AccountError(f"{email!r} is a student account")
        if found is None:
            db.execute(insert(users).values(name=email, role="instructor", password_hash=hash_password(password), created_at=now()))
        else:
            db.execute(users.update().where(users.c.id == found.id).values(password_hash=hash_password(password)))


def check_instructor(engine: Engine, email: str, password: str) -> Optional[User]:
    with engine.connect() as db:
        row = db.execute(select(users).where(users.c.name == email.strip(), users.c.role == "instructor")).first()
    if row is None or not row.password_hash:
        hash_password(password)  # the same work either way: timing does not tell which names exist
        return None
    return _user(row) if password_matches(password, row.password_hash) else None


def student(db: Connection, name: str) -> User:
    """The student called ``name``, created if new."""
    name = clean_name(name)
    row = db.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        db.execute(insert(users).values(name=name, role="student", created_at=now()))
        row = db.execute(select(users).where(users.c.name == name)).first()
    if row.role != "student":
        raise AccountError(f"{name!r} is not a student account")
    return _user(row)


def issue_links(engine: Engine, names: list[str], quiz: Optional[str], lifetime: timedelta = LINK_LIFETIME) -> dict[str, str]:
    """A fresh sign-in token per student (creating students as needed); returns name -> token."""
    tokens: dict[str, str] = {}
    with engine.begin() as db:
        for name in names:
            person = student(db, name)
            token = new_token()
            db.execute(insert(sign_in_tokens).values(
                token_hash=secret_hash(token), user_id=person.id, quiz=quiz, expires_at=now() + lifetime
            ))
            tokens[person.name] = token
    return tokens


def redeem_link(engine: Engine, token: str) -> Optional[tuple[User, Optional[str]]]:
    """The student a still-valid link belongs to and the quiz it opens; None otherwise."""
    with engine.connect() as db:
        row = db.execute(
            select(sign_in_tokens.c.expires_at, sign_in_tokens.c.quiz, users.c.id, users.c.name, users.c.role)
            .join(users, users.c.id == sign_in_tokens.c.user_id)
            .where(sign_in_tokens.c.token_hash == secret_hash(token))
        ).first()
    if row is None or aware(row.expires_at) <= now():
        return None
    return _user(row), row.quiz


def join_code(engine: Engine) -> str:
    """The course join code, made on first use (short enough to read aloud in a lecture)."""
    with engine.begin() as db:
        row = db.execute(select(settings.c.value).where(settings.c.key == "join_code")).first()
        if row is not None:
            return row.value
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        code = "".join(secrets.choice(alphabet) for _ in range(10))
        db.execute(insert(settings).values(key="join_code", value=code))
        return code


def join(engine: Engine, code: str, name: str) -> User:
    """A new student joining with the course code; a name already taken is refused (its owner
    signs in with their link), so a code never opens someone else's attempts."""
    expected = join_code(engine)
    if not hmac.compare_digest(code.strip().upper().encode(), expected.encode()):
        raise AccountError("that join code is not this course's")
    name = clean_name(name)
    with engine.begin() as db:
        if db.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
            raise AccountError(f"the id {name!r} is already taken; sign in with your link, or choose another id")
        return student(db, name)


def open_session(engine: Engine, user: User, lifetime: timedelta = SESSION_LIFETIME) -> str:
    token = new_token()
    with engine.begin() as db:
        db.execute(delete(sessions).where(sessions.c.expires_at <= now()))
        db.execute(insert(sessions).values(token_hash=secret_hash(token), user_id=user.id, expires_at=now() + lifetime))
    return token


def session_user(engine: Engine, token: str) -> Optional[User]:
    with engine.connect() as db:
        row = db.execute(
            select(sessions.c.expires_at, users.c.id, users.c.name, users.c.role)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.token_hash == secret_hash(token))
        ).first()
    if row is None or aware(row.expires_at) <= now():
        return None
    return _user(row)


def close_session(engine: Engine, token: str) -> None:
    with engine.begin() as db:
        db.execute(delete(sessions).where(sessions.c.token_hash == secret_hash(token)))
