"""Gradescope programming-assignment autograder: a zip with ``setup.sh`` and ``run_autograder``.

The zip ships the vaequiz and reference_impl packages (under ``lib/``), the bank (``bank/``)
and ``vaequiz_autograder.json`` naming the code questions and their points. ``setup.sh``
installs CPU-only torch and vaequiz's other dependencies, and validates the bank with the
shipped vaequiz; ``run_autograder`` (vaequiz/export/gradescope_run.py) grades each
``<question id>.py`` of the submission with `vaequiz grade --json` and writes Gradescope's
``results.json``, one test per check. Code questions are exported, and parametric questions of
the other graded kinds (answered in ``<question id>.txt``): the autograder derives each
student's numbers from the submission's student (``submission_metadata.json``) with the same
SHA-256 draw as their page, which no LMS format can. Other kinds belong in the LMS exports.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import zipfile
from importlib import metadata
from pathlib import Path

import vaequiz
from vaequiz.bank.models import CodeQuestion, MultipleChoice, NumericAnswer, ShapeAnswer
from vaequiz.export import gradescope_run
from vaequiz.export.common import ExportError, ExportResult, ExportSet

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_PACKAGES = ("vaequiz", "reference_impl")
STUDENT_FIELD = "email"
"""Which field of the submission's user is the student id the pages were built for
(``submission_metadata.json`` users have ``email``, ``id``, ``name`` and, where the course
records it, ``sid``); `vaequiz_autograder.json` names it, so it can be changed there."""


def dependencies() -> list[str]:
    """vaequiz's runtime requirements, from pyproject.toml in a checkout or the installed
    metadata, so the autograder installs what this version needs."""
    checkout = Path(vaequiz.__file__).resolve().parent.parent / "pyproject.toml"
    if checkout.is_file():
        try:
            import tomllib  # novermin: tomli stands in for it on Python 3.10
        except ModuleNotFoundError:
            import tomli as tomllib

        return list(tomllib.loads(checkout.read_text(encoding="utf-8"))["project"]["dependencies"])
    try:
        requirements = metadata.requires("vaequiz") or []
    except metadata.PackageNotFoundError:
        raise ExportError("cannot find vaequiz's dependencies (no pyproject.toml, not installed)")
    return [r for r in requirements if "extra ==" not in r]


def setup_script(requirements: list[str]) -> str:
    """Gradescope's build step. It installs into the interpreter ``$VAEQUIZ_PYTHON`` names
    (default ``python3``, Ubuntu 22.04's Python 3.10 on Gradescope's default image), so the
    same script builds a local virtual environment for a check; ``$VAEQUIZ_TORCH`` and
    ``$VAEQUIZ_TORCH_INDEX`` replace the torch requirement and the index it comes from."""
    torch = next((r for r in requirements if re.match(r"torch\b", r)), "torch")
    others = " ".join(shlex.quote(r) for r in requirements if not re.match(r"torch\b", r))
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${{VAEQUIZ_PYTHON:-python3}}"
if [ "$PYTHON" = python3 ] && {{ ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; }}; then
    apt-get update && apt-get install -y python3 python3-pip
fi
export PIP_BREAK_SYSTEM_PACKAGES=1  # the image is the autograder's alone (newer Ubuntus refuse otherwise)
pip_install() {{ "$PYTHON" -m pip install --no-cache-dir --disable-pip-version-check "$@"; }}
# CPU-only torch: the autograder has no GPU, and PyPI's Linux torch brings several GB of CUDA.
TORCH_INDEX={shlex.quote(TORCH_CPU_INDEX)}
TORCH={shlex.quote(torch)}
pip_install --index-url "${{VAEQUIZ_TORCH_INDEX:-$TORCH_INDEX}}" "${{VAEQUIZ_TORCH:-$TORCH}}"
pip_install {others}
chmod +x run_autograder
# run_autograder imports vaequiz from lib/. Fail the build now, not at the first submission, if
# it cannot, or if the bank does not load.
PYTHONPATH=lib "$PYTHON" -m vaequiz validate bank
"""


def _package_files(package: str) -> list[tuple[Path, str]]:
    module = __import__(package)
    root = Path(module.__file__).resolve().parent
    return [
        (path, f"lib/{package}/{path.relative_to(root).as_posix()}")
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def _bank_files(selection: ExportSet) -> list[tuple[Path, str]]:
    root = selection.bank.root
    if root.is_file():
        return [(root, f"bank/{root.name}")]
    return [(f, f"bank/{f.relative_to(root).as_posix()}") for f in selection.bank.files]


def _writestr_executable(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFREG | 0o755) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def export(selection: ExportSet, out: Path) -> ExportResult:
    """Write the autograder zip for the code questions and the parametric graded questions."""
    result = ExportResult(out)
    questions = []
    for question in selection.questions:
        original = selection.parametric.get(question.id)
        entry: dict[str, object] = {"id": question.id, "points": selection.points[question.id]}
        if original is not None and isinstance(original, (CodeQuestion, NumericAnswer, ShapeAnswer, MultipleChoice)):
            entry.update(parametric=True, file=f"{question.id}{'.py' if isinstance(original, CodeQuestion) else '.txt'}")
            selection.fixed_draws.pop(question.id, None)
            result.lost.append(f"{question.id}: parametric; the autograder grades each student with their "
                               f"own numbers (quiz {selection.quiz_id!r}, seed {selection.seed}, student = "
                               f"the submitter's {STUDENT_FIELD})")
        elif isinstance(question, CodeQuestion):
            entry["file"] = f"{question.id}.py"
        else:
            result.skipped.append((question.id, "Gradescope's autograder grades code questions, and "
                                                "parametric ones (their numbers differ per student)"))
            continue
        questions.append(entry)
        result.written.append(question.id)
    if not questions:
        raise ExportError("no code questions and no parametric ones to export; the Gradescope autograder grades "
                          "those (use --quiz to pick some, or another --format)")
    config = {"questions": questions, "bank": "bank", "quiz_id": selection.quiz_id, "seed": selection.seed,
              "student_field": STUDENT_FIELD, "vaequiz_version": vaequiz.__dict__.get("__version__", "")}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        _writestr_executable(archive, "setup.sh", setup_script(dependencies()))
        _writestr_executable(archive, "run_autograder",
                             Path(gradescope_run.__file__).read_text(encoding="utf-8"))
        archive.writestr(gradescope_run.CONFIG_FILE, json.dumps(config, indent=2))
        for path, name in _bank_files(selection):
            archive.write(path, name)
        for package in _PACKAGES:
            for path, name in _package_files(package):
                archive.write(path, name)
    return result
