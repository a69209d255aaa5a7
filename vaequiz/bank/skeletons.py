"""Commented, valid question skeletons for `vaequiz new`, and appending them to a bank file.

Comments come from the models' field descriptions, so the format is documented in one place
(vaequiz/bank/models.py) and the skeletons never drift from it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from vaequiz.bank.loader import load_bank
from vaequiz.bank.models import QUESTION_KINDS, models_in, question_adapter
from vaequiz.bank.yaml_source import YamlSourceError, parse_yaml, read_yaml_file

KINDS = tuple(QUESTION_KINDS)

_COMMON_HEAD: dict[str, Any] = {"topics": ["topic-tag"], "difficulty": "beginner"}

_BODIES: dict[str, dict[str, Any]] = {
    "mcq": {
        "points": 1,
        "stem": "Which term of the VAE loss pulls the approximate posterior towards the prior?",
        "options": [
            {"label": "A", "text": "The KL divergence term.",
             "feedback": "Right: it penalises $q(z \\mid x)$ for straying from $p(z)$."},
            {"label": "B", "text": "The reconstruction term.",
             "feedback": "The reconstruction term only asks the decoder to rebuild $x$."},
            {"label": "C", "text": "The learning rate.",
             "feedback": "The learning rate is an optimiser setting, not a loss term."},
            {"label": "D", "text": "The batch size.",
             "feedback": "The batch size changes the gradient noise, not the objective."},
        ],
        "answer": "A",
        "hint": "Which term compares two distributions?",
        "explanation": "The KL term $D_{KL}(q(z \\mid x) \\,\\|\\, p(z))$ measures how far the "
        "posterior is from the prior; minimising it pulls them together.",
    },
    "short_answer": {
        "points": 2,
        "prompt": "Why does a VAE sample $z$ with the reparameterization trick?",
        "model_answer": "Sampling is not differentiable; writing $z = \\mu + \\sigma \\varepsilon$ "
        "moves the randomness into $\\varepsilon$, so gradients flow into $\\mu$ and $\\sigma$.",
        "rubric": [
            {"name": "gradients flow through the sample",
             "phrasings": ["gradient", "backpropagation", "differentiable"]},
            {"name": "noise drawn separately",
             "phrasings": ["epsilon", "noise", "standard normal"],
             "patterns": ["\\bN\\(0, ?1\\)"]},
        ],
        "pass_fraction": 0.5,
        "hint": "What can backpropagation not pass through?",
        "explanation": "The trick separates the random draw from the parameters.",
    },
    "flashcard": {
        "front": "What does the KL term of the VAE loss compare?",
        "back": "The encoder's posterior $q(z \\mid x)$ with the prior $p(z)$.",
    },
    "shape": {
        "points": 1,
        "prompt": "An encoder maps a batch of 64 images to a 20-dimensional latent code. "
        "What is the shape of `z`?",
        "answer": [64, 20],
        "hint": "One row per image.",
        "explanation": "One latent vector of size 20 for each of the 64 images.",
    },
    "numeric": {
        "points": 1,
        "prompt": "What is $D_{KL}(\\mathcal{N}(0, 1) \\,\\|\\, \\mathcal{N}(0, 1))$?",
        "answer": 0.0,
        "tolerance": 0.001,
        "relative_tolerance": 0.0,
        "explanation": "A distribution is at KL divergence 0 from itself.",
    },
    "code": {
        "points": 3,
        "prompt": "`mu` and `logvar` have shape `(B, D)`. Bind `kl`, the KL divergence of "
        "$\\mathcal{N}(\\mu, \\sigma^2)$ from $\\mathcal{N}(0, I)$ for each row (shape `(B,)`).",
        "starter": "kl = ...\n",
        "hint": "Sum over the latent dimension only.",
        "explanation": "$D_{KL} = -\\tfrac12 \\sum_j (1 + \\log\\sigma_j^2 - \\mu_j^2 - "
        "\\sigma_j^2)$, summed over the latent dimension for each row.",
        "given": {
            "mu": {"type": "tensor", "shape": ["B", "D"], "dist": "normal"},
            "logvar": {"type": "tensor", "shape": ["B", "D"], "dist": "uniform",
                       "low": -3, "high": 2},
        },
        "expect": ["kl"],
        "reference": "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)\n",
        "trials": [{"bind": {"B": 4, "D": 3}}, {"bind": {"B": 32, "D": 16}}],
        "checks": [
            {"check": "shape", "of": "kl", "is": [["B"]]},
            {"check": "dtype", "of": "kl", "like": "mu"},
            {"check": "close", "of": "kl", "points": 2},
        ],
        "mutants": [
            {"code": "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())\n",
             "why": "Sums over the batch too, giving one number instead of one per row."},
            {"code": "kl = torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)\n",
             "why": "Drops the factor $-\\tfrac12$."},
            {"code": "kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar, dim=1)\n",
             "why": "Uses the log-variance where the variance belongs."},
            {"code": "kl = -0.5 * torch.sum(logvar - mu.pow(2) - logvar.exp(), dim=1)\n",
             "why": "Forgets the constant 1 inside the sum."},
        ],
    },
}

_EXTRA_COMMENTS = {
    "kind": "The question kind; decides which fields follow.",
    "difficulty": "beginner, intermediate or advanced.",
    "trials": "Hidden runs: each binds the symbols used in shapes (B, D, ...).",
    "checks": "What the grader verifies; each check has its own points (default 1).",
    "mutants": "Known-wrong answers; `vaequiz verify` proves the checks reject every one.",
    "given": "Names bound before the snippet runs, drawn by the grader for each trial.",
    "expect": "Names the snippet must bind; the grader reads them afterwards.",
    "options": "Options labelled A, B, C, ... in order.",
    "rubric": "Concepts the answer should show; the score is the share shown.",
}


_FALLBACK_COMMENTS = {
    "answer": "The expected value.",
}


def _field_comment(model: type[BaseModel], name: str) -> str:
    """Why a field is there: a local note for the big structures, else the model's field
    description, else the docstring of the model the field holds."""
    field = model.model_fields.get(name)
    if name in _EXTRA_COMMENTS or field is None:
        return _EXTRA_COMMENTS.get(name, "")
    if field.description:
        return field.description
    nested = _nested_model(field.annotation)
    if nested is not None and nested.__doc__:
        return nested.__doc__.strip().splitlines()[0]
    return _FALLBACK_COMMENTS.get(name, "")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The one model a field holds (directly or in a list); None for unions of several."""
    found = models_in(annotation)
    return found[0] if len(found) == 1 else None


