"""Creating a workflow's run straight on the Dagster instance and submitting it to the run queue.

What the UI's launchpad does through GraphQL and the code server, done here in-process: the job is built from
the workflow file (and kept until the file changes), its execution plan and snapshots are recorded with the run,
and the run carries the same origins as one launched from the UI, so the UI, re-execution and both run launchers
treat it alike.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.execution.api import create_execution_plan
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from workflow_platform.language.spec import WorkflowSpec, job_name
from workflow_platform.orchestration.catalog import fingerprint
from workflow_platform.orchestration.job import build_job
from workflow_platform.plugins.http import registrations_file

REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object


@dataclass(frozen=True)
class LocationOrigins:
    """Where a run's job comes from: the code server the webserver and daemon know, and the module a run worker
    imports."""

    location_name: str
    grpc_host: str
    grpc_port: int
    module: str
    working_directory: str
    attribute: str = "defs"

    def remote(self, job: str) -> RemoteJobOrigin:
        location = GrpcServerCodeLocationOrigin(
            host=self.grpc_host, port=self.grpc_port, location_name=self.location_name
        )
        return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job)

    def python(self, job: str) -> JobPythonOrigin:
        repository = RepositoryPythonOrigin(
            executable_path=sys.executable,
            code_pointer=ModuleCodePointer(self.module, self.attribute, self.working_directory),
            container_image=None,
            entry_point=["dagster"],
            container_context={},
        )
        return JobPythonOrigin(job, repository)


@dataclass
class RunSubmitter:
    instance: dg.DagsterInstance
    origins: LocationOrigins
    _jobs: dict[Path, tuple[str, dg.JobDefinition]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _job(self, spec: WorkflowSpec, path: Path) -> dg.JobDefinition:
        # The registrations decide what an HTTP-plugin step calls: a change rebuilds the job too.
        version = fingerprint([path, registrations_file()])
        with self._lock:
            cached = self._jobs.get(path)
            if cached is None or cached[0] != version:
                cached = self._jobs[path] = (version, build_job(spec, path))
            return cached[1]

    def create(
        self, spec: WorkflowSpec, path: Path, run_config: Mapping[str, Any], tags: Mapping[str, str]
    ) -> dg.DagsterRun:
        """The run, recorded with its plan and snapshots (status NOT_STARTED)."""
        job = self._job(spec, path)
        name = job_name(spec)
        return self.instance.create_run_for_job(
            job_def=job,
            execution_plan=create_execution_plan(job, run_config=run_config, tags=tags),
            run_config=run_config,
            tags={**job.tags, **tags},
            remote_job_origin=self.origins.remote(name),
            job_code_origin=self.origins.python(name),
        )

    def submit(
        self, spec: WorkflowSpec, path: Path, run_config: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """Create the run and hand it to the run queue (status QUEUED); its id."""
        run = self.create(spec, path, run_config, tags)
        self.instance.submit_run(run.run_id, workspace=None)  # ty: ignore[invalid-argument-type]
        return run.run_id
