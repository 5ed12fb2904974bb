"""The README's "With Dagster's own tools" commands, run exactly as the README shows them: in one bash session
from the repository root on the embedded stack, `dagster dev` last, its UI answering. Stopped with
`wfp stack down`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

from workflow_platform.stack.processes import ports_free

ROOT = Path(__file__).parent.parent
SECTION = "With Dagster's own tools:"


def readme_commands() -> list[str]:
    """The command lines of the README's bash block under SECTION, as written (comments and all)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, f"no bash block after {SECTION!r} in README.md"
    return [line for line in block.group(1).splitlines() if line.strip()]


def port_of(dev_command: str) -> int:
    found = re.search(r"-p\s+(\d+)", dev_command)
    assert found, f"the README's dagster dev command names no port: {dev_command}"
    return int(found.group(1))


def test_the_readme_dagster_commands_work_as_written(tmp_path):
    commands = readme_commands()
    assert commands[0].startswith(".venv/bin/wfp stack up"), commands
    assert any("dagster job list" in c for c in commands) and any(
        "dagster job execute" in c for c in commands
    )
    [dev] = [c for c in commands if "dagster dev" in c]
    assert commands[-1] == dev, "dagster dev runs until stopped: the test expects it last"
    port = port_of(dev)
    assert ports_free([port]), (
        f"port {port} (the README's `dagster dev -p {port}`) is taken on this machine: free it and run again"
    )
    # A fresh environment as a user's shell has it: nothing of the test session's stack or Dagster instance.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFP_", "DAGSTER_"))}
    env["WFP_HOME"] = str(tmp_path / "home")  # the stack's state and instance, instead of the checkout's .wfp
    script = tmp_path / "readme.sh"
    before_dev = commands[:-1]
    script.write_text(
        "set -e\n"
        + "".join(f"echo '>>> {c.split('#')[0].strip()}'\n{c}\n" for c in before_dev)
        + f"echo '>>> {dev.split('#')[0].strip()}'\nexec {dev}\n"
    )
    log_path = tmp_path / "readme.log"
    stack_down = ".venv/bin/wfp stack down"
    with log_path.open("w") as log:
        shell = subprocess.Popen(
            ["bash", str(script)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 420
            answered = None
            while answered is None:
                output = log_path.read_text()
                assert shell.poll() is None, (
                    f"a README command failed (exit {shell.returncode}):\n{output[-6000:]}"
                )
                assert time.monotonic() < deadline, (
                    f"dagster dev's UI did not answer within 420 s:\n{output[-6000:]}"
                )
                with contextlib.suppress(requests.RequestException):
                    response = requests.get(f"http://localhost:{port}/server_info", timeout=5)
                    if response.ok:
                        answered = response
                time.sleep(1)
            output = log_path.read_text()
            # dagster job list: every shipped workflow is a job
            for job in ("minio_store_workflow", "sales_report_workflow", "fraud_detection_workflow"):
                assert f"Job: {job}" in output, output[-6000:]
            assert "RUN_SUCCESS" in output, output[-6000:]  # dagster job execute ran the workflow
            # the UI of dagster dev lists the workflows' jobs
            query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
            data = requests.post(f"http://localhost:{port}/graphql", json={"query": query}, timeout=60).json()
            jobs = {j["name"] for node in data["data"]["repositoriesOrError"]["nodes"] for j in node["jobs"]}
            assert {"minio_store_workflow", "sales_report_workflow"} <= jobs, data
            # ... and shows the run `dagster job execute` recorded: one instance
            runs = "{ runsOrError { ... on Runs { results { jobName status } } } }"
            data = requests.post(f"http://localhost:{port}/graphql", json={"query": runs}, timeout=60).json()
            assert {"jobName": "minio_store_workflow", "status": "SUCCESS"} in data["data"]["runsOrError"][
                "results"
            ], data
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGINT)
            try:
                shell.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(shell.pid, signal.SIGKILL)
                shell.wait(timeout=30)
            down = subprocess.run(
                ["bash", "-c", stack_down], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
    assert down.returncode == 0, down.stderr
    assert ports_free([port]), f"dagster dev still holds port {port} after it was stopped"