def skeleton_data(kind: str, question_id: str) -> dict[str, Any]:
    """The skeleton as plain data; the tests validate it against the models."""
    if kind not in _BODIES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return {"id": question_id, "kind": kind, **_COMMON_HEAD, "source": "original",
            **_BODIES[kind]}


_WRAP = 84


def _scalar(value: Any) -> str:
    """A scalar on one line, quoted by PyYAML exactly when YAML needs it."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False,
                          allow_unicode=True).strip().removesuffix(
        "\n..."
    ).removesuffix("...").strip()


def _block_scalar(value: str, indent: int) -> list[str] | None:
    """Multi-line text as ``|`` and long text as ``>-``, so nothing needs escaping."""
    pad = " " * indent
    if "\n" in value.rstrip("\n"):
        return ["|" + ("" if value.endswith("\n") else "-")] + [
            pad + line if line else "" for line in value.rstrip("\n").split("\n")
        ]
    if value.endswith("\n"):
        return ["|", pad + value.rstrip("\n")]
    if len(value) > _WRAP - indent and not value.startswith((" ", "#")):
        return [">-"] + textwrap.wrap(
            value, width=_WRAP, initial_indent=pad, subsequent_indent=pad,
            break_long_words=False, break_on_hyphens=False,
        )
    return None


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) or (isinstance(v, str) and "\n" not in v) for v in value
    )


def _emit_mapping(
    data: dict[str, Any], indent: int, model: type[BaseModel] | None, comments: bool
) -> list[str]:
    """Block YAML for a mapping, each key preceded by its comment when ``comments``."""
    pad = " " * indent
    lines: list[str] = []
    for name, value in data.items():
        if comments and model is not None:
            comment = _field_comment(model, name)
            if comment:
                lines.extend(
                    textwrap.wrap(comment, width=_WRAP, initial_indent=f"{pad}# {name}: ",
                                  subsequent_indent=f"{pad}#   ", break_on_hyphens=False)
                )
        field = model.model_fields.get(name) if model is not None else None
        nested = _nested_model(field.annotation) if field is not None else None
        if isinstance(value, str):
            block = _block_scalar(value, indent + 2)
            if block:
                lines.append(f"{pad}{name}: {block[0]}")
                lines.extend(block[1:])
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}")
        elif _is_flat_list(value) or not isinstance(value, (dict, list)):
            lines.append(f"{pad}{name}: {_scalar(value)}")
        elif isinstance(value, dict) and _fits_on_one_line(value, indent + len(name)):
            lines.append(f"{pad}{name}: {_scalar(value)}")
        elif isinstance(value, dict):
            lines.append(f"{pad}{name}:")
            lines.extend(_emit_mapping(value, indent + 2, nested, comments=False))
        else:
            lines.append(f"{pad}{name}:")
            for position, item in enumerate(value):
                if isinstance(item, dict):
                    item_lines = _emit_mapping(
                        item, indent + 4, nested, comments=comments and position == 0
                    )
                    lines.extend(_as_list_item(item_lines, indent + 2))
                else:
                    lines.append(f"{pad}  - {_scalar(item)}")
    return lines


def _fits_on_one_line(value: dict[str, Any], indent: int) -> bool:
    """Small mappings of scalars (``bind: {B: 4, D: 3}``) read best in flow style."""
    flat = all(not isinstance(v, (dict, list)) or _is_flat_list(v) for v in value.values())
    return flat and indent + len(_scalar(value)) < _WRAP


def _as_list_item(lines: list[str], indent: int) -> list[str]:
    """Put ``- `` on the first non-comment line of an item emitted at ``indent + 2``; comments
    before it move to the dash's column."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("#"):
            lines[i] = " " * indent + "- " + line[indent + 2 :]
            break
        lines[i] = " " * indent + line.lstrip()
    return lines


