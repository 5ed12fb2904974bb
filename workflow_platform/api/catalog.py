"""The workflows the platform runs (shipped and submitted), validated once per change of the files they come from.

Validating every workflow file takes tens of milliseconds of CPU; the API needs the list on every submission and
the step ids on every execution poll, so it keeps the last result until a workflow file or the plugin
registrations (which decide whether an HTTP-plugin step is valid) change on disk.
"""

from __future__ import annotations

import threading
from pathlib import Path

from workflow_platform.language.spec import WorkflowSpec
from workflow_platform.orchestration.catalog import load_workflows, workflows_dirs, workflows_fingerprint


class WorkflowCatalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._specs: dict[str, tuple[WorkflowSpec, Path]] = {}

    def specs(self) -> dict[str, tuple[WorkflowSpec, Path]]:
        """Workflow name -> (spec, file) of every valid workflow."""
        with self._lock:
            fingerprint = workflows_fingerprint()
            if fingerprint != self._fingerprint:
                loaded = load_workflows(workflows_dirs())
                self._specs = {spec.name: (spec, path) for spec, path in loaded.specs.values()}
                self._fingerprint = fingerprint
            return self._specs


CATALOG = WorkflowCatalog()
