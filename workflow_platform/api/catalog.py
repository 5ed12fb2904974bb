"""The workflows the platform runs (shipped and submitted), validated once per change of the files they come from.

Validating every workflow file takes tens of milliseconds of CPU; the API needs the list on every submission and
the step ids on every execution poll, so it keeps the last result until a workflow file or the plugin
registrations (which decide whether an HTTP-plugin step is valid) change on disk.
"""

from __future__ import annotations

import threading
from pathlib import Path

from workflow_platform.definitions import load_workflows, workflow_files, workflows_dirs
from workflow_platform.plugins.http import registrations_file
from workflow_platform.spec import WorkflowSpec

Fingerprint = tuple[tuple[str, int, int, int], ...]


def _fingerprint(paths: list[Path]) -> Fingerprint:
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        stamps.append((str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


class WorkflowCatalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: Fingerprint | None = None
        self._specs: dict[str, tuple[WorkflowSpec, Path]] = {}

    def specs(self) -> dict[str, tuple[WorkflowSpec, Path]]:
        """Workflow name -> (spec, file) of every valid workflow."""
        with self._lock:
            fingerprint = _fingerprint([*workflow_files(workflows_dirs()), registrations_file()])
            if fingerprint != self._fingerprint:
                loaded = load_workflows(workflows_dirs())
                self._specs = {spec.name: (spec, path) for spec, path in loaded.specs.values()}
                self._fingerprint = fingerprint
            return self._specs


CATALOG = WorkflowCatalog()
