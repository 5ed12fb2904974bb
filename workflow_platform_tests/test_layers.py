"""The import contracts (pyproject's [tool.importlinter]) hold, and they catch a layer crossed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_layers_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_language_module_importing_dagster_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        ROOT / "workflow_platform",
        tmp_path / "workflow_platform",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    spec = tmp_path / "workflow_platform" / "language" / "spec.py"
    spec.write_text(spec.read_text() + "\n\nimport dagster  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The workflow language imports no Dagster and no service client BROKEN" in result.stdout
    assert "workflow_platform.language.spec -> dagster" in result.stdout
