"""Compute logs (a run's stdout and stderr, shown in the UI) written to files, without Dagster's console mirror.

Dagster's LocalComputeLogManager also mirrors the captured output to the worker's own stdout: for that it starts
`tail -F` and a Python watcher process for each stream, four processes and ~0.1 s of CPU per run, more than a
warm run costs in all. This one redirects the streams to the same files (what the UI reads) and nothing else.

    compute_logs:
      module: workflow_platform.launcher.compute_logs
      class: FileComputeLogManager
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

from dagster import Field, StringSource
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file


class FileComputeLogManager(LocalComputeLogManager):
    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "base_dir": Field(StringSource, is_required=False, description="default: $DAGSTER_HOME/storage"),
            "polling_timeout": Field(float, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Self:
        base_dir = config_value.get("base_dir") or os.path.join(os.environ["DAGSTER_HOME"], "storage")
        return cls(base_dir, config_value.get("polling_timeout"), inst_data=inst_data)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        ensure_file(outpath)
        ensure_file(errpath)
        with redirect_to_file(sys.stdout, outpath), redirect_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # the UI's sign that the capture is complete
