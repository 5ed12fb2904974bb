"""Compute logs (a run's stdout and stderr, shown in the UI's stdout/stderr tabs), copied by a thread.

Dagster's LocalComputeLogManager writes the captured output to files and mirrors it to the process's own stdout
and stderr through `tail -F` and a Python watcher process for each stream: four processes and ~0.1 s of CPU for
every run, more than a warm run costs in all. This one keeps the files (what the UI reads) and the mirror (what
`dagster job execute` or a worker's log shows) with a pipe and a thread per stream, like `tee`.

    compute_logs:
      module: workflow_platform.instance.launcher.compute_logs
      class: FileComputeLogManager
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any, Self

from dagster import Field, StringSource
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

from workflow_platform.settings import PlatformSettings

# Output still in the pipe when the capture ends (a subprocess of the step may hold it open) is waited for this long.
DRAIN_TIMEOUT_S = 5.0


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
        base_dir = config_value.get("base_dir") or os.path.join(
            PlatformSettings().require("dagster_home"), "storage"
        )
        return cls(base_dir, config_value.get("polling_timeout"), inst_data=inst_data)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with tee(sys.stdout, outpath), tee(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # the UI's sign that the capture is complete


@contextmanager
def tee(stream: IO[str], path: str) -> Iterator[None]:
    """What the process writes to `stream` (its file descriptor: Python and C code, subprocesses) goes to `path`
    and still where it went before."""
    ensure_file(path)
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a file (a test runner's buffer): nothing to capture at the fd level
        yield
        return
    stream.flush()
    original = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    mirror = os.dup(original)  # the copier's own: it may outlive this block by DRAIN_TIMEOUT_S
    copier = threading.Thread(
        target=_copy, args=(read_end, path, mirror), name="wfp-compute-log", daemon=True
    )
    copier.start()
    try:
        yield
    finally:
        stream.flush()
        os.dup2(original, fd)  # the pipe's last writer closes: the copier drains it and ends
        copier.join(DRAIN_TIMEOUT_S)
        os.close(original)


def _copy(read_end: int, path: str, mirror: int) -> None:
    with open(path, "ab") as file:
        while chunk := os.read(read_end, 65536):
            file.write(chunk)
            file.flush()
            with contextlib.suppress(OSError):  # the mirror is gone (a closed terminal): the file gets it all
                os.write(mirror, chunk)
    os.close(read_end)
    os.close(mirror)
