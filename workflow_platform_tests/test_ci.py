"""CI never skips silently: a tool a test needs is installed by `.ci/tools` or CI stops; in CI mode a test that
needs a missing tool fails, elsewhere it skips and pytest says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"


def test_ci_stops_when_a_tool_cannot_be_installed(tmp_path: Path) -> None:
    # a machine without Chromium, docker-compose, a C compiler or apt-get to install them
    (tmp_path / "bin").mkdir()
    completed = subprocess.run(
        [BASH, str(ROOT / ".ci" / "tools")],
        env={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "docker-compose chromium cc not installed and apt-get is not available" in completed.stderr
    assert "Debian package(s) docker-compose chromium gcc" in completed.stderr


def test_a_test_needing_a_missing_tool_fails_in_ci_and_skips_with_its_reason_elsewhere(
    tmp_path: Path,
) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "test_needs_chromium.py").write_text(
        "from workflow_platform_tests.conftest import require_tool\n\n\n"
        "def test_page():\n    require_tool('chromium', 'chromium-browser')\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "CI"} | {
        "PATH": str(tmp_path / "bin"),
        "PYTHONPATH": str(ROOT),
    }

    def pytest_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "-p",
            "no:cacheprovider",
        ]
        return subprocess.run(
            [*command, "--rootdir", str(tmp_path), str(tmp_path / "test_needs_chromium.py")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    in_ci = pytest_with(environment | {"CI": "true"})
    assert in_ci.returncode == 1, in_ci.stdout
    assert "1 failed" in in_ci.stdout
    assert (
        "chromium or chromium-browser is not installed (Debian package chromium): CI needs it" in in_ci.stdout
    )

    elsewhere = pytest_with(environment)
    assert elsewhere.returncode == 0, elsewhere.stdout
    assert "1 skipped" in elsewhere.stdout
    # -rs: the skip and its reason are in the summary
    assert (
        "SKIPPED [1]" in elsewhere.stdout
        and "chromium or chromium-browser is not installed" in elsewhere.stdout
    )
