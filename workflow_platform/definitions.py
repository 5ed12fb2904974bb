"""The Dagster code location: one job (and schedule) per `workflows/*/workflow.json`.

The folders come from WORKFLOWS_DIR (default ./workflows; several separated by ':', the first wins a name). A workflow that fails validation is reported in the
log and left out; it never becomes a half-built job, and the other workflows still load.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from workflow_platform.plugins import plugin_registry
from workflow_platform.problems import Problem
from workflow_platform.spec import WorkflowSpec
from workflow_platform.translate import build_job, build_schedule, build_sensor, job_name
from workflow_platform.validate import check_file

log = logging.getLogger("workflow_platform")


def workflows_dirs() -> list[Path]:
    value = os.environ.get("WORKFLOWS_DIR") or str(Path.cwd() / "workflows")
    return [Path(part).resolve() for part in value.split(os.pathsep) if part]


def workflow_files(directories: Sequence[Path]) -> list[Path]:
    return [path for directory in directories for path in sorted(directory.glob("*/workflow.json"))]


@dataclass
class LoadedWorkflows:
    specs: dict[str, tuple[WorkflowSpec, Path]] = field(default_factory=dict)  # by job name
    problems: list[Problem] = field(default_factory=list)


def load_workflows(directories: Sequence[Path]) -> LoadedWorkflows:
    registry = plugin_registry()
    loaded = LoadedWorkflows()
    for path in workflow_files(directories):
        spec, problems = check_file(path, registry)
        if spec is None:
            loaded.problems.extend(problems)
            continue
        name = job_name(spec)
        if name in loaded.specs:
            other = loaded.specs[name][1]
            loaded.problems.append(
                Problem(
                    "/name", f"job name '{name}' is already used by {other}", "rename one workflow", str(path)
                )
            )
            continue
        loaded.specs[name] = (spec, path)
    return loaded


def build_definitions(directories: Sequence[Path]) -> dg.Definitions:
    loaded = load_workflows(directories)
    for problem in loaded.problems:
        log.error("workflow left out: %s", problem.render())
    registry = plugin_registry()
    jobs = []
    schedules = []
    sensors = []
    for spec, path in loaded.specs.values():
        job = build_job(spec, path, registry)
        jobs.append(job)
        if schedule := build_schedule(spec, job):
            schedules.append(schedule)
        if sensor := build_sensor(spec, job):
            sensors.append(sensor)
    return dg.Definitions(jobs=jobs, schedules=schedules, sensors=sensors)


defs = build_definitions(workflows_dirs())
