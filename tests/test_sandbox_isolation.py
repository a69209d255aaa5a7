"""The mount plan: what gets covered, what stays reachable for an unprivileged snippet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaequiz.grading.sandbox import isolation
from vaequiz.grading.sandbox.isolation import MountPlan
from vaequiz.grading.sandbox.isolation import plan_masks as plan_all


def plan_masks(plan: MountPlan, root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """The masks inside ``root`` (pytest's own temp parents are closed to others, so the
    plan also opens them along kept paths)."""
    return [(f, kept) for f, kept in plan_all(plan) if root in f.parents]


def test_hidden_folders_are_covered_whole(tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (tmp_path / "notes.txt").write_text("x")
    plan = plan_masks(MountPlan(hide=(bank, tmp_path / "missing"), keep=()), tmp_path)
    assert plan == [(bank, ())]


def test_kept_paths_inside_a_hidden_folder_stay_reachable(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    venv_lib = checkout / ".venv" / "lib"
    venv_lib.mkdir(parents=True)
    (checkout / "question_bank").mkdir()
    plan = plan_masks(
        MountPlan(hide=(checkout, checkout / "question_bank"), keep=(venv_lib,)), tmp_path
    )
    assert plan == [(checkout, (".venv",))], "the bank inside the covered checkout needs no mount"


def test_folders_closed_to_others_are_opened_only_along_kept_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    lib = home / ".pyenv" / "lib"
    lib.mkdir(parents=True)
    (home / ".ssh").mkdir()
    os.chmod(home, 0o700)
    try:
        assert plan_masks(MountPlan(hide=(), keep=(lib,)), tmp_path) == [(home, (".pyenv",))]
    finally:
        os.chmod(home, 0o755)


def test_a_kept_path_is_never_covered(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    assert plan_masks(MountPlan(hide=(lib,), keep=(lib,)), tmp_path) == []


def test_mount_points_decode_escaped_names() -> None:
    points = dict(isolation.mount_points())
    assert "/" in points and "/proc" in points


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/transparent_hugepage"), reason="no THP")
def test_collapsing_the_heap_is_harmless() -> None:
    before = bytearray(8 << 20)
    isolation.collapse_into_huge_pages()
    assert before == bytearray(8 << 20)