def skeleton_yaml(kind: str, question_id: str, indent: int = 0) -> str:
    """One list item in block YAML, each field preceded by a comment saying what it means."""
    lines = _emit_mapping(skeleton_data(kind, question_id), 2, QUESTION_KINDS[kind], True)
    lines = _as_list_item(lines, 0)
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in lines) + "\n"


class SkeletonError(Exception):
    """The skeleton cannot be appended to this file; the message says what to do instead."""


@dataclass(frozen=True)
class Appended:
    """Where a skeleton went: the file and the 1-based line its item starts on."""

    file: Path
    line: int


def unused_id(kind: str, taken: set[str]) -> str:
    """``<kind>-new``, numbered when that id is taken."""
    base = kind.replace("_", "-") + "-new"
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def ids_in(path: Path) -> set[str]:
    """Ids already used in the bank folder holding ``path`` (so a new id does not clash)."""
    folder = path.parent if path.suffix else path
    if not folder.exists():
        return set()
    return {q.id for q in load_bank(folder).questions}


def append_skeleton(file: Path, kind: str, question_id: str) -> Appended:
    """Append a skeleton to ``file`` so it stays one YAML list; refuse anything else."""
    text = ""
    if file.exists():
        try:
            data, source_map = read_yaml_file(file)
        except YamlSourceError as err:
            raise SkeletonError(f"{err.location}: {err.message}; fix the file first") from None
        text = file.read_text(encoding="utf-8")
        if isinstance(data, dict):
            raise SkeletonError(
                f"{file} holds a single question written as a mapping; make it a list "
                "(put '- ' before its first key and indent the other keys by two spaces), "
                "then run this again"
            )
        if data is not None and not isinstance(data, list):
            raise SkeletonError(f"{file} holds a {type(data).__name__}, not a list of questions")
        if isinstance(data, list) and data:
            if question_id in {str(item.get("id")) for item in data if isinstance(item, dict)}:
                raise SkeletonError(f"{file} already has a question with id '{question_id}'")
        before = len(data) if isinstance(data, list) else 0
        indent = source_map.locate(()).column - 1 if before else 0
    else:
        before, indent = 0, 0
    if re.fullmatch(r"\s*\[\s*\]\s*", _strip_comments(text)):
        text = re.sub(r"\[\s*\]", "", text, count=1)
    if text and not text.endswith("\n"):
        text += "\n"
    if text.strip():
        text += "\n"
    new_text = text + skeleton_yaml(kind, question_id, indent)
    try:
        parsed, new_map = parse_yaml(new_text, str(file))
    except YamlSourceError as err:
        raise SkeletonError(
            f"appending would break {file} ({err.message}); is its list written in flow style "
            "[...]? Rewrite it as a block list ('- ' items) first"
        ) from None
    appended_item = parsed[-1] if isinstance(parsed, list) and parsed else None
    if (
        not isinstance(appended_item, dict)
        or len(parsed) != before + 1
        or appended_item.get("id") != question_id
    ):
        raise SkeletonError(
            f"cannot append to {file}: its list is not a plain block list at the top level"
        )
    question_adapter.validate_python(appended_item)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(new_text, encoding="utf-8")
    except OSError as err:
        raise SkeletonError(f"cannot write {file}: {err.strerror or err}") from None
    return Appended(file, new_map.locate((before,)).line)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
