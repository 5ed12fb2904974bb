"""Where workflows come from: the WORKFLOWS_DIR folders, their workflow.json files, and loading them.

Light on purpose: the API, the CLI and the warm run launcher find and fingerprint workflow files without
building every job (that is `definitions.py`, the code location).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow_platform.language import schema, validate
from workflow_platform.language.problems import Problem
from workflow_platform.language.spec import WorkflowSpec, job_name
from workflow_platform.plugins import plugin_registry
from workflow_platform.plugins.http import registrations_file
from workflow_platform.settings import PlatformSettings


def check_file(path: Path) -> tuple[WorkflowSpec | None, list[Problem]]:
    """Validate a workflow file against the plugins installed here (built-in and registered)."""
    return validate.check_file(path, plugin_registry())


def check_text(text: str, file: str = "") -> tuple[WorkflowSpec | None, list[Problem]]:
    return validate.check_text(text, file, plugin_registry())


def check_document(document: Any, file: str = "") -> tuple[WorkflowSpec | None, list[Problem]]:
    return validate.check_document(document, file, plugin_registry())


def workflow_schema(action_inputs: bool = True) -> dict[str, Any]:
    """workflow.json's JSON Schema, with the input schema of every installed plugin's actions."""
    return schema.workflow_schema(plugin_registry(), action_inputs)


def workflows_dirs() -> list[Path]:
    """WORKFLOWS_DIR (default ./workflows); several folders separated by ':', the first wins a name."""
    return [Path(part).resolve() for part in PlatformSettings().workflows_path().split(os.pathsep) if part]


def workflow_files(directories: Sequence[Path]) -> list[Path]:
    return [path for directory in directories for path in sorted(directory.glob("*/workflow.json"))]


def fingerprint(paths: Iterable[Path]) -> str:
    """Changes when any of the files is added, removed, replaced or written (inode, mtime, size)."""
    digest = hashlib.sha1()
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        digest.update(f"{path}\0{stat.st_ino}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
    return digest.hexdigest()


def workflows_fingerprint() -> str:
    """The workflow files and the HTTP plugin registrations (which decide whether a step is valid)."""
    return fingerprint([*workflow_files(workflows_dirs()), registrations_file()])


@dataclass
class LoadedWorkflows:
    specs: dict[str, tuple[WorkflowSpec, Path]] = field(default_factory=dict)  # by job name
    problems: list[Problem] = field(default_factory=list)


def load_workflows(directories: Sequence[Path]) -> LoadedWorkflows:
    """Every valid workflow by job name; the problems of the others (and of job-name collisions)."""
    registry = plugin_registry()
    loaded = LoadedWorkflows()
    for path in workflow_files(directories):
        spec, problems = validate.check_file(path, registry)
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
