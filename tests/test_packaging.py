"""`pip install .` (not editable) ships the bank, templates and reference implementation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_wheel_install_works_from_any_folder(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    wheel = next(wheels.glob("vaequiz-*.whl"))
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(venv / "bin/vaequiz"), "list", "--json"], cwd=elsewhere, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows, "the bundled bank is empty"
    assert all("site-packages/vaequiz/_data/question_bank/" in row["location"] for row in rows)
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c",
         "from vaequiz.paths import templates_dir, bundled_bank, reference_impl_dir;"
         "print(templates_dir()); print(bundled_bank()); print(reference_impl_dir())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    templates, bank, reference = (Path(line) for line in probe.stdout.split())
    assert "site-packages" in str(templates) and any(templates.iterdir())
    assert "site-packages" in str(bank) and any(bank.rglob("*.yaml"))
    assert "site-packages" in str(reference) and (reference / "__init__.py").is_file()
