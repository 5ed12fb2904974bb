"""The embedded stack as a user drives it: `wfp stack up`, `wfp run` reusing it, `wfp stack env`, `wfp stack down`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg2

ROOT = Path(__file__).parent.parent


def wfp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflow_platform.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


def test_stack_up_run_env_down(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
    env["WFP_HOME"] = str(tmp_path / "home")
    up = wfp(env, "stack", "up")
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in up.stdout.splitlines()
        )
        assert set(exports) >= {"WFP_PG_DSN", "WFP_NATS_URL", "WFP_S3_ENDPOINT", "WFP_PATHWAY_URL"}
        assert wfp(env, "stack", "env").stdout == up.stdout

        ran = wfp(env, "run", "minio-store-workflow", "--outputs", str(tmp_path / "out"))
        assert ran.returncode == 0, ran.stderr
        assert "using the embedded stack started by `wfp stack up`" in ran.stderr
        assert (tmp_path / "out" / "result.json").exists()
        with psycopg2.connect(exports["WFP_PG_DSN"]) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orchestrator.events WHERE event_type = 'workflow_completed'")
            assert cursor.fetchone()[0] == 1
        assert (tmp_path / "home" / "dagster").is_dir()  # the run was recorded in the persistent instance
    finally:
        down = wfp(env, "stack", "down")
    assert down.returncode == 0 and "stack stopped" in down.stderr
    assert wfp(env, "stack", "env").returncode == 1
