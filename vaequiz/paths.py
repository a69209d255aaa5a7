"""Where the bundled bank, templates and reference implementation live, installed or not."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _bundled(name: str) -> Path:
    """A top-level folder of the source tree, or its copy shipped inside the wheel."""
    in_checkout = _CHECKOUT / name
    if in_checkout.is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return in_checkout
    return Path(str(resources.files("vaequiz") / "_data" / name))


def bundled_bank() -> Path:
    return _bundled("question_bank")


def templates_dir() -> Path:
    return _bundled("templates")


def default_bank() -> Path:
    """$VAEQUIZ_BANK, else ./question_bank when the current folder has one, else the bundled bank."""
    if env := os.environ.get("VAEQUIZ_BANK"):
        return Path(env)
    local = Path("question_bank")
    if local.is_dir():
        return local
    return bundled_bank()


def reference_impl_dir() -> Path:
    import reference_impl

    return Path(reference_impl.__file__).resolve().parent
