"""`pip install -e .` prints no setuptools warnings (the deprecated license table, the editable
"meta path finder" notice): a newcomer's first command stays quiet. The wheel build shares the
metadata, and so the license warning; the image build and test_dockerfile.py build it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# setuptools' warnings as pip relays them: a warning class, or the "!!" banner around one.
SETUPTOOLS_WARNING = re.compile(r"\w*Warning\b|^\s*!!\s*$|deprecat", re.IGNORECASE | re.MULTILINE)


def _project_copy(tmp_path: Path) -> Path:
    """What a clone has that the build reads (a copy: the build writes egg-info beside it)."""
    copy = tmp_path / "elasticd"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    for package in ("daemon", "models"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, copy / package, ignore=ignore)
    return copy


def _pip(*args: str | Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _setuptools_warnings(output: str) -> list[str]:
    # pip's own notes about this machine's local indexes are not the project's to fix.
    return [
        line
        for line in output.splitlines()
        if SETUPTOOLS_WARNING.search(line) and "is ignored: it is neither" not in line
    ]


def test_editable_install_prints_no_setuptools_warnings(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    editable = _pip("--python", venv / "bin" / "python", "install", "--no-deps", "-e", project)
    assert "Successfully installed elasticd" in editable
    assert _setuptools_warnings(editable) == []
